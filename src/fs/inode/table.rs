//! The inode table: which inode number stands for which [`NodeKey`].
//!
//! Representation (compact, for mounts whose kernel holds hundreds of
//! thousands of inodes): a tree of nodes, each a name in the directory of
//! its parent node (32 bytes: parent slot, inode, lookups, name). A node's
//! key is rebuilt on demand from its names up to the root, so a rename
//! of a directory is a change of one node, and the special keys
//! (`Checkpoint`, `Lock`, `View`) follow from where a node is
//! ([`NodeKey::inside`]), wherever a rename put it. The names of Checkbox's
//! well-known entries are tags; other names are bytes in one buffer, each
//! stored once. Two indexes of 4-byte slots (see `index`) find a primary
//! node by inode number and an attached node by (parent, name), the
//! hashed fields read from the node.
//!
//! Invariants:
//! - [`ROOT`] and `LAST_SESSION` always exist; every other inode names a
//!   session directory or a path inside one, by name (never by a path that
//!   leaves the session directory: each component was a single name looked
//!   up by the kernel);
//! - the attached nodes (the ones in the name index) are the names the
//!   kernel was given, found from the root through attached nodes only;
//!   each inode's primary node is one of its names (the one requests on
//!   the inode act on); several names stand for one inode only for hard
//!   links of one file of the disk (see [`InodeTable::alias`]), so `stat`
//!   shows one inode number for all of its names, as the disk does; a
//!   name that went (detached, overwritten, or an older inode of a key
//!   given a fresh one) stays as an unattached node for as long as its
//!   inode lives, so the inode keeps its place;
//! - a node with no inode exists only as the parent of nodes below it, and
//!   goes with the last of them;
//! - an inode number is never reused for another key while the mount lives,
//!   so the kernel can never confuse two places;
//! - an inode is dropped only when the kernel has forgotten every lookup of
//!   it, and its nodes with it: the table's size follows what the kernel
//!   holds, and freed slots and name bytes are given back once they are
//!   most of the table (the live nodes are then compacted).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::hash::{BuildHasher, RandomState};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::index::Index;
use super::store::{Chunked, Names};
use super::{FIRST_DYNAMIC, LAST_SESSION, NodeKey, ROOT};
use crate::checkbox::IO_LOGS_DIR;
use crate::core::{SESSION_FILE, SESSION_NEXT_FILE};
use crate::decode::VIEW_NAME;

/// Names stored as a tag rather than as bytes: the ones every Checkbox
/// session directory holds, so that most nodes of a walk need no name
/// bytes at all.
const KNOWN_NAMES: [&str; 5] = [
    SESSION_FILE,
    SESSION_NEXT_FILE,
    VIEW_NAME,
    IO_LOGS_DIR,
    "session-share",
];

/// Slots of the two nodes that always exist.
const ROOT_SLOT: u32 = 0;
const LAST_SLOT: u32 = 1;
/// The parent of the fixed nodes.
const NO_PARENT: u32 = u32::MAX;

/// `Node::flags`: the node is in `by_name` (findable by its name).
const ATTACHED: u8 = 1;
/// A child of the root that is a pending link, not a session directory.
const PENDING: u8 = 2;
/// `name` is an index in [`KNOWN_NAMES`], not an offset in `names`.
const KNOWN: u8 = 4;
/// A free slot (on the free list).
const FREE: u8 = 8;
/// `name` is a name stored for another node too (see `Names::push_shared`):
/// its bytes are not this node's to count as garbage.
const SHARED: u8 = 16;

/// One name of the tree the kernel was given, and the inode it stands for
/// (32 bytes; the name's bytes, if it is not a known one, are in
/// `InodeTable::names`).
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The inode this name stands for; 0: none (a directory kept only as
    /// the parent of nodes below it, or a free slot).
    ino: u64,
    /// The kernel's lookups of `ino`; counted on its primary node only.
    lookups: u64,
    /// The slot of the directory holding this name.
    parent: u32,
    /// How many nodes have this one as their parent.
    children: u32,
    /// The name's offset in `InodeTable::names`, or (`KNOWN`) its index in
    /// [`KNOWN_NAMES`].
    name: u32,
    len: u16,
    flags: u8,
}

