//! Session ids as people see and type them.
//!
//! An id is any bytes a directory name may hold, control characters and
//! non-UTF-8 included. Printed raw, a newline in an id would break `list`'s
//! table and a terminal escape could rewrite the screen. So ids are shown
//! the way `ls --quoting-style=escape` shows names: backslash escapes for
//! `\\`, space and the C control characters (`\n`, `\t`, …), three-digit
//! octal (`\377`) for every other control byte and for bytes that are not
//! UTF-8. Every command accepts an id as it was printed, as well as raw.
//!
//! Invariants: [`unescape`] undoes [`escape`] for every byte string, so the
//! printed form always finds the session again; an id that needs no
//! escaping is printed unchanged.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::core::Repository;

/// `id` as `list` and every other command print it.
pub fn escape(id: &OsStr) -> String {
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (good, after) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `good` is valid UTF-8 by construction.
                let good = std::str::from_utf8(good).unwrap_or_default();
                let bad_len = e.error_len().unwrap_or(after.len());
                (good, &after[..bad_len])
            }
        };
        for c in valid.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                ' ' => out.push_str("\\ "),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\x0b' => out.push_str("\\v"),
                '\x0c' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).as_bytes() {
                        out.push_str(&format!("\\{b:03o}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in bad {
            out.push_str(&format!("\\{b:03o}"));
        }
        rest = &rest[valid.len() + bad.len()..];
    }
    out
}

/// Text read from a session (a title, a job id, a comment) as a terminal
/// may show it: control characters escaped as [`escape`] does, spaces and
/// the rest kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            out.push_str(&escape(OsStr::new(c.encode_utf8(&mut buf))));
        } else {
            out.push(c);
        }
    }
    out
}

/// The bytes an escaped id stands for; `None` when `printed` is not a
/// well-formed escaped id (a lone backslash, an unknown escape).
pub fn unescape(printed: &OsStr) -> Option<OsString> {
    let b = printed.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let next = *b.get(i + 1)?;
        let simple = match next {
            b'\\' => Some(b'\\'),
            b' ' => Some(b' '),
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b't' => Some(b'\t'),
            b'n' => Some(b'\n'),
            b'v' => Some(0x0b),
            b'f' => Some(0x0c),
            b'r' => Some(b'\r'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            i += 2;
            continue;
        }
        let digits = b.get(i + 1..i + 4)?;
        if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
            return None;
        }
        let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
        out.push(u8::try_from(value).ok()?);
        i += 4;
    }
    Some(OsString::from_vec(out))
}

/// The id a user means: `given` itself when a session of that id exists or
/// it holds no escape, else what its escapes stand for.
pub fn resolve(repo: &Repository, given: &OsStr) -> OsString {
    if !given.as_bytes().contains(&b'\\') || repo.open(given).is_ok() {
        return given.to_os_string();
    }
    match unescape(given) {
        Some(id) if repo.open(&id).is_ok() => id,
        _ => given.to_os_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(b: &[u8]) -> OsString {
        OsString::from_vec(b.to_vec())
    }

    #[test]
    fn plain_ids_print_unchanged() {
        for id in ["pbox-2026-11-22T01.02.03", "café_(1)", "a-b.c"] {
            assert_eq!(escape(OsStr::new(id)), id);
        }
    }

    #[test]
    fn control_characters_and_bad_bytes_are_escaped() {
        assert_eq!(escape(&os(b"a\nb")), "a\\nb");
        assert_eq!(escape(&os(b"a b\\c")), "a\\ b\\\\c");
        assert_eq!(escape(&os(b"\x1b[2J")), "\\033[2J");
        assert_eq!(escape(&os(b"x\xffy")), "x\\377y");
        assert_eq!(escape(&os(b"\x7f")), "\\177");
        // A C1 control character, valid UTF-8 but not printable.
        assert_eq!(escape(&os("\u{85}".as_bytes())), "\\302\\205");
    }

    #[test]
    fn unescape_undoes_escape_for_every_byte() {
        let mut all: Vec<u8> = (0u8..=255).collect();
        all.extend_from_slice("é\u{85}\\n".as_bytes());
        for window in all.windows(3) {
            let id = os(window);
            let printed = escape(&id);
            assert_eq!(
                unescape(OsStr::new(&printed)),
                Some(id.clone()),
                "{printed}"
            );
            assert!(
                !printed.chars().any(|c| c.is_control()),
                "{printed:?} holds a control character"
            );
        }
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for bad in ["a\\", "a\\q", "\\9", "\\77", "\\400"] {
            assert_eq!(unescape(OsStr::new(bad)), None, "{bad}");
        }
    }
}
