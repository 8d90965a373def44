//! Session names, ids, prefixes and timestamps.
//!
//! Invariants: a [`SessionName`] always holds a single path component that
//! is not `.`/`..`, not hidden, contains no `/` or NUL, is at most 255 bytes
//! and ends with `.session`; so it can be joined to a repository directory
//! without ever escaping it.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use super::calendar::DateTime;
use super::error::{Error, NameProblem, Result};

pub const SESSION_SUFFIX: &str = ".session";
const NAME_MAX: usize = 255;

/// A validated session directory name (`ID.session`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionName(OsString);

impl SessionName {
    /// Validates a directory name as a session name.
    pub fn new(name: &OsStr) -> Result<SessionName> {
        match check_name(name.as_bytes()) {
            Ok(()) => Ok(SessionName(name.to_os_string())),
            Err(problem) => Err(Error::InvalidName {
                name: name.to_string_lossy().into_owned(),
                problem,
            }),
        }
    }

    /// The session name for an id (`ID` → `ID.session`).
    pub fn from_id(id: &OsStr) -> Result<SessionName> {
        let mut name = id.to_os_string();
        name.push(SESSION_SUFFIX);
        let bytes = id.as_bytes();
        // Report the problem in terms of the id the user typed.
        let problem = if bytes.is_empty() {
            Some(NameProblem::Empty)
        } else {
            check_name(name.as_bytes()).err()
        };
        match problem {
            None => Ok(SessionName(name)),
            Some(problem) => Err(Error::InvalidName {
                name: id.to_string_lossy().into_owned(),
                problem,
            }),
        }
    }

    pub fn as_os_str(&self) -> &OsStr {
        &self.0
    }

    /// The session id: the name without `.session`.
    pub fn id(&self) -> &OsStr {
        let b = self.0.as_bytes();
        OsStr::from_bytes(&b[..b.len() - SESSION_SUFFIX.len()])
    }
}

impl fmt::Display for SessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_string_lossy())
    }
}

/// True when `name` is an entry a repository listing considers (before the
/// file-type check).
pub fn is_session_name(name: &OsStr) -> bool {
    check_name(name.as_bytes()).is_ok()
}

fn check_name(b: &[u8]) -> std::result::Result<(), NameProblem> {
    if b.is_empty() {
        return Err(NameProblem::Empty);
    }
    if b.len() > NAME_MAX {
        return Err(NameProblem::TooLong);
    }
    if b.contains(&0) {
        return Err(NameProblem::HasNul);
    }
    if b.contains(&b'/') {
        return Err(NameProblem::HasSlash);
    }
    if b == b"." || b == b".." {
        return Err(NameProblem::DotOrDotDot);
    }
    if b[0] == b'.' {
        return Err(NameProblem::Hidden);
    }
    if !b.ends_with(SESSION_SUFFIX.as_bytes()) {
        return Err(NameProblem::NoSessionSuffix);
    }
    Ok(())
}

/// Keeps ASCII letters, digits, `-`, `_` and `.`; every other character
/// becomes `_` (one `_` per character, as plainbox does).
pub fn slugify(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// How a repository's sessions are named and laid out: as plainbox 0.38
/// makes them, or as today's Checkbox (checkbox-ng) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `PREFIX%Y-%m-%dT%H.%M.%S.session` with `io-logs/`; legacy mode
    /// (`last-session`) allowed.
    Plainbox,
    /// `PREFIX%Y-%m-%dT%H.%M.%S.%f.session` (microseconds, checkbox-ng
    /// since 7.2.0) with `io-logs/` and `session-share/`; no legacy mode:
    /// a symlink in Checkbox's repository empties Checkbox's own listing.
    Checkbox,
}

/// Checkbox's session repository (`WellKnownDirsHelper`, hard-coded).
pub const CHECKBOX_REPOSITORY: &str = "/var/tmp/checkbox-ng/sessions";

/// The directories plainbox creates in every new session.
pub const PLAINBOX_WELL_KNOWN_DIRS: [&str; 1] = ["io-logs"];
/// The directories Checkbox creates in every new session
/// (`session-share` is the jobs' `$PLAINBOX_SESSION_SHARE`).
pub const CHECKBOX_WELL_KNOWN_DIRS: [&str; 2] = ["io-logs", "session-share"];

