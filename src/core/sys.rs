//! Thin, safe wrappers over the `*at` system calls the core is built on.
//!
//! Invariants:
//! - every path argument here is a single name or a relative path resolved
//!   against a directory descriptor the caller owns; nothing here resolves
//!   an absolute path except [`open_dir_path`];
//! - every descriptor returned is an [`OwnedFd`] opened with `O_CLOEXEC`, so
//!   none leaks into child processes and each is closed exactly once;
//! - functions return the raw `io::Error`; callers attach the operation and
//!   the path (see `core::error`).

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens a directory by path (following symlinks in the path itself: the
/// repository location is the user's choice).
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let fd = check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just returned by open(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `name` relative to `dir` with `flags | O_CLOEXEC`.
pub fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: `dir` is a live descriptor borrowed for the call; `c` is a valid
    // C string; the mode is passed as the variadic third argument.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by openat(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Gives the unnamed file `file` (opened with `O_TMPFILE`) the name `name`
/// in `dir`.
pub fn link_unnamed(file: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: both descriptors are live for the call; the empty path with
    // AT_EMPTY_PATH names `file` itself.
    let direct = check(unsafe {
        libc::linkat(
            file.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    });
    match direct {
        Ok(_) => Ok(()),
        // Without CAP_DAC_READ_SEARCH (before Linux 6.10): through /proc.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPERM)) => {
            let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: valid C strings and a live descriptor for the call.
            check(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    proc_path.as_ptr(),
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            })
            .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Opens the directory `name` under `dir` without following a symlink.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn lstatat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, valid C string, and `st` is a writable stat.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// `fstat(fd)`.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and a writable stat buffer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &OsStr, remove_dir: bool) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = if remove_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) })?;
    Ok(())
}

pub fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid descriptors and C strings.
    check(unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            f.as_ptr(),
            to_dir.as_raw_fd(),
            t.as_ptr(),
        )
    })?;
    Ok(())
}

/// `mknodat(dir, name, mode, rdev)`.
pub fn mknodat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, rdev) })?;
    Ok(())
}

/// `linkat(from_dir, from, to_dir, to, 0)`: with no flag, a symlink is
/// linked itself, never followed.
pub fn linkat(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid descriptors and C strings.
    check(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            f.as_ptr(),
            to_dir.as_raw_fd(),
            t.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

pub fn symlinkat(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let (t, n) = (cstr(target)?, cstr(name)?);
    // SAFETY: valid descriptor and C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) })?;
    Ok(())
}

pub fn readlinkat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OsString> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid descriptor and C string; `buf` is writable for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid descriptor.
    check(unsafe { libc::fsync(fd.as_raw_fd()) })?;
    Ok(())
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid descriptor.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })?;
    Ok(())
}

/// What a non-blocking attempt at an exclusive lock found.
#[derive(Debug, PartialEq, Eq)]
pub enum TryLock {
    Acquired,
    HeldByOther,
}

fn whole_file_lock(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero bytes is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // Open file description locks require l_pid == 0.
    fl.l_pid = 0;
    fl
}

/// Takes an exclusive open file description lock on the whole file,
/// without waiting. Unlike `flock`, these locks are enforced by an NFS
/// server between machines; `fd` must be open for writing.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<TryLock> {
    let fl = whole_file_lock(libc::F_WRLCK as libc::c_short);
    // SAFETY: valid descriptor and a valid flock struct that outlives the call.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if ret == 0 {
        return Ok(TryLock::Acquired);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(TryLock::HeldByOther),
        _ => Err(err),
    }
}

/// Lets go of a lock taken with [`try_lock_exclusive`].
pub fn unlock(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fl = whole_file_lock(libc::F_UNLCK as libc::c_short);
    // SAFETY: valid descriptor and a valid flock struct that outlives the call.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) })?;
    Ok(())
}

/// Whether anyone (another open file description, process or machine)
/// holds a lock that would keep an exclusive lock of the whole file out.
/// Takes no lock itself, so it works on a descriptor opened read-only.
pub fn is_locked_by_other(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fl = whole_file_lock(libc::F_WRLCK as libc::c_short);
    // SAFETY: valid descriptor and a valid, writable flock struct.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Writes all of `buf` at `offset`, looping over short writes.
pub fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: valid descriptor; `buf` is readable for its length.
        let n = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        buf = &buf[n as usize..];
        offset += n as u64;
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes at `offset`, looping until the buffer is
/// full or end of file; returns how many bytes were read.
pub fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: valid descriptor; the tail of `buf` is writable.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf[done..].as_mut_ptr().cast(),
                buf.len() - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    Ok(done)
}

pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    // SAFETY: valid descriptor.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
    Ok(())
}

