//! Whether Checkbox itself can read a checkpoint's metadata: the checks of
//! `SessionPeekHelper` (`checkbox-ng/plainbox/impl/session/resume.py`),
//! which both the resume offer and `--clear-old-sessions` go through. A
//! session it cannot read is skipped by both: never offered, never cleared.
//!
//! What `SessionPeekHelper.peek` requires, by format version (each version
//! adds to the ones before; `_validate` raises on a missing key, a `null`
//! where none is allowed, or a value of another Python type):
//! - always: gzip (`gzip.decompress`), UTF-8, JSON, a `version` it knows
//!   (1 to 11; any other is "Unsupported version"), `session` and
//!   `session.metadata` objects;
//! - v1 (`MetaDataHelper1MixIn`): `title` string or null, `flags` a list
//!   of strings, `running_job_name` string or null;
//! - v2: `app_blob` string or null, ASCII and base64;
//! - v3: `app_id` string or null;
//! - v6 (`MetaDataHelper6MixIn`): `custom_joblist` a boolean,
//!   `rejected_jobs` a list. plainbox 0.38's own version 6 writes neither,
//!   so Checkbox cannot read a plainbox 0.38 session;
//! - v7 (`MetaDataHelper7MixIn`): `last_job_start_time` a float or null
//!   (a JSON integer is not a Python float). checkbox-ng 1.18.1 checks it
//!   from version 7, current main's peek helpers only from version 9;
//!   this follows 1.18.1, the release people run today;
//! - v11 (`MetaDataHelper11MixIn`): `remaining_todo_jobs` a boolean.

use super::bounded::Envelope;
use super::repr::{Leaf, MetaRepr, Obj};

/// The newest checkpoint version Checkbox (current main) reads.
pub const NEWEST_KNOWN_VERSION: u64 = 11;

/// Why Checkbox's `SessionPeekHelper` would refuse this checkpoint, or
/// `None` when it reads it.
pub(crate) fn refusal(
    envelope: Envelope,
    version: u64,
    metadata: Option<&Obj<MetaRepr>>,
) -> Option<String> {
    if envelope != Envelope::Gzip {
        return Some("it is not gzip-compressed".into());
    }
    if !(1..=NEWEST_KNOWN_VERSION).contains(&version) {
        return Some(format!("format version {version} is unsupported"));
    }
    let m = match metadata {
        None => return Some("session.metadata is missing".into()),
        Some(Obj::Wrong(kind)) => return Some(format!("session.metadata is {kind}")),
        Some(Obj::Map(m)) => m,
    };
    let mut checks: Vec<(&str, &Option<Leaf>, Want)> = vec![
        ("title", &m.title, Want::StrOrNull),
        ("flags", &m.flags, Want::StrList),
        ("running_job_name", &m.running_job_name, Want::StrOrNull),
    ];
    if version >= 2 {
        checks.push(("app_blob", &m.app_blob, Want::Base64OrNull));
    }
    if version >= 3 {
        checks.push(("app_id", &m.app_id, Want::StrOrNull));
    }
    if version >= 6 {
        checks.push(("custom_joblist", &m.custom_joblist, Want::Bool));
        checks.push(("rejected_jobs", &m.rejected_jobs, Want::List));
    }
    if version >= 7 {
        checks.push((
            "last_job_start_time",
            &m.last_job_start_time,
            Want::FloatOrNull,
        ));
    }
    if version >= 11 {
        checks.push(("remaining_todo_jobs", &m.remaining_todo_jobs, Want::Bool));
    }
    checks.into_iter().find_map(|(key, value, want)| {
        check(value.as_ref(), want).map(|why| format!("metadata {key:?} {why}"))
    })
}

#[derive(Clone, Copy)]
enum Want {
    StrOrNull,
    StrList,
    Base64OrNull,
    Bool,
    List,
    FloatOrNull,
}

fn check(value: Option<&Leaf>, want: Want) -> Option<String> {
    let Some(value) = value else {
        return Some("is missing".into());
    };
    let ok = match (want, value) {
        (Want::StrOrNull | Want::Base64OrNull | Want::FloatOrNull, Leaf::Null) => true,
        (Want::StrOrNull, Leaf::Str(_)) => true,
        (Want::StrList, Leaf::List { others, .. }) => {
            if *others > 0 {
                return Some("holds an item that is not a string".into());
            }
            true
        }
        (Want::Base64OrNull, Leaf::Str(s)) => {
            if super::base64::decode(s.as_bytes()).is_err() {
                return Some("is not base64".into());
            }
            true
        }
        (Want::Bool, Leaf::Bool(_)) => true,
        (Want::List, Leaf::List { .. }) => true,
        (Want::FloatOrNull, Leaf::Float(_)) => true,
        _ => false,
    };
    (!ok).then(|| format!("is {}", value.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: &str) -> Obj<MetaRepr> {
        serde_json::from_str(json).unwrap()
    }

    const V7: &str = r#"{"title": "t", "flags": ["incomplete"], "running_job_name": null,
        "app_blob": "e30=", "app_id": "com.canonical:checkbox-cli",
        "custom_joblist": false, "rejected_jobs": [], "last_job_start_time": 1.5}"#;

    #[test]
    fn a_checkbox_1_18_checkpoint_is_readable() {
        assert_eq!(refusal(Envelope::Gzip, 7, Some(&meta(V7))), None);
    }

    #[test]
    fn what_checkbox_refuses() {
        let m = meta(V7);
        assert_eq!(
            refusal(Envelope::Plain, 7, Some(&m)).unwrap(),
            "it is not gzip-compressed"
        );
        assert_eq!(
            refusal(Envelope::Gzip, 12, Some(&m)).unwrap(),
            "format version 12 is unsupported"
        );
        // Version 11 wants remaining_todo_jobs, which a v7 one lacks.
        assert_eq!(
            refusal(Envelope::Gzip, 11, Some(&m)).unwrap(),
            "metadata \"remaining_todo_jobs\" is missing"
        );
        let int_time = V7.replace("1.5", "2");
        assert_eq!(
            refusal(Envelope::Gzip, 7, Some(&meta(&int_time))).unwrap(),
            "metadata \"last_job_start_time\" is an integer"
        );
        // ...which version 6 does not look at.
        assert_eq!(refusal(Envelope::Gzip, 6, Some(&meta(&int_time))), None);
        let bad_flag = V7.replace(r#"["incomplete"]"#, r#"["incomplete", 1]"#);
        assert_eq!(
            refusal(Envelope::Gzip, 7, Some(&meta(&bad_flag))).unwrap(),
            "metadata \"flags\" holds an item that is not a string"
        );
        let bad_blob = V7.replace("e30=", "{}");
        assert_eq!(
            refusal(Envelope::Gzip, 7, Some(&meta(&bad_blob))).unwrap(),
            "metadata \"app_blob\" is not base64"
        );
        assert_eq!(
            refusal(Envelope::Gzip, 1, Some(&Obj::Wrong("a list"))).unwrap(),
            "session.metadata is a list"
        );
    }

    #[test]
    fn plainbox_0_38_version_6_lacks_what_checkbox_wants() {
        let m = meta(
            r#"{"app_blob": null, "app_id": null, "flags": ["incomplete"],
            "running_job_name": null, "title": "demo"}"#,
        );
        assert_eq!(refusal(Envelope::Gzip, 5, Some(&m)), None);
        assert_eq!(
            refusal(Envelope::Gzip, 6, Some(&m)).unwrap(),
            "metadata \"custom_joblist\" is missing"
        );
    }
}
