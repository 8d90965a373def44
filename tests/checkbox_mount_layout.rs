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

/// Next to each `io-logs/<job>.record.gz`, `<job>.record.txt` is the job's
/// output decoded; a record that does not decode, or a planted symlink,
/// has none; the view is read-only and `rm -r` of the session works.
#[test]
fn io_logs_show_each_record_decoded() {
    let m = Mounted::start(&[]);
    let name = "s.session";
    let logs = m.repo.join(name).join("io-logs");
    fs::create_dir_all(&logs).unwrap();
    let record = fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/checkbox-ns__pass.record.gz"),
    )
    .unwrap();
    fs::write(logs.join("ns__pass.record.gz"), &record).unwrap();
    fs::write(logs.join("ns__bad.record.gz"), &record[..record.len() / 2]).unwrap();
    symlink("/etc/passwd", logs.join("ns__evil.record.gz")).unwrap();
    fs::write(logs.join("ns__pass.stdout"), "one\nthree\n").unwrap();

    let view = m.path(name).join("io-logs/ns__pass.record.txt");
    assert_eq!(fs::read_to_string(&view).unwrap(), "one\ntwo\nthree\n");
    assert_eq!(fs::metadata(&view).unwrap().len(), 14);
    let mut listed: Vec<String> = fs::read_dir(m.path(name).join("io-logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "ns__bad.record.gz",
            "ns__evil.record.gz",
            "ns__pass.record.gz",
            "ns__pass.record.txt",
            "ns__pass.stdout"
        ]
    );
    for missing in ["ns__bad.record.txt", "ns__evil.record.txt"] {
        let err = fs::metadata(m.path(name).join("io-logs").join(missing)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{missing}");
    }
    let err = fs::OpenOptions::new().write(true).open(&view).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    assert!(
        !logs.join("ns__pass.record.txt").exists(),
        "nothing written"
    );
    // A real file of that name wins.
    fs::write(logs.join("ns__pass.record.txt"), "mine\n").unwrap();
    assert_eq!(fs::read_to_string(&view).unwrap(), "mine\n");
    fs::remove_file(logs.join("ns__pass.record.txt")).unwrap();
    fs::remove_dir_all(m.path(name)).unwrap();
    assert!(!m.repo.join(name).exists());
}
