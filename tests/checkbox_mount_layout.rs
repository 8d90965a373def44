//! A mount of a repository laid out as Checkbox's (`--checkbox`): `mkdir`
//! makes a session as Checkbox makes one (`io-logs/` and `session-share/`),
//! and no `last-session` link can be made, since a symlink in Checkbox's
//! repository empties Checkbox's own listing.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::mount::Mounted;

#[test]
fn mkdir_makes_checkbox_sessions_and_last_session_is_refused() {
    let m = Mounted::start(&["--checkbox"]);
    let name = "my_run-2026-12-01T10.00.00.123456.session";
    fs::create_dir(m.path(name)).unwrap();
    for sub in ["io-logs", "session-share"] {
        assert!(m.repo.join(name).join(sub).is_dir(), "{sub}");
        assert!(m.path(name).join(sub).is_dir(), "{sub} in the mount");
    }
    for link in ["last-session", ".tmp-link"] {
        let err = symlink(name, m.path(link)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{link}: {err}");
    }
    let entries: Vec<String> = fs::read_dir(&m.repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, [name], "nothing but the session in the repository");
}

#[test]
fn a_plainbox_mount_keeps_its_layout() {
    let m = Mounted::start(&[]);
    let name = "pbox-2026-12-01T10.00.00.session";
    fs::create_dir(m.path(name)).unwrap();
    assert!(m.repo.join(name).join("io-logs").is_dir());
    assert!(!m.repo.join(name).join("session-share").exists());
    symlink(name, m.path("last-session")).unwrap();
    assert!(fs::symlink_metadata(m.repo.join("last-session")).is_ok());
}
