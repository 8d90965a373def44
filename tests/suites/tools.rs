//! Where the outside test suites are, and how the suite tests run them.
//!
//! scripts/suites.sh installs them (pinned versions) under
//! `$SESSIONFS_SUITES_DIR`, by default `${XDG_CACHE_HOME:-~/.cache}/
//! sessionfs-suites`; each can also be named by its own variable (which
//! suites.sh prints). A suite that is missing fails its tests with a line
//! saying how to install it: these tests are never skipped.
//!
//! Every program runs with a deadline ([`run_bounded`]) and its whole output
//! kept in a file under [`log_dir`], which a failure message names, so a
//! failure says what broke in a few lines and the rest is one `cat` away.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::common::mount::spawn;

/// The project's directory.
pub fn project() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where scripts/suites.sh installs the suites.
pub fn suites_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SESSIONFS_SUITES_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("sessionfs-suites")
}

/// `$VAR` if set, else `default`; panics unless it is an executable file.
fn tool(var: &str, default: PathBuf, what: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or(default, PathBuf::from);
    let usable = fs::metadata(&path).is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    assert!(
        usable,
        "{what} is not installed at {} (${var}): run scripts/suites.sh, which installs it",
        path.display()
    );
    path
}

/// The fsx binary (crates.io fsx 0.3.2).
pub fn fsx() -> PathBuf {
    tool(
        "SESSIONFS_FSX",
        suites_dir().join("fsx-0.3.2/bin/fsx"),
        "fsx 0.3.2",
    )
}

/// The pjdfstest binary (crates.io pjdfstest 0.2.2).
pub fn pjdfstest() -> PathBuf {
    tool(
        "SESSIONFS_PJDFSTEST",
        suites_dir().join("pjdfstest-0.2.2/bin/pjdfstest"),
        "pjdfstest 0.2.2",
    )
}

/// The Python of the venv with checkbox-ng 1.18.1.
pub fn checkbox_python() -> PathBuf {
    tool(
        "CHECKBOX_PYTHON",
        suites_dir().join("venv-checkbox-1.18.1/bin/python"),
        "checkbox-ng 1.18.1",
    )
}

/// The Python of the venv with plainbox 0.38 (as scripts/test.sh sets it).
pub fn plainbox_python() -> PathBuf {
    tool(
        "PLAINBOX_PYTHON",
        project().join(".venv-plainbox/bin/python"),
        "plainbox 0.38",
    )
}

/// A file of the project's test data.
pub fn data(rel: &str) -> PathBuf {
    project().join("tests/data").join(rel)
}

/// Where the suites' whole outputs are kept (they outlive the test).
pub fn log_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("suite-logs");
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d
}

/// Makes `path` and every directory above it up to and including `top`
/// searchable by everyone: the suites switch to unprivileged users, who
/// must reach the directory under test (temporary directories are 0700).
pub fn open_up(path: &Path, top: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut dir = Some(path);
    while let Some(d) = dir {
        let mode = fs::metadata(d)
            .unwrap_or_else(|e| panic!("stat {}: {e}", d.display()))
            .permissions()
            .mode();
        fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", d.display()));
        if d == top {
            break;
        }
        dir = d.parent();
    }
}

/// How a bounded run ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    /// Still running at the deadline; it was killed.
    TimedOut(Duration),
}

impl Ended {
    pub fn success(&self) -> bool {
        matches!(self, Ended::Exited(s) if s.success())
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(s) => write!(f, "{s}"),
            Ended::TimedOut(d) => write!(f, "killed after {} s (its deadline)", d.as_secs()),
        }
    }
}

/// Starts `cmd` with no stdin and stdout and stderr both going to `log`.
pub fn start_logged(cmd: &mut Command, log: &Path) -> Child {
    let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
    spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err)),
    )
}

/// Waits for `child` until `deadline`, then kills it.
pub fn wait_until(child: &mut Child, started: Instant, deadline: Instant) -> Ended {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ended::Exited(status),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Ended::TimedOut(started.elapsed());
            }
            Err(e) => panic!("wait for a suite process: {e}"),
        }
    }
}

/// Runs `cmd` to completion (killed after `timeout`), its output in `log`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration, log: &Path) -> (Ended, String) {
    let started = Instant::now();
    let mut child = start_logged(cmd, log);
    let ended = wait_until(&mut child, started, started + timeout);
    (ended, read_log(log))
}

/// A log's text (lossy); empty when it cannot be read.
pub fn read_log(log: &Path) -> String {
    match fs::read(log) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

/// The last `n` lines of `text`, for a failure message.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Ends a suite test on a mount: checks the I/O mode the daemon chose,
/// unmounts, then fails with `result`'s message if it is an error. The
/// daemon's log goes to [`log_dir`] (named in the message) rather than
/// into the test's output, so the message stays short.
pub fn finish(m: crate::common::mount::Mounted, label: &str, result: Result<(), String>) {
    let passthrough = !label.contains("daemon");
    let log = m.log_text();
    let saved = log_dir().join(format!("{label}-daemon.log"));
    let _ = fs::write(&saved, &log);
    let want = if passthrough {
        "session file I/O: FUSE passthrough"
    } else {
        "session file I/O: served by the daemon"
    };
    let mode_ok = log.contains(want);
    drop(m);
    if let Err(msg) = result {
        panic!("{msg}\n(daemon log: {})", saved.display());
    }
    assert!(
        mode_ok,
        "{label}: the daemon did not log {want:?} (daemon log: {})",
        saved.display()
    );
}

/// `Ok` once no `session.next` is left in the mount's repository (waiting
/// up to 5 s for the releases the kernel sends after `close()` returned).
pub fn no_locks_left(m: &crate::common::mount::Mounted) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = crate::common::mount::leftover_locks(&m.repo);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("locks left behind in the repository: {left:?}"));
        }
        sleep(Duration::from_millis(10));
    }
}
