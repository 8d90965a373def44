//! The root namespace: session directories, `last-session`, and the
//! pending links `ln -sfn X.session last-session` makes on the way.
//!
//! Invariants:
//! - the root holds only session directories (valid session names) and
//!   `last-session`; nothing else is ever created in the repository's
//!   directory through the mount;
//! - `last-session` changes only through the core (`set_last_session`), to
//!   a session that exists;
//! - a pending link lives in the daemon only ([`Nodes::pending_links`]),
//!   never on disk: renamed onto `last-session` it becomes the core's link,
//!   removed it is forgotten;
//! - a session directory is created whole (with its well-known directories,
//!   owned by the caller, and the repository fsynced) or not at all.
//!
//! [`Nodes::pending_links`]: super::inode::Nodes::pending_links

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::path::Path;

use super::attr::{Attr, Kind};
use super::inode::{LAST_SESSION, NodeKey};
use super::{Caller, DirEntry, FsError, FsResult, SessionFs};
use crate::core::{self, LAST_SESSION_LINK, NameProblem, SessionName, sys};

impl SessionFs {
    /// The target `last-session` shows in the mount: the session's name.
    pub(super) fn last_session_name(&self) -> FsResult<Option<SessionName>> {
        Ok(self
            .repo
            .last_session_in(self.repo_fd())?
            .map(|s| s.name().clone()))
    }

    /// A lookup in the root of something other than a session directory:
    /// `last-session` or a pending link.
    pub(super) fn lookup_root_link(&self, name: &OsStr) -> Option<FsResult<Attr>> {
        if name == LAST_SESSION_LINK {
            return Some(self.last_session_attr());
        }
        if self.nodes().pending_links.contains_key(name) {
            return Some(self.pending_link_attr(name));
        }
        None
    }

    /// The target of a pending link.
    pub(super) fn pending_link_target(&self, name: &OsStr) -> FsResult<OsString> {
        self.nodes()
            .pending_links
            .get(name)
            .map(|n| n.as_os_str().to_os_string())
            .ok_or(FsError::NotFound)
    }

