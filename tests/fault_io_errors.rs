//! Injected I/O errors at every step of a commit (`strace -e inject`, on the
//! command line and on the mount daemon, with and without passthrough):
//! a failed write, fsync of the checkpoint, rename, and fsync of the
//! directory. Each time:
//! - the error reaches the writer (exit code and one clear line naming the
//!   step and the errno; `close()`/`fsync()` returns the errno);
//! - before the rename: the previous checkpoint is intact and no
//!   `session.next` is left;
//! - a failed directory fsync after the rename is reported as "committed
//!   but not durable", and the new checkpoint is the one in place.
//!
//! Needs strace (Debian strace; scripts/test.sh installs it).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fs_helpers::*;

const OLD: u64 = 0x01d;
const NEW: u64 = 0x2e3;

struct Setup {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    input: PathBuf,
}

fn setup() -> Setup {
    require_tool("strace", "strace");
    let dir = scratch("sessionfs-eio");
    let repo = dir.path().join("repo");
    fs::create_dir_all(repo.join("s.session/io-logs")).unwrap();
    fs::write(repo.join("s.session/session"), checkpoint(OLD, 5000)).unwrap();
    let input = dir.path().join("input");
    fs::write(&input, checkpoint(NEW, 70_000)).unwrap();
    Setup {
        _dir: dir,
        repo,
        input,
    }
}

fn session(repo: &Path) -> Result<Option<u64>, String> {
    verify_file(&repo.join("s.session/session"))
}

fn assert_old_and_unlocked(repo: &Path) {
    assert_eq!(
        session(repo),
        Ok(Some(OLD)),
        "the previous checkpoint was lost"
    );
    assert!(
        !repo.join("s.session/session.next").exists(),
        "session.next was left behind"
    );
    let temps: Vec<_> = std::fs::read_dir(repo.join("s.session"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".session.tmp-"))
        .collect();
    assert!(temps.is_empty(), "temporaries left behind: {temps:?}");
}

/// `strace -f -qq -o /dev/null FILTER… sessionfs --repo R checkpoint s INPUT`.
fn cli_under_strace(s: &Setup, filter: &[&str]) -> std::process::Output {
    run_cmd(
        Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null"])
            .args(filter)
            .arg(common::mount::BIN)
            .arg("--repo")
            .arg(&s.repo)
            .arg("checkpoint")
            .arg("s")
            .arg(&s.input),
    )
}

