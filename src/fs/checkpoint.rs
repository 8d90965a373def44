//! An open `session`: a reader sees one committed version; a write handle
//! writes checkpoints through the core's lock protocol.
//!
//! A write handle is in one of four [`State`]s; every change of state is
//! made by [`WriteHandle`]'s methods below, and only there. `Writing`
//! carries its [`Progress`]: `U`ntouched, `T`runcated (opened with
//! `O_TRUNC`, nothing written yet), `W`ritten. `Released` carries whether
//! the open's `O_TRUNC` is still pending (`Released T`).
//!
//! ```text
//! state       request                         next state   effect
//! ----------  ------------------------------  -----------  -----------------------------
//! (none)      OPEN for writing                Writing T|U  takes the lock (session.next),
//!                                                          notes the committed checkpoint
//! Writing     WRITE, SETATTR(size)            Writing W    -
//! Writing     WRITE, SETATTR(size) fails      Failed       aborts: lock released
//! Writing     FLUSH, written                  Released     commits; discards instead if
//!                                             (Idle)       the closer is dying
//! Writing T   FLUSH, not written              Released T   aborts: lock released, the
//!                                             (Idle)       truncate stays pending; if the
//!                                                          closer is dying, discards
//! Writing U   FLUSH, not written              Released     aborts: lock released
//! Writing     FSYNC, changed, daemon-served   Released     commits
//! Writing     FSYNC, changed, passthrough     Writing U    commits a copy, lock kept
//! Writing     FSYNC, not changed              Writing      -
//! Writing     RELEASE, changed                (gone)       commits
//! Writing     RELEASE, not changed            (gone)       aborts: lock released
//! Writing     a passthrough commit finds      Failed       aborts: lock released
//!             the disk full
//! Released    WRITE, SETATTR(size),           Writing W    re-takes the lock (EBUSY if
//!             daemon-served                                held): starts empty if T, else
//!                                                          from the committed checkpoint
//! Released    WRITE, SETATTR(size),           Released     changes the kernel's backing
//!             passthrough                     (Failed)     file (its stamp tells later);
//!                                                          on a failure, Failed
//! Released    FLUSH, FSYNC, RELEASE; the      Released     re-takes the lock and commits
//!             backing file was written                     a copy of it; a dying closer's
//!             (passthrough)                   (Idle)       FLUSH discards it instead
//! Released    that commit fails (disk full,   Failed       the lock is free again; the
//!             lock held, ...)                              writes are dropped, never
//!                                                          retried later
//! Released T  FLUSH, FSYNC, RELEASE;          Released     commits the empty checkpoint if
//!             nothing written                 (Idle)       `session` is still the one the
//!                                                          open found and the lock is free,
//!                                                          else drops it; a dying closer's
//!                                                          FLUSH drops it (Idle)
//! Released    FLUSH, FSYNC, RELEASE; nothing  Released     -
//!             pending
//! Idle        WRITE, SETATTR(size)            Writing W    takes the lock; starts from
//!                                                          the committed checkpoint
//! Idle        FLUSH, FSYNC, RELEASE           Idle         -
//! Failed      WRITE, SETATTR(size), FSYNC     Failed       fails with the errno
//! Failed      FLUSH                           Idle         fails with the errno
//! Failed      RELEASE                         (gone)       -
//! ```
//!
//! - "written": `W`, or, with passthrough, the writer's file is not the
//!   `baseline` it was at open or at the last snapshot (the kernel writes
//!   it without the daemon). "changed": written, or `T`.
//! - Closing never leaves the next open EBUSY: the kernel sends RELEASE
//!   only after `close()` returned, so every FLUSH leaves the lock free
//!   before it replies: it commits what was written, or, with nothing
//!   written, gives the lock back (`Writing` → `Released`). A handle holds
//!   the lock exactly while it has uncommitted writes (or, until its first
//!   FLUSH, since its open): a second writer meanwhile gets EBUSY.
//! - `O_TRUNC` with nothing written: the shell's `cmd > session` opens,
//!   `dup2`s and closes the original (the first FLUSH) before `cmd`
//!   writes, so the first FLUSH commits nothing, or a `cmd` killed before
//!   writing would leave an empty checkpoint; the truncate stays pending.
//!   A later FLUSH with still nothing written (`: > session`: bash's
//!   second close, when it restores its stdout) commits the empty file, so
//!   `: > session; cat session` prints nothing every time. A program that
//!   closes its only descriptor (`open(F, "w").close()`) sends one FLUSH:
//!   its empty checkpoint is committed at RELEASE, just after `close()`
//!   returned. The empty commit never replaces a checkpoint committed after
//!   the open (compared by inode, size and mtime), nor waits for the lock.
//! - What RELEASE commits (a pending `O_TRUNC`, writes after the close)
//!   holds the lock after `close()` returned: it is a late commit (see
//!   `late_commits`), which the writers' opens of this mount wait out
//!   instead of failing with EBUSY. Every lock take here goes through
//!   `late_commits::begin`.
//! - What holds the lock: exactly the `Writing` state (its
//!   [`CheckpointWriter`]); `Released`, `Idle` and `Failed` hold none.
//!   Re-taking it later (a descriptor `dup`ed or inherited before the close
//!   writes on, or mmap's writeback) is a new checkpoint.
//! - A commit is the core's: sync, rename over `session`, sync of the
//!   directory. At FLUSH, whether the closing process is being killed by a
//!   signal is asked before the sync and answered before the rename
//!   (`dying`): a dying writer's checkpoint is discarded, never committed.
//! - `Released` keeps the file the open last worked on: the checkpoint it
//!   committed, or the aborted writer's file (unlinked, its content the
//!   open's view: the checkpoint at open, or empty after `O_TRUNC`). Reads
//!   through the open read it. With passthrough it stays the kernel's
//!   backing file of the open file, so writes through a descriptor still
//!   open land in it without the daemon seeing them: its stamp (size and
//!   mtime) at the release tells whether that happened, and if so its
//!   content is committed properly (a new checkpoint) at the next FLUSH (of
//!   a writer not dying), FSYNC or RELEASE. Those writes take no lock (the
//!   daemon does not see them): a second writer meanwhile is not refused,
//!   and the later commit replaces its checkpoint.
//! - A commit that failed at FSYNC or FLUSH was reported to the writer
//!   (`dd` exits non-zero on it): the handle is `Failed`, so RELEASE, which
//!   comes after `close()` returned, never tries it again. Retrying there
//!   would hold the lock after the writer went on (`session.next` still
//!   there once `dd` exited), and, if room came back meanwhile, commit a
//!   file a passthrough write had cut short, which the writer was told
//!   failed.
//!
//! - The kernel's page cache (daemon-served opens): readers of one
//!   committed version share its inode and keep its pages from open to
//!   open (`FOPEN_KEEP_CACHE` when the pages are known to be that version);
//!   a writer opens only an inode nothing else has open and writes through
//!   its page cache, so once its last checkpoint is committed, and it is
//!   released with nothing failed, discarded or written since, its inode
//!   stands for that version with its pages (`committed_version`). An open
//!   that would break this, or that reaches an inode of an older version
//!   through an entry the kernel kept, is refused with `ESTALE`, which the
//!   kernel retries after a fresh lookup (see `inode::CheckpointInodes`).
//! - Large checkpoints: every [`WRITEBACK_KICK`] bytes written through the
//!   daemon, the disk is asked to start writing them out, so the commit's
//!   fsync finds most of the data written.
//!
//! Invariants: a handle never commits a checkpoint a write failed in (the
//! failure is reported at the next FLUSH instead), never makes later a
//! commit it reported failed, never commits for a writer dying from a
//! signal, holds the lock only while `Writing`, and
//! replies to a FLUSH only once the lock is free or holds uncommitted
//! writes.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

