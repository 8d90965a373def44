//! The session repository: a directory of session directories.
//!
//! Invariants:
//! - the sessions are exactly the entries that are real directories (by
//!   lstat), whose name is a valid [`SessionName`]; symlinks are never
//!   followed, whatever they point at;
//! - `last-session` is only ever replaced atomically (a new link renamed
//!   over the old one), and a legacy create deletes only a session directory
//!   that is a direct child of this repository;
//! - in a repository laid out as Checkbox's ([`Layout::Checkbox`]) nothing
//!   here ever makes `last-session` (a symlink there empties Checkbox's own
//!   listing): legacy mode is refused before anything is made.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::error::{Error, Op, Result};
use super::name::{self, Layout, SessionName};
use super::repo_dir::RepoDir;
use super::seam::{FaultSeam, NoFaults, Step};
use super::storage::Storage;
use super::sys;

/// The legacy-mode link to the last session created in legacy mode.
pub const LAST_SESSION_LINK: &str = "last-session";
/// The prefix of new session names when none is given.
pub const DEFAULT_PREFIX: &str = "pbox-";

/// How [`Repository::create_session`] makes a session directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSession {
    /// The session directory's mode (the umask applies).
    pub mode: u32,
    /// The user and group the session directory and its well-known
    /// directories are given, when they must belong to someone other than
    /// this process (a root daemon making a session for the user who asked).
    pub owner: Option<(u32, u32)>,
}

impl Default for NewSession {
    fn default() -> NewSession {
        NewSession {
            mode: 0o777,
            owner: None,
        }
    }
}

/// An entry of a repository listing.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    pub storage: Storage,
    /// The session directory's modification time (it changes at every
    /// commit, since a commit renames inside the directory).
    pub modified: SystemTime,
}

/// A session repository at a location (which need not exist yet).
#[derive(Debug, Clone)]
pub struct Repository {
    dir: Arc<RepoDir>,
}

