//! The filesystem layer: sessions as directories, `session` as a file whose
//! writes commit atomically through the core. It owns the inode table and
//! the open handles and returns plain results; `crate::fuse` only turns
//! them into replies, so everything here is testable without a mount.
//!
//! Invariants:
//! - every path is resolved from the repository descriptor opened at mount
//!   time: a session directory with `O_NOFOLLOW`, anything inside it with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so no symlink is ever
//!   followed by the daemon and nothing outside the repository is reached;
//! - the root shows exactly the core's sessions plus `last-session` when the
//!   repository has a valid one;
//! - `session` changes only through the core: a write handle owns a
//!   [`CheckpointWriter`] (the lock) and a commit is the core's rename;
//!   readers hold the committed file they opened, so they see one whole
//!   version;
//! - a write handle whose writer died from a signal never commits.

pub mod error;
pub mod inode;
mod view;

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::core::{
    self, BeginOptions, CheckpointWriter, LAST_SESSION_LINK, Repository, SESSION_FILE,
    SESSION_NEXT_FILE, SessionName, Start, Storage, sys,
};

pub use error::{FsError, FsResult};
use inode::{InodeTable, LAST_SESSION, NodeKey, ROOT};

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
    fn from_stat(ino: u64, st: &libc::stat) -> Attr {
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

/// Who is asking (from the FUSE request).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// The result of an open: the handle, and the file the kernel may read
/// and write directly (FUSE passthrough) when the mount uses it.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    pub backing: Option<File>,
    /// The kernel's page cache for this file still holds this exact version.
    pub keep_cache: bool,
    /// Writes a checkpoint. Served by the daemon (without passthrough),
    /// its writes need not go through the kernel's page cache: no reader
    /// sees the checkpoint before it is committed, and a commit is a new
    /// inode for every later open.
    pub writes_checkpoint: bool,
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
    pub fn is_kept_by_kernel(&self) -> bool {
        self.name != "." && self.name != ".."
    }
}

/// The rest of an open directory's listing, borrowed from its handle.
#[derive(Debug)]
pub struct DirEntries {
    handle: Arc<Handle>,
    next: usize,
}

impl DirEntries {
    /// The next entry and the offset that follows it.
    pub fn next_entry(&mut self) -> Option<(u64, &DirEntry)> {
        let Handle::Dir(entries) = self.handle.as_ref() else {
            return None;
        };
        let e = entries.get(self.next)?;
        self.next += 1;
        Some((self.next as u64, e))
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

/// Mount-wide settings of the filesystem layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsConfig {
    pub read_only: bool,
}

/// What identifies one version of a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(st: &libc::stat) -> Stamp {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    fn of_file(file: &File) -> Option<Stamp> {
        sys::fstat(file.as_fd()).ok().map(|st| Stamp::of(&st))
    }

    /// The same data: size and mtime. The ctime also changes when the file
    /// is only renamed or unlinked (replaced by a newer checkpoint).
    fn same_data(&self, other: &Stamp) -> bool {
        self.size == other.size && self.mtime == other.mtime
    }
}

/// An open `session` file.
#[derive(Debug)]
struct CheckpointHandle {
    storage: Storage,
    /// The committed checkpoint this open sees (read-only opens).
    reader: Option<Arc<File>>,
    writable: bool,
    /// The checkpoint in progress; `None` after a commit until the next
    /// write starts another.
    writer: Option<CheckpointWriter>,
    /// Opened with `O_TRUNC`: committing an empty checkpoint is wanted even
    /// if nothing is written.
    truncate_pending: bool,
    /// Written through the daemon since the last commit.
    dirty: bool,
    /// The writer's file as it was at the last commit or at open; a
    /// different stamp means it was written (through passthrough).
    baseline: Option<Stamp>,
    passthrough: bool,
    caller: Caller,
    /// With passthrough, the file a commit renamed into place stays this
    /// handle's backing file: writes through another descriptor of the same
    /// open file after that commit land in it directly. Its stamp at the
    /// commit tells whether that happened, so they can be committed
    /// properly at the next flush, fsync or release.
    sealed: Option<(File, Option<Stamp>)>,
    /// A write into the checkpoint in progress failed (or, with
    /// passthrough, the disk was found full before a commit): the
    /// checkpoint was aborted, further writes fail, and the next flush
    /// reports this errno instead of committing a partial file.
    failed: Option<i32>,
}

impl CheckpointHandle {
    fn changed(&self) -> bool {
        let Some(writer) = &self.writer else {
            return false;
        };
        self.dirty || self.truncate_pending || Stamp::of_file(writer.file()) != self.baseline
    }
}

/// The inodes of `session` files. A lookup of `session` gets the inode of
/// the last lookup back only when the same process made that lookup,
/// nothing has the inode open, and the committed file is the same version
/// (so `stat` then `open`, as `cp` and `tar` do, see one inode); otherwise
/// a fresh inode, so every open version and every checkpoint being written
/// has a page cache and a passthrough backing file of its own (the kernel
/// wants one backing file for all passthrough opens of an inode), even
/// when two processes look it up at once.
#[derive(Debug, Default)]
struct CheckpointInodes {
    by_ino: HashMap<u64, CheckpointInode>,
    ino_of_fh: HashMap<u64, u64>,
}

#[derive(Debug, Default)]
struct CheckpointInode {
    /// The committed file when the inode was looked up (`None`: unknown).
    stamp: Option<Stamp>,
    /// The handles open on the inode, oldest first.
    handles: Vec<u64>,
    /// The process (thread) that looked it up last; 0: unknown.
    pid: u32,
}

impl CheckpointInodes {
    fn reusable(&self, ino: u64, stamp: &Stamp, pid: u32) -> bool {
        self.by_ino.get(&ino).is_some_and(|c| {
            pid != 0 && c.pid == pid && c.handles.is_empty() && c.stamp.as_ref() == Some(stamp)
        })
    }

    fn opened(&mut self, ino: u64, fh: u64) {
        self.by_ino.entry(ino).or_default().handles.push(fh);
        self.ino_of_fh.insert(fh, ino);
    }

    /// The handle is gone; returns its inode when nothing else has it open.
    fn closed(&mut self, fh: u64) -> Option<u64> {
        let ino = self.ino_of_fh.remove(&fh)?;
        let c = self.by_ino.get_mut(&ino)?;
        c.handles.retain(|&h| h != fh);
        c.handles.is_empty().then_some(ino)
    }
}

#[derive(Debug)]
enum Handle {
    Checkpoint(Box<Mutex<CheckpointHandle>>),
    File {
        file: File,
        path: PathBuf,
    },
    Dir(Vec<DirEntry>),
    /// An open of the decoded view `session.json` (see [`view`]).
    View(Arc<Vec<u8>>),
}

/// The filesystem.
#[derive(Debug)]
pub struct SessionFs {
    repo: Repository,
    repo_dir: OwnedFd,
    config: FsConfig,
    passthrough: AtomicBool,
    inodes: Mutex<InodeTable>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    /// Symlinks made in the root (by `ln -sfn X.session last-session`,
    /// which makes a temporary link and renames it): name → session.
    pending_links: Mutex<HashMap<OsString, SessionName>>,
    /// The version of each `session` file the page cache was last filled
    /// from (daemon-served reads only).
    cached_versions: Mutex<HashMap<u64, Stamp>>,
    /// The `session` inodes the kernel holds: which version each stands
    /// for and which handles are open on it.
    checkpoint_inodes: Mutex<CheckpointInodes>,
    /// Session directories found gone while the kernel may still cache
    /// them (see [`SessionFs::take_vanished`]).
    vanished: Mutex<Vec<OsString>>,
    /// What is known of each session's decoded view `session.json`.
    views: view::Views,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole mount down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// True when `pid` is a thread of a process being killed by a signal: its
/// `/proc/PID/stat` shows PF_EXITING (0x4) in field 9 and a signal number in
/// the low 7 bits of field 52 (`exit_code`). A normal exit shows
/// `status << 8` there.
///
/// The file is read on a helper thread, and a process whose file does not
/// answer within [`PROC_STAT_WAIT`] is taken as alive: on kernels whose
/// procfs takes `exec_update_lock` to show `/proc/PID/stat`, a process
/// inside `execve()` that is closing a close-on-exec descriptor of this
/// mount waits for this very flush while holding that lock, and a plain
/// read would deadlock both (the process stuck in D state for good). A
/// process in the middle of an exec is not dying.
pub fn dying_from_signal(pid: u32) -> bool {
    DyingCheck::ask(pid).answer()
}

/// A [`dying_from_signal`] question asked now and answered later: a flush
/// asks it before syncing the checkpoint and takes the answer just before
/// the rename, so the `/proc` read costs no time of its own.
pub struct DyingCheck {
    pid: u32,
    asked: Option<(ProcStatReader, std::sync::mpsc::Receiver<ProcStatAnswer>)>,
}

impl DyingCheck {
    pub fn ask(pid: u32) -> DyingCheck {
        let asked = if pid == 0 { None } else { proc_stat_ask(pid) };
        DyingCheck { pid, asked }
    }

