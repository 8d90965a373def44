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

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::error::{Error, Op, Result};
use super::name::SessionName;
use super::repo_dir::RepoDir;
use super::seam::Step;
use super::sys;

/// The committed checkpoint's file name.
pub const SESSION_FILE: &str = "session";
/// The file a checkpoint is written to before it is renamed over `session`;
/// its existence is the lock.
pub const SESSION_NEXT_FILE: &str = "session.next";
/// The directories created inside every new session.
pub const WELL_KNOWN_DIRS: [&str; 1] = ["io-logs"];

const DEFAULT_MODE: u32 = 0o644;
/// How long a new writer waits for someone looking at its fresh lock to let
/// go of it (at most `FLOCK_TRIES` × `FLOCK_RETRY_DELAY`).
const FLOCK_TRIES: u32 = 1000;
const FLOCK_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

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
    /// `session.next` exists and a live writer holds its flock.
    Held,
    /// `session.next` exists and nobody holds it: an interrupted writer left
    /// it (or a writer that does not flock, such as plainbox, is at work).
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

    fn path_of(&self, file: &str) -> PathBuf {
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
        let mut lock = CheckpointWriter::take_lock(self, dir, DEFAULT_MODE)?;
        lock.seam_check(Step::SyncFile)?;
        sys::fsync(file.as_fd()).map_err(|e| Error::io(Op::SyncCheckpoint, &path, e))?;
        lock.seam_check(Step::Rename)?;
        lock.verify_own_lock()?;
        sys::renameat(
            lock.dir.as_fd(),
            name,
            lock.dir.as_fd(),
            OsStr::new(SESSION_FILE),
        )
        .map_err(|e| Error::io(Op::RenameCheckpoint, &path, e))?;
        // The new checkpoint is in place; the lock file goes before the
        // directory fsync so one fsync makes both durable.
        lock.finished = true;
        lock.release_lock()?;
        lock.sync_dir_after_rename()
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
        match sys::try_flock_exclusive(fd.as_fd()) {
            Ok(sys::TryLock::Acquired) => Ok(LockState::Stale),
            Ok(sys::TryLock::HeldByOther) => Ok(LockState::Held),
            Err(e) => Err(Error::io(Op::LockCheckpoint, path, e)),
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
        let fd = match sys::openat(
            dir,
            next,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        ) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            // Not a regular file we can flock (a planted symlink): just unlink it.
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => None,
            Err(e) => return Err(Error::io(Op::BreakLock, path, e)),
        };
        if let Some(fd) = &fd {
            // Holding the flock while unlinking means no writer of ours can
            // be between its inode check and its rename right now.
            match sys::try_flock_exclusive(fd.as_fd()) {
                Ok(sys::TryLock::Acquired) => {}
                Ok(sys::TryLock::HeldByOther) if !force => {
                    return Err(Error::LockHeld { path });
                }
                Ok(sys::TryLock::HeldByOther) => {
                    log::warn!("breaking the lock {} held by a live writer", path.display());
                }
                Err(e) => return Err(Error::io(Op::BreakLock, path, e)),
            }
        }
        match sys::unlinkat(dir, next, false) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(Error::io(Op::BreakLock, path, e)),
        }
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

    fn seam_check(&self, step: Step, path: &std::path::Path, op: Op) -> Result<()> {
        self.repo
            .seam()
            .before(step, path)
            .map_err(|e| Error::io(op, path, e))
    }
}

/// A checkpoint being written: the lock (`session.next`, flocked) and the
/// file the new checkpoint is written into.
///
/// Dropping a writer that was not committed aborts it: `session.next` is
/// removed (if it is still this writer's) and the previous checkpoint stays.
#[derive(Debug)]
pub struct CheckpointWriter {
    storage: Storage,
    dir: OwnedFd,
    file: File,
    dev: u64,
    ino: u64,
    /// Owner and mode of the new file as it was created.
    created: (u32, u32, u32),
    finished: bool,
}

static SNAPSHOT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Names of the temporaries a snapshot commit makes in the session
/// directory (see [`CheckpointWriter::commit_snapshot`]).
const SNAPSHOT_PREFIX: &str = ".session.snapshot-";

