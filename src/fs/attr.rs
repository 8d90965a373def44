//! Attributes: what `getattr` shows and what `setattr` changes.
//!
//! Invariants:
//! - a `session` inode open for writing shows the checkpoint being written,
//!   one open for reading the version it reads; otherwise the committed
//!   file (or an empty file, see `resolve`), and an inode of an older
//!   version that shows a newer one is retired in the same step (see
//!   `still_stands_for`): the kernel's size of an inode is never another
//!   version's while a reader reads it through the page cache;
//! - a size change of `session` is a checkpoint of its own (or, through a
//!   write handle, a change of the checkpoint that handle writes): never a
//!   truncation of the committed file in place;
//! - the root, `last-session` and the lock `session.next` keep the
//!   attributes the core gives them.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::SystemTime;

use super::creds::AsCaller;

use super::handles::Handle;
use super::inode::{LAST_SESSION, NodeKey, Version};
use super::{Caller, FsError, FsResult, SessionFs, Stamp};
use crate::core::{BeginOptions, Start, sys};

/// The kind of a filesystem object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
    NamedPipe,
    CharDevice,
    BlockDevice,
    Socket,
}

/// Attributes of an inode, as the kernel sees them.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

impl Attr {
    pub(super) fn from_stat(ino: u64, st: &libc::stat) -> Attr {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Directory,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::NamedPipe,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::File,
        };
        Attr {
            ino,
            kind,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: sys::system_time(st.st_atime, st.st_atime_nsec),
            mtime: sys::system_time(st.st_mtime, st.st_mtime_nsec),
            ctime: sys::system_time(st.st_ctime, st.st_ctime_nsec),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
        }
    }
}

/// Attribute changes requested by `setattr`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
}

#[derive(Debug, Clone, Copy)]
pub enum TimeSet {
    Now,
    At(SystemTime),
}

fn timespec(t: Option<TimeSet>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeSet::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeSet::At(t)) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
            Err(e) => {
                let d = e.duration();
                libc::timespec {
                    tv_sec: -(d.as_secs() as libc::time_t),
                    tv_nsec: 0,
                }
            }
        },
    }
}

/// True when `set` changes no owner and changes `st`'s mode only by
/// clearing its setuid and setgid bits: what the kernel asks after a write
/// or truncate by a process that is not the owner. A `chown` by a non-owner
/// also clears them, in the same request: it must still be made as the
/// caller, or anyone could take over a setuid file.
fn only_drops_privileges(st: &libc::stat, set: &SetAttr) -> bool {
    let Some(mode) = set.mode else {
        return false;
    };
    if set.uid.is_some() || set.gid.is_some() {
        return false;
    }
    let old = st.st_mode & 0o7777;
    let new = mode & 0o7777;
    new != old && new & !old == 0 && (old ^ new) & !(libc::S_ISUID | libc::S_ISGID) == 0
}

impl SessionFs {
    /// The attributes of `key` (whose inode is `ino`) as found now.
    pub(super) fn attr_of(&self, ino: u64, key: &NodeKey) -> FsResult<Attr> {
        match key {
            NodeKey::PendingLink(name) => self.pending_link_attr(name),
            NodeKey::LastSession => self.last_session_attr(),
            NodeKey::Root
            | NodeKey::Session(_)
            | NodeKey::Checkpoint(_)
            | NodeKey::Lock(_)
            | NodeKey::View(_)
            | NodeKey::Child(..) => Ok(Attr::from_stat(ino, &self.stat_key(key)?)),
        }
    }

    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> FsResult<Attr> {
        if let Some(st) = self.open_checkpoint_stat(ino, fh) {
            return Ok(Attr::from_stat(ino, &st?));
        }
        // A plain file open through the mount is what its descriptor shows,
        // even once unlinked or replaced under its name (fstat of a file
        // unlinked while open).
        if let Some(handle) = self.open_plain_handle(ino, fh)
            && let Some((file, path)) = handle.plain_file()
        {
            let st = sys::fstat(file.as_fd()).map_err(|e| FsError::io("stat", path, e))?;
            return Ok(Attr::from_stat(ino, &st));
        }
        let key = self.key(ino)?;
        if let NodeKey::Checkpoint(_) = key {
            let st = self.stat_key(&key)?;
            if !self.still_stands_for(ino, &st)
                && let Some(open) = self.open_checkpoint_stat(ino, fh)
            {
                // Opened meanwhile, on the inode's own version.
                return Ok(Attr::from_stat(ino, &open?));
            }
            return Ok(Attr::from_stat(ino, &st));
        }
        self.attr_of(ino, &key)
    }

    /// A `session` inode open for writing stands for the checkpoint being
    /// written, one open for reading for the version it reads (fstat
    /// reaches here without a handle): the stat of that, if open.
    fn open_checkpoint_stat(&self, ino: u64, fh: Option<u64>) -> Option<FsResult<libc::stat>> {
        let fh = fh.or_else(|| {
            let handles = self.nodes().checkpoints.handles(ino);
            handles
                .iter()
                .rev()
                .find(|&&fh| self.handle(fh).is_some_and(|h| h.is_writing_checkpoint()))
                .or(handles.first())
                .copied()
        })?;
        self.handle(fh)?.checkpoint_stat()
    }

