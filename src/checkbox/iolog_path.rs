//! Where a result's output is: a safe reading of `io_log_filename`.
//!
//! Checkbox writes a job's output to `<session dir>/io-logs/<slug>.record.gz`
//! with `<slug>.stdout` and `<slug>.stderr` next to it (`slug` is the job id
//! with every character outside `[A-Za-z0-9._-]` made `_`; `_run_command`
//! in `checkbox-ng/plainbox/impl/execution.py`, `slugify` in
//! `plainbox/impl/runner.py`). The checkpoint stores the record's path
//! relative to the session directory from format version 5 on
//! (`SessionSuspendHelper5._repr_DiskJobResult`: `io-logs/x.record.gz`) and
//! absolute before that (or when saved without a session directory):
//! `/var/tmp/checkbox-ng/sessions/<id>/io-logs/x.record.gz`, or
//! `~/.cache/plainbox/sessions/<id>/...` for plainbox; Checkbox itself
//! rewrites such a path to the session's current place when the session
//! moved (`SessionResumeHelper1._rewrite_pathname`).
//!
//! [`resolve_io_log`] accepts only what names a file of *this* session:
//! `io-logs/<name>` or `<name>` relative to the session directory; an
//! absolute path is accepted when it lies under the session's directory
//! (given), or when it ends in `<session id>/io-logs/<name>` or
//! `<session id>/<name>` (the session seen from another place). Anything
//! else (`..`, `/etc/passwd`, another session's directory, a deeper
//! directory) is refused.
//!
//! Invariant: whatever the input, an accepted path is `<name>` or
//! `io-logs/<name>`, `<name>` one plain component (not `.` or `..`), so it
//! can only name an entry of this session's directory or of its io-logs. Pure: it looks at no file. The caller opens the
//! result relative to the session directory without following symbolic
//! links (`O_NOFOLLOW`, and `io-logs` itself not a link), which a path
//! alone cannot promise.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// The session's directory of job outputs.
pub const IO_LOGS_DIR: &str = "io-logs";
/// The suffix of a job's record file.
pub const RECORD_SUFFIX: &str = ".record.gz";

/// Why an `io_log_filename` is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoLogRefusal {
    /// The name as the checkpoint has it.
    pub name: String,
    pub reason: RefusalReason,
}

/// What is wrong with an `io_log_filename`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Empty, `.`, or ends in `/`: no file named.
    NoFileName,
    /// A NUL byte (no such file name can exist).
    NulByte,
    /// A `..` component.
    ParentDirectory,
    /// Relative, but not `io-logs/<name>` or `<name>`.
    OutsideIoLogs,
    /// Absolute, and not in this session's directory.
    OutsideSession,
}

impl fmt::Display for IoLogRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            RefusalReason::NoFileName => "it names no file",
            RefusalReason::NulByte => "it holds a NUL byte",
            RefusalReason::ParentDirectory => "it climbs out with \"..\"",
            RefusalReason::OutsideIoLogs => "it is not in the session's io-logs directory",
            RefusalReason::OutsideSession => "it is not in this session's directory",
        };
        write!(f, "refusing io-log path {:?}: {why}", self.name)
    }
}

impl std::error::Error for IoLogRefusal {}

/// Resolves `io_log_filename` to a path relative to the session directory
/// (`io-logs/<name>` or `<name>`). `session_id` is the name of the session
/// directory; `session_dir`, if known, is its absolute path (as Checkbox
/// would have written it).
pub fn resolve_io_log(
    io_log_filename: &str,
    session_id: &OsStr,
    session_dir: Option<&Path>,
) -> Result<PathBuf, IoLogRefusal> {
    let refuse = |reason| IoLogRefusal {
        name: io_log_filename.to_owned(),
        reason,
    };
    if io_log_filename.contains('\0') {
        return Err(refuse(RefusalReason::NulByte));
    }
    if io_log_filename.is_empty() || io_log_filename.ends_with('/') {
        return Err(refuse(RefusalReason::NoFileName));
    }
    let path = Path::new(io_log_filename);
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => return Err(refuse(RefusalReason::ParentDirectory)),
            Component::Normal(p) => parts.push(p),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return Err(refuse(RefusalReason::NoFileName));
    }
    let inside: &[&OsStr] = if path.is_absolute() {
        let under_dir = session_dir
            .filter(|d| d.is_absolute())
            .and_then(|d| strip_dir(&parts, d));
        match under_dir {
            Some(rest) => rest,
            None => {
                // The session seen from elsewhere: `.../<id>/io-logs/<name>`
                // or `.../<id>/<name>`.
                let n = parts.len();
                if n >= 3 && parts[n - 3] == session_id && parts[n - 2] == IO_LOGS_DIR {
                    &parts[n - 2..]
                } else if n >= 2 && parts[n - 2] == session_id {
                    &parts[n - 1..]
                } else {
                    return Err(refuse(RefusalReason::OutsideSession));
                }
            }
        }
    } else {
        &parts
    };
    match inside {
        // The directory itself is no log.
        [name] if *name == IO_LOGS_DIR => Err(refuse(RefusalReason::NoFileName)),
        [name] => Ok(PathBuf::from(name)),
        [dir, name] if *dir == IO_LOGS_DIR => Ok(Path::new(IO_LOGS_DIR).join(name)),
        [] => Err(refuse(RefusalReason::NoFileName)),
        _ if path.is_absolute() => Err(refuse(RefusalReason::OutsideSession)),
        _ => Err(refuse(RefusalReason::OutsideIoLogs)),
    }
}

