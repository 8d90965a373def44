//! The inodes of `session` files and the opens of them: one inode per
//! committed version, which the kernel may keep (see `cache`), and the
//! choice each open makes on it (see [`CheckpointInodes`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::super::Stamp;

/// The inodes of `session` files: one inode per committed version, shared
/// by every reader of that version, so the kernel's page cache of it is
/// filled once and kept from open to open (`FOPEN_KEEP_CACHE`).
///
/// Invariants:
/// - every handle open on an inode reads or writes through that inode's
///   page cache: all the readers open on one inode read the one version
///   `stamp` names (a reader opening an inode others read takes the file
///   they read, see `checkpoint`), and a writer is alone on its inode: a
///   writer never opens an inode with another handle open on it, and no
///   reader opens, and no lookup hands out, an inode a writer has open
///   (`writers`); the open that would break this is refused with `ESTALE`
///   once, and the kernel's retry looks the name up again and gets an
///   inode of its own (`fresh_for`);
/// - the kernel's pages of an inode can hold its `stamp` version only,
///   and `pages` says whether they do: set by a reader's open (an open
///   without `FOPEN_KEEP_CACHE` drops the pages first), and by a writer's
///   release only when its last checkpoint was committed and is still the
///   committed file (its pages are exactly what it wrote); anything else (a
///   failed, discarded or aborted checkpoint) leaves `stamp` empty and
///   `pages` false, and the inode is never handed out again;
/// - a lookup hands out the name's newest inode when it stands for the
///   committed version found (`stamp`) and no writer has it open, else a
///   fresh inode (one of its own for a checkpoint about to be written, and
///   for a version committed outside the mount);
/// - the kernel may keep the entry of an inode that stands for a version
///   (see `cache`), so an open may reach an inode of an older version: it
///   is refused with `ESTALE` too, and so is a reader opening a file that
///   is not its inode's version; the kernel's retry (`Attempt`) is never
///   refused, since the kernel retries once only: where the first try was
///   refused, it is served `Unshared`.
#[derive(Debug, Default)]
pub(crate) struct CheckpointInodes {
    pub(super) by_ino: HashMap<u64, CheckpointInode>,
    pub(super) ino_of_fh: HashMap<u64, u64>,
    /// Processes (threads) whose open of an inode was refused with
    /// `ESTALE` (see the invariants): the inode refused, until their next
    /// open is answered otherwise (`answered`). Their lookups of a
    /// `session` meanwhile get a fresh inode; their next open is the
    /// kernel's retry (`Attempt`), which is never refused again.
    pub(super) fresh_for: HashMap<u32, u64>,
}

///
/// One is kept for every `session` inode the kernel holds (a walk of the
/// mount holds one per session), so it is small: a digest of the version
/// (see [`Version`]), and the list of handles boxed, as most inodes have
/// none open.
#[derive(Debug, Default)]
pub(super) struct CheckpointInode {
    /// The committed version the inode stands for: found by its lookup,
    /// read by the readers open on it, or committed by its writer (`None`:
    /// none; the inode is never handed out again).
    pub(super) stamp: Option<Version>,
    /// The handles open on the inode, oldest first.
    handles: OpenHandles,
    /// How many of them write (or are being opened to write).
    writers: u32,
    /// Whether the kernel's pages of the inode hold exactly `stamp` (the
    /// only version they can hold, see the invariants).
    pages: bool,
    /// The process refused an open (`fresh_for`) that this fresh inode was
    /// looked up for: no other process's lookup gets it until that process
    /// opened it (0: none).
    pub(super) reserved_for: u32,
}

impl CheckpointInode {
    /// The state of an inode a lookup just made for the version `stamp`,
    /// reserved for the refused process `reserved_for` (0: nobody).
    pub(super) fn fresh(stamp: Version, reserved_for: u32) -> CheckpointInode {
        CheckpointInode {
            stamp: Some(stamp),
            reserved_for,
            ..CheckpointInode::default()
        }
    }

    /// The version the kernel's pages of the inode hold, if known.
    fn cached(&self) -> Option<Version> {
        self.stamp.filter(|_| self.pages)
    }
}

