//! A real sessionfs mount for tests: [`Mounted::start`] runs
//! `sessionfs mount --foreground` as a child on a fresh repository and
//! mountpoint, waits until the kernel lists the mount, and on drop unmounts
//! and reaps the daemon, whatever the test did.
//!
//! Mount tests need /dev/fuse and root; without them they fail loudly
//! (they are never skipped).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_sessionfs");

/// Panics (failing the test) unless FUSE mounts can run here.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the mount tests need FUSE (they are never skipped)"
    );
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the mount tests must run as root (they mount for real)"
    );
}

/// True when `path` is a mount point listed in /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|mp| unescape(mp) == want))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// A running mount.
pub struct Mounted {
    dir: TempDir,
    pub repo: PathBuf,
    pub mountpoint: PathBuf,
    daemon: Option<Child>,
    log: PathBuf,
}

/// Where test directories live: on the project's disk, not /tmp.
pub fn test_base() -> PathBuf {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-tmp");
    fs::create_dir_all(&base).expect("create target/test-tmp");
    base
}

/// A fresh temporary directory under [`test_base`].
pub fn scratch(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(test_base())
        .expect("temp dir")
}

impl Mounted {
    /// Mounts a new, empty repository with extra `mount` arguments.
    pub fn start(args: &[&str]) -> Mounted {
        let dir = tempfile::Builder::new()
            .prefix("sessionfs-mount")
            .tempdir_in(test_base())
            .expect("temp dir");
        let repo = dir.path().join("repo");
        fs::create_dir(&repo).expect("create repo");
        Self::start_on(dir, repo, args)
    }

    /// Mounts an existing repository (inside `dir`) with extra arguments.
    pub fn start_on(dir: TempDir, repo: PathBuf, args: &[&str]) -> Mounted {
        require_fuse();
        let mountpoint = dir.path().join("mnt");
        fs::create_dir_all(&mountpoint).expect("create mountpoint");
        let log = dir.path().join("daemon.log");
        let log_file = fs::File::create(&log).expect("create daemon log");
        let spawning = spawn_guard();
        let daemon = Command::new(BIN)
            .arg("--repo")
            .arg(&repo)
            .arg("-vv")
            .arg("mount")
            .arg(&mountpoint)
            .arg("--foreground")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start sessionfs mount");
        drop(spawning);
        let mut m = Mounted {
            dir,
            repo,
            mountpoint,
            daemon: Some(daemon),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&m.mountpoint) {
            if let Some(child) = m.daemon.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "the daemon exited ({status}) before mounting: {}",
                    m.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear: {}",
                m.log_text()
            );
            sleep(Duration::from_millis(20));
        }
        m
    }

    /// A path inside the mount.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// A path inside the repository (bypassing the mount).
    pub fn repo_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.repo.join(rel)
    }

    /// The temporary directory holding repo, mountpoint and log.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Kills the daemon with SIGKILL (the mountpoint is left dead) and
    /// reaps it.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `sessionfs unmount` and waits for the daemon to exit.
    pub fn unmount(&mut self) -> Ran {
        let out = run(Command::new(BIN).arg("unmount").arg(&self.mountpoint));
        self.reap(Duration::from_secs(10));
        out
    }

    fn reap(&mut self, grace: Duration) {
        if let Some(mut child) = self.daemon.take() {
            let deadline = Instant::now() + grace;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ({}) ---\n{}",
                self.mountpoint.display(),
                self.log_text()
            );
        }
        if is_mounted(&self.mountpoint) {
            let spawning = spawn_guard();
            let child = Command::new(BIN)
                .arg("unmount")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .spawn();
            drop(spawning);
            if let Ok(mut child) = child {
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mountpoint) {
            let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
                .expect("mountpoint has no NUL");
            // SAFETY: `c` is a valid C string for the call.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        self.reap(Duration::from_secs(10));
    }
}

/// Runs a test body twice, as two tests: `NAME::passthrough` on a mount
/// with FUSE passthrough (the default; the test checks the daemon chose
/// it) and `NAME::daemon_served` with `--no-passthrough`.
#[macro_export]
macro_rules! both_modes {
    ($(fn $name:ident($m:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn body($m: &$crate::common::mount::Mounted) $body

                #[test]
                fn passthrough() {
                    let m = $crate::common::mount::Mounted::start(&[]);
                    body(&m);
                    m.assert_passthrough(true);
                }

                #[test]
                fn daemon_served() {
                    let m = $crate::common::mount::Mounted::start(&["--no-passthrough"]);
                    body(&m);
                    m.assert_passthrough(false);
                }
            }
        )*
    };
}

