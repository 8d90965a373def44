//! An open `session`: a reader sees one committed version; a write handle
//! writes checkpoints through the core's lock protocol.
//!
//! A write handle is in one of three [`State`]s; every change of state is
//! made by [`WriteHandle`]'s methods below, and only there. `Writing`
//! carries its [`Progress`]: `U`ntouched, `T`runcated (opened with
//! `O_TRUNC`, nothing written yet), `W`ritten.
//!
//! ```text
//! state       request                         next state   effect
//! ----------  ------------------------------  -----------  ----------------------------
//! (none)      OPEN for writing                Writing T|U  takes the lock (session.next)
//! Writing     WRITE, SETATTR(size)            Writing W    -
//! Writing     WRITE, SETATTR(size) fails      Failed       aborts: lock released
//! Writing     FLUSH, written                  Idle         commits; discards instead if
//!                                                          the closer is dying
//! Writing T   FLUSH, not written              Writing T    nothing; if the closer is
//!                                             (Idle)       dying, discards (Idle)
//! Writing U   FLUSH, not written              Writing U    nothing: lock kept (*)
//! Writing     FSYNC, changed, daemon-served   Idle         commits
//! Writing     FSYNC, changed, passthrough     Writing U    commits a copy, lock kept
//! Writing     FSYNC, not changed              Writing      -
//! Writing     RELEASE, changed                Idle         commits (`: > session`)
//! Writing     RELEASE, not changed            Idle         aborts: lock released
//! Writing     a passthrough commit finds      Failed       aborts: lock released
//!             the disk full
//! Idle        WRITE, SETATTR(size)            Writing W    takes the lock; starts from
//!                                                          the committed checkpoint
//! Idle        FLUSH (closer not dying),       Idle         commits sealed writes, if
//!             FSYNC, RELEASE                               any (see below)
//! Failed      WRITE, SETATTR(size), FSYNC     Failed       fails with the errno
//! Failed      FLUSH                           Idle         fails with the errno
//! Failed      RELEASE                         (gone)       commits sealed writes, if any
//! ```
//!
//! - "written": `W`, or, with passthrough, the writer's file is not the
//!   `baseline` it was at open or at the last snapshot (the kernel writes
//!   it without the daemon). "changed": written, or `T`.
//! - FLUSH (each `close()`) commits only what was written: with `T` and
//!   nothing written it commits nothing, since the shell's redirection
//!   opens with `O_TRUNC`, `dup2`s and closes the original before the
//!   command writes; RELEASE (the last close) then commits the empty file
//!   (`: > session`).
//! - (*) A FLUSH with nothing written keeps the lock until RELEASE (the
//!   `Writing U` row); releasing it there instead is `give_up`.
//! - What holds the lock: exactly the `Writing` state (its
//!   [`CheckpointWriter`]); `Idle` and `Failed` hold none.
//! - A commit is the core's: sync, rename over `session`, sync of the
//!   directory. At FLUSH, whether the closing process is being killed by a
//!   signal is asked before the sync and answered before the rename
//!   (`dying`): a dying writer's checkpoint is discarded, never committed.
//! - With passthrough, the file a commit renamed into place stays the
//!   kernel's backing file of this handle: later writes through another
//!   descriptor of the same open file land in it. Its stamp at the commit
//!   ([`Sealed`]) tells whether that happened; if so, they are committed
//!   properly (a new checkpoint with that content) at the next FLUSH (of a
//!   writer not dying), FSYNC or RELEASE outside `Writing`. The seal is a
//!   fact about the kernel's backing file, not a state of the checkpoint in
//!   progress, so it sits beside the state rather than in it.
//!
//! Invariants: a handle never commits a checkpoint a write failed in (the
//! failure is reported at the next FLUSH instead), never commits for a
//! writer dying from a signal, and holds the lock only while `Writing`.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Mutex;

use super::dying::{DyingCheck, dying_from_signal};
use super::file::check_room;
use super::handles::Handle;
use super::{Caller, FsError, FsResult, Opened, SessionFs, Stamp};
use crate::core::{
    self, BeginOptions, CheckpointWriter, SESSION_FILE, SESSION_NEXT_FILE, Start, Storage, sys,
};

/// `session` opened for reading: the committed file as it was at open
/// (`None`: there was none, it reads as empty).
#[derive(Debug)]
pub(super) struct CheckpointReader {
    storage: Storage,
    file: Option<File>,
}

impl CheckpointReader {
    pub(super) fn read(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        match &self.file {
            Some(f) => sys::pread_full(f.as_fd(), buf, offset)
                .map_err(|e| FsError::io("read", self.storage.location().join(SESSION_FILE), e)),
            None => Ok(0),
        }
    }

    pub(super) fn stat(&self) -> Option<FsResult<libc::stat>> {
        let f = self.file.as_ref()?;
        Some(
            sys::fstat(f.as_fd())
                .map_err(|e| FsError::io("stat", self.storage.location().join(SESSION_FILE), e)),
        )
    }
}

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
    /// No checkpoint in progress, no lock: the last one was committed,
    /// discarded or given up.
    Idle,
    /// A write into the checkpoint failed: it was aborted (no lock),
    /// further writes fail with this errno, and the next flush reports it
    /// instead of committing a partial file.
    Failed { errno: i32 },
}