    /// The root's entries after `.` and `..`: `last-session` when valid,
    /// then the sessions. Sessions the kernel looked up that are no longer
    /// there are kept for [`SessionFs::take_vanished`].
    pub(super) fn root_entries(&self, entries: &mut Vec<DirEntry>) -> FsResult<()> {
        if self.last_session_name()?.is_some() {
            entries.push(DirEntry {
                ino: LAST_SESSION,
                kind: Kind::Symlink,
                name: LAST_SESSION_LINK.into(),
            });
        }
        let sessions = if self.network.is_some() {
            // A directory kept open is re-read from the client's cache; an
            // open revalidates it with the server (close-to-open).
            let fresh = sys::openat(
                self.repo_fd(),
                std::ffi::OsStr::new("."),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
            .map_err(|e| FsError::io("open", self.repo.location(), e))?;
            self.repo.list_in(fresh.as_fd())?
        } else {
            self.repo.list_in(self.repo_fd())?
        };
        let mut nodes = self.nodes();
        for s in sessions {
            let name = s.storage.name().as_os_str().to_os_string();
            let ino = nodes.table.intern(NodeKey::Session(name.clone()), false);
            entries.push(DirEntry {
                ino,
                kind: Kind::Directory,
                name,
            });
        }
        // Session directories the kernel may still have cached although
        // they are gone: the listing and `stat` must agree.
        let listed: HashSet<&OsStr> = entries.iter().map(|e| e.name.as_os_str()).collect();
        let gone: Vec<OsString> = nodes
            .table
            .looked_up_sessions()
            .filter(|name| !listed.contains(name))
            .map(OsStr::to_os_string)
            .collect();
        nodes.vanished.extend(gone);
        Ok(())
    }

    /// Session directories found gone since the kernel looked them up;
    /// their cached entries should be dropped.
    pub fn take_vanished(&self) -> Vec<OsString> {
        std::mem::take(&mut self.nodes().vanished)
    }

    /// `mkdir NAME.session` in the root: a new session, with its
    /// well-known directories, given to the caller.
    pub(super) fn make_session(
        &self,
        key: &NodeKey,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<()> {
        let sname = SessionName::new(name).map_err(|e| match e {
            core::Error::InvalidName {
                problem: NameProblem::TooLong,
                ..
            } => FsError::refused(
                "mkdir",
                self.path_of(key),
                "a session name is at most 255 bytes",
                libc::ENAMETOOLONG,
            ),
            _ => FsError::refused(
                "mkdir",
                self.path_of(key),
                "only NAME.session directories can be made here (a session)",
                libc::EINVAL,
            ),
        })?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root_daemon = unsafe { libc::geteuid() } == 0;
        let owner = (root_daemon && (caller.uid != 0 || caller.gid != 0))
            .then_some((caller.uid, caller.gid));
        let how = core::NewSession { mode, owner };
        let storage = self.repo.create_session_in(self.repo_fd(), sname, how)?;
        log::info!("created session {}", storage.location().display());
        Ok(())
    }

    /// `rmdir` of a session directory (empty, as `rm -r` leaves it).
    pub(super) fn remove_session(&self, key: &NodeKey, s: &OsStr) -> FsResult<()> {
        if SessionName::new(s).is_err() {
            return Err(FsError::NotFound);
        }
        sys::unlinkat(self.repo_fd(), s, true)
            .map_err(|e| FsError::io("remove session", self.path_of(key), e))?;
        log::info!("removed session {}", self.path_of(key).display());
        Ok(())
    }

    /// `unlink` in the root: a pending link or `last-session`; sessions are
    /// directories.
    pub(super) fn unlink_in_root(&self, name: &OsStr) -> FsResult<()> {
        self.check_writable("unlink", &NodeKey::LastSession)?;
        if self.nodes().pending_links.remove(name).is_some() {
            return Ok(());
        }
        if name == LAST_SESSION_LINK {
            return sys::unlinkat(self.repo_fd(), name, false)
                .map_err(|e| FsError::io("unlink", self.path_of(&NodeKey::LastSession), e));
        }
        match self.stat_key(&NodeKey::Session(name.to_os_string())) {
            Ok(_) => Err(FsError::refused(
                "unlink",
                self.repo.location().join(name),
                "a session is a directory (use rm -r)",
                libc::EISDIR,
            )),
            Err(e) => Err(e),
        }
    }

    /// `symlink` in the root: `last-session` when there is none, or a
    /// pending link (to become `last-session` by a rename).
    pub(super) fn symlink_in_root(&self, name: &OsStr, target: &Path) -> FsResult<Attr> {
        self.check_writable("symlink", &NodeKey::LastSession)?;
        if !self.repo.layout().allows_last_session() {
            // A symlink in Checkbox's repository empties Checkbox's listing.
            return Err(FsError::refused(
                "symlink",
                self.repo.location().join(name),
                "a Checkbox repository has no legacy mode (no last-session)",
                libc::EPERM,
            ));
        }
        let session = self
            .session_of_link_target(target.as_os_str())
            .ok_or_else(|| {
                FsError::refused(
                    "symlink",
                    self.repo.location().join(name),
                    "links in the root may only be last-session, pointing at a session",
                    libc::EPERM,
                )
            })?;
        if name == LAST_SESSION_LINK {
            if self.last_session_name()?.is_some() || sys::lstatat(self.repo_fd(), name).is_ok() {
                return Err(FsError::refused(
                    "symlink",
                    self.path_of(&NodeKey::LastSession),
                    "last-session exists",
                    libc::EEXIST,
                ));
            }
            self.repo.set_last_session(&session)?;
            return self.last_session_attr();
        }
        if SessionName::new(name).is_ok() {
            return Err(FsError::refused(
                "symlink",
                self.repo.location().join(name),
                "a session name cannot be a link",
                libc::EPERM,
            ));
        }
        self.nodes()
            .pending_links
            .insert(name.to_os_string(), session);
        self.pending_link_attr(name)
    }

    /// The session a link target made in the mount's root names: a session
    /// name, `./NAME`, or an absolute path into this repository.
    fn session_of_link_target(&self, target: &OsStr) -> Option<SessionName> {
        let t = Path::new(target);
        let name = if t.is_absolute() {
            return self.repo.session_name_of_target(target).filter(|n| {
                self.stat_key(&NodeKey::Session(n.as_os_str().to_os_string()))
                    .is_ok()
            });
        } else {
            let mut comps = t
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir));
            let first = comps.next()?;
            if comps.next().is_some() {
                return None;
            }
            SessionName::new(first.as_os_str()).ok()?
        };
        self.stat_key(&NodeKey::Session(name.as_os_str().to_os_string()))
            .ok()
            .map(|_| name)
    }

