//! The sessionfs benchmark: commit latency, read throughput, `ls -l` of a
//! large repository, daemon memory, concurrent writers and walks of the
//! whole mount (`find`, `ls -lR`, `du`, `tar`), measured side by side on one
//! disk, with bindfs as an anchor for the read, `ls` and walk rows. `scripts/bench.sh` builds it and runs it on the
//! project's disk and on a journaled ext4 image, then merges the results.
//!
//! ```text
//! bench run --dir WORK [--label TEXT] [--quick] [--rounds N] [--out FILE]
//!           [--sessionfs PATH] [--walk-large-sessions N]
//!           [--phases commit,read,ls,rss,writers,walk,walk-large]
//! bench report FILE...      (one column per results file)
//! ```
//!
//! `run` makes `WORK/repo` and `WORK/repo-ls`, mounts them itself (one
//! daemon with FUSE passthrough, one with `--no-passthrough`, each started
//! as `sessionfs mount --foreground` and always unmounted), and prints the
//! medians as it goes. The machine is noisy, so every timed variant is
//! interleaved with the others inside each round (A B C A B C …, the order
//! rotating every round); a row's figure is the median of its per-round
//! medians and its ratio is that median over the reference's. The walk
//! phases live in `walk.rs`, the bindfs anchor in `anchor.rs`; `walk-large`
//! (`find` over 100,000 sessions) runs in full mode only.

use std::collections::BTreeMap;
use std::error::Error;
use std::ffi::{CString, OsStr};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use sessionfs::core::{Repository, Storage};

mod anchor;
mod walk;

use anchor::Bindfs;

type Res<T> = Result<T, Box<dyn Error>>;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

#[derive(Parser)]
#[command(about = "sessionfs benchmark (see scripts/bench.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure on the filesystem holding --dir
    Run(RunArgs),
    /// Print the table of one or more results files side by side
    Report {
        /// Results files written by `run --out`
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Work directory (repositories and mount points are made inside)
    #[arg(long)]
    dir: PathBuf,
    /// The column's name in the table (what disk this is)
    #[arg(long)]
    label: Option<String>,
    /// Fewer rounds, a 2,000-session `ls` and a 256 MiB memory test
    #[arg(long)]
    quick: bool,
    /// Rounds of the commit benchmark (reads, ls and writers scale with it)
    #[arg(long)]
    rounds: Option<usize>,
    /// Write the results here (for `report`)
    #[arg(long)]
    out: Option<PathBuf>,
    /// The sessionfs executable [default: ../sessionfs next to this program]
    #[arg(long)]
    sessionfs: Option<PathBuf>,
    /// Which measurements to run
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "commit,read,ls,rss,writers,walk,walk-large"
    )]
    phases: Vec<String>,
    /// Only these commit sizes (e.g. 4K,64M), for profiling one row
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<String>,
    /// Sessions of the walk-large phase [default: 100000; none in --quick]
    #[arg(long)]
    walk_large_sessions: Option<usize>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Report { files } => report(&files),
    };
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

// ----- small helpers ------------------------------------------------------

fn cpath(p: &Path) -> Res<CString> {
    Ok(CString::new(p.as_os_str().as_bytes())?)
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

fn write_all_fd(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid readable slice for the whole call.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io::Error::new(e.kind(), format!("write: {e}")));
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Closes a descriptor and reports close's error (a mount commits there).
fn close_checked(fd: OwnedFd) -> io::Result<()> {
    // SAFETY: the descriptor is owned and given up here, closed once.
    check(unsafe { libc::close(fd.into_raw_fd()) }, "close").map(|_| ())
}

fn open_fd(path: &CString, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid C string; mode is the variadic argument.
    let fd = check(
        unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) },
        "open",
    )?;
    // SAFETY: `fd` was just returned by open(2) and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fsync_fd(fd: RawFd) -> io::Result<()> {
    // SAFETY: fsync on a descriptor has no memory-safety preconditions.
    check(unsafe { libc::fsync(fd) }, "fsync").map(|_| ())
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Data that no layer could compress or dedupe.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn size_name(n: usize) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{} KiB", n / KIB)
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn session_dir(repo: &Path, name: &str) -> PathBuf {
    repo.join(format!("{name}.session"))
}

/// Makes a session directory the way the core lays it out.
fn make_session(repo: &Path, name: &str) -> Res<PathBuf> {
    let dir = session_dir(repo, name);
    fs::create_dir_all(dir.join("io-logs"))?;
    // A run killed in the middle of a commit leaves its lock behind, which
    // the raw floor (the bare protocol, no stale-lock breaking) would
    // refuse forever: each run starts from an unlocked session.
    match fs::remove_file(dir.join("session.next")) {
        Ok(()) => println!("(removed the lock {name} kept from an interrupted run)"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("remove the stale lock of {name}: {e}").into()),
    }
    Ok(dir)
}

fn storage(repo: &Repository, name: &str) -> Res<Storage> {
    Ok(repo.open(OsStr::new(name))?)
}

fn drop_session(repo: &Path, name: &str) {
    let _ = fs::remove_dir_all(session_dir(repo, name));
}

// ----- the daemon -----------------------------------------------------------

/// A `sessionfs mount --foreground` child; unmounted when dropped, also on
/// an error or a panic.
struct Mount {
    sessionfs: PathBuf,
    mountpoint: PathBuf,
    child: Option<Child>,
    passthrough: bool,
}

fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mountpoint.as_os_str().as_bytes();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp.as_bytes() == want)
}

impl Mount {
    fn start(
        sessionfs: &Path,
        repo: &Path,
        mountpoint: &Path,
        passthrough: bool,
        log: &Path,
    ) -> Res<Mount> {
        Mount::start_logged(sessionfs, repo, mountpoint, passthrough, log, None)
    }

