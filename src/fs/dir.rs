//! Requests on directories: lookups, listings and changes of names. The
//! root's share is in `root`; this file holds the dispatch and what is
//! special inside a session directory.
//!
//! Invariants:
//! - inside a session directory, `session` always exists (an empty file
//!   when no checkpoint is committed) and is always a regular file;
//!   `session.next` is the session's lock: it is made only by an exclusive
//!   create (plainbox's, see `lockfile`), never by a rename, link, symlink
//!   or mknod, and `rm` of it breaks a stale lock only (never one a live
//!   writer holds);
//! - the checkpoint is replaced only by a commit: a rename onto `session`
//!   is the core's atomic commit, or plainbox's `session.next` renamed
//!   into place (`lockfile`); a rename of `session` is refused;
//! - every other change of a name inside a session directory is made as
//!   the caller (`creds`), so the disk's own rules apply to it;
//! - a listing is one snapshot, taken at `opendir` (the root) or its first
//!   read (any other directory); each lookup it counts is one the kernel
//!   holds (see `cache`);
//! - the decoded view `session.json` comes first in a session's listing
//!   when it exists, so `rm -r` meets it while `session` still exists.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::path::Path;

use super::attr::{Attr, Kind};
use super::creds::AsCaller;
use super::handles::{Handle, Listing};
use super::inode::{NodeKey, ROOT, never_shown_in_session};
use super::{Caller, DirEntries, DirEntry, FsError, FsResult, SessionFs};
use crate::core::{SESSION_FILE, sys};
use crate::decode::VIEW_NAME;

/// `.` and `..` of the directory `ino`.
fn dot_entries(ino: u64) -> Vec<DirEntry> {
    vec![
        DirEntry {
            ino,
            kind: Kind::Directory,
            name: ".".into(),
        },
        DirEntry {
            ino: ROOT,
            kind: Kind::Directory,
            name: "..".into(),
        },
    ]
}

impl SessionFs {
    /// The whole listing of the directory `ino` (`key`), read now: `.`,
    /// `..`, then its entries.
    pub(super) fn list_dir(&self, ino: u64, key: &NodeKey) -> FsResult<Vec<DirEntry>> {
        let mut entries = dot_entries(ino);
        if *key == NodeKey::Root {
            self.root_entries(&mut entries)?;
        } else {
            self.dir_entries(key, &mut entries)?;
        }
        Ok(entries)
    }

    /// A lookup made by process (thread) `pid` (0: unknown).
    pub fn lookup_by(&self, parent: u64, name: &OsStr, pid: u32) -> FsResult<Attr> {
        self.look_up(parent, name, pid, false)
    }

    /// A lookup, made by the kernel (LOOKUP) or by a listing that hands
    /// the kernel its entries (`listing`).
    pub(super) fn look_up(
        &self,
        parent: u64,
        name: &OsStr,
        pid: u32,
        listing: bool,
    ) -> FsResult<Attr> {
        let pkey = self.key(parent)?;
        if pkey == NodeKey::Root
            && let Some(found) = self.lookup_root_link(name)
        {
            return found;
        }
        self.entering(parent, &pkey);
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        let st = self.stat_key(&key)?;
        // A directory inside a session is watched before the reply hands
        // it over; a session directory once the kernel looks it up by
        // itself (a listing of the root watches nothing, so a cold `ls -l`
        // of it stays cheap) or something in it is asked for.
        let watch_now = match key {
            NodeKey::Child(..) => true,
            NodeKey::Session(_) => !listing,
            _ => false,
        };
        let dir_key = (sys::is_dir(&st) && watch_now).then(|| key.clone());
        let ino = self.looked_up_linked(key, &st, pid);
        if let Some(dir_key) = dir_key {
            self.watch_dir(ino, &dir_key, None);
        }
        Ok(Attr::from_stat(ino, &st))
    }

    pub fn forget(&self, ino: u64, n: u64) {
        let gone = {
            let mut nodes = self.nodes();
            nodes.forget(ino, n);
            nodes.table.key(ino).is_none()
        };
        if gone {
            self.unwatch(ino);
        }
    }

