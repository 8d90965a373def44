//! The real Checkbox (PyPI checkbox-ng 1.18.1) runs `checkbox-cli launcher`
//! on the project's test provider (tests/data/checkbox-provider: a passing
//! job, a job that waits for the test, a failing job) with its session
//! repository being a real mount, in both I/O modes. Checkbox's repository
//! is `WellKnownDirsHelper.base_of_everything`/sessions;
//! tests/compat/checkbox_run.py points that at a directory whose
//! `sessions` leads into the mount.
//!
//! While the waiting job runs, the test reads the live session: a v7
//! checkpoint flagged `incomplete`, the waiting job as the running job, the
//! passing job's result. After Checkbox ends: all three results with their
//! outcomes and return codes, their io-logs, the session's directories, no
//! lock left; through the mount, `session.json` shows the same checkpoint.
//!
//! `on_disk` runs the same on a plain directory: it proves the harness, so
//! a failure through the mount is the mount's. A failure names the step;
//! Checkbox's whole output is in target/tmp/suite-logs/.

mod common;
#[path = "suites/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::mount::{Mounted, scratch};
use serde_json::Value;
use tools::{Ended, log_dir, read_log, start_logged, tail, wait_until};

const NS: &str = "com.example.sessionfs::";
/// Checkbox starts in ~2 s; the waiting job waits at most this for the gate.
const GATE_TIMEOUT_S: u64 = 60;
const DEADLINE: Duration = Duration::from_secs(120);

fn job(name: &str) -> String {
    format!("{NS}{name}")
}

/// A step's failure: which step, what, and where the output is.
fn step_err(label: &str, step: &str, what: impl std::fmt::Display, log: &Path) -> String {
    format!(
        "checkbox-cli launcher ({label}), step {step}: {what}\n(output in {}; last lines:\n{})",
        log.display(),
        tail(&read_log(log), 6)
    )
}

/// Decompresses and parses a Checkbox checkpoint (gzip-compressed JSON).
fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| format!("not gzip ({} bytes): {e}", bytes.len()))?;
    serde_json::from_slice(&json).map_err(|e| format!("not JSON: {e}"))
}

