//! The inode table: which inode number stands for which place in the
//! repository.
//!
//! Layout: [`NodeKey`] (the places, typed), the table of inodes
//! ([`InodeTable`], in `table`: a compact tree of names, see there), and
//! what else is known per inode ([`Nodes`]).
//!
//! Invariants:
//! - [`ROOT`] and `LAST_SESSION` always exist; every other inode names a
//!   session directory or a path inside one, by name (never by a path that
//!   leaves the session directory: each component was a single name looked
//!   up by the kernel);
//! - every name the kernel was given maps to its inode, and each inode has
//!   one primary name (the one requests on the inode act on); several
//!   names map to one inode only for hard links of one file of the disk
//!   (see [`InodeTable::alias`]), so `stat` shows one inode number for all
//!   of its names, as the disk does;
//! - an inode number is never reused for another key while the mount lives,
//!   so the kernel can never confuse two places;
//! - an inode is dropped only when the kernel has forgotten every lookup of
//!   it.

mod checkpoints;
mod index;
mod store;
mod table;

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::hash::Hash;
use std::path::{Path, PathBuf};

use self::checkpoints::CheckpointInode;
pub(crate) use self::checkpoints::{CheckpointInodes, OpenChoice, Version};
pub(crate) use self::table::InodeTable;
use super::Stamp;
use crate::core::{
    SESSION_FILE, SESSION_NEXT_FILE, SessionName, is_checkpoint_temporary, is_nfs_leftover,
};
use crate::decode::VIEW_NAME;

pub const ROOT: u64 = 1;
pub(crate) const LAST_SESSION: u64 = 2;
const FIRST_DYNAMIC: u64 = 3;

/// The place an inode stands for. The names that mean something to the
/// filesystem are told apart here, once, by [`NodeKey::inside`]: the rest
/// of the layer matches on the variant, never on a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum NodeKey {
    Root,
    LastSession,
    /// A symlink made in the root that is not `last-session` (yet): `ln
    /// -sfn X.session last-session` makes a temporary link, then renames
    /// it. Known only to the daemon, by its name.
    PendingLink(OsString),
    /// A session directory, by its name in the repository.
    Session(OsString),
    /// `session` directly in a session directory: the checkpoint.
    Checkpoint(OsString),
    /// `session.next` directly in a session directory: the lock of a
    /// checkpoint in progress.
    Lock(OsString),
    /// `session.json` directly in a session directory: the decoded view,
    /// unless a real file of that name exists.
    View(OsString),
    /// Any other path inside a session directory (one or more components).
    Child(OsString, PathBuf),
}

/// Names a session directory of the mount never shows: a checkpoint
/// writer's temporary (live or left by a crash) and an NFS client's
/// `.nfsXXXX` of a file removed while open.
pub(super) fn never_shown_in_session(name: &OsStr) -> bool {
    is_checkpoint_temporary(name) || is_nfs_leftover(name)
}

impl NodeKey {
    /// The key of `rel` inside the session directory `session`.
    pub fn inside(session: OsString, rel: PathBuf) -> NodeKey {
        let name = rel.as_os_str();
        if name == SESSION_FILE {
            NodeKey::Checkpoint(session)
        } else if name == SESSION_NEXT_FILE {
            NodeKey::Lock(session)
        } else if name == VIEW_NAME {
            NodeKey::View(session)
        } else {
            NodeKey::Child(session, rel)
        }
    }

    /// For a key inside a session directory: the session and the path
    /// relative to it.
    pub fn in_session(&self) -> Option<(&OsStr, &Path)> {
        match self {
            NodeKey::Checkpoint(s) => Some((s, Path::new(SESSION_FILE))),
            NodeKey::Lock(s) => Some((s, Path::new(SESSION_NEXT_FILE))),
            NodeKey::View(s) => Some((s, Path::new(VIEW_NAME))),
            NodeKey::Child(s, rel) => Some((s, rel)),
            NodeKey::Root
            | NodeKey::LastSession
            | NodeKey::PendingLink(_)
            | NodeKey::Session(_) => None,
        }
    }

