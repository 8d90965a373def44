//! The disk filling up during a commit: the repository lives on a small
//! tmpfs, filled up to a few kilobytes, and a large checkpoint is
//! committed through the command line and through the mount (with and
//! without passthrough). Each time:
//! - the writer learns it (exit code and one clear line naming ENOSPC; the
//!   failing write() or close() returns ENOSPC);
//! - the previous checkpoint is intact and no `session.next` is left;
//! - once space is freed, the next commit works.
//!
//! And, through the filesystem layer, `dd`'s exact requests: a commit
//! refused at FSYNC and FLUSH is not made at the RELEASE that comes after
//! `close()` returned, even once room is back.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::fs_helpers::*;

const OLD: u64 = 0x01d;

struct Full {
    tmpfs: Tmpfs,
    repo: std::path::PathBuf,
    filler: std::path::PathBuf,
}

/// A repository on a 4 MiB tmpfs with one session `full` holding a small
/// checkpoint, and the rest of the space taken but for ~`leave` bytes.
fn full_repository(leave: u64) -> Full {
    let tmpfs = Tmpfs::new("4m");
    let repo = tmpfs.mnt.join("repo");
    fs::create_dir_all(repo.join("full.session/io-logs")).unwrap();
    fs::write(repo.join("full.session/session"), checkpoint(OLD, 3000)).unwrap();
    let filler = fill_up(&tmpfs.mnt, leave);
    Full {
        tmpfs,
        repo,
        filler,
    }
}

fn assert_old_intact(repo: &Path) {
    assert_eq!(
        verify_file(&repo.join("full.session/session")),
        Ok(Some(OLD)),
        "the previous checkpoint did not survive the failed commit"
    );
    let left = common::mount::leftover_locks(repo);
    assert!(left.is_empty(), "left after a failed commit: {left:?}");
}

