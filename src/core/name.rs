//! Session names, ids, prefixes and timestamps.
//!
//! Invariants: a [`SessionName`] always holds a single path component that
//! is not `.`/`..`, not hidden, contains no `/` or NUL, is at most 255 bytes
//! and ends with `.session`; so it can be joined to a repository directory
//! without ever escaping it.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// `time` in UTC as `%Y-%m-%dT%H.%M.%S`.
pub fn utc_timestamp(time: SystemTime) -> String {
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}.{:02}.{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    use std::time::Duration;

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
