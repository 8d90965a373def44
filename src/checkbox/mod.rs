//! Today's Checkbox sessions, read: what a checkpoint says (title, status,
//! progress, each job's result) and what a job wrote (its io-log).
//!
//! Pure decoding: nothing here opens a file or knows the repository; the
//! callers (`list`, `show`, `gc`, `archive`, the mount's views) hand over a
//! reader and get typed answers. Every input is treated as hostile: it is
//! bounded by [`crate::decode::Limits`] as `session.json` is, and anything
//! malformed is a typed error or a named problem, never a panic.
//!
//! - [`read_checkpoint`] -> [`Reading`]: a [`Summary`] of a plainbox or
//!   Checkbox checkpoint (format versions 1 to 11, a newer one as far as
//!   it is readable), or [`Opaque`] for another application's data;
//! - [`Status`] and [`Summary::would_offer_resume`] /
//!   [`Summary::would_clear`]: the session as Checkbox itself reads its
//!   flags (see [`status`] for the rules and where they come from);
//! - [`decode_record`]: a job's `io-logs/<job>.record.gz` as the text it
//!   wrote, both streams in order; [`resolve_io_log`] turns a result's
//!   `io_log_filename` into a path inside the session, or refuses it.

mod base64;
mod bounded;
mod iolog;
mod iolog_path;
mod peek;
mod read;
mod repr;
pub mod status;
mod summary;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod read_tests;

pub use base64::Base64Error;
pub use iolog::{RecordError, RecordStats, Stream, decode_record, decode_stream, measure_record};
pub use iolog_path::{
    IO_LOGS_DIR, IoLogRefusal, RECORD_SUFFIX, RefusalReason, fallback_paths, job_slug,
    record_path_for_job, resolve_io_log,
};
pub use peek::NEWEST_KNOWN_VERSION;
pub use read::{read_checkpoint, read_checkpoint_bytes};
pub use status::Status;
pub use summary::{
    CheckpointError, Encoding, JobResult, Opaque, Reading, Summary, TestPlan, format_utc,
};
