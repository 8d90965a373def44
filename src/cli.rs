//! The command line, as clap definitions. Parsing yields plain values;
//! [`crate::app::run`] does the work.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit_codes::HELP_TEXT;

#[derive(Debug, Parser)]
#[command(
    name = "sessionfs",
    version,
    about = "Keep application sessions on disk and work on them with ordinary file tools",
    long_about = "sessionfs manages a Checkbox/Plainbox-compatible session repository: \
                  each session is a directory whose `session` file is the last checkpoint, \
                  committed atomically.",
    after_help = HELP_TEXT
)]
pub struct Cli {
    /// The session repository [default: $PLAINBOX_SESSION_REPOSITORY, else
    /// ${XDG_CACHE_HOME:-~/.cache}/plainbox/sessions]
    #[arg(long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the sessions: a table, or JSON for scripts
    List(crate::list::ListArgs),
    /// Create a new session and print its id
    Create(CreateArgs),
    /// Write a session's last checkpoint to standard output
    Cat {
        /// The session id (the directory name without `.session`)
        id: OsString,
        /// Decompress and pretty-print a gzip+JSON (or JSON) checkpoint, as
        /// `session.json` shows it in the mount
        #[arg(long)]
        decode: bool,
    },
    /// Save a checkpoint atomically from a file or standard input
    Checkpoint {
        /// The session id
        id: OsString,
        /// The file to read; `-` or nothing reads standard input
        file: Option<PathBuf>,
    },
    /// Remove sessions and everything in them
    Remove {
        /// The session ids
        #[arg(required = true)]
        ids: Vec<OsString>,
    },
    /// Remove a stale lock (`session.next`) left by an interrupted checkpoint
    BreakLock {
        /// The session id
        id: OsString,
        /// Break the lock even while a running writer holds it
        #[arg(long)]
        force: bool,
    },
    /// Remove the sessions not modified for a while
    Gc(GcArgs),
    /// Mount the repository as a filesystem (returns once it is ready)
    #[command(after_long_help = crate::helper::MOUNT_HELP)]
    Mount(MountArgs),
    /// Unmount a sessionfs mount (also one left dead by a stopped daemon)
    Unmount {
        /// The mount point
        mountpoint: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command
    Man {
        /// Write sessionfs.1 and sessionfs-COMMAND.1 into this directory
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount (an existing directory)
    pub mountpoint: PathBuf,
    /// Stay attached; unmount cleanly on Ctrl-C or SIGTERM
    #[arg(short, long)]
    pub foreground: bool,
    /// Refuse every change (writes fail with EROFS)
    #[arg(long)]
    pub read_only: bool,
    /// Let other users in (subject to the files' own modes)
    #[arg(long)]
    pub allow_other: bool,
    /// Unmount when the daemon exits, even if it is killed (needs fusermount3)
    #[arg(long)]
    pub auto_unmount: bool,
    /// Threads serving FUSE requests
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub threads: usize,
    /// Serve reads and writes of `session` from the daemon even where the
    /// kernel offers FUSE passthrough
    #[arg(long)]
    pub no_passthrough: bool,
    /// Where the background daemon writes its log
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Mount options, comma-separated, as other FUSE tools take them
    /// (ro, rw, allow_other, auto_unmount, default_permissions)
    #[arg(short = 'o', value_name = "OPT[,OPT]")]
    pub options: Vec<String>,
    /// Report readiness on this descriptor (used when the daemon starts
    /// itself in the background)
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The prefix of the session's name (non-ASCII-safe characters become `_`)
    #[arg(long, default_value = crate::core::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Legacy mode: replace the session `last-session` points at, and point
    /// `last-session` at the new one
    #[arg(long)]
    pub legacy: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove sessions not modified for this long (e.g. 30d, 12h, 1h30m, 90s)
    #[arg(long, value_name = "DURATION", value_parser = crate::core::duration::parse_duration)]
    pub older_than: std::time::Duration,
    /// Only print what would be removed
    #[arg(long)]
    pub dry_run: bool,
}
