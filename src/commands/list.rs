//! `sessionfs list`: the sessions as an aligned table, or as JSON for
//! scripts, each with what its checkpoint says when it is Checkbox's
//! (title, status, progress, running job: see [`super::glance`]).
//!
//! A checkpoint that cannot be read shows dashes (nulls in JSON) and one
//! warning on standard error for the whole listing; it never fails it.
//!
//! Times are UTC. A session's creation time is the one its name carries
//! (`PREFIX%Y-%m-%dT%H.%M.%S[_(N)].session`, as plainbox and `create` name
//! them), else the directory's birth time where the filesystem records it,
//! else its status-change time.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::SystemTime;

use super::config::{ListConfig, SortBy};
use super::error::{CommandError, ignore_broken_pipe};
use super::glance::{Glance, glance_in};
use super::names;
use crate::checkbox::Summary;
use crate::core::calendar::DateTime;
use crate::core::name::created_from_id;
use crate::core::{self, LockState, Repository, sys};

/// One session, as listed.
#[derive(Debug, Clone)]
struct Row {
    id: OsString,
    path: PathBuf,
    created: SystemTime,
    modified: SystemTime,
    /// The checkpoint's size; `None` when there is no checkpoint yet.
    size: Option<u64>,
    locked: LockState,
    last: bool,
    glance: Glance,
}

/// The sessions of `repo`, in the order asked for. A session removed while
/// the listing runs is left out.
fn rows(repo: &Repository, sort: SortBy) -> Result<Vec<Row>, core::Error> {
    let last = repo.last_session()?;
    let mut rows = Vec::new();
    let entries = repo.list()?;
    if entries.is_empty() {
        return Ok(rows);
    }
    // One descriptor of the repository and one of each session serve all
    // the questions asked about it.
    let repo_dir = repo.open_dir(core::Op::ListRepository)?;
    for entry in entries {
        let storage = &entry.storage;
        let dir = match storage.open_dir_in(repo_dir.as_fd()) {
            Ok(dir) => dir,
            // Removed while we were listing.
            Err(core::Error::NoSuchSession { .. }) => continue,
            Err(e) => return Err(e),
        };
        let info = storage.checkpoint_info_in(dir.as_fd())?;
        let locked = match storage.lock_state_in(dir.as_fd()) {
            Ok(state) => state,
            Err(core::Error::NoSuchSession { .. }) => continue,
            Err(e) => return Err(e),
        };
        let id = storage.id().to_os_string();
        let path = storage.location();
        let created = id
            .to_str()
            .and_then(created_from_id)
            .or_else(|| birth_or_change_time(dir.as_fd()))
            .unwrap_or(entry.modified);
        let glance = glance_in(storage, dir.as_fd());
        rows.push(Row {
            glance,
            last: last.as_ref().is_some_and(|l| l.name() == storage.name()),
            id,
            path,
            created,
            modified: entry.modified,
            size: info.map(|i| i.size),
            locked,
        });
    }
    match sort {
        SortBy::Age => rows.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.id.cmp(&b.id))),
        SortBy::Name => rows.sort_by(|a, b| a.id.cmp(&b.id)),
    }
    Ok(rows)
}

/// `sessionfs list`; returns how many sessions it listed.
pub fn list(repo: &Repository, args: &ListConfig) -> Result<usize, CommandError> {
    let rows = rows(repo, args.sort)?;
    let damaged: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.glance, Glance::Damaged(_)))
        .collect();
    if let Some(first) = damaged.first()
        && let Glance::Damaged(why) = &first.glance
    {
        let others = match damaged.len() {
            1 => String::new(),
            n => format!(" (and {} other sessions)", n - 1),
        };
        eprintln!(
            "sessionfs: warning: cannot read the checkpoint of {}{others}: {why}",
            names::escape(&first.id)
        );
    }
    // One write per buffer, not per line.
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let result = if args.json {
        write_json(&rows, &mut out)
    } else {
        write_table(&rows, &mut out)
    };
    ignore_broken_pipe(result.and_then(|()| out.flush()))?;
    Ok(rows.len())
}

fn locked_word(state: LockState) -> &'static str {
    match state {
        LockState::Unlocked => "no",
        LockState::Held => "writing",
        LockState::Stale => "stale",
    }
}

