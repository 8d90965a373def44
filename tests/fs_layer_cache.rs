//! The kernel's page cache of `session`, driven through the filesystem
//! layer without a mount: one inode per committed version, its pages kept
//! from open to open (`keep_cache`) only while they are exactly that
//! version. Requests come from several processes (the `pid` of each
//! lookup), as `cat`, `cp` and a writer's shell would send them.

mod common;

use std::ffi::OsStr;
use std::sync::Arc;

use common::fs_driver::{Driver, me};
use sessionfs::core::{FailStep, Repository, Step};
use sessionfs::fs::inode::ROOT;
use sessionfs::fs::{Caller, FsConfig, SessionFs};

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
    (ino, opened.writes_checkpoint)
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
    assert!(!w.writes_checkpoint, "alone on its inode: page cache");
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
        w.writes_checkpoint,
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
        assert!(!w.writes_checkpoint, "{step:?}: through the page cache");
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
