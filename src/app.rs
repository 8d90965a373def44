//! What each command does. [`run`] takes the parsed command line and returns
//! an [`AppError`] that `main` prints as one line with its exit code.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, Command, CreateArgs, GcArgs, MountArgs};
use crate::core::{self, BeginOptions, Repository, Start, Storage};
use crate::exit_codes;
use crate::mount::{self as mounting, MountConfig, MountError, Unmounted};

/// A failure of a command: a message and the exit code it maps to.
#[derive(Debug)]
pub enum AppError {
    Core(core::Error),
    Mount(MountError),
    Input {
        path: PathBuf,
        source: io::Error,
    },
    Output(io::Error),
    /// Several items of one command failed (each was already reported).
    Partial {
        failed: usize,
        code: i32,
    },
    Other(String),
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Core(e) if e.is_locked() => exit_codes::LOCKED,
            AppError::Core(core::Error::NoSuchSession { .. }) => exit_codes::NO_SUCH_SESSION,
            AppError::Core(core::Error::InvalidName { .. }) => exit_codes::USAGE,
            AppError::Core(_) => exit_codes::FAILURE,
            AppError::Mount(_)
            | AppError::Input { .. }
            | AppError::Output(_)
            | AppError::Other(_) => exit_codes::FAILURE,
            AppError::Partial { code, .. } => *code,
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Core(e) => e.fmt(f),
            AppError::Mount(e) => e.fmt(f),
            AppError::Input { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            AppError::Output(e) => write!(f, "cannot write to standard output: {e}"),
            AppError::Partial { failed, .. } => write!(f, "{failed} of the sessions failed"),
            AppError::Other(msg) => f.write_str(msg),
        }
    }
}

impl From<core::Error> for AppError {
    fn from(e: core::Error) -> Self {
        AppError::Core(e)
    }
}

/// The repository the command line designates.
pub fn repository(cli: &Cli) -> Repository {
    let location = cli
        .repo
        .clone()
        .unwrap_or_else(Repository::default_location);
    Repository::new(location)
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<(), AppError> {
    let repo = repository(&cli);
    log::info!("session repository: {}", repo.location().display());
    if !matches!(
        cli.command,
        Command::Unmount { .. } | Command::Completions { .. } | Command::Man { .. }
    ) {
        repo.check()?;
    }
    match cli.command {
        Command::List(args) => crate::list::run(&repo, &args),
        Command::Create(args) => create(&repo, &args),
        Command::Cat { id, decode: false } => cat(&repo, &id),
        Command::Cat { id, decode: true } => crate::decode::cat_decoded(&repo, &id),
        Command::Checkpoint { id, file } => checkpoint(&repo, &id, file),
        Command::Remove { ids } => remove(&repo, &ids),
        Command::BreakLock { id, force } => break_lock(&repo, &id, force),
        Command::Gc(args) => gc(&repo, &args),
        Command::Mount(args) => mount(repo, args),
        Command::Unmount { mountpoint } => unmount(&mountpoint),
        Command::Completions { shell } => {
            ignore_broken_pipe(crate::docs::completions(shell, &mut io::stdout().lock()))
        }
        Command::Man { out_dir: None } => {
            ignore_broken_pipe(crate::docs::man_page(&mut io::stdout().lock()))
        }
        Command::Man { out_dir: Some(dir) } => crate::docs::man_pages(&dir).map_err(|e| {
            AppError::Other(format!(
                "cannot write manual pages into {}: {e}",
                dir.display()
            ))
        }),
    }
}

fn out_err(e: io::Error) -> AppError {
    AppError::Output(e)
}

fn ignore_broken_pipe(r: io::Result<()>) -> Result<(), AppError> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(out_err(e)),
        _ => Ok(()),
    }
}

/// `3s`, `5m`, `2h`, `4d`.
pub fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `512B`, `4.0K`, `1.5M`, `2.0G`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

fn create(repo: &Repository, args: &CreateArgs) -> Result<(), AppError> {
    let storage = repo.create(&args.prefix, args.legacy)?;
    log::info!("created {}", storage.location().display());
    println!("{}", storage.id().to_string_lossy());
    Ok(())
}

fn cat(repo: &Repository, id: &OsStr) -> Result<(), AppError> {
    let storage = repo.open(id)?;
    let Some(mut file) = storage.open_checkpoint()? else {
        return Ok(());
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(core::Error::io(
                    core::Op::ReadCheckpoint,
                    storage.location().join(core::SESSION_FILE),
                    e,
                )
                .into());
            }
        };
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            // `sessionfs cat ID | head` is not a failure.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(out_err(e)),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(out_err(e)),
        _ => Ok(()),
    }
}

fn checkpoint(repo: &Repository, id: &OsStr, file: Option<PathBuf>) -> Result<(), AppError> {
    let storage = repo.open(id)?;
    let (mut input, input_path): (Box<dyn Read>, PathBuf) = match file {
        None => (Box::new(io::stdin().lock()), PathBuf::from("-")),
        Some(p) if p.as_os_str() == "-" => (Box::new(io::stdin().lock()), p),
        Some(p) => {
            let f = File::open(&p).map_err(|source| AppError::Input {
                path: p.clone(),
                source,
            })?;
            (Box::new(f), p)
        }
    };
    save_stream(&storage, &mut input, &input_path)
}

