//! What the commands are asked to do, as plain values: the command line
//! (or any other front end) fills a [`Config`] and [`super::run`] does it.
//!
//! Invariants: nothing here knows how it was parsed (no clap types); every
//! value is already checked for form (a duration is a [`Duration`], a
//! number a number), so what is left to refuse is what only running the
//! command can tell (a session that does not exist, an unknown `-o`
//! option: those are refused in the order the command meets them).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// One run of `sessionfs`: which repository, which command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub repo: RepoChoice,
    pub command: CommandConfig,
}

/// Where the session repository is, and how its sessions are laid out.
///
/// Precedence: a directory given (`--repo`) wins; else Checkbox's
/// repository when asked for (`--checkbox`); else
/// `$PLAINBOX_SESSION_REPOSITORY`; else plainbox's default. `--checkbox`
/// with `--repo` is that directory laid out as Checkbox's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoChoice {
    /// `$PLAINBOX_SESSION_REPOSITORY`, else
    /// `${XDG_CACHE_HOME:-~/.cache}/plainbox/sessions` (laid out as
    /// Checkbox's when that is Checkbox's well-known place).
    Default,
    /// This directory (laid out as Checkbox's when it is Checkbox's
    /// well-known place).
    Dir(PathBuf),
    /// Checkbox's repository: `$SESSIONFS_CHECKBOX_REPOSITORY`, else
    /// `/var/tmp/checkbox-ng/sessions`, laid out as Checkbox's.
    Checkbox,
    /// This directory, laid out as Checkbox's.
    CheckboxDir(PathBuf),
}

/// Which sessions `gc --status` removes, as Checkbox reads their flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcStatus {
    /// What `checkbox-cli --clear-old-sessions` would remove (as the
    /// application that made each session).
    Old,
    /// Sessions with this status.
    Is(crate::checkbox::Status),
}

/// The command and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandConfig {
    List(ListConfig),
    Create {
        /// The prefix of the session's name (made safe by the core).
        prefix: String,
        /// Replace the session `last-session` points at, and point it at
        /// the new one.
        legacy: bool,
    },
    Cat {
        id: OsString,
        /// Decode and pretty-print a (gzip+)JSON checkpoint.
        decode: bool,
    },
    Checkpoint {
        id: OsString,
        /// The file to read; `None` or `-` is standard input.
        file: Option<PathBuf>,
    },
    Remove {
        ids: Vec<OsString>,
    },
    BreakLock {
        id: OsString,
        /// Even while a running writer holds the lock.
        force: bool,
    },
    Gc {
        /// Only sessions not modified for this long.
        older_than: Option<Duration>,
        /// Only sessions with one of these statuses (any when empty).
        statuses: Vec<GcStatus>,
        dry_run: bool,
    },
    Show {
        id: OsString,
        /// Print this job's output instead of the session's summary.
        job: Option<String>,
    },
    Archive {
        /// The session; `None` for the one modified last.
        id: Option<OsString>,
        /// The `.tar.gz` to write (atomically).
        output: PathBuf,
    },
    Mount(MountRequest),
    Unmount {
        mountpoint: PathBuf,
    },
}

/// `sessionfs list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListConfig {
    pub json: bool,
    pub sort: SortBy,
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Youngest first (by last modification).
    Age,
    /// By id, alphabetically.
    Name,
}

/// `sessionfs mount`, before its `-o` options are applied (see
/// [`super::mount_options`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// As given (made absolute when mounting).
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub read_only: bool,
    pub allow_other: bool,
    pub auto_unmount: bool,
    pub threads: usize,
    pub passthrough: bool,
    /// `-o max_watches=N`.
    pub max_watches: Option<usize>,
    pub log_file: Option<PathBuf>,
    /// The `-o` arguments, each comma-separated, as given.
    pub options: Vec<String>,
    /// The descriptor a background daemon reports readiness on.
    pub ready_fd: Option<i32>,
    /// The arguments (without the program name) to start the background
    /// daemon with; it adds `--foreground`.
    pub daemon_args: Vec<OsString>,
}
