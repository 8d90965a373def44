//! The directories the daemon watches with inotify, and what the kernel
//! must forget when one of them changes outside the mount.
//!
//! The kernel may cache an entry and its attributes for long only where
//! the daemon is told of every change to it: a name inside a watched
//! directory (the watch reports its creation, removal, renaming, writes and
//! attribute changes), and a directory's listing and attributes when the
//! directory itself is watched too (see `cache`). Everything else keeps the
//! short cache times that need no watch.
//!
//! Invariants:
//! - a directory inside a session is watched before the reply that hands
//!   the kernel its inode (a lookup, a listing with attributes, a
//!   `mkdir`); a session directory before the reply to its own LOOKUP or
//!   to the first request about anything in it (until then its entry is
//!   cached briefly), so a listing of the root watches nothing; either way no change can fall between the kernel
//!   caching something and the watch seeing it;
//! - the map from watch to inode is changed only under the watches' mutex,
//!   which is held across `inotify_add_watch`, so an event is never read for
//!   a watch the map does not know yet;
//! - a watch lives as long as the inode it stands for: it is removed when
//!   the kernel forgets the inode, or when the directory is gone
//!   (`IN_IGNORED`);
//! - when the limit is reached (`fs.inotify.max_user_watches`, or the
//!   mount's own `max_watches`) or a watch cannot be added, the directory is
//!   simply not watched, and the reason is logged once per kind;
//! - a lost event (the queue overflowed) makes the kernel forget everything
//!   it caches of the sessions (the entry of a session directory takes all
//!   below it along), so freshness is never lost for good;
//! - a change made through the mount is one the kernel made itself and
//!   knows of: its names are marked before the change and their events
//!   drop nothing the kernel holds (or it would forget, and renumber, the
//!   very inode it was just given); so is a writer's commit of `session`
//!   (see `own_commits`), whose inode then stands for it with the pages it
//!   wrote; any other change of `session` drops its entry;
//! - what the kernel is told to forget never waits on a request: a
//!   directory's listing pages and any inode's attributes, and the entry of
//!   a name only when the kernel may cache it (that takes the directory's
//!   lock); never a file's pages, whose lock a read holds while it waits
//!   for the daemon.
//!
//! Lock order: the watches' mutex is a leaf, taken after the nodes' (see
//! `fs`), never held while the nodes are taken.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::inode::{NodeKey, ROOT, never_shown_in_session};
use super::{FsResult, Invalidation, SessionFs, lock};
use crate::core::{SessionName, sys};

/// What a watch of a directory reports.
const DIR_EVENTS: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_EXCL_UNLINK
    | libc::IN_ONLYDIR;

/// A name was added to or removed from the directory.
const ENTRY_EVENTS: u32 =
    libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;

#[derive(Debug)]
pub(super) struct Watches {
    inotify: OwnedFd,
    /// At most this many directories are watched.
    limit: usize,
    state: Mutex<State>,
}

/// How long a mark of the mount's own change waits for its event: past
/// it, the event is taken as lost, so a later change of the same name made
/// outside is not mistaken for the mount's own.
const OWN_CHANGE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct State {
    /// Names the mount itself is adding, removing or renaming: (directory
    /// inode, name) → how many events of it are due, and since when.
    own: HashMap<(u64, OsString), (u32, Instant)>,
    /// Watch descriptor → the inode of the directory it watches.
    by_wd: HashMap<i32, u64>,
    /// Inode → its watch descriptor.
    wd_of: HashMap<u64, i32>,
    /// Whether running out of watches was logged already.
    full_logged: bool,
}

