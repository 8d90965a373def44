//! Checkpoints: load, save, the streaming writer, the fault seam under the
//! commit protocol, locks between threads and processes, breaking locks,
//! and the session manager and store built on top.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::repo::{TestRepo, assert_no_next, finish, mode_of, pattern, which_pattern};
use sessionfs::core::manager::LoadError;
use sessionfs::core::{
    BeginOptions, Error, FailStep, LockState, Op, RepositoryStore, SESSION_FILE, SESSION_NEXT_FILE,
    SessionManager, SessionState, SessionStore, Start, Step, Storage,
};

const MIB: usize = 1 << 20;

fn next_path(s: &Storage) -> std::path::PathBuf {
    s.location().join(SESSION_NEXT_FILE)
}

fn session_path(s: &Storage) -> std::path::PathBuf {
    s.location().join(SESSION_FILE)
}

fn process_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("Umask:"))
        .expect("Umask in /proc/self/status");
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

// ---------------------------------------------------------------- load and save

#[test]
fn a_session_without_checkpoint_loads_as_empty() {
    let t = TestRepo::new();
    let s = t.create();
    assert_eq!(s.load().unwrap(), b"");
    assert!(s.open_checkpoint().unwrap().is_none());
    assert!(s.checkpoint_info().unwrap().is_none());
    assert_eq!(s.lock_state().unwrap(), LockState::Unlocked);
    // Loading creates nothing.
    assert!(!session_path(&s).exists());
    assert_no_next(&s);
}

#[test]
fn save_then_load_round_trips_every_byte() {
    let t = TestRepo::new();
    let s = t.create();
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096 + 17).collect();
    for data in [
        b"hello".to_vec(),
        Vec::new(),
        all_bytes,
        b"\0\0\0\xff\xfe\n\r".to_vec(),
        b"short".to_vec(),
    ] {
        s.save(&data).unwrap();
        assert_no_next(&s);
        assert_eq!(s.load().unwrap(), data);
        assert_eq!(std::fs::read(session_path(&s)).unwrap(), data);
        let info = s.checkpoint_info().unwrap().unwrap();
        assert_eq!(info.size, data.len() as u64);
    }
}

#[test]
fn a_large_checkpoint_round_trips() {
    let t = TestRepo::new();
    let s = t.create();
    let big = pattern(7, 8 * MIB + 3);
    s.save(&big).unwrap();
    assert_no_next(&s);
    assert!(s.load().unwrap() == big, "8 MiB checkpoint differs");
    // A smaller one after it leaves no tail behind.
    s.save(b"tiny").unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"tiny");
}

#[test]
fn an_open_checkpoint_reads_one_version_while_others_commit() {
    let t = TestRepo::new();
    let s = t.create();
    let first = pattern(1, MIB);
    s.save(&first).unwrap();
    let mut f = s.open_checkpoint().unwrap().unwrap();
    s.save(&pattern(2, MIB / 2)).unwrap();
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    assert!(got == first);
    assert_no_next(&s);
}

#[test]
fn new_checkpoints_get_mode_0644_less_umask_and_keep_a_previous_mode() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"one").unwrap();
    assert_no_next(&s);
    assert_eq!(mode_of(&session_path(&s)), 0o644 & !process_umask());

    for mode in [0o600, 0o640, 0o604] {
        std::fs::set_permissions(
            session_path(&s),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
        s.save(b"two").unwrap();
        assert_no_next(&s);
        assert_eq!(mode_of(&session_path(&s)), mode, "mode {mode:o} not kept");
        // The streaming writer too.
        let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
        w.write_at(b"three", 0).unwrap();
        w.commit().unwrap();
        assert_no_next(&s);
        assert_eq!(mode_of(&session_path(&s)), mode);
    }
}

#[test]
fn a_previous_0644_checkpoint_keeps_its_mode_under_a_strict_umask() {
    // umask is per process: run the command line under `umask 077`.
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"old").unwrap();
    std::fs::set_permissions(
        session_path(&s),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let input = t.root().join("input");
    std::fs::write(&input, b"new").unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg("umask 077 && exec \"$0\" --repo \"$1\" checkpoint \"$2\" \"$3\"")
        .arg(env!("CARGO_BIN_EXE_sessionfs"))
        .arg(t.path())
        .arg(s.id())
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"new");
    assert_eq!(mode_of(&session_path(&s)), 0o644);

    // Without a previous checkpoint, the umask applies.
    let s2 = t.create();
    let status = Command::new("sh")
        .arg("-c")
        .arg("umask 077 && exec \"$0\" --repo \"$1\" checkpoint \"$2\" \"$3\"")
        .arg(env!("CARGO_BIN_EXE_sessionfs"))
        .arg(t.path())
        .arg(s2.id())
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mode_of(&session_path(&s2)), 0o600);
}

