//! Tests of [`crate::checkbox::read_checkpoint`] on checkpoints of every
//! format version, each status, and hostile input.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::checkbox::fixtures::{self, Writer, checkpoint, checkpoint_by, gzip, gzipped};
use crate::checkbox::*;
use crate::decode::Limits;
use serde_json::json;

const APP: &str = "com.canonical:checkbox-cli";

fn read(bytes: &[u8]) -> Result<Reading, CheckpointError> {
    read_checkpoint(bytes, Limits::default())
}

fn summary(bytes: &[u8]) -> Summary {
    match read(bytes) {
        Ok(Reading::Checkpoint(s)) => *s,
        other => panic!("not a checkpoint: {other:?}"),
    }
}

#[test]
fn every_format_version_from_1_to_11() {
    for version in 1..=11 {
        let s = summary(&gzipped(&checkpoint(
            version,
            &["incomplete", "strict_template_expansion"],
        )));
        let v = format!("version {version}");
        assert_eq!(s.format_version, version, "{v}");
        assert!(!s.newer_format(), "{v}");
        assert_eq!(s.encoding, Encoding::GzipJson, "{v}");
        assert_eq!(s.title.as_deref(), Some("demo"), "{v}");
        assert_eq!(s.flags, ["incomplete", "strict_template_expansion"], "{v}");
        assert_eq!(s.status, Status::Resumable, "{v}");
        assert_eq!(s.running_job.as_deref(), Some("ns::wait"), "{v}");
        // pass, fail, info, res have results; wait does not.
        assert_eq!((s.jobs_done, s.jobs_total), (4, 5), "{v}");
        assert_eq!(
            s.outcomes,
            BTreeMap::from([("fail".into(), 1), ("pass".into(), 3)]),
            "{v}"
        );
        assert_eq!(
            s.jobs_to_run,
            ["ns::pass", "ns::fail", "ns::wait", "ns::info"],
            "{v}"
        );
        assert!(s.problems.is_empty(), "{v}: {:?}", s.problems);
        assert_eq!(s.checkbox_refusal, None, "{v}");

        let pass = s.job("ns::pass").unwrap();
        assert_eq!(
            pass.outcome.as_deref(),
            Some("pass"),
            "{v}: the rerun counts"
        );
        assert_eq!(pass.attempts, 2, "{v}");
        assert_eq!(pass.return_code, Some(0), "{v}");
        assert_eq!(pass.execution_duration, Some(0.25), "{v}");
        let fail = s.job("ns::fail").unwrap();
        assert_eq!(fail.comments.as_deref(), Some("boom"), "{v}");
        assert_eq!(fail.return_code, Some(1), "{v}");
        let log = fail.io_log_filename.as_deref().unwrap();
        if version >= 5 {
            assert_eq!(log, "io-logs/ns__fail.record.gz", "{v}");
        } else {
            assert!(
                log.starts_with("/var/tmp/checkbox-ng/sessions/"),
                "{v}: {log}"
            );
        }

        // What each version adds.
        let app_id = (version >= 3).then_some(APP);
        assert_eq!(s.app_id.as_deref(), app_id, "{v}");
        let plan = (version >= 2).then_some("ns::tp");
        assert_eq!(s.test_plan.id.as_deref(), plan, "{v}");
        if version >= 2 {
            assert_eq!(s.test_plan.description.as_deref(), Some("A demo plan"));
            assert!(
                s.test_plan
                    .launcher
                    .as_deref()
                    .unwrap()
                    .starts_with("[launcher]")
            );
        }
        let start = (version >= 7).then_some(1_764_582_167.25);
        assert_eq!(s.last_job_start_time, start, "{v}");
        assert_eq!(
            s.remaining_todo_jobs,
            (version >= 11).then_some(true),
            "{v}"
        );
        // Before version 4 the job not run yet is listed, with no outcome.
        let wait = s.job("ns::wait");
        if version <= 3 {
            let wait = wait.unwrap();
            assert_eq!(wait.outcome, None);
            assert_eq!(wait.inline_io_log_records, Some(0));
        } else {
            assert!(wait.is_none(), "{v}");
        }
        // Checkbox resumes only its own sessions, and before version 3
        // there is no app_id to match.
        assert_eq!(s.would_offer_resume(APP), version >= 3, "{v}");
        assert_eq!(s.resumable_by_its_app(), version >= 3, "{v}");
        assert!(!s.clearable_by_its_app(), "{v}");
        let utc = (version >= 7).then(|| "2025-12-01 09:42:47".to_string());
        assert_eq!(s.last_job_start_utc(), utc, "{v}");
        assert!(!s.would_offer_resume("checkbox"), "{v}");
        assert!(!s.would_clear(APP), "{v}");
    }
}

