//! A compact hash index of the inode table's nodes: a set of node slots
//! (`u32`) found by a hash the caller computes from the node itself, so
//! that what is hashed (an inode number, a parent and a name) is stored
//! once, in the node, and the index costs 4 bytes a bucket.
//!
//! Invariants:
//! - open addressing with linear probing; [`EMPTY`] marks a free bucket and
//!   a removal shifts the run after it back (no tombstones), so a lookup
//!   stops at the first free bucket;
//! - the bucket count is a power of two and at most three quarters of the
//!   buckets are used, so every probe ends;
//! - the caller gives the same hash for a slot every time (for as long as
//!   the slot is in the index): a slot's bucket is found again by it.

/// A free bucket.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(super) struct Index {
    buckets: Vec<u32>,
    len: usize,
}

impl Index {
    /// An index with room for `n` slots without growing.
    pub fn with_room(n: usize) -> Index {
        let mut index = Index::default();
        if n > 0 {
            index.buckets = vec![EMPTY; buckets_for(n)];
        }
        index
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes the index holds on the heap.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<u32>()
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The slot of hash `hash` for which `eq` holds.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut at = hash as usize & mask;
        loop {
            match self.buckets[at] {
                EMPTY => return None,
                slot if eq(slot) => return Some(slot),
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// Adds `slot` (not in the index) under `hash`; `hash_of` gives the
    /// hash of any slot already in it (to grow).
    pub fn insert(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) {
        debug_assert_ne!(slot, EMPTY);
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.grow(&hash_of);
        }
        self.place(hash, slot);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, slot: u32) {
        let mask = self.mask();
        let mut at = hash as usize & mask;
        while self.buckets[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.buckets[at] = slot;
    }

    fn grow(&mut self, hash_of: &impl Fn(u32) -> u64) {
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; buckets_for(self.len + 1)]);
        for slot in old.into_iter().filter(|&s| s != EMPTY) {
            self.place(hash_of(slot), slot);
        }
    }

    /// Removes `slot` (stored under `hash`); `hash_of` gives the hash of
    /// any slot in the index. Returns whether it was there.
    pub fn remove(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) -> bool {
        if self.buckets.is_empty() {
            return false;
        }
        let mask = self.mask();
        let mut at = hash as usize & mask;
        loop {
            match self.buckets[at] {
                EMPTY => return false,
                s if s == slot => break,
                _ => at = (at + 1) & mask,
            }
        }
        // Backward shift: every slot of the run after the hole that may
        // live in it moves there, so no lookup meets a hole before its slot.
        let mut hole = at;
        let mut next = (hole + 1) & mask;
        while self.buckets[next] != EMPTY {
            let s = self.buckets[next];
            let home = hash_of(s) as usize & mask;
            // How far `s` is from its home, and from the hole.
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.buckets[hole] = s;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
        true
    }
}

/// The bucket count for `n` slots: a power of two, at most 3/4 used.
fn buckets_for(n: usize) -> usize {
    (n * 4 / 3 + 1).next_power_of_two().max(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A poor hash, so that runs form and wrap around.
    fn h(slot: u32) -> u64 {
        u64::from(slot % 5)
    }

    #[test]
    fn finds_what_it_holds_after_removals_in_any_order() {
        let mut index = Index::default();
        for s in 0..200 {
            index.insert(h(s), s, h);
        }
        assert_eq!(index.len(), 200);
        for s in (0..200).filter(|s| s % 3 == 0) {
            assert!(index.remove(h(s), s, h), "{s}");
            assert!(!index.remove(h(s), s, h), "{s} twice");
        }
        for s in 0..200 {
            let found = index.find(h(s), |x| x == s);
            assert_eq!(found.is_some(), s % 3 != 0, "{s}");
        }
        assert_eq!(index.len(), 200 - 67);
    }

    #[test]
    fn room_is_sized_to_what_it_holds() {
        let index = Index::with_room(1000);
        assert!(index.bytes() >= 1000 * 4 * 4 / 3 && index.bytes() <= 1000 * 4 * 8 / 3);
        assert_eq!(Index::with_room(0).bytes(), 0);
    }
}