/// What a command run by a test gave.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts exit code 0 and returns stdout.
    pub fn assert_ok(&self) -> &[u8] {
        assert!(self.ok(), "expected success: {self:?}");
        &self.stdout
    }

    /// Asserts a non-zero exit and returns stderr.
    pub fn assert_fails(&self) -> &str {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected a failure: {self:?}"
        );
        &self.stderr
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Serialises the processes a test binary starts against the `session`
/// writers it holds open itself: a started process gets a copy of every
/// descriptor and closes it at exec, and a close of a writer's descriptor
/// commits its checkpoint (as `close()` does for any descriptor of the open
/// file). Tests run in parallel threads of one process, so a test that
/// holds a writer open in-process takes [`writing`] and starts nothing
/// until it drops it; everything else starts processes through [`spawn`]
/// or [`run`].
static SPAWNS: RwLock<()> = RwLock::new(());

fn spawn_guard() -> RwLockReadGuard<'static, ()> {
    SPAWNS.read().unwrap_or_else(|p| p.into_inner())
}

/// Held while this test keeps a `session` open for writing in-process (it
/// must start no process meanwhile; see [`SPAWNS`]).
pub fn writing() -> RwLockWriteGuard<'static, ()> {
    SPAWNS.write().unwrap_or_else(|p| p.into_inner())
}

/// Starts a command (see [`SPAWNS`]).
pub fn spawn(cmd: &mut Command) -> Child {
    let _g = spawn_guard();
    cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

/// Runs a command to completion with empty stdin, capturing its output.
pub fn run(cmd: &mut Command) -> Ran {
    let child = spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}"));
    Ran {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The errno of a failed call (panics if it succeeded).
pub fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected a failure, got {v:?}"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("no errno in {e:?}")),
    }
}

/// Every `session.next` under `repo` (sessions and anything else).
/// The `session.next` locks and checkpoint temporaries (`.session.tmp-*`)
/// left in any session of the repository.
pub fn leftover_locks(repo: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(repo).into_iter().flatten().flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let next = entry.path().join("session.next");
        if fs::symlink_metadata(&next).is_ok() {
            found.push(next);
        }
        for inner in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
            if inner
                .file_name()
                .to_string_lossy()
                .starts_with(".session.tmp-")
            {
                found.push(inner.path());
            }
        }
    }
    found
}

impl Mounted {
    /// `sh -c SCRIPT` with `$M` the mountpoint and `$R` the repository.
    pub fn sh(&self, script: &str) -> Ran {
        run(Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("M", &self.mountpoint)
            .env("R", &self.repo))
    }

    /// `sessionfs --repo REPO ARGS…`.
    pub fn cli<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run(Command::new(BIN)
            .env_remove("RUST_LOG")
            .arg("--repo")
            .arg(&self.repo)
            .args(args))
    }

    /// The repository, as the core sees it.
    pub fn core(&self) -> sessionfs::core::Repository {
        sessionfs::core::Repository::new(&self.repo)
    }

    /// Makes session `ID.session` (with its well-known dirs) in the
    /// repository directly; returns its name.
    pub fn new_session(&self, id: &str) -> String {
        let name = format!("{id}.session");
        fs::create_dir_all(self.repo.join(&name).join("io-logs")).expect("create session");
        name
    }

    /// Commits `data` as session `id`'s checkpoint through the core.
    pub fn save(&self, id: &str, data: &[u8]) {
        self.core()
            .open(std::ffi::OsStr::new(id))
            .expect("open session")
            .save(data)
            .expect("save checkpoint");
    }

    /// The committed checkpoint of `ID.session`, read from the repository.
    pub fn checkpoint(&self, id: &str) -> Vec<u8> {
        fs::read(self.repo.join(format!("{id}.session/session"))).expect("read checkpoint")
    }

    /// Waits (up to 5 s) until `ID.session`'s committed checkpoint is
    /// `want`: for opens that write nothing, whose commit comes with the
    /// kernel's release, after `close()` returned.
    pub fn wait_checkpoint(&self, id: &str, want: &[u8]) {
        let path = self.repo.join(format!("{id}.session/session"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = fs::read(&path).unwrap_or_default();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "checkpoint of {id} is {:?}, want {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want)
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// Asserts no `session.next` is left anywhere in the repository,
    /// waiting a little for releases the kernel sends asynchronously.
    pub fn assert_no_next(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = leftover_locks(&self.repo);
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left behind: {left:?}");
            sleep(Duration::from_millis(10));
        }
    }

    /// Asserts the daemon chose (or did not choose) FUSE passthrough.
    pub fn assert_passthrough(&self, on: bool) {
        let log = self.log_text();
        let want = if on {
            "session file I/O: FUSE passthrough"
        } else {
            "session file I/O: served by the daemon"
        };
        assert!(log.contains(want), "expected {want:?} in the log: {log}");
    }

    /// Waits for the daemon to exit on its own; its status, or `None` if it
    /// is still running after `grace`.
    pub fn wait_daemon(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let child = self.daemon.as_mut()?;
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.daemon = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }
}