    /// As `start`, with the daemon's `RUST_LOG` set to `rust_log` (for
    /// request counts from fuser's debug log; never for a timed daemon).
    fn start_logged(
        sessionfs: &Path,
        repo: &Path,
        mountpoint: &Path,
        passthrough: bool,
        log: &Path,
        rust_log: Option<&str>,
    ) -> Res<Mount> {
        fs::create_dir_all(mountpoint)?;
        let mountpoint = mountpoint.canonicalize()?;
        if is_mounted(&mountpoint) {
            return Err(format!("{} is already mounted", mountpoint.display()).into());
        }
        let log_file = File::create(log)?;
        let mut cmd = Command::new(sessionfs);
        cmd.arg("--repo")
            .arg(repo)
            .arg("-v")
            .arg("mount")
            .arg(&mountpoint)
            .arg("--foreground");
        if !passthrough {
            cmd.arg("--no-passthrough");
        }
        match rust_log {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", sessionfs.display()))?;
        let mut mount = Mount {
            sessionfs: sessionfs.to_path_buf(),
            mountpoint: mountpoint.clone(),
            child: Some(child),
            passthrough: false,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !is_mounted(&mountpoint) {
            if let Some(child) = mount.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                mount.child = None;
                let text = fs::read_to_string(log).unwrap_or_default();
                return Err(
                    format!("the daemon exited ({status}) before mounting:\n{text}").into(),
                );
            }
            if Instant::now() > deadline {
                return Err(format!("{} was not mounted in time", mountpoint.display()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The first request completes the handshake; the daemon logs there
        // how it serves file I/O.
        fs::read_dir(&mountpoint)?.for_each(drop);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if text.contains("session file I/O: FUSE passthrough") {
                mount.passthrough = true;
                break;
            }
            if text.contains("session file I/O:") || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if passthrough && !mount.passthrough {
            eprintln!(
                "bench: warning: the kernel refused FUSE passthrough on {}: its figures are the fallback path's",
                mountpoint.display()
            );
        }
        Ok(mount)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new(&self.sessionfs)
            .arg("unmount")
            .arg(&self.mountpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if is_mounted(&self.mountpoint) {
            // A daemon that died leaves the mount dead; clear it anyway.
            let _ = Command::new(&self.sessionfs)
                .arg("unmount")
                .arg(&self.mountpoint)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn vm_hwm_kib(pid: u32) -> Res<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("VmHWM:") {
            let kib = rest.trim().trim_end_matches("kB").trim().parse::<u64>()?;
            return Ok(kib);
        }
    }
    Err("no VmHWM in /proc/PID/status".into())
}

// ----- the operations measured ------------------------------------------------

/// The raw floor: exactly the commit protocol's syscalls, nothing else.
fn commit_floor(dir: &CString, data: &[u8]) -> io::Result<()> {
    let dfd = open_fd(dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let next = c"session.next";
    let target = c"session";
    // SAFETY: valid descriptor and C strings; mode is the variadic argument.
    let fd = check(
        unsafe {
            libc::openat(
                dfd.as_raw_fd(),
                next.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        },
        "openat session.next",
    )?;
    // SAFETY: `fd` was just returned by openat(2) and belongs to nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    write_all_fd(fd.as_raw_fd(), data)?;
    fsync_fd(fd.as_raw_fd())?;
    close_checked(fd)?;
    // SAFETY: valid descriptor and C strings.
    check(
        unsafe {
            libc::renameat(
                dfd.as_raw_fd(),
                next.as_ptr(),
                dfd.as_raw_fd(),
                target.as_ptr(),
            )
        },
        "renameat",
    )?;
    fsync_fd(dfd.as_raw_fd())?;
    close_checked(dfd)
}

/// A commit through the mount: open with O_TRUNC, write, [fsync,] close.
fn commit_mount(file: &CString, data: &[u8], fsync: bool) -> io::Result<()> {
    let fd = open_fd(file, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644)?;
    write_all_fd(fd.as_raw_fd(), data)?;
    if fsync {
        fsync_fd(fd.as_raw_fd())?;
    }
    close_checked(fd)
}

/// Reads a file whole with 1 MiB reads; returns the bytes read. Each read
/// runs on a thread of its own: the daemon sees a new reader (the FUSE
/// request's pid is the thread's id), as it does for `cat` or `cp`.
fn read_whole(path: &Path, buf: &mut [u8]) -> io::Result<u64> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut f = File::open(path)?;
                let mut total = 0u64;
                loop {
                    let n = f.read(buf)?;
                    if n == 0 {
                        return Ok(total);
                    }
                    total += n as u64;
                }
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader panicked")))
    })
}

fn time<T>(f: impl FnOnce() -> io::Result<T>) -> Res<(f64, T)> {
    let t = Instant::now();
    let v = f()?;
    Ok((t.elapsed().as_secs_f64() * 1000.0, v))
}

// ----- results ------------------------------------------------------------------

/// One figure of a column: `section`, `row`, `variant` name it; `value` is
/// in `unit`; `ratio` is against the row's reference variant.
#[derive(Clone, Debug)]
struct Figure {
    section: String,
    row: String,
    variant: String,
    value: f64,
    unit: String,
    ratio: Option<f64>,
}

#[derive(Default)]
struct Results {
    meta: Vec<(String, String)>,
    figures: Vec<Figure>,
}

impl Results {
    fn add(&mut self, section: &str, row: &str, variant: &str, value: f64, unit: &str) {
        self.figures.push(Figure {
            section: section.into(),
            row: row.into(),
            variant: variant.into(),
            value,
            unit: unit.into(),
            ratio: None,
        });
    }

    fn set_ratios(&mut self, section: &str, row: &str, reference: &str) {
        let Some(base) = self
            .figures
            .iter()
            .find(|f| f.section == section && f.row == row && f.variant == reference)
            .map(|f| f.value)
        else {
            return;
        };
        for f in &mut self.figures {
            if f.section == section && f.row == row {
                f.ratio = Some(f.value / base);
            }
        }
    }

    fn meta(&mut self, key: &str, value: impl Into<String>) {
        self.meta.push((key.into(), value.into()));
    }

    fn save(&self, path: &Path) -> Res<()> {
        let mut out = String::new();
        for (k, v) in &self.meta {
            writeln!(out, "meta\t{k}\t{v}")?;
        }
        for f in &self.figures {
            writeln!(
                out,
                "fig\t{}\t{}\t{}\t{}\t{}\t{}",
                f.section,
                f.row,
                f.variant,
                f.value,
                f.unit,
                f.ratio.map(|r| r.to_string()).unwrap_or_default()
            )?;
        }
        fs::write(path, out)?;
        Ok(())
    }

    fn load(path: &Path) -> Res<Results> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut r = Results::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["meta", k, v] => r.meta(k, *v),
                ["fig", section, row, variant, value, unit, ratio] => r.figures.push(Figure {
                    section: section.to_string(),
                    row: row.to_string(),
                    variant: variant.to_string(),
                    value: value.parse()?,
                    unit: unit.to_string(),
                    ratio: if ratio.is_empty() {
                        None
                    } else {
                        Some(ratio.parse()?)
                    },
                }),
                _ => {}
            }
        }
        Ok(r)
    }

    fn get_meta(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

// ----- the run ------------------------------------------------------------------

struct Plan {
    rounds: usize,
    /// (size, commits per variant per round)
    commit_sizes: Vec<(usize, usize)>,
    read_sizes: Vec<usize>,
    read_rounds: usize,
    repeated_reads: usize,
    ls_sessions: usize,
    ls_rounds: usize,
    ls_reps: usize,
    rss_size: usize,
    writers: Vec<usize>,
    writer_secs: f64,
    writer_rounds: usize,
    walk_sessions: usize,
    walk_rounds: usize,
    /// Sessions of the `find` + daemon memory row; full mode only.
    walk_large: Option<usize>,
}

impl Plan {
    fn new(quick: bool, rounds: Option<usize>) -> Plan {
        let rounds = rounds.unwrap_or(if quick { 3 } else { 9 }).max(1);
        if quick {
            Plan {
                rounds,
                commit_sizes: vec![(4 * KIB, 10), (MIB, 4), (64 * MIB, 1)],
                read_sizes: vec![64 * MIB, 256 * MIB],
                read_rounds: rounds.div_ceil(3),
                repeated_reads: 2,
                ls_sessions: 2_000,
                ls_rounds: 2,
                ls_reps: 1,
                rss_size: 256 * MIB,
                writers: vec![1, 2, 4, 8],
                writer_secs: 0.3,
                writer_rounds: 1,
                walk_sessions: 500,
                walk_rounds: 1,
                walk_large: None,
            }
        } else {
            Plan {
                rounds,
                commit_sizes: vec![(4 * KIB, 40), (MIB, 12), (64 * MIB, 3)],
                read_sizes: vec![64 * MIB, 256 * MIB],
                read_rounds: rounds,
                repeated_reads: 3,
                ls_sessions: 10_000,
                ls_rounds: rounds.div_ceil(3),
                ls_reps: 2,
                rss_size: 1024 * MIB,
                writers: vec![1, 2, 4, 8],
                writer_secs: 1.0,
                writer_rounds: 3,
                walk_sessions: 10_000,
                walk_rounds: rounds.div_ceil(3),
                walk_large: Some(100_000),
            }
        }
    }
}

struct Ctx {
    args: RunArgs,
    plan: Plan,
    sessionfs: PathBuf,
    work: PathBuf,
    repo: PathBuf,
    core: Repository,
    results: Results,
}

fn run(args: RunArgs) -> Res<()> {
    let sessionfs = match &args.sessionfs {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("sessionfs"))
            .ok_or("cannot find the sessionfs executable; pass --sessionfs")?,
    };
    if !sessionfs.is_file() {
        return Err(format!("{} is missing (cargo build --release)", sessionfs.display()).into());
    }
    fs::create_dir_all(&args.dir)?;
    let work = args.dir.canonicalize()?;
    let repo = work.join("repo");
    fs::create_dir_all(&repo)?;
    let mut plan = Plan::new(args.quick, args.rounds);
    if let Some(n) = args.walk_large_sessions {
        plan.walk_large = Some(n);
    }
    let mut ctx = Ctx {
        core: Repository::new(&repo),
        args: args.clone(),
        plan,
        sessionfs,
        work: work.clone(),
        repo,
        results: Results::default(),
    };
    let fs_desc = describe_fs(&work);
    let label = args.label.clone().unwrap_or_else(|| fs_desc.clone());
    let started = Instant::now();
    println!("## sessionfs benchmark: {label}");
    println!("work directory {} on {fs_desc}", work.display());
    println!(
        "{} mode: {} commit rounds, kernel {}, {} cores",
        if args.quick { "quick" } else { "full" },
        ctx.plan.rounds,
        kernel(),
        cores()
    );
    ctx.results.meta("label", label);
    ctx.results.meta("fs", fs_desc);
    ctx.results.meta("kernel", kernel());
    ctx.results.meta("cores", cores().to_string());
    ctx.results
        .meta("mode", if args.quick { "quick" } else { "full" });
    ctx.results.meta("rounds", ctx.plan.rounds.to_string());
    ctx.results
        .meta("ls_sessions", ctx.plan.ls_sessions.to_string());
    ctx.results
        .meta("rss_size", size_name(ctx.plan.rss_size).to_string());
    ctx.results
        .meta("walk_sessions", ctx.plan.walk_sessions.to_string());

    let phases = args.phases.clone();
    let want = |p: &str| phases.iter().any(|x| x == p);
    if want("commit") || want("read") || want("writers") {
        let pt = Mount::start(
            &ctx.sessionfs,
            &ctx.repo,
            &work.join("mnt-pt"),
            true,
            &work.join("daemon-pt.log"),
        )?;
        let fb = Mount::start(
            &ctx.sessionfs,
            &ctx.repo,
            &work.join("mnt-fb"),
            false,
            &work.join("daemon-fb.log"),
        )?;
        ctx.results
            .meta("passthrough", if pt.passthrough { "on" } else { "refused" });
        println!(
            "mounts: {} (passthrough {}), {} (passthrough off)",
            pt.mountpoint.display(),
            if pt.passthrough { "on" } else { "REFUSED" },
            fb.mountpoint.display()
        );
        if want("commit") {
            bench_commits(&mut ctx, &pt, &fb)?;
        }
        if want("read") {
            bench_reads(&mut ctx, &pt, &fb)?;
        }
        if want("writers") {
            bench_writers(&mut ctx, &pt, &fb)?;
        }
    }
    if want("ls") {
        bench_ls(&mut ctx)?;
    }
    if want("rss") {
        bench_rss(&mut ctx)?;
    }
    if want("walk") {
        walk::bench_walk(&mut ctx)?;
    }
    if want("walk-large") {
        walk::bench_walk_large(&mut ctx)?;
    }
    println!("\ndone in {:.0} s", started.elapsed().as_secs_f64().round());
    if let Some(out) = &ctx.args.out {
        ctx.results.save(out)?;
    }
    println!();
    print!("{}", render(&[ctx.results]));
    Ok(())
}

fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The filesystem holding `path`: type, device, mount options.
fn describe_fs(path: &Path) -> String {
    let Ok(text) = fs::read_to_string("/proc/self/mounts") else {
        return "?".into();
    };
    let p = path.as_os_str().as_bytes();
    let mut best: Option<(usize, String)> = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 4 {
            continue;
        }
        let mp = f[1].as_bytes();
        let inside =
            p.starts_with(mp) && (mp == b"/" || p.len() == mp.len() || p[mp.len()] == b'/');
        if inside && best.as_ref().is_none_or(|(len, _)| mp.len() >= *len) {
            best = Some((
                mp.len(),
                format!("{} on {} ({}; {})", f[2], f[0], f[1], f[3]),
            ));
        }
    }
    best.map(|(_, s)| s).unwrap_or_else(|| "?".into())
}

// ----- commit latency ------------------------------------------------------------

const COMMIT_VARIANTS: [&str; 6] = [
    "floor",
    "core",
    "mount-pt",
    "mount-pt+fsync",
    "mount-fb",
    "mount-fb+fsync",
];

fn bench_commits(ctx: &mut Ctx, pt: &Mount, fb: &Mount) -> Res<()> {
    println!("\n### commit latency (ms; per-round medians, variants interleaved)");
    let sizes: Vec<(usize, usize)> = ctx
        .plan
        .commit_sizes
        .iter()
        .copied()
        .filter(|(size, _)| {
            ctx.args.sizes.is_empty()
                || ctx.args.sizes.iter().any(|s| {
                    size_name(*size)
                        .replace(' ', "")
                        .starts_with(&s.to_uppercase())
                })
        })
        .collect();
    for (size, reps) in sizes {
        let data = random_bytes(size, size as u64);
        let tag = size_name(size).replace(' ', "");
        // One session per variant, so each one replaces a file of its own,
        // of the same size.
        let data = &data;
        let mut ops: Vec<Box<dyn Fn() -> io::Result<()> + '_>> = Vec::new();
        for v in COMMIT_VARIANTS {
            let name = format!("bench-{v}-{tag}").replace('+', "-");
            let dir = make_session(&ctx.repo, &name)?;
            let op: Box<dyn Fn() -> io::Result<()> + '_> = match v {
                "floor" => {
                    let d = cpath(&dir)?;
                    Box::new(move || commit_floor(&d, data))
                }
                "core" => {
                    let s = storage(&ctx.core, &name)?;
                    Box::new(move || s.save(data).map_err(io::Error::other))
                }
                _ => {
                    let mount = if v.starts_with("mount-pt") { pt } else { fb };
                    let f = cpath(&mount.path(&format!("{name}.session/session")))?;
                    let fsync = v.ends_with("+fsync");
                    Box::new(move || commit_mount(&f, data, fsync))
                }
            };
            // Warm up: every variant starts by replacing a same-size file.
            op().map_err(|e| format!("{v} commit of {}: {e}", size_name(size)))?;
            ops.push(op);
        }
        let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
        for round in 0..ctx.plan.rounds {
            let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
            for _ in 0..reps {
                for k in 0..ops.len() {
                    let i = (k + round) % ops.len();
                    let (ms, ()) = time(&ops[i]).map_err(|e| {
                        format!("{} commit of {}: {e}", COMMIT_VARIANTS[i], size_name(size))
                    })?;
                    samples[i].push(ms);
                }
            }
            let mut line = format!("{:>7} round {:>2}:", size_name(size), round + 1);
            for (i, s) in samples.iter().enumerate() {
                let m = median(s);
                per_round[i].push(m);
                let _ = write!(line, " {} {}", COMMIT_VARIANTS[i], fmt_ms(m));
            }
            println!("{line}");
        }
        let row = size_name(size);
        for (i, v) in COMMIT_VARIANTS.iter().enumerate() {
            ctx.results
                .add("commit", &row, v, median(&per_round[i]), "ms");
        }
        ctx.results.set_ratios("commit", &row, "floor");
        let mut line = format!("{row:>7} median:  ");
        for f in ctx
            .results
            .figures
            .iter()
            .filter(|f| f.section == "commit" && f.row == row)
        {
            let _ = write!(
                line,
                " {} {} ({:.2}×)",
                f.variant,
                fmt_ms(f.value),
                f.ratio.unwrap_or(f64::NAN)
            );
        }
        println!("{line}");
        drop(ops);
        for v in COMMIT_VARIANTS {
            drop_session(&ctx.repo, &format!("bench-{v}-{tag}").replace('+', "-"));
        }
    }
    Ok(())
}

// ----- reads ------------------------------------------------------------------------

/// The read rows: the first read after a commit made through the path
/// measured (the mount, bindfs; `direct`: a core save), after one made
/// outside it (a core save: through the mount it must come through the
/// daemon), then the same version again.
const READ_ROWS: [&str; 3] = [
    "first read after a commit through it",
    "first read after a commit outside it",
    "repeated reads",
];

fn bench_reads(ctx: &mut Ctx, pt: &Mount, fb: &Mount) -> Res<()> {
    for size in ctx.plan.read_sizes.clone() {
        bench_reads_of(ctx, pt, fb, size)?;
    }
    Ok(())
}

fn bench_reads_of(ctx: &mut Ctx, pt: &Mount, fb: &Mount, size: usize) -> Res<()> {
    println!(
        "\n### read throughput of a {} checkpoint (MiB/s; first read after a commit through the path, after one outside it, then repeated reads)",
        size_name(size)
    );
    let data = random_bytes(size, 7);
    let bind = Bindfs::start(
        &ctx.repo,
        &ctx.work.join("mnt-bindfs"),
        &ctx.work.join("bindfs-read.log"),
    )?;
    let mut variants = vec!["direct", "mount-pt", "mount-fb"];
    if bind.is_some() {
        variants.push("bindfs");
    }
    let mut paths = Vec::new();
    let mut stores = Vec::new();
    for &v in &variants {
        let name = format!("bench-read-{v}");
        make_session(&ctx.repo, &name)?;
        let rel = format!("{name}.session/session");
        paths.push(match (v, &bind) {
            ("direct", _) => ctx.repo.join(&rel),
            ("mount-pt", _) => pt.path(&rel),
            ("bindfs", Some(b)) => b.path(&rel),
            _ => fb.path(&rel),
        });
        stores.push(storage(&ctx.core, &name)?);
    }
    let mut buf = vec![0u8; MIB];
    let mib = size as f64 / MIB as f64;
    // [row][variant] → samples
    let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); variants.len()]; READ_ROWS.len()];
    let read = |i: usize, buf: &mut [u8]| -> Res<f64> {
        let (ms, n) = time(|| read_whole(&paths[i], buf))?;
        if n != size as u64 {
            return Err(format!("{} read {n} bytes of {size}", paths[i].display()).into());
        }
        Ok(mib / (ms / 1000.0))
    };
    for round in 0..ctx.plan.read_rounds {
        // A commit through each path (direct: a core save), then a read of
        // each; a commit outside the paths, a read of each; then the same
        // version again (interleaved).
        for (i, v) in variants.iter().enumerate() {
            if *v == "direct" {
                stores[i].save(&data)?;
            } else {
                commit_mount(&cpath(&paths[i])?, &data, false)
                    .map_err(|e| format!("commit through {}: {e}", paths[i].display()))?;
            }
        }
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            samples[0][i].push(read(i, &mut buf)?);
        }
        for s in &stores {
            s.save(&data)?;
        }
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            samples[1][i].push(read(i, &mut buf)?);
        }
        let mut rep: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for _ in 0..ctx.plan.repeated_reads {
            for k in 0..variants.len() {
                let i = (k + round) % variants.len();
                rep[i].push(read(i, &mut buf)?);
            }
        }
        let mut line = format!("round {:>2}:", round + 1);
        for i in 0..variants.len() {
            let r = median(&rep[i]);
            samples[2][i].push(r);
            let _ = write!(
                line,
                " {} through {:.0} outside {:.0} repeated {:.0}",
                variants[i],
                samples[0][i].last().copied().unwrap_or(f64::NAN),
                samples[1][i].last().copied().unwrap_or(f64::NAN),
                r
            );
        }
        println!("{line}");
    }
    for (r, row) in READ_ROWS.iter().enumerate() {
        let row = format!("{}: {row}", size_name(size));
        for (i, v) in variants.iter().enumerate() {
            ctx.results
                .add("read", &row, v, median(&samples[r][i]), "MiB/s");
        }
        ctx.results.set_ratios("read", &row, "direct");
    }
    let prefix = format!("{}:", size_name(size));
    for f in ctx
        .results
        .figures
        .iter()
        .filter(|f| f.section == "read" && f.row.starts_with(&prefix))
    {
        println!(
            "median {} {}: {:.0} MiB/s ({:.2}× direct)",
            f.row,
            f.variant,
            f.value,
            f.ratio.unwrap_or(f64::NAN)
        );
    }
    drop(bind);
    for v in variants {
        drop_session(&ctx.repo, &format!("bench-read-{v}"));
    }
    Ok(())
}

