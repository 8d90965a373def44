//! The filesystem layer without a mount: `SessionFs` driven directly with
//! the request sequences kernels really send (as mountpoint-s3's
//! `mountpoint-s3-fs/tests/fs.rs` does), checked against the repository on
//! disk: what is committed, whether the lock `session.next` is left, and
//! the errno each refusal replies with.

mod common;

use std::ffi::OsStr;
use std::sync::Arc;

use common::fs_driver::{Driver, errno_of, me};
use sessionfs::core::{FailStep, Step};
use sessionfs::fs::inode::ROOT;
use sessionfs::fs::{FsConfig, FsError, SetAttr};

const S: &str = "a.session";

fn with_checkpoint(data: &[u8]) -> Driver {
    let d = Driver::with_sessions(&[S]);
    std::fs::write(d.path(S).join("session"), data).unwrap();
    d
}

// ----- the shell's redirection: FLUSH before any WRITE ---------------------

#[test]
fn a_flush_before_any_write_commits_nothing_and_frees_the_lock() {
    // `cmd > session`: open(O_TRUNC), dup2 onto stdout, close the original
    // (FLUSH, nothing written yet), the command writes, exits (FLUSH),
    // RELEASE.
    let d = with_checkpoint(b"old checkpoint");
    let ino = d.checkpoint(S);
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().fh;
    d.flush(fh).unwrap();
    assert_eq!(
        d.on_disk(S),
        b"old checkpoint",
        "the dup2-and-close commits nothing"
    );
    assert!(
        !d.locked(S),
        "the close gives the lock back before it returns"
    );
    d.write(fh, 0, b"new output\n").unwrap();
    assert!(d.locked(S), "the command's write takes it again");
    d.flush(fh).unwrap();
    assert_eq!(d.on_disk(S), b"new output\n");
    assert!(!d.locked(S), "a commit releases the lock");
    d.fs.release(fh).unwrap();
    assert_eq!(d.on_disk(S), b"new output\n");
    assert!(!d.locked(S));
}

#[test]
fn a_truncating_open_closed_without_writing_commits_an_empty_checkpoint_at_release() {
    // `: > session`.
    let d = with_checkpoint(b"old checkpoint");
    let ino = d.checkpoint(S);
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().fh;
    d.flush(fh).unwrap();
    assert_eq!(d.on_disk(S), b"old checkpoint");
    d.fs.release(fh).unwrap();
    assert_eq!(d.on_disk(S), b"");
    assert!(!d.locked(S));
}

#[test]
fn a_write_open_closed_without_writing_changes_nothing() {
    let d = with_checkpoint(b"old checkpoint");
    let committed = inode_on_disk(&d);
    let ino = d.checkpoint(S);
    let fh = d.open(ino, libc::O_RDWR).unwrap().fh;
    d.flush(fh).unwrap();
    assert!(
        !d.locked(S),
        "the close gives the lock back before it returns"
    );
    // The next writer opens before the RELEASE of the first arrives.
    let again = d.open(ino, libc::O_WRONLY).unwrap().fh;
    d.fs.release(fh).unwrap();
    assert!(
        d.locked(S),
        "the late release leaves the next writer's lock"
    );
    d.fs.release(again).unwrap();
    assert_eq!(d.on_disk(S), b"old checkpoint");
    assert!(!d.locked(S), "an untouched checkpoint gives its lock back");
    assert_eq!(
        inode_on_disk(&d),
        committed,
        "nothing was committed, not even a copy"
    );
    let fh = d.open(ino, libc::O_WRONLY).unwrap().fh;
    d.fs.release(fh).unwrap();
}

/// The inode number of the committed checkpoint: a commit renames a new
/// file into place.
fn inode_on_disk(d: &Driver) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(d.path(S).join("session")).unwrap().ino()
}

#[test]
fn o_trunc_open_write_flush_release_commits_exactly_what_was_written() {
    let d = with_checkpoint(&[b'x'; 10_000]);
    let ino = d.checkpoint(S);
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().fh;
    d.write(fh, 0, b"part1").unwrap();
    d.write(fh, 5, b"part2").unwrap();
    d.flush(fh).unwrap();
    d.fs.release(fh).unwrap();
    assert_eq!(d.on_disk(S), b"part1part2");
    assert!(!d.locked(S));
}