mod open;

pub(in crate::fs) use self::open::CheckpointReader;
use super::dying::{DyingCheck, dying_from_signal};
use super::file::check_room;
use super::late_commits;
use super::own_commits::OwnCommits;
use super::{Caller, FsError, FsResult, Stamp};
use crate::core::{
    self, BeginOptions, CheckpointWriter, SESSION_FILE, SESSION_NEXT_FILE, Start, Storage, sys,
};

/// What a write handle has written since its checkpoint started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Nothing through the daemon (with passthrough the kernel may have
    /// written the file: its stamp is then not the baseline).
    Untouched,
    /// Opened with `O_TRUNC`, nothing written through the daemon yet: an
    /// empty checkpoint is wanted even if nothing is written.
    Truncated,
    /// Written or resized through the daemon.
    Written,
}

/// The state of a write handle (see the module doc for the machine).
#[derive(Debug)]
enum State {
    /// A checkpoint in progress: `writer` holds the lock.
    Writing {
        writer: CheckpointWriter,
        /// The writer's file when the checkpoint started or was last
        /// snapshotted; a different stamp means it was written (through
        /// passthrough).
        baseline: Option<Stamp>,
        progress: Progress,
    },
    /// No lock: the last checkpoint was committed, or given back with
    /// nothing written. `file` is the file the open last worked on (see the
    /// module doc), `stamp` its stamp then.
    Released {
        file: File,
        stamp: Option<Stamp>,
        /// The open's `O_TRUNC` still wants an empty checkpoint.
        truncate: bool,
        /// `file` is the checkpoint this handle committed (not an aborted
        /// writer's file).
        committed: bool,
    },
    /// No checkpoint in progress, no lock, nothing kept: the last one was
    /// discarded (a dying writer) or failed.
    Idle,
    /// A write into the checkpoint, or the commit of a released handle's
    /// passthrough writes, failed: it was aborted (no lock), further writes
    /// fail with this errno, and the next flush reports it instead of
    /// committing a partial file.
    Failed { errno: i32 },
}

