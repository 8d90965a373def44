//! Commits made at RELEASE, after `close()` returned, and the writers that
//! wait them out instead of getting EBUSY.
//!
//! The kernel sends RELEASE after the last `close()` of an open file has
//! returned, so a commit made there (an `O_TRUNC` open closed once without
//! writing, writes through passthrough after the close) holds the
//! session's lock at a moment the closing program already went on: its
//! next open must not find the session busy because of it. A handle of
//! this process takes the lock with [`begin`], which, when the lock is held
//! by such a late commit of this process, waits for it to end (at most
//! [`LATE_COMMIT_WAIT`]) and tries again. A lock held by anyone else (a
//! writer with uncommitted data, another process, a stale lock) still
//! refuses at once.
//!
//! Invariants:
//! - a session is marked for exactly as long as a [`late`] closure for it
//!   runs (a guard unmarks it, even on a panic);
//! - [`begin`] waits only while a late commit of the same session is
//!   marked, or retries once after one (of any session) ended; never
//!   longer than [`LATE_COMMIT_WAIT`] in all, and never inside a late
//!   commit (which would wait for itself).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::core::{self, BeginOptions, CheckpointWriter, Storage};

/// The longest a writer's open waits for late commits (each an fsync of a
/// checkpoint and of its directory).
pub(super) const LATE_COMMIT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Marks {
    /// The session directories with a late commit running (one entry per
    /// commit).
    running: Vec<PathBuf>,
    /// How many late commits have ended, of any session.
    ended: u64,
}

static MARKS: Mutex<Marks> = Mutex::new(Marks {
    running: Vec::new(),
    ended: 0,
});
static ENDED: Condvar = Condvar::new();

thread_local! {
    /// This thread runs a late commit: its own lock takes do not wait.
    static IN_LATE: Cell<bool> = const { Cell::new(false) };
}

/// Unmarks its session when dropped.
struct Mark<'a>(&'a Path);

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        let mut marks = lock(&MARKS);
        if let Some(i) = marks.running.iter().position(|p| p == self.0) {
            marks.running.swap_remove(i);
        }
        marks.ended += 1;
        ENDED.notify_all();
        IN_LATE.set(false);
    }
}

/// Runs `f`, a RELEASE's work on the session at `location`, marked as a
/// late commit.
pub(super) fn late<T>(location: &Path, f: impl FnOnce() -> T) -> T {
    lock(&MARKS).running.push(location.to_path_buf());
    IN_LATE.set(true);
    let _mark = Mark(location);
    f()
}

/// Takes the lock of `storage` and starts a checkpoint (in `dir`, its open
/// directory, when given), waiting out late commits of this process (see
/// the module doc).
pub(super) fn begin(
    storage: &Storage,
    dir: Option<std::os::fd::OwnedFd>,
    opts: BeginOptions,
) -> core::Result<CheckpointWriter> {
    let location = storage.location();
    let deadline = Instant::now() + LATE_COMMIT_WAIT;
    let mut seen = lock(&MARKS).ended;
    let mut retried_after_an_end = false;
    let mut result = match dir {
        Some(dir) => storage.begin_in(dir, opts),
        None => storage.begin(opts),
    };
    loop {
        match result {
            Err(e)
                if e.is_locked()
                    && !IN_LATE.get()
                    && wait_for_late_commit(
                        &location,
                        &mut seen,
                        &mut retried_after_an_end,
                        deadline,
                    ) =>
            {
                result = storage.begin(opts);
            }
            other => return other,
        }
    }
}

/// After a refusal: whether to try again, having waited until no late
/// commit of `location` runs. True if one ran (and ended before
/// `deadline`), or, once (`retried`), if one ended since `seen` (it may
/// have been the holder, between the refusal and this look); `seen` is
/// brought up to date.
fn wait_for_late_commit(
    location: &Path,
    seen: &mut u64,
    retried: &mut bool,
    deadline: Instant,
) -> bool {
    let mut marks = lock(&MARKS);
    let mut waited = false;
    while marks.running.iter().any(|p| p == location) {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        waited = true;
        marks = ENDED
            .wait_timeout(marks, deadline - now)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
    let ended_since = marks.ended != *seen && !*retried;
    *seen = marks.ended;
    if ended_since && !waited {
        *retried = true;
    }
    (waited || ended_since) && Instant::now() < deadline
}
