//! Today's Checkbox from the command line, on fixtures built here from the
//! checkpoint format (versions 7 to 11, and a newer one): `--checkbox` and
//! its layout, `list`'s title/status/progress, `show` and `show --job`,
//! `gc --status`, `archive`, and every kind of bad input getting one line
//! and exit code 5. (The real checkbox-cli runs in tests/checkbox_real.rs.)

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo::{TestRepo, assert_no_panic, run, sessionfs_command};
use serde_json::{Value, json};

const BAD_DATA: i32 = 5;
const USAGE: i32 = 2;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A job's record.gz: `[delay, stream, base64]` lines.
fn record(chunks: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::new();
    for (stream, data) in chunks {
        text.push_str(&json!([0.01, stream, base64(data.as_bytes())]).to_string());
        text.push('\n');
    }
    gzip(text.as_bytes())
}

/// A Checkbox checkpoint of format `version` (7 to 11 and beyond, fields
/// where each version has them): jobs a (pass), b (fail, commented), c
/// (to run); `io_b` is b's `io_log_filename`.
fn checkpoint(version: u64, flags: &[&str], io_b: &str) -> Vec<u8> {
    let blob = base64(br#"{"testplan_id": "ns::plan", "description": "The plan"}"#);
    let mut metadata = json!({
        "title": "fixture run",
        "flags": flags,
        "running_job_name": "ns::c",
        "app_blob": blob,
        "app_id": "checkbox",
        "custom_joblist": false,
        "rejected_jobs": [],
        "last_job_start_time": 1_764_582_167.25,
    });
    if version >= 11 {
        metadata["remaining_todo_jobs"] = json!(true);
    }
    let mut session = json!({
        "jobs": {"ns::a": "1", "ns::b": "2", "ns::c": "3"},
        "results": {
            "ns::a": [{"outcome": "pass", "return_code": 0, "comments": null,
                       "execution_duration": 0.25,
                       "io_log_filename": "io-logs/ns__a.record.gz"}],
            "ns::b": [{"outcome": "fail", "return_code": 3, "comments": "it broke",
                       "execution_duration": 1.5, "io_log_filename": io_b}],
        },
        "desired_job_list": ["ns::a", "ns::b", "ns::c"],
        "mandatory_job_list": [],
        "metadata": metadata,
    });
    if version >= 8 {
        session["system_information"] = json!({});
    }
    gzip(
        json!({"version": version, "session": session})
            .to_string()
            .as_bytes(),
    )
}

/// A session `id` in `t`'s repository with `checkpoint` and a's record.
fn session(t: &TestRepo, id: &str, checkpoint: &[u8]) -> PathBuf {
    let dir = t.mkdir_session(id);
    fs::create_dir(dir.join("io-logs")).unwrap();
    fs::write(dir.join("session"), checkpoint).unwrap();
    fs::write(
        dir.join("io-logs/ns__a.record.gz"),
        record(&[
            ("stdout", "out 1\n"),
            ("stderr", "err 1\n"),
            ("stdout", "out 2\n"),
        ]),
    )
    .unwrap();
    dir
}

fn list_json(t: &TestRepo) -> Vec<Value> {
    let out = t.cli(["list", "--json", "--sort", "name"]);
    out.assert_ok();
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn list_shows_each_version_at_a_glance() {
    let t = TestRepo::new();
    for v in [7u64, 8, 9, 10, 11, 12] {
        session(
            &t,
            &format!("v{v:02}"),
            &checkpoint(
                v,
                &["incomplete", "strict_template_expansion"],
                "io-logs/ns__b.record.gz",
            ),
        );
    }
    let rows = list_json(&t);
    assert_eq!(rows.len(), 6);
    for (row, v) in rows.iter().zip([7u64, 8, 9, 10, 11, 12]) {
        assert_eq!(row["format_version"], v, "{row}");
        assert_eq!(row["title"], "fixture run");
        assert_eq!(row["app_id"], "checkbox");
        assert_eq!(row["status"], "resumable");
        assert_eq!(
            row["flags"],
            json!(["incomplete", "strict_template_expansion"])
        );
        assert_eq!(row["jobs_done"], 2);
        assert_eq!(row["jobs_total"], 3);
        assert_eq!(row["outcomes"], json!({"pass": 1, "fail": 1}));
        assert_eq!(row["running_job"], "ns::c");
        // The keys list had before are all still there.
        for key in [
            "id", "path", "created", "modified", "size", "locked", "last",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }
    let out = t.cli(["list"]);
    out.assert_ok();
    let text = out.stdout_text();
    let line = text.lines().find(|l| l.starts_with("v11 ")).unwrap();
    assert!(line.contains(" resumable "), "{text}");
    assert!(line.contains(" 2/3 "), "{text}");
    assert!(line.contains(" ns::c "), "{text}");
    assert!(line.ends_with(" fixture run"), "{text}");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn bad_checkpoints_never_fail_the_listing_and_warn_once() {
    let t = TestRepo::new();
    session(
        &t,
        "good",
        &checkpoint(11, &["submitted"], "io-logs/ns__b.record.gz"),
    );
    let good = checkpoint(11, &[], "x");
    session(&t, "truncated", &good[..good.len() / 2]);
    session(&t, "corrupt", &gzip(b"{\"version\": 7, \"session\": {"));
    session(&t, "foreign", br#"{"hello": "world"}"#);
    session(
        &t,
        "no-version",
        &gzip(br#"{"version": "seven", "session": {}}"#),
    );
    t.mkdir_session("empty");
    let rows = list_json(&t);
    assert_eq!(rows.len(), 6);
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        if id == "good" {
            assert_eq!(row["status"], "submitted");
        } else {
            for key in ["title", "status", "jobs_done", "format_version", "outcomes"] {
                assert_eq!(row[key], Value::Null, "{id}: {key}");
            }
        }
    }
    let out = t.cli(["list"]);
    out.assert_ok();
    let stderr = &out.stderr;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("warning: cannot read the checkpoint of"),
        "{stderr}"
    );
    assert!(stderr.contains("(and 2 other sessions)"), "{stderr}");
    assert_no_panic(stderr);
}

#[test]
fn bad_input_is_one_line_and_exit_code_5() {
    let t = TestRepo::new();
    let good = checkpoint(11, &[], "x");
    session(&t, "truncated", &good[..good.len() - 10]);
    session(&t, "not-json", &gzip(b"\x00\x01binary"));
    session(&t, "foreign", br#"{"hello": "world"}"#);
    session(
        &t,
        "bad-version",
        &gzip(br#"{"version": -1, "session": {}}"#),
    );
    // Decompresses to more than session.json's 64 MiB bound.
    let mut huge = br#"{"version": 7, "session": {"x": ""#.to_vec();
    huge.resize(65 << 20, b'a');
    huge.extend_from_slice(b"\"}}");
    session(&t, "huge", &gzip(&huge));
    for (id, says) in [
        ("truncated", "gzip"),
        ("not-json", "JSON"),
        ("foreign", "not a Checkbox checkpoint"),
        ("bad-version", "version"),
        ("huge", "exceeds 64 MiB"),
    ] {
        for args in [vec!["show", id], vec!["show", id, "--job", "ns::a"]] {
            let line = t.cli(&args).assert_error(BAD_DATA);
            assert!(line.contains(says), "{args:?}: {line}");
            assert!(line.contains(id), "{args:?}: {line}");
        }
    }
}

#[test]
fn show_tells_every_job_and_where_its_output_is() {
    let t = TestRepo::new();
    let dir = session(
        &t,
        "s",
        &checkpoint(
            11,
            &["strict_template_expansion"],
            "io-logs/ns__b.record.gz",
        ),
    );
    fs::write(dir.join("io-logs/ns__b.stdout"), "b out\n").unwrap();
    fs::write(dir.join("io-logs/ns__b.stderr"), "b err\n").unwrap();
    let out = t.cli(["show", "s"]);
    out.assert_ok();
    let text = out.stdout_text();
    for want in [
        "Title:        fixture run",
        "Test plan:    ns::plan (The plan)",
        "Status:       finished-not-submitted (flags: strict_template_expansion)",
        "Format:       version 11",
        "Last job start: 2025-12-01 09:42:47",
        "Last job:     ns::c\n",
        "Progress:     2/3 jobs (fail 1, pass 1)",
        "  ns::b\n    outcome:     fail\n    return code: 3\n    duration:    1.500s\n    comments:    it broke\n",
        "    output:      io-logs/ns__a.record.gz\n",
        "    output:      io-logs/ns__b.stdout and io-logs/ns__b.stderr (io-logs/ns__b.record.gz is missing)",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    // Both streams in the order the job wrote them.
    let out = t.cli(["show", "s", "--job", "ns::a"]);
    out.assert_ok();
    assert_eq!(out.stdout_text(), "out 1\nerr 1\nout 2\n");
    // The short name finds it too; without a record, .stdout then .stderr.
    let out = t.cli(["show", "s", "--job", "b"]);
    out.assert_ok();
    assert_eq!(out.stdout_text(), "b out\nb err\n");
    let line = t
        .cli(["show", "s", "--job", "ns::nope"])
        .assert_error(USAGE);
    assert!(line.contains("no result for job ns::nope"), "{line}");
    // A damaged record.
    fs::write(
        dir.join("io-logs/ns__a.record.gz"),
        &gzip(b"[1, \"stdout\"")[..10],
    )
    .unwrap();
    let line = t
        .cli(["show", "s", "--job", "ns::a"])
        .assert_error(BAD_DATA);
    assert!(line.contains("ns__a.record.gz"), "{line}");
}

#[test]
fn hostile_io_log_paths_are_never_read() {
    let t = TestRepo::new();
    let secret = t.outside("secret").join("passwd");
    fs::write(&secret, "root:secret\n").unwrap();
    let dir = session(&t, "h", &checkpoint(7, &[], "../../secret/passwd"));
    // A symlink planted as a record is not followed either.
    std::os::unix::fs::symlink(&secret, dir.join("io-logs/ns__a.record.gz")).ok();
    fs::remove_file(dir.join("io-logs/ns__a.record.gz")).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("io-logs/ns__a.record.gz")).unwrap();
    let out = t.cli(["show", "h"]);
    out.assert_ok();
    let text = out.stdout_text();
    assert!(text.contains("refused"), "{text}");
    assert!(!text.contains("root:secret"), "{text}");
    for job in ["ns::a", "ns::b"] {
        let out = t.cli(["show", "h", "--job", job]);
        let line = out.assert_error(BAD_DATA);
        assert!(!out.stdout_text().contains("secret"), "{job}");
        assert!(!line.contains("root:secret"), "{line}");
    }
    let line = t
        .cli(["show", "h", "--job", "ns::b"])
        .assert_error(BAD_DATA);
    assert!(line.contains("../../secret/passwd"), "{line}");
    let line = t
        .cli(["show", "h", "--job", "ns::a"])
        .assert_error(BAD_DATA);
    assert!(line.contains("symlink"), "{line}");
}

#[test]
fn gc_selects_by_status_as_checkbox_reads_the_flags() {
    let t = TestRepo::new();
    let io = "io-logs/ns__b.record.gz";
    session(&t, "running", &checkpoint(11, &["incomplete"], io));
    session(
        &t,
        "sent",
        &checkpoint(11, &["submitted", "strict_template_expansion"], io),
    );
    session(&t, "bare", &checkpoint(7, &[], io));
    session(
        &t,
        "unsent",
        &checkpoint(11, &["strict_template_expansion"], io),
    );
    session(&t, "broken", &gzip(b"{"));
    t.mkdir_session("plain");
    let would = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["gc", "--dry-run"];
        all.extend_from_slice(args);
        let out = t.cli(&all);
        out.assert_ok();
        let mut ids: Vec<String> = out
            .stdout_text()
            .lines()
            .map(|l| l.strip_prefix("would remove ").unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(would(&["--status", "old"]), ["bare", "sent"]);
    assert_eq!(would(&["--status", "finished-not-submitted"]), ["unsent"]);
    assert_eq!(
        would(&["--status", "resumable", "--status", "no-flags"]),
        ["bare", "running"]
    );
    assert_eq!(
        would(&["--status", "old", "--older-than", "1d"]),
        Vec::<String>::new()
    );
    assert_eq!(
        would(&["--status", "old", "--older-than", "0s"]),
        ["bare", "sent"]
    );
    let out = t.cli(["gc", "--status", "finished"]);
    assert_eq!(out.code, Some(USAGE));
    assert!(out.stderr.contains("unknown status"), "{}", out.stderr);
    assert_eq!(
        t.cli(["gc"]).code,
        Some(USAGE),
        "gc needs --older-than or --status"
    );
    // For real: only those go.
    let out = t.cli(["gc", "--status", "old"]);
    out.assert_ok();
    assert!(!t.path().join("sent.session").exists());
    assert!(!t.path().join("bare.session").exists());
    for kept in ["running", "unsent", "broken", "plain"] {
        assert!(t.path().join(format!("{kept}.session")).is_dir(), "{kept}");
    }
}

fn tar_list(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn archive_packs_the_committed_checkpoint_and_io_logs_only() {
    let t = TestRepo::new();
    let cp = checkpoint(11, &["incomplete"], "io-logs/ns__b.record.gz");
    let dir = session(&t, "s", &cp);
    fs::write(dir.join("io-logs/ns__b.stdout"), "b\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("io-logs/evil.record.gz")).unwrap();
    fs::write(dir.join("session.next"), b"half a checkpoint").unwrap();
    let out_dir = t.outside("out");
    let archive = out_dir.join("s.tar.gz");
    let out = t.cli([
        "archive".as_ref(),
        "s".as_ref(),
        "-o".as_ref(),
        archive.as_os_str(),
    ]);
    out.assert_ok();
    assert!(out.stderr.contains("leaving out"), "{}", out.stderr);
    assert_eq!(
        tar_list(&archive),
        [
            "s.session/",
            "s.session/session",
            "s.session/io-logs/",
            "s.session/io-logs/ns__a.record.gz",
            "s.session/io-logs/ns__b.stdout",
        ]
    );
    let extract = t.outside("extract");
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&extract)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(fs::read(extract.join("s.session/session")).unwrap(), cp);
    // --last is the session modified last; writing over a directory fails
    // and leaves nothing behind.
    let blocker = out_dir.join("busy.tar.gz");
    fs::create_dir(&blocker).unwrap();
    let out = t.cli([
        "archive".as_ref(),
        "--last".as_ref(),
        "-o".as_ref(),
        blocker.as_os_str(),
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("cannot rename"), "{}", out.stderr);
    let left: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["busy.tar.gz", "s.tar.gz"]);
    let line = t
        .cli([
            "archive".as_ref(),
            "nope".as_ref(),
            "-o".as_ref(),
            archive.as_os_str(),
        ])
        .assert_error(4);
    assert!(line.contains("no such session"), "{line}");
    // The archive is gzip: it reads back whole.
    let mut gz = flate2::read::GzDecoder::new(fs::File::open(&archive).unwrap());
    let mut all = Vec::new();
    gz.read_to_end(&mut all).unwrap();
    assert_eq!(all.len() % 512, 0);
}

#[test]
fn a_checkbox_repository_gets_checkbox_names_and_no_legacy_mode() {
    let t = TestRepo::new();
    let out = t.cli(["--checkbox", "create", "--prefix", "my title-"]);
    out.assert_ok();
    let id = out.stdout_text().trim().to_string();
    // slug(title) + %Y-%m-%dT%H.%M.%S.%f
    let stamp = id.strip_prefix("my_title-").unwrap();
    assert_eq!(stamp.len(), 26, "{id}");
    assert_eq!(&stamp[19..20], ".", "{id}");
    assert!(stamp[20..].bytes().all(|b| b.is_ascii_digit()), "{id}");
    let dir = t.path().join(format!("{id}.session"));
    assert!(dir.join("io-logs").is_dir());
    assert!(dir.join("session-share").is_dir());
    // Its creation time comes from the name, microseconds included.
    let rows = list_json(&t);
    assert_eq!(rows[0]["id"], id.as_str());
    let line = t
        .cli(["--checkbox", "create", "--legacy"])
        .assert_error(USAGE);
    assert!(line.contains("no legacy mode"), "{line}");
    assert!(fs::symlink_metadata(t.path().join("last-session")).is_err());
    assert_eq!(list_json(&t).len(), 1, "nothing was made");
    // Without --checkbox the same directory is plainbox's.
    let out = t.cli(["create"]);
    out.assert_ok();
    let plain = out.stdout_text().trim().to_string();
    assert_eq!(plain.len(), "pbox-".len() + 19, "{plain}");
    assert!(
        !t.path()
            .join(format!("{plain}.session/session-share"))
            .exists()
    );
}

#[test]
fn an_empty_default_repository_points_at_checkbox_sessions() {
    let t = TestRepo::new();
    session(&t, "cb", &checkpoint(7, &["incomplete"], "x"));
    let home = t.outside("home");
    let mut cmd = sessionfs_command();
    cmd.arg("list")
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("SESSIONFS_CHECKBOX_REPOSITORY", t.path());
    let out = run(cmd, None);
    out.assert_ok();
    assert_no_panic(&out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    let line = lines[0];
    assert!(line.contains("sessionfs --checkbox list"), "{line}");
    assert!(line.contains(&t.path().display().to_string()), "{line}");
    // And --checkbox shows them.
    let mut cmd = sessionfs_command();
    cmd.args(["--checkbox", "list", "--json"])
        .env("SESSIONFS_CHECKBOX_REPOSITORY", t.path());
    let out = run(cmd, None);
    out.assert_ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["id"], "cb");
    assert!(out.stderr.is_empty());
    // A repository given by the user gets no hint.
    let empty = TestRepo::new();
    let mut cmd = empty.cli_command(["list"]);
    cmd.env("SESSIONFS_CHECKBOX_REPOSITORY", t.path());
    let out = run(cmd, None);
    out.assert_ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn the_core_never_makes_last_session_in_a_checkbox_repository() {
    use sessionfs::core::{Layout, Repository};
    let t = TestRepo::new();
    let repo = Repository::with_layout(t.path(), Layout::Checkbox);
    assert_eq!(repo.layout(), Layout::Checkbox);
    let e = repo.create("x-", true).unwrap_err();
    assert!(e.to_string().contains("no legacy mode"), "{e}");
    let s = repo.create("x-", false).unwrap();
    assert!(s.location().join("session-share").is_dir());
    let e = repo.set_last_session(s.name()).unwrap_err();
    assert!(e.to_string().contains("no legacy mode"), "{e}");
    assert!(fs::symlink_metadata(t.path().join("last-session")).is_err());
    assert_eq!(repo.list().unwrap().len(), 1);
    // The same directory without a layout asked for is plainbox's.
    assert_eq!(Repository::new(t.path()).layout(), Layout::Plainbox);
}
