//! `sessionfs create`: a new session, its id on standard output.

use crate::core::Repository;

use super::error::CommandError;
use super::names;

/// Creates a session named `PREFIX<UTC time>` (see `core::name`); with
/// `legacy`, replaces the one `last-session` points at and points
/// `last-session` at the new one.
pub fn create(repo: &Repository, prefix: &str, legacy: bool) -> Result<(), CommandError> {
    let storage = repo.create(prefix, legacy)?;
    log::info!("created {}", storage.location().display());
    println!("{}", names::escape(storage.id()));
    Ok(())
}
