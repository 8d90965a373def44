//! Helpers for the crash, fault, concurrency, hostile-input and permission
//! tests:
//! - self-verifying checkpoints ([`checkpoint`], [`verify`]): the content
//!   alone says whether a file is one whole checkpoint and which one;
//! - a mount daemon that can be killed and restarted on the same repository
//!   ([`Daemon`]), always unmounted on drop;
//! - scratch filesystems: a small ext4 in a loop device ([`LoopFs`]) and a
//!   small tmpfs ([`Tmpfs`]), always unmounted and detached on drop;
//! - canaries outside the repository ([`Canary`]) watched with inotify, so a
//!   test can prove nothing outside was read, written or deleted;
//! - child processes made from the test binary itself ([`child_command`]),
//!   for writers that are killed with SIGKILL;
//! - a small deterministic random generator ([`Rng`]) and the soak
//!   statistics line ([`report_stats`]).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::mount::{BIN, is_mounted, require_fuse, test_base};

// ----- self-verifying checkpoints ------------------------------------------

/// The first bytes of every test checkpoint.
pub const MAGIC: &[u8; 8] = b"SFSCKPT1";
/// Header (magic, seed, length) plus trailer (hash).
pub const OVERHEAD: usize = 8 + 8 + 8 + 8;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fill_body(seed: u64, body: &mut [u8]) {
    let mut state = seed ^ 0x5EED_0F5E_5510_7F5D;
    for chunk in body.chunks_mut(8) {
        let v = splitmix(&mut state).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// A checkpoint of `len` bytes (at least [`OVERHEAD`]) that names its seed
/// and length in a header, derives its body from the seed and ends with a
/// hash of everything before it.
pub fn checkpoint(seed: u64, len: usize) -> Vec<u8> {
    let len = len.max(OVERHEAD);
    let mut data = vec![0u8; len];
    data[..8].copy_from_slice(MAGIC);
    data[8..16].copy_from_slice(&seed.to_le_bytes());
    data[16..24].copy_from_slice(&(len as u64).to_le_bytes());
    fill_body(seed, &mut data[24..len - 8]);
    let h = fnv1a(&data[..len - 8]);
    data[len - 8..].copy_from_slice(&h.to_le_bytes());
    data
}

/// The seed of `data` when it is exactly one whole checkpoint made by
/// [`checkpoint`]; otherwise why not.
pub fn verify(data: &[u8]) -> Result<u64, String> {
    if data.len() < OVERHEAD {
        return Err(format!("{} bytes: shorter than any checkpoint", data.len()));
    }
    if &data[..8] != MAGIC {
        return Err(format!(
            "bad magic {:?} ({} bytes)",
            String::from_utf8_lossy(&data[..8]),
            data.len()
        ));
    }
    let seed = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let len = u64::from_le_bytes(data[16..24].try_into().unwrap()) as usize;
    if len != data.len() {
        return Err(format!(
            "checkpoint {seed:#x} says {len} bytes, the file has {}",
            data.len()
        ));
    }
    let h = u64::from_le_bytes(data[len - 8..].try_into().unwrap());
    if h != fnv1a(&data[..len - 8]) {
        return Err(format!(
            "checkpoint {seed:#x}: hash mismatch (mixed or torn)"
        ));
    }
    let mut body = vec![0u8; len - OVERHEAD];
    fill_body(seed, &mut body);
    if body != data[24..len - 8] {
        return Err(format!(
            "checkpoint {seed:#x}: body does not match its seed"
        ));
    }
    Ok(seed)
}

/// Reads `path` and verifies it (`Ok(None)` when it does not exist).
pub fn verify_file(path: &Path) -> Result<Option<u64>, String> {
    match fs::read(path) {
        Ok(data) => verify(&data).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

// ----- randomness ----------------------------------------------------------

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `SESSIONFS_TEST_SEED` if set, else from the clock; the
    /// seed is printed so a failing run can be replayed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("SESSIONFS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{test}: SESSIONFS_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        splitmix(&mut self.0)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 99) < percent
    }
}

// ----- trial counts, durations and the soak statistics ---------------------

/// `name` from the environment as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How long a soak run gives each scenario (`SESSIONFS_SOAK_SECONDS`; 0 =
/// not soaking: run the fixed number of trials).
pub fn soak_duration() -> Option<Duration> {
    match env_u64("SESSIONFS_SOAK_SECONDS", 0) {
        0 => None,
        s => Some(Duration::from_secs(s)),
    }
}

/// Decides when a scenario has run enough trials: `min` trials (or the
/// count in `env_var`), and under a soak at least until the soak time is up.
pub struct Trials {
    min: u64,
    deadline: Option<Instant>,
    pub done: u64,
}

impl Trials {
    pub fn new(env_var: &str, default: u64) -> Trials {
        Trials {
            min: env_u64(env_var, default),
            deadline: soak_duration().map(|d| Instant::now() + d),
            done: 0,
        }
    }

    /// True while another trial should run (counts it).
    pub fn another(&mut self) -> bool {
        let more = self.done < self.min || self.deadline.is_some_and(|d| Instant::now() < d);
        if more {
            self.done += 1;
        }
        more
    }
}

/// What a crash or concurrency scenario counted.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub trials: u64,
    pub commits: u64,
    /// `session` was not one whole checkpoint.
    pub torn: u64,
    /// A commit that returned success is not in `session`.
    pub lost: u64,
    /// A writer killed before it called close() had its data committed.
    pub killed_committed: u64,
    /// Writers killed before close() (whose data must not be committed).
    pub killed_before_close: u64,
    /// Writers killed while inside close(): either outcome is allowed.
    pub killed_in_close: u64,
    /// Stale locks found after a crash and cleared.
    pub stale_locks: u64,
    /// Anything else that broke the rules (described in `problems`).
    pub problems: Vec<String>,
}

impl Stats {
    pub fn problem(&mut self, what: String) {
        eprintln!("PROBLEM: {what}");
        if self.problems.len() < 50 {
            self.problems.push(what);
        }
    }

    /// Prints the line `scripts/soak.sh` adds up, then fails the test if
    /// any rule was broken.
    pub fn report_and_check(&self, scenario: &str) {
        report_stats(scenario, self);
        assert!(
            self.torn == 0
                && self.lost == 0
                && self.killed_committed == 0
                && self.problems.is_empty(),
            "{scenario}: {self:?}"
        );
    }
}

/// One `SOAK-STATS` line on stderr (and in `SESSIONFS_SOAK_STATS_FILE`, if
/// set).
pub fn report_stats(scenario: &str, s: &Stats) {
    let line = format!(
        "SOAK-STATS scenario={scenario} trials={} commits={} torn={} lost={} \
         killed_committed={} killed_before_close={} killed_in_close={} stale_locks={} problems={}",
        s.trials,
        s.commits,
        s.torn,
        s.lost,
        s.killed_committed,
        s.killed_before_close,
        s.killed_in_close,
        s.stale_locks,
        s.problems.len()
    );
    eprintln!("{line}");
    if let Ok(path) = std::env::var("SESSIONFS_SOAK_STATS_FILE") {
        // One append of one line: concurrent tests never interleave.
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

// ----- children made from the test binary ----------------------------------

/// The environment variable that tells a re-executed test binary which
/// child role to play.
pub const CHILD_ROLE: &str = "SESSIONFS_TEST_CHILD";

/// A command that runs only the test `entry` of this test binary, with
/// `role` in [`CHILD_ROLE`]; `entry` returns at once unless that variable is
/// set, so in a normal run it is an empty test.
pub fn child_command(entry: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("current test executable");
    let mut cmd = Command::new(exe);
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_ROLE, role)
        .env_remove("SESSIONFS_SOAK_SECONDS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The child role of this process, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ROLE).ok()
}

/// Appends one record to a child's progress log with a single write(2),
/// so a SIGKILL leaves whole records only.
pub fn log_record(log: &Path, record: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open progress log");
    f.write_all(format!("{record}\n").as_bytes())
        .expect("write progress log");
}

/// The records of a progress log.
pub fn read_records(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `log` has a record starting with `prefix` or `child` exits;
/// true if the record came.
pub fn wait_for_record(log: &Path, prefix: &str, child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if read_records(log).iter().any(|r| r.starts_with(prefix)) {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
            return read_records(log).iter().any(|r| r.starts_with(prefix));
        }
        sleep(Duration::from_micros(200));
    }
}

/// SIGKILLs `child` (if it still runs) and reaps it; true if the kill is
/// what ended it.
pub fn kill_and_reap(child: &mut Child) -> bool {
    let _ = child.kill();
    match child.wait() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status.signal() == Some(libc::SIGKILL)
        }
        Err(_) => false,
    }
}

/// Sleeps for `us` microseconds (0 = not at all).
pub fn pause_us(us: u64) {
    if us > 0 {
        sleep(Duration::from_micros(us));
    }
}

// ----- raw file operations whose errors are checked ------------------------

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// open(2) returning the raw errno on failure.
pub fn open_raw(path: &Path, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    let c = cpath(path);
    // SAFETY: `c` is a valid C string for the call.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        // SAFETY: `fd` was just returned by open(2).
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Writes all of `data` at the file offset; the errno of the first failure.
pub fn write_all_raw(fd: &OwnedFd, mut data: &[u8]) -> Result<(), i32> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid buffer of its length; `fd` is open.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// close(2) with its result (an `OwnedFd` drop ignores it).
pub fn close_raw(fd: OwnedFd) -> Result<(), i32> {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: we own `raw` and close it exactly once.
    if unsafe { libc::close(raw) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// fsync(2) with its errno.
pub fn fsync_raw(fd: &OwnedFd) -> Result<(), i32> {
    // SAFETY: `fd` is open.
    if unsafe { libc::fsync(fd.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// ftruncate(2) with its errno.
pub fn ftruncate_raw(fd: &OwnedFd, len: u64) -> Result<(), i32> {
    // SAFETY: `fd` is open.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Writes a whole checkpoint through the mount the way a script does:
/// open with `O_TRUNC`, write, close; the errno of the first failing step.
pub fn write_through(path: &Path, data: &[u8]) -> Result<(), (&'static str, i32)> {
    let fd = open_raw(path, libc::O_WRONLY | libc::O_TRUNC, 0o644).map_err(|e| ("open", e))?;
    if let Err(e) = write_all_raw(&fd, data) {
        let _ = close_raw(fd);
        return Err(("write", e));
    }
    close_raw(fd).map_err(|e| ("close", e))
}

pub fn errno_name(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

// ----- running tools -------------------------------------------------------

/// Runs a command to completion with output captured.
pub fn run_cmd(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command and panics unless it succeeds.
pub fn must(cmd: &mut Command) -> Output {
    let out = run_cmd(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `sessionfs ARGS…` with a clean environment.
pub fn sessionfs() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("PLAINBOX_SESSION_REPOSITORY");
    cmd
}

/// Panics unless `tool` is on the PATH (tests never skip).
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} (scripts/test.sh does)"
    );
}

// ----- a mount daemon that can be killed and restarted ---------------------

/// `sessionfs mount --foreground` on a repository and mountpoint this
/// struct does not own, so a test can kill it and mount again. Dropping it
/// unmounts (also a dead mount) and reaps the daemon.
pub struct Daemon {
    pub repo: PathBuf,
    pub mountpoint: PathBuf,
    pub log: PathBuf,
    wrapper: Vec<String>,
    args: Vec<String>,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(repo: &Path, mountpoint: &Path, log: &Path, args: &[&str]) -> Daemon {
        Self::start_wrapped(&[], repo, mountpoint, log, args)
    }

    /// Runs the daemon under `wrapper` (such as `strace -f -e inject=…`).
    pub fn start_wrapped(
        wrapper: &[&str],
        repo: &Path,
        mountpoint: &Path,
        log: &Path,
        args: &[&str],
    ) -> Daemon {
        let mut d = Daemon {
            repo: repo.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            log: log.to_path_buf(),
            wrapper: wrapper.iter().map(|a| a.to_string()).collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        d.spawn();
        d
    }

    /// Mounts again on the same mountpoint (after [`Daemon::kill`] and an
    /// unmount): the old daemon is reaped first, and nothing is unmounted.
    pub fn restart(&mut self) {
        self.reap(Duration::from_secs(10));
        self.spawn();
    }

    fn spawn(&mut self) {
        require_fuse();
        fs::create_dir_all(&self.mountpoint).expect("create mountpoint");
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        let mut cmd = match self.wrapper.split_first() {
            None => sessionfs(),
            Some((tool, rest)) => {
                let mut c = Command::new(tool);
                c.args(rest).arg(BIN);
                c
            }
        };
        let child = cmd
            .arg("--repo")
            .arg(&self.repo)
            .arg("mount")
            .arg(&self.mountpoint)
            .arg("--foreground")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start sessionfs mount");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&self.mountpoint) {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "the daemon exited ({status}) before mounting: {}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear: {}",
                self.log_text()
            );
            sleep(Duration::from_millis(5));
        }
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the mountpoint is left dead.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `sessionfs unmount`, then waits for the daemon to exit.
    pub fn stop(&mut self) -> Output {
        let out = run_cmd(sessionfs().arg("unmount").arg(&self.mountpoint));
        self.reap(Duration::from_secs(10));
        out
    }

    fn reap(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + grace;
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(10)),
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        force_unmount(&self.mountpoint);
        self.reap(Duration::from_secs(10));
    }
}

/// Unmounts `path` (live or dead) if it is mounted: `sessionfs unmount`,
/// then a lazy detach as the last resort.
pub fn force_unmount(path: &Path) {
    if is_mounted(path) {
        let _ = sessionfs()
            .arg("unmount")
            .arg(path)
            .stderr(Stdio::null())
            .status();
    }
    if is_mounted(path) {
        umount_lazy(path);
    }
}

fn umount_lazy(path: &Path) {
    let c = cpath(path);
    // SAFETY: `c` is a valid C string for the call.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// Unmounts `mnt` if it is mounted, lazily when it is busy.
fn unmount_if_mounted(mnt: &Path) {
    if is_mounted(mnt) {
        let ok = Command::new("umount")
            .arg(mnt)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            umount_lazy(mnt);
        }
    }
}

/// A fresh scratch directory under `target/test-tmp` (removed on drop).
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(test_base())
        .expect("scratch dir")
}

// ----- scratch filesystems -------------------------------------------------

static LOOP_LOCK: Mutex<()> = Mutex::new(());

/// Serialises the loop-device tests of one test binary.
pub fn loop_lock() -> MutexGuard<'static, ()> {
    LOOP_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests of one test binary that write through a mount from
/// the test process itself. A process started meanwhile by a parallel test
/// would get a copy of the writer's descriptor and close it at exec, and
/// any close() of a `session` descriptor commits what was written so far.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A small ext4 filesystem in a loop device, mounted on `mnt`. Dropping it
/// unmounts, detaches the loop device and removes the image, whatever the
/// test did.
pub struct LoopFs {
    _dir: tempfile::TempDir,
    image: PathBuf,
    pub dev: String,
    pub mnt: PathBuf,
}

impl LoopFs {
    pub fn new(size_mb: u64) -> LoopFs {
        require_tool("mkfs.ext4", "e2fsprogs");
        require_tool("losetup", "mount");
        let dir = scratch("sessionfs-loop");
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).expect("create loop mountpoint");
        let f = fs::File::create(&image).expect("create image");
        f.set_len(size_mb << 20).expect("size image");
        drop(f);
        // `losetup -f` picks a free device; another process may win the
        // race for it, so try a few times.
        let mut dev = String::new();
        for _ in 0..10 {
            let out = run_cmd(Command::new("losetup").arg("-f").arg("--show").arg(&image));
            if out.status.success() {
                dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
                break;
            }
            sleep(Duration::from_millis(50));
        }
        assert!(
            !dev.is_empty(),
            "losetup -f --show {} failed",
            image.display()
        );
        let mut lfs = LoopFs {
            _dir: dir,
            image,
            dev,
            mnt,
        };
        // No lazy initialisation: nothing may write to the filesystem in
        // the background while a test decides what a power cut kept.
        must(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
                .arg(&lfs.dev),
        );
        lfs.mount();
        lfs
    }

    pub fn mount(&mut self) {
        must(
            Command::new("mount")
                .arg("-t")
                .arg("ext4")
                .arg(&self.dev)
                .arg(&self.mnt),
        );
    }

    pub fn unmount(&mut self) {
        if is_mounted(&self.mnt) {
            let out = run_cmd(Command::new("umount").arg(&self.mnt));
            if !out.status.success() {
                panic!(
                    "umount {} failed: {}",
                    self.mnt.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// Cuts the filesystem off as a power cut would: `xfs_io -x -c
    /// shutdown` without `-f` (nothing more is flushed; what was not
    /// committed to the journal is lost).
    pub fn power_cut(&self) {
        require_tool("xfs_io", "xfsprogs");
        must(
            Command::new("xfs_io")
                .arg("-x")
                .arg("-c")
                .arg("shutdown")
                .arg(&self.mnt),
        );
    }

    /// An `xfs_io -x` started now, waiting for its `shutdown` command: a
    /// power cut that needs no process started at the moment of the cut
    /// (when writers in this process may hold `session` open in a mount).
    pub fn power_switch(&self) -> PowerSwitch {
        require_tool("xfs_io", "xfsprogs");
        let child = Command::new("xfs_io")
            .arg("-x")
            .arg(&self.mnt)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xfs_io");
        PowerSwitch { child: Some(child) }
    }

    /// Unmounts and mounts again (the journal is replayed).
    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        unmount_if_mounted(&self.mnt);
        for _ in 0..20 {
            let ok = Command::new("losetup")
                .arg("-d")
                .arg(&self.dev)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = fs::remove_file(&self.image);
    }
}

/// A running `xfs_io -x MOUNTPOINT` (see [`LoopFs::power_switch`]).
pub struct PowerSwitch {
    child: Option<Child>,
}

impl PowerSwitch {
    /// `shutdown` (without `-f`): the filesystem is cut off at once.
    pub fn cut(mut self) {
        let mut child = self.child.take().expect("xfs_io");
        let mut stdin = child.stdin.take().expect("xfs_io stdin");
        stdin
            .write_all(b"shutdown\n")
            .expect("send shutdown to xfs_io");
        drop(stdin);
        let out = child.wait_with_output().expect("wait for xfs_io");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "xfs_io shutdown failed: {out:?}"
        );
    }
}

impl Drop for PowerSwitch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A small tmpfs mounted on a scratch directory; unmounted on drop.
pub struct Tmpfs {
    _dir: tempfile::TempDir,
    pub mnt: PathBuf,
}

impl Tmpfs {
    pub fn new(size: &str) -> Tmpfs {
        let dir = scratch("sessionfs-tmpfs");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).expect("create tmpfs mountpoint");
        must(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0755"))
                .arg("tmpfs")
                .arg(&mnt),
        );
        Tmpfs { _dir: dir, mnt }
    }

    /// Remounts read-only (or read-write).
    pub fn set_read_only(&self, ro: bool) {
        must(
            Command::new("mount")
                .arg("-o")
                .arg(if ro { "remount,ro" } else { "remount,rw" })
                .arg(&self.mnt),
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount_if_mounted(&self.mnt);
    }
}

/// Fills the filesystem holding `dir` with a file, leaving about `leave`
/// bytes free; returns the filler's path.
pub fn fill_up(dir: &Path, leave: u64) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = fs::File::create(&filler).expect("create filler");
    let chunk = vec![0xA5u8; 64 << 10];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = ((free - leave) as usize).min(chunk.len());
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        let _ = f.sync_all();
    }
    let _ = f.sync_all();
    filler
}

/// Bytes free for root on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> u64 {
    let c = cpath(dir);
    // SAFETY: statvfs fills the zeroed struct; `c` is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(
            libc::statvfs(c.as_ptr(), &mut st),
            0,
            "statvfs {}",
            dir.display()
        );
        st.f_bfree * st.f_frsize
    }
}

// ----- canaries outside the repository -------------------------------------

/// Files outside the repository that must never be read, written or
/// deleted: their contents are snapshotted and an inotify watch reports
/// any open, read, write, attribute change, creation or deletion in them.
pub struct Canary {
    pub dir: PathBuf,
    pub file: PathBuf,
    snapshot: BTreeMap<PathBuf, (u64, u32, i64, Vec<u8>)>,
    inotify: OwnedFd,
}

impl Canary {
    /// Makes `dir` with a file, a subdirectory and a file in it.
    pub fn new(dir: &Path) -> Canary {
        fs::create_dir_all(dir.join("sub")).expect("create canary dir");
        let file = dir.join("canary.txt");
        fs::write(&file, b"canary: must never be read or changed\n").expect("write canary");
        fs::write(dir.join("sub/deep.txt"), b"deep canary\n").expect("write deep canary");
        // Files a hostile session would want to replace or use.
        fs::write(dir.join("session"), b"outside session file\n").expect("write canary");
        let snapshot = snapshot(dir);
        // SAFETY: inotify_init1 has no pointer arguments.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", io::Error::last_os_error());
        // SAFETY: `fd` was just returned by inotify_init1.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let mask = libc::IN_ACCESS
            | libc::IN_MODIFY
            | libc::IN_ATTRIB
            | libc::IN_OPEN
            | libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF;
        for d in [dir.to_path_buf(), dir.join("sub")] {
            let c = cpath(&d);
            // SAFETY: valid descriptor and C string.
            let wd = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c.as_ptr(), mask) };
            assert!(
                wd >= 0,
                "inotify_add_watch {}: {}",
                d.display(),
                io::Error::last_os_error()
            );
        }
        Canary {
            dir: dir.to_path_buf(),
            file,
            snapshot,
            inotify,
        }
    }

    /// The inotify events seen so far, as `MASK name` strings.
    pub fn events(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // SAFETY: `buf` is a valid writable buffer of its length.
            let n =
                unsafe { libc::read(self.inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut off = 0usize;
            let hdr = std::mem::size_of::<libc::inotify_event>();
            while off + hdr <= n as usize {
                // SAFETY: the kernel wrote whole inotify_event records; read
                // the header unaligned.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let name_bytes = &buf[off + hdr..off + hdr + ev.len as usize];
                let name_end = name_bytes
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(name_bytes.len());
                out.push(format!(
                    "{:#x} {}",
                    ev.mask,
                    String::from_utf8_lossy(&name_bytes[..name_end])
                ));
                off += hdr + ev.len as usize;
            }
        }
        out
    }

    /// Panics if anything in the canary directory was touched.
    pub fn assert_untouched(&self) {
        let events = self.events();
        assert!(
            events.is_empty(),
            "files outside the repository were accessed: {events:?} in {}",
            self.dir.display()
        );
        let now = snapshot(&self.dir);
        // Reading the canaries just now made events of its own.
        let _ = self.events();
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            self.snapshot.keys().collect::<Vec<_>>(),
            "the canary directory's entries changed"
        );
        assert!(now == self.snapshot, "a canary file changed");
    }
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u32, i64, Vec<u8>)> {
    let mut map = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read canary dir") {
            let p = e.expect("canary entry").path();
            let m = fs::symlink_metadata(&p).expect("stat canary");
            let content = if m.is_file() {
                fs::read(&p).expect("read canary")
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            map.insert(
                p,
                (
                    m.ino(),
                    m.mode(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000,
                    content,
                ),
            );
        }
    }
    map
}

/// The names in a directory (for before/after comparisons).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// True if `name` (raw bytes) exists in `dir` (without following it).
pub fn exists_in(dir: &Path, name: &[u8]) -> bool {
    fs::symlink_metadata(dir.join(OsStr::from_bytes(name))).is_ok()
}

/// Asserts `text` holds exactly one `sessionfs: error:` line that mentions
/// every one of `needles`; returns it.
pub fn assert_clear_error(stderr: &[u8], needles: &[&str]) -> String {
    let text = String::from_utf8_lossy(stderr);
    assert!(
        !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
        "panic: {text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {text:?}");
    assert!(
        lines[0].starts_with("sessionfs: error: "),
        "not an error line: {text:?}"
    );
    for n in needles {
        assert!(
            lines[0].contains(n),
            "error line {:?} does not mention {n:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes.
pub fn mono_ns() -> u64 {
    // SAFETY: clock_gettime fills the zeroed timespec.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}
