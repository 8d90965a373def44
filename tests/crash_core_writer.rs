//! Processes using the core directly, killed with SIGKILL at random moments
//! during commits: a writer that commits checkpoints back to back with the
//! library, and `sessionfs checkpoint` fed through a pipe.
//!
//! After every kill:
//! - `session` is one whole checkpoint: the last one whose commit returned,
//!   or the one in flight when the kill came;
//! - a `session.next` left behind is reported as a stale lock (`sessionfs
//!   list` says `stale`, a new checkpoint fails with the Locked exit code
//!   and a message naming `break-lock`), and `sessionfs break-lock` or `rm
//!   session.next` in a mount of the same repository clears it;
//! - the mount (running all along on the same repository) serves exactly
//!   what the repository holds: no stale checkpoint after a newer commit.
//!
//! `SESSIONFS_CRASH_TRIALS` sets the number of trials (default 100 core
//! writers and 40 command-line writers); `SESSIONFS_SOAK_SECONDS` keeps
//! going for that long.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fs_helpers::*;
use common::mount::Mounted;
use sessionfs::core::{BeginOptions, Repository, Start};

const ENTRY: &str = "crash_core_child_entry";

#[test]
fn crash_core_child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    assert_eq!(role, "core-writer", "unknown child role");
    core_writer();
    std::process::exit(0);
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).expect(name))
}

fn len_for(seed: u64) -> usize {
    let mut r = Rng::new(seed);
    let n = match r.range(0, 2) {
        0 => r.range(40, 4096),
        1 => r.range(4096, 64 << 10),
        _ => r.range(64 << 10, 384 << 10),
    };
    n as usize
}

/// Commits checkpoints back to back, logging `B seed` before each and
/// `C seed` once its commit returned; `X …` on an error.
fn core_writer() {
    let repo = Repository::new(env_path("SFS_REPO"));
    let id = std::env::var_os("SFS_ID").expect("SFS_ID");
    let log = env_path("SFS_LOG");
    let base = env_u64("SFS_SEED", 0);
    let storage = repo.open(&id).expect("open session");
    for seq in 0.. {
        let seed = base + seq;
        let data = checkpoint(seed, len_for(seed));
        log_record(&log, &format!("B {seed}"));
        let result = if seq.is_multiple_of(2) {
            storage.save(&data)
        } else {
            // The streaming writer, in chunks (as the mount uses it).
            storage
                .begin(BeginOptions::new(Start::Empty))
                .and_then(|mut w| {
                    let mut off = 0u64;
                    for part in data.chunks(16 << 10) {
                        w.write_at(part, off)?;
                        off += part.len() as u64;
                    }
                    w.commit()
                })
        };
        match result {
            Ok(()) => log_record(&log, &format!("C {seed}")),
            Err(e) => {
                log_record(&log, &format!("X {e}"));
                return;
            }
        }
    }
}

fn seeds(records: &[String], tag: &str) -> Vec<u64> {
    records
        .iter()
        .filter_map(|r| r.strip_prefix(tag))
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// What is left after a kill, checked against what the writer reported.
struct Check<'a> {
    m: &'a Mounted,
    id: &'a str,
    trial: u64,
}