#[test]
fn snapshots_keep_the_previous_mode_under_a_strict_umask() {
    // umask is per process: this test re-runs itself in a child that sets
    // `umask 077` (the variable tells the child which session to use).
    const VAR: &str = "SESSIONFS_TEST_SNAPSHOT_SESSION";
    if let Some(dir) = std::env::var_os(VAR) {
        // SAFETY: umask has no preconditions; this child runs only this test.
        unsafe { libc::umask(0o077) };
        let dir = std::path::PathBuf::from(dir);
        let repo = sessionfs::core::Repository::new(dir.parent().unwrap());
        let id = dir.file_name().unwrap().to_str().unwrap();
        let s = repo
            .open(OsStr::new(id.strip_suffix(".session").unwrap()))
            .unwrap();
        let mut w = s.begin(BeginOptions::new(Start::FromCurrent)).unwrap();
        w.write_at(b"-snap", 3).unwrap();
        w.commit_snapshot().unwrap();
        w.write_at(b"-more", 8).unwrap();
        w.abort().unwrap();
        return;
    }
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"old").unwrap();
    std::fs::set_permissions(
        session_path(&s),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "snapshots_keep_the_previous_mode_under_a_strict_umask",
            "--test-threads=1",
        ])
        .env(VAR, s.location())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"old-snap");
    assert_eq!(mode_of(&session_path(&s)), 0o644);
}

#[test]
fn a_symlinked_session_file_is_never_written_through() {
    let t = TestRepo::new();
    let s = t.create();
    let outside = t.outside("out").join("victim");
    std::fs::write(&outside, b"outside data").unwrap();
    symlink(&outside, session_path(&s)).unwrap();

    // Reading refuses rather than reading outside.
    match s.load() {
        Err(Error::UnexpectedFileType { path, .. }) => assert_eq!(path, session_path(&s)),
        other => panic!("expected UnexpectedFileType, got {other:?}"),
    }
    assert!(s.open_checkpoint().is_err());
    // Starting from the current checkpoint refuses too, and leaves no lock.
    assert!(s.begin(BeginOptions::new(Start::FromCurrent)).is_err());
    assert_no_next(&s);

    // Saving replaces the link with a regular file.
    s.save(b"inside data").unwrap();
    assert_no_next(&s);
    assert_eq!(std::fs::read(&outside).unwrap(), b"outside data");
    let meta = std::fs::symlink_metadata(session_path(&s)).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(s.load().unwrap(), b"inside data");
    // The outside file's mode was not adopted from or applied to the link.
    assert_eq!(mode_of(&outside), 0o644 & !process_umask());
}

#[test]
fn a_planted_session_next_symlink_is_a_lock_and_is_never_followed() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let outside = t.outside("out").join("target");
    std::fs::write(&outside, b"outside").unwrap();
    symlink(&outside, next_path(&s)).unwrap();
    assert!(matches!(s.save(b"new"), Err(Error::Locked { .. })));
    assert_eq!(std::fs::read(&outside).unwrap(), b"outside");
    assert_eq!(s.load().unwrap(), b"previous");
    assert_eq!(s.lock_state().unwrap(), LockState::Stale);
    assert!(s.break_lock(false).unwrap());
    assert!(std::fs::symlink_metadata(next_path(&s)).is_err());
    assert_eq!(std::fs::read(&outside).unwrap(), b"outside");
    s.save(b"new").unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"new");
}

#[test]
fn checkpoints_need_an_existing_session() {
    let t = TestRepo::new();
    let s = t.create();
    s.remove().unwrap();
    assert!(matches!(s.save(b"x"), Err(Error::NoSuchSession { .. })));
    assert!(matches!(s.load(), Err(Error::NoSuchSession { .. })));
    assert!(!s.location().exists(), "save must not recreate the session");
}

// ---------------------------------------------------------------- streaming writer

#[test]
fn the_streaming_writer_writes_at_offsets_truncates_and_reads_back() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous checkpoint").unwrap();
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    assert!(next_path(&s).exists());
    assert_eq!(w.len().unwrap(), 0);
    assert!(w.is_empty().unwrap());
    assert_eq!(w.storage().name(), s.name());

    w.write_at(b"world", 6).unwrap();
    w.write_at(b"hello", 0).unwrap();
    assert_eq!(w.len().unwrap(), 11);
    let mut buf = [0xaau8; 16];
    let n = w.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"hello\0world");
    let n = w.read_at(&mut buf, 6).unwrap();
    assert_eq!(&buf[..n], b"world");
    assert_eq!(w.read_at(&mut buf, 100).unwrap(), 0);

    // Readers still see the previous checkpoint while the writer works.
    assert_eq!(s.load().unwrap(), b"previous checkpoint");
    assert_eq!(s.lock_state().unwrap(), LockState::Held);

    w.set_len(8).unwrap();
    assert_eq!(w.len().unwrap(), 8);
    w.set_len(10).unwrap();
    let n = w.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"hello\0wo\0\0");
    w.set_len(5).unwrap();
    // A large sparse write far out.
    w.write_at(b"!", 3 * MIB as u64).unwrap();
    w.set_len(6).unwrap();
    w.write_at(b"?", 5).unwrap();
    w.commit().unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"hello?");
    assert_eq!(s.lock_state().unwrap(), LockState::Unlocked);
}

