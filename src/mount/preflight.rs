//! What is checked before a mount is tried, so that each common reason a
//! mount cannot work gets one line naming the cause and the fix, instead of
//! the bare errno the kernel or `fusermount3` would give.
//!
//! Invariants: nothing here changes the system except creating a missing
//! mount point (and saying so); every check is one the mount itself would
//! fail later, less clearly.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::mounts::MountEntry;
use super::{MountConfig, MountError, has_program};

/// The device every FUSE mount opens.
pub(crate) const FUSE_DEVICE: &str = "/dev/fuse";
/// Where fusermount3 reads whether ordinary users may use `allow_other`.
pub(crate) const FUSE_CONF: &str = "/etc/fuse.conf";

/// What the checks did on the way.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// The mount point did not exist and was created.
    pub created_mountpoint: bool,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this process (by its effective ids) may access `path` as `mode`
/// asks (`libc::R_OK | libc::W_OK`…) as far as permissions go. A
/// read-only filesystem is not a permission problem: the mount serves it
/// and refuses each write clearly.
fn may(path: &Path, mode: i32) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid C string for the duration of the call.
    if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() == Some(libc::EROFS)
}

/// Runs every check, in the order a user would fix them.
pub(crate) fn prepare(config: &MountConfig) -> Result<Prepared, MountError> {
    let prepared = prepare_mountpoint(&config.mountpoint)?;
    check_fuse_device(&config.mountpoint)?;
    if !is_root() {
        check_unprivileged(config)?;
    }
    check_repository(config)?;
    Ok(prepared)
}

fn prepare_mountpoint(path: &Path) -> Result<Prepared, MountError> {
    let problem = |p: String| MountError::Mountpoint {
        path: path.to_path_buf(),
        problem: p,
    };
    let dead = || {
        problem(format!(
            "it is a dead mount left by a daemon that stopped (transport endpoint is not connected); \
             run `sessionfs unmount {}` first",
            path.display()
        ))
    };
    if let Some(entry) = MountEntry::at(path) {
        // A dead sessionfs mount still lists; its stat says ENOTCONN.
        if let Err(e) = std::fs::read_dir(path)
            && e.raw_os_error() == Some(libc::ENOTCONN)
        {
            return Err(dead());
        }
        return Err(MountError::AlreadyMounted {
            path: path.to_path_buf(),
            by: entry.describe(),
        });
    }
    match std::fs::metadata(path) {
        // The kernel may answer stat from cached attributes; listing the
        // directory always asks, so a dead mount shows here.
        Ok(m) if m.is_dir() => match std::fs::read_dir(path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(dead()),
            _ => Ok(Prepared::default()),
        },
        Ok(_) => Err(problem("not a directory".into())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(dead()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // What sshfs and mount-s3 users expect of a first mount: the
            // directory is made (and the user told), not a separate step.
            std::fs::create_dir_all(path)
                .map_err(|e| problem(format!("it does not exist and cannot be created: {e}")))?;
            Ok(Prepared {
                created_mountpoint: true,
            })
        }
        Err(e) => Err(problem(e.to_string())),
    }
}

fn check_fuse_device(mountpoint: &Path) -> Result<(), MountError> {
    let device = Path::new(FUSE_DEVICE);
    let meta = match std::fs::metadata(device) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountError::FuseDevice {
                path: mountpoint.to_path_buf(),
                problem: format!(
                    "{FUSE_DEVICE} is missing: load the fuse kernel module (modprobe fuse), \
                     or in a container pass the device in (--device {FUSE_DEVICE})"
                ),
            });
        }
        Err(e) => {
            return Err(MountError::FuseDevice {
                path: mountpoint.to_path_buf(),
                problem: format!("cannot look at {FUSE_DEVICE}: {e}"),
            });
        }
    };
    if !may(device, libc::R_OK | libc::W_OK) {
        let fix = if is_root() {
            "check the device's permissions".to_string()
        } else {
            format!(
                "a standard system gives it mode 0666 so that ordinary users can mount \
                 (as root: chmod 0666 {FUSE_DEVICE}), or mount as root"
            )
        };
        return Err(MountError::FuseDevice {
            path: mountpoint.to_path_buf(),
            problem: format!(
                "{FUSE_DEVICE} is not readable and writable by you (mode {:04o}, owner uid {}): {fix}",
                meta.mode() & 0o7777,
                meta.uid()
            ),
        });
    }
    Ok(())
}

/// Whether `conf` (the text of /etc/fuse.conf) lets ordinary users mount
/// with `allow_other`.
pub(crate) fn allows_other(conf: &str) -> bool {
    conf.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .any(|l| l == "user_allow_other")
}

fn check_unprivileged(config: &MountConfig) -> Result<(), MountError> {
    if !has_program("fusermount3") {
        return Err(MountError::MissingTool(
            "mounting as an ordinary user needs fusermount3: install the fuse3 package \
             (apt install fuse3), or mount as root",
        ));
    }
    if config.allow_other {
        let conf = std::fs::read_to_string(FUSE_CONF).unwrap_or_default();
        if !allows_other(&conf) {
            return Err(MountError::Mountpoint {
                path: config.mountpoint.clone(),
                problem: format!(
                    "--allow-other as an ordinary user needs the line user_allow_other in \
                     {FUSE_CONF} (added by root), or mount as root"
                ),
            });
        }
    }
    Ok(())
}

/// The repository must be readable (and, unless the mount is read-only,
/// writable) by the user who mounts, or every request would fail with
/// EACCES later.
fn check_repository(config: &MountConfig) -> Result<(), MountError> {
    config.repo.check().map_err(MountError::Repository)?;
    let location = config.repo.location();
    let need = if config.read_only {
        libc::R_OK | libc::X_OK
    } else {
        libc::R_OK | libc::W_OK | libc::X_OK
    };
    let needed = if config.read_only {
        "read"
    } else {
        "read and write"
    };
    // A missing repository is made at mount time: its nearest existing
    // ancestor must let the user make it.
    let (path, need) = if location.exists() {
        (location.to_path_buf(), need)
    } else {
        let ancestor = location
            .ancestors()
            .skip(1)
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        (ancestor, libc::W_OK | libc::X_OK)
    };
    if may(&path, need) {
        return Ok(());
    }
    let owner = std::fs::metadata(&path)
        .map(|m| format!(" (owner uid {}, mode {:04o})", m.uid(), m.mode() & 0o7777))
        .unwrap_or_default();
    Err(MountError::RepositoryAccess {
        repo: location.to_path_buf(),
        problem: if path == location {
            format!("you cannot {needed} it{owner}")
        } else {
            format!(
                "it does not exist and you cannot create it in {}{owner}",
                path.display()
            )
        },
    })
}

/// The error `unmount` gives for a path that is not mounted.
pub(crate) fn not_mounted(path: &Path) -> MountError {
    MountError::NotMounted {
        path: PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_allow_other_is_read_as_fusermount3_reads_it() {
        assert!(!allows_other(""));
        assert!(!allows_other("# user_allow_other\n#mount_max = 1000\n"));
        assert!(allows_other("mount_max = 10\nuser_allow_other\n"));
        assert!(allows_other("  user_allow_other  # for the lab\n"));
        assert!(!allows_other("user_allow_other_not\n"));
    }
}
