//! A session's checkpoint read as Checkbox's, for the commands that show or
//! select sessions by what they hold (`list`, `show`, `gc --status`).
//!
//! Invariants: the checkpoint is read through one open descriptor (one
//! committed version, whatever commits meanwhile), bounded as
//! `session.json` is ([`Limits::default`]); a damaged checkpoint is a
//! [`Glance::Damaged`] with the one line that says why, never an error of
//! the whole command.

use std::fs::File;
use std::io::BufReader;
use std::os::fd::BorrowedFd;

use crate::checkbox::{CheckpointError, Reading, Summary, read_checkpoint};
use crate::core::{self, Storage};
use crate::decode::Limits;

/// What a session's checkpoint is, at a glance.
#[derive(Debug, Clone)]
pub(crate) enum Glance {
    /// No checkpoint yet, an empty one, or another application's data.
    Nothing,
    Checkbox(Box<Summary>),
    /// It cannot be read: why, in one line.
    Damaged(String),
}

impl Glance {
    pub(crate) fn summary(&self) -> Option<&Summary> {
        match self {
            Glance::Checkbox(s) => Some(s),
            Glance::Nothing | Glance::Damaged(_) => None,
        }
    }
}

/// Reads `file` (a committed checkpoint) as a Checkbox checkpoint.
pub(crate) fn read(file: File) -> Result<Reading, CheckpointError> {
    read_checkpoint(BufReader::with_capacity(64 * 1024, file), Limits::default())
}

/// The glance of the session whose directory `dir` is.
pub(crate) fn glance_in(storage: &Storage, dir: BorrowedFd<'_>) -> Glance {
    match storage.open_checkpoint_in(dir) {
        Ok(None) => Glance::Nothing,
        Ok(Some(file)) => match read(file) {
            Ok(Reading::Checkpoint(s)) => Glance::Checkbox(s),
            Ok(Reading::Opaque(_)) => Glance::Nothing,
            Err(e) if e.is_not_checkbox() => Glance::Nothing,
            Err(e) => Glance::Damaged(e.to_string()),
        },
        Err(core::Error::NoSuchSession { .. }) => Glance::Nothing,
        Err(e) => Glance::Damaged(e.to_string()),
    }
}