impl Node {
    const FREE: Node = Node {
        ino: 0,
        lookups: 0,
        parent: NO_PARENT,
        children: 0,
        name: 0,
        len: 0,
        flags: FREE,
    };

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The bytes of `n`'s name.
fn name_bytes<'a>(names: &'a Names, n: &Node) -> &'a [u8] {
    if n.has(KNOWN) {
        KNOWN_NAMES[n.name as usize].as_bytes()
    } else {
        names.get(n.name, n.len)
    }
}

fn name_hash(hasher: &RandomState, parent: u32, pending: bool, name: &[u8]) -> u64 {
    hasher.hash_one((parent, pending, name))
}

/// The `by_name` hash of the node in `slot`.
fn node_hash(nodes: &Chunked<Node>, names: &Names, hasher: &RandomState, slot: u32) -> u64 {
    let n = &nodes[slot as usize];
    name_hash(hasher, n.parent, n.has(PENDING), name_bytes(names, n))
}

/// Inode numbers are the daemon's own, never chosen by anyone else: a
/// mix of their bits spreads them well enough.
fn ino_hash(ino: u64) -> u64 {
    let mut x = ino.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Where `key` is in the tree: the fixed slot its path starts from,
/// whether its first name is a pending link's, and the names below.
fn steps(key: &NodeKey) -> (u32, bool, Vec<&OsStr>) {
    match key {
        NodeKey::Root => (ROOT_SLOT, false, Vec::new()),
        NodeKey::LastSession => (LAST_SLOT, false, Vec::new()),
        NodeKey::PendingLink(name) => (ROOT_SLOT, true, vec![name.as_os_str()]),
        NodeKey::Session(name) => (ROOT_SLOT, false, vec![name.as_os_str()]),
        NodeKey::Checkpoint(_) | NodeKey::Lock(_) | NodeKey::View(_) | NodeKey::Child(..) => {
            let mut names = Vec::with_capacity(4);
            if let Some((session, rel)) = key.in_session() {
                names.push(session);
                names.extend(rel.components().map(|c| c.as_os_str()));
            }
            (ROOT_SLOT, false, names)
        }
    }
}

/// A session directory or a place inside one: the keys a rename or a
/// detach acts on (the root, `last-session` and pending links are never
/// moved by them).
fn in_tree(key: &NodeKey) -> bool {
    matches!(key, NodeKey::Session(_)) || key.in_session().is_some()
}

pub(crate) struct InodeTable {
    /// The nodes, by slot; free slots are on `free`.
    nodes: Chunked<Node>,
    free: Vec<u32>,
    /// The bytes of every name that is not a known one.
    names: Names,
    /// Bytes of `names` no node uses any more (dropped at compaction).
    garbage: usize,
    /// The primary node of every inode, by inode number.
    by_ino: Index,
    /// Every attached node, by (parent, pending, name).
    by_name: Index,
    hasher: RandomState,
    /// For inodes with hard links: how many names other than the primary
    /// one stand for them.
    aliases: HashMap<u64, u32>,
    /// (device, inode) on disk of the inodes known to have hard links.
    identities: HashMap<u64, (u64, u64)>,
    /// Inodes of files with hard links, by their (device, inode) on disk.
    by_identity: HashMap<(u64, u64), u64>,
    next: u64,
}

impl std::fmt::Debug for InodeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InodeTable")
            .field("inodes", &self.by_ino.len())
            .field("nodes", &(self.nodes.len() - self.free.len()))
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut t = InodeTable {
            nodes: Chunked::default(),
            free: Vec::new(),
            names: Names::default(),
            garbage: 0,
            by_ino: Index::default(),
            by_name: Index::default(),
            hasher: RandomState::new(),
            aliases: HashMap::new(),
            identities: HashMap::new(),
            by_identity: HashMap::new(),
            next: FIRST_DYNAMIC,
        };
        for (slot, ino) in [(ROOT_SLOT, ROOT), (LAST_SLOT, LAST_SESSION)] {
            t.nodes.push(Node {
                ino,
                flags: 0,
                ..Node::FREE
            });
            let nodes = &t.nodes;
            t.by_ino
                .insert(ino_hash(ino), slot, |s| ino_hash(nodes[s as usize].ino));
        }
        t
    }
}

