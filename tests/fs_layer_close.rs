//! Closing a `session` writer, driven through the filesystem layer without
//! a mount: every FLUSH (each `close()`) leaves the lock free before it
//! replies, since the kernel sends RELEASE only after `close()` returned and
//! the next open must not race it. The sequences are the ones shells,
//! Python and fsx send, each looped 1,000 times, daemon-served and with
//! passthrough (where the kernel writes the backing file itself).

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::fs_driver::{Driver, errno_of, me};
use sessionfs::fs::FsConfig;
use sessionfs::fs::inode::ROOT;

const S: &str = "a.session";
const LOOPS: usize = 1_000;

fn with_checkpoint(data: &[u8], passthrough: bool) -> Driver {
    let d = Driver::with_sessions(&[S]);
    std::fs::write(d.path(S).join("session"), data).unwrap();
    d.fs.set_passthrough(passthrough);
    d
}

/// One open file of `session`, written the way the kernel does: through
/// the daemon, or with passthrough straight into the backing file.
#[derive(Debug)]
struct Open {
    fh: u64,
    backing: Option<File>,
}

fn open(d: &Driver, flags: i32) -> Result<Open, sessionfs::fs::FsError> {
    let ino = d.checkpoint(S);
    let opened = d.open(ino, flags)?;
    Ok(Open {
        fh: opened.fh,
        backing: opened.backing,
    })
}

impl Open {
    fn write(&self, d: &Driver, offset: u64, data: &[u8]) {
        match &self.backing {
            Some(b) => b.write_all_at(data, offset).unwrap(),
            None => d.write(self.fh, offset, data).unwrap(),
        }
    }

    fn read_all(&self, d: &Driver) -> Vec<u8> {
        match &self.backing {
            Some(b) => {
                let len = b.metadata().unwrap().len() as usize;
                let mut buf = vec![0; len];
                b.read_exact_at(&mut buf, 0).unwrap();
                buf
            }
            None => d.read_all(self.fh).unwrap(),
        }
    }
}

const MODES: [(bool, &str); 2] = [(false, "daemon-served"), (true, "passthrough")];

// ----- the sequences of issue: each close frees the lock -------------------

#[test]
fn truncate_then_echo_works_every_time() {
    // `: > session; echo x > session`: bash opens with O_TRUNC, dup2s onto
    // stdout and closes the original (FLUSH), then restores its stdout
    // (FLUSH); the RELEASE comes later, after the next open.
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"old checkpoint", passthrough);
        for i in 0..LOOPS {
            let colon = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
            d.flush(colon.fh).unwrap();
            d.flush(colon.fh).unwrap();
            assert_eq!(d.on_disk(S), b"", "{mode} #{i}: `: > session` empties it");
            assert!(!d.locked(S), "{mode} #{i}");
            let echo = open(&d, libc::O_WRONLY | libc::O_TRUNC)
                .unwrap_or_else(|e| panic!("{mode} #{i}: echo's open: {e}"));
            d.flush(echo.fh).unwrap();
            let line = format!("x{i}\n");
            echo.write(&d, 0, line.as_bytes());
            d.flush(echo.fh).unwrap();
            assert_eq!(d.on_disk(S), line.as_bytes(), "{mode} #{i}");
            d.fs.release(colon.fh).unwrap();
            d.fs.release(echo.fh).unwrap();
            assert_eq!(
                d.on_disk(S),
                line.as_bytes(),
                "{mode} #{i}: late releases change nothing"
            );
            assert!(!d.locked(S), "{mode} #{i}");
        }
    }
}

#[test]
fn an_open_that_only_read_frees_the_lock_at_its_close() {
    // `exec 3<>session; read -u 3 l; exec 3>&-; echo x > session`.
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"old checkpoint\n", passthrough);
        let committed = inode_on_disk(&d);
        for i in 0..LOOPS {
            let rw = open(&d, libc::O_RDWR).unwrap();
            assert_eq!(rw.read_all(&d), b"old checkpoint\n", "{mode} #{i}");
            d.flush(rw.fh).unwrap();
            assert!(!d.locked(S), "{mode} #{i}: the close gave the lock back");
            assert_eq!(
                inode_on_disk(&d),
                committed,
                "{mode} #{i}: nothing committed"
            );
            let w = open(&d, libc::O_WRONLY)
                .unwrap_or_else(|e| panic!("{mode} #{i}: the next open: {e}"));
            d.fs.release(rw.fh).unwrap();
            d.flush(w.fh).unwrap();
            d.fs.release(w.fh).unwrap();
            assert_eq!(inode_on_disk(&d), committed, "{mode} #{i}");
        }
        let echo = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        echo.write(&d, 0, b"x\n");
        d.flush(echo.fh).unwrap();
        d.fs.release(echo.fh).unwrap();
        assert_eq!(d.on_disk(S), b"x\n", "{mode}");
    }
}