/// A version of a `session` file as its inode keeps it: a 64-bit digest
/// (SipHash) of its [`Stamp`], a quarter of the stamp's size. Two
/// different versions of one file share a digest with a chance of one in
/// 2^64, far below that of the disk returning a wrong block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version(u64);

impl Version {
    /// No checkpoint: the session has no `session` file yet (it shows an
    /// empty one, whose stat has inode number 0, see `resolve`).
    pub const ABSENT: Version = Version(0);

    pub fn of(stamp: &Stamp) -> Version {
        if stamp.ino == 0 {
            return Version::ABSENT;
        }
        // Fixed keys: the digest of one stamp is the same for the whole
        // life of the daemon, and stamps are not chosen by an adversary.
        let mut h = std::hash::DefaultHasher::new();
        stamp.hash(&mut h);
        // 0 is ABSENT's.
        Version(h.finish().max(1))
    }
}

/// The handles open on one `session` inode, oldest first: boxed, so an
/// inode with none costs one pointer.
#[derive(Debug, Default)]
// The box is the point: one pointer in every inode's state where a `Vec`
// is three, for the price of a second allocation while handles are open.
#[allow(clippy::box_collection)]
struct OpenHandles(Option<Box<Vec<u64>>>);

impl OpenHandles {
    fn push(&mut self, fh: u64) {
        self.0.get_or_insert_with(Box::default).push(fh);
    }

    fn remove(&mut self, fh: u64) {
        if let Some(h) = &mut self.0 {
            h.retain(|&x| x != fh);
            if h.is_empty() {
                self.0 = None;
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn to_vec(&self) -> Vec<u64> {
        self.0.as_deref().cloned().unwrap_or_default()
    }
}

/// Which try of an open of a `session` inode this is (see `fresh_for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// No refusal of the process is pending.
    First,
    /// The kernel's retry after a refusal, on the inode its fresh lookup
    /// got.
    Retry,
    /// The refused inode again, reopened without a lookup.
    Again,
}

impl Attempt {
    /// A retry of any kind: the kernel will not retry it again, so it is
    /// never refused, but served apart (`Unshared`) where the first try
    /// was refused: a commit, however frequent, never fails an open, nor
    /// does another process that reached the retry's inode first (through
    /// the entry the kernel keeps, see `settled`).
    fn is_retry(self) -> bool {
        self != Attempt::First
    }
}

/// How an open of a `session` inode may go on (see [`CheckpointInodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenChoice {
    /// A reader alone on the inode: it opens the committed file; `cached`
    /// is the version the kernel's pages hold.
    Alone { cached: Option<Version> },
    /// A reader joining the readers open on the inode: it reads the file
    /// of one of them (`handles`), the version `stamp`.
    Join { stamp: Version, handles: Vec<u64> },
    /// The open must be refused with `ESTALE` (the kernel looks the name
    /// up again and retries).
    Stale,
    /// A reopen of an inode refused once already, made without a lookup:
    /// served without sharing its page cache with anything (the inode is
    /// never handed out again).
    Unshared,
}

impl CheckpointInodes {
    /// Forgets `ino` (which the table no longer has) unless a handle is
    /// open on it or a writer is opening it.
    pub(super) fn drop_unused(&mut self, ino: u64) {
        if self
            .by_ino
            .get(&ino)
            .is_some_and(|c| c.handles.is_empty() && c.writers == 0)
        {
            self.by_ino.remove(&ino);
        }
    }

    /// Whether `ino` is a `session` inode handed out by a lookup (its
    /// attributes are those of the version it stands for, see `cache`).
    pub fn is_versioned(&self, ino: u64) -> bool {
        self.by_ino.contains_key(&ino)
    }

    /// Whether a lookup by `pid` finding the committed version `stamp` may
    /// hand out `ino`.
    pub(super) fn shareable(&self, ino: u64, stamp: &Stamp, pid: u32) -> bool {
        self.by_ino.get(&ino).is_some_and(|c| {
            c.writers == 0
                && c.stamp == Some(Version::of(stamp))
                && (c.reserved_for == 0 || c.reserved_for == pid)
        })
    }

