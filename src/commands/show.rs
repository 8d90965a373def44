//! `sessionfs show ID`: one Checkbox session in full (title, test plan,
//! status, times, every job's result and where its output is), and
//! `show ID --job JOB`: that job's output, decoded from its
//! `io-logs/<job>.record.gz` (both streams in the order it wrote them), else
//! from its `.stdout` then `.stderr`.
//!
//! Invariants:
//! - the checkpoint is read through one descriptor: one committed version;
//! - a job's files are named only by [`crate::checkbox::resolve_io_log`]
//!   (a path outside the session is refused, never opened) and opened
//!   beneath the session directory without following any symlink;
//! - bad data (a damaged or foreign checkpoint, a damaged or missing
//!   io-log, a hostile path) is one line and [`crate::exit_codes::BAD_DATA`].

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use super::error::{CommandError, ignore_broken_pipe};
use super::glance;
use super::names;
use crate::checkbox::{JobResult, Reading, Summary, decode_record, fallback_paths, format_utc};
use crate::core::{Repository, Storage, sys};
use crate::decode::Limits;

/// What reading the checkpoint of a session for `show` gives.
pub(crate) fn summary_of(
    storage: &Storage,
    dir: BorrowedFd<'_>,
) -> Result<Option<Box<Summary>>, CommandError> {
    let id = names::escape(storage.id());
    let Some(file) = storage.open_checkpoint_in(dir)? else {
        return Ok(None);
    };
    match glance::read(file) {
        Ok(Reading::Checkpoint(s)) => Ok(Some(s)),
        Ok(Reading::Opaque(crate::checkbox::Opaque::Empty)) => Ok(None),
        Ok(Reading::Opaque(_)) => Err(CommandError::BadData(format!(
            "session {id}: the checkpoint is not a Checkbox checkpoint (neither gzip nor JSON)"
        ))),
        Err(e) => Err(CommandError::BadData(format!("session {id}: {e}"))),
    }
}

/// Opens `rel` (from [`crate::checkbox::resolve_io_log`]) beneath the
/// session directory, never through a symlink; `None` when it is missing.
pub(crate) fn open_in_session(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<Option<File>> {
    let fd = match sys::open_beneath(dir, rel, libc::O_RDONLY | libc::O_NOFOLLOW, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV)) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "it is a symlink (never followed)",
            ));
        }
        Err(e) => return Err(e),
    };
    let st = sys::fstat(fd.as_fd())?;
    if !sys::is_reg(&st) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is not a regular file",
        ));
    }
    Ok(Some(File::from(fd)))
}

/// Where a job's output is, as `show` prints it.
fn output_place(job: &JobResult, storage: &Storage, dir: BorrowedFd<'_>) -> String {
    let location = storage.location();
    match job.record_path(storage.name().as_os_str(), Some(&location)) {
        None => "none (no io-log recorded)".to_string(),
        Some(Err(refusal)) => format!("refused: {refusal}"),
        Some(Ok(rel)) => {
            let shown = rel.display().to_string();
            match sys::open_beneath(dir, &rel, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                Ok(_) => shown,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let fallback = fallback_paths(&rel).filter(|(out, err)| {
                        [out, err].iter().any(|p| {
                            sys::open_beneath(dir, p, libc::O_PATH | libc::O_NOFOLLOW, 0).is_ok()
                        })
                    });
                    match fallback {
                        Some((out, err)) => format!(
                            "{} and {} ({shown} is missing)",
                            out.display(),
                            err.display()
                        ),
                        None => format!("{shown} (missing)"),
                    }
                }
                Err(e) => format!("{shown} ({e})"),
            }
        }
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or("-")
}

