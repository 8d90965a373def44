//! Errors of the filesystem layer, and the errno the mount replies with for
//! each: the core reports what went wrong ([`core::Error`]), this layer
//! decides what the kernel is told.
//!
//! Invariants: every variant of [`FsError`] and of [`core::Error`] maps to
//! exactly one errno ([`FsError::errno`], [`core_errno`]), with no wildcard
//! arm, so a new error cannot be added without deciding how the mount
//! reports it; an I/O error reports its own errno (EIO when it has none).
//! Every variant names the path it is about, except the two that the
//! kernel asks about routinely (`NotFound`, `BadHandle`), which carry none
//! and are not logged as failures.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::core::{self, NameProblem};

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
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> FsError {
        if source.raw_os_error() == Some(libc::ENOENT) {
            return FsError::NotFound;
        }
        FsError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn refused(
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
            FsError::Core(e) => core_errno(e),
            FsError::Io { source, .. } => io_errno(source),
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

/// The errno of a failed system call; EIO for an error made up without
/// one (a short read, a decode failure).
fn io_errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The errno the mount reports for an error of the core.
fn core_errno(e: &core::Error) -> i32 {
    match e {
        core::Error::Io { source, .. } => io_errno(source),
        // A checkpoint in progress (or a stale lock), a lock held by a live
        // writer, a lock broken under the writer: all "busy".
        core::Error::Locked { .. } => libc::EBUSY,
        core::Error::LockHeld { .. } => libc::EBUSY,
        core::Error::LockLost { .. } => libc::EBUSY,
        // Committed but maybe not durable: the close or fsync fails with
        // the directory fsync's errno, so the writer knows.
        core::Error::NotDurable { source, .. } => io_errno(source),
        core::Error::NoSuchSession { .. } => libc::ENOENT,
        core::Error::InvalidName { problem, .. } => match problem {
            NameProblem::TooLong => libc::ENAMETOOLONG,
            NameProblem::Empty
            | NameProblem::HasSlash
            | NameProblem::HasNul
            | NameProblem::DotOrDotDot
            | NameProblem::Hidden
            | NameProblem::NoSessionSuffix => libc::EINVAL,
        },
        core::Error::NotARepository { .. } => libc::ENOTDIR,
        // What the NFS client itself answers for the open file.
        core::Error::OpenOnNfsClient { .. } => libc::EBUSY,
        core::Error::UnexpectedFileType { .. } => libc::EINVAL,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> PathBuf {
        PathBuf::from("/repo/s.session/session.next")
    }

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn core_errors_map_to_the_errno_the_mount_replies() {
        let cases = [
            (
                core::Error::io(core::Op::WriteCheckpoint, path(), os(libc::ENOSPC)),
                libc::ENOSPC,
            ),
            (
                core::Error::io(core::Op::Stat, path(), io::Error::other("short")),
                libc::EIO,
            ),
            (core::Error::Locked { path: path() }, libc::EBUSY),
            (core::Error::LockHeld { path: path() }, libc::EBUSY),
            (core::Error::LockLost { path: path() }, libc::EBUSY),
            (
                core::Error::NotDurable {
                    path: path(),
                    source: os(libc::EIO),
                },
                libc::EIO,
            ),
            (
                core::Error::InvalidName {
                    name: "x".into(),
                    problem: NameProblem::TooLong,
                },
                libc::ENAMETOOLONG,
            ),
            (
                core::Error::InvalidName {
                    name: "x".into(),
                    problem: NameProblem::Hidden,
                },
                libc::EINVAL,
            ),
            (core::Error::NotARepository { path: path() }, libc::ENOTDIR),
            (
                core::Error::OpenOnNfsClient {
                    path: path(),
                    file: ".nfs0000000000b6f2a900000001".into(),
                },
                libc::EBUSY,
            ),
            (
                core::Error::UnexpectedFileType {
                    path: path(),
                    expected: "a file",
                },
                libc::EINVAL,
            ),
        ];
        for (e, errno) in cases {
            let shown = e.to_string();
            assert_eq!(FsError::from(e).errno(), errno, "{shown}");
        }
    }

    #[test]
    fn a_missing_session_is_a_plain_not_found() {
        let e = FsError::from(core::Error::NoSuchSession { path: path() });
        assert!(matches!(e, FsError::NotFound));
        assert_eq!(e.errno(), libc::ENOENT);
        assert_eq!(e.log_level(), log::Level::Debug);
        assert_eq!(
            core_errno(&core::Error::NoSuchSession { path: path() }),
            libc::ENOENT
        );
    }

    #[test]
    fn layer_errors_map_to_their_errno() {
        assert_eq!(
            FsError::io("read", path(), os(libc::EACCES)).errno(),
            libc::EACCES
        );
        assert!(matches!(
            FsError::io("read", path(), os(libc::ENOENT)),
            FsError::NotFound
        ));
        assert_eq!(
            FsError::refused("rename", path(), "no", libc::EXDEV).errno(),
            libc::EXDEV
        );
        assert_eq!(
            FsError::ReadOnly {
                op: "mkdir",
                path: path()
            }
            .errno(),
            libc::EROFS
        );
        assert_eq!(FsError::BadHandle.errno(), libc::EBADF);
    }
}
