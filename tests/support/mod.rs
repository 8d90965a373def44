//! A small real-mount harness for the decode and conventions tests:
//! [`Mounted::start`] runs `sessionfs mount --foreground` on a fresh
//! repository and mountpoint, waits until the kernel lists the mount, and on
//! drop unmounts and reaps the daemon, whatever the test did. The mount
//! tests need /dev/fuse and root; without them they fail (never skip).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_sessionfs");

/// Where test directories live: on the project's disk, not /tmp.
pub fn test_base() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).expect("create the tests' temporary directory");
    base
}

/// A fresh temporary directory under [`test_base`].
pub fn scratch(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(test_base())
        .expect("temp dir")
}

/// Panics (failing the test) unless FUSE mounts can run here.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the mount tests need FUSE (they are never skipped)"
    );
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the mount tests run as root");
}

/// True when `path` is a mount point listed in /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ').nth(4).is_some_and(|mp| {
            mp.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n")
                .replace("\\134", "\\")
                == want
        })
    })
}

/// What a command run by a test gave.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    /// Asserts exit code 0 and returns stdout.
    pub fn assert_ok(&self) -> &[u8] {
        assert_eq!(self.code, Some(0), "expected success: {self:?}");
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

/// Runs a command to completion with empty stdin, capturing its output.
pub fn run(cmd: &mut Command) -> Ran {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
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

/// A running mount.
pub struct Mounted {
    dir: TempDir,
    pub repo: PathBuf,
    pub mountpoint: PathBuf,
    daemon: Option<Child>,
    log: PathBuf,
}

impl Mounted {
    /// Mounts a new, empty repository with extra `mount` arguments.
    pub fn start(args: &[&str]) -> Mounted {
        let dir = scratch("sessionfs-view");
        let repo = dir.path().join("repo");
        fs::create_dir(&repo).expect("create repo");
        Self::start_on(dir, repo, args)
    }

    /// Mounts the repository `repo` (the mountpoint and log go in `dir`).
    pub fn start_on(dir: TempDir, repo: PathBuf, args: &[&str]) -> Mounted {
        require_fuse();
        let mountpoint = dir.path().join("mnt");
        fs::create_dir_all(&mountpoint).expect("create mountpoint");
        let log = dir.path().join("daemon.log");
        let log_file = fs::File::create(&log).expect("create daemon log");
        let daemon = Command::new(BIN)
            .arg("--repo")
            .arg(&repo)
            .arg("-vv")
            .arg("mount")
            .arg(&mountpoint)
            .arg("--foreground")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start sessionfs mount");
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
            assert!(Instant::now() < deadline, "no mount: {}", m.log_text());
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

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log_text());
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new(BIN)
                .arg("unmount")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
        }
        if is_mounted(&self.mountpoint) {
            let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
                .expect("mountpoint has no NUL");
            // SAFETY: `c` is a valid C string for the call.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        if let Some(mut child) = self.daemon.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}