#[test]
fn fsync_then_close_then_reopen_works_every_time() {
    // fsx: write, fsync (or fdatasync), read, close, reopen O_RDWR.
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"", passthrough);
        for i in 0..LOOPS {
            let w = open(&d, libc::O_RDWR)
                .unwrap_or_else(|e| panic!("{mode} #{i}: reopen after fsync and close: {e}"));
            let record = format!("{i:08}");
            w.write(&d, (i * 8) as u64, record.as_bytes());
            d.fs.fsync(w.fh).unwrap();
            assert_eq!(
                d.on_disk(S).len(),
                (i + 1) * 8,
                "{mode} #{i}: fsync commits"
            );
            assert_eq!(&w.read_all(&d)[i * 8..], record.as_bytes(), "{mode} #{i}");
            d.flush(w.fh).unwrap();
            assert!(!d.locked(S), "{mode} #{i}: the close gave the lock back");
            // The RELEASE of this open arrives after the next open.
            if i > 0 && i % 2 == 0 {
                d.fs.release(w.fh).unwrap();
            } else {
                let next = open(&d, libc::O_RDONLY).unwrap();
                d.fs.release(w.fh).unwrap();
                d.fs.release(next.fh).unwrap();
            }
        }
        let expected: String = (0..LOOPS).map(|i| format!("{i:08}")).collect();
        assert_eq!(d.on_disk(S), expected.as_bytes(), "{mode}");
        assert!(!d.locked(S), "{mode}");
    }
}

#[test]
fn a_written_open_closed_and_reopened_works_every_time() {
    // fsx's close/reopen after writes: each close commits.
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"", passthrough);
        let mut prev: Option<Open> = None;
        for i in 0..LOOPS {
            let w = open(&d, libc::O_RDWR)
                .unwrap_or_else(|e| panic!("{mode} #{i}: reopen after close: {e}"));
            if let Some(p) = prev.take() {
                d.fs.release(p.fh).unwrap();
            }
            w.write(&d, 0, format!("{i:08}").as_bytes());
            d.flush(w.fh).unwrap();
            assert_eq!(d.on_disk(S), format!("{i:08}").as_bytes(), "{mode} #{i}");
            prev = Some(w);
        }
        if let Some(p) = prev {
            d.fs.release(p.fh).unwrap();
        }
        assert!(!d.locked(S), "{mode}");
    }
}

// ----- O_TRUNC with nothing written ----------------------------------------

#[test]
fn a_single_close_of_a_truncating_open_commits_the_empty_file_at_release() {
    // Python's `open(F, "w").close()`: one FLUSH, then RELEASE.
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"old checkpoint", passthrough);
        let w = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        d.flush(w.fh).unwrap();
        assert!(!d.locked(S), "{mode}: the close gave the lock back");
        assert_eq!(
            d.on_disk(S),
            b"old checkpoint",
            "{mode}: the first close of a redirection commits nothing"
        );
        assert_eq!(
            w.read_all(&d),
            b"",
            "{mode}: the open still reads as truncated"
        );
        d.fs.release(w.fh).unwrap();
        assert_eq!(d.on_disk(S), b"", "{mode}");
        assert!(!d.locked(S), "{mode}");
    }
}

#[test]
fn a_late_truncate_never_replaces_a_later_commit() {
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"old checkpoint", passthrough);
        let trunc = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        d.flush(trunc.fh).unwrap();
        let w = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        w.write(&d, 0, b"newer");
        d.flush(w.fh).unwrap();
        d.fs.release(w.fh).unwrap();
        assert_eq!(d.on_disk(S), b"newer", "{mode}");
        d.fs.release(trunc.fh).unwrap();
        assert_eq!(
            d.on_disk(S),
            b"newer",
            "{mode}: the late truncate is dropped"
        );
        assert!(!d.locked(S), "{mode}");
    }
}

#[test]
fn a_late_truncate_never_waits_for_a_writer_at_work() {
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"old checkpoint", passthrough);
        let trunc = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        d.flush(trunc.fh).unwrap();
        let w = open(&d, libc::O_RDWR).unwrap();
        w.write(&d, 0, b"OLD");
        d.fs.release(trunc.fh).unwrap();
        assert!(d.locked(S), "{mode}: the writer keeps its lock");
        assert_eq!(d.on_disk(S), b"old checkpoint", "{mode}");
        d.flush(w.fh).unwrap();
        d.fs.release(w.fh).unwrap();
        assert_eq!(d.on_disk(S), b"OLD checkpoint", "{mode}");
    }
}

