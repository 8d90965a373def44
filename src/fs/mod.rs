//! The filesystem layer: sessions as directories, `session` as a file whose
//! writes commit atomically through the core. It owns the inode table and
//! the open handles and returns plain results and errnos; the fuser adapter
//! (`crate::mount::adapter`) only turns them into replies, so everything
//! here is testable without a mount (see `tests/fs_layer.rs`).
//!
//! Layout, one concern per file:
//! - [`inode`]: node keys (typed: the checkpoint, the lock, the view, a
//!   pending root link are variants, never names compared by hand) and the
//!   inode table with what is known per inode (`inode::Nodes`);
//! - `resolve`: from a node key to a descriptor or a `stat`, beneath the
//!   repository descriptor;
//! - `root`: the root namespace (sessions, `last-session`, pending links);
//! - `dir`: lookups, listings and changes of names (the requests on a
//!   directory), and what is special inside a session directory;
//! - `attr`: attributes (`getattr`, `setattr`, `truncate`);
//! - `handles`: the handle table and the requests on an open handle, sent
//!   on to the handle's kind;
//! - `checkpoint`: an open `session`, the state machine of a write handle;
//! - `lockfile`: plainbox's protocol on `session.next` (its exclusive
//!   create, and its rename over `session`);
//! - `special`: hard links, fifos, sockets and device nodes;
//! - `creds`: acting as the caller for changes inside a session directory;
//! - `file`: plain files (daemon-served I/O), the passthrough backing file
//!   and the disk-room probe of passthrough writes;
//! - `view`: the decoded view `session.json`;
//! - `dying`: whether a closing writer is being killed by a signal;
//! - `listing`: directory listings without an open (no-opendir mode);
//! - `cache`: what the kernel may cache (TTLs, listings) and the lookups a
//!   listing with attributes (READDIRPLUS) hands it;
//! - `watch`: the directories watched with inotify, and what the kernel
//!   must forget when they change outside the mount;
//! - `error`: the layer's errors ([`FsError`]) and their errnos.
//!
//! Invariants:
//! - every path is resolved from the repository descriptor opened at mount
//!   time: a session directory with `O_NOFOLLOW`, anything inside it with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so no symlink is ever
//!   followed by the daemon and nothing outside the repository is reached;
//! - the root shows exactly the core's sessions plus `last-session` when the
//!   repository has a valid one;
//! - `session` changes only through the core: a write handle owns a
//!   [`CheckpointWriter`](crate::core::CheckpointWriter) (the lock) and a
//!   commit is the core's rename; readers hold the committed file they
//!   opened, so they see one whole version;
//! - a write handle whose writer died from a signal never commits.
//!
//! Lock order. [`SessionFs`] has three mutexes of its own (the handle
//! table, the nodes, the view cache) and leaves (below); besides, each
//! open `session` write
//! handle has one, each session's view slot one, each open `session.next`
//! one, and the `/proc` reader pool and the late commits one each:
//! 1. a write handle's state (`checkpoint::WriteHandle`), held for the
//!    whole of a request on that handle, commit I/O included;
//! 2. a view slot (`view`), held while one session's checkpoint decodes;
//! 3. the handle table (`handles`);
//! 4. the nodes (`inode::Nodes`: inode table, checkpoint inodes, pending
//!    links, vanished sessions);
//! 5. the `/proc` reader pool (`dying`), a leaf;
//! 6. whether the daemon holds an open `session.next`'s lock
//!    (`lockfile::LockFile`), a leaf held across one `fcntl` only;
//! 7. the marks of the late commits running (`late_commits`), a leaf: held
//!    for a list operation or while waiting on its condition variable,
//!    never across I/O;
//! 8. the watched directories (`watch`), a leaf held across one
//!    `inotify_add_watch` at most;
//! 9. the commits of this mount's writers (`own_commits`), two leaves
//!    never held together, for a map operation only.
//!
//! A lock may be taken while holding only locks above it in this list. In
//! practice the handle table and the nodes are held for map operations
//! only, never across I/O and never together: a request copies what it
//! needs out of one before it takes the other.

mod attr;
mod cache;
mod checkpoint;
mod creds;
mod dir;
mod dying;
mod error;
mod file;
mod handles;
pub mod inode;
mod iolog_view;
mod late_commits;
mod listing;
mod lockfile;
mod own_commits;
mod resolve;
mod root;
mod special;
mod view;
mod watch;

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::core::{self, Repository, sys};

pub use attr::{Attr, Kind, SetAttr, TimeSet};
pub use cache::Invalidation;
pub use error::{FsError, FsResult};
pub use handles::DirEntries;

/// Who is asking (from the FUSE request).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Caller {
    /// The daemon itself (root with no process): acts with the daemon's
    /// own rights.
    pub const ROOT: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 0,
    };
}

/// The result of an open: the handle, and the file the kernel may read
/// and write directly (FUSE passthrough) when the mount uses it.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    pub backing: Option<File>,
    /// The kernel's page cache for this file still holds this exact version.
    pub keep_cache: bool,
    /// Bypasses the kernel's page cache (FOPEN_DIRECT_IO): only an open of
    /// `session` that could not get an inode of its own version (a reopen
    /// made without a lookup, the kernel's retry of a refused open, a
    /// writer that found a newer commit under the lock): a writer sharing
    /// an inode whose pages readers use, or a reader of an inode whose size
    /// the kernel may keep as another version's.
    pub bypass_page_cache: bool,
}

impl Opened {
    /// An open served by the daemon, with no page cache kept.
    fn served(fh: u64) -> Opened {
        Opened {
            fh,
            backing: None,
            keep_cache: false,
            bypass_page_cache: false,
        }
    }
}

/// One directory entry.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: OsString,
}

