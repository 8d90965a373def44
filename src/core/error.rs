//! The one error type of the storage core.
//!
//! Invariants: every variant carries the path it is about, and every
//! `Io` variant also names the operation that failed and keeps the source
//! `io::Error`, so a message printed once is enough to act on. The core says
//! what went wrong; what a filesystem replies for it (the errno) is the
//! filesystem layer's decision (`crate::fs::error`), whose mapping matches
//! every variant here, so a new variant cannot be added without deciding
//! how the mount reports it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The operation that failed, as it reads in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    OpenRepository,
    CreateRepository,
    ListRepository,
    CreateSession,
    OpenSession,
    RemoveSession,
    ReadLastSession,
    WriteLastSession,
    CreateCheckpoint,
    WriteCheckpoint,
    ReadCheckpoint,
    SyncCheckpoint,
    RenameCheckpoint,
    SyncDirectory,
    TruncateCheckpoint,
    LockCheckpoint,
    BreakLock,
    Stat,
    SetOwnerAndMode,
}

impl Op {
    fn describe(self) -> &'static str {
        match self {
            Op::OpenRepository => "open repository",
            Op::CreateRepository => "create repository",
            Op::ListRepository => "list repository",
            Op::CreateSession => "create session",
            Op::OpenSession => "open session",
            Op::RemoveSession => "remove session",
            Op::ReadLastSession => "read last-session link",
            Op::WriteLastSession => "update last-session link",
            Op::CreateCheckpoint => "start checkpoint",
            Op::WriteCheckpoint => "write checkpoint",
            Op::ReadCheckpoint => "read checkpoint",
            Op::SyncCheckpoint => "fsync checkpoint",
            Op::RenameCheckpoint => "commit (rename) checkpoint",
            Op::SyncDirectory => "fsync session directory",
            Op::TruncateCheckpoint => "truncate checkpoint",
            Op::LockCheckpoint => "lock checkpoint",
            Op::BreakLock => "break lock",
            Op::Stat => "stat",
            Op::SetOwnerAndMode => "set owner and mode of checkpoint",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why a name was refused as a session name or id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    TooLong,
    HasSlash,
    HasNul,
    DotOrDotDot,
    Hidden,
    NoSessionSuffix,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "it is empty",
            NameProblem::TooLong => "it is longer than 255 bytes",
            NameProblem::HasSlash => "it contains '/'",
            NameProblem::HasNul => "it contains a NUL byte",
            NameProblem::DotOrDotDot => "it is '.' or '..'",
            NameProblem::Hidden => "it starts with '.'",
            NameProblem::NoSessionSuffix => "it does not end with '.session'",
        })
    }
}

#[derive(Debug)]
pub enum Error {
    /// A system call failed.
    Io {
        op: Op,
        path: PathBuf,
        source: io::Error,
    },
    /// `session.next` exists: another checkpoint is being written, or one was
    /// interrupted and left a stale lock.
    Locked { path: PathBuf },
    /// A break-lock was refused because a live writer holds the lock.
    LockHeld { path: PathBuf },
    /// The lock of a checkpoint being written was broken and replaced under
    /// the writer; its data was not committed.
    LockLost { path: PathBuf },
    /// The checkpoint was renamed into place but the directory fsync failed:
    /// the new checkpoint is visible but may not survive a power loss.
    NotDurable { path: PathBuf, source: io::Error },
    /// No session with that id exists.
    NoSuchSession { path: PathBuf },
    /// A name or id that can never be a session.
    InvalidName { name: String, problem: NameProblem },
    /// The repository path exists but is not a directory.
    NotARepository { path: PathBuf },
    /// A session could not be removed because a file in it is still open on
    /// an NFS client: the client keeps it as `.nfsXXXX` until it is closed.
    OpenOnNfsClient {
        path: PathBuf,
        file: std::ffi::OsString,
    },
    /// A file that must be a regular file (or a directory) is something else,
    /// for example a symlink planted where a checkpoint should be.
    UnexpectedFileType {
        path: PathBuf,
        expected: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True when the storage is locked by a checkpoint in progress or a stale
    /// lock (the command line gives this its own exit code).
    pub fn is_locked(&self) -> bool {
        match self {
            Error::Locked { .. } | Error::LockHeld { .. } | Error::LockLost { .. } => true,
            Error::Io { .. }
            | Error::NotDurable { .. }
            | Error::NoSuchSession { .. }
            | Error::InvalidName { .. }
            | Error::NotARepository { .. }
            | Error::OpenOnNfsClient { .. }
            | Error::UnexpectedFileType { .. } => false,
        }
    }

    /// The underlying OS error kind, when there is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } | Error::NotDurable { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "session is locked: {} exists (a checkpoint is being written, or an interrupted one left it; \
                 break-lock removes a stale lock)",
                path.display()
            ),
            Error::LockHeld { path } => write!(
                f,
                "cannot break lock {}: a running writer holds it (use --force to break it anyway)",
                path.display()
            ),
            Error::LockLost { path } => write!(
                f,
                "checkpoint not committed: the lock {} was broken and taken by another writer",
                path.display()
            ),
            Error::NotDurable { path, source } => write!(
                f,
                "checkpoint committed but not durable: cannot fsync session directory {}: {source}",
                path.display()
            ),
            Error::NoSuchSession { path } => write!(f, "no such session: {}", path.display()),
            Error::InvalidName { name, problem } => {
                write!(f, "invalid session name {name:?}: {problem}")
            }
            Error::NotARepository { path } => {
                write!(
                    f,
                    "session repository {} is not a directory",
                    path.display()
                )
            }
            Error::OpenOnNfsClient { path, file } => write!(
                f,
                "cannot remove session {}: {} in it is a file still open on an NFS client \
                 (it goes away once that client closes it; remove the session again then)",
                path.display(),
                std::path::Path::new(file).display()
            ),
            Error::UnexpectedFileType { path, expected } => {
                write!(f, "refusing {}: it is not {expected}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::NotDurable { source, .. } => Some(source),
            _ => None,
        }
    }
}