#[test]
fn a_write_after_a_commit_starts_from_the_committed_checkpoint() {
    let d = with_checkpoint(b"");
    let ino = d.checkpoint(S);
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().fh;
    d.write(fh, 0, b"one").unwrap();
    d.flush(fh).unwrap();
    assert_eq!(d.on_disk(S), b"one");
    // A descriptor shared with a child (fork) writes on after the parent's
    // close committed.
    d.write(fh, 3, b"+two").unwrap();
    assert!(d.locked(S));
    d.flush(fh).unwrap();
    assert_eq!(d.on_disk(S), b"one+two");
    d.fs.release(fh).unwrap();
    assert!(!d.locked(S));
}

// ----- RELEASE after close() returned --------------------------------------

#[test]
fn a_release_arriving_after_another_open_does_not_touch_its_checkpoint() {
    // close() returns at FLUSH; the RELEASE may come later, after the next
    // writer opened.
    let d = with_checkpoint(b"");
    let ino = d.checkpoint(S);
    let first = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().fh;
    d.write(first, 0, b"first").unwrap();
    d.flush(first).unwrap();
    assert_eq!(d.on_disk(S), b"first");
    let ino2 = d.checkpoint(S);
    let second = d.open(ino2, libc::O_WRONLY | libc::O_TRUNC).unwrap().fh;
    d.write(second, 0, b"second").unwrap();
    d.fs.release(first).unwrap();
    assert_eq!(d.on_disk(S), b"first", "the late release commits nothing");
    assert!(
        d.locked(S),
        "the late release leaves the other writer's lock"
    );
    d.flush(second).unwrap();
    d.fs.release(second).unwrap();
    assert_eq!(d.on_disk(S), b"second");
    assert!(!d.locked(S));
    assert!(matches!(d.fs.release(first), Err(FsError::BadHandle)));
}

// ----- two opens of one inode ----------------------------------------------

#[test]
fn two_readers_of_one_inode_read_the_same_version() {
    let d = with_checkpoint(b"version 1");
    let ino = d.checkpoint(S);
    let r1 = d.open(ino, libc::O_RDONLY).unwrap().fh;
    let r2 = d.open(ino, libc::O_RDONLY).unwrap().fh;
    assert_eq!(d.read_all(r1).unwrap(), b"version 1");
    assert_eq!(d.read_all(r2).unwrap(), b"version 1");
    d.fs.release(r1).unwrap();
    assert_eq!(
        d.read_all(r2).unwrap(),
        b"version 1",
        "one release leaves the other open"
    );
    d.fs.release(r2).unwrap();
}

#[test]
fn a_reader_and_a_writer_of_one_inode_each_see_their_own_file() {
    let d = with_checkpoint(b"committed");
    let ino = d.checkpoint(S);
    let r = d.open(ino, libc::O_RDONLY).unwrap().fh;
    let w = d.open(ino, libc::O_RDWR | libc::O_TRUNC).unwrap().fh;
    d.write(w, 0, b"in progress, longer").unwrap();
    // fstat without a handle: the inode stands for the checkpoint written.
    assert_eq!(d.fs.getattr(ino, None).unwrap().size, 19);
    assert_eq!(d.fs.getattr(ino, Some(r)).unwrap().size, 9);
    assert_eq!(d.read_all(w).unwrap(), b"in progress, longer");
    assert_eq!(d.read_all(r).unwrap(), b"committed");
    d.flush(w).unwrap();
    d.fs.release(w).unwrap();
    assert_eq!(
        d.read_all(r).unwrap(),
        b"committed",
        "a reader keeps its version"
    );
    d.fs.release(r).unwrap();
    assert_eq!(d.on_disk(S), b"in progress, longer");
}

#[test]
fn a_second_writer_is_refused_with_ebusy_while_the_first_holds_the_lock() {
    let d = with_checkpoint(b"committed");
    let ino = d.checkpoint(S);
    let w = d.open(ino, libc::O_WRONLY).unwrap().fh;
    assert_eq!(errno_of(d.open(ino, libc::O_WRONLY)), libc::EBUSY);
    let other_ino = d.checkpoint(S);
    assert_eq!(
        errno_of(d.open(other_ino, libc::O_WRONLY | libc::O_TRUNC)),
        libc::EBUSY
    );
    // The lock is a live writer's: `rm session.next` is refused too.
    let dir = d.session(S);
    assert_eq!(
        errno_of(d.fs.unlink(dir, OsStr::new("session.next"))),
        libc::EBUSY
    );
    d.fs.release(w).unwrap();
    assert!(!d.locked(S));
    assert_eq!(d.on_disk(S), b"committed");
}

