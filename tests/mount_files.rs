//! Everything in a session directory besides `session` passes through to
//! the repository; symlinks are shown as symlinks and never followed by the
//! daemon; nothing outside the repository is reached through the mount.

mod common;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use common::mount::{Mounted, errno_of, run, writing};

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// openat(2) relative to an open directory.
fn openat(dir: &File, name: &str, flags: i32) -> std::io::Result<OwnedFd> {
    let c = CString::new(name).unwrap();
    // SAFETY: `dir` is an open descriptor and `c` a valid C string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        // SAFETY: openat returned a new descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

#[test]
fn other_files_of_a_session_pass_through() {
    let m = Mounted::start(&[]);
    m.new_session("a");
    let logs = m.path("a.session/io-logs");
    let repo_logs = m.repo_path("a.session/io-logs");

    // create, write, append, read
    m.sh("echo one > \"$M/a.session/io-logs/log\" && echo two >> \"$M/a.session/io-logs/log\"")
        .assert_ok();
    assert_eq!(fs::read(repo_logs.join("log")).unwrap(), b"one\ntwo\n");
    assert_eq!(
        run(Command::new("cat").arg(logs.join("log"))).assert_ok(),
        b"one\ntwo\n"
    );
    // cp in and out
    let src = m.root().join("blob");
    fs::write(&src, vec![7u8; 300_000]).unwrap();
    run(Command::new("cp").arg(&src).arg(logs.join("blob"))).assert_ok();
    assert_eq!(
        fs::read(repo_logs.join("blob")).unwrap(),
        vec![7u8; 300_000]
    );
    run(Command::new("cp")
        .arg(logs.join("blob"))
        .arg(m.root().join("back")))
    .assert_ok();
    assert_eq!(fs::read(m.root().join("back")).unwrap(), vec![7u8; 300_000]);
    // syscalls: write_at, set_len, read_at, fsync
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(logs.join("data"))
            .unwrap();
        f.write_all_at(b"0123456789", 0).unwrap();
        f.write_all_at(b"xy", 3).unwrap();
        f.set_len(8).unwrap();
        f.sync_all().unwrap();
        let mut buf = [0u8; 16];
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"012xy567");
        assert_eq!(f.metadata().unwrap().len(), 8);
    }
    assert_eq!(fs::read(repo_logs.join("data")).unwrap(), b"012xy567");
    m.sh("truncate -s 3 \"$M/a.session/io-logs/data\"")
        .assert_ok();
    assert_eq!(fs::read(repo_logs.join("data")).unwrap(), b"012");
    // a file directly in the session directory
    m.sh("printf notes > \"$M/a.session/notes\"").assert_ok();
    assert_eq!(fs::read(m.repo_path("a.session/notes")).unwrap(), b"notes");
    // rename
    m.sh("mv \"$M/a.session/io-logs/log\" \"$M/a.session/io-logs/log.1\"")
        .assert_ok();
    assert!(!repo_logs.join("log").exists());
    assert_eq!(fs::read(repo_logs.join("log.1")).unwrap(), b"one\ntwo\n");
    assert_eq!(fs::read(logs.join("log.1")).unwrap(), b"one\ntwo\n");
    // mkdir, nested files, rmdir
    m.sh("mkdir -p \"$M/a.session/io-logs/sub/deeper\" && echo deep > \"$M/a.session/io-logs/sub/deeper/f\"")
        .assert_ok();
    assert_eq!(fs::read(repo_logs.join("sub/deeper/f")).unwrap(), b"deep\n");
    m.sh("mv \"$M/a.session/io-logs/sub\" \"$M/a.session/moved\"")
        .assert_ok();
    assert_eq!(
        fs::read(m.path("a.session/moved/deeper/f")).unwrap(),
        b"deep\n"
    );
    assert_eq!(
        fs::read(m.repo_path("a.session/moved/deeper/f")).unwrap(),
        b"deep\n"
    );
    assert_eq!(
        errno_of(fs::remove_dir(m.path("a.session/moved/deeper"))),
        libc::ENOTEMPTY
    );
    m.sh("rm \"$M/a.session/moved/deeper/f\" && rmdir \"$M/a.session/moved/deeper\" \"$M/a.session/moved\"")
        .assert_ok();
    assert!(!m.repo_path("a.session/moved").exists());
    // symlink
    m.sh("ln -s log.1 \"$M/a.session/io-logs/latest\"")
        .assert_ok();
    assert_eq!(
        fs::read_link(repo_logs.join("latest")).unwrap(),
        Path::new("log.1")
    );
    assert_eq!(
        fs::read_link(logs.join("latest")).unwrap(),
        Path::new("log.1")
    );
    assert_eq!(fs::read(logs.join("latest")).unwrap(), b"one\ntwo\n");
    // chmod
    m.sh("chmod 600 \"$M/a.session/io-logs/log.1\"").assert_ok();
    assert_eq!(mode(&repo_logs.join("log.1")), 0o600);
    assert_eq!(mode(&logs.join("log.1")), 0o600);
    m.sh("chmod 700 \"$M/a.session/io-logs\"").assert_ok();
    assert_eq!(mode(&repo_logs), 0o700);
    // touch -d sets the time
    m.sh("touch -d '2001-02-03 04:05:06 UTC' \"$M/a.session/io-logs/log.1\"")
        .assert_ok();
    let mtime = fs::metadata(repo_logs.join("log.1"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        981_173_106
    );
    // files cannot move between sessions (rename(2) says EXDEV)
    m.new_session("b");
    assert_eq!(
        errno_of(fs::rename(
            logs.join("log.1"),
            m.path("b.session/io-logs/log.1")
        )),
        libc::EXDEV
    );
    // rm
    m.sh("rm \"$M/a.session/io-logs/latest\" \"$M/a.session/io-logs/blob\"")
        .assert_ok();
    assert!(fs::symlink_metadata(repo_logs.join("latest")).is_err());
    assert!(!repo_logs.join("blob").exists());
    // session.next made by hand is the session's lock, as on disk: writers
    // of `session` get EBUSY until it is removed.
    fs::write(m.path("a.session/session.next"), b"x").unwrap();
    assert!(m.repo_path("a.session/session.next").exists());
    assert_eq!(
        errno_of(fs::write(m.path("a.session/session"), b"y")),
        libc::EBUSY
    );
    fs::remove_file(m.path("a.session/session.next")).unwrap();
    m.assert_no_next();
}

