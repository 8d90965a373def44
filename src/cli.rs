//! The command line: clap definitions, and their conversion into the plain
//! `Config` the commands take ([`parse`]), the log level it asks for
//! ([`init_logging`]) and [`run`], which does what it asks.
//!
//! Invariants: clap types stop here (the commands never see them); the
//! texts that describe mount options come from the one table in
//! `commands::mount_options`; completions and manual pages are
//! rendered from these same definitions (by `docs`), so they
//! never drift from the real command line.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::commands::{
    self, CommandConfig, CommandError, Config, GcStatus, ListConfig, MountRequest, RepoChoice,
    SortBy, mount_options,
};
use crate::docs;
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
pub(crate) struct Cli {
    /// The session repository [default: --checkbox's when given, else
    /// $PLAINBOX_SESSION_REPOSITORY, else
    /// ${XDG_CACHE_HOME:-~/.cache}/plainbox/sessions]
    #[arg(long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// Today's Checkbox's repository, /var/tmp/checkbox-ng/sessions
    /// ($SESSIONFS_CHECKBOX_REPOSITORY overrides it), with its layout:
    /// microsecond names, io-logs/ and session-share/, no legacy mode.
    /// With --repo DIR: DIR, laid out as Checkbox's. It wins over
    /// $PLAINBOX_SESSION_REPOSITORY
    #[arg(long, global = true)]
    pub checkbox: bool,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the sessions: a table, or JSON for scripts
    List(ListArgs),
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
    /// Remove sessions not modified for a while, or by status as Checkbox
    /// reads them
    Gc(GcArgs),
    /// Show a Checkbox session: title, test plan, status, times and every
    /// job's result; with --job, that job's output
    Show {
        /// The session id
        id: OsString,
        /// Print this job's output (its id, or the part after `::`),
        /// decoded from io-logs/<job>.record.gz in the order it was
        /// written, else its .stdout then .stderr
        #[arg(long, value_name = "JOB")]
        job: Option<String>,
    },
    /// Pack one session (its committed checkpoint and io-logs) into a
    /// .tar.gz, e.g. for a bug report
    Archive(ArchiveArgs),
    /// Mount the repository as a filesystem (returns once it is ready)
    #[command(after_long_help = mount_help())]
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
pub(crate) struct MountArgs {
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
    #[arg(short = 'o', value_name = "OPT[,OPT]", help = options_help())]
    pub options: Vec<String>,
    /// Report readiness on this descriptor (used when the daemon starts
    /// itself in the background)
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ListArgs {
    /// Print a JSON array (id, path, created, modified, size, locked, last)
    /// instead of the table
    #[arg(long)]
    pub json: bool,
    /// Order of the sessions
    #[arg(long, value_enum, default_value_t = SortArg::Age)]
    pub sort: SortArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SortArg {
    /// Youngest first (by last modification)
    Age,
    /// By id, alphabetically
    Name,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The prefix of the session's name (non-ASCII-safe characters become `_`)
    #[arg(long, default_value = crate::core::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Legacy mode: replace the session `last-session` points at, and point
    /// `last-session` at the new one
    #[arg(long)]
    pub legacy: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["older_than", "status"])))]
pub(crate) struct GcArgs {
    /// Remove sessions not modified for this long (e.g. 30d, 12h, 1h30m, 90s)
    #[arg(long, value_name = "DURATION", value_parser = crate::core::duration::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Remove only sessions of this status (repeatable; with --older-than,
    /// both must hold): `old` is what `checkbox-cli --clear-old-sessions`
    /// would remove (submitted, bootstrapping, no flags), and
    /// resumable, submitted, bootstrapping, no-flags and
    /// finished-not-submitted (which Checkbox never removes) as `list`
    /// shows them. Sessions that are not readable Checkbox sessions have
    /// no status
    #[arg(long, value_name = "STATUS", value_parser = parse_gc_status)]
    pub status: Vec<GcStatus>,
    /// Only print what would be removed
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("session").required(true).args(["id", "last"])))]
pub(crate) struct ArchiveArgs {
    /// The session id
    pub id: Option<OsString>,
    /// The session modified last
    #[arg(long)]
    pub last: bool,
    /// The archive to write (gzip-compressed tar), atomically
    #[arg(short, long, value_name = "FILE.tar.gz")]
    pub output: PathBuf,
}

/// `--status NAME`.
fn parse_gc_status(name: &str) -> Result<GcStatus, String> {
    if name == "old" {
        return Ok(GcStatus::Old);
    }
    crate::checkbox::Status::parse(name)
        .map(GcStatus::Is)
        .ok_or_else(|| {
            let names: Vec<&str> = crate::checkbox::Status::ALL
                .iter()
                .map(|s| s.as_str())
                .collect();
            format!("unknown status (old, {})", names.join(", "))
        })
}