impl Layout {
    /// The layout of a repository at `location` when none was asked for:
    /// Checkbox's at Checkbox's well-known place, plainbox's elsewhere.
    pub fn for_location(location: &std::path::Path) -> Layout {
        let well_known = std::path::Path::new(CHECKBOX_REPOSITORY);
        let same = location == well_known
            || matches!(
                (location.canonicalize(), well_known.canonicalize()),
                (Ok(a), Ok(b)) if a == b
            );
        if same {
            Layout::Checkbox
        } else {
            Layout::Plainbox
        }
    }

    /// The directories created inside every new session.
    pub fn well_known_dirs(self) -> &'static [&'static str] {
        match self {
            Layout::Plainbox => &PLAINBOX_WELL_KNOWN_DIRS,
            Layout::Checkbox => &CHECKBOX_WELL_KNOWN_DIRS,
        }
    }

    /// The timestamp a new session's name carries.
    pub fn timestamp(self, time: SystemTime) -> String {
        match self {
            Layout::Plainbox => utc_timestamp(time),
            Layout::Checkbox => utc_timestamp_micros(time),
        }
    }

    /// Whether `last-session` (legacy mode) may exist in the repository.
    pub fn allows_last_session(self) -> bool {
        self == Layout::Plainbox
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Plainbox => "plainbox",
            Layout::Checkbox => "checkbox",
        }
    }
}

/// `time` in UTC as `%Y-%m-%dT%H.%M.%S.%f` (six digits of microseconds),
/// the timestamp in the names Checkbox gives sessions since 7.2.0.
pub fn utc_timestamp_micros(time: SystemTime) -> String {
    let micros = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    format!("{}.{micros:06}", utc_timestamp(time))
}

