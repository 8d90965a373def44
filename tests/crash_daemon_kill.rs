//! The mount daemon killed with SIGKILL at random moments while writers
//! commit through it, then the dead mountpoint cleared and the repository
//! mounted again; with and without FUSE passthrough.
//!
//! After every kill:
//! - the mountpoint is dead (ENOTCONN); `sessionfs mount` on it says so and
//!   names the way out; `sessionfs unmount` clears it;
//! - every session's `session` is one whole checkpoint: the last one whose
//!   close() returned success, or the one in flight;
//! - a `session.next` left by the dead daemon is a stale lock: `sessionfs
//!   list` says so, and `break-lock` or `rm session.next` in the new mount
//!   clears it;
//! - the new mount serves exactly what the repository holds.
//!
//! `SESSIONFS_DAEMON_KILL_TRIALS` sets the number of kills per mode
//! (default 20); `SESSIONFS_SOAK_SECONDS` keeps going for that long.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::fs_helpers::*;
use common::mount::is_mounted;

const WRITERS: u64 = 3;

/// What one writer thread saw: the last seed whose close() returned 0, the
/// seed it was writing when it stopped, and the error that stopped it.
#[derive(Debug, Default, Clone)]
struct WriterLog {
    acked: Option<u64>,
    in_flight: Option<u64>,
    commits: u64,
    error: Option<(&'static str, i32)>,
}

fn writer(path: &Path, trial: u64, w: u64, stop: &AtomicBool) -> WriterLog {
    let mut log = WriterLog::default();
    let mut rng = Rng::new(trial * 1000 + w);
    for seq in 1.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let seed = (trial << 24) | (w << 20) | seq;
        let len = if rng.chance(30) {
            rng.range(64 << 10, 256 << 10)
        } else {
            rng.range(40, 16 << 10)
        } as usize;
        log.in_flight = Some(seed);
        match write_through(path, &checkpoint(seed, len)) {
            Ok(()) => {
                log.acked = Some(seed);
                log.in_flight = None;
                log.commits += 1;
            }
            Err(e) => {
                log.error = Some(e);
                break;
            }
        }
    }
    log
}

/// Errors a writer may see when the daemon dies under it.
fn daemon_death_errno(e: i32) -> bool {
    matches!(e, libc::ENOTCONN | libc::ECONNABORTED | libc::EIO)
}