    pub fn answer(self) -> bool {
        let pid = self.pid;
        let Some((worker, answer)) = self.asked else {
            return false;
        };
        match answer.recv_timeout(PROC_STAT_WAIT) {
            Ok(result) => {
                // The reader answered: it can take the next question.
                lock(&PROC_STAT_READERS).push(worker);
                match result {
                    Ok(stat) => parse_signal_death(&stat),
                    Err(_) => false,
                }
            }
            Err(_) => {
                // The reader stays stuck until the process gets on; dropping
                // its sender lets it exit once it does.
                log::debug!("/proc/{pid}/stat does not answer (the process is in execve): alive");
                false
            }
        }
    }
}

/// `/proc/PID/stat` in one read (the kernel makes the whole line at once;
/// it ends with a newline).
fn read_proc_stat(pid: u32) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = File::open(format!("/proc/{pid}/stat"))?;
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = file.read(&mut buf)?;
        data.extend_from_slice(&buf[..n]);
        if n == 0 || data.ends_with(b"\n") {
            return Ok(data);
        }
    }
}

type ProcStatAnswer = std::io::Result<Vec<u8>>;
type ProcStatJob = (u32, std::sync::mpsc::Sender<ProcStatAnswer>);
type ProcStatReader = std::sync::mpsc::Sender<ProcStatJob>;

/// Idle threads that read `/proc/PID/stat` for [`dying_from_signal`]: a
/// thread is reused for the next close instead of being started for each
/// one, and one that gets stuck is simply not given back.
static PROC_STAT_READERS: Mutex<Vec<std::sync::mpsc::Sender<ProcStatJob>>> = Mutex::new(Vec::new());

/// Hands `pid` to an idle reader (starting one if none is idle); returns the
/// reader and where its answer arrives.
fn proc_stat_ask(pid: u32) -> Option<(ProcStatReader, std::sync::mpsc::Receiver<ProcStatAnswer>)> {
    let (answer_tx, answer_rx) = std::sync::mpsc::channel();
    let mut job = (pid, answer_tx);
    loop {
        let idle = lock(&PROC_STAT_READERS).pop();
        let worker = match idle {
            Some(w) => w,
            None => {
                let (tx, rx) = std::sync::mpsc::channel::<ProcStatJob>();
                let spawned =
                    std::thread::Builder::new()
                        .name("proc-stat".into())
                        .spawn(move || {
                            while let Ok((pid, answer)) = rx.recv() {
                                let _ = answer.send(read_proc_stat(pid));
                            }
                        });
                if let Err(e) = spawned {
                    log::warn!(
                        "cannot check whether process {pid} is dying ({e}): taking it as alive"
                    );
                    return None;
                }
                tx
            }
        };
        match worker.send(job) {
            Ok(()) => return Some((worker, answer_rx)),
            // That reader is gone: try another.
            Err(std::sync::mpsc::SendError(j)) => job = j,
        }
    }
}

/// How long a flush waits for `/proc/PID/stat` of the closing process.
const PROC_STAT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

