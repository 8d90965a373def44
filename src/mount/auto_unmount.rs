//! `--auto-unmount` for an ordinary user's mount: a watcher that unmounts
//! the mount point with `fusermount3` once the daemon is gone, however it
//! died (SIGKILL included), so no dead mount is left behind.
//!
//! fuser hands `auto_unmount` to fusermount3 only together with
//! `allow_root` or `allow_other`, which an ordinary user may not ask for
//! without `user_allow_other` in /etc/fuse.conf. The watcher does the same
//! job without either: it is a shell waiting to read from a pipe whose
//! only writer is the daemon. A daemon that stops cleanly (it has unmounted
//! already) writes `keep` first, so the watcher never unmounts a mount made
//! later at the same place.
//!
//! Invariants: the pipe's write end is close-on-exec, so no other program
//! the daemon starts keeps the watcher waiting; the watcher holds no FUSE
//! descriptor (it is a new program, and fuser's descriptors are
//! close-on-exec), so it never keeps a dead connection alive.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

/// The daemon's end of the watcher's pipe.
#[derive(Debug)]
pub(crate) struct Watcher {
    pipe: Option<std::fs::File>,
}

const SCRIPT: &str = r#"read -r word; [ "$word" = keep ] || exec fusermount3 -u -z "$0""#;

impl Watcher {
    /// Starts the watcher for `mountpoint`.
    pub(crate) fn start(mountpoint: &Path) -> io::Result<Watcher> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a two-element array for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just returned these two descriptors; each is owned once.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg(mountpoint)
            .stdin(Stdio::from(read_end))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the closure only calls setsid, which
        // is async-signal-safe: the watcher outlives a killed process group.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::setsid();
                Ok(())
            });
        }
        // The child is not waited for: it outlives the daemon by design.
        cmd.spawn()?;
        Ok(Watcher {
            pipe: Some(std::fs::File::from(write_end)),
        })
    }

    /// The mount was unmounted cleanly: the watcher leaves without acting.
    pub(crate) fn stand_down(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"keep\n");
        }
    }
}
