//! Where a repository lives: its absolute path and the fault seam its
//! commits consult. Both a [`crate::core::Repository`] and each of its
//! [`crate::core::Storage`]s hold one, shared, so a session never needs the
//! repository type to find its way back to the repository's directory.
//!
//! Invariants:
//! - the location is absolute (made so once, when the repository is named);
//! - opening the directory never follows a symlink in its last component's
//!   place of a directory: a location that is not a directory is
//!   [`Error::NotARepository`].

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Error, Op, Result};
use super::name::Layout;
use super::seam::FaultSeam;
use super::sys;

#[derive(Debug)]
pub(crate) struct RepoDir {
    location: PathBuf,
    seam: Arc<dyn FaultSeam>,
    layout: Layout,
}

impl RepoDir {
    /// `layout` `None`: the one [`Layout::for_location`] recognises.
    pub(crate) fn new(
        location: PathBuf,
        seam: Arc<dyn FaultSeam>,
        layout: Option<Layout>,
    ) -> RepoDir {
        let location = std::path::absolute(&location).unwrap_or(location);
        let layout = layout.unwrap_or_else(|| Layout::for_location(&location));
        RepoDir {
            location,
            seam,
            layout,
        }
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    pub(crate) fn location(&self) -> &Path {
        &self.location
    }

    pub(crate) fn seam(&self) -> &dyn FaultSeam {
        self.seam.as_ref()
    }

    /// Checks the location: a missing directory is fine (it is created on
    /// demand), anything else that is not a directory is an error.
    pub(crate) fn check(&self) -> Result<()> {
        match std::fs::metadata(self.location()) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Error::NotARepository {
                path: self.location().to_path_buf(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(Op::OpenRepository, self.location(), e)),
        }
    }

    /// Opens the repository directory; `op` names what it is opened for.
    pub(crate) fn open(&self, op: Op) -> Result<OwnedFd> {
        sys::open_dir_path(self.location()).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => Error::NotARepository {
                path: self.location().to_path_buf(),
            },
            _ => Error::io(op, self.location(), e),
        })
    }

    /// Opens the repository directory, creating it (and its parents) first.
    pub(crate) fn open_or_create(&self) -> Result<OwnedFd> {
        self.check()?;
        std::fs::create_dir_all(self.location())
            .map_err(|e| Error::io(Op::CreateRepository, self.location(), e))?;
        self.open(Op::CreateRepository)
    }
}