fn parse_signal_death(stat: &[u8]) -> bool {
    // The command name (field 2) may contain spaces and parentheses: the
    // fields after it start after the last ')'.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    let rest = String::from_utf8_lossy(&stat[close + 1..]);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let (Some(flags), Some(exit_code)) = (fields.get(9 - 3), fields.get(52 - 3)) else {
        return false;
    };
    let (Ok(flags), Ok(exit_code)) = (flags.parse::<u64>(), exit_code.parse::<u64>()) else {
        return false;
    };
    const PF_EXITING: u64 = 0x4;
    flags & PF_EXITING != 0 && exit_code & 0x7f != 0
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
        Ok(SessionFs {
            repo,
            repo_dir,
            config,
            passthrough: AtomicBool::new(false),
            inodes: Mutex::new(InodeTable::default()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            pending_links: Mutex::new(HashMap::new()),
            cached_versions: Mutex::new(HashMap::new()),
            checkpoint_inodes: Mutex::new(CheckpointInodes::default()),
            vanished: Mutex::new(Vec::new()),
            views: view::Views::default(),
        })
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Whether `open` hands the kernel a backing file (FUSE passthrough).
    pub fn set_passthrough(&self, on: bool) {
        self.passthrough.store(on, Ordering::Relaxed);
    }

    pub fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    fn repo_fd(&self) -> BorrowedFd<'_> {
        self.repo_dir.as_fd()
    }

    fn key(&self, ino: u64) -> FsResult<NodeKey> {
        lock(&self.inodes).key(ino).ok_or(FsError::NotFound)
    }

    fn path_of(&self, key: &NodeKey) -> PathBuf {
        let base = self.repo.location();
        match key {
            NodeKey::Root => base.to_path_buf(),
            NodeKey::LastSession => base.join(LAST_SESSION_LINK),
            NodeKey::Session(s) => base.join(s),
            NodeKey::Child(s, rel) => base.join(s).join(rel),
        }
    }

    fn storage(&self, session: &OsStr) -> FsResult<Storage> {
        let name = SessionName::new(session).map_err(|_| FsError::NotFound)?;
        Ok(self.repo.storage(name))
    }

    /// The session directory, opened without following a symlink.
    fn session_dir(&self, session: &OsStr) -> FsResult<OwnedFd> {
        if SessionName::new(session).is_err() {
            return Err(FsError::NotFound);
        }
        sys::open_subdir(self.repo_fd(), session).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENOTDIR) => FsError::NotFound,
            _ => FsError::io(
                "open session directory",
                self.repo.location().join(session),
                e,
            ),
        })
    }

    /// The directory holding `rel` inside a session, and `rel`'s last name.
    fn parent_of(&self, session: &OsStr, rel: &Path) -> FsResult<(OwnedFd, OsString)> {
        let dir = self.session_dir(session)?;
        let name = rel.file_name().ok_or(FsError::NotFound)?.to_os_string();
        match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => {
                let parent = sys::open_beneath(dir.as_fd(), p, libc::O_PATH | libc::O_DIRECTORY, 0)
                    .map_err(|e| match e.raw_os_error() {
                        Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR) => {
                            FsError::NotFound
                        }
                        _ => FsError::io(
                            "open directory",
                            self.repo.location().join(session).join(p),
                            e,
                        ),
                    })?;
                Ok((parent, name))
            }
            _ => Ok((dir, name)),
        }
    }

    /// A directory inside a session (or the session itself), opened for
    /// reading its entries.
    fn open_dir_key(&self, key: &NodeKey) -> FsResult<OwnedFd> {
        match key {
            NodeKey::Root => self
                .repo_dir
                .try_clone()
                .map_err(|e| FsError::io("open", self.repo.location(), e)),
            NodeKey::Session(s) => self.session_dir(s),
            NodeKey::Child(s, rel) => {
                let dir = self.session_dir(s)?;
                sys::open_beneath(dir.as_fd(), rel, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(
                    |e| match e.raw_os_error() {
                        Some(libc::ELOOP) | Some(libc::EXDEV) => FsError::NotFound,
                        _ => FsError::io("open directory", self.path_of(key), e),
                    },
                )
            }
            NodeKey::LastSession => Err(FsError::refused(
                "open",
                self.path_of(key),
                "not a directory",
                libc::ENOTDIR,
            )),
        }
    }

    fn is_checkpoint(key: &NodeKey) -> bool {
        matches!(key, NodeKey::Child(_, rel) if rel.as_os_str() == SESSION_FILE)
    }

    fn is_lock_file(key: &NodeKey) -> bool {
        matches!(key, NodeKey::Child(_, rel) if rel.as_os_str() == SESSION_NEXT_FILE)
    }

    fn stat_key(&self, key: &NodeKey) -> FsResult<libc::stat> {
        match key {
            NodeKey::Root => {
                sys::fstat(self.repo_fd()).map_err(|e| FsError::io("stat", self.path_of(key), e))
            }
            NodeKey::LastSession => sys::lstatat(self.repo_fd(), OsStr::new(LAST_SESSION_LINK))
                .map_err(|e| FsError::io("stat", self.path_of(key), e)),
            NodeKey::Session(s) => {
                if SessionName::new(s).is_err() {
                    return Err(FsError::NotFound);
                }
                let st = sys::lstatat(self.repo_fd(), s)
                    .map_err(|e| FsError::io("stat", self.path_of(key), e))?;
                if sys::is_dir(&st) {
                    Ok(st)
                } else {
                    Err(FsError::NotFound)
                }
            }
            NodeKey::Child(s, rel) => {
                let (parent, name) = self.parent_of(s, rel)?;
                match sys::lstatat(parent.as_fd(), &name) {
                    // A `session` that is not a regular file (a planted
                    // symlink) shows as an unreadable file: as a symlink,
                    // the kernel would follow it out of the repository.
                    // Opening it fails in the core; a write replaces it.
                    Ok(mut st) if Self::is_checkpoint(key) && !sys::is_reg(&st) => {
                        st.st_mode = libc::S_IFREG;
                        st.st_size = 0;
                        st.st_blocks = 0;
                        st.st_nlink = 1;
                        Ok(st)
                    }
                    Ok(st) => Ok(st),
                    // A session without a checkpoint shows an empty
                    // `session`, as the core loads it.
                    Err(e)
                        if e.raw_os_error() == Some(libc::ENOENT)
                            && rel.as_os_str() == SESSION_FILE =>
                    {
                        let mut st = sys::fstat(parent.as_fd())
                            .map_err(|e| FsError::io("stat", self.path_of(key), e))?;
                        st.st_mode = libc::S_IFREG | 0o644;
                        st.st_size = 0;
                        st.st_blocks = 0;
                        st.st_nlink = 1;
                        Ok(st)
                    }
                    // The decoded view of the checkpoint, when it decodes.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) && Self::is_view(key) => {
                        self.view_stat(s, parent.as_fd())?.ok_or(FsError::NotFound)
                    }
                    Err(e) => Err(FsError::io("stat", self.path_of(key), e)),
                }
            }
        }
    }

    /// The target `last-session` shows in the mount: the session's name.
    fn last_session_name(&self) -> FsResult<Option<SessionName>> {
        Ok(self
            .repo
            .last_session_in(self.repo_fd())?
            .map(|s| s.name().clone()))
    }

    fn last_session_attr(&self) -> FsResult<Attr> {
        let name = self.last_session_name()?.ok_or(FsError::NotFound)?;
        let st = self.stat_key(&NodeKey::LastSession)?;
        let mut attr = Attr::from_stat(LAST_SESSION, &st);
        attr.size = name.as_os_str().len() as u64;
        attr.perm = 0o777;
        Ok(attr)
    }

    fn attr_of(&self, ino: u64, key: &NodeKey) -> FsResult<Attr> {
        match key {
            NodeKey::Session(s) if s.as_bytes().starts_with(PENDING_PREFIX) => {
                self.pending_link_attr(OsStr::from_bytes(&s.as_bytes()[PENDING_PREFIX.len()..]))
            }
            NodeKey::LastSession => self.last_session_attr(),
            _ => Ok(Attr::from_stat(ino, &self.stat_key(key)?)),
        }
    }

    fn check_writable(&self, op: &'static str, key: &NodeKey) -> FsResult<()> {
        if self.config.read_only {
            Err(FsError::ReadOnly {
                op,
                path: self.path_of(key),
            })
        } else {
            Ok(())
        }
    }

    // ----- lookups and attributes -------------------------------------

    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        self.lookup_by(parent, name, 0)
    }

    /// A lookup made by process (thread) `pid` (0: unknown).
    pub fn lookup_by(&self, parent: u64, name: &OsStr, pid: u32) -> FsResult<Attr> {
        let pkey = self.key(parent)?;
        if pkey == NodeKey::Root && name == LAST_SESSION_LINK {
            return self.last_session_attr();
        }
        if pkey == NodeKey::Root && lock(&self.pending_links).contains_key(name) {
            return self.pending_link_attr(name);
        }
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        let st = self.stat_key(&key)?;
        let mut table = lock(&self.inodes);
        let ino = if Self::is_checkpoint(&key) {
            let stamp = Stamp::of(&st);
            let mut known = lock(&self.checkpoint_inodes);
            match table.find(&key) {
                Some(ino) if known.reusable(ino, &stamp, pid) => table.intern(key, true),
                _ => {
                    let ino = table.intern_fresh(key);
                    known.by_ino.insert(
                        ino,
                        CheckpointInode {
                            stamp: Some(stamp),
                            handles: Vec::new(),
                            pid,
                        },
                    );
                    ino
                }
            }
        } else {
            table.intern(key, true)
        };
        Ok(Attr::from_stat(ino, &st))
    }

    /// True when `ino` stands for a session directory (a child of the
    /// root), whose attributes the kernel may cache briefly.
    pub fn is_session_dir(&self, ino: u64) -> bool {
        matches!(lock(&self.inodes).key(ino), Some(NodeKey::Session(s)) if !s.as_bytes().starts_with(PENDING_PREFIX))
    }

    pub fn forget(&self, ino: u64, n: u64) {
        let mut table = lock(&self.inodes);
        table.forget(ino, n);
        if table.key(ino).is_none() {
            let mut known = lock(&self.checkpoint_inodes);
            if known.by_ino.get(&ino).is_some_and(|c| c.handles.is_empty()) {
                known.by_ino.remove(&ino);
            }
        }
    }

    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> FsResult<Attr> {
        // A `session` inode open for writing stands for the checkpoint being
        // written, one open for reading for the version it reads (fstat
        // reaches here without a handle).
        let fh = fh.or_else(|| {
            let handles = lock(&self.checkpoint_inodes)
                .by_ino
                .get(&ino)?
                .handles
                .clone();
            handles
                .iter()
                .rev()
                .find(|&&fh| {
                    self.handle(fh).is_some_and(
                        |h| matches!(h.as_ref(), Handle::Checkpoint(c) if lock(c).writer.is_some()),
                    )
                })
                .or(handles.first())
                .copied()
        });
        if let Some(fh) = fh
            && let Some(handle) = self.handle(fh)
            && let Handle::Checkpoint(h) = handle.as_ref()
        {
            let h = lock(h);
            if let Some(writer) = &h.writer {
                let st = sys::fstat(writer.file().as_fd())
                    .map_err(|e| FsError::io("stat", writer.storage().location(), e))?;
                return Ok(Attr::from_stat(ino, &st));
            }
            if let Some(reader) = &h.reader {
                let st = sys::fstat(reader.as_fd())
                    .map_err(|e| FsError::io("stat", h.storage.location().join(SESSION_FILE), e))?;
                return Ok(Attr::from_stat(ino, &st));
            }
        }
        let key = self.key(ino)?;
        self.attr_of(ino, &key)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<OsString> {
        let key = self.key(ino)?;
        match &key {
            NodeKey::LastSession => Ok(self
                .last_session_name()?
                .ok_or(FsError::NotFound)?
                .as_os_str()
                .to_os_string()),
            NodeKey::Child(s, rel) => {
                let (parent, name) = self.parent_of(s, rel)?;
                sys::readlinkat(parent.as_fd(), &name)
                    .map_err(|e| FsError::io("readlink", self.path_of(&key), e))
            }
            NodeKey::Session(s) if s.as_bytes().starts_with(PENDING_PREFIX) => {
                let name = OsStr::from_bytes(&s.as_bytes()[PENDING_PREFIX.len()..]);
                lock(&self.pending_links)
                    .get(name)
                    .map(|n| n.as_os_str().to_os_string())
                    .ok_or(FsError::NotFound)
            }
            NodeKey::Root | NodeKey::Session(_) => Err(FsError::refused(
                "readlink",
                self.path_of(&key),
                "not a symlink",
                libc::EINVAL,
            )),
        }
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
            self.truncate(ino, &key, fh, size, caller)?;
        }
        if set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime.is_some()
            || set.mtime.is_some()
        {
            let (dir, name) = match &key {
                NodeKey::Root | NodeKey::LastSession => {
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
                NodeKey::Child(s, rel) => self.parent_of(s, rel)?,
            };
            let path = self.path_of(&key);
            let st = sys::lstatat(dir.as_fd(), &name).map_err(|e| FsError::io("stat", &path, e))?;
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
        self.getattr(ino, fh)
    }

    fn truncate(
        &self,
        _ino: u64,
        key: &NodeKey,
        fh: Option<u64>,
        size: u64,
        caller: Caller,
    ) -> FsResult<()> {
        // Through an open handle: change what that handle is writing.
        if let Some(handle) = fh.and_then(|fh| self.handle(fh)) {
            match handle.as_ref() {
                Handle::Checkpoint(h) => {
                    let mut h = lock(h);
                    if h.writable {
                        if let Some(e) = h.failed {
                            return Err(failed_error(&h, e));
                        }
                        let writer = self.ensure_writer(&mut h)?;
                        if let Err(e) = writer.set_len(size) {
                            return Err(poison(&mut h, e.into()));
                        }
                        h.dirty = true;
                        return Ok(());
                    }
                }
                Handle::File { file, path } => {
                    return sys::ftruncate(file.as_fd(), size)
                        .map_err(|e| FsError::io("truncate", path, e));
                }
                Handle::Dir(_) | Handle::View(_) => {}
            }
        }
        match key {
            // `truncate -s N session`: a whole checkpoint of its own.
            k if Self::is_checkpoint(k) => {
                let NodeKey::Child(s, _) = k else {
                    return Err(FsError::NotFound);
                };
                let storage = self.storage(s)?;
                let start = if size == 0 {
                    Start::Empty
                } else {
                    Start::FromCurrent
                };
                let mut writer = storage.begin(BeginOptions {
                    start,
                    owner: Some((caller.uid, caller.gid)),
                })?;
                writer.set_len(size)?;
                writer.commit()?;
                Ok(())
            }
            k if Self::is_lock_file(k) => Err(FsError::refused(
                "truncate",
                self.path_of(k),
                "session.next is the lock of a checkpoint in progress",
                libc::EPERM,
            )),
            NodeKey::Child(s, rel) => {
                let (parent, name) = self.parent_of(s, rel)?;
                let path = self.path_of(key);
                let f = sys::openat(parent.as_fd(), &name, libc::O_WRONLY | libc::O_NOFOLLOW, 0)
                    .map_err(|e| FsError::io("truncate", &path, e))?;
                sys::ftruncate(f.as_fd(), size).map_err(|e| FsError::io("truncate", &path, e))
            }
            NodeKey::Root | NodeKey::LastSession | NodeKey::Session(_) => Err(FsError::refused(
                "truncate",
                self.path_of(key),
                "a directory or link has no size to set",
                libc::EISDIR,
            )),
        }
    }

    // ----- directories -------------------------------------------------

    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let key = self.key(ino)?;
        let mut entries = vec![
            DirEntry {
                ino,
                kind: Kind::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino: ROOT,
                kind: Kind::Directory,
                name: "..".into(),
            },
        ];
        if key == NodeKey::Root {
            if self.last_session_name()?.is_some() {
                entries.push(DirEntry {
                    ino: LAST_SESSION,
                    kind: Kind::Symlink,
                    name: LAST_SESSION_LINK.into(),
                });
            }
            let sessions = self.repo.list_in(self.repo_fd())?;
            let mut table = lock(&self.inodes);
            for s in sessions {
                let name = s.storage.name().as_os_str().to_os_string();
                let ino = table.intern(NodeKey::Session(name.clone()), false);
                entries.push(DirEntry {
                    ino,
                    kind: Kind::Directory,
                    name,
                });
            }
            // Session directories the kernel may still have cached although
            // they are gone: the listing and `stat` must agree.
            let listed: HashSet<&OsStr> = entries.iter().map(|e| e.name.as_os_str()).collect();
            let gone: Vec<OsString> = table
                .looked_up_sessions()
                .filter(|name| {
                    !listed.contains(name) && !name.as_bytes().starts_with(PENDING_PREFIX)
                })
                .map(OsStr::to_os_string)
                .collect();
            drop(table);
            if !gone.is_empty() {
                lock(&self.vanished).extend(gone);
            }
        } else {
            let dir = self.open_dir_key(&key)?;
            let names = sys::read_dir_names(dir.as_fd())
                .map_err(|e| FsError::io("read directory", self.path_of(&key), e))?;
            let mut has_checkpoint = false;
            let mut found = Vec::with_capacity(names.len());
            for name in names {
                let st = match sys::lstatat(dir.as_fd(), &name) {
                    Ok(st) => st,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(FsError::io("stat", self.path_of(&key).join(&name), e)),
                };
                if matches!(key, NodeKey::Session(_)) && name == SESSION_FILE {
                    has_checkpoint = true;
                    // Always a file in the mount (see stat_key).
                    found.push((name, Kind::File));
                    continue;
                }
                found.push((name, Attr::from_stat(0, &st).kind));
            }
            if matches!(key, NodeKey::Session(_)) && !has_checkpoint {
                found.push((SESSION_FILE.into(), Kind::File));
            }
            // The decoded view comes first, so that `rm -r` (which removes
            // in listing order) meets it while `session` still exists.
            if let NodeKey::Session(s) = &key
                && !found.iter().any(|(n, _)| n == crate::decode::VIEW_NAME)
                && self.view_listed(s, dir.as_fd())
            {
                found.insert(0, (crate::decode::VIEW_NAME.into(), Kind::File));
            }
            let mut table = lock(&self.inodes);
            for (name, kind) in found {
                let Some(child) = key.child(&name) else {
                    continue;
                };
                let ino = table.intern(child, false);
                entries.push(DirEntry { ino, kind, name });
            }
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, Arc::new(Handle::Dir(entries)));
        Ok(fh)
    }

    /// The entries of an open directory from `offset` on; each entry's
    /// offset for the next call is its index + 1. The directory's handle
    /// keeps them, so a listing is one snapshot however many calls it takes.
    pub fn readdir(&self, fh: u64, offset: u64) -> FsResult<DirEntries> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        if !matches!(handle.as_ref(), Handle::Dir(_)) {
            return Err(FsError::BadHandle);
        }
        Ok(DirEntries {
            handle,
            next: usize::try_from(offset).unwrap_or(usize::MAX),
        })
    }

    /// The attributes of a directory entry listed by [`SessionFs::readdir`],
    /// for a listing that hands the kernel the entries themselves
    /// (READDIRPLUS). Counts a lookup of the entry, except for `.` and `..`,
    /// which the kernel does not keep.
    pub fn entry_attr(&self, parent: u64, entry: &DirEntry) -> FsResult<Attr> {
        if !entry.is_kept_by_kernel() {
            return self.getattr(entry.ino, None);
        }
        self.lookup_by(parent, &entry.name, 0)
    }

    /// Session directories found gone since the kernel looked them up;
    /// their cached entries should be dropped.
    pub fn take_vanished(&self) -> Vec<OsString> {
        std::mem::take(&mut *lock(&self.vanished))
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.handles).remove(&fh);
    }

    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32, caller: Caller) -> FsResult<Attr> {
        let pkey = self.key(parent)?;
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("mkdir", &key)?;
        match &pkey {
            NodeKey::Root => {
                let sname = SessionName::new(name).map_err(|e| {
                    if e.errno() == libc::ENAMETOOLONG {
                        FsError::refused(
                            "mkdir",
                            self.path_of(&key),
                            "a session name is at most 255 bytes",
                            libc::ENAMETOOLONG,
                        )
                    } else {
                        FsError::refused(
                            "mkdir",
                            self.path_of(&key),
                            "only NAME.session directories can be made here (a session)",
                            libc::EINVAL,
                        )
                    }
                })?;
                sys::mkdirat(self.repo_fd(), name, mode & 0o7777)
                    .map_err(|e| FsError::io("create session", self.path_of(&key), e))?;
                let storage = self.repo.storage(sname);
                let made = (|| {
                    chown_new(self.repo_fd(), name, caller)
                        .map_err(|e| FsError::io("chown", self.path_of(&key), e))?;
                    storage.populate_well_known_dirs(None)?;
                    let dir = self.session_dir(name)?;
                    for wk in core::WELL_KNOWN_DIRS {
                        chown_new(dir.as_fd(), OsStr::new(wk), caller)
                            .map_err(|e| FsError::io("chown", self.path_of(&key).join(wk), e))?;
                    }
                    sys::fsync(self.repo_fd())
                        .map_err(|e| FsError::io("fsync", self.repo.location(), e))
                })();
                if let Err(e) = made {
                    // Nothing half-done: a session without its well-known
                    // directories is removed again.
                    let _ = sys::remove_tree_at(self.repo_fd(), name);
                    return Err(e);
                }
                log::info!("created session {}", storage.location().display());
            }
            NodeKey::Session(_) | NodeKey::Child(..) => {
                let NodeKey::Child(s, rel) = &key else {
                    return Err(FsError::NotFound);
                };
                let (dir, last) = self.parent_of(s, rel)?;
                sys::mkdirat(dir.as_fd(), &last, mode & 0o7777)
                    .map_err(|e| FsError::io("mkdir", self.path_of(&key), e))?;
                chown_new(dir.as_fd(), &last, caller)
                    .map_err(|e| FsError::io("chown", self.path_of(&key), e))?;
            }
            NodeKey::LastSession => return Err(FsError::NotFound),
        }
        let st = self.stat_key(&key)?;
        let ino = lock(&self.inodes).intern(key, true);
        Ok(Attr::from_stat(ino, &st))
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        let pkey = self.key(parent)?;
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("rmdir", &key)?;
        match &key {
            NodeKey::Session(s) => {
                if SessionName::new(s).is_err() {
                    return Err(FsError::NotFound);
                }
                sys::unlinkat(self.repo_fd(), s, true)
                    .map_err(|e| FsError::io("remove session", self.path_of(&key), e))?;
                log::info!("removed session {}", self.path_of(&key).display());
            }
            NodeKey::Child(s, rel) => {
                let (dir, last) = self.parent_of(s, rel)?;
                sys::unlinkat(dir.as_fd(), &last, true)
                    .map_err(|e| FsError::io("rmdir", self.path_of(&key), e))?;
            }
            NodeKey::Root | NodeKey::LastSession => return Err(FsError::NotFound),
        }
        lock(&self.inodes).detach(&key);
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        let pkey = self.key(parent)?;
        if pkey == NodeKey::Root {
            self.check_writable("unlink", &NodeKey::LastSession)?;
            if lock(&self.pending_links).remove(name).is_some() {
                return Ok(());
            }
            if name == LAST_SESSION_LINK {
                return sys::unlinkat(self.repo_fd(), name, false)
                    .map_err(|e| FsError::io("unlink", self.path_of(&NodeKey::LastSession), e));
            }
            return match self.stat_key(&NodeKey::Session(name.to_os_string())) {
                Ok(_) => Err(FsError::refused(
                    "unlink",
                    self.repo.location().join(name),
                    "a session is a directory (use rm -r)",
                    libc::EISDIR,
                )),
                Err(e) => Err(e),
            };
        }
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("unlink", &key)?;
        let NodeKey::Child(s, rel) = &key else {
            return Err(FsError::NotFound);
        };
        if Self::is_lock_file(&key) {
            // `rm session.next` breaks the lock, unless a live writer holds it.
            let storage = self.storage(s)?;
            let dir = self.session_dir(s)?;
            if !storage.break_lock_in(dir.as_fd(), false)? {
                return Err(FsError::NotFound);
            }
        } else {
            let (dir, last) = self.parent_of(s, rel)?;
            match sys::unlinkat(dir.as_fd(), &last, false) {
                Ok(()) => {}
                // A session without a checkpoint shows an empty `session`;
                // removing it (as `rm -r` does) is already done.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && Self::is_checkpoint(&key) => {}
                // Likewise the decoded view: `rm -r` of a session must work.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && Self::is_view(&key) => {}
                Err(e) => return Err(FsError::io("unlink", self.path_of(&key), e)),
            }
        }
        lock(&self.inodes).detach(&key);
        Ok(())
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        caller: Caller,
    ) -> FsResult<Attr> {
        let pkey = self.key(parent)?;
        if pkey == NodeKey::Root {
            self.check_writable("symlink", &NodeKey::LastSession)?;
            let session = self
                .session_of_link_target(target.as_os_str())
                .ok_or_else(|| {
                    FsError::refused(
                        "symlink",
                        self.repo.location().join(name),
                        "links in the root may only be last-session, pointing at a session",
                        libc::EPERM,
                    )
                })?;
            if name == LAST_SESSION_LINK {
                if self.last_session_name()?.is_some() || sys::lstatat(self.repo_fd(), name).is_ok()
                {
                    return Err(FsError::refused(
                        "symlink",
                        self.path_of(&NodeKey::LastSession),
                        "last-session exists",
                        libc::EEXIST,
                    ));
                }
                self.repo.set_last_session(&session)?;
                return self.last_session_attr();
            }
            if SessionName::new(name).is_ok() {
                return Err(FsError::refused(
                    "symlink",
                    self.repo.location().join(name),
                    "a session name cannot be a link",
                    libc::EPERM,
                ));
            }
            lock(&self.pending_links).insert(name.to_os_string(), session);
            return self.pending_link_attr(name);
        }
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("symlink", &key)?;
        let NodeKey::Child(s, rel) = &key else {
            return Err(FsError::NotFound);
        };
        if Self::is_checkpoint(&key) || Self::is_lock_file(&key) {
            return Err(FsError::refused(
                "symlink",
                self.path_of(&key),
                "session and session.next are always regular files",
                libc::EPERM,
            ));
        }
        let (dir, last) = self.parent_of(s, rel)?;
        sys::symlinkat(target.as_os_str(), dir.as_fd(), &last)
            .map_err(|e| FsError::io("symlink", self.path_of(&key), e))?;
        chown_new(dir.as_fd(), &last, caller)
            .map_err(|e| FsError::io("chown", self.path_of(&key), e))?;
        let st = self.stat_key(&key)?;
        let ino = lock(&self.inodes).intern(key, true);
        Ok(Attr::from_stat(ino, &st))
    }

    /// The session a link target made in the mount's root names: a session
    /// name, `./NAME`, or an absolute path into this repository.
    fn session_of_link_target(&self, target: &OsStr) -> Option<SessionName> {
        let t = Path::new(target);
        let name = if t.is_absolute() {
            return self.repo.session_name_of_target(target).filter(|n| {
                self.stat_key(&NodeKey::Session(n.as_os_str().to_os_string()))
                    .is_ok()
            });
        } else {
            let mut comps = t
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir));
            let first = comps.next()?;
            if comps.next().is_some() {
                return None;
            }
            SessionName::new(first.as_os_str()).ok()?
        };
        self.stat_key(&NodeKey::Session(name.as_os_str().to_os_string()))
            .ok()
            .map(|_| name)
    }

    fn pending_link_attr(&self, name: &OsStr) -> FsResult<Attr> {
        let target = lock(&self.pending_links)
            .get(name)
            .cloned()
            .ok_or(FsError::NotFound)?;
        let st = self.stat_key(&NodeKey::Root)?;
        let ino = lock(&self.inodes).intern(NodeKey::Session(pending_key(name)), true);
        let mut attr = Attr::from_stat(ino, &st);
        attr.kind = Kind::Symlink;
        attr.perm = 0o777;
        attr.size = target.as_os_str().len() as u64;
        attr.nlink = 1;
        Ok(attr)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        let (pkey, nkey) = (self.key(parent)?, self.key(newparent)?);
        let from = pkey.child(name).ok_or(FsError::NotFound)?;
        let to = nkey.child(newname).ok_or(FsError::NotFound)?;
        self.check_writable("rename", &from)?;
        let refuse = |reason: &'static str, errno: i32| {
            Err(FsError::refused(
                "rename",
                self.path_of(&from),
                reason,
                errno,
            ))
        };
        if pkey == NodeKey::Root || nkey == NodeKey::Root {
            // `ln -sfn X.session last-session` renames its temporary link.
            if pkey == NodeKey::Root && nkey == NodeKey::Root && newname == LAST_SESSION_LINK {
                let Some(session) = lock(&self.pending_links).remove(name) else {
                    return refuse(
                        "only a link to a session can become last-session",
                        libc::EPERM,
                    );
                };
                self.repo.set_last_session(&session)?;
                return Ok(());
            }
            return refuse("sessions and last-session cannot be renamed", libc::EPERM);
        }
        let (NodeKey::Child(fs_, frel), NodeKey::Child(ts, trel)) = (&from, &to) else {
            return refuse("a session directory cannot be moved", libc::EPERM);
        };
        if fs_ != ts {
            return refuse("files cannot move between sessions", libc::EXDEV);
        }
        if Self::is_lock_file(&from) || Self::is_lock_file(&to) {
            return refuse(
                "session.next is the lock of a checkpoint in progress",
                libc::EPERM,
            );
        }
        if self.is_virtual_view(&from) {
            return refuse(
                "session.json is a read-only view of the decoded checkpoint (copy it instead)",
                libc::EPERM,
            );
        }
        if Self::is_checkpoint(&from) {
            return refuse(
                "the checkpoint can only be replaced by a commit (copy it instead)",
                libc::EPERM,
            );
        }
        if Self::is_checkpoint(&to) {
            if flags != 0 {
                return refuse("only a plain rename can commit a checkpoint", libc::EINVAL);
            }
            if frel.parent().is_some_and(|p| !p.as_os_str().is_empty()) {
                return refuse(
                    "only a file directly in the session directory can become the checkpoint",
                    libc::EPERM,
                );
            }
            // The editor/mv pattern: an atomic commit through the core.
            let storage = self.storage(fs_)?;
            storage.commit_file(name)?;
            let mut table = lock(&self.inodes);
            table.detach(&to);
            table.detach(&from);
            return Ok(());
        }
        let (fdir, fname) = self.parent_of(fs_, frel)?;
        let (tdir, tname) = self.parent_of(ts, trel)?;
        let result = if flags == 0 {
            sys::renameat(fdir.as_fd(), &fname, tdir.as_fd(), &tname)
        } else if flags == libc::RENAME_NOREPLACE {
            sys::renameat_noreplace(fdir.as_fd(), &fname, tdir.as_fd(), &tname)
        } else {
            return refuse("only RENAME_NOREPLACE is supported", libc::EINVAL);
        };
        result.map_err(|e| FsError::io("rename", self.path_of(&from), e))?;
        lock(&self.inodes).rename(&from, &to);
        Ok(())
    }

    // ----- files --------------------------------------------------------

    fn handle(&self, fh: u64) -> Option<Arc<Handle>> {
        lock(&self.handles).get(&fh).cloned()
    }

    fn insert_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, Arc::new(handle));
        fh
    }

    fn backing(&self, file: &File) -> FsResult<Option<File>> {
        if !self.passthrough() {
            return Ok(None);
        }
        file.try_clone()
            .map(Some)
            .map_err(|e| FsError::io("duplicate descriptor", self.repo.location(), e))
    }

    pub fn open(&self, ino: u64, flags: i32, caller: Caller) -> FsResult<Opened> {
        let key = self.key(ino)?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writes || flags & libc::O_TRUNC != 0 {
            self.check_writable("open for writing", &key)?;
        }
        if Self::is_checkpoint(&key) {
            return self.open_checkpoint(ino, &key, flags, caller);
        }
        if Self::is_view(&key)
            && let Some(opened) = self.open_view(&key, flags)?
        {
            return Ok(opened);
        }
        match &key {
            NodeKey::Child(s, rel) => {
                if Self::is_lock_file(&key) && writes {
                    return Err(FsError::refused(
                        "open for writing",
                        self.path_of(&key),
                        "session.next is the lock of a checkpoint in progress; write session instead",
                        libc::EPERM,
                    ));
                }
                let (dir, last) = self.parent_of(s, rel)?;
                let keep = libc::O_ACCMODE | libc::O_APPEND | libc::O_TRUNC | libc::O_NONBLOCK;
                let fd = sys::openat(dir.as_fd(), &last, (flags & keep) | libc::O_NOFOLLOW, 0)
                    .map_err(|e| FsError::io("open", self.path_of(&key), e))?;
                // Other files are served by the daemon: concurrent opens of
                // one inode would need one shared backing file, which a
                // per-open descriptor cannot be.
                let file = File::from(fd);
                let fh = self.insert_handle(Handle::File {
                    file,
                    path: self.path_of(&key),
                });
                Ok(Opened {
                    fh,
                    backing: None,
                    keep_cache: false,
                    writes_checkpoint: false,
                })
            }
            NodeKey::Root | NodeKey::Session(_) => Err(FsError::refused(
                "open",
                self.path_of(&key),
                "is a directory",
                libc::EISDIR,
            )),
            NodeKey::LastSession => Err(FsError::refused(
                "open",
                self.path_of(&key),
                "last-session is a symlink",
                libc::ELOOP,
            )),
        }
    }

    fn open_checkpoint(
        &self,
        ino: u64,
        key: &NodeKey,
        flags: i32,
        caller: Caller,
    ) -> FsResult<Opened> {
        let NodeKey::Child(s, _) = key else {
            return Err(FsError::NotFound);
        };
        let storage = self.storage(s)?;
        let dir = self.session_dir(s)?;
        let passthrough = self.passthrough();
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            let reader = storage.open_checkpoint_in(dir.as_fd())?;
            let backing = match &reader {
                Some(f) => self.backing(f)?,
                None => None,
            };
            // The kernel refuses FOPEN_KEEP_CACHE with passthrough (whose
            // page cache is the backing file's own anyway).
            let keep_cache = match reader.as_ref().and_then(Stamp::of_file) {
                Some(_) if backing.is_some() => false,
                Some(stamp) => {
                    let mut versions = lock(&self.cached_versions);
                    versions.insert(ino, stamp) == Some(stamp)
                }
                None => false,
            };
            let fh =
                self.insert_handle(Handle::Checkpoint(Box::new(Mutex::new(CheckpointHandle {
                    storage,
                    reader: reader.map(Arc::new),
                    writable: false,
                    writer: None,
                    truncate_pending: false,
                    dirty: false,
                    baseline: None,
                    passthrough: backing.is_some(),
                    caller,
                    sealed: None,
                    failed: None,
                }))));
            lock(&self.checkpoint_inodes).opened(ino, fh);
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
        lock(&self.cached_versions).remove(&ino);
        let fh = self.insert_handle(Handle::Checkpoint(Box::new(Mutex::new(CheckpointHandle {
            storage,
            reader: None,
            writable: true,
            writer: Some(writer),
            truncate_pending: truncating,
            dirty: false,
            baseline,
            passthrough: passthrough && backing.is_some(),
            caller,
            sealed: None,
            failed: None,
        }))));
        lock(&self.checkpoint_inodes).opened(ino, fh);
        Ok(Opened {
            fh,
            backing,
            keep_cache: false,
            writes_checkpoint: true,
        })
    }

    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(Attr, Opened)> {
        let pkey = self.key(parent)?;
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("create", &key)?;
        let NodeKey::Child(s, rel) = &key else {
            return Err(FsError::refused(
                "create",
                self.path_of(&key),
                "only session directories live here (mkdir NAME.session)",
                libc::EPERM,
            ));
        };
        if Self::is_checkpoint(&key) {
            // `session` always exists in the mount; an exclusive create of it
            // is the only way here.
            return Err(FsError::refused(
                "create",
                self.path_of(&key),
                "session exists",
                libc::EEXIST,
            ));
        }
        if Self::is_lock_file(&key) {
            return Err(FsError::refused(
                "create",
                self.path_of(&key),
                "session.next is the lock of a checkpoint in progress; write session instead",
                libc::EPERM,
            ));
        }
        let (dir, last) = self.parent_of(s, rel)?;
        let keep = libc::O_ACCMODE | libc::O_APPEND | libc::O_TRUNC | libc::O_NONBLOCK;
        let fd = sys::openat(
            dir.as_fd(),
            &last,
            (flags & keep) | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode & 0o7777,
        )
        .map_err(|e| FsError::io("create", self.path_of(&key), e))?;
        if let Err(e) = chown_new(dir.as_fd(), &last, caller) {
            let _ = sys::unlinkat(dir.as_fd(), &last, false);
            return Err(FsError::io("chown", self.path_of(&key), e));
        }
        let file = File::from(fd);
        let st =
            sys::fstat(file.as_fd()).map_err(|e| FsError::io("stat", self.path_of(&key), e))?;
        let backing = None;
        let ino = lock(&self.inodes).intern(key.clone(), true);
        let fh = self.insert_handle(Handle::File {
            file,
            path: self.path_of(&key),
        });
        Ok((
            Attr::from_stat(ino, &st),
            Opened {
                fh,
                backing,
                keep_cache: false,
                writes_checkpoint: false,
            },
        ))
    }

    /// The writer of a writable checkpoint handle, starting the next
    /// checkpoint if the last one was committed.
    fn ensure_writer<'a>(&self, h: &'a mut CheckpointHandle) -> FsResult<&'a mut CheckpointWriter> {
        if h.writer.is_none() {
            let writer = h.storage.begin(BeginOptions {
                start: Start::FromCurrent,
                owner: Some((h.caller.uid, h.caller.gid)),
            })?;
            h.baseline = Stamp::of_file(writer.file());
            h.writer = Some(writer);
        }
        h.writer.as_mut().ok_or(FsError::BadHandle)
    }

    /// Reads up to `buf.len()` bytes at `offset` into `buf`; returns how
    /// many.
    pub fn read(&self, fh: u64, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        let n = match handle.as_ref() {
            Handle::Checkpoint(m) => {
                let h = lock(m);
                if let Some(writer) = &h.writer {
                    writer.read_at(buf, offset)?
                } else if let Some(reader) = h.reader.clone() {
                    // A committed file never changes: it is read without
                    // holding the handle, so the kernel's concurrent
                    // read-ahead requests are served in parallel.
                    drop(h);
                    sys::pread_full(reader.as_fd(), buf, offset).map_err(|e| {
                        FsError::io("read", lock(m).storage.location().join(SESSION_FILE), e)
                    })?
                } else if h.writable {
                    // Committed and not writing: read what was committed.
                    match h.storage.open_checkpoint()? {
                        Some(f) => sys::pread_full(f.as_fd(), buf, offset).map_err(|e| {
                            FsError::io("read", h.storage.location().join(SESSION_FILE), e)
                        })?,
                        None => 0,
                    }
                } else {
                    0
                }
            }
            Handle::File { file, path } => sys::pread_full(file.as_fd(), buf, offset)
                .map_err(|e| FsError::io("read", path, e))?,
            Handle::View(data) => view::read_view(data, buf, offset),
            Handle::Dir(_) => return Err(FsError::BadHandle),
        };
        Ok(n)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        match handle.as_ref() {
            Handle::Checkpoint(h) => {
                let mut h = lock(h);
                if !h.writable {
                    return Err(FsError::BadHandle);
                }
                if let Some(e) = h.failed {
                    return Err(failed_error(&h, e));
                }
                let writer = self.ensure_writer(&mut h)?;
                if let Err(e) = writer.write_at(data, offset) {
                    return Err(poison(&mut h, e.into()));
                }
                h.dirty = true;
            }
            Handle::File { file, path } => {
                sys::pwrite_all(file.as_fd(), data, offset)
                    .map_err(|e| FsError::io("write", path, e))?;
            }
            Handle::Dir(_) | Handle::View(_) => return Err(FsError::BadHandle),
        }
        Ok(data.len() as u32)
    }

    /// `close()` of one descriptor: commits what the handle wrote since the
    /// last commit, unless the closing process is dying from a signal.
    pub fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        let Handle::Checkpoint(h) = handle.as_ref() else {
            return Ok(());
        };
        let mut h = lock(h);
        if let Some(e) = h.failed.take() {
            return Err(failed_error(&h, e));
        }
        if h.writer.is_none() {
            // Only a passthrough handle that committed can have more to
            // commit; the /proc check is not free (see dying_from_signal).
            if h.sealed.is_none() || dying_from_signal(pid) {
                return Ok(());
            }
            return self.recommit_sealed(&mut h);
        }
        // One fstat tells whether anything was written since the last
        // commit (passthrough writes never reach the daemon).
        let written = h.dirty
            || Stamp::of_file(
                h.writer
                    .as_ref()
                    .map(|w| w.file())
                    .ok_or(FsError::BadHandle)?,
            ) != h.baseline;
        // Nothing written and no O_TRUNC: nothing to commit or discard
        // (release drops the lock of an untouched checkpoint).
        if !written && !h.truncate_pending {
            return Ok(());
        }
        if !written {
            // An O_TRUNC open closed before anything was written (the
            // shell's dup2-and-close of a redirection) commits nothing yet;
            // a dying writer's is discarded.
            if dying_from_signal(pid) {
                discard_dying(&mut h, pid)?;
            }
            return Ok(());
        }
        // Whether the writer is dying is answered while the data is synced.
        self.commit_handle(&mut h, Some(DyingCheck::ask(pid)))
    }

    /// Commits the handle's checkpoint; with `dying`, a writer found dying
    /// from a signal (asked before the sync, answered before the rename)
    /// has its checkpoint discarded instead.
    fn commit_handle(&self, h: &mut CheckpointHandle, dying: Option<DyingCheck>) -> FsResult<()> {
        if h.passthrough
            && let Some(writer) = &h.writer
            && let Err(e) = check_room(writer.file(), &writer.storage().location())
        {
            return Err(poison(h, e));
        }
        let Some(writer) = h.writer.take() else {
            return Ok(());
        };
        h.truncate_pending = false;
        h.dirty = false;
        let seal = if h.passthrough {
            writer.file().try_clone().ok()
        } else {
            None
        };
        let dying_pid = dying.as_ref().map_or(0, |d| d.pid);
        let committed = writer.commit_if(|| !dying.is_some_and(DyingCheck::answer))?;
        if !committed {
            log_discarded(dying_pid, h);
            return Ok(());
        }
        h.sealed = seal.map(|f| {
            let stamp = Stamp::of_file(&f);
            (f, stamp)
        });
        log::debug!("committed {}", h.storage.location().display());
        Ok(())
    }

    /// Commits, through the lock protocol, what a passthrough handle wrote
    /// into its already committed backing file (see `sealed`).
    fn recommit_sealed(&self, h: &mut CheckpointHandle) -> FsResult<()> {
        let Some((file, stamp)) = &h.sealed else {
            return Ok(());
        };
        // Only data written into it counts: once a newer checkpoint has
        // replaced it, its ctime changes too, and committing it again
        // would bring the old checkpoint back.
        let written = Stamp::of_file(file)
            .zip(*stamp)
            .is_some_and(|(now, then)| !now.same_data(&then));
        if !written {
            return Ok(());
        }
        log::warn!(
            "{}: written through another descriptor after a close committed it; committing those writes now",
            h.storage.location().join(SESSION_FILE).display()
        );
        let writer = h.storage.begin(BeginOptions {
            start: Start::Empty,
            owner: Some((h.caller.uid, h.caller.gid)),
        })?;
        let mut src = file;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(0))
            .map_err(|e| FsError::io("read", h.storage.location().join(SESSION_FILE), e))?;
        let mut dst = writer.file();
        std::io::copy(&mut src, &mut dst)
            .map_err(|e| FsError::io("copy", h.storage.location().join(SESSION_NEXT_FILE), e))?;
        writer.commit()?;
        let new_stamp = Stamp::of_file(file);
        if let Some(seal) = h.sealed.as_mut() {
            seal.1 = new_stamp;
        }
        Ok(())
    }

    /// `fsync()`: commits durably what was written so far. The handle keeps
    /// its lock and goes on writing into the same file (a passthrough
    /// backing file cannot change), so the commit is of a copy.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        match handle.as_ref() {
            Handle::Checkpoint(h) => {
                let mut h = lock(h);
                if let Some(e) = h.failed {
                    return Err(failed_error(&h, e));
                }
                if h.writer.is_none() {
                    return self.recommit_sealed(&mut h);
                }
                if !h.changed() {
                    return Ok(());
                }
                if h.passthrough {
                    let writer = h.writer.as_ref().ok_or(FsError::BadHandle)?;
                    if let Err(e) = check_room(writer.file(), &writer.storage().location()) {
                        return Err(poison(&mut h, e));
                    }
                    let writer = h.writer.as_ref().ok_or(FsError::BadHandle)?;
                    writer.commit_snapshot()?;
                    h.baseline = Stamp::of_file(writer.file());
                    h.dirty = false;
                    h.truncate_pending = false;
                    Ok(())
                } else {
                    self.commit_handle(&mut h, None)
                }
            }
            Handle::File { file, path } => {
                sys::fsync(file.as_fd()).map_err(|e| FsError::io("fsync", path, e))
            }
            Handle::Dir(_) | Handle::View(_) => Ok(()),
        }
    }

    /// The last descriptor is gone. A checkpoint still in progress is
    /// committed if it holds unflushed changes (`: > session`), else its
    /// lock is released.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Some(handle) = lock(&self.handles).remove(&fh) else {
            return Err(FsError::BadHandle);
        };
        let unused = lock(&self.checkpoint_inodes).closed(fh);
        // Forgotten by the kernel before this release was answered.
        if let Some(ino) = unused
            && lock(&self.inodes).key(ino).is_none()
        {
            lock(&self.checkpoint_inodes).by_ino.remove(&ino);
        }
        let Handle::Checkpoint(h) = handle.as_ref() else {
            return Ok(());
        };
        let mut h = lock(h);
        if h.writer.is_none() {
            return self.recommit_sealed(&mut h);
        }
        if h.changed() {
            return self.commit_handle(&mut h, None);
        }
        if let Some(writer) = h.writer.take() {
            writer.abort()?;
        }
        Ok(())
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

    /// Number of open handles (for tests and debugging).
    pub fn open_handles(&self) -> usize {
        lock(&self.handles).len()
    }
}