#[test]
fn the_real_plainbox_0_38_checkpoint() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/plainbox-0.38-demo.session"
    ))
    .unwrap();
    let s = summary(&bytes);
    assert_eq!(s.format_version, 6);
    assert_eq!(s.title.as_deref(), Some("demo"));
    assert_eq!(s.flags, ["incomplete"]);
    assert_eq!(s.status, Status::Resumable);
    assert_eq!(s.app_id, None);
    assert_eq!((s.jobs_done, s.jobs_total), (0, 0));
    assert!(s.outcomes.is_empty() && s.jobs.is_empty());
    assert_eq!(s.running_job, None);
    assert_eq!(s.test_plan, TestPlan::default());
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    // checkbox-ng cannot peek at plainbox 0.38's version 6.
    assert_eq!(
        s.checkbox_refusal.as_deref(),
        Some("metadata \"custom_joblist\" is missing")
    );
    assert!(!s.would_clear(APP) && !s.would_offer_resume(APP));
    let plain = summary(&fixtures::gzip(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/plainbox-0.38-demo.json"
        ))
        .unwrap(),
    ));
    assert_eq!(plain, s);
}

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn real_checkbox_1_18_1_and_main_checkpoints() {
    // Made by tests/data/make_checkbox_checkpoint.py with Checkbox's own
    // plainbox: 1.18.1 (version 7) and main (version 11).
    for (name, version, flags) in [
        ("checkbox-1.18.1-v7.session", 7, &["incomplete"][..]),
        (
            "checkbox-main-v11.session",
            11,
            &["incomplete", "strict_template_expansion"][..],
        ),
    ] {
        let s = summary(&data(name));
        assert_eq!(s.format_version, version, "{name}");
        assert_eq!(s.flags, flags, "{name}");
        assert_eq!(s.status, Status::Resumable);
        assert_eq!(s.title.as_deref(), Some("demo"));
        assert_eq!(s.app_id.as_deref(), Some(APP));
        assert_eq!(s.running_job.as_deref(), Some("ns::wait"));
        assert_eq!(s.last_job_start_time, Some(1_764_582_167.25));
        assert_eq!(s.remaining_todo_jobs, (version == 11).then_some(true));
        assert_eq!(s.test_plan.id.as_deref(), Some("ns::tp"));
        assert_eq!(s.test_plan.description.as_deref(), Some("A demo plan"));
        assert_eq!(s.test_plan.launcher, None);
        // Checkbox puts the mandatory jobs first in desired_job_list.
        assert_eq!(
            s.jobs_to_run,
            ["ns::info", "ns::pass", "ns::fail", "ns::wait"]
        );
        assert_eq!((s.jobs_done, s.jobs_total), (3, 4));
        assert_eq!(
            s.outcomes,
            BTreeMap::from([("fail".into(), 1), ("pass".into(), 2)])
        );
        let fail = s.job("ns::fail").unwrap();
        assert_eq!(fail.outcome.as_deref(), Some("fail"));
        assert_eq!(fail.return_code, Some(1));
        assert_eq!(fail.comments.as_deref(), Some("boom"));
        assert_eq!(fail.execution_duration, Some(0.5));
        assert_eq!(
            fail.io_log_filename.as_deref(),
            Some("io-logs/ns__fail.record.gz")
        );
        assert_eq!(s.checkbox_refusal, None, "{name}");
        assert!(s.problems.is_empty(), "{name}: {:?}", s.problems);
        assert!(s.would_offer_resume(APP) && !s.would_clear(APP));
    }
}

#[test]
fn plainbox_0_38_version_6_from_the_fixture_builder() {
    let s = summary(&gzipped(&checkpoint_by(
        6,
        &["submitted"],
        Writer::Plainbox038,
    )));
    assert_eq!(s.status, Status::Submitted);
    assert!(s.checkbox_refusal.is_some());
    assert!(!s.would_clear(APP));
    let s = summary(&gzipped(&checkpoint_by(
        6,
        &["submitted"],
        Writer::Checkbox,
    )));
    assert!(s.would_clear(APP));
}

