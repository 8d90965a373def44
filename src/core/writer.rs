//! A checkpoint being written, and the lock that guards it.
//!
//! The commit, step by step (each named step consults the fault seam first):
//!
//! 1. `CreateNext` — take the lock: create `session.next` with
//!    `O_CREAT|O_EXCL` (the lock plainbox and Checkbox see and honour) and
//!    hold an exclusive open file description lock on it, which the kernel
//!    and an NFS server enforce against other processes and other machines,
//!    so a live lock can be told from a stale one.
//! 2. Remove the temporaries a crashed writer of this session left (only
//!    those nobody holds a lock on), then create this writer's own
//!    temporary, `.session.tmp-HOST-PID-N-NANOS`, with `O_EXCL`, and lock it
//!    too.
//! 3. `Write` — every byte goes to the temporary.
//! 4. `SyncFile` — fsync the temporary.
//! 5. `Rename` — check that `session.next` is still this writer's inode,
//!    then rename the temporary over `session`. No other writer can create
//!    a file of that name, so a lock broken and re-taken under this writer
//!    can at worst make the last whole checkpoint win: `session` is never
//!    torn, empty by accident or another writer's partial file.
//! 6. Remove `session.next` (if still this writer's), then `SyncDir` —
//!    fsync the session directory, which makes the rename and the removal
//!    durable together.
//!
//! Invariants:
//! - `session` is only ever replaced by a rename of a complete, fsynced file;
//! - a writer reports success only if its whole checkpoint was renamed into
//!   place while `session.next` was its own;
//! - a writer that is dropped without committing removes its temporary and
//!   its `session.next` (the latter only if it is still its own);
//! - a writer killed between steps 5 and 6 leaves a stale `session.next`,
//!   exactly like a plainbox killed mid-save: the checkpoint is whole.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{Error, Op, Result};
use super::lock::{CheckpointLock, TEMPORARY_PREFIX};
use super::seam::Step;
use super::storage::{BeginOptions, DEFAULT_MODE, SESSION_FILE, Start, Storage};
use super::sys;