#[test]
fn symlinks_show_as_symlinks() {
    let m = Mounted::start(&[]);
    m.new_session("a");
    symlink("/etc", m.repo_path("a.session/io-logs/evil")).unwrap();
    symlink("../../../outside", m.repo_path("a.session/up")).unwrap();
    let long = run(Command::new("ls")
        .arg("-la")
        .arg(m.path("a.session/io-logs")))
    .stdout_text();
    assert!(
        long.lines()
            .any(|l| l.starts_with('l') && l.ends_with("evil -> /etc")),
        "ls -la: {long}"
    );
    let meta = fs::symlink_metadata(m.path("a.session/io-logs/evil")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(
        fs::read_link(m.path("a.session/io-logs/evil")).unwrap(),
        Path::new("/etc")
    );
    assert!(
        fs::symlink_metadata(m.path("a.session/up"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let long = run(Command::new("ls").arg("-la").arg(m.path("a.session"))).stdout_text();
    assert!(
        long.lines()
            .any(|l| l.starts_with('l') && l.ends_with("up -> ../../../outside")),
        "ls -la: {long}"
    );
    // chmod of a link changes nothing it points at (and says so).
    let before = mode(Path::new("/etc"));
    run(Command::new("chmod")
        .arg("-h")
        .arg("700")
        .arg(m.path("a.session/io-logs/evil")));
    assert_eq!(mode(Path::new("/etc")), before);
    m.assert_no_next();
}

#[test]
fn a_directory_swapped_for_a_symlink_is_not_followed_by_the_daemon() {
    let m = Mounted::start(&[]);
    m.new_session("a");
    let outside = m.root().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"outside canary").unwrap();
    fs::write(m.repo_path("a.session/io-logs/secret"), b"inside").unwrap();
    // An open directory of the mount, then the directory is replaced in
    // the repository by a symlink to the outside.
    let dir = File::open(m.path("a.session/io-logs")).unwrap();
    let fd = openat(&dir, "secret", libc::O_RDONLY).unwrap();
    let mut buf = [0u8; 32];
    let n = File::from(fd).read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"inside");
    fs::rename(
        m.repo_path("a.session/io-logs"),
        m.repo_path("a.session/old-logs"),
    )
    .unwrap();
    symlink(&outside, m.repo_path("a.session/io-logs")).unwrap();

    match openat(&dir, "secret", libc::O_RDONLY) {
        Err(_) => {}
        Ok(fd) => {
            let n = File::from(fd).read_at(&mut buf, 0).unwrap_or(0);
            assert_ne!(&buf[..n], b"outside canary", "read outside the repository");
        }
    }
    assert!(openat(&dir, "planted", libc::O_WRONLY | libc::O_CREAT).is_err());
    assert!(!outside.join("planted").exists());
    assert!(openat(&dir, "secret", libc::O_WRONLY | libc::O_TRUNC).is_err());
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"outside canary");
    // Through the path, the kernel sees a symlink (and follows it itself,
    // as the caller): the daemon is never asked to. The kernel's cached
    // entry of the directory is dropped as the watch sees the change.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !fs::symlink_metadata(m.path("a.session/io-logs"))
        .unwrap()
        .file_type()
        .is_symlink()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the symlink made outside does not show through the mount"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_session_directory_that_is_a_symlink_is_not_reachable() {
    let m = Mounted::start(&[]);
    let outside = m.root().join("outside");
    fs::create_dir_all(outside.join("io-logs")).unwrap();
    fs::write(outside.join("session"), b"outside canary").unwrap();
    symlink(&outside, m.repo_path("evil.session")).unwrap();
    m.new_session("good");
    symlink(m.repo_path("evil.session"), m.repo_path("last-session")).unwrap();

    let ls = run(Command::new("ls").arg("-a").arg(&m.mountpoint)).stdout_text();
    assert!(!ls.contains("evil"), "{ls}");
    assert!(
        !ls.contains("last-session"),
        "a link to a non-session shows: {ls}"
    );
    assert_eq!(errno_of(fs::metadata(m.path("evil.session"))), libc::ENOENT);
    assert_eq!(
        errno_of(fs::read(m.path("evil.session/session"))),
        libc::ENOENT
    );
    let cat = run(Command::new("cat").arg(m.path("evil.session/session")));
    cat.assert_fails();
    assert!(cat.stdout.is_empty());
    m.sh("echo pwned > \"$M/evil.session/session\"")
        .assert_fails();
    m.sh("rm -rf \"$M/evil.session\"");
    m.sh("echo x > \"$M/evil.session/io-logs/planted\"")
        .assert_fails();
    m.sh("ln -sfn evil.session \"$M/last-session\"")
        .assert_fails();
    assert!(fs::create_dir(m.path("evil.session")).is_err());
    assert_eq!(
        fs::read(outside.join("session")).unwrap(),
        b"outside canary"
    );
    assert!(outside.join("io-logs").is_dir());
    assert!(!outside.join("io-logs/planted").exists());
    assert!(!outside.join("session.next").exists());
    assert_eq!(fs::read_link(m.repo_path("evil.session")).unwrap(), outside);
    m.assert_no_next();
}

fn a_session_file_that_is_a_symlink_is_never_read_through(m: &Mounted) {
    let outside = m.root().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("canary"), b"outside canary").unwrap();
    m.new_session("abs");
    m.new_session("rel");
    symlink(outside.join("canary"), m.repo_path("abs.session/session")).unwrap();
    symlink("../../outside/canary", m.repo_path("rel.session/session")).unwrap();
    for id in ["abs", "rel"] {
        let p = m.path(format!("{id}.session/session"));
        match fs::read(&p) {
            Err(_) => {}
            Ok(data) => assert_ne!(data, b"outside canary", "{id}: read the outside file"),
        }
        let cat = run(Command::new("cat").arg(&p));
        assert!(
            !cat.stdout_text().contains("canary"),
            "{id}: cat read the outside file: {cat:?}"
        );
        let tar = run(Command::new("tar")
            .arg("cf")
            .arg("-")
            .arg("-C")
            .arg(&m.mountpoint)
            .arg(format!("{id}.session")));
        assert!(
            !String::from_utf8_lossy(&tar.stdout).contains("outside canary"),
            "{id}: tar read the outside file"
        );
        // A write never goes through the link.
        let _ = m.sh(&format!("echo new > \"$M/{id}.session/session\""));
        assert_eq!(fs::read(outside.join("canary")).unwrap(), b"outside canary");
        let st = fs::symlink_metadata(m.repo_path(format!("{id}.session/session"))).unwrap();
        if st.file_type().is_file() {
            assert_eq!(m.checkpoint(id), b"new\n");
        }
    }
    {
        let _w = writing();
        if let Ok(mut f) = OpenOptions::new()
            .append(true)
            .open(m.path("abs.session/session"))
        {
            let _ = f.write_all(b" more");
        }
    }
    assert_eq!(fs::read(outside.join("canary")).unwrap(), b"outside canary");
    m.assert_no_next();
}

