//! The command line on sessions the real Checkbox (PyPI checkbox-ng 1.18.1,
//! installed by scripts/suites.sh) makes: `checkbox-cli launcher` runs the
//! test provider (tests/data/checkbox-provider: a passing job, a job that
//! waits for the test, a failing job) with a plain directory as its
//! repository (tests/compat/checkbox_run.py moves Checkbox's base there).
//!
//! While the waiting job runs, `list` and `show` read the live repository
//! (resumable, the waiting job running, the passing job done); after
//! Checkbox ends, `list`, `show`, `show --job`, `gc --dry-run --status` and
//! `archive` give the answers the checkpoint and io-logs hold, and a mount
//! of the repository shows each job's output as `show --job` prints it.
//! Checkbox's whole output is in target/tmp/suite-logs/.

mod common;
#[path = "suites/tools.rs"]
mod tools;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::repo::{CliOutput, run, scratch_dir, sessionfs_command};
use serde_json::Value;
use tools::{Ended, log_dir, read_log, start_logged, tail, wait_until};

const NS: &str = "com.example.sessionfs::";
const GATE_TIMEOUT_S: u64 = 60;

fn job(name: &str) -> String {
    format!("{NS}{name}")
}

/// `sessionfs --repo REPO --checkbox ARGS`.
fn cli(repo: &Path, args: &[&str]) -> CliOutput {
    let mut cmd = sessionfs_command();
    cmd.arg("--repo").arg(repo).arg("--checkbox").args(args);
    run(cmd, None)
}

fn ok(repo: &Path, args: &[&str]) -> String {
    let out = cli(repo, args);
    out.assert_ok();
    out.stdout_text()
}

fn only_row(repo: &Path) -> Value {
    let v: Value = serde_json::from_str(&ok(repo, &["list", "--json"])).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    rows[0].clone()
}

