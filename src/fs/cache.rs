//! What the kernel may cache, and for how long: the TTL of each reply's
//! attributes and entry, whether a directory's listing may be cached, and
//! the lookups a listing with attributes (READDIRPLUS) hands the kernel.
//!
//! Invariants:
//! - long caching only where the daemon is told of every change (see
//!   `watch`): a name inside a watched directory, and a directory whose own
//!   listing is watched too; everything else keeps the short times that
//!   need no watch (on a network filesystem, past the watch limit, in a
//!   mount that does not watch);
//! - `session` is cached where its session directory is watched, with the
//!   attributes of the version its inode stands for (one inode per
//!   version, see `inode::CheckpointInodes`), but never while a writer has
//!   the inode open: the watch drops the entry at each change of `session`
//!   but a commit of this mount's own writer whose inode the entry names
//!   (see `own_commits`); an open that reaches an older version's inode
//!   before that is refused with `ESTALE` and retried by the kernel with a
//!   fresh lookup, so a checkpoint committed outside the mount is still
//!   read at the next open, and a `stat` that reaches one shows the newer
//!   file (see `attr`);
//! - `session.next`, the decoded views and `last-session` are never
//!   cached, nor any file directly in a session directory but `session`
//!   (one may be renamed onto `session`, and the kernel moves its entry,
//!   time and all): a re-pointed `last-session` is seen at the next look;
//! - the root's attributes are cached only briefly, and its listing never:
//!   a listing read from the daemon hands the kernel every session with
//!   its attributes (READDIRPLUS), while one the kernel kept outlives the
//!   session entries it dropped under memory pressure, and `ls -l` then
//!   looks each session up on its own (10,000 LOOKUPs, 3.6× direct). Any
//!   other directory's listing is cached only where the watch covers it
//!   (with a watch the kernel opens directories without asking the daemon,
//!   see `listing`; a listing it could keep of a directory not watched, or
//!   of the root, is dropped right after it is read);
//! - every entry a READDIRPLUS reply carries (but `.` and `..`) is one
//!   lookup the kernel holds, and none that it does not carry is counted:
//!   an entry the reply had no room for is forgotten again at once, and a
//!   failed listing forgets all it counted.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::attr::{Attr, Kind};
use super::inode::{NodeKey, ROOT};
use super::{DirEntry, FsError, FsResult, SessionFs};

/// Never cached.
const TTL: Duration = Duration::ZERO;

/// What a watched directory holds: the watch drops it from the kernel's
/// cache at each change, so the time only bounds how long an unused entry
/// stays.
const WATCHED_TTL: Duration = Duration::from_secs(3600);

/// Session directories not watched may be cached for a second: their names
/// are path lookups the kernel otherwise repeats for every permission
/// check (each open of a `session`, each `stat` of `ls -l`), and a listing
/// of the root hands them to the kernel with their attributes
/// (READDIRPLUS), so `ls -l` needs no lookup per session. The root's
/// contents (`readdir`) are always read fresh, so a session created or
/// removed outside still appears or vanishes at the next `ls`; the entry of
/// one removed outside is dropped from the kernel's cache as soon as the
/// daemon's watch of the repository sees it go (see `watch`), or else by
/// the next listing.
const SESSION_DIR_TTL: Duration = Duration::from_secs(1);

/// The root's attributes may be cached briefly: with `default_permissions`
/// every path walk checks the root's mode, which would otherwise cost a
/// round trip per path (three per entry of `ls -l`). Changes made outside
/// the mount drop them at once (see `watch`). Short, so that `stat` of a
/// mountpoint whose daemon was killed fails (ENOTCONN) almost at once.
const ROOT_TTL: Duration = Duration::from_millis(100);

/// The directory a key inside a session directory is in.
fn parent_key(key: &NodeKey) -> Option<NodeKey> {
    let (session, rel) = key.in_session()?;
    match rel.parent() {
        Some(p) if p != Path::new("") => {
            Some(NodeKey::inside(session.to_os_string(), p.to_path_buf()))
        }
        _ => Some(NodeKey::Session(session.to_os_string())),
    }
}

