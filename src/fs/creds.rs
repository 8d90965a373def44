//! Acting as the caller: a change of names inside a session directory
//! (create, mkdir, mknod, link, symlink, unlink, rename, chmod, chown,
//! utimes) is made by the serving thread with the caller's filesystem
//! identity, so the backing filesystem itself applies its rules to the
//! caller: new files belong to the caller's uid and to its gid or the
//! setgid directory's group, setuid/setgid bits are cleared as the kernel
//! clears them, the sticky bit and `protected_hardlinks` hold, and device
//! nodes need the caller's own CAP_MKNOD. A root daemon can otherwise do
//! anything; this is how the mount gives a caller no more than the disk
//! would give them directly.
//!
//! Invariants:
//! - the identity is per thread (`setfsuid`, `setfsgid` and the raw
//!   `setgroups` system call change only the calling thread, unlike glibc's
//!   `setgroups`, which changes every thread of the process), and
//!   [`AsCaller`] restores the daemon's own when dropped, on every path;
//! - a daemon that is not root (mounted by an ordinary user, where only
//!   that user reaches the mount) changes nothing: it has no more rights
//!   than its callers;
//! - the modes the kernel sends already have the caller's umask applied:
//!   the serving thread gets a filesystem context of its own
//!   (`unshare(CLONE_FS)`, once per thread) so that it can drop the
//!   daemon's umask for the request without changing any other thread's;
//! - the caller's supplementary groups come from `/proc/PID/status` of the
//!   calling thread; when it cannot be read (the caller is gone), the
//!   caller acts with its primary group only, which can only give less.

use std::io;

use super::Caller;

/// The caller's identity on the serving thread, until dropped.
#[derive(Debug)]
pub(super) struct AsCaller {
    /// The thread's umask to put back, when it was changed.
    umask: Option<libc::mode_t>,
    switched: bool,
    /// The daemon's own supplementary groups and filesystem gid, to put
    /// back.
    groups: Vec<libc::gid_t>,
    fsgid: u32,
}

/// The supplementary groups of the thread `pid`.
fn groups_of(pid: u32) -> Vec<libc::gid_t> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn set_groups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: the raw system call changes only this thread's groups; the
    // pointer and length describe a live slice.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn own_groups() -> io::Result<Vec<libc::gid_t>> {
    // SAFETY: asking for the count with a null list is allowed.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut groups = vec![0; n as usize];
    // SAFETY: the buffer has room for `n` entries.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    groups.truncate(got as usize);
    Ok(groups)
}

thread_local! {
    /// Whether this thread has a filesystem context (umask) of its own.
    static OWN_FS: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Gives this thread its own umask, once; false when it cannot.
fn own_fs_context() -> bool {
    OWN_FS.with(|own| {
        if let Some(done) = own.get() {
            return done;
        }
        // SAFETY: unsharing CLONE_FS only copies this thread's root, cwd
        // and umask; no memory is involved.
        let ok = unsafe { libc::unshare(libc::CLONE_FS) } == 0;
        if !ok {
            log::warn!(
                "cannot give a serving thread its own umask ({}): the daemon's umask \
                 applies to files made through the mount",
                io::Error::last_os_error()
            );
        }
        own.set(Some(ok));
        ok
    })
}

impl AsCaller {
    /// Takes on `caller`'s filesystem identity on this thread.
    pub(super) fn enter(caller: Caller) -> io::Result<AsCaller> {
        // SAFETY: umask only swaps this thread's (now private) mask.
        let umask = own_fs_context().then(|| unsafe { libc::umask(0) });
        let mut guard = AsCaller {
            umask,
            switched: false,
            groups: Vec::new(),
            fsgid: 0,
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 || (caller.uid == 0 && caller.gid == 0) {
            return Ok(guard);
        }
        guard.groups = own_groups()?;
        // Known before anything changes, so that a failure below puts back
        // the daemon's own filesystem gid, not a guess.
        // SAFETY: -1 is invalid and only asks for the current id.
        guard.fsgid = unsafe { libc::setfsgid(u32::MAX) } as u32;
        guard.switched = true;
        set_groups(&groups_of(caller.pid))?;
        // SAFETY: setfsgid/setfsuid change only this thread's filesystem
        // ids; they cannot fail for root (they return the previous id).
        unsafe {
            libc::setfsgid(caller.gid);
            libc::setfsuid(caller.uid);
        }
        // Checked: setfsuid reports the previous id, not an error.
        // SAFETY: as above; -1 is invalid and only asks for the current id.
        let now = unsafe { libc::setfsuid(u32::MAX) } as u32;
        if now != caller.uid {
            guard.restore();
            return Err(io::Error::other("cannot take the caller's filesystem uid"));
        }
        Ok(guard)
    }

    fn restore(&mut self) {
        if let Some(mask) = self.umask.take() {
            // SAFETY: puts this thread's own mask back.
            unsafe { libc::umask(mask) };
        }
        if !self.switched {
            return;
        }
        self.switched = false;
        // SAFETY: back to root's filesystem ids on this thread, which gives
        // its capabilities back (they are in the permitted set).
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(self.fsgid);
        }
        if let Err(e) = set_groups(&self.groups) {
            log::error!("cannot restore the daemon's groups on a serving thread: {e}");
        }
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        self.restore();
    }
}
