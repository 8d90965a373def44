//! The fuser adapter: turns [`SessionFs`] results into FUSE replies, with
//! the TTLs and errnos the filesystem layer chose. It holds no filesystem
//! logic of its own, only the kernel-facing state: which passthrough
//! backing ids are open.
//!
//! Invariants: every error is logged here, once, at the level the error
//! asks for, with the operation; a passthrough backing id lives exactly as
//! long as its file handle (it is dropped at release).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    Request, TimeOrNow, WriteFlags,
};

use crate::fs::Invalidation;
use crate::fs::{Attr, Caller, FsError, Kind, Opened, SessionFs, SetAttr, TimeSet};

/// Largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;

/// A passthrough backing file registered with the kernel for one inode.
/// The kernel requires every concurrent passthrough open of an inode to use
/// the same backing, so a second open of the same file shares it.
struct InodeBacking {
    /// (device, inode) of the backing file.
    identity: (u64, u64),
    id: Arc<BackingId>,
    opens: usize,
}

#[derive(Default)]
struct Backings {
    by_ino: HashMap<u64, InodeBacking>,
    ino_of_fh: HashMap<u64, u64>,
}

pub struct Adapter {
    fs: Arc<SessionFs>,
    /// Ask the kernel for FUSE passthrough at init.
    want_passthrough: bool,
    backings: Mutex<Backings>,
    /// Names of session directories whose cached entries the kernel should
    /// drop. A thread of its own sends the notifications: the kernel takes
    /// the root's lock for them, which a listing in progress may hold while
    /// it waits for one of our replies.
    invalidations: Option<Mutex<Sender<Invalidation>>>,
    /// Answer OPENDIR with ENOSYS, so that the kernel opens directories
    /// without asking (and lists them without a handle, caching each
    /// listing): only where the watch tells the kernel of every change.
    without_opendir: bool,
}

impl Adapter {
    pub fn new(
        fs: Arc<SessionFs>,
        want_passthrough: bool,
        invalidations: Option<Sender<Invalidation>>,
        without_opendir: bool,
    ) -> Adapter {
        Adapter {
            fs,
            without_opendir,
            want_passthrough,
            backings: Mutex::new(Backings::default()),
            invalidations: invalidations.map(Mutex::new),
        }
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::NamedPipe => FileType::NamedPipe,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

/// Replies to an operation that returns nothing but success or an error.
fn reply_empty(op: &str, result: crate::fs::FsResult<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

fn reply_entry(fs: &SessionFs, op: &str, result: crate::fs::FsResult<Attr>, reply: ReplyEntry) {
    match result {
        Ok(a) => reply.entry(&fs.ttl(&a), &file_attr(&a), Generation(0)),
        Err(e) => reply.error(errno(op, &e)),
    }
}

/// Logs an error once, at its level, and gives its errno.
fn errno(op: &str, e: &FsError) -> Errno {
    let level = e.log_level();
    if log::log_enabled!(level) {
        log::log!(level, "{op}: {e}");
    }
    Errno::from_i32(e.errno())
}

fn time_set(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(t),
    })
}

/// What to do with an open that wants a passthrough backing file.
enum BackingChoice {
    Use(Arc<BackingId>),
    /// Another open of this inode uses a different backing file.
    Conflict,
    /// No passthrough for this open.
    None,
}

impl Adapter {
    fn backings(&self) -> MutexGuard<'_, Backings> {
        self.backings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or shares) the backing file of an open of `ino`.
    fn choose_backing(
        &self,
        op: &str,
        ino: u64,
        fh: u64,
        file: &std::fs::File,
        register: impl FnOnce(&std::fs::File) -> io::Result<BackingId>,
    ) -> BackingChoice {
        let identity = match crate::core::sys::fstat(file.as_fd()) {
            Ok(st) => (st.st_dev, st.st_ino),
            Err(e) => {
                log::warn!("{op}: cannot stat backing file ({e}); serving from the daemon");
                return BackingChoice::None;
            }
        };
        let mut b = self.backings();
        if let Some(existing) = b.by_ino.get_mut(&ino) {
            if existing.identity != identity {
                return BackingChoice::Conflict;
            }
            existing.opens += 1;
            let id = existing.id.clone();
            b.ino_of_fh.insert(fh, ino);
            return BackingChoice::Use(id);
        }
        match register(file) {
            Ok(id) => {
                let id = Arc::new(id);
                b.by_ino.insert(
                    ino,
                    InodeBacking {
                        identity,
                        id: id.clone(),
                        opens: 1,
                    },
                );
                b.ino_of_fh.insert(fh, ino);
                BackingChoice::Use(id)
            }
            Err(e) => {
                log::warn!("{op}: passthrough refused ({e}); serving this file from the daemon");
                BackingChoice::None
            }
        }
    }

