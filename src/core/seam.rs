//! The fault seam under the commit protocol.
//!
//! Every step of a checkpoint commit, and of making a session, asks the
//! repository's [`FaultSeam`] before it runs; the production seam
//! ([`NoFaults`]) always says go. Tests install a seam that fails a chosen
//! step, which proves that a failure between any two steps leaves the
//! previous checkpoint intact and no `session.next` behind.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Mutex;

/// One step of the commit protocol ([`Step::ALL`], in the order they run)
/// or of making a session ([`Step::CREATE_SESSION`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// `openat(session.next, O_CREAT|O_EXCL)`.
    CreateNext,
    /// A write into the writer's temporary (`.session.tmp-…`).
    Write,
    /// `fsync` of the temporary (or of the file `commit_file` commits).
    SyncFile,
    /// `renameat(temporary, session)`.
    Rename,
    /// `fsync` of the session directory.
    SyncDir,
    /// Making a new session's well-known directories.
    MakeWellKnownDirs,
    /// `fsync` of the repository directory after a session was made.
    SyncRepository,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::CreateNext,
        Step::Write,
        Step::SyncFile,
        Step::Rename,
        Step::SyncDir,
    ];
    pub const CREATE_SESSION: [Step; 2] = [Step::MakeWellKnownDirs, Step::SyncRepository];
}

/// Decides whether a step may run; an `Err` is reported as that step's
/// failure.
pub trait FaultSeam: Send + Sync + fmt::Debug {
    fn before(&self, step: Step, path: &Path) -> io::Result<()>;
}

/// The production seam: every step runs.
#[derive(Debug, Default)]
pub struct NoFaults;

impl FaultSeam for NoFaults {
    fn before(&self, _step: Step, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// Fails the next `count` runs of `step` with `errno`, then lets it run.
#[derive(Debug)]
pub struct FailStep {
    step: Step,
    errno: i32,
    remaining: Mutex<u32>,
}

impl FailStep {
    pub fn new(step: Step, errno: i32, count: u32) -> FailStep {
        FailStep {
            step,
            errno,
            remaining: Mutex::new(count),
        }
    }
}

impl FaultSeam for FailStep {
    fn before(&self, step: Step, _path: &Path) -> io::Result<()> {
        if step != self.step {
            return Ok(());
        }
        let mut left = self.remaining.lock().unwrap_or_else(|p| p.into_inner());
        if *left == 0 {
            return Ok(());
        }
        *left -= 1;
        Err(io::Error::from_raw_os_error(self.errno))
    }
}
