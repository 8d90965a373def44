//! The filesystem layer without a mount: plainbox's own protocol on
//! `session.next`, and the rest of a session directory as a faithful
//! passthrough of the disk (hard links, special files, files unlinked while
//! open, ownership and setgid rules, callers getting no more than the disk
//! gives them). tests/suite_pjdfstest.rs, tests/suite_plainbox_mount.rs and
//! tests/mount_dirops_users.rs do the same through a real mount.

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::fs_driver::{Driver, errno_of, me};
use sessionfs::core::{BeginOptions, LockState, SessionName, Start};
use sessionfs::fs::inode::ROOT;
use sessionfs::fs::{Caller, SetAttr};

const S: &str = "s.session";

fn with_checkpoint(data: &[u8]) -> Driver {
    let d = Driver::with_sessions(&[S]);
    std::fs::write(d.path(S).join("session"), data).unwrap();
    d
}

fn lock_state(d: &Driver) -> LockState {
    d.repo
        .repo()
        .storage(SessionName::new(OsStr::new(S)).unwrap())
        .lock_state()
        .unwrap()
}

/// An unprivileged caller with no supplementary groups (pid 0: none to
/// read).
fn user(uid: u32, gid: u32) -> Caller {
    Caller { uid, gid, pid: 0 }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn create(d: &Driver, dir: u64, name: &str, caller: Caller) -> (u64, u64) {
    let (attr, opened) =
        d.fs.create(dir, OsStr::new(name), 0o644, libc::O_WRONLY, caller)
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    (attr.ino, opened.fh)
}

// ----- plainbox's protocol on session.next ---------------------------------

#[test]
fn plainbox_save_through_the_layer_takes_the_lock_and_commits() {
    let d = with_checkpoint(b"old");
    let dir = d.session(S);
    let (_, fh) = create(&d, dir, "session.next", me());
    assert!(d.locked(S), "the real lock file is on disk");
    assert_eq!(lock_state(&d), LockState::Held, "a live writer while open");
    // Everyone else sees the lock: another exclusive create, a writer of
    // `session`, a break-lock.
    let again =
        d.fs.create(dir, OsStr::new("session.next"), 0o644, libc::O_WRONLY, me());
    assert_eq!(errno_of(again), libc::EEXIST);
    let ckpt = d.checkpoint(S);
    assert_eq!(
        errno_of(d.open(ckpt, libc::O_WRONLY | libc::O_TRUNC)),
        libc::EBUSY
    );
    assert_eq!(
        errno_of(d.fs.unlink(dir, OsStr::new("session.next"))),
        libc::EBUSY
    );
    // Write, fsync, close, rename: plainbox's save.
    d.write(fh, 0, b"new checkpoint").unwrap();
    d.fs.fsync(fh).unwrap();
    d.flush(fh).unwrap();
    assert_eq!(
        lock_state(&d),
        LockState::Stale,
        "closed: as plainbox's lock on disk"
    );
    assert_eq!(d.on_disk(S), b"old", "nothing commits before the rename");
    d.fs.rename(
        dir,
        OsStr::new("session.next"),
        dir,
        OsStr::new("session"),
        0,
    )
    .unwrap();
    d.fs.release(fh).unwrap();
    d.fs.fsyncdir(dir).unwrap();
    assert_eq!(d.on_disk(S), b"new checkpoint");
    assert!(!d.locked(S));
    // The next save works the same.
    let (_, fh) = create(&d, dir, "session.next", me());
    d.write(fh, 0, b"third").unwrap();
    d.flush(fh).unwrap();
    d.fs.release(fh).unwrap();
    d.fs.rename(
        dir,
        OsStr::new("session.next"),
        dir,
        OsStr::new("session"),
        0,
    )
    .unwrap();
    assert_eq!(d.on_disk(S), b"third");
}

#[test]
fn a_creator_gone_mid_save_leaves_a_stale_lock_that_can_be_broken() {
    let d = with_checkpoint(b"whole");
    let dir = d.session(S);
    let (_, fh) = create(&d, dir, "session.next", me());
    d.write(fh, 0, b"half").unwrap();
    // Killed: its descriptors close (FLUSH, RELEASE) and nothing else.
    d.flush(fh).unwrap();
    d.fs.release(fh).unwrap();
    assert!(d.locked(S), "the lock stays, as on disk");
    assert_eq!(lock_state(&d), LockState::Stale);
    assert_eq!(d.on_disk(S), b"whole");
    let again =
        d.fs.create(dir, OsStr::new("session.next"), 0o644, libc::O_WRONLY, me());
    assert_eq!(errno_of(again), libc::EEXIST);
    // Checkbox's manager breaks it and saves again at once.
    d.fs.unlink(dir, OsStr::new("session.next")).unwrap();
    let (_, fh) = create(&d, dir, "session.next", me());
    d.write(fh, 0, b"after the break").unwrap();
    d.flush(fh).unwrap();
    d.fs.release(fh).unwrap();
    d.fs.rename(
        dir,
        OsStr::new("session.next"),
        dir,
        OsStr::new("session"),
        0,
    )
    .unwrap();
    assert_eq!(d.on_disk(S), b"after the break");
}

#[test]
fn a_live_writers_lock_is_never_renamed_into_place() {
    let d = with_checkpoint(b"committed");
    let dir = d.session(S);
    let storage = d
        .repo
        .repo()
        .storage(SessionName::new(OsStr::new(S)).unwrap());
    let mut writer = storage.begin(BeginOptions::new(Start::Empty)).unwrap();
    writer.write_at(b"partial", 0).unwrap();
    let renamed = d.fs.rename(
        dir,
        OsStr::new("session.next"),
        dir,
        OsStr::new("session"),
        0,
    );
    assert_eq!(errno_of(renamed), libc::EBUSY);
    assert_eq!(d.on_disk(S), b"committed");
    writer.commit().unwrap();
    assert_eq!(
        d.on_disk(S),
        b"partial",
        "the writer's own commit still works"
    );
}

#[test]
fn a_lock_broken_and_taken_by_another_is_not_committed_by_the_first() {
    let d = with_checkpoint(b"committed");
    let dir = d.session(S);
    let (_, fh) = create(&d, dir, "session.next", me());
    d.write(fh, 0, b"mine").unwrap();
    d.flush(fh).unwrap();
    d.fs.release(fh).unwrap();
    // Broken on disk, and taken there by someone else.
    std::fs::remove_file(d.path(S).join("session.next")).unwrap();
    std::fs::write(d.path(S).join("session.next"), b"someone else's").unwrap();
    let renamed = d.fs.rename(
        dir,
        OsStr::new("session.next"),
        dir,
        OsStr::new("session"),
        0,
    );
    assert_eq!(errno_of(renamed), libc::EBUSY);
    assert_eq!(d.on_disk(S), b"committed");
}

#[test]
fn only_a_regular_session_next_becomes_the_checkpoint() {
    let d = with_checkpoint(b"committed");
    let dir = d.session(S);
    std::os::unix::fs::symlink("/etc/passwd", d.path(S).join("session.next")).unwrap();
    let renamed = d.fs.rename(
        dir,
        OsStr::new("session.next"),
        dir,
        OsStr::new("session"),
        0,
    );
    assert_eq!(errno_of(renamed), libc::EPERM);
    let noreplace = d.fs.rename(
        dir,
        OsStr::new("session.next"),
        dir,
        OsStr::new("session"),
        libc::RENAME_NOREPLACE,
    );
    assert_eq!(errno_of(noreplace), libc::EINVAL);
    assert_eq!(d.on_disk(S), b"committed");
}

// ----- hard links, special files, unlinked files ----------------------------

#[test]
fn hard_links_are_one_inode_under_every_name() {
    let d = with_checkpoint(b"");
    let dir = d.session(S);
    let (a, fh) = create(&d, dir, "a", me());
    d.write(fh, 0, b"shared").unwrap();
    d.fs.release(fh).unwrap();
    let b = d.fs.link(a, dir, OsStr::new("b"), me()).unwrap();
    assert_eq!(b.ino, a, "the new name is the same inode");
    assert_eq!(b.nlink, 2);
    assert_eq!(d.lookup(dir, "b").unwrap().ino, a);
    assert_eq!(
        std::fs::metadata(d.path(S).join("a")).unwrap().ino(),
        std::fs::metadata(d.path(S).join("b")).unwrap().ino()
    );
    // A link made on disk is found as the same inode too.
    std::fs::hard_link(d.path(S).join("a"), d.path(S).join("c")).unwrap();
    assert_eq!(d.lookup(dir, "c").unwrap().ino, a);
    // Removing the first name leaves the inode standing for the others.
    d.fs.unlink(dir, OsStr::new("a")).unwrap();
    let left = d.fs.getattr(a, None).unwrap();
    assert_eq!((left.nlink, left.size), (2, 6));
    // The checkpoint gets no other name: writing it would change the
    // committed checkpoint in place.
    std::fs::write(d.path(S).join("session"), b"v1").unwrap();
    let ckpt = d.checkpoint(S);
    let kept = d.fs.link(ckpt, dir, OsStr::new("kept"), me());
    assert_eq!(errno_of(kept), libc::EPERM);
    assert!(std::fs::symlink_metadata(d.path(S).join("kept")).is_err());
    // Nothing links the lock, the view, or across sessions.
    std::fs::create_dir(d.path("t.session")).unwrap();
    let other = d.session("t.session");
    assert_eq!(
        errno_of(d.fs.link(a, other, OsStr::new("x"), me())),
        libc::EXDEV
    );
    assert_eq!(
        errno_of(d.fs.link(a, dir, OsStr::new("session.next"), me())),
        libc::EPERM
    );
    assert_eq!(
        errno_of(d.fs.link(a, dir, OsStr::new("session"), me())),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(d.fs.link(a, ROOT, OsStr::new("x.session"), me())),
        libc::EPERM
    );
}

#[test]
fn fifos_sockets_and_nodes_are_made_on_disk() {
    let d = with_checkpoint(b"");
    let dir = d.session(S);
    for (name, kind) in [("fifo", libc::S_IFIFO), ("sock", libc::S_IFSOCK)] {
        let a =
            d.fs.mknod(dir, OsStr::new(name), kind | 0o640, 0, me())
                .unwrap();
        let m = std::fs::symlink_metadata(d.path(S).join(name)).unwrap();
        assert_eq!(m.mode() & libc::S_IFMT, kind, "{name}");
        assert_eq!(
            m.mode() & 0o7777,
            0o640,
            "{name}: the mode asked for, exactly"
        );
        assert_eq!(a.perm, 0o640);
    }
    let again =
        d.fs.mknod(dir, OsStr::new("fifo"), libc::S_IFIFO | 0o644, 0, me());
    assert_eq!(errno_of(again), libc::EEXIST);
    let on_lock = d.fs.mknod(
        dir,
        OsStr::new("session.next"),
        libc::S_IFIFO | 0o644,
        0,
        me(),
    );
    assert_eq!(errno_of(on_lock), libc::EPERM);
    if is_root() {
        let dev = libc::makedev(1, 3);
        d.fs.mknod(dir, OsStr::new("null"), libc::S_IFCHR | 0o600, dev, me())
            .unwrap();
        let m = std::fs::symlink_metadata(d.path(S).join("null")).unwrap();
        assert_eq!(m.rdev(), dev);
    }
}

#[test]
fn a_file_unlinked_while_open_works_until_closed() {
    let d = with_checkpoint(b"");
    let dir = d.session(S);
    let (attr, opened) =
        d.fs.create(dir, OsStr::new("f"), 0o644, libc::O_RDWR, me())
            .unwrap();
    let (ino, fh) = (attr.ino, opened.fh);
    d.write(fh, 0, b"still here").unwrap();
    d.fs.unlink(dir, OsStr::new("f")).unwrap();
    // A new file under the old name is another file.
    std::fs::write(d.path(S).join("f"), b"another").unwrap();
    assert_eq!(d.fs.getattr(ino, Some(fh)).unwrap().size, 10);
    assert_eq!(
        d.fs.getattr(ino, None).unwrap().size,
        10,
        "fstat without a handle"
    );
    assert_eq!(d.fs.getattr(ino, None).unwrap().nlink, 0);
    let set = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert_eq!(d.fs.setattr(ino, None, set, me()).unwrap().perm, 0o600);
    let mut buf = [0u8; 32];
    let n = d.fs.read(fh, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"still here");
    assert_eq!(
        std::fs::metadata(d.path(S).join("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644,
        "the new file is untouched"
    );
    d.fs.release(fh).unwrap();
}

/// The kernel's sequence for `open(O_RDONLY|O_TRUNC)` of a program a
/// process is running: the OPEN comes first (with `FUSE_ATOMIC_O_TRUNC`
/// the daemon truncates there), and only then does the kernel find the
/// program busy. The daemon refuses it itself, so the running image is
/// never cut short; once the program's exec handle is released the same
/// open truncates.
#[test]
fn a_running_program_is_not_truncated_by_a_read_only_truncating_open() {
    /// The kernel's `__FMODE_EXEC`, set on its open of a program.
    const FMODE_EXEC: i32 = 0o40;
    let d = with_checkpoint(b"");
    let dir = d.session(S);
    let (ino, fh) = create(&d, dir, "prog", me());
    d.write(fh, 0, b"\x7fELF program").unwrap();
    d.fs.release(fh).unwrap();
    let prog = d.path(S).join("prog");

    let exec = d.open(ino, libc::O_RDONLY | FMODE_EXEC).unwrap().fh;
    assert_eq!(
        errno_of(d.open(ino, libc::O_RDONLY | libc::O_TRUNC)),
        libc::ETXTBSY
    );
    assert_eq!(std::fs::read(&prog).unwrap(), b"\x7fELF program");
    let reader = d.open(ino, libc::O_RDONLY).unwrap().fh;
    assert_eq!(d.read_all(reader).unwrap(), b"\x7fELF program");
    d.fs.release(reader).unwrap();

    d.fs.release(exec).unwrap();
    let fh = d.open(ino, libc::O_RDONLY | libc::O_TRUNC).unwrap().fh;
    assert_eq!(std::fs::read(&prog).unwrap(), b"", "truncated once not run");
    d.fs.release(fh).unwrap();
}

// ----- callers get no more than the disk gives them ------------------------

#[test]
fn an_unprivileged_caller_gets_what_the_disk_would_give_them() {
    if !is_root() {
        eprintln!("skipped: the daemon acts as its callers only when it is root");
        return;
    }
    let d = with_checkpoint(b"");
    let dir = d.session(S);
    let u = user(4321, 4321);
    // The session directory is root's; the caller gets a directory of its own.
    std::fs::create_dir(d.path(S).join("mine")).unwrap();
    std::os::unix::fs::chown(d.path(S).join("mine"), Some(4321), Some(4321)).unwrap();
    let mine = d.lookup(dir, "mine").unwrap().ino;
    // Not in root's directory (the disk says EACCES to this user).
    let denied =
        d.fs.mknod(dir, OsStr::new("x"), libc::S_IFIFO | 0o644, 0, u);
    assert_eq!(errno_of(denied), libc::EACCES);
    // A fifo and a file of its own, owned by it.
    d.fs.mknod(mine, OsStr::new("fifo"), libc::S_IFIFO | 0o644, 0, u)
        .unwrap();
    let (_, fh) = create(&d, mine, "file", u);
    d.fs.release(fh).unwrap();
    for name in ["fifo", "file"] {
        let m = std::fs::symlink_metadata(d.path(S).join("mine").join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 4321), "{name}");
    }
    // No device node: that needs CAP_MKNOD, which the caller lacks.
    let dev = d.fs.mknod(
        mine,
        OsStr::new("null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
        u,
    );
    assert_eq!(errno_of(dev), libc::EPERM);
    assert!(std::fs::symlink_metadata(d.path(S).join("mine/null")).is_err());
    // No hard link to root's file it may not read (protected_hardlinks).
    std::fs::write(d.path(S).join("secret"), b"root's").unwrap();
    std::fs::set_permissions(d.path(S).join("secret"), PermissionsExt::from_mode(0o600)).unwrap();
    let secret = d.lookup(dir, "secret").unwrap().ino;
    let protected =
        std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim() == "1");
    if protected {
        let linked = d.fs.link(secret, mine, OsStr::new("stolen"), u);
        assert_eq!(errno_of(linked), libc::EPERM);
    }
    // No chown to another user, no chmod of root's file.
    let (ino, fh) = create(&d, mine, "owned", u);
    d.fs.release(fh).unwrap();
    let give = SetAttr {
        uid: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(errno_of(d.fs.setattr(ino, None, give, u)), libc::EPERM);
    let chmod = SetAttr {
        mode: Some(0o4777),
        ..SetAttr::default()
    };
    assert_eq!(errno_of(d.fs.setattr(secret, None, chmod, u)), libc::EPERM);
    // Its own file may be setuid (to itself), as on disk.
    assert_eq!(d.fs.setattr(ino, None, chmod, u).unwrap().perm, 0o4777);
    // A chown that also clears the set-id bits (as the kernel asks of a
    // chown by a non-owner) is still the caller's chown: refused, and
    // root's setuid file stays as it was.
    let suid = d.path(S).join("suid");
    std::fs::write(&suid, b"").unwrap();
    std::fs::set_permissions(&suid, PermissionsExt::from_mode(0o6755)).unwrap();
    let suid_ino = d.lookup(dir, "suid").unwrap().ino;
    let take = SetAttr {
        uid: Some(4321),
        mode: Some(0o755),
        ..SetAttr::default()
    };
    assert_eq!(errno_of(d.fs.setattr(suid_ino, None, take, u)), libc::EPERM);
    let m = std::fs::symlink_metadata(&suid).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o6755));
}

#[test]
fn setgid_directories_and_bits_follow_the_kernels_rules() {
    if !is_root() {
        eprintln!("skipped: the daemon acts as its callers only when it is root");
        return;
    }
    let d = with_checkpoint(b"");
    let dir = d.session(S);
    let shared = d.path(S).join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(4400)).unwrap();
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o2777)).unwrap();
    let sh = d.lookup(dir, "shared").unwrap().ino;
    let u = user(4321, 4321);
    // A file and a directory made there get the directory's group; the
    // directory keeps the setgid bit.
    let (_, fh) = create(&d, sh, "f", u);
    d.fs.release(fh).unwrap();
    d.fs.mkdir(sh, OsStr::new("d"), 0o755, u).unwrap();
    let f = std::fs::symlink_metadata(shared.join("f")).unwrap();
    let sub = std::fs::symlink_metadata(shared.join("d")).unwrap();
    assert_eq!((f.uid(), f.gid()), (4321, 4400));
    assert_eq!((sub.uid(), sub.gid()), (4321, 4400));
    assert_ne!(
        sub.mode() & libc::S_ISGID,
        0,
        "a subdirectory inherits setgid"
    );
    // A setgid file of a group the caller is not in loses the bit.
    let (attr, opened) =
        d.fs.create(sh, OsStr::new("g"), 0o2755, libc::O_WRONLY, u)
            .unwrap();
    d.fs.release(opened.fh).unwrap();
    assert_eq!(attr.perm & libc::S_ISGID as u16, 0, "{:o}", attr.perm);
    // chmod g+s of its own file in a group it is not in: cleared too.
    let set = SetAttr {
        mode: Some(0o2755),
        ..SetAttr::default()
    };
    let ino = d.lookup(sh, "f").unwrap().ino;
    let after = d.fs.setattr(ino, None, set, u).unwrap();
    assert_eq!(after.perm, 0o755, "{:o}", after.perm);
}