impl Check<'_> {
    fn session(&self) -> PathBuf {
        self.m.repo_path(format!("{}.session/session", self.id))
    }

    fn next(&self) -> PathBuf {
        self.m
            .repo_path(format!("{}.session/session.next", self.id))
    }

    /// Verifies `session`; counts a torn file.
    fn found(&self, stats: &mut Stats) -> Option<u64> {
        match verify_file(&self.session()) {
            Ok(s) => s,
            Err(why) => {
                stats.torn += 1;
                stats.problem(format!("trial {}: torn session: {why}", self.trial));
                None
            }
        }
    }

    /// A left-over `session.next` must read as a stale lock and be
    /// clearable; `use_mount` picks `rm` in the mount over `break-lock`.
    fn clear_stale_lock(&self, stats: &mut Stats, use_mount: bool) {
        if !self.next().exists() {
            return;
        }
        stats.stale_locks += 1;
        let repo = &self.m.repo;
        let list = run_cmd(sessionfs().arg("--repo").arg(repo).arg("list"));
        let listing = String::from_utf8_lossy(&list.stdout);
        let row = listing
            .lines()
            .find(|l| l.starts_with(self.id))
            .unwrap_or("");
        if !list.status.success() || !row.contains("stale") {
            stats.problem(format!(
                "trial {}: `sessionfs list` does not report the stale lock: {listing:?}",
                self.trial
            ));
        }
        let tmp = self.m.root().join("input");
        fs::write(&tmp, checkpoint(3, 100)).unwrap();
        let locked = run_cmd(
            sessionfs()
                .arg("--repo")
                .arg(repo)
                .arg("checkpoint")
                .arg(self.id)
                .arg(&tmp),
        );
        let stderr = String::from_utf8_lossy(&locked.stderr);
        if locked.status.code() != Some(3) || !stderr.contains("break-lock") {
            stats.problem(format!(
                "trial {}: a checkpoint over a stale lock gave {:?} {stderr:?}",
                self.trial, locked.status
            ));
        }
        if use_mount {
            let in_mount = self.m.path(format!("{}.session/session.next", self.id));
            if let Err(e) = fs::remove_file(&in_mount) {
                stats.problem(format!(
                    "trial {}: rm session.next in the mount: {e}",
                    self.trial
                ));
            }
        } else {
            let out = run_cmd(
                sessionfs()
                    .arg("--repo")
                    .arg(repo)
                    .arg("break-lock")
                    .arg(self.id),
            );
            if !out.status.success() {
                stats.problem(format!(
                    "trial {}: break-lock failed: {}",
                    self.trial,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        if self.next().exists() {
            stats.problem(format!(
                "trial {}: the stale lock survived clearing",
                self.trial
            ));
            let _ = fs::remove_file(self.next());
        }
    }

    /// The mount serves what the repository holds.
    fn coherent(&self, stats: &mut Stats) {
        let on_disk = fs::read(self.session()).unwrap_or_default();
        let through = fs::read(self.m.path(format!("{}.session/session", self.id)))
            .unwrap_or_else(|e| panic!("read through the mount: {e}"));
        if through != on_disk {
            stats.problem(format!(
                "trial {}: the mount serves {:?}, the repository holds {:?}",
                self.trial,
                verify(&through),
                verify(&on_disk)
            ));
        }
    }
}

#[test]
fn core_writers_killed_mid_commit_leave_one_whole_checkpoint() {
    let m = Mounted::start(&[]);
    let id = "core";
    fs::create_dir(m.path(format!("{id}.session"))).unwrap();
    let repo = Repository::new(&m.repo);
    repo.open(OsStr::new(id))
        .unwrap()
        .save(&checkpoint(1, 200))
        .unwrap();
    let work = scratch("sessionfs-core-crash");
    let mut rng = Rng::from_env("crash-core-writer");
    let mut stats = Stats::default();
    let mut current = 1u64;
    let mut trials = Trials::new("SESSIONFS_CRASH_TRIALS", 100);
    while trials.another() {
        let trial = trials.done;
        stats.trials += 1;
        let base = trial << 20;
        let log = work.path().join(format!("trial-{trial}.log"));
        let mut child = child_command(ENTRY, "core-writer")
            .env("SFS_REPO", &m.repo)
            .env("SFS_ID", id)
            .env("SFS_LOG", &log)
            .env("SFS_SEED", base.to_string())
            .spawn()
            .expect("spawn core writer");
        assert!(
            wait_for_record(&log, "B", &mut child, Duration::from_secs(20)),
            "the writer never started: {:?}",
            read_records(&log)
        );
        pause_us(rng.range(0, 20_000));
        if !kill_and_reap(&mut child) {
            stats.problem(format!(
                "trial {trial}: the writer ended by itself: {:?}",
                read_records(&log)
            ));
        }
        let records = read_records(&log);
        if let Some(x) = records.iter().find(|r| r.starts_with('X')) {
            stats.problem(format!("trial {trial}: the writer failed: {x}"));
        }
        let began = seeds(&records, "B ");
        let done = seeds(&records, "C ");
        stats.commits += done.len() as u64;
        let check = Check { m: &m, id, trial };
        let found = check.found(&mut stats);
        let in_flight = began.last().copied();
        let acked = done.last().copied().unwrap_or(current);
        if found != Some(acked) && found != in_flight {
            stats.lost += 1;
            stats.problem(format!(
                "trial {trial}: session is {found:?}; the last commit that returned is {acked:#x}, \
                 the one in flight {in_flight:?}"
            ));
        }
        if found == in_flight && done.last().copied() != in_flight {
            // Killed between the rename and the return: committed.
            stats.commits += 1;
        }
        check.clear_stale_lock(&mut stats, trial.is_multiple_of(2));
        check.coherent(&mut stats);
        if let Some(s) = found {
            current = s;
        }
        let _ = fs::remove_file(&log);
    }
    stats.report_and_check("crash-core-writer");
}

#[test]
fn command_line_checkpoints_killed_mid_stream_leave_one_whole_checkpoint() {
    let m = Mounted::start(&["--no-passthrough"]);
    let id = "cli";
    fs::create_dir(m.path(format!("{id}.session"))).unwrap();
    let repo = Repository::new(&m.repo);
    repo.open(OsStr::new(id))
        .unwrap()
        .save(&checkpoint(1, 200))
        .unwrap();
    let mut rng = Rng::from_env("crash-cli-writer");
    let mut stats = Stats::default();
    let mut current = 1u64;
    let mut eof_kills = 0;
    let mut trials = Trials::new("SESSIONFS_CRASH_CLI_TRIALS", 40);
    while trials.another() {
        let trial = trials.done;
        stats.trials += 1;
        let seed = (trial << 20) | 0xC11;
        let data = checkpoint(seed, len_for(seed));
        let chunks = rng.range(1, 12) as usize;
        let pause = rng.range(0, 2000);
        let delay = Duration::from_micros(rng.range(0, 20_000));
        let mut child = sessionfs()
            .arg("--repo")
            .arg(&m.repo)
            .arg("checkpoint")
            .arg(id)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sessionfs checkpoint");
        let start = Instant::now();
        let mut stdin = child.stdin.take().expect("stdin");
        let parts: Vec<&[u8]> = data.chunks(data.len().div_ceil(chunks)).collect();
        let mut sent = 0;
        for part in &parts {
            if start.elapsed() >= delay || stdin.write_all(part).is_err() {
                break;
            }
            sent += 1;
            if sent < parts.len() {
                pause_us(pause);
            }
        }
        // End of input is sent only after every byte: the command commits
        // what it read at end of input, so closing early would be asking for
        // a partial checkpoint.
        let eof = sent == parts.len() && start.elapsed() < delay;
        let stdin = if eof {
            drop(stdin);
            None
        } else {
            Some(stdin)
        };
        if let Some(rest) = delay.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
        let killed = kill_and_reap(&mut child);
        drop(stdin);
        let check = Check { m: &m, id, trial };
        let found = check.found(&mut stats);
        let committed = found == Some(seed);
        stats.commits += u64::from(committed);
        if !killed {
            // It finished: exit 0 and committed.
            if !committed {
                stats.lost += 1;
                stats.problem(format!(
                    "trial {trial}: exit without kill but session is {found:?}"
                ));
            }
        } else if !eof {
            stats.killed_before_close += 1;
            if committed {
                stats.killed_committed += 1;
                stats.problem(format!("trial {trial}: committed before its input ended"));
            }
        } else {
            eof_kills += 1;
        }
        if !committed && found != Some(current) {
            stats.lost += 1;
            stats.problem(format!(
                "trial {trial}: session is {found:?}, neither {current:#x} nor {seed:#x}"
            ));
        }
        check.clear_stale_lock(&mut stats, !trial.is_multiple_of(2));
        check.coherent(&mut stats);
        if let Some(s) = found {
            current = s;
        }
    }
    eprintln!("crash-cli-writer: kills after end of input: {eof_kills}");
    stats.report_and_check("crash-cli-writer");
}