/// The flags of the session's checkpoint, read here on their own.
fn flags(dir: &Path) -> Vec<String> {
    let gz = fs::read(dir.join("session")).unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut json)
        .unwrap();
    let v: Value = serde_json::from_slice(&json).unwrap();
    v["session"]["metadata"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// What the listing and `show` say mid-run.
fn check_mid_run(repo: &Path) {
    let row = only_row(repo);
    assert_eq!(row["status"], "resumable", "{row}");
    assert_eq!(row["running_job"], job("waiting").as_str(), "{row}");
    assert_eq!(row["title"], "sessionfs provider run");
    assert_eq!(row["app_id"], "com.canonical:checkbox-cli");
    assert_eq!(row["format_version"], 7);
    assert_eq!(row["jobs_done"], 1, "{row}");
    assert_eq!(row["jobs_total"], 3, "{row}");
    assert_eq!(row["outcomes"], serde_json::json!({"pass": 1}));
    let id = row["id"].as_str().unwrap();
    let text = ok(repo, &["show", id]);
    assert!(text.contains("Status:       resumable"), "{text}");
    assert!(
        text.contains(&format!("Running job:  {}", job("waiting"))),
        "{text}"
    );
    assert!(
        text.contains("Test plan:    com.example.sessionfs::all"),
        "{text}"
    );
    assert!(text.contains("Progress:     1/3 jobs (pass 1)"), "{text}");
    // The table too.
    let table = ok(repo, &["list"]);
    let line = table.lines().nth(1).unwrap();
    assert!(line.contains(" resumable "), "{table}");
    assert!(line.contains(" 1/3 "), "{table}");
    assert!(line.ends_with(" sessionfs provider run"), "{table}");
}

/// What the command line says once Checkbox has ended.
fn check_after(repo: &Path, scratch: &Path) {
    let row = only_row(repo);
    let id = row["id"].as_str().unwrap().to_string();
    let dir = repo.join(format!("{id}.session"));
    let flags = flags(&dir);
    assert!(!flags.iter().any(|f| f == "incomplete"), "{flags:?}");
    // Checkbox's own reading of those flags.
    let status = if flags.iter().any(|f| f == "submitted") {
        "submitted"
    } else if flags.is_empty() {
        "no-flags"
    } else {
        "finished-not-submitted"
    };
    assert_eq!(row["status"], status, "{row}");
    assert_eq!(row["jobs_done"], 3);
    assert_eq!(row["jobs_total"], 3);
    assert_eq!(row["outcomes"], serde_json::json!({"pass": 2, "fail": 1}));
    let text = ok(repo, &["show", &id]);
    // Checkbox leaves the last job's name in the checkpoint: not running.
    assert!(!text.contains("Running job:"), "{text}");
    let table = ok(repo, &["list"]);
    let cells: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(cells[6..9], [status, "3/3", "-"], "{table}");
    for (name, outcome, rc) in [
        ("passing", "pass", 0),
        ("waiting", "pass", 0),
        ("failing", "fail", 3),
    ] {
        let block = format!(
            "  {}\n    outcome:     {outcome}\n    return code: {rc}\n",
            job(name)
        );
        assert!(text.contains(&block), "{block:?} not in\n{text}");
        let output = format!(
            "    output:      io-logs/{}.record.gz\n",
            job(name).replace("::", "__")
        );
        assert!(text.contains(&output), "{output:?} not in\n{text}");
    }
    // Both streams (Checkbox reads them from two pipes, so their order in
    // the record is the order it got them: tests/checkbox_cli.rs checks
    // that the decoding keeps the record's order).
    let lines = |text: String| {
        let mut l: Vec<String> = text.lines().map(String::from).collect();
        l.sort();
        l
    };
    assert_eq!(
        lines(ok(repo, &["show", &id, "--job", &job("passing")])),
        [
            "sessionfs-test: stderr of the passing job",
            "sessionfs-test: stdout of the passing job"
        ]
    );
    assert_eq!(
        lines(ok(repo, &["show", &id, "--job", "failing"])),
        [
            "sessionfs-test: exiting 3",
            "sessionfs-test: the failing job fails now"
        ]
    );
    // gc: what --clear-old-sessions would clear, and what it never clears.
    let old = ok(repo, &["gc", "--dry-run", "--status", "old"]);
    let unsent = ok(
        repo,
        &["gc", "--dry-run", "--status", "finished-not-submitted"],
    );
    let would = format!("would remove {id}\n");
    if status == "finished-not-submitted" {
        assert_eq!((old.as_str(), unsent.as_str()), ("", would.as_str()));
    } else {
        assert_eq!((old.as_str(), unsent.as_str()), (would.as_str(), ""));
    }
    assert!(dir.is_dir(), "a dry run removed nothing");
    // archive --last: the checkpoint as committed and every io-log.
    let archive = scratch.join("bug.tar.gz");
    let out = {
        let mut cmd = sessionfs_command();
        cmd.arg("--repo")
            .arg(repo)
            .args(["archive", "--last", "-o"])
            .arg(&archive);
        run(cmd, None)
    };
    out.assert_ok();
    let extract = scratch.join("extract");
    fs::create_dir(&extract).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&extract)
        .status()
        .unwrap();
    assert!(st.success());
    let packed = extract.join(format!("{id}.session"));
    assert_eq!(
        fs::read(packed.join("session")).unwrap(),
        fs::read(dir.join("session")).unwrap()
    );
    let mut logs: Vec<String> = fs::read_dir(dir.join("io-logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    logs.sort();
    let mut packed_logs: Vec<String> = fs::read_dir(packed.join("io-logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    packed_logs.sort();
    assert_eq!(packed_logs, logs);
    assert!(logs.len() >= 9, "{logs:?}");
}

fn step_failed(what: &str, log: &Path) -> ! {
    panic!(
        "checkbox-cli launcher: {what}\n(output in {}; last lines:\n{})",
        log.display(),
        tail(&read_log(log), 8)
    )
}

#[test]
fn the_command_line_reads_what_checkbox_writes() {
    let scratch = scratch_dir();
    let base = scratch.path().join("checkbox");
    let repo: PathBuf = base.join("sessions");
    let log = log_dir().join("checkbox-cli-commands.out");
    let gate = scratch.path().join("gate");
    let started_mark = scratch.path().join("gate.started");
    let started = Instant::now();
    let mut child = start_logged(
        Command::new(tools::checkbox_python())
            .arg(tools::project().join("tests/compat/checkbox_run.py"))
            .arg(&base)
            .arg("launcher")
            .arg(tools::data("checkbox-provider/launcher"))
            .env("PROVIDERPATH", tools::data("checkbox-provider"))
            .env("SESSIONFS_CHECKBOX_GATE", &gate)
            .env(
                "SESSIONFS_CHECKBOX_GATE_TIMEOUT",
                GATE_TIMEOUT_S.to_string(),
            )
            .env("XDG_CACHE_HOME", scratch.path().join("cache")),
        &log,
    );
    while !started_mark.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            step_failed(
                &format!("ended ({status}) before the waiting job ran"),
                &log,
            );
        }
        if started.elapsed() > Duration::from_secs(GATE_TIMEOUT_S) {
            let _ = child.kill();
            let _ = child.wait();
            step_failed("the waiting job did not start in time", &log);
        }
        sleep(Duration::from_millis(20));
    }
    // Whatever mid-run finds, let Checkbox finish so none is left behind.
    let mid = std::panic::catch_unwind(|| check_mid_run(&repo));
    fs::write(&gate, b"").unwrap();
    let ended = wait_until(&mut child, started, started + Duration::from_secs(120));
    if let Err(e) = mid {
        std::panic::resume_unwind(e);
    }
    if !matches!(ended, Ended::Exited(s) if s.code() == Some(0)) {
        step_failed(&format!("{ended}, want exit 0"), &log);
    }
    check_after(&repo, scratch.path());
    mount_views_match(scratch, &repo);
}

/// Through a mount of the repository, each job's `.record.txt` is what
/// `show --job` prints, and `session.json` is there.
fn mount_views_match(scratch: tempfile::TempDir, repo: &Path) {
    let row = only_row(repo);
    let id = row["id"].as_str().unwrap().to_string();
    let m = common::mount::Mounted::start_on(scratch, repo.to_path_buf(), &["--read-only"]);
    let session = m.path(format!("{id}.session"));
    assert!(session.join("session.json").is_file());
    for name in ["passing", "waiting", "failing"] {
        let view = session.join(format!(
            "io-logs/{}.record.txt",
            job(name).replace("::", "__")
        ));
        let shown =
            fs::read_to_string(&view).unwrap_or_else(|e| panic!("read {}: {e}", view.display()));
        assert_eq!(
            shown,
            ok(repo, &["show", &id, "--job", &job(name)]),
            "{name}"
        );
    }
}
