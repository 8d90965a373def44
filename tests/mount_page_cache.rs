//! The kernel's page cache of `session` through the mount: a committed
//! version's pages stay cached from open to open, and from a commit made
//! through the mount on, but never outlive their version: a commit made
//! outside the mount, a writer killed before its commit, and a reader of
//! an older version each read exactly the version they should.
//!
//! Which pages the kernel holds is asked with `mincore(2)` on a mapping of
//! the file, right after its open (before any read could fill them).

#[macro_use]
mod common;

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::process::Command;

use common::mount::{Mounted, run, writing};

const PAGE: usize = 4096;

/// A checkpoint of `pages` pages, every byte `fill`.
fn version(pages: usize, fill: u8) -> Vec<u8> {
    vec![fill; pages * PAGE]
}

/// What a checkpoint made by [`version`] is, for messages: its length and
/// the bytes it holds.
fn summary(data: &[u8]) -> (usize, Vec<u8>) {
    let mut bytes: Vec<u8> = data.to_vec();
    bytes.sort_unstable();
    bytes.dedup();
    (data.len(), bytes)
}

/// How many of `file`'s pages the kernel's page cache holds now.
fn resident_pages(file: &File) -> usize {
    let len = file.metadata().expect("fstat").len() as usize;
    if len == 0 {
        return 0;
    }
    // SAFETY: a read-only shared mapping of an open file, unmapped below;
    // nothing reads through it.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        addr,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    let mut vec = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: `addr` maps `len` bytes; `vec` has one byte per page of it.
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `addr` and `len` are the mapping made above.
    unsafe { libc::munmap(addr, len) };
    assert_eq!(rc, 0, "mincore: {err}");
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

/// Opens `session`, tells how many of its pages were cached at the open,
/// and reads it whole (on a thread of its own: another process for the
/// daemon, as `cat` would be).
fn cat(m: &Mounted) -> (usize, Vec<u8>) {
    let p = m.path("a.session/session");
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut f = File::open(&p).expect("open session");
            let cached = resident_pages(&f);
            let mut data = Vec::new();
            f.read_to_end(&mut data).expect("read session");
            (cached, data)
        })
        .join()
        .expect("reader thread")
    })
}

#[test]
fn daemon_served_a_commit_through_the_mount_leaves_its_pages_cached() {
    let m = Mounted::start(&["--no-passthrough"]);
    m.new_session("a");
    m.save("a", b"old");
    let v1 = version(64, b'1');
    fs::write(m.path("a.session/session"), &v1).unwrap();
    assert_eq!(summary(&m.checkpoint("a")), summary(&v1));
    let (cached, data) = cat(&m);
    assert_eq!(summary(&data), summary(&v1));
    assert_eq!(cached, 64, "the writer's pages are the committed version's");
    let (cached, data) = cat(&m);
    assert_eq!(
        (cached, data.len()),
        (64, v1.len()),
        "kept from open to open"
    );
}

#[test]
fn daemon_served_pages_read_once_are_kept_for_the_next_reader() {
    let m = Mounted::start(&["--no-passthrough"]);
    m.new_session("a");
    let v1 = version(32, b'1');
    m.save("a", &v1);
    let (cached, data) = cat(&m);
    assert_eq!(
        (cached, summary(&data)),
        (0, summary(&v1)),
        "a commit outside: nothing cached"
    );
    let (cached, data) = cat(&m);
    assert_eq!(
        (cached, summary(&data)),
        (32, summary(&v1)),
        "the first reader filled them"
    );
    // The same size, other bytes, committed outside: the next open reads
    // them, none of the old pages.
    let v2 = version(32, b'2');
    m.save("a", &v2);
    let (cached, data) = cat(&m);
    assert_eq!((cached, summary(&data)), (0, summary(&v2)));
}

both_modes! {
    fn a_commit_made_outside_the_mount_is_read_at_the_next_open(m) {
        m.new_session("a");
        let v1 = version(16, b'1');
        fs::write(m.path("a.session/session"), &v1).unwrap();
        assert_eq!(summary(&cat(m).1), summary(&v1));
        assert_eq!(summary(&cat(m).1), summary(&v1));
        // The same size, other bytes: stale pages would read as v1.
        let v2 = version(16, b'2');
        m.save("a", &v2);
        assert_eq!(summary(&cat(m).1), summary(&v2), "the next open reads the new version");
        // And with `cat`, a process of its own.
        let out = run(Command::new("cat").arg(m.path("a.session/session")));
        assert_eq!(summary(out.assert_ok()), summary(&v2));
    }

    fn a_reader_of_the_old_version_reads_it_whole_while_a_writer_writes(m) {
        m.new_session("a");
        let old = version(64, b'o');
        fs::write(m.path("a.session/session"), &old).unwrap();
        let p = m.path("a.session/session");
        let reader = File::open(&p).unwrap();
        let mut head = vec![0u8; PAGE];
        reader.read_exact_at(&mut head, 0).unwrap();
        let _w = writing();
        let mut writer = fs::OpenOptions::new().write(true).truncate(true).open(&p).unwrap();
        std::io::Write::write_all(&mut writer, &version(8, b'n')).unwrap();
        // Readers opening meanwhile, and the one open since before, read
        // the committed version whole, never the writer's pages.
        let (_, during) = cat(m);
        assert_eq!(summary(&during), summary(&old), "a reader opening during the write");
        let mut all = Vec::new();
        (&reader).read_to_end(&mut all).unwrap();
        assert_eq!(summary(&all), summary(&old), "the first reader's version");
        drop(writer);
        let (_, after) = cat(m);
        assert_eq!(summary(&after), summary(&version(8, b'n')), "the commit is read at the next open");
        let mut again = vec![0u8; old.len()];
        reader.read_exact_at(&mut again, 0).unwrap();
        assert_eq!(summary(&again), summary(&old), "and the old reader still reads its version");
    }

    fn a_writer_killed_before_its_commit_leaves_no_pages_behind(m) {
        m.new_session("a");
        let old = version(4, b'o');
        fs::write(m.path("a.session/session"), &old).unwrap();
        assert_eq!(summary(&cat(m).1), summary(&old));
        // Writes through the page cache, then dies from a signal with its
        // descriptor open: the close of a dying writer commits nothing.
        let out = run(Command::new("python3").arg("-c").arg(
            "import os, sys\n\
             fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)\n\
             os.write(fd, b'k' * 16384)\n\
             os.kill(os.getpid(), 9)\n",
        ).arg(m.path("a.session/session")));
        assert!(!out.ok(), "the writer was killed");
        m.assert_no_next();
        assert_eq!(summary(&m.checkpoint("a")), summary(&old));
        let (_, data) = cat(m);
        assert_eq!(summary(&data), summary(&old), "the killed writer's pages are never read");
    }
}
