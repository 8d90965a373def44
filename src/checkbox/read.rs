//! Reading a checkpoint: [`read_checkpoint`] reads a plainbox/Checkbox
//! checkpoint (gzip-compressed JSON `{"version": N, "session": {...}}`, or
//! the same as plain JSON) into a [`Summary`].
//!
//! What each format version holds (`SessionSuspendHelper1..11`,
//! `checkbox-ng/plainbox/impl/session/suspend.py`; plainbox 0.38 writes 6,
//! checkbox-ng 1.18.1 writes 7, current main 11):
//! - 1: `session.jobs` (id -> checksum), `results` (id -> list of results:
//!   `outcome`, `comments`, `return_code`, `execution_duration`, and
//!   `io_log_filename`, absolute, or an inline `io_log`), every job listed
//!   with its (possibly empty, `outcome: null`) result, `desired_job_list`,
//!   `mandatory_job_list`, `metadata` with `title`, `flags` (sorted),
//!   `running_job_name`;
//! - 2: metadata `app_blob` (base64 of bytes; Checkbox puts JSON there:
//!   `testplan_id`, `description`, `launcher`);
//! - 3: metadata `app_id`;
//! - 4: only jobs with results are in `results`, with their whole history;
//! - 5: `io_log_filename` relative to the session directory
//!   (`io-logs/<slug>.record.gz`);
//! - 6: checkbox adds metadata `custom_joblist`, `rejected_jobs` (plainbox
//!   0.38's version 6 does not);
//! - 7: metadata `last_job_start_time` (seconds since the epoch, float);
//! - 8, 9: `session.system_information`;
//! - 10: `jobs` lists every job while setting up;
//! - 11: metadata `remaining_todo_jobs` (a boolean: jobs left to run).
//!
//! A newer version is read the same way, as far as its fields are where
//! version 11 has them, and says so ([`Summary::newer_format`]).
//!
//! Invariants:
//! - nothing of the input is trusted: at most [`Limits::max_decoded`]
//!   bytes are inflated and parsed, as a stream; a field of the wrong type
//!   is left out and named in [`Summary::problems`], never a panic;
//! - the whole input is read to its end (the gzip CRC and length checked)
//!   before a summary is returned, so a damaged checkpoint is an error,
//!   never a partial summary;
//! - a checkpoint is only called "not a checkpoint" or "opaque" when it is
//!   (see [`Reading`] and [`CheckpointError::is_not_checkbox`]), so a
//!   listing can show nulls for other applications' sessions and report
//!   the damaged ones.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufReader, Read};

use crate::decode::Limits;

use super::bounded::{self, Envelope};
use super::peek;
use super::repr::{DocRepr, Leaf, MetaRepr, Obj, ResultList, ResultRepr, ResultsRepr};
use super::status::Status;
use super::summary::{CheckpointError, Encoding, JobResult, Opaque, Reading, Summary, TestPlan};

/// Reads a checkpoint from `reader` (the bytes of a session's `session`
/// file) into a summary, under `limits` (only `max_decoded` applies).
pub fn read_checkpoint(reader: impl Read, limits: Limits) -> Result<Reading, CheckpointError> {
    let (envelope, mut input) = match bounded::open(reader, limits.max_decoded) {
        Ok(None) => return Ok(Reading::Opaque(Opaque::Empty)),
        Ok(Some((envelope, input))) => (envelope, input),
        Err(e) => return Err(CheckpointError::Read(e)),
    };
    let parsed = parse(&mut input, envelope);
    let doc = match parsed {
        Ok(Some(doc)) => doc,
        Ok(None) => return Ok(Reading::Opaque(Opaque::NotJson)),
        Err(e) => {
            return classify(e, envelope, &input, limits)
                .map(|()| Reading::Opaque(Opaque::NotJson));
        }
    };
    summarize(doc, envelope).map(|s| Reading::Checkpoint(Box::new(s)))
}