// ----- concurrent writers ---------------------------------------------------------------

fn bench_writers(ctx: &mut Ctx, pt: &Mount, fb: &Mount) -> Res<()> {
    println!(
        "\n### concurrent writers, 4 KiB commits to their own sessions ({:.1} s each, commits/s)",
        ctx.plan.writer_secs
    );
    let max = ctx.plan.writers.iter().copied().max().unwrap_or(1);
    for i in 0..max {
        make_session(&ctx.repo, &format!("bench-writer-{i}"))?;
    }
    let data = random_bytes(4 * KIB, 11);
    let variants = ["core", "mount-pt", "mount-fb"];
    let writer_counts = ctx.plan.writers.clone();
    let mut figures: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for round in 0..ctx.plan.writer_rounds {
        for &n in &writer_counts {
            for k in 0..variants.len() {
                let vi = (k + round) % variants.len();
                let variant = variants[vi];
                let mount = match variant {
                    "mount-pt" => Some(pt),
                    "mount-fb" => Some(fb),
                    _ => None,
                };
                let rate = run_writers(ctx, mount, n, &data)?;
                figures.entry((n, vi)).or_default().push(rate);
                println!(
                    "round {} {n} writer(s) {variant}: {rate:.0} commits/s",
                    round + 1
                );
            }
        }
    }
    for &n in &writer_counts {
        let row = format!("{n} writer{}", if n == 1 { "" } else { "s" });
        for (vi, v) in variants.iter().enumerate() {
            let m = median(figures.get(&(n, vi)).map(Vec::as_slice).unwrap_or(&[]));
            ctx.results.add("writers", &row, v, m, "commits/s");
        }
    }
    // Ratios: each variant against its own single writer.
    let one: Vec<f64> = variants
        .iter()
        .map(|v| {
            ctx.results
                .figures
                .iter()
                .find(|f| f.section == "writers" && f.row == "1 writer" && f.variant == *v)
                .map(|f| f.value)
                .unwrap_or(f64::NAN)
        })
        .collect();
    for f in ctx
        .results
        .figures
        .iter_mut()
        .filter(|f| f.section == "writers")
    {
        if let Some(i) = variants.iter().position(|v| *v == f.variant) {
            f.ratio = Some(f.value / one[i]);
        }
    }
    for i in 0..max {
        drop_session(&ctx.repo, &format!("bench-writer-{i}"));
    }
    Ok(())
}

