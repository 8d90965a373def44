//! pjdfstest (crates.io pjdfstest 0.2.2) inside a session directory of a
//! real mount, in both I/O modes: everything in a session directory other
//! than `session` must behave as the disk under it does (hard links, fifos,
//! sockets, device nodes, times, ownership, permission rules).
//!
//! The mount runs with `--allow-other`: pjdfstest switches to unprivileged
//! users (tests/data/suites/pjdfstest.toml names them), and without it FUSE
//! refuses them everything.
//!
//! `on_disk` runs the same settings on a directory of the disk: it proves
//! the harness, and what it skips is all the mount may skip, plus
//! [`FUSE_ONLY_SKIPS`]. A failure lists the failing cases grouped by their
//! error; pjdfstest's whole output is in target/tmp/suite-logs/.

mod common;
#[path = "suites/tools.rs"]
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::mount::{Mounted, scratch};
use tools::{log_dir, open_up, run_bounded, tail};

/// pjdfstest runs ~400 cases in seconds; this is for a hung one.
const DEADLINE: Duration = Duration::from_secs(300);

/// Cases pjdfstest skips on any FUSE filesystem and not on ext4:
/// `link::link_count_max` needs `pathconf(_PC_LINK_MAX)`, for which glibc
/// answers 127 ("unknown") on filesystem types it has no table entry for,
/// FUSE's among them; nothing a FUSE daemon replies changes that.
const FUSE_ONLY_SKIPS: &[&str] = &["link::link_count_max"];

/// One case's result: "ok", "skipped", "FAILED", "expected failure" or
/// "unexpected pass", and the lines pjdfstest printed under it.
#[derive(Debug, Clone)]
struct Case {
    status: String,
    detail: Vec<String>,
}

/// pjdfstest's report: one `NAME   STATUS` line per case, its details on
/// the lines after it, indented with a tab.
fn parse(out: &str) -> BTreeMap<String, Case> {
    let mut cases = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if let Some(detail) = line.strip_prefix('\t') {
            if let Some(name) = &current
                && let Some(case) = cases.get_mut(name)
            {
                let case: &mut Case = case;
                case.detail.push(detail.trim().to_string());
            }
            continue;
        }
        current = None;
        let trimmed = line.trim_end();
        for status in [
            "ok",
            "skipped",
            "FAILED",
            "expected failure",
            "unexpected pass",
        ] {
            if let Some(name) = trimmed.strip_suffix(status) {
                let name = name.trim();
                if !name.is_empty() && !name.contains(' ') && name.contains("::") {
                    cases.insert(
                        name.to_string(),
                        Case {
                            status: status.to_string(),
                            detail: Vec::new(),
                        },
                    );
                    current = Some(name.to_string());
                }
                break;
            }
        }
    }
    cases
}

fn count(cases: &BTreeMap<String, Case>, status: &str) -> usize {
    cases.values().filter(|c| c.status == status).count()
}

fn with_status<'a>(cases: &'a BTreeMap<String, Case>, status: &str) -> BTreeSet<&'a str> {
    cases
        .iter()
        .filter(|(_, c)| c.status == status)
        .map(|(n, _)| n.as_str())
        .collect()
}