impl CheckpointWriter {
    /// Creates `session.next` with `O_EXCL` and flocks it.
    fn take_lock(storage: &Storage, dir: OwnedFd, mode: u32) -> Result<CheckpointWriter> {
        let path = storage.path_of(SESSION_NEXT_FILE);
        storage.seam_check(Step::CreateNext, &path, Op::CreateCheckpoint)?;
        let fd = sys::openat(
            dir.as_fd(),
            OsStr::new(SESSION_NEXT_FILE),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => Error::Locked { path: path.clone() },
            _ => Error::io(Op::CreateCheckpoint, &path, e),
        })?;
        let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io(Op::Stat, &path, e))?;
        let writer = CheckpointWriter {
            storage: storage.clone(),
            dir,
            file: File::from(fd),
            dev: st.st_dev,
            ino: st.st_ino,
            created: (st.st_uid, st.st_gid, st.st_mode & 0o7777),
            finished: false,
        };
        // Between our create and our flock, whoever holds a flock on *our*
        // inode is one who looks at the lock (`lock_state`, `break_lock`) and
        // lets go at once: wait for it rather than fail. On any error below,
        // dropping the writer removes `session.next` if it is still ours.
        let mut tries = 0;
        loop {
            match sys::try_flock_exclusive(writer.file.as_fd()) {
                Ok(sys::TryLock::Acquired) => break,
                Ok(sys::TryLock::HeldByOther) if tries < FLOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(FLOCK_RETRY_DELAY);
                }
                Ok(sys::TryLock::HeldByOther) => return Err(Error::Locked { path }),
                Err(e) => return Err(Error::io(Op::LockCheckpoint, path, e)),
            }
        }
        // A break-lock may have removed our file while it held the flock.
        writer.verify_own_lock()?;
        Ok(writer)
    }

    fn begin(storage: Storage, dir: OwnedFd, opts: BeginOptions) -> Result<CheckpointWriter> {
        let current = match sys::lstatat(dir.as_fd(), OsStr::new(SESSION_FILE)) {
            Ok(st) if sys::is_reg(&st) => Some(st),
            Ok(_) => None,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(Error::io(Op::Stat, storage.path_of(SESSION_FILE), e)),
        };
        let writer = Self::take_lock(&storage, dir, DEFAULT_MODE)?;
        writer.adopt_owner_and_mode(current.as_ref(), opts.owner)?;
        if opts.start == Start::FromCurrent
            && let Some(mut src) = storage.open_checkpoint_in(writer.dir.as_fd())?
        {
            let mut dst = &writer.file;
            io::copy(&mut src, &mut dst)
                .map_err(|e| Error::io(Op::WriteCheckpoint, writer.next_path(), e))?;
        }
        Ok(writer)
    }

    fn adopt_owner_and_mode(
        &self,
        current: Option<&libc::stat>,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        let path = self.next_path();
        let err = |e| Error::io(Op::SetOwnerAndMode, &path, e);
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let (uid, gid, mode) = self.created;
        match current {
            Some(st) => {
                if root
                    && (st.st_uid != 0 || st.st_gid != 0)
                    && (st.st_uid, st.st_gid) != (uid, gid)
                {
                    sys::fchown(self.file.as_fd(), st.st_uid, st.st_gid).map_err(err)?;
                }
                // The new file's mode is DEFAULT_MODE less the umask (and
                // has no set-id bit a chown could have cleared): change it
                // only when it differs.
                if st.st_mode & 0o7777 != mode {
                    sys::fchmod(self.file.as_fd(), st.st_mode & 0o7777).map_err(err)?;
                }
            }
            None => {
                if let (true, Some(owner)) = (root, owner)
                    && (owner.0 != 0 || owner.1 != 0)
                    && owner != (uid, gid)
                {
                    sys::fchown(self.file.as_fd(), owner.0, owner.1).map_err(err)?;
                }
            }
        }
        Ok(())
    }

    fn next_path(&self) -> PathBuf {
        self.storage.path_of(SESSION_NEXT_FILE)
    }

    fn seam_check(&self, step: Step) -> Result<()> {
        let op = match step {
            Step::CreateNext => Op::CreateCheckpoint,
            Step::Write => Op::WriteCheckpoint,
            Step::SyncFile => Op::SyncCheckpoint,
            Step::Rename => Op::RenameCheckpoint,
            Step::SyncDir | Step::SyncRepository => Op::SyncDirectory,
            // Not a step of a commit; named for completeness only.
            Step::MakeWellKnownDirs => Op::CreateSession,
        };
        let path = match step {
            Step::SyncDir => self.storage.location(),
            Step::CreateNext
            | Step::Write
            | Step::SyncFile
            | Step::Rename
            | Step::MakeWellKnownDirs
            | Step::SyncRepository => self.next_path(),
        };
        self.storage.seam_check(step, &path, op)
    }

    /// The storage this checkpoint is for.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The open `session.next` (for reads and writes that bypass this type,
    /// such as a FUSE passthrough backing file).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The open session directory.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Writes all of `data` at `offset`.
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> Result<()> {
        self.seam_check(Step::Write)?;
        sys::pwrite_all(self.file.as_fd(), data, offset)
            .map_err(|e| Error::io(Op::WriteCheckpoint, self.next_path(), e))
    }

    /// Reads what has been written so far at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        sys::pread_full(self.file.as_fd(), buf, offset)
            .map_err(|e| Error::io(Op::ReadCheckpoint, self.next_path(), e))
    }

    /// Sets the length of the checkpoint being written.
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        sys::ftruncate(self.file.as_fd(), len)
            .map_err(|e| Error::io(Op::TruncateCheckpoint, self.next_path(), e))
    }

    /// The current length of the checkpoint being written.
    pub fn len(&self) -> Result<u64> {
        sys::fstat(self.file.as_fd())
            .map(|st| st.st_size as u64)
            .map_err(|e| Error::io(Op::Stat, self.next_path(), e))
    }

    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Fails unless `session.next` is still the file this writer created.
    fn verify_own_lock(&self) -> Result<()> {
        match sys::lstatat(self.dir.as_fd(), OsStr::new(SESSION_NEXT_FILE)) {
            Ok(st) if st.st_dev == self.dev && st.st_ino == self.ino => Ok(()),
            Ok(_) => Err(Error::LockLost {
                path: self.next_path(),
            }),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(Error::LockLost {
                path: self.next_path(),
            }),
            Err(e) => Err(Error::io(Op::Stat, self.next_path(), e)),
        }
    }

    /// Commits: fsync the file, check the lock is still ours, rename it over
    /// `session`, fsync the directory. On a failure before the rename the
    /// lock is removed and the previous checkpoint stays.
    pub fn commit(self) -> Result<()> {
        self.commit_if(|| true).map(|_| ())
    }

    /// [`commit`](Self::commit), asking `keep` once the file is durable and
    /// before the rename: when it says no, the checkpoint is aborted (the
    /// lock is removed, the previous checkpoint stays) and `Ok(false)` is
    /// returned. A slow question can thus be answered while the data is
    /// being synced.
    pub fn commit_if(mut self, keep: impl FnOnce() -> bool) -> Result<bool> {
        self.seam_check(Step::SyncFile)?;
        sys::fsync(self.file.as_fd())
            .map_err(|e| Error::io(Op::SyncCheckpoint, self.next_path(), e))?;
        if !keep() {
            self.abort()?;
            return Ok(false);
        }
        self.seam_check(Step::Rename)?;
        self.verify_own_lock()?;
        sys::renameat(
            self.dir.as_fd(),
            OsStr::new(SESSION_NEXT_FILE),
            self.dir.as_fd(),
            OsStr::new(SESSION_FILE),
        )
        .map_err(|e| Error::io(Op::RenameCheckpoint, self.next_path(), e))?;
        self.finished = true;
        self.sync_dir_after_rename().map(|()| true)
    }

    fn sync_dir_after_rename(&self) -> Result<()> {
        let location = self.storage.location();
        self.seam_check(Step::SyncDir)
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

    /// Commits a copy of what has been written so far, keeping this writer
    /// (and its lock) open for more writes: `fsync()` on a file that is still
    /// being written. The copy is fsynced and renamed over `session`.
    pub fn commit_snapshot(&self) -> Result<()> {
        self.seam_check(Step::SyncFile)?;
        // Holding the lock (checked: it may have been broken), no other
        // writer can be making a snapshot of this session: any named
        // temporary is one a crash left behind.
        self.verify_own_lock()?;
        self.remove_stale_snapshots();
        let tmp_name: OsString = format!(
            "{SNAPSHOT_PREFIX}{}-{}",
            std::process::id(),
            SNAPSHOT_COUNTER.fetch_add(1, Ordering::Relaxed)
        )
        .into();
        let tmp_path = self.storage.location().join(&tmp_name);
        let mode = sys::fstat(self.file.as_fd())
            .map(|st| st.st_mode & 0o7777)
            .map_err(|e| Error::io(Op::Stat, self.next_path(), e))?;
        // The copy is an unnamed file (O_TMPFILE) where the filesystem
        // allows it, so a crash while it is copied and synced leaves nothing
        // behind; it is named just before the rename.
        let (tmp, unnamed) = match sys::openat(
            self.dir.as_fd(),
            OsStr::new("."),
            libc::O_TMPFILE | libc::O_RDWR,
            mode,
        ) {
            Ok(fd) => (fd, true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                let fd = sys::openat(
                    self.dir.as_fd(),
                    &tmp_name,
                    libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    mode,
                )
                .map_err(|e| Error::io(Op::CreateCheckpoint, &tmp_path, e))?;
                (fd, false)
            }
            Err(e) => return Err(Error::io(Op::CreateCheckpoint, &tmp_path, e)),
        };
        let tmp = File::from(tmp);
        let mut named = !unnamed;
        let result = (|| {
            let st = sys::fstat(self.file.as_fd())
                .map_err(|e| Error::io(Op::Stat, self.next_path(), e))?;
            if let Ok(cur) = sys::fstat(tmp.as_fd())
                && (cur.st_uid != st.st_uid || cur.st_gid != st.st_gid)
            {
                sys::fchown(tmp.as_fd(), st.st_uid, st.st_gid)
                    .map_err(|e| Error::io(Op::SetOwnerAndMode, &tmp_path, e))?;
            }
            // Always: the umask applied when the copy was created.
            sys::fchmod(tmp.as_fd(), mode)
                .map_err(|e| Error::io(Op::SetOwnerAndMode, &tmp_path, e))?;
            let mut src = &self.file;
            let mut dst = &tmp;
            // io::copy on a &File starts at the cursor: read from offset 0.
            std::io::Seek::seek(&mut src, io::SeekFrom::Start(0))
                .map_err(|e| Error::io(Op::ReadCheckpoint, self.next_path(), e))?;
            io::copy(&mut src, &mut dst)
                .map_err(|e| Error::io(Op::WriteCheckpoint, &tmp_path, e))?;
            sys::fsync(tmp.as_fd()).map_err(|e| Error::io(Op::SyncCheckpoint, &tmp_path, e))?;
            self.seam_check(Step::Rename)?;
            self.verify_own_lock()?;
            if !named {
                sys::link_unnamed(tmp.as_fd(), self.dir.as_fd(), &tmp_name)
                    .map_err(|e| Error::io(Op::CreateCheckpoint, &tmp_path, e))?;
                named = true;
            }
            sys::renameat(
                self.dir.as_fd(),
                &tmp_name,
                self.dir.as_fd(),
                OsStr::new(SESSION_FILE),
            )
            .map_err(|e| Error::io(Op::RenameCheckpoint, &tmp_path, e))
        })();
        if result.is_err() {
            if named {
                let _ = sys::unlinkat(self.dir.as_fd(), &tmp_name, false);
            }
            return result;
        }
        self.sync_dir_after_rename()
    }

    /// Removes snapshot temporaries left in the session directory by a
    /// writer that crashed in the middle of a snapshot. Best effort: they
    /// are only disk space, hidden from plainbox and from listings of
    /// checkpoints.
    fn remove_stale_snapshots(&self) {
        let Ok(names) = sys::read_dir_names(self.dir.as_fd()) else {
            return;
        };
        for name in names {
            if name.as_bytes().starts_with(SNAPSHOT_PREFIX.as_bytes())
                && let Err(e) = sys::unlinkat(self.dir.as_fd(), &name, false)
                && e.raw_os_error() != Some(libc::ENOENT)
            {
                log::warn!(
                    "cannot remove a stale snapshot {}: {e}",
                    self.storage.location().join(&name).display()
                );
            }
        }
    }

    /// Gives up the checkpoint: removes `session.next` if it is still ours.
    pub fn abort(mut self) -> Result<()> {
        self.finished = true;
        self.release_lock()
    }

    fn release_lock(&self) -> Result<()> {
        match self.verify_own_lock() {
            Ok(()) => sys::unlinkat(self.dir.as_fd(), OsStr::new(SESSION_NEXT_FILE), false)
                .map_err(|e| Error::io(Op::BreakLock, self.next_path(), e)),
            // Already broken: nothing of ours to remove.
            Err(Error::LockLost { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            if let Err(e) = self.release_lock() {
                log::warn!("cannot remove abandoned checkpoint: {e}");
            }
        }
    }
}
