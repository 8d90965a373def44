//! The checkpoints this mount's writers commit, for the watch: the event of
//! such a commit is not news to the kernel, whose inode of `session` (the
//! writer's) stands for it once the writer is released, with the pages it
//! wrote. Any other change of `session` drops the kernel's entry of it
//! (see `watch`), and with it that inode and its pages.
//!
//! A commit is recorded before its rename, as the file about to become
//! `session` (its inode number), and after it as the version committed.
//! While recorded in flight, the writer holds the session's lock, so no
//! other commit can rename anything over `session` (every writer of the
//! repository takes that lock first): a `session` found with that inode
//! number is this commit. Afterwards only that exact version is.
//!
//! Invariants: a record is consumed by the first event that asks about it,
//! whatever it finds; a commit that fails or is discarded leaves no record
//! ([`OwnCommit`] removes it on drop); at most [`MAX_RECORDS`] are kept
//! (sessions not watched get no event, and a record dropped early costs
//! only the kernel's cache of one `session`).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::sync::Mutex;

use super::inode::Version;
use super::{Stamp, lock};

/// Records kept at most; past it they are all dropped.
const MAX_RECORDS: usize = 4096;

/// One session's last commit made through the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    /// Being renamed over `session`: the inode number of the file.
    InFlight { ino: u64 },
    /// Committed: the version `session` then is.
    Done(Version),
}

#[derive(Debug, Default)]
pub(crate) struct OwnCommits {
    by_session: Mutex<HashMap<OsString, Record>>,
}

impl OwnCommits {
    /// A writer of `session` in the session directory `session` is about
    /// to commit `file`: recorded until the returned guard is done or
    /// dropped.
    pub fn begin<'a>(&'a self, session: &OsStr, file: &File) -> OwnCommit<'a> {
        let ino = Stamp::of_file(file).map(|s| s.ino);
        if let Some(ino) = ino {
            let mut by_session = lock(&self.by_session);
            if by_session.len() >= MAX_RECORDS {
                by_session.clear();
            }
            by_session.insert(session.to_os_string(), Record::InFlight { ino });
        }
        OwnCommit {
            commits: self,
            session: session.to_os_string(),
            recorded: ino.is_some(),
        }
    }

    /// Whether `session` of `session`, found as `st` after an event of it,
    /// is the last commit made through the mount (the record is consumed).
    pub fn was_own(&self, session: &OsStr, st: &libc::stat) -> bool {
        let Some(record) = lock(&self.by_session).remove(session) else {
            return false;
        };
        match record {
            Record::InFlight { ino } => st.st_ino == ino,
            Record::Done(version) => Version::of(&Stamp::of(st)) == version,
        }
    }
}

/// A commit in progress (see [`OwnCommits::begin`]).
#[must_use]
pub(crate) struct OwnCommit<'a> {
    commits: &'a OwnCommits,
    session: OsString,
    recorded: bool,
}

impl OwnCommit<'_> {
    /// The commit is made: `session` is now `stamp`.
    pub fn done(mut self, stamp: Option<Stamp>) {
        if !self.recorded {
            return;
        }
        self.recorded = false;
        let mut by_session = lock(&self.commits.by_session);
        match stamp {
            // Unless an event asked already (and consumed it).
            Some(stamp) => {
                if let Some(r) = by_session.get_mut(&self.session) {
                    *r = Record::Done(Version::of(&stamp));
                }
            }
            None => {
                by_session.remove(&self.session);
            }
        }
    }
}

impl Drop for OwnCommit<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            return;
        }
        let mut by_session = lock(&self.commits.by_session);
        if let Some(Record::InFlight { .. }) = by_session.get(&self.session) {
            by_session.remove(&self.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn stat(f: &File) -> libc::stat {
        crate::core::sys::fstat(f.as_fd()).unwrap()
    }

    #[test]
    fn a_commit_is_known_in_flight_by_its_file_and_after_by_its_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let a = File::create(dir.join("a")).unwrap();
        let b = File::create(dir.join("b")).unwrap();
        let own = OwnCommits::default();
        let s = OsStr::new("s.session");

        let c = own.begin(s, &a);
        assert!(own.was_own(s, &stat(&a)), "in flight: its file");
        c.done(Stamp::of_file(&a));
        assert!(!own.was_own(s, &stat(&a)), "consumed by the event");

        let c = own.begin(s, &a);
        assert!(!own.was_own(s, &stat(&b)), "another file is not it");
        c.done(Stamp::of_file(&a));

        let c = own.begin(s, &a);
        c.done(Stamp::of_file(&a));
        assert!(own.was_own(s, &stat(&a)), "done: its version");

        let c = own.begin(s, &a);
        c.done(Stamp::of_file(&a));
        std::fs::write(dir.join("a"), b"changed").unwrap();
        assert!(!own.was_own(s, &stat(&a)), "changed since: another version");

        let c = own.begin(s, &a);
        drop(c);
        assert!(!own.was_own(s, &stat(&a)), "failed or discarded: no record");
    }
}
