//! A session at a glance: the [`Summary`] of a plainbox/Checkbox
//! checkpoint that [`crate::checkbox::read_checkpoint`] returns, what else
//! a checkpoint may turn out to be ([`Reading`]), and why one cannot be
//! read ([`CheckpointError`]).
//!
//! Invariants:
//! - `jobs_done <= jobs_total`: the jobs counted done are counted in the
//!   total too;
//! - [`Summary::would_offer_resume`] and [`Summary::would_clear`] are true
//!   only when Checkbox itself can read the checkpoint
//!   ([`Summary::checkbox_refusal`] is `None`), as Checkbox skips the
//!   sessions it cannot read.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use super::peek;
use super::status::{self, Status};

/// What a checkpoint turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A plainbox/Checkbox checkpoint.
    Checkpoint(Box<Summary>),
    /// Not a Checkbox checkpoint and not damaged either: another
    /// application's data (a listing shows nulls for it).
    Opaque(Opaque),
}

/// Why a checkpoint is opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opaque {
    /// No bytes at all (a session that never saved).
    Empty,
    /// Neither gzip nor a JSON object or array.
    NotJson,
}

/// How the checkpoint was stored. Checkbox only reads gzip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    GzipJson,
    Json,
}

/// A Checkbox session at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `version` of the checkpoint format.
    pub format_version: u64,
    pub encoding: Encoding,
    pub title: Option<String>,
    pub app_id: Option<String>,
    /// The flags, in the checkpoint's order (plainbox sorts them).
    pub flags: Vec<String>,
    pub status: Status,
    /// `metadata.running_job_name`: the job running (or about to) at the
    /// last checkpoint.
    pub running_job: Option<String>,
    /// `metadata.last_job_start_time` (v7+): seconds since the epoch.
    pub last_job_start_time: Option<f64>,
    /// `metadata.remaining_todo_jobs` (v11): whether jobs were left to run.
    pub remaining_todo_jobs: Option<bool>,
    /// What Checkbox keeps in `app_blob`, when it is JSON.
    pub test_plan: TestPlan,
    /// Jobs with a result (an outcome).
    pub jobs_done: usize,
    /// Jobs to run: those desired or mandatory, and those that ran (their
    /// dependencies and resources), so that `jobs_done <= jobs_total`.
    pub jobs_total: usize,
    /// How many jobs have each outcome (their latest result's).
    pub outcomes: BTreeMap<String, usize>,
    /// `desired_job_list` then the mandatory jobs not in it.
    pub jobs_to_run: Vec<String>,
    /// Every job with a result, in the checkpoint's order.
    pub jobs: Vec<JobResult>,
    /// Why Checkbox itself cannot read this checkpoint, if it cannot: it
    /// then neither offers to resume it nor clears it.
    pub checkbox_refusal: Option<String>,
    /// Fields that were left out because they are not what the format
    /// says, one line each (`metadata "title" is a list`).
    pub problems: Vec<String>,
}

/// What Checkbox keeps in `app_blob` (JSON): the test plan and launcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestPlan {
    /// `testplan_id`.
    pub id: Option<String>,
    pub description: Option<String>,
    /// The launcher's text.
    pub launcher: Option<String>,
}

/// One job's latest result.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub id: String,
    /// `pass`, `fail`, `skip`, `crash`, `not-supported`, `undecided`...;
    /// `None` for the empty result of a job that has not run.
    pub outcome: Option<String>,
    pub return_code: Option<i64>,
    pub comments: Option<String>,
    /// Seconds.
    pub execution_duration: Option<f64>,
    /// As stored: resolve it with [`crate::checkbox::resolve_io_log`].
    pub io_log_filename: Option<String>,
    /// Records of an in-memory result's inline `io_log` (old sessions).
    pub inline_io_log_records: Option<usize>,
    /// How many results the job has had (reruns add to it).
    pub attempts: usize,
}

impl Summary {
    /// Whether this checkpoint's format is newer than Checkbox's newest
    /// (version 11): read as far as it is like version 11.
    pub fn newer_format(&self) -> bool {
        self.format_version > peek::NEWEST_KNOWN_VERSION
    }

    /// Whether Checkbox, run as `app_id` (`checkbox` or `$SNAP_NAME` today,
    /// `com.canonical:checkbox-cli` in 1.18.1), offers to resume it.
    pub fn would_offer_resume(&self, app_id: &str) -> bool {
        self.checkbox_refusal.is_none()
            && self.app_id.as_deref() == Some(app_id)
            && status::flags_offer_resume(&self.flags)
    }

    /// Whether `checkbox-cli --clear-old-sessions`, run as `app_id`,
    /// deletes it.
    pub fn would_clear(&self, app_id: &str) -> bool {
        self.checkbox_refusal.is_none()
            && self.app_id.as_deref() == Some(app_id)
            && status::flags_clear(&self.flags)
    }

    /// [`Summary::would_offer_resume`] as the application that made the
    /// session (its own `app_id`): what `gc` can select without knowing
    /// which Checkbox will run next. A session without an `app_id` (before
    /// format 3, or made by plainbox) is never resumed by Checkbox.
    pub fn resumable_by_its_app(&self) -> bool {
        self.app_id
            .as_deref()
            .is_some_and(|app| self.would_offer_resume(app))
    }

    /// [`Summary::would_clear`] as the application that made the session.
    pub fn clearable_by_its_app(&self) -> bool {
        self.app_id
            .as_deref()
            .is_some_and(|app| self.would_clear(app))
    }