    /// The key of `name` inside the directory this key stands for; `None`
    /// where the mount shows nothing of that name (a checkpoint writer's
    /// temporary, or an NFS client's `.nfsXXXX` of a file removed while
    /// open, is never a session's content).
    pub fn child(&self, name: &OsStr) -> Option<NodeKey> {
        match self {
            NodeKey::Root => Some(NodeKey::Session(name.to_os_string())),
            NodeKey::Session(_) if never_shown_in_session(name) => None,
            NodeKey::Session(s) => Some(NodeKey::inside(s.clone(), PathBuf::from(name))),
            NodeKey::LastSession | NodeKey::PendingLink(_) => None,
            NodeKey::Checkpoint(_) | NodeKey::Lock(_) | NodeKey::View(_) | NodeKey::Child(..) => {
                let (s, rel) = self.in_session()?;
                Some(NodeKey::inside(s.to_os_string(), rel.join(name)))
            }
        }
    }
}

/// What the filesystem knows of the inodes the kernel holds, behind one
/// mutex (see the lock order in the module doc of `fs`), so that a lookup,
/// a forget and a release each see and change it in one step.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    pub table: InodeTable,
    pub checkpoints: CheckpointInodes,
    /// Symlinks made in the root (by `ln -sfn X.session last-session`,
    /// which makes a temporary link and renames it): name → session.
    pub pending_links: HashMap<OsString, SessionName>,
    /// Session directories found gone while the kernel may still cache
    /// them (see `SessionFs::take_vanished`).
    pub vanished: Vec<OsString>,
    /// The open handles of plain files and of `session.next`, by inode.
    pub open_files: OpenFiles,
    /// The `session.next` last created through the mount in each session
    /// (see `lockfile`).
    pub created_locks: HashMap<OsString, CreatedLock>,
}

/// A `session.next` created through the mount: its (device, inode), and
/// a descriptor of it (`O_PATH`: no lock, no I/O) that keeps the inode in
/// use, so that its number cannot be given to another file while the
/// mount remembers it.
#[derive(Debug)]
pub(crate) struct CreatedLock {
    pub identity: (u64, u64),
    /// Held, never read: its being open is the point.
    #[allow(dead_code)]
    pub pin: std::os::fd::OwnedFd,
}

/// The handles open on inodes of plain files: the attributes of an inode
/// with an open handle are its descriptor's, so a file unlinked (or
/// replaced under its name) while open still shows itself until closed.
///
/// It also knows which inodes are being executed: the kernel opens a
/// program with `__FMODE_EXEC` and keeps that open until the last process
/// running it is gone, so an exec handle not yet released is a running
/// image (or one being loaded).
#[derive(Debug, Default)]
pub(crate) struct OpenFiles {
    by_ino: HashMap<u64, Vec<u64>>,
    ino_of_fh: HashMap<u64, u64>,
    /// The handles the kernel opened to execute a program.
    exec_fhs: HashSet<u64>,
}

impl OpenFiles {
    pub fn opened(&mut self, ino: u64, fh: u64) {
        self.by_ino.entry(ino).or_default().push(fh);
        self.ino_of_fh.insert(fh, ino);
    }

    /// `fh` on `ino` is the kernel's open of a program it executes.
    pub fn opened_to_execute(&mut self, ino: u64, fh: u64) {
        self.opened(ino, fh);
        self.exec_fhs.insert(fh);
    }

    /// The oldest handle open on `ino`.
    pub fn first(&self, ino: u64) -> Option<u64> {
        self.by_ino.get(&ino).and_then(|h| h.first().copied())
    }

    /// Whether a process is running (or loading) `ino` as its program.
    pub fn executing(&self, ino: u64) -> bool {
        self.by_ino
            .get(&ino)
            .is_some_and(|h| h.iter().any(|fh| self.exec_fhs.contains(fh)))
    }

