//! The walk phase: `find -type f`, `ls -lR`, `du -s` and `tar cf /dev/null`
//! of a whole repository of sessions laid out as Checkbox leaves them
//! (`session` of a few KiB, `io-logs/` with one job record, an empty
//! `session-share/`), direct on the disk, through both sessionfs mounts and
//! through bindfs, with warm caches and with every kernel cache dropped
//! (`drop_caches` 3) before each run. In full mode also `find` over 100,000
//! sessions through fresh daemons, and each daemon's peak memory after it.
//!
//! The repositories are kept between runs (`repo-walk-N`, complete once
//! `.bench-complete` exists): making 100,000 sessions takes a while. The
//! FUSE request counts come from a separate daemon with fuser's debug log
//! on, never from a timed one (the log slows every request).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::anchor::Bindfs;
use crate::{Ctx, Mount, Res, fmt_ms, make_session, median, random_bytes, time, vm_hwm_kib};

/// A walk: row name, program, arguments before and after the directory.
type WalkCommand = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const COMMANDS: [WalkCommand; 4] = [
    ("find -type f", "find", &[], &["-type", "f"]),
    ("ls -lR", "ls", &["-lR"], &[]),
    ("du -s", "du", &["-s"], &[]),
    // GNU tar writing to /dev/null stats every file but reads none.
    ("tar cf /dev/null", "tar", &["cf", "/dev/null"], &[]),
];

const FIND: WalkCommand = COMMANDS[0];

/// Makes (or finds complete from an earlier run) a repository of `n`
/// Checkbox-like sessions under `work`.
fn walk_repo(work: &Path, n: usize) -> Res<PathBuf> {
    let repo = work.join(format!("repo-walk-{n}"));
    let marker = repo.join(".bench-complete");
    if marker.exists() {
        return Ok(repo);
    }
    println!("making {n} sessions in {}", repo.display());
    let _ = fs::remove_dir_all(&repo);
    fs::create_dir_all(&repo).map_err(|e| format!("mkdir {}: {e}", repo.display()))?;
    let checkpoint = random_bytes(3 * 1024, 13);
    let record = random_bytes(600, 17);
    for i in 0..n {
        let dir = make_session(&repo, &format!("bench-walk-{i:06}"))?;
        let io = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
        let session = dir.join("session");
        fs::write(&session, &checkpoint).map_err(|e| io("write", &session, e))?;
        let log = dir
            .join("io-logs")
            .join("com.canonical.certification__info.record.gz");
        fs::write(&log, &record).map_err(|e| io("write", &log, e))?;
        let share = dir.join("session-share");
        fs::create_dir(&share).map_err(|e| io("mkdir", &share, e))?;
    }
    File::create(&marker).map_err(|e| format!("create {}: {e}", marker.display()))?;
    Ok(repo)
}

/// Runs one walk of `dir`; its output is thrown away, its errors reported.
fn walk(cmd: WalkCommand, dir: &Path) -> io::Result<()> {
    let (_, program, before, after) = cmd;
    let out = Command::new(program)
        .args(before)
        .arg(dir)
        .args(after)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("");
        Err(io::Error::other(format!(
            "{program} {} {} {}: {} ({first})",
            before.join(" "),
            dir.display(),
            after.join(" "),
            out.status
        )))
    }
}

fn drop_caches() -> io::Result<()> {
    fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| io::Error::new(e.kind(), format!("write /proc/sys/vm/drop_caches: {e}")))
}