impl DirEntry {
    /// Whether the kernel keeps this entry (and counts a lookup of it) when
    /// a listing hands it over with its attributes: all but `.` and `..`.
    pub(crate) fn is_kept_by_kernel(&self) -> bool {
        self.name != "." && self.name != ".."
    }
}

/// Mount-wide settings of the filesystem layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsConfig {
    pub read_only: bool,
}

/// What identifies one version of a file's content.
///
/// Kept for every `session` inode the kernel holds, so it is compact: the
/// times are nanoseconds since the epoch in one `i64` (years 1678 to
/// 2262; a time beyond saturates, and the inode number and the ctime the
/// kernel sets still tell such versions apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: i64,
    mtime_ns: i64,
    ctime_ns: i64,
}

/// A time of `stat` as nanoseconds since the epoch (saturating).
fn nanos(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl Stamp {
    fn of(st: &libc::stat) -> Stamp {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec),
        }
    }

    fn of_file(file: &File) -> Option<Stamp> {
        sys::fstat(file.as_fd()).ok().map(|st| Stamp::of(&st))
    }

    /// The same data: size and mtime. The ctime also changes when the file
    /// is only renamed or unlinked (replaced by a newer checkpoint).
    fn same_data(&self, other: &Stamp) -> bool {
        self.size == other.size && self.mtime_ns == other.mtime_ns
    }
}

/// The filesystem.
#[derive(Debug)]
pub struct SessionFs {
    repo: Repository,
    repo_dir: OwnedFd,
    config: FsConfig,
    passthrough: AtomicBool,
    /// The open handles (lock order 3).
    handles: Mutex<handles::HandleTable>,
    /// What is known of the inodes the kernel holds (lock order 4).
    nodes: Mutex<inode::Nodes>,
    /// What is known of each session's decoded view `session.json` (lock
    /// order 2, per session).
    views: view::Views,
    /// The network filesystem the repository is on ("NFS"…), where other
    /// machines change it: listings of the root then read a freshly opened
    /// directory, so the client revalidates what it cached.
    network: Option<&'static str>,
    /// The directories watched with inotify, once watching started (see
    /// `watch`; a leaf lock).
    watches: OnceLock<watch::Watches>,
    /// Listings read without an open, in progress (see `listing`; a leaf
    /// lock).
    listings: listing::Listings,
    /// The decoded sizes of io-log records (see `iolog_view`; a leaf lock).
    iolog_sizes: Mutex<iolog_view::RecordSizes>,
    /// The commits this mount's writers make, for the watch (a leaf lock).
    own_commits: Arc<own_commits::OwnCommits>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole mount down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SessionFs {
    /// Opens the repository (creating it if missing) and builds the
    /// filesystem over it.
    pub fn new(repo: Repository, config: FsConfig) -> core::Result<SessionFs> {
        let repo_dir = if config.read_only {
            repo.open_dir(core::Op::OpenRepository)?
        } else {
            repo.open_or_create_dir()?
        };
        let network = sys::network_filesystem(repo_dir.as_fd()).unwrap_or(None);
        if let Some(kind) = network {
            log::info!(
                "repository {} is on {kind}: other machines' changes are read afresh at each listing",
                repo.location().display()
            );
        }
        Ok(SessionFs {
            network,
            repo,
            repo_dir,
            config,
            passthrough: AtomicBool::new(false),
            handles: Mutex::new(handles::HandleTable::default()),
            nodes: Mutex::new(inode::Nodes::default()),
            views: view::Views::default(),
            watches: OnceLock::new(),
            listings: listing::Listings::default(),
            iolog_sizes: Mutex::new(Default::default()),
            own_commits: Arc::default(),
        })
    }

    /// The network filesystem the repository is on, if it is on one.
    pub fn network_filesystem(&self) -> Option<&'static str> {
        self.network
    }

    /// Whether `open` hands the kernel a backing file (FUSE passthrough).
    pub fn set_passthrough(&self, on: bool) {
        self.passthrough.store(on, Ordering::Relaxed);
    }

    fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    fn repo_fd(&self) -> BorrowedFd<'_> {
        self.repo_dir.as_fd()
    }

    fn nodes(&self) -> MutexGuard<'_, inode::Nodes> {
        lock(&self.nodes)
    }

    fn key(&self, ino: u64) -> FsResult<inode::NodeKey> {
        self.nodes().table.key(ino).ok_or(FsError::NotFound)
    }

    fn check_writable(&self, op: &'static str, key: &inode::NodeKey) -> FsResult<()> {
        if self.config.read_only {
            Err(FsError::ReadOnly {
                op,
                path: self.path_of(key),
            })
        } else {
            Ok(())
        }
    }

    /// fsync of a directory of the mount.
    pub fn fsyncdir(&self, ino: u64) -> FsResult<()> {
        let key = self.key(ino)?;
        let dir = self.open_dir_key(&key)?;
        sys::fsync(dir.as_fd()).map_err(|e| FsError::io("fsync", self.path_of(&key), e))
    }

    pub fn statfs(&self) -> FsResult<libc::statvfs> {
        sys::fstatvfs(self.repo_fd()).map_err(|e| FsError::io("statfs", self.repo.location(), e))
    }
}

/// The unit tests' filesystem over a fresh repository.
#[cfg(test)]
mod test_fixture {
    use super::{FsConfig, SessionFs};
    use crate::core::Repository;

    /// A writable filesystem over a new repository holding the session
    /// directories `names` (the directory lives as long as the `TempDir`).
    pub(super) fn fs_with_sessions(names: &[&str]) -> (tempfile::TempDir, SessionFs) {
        let dir = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        let fs =
            SessionFs::new(Repository::new(dir.path()), FsConfig { read_only: false }).unwrap();
        (dir, fs)
    }
}
