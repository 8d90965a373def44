//! Writers racing on one session: processes writing through the mount,
//! `sessionfs checkpoint` runs and threads using the core, all at once,
//! with and without passthrough; and readers streaming a large checkpoint
//! while others commit.
//!
//! - Exactly one commit at a time: the spans in which each successful
//!   writer held the lock (open() returned .. close() called; begin()
//!   returned .. commit() called) never overlap.
//! - Every loser is told: EBUSY from open(), the Locked exit code (3) with a
//!   message, or the core's Locked error. No other error.
//! - `session` is always one whole checkpoint (watched all along, from the
//!   repository and through the mount), and in the end it is one of the
//!   committed ones; no `session.next` is left.
//! - A reader sees one whole version from its first byte to its last.
//!
//! The mount writers are separate processes: a process started while this
//! one holds a `session` open for writing would get a copy of the
//! descriptor and close it at exec, which is a close() of that checkpoint.
//!
//! `SESSIONFS_CONCURRENCY_ROUNDS` sets the number of races (default 4, half
//! in each mode); `SESSIONFS_SOAK_SECONDS` keeps going for that long.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::fs_helpers::*;
use common::mount::Mounted;
use sessionfs::core::{BeginOptions, Repository, Start};

const ENTRY: &str = "concurrency_child_entry";

#[test]
fn concurrency_child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    assert_eq!(role, "mount-writer-loop", "unknown child role");
    mount_writer_loop();
    std::process::exit(0);
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).expect(name))
}