fn run_writers(ctx: &Ctx, mount: Option<&Mount>, n: usize, data: &[u8]) -> Res<f64> {
    let secs = ctx.plan.writer_secs;
    let barrier = Barrier::new(n);
    let counts: Vec<io::Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let name = format!("bench-writer-{i}");
                let barrier = &barrier;
                let core = &ctx.core;
                let target = mount.map(|m| m.path(&format!("{name}.session/session")));
                scope.spawn(move || -> io::Result<u64> {
                    let s = core.open(OsStr::new(&name)).map_err(io::Error::other)?;
                    let file = match &target {
                        Some(p) => Some(CString::new(p.as_os_str().as_bytes())?),
                        None => None,
                    };
                    barrier.wait();
                    let end = Instant::now() + Duration::from_secs_f64(secs);
                    let mut count = 0;
                    while Instant::now() < end {
                        match &file {
                            Some(f) => commit_mount(f, data, false)?,
                            None => s.save(data).map_err(io::Error::other)?,
                        }
                        count += 1;
                    }
                    Ok(count)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("writer panicked")))
            })
            .collect()
    });
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    Ok(total as f64 / secs)
}

// ----- ls -l -----------------------------------------------------------------------------

fn bench_ls(ctx: &mut Ctx) -> Res<()> {
    let n = ctx.plan.ls_sessions;
    println!("\n### ls -l of a repository of {n} sessions (ms)");
    // Kept between runs (one per size): making it takes a while.
    let repo = ctx.work.join(format!("repo-ls-{n}"));
    let marker = repo.join(".bench-complete");
    if !marker.exists() {
        let _ = fs::remove_dir_all(&repo);
        fs::create_dir_all(&repo)?;
        let payload = random_bytes(200, 3);
        for i in 0..n {
            let dir = make_session(&repo, &format!("bench-ls-{i:05}"))?;
            fs::write(dir.join("session"), &payload)?;
        }
        File::create(&marker)?;
    }
    let pt = Mount::start(
        &ctx.sessionfs,
        &repo,
        &ctx.work.join("mnt-ls-pt"),
        true,
        &ctx.work.join("daemon-ls-pt.log"),
    )?;
    let fb = Mount::start(
        &ctx.sessionfs,
        &repo,
        &ctx.work.join("mnt-ls-fb"),
        false,
        &ctx.work.join("daemon-ls-fb.log"),
    )?;
    let ls = |dir: &Path| -> Box<dyn Fn() -> io::Result<()>> {
        let dir = dir.to_path_buf();
        Box::new(move || {
            let st = Command::new("ls")
                .arg("-l")
                .arg(&dir)
                .env("LC_ALL", "C")
                .stdout(Stdio::null())
                .status()?;
            if st.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!("ls -l {}: {st}", dir.display())))
            }
        })
    };
    let list: Box<dyn Fn() -> io::Result<()>> = {
        let exe = ctx.sessionfs.clone();
        let repo = repo.clone();
        Box::new(move || {
            let st = Command::new(&exe)
                .arg("--repo")
                .arg(&repo)
                .arg("list")
                .stdout(Stdio::null())
                .status()?;
            if st.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!("sessionfs list: {st}")))
            }
        })
    };
    let bind = Bindfs::start(
        &repo,
        &ctx.work.join("mnt-ls-bindfs"),
        &ctx.work.join("bindfs-ls.log"),
    )?;
    let mut variants = vec!["direct", "mount-pt", "mount-fb"];
    let mut ops = vec![ls(&repo), ls(&pt.mountpoint), ls(&fb.mountpoint)];
    if let Some(b) = &bind {
        variants.push("bindfs");
        ops.push(ls(&b.mountpoint));
    }
    variants.push("sessionfs list");
    ops.push(list);
    for op in &ops {
        op()?; // warm the caches
    }
    // Warm: back to back, as a user repeating `ls -l`. Cold: the kernel's
    // dentry and inode caches dropped before each one (whatever the mount
    // lets the kernel cache, nothing is left), as after a while.
    let drop_caches = || fs::write("/proc/sys/vm/drop_caches", "2");
    let cold_possible = drop_caches().is_ok();
    if !cold_possible {
        println!("(cannot write /proc/sys/vm/drop_caches: no cold measurement)");
    }
    for (label, cold) in [("warm", false), ("cold", true)] {
        if cold && !cold_possible {
            continue;
        }
        let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
        for round in 0..ctx.plan.ls_rounds {
            let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
            for _ in 0..ctx.plan.ls_reps {
                for k in 0..ops.len() {
                    let i = (k + round) % ops.len();
                    if cold {
                        drop_caches()?;
                    }
                    let (ms, ()) = time(&ops[i])?;
                    samples[i].push(ms);
                }
            }
            let mut line = format!("{label} round {:>2}:", round + 1);
            for (i, s) in samples.iter().enumerate() {
                let m = median(s);
                per_round[i].push(m);
                let _ = write!(line, " {} {}", variants[i], fmt_ms(m));
            }
            println!("{line}");
        }
        let row = if cold {
            format!("{n} sessions, cold caches")
        } else {
            format!("{n} sessions, back to back")
        };
        for (i, v) in variants.iter().enumerate() {
            ctx.results.add("ls", &row, v, median(&per_round[i]), "ms");
        }
        ctx.results.set_ratios("ls", &row, "direct");
    }
    Ok(())
}

