//! One session: its directory, its checkpoint, and the commit protocol.
//!
//! Invariants:
//! - every file of a session is reached through a descriptor of the session
//!   directory, itself opened with `O_NOFOLLOW` under the repository's
//!   descriptor; nothing here follows a symlink out of the repository;
//! - `session` is only ever replaced by `renameat` of a complete, fsynced
//!   file: a reader sees one whole checkpoint or the previous one;
//! - `session.next` exists only while a [`CheckpointWriter`] is alive (or a
//!   writer died): creating it with `O_EXCL` is taking the lock, and a writer
//!   holds an exclusive `flock` on it until the rename, so a live lock can be
//!   told from a stale one;
//! - a writer renames only the inode it created: before the rename it checks
//!   that `session.next` is still its own file.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::error::{Error, Op, Result};
use super::name::SessionName;
use super::repo_dir::RepoDir;
use super::seam::Step;
use super::sys;
use super::writer::{CheckpointLock, CheckpointWriter, remove_stale_temporaries};

/// The committed checkpoint's file name.
pub const SESSION_FILE: &str = "session";
/// The file a checkpoint is written to before it is renamed over `session`;
/// its existence is the lock.
pub const SESSION_NEXT_FILE: &str = "session.next";
/// The directories created inside every new session.
pub const WELL_KNOWN_DIRS: [&str; 1] = ["io-logs"];

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
    pub fn load(&self) -> Result<Vec<u8>> {
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

    /// Saves `data` as the new checkpoint with the full commit protocol.
    pub fn save(&self, data: &[u8]) -> Result<()> {
        let mut writer = self.begin(BeginOptions::new(Start::Empty))?;
        writer.write_at(data, 0)?;
        writer.commit()
    }

    /// Takes the lock and starts a streaming checkpoint.
    pub fn begin(&self, opts: BeginOptions) -> Result<CheckpointWriter> {
        let dir = self.open_dir()?;
        CheckpointWriter::begin(self.clone(), dir, opts)
    }

    /// Takes the lock and starts a streaming checkpoint in an already open
    /// session directory.
    pub fn begin_in(&self, dir: OwnedFd, opts: BeginOptions) -> Result<CheckpointWriter> {
        CheckpointWriter::begin(self.clone(), dir, opts)
    }

    /// Commits the file `name` of the session directory as the new checkpoint
    /// (the `mv tmp session` pattern): under the lock, fsync it, rename it
    /// over `session`, fsync the directory.
    pub fn commit_file(&self, name: &OsStr) -> Result<()> {
        let dir = self.open_dir()?;
        let path = self.location().join(name);
        let file = sys::openat(dir.as_fd(), name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
            .map_err(|e| Error::io(Op::SyncCheckpoint, &path, e))?;
        let st = sys::fstat(file.as_fd()).map_err(|e| Error::io(Op::Stat, &path, e))?;
        if !sys::is_reg(&st) {
            return Err(Error::UnexpectedFileType {
                path,
                expected: "a regular file",
            });
        }
        let lock = CheckpointLock::take(self, dir)?;
        self.seam_check(Step::SyncFile, &path, Op::SyncCheckpoint)?;
        sys::fsync(file.as_fd()).map_err(|e| Error::io(Op::SyncCheckpoint, &path, e))?;
        lock.commit_name(name)
    }

    /// The state of this session's lock.
    pub fn lock_state(&self) -> Result<LockState> {
        let dir = self.open_dir()?;
        self.lock_state_in(dir.as_fd())
    }

    pub fn lock_state_in(&self, dir: BorrowedFd<'_>) -> Result<LockState> {
        let path = self.path_of(SESSION_NEXT_FILE);
        let fd = match sys::openat(
            dir,
            OsStr::new(SESSION_NEXT_FILE),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(LockState::Unlocked),
            // A symlink or something we may not open is still a lock.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EACCES)) => {
                return Ok(LockState::Stale);
            }
            Err(e) => return Err(Error::io(Op::LockCheckpoint, path, e)),
        };
        // Asking, not taking: works on a read-only descriptor, over NFS too,
        // and never gets in a writer's way.
        match sys::is_locked_by_other(fd.as_fd()) {
            Ok(true) => Ok(LockState::Held),
            Ok(false) => Ok(LockState::Stale),
            // Cautious: a lock whose holder cannot be asked about is
            // reported as held rather than failing the caller's listing.
            Err(e) => {
                log::warn!("cannot tell whether {} is held: {e}", path.display());
                Ok(LockState::Held)
            }
        }
    }

    /// Removes `session.next`. Refused while a live writer holds it, unless
    /// `force`. Returns whether a lock was removed.
    pub fn break_lock(&self, force: bool) -> Result<bool> {
        let dir = self.open_dir()?;
        self.break_lock_in(dir.as_fd(), force)
    }

    pub fn break_lock_in(&self, dir: BorrowedFd<'_>, force: bool) -> Result<bool> {
        let path = self.path_of(SESSION_NEXT_FILE);
        let next = OsStr::new(SESSION_NEXT_FILE);
        // Opened for writing where we may, so that the lock can be held
        // while unlinking; read-only otherwise (someone else's lock file),
        // where the lock can still be asked about.
        let open = |flags| sys::openat(dir, next, flags | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0);
        let fd = match open(libc::O_WRONLY) {
            Ok(fd) => Some((fd, true)),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => match open(libc::O_RDONLY) {
                Ok(fd) => Some((fd, false)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
                Err(_) => None,
            },
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            // Not a regular file we can lock (a planted symlink, a fifo):
            // just unlink it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENXIO)) => None,
            Err(e) => return Err(Error::io(Op::BreakLock, path, e)),
        };
        if let Some((fd, writable)) = &fd {
            // Holding the lock while unlinking means no writer of ours can
            // be between its create and its lock right now.
            let held = if *writable {
                sys::try_lock_exclusive(fd.as_fd()).map(|found| found == sys::TryLock::HeldByOther)
            } else {
                sys::is_locked_by_other(fd.as_fd())
            };
            match held {
                Ok(false) => {}
                Ok(true) if !force => return Err(Error::LockHeld { path }),
                Ok(true) => {
                    log::warn!("breaking the lock {} held by a live writer", path.display());
                }
                Err(e) if force => {
                    log::warn!(
                        "cannot tell whether {} is held ({e}); breaking it",
                        path.display()
                    );
                }
                Err(e) => return Err(Error::io(Op::BreakLock, path, e)),
            }
        }
        match sys::unlinkat(dir, next, false) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(Error::io(Op::BreakLock, path, e)),
        }
        // What the crashed writer had written goes with its lock; the
        // temporary of a writer still alive (a forced break) stays its own.
        remove_stale_temporaries(dir, self);
        sys::fsync(dir).map_err(|e| Error::io(Op::SyncDirectory, self.location(), e))?;
        log::info!("broke lock {}", path.display());
        Ok(true)
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
            Err(e) => Err(Error::io(Op::RemoveSession, self.location(), e)),
        }
    }

    /// Creates the well-known directories inside the session (existing ones
    /// are kept), given to `owner` when one is named.
    pub fn populate_well_known_dirs(&self, owner: Option<(u32, u32)>) -> Result<()> {
        let dir = self.open_dir()?;
        for name in WELL_KNOWN_DIRS {
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
