//! What the kernel may cache, and for how long: the TTL of each reply's
//! attributes and entry, and the lookups a listing with attributes
//! (READDIRPLUS) hands the kernel.
//!
//! Invariants:
//! - files and links are never cached: a checkpoint committed outside the
//!   mount, or a re-pointed `last-session`, is seen at the next look;
//! - only the root and session directories are cached, briefly; what is
//!   inside a session directory never is;
//! - every entry a READDIRPLUS reply carries (but `.` and `..`) is one
//!   lookup the kernel holds, and none that it does not carry is counted:
//!   an entry the reply had no room for is forgotten again at once, and a
//!   failed listing forgets all it counted.

use std::time::Duration;

use super::attr::{Attr, Kind};
use super::inode::{NodeKey, ROOT};
use super::{DirEntry, FsError, FsResult, SessionFs};

/// Files and links: never cached.
const TTL: Duration = Duration::ZERO;

/// Session directories may be cached for a second: their names are path
/// lookups the kernel otherwise repeats for every permission check (each
/// open of a `session`, each `stat` of `ls -l`), and a listing of the root
/// hands them to the kernel with their attributes (READDIRPLUS), so `ls -l`
/// needs no lookup per session. The root's contents (`readdir`) are always
/// read fresh, so a session created or removed outside still appears or
/// vanishes at the next `ls`; the entry of one removed outside is dropped
/// from the kernel's cache as soon as the daemon's watch of the repository
/// sees it go (see `mount::watch`), or else by the next listing.
const SESSION_DIR_TTL: Duration = Duration::from_secs(1);

/// The root's attributes may be cached briefly: with `default_permissions`
/// every path walk checks the root's mode, which would otherwise cost a
/// round trip per path (three per entry of `ls -l`). Changes made outside
/// the mount drop them at once (see `mount::watch`). Short, so that `stat`
/// of a mountpoint whose daemon was killed fails (ENOTCONN) almost at once.
const ROOT_TTL: Duration = Duration::from_millis(100);

impl SessionFs {
    /// How long the kernel may keep `attr` (and the entry it came with).
    pub fn ttl(&self, attr: &Attr) -> Duration {
        match attr.kind {
            Kind::Directory if attr.ino == ROOT => ROOT_TTL,
            Kind::Directory if self.is_session_dir(attr.ino) => SESSION_DIR_TTL,
            Kind::Directory
            | Kind::File
            | Kind::Symlink
            | Kind::NamedPipe
            | Kind::CharDevice
            | Kind::BlockDevice
            | Kind::Socket => TTL,
        }
    }

    /// True when `ino` stands for a session directory (a child of the
    /// root).
    fn is_session_dir(&self, ino: u64) -> bool {
        matches!(self.nodes().table.key(ino), Some(NodeKey::Session(_)))
    }

    /// A listing with attributes (READDIRPLUS) of the open directory `fh`
    /// (of inode `parent`) from `offset` on: hands `add` each entry, the
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
        let mut entries = self.readdir(fh, offset)?;
        let mut sent = Vec::new();
        while let Some((next, e)) = entries.next_entry() {
            let counted = e.is_kept_by_kernel();
            let found = if counted {
                self.lookup_by(parent, &e.name, 0)
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
}

/// What the kernel should forget of what it caches, sent by whoever learns
/// of a change it was not told of (the repository watch, a listing that
/// finds a session gone) to the one thread that tells the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// The root's cached attributes.
    RootAttributes,
    /// The cached entry of a name in the root.
    Entry(std::ffi::OsString),
}
