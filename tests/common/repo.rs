//! A throw-away session repository for tests, and helpers to drive the
//! `sessionfs` binary against it.
//!
//! Every [`TestRepo`] lives in its own temporary directory under the
//! project's `target/` (never `/tmp`, which may be a tmpfs with different
//! semantics), so tests run in parallel without sharing anything.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use sessionfs::core::{FaultSeam, Repository, SESSION_NEXT_FILE, Storage};
use tempfile::TempDir;

/// A repository at `ROOT/repo` (created), with room for other files in
/// `ROOT` (see [`TestRepo::outside`]).
pub struct TestRepo {
    dir: TempDir,
    repo: Repository,
}

/// What a run of the `sessionfs` binary gave.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code; `None` when a signal killed it.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CliOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Asserts a clean success (exit 0, no panic).
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success, got {self:?} (stdout {:?})",
            String::from_utf8_lossy(&self.stdout)
        );
        assert_no_panic(&self.stderr);
        self
    }

    /// Asserts a failure with `code` reported as exactly one
    /// `sessionfs: error:` line on stderr, which it returns.
    pub fn assert_error(&self, code: i32) -> String {
        assert_eq!(self.code, Some(code), "wrong exit code: {self:?}");
        assert_one_error_line(&self.stderr)
    }
}

/// The temporary directory tests are created in.
pub fn test_tmp_base() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A fresh temporary directory under `target/`.
pub fn scratch_dir() -> TempDir {
    let base = test_tmp_base();
    std::fs::create_dir_all(&base).expect("create test tmp base");
    tempfile::Builder::new()
        .prefix("sessionfs-test")
        .tempdir_in(&base)
        .expect("create temp dir")
}

impl TestRepo {
    pub fn new() -> TestRepo {
        let dir = scratch_dir();
        let location = dir.path().join("repo");
        std::fs::create_dir(&location).expect("create repo dir");
        let repo = Repository::new(&location);
        TestRepo { dir, repo }
    }

    /// A repository location that does not exist yet.
    pub fn missing() -> TestRepo {
        let dir = scratch_dir();
        let repo = Repository::new(dir.path().join("repo"));
        TestRepo { dir, repo }
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        self.repo.location()
    }

    /// The temporary directory holding the repository.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A directory next to (outside) the repository, created on demand.
    pub fn outside(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("create outside dir");
        p
    }

    /// The same repository, with a fault seam.
    pub fn with_seam(&self, seam: Arc<dyn FaultSeam>) -> Repository {
        Repository::with_seam(self.path(), seam)
    }

    /// A new session (default prefix, not legacy).
    pub fn create(&self) -> Storage {
        self.repo.create("pbox-", false).expect("create session")
    }

    /// A session directory made by hand (`ID.session`), with no well-known
    /// dirs.
    pub fn mkdir_session(&self, id: &str) -> PathBuf {
        let p = self.path().join(format!("{id}.session"));
        std::fs::create_dir(&p).expect("mkdir session");
        p
    }

    /// `sessionfs --repo REPO ARGS…`, ready to run.
    pub fn cli_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = sessionfs_command();
        cmd.arg("--repo").arg(self.path()).args(args);
        cmd
    }

    /// Runs `sessionfs --repo REPO ARGS…` with empty stdin.
    pub fn cli<I, S>(&self, args: I) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.cli_command(args), None)
    }

    /// Runs `sessionfs --repo REPO ARGS…` with `input` on stdin.
    pub fn cli_stdin<I, S>(&self, args: I, input: &[u8]) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.cli_command(args), Some(input))
    }
}

impl Default for TestRepo {
    fn default() -> Self {
        TestRepo::new()
    }
}

/// The `sessionfs` binary, with a clean logging environment.
pub fn sessionfs_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessionfs"));
    cmd.env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("PLAINBOX_SESSION_REPOSITORY");
    cmd
}

/// Runs a command to completion, feeding `input` (or nothing) on stdin.
pub fn run(mut cmd: Command, input: Option<&[u8]>) -> CliOutput {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sessionfs");
    let stdin = child.stdin.take().expect("stdin");
    let input = input.map(<[u8]>::to_vec);
    // Feed stdin from a thread so a large input cannot deadlock against a
    // full stdout pipe.
    let feeder = std::thread::spawn(move || {
        let mut stdin = stdin;
        if let Some(data) = input {
            // The child may exit early (an error) and close its end.
            let _ = stdin.write_all(&data);
        }
    });
    let out = child.wait_with_output().expect("wait for sessionfs");
    feeder.join().expect("stdin feeder");
    output(out)
}

/// Waits for a spawned child (with piped stdout/stderr) and collects it.
pub fn finish(child: Child) -> CliOutput {
    output(child.wait_with_output().expect("wait for child"))
}

fn output(out: Output) -> CliOutput {
    CliOutput {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "the command panicked: {stderr}"
    );
}

/// Asserts `stderr` is exactly one line starting `sessionfs: error:`; returns
/// it.
pub fn assert_one_error_line(stderr: &str) -> String {
    assert_no_panic(stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got {stderr:?}"
    );
    assert!(
        lines[0].starts_with("sessionfs: error: "),
        "stderr line does not start with 'sessionfs: error: ': {stderr:?}"
    );
    lines[0].to_string()
}

/// Asserts no `session.next` (lock) is left in the session.
/// Asserts nothing of a checkpoint attempt is left in the session: no
/// `session.next` and no checkpoint temporary (`.session.tmp-*`).
pub fn assert_no_next(storage: &Storage) {
    let next = storage.location().join(SESSION_NEXT_FILE);
    assert!(
        std::fs::symlink_metadata(&next).is_err(),
        "{} was left behind",
        next.display()
    );
    let temps: Vec<_> = std::fs::read_dir(storage.location())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".session.tmp-"))
        .collect();
    assert!(temps.is_empty(), "temporaries left behind: {temps:?}");
}

/// Sets a file's or directory's modification time (without following a
/// symlink at the end of `path` is not needed: tests only use it on real
/// directories and files).
pub fn set_mtime(path: &Path, when: SystemTime) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(when)
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// A recognisable pattern of `len` bytes, distinct for each `seed`; every
/// byte depends on its position, so a mix of two patterns is detectable.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let i = i as u64;
            (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed.wrapping_mul(73) ^ (i as u8)
        })
        .collect()
}

/// Which of `patterns` `data` is, if any.
pub fn which_pattern(data: &[u8], patterns: &[Vec<u8>]) -> Option<usize> {
    patterns.iter().position(|p| p.as_slice() == data)
}

/// The file mode bits of `path` (not following a symlink).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The id of a storage as a `String`.
pub fn id_of(storage: &Storage) -> String {
    storage.id().to_string_lossy().into_owned()
}