#[test]
fn each_status_and_what_checkbox_does_with_it() {
    // (flags, status, offered for resume, cleared by --clear-old-sessions)
    // What Checkbox main's own SessionAssistant answers for these flags
    // (tests/data/checkbox_rules.py; 1.18.1 answers the same but does not
    // resume `setting_up`, a flag it never sets).
    let cases: [(&[&str], Status, bool, bool); 7] = [
        (
            &["incomplete", "strict_template_expansion"],
            Status::Resumable,
            true,
            false,
        ),
        (&["setting_up"], Status::Resumable, true, false),
        (
            &["submitted", "strict_template_expansion"],
            Status::Submitted,
            false,
            true,
        ),
        (&["bootstrapping"], Status::Bootstrapping, false, true),
        (&[], Status::NoFlags, false, true),
        (
            &["strict_template_expansion"],
            Status::FinishedNotSubmitted,
            false,
            false,
        ),
        (&["incomplete", "submitted"], Status::Resumable, true, true),
    ];
    for version in [7, 11] {
        for (flags, status, resume, clear) in cases {
            let s = summary(&gzipped(&checkpoint(version, flags)));
            assert_eq!(s.status, status, "v{version} {flags:?}");
            assert_eq!(s.would_offer_resume(APP), resume, "v{version} {flags:?}");
            assert_eq!(s.would_clear(APP), clear, "v{version} {flags:?}");
            assert_eq!(s.resumable_by_its_app(), resume);
            assert_eq!(s.clearable_by_its_app(), clear);
            // Another application's session is neither.
            assert!(!s.would_offer_resume("checkbox") && !s.would_clear("checkbox"));
        }
    }
}

#[test]
fn plain_json_is_read_but_checkbox_would_not_read_it() {
    let doc = checkpoint(7, &["submitted"]);
    let s = summary(serde_json::to_string_pretty(&doc).unwrap().as_bytes());
    assert_eq!(s.encoding, Encoding::Json);
    assert_eq!(s.status, Status::Submitted);
    assert_eq!(
        s.checkbox_refusal.as_deref(),
        Some("it is not gzip-compressed")
    );
    assert!(!s.would_clear(APP));
}

#[test]
fn a_newer_version_is_read_as_far_as_it_goes() {
    let mut doc = checkpoint(11, &["incomplete"]);
    doc["version"] = 99.into();
    doc["session"]["metadata"]["title"] = json!({"i18n": "demo"});
    doc["session"]["new_thing"] = json!([[1], {"a": null}]);
    let s = summary(&gzipped(&doc));
    assert_eq!(s.format_version, 99);
    assert!(s.newer_format());
    assert_eq!(s.title, None);
    assert_eq!(s.problems, ["metadata \"title\" is an object"]);
    assert_eq!(s.running_job.as_deref(), Some("ns::wait"));
    assert_eq!((s.jobs_done, s.jobs_total), (4, 5));
    assert_eq!(
        s.checkbox_refusal.as_deref(),
        Some("format version 99 is unsupported")
    );
    assert!(!s.would_offer_resume(APP));
    assert_eq!(s.to_json()["format_version"], 99);
}

#[test]
fn fields_of_the_wrong_type_are_named_not_fatal() {
    let mut doc = checkpoint(7, &["incomplete"]);
    let m = &mut doc["session"]["metadata"];
    m["flags"] = json!(["incomplete", 7]);
    m["running_job_name"] = json!(3);
    m["app_blob"] = json!("not base64!");
    doc["session"]["results"]["ns::fail"] = json!({"outcome": "fail"});
    doc["session"]["results"]["ns::pass"][1]["return_code"] = json!("0");
    doc["session"]["desired_job_list"] = json!("ns::pass");
    let s = summary(&gzipped(&doc));
    assert_eq!(s.flags, ["incomplete"]);
    assert_eq!(s.running_job, None);
    assert_eq!(s.test_plan, TestPlan::default());
    assert_eq!(s.job("ns::pass").unwrap().return_code, None);
    assert!(s.job("ns::fail").is_none());
    assert_eq!(
        s.problems,
        [
            "metadata \"flags\" holds 1 item(s) that are not strings",
            "metadata \"running_job_name\" is an integer",
            "metadata \"app_blob\" is not base64: base64 text of 11 characters (not a multiple of 4)",
            "session.desired_job_list is a string",
            "the results of \"ns::fail\" are an object",
            "the return_code of \"ns::pass\" is a string",
        ]
    );
    assert!(s.checkbox_refusal.is_some());
    // Done: pass, info, res; to run: info (the desired list is unreadable).
    assert_eq!((s.jobs_done, s.jobs_total), (3, 3));
}