    pub fn readlink(&self, ino: u64) -> FsResult<OsString> {
        let key = self.key(ino)?;
        match &key {
            NodeKey::LastSession => Ok(self
                .last_session_name()?
                .ok_or(FsError::NotFound)?
                .as_os_str()
                .to_os_string()),
            NodeKey::PendingLink(name) => self.pending_link_target(name),
            NodeKey::Checkpoint(_) | NodeKey::Lock(_) | NodeKey::View(_) | NodeKey::Child(..) => {
                let (parent, name) = self.parent_of_key(&key)?;
                sys::readlinkat(parent.as_fd(), &name)
                    .map_err(|e| FsError::io("readlink", self.path_of(&key), e))
            }
            NodeKey::Root | NodeKey::Session(_) => Err(FsError::refused(
                "readlink",
                self.path_of(&key),
                "not a symlink",
                libc::EINVAL,
            )),
        }
    }

    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let key = self.key(ino)?;
        self.entering(ino, &key);
        let listing = if key == NodeKey::Root {
            let entries = self.list_dir(ino, &key)?;
            Listing::taken(ino, key, entries)
        } else {
            // Read at the first READDIR: an open the kernel answers from
            // its cached listing (see `cache`) reads nothing.
            Listing::later(ino, key)
        };
        Ok(self.insert_handle(Handle::Dir(listing)))
    }

    /// The entries of a directory other than the root, after `.` and `..`.
    fn dir_entries(&self, key: &NodeKey, entries: &mut Vec<DirEntry>) -> FsResult<()> {
        let dir = self.open_dir_key(key)?;
        let names = sys::read_dir_names(dir.as_fd())
            .map_err(|e| FsError::io("read directory", self.path_of(key), e))?;
        let in_session = matches!(key, NodeKey::Session(_));
        let mut has_checkpoint = false;
        let mut found = Vec::with_capacity(names.len());
        for name in names {
            // Skipped before their stat; `NodeKey::child` hides them too.
            if in_session && never_shown_in_session(&name) {
                continue;
            }
            let st = match sys::lstatat(dir.as_fd(), &name) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(FsError::io("stat", self.path_of(key).join(&name), e)),
            };
            if in_session && name == SESSION_FILE {
                has_checkpoint = true;
                // Always a file in the mount (see resolve).
                found.push((name, Kind::File));
                continue;
            }
            found.push((name, Attr::from_stat(0, &st).kind));
        }
        self.add_iolog_views(key, &mut found);
        if in_session && !has_checkpoint {
            found.push((SESSION_FILE.into(), Kind::File));
        }
        // The decoded view comes first, so that `rm -r` (which removes in
        // listing order) meets it while `session` still exists.
        if let NodeKey::Session(s) = key
            && !found.iter().any(|(n, _)| n == VIEW_NAME)
            && self.view_listed(s, dir.as_fd())
        {
            found.insert(0, (VIEW_NAME.into(), Kind::File));
        }
        let mut nodes = self.nodes();
        for (name, kind) in found {
            let Some(child) = key.child(&name) else {
                continue;
            };
            let ino = nodes.table.intern(child, false);
            entries.push(DirEntry { ino, kind, name });
        }
        Ok(())
    }

    /// The entries of an open directory from `offset` on; each entry's
    /// offset for the next call is its index + 1. The directory's handle
    /// keeps them, so a listing is one snapshot however many calls it takes.
    pub fn readdir(&self, fh: u64, offset: u64) -> FsResult<DirEntries> {
        let handle = self.handle(fh).ok_or(FsError::BadHandle)?;
        if let Handle::Dir(listing) = handle.as_ref()
            && !listing.is_taken()
        {
            listing.take(self.list_dir(listing.ino, &listing.key)?);
        }
        DirEntries::new(handle, offset)
    }

    pub fn releasedir(&self, fh: u64) {
        self.remove_handle(fh);
    }

    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32, caller: Caller) -> FsResult<Attr> {
        self.own_change(&[(parent, name)], || {
            self.mkdir_unmarked(parent, name, mode, caller)
        })
    }

    fn mkdir_unmarked(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let pkey = self.key(parent)?;
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("mkdir", &key)?;
        match &key {
            NodeKey::Session(_) => self.make_session(&key, name, mode, caller)?,
            NodeKey::Checkpoint(_) | NodeKey::Lock(_) | NodeKey::View(_) | NodeKey::Child(..) => {
                let (dir, last) = self.parent_of_key(&key)?;
                let path = self.path_of(&key);
                let _as = AsCaller::enter(caller).map_err(|e| FsError::io("mkdir", &path, e))?;
                sys::mkdirat(dir.as_fd(), &last, mode & 0o7777)
                    .map_err(|e| FsError::io("mkdir", &path, e))?;
            }
            NodeKey::Root | NodeKey::LastSession | NodeKey::PendingLink(_) => {
                return Err(FsError::NotFound);
            }
        }
        let st = self.stat_key(&key)?;
        let ino = self.nodes().table.intern(key.clone(), true);
        if matches!(key, NodeKey::Child(..)) {
            self.watch_dir(ino, &key, None);
        }
        Ok(Attr::from_stat(ino, &st))
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.rmdir_by(parent, name, Caller::ROOT)
    }

    /// `rmdir`, as `caller` (see `creds`).
    pub fn rmdir_by(&self, parent: u64, name: &OsStr, caller: Caller) -> FsResult<()> {
        let pkey = self.key(parent)?;
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("rmdir", &key)?;
        match &key {
            NodeKey::Session(s) => {
                self.remove_session(&key, s)?;
                self.lock_removed(s);
            }
            NodeKey::Checkpoint(_) | NodeKey::Lock(_) | NodeKey::View(_) | NodeKey::Child(..) => {
                let (dir, last) = self.parent_of_key(&key)?;
                let path = self.path_of(&key);
                let _as = AsCaller::enter(caller).map_err(|e| FsError::io("rmdir", &path, e))?;
                sys::unlinkat(dir.as_fd(), &last, true)
                    .map_err(|e| FsError::io("rmdir", &path, e))?;
            }
            NodeKey::Root | NodeKey::LastSession | NodeKey::PendingLink(_) => {
                return Err(FsError::NotFound);
            }
        }
        self.nodes().table.detach(&key);
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.unlink_by(parent, name, Caller::ROOT)
    }

    /// `unlink`, as `caller` (see `creds`).
    pub fn unlink_by(&self, parent: u64, name: &OsStr, caller: Caller) -> FsResult<()> {
        let pkey = self.key(parent)?;
        if pkey == NodeKey::Root {
            return self.unlink_in_root(name);
        }
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("unlink", &key)?;
        match &key {
            // `rm session.next` breaks the lock, unless a live writer holds it.
            NodeKey::Lock(s) => {
                let storage = self.storage(s)?;
                let dir = self.session_dir(s)?;
                if !storage.break_lock_in(dir.as_fd(), false)? {
                    return Err(FsError::NotFound);
                }
                self.lock_removed(s);
            }
            NodeKey::Checkpoint(_) | NodeKey::View(_) | NodeKey::Child(..) => {
                let (dir, last) = self.parent_of_key(&key)?;
                let unlinked = {
                    let path = self.path_of(&key);
                    let _as =
                        AsCaller::enter(caller).map_err(|e| FsError::io("unlink", &path, e))?;
                    sys::unlinkat(dir.as_fd(), &last, false)
                };
                match unlinked {
                    Ok(()) => {}
                    // A session without a checkpoint shows an empty
                    // `session`; removing it (as `rm -r` does) is already
                    // done. Likewise the decoded view: `rm -r` of a session
                    // must work.
                    Err(e)
                        if e.raw_os_error() == Some(libc::ENOENT)
                            && (matches!(key, NodeKey::Checkpoint(_) | NodeKey::View(_))
                                || self.iolog_view_stat(&key).is_ok_and(|v| v.is_some())) => {}
                    Err(e) => return Err(FsError::io("unlink", self.path_of(&key), e)),
                }
            }
            NodeKey::Root
            | NodeKey::LastSession
            | NodeKey::PendingLink(_)
            | NodeKey::Session(_) => {
                return Err(FsError::NotFound);
            }
        }
        self.nodes().table.detach(&key);
        Ok(())
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.own_change(&[(parent, name)], || {
            self.symlink_unmarked(parent, name, target, caller)
        })
    }

    fn symlink_unmarked(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        caller: Caller,
    ) -> FsResult<Attr> {
        let pkey = self.key(parent)?;
        if pkey == NodeKey::Root {
            return self.symlink_in_root(name, target);
        }
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable("symlink", &key)?;
        match &key {
            NodeKey::Checkpoint(_) | NodeKey::Lock(_) => {
                return Err(FsError::refused(
                    "symlink",
                    self.path_of(&key),
                    "session and session.next are always regular files",
                    libc::EPERM,
                ));
            }
            NodeKey::View(_) | NodeKey::Child(..) => {}
            NodeKey::Root
            | NodeKey::LastSession
            | NodeKey::PendingLink(_)
            | NodeKey::Session(_) => {
                return Err(FsError::NotFound);
            }
        }
        let (dir, last) = self.parent_of_key(&key)?;
        {
            let path = self.path_of(&key);
            let _as = AsCaller::enter(caller).map_err(|e| FsError::io("symlink", &path, e))?;
            sys::symlinkat(target.as_os_str(), dir.as_fd(), &last)
                .map_err(|e| FsError::io("symlink", &path, e))?;
        }
        let st = self.stat_key(&key)?;
        let ino = self.nodes().table.intern(key, true);
        Ok(Attr::from_stat(ino, &st))
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.rename_by(parent, name, newparent, newname, flags, Caller::ROOT)
    }

    /// `rename`, as `caller` (see `creds`).
    pub fn rename_by(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        caller: Caller,
    ) -> FsResult<()> {
        self.own_change(&[(parent, name), (newparent, newname)], || {
            self.rename_unmarked(parent, name, newparent, newname, flags, caller)
        })
    }

    fn rename_unmarked(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        caller: Caller,
    ) -> FsResult<()> {
        let (pkey, nkey) = (self.key(parent)?, self.key(newparent)?);
        let from = pkey.child(name).ok_or(FsError::NotFound)?;
        let to = nkey.child(newname).ok_or(FsError::NotFound)?;
        self.check_writable("rename", &from)?;
        let refused = |reason: &'static str, errno: i32| {
            FsError::refused("rename", self.path_of(&from), reason, errno)
        };
        if pkey == NodeKey::Root || nkey == NodeKey::Root {
            // `ln -sfn X.session last-session` renames its temporary link.
            return self.rename_in_root(
                pkey == NodeKey::Root,
                name,
                nkey == NodeKey::Root,
                newname,
                refused,
            );
        }
        let (Some((from_session, frel)), Some((to_session, trel))) =
            (from.in_session(), to.in_session())
        else {
            return Err(refused("a session directory cannot be moved", libc::EPERM));
        };
        if from_session != to_session {
            return Err(refused("files cannot move between sessions", libc::EXDEV));
        }
        // Plainbox's commit: its `session.next` renamed over `session`.
        if let (NodeKey::Lock(s), NodeKey::Checkpoint(_)) = (&from, &to) {
            if flags != 0 {
                return Err(refused(
                    "only a plain rename can commit a checkpoint",
                    libc::EINVAL,
                ));
            }
            return self.commit_lock(s, caller);
        }
        if matches!(from, NodeKey::Lock(_)) || matches!(to, NodeKey::Lock(_)) {
            return Err(refused(
                "session.next is the lock of a checkpoint in progress",
                libc::EPERM,
            ));
        }
        if self.is_virtual_view(&from) {
            return Err(refused(
                "session.json is a read-only view of the decoded checkpoint (copy it instead)",
                libc::EPERM,
            ));
        }
        if matches!(from, NodeKey::Checkpoint(_)) {
            return Err(refused(
                "the checkpoint can only be replaced by a commit (copy it instead)",
                libc::EPERM,
            ));
        }
        if matches!(to, NodeKey::Checkpoint(_)) {
            if flags != 0 {
                return Err(refused(
                    "only a plain rename can commit a checkpoint",
                    libc::EINVAL,
                ));
            }
            if frel.parent().is_some_and(|p| !p.as_os_str().is_empty()) {
                return Err(refused(
                    "only a file directly in the session directory can become the checkpoint",
                    libc::EPERM,
                ));
            }
            // The editor/mv pattern: an atomic commit through the core.
            let storage = self.storage(from_session)?;
            storage.commit_file(name)?;
            let mut nodes = self.nodes();
            nodes.table.detach(&to);
            nodes.table.detach(&from);
            return Ok(());
        }
        let (fdir, fname) = self.parent_of(from_session, frel)?;
        let (tdir, tname) = self.parent_of(to_session, trel)?;
        let _as =
            AsCaller::enter(caller).map_err(|e| FsError::io("rename", self.path_of(&from), e))?;
        let result = if flags == 0 {
            sys::renameat(fdir.as_fd(), &fname, tdir.as_fd(), &tname)
        } else if flags == libc::RENAME_NOREPLACE {
            sys::renameat_noreplace(fdir.as_fd(), &fname, tdir.as_fd(), &tname)
        } else {
            return Err(refused("only RENAME_NOREPLACE is supported", libc::EINVAL));
        };
        result.map_err(|e| FsError::io("rename", self.path_of(&from), e))?;
        self.nodes().table.rename(&from, &to);
        Ok(())
    }
}