// ----- daemon memory ---------------------------------------------------------------------

fn bench_rss(ctx: &mut Ctx) -> Res<()> {
    let size = ctx.plan.rss_size;
    println!(
        "\n### daemon peak RSS while a {} checkpoint is written through it (fresh daemon)",
        size_name(size)
    );
    let chunk = random_bytes(MIB, 5);
    for (variant, passthrough) in [("mount-pt", true), ("mount-fb", false)] {
        let name = "bench-rss";
        make_session(&ctx.repo, name)?;
        let mount = Mount::start(
            &ctx.sessionfs,
            &ctx.repo,
            &ctx.work.join("mnt-rss"),
            passthrough,
            &ctx.work.join(format!("daemon-rss-{variant}.log")),
        )?;
        let pid = mount.pid().ok_or("no daemon")?;
        let file = cpath(&mount.path(&format!("{name}.session/session")))?;
        commit_mount(&file, b"warm-up\n", false)?;
        let before = vm_hwm_kib(pid)?;
        let (ms, ()) = time(|| {
            let fd = open_fd(&file, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644)?;
            for _ in 0..size / MIB {
                write_all_fd(fd.as_raw_fd(), &chunk)?;
            }
            close_checked(fd)
        })?;
        let after = vm_hwm_kib(pid)?;
        let committed = fs::metadata(session_dir(&ctx.repo, name).join("session"))?.len();
        if committed != size as u64 {
            return Err(format!("the checkpoint has {committed} bytes, not {size}").into());
        }
        drop(mount);
        drop_session(&ctx.repo, name);
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "{variant}: peak RSS {:.1} MiB (after mount and a small commit: {:.1} MiB); write+commit {:.0} ms ({:.0} MiB/s)",
            mib(after),
            mib(before),
            ms,
            (size / MIB) as f64 / (ms / 1000.0)
        );
        ctx.results
            .add("rss", &size_name(size), variant, mib(after), "MiB");
        ctx.results.add(
            "rss",
            &format!("{} (baseline)", size_name(size)),
            variant,
            mib(before),
            "MiB",
        );
    }
    Ok(())
}

