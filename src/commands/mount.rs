//! `sessionfs mount` and `sessionfs unmount`: the request turned into the
//! daemon's configuration (see [`crate::mount`] for the daemon itself).

use std::path::Path;

use super::config::MountRequest;
use super::error::CommandError;
use super::mount_options;
use crate::core::Repository;
use crate::mount::{self as daemon, MountConfig, Unmounted};

/// Mounts `repo` as `request` (with its `-o` options applied) asks.
pub fn mount(repo: Repository, mut request: MountRequest) -> Result<(), CommandError> {
    mount_options::apply(&mut request).map_err(CommandError::MountOption)?;
    let mountpoint = std::path::absolute(&request.mountpoint).unwrap_or(request.mountpoint);
    let config = MountConfig {
        repo,
        mountpoint,
        foreground: request.foreground,
        read_only: request.read_only,
        allow_other: request.allow_other,
        auto_unmount: request.auto_unmount,
        threads: request.threads,
        passthrough: request.passthrough,
        max_watches: request.max_watches,
        log_file: request.log_file,
        ready_fd: request.ready_fd,
        daemon_args: request.daemon_args,
    };
    daemon::mount(config).map_err(CommandError::Mount)
}

/// Unmounts `mountpoint`; says so when it was busy and only detached.
pub fn unmount(mountpoint: &Path) -> Result<(), CommandError> {
    match daemon::unmount(mountpoint).map_err(CommandError::Mount)? {
        Unmounted::Clean => {}
        Unmounted::Detached => eprintln!(
            "sessionfs: {} was busy (files open): detached; it goes away once they are closed",
            mountpoint.display()
        ),
    }
    Ok(())
}