fn log_discarded(pid: u32, h: &CheckpointHandle) {
    log::warn!(
        "writer {pid} of {} was killed by a signal: its checkpoint is discarded",
        h.storage.location().display()
    );
}

/// Discards the checkpoint of a writer killed by a signal.
fn discard_dying(h: &mut CheckpointHandle, pid: u32) -> FsResult<()> {
    log_discarded(pid, h);
    h.truncate_pending = false;
    h.dirty = false;
    if let Some(writer) = h.writer.take() {
        writer.abort()?;
    }
    Ok(())
}

/// Aborts the checkpoint in progress of a handle whose write failed (its
/// file may hold a partial checkpoint) and remembers the errno for the next
/// flush, which reports it instead of committing; returns `err`.
fn poison(h: &mut CheckpointHandle, err: FsError) -> FsError {
    h.failed = Some(err.errno());
    h.dirty = false;
    h.truncate_pending = false;
    if let Some(writer) = h.writer.take()
        && let Err(e) = writer.abort()
    {
        log::warn!("cannot abort a failed checkpoint: {e}");
    }
    log::warn!(
        "{}: checkpoint aborted, it will not be committed: {err}",
        h.storage.location().join(SESSION_FILE).display()
    );
    err
}

/// The error a poisoned handle reports.
fn failed_error(h: &CheckpointHandle, errno: i32) -> FsError {
    FsError::io(
        "commit",
        h.storage.location().join(SESSION_FILE),
        std::io::Error::from_raw_os_error(errno),
    )
}

