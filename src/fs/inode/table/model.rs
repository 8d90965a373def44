//! The inode table as it was before it was made compact (two maps of
//! whole keys): the model the compact table is checked against.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;

use super::super::{FIRST_DYNAMIC, LAST_SESSION, NodeKey, ROOT};

#[derive(Debug)]
struct MNode {
    key: NodeKey,
    lookups: u64,
    /// How many names other than `key` map to this inode (hard links).
    aliases: u32,
    /// (device, inode) on disk, for a file known to have hard links.
    identity: Option<(u64, u64)>,
}

impl MNode {
    fn new(key: NodeKey, lookups: u64) -> MNode {
        MNode {
            key,
            lookups,
            aliases: 0,
            identity: None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Model {
    by_ino: HashMap<u64, MNode>,
    by_key: HashMap<NodeKey, u64>,
    /// Inodes of files with hard links, by their (device, inode) on disk.
    by_identity: HashMap<(u64, u64), u64>,
    next: u64,
}

impl Default for Model {
    fn default() -> Self {
        let mut t = Model {
            by_ino: HashMap::new(),
            by_key: HashMap::new(),
            by_identity: HashMap::new(),
            next: FIRST_DYNAMIC,
        };
        for (ino, key) in [(ROOT, NodeKey::Root), (LAST_SESSION, NodeKey::LastSession)] {
            t.by_ino.insert(ino, MNode::new(key.clone(), 0));
            t.by_key.insert(key, ino);
        }
        t
    }
}

impl Model {
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
                self.by_ino.insert(ino, MNode::new(key, 0));
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
        self.by_ino.insert(ino, MNode::new(key, 1));
        ino
    }

    /// The inode standing for the disk file `identity` (one with hard
    /// links) and its primary name, if the table has one.
    pub fn linked(&self, identity: (u64, u64)) -> Option<(u64, NodeKey)> {
        let ino = *self.by_identity.get(&identity)?;
        let node = self.by_ino.get(&ino)?;
        Some((ino, node.key.clone()))
    }

    /// Records that `ino` stands for the disk file `identity`, which has
    /// hard links.
    pub fn set_identity(&mut self, ino: u64, identity: (u64, u64)) {
        if let Some(node) = self.by_ino.get_mut(&ino) {
            if let Some(old) = node.identity.replace(identity)
                && old != identity
                && self.by_identity.get(&old) == Some(&ino)
            {
                self.by_identity.remove(&old);
            }
            self.by_identity.insert(identity, ino);
        }
    }

    /// `key` is another name (a hard link) of the file `ino` stands for;
    /// counts a kernel lookup when `lookup` is set. Returns false when
    /// `ino` is gone.
    pub fn alias(&mut self, key: NodeKey, ino: u64, lookup: bool) -> bool {
        if !self.by_ino.contains_key(&ino) {
            return false;
        }
        match self.by_key.get(&key) {
            Some(&same) if same == ino => {}
            _ => {
                self.detach_exact(&key);
                self.by_key.insert(key.clone(), ino);
                if let Some(node) = self.by_ino.get_mut(&ino)
                    && node.key != key
                {
                    node.aliases += 1;
                }
            }
        }
        if lookup && let Some(node) = self.by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
        true
    }

    /// Removes the one name `key` (not what is below it): its inode, if
    /// `key` was its primary name, goes on under another of its names.
    fn detach_exact(&mut self, key: &NodeKey) {
        let Some(ino) = self.by_key.remove(key) else {
            return;
        };
        let Some(node) = self.by_ino.get_mut(&ino) else {
            return;
        };
        if node.aliases == 0 {
            return;
        }
        node.aliases -= 1;
        if node.key == *key
            && let Some(other) = self
                .by_key
                .iter()
                .find(|&(_, &i)| i == ino)
                .map(|(k, _)| k.clone())
        {
            node.key = other;
        }
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
            let (aliases, identity) = (node.aliases, node.identity);
            self.by_ino.remove(&ino);
            if self.by_key.get(&key) == Some(&ino) {
                self.by_key.remove(&key);
            }
            if aliases > 0 {
                self.by_key.retain(|_, i| *i != ino);
            }
            if let Some(id) = identity
                && self.by_identity.get(&id) == Some(&ino)
            {
                self.by_identity.remove(&id);
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
            if let Some(node) = self.by_ino.get_mut(&ino)
                && node.key == old
            {
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
            self.detach_exact(&k);
        }
    }

    /// The session directories the kernel holds a lookup of, by name.
    pub fn looked_up_sessions(&self) -> impl Iterator<Item = &OsStr> {
        self.by_ino.values().filter_map(|n| match &n.key {
            NodeKey::Session(name) if n.lookups > 0 => Some(name.as_os_str()),
            _ => None,
        })
    }

    /// How many inodes the table holds.
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }
}

/// `key` with its `from` prefix replaced by `to`.
fn rebase(key: &NodeKey, from: &NodeKey, to: &NodeKey) -> Option<NodeKey> {
    let tail: PathBuf = match (key, from) {
        (NodeKey::Session(_), NodeKey::Session(_)) => PathBuf::new(),
        (k, NodeKey::Session(_)) => k.in_session()?.1.to_path_buf(),
        (k, f) => {
            let (_, r) = k.in_session()?;
            let (_, rf) = f.in_session()?;
            r.strip_prefix(rf).ok()?.to_path_buf()
        }
    };
    match to {
        NodeKey::Session(s) if tail.as_os_str().is_empty() => Some(NodeKey::Session(s.clone())),
        NodeKey::Session(s) => Some(NodeKey::inside(s.clone(), tail)),
        t => {
            let (s, rt) = t.in_session()?;
            let rel = if tail.as_os_str().is_empty() {
                rt.to_path_buf()
            } else {
                rt.join(tail)
            };
            Some(NodeKey::inside(s.to_os_string(), rel))
        }
    }
}

fn is_same_or_below(k: &NodeKey, top: &NodeKey) -> bool {
    match (k, top) {
        (NodeKey::Session(a), NodeKey::Session(b)) => a == b,
        (k, NodeKey::Session(b)) => k.in_session().is_some_and(|(a, _)| a == b),
        (k, top) => match (k.in_session(), top.in_session()) {
            (Some((a, ra)), Some((b, rb))) => a == b && ra.starts_with(rb),
            _ => false,
        },
    }
}
