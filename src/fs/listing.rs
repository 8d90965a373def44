//! Directory listings without an open: when the kernel is told that
//! `opendir` is not needed (FUSE's no-opendir mode, which saves the
//! OPENDIR and RELEASEDIR round trips of every directory a walk enters),
//! READDIR comes with no handle, only the directory's inode and an offset,
//! and the kernel keeps each listing in its own cache (see `cache` and
//! `watch` for when that cache is dropped).
//!
//! Invariants:
//! - an entry's offset is a cookie of its name alone (`.` 1, `..` 2, the
//!   decoded view `session.json` 3, so that `rm -r` still meets it first,
//!   any other name a hash of it), and a listing is in cookie order: a
//!   READDIR that resumes after a cookie skips and repeats no entry that
//!   was there all along, even when the directory changed in between, as
//!   with a disk's hashed directories;
//! - a listing read from offset 0 is a fresh snapshot of the directory,
//!   kept only to serve the rest of the same listing; one resumed with no
//!   snapshot at hand takes a fresh one, and at most [`KEPT`] are kept.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use super::{DirEntries, DirEntry, FsResult, SessionFs, lock};
use crate::decode::VIEW_NAME;

/// Listings in progress kept at most; past it, all are dropped (a listing
/// resumed afterwards takes a fresh snapshot).
const KEPT: usize = 256;

/// One listing of a directory, in cookie order.
#[derive(Debug)]
pub(crate) struct Snapshot {
    entries: Vec<(u64, DirEntry)>,
}

impl Snapshot {
    fn new(entries: Vec<DirEntry>) -> Snapshot {
        let mut entries: Vec<(u64, DirEntry)> =
            entries.into_iter().map(|e| (cookie(&e), e)).collect();
        entries.sort_by_key(|(c, _)| *c);
        Snapshot { entries }
    }

    pub(super) fn entry(&self, i: usize) -> Option<(u64, &DirEntry)> {
        self.entries.get(i).map(|(c, e)| (*c, e))
    }

    /// The index of the first entry after `offset`.
    fn after(&self, offset: u64) -> usize {
        self.entries.partition_point(|(c, _)| *c <= offset)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The cookie of an entry: fixed for the names that come first, a hash
/// (FNV-1a, 62 bits, past the fixed ones) for any other.
fn cookie(e: &DirEntry) -> u64 {
    let name = e.name.as_bytes();
    match name {
        b"." => 1,
        b".." => 2,
        _ if e.name == VIEW_NAME => 3,
        _ => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for &b in name {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            (h >> 2).max(4)
        }
    }
}

/// The listings in progress, by directory inode (a leaf lock).
#[derive(Debug, Default)]
pub(super) struct Listings {
    by_dir: Mutex<HashMap<u64, Arc<Snapshot>>>,
}

impl SessionFs {
    /// The entries of the directory `ino` after `offset`, listed without an
    /// open (see the module doc).
    pub fn readdir_unopened(&self, ino: u64, offset: u64) -> FsResult<DirEntries> {
        let kept = if offset == 0 {
            None
        } else {
            lock(&self.listings.by_dir).get(&ino).cloned()
        };
        let snapshot = match kept {
            Some(s) => s,
            None => {
                let key = self.key(ino)?;
                self.entering(ino, &key);
                let s = Arc::new(Snapshot::new(self.list_dir(ino, &key)?));
                let mut by_dir = lock(&self.listings.by_dir);
                if by_dir.len() >= KEPT {
                    by_dir.clear();
                }
                by_dir.insert(ino, s.clone());
                s
            }
        };
        let next = snapshot.after(offset);
        if next >= snapshot.len() {
            // The end of this listing: its snapshot is done with.
            let mut by_dir = lock(&self.listings.by_dir);
            if by_dir.get(&ino).is_some_and(|s| Arc::ptr_eq(s, &snapshot)) {
                by_dir.remove(&ino);
            }
        }
        Ok(DirEntries::of_snapshot(snapshot, next))
    }
}

#[cfg(test)]
mod tests {
    use super::super::inode::ROOT;
    use super::super::test_fixture::fs_with_sessions;
    use super::*;
    use std::ffi::OsStr;

    fn names_from(fs: &SessionFs, ino: u64, offset: u64, room: usize) -> (Vec<String>, u64) {
        let mut entries = fs.readdir_unopened(ino, offset).unwrap();
        let mut names = Vec::new();
        let mut last = offset;
        while names.len() < room
            && let Some((next, e)) = entries.next_entry()
        {
            names.push(e.name.to_string_lossy().into_owned());
            last = next;
        }
        (names, last)
    }

    #[test]
    fn a_listing_resumed_after_a_change_skips_and_repeats_nothing_that_stayed() {
        let names: Vec<String> = (0..40).map(|i| format!("s{i:02}.session")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (dir, fs) = fs_with_sessions(&refs);
        let (first, resume) = names_from(&fs, ROOT, 0, 15);
        assert_eq!(&first[..2], [".", ".."]);
        // Changes between two replies of one listing.
        std::fs::remove_dir(dir.path().join(&first[5])).unwrap();
        std::fs::create_dir(dir.path().join("new.session")).unwrap();
        lock(&fs.listings.by_dir).clear();
        let (rest, _) = names_from(&fs, ROOT, resume, usize::MAX);
        let mut seen: Vec<&String> = first.iter().chain(rest.iter()).collect();
        let total = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), total, "no entry twice");
        for n in &names {
            assert!(seen.contains(&n), "{n} stayed and must be listed");
        }
    }

    #[test]
    fn the_decoded_view_comes_first_and_finished_listings_are_not_kept() {
        let (dir, fs) = fs_with_sessions(&["a.session"]);
        std::fs::write(
            dir.path().join("a.session/session"),
            br#"{"version": 1, "session": {}}"#,
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("a.session/io-logs")).unwrap();
        let s = fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        let (names, _) = names_from(&fs, s.ino, 0, usize::MAX);
        let pos = |n: &str| names.iter().position(|x| x == n);
        if let Some(view) = pos("session.json") {
            assert_eq!(view, 2, "{names:?}");
        }
        assert!(
            pos("session").is_some() && pos("io-logs").is_some(),
            "{names:?}"
        );
        // The kernel asks once more, from the last entry's cookie, to find
        // the end: the snapshot is done with then.
        let (_, last) = names_from(&fs, s.ino, 0, usize::MAX);
        assert!(!lock(&fs.listings.by_dir).is_empty());
        let (after_end, _) = names_from(&fs, s.ino, last, usize::MAX);
        assert!(after_end.is_empty(), "{after_end:?}");
        assert!(lock(&fs.listings.by_dir).is_empty(), "listed to its end");
    }
}