    /// A rename from or into the root: only a pending link onto
    /// `last-session` (`ln -sfn`); sessions never move.
    pub(super) fn rename_in_root(
        &self,
        from_root: bool,
        name: &OsStr,
        to_root: bool,
        newname: &OsStr,
        refused: impl Fn(&'static str, i32) -> FsError,
    ) -> FsResult<()> {
        if from_root && to_root && newname == LAST_SESSION_LINK {
            let Some(session) = self.nodes().pending_links.remove(name) else {
                return Err(refused(
                    "only a link to a session can become last-session",
                    libc::EPERM,
                ));
            };
            self.repo.set_last_session(&session)?;
            return Ok(());
        }
        Err(refused(
            "sessions and last-session cannot be renamed",
            libc::EPERM,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::inode::ROOT;
    use super::super::test_fixture::fs_with_sessions;
    use super::*;

    fn listing(fs: &SessionFs, ino: u64, offset: u64) -> Vec<(u64, OsString)> {
        let fh = fs.opendir(ino).unwrap();
        let mut entries = fs.readdir(fh, offset).unwrap();
        let mut out = Vec::new();
        while let Some((next, e)) = entries.next_entry() {
            out.push((next, e.name.clone()));
        }
        fs.releasedir(fh);
        out
    }

    #[test]
    fn a_listing_resumes_at_the_offset_it_gave() {
        let (_dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        let all = listing(&fs, ROOT, 0);
        let names: Vec<&OsStr> = all.iter().map(|(_, n)| n.as_os_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(&names[..2], [OsStr::new("."), OsStr::new("..")]);
        let (offset, _) = all[1];
        assert_eq!(listing(&fs, ROOT, offset), all[2..].to_vec());
        assert!(listing(&fs, ROOT, 4).is_empty());
    }

    #[test]
    fn a_listing_reports_looked_up_sessions_that_are_gone() {
        let (dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        let fh = fs.opendir(ROOT).unwrap();
        let mut looked_up = Vec::new();
        fs.readdirplus(ROOT, fh, 0, |_, e, a| {
            assert_eq!(a.ino, e.ino);
            looked_up.push(e.name.clone());
            false
        })
        .unwrap();
        fs.releasedir(fh);
        assert!(fs.take_vanished().is_empty());
        std::fs::remove_dir(dir.path().join("a.session")).unwrap();
        listing(&fs, ROOT, 0);
        assert_eq!(fs.take_vanished(), vec![OsString::from("a.session")]);
        assert!(fs.take_vanished().is_empty(), "reported once per listing");
        // Once the kernel forgot it (after the invalidation), it is not
        // reported again; nor is a session forgotten before it went.
        assert!(looked_up.iter().any(|n| n == "a.session"));
        let a = fs
            .nodes()
            .table
            .find(&NodeKey::Session("a.session".into()))
            .unwrap();
        fs.forget(a, 1);
        let b = fs.lookup_by(ROOT, OsStr::new("b.session"), 0).unwrap();
        fs.forget(b.ino, 2);
        std::fs::remove_dir(dir.path().join("b.session")).unwrap();
        listing(&fs, ROOT, 0);
        assert!(fs.take_vanished().is_empty());
    }

    #[test]
    fn a_pending_link_becomes_last_session_by_a_rename() {
        let (dir, fs) = fs_with_sessions(&["a.session"]);
        let link = fs
            .symlink_in_root(OsStr::new("tmp-link"), Path::new("a.session"))
            .unwrap();
        assert_eq!(link.kind, Kind::Symlink);
        assert!(
            std::fs::symlink_metadata(dir.path().join("tmp-link")).is_err(),
            "a pending link never reaches the disk"
        );
        assert_eq!(fs.readlink(link.ino).unwrap(), "a.session");
        let looked_up = fs.lookup_by(ROOT, OsStr::new("tmp-link"), 0).unwrap();
        assert_eq!(looked_up.ino, link.ino);
        assert_eq!(looked_up.size, "a.session".len() as u64);
        assert!(matches!(fs.key(link.ino).unwrap(), NodeKey::PendingLink(_)));
        fs.rename(
            ROOT,
            OsStr::new("tmp-link"),
            ROOT,
            OsStr::new("last-session"),
            0,
        )
        .unwrap();
        assert!(std::fs::symlink_metadata(dir.path().join("last-session")).is_ok());
        assert_eq!(fs.readlink(LAST_SESSION).unwrap(), "a.session");
        assert!(matches!(
            fs.lookup_by(ROOT, OsStr::new("tmp-link"), 0),
            Err(FsError::NotFound)
        ));
    }
}
