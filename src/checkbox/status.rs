//! What a session is, read from its flags the way Checkbox reads them.
//!
//! The rules, from Checkbox's own source (canonical/checkbox, current main,
//! and the checkbox-ng 1.18.1 release on PyPI):
//! - resume: `SessionAssistant.get_resumable_sessions`
//!   (`checkbox-ng/plainbox/impl/session/assistant.py`) offers a session
//!   when its `app_id` equals the running application's and its flags hold
//!   `incomplete` or `setting_up` (1.18.1: `incomplete` only; it has no
//!   `setting_up` flag, so no 1.18.1 session holds it);
//! - clearing: `checkbox-cli --clear-old-sessions`
//!   (`checkbox_ng/launcher/checkbox_cli.py`, `handle_top_parser`) deletes
//!   what `SessionAssistant.get_old_sessions` yields: the sessions of the
//!   same `app_id` whose flags hold `submitted` or `bootstrapping`, or that
//!   have no flags at all. A session that ended without being submitted
//!   keeps its feature flags (`strict_template_expansion`, added to every
//!   new session by `SessionMetaData.update_feature_flags`) once
//!   `finalize_session` drops `incomplete`, so it is never cleared;
//! - both skip a session whose checkpoint is empty or that
//!   `SessionPeekHelper` cannot read (not gzip, unsupported version, a
//!   metadata field of the wrong type): see
//!   [`crate::checkbox::Summary::checkbox_refusal`].
//!
//! A session may match both rules (flags `incomplete` and `submitted`):
//! Checkbox then offers it for resume and also clears it. [`Status`] shows
//! one reading; the two predicates on [`crate::checkbox::Summary`] answer
//! each rule on its own.

use std::fmt;

/// Set by applications while testing is under way (plainbox
/// `SessionMetaData.FLAG_INCOMPLETE`).
pub const FLAG_INCOMPLETE: &str = "incomplete";
/// Set once results were sent somewhere.
pub const FLAG_SUBMITTED: &str = "submitted";
/// Set while the test plan is being bootstrapped.
pub const FLAG_BOOTSTRAPPING: &str = "bootstrapping";
/// Set while setup jobs run, before bootstrapping (current Checkbox; not in
/// checkbox-ng 1.18.1).
pub const FLAG_SETTING_UP: &str = "setting_up";
/// The session runs hand-picked jobs, not a test plan.
pub const FLAG_TESTPLANLESS: &str = "testplanless";

/// The flags that make Checkbox offer a session for resume.
pub const RESUME_FLAGS: [&str; 2] = [FLAG_INCOMPLETE, FLAG_SETTING_UP];
/// The flags that make `--clear-old-sessions` delete a session (as does
/// having no flags at all).
pub const CLEAR_FLAGS: [&str; 2] = [FLAG_SUBMITTED, FLAG_BOOTSTRAPPING];

/// A session's state as Checkbox reads its flags, most telling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `incomplete` or `setting_up`: testing is under way or was
    /// interrupted; Checkbox offers to resume it.
    Resumable,
    /// `submitted`: results were sent; `--clear-old-sessions` deletes it.
    Submitted,
    /// `bootstrapping`: stopped while bootstrapping the test plan;
    /// `--clear-old-sessions` deletes it.
    Bootstrapping,
    /// No flags at all (a session just created by an old Checkbox, or
    /// finished by one that added no feature flags): `--clear-old-sessions`
    /// deletes it.
    NoFlags,
    /// Finished but never submitted: only other flags (feature flags,
    /// `testplanless`). Checkbox neither resumes nor ever clears it.
    FinishedNotSubmitted,
}

impl Status {
    /// Reads the flags: `incomplete`/`setting_up` first, then `submitted`,
    /// then `bootstrapping`, then the absence of flags.
    pub fn from_flags<S: AsRef<str>>(flags: &[S]) -> Status {
        let has = |flag: &str| flags.iter().any(|f| f.as_ref() == flag);
        if RESUME_FLAGS.iter().any(|f| has(f)) {
            Status::Resumable
        } else if has(FLAG_SUBMITTED) {
            Status::Submitted
        } else if has(FLAG_BOOTSTRAPPING) {
            Status::Bootstrapping
        } else if flags.is_empty() {
            Status::NoFlags
        } else {
            Status::FinishedNotSubmitted
        }
    }

    /// The name `list --json` and `gc --status` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Resumable => "resumable",
            Status::Submitted => "submitted",
            Status::Bootstrapping => "bootstrapping",
            Status::NoFlags => "no-flags",
            Status::FinishedNotSubmitted => "finished-not-submitted",
        }
    }

    /// The inverse of [`Status::as_str`], for a `--status NAME` option.
    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Every status, in the order of [`Status::from_flags`].
    pub const ALL: [Status; 5] = [
        Status::Resumable,
        Status::Submitted,
        Status::Bootstrapping,
        Status::NoFlags,
        Status::FinishedNotSubmitted,
    ];
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The flag half of Checkbox's resume rule: `incomplete` or `setting_up`.
pub fn flags_offer_resume<S: AsRef<str>>(flags: &[S]) -> bool {
    flags.iter().any(|f| RESUME_FLAGS.contains(&f.as_ref()))
}

/// The flag half of `--clear-old-sessions`: `submitted`, `bootstrapping`,
/// or no flags at all.
pub fn flags_clear<S: AsRef<str>>(flags: &[S]) -> bool {
    flags.is_empty() || flags.iter().any(|f| CLEAR_FLAGS.contains(&f.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: [&str; 0] = [];

    #[test]
    fn each_status_from_its_flags() {
        let cases: [(&[&str], Status); 9] = [
            (&["incomplete"], Status::Resumable),
            (
                &["setting_up", "strict_template_expansion"],
                Status::Resumable,
            ),
            (&["incomplete", "submitted"], Status::Resumable),
            (
                &["submitted", "strict_template_expansion"],
                Status::Submitted,
            ),
            (&["bootstrapping"], Status::Bootstrapping),
            (&["bootstrapping", "submitted"], Status::Submitted),
            (&[], Status::NoFlags),
            (&["strict_template_expansion"], Status::FinishedNotSubmitted),
            (
                &["testplanless", "systemd_based_job_runner"],
                Status::FinishedNotSubmitted,
            ),
        ];
        for (flags, status) in cases {
            assert_eq!(Status::from_flags(flags), status, "{flags:?}");
        }
    }

    #[test]
    fn the_clear_rule_spares_a_finished_unsent_session() {
        assert!(flags_clear(&NONE));
        assert!(flags_clear(&["submitted", "strict_template_expansion"]));
        assert!(flags_clear(&["bootstrapping"]));
        // Both rules at once: Checkbox offers it and also clears it.
        assert!(flags_clear(&["incomplete", "submitted"]));
        assert!(flags_offer_resume(&["incomplete", "submitted"]));
        assert!(!flags_clear(&["strict_template_expansion"]));
        assert!(!flags_clear(&["incomplete"]));
        assert!(!flags_clear(&["testplanless"]));
    }

    #[test]
    fn the_resume_rule_wants_incomplete_or_setting_up() {
        assert!(flags_offer_resume(&["incomplete"]));
        assert!(flags_offer_resume(&["setting_up"]));
        assert!(!flags_offer_resume(&NONE));
        assert!(!flags_offer_resume(&["submitted", "bootstrapping"]));
        assert!(!flags_offer_resume(&["Incomplete"]));
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(Status::parse("finished"), None);
    }
}