impl SessionFs {
    /// How long the kernel may keep `attr` (and the entry it came with).
    pub fn ttl(&self, attr: &Attr) -> Duration {
        if attr.ino == ROOT {
            return ROOT_TTL;
        }
        let (key, parent) = {
            let nodes = self.nodes();
            let Some(key) = nodes.table.key(attr.ino) else {
                return TTL;
            };
            let parent = parent_key(&key).and_then(|p| nodes.table.find(&p));
            (key, parent)
        };
        let is_dir = attr.kind == Kind::Directory;
        match &key {
            NodeKey::Session(_) if self.is_watched(ROOT) && self.is_watched(attr.ino) => {
                WATCHED_TTL
            }
            NodeKey::Session(_) => SESSION_DIR_TTL,
            NodeKey::Child(..) if super::iolog_view::record_of(&key).is_some() => TTL,
            // A file directly in a session directory may be renamed onto
            // `session` through the mount (the editor's commit), and the
            // kernel moves its entry, time and all, to that name, which
            // must never be cached: such files are not cached either.
            NodeKey::Child(_, rel) if !is_dir && rel.components().count() == 1 => TTL,
            NodeKey::Child(..)
                if parent.is_some_and(|p| self.is_watched(p))
                    && (!is_dir || self.is_watched(attr.ino)) =>
            {
                WATCHED_TTL
            }
            NodeKey::Checkpoint(_)
                if parent.is_some_and(|p| self.is_watched(p))
                    && self.nodes().checkpoints.settled(attr.ino) =>
            {
                WATCHED_TTL
            }
            NodeKey::Child(..)
            | NodeKey::Root
            | NodeKey::LastSession
            | NodeKey::PendingLink(_)
            | NodeKey::Checkpoint(_)
            | NodeKey::Lock(_)
            | NodeKey::View(_) => TTL,
        }
    }

    /// Whether the kernel may ever keep the entry of `key` (a name it never
    /// keeps needs no invalidation).
    pub(super) fn entry_is_cached(&self, key: &NodeKey) -> bool {
        match key {
            NodeKey::Session(_) | NodeKey::Checkpoint(_) => true,
            NodeKey::Child(..) => super::iolog_view::record_of(key).is_none(),
            NodeKey::Root
            | NodeKey::LastSession
            | NodeKey::PendingLink(_)
            | NodeKey::Lock(_)
            | NodeKey::View(_) => false,
        }
    }

    /// Whether the kernel may keep the listing of the directory `ino`
    /// between opens: only where the watch tells it of every change, and
    /// never the root's (see the module doc).
    pub fn listing_cacheable(&self, ino: u64) -> bool {
        ino != ROOT
            && matches!(
                self.nodes().table.key(ino),
                Some(NodeKey::Session(_) | NodeKey::Child(..))
            )
            && self.is_watched(ino)
    }