fn daemon_kill_trials(args: &[&str], scenario: &str) {
    // The writers are threads of this process (see `serial`).
    let _serial = serial();
    let work = scratch("sessionfs-daemon-kill");
    let repo = work.path().join("repo");
    let mnt = work.path().join("mnt");
    let daemon_log = work.path().join("daemon.log");
    fs::create_dir(&repo).unwrap();
    let ids: Vec<String> = (0..WRITERS).map(|w| format!("w{w}")).collect();
    for id in &ids {
        fs::create_dir(repo.join(format!("{id}.session"))).unwrap();
        fs::write(
            repo.join(format!("{id}.session/session")),
            checkpoint(1, 64),
        )
        .unwrap();
    }
    let mut current: Vec<u64> = vec![1; WRITERS as usize];
    let mut rng = Rng::from_env(scenario);
    let mut stats = Stats::default();
    let mut daemon = Daemon::start(&repo, &mnt, &daemon_log, args);
    let mut trials = Trials::new("SESSIONFS_DAEMON_KILL_TRIALS", 20);
    while trials.another() {
        let trial = trials.done;
        stats.trials += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let path = mnt.join(format!("w{w}.session/session"));
                let stop = stop.clone();
                thread::spawn(move || writer(&path, trial, w, &stop))
            })
            .collect();
        // A reader keeps the daemon busy with lookups and reads too.
        let reader = {
            let mnt = mnt.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut bad = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match fs::read(mnt.join("w0.session/session")) {
                        Ok(data) => {
                            if let Err(why) = verify(&data) {
                                bad.push(why);
                            }
                        }
                        Err(_) => break,
                    }
                }
                bad
            })
        };
        pause_us(rng.range(0, 30_000));
        daemon.kill();
        stop.store(true, Ordering::Relaxed);
        let logs: Vec<WriterLog> = handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect();
        for why in reader.join().expect("reader thread") {
            stats.torn += 1;
            stats.problem(format!(
                "trial {trial}: a reader saw a torn checkpoint: {why}"
            ));
        }

        // The dead mountpoint: ENOTCONN (listing at once; `stat` once the
        // root's cached attributes expire, 100 ms), a clear message, and a
        // way out.
        match fs::read_dir(&mnt) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
            other => stats.problem(format!("trial {trial}: the dead mount lists as {other:?}")),
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match fs::metadata(&mnt) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                other => {
                    stats.problem(format!("trial {trial}: the dead mount stats as {other:?}"));
                    break;
                }
            }
        }
        if trial == 1 {
            let out = run_cmd(sessionfs().arg("--repo").arg(&repo).arg("mount").arg(&mnt));
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !err.contains("sessionfs unmount") {
                stats.problem(format!("mount over a dead mountpoint said: {err:?}"));
            }
        }
        let out = run_cmd(sessionfs().arg("unmount").arg(&mnt));
        if !out.status.success() || is_mounted(&mnt) {
            stats.problem(format!(
                "trial {trial}: sessionfs unmount did not clear the dead mount: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            force_unmount(&mnt);
        }

        for (w, log) in logs.iter().enumerate() {
            stats.commits += log.commits;
            if let Some((step, e)) = log.error
                && !daemon_death_errno(e)
            {
                stats.problem(format!(
                    "trial {trial}: writer {w}: {step} failed with an unexpected {}",
                    errno_name(e)
                ));
            }
            let id = &ids[w];
            let session = repo.join(format!("{id}.session/session"));
            let found = match verify_file(&session) {
                Ok(s) => s,
                Err(why) => {
                    stats.torn += 1;
                    stats.problem(format!("trial {trial}: {id}: torn session: {why}"));
                    None
                }
            };
            let acked = log.acked.unwrap_or(current[w]);
            if found != Some(acked) && found != log.in_flight {
                stats.lost += 1;
                stats.problem(format!(
                    "trial {trial}: {id}: session is {found:?}, the last acknowledged commit \
                     {acked:#x}, in flight {:?}",
                    log.in_flight
                ));
            }
            if let Some(s) = found {
                current[w] = s;
            }
        }

        // Stale locks left by the dead daemon: reported, then cleared.
        let list = run_cmd(sessionfs().arg("--repo").arg(&repo).arg("list"));
        let listing = String::from_utf8_lossy(&list.stdout).into_owned();
        let mut stale = Vec::new();
        for id in &ids {
            if repo.join(format!("{id}.session/session.next")).exists() {
                stats.stale_locks += 1;
                let row = listing.lines().find(|l| l.starts_with(id.as_str()));
                if !row.is_some_and(|r| r.contains("stale")) {
                    stats.problem(format!(
                        "trial {trial}: {id}: the lock left by the dead daemon is not listed \
                         as stale: {listing:?}"
                    ));
                }
                stale.push(id.clone());
            }
        }
        let via_mount = trial.is_multiple_of(2);
        if !via_mount {
            for id in &stale {
                let out = run_cmd(
                    sessionfs()
                        .arg("--repo")
                        .arg(&repo)
                        .arg("break-lock")
                        .arg(id),
                );
                if !out.status.success() {
                    stats.problem(format!(
                        "trial {trial}: break-lock {id}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
        }

        daemon.restart();
        if via_mount {
            for id in &stale {
                if let Err(e) = fs::remove_file(mnt.join(format!("{id}.session/session.next"))) {
                    stats.problem(format!("trial {trial}: rm {id}.session/session.next: {e}"));
                }
            }
        }
        for (w, id) in ids.iter().enumerate() {
            if repo.join(format!("{id}.session/session.next")).exists() {
                stats.problem(format!(
                    "trial {trial}: {id}: the stale lock was not cleared"
                ));
                let _ = fs::remove_file(repo.join(format!("{id}.session/session.next")));
            }
            match fs::read(mnt.join(format!("{id}.session/session"))) {
                Ok(data) if verify(&data) == Ok(current[w]) => {}
                other => stats.problem(format!(
                    "trial {trial}: {id}: the new mount serves {:?}, the repository holds {:#x}",
                    other.map(|d| verify(&d)),
                    current[w]
                )),
            }
        }
    }
    // The last daemon still commits.
    let path = mnt.join("w0.session/session");
    write_through(&path, &checkpoint(5, 500)).expect("commit after the last restart");
    assert_eq!(verify_file(&repo.join("w0.session/session")), Ok(Some(5)));
    let out = daemon.stop();
    assert!(out.status.success(), "unmount: {out:?}");
    assert!(
        !daemon.log_text().contains("panicked"),
        "a daemon panicked: {}",
        daemon.log_text()
    );
    stats.report_and_check(scenario);
}

#[test]
fn killing_the_daemon_during_commits_with_passthrough_keeps_every_checkpoint_whole() {
    daemon_kill_trials(&[], "crash-daemon-kill-passthrough");
}

#[test]
fn killing_the_daemon_during_commits_without_passthrough_keeps_every_checkpoint_whole() {
    daemon_kill_trials(&["--no-passthrough"], "crash-daemon-kill-daemon-io");
}
