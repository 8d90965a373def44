//! `sessionfs list`: the sessions as an aligned table, or as JSON for
//! scripts.
//!
//! Times are UTC. A session's creation time is the one its name carries
//! (`PREFIX%Y-%m-%dT%H.%M.%S[_(N)].session`, as plainbox and `create` name
//! them), else the directory's birth time where the filesystem records it,
//! else its status-change time.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};

use crate::app::{AppError, human_size};
use crate::core::{self, LockState, Repository};

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print a JSON array (id, path, created, modified, size, locked, last)
    /// instead of the table
    #[arg(long)]
    pub json: bool,
    /// Order of the sessions
    #[arg(long, value_enum, default_value_t = SortBy::Age)]
    pub sort: SortBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// Youngest first (by last modification)
    Age,
    /// By id, alphabetically
    Name,
}

/// One session, as listed.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub path: PathBuf,
    pub created: SystemTime,
    pub modified: SystemTime,
    /// The checkpoint's size; `None` when there is no checkpoint yet.
    pub size: Option<u64>,
    pub locked: LockState,
    pub last: bool,
}

/// The sessions of `repo`, in the order asked for. A session removed while
/// the listing runs is left out.
pub fn rows(repo: &Repository, sort: SortBy) -> Result<Vec<Row>, core::Error> {
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
        let id = storage.id().to_string_lossy().into_owned();
        let path = storage.location();
        let created = created_from_name(&id)
            .or_else(|| birth_or_change_time(&path))
            .unwrap_or(entry.modified);
        rows.push(Row {
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

/// `sessionfs list`.
pub fn run(repo: &Repository, args: &ListArgs) -> Result<(), AppError> {
    let rows = rows(repo, args.sort)?;
    // One write per buffer, not per line.
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let result = if args.json {
        write_json(&rows, &mut out)
    } else {
        write_table(&rows, &mut out)
    };
    match result.and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(AppError::Output(e)),
        _ => Ok(()),
    }
}

fn locked_word(state: LockState) -> &'static str {
    match state {
        LockState::Unlocked => "no",
        LockState::Held => "writing",
        LockState::Stale => "stale",
    }
}

/// The table: a header and one line per session, columns aligned.
pub fn write_table(rows: &[Row], out: &mut dyn Write) -> io::Result<()> {
    let mut cells = vec![[
        "ID".to_string(),
        "CREATED".to_string(),
        "MODIFIED".to_string(),
        "SIZE".to_string(),
        "LOCKED".to_string(),
        "LAST".to_string(),
    ]];
    for r in rows {
        cells.push([
            r.id.clone(),
            rfc3339(r.created),
            rfc3339(r.modified),
            r.size.map_or_else(|| "-".to_string(), human_size),
            match r.locked {
                LockState::Unlocked => "-".to_string(),
                other => locked_word(other).to_string(),
            },
            if r.last { "yes" } else { "-" }.to_string(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &cells {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A JSON array of objects: `id`, `path`, `created` and `modified` (RFC 3339,
/// UTC), `size` (bytes, or null without a checkpoint), `locked` (`"no"`,
/// `"writing"` or `"stale"`), `last` (bool).
pub fn write_json(rows: &[Row], out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, rows)?;
    writeln!(out)
}

impl serde::Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("path", &self.path.to_string_lossy())?;
        m.serialize_entry("created", &rfc3339(self.created))?;
        m.serialize_entry("modified", &rfc3339(self.modified))?;
        m.serialize_entry("size", &self.size)?;
        m.serialize_entry("locked", locked_word(self.locked))?;
        m.serialize_entry("last", &self.last)?;
        m.end()
    }
}

/// `2026-11-22T01:02:03Z` (whole seconds, UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The creation time a session's id carries: `…%Y-%m-%dT%H.%M.%S` at its
/// end, optionally followed by `_(N)`.
pub fn created_from_name(id: &str) -> Option<SystemTime> {
    let mut stem = id;
    if let Some(open) = stem.rfind("_(")
        && let Some(n) = stem[open + 2..].strip_suffix(')')
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        stem = &stem[..open];
    }
    let ts = stem.get(stem.len().checked_sub(19)?..)?.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &ts[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if ts[4] != b'-' || ts[7] != b'-' || ts[10] != b'T' || ts[13] != b'.' || ts[16] != b'.' {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, s) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    if civil_from_days(days) != (y, mo as u32, d as u32) {
        return None; // 2026-02-31 and the like
    }
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The directory's birth time (statx), else its status-change time.
fn birth_or_change_time(path: &Path) -> Option<SystemTime> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statx is a valid value for the kernel to fill.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `stx` a writable statx.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BTIME | libc::STATX_CTIME,
            &mut stx,
        )
    };
    if rc != 0 {
        return None;
    }
    let ts = if stx.stx_mask & libc::STATX_BTIME != 0 {
        stx.stx_btime
    } else {
        stx.stx_ctime
    };
    u64::try_from(ts.tv_sec)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::new(s, ts.tv_nsec))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

use crate::core::name::civil_from_days;

#[cfg(test)]
mod tests {
    use super::*;

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
    fn creation_times_come_from_session_names() {
        let t = created_from_name("pbox-2026-11-22T01.22.03").unwrap();
        assert_eq!(rfc3339(t), "2026-11-22T01:22:03Z");
        let t = created_from_name("my 2024-2000-02-29T00.00.00_(12)").unwrap();
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00Z");
        for bad in [
            "pbox-",
            "x",
            "pbox-2026-13-01T00.00.00",
            "pbox-2026-02-30T00.00.00",
            "pbox-2026-11-22T24.00.00",
            "pbox-2026-11-22T01:22:03",
            "pbox-2026-11-22T01.22.03_()",
            "pbox-2026-11-22T01.22.0x",
            "héhé-2026-11-22T01.22.0",
        ] {
            assert_eq!(created_from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_round_trip() {
        for z in [-800_000, -1, 0, 1, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
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
            },
            Row {
                id: "x".into(),
                path: "/r/x.session".into(),
                created: at(0),
                modified: at(0),
                size: None,
                locked: LockState::Unlocked,
                last: false,
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
        assert!(lines[1].ends_with("4.0K  stale   yes"), "{table}");
        assert!(lines[2].ends_with("   -  -       -"), "{table}");

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
    }
}