    /// Whether the `session` inode `ino`, with nothing open on it, still
    /// stands for the committed file found as `st`. An inode of an older
    /// version (the kernel kept its entry, see `cache`) is retired first,
    /// in the same step: it shows the newer file from now on, with
    /// attributes never kept, and no open may share it any more (an open
    /// registered on it as the older version would read that version sized
    /// like the newer one). Returns false when something is open on it
    /// meanwhile: it then shows what that reads or writes.
    fn still_stands_for(&self, ino: u64, st: &libc::stat) -> bool {
        let mut nodes = self.nodes();
        let checkpoints = &mut nodes.checkpoints;
        if !checkpoints.is_versioned(ino)
            || checkpoints.stands_for(ino, Version::of(&Stamp::of(st)))
        {
            return true;
        }
        if !checkpoints.handles(ino).is_empty() {
            return false;
        }
        checkpoints.unshare(ino);
        true
    }

    /// The plain-file handle `fh` if it is one, else the oldest plain-file
    /// handle open on `ino`.
    fn open_plain_handle(&self, ino: u64, fh: Option<u64>) -> Option<Arc<Handle>> {
        fh.and_then(|fh| self.handle(fh))
            .filter(|h| h.plain_file().is_some())
            .or_else(|| {
                let fh = self.nodes().open_files.first(ino)?;
                self.handle(fh)
            })
    }

    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        set: SetAttr,
        caller: Caller,
    ) -> FsResult<Attr> {
        let key = self.key(ino)?;
        self.check_writable("setattr", &key)?;
        self.refuse_view_change("setattr", &key)?;
        if let Some(size) = set.size {
            self.truncate(&key, fh, size, caller)?;
        }
        if set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime.is_some()
            || set.mtime.is_some()
        {
            let (dir, name) = match &key {
                NodeKey::Root | NodeKey::LastSession | NodeKey::PendingLink(_) => {
                    return Err(FsError::refused(
                        "setattr",
                        self.path_of(&key),
                        "the repository root and last-session cannot be changed this way",
                        libc::EPERM,
                    ));
                }
                NodeKey::Session(s) => (
                    self.repo_dir
                        .try_clone()
                        .map_err(|e| FsError::io("setattr", self.path_of(&key), e))?,
                    s.clone(),
                ),
                NodeKey::Checkpoint(_)
                | NodeKey::Lock(_)
                | NodeKey::View(_)
                | NodeKey::Child(..) => self.parent_of_key(&key)?,
            };
            let path = self.path_of(&key);
            // An open file is changed through its descriptor (it may be
            // unlinked, or its name may stand for another file by now).
            let open = self.open_plain_handle(ino, fh);
            if let Some((file, _)) = open.as_ref().and_then(|h| h.plain_file()) {
                return self
                    .set_through(file, &path, set, caller)
                    .and_then(|()| self.getattr(ino, fh));
            }
            let st = sys::lstatat(dir.as_fd(), &name).map_err(|e| FsError::io("stat", &path, e))?;
            let _as = if only_drops_privileges(&st, &set) {
                // The kernel clearing setuid/setgid after a write or
                // truncate by someone who is not the owner: allowed to
                // anyone, as the disk's own kernel does it.
                None
            } else {
                Some(AsCaller::enter(caller).map_err(|e| FsError::io("setattr", &path, e))?)
            };
            if let Some(mode) = set.mode {
                if sys::is_symlink(&st) {
                    return Err(FsError::refused(
                        "chmod",
                        path,
                        "symlinks have no mode",
                        libc::EOPNOTSUPP,
                    ));
                }
                sys::chmodat(dir.as_fd(), &name, mode & 0o7777)
                    .map_err(|e| FsError::io("chmod", &path, e))?;
            }
            if set.uid.is_some() || set.gid.is_some() {
                sys::lchownat(
                    dir.as_fd(),
                    &name,
                    set.uid.unwrap_or(u32::MAX),
                    set.gid.unwrap_or(u32::MAX),
                )
                .map_err(|e| FsError::io("chown", &path, e))?;
            }
            if set.atime.is_some() || set.mtime.is_some() {
                let times = [timespec(set.atime), timespec(set.mtime)];
                sys::utimensat(dir.as_fd(), &name, &times)
                    .map_err(|e| FsError::io("set times of", &path, e))?;
            }
        }
        if let NodeKey::Checkpoint(_) = key {
            // The kernel takes the reply's attributes as the inode's: it
            // stands for what its change made (a new ctime, or a new
            // checkpoint after `truncate`), unless something is open on it.
            let st = self.stat_key(&key)?;
            self.nodes()
                .checkpoints
                .changed_to(ino, Version::of(&Stamp::of(&st)));
        }
        self.getattr(ino, fh)
    }

    /// Mode, owner and times of an open file, through its descriptor, as
    /// `caller`.
    fn set_through(
        &self,
        file: &std::fs::File,
        path: &std::path::Path,
        set: SetAttr,
        caller: Caller,
    ) -> FsResult<()> {
        let st = sys::fstat(file.as_fd()).map_err(|e| FsError::io("stat", path, e))?;
        let _as = if only_drops_privileges(&st, &set) {
            None
        } else {
            Some(AsCaller::enter(caller).map_err(|e| FsError::io("setattr", path, e))?)
        };
        if let Some(mode) = set.mode {
            sys::fchmod(file.as_fd(), mode & 0o7777).map_err(|e| FsError::io("chmod", path, e))?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            sys::fchown(
                file.as_fd(),
                set.uid.unwrap_or(u32::MAX),
                set.gid.unwrap_or(u32::MAX),
            )
            .map_err(|e| FsError::io("chown", path, e))?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let times = [timespec(set.atime), timespec(set.mtime)];
            // SAFETY: a live descriptor and an array of two timespecs.
            let rc = unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) };
            if rc != 0 {
                return Err(FsError::io(
                    "set times of",
                    path,
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }

    fn truncate(&self, key: &NodeKey, fh: Option<u64>, size: u64, caller: Caller) -> FsResult<()> {
        // Through an open handle: change what that handle is writing.
        if let Some(handle) = fh.and_then(|fh| self.handle(fh)) {
            match handle.as_ref() {
                Handle::Writer(h) => return super::lock(h).set_len(size),
                Handle::File { file, path } => {
                    return sys::ftruncate(file.as_fd(), size)
                        .map_err(|e| FsError::io("truncate", path, e));
                }
                Handle::Lock(l) => {
                    return sys::ftruncate(l.file.as_fd(), size)
                        .map_err(|e| FsError::io("truncate", &l.path, e));
                }
                Handle::Reader(_) | Handle::Dir(_) | Handle::View(_) => {}
            }
        }
        match key {
            // `truncate -s N session`: a whole checkpoint of its own.
            NodeKey::Checkpoint(s) => {
                let storage = self.storage(s)?;
                let start = if size == 0 {
                    Start::Empty
                } else {
                    Start::FromCurrent
                };
                // Like every other take of the lock, it waits out a commit
                // this mount makes at a RELEASE that came after close().
                let mut writer = super::late_commits::begin(
                    &storage,
                    None,
                    BeginOptions {
                        start,
                        owner: Some((caller.uid, caller.gid)),
                    },
                )?;
                writer.set_len(size)?;
                writer.commit()?;
                Ok(())
            }
            NodeKey::Lock(_) => Err(FsError::refused(
                "truncate",
                self.path_of(key),
                "session.next is the lock of a checkpoint in progress",
                libc::EPERM,
            )),
            NodeKey::View(_) | NodeKey::Child(..) => {
                let (parent, name) = self.parent_of_key(key)?;
                let path = self.path_of(key);
                let f = sys::openat(parent.as_fd(), &name, libc::O_WRONLY | libc::O_NOFOLLOW, 0)
                    .map_err(|e| FsError::io("truncate", &path, e))?;
                sys::ftruncate(f.as_fd(), size).map_err(|e| FsError::io("truncate", &path, e))
            }
            NodeKey::Root
            | NodeKey::LastSession
            | NodeKey::PendingLink(_)
            | NodeKey::Session(_) => Err(FsError::refused(
                "truncate",
                self.path_of(key),
                "a directory or link has no size to set",
                libc::EISDIR,
            )),
        }
    }

    /// The attributes `last-session` shows: a symlink whose target is the
    /// session's name.
    pub(super) fn last_session_attr(&self) -> FsResult<Attr> {
        let name = self.last_session_name()?.ok_or(FsError::NotFound)?;
        let st = self.stat_key(&NodeKey::LastSession)?;
        let mut attr = Attr::from_stat(LAST_SESSION, &st);
        attr.size = name.as_os_str().len() as u64;
        attr.perm = 0o777;
        Ok(attr)
    }

    /// The attributes of a pending root link (see `root`).
    pub(super) fn pending_link_attr(&self, name: &OsStr) -> FsResult<Attr> {
        let st = self.stat_key(&NodeKey::Root)?;
        let (ino, target_len) = {
            let mut nodes = self.nodes();
            let target_len = nodes
                .pending_links
                .get(name)
                .map(|t| t.as_os_str().len())
                .ok_or(FsError::NotFound)?;
            let ino = nodes
                .table
                .intern(NodeKey::PendingLink(name.to_os_string()), true);
            (ino, target_len)
        };
        let mut attr = Attr::from_stat(ino, &st);
        attr.kind = Kind::Symlink;
        attr.perm = 0o777;
        attr.size = target_len as u64;
        attr.nlink = 1;
        Ok(attr)
    }
}
