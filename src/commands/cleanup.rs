//! Removing sessions and what interrupted writers left: `sessionfs
//! remove`, `break-lock` and `gc` (by age, and by status as Checkbox
//! reads the flags: `old` is what `checkbox-cli --clear-old-sessions`
//! would clear, `finished-not-submitted` what it never clears).
//!
//! Invariants: `remove` goes on past a session it cannot remove, reports
//! each failure on its own line and exits with the one failure's code (or
//! 1 for several); nothing here removes a session a running writer holds
//! unless asked to (`break-lock --force`).

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use std::os::fd::AsFd;

use super::config::GcStatus;
use super::error::CommandError;
use super::glance::{Glance, glance_in};
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

/// Whether `glance` is a session `gc --status` selects with `status`. A
/// session whose checkpoint is not a readable Checkbox checkpoint has no
/// status and is never selected by one.
fn selected(status: GcStatus, glance: &Glance) -> bool {
    let Some(summary) = glance.summary() else {
        return false;
    };
    match status {
        GcStatus::Old => summary.clearable_by_its_app(),
        GcStatus::Is(s) => summary.status == s,
    }
}

/// `sessionfs gc [--older-than D] [--status S]... [--dry-run]`: removes
/// the sessions not modified for `older_than` (when given) and whose
/// status is one of `statuses` (when any), except one whose lock a running
/// writer holds.
pub fn gc(
    repo: &Repository,
    older_than: Option<Duration>,
    statuses: &[GcStatus],
    dry_run: bool,
) -> Result<(), CommandError> {
    let entries = match older_than {
        Some(age) => repo.older_than(age)?,
        None => repo.list()?,
    };
    for entry in entries {
        let storage = &entry.storage;
        if !statuses.is_empty() {
            let dir = match storage.open_dir() {
                Ok(dir) => dir,
                Err(core::Error::NoSuchSession { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let glance = glance_in(storage, dir.as_fd());
            if let Glance::Damaged(why) = &glance {
                log::info!("keeping {}: {why}", names::escape(storage.id()));
            }
            if !statuses.iter().any(|s| selected(*s, &glance)) {
                continue;
            }
        }
        if dry_run {
            println!("would remove {}", names::escape(storage.id()));
            continue;
        }
        match storage.lock_state() {
            Ok(core::LockState::Held) => {
                eprintln!(
                    "sessionfs: keeping {}: a checkpoint is being written",
                    names::escape(storage.id())
                );
                continue;
            }
            Ok(_) => {}
            Err(core::Error::NoSuchSession { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        match storage.remove() {
            Ok(()) => println!("removed {}", names::escape(storage.id())),
            Err(core::Error::NoSuchSession { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkbox::{Reading, Status, read_checkpoint_bytes};

    fn glance(bytes: &[u8]) -> Glance {
        match read_checkpoint_bytes(bytes, crate::decode::Limits::default()).unwrap() {
            Reading::Checkpoint(s) => Glance::Checkbox(s),
            Reading::Opaque(_) => Glance::Nothing,
        }
    }

    #[test]
    fn statuses_select_as_checkbox_reads_the_flags() {
        let v11 = glance(include_bytes!("../../tests/data/checkbox-main-v11.session"));
        let status = v11.summary().unwrap().status;
        assert!(selected(GcStatus::Is(status), &v11));
        let other = Status::ALL.into_iter().find(|s| *s != status).unwrap();
        assert!(!selected(GcStatus::Is(other), &v11));
        assert_eq!(
            selected(GcStatus::Old, &v11),
            v11.summary().unwrap().clearable_by_its_app()
        );
        for nothing in [Glance::Nothing, Glance::Damaged("corrupt".into())] {
            assert!(!selected(GcStatus::Old, &nothing));
            assert!(!selected(GcStatus::Is(Status::NoFlags), &nothing));
        }
    }
}