impl Watches {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// What a batch of events calls for, each invalidation once.
#[derive(Default)]
struct Batch {
    seen: HashSet<Invalidation>,
    out: Vec<Invalidation>,
}

impl Batch {
    fn push(&mut self, inv: Invalidation) {
        if self.seen.insert(inv.clone()) {
            self.out.push(inv);
        }
    }
}

impl SessionFs {
    /// Starts watching the repository (the root) with inotify; directories
    /// the kernel is handed from now on are watched too, up to `limit` of
    /// them in all (`None`: as many as the system allows). Read the events
    /// from [`SessionFs::watch_descriptor`] and give them to
    /// [`SessionFs::changes`].
    pub fn start_watching(&self, limit: Option<usize>) -> io::Result<()> {
        let inotify = sys::inotify_init()?;
        let root = sys::inotify_watch_dir(
            inotify.as_fd(),
            self.repo_fd(),
            ENTRY_EVENTS | libc::IN_ATTRIB | libc::IN_ONLYDIR,
        )?;
        let mut state = State::default();
        state.by_wd.insert(root, ROOT);
        state.wd_of.insert(ROOT, root);
        let watches = Watches {
            inotify,
            limit: limit.unwrap_or(usize::MAX).max(1),
            state: Mutex::new(state),
        };
        self.watches
            .set(watches)
            .map_err(|_| io::Error::new(io::ErrorKind::AlreadyExists, "already watching"))
    }

    /// The inotify descriptor to read events from, once watching.
    pub fn watch_descriptor(&self) -> Option<BorrowedFd<'_>> {
        self.watches.get().map(|w| w.inotify.as_fd())
    }

    /// How many directories are watched (the root included).
    pub fn watched_count(&self) -> usize {
        self.watches.get().map_or(0, |w| w.state().by_wd.len())
    }

    /// Whether changes to the directory `ino` are reported to the daemon.
    pub(super) fn is_watched(&self, ino: u64) -> bool {
        self.watches
            .get()
            .is_some_and(|w| w.state().wd_of.contains_key(&ino))
    }

