//! Standard base64 (RFC 4648 alphabet, `=` padding), the encoding plainbox
//! uses for `app_blob` and for the data of each io-log record
//! (`base64.standard_b64encode`).
//!
//! Hand-written because it is twenty lines and the project has no base64
//! dependency. Decoding is strict where Python's `standard_b64decode` is
//! strict (the padded length must be a multiple of four) and stricter where
//! Python silently skips characters outside the alphabet: such input is
//! refused, since plainbox never writes it.

use std::fmt;

/// Why a text is not standard base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// The length (padding included) is not a multiple of four.
    Length(usize),
    /// A byte outside the alphabet, or `=` before the end, at this offset.
    Byte(usize),
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::Length(n) => {
                write!(f, "base64 text of {n} characters (not a multiple of 4)")
            }
            Base64Error::Byte(i) => write!(f, "invalid base64 character at offset {i}"),
        }
    }
}

impl std::error::Error for Base64Error {}

fn value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes `text` and appends the bytes to `out`. On an error, `out` is
/// left as it was.
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), Base64Error> {
    if !text.len().is_multiple_of(4) {
        return Err(Base64Error::Length(text.len()));
    }
    let start = out.len();
    out.reserve(text.len() / 4 * 3);
    let quads = text.len() / 4;
    for (q, quad) in text.chunks_exact(4).enumerate() {
        let last = q + 1 == quads;
        // `=` may only pad the last quad: "xx==" or "xxx=".
        let pad = match quad {
            [_, _, b'=', b'='] if last => 2,
            [_, _, _, b'='] if last => 1,
            _ => 0,
        };
        let mut acc = 0u32;
        for (i, &b) in quad[..4 - pad].iter().enumerate() {
            let Some(v) = value(b) else {
                out.truncate(start);
                return Err(Base64Error::Byte(q * 4 + i));
            };
            acc |= u32::from(v) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Ok(())
}

/// Decodes `text` into a new vector.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::new();
    decode_into(text, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rfc_4648_test_vectors() {
        let vectors: [(&str, &str); 7] = [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (text, plain) in vectors {
            assert_eq!(decode(text.as_bytes()).unwrap(), plain.as_bytes(), "{text}");
        }
        // Every byte value, through both ends of the alphabet.
        assert_eq!(decode(b"AP8+/w==").unwrap(), [0x00, 0xff, 0x3e, 0xff]);
    }

    #[test]
    fn refuses_what_plainbox_never_writes() {
        assert_eq!(decode(b"Zm9"), Err(Base64Error::Length(3)));
        assert_eq!(decode(b"Zm9v\nZg=="), Err(Base64Error::Length(9)));
        assert_eq!(decode(b"Zm*v"), Err(Base64Error::Byte(2)));
        // Padding in the middle is not padding.
        assert_eq!(decode(b"Zg==Zm9v"), Err(Base64Error::Byte(2)));
        assert_eq!(decode(b"Z==="), Err(Base64Error::Byte(1)));
        let mut out = b"kept".to_vec();
        assert!(decode_into(b"Zm9vZ*==", &mut out).is_err());
        assert_eq!(out, b"kept");
    }
}
