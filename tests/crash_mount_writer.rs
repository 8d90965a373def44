//! Writers killed with SIGKILL at random moments while they write a
//! checkpoint through the mount, with and without FUSE passthrough.
//!
//! Each trial starts a writer process (this test binary, re-executed) that
//! opens `session` in the mount, writes a self-verifying checkpoint in
//! chunks with small pauses, and closes it, logging each step with one
//! write(2) to a progress file. The test kills it 0-20 ms after it starts.
//! After every trial:
//! - `session` (read from the repository and through the mount) is one
//!   whole checkpoint;
//! - a writer that had not called close() did not commit (the spec's
//!   Failure rule), one whose close() returned did;
//! - no `session.next` is left (the daemon aborts the dead writer's
//!   checkpoint at its flush).
//!
//! `SESSIONFS_CRASH_TRIALS` sets the number of trials per mode (default
//! 100); `SESSIONFS_SOAK_SECONDS` keeps going for that long.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::fs_helpers::*;
use common::mount::Mounted;
use sessionfs::core::Repository;

const ENTRY: &str = "crash_child_entry";

/// The writer's ways of writing a checkpoint.
// Style 0: open(O_TRUNC), write, close.
const STYLE_RDWR: u64 = 1; // open(O_RDWR): overwrite from 0, ftruncate, close
const STYLE_FSYNC: u64 = 2; // open(O_TRUNC), write, fsync, close

/// The child side: not a test of its own (returns at once in a normal run).
#[test]
fn crash_child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    assert_eq!(role, "mount-writer", "unknown child role");
    mount_writer();
    std::process::exit(0);
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).expect(name))
}

/// Writes one checkpoint through the mount, logging `S` (started), `O`
/// (opened), `W` (all written, about to close or fsync), `F` (fsync
/// returned), `C` (close returned 0) or `X step errno`.
fn mount_writer() {
    let path = env_path("SFS_PATH");
    let log = env_path("SFS_LOG");
    let seed = env_u64("SFS_SEED", 0);
    let len = env_u64("SFS_LEN", 64) as usize;
    let style = env_u64("SFS_STYLE", 0);
    let chunks = env_u64("SFS_CHUNKS", 1).max(1) as usize;
    let pause = env_u64("SFS_PAUSE_US", 0);
    let data = checkpoint(seed, len);
    // A failed step must not end in a normal exit: that closes the file,
    // which commits what was written. SIGKILL ourselves instead.
    let die = |what: String| -> ! {
        log_record(&log, &what);
        // SAFETY: raising a signal in our own process is always valid.
        unsafe { libc::raise(libc::SIGKILL) };
        unreachable!()
    };
    log_record(&log, "S");
    let flags = if style == STYLE_RDWR {
        libc::O_RDWR
    } else {
        libc::O_WRONLY | libc::O_TRUNC
    };
    let fd = match open_raw(&path, flags, 0o644) {
        Ok(fd) => fd,
        Err(e) => die(format!("X open {e}")),
    };
    log_record(&log, "O");
    let chunk = data.len().div_ceil(chunks);
    for part in data.chunks(chunk) {
        if let Err(e) = write_all_raw(&fd, part) {
            die(format!("X write {e}"));
        }
        pause_us(pause);
    }
    if style == STYLE_RDWR
        && let Err(e) = ftruncate_raw(&fd, data.len() as u64)
    {
        die(format!("X ftruncate {e}"));
    }
    log_record(&log, "W");
    if style == STYLE_FSYNC {
        if let Err(e) = fsync_raw(&fd) {
            die(format!("X fsync {e}"));
        }
        log_record(&log, "F");
    }
    match close_raw(fd) {
        Ok(()) => log_record(&log, "C"),
        Err(e) => log_record(&log, &format!("X close {e}")),
    }
}

