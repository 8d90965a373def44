//! `io-logs/<job>.record.txt`: a read-only view, next to each
//! `io-logs/<job>.record.gz` of a session directory, of the job's output
//! decoded (both streams in the order the job wrote them, see
//! [`crate::checkbox::decode_record`]), so `cat` works for debugging.
//!
//! Invariants (those of `session.json`, see `view`):
//! - the view exists only while its record decodes within [`Limits`]; a
//!   damaged, hostile or oversized record simply has no view;
//! - a real file of the view's name always wins: the view is consulted only
//!   where that name does not exist;
//! - the record is opened beneath the session directory without following
//!   a symlink (`io-logs` itself included), so a planted link shows
//!   nothing;
//! - a record's decoded size is measured once per version of it (size,
//!   times), not at every listing;
//! - the view never changes the repository: opening it for writing is
//!   refused (EPERM) and `rm` of it does nothing, so `rm -r` of a session
//!   works.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufReader;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::attr::Kind;
use super::handles::Handle;
use super::inode::NodeKey;
use super::{FsError, FsResult, Opened, SessionFs, Stamp, lock};
use crate::checkbox::{IO_LOGS_DIR, RECORD_SUFFIX, decode_record, measure_record};
use crate::core::sys;
use crate::decode::Limits;

/// How many records' decoded sizes are remembered (by the record's
/// version), so that listing `io-logs` again decodes nothing that did not
/// change; past it, all are forgotten.
const KNOWN_RECORDS: usize = 16_384;

/// The decoded size of each record measured (`None`: it does not decode),
/// by the record's (device, inode), with the version it was measured at.
pub(super) type RecordSizes = std::collections::HashMap<(u64, u64), (Stamp, Option<u64>)>;

/// The suffix of a view's name (in place of [`RECORD_SUFFIX`]).
pub(super) const VIEW_SUFFIX: &str = ".record.txt";