#[test]
fn the_streaming_writer_can_start_from_the_current_checkpoint() {
    let t = TestRepo::new();
    let s = t.create();
    // Nothing to start from: empty.
    let w = s.begin(BeginOptions::new(Start::FromCurrent)).unwrap();
    assert_eq!(w.len().unwrap(), 0);
    w.abort().unwrap();
    assert_no_next(&s);

    let big = pattern(3, 2 * MIB + 5);
    s.save(&big).unwrap();
    let mut w = s.begin(BeginOptions::new(Start::FromCurrent)).unwrap();
    assert_eq!(w.len().unwrap(), big.len() as u64);
    let mut back = vec![0u8; big.len()];
    assert_eq!(w.read_at(&mut back, 0).unwrap(), big.len());
    assert!(back == big);
    // Append, as `>>` does.
    w.write_at(b"tail", big.len() as u64).unwrap();
    w.write_at(b"HEAD", 0).unwrap();
    w.commit().unwrap();
    assert_no_next(&s);
    let mut expected = big.clone();
    expected[..4].copy_from_slice(b"HEAD");
    expected.extend_from_slice(b"tail");
    assert!(s.load().unwrap() == expected);

    // Start::Empty ignores the current checkpoint.
    let w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    assert_eq!(w.len().unwrap(), 0);
    w.commit().unwrap();
    assert_eq!(s.load().unwrap(), b"");
}

#[test]
fn abort_and_drop_leave_the_previous_checkpoint() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"keep me").unwrap();

    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"discarded", 0).unwrap();
    w.abort().unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"keep me");

    {
        let mut w = s.begin(BeginOptions::new(Start::FromCurrent)).unwrap();
        w.write_at(b"also discarded", 0).unwrap();
        assert!(next_path(&s).exists());
    } // dropped without commit
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"keep me");
    // The lock is free again.
    s.save(b"next").unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"next");
}

#[test]
fn commit_if_asks_after_the_sync_and_aborts_when_told_no() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"keep me").unwrap();

    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"refused", 0).unwrap();
    let next = next_path(&s);
    let committed = w
        .commit_if(|| {
            // Asked with the lock still held, before the rename.
            assert!(next.exists());
            false
        })
        .unwrap();
    assert!(!committed);
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"keep me");

    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"accepted", 0).unwrap();
    assert!(w.commit_if(|| true).unwrap());
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"accepted");
}

#[test]
fn a_snapshot_removes_temporaries_a_crashed_snapshot_left() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"old").unwrap();
    // What a writer killed in the middle of a snapshot leaves behind.
    let stale = s.location().join(".session.snapshot-999999-7");
    std::fs::write(&stale, b"half a cop").unwrap();
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"new", 0).unwrap();
    w.commit_snapshot().unwrap();
    assert!(!stale.exists());
    assert_eq!(s.load().unwrap(), b"new");
    w.abort().unwrap();
    assert_no_next(&s);
    let mut names: Vec<String> = std::fs::read_dir(s.location())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["io-logs", "session"]);
}

#[test]
fn commit_snapshot_commits_what_was_written_and_keeps_writing() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"old").unwrap();
    std::fs::set_permissions(
        session_path(&s),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"part one", 0).unwrap();
    w.commit_snapshot().unwrap();
    assert_eq!(s.load().unwrap(), b"part one");
    assert_eq!(mode_of(&session_path(&s)), 0o600);
    // Still locked, still writing.
    assert_eq!(s.lock_state().unwrap(), LockState::Held);
    assert!(matches!(s.save(b"x"), Err(Error::Locked { .. })));
    w.write_at(b", part two", 8).unwrap();
    w.commit().unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"part one, part two");
    assert_eq!(mode_of(&session_path(&s)), 0o600);
    // No snapshot temporaries are left.
    let names: Vec<String> = std::fs::read_dir(s.location())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["io-logs", "session"]);
}

#[test]
fn commit_file_renames_a_session_file_over_the_checkpoint() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"old").unwrap();
    std::fs::write(s.location().join("tmp.swp"), b"edited").unwrap();
    s.commit_file(OsStr::new("tmp.swp")).unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"edited");
    assert!(!s.location().join("tmp.swp").exists());

    // Refused under a lock, with the file left alone.
    std::fs::write(s.location().join("tmp2"), b"second").unwrap();
    let w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    assert!(matches!(
        s.commit_file(OsStr::new("tmp2")),
        Err(Error::Locked { .. })
    ));
    drop(w);
    assert_eq!(s.load().unwrap(), b"edited");
    assert!(s.location().join("tmp2").exists());

    // A symlink is not a checkpoint.
    let outside = t.outside("o").join("f");
    std::fs::write(&outside, b"outside").unwrap();
    symlink(&outside, s.location().join("link")).unwrap();
    assert!(s.commit_file(OsStr::new("link")).is_err());
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"edited");
    // A directory is not either.
    assert!(s.commit_file(OsStr::new("io-logs")).is_err());
    assert_no_next(&s);
    assert!(s.location().join("io-logs").is_dir());
}

// ---------------------------------------------------------------- fault seam

fn op_for(step: Step) -> Op {
    match step {
        Step::CreateNext => Op::CreateCheckpoint,
        Step::Write => Op::WriteCheckpoint,
        Step::SyncFile => Op::SyncCheckpoint,
        Step::Rename => Op::RenameCheckpoint,
        Step::SyncDir => Op::SyncDirectory,
        Step::MakeWellKnownDirs | Step::SyncRepository => panic!("{step:?} is not a commit step"),
    }
}