/// Streams `input` into a new checkpoint and commits it; on any error the
/// checkpoint is aborted and the previous one stays.
pub fn save_stream(
    storage: &Storage,
    input: &mut dyn Read,
    input_path: &std::path::Path,
) -> Result<(), AppError> {
    let mut writer = storage.begin(BeginOptions::new(Start::Empty))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(AppError::Input {
                    path: input_path.to_path_buf(),
                    source,
                });
            }
        };
        writer.write_at(&buf[..n], offset)?;
        offset += n as u64;
    }
    writer.commit()?;
    log::info!(
        "committed {} bytes to {}",
        offset,
        storage.location().display()
    );
    Ok(())
}

fn remove(repo: &Repository, ids: &[std::ffi::OsString]) -> Result<(), AppError> {
    let mut failed = Vec::new();
    for id in ids {
        match repo.remove(id) {
            Ok(()) => log::info!("removed {}", id.to_string_lossy()),
            Err(e) => {
                eprintln!("sessionfs: error: {e}");
                failed.push(AppError::Core(e));
            }
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => Err(AppError::Partial {
            failed: 1,
            code: failed[0].exit_code(),
        }),
        n => Err(AppError::Partial {
            failed: n,
            code: exit_codes::FAILURE,
        }),
    }
}

fn break_lock(repo: &Repository, id: &OsStr, force: bool) -> Result<(), AppError> {
    let storage = repo.open(id)?;
    if storage.break_lock(force)? {
        eprintln!(
            "sessionfs: removed {}",
            storage.location().join(core::SESSION_NEXT_FILE).display()
        );
    } else {
        eprintln!("sessionfs: {} is not locked", id.to_string_lossy());
    }
    Ok(())
}

fn gc(repo: &Repository, args: &GcArgs) -> Result<(), AppError> {
    if args.dry_run {
        for entry in repo.older_than(args.older_than)? {
            println!("would remove {}", entry.storage.id().to_string_lossy());
        }
        return Ok(());
    }
    for storage in repo.delete_older_than(args.older_than)? {
        println!("removed {}", storage.id().to_string_lossy());
    }
    Ok(())
}

/// Applies `-o opt[,opt]` to the mount arguments.
fn apply_mount_options(args: &mut MountArgs) -> Result<(), AppError> {
    for opt in args.options.iter().flat_map(|o| o.split(',')) {
        match opt.trim() {
            ""
            | "rw"
            | "default_permissions"
            | "dev"
            | "suid"
            | "nodev"
            | "nosuid"
            | "exec"
            | "noexec"
            | "auto"
            | "noauto"
            | "user"
            | "nouser"
            | "_netdev"
            | "nofail" => {}
            "ro" => args.read_only = true,
            "allow_other" | "allow_root" => args.allow_other = true,
            "auto_unmount" => args.auto_unmount = true,
            "no_passthrough" => args.no_passthrough = true,
            other => {
                if let Some(path) = other.strip_prefix("log_file=") {
                    args.log_file = Some(PathBuf::from(path));
                } else if let Some(n) = other.strip_prefix("threads=") {
                    args.threads = n.parse().map_err(|_| {
                        AppError::Other(format!(
                            "invalid mount option {other:?}: threads takes a number"
                        ))
                    })?;
                } else {
                    return Err(AppError::Other(format!(
                        "unknown mount option {other:?} (known: ro, rw, allow_other, auto_unmount, \
                         default_permissions, threads=N, no_passthrough, log_file=PATH)"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn mount(repo: Repository, mut args: MountArgs) -> Result<(), AppError> {
    apply_mount_options(&mut args)?;
    let mountpoint = std::path::absolute(&args.mountpoint).unwrap_or(args.mountpoint.clone());
    let config = MountConfig {
        repo,
        mountpoint,
        foreground: args.foreground,
        read_only: args.read_only,
        allow_other: args.allow_other,
        auto_unmount: args.auto_unmount,
        threads: args.threads,
        passthrough: !args.no_passthrough,
        log_file: args.log_file.clone(),
        ready_fd: args.ready_fd,
        daemon_args: std::env::args_os().skip(1).collect(),
    };
    mounting::mount(config).map_err(AppError::Mount)
}

fn unmount(mountpoint: &std::path::Path) -> Result<(), AppError> {
    match mounting::unmount(mountpoint).map_err(AppError::Mount)? {
        Unmounted::Clean => {}
        Unmounted::Detached => eprintln!(
            "sessionfs: {} was busy (files open): detached; it goes away once they are closed",
            mountpoint.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(4096), "4.0K");
        assert_eq!(human_size(3 << 20), "3.0M");
        assert_eq!(human_age(Duration::from_secs(59)), "59s");
        assert_eq!(human_age(Duration::from_secs(7200)), "2h");
        assert_eq!(human_age(Duration::from_secs(3 * 86_400)), "3d");
    }
}
