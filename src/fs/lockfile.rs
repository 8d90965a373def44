//! Plainbox's own protocol through the mount: `session.next` created with
//! `O_CREAT|O_EXCL` is the session's lock, exactly as on disk; the caller
//! writes it, fsyncs it, closes it and renames it over `session`.
//!
//! - CREATE of `session.next` creates the real file on disk with `O_EXCL`
//!   (so it fails with EEXIST while anyone holds the lock: a checkpoint
//!   writer of the mount, the CLI, plainbox, any process), as the caller.
//!   While the caller's descriptor is open the daemon holds an open file
//!   description lock on it, as sessionfs writers do, so `sessionfs list`
//!   and break-lock see a live writer; the creating process's `close()`
//!   (FLUSH, which the kernel sends before `close()` returns, also when a
//!   killed process exits) lets go of it, so from then on it looks exactly
//!   as plainbox's lock looks on disk: stale. A child closing the copy it
//!   inherited (every exec does) does not; a write through the handle
//!   after the creator's close (another descriptor of the same open file)
//!   takes it again.
//! - RENAME of `session.next` over `session` commits: a rename on disk,
//!   after checking that `session.next` is a regular file, that no live
//!   writer other than the caller's own open holds it (renaming a sessionfs
//!   writer's lock would commit nothing of theirs but an empty or foreign
//!   file), and that it is the file this mount created last, when the mount
//!   created one. The directory is made durable by the caller's fsyncdir,
//!   as on disk.
//! - UNLINK of `session.next` stays break-lock (`dir`): EBUSY while a live
//!   writer holds it, the caller's own open descriptor included.
//!
//! Invariants: the daemon's lock on a `session.next` is held only between
//! the caller's create (or a later write) and its next close; the handle
//! never removes `session.next` itself, so a caller killed mid-save leaves a
//! stale lock, exactly as on disk.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Mutex;

use super::attr::Attr;
use super::creds::AsCaller;
use super::handles::Handle;
use super::inode::{CreatedLock, NodeKey};
use super::{Caller, FsError, FsResult, Opened, SessionFs, lock};
use crate::core::{SESSION_FILE, SESSION_NEXT_FILE, sys};

/// How long a create waits for a break-lock that looks at the fresh file
/// to let go (as the core's writers do).
const LOCK_TRIES: u32 = 200;
const LOCK_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// `session.next` created through the mount and open.
#[derive(Debug)]
pub(super) struct LockFile {
    pub(super) session: OsString,
    pub(super) file: File,
    pub(super) path: PathBuf,
    /// The daemon holds the open file description lock now. A mutex, not
    /// an atomic: the flag and the lock itself change together, so a
    /// write racing the creator's close cannot leave the flag set with the
    /// lock let go (a leaf lock, held only across one `fcntl`).
    locked: Mutex<bool>,
    /// The process (thread group) that created it, when known.
    creator: Option<u32>,
}

/// The process (thread group) of thread `tid`, from `/proc`.
fn process_of(tid: u32) -> Option<u32> {
    if tid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|t| t.trim().parse().ok())
}

impl LockFile {
    /// (device, inode) of the file.
    pub(super) fn identity(&self) -> Option<(u64, u64)> {
        sys::fstat(self.file.as_fd())
            .ok()
            .map(|st| (st.st_dev, st.st_ino))
    }

    /// A descriptor of it was closed by thread `pid`. When the creator
    /// closed it (or died), the lock now looks as plainbox's looks on disk
    /// (stale). Another process closing an inherited copy (a child's exec
    /// closes every descriptor it inherited) leaves it held.
    pub(super) fn flushed(&self, pid: u32) {
        let closer = process_of(pid);
        if closer.is_some() && self.creator.is_some() && closer != self.creator {
            return;
        }
        let mut locked = lock(&self.locked);
        if std::mem::replace(&mut *locked, false)
            && let Err(e) = sys::unlock(self.file.as_fd())
        {
            log::warn!("cannot let go of the lock {}: {e}", self.path.display());
        }
    }

    /// Written again through the same open file: a live writer once more.
    pub(super) fn written(&self) {
        let mut locked = lock(&self.locked);
        if !*locked
            && matches!(
                sys::try_lock_exclusive(self.file.as_fd()),
                Ok(sys::TryLock::Acquired)
            )
        {
            *locked = true;
        }
    }
}