#[test]
fn a_stale_lock_refuses_writers_until_it_is_removed() {
    let d = with_checkpoint(b"committed");
    std::fs::write(d.path(S).join("session.next"), b"left by a crash").unwrap();
    let ino = d.checkpoint(S);
    assert_eq!(errno_of(d.open(ino, libc::O_WRONLY)), libc::EBUSY);
    let dir = d.session(S);
    d.fs.unlink(dir, OsStr::new("session.next")).unwrap();
    assert!(!d.locked(S), "rm of a stale lock breaks it");
    let fh = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().fh;
    d.write(fh, 0, b"after").unwrap();
    d.flush(fh).unwrap();
    d.fs.release(fh).unwrap();
    assert_eq!(d.on_disk(S), b"after");
}

// ----- reads see one version -----------------------------------------------

#[test]
fn a_reader_sees_one_whole_version_across_commits() {
    let old: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = with_checkpoint(&old);
    let ino = d.checkpoint(S);
    let r = d.open(ino, libc::O_RDONLY).unwrap().fh;
    let mut first = vec![0u8; 4096];
    assert_eq!(d.fs.read(r, 0, &mut first).unwrap(), 4096);
    // A new version is committed while the reader is half-way.
    let w = d
        .open(d.checkpoint(S), libc::O_WRONLY | libc::O_TRUNC)
        .unwrap()
        .fh;
    d.write(w, 0, b"a new, short checkpoint").unwrap();
    d.flush(w).unwrap();
    d.fs.release(w).unwrap();
    assert_eq!(
        d.read_all(r).unwrap(),
        old,
        "the reader reads the version it opened"
    );
    d.fs.release(r).unwrap();
    let r = d.open(d.checkpoint(S), libc::O_RDONLY).unwrap().fh;
    assert_eq!(d.read_all(r).unwrap(), b"a new, short checkpoint");
    d.fs.release(r).unwrap();
}

#[test]
fn a_session_without_a_checkpoint_shows_an_empty_file() {
    let d = Driver::with_sessions(&[S]);
    let ino = d.checkpoint(S);
    assert_eq!(d.fs.getattr(ino, None).unwrap().size, 0);
    let r = d.open(ino, libc::O_RDONLY).unwrap().fh;
    assert_eq!(d.read_all(r).unwrap(), b"");
    d.fs.release(r).unwrap();
}

// ----- FORGET racing LOOKUP ------------------------------------------------

#[test]
fn a_forget_racing_a_lookup_never_drops_an_inode_still_looked_up() {
    let d = Arc::new(with_checkpoint(b"shared"));
    let dir = d.session(S);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    // One pid for all threads: the lookups share inodes.
                    let a = d.lookup(dir, "session").unwrap();
                    // The lookup is held: the inode resolves, whatever the
                    // other threads forget meanwhile.
                    let attr = d.fs.getattr(a.ino, None).unwrap();
                    assert_eq!(attr.size, 6);
                    let fh = d.open(a.ino, libc::O_RDONLY).unwrap().fh;
                    d.fs.forget(a.ino, 1);
                    // Forgotten before the release: the handle still reads.
                    assert_eq!(d.read_all(fh).unwrap(), b"shared");
                    d.fs.release(fh).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    d.fs.forget(dir, 1);
    assert!(matches!(d.fs.getattr(dir, None), Err(FsError::NotFound)));
}

#[test]
fn an_inode_forgotten_while_open_goes_at_its_release() {
    let d = with_checkpoint(b"data");
    let ino = d.checkpoint(S);
    let fh = d.open(ino, libc::O_RDONLY).unwrap().fh;
    d.fs.forget(ino, 1);
    assert_eq!(d.fs.getattr(ino, Some(fh)).unwrap().size, 4);
    d.fs.release(fh).unwrap();
    assert!(matches!(d.fs.getattr(ino, None), Err(FsError::NotFound)));
}

