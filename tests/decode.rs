//! Readable checkpoints: `sessionfs cat --decode ID` and the read-only
//! `session.json` view in each session directory of the mount, on real
//! plainbox checkpoints, plain JSON, opaque bytes, and damaged or hostile
//! gzip streams.
//!
//! Decided behaviour for a checkpoint that does not decode (opaque, empty,
//! truncated or corrupt gzip, past the 64 MiB decoded limit): `cat --decode`
//! exits 1 with one error line and prints nothing on stdout, and the mount
//! has no `session.json` (not listed, not found), with one info line in the
//! daemon's log for a damaged or hostile one.

mod common;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::{Mounted, errno_of, run};
use common::repo::TestRepo;
use flate2::Compression;
use flate2::write::GzEncoder;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
const ID: &str = "pbox-2026-11-22T02.28.00";

fn data(name: &str) -> PathBuf {
    Path::new(DATA).join(name)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A session directory `ID.session` in `repo` whose checkpoint is `bytes`.
fn put_session(repo: &Path, id: &str, bytes: &[u8]) -> PathBuf {
    let dir = repo.join(format!("{id}.session"));
    fs::create_dir_all(dir.join("io-logs")).unwrap();
    fs::write(dir.join("session"), bytes).unwrap();
    dir
}

/// A multi-member gzip file that inflates to `members` × 1 MiB of `byte`,
/// after `prefix` (its own member): a bomb of a few hundred bytes per MiB.
fn write_bomb(path: &Path, prefix: &[u8], byte: u8, members: usize) {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(&vec![byte; 1 << 20]).unwrap();
    let member = enc.finish().unwrap();
    let mut f = BufWriter::new(File::create(path).unwrap());
    f.write_all(&gzip(prefix)).unwrap();
    for _ in 0..members {
        f.write_all(&member).unwrap();
    }
    f.flush().unwrap();
}

fn cli(repo: &TestRepo, args: &[&str]) -> common::repo::CliOutput {
    common::repo::run(repo.cli_command(args), None)
}

// ----- sessionfs cat --decode -------------------------------------------

#[test]
fn cat_decode_shows_a_committed_plainbox_checkpoint() {
    let repo = TestRepo::new();
    put_session(
        repo.path(),
        ID,
        &fs::read(data("plainbox-0.38-demo.session")).unwrap(),
    );
    let out = cli(&repo, &["cat", "--decode", ID]);
    out.assert_ok();
    assert_eq!(
        out.stdout_text(),
        fs::read_to_string(data("plainbox-0.38-demo.json")).unwrap()
    );
    // Without --decode, the checkpoint's own bytes (gzip).
    let raw = cli(&repo, &["cat", ID]);
    raw.assert_ok();
    assert_eq!(&raw.stdout[..2], b"\x1f\x8b");
}

/// The Python that has plainbox 0.38 (scripts/test.sh sets it up).
fn plainbox_python() -> String {
    std::env::var("PLAINBOX_PYTHON").unwrap_or_else(|_| "/opt/plainbox-venv/bin/python".into())
}

/// What Python prints for the checkpoint with `json.dumps(indent=2)`.
fn python_pretty(session_file: &Path) -> String {
    let out = Command::new(plainbox_python())
        .arg("-c")
        .arg(
            "import gzip, json, sys\n\
             doc = json.loads(gzip.open(sys.argv[1]).read())\n\
             sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + '\\n')",
        )
        .arg(session_file)
        .output()
        .expect("run python");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_checkpoint_made_by_plainbox_now_decodes_as_python_prints_it() {
    let repo = TestRepo::new();
    let out = Command::new(plainbox_python())
        .arg(data("make_plainbox_checkpoint.py"))
        .arg(repo.path())
        .arg("démo \"quoted\" \\ tab\t/ ☃ \u{1}")
        .output()
        .unwrap_or_else(|e| panic!("run {} (PLAINBOX_PYTHON): {e}", plainbox_python()));
    assert!(
        out.status.success(),
        "plainbox failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let location = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let id = location
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .strip_suffix(".session")
        .unwrap()
        .to_string();
    let expected = python_pretty(&location.join("session"));
    assert!(expected.contains("démo"), "{expected}");

    let decoded = cli(&repo, &["cat", "--decode", &id]);
    decoded.assert_ok();
    assert_eq!(decoded.stdout_text(), expected);

    let dir = repo.root().to_path_buf();
    let m = Mounted::start_on(
        common::mount::scratch("sessionfs-decode"),
        dir.join("repo"),
        &[],
    );
    let view = m.path(format!("{id}.session/session.json"));
    assert_eq!(fs::read_to_string(&view).unwrap(), expected);
    assert_eq!(fs::metadata(&view).unwrap().len(), expected.len() as u64);
}

#[test]
fn cat_decode_of_plain_json_opaque_and_empty_checkpoints() {
    let repo = TestRepo::new();
    put_session(repo.path(), "plain", b"{\"b\":[1,2.5,null],\"a\":\"x\"}");
    put_session(repo.path(), "opaque", b"\x00\x01binary");
    put_session(repo.path(), "empty", b"");
    fs::create_dir(repo.path().join("none.session")).unwrap();

    let out = cli(&repo, &["cat", "--decode", "plain"]);
    out.assert_ok();
    assert_eq!(
        out.stdout_text(),
        "{\n  \"b\": [\n    1,\n    2.5,\n    null\n  ],\n  \"a\": \"x\"\n}\n"
    );
    for (id, words) in [
        ("opaque", "neither gzip-compressed JSON nor JSON"),
        ("empty", "empty"),
        ("none", "empty"),
    ] {
        let out = cli(&repo, &["cat", "--decode", id]);
        let line = out.assert_error(1);
        assert!(line.contains(words), "{id}: {line}");
        assert!(line.contains(id), "{id}: {line}");
        assert!(out.stdout.is_empty());
    }
    let out = cli(&repo, &["cat", "--decode", "missing"]);
    out.assert_error(4);
}

#[test]
fn cat_decode_refuses_damaged_and_hostile_gzip_with_one_line() {
    let repo = TestRepo::new();
    let whole = fs::read(data("plainbox-0.38-demo.session")).unwrap();
    put_session(repo.path(), "truncated", &whole[..whole.len() - 10]);
    let mut crc = whole.clone();
    let n = crc.len();
    crc[n - 5] ^= 0x55;
    put_session(repo.path(), "badcrc", &crc);
    put_session(repo.path(), "notjson", &gzip(b"hello, world"));
    // 2 GiB of zeros in ~2 MB, and a JSON string that never ends (96 MiB).
    let zeros = put_session(repo.path(), "zeros", b"");
    write_bomb(&zeros.join("session"), b"", 0, 2048);
    assert!(fs::metadata(zeros.join("session")).unwrap().len() < 8 << 20);
    let string = put_session(repo.path(), "string", b"");
    write_bomb(&string.join("session"), b"{\"a\":\"", b'a', 96);

    for (id, words) in [
        ("truncated", "truncated"),
        ("badcrc", "corrupt"),
        ("notjson", "does not hold JSON"),
        ("zeros", "does not hold JSON"),
        ("string", "decoded checkpoint exceeds 64 MiB"),
    ] {
        let started = Instant::now();
        let out = cli(&repo, &["cat", "--decode", id]);
        let line = out.assert_error(1);
        assert!(line.contains(words), "{id}: {line}");
        assert!(out.stdout.is_empty(), "{id}: printed a partial result");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{id} took {:?}",
            started.elapsed()
        );
    }
}

// ----- the session.json view ---------------------------------------------

fn errno_of_write(path: &Path) -> i32 {
    errno_of(fs::OpenOptions::new().write(true).open(path))
}

#[test]
fn the_view_shows_gzip_and_plain_json_and_nothing_else() {
    let m = Mounted::start(&[]);
    let demo = fs::read(data("plainbox-0.38-demo.session")).unwrap();
    let expected = fs::read_to_string(data("plainbox-0.38-demo.json")).unwrap();
    put_session(&m.repo, ID, &demo);
    put_session(&m.repo, "plain", b"[1, {\"k\": \"v\"}]");
    put_session(&m.repo, "opaque", b"not json at all");
    put_session(&m.repo, "truncated", &demo[..demo.len() / 2]);
    fs::create_dir(m.repo.join("new.session")).unwrap();

    let ls = |id: &str| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(m.path(format!("{id}.session")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(ls(ID), ["io-logs", "session", "session.json"]);
    assert_eq!(ls("plain"), ["io-logs", "session", "session.json"]);
    assert_eq!(ls("opaque"), ["io-logs", "session"]);
    assert_eq!(ls("truncated"), ["io-logs", "session"]);
    assert_eq!(ls("new"), ["session"]);
    for id in ["opaque", "truncated", "new"] {
        let p = m.path(format!("{id}.session/session.json"));
        assert_eq!(errno_of(fs::metadata(&p)), libc::ENOENT, "{id} has no view");
    }
    assert!(
        m.log_text()
            .contains("no session.json view: the checkpoint's gzip stream is corrupt"),
        "the damaged checkpoint is reported: {}",
        m.log_text()
    );

    let view = m.path(format!("{ID}.session/session.json"));
    assert_eq!(fs::read_to_string(&view).unwrap(), expected);
    let meta = fs::metadata(&view).unwrap();
    assert_eq!(meta.len(), expected.len() as u64);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o444);
    assert!(meta.is_file());
    assert_eq!(
        fs::read_to_string(m.path("plain.session/session.json")).unwrap(),
        "[\n  1,\n  {\n    \"k\": \"v\"\n  }\n]\n"
    );
    // `cat` and `cp` work as on any file.
    let ran = run(Command::new("cat").arg(&view));
    assert_eq!(ran.assert_ok(), expected.as_bytes());
    let copy = m.root().join("copy.json");
    run(Command::new("cp").arg(&view).arg(&copy)).assert_ok();
    assert_eq!(fs::read_to_string(&copy).unwrap(), expected);
    // Never part of the repository.
    assert!(!m.repo_path(format!("{ID}.session/session.json")).exists());
}

#[test]
fn the_view_follows_commits_and_cannot_be_changed() {
    let m = Mounted::start(&[]);
    let dir = put_session(&m.repo, "s", b"{\"v\":1}");
    let view = m.path("s.session/session.json");
    assert_eq!(fs::read_to_string(&view).unwrap(), "{\n  \"v\": 1\n}\n");

    // A new checkpoint, committed through the mount: the view follows.
    fs::write(m.path("s.session/session"), gzip(b"{\"v\":[2,3]}")).unwrap();
    assert_eq!(
        fs::read_to_string(&view).unwrap(),
        "{\n  \"v\": [\n    2,\n    3\n  ]\n}\n"
    );
    // And committed outside the mount.
    fs::write(dir.join("session"), b"{\"v\":\"outside\"}").unwrap();
    assert_eq!(
        fs::read_to_string(&view).unwrap(),
        "{\n  \"v\": \"outside\"\n}\n"
    );
    assert_eq!(fs::metadata(&view).unwrap().len(), 21);

    // An open sees one version even while another is committed.
    let mut held = File::open(&view).unwrap();
    fs::write(dir.join("session"), b"{\"v\":\"next\"}").unwrap();
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut held, &mut seen).unwrap();
    assert_eq!(seen, "{\n  \"v\": \"outside\"\n}\n");
    drop(held);

    // Writes, truncation, attribute changes and renames are refused.
    assert_eq!(errno_of_write(&view), libc::EPERM);
    let sh = |script: &str| {
        run(Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&view))
    };
    sh("echo x > \"$1\"").assert_fails();
    sh("echo x >> \"$1\"").assert_fails();
    assert_eq!(
        errno_of(
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&view)
        ),
        libc::EPERM
    );
    sh("truncate -s 0 \"$1\"").assert_fails();
    sh("chmod 666 \"$1\"").assert_fails();
    assert_eq!(
        errno_of(fs::rename(&view, m.path("s.session/moved.json"))),
        libc::EPERM
    );
    assert_eq!(
        fs::read_to_string(m.repo_path("s.session/session")).unwrap(),
        "{\"v\":\"next\"}",
        "the checkpoint is untouched"
    );
    assert!(!m.repo_path("s.session/session.json").exists());
    assert!(
        m.log_text().contains("session.json is a read-only view"),
        "refusals are logged with the reason: {}",
        m.log_text()
    );

    // `rm` of the view does nothing (it comes back); `rm -r` of the session
    // removes it.
    fs::remove_file(&view).unwrap();
    assert!(view.exists());
    run(Command::new("rm").arg("-r").arg(m.path("s.session"))).assert_ok();
    assert!(!dir.exists());
}

