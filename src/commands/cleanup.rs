//! Removing sessions and what interrupted writers left: `sessionfs
//! remove`, `break-lock` and `gc`.
//!
//! Invariants: `remove` goes on past a session it cannot remove, reports
//! each failure on its own line and exits with the one failure's code (or
//! 1 for several); nothing here removes a session a running writer holds
//! unless asked to (`break-lock --force`).

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use super::error::CommandError;
use super::names;
use crate::core::{self, Repository};
use crate::exit_codes;

/// `sessionfs remove ID…`.
pub fn remove(repo: &Repository, ids: &[OsString]) -> Result<(), CommandError> {
    let mut failed = Vec::new();
    for id in ids {
        match repo.remove(id) {
            Ok(()) => log::info!("removed {}", names::escape(id)),
            Err(e) => {
                eprintln!("sessionfs: error: {e}");
                failed.push(CommandError::Core(e));
            }
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => Err(CommandError::Partial {
            failed: 1,
            code: failed[0].exit_code(),
        }),
        n => Err(CommandError::Partial {
            failed: n,
            code: exit_codes::FAILURE,
        }),
    }
}

/// `sessionfs break-lock [--force] ID`.
pub fn break_lock(repo: &Repository, id: &OsStr, force: bool) -> Result<(), CommandError> {
    let storage = repo.open(id)?;
    if storage.break_lock(force)? {
        eprintln!(
            "sessionfs: removed {}",
            storage.location().join(core::SESSION_NEXT_FILE).display()
        );
    } else {
        eprintln!("sessionfs: {} is not locked", names::escape(id));
    }
    Ok(())
}

/// `sessionfs gc --older-than D [--dry-run]`.
pub fn gc(repo: &Repository, older_than: Duration, dry_run: bool) -> Result<(), CommandError> {
    if dry_run {
        for entry in repo.older_than(older_than)? {
            println!("would remove {}", names::escape(entry.storage.id()));
        }
        return Ok(());
    }
    for storage in repo.delete_older_than(older_than)? {
        println!("removed {}", names::escape(storage.id()));
    }
    Ok(())
}
