//! Opening `session`: which inode an open may use (see
//! `inode::CheckpointInodes`), a reader's file, and a writer's lock taken
//! as the open's `O_TRUNC` says. What a write handle then does is the
//! parent module's state machine.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;

use super::super::handles::Handle;
use super::super::inode::{NodeKey, OpenChoice, Version};
use super::super::late_commits;
use super::super::{Caller, FsError, FsResult, Opened, SessionFs, Stamp};
use super::{Progress, State, WriteHandle, committed_stamp};
use crate::core::{BeginOptions, SESSION_FILE, Start, Storage, sys};

/// `session` opened for reading: the committed file as it was at open
/// (`None`: there was none, it reads as empty).
#[derive(Debug)]
pub(in crate::fs) struct CheckpointReader {
    storage: Storage,
    file: Option<File>,
}

impl CheckpointReader {
    pub(in crate::fs) fn read(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        match &self.file {
            Some(f) => sys::pread_full(f.as_fd(), buf, offset)
                .map_err(|e| FsError::io("read", self.storage.location().join(SESSION_FILE), e)),
            None => Ok(0),
        }
    }

    pub(in crate::fs) fn stat(&self) -> Option<FsResult<libc::stat>> {
        let f = self.file.as_ref()?;
        Some(
            sys::fstat(f.as_fd())
                .map_err(|e| FsError::io("stat", self.storage.location().join(SESSION_FILE), e)),
        )
    }
}

/// How an open for writing goes on, as its inode chose (see
/// `CheckpointInodes::open_writer`).
struct WriterChoice {
    how: OpenChoice,
    /// The committed version it starts from (`None`: `O_TRUNC`).
    from: Option<Version>,
}

impl SessionFs {
    /// Opens `session` of the session directory `s` (inode `ino`).
    pub(in crate::fs) fn open_checkpoint(
        &self,
        ino: u64,
        s: &std::ffi::OsStr,
        flags: i32,
        caller: Caller,
    ) -> FsResult<Opened> {
        let opened = self.open_checkpoint_once(ino, s, flags, caller);
        // Refused with ESTALE, the kernel retries once: the refusal stands
        // for that try (see `CheckpointInodes`).
        if !matches!(&opened, Err(e) if e.errno() == libc::ESTALE) {
            self.nodes().checkpoints.answered(caller.pid);
        }
        opened
    }