/// A change through the daemon: a WRITE or a SETATTR of the size.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    Write(&'a [u8], u64),
    SetLen(u64),
}

impl Change<'_> {
    fn to_writer(self, w: &mut CheckpointWriter) -> core::Result<()> {
        match self {
            Change::Write(data, offset) => w.write_at(data, offset),
            Change::SetLen(len) => w.set_len(len),
        }
    }

    fn to_file(self, f: &File) -> std::io::Result<()> {
        match self {
            Change::Write(data, offset) => sys::pwrite_all(f.as_fd(), data, offset),
            Change::SetLen(len) => sys::ftruncate(f.as_fd(), len),
        }
    }
}

/// After this many bytes written through the daemon, the disk is asked to
/// start writing the checkpoint out (`sync_file_range`, not waiting): a
/// large checkpoint is then mostly on disk when the commit's fsync comes,
/// instead of all of it being written then, after the last FUSE request.
const WRITEBACK_KICK: u64 = 8 << 20;

/// Starts the write-out of what `file` holds (best effort: the commit's
/// fsync is what makes it durable).
fn kick_writeback(file: &File) {
    // SAFETY: `file` is an open descriptor; sync_file_range takes no
    // pointers.
    let rc = unsafe {
        libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            0,
            0,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if rc != 0 {
        log::debug!(
            "sync_file_range: {} (the commit's fsync writes it all)",
            std::io::Error::last_os_error()
        );
    }
}

/// Whether two stamps of `session` are the same committed checkpoint: the
/// same file with the same data (a commit renames a new file into place).
fn same_checkpoint(a: Option<Stamp>, b: Option<Stamp>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.dev == b.dev && a.ino == b.ino && a.same_data(&b),
        _ => false,
    }
}

/// The stamp of the committed `session` in the session directory `dir`
/// (`None`: there is none).
fn committed_stamp(dir: BorrowedFd<'_>, storage: &Storage) -> FsResult<Option<Stamp>> {
    match sys::lstatat(dir, OsStr::new(SESSION_FILE)) {
        Ok(st) if sys::is_reg(&st) => Ok(Some(Stamp::of(&st))),
        Ok(_) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(FsError::io(
            "stat",
            storage.location().join(SESSION_FILE),
            e,
        )),
    }
}

/// `session` opened for writing.
#[derive(Debug)]
pub(super) struct WriteHandle {
    storage: Storage,
    /// Where its commits are told to the watch.
    own_commits: Arc<OwnCommits>,
    caller: Caller,
    /// The kernel reads and writes the checkpoint's file directly.
    passthrough: bool,
    /// The kernel's page cache of the handle's inode holds what it wrote
    /// (daemon-served, alone on its inode: see `CheckpointInodes`).
    page_cache: bool,
    /// Bytes written through the daemon since the disk was last asked to
    /// start writing the checkpoint out (see [`WRITEBACK_KICK`]).
    unkicked: u64,
    state: State,
    /// The committed checkpoint when the handle opened (taken under its
    /// lock): a pending `O_TRUNC` commits only over that one.
    opened_over: Option<Stamp>,
}

