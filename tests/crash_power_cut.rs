//! Power cuts: the repository lives on a small ext4 filesystem in a loop
//! device; commits are in flight (through the core and through the mount)
//! when `xfs_io -x -c shutdown` cuts the filesystem off as a power cut
//! would (no flush: whatever ext4 had not committed to its journal is
//! gone). After unmounting and mounting it again (journal replay):
//! - every checkpoint whose commit returned success is there;
//! - `session` is one whole checkpoint (the acknowledged one or the one in
//!   flight);
//! - every commit that ran after the cut failed with an error.
//!
//! A control commit that skips the directory fsync shows the test has
//! teeth: its rename is lost.
//!
//! Needs root, loop devices, mkfs.ext4 and xfs_io (Debian xfsprogs).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use common::fs_helpers::*;
use sessionfs::core::{Repository, SESSION_NEXT_FILE};

fn session_file(repo: &Path, id: &str) -> PathBuf {
    repo.join(format!("{id}.session/session"))
}

fn make_session(repo: &Repository, id: &str, seed: u64) {
    let dir = repo.location().join(format!("{id}.session"));
    fs::create_dir_all(&dir).unwrap();
    repo.open(OsStr::new(id))
        .unwrap()
        .save(&checkpoint(seed, 100))
        .unwrap();
    // The new directory entry itself must be durable before the cut.
    fs::File::open(repo.location()).unwrap().sync_all().unwrap();
}

#[test]
fn a_commit_without_the_directory_fsync_is_lost_and_a_full_commit_is_not() {
    let _serial = loop_lock();
    let mut lfs = LoopFs::new(32);
    let repo = Repository::new(lfs.mnt.join("repo"));
    fs::create_dir(repo.location()).unwrap();
    make_session(&repo, "control", 1);

    // What the protocol would be without its last step: write, fsync,
    // rename, and no fsync of the directory.
    let dir = repo.location().join("control.session");
    fs::write(dir.join("session.tmp"), checkpoint(2, 100)).unwrap();
    fs::File::open(dir.join("session.tmp"))
        .unwrap()
        .sync_all()
        .unwrap();
    fs::rename(dir.join("session.tmp"), dir.join("session")).unwrap();
    assert_eq!(verify_file(&dir.join("session")), Ok(Some(2)));
    lfs.power_cut();
    lfs.remount();
    assert_eq!(
        verify_file(&dir.join("session")),
        Ok(Some(1)),
        "the rename not followed by a directory fsync survived the power cut: \
         the cut does not drop unjournaled state, so this test would prove nothing"
    );

    // The real commit, then the same cut at once: it survives.
    repo.open(OsStr::new("control"))
        .unwrap()
        .save(&checkpoint(3, 100))
        .unwrap();
    lfs.power_cut();
    lfs.remount();
    assert_eq!(verify_file(&dir.join("session")), Ok(Some(3)));
    assert!(!dir.join(SESSION_NEXT_FILE).exists());
}

/// What a writer saw.
#[derive(Debug, Default)]
struct Outcome {
    acked: Option<u64>,
    in_flight: Option<u64>,
    commits: u64,
    /// A commit that started after the cut and returned success.
    silent: Vec<u64>,
    error: Option<String>,
}

