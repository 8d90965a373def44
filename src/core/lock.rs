//! The session's lock, `session.next`: taking it, asking about it,
//! breaking it, and clearing what crashed writers left beside it.
//!
//! `session.next` created with `O_CREAT|O_EXCL` is the lock plainbox and
//! Checkbox take and honour. sessionfs also holds an exclusive open file
//! description lock on it while it writes: the kernel, and an NFS server,
//! enforce that lock between processes and machines, so a live lock can be
//! told from a stale one (plainbox takes none: its locks look stale).
//!
//! Invariants:
//! - a lock is released (its file removed) only while `session.next` is
//!   still the inode it created;
//! - probes ask (`F_OFD_GETLK`) rather than take, so they work on read-only
//!   descriptors, over NFS, and never get in a writer's way; a probe that
//!   cannot be answered reports the lock as held rather than failing;
//! - a checkpoint temporary is removed only when nobody holds a lock on it:
//!   a writer whose lock was broken keeps its own.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::error::{Error, Op, Result};
use super::seam::Step;
use super::storage::{DEFAULT_MODE, LockState, SESSION_FILE, SESSION_NEXT_FILE, Storage};
use super::sys;

/// How long a new writer waits for someone looking at its fresh lock to let
/// go of it (at most `LOCK_TRIES` × `LOCK_RETRY_DELAY`).
const LOCK_TRIES: u32 = 1000;
const LOCK_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// The names of checkpoint temporaries in a session directory.
pub(crate) const TEMPORARY_PREFIX: &str = ".session.tmp-";
/// Names an older sessionfs gave the temporaries of snapshot commits.
const OLD_SNAPSHOT_PREFIX: &str = ".session.snapshot-";

/// True for the names of the temporaries checkpoint writers make (live or
/// left by a crash): never a session's content, never listed.
pub fn is_checkpoint_temporary(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(TEMPORARY_PREFIX.as_bytes())
        || name.starts_with(OLD_SNAPSHOT_PREFIX.as_bytes())
}

/// The session's lock: `session.next`, created with `O_EXCL` and held with
/// an open file description lock. Dropping it removes `session.next` if it
/// is still this lock's file.
#[derive(Debug)]
pub(crate) struct CheckpointLock {
    pub(crate) storage: Storage,
    dir: OwnedFd,
    file: File,
    dev: u64,
    ino: u64,
    /// Owner, group and mode `session.next` was created with: those of any
    /// file this process creates in the session directory with
    /// `DEFAULT_MODE` (the same umask and setgid-directory rules apply).
    pub(crate) created: (u32, u32, u32),
    held: bool,
}

