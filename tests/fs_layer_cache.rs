//! The kernel's page cache of `session`, driven through the filesystem
//! layer without a mount: one inode per committed version, its pages kept
//! from open to open (`keep_cache`) only while they are exactly that
//! version. Requests come from several processes (the `pid` of each
//! lookup), as `cat`, `cp` and a writer's shell would send them.

mod common;

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use common::fs_driver::{Driver, errno_of, me};
use sessionfs::core::{FailStep, Repository, Step};
use sessionfs::fs::inode::ROOT;
use sessionfs::fs::{Caller, FsConfig, Invalidation, SessionFs, SetAttr};

const S: &str = "a.session";

fn with_checkpoint(data: &[u8]) -> Driver {
    let d = Driver::with_sessions(&[S]);
    std::fs::write(d.path(S).join("session"), data).unwrap();
    d
}

/// Another process than the test's own.
fn other(pid: u32) -> Caller {
    Caller { pid, ..me() }
}

/// A lookup of `session` by process `pid`, as the kernel makes it at each
/// path walk (entries of `session` have TTL 0).
fn lookup(fs: &SessionFs, pid: u32) -> u64 {
    let dir = fs.lookup_by(ROOT, OsStr::new(S), pid).unwrap().ino;
    fs.lookup_by(dir, OsStr::new("session"), pid).unwrap().ino
}

/// `cat session` by process `pid`: lookup, open, read to the end,
/// release. Returns the inode, whether the open kept the page cache, and
/// what was read.
fn cat(d: &Driver, pid: u32) -> (u64, bool, Vec<u8>) {
    let ino = lookup(&d.fs, pid);
    let opened = d.fs.open(ino, libc::O_RDONLY, other(pid)).unwrap();
    let data = d.read_all(opened.fh).unwrap();
    d.fs.release(opened.fh).unwrap();
    (ino, opened.keep_cache, data)
}