/// The failed cases grouped by their first line of detail (the error),
/// biggest group first, a few names each.
fn failure_groups(cases: &BTreeMap<String, Case>) -> String {
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, case) in cases {
        if case.status == "FAILED" || case.status == "unexpected pass" {
            let why = case.detail.first().map_or("(no detail)", String::as_str);
            let why = why
                .strip_prefix("called `Result::unwrap()` on an `Err` value: ")
                .map_or_else(|| why.to_string(), |e| format!("error {e}"));
            let why: String = why.chars().take(100).collect();
            groups.entry(why).or_default().push(name);
        }
    }
    let mut groups: Vec<(String, Vec<&str>)> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    groups
        .iter()
        .map(|(why, names)| {
            let shown: Vec<&str> = names.iter().take(6).copied().collect();
            let more = names.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            };
            format!("  {:>3} x {why}: {}{more}", names.len(), shown.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn summary(cases: &BTreeMap<String, Case>) -> String {
    format!(
        "{} failed, {} skipped, {} passed",
        count(cases, "FAILED") + count(cases, "unexpected pass"),
        count(cases, "skipped"),
        count(cases, "ok")
    )
}

/// Runs pjdfstest in `dir`; its output is kept as `label`.out.
///
/// pjdfstest binds sockets at paths three levels under `dir`, and a
/// socket's path must fit in 108 bytes (`sun_path`): it is given `dir`
/// through a short symlink in /tmp (only the link is there; every file is
/// made in `dir`).
fn run_in(dir: &Path, label: &str) -> Result<BTreeMap<String, Case>, String> {
    let log = log_dir().join(format!("{label}.out"));
    let cwd = scratch("pjdfstest-cwd");
    let short = tempfile::Builder::new()
        .prefix("sfs")
        .tempdir_in("/tmp")
        .map_err(|e| format!("make a directory in /tmp: {e}"))?;
    open_up(short.path(), short.path());
    let link = short.path().join("d");
    std::os::unix::fs::symlink(dir, &link)
        .map_err(|e| format!("symlink {} -> {}: {e}", link.display(), dir.display()))?;
    let (ended, out) = run_bounded(
        Command::new(tools::pjdfstest())
            .arg("-c")
            .arg(tools::data("suites/pjdfstest.toml"))
            .arg("-p")
            .arg(&link)
            .current_dir(cwd.path())
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0"),
        DEADLINE,
        &log,
    );
    let cases = parse(&out);
    if cases.len() < 300 || !out.contains("Summary:") {
        return Err(format!(
            "pjdfstest ({label}) did not run its cases ({ended}, {} parsed; output in {}):\n{}",
            cases.len(),
            log.display(),
            tail(&out, 10)
        ));
    }
    Ok(cases)
}

/// The control run on the disk, once per test binary.
fn on_disk_cases() -> Result<&'static BTreeMap<String, Case>, String> {
    static DISK: OnceLock<Result<BTreeMap<String, Case>, String>> = OnceLock::new();
    let got = DISK.get_or_init(|| {
        let dir = scratch("pjdfstest-disk");
        open_up(dir.path(), dir.path());
        let cases = run_in(dir.path(), "pjdfstest-disk")?;
        if count(&cases, "FAILED") + count(&cases, "unexpected pass") > 0 {
            return Err(format!(
                "pjdfstest fails on the disk itself ({}): the settings or the machine are wrong\n{}",
                summary(&cases),
                failure_groups(&cases)
            ));
        }
        Ok(cases)
    });
    got.as_ref().map_err(|msg| format!("control run: {msg}"))
}

/// pjdfstest in a fresh session directory of the mount, judged against the
/// disk's run.
fn through_mount(m: &Mounted, label: &str) -> Result<(), String> {
    let disk = on_disk_cases()?;
    open_up(m.root(), m.root());
    let session = m.path("pjdfstest.session");
    fs::create_dir(&session).map_err(|e| format!("mkdir {}: {e}", session.display()))?;
    open_up(&session, &session);
    let cases = run_in(&session, label)?;

    let disk_skips = with_status(disk, "skipped");
    let extra_skips: Vec<&str> = with_status(&cases, "skipped")
        .into_iter()
        .filter(|n| !disk_skips.contains(n) && !FUSE_ONLY_SKIPS.contains(n))
        .collect();
    let missing: Vec<&str> = disk
        .keys()
        .map(String::as_str)
        .filter(|n| !cases.contains_key(*n))
        .collect();
    let failed = count(&cases, "FAILED") + count(&cases, "unexpected pass");
    if failed == 0 && extra_skips.is_empty() && missing.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "pjdfstest in a session directory ({label}): {}; on the disk: {} (output in {})",
        summary(&cases),
        summary(disk),
        log_dir().join(format!("{label}.out")).display()
    );
    if failed > 0 {
        msg.push_str("\nfailed, by error:\n");
        msg.push_str(&failure_groups(&cases));
    }
    if !extra_skips.is_empty() {
        msg.push_str(&format!(
            "\nskipped on the mount, not on the disk: {}",
            extra_skips.join(", ")
        ));
    }
    if !missing.is_empty() {
        msg.push_str(&format!("\nnot run on the mount: {}", missing.join(", ")));
    }
    Err(msg)
}

#[test]
fn passthrough() {
    let m = Mounted::start(&["--allow-other"]);
    let result = through_mount(&m, "pjdfstest-passthrough");
    tools::finish(m, "pjdfstest-passthrough", result);
}

#[test]
fn daemon_served() {
    let m = Mounted::start(&["--allow-other", "--no-passthrough"]);
    let result = through_mount(&m, "pjdfstest-daemon-served");
    tools::finish(m, "pjdfstest-daemon-served", result);
}

/// The control: pjdfstest passes on the disk with these settings, and
/// skips only what ext4 cannot do here (read-only remounts, a second
/// filesystem).
#[test]
fn on_disk() {
    let disk = on_disk_cases().unwrap_or_else(|msg| panic!("{msg}"));
    assert!(
        count(disk, "ok") >= 350,
        "too few passed: {}",
        summary(disk)
    );
    for name in with_status(disk, "skipped") {
        assert!(
            name.contains("erofs") || name.contains("exdev"),
            "pjdfstest skipped {name} on the disk: {:?}",
            disk[name].detail
        );
    }
}

/// The parser reads pjdfstest's report as it prints it.
#[test]
fn report_parser() {
    let out = "a::b                ok\n\
               a::c::fifo          FAILED\n\
               \tcalled `Result::unwrap()` on an `Err` value: ENOSYS\n\
               a::d                skipped\n\
               \tRemounts are not allowed\n\
               \n\
               Summary: 1 failed, 1 skipped, 1 passed, 0 expected failures, 3 total\n";
    let cases = parse(out);
    assert_eq!(cases.len(), 3);
    assert_eq!(cases["a::b"].status, "ok");
    assert_eq!(cases["a::c::fifo"].status, "FAILED");
    assert_eq!(cases["a::d"].detail, vec!["Remounts are not allowed"]);
    assert_eq!(failure_groups(&cases), "    1 x error ENOSYS: a::c::fifo");
}