impl InodeTable {
    pub fn key(&self, ino: u64) -> Option<NodeKey> {
        self.primary(ino).map(|slot| self.key_of(slot))
    }

    /// The inode of `key`, allocating one if needed; counts a kernel lookup
    /// when `lookup` is set.
    pub fn intern(&mut self, key: NodeKey, lookup: bool) -> u64 {
        let slot = self.ensure_slot(&key);
        if self.node(slot).ino == 0 {
            self.give_ino(slot, 0);
        }
        let ino = self.node(slot).ino;
        if lookup && let Some(p) = self.primary(ino) {
            self.nodes[p as usize].lookups += 1;
        }
        ino
    }

    /// A new inode for `key`, even if it has one already (older inodes of
    /// the key keep standing for it until the kernel forgets them): a
    /// `session` gets one per committed version, and one of its own for a
    /// writer (see `CheckpointInodes`).
    pub fn intern_fresh(&mut self, key: NodeKey) -> u64 {
        let slot = self.ensure_slot(&key);
        let old = self.node(slot).ino;
        if old != 0 {
            if self.primary(old) == Some(slot) && self.node(slot).lookups == 0 {
                // An inode the kernel holds no lookup of (one a listing
                // numbered) would never be forgotten once its key moves
                // on: drop it.
                self.drop_inode(old);
            } else {
                // One it holds keeps the name, unattached (or goes on
                // under another name of it).
                self.detach_name(slot);
            }
        }
        let slot = self.ensure_slot(&key);
        let ino = self.give_ino(slot, 1);
        self.tidy();
        ino
    }

    /// The inode standing for the disk file `identity` (one with hard
    /// links) and its primary name, if the table has one.
    pub fn linked(&self, identity: (u64, u64)) -> Option<(u64, NodeKey)> {
        let ino = *self.by_identity.get(&identity)?;
        Some((ino, self.key(ino)?))
    }

    /// Records that `ino` stands for the disk file `identity`, which has
    /// hard links.
    pub fn set_identity(&mut self, ino: u64, identity: (u64, u64)) {
        if self.primary(ino).is_some() {
            if let Some(old) = self.identities.insert(ino, identity)
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
        if self.primary(ino).is_none() {
            return false;
        }
        let found = self.find_slot(&key);
        if found.is_none_or(|s| self.node(s).ino != ino) {
            if let Some(s) = found {
                self.detach_name(s);
            }
            let slot = self.ensure_slot(&key);
            let Some(p) = self.primary(ino) else {
                return false;
            };
            if self.key_of(p) == key {
                // Its primary name, found again (it was unattached): the
                // inode goes on from the attached node.
                let lookups = self.node(p).lookups;
                self.set_primary(p, slot);
                self.nodes[slot as usize].lookups = lookups;
                self.release(p);
            } else {
                self.nodes[slot as usize].ino = ino;
                *self.aliases.entry(ino).or_insert(0) += 1;
            }
        }
        if lookup && let Some(p) = self.primary(ino) {
            self.nodes[p as usize].lookups += 1;
        }
        self.tidy();
        true
    }

    /// The inode of `key` if it has one, without allocating.
    pub fn find(&self, key: &NodeKey) -> Option<u64> {
        let slot = self.find_slot(key)?;
        Some(self.node(slot).ino).filter(|&ino| ino != 0)
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT || ino == LAST_SESSION {
            return;
        }
        let Some(p) = self.primary(ino) else {
            return;
        };
        let node = &mut self.nodes[p as usize];
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            self.drop_inode(ino);
            self.tidy();
        }
    }

