//! Mounting and unmounting: the daemon's life cycle around the fuser
//! session. The filesystem itself is [`crate::fs`]; the reply plumbing is
//! [`adapter`].
//!
//! Invariants: `sessionfs mount` returns only once the kernel has answered
//! the FUSE handshake (or with the reason it failed); a foreground daemon
//! unmounts before it exits on SIGINT/SIGTERM/SIGHUP, detaching lazily when
//! files are still open, so no mountpoint is left dead by a clean stop.

pub mod adapter;
mod auto_unmount;
mod mounts;
mod preflight;
mod watch;

use std::ffi::{CString, OsString};
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fuser::{Config, MountOption, Session, SessionACL};

use crate::core::Repository;
use crate::fs::Invalidation;
use crate::fs::{FsConfig, SessionFs};

/// Everything the daemon needs, as the `mount` command settled it (its
/// `-o` options applied, the mount point made absolute).
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub repo: Repository,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub read_only: bool,
    pub allow_other: bool,
    pub auto_unmount: bool,
    pub threads: usize,
    pub passthrough: bool,
    /// Watch at most this many directories with inotify (`None`: as many
    /// as the system allows); the rest are cached by the kernel briefly.
    pub max_watches: Option<usize>,
    pub log_file: Option<PathBuf>,
    /// The descriptor a background daemon reports readiness on.
    pub ready_fd: Option<i32>,
    /// The arguments to start the background daemon with (the same command
    /// line, plus `--foreground`).
    pub daemon_args: Vec<OsString>,
}

#[derive(Debug)]
pub enum MountError {
    Mountpoint {
        path: PathBuf,
        problem: String,
    },
    Repository(crate::core::Error),
    Mount {
        path: PathBuf,
        source: io::Error,
    },
    Unmount {
        path: PathBuf,
        source: io::Error,
    },
    Daemon(String),
    MissingTool(&'static str),
    /// Something is mounted there already.
    AlreadyMounted {
        path: PathBuf,
        by: String,
    },
    /// `unmount` of a path nothing is mounted on.
    NotMounted {
        path: PathBuf,
    },
    /// `/dev/fuse` is missing or not accessible.
    FuseDevice {
        path: PathBuf,
        problem: String,
    },
    /// The user cannot read or write the repository.
    RepositoryAccess {
        repo: PathBuf,
        problem: String,
    },
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::Mountpoint { path, problem } => {
                write!(f, "cannot mount on {}: {problem}", path.display())
            }
            MountError::Repository(e) => e.fmt(f),
            MountError::Mount { path, source } => {
                write!(f, "cannot mount on {}: {source}", path.display())?;
                if matches!(
                    source.raw_os_error(),
                    Some(libc::EACCES) | Some(libc::EPERM)
                ) {
                    // SAFETY: geteuid has no preconditions.
                    if unsafe { libc::geteuid() } != 0 {
                        f.write_str(
                            " (an ordinary user may mount only on a directory they own and can write)",
                        )?;
                    }
                }
                Ok(())
            }
            MountError::AlreadyMounted { path, by } => write!(
                f,
                "cannot mount on {}: {by} is already mounted there (unmount it first: sessionfs unmount {})",
                path.display(),
                path.display()
            ),
            MountError::NotMounted { path } => {
                write!(
                    f,
                    "cannot unmount {}: nothing is mounted there",
                    path.display()
                )
            }
            MountError::FuseDevice { path, problem } => {
                write!(f, "cannot mount on {}: {problem}", path.display())
            }
            MountError::RepositoryAccess { repo, problem } => write!(
                f,
                "cannot use the session repository {}: {problem}; choose another with --repo DIR",
                repo.display()
            ),
            MountError::Unmount { path, source } => {
                write!(f, "cannot unmount {}: {source}", path.display())
            }
            MountError::Daemon(msg) => f.write_str(msg),
            MountError::MissingTool(msg) => f.write_str(msg),
        }
    }
}

pub(crate) fn has_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// `sessionfs mount`: in the foreground, or starts the daemon and returns
/// once the mount is ready.
pub fn mount(config: MountConfig) -> Result<(), MountError> {
    let prepared = preflight::prepare(&config)?;
    if prepared.created_mountpoint {
        // Said before serving, so a foreground mount says it too.
        eprintln!(
            "sessionfs: created the mount point {}",
            config.mountpoint.display()
        );
    }
    if config.auto_unmount && !has_program("fusermount3") {
        return Err(MountError::MissingTool(
            "--auto-unmount needs fusermount3 (install the fuse3 package)",
        ));
    }
    if config.foreground {
        run_foreground(config)?;
    } else {
        spawn_daemon(&config)?;
    }
    Ok(())
}