/// The committed file that stays a passthrough handle's backing file, and
/// its stamp at the commit.
#[derive(Debug)]
struct Sealed {
    file: File,
    stamp: Option<Stamp>,
}

/// `session` opened for writing.
#[derive(Debug)]
pub(super) struct WriteHandle {
    storage: Storage,
    caller: Caller,
    /// The kernel reads and writes the checkpoint's file directly.
    passthrough: bool,
    state: State,
    /// With passthrough, after a commit: see the module doc.
    sealed: Option<Sealed>,
}

impl SessionFs {
    /// Opens `session` of the session directory `s` (inode `ino`).
    pub(super) fn open_checkpoint(
        &self,
        ino: u64,
        s: &std::ffi::OsStr,
        flags: i32,
        caller: Caller,
    ) -> FsResult<Opened> {
        let storage = self.storage(s)?;
        let dir = self.session_dir(s)?;
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            let file = storage.open_checkpoint_in(dir.as_fd())?;
            let backing = match &file {
                Some(f) => self.backing(f)?,
                None => None,
            };
            // The kernel refuses FOPEN_KEEP_CACHE with passthrough (whose
            // page cache is the backing file's own anyway).
            let keep_cache = match file.as_ref().and_then(Stamp::of_file) {
                Some(_) if backing.is_some() => false,
                Some(stamp) => self.nodes().cached_versions.insert(ino, stamp) == Some(stamp),
                None => false,
            };
            let fh = self.insert_handle(Handle::Reader(CheckpointReader { storage, file }));
            self.nodes().checkpoints.opened(ino, fh);
            return Ok(Opened {
                fh,
                backing,
                keep_cache,
                writes_checkpoint: false,
            });
        }
        let truncating = flags & libc::O_TRUNC != 0;
        let start = if truncating {
            Start::Empty
        } else {
            Start::FromCurrent
        };
        let writer = storage.begin_in(
            dir,
            BeginOptions {
                start,
                owner: Some((caller.uid, caller.gid)),
            },
        )?;
        let backing = self.backing(writer.file())?;
        let baseline = Stamp::of_file(writer.file());
        self.nodes().cached_versions.remove(&ino);
        let handle = WriteHandle {
            storage,
            caller,
            passthrough: self.passthrough() && backing.is_some(),
            state: State::Writing {
                writer,
                baseline,
                progress: if truncating {
                    Progress::Truncated
                } else {
                    Progress::Untouched
                },
            },
            sealed: None,
        };
        let fh = self.insert_handle(Handle::Writer(Box::new(Mutex::new(handle))));
        self.nodes().checkpoints.opened(ino, fh);
        Ok(Opened {
            fh,
            backing,
            keep_cache: false,
            writes_checkpoint: true,
        })
    }
}

impl WriteHandle {
    /// True while a checkpoint is in progress (the lock is held).
    pub(super) fn is_writing(&self) -> bool {
        matches!(self.state, State::Writing { .. })
    }

