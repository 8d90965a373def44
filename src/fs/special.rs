//! Hard links and special files (fifos, sockets, device nodes) inside a
//! session directory: passed through to the disk, made as the caller (see
//! `creds`), so the backing filesystem decides exactly as it would for the
//! caller directly: a device node needs the caller's own CAP_MKNOD (the
//! root daemon acting as an ordinary caller has none), a hard link to
//! someone else's file obeys `protected_hardlinks`.
//!
//! Invariants: `session` and `session.next` are never made or linked this
//! way, nor given another name (the checkpoint always exists and changes
//! only by a commit, which a second name would bypass; the lock is taken
//! only by an exclusive create); nothing links across sessions; nothing is
//! made in the root, where only sessions live.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use super::attr::Attr;
use super::creds::AsCaller;
use super::inode::NodeKey;
use super::{Caller, FsError, FsResult, SessionFs};
use crate::core::sys;

impl SessionFs {
    /// The key of a new name `name` in `parent`, where a node may be made
    /// by `op`.
    fn new_name(&self, op: &'static str, parent: u64, name: &OsStr) -> FsResult<NodeKey> {
        let pkey = self.key(parent)?;
        let key = pkey.child(name).ok_or(FsError::NotFound)?;
        self.check_writable(op, &key)?;
        match &key {
            NodeKey::Root
            | NodeKey::LastSession
            | NodeKey::PendingLink(_)
            | NodeKey::Session(_) => Err(FsError::refused(
                op,
                self.path_of(&key),
                "only session directories live here (mkdir NAME.session)",
                libc::EPERM,
            )),
            NodeKey::Checkpoint(_) => Err(FsError::refused(
                op,
                self.path_of(&key),
                "session exists",
                libc::EEXIST,
            )),
            NodeKey::Lock(_) => Err(FsError::refused(
                op,
                self.path_of(&key),
                "session.next is the session's lock, taken only by an exclusive create",
                libc::EPERM,
            )),
            NodeKey::View(_) | NodeKey::Child(..) => Ok(key),
        }
    }

    /// The attributes of a node just made at `key`, counting the kernel's
    /// lookup of it.
    fn made(&self, key: NodeKey) -> FsResult<Attr> {
        let st = self.stat_key(&key)?;
        let ino = self.nodes().table.intern(key, true);
        Ok(Attr::from_stat(ino, &st))
    }

    /// `mknod`: a fifo, socket, device node or empty file, as the caller.
    pub fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.own_change(&[(parent, name)], || {
            self.mknod_unmarked(parent, name, mode, rdev, caller)
        })
    }

    fn mknod_unmarked(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> FsResult<Attr> {
        let key = self.new_name("mknod", parent, name)?;
        let (dir, last) = self.parent_of_key(&key)?;
        let path = self.path_of(&key);
        {
            let _as = AsCaller::enter(caller).map_err(|e| FsError::io("mknod", &path, e))?;
            sys::mknodat(dir.as_fd(), &last, mode, rdev)
        }
        .map_err(|e| FsError::io("mknod", &path, e))?;
        self.made(key)
    }

    /// `link`: another name for the file of inode `ino`, as the caller.
    pub fn link(
        &self,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.own_change(&[(newparent, newname)], || {
            self.link_unmarked(ino, newparent, newname, caller)
        })
    }

    fn link_unmarked(
        &self,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        caller: Caller,
    ) -> FsResult<Attr> {
        let from = self.key(ino)?;
        let to = self.new_name("link", newparent, newname)?;
        let refused = |reason: &'static str, errno: i32| {
            FsError::refused("link", self.path_of(&from), reason, errno)
        };
        let Some((from_session, _)) = from.in_session() else {
            return Err(refused(
                "only files inside a session can be linked",
                libc::EPERM,
            ));
        };
        match &from {
            NodeKey::Checkpoint(_) => {
                return Err(refused(
                    "the checkpoint gets no other name: writes through it would change \
                     the committed checkpoint in place (copy it instead)",
                    libc::EPERM,
                ));
            }
            NodeKey::Lock(_) => {
                return Err(refused(
                    "session.next is the lock of a checkpoint in progress",
                    libc::EPERM,
                ));
            }
            NodeKey::View(_) if self.is_virtual_view(&from) => {
                return Err(refused(
                    "session.json is a read-only view of the decoded checkpoint (copy it instead)",
                    libc::EPERM,
                ));
            }
            _ => {}
        }
        if to.in_session().map(|(s, _)| s) != Some(from_session) {
            return Err(refused(
                "files cannot be linked between sessions",
                libc::EXDEV,
            ));
        }
        let (fdir, fname) = self.parent_of_key(&from)?;
        let (tdir, tname) = self.parent_of_key(&to)?;
        let path = self.path_of(&to);
        {
            let _as = AsCaller::enter(caller).map_err(|e| FsError::io("link", &path, e))?;
            sys::linkat(fdir.as_fd(), &fname, tdir.as_fd(), &tname)
        }
        .map_err(|e| FsError::io("link", &path, e))?;
        // The new name is the same inode, as on disk.
        let st = self.stat_key(&to)?;
        let mut nodes = self.nodes();
        if nodes.table.alias(to.clone(), ino, true) {
            nodes.table.set_identity(ino, (st.st_dev, st.st_ino));
            return Ok(Attr::from_stat(ino, &st));
        }
        drop(nodes);
        self.made(to)
    }

    /// The inode a lookup of `key` (found as `st`) hands the kernel: for a
    /// file with hard links, the inode one of its other names already
    /// has, so that every name shows one inode number, as on disk.
    pub(super) fn looked_up_linked(&self, key: NodeKey, st: &libc::stat, pid: u32) -> u64 {
        let linked = matches!(key, NodeKey::Child(..) | NodeKey::View(_))
            && !sys::is_dir(st)
            && st.st_nlink > 1;
        if !linked {
            let checkpoint_of = match &key {
                NodeKey::Checkpoint(s) => Some(s.clone()),
                _ => None,
            };
            let ino = self.nodes().looked_up(key, st, pid);
            if let Some(s) = checkpoint_of {
                // The kernel's entry of `session` names `ino` from now on.
                self.own_commits.handed_out(&s, ino);
            }
            return ino;
        }
        let identity = (st.st_dev, st.st_ino);
        let candidate = {
            let nodes = self.nodes();
            match nodes.table.find(&key) {
                Some(_) => None,
                None => nodes.table.linked(identity),
            }
        };
        // The other name must still be this file (an inode number of the
        // disk is reused once its file is gone).
        if let Some((ino, other)) = candidate
            && self
                .stat_key(&other)
                .is_ok_and(|o| (o.st_dev, o.st_ino) == identity)
            && self.nodes().table.alias(key.clone(), ino, true)
        {
            return ino;
        }
        let mut nodes = self.nodes();
        let ino = nodes.looked_up(key, st, pid);
        nodes.table.set_identity(ino, identity);
        ino
    }
}
