//! One session: its directory, its committed checkpoint, and its
//! well-known directories. Taking and breaking the lock lives in
//! `core/lock.rs`, writing a new checkpoint in `core/writer.rs`.
//!
//! Invariants:
//! - every file of a session is reached through a descriptor of the session
//!   directory, itself opened with `O_NOFOLLOW` under the repository's
//!   descriptor; nothing here follows a symlink out of the repository;
//! - `session` is only ever replaced by `renameat` of a complete, fsynced
//!   file: a reader sees one whole checkpoint or the previous one;
//! - `session.next` exists only while a writer is alive (or a writer died):
//!   creating it with `O_EXCL` is taking the lock.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::error::{Error, Op, Result};
use super::name::SessionName;
use super::repo_dir::RepoDir;
use super::seam::Step;
use super::sys;

/// The committed checkpoint's file name.
pub const SESSION_FILE: &str = "session";
/// The session's lock: its existence is the lock (created with `O_EXCL`).
/// Plainbox writes its checkpoint into it and renames it over `session`;
/// sessionfs writes into a temporary of its own (see `core/writer.rs`).
pub const SESSION_NEXT_FILE: &str = "session.next";
/// The directories created inside every new plainbox session (a Checkbox
/// repository adds `session-share`: see [`crate::core::name::Layout`]).
pub const WELL_KNOWN_DIRS: [&str; 1] = super::name::PLAINBOX_WELL_KNOWN_DIRS;

/// The mode of new checkpoints and locks (less the umask).
pub(crate) const DEFAULT_MODE: u32 = 0o644;

/// Where a new checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// An empty file (`O_TRUNC`, a whole save).
    Empty,
    /// A copy of the current checkpoint (`O_RDWR`, `>>`, `conv=notrunc`).
    FromCurrent,
}

/// Options for [`Storage::begin`].
#[derive(Debug, Clone, Copy)]
pub struct BeginOptions {
    pub start: Start,
    /// Owner of the new file when there is no previous checkpoint (only
    /// applied when running as root). With a previous checkpoint, its owner
    /// and mode are kept.
    pub owner: Option<(u32, u32)>,
}

impl BeginOptions {
    pub fn new(start: Start) -> BeginOptions {
        BeginOptions { start, owner: None }
    }
}

/// The state of a session's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No `session.next`.
    Unlocked,
    /// `session.next` exists and a live writer holds its lock.
    Held,
    /// `session.next` exists and nobody holds it: an interrupted writer left
    /// it (or a writer that takes no lock on it, such as plainbox, is at work).
    Stale,
}

/// Facts about a committed checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointInfo {
    pub size: u64,
    pub modified: SystemTime,
}

/// A session directory inside a repository.
#[derive(Debug, Clone)]
pub struct Storage {
    repo: Arc<RepoDir>,
    name: SessionName,
}

impl Storage {
    pub(crate) fn new(repo: Arc<RepoDir>, name: SessionName) -> Storage {
        Storage { repo, name }
    }

    pub fn name(&self) -> &SessionName {
        &self.name
    }

    /// The session id: the directory name without `.session`.
    pub fn id(&self) -> &OsStr {
        self.name.id()
    }

    /// The session directory's path.
    pub fn location(&self) -> PathBuf {
        self.repo.location().join(self.name.as_os_str())
    }

    pub(crate) fn path_of(&self, file: &str) -> PathBuf {
        self.location().join(file)
    }

    /// Opens the session directory (never through a symlink).
    pub fn open_dir(&self) -> Result<OwnedFd> {
        let repo = self.repo.open(Op::OpenSession)?;
        self.open_dir_in(repo.as_fd())
    }

