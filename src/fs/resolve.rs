//! From a node key to a descriptor or a `stat`, always beneath the
//! repository descriptor.
//!
//! Invariants:
//! - a session directory is opened with `O_NOFOLLOW` by a valid session
//!   name; anything inside it with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`
//!   (`sys::open_beneath`), so a symlink or `..` met on the way shows as
//!   missing, never as a way out;
//! - `session` always shows as a regular file: an empty one when the
//!   session has no checkpoint, an unreadable one when something other
//!   than a file was planted there (as a symlink, the kernel would follow
//!   it out of the repository).

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::inode::{NodeKey, Version};
use super::{FsError, FsResult, SessionFs, Stamp};
use crate::core::{LAST_SESSION_LINK, SESSION_FILE, SessionName, Storage, sys};

impl SessionFs {
    /// Where `key` is in the repository, for messages.
    pub(super) fn path_of(&self, key: &NodeKey) -> PathBuf {
        let base = self.repo.location();
        match key {
            NodeKey::Root => base.to_path_buf(),
            NodeKey::LastSession => base.join(LAST_SESSION_LINK),
            NodeKey::PendingLink(s) | NodeKey::Session(s) => base.join(s),
            NodeKey::Checkpoint(_) | NodeKey::Lock(_) | NodeKey::View(_) | NodeKey::Child(..) => {
                match key.in_session() {
                    Some((s, rel)) => base.join(s).join(rel),
                    None => base.to_path_buf(),
                }
            }
        }
    }

    pub(super) fn storage(&self, session: &OsStr) -> FsResult<Storage> {
        let name = SessionName::new(session).map_err(|_| FsError::NotFound)?;
        Ok(self.repo.storage(name))
    }

    /// The session directory, opened without following a symlink.
    pub(super) fn session_dir(&self, session: &OsStr) -> FsResult<OwnedFd> {
        if SessionName::new(session).is_err() {
            return Err(FsError::NotFound);
        }
        sys::open_subdir(self.repo_fd(), session).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENOTDIR) => FsError::NotFound,
            _ => FsError::io(
                "open session directory",
                self.repo.location().join(session),
                e,
            ),
        })
    }

    /// The directory holding `rel` inside a session, and `rel`'s last name.
    pub(super) fn parent_of(&self, session: &OsStr, rel: &Path) -> FsResult<(OwnedFd, OsString)> {
        let dir = self.session_dir(session)?;
        let name = rel.file_name().ok_or(FsError::NotFound)?.to_os_string();
        match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => {
                let parent = sys::open_beneath(dir.as_fd(), p, libc::O_PATH | libc::O_DIRECTORY, 0)
                    .map_err(|e| match e.raw_os_error() {
                        Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR) => {
                            FsError::NotFound
                        }
                        _ => FsError::io(
                            "open directory",
                            self.repo.location().join(session).join(p),
                            e,
                        ),
                    })?;
                Ok((parent, name))
            }
            _ => Ok((dir, name)),
        }
    }

    /// The directory holding a key inside a session, and the key's last
    /// name; `NotFound` for keys outside session directories.
    pub(super) fn parent_of_key(&self, key: &NodeKey) -> FsResult<(OwnedFd, OsString)> {
        let (s, rel) = key.in_session().ok_or(FsError::NotFound)?;
        self.parent_of(s, rel)
    }

    /// A directory of the mount, opened for reading its entries.
    pub(super) fn open_dir_key(&self, key: &NodeKey) -> FsResult<OwnedFd> {
        match key {
            NodeKey::Root => self
                .repo_dir
                .try_clone()
                .map_err(|e| FsError::io("open", self.repo.location(), e)),
            NodeKey::Session(s) => self.session_dir(s),
            NodeKey::Checkpoint(_) | NodeKey::Lock(_) | NodeKey::View(_) | NodeKey::Child(..) => {
                let (s, rel) = key.in_session().ok_or(FsError::NotFound)?;
                let dir = self.session_dir(s)?;
                sys::open_beneath(dir.as_fd(), rel, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(
                    |e| match e.raw_os_error() {
                        Some(libc::ELOOP) | Some(libc::EXDEV) => FsError::NotFound,
                        _ => FsError::io("open directory", self.path_of(key), e),
                    },
                )
            }
            NodeKey::PendingLink(_) => Err(FsError::NotFound),
            NodeKey::LastSession => Err(FsError::refused(
                "open",
                self.path_of(key),
                "not a directory",
                libc::ENOTDIR,
            )),
        }
    }

    /// The `stat` of what `key` stands for, as the mount shows it.
    /// The `stat` of what `key` names. Asking again by name is always safe,
    /// so a stale NFS file handle (ESTALE: replaced and removed on the
    /// server since the client looked it up) is retried once.
    pub(super) fn stat_key(&self, key: &NodeKey) -> FsResult<libc::stat> {
        match self.stat_key_once(key) {
            Err(e) if e.errno() == libc::ESTALE => {
                log::debug!(
                    "{}: stale file handle, asking again",
                    self.path_of(key).display()
                );
                self.stat_key_once(key)
            }
            other => other,
        }
    }

    fn stat_key_once(&self, key: &NodeKey) -> FsResult<libc::stat> {
        match key {
            NodeKey::Root => {
                sys::fstat(self.repo_fd()).map_err(|e| FsError::io("stat", self.path_of(key), e))
            }
            NodeKey::LastSession => sys::lstatat(self.repo_fd(), OsStr::new(LAST_SESSION_LINK))
                .map_err(|e| FsError::io("stat", self.path_of(key), e)),
            // Only the daemon knows them (see root.rs).
            NodeKey::PendingLink(_) => Err(FsError::NotFound),
            NodeKey::Session(s) => {
                if SessionName::new(s).is_err() {
                    return Err(FsError::NotFound);
                }
                let st = sys::lstatat(self.repo_fd(), s)
                    .map_err(|e| FsError::io("stat", self.path_of(key), e))?;
                if sys::is_dir(&st) {
                    Ok(st)
                } else {
                    Err(FsError::NotFound)
                }
            }
            NodeKey::Checkpoint(_) => {
                let (parent, _) = self.parent_of_key(key)?;
                self.checkpoint_stat(parent.as_fd(), key)
            }
            NodeKey::View(s) => {
                let (parent, name) = self.parent_of_key(key)?;
                match sys::lstatat(parent.as_fd(), &name) {
                    Ok(st) => Ok(st),
                    // The decoded view of the checkpoint, when it decodes.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        self.view_stat(s, parent.as_fd())?.ok_or(FsError::NotFound)
                    }
                    Err(e) => Err(FsError::io("stat", self.path_of(key), e)),
                }
            }
            NodeKey::Lock(_) | NodeKey::Child(..) => {
                let (parent, name) = self.parent_of_key(key)?;
                match sys::lstatat(parent.as_fd(), &name) {
                    // A job's decoded output, next to its record.gz.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        self.iolog_view_stat(key)?.ok_or(FsError::NotFound)
                    }
                    found => found.map_err(|e| FsError::io("stat", self.path_of(key), e)),
                }
            }
        }
    }
}