impl CheckpointLock {
    /// Creates `session.next` with `O_EXCL` and locks it.
    pub(crate) fn take(storage: &Storage, dir: OwnedFd) -> Result<CheckpointLock> {
        let path = storage.path_of(SESSION_NEXT_FILE);
        storage.seam_check(Step::CreateNext, &path, Op::CreateCheckpoint)?;
        let fd = sys::openat(
            dir.as_fd(),
            OsStr::new(SESSION_NEXT_FILE),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            DEFAULT_MODE,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => Error::Locked { path: path.clone() },
            _ => Error::io(Op::CreateCheckpoint, &path, e),
        })?;
        let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io(Op::Stat, &path, e))?;
        let lock = CheckpointLock {
            storage: storage.clone(),
            dir,
            file: File::from(fd),
            dev: st.st_dev,
            ino: st.st_ino,
            created: (st.st_uid, st.st_gid, st.st_mode & 0o7777),
            held: true,
        };
        // Between our create and our lock, whoever holds a lock on *our*
        // inode is a break-lock looking at it, which lets go at once: wait
        // for it rather than fail. On any error below, dropping the lock
        // removes `session.next` if it is still ours.
        let mut tries = 0;
        loop {
            match sys::try_lock_exclusive(lock.file.as_fd()) {
                Ok(sys::TryLock::Acquired) => break,
                Ok(sys::TryLock::HeldByOther) if tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY_DELAY);
                }
                Ok(sys::TryLock::HeldByOther) => return Err(Error::Locked { path }),
                Err(e) => return Err(Error::io(Op::LockCheckpoint, path, e)),
            }
        }
        // A break-lock may have removed our file while it held the lock.
        lock.verify()?;
        Ok(lock)
    }

    fn path(&self) -> PathBuf {
        self.storage.path_of(SESSION_NEXT_FILE)
    }

    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Fails unless `session.next` is still the file this lock created.
    pub(crate) fn verify(&self) -> Result<()> {
        match sys::lstatat(self.dir.as_fd(), OsStr::new(SESSION_NEXT_FILE)) {
            Ok(st) if st.st_dev == self.dev && st.st_ino == self.ino => Ok(()),
            Ok(_) => Err(Error::LockLost { path: self.path() }),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                Err(Error::LockLost { path: self.path() })
            }
            Err(e) => Err(Error::io(Op::Stat, self.path(), e)),
        }
    }

    /// Removes `session.next` if it is still ours.
    pub(crate) fn release(&mut self) -> Result<()> {
        self.held = false;
        match self.verify() {
            Ok(()) => sys::unlinkat(self.dir.as_fd(), OsStr::new(SESSION_NEXT_FILE), false)
                .map_err(|e| Error::io(Op::BreakLock, self.path(), e)),
            // Already broken: nothing of ours to remove.
            Err(Error::LockLost { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// fsyncs the session directory after a rename into it; a failure is
    /// [`Error::NotDurable`]: the new checkpoint is in place but may not
    /// survive a power loss.
    pub(crate) fn sync_dir_after_rename(&self) -> Result<()> {
        let location = self.storage.location();
        self.storage
            .seam_check(Step::SyncDir, &location, Op::SyncDirectory)
            .and_then(|()| {
                sys::fsync(self.dir.as_fd()).map_err(|e| Error::io(Op::SyncDirectory, &location, e))
            })
            .map_err(|e| match e {
                Error::Io { source, .. } => Error::NotDurable {
                    path: location.clone(),
                    source,
                },
                other => other,
            })
    }

    /// Renames the file `name` of the session directory over `session`
    /// after checking that the lock is still ours, removes the lock and
    /// fsyncs the directory.
    pub(crate) fn commit_name(mut self, name: &OsStr) -> Result<()> {
        let path = self.storage.location().join(name);
        self.storage
            .seam_check(Step::Rename, &path, Op::RenameCheckpoint)?;
        self.verify()?;
        sys::renameat(self.dir(), name, self.dir(), OsStr::new(SESSION_FILE))
            .map_err(|e| Error::io(Op::RenameCheckpoint, &path, e))?;
        // The new checkpoint is in place; the lock goes before the
        // directory fsync so one fsync makes both durable.
        self.release()?;
        self.sync_dir_after_rename()
    }

    pub(crate) fn remove_stale_temporaries(&self) {
        remove_stale_temporaries(self.dir(), &self.storage);
    }
}

impl Drop for CheckpointLock {
    fn drop(&mut self) {
        if self.held
            && let Err(e) = self.release()
        {
            log::warn!("cannot remove an abandoned lock: {e}");
        }
    }
}

/// Removes the temporaries that crashed writers of this session left:
/// those nobody holds a lock on. A temporary whose writer is alive (its
/// lock was broken under it) is left to that writer. Best effort: they are
/// only disk space, and hidden from every listing.
pub(crate) fn remove_stale_temporaries(dir: BorrowedFd<'_>, storage: &Storage) {
    let Ok(names) = sys::read_dir_names(dir) else {
        return;
    };
    for name in names.iter().filter(|n| is_checkpoint_temporary(n)) {
        let path = storage.location().join(name);
        let fd = match sys::openat(
            dir,
            name,
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                log::warn!(
                    "cannot look at a checkpoint temporary {}: {e}",
                    path.display()
                );
                continue;
            }
        };
        match sys::try_lock_exclusive(fd.as_fd()) {
            Ok(sys::TryLock::Acquired) => {}
            Ok(sys::TryLock::HeldByOther) => continue,
            Err(e) => {
                log::warn!("cannot lock a checkpoint temporary {}: {e}", path.display());
                continue;
            }
        }
        match sys::unlinkat(dir, name, false) {
            Ok(()) => log::info!(
                "removed a checkpoint temporary a crash left: {}",
                path.display()
            ),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => log::warn!(
                "cannot remove a checkpoint temporary {}: {e}",
                path.display()
            ),
        }
    }
}

impl Storage {
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
}