/// [`read_checkpoint`] of bytes in memory.
pub fn read_checkpoint_bytes(bytes: &[u8], limits: Limits) -> Result<Reading, CheckpointError> {
    read_checkpoint(bytes, limits)
}

/// Parses the document; `Ok(None)` for plain data that does not start like
/// a JSON object or array (opaque, as `session.json` treats it).
fn parse<R: Read>(
    input: &mut bounded::Bounded<R>,
    envelope: Envelope,
) -> Result<Option<Obj<DocRepr>>, serde_json::Error> {
    use std::io::BufRead;
    // serde_json reads byte by byte: buffer above the bound.
    let mut buffered = BufReader::new(input);
    if envelope == Envelope::Plain {
        let first = loop {
            let buf = match buffered.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(serde_json::Error::io(e)),
            };
            let Some(&b) = buf.first() else { break None };
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                buffered.consume(1);
                continue;
            }
            break Some(b);
        };
        if !matches!(first, Some(b'{' | b'[')) {
            return Ok(None);
        }
    }
    let mut de = serde_json::Deserializer::from_reader(buffered);
    let doc = serde::Deserialize::deserialize(&mut de)?;
    // Only whitespace may follow, to the end of the (gzip) stream, whose
    // CRC and length are checked on the way.
    de.end()?;
    Ok(Some(doc))
}

/// Turns a parse failure into the error it stands for; `Ok(())` when the
/// input is simply opaque (plain data that is not JSON).
fn classify<R>(
    e: serde_json::Error,
    envelope: Envelope,
    input: &bounded::Bounded<R>,
    limits: Limits,
) -> Result<(), CheckpointError> {
    use serde_json::error::Category;
    if input.exceeded() {
        return Err(CheckpointError::TooLarge {
            limit: limits.max_decoded,
        });
    }
    if let Some(failure) = input.failure() {
        let detail = match failure.kind() {
            io::ErrorKind::UnexpectedEof => "the stream is truncated".to_string(),
            _ => failure.to_string(),
        };
        return Err(match envelope {
            Envelope::Gzip => CheckpointError::CorruptGzip { detail },
            Envelope::Plain => CheckpointError::Read(io::Error::new(failure.kind(), detail)),
        });
    }
    match (e.classify(), envelope) {
        (Category::Data, _) => Err(CheckpointError::Malformed {
            detail: e.to_string(),
        }),
        (_, Envelope::Gzip) => Err(CheckpointError::GzipNotJson {
            detail: e.to_string(),
        }),
        (Category::Io, Envelope::Plain) => {
            Err(CheckpointError::Read(io::Error::other(e.to_string())))
        }
        (_, Envelope::Plain) => Ok(()),
    }
}