static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other writer, on this machine or another, will ever pick.
fn unique_temporary_name() -> OsString {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut name = OsString::from(TEMPORARY_PREFIX);
    name.push(sys::host_name());
    name.push(format!(
        "-{}-{}-{nanos}",
        std::process::id(),
        TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    name
}

/// A uniquely named, locked temporary in the session directory. Its owner
/// removes it ([`Temporary::remove`]) unless it was renamed into place: it
/// holds no directory descriptor, so dropping it removes nothing.
#[derive(Debug)]
struct Temporary {
    file: File,
    name: OsString,
    path: PathBuf,
    placed: bool,
}

impl Temporary {
    fn create(lock: &CheckpointLock, mode: u32) -> Result<Temporary> {
        let name = unique_temporary_name();
        let path = lock.storage.location().join(&name);
        let fd = sys::openat(
            lock.dir(),
            &name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode,
        )
        .map_err(|e| Error::io(Op::CreateCheckpoint, &path, e))?;
        let temp = Temporary {
            file: File::from(fd),
            name,
            path,
            placed: false,
        };
        // Locked so that another writer's clean-up can tell it is alive.
        let failed = match sys::try_lock_exclusive(temp.file.as_fd()) {
            Ok(sys::TryLock::Acquired) => return Ok(temp),
            // Nobody else can know this name yet.
            Ok(sys::TryLock::HeldByOther) => io::Error::from_raw_os_error(libc::EAGAIN),
            Err(e) => e,
        };
        // Not left behind for a later writer's clean-up to find.
        let mut temp = temp;
        temp.remove(lock.dir());
        Err(Error::io(Op::LockCheckpoint, &temp.path, failed))
    }

    fn remove(&mut self, dir: BorrowedFd<'_>) {
        if self.placed {
            return;
        }
        self.placed = true;
        match sys::unlinkat(dir, &self.name, false) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => log::warn!(
                "cannot remove the checkpoint temporary {}: {e}",
                self.path.display()
            ),
        }
    }
}

/// A checkpoint being written: the lock (`session.next`) and the temporary
/// the new checkpoint is written into.
///
/// Dropping a writer that was not committed aborts it: its temporary and
/// `session.next` (if it is still its own) are removed and the previous
/// checkpoint stays.
#[derive(Debug)]
pub struct CheckpointWriter {
    lock: CheckpointLock,
    data: Temporary,
}

impl CheckpointWriter {
    pub(crate) fn begin(
        storage: Storage,
        dir: OwnedFd,
        opts: BeginOptions,
    ) -> Result<CheckpointWriter> {
        let current = match sys::lstatat(dir.as_fd(), OsStr::new(SESSION_FILE)) {
            Ok(st) if sys::is_reg(&st) => Some(st),
            Ok(_) => None,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(Error::io(Op::Stat, storage.path_of(SESSION_FILE), e)),
        };
        let lock = CheckpointLock::take(&storage, dir)?;
        // Holding the lock, no other live writer of ours is cleaning up:
        // any unlocked temporary is one a crash left behind.
        lock.remove_stale_temporaries();
        let data = Temporary::create(&lock, DEFAULT_MODE)?;
        let mut writer = CheckpointWriter { lock, data };
        writer.adopt_owner_and_mode(current.as_ref(), opts.owner)?;
        if opts.start == Start::FromCurrent
            && let Some(mut src) = storage.open_checkpoint_in(writer.lock.dir())?
        {
            let mut dst = &writer.data.file;
            io::copy(&mut src, &mut dst)
                .map_err(|e| Error::io(Op::WriteCheckpoint, &writer.data.path, e))?;
        }
        Ok(writer)
    }

    /// The new checkpoint keeps the previous one's owner and mode; with no
    /// previous one, a root writer gives it to `owner`.
    fn adopt_owner_and_mode(
        &mut self,
        current: Option<&libc::stat>,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        let path = &self.data.path;
        let err = |e| Error::io(Op::SetOwnerAndMode, path, e);
        // The temporary was made like the lock, so it has the lock's owner
        // and mode: no second fstat on every commit.
        let (uid, gid, mode) = self.lock.created;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let fd = self.data.file.as_fd();
        match current {
            Some(st) => {
                if root
                    && (st.st_uid != 0 || st.st_gid != 0)
                    && (st.st_uid, st.st_gid) != (uid, gid)
                {
                    sys::fchown(fd, st.st_uid, st.st_gid).map_err(err)?;
                }
                // The new file's mode is DEFAULT_MODE less the umask (and
                // has no set-id bit a chown could have cleared): change it
                // only when it differs.
                if st.st_mode & 0o7777 != mode {
                    sys::fchmod(fd, st.st_mode & 0o7777).map_err(err)?;
                }
            }
            None => {
                if let (true, Some(owner)) = (root, owner)
                    && (owner.0 != 0 || owner.1 != 0)
                    && owner != (uid, gid)
                {
                    sys::fchown(fd, owner.0, owner.1).map_err(err)?;
                }
            }
        }
        Ok(())
    }

    fn seam_check(&self, step: Step, op: Op) -> Result<()> {
        self.lock.storage.seam_check(step, &self.data.path, op)
    }

    /// The storage this checkpoint is for.
    pub fn storage(&self) -> &Storage {
        &self.lock.storage
    }

    /// The open file the checkpoint is written into (for reads and writes
    /// that bypass this type, such as a FUSE passthrough backing file).
    pub fn file(&self) -> &File {
        &self.data.file
    }

    /// The open session directory.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.lock.dir()
    }

    /// Writes all of `data` at `offset`.
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> Result<()> {
        self.seam_check(Step::Write, Op::WriteCheckpoint)?;
        sys::pwrite_all(self.data.file.as_fd(), data, offset)
            .map_err(|e| Error::io(Op::WriteCheckpoint, &self.data.path, e))
    }

    /// Reads what has been written so far at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        sys::pread_full(self.data.file.as_fd(), buf, offset)
            .map_err(|e| Error::io(Op::ReadCheckpoint, &self.data.path, e))
    }

    /// Sets the length of the checkpoint being written.
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        sys::ftruncate(self.data.file.as_fd(), len)
            .map_err(|e| Error::io(Op::TruncateCheckpoint, &self.data.path, e))
    }

    /// The current length of the checkpoint being written.
    pub fn len(&self) -> Result<u64> {
        sys::fstat(self.data.file.as_fd())
            .map(|st| st.st_size as u64)
            .map_err(|e| Error::io(Op::Stat, &self.data.path, e))
    }

    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Commits: fsync the temporary, check the lock is still ours, rename
    /// the temporary over `session`, remove the lock, fsync the directory.
    /// On a failure before the rename the previous checkpoint stays and
    /// nothing of the attempt is left.
    pub fn commit(self) -> Result<()> {
        self.commit_if(|| true).map(|_| ())
    }

    /// [`commit`](Self::commit), asking `keep` once the data is durable and
    /// before the rename: when it says no, the checkpoint is aborted and
    /// `Ok(false)` is returned. A slow question can thus be answered while
    /// the data is being synced.
    pub fn commit_if(mut self, keep: impl FnOnce() -> bool) -> Result<bool> {
        self.seam_check(Step::SyncFile, Op::SyncCheckpoint)?;
        sys::fsync(self.data.file.as_fd())
            .map_err(|e| Error::io(Op::SyncCheckpoint, &self.data.path, e))?;
        if !keep() {
            self.abort()?;
            return Ok(false);
        }
        self.seam_check(Step::Rename, Op::RenameCheckpoint)?;
        self.lock.verify()?;
        sys::renameat(
            self.lock.dir(),
            &self.data.name,
            self.lock.dir(),
            OsStr::new(SESSION_FILE),
        )
        .map_err(|e| Error::io(Op::RenameCheckpoint, &self.data.path, e))?;
        self.data.placed = true;
        self.lock.release()?;
        self.lock.sync_dir_after_rename().map(|()| true)
    }

    /// Commits a copy of what has been written so far, keeping this writer
    /// (and its lock) open for more writes: `fsync()` on a file that is still
    /// being written. The copy is fsynced and renamed over `session`.
    pub fn commit_snapshot(&self) -> Result<()> {
        self.seam_check(Step::SyncFile, Op::SyncCheckpoint)?;
        self.lock.verify()?;
        let st = sys::fstat(self.data.file.as_fd())
            .map_err(|e| Error::io(Op::Stat, &self.data.path, e))?;
        let mut copy = Temporary::create(&self.lock, st.st_mode & 0o7777)?;
        let result = (|| {
            let path = &copy.path;
            if let Ok(cur) = sys::fstat(copy.file.as_fd())
                && (cur.st_uid != st.st_uid || cur.st_gid != st.st_gid)
            {
                sys::fchown(copy.file.as_fd(), st.st_uid, st.st_gid)
                    .map_err(|e| Error::io(Op::SetOwnerAndMode, path, e))?;
            }
            // Always: the umask applied when the copy was created.
            sys::fchmod(copy.file.as_fd(), st.st_mode & 0o7777)
                .map_err(|e| Error::io(Op::SetOwnerAndMode, path, e))?;
            let mut src = &self.data.file;
            let mut dst = &copy.file;
            // io::copy on a &File starts at the cursor: read from offset 0.
            io::Seek::seek(&mut src, io::SeekFrom::Start(0))
                .map_err(|e| Error::io(Op::ReadCheckpoint, &self.data.path, e))?;
            io::copy(&mut src, &mut dst).map_err(|e| Error::io(Op::WriteCheckpoint, path, e))?;
            sys::fsync(copy.file.as_fd()).map_err(|e| Error::io(Op::SyncCheckpoint, path, e))?;
            self.lock
                .storage
                .seam_check(Step::Rename, path, Op::RenameCheckpoint)?;
            self.lock.verify()?;
            sys::renameat(
                self.lock.dir(),
                &copy.name,
                self.lock.dir(),
                OsStr::new(SESSION_FILE),
            )
            .map_err(|e| Error::io(Op::RenameCheckpoint, path, e))
        })();
        match result {
            Ok(()) => {
                copy.placed = true;
                self.lock.sync_dir_after_rename()
            }
            Err(e) => {
                copy.remove(self.lock.dir());
                Err(e)
            }
        }
    }

    /// Gives up the checkpoint: removes the temporary and `session.next` if
    /// it is still ours.
    pub fn abort(mut self) -> Result<()> {
        self.data.remove(self.lock.dir());
        self.lock.release()
    }
}

impl Storage {
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
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        // The lock, dropped after this, removes `session.next`.
        self.data.remove(self.lock.dir());
    }
}