#[test]
fn every_failing_step_fails_the_save_and_names_the_path_and_operation() {
    for step in Step::ALL {
        let t = TestRepo::new();
        let plain = t.create();
        plain.save(b"previous").unwrap();
        let repo = t.with_seam(Arc::new(FailStep::new(step, libc::EIO, 1)));
        let s = repo.open(plain.id()).unwrap();

        let err = s.save(b"new data").expect_err("the save must fail");
        assert_no_next(&s);
        let msg = err.to_string();
        assert!(
            msg.contains(&s.location().display().to_string()),
            "{step:?}: message without the path: {msg}"
        );
        match (step, &err) {
            (Step::SyncDir, Error::NotDurable { path, source }) => {
                // The new checkpoint is in place, but maybe not durable.
                assert_eq!(path, &s.location());
                assert_eq!(source.raw_os_error(), Some(libc::EIO));
                assert!(msg.contains("fsync session directory"), "{msg}");
                assert_eq!(s.load().unwrap(), b"new data");
            }
            (Step::SyncDir, other) => panic!("SyncDir gave {other:?}"),
            (_, Error::Io { op, path, source }) => {
                assert_eq!(*op, op_for(step), "{step:?}");
                assert!(msg.contains(&op.to_string()), "{step:?}: {msg}");
                if step == Step::CreateNext {
                    assert_eq!(path, &next_path(&s), "{step:?}");
                } else {
                    // The data is written to a uniquely named temporary.
                    assert_eq!(path.parent(), Some(s.location().as_path()), "{step:?}");
                    let name = path.file_name().unwrap().to_string_lossy();
                    assert!(name.starts_with(".session.tmp-"), "{step:?}: {name}");
                }
                assert_eq!(source.raw_os_error(), Some(libc::EIO));
                assert_eq!(s.load().unwrap(), b"previous", "{step:?}");
                assert_eq!(mode_of(&session_path(&s)) & 0o777, 0o644 & !process_umask());
            }
            (_, other) => panic!("{step:?} gave {other:?}"),
        }
        // Only one failure was injected: the next save goes through.
        s.save(b"after").unwrap();
        assert_no_next(&s);
        assert_eq!(s.load().unwrap(), b"after");
    }
}

#[test]
fn every_failing_step_fails_the_streaming_writer_cleanly() {
    for step in Step::ALL {
        let t = TestRepo::new();
        let plain = t.create();
        plain.save(b"previous").unwrap();
        let repo = t.with_seam(Arc::new(FailStep::new(step, libc::ENOSPC, 1)));
        let s = repo.open(plain.id()).unwrap();
        let result = s
            .begin(BeginOptions::new(Start::FromCurrent))
            .and_then(|mut w| {
                w.write_at(b" and more", 8)?;
                w.write_at(b"!", 17)?;
                w.commit()
            });
        let err = result.expect_err("must fail");
        let errno = match &err {
            Error::Io { source, .. } | Error::NotDurable { source, .. } => source.raw_os_error(),
            other => panic!("{step:?}: not an I/O error: {other:?}"),
        };
        assert_eq!(errno, Some(libc::ENOSPC), "{step:?}: {err:?}");
        assert_no_next(&s);
        if step == Step::SyncDir {
            assert!(matches!(err, Error::NotDurable { .. }));
            assert_eq!(s.load().unwrap(), b"previous and more!");
        } else {
            assert_eq!(s.load().unwrap(), b"previous", "{step:?}");
        }
    }
}

#[test]
fn a_failed_write_mid_stream_aborts_on_drop() {
    let t = TestRepo::new();
    let plain = t.create();
    plain.save(b"previous").unwrap();
    // Fail the third write.
    #[derive(Debug)]
    struct ThirdWrite(AtomicUsize);
    impl sessionfs::core::FaultSeam for ThirdWrite {
        fn before(&self, step: Step, _path: &Path) -> std::io::Result<()> {
            if step == Step::Write && self.0.fetch_add(1, Ordering::SeqCst) == 2 {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            Ok(())
        }
    }
    let repo = t.with_seam(Arc::new(ThirdWrite(AtomicUsize::new(0))));
    let s = repo.open(plain.id()).unwrap();
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"a", 0).unwrap();
    w.write_at(b"b", 1).unwrap();
    assert!(w.write_at(b"c", 2).is_err());
    drop(w);
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"previous");
}

// ---------------------------------------------------------------- locks

#[test]
fn an_existing_session_next_means_locked() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    std::fs::write(next_path(&s), b"someone else's partial data").unwrap();
    match s.save(b"new") {
        Err(e @ Error::Locked { .. }) => {
            assert!(e.is_locked());
            assert!(e.to_string().contains(&next_path(&s).display().to_string()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(matches!(
        s.begin(BeginOptions::new(Start::Empty)),
        Err(Error::Locked { .. })
    ));
    // The foreign lock is untouched, the checkpoint too.
    assert_eq!(
        std::fs::read(next_path(&s)).unwrap(),
        b"someone else's partial data"
    );
    assert_eq!(s.load().unwrap(), b"previous");
    assert_eq!(s.lock_state().unwrap(), LockState::Stale);
}

#[test]
fn a_second_writer_in_another_thread_gets_locked() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"first writer", 0).unwrap();
    let other = s.clone();
    let r = std::thread::spawn(move || other.save(b"second writer"))
        .join()
        .unwrap();
    assert!(matches!(r, Err(Error::Locked { .. })), "{r:?}");
    // The loser did not remove the winner's lock.
    assert!(next_path(&s).exists());
    assert_eq!(s.lock_state().unwrap(), LockState::Held);
    w.commit().unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"first writer");
}

