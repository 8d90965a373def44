//! What each command does. [`run`] takes a plain [`Config`] (the command
//! line is one way to make it, see `crate::cli`) and returns a
//! [`CommandError`] that `main` prints as one line with its exit code.
//!
//! Invariants: nothing here knows of clap or of how the configuration was
//! parsed; every command but `unmount` first checks the repository, so a
//! missing or unusable one is the first error reported; each command lives
//! in the file of its concern.

mod checkpoint;
mod cleanup;
pub mod config;
mod create;
mod error;
mod list;
mod mount;
pub mod mount_options;
pub mod names;

use crate::core::Repository;

pub use config::{CommandConfig, Config, ListConfig, MountRequest, RepoChoice, SortBy};
pub use error::CommandError;
pub(crate) use error::ignore_broken_pipe;

/// The repository `choice` designates.
pub fn repository(choice: &RepoChoice) -> Repository {
    match choice {
        RepoChoice::Default => Repository::new(Repository::default_location()),
        RepoChoice::Dir(dir) => Repository::new(dir.clone()),
    }
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
        CommandConfig::List(args) => list::list(&repo, &args),
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
            dry_run,
        } => cleanup::gc(&repo, older_than, dry_run),
        CommandConfig::Mount(request) => mount::mount(repo, request),
        CommandConfig::Unmount { mountpoint } => mount::unmount(&mountpoint),
    }
}
