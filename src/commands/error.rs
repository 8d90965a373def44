//! How a command fails: [`CommandError`] is one line for standard error
//! and the exit code it maps to (see [`crate::exit_codes`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::mount_options::OptionError;
use crate::core;
use crate::exit_codes;
use crate::mount::MountError;

/// A failure of a command: a message and the exit code it maps to.
#[derive(Debug)]
pub enum CommandError {
    Core(core::Error),
    Mount(MountError),
    MountOption(OptionError),
    Input {
        path: PathBuf,
        source: io::Error,
    },
    Output(io::Error),
    /// Several items of one command failed (each was already reported on
    /// standard error, so this one is not printed).
    Partial {
        failed: usize,
        code: i32,
    },
    /// A session's data is not what it should be (see
    /// [`exit_codes::BAD_DATA`]).
    BadData(String),
    /// Something the command refuses to do as asked (exit code 2).
    Usage(String),
    Other(String),
}

impl CommandError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::Core(e) if e.is_locked() => exit_codes::LOCKED,
            CommandError::Core(core::Error::NoSuchSession { .. }) => exit_codes::NO_SUCH_SESSION,
            CommandError::Core(core::Error::InvalidName { .. }) => exit_codes::USAGE,
            CommandError::Core(_) => exit_codes::FAILURE,
            CommandError::Mount(_)
            | CommandError::MountOption(_)
            | CommandError::Input { .. }
            | CommandError::Output(_)
            | CommandError::Other(_) => exit_codes::FAILURE,
            CommandError::Partial { code, .. } => *code,
            CommandError::BadData(_) => exit_codes::BAD_DATA,
            CommandError::Usage(_) => exit_codes::USAGE,
        }
    }

    /// True when each failure was already reported on standard error, so
    /// `main` prints nothing more.
    pub fn already_reported(&self) -> bool {
        matches!(self, CommandError::Partial { .. })
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Core(e) => e.fmt(f),
            CommandError::Mount(e) => e.fmt(f),
            CommandError::MountOption(e) => e.fmt(f),
            CommandError::Input { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            CommandError::Output(e) => write!(f, "cannot write to standard output: {e}"),
            CommandError::Partial { failed, .. } => write!(f, "{failed} of the sessions failed"),
            CommandError::BadData(msg) | CommandError::Usage(msg) | CommandError::Other(msg) => {
                f.write_str(msg)
            }
        }
    }
}

impl From<core::Error> for CommandError {
    fn from(e: core::Error) -> Self {
        CommandError::Core(e)
    }
}

/// Standard output closed by its reader (`sessionfs … | head`) is not a
/// failure; any other write error is.
pub(crate) fn ignore_broken_pipe(r: io::Result<()>) -> Result<(), CommandError> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CommandError::Output(e)),
        _ => Ok(()),
    }
}
