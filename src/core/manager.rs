//! Couples a session's storage with application state, as plainbox's
//! session manager does; and session3's store interface on top of a
//! repository.
//!
//! Invariants: a [`SessionManager`] always has a storage whose directory
//! existed when the manager was made; `checkpoint` writes only through
//! [`Storage::save`], so it inherits the commit protocol's guarantees.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use super::error::{Error, Result};
use super::repo::{NewSession, Repository};
use super::storage::Storage;

/// Application state that can be suspended into checkpoint bytes and
/// resumed from them.
pub trait SessionState: Sized {
    type Error: std::error::Error;
    fn suspend(&self) -> Vec<u8>;
    fn resume(data: &[u8]) -> std::result::Result<Self, Self::Error>;
}

/// Raw bytes are the simplest state.
impl SessionState for Vec<u8> {
    type Error = std::convert::Infallible;
    fn suspend(&self) -> Vec<u8> {
        self.clone()
    }
    fn resume(data: &[u8]) -> std::result::Result<Self, Self::Error> {
        Ok(data.to_vec())
    }
}

/// What can go wrong loading a session: the storage, or the state's own
/// decoding.
#[derive(Debug)]
pub enum LoadError<E> {
    Storage(Error),
    State(E),
}

impl<E: std::fmt::Display> std::fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Storage(e) => e.fmt(f),
            LoadError::State(e) => write!(f, "cannot resume session state: {e}"),
        }
    }
}

impl<E: std::error::Error> std::error::Error for LoadError<E> {}

#[derive(Debug)]
pub struct SessionManager<S> {
    storage: Storage,
    state: S,
}

impl<S: SessionState> SessionManager<S> {
    /// A fresh session (with its well-known directories) holding `state`.
    pub fn create(repo: &Repository, prefix: &str, legacy: bool, state: S) -> Result<Self> {
        let storage = repo.create(prefix, legacy)?;
        Ok(SessionManager { storage, state })
    }

    /// Reopens a session from its last checkpoint.
    pub fn load(storage: Storage) -> std::result::Result<Self, LoadError<S::Error>> {
        storage
            .populate_well_known_dirs(None)
            .map_err(LoadError::Storage)?;
        let data = storage.load().map_err(LoadError::Storage)?;
        let state = S::resume(&data).map_err(LoadError::State)?;
        Ok(SessionManager { storage, state })
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn state(&self) -> &S {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }

    /// Saves the state as a checkpoint. Like plainbox, a lock found in the
    /// way is taken for an interrupted earlier checkpoint: it is broken once
    /// (unless a live writer holds it) and the save retried.
    pub fn checkpoint(&self) -> Result<()> {
        let data = self.state.suspend();
        match self.storage.save(&data) {
            Err(Error::Locked { path }) => {
                log::warn!(
                    "{} is locked; breaking the stale lock and retrying",
                    path.display()
                );
                self.storage.break_lock(false)?;
                self.storage.save(&data)
            }
            other => other,
        }
    }

    /// Removes every file of the session.
    pub fn destroy(self) -> Result<()> {
        self.storage.remove()
    }
}

/// session3's store interface, by session id.
pub trait SessionStore {
    /// Whether one store value may be shared between threads.
    const IS_THREAD_SAFE: bool;
    /// Whether several processes may use the same store at once.
    const IS_MULTIPROCESS_SAFE: bool;

    fn load(&self, id: &OsStr) -> Result<Option<Vec<u8>>>;
    fn save(&self, id: &OsStr, data: &[u8]) -> Result<()>;
    fn delete(&self, id: &OsStr) -> Result<()>;
    fn has(&self, id: &OsStr) -> Result<bool>;
    fn iter(&self) -> Result<Vec<(OsString, Vec<u8>)>>;
    fn delete_old_sessions(&self, age: Duration) -> Result<usize>;
}

/// A [`SessionStore`] backed by a repository: id `X` is the session
/// directory `X.session`. Both thread- and multiprocess-safe, since every
/// save is an atomic, locked commit.
#[derive(Debug, Clone)]
pub struct RepositoryStore {
    repo: Repository,
}

impl RepositoryStore {
    pub fn new(repo: Repository) -> RepositoryStore {
        RepositoryStore { repo }
    }
}

impl SessionStore for RepositoryStore {
    const IS_THREAD_SAFE: bool = true;
    const IS_MULTIPROCESS_SAFE: bool = true;

    fn load(&self, id: &OsStr) -> Result<Option<Vec<u8>>> {
        match self.repo.open(id) {
            Ok(storage) => storage.load().map(Some),
            Err(Error::NoSuchSession { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, id: &OsStr, data: &[u8]) -> Result<()> {
        let storage = match self.repo.open(id) {
            Ok(storage) => storage,
            Err(Error::NoSuchSession { .. }) => {
                let name = super::name::SessionName::from_id(id)?;
                match self
                    .repo
                    .create_session(name.clone(), NewSession::default())
                {
                    Ok(storage) => storage,
                    // Another process made it meanwhile: save into it.
                    Err(e) if e.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => {
                        self.repo.open(name.id())?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        storage.save(data)
    }

    fn delete(&self, id: &OsStr) -> Result<()> {
        self.repo.remove(id)
    }

    fn has(&self, id: &OsStr) -> Result<bool> {
        match self.repo.open(id) {
            Ok(_) => Ok(true),
            Err(Error::NoSuchSession { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn iter(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        let mut out = Vec::new();
        for entry in self.repo.list()? {
            match entry.storage.load() {
                Ok(data) => out.push((entry.storage.id().to_os_string(), data)),
                Err(Error::NoSuchSession { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn delete_old_sessions(&self, age: Duration) -> Result<usize> {
        self.repo.delete_older_than(age).map(|v| v.len())
    }
}