#[test]
fn racing_writers_never_mix_their_checkpoints() {
    let t = TestRepo::new();
    let s = t.create();
    const WRITERS: usize = 4;
    const ROUNDS: usize = 12;
    let patterns: Arc<Vec<Vec<u8>>> =
        Arc::new((0..WRITERS).map(|i| pattern(i as u8 + 1, MIB)).collect());
    let barrier = Arc::new(Barrier::new(2));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, patterns, stop, barrier) =
            (s.clone(), patterns.clone(), stop.clone(), barrier.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let mut seen = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let data = s.load().unwrap();
                if !data.is_empty() {
                    assert!(
                        which_pattern(&data, &patterns).is_some(),
                        "a reader saw a mixed or partial checkpoint of {} bytes",
                        data.len()
                    );
                    seen += 1;
                }
            }
            seen
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (s, patterns) = (s.clone(), patterns.clone());
            std::thread::spawn(move || {
                let (mut ok, mut locked) = (0, 0);
                for _ in 0..ROUNDS {
                    match s.save(&patterns[i]) {
                        Ok(()) => ok += 1,
                        Err(Error::Locked { .. }) => locked += 1,
                        Err(e) => panic!("writer {i}: unexpected error {e}"),
                    }
                }
                (ok, locked)
            })
        })
        .collect();
    barrier.wait();
    let results: Vec<(usize, usize)> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let total_ok: usize = results.iter().map(|r| r.0).sum();
    assert!(total_ok >= 1, "no save succeeded: {results:?}");
    assert_no_next(&s);
    let last = s.load().unwrap();
    assert!(
        which_pattern(&last, &patterns).is_some(),
        "the final checkpoint is not one writer's full pattern ({} bytes)",
        last.len()
    );
}

#[test]
fn looking_at_the_lock_never_makes_a_writer_fail() {
    // `list`, `gc` and the mount probe the lock while checkpoints are being
    // written; a probe must not be mistaken for a competing writer.
    let t = TestRepo::new();
    let s = t.create();
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    match s.lock_state() {
                        Ok(LockState::Held) => held += 1,
                        Ok(_) => {}
                        Err(e) => panic!("lock_state: {e}"),
                    }
                }
                held
            })
        })
        .collect();
    let mut failures = Vec::new();
    for i in 0..300u32 {
        if let Err(e) = s.save(&i.to_le_bytes()) {
            failures.push(e.to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for p in probes {
        p.join().unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of 300 saves failed, e.g. {}",
        failures.len(),
        failures[0]
    );
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), 299u32.to_le_bytes());
}

#[test]
fn a_writer_in_this_process_locks_out_the_command_line() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"in-process writer", 0).unwrap();
    let out = t.cli_stdin(["checkpoint", s.id().to_str().unwrap()], b"cli data");
    let line = out.assert_error(3);
    assert!(line.contains("locked"), "{line}");
    assert!(next_path(&s).exists());
    w.commit().unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"in-process writer");
}

#[test]
fn concurrent_command_line_checkpoints_never_mix() {
    let t = TestRepo::new();
    let s = t.create();
    const PROCS: usize = 6;
    let patterns: Vec<Vec<u8>> = (0..PROCS).map(|i| pattern(40 + i as u8, 4 * MIB)).collect();
    let inputs: Vec<_> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = t.root().join(format!("input-{i}"));
            std::fs::write(&path, p).unwrap();
            path
        })
        .collect();
    for round in 0..3 {
        let children: Vec<Child> = inputs
            .iter()
            .map(|input| {
                t.cli_command(["checkpoint"])
                    .arg(s.id())
                    .arg(input)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ok = 0;
        for child in children {
            let out = finish(child);
            match out.code {
                Some(0) => ok += 1,
                Some(3) => {
                    out.assert_error(3);
                }
                _ => panic!("round {round}: unexpected result {out:?}"),
            }
        }
        assert!(ok >= 1, "round {round}: no checkpoint succeeded");
        assert_no_next(&s);
        let data = s.load().unwrap();
        assert!(
            which_pattern(&data, &patterns).is_some(),
            "round {round}: the checkpoint is not one whole input"
        );
    }
}

// ---------------------------------------------------------------- break lock

/// A child process that takes the lock the way a writer does (O_EXCL +
/// a POSIX record lock, which conflicts with open file description locks)
/// and sleeps; killed when dropped.
struct LockHolder {
    child: Child,
}

impl LockHolder {
    fn spawn(next: &Path) -> LockHolder {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(
                "import fcntl, os, sys, time\n\
                 fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)\n\
                 os.write(fd, b'partial')\n\
                 fcntl.lockf(fd, fcntl.LOCK_EX)\n\
                 print('ready', flush=True)\n\
                 time.sleep(120)\n",
            )
            .arg(next)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "lock holder did not start");
        LockHolder { child }
    }

    /// SIGKILLs the child and reaps it.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn break_lock_without_a_lock_does_nothing() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"data").unwrap();
    assert_no_next(&s);
    assert!(!s.break_lock(false).unwrap());
    assert!(!s.break_lock(true).unwrap());
    assert_eq!(s.load().unwrap(), b"data");
}