pub fn bench_walk(ctx: &mut Ctx) -> Res<()> {
    let n = ctx.plan.walk_sessions;
    println!("\n### walking a repository of {n} sessions (ms; find, ls -lR, du, tar)");
    let repo = walk_repo(&ctx.work, n)?;
    let pt = Mount::start(
        &ctx.sessionfs,
        &repo,
        &ctx.work.join("mnt-walk-pt"),
        true,
        &ctx.work.join("daemon-walk-pt.log"),
    )?;
    let fb = Mount::start(
        &ctx.sessionfs,
        &repo,
        &ctx.work.join("mnt-walk-fb"),
        false,
        &ctx.work.join("daemon-walk-fb.log"),
    )?;
    let bind = Bindfs::start(
        &repo,
        &ctx.work.join("mnt-walk-bindfs"),
        &ctx.work.join("bindfs-walk.log"),
    )?;
    let mut variants: Vec<(&str, PathBuf)> = vec![
        ("direct", repo.clone()),
        ("mount-pt", pt.mountpoint.clone()),
        ("mount-fb", fb.mountpoint.clone()),
    ];
    if let Some(b) = &bind {
        variants.push(("bindfs", b.mountpoint.clone()));
    }
    let cold_possible = drop_caches().is_ok();
    if !cold_possible {
        println!("(cannot write /proc/sys/vm/drop_caches: no cold measurement)");
    }
    for command in COMMANDS {
        let cmd = command.0;
        for (label, cold) in [("dropped caches", true), ("warm", false)] {
            if cold && !cold_possible {
                continue;
            }
            if !cold {
                for (_, dir) in &variants {
                    walk(command, dir)?; // warm the caches
                }
            }
            let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
            for round in 0..ctx.plan.walk_rounds {
                for k in 0..variants.len() {
                    let i = (k + round) % variants.len();
                    if cold {
                        drop_caches()?;
                    }
                    let (ms, ()) = time(|| walk(command, &variants[i].1))?;
                    per_round[i].push(ms);
                }
            }
            let row = format!("{cmd}, {n} sessions, {label}");
            let mut line = format!("{row}:");
            for (i, (v, _)) in variants.iter().enumerate() {
                let m = median(&per_round[i]);
                let _ = write!(line, " {v} {}", fmt_ms(m));
                ctx.results.add("walk", &row, v, m, "ms");
            }
            ctx.results.set_ratios("walk", &row, "direct");
            println!("{line}");
        }
    }
    drop((pt, fb, bind));
    count_requests(ctx, &repo, n)?;
    Ok(())
}

/// Counts the FUSE requests one `find -type f` sends, per session, with
/// dropped caches and then warm, from a daemon whose fuser debug log is on
/// (`FUSE(unique) ino 0x… OPCODE …` per request). Saved as notes.
fn count_requests(ctx: &mut Ctx, repo: &Path, n: usize) -> Res<()> {
    let log = ctx.work.join("daemon-walk-debug.log");
    let mount = Mount::start_logged(
        &ctx.sessionfs,
        repo,
        &ctx.work.join("mnt-walk-debug"),
        false,
        &log,
        Some("info,fuser=debug"),
    )?;
    for (label, cold) in [("dropped caches", true), ("warm", false)] {
        if cold {
            if drop_caches().is_err() {
                continue; // not root: the warm count only
            }
            // The kernel's FORGETs for what it just dropped arrive
            // asynchronously; let them land before the count starts.
            std::thread::sleep(Duration::from_millis(300));
        }
        let start = fs::metadata(&log)?.len() as usize;
        walk(FIND, &mount.mountpoint)?;
        std::thread::sleep(Duration::from_millis(300));
        let text = fs::read(&log).map_err(|e| format!("read {}: {e}", log.display()))?;
        let counts = opcodes(&String::from_utf8_lossy(&text[start.min(text.len())..]));
        let total: usize = counts.values().sum();
        let per = |c: usize| c as f64 / n as f64;
        let mut note = format!(
            "`find -type f` through the fallback mount, {label}: {:.1} FUSE requests per session (",
            per(total)
        );
        let mut by_count: Vec<(&String, &usize)> = counts.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut sep = "";
        for (op, c) in by_count {
            // Once-per-walk requests (a STATFS) would read as 0.00.
            if per(*c) >= 0.005 {
                let _ = write!(note, "{sep}{op} {:.2}", per(*c));
                sep = ", ";
            }
        }
        note.push(')');
        println!("{note}");
        let key = if cold {
            "walk_requests_cold"
        } else {
            "walk_requests_warm"
        };
        ctx.results.meta(key, note);
    }
    Ok(())
}