    /// Which try an open of `ino` by `pid` is (a refusal of `pid` stands
    /// until the open is answered otherwise, see
    /// [`CheckpointInodes::answered`]).
    fn opening(&self, ino: u64, pid: u32) -> Attempt {
        if pid == 0 {
            return Attempt::First;
        }
        match self.fresh_for.get(&pid) {
            Some(&refused) if refused == ino => Attempt::Again,
            Some(_) => Attempt::Retry,
            None => Attempt::First,
        }
    }

    /// An open by `pid` was answered, with anything but a refusal that
    /// sends it to a fresh lookup: a refusal of it before is over.
    pub fn answered(&mut self, pid: u32) {
        self.fresh_for.remove(&pid);
    }

    /// An open that could not be registered for its version after several
    /// tries (other opens kept getting in): refused like a conflicting
    /// open.
    pub fn open_contended(&mut self, ino: u64, pid: u32) -> OpenChoice {
        self.refuse(ino, pid, false)
    }

    pub fn opened(&mut self, ino: u64, fh: u64) {
        self.by_ino.entry(ino).or_default().handles.push(fh);
        self.ino_of_fh.insert(fh, ino);
    }

    /// The handles open on `ino`, oldest first.
    pub fn handles(&self, ino: u64) -> Vec<u64> {
        self.by_ino
            .get(&ino)
            .map(|c| c.handles.to_vec())
            .unwrap_or_default()
    }

    /// `pid` is refused an open of `ino` (`ESTALE`): its next lookup gets
    /// a fresh inode.
    fn refuse(&mut self, ino: u64, pid: u32, again: bool) -> OpenChoice {
        if pid == 0 || again {
            if let Some(c) = self.by_ino.get_mut(&ino) {
                c.stamp = None;
                c.pages = false;
            }
            return OpenChoice::Unshared;
        }
        // Bounded: an entry whose retry never came is dropped with the rest.
        if self.fresh_for.len() >= 1024 {
            self.fresh_for.clear();
        }
        self.fresh_for.insert(pid, ino);
        OpenChoice::Stale
    }

    /// Whether `ino` stands for the committed version `current`: the
    /// kernel may have kept its entry and attributes since its lookup (see
    /// `cache`), and an inode standing for an older version (or none) must
    /// never be read as, nor sized like, the newer one.
    pub fn stands_for(&self, ino: u64, current: Version) -> bool {
        self.by_ino
            .get(&ino)
            .is_some_and(|c| c.stamp == Some(current))
    }

    /// Whether the kernel may keep the attributes of `ino` (and its
    /// entry): it stands for a committed version, which never changes, no
    /// writer has it open, and it is nobody's reserve (an entry the kernel
    /// kept would hand a refused process's fresh inode to every other
    /// process walking the path, bypassing the lookups that keep it its
    /// own).
    pub fn settled(&self, ino: u64) -> bool {
        self.by_ino
            .get(&ino)
            .is_some_and(|c| c.stamp.is_some() && c.writers == 0 && c.reserved_for == 0)
    }

    /// How an open for reading of `ino` by `pid` goes on, the committed
    /// version being `current`.
    pub fn open_reader(&mut self, ino: u64, pid: u32, current: Version) -> OpenChoice {
        let attempt = self.opening(ino, pid);
        let c = self.by_ino.entry(ino).or_default();
        if c.writers > 0 || c.stamp != Some(current) {
            return self.refuse(ino, pid, attempt.is_retry());
        }
        if c.handles.is_empty() {
            OpenChoice::Alone { cached: c.cached() }
        } else {
            OpenChoice::Join {
                stamp: current,
                handles: c.handles.to_vec(),
            }
        }
    }

    /// A reader opened `ino` as handle `fh` as `how` said, reading the
    /// version `stamp`. Returns whether the kernel's pages already hold
    /// that version (`FOPEN_KEEP_CACHE`), or `None` when another open or a
    /// commit got in meanwhile and the reader must choose again.
    pub fn reader_opened(
        &mut self,
        ino: u64,
        fh: u64,
        stamp: Version,
        how: &OpenChoice,
    ) -> Option<bool> {
        let c = self.by_ino.entry(ino).or_default();
        let keep = match how {
            // The file opened is the inode's version, and readers open
            // meanwhile read it too.
            OpenChoice::Alone { .. } | OpenChoice::Join { .. }
                if c.writers > 0 || c.stamp != Some(stamp) =>
            {
                return None;
            }
            OpenChoice::Alone { .. } | OpenChoice::Join { .. } => {
                // Registered: the inode is nobody's reserve any more.
                c.reserved_for = 0;
                let keep = c.cached() == Some(stamp);
                // Without KEEP_CACHE the kernel drops the pages at this
                // open; from now on they are filled from this version only.
                c.pages = true;
                keep
            }
            OpenChoice::Stale | OpenChoice::Unshared => {
                c.stamp = None;
                c.pages = false;
                false
            }
        };
        self.opened(ino, fh);
        Some(keep)
    }