#[test]
fn break_lock_removes_a_stale_lock() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"data").unwrap();
    // As plainbox leaves it: a plain file, nobody holding it.
    std::fs::write(next_path(&s), b"partial").unwrap();
    assert_eq!(s.lock_state().unwrap(), LockState::Stale);
    assert!(s.break_lock(false).unwrap());
    assert_no_next(&s);
    assert_eq!(s.lock_state().unwrap(), LockState::Unlocked);
    assert_eq!(s.load().unwrap(), b"data");
    s.save(b"after").unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"after");
}

#[test]
fn break_lock_refuses_a_live_writer_in_this_process_unless_forced() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"victim data", 0).unwrap();
    match s.break_lock(false) {
        Err(e @ Error::LockHeld { .. }) => {
            assert!(e.is_locked());
            assert!(e.to_string().contains(&next_path(&s).display().to_string()));
        }
        other => panic!("expected LockHeld, got {other:?}"),
    }
    assert!(next_path(&s).exists());

    assert!(s.break_lock(true).unwrap());
    assert!(!next_path(&s).exists());
    // The broken writer cannot commit: its data never becomes the checkpoint.
    match w.commit() {
        Err(Error::LockLost { .. }) => {}
        other => panic!("expected LockLost, got {other:?}"),
    }
    assert_eq!(s.load().unwrap(), b"previous");
    assert_no_next(&s);
}

#[test]
fn a_broken_writer_never_touches_the_lock_of_the_writer_after_it() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let mut old = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    old.write_at(b"old writer", 0).unwrap();
    assert!(s.break_lock(true).unwrap());
    let mut new = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    new.write_at(b"new writer", 0).unwrap();

    // The old writer's commit fails and its abort (or drop) leaves the new
    // writer's session.next alone.
    let old2 = s.begin(BeginOptions::new(Start::Empty));
    assert!(matches!(old2, Err(Error::Locked { .. })));
    assert!(matches!(old.commit(), Err(Error::LockLost { .. })));
    assert!(next_path(&s).exists(), "the new writer's lock was removed");
    assert_eq!(s.load().unwrap(), b"previous");
    new.commit().unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"new writer");

    // Same with abort.
    let a = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    assert!(s.break_lock(true).unwrap());
    let b = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    a.abort().unwrap();
    assert!(next_path(&s).exists());
    b.abort().unwrap();
    assert_no_next(&s);
}

#[test]
fn break_lock_refuses_a_live_writer_in_another_process_unless_forced() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let holder = LockHolder::spawn(&next_path(&s));
    assert_eq!(s.lock_state().unwrap(), LockState::Held);
    assert!(matches!(s.break_lock(false), Err(Error::LockHeld { .. })));
    assert!(next_path(&s).exists());
    assert!(matches!(s.save(b"x"), Err(Error::Locked { .. })));

    // The command line refuses too, with the locked exit code.
    let out = t.cli(["break-lock", s.id().to_str().unwrap()]);
    out.assert_error(3);
    assert!(next_path(&s).exists());
    t.cli(["break-lock", "--force", s.id().to_str().unwrap()])
        .assert_ok();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"previous");
    holder.kill();
}

#[test]
fn a_lock_left_by_a_killed_process_is_stale_and_can_be_broken() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let holder = LockHolder::spawn(&next_path(&s));
    assert_eq!(s.lock_state().unwrap(), LockState::Held);
    holder.kill();
    // The file stays, but nobody holds it any more.
    assert!(next_path(&s).exists());
    assert_eq!(s.lock_state().unwrap(), LockState::Stale);
    assert!(matches!(s.save(b"x"), Err(Error::Locked { .. })));
    assert!(s.break_lock(false).unwrap());
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"previous");
    s.save(b"after").unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"after");
}

#[test]
fn a_sessionfs_checkpoint_killed_mid_write_leaves_a_stale_lock() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    // The command line reads stdin into the checkpoint: give it some, keep
    // the pipe open, then kill it.
    let mut child = t
        .cli_command(["checkpoint"])
        .arg(s.id())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(&pattern(9, MIB)).unwrap();
        stdin.flush().unwrap();
    }
    // Wait until the writer holds the lock.
    let mut held = false;
    for _ in 0..500 {
        if s.lock_state().unwrap() == LockState::Held {
            held = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(held, "the command line never took the lock");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(s.load().unwrap(), b"previous");
    assert_eq!(s.lock_state().unwrap(), LockState::Stale);
    assert!(s.break_lock(false).unwrap());
    assert_no_next(&s);
}

// ---------------------------------------------------------------- session manager

#[derive(Debug, Clone, PartialEq)]
struct Counter(u32);

#[derive(Debug)]
struct BadState;

impl std::fmt::Display for BadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a counter")
    }
}