#[test]
fn a_real_session_json_wins_over_the_view() {
    let m = Mounted::start(&[]);
    let dir = put_session(&m.repo, "s", b"{\"v\":1}");
    fs::write(dir.join("session.json"), b"mine").unwrap();
    assert_eq!(fs::read(m.path("s.session/session.json")).unwrap(), b"mine");
    let names: Vec<_> = fs::read_dir(m.path("s.session"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n == "session.json")
        .collect();
    assert_eq!(names.len(), 1, "listed once");
    // It is an ordinary file: writable, removable; then the view is back.
    fs::write(m.path("s.session/session.json"), b"changed").unwrap();
    assert_eq!(fs::read(dir.join("session.json")).unwrap(), b"changed");
    fs::remove_file(m.path("s.session/session.json")).unwrap();
    assert!(!dir.join("session.json").exists());
    assert_eq!(
        fs::read_to_string(m.path("s.session/session.json")).unwrap(),
        "{\n  \"v\": 1\n}\n"
    );
    // Where the checkpoint is not JSON, a session.json can be created.
    let other = put_session(&m.repo, "o", b"opaque");
    fs::write(m.path("o.session/session.json"), b"{}").unwrap();
    assert_eq!(fs::read(other.join("session.json")).unwrap(), b"{}");
}

#[test]
fn the_view_of_a_read_only_mount_refuses_writes_with_erofs() {
    let m = Mounted::start(&["-o", "ro"]);
    put_session(&m.repo, "s", &gzip(b"{\"ro\":true}"));
    let view = m.path("s.session/session.json");
    assert_eq!(fs::read_to_string(&view).unwrap(), "{\n  \"ro\": true\n}\n");
    assert_eq!(errno_of_write(&view), libc::EROFS);
}

/// The daemon's peak resident memory, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn hostile_gzip_gives_no_view_and_bounded_memory() {
    let m = Mounted::start(&[]);
    let zeros = put_session(&m.repo, "zeros", b"");
    write_bomb(&zeros.join("session"), b"", 0, 2048);
    let string = put_session(&m.repo, "string", b"");
    write_bomb(&string.join("session"), b"{\"a\":\"", b'a', 96);
    let deep = put_session(&m.repo, "deep", b"");
    write_bomb(&deep.join("session"), &b"[".repeat(100_000), b' ', 1);
    let pid = m.daemon_pid();
    let before = vm_hwm_kib(pid);

    for id in ["zeros", "string", "deep"] {
        let started = Instant::now();
        let p = m.path(format!("{id}.session/session.json"));
        assert_eq!(errno_of(fs::metadata(&p)), libc::ENOENT, "{id}");
        assert_eq!(errno_of(File::open(&p)), libc::ENOENT, "{id}");
        let names: Vec<_> = fs::read_dir(m.path(format!("{id}.session")))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!names.iter().any(|n| n == "session.json"), "{id}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{id} took {:?}",
            started.elapsed()
        );
        // The raw checkpoint still reads.
        assert_eq!(
            fs::metadata(m.path(format!("{id}.session/session")))
                .unwrap()
                .len(),
            fs::metadata(m.repo.join(format!("{id}.session/session")))
                .unwrap()
                .len()
        );
    }
    let log = m.log_text();
    assert!(log.contains("decoded checkpoint exceeds 64 MiB"), "{log}");
    assert!(log.contains("does not hold JSON"), "{log}");
    let after = vm_hwm_kib(pid);
    eprintln!("daemon VmHWM: {before} KiB before the bombs, {after} KiB after");
    assert!(
        after < 200 * 1024,
        "the daemon peaked at {after} KiB (before the bombs: {before} KiB)"
    );
}