    /// After a rename of `from` to `to`: the inodes of `from` and of
    /// everything below it now stand for the same places under `to`; what
    /// `to` named before (overwritten) loses its key.
    pub fn rename(&mut self, from: &NodeKey, to: &NodeKey) {
        self.detach_below(to);
        if !in_tree(from) {
            return;
        }
        let Some(moved) = self.find_slot(from) else {
            return;
        };
        if !in_tree(to) {
            self.detach_below(from);
            self.tidy();
            return;
        }
        let (_, _, names) = steps(to);
        let Some((last, dirs)) = names.split_last() else {
            return;
        };
        let mut parent = ROOT_SLOT;
        for dir in dirs {
            parent = self.ensure_child(parent, false, dir.as_bytes());
        }
        if self.is_at_or_below(parent, moved) {
            // Into itself: the disk refuses that; nothing can stand there.
            self.release(parent);
            self.detach_below(from);
            self.tidy();
            return;
        }
        self.nodes[parent as usize].children += 1;
        let old_parent = self.node(moved).parent;
        self.unattach(moved);
        self.drop_name(moved);
        let (name, len, how) = self.store_name(last.as_bytes());
        let node = &mut self.nodes[moved as usize];
        node.parent = parent;
        node.name = name;
        node.len = len;
        node.flags = (node.flags & !(PENDING | KNOWN | SHARED)) | how;
        self.attach(moved);
        self.nodes[old_parent as usize].children -= 1;
        self.release(old_parent);
        self.tidy();
    }

    /// `key` (and anything below it) no longer exists under that name.
    pub fn detach(&mut self, key: &NodeKey) {
        self.detach_below(key);
        self.tidy();
    }

    /// The session directories the kernel holds a lookup of, by name.
    pub fn looked_up_sessions(&self) -> impl Iterator<Item = &OsStr> {
        self.nodes
            .iter()
            .filter(|n| {
                n.parent == ROOT_SLOT && n.ino != 0 && n.lookups > 0 && !n.has(PENDING | FREE)
            })
            .map(|n| OsStr::from_bytes(name_bytes(&self.names, n)))
    }