fn summarize(doc: Obj<DocRepr>, envelope: Envelope) -> Result<Summary, CheckpointError> {
    let not_checkpoint = |detail: String| CheckpointError::NotACheckpoint { detail };
    let doc = match doc {
        Obj::Map(doc) => doc,
        Obj::Wrong(kind) => {
            return Err(not_checkpoint(format!(
                "the document is {kind}, not an object"
            )));
        }
    };
    let version = match doc.version {
        None => return Err(not_checkpoint("it has no \"version\"".into())),
        Some(Leaf::Int(v)) if v >= 1 => v as u64,
        Some(Leaf::Int(v)) => {
            return Err(CheckpointError::UnknownVersion {
                version: v.to_string(),
            });
        }
        Some(Leaf::Float(v)) => {
            return Err(CheckpointError::UnknownVersion {
                version: v.to_string(),
            });
        }
        Some(Leaf::Str(s)) => {
            return Err(CheckpointError::UnknownVersion {
                version: format!("{s:?}"),
            });
        }
        Some(other) => {
            return Err(CheckpointError::UnknownVersion {
                version: other.kind().to_string(),
            });
        }
    };
    let session = match doc.session {
        None => return Err(not_checkpoint("it has no \"session\"".into())),
        Some(Obj::Wrong(kind)) => {
            return Err(not_checkpoint(format!(
                "\"session\" is {kind}, not an object"
            )));
        }
        Some(Obj::Map(s)) => s,
    };
    let checkbox_refusal = peek::refusal(envelope, version, session.metadata.as_ref());
    let mut problems = Vec::new();
    let meta = match session.metadata {
        Some(Obj::Map(m)) => m,
        Some(Obj::Wrong(kind)) => {
            problems.push(format!("session.metadata is {kind}"));
            MetaRepr::default()
        }
        None => {
            problems.push("session.metadata is missing".into());
            MetaRepr::default()
        }
    };
    let mut r = Reader {
        problems: &mut problems,
    };
    let title = r.opt_str("metadata \"title\"", meta.title);
    let app_id = r.opt_str("metadata \"app_id\"", meta.app_id);
    let flags = r.str_list("metadata \"flags\"", meta.flags);
    let running_job = r.opt_str("metadata \"running_job_name\"", meta.running_job_name);
    let last_job_start_time =
        r.opt_f64("metadata \"last_job_start_time\"", meta.last_job_start_time);
    let remaining_todo_jobs =
        r.opt_bool("metadata \"remaining_todo_jobs\"", meta.remaining_todo_jobs);
    let test_plan = r.app_blob(meta.app_blob);
    let jobs_to_run = r.jobs_to_run(session.desired_job_list, session.mandatory_job_list);
    let jobs = r.results(session.results);

    let mut outcomes = BTreeMap::new();
    let mut done: Vec<&str> = Vec::new();
    for job in &jobs {
        if let Some(outcome) = &job.outcome {
            *outcomes.entry(outcome.clone()).or_insert(0) += 1;
            done.push(&job.id);
        }
    }
    let mut counted: HashSet<&str> = jobs_to_run.iter().map(String::as_str).collect();
    counted.extend(done.iter().copied());
    Ok(Summary {
        format_version: version,
        encoding: match envelope {
            Envelope::Gzip => Encoding::GzipJson,
            Envelope::Plain => Encoding::Json,
        },
        status: Status::from_flags(&flags),
        title,
        app_id,
        flags,
        running_job,
        last_job_start_time,
        remaining_todo_jobs,
        test_plan,
        jobs_done: done.len(),
        jobs_total: counted.len(),
        outcomes,
        jobs_to_run,
        jobs,
        checkbox_refusal,
        problems,
    })
}

