//! fsx (crates.io fsx 0.3.2) on a session's `session` file through a real
//! mount, in both I/O modes: random reads, writes, mmap reads and writes,
//! truncates, fsync, fdatasync and close/reopen (every close of a writer is
//! a commit), each read checked against fsx's own model of the file
//! (tests/data/suites/fsx.toml has the mix). [`SEEDS`] seeds of [`OPS`]
//! operations each, one session per seed, all seeds at once (the run is
//! bound by fsync, so running them together keeps it short).
//!
//! `on_disk` runs the same seeds on a plain file: it proves the harness and
//! the settings, so a failure through the mount is the mount's.
//!
//! A failure names each failing seed, the last operation fsx logged and its
//! error; the whole log of each seed is in target/tmp/suite-logs/.

mod common;
#[path = "suites/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::{Mounted, scratch};
use tools::{log_dir, read_log, start_logged, wait_until};

/// Seeds 1..=SEEDS, fixed so a failure is reproducible:
/// `fsx -v -f tests/data/suites/fsx.toml -N 10000 -S SEED FILE`.
const SEEDS: u64 = 10;
const OPS: u32 = 10_000;
/// For all seeds together: on the mount they take ~15 s on 2 cores.
const DEADLINE: Duration = Duration::from_secs(150);

/// What one seed gave: `None` when it passed, else why it failed.
struct SeedRun {
    seed: u64,
    failure: Option<String>,
}

/// The last operation fsx logged (`-v` logs each one as
/// `[INFO  fsx] N name ...`), and the lines that say what went wrong.
fn explain(log: &str) -> String {
    let last_op = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("[INFO  fsx]"))
        .map(|op| op.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "none".into());
    let mut why: Vec<&str> = Vec::new();
    let lines: Vec<&str> = log.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("panicked at") {
            if let Some(next) = lines.get(i + 1) {
                why.push(next.trim());
            }
        } else if l.starts_with("[ERROR") || l.starts_with("error:") {
            why.push(l.trim());
        }
    }
    why.truncate(3);
    if why.is_empty() {
        why.push("(no error line; see the log)");
    }
    format!("last op {last_op}: {}", why.join(" | "))
}

/// Runs every seed at once, seed N on `files[N-1]`.
fn run_seeds(label: &str, files: &[PathBuf]) -> Vec<SeedRun> {
    let fsx = tools::fsx();
    let conf = tools::data("suites/fsx.toml");
    let art = scratch("fsx-artifacts");
    let started = Instant::now();
    let mut running = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let seed = i as u64 + 1;
        let log = log_dir().join(format!("{label}-seed{seed}.log"));
        let child = start_logged(
            Command::new(&fsx)
                .arg("-v")
                .arg("-f")
                .arg(&conf)
                .arg("-N")
                .arg(OPS.to_string())
                .arg("-S")
                .arg(seed.to_string())
                .arg("-P")
                .arg(art.path())
                .arg(file)
                .env("RUST_BACKTRACE", "0"),
            &log,
        );
        running.push((seed, child, log));
    }
    running
        .into_iter()
        .map(|(seed, mut child, log)| {
            let ended = wait_until(&mut child, started, started + DEADLINE);
            let text = read_log(&log);
            let passed = ended.success() && text.contains("All operations completed A-OK!");
            let failure = (!passed).then(|| format!("{ended}; {}", explain(&text)));
            SeedRun { seed, failure }
        })
        .collect()
}

fn all_passed(label: &str, runs: &[SeedRun]) -> Result<(), String> {
    let failed: Vec<&SeedRun> = runs.iter().filter(|r| r.failure.is_some()).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = failed
        .iter()
        .map(|r| {
            format!(
                "  seed {}: {}",
                r.seed,
                r.failure.as_deref().unwrap_or_default()
            )
        })
        .collect();
    Err(format!(
        "fsx ({label}): {} of {} seeds failed ({OPS} ops each; logs in {}):\n{}",
        failed.len(),
        runs.len(),
        log_dir().join(format!("{label}-seed*.log")).display(),
        lines.join("\n")
    ))
}

/// One session per seed in the repository, fsx on its `session` through
/// the mount.
fn through_mount(m: &Mounted, label: &str) -> Result<(), String> {
    let files: Vec<PathBuf> = (1..=SEEDS)
        .map(|seed| {
            let name = m.new_session(&format!("fsx-seed{seed}"));
            m.path(Path::new(&name).join("session"))
        })
        .collect();
    let runs = run_seeds(label, &files);
    all_passed(label, &runs)?;
    tools::no_locks_left(m)
}

#[test]
fn passthrough() {
    let m = Mounted::start(&[]);
    let result = through_mount(&m, "fsx-passthrough");
    tools::finish(m, "fsx-passthrough", result);
}

#[test]
fn daemon_served() {
    let m = Mounted::start(&["--no-passthrough"]);
    let result = through_mount(&m, "fsx-daemon-served");
    tools::finish(m, "fsx-daemon-served", result);
}

/// The control: the same seeds on plain files of the disk.
#[test]
fn on_disk() {
    let dir = scratch("fsx-disk");
    let files: Vec<PathBuf> = (1..=SEEDS)
        .map(|seed| dir.path().join(format!("seed{seed}")))
        .collect();
    let runs = run_seeds("fsx-disk", &files);
    if let Err(msg) = all_passed("fsx-disk", &runs) {
        panic!("{msg}");
    }
    assert_eq!(runs.len() as u64, SEEDS, "every seed ran");
}

/// A failed seed is told by its last operation and fsx's error.
#[test]
fn explains_a_failed_seed() {
    let log = "[INFO  fsx]   186 read      0x10 ..  0x20 (  0x11 bytes)\n\
               [INFO  fsx]   187 close/open\n\
               \n\
               thread 'main' (1) panicked at src/main.rs:864:18:\n\
               Cannot open file: Os { code: 16, kind: ResourceBusy }\n\
               note: run with `RUST_BACKTRACE=1`\n";
    assert_eq!(
        explain(log),
        "last op 187 close/open: Cannot open file: Os { code: 16, kind: ResourceBusy }"
    );
    assert_eq!(
        explain("[ERROR fsx] READ BAD DATA: offset = 0x0\n"),
        "last op none: [ERROR fsx] READ BAD DATA: offset = 0x0"
    );
}