    fn reply_open(&self, op: &str, ino: u64, opened: Opened, reply: ReplyOpen) {
        let mut flags = FopenFlags::empty();
        if opened.keep_cache {
            flags |= FopenFlags::FOPEN_KEEP_CACHE;
        }
        if self.fs.direct_io(opened.fh) {
            flags |= FopenFlags::FOPEN_DIRECT_IO;
        }
        if let Some(file) = &opened.backing {
            match self.choose_backing(op, ino, opened.fh, file, |f| reply.open_backing(f)) {
                BackingChoice::Use(id) => {
                    // The kernel refuses KEEP_CACHE on a passthrough open.
                    flags.remove(FopenFlags::FOPEN_KEEP_CACHE);
                    reply.opened_passthrough(FileHandle(opened.fh), flags, &id);
                    return;
                }
                BackingChoice::Conflict => {
                    if let Err(e) = self.fs.release(opened.fh) {
                        errno(op, &e);
                    }
                    log::info!(
                        "{op}: refused: the file is open as another version through the same descriptor"
                    );
                    reply.error(Errno::EBUSY);
                    return;
                }
                BackingChoice::None => {}
            }
        }
        if opened.bypass_page_cache {
            // Served by the daemon, whatever the kernel's size of the inode.
            flags |= FopenFlags::FOPEN_DIRECT_IO;
        }
        reply.opened(FileHandle(opened.fh), flags);
    }

    /// Asks the kernel to drop the cached entries of session directories
    /// found gone.
    fn invalidate_vanished(&self) {
        let gone = self.fs.take_vanished();
        for name in gone {
            self.invalidate(Invalidation::Entry {
                parent: crate::fs::inode::ROOT,
                name,
            });
        }
    }

    fn invalidate(&self, inv: Invalidation) {
        if let Some(tx) = &self.invalidations {
            let tx = tx.lock().unwrap_or_else(|p| p.into_inner());
            let _ = tx.send(inv);
        }
    }

    /// After a listing without an open (which the kernel caches): the
    /// root's may have found sessions gone; the root's, and a directory's
    /// that is not watched, must not stay cached (see
    /// [`SessionFs::listing_cacheable`]).
    fn listed_without_open(&self, ino: u64, offset: u64) {
        if ino == crate::fs::inode::ROOT && offset == 0 {
            self.invalidate_vanished();
        }
        if !self.fs.listing_cacheable(ino) {
            self.invalidate(Invalidation::Contents(ino));
        }
    }