// ----- the table --------------------------------------------------------------------------

/// A target: (true for "at most", bound).
fn target(section: &str, row: &str, variant: &str) -> Option<(bool, f64)> {
    match (section, row, variant) {
        ("commit", _, "core") => Some((true, 1.05)),
        ("commit", "4 KiB", v) if v.starts_with("mount-pt") => Some((true, 1.3)),
        ("commit", "64 MiB", v) if v.starts_with("mount-pt") => Some((true, 1.05)),
        ("commit", "4 KiB", v) if v.starts_with("mount-fb") => Some((true, 1.4)),
        ("commit", "64 MiB", v) if v.starts_with("mount-fb") => Some((true, 1.15)),
        ("read", _, "mount-pt") => Some((false, 0.95)),
        // After a commit outside the mount the first read must come
        // through the daemon: measured, no target.
        ("read", r, "mount-fb") if r.ends_with("first read after a commit through it") => {
            Some((false, 0.65))
        }
        ("read", r, "mount-fb") if r.ends_with("repeated reads") => Some((false, 0.75)),
        ("ls", _, v) if v.starts_with("mount") => Some((true, 3.0)),
        ("walk", _, v) if v.starts_with("mount") => Some((true, 3.0)),
        ("rss", r, _) if r.starts_with("after find") => Some((true, 64.0)),
        ("rss", r, _) if !r.contains("baseline") => Some((true, 50.0)),
        _ => None,
    }
}