fn kill_trials(mount_args: &[&str], scenario: &str) {
    let m = Mounted::start(mount_args);
    let passthrough = !mount_args.contains(&"--no-passthrough");
    // The mode under test is really in use.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !m.log_text().contains("passthrough") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let log_text = m.log_text();
    if passthrough {
        assert!(
            log_text.contains("FUSE passthrough to the backing files"),
            "passthrough is not in use: {log_text}"
        );
    }

    fs::create_dir(m.path("crash.session")).expect("mkdir session");
    let session_in_mount = m.path("crash.session/session");
    let session_in_repo = m.repo_path("crash.session/session");
    let next_in_repo = m.repo_path("crash.session/session.next");
    let work = scratch("sessionfs-crash-logs");

    let mut rng = Rng::from_env(scenario);
    let mut stats = Stats::default();
    // The committed checkpoint before the first trial.
    let mut current = 1u64;
    // This process never holds a `session` of the mount open for writing:
    // the other test of this binary starts processes all the time (see
    // `serial`). The first checkpoint comes from the core.
    Repository::new(&m.repo)
        .open(OsStr::new("crash"))
        .unwrap()
        .save(&checkpoint(current, 100))
        .unwrap();
    let mut trials = Trials::new("SESSIONFS_CRASH_TRIALS", 100);
    let mut styles = [0u64; 3];
    let mut in_close_committed = 0u64;
    while trials.another() {
        let trial = trials.done;
        stats.trials += 1;
        let seed = (trial << 16) | 0xC0DE;
        let len = match rng.range(0, 3) {
            0 => rng.range(40, 4096),
            1 => rng.range(4096, 64 << 10),
            _ => rng.range(64 << 10, 512 << 10),
        } as usize;
        let style = rng.range(0, 2);
        styles[style as usize] += 1;
        let chunks = rng.range(1, 16);
        let pause = rng.range(0, 1500);
        let delay = rng.range(0, 20_000);
        let log = work.path().join(format!("trial-{trial}.log"));
        let mut child = child_command(ENTRY, "mount-writer")
            .env("SFS_PATH", &session_in_mount)
            .env("SFS_LOG", &log)
            .env("SFS_SEED", seed.to_string())
            .env("SFS_LEN", len.to_string())
            .env("SFS_STYLE", style.to_string())
            .env("SFS_CHUNKS", chunks.to_string())
            .env("SFS_PAUSE_US", pause.to_string())
            .spawn()
            .expect("spawn writer");
        assert!(
            wait_for_record(&log, "S", &mut child, Duration::from_secs(20)),
            "the writer never started"
        );
        pause_us(delay);
        kill_and_reap(&mut child);
        let records = read_records(&log);
        let has = |r: &str| records.iter().any(|x| x == r);
        if let Some(x) = records.iter().find(|r| r.starts_with('X')) {
            stats.problem(format!(
                "trial {trial}: the writer failed: {x} ({records:?})"
            ));
        }

        let on_disk = fs::read(&session_in_repo).expect("read session from the repository");
        let found = match verify(&on_disk) {
            Ok(s) => Some(s),
            Err(why) => {
                stats.torn += 1;
                stats.problem(format!("trial {trial}: torn session: {why}"));
                None
            }
        };
        let committed = found == Some(seed);
        if committed {
            stats.commits += 1;
        }
        if has("C") || has("F") {
            // close() or fsync() returned success: committed.
            if !committed {
                stats.lost += 1;
                stats.problem(format!(
                    "trial {trial}: the writer's commit returned but session is {found:?} ({records:?})"
                ));
            }
        } else if has("W") {
            // Killed inside close()/fsync(): either outcome is allowed.
            stats.killed_in_close += 1;
            in_close_committed += u64::from(committed);
            if !committed && found != Some(current) {
                stats.lost += 1;
                stats.problem(format!(
                    "trial {trial}: session is {found:?}, neither the old {current:#x} nor the new {seed:#x}"
                ));
            }
        } else {
            if has("O") {
                stats.killed_before_close += 1;
            }
            if committed {
                stats.killed_committed += 1;
                stats.problem(format!(
                    "trial {trial}: a writer killed before close() committed its data \
                     (style {style}, {len} bytes, records {records:?})"
                ));
            } else if found != Some(current) {
                stats.lost += 1;
                stats.problem(format!(
                    "trial {trial}: the previous checkpoint {current:#x} did not survive: {found:?}"
                ));
            }
        }
        if let Some(s) = found {
            current = s;
        }
        // The mount serves the same whole checkpoint.
        let through = fs::read(&session_in_mount).expect("read session through the mount");
        if through != on_disk {
            stats.problem(format!(
                "trial {trial}: the mount serves {:?}, the repository holds {found:?}",
                verify(&through)
            ));
        }
        // The daemon aborted the dead writer's checkpoint.
        if next_in_repo.exists() {
            stats.stale_locks += 1;
            stats.problem(format!(
                "trial {trial}: session.next left after a killed writer ({records:?})"
            ));
            // A stale lock shows in the mount and `rm` clears it.
            assert!(m.path("crash.session/session.next").exists());
            fs::remove_file(m.path("crash.session/session.next")).expect("rm session.next");
        }
        let _ = fs::remove_file(&log);
    }
    eprintln!(
        "{scenario}: styles (trunc, rdwr, fsync) = {styles:?}; killed before close {}, \
         in close {} (of which committed {in_close_committed}), commits {}",
        stats.killed_before_close, stats.killed_in_close, stats.commits
    );
    // The mount is still healthy: a writer left alone commits.
    let log = work.path().join("last.log");
    let mut child = child_command(ENTRY, "mount-writer")
        .env("SFS_PATH", &session_in_mount)
        .env("SFS_LOG", &log)
        .env("SFS_SEED", "7")
        .env("SFS_LEN", "1000")
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(read_records(&log), vec!["S", "O", "W", "C"]);
    assert_eq!(verify(&fs::read(&session_in_repo).unwrap()), Ok(7));
    assert!(
        !m.log_text().contains("panicked"),
        "the daemon panicked: {}",
        m.log_text()
    );
    stats.report_and_check(scenario);
    assert!(
        stats.killed_before_close > 0,
        "no trial killed a writer before it closed: the test proves nothing"
    );
}