static LINK_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Repository {
    /// A repository at `location` (made absolute against the current
    /// directory, as plainbox does).
    pub fn new(location: impl Into<PathBuf>) -> Repository {
        Self::with_seam(location, Arc::new(NoFaults))
    }

    /// A repository whose commits consult `seam` before every step (tests
    /// inject faults this way).
    pub fn with_seam(location: impl Into<PathBuf>, seam: Arc<dyn FaultSeam>) -> Repository {
        Repository {
            dir: Arc::new(RepoDir::new(location.into(), seam, None)),
        }
    }

    /// A repository at `location` whose sessions are named and laid out as
    /// `layout` says (without it, [`Layout::for_location`] decides).
    pub fn with_layout(location: impl Into<PathBuf>, layout: Layout) -> Repository {
        Repository {
            dir: Arc::new(RepoDir::new(
                location.into(),
                Arc::new(NoFaults),
                Some(layout),
            )),
        }
    }

    /// How this repository names and lays out its sessions.
    pub fn layout(&self) -> Layout {
        self.dir.layout()
    }

    /// The refusal of legacy mode in a repository whose layout has none.
    fn refuse_last_session(&self) -> Result<()> {
        if self.layout().allows_last_session() {
            return Ok(());
        }
        Err(Error::io(
            Op::WriteLastSession,
            self.location().join(LAST_SESSION_LINK),
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "a Checkbox repository has no legacy mode (a symlink there empties \
                 Checkbox's own listing of sessions)",
            ),
        ))
    }

    /// `$PLAINBOX_SESSION_REPOSITORY` (made absolute) if set, else
    /// `${XDG_CACHE_HOME:-$HOME/.cache}/plainbox/sessions`.
    pub fn default_location() -> PathBuf {
        if let Some(dir) = std::env::var_os("PLAINBOX_SESSION_REPOSITORY") {
            let dir = PathBuf::from(dir);
            // Set but empty: plainbox's abspath('') is the current directory.
            if dir.as_os_str().is_empty() {
                return std::env::current_dir().unwrap_or(dir);
            }
            return std::path::absolute(&dir).unwrap_or(dir);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        cache.join("plainbox").join("sessions")
    }

    pub fn location(&self) -> &Path {
        self.dir.location()
    }

    /// Checks the location: a missing directory is fine (it is created on
    /// demand), anything else that is not a directory is an error.
    pub fn check(&self) -> Result<()> {
        self.dir.check()
    }

    /// Opens the repository directory.
    pub fn open_dir(&self, op: Op) -> Result<OwnedFd> {
        self.dir.open(op)
    }

    /// Opens the repository directory, creating it (and its parents) first.
    pub fn open_or_create_dir(&self) -> Result<OwnedFd> {
        self.dir.open_or_create()
    }

    /// The sessions, youngest first (by the directory's mtime, then name).
    /// A missing repository lists as empty.
    pub fn list(&self) -> Result<Vec<SessionEntry>> {
        let dir = match sys::open_dir_path(self.location()) {
            Ok(dir) => dir,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Error::NotARepository {
                    path: self.location().to_path_buf(),
                });
            }
            Err(e) => return Err(Error::io(Op::ListRepository, self.location(), e)),
        };
        self.list_in(dir.as_fd())
    }

    /// Lists the sessions of an already open repository directory.
    pub fn list_in(&self, dir: BorrowedFd<'_>) -> Result<Vec<SessionEntry>> {
        let names = sys::read_dir_names(dir)
            .map_err(|e| Error::io(Op::ListRepository, self.location(), e))?;
        let mut entries = Vec::new();
        for name in names {
            if !name::is_session_name(&name) {
                continue;
            }
            let st = match sys::lstatat(dir, &name) {
                Ok(st) => st,
                // Removed while we were listing: not a session any more.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => {
                    return Err(Error::io(
                        Op::ListRepository,
                        self.location().join(&name),
                        e,
                    ));
                }
            };
            if !sys::is_dir(&st) {
                continue;
            }
            let Ok(session_name) = SessionName::new(&name) else {
                continue;
            };
            entries.push(SessionEntry {
                storage: Storage::new(self.dir.clone(), session_name),
                modified: sys::mtime(&st),
            });
        }
        entries.sort_by(|a, b| {
            b.modified
                .cmp(&a.modified)
                .then_with(|| b.storage.name().cmp(a.storage.name()))
        });
        Ok(entries)
    }

    /// The storage of an existing session, by id.
    pub fn open(&self, id: &OsStr) -> Result<Storage> {
        let name = SessionName::from_id(id)?;
        self.open_name(name)
    }

    /// The storage of an existing session, by directory name.
    pub fn open_name(&self, name: SessionName) -> Result<Storage> {
        let storage = Storage::new(self.dir.clone(), name);
        let missing = || Error::NoSuchSession {
            path: storage.location(),
        };
        let dir = match sys::open_dir_path(self.location()) {
            Ok(dir) => dir,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(missing()),
            Err(e) => return Err(Error::io(Op::OpenSession, self.location(), e)),
        };
        match sys::lstatat(dir.as_fd(), storage.name().as_os_str()) {
            Ok(st) if sys::is_dir(&st) => Ok(storage),
            Ok(_) => Err(missing()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(missing()),
            Err(e) => Err(Error::io(Op::OpenSession, storage.location(), e)),
        }
    }

    /// A storage handle for a name, without checking that it exists.
    pub fn storage(&self, name: SessionName) -> Storage {
        Storage::new(self.dir.clone(), name)
    }

    /// Creates the session `name` with its well-known directories, durably
    /// (the repository directory is fsynced before this returns). An
    /// existing entry of that name is an [`Error::Io`] whose source is
    /// `EEXIST`: `mkdir` is atomic, so of two processes racing for a name
    /// exactly one gets it. Nothing is left half-made: when any step after
    /// the `mkdir` fails, the new directory is removed again.
    pub fn create_session(&self, name: SessionName, how: NewSession) -> Result<Storage> {
        let dir = self.open_or_create_dir()?;
        self.create_session_in(dir.as_fd(), name, how)
    }

    /// [`Repository::create_session`] in an already open repository
    /// directory.
    pub fn create_session_in(
        &self,
        dir: BorrowedFd<'_>,
        name: SessionName,
        how: NewSession,
    ) -> Result<Storage> {
        let path = self.location().join(name.as_os_str());
        sys::mkdirat(dir, name.as_os_str(), how.mode & 0o7777)
            .map_err(|e| Error::io(Op::CreateSession, &path, e))?;
        let storage = Storage::new(self.dir.clone(), name);
        let made = (|| {
            if let Some((uid, gid)) = how.owner {
                sys::lchownat(dir, storage.name().as_os_str(), uid, gid)
                    .map_err(|e| Error::io(Op::SetOwnerAndMode, &path, e))?;
            }
            self.seam_check(Step::MakeWellKnownDirs, &path, Op::CreateSession)?;
            storage.populate_well_known_dirs(how.owner)?;
            self.seam_check(Step::SyncRepository, self.location(), Op::SyncDirectory)?;
            sys::fsync(dir).map_err(|e| Error::io(Op::SyncDirectory, self.location(), e))
        })();
        if let Err(e) = made {
            if let Err(undo) = sys::remove_tree_at(dir, storage.name().as_os_str()) {
                log::warn!(
                    "cannot remove the half-made session {}: {undo}",
                    path.display()
                );
            }
            return Err(e);
        }
        log::debug!("created session {}", path.display());
        Ok(storage)
    }

    fn seam_check(&self, step: Step, path: &Path, op: Op) -> Result<()> {
        self.dir
            .seam()
            .before(step, path)
            .map_err(|e| Error::io(op, path, e))
    }

    /// Creates a new session named `slug(prefix)` + UTC time, with a `_(N)`
    /// suffix on a clash, and its well-known directories. In legacy mode the
    /// session `last-session` pointed at is removed (only if it is a session
    /// of this repository) and the link re-pointed at the new one.
    ///
    /// In a Checkbox repository the time has microseconds, the session gets
    /// `session-share/` too, and legacy mode is refused before anything is
    /// made.
    pub fn create(&self, prefix: &str, legacy: bool) -> Result<Storage> {
        if legacy {
            self.refuse_last_session()?;
        }
        let dir = self.open_or_create_dir()?;
        let slug = name::slugify(prefix);
        let stamp = self.layout().timestamp(SystemTime::now());
        let mut uniq = 0u32;
        let storage = loop {
            let candidate = name::candidate_name(&slug, &stamp, uniq);
            let name = SessionName::new(&candidate)?;
            match self.create_session_in(dir.as_fd(), name, NewSession::default()) {
                Ok(storage) => break storage,
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => uniq += 1,
                Err(e) => return Err(e),
            }
        };
        if legacy {
            let previous = self.last_session_in(dir.as_fd())?;
            self.point_last_session_in(dir.as_fd(), storage.name())?;
            if let Some(old) = previous
                && old.name() != storage.name()
            {
                log::info!(
                    "legacy mode: removing previous session {}",
                    old.location().display()
                );
                match old.remove() {
                    Ok(()) | Err(Error::NoSuchSession { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if legacy {
            sys::fsync(dir.as_fd())
                .map_err(|e| Error::io(Op::SyncDirectory, self.location(), e))?;
        }
        Ok(storage)
    }

    /// The raw target of `last-session`, if the link exists.
    pub fn last_session_target(&self) -> Result<Option<OsString>> {
        let dir = match sys::open_dir_path(self.location()) {
            Ok(dir) => dir,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(Error::io(Op::ReadLastSession, self.location(), e)),
        };
        self.last_session_target_in(dir.as_fd())
    }

    fn last_session_target_in(&self, dir: BorrowedFd<'_>) -> Result<Option<OsString>> {
        match sys::readlinkat(dir, OsStr::new(LAST_SESSION_LINK)) {
            Ok(target) => Ok(Some(target)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) => {
                Ok(None)
            }
            Err(e) => Err(Error::io(
                Op::ReadLastSession,
                self.location().join(LAST_SESSION_LINK),
                e,
            )),
        }
    }

    /// The session `last-session` names, if it names a session directory of
    /// this repository. A relative target is resolved against the repository.
    pub fn last_session(&self) -> Result<Option<Storage>> {
        let dir = match sys::open_dir_path(self.location()) {
            Ok(dir) => dir,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(Error::io(Op::ReadLastSession, self.location(), e)),
        };
        self.last_session_in(dir.as_fd())
    }

    /// Like [`Repository::last_session`], in an already open repository.
    pub fn last_session_in(&self, dir: BorrowedFd<'_>) -> Result<Option<Storage>> {
        let Some(target) = self.last_session_target_in(dir)? else {
            return Ok(None);
        };
        let Some(name) = self.session_name_of_target(&target) else {
            log::warn!(
                "{} points outside the repository ({}); ignoring it",
                self.location().join(LAST_SESSION_LINK).display(),
                Path::new(&target).display()
            );
            return Ok(None);
        };
        match sys::lstatat(dir, name.as_os_str()) {
            Ok(st) if sys::is_dir(&st) => Ok(Some(Storage::new(self.dir.clone(), name))),
            Ok(_) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(Error::io(
                Op::ReadLastSession,
                self.location().join(name.as_os_str()),
                e,
            )),
        }
    }

    /// The session name a `last-session` target designates when it is a
    /// direct child of this repository; `None` for anything else.
    pub fn session_name_of_target(&self, target: &OsStr) -> Option<SessionName> {
        let target = Path::new(target);
        let full = if target.is_absolute() {
            target.to_path_buf()
        } else {
            self.location().join(target)
        };
        let parent = full.parent()?;
        let file = full.file_name()?;
        let inside = parent == self.location()
            || match (parent.canonicalize(), self.location().canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
        if !inside || file.as_bytes().contains(&b'/') {
            return None;
        }
        SessionName::new(file).ok()
    }

    /// Points `last-session` at a session, atomically: a new link is made
    /// under a temporary name and renamed over the old one. The link holds
    /// the session's absolute path, as plainbox writes it.
    pub fn set_last_session(&self, name: &SessionName) -> Result<()> {
        self.refuse_last_session()?;
        let dir = self.open_dir(Op::WriteLastSession)?;
        self.point_last_session_in(dir.as_fd(), name)?;
        sys::fsync(dir.as_fd()).map_err(|e| Error::io(Op::SyncDirectory, self.location(), e))
    }

    fn point_last_session_in(&self, dir: BorrowedFd<'_>, name: &SessionName) -> Result<()> {
        let link_path = self.location().join(LAST_SESSION_LINK);
        let target = self.location().join(name.as_os_str());
        let tmp: OsString = format!(
            ".last-session.tmp-{}-{}",
            std::process::id(),
            LINK_COUNTER.fetch_add(1, Ordering::Relaxed)
        )
        .into();
        sys::symlinkat(target.as_os_str(), dir, &tmp)
            .map_err(|e| Error::io(Op::WriteLastSession, &link_path, e))?;
        if let Err(e) = sys::renameat(dir, &tmp, dir, OsStr::new(LAST_SESSION_LINK)) {
            let _ = sys::unlinkat(dir, &tmp, false);
            return Err(Error::io(Op::WriteLastSession, link_path, e));
        }
        Ok(())
    }

    /// Removes the session with this id.
    pub fn remove(&self, id: &OsStr) -> Result<()> {
        self.open(id)?.remove()
    }

    /// The sessions whose directory was not modified for `age`.
    pub fn older_than(&self, age: Duration) -> Result<Vec<SessionEntry>> {
        let now = SystemTime::now();
        Ok(self
            .list()?
            .into_iter()
            .filter(|e| now.duration_since(e.modified).is_ok_and(|d| d >= age))
            .collect())
    }

    /// Deletes the sessions not modified for `age` (except one whose lock a
    /// live writer holds); returns the ones deleted.
    pub fn delete_older_than(&self, age: Duration) -> Result<Vec<Storage>> {
        let mut deleted = Vec::new();
        for entry in self.older_than(age)? {
            match entry.storage.lock_state() {
                Ok(super::storage::LockState::Held) => {
                    log::info!(
                        "keeping {}: a checkpoint is being written",
                        entry.storage.location().display()
                    );
                    continue;
                }
                Ok(_) => {}
                // Removed since the listing (by another cleanup, say).
                Err(Error::NoSuchSession { .. }) => continue,
                Err(e) => return Err(e),
            }
            match entry.storage.remove() {
                Ok(()) => deleted.push(entry.storage),
                Err(Error::NoSuchSession { .. }) => {}
                // Left for the next run, once the NFS client closes it.
                Err(e @ Error::OpenOnNfsClient { .. }) => log::warn!("{e}"),
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}
