//! plainbox 0.38's own storage protocol with its repository being a real
//! mount, in both I/O modes, run by tests/compat/plainbox_protocol.py in
//! one process as plainbox runs it: create a session, save_checkpoint() in
//! a loop (each read back), list, a writer killed mid-save leaving a stale
//! `session.next` (saves then raise LockedStorageError), break_lock(), a
//! SessionManager checkpoint that meets a stale lock and breaks it, load,
//! remove.
//!
//! `on_disk` runs the same on a plain directory: it proves the script, so
//! a failure through the mount is the mount's. A failure names the step
//! and plainbox's error; the script's whole output is in
//! target/tmp/suite-logs/.

mod common;
#[path = "suites/tools.rs"]
mod tools;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mount::{Mounted, scratch};
use tools::{log_dir, run_bounded, tail};

/// The whole protocol takes about a second on disk.
const DEADLINE: Duration = Duration::from_secs(60);
const SAVES: u32 = 50;

fn protocol(repo: &Path, label: &str) -> Result<(), String> {
    let log = log_dir().join(format!("{label}.out"));
    let (ended, out) = run_bounded(
        Command::new(tools::plainbox_python())
            .arg(tools::project().join("tests/compat/plainbox_protocol.py"))
            .arg(repo)
            .arg("--saves")
            .arg(SAVES.to_string()),
        DEADLINE,
        &log,
    );
    let steps = out.lines().filter(|l| l.starts_with("ok ")).count();
    if ended.success() && steps == 7 {
        return Ok(());
    }
    let failed = out
        .lines()
        .find(|l| l.starts_with("FAILED "))
        .map_or_else(|| tail(&out, 5), str::to_string);
    Err(format!(
        "plainbox 0.38's protocol ({label}) {ended} after {steps} of 7 steps: {failed} \
         (output in {})",
        log.display()
    ))
}

fn through_mount(m: &Mounted, label: &str) -> Result<(), String> {
    protocol(&m.mountpoint, label)?;
    tools::no_locks_left(m)?;
    let left: Vec<_> = std::fs::read_dir(&m.repo)
        .map_err(|e| format!("list {}: {e}", m.repo.display()))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if !left.is_empty() {
        return Err(format!(
            "{label}: plainbox removed its sessions, yet the repository holds {left:?}"
        ));
    }
    Ok(())
}

#[test]
fn passthrough() {
    let m = Mounted::start(&[]);
    let result = through_mount(&m, "plainbox-passthrough");
    tools::finish(m, "plainbox-passthrough", result);
}

#[test]
fn daemon_served() {
    let m = Mounted::start(&["--no-passthrough"]);
    let result = through_mount(&m, "plainbox-daemon-served");
    tools::finish(m, "plainbox-daemon-served", result);
}

/// The control: the same protocol on a plain directory.
#[test]
fn on_disk() {
    let dir = scratch("plainbox-disk");
    if let Err(msg) = protocol(dir.path(), "plainbox-disk") {
        panic!("{msg}");
    }
}
