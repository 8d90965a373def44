//! Keeps the kernel's cache of the mount in step with changes made to the
//! repository outside the mount (plainbox, the CLI, `cp`, `rm -r`).
//!
//! The filesystem layer watches the repository and every directory inside
//! it that the kernel holds (see `fs::watch`), and turns the events into
//! what the kernel must forget; this thread reads the events and hands
//! those [`Invalidation`]s to the one thread that tells the kernel
//! (`mount::serve`).
//!
//! Invariants: the thread never blocks on the kernel (the channel is
//! unbounded), so it cannot hold up a request; a read error ends the
//! watching, logged, and leaves the kernel with whatever it cached until
//! its times run out.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use crate::core::sys;
use crate::fs::{Invalidation, SessionFs};

/// Starts watching the repository of `fs` (up to `limit` directories) and
/// sends what the kernel should forget to `tx` from a thread of its own. It
/// lives as long as the daemon's process: it stops at the first event
/// after the receiver is gone, or if reading the events fails.
pub fn watch_repository(
    fs: &Arc<SessionFs>,
    limit: Option<usize>,
    tx: Sender<Invalidation>,
) -> io::Result<()> {
    fs.start_watching(limit)?;
    let fs = Arc::clone(fs);
    std::thread::Builder::new()
        .name("repo-watch".into())
        .spawn(move || {
            let Some(fd) = fs.watch_descriptor() else {
                return;
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sys::read_some(fd, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        log::warn!("watching the repository stopped: {e}");
                        return;
                    }
                };
                for inv in fs.changes(&buf[..n]) {
                    if tx.send(inv).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Repository;
    use crate::fs::FsConfig;

    #[test]
    fn a_session_removed_in_the_repository_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a.session")).unwrap();
        let fs =
            Arc::new(SessionFs::new(Repository::new(dir.path()), FsConfig::default()).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        watch_repository(&fs, None, tx).unwrap();
        fs.lookup_by(crate::fs::inode::ROOT, std::ffi::OsStr::new("a.session"), 0)
            .unwrap();
        std::fs::remove_dir(dir.path().join("a.session")).unwrap();
        let wait = std::time::Duration::from_secs(5);
        let gone = Invalidation::Entry {
            parent: crate::fs::inode::ROOT,
            name: "a.session".into(),
        };
        let root = Invalidation::Contents(crate::fs::inode::ROOT);
        let mut seen = Vec::new();
        while !(seen.contains(&gone) && seen.contains(&root)) {
            seen.push(rx.recv_timeout(wait).expect("an invalidation"));
        }
    }
}