/// With passthrough, writes go to the backing file without the daemon
/// seeing them, so a write cut short by a full disk is invisible here.
/// Before such a file is committed, check that its filesystem still has
/// room for one more block past its end (allocated and given back at
/// once): when it has not, a write may have failed part-way, and the
/// partial checkpoint must not be committed.
///
/// When the daemon is root and the file is root's (no quota is charged to
/// another owner) and `fstatvfs` shows plenty of room even for unprivileged users
/// (`ROOM_MARGIN`), the test allocation would succeed too: it is skipped,
/// with its cost (a journal transaction, and a truncate that ext4 runs in
/// full even when the size does not change).
fn check_room(file: &File, dir: &Path) -> FsResult<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0
        && sys::fstat(file.as_fd()).is_ok_and(|st| st.st_uid == 0 && st.st_gid == 0)
        && let Ok(vfs) = sys::fstatvfs(file.as_fd())
        && u128::from(vfs.f_bavail) * u128::from(vfs.f_frsize) >= ROOM_MARGIN
    {
        return Ok(());
    }
    let path = dir.join(SESSION_NEXT_FILE);
    let st = sys::fstat(file.as_fd()).map_err(|e| FsError::io("stat", &path, e))?;
    let block = st.st_blksize.max(512);
    let end = (st.st_size + block - 1) / block * block;
    // SAFETY: `file` is an open descriptor; fallocate takes no pointers.
    let rc = unsafe {
        libc::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(file),
            libc::FALLOC_FL_KEEP_SIZE,
            end,
            block,
        )
    };
    if rc == 0 {
        // Truncating to the same size frees the blocks past the end.
        return sys::ftruncate(file.as_fd(), st.st_size as u64)
            .map_err(|e| FsError::io("truncate", &path, e));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Err(FsError::io("commit", path, e)),
        // A filesystem without fallocate: nothing to tell.
        _ => Ok(()),
    }
}

