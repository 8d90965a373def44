//! Checkpoints and io-logs for the tests, built as plainbox/Checkbox write
//! them (`SessionSuspendHelper1..11`, `IOLogRecordWriter`): compact JSON
//! with sorted keys, gzip-compressed.
//!
//! The session of every fixture: desired jobs `ns::pass` (passed),
//! `ns::fail` (failed, commented), `ns::wait` (running, no result yet);
//! mandatory `ns::info` (passed); resource `ns::res` (passed, run as a
//! dependency, not in either list).

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

/// The session directory's name in the fixtures.
pub(crate) const SESSION_ID: &str = "demo-2026-12-01T09.42.47.123456";

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Standard base64, padded (Python's `base64.standard_b64encode`).
pub(crate) fn b64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Which program wrote a version 6 checkpoint: they differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// plainbox 0.38: no `custom_joblist`, no `rejected_jobs`.
    Plainbox038,
    Checkbox,
}

fn result(
    version: u64,
    outcome: &str,
    rc: i64,
    duration: f64,
    comments: Value,
    slug: &str,
) -> Value {
    let name = if version >= 5 {
        format!("io-logs/{slug}.record.gz")
    } else {
        format!("/var/tmp/checkbox-ng/sessions/{SESSION_ID}/io-logs/{slug}.record.gz")
    };
    json!({
        "comments": comments,
        "execution_duration": duration,
        "io_log_filename": name,
        "outcome": outcome,
        "return_code": rc,
    })
}

/// A checkpoint of format `version` as Checkbox writes it, with `flags`.
pub(crate) fn checkpoint(version: u64, flags: &[&str]) -> Value {
    checkpoint_by(version, flags, Writer::Checkbox)
}

pub(crate) fn checkpoint_by(version: u64, flags: &[&str], writer: Writer) -> Value {
    let mut flags: Vec<&str> = flags.to_vec();
    flags.sort_unstable();
    let mut metadata = json!({
        "title": "demo",
        "flags": flags,
        "running_job_name": "ns::wait",
    });
    let m = metadata.as_object_mut().unwrap();
    if version >= 2 {
        let blob = json!({"testplan_id": "ns::tp", "description": "A demo plan",
                          "launcher": "[launcher]\nlauncher_version = 1\n"});
        m.insert("app_blob".into(), b64(blob.to_string().as_bytes()).into());
    }
    if version >= 3 {
        m.insert("app_id".into(), "com.canonical:checkbox-cli".into());
    }
    if version >= 6 && writer == Writer::Checkbox {
        m.insert("custom_joblist".into(), false.into());
        m.insert("rejected_jobs".into(), json!([]));
    }
    if version >= 7 {
        m.insert("last_job_start_time".into(), 1_764_582_167.25.into());
    }
    if version >= 11 {
        m.insert("remaining_todo_jobs".into(), true.into());
    }
    let mut results = json!({
        "ns::fail": [result(version, "fail", 1, 0.5, "boom".into(), "ns__fail")],
        "ns::info": [result(version, "pass", 0, 0.125, Value::Null, "ns__info")],
        // A rerun: the history keeps both, the last one counts.
        "ns::pass": [result(version, "fail", 2, 1.0, Value::Null, "ns__pass"),
                     result(version, "pass", 0, 0.25, Value::Null, "ns__pass")],
        "ns::res": [result(version, "pass", 0, 0.0625, Value::Null, "ns__res")],
    });
    if version <= 3 {
        // Before version 4 every job is in `results`, one not run with
        // its empty in-memory result.
        results.as_object_mut().unwrap().insert(
            "ns::wait".into(),
            json!([{"comments": null, "execution_duration": null, "io_log": [],
                    "outcome": null, "return_code": null}]),
        );
    }
    let mut session = json!({
        "desired_job_list": ["ns::pass", "ns::fail", "ns::wait"],
        "jobs": {"ns::fail": "f802", "ns::info": "1a2b", "ns::pass": "db1d",
                 "ns::res": "9c8d", "ns::wait": "3307"},
        "mandatory_job_list": ["ns::info"],
        "metadata": metadata,
        "results": results,
    });
    if version >= 8 {
        session.as_object_mut().unwrap().insert(
            "system_information".into(),
            json!({"inxi": {"tool_version": "3.3", "outputs": {"payload": {}}}}),
        );
    }
    json!({"session": session, "version": version})
}

/// The checkpoint's bytes as plainbox saves them.
pub(crate) fn gzipped(doc: &Value) -> Vec<u8> {
    gzip(serde_json::to_string(doc).unwrap().as_bytes())
}

/// A record file: one JSON line per `(delay, stream, data)`.
pub(crate) fn record(records: &[(f64, &str, &[u8])]) -> Vec<u8> {
    let mut text = String::new();
    for (delay, stream, data) in records {
        text.push_str(&json!([delay, stream, b64(data)]).to_string());
        text.push('\n');
    }
    gzip(text.as_bytes())
}

#[test]
fn the_encoder_matches_python() {
    assert_eq!(b64(b""), "");
    assert_eq!(b64(b"f"), "Zg==");
    assert_eq!(b64(b"fo"), "Zm8=");
    assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    // base64.standard_b64encode(b'{"testplan_id": "ns::tp", "description": "d"}')
    assert_eq!(
        b64(br#"{"testplan_id": "ns::tp", "description": "d"}"#),
        "eyJ0ZXN0cGxhbl9pZCI6ICJuczo6dHAiLCAiZGVzY3JpcHRpb24iOiAiZCJ9"
    );
}