    fn closed(&mut self, fh: u64) {
        self.exec_fhs.remove(&fh);
        let Some(ino) = self.ino_of_fh.remove(&fh) else {
            return;
        };
        if let Some(h) = self.by_ino.get_mut(&ino) {
            h.retain(|&x| x != fh);
            if h.is_empty() {
                self.by_ino.remove(&ino);
            }
        }
    }
}

impl Nodes {
    /// The inode a lookup of `key` (found as `st`) by process `pid` (0:
    /// unknown) hands the kernel, counting the lookup.
    pub fn looked_up(&mut self, key: NodeKey, st: &libc::stat, pid: u32) -> u64 {
        if !matches!(key, NodeKey::Checkpoint(_)) {
            return self.table.intern(key, true);
        }
        let stamp = Stamp::of(st);
        // A process refused an open (ESTALE) looks the name up again: it
        // gets an inode of its own, which no other lookup gets before its
        // open (the kernel retries once only).
        let refused = pid != 0 && self.checkpoints.fresh_for.contains_key(&pid);
        let found = self.table.find(&key);
        if let Some(ino) = found
            && self.checkpoints.shareable(ino, &stamp, pid)
            && (!refused
                || self
                    .checkpoints
                    .by_ino
                    .get(&ino)
                    .is_some_and(|c| c.reserved_for == pid))
        {
            return self.table.intern(key, true);
        }
        let ino = self.table.intern_fresh(key);
        // The older inode, dropped by the table if the kernel held no
        // lookup of it, leaves nothing behind.
        if let Some(old) = found
            && self.table.key(old).is_none()
        {
            self.checkpoints.drop_unused(old);
        }
        self.checkpoints.by_ino.insert(
            ino,
            CheckpointInode::fresh(Version::of(&stamp), if refused { pid } else { 0 }),
        );
        ino
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        self.table.forget(ino, n);
        if self.table.key(ino).is_none() {
            self.checkpoints.drop_unused(ino);
        }
    }

    /// The handle `fh` (not a `session` writer's) is released.
    pub fn closed(&mut self, fh: u64) {
        self.open_files.closed(fh);
        self.checkpoint_closed(fh, None);
    }

    /// The `session` write handle `fh` is released; `committed`: the
    /// checkpoint it committed last, when that is what it ended with, and
    /// whether the kernel's pages of its inode hold exactly that version
    /// (daemon-served writes go through them).
    pub fn writer_closed(&mut self, fh: u64, committed: Option<(Stamp, bool)>) {
        let ino = self.checkpoints.ino_of_fh.get(&fh).copied();
        self.checkpoint_closed(fh, Some(committed));
        // The inode now stands for the version just committed: the next
        // lookups find it first, even if readers looked the name up (and
        // got inodes of their own) while it was written.
        if let Some(ino) = ino
            && self
                .checkpoints
                .by_ino
                .get(&ino)
                .is_some_and(|c| c.stamp.is_some() && committed.is_some())
            && let Some(key) = self.table.key(ino)
            && self.table.find(&key) != Some(ino)
        {
            self.table.alias(key, ino, false);
        }
    }