/// `printf DATA > session` by this process, through the layer: returns the
/// inode written and whether the writes bypassed the page cache.
fn commit(d: &Driver, data: &[u8]) -> (u64, bool) {
    let (ino, opened) = d.open_path(S, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    d.write(opened.fh, 0, data).unwrap();
    d.flush(opened.fh).unwrap();
    d.fs.release(opened.fh).unwrap();
    (ino, opened.bypass_page_cache)
}

fn save_outside(d: &Driver, data: &[u8]) {
    Repository::new(d.repo.path())
        .open(OsStr::new("a"))
        .unwrap()
        .save(data)
        .unwrap();
}

#[test]
fn readers_of_one_version_share_an_inode_and_its_pages() {
    let d = with_checkpoint(b"version 1");
    let (a, kept, data) = cat(&d, 101);
    assert_eq!(data, b"version 1");
    assert!(!kept, "the first reader fills the pages");
    let (b, kept, data) = cat(&d, 102);
    assert_eq!(
        b, a,
        "another process reading the same version: the same inode"
    );
    assert!(kept, "and the pages the first reader filled");
    assert_eq!(data, b"version 1");
}

#[test]
fn a_reader_after_a_commit_through_the_layer_keeps_the_pages_the_writer_filled() {
    let d = with_checkpoint(b"old");
    let (w, bypassed) = commit(&d, b"committed through the mount");
    assert!(
        !bypassed,
        "a writer alone on its inode writes through the page cache"
    );
    let (r, kept, data) = cat(&d, 201);
    assert_eq!(r, w, "the committed version's inode is the writer's");
    assert!(kept, "its pages are the committed version: kept");
    assert_eq!(data, b"committed through the mount");
    // The next commit through the layer reuses it again.
    let (w2, _) = commit(&d, b"and again");
    assert_eq!(
        w2, w,
        "the writer's own inode, released, stands for its commit"
    );
    let (r, kept, data) = cat(&d, 202);
    assert_eq!((r, kept), (w, true));
    assert_eq!(data, b"and again");
}

#[test]
fn a_commit_made_outside_is_seen_at_the_next_open() {
    let d = with_checkpoint(b"version 1");
    let (a, _, _) = cat(&d, 301);
    let (_, kept, _) = cat(&d, 302);
    assert!(kept);
    // Same size, other bytes: stale pages would read as the old version.
    save_outside(&d, b"VERSION 2");
    let (b, kept, data) = cat(&d, 303);
    assert_ne!(b, a, "another version: another inode");
    assert!(!kept, "whose pages are not known");
    assert_eq!(data, b"VERSION 2");
    // Also over a version committed through the layer.
    commit(&d, b"through it");
    save_outside(&d, b"outside it");
    let (_, kept, data) = cat(&d, 304);
    assert!(!kept);
    assert_eq!(data, b"outside it");
}

#[test]
fn a_reader_of_the_old_version_reads_it_whole_while_a_writer_writes() {
    let old: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = with_checkpoint(&old);
    let a = lookup(&d.fs, 401);
    let r = d.fs.open(a, libc::O_RDONLY, other(401)).unwrap();
    let mut first = vec![0u8; 4096];
    assert_eq!(d.fs.read(r.fh, 0, &mut first).unwrap(), 4096);
    // The writer's lookup finds the readers' inode (nothing tells it is a
    // writer yet): its open is refused with ESTALE, and the kernel's retry
    // looks the name up again and gets an inode of its own.
    assert_eq!(lookup(&d.fs, me().pid), a);
    let refused = d.fs.open(a, libc::O_WRONLY | libc::O_TRUNC, me());
    assert_eq!(refused.unwrap_err().errno(), libc::ESTALE);
    let w_ino = lookup(&d.fs, me().pid);
    assert_ne!(w_ino, a, "the writer never shares the readers' inode");
    let w =
        d.fs.open(w_ino, libc::O_WRONLY | libc::O_TRUNC, me())
            .unwrap();
    assert!(!w.bypass_page_cache, "alone on its inode: page cache");
    d.write(w.fh, 0, b"the new version").unwrap();
    // A reader opening meanwhile never gets the writer's inode: it reads
    // the old version whole.
    let (late, _, data) = cat(&d, 402);
    assert_ne!(late, w_ino);
    assert_eq!(data, old);
    d.flush(w.fh).unwrap();
    d.fs.release(w.fh).unwrap();
    assert_eq!(d.read_all(r.fh).unwrap(), old, "the first reader's version");
    // Lookups now find the new version: the writer's inode, with its pages.
    let (b, kept, data) = cat(&d, 403);
    assert_eq!((b, kept), (w_ino, true));
    assert_eq!(data, b"the new version");
    d.fs.release(r.fh).unwrap();
}

#[test]
fn a_reader_never_opens_an_inode_a_writer_has_open() {
    let d = with_checkpoint(b"committed");
    // Reader and writer looked it up before either opened.
    let ino = lookup(&d.fs, 501);
    assert_eq!(lookup(&d.fs, me().pid), ino);
    let w = d.fs.open(ino, libc::O_RDWR, me()).unwrap();
    d.write(w.fh, 0, b"UNCOMMITTED").unwrap();
    let refused = d.fs.open(ino, libc::O_RDONLY, other(501));
    assert_eq!(refused.unwrap_err().errno(), libc::ESTALE);
    let (r, kept, data) = cat(&d, 501);
    assert_ne!(r, ino);
    assert!(!kept);
    assert_eq!(data, b"committed");
    d.flush(w.fh).unwrap();
    d.fs.release(w.fh).unwrap();
    assert_eq!(d.on_disk(S), b"UNCOMMITTED");
}

#[test]
fn a_reopen_of_the_same_inode_without_a_lookup_is_served_unshared() {
    let d = with_checkpoint(b"committed");
    let ino = lookup(&d.fs, 601);
    let r = d.fs.open(ino, libc::O_RDONLY, other(601)).unwrap();
    // `open("/proc/self/fd/N", O_WRONLY)`: the kernel's retry after ESTALE
    // walks to the same inode.
    let w = d.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    assert!(
        w.bypass_page_cache,
        "sharing the readers' inode: its writes bypass the page cache"
    );
    d.write(w.fh, 0, b"new").unwrap();
    d.flush(w.fh).unwrap();
    d.fs.release(w.fh).unwrap();
    assert_eq!(d.read_all(r.fh).unwrap(), b"committed");
    d.fs.release(r.fh).unwrap();
    let (b, kept, data) = cat(&d, 602);
    assert_ne!(
        b, ino,
        "an inode two versions went through is never handed out"
    );
    assert!(!kept);
    assert_eq!(data, b"new");
}

#[test]
fn a_failed_commits_pages_are_never_kept() {
    for step in [Step::SyncFile, Step::Rename] {
        let d = with_checkpoint(b"committed");
        let faulty = d.reopen(
            FsConfig { read_only: false },
            Some(Arc::new(FailStep::new(step, libc::EIO, 1))),
        );
        let w_ino = lookup(&faulty, me().pid);
        let w = faulty
            .open(w_ino, libc::O_WRONLY | libc::O_TRUNC, me())
            .unwrap();
        assert!(!w.bypass_page_cache, "{step:?}: through the page cache");
        faulty.write(w.fh, 0, b"never committed").unwrap();
        assert_eq!(faulty.flush(w.fh, me().pid).unwrap_err().errno(), libc::EIO);
        faulty.release(w.fh).unwrap();
        assert_eq!(d.on_disk(S), b"committed", "{step:?}");
        // Its pages hold what failed: no reader may take them.
        let r_ino = lookup(&faulty, 701);
        assert_ne!(
            r_ino, w_ino,
            "{step:?}: the failed writer's inode is dropped"
        );
        let r = faulty.open(r_ino, libc::O_RDONLY, other(701)).unwrap();
        assert!(!r.keep_cache, "{step:?}");
        let mut buf = [0u8; 64];
        let n = faulty.read(r.fh, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"committed", "{step:?}");
        faulty.release(r.fh).unwrap();
    }
}

#[test]
fn a_writer_that_commits_nothing_leaves_no_version_behind() {
    let d = with_checkpoint(b"committed");
    let (ino, opened) = d.open_path(S, libc::O_RDWR).unwrap();
    let mut buf = [0u8; 64];
    // It reads (the pages fill from its own file) but writes nothing.
    assert_eq!(d.fs.read(opened.fh, 0, &mut buf).unwrap(), 9);
    d.flush(opened.fh).unwrap();
    d.fs.release(opened.fh).unwrap();
    let (r, kept, data) = cat(&d, 801);
    assert_ne!(r, ino);
    assert!(!kept);
    assert_eq!(data, b"committed");
}

#[test]
fn passthrough_shares_inodes_but_never_keeps_the_cache() {
    let d = with_checkpoint(b"version 1");
    d.fs.set_passthrough(true);
    let (w, _) = commit(&d, b"through it");
    let ino = lookup(&d.fs, 901);
    assert_eq!(ino, w, "the committed version's inode");
    let r1 = d.fs.open(ino, libc::O_RDONLY, other(901)).unwrap();
    let r2 =
        d.fs.open(lookup(&d.fs, 902), libc::O_RDONLY, other(902))
            .unwrap();
    assert!(!r1.keep_cache && !r2.keep_cache, "refused by the kernel");
    use std::os::unix::fs::MetadataExt;
    let (b1, b2) = (r1.backing.unwrap(), r2.backing.unwrap());
    assert_eq!(
        b1.metadata().unwrap().ino(),
        b2.metadata().unwrap().ino(),
        "one backing file for both opens of the inode"
    );
    d.fs.release(r1.fh).unwrap();
    d.fs.release(r2.fh).unwrap();
}

#[test]
fn a_writer_refused_the_lock_leaves_the_readers_pages_alone() {
    let d = with_checkpoint(b"committed");
    cat(&d, 1001);
    std::fs::write(d.path(S).join("session.next"), b"another writer's").unwrap();
    let (_, kept, _) = cat(&d, 1002);
    assert!(kept);
    let ino = lookup(&d.fs, me().pid);
    let refused = d.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, me());
    assert_eq!(refused.unwrap_err().errno(), libc::EBUSY);
    let (r, kept, data) = cat(&d, 1003);
    assert_eq!(
        (r, kept),
        (ino, true),
        "the kernel opened nothing: pages kept"
    );
    assert_eq!(data, b"committed");
}

