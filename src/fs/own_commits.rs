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
//! That holds only while the kernel's entry of `session` names the
//! writer's inode, as it did when the writer opened it: a lookup of
//! `session` during the write hands out another inode (a writer's is
//! handed to nobody), which the kernel then keeps for the older version,
//! so from then on the write's commits are not recorded, and a record
//! already made is dropped (the commit's event then drops the entry).
//!
//! Invariants: a record is consumed by the first event that asks about it,
//! whatever it finds; a commit that fails or is discarded leaves no record
//! ([`OwnCommit`] removes it on drop); a commit is recorded only if no
//! lookup of its `session` handed out another inode since its writer
//! opened; at most [`MAX_RECORDS`] are kept (sessions not watched get no
//! event, and a record dropped early costs only the kernel's cache of one
//! `session`).

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

/// The writers open on one session's `session`.
#[derive(Debug, Clone, Copy)]
struct Writing {
    /// The inode they opened.
    ino: u64,
    /// How many.
    open: u32,
    /// Whether the kernel's entry of `session` still names that inode.
    named: bool,
}

#[derive(Debug, Default)]
pub(crate) struct OwnCommits {
    by_session: Mutex<HashMap<OsString, Record>>,
    writing: Mutex<HashMap<OsString, Writing>>,
}

impl OwnCommits {
    /// A writer of `session` in the session directory `session` opened
    /// the inode `ino` (through the kernel's entry of it).
    pub fn writer_opened(&self, session: &OsStr, ino: u64) {
        let mut writing = lock(&self.writing);
        let w = writing.entry(session.to_os_string()).or_insert(Writing {
            ino,
            open: 0,
            named: true,
        });
        w.open += 1;
        // Writers on two inodes: which one the entry names is not known.
        w.named &= w.ino == ino;
    }

    /// A writer of `session` in `session` is released.
    pub fn writer_closed(&self, session: &OsStr) {
        let mut writing = lock(&self.writing);
        if let Some(w) = writing.get_mut(session) {
            w.open = w.open.saturating_sub(1);
            if w.open == 0 {
                writing.remove(session);
            }
        }
    }

    /// A lookup of `session` in `session` hands the kernel `ino`.
    pub fn handed_out(&self, session: &OsStr, ino: u64) {
        let mut writing = lock(&self.writing);
        if let Some(w) = writing.get_mut(session)
            && w.ino != ino
        {
            w.named = false;
            drop(writing);
            lock(&self.by_session).remove(session);
        }
    }

    /// A writer of `session` in the session directory `session` is about
    /// to commit `file`: recorded until the returned guard is done or
    /// dropped, if the kernel's entry still names the writer's inode.
    pub fn begin<'a>(&'a self, session: &OsStr, file: &File) -> OwnCommit<'a> {
        let named = lock(&self.writing).get(session).is_some_and(|w| w.named);
        let ino = Stamp::of_file(file).map(|s| s.ino).filter(|_| named);
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
        own.writer_opened(s, 7);

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

    #[test]
    fn a_commit_is_not_recorded_once_a_lookup_handed_out_another_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let a = File::create(tmp.path().join("a")).unwrap();
        let own = OwnCommits::default();
        let s = OsStr::new("s.session");
        own.writer_opened(s, 7);
        own.handed_out(s, 7);
        let c = own.begin(s, &a);
        // A `stat` meanwhile: the kernel now names inode 8.
        own.handed_out(s, 8);
        c.done(Stamp::of_file(&a));
        assert!(!own.was_own(s, &stat(&a)), "the record went with it");
        let c = own.begin(s, &a);
        c.done(Stamp::of_file(&a));
        assert!(!own.was_own(s, &stat(&a)), "nor is a later commit recorded");
        own.writer_closed(s);
        own.writer_opened(s, 9);
        let c = own.begin(s, &a);
        c.done(Stamp::of_file(&a));
        assert!(
            own.was_own(s, &stat(&a)),
            "the next writer's entry is its own"
        );
        let c = own.begin(OsStr::new("other.session"), &a);
        c.done(Stamp::of_file(&a));
        assert!(
            !own.was_own(OsStr::new("other.session"), &stat(&a)),
            "no writer opened there through the mount"
        );
    }
}
