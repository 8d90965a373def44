//! Readable checkpoints: plainbox writes each checkpoint as gzip-compressed
//! JSON. [`decode_to`] turns a checkpoint (gzip+JSON, or plain JSON) into
//! pretty-printed JSON, streaming, under hard limits. A checkpoint counts as
//! JSON when it holds one JSON object or array (a bare number or string is
//! taken for opaque data).
//!
//! Invariants:
//! - memory does not grow with the checkpoint: the input is inflated and
//!   parsed as a stream and re-serialized as it is parsed (no document
//!   tree), so what is held at once is at most one JSON string (bounded by
//!   [`Limits::max_decoded`]) and the nesting (serde_json stops at 128
//!   levels);
//! - no input makes the work unbounded: inflating stops with
//!   [`DecodeError::TooLarge`] after [`Limits::max_decoded`] bytes (a gzip
//!   bomb costs at most that much inflating), and the output stops with
//!   [`DecodeError::OutputTooLarge`] after [`Limits::max_output`] bytes
//!   (pretty-printing a deeply nested document multiplies its size);
//! - a corrupt stream (truncated, bad CRC, trailing garbage) is an error,
//!   never a partial result: the whole gzip stream is read to its end and
//!   checked before success is reported.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use flate2::bufread::MultiGzDecoder;

pub(crate) mod bounded;

use bounded::{Bounded, LimitReached};

/// The name of the decoded view of `session` in each session directory of
/// the mount.
pub const VIEW_NAME: &str = "session.json";

const MIB: u64 = 1 << 20;

/// How much a decode may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of JSON the checkpoint may decompress to (or be, when it
    /// is plain JSON).
    pub max_decoded: u64,
    /// Most bytes of pretty-printed output.
    pub max_output: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_decoded: 64 * MIB,
            max_output: 128 * MIB,
        }
    }
}

/// What the checkpoint was stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// gzip-compressed JSON, as plainbox writes it.
    GzipJson,
    /// Plain JSON.
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::GzipJson => "gzip-compressed JSON",
            Format::Json => "JSON",
        })
    }
}

/// A successful decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub format: Format,
    /// Bytes of pretty-printed output, final newline included.
    pub size: u64,
}

/// Why a checkpoint has no decoded form.
#[derive(Debug)]
pub enum DecodeError {
    /// The checkpoint is empty (or there is none).
    Empty,
    /// Not gzip, and not JSON either: an opaque checkpoint.
    NotJson { detail: String },
    /// The gzip stream is corrupt: truncated, bad header or CRC, garbage.
    CorruptGzip { detail: String },
    /// The gzip stream is sound but what it holds is not JSON.
    GzipNotJson { detail: String },
    /// Decompressing (or reading plain JSON) went past
    /// [`Limits::max_decoded`].
    TooLarge { limit: u64 },
    /// The pretty-printed output went past [`Limits::max_output`].
    OutputTooLarge { limit: u64 },
    /// Reading the checkpoint failed.
    Read(io::Error),
    /// Writing the output failed (a closed pipe, a full disk).
    Write(io::Error),
}

impl DecodeError {
    /// True for an ordinary checkpoint that is simply not JSON (opaque bytes
    /// or nothing); false for a damaged or hostile one worth reporting.
    pub fn is_opaque(&self) -> bool {
        matches!(self, DecodeError::Empty | DecodeError::NotJson { .. })
    }
}