    /// How an open for writing of `ino` by `pid` goes on, starting from
    /// the committed version `from` (`None`: `O_TRUNC`, the kernel empties
    /// the inode and nothing of any version is read through it); on
    /// `Alone` and `Unshared` the writer is counted (see
    /// [`CheckpointInodes::writer_failed`]).
    pub fn open_writer(&mut self, ino: u64, pid: u32, from: Option<Version>) -> OpenChoice {
        let attempt = self.opening(ino, pid);
        let c = self.by_ino.entry(ino).or_default();
        let conflict = c.writers > 0 || !c.handles.is_empty();
        let outdated = from.is_some_and(|v| c.stamp != Some(v));
        if conflict || outdated {
            return match self.refuse(ino, pid, attempt.is_retry()) {
                OpenChoice::Unshared => {
                    if let Some(c) = self.by_ino.get_mut(&ino) {
                        c.writers += 1;
                    }
                    OpenChoice::Unshared
                }
                other => other,
            };
        }
        // What it writes goes through the pages; until it is released (see
        // `closed`) no lookup hands the inode out and no reader opens it.
        c.writers += 1;
        c.reserved_for = 0;
        OpenChoice::Alone { cached: c.cached() }
    }

    /// A writer counted by `open_writer` failed to open: the kernel did
    /// not open the inode (nor truncated its pages), which stands for what
    /// it stood for.
    pub fn writer_failed(&mut self, ino: u64) {
        if let Some(c) = self.by_ino.get_mut(&ino) {
            c.writers = c.writers.saturating_sub(1);
        }
    }

    /// `ino` no longer stands for any version: it is never handed out nor
    /// shared again. A writer counted by `open_writer` that found, under
    /// the lock, a checkpoint committed since it chose goes on as
    /// `Unshared`; an inode shown as a newer version than its own (see
    /// `attr`) is retired.
    pub fn unshare(&mut self, ino: u64) {
        if let Some(c) = self.by_ino.get_mut(&ino) {
            c.stamp = None;
            c.pages = false;
        }
    }

    /// The attributes of `ino`'s file were changed through the mount
    /// (`chmod`, `touch`, `truncate`), which makes it another version,
    /// `current`: with nothing open on it, the inode stands for that one
    /// (the kernel takes the reply's attributes as the inode's); its pages
    /// are not known to hold it.
    pub fn changed_to(&mut self, ino: u64, current: Version) {
        if let Some(c) = self.by_ino.get_mut(&ino)
            && c.handles.is_empty()
            && c.writers == 0
        {
            c.stamp = Some(current);
            c.pages = false;
        }
    }

    /// The handle is gone; returns its inode when nothing else has it open.
    /// `writer`: the handle wrote; with the checkpoint it committed last,
    /// when that is what it ended with, and whether the kernel's pages hold
    /// exactly that version.
    pub(super) fn closed(&mut self, fh: u64, writer: Option<Option<(Stamp, bool)>>) -> Option<u64> {
        let ino = self.ino_of_fh.remove(&fh)?;
        let c = self.by_ino.get_mut(&ino)?;
        c.handles.remove(fh);
        if let Some(committed) = writer {
            c.writers = c.writers.saturating_sub(1);
            match committed {
                // Alone on its inode to the end: lookups finding what it
                // committed may hand the inode out, with its pages when
                // they are that version.
                Some((stamp, pages)) if c.writers == 0 && c.handles.is_empty() => {
                    c.stamp = Some(Version::of(&stamp));
                    c.pages = pages;
                }
                _ => {
                    c.stamp = None;
                    c.pages = false;
                }
            }
        }
        c.handles.is_empty().then_some(ino)
    }
}