#[test]
fn a_long_decode_does_not_hold_other_requests_up() {
    let m = Mounted::start(&[]);
    // ~40 MB of JSON: seconds to decode in a debug build.
    let mut doc = String::from("{\"jobs\":{");
    for i in 0..250_000 {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!(
            "\"job-{i:07}\":{{\"outcome\":\"pass\",\"comments\":\"{}\",\"n\":{i}}}",
            "c".repeat(100)
        ));
    }
    doc.push_str("}}");
    put_session(&m.repo, "big", doc.as_bytes());
    put_session(&m.repo, "small", &gzip(b"{\"small\":1}"));

    let view = m.path("big.session/session.json");
    let reader = std::thread::spawn(move || {
        let ran = run(Command::new("wc").arg("-c").arg(&view));
        (Instant::now(), ran)
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let root: Vec<_> = fs::read_dir(&m.mountpoint).unwrap().collect();
    assert_eq!(root.len(), 2);
    assert_eq!(
        fs::read_to_string(m.path("small.session/session.json")).unwrap(),
        "{\n  \"small\": 1\n}\n"
    );
    assert_eq!(
        fs::read(m.path("small.session/session")).unwrap(),
        gzip(b"{\"small\":1}")
    );
    fs::write(m.path("small.session/session"), b"[]").unwrap();
    let others_done = Instant::now();
    let (big_done, ran) = reader.join().unwrap();
    let count: u64 = ran
        .stdout_text()
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("wc: {ran:?}"));
    assert!(count > doc.len() as u64, "{count}");
    assert!(
        others_done < big_done,
        "the other requests ({:?}) waited for the decode (done {:?} after them)",
        others_done - started,
        big_done.saturating_duration_since(others_done)
    );
    eprintln!(
        "other requests took {:?}; the decode finished {:?} after them",
        others_done - started,
        big_done.saturating_duration_since(others_done)
    );
    assert!(others_done - started < Duration::from_secs(5));
}
