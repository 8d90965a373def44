//! Hostile input: bad session names, symlinks planted in the repository
//! (a session directory that is a link to `/etc` or to another directory
//! outside, a `session` or `session.next` that links outside, a
//! `last-session` pointing outside or at a file), a repository that is a
//! file, and sessions created and removed in a tight loop while `ls` runs.
//!
//! Canary files outside the repository are watched with inotify: nothing
//! outside is ever opened, read, written or deleted (the links pointing at
//! them are only ever read as links). Every refusal is one clear error.
//! `/etc` is only used for operations that cannot write (listing, reading);
//! the destructive ones run against a link to a canary directory, which is
//! the same code path.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::fs_helpers::*;
use common::mount::Mounted;
use sessionfs::core::{Error, NameProblem, Repository, SessionName};

fn cli(repo: &Path, args: &[&OsStr]) -> std::process::Output {
    run_cmd(sessionfs().arg("--repo").arg(repo).args(args))
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The names and mtime of `/etc` (it must not change while we poke at a
/// link to it).
fn etc_state() -> (Vec<String>, std::time::SystemTime) {
    (
        names_in(Path::new("/etc")),
        fs::metadata("/etc").unwrap().modified().unwrap(),
    )
}

#[test]
fn bad_session_names_are_refused_clearly_and_create_nothing() {
    let _serial = serial();
    let m = Mounted::start(&[]);
    let canary = Canary::new(&m.root().join("outside"));
    let input = m.root().join("input");
    fs::write(&input, checkpoint(9, 100)).unwrap();
    let around = names_in(m.root());
    let long = "a".repeat(300);
    let dotdot_long = format!("../{}", "b".repeat(260));
    let bad: Vec<(&str, &str)> = vec![
        ("..", "starts with '.'"),
        (".", "starts with '.'"),
        ("../outside", "contains '/'"),
        ("../../etc", "contains '/'"),
        ("a/b", "contains '/'"),
        ("/etc/passwd", "contains '/'"),
        (".hidden", "starts with '.'"),
        (&long, "longer than 255 bytes"),
        (&dotdot_long, "invalid session name"),
        ("", "empty"),
    ];
    for (id, why) in &bad {
        for cmd in ["cat", "checkpoint", "remove", "break-lock"] {
            let mut args = vec![os(cmd), os(id)];
            if cmd == "checkpoint" {
                args.push(input.as_os_str());
            }
            let out = cli(&m.repo, &args);
            assert_eq!(out.status.code(), Some(2), "{cmd} {id:?}: {out:?}");
            assert_clear_error(&out.stderr, &["invalid session name", why]);
        }
    }
    // NUL cannot be passed on a command line or in a path; the library
    // refuses it.
    let repo = Repository::new(&m.repo);
    assert!(matches!(
        repo.open(OsStr::from_bytes(b"a\0b")),
        Err(Error::InvalidName {
            problem: NameProblem::HasNul,
            ..
        })
    ));
    assert!(SessionName::new(OsStr::from_bytes(b"x\0.session")).is_err());
    assert!(SessionName::new(OsStr::new("../x.session")).is_err());

    // Through the mount: only NAME.session directories, never hidden, never
    // over 255 bytes.
    for (name, errno) in [
        ("..session", libc::EINVAL),
        (".x.session", libc::EINVAL),
        ("plain", libc::EINVAL),
        ("x.sessionx", libc::EINVAL),
    ] {
        let e = fs::create_dir(m.path(name)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(errno), "mkdir {name}: {e}");
    }
    let e = fs::create_dir(m.path(format!("{}.session", "c".repeat(250)))).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{e}");
    // Files in the root are refused too.
    let e = fs::write(m.path("x.session"), b"x").unwrap_err();
    assert!(
        matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)),
        "a file in the root: {e}"
    );
    // The longest valid name works and stays inside.
    let longest = format!("{}.session", "d".repeat(255 - ".session".len()));
    fs::create_dir(m.path(&longest)).unwrap();
    assert!(m.repo_path(&longest).is_dir());

    // Non-UTF-8 names are names like any other: they stay inside.
    let raw = OsStr::from_bytes(b"caf\xe9-\xff.session");
    fs::create_dir(m.mountpoint.join(raw)).unwrap();
    assert!(m.repo.join(raw).join("io-logs").is_dir());
    write_through(&m.mountpoint.join(raw).join("session"), &checkpoint(5, 300)).unwrap();
    let id = OsStr::from_bytes(b"caf\xe9-\xff");
    let out = cli(&m.repo, &[os("cat"), id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(verify(&out.stdout), Ok(5));
    let out = cli(&m.repo, &[os("list")]);
    assert!(out.status.success(), "{out:?}");
    // Prefixes: a non-UTF-8 one is a usage error, one that would make a
    // hidden name is refused, and `/` and `..` become harmless.
    let out = cli(
        &m.repo,
        &[os("create"), os("--prefix"), OsStr::from_bytes(b"\xff")],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid UTF-8"));
    let out = cli(&m.repo, &[os("create"), os("--prefix"), os("../../x")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_clear_error(&out.stderr, &["invalid session name", "starts with '.'"]);
    let out = cli(&m.repo, &[os("create"), os("--prefix"), os("\u{e9}/../x")]);
    assert!(out.status.success(), "{out:?}");
    let made = String::from_utf8(out.stdout).unwrap();
    assert!(
        made.starts_with("__.._x"),
        "slug of a hostile prefix: {made:?}"
    );
    assert!(m.repo.join(format!("{}.session", made.trim())).is_dir());

    assert_eq!(
        names_in(m.root()),
        around,
        "something appeared next to the repository"
    );
    let mut inside = names_in(&m.repo);
    inside.retain(|n| !n.starts_with("__.._x"));
    assert_eq!(inside.len(), 2, "the repository holds {inside:?}");
    canary.assert_untouched();
}

#[test]
fn a_session_directory_linked_outside_is_never_followed() {
    let _serial = serial();
    let m = Mounted::start(&[]);
    let canary = Canary::new(&m.root().join("outside"));
    let etc_before = etc_state();
    symlink("/etc", m.repo_path("etc.session")).unwrap();
    symlink(&canary.dir, m.repo_path("canary.session")).unwrap();
    // A dangling one too.
    symlink(m.root().join("nowhere"), m.repo_path("dangling.session")).unwrap();
    fs::create_dir(m.repo_path("real.session")).unwrap();
    let input = m.root().join("input");
    fs::write(&input, checkpoint(9, 100)).unwrap();

    // Listing and reading: links are not sessions.
    let out = cli(&m.repo, &[os("list")]);
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("real"), "{listing}");
    for id in ["etc", "canary", "dangling"] {
        assert!(!listing.contains(id), "list shows the link {id}: {listing}");
        let out = cli(&m.repo, &[os("cat"), os(id)]);
        assert_eq!(out.status.code(), Some(4), "cat {id}: {out:?}");
        assert_clear_error(&out.stderr, &["no such session", id]);
    }
    // Changes, against the canary link only.
    for args in [
        vec![os("checkpoint"), os("canary"), input.as_os_str()],
        vec![os("break-lock"), os("canary")],
        vec![os("break-lock"), os("canary"), os("--force")],
        vec![os("remove"), os("canary")],
        vec![os("remove"), os("dangling")],
    ] {
        let out = cli(&m.repo, &args);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {out:?}");
        assert_clear_error(&out.stderr, &["no such session"]);
    }
    // gc removes real sessions only, never a link's target.
    let out = cli(&m.repo, &[os("gc"), os("--older-than"), os("0s")]);
    assert!(out.status.success(), "{out:?}");
    assert!(!m.repo_path("real.session").exists());
    assert!(fs::symlink_metadata(m.repo_path("canary.session")).is_ok());

    // Through the mount: the links are not there at all.
    let names = names_in(&m.mountpoint);
    assert!(names.is_empty(), "the mount shows {names:?}");
    for name in ["etc.session", "canary.session", "dangling.session"] {
        let e = fs::symlink_metadata(m.path(name)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{name}: {e}");
        assert!(fs::read(m.path(format!("{name}/passwd"))).is_err());
        assert!(fs::read(m.path(format!("{name}/canary.txt"))).is_err());
    }
    assert!(write_through(&m.path("canary.session/session"), &checkpoint(1, 64)).is_err());
    assert!(fs::remove_dir_all(m.path("canary.session")).is_err());
    let e = fs::create_dir(m.path("canary.session")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{e}");
    assert!(fs::read_dir(m.path("etc.session")).is_err());

    assert!(
        fs::symlink_metadata(m.repo_path("canary.session"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(etc_state(), etc_before, "/etc changed");
    for name in ["session", "session.next", "io-logs"] {
        assert!(
            !Path::new("/etc").join(name).exists(),
            "/etc/{name} appeared"
        );
    }
    canary.assert_untouched();
}

#[test]
fn links_inside_a_session_are_never_followed() {
    let _serial = serial();
    let m = Mounted::start(&[]);
    let canary = Canary::new(&m.root().join("outside"));
    let input = m.root().join("input");
    fs::write(&input, checkpoint(9, 100)).unwrap();
    // `session` linking to a file outside.
    fs::create_dir(m.repo_path("s.session")).unwrap();
    symlink(&canary.file, m.repo_path("s.session/session")).unwrap();
    // `session.next` linking outside (a planted lock).
    fs::create_dir(m.repo_path("n.session")).unwrap();
    fs::write(m.repo_path("n.session/session"), checkpoint(2, 100)).unwrap();
    symlink(&canary.file, m.repo_path("n.session/session.next")).unwrap();
    // io-logs linking to a directory outside.
    fs::create_dir(m.repo_path("d.session")).unwrap();
    symlink(&canary.dir, m.repo_path("d.session/io-logs")).unwrap();
    let n_next = m.repo_path("n.session/session.next");

    // Reading a linked checkpoint is refused, with the reason.
    let out = cli(&m.repo, &[os("cat"), os("s")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(&out.stderr, &["s.session/session", "symlink"]);
    let e = fs::read(m.path("s.session/session")).unwrap_err();
    assert!(e.raw_os_error().is_some(), "{e}");
    // The mount never hands the kernel a link to follow out of the
    // repository: `session` shows as an empty, unreadable file.
    let st = fs::symlink_metadata(m.path("s.session/session")).unwrap();
    assert!(!st.is_symlink() && st.len() == 0, "{st:?}");

    // The planted lock: locked, stale, and break-lock removes the link only.
    let out = cli(&m.repo, &[os("checkpoint"), os("n"), input.as_os_str()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_clear_error(&out.stderr, &["locked", "break-lock"]);
    let e = write_through(&m.path("n.session/session"), &checkpoint(3, 100)).unwrap_err();
    assert_eq!(e, ("open", libc::EBUSY));
    let out = cli(&m.repo, &[os("list")]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stale"),
        "{out:?}"
    );
    let out = cli(&m.repo, &[os("break-lock"), os("n")]);
    assert!(out.status.success(), "{out:?}");
    assert!(fs::symlink_metadata(&n_next).is_err());
    // And once more, removed through the mount.
    symlink(&canary.file, &n_next).unwrap();
    fs::remove_file(m.path("n.session/session.next")).unwrap();
    assert!(fs::symlink_metadata(&n_next).is_err());

    // Writing replaces the link with a checkpoint; the target is untouched.
    let out = cli(&m.repo, &[os("checkpoint"), os("s"), input.as_os_str()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        fs::symlink_metadata(m.repo_path("s.session/session"))
            .unwrap()
            .is_file()
    );
    assert_eq!(verify_file(&m.repo_path("s.session/session")), Ok(Some(9)));
    symlink(&canary.file, m.repo_path("s.session/link")).unwrap();
    fs::remove_file(m.repo_path("s.session/session")).unwrap();
    fs::rename(
        m.repo_path("s.session/link"),
        m.repo_path("s.session/session"),
    )
    .unwrap();
    write_through(&m.path("s.session/session"), &checkpoint(4, 100)).unwrap();
    assert_eq!(verify_file(&m.repo_path("s.session/session")), Ok(Some(4)));
    // `mv link session` in the mount cannot make a link the checkpoint.
    symlink(&canary.file, m.repo_path("s.session/link2")).unwrap();
    assert!(fs::rename(m.path("s.session/link2"), m.path("s.session/session")).is_err());
    assert_eq!(verify_file(&m.repo_path("s.session/session")), Ok(Some(4)));

    // Removing sessions that hold links to outside removes the links only.
    assert!(
        fs::symlink_metadata(m.path("d.session/io-logs"))
            .unwrap()
            .is_symlink()
    );
    fs::remove_dir_all(m.path("d.session")).unwrap();
    assert!(!m.repo_path("d.session").exists());
    let out = cli(&m.repo, &[os("remove"), os("s")]);
    assert!(out.status.success(), "{out:?}");
    assert!(!m.repo_path("s.session").exists());
    canary.assert_untouched();
}

#[test]
fn a_last_session_link_pointing_outside_or_at_a_file_is_ignored_and_never_deleted() {
    let _serial = serial();
    let m = Mounted::start(&[]);
    let canary = Canary::new(&m.root().join("outside"));
    // A session-shaped directory outside the repository.
    let outside_session = m.root().join("elsewhere/victim.session");
    fs::create_dir_all(outside_session.join("io-logs")).unwrap();
    fs::write(outside_session.join("session"), b"not yours").unwrap();
    fs::write(m.repo_path("file.session"), b"a file, not a session").unwrap();
    let link = m.repo_path("last-session");
    let targets: Vec<PathBuf> = vec![
        canary.dir.clone(),
        canary.file.clone(),
        outside_session.clone(),
        PathBuf::from("../elsewhere/victim.session"),
        m.repo_path("file.session"),
        PathBuf::from("/etc"),
        m.repo_path("../elsewhere/victim.session"),
    ];
    for target in &targets {
        let _ = fs::remove_file(&link);
        symlink(target, &link).unwrap();
        // Not shown: not a session of this repository.
        let out = cli(&m.repo, &[os("list")]);
        assert!(out.status.success(), "{out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("yes"),
            "list marks a last session for {target:?}: {out:?}"
        );
        assert!(
            !names_in(&m.mountpoint).contains(&"last-session".to_string()),
            "the mount shows last-session -> {target:?}"
        );
        // A legacy create replaces the link and deletes nothing outside.
        let out = cli(&m.repo, &[os("create"), os("--legacy")]);
        assert!(
            out.status.success(),
            "legacy create with {target:?}: {out:?}"
        );
        let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let now = fs::read_link(&link).unwrap();
        assert_eq!(now, m.repo_path(format!("{id}.session")), "{target:?}");
        assert!(outside_session.join("session").exists(), "{target:?}");
        assert!(m.repo_path("file.session").is_file());
        assert!(Path::new("/etc/passwd").exists());
    }
    // Through the mount: `ln -sfn` only to a session of this repository.
    let out = run_cmd(
        Command::new("ln")
            .arg("-sfn")
            .arg(&outside_session)
            .arg(m.path("last-session")),
    );
    assert!(!out.status.success(), "ln -sfn to outside worked: {out:?}");
    let out = run_cmd(
        Command::new("ln")
            .arg("-sfn")
            .arg("file.session")
            .arg(m.path("last-session")),
    );
    assert!(!out.status.success(), "ln -sfn to a file worked: {out:?}");
    assert_eq!(
        fs::read(outside_session.join("session")).unwrap(),
        b"not yours"
    );
    canary.assert_untouched();
}

#[test]
fn a_repository_that_is_a_file_is_refused_clearly() {
    let _serial = serial();
    let dir = scratch("sessionfs-repo-file");
    let file = dir.path().join("repo");
    fs::write(&file, b"I am a file").unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    for args in [
        vec!["list"],
        vec!["create"],
        vec!["cat", "x"],
        vec!["gc", "--older-than", "0s"],
        vec!["mount", mnt.to_str().unwrap()],
    ] {
        let out = run_cmd(sessionfs().arg("--repo").arg(&file).args(&args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_clear_error(&out.stderr, &["is not a directory", file.to_str().unwrap()]);
    }
    assert!(!common::mount::is_mounted(&mnt));
    assert_eq!(fs::read(&file).unwrap(), b"I am a file");
    // A repository path through a file.
    let out = run_cmd(
        sessionfs()
            .arg("--repo")
            .arg(file.join("sub"))
            .arg("create"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clear_error(&out.stderr, &["sub"]);
}

#[test]
fn sessions_created_and_removed_in_a_loop_while_ls_runs() {
    let _serial = serial();
    let m = Mounted::start(&[]);
    let canary = Canary::new(&m.root().join("outside"));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_millis(1500);
    // Through the mount: mkdir, write through the core, rm -r (no session
    // file is held open for writing in this process while ls is started).
    let mount_cycles = {
        let (mp, repo) = (m.mountpoint.clone(), Repository::new(&m.repo));
        thread::spawn(move || {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let name = format!("cycle-{n}.session");
                fs::create_dir(mp.join(&name)).expect("mkdir in the mount");
                repo.open(OsStr::new(&format!("cycle-{n}")))
                    .unwrap()
                    .save(&checkpoint(n, 2000))
                    .unwrap();
                let data = fs::read(mp.join(&name).join("session")).expect("read");
                assert_eq!(verify(&data), Ok(n));
                fs::remove_dir_all(mp.join(&name)).expect("rm -r in the mount");
                n += 1;
            }
            n
        })
    };
    // With the command line.
    let cli_cycles = {
        let repo = m.repo.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let out = run_cmd(sessionfs().arg("--repo").arg(&repo).arg("create"));
                assert!(out.status.success(), "{out:?}");
                let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
                let out = run_cmd(sessionfs().arg("--repo").arg(&repo).arg("remove").arg(&id));
                assert!(out.status.success(), "{out:?}");
                n += 1;
            }
            n
        })
    };
    // `ls` all along: plain ls never fails; ls -l may only miss an entry
    // that vanished between listing and stat.
    let lister = {
        let (mp, stop) = (m.mountpoint.clone(), stop.clone());
        thread::spawn(move || {
            let (mut runs, mut bad) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let plain = run_cmd(Command::new("ls").arg("-a").arg(&mp).stdin(Stdio::null()));
                if !plain.status.success() {
                    bad.push(format!("ls: {plain:?}"));
                }
                let long = run_cmd(Command::new("ls").arg("-laR").arg(&mp));
                let err = String::from_utf8_lossy(&long.stderr);
                if !long.status.success()
                    && err
                        .lines()
                        .any(|l| !l.contains("No such file or directory"))
                {
                    bad.push(format!("ls -laR: {err}"));
                }
                runs += 1;
            }
            (runs, bad)
        })
    };
    let mounted = mount_cycles.join().expect("mount cycles");
    let created = cli_cycles.join().expect("cli cycles");
    stop.store(true, Ordering::Relaxed);
    let (runs, bad) = lister.join().expect("ls thread");
    assert!(bad.is_empty(), "ls failed: {bad:?}");
    eprintln!("{mounted} mount cycles, {created} command-line cycles, {runs} ls runs");
    assert!(mounted > 5 && created > 2 && runs > 2);
    // Nothing is left, in the repository or in the mount.
    assert_eq!(names_in(&m.repo), Vec::<String>::new());
    assert_eq!(names_in(&m.mountpoint), Vec::<String>::new());
    assert!(!m.log_text().contains("panicked"));
    canary.assert_untouched();
}

/// The watch on the canaries is real: a read, a write or a removal shows;
/// looking at a link to them does not.
#[test]
fn the_canary_notices_reads_writes_and_removals() {
    let dir = scratch("sessionfs-canary");
    let canary = Canary::new(&dir.path().join("outside"));
    symlink(&canary.file, dir.path().join("link")).unwrap();
    assert!(fs::symlink_metadata(dir.path().join("link")).is_ok());
    assert!(fs::read_link(dir.path().join("link")).is_ok());
    assert_eq!(canary.events(), Vec::<String>::new());
    fs::read(&canary.file).unwrap();
    assert!(!canary.events().is_empty(), "a read went unnoticed");
    fs::read_dir(&canary.dir).unwrap().for_each(drop);
    assert!(!canary.events().is_empty(), "a listing went unnoticed");
    fs::write(canary.dir.join("sub/new"), b"x").unwrap();
    assert!(!canary.events().is_empty(), "a write went unnoticed");
    fs::remove_file(canary.dir.join("sub/new")).unwrap();
    assert!(!canary.events().is_empty(), "a removal went unnoticed");
}
