//! Errors of the filesystem layer.
//!
//! Invariants: every variant maps to exactly one errno ([`FsError::errno`],
//! no wildcard arm) and names the path it is about, except the two that the
//! kernel asks about routinely (`NotFound`, `BadHandle`), which carry none
//! and are not logged as failures.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::core;

#[derive(Debug)]
pub enum FsError {
    /// The storage core failed.
    Core(core::Error),
    /// A system call on a passed-through file failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The filesystem refuses the operation (it would break the layout or
    /// a rule of the repository).
    Refused {
        op: &'static str,
        path: PathBuf,
        reason: &'static str,
        errno: i32,
    },
    /// The mount is read-only.
    ReadOnly { op: &'static str, path: PathBuf },
    /// No such entry (the kernel looks names up all the time).
    NotFound,
    /// A file handle or inode the filesystem does not know.
    BadHandle,
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> FsError {
        if source.raw_os_error() == Some(libc::ENOENT) {
            return FsError::NotFound;
        }
        FsError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn refused(
        op: &'static str,
        path: impl Into<PathBuf>,
        reason: &'static str,
        errno: i32,
    ) -> FsError {
        FsError::Refused {
            op,
            path: path.into(),
            reason,
            errno,
        }
    }

    pub fn errno(&self) -> i32 {
        match self {
            FsError::Core(e) => e.errno(),
            FsError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FsError::Refused { errno, .. } => *errno,
            FsError::ReadOnly { .. } => libc::EROFS,
            FsError::NotFound => libc::ENOENT,
            FsError::BadHandle => libc::EBADF,
        }
    }

    /// How loudly the adapter logs this error when it replies with it.
    pub fn log_level(&self) -> log::Level {
        match self {
            FsError::NotFound | FsError::BadHandle => log::Level::Debug,
            FsError::Refused { .. } | FsError::ReadOnly { .. } => log::Level::Info,
            FsError::Core(e) if e.is_locked() => log::Level::Info,
            FsError::Core(core::Error::NoSuchSession { .. }) => log::Level::Debug,
            FsError::Core(_) | FsError::Io { .. } => log::Level::Warn,
        }
    }
}

impl From<core::Error> for FsError {
    fn from(e: core::Error) -> Self {
        match e {
            core::Error::NoSuchSession { .. } => FsError::NotFound,
            other => FsError::Core(other),
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Core(e) => e.fmt(f),
            FsError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            FsError::Refused {
                op, path, reason, ..
            } => write!(f, "refused {op} {}: {reason}", path.display()),
            FsError::ReadOnly { op, path } => {
                write!(f, "refused {op} {}: the mount is read-only", path.display())
            }
            FsError::NotFound => f.write_str("no such file or directory"),
            FsError::BadHandle => f.write_str("unknown file handle"),
        }
    }
}
