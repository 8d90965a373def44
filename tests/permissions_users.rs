//! Other users: the mount honours the files' own owners and modes
//! (`default_permissions`), and without `--allow-other` no other user may
//! enter it at all. Two users are created for the test (and deleted after);
//! their commands run with `setpriv`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::process::Output;

use common::fs_helpers::*;
use common::mount::Mounted;
use common::users::User;

fn denied(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied")
}

/// The test directory must be traversable by other users, or every check
/// below would pass for the wrong reason.
fn open_up(m: &Mounted) {
    fs::set_permissions(m.root(), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_private_session_of_another_user_cannot_be_read_through_the_mount() {
    let owner = User::create("own");
    let other = User::create("oth");
    let m = Mounted::start(&["--allow-other"]);
    open_up(&m);
    // A private session of `owner`, and a public one of root.
    let private = m.repo_path("priv.session");
    fs::create_dir(&private).unwrap();
    fs::write(private.join("session"), checkpoint(1, 5000)).unwrap();
    for p in [&private, &private.join("session")] {
        chown(p, Some(owner.uid), Some(owner.gid)).unwrap();
    }
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(private.join("session"), fs::Permissions::from_mode(0o600)).unwrap();
    let public = m.repo_path("pub.session");
    fs::create_dir(&public).unwrap();
    fs::write(public.join("session"), checkpoint(2, 5000)).unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o755)).unwrap();

    let priv_dir = m.path("priv.session");
    let priv_file = m.path("priv.session/session");
    let pub_file = m.path("pub.session/session");

    // The other user: the public session reads; the private one does not.
    let out = other.run("cat", &[&pub_file]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(verify(&out.stdout), Ok(2));
    let out = other.run("cat", &[&priv_file]);
    assert!(denied(&out), "another user read a 0700 session: {out:?}");
    assert!(out.stdout.is_empty());
    let out = other.run("ls", &[&priv_dir]);
    assert!(denied(&out), "another user listed a 0700 session: {out:?}");
    // Writing is refused too: root's public checkpoint, the private one,
    // and a new session in root's repository.
    let out = other.sh("echo x > \"$1\"", &[&pub_file]);
    assert!(
        denied(&out),
        "another user wrote root's checkpoint: {out:?}"
    );
    let out = other.sh("echo x > \"$1\"", &[&priv_file]);
    assert!(denied(&out), "{out:?}");
    let out = other.run("mkdir", &[&m.path("mine.session")]);
    assert!(denied(&out), "{out:?}");
    assert_eq!(verify_file(&public.join("session")), Ok(Some(2)));
    assert_eq!(verify_file(&private.join("session")), Ok(Some(1)));
    assert!(!m.repo_path("mine.session").exists());

    // The owner reads and commits; the checkpoint keeps its owner and mode.
    let out = owner.run("cat", &[&priv_file]);
    assert!(out.status.success(), "the owner cannot read: {out:?}");
    assert_eq!(verify(&out.stdout), Ok(1));
    let input = m.root().join("input");
    fs::write(&input, checkpoint(3, 7000)).unwrap();
    fs::set_permissions(&input, fs::Permissions::from_mode(0o644)).unwrap();
    let out = owner.sh("cat \"$1\" > \"$2\"", &[&input, &priv_file]);
    assert!(out.status.success(), "the owner cannot commit: {out:?}");
    let st = fs::metadata(private.join("session")).unwrap();
    assert_eq!(verify_file(&private.join("session")), Ok(Some(3)));
    assert_eq!(
        (st.uid(), st.gid(), st.mode() & 0o7777),
        (owner.uid, owner.gid, 0o600)
    );
    // Still private to the other user after the commit.
    let out = other.run("cat", &[&priv_file]);
    assert!(denied(&out), "{out:?}");
    assert!(!private.join("session.next").exists());
}

#[test]
fn without_allow_other_other_users_cannot_enter_the_mount() {
    let other = User::create("out");
    let m = Mounted::start(&[]);
    open_up(&m);
    let public = m.repo_path("pub.session");
    fs::create_dir(&public).unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(public.join("session"), checkpoint(4, 100)).unwrap();
    // The same paths are fine for root.
    assert_eq!(
        verify(&fs::read(m.path("pub.session/session")).unwrap()),
        Ok(4)
    );
    for (cmd, path) in [
        ("ls", m.mountpoint.clone()),
        ("stat", m.mountpoint.clone()),
        ("cat", m.path("pub.session/session")),
        ("ls", m.path("pub.session")),
    ] {
        let out = other.run(cmd, &[&path]);
        assert!(
            denied(&out),
            "{cmd} {} as another user: {out:?}",
            path.display()
        );
    }
    // The repository itself is readable by them (0755): it is only the
    // mount that keeps them out.
    let out = other.run("cat", &[&public.join("session")]);
    assert!(out.status.success(), "{out:?}");
}