    /// How many inodes the table holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    /// About how many bytes of the heap the table holds.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        let map = |entries: usize, entry: usize| entries * (entry + 1) * 8 / 7;
        self.nodes.bytes()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + self.names.bytes()
            + self.by_ino.bytes()
            + self.by_name.bytes()
            + map(self.aliases.capacity(), 12)
            + map(self.identities.capacity(), 24)
            + map(self.by_identity.capacity(), 24)
    }

    fn node(&self, slot: u32) -> &Node {
        &self.nodes[slot as usize]
    }

    /// The primary node of `ino`.
    fn primary(&self, ino: u64) -> Option<u32> {
        self.by_ino
            .find(ino_hash(ino), |s| self.nodes[s as usize].ino == ino)
    }

    /// The key the node in `slot` stands for, from its names up to the
    /// root: whatever moved a directory above it moved it too.
    fn key_of(&self, slot: u32) -> NodeKey {
        match slot {
            ROOT_SLOT => return NodeKey::Root,
            LAST_SLOT => return NodeKey::LastSession,
            _ => {}
        }
        let name = |s: u32| OsStr::from_bytes(name_bytes(&self.names, self.node(s)));
        let mut below = Vec::new();
        let mut at = slot;
        while self.node(at).parent != ROOT_SLOT {
            below.push(name(at));
            at = self.node(at).parent;
        }
        let top = name(at).to_os_string();
        if below.is_empty() {
            return if self.node(at).has(PENDING) {
                NodeKey::PendingLink(top)
            } else {
                NodeKey::Session(top)
            };
        }
        let rel: PathBuf = below.iter().rev().collect();
        NodeKey::inside(top, rel)
    }

    /// The attached node named `name` in the directory node `parent`.
    fn child_slot(&self, parent: u32, pending: bool, name: &[u8]) -> Option<u32> {
        let hash = name_hash(&self.hasher, parent, pending, name);
        self.by_name.find(hash, |s| {
            let n = self.node(s);
            n.parent == parent && n.has(PENDING) == pending && name_bytes(&self.names, n) == name
        })
    }

    /// The attached node of `key`, if there is one.
    fn find_slot(&self, key: &NodeKey) -> Option<u32> {
        let (mut at, pending, names) = steps(key);
        for (i, name) in names.iter().enumerate() {
            at = self.child_slot(at, pending && i == 0, name.as_bytes())?;
        }
        Some(at)
    }

    /// The attached node of `key`, made (with the directories above it,
    /// which stand for no inode yet) if there is none.
    fn ensure_slot(&mut self, key: &NodeKey) -> u32 {
        let (mut at, pending, names) = steps(key);
        for (i, name) in names.iter().enumerate() {
            at = self.ensure_child(at, pending && i == 0, name.as_bytes());
        }
        at
    }

    fn ensure_child(&mut self, parent: u32, pending: bool, name: &[u8]) -> u32 {
        if let Some(slot) = self.child_slot(parent, pending, name) {
            return slot;
        }
        let (at, len, how) = self.store_name(name);
        let node = Node {
            ino: 0,
            lookups: 0,
            parent,
            children: 0,
            name: at,
            len,
            flags: how | if pending { PENDING } else { 0 },
        };
        let slot = self.new_slot(node);
        self.attach(slot);
        slot
    }

    /// Where a node's name `name` is kept: (offset or known index, length,
    /// `KNOWN`, `SHARED` or 0).
    fn store_name(&mut self, name: &[u8]) -> (u32, u16, u8) {
        if let Some(i) = KNOWN_NAMES.iter().position(|k| k.as_bytes() == name) {
            return (i as u32, 0, KNOWN);
        }
        // A name from the kernel is at most FUSE_NAME_MAX (1024) bytes,
        // from the disk no longer than a path.
        let len = u16::try_from(name.len()).expect("a file name longer than 64 KiB");
        let (at, shared) = self.names.push_shared(name);
        (at, len, if shared { SHARED } else { 0 })
    }

    /// The name of `slot` is no longer used. A shared name's bytes are
    /// counted by the node that stored them first, so garbage never counts
    /// more than was stored.
    fn drop_name(&mut self, slot: u32) {
        let n = self.node(slot);
        if !n.has(KNOWN) && !n.has(SHARED) {
            self.garbage += usize::from(n.len);
        }
    }

    /// Puts `node` in a slot (counting it as its parent's child).
    fn new_slot(&mut self, node: Node) -> u32 {
        if node.parent != NO_PARENT {
            self.nodes[node.parent as usize].children += 1;
        }
        if let Some(slot) = self.free.pop() {
            self.nodes[slot as usize] = node;
            return slot;
        }
        let slot = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&s| s != u32::MAX)
            .expect("more than 4 billion inode table nodes");
        self.nodes.push(node);
        slot
    }

    fn attach(&mut self, slot: u32) {
        let (nodes, names, hasher) = (&self.nodes, &self.names, &self.hasher);
        let hash = node_hash(nodes, names, hasher, slot);
        self.by_name
            .insert(hash, slot, |s| node_hash(nodes, names, hasher, s));
        self.nodes[slot as usize].flags |= ATTACHED;
    }

    /// `slot` can no longer be found by its name (it keeps it).
    fn unattach(&mut self, slot: u32) {
        if !self.node(slot).has(ATTACHED) {
            return;
        }
        let (nodes, names, hasher) = (&self.nodes, &self.names, &self.hasher);
        let hash = node_hash(nodes, names, hasher, slot);
        self.by_name
            .remove(hash, slot, |s| node_hash(nodes, names, hasher, s));
        self.nodes[slot as usize].flags &= !ATTACHED;
    }

    /// Gives the node in `slot` a new inode, with `lookups` counted.
    fn give_ino(&mut self, slot: u32, lookups: u64) -> u64 {
        let ino = self.next;
        self.next += 1;
        let node = &mut self.nodes[slot as usize];
        node.ino = ino;
        node.lookups = lookups;
        self.by_ino.insert(ino_hash(ino), slot, |s| {
            ino_hash(self.nodes[s as usize].ino)
        });
        ino
    }

    /// The inode of the primary node `from` goes on from `to` (which has
    /// no inode); `from` is left with none.
    fn set_primary(&mut self, from: u32, to: u32) {
        let ino = self.node(from).ino;
        let nodes = &self.nodes;
        self.by_ino
            .remove(ino_hash(ino), from, |s| ino_hash(nodes[s as usize].ino));
        let n = &mut self.nodes[from as usize];
        let lookups = std::mem::take(&mut n.lookups);
        n.ino = 0;
        let n = &mut self.nodes[to as usize];
        n.ino = ino;
        n.lookups = lookups;
        let nodes = &self.nodes;
        self.by_ino
            .insert(ino_hash(ino), to, |s| ino_hash(nodes[s as usize].ino));
    }

    /// The inode of the attached primary node `slot` keeps its name but
    /// goes on from an unattached copy of the node; `slot` stays as the
    /// place (with what is below it), with no inode.
    fn move_out(&mut self, slot: u32) {
        let mut copy = *self.node(slot);
        if !copy.has(KNOWN) {
            // The same bytes: a stored name never changes. They are the
            // node's in `slot` to count as garbage, not the copy's.
            copy.flags |= SHARED;
        }
        copy.ino = 0;
        copy.lookups = 0;
        copy.children = 0;
        copy.flags &= !ATTACHED;
        let to = self.new_slot(copy);
        self.set_primary(slot, to);
    }

    /// The one name in `slot` no longer stands for its inode (what is
    /// below it is untouched): an inode with other names goes on under one
    /// of them, one without keeps the name, unfindable.
    fn detach_name(&mut self, slot: u32) {
        let ino = self.node(slot).ino;
        if ino == 0 {
            return;
        }
        let Some(others) = self.aliases.get_mut(&ino) else {
            if self.node(slot).children == 0 {
                self.unattach(slot);
            } else {
                self.move_out(slot);
            }
            return;
        };
        *others -= 1;
        if *others == 0 {
            self.aliases.remove(&ino);
        }
        if self.primary(ino) == Some(slot) {
            let other = (0..self.nodes.len() as u32).find(|&s| {
                let n = self.node(s);
                s != slot && n.ino == ino && n.has(ATTACHED) && !n.has(FREE)
            });
            let Some(other) = other else {
                self.unattach(slot);
                return;
            };
            let lookups = self.node(slot).lookups;
            self.set_primary(slot, other);
            self.nodes[other as usize].lookups = lookups;
        } else {
            self.nodes[slot as usize].ino = 0;
        }
        self.release(slot);
    }

    /// The inode `ino` is gone, with every name of it.
    fn drop_inode(&mut self, ino: u64) {
        let Some(p) = self.primary(ino) else {
            return;
        };
        let nodes = &self.nodes;
        self.by_ino
            .remove(ino_hash(ino), p, |s| ino_hash(nodes[s as usize].ino));
        let mut names = vec![p];
        if self.aliases.remove(&ino).is_some() {
            names.extend((0..self.nodes.len() as u32).filter(|&s| {
                let n = self.node(s);
                s != p && n.ino == ino && !n.has(FREE)
            }));
        }
        if let Some(id) = self.identities.remove(&ino)
            && self.by_identity.get(&id) == Some(&ino)
        {
            self.by_identity.remove(&id);
        }
        for slot in names {
            let n = &mut self.nodes[slot as usize];
            n.ino = 0;
            n.lookups = 0;
            self.release(slot);
        }
    }

    /// Frees `slot` if nothing needs it (no inode, nothing below it), and
    /// so on up: a directory kept only for what was below it goes with the
    /// last of it.
    fn release(&mut self, mut slot: u32) {
        loop {
            let n = *self.node(slot);
            if slot == ROOT_SLOT || slot == LAST_SLOT || n.has(FREE) || n.ino != 0 || n.children > 0
            {
                return;
            }
            self.unattach(slot);
            self.drop_name(slot);
            self.nodes[slot as usize] = Node::FREE;
            self.free.push(slot);
            self.nodes[n.parent as usize].children -= 1;
            slot = n.parent;
        }
    }

    /// True when `slot` is `top` or a node below it.
    fn is_at_or_below(&self, mut slot: u32, top: u32) -> bool {
        loop {
            if slot == top {
                return true;
            }
            if slot == ROOT_SLOT || slot == NO_PARENT {
                return false;
            }
            slot = self.node(slot).parent;
        }
    }

    /// True when `slot` can be found under `top` (every node from it up
    /// to `top` is attached).
    fn findable_below(&self, mut slot: u32, top: u32) -> bool {
        loop {
            if slot == top {
                return true;
            }
            let n = self.node(slot);
            if slot == ROOT_SLOT || !n.has(ATTACHED) || n.has(FREE) {
                return false;
            }
            slot = n.parent;
        }
    }

    /// `detach` without the compaction (slots stay as they are).
    fn detach_below(&mut self, key: &NodeKey) {
        if !in_tree(key) {
            return;
        }
        let Some(top) = self.find_slot(key) else {
            return;
        };
        if !self.aliases.is_empty() {
            // Names of hard-linked files lose their inode one by one, so
            // that it goes on under a name left elsewhere.
            let linked: Vec<u32> = (0..self.nodes.len() as u32)
                .filter(|&s| {
                    let n = self.node(s);
                    n.ino != 0 && self.aliases.contains_key(&n.ino) && self.findable_below(s, top)
                })
                .collect();
            for slot in linked {
                let n = self.node(slot);
                if n.ino != 0 && n.has(ATTACHED) && !n.has(FREE) {
                    self.detach_name(slot);
                }
            }
        }
        if let Some(top) = self.find_slot(key) {
            self.unattach(top);
            self.release(top);
        }
    }

    /// Gives back the memory of freed slots and names once they are most
    /// of it: the live nodes move to the front (their slots change) and
    /// both indexes are rebuilt to their size. The copy is made while the
    /// old nodes are still there, so it waits until at most a quarter of
    /// them live (the kernel dropping its caches forgets most of a walk at
    /// once): the table's peak stays within a quarter of its largest size.
    fn tidy(&mut self) {
        // All forgotten (the two fixed nodes left): back to the start.
        let empty = !self.free.is_empty() && self.free.len() + 2 == self.nodes.len();
        let slack_nodes =
            empty || (self.free.len() > 1024 && self.free.len() * 4 > self.nodes.len() * 3);
        let slack_names = self.garbage > 64 * 1024 && self.garbage * 4 > self.names.len() * 3;
        if !(slack_nodes || slack_names) {
            return;
        }
        let mut slot_of = vec![NO_PARENT; self.nodes.len()];
        let mut nodes = Chunked::default();
        let mut names = Names::default();
        let mut primaries = Vec::with_capacity(self.by_ino.len());
        for (old, n) in self.nodes.iter().enumerate() {
            if n.has(FREE) {
                continue;
            }
            let slot = nodes.len() as u32;
            slot_of[old] = slot;
            if n.ino != 0 && self.primary(n.ino) == Some(old as u32) {
                primaries.push(slot);
            }
            let mut m = *n;
            if !m.has(KNOWN) {
                let (at, shared) = names.push_shared(name_bytes(&self.names, n));
                m.name = at;
                m.flags = if shared {
                    m.flags | SHARED
                } else {
                    m.flags & !SHARED
                };
            }
            nodes.push(m);
        }
        for n in nodes.iter_mut() {
            if n.parent != NO_PARENT {
                n.parent = slot_of[n.parent as usize];
            }
        }
        self.nodes = nodes;
        self.names = names;
        self.garbage = 0;
        self.free = Vec::new();
        // The old indexes go before the new ones are built.
        self.by_ino = Index::default();
        self.by_name = Index::default();
        let (nodes, names, hasher) = (&self.nodes, &self.names, &self.hasher);
        let mut by_ino = Index::with_room(primaries.len());
        for slot in primaries {
            let ino = nodes[slot as usize].ino;
            by_ino.insert(ino_hash(ino), slot, |s| ino_hash(nodes[s as usize].ino));
        }
        let attached: Vec<u32> = (0..nodes.len() as u32)
            .filter(|&s| nodes[s as usize].has(ATTACHED))
            .collect();
        let mut by_name = Index::with_room(attached.len());
        for slot in attached {
            let hash = node_hash(nodes, names, hasher, slot);
            by_name.insert(hash, slot, |s| node_hash(nodes, names, hasher, s));
        }
        self.by_ino = by_ino;
        self.by_name = by_name;
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