impl SessionFs {
    /// What `session` (the key `key`) in the session directory `dir` shows
    /// as: the committed file's stat, or a stand-in.
    pub(super) fn checkpoint_stat(
        &self,
        dir: BorrowedFd<'_>,
        key: &NodeKey,
    ) -> FsResult<libc::stat> {
        match sys::lstatat(dir, OsStr::new(SESSION_FILE)) {
            // A `session` that is not a regular file (a planted symlink)
            // shows as an unreadable file: as a symlink, the kernel would
            // follow it out of the repository. Opening it fails in the
            // core; a write replaces it.
            Ok(mut st) if !sys::is_reg(&st) => {
                st.st_mode = libc::S_IFREG;
                st.st_size = 0;
                st.st_blocks = 0;
                st.st_nlink = 1;
                Ok(st)
            }
            Ok(st) => Ok(st),
            // A session without a checkpoint shows an empty `session`, as
            // the core loads it, with the directory's times. Its inode
            // number 0 (never a file's) makes it the version
            // `Version::ABSENT` whatever the times.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let mut st =
                    sys::fstat(dir).map_err(|e| FsError::io("stat", self.path_of(key), e))?;
                st.st_mode = libc::S_IFREG | 0o644;
                st.st_ino = 0;
                st.st_size = 0;
                st.st_blocks = 0;
                st.st_nlink = 1;
                Ok(st)
            }
            Err(e) => Err(FsError::io("stat", self.path_of(key), e)),
        }
    }

    /// The committed version of `session` in the session directory `dir`,
    /// as a lookup of it (the key `key`) finds it.
    pub(super) fn checkpoint_version(
        &self,
        dir: BorrowedFd<'_>,
        key: &NodeKey,
    ) -> FsResult<Version> {
        Ok(Version::of(&Stamp::of(&self.checkpoint_stat(dir, key)?)))
    }
}