/// The names in the directory `dir` (without `.` and `..`), read through a
/// duplicate of the descriptor so `dir` itself stays usable.
pub fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let dup = dir.try_clone_to_owned()?;
    let raw: RawFd = std::os::fd::IntoRawFd::into_raw_fd(dup);
    // SAFETY: `raw` is a descriptor we own; fdopendir takes it over on success.
    let dirp = unsafe { libc::fdopendir(raw) };
    if dirp.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        unsafe { libc::close(raw) };
        return Err(err);
    }
    // SAFETY: `dirp` is a valid DIR* we own; rewind so a reused offset starts over.
    unsafe { libc::rewinddir(dirp) };
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; resetting it lets us tell end from error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `dirp` is valid until closedir below.
        let ent = unsafe { libc::readdir64(dirp) };
        if ent.is_null() {
            let err = io::Error::last_os_error();
            break if err.raw_os_error().unwrap_or(0) == 0 {
                Ok(())
            } else {
                Err(err)
            };
        }
        // SAFETY: readdir returned a valid dirent whose d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsStr::from_bytes(bytes).to_os_string());
        }
    };
    // SAFETY: `dirp` is valid and closed exactly once.
    unsafe { libc::closedir(dirp) };
    result.map(|()| names)
}

/// Removes `name` under `dir` and everything below it, never following a
/// symlink: links are unlinked, not traversed.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = lstatat(dir, name)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return unlinkat(dir, name, false);
    }
    let sub = open_subdir(dir, name)?;
    for child in read_dir_names(sub.as_fd())? {
        match remove_tree_at(sub.as_fd(), &child) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    drop(sub);
    unlinkat(dir, name, true)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_reg(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

pub fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

pub fn mtime(st: &libc::stat) -> std::time::SystemTime {
    system_time(st.st_mtime, st.st_mtime_nsec)
}

pub fn system_time(secs: i64, nsec: i64) -> std::time::SystemTime {
    use std::time::{Duration, UNIX_EPOCH};
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

/// Opens `rel` (possibly several components) beneath `dir`, refusing any
/// symlink on the way and any escape from `dir` (`openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`). With `O_PATH | O_NOFOLLOW` a
/// final symlink is returned as itself.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(rel.as_os_str())?;
    // SAFETY: an all-zero open_how is valid; the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid descriptor, C string, and a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat2 and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`; `u32::MAX` leaves
/// an id unchanged.
pub fn lchownat(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and C string.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            c.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// `fchmodat(dir, name, mode)` (never follows: callers pass non-symlinks).
pub fn chmodat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, 0) })?;
    Ok(())
}

/// `utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW)`.
pub fn utimensat(dir: BorrowedFd<'_>, name: &OsStr, times: &[libc::timespec; 2]) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor, C string and a two-element timespec array.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// `renameat2(..., RENAME_NOREPLACE)`.
pub fn renameat_noreplace(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid descriptors and C strings.
    check(unsafe {
        libc::renameat2(
            from_dir.as_raw_fd(),
            f.as_ptr(),
            to_dir.as_raw_fd(),
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    })?;
    Ok(())
}

/// `fstatvfs(fd)`.
pub fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and a writable buffer.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// This machine's host name, for names that must differ between machines
/// sharing a directory ("localhost" when it cannot be read).
pub fn host_name() -> OsString {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it when the name fits, and the result is cut at the first NUL.
    let ret = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ret != 0 || len == 0 {
        return OsString::from("localhost");
    }
    // A host name never holds '/', but keep the name a single component.
    let name: Vec<u8> = buf[..len]
        .iter()
        .map(|&b| if b == b'/' { b'_' } else { b })
        .collect();
    OsString::from_vec(name)
}

/// `statx(fd, "", AT_EMPTY_PATH)` asking for the fields in `mask` (see
/// statx(2): check `stx_mask` for which ones the filesystem filled).
pub fn fstatx(fd: BorrowedFd<'_>, mask: u32) -> io::Result<libc::statx> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, a NUL-terminated empty path and a
    // writable buffer.
    check(unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            mask,
            &mut stx,
        )
    })?;
    Ok(stx)
}