    fn checkpoint_closed(&mut self, fh: u64, writer: Option<Option<(Stamp, bool)>>) {
        // Forgotten by the kernel before this release was answered.
        if let Some(ino) = self.checkpoints.closed(fh, writer)
            && self.table.key(ino).is_none()
        {
            self.checkpoints.by_ino.remove(&ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One is kept per `session` inode the kernel holds: a walk of
    /// 100,000 sessions keeps 100,000.
    #[test]
    fn a_session_inode_costs_little() {
        assert!(std::mem::size_of::<CheckpointInode>() <= 40);
        assert!(std::mem::size_of::<Stamp>() <= 40);
    }

    #[test]
    fn interning_is_stable_and_forget_releases() {
        let mut t = InodeTable::default();
        let k = NodeKey::Session("a.session".into());
        let a = t.intern(k.clone(), true);
        assert_eq!(t.intern(k.clone(), true), a);
        assert_eq!(t.key(a), Some(k.clone()));
        t.forget(a, 1);
        assert_eq!(t.key(a), Some(k.clone()));
        t.forget(a, 1);
        assert_eq!(t.key(a), None);
        let b = t.intern(k, false);
        assert_ne!(a, b, "inode numbers are never reused");
    }

    #[test]
    fn fresh_inodes_share_a_key_until_forgotten() {
        let mut t = InodeTable::default();
        let k = NodeKey::Checkpoint("s.session".into());
        let a = t.intern_fresh(k.clone());
        let b = t.intern_fresh(k.clone());
        assert_ne!(a, b);
        assert_eq!(t.key(a), Some(k.clone()));
        assert_eq!(t.find(&k), Some(b));
        t.forget(b, 1);
        assert_eq!(t.key(a), Some(k.clone()), "the older inode still stands");
        t.forget(a, 1);
        assert_eq!(t.key(a), None);
    }

    #[test]
    fn rename_moves_a_subtree() {
        let mut t = InodeTable::default();
        let s = || OsString::from("s.session");
        let d = t.intern(NodeKey::Child(s(), "d".into()), true);
        let f = t.intern(NodeKey::Child(s(), "d/f".into()), true);
        let victim = t.intern(NodeKey::Child(s(), "e".into()), true);
        t.rename(
            &NodeKey::Child(s(), "d".into()),
            &NodeKey::Child(s(), "e".into()),
        );
        assert_eq!(t.key(d), Some(NodeKey::Child(s(), "e".into())));
        assert_eq!(t.key(f), Some(NodeKey::Child(s(), "e/f".into())));
        assert_eq!(t.find(&NodeKey::Child(s(), "e".into())), Some(d));
        assert_eq!(t.find(&NodeKey::Child(s(), "d".into())), None);
        assert_ne!(t.find(&NodeKey::Child(s(), "e".into())), Some(victim));
    }

    #[test]
    fn detach_unlinks_a_subtree() {
        let mut t = InodeTable::default();
        let dir = NodeKey::Child("s.session".into(), "d".into());
        let file = NodeKey::Child("s.session".into(), "d/f".into());
        let other = NodeKey::Child("s.session".into(), "dx".into());
        let (d, f, o) = (
            t.intern(dir.clone(), true),
            t.intern(file.clone(), true),
            t.intern(other.clone(), true),
        );
        t.detach(&dir);
        assert_eq!(t.find(&dir), None);
        assert_eq!(t.find(&file), None);
        assert_eq!(t.find(&other), Some(o));
        // The detached inodes still resolve until forgotten.
        assert!(t.key(d).is_some() && t.key(f).is_some());
    }

    #[test]
    fn the_names_that_mean_something_are_told_apart_once() {
        let s = NodeKey::Session("s.session".into());
        let child = |k: &NodeKey, n: &str| k.child(OsStr::new(n)).unwrap();
        assert_eq!(
            child(&s, "session"),
            NodeKey::Checkpoint("s.session".into())
        );
        assert_eq!(child(&s, "session.next"), NodeKey::Lock("s.session".into()));
        assert_eq!(child(&s, "session.json"), NodeKey::View("s.session".into()));
        assert_eq!(
            child(&s, "io-logs"),
            NodeKey::Child("s.session".into(), "io-logs".into())
        );
        // Only directly in the session directory.
        let deeper = child(&child(&s, "io-logs"), "session");
        assert_eq!(
            deeper,
            NodeKey::Child("s.session".into(), "io-logs/session".into())
        );
        assert_eq!(
            NodeKey::Root.child(OsStr::new("x.session")),
            Some(NodeKey::Session("x.session".into()))
        );
        assert_eq!(NodeKey::LastSession.child(OsStr::new("x")), None);
        assert_eq!(
            NodeKey::PendingLink("tmp".into()).child(OsStr::new("x")),
            None
        );
    }

    #[test]
    fn a_rename_onto_a_special_name_gives_the_special_key() {
        let mut t = InodeTable::default();
        let s = || OsString::from("s.session");
        let f = t.intern(NodeKey::Child(s(), "draft".into()), true);
        let inner = t.intern(NodeKey::Child(s(), "d/session".into()), true);
        t.rename(&NodeKey::Child(s(), "draft".into()), &NodeKey::View(s()));
        assert_eq!(t.key(f), Some(NodeKey::View(s())));
        t.rename(
            &NodeKey::Child(s(), "d".into()),
            &NodeKey::Child(s(), "e".into()),
        );
        assert_eq!(t.key(inner), Some(NodeKey::Child(s(), "e/session".into())));
    }

    #[test]
    fn hard_links_share_an_inode_that_outlives_its_first_name() {
        let mut t = InodeTable::default();
        let s = || OsString::from("s.session");
        let a = NodeKey::Child(s(), "a".into());
        let b = NodeKey::Child(s(), "d/b".into());
        let ino = t.intern(a.clone(), true);
        t.set_identity(ino, (1, 99));
        assert!(t.alias(b.clone(), ino, true));
        assert_eq!(t.find(&b), Some(ino));
        assert_eq!(t.linked((1, 99)), Some((ino, a.clone())));
        // The first name goes: the inode goes on under the other.
        t.detach(&a);
        assert_eq!(t.key(ino), Some(b.clone()));
        assert_eq!(t.linked((1, 99)), Some((ino, b.clone())));
        // Renaming the directory holding the link moves it along.
        t.rename(
            &NodeKey::Child(s(), "d".into()),
            &NodeKey::Child(s(), "e".into()),
        );
        let moved = NodeKey::Child(s(), "e/b".into());
        assert_eq!(t.key(ino), Some(moved.clone()));
        // Forgotten: every name and the identity go with it.
        t.forget(ino, 2);
        assert_eq!(t.key(ino), None);
        assert_eq!(t.find(&moved), None);
        assert_eq!(t.linked((1, 99)), None);
        assert!(!t.alias(a, ino, true), "a forgotten inode takes no names");
    }

    #[test]
    fn a_forgotten_linked_inode_leaves_no_name_behind() {
        let mut t = InodeTable::default();
        let s = || OsString::from("s.session");
        let ino = t.intern(NodeKey::Child(s(), "a".into()), true);
        for n in ["b", "c"] {
            assert!(t.alias(NodeKey::Child(s(), n.into()), ino, true));
        }
        t.forget(ino, 3);
        for n in ["a", "b", "c"] {
            assert_eq!(t.find(&NodeKey::Child(s(), n.into())), None, "{n}");
        }
        assert_eq!(t.len(), 2, "only the root and last-session");
    }

    fn stat_of_size(size: i64) -> libc::stat {
        // SAFETY: libc::stat is plain data; all zeroes is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_size = size;
        st.st_ino = 42;
        st
    }

    fn v(size: i64) -> Version {
        Version::of(&Stamp::of(&stat_of_size(size)))
    }

    #[test]
    fn a_checkpoint_inode_is_shared_by_the_readers_of_one_version_only() {
        let mut n = Nodes::default();
        let key = || NodeKey::Checkpoint("s.session".into());
        let a = n.looked_up(key(), &stat_of_size(1), 7);
        assert_eq!(n.looked_up(key(), &stat_of_size(1), 7), a, "stat then open");
        assert_eq!(
            n.looked_up(key(), &stat_of_size(1), 8),
            a,
            "another process"
        );
        assert_eq!(
            n.looked_up(key(), &stat_of_size(1), 0),
            a,
            "unknown process"
        );
        let how = n.checkpoints.open_reader(a, 7, v(1));
        assert_eq!(how, OpenChoice::Alone { cached: None });
        let st = v(1);
        assert_eq!(
            n.checkpoints.reader_opened(a, 100, st, &how),
            Some(false),
            "the first reader fills the pages"
        );
        let how = n.checkpoints.open_reader(a, 8, v(1));
        assert!(matches!(how, OpenChoice::Join { .. }), "{how:?}");
        assert_eq!(
            n.checkpoints.reader_opened(a, 101, st, &how),
            Some(true),
            "the next keeps them"
        );
        let b = n.looked_up(key(), &stat_of_size(2), 7);
        assert_ne!(b, a, "another version");
        // A writer opening the readers' inode is sent to a fresh lookup.
        assert_eq!(
            n.checkpoints.open_writer(a, 9, Some(v(2))),
            OpenChoice::Stale
        );
        let c = n.looked_up(key(), &stat_of_size(2), 9);
        assert_ne!(c, b, "the refused process gets an inode of its own");
        assert_eq!(
            n.checkpoints.open_writer(c, 9, Some(v(2))),
            OpenChoice::Alone { cached: None }
        );
        n.checkpoints.opened(c, 102);
        assert_ne!(
            n.looked_up(key(), &stat_of_size(2), 7),
            c,
            "a writer's inode is handed to nobody"
        );
    }

    #[test]
    fn the_inode_of_a_refused_open_is_its_own_until_it_opened() {
        let mut n = Nodes::default();
        let key = || NodeKey::Checkpoint("s.session".into());
        let st = v(1);
        let a = n.looked_up(key(), &stat_of_size(1), 7);
        assert_eq!(
            n.checkpoints.open_writer(a, 7, Some(v(1))),
            OpenChoice::Alone { cached: None }
        );
        n.checkpoints.opened(a, 100);
        // A reader that looked up before the writer opened is refused.
        assert_eq!(n.checkpoints.open_reader(a, 8, v(1)), OpenChoice::Stale);
        let b = n.looked_up(key(), &stat_of_size(1), 8);
        assert_ne!(b, a);
        assert_eq!(
            n.looked_up(key(), &stat_of_size(1), 8),
            b,
            "its second lookup"
        );
        assert_ne!(
            n.looked_up(key(), &stat_of_size(1), 9),
            b,
            "nobody else gets it before its open"
        );
        let b = n.looked_up(key(), &stat_of_size(1), 8);
        let how = n.checkpoints.open_reader(b, 8, v(1));
        assert_eq!(how, OpenChoice::Alone { cached: None });
        // Another reader of the same version got in meanwhile: both stand.
        let other = n.checkpoints.open_reader(b, 9, v(1));
        assert_eq!(n.checkpoints.reader_opened(b, 102, st, &other), Some(false));
        assert_eq!(n.checkpoints.reader_opened(b, 101, st, &how), Some(true));
        assert_eq!(n.looked_up(key(), &stat_of_size(1), 10), b, "then shared");
    }

    #[test]
    fn a_writers_inode_stands_for_what_it_committed_only() {
        let mut n = Nodes::default();
        let key = || NodeKey::Checkpoint("s.session".into());
        let w = n.looked_up(key(), &stat_of_size(1), 7);
        assert_eq!(
            n.checkpoints.open_writer(w, 7, Some(v(1))),
            OpenChoice::Alone { cached: None }
        );
        n.checkpoints.opened(w, 100);
        let committed = Stamp::of(&stat_of_size(5));
        n.writer_closed(100, Some((committed, true)));
        assert_eq!(n.looked_up(key(), &stat_of_size(5), 8), w, "its version");
        assert_eq!(
            n.checkpoints.open_reader(w, 8, v(5)),
            OpenChoice::Alone {
                cached: Some(Version::of(&committed))
            },
            "with its pages"
        );
        // A writer that ends with nothing committed leaves no version.
        let six = n.looked_up(key(), &stat_of_size(6), 7);
        assert_eq!(
            n.checkpoints.open_writer(six, 7, Some(v(6))),
            OpenChoice::Alone { cached: None }
        );
        n.checkpoints.opened(six, 101);
        n.writer_closed(101, None);
        assert_ne!(n.looked_up(key(), &stat_of_size(6), 8), six);
    }

    #[test]
    fn an_inode_of_an_older_version_is_refused_and_its_retry_gets_the_newer() {
        let mut n = Nodes::default();
        let key = || NodeKey::Checkpoint("s.session".into());
        let a = n.looked_up(key(), &stat_of_size(1), 7);
        let how = n.checkpoints.open_reader(a, 7, v(1));
        assert_eq!(n.checkpoints.reader_opened(a, 100, v(1), &how), Some(false));
        n.closed(100);
        // Committed meanwhile; the kernel kept the entry of `a`.
        assert!(n.checkpoints.stands_for(a, v(1)) && !n.checkpoints.stands_for(a, v(2)));
        assert_eq!(n.checkpoints.open_reader(a, 8, v(2)), OpenChoice::Stale);
        let b = n.looked_up(key(), &stat_of_size(2), 8);
        assert_ne!(b, a);
        assert_eq!(
            n.checkpoints.open_reader(b, 8, v(2)),
            OpenChoice::Alone { cached: None }
        );
        assert_eq!(
            n.checkpoints.open_writer(a, 9, Some(v(2))),
            OpenChoice::Stale
        );
        // A reopen of the refused inode without a lookup: served apart.
        assert_eq!(n.checkpoints.open_reader(a, 9, v(2)), OpenChoice::Unshared);
        // The retry itself, when yet another commit fell between its lookup
        // and its open, is served apart: the kernel would not retry again.
        assert_eq!(n.checkpoints.open_reader(a, 11, v(2)), OpenChoice::Stale);
        let c = n.looked_up(key(), &stat_of_size(2), 11);
        assert_ne!(c, b, "an inode of its own");
        assert_eq!(n.checkpoints.open_reader(c, 11, v(3)), OpenChoice::Unshared);
        n.checkpoints.answered(11);
        assert_eq!(n.checkpoints.open_reader(b, 11, v(3)), OpenChoice::Stale);
        // Nor may the file opened be another version than the inode's.
        let how = n.checkpoints.open_reader(b, 10, v(2));
        assert_eq!(n.checkpoints.reader_opened(b, 101, v(3), &how), None);
        let how = n.checkpoints.open_reader(b, 8, v(2));
        assert_eq!(n.checkpoints.reader_opened(b, 102, v(2), &how), Some(false));
        assert!(n.checkpoints.settled(b), "registered: nobody's reserve");
    }

    #[test]
    fn a_session_without_a_checkpoint_is_one_version_whatever_its_times() {
        let mut absent = stat_of_size(0);
        absent.st_ino = 0;
        let mut again = absent;
        again.st_mtime = 99;
        assert_eq!(Version::of(&Stamp::of(&absent)), Version::ABSENT);
        assert_eq!(Version::of(&Stamp::of(&again)), Version::ABSENT);
        assert_ne!(v(0), Version::ABSENT, "an empty checkpoint is a file");
    }

    #[test]
    fn a_checkpoint_inode_forgotten_while_open_goes_at_its_release() {
        let mut n = Nodes::default();
        let ino = n.looked_up(NodeKey::Checkpoint("s.session".into()), &stat_of_size(1), 7);
        n.checkpoints.opened(ino, 5);
        n.forget(ino, 1);
        assert_eq!(n.table.key(ino), None);
        assert_eq!(
            n.checkpoints.handles(ino),
            vec![5],
            "the handle still stands for it"
        );
        n.closed(5);
        assert!(n.checkpoints.handles(ino).is_empty());
        assert!(
            !n.checkpoints.by_ino.contains_key(&ino),
            "nothing left behind"
        );
    }
}