fn read_checkpoint(session_dir: &Path) -> Result<Value, String> {
    let path = session_dir.join("session");
    let bytes = fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The one session directory in `sessions`.
fn only_session(sessions: &Path) -> Result<PathBuf, String> {
    let names: Vec<String> = fs::read_dir(sessions)
        .map_err(|e| format!("list {}: {e}", sessions.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match names.as_slice() {
        [one] if one.starts_with("sessionfs_provider_run-") && one.ends_with(".session") => {
            Ok(sessions.join(one))
        }
        _ => Err(format!(
            "want one sessionfs_provider_run-*.session in {}, found {names:?}",
            sessions.display()
        )),
    }
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn results_of(cp: &Value) -> BTreeSet<String> {
    cp["session"]["results"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

fn flags_of(cp: &Value) -> Vec<String> {
    cp["session"]["metadata"]["flags"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What Checkbox 1.18.1 commits while the waiting job runs.
fn check_mid_run(dir: &Path) -> Result<(), String> {
    for sub in ["io-logs", "session-share"] {
        check(dir.join(sub).is_dir(), || {
            format!("no {sub}/ in {}", dir.display())
        })?;
    }
    let cp = read_checkpoint(dir)?;
    let md = &cp["session"]["metadata"];
    check(cp["version"] == 7, || {
        format!("checkpoint version {}, want 7", cp["version"])
    })?;
    check(md["app_id"] == "com.canonical:checkbox-cli", || {
        format!("app_id {}", md["app_id"])
    })?;
    check(md["title"] == "sessionfs provider run", || {
        format!("title {}", md["title"])
    })?;
    check(flags_of(&cp).iter().any(|f| f == "incomplete"), || {
        format!("flags {:?} lack incomplete", flags_of(&cp))
    })?;
    check(md["running_job_name"] == job("waiting").as_str(), || {
        format!(
            "running job {}, want {}",
            md["running_job_name"],
            job("waiting")
        )
    })?;
    let done = results_of(&cp);
    check(done == BTreeSet::from([job("passing")]), || {
        format!("results for {done:?}, want the passing job's only")
    })
}

/// Standard base64 (as Checkbox's io-log records hold it).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A job's io-log record: its (stream, text) chunks in order.
fn record(dir: &Path, rel: &str) -> Result<Vec<(String, String)>, String> {
    let path = dir.join(rel);
    let gz = fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: not gzip text: {e}", path.display()))?;
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| format!("{}: line {line:?}: {e}", path.display()))?;
            let stream = v[1].as_str().unwrap_or_default().to_string();
            let data = v[2]
                .as_str()
                .and_then(base64_decode)
                .ok_or_else(|| format!("{}: bad record {line:?}", path.display()))?;
            Ok((stream, String::from_utf8_lossy(&data).into_owned()))
        })
        .collect()
}

/// What the finished session holds.
fn check_after(dir: &Path) -> Result<(), String> {
    let cp = read_checkpoint(dir)?;
    check(cp["version"] == 7, || {
        format!("checkpoint version {}, want 7", cp["version"])
    })?;
    check(!flags_of(&cp).iter().any(|f| f == "incomplete"), || {
        format!("a finished session still flagged {:?}", flags_of(&cp))
    })?;
    let results = &cp["session"]["results"];
    for (name, outcome, code) in [
        ("passing", "pass", 0),
        ("waiting", "pass", 0),
        ("failing", "fail", 3),
    ] {
        let r = &results[job(name)][0];
        check(r["outcome"] == outcome && r["return_code"] == code, || {
            format!(
                "{name}: outcome {} return code {}, want {outcome} {code}",
                r["outcome"], r["return_code"]
            )
        })?;
        let io_log = format!("io-logs/{}.record.gz", job(name).replace("::", "__"));
        check(r["io_log_filename"] == io_log.as_str(), || {
            format!(
                "{name}: io_log_filename {}, want {io_log}",
                r["io_log_filename"]
            )
        })?;
        record(dir, &io_log)?;
    }
    let passing = record(
        dir,
        &format!("io-logs/{NS}passing.record.gz").replace("::", "__"),
    )?;
    let want = vec![
        (
            "stdout".to_string(),
            "sessionfs-test: stdout of the passing job\n".to_string(),
        ),
        (
            "stderr".to_string(),
            "sessionfs-test: stderr of the passing job\n".to_string(),
        ),
    ];
    // Checkbox reads the two streams from two pipes: the order between
    // them is the scheduler's, the order within each is the job's.
    let of_stream = |r: &[(String, String)], s: &str| -> Vec<String> {
        r.iter().filter(|c| c.0 == s).map(|c| c.1.clone()).collect()
    };
    let same = ["stdout", "stderr"]
        .iter()
        .all(|s| of_stream(&passing, s) == of_stream(&want, s))
        && passing.len() == want.len();
    check(same, || {
        format!("passing job's record {passing:?}, want {want:?} (in any order of the streams)")
    })?;
    let stdout = dir.join(format!(
        "io-logs/{}.stdout",
        job("passing").replace("::", "__")
    ));
    let text =
        fs::read_to_string(&stdout).map_err(|e| format!("read {}: {e}", stdout.display()))?;
    check(text == want[0].1, || {
        format!("{}: {text:?}", stdout.display())
    })?;
    check(!dir.join("session.next").exists(), || {
        format!("{} left a session.next", dir.display())
    })
}

/// Runs Checkbox with `base`/sessions as its repository; `scratch` holds the
/// gate and Checkbox's cache. Returns the session directory (as Checkbox
/// sees it).
fn run_checkbox(base: &Path, scratch: &Path, label: &str) -> Result<PathBuf, String> {
    let log = log_dir().join(format!("{label}.out"));
    let gate = scratch.join("gate");
    let started_mark = scratch.join("gate.started");
    let started = Instant::now();
    let mut child = start_logged(
        Command::new(tools::checkbox_python())
            .arg(tools::project().join("tests/compat/checkbox_run.py"))
            .arg(base)
            .arg("launcher")
            .arg(tools::data("checkbox-provider/launcher"))
            .env("PROVIDERPATH", tools::data("checkbox-provider"))
            .env("SESSIONFS_CHECKBOX_GATE", &gate)
            .env(
                "SESSIONFS_CHECKBOX_GATE_TIMEOUT",
                GATE_TIMEOUT_S.to_string(),
            )
            .env("XDG_CACHE_HOME", scratch.join("cache")),
        &log,
    );
    // Start: until the waiting job runs.
    let sessions = base.join("sessions");
    let mid = loop {
        if started_mark.exists() {
            break only_session(&sessions).and_then(|dir| check_mid_run(&dir).map(|()| dir));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(step_err(
                label,
                "start",
                format!("Checkbox ended ({status}) before the waiting job ran"),
                &log,
            ));
        }
        if started.elapsed() > Duration::from_secs(GATE_TIMEOUT_S) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(step_err(
                label,
                "start",
                "the waiting job did not start in time",
                &log,
            ));
        }
        sleep(Duration::from_millis(20));
    };
    // Let it finish whatever mid-run found, so no Checkbox is left behind.
    fs::write(&gate, b"").map_err(|e| format!("create {}: {e}", gate.display()))?;
    let ended = wait_until(&mut child, started, started + DEADLINE);
    let dir = mid.map_err(|e| step_err(label, "mid-run", e, &log))?;
    // checkbox-ng 1.18.1 exits 0 even though a job of the plan failed.
    if !matches!(ended, Ended::Exited(s) if s.code() == Some(0)) {
        return Err(step_err(
            label,
            "finish",
            format!("Checkbox {ended}, want exit 0"),
            &log,
        ));
    }
    check_after(&dir).map_err(|e| step_err(label, "after", e, &log))?;
    Ok(dir)
}

/// Checkbox's base directory next to the mount, its `sessions` leading
/// into the mount.
fn through_mount(m: &Mounted, label: &str) -> Result<(), String> {
    let base = m.root().join("checkbox");
    fs::create_dir(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
    std::os::unix::fs::symlink(&m.mountpoint, base.join("sessions"))
        .map_err(|e| format!("symlink {}/sessions: {e}", base.display()))?;
    let dir = run_checkbox(&base, m.root(), label)?;
    let name = dir.file_name().unwrap_or_default();
    let log = log_dir().join(format!("{label}.out"));
    // It went through the mount into the repository.
    let on_disk = fs::read(m.repo.join(name).join("session")).map_err(|e| {
        step_err(
            label,
            "repository",
            format!("the session is not in the repository: {e}"),
            &log,
        )
    })?;
    let via_mount = fs::read(m.path(name).join("session")).map_err(|e| {
        step_err(
            label,
            "repository",
            format!("read through the mount: {e}"),
            &log,
        )
    })?;
    check(on_disk == via_mount, || {
        step_err(
            label,
            "repository",
            "the mount and the repository hold different checkpoints",
            &log,
        )
    })?;
    let view = m.path(name).join("session.json");
    let shown: Value = fs::read(&view)
        .map_err(|e| format!("read {}: {e}", view.display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", view.display())))
        .map_err(|e| step_err(label, "session.json", e, &log))?;
    let decoded = decode(&on_disk).map_err(|e| step_err(label, "session.json", e, &log))?;
    check(shown == decoded, || {
        step_err(
            label,
            "session.json",
            "session.json is not the checkpoint decoded",
            &log,
        )
    })?;
    tools::no_locks_left(m).map_err(|e| step_err(label, "after", e, &log))
}

#[test]
fn passthrough() {
    let m = Mounted::start(&[]);
    let result = through_mount(&m, "checkbox-passthrough");
    tools::finish(m, "checkbox-passthrough", result);
}

#[test]
fn daemon_served() {
    let m = Mounted::start(&["--no-passthrough"]);
    let result = through_mount(&m, "checkbox-daemon-served");
    tools::finish(m, "checkbox-daemon-served", result);
}

/// The control: the same run with a plain directory as the repository.
#[test]
fn on_disk() {
    let dir = scratch("checkbox-disk");
    let base = dir.path().join("checkbox");
    if let Err(msg) = run_checkbox(&base, dir.path(), "checkbox-disk") {
        panic!("{msg}");
    }
}

#[test]
fn base64_of_records() {
    assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
    assert_eq!(base64_decode("aGVsbG8K"), Some(b"hello\n".to_vec()));
    assert_eq!(base64_decode("a*b"), None);
}