#[test]
fn fsync_of_a_truncating_open_after_its_first_close_commits_the_empty_file() {
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"old checkpoint", passthrough);
        let w = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        d.flush(w.fh).unwrap();
        d.fs.fsync(w.fh).unwrap();
        assert_eq!(d.on_disk(S), b"", "{mode}");
        assert!(!d.locked(S), "{mode}");
        d.fs.release(w.fh).unwrap();
        assert_eq!(d.on_disk(S), b"", "{mode}");
    }
}

// ----- a descriptor still open -----------------------------------------------

#[test]
fn a_descriptor_still_open_writes_on_after_a_close() {
    // `exec 3<>session; (exec 4>&3; ...)`: a close of one descriptor, then
    // writes through another of the same open file.
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(b"old checkpoint", passthrough);
        let w = open(&d, libc::O_RDWR).unwrap();
        d.flush(w.fh).unwrap();
        assert!(!d.locked(S), "{mode}");
        w.write(&d, 0, b"OLD");
        if !passthrough {
            // The daemon sees the write: the lock is taken again, and a
            // second writer is refused while it is uncommitted.
            assert!(d.locked(S), "{mode}");
            assert_eq!(errno_of(open(&d, libc::O_WRONLY)), libc::EBUSY, "{mode}");
        }
        d.flush(w.fh).unwrap();
        assert_eq!(d.on_disk(S), b"OLD checkpoint", "{mode}");
        assert!(!d.locked(S), "{mode}");
        // Written again in place, same size, right after the commit.
        w.write(&d, 0, b"old");
        d.fs.release(w.fh).unwrap();
        assert_eq!(
            d.on_disk(S),
            b"old checkpoint",
            "{mode}: committed at release"
        );
        assert!(!d.locked(S), "{mode}");
    }
}

#[test]
fn a_redirection_written_after_its_first_close_commits_exactly_that() {
    // `cmd > session`, cmd writing after bash's dup2-and-close; with
    // passthrough the kernel writes the file the first close gave back.
    for (passthrough, mode) in MODES {
        let d = with_checkpoint(&[b'x'; 10_000], passthrough);
        for i in 0..LOOPS / 10 {
            let w = open(&d, libc::O_WRONLY | libc::O_TRUNC)
                .unwrap_or_else(|e| panic!("{mode} #{i}: {e}"));
            d.flush(w.fh).unwrap();
            let out = format!("output {i}\n");
            w.write(&d, 0, out.as_bytes());
            d.flush(w.fh).unwrap();
            assert_eq!(d.on_disk(S), out.as_bytes(), "{mode} #{i}");
            assert!(!d.locked(S), "{mode} #{i}");
            d.fs.release(w.fh).unwrap();
            assert_eq!(d.on_disk(S), out.as_bytes(), "{mode} #{i}");
        }
    }
}

#[test]
fn reads_through_an_open_given_back_see_its_own_version() {
    let d = with_checkpoint(b"version 1", false);
    let w = open(&d, libc::O_RDWR).unwrap();
    d.flush(w.fh).unwrap();
    let other = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    other.write(&d, 0, b"version 2, longer");
    d.flush(other.fh).unwrap();
    d.fs.release(other.fh).unwrap();
    assert_eq!(w.read_all(&d), b"version 1", "one version per open");
    d.fs.release(w.fh).unwrap();
    assert_eq!(d.on_disk(S), b"version 2, longer");
}

// ----- a writer killed by a signal never commits ---------------------------

/// A process killed by SIGKILL and not reaped yet: its `/proc/PID/stat`
/// shows what a writer dying from a signal shows at its last FLUSH.
struct Killed(Child);

