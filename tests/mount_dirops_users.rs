//! An unprivileged user in a session directory of a real mount
//! (`--allow-other`, in both I/O modes): everything it makes there is made
//! as it would be on the disk directly, and nothing gives it more: new
//! files, fifos, sockets, directories, symlinks and hard links belong to
//! it; a device node is refused (no CAP_MKNOD); a hard link to a file it
//! may not read is refused (`protected_hardlinks`); setuid and setgid bits
//! follow the kernel's rules; plainbox's exclusive create of
//! `session.next` takes the lock as the user. The daemon is root.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::Path;
use std::process::Output;

use common::mount::Mounted;
use common::users::User;

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {out:?}");
}

fn refused(out: &Output, what: &str, message: &str) {
    assert!(!out.status.success(), "{what} went through: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(message), "{what}: want {message:?}, got {err}");
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// `tag` names the test's users: each test has its own.
fn an_unprivileged_user_gets_what_the_disk_gives(tag: &str, args: &[&str]) {
    let u = User::create(&format!("{tag}u"));
    let other = User::create(&format!("{tag}o"));
    let mut all = vec!["--allow-other"];
    all.extend_from_slice(args);
    let m = Mounted::start(&all);
    fs::set_permissions(m.root(), fs::Permissions::from_mode(0o755)).unwrap();
    // Root's session, with a directory of the user's own and a shared
    // setgid directory of `other`'s group.
    fs::create_dir(m.path("s.session")).unwrap();
    fs::set_permissions(m.path("s.session"), fs::Permissions::from_mode(0o755)).unwrap();
    let repo = m.repo_path("s.session");
    let mine = m.path("s.session/mine");
    fs::create_dir(&mine).unwrap();
    chown(&mine, Some(u.uid), Some(u.gid)).unwrap();
    let shared = m.path("s.session/shared");
    fs::create_dir(&shared).unwrap();
    chown(&shared, Some(0), Some(other.gid)).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o2777)).unwrap();
    fs::write(m.path("s.session/secret"), b"root's").unwrap();
    fs::set_permissions(
        m.path("s.session/secret"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::write(m.path("s.session/suid"), b"").unwrap();
    fs::set_permissions(m.path("s.session/suid"), fs::Permissions::from_mode(0o6777)).unwrap();

    // What it makes in its own directory is its own.
    let script = r#"
        set -e
        cd "$1"
        : > file
        mkfifo fifo
        mkdir dir
        ln -s file sym
        ln file hard
        python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'
        chmod u+s,g+s file
    "#;
    ok(&u.sh(script, &[&mine]), "making files");
    for name in ["file", "fifo", "dir", "sym", "hard", "sock"] {
        assert_eq!(
            owner(&repo.join("mine").join(name)),
            (u.uid, u.gid),
            "{name} on disk"
        );
    }
    assert_eq!(
        mode(&repo.join("mine/file")) & 0o6000,
        0o6000,
        "its own bits"
    );
    assert_eq!(
        fs::metadata(mine.join("file")).unwrap().ino(),
        fs::metadata(mine.join("hard")).unwrap().ino(),
        "a hard link is the same inode through the mount"
    );
    // No device node, not even in its own directory.
    let dev = mine.join("null");
    refused(
        &u.sh("mknod \"$1\" c 1 3", &[&dev]),
        "a device node",
        "Operation not permitted",
    );
    assert!(fs::symlink_metadata(repo.join("mine/null")).is_err());
    // Nothing in root's directory.
    refused(
        &u.sh("mkfifo \"$1\"", &[&m.path("s.session/x")]),
        "a fifo in root's directory",
        "Permission denied",
    );
    // No hard link to root's file it may not read.
    if fs::read_to_string("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim() == "1") {
        refused(
            &u.sh(
                "ln \"$1\" \"$2\"",
                &[&m.path("s.session/secret"), &mine.join("stolen")],
            ),
            "a hard link to root's 0600 file",
            "Operation not permitted",
        );
        assert!(fs::symlink_metadata(repo.join("mine/stolen")).is_err());
    }
    // A setgid directory gives its group; setgid of a group the user is not
    // in is dropped.
    let script = r#"
        set -e
        cd "$1"
        : > f
        mkdir d
        chmod g+s f
    "#;
    ok(
        &u.sh(script, &[&shared]),
        "making files in a setgid directory",
    );
    assert_eq!(owner(&repo.join("shared/f")), (u.uid, other.gid));
    assert_eq!(owner(&repo.join("shared/d")), (u.uid, other.gid));
    assert_ne!(mode(&repo.join("shared/d")) & 0o2000, 0, "setgid inherited");
    assert_eq!(mode(&repo.join("shared/f")) & 0o2000, 0, "not in the group");
    // Writing root's setuid/setgid file clears both bits, as on disk.
    ok(
        &u.sh("echo x >> \"$1\"", &[&m.path("s.session/suid")]),
        "writing a world-writable setuid file",
    );
    assert_eq!(mode(&repo.join("suid")), 0o777);
    // No giving its file away, no chmod of root's.
    refused(
        &u.sh("chown 0 \"$1\"", &[&mine.join("file")]),
        "chown to root",
        "Operation not permitted",
    );
    refused(
        &u.sh("chmod 666 \"$1\"", &[&m.path("s.session/secret")]),
        "chmod of root's file",
        "Operation not permitted",
    );

    // Plainbox's lock, taken by the user in a session of its own.
    fs::create_dir(m.path("u.session")).unwrap();
    chown(m.repo_path("u.session"), Some(u.uid), Some(u.gid)).unwrap();
    let script = r#"
        set -e
        cd "$1"
        set -C
        printf 'by the user' > session.next
        mv session.next session
    "#;
    ok(
        &u.sh(script, &[&m.path("u.session")]),
        "plainbox's save as the user",
    );
    assert_eq!(
        fs::read(m.repo_path("u.session/session")).unwrap(),
        b"by the user"
    );
    assert_eq!(owner(&m.repo_path("u.session/session")), (u.uid, u.gid));
    assert!(!m.repo_path("u.session/session.next").exists());
}

#[test]
fn passthrough() {
    an_unprivileged_user_gets_what_the_disk_gives("dp", &[]);
}

#[test]
fn daemon_served() {
    an_unprivileged_user_gets_what_the_disk_gives("dd", &["--no-passthrough"]);
}
