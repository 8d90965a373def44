//! The inode table: which inode number stands for which place in the
//! repository.
//!
//! Invariants:
//! - [`ROOT`] and [`LAST_SESSION`] always exist; every other inode names a
//!   session directory or a path inside one, by name (never by a path that
//!   leaves the session directory: each component was a single name looked
//!   up by the kernel);
//! - `by_ino` and `by_key` are inverse maps of each other;
//! - an inode number is never reused for another key while the mount lives,
//!   so the kernel can never confuse two places;
//! - an inode is dropped only when the kernel has forgotten every lookup of
//!   it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

pub const ROOT: u64 = 1;
pub const LAST_SESSION: u64 = 2;
const FIRST_DYNAMIC: u64 = 3;

/// The place an inode stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeKey {
    Root,
    LastSession,
    /// A session directory, by its name in the repository.
    Session(OsString),
    /// A path inside a session directory (one or more components).
    Child(OsString, PathBuf),
}

impl NodeKey {
    /// The session directory name this key lives in, if any.
    pub fn session(&self) -> Option<&OsStr> {
        match self {
            NodeKey::Session(s) | NodeKey::Child(s, _) => Some(s),
            NodeKey::Root | NodeKey::LastSession => None,
        }
    }

    /// The key of `name` inside the directory this key stands for.
    pub fn child(&self, name: &OsStr) -> Option<NodeKey> {
        match self {
            NodeKey::Root => Some(NodeKey::Session(name.to_os_string())),
            NodeKey::Session(s) => Some(NodeKey::Child(s.clone(), PathBuf::from(name))),
            NodeKey::Child(s, rel) => Some(NodeKey::Child(s.clone(), rel.join(name))),
            NodeKey::LastSession => None,
        }
    }

    /// For a child key: its path relative to the session directory.
    pub fn rel(&self) -> Option<&Path> {
        match self {
            NodeKey::Child(_, rel) => Some(rel),
            NodeKey::Root | NodeKey::LastSession | NodeKey::Session(_) => None,
        }
    }
}

#[derive(Debug)]
struct Node {
    key: NodeKey,
    lookups: u64,
}

#[derive(Debug)]
pub struct InodeTable {
    by_ino: HashMap<u64, Node>,
    by_key: HashMap<NodeKey, u64>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut t = InodeTable {
            by_ino: HashMap::new(),
            by_key: HashMap::new(),
            next: FIRST_DYNAMIC,
        };
        for (ino, key) in [(ROOT, NodeKey::Root), (LAST_SESSION, NodeKey::LastSession)] {
            t.by_ino.insert(
                ino,
                Node {
                    key: key.clone(),
                    lookups: 0,
                },
            );
            t.by_key.insert(key, ino);
        }
        t
    }
}

impl InodeTable {
    pub fn key(&self, ino: u64) -> Option<NodeKey> {
        self.by_ino.get(&ino).map(|n| n.key.clone())
    }

    /// The inode of `key`, allocating one if needed; counts a kernel lookup
    /// when `lookup` is set.
    pub fn intern(&mut self, key: NodeKey, lookup: bool) -> u64 {
        let ino = match self.by_key.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.by_key.insert(key.clone(), ino);
                self.by_ino.insert(ino, Node { key, lookups: 0 });
                ino
            }
        };
        if lookup && let Some(node) = self.by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// A new inode for `key`, even if it has one already (older inodes of
    /// the key keep standing for it until the kernel forgets them). Each
    /// lookup of a `session` file gets its own inode, so every open of it
    /// has a page cache and a passthrough backing file of its own.
    pub fn intern_fresh(&mut self, key: NodeKey) -> u64 {
        // An inode the kernel holds no lookup of (one a listing numbered)
        // would never be forgotten once its key moves on: drop it.
        if let Some(&old) = self.by_key.get(&key)
            && self.by_ino.get(&old).is_some_and(|n| n.lookups == 0)
        {
            self.by_ino.remove(&old);
        }
        let ino = self.next;
        self.next += 1;
        self.by_key.insert(key.clone(), ino);
        self.by_ino.insert(ino, Node { key, lookups: 1 });
        ino
    }

    /// The inode of `key` if it has one, without allocating.
    pub fn find(&self, key: &NodeKey) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT || ino == LAST_SESSION {
            return;
        }
        let Some(node) = self.by_ino.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            let key = node.key.clone();
            self.by_ino.remove(&ino);
            if self.by_key.get(&key) == Some(&ino) {
                self.by_key.remove(&key);
            }
        }
    }

    /// After a rename of `from` to `to`: the inodes of `from` and of
    /// everything below it now stand for the same places under `to`; what
    /// `to` named before (overwritten) loses its key.
    pub fn rename(&mut self, from: &NodeKey, to: &NodeKey) {
        self.detach(to);
        let moved: Vec<(NodeKey, u64)> = self
            .by_key
            .iter()
            .filter(|(k, _)| is_same_or_below(k, from))
            .map(|(k, &ino)| (k.clone(), ino))
            .collect();
        for (old, ino) in moved {
            self.by_key.remove(&old);
            let Some(new) = rebase(&old, from, to) else {
                continue;
            };
            if let Some(node) = self.by_ino.get_mut(&ino) {
                node.key = new.clone();
            }
            self.by_key.insert(new, ino);
        }
    }

    /// `key` (and anything below it) no longer exists under that name.
    pub fn detach(&mut self, key: &NodeKey) {
        let doomed: Vec<NodeKey> = self
            .by_key
            .keys()
            .filter(|k| is_same_or_below(k, key))
            .cloned()
            .collect();
        for k in doomed {
            self.by_key.remove(&k);
        }
    }

    /// The session directories the kernel holds a lookup of, by name.
    pub fn looked_up_sessions(&self) -> impl Iterator<Item = &OsStr> {
        self.by_ino.values().filter_map(|n| match &n.key {
            NodeKey::Session(name) if n.lookups > 0 => Some(name.as_os_str()),
            _ => None,
        })
    }

    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }
}