/// `time` in UTC as `%Y-%m-%dT%H.%M.%S`, the timestamp in the names
/// plainbox and `sessionfs create` give sessions.
pub fn utc_timestamp(time: SystemTime) -> String {
    let t = DateTime::from_system_time(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}.{:02}.{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The creation time a session id carries: the [`utc_timestamp`] (or
/// Checkbox's [`utc_timestamp_micros`]) at its end, optionally followed by
/// `_(N)` (see [`candidate_name`]); `None` for an id not made that way.
pub fn created_from_id(id: &str) -> Option<SystemTime> {
    let mut stem = id;
    if let Some(open) = stem.rfind("_(")
        && let Some(n) = stem[open + 2..].strip_suffix(')')
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        stem = &stem[..open];
    }
    if let Some(dot) = stem.len().checked_sub(7)
        && stem.as_bytes()[dot] == b'.'
        && let Some(frac) = stem.get(dot + 1..)
        && frac.bytes().all(|b| b.is_ascii_digit())
        && let Some(whole) = stem.get(..dot)
        && let Some(t) = created_from_stem(whole)
        && let Ok(micros) = frac.parse::<u64>()
    {
        return Some(t + std::time::Duration::from_micros(micros));
    }
    created_from_stem(stem)
}

fn created_from_stem(stem: &str) -> Option<SystemTime> {
    let ts = stem.get(stem.len().checked_sub(19)?..)?.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &ts[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if ts[4] != b'-' || ts[7] != b'-' || ts[10] != b'T' || ts[13] != b'.' || ts[16] != b'.' {
        return None;
    }
    DateTime::new(
        i64::from(digits(0..4)?),
        digits(5..7)?,
        digits(8..10)?,
        digits(11..13)?,
        digits(14..16)?,
        digits(17..19)?,
    )?
    .to_system_time()
}

/// The candidate names for a new session: `PREFIXTIME.session`, then
/// `PREFIXTIME_(1).session`, `PREFIXTIME_(2).session`, …
pub fn candidate_name(slug_prefix: &str, timestamp: &str, uniq: u32) -> OsString {
    if uniq == 0 {
        format!("{slug_prefix}{timestamp}{SESSION_SUFFIX}").into()
    } else {
        format!("{slug_prefix}{timestamp}_({uniq}){SESSION_SUFFIX}").into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn slug_keeps_safe_ascii_and_replaces_the_rest() {
        assert_eq!(slugify("pbox-"), "pbox-");
        assert_eq!(slugify("a b/c..d_é"), "a_b_c..d__");
        assert_eq!(slugify("x\0y"), "x_y");
    }

    #[test]
    fn timestamps_are_utc_in_plainbox_format() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00.00.00");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_309_323); // 2026-11-22T01:02:03Z
        assert_eq!(utc_timestamp(t), "2026-11-22T01.02.03");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00.00.00");
    }

    #[test]
    fn creation_times_come_from_session_ids() {
        let t = created_from_id("pbox-2026-11-22T01.22.03").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_795_310_523));
        let t = created_from_id("my 2024-2000-02-29T00.00.00_(12)").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(951_782_400));
        let now = UNIX_EPOCH + Duration::from_secs(1_795_309_323);
        let id = candidate_name("p-", &utc_timestamp(now), 3);
        let id = id.to_str().unwrap().strip_suffix(SESSION_SUFFIX).unwrap();
        assert_eq!(created_from_id(id), Some(now));
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
            assert_eq!(created_from_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn checkbox_names_carry_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_309_323_000_042);
        assert_eq!(utc_timestamp_micros(t), "2026-11-22T01.02.03.000042");
        assert_eq!(Layout::Checkbox.timestamp(t), "2026-11-22T01.02.03.000042");
        assert_eq!(Layout::Plainbox.timestamp(t), "2026-11-22T01.02.03");
        let id = "sessionfs_provider_run-2026-11-22T01.02.03.000042";
        assert_eq!(created_from_id(id), Some(t));
        assert_eq!(created_from_id(&format!("{id}_(2)")), Some(t));
        assert_eq!(
            Layout::Checkbox.well_known_dirs(),
            ["io-logs", "session-share"]
        );
        assert_eq!(Layout::Plainbox.well_known_dirs(), ["io-logs"]);
        assert_eq!(
            Layout::for_location(std::path::Path::new(CHECKBOX_REPOSITORY)),
            Layout::Checkbox
        );
        assert_eq!(
            Layout::for_location(std::path::Path::new("/tmp/x")),
            Layout::Plainbox
        );
    }

    #[test]
    fn candidates_insert_the_counter_before_the_suffix() {
        assert_eq!(candidate_name("p-", "T", 0), OsString::from("p-T.session"));
        assert_eq!(
            candidate_name("p-", "T", 2),
            OsString::from("p-T_(2).session")
        );
    }

    #[test]
    fn names_are_validated() {
        let ok = SessionName::new(OsStr::new("pbox-x.session")).unwrap();
        assert_eq!(ok.id(), OsStr::new("pbox-x"));
        for (bad, problem) in [
            ("", NameProblem::Empty),
            ("a/b.session", NameProblem::HasSlash),
            ("..", NameProblem::DotOrDotDot),
            (".hidden.session", NameProblem::Hidden),
            ("plain", NameProblem::NoSessionSuffix),
            ("a\0.session", NameProblem::HasNul),
        ] {
            match SessionName::new(OsStr::new(bad)) {
                Err(Error::InvalidName { problem: p, .. }) => assert_eq!(p, problem, "{bad:?}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let long = format!("{}.session", "a".repeat(248));
        assert!(matches!(
            SessionName::new(OsStr::new(&long)),
            Err(Error::InvalidName {
                problem: NameProblem::TooLong,
                ..
            })
        ));
        assert!(SessionName::new(OsStr::new(&long[1..])).is_ok());
    }

    #[test]
    fn ids_map_to_names_and_refuse_escapes() {
        assert_eq!(
            SessionName::from_id(OsStr::new("x")).unwrap().as_os_str(),
            OsStr::new("x.session")
        );
        for bad in ["", "..", "../x", "a/b", ".x"] {
            assert!(SessionName::from_id(OsStr::new(bad)).is_err(), "{bad:?}");
        }
    }
}