impl WriteHandle {
    /// At the release: the checkpoint this handle committed last, when the
    /// handle ended with it (nothing written, failed or discarded since),
    /// as lookups will find it, and whether the kernel's pages of its inode
    /// hold exactly that version (see `CheckpointInodes`).
    pub(super) fn committed_version(&self) -> Option<(Stamp, bool)> {
        match &self.state {
            State::Released {
                stamp: Some(stamp),
                truncate: false,
                committed: true,
                ..
            } => Some((*stamp, self.page_cache)),
            State::Released { .. } | State::Writing { .. } | State::Idle | State::Failed { .. } => {
                None
            }
        }
    }

    /// True while a checkpoint is in progress (the lock is held).
    pub(super) fn is_writing(&self) -> bool {
        matches!(self.state, State::Writing { .. })
    }

    /// The `stat` of the checkpoint in progress, if any (otherwise the
    /// inode shows the committed checkpoint).
    pub(super) fn stat(&self) -> Option<FsResult<libc::stat>> {
        let State::Writing { writer, .. } = &self.state else {
            return None;
        };
        Some(
            sys::fstat(writer.file().as_fd())
                .map_err(|e| FsError::io("stat", writer.storage().location(), e)),
        )
    }

    pub(super) fn read(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        match &self.state {
            State::Writing { writer, .. } => Ok(writer.read_at(buf, offset)?),
            // What this open committed or gave back: its own view.
            State::Released { file, .. } => sys::pread_full(file.as_fd(), buf, offset)
                .map_err(|e| FsError::io("read", self.session_path(), e)),
            State::Idle | State::Failed { .. } => match self.storage.open_checkpoint()? {
                Some(f) => sys::pread_full(f.as_fd(), buf, offset)
                    .map_err(|e| FsError::io("read", self.session_path(), e)),
                None => Ok(0),
            },
        }
    }

    /// WRITE.
    pub(super) fn write(&mut self, data: &[u8], offset: u64) -> FsResult<()> {
        self.change(Change::Write(data, offset))
    }

    /// SETATTR of the size through this handle.
    pub(super) fn set_len(&mut self, size: u64) -> FsResult<()> {
        self.change(Change::SetLen(size))
    }

    /// FLUSH by process `pid` (one `close()`): commits what was written
    /// since the last commit, unless `pid` is dying from a signal; with
    /// nothing written, gives the lock back. Either way the lock is free
    /// when it returns.
    pub(super) fn flush(&mut self, pid: u32) -> FsResult<()> {
        let progress = match &self.state {
            State::Failed { errno } => {
                let e = self.failed_error(*errno);
                self.state = State::Idle;
                return Err(e);
            }
            State::Idle => return Ok(()),
            State::Released { truncate, .. } => {
                let (written, truncate) = (self.released_written(), *truncate);
                // The /proc check is not free (see `dying`): only when
                // there is something to commit.
                if !written && !truncate {
                    return Ok(());
                }
                if dying_from_signal(pid) {
                    self.log_discarded(pid);
                    self.state = State::Idle;
                    return Ok(());
                }
                return self.commit_released();
            }
            State::Writing { progress, .. } => *progress,
        };
        if self.written() {
            // Whether the writer is dying is answered while the data is
            // synced.
            return self.commit(Some(DyingCheck::ask(pid)));
        }
        // Nothing written: nothing to commit yet. An O_TRUNC open closed
        // before anything was written (the shell's dup2-and-close of a
        // redirection) keeps its truncate pending, unless its writer is
        // dying.
        let truncate = progress == Progress::Truncated;
        if truncate && dying_from_signal(pid) {
            return self.discard(pid);
        }
        self.give_back(truncate)
    }