#[test]
fn writers_killed_through_the_mount_with_passthrough_never_commit_partial_data() {
    kill_trials(&[], "crash-mount-writer-passthrough");
}

#[test]
fn writers_killed_through_the_mount_without_passthrough_never_commit_partial_data() {
    kill_trials(&["--no-passthrough"], "crash-mount-writer-daemon-io");
}

/// Not a trial loop: a writer killed after writing everything but before
/// close() (the most tempting case to commit) leaves the old checkpoint.
#[test]
fn a_writer_killed_with_everything_written_but_not_closed_does_not_commit() {
    for args in [&[][..], &["--no-passthrough"][..]] {
        let m = Mounted::start(args);
        fs::create_dir(m.path("k.session")).unwrap();
        let path = m.path("k.session/session");
        Repository::new(&m.repo)
            .open(OsStr::new("k"))
            .unwrap()
            .save(&checkpoint(1, 5000))
            .unwrap();
        for signal in [libc::SIGKILL, libc::SIGTERM] {
            let work = scratch("sessionfs-killed-writer");
            let log = work.path().join("log");
            // The writer pauses for a long time after its last chunk.
            let mut child = child_command(ENTRY, "mount-writer")
                .env("SFS_PATH", &path)
                .env("SFS_LOG", &log)
                .env("SFS_SEED", "99")
                .env("SFS_LEN", "20000")
                .env("SFS_CHUNKS", "1")
                .env("SFS_PAUSE_US", "10000000")
                .spawn()
                .unwrap();
            assert!(wait_for_record(
                &log,
                "O",
                &mut child,
                Duration::from_secs(20)
            ));
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
            let _ = child.wait();
            assert_eq!(read_records(&log), vec!["S", "O"]);
            assert_eq!(
                verify_file(&m.repo_path("k.session/session")),
                Ok(Some(1)),
                "signal {signal}, mount args {args:?}: {}",
                m.log_text()
            );
            assert!(!m.repo_path("k.session/session.next").exists());
        }
        // The same writer left to finish commits.
        let work = scratch("sessionfs-exiting-writer");
        let log = work.path().join("log");
        let mut child = child_command(ENTRY, "mount-writer")
            .env("SFS_PATH", &path)
            .env("SFS_LOG", &log)
            .env("SFS_SEED", "100")
            .env("SFS_LEN", "3000")
            .spawn()
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            verify_file(&m.repo_path("k.session/session")),
            Ok(Some(100))
        );
    }
}