// ----- rename over session -------------------------------------------------

#[test]
fn a_rename_over_session_commits_the_file() {
    let d = with_checkpoint(b"old");
    let dir = d.session(S);
    let (attr, opened) =
        d.fs.create(dir, OsStr::new("session.tmp"), 0o644, libc::O_WRONLY, me())
            .unwrap();
    assert_eq!(attr.size, 0);
    d.write(opened.fh, 0, b"edited checkpoint").unwrap();
    d.flush(opened.fh).unwrap();
    d.fs.release(opened.fh).unwrap();
    d.fs.rename(
        dir,
        OsStr::new("session.tmp"),
        dir,
        OsStr::new("session"),
        0,
    )
    .unwrap();
    assert_eq!(d.on_disk(S), b"edited checkpoint");
    assert!(std::fs::symlink_metadata(d.path(S).join("session.tmp")).is_err());
    assert!(!d.locked(S));
    // The checkpoint itself never moves, and only a plain rename commits.
    let refused =
        d.fs.rename(dir, OsStr::new("session"), dir, OsStr::new("x"), 0);
    assert_eq!(errno_of(refused), libc::EPERM);
    std::fs::write(d.path(S).join("other"), b"other").unwrap();
    let noreplace = d.fs.rename(
        dir,
        OsStr::new("other"),
        dir,
        OsStr::new("session"),
        libc::RENAME_NOREPLACE,
    );
    assert_eq!(errno_of(noreplace), libc::EINVAL);
    assert_eq!(d.on_disk(S), b"edited checkpoint");
}

/// Creating `session.next` is plainbox's way of taking the lock: see
/// tests/fs_layer_dirops.rs.
#[test]
fn the_lock_cannot_be_renamed_to_or_symlinked_through_the_mount() {
    let d = with_checkpoint(b"committed");
    let dir = d.session(S);
    std::fs::write(d.path(S).join("f"), b"f").unwrap();
    let renamed =
        d.fs.rename(dir, OsStr::new("f"), dir, OsStr::new("session.next"), 0);
    assert_eq!(errno_of(renamed), libc::EPERM);
    let linked = d.fs.symlink(dir, OsStr::new("session"), "f".as_ref(), me());
    assert_eq!(errno_of(linked), libc::EPERM);
    assert!(!d.locked(S));
    assert_eq!(d.on_disk(S), b"committed");
}

// ----- the decoded view ------------------------------------------------------

