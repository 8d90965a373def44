//! What each command does. [`run`] takes a plain [`Config`] (the command
//! line is one way to make it, see `crate::cli`) and returns a
//! [`CommandError`] that `main` prints as one line with its exit code.
//!
//! Invariants: nothing here knows of clap or of how the configuration was
//! parsed; every command but `unmount` first checks the repository, so a
//! missing or unusable one is the first error reported; each command lives
//! in the file of its concern.

mod archive;
mod checkpoint;
mod cleanup;
pub mod config;
mod create;
mod error;
mod glance;
mod list;
mod mount;
pub mod mount_options;
pub mod names;
mod show;
mod tar;

use std::path::PathBuf;

use crate::core::{CHECKBOX_REPOSITORY, Layout, Repository};

pub use config::{CommandConfig, Config, GcStatus, ListConfig, MountRequest, RepoChoice, SortBy};
pub use error::CommandError;
pub(crate) use error::ignore_broken_pipe;

/// Where `--checkbox` looks: `$SESSIONFS_CHECKBOX_REPOSITORY` (for a
/// Checkbox run with another base directory), else Checkbox's own
/// `/var/tmp/checkbox-ng/sessions`.
pub fn checkbox_location() -> PathBuf {
    std::env::var_os("SESSIONFS_CHECKBOX_REPOSITORY")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(CHECKBOX_REPOSITORY), PathBuf::from)
}

/// The repository `choice` designates.
pub fn repository(choice: &RepoChoice) -> Repository {
    match choice {
        RepoChoice::Default => Repository::new(Repository::default_location()),
        RepoChoice::Dir(dir) => Repository::new(dir.clone()),
        RepoChoice::Checkbox => Repository::with_layout(checkbox_location(), Layout::Checkbox),
        RepoChoice::CheckboxDir(dir) => Repository::with_layout(dir.clone(), Layout::Checkbox),
    }
}

/// After `list` found no session in the repository nobody chose: where
/// Checkbox's sessions are, when Checkbox's repository holds any.
fn checkbox_hint(choice: &RepoChoice, repo: &Repository) -> Option<String> {
    if *choice != RepoChoice::Default || std::env::var_os("PLAINBOX_SESSION_REPOSITORY").is_some() {
        return None;
    }
    let checkbox = Repository::with_layout(checkbox_location(), Layout::Checkbox);
    if checkbox.location() == repo.location() {
        return None;
    }
    if !checkbox.location().is_dir() {
        return None;
    }
    let count = checkbox.list().ok()?.len();
    Some(format!(
        "sessionfs: no sessions in {}; Checkbox keeps its sessions in {} ({count} there): \
         `sessionfs --checkbox list` shows them",
        repo.location().display(),
        checkbox.location().display()
    ))
}

/// Runs one command.
pub fn run(config: Config) -> Result<(), CommandError> {
    let repo = repository(&config.repo);
    log::info!("session repository: {}", repo.location().display());
    if !matches!(config.command, CommandConfig::Unmount { .. }) {
        repo.check()?;
    }
    let id = |given: &std::ffi::OsStr| names::resolve(&repo, given);
    match config.command {
        CommandConfig::List(args) => {
            if list::list(&repo, &args)? == 0
                && let Some(hint) = checkbox_hint(&config.repo, &repo)
            {
                eprintln!("{hint}");
            }
            Ok(())
        }
        CommandConfig::Create { prefix, legacy } => create::create(&repo, &prefix, legacy),
        CommandConfig::Cat {
            id: given,
            decode: false,
        } => checkpoint::cat(&repo, &id(&given)),
        CommandConfig::Cat {
            id: given,
            decode: true,
        } => checkpoint::cat_decoded(&repo, &id(&given)),
        CommandConfig::Checkpoint { id: given, file } => {
            checkpoint::checkpoint(&repo, &id(&given), file.as_deref())
        }
        CommandConfig::Remove { ids } => {
            let ids: Vec<_> = ids.iter().map(|given| id(given)).collect();
            cleanup::remove(&repo, &ids)
        }
        CommandConfig::BreakLock { id: given, force } => {
            cleanup::break_lock(&repo, &id(&given), force)
        }
        CommandConfig::Gc {
            older_than,
            statuses,
            dry_run,
        } => cleanup::gc(&repo, older_than, &statuses, dry_run),
        CommandConfig::Show { id: given, job } => show::show(&repo, &id(&given), job.as_deref()),
        CommandConfig::Archive { id: given, output } => {
            let given = given.map(|g| id(&g));
            archive::archive(&repo, given.as_deref(), &output)
        }
        CommandConfig::Mount(request) => mount::mount(repo, request),
        CommandConfig::Unmount { mountpoint } => mount::unmount(&mountpoint),
    }
}