#[test]
fn a_full_disk_fails_a_command_line_checkpoint_clearly_and_keeps_the_old_one() {
    let _serial = serial();
    let full = full_repository(64 << 10);
    let input_dir = scratch("sessionfs-enospc-input");
    let input = input_dir.path().join("big");
    fs::write(&input, checkpoint(0xB16, 1 << 20)).unwrap();
    let out = run_cmd(
        sessionfs()
            .arg("--repo")
            .arg(&full.repo)
            .arg("checkpoint")
            .arg("full")
            .arg(&input),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(
        &out.stderr,
        &["No space left on device", "full.session/.session.tmp-"],
    );
    assert_old_intact(&full.repo);
    // From stdin too.
    let out = run_cmd(
        Command::new("sh")
            .arg("-c")
            .arg("\"$0\" --repo \"$1\" checkpoint full - < \"$2\"")
            .arg(common::mount::BIN)
            .arg(&full.repo)
            .arg(&input),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(&out.stderr, &["No space left on device"]);
    assert_old_intact(&full.repo);

    fs::remove_file(&full.filler).unwrap();
    must(
        sessionfs()
            .arg("--repo")
            .arg(&full.repo)
            .arg("checkpoint")
            .arg("full")
            .arg(&input),
    );
    assert_eq!(
        verify_file(&full.repo.join("full.session/session")),
        Ok(Some(0xB16))
    );
    drop(full.tmpfs);
}

fn full_disk_through_the_mount(args: &[&str]) {
    let _serial = serial();
    let full = full_repository(64 << 10);
    let work = scratch("sessionfs-enospc-mount");
    let mut daemon = Daemon::start(
        &full.repo,
        &work.path().join("mnt"),
        &work.path().join("daemon.log"),
        args,
    );
    let session = daemon.path("full.session/session");

    // A program writing with write() and close(): one of them says ENOSPC.
    let big = checkpoint(0xB16, 1 << 20);
    match write_through(&session, &big) {
        Ok(()) => panic!("a 1 MiB checkpoint on a full disk was committed"),
        Err((step, e)) => {
            assert_eq!(e, libc::ENOSPC, "{step} failed with {}", errno_name(e));
        }
    }
    assert_old_intact(&full.repo);
    assert_eq!(verify(&fs::read(&session).unwrap()), Ok(OLD));

    // A program that ignores the failed write and closes: close() fails
    // too, and nothing is committed.
    let fd = open_raw(&session, libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
    assert_eq!(write_all_raw(&fd, &big), Err(libc::ENOSPC));
    assert_eq!(
        write_all_raw(&fd, b"more"),
        Err(libc::ENOSPC),
        "a write after the failed one"
    );
    assert_eq!(
        close_raw(fd),
        Err(libc::ENOSPC),
        "close() after a failed write"
    );
    assert_old_intact(&full.repo);

    // cp reports it and exits non-zero.
    let input = work.path().join("big");
    fs::write(&input, &big).unwrap();
    let out = run_cmd(Command::new("cp").arg(&input).arg(&session));
    assert!(!out.status.success(), "cp succeeded on a full disk");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left on device"),
        "cp said {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_old_intact(&full.repo);

    // dd conv=fsync too.
    let out = run_cmd(
        Command::new("dd")
            .arg(format!("if={}", input.display()))
            .arg(format!("of={}", session.display()))
            .args(["bs=64k", "conv=fsync", "status=none"]),
    );
    assert!(!out.status.success(), "dd succeeded on a full disk");
    assert_old_intact(&full.repo);

    // With room again, the same write commits.
    fs::remove_file(&full.filler).unwrap();
    write_through(&session, &big).expect("commit once space is free");
    assert_eq!(
        verify_file(&full.repo.join("full.session/session")),
        Ok(Some(0xB16))
    );
    daemon.stop();
    assert!(
        !daemon.log_text().contains("panicked"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_full_disk_fails_a_commit_through_the_mount_with_passthrough() {
    full_disk_through_the_mount(&[]);
}

#[test]
fn a_full_disk_fails_a_commit_through_the_mount_without_passthrough() {
    full_disk_through_the_mount(&["--no-passthrough"]);
}

/// `dd of=session conv=fsync` on a full disk, as the filesystem layer sees
/// it: OPEN with O_TRUNC, FLUSH (dd's dup2-and-close), writes that end in
/// ENOSPC (with passthrough the kernel's, into the file the FLUSH gave
/// back), FSYNC, FLUSH (dd's exit), then, after `close()` returned and
/// room came back, RELEASE. The commit failed at FSYNC and FLUSH, and the
/// writer was told so: RELEASE must not try it again, which would hold
/// the lock once dd exited and commit the cut-short file.
#[test]
fn a_commit_refused_at_close_is_not_retried_at_release() {
    use sessionfs::core::Repository;
    use sessionfs::fs::inode::ROOT;
    use sessionfs::fs::{FsConfig, SessionFs};
    use std::ffi::OsStr;
    use std::os::unix::fs::FileExt;

    let _serial = serial();
    for passthrough in [true, false] {
        let mode = if passthrough {
            "passthrough"
        } else {
            "daemon-served"
        };
        let full = full_repository(64 << 10);
        let fs = SessionFs::new(Repository::new(&full.repo), FsConfig { read_only: false })
            .expect("filesystem over the repository");
        fs.set_passthrough(passthrough);
        let pid = common::fs_driver::me().pid;
        let dir = fs.lookup_by(ROOT, OsStr::new("full.session"), pid).unwrap();
        let ino = fs
            .lookup_by(dir.ino, OsStr::new("session"), pid)
            .unwrap()
            .ino;
        let opened = fs
            .open(ino, libc::O_WRONLY | libc::O_TRUNC, common::fs_driver::me())
            .unwrap();
        assert_eq!(opened.backing.is_some(), passthrough, "{mode}");
        let fh = opened.fh;
        fs.flush(fh, pid).unwrap();

        let big = checkpoint(0xB16, 1 << 20);
        let mut failed = None;
        for (i, chunk) in big.chunks(64 << 10).enumerate() {
            let offset = (i * (64 << 10)) as u64;
            let errno = match &opened.backing {
                Some(b) => b
                    .write_all_at(chunk, offset)
                    .err()
                    .and_then(|e| e.raw_os_error()),
                None => fs.write(fh, offset, chunk).err().map(|e| e.errno()),
            };
            if errno.is_some() {
                failed = errno;
                break;
            }
        }
        assert_eq!(
            failed,
            Some(libc::ENOSPC),
            "{mode}: the writes filled the disk"
        );

        assert_eq!(
            fs.fsync(fh).map_err(|e| e.errno()),
            Err(libc::ENOSPC),
            "{mode}"
        );
        assert_eq!(
            fs.flush(fh, pid).map_err(|e| e.errno()),
            Err(libc::ENOSPC),
            "{mode}"
        );
        assert_old_intact(&full.repo);

        // Room comes back before the kernel's RELEASE (another open's
        // RELEASE drops its backing file, a user removes a file).
        fs::remove_file(&full.filler).unwrap();
        fs.release(fh).unwrap();
        assert_old_intact(&full.repo);
        drop(opened);
        drop(fs);
        drop(full.tmpfs);
    }
}