#[test]
fn the_list_json_row() {
    let s = summary(&gzipped(&checkpoint(11, &["strict_template_expansion"])));
    assert_eq!(
        s.to_json(),
        json!({
            "title": "demo", "app_id": APP, "flags": ["strict_template_expansion"],
            "status": "finished-not-submitted", "jobs_done": 4, "jobs_total": 5,
            "outcomes": {"fail": 1, "pass": 3}, "running_job": "ns::wait",
            "format_version": 11,
        })
    );
    let nulls = Summary::null_json();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&nulls), keys(&s.to_json()));
    assert!(
        nulls
            .as_object()
            .unwrap()
            .values()
            .all(serde_json::Value::is_null)
    );
}

#[test]
fn opaque_data_is_not_an_error() {
    assert_eq!(read(b"").unwrap(), Reading::Opaque(Opaque::Empty));
    for data in [
        &b"hello"[..],
        b"\x00\x01\x02",
        b"42",
        b"  \"text\"",
        b"{not json",
    ] {
        assert_eq!(
            read(data).unwrap(),
            Reading::Opaque(Opaque::NotJson),
            "{data:?}"
        );
    }
}

#[test]
fn json_that_is_not_a_checkpoint() {
    let cases: [(&str, &str); 6] = [
        ("[1, 2]", "the document is a list, not an object"),
        (r#"{"a": 1}"#, "it has no \"version\""),
        (r#"{"version": 6}"#, "it has no \"session\""),
        (
            r#"{"version": 6, "session": [1]}"#,
            "\"session\" is a list, not an object",
        ),
        (
            r#"{"version": 6, "session": null}"#,
            "\"session\" is null, not an object",
        ),
        ("[6, {}]", "the document is a list, not an object"),
    ];
    for (text, detail) in cases {
        for bytes in [text.as_bytes().to_vec(), gzip(text.as_bytes())] {
            match read(&bytes) {
                Err(e @ CheckpointError::NotACheckpoint { .. }) => {
                    assert!(e.is_not_checkbox());
                    assert_eq!(
                        e.to_string(),
                        format!("the checkpoint is JSON but not a Checkbox checkpoint: {detail}")
                    );
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
    // gzip of something else: not opaque, an error.
    let e = read(&gzip(b"hello")).unwrap_err();
    assert!(matches!(e, CheckpointError::GzipNotJson { .. }), "{e}");
    assert!(!e.is_not_checkbox());
    let e = read(&gzip(b"{} trailing")).unwrap_err();
    assert!(matches!(e, CheckpointError::GzipNotJson { .. }), "{e}");
}

#[test]
fn versions_that_are_not_versions() {
    for (version, shown) in [
        ("0", "0"),
        ("-3", "-3"),
        ("6.5", "6.5"),
        ("\"7\"", "\"7\""),
        ("null", "null"),
        ("true", "a boolean"),
    ] {
        let text = format!(r#"{{"version": {version}, "session": {{}}}}"#);
        match read(&gzip(text.as_bytes())) {
            Err(CheckpointError::UnknownVersion { version }) => assert_eq!(version, shown),
            other => panic!("{text}: {other:?}"),
        }
    }
    let e = CheckpointError::UnknownVersion {
        version: "0".into(),
    };
    assert_eq!(
        e.to_string(),
        "the checkpoint has an unknown format version 0"
    );
}

#[test]
fn truncated_and_corrupt_gzip() {
    let whole = gzipped(&checkpoint(7, &["incomplete"]));
    for cut in [1, 2, 10, whole.len() / 2, whole.len() - 8, whole.len() - 1] {
        match read(&whole[..cut]) {
            Err(CheckpointError::CorruptGzip { detail }) => {
                if cut > 10 {
                    assert_eq!(detail, "the stream is truncated", "cut {cut}");
                }
            }
            Ok(Reading::Opaque(_)) if cut == 1 => {}
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    let mut bad_crc = whole.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0xff;
    assert!(matches!(
        read(&bad_crc),
        Err(CheckpointError::CorruptGzip { .. })
    ));
    let mut flipped = whole;
    flipped[20] ^= 0x55;
    assert!(read(&flipped).is_err());
}

#[test]
fn a_gzip_bomb_stops_at_the_limit() {
    let limits = Limits {
        max_decoded: 1 << 20,
        max_output: 1 << 20,
    };
    // A valid document around 65 MiB of spaces, as a multi-member
    // gzip stream (compressing one MiB once keeps the test fast): a few
    // hundred KiB that inflate past 64 MiB.
    let head = br#"{"version": 7, "session": {"metadata": {"title": ""#;
    let mib = gzip(&vec![b' '; 1 << 20]);
    let mut bomb = gzip(head);
    for _ in 0..65 {
        bomb.extend_from_slice(&mib);
    }
    bomb.extend(gzip(br#""}}}"#));
    assert!(bomb.len() < 1 << 20);
    let e = read_checkpoint(&bomb[..], limits).unwrap_err();
    assert!(
        matches!(e, CheckpointError::TooLarge { limit } if limit == 1 << 20),
        "{e}"
    );
    assert_eq!(e.to_string(), "the decoded checkpoint exceeds 1 MiB");
    // The default limit is session.json's: 64 MiB.
    assert_eq!(Limits::default().max_decoded, 64 << 20);
    let e = read(&bomb).unwrap_err();
    assert!(
        matches!(e, CheckpointError::TooLarge { limit } if limit == 64 << 20),
        "{e}"
    );
    // Plain JSON past the limit too.
    let mut text = head.to_vec();
    text.resize(text.len() + (2 << 20), b' ');
    let e = read_checkpoint(&text[..], limits).unwrap_err();
    assert!(matches!(e, CheckpointError::TooLarge { .. }), "{e}");
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let mut text = br#"{"version": 7, "session": {"other": "#.to_vec();
    text.extend(std::iter::repeat_n(b'[', 100_000));
    let e = read(&gzip(&text)).unwrap_err();
    assert!(matches!(e, CheckpointError::GzipNotJson { .. }), "{e}");
    assert!(read(&text).is_ok_and(|r| r == Reading::Opaque(Opaque::NotJson)));
}

#[test]
fn a_read_error_is_reported() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
    }
    let e = read_checkpoint(Failing, Limits::default()).unwrap_err();
    assert!(
        matches!(e, CheckpointError::Read(ref io) if io.raw_os_error() == Some(libc::EIO)),
        "{e}"
    );
}

#[test]
fn a_hostile_io_log_path_is_shown_but_never_resolved() {
    let mut doc = checkpoint(7, &["incomplete"]);
    doc["session"]["results"]["ns::fail"][0]["io_log_filename"] = json!("../../etc/passwd");
    doc["session"]["results"]["ns::info"][0]["io_log_filename"] = json!("/etc/passwd");
    let s = summary(&gzipped(&doc));
    let id = std::ffi::OsStr::new(fixtures::SESSION_ID);
    let fail = s.job("ns::fail").unwrap();
    assert_eq!(fail.io_log_filename.as_deref(), Some("../../etc/passwd"));
    let refusal = fail.record_path(id, None).unwrap().unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::ParentDirectory);
    let info = s.job("ns::info").unwrap().record_path(id, None).unwrap();
    assert_eq!(info.unwrap_err().reason, RefusalReason::OutsideSession);
    let pass = s.job("ns::pass").unwrap().record_path(id, None).unwrap();
    assert_eq!(
        pass.unwrap(),
        std::path::Path::new("io-logs/ns__pass.record.gz")
    );
    // Old, absolute paths of this very session resolve inside it.
    let s = summary(&gzipped(&checkpoint(4, &[])));
    let pass = s.job("ns::pass").unwrap().record_path(id, None).unwrap();
    assert_eq!(
        pass.unwrap(),
        std::path::Path::new("io-logs/ns__pass.record.gz")
    );
    let mut doc = checkpoint(1, &[]);
    doc["session"]["results"]["ns::wait"][0]["io_log"] = json!([[0, "stdout", "eA=="]]);
    let s = summary(&gzipped(&doc));
    let wait = s.job("ns::wait").unwrap();
    assert_eq!(wait.record_path(id, None), None);
    assert_eq!(wait.inline_io_log_records, Some(1));
}