fn fmt_value(f: &Figure) -> String {
    match f.unit.as_str() {
        "ms" => fmt_ms(f.value),
        "MiB/s" => format!("{:.0} MiB/s", f.value),
        "MiB" => format!("{:.1} MiB", f.value),
        "commits/s" => format!("{:.0}/s", f.value),
        u => format!("{} {u}", f.value),
    }
}

fn variant_label(section: &str, v: &str) -> String {
    let path = |v: &str| -> String {
        let (base, fsync) = match v.strip_suffix("+fsync") {
            Some(b) => (b, " + fsync"),
            None => (v, ""),
        };
        let base = match base {
            "floor" => "raw floor (libc)",
            "core" => "core save",
            "mount-pt" => "mount, passthrough",
            "mount-fb" => "mount, fallback (no passthrough)",
            "direct" => "direct",
            "bindfs" => "bindfs (anchor)",
            other => other,
        };
        format!("{base}{fsync}")
    };
    match section {
        "commit" if v.starts_with("mount") => format!("{}: open O_TRUNC, write, close", path(v))
            .replace(
                " + fsync: open O_TRUNC, write, close",
                ": open O_TRUNC, write, fsync, close",
            ),
        "ls" if v.starts_with("mount") => format!("ls -l, {}", path(v)),
        "ls" if v == "direct" || v == "bindfs" => format!("ls -l, {}", path(v)),
        "writers" if v == "core" => "core save (no mount)".into(),
        _ => path(v),
    }
}

fn met(f: &Figure, section: &str, cores: usize, prev: Option<f64>) -> String {
    if section == "writers" {
        let n: usize = f
            .row
            .split(' ')
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(1);
        return match prev {
            Some(p) if n <= cores.max(1) && n > 1 => {
                if f.value > p {
                    "yes".into()
                } else {
                    "**no**".into()
                }
            }
            _ => String::new(),
        };
    }
    let Some((at_most, bound)) = target(section, &f.row, &f.variant) else {
        return String::new();
    };
    let x = if section == "rss" {
        f.value
    } else {
        f.ratio.unwrap_or(f64::NAN)
    };
    let ok = if at_most { x <= bound } else { x >= bound };
    if ok { "yes".into() } else { "**no**".into() }
}

fn target_text(section: &str, row: &str, variant: &str, cores: usize) -> String {
    if section == "writers" {
        let n: usize = row
            .split(' ')
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(1);
        return if n > 1 && n <= cores.max(1) && variant != "core" {
            "rises".into()
        } else {
            String::new()
        };
    }
    match target(section, row, variant) {
        Some((true, b)) if section == "rss" => format!("≤ {b:.0} MiB"),
        Some((true, b)) => format!("≤ {b}×"),
        Some((false, b)) => format!("≥ {b}×"),
        None => String::new(),
    }
}