/// The kind of network filesystem `fd` is on, if it is one whose changes
/// made on other machines local inotify never sees.
pub fn network_filesystem(fd: BorrowedFd<'_>) -> io::Result<Option<&'static str>> {
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and a writable buffer.
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    // The f_type values of statfs(2).
    const NFS_SUPER_MAGIC: i64 = 0x6969;
    const SMB_SUPER_MAGIC: i64 = 0x517b;
    const CIFS_SUPER_MAGIC: i64 = 0xff53_4d42;
    const SMB2_SUPER_MAGIC: i64 = 0xfe53_4d42;
    const CEPH_SUPER_MAGIC: i64 = 0x00c3_6400;
    Ok(match st.f_type as i64 {
        NFS_SUPER_MAGIC => Some("NFS"),
        SMB_SUPER_MAGIC | CIFS_SUPER_MAGIC | SMB2_SUPER_MAGIC => Some("SMB"),
        CEPH_SUPER_MAGIC => Some("CephFS"),
        _ => None,
    })
}

/// A new inotify instance (`IN_CLOEXEC`).
pub fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 takes only flags; it returns a new descriptor
    // or -1.
    let fd = check(unsafe { libc::inotify_init1(libc::IN_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody
    // else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Watches the directory open as `dir` (by its descriptor, so no path is
/// resolved again and no symlink can redirect the watch); returns the
/// watch descriptor.
pub fn inotify_watch_dir(
    inotify: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    mask: u32,
) -> io::Result<i32> {
    let path = CString::new(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid inotify descriptor and a NUL-terminated path; the
    // magic link names `dir`, which stays open for the call.
    check(unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), mask) })
}

/// Stops the watch `wd`.
pub fn inotify_unwatch(inotify: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: plain integers; a stale `wd` just fails with EINVAL.
    check(unsafe { libc::inotify_rm_watch(inotify.as_raw_fd(), wd) })?;
    Ok(())
}

/// One read of a descriptor into `buf`, retried when interrupted.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One inotify event: the watch, what happened, and the name in the
/// watched directory it happened to (empty: the directory itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InotifyEvent<'a> {
    pub wd: i32,
    pub mask: u32,
    pub name: &'a OsStr,
}

/// The events in a buffer read from an inotify descriptor; a torn record
/// at the end is ignored, not misread.
pub fn inotify_events(mut buf: &[u8]) -> Vec<InotifyEvent<'_>> {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        // SAFETY: at least HEADER bytes remain; read_unaligned copes with
        // any alignment of the kernel's packed records.
        let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
        let end = HEADER + ev.len as usize;
        if end > buf.len() {
            break;
        }
        let name = &buf[HEADER..end];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        out.push(InotifyEvent {
            wd: ev.wd,
            mask: ev.mask,
            name: OsStr::from_bytes(name),
        });
        buf = &buf[end..];
    }
    out
}

/// An event record as the kernel lays it out (for tests of event readers).
#[doc(hidden)]
pub fn inotify_record(wd: i32, mask: u32, name: &str) -> Vec<u8> {
    let mut padded = name.as_bytes().to_vec();
    if !padded.is_empty() {
        padded.push(0);
        while !padded.len().is_multiple_of(16) {
            padded.push(0);
        }
    }
    let ev = libc::inotify_event {
        wd,
        mask,
        cookie: 0,
        len: padded.len() as u32,
    };
    let mut out = Vec::new();
    // SAFETY: inotify_event is plain old data; its bytes are readable.
    out.extend_from_slice(unsafe {
        std::slice::from_raw_parts(
            (&ev as *const libc::inotify_event).cast::<u8>(),
            std::mem::size_of::<libc::inotify_event>(),
        )
    });
    out.extend_from_slice(&padded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_nul_is_refused_before_any_system_call() {
        let e = cstr(OsStr::new("a\0b")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn mknod_and_link_pass_the_errno_of_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let d = open_dir_path(dir.path()).unwrap();
        mknodat(d.as_fd(), OsStr::new("fifo"), libc::S_IFIFO | 0o644, 0).unwrap();
        let st = lstatat(d.as_fd(), OsStr::new("fifo")).unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFIFO);
        let again = mknodat(d.as_fd(), OsStr::new("fifo"), libc::S_IFIFO | 0o644, 0);
        assert_eq!(again.unwrap_err().raw_os_error(), Some(libc::EEXIST));
        linkat(d.as_fd(), OsStr::new("fifo"), d.as_fd(), OsStr::new("hard")).unwrap();
        let st = lstatat(d.as_fd(), OsStr::new("hard")).unwrap();
        assert_eq!(st.st_nlink, 2);
        let missing = linkat(d.as_fd(), OsStr::new("none"), d.as_fd(), OsStr::new("x"));
        assert_eq!(missing.unwrap_err().raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn inotify_records_are_read_whole_and_a_torn_one_is_left() {
        let mut batch = inotify_record(1, libc::IN_CREATE, "new.session");
        batch.extend(inotify_record(2, libc::IN_ATTRIB, ""));
        let events = inotify_events(&batch);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].name, OsStr::new("new.session"));
        assert_eq!((events[1].wd, events[1].name), (2, OsStr::new("")));
        let mut torn = inotify_record(3, libc::IN_DELETE, "gone.session");
        torn.truncate(20);
        assert!(inotify_events(&torn).is_empty());
    }

    #[test]
    fn a_directory_is_watched_through_its_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let inotify = inotify_init().unwrap();
        let d = open_dir_path(dir.path()).unwrap();
        let wd = inotify_watch_dir(inotify.as_fd(), d.as_fd(), libc::IN_CREATE).unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let mut buf = [0u8; 4096];
        let n = read_some(inotify.as_fd(), &mut buf).unwrap();
        let events = inotify_events(&buf[..n]);
        assert_eq!(events[0].wd, wd);
        assert_eq!(events[0].name, OsStr::new("f"));
        inotify_unwatch(inotify.as_fd(), wd).unwrap();
    }
}