/// What `sessionfs mount --help` and its manual page say after the options.
const MOUNT_HELP: &str = "\
Each session directory of the mount also shows session.json: the checkpoint
decompressed and pretty-printed, read-only, when it is a gzip-compressed JSON
object or array (as plainbox writes it) or a plain one; it is absent
otherwise, and for a damaged checkpoint or one that decodes to more than
64 MiB. Likewise, next to each io-logs/JOB.record.gz (a Checkbox job's
output), io-logs/JOB.record.txt shows that output decoded, both streams in
the order the job wrote them.

With mount(8) and /etc/fstab (scripts/install.sh links the helper
/sbin/mount.fuse.sessionfs to sessionfs):
  mount -t fuse.sessionfs REPOSITORY MOUNTPOINT -o ro,allow_other
  REPOSITORY  MOUNTPOINT  fuse.sessionfs  ro,allow_other,nofail  0  0
Without the helper, fuse3's mount.fuse runs `sessionfs REPOSITORY MOUNTPOINT
-o OPTIONS`, which sessionfs also accepts.";

fn mount_help() -> String {
    format!("{MOUNT_HELP}\n\n{}", mount_options::help_lines())
}

fn options_help() -> String {
    format!(
        "Mount options, comma-separated, as other FUSE tools take them ({})",
        mount_options::common_names()
    )
}

/// A parsed command line.
#[derive(Debug)]
pub struct CommandLine {
    /// How many `-v`.
    verbose: u8,
    repo: RepoChoice,
    action: Action,
}

/// What the command line asks for.
#[derive(Debug)]
enum Action {
    /// A command on the repository.
    Run(CommandConfig),
    /// A completion script for a shell.
    Completions(clap_complete::Shell),
    /// The manual page on standard output, or one page per command in a
    /// directory.
    Man { out_dir: Option<PathBuf> },
}

/// Parses `args` (the program name first); on a usage error, `--help` or
/// `--version`, prints what clap prints and exits (2 for an error).
pub fn parse(args: Vec<OsString>) -> CommandLine {
    let daemon_args = args.iter().skip(1).cloned().collect();
    CommandLine::from_cli(Cli::parse_from(args), daemon_args)
}

impl CommandLine {
    /// The plain values of `cli`; `daemon_args` is the command line to
    /// start a background mount daemon with (without the program name).
    fn from_cli(cli: Cli, daemon_args: Vec<OsString>) -> CommandLine {
        let repo = match (cli.repo, cli.checkbox) {
            (Some(dir), false) => RepoChoice::Dir(dir),
            (Some(dir), true) => RepoChoice::CheckboxDir(dir),
            (None, true) => RepoChoice::Checkbox,
            (None, false) => RepoChoice::Default,
        };
        let run = Action::Run;
        let action = match cli.command {
            Command::List(args) => run(CommandConfig::List(ListConfig {
                json: args.json,
                sort: match args.sort {
                    SortArg::Age => SortBy::Age,
                    SortArg::Name => SortBy::Name,
                },
            })),
            Command::Create(args) => run(CommandConfig::Create {
                prefix: args.prefix,
                legacy: args.legacy,
            }),
            Command::Cat { id, decode } => run(CommandConfig::Cat { id, decode }),
            Command::Checkpoint { id, file } => run(CommandConfig::Checkpoint { id, file }),
            Command::Remove { ids } => run(CommandConfig::Remove { ids }),
            Command::BreakLock { id, force } => run(CommandConfig::BreakLock { id, force }),
            Command::Gc(args) => run(CommandConfig::Gc {
                older_than: args.older_than,
                statuses: args.status,
                dry_run: args.dry_run,
            }),
            Command::Show { id, job } => run(CommandConfig::Show { id, job }),
            Command::Archive(args) => run(CommandConfig::Archive {
                id: if args.last { None } else { args.id },
                output: args.output,
            }),
            Command::Mount(args) => run(CommandConfig::Mount(MountRequest {
                mountpoint: args.mountpoint,
                foreground: args.foreground,
                read_only: args.read_only,
                allow_other: args.allow_other,
                auto_unmount: args.auto_unmount,
                threads: args.threads,
                max_watches: None,
                passthrough: !args.no_passthrough,
                log_file: args.log_file,
                options: args.options,
                ready_fd: args.ready_fd,
                daemon_args,
            })),
            Command::Unmount { mountpoint } => run(CommandConfig::Unmount { mountpoint }),
            Command::Completions { shell } => Action::Completions(shell),
            Command::Man { out_dir } => Action::Man { out_dir },
        };
        CommandLine {
            verbose: cli.verbose,
            repo,
            action,
        }
    }
}

/// Sets up logging to standard error: `-v` raises the level, `RUST_LOG`
/// overrides it; a foreground mount daemon reports its choices and
/// refusals at info even without `-v`.
pub fn init_logging(command_line: &CommandLine) {
    let daemon = matches!(
        &command_line.action,
        Action::Run(CommandConfig::Mount(m)) if m.foreground
    );
    let level = match command_line.verbose {
        0 if daemon => "info",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let mut logger = env_logger::Builder::new();
    logger.format_timestamp_millis();
    match std::env::var("RUST_LOG") {
        Ok(filter) => {
            logger.parse_filters(&filter);
        }
        Err(_) => {
            // fuser reports every operation it does not implement (such as
            // security xattr probes) and the unmount it finds already done.
            logger
                .parse_filters(level)
                .filter_module("fuser", log::LevelFilter::Error);
        }
    }
    logger.init();
}

/// Does what the command line asks.
pub fn run(command_line: CommandLine) -> Result<(), CommandError> {
    let CommandLine { repo, action, .. } = command_line;
    let log_repository = || {
        log::info!(
            "session repository: {}",
            commands::repository(&repo).location().display()
        );
    };
    match action {
        Action::Run(command) => commands::run(Config { repo, command }),
        Action::Completions(shell) => {
            log_repository();
            commands::ignore_broken_pipe(docs::completions(
                Cli::command(),
                shell,
                &mut io::stdout().lock(),
            ))
        }
        Action::Man { out_dir: None } => {
            log_repository();
            commands::ignore_broken_pipe(docs::man_page(Cli::command(), &mut io::stdout().lock()))
        }
        Action::Man { out_dir: Some(dir) } => {
            log_repository();
            docs::man_pages(Cli::command(), &dir).map_err(|e| {
                CommandError::Other(format!(
                    "cannot write manual pages into {}: {e}",
                    dir.display()
                ))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parsed(args: &[&str]) -> CommandLine {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn the_command_line_becomes_plain_values() {
        let c = parsed(&["sessionfs", "--repo", "/r", "-vv", "list", "--sort", "name"]);
        assert_eq!(c.verbose, 2);
        assert_eq!(c.repo, RepoChoice::Dir("/r".into()));
        assert!(matches!(
            c.action,
            Action::Run(CommandConfig::List(ListConfig {
                json: false,
                sort: SortBy::Name
            }))
        ));
        let c = parsed(&["sessionfs", "gc", "--older-than", "1h30m", "--dry-run"]);
        assert_eq!(c.repo, RepoChoice::Default);
        assert!(matches!(
            c.action,
            Action::Run(CommandConfig::Gc { older_than: Some(older_than), dry_run: true, .. })
                if older_than == std::time::Duration::from_secs(5400)
        ));
        let c = parsed(&[
            "sessionfs",
            "--checkbox",
            "gc",
            "--status",
            "old",
            "--status",
            "finished-not-submitted",
        ]);
        assert_eq!(c.repo, RepoChoice::Checkbox);
        let Action::Run(CommandConfig::Gc {
            older_than: None,
            statuses,
            dry_run: false,
        }) = c.action
        else {
            panic!("not gc");
        };
        assert_eq!(
            statuses,
            [
                GcStatus::Old,
                GcStatus::Is(crate::checkbox::Status::FinishedNotSubmitted)
            ]
        );
        let c = parsed(&[
            "sessionfs",
            "--repo",
            "/r",
            "--checkbox",
            "archive",
            "--last",
            "-o",
            "x.tar.gz",
        ]);
        assert_eq!(c.repo, RepoChoice::CheckboxDir("/r".into()));
        assert!(matches!(
            c.action,
            Action::Run(CommandConfig::Archive { id: None, .. })
        ));
    }

    #[test]
    fn a_mount_keeps_its_options_and_the_daemon_command_line() {
        let args = [
            "sessionfs",
            "mount",
            "/m",
            "-o",
            "ro,threads=2",
            "--no-passthrough",
        ];
        let Action::Run(CommandConfig::Mount(m)) = parsed(&args).action else {
            panic!("not a mount");
        };
        assert_eq!(m.options, ["ro,threads=2"]);
        // Applied when mounting, after the repository is checked.
        assert!(!m.read_only);
        assert_eq!(m.threads, 8);
        assert!(!m.passthrough);
        assert_eq!(
            m.daemon_args,
            args[1..].iter().map(OsString::from).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_mount_help_lists_every_option_of_the_table() {
        let help = mount_help();
        for o in mount_options::OPTIONS {
            assert!(help.contains(o.name), "{} missing:\n{help}", o.name);
        }
        assert!(
            options_help().ends_with("(ro, rw, allow_other, auto_unmount, default_permissions)")
        );
    }
}
