//! Plainbox's lock through a real mount, in both I/O modes: `session.next`
//! created with `O_CREAT|O_EXCL` in a mounted session is the session's lock
//! for everyone (a writer of `session` through the mount, the CLI, another
//! process creating it), and everyone else's lock is plainbox's EEXIST. While
//! its creator keeps it open, `sessionfs list` shows a live writer and
//! break-lock refuses; once closed it is stale, as plainbox's lock on disk.
//! tests/suite_plainbox_mount.rs runs plainbox itself.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;

use common::fs_helpers::{run_cmd, sessionfs};
use common::mount::Mounted;

fn create_new(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

fn errno(r: std::io::Result<impl std::fmt::Debug>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.raw_os_error().unwrap_or(0),
    }
}

/// The `locked` column of `sessionfs list --json` for session `id`.
fn listed_lock(m: &Mounted, id: &str) -> String {
    let out = run_cmd(
        sessionfs()
            .arg("--repo")
            .arg(&m.repo)
            .args(["list", "--json"]),
    );
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("{id} not listed: {v}"));
    found["locked"].as_str().unwrap_or_default().to_string()
}

fn the_lock_is_shared_with_everyone(args: &[&str]) {
    let m = Mounted::start(args);
    fs::create_dir(m.path("p.session")).unwrap();
    let session = m.path("p.session/session");
    let next = m.path("p.session/session.next");
    fs::write(&session, b"first").unwrap();

    // A writer of `session` through the mount holds it: EEXIST.
    let mut writer = OpenOptions::new().write(true).open(&session).unwrap();
    assert_eq!(errno(create_new(&next)), libc::EEXIST);
    writer.write_all(b"second").unwrap();
    drop(writer);
    assert_eq!(fs::read(&session).unwrap(), b"second");

    // Plainbox's lock, open: everyone else is locked out.
    let mut lock = create_new(&next).unwrap();
    assert!(m.repo_path("p.session/session.next").exists());
    assert_eq!(listed_lock(&m, "p"), "writing");
    assert_eq!(errno(create_new(&next)), libc::EEXIST);
    assert_eq!(errno(fs::write(&session, b"x")), libc::EBUSY);
    let input = m.root().join("input");
    fs::write(&input, b"from the CLI").unwrap();
    let cli = run_cmd(
        sessionfs()
            .arg("--repo")
            .arg(&m.repo)
            .args(["checkpoint", "p"])
            .arg(&input),
    );
    assert!(
        !cli.status.success(),
        "the CLI went through the lock: {cli:?}"
    );
    let broken = run_cmd(
        sessionfs()
            .arg("--repo")
            .arg(&m.repo)
            .args(["break-lock", "p"]),
    );
    assert!(!broken.status.success(), "broke a live lock: {broken:?}");
    assert_eq!(errno(fs::remove_file(&next)), libc::EBUSY);

    // Written, fsynced, closed, renamed: committed.
    lock.write_all(b"plainbox's").unwrap();
    lock.sync_all().unwrap();
    drop(lock);
    assert_eq!(listed_lock(&m, "p"), "stale", "closed: as on disk");
    fs::rename(&next, &session).unwrap();
    File::open(m.path("p.session")).unwrap().sync_all().unwrap();
    assert_eq!(fs::read(&session).unwrap(), b"plainbox's");
    assert_eq!(
        fs::read(m.repo_path("p.session/session")).unwrap(),
        b"plainbox's"
    );
    assert!(!m.repo_path("p.session/session.next").exists());

    // A stale one (its writer gone) is broken by `rm`, and taken again.
    drop(create_new(&next).unwrap());
    assert_eq!(errno(create_new(&next)), libc::EEXIST);
    fs::remove_file(&next).unwrap();
    let mut again = create_new(&next).unwrap();
    again.write_all(b"third").unwrap();
    drop(again);
    fs::rename(&next, &session).unwrap();
    assert_eq!(fs::read(&session).unwrap(), b"third");

    // The CLI's own lock is plainbox's EEXIST through the mount too.
    let storage = sessionfs::core::Repository::new(&m.repo)
        .storage(sessionfs::core::SessionName::new("p.session".as_ref()).unwrap());
    let held = storage
        .begin(sessionfs::core::BeginOptions::new(
            sessionfs::core::Start::Empty,
        ))
        .unwrap();
    assert_eq!(errno(create_new(&next)), libc::EEXIST);
    assert_eq!(errno(fs::rename(&next, &session)), libc::EBUSY);
    drop(held);
    assert_eq!(fs::read(&session).unwrap(), b"third");
}

#[test]
fn passthrough() {
    the_lock_is_shared_with_everyone(&[]);
}

#[test]
fn daemon_served() {
    the_lock_is_shared_with_everyone(&["--no-passthrough"]);
}