impl std::error::Error for BadState {}

impl SessionState for Counter {
    type Error = BadState;
    fn suspend(&self) -> Vec<u8> {
        self.0.to_string().into_bytes()
    }
    fn resume(data: &[u8]) -> Result<Self, BadState> {
        if data.is_empty() {
            return Ok(Counter(0));
        }
        std::str::from_utf8(data)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Counter)
            .ok_or(BadState)
    }
}

#[test]
fn the_manager_creates_checkpoints_loads_and_destroys() {
    let t = TestRepo::new();
    let mut m = SessionManager::create(t.repo(), "mgr-", false, Counter(1)).unwrap();
    let storage = m.storage().clone();
    assert!(storage.id().to_str().unwrap().starts_with("mgr-"));
    assert!(storage.location().join("io-logs").is_dir());
    m.checkpoint().unwrap();
    assert_no_next(&storage);
    assert_eq!(storage.load().unwrap(), b"1");
    m.state_mut().0 = 41;
    m.checkpoint().unwrap();
    assert_no_next(&storage);

    let reopened = t.repo().open(storage.id()).unwrap();
    let mut m2 = SessionManager::<Counter>::load(reopened).unwrap();
    assert_eq!(m2.state(), &Counter(41));
    m2.state_mut().0 += 1;
    m2.checkpoint().unwrap();
    assert_eq!(storage.load().unwrap(), b"42");

    // A session without checkpoint resumes from empty bytes; load restores
    // the well-known directories.
    let empty = t.create();
    std::fs::remove_dir(empty.location().join("io-logs")).unwrap();
    let m3 = SessionManager::<Counter>::load(empty.clone()).unwrap();
    assert_eq!(m3.state(), &Counter(0));
    assert!(empty.location().join("io-logs").is_dir());

    // Bad state bytes are the state's error, not the storage's.
    empty.save(b"garbage").unwrap();
    assert_no_next(&empty);
    match SessionManager::<Counter>::load(empty.clone()) {
        Err(LoadError::State(BadState)) => {}
        other => panic!("expected a state error, got {other:?}"),
    }
    // A missing session is a storage error.
    m3.destroy().unwrap();
    assert!(!empty.location().exists());
    assert!(matches!(
        SessionManager::<Counter>::load(empty),
        Err(LoadError::Storage(Error::NoSuchSession { .. }))
    ));

    m2.destroy().unwrap();
    assert!(!storage.location().exists());
    drop(m);
    assert!(t.repo().list().unwrap().is_empty());
}

#[test]
fn the_manager_breaks_a_stale_lock_once_and_retries() {
    let t = TestRepo::new();
    let m = SessionManager::create(t.repo(), "pbox-", false, b"state".to_vec()).unwrap();
    let storage = m.storage().clone();
    storage.save(b"old").unwrap();
    std::fs::write(next_path(&storage), b"interrupted").unwrap();
    m.checkpoint().unwrap();
    assert_no_next(&storage);
    assert_eq!(storage.load().unwrap(), b"state");

    // A lock killed mid-write by another process is broken too.
    let holder = LockHolder::spawn(&next_path(&storage));
    holder.kill();
    m.checkpoint().unwrap();
    assert_no_next(&storage);
}

#[test]
fn the_manager_does_not_break_a_live_lock() {
    let t = TestRepo::new();
    let m = SessionManager::create(t.repo(), "pbox-", false, b"mine".to_vec()).unwrap();
    let storage = m.storage().clone();
    storage.save(b"old").unwrap();

    let mut w = storage.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"live writer", 0).unwrap();
    let err = m.checkpoint().expect_err("must not break a live lock");
    assert!(err.is_locked(), "{err:?}");
    assert!(next_path(&storage).exists());
    w.commit().unwrap();
    assert_eq!(storage.load().unwrap(), b"live writer");

    let holder = LockHolder::spawn(&next_path(&storage));
    assert!(m.checkpoint().unwrap_err().is_locked());
    assert_eq!(storage.load().unwrap(), b"live writer");
    holder.kill();
}

#[test]
fn the_manager_in_legacy_mode_replaces_the_last_session() {
    let t = TestRepo::new();
    let a = SessionManager::create(t.repo(), "pbox-", true, Vec::new()).unwrap();
    let a_dir = a.storage().location();
    let b = SessionManager::create(t.repo(), "pbox-", true, Vec::new()).unwrap();
    assert!(!a_dir.exists());
    assert_eq!(
        t.repo().last_session().unwrap().unwrap().name(),
        b.storage().name()
    );
}

// ---------------------------------------------------------------- store