/// The table: a header and one line per session, columns aligned.
fn write_table(rows: &[Row], out: &mut dyn Write) -> io::Result<()> {
    let mut cells = vec![[
        "ID".to_string(),
        "CREATED".to_string(),
        "MODIFIED".to_string(),
        "SIZE".to_string(),
        "LOCKED".to_string(),
        "LAST".to_string(),
        "STATUS".to_string(),
        "PROGRESS".to_string(),
        "RUNNING".to_string(),
        "TITLE".to_string(),
    ]];
    for r in rows {
        let summary = r.glance.summary();
        let dash = || "-".to_string();
        cells.push([
            names::escape(&r.id),
            rfc3339(r.created),
            rfc3339(r.modified),
            r.size.map_or_else(|| "-".to_string(), human_size),
            match r.locked {
                LockState::Unlocked => "-".to_string(),
                other => locked_word(other).to_string(),
            },
            if r.last { "yes" } else { "-" }.to_string(),
            summary.map_or_else(dash, |s| s.status.as_str().to_string()),
            summary.map_or_else(dash, |s| format!("{}/{}", s.jobs_done, s.jobs_total)),
            // Checkbox leaves the last job's name when a session ends: a
            // job runs only in a resumable session.
            summary
                .filter(|s| s.status == crate::checkbox::Status::Resumable)
                .and_then(|s| s.running_job.as_deref())
                .filter(|j| !j.is_empty())
                .map_or_else(dash, |j| names::escape(OsStr::new(j))),
            summary
                .and_then(|s| s.title.as_deref())
                .filter(|t| !t.is_empty())
                .map_or_else(dash, names::printable),
        ]);
    }
    let mut widths = [0usize; 10];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &cells {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {:<w5$}  {:<w6$}  {:>w7$}  {:<w8$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
            w5 = widths[5],
            w6 = widths[6],
            w7 = widths[7],
            w8 = widths[8],
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A JSON array of objects: `id` (as it is when it is UTF-8; else as the
/// table prints it, with `"id_escaped": true`), `path` (likewise, with
/// `"path_escaped"`), `created` and `modified` (RFC 3339,
/// UTC), `size` (bytes, or null without a checkpoint), `locked` (`"no"`,
/// `"writing"` or `"stale"`), `last` (bool); then what a Checkbox
/// checkpoint says ([`Summary::to_json`]: `title`, `app_id`, `flags`,
/// `status`, `jobs_done`, `jobs_total`, `outcomes`, `running_job`,
/// `format_version`), all null for any other checkpoint.
fn write_json(rows: &[Row], out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, rows)?;
    writeln!(out)
}

impl serde::Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self.id.to_str() {
            Some(id) => m.serialize_entry("id", id)?,
            None => {
                m.serialize_entry("id", &names::escape(&self.id))?;
                m.serialize_entry("id_escaped", &true)?;
            }
        }
        match self.path.to_str() {
            Some(path) => m.serialize_entry("path", path)?,
            None => {
                m.serialize_entry("path", &names::escape(self.path.as_os_str()))?;
                m.serialize_entry("path_escaped", &true)?;
            }
        }
        m.serialize_entry("created", &rfc3339(self.created))?;
        m.serialize_entry("modified", &rfc3339(self.modified))?;
        m.serialize_entry("size", &self.size)?;
        m.serialize_entry("locked", locked_word(self.locked))?;
        m.serialize_entry("last", &self.last)?;
        let checkbox = match self.glance.summary() {
            Some(s) => s.to_json(),
            None => Summary::null_json(),
        };
        if let serde_json::Value::Object(fields) = checkbox {
            for (k, v) in &fields {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// `2026-11-22T01:02:03Z` (whole seconds, UTC).
fn rfc3339(t: SystemTime) -> String {
    let t = DateTime::from_system_time(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `512B`, `4.0K`, `1.5M`, `2.0G`.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// The directory's birth time where the filesystem records it, else its
/// status-change time; `None` when neither can be had (or it is before the
/// epoch).
fn birth_or_change_time(dir: BorrowedFd<'_>) -> Option<SystemTime> {
    let stx = sys::fstatx(dir, libc::STATX_BTIME | libc::STATX_CTIME).ok()?;
    let ts = if stx.stx_mask & libc::STATX_BTIME != 0 {
        stx.stx_btime
    } else {
        stx.stx_ctime
    };
    (ts.tv_sec >= 0).then(|| sys::system_time(ts.tv_sec, i64::from(ts.tv_nsec)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_795_310_523)), "2026-11-22T01:22:03Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1023), "1023B");
        assert_eq!(human_size(4096), "4.0K");
        assert_eq!(human_size(3 << 20), "3.0M");
        assert_eq!(human_size(5 << 40), "5.0T");
        assert_eq!(human_size(2048 << 40), "2048.0T");
    }

    #[test]
    fn the_table_is_aligned_and_json_is_typed() {
        let rows = vec![
            Row {
                id: "pbox-2026-11-22T01.22.03".into(),
                path: "/r/pbox-2026-11-22T01.22.03.session".into(),
                created: at(1_795_310_523),
                modified: at(1_795_310_599),
                size: Some(4096),
                locked: LockState::Stale,
                last: true,
                glance: Glance::Nothing,
            },
            Row {
                id: "x".into(),
                path: "/r/x.session".into(),
                created: at(0),
                modified: at(0),
                size: None,
                locked: LockState::Unlocked,
                last: false,
                glance: Glance::Damaged("x".into()),
            },
        ];
        let mut table = Vec::new();
        write_table(&rows, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  "), "{table}");
        let col = |l: &str, word: &str| l.find(word).unwrap();
        assert_eq!(
            col(lines[0], "CREATED"),
            col(lines[1], "2026-11-22T01:22:03Z")
        );
        assert_eq!(
            col(lines[0], "CREATED"),
            col(lines[2], "1970-01-01T00:00:00Z")
        );
        assert!(lines[1].contains("4.0K  stale   yes"), "{table}");
        assert!(lines[2].contains("   -  -       -     -"), "{table}");
        // A checkpoint that says nothing of Checkbox: dashes.
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells[cells.len() - 4..], ["-", "-", "-", "-"], "{table}");

        let mut json = Vec::new();
        write_json(&rows, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[0]["id"], "pbox-2026-11-22T01.22.03");
        assert_eq!(v[0]["created"], "2026-11-22T01:22:03Z");
        assert_eq!(v[0]["size"], 4096);
        assert_eq!(v[0]["locked"], "stale");
        assert_eq!(v[0]["last"], true);
        assert_eq!(v[1]["size"], serde_json::Value::Null);
        assert_eq!(v[1]["locked"], "no");
        assert_eq!(v[1]["last"], false);
        for key in ["title", "status", "jobs_done", "format_version"] {
            assert_eq!(v[1][key], serde_json::Value::Null, "{key}");
        }
    }

    #[test]
    fn a_checkbox_session_shows_its_title_status_and_progress() {
        let bytes = include_bytes!("../../tests/data/checkbox-1.18.1-v7.session");
        let reading =
            crate::checkbox::read_checkpoint_bytes(bytes, crate::decode::Limits::default())
                .unwrap();
        let crate::checkbox::Reading::Checkpoint(summary) = reading else {
            panic!("not a checkpoint");
        };
        let want = (
            summary.status.as_str(),
            format!("{}/{}", summary.jobs_done, summary.jobs_total),
            summary.title.clone().unwrap(),
        );
        let rows = vec![Row {
            id: "s".into(),
            path: "/r/s.session".into(),
            created: at(0),
            modified: at(0),
            size: Some(10),
            locked: LockState::Unlocked,
            last: false,
            glance: Glance::Checkbox(summary),
        }];
        let mut table = Vec::new();
        write_table(&rows, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        let line = table.lines().nth(1).unwrap();
        assert!(line.contains(want.0), "{table}");
        assert!(line.contains(&want.1), "{table}");
        assert!(line.ends_with(&want.2), "{table}");
        let mut json = Vec::new();
        write_json(&rows, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[0]["status"], want.0);
        assert_eq!(v[0]["format_version"], 7);
        assert_eq!(v[0]["title"], want.2.as_str());
        assert_eq!(v[0]["id"], "s");
    }

    #[test]
    fn control_characters_of_a_title_are_escaped() {
        assert_eq!(names::printable("a b\nc\x1b[2J"), "a b\\nc\\033[2J");
    }
}