/// Starts `sessionfs … mount --foreground` detached, and waits for it to
/// report the mount ready (or why it failed) on a pipe.
fn spawn_daemon(config: &MountConfig) -> Result<(), MountError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a two-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(MountError::Daemon(format!(
            "cannot start the daemon: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 just returned these two descriptors; each is owned once.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let exe = std::env::current_exe()
        .map_err(|e| MountError::Daemon(format!("cannot find the sessionfs executable: {e}")))?;
    let stderr = match &config.log_file {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    MountError::Daemon(format!("cannot open log file {}: {e}", path.display()))
                })?,
        ),
        None => Stdio::null(),
    };
    let mut cmd = Command::new(exe);
    cmd.args(&config.daemon_args)
        .arg("--foreground")
        .arg("--ready-fd")
        .arg("3")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let wfd = write_end.as_raw_fd();
    // SAFETY: between fork and exec the closure only calls setsid and dup2,
    // which are async-signal-safe; it touches no Rust-managed state.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::dup2(wfd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| MountError::Daemon(format!("cannot start the daemon: {e}")))?;
    drop(write_end);
    // One line: "ready", or "error: …". EOF without it means the daemon
    // died first.
    let mut report = String::new();
    let mut reader = io::BufReader::new(std::fs::File::from(read_end));
    let _ = io::BufRead::read_line(&mut reader, &mut report);
    if report.starts_with("ready") {
        log::info!(
            "mounted {} on {} (daemon pid {})",
            config.repo.location().display(),
            config.mountpoint.display(),
            child.id()
        );
        return Ok(());
    }
    let msg = report
        .trim()
        .strip_prefix("error: ")
        .unwrap_or(report.trim())
        .to_string();
    Err(MountError::Daemon(if msg.is_empty() {
        "the daemon exited before the mount was ready (see --log-file)".to_string()
    } else {
        msg
    }))
}

fn report_ready(fd: Option<i32>, line: &str) {
    if let Some(fd) = fd {
        // SAFETY: the descriptor was handed to this process for this one
        // report, and nothing else owns it.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let _ = f.write_all(line.as_bytes());
    }
}

/// Whether fuser's own auto-unmount serves `--auto-unmount`: it needs an
/// ACL beyond the owner, which an ordinary user may not ask for without
/// `user_allow_other`; the daemon's own watcher serves them instead.
fn fuser_auto_unmounts(config: &MountConfig) -> bool {
    // SAFETY: geteuid has no preconditions.
    config.auto_unmount && (config.allow_other || unsafe { libc::geteuid() } == 0)
}