/// For a key `io-logs/<job>.record.txt` of a session: the session and the
/// record's path relative to the session directory.
pub(super) fn record_of(key: &NodeKey) -> Option<(&OsStr, PathBuf)> {
    let NodeKey::Child(session, rel) = key else {
        return None;
    };
    let mut parts = rel.components();
    let (Some(dir), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if dir.as_os_str() != IO_LOGS_DIR {
        return None;
    }
    let stem = name
        .as_os_str()
        .as_bytes()
        .strip_suffix(VIEW_SUFFIX.as_bytes())?;
    if stem.is_empty() {
        return None;
    }
    let mut record = stem.to_vec();
    record.extend_from_slice(RECORD_SUFFIX.as_bytes());
    Some((
        session,
        Path::new(IO_LOGS_DIR).join(OsStr::from_bytes(&record)),
    ))
}

/// A view's name for a record's name, if it is one.
pub(super) fn view_name(record: &OsStr) -> Option<OsString> {
    let stem = record.as_bytes().strip_suffix(RECORD_SUFFIX.as_bytes())?;
    if stem.is_empty() {
        return None;
    }
    let mut name = stem.to_vec();
    name.extend_from_slice(VIEW_SUFFIX.as_bytes());
    Some(OsString::from_vec(name))
}

/// The record, opened beneath the session directory without following a
/// symlink, with its stat; `None` when there is no such regular file.
fn open_record(session_dir: BorrowedFd<'_>, record: &Path) -> Option<(File, libc::stat)> {
    let fd = sys::open_beneath(session_dir, record, libc::O_RDONLY | libc::O_NOFOLLOW, 0).ok()?;
    let st = sys::fstat(fd.as_fd()).ok()?;
    sys::is_reg(&st).then(|| (File::from(fd), st))
}

impl SessionFs {
    /// Whether `key` is an io-log view that no real file shadows.
    pub(super) fn is_iolog_view(&self, key: &NodeKey) -> bool {
        let Some((session, _)) = record_of(key) else {
            return false;
        };
        let Some((_, rel)) = key.in_session() else {
            return false;
        };
        self.session_dir(session).is_ok_and(|dir| {
            matches!(
                sys::open_beneath(dir.as_fd(), rel, libc::O_PATH | libc::O_NOFOLLOW, 0),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT)
            )
        })
    }

    /// The attributes of the io-log view `key` (whose real name is
    /// missing), or `None` when `key` is no view or its record does not
    /// decode.
    pub(super) fn iolog_view_stat(&self, key: &NodeKey) -> FsResult<Option<libc::stat>> {
        let Some((session, record)) = record_of(key) else {
            return Ok(None);
        };
        let dir = self.session_dir(session)?;
        let Some((file, st)) = open_record(dir.as_fd(), &record) else {
            return Ok(None);
        };
        let stamp = Stamp::of(&st);
        let known = lock(&self.iolog_sizes)
            .get(&(stamp.dev, stamp.ino))
            .filter(|(s, _)| *s == stamp)
            .map(|(_, size)| *size);
        let size = match known {
            Some(size) => size,
            None => {
                let size = match measure_record(BufReader::new(file), Limits::default()) {
                    Ok(stats) => Some(stats.bytes()),
                    Err(e) => {
                        log::debug!("{}: no view: {e}", self.path_of(key).display());
                        None
                    }
                };
                let mut sizes = lock(&self.iolog_sizes);
                if sizes.len() >= KNOWN_RECORDS {
                    sizes.clear();
                }
                sizes.insert((stamp.dev, stamp.ino), (stamp, size));
                size
            }
        };
        let Some(size) = size else {
            return Ok(None);
        };
        let mut view = st;
        view.st_mode = libc::S_IFREG | (st.st_mode & 0o444);
        view.st_size = size as libc::off_t;
        view.st_blocks = size.div_ceil(512) as libc::blkcnt_t;
        view.st_nlink = 1;
        Ok(Some(view))
    }

    /// Opens the io-log view `key` when it is one; `None` otherwise (the
    /// real file, if any, is opened as usual).
    pub(super) fn open_iolog_view(&self, key: &NodeKey, flags: i32) -> FsResult<Option<Opened>> {
        if !self.is_iolog_view(key) {
            return Ok(None);
        }
        let Some((session, record)) = record_of(key) else {
            return Ok(None);
        };
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(FsError::refused(
                "open for writing",
                self.path_of(key),
                "a .record.txt is a read-only view of the job's record.gz",
                libc::EPERM,
            ));
        }
        let dir = self.session_dir(session)?;
        let (file, _) = open_record(dir.as_fd(), &record).ok_or(FsError::NotFound)?;
        let mut data = Vec::new();
        decode_record(BufReader::new(file), &mut data, Limits::default()).map_err(|e| {
            FsError::Io {
                op: "decode",
                path: self.path_of(key),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            }
        })?;
        let fh = self.insert_handle(Handle::View(Arc::new(data)));
        Ok(Some(Opened::served(fh)))
    }

    /// Adds to the listing of `io-logs` (`key`, read from `dir`) the view
    /// of each record that decodes and that no real file shadows.
    pub(super) fn add_iolog_views(&self, key: &NodeKey, found: &mut Vec<(OsString, Kind)>) {
        let NodeKey::Child(session, rel) = key else {
            return;
        };
        if rel.as_os_str() != IO_LOGS_DIR {
            return;
        }
        let views: Vec<OsString> = found
            .iter()
            .filter(|(_, kind)| *kind == Kind::File)
            .filter_map(|(name, _)| view_name(name))
            .filter(|v| !found.iter().any(|(n, _)| n == v))
            .collect();
        for view in views {
            let vkey = NodeKey::Child(session.clone(), rel.join(&view));
            if matches!(self.iolog_view_stat(&vkey), Ok(Some(_))) {
                found.push((view, Kind::File));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_name_their_records() {
        let key = NodeKey::Child("s.session".into(), "io-logs/ns__a.record.txt".into());
        assert_eq!(
            record_of(&key),
            Some((
                OsStr::new("s.session"),
                PathBuf::from("io-logs/ns__a.record.gz")
            ))
        );
        for other in [
            "io-logs/.record.txt",
            "ns__a.record.txt",
            "io-logs/x/ns__a.record.txt",
            "io-logs/ns__a.stdout",
        ] {
            let key = NodeKey::Child("s.session".into(), other.into());
            assert_eq!(record_of(&key), None, "{other}");
        }
        assert_eq!(
            view_name(OsStr::new("ns__a.record.gz")),
            Some(OsString::from("ns__a.record.txt"))
        );
        assert_eq!(view_name(OsStr::new(".record.gz")), None);
        assert_eq!(view_name(OsStr::new("ns__a.stdout")), None);
    }

    #[test]
    fn a_record_is_measured_once_per_version() {
        let (dir, fs) = super::super::test_fixture::fs_with_sessions(&["a.session"]);
        let logs = dir.path().join("a.session/io-logs");
        std::fs::create_dir(&logs).unwrap();
        let record = logs.join("ns__pass.record.gz");
        std::fs::write(&record, b"not gzip").unwrap();
        let key = NodeKey::Child("a.session".into(), "io-logs/ns__pass.record.txt".into());
        assert!(fs.iolog_view_stat(&key).unwrap().is_none(), "no view yet");
        assert_eq!(super::super::lock(&fs.iolog_sizes).len(), 1, "remembered");
        // A new version of the record (another size) is measured again.
        let good = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/checkbox-ns__pass.record.gz"
        ))
        .unwrap();
        std::fs::write(&record, &good).unwrap();
        let view = fs.iolog_view_stat(&key).unwrap().expect("a view now");
        assert!(view.st_size > 0);
        assert_eq!(
            fs.iolog_view_stat(&key).unwrap().unwrap().st_size,
            view.st_size
        );
    }
}
