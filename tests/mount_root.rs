//! The root of the mount: exactly the repository's sessions plus
//! `last-session`, sessions made and removed with mkdir and rm -r, the
//! `last-session` link re-pointed with `ln -sfn`, and `tar` of it all.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use common::mount::{Mounted, errno_of, run};
use common::repo::pattern;

/// `ls -a DIR` through a real `ls`, as a set of names.
fn ls(dir: &Path) -> BTreeSet<String> {
    let out = run(Command::new("ls").arg("-a").arg(dir));
    out.assert_ok();
    out.stdout_text().lines().map(str::to_string).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_root_shows_the_sessions_and_last_session_and_nothing_else() {
    let m = Mounted::start(&[]);
    m.new_session("plain");
    // plainbox's legacy create: last-session holds an absolute path.
    let out = m.cli(["create", "--legacy", "--prefix", "legacy-"]);
    let id = out.stdout_text().trim().to_string();
    assert!(out.ok() && id.starts_with("legacy-"), "{out:?}");
    let legacy = format!("{id}.session");
    let target = fs::read_link(m.repo_path("last-session")).unwrap();
    assert!(target.is_absolute(), "{}", target.display());
    m.save(&id, b"the legacy checkpoint");

    // Things in the repository that are not sessions.
    let outside = m.root().join("outside");
    fs::create_dir_all(outside.join("io-logs")).unwrap();
    fs::write(outside.join("session"), b"outside canary").unwrap();
    fs::write(m.repo_path("notes.txt"), b"not a session").unwrap();
    fs::create_dir_all(m.repo_path(".hidden.session/io-logs")).unwrap();
    fs::create_dir(m.repo_path("other")).unwrap();
    symlink(&outside, m.repo_path("evil.session")).unwrap();
    symlink("/nonexistent/dir", m.repo_path("dangling.session")).unwrap();
    fs::write(m.repo_path("file.session"), b"a file, not a directory").unwrap();

    assert_eq!(
        ls(&m.mountpoint),
        names(&[".", "..", "last-session", "plain.session", &legacy])
    );
    let long = run(Command::new("ls").arg("-la").arg(&m.mountpoint)).stdout_text();
    assert!(
        long.lines()
            .any(|l| l.starts_with('l') && l.ends_with(&format!("last-session -> {legacy}"))),
        "ls -la: {long}"
    );
    // A relative link that resolves inside the mount.
    assert_eq!(
        fs::read_link(m.path("last-session")).unwrap(),
        Path::new(&legacy)
    );
    assert_eq!(
        fs::read(m.path("last-session/session")).unwrap(),
        b"the legacy checkpoint"
    );
    let via_link = run(Command::new("cat").arg(m.path("last-session/session")));
    assert_eq!(via_link.assert_ok(), b"the legacy checkpoint");

    for hidden in [
        "notes.txt",
        ".hidden.session",
        "other",
        "evil.session",
        "dangling.session",
        "file.session",
        "evil.session/session",
        ".hidden.session/session",
    ] {
        assert_eq!(
            errno_of(fs::symlink_metadata(m.path(hidden))),
            libc::ENOENT,
            "{hidden} is reachable through the mount"
        );
    }
    let cat = run(Command::new("cat").arg(m.path("evil.session/session")));
    cat.assert_fails();
    assert!(cat.stdout.is_empty());
    let find = run(Command::new("find").arg(&m.mountpoint));
    assert!(!find.stdout_text().contains("evil"), "{find:?}");
    assert_eq!(
        fs::read(outside.join("session")).unwrap(),
        b"outside canary"
    );
    // df works on the mount.
    run(Command::new("df").arg(&m.mountpoint)).assert_ok();
    m.assert_no_next();
}

#[test]
fn sessions_made_or_removed_in_the_repository_show_at_the_next_ls() {
    let m = Mounted::start(&[]);
    assert_eq!(ls(&m.mountpoint), names(&[".", ".."]));
    m.new_session("one");
    assert_eq!(ls(&m.mountpoint), names(&[".", "..", "one.session"]));
    let made = m.core().create("core-", false).unwrap();
    let core_name = made.name().as_os_str().to_string_lossy().into_owned();
    assert_eq!(
        ls(&m.mountpoint),
        names(&[".", "..", "one.session", &core_name])
    );
    assert!(m.path(&core_name).join("io-logs").is_dir());
    fs::remove_dir_all(m.repo_path("one.session")).unwrap();
    assert_eq!(ls(&m.mountpoint), names(&[".", "..", &core_name]));
    assert_eq!(errno_of(fs::metadata(m.path("one.session"))), libc::ENOENT);
    // A last-session made outside appears; removed, it goes.
    m.core().set_last_session(made.name()).unwrap();
    assert_eq!(
        ls(&m.mountpoint),
        names(&[".", "..", "last-session", &core_name])
    );
    fs::remove_dir_all(made.location()).unwrap();
    assert_eq!(ls(&m.mountpoint), names(&[".", ".."]));
    m.assert_no_next();
}

#[test]
fn changes_made_outside_show_in_stat_without_waiting_for_the_cache() {
    use std::os::unix::fs::MetadataExt;
    let m = Mounted::start(&[]);
    m.new_session("a");
    // Cached by the kernel: the root's attributes (0.1 s), the session
    // directory's entry (1 s).
    let before = fs::metadata(&m.mountpoint).unwrap();
    assert!(fs::metadata(m.path("a.session")).unwrap().is_dir());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let made = m.core().create("core-", false).unwrap();
    fs::remove_dir_all(m.repo_path("a.session")).unwrap();
    // The daemon watches the repository and drops both at once; give it
    // far less than either cache time.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let after = fs::metadata(&m.mountpoint).unwrap();
    let direct = fs::metadata(&m.repo).unwrap();
    assert_eq!(
        (after.ctime(), after.ctime_nsec()),
        (direct.ctime(), direct.ctime_nsec())
    );
    assert_ne!(
        (before.ctime(), before.ctime_nsec()),
        (after.ctime(), after.ctime_nsec())
    );
    assert_eq!(errno_of(fs::metadata(m.path("a.session"))), libc::ENOENT);
    assert!(m.path(made.name().as_os_str().to_str().unwrap()).is_dir());
}

#[test]
fn ln_sfn_re_points_last_session() {
    let m = Mounted::start(&[]);
    m.new_session("a");
    m.new_session("b");
    m.save("b", b"bee");
    // No link yet: ln -s makes one.
    m.sh("ln -s a.session \"$M/last-session\"").assert_ok();
    assert_eq!(
        fs::read_link(m.repo_path("last-session")).unwrap(),
        m.repo_path("a.session")
    );
    assert_eq!(
        fs::read_link(m.path("last-session")).unwrap(),
        Path::new("a.session")
    );
    // ln -sfn replaces it.
    m.sh("ln -sfn b.session \"$M/last-session\"").assert_ok();
    let target = fs::read_link(m.repo_path("last-session")).unwrap();
    assert!(target.is_absolute());
    assert_eq!(target, m.repo_path("b.session"));
    assert_eq!(
        fs::read_link(m.path("last-session")).unwrap(),
        Path::new("b.session")
    );
    assert_eq!(fs::read(m.path("last-session/session")).unwrap(), b"bee");
    // Writing through the link writes the session it names.
    m.sh("echo via-link > \"$M/last-session/session\"")
        .assert_ok();
    assert_eq!(m.checkpoint("b"), b"via-link\n");
    // Only to a session.
    for bad in ["missing.session", "../etc", "/etc", "a.session/io-logs"] {
        let out = m.sh(&format!("ln -sfn '{bad}' \"$M/last-session\""));
        out.assert_fails();
        assert_eq!(
            fs::read_link(m.repo_path("last-session")).unwrap(),
            m.repo_path("b.session"),
            "{bad}"
        );
    }
    assert_eq!(
        ls(&m.mountpoint),
        names(&[".", "..", "last-session", "a.session", "b.session"])
    );
    // rm last-session removes the link, not the session.
    m.sh("rm \"$M/last-session\"").assert_ok();
    assert!(fs::symlink_metadata(m.repo_path("last-session")).is_err());
    assert!(m.repo_path("b.session").is_dir());
    m.assert_no_next();
}

#[test]
fn mkdir_makes_sessions_and_refuses_other_names() {
    let m = Mounted::start(&[]);
    m.sh("mkdir \"$M/new.session\"").assert_ok();
    assert!(m.repo_path("new.session/io-logs").is_dir());
    assert_eq!(
        ls(&m.path("new.session")),
        names(&[".", "..", "io-logs", "session"])
    );
    assert_eq!(fs::read(m.path("new.session/session")).unwrap(), b"");
    let sh = m.sh("mkdir \"$M/other\"");
    assert!(sh.assert_fails().contains("Invalid argument"), "{sh:?}");
    assert_eq!(errno_of(fs::create_dir(m.path("other"))), libc::EINVAL);
    assert_eq!(
        errno_of(fs::create_dir(m.path(".hidden.session"))),
        libc::EINVAL
    );
    assert_eq!(errno_of(fs::create_dir(m.path(".session"))), libc::EINVAL);
    assert_eq!(
        errno_of(fs::create_dir(m.path("new.session"))),
        libc::EEXIST
    );
    let long = format!("{}.session", "x".repeat(300));
    assert_eq!(errno_of(fs::create_dir(m.path(&long))), libc::ENAMETOOLONG);
    // Nothing but directories are made in the root.
    assert_ne!(errno_of(fs::write(m.path("file"), b"x")), 0);
    assert_ne!(errno_of(fs::write(m.path("f.session"), b"x")), 0);
    let in_repo: BTreeSet<String> = fs::read_dir(&m.repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(in_repo, names(&["new.session"]));
    // The new session works as one.
    m.sh("echo hi > \"$M/new.session/session\"").assert_ok();
    assert_eq!(m.checkpoint("new"), b"hi\n");
    let list = m.cli(["list"]);
    assert!(list.stdout_text().contains("new"), "{list:?}");
    m.assert_no_next();
}

#[test]
fn rm_r_removes_a_session_and_nothing_outside() {
    let m = Mounted::start(&[]);
    m.new_session("doomed");
    m.new_session("kept");
    m.save("doomed", b"bye");
    let outside = m.root().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("canary"), b"still here").unwrap();
    fs::create_dir_all(m.repo_path("doomed.session/io-logs/deep/er")).unwrap();
    fs::write(m.repo_path("doomed.session/io-logs/deep/er/log"), b"log").unwrap();
    symlink(&outside, m.repo_path("doomed.session/io-logs/out")).unwrap();
    fs::write(m.repo_path("doomed.session/session.next"), b"stale").unwrap();

    assert_eq!(
        errno_of(fs::remove_file(m.path("doomed.session"))),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(fs::remove_dir(m.path("doomed.session"))),
        libc::ENOTEMPTY
    );
    m.sh("rm -r \"$M/doomed.session\"").assert_ok();
    assert!(!m.repo_path("doomed.session").exists());
    assert_eq!(ls(&m.mountpoint), names(&[".", "..", "kept.session"]));
    assert_eq!(fs::read(outside.join("canary")).unwrap(), b"still here");
    // An empty session (no checkpoint yet) goes too.
    m.sh("rm -r \"$M/kept.session\"").assert_ok();
    assert!(!m.repo_path("kept.session").exists());
    m.assert_no_next();
}

fn tar_of_the_whole_mount(m: &Mounted) {
    let mut want = Vec::new();
    for (i, size) in [0usize, 1, 4096, 100_000, 2 << 20].into_iter().enumerate() {
        let id = format!("s{i}");
        m.new_session(&id);
        let data = pattern(i as u8, size);
        m.save(&id, &data);
        fs::write(
            m.repo_path(format!("{id}.session/io-logs/log")),
            format!("log {i}"),
        )
        .unwrap();
        want.push((id, data));
    }
    m.new_session("empty");
    m.core()
        .set_last_session(&sessionfs::core::SessionName::new("s1.session".as_ref()).unwrap())
        .unwrap();
    let archive = m.root().join("all.tar");
    let out = run(Command::new("tar")
        .arg("cf")
        .arg(&archive)
        .arg("-C")
        .arg(&m.mountpoint)
        .arg("."));
    out.assert_ok();
    assert!(out.stderr.is_empty(), "tar complained: {}", out.stderr);
    let x = m.root().join("x");
    fs::create_dir(&x).unwrap();
    run(Command::new("tar")
        .arg("xf")
        .arg(&archive)
        .arg("-C")
        .arg(&x))
    .assert_ok();
    for (id, data) in &want {
        let got = fs::read(x.join(format!("{id}.session/session"))).unwrap();
        assert!(
            &got == data,
            "{id}: {} bytes, want {}",
            got.len(),
            data.len()
        );
        assert_eq!(
            fs::read_to_string(x.join(format!("{id}.session/io-logs/log"))).unwrap(),
            format!("log {}", &id[1..])
        );
    }
    assert_eq!(fs::read(x.join("empty.session/session")).unwrap(), b"");
    assert_eq!(
        fs::read_link(x.join("last-session")).unwrap(),
        Path::new("s1.session")
    );
    m.assert_no_next();
}

#[test]
fn tar_of_the_whole_mount_passthrough() {
    let m = Mounted::start(&[]);
    tar_of_the_whole_mount(&m);
    m.assert_passthrough(true);
}

#[test]
fn tar_of_the_whole_mount_daemon_served() {
    let m = Mounted::start(&["--no-passthrough"]);
    tar_of_the_whole_mount(&m);
    m.assert_passthrough(false);
}