    /// FSYNC: commits durably what was written so far. With passthrough
    /// the handle keeps its lock and goes on writing into the same file (a
    /// passthrough backing file cannot change), so the commit is of a copy.
    pub(super) fn fsync(&mut self) -> FsResult<()> {
        match self.state {
            State::Failed { errno } => return Err(self.failed_error(errno)),
            State::Idle => return Ok(()),
            State::Released { .. } => return self.commit_released(),
            State::Writing { .. } => {}
        }
        if !self.changed() {
            return Ok(());
        }
        if !self.passthrough {
            return self.commit(None);
        }
        let State::Writing { writer, .. } = &self.state else {
            return Ok(());
        };
        if let Err(e) = check_room(writer.file(), &writer.storage().location()) {
            return Err(self.poison(e));
        }
        let State::Writing {
            writer,
            baseline,
            progress,
        } = &mut self.state
        else {
            return Ok(());
        };
        writer.commit_snapshot()?;
        *baseline = Stamp::of_file(writer.file());
        *progress = Progress::Untouched;
        Ok(())
    }

    /// RELEASE: the last descriptor is gone. A checkpoint still in progress
    /// is committed if it holds unflushed changes, else its lock is
    /// released; what a released handle still has pending (writes into its
    /// passthrough backing file, an `O_TRUNC`) is committed.
    /// This is a late commit (see `late_commits`): writers opening
    /// meanwhile wait for it rather than get EBUSY.
    pub(super) fn release(&mut self) -> FsResult<()> {
        let location = self.storage.location();
        late_commits::late(&location, || match self.state {
            State::Writing { .. } if self.changed() => self.commit(None),
            State::Writing { .. } => self.give_up(),
            State::Released { .. } => self.commit_released(),
            State::Idle | State::Failed { .. } => Ok(()),
        })
    }

    // ----- transitions ----------------------------------------------------

    /// Whether the checkpoint in progress was written since it started or
    /// was last snapshotted: through the daemon, or (one fstat tells, since
    /// passthrough writes never reach the daemon) by the kernel.
    fn written(&self) -> bool {
        match &self.state {
            State::Writing {
                writer,
                baseline,
                progress,
            } => *progress == Progress::Written || Stamp::of_file(writer.file()) != *baseline,
            State::Released { .. } | State::Idle | State::Failed { .. } => false,
        }
    }

    /// Whether the checkpoint in progress holds something to commit: what
    /// was written, or the empty file an `O_TRUNC` open asked for.
    fn changed(&self) -> bool {
        match &self.state {
            State::Writing { progress, .. } => *progress == Progress::Truncated || self.written(),
            State::Released { .. } | State::Idle | State::Failed { .. } => false,
        }
    }

    /// Whether the kernel wrote a released handle's passthrough backing
    /// file since it was released (or last committed). Only data counts:
    /// the ctime also changes when the file is unlinked or replaced.
    fn released_written(&self) -> bool {
        match &self.state {
            State::Released { file, stamp, .. } if self.passthrough => Stamp::of_file(file)
                .zip(*stamp)
                .is_some_and(|(now, then)| !now.same_data(&then)),
            State::Released { .. } | State::Writing { .. } | State::Idle | State::Failed { .. } => {
                false
            }
        }
    }