#[test]
fn the_view_shows_the_decoded_checkpoint_and_refuses_changes() {
    let d = with_checkpoint(br#"{"version": 1, "jobs": ["a", "b"]}"#);
    let dir = d.session(S);
    let view = d.lookup(dir, "session.json").unwrap();
    let fh = d.open(view.ino, libc::O_RDONLY).unwrap().fh;
    assert!(d.fs.direct_io(fh), "its size is known only once decoded");
    let text = d.read_all(fh).unwrap();
    d.fs.release(fh).unwrap();
    assert_eq!(text.len() as u64, view.size);
    let decoded: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(
        decoded,
        serde_json::json!({"version": 1, "jobs": ["a", "b"]})
    );
    assert_eq!(errno_of(d.open(view.ino, libc::O_WRONLY)), libc::EPERM);
    let renamed =
        d.fs.rename(dir, OsStr::new("session.json"), dir, OsStr::new("x"), 0);
    assert_eq!(errno_of(renamed), libc::EPERM);
    // `rm -r` of the session meets it: removing it succeeds, doing nothing.
    d.fs.unlink(dir, OsStr::new("session.json")).unwrap();
    assert!(
        d.lookup(dir, "session.json").is_ok(),
        "still derived from the checkpoint"
    );
    assert!(d.on_disk(S).starts_with(b"{\"version\""));
}

#[test]
fn an_undecodable_checkpoint_has_no_view() {
    let d = with_checkpoint(b"\x00\x01 not json");
    let dir = d.session(S);
    assert!(matches!(
        d.lookup(dir, "session.json"),
        Err(FsError::NotFound)
    ));
}

// ----- passthrough: the kernel writes the backing file itself ---------------

/// A WRITE the kernel serves through the passthrough backing file, without
/// the daemon seeing it.
fn kernel_write(backing: &std::fs::File, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    backing.write_all_at(data, offset).unwrap();
}

#[test]
fn passthrough_writes_are_committed_at_flush_and_after_it() {
    let d = with_checkpoint(b"old");
    d.fs.set_passthrough(true);
    let ino = d.checkpoint(S);
    let opened = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    let backing = opened.backing.expect("a backing file with passthrough");
    kernel_write(&backing, 0, b"through the kernel");
    d.flush(opened.fh).unwrap();
    assert_eq!(d.on_disk(S), b"through the kernel");
    assert!(!d.locked(S));
    // The committed file stays the backing file: a descriptor still open
    // writes into it; the next flush commits that properly.
    kernel_write(&backing, 18, b", and more");
    d.flush(opened.fh).unwrap();
    assert_eq!(d.on_disk(S), b"through the kernel, and more");
    assert!(!d.locked(S));
    d.fs.release(opened.fh).unwrap();
    assert_eq!(d.on_disk(S), b"through the kernel, and more");
}

#[test]
fn a_passthrough_fsync_commits_a_copy_and_keeps_writing() {
    let d = with_checkpoint(b"old");
    d.fs.set_passthrough(true);
    let ino = d.checkpoint(S);
    let opened = d.open(ino, libc::O_RDWR | libc::O_TRUNC).unwrap();
    let backing = opened.backing.expect("a backing file with passthrough");
    kernel_write(&backing, 0, b"synced");
    d.fs.fsync(opened.fh).unwrap();
    assert_eq!(d.on_disk(S), b"synced");
    assert!(d.locked(S), "the writer keeps its lock after fsync");
    kernel_write(&backing, 6, b" then closed");
    d.flush(opened.fh).unwrap();
    assert_eq!(d.on_disk(S), b"synced then closed");
    d.fs.release(opened.fh).unwrap();
    assert!(!d.locked(S));
}

#[test]
fn a_passthrough_reader_gets_the_committed_file_as_backing() {
    let d = with_checkpoint(b"committed");
    d.fs.set_passthrough(true);
    let opened = d.open(d.checkpoint(S), libc::O_RDONLY).unwrap();
    assert!(
        !opened.keep_cache,
        "the kernel refuses KEEP_CACHE with passthrough"
    );
    let backing = opened.backing.expect("a backing file with passthrough");
    assert_eq!(std::io::read_to_string(&backing).unwrap(), "committed");
    d.fs.release(opened.fh).unwrap();
}

// ----- failures ------------------------------------------------------------

#[test]
fn a_failed_write_is_reported_at_the_next_flush_and_never_committed() {
    let d = with_checkpoint(b"committed");
    let faulty = d.reopen(
        FsConfig { read_only: false },
        Some(Arc::new(FailStep::new(Step::Write, libc::EIO, 1))),
    );
    let dir = faulty.lookup_by(ROOT, OsStr::new(S), 1).unwrap().ino;
    let ino = faulty.lookup_by(dir, OsStr::new("session"), 1).unwrap().ino;
    let fh = faulty
        .open(ino, libc::O_WRONLY | libc::O_TRUNC, me())
        .unwrap()
        .fh;
    assert_eq!(errno_of(faulty.write(fh, 0, b"lost")), libc::EIO);
    assert!(!d.locked(S), "the failed checkpoint is aborted at once");
    assert_eq!(
        errno_of(faulty.write(fh, 4, b"more")),
        libc::EIO,
        "later writes fail too"
    );
    assert_eq!(
        errno_of(faulty.flush(fh, me().pid)),
        libc::EIO,
        "the close reports it"
    );
    faulty.flush(fh, me().pid).unwrap();
    faulty.release(fh).unwrap();
    assert_eq!(d.on_disk(S), b"committed");
    assert!(!d.locked(S));
}

#[test]
fn a_read_only_filesystem_refuses_every_change_with_erofs() {
    let d = with_checkpoint(b"committed");
    let ro = d.reopen(FsConfig { read_only: true }, None);
    let dir = ro.lookup_by(ROOT, OsStr::new(S), 1).unwrap().ino;
    let ino = ro.lookup_by(dir, OsStr::new("session"), 1).unwrap().ino;
    assert_eq!(errno_of(ro.open(ino, libc::O_WRONLY, me())), libc::EROFS);
    assert_eq!(
        errno_of(ro.open(ino, libc::O_RDONLY | libc::O_TRUNC, me())),
        libc::EROFS
    );
    assert_eq!(
        errno_of(ro.mkdir(ROOT, OsStr::new("b.session"), 0o755, me())),
        libc::EROFS
    );
    let set = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(errno_of(ro.setattr(ino, None, set, me())), libc::EROFS);
    let fh = ro.open(ino, libc::O_RDONLY, me()).unwrap().fh;
    let mut buf = [0u8; 64];
    assert_eq!(ro.read(fh, 0, &mut buf).unwrap(), 9);
    ro.release(fh).unwrap();
    assert_eq!(d.on_disk(S), b"committed");
}

// ----- the root --------------------------------------------------------------

#[test]
fn mkdir_in_the_root_makes_a_whole_session_and_refuses_other_names() {
    let d = Driver::with_sessions(&[]);
    let a =
        d.fs.mkdir(ROOT, OsStr::new("new.session"), 0o755, me())
            .unwrap();
    assert_eq!(a.kind, sessionfs::fs::Kind::Directory);
    for wk in sessionfs::core::WELL_KNOWN_DIRS {
        assert!(d.path("new.session").join(wk).is_dir(), "{wk} missing");
    }
    let bad = d.fs.mkdir(ROOT, OsStr::new("not-a-session"), 0o755, me());
    assert_eq!(errno_of(bad), libc::EINVAL);
    let long = format!("{}.session", "x".repeat(250));
    let too_long = d.fs.mkdir(ROOT, OsStr::new(&long), 0o755, me());
    assert_eq!(errno_of(too_long), libc::ENAMETOOLONG);
    assert!(!d.path("not-a-session").exists());
}

#[test]
fn what_a_user_makes_through_the_layer_is_that_users() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the daemon runs as root in these tests"
    );
    let d = Driver::with_sessions(&[]);
    let user = sessionfs::fs::Caller {
        uid: 4321,
        gid: 4322,
        pid: me().pid,
    };
    let owner = |rel: &str| {
        let m = std::fs::symlink_metadata(d.path(rel)).unwrap();
        (m.uid(), m.gid())
    };
    let dir =
        d.fs.mkdir(ROOT, OsStr::new("u.session"), 0o755, user)
            .unwrap()
            .ino;
    assert_eq!(owner("u.session"), (4321, 4322));
    for wk in sessionfs::core::WELL_KNOWN_DIRS {
        assert_eq!(owner(&format!("u.session/{wk}")), (4321, 4322), "{wk}");
    }
    let (_, opened) =
        d.fs.create(dir, OsStr::new("log"), 0o644, libc::O_WRONLY, user)
            .unwrap();
    d.fs.release(opened.fh).unwrap();
    assert_eq!(owner("u.session/log"), (4321, 4322));
    d.fs.symlink(dir, OsStr::new("link"), "log".as_ref(), user)
        .unwrap();
    assert_eq!(owner("u.session/link"), (4321, 4322));
    let ino = d.fs.lookup_by(dir, OsStr::new("session"), 1).unwrap().ino;
    let fh =
        d.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, user)
            .unwrap()
            .fh;
    d.write(fh, 0, b"mine").unwrap();
    d.fs.flush(fh, user.pid).unwrap();
    d.fs.release(fh).unwrap();
    assert_eq!(owner("u.session/session"), (4321, 4322));
    // Root's own files stay root's.
    let (_, opened) =
        d.fs.create(dir, OsStr::new("root-log"), 0o644, libc::O_WRONLY, me())
            .unwrap();
    d.fs.release(opened.fh).unwrap();
    assert_eq!(owner("u.session/root-log"), (0, 0));
}

#[test]
fn truncate_of_session_by_path_is_a_checkpoint_of_its_own() {
    let d = with_checkpoint(b"0123456789");
    let ino = d.checkpoint(S);
    let set = SetAttr {
        size: Some(4),
        ..SetAttr::default()
    };
    let a = d.fs.setattr(ino, None, set, me()).unwrap();
    assert_eq!(a.size, 4);
    assert_eq!(d.on_disk(S), b"0123");
    assert!(!d.locked(S));
}