impl Killed {
    fn new() -> Killed {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        // SAFETY: kill(2) on our own child; no memory is involved.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let stat = format!("/proc/{}/stat", child.id());
        for _ in 0..500 {
            let s = std::fs::read_to_string(&stat).unwrap();
            if s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.starts_with(" Z"))
            {
                return Killed(child);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.wait();
        panic!("the killed child never became a zombie");
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.wait();
    }
}

#[test]
fn a_redirection_killed_before_or_while_writing_never_commits() {
    for (passthrough, mode) in MODES {
        let killed = Killed::new();
        let d = with_checkpoint(b"old checkpoint", passthrough);
        // Killed before writing: the truncate is dropped.
        let w = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        d.flush(w.fh).unwrap();
        d.fs.flush(w.fh, killed.pid()).unwrap();
        d.fs.release(w.fh).unwrap();
        assert_eq!(
            d.on_disk(S),
            b"old checkpoint",
            "{mode}: killed before writing"
        );
        assert!(!d.locked(S), "{mode}");
        // Killed while writing after the shell's first close.
        let w = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        d.flush(w.fh).unwrap();
        w.write(&d, 0, b"partial");
        d.fs.flush(w.fh, killed.pid()).unwrap();
        d.fs.release(w.fh).unwrap();
        assert_eq!(
            d.on_disk(S),
            b"old checkpoint",
            "{mode}: killed while writing"
        );
        assert!(!d.locked(S), "{mode}");
        // Killed before the shell's first close: nothing either.
        let w = open(&d, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        d.fs.flush(w.fh, killed.pid()).unwrap();
        d.fs.release(w.fh).unwrap();
        assert_eq!(d.on_disk(S), b"old checkpoint", "{mode}: killed at once");
    }
}

/// The inode number of the committed checkpoint: a commit renames a new
/// file into place.
fn inode_on_disk(d: &Driver) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(d.path(S).join("session")).unwrap().ino()
}

// ----- a commit at RELEASE, after close() returned --------------------------

/// Makes each checkpoint's fsync slow while `slow` is set: a RELEASE's
/// commit then holds the lock long enough for another open to meet it.
#[derive(Debug, Default)]
struct SlowSync {
    slow: std::sync::atomic::AtomicBool,
}

impl sessionfs::core::FaultSeam for SlowSync {
    fn before(&self, step: sessionfs::core::Step, _path: &std::path::Path) -> std::io::Result<()> {
        if step == sessionfs::core::Step::SyncFile && self.slow.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }
}

#[test]
fn a_writer_opening_during_a_commit_at_release_waits_for_it() {
    let d = with_checkpoint(b"old checkpoint", false);
    let seam = Arc::new(SlowSync::default());
    let fs = d.reopen(FsConfig { read_only: false }, Some(seam.clone()));
    let pid = me().pid;
    let dir = fs.lookup_by(ROOT, OsStr::new(S), pid).unwrap().ino;
    let ino = fs.lookup_by(dir, OsStr::new("session"), pid).unwrap().ino;
    // `open(F, "w").close()`: the empty checkpoint is committed at RELEASE.
    let trunc = fs
        .open(ino, libc::O_WRONLY | libc::O_TRUNC, me())
        .unwrap()
        .fh;
    fs.flush(trunc, pid).unwrap();
    assert!(!d.locked(S));
    seam.slow.store(true, Ordering::SeqCst);
    std::thread::scope(|scope| {
        let release = scope.spawn(|| fs.release(trunc));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !d.locked(S) {
            assert!(Instant::now() < deadline, "the release never took the lock");
            std::thread::yield_now();
        }
        // The program's next open meets the RELEASE's commit: it waits.
        // (Its lookup, as the kernel makes it, finds the inode still open
        // by the releasing writer: it gets one of its own.)
        let asked = Instant::now();
        let next = fs.lookup_by(dir, OsStr::new("session"), pid).unwrap().ino;
        let w = fs
            .open(next, libc::O_WRONLY | libc::O_TRUNC, me())
            .expect("the next open waits for the commit at release");
        seam.slow.store(false, Ordering::SeqCst);
        assert!(
            asked.elapsed() >= Duration::from_millis(100),
            "the open met the commit (took {:?})",
            asked.elapsed()
        );
        release.join().unwrap().unwrap();
        assert_eq!(d.on_disk(S), b"", "the release committed the truncate");
        fs.write(w.fh, 0, b"next").unwrap();
        fs.flush(w.fh, pid).unwrap();
        fs.release(w.fh).unwrap();
    });
    assert_eq!(d.on_disk(S), b"next");
    // A writer with uncommitted data still refuses a second one at once.
    // (`ino` stands for a version two commits old: an open of it is
    // refused, and the kernel's retry looks the name up again.)
    assert_eq!(errno_of(fs.open(ino, libc::O_RDWR, me())), libc::ESTALE);
    let ino = fs.lookup_by(dir, OsStr::new("session"), pid).unwrap().ino;
    let w = fs.open(ino, libc::O_RDWR, me()).unwrap().fh;
    fs.write(w, 0, b"NEXT").unwrap();
    let asked = Instant::now();
    let second = fs.lookup_by(dir, OsStr::new("session"), pid).unwrap().ino;
    assert_eq!(errno_of(fs.open(second, libc::O_WRONLY, me())), libc::EBUSY);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "refused promptly, not after a wait"
    );
    fs.flush(w, pid).unwrap();
    fs.release(w).unwrap();
    assert_eq!(d.on_disk(S), b"NEXT");
}