#[test]
fn a_session_file_that_is_a_symlink_is_never_read_through_passthrough() {
    let m = Mounted::start(&[]);
    a_session_file_that_is_a_symlink_is_never_read_through(&m);
}

#[test]
fn a_session_file_that_is_a_symlink_is_never_read_through_daemon_served() {
    let m = Mounted::start(&["--no-passthrough"]);
    a_session_file_that_is_a_symlink_is_never_read_through(&m);
}

#[test]
fn chmod_of_session_is_kept_by_the_next_commit() {
    let m = Mounted::start(&[]);
    m.new_session("a");
    m.save("a", b"one");
    m.sh("chmod 600 \"$M/a.session/session\"").assert_ok();
    assert_eq!(mode(&m.repo_path("a.session/session")), 0o600);
    assert_eq!(mode(&m.path("a.session/session")), 0o600);
    m.sh("echo two > \"$M/a.session/session\"").assert_ok();
    assert_eq!(m.checkpoint("a"), b"two\n");
    assert_eq!(mode(&m.repo_path("a.session/session")), 0o600);
    m.sh("chmod 750 \"$M/a.session\"").assert_ok();
    assert_eq!(mode(&m.repo_path("a.session")), 0o750);
    // A long name inside a session is the kernel's business.
    let name = "n".repeat(255);
    m.sh(&format!("echo x > \"$M/a.session/io-logs/{name}\""))
        .assert_ok();
    assert!(m.repo_path("a.session/io-logs").join(&name).exists());
    let bad = CString::new(
        m.path("a.session/io-logs")
            .join("n".repeat(256))
            .as_os_str()
            .as_bytes(),
    )
    .unwrap();
    // SAFETY: `bad` is a valid C string.
    let fd = unsafe {
        libc::open(
            bad.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        )
    };
    assert!(fd < 0);
    m.assert_no_next();
}