/// The components of `parts` after the (normalized) directory `dir`, if
/// `parts` is under it.
fn strip_dir<'a>(parts: &'a [&'a OsStr], dir: &Path) -> Option<&'a [&'a OsStr]> {
    let mut dir_parts = Vec::new();
    for c in dir.components() {
        match c {
            Component::Normal(p) => dir_parts.push(p),
            // A `..` in the session's own path: do not guess what it means.
            Component::ParentDir => return None,
            _ => {}
        }
    }
    (parts.len() > dir_parts.len() && parts[..dir_parts.len()] == dir_parts[..])
        .then(|| &parts[dir_parts.len()..])
}

/// The plain-text copies Checkbox writes next to a record file:
/// `io-logs/x.record.gz` -> (`io-logs/x.stdout`, `io-logs/x.stderr`).
/// `None` when `record` does not end in `.record.gz`.
pub fn fallback_paths(record: &Path) -> Option<(PathBuf, PathBuf)> {
    let name = record.file_name()?.to_str()?;
    let stem = name.strip_suffix(RECORD_SUFFIX).filter(|s| !s.is_empty())?;
    Some((
        record.with_file_name(format!("{stem}.stdout")),
        record.with_file_name(format!("{stem}.stderr")),
    ))
}

/// Checkbox's file name stem for a job's outputs (`slugify`).
pub fn job_slug(job_id: &str) -> String {
    job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where Checkbox puts a job's record, relative to the session directory,
/// for a job whose result names none.
pub fn record_path_for_job(job_id: &str) -> PathBuf {
    Path::new(IO_LOGS_DIR).join(format!("{}{RECORD_SUFFIX}", job_slug(job_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "demo2026-12-01T09.42.47.123456";

    fn resolve(name: &str) -> Result<PathBuf, RefusalReason> {
        resolve_io_log(name, OsStr::new(ID), None).map_err(|r| r.reason)
    }

    #[test]
    fn relative_names_inside_the_session() {
        assert_eq!(
            resolve("io-logs/ns__pass.record.gz").unwrap(),
            Path::new("io-logs/ns__pass.record.gz")
        );
        assert_eq!(
            resolve("./io-logs/x.record.gz").unwrap(),
            Path::new("io-logs/x.record.gz")
        );
        assert_eq!(resolve("x.record.gz").unwrap(), Path::new("x.record.gz"));
        assert_eq!(
            resolve("io-logs//x.record.gz").unwrap(),
            Path::new("io-logs/x.record.gz")
        );
    }

    #[test]
    fn absolute_names_of_this_session() {
        let abs = format!("/var/tmp/checkbox-ng/sessions/{ID}/io-logs/x.record.gz");
        assert_eq!(resolve(&abs).unwrap(), Path::new("io-logs/x.record.gz"));
        // Moved since: plainbox's old place, the same session id.
        let old = format!("/home/u/.cache/plainbox/sessions/{ID}/io-logs/x.record.gz");
        assert_eq!(resolve(&old).unwrap(), Path::new("io-logs/x.record.gz"));
        let top = format!("/srv/{ID}/x.stdout");
        assert_eq!(resolve(&top).unwrap(), Path::new("x.stdout"));
        // Under the session's known directory, whatever its name.
        let dir = Path::new("/mnt/s/renamed");
        assert_eq!(
            resolve_io_log(
                "/mnt/s/renamed/io-logs/y.record.gz",
                OsStr::new(ID),
                Some(dir)
            )
            .unwrap(),
            Path::new("io-logs/y.record.gz")
        );
    }

    #[test]
    fn hostile_names_are_refused() {
        use RefusalReason::*;
        let cases: [(&str, RefusalReason); 14] = [
            ("../../etc/passwd", ParentDirectory),
            ("io-logs/../../other/io-logs/x.record.gz", ParentDirectory),
            ("/etc/passwd", OutsideSession),
            (
                "/var/tmp/checkbox-ng/sessions/other/io-logs/x.record.gz",
                OutsideSession,
            ),
            (
                "/var/tmp/checkbox-ng/sessions/other/x.record.gz",
                OutsideSession,
            ),
            ("/", NoFileName),
            ("", NoFileName),
            (".", NoFileName),
            ("io-logs/", NoFileName),
            ("./io-logs", NoFileName),
            ("io-logs/a/b.record.gz", OutsideIoLogs),
            ("session-share/x", OutsideIoLogs),
            ("io-logs/x\0.record.gz", NulByte),
            ("/x/ID/deeper/io-logs/x.record.gz", OutsideSession),
        ];
        for (name, reason) in cases {
            assert_eq!(resolve(name), Err(reason), "{name:?}");
        }
        // The session id as a directory deeper than io-logs is not it.
        let deep = format!("/v/{ID}/io-logs/sub/x.record.gz");
        assert_eq!(resolve(&deep), Err(OutsideSession));
        // `..` is refused even when it would land back inside.
        let back = format!("/v/{ID}/io-logs/../io-logs/x.record.gz");
        assert_eq!(resolve(&back), Err(ParentDirectory));
        let r = resolve_io_log("../../etc/passwd", OsStr::new(ID), None).unwrap_err();
        assert_eq!(
            r.to_string(),
            "refusing io-log path \"../../etc/passwd\": it climbs out with \"..\""
        );
    }

    #[test]
    fn nothing_resolves_outside_the_session() {
        let pieces = [
            "",
            ".",
            "..",
            "io-logs",
            ID,
            "other",
            "x.record.gz",
            "etc",
            "passwd",
        ];
        let mut names = vec![String::new()];
        for _ in 0..4 {
            let mut longer = Vec::new();
            for n in &names {
                for p in pieces {
                    longer.push(format!("{n}/{p}"));
                    longer.push(format!("{n}{p}/"));
                }
            }
            names.extend(longer);
            names.dedup();
        }
        let mut accepted = 0;
        for name in &names {
            let dir = Path::new("/var/tmp/checkbox-ng/sessions").join(ID);
            for session_dir in [None, Some(dir.as_path())] {
                let Ok(path) = resolve_io_log(name, OsStr::new(ID), session_dir) else {
                    continue;
                };
                accepted += 1;
                let parts: Vec<Component> = path.components().collect();
                let ok = match parts.as_slice() {
                    [Component::Normal(_)] => true,
                    [Component::Normal(d), Component::Normal(_)] => *d == IO_LOGS_DIR,
                    _ => false,
                };
                assert!(ok, "{name:?} -> {path:?}");
                assert!(!name.split('/').any(|c| c == ".."), "{name:?} accepted");
            }
        }
        assert!(
            accepted > 100,
            "only {accepted} of {} accepted",
            names.len()
        );
    }

    #[test]
    fn the_text_copies_next_to_a_record() {
        let (out, err) = fallback_paths(Path::new("io-logs/ns__pass.record.gz")).unwrap();
        assert_eq!(out, Path::new("io-logs/ns__pass.stdout"));
        assert_eq!(err, Path::new("io-logs/ns__pass.stderr"));
        assert_eq!(fallback_paths(Path::new("io-logs/x.log")), None);
        assert_eq!(fallback_paths(Path::new("io-logs/.record.gz")), None);
    }

    #[test]
    fn job_ids_become_checkbox_slugs() {
        assert_eq!(
            job_slug("com.canonical.certification::cpu/scaling"),
            "com.canonical.certification__cpu_scaling"
        );
        assert_eq!(job_slug("ünï code"), "_n__code");
        assert_eq!(
            record_path_for_job("ns::a b"),
            Path::new("io-logs/ns__a_b.record.gz")
        );
    }
}
