//! `session.json`: a read-only view, in each session directory of the
//! mount, of the checkpoint decoded to pretty-printed JSON (see
//! [`crate::decode`]).
//!
//! Invariants:
//! - the view exists only while the committed checkpoint decodes (gzip+JSON
//!   or JSON, within [`Limits`]); it is neither listed nor found otherwise,
//!   so a corrupt, hostile or opaque checkpoint simply has no view;
//! - a real file named `session.json` in the session directory always wins:
//!   the view is consulted only where that name does not exist;
//! - decoding happens with no lock of the filesystem held: only requests
//!   for the view of the same session wait for it (they need its result);
//! - one decode per checkpoint version: the outcome is cached per session,
//!   keyed by the checkpoint's identity ([`Stamp`]); the decoded bytes are
//!   shared by the opens of that version and freed with the last of them;
//! - the view never changes the repository: writes, truncation, attribute
//!   changes and renames are refused (EPERM); `rm` (as `rm -r` of a session
//!   does) succeeds without doing anything, like `rm` of a missing
//!   checkpoint.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, Weak};

use super::handles::Handle;
use super::inode::NodeKey;
use super::{FsError, FsResult, Opened, SessionFs, Stamp, lock};
use crate::core::{SessionName, sys};
use crate::decode::{self, DecodeError, Limits, VIEW_NAME};

/// Cached sessions beyond this many are forgotten (they are decoded again
/// when next asked for).
const MAX_CACHED: usize = 4096;

/// The known state of one session's view.
#[derive(Debug)]
struct Known {
    stamp: Stamp,
    /// The decoded size, or `None` when the checkpoint does not decode.
    size: Option<u64>,
    /// The decoded bytes, while an open of this version holds them.
    data: Weak<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Slot {
    known: Mutex<Option<Known>>,
}

/// The views' cache: one slot per session.
#[derive(Debug, Default)]
pub(super) struct Views {
    slots: Mutex<HashMap<OsString, Arc<Slot>>>,
    limits: Limits,
}

impl Views {
    fn slot(&self, session: &OsStr) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(session) {
            return slot.clone();
        }
        if slots.len() >= MAX_CACHED {
            slots.clear();
        }
        let slot = Arc::new(Slot::default());
        slots.insert(session.to_os_string(), slot.clone());
        slot
    }
}

/// The committed checkpoint of a session, opened, with its stat.
struct Checkpoint {
    file: File,
    st: libc::stat,
}

impl SessionFs {
    /// True when `key` is the view and no real `session.json` exists there.
    pub(super) fn is_virtual_view(&self, key: &NodeKey) -> bool {
        let NodeKey::View(s) = key else {
            return false;
        };
        self.session_dir(s).is_ok_and(|dir| {
            matches!(
                sys::lstatat(dir.as_fd(), OsStr::new(VIEW_NAME)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT)
            )
        })
    }

    /// Refuses a change of the view (it is derived from the checkpoint).
    pub(super) fn refuse_view_change(&self, op: &'static str, key: &NodeKey) -> FsResult<()> {
        if self.is_virtual_view(key) {
            return Err(FsError::refused(
                op,
                self.path_of(key),
                "session.json is a read-only view of the decoded checkpoint (write session instead)",
                libc::EPERM,
            ));
        }
        Ok(())
    }

    fn view_checkpoint(
        &self,
        session: &OsStr,
        dir: BorrowedFd<'_>,
    ) -> FsResult<Option<Checkpoint>> {
        let name = SessionName::new(session).map_err(|_| FsError::NotFound)?;
        let storage = self.repo.storage(name);
        let Some(file) = storage.open_checkpoint_in(dir)? else {
            return Ok(None);
        };
        let st = sys::fstat(file.as_fd())
            .map_err(|e| FsError::io("stat", storage.location().join("session"), e))?;
        Ok(Some(Checkpoint { file, st }))
    }

    fn view_path(&self, session: &OsStr) -> std::path::PathBuf {
        self.repo.location().join(session).join(VIEW_NAME)
    }

    fn log_undecodable(&self, session: &OsStr, e: &DecodeError) {
        let path = self.repo.location().join(session).join("session");
        if e.is_opaque() {
            log::debug!("{}: no {VIEW_NAME} view: {e}", path.display());
        } else {
            log::info!("{}: no {VIEW_NAME} view: {e}", path.display());
        }
    }

