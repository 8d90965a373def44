//! The handle table, and the requests on an open handle, each sent on to
//! the kind of handle it is.
//!
//! Invariants:
//! - a handle number is never reused while the mount lives;
//! - a handle lives from its open to its release; the kernel's FLUSHes
//!   (one per `close()` of a descriptor sharing it) do not end it;
//! - the table's mutex is held for map operations only: a request clones
//!   the handle's `Arc` out and works on it without the table.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::checkpoint::{CheckpointReader, WriteHandle};
use super::inode::NodeKey;
use super::lockfile::LockFile;
use super::{Caller, DirEntry, FsError, FsResult, Opened, SessionFs, lock};

#[derive(Debug)]
pub(super) enum Handle {
    /// `session` opened for reading: one committed version.
    Reader(CheckpointReader),
    /// `session` opened for writing (see `checkpoint` for its states).
    Writer(Box<Mutex<WriteHandle>>),
    /// Any other file, served by the daemon.
    File { file: File, path: PathBuf },
    /// `session.next` created through the mount (see `lockfile`).
    Lock(LockFile),
    /// An open directory: its listing (see [`Listing`]).
    Dir(Listing),
    /// An open of the decoded view `session.json` (see `view`).
    View(Arc<Vec<u8>>),
}

impl Handle {
    /// True for a write handle of `session` with a checkpoint in progress.
    pub(super) fn is_writing_checkpoint(&self) -> bool {
        match self {
            Handle::Writer(h) => lock(h).is_writing(),
            Handle::Reader(_)
            | Handle::File { .. }
            | Handle::Lock(_)
            | Handle::Dir(_)
            | Handle::View(_) => false,
        }
    }

    /// For a handle of `session`: the `stat` of the file it stands for (the
    /// checkpoint in progress, or the version it reads), when it has one.
    pub(super) fn checkpoint_stat(&self) -> Option<FsResult<libc::stat>> {
        match self {
            Handle::Writer(h) => lock(h).stat(),
            Handle::Reader(r) => r.stat(),
            Handle::File { .. } | Handle::Lock(_) | Handle::Dir(_) | Handle::View(_) => None,
        }
    }

