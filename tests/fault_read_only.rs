//! A repository on a read-only filesystem (a tmpfs remounted `ro`): reads
//! work through the command line and the mount; every change fails with
//! EROFS and one clear line, and nothing is left half-done.

mod common;

use std::fs;
use std::io::ErrorKind;

use common::fs_helpers::*;

const OLD: u64 = 0x0ad;

#[test]
fn a_read_only_repository_reads_and_refuses_writes_clearly() {
    let tmpfs = Tmpfs::new("2m");
    let repo = tmpfs.mnt.join("repo");
    fs::create_dir_all(repo.join("ro.session/io-logs")).unwrap();
    fs::write(repo.join("ro.session/session"), checkpoint(OLD, 9000)).unwrap();
    fs::write(tmpfs.mnt.join("input"), checkpoint(0x2, 100)).unwrap();
    tmpfs.set_read_only(true);
    let cli = |args: &[&str]| run_cmd(sessionfs().arg("--repo").arg(&repo).args(args));

    // Reads.
    let out = cli(&["cat", "ro"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(verify(&out.stdout), Ok(OLD));
    let out = cli(&["list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ro"));

    // Writes: one clear line each, exit 1.
    let input = tmpfs.mnt.join("input");
    let out = cli(&["checkpoint", "ro", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(
        &out.stderr,
        &["Read-only file system", "ro.session/session.next"],
    );
    let out = cli(&["create"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(&out.stderr, &["Read-only file system"]);
    let out = cli(&["remove", "ro"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert_clear_error(&out.stderr, &["Read-only file system"]);
    assert_eq!(verify_file(&repo.join("ro.session/session")), Ok(Some(OLD)));

    // The mount (a read-write mount of a read-only repository, and a
    // --read-only one).
    for args in [&[][..], &["--no-passthrough"][..], &["--read-only"][..]] {
        let work = scratch("sessionfs-ro-mount");
        let mut daemon = Daemon::start(
            &repo,
            &work.path().join("mnt"),
            &work.path().join("daemon.log"),
            args,
        );
        let session = daemon.path("ro.session/session");
        assert_eq!(verify(&fs::read(&session).unwrap()), Ok(OLD), "{args:?}");
        let names = names_in(&daemon.mountpoint);
        assert_eq!(names, vec!["ro.session".to_string()], "{args:?}");

        match write_through(&session, &checkpoint(0x3, 100)) {
            Err((_, e)) => assert_eq!(e, libc::EROFS, "{args:?}: {}", errno_name(e)),
            Ok(()) => panic!("{args:?}: a write to a read-only repository succeeded"),
        }
        let e = fs::create_dir(daemon.path("new.session")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{args:?}: mkdir: {e}");
        let e = fs::remove_dir_all(daemon.path("ro.session")).unwrap_err();
        assert!(
            e.raw_os_error() == Some(libc::EROFS) || e.kind() == ErrorKind::ReadOnlyFilesystem,
            "{args:?}: rm -r: {e}"
        );
        daemon.stop();
        if !args.contains(&"--read-only") {
            // The daemon said why, with the path.
            let log = daemon.log_text();
            assert!(
                log.contains("Read-only file system") && log.contains("ro.session"),
                "{args:?}: the daemon did not log the refusal: {log}"
            );
        }
    }
    assert_eq!(verify_file(&repo.join("ro.session/session")), Ok(Some(OLD)));
    assert!(!repo.join("ro.session/session.next").exists());
    assert_eq!(names_in(&repo), vec!["ro.session".to_string()]);
}