    /// The handle is closed: its inode's backing file goes with the last
    /// open.
    fn forget_backing(&self, fh: u64) {
        let mut b = self.backings();
        let Some(ino) = b.ino_of_fh.remove(&fh) else {
            return;
        };
        if let Some(entry) = b.by_ino.get_mut(&ino) {
            entry.opens -= 1;
            if entry.opens == 0 {
                b.by_ino.remove(&ino);
            }
        }
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        // Checkpoint writers served by the daemon bypass the page cache;
        // mmap of them still works.
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        let mut passthrough = false;
        if self.want_passthrough {
            match config.add_capabilities(InitFlags::FUSE_PASSTHROUGH) {
                Ok(()) => match config.set_max_stack_depth(1) {
                    Ok(_) => passthrough = true,
                    Err(_) => log::info!("passthrough unavailable: stacking depth refused"),
                },
                Err(_) => log::info!("passthrough unavailable: the kernel does not offer it"),
            }
        }
        self.fs.set_passthrough(passthrough);
        log::info!(
            "session file I/O: {}",
            if passthrough {
                "FUSE passthrough to the backing files"
            } else {
                "served by the daemon"
            }
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(
            &self.fs,
            "lookup",
            self.fs.lookup_by(parent.0, name, req.pid()),
            reply,
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(a) => reply.attr(&self.fs.ttl(&a), &file_attr(&a)),
            Err(e) => reply.error(errno("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: time_set(atime),
            mtime: time_set(mtime),
        };
        match self.fs.setattr(ino.0, fh.map(|f| f.0), set, caller(req)) {
            Ok(a) => reply.attr(&self.fs.ttl(&a), &file_attr(&a)),
            Err(e) => reply.error(errno("setattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        use std::os::unix::ffi::OsStrExt;
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(errno("readlink", &e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(
            &self.fs,
            "mkdir",
            self.fs.mkdir(parent.0, name, mode & !umask, caller(req)),
            reply,
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // The file type bits are not the umask's to clear.
        let mode = mode & !(umask & 0o7777);
        reply_entry(
            &self.fs,
            "mknod",
            self.fs
                .mknod(parent.0, name, mode, u64::from(rdev), caller(req)),
            reply,
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(
            &self.fs,
            "link",
            self.fs.link(ino.0, newparent.0, newname, caller(req)),
            reply,
        );
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            "unlink",
            self.fs.unlink_by(parent.0, name, caller(req)),
            reply,
        );
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            "rmdir",
            self.fs.rmdir_by(parent.0, name, caller(req)),
            reply,
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        reply_entry(
            &self.fs,
            "symlink",
            self.fs.symlink(parent.0, link_name, target, caller(req)),
            reply,
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.fs.rename_by(
            parent.0,
            name,
            newparent.0,
            newname,
            flags.bits(),
            caller(req),
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("rename", &e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open(ino.0, flags.0, caller(req)) {
            Ok(opened) => self.reply_open("open", ino.0, opened, reply),
            Err(e) => reply.error(errno("open", &e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .fs
            .create(parent.0, name, mode & !umask, flags, caller(req))
        {
            Ok((attr, opened)) => {
                let mut fopen = FopenFlags::empty();
                if opened.keep_cache {
                    fopen |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                reply.created(
                    &self.fs.ttl(&attr),
                    &file_attr(&attr),
                    Generation(0),
                    FileHandle(opened.fh),
                    fopen,
                );
            }
            Err(e) => reply.error(errno("create", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // One buffer per serving thread, reused by every read it answers:
        // no allocation, zeroing and page faults of a fresh buffer of up to
        // 1 MiB per request (`reply.data` writes straight from the slice).
        thread_local! {
            static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        READ_BUF.with_borrow_mut(|buf| {
            let size = size as usize;
            if buf.len() < size {
                buf.resize(size, 0);
            }
            match self.fs.read(fh.0, offset, &mut buf[..size]) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(errno("read", &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno("write", &e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty("close (commit)", self.fs.flush(fh.0, req.pid()), reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty("fsync (commit)", self.fs.fsync(fh.0), reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.forget_backing(fh.0);
        reply_empty("release", self.fs.release(fh.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.without_opendir {
            // From now on the kernel opens directories by itself.
            reply.error(Errno::ENOSYS);
            return;
        }
        match self.fs.opendir(ino.0) {
            Ok(fh) => {
                let flags = if self.fs.listing_cacheable(ino.0) {
                    // Kept between opens: the watch drops it at each change.
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags);
                self.invalidate_vanished();
            }
            Err(e) => reply.error(errno("opendir", &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listed = self.fs.readdirplus(ino.0, fh.0, offset, |next, e, a| {
            reply.add(
                INodeNo(a.ino),
                next,
                &e.name,
                &self.fs.ttl(a),
                &file_attr(a),
                Generation(0),
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("readdir", &e)),
        }
        if fh.0 == 0 {
            self.listed_without_open(ino.0, offset);
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = if fh.0 == 0 {
            self.fs.readdir_unopened(ino.0, offset)
        } else {
            self.fs.readdir(fh.0, offset)
        };
        if fh.0 == 0 {
            self.listed_without_open(ino.0, offset);
        }
        match listed {
            Ok(mut entries) => {
                while let Some((next, e)) = entries.next_entry() {
                    if reply.add(INodeNo(e.ino), next, file_type(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno("readdir", &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty("fsyncdir", self.fs.fsyncdir(_ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno("statfs", &e)),
        }
    }
}