    fn open_checkpoint_once(
        &self,
        ino: u64,
        s: &std::ffi::OsStr,
        flags: i32,
        caller: Caller,
    ) -> FsResult<Opened> {
        let storage = self.storage(s)?;
        let dir = self.session_dir(s)?;
        let key = NodeKey::Checkpoint(s.to_os_string());
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            return self.open_reader(ino, &key, storage, dir.as_fd(), caller);
        }
        // A truncating writer starts empty, whatever version the inode
        // stood for; any other starts from the committed one.
        let from = if flags & libc::O_TRUNC != 0 {
            None
        } else {
            Some(self.checkpoint_version(dir.as_fd(), &key)?)
        };
        let how = self.nodes().checkpoints.open_writer(ino, caller.pid, from);
        if how == OpenChoice::Stale {
            return Err(stale(&storage));
        }
        match self.open_writer(ino, s, dir, flags, caller, WriterChoice { how, from }) {
            Ok(opened) => Ok(opened),
            Err(e) => {
                self.nodes().checkpoints.writer_failed(ino);
                Err(e)
            }
        }
    }

    /// Opens `session` for reading on inode `ino` (see `CheckpointInodes`):
    /// alone on the inode, the committed file; joining the readers open on
    /// it, the file they read.
    fn open_reader(
        &self,
        ino: u64,
        key: &NodeKey,
        storage: Storage,
        dir: BorrowedFd<'_>,
        caller: Caller,
    ) -> FsResult<Opened> {
        // A try fails only when an open of another version (or a writer's),
        // or a commit, got in between the choice and the registration.
        for _ in 0..8 {
            let current = self.checkpoint_version(dir, key)?;
            let mut how = self
                .nodes()
                .checkpoints
                .open_reader(ino, caller.pid, current);
            let joined = match &how {
                OpenChoice::Stale => return Err(stale(&storage)),
                OpenChoice::Join { stamp, handles } => {
                    self.reader_file(handles).map(|file| (file, *stamp))
                }
                OpenChoice::Alone { .. } | OpenChoice::Unshared => None,
            };
            let (file, stamp) = match joined {
                Some((file, stamp)) => {
                    let file = file.map_err(|e| {
                        FsError::io("open", storage.location().join(SESSION_FILE), e)
                    })?;
                    (Some(file), Some(stamp))
                }
                None => {
                    // The readers to join went meanwhile: open the committed
                    // file, registered only if it is their version or they
                    // are all gone.
                    if matches!(how, OpenChoice::Join { .. }) {
                        how = OpenChoice::Alone { cached: None };
                    }
                    let file = storage.open_checkpoint_in(dir)?;
                    let stamp = match &file {
                        Some(f) => Stamp::of_file(f).map(|st| Version::of(&st)),
                        None => Some(Version::ABSENT),
                    };
                    (file, stamp)
                }
            };
            // A file that cannot be stamped is no known version: never
            // shared, like an open refused twice.
            let stamp = stamp.unwrap_or(Version::ABSENT);
            let backing = match &file {
                Some(f) => self.backing(f)?,
                None => None,
            };
            let passthrough = backing.is_some();
            let fh = self.insert_handle(Handle::Reader(CheckpointReader {
                storage: storage.clone(),
                file,
            }));
            let registered = self.nodes().checkpoints.reader_opened(ino, fh, stamp, &how);
            let Some(keep) = registered else {
                self.remove_handle(fh);
                continue;
            };
            return Ok(Opened {
                fh,
                backing,
                // The kernel refuses FOPEN_KEEP_CACHE with passthrough
                // (whose page cache is the backing file's own anyway).
                keep_cache: keep && !passthrough,
                // An inode of another version, reopened without a lookup:
                // the kernel's size of it may be that version's.
                bypass_page_cache: how == OpenChoice::Unshared,
            });
        }
        self.nodes().checkpoints.open_contended(ino, caller.pid);
        Err(stale(&storage))
    }

    /// A new descriptor of the file one of the reader handles `handles`
    /// reads (`None`: none of them is open any more).
    fn reader_file(&self, handles: &[u64]) -> Option<std::io::Result<File>> {
        handles.iter().find_map(|&fh| {
            let h = self.handle(fh)?;
            match h.as_ref() {
                Handle::Reader(CheckpointReader { file: Some(f), .. }) => Some(f.try_clone()),
                _ => None,
            }
        })
    }

    /// Opens `session` for writing on inode `ino`, counted as its writer
    /// (`how`: alone on it, its writes go through the kernel's page cache;
    /// `Unshared`, they bypass it).
    fn open_writer(
        &self,
        ino: u64,
        session: &OsStr,
        dir: std::os::fd::OwnedFd,
        flags: i32,
        caller: Caller,
        chose: WriterChoice,
    ) -> FsResult<Opened> {
        let WriterChoice { mut how, from } = chose;
        let storage = self.storage(session)?;
        let key = NodeKey::Checkpoint(session.to_os_string());
        let truncating = flags & libc::O_TRUNC != 0;
        let start = if truncating {
            Start::Empty
        } else {
            Start::FromCurrent
        };
        let writer = late_commits::begin(
            &storage,
            Some(dir),
            BeginOptions {
                start,
                owner: Some((caller.uid, caller.gid)),
            },
        )?;
        // Under the lock just taken: nobody commits meanwhile. A commit
        // since the choice makes the inode an older version's.
        if let Some(from) = from
            && how != OpenChoice::Unshared
            && self.checkpoint_version(writer.dir(), &key)? != from
        {
            self.nodes().checkpoints.unshare(ino);
            how = OpenChoice::Unshared;
        }
        let opened_over = if truncating {
            committed_stamp(writer.dir(), &storage)?
        } else {
            None
        };
        let backing = self.backing(writer.file())?;
        let baseline = Stamp::of_file(writer.file());
        let handle = WriteHandle {
            storage,
            own_commits: self.own_commits.clone(),
            caller,
            passthrough: self.passthrough() && backing.is_some(),
            page_cache: backing.is_none() && how != OpenChoice::Unshared,
            unkicked: 0,
            state: State::Writing {
                writer,
                baseline,
                progress: if truncating {
                    Progress::Truncated
                } else {
                    Progress::Untouched
                },
            },
            opened_over,
        };
        let fh = self.insert_handle(Handle::Writer(Box::new(Mutex::new(handle))));
        self.nodes().checkpoints.opened(ino, fh);
        self.own_commits.writer_opened(session, ino);
        Ok(Opened {
            fh,
            backing,
            keep_cache: false,
            // A writer alone on its inode writes through the kernel's page
            // cache: once committed, its pages are that version's, kept
            // for the readers of it (see `CheckpointInodes`).
            bypass_page_cache: how == OpenChoice::Unshared,
        })
    }
}

/// The refusal of an open that must go to another inode: the kernel looks
/// the name up again and retries the open once.
fn stale(storage: &Storage) -> FsError {
    FsError::refused(
        "open",
        storage.location().join(SESSION_FILE),
        "another open of this inode is another version or a writer; the kernel retries with a fresh lookup",
        libc::ESTALE,
    )
}