    /// `last_job_start_time` as Checkbox's resume menu shows it, in UTC:
    /// `2025-12-01 09:42:47`.
    pub fn last_job_start_utc(&self) -> Option<String> {
        self.last_job_start_time.and_then(format_utc)
    }

    /// The row of `list --json`: `title`, `app_id`, `flags`, `status`,
    /// `jobs_done`, `jobs_total`, `outcomes`, `running_job`,
    /// `format_version`.
    pub fn to_json(&self) -> serde_json::Value {
        let outcomes: serde_json::Map<String, serde_json::Value> = self
            .outcomes
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .collect();
        serde_json::json!({
            "title": self.title,
            "app_id": self.app_id,
            "flags": self.flags,
            "status": self.status.as_str(),
            "jobs_done": self.jobs_done,
            "jobs_total": self.jobs_total,
            "outcomes": outcomes,
            "running_job": self.running_job,
            "format_version": self.format_version,
        })
    }

    /// The same fields, all null: for a session whose checkpoint is not a
    /// Checkbox checkpoint.
    pub fn null_json() -> serde_json::Value {
        serde_json::json!({
            "title": null, "app_id": null, "flags": null, "status": null,
            "jobs_done": null, "jobs_total": null, "outcomes": null,
            "running_job": null, "format_version": null,
        })
    }

    /// The job's latest result, by id.
    pub fn job(&self, id: &str) -> Option<&JobResult> {
        self.jobs.iter().find(|j| j.id == id)
    }
}

impl JobResult {
    /// Where this result's record is, relative to the session directory
    /// (see [`crate::checkbox::resolve_io_log`]); `None` when the result
    /// names none (an in-memory or empty result).
    pub fn record_path(
        &self,
        session_id: &std::ffi::OsStr,
        session_dir: Option<&std::path::Path>,
    ) -> Option<Result<std::path::PathBuf, super::IoLogRefusal>> {
        let name = self.io_log_filename.as_deref()?;
        Some(super::resolve_io_log(name, session_id, session_dir))
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC (Checkbox's
/// `strftime("%Y-%m-%d %H:%M:%S")`); `None` outside years 1970 to 9999 or
/// for a value that is not a number.
pub fn format_utc(secs: f64) -> Option<String> {
    // 253402300800 is 10000-01-01T00:00:00Z.
    if !(0.0..253_402_300_800.0).contains(&secs) {
        return None;
    }
    let secs = secs.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// Why a checkpoint has no summary.
#[derive(Debug)]
pub enum CheckpointError {
    /// The gzip stream is truncated or corrupt (bad header, CRC, length).
    CorruptGzip { detail: String },
    /// Sound gzip, but not JSON inside (or JSON followed by garbage).
    GzipNotJson { detail: String },
    /// JSON, but not `{"version": N, "session": {...}}`.
    NotACheckpoint { detail: String },
    /// `version` is not a format version (not a positive integer).
    UnknownVersion { version: String },
    /// A checkpoint whose structure breaks a bound (too many entries).
    Malformed { detail: String },
    /// It decompresses (or is) more than
    /// [`crate::decode::Limits::max_decoded`] bytes.
    TooLarge { limit: u64 },
    /// Reading it failed.
    Read(io::Error),
}

impl CheckpointError {
    /// True for JSON that is simply some other application's data, not a
    /// damaged checkpoint: a listing shows nulls for it without a warning.
    pub fn is_not_checkbox(&self) -> bool {
        matches!(self, CheckpointError::NotACheckpoint { .. })
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::CorruptGzip { detail } => {
                write!(f, "the checkpoint's gzip stream is corrupt: {detail}")
            }
            CheckpointError::GzipNotJson { detail } => write!(
                f,
                "the checkpoint is gzip-compressed but does not hold JSON ({detail})"
            ),
            CheckpointError::NotACheckpoint { detail } => {
                write!(
                    f,
                    "the checkpoint is JSON but not a Checkbox checkpoint: {detail}"
                )
            }
            CheckpointError::UnknownVersion { version } => {
                write!(f, "the checkpoint has an unknown format version {version}")
            }
            CheckpointError::Malformed { detail } => {
                write!(f, "the checkpoint is malformed: {detail}")
            }
            CheckpointError::TooLarge { limit } => {
                if limit.is_multiple_of(1 << 20) {
                    write!(f, "the decoded checkpoint exceeds {} MiB", limit >> 20)
                } else {
                    write!(f, "the decoded checkpoint exceeds {limit} bytes")
                }
            }
            CheckpointError::Read(e) => write!(f, "cannot read the checkpoint: {e}"),
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Read(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_utc_as_checkbox_shows_them() {
        assert_eq!(format_utc(0.0).unwrap(), "1970-01-01 00:00:00");
        // date -u -d @1764582167 +'%F %T'
        assert_eq!(format_utc(1_764_582_167.25).unwrap(), "2025-12-01 09:42:47");
        assert_eq!(format_utc(951_782_400.0).unwrap(), "2000-02-29 00:00:00");
        assert_eq!(
            format_utc(253_402_300_799.0).unwrap(),
            "9999-12-31 23:59:59"
        );
        assert_eq!(format_utc(-1.0), None);
        assert_eq!(format_utc(f64::NAN), None);
        assert_eq!(format_utc(1e300), None);
    }
}