    /// A change of the checkpoint through the daemon (write, resize). A
    /// released handle re-takes the lock first (from empty while its
    /// `O_TRUNC` is pending), or, with passthrough, changes its backing
    /// file, which the kernel reads and writes; a failure aborts the
    /// checkpoint (`Failed`).
    fn change(&mut self, change: Change<'_>) -> FsResult<()> {
        let start = match &self.state {
            State::Failed { errno } => return Err(self.failed_error(*errno)),
            State::Released { file, .. } if self.passthrough => {
                return match change.to_file(file) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let err = FsError::io("write", self.session_path(), e);
                        Err(self.poison(err))
                    }
                };
            }
            State::Released { truncate: true, .. } => Some(Start::Empty),
            State::Released { .. } | State::Idle => Some(Start::FromCurrent),
            State::Writing { .. } => None,
        };
        if let Some(start) = start {
            let writer = late_commits::begin(
                &self.storage,
                None,
                BeginOptions {
                    start,
                    owner: Some((self.caller.uid, self.caller.gid)),
                },
            )?;
            self.state = State::Writing {
                baseline: Stamp::of_file(writer.file()),
                writer,
                progress: Progress::Untouched,
            };
        }
        let State::Writing {
            writer, progress, ..
        } = &mut self.state
        else {
            return Err(FsError::BadHandle);
        };
        match change.to_writer(writer) {
            Ok(()) => {
                *progress = Progress::Written;
                if let Change::Write(data, _) = change {
                    self.unkicked += data.len() as u64;
                    if self.unkicked >= WRITEBACK_KICK {
                        self.unkicked = 0;
                        kick_writeback(writer.file());
                    }
                }
                Ok(())
            }
            Err(e) => Err(self.poison(e.into())),
        }
    }

    /// Commits the checkpoint in progress (`Writing` → `Released`); with
    /// `dying`, a writer found dying from a signal (asked before the sync,
    /// answered before the rename) has its checkpoint discarded instead
    /// (`Idle`).
    fn commit(&mut self, dying: Option<DyingCheck>) -> FsResult<()> {
        if self.passthrough
            && let State::Writing { writer, .. } = &self.state
            && let Err(e) = check_room(writer.file(), &writer.storage().location())
        {
            return Err(self.poison(e));
        }
        let State::Writing { writer, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            return Ok(());
        };
        let kept = writer.file().try_clone();
        let dying_pid = dying.as_ref().map_or(0, DyingCheck::pid);
        let own = self
            .own_commits
            .begin(self.storage.name().as_os_str(), writer.file());
        let committed = writer.commit_if(|| !dying.is_some_and(DyingCheck::answer))?;
        if !committed {
            drop(own);
            self.log_discarded(dying_pid);
            return Ok(());
        }
        match kept {
            Ok(file) => {
                own.done(Stamp::of_file(&file));
                self.release_to(file, false, true);
            }
            Err(e) => log::warn!(
                "{}: committed, but cannot keep the committed file for this open: {e}",
                self.session_path().display()
            ),
        }
        log::debug!("committed {}", self.storage.location().display());
        Ok(())
    }

    /// Gives the lock of a checkpoint with nothing written back before the
    /// FLUSH replies (`Writing` → `Released`), keeping its file for the
    /// open; `truncate`: the open's `O_TRUNC` stays pending.
    fn give_back(&mut self, truncate: bool) -> FsResult<()> {
        let State::Writing { writer, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            return Ok(());
        };
        let kept = writer.file().try_clone();
        writer.abort()?;
        match kept {
            Ok(file) => self.release_to(file, truncate, false),
            // Without its file the open reads the committed checkpoint and
            // nothing written through passthrough can be seen: say so.
            Err(e) => log::warn!(
                "{}: cannot keep the file of an open given back ({e}); writes through it are lost",
                self.session_path().display()
            ),
        }
        Ok(())
    }

    /// `Released` with `file`, stamped now; `committed`: it is the
    /// checkpoint just committed.
    fn release_to(&mut self, file: File, truncate: bool, committed: bool) {
        self.state = State::Released {
            stamp: Stamp::of_file(&file),
            file,
            truncate,
            committed,
        };
    }

    /// Gives up a checkpoint with nothing to commit: its lock is released
    /// (`Writing` → `Idle`; the handle is going).
    fn give_up(&mut self) -> FsResult<()> {
        if let State::Writing { writer, .. } = std::mem::replace(&mut self.state, State::Idle) {
            writer.abort()?;
        }
        Ok(())
    }

    /// Discards the checkpoint of a writer killed by a signal (`Writing` →
    /// `Idle`).
    fn discard(&mut self, pid: u32) -> FsResult<()> {
        self.log_discarded(pid);
        self.give_up()
    }

    /// Aborts the checkpoint in progress of a handle whose write failed (its
    /// file may hold a partial checkpoint), or drops the file of a released
    /// handle whose commit failed, and remembers the errno for the next
    /// flush, which reports it instead of committing (→ `Failed`); returns
    /// `err`.
    fn poison(&mut self, err: FsError) -> FsError {
        let old = std::mem::replace(&mut self.state, State::Failed { errno: err.errno() });
        if let State::Writing { writer, .. } = old
            && let Err(e) = writer.abort()
        {
            log::warn!("cannot abort a failed checkpoint: {e}");
        }
        log::warn!(
            "{}: checkpoint aborted, it will not be committed: {err}",
            self.session_path().display()
        );
        err
    }

    /// Commits what a released handle has pending: the content of its
    /// passthrough backing file if the kernel wrote it since, else the
    /// empty checkpoint of a pending `O_TRUNC`. The state stays `Released`:
    /// the commit is of a writer of its own.
    /// A failed commit of passthrough writes leaves the handle `Failed`
    /// (see the module doc): it is not retried at the next request.
    fn commit_released(&mut self) -> FsResult<()> {
        if self.released_written() {
            return self.recommit_released().map_err(|e| self.poison(e));
        }
        match self.state {
            State::Released { truncate: true, .. } => self.commit_truncate(),
            _ => Ok(()),
        }
    }

    /// Commits, through the lock protocol, what the kernel wrote into a
    /// released handle's passthrough backing file (see `Released`).
    fn recommit_released(&mut self) -> FsResult<()> {
        let State::Released { file, .. } = &self.state else {
            return Ok(());
        };
        log::info!(
            "{}: written through a descriptor still open after a close; committing those writes",
            self.session_path().display()
        );
        // The kernel wrote the file without the daemon: a write a full disk
        // cut short is told only by the room left (as in `commit`).
        check_room(file, &self.storage.location())?;
        let writer = late_commits::begin(
            &self.storage,
            None,
            BeginOptions {
                start: Start::Empty,
                owner: Some((self.caller.uid, self.caller.gid)),
            },
        )?;
        let mut src = file;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(0))
            .map_err(|e| FsError::io("read", self.session_path(), e))?;
        let mut dst = writer.file();
        std::io::copy(&mut src, &mut dst)
            .map_err(|e| FsError::io("copy", self.storage.location().join(SESSION_NEXT_FILE), e))?;
        writer.commit()?;
        if let State::Released {
            file,
            stamp,
            truncate,
            committed,
        } = &mut self.state
        {
            *stamp = Stamp::of_file(file);
            // What was committed started from the truncated file.
            *truncate = false;
            // It was a copy of the file: the file is not the checkpoint.
            *committed = false;
        }
        Ok(())
    }

    /// Commits the empty checkpoint a released `O_TRUNC` open still wants,
    /// only over the checkpoint it opened over and only if the lock is
    /// free: a later commit, or a writer at work, is newer than this
    /// truncate, which is dropped.
    fn commit_truncate(&mut self) -> FsResult<()> {
        if let State::Released { truncate, .. } = &mut self.state {
            *truncate = false;
        }
        let writer = match late_commits::begin(
            &self.storage,
            None,
            BeginOptions {
                start: Start::Empty,
                owner: Some((self.caller.uid, self.caller.gid)),
            },
        ) {
            Ok(w) => w,
            Err(e) => {
                let err = FsError::from(e);
                if err.errno() != libc::EBUSY {
                    return Err(err);
                }
                log::info!(
                    "{}: an O_TRUNC open closed without writing is not committed: another writer holds the lock",
                    self.session_path().display()
                );
                return Ok(());
            }
        };
        // Under the lock, nobody commits meanwhile.
        if !same_checkpoint(
            committed_stamp(writer.dir(), &self.storage)?,
            self.opened_over,
        ) {
            log::info!(
                "{}: an O_TRUNC open closed without writing is not committed: a newer checkpoint was committed since it opened",
                self.session_path().display()
            );
            writer.abort()?;
            return Ok(());
        }
        writer.commit()?;
        log::debug!("committed {} (empty)", self.storage.location().display());
        Ok(())
    }

    /// The name of the session directory.
    pub(super) fn session_name(&self) -> &OsStr {
        self.storage.name().as_os_str()
    }

    fn session_path(&self) -> std::path::PathBuf {
        self.storage.location().join(SESSION_FILE)
    }

    /// The error a `Failed` handle reports.
    fn failed_error(&self, errno: i32) -> FsError {
        FsError::io(
            "commit",
            self.session_path(),
            std::io::Error::from_raw_os_error(errno),
        )
    }

    fn log_discarded(&self, pid: u32) {
        log::warn!(
            "writer {pid} of {} was killed by a signal: its checkpoint is discarded",
            self.storage.location().display()
        );
    }
}