#[test]
fn the_command_line_reports_every_failing_commit_step_and_keeps_the_old_checkpoint() {
    let _serial = serial();
    let s = setup();
    // fsync of session.next.
    let out = cli_under_strace(
        &s,
        &["-e", "trace=fsync", "-e", "inject=fsync:error=EIO:when=1"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(
        &out.stderr,
        &[
            "cannot fsync checkpoint",
            "s.session/.session.tmp-",
            "Input/output error",
        ],
    );
    assert_old_and_unlocked(&s.repo);

    // An fsync that reports a full disk.
    let out = cli_under_strace(
        &s,
        &[
            "-e",
            "trace=fsync",
            "-e",
            "inject=fsync:error=ENOSPC:when=1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(
        &out.stderr,
        &["cannot fsync checkpoint", "No space left on device"],
    );
    assert_old_and_unlocked(&s.repo);

    // A write.
    let out = cli_under_strace(
        &s,
        &[
            "-e",
            "trace=pwrite64,write",
            "-e",
            "inject=pwrite64:error=EIO",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(
        &out.stderr,
        &["cannot write checkpoint", "Input/output error"],
    );
    assert_old_and_unlocked(&s.repo);

    // The rename.
    let out = cli_under_strace(
        &s,
        &[
            "-e",
            "trace=rename,renameat,renameat2",
            "-e",
            "inject=rename,renameat,renameat2:error=EIO",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(
        &out.stderr,
        &["cannot commit (rename) checkpoint", "Input/output error"],
    );
    assert_old_and_unlocked(&s.repo);

    // The directory fsync after the rename: committed, but said to be
    // not durable.
    let out = cli_under_strace(
        &s,
        &["-e", "trace=fsync", "-e", "inject=fsync:error=EIO:when=2"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(
        &out.stderr,
        &[
            "committed but not durable",
            "s.session",
            "Input/output error",
        ],
    );
    assert_eq!(session(&s.repo), Ok(Some(NEW)));
    assert!(!s.repo.join("s.session/session.next").exists());
}

/// Writes the new checkpoint through a mount whose daemon runs under
/// `strace FILTER…`; returns the step that failed and its errno.
fn commit_through_strace_mount(
    s: &Setup,
    args: &[&str],
    filter: &[&str],
) -> (Result<(), (&'static str, i32)>, String) {
    let work = scratch("sessionfs-eio-mount");
    let mut wrapper = vec!["strace", "-f", "-qq", "-o", "/dev/null"];
    wrapper.extend_from_slice(filter);
    let mut daemon = Daemon::start_wrapped(
        &wrapper,
        &s.repo,
        &work.path().join("mnt"),
        &work.path().join("daemon.log"),
        args,
    );
    let result = write_through(
        &daemon.path("s.session/session"),
        &fs::read(&s.input).unwrap(),
    );
    // Reads still work and show what the repository holds.
    let through = fs::read(daemon.path("s.session/session")).unwrap();
    assert_eq!(verify(&through), session(&s.repo).map(|s| s.unwrap()));
    daemon.stop();
    (result, daemon.log_text())
}

fn mount_reports_failing_steps(args: &[&str]) {
    let _serial = serial();
    let s = setup();
    let fsync = ["-e", "trace=fsync", "-e", "inject=fsync:error=EIO"];
    let (result, log) = commit_through_strace_mount(&s, args, &fsync);
    assert_eq!(
        result,
        Err(("close", libc::EIO)),
        "fsync failure; log: {log}"
    );
    assert!(log.contains("cannot fsync checkpoint"), "{log}");
    assert_old_and_unlocked(&s.repo);

    let rename = [
        "-e",
        "trace=rename,renameat,renameat2",
        "-e",
        "inject=rename,renameat,renameat2:error=EIO",
    ];
    let (result, log) = commit_through_strace_mount(&s, args, &rename);
    assert_eq!(
        result,
        Err(("close", libc::EIO)),
        "rename failure; log: {log}"
    );
    assert!(log.contains("cannot commit (rename) checkpoint"), "{log}");
    assert_old_and_unlocked(&s.repo);

    if args.contains(&"--no-passthrough") {
        // Writes reach the daemon: a failed one fails the write() and the
        // close(), and nothing is committed.
        let pwrite = ["-e", "trace=pwrite64", "-e", "inject=pwrite64:error=EIO"];
        let (result, log) = commit_through_strace_mount(&s, args, &pwrite);
        assert_eq!(
            result,
            Err(("write", libc::EIO)),
            "write failure; log: {log}"
        );
        assert!(log.contains("cannot write checkpoint"), "{log}");
        assert_old_and_unlocked(&s.repo);
    }

    // Only the session directory's fsync fails (-P: calls on that path).
    let dir = s.repo.join("s.session");
    let dir = dir.to_str().unwrap();
    let dirsync = [
        "-P",
        dir,
        "-e",
        "trace=fsync",
        "-e",
        "inject=fsync:error=EIO",
    ];
    let (result, log) = commit_through_strace_mount(&s, args, &dirsync);
    assert_eq!(
        result,
        Err(("close", libc::EIO)),
        "directory fsync failure; log: {log}"
    );
    assert!(log.contains("committed but not durable"), "{log}");
    assert_eq!(session(&s.repo), Ok(Some(NEW)));
    assert!(!s.repo.join("s.session/session.next").exists());
}

#[test]
fn the_mount_reports_every_failing_commit_step_with_passthrough() {
    mount_reports_failing_steps(&[]);
}

#[test]
fn the_mount_reports_every_failing_commit_step_without_passthrough() {
    mount_reports_failing_steps(&["--no-passthrough"]);
}

/// `dd conv=fsync` and `fsync()` through the mount report a failed fsync.
#[test]
fn fsync_through_the_mount_reports_a_failed_commit() {
    let _serial = serial();
    for args in [&[][..], &["--no-passthrough"][..]] {
        let s = setup();
        let work = scratch("sessionfs-eio-fsync");
        let mut daemon = Daemon::start_wrapped(
            &[
                "strace",
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=fsync",
                "-e",
                "inject=fsync:error=EIO",
            ],
            &s.repo,
            &work.path().join("mnt"),
            &work.path().join("daemon.log"),
            args,
        );
        let session_path = daemon.path("s.session/session");
        let fd = open_raw(&session_path, libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
        write_all_raw(&fd, &fs::read(&s.input).unwrap()).unwrap();
        assert_eq!(fsync_raw(&fd), Err(libc::EIO), "fsync() with {args:?}");
        // The failed fsync is not forgotten: close() does not commit
        // silently either.
        let closed = close_raw(fd);
        assert_ne!(
            (closed, session(&s.repo)),
            (Ok(()), Ok(Some(NEW))),
            "close() after a failed fsync committed without an error"
        );
        assert_eq!(session(&s.repo), Ok(Some(OLD)));
        let out = run_cmd(
            Command::new("dd")
                .arg(format!("if={}", s.input.display()))
                .arg(format!("of={}", session_path.display()))
                .args(["bs=16k", "conv=fsync", "status=none"]),
        );
        assert!(!out.status.success(), "dd conv=fsync succeeded: {out:?}");
        daemon.stop();
        assert_old_and_unlocked(&s.repo);
    }
}

#[test]
fn removing_a_session_a_file_of_which_is_open_on_an_nfs_client_says_so() {
    // An NFS client keeps a file removed while open as `.nfsXXXX` and
    // answers EBUSY to its removal: injected here on every unlink.
    let _serial = serial();
    let s = setup();
    let leftover = ".nfs0000000000b6f2a900000001";
    fs::write(s.repo.join("s.session").join(leftover), b"still open").unwrap();
    let out = run_cmd(
        Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=unlinkat"])
            .arg("-e")
            .arg("inject=unlinkat:error=EBUSY")
            .arg(common::mount::BIN)
            .arg("--repo")
            .arg(&s.repo)
            .arg("remove")
            .arg("s"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(
        &out.stderr,
        &["cannot remove session", leftover, "open on an NFS client"],
    );
    assert!(s.repo.join("s.session").join(leftover).exists());
}

#[test]
fn cat_opens_a_checkpoint_replaced_on_an_nfs_server_again_once() {
    // NFSv3: `session` replaced and removed on the server between the open
    // and the first read makes that read fail with ESTALE.
    let _serial = serial();
    let s = setup();
    let file = s.repo.join("s.session/session");
    let cat = |inject: &str| {
        run_cmd(
            Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=read"])
                .arg("-e")
                .arg(inject)
                .arg("-P")
                .arg(&file)
                .arg(common::mount::BIN)
                .arg("--repo")
                .arg(&s.repo)
                .arg("cat")
                .arg("s"),
        )
    };
    let once = cat("inject=read:error=ESTALE:when=1");
    assert!(once.status.success(), "{once:?}");
    assert_eq!(verify(&once.stdout), Ok(OLD), "one whole checkpoint");
    let always = cat("inject=read:error=ESTALE");
    assert_eq!(always.status.code(), Some(1), "{always:?}");
    assert_clear_error(
        &always.stderr,
        &["cannot read checkpoint", "Stale file handle"],
    );
    assert!(always.stdout.is_empty());
}