    /// The decoded size of this version of the checkpoint, decoding it
    /// (without keeping the result) unless known.
    fn view_size(&self, session: &OsStr, cp: &Checkpoint) -> Option<u64> {
        let stamp = Stamp::of(&cp.st);
        let slot = self.views.slot(session);
        let mut known = lock(&slot.known);
        if let Some(k) = known.as_ref()
            && k.stamp == stamp
        {
            return k.size;
        }
        let size = match decode::measure(&cp.file, self.views.limits) {
            Ok(d) => Some(d.size),
            Err(e) => {
                self.log_undecodable(session, &e);
                None
            }
        };
        *known = Some(Known {
            stamp,
            size,
            data: Weak::new(),
        });
        size
    }

    /// The attributes of the view of `session` (whose directory is `dir`),
    /// or `None` when its checkpoint does not decode.
    pub(super) fn view_stat(
        &self,
        session: &OsStr,
        dir: BorrowedFd<'_>,
    ) -> FsResult<Option<libc::stat>> {
        let Some(cp) = self.view_checkpoint(session, dir)? else {
            return Ok(None);
        };
        let Some(size) = self.view_size(session, &cp) else {
            return Ok(None);
        };
        let mut st = cp.st;
        st.st_mode = libc::S_IFREG | (cp.st.st_mode & 0o444);
        st.st_size = size as libc::off_t;
        st.st_blocks = size.div_ceil(512) as libc::blkcnt_t;
        st.st_nlink = 1;
        Ok(Some(st))
    }

    /// Whether the session directory listing shows the view.
    pub(super) fn view_listed(&self, session: &OsStr, dir: BorrowedFd<'_>) -> bool {
        match self.view_stat(session, dir) {
            Ok(st) => st.is_some(),
            Err(FsError::NotFound) => false,
            Err(e) => {
                log::warn!("{}: {e}", self.view_path(session).display());
                false
            }
        }
    }

    /// Opens the view of `session` when no real file is named
    /// `session.json`; `None` otherwise (the real file is opened as usual).
    pub(super) fn open_view(&self, session: &OsStr, flags: i32) -> FsResult<Option<Opened>> {
        let dir = self.session_dir(session)?;
        match sys::lstatat(dir.as_fd(), OsStr::new(VIEW_NAME)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            _ => return Ok(None),
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(FsError::refused(
                "open for writing",
                self.view_path(session),
                "session.json is a read-only view of the decoded checkpoint (write session instead)",
                libc::EPERM,
            ));
        }
        let cp = self
            .view_checkpoint(session, dir.as_fd())?
            .ok_or(FsError::NotFound)?;
        let data = self.view_data(session, &cp)?;
        let fh = self.insert_handle(Handle::View(data));
        Ok(Some(Opened::served(fh)))
    }

    /// The decoded bytes of this version of the checkpoint: shared with the
    /// opens that hold them already, else decoded now.
    fn view_data(&self, session: &OsStr, cp: &Checkpoint) -> FsResult<Arc<Vec<u8>>> {
        let stamp = Stamp::of(&cp.st);
        let slot = self.views.slot(session);
        let mut known = lock(&slot.known);
        let mut hint = None;
        if let Some(k) = known.as_ref()
            && k.stamp == stamp
        {
            if let Some(data) = k.data.upgrade() {
                return Ok(data);
            }
            hint = k.size;
        }
        match decode::decode_to_vec(&cp.file, self.views.limits, hint) {
            Ok((decoded, bytes)) => {
                let data = Arc::new(bytes);
                *known = Some(Known {
                    stamp,
                    size: Some(decoded.size),
                    data: Arc::downgrade(&data),
                });
                Ok(data)
            }
            Err(e) => {
                self.log_undecodable(session, &e);
                *known = Some(Known {
                    stamp,
                    size: None,
                    data: Weak::new(),
                });
                // The checkpoint changed into one without a view since the
                // lookup: the open fails as a read error would.
                Err(FsError::Io {
                    op: "decode",
                    path: self.repo.location().join(session).join("session"),
                    source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                })
            }
        }
    }
}

/// Reads from a view's bytes.
pub(super) fn read_view(data: &[u8], buf: &mut [u8], offset: u64) -> usize {
    let Ok(start) = usize::try_from(offset) else {
        return 0;
    };
    let Some(rest) = data.get(start..) else {
        return 0;
    };
    let n = rest.len().min(buf.len());
    buf[..n].copy_from_slice(&rest[..n]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_empty() {
        let data = b"hello";
        let mut buf = [0u8; 3];
        assert_eq!(read_view(data, &mut buf, 0), 3);
        assert_eq!(&buf, b"hel");
        assert_eq!(read_view(data, &mut buf, 3), 2);
        assert_eq!(read_view(data, &mut buf, 5), 0);
        assert_eq!(read_view(data, &mut buf, u64::MAX), 0);
    }
}