/// `key` with its `from` prefix replaced by `to`.
fn rebase(key: &NodeKey, from: &NodeKey, to: &NodeKey) -> Option<NodeKey> {
    let tail: PathBuf = match (key, from) {
        (NodeKey::Session(_), NodeKey::Session(_)) => PathBuf::new(),
        (NodeKey::Child(_, r), NodeKey::Session(_)) => r.clone(),
        (NodeKey::Child(_, r), NodeKey::Child(_, rf)) => r.strip_prefix(rf).ok()?.to_path_buf(),
        _ => return None,
    };
    match to {
        NodeKey::Session(s) if tail.as_os_str().is_empty() => Some(NodeKey::Session(s.clone())),
        NodeKey::Session(s) => Some(NodeKey::Child(s.clone(), tail)),
        NodeKey::Child(s, rt) if tail.as_os_str().is_empty() => {
            Some(NodeKey::Child(s.clone(), rt.clone()))
        }
        NodeKey::Child(s, rt) => Some(NodeKey::Child(s.clone(), rt.join(tail))),
        NodeKey::Root | NodeKey::LastSession => None,
    }
}

fn is_same_or_below(k: &NodeKey, top: &NodeKey) -> bool {
    match (k, top) {
        (NodeKey::Session(a), NodeKey::Session(b)) => a == b,
        (NodeKey::Child(a, _), NodeKey::Session(b)) => a == b,
        (NodeKey::Child(a, ra), NodeKey::Child(b, rb)) => a == b && ra.starts_with(rb),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_forget_releases() {
        let mut t = InodeTable::default();
        let k = NodeKey::Session("a.session".into());
        let a = t.intern(k.clone(), true);
        assert_eq!(t.intern(k.clone(), true), a);
        assert_eq!(t.key(a), Some(k.clone()));
        t.forget(a, 1);
        assert_eq!(t.key(a), Some(k.clone()));
        t.forget(a, 1);
        assert_eq!(t.key(a), None);
        let b = t.intern(k, false);
        assert_ne!(a, b, "inode numbers are never reused");
    }

    #[test]
    fn fresh_inodes_share_a_key_until_forgotten() {
        let mut t = InodeTable::default();
        let k = NodeKey::Child("s.session".into(), "session".into());
        let a = t.intern_fresh(k.clone());
        let b = t.intern_fresh(k.clone());
        assert_ne!(a, b);
        assert_eq!(t.key(a), Some(k.clone()));
        assert_eq!(t.find(&k), Some(b));
        t.forget(b, 1);
        assert_eq!(t.key(a), Some(k.clone()), "the older inode still stands");
        t.forget(a, 1);
        assert_eq!(t.key(a), None);
    }

    #[test]
    fn rename_moves_a_subtree() {
        let mut t = InodeTable::default();
        let s = || OsString::from("s.session");
        let d = t.intern(NodeKey::Child(s(), "d".into()), true);
        let f = t.intern(NodeKey::Child(s(), "d/f".into()), true);
        let victim = t.intern(NodeKey::Child(s(), "e".into()), true);
        t.rename(
            &NodeKey::Child(s(), "d".into()),
            &NodeKey::Child(s(), "e".into()),
        );
        assert_eq!(t.key(d), Some(NodeKey::Child(s(), "e".into())));
        assert_eq!(t.key(f), Some(NodeKey::Child(s(), "e/f".into())));
        assert_eq!(t.find(&NodeKey::Child(s(), "e".into())), Some(d));
        assert_eq!(t.find(&NodeKey::Child(s(), "d".into())), None);
        assert_ne!(t.find(&NodeKey::Child(s(), "e".into())), Some(victim));
    }

    #[test]
    fn detach_unlinks_a_subtree() {
        let mut t = InodeTable::default();
        let dir = NodeKey::Child("s.session".into(), "d".into());
        let file = NodeKey::Child("s.session".into(), "d/f".into());
        let other = NodeKey::Child("s.session".into(), "dx".into());
        let (d, f, o) = (
            t.intern(dir.clone(), true),
            t.intern(file.clone(), true),
            t.intern(other.clone(), true),
        );
        t.detach(&dir);
        assert_eq!(t.find(&dir), None);
        assert_eq!(t.find(&file), None);
        assert_eq!(t.find(&other), Some(o));
        // The detached inodes still resolve until forgotten.
        assert!(t.key(d).is_some() && t.key(f).is_some());
    }
}