/// Free space above which [`check_room`] needs no allocation to tell.
const ROOM_MARGIN: u128 = 64 << 20;

/// Marks the inode keys of pending root links (a NUL never occurs in a
/// real name).
const PENDING_PREFIX: &[u8] = b"\0pending-link\0";

/// The inode key standing for a pending root link.
fn pending_key(name: &OsStr) -> OsString {
    let mut k = OsStr::from_bytes(PENDING_PREFIX).to_os_string();
    k.push(name);
    k
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

/// Gives a file made by the (root) daemon to the user who asked for it.
fn chown_new(dir: BorrowedFd<'_>, name: &OsStr, caller: Caller) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 || (caller.uid == 0 && caller.gid == 0) {
        return Ok(());
    }
    sys::lchownat(dir, name, caller.uid, caller.gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_deaths_are_told_from_normal_exits() {
        let line = |flags: u64, exit_code: u64| {
            let mut fields: Vec<String> = (3..=52).map(|_| "0".to_string()).collect();
            fields[9 - 3] = flags.to_string();
            fields[52 - 3] = exit_code.to_string();
            format!("1234 (my (odd) prog) {}", fields.join(" ")).into_bytes()
        };
        assert!(parse_signal_death(&line(0x4, 9)));
        assert!(parse_signal_death(&line(0x4 | 0x40, 15)));
        assert!(
            !parse_signal_death(&line(0x4, 1 << 8)),
            "exit(1) is a normal exit"
        );
        assert!(!parse_signal_death(&line(0x4, 0)));
        assert!(!parse_signal_death(&line(0x0, 9)), "not exiting");
        assert!(!parse_signal_death(b"garbage"));
    }

    fn fs_with_sessions(names: &[&str]) -> (tempfile::TempDir, SessionFs) {
        let dir = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        let fs =
            SessionFs::new(Repository::new(dir.path()), FsConfig { read_only: false }).unwrap();
        (dir, fs)
    }

    fn listing(fs: &SessionFs, ino: u64, offset: u64) -> Vec<(u64, OsString)> {
        let fh = fs.opendir(ino).unwrap();
        let mut entries = fs.readdir(fh, offset).unwrap();
        let mut out = Vec::new();
        while let Some((next, e)) = entries.next_entry() {
            out.push((next, e.name.clone()));
        }
        fs.releasedir(fh);
        out
    }

    #[test]
    fn a_listing_resumes_at_the_offset_it_gave() {
        let (_dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        let all = listing(&fs, ROOT, 0);
        let names: Vec<&OsStr> = all.iter().map(|(_, n)| n.as_os_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(&names[..2], [OsStr::new("."), OsStr::new("..")]);
        let (offset, _) = all[1];
        assert_eq!(listing(&fs, ROOT, offset), all[2..].to_vec());
        assert!(listing(&fs, ROOT, 4).is_empty());
    }

    #[test]
    fn a_listing_reports_looked_up_sessions_that_are_gone() {
        let (dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        let fh = fs.opendir(ROOT).unwrap();
        let mut entries = fs.readdir(fh, 0).unwrap();
        let mut looked_up = Vec::new();
        while let Some((_, e)) = entries.next_entry() {
            let a = fs.entry_attr(ROOT, e).unwrap();
            assert_eq!(a.ino, e.ino);
            looked_up.push(e.name.clone());
        }
        fs.releasedir(fh);
        assert!(fs.take_vanished().is_empty());
        std::fs::remove_dir(dir.path().join("a.session")).unwrap();
        listing(&fs, ROOT, 0);
        assert_eq!(fs.take_vanished(), vec![OsString::from("a.session")]);
        assert!(fs.take_vanished().is_empty(), "reported once per listing");
        // Once the kernel forgot it (after the invalidation), it is not
        // reported again; nor is a session forgotten before it went.
        assert!(looked_up.iter().any(|n| n == "a.session"));
        let a = lock(&fs.inodes)
            .find(&NodeKey::Session("a.session".into()))
            .unwrap();
        fs.forget(a, 1);
        let b = fs.lookup(ROOT, OsStr::new("b.session")).unwrap();
        fs.forget(b.ino, 2);
        std::fs::remove_dir(dir.path().join("b.session")).unwrap();
        listing(&fs, ROOT, 0);
        assert!(fs.take_vanished().is_empty());
    }

    #[test]
    fn listings_of_a_session_leave_no_inodes_behind() {
        let (dir, fs) = fs_with_sessions(&["a.session"]);
        std::fs::write(dir.path().join("a.session/session"), b"x").unwrap();
        let session = fs.lookup(ROOT, OsStr::new("a.session")).unwrap();
        let mut sizes = Vec::new();
        for _ in 0..20 {
            let fh = fs.opendir(session.ino).unwrap();
            let mut entries = fs.readdir(fh, 0).unwrap();
            let mut sent = Vec::new();
            while let Some((_, e)) = entries.next_entry() {
                if e.is_kept_by_kernel() {
                    sent.push(fs.entry_attr(session.ino, e).unwrap().ino);
                }
            }
            fs.releasedir(fh);
            // The kernel drops what it was sent.
            for ino in sent {
                fs.forget(ino, 1);
            }
            sizes.push(lock(&fs.inodes).len());
        }
        assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
    }

    #[test]
    fn a_living_process_is_not_dying() {
        assert!(!dying_from_signal(std::process::id()));
    }
}
