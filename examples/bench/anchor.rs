//! bindfs as an anchor: the same directory mounted through another FUSE
//! filesystem (the Debian package, default options), measured in the same
//! run as sessionfs, so a ratio can be read against "a plain FUSE
//! passthrough on this machine today" and not only against the disk.
//!
//! Invariant: a `Bindfs` value is a live mount; dropping it unmounts it and
//! reaps the child, also on an error or a panic, so no mount outlives the
//! benchmark.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Res, is_mounted};

/// A `bindfs -f SRC MNT` child; unmounted when dropped.
pub struct Bindfs {
    pub mountpoint: PathBuf,
    child: Option<Child>,
}

impl Bindfs {
    /// Mounts `src` on `mountpoint`. `Ok(None)` (with a warning) when
    /// bindfs is not installed: the anchor rows are then left out, the
    /// sessionfs rows are still measured.
    pub fn start(src: &Path, mountpoint: &Path, log: &Path) -> Res<Option<Bindfs>> {
        fs::create_dir_all(mountpoint)?;
        let mountpoint = mountpoint.canonicalize()?;
        if is_mounted(&mountpoint) {
            return Err(format!("{} is already mounted", mountpoint.display()).into());
        }
        let log_file = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = match Command::new("bindfs")
            .arg("-f")
            .arg(src)
            .arg(&mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                eprintln!("bench: warning: bindfs is not installed: no anchor rows");
                return Ok(None);
            }
            Err(e) => return Err(format!("cannot start bindfs: {e}").into()),
        };
        let mut mount = Bindfs {
            mountpoint: mountpoint.clone(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !is_mounted(&mountpoint) {
            if let Some(child) = mount.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                mount.child = None;
                let text = fs::read_to_string(log).unwrap_or_default();
                return Err(format!("bindfs exited ({status}) before mounting:\n{text}").into());
            }
            if Instant::now() > deadline {
                return Err(format!("{} was not mounted in time", mountpoint.display()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(mount))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }
}

fn umount(mountpoint: &Path, lazy: bool) {
    let mut cmd = Command::new("umount");
    if lazy {
        cmd.arg("-l");
    }
    let _ = cmd
        .arg(mountpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        umount(&self.mountpoint, false);
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if is_mounted(&self.mountpoint) {
            // Busy or dead: detach it so the next run can mount there.
            umount(&self.mountpoint, true);
        }
    }
}
