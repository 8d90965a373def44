//! Plain-file I/O (every file but `session` and the view, served by the
//! daemon), the passthrough backing file handed to the kernel, and the
//! disk-room probe that stands in for the write errors passthrough hides.
//!
//! Invariants:
//! - a plain file is opened beneath its session directory without
//!   following a symlink (`O_NOFOLLOW` on the last name, the parent
//!   resolved by `resolve`), and only with the flags the mount passes on;
//! - a file created through the mount is created by the caller's own
//!   filesystem identity (see `creds`), so it belongs to whom the disk
//!   gives it to;
//! - plain files are never passed through: concurrent opens of one inode
//!   would need one shared backing file, which a per-open descriptor cannot
//!   be; only `session` handles get a backing file (see `checkpoint`).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use super::attr::Attr;
use super::creds::AsCaller;
use super::handles::Handle;
use super::inode::NodeKey;
use super::{Caller, FsError, FsResult, Opened, SessionFs};
use crate::core::{SESSION_FILE, sys};

/// The open flags passed on to a plain file.
const PASSED_FLAGS: i32 = libc::O_ACCMODE | libc::O_APPEND | libc::O_TRUNC | libc::O_NONBLOCK;

/// The flag the kernel adds to its own open of a program it executes
/// (`__FMODE_EXEC` in the kernel's fcntl.h; libc has no name for it).
const FMODE_EXEC: i32 = 0o40;

impl SessionFs {
    /// Opens a plain file inside a session directory.
    ///
    /// `O_RDONLY|O_TRUNC` of a running program is refused with ETXTBSY
    /// here. The mount truncates at OPEN (`FUSE_ATOMIC_O_TRUNC`) and the
    /// kernel checks that the file is not being executed only after the
    /// OPEN: an open for writing it refuses before asking, but a read-only
    /// truncating one would have cut the program short under its process
    /// first.
    pub(super) fn open_file(&self, ino: u64, key: &NodeKey, flags: i32) -> FsResult<Opened> {
        if flags & libc::O_TRUNC != 0 && self.nodes().open_files.executing(ino) {
            return Err(FsError::refused(
                "open",
                self.path_of(key),
                "the file is a program being executed",
                libc::ETXTBSY,
            ));
        }
        let (dir, last) = self.parent_of_key(key)?;
        let fd = sys::openat(
            dir.as_fd(),
            &last,
            (flags & PASSED_FLAGS) | libc::O_NOFOLLOW,
            0,
        )
        .map_err(|e| FsError::io("open", self.path_of(key), e))?;
        let fh = self.insert_handle(Handle::File {
            file: File::from(fd),
            path: self.path_of(key),
        });
        let mut nodes = self.nodes();
        if flags & FMODE_EXEC != 0 {
            nodes.open_files.opened_to_execute(ino, fh);
        } else {
            nodes.open_files.opened(ino, fh);
        }
        Ok(Opened::served(fh))
    }

    /// Creates (exclusively) and opens a plain file, as the caller (see
    /// `creds`).
    pub(super) fn create_file(
        &self,
        key: &NodeKey,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(Attr, Opened)> {
        let (dir, last) = self.parent_of_key(key)?;
        let path = self.path_of(key);
        let fd = {
            let _as = AsCaller::enter(caller).map_err(|e| FsError::io("create", &path, e))?;
            sys::openat(
                dir.as_fd(),
                &last,
                (flags & PASSED_FLAGS) | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                mode & 0o7777,
            )
        }
        .map_err(|e| FsError::io("create", &path, e))?;
        let file = File::from(fd);
        let st = sys::fstat(file.as_fd()).map_err(|e| FsError::io("stat", self.path_of(key), e))?;
        let ino = self.nodes().table.intern(key.clone(), true);
        let fh = self.insert_handle(Handle::File {
            file,
            path: self.path_of(key),
        });
        self.nodes().open_files.opened(ino, fh);
        Ok((Attr::from_stat(ino, &st), Opened::served(fh)))
    }

    /// The backing file to hand the kernel for `file`, when the mount uses
    /// passthrough.
    pub(super) fn backing(&self, file: &File) -> FsResult<Option<File>> {
        if !self.passthrough() {
            return Ok(None);
        }
        file.try_clone()
            .map(Some)
            .map_err(|e| FsError::io("duplicate descriptor", self.repo.location(), e))
    }
}

pub(super) fn read(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> FsResult<usize> {
    sys::pread_full(file.as_fd(), buf, offset).map_err(|e| FsError::io("read", path, e))
}

pub(super) fn write(file: &File, path: &Path, data: &[u8], offset: u64) -> FsResult<()> {
    sys::pwrite_all(file.as_fd(), data, offset).map_err(|e| FsError::io("write", path, e))
}

pub(super) fn fsync(file: &File, path: &Path) -> FsResult<()> {
    sys::fsync(file.as_fd()).map_err(|e| FsError::io("fsync", path, e))
}

/// With passthrough, writes go to the backing file without the daemon
/// seeing them, so a write cut short by a full disk is invisible here.
/// Before such a file is committed, check that its filesystem still has
/// room for one more block past its end (allocated and given back at
/// once): when it has not, a write may have failed part-way, and the
/// partial checkpoint must not be committed.
///
/// When the daemon is root and the file is root's (no quota is charged to
/// another owner) and `fstatvfs` shows plenty of room even for unprivileged
/// users ([`ROOM_MARGIN`]), the test allocation would succeed too: it is
/// skipped, with its cost (a journal transaction, and a truncate that ext4
/// runs in full even when the size does not change).
pub(super) fn check_room(file: &File, dir: &Path) -> FsResult<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0
        && sys::fstat(file.as_fd()).is_ok_and(|st| st.st_uid == 0 && st.st_gid == 0)
        && let Ok(vfs) = sys::fstatvfs(file.as_fd())
        && u128::from(vfs.f_bavail) * u128::from(vfs.f_frsize) >= ROOM_MARGIN
    {
        return Ok(());
    }
    // The file is the writer's temporary: errors name the checkpoint it
    // is about to become.
    let path = dir.join(SESSION_FILE);
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
