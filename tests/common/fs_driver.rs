//! Drives the filesystem layer ([`SessionFs`]) directly, without a mount,
//! the way the kernel does: by inode and handle numbers, one request at a
//! time, on a throw-away repository. What the requests did is checked on
//! the repository's disk.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

use sessionfs::core::{FaultSeam, Repository, SESSION_NEXT_FILE};
use sessionfs::fs::inode::ROOT;
use sessionfs::fs::{Attr, Caller, FsConfig, FsError, Opened, SessionFs};

use super::repo::TestRepo;

pub struct Driver {
    pub repo: TestRepo,
    pub fs: SessionFs,
}

/// The caller of every request: this process.
pub fn me() -> Caller {
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Caller {
        uid,
        gid,
        pid: std::process::id(),
    }
}

impl Driver {
    /// A filesystem over a new repository holding the sessions `names`
    /// (made on disk, not through the filesystem).
    pub fn with_sessions(names: &[&str]) -> Driver {
        let repo = TestRepo::new();
        for n in names {
            std::fs::create_dir(repo.path().join(n)).expect("mkdir session");
        }
        let fs = SessionFs::new(repo.repo().clone(), FsConfig { read_only: false })
            .expect("filesystem over the repository");
        Driver { repo, fs }
    }

    /// The same repository seen through another filesystem: read-only, or
    /// with a fault seam.
    pub fn reopen(&self, config: FsConfig, seam: Option<Arc<dyn FaultSeam>>) -> SessionFs {
        let repo = match seam {
            Some(seam) => self.repo.with_seam(seam),
            None => Repository::new(self.repo.path()),
        };
        SessionFs::new(repo, config).expect("filesystem over the repository")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.repo.path().join(rel)
    }

    /// A kernel LOOKUP of `name` in `parent`, by this process.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        self.fs.lookup_by(parent, OsStr::new(name), me().pid)
    }

    /// The inode of a session directory (looked up).
    pub fn session(&self, name: &str) -> u64 {
        self.lookup(ROOT, name).expect("lookup session").ino
    }

    /// The inode of `session` in a session directory (looked up).
    pub fn checkpoint(&self, session: &str) -> u64 {
        let dir = self.session(session);
        self.lookup(dir, "session").expect("lookup checkpoint").ino
    }

    /// An OPEN of `ino`, as the kernel sends it: refused with `ESTALE`
    /// (the inode is another open's version, or a writer's), it tries once
    /// more. The kernel's retry walks the path again: with no lookup in
    /// between, as here, it is the same inode (a reopen through
    /// `/proc/self/fd`); [`Driver::open_path`] looks the name up again.
    pub fn open(&self, ino: u64, flags: i32) -> Result<Opened, FsError> {
        match self.fs.open(ino, flags, me()) {
            Err(e) if e.errno() == libc::ESTALE => self.fs.open(ino, flags, me()),
            other => other,
        }
    }

    /// `open()` of `session` in a session directory by path, as the kernel
    /// makes it: a lookup, the OPEN, and on `ESTALE` a second lookup and
    /// OPEN. Returns the inode too.
    pub fn open_path(&self, session: &str, flags: i32) -> Result<(u64, Opened), FsError> {
        let ino = self.checkpoint(session);
        match self.fs.open(ino, flags, me()) {
            Err(e) if e.errno() == libc::ESTALE => {
                let ino = self.checkpoint(session);
                self.fs.open(ino, flags, me()).map(|o| (ino, o))
            }
            other => other.map(|o| (ino, o)),
        }
    }

    /// WRITE of all of `data` at `offset`.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<(), FsError> {
        let n = self.fs.write(fh, offset, data)?;
        assert_eq!(n as usize, data.len(), "short write");
        Ok(())
    }

    /// The whole content, read as the kernel does: in chunks to the end.
    pub fn read_all(&self, fh: u64) -> Result<Vec<u8>, FsError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = self.fs.read(fh, out.len() as u64, &mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// FLUSH by this process (a `close()`).
    pub fn flush(&self, fh: u64) -> Result<(), FsError> {
        self.fs.flush(fh, me().pid)
    }

    /// What the repository holds as a session's committed checkpoint.
    pub fn on_disk(&self, session: &str) -> Vec<u8> {
        std::fs::read(self.path(session).join("session")).expect("read committed checkpoint")
    }

    /// Whether the session's lock `session.next` exists on disk.
    pub fn locked(&self, session: &str) -> bool {
        std::fs::symlink_metadata(self.path(session).join(SESSION_NEXT_FILE)).is_ok()
    }
}

/// The errno a result's error replies with.
pub fn errno_of<T: std::fmt::Debug>(r: Result<T, FsError>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno(),
    }
}