fn write_summary(
    storage: &Storage,
    dir: BorrowedFd<'_>,
    summary: Option<&Summary>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let modified = storage
        .checkpoint_info_in(dir)
        .ok()
        .flatten()
        .map(|i| i.modified);
    writeln!(out, "Session:      {}", names::escape(storage.id()))?;
    writeln!(
        out,
        "Path:         {}",
        names::escape(storage.location().as_os_str())
    )?;
    if let Some(created) = storage
        .id()
        .to_str()
        .and_then(crate::core::name::created_from_id)
    {
        writeln!(out, "Created:      {}", utc(created))?;
    }
    if let Some(m) = modified {
        writeln!(out, "Saved:        {}", utc(m))?;
    }
    let Some(s) = summary else {
        writeln!(out, "Checkpoint:   none yet")?;
        return Ok(());
    };
    writeln!(
        out,
        "Title:        {}",
        names::printable(or_dash(s.title.as_deref()))
    )?;
    writeln!(
        out,
        "Application:  {}",
        names::printable(or_dash(s.app_id.as_deref()))
    )?;
    let plan = match (&s.test_plan.id, &s.test_plan.description) {
        (Some(id), Some(d)) if !d.is_empty() => {
            format!("{} ({})", names::printable(id), names::printable(d))
        }
        (Some(id), _) => names::printable(id),
        (None, _) => "-".to_string(),
    };
    writeln!(out, "Test plan:    {plan}")?;
    let flags = if s.flags.is_empty() {
        "no flags".to_string()
    } else {
        format!("flags: {}", names::printable(&s.flags.join(", ")))
    };
    writeln!(out, "Status:       {} ({flags})", s.status)?;
    let newer = if s.newer_format() {
        ", newer than sessionfs knows: read as far as it is like version 11"
    } else {
        ""
    };
    writeln!(out, "Format:       version {}{newer}", s.format_version)?;
    if let Some(t) = s.last_job_start_utc() {
        writeln!(out, "Last job start: {t}")?;
    }
    // Checkbox leaves the last job's name there when the session ends: it
    // is only running (or where a resume starts) while the session is
    // resumable.
    let running = names::printable(or_dash(s.running_job.as_deref()));
    if s.status == crate::checkbox::Status::Resumable {
        writeln!(out, "Running job:  {running}")?;
    } else if s.running_job.as_deref().is_some_and(|j| !j.is_empty()) {
        writeln!(out, "Last job:     {running}")?;
    }
    let outcomes: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let outcomes = if outcomes.is_empty() {
        String::new()
    } else {
        format!(" ({})", names::printable(&outcomes.join(", ")))
    };
    writeln!(
        out,
        "Progress:     {}/{} jobs{outcomes}",
        s.jobs_done, s.jobs_total
    )?;
    if let Some(why) = &s.checkbox_refusal {
        writeln!(
            out,
            "Checkbox:     cannot read it ({})",
            names::printable(why)
        )?;
    }
    for p in &s.problems {
        writeln!(out, "Problem:      {}", names::printable(p))?;
    }
    writeln!(out, "Jobs:")?;
    for job in &s.jobs {
        writeln!(out, "  {}", names::printable(&job.id))?;
        writeln!(
            out,
            "    outcome:     {}",
            names::printable(or_dash(job.outcome.as_deref()))
        )?;
        let rc = job.return_code.map_or("-".to_string(), |c| c.to_string());
        writeln!(out, "    return code: {rc}")?;
        let duration = job
            .execution_duration
            .map_or("-".to_string(), |d| format!("{d:.3}s"));
        writeln!(out, "    duration:    {duration}")?;
        if job.attempts > 1 {
            writeln!(out, "    attempts:    {}", job.attempts)?;
        }
        writeln!(
            out,
            "    comments:    {}",
            names::printable(or_dash(job.comments.as_deref()))
        )?;
        writeln!(out, "    output:      {}", output_place(job, storage, dir))?;
    }
    Ok(())
}

fn utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    format_utc(secs).map_or("-".to_string(), |s| format!("{s} UTC"))
}

/// The job `wanted` names: its full id, or the part after `::` when that
/// is unique.
fn find_job<'a>(summary: &'a Summary, wanted: &str) -> Option<&'a JobResult> {
    if let Some(j) = summary.job(wanted) {
        return Some(j);
    }
    let mut partial = summary
        .jobs
        .iter()
        .filter(|j| j.id.rsplit("::").next() == Some(wanted));
    match (partial.next(), partial.next()) {
        (Some(j), None) => Some(j),
        _ => None,
    }
}

/// Writes the job's output: decoded from its record, else its `.stdout`
/// then `.stderr`.
fn write_job_output(
    storage: &Storage,
    dir: BorrowedFd<'_>,
    job: &JobResult,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let id = names::escape(storage.id());
    let job_id = names::printable(&job.id);
    let location = storage.location();
    let rel: PathBuf = match job.record_path(storage.name().as_os_str(), Some(&location)) {
        None => {
            return Err(CommandError::BadData(format!(
                "session {id}: job {job_id} has no io-log in the checkpoint"
            )));
        }
        Some(Err(refusal)) => {
            return Err(CommandError::BadData(format!(
                "session {id}: job {job_id}: {refusal}"
            )));
        }
        Some(Ok(rel)) => rel,
    };
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        CommandError::BadData(format!(
            "session {id}: job {job_id}: cannot read {}: {e}",
            location.join(what).display()
        ))
    };
    if let Some(file) = open_in_session(dir, &rel).map_err(|e| bad(&rel, &e))? {
        return match decode_record(BufReader::new(file), &mut *out, Limits::default()) {
            Ok(_) => Ok(()),
            Err(crate::checkbox::RecordError::Write(e)) => ignore_broken_pipe(Err(e)),
            Err(e) => Err(bad(&rel, &e)),
        };
    }
    let Some((stdout, stderr)) = fallback_paths(&rel) else {
        return Err(bad(&rel, &"no such file"));
    };
    let mut found = false;
    for path in [&stdout, &stderr] {
        if let Some(mut file) = open_in_session(dir, path).map_err(|e| bad(path, &e))? {
            found = true;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf).map_err(|e| bad(path, &e))?;
            ignore_broken_pipe(out.write_all(&buf))?;
        }
    }
    if !found {
        return Err(bad(&rel, &"no such file (nor its .stdout and .stderr)"));
    }
    Ok(())
}

/// `sessionfs show ID [--job JOB]`.
pub fn show(repo: &Repository, id: &OsStr, job: Option<&str>) -> Result<(), CommandError> {
    let storage = repo.open(id)?;
    let dir = storage.open_dir()?;
    let summary = summary_of(&storage, dir.as_fd())?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    match job {
        None => {
            let r = write_summary(&storage, dir.as_fd(), summary.as_deref(), &mut out);
            ignore_broken_pipe(r.and_then(|()| out.flush()))
        }
        Some(wanted) => {
            let Some(summary) = summary else {
                return Err(CommandError::BadData(format!(
                    "session {} has no checkpoint yet, so no job output",
                    names::escape(id)
                )));
            };
            let Some(found) = find_job(&summary, wanted) else {
                return Err(CommandError::Usage(format!(
                    "session {} has no result for job {}",
                    names::escape(id),
                    names::printable(wanted)
                )));
            };
            write_job_output(&storage, dir.as_fd(), found, &mut out)?;
            ignore_broken_pipe(out.flush())
        }
    }
}