fn mib(n: u64) -> String {
    if n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("the checkpoint is empty"),
            DecodeError::NotJson { detail } => write!(
                f,
                "the checkpoint is neither gzip-compressed JSON nor JSON ({detail})"
            ),
            DecodeError::CorruptGzip { detail } => {
                write!(f, "the checkpoint's gzip stream is corrupt: {detail}")
            }
            DecodeError::GzipNotJson { detail } => write!(
                f,
                "the checkpoint is gzip-compressed but does not hold JSON ({detail})"
            ),
            DecodeError::TooLarge { limit } => {
                write!(f, "decoded checkpoint exceeds {}", mib(*limit))
            }
            DecodeError::OutputTooLarge { limit } => {
                write!(f, "pretty-printed checkpoint exceeds {}", mib(*limit))
            }
            DecodeError::Read(e) => write!(f, "cannot read the checkpoint: {e}"),
            DecodeError::Write(e) => write!(f, "cannot write the decoded checkpoint: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A writer that counts, and fails past `limit` bytes.
struct Counting<W> {
    inner: W,
    written: u64,
    limit: u64,
    exceeded: bool,
    failure: Option<io::Error>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.exceeded = true;
            return Err(io::Error::other(LimitReached));
        }
        match self.inner.write_all(buf) {
            Ok(()) => {
                self.written += buf.len() as u64;
                Ok(buf.len())
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failure = Some(e);
                Err(copy)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            self.failure = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }
}

/// Decodes a checkpoint from `reader` and writes it, pretty-printed with a
/// final newline, to `out`. On an error, `out` may have received part of
/// the output: callers that must not show a partial result decode once
/// into [`io::sink`] first (see [`measure`]), or into a buffer.
pub fn decode_to(
    reader: impl Read,
    limits: Limits,
    out: impl Write,
) -> Result<Decoded, DecodeError> {
    let mut input = BufReader::with_capacity(64 * 1024, reader);
    let head = loop {
        match input.fill_buf() {
            Ok(head) => break head,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecodeError::Read(e)),
        }
    };
    if head.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut out = Counting {
        inner: out,
        written: 0,
        limit: limits.max_output,
        exceeded: false,
        failure: None,
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut capped = Bounded::new(MultiGzDecoder::new(input), limits.max_decoded);
        let result = transcode(&mut capped, &mut out);
        finish(result, Format::GzipJson, &capped, &out, limits)
    } else {
        let mut capped = Bounded::new(input, limits.max_decoded);
        let result = transcode(&mut capped, &mut out);
        finish(result, Format::Json, &capped, &out, limits)
    }
}

/// Checks that `reader` holds a decodable checkpoint and tells the size of
/// its pretty-printed form, without keeping any of it.
pub fn measure(reader: impl Read, limits: Limits) -> Result<Decoded, DecodeError> {
    decode_to(reader, limits, io::sink())
}

/// Decodes a whole checkpoint into memory (at most [`Limits::max_output`]
/// bytes). `size_hint` is the expected size, if known, to allocate once.
pub fn decode_to_vec(
    reader: impl Read,
    limits: Limits,
    size_hint: Option<u64>,
) -> Result<(Decoded, Vec<u8>), DecodeError> {
    let capacity = size_hint
        .filter(|&n| n <= limits.max_output)
        .unwrap_or(0)
        .try_into()
        .unwrap_or(0);
    let mut buf = Vec::with_capacity(capacity);
    let decoded = decode_to(reader, limits, &mut buf)?;
    Ok((decoded, buf))
}

fn transcode<R: Read, W: Write>(
    input: &mut Bounded<R>,
    out: &mut Counting<W>,
) -> Result<(), serde_json::Error> {
    // serde_json reads its input one byte at a time: buffer above the cap.
    let mut input = BufReader::new(input);
    document_start(&mut input)?;
    let mut de = serde_json::Deserializer::from_reader(input);
    {
        let mut ser = serde_json::Serializer::pretty(&mut *out);
        serde_transcode::transcode(&mut de, &mut ser)?;
    }
    // Only whitespace may follow, up to the end of the (gzip) stream, whose
    // CRC and length are checked on the way.
    de.end()?;
    out.write_all(b"\n").map_err(serde_json::Error::io)?;
    out.flush().map_err(serde_json::Error::io)
}

/// Skips leading whitespace and checks that a JSON object or array
/// follows: a checkpoint that happens to parse as a bare number, string or
/// `null` is opaque data, not a JSON document.
fn document_start(input: &mut impl BufRead) -> Result<(), serde_json::Error> {
    use serde::de::Error as _;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(serde_json::Error::io(e)),
        };
        if buf.is_empty() {
            return Err(serde_json::Error::custom("no JSON value"));
        }
        match buf
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            Some(i) => {
                let first = buf[i];
                input.consume(i);
                return match first {
                    b'{' | b'[' => Ok(()),
                    _ => Err(serde_json::Error::custom("not a JSON object or array")),
                };
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

fn finish<R, W>(
    result: Result<(), serde_json::Error>,
    format: Format,
    input: &Bounded<R>,
    out: &Counting<W>,
    limits: Limits,
) -> Result<Decoded, DecodeError> {
    let e = match result {
        Ok(()) => {
            return Ok(Decoded {
                format,
                size: out.written,
            });
        }
        Err(e) => e,
    };
    if let Some(failure) = &out.failure {
        return Err(DecodeError::Write(io::Error::new(
            failure.kind(),
            failure.to_string(),
        )));
    }
    if input.exceeded() {
        return Err(DecodeError::TooLarge {
            limit: limits.max_decoded,
        });
    }
    if out.exceeded {
        return Err(DecodeError::OutputTooLarge {
            limit: limits.max_output,
        });
    }
    if let Some(failure) = input.failure() {
        let detail = match failure.kind() {
            io::ErrorKind::UnexpectedEof => "the stream is truncated".to_string(),
            _ => failure.to_string(),
        };
        return Err(match format {
            Format::GzipJson => DecodeError::CorruptGzip { detail },
            Format::Json => DecodeError::Read(io::Error::new(failure.kind(), detail)),
        });
    }
    let detail = e.to_string();
    Err(match format {
        Format::GzipJson => DecodeError::GzipNotJson { detail },
        Format::Json => DecodeError::NotJson { detail },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decode(data: &[u8]) -> Result<String, DecodeError> {
        decode_limited(data, Limits::default())
    }

    fn decode_limited(data: &[u8], limits: Limits) -> Result<String, DecodeError> {
        let (d, v) = decode_to_vec(data, limits, None)?;
        assert_eq!(d.size, v.len() as u64);
        Ok(String::from_utf8(v).unwrap())
    }

    #[test]
    fn gzip_json_is_pretty_printed() {
        let out = decode(&gzip(br#"{"a":[1,2],"b":"x"}"#)).unwrap();
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"x\"\n}\n"
        );
    }

    #[test]
    fn plain_json_is_pretty_printed_and_keeps_key_order() {
        let out = decode(b"  {\"z\":1,\"a\":{}}\n").unwrap();
        assert_eq!(out, "{\n  \"z\": 1,\n  \"a\": {}\n}\n");
        let (d, _) = decode_to_vec(&b"[]"[..], Limits::default(), None).unwrap();
        assert_eq!(d.format, Format::Json);
    }

    #[test]
    fn opaque_and_empty_checkpoints_are_not_json() {
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"hello"), Err(DecodeError::NotJson { .. })));
        assert!(matches!(decode(b"{} {}"), Err(DecodeError::NotJson { .. })));
        assert!(decode(b"\x00\x01").unwrap_err().is_opaque());
        for scalar in [&b"42\n"[..], b"\"text\"", b"null", b"true", b"  \n "] {
            let e = decode(scalar).unwrap_err();
            assert!(matches!(e, DecodeError::NotJson { .. }), "{e}");
        }
        assert!(matches!(
            decode(&gzip(b"3.5")),
            Err(DecodeError::GzipNotJson { .. })
        ));
        let e = decode(&gzip(b"not json")).unwrap_err();
        assert!(matches!(e, DecodeError::GzipNotJson { .. }), "{e}");
        assert!(!e.is_opaque());
    }

    #[test]
    fn a_truncated_or_damaged_gzip_stream_is_an_error() {
        let whole = gzip(br#"{"a":"b"}"#);
        for cut in [3, 10, whole.len() - 8, whole.len() - 1] {
            let e = decode(&whole[..cut]).unwrap_err();
            assert!(
                matches!(e, DecodeError::CorruptGzip { .. }),
                "cut {cut}: {e}"
            );
        }
        let mut bad_crc = whole.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 0xff;
        let e = decode(&bad_crc).unwrap_err();
        assert!(matches!(e, DecodeError::CorruptGzip { .. }), "{e}");
        let mut trailing = whole;
        trailing.extend_from_slice(b"garbage");
        assert!(decode(&trailing).is_err());
    }

    #[test]
    fn decoding_stops_at_the_limits() {
        let limits = Limits {
            max_decoded: 1000,
            max_output: 1 << 20,
        };
        let big = format!("[\"{}\"]", "a".repeat(5000));
        let e = decode_limited(&gzip(big.as_bytes()), limits).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { limit: 1000 }), "{e}");
        assert_eq!(e.to_string(), "decoded checkpoint exceeds 1000 bytes");
        let e = decode_limited(big.as_bytes(), limits).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { .. }), "{e}");
        // Exactly at the limit is fine.
        let exact = format!("[\"{}\"]", "a".repeat(996));
        assert!(decode_limited(exact.as_bytes(), limits).is_ok());

        let nested = "[".repeat(100) + &"]".repeat(100);
        let small_out = Limits {
            max_decoded: 1 << 20,
            max_output: 1000,
        };
        let e = decode_limited(nested.as_bytes(), small_out).unwrap_err();
        assert!(matches!(e, DecodeError::OutputTooLarge { .. }), "{e}");
        assert_eq!(Limits::default().max_decoded, 64 << 20);
        assert_eq!(
            DecodeError::TooLarge { limit: 64 << 20 }.to_string(),
            "decoded checkpoint exceeds 64 MiB"
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        let e = decode(deep.as_bytes()).unwrap_err();
        assert!(matches!(e, DecodeError::NotJson { .. }), "{e}");
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let mut data = gzip(b"[1,");
        data.extend(gzip(b"2]"));
        assert_eq!(decode(&data).unwrap(), "[\n  1,\n  2\n]\n");
    }
}