/// Reads leaf fields, noting each one of the wrong type.
struct Reader<'a> {
    problems: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn wrong(&mut self, what: &str, leaf: &Leaf) {
        self.problems.push(format!("{what} is {}", leaf.kind()));
    }

    fn opt_str(&mut self, what: &str, leaf: Option<Leaf>) -> Option<String> {
        match leaf? {
            Leaf::Str(s) => Some(s),
            Leaf::Null => None,
            other => {
                self.wrong(what, &other);
                None
            }
        }
    }

    fn opt_f64(&mut self, what: &str, leaf: Option<Leaf>) -> Option<f64> {
        match leaf? {
            Leaf::Float(v) => Some(v),
            Leaf::Int(v) => Some(v as f64),
            Leaf::Null => None,
            other => {
                self.wrong(what, &other);
                None
            }
        }
    }

    fn opt_i64(&mut self, what: &str, leaf: Option<Leaf>) -> Option<i64> {
        match leaf? {
            Leaf::Int(v) => Some(v),
            // Python's bool is an int: plainbox would accept it.
            Leaf::Bool(b) => Some(i64::from(b)),
            Leaf::Null => None,
            other => {
                self.wrong(what, &other);
                None
            }
        }
    }

    fn opt_bool(&mut self, what: &str, leaf: Option<Leaf>) -> Option<bool> {
        match leaf? {
            Leaf::Bool(b) => Some(b),
            Leaf::Null => None,
            other => {
                self.wrong(what, &other);
                None
            }
        }
    }

    fn str_list(&mut self, what: &str, leaf: Option<Leaf>) -> Vec<String> {
        match leaf {
            None | Some(Leaf::Null) => Vec::new(),
            Some(Leaf::List { strings, others }) => {
                if others > 0 {
                    self.problems.push(format!(
                        "{what} holds {others} item(s) that are not strings"
                    ));
                }
                strings
            }
            Some(other) => {
                self.wrong(what, &other);
                Vec::new()
            }
        }
    }

    /// `app_blob`: base64 of JSON bytes as plainbox writes it (v2+); the
    /// JSON text itself is also accepted.
    fn app_blob(&mut self, leaf: Option<Leaf>) -> TestPlan {
        let Some(text) = self.opt_str("metadata \"app_blob\"", leaf) else {
            return TestPlan::default();
        };
        let bytes = match super::base64::decode(text.as_bytes()) {
            Ok(bytes) => bytes,
            Err(_) if text.trim_start().starts_with('{') => text.into_bytes(),
            Err(e) => {
                self.problems
                    .push(format!("metadata \"app_blob\" is not base64: {e}"));
                return TestPlan::default();
            }
        };
        if bytes.is_empty() {
            return TestPlan::default();
        }
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => {
                // An application other than Checkbox may keep any bytes there.
                return TestPlan::default();
            }
        };
        let field = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        TestPlan {
            id: field("testplan_id"),
            description: field("description"),
            launcher: field("launcher"),
        }
    }

    fn jobs_to_run(&mut self, desired: Option<Leaf>, mandatory: Option<Leaf>) -> Vec<String> {
        let desired = self.str_list("session.desired_job_list", desired);
        let mandatory = self.str_list("session.mandatory_job_list", mandatory);
        let mut seen: HashSet<String> = HashSet::new();
        // Checkbox runs the mandatory jobs first; listing them after the
        // desired ones keeps the test plan's order readable, and the set is
        // the same.
        desired
            .into_iter()
            .chain(mandatory)
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }

    fn results(&mut self, results: Option<Obj<ResultsRepr>>) -> Vec<JobResult> {
        let entries = match results {
            None => return Vec::new(),
            Some(Obj::Wrong(kind)) => {
                self.problems.push(format!("session.results is {kind}"));
                return Vec::new();
            }
            Some(Obj::Map(r)) => r.0,
        };
        let mut jobs = Vec::with_capacity(entries.len());
        for (id, list) in entries {
            let items = match list {
                ResultList::Null => continue,
                ResultList::Wrong(kind) => {
                    self.problems
                        .push(format!("the results of {id:?} are {kind}"));
                    continue;
                }
                ResultList::Items(items) => items,
            };
            let attempts = items.len();
            // Plainbox replays the history in order: the last one is the
            // job's result.
            let Some(last) = items.into_iter().next_back() else {
                continue;
            };
            let last = match last {
                Obj::Map(r) => r,
                Obj::Wrong(kind) => {
                    self.problems.push(format!("a result of {id:?} is {kind}"));
                    ResultRepr::default()
                }
            };
            let what = |field: &str| format!("the {field} of {id:?}");
            let outcome = self.opt_str(&what("outcome"), last.outcome);
            let return_code = self.opt_i64(&what("return_code"), last.return_code);
            let comments = self.opt_str(&what("comments"), last.comments);
            let execution_duration =
                self.opt_f64(&what("execution_duration"), last.execution_duration);
            let io_log_filename = self.opt_str(&what("io_log_filename"), last.io_log_filename);
            jobs.push(JobResult {
                id,
                outcome,
                return_code,
                comments,
                execution_duration,
                io_log_filename,
                inline_io_log_records: last.inline_io_log,
                attempts,
            });
        }
        jobs
    }
}