fn mount_options(config: &MountConfig) -> Config {
    let mut options = vec![
        MountOption::FSName(config.repo.location().display().to_string()),
        MountOption::Subtype("sessionfs".to_string()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if config.read_only {
        options.push(MountOption::RO);
    }
    if fuser_auto_unmounts(config) {
        options.push(MountOption::AutoUnmount);
    }
    let mut fuser_config = Config::default();
    fuser_config.mount_options = options;
    fuser_config.acl = if config.allow_other {
        SessionACL::All
    } else if fuser_auto_unmounts(config) {
        // fuser's auto-unmount needs a non-owner ACL; root and the owner
        // are the same user for a root daemon.
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    fuser_config.n_threads = Some(config.threads.max(1));
    fuser_config.clone_fd = true;
    fuser_config
}

fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset only adds valid
    // signal numbers to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Read-ahead of the mount's daemon-served files, in KiB: one request of
/// the largest size the kernel sends (256 pages), instead of the kernel's
/// 128 KiB default, so a sequential read takes an eighth of the round
/// trips.
const READ_AHEAD_KIB: u32 = 1024;

/// Raises the read-ahead of this mount's own backing device (it exists
/// only while the mount does). Best effort: only root may, and passthrough
/// reads do not use it.
fn raise_read_ahead(mountpoint: &Path) {
    // From the mount table, not a `stat` of the mount point: this process
    // serves that `stat` itself, and were it killed while waiting for the
    // reply, it could never exit (the kernel waits for the answer to a
    // request it sent, and only this process could give it).
    let Some((major, minor)) = mounts::MountEntry::at(mountpoint).map(|m| m.device) else {
        log::debug!(
            "read-ahead left as is: {} is not in the mount table",
            mountpoint.display()
        );
        return;
    };
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&knob, format!("{READ_AHEAD_KIB}\n")) {
        Ok(()) => log::debug!("read-ahead {READ_AHEAD_KIB} KiB ({knob})"),
        Err(e) => log::debug!("read-ahead left as is: {knob}: {e}"),
    }
}

/// Mounts, serves until unmounted or signalled, and unmounts.
fn run_foreground(config: MountConfig) -> Result<(), MountError> {
    let result = serve(&config);
    if let Err(e) = &result {
        report_ready(config.ready_fd, &format!("error: {e}\n"));
    }
    result
}

fn serve(config: &MountConfig) -> Result<(), MountError> {
    if let Some(fd) = config.ready_fd {
        // Helpers this process starts (fusermount3 for --auto-unmount stays
        // running) must not hold the readiness pipe open.
        // SAFETY: F_SETFD on a descriptor number has no memory effects; a
        // bad number just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // Block the stop signals in every thread (fuser's threads inherit the
    // mask); the main thread takes them with sigwait.
    let signals = signal_set(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1]);
    // SAFETY: `signals` is an initialised set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };

    let fs = std::sync::Arc::new(
        SessionFs::new(
            config.repo.clone(),
            FsConfig {
                read_only: config.read_only,
            },
        )
        .map_err(MountError::Repository)?,
    );
    let (invalidations, to_invalidate) = std::sync::mpsc::channel::<Invalidation>();
    if let Some(kind) = fs.network_filesystem() {
        // inotify sees only this machine's changes: the short cache times
        // (and fresh listings) are what keep the mount current there.
        log::info!(
            "{} is on {kind}: not watched with inotify (it misses other machines' changes): the kernel caches the mount only briefly",
            config.repo.location().display()
        );
    } else if let Err(e) = watch::watch_repository(&fs, config.max_watches, invalidations.clone()) {
        log::warn!(
            "cannot watch {} ({e}): the kernel caches the mount only briefly, and changes made outside it may take up to a second to show in stat",
            config.repo.location().display()
        );
    }
    // Directories are opened without a round trip only where the watch
    // keeps the kernel's cached listings current.
    let without_opendir = fs.watch_descriptor().is_some();
    let adapter =
        adapter::Adapter::new(fs, config.passthrough, Some(invalidations), without_opendir);
    let mut session =
        Session::new(adapter, &config.mountpoint, &mount_options(config)).map_err(|source| {
            MountError::Mount {
                path: config.mountpoint.clone(),
                source,
            }
        })?;
    let mut watcher = if config.auto_unmount && !fuser_auto_unmounts(config) {
        match auto_unmount::Watcher::start(&config.mountpoint) {
            Ok(w) => Some(w),
            Err(e) => {
                return Err(MountError::Daemon(format!(
                    "cannot start the auto-unmount watcher: {e}"
                )));
            }
        }
    } else {
        None
    };
    // What the kernel caches of the root is dropped from a thread of its
    // own when the repository changes outside the mount (see watch) or a
    // listing finds a session gone (Adapter::invalidate_vanished): the
    // kernel takes the root's lock for it, which a request in progress may
    // hold while it waits for a reply.
    let notifier = session.notifier();
    std::thread::Builder::new()
        .name("fuse-invalidate".into())
        .spawn(move || {
            for inv in to_invalidate {
                // Errors only mean the kernel holds nothing to drop (or
                // the mount is going away).
                let _ = match inv {
                    // A negative offset: attributes only, no page cache.
                    Invalidation::Attributes(ino) => {
                        notifier.inval_inode(fuser::INodeNo(ino), -1, 0)
                    }
                    // Offset 0, length 0: the attributes and every page
                    // (a directory's cached listing).
                    Invalidation::Contents(ino) => notifier.inval_inode(fuser::INodeNo(ino), 0, 0),
                    Invalidation::Entry { parent, name } => {
                        notifier.inval_entry(fuser::INodeNo(parent), &name)
                    }
                };
            }
        })
        .map_err(|e| MountError::Daemon(format!("cannot start the invalidation thread: {e}")))?;
    log::info!(
        "mounted {} on {}",
        config.repo.location().display(),
        config.mountpoint.display()
    );
    let mut unmounter = session.unmount_callable();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let worker = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            let result = session.run();
            // Wake the main thread: the session ended (unmounted from
            // outside, or failed).
            // SAFETY: sending a signal to our own process is always valid.
            unsafe { libc::kill(pid, libc::SIGUSR1) };
            result
        })
        .map_err(|e| MountError::Daemon(format!("cannot start the session thread: {e}")))?;
    raise_read_ahead(&config.mountpoint);
    report_ready(config.ready_fd, "ready\n");

    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: `signals` is initialised and `sig` is writable.
        let rc = unsafe { libc::sigwait(&signals, &mut sig) };
        if rc == 0 {
            break;
        }
    }
    if sig != libc::SIGUSR1 {
        log::info!("signal {sig}: unmounting {}", config.mountpoint.display());
        if let Err(e) = unmounter.unmount() {
            if e.raw_os_error() == Some(libc::EBUSY) {
                log::warn!(
                    "{} is busy (files are open): detaching it; it goes away once they are closed",
                    config.mountpoint.display()
                );
                lazy_unmount(&config.mountpoint).map_err(|source| MountError::Unmount {
                    path: config.mountpoint.clone(),
                    source,
                })?;
            } else {
                log::warn!("unmount of {} failed: {e}", config.mountpoint.display());
            }
        }
    }
    let joined = worker.join();
    if let Some(w) = watcher.as_mut()
        && !mounts::is_mounted(&config.mountpoint)
    {
        w.stand_down();
    }
    match joined {
        Ok(Ok(())) => Ok(()),
        // When the last open file of a detached (lazily unmounted) mount is
        // closed, the kernel tears the connection down, and the session's
        // read may say ECONNABORTED rather than ENODEV: a clean end too,
        // once the mount is gone.
        Ok(Err(e))
            if e.raw_os_error() == Some(libc::ECONNABORTED)
                && !mounts::is_mounted(&config.mountpoint) =>
        {
            log::info!(
                "{}: the kernel closed the connection of the unmounted filesystem",
                config.mountpoint.display()
            );
            Ok(())
        }
        Ok(Err(e)) => Err(MountError::Daemon(format!("the FUSE session failed: {e}"))),
        Err(_) => Err(MountError::Daemon(
            "the FUSE session thread panicked".to_string(),
        )),
    }
}