/// The kernel keeps the entry and the attributes of `session` in a watched
/// session directory: it opens and stats the inode it holds without a
/// lookup, until the watch drops the entry or a refusal sends it to one.
#[test]
fn an_inode_the_kernel_kept_of_an_older_version_is_refused_and_the_retry_reads_the_newer() {
    let d = with_checkpoint(b"version 1");
    d.fs.start_watching(None).unwrap();
    let (a, _, data) = cat(&d, 1001);
    assert_eq!(data, b"version 1");
    let attr = d.fs.getattr(a, None).unwrap();
    assert!(
        d.fs.ttl(&attr) > std::time::Duration::from_secs(60),
        "a committed version, watched: kept"
    );
    // Same size, other bytes: an inode read as the newer version would
    // show the older one's pages.
    save_outside(&d, b"VERSION 2");
    // `stat` shows the newer file, with attributes never kept: the inode is
    // retired (no open shares it any more).
    let shown = d.fs.getattr(a, None).unwrap();
    assert_eq!(
        shown.mtime,
        std::fs::metadata(d.path(S).join("session"))
            .unwrap()
            .modified()
            .unwrap()
    );
    assert_eq!(d.fs.ttl(&shown), std::time::Duration::ZERO);
    // `cat`: refused (the kernel looks the name up again and retries), for
    // reading and for writing from the old one.
    assert_eq!(
        errno_of(d.fs.open(a, libc::O_RDONLY, other(1002))),
        libc::ESTALE
    );
    let (b, kept, data) = cat(&d, 1002);
    assert_ne!(b, a, "the retry's lookup: the newer version's inode");
    assert!(!kept);
    assert_eq!(data, b"VERSION 2");
    assert_eq!(
        errno_of(d.fs.open(a, libc::O_RDWR, other(1003))),
        libc::ESTALE
    );
    assert_eq!(d.fs.getattr(b, None).unwrap().size, 9);
}

