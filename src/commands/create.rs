//! `sessionfs create`: a new session, its id on standard output.

use crate::core::Repository;

use super::error::CommandError;
use super::names;

/// Creates a session named `PREFIX<UTC time>` (see `core::name`); with
/// `legacy`, replaces the one `last-session` points at and points
/// `last-session` at the new one.
/// In a Checkbox repository legacy mode is refused before anything is made:
/// `last-session` there would empty Checkbox's own listing.
pub fn create(repo: &Repository, prefix: &str, legacy: bool) -> Result<(), CommandError> {
    if legacy && !repo.layout().allows_last_session() {
        return Err(CommandError::Usage(format!(
            "refusing --legacy in {}: it is laid out as Checkbox's repository, which has no \
             legacy mode (a last-session symlink there makes Checkbox list no session at all)",
            repo.location().display()
        )));
    }
    let storage = repo.create(prefix, legacy)?;
    log::info!("created {}", storage.location().display());
    println!("{}", names::escape(storage.id()));
    Ok(())
}