/// Requests per opcode in a fuser debug log.
fn opcodes(log: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in log.lines() {
        let Some(at) = line.find("FUSE(") else {
            continue;
        };
        // "FUSE( 12) ino 0x0000000000000001 LOOKUP name …"
        let mut words = line[at..].split(") ino ").nth(1).unwrap_or("").split(' ');
        let _ino = words.next();
        if let Some(op) = words.next().filter(|w| !w.is_empty()) {
            *counts.entry(op.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Full mode only: `find` over 100,000 sessions, each mount through a
/// fresh daemon (its first walk fills its inode table), and the daemon's
/// peak resident memory after the walks.
pub fn bench_walk_large(ctx: &mut Ctx) -> Res<()> {
    let Some(n) = ctx.plan.walk_large else {
        println!("\n(quick mode: no find over 100,000 sessions; see --walk-large-sessions)");
        return Ok(());
    };
    println!("\n### find over {n} sessions (ms; first walk, then again), fresh daemons");
    let repo = walk_repo(&ctx.work, n)?;
    let find = |dir: &Path| walk(FIND, dir);
    let row = format!("find -type f, {n} sessions, warm");
    let first_row = format!("find -type f, {n} sessions, first walk");
    // (variant, first walk, the walk after it), one sample each: at this
    // size a walk through a mount takes minutes today.
    let mut walks: Vec<(&str, f64, f64)> = Vec::new();
    let mut record = |v: &'static str, dir: &Path| -> Res<()> {
        let (first, ()) = time(|| find(dir))?;
        let (again, ()) = time(|| find(dir))?;
        println!("{v}: first {} again {}", fmt_ms(first), fmt_ms(again));
        walks.push((v, first, again));
        Ok(())
    };
    // Every first walk starts from dropped caches where that is allowed
    // (root); otherwise from whatever the kernel holds.
    let forget_caches = || {
        let _ = drop_caches();
    };
    forget_caches();
    record("direct", &repo)?;
    for (v, passthrough) in [("mount-pt", true), ("mount-fb", false)] {
        forget_caches();
        let mount = Mount::start(
            &ctx.sessionfs,
            &repo,
            &ctx.work.join(format!("mnt-walk-large-{v}")),
            passthrough,
            &ctx.work.join(format!("daemon-walk-large-{v}.log")),
        )?;
        let pid = mount.pid().ok_or("no daemon")?;
        record(v, &mount.mountpoint)?;
        let mib = vm_hwm_kib(pid)? as f64 / 1024.0;
        println!("{v}: daemon peak RSS {mib:.1} MiB");
        ctx.results.add(
            "rss",
            &format!("after find over {n} sessions"),
            v,
            mib,
            "MiB",
        );
    }
    forget_caches();
    if let Some(b) = Bindfs::start(
        &repo,
        &ctx.work.join("mnt-walk-large-bindfs"),
        &ctx.work.join("bindfs-walk-large.log"),
    )? {
        record("bindfs", &b.mountpoint)?;
    }
    for &(v, first, _) in &walks {
        ctx.results.add("walk", &first_row, v, first, "ms");
    }
    for &(v, _, again) in &walks {
        ctx.results.add("walk", &row, v, again, "ms");
    }
    ctx.results.set_ratios("walk", &row, "direct");
    ctx.results.set_ratios("walk", &first_row, "direct");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::opcodes;

    #[test]
    fn counts_requests_per_opcode() {
        let log = "[2026-12-01T10:00:00.000Z DEBUG fuser::request] FUSE( 12) ino 0x0000000000000001 LOOKUP name \"a\" thread=x\n\
                   [2026-12-01T10:00:00.001Z DEBUG fuser::request] FUSE( 13) ino 0x0000000000000002 GETATTR thread=x\n\
                   [2026-12-01T10:00:00.002Z DEBUG fuser::request] FUSE(  4) ino 0x0000000000000001 LOOKUP name \"b\" thread=x\n\
                   [2026-12-01T10:00:00.003Z INFO  sessionfs] not a request\n";
        let c = opcodes(log);
        assert_eq!(c.get("LOOKUP"), Some(&2));
        assert_eq!(c.get("GETATTR"), Some(&1));
        assert_eq!(c.len(), 2);
    }
}