    /// Watches the directory `key` (inode `ino`), open as `dir` when the
    /// caller has it open already. Best effort: a directory that cannot be
    /// watched is cached briefly instead.
    pub(super) fn watch_dir(&self, ino: u64, key: &NodeKey, dir: Option<BorrowedFd<'_>>) {
        let Some(w) = self.watches.get() else {
            return;
        };
        let opened;
        let dir = match dir {
            Some(d) => d,
            None => match self.open_dir_key(key) {
                Ok(d) => {
                    opened = d;
                    opened.as_fd()
                }
                Err(_) => return,
            },
        };
        let mut state = w.state();
        if !state.wd_of.contains_key(&ino) && state.by_wd.len() >= w.limit {
            if !state.full_logged {
                state.full_logged = true;
                log::info!(
                    "watching {} directories (max_watches): the others are cached by the kernel only briefly",
                    w.limit
                );
            }
            return;
        }
        match sys::inotify_watch_dir(w.inotify.as_fd(), dir, DIR_EVENTS) {
            Ok(wd) => {
                // The same directory (one disk inode) gives the same watch.
                if let Some(old) = state.wd_of.insert(ino, wd)
                    && old != wd
                    && state.by_wd.get(&old) == Some(&ino)
                {
                    state.by_wd.remove(&old);
                    let _ = sys::inotify_unwatch(w.inotify.as_fd(), old);
                }
                state.by_wd.insert(wd, ino);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if !state.full_logged {
                    state.full_logged = true;
                    let max = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| "?".into());
                    log::warn!(
                        "the inotify watch limit is reached after {} directories (fs.inotify.max_user_watches = {max}): the others are cached by the kernel only briefly (raise the limit for faster walks)",
                        state.by_wd.len()
                    );
                }
            }
            Err(e) => log::debug!(
                "{}: not watched ({e}): cached by the kernel only briefly",
                self.path_of(key).display()
            ),
        }
    }

    /// Runs `change`, a change of the names `names` ((directory inode, name)
    /// pairs) that the kernel asked for, so that their events are known as
    /// the mount's own.
    pub(super) fn own_change<T>(
        &self,
        names: &[(u64, &OsStr)],
        change: impl FnOnce() -> FsResult<T>,
    ) -> FsResult<T> {
        let Some(w) = self.watches.get() else {
            return change();
        };
        {
            let mut state = w.state();
            let now = Instant::now();
            if state.own.len() > 1024 {
                state
                    .own
                    .retain(|_, (_, since)| now.duration_since(*since) < OWN_CHANGE_WAIT);
            }
            for &(dir, name) in names {
                let mark = state
                    .own
                    .entry((dir, name.to_os_string()))
                    .or_insert((0, now));
                *mark = (mark.0 + 1, now);
            }
        }
        let result = change();
        if result.is_err() {
            // Nothing happened (or nothing the kernel was told of): no
            // event to wait for.
            let mut state = w.state();
            for &(dir, name) in names {
                let key = (dir, name.to_os_string());
                if let Some(mark) = state.own.get_mut(&key) {
                    mark.0 -= 1;
                    if mark.0 == 0 {
                        state.own.remove(&key);
                    }
                }
            }
        }
        result
    }

    /// Whether an event of `name` in `dir` is the mount's own change (and
    /// counts it as seen).
    fn was_own_change(&self, dir: u64, name: &OsStr) -> bool {
        let Some(w) = self.watches.get() else {
            return false;
        };
        let mut state = w.state();
        let key = (dir, name.to_os_string());
        let Some(mark) = state.own.get_mut(&key) else {
            return false;
        };
        let fresh = mark.1.elapsed() < OWN_CHANGE_WAIT;
        mark.0 -= 1;
        if mark.0 == 0 || !fresh {
            state.own.remove(&key);
        }
        fresh
    }

    /// Something inside the directory `dir` (a session directory or one
    /// inside it) is asked for: it is watched from now on, if it can be.
    pub(super) fn entering(&self, dir: u64, key: &NodeKey) {
        if matches!(key, NodeKey::Session(_) | NodeKey::Child(..)) && !self.is_watched(dir) {
            self.watch_dir(dir, key, None);
        }
    }

    /// The kernel forgot the inode `ino`: its watch, if any, goes.
    pub(super) fn unwatch(&self, ino: u64) {
        let Some(w) = self.watches.get() else {
            return;
        };
        let mut state = w.state();
        // The same directory may stand for a newer inode by now (looked up
        // again under its name): its watch is that inode's then.
        if let Some(wd) = state.wd_of.remove(&ino)
            && state.by_wd.get(&wd) == Some(&ino)
        {
            state.by_wd.remove(&wd);
            let _ = sys::inotify_unwatch(w.inotify.as_fd(), wd);
        }
    }

    /// What the kernel must forget after the events read from the watch
    /// descriptor into `buf`.
    pub fn changes(&self, buf: &[u8]) -> Vec<Invalidation> {
        let mut batch = Batch::default();
        for ev in sys::inotify_events(buf) {
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                log::info!(
                    "the watch lost events (its queue overflowed): dropping what the kernel caches of every watched directory"
                );
                self.everything_watched(&mut batch);
                continue;
            }
            let Some(w) = self.watches.get() else {
                break;
            };
            let dir = {
                let mut state = w.state();
                let Some(&dir) = state.by_wd.get(&ev.wd) else {
                    continue;
                };
                if ev.mask & libc::IN_IGNORED != 0 {
                    // The directory is gone (or its watch was removed).
                    state.by_wd.remove(&ev.wd);
                    if state.wd_of.get(&dir) == Some(&ev.wd) {
                        state.wd_of.remove(&dir);
                    }
                    continue;
                }
                dir
            };
            self.change_in(dir, ev.mask, ev.name, &mut batch);
        }
        batch.out
    }

    /// Whether the attributes of `ino` never change, so that dropping them
    /// would do nothing but harm: a `session` inode a lookup handed out
    /// stands for one committed version (a change of `session` drops its
    /// entry instead, see `change_in`, and an open of the inode, older now,
    /// is refused with `ESTALE`).
    /// Dropping an inode's attributes makes the kernel discard those of a
    /// GETATTR or LOOKUP of it then in flight: a reader that opened the
    /// inode just as a newer checkpoint was committed outside kept the old
    /// size then (tests/concurrency_writers.rs caught it when the inode
    /// could still show the newer version).
    fn attributes_never_kept(&self, ino: u64) -> bool {
        self.nodes().checkpoints.is_versioned(ino)
    }

    /// One event on the watched directory `dir`.
    fn change_in(&self, dir: u64, mask: u32, name: &OsStr, batch: &mut Batch) {
        if name.is_empty() {
            if mask & libc::IN_ATTRIB != 0 {
                batch.push(Invalidation::Attributes(dir));
            }
            return;
        }
        let Some(dkey) = self.nodes().table.key(dir) else {
            return;
        };
        let shown = match &dkey {
            NodeKey::Root => {
                SessionName::new(name).is_ok() || name == crate::core::LAST_SESSION_LINK
            }
            NodeKey::Session(_) => !never_shown_in_session(name),
            _ => true,
        };
        if !shown {
            return;
        }
        let child_key = dkey.child(name);
        let child = child_key.as_ref().and_then(|k| self.nodes().table.find(k));
        if mask & ENTRY_EVENTS != 0 {
            // Only a name the kernel may hold is dropped (it never holds a
            // name that is not there, nor keeps the views): dropping one
            // takes the directory's lock, which a request the daemon is
            // serving may hold.
            // (A commit's record is asked about, with a stat, only when the
            // kernel holds an inode of the name to keep or drop.)
            let own = self.was_own_change(dir, name)
                || child.is_some()
                    && mask & libc::IN_MOVED_TO != 0
                    && self.was_own_commit(child_key.as_ref());
            if let (Some(ino), Some(key), false) = (child, &child_key, own) {
                if self.entry_is_cached(key) {
                    batch.push(Invalidation::Entry {
                        parent: dir,
                        name: name.to_os_string(),
                    });
                } else if !self.attributes_never_kept(ino) {
                    // Never cached under this name, but it may hold an
                    // inode renamed there, whose attributes are stale now.
                    batch.push(Invalidation::Attributes(ino));
                }
            }
            // The directory's listing and attributes.
            batch.push(Invalidation::Contents(dir));
            return;
        }
        // A file's attributes only, never its pages: a read holds a page's
        // lock while it waits for the daemon's reply, so dropping pages
        // could wait on a request (forever, were the daemon killed then).
        // No file's pages are kept across opens but a committed
        // checkpoint's, and a committed version never changes.
        if mask & (libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_CLOSE_WRITE) != 0
            && let Some(ino) = child
        {
            if !self.attributes_never_kept(ino) {
                batch.push(Invalidation::Attributes(ino));
            } else if mask & (libc::IN_ATTRIB | libc::IN_MODIFY) != 0 {
                // The committed file changed in place (`chmod`, `touch`,
                // `>>` or `truncate` on it in the repository, or writes
                // through a passthrough descriptor still open): another
                // version, with another inode. Not at IN_CLOSE_WRITE
                // alone: a writer of this mount closes its file once it is
                // renamed over `session`, unchanged since its commit.
                batch.push(Invalidation::Entry {
                    parent: dir,
                    name: name.to_os_string(),
                });
            }
        }
        // A record that now decodes gets its `.record.txt` view.
        if mask & libc::IN_CLOSE_WRITE != 0
            && dir != ROOT
            && super::iolog_view::view_name(name).is_some()
        {
            batch.push(Invalidation::Contents(dir));
        }
    }

    /// Whether `key`, when it is a `session`, was just replaced by a
    /// commit of this mount's writer (see `own_commits`): the kernel's
    /// inode of it stands for that commit, with the pages the writer
    /// wrote, which dropping the entry would throw away.
    fn was_own_commit(&self, key: Option<&NodeKey>) -> bool {
        let Some(NodeKey::Checkpoint(s)) = key else {
            return false;
        };
        let mut path = s.clone();
        path.push("/");
        path.push(crate::core::SESSION_FILE);
        match sys::lstatat(self.repo_fd(), &path) {
            Ok(st) => self.own_commits.was_own(s, &st),
            Err(_) => false,
        }
    }

    /// After lost events: the entry of every session directory the kernel
    /// holds, which drops all it caches below it too, and the root's
    /// attributes.
    fn everything_watched(&self, batch: &mut Batch) {
        let sessions: Vec<OsString> = self
            .nodes()
            .table
            .looked_up_sessions()
            .map(OsStr::to_os_string)
            .collect();
        for name in sessions {
            batch.push(Invalidation::Entry { parent: ROOT, name });
        }
        batch.push(Invalidation::Contents(ROOT));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_fixture::fs_with_sessions;
    use super::*;

    /// Looks something up in `dir`, as the kernel does before it caches
    /// anything inside it.
    fn enter(fs: &SessionFs, dir: u64) {
        let _ = fs.lookup_by(dir, OsStr::new("nothing-here"), 0);
    }

    /// The invalidations of the events queued so far (inotify queues them
    /// as the change is made, so they are there once it returns).
    fn pending(fs: &SessionFs) -> Vec<Invalidation> {
        let mut buf = vec![0u8; 64 * 1024];
        let fd = fs.watch_descriptor().unwrap();
        let n = sys::read_some(fd, &mut buf).unwrap();
        fs.changes(&buf[..n])
    }

    #[test]
    fn changes_outside_become_what_the_kernel_must_forget() {
        let (dir, fs) = fs_with_sessions(&["a.session"]);
        let s = dir.path().join("a.session");
        std::fs::create_dir(s.join("io-logs")).unwrap();
        std::fs::write(s.join("io-logs/job.log"), b"x").unwrap();
        fs.start_watching(None).unwrap();
        let session = fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        let logs = fs.lookup_by(session.ino, OsStr::new("io-logs"), 0).unwrap();
        let job = fs.lookup_by(logs.ino, OsStr::new("job.log"), 0).unwrap();
        assert_eq!(fs.watched_count(), 3, "the root, the session, io-logs");

        std::fs::write(s.join("io-logs/new.log"), b"y").unwrap();
        let got = pending(&fs);
        assert_eq!(
            got,
            vec![Invalidation::Contents(logs.ino)],
            "a new name: only the listing (the kernel holds no entry of it)"
        );
        std::fs::rename(s.join("io-logs/new.log"), s.join("io-logs/job.log")).unwrap();
        let got = pending(&fs);
        assert!(
            got.contains(&Invalidation::Entry {
                parent: logs.ino,
                name: "job.log".into()
            }),
            "a name the kernel holds, replaced: {got:?}"
        );
        assert!(got.contains(&Invalidation::Contents(logs.ino)), "{got:?}");

        std::fs::OpenOptions::new()
            .append(true)
            .open(s.join("io-logs/job.log"))
            .unwrap();
        std::fs::write(s.join("io-logs/job.log"), b"longer").unwrap();
        let got = pending(&fs);
        assert!(got.contains(&Invalidation::Attributes(job.ino)), "{got:?}");
        assert!(
            !got.contains(&Invalidation::Contents(job.ino)),
            "a file's pages are never dropped: {got:?}"
        );

        std::fs::remove_dir_all(&s).unwrap();
        let got = pending(&fs);
        assert!(
            got.contains(&Invalidation::Entry {
                parent: ROOT,
                name: "a.session".into()
            }),
            "{got:?}"
        );
        assert!(got.contains(&Invalidation::Contents(ROOT)), "{got:?}");
        assert_eq!(fs.watched_count(), 1, "the gone directories' watches went");
    }

    #[test]
    fn a_checkpoint_writers_temporaries_are_not_news() {
        let (dir, fs) = fs_with_sessions(&["a.session"]);
        fs.start_watching(None).unwrap();
        let session = fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        enter(&fs, session.ino);
        let tmp = dir.path().join("a.session/.session.tmp-host-1-2-3");
        std::fs::write(&tmp, b"data").unwrap();
        std::fs::rename(&tmp, dir.path().join("a.session/session")).unwrap();
        let got = pending(&fs);
        // The kernel holds no `session` of it yet: only the listing.
        assert_eq!(got, vec![Invalidation::Contents(session.ino)]);
        // Once it does, a commit drops the entry, never the attributes of
        // the inode, which stands for the older version still: dropping
        // them could lose those of a GETATTR in flight (see
        // `attributes_never_kept`).
        let cp = fs.lookup_by(session.ino, OsStr::new("session"), 0).unwrap();
        std::fs::write(&tmp, b"data 2").unwrap();
        std::fs::rename(&tmp, dir.path().join("a.session/session")).unwrap();
        let got = pending(&fs);
        let entry = Invalidation::Entry {
            parent: session.ino,
            name: "session".into(),
        };
        assert_eq!(
            got,
            vec![entry.clone(), Invalidation::Contents(session.ino)]
        );
        assert!(!got.contains(&Invalidation::Attributes(cp.ino)));
        // A change in place (`chmod` outside) makes another version too.
        let mut perm = std::fs::metadata(dir.path().join("a.session/session"))
            .unwrap()
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        std::fs::set_permissions(dir.path().join("a.session/session"), perm).unwrap();
        assert_eq!(pending(&fs), vec![entry]);
    }

    #[test]
    fn a_watch_goes_when_the_kernel_forgets_its_directory() {
        let (_dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        fs.start_watching(None).unwrap();
        let a = fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        let b = fs.lookup_by(ROOT, OsStr::new("b.session"), 0).unwrap();
        assert_eq!(
            fs.watched_count(),
            3,
            "a session the kernel looks up is watched"
        );
        enter(&fs, a.ino);
        enter(&fs, b.ino);
        assert_eq!(fs.watched_count(), 3);
        fs.forget(a.ino, 1);
        assert_eq!(fs.watched_count(), 2);
        assert!(!fs.is_watched(a.ino) && fs.is_watched(b.ino));
    }

    #[test]
    fn past_the_limit_directories_are_not_watched() {
        let (_dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        fs.start_watching(Some(2)).unwrap();
        let a = fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        let b = fs.lookup_by(ROOT, OsStr::new("b.session"), 0).unwrap();
        enter(&fs, a.ino);
        enter(&fs, b.ino);
        assert!(fs.is_watched(a.ino));
        assert!(!fs.is_watched(b.ino), "the limit counts the root");
        // Room again once the kernel forgets one.
        fs.forget(a.ino, 1);
        enter(&fs, b.ino);
        assert!(fs.is_watched(b.ino));
    }

    #[test]
    fn lost_events_drop_every_session_the_kernel_holds() {
        let (_dir, fs) = fs_with_sessions(&["a.session", "b.session"]);
        fs.start_watching(None).unwrap();
        fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        fs.lookup_by(ROOT, OsStr::new("b.session"), 0).unwrap();
        let overflow = sys::inotify_record(-1, libc::IN_Q_OVERFLOW, "");
        let mut got = fs.changes(&overflow);
        got.sort_by_key(|i| format!("{i:?}"));
        assert_eq!(
            got,
            vec![
                Invalidation::Contents(ROOT),
                Invalidation::Entry {
                    parent: ROOT,
                    name: "a.session".into()
                },
                Invalidation::Entry {
                    parent: ROOT,
                    name: "b.session".into()
                },
            ]
        );
    }

    #[test]
    fn the_mounts_own_changes_drop_nothing_the_kernel_was_given() {
        let (_dir, fs) = fs_with_sessions(&["a.session"]);
        fs.start_watching(None).unwrap();
        let session = fs.lookup_by(ROOT, OsStr::new("a.session"), 0).unwrap();
        enter(&fs, session.ino);
        let d = fs
            .mkdir(
                session.ino,
                OsStr::new("d"),
                0o755,
                super::super::Caller::ROOT,
            )
            .unwrap();
        let got = pending(&fs);
        assert_eq!(got, vec![Invalidation::Contents(session.ino)], "{got:?}");
        fs.mkdir(d.ino, OsStr::new("e"), 0o755, super::super::Caller::ROOT)
            .unwrap();
        fs.rename(d.ino, OsStr::new("e"), d.ino, OsStr::new("f"), 0)
            .unwrap();
        let got = pending(&fs);
        assert!(
            !got.iter().any(|i| matches!(i, Invalidation::Entry { .. })),
            "{got:?}"
        );
        // The same change made outside drops the name.
        std::fs::rename(
            _dir.path().join("a.session/d/f"),
            _dir.path().join("a.session/d/g"),
        )
        .unwrap();
        let g = fs.lookup_by(d.ino, OsStr::new("g"), 0).unwrap();
        std::fs::rename(
            _dir.path().join("a.session/d/g"),
            _dir.path().join("a.session/d/h"),
        )
        .unwrap();
        let got = pending(&fs);
        assert!(
            got.contains(&Invalidation::Entry {
                parent: d.ino,
                name: "g".into()
            }),
            "{got:?} (g is {})",
            g.ino
        );
    }
}