impl SessionFs {
    /// CREATE of `session.next` in the session directory `s`: takes the
    /// session's lock as plainbox does on disk.
    pub(super) fn create_lock(
        &self,
        key: &NodeKey,
        s: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<(Attr, Opened)> {
        let path = self.path_of(key);
        let dir = self.session_dir(s)?;
        let fd = {
            let _as = AsCaller::enter(caller).map_err(|e| FsError::io("create", &path, e))?;
            sys::openat(
                dir.as_fd(),
                OsStr::new(SESSION_NEXT_FILE),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                mode & 0o7777,
            )
        };
        let fd = fd.map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => FsError::refused(
                "create",
                &path,
                "the session is locked: a checkpoint is in progress (or a stale lock)",
                libc::EEXIST,
            ),
            _ => FsError::io("create", &path, e),
        })?;
        let file = File::from(fd);
        // A break-lock looking at the fresh file holds it for a moment.
        let mut locked = false;
        for _ in 0..LOCK_TRIES {
            match sys::try_lock_exclusive(file.as_fd()) {
                Ok(sys::TryLock::Acquired) => {
                    locked = true;
                    break;
                }
                Ok(sys::TryLock::HeldByOther) => std::thread::sleep(LOCK_RETRY_DELAY),
                Err(e) => {
                    log::warn!("cannot lock {}: {e}", path.display());
                    break;
                }
            }
        }
        let st = sys::fstat(file.as_fd()).map_err(|e| FsError::io("stat", &path, e))?;
        let identity = (st.st_dev, st.st_ino);
        // Pinned by a descriptor of its own (not sharing the lock).
        let pin = sys::openat(
            dir.as_fd(),
            OsStr::new(SESSION_NEXT_FILE),
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )
        .ok()
        .filter(|pin| sys::fstat(pin.as_fd()).is_ok_and(|p| (p.st_dev, p.st_ino) == identity));
        let ino = {
            let mut nodes = self.nodes();
            match pin {
                Some(pin) => {
                    nodes
                        .created_locks
                        .insert(s.to_os_string(), CreatedLock { identity, pin });
                }
                // Already broken and replaced: nothing of ours to commit.
                None => {
                    nodes.created_locks.remove(s);
                }
            }
            nodes.table.intern(key.clone(), true)
        };
        let fh = self.insert_handle(Handle::Lock(LockFile {
            session: s.to_os_string(),
            file,
            path,
            locked: Mutex::new(locked),
            creator: process_of(caller.pid),
        }));
        self.nodes().open_files.opened(ino, fh);
        Ok((Attr::from_stat(ino, &st), Opened::served(fh)))
    }

    /// Whether an open handle of this mount holds the lock file `identity`
    /// of session `s`.
    fn lock_open_here(&self, s: &OsStr, identity: (u64, u64)) -> bool {
        self.lock_handles()
            .iter()
            .any(|h| matches!(h.as_ref(), Handle::Lock(l) if l.session == s && l.identity() == Some(identity)))
    }

    /// RENAME of `session.next` over `session` (plainbox's commit).
    pub(super) fn commit_lock(&self, s: &OsStr, caller: Caller) -> FsResult<()> {
        let from = NodeKey::Lock(s.to_os_string());
        let path = self.path_of(&from);
        let refused =
            |reason: &'static str, errno: i32| FsError::refused("rename", &path, reason, errno);
        let dir = self.session_dir(s)?;
        let next = OsStr::new(SESSION_NEXT_FILE);
        let st = sys::lstatat(dir.as_fd(), next).map_err(|e| FsError::io("stat", &path, e))?;
        if !sys::is_reg(&st) {
            return Err(refused(
                "session.next is not a regular file: it cannot become the checkpoint",
                libc::EPERM,
            ));
        }
        let identity = (st.st_dev, st.st_ino);
        let created = self.nodes().created_locks.get(s).map(|c| c.identity);
        if created.is_some_and(|c| c != identity) {
            return Err(refused(
                "session.next is no longer the lock created through the mount \
                 (it was broken and taken by another writer)",
                libc::EBUSY,
            ));
        }
        if !self.lock_open_here(s, identity) {
            let fd = sys::openat(
                dir.as_fd(),
                next,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                0,
            )
            .map_err(|e| FsError::io("open", &path, e))?;
            let held =
                sys::is_locked_by_other(fd.as_fd()).map_err(|e| FsError::io("lock", &path, e))?;
            if held {
                return Err(refused(
                    "a live writer holds session.next: its checkpoint is not finished",
                    libc::EBUSY,
                ));
            }
        }
        {
            let _as = AsCaller::enter(caller).map_err(|e| FsError::io("rename", &path, e))?;
            sys::renameat(dir.as_fd(), next, dir.as_fd(), OsStr::new(SESSION_FILE))
        }
        .map_err(|e| FsError::io("rename", &path, e))?;
        let mut nodes = self.nodes();
        if nodes.created_locks.get(s).map(|c| c.identity) == Some(identity) {
            nodes.created_locks.remove(s);
        }
        nodes.table.detach(&NodeKey::Checkpoint(s.to_os_string()));
        nodes.table.detach(&from);
        Ok(())
    }

    /// `session.next` of `s` is gone (broken through the mount).
    pub(super) fn lock_removed(&self, s: &OsStr) {
        self.nodes().created_locks.remove(s);
    }
}
