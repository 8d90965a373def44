//! Storage of the inode table's nodes and names in fixed-size chunks.
//!
//! A table of a million nodes in one `Vec` would be copied whole each time
//! it doubles (with glibc, once its growth leaves the mmap threshold
//! behind, the old and the new block are both resident for the copy, and
//! the old one stays in the arena): chunks are never moved, so the
//! table's peak is its size, and a growing table takes 64 KiB at a time.
//!
//! Invariants:
//! - [`Chunked`]: every chunk but the last is full ([`NODES_PER_CHUNK`]
//!   items); item `i` is in chunk `i / NODES_PER_CHUNK`;
//! - [`Names`]: a name is stored whole in one page of [`PAGE`] bytes, so
//!   its offset is (page, place in it) and never changes; a name that does
//!   not fit in the last page starts a new one. Names are never changed
//!   once stored, so one stored name can serve several nodes: every entry
//!   of `recent` is the offset and length of a name stored in the same
//!   `Names`.

use std::ops::{Index, IndexMut};

/// Items per chunk of a [`Chunked`] (64 KiB of 32-byte nodes).
pub(super) const NODES_PER_CHUNK: usize = 2048;

#[derive(Debug)]
pub(super) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, item: T) {
        if self.len.is_multiple_of(NODES_PER_CHUNK) {
            self.chunks.push(Vec::with_capacity(NODES_PER_CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(item);
        }
        self.len += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }

    /// Bytes held on the heap.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
            + self
                .chunks
                .iter()
                .map(|c| c.capacity() * std::mem::size_of::<T>())
                .sum::<usize>()
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / NODES_PER_CHUNK][i % NODES_PER_CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / NODES_PER_CHUNK][i % NODES_PER_CHUNK]
    }
}

/// Bytes per page of [`Names`]: a name of up to `u16::MAX` bytes fits in
/// an empty one.
const PAGE: usize = 1 << 16;

/// Entries of [`Names`]' cache of names stored lately.
const RECENT: usize = 4096;

/// Names, back to back in pages; a name is found by the offset [`Names::push`]
/// gave and its length.
#[derive(Debug, Default)]
pub(super) struct Names {
    pages: Vec<Vec<u8>>,
    /// Bytes used, over all pages (not counting the unused ends of pages).
    len: usize,
    /// Names stored lately, by a hash of their bytes (direct-mapped; (0, 0):
    /// none): the names of Checkbox's job records repeat from session to
    /// session, and each is then stored once.
    recent: Vec<(u32, u16)>,
}

/// FNV-1a: cheap, and good enough to spread names over [`RECENT`] entries.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Names {
    /// Stores `name` unless the same name was stored lately; returns its
    /// offset, and whether it is one stored before (shared).
    pub fn push_shared(&mut self, name: &[u8]) -> (u32, bool) {
        let Ok(len) = u16::try_from(name.len()) else {
            return (self.push(name), false);
        };
        if len == 0 {
            return (self.push(name), false);
        }
        if self.recent.is_empty() {
            self.recent = vec![(0, 0); RECENT];
        }
        let entry = (fnv(name) % RECENT as u64) as usize;
        let (at, stored) = self.recent[entry];
        if stored == len && self.get(at, len) == name {
            return (at, true);
        }
        let at = self.push(name);
        self.recent[entry] = (at, len);
        (at, false)
    }

    /// Stores `name` (at most `u16::MAX` bytes); returns its offset.
    pub fn push(&mut self, name: &[u8]) -> u32 {
        debug_assert!(name.len() <= usize::from(u16::MAX));
        if name.is_empty() {
            // The fixed nodes' (root, `last-session`): no page for them.
            return 0;
        }
        let fits = self
            .pages
            .last()
            .is_some_and(|p| p.len() + name.len() <= PAGE);
        if !fits {
            self.pages.push(Vec::with_capacity(PAGE));
        }
        let page = self.pages.len() - 1;
        let last = &mut self.pages[page];
        let at = page * PAGE + last.len();
        last.extend_from_slice(name);
        self.len += name.len();
        u32::try_from(at).expect("inode table names beyond 4 GiB")
    }

    /// The `len` bytes stored at `at`.
    pub fn get(&self, at: u32, len: u16) -> &[u8] {
        if len == 0 {
            return &[];
        }
        let at = at as usize;
        &self.pages[at / PAGE][at % PAGE..][..usize::from(len)]
    }

    /// Bytes stored (the names no longer used included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held on the heap.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.pages.capacity() * std::mem::size_of::<Vec<u8>>()
            + self.pages.iter().map(Vec::capacity).sum::<usize>()
            + self.recent.capacity() * std::mem::size_of::<(u32, u16)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_index_across_chunks() {
        let mut c = Chunked::default();
        for i in 0..(NODES_PER_CHUNK * 2 + 5) {
            c.push(i);
        }
        assert_eq!(c.len(), NODES_PER_CHUNK * 2 + 5);
        assert_eq!(c[NODES_PER_CHUNK + 3], NODES_PER_CHUNK + 3);
        c[7] = 70;
        assert_eq!(c.iter().nth(7), Some(&70));
        assert_eq!(c.iter().count(), c.len());
    }

    #[test]
    fn names_never_straddle_pages() {
        let mut n = Names::default();
        let long = vec![b'x'; 40_000];
        let a = n.push(&long);
        let b = n.push(&long);
        let c = n.push(b"short");
        let empty = n.push(b"");
        assert_eq!(n.get(empty, 0), b"");
        assert_eq!(n.get(a, 40_000), &long[..]);
        assert_eq!(n.get(b, 40_000), &long[..]);
        assert_eq!(b as usize, PAGE, "the second did not fit in the first page");
        assert_eq!(n.get(c, 5), b"short");
        let biggest = vec![b'y'; usize::from(u16::MAX)];
        let d = n.push(&biggest);
        assert_eq!(n.get(d, u16::MAX), &biggest[..]);
        assert_eq!(n.len(), 80_005 + usize::from(u16::MAX));
    }

    #[test]
    fn a_name_stored_lately_is_stored_once() {
        let mut n = Names::default();
        let record = b"com.canonical.certification__info.record.gz";
        let (a, shared) = n.push_shared(record);
        assert!(!shared);
        let (other, _) = n.push_shared(b"2026-01-01T00.00.00001.session");
        let (b, shared) = n.push_shared(record);
        assert!(shared);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(n.get(b, record.len() as u16), record);
        assert_eq!(n.len(), record.len() + 30, "the repeat took no bytes");
        // A name of the same length and entry is not taken for it.
        let (c, shared) = n.push_shared(b"com.canonical.certification__misc.record.gz");
        assert!(!shared);
        assert_eq!(
            n.get(c, record.len() as u16),
            b"com.canonical.certification__misc.record.gz"
        );
    }
}