fn umount2(path: &Path, flags: i32) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid C string for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn lazy_unmount(path: &Path) -> io::Result<()> {
    umount2(path, libc::MNT_DETACH)
}

/// What `sessionfs unmount` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmounted {
    Clean,
    /// Files were open: the mount was detached and goes away when they close.
    Detached,
}

/// `sessionfs unmount MOUNTPOINT`: unmounts a live or dead sessionfs mount;
/// detaches lazily when files are still open.
pub fn unmount(path: &Path) -> Result<Unmounted, MountError> {
    let err = |source: io::Error| MountError::Unmount {
        path: path.to_path_buf(),
        source,
    };
    if !mounts::is_mounted(path) {
        return Err(if path.exists() || path.symlink_metadata().is_ok() {
            preflight::not_mounted(path)
        } else {
            MountError::Mountpoint {
                path: path.to_path_buf(),
                problem: "no such directory".into(),
            }
        });
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        return unmount_unprivileged(path);
    }
    match umount2(path, 0) {
        Ok(()) => Ok(Unmounted::Clean),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            lazy_unmount(path).map_err(err)?;
            Ok(Unmounted::Detached)
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(preflight::not_mounted(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(MountError::Mountpoint {
            path: path.to_path_buf(),
            problem: "no such directory".into(),
        }),
        Err(e) => Err(err(e)),
    }
}

fn unmount_unprivileged(path: &Path) -> Result<Unmounted, MountError> {
    if !has_program("fusermount3") {
        return Err(MountError::MissingTool(
            "unmounting as a regular user needs fusermount3 (install the fuse3 package)",
        ));
    }
    let run = |lazy: bool| {
        let mut cmd = Command::new("fusermount3");
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        cmd.arg(path).stderr(Stdio::null()).status()
    };
    match run(false) {
        Ok(s) if s.success() => Ok(Unmounted::Clean),
        _ => match run(true) {
            Ok(s) if s.success() => Ok(Unmounted::Detached),
            Ok(_) => Err(MountError::Mountpoint {
                path: path.to_path_buf(),
                problem: "fusermount3 could not unmount it".into(),
            }),
            Err(e) => Err(MountError::Unmount {
                path: path.to_path_buf(),
                source: e,
            }),
        },
    }
}
