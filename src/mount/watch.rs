//! Keeps the kernel's cache of the mount's root in step with changes made
//! to the repository outside the mount (plainbox, the CLI, `rm -r`).
//!
//! The kernel may cache the root's attributes briefly and each session
//! directory's entry for a second (see the adapter's TTLs). An inotify
//! watch on the repository directory tells the daemon when the root
//! changed; the root's cached attributes are then dropped, and so is the
//! entry of a session directory removed or renamed away, so `stat` and
//! `tar` of the mount see the change as soon as `ls` does.
//!
//! Invariants: only the repository directory itself is watched (not the
//! sessions inside it); every notification goes through the one thread that
//! talks to the kernel ([`Invalidation`] receiver in `mount::serve`); a full
//! inotify queue only costs freshness (the root's attributes are dropped,
//! the next listing drops vanished entries), never correctness.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::Sender;

use crate::fs::Invalidation;

const WATCHED: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_ONLYDIR;

/// Starts watching `repo` and sends what the kernel should forget to `tx`
/// from a thread of its own. It lives as long as the daemon's process: it
/// stops at the first event after the receiver is gone, or if the watch
/// fails.
pub fn watch_repository(repo: &Path, tx: Sender<Invalidation>) -> io::Result<()> {
    // SAFETY: inotify_init1 takes only flags; it returns a new descriptor
    // or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by inotify_init1 and belongs to nobody
    // else.
    let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = CString::new(repo.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid descriptor and NUL-terminated path.
    if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), WATCHED) } < 0 {
        return Err(io::Error::last_os_error());
    }
    std::thread::Builder::new()
        .name("repo-watch".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                // SAFETY: `buf` is writable for its whole length.
                let n =
                    unsafe { libc::read(inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    log::warn!("watching the repository stopped: {e}");
                    return;
                }
                for inv in invalidations(&buf[..n as usize]) {
                    if tx.send(inv).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// The invalidations a batch of inotify events calls for: the root's
/// attributes once, and the entries of names removed or renamed away.
fn invalidations(mut events: &[u8]) -> Vec<Invalidation> {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut out = vec![Invalidation::RootAttributes];
    while events.len() >= HEADER {
        // SAFETY: at least HEADER bytes remain; read_unaligned copes with
        // any alignment of the kernel's packed records.
        let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(events.as_ptr().cast()) };
        let end = (HEADER + ev.len as usize).min(events.len());
        let name = &events[HEADER..end];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if ev.mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0 && !name.is_empty() {
            out.push(Invalidation::Entry(OsStr::from_bytes(name).to_os_string()));
        }
        events = &events[end..];
    }
    out
}

/// An event record as the kernel lays it out (for tests).
#[cfg(test)]
fn record(mask: u32, name: &str) -> Vec<u8> {
    let mut padded = name.as_bytes().to_vec();
    if !padded.is_empty() {
        padded.push(0);
        while !padded.len().is_multiple_of(16) {
            padded.push(0);
        }
    }
    let ev = libc::inotify_event {
        wd: 1,
        mask,
        cookie: 0,
        len: padded.len() as u32,
    };
    let mut out = Vec::new();
    // SAFETY: inotify_event is plain old data; its bytes are readable.
    out.extend_from_slice(unsafe {
        std::slice::from_raw_parts(
            (&ev as *const libc::inotify_event).cast::<u8>(),
            std::mem::size_of::<libc::inotify_event>(),
        )
    });
    out.extend_from_slice(&padded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_drop_their_entries_and_every_batch_the_root_attributes() {
        let mut batch = record(libc::IN_CREATE | libc::IN_ISDIR, "new.session");
        batch.extend(record(libc::IN_DELETE | libc::IN_ISDIR, "old.session"));
        batch.extend(record(libc::IN_MOVED_FROM, "last-session.tmp"));
        batch.extend(record(libc::IN_ATTRIB | libc::IN_ISDIR, ""));
        assert_eq!(
            invalidations(&batch),
            vec![
                Invalidation::RootAttributes,
                Invalidation::Entry("old.session".into()),
                Invalidation::Entry("last-session.tmp".into()),
            ]
        );
        // A torn record at the end is ignored, not misread.
        let mut torn = record(libc::IN_DELETE, "gone.session");
        torn.truncate(10);
        assert_eq!(invalidations(&torn), vec![Invalidation::RootAttributes]);
    }

    #[test]
    fn a_session_removed_in_the_repository_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a.session")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        watch_repository(dir.path(), tx).unwrap();
        std::fs::remove_dir(dir.path().join("a.session")).unwrap();
        let wait = std::time::Duration::from_secs(5);
        let mut seen = Vec::new();
        while !seen.contains(&Invalidation::Entry("a.session".into())) {
            seen.push(rx.recv_timeout(wait).expect("an invalidation"));
        }
        assert!(seen.contains(&Invalidation::RootAttributes));
    }
}