    /// The `stat` of the checkpoint in progress, if any.
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
            // Committed and not writing: read what was committed.
            State::Idle | State::Failed { .. } => match self.storage.open_checkpoint()? {
                Some(f) => sys::pread_full(f.as_fd(), buf, offset)
                    .map_err(|e| FsError::io("read", self.session_path(), e)),
                None => Ok(0),
            },
        }
    }

    /// WRITE.
    pub(super) fn write(&mut self, data: &[u8], offset: u64) -> FsResult<()> {
        self.change(|w| w.write_at(data, offset))
    }

    /// SETATTR of the size through this handle.
    pub(super) fn set_len(&mut self, size: u64) -> FsResult<()> {
        self.change(|w| w.set_len(size))
    }

    /// FLUSH by process `pid`: commits what was written since the last
    /// commit, unless `pid` is dying from a signal.
    pub(super) fn flush(&mut self, pid: u32) -> FsResult<()> {
        let progress = match &self.state {
            State::Failed { errno } => {
                let e = self.failed_error(*errno);
                self.state = State::Idle;
                return Err(e);
            }
            State::Idle => {
                // Only a passthrough handle that committed can have more to
                // commit; the /proc check is not free (see `dying`).
                if self.sealed.is_none() || dying_from_signal(pid) {
                    return Ok(());
                }
                return self.recommit_sealed();
            }
            State::Writing { progress, .. } => *progress,
        };
        if self.written() {
            // Whether the writer is dying is answered while the data is
            // synced.
            return self.commit(Some(DyingCheck::ask(pid)));
        }
        // Nothing written: nothing to commit. An O_TRUNC open closed before
        // anything was written (the shell's dup2-and-close of a
        // redirection) commits at release, unless its writer is dying; an
        // untouched checkpoint keeps its lock until release (`give_up`).
        if progress == Progress::Truncated && dying_from_signal(pid) {
            self.discard(pid)?;
        }
        Ok(())
    }

    /// FSYNC: commits durably what was written so far. With passthrough
    /// the handle keeps its lock and goes on writing into the same file (a
    /// passthrough backing file cannot change), so the commit is of a copy.
    pub(super) fn fsync(&mut self) -> FsResult<()> {
        if let State::Failed { errno } = self.state {
            return Err(self.failed_error(errno));
        }
        if !self.changed() {
            return match self.state {
                State::Writing { .. } => Ok(()),
                State::Idle | State::Failed { .. } => self.recommit_sealed(),
            };
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
    /// is committed if it holds unflushed changes (`: > session`), else its
    /// lock is released.
    pub(super) fn release(&mut self) -> FsResult<()> {
        match self.state {
            State::Writing { .. } if self.changed() => self.commit(None),
            State::Writing { .. } => self.give_up(),
            State::Idle | State::Failed { .. } => self.recommit_sealed(),
        }
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
            State::Idle | State::Failed { .. } => false,
        }
    }

    /// Whether the checkpoint in progress holds something to commit: what
    /// was written, or the empty file an `O_TRUNC` open asked for.
    fn changed(&self) -> bool {
        match &self.state {
            State::Writing { progress, .. } => *progress == Progress::Truncated || self.written(),
            State::Idle | State::Failed { .. } => false,
        }
    }

    /// A change of the checkpoint through the daemon (write, resize):
    /// starts the next checkpoint if the last one was committed; a failure
    /// aborts the checkpoint (`Failed`).
    fn change(
        &mut self,
        apply: impl FnOnce(&mut CheckpointWriter) -> core::Result<()>,
    ) -> FsResult<()> {
        match self.state {
            State::Failed { errno } => return Err(self.failed_error(errno)),
            State::Idle => {
                let writer = self.storage.begin(BeginOptions {
                    start: Start::FromCurrent,
                    owner: Some((self.caller.uid, self.caller.gid)),
                })?;
                self.state = State::Writing {
                    baseline: Stamp::of_file(writer.file()),
                    writer,
                    progress: Progress::Untouched,
                };
            }
            State::Writing { .. } => {}
        }
        let State::Writing {
            writer, progress, ..
        } = &mut self.state
        else {
            return Err(FsError::BadHandle);
        };
        match apply(writer) {
            Ok(()) => {
                *progress = Progress::Written;
                Ok(())
            }
            Err(e) => Err(self.poison(e.into())),
        }
    }

    /// Commits the checkpoint in progress (`Writing` → `Idle`); with
    /// `dying`, a writer found dying from a signal (asked before the sync,
    /// answered before the rename) has its checkpoint discarded instead.
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
        let seal = if self.passthrough {
            writer.file().try_clone().ok()
        } else {
            None
        };
        let dying_pid = dying.as_ref().map_or(0, DyingCheck::pid);
        let committed = writer.commit_if(|| !dying.is_some_and(DyingCheck::answer))?;
        if !committed {
            self.log_discarded(dying_pid);
            return Ok(());
        }
        self.sealed = seal.map(|file| Sealed {
            stamp: Stamp::of_file(&file),
            file,
        });
        log::debug!("committed {}", self.storage.location().display());
        Ok(())
    }

    /// Gives up a checkpoint with nothing to commit: its lock is released
    /// (`Writing` → `Idle`). Today only RELEASE does; a FLUSH with nothing
    /// written keeps the lock (see the module doc).
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
    /// file may hold a partial checkpoint) and remembers the errno for the
    /// next flush, which reports it instead of committing (`Writing` →
    /// `Failed`); returns `err`.
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

    /// Commits, through the lock protocol, what a passthrough handle wrote
    /// into its already committed backing file (see [`Sealed`]). The state
    /// stays as it is: the commit is of a writer of its own.
    fn recommit_sealed(&mut self) -> FsResult<()> {
        let Some(sealed) = &self.sealed else {
            return Ok(());
        };
        // Only data written into it counts: once a newer checkpoint has
        // replaced it, its ctime changes too, and committing it again
        // would bring the old checkpoint back.
        let written = Stamp::of_file(&sealed.file)
            .zip(sealed.stamp)
            .is_some_and(|(now, then)| !now.same_data(&then));
        if !written {
            return Ok(());
        }
        log::warn!(
            "{}: written through another descriptor after a close committed it; committing those writes now",
            self.session_path().display()
        );
        let writer = self.storage.begin(BeginOptions {
            start: Start::Empty,
            owner: Some((self.caller.uid, self.caller.gid)),
        })?;
        let mut src = &sealed.file;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(0))
            .map_err(|e| FsError::io("read", self.session_path(), e))?;
        let mut dst = writer.file();
        std::io::copy(&mut src, &mut dst)
            .map_err(|e| FsError::io("copy", self.storage.location().join(SESSION_NEXT_FILE), e))?;
        writer.commit()?;
        let new_stamp = Stamp::of_file(&sealed.file);
        if let Some(sealed) = self.sealed.as_mut() {
            sealed.stamp = new_stamp;
        }
        Ok(())
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