#[test]
fn the_repository_store_saves_loads_lists_and_deletes_by_id() {
    let t = TestRepo::new();
    let store = RepositoryStore::new(t.repo().clone());
    const { assert!(RepositoryStore::IS_THREAD_SAFE) };
    const { assert!(RepositoryStore::IS_MULTIPROCESS_SAFE) };
    let a = OsStr::new("alpha");
    let b = OsStr::new("beta");

    assert!(!store.has(a).unwrap());
    assert_eq!(store.load(a).unwrap(), None);
    store.save(a, b"first").unwrap();
    assert!(store.has(a).unwrap());
    assert!(t.path().join("alpha.session/io-logs").is_dir());
    assert_eq!(store.load(a).unwrap().as_deref(), Some(&b"first"[..]));
    store.save(a, b"second").unwrap();
    assert_eq!(store.load(a).unwrap().as_deref(), Some(&b"second"[..]));
    assert_no_next(&t.repo().open(a).unwrap());

    store.save(b, b"").unwrap();
    assert_no_next(&t.repo().open(b).unwrap());
    let mut all = store.iter().unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![
            (a.to_os_string(), b"second".to_vec()),
            (b.to_os_string(), Vec::new())
        ]
    );
    store.delete(a).unwrap();
    assert!(!store.has(a).unwrap());
    assert!(matches!(store.delete(a), Err(Error::NoSuchSession { .. })));
    assert_eq!(store.iter().unwrap().len(), 1);

    // Bad ids never touch the file system.
    for bad in ["../x", "a/b", "", ".."] {
        assert!(store.save(OsStr::new(bad), b"x").is_err(), "{bad:?}");
        assert!(store.load(OsStr::new(bad)).is_err(), "{bad:?}");
    }
    assert!(!t.root().join("x.session").exists());

    // Old sessions go.
    let beta = t.path().join("beta.session");
    common::repo::set_mtime(
        &beta,
        std::time::SystemTime::now() - Duration::from_secs(7200),
    );
    assert_eq!(
        store
            .delete_old_sessions(Duration::from_secs(3600))
            .unwrap(),
        1
    );
    assert!(!store.has(b).unwrap());
}

#[test]
fn the_repository_store_is_safe_across_threads() {
    let t = TestRepo::new();
    let store = RepositoryStore::new(t.repo().clone());
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let id = format!("s{}", i % 2);
                for round in 0..10u8 {
                    match store.save(OsStr::new(&id), &[i, round]) {
                        Ok(()) | Err(Error::Locked { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let all = store.iter().unwrap();
    assert_eq!(all.len(), 2);
    for (id, data) in all {
        assert_eq!(data.len(), 2, "{id:?}");
        let n = if id == "s0" { 0 } else { 1 };
        assert_eq!(data[0] % 2, n);
        assert_no_next(&t.repo().open(&id).unwrap());
    }
}

// ------------------------------------------------- temporaries and the lock

fn temporaries(s: &Storage) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.location())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".session.tmp-"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_data_goes_to_a_unique_temporary_and_session_next_stays_the_lock() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"new data", 0).unwrap();
    // plainbox and Checkbox see the lock they know; the data is elsewhere.
    assert!(next_path(&s).exists());
    assert_eq!(std::fs::read(next_path(&s)).unwrap(), b"");
    let temps = temporaries(&s);
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert_eq!(
        std::fs::read(s.location().join(&temps[0])).unwrap(),
        b"new data"
    );
    assert_eq!(s.lock_state().unwrap(), LockState::Held);
    w.commit().unwrap();
    assert_eq!(s.load().unwrap(), b"new data");
    assert_no_next(&s);
}

#[test]
fn a_temporary_a_crash_left_is_removed_by_the_next_writer() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let stale = s.location().join(".session.tmp-otherhost-4242-0-17");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let old_style = s.location().join(".session.snapshot-999-1");
    std::fs::write(&old_style, b"half a copy").unwrap();
    s.save(b"next").unwrap();
    assert!(
        !stale.exists(),
        "the crashed writer's temporary is still there"
    );
    assert!(!old_style.exists());
    assert_eq!(s.load().unwrap(), b"next");
    assert_no_next(&s);
}

#[test]
fn the_temporary_of_a_live_writer_whose_lock_was_broken_is_left_to_it() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let mut victim = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    victim.write_at(b"victim", 0).unwrap();
    assert!(s.break_lock(true).unwrap());
    // The victim's temporary is locked, so neither the break nor the next
    // writer's clean-up removes it from under it.
    assert_eq!(temporaries(&s).len(), 1);
    let mut next = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    next.write_at(b"winner", 0).unwrap();
    assert_eq!(temporaries(&s).len(), 2);
    match victim.commit() {
        Err(Error::LockLost { .. }) => {}
        other => panic!("the broken writer must not commit, got {other:?}"),
    }
    assert_eq!(temporaries(&s).len(), 1, "the victim left its temporary");
    next.commit().unwrap();
    assert_eq!(s.load().unwrap(), b"winner");
    assert_no_next(&s);
}

#[test]
fn a_lock_break_between_writers_never_puts_a_partial_file_in_place() {
    // A streams, B breaks A's lock, C takes the lock and streams, A tries
    // to commit: A fails, and `session` is only ever a whole checkpoint.
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let mut a = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    a.write_at(b"A's whole checkpoint", 0).unwrap();
    assert!(s.break_lock(true).unwrap());
    let mut c = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    c.write_at(b"C's part", 0).unwrap();
    assert!(
        a.commit().is_err(),
        "A's lock was broken: it must not report success"
    );
    assert_eq!(s.load().unwrap(), b"previous");
    c.write_at(b"C's whole checkpoint", 0).unwrap();
    c.commit().unwrap();
    assert_eq!(s.load().unwrap(), b"C's whole checkpoint");
    assert_no_next(&s);
}