    /// A listing with attributes (READDIRPLUS) of the open directory `fh`
    /// (of inode `parent`; 0: listed without an open) from `offset` on: hands `add` each entry, the
    /// offset after it and its attributes, until `add` returns true (the
    /// reply is full). Counts a lookup of each entry sent, except `.` and
    /// `..`; entries gone since `opendir` are skipped.
    pub fn readdirplus(
        &self,
        parent: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, &DirEntry, &Attr) -> bool,
    ) -> FsResult<()> {
        let mut entries = if fh == 0 {
            self.readdir_unopened(parent, offset)?
        } else {
            self.readdir(fh, offset)?
        };
        let mut sent = Vec::new();
        while let Some((next, e)) = entries.next_entry() {
            let counted = e.is_kept_by_kernel();
            let found = if counted {
                self.look_up(parent, &e.name, 0, true)
            } else {
                self.getattr(e.ino, None)
            };
            let a = match found {
                Ok(a) => a,
                // Gone since the directory was opened: not listed.
                Err(FsError::NotFound) => continue,
                Err(err) => {
                    for ino in sent {
                        self.forget(ino, 1);
                    }
                    return Err(err);
                }
            };
            if add(next, e, &a) {
                // Not sent: the kernel will not hold this lookup.
                if counted {
                    self.forget(a.ino, 1);
                }
                break;
            }
            if counted {
                sent.push(a.ino);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_fixture::fs_with_sessions;
    use super::*;
    use std::ffi::OsStr;

    /// A READDIRPLUS of the whole directory into a reply with room for
    /// `room` entries; the kernel forgets what it was sent afterwards when
    /// `then_forget`.
    fn list_plus(fs: &SessionFs, ino: u64, room: usize, then_forget: bool) -> Vec<u64> {
        let fh = fs.opendir(ino).unwrap();
        let mut sent = Vec::new();
        fs.readdirplus(ino, fh, 0, |_, e, a| {
            if sent.len() == room {
                return true;
            }
            if e.is_kept_by_kernel() {
                sent.push(a.ino);
            }
            false
        })
        .unwrap();
        fs.releasedir(fh);
        if then_forget {
            for &ino in &sent {
                fs.forget(ino, 1);
            }
        }
        sent
    }

    #[test]
    fn listings_of_a_session_leave_no_inodes_behind() {
        let (dir, fs) = fs_with_sessions(&["a.session"]);
        std::fs::write(dir.path().join("a.session/session"), b"x").unwrap();
        let session = fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        let mut sizes = Vec::new();
        for _ in 0..20 {
            list_plus(&fs, session.ino, usize::MAX, true);
            sizes.push(fs.nodes().table.len());
        }
        assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
    }

    #[test]
    fn an_entry_the_reply_had_no_room_for_is_not_counted() {
        let (_dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        // Room for `.`, `..` and one session: the other is not sent.
        let sent = list_plus(&fs, ROOT, 1, false);
        assert_eq!(sent.len(), 1);
        // The one sent is held by the kernel; forgetting it drops it.
        let key = fs.key(sent[0]).unwrap();
        fs.forget(sent[0], 1);
        assert!(
            fs.key(sent[0]).is_err(),
            "{key:?} was counted more than once"
        );
        // The one not sent was numbered by the listing but holds no lookup:
        // every session inode is now gone but the listing's own numbers.
        let held: Vec<_> = fs
            .nodes()
            .table
            .looked_up_sessions()
            .map(OsStr::to_os_string)
            .collect();
        assert!(held.is_empty(), "{held:?}");
    }

    #[test]
    fn the_root_and_session_directories_are_cached_briefly_files_never() {
        let (dir, fs) = fs_with_sessions(&["a.session"]);
        std::fs::write(dir.path().join("a.session/session"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("a.session/sub")).unwrap();
        let root = fs.getattr(ROOT, None).unwrap();
        let session = fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        let file = fs.lookup_by(session.ino, OsStr::new("session"), 0).unwrap();
        let sub = fs.lookup_by(session.ino, OsStr::new("sub"), 0).unwrap();
        assert_eq!(fs.ttl(&root), ROOT_TTL);
        assert_eq!(fs.ttl(&session), SESSION_DIR_TTL);
        assert_eq!(fs.ttl(&file), Duration::ZERO);
        assert_eq!(
            fs.ttl(&sub),
            Duration::ZERO,
            "inside a session: never cached"
        );
    }

    #[test]
    fn what_a_watch_covers_is_cached_long_and_the_rest_as_without_one() {
        let (dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        for s in ["a.session", "b.session"] {
            std::fs::create_dir(dir.path().join(s).join("io-logs")).unwrap();
            std::fs::write(dir.path().join(s).join("io-logs/job.log"), b"x").unwrap();
            std::fs::write(dir.path().join(s).join("session"), b"{}").unwrap();
        }
        // Room for the root, a.session and its io-logs only.
        fs.start_watching(Some(3)).unwrap();
        let walk = |s: &str| {
            let session = fs.lookup_by(ROOT, OsStr::new(s), 0).unwrap();
            let logs = fs.lookup_by(session.ino, OsStr::new("io-logs"), 0).unwrap();
            let job = fs.lookup_by(logs.ino, OsStr::new("job.log"), 0).unwrap();
            let cp = fs.lookup_by(session.ino, OsStr::new("session"), 0).unwrap();
            (session, logs, job, cp)
        };
        let (session, logs, job, cp) = walk("a.session");
        assert_eq!(fs.ttl(&session), WATCHED_TTL);
        assert_eq!(fs.ttl(&logs), WATCHED_TTL);
        assert_eq!(fs.ttl(&job), WATCHED_TTL);
        assert_eq!(
            fs.ttl(&cp),
            WATCHED_TTL,
            "the checkpoint: the version its inode stands for"
        );
        std::fs::write(dir.path().join("a.session/draft"), b"d").unwrap();
        let draft = fs.lookup_by(session.ino, OsStr::new("draft"), 0).unwrap();
        assert_eq!(
            fs.ttl(&draft),
            Duration::ZERO,
            "a file that may become the checkpoint: never"
        );
        assert!(fs.listing_cacheable(session.ino) && fs.listing_cacheable(logs.ino));
        assert!(!fs.listing_cacheable(ROOT), "the root's listing: never");

        let (session, logs, job, cp) = walk("b.session");
        assert_eq!(fs.ttl(&session), SESSION_DIR_TTL);
        assert_eq!(fs.ttl(&logs), Duration::ZERO);
        assert_eq!(fs.ttl(&job), Duration::ZERO);
        assert_eq!(fs.ttl(&cp), Duration::ZERO);
        assert!(!fs.listing_cacheable(session.ino) && !fs.listing_cacheable(logs.ino));
    }
}

/// What the kernel should forget of what it caches, sent by whoever learns
/// of a change it was not told of (the repository watch, a listing that
/// finds a session gone) to the one thread that tells the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// The cached attributes of an inode.
    Attributes(u64),
    /// The cached attributes and contents of an inode: a file's pages, a
    /// directory's listing.
    Contents(u64),
    /// The cached entry of a name in a directory.
    Entry { parent: u64, name: OsString },
}