#[test]
fn a_writers_inode_is_never_kept_by_the_kernel_until_it_stands_for_its_commit() {
    let d = with_checkpoint(b"version 1");
    d.fs.start_watching(None).unwrap();
    let ino = lookup(&d.fs, me().pid);
    // A truncating writer starts empty: the inode it opens may be an
    // older version's (the kernel empties it).
    save_outside(&d, b"version 2");
    let w =
        d.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, me())
            .unwrap();
    let during = d.fs.getattr(ino, Some(w.fh)).unwrap();
    assert_eq!(
        d.fs.ttl(&during),
        std::time::Duration::ZERO,
        "being written"
    );
    d.write(w.fh, 0, b"version 3, through the mount").unwrap();
    d.flush(w.fh).unwrap();
    d.fs.release(w.fh).unwrap();
    let after = d.fs.getattr(ino, None).unwrap();
    assert_eq!(after.size, 28);
    assert!(d.fs.ttl(&after) > std::time::Duration::from_secs(60));
    let (r, kept, data) = cat(&d, 1101);
    assert_eq!((r, kept), (ino, true), "its commit, with its pages");
    assert_eq!(data, b"version 3, through the mount");
}

#[test]
fn chmod_and_touch_of_session_through_the_mount_keep_its_inode() {
    let d = with_checkpoint(b"version 1");
    d.fs.start_watching(None).unwrap();
    let ino = lookup(&d.fs, me().pid);
    let mode = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let a = d.fs.setattr(ino, None, mode, me()).unwrap();
    assert_eq!(a.perm, 0o600);
    let times = SetAttr {
        mtime: Some(sessionfs::fs::TimeSet::Now),
        ..SetAttr::default()
    };
    d.fs.setattr(ino, None, times, me()).unwrap();
    assert_eq!(d.fs.getattr(ino, None).unwrap().perm, 0o600);
    let (r, _, data) = cat(&d, 1201);
    assert_eq!(r, ino, "the inode stands for the changed file");
    assert_eq!(data, b"version 1");
    // `truncate -s 4 session`: a checkpoint of its own, the inode's now.
    let cut = SetAttr {
        size: Some(4),
        ..SetAttr::default()
    };
    assert_eq!(d.fs.setattr(ino, None, cut, me()).unwrap().size, 4);
    let (r, kept, data) = cat(&d, 1202);
    assert_eq!(r, ino);
    assert!(!kept, "its pages are not known to hold the new version");
    assert_eq!(data, b"vers");
}

#[test]
fn a_session_without_a_checkpoint_opens_however_its_directory_changes() {
    let d = Driver::with_sessions(&[S]);
    let _ = std::fs::remove_file(d.path(S).join("session"));
    d.fs.start_watching(None).unwrap();
    let ino = lookup(&d.fs, 1301);
    std::fs::write(d.path(S).join("notes.txt"), b"x").unwrap();
    let r = d.fs.open(ino, libc::O_RDONLY, other(1301)).unwrap();
    assert_eq!(d.read_all(r.fh).unwrap(), b"");
    d.fs.release(r.fh).unwrap();
    assert_eq!(d.fs.getattr(ino, None).unwrap().size, 0);
}

/// What the watch makes the kernel forget after `ops` (inotify queues the
/// events as the changes are made, so they are there once it returns).
fn forgotten_after(d: &Driver, ops: impl FnOnce()) -> Vec<Invalidation> {
    ops();
    let fd = d.fs.watch_descriptor().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut all = Vec::new();
    // SAFETY: a live descriptor and a buffer of its length.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above; only the file status flags change.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    loop {
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        all.extend(d.fs.changes(&buf[..n as usize]));
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) };
    all
}

#[test]
fn a_commit_through_the_mount_keeps_the_kernels_entry_and_one_outside_drops_it() {
    let d = with_checkpoint(b"version 1");
    d.fs.start_watching(None).unwrap();
    let dir = d.fs.lookup_by(ROOT, OsStr::new(S), 1401).unwrap().ino;
    let entry = Invalidation::Entry {
        parent: dir,
        name: "session".into(),
    };
    let got = forgotten_after(&d, || {
        let (w, _) = commit(&d, b"through the mount");
        let (r, kept, _) = cat(&d, 1402);
        assert_eq!((r, kept), (w, true));
    });
    assert!(
        !got.contains(&entry),
        "the writer's inode stands for its commit, with its pages: {got:?}"
    );
    let got = forgotten_after(&d, || save_outside(&d, b"outside"));
    assert!(got.contains(&entry), "{got:?}");
    let got = forgotten_after(&d, || {
        let mut perm = std::fs::metadata(d.path(S).join("session"))
            .unwrap()
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        std::fs::set_permissions(d.path(S).join("session"), perm).unwrap();
    });
    assert!(got.contains(&entry), "a chmod outside: {got:?}");
}