fn render(columns: &[Results]) -> String {
    let mut out = String::new();
    let first = &columns[0];
    let cores: usize = first
        .get_meta("cores")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let _ = writeln!(
        out,
        "sessionfs benchmark, {} mode ({} rounds), kernel {}, {} cores, FUSE passthrough {}.",
        first.get_meta("mode").unwrap_or("?"),
        first.get_meta("rounds").unwrap_or("?"),
        first.get_meta("kernel").unwrap_or("?"),
        cores,
        first.get_meta("passthrough").unwrap_or("?")
    );
    for (i, c) in columns.iter().enumerate() {
        let _ = writeln!(
            out,
            "- column {}: {} — {}",
            (b'A' + i as u8) as char,
            c.get_meta("label").unwrap_or("?"),
            c.get_meta("fs").unwrap_or("?")
        );
    }
    let sections = [
        (
            "commit",
            "Commit latency (median of per-round medians; ratio = median / raw-floor median; lower is better)",
            "size",
        ),
        (
            "read",
            "Read throughput of a checkpoint (1 MiB reads; ratio = throughput / direct; higher is better; a commit through it: through the mount or bindfs, a core save for direct; outside it: a core save)",
            "read",
        ),
        (
            "ls",
            "`ls -l` of a large repository (ratio = time / direct)",
            "repository",
        ),
        (
            "walk",
            "Walking the whole repository: `find -type f`, `ls -lR`, `du -s`, `tar cf /dev/null` of Checkbox-like sessions (`session`, `io-logs/` with one file, `session-share/`); dropped caches = `drop_caches` 3 before each run (ratio = time / direct)",
            "walk",
        ),
        (
            "rss",
            "Daemon peak resident memory (VmHWM) of a fresh daemon: while one checkpoint is written through it, and after `find` over the large repository",
            "checkpoint",
        ),
        (
            "writers",
            "Concurrent writers, 4 KiB commits each to its own session (ratio = rate / one writer's)",
            "writers",
        ),
    ];
    for (section, title, row_head) in sections {
        // Rows in first-seen order across the columns.
        let mut keys: Vec<(String, String)> = Vec::new();
        for c in columns {
            for f in c.figures.iter().filter(|f| f.section == section) {
                let k = (f.row.clone(), f.variant.clone());
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        if keys.is_empty() {
            continue;
        }
        if section == "writers" {
            // Group by variant, then writers.
            let mut by_variant: Vec<(String, String)> = Vec::new();
            let mut variants: Vec<String> = Vec::new();
            for (_, v) in &keys {
                if !variants.contains(v) {
                    variants.push(v.clone());
                }
            }
            for v in &variants {
                for k in keys.iter().filter(|k| &k.1 == v) {
                    by_variant.push(k.clone());
                }
            }
            keys = by_variant;
        }
        let _ = writeln!(out, "\n**{title}**\n");
        let mut head = format!("| {row_head} | path |");
        let mut rule = "|---|---|".to_string();
        for i in 0..columns.len() {
            let l = (b'A' + i as u8) as char;
            let _ = write!(head, " {l} | {l} ratio |");
            rule.push_str("---:|---:|");
        }
        head.push_str(" target | met |");
        rule.push_str("---|---|");
        let _ = writeln!(out, "{head}\n{rule}");
        for (row, variant) in &keys {
            let mut line = format!("| {row} | {} |", variant_label(section, variant));
            let mut mets = Vec::new();
            for c in columns {
                let f = c
                    .figures
                    .iter()
                    .find(|f| f.section == section && &f.row == row && &f.variant == variant);
                match f {
                    Some(f) => {
                        let ratio = match f.ratio {
                            Some(r) => format!("{r:.2}×"),
                            None => String::new(),
                        };
                        let _ = write!(line, " {} | {ratio} |", fmt_value(f));
                        let prev = if section == "writers" {
                            previous_writers(c, f)
                        } else {
                            None
                        };
                        mets.push(met(f, section, cores, prev));
                    }
                    None => {
                        line.push_str(" – | |");
                        mets.push(String::new());
                    }
                }
            }
            let t = target_text(section, row, variant, cores);
            let m = if mets.iter().all(String::is_empty)
                || (section == "writers" && variant == "core")
            {
                String::new()
            } else {
                mets.iter()
                    .map(|m| if m.is_empty() { "–" } else { m.as_str() })
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let _ = writeln!(line, " {t} | {m} |");
            out.push_str(&line);
        }
        if section == "walk" {
            let mut notes = String::new();
            for (i, c) in columns.iter().enumerate() {
                for key in ["walk_requests_cold", "walk_requests_warm"] {
                    if let Some(note) = c.get_meta(key) {
                        let l = (b'A' + i as u8) as char;
                        let _ = writeln!(notes, "- column {l}: {note}");
                    }
                }
            }
            if !notes.is_empty() {
                let _ = write!(
                    out,
                    "\nFUSE requests (fuser debug log of a separate daemon):\n\n{notes}"
                );
            }
        }
    }
    out
}

/// The same variant's figure with the next smaller writer count.
fn previous_writers(c: &Results, f: &Figure) -> Option<f64> {
    let n: usize = f.row.split(' ').next()?.parse().ok()?;
    c.figures
        .iter()
        .filter(|g| g.section == "writers" && g.variant == f.variant)
        .filter_map(|g| {
            let m: usize = g.row.split(' ').next()?.parse().ok()?;
            (m < n).then_some((m, g.value))
        })
        .max_by_key(|(m, _)| *m)
        .map(|(_, v)| v)
}

fn report(files: &[PathBuf]) -> Res<()> {
    let columns = files
        .iter()
        .map(|f| Results::load(f))
        .collect::<Res<Vec<_>>>()?;
    let mut stdout = io::stdout().lock();
    stdout.write_all(render(&columns).as_bytes())?;
    Ok(())
}