/// Tries `SFS_COUNT` checkpoints through the mount; logs `L seed` when the
/// session is locked, `C seed t_open t_close` for a commit (the monotonic
/// times when open() returned and close() was called), `X …` otherwise.
fn mount_writer_loop() {
    let path = env_path("SFS_PATH");
    let log = env_path("SFS_LOG");
    let base = env_u64("SFS_SEED", 0);
    let count = env_u64("SFS_COUNT", 10);
    let len = env_u64("SFS_LEN", 10_000) as usize;
    let chunks = env_u64("SFS_CHUNKS", 4).max(1) as usize;
    let mut rng = Rng::new(base);
    for i in 0..count {
        let seed = base + i;
        let data = checkpoint(seed, len + rng.range(0, 4096) as usize);
        let fd = match open_raw(&path, libc::O_WRONLY | libc::O_TRUNC, 0o644) {
            Ok(fd) => fd,
            Err(libc::EBUSY) => {
                log_record(&log, &format!("L {seed}"));
                pause_us(rng.range(0, 2000));
                continue;
            }
            Err(e) => {
                log_record(&log, &format!("X open {}", errno_name(e)));
                continue;
            }
        };
        let t_open = mono_ns();
        let mut failed = false;
        for part in data.chunks(data.len().div_ceil(chunks)) {
            if let Err(e) = write_all_raw(&fd, part) {
                log_record(&log, &format!("X write {}", errno_name(e)));
                failed = true;
                break;
            }
            pause_us(rng.range(0, 300));
        }
        if failed {
            // Do not commit a partial checkpoint by closing.
            // SAFETY: raising a signal in our own process is always valid.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        let t_close = mono_ns();
        match close_raw(fd) {
            Ok(()) => log_record(&log, &format!("C {seed} {t_open} {t_close}")),
            Err(e) => log_record(&log, &format!("X close {}", errno_name(e))),
        }
        pause_us(rng.range(0, 2000));
    }
}

/// What all writers of a race saw.
#[derive(Debug, Default)]
struct Race {
    /// (seed, lock held from, lock held until) of each commit whose span
    /// is known.
    spans: Vec<(u64, u64, u64, &'static str)>,
    /// Every committed seed.
    committed: Vec<u64>,
    locked: u64,
    problems: Vec<String>,
}

fn core_writer(repo: Repository, id: &str, base: u64, count: u64, race: &Mutex<Race>) {
    let storage = repo.open(OsStr::new(id)).unwrap();
    let mut rng = Rng::new(base);
    for i in 0..count {
        let seed = base + i;
        let data = checkpoint(seed, 5000 + rng.range(0, 30_000) as usize);
        match storage.begin(BeginOptions::new(Start::Empty)) {
            Err(e) if e.is_locked() => race.lock().unwrap().locked += 1,
            Err(e) => race
                .lock()
                .unwrap()
                .problems
                .push(format!("core begin: {e}")),
            Ok(mut w) => {
                let t_open = mono_ns();
                let mut off = 0;
                for part in data.chunks(8192) {
                    w.write_at(part, off).unwrap();
                    off += part.len() as u64;
                    pause_us(rng.range(0, 200));
                }
                let t_close = mono_ns();
                match w.commit() {
                    Ok(()) => {
                        let mut r = race.lock().unwrap();
                        r.spans.push((seed, t_open, t_close, "core"));
                        r.committed.push(seed);
                    }
                    Err(e) => race
                        .lock()
                        .unwrap()
                        .problems
                        .push(format!("core commit: {e}")),
                }
            }
        }
        pause_us(rng.range(0, 3000));
    }
}

fn cli_writer(repo: &Path, id: &str, base: u64, count: u64, work: &Path, race: &Mutex<Race>) {
    let mut rng = Rng::new(base);
    for i in 0..count {
        let seed = base + i;
        let input = work.join(format!("cli-{seed}"));
        fs::write(
            &input,
            checkpoint(seed, 2000 + rng.range(0, 60_000) as usize),
        )
        .unwrap();
        let out = run_cmd(
            sessionfs()
                .arg("--repo")
                .arg(repo)
                .arg("checkpoint")
                .arg(id)
                .arg(&input),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut r = race.lock().unwrap();
        match out.status.code() {
            Some(0) => r.committed.push(seed),
            Some(3) if stderr.contains("locked") => r.locked += 1,
            other => r
                .problems
                .push(format!("cli checkpoint: exit {other:?}: {stderr}")),
        }
        drop(r);
        let _ = fs::remove_file(&input);
        pause_us(rng.range(0, 3000));
    }
}

fn spawn_mount_writer(path: &Path, log: &Path, base: u64, count: u64, len: u64) -> Child {
    child_command(ENTRY, "mount-writer-loop")
        .env("SFS_PATH", path)
        .env("SFS_LOG", log)
        .env("SFS_SEED", base.to_string())
        .env("SFS_COUNT", count.to_string())
        .env("SFS_LEN", len.to_string())
        .env("SFS_CHUNKS", "6")
        .spawn()
        .expect("spawn mount writer")
}

fn collect_mount_writer(log: &Path, race: &Mutex<Race>) {
    let mut r = race.lock().unwrap();
    for rec in read_records(log) {
        let f: Vec<&str> = rec.split_whitespace().collect();
        match f.as_slice() {
            ["L", _] => r.locked += 1,
            ["C", seed, t0, t1] => {
                let seed = seed.parse().unwrap();
                r.spans
                    .push((seed, t0.parse().unwrap(), t1.parse().unwrap(), "mount"));
                r.committed.push(seed);
            }
            _ => r.problems.push(format!("mount writer: {rec}")),
        }
    }
}

/// Reads `path` in a loop until `stop`, verifying every version.
fn watch(path: PathBuf, stop: Arc<AtomicBool>) -> thread::JoinHandle<(u64, Vec<String>)> {
    thread::spawn(move || {
        let (mut reads, mut bad) = (0u64, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match fs::read(&path) {
                Ok(data) => {
                    reads += 1;
                    if let Err(why) = verify(&data) {
                        bad.push(format!("{}: {why}", path.display()));
                    }
                }
                Err(e) => bad.push(format!("{}: {e}", path.display())),
            }
        }
        (reads, bad)
    })
}

#[test]
fn mixed_writers_racing_on_one_session_commit_one_at_a_time() {
    let mounts = [Mounted::start(&[]), Mounted::start(&["--no-passthrough"])];
    let mut stats = Stats::default();
    let mut trials = Trials::new("SESSIONFS_CONCURRENCY_ROUNDS", 4);
    let mut rng = Rng::from_env("concurrency-writers");
    let (mut total_locked, mut total_spans) = (0, 0);
    while trials.another() {
        let round = trials.done;
        let m = &mounts[(round % 2) as usize];
        stats.trials += 1;
        let id = format!("race{round}");
        fs::create_dir(m.path(format!("{id}.session"))).unwrap();
        let repo = Repository::new(&m.repo);
        repo.open(OsStr::new(&id))
            .unwrap()
            .save(&checkpoint(round << 40, 100))
            .unwrap();
        let race = Arc::new(Mutex::new(Race::default()));
        race.lock().unwrap().committed.push(round << 40);
        let work = scratch("sessionfs-race");
        let stop = Arc::new(AtomicBool::new(false));
        let watchers = [
            watch(m.repo_path(format!("{id}.session/session")), stop.clone()),
            watch(m.path(format!("{id}.session/session")), stop.clone()),
        ];
        let count = 12 + rng.range(0, 8);
        let mut children = Vec::new();
        for w in 0..3u64 {
            let log = work.path().join(format!("mount-{w}.log"));
            let base = (round << 40) | ((w + 1) << 32);
            children.push((
                spawn_mount_writer(
                    &m.path(format!("{id}.session/session")),
                    &log,
                    base,
                    count,
                    20_000,
                ),
                log,
            ));
        }
        let mut threads = Vec::new();
        for c in 0..2u64 {
            let (repo, race, id) = (repo.clone(), race.clone(), id.clone());
            let base = (round << 40) | ((c + 10) << 32);
            threads.push(thread::spawn(move || {
                core_writer(repo, &id, base, count, &race)
            }));
        }
        {
            let (repo_path, race, id) = (m.repo.clone(), race.clone(), id.clone());
            let work = work.path().to_path_buf();
            let base = (round << 40) | (20 << 32);
            threads.push(thread::spawn(move || {
                cli_writer(&repo_path, &id, base, count / 2, &work, &race)
            }));
        }
        for t in threads {
            t.join().expect("writer thread");
        }
        for (mut child, log) in children {
            let status = child.wait().unwrap();
            if !status.success() {
                stats.problem(format!("round {round}: a mount writer ended with {status}"));
            }
            collect_mount_writer(&log, &race);
        }
        stop.store(true, Ordering::Relaxed);
        for w in watchers {
            let (reads, bad) = w.join().unwrap();
            assert!(reads > 0, "the watcher never read");
            for b in bad {
                stats.torn += 1;
                stats.problem(format!("round {round}: a reader saw {b}"));
            }
        }

        let mut race = race.lock().unwrap();
        for p in race.problems.drain(..) {
            stats.problem(format!("round {round}: {p}"));
        }
        // One commit at a time.
        race.spans.sort_by_key(|s| s.1);
        for pair in race.spans.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.1 < a.2 {
                stats.problem(format!(
                    "round {round}: two writers held the lock at once: {} {:#x} until {}, \
                     {} {:#x} from {}",
                    a.3, a.0, a.2, b.3, b.0, b.1
                ));
            }
        }
        let found = verify_file(&m.repo_path(format!("{id}.session/session")));
        match found {
            Ok(Some(seed)) if race.committed.contains(&seed) => {}
            other => {
                stats.lost += 1;
                stats.problem(format!(
                    "round {round}: the final session is {other:?}, not a committed checkpoint"
                ));
            }
        }
        assert_eq!(
            fs::read(m.path(format!("{id}.session/session"))).unwrap(),
            fs::read(m.repo_path(format!("{id}.session/session"))).unwrap(),
            "the mount serves what the repository holds"
        );
        if m.repo_path(format!("{id}.session/session.next")).exists() {
            stats.problem(format!("round {round}: session.next left after the race"));
        }
        stats.commits += race.committed.len() as u64 - 1;
        total_locked += race.locked;
        total_spans += race.spans.len();
    }
    eprintln!("concurrency-writers: {total_locked} lock refusals, {total_spans} timed commits");
    stats.report_and_check("concurrency-writers");
    assert!(
        total_locked > 0,
        "no writer was ever refused: there was no race"
    );
    assert!(total_spans > 1);
}

/// Reads `path` slowly, in small pieces, checking the version it got.
fn slow_read(path: &Path, piece: usize, pause: u64) -> Result<u64, String> {
    let mut f = fs::File::open(path).map_err(|e| format!("open: {e}"))?;
    let mut data = Vec::new();
    let mut buf = vec![0u8; piece];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        pause_us(pause);
    }
    verify(&data)
}

fn readers_see_whole_versions(args: &[&str], scenario: &str) {
    let m = Mounted::start(args);
    let id = "big";
    fs::create_dir(m.path(format!("{id}.session"))).unwrap();
    let repo = Repository::new(&m.repo);
    let len = 3 << 20;
    repo.open(OsStr::new(id))
        .unwrap()
        .save(&checkpoint(1, len))
        .unwrap();
    let work = scratch("sessionfs-readers");
    let stop = Arc::new(AtomicBool::new(false));
    let in_mount = m.path(format!("{id}.session/session"));
    let in_repo = m.repo_path(format!("{id}.session/session"));
    // Writers: two processes through the mount, one thread with the core.
    let mut children = Vec::new();
    for w in 0..2u64 {
        let log = work.path().join(format!("w{w}.log"));
        children.push((
            spawn_mount_writer(&in_mount, &log, (w + 1) << 32, 6, len as u64),
            log,
        ));
    }
    let race = Arc::new(Mutex::new(Race::default()));
    let core = {
        let (repo, race, stop) = (repo.clone(), race.clone(), stop.clone());
        thread::spawn(move || {
            let storage = repo.open(OsStr::new("big")).unwrap();
            let mut seed = 3 << 32;
            while !stop.load(Ordering::Relaxed) {
                seed += 1;
                match storage.save(&checkpoint(seed, len)) {
                    Ok(()) => race.lock().unwrap().committed.push(seed),
                    Err(e) if e.is_locked() => race.lock().unwrap().locked += 1,
                    Err(e) => race.lock().unwrap().problems.push(e.to_string()),
                }
                pause_us(2000);
            }
        })
    };
    // Readers: through the mount (slowly, small pieces), with the core, and
    // straight from the repository.
    let mut readers = Vec::new();
    for (k, path) in [in_mount.clone(), in_mount.clone(), in_repo.clone()]
        .into_iter()
        .enumerate()
    {
        let stop = stop.clone();
        readers.push(thread::spawn(move || {
            let mut seen = Vec::new();
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = if k == 2 {
                    slow_read(&path, 1 << 20, 0)
                } else {
                    slow_read(&path, 64 << 10, 200)
                };
                match r {
                    Ok(s) => seen.push(s),
                    Err(why) => bad.push(why),
                }
            }
            (seen, bad)
        }));
    }
    let core_reader = {
        let (repo, stop) = (repo.clone(), stop.clone());
        thread::spawn(move || {
            let storage = repo.open(OsStr::new("big")).unwrap();
            let (mut seen, mut bad) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let mut f = storage.open_checkpoint().unwrap().expect("a checkpoint");
                let mut data = Vec::new();
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                    pause_us(100);
                }
                match verify(&data) {
                    Ok(s) => seen.push(s),
                    Err(why) => bad.push(why),
                }
            }
            (seen, bad)
        })
    };
    for (mut child, log) in children {
        assert!(child.wait().unwrap().success());
        collect_mount_writer(&log, &race);
    }
    // Let the readers overlap a few more core commits.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    core.join().unwrap();
    let mut stats = Stats::default();
    let mut distinct = std::collections::BTreeSet::new();
    for h in readers.into_iter().chain([core_reader]) {
        let (seen, bad) = h.join().unwrap();
        stats.trials += seen.len() as u64 + bad.len() as u64;
        distinct.extend(seen);
        for b in bad {
            stats.torn += 1;
            stats.problem(format!("a reader got {b}"));
        }
    }
    let race = race.lock().unwrap();
    for p in &race.problems {
        stats.problem(p.clone());
    }
    stats.commits = race.committed.len() as u64;
    eprintln!(
        "{scenario}: {} reads of {} distinct versions, {} commits, {} lock refusals",
        stats.trials,
        distinct.len(),
        stats.commits,
        race.locked
    );
    stats.report_and_check(scenario);
    assert!(stats.commits >= 2, "too few commits to race with");
    assert!(distinct.len() >= 2, "the readers saw only one version");
}

#[test]
fn readers_streaming_a_large_checkpoint_see_one_whole_version_with_passthrough() {
    readers_see_whole_versions(&[], "concurrency-readers-passthrough");
}

#[test]
fn readers_streaming_a_large_checkpoint_see_one_whole_version_without_passthrough() {
    readers_see_whole_versions(&["--no-passthrough"], "concurrency-readers-daemon-io");
}