    /// Opens the session directory relative to an open repository directory.
    pub fn open_dir_in(&self, repo_dir: BorrowedFd<'_>) -> Result<OwnedFd> {
        sys::open_subdir(repo_dir, self.name.as_os_str()).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NoSuchSession {
                path: self.location(),
            },
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => Error::UnexpectedFileType {
                path: self.location(),
                expected: "a session directory",
            },
            _ => Error::io(Op::OpenSession, self.location(), e),
        })
    }

    /// Opens the committed checkpoint for reading; `None` when there is no
    /// checkpoint yet. The open file is one version, whatever commits later.
    pub fn open_checkpoint(&self) -> Result<Option<File>> {
        let dir = self.open_dir()?;
        self.open_checkpoint_in(dir.as_fd())
    }

    pub fn open_checkpoint_in(&self, dir: BorrowedFd<'_>) -> Result<Option<File>> {
        let path = self.path_of(SESSION_FILE);
        match sys::openat(
            dir,
            OsStr::new(SESSION_FILE),
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(Error::UnexpectedFileType {
                path,
                expected: "a regular file (it is a symlink)",
            }),
            Err(e) => Err(Error::io(Op::ReadCheckpoint, path, e)),
        }
    }

    /// Reads the whole last checkpoint; a missing checkpoint reads as empty.
    ///
    /// On NFSv3 a checkpoint replaced and removed on the server between the
    /// open and the read makes the read fail with ESTALE; the whole load is
    /// then tried once more, which reads the newer checkpoint whole.
    pub fn load(&self) -> Result<Vec<u8>> {
        match self.load_once() {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ESTALE) => {
                log::debug!(
                    "{}: stale file handle, reading again",
                    self.location().display()
                );
                self.load_once()
            }
            other => other,
        }
    }

    fn load_once(&self) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        if let Some(mut file) = self.open_checkpoint()? {
            file.read_to_end(&mut data)
                .map_err(|e| Error::io(Op::ReadCheckpoint, self.path_of(SESSION_FILE), e))?;
        }
        Ok(data)
    }

    /// Size and modification time of the committed checkpoint, if any.
    pub fn checkpoint_info(&self) -> Result<Option<CheckpointInfo>> {
        let dir = self.open_dir()?;
        self.checkpoint_info_in(dir.as_fd())
    }

    /// [`Storage::checkpoint_info`] in an already open session directory.
    pub fn checkpoint_info_in(&self, dir: BorrowedFd<'_>) -> Result<Option<CheckpointInfo>> {
        match sys::lstatat(dir, OsStr::new(SESSION_FILE)) {
            Ok(st) => Ok(Some(CheckpointInfo {
                size: st.st_size as u64,
                modified: sys::mtime(&st),
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(Error::io(Op::Stat, self.path_of(SESSION_FILE), e)),
        }
    }

    /// Deletes the session directory and everything in it, never following
    /// a symlink out of it.
    pub fn remove(&self) -> Result<()> {
        let repo = self.repo.open(Op::RemoveSession)?;
        match sys::remove_tree_at(repo.as_fd(), self.name.as_os_str()) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(Error::NoSuchSession {
                path: self.location(),
            }),
            // An NFS client keeps a file that is removed while open as
            // `.nfsXXXX` (its "silly rename") and refuses to remove that:
            // say so rather than report a bare EBUSY or ENOTEMPTY.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOTEMPTY)) => {
                match self
                    .open_dir()
                    .ok()
                    .and_then(|dir| nfs_leftover(dir.as_fd()))
                {
                    Some(file) => Err(Error::OpenOnNfsClient {
                        path: self.location(),
                        file,
                    }),
                    None => Err(Error::io(Op::RemoveSession, self.location(), e)),
                }
            }
            Err(e) => Err(Error::io(Op::RemoveSession, self.location(), e)),
        }
    }

    /// How the repository lays out its sessions.
    pub fn layout(&self) -> super::name::Layout {
        self.repo.layout()
    }

    /// Creates the well-known directories of the repository's layout inside
    /// the session (existing ones are kept), given to `owner` when one is
    /// named.
    pub fn populate_well_known_dirs(&self, owner: Option<(u32, u32)>) -> Result<()> {
        let dir = self.open_dir()?;
        for &name in self.repo.layout().well_known_dirs() {
            match sys::mkdirat(dir.as_fd(), OsStr::new(name), 0o755) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(Error::io(Op::CreateSession, self.path_of(name), e)),
            }
            if let Some((uid, gid)) = owner {
                sys::lchownat(dir.as_fd(), OsStr::new(name), uid, gid)
                    .map_err(|e| Error::io(Op::SetOwnerAndMode, self.path_of(name), e))?;
            }
        }
        Ok(())
    }

    pub(crate) fn seam_check(&self, step: Step, path: &std::path::Path, op: Op) -> Result<()> {
        self.repo
            .seam()
            .before(step, path)
            .map_err(|e| Error::io(op, path, e))
    }
}

/// True for the files an NFS client makes of a file removed while open
/// (`.nfs` and hex digits): NFS's own, never part of a session.
pub fn is_nfs_leftover(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b".nfs")
}

/// The first NFS leftover in a directory, if any.
fn nfs_leftover(dir: BorrowedFd<'_>) -> Option<std::ffi::OsString> {
    sys::read_dir_names(dir)
        .ok()?
        .into_iter()
        .find(|n| is_nfs_leftover(n))
}