#[test]
fn a_power_cut_during_commits_keeps_every_acknowledged_checkpoint() {
    let _serial = loop_lock();
    let mut lfs = LoopFs::new(64);
    let repo_path = lfs.mnt.join("repo");
    let repo = Repository::new(&repo_path);
    fs::create_dir(&repo_path).unwrap();
    let core_ids: Vec<String> = (0..3).map(|i| format!("core{i}")).collect();
    let mount_ids: Vec<String> = (0..2).map(|i| format!("mnt{i}")).collect();
    for id in core_ids.iter().chain(&mount_ids) {
        make_session(&repo, id, 1);
    }
    let mut current: std::collections::HashMap<String, u64> = core_ids
        .iter()
        .chain(&mount_ids)
        .map(|id| (id.clone(), 1))
        .collect();
    let work = scratch("sessionfs-power");
    let mut rng = Rng::from_env("crash-power-cut");
    let mut stats = Stats::default();
    let mut rounds = Trials::new("SESSIONFS_POWER_CUT_ROUNDS", 4);
    while rounds.another() {
        let round = rounds.done;
        stats.trials += 1;
        let mut daemon = Daemon::start(
            &repo_path,
            &work.path().join("mnt"),
            &work.path().join("daemon.log"),
            if round.is_multiple_of(2) {
                &["--no-passthrough"]
            } else {
                &[]
            },
        );
        let switch = lfs.power_switch();
        let cut = Arc::new(AtomicBool::new(false));
        let cut_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
        let mut handles = Vec::new();
        for (i, id) in core_ids.iter().chain(&mount_ids).enumerate() {
            let through_mount = i >= core_ids.len();
            let storage = repo.open(OsStr::new(id)).unwrap();
            let mount_path = daemon.path(format!("{id}.session/session"));
            let (cut, cut_at) = (cut.clone(), cut_at.clone());
            let seed_base = (round << 32) | ((i as u64) << 24);
            handles.push(thread::spawn(move || {
                let mut out = Outcome::default();
                let mut r = Rng::new(seed_base);
                for seq in 1.. {
                    let seed = seed_base | seq;
                    let data = checkpoint(seed, r.range(40, 48 << 10) as usize);
                    let started = Instant::now();
                    out.in_flight = Some(seed);
                    let result = if through_mount {
                        write_through(&mount_path, &data)
                            .map_err(|(step, e)| format!("{step}: {}", errno_name(e)))
                    } else {
                        storage.save(&data).map_err(|e| e.to_string())
                    };
                    match result {
                        Ok(()) => {
                            out.acked = Some(seed);
                            out.in_flight = None;
                            out.commits += 1;
                            let after_cut = cut_at.lock().unwrap().is_some_and(|t| started > t);
                            if after_cut {
                                out.silent.push(seed);
                            }
                        }
                        Err(e) => {
                            out.error = Some(e);
                            break;
                        }
                    }
                    // Commits that succeed after the cut are counted above;
                    // do not loop on them for ever.
                    if cut.load(Ordering::Relaxed) && out.silent.len() > 20 {
                        break;
                    }
                }
                out
            }));
        }
        pause_us(rng.range(20_000, 60_000));
        switch.cut();
        // Only once xfs_io has exited is the filesystem surely cut off:
        // commits that start from now on must fail.
        *cut_at.lock().unwrap() = Some(Instant::now());
        cut.store(true, Ordering::Relaxed);
        let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // The daemon goes first: it holds the repository open.
        let out = daemon.stop();
        assert!(out.status.success(), "unmount: {out:?}");
        drop(daemon);
        lfs.remount();

        for (id, out) in core_ids.iter().chain(&mount_ids).zip(&outcomes) {
            stats.commits += out.commits;
            for s in &out.silent {
                stats.problem(format!(
                    "round {round}: {id}: commit {s:#x} started after the cut and returned success"
                ));
            }
            match &out.error {
                None => stats.problem(format!("round {round}: {id}: no error after the cut")),
                Some(e) if !(e.contains("Input/output error") || e.contains("Read-only")) => {
                    stats.problem(format!("round {round}: {id}: unexpected error {e}"))
                }
                Some(_) => {}
            }
            let found = match verify_file(&session_file(&repo_path, id)) {
                Ok(s) => s,
                Err(why) => {
                    stats.torn += 1;
                    stats.problem(format!("round {round}: {id}: torn session: {why}"));
                    None
                }
            };
            let acked = out.acked.unwrap_or(current[id]);
            if found != Some(acked) && found != out.in_flight {
                stats.lost += 1;
                stats.problem(format!(
                    "round {round}: {id}: after the power cut session is {found:?}; the last \
                     commit that returned is {acked:#x}, in flight {:?}",
                    out.in_flight
                ));
            }
            if let Some(s) = found {
                current.insert(id.clone(), s);
            }
            // A lock left by the cut is a stale lock the core can break.
            let storage = repo.open(OsStr::new(id)).unwrap();
            if storage.location().join(SESSION_NEXT_FILE).exists() {
                stats.stale_locks += 1;
                assert_eq!(
                    storage.lock_state().unwrap(),
                    sessionfs::core::LockState::Stale
                );
                assert!(storage.break_lock(false).unwrap());
            }
        }
        eprintln!(
            "round {round}: commits per writer {:?}",
            outcomes.iter().map(|o| o.commits).collect::<Vec<_>>()
        );
    }
    stats.report_and_check("crash-power-cut");
    assert!(stats.commits > 0, "nothing was committed before the cuts");
}