    /// For a plain file or lock handle: its descriptor (what `fstat`,
    /// `fchmod` and the like act on, even once the file is unlinked).
    pub(super) fn plain_file(&self) -> Option<(&File, &std::path::Path)> {
        match self {
            Handle::File { file, path } => Some((file, path)),
            Handle::Lock(l) => Some((&l.file, &l.path)),
            Handle::Reader(_) | Handle::Writer(_) | Handle::Dir(_) | Handle::View(_) => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct HandleTable {
    by_fh: HashMap<u64, Arc<Handle>>,
    next: u64,
}

impl Default for HandleTable {
    fn default() -> Self {
        HandleTable {
            by_fh: HashMap::new(),
            next: 1,
        }
    }
}

/// The listing of an open directory: one snapshot, taken at `opendir` for
/// the root (whose listing finds sessions gone) and at the first read for
/// any other directory, so an open the kernel answers from its own cached
/// listing costs no read of the disk.
#[derive(Debug)]
pub(super) struct Listing {
    /// `.` and `..`, then the entries, once read.
    entries: std::sync::OnceLock<Vec<DirEntry>>,
    /// The directory (for the first read).
    pub(super) ino: u64,
    pub(super) key: NodeKey,
}

impl Listing {
    /// A listing taken now.
    pub(super) fn taken(ino: u64, key: NodeKey, entries: Vec<DirEntry>) -> Listing {
        let l = Listing::later(ino, key);
        let _ = l.entries.set(entries);
        l
    }

    /// A listing taken at its first read.
    pub(super) fn later(ino: u64, key: NodeKey) -> Listing {
        Listing {
            entries: std::sync::OnceLock::new(),
            ino,
            key,
        }
    }

    pub(super) fn is_taken(&self) -> bool {
        self.entries.get().is_some()
    }

    /// Keeps `entries` as the snapshot, unless a concurrent read took one
    /// first (that one stands).
    pub(super) fn take(&self, entries: Vec<DirEntry>) {
        let _ = self.entries.set(entries);
    }
}

/// The rest of a directory's listing: of an open directory (borrowed from
/// its handle; each entry's offset is its index + 1), or of one listed
/// without an open (a [`Snapshot`](super::listing::Snapshot), whose offsets
/// are the entries' cookies).
#[derive(Debug)]
pub struct DirEntries {
    source: Source,
    next: usize,
}

#[derive(Debug)]
enum Source {
    Handle(Arc<Handle>),
    Snapshot(Arc<super::listing::Snapshot>),
}

impl DirEntries {
    pub(super) fn new(handle: Arc<Handle>, offset: u64) -> FsResult<DirEntries> {
        if !matches!(handle.as_ref(), Handle::Dir(_)) {
            return Err(FsError::BadHandle);
        }
        Ok(DirEntries {
            source: Source::Handle(handle),
            next: usize::try_from(offset).unwrap_or(usize::MAX),
        })
    }

    /// The entries of `snapshot` from its `next`th on.
    pub(super) fn of_snapshot(snapshot: Arc<super::listing::Snapshot>, next: usize) -> DirEntries {
        DirEntries {
            source: Source::Snapshot(snapshot),
            next,
        }
    }

    /// The next entry and the offset that follows it.
    pub fn next_entry(&mut self) -> Option<(u64, &DirEntry)> {
        let i = self.next;
        match &self.source {
            Source::Handle(handle) => {
                let Handle::Dir(listing) = handle.as_ref() else {
                    return None;
                };
                let e = listing.entries.get()?.get(i)?;
                self.next += 1;
                Some((self.next as u64, e))
            }
            Source::Snapshot(snapshot) => {
                let (cookie, e) = snapshot.entry(i)?;
                self.next += 1;
                Some((cookie, e))
            }
        }
    }
}

impl SessionFs {
    pub(super) fn handle(&self, fh: u64) -> Option<Arc<Handle>> {
        lock(&self.handles).by_fh.get(&fh).cloned()
    }

    pub(super) fn insert_handle(&self, handle: Handle) -> u64 {
        let mut table = lock(&self.handles);
        let fh = table.next;
        table.next += 1;
        table.by_fh.insert(fh, Arc::new(handle));
        fh
    }

    pub(super) fn remove_handle(&self, fh: u64) -> Option<Arc<Handle>> {
        lock(&self.handles).by_fh.remove(&fh)
    }

    /// The open `session.next` handles (see `lockfile`).
    pub(super) fn lock_handles(&self) -> Vec<Arc<Handle>> {
        lock(&self.handles)
            .by_fh
            .values()
            .filter(|h| matches!(h.as_ref(), Handle::Lock(_)))
            .cloned()
            .collect()
    }

    pub fn open(&self, ino: u64, flags: i32, caller: Caller) -> FsResult<Opened> {
        let key = self.key(ino)?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writes || flags & libc::O_TRUNC != 0 {
            self.check_writable("open for writing", &key)?;
        }
        match &key {
            NodeKey::Checkpoint(s) => self.open_checkpoint(ino, s, flags, caller),
            NodeKey::View(s) => match self.open_view(s, flags)? {
                Some(opened) => Ok(opened),
                None => self.open_file(ino, &key, flags),
            },
            NodeKey::Lock(_) if writes => Err(FsError::refused(
                "open for writing",
                self.path_of(&key),
                "session.next is the lock of a checkpoint in progress; write session instead",
                libc::EPERM,
            )),
            NodeKey::Child(..) => match self.open_iolog_view(&key, flags)? {
                Some(opened) => Ok(opened),
                None => self.open_file(ino, &key, flags),
            },
            NodeKey::Lock(_) => self.open_file(ino, &key, flags),
            NodeKey::Root | NodeKey::Session(_) => Err(FsError::refused(
                "open",
                self.path_of(&key),
                "is a directory",
                libc::EISDIR,
            )),
            NodeKey::LastSession | NodeKey::PendingLink(_) => Err(FsError::refused(
                "open",
                self.path_of(&key),
                "last-session is a symlink",
                libc::ELOOP,
            )),
        }
    }

    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(super::Attr, Opened)> {
        self.own_change(&[(parent, name)], || {
            self.create_unmarked(parent, name, mode, flags, caller)
        })
    }

    fn create_unmarked(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(super::Attr, Opened)> {
        let pkey = self.key(parent)?;
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("create", &key)?;
        match &key {
            NodeKey::Root
            | NodeKey::LastSession
            | NodeKey::PendingLink(_)
            | NodeKey::Session(_) => Err(FsError::refused(
                "create",
                self.path_of(&key),
                "only session directories live here (mkdir NAME.session)",
                libc::EPERM,
            )),
            // `session` always exists in the mount; an exclusive create of
            // it is the only way here.
            NodeKey::Checkpoint(_) => Err(FsError::refused(
                "create",
                self.path_of(&key),
                "session exists",
                libc::EEXIST,
            )),
            // Plainbox's lock, taken as on disk (see `lockfile`).
            NodeKey::Lock(s) => self.create_lock(&key, s, mode, caller),
            NodeKey::View(_) | NodeKey::Child(..) => self.create_file(&key, mode, flags, caller),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset` into `buf`; returns how
    /// many.
    pub fn read(&self, fh: u64, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        match handle.as_ref() {
            // A committed file never changes: it is read without any lock,
            // so the kernel's concurrent read-ahead requests are served in
            // parallel.
            Handle::Reader(r) => r.read(buf, offset),
            Handle::Writer(h) => lock(h).read(buf, offset),
            Handle::File { file, path } => super::file::read(file, path, buf, offset),
            Handle::Lock(l) => super::file::read(&l.file, &l.path, buf, offset),
            Handle::View(data) => Ok(super::view::read_view(data, buf, offset)),
            Handle::Dir(_) => Err(FsError::BadHandle),
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        match handle.as_ref() {
            Handle::Writer(h) => lock(h).write(data, offset)?,
            Handle::File { file, path } => super::file::write(file, path, data, offset)?,
            Handle::Lock(l) => {
                l.written();
                super::file::write(&l.file, &l.path, data, offset)?;
            }
            Handle::Reader(_) | Handle::Dir(_) | Handle::View(_) => {
                return Err(FsError::BadHandle);
            }
        }
        Ok(data.len() as u32)
    }

    /// `close()` of one descriptor by process `pid`: commits what a
    /// `session` write handle wrote since the last commit, unless the
    /// closing process is dying from a signal (see `checkpoint`).
    pub fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        match handle.as_ref() {
            Handle::Writer(h) => lock(h).flush(pid),
            Handle::Lock(l) => {
                l.flushed(pid);
                Ok(())
            }
            Handle::Reader(_) | Handle::File { .. } | Handle::Dir(_) | Handle::View(_) => Ok(()),
        }
    }

    /// `fsync()`: commits durably what was written so far (see
    /// `checkpoint`); syncs a plain file.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        match handle.as_ref() {
            Handle::Writer(h) => lock(h).fsync(),
            Handle::File { file, path } => super::file::fsync(file, path),
            Handle::Lock(l) => super::file::fsync(&l.file, &l.path),
            Handle::Reader(_) | Handle::Dir(_) | Handle::View(_) => Ok(()),
        }
    }

    /// The last descriptor is gone: a `session` write handle commits or
    /// gives up its checkpoint (see `checkpoint`).
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let handle = self.remove_handle(fh).ok_or(FsError::BadHandle)?;
        match handle.as_ref() {
            // What it ends with (committed here or before) tells whether
            // its inode may stand for that version from now on.
            Handle::Writer(h) => {
                let mut writer = lock(h);
                let released = writer.release();
                let committed = writer.committed_version();
                self.own_commits.writer_closed(writer.session_name());
                drop(writer);
                self.nodes().writer_closed(fh, committed);
                released
            }
            Handle::Reader(_)
            | Handle::File { .. }
            | Handle::Lock(_)
            | Handle::Dir(_)
            | Handle::View(_) => {
                self.nodes().closed(fh);
                Ok(())
            }
        }
    }

    /// Whether replies to opens of `fh` must bypass the kernel's page cache:
    /// the view's size is known only once it is decoded, and each open may
    /// see another version.
    pub fn direct_io(&self, fh: u64) -> bool {
        self.handle(fh)
            .is_some_and(|h| matches!(h.as_ref(), Handle::View(_)))
    }
}
