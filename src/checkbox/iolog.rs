//! A job's output from its `io-logs/<job>.record.gz`: gzip-compressed JSON
//! lines `[delay, stream, data]`, one per chunk of output as the job wrote
//! it, `delay` in seconds since the previous chunk, `stream` `"stdout"` or
//! `"stderr"`, `data` the bytes in standard base64 (plainbox
//! `IOLogRecordWriter`, `checkbox-ng/plainbox/impl/result.py`).
//!
//! [`decode_record`] writes the data of every record, both streams, in the
//! order the job wrote them: the job's output as it appeared on a terminal.
//!
//! Invariants:
//! - at most [`Limits::max_decoded`] bytes are inflated (a gzip bomb costs
//!   no more), at most that much is held for one line, and at most
//!   [`Limits::max_output`] bytes are written;
//! - the bytes written are the job's bytes, unchanged (not necessarily
//!   UTF-8);
//! - on an error, what was written before it is the output of the records
//!   before it, whole: a live job's log (its gzip stream not yet finished)
//!   shows what is readable, then [`RecordError::CorruptGzip`]. Callers
//!   that must not show a partial result measure first ([`measure_record`]).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use crate::decode::Limits;

use super::bounded::{self, Envelope};

/// One of the two streams a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a decode wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordStats {
    pub records: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

impl RecordStats {
    /// Bytes written in all.
    pub fn bytes(&self) -> u64 {
        self.stdout_bytes + self.stderr_bytes
    }
}

/// Why a record file could not be decoded (in full).
#[derive(Debug)]
pub enum RecordError {
    /// The gzip stream is truncated or corrupt.
    CorruptGzip {
        detail: String,
    },
    /// Line `line` (from 1) is not a record `[delay, stream, base64]`.
    BadRecord {
        line: u64,
        detail: String,
    },
    /// It decompresses to more than [`Limits::max_decoded`] bytes.
    TooLarge {
        limit: u64,
    },
    /// The output would pass [`Limits::max_output`] bytes.
    OutputTooLarge {
        limit: u64,
    },
    Read(io::Error),
    Write(io::Error),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::CorruptGzip { detail } => {
                write!(f, "the io-log's gzip stream is corrupt: {detail}")
            }
            RecordError::BadRecord { line, detail } => {
                write!(f, "line {line} of the io-log is not a record: {detail}")
            }
            RecordError::TooLarge { limit } => {
                write!(f, "the decompressed io-log exceeds {limit} bytes")
            }
            RecordError::OutputTooLarge { limit } => {
                write!(f, "the io-log's output exceeds {limit} bytes")
            }
            RecordError::Read(e) => write!(f, "cannot read the io-log: {e}"),
            RecordError::Write(e) => write!(f, "cannot write the io-log's output: {e}"),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::Read(e) | RecordError::Write(e) => Some(e),
            _ => None,
        }
    }
}

/// Decodes the record file read from `reader` and writes the job's output,
/// both streams in order, to `out`. An empty file (a job that has not
/// written yet) is no records. Plain (not gzip) JSON lines are accepted too.
///
/// `out` gets one `write_all` per record (a record is often one line of
/// output): give it a buffered writer for a pipe or a terminal.
pub fn decode_record(
    reader: impl Read,
    out: impl Write,
    limits: Limits,
) -> Result<RecordStats, RecordError> {
    decode_selected(reader, None, out, limits)
}

/// Checks the record file and tells what [`decode_record`] would write,
/// without keeping any of it.
pub fn measure_record(reader: impl Read, limits: Limits) -> Result<RecordStats, RecordError> {
    decode_record(reader, io::sink(), limits)
}

/// Like [`decode_record`], writing only the records of `only` (the
/// others are still read and checked, and counted in `records`).
pub fn decode_stream(
    reader: impl Read,
    only: Stream,
    out: impl Write,
    limits: Limits,
) -> Result<RecordStats, RecordError> {
    decode_selected(reader, Some(only), out, limits)
}

fn decode_selected(
    reader: impl Read,
    only: Option<Stream>,
    mut out: impl Write,
    limits: Limits,
) -> Result<RecordStats, RecordError> {
    let (envelope, mut input) = match bounded::open(reader, limits.max_decoded) {
        Ok(None) => return Ok(RecordStats::default()),
        Ok(Some((envelope, input))) => (envelope, input),
        Err(e) => return Err(RecordError::Read(e)),
    };
    let mut stats = RecordStats::default();
    let mut line = Vec::new();
    let mut data = Vec::new();
    let mut number = 0u64;
    // serde_json and read_until want a buffer above the bound.
    let mut lines = BufReader::new(&mut input);
    loop {
        line.clear();
        let n = match lines.read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                drop(lines);
                return Err(read_failure(e, envelope, &input, limits));
            }
        };
        if n == 0 {
            break;
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |detail: String| RecordError::BadRecord {
            line: number,
            detail,
        };
        let record: Record = serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
        data.clear();
        super::base64::decode_into(record.data.as_bytes(), &mut data)
            .map_err(|e| bad(e.to_string()))?;
        stats.records += 1;
        if only.is_some_and(|s| s != record.stream) {
            continue;
        }
        if stats.bytes() + data.len() as u64 > limits.max_output {
            return Err(RecordError::OutputTooLarge {
                limit: limits.max_output,
            });
        }
        out.write_all(&data).map_err(RecordError::Write)?;
        match record.stream {
            Stream::Stdout => stats.stdout_bytes += data.len() as u64,
            Stream::Stderr => stats.stderr_bytes += data.len() as u64,
        }
    }
    out.flush().map_err(RecordError::Write)?;
    Ok(stats)
}

fn read_failure<R>(
    e: io::Error,
    envelope: Envelope,
    input: &bounded::Bounded<R>,
    limits: Limits,
) -> RecordError {
    if input.exceeded() {
        return RecordError::TooLarge {
            limit: limits.max_decoded,
        };
    }
    let failure = input.failure().unwrap_or(&e);
    let detail = match failure.kind() {
        io::ErrorKind::UnexpectedEof => "the stream is truncated".to_string(),
        _ => failure.to_string(),
    };
    match envelope {
        Envelope::Gzip => RecordError::CorruptGzip { detail },
        Envelope::Plain => RecordError::Read(io::Error::new(failure.kind(), detail)),
    }
}

/// One record: `[delay, "stdout"|"stderr", "base64"]`, read without
/// building a JSON tree (a hostile line may be long).
struct Record {
    stream: Stream,
    data: String,
}

impl<'de> serde::Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Record, D::Error> {
        use serde::de::{Error, IgnoredAny, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Record;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list [delay, stream, base64 data]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Record, A::Error> {
                let missing = || A::Error::custom("fewer than 3 items");
                let delay: f64 = seq.next_element()?.ok_or_else(missing)?;
                if delay.is_nan() || delay < 0.0 {
                    return Err(A::Error::custom(format!("negative delay {delay}")));
                }
                let stream: String = seq.next_element()?.ok_or_else(missing)?;
                let stream = match stream.as_str() {
                    "stdout" => Stream::Stdout,
                    "stderr" => Stream::Stderr,
                    other => {
                        return Err(A::Error::custom(format!(
                            "stream {other:?} is neither \"stdout\" nor \"stderr\""
                        )));
                    }
                };
                let data: String = seq.next_element()?.ok_or_else(missing)?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom("more than 3 items"));
                }
                Ok(Record { stream, data })
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkbox::fixtures::{b64, gzip, record};

    fn decode(bytes: &[u8]) -> Result<(RecordStats, Vec<u8>), RecordError> {
        let mut out = Vec::new();
        let stats = decode_record(bytes, &mut out, Limits::default())?;
        Ok((stats, out))
    }

    #[test]
    fn both_streams_interleaved_in_order() {
        let file = record(&[
            (0.0, "stdout", b"one\n"),
            (0.01, "stderr", b"warning: two\n"),
            (0.5, "stdout", b"three"),
            (1.0, "stdout", b"\n"),
            (0.0, "stderr", b"\xff binary \x00\n"),
        ]);
        let (stats, out) = decode(&file).unwrap();
        assert_eq!(out, b"one\nwarning: two\nthree\n\xff binary \x00\n");
        assert_eq!(
            stats,
            RecordStats {
                records: 5,
                stdout_bytes: 10,
                stderr_bytes: 24,
            }
        );
        assert_eq!(measure_record(&file[..], Limits::default()).unwrap(), stats);

        let mut err = Vec::new();
        let s = decode_stream(&file[..], Stream::Stderr, &mut err, Limits::default()).unwrap();
        assert_eq!(err, b"warning: two\n\xff binary \x00\n");
        assert_eq!((s.records, s.stdout_bytes, s.stderr_bytes), (5, 0, 24));
    }

    #[test]
    fn a_record_written_by_checkbox() {
        // tests/data/make_checkbox_checkpoint.py, checkbox-ng 1.18.1's
        // IOLogRecordWriter: `echo one; echo two >&2; echo three`.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/checkbox-ns__pass.record.gz"
        );
        let file = std::fs::read(path).unwrap();
        let (stats, out) = decode(&file).unwrap();
        assert_eq!(out, b"one\ntwo\nthree\n");
        assert_eq!(
            (stats.records, stats.stdout_bytes, stats.stderr_bytes),
            (3, 10, 4)
        );
    }

    #[test]
    fn an_empty_log_and_plain_lines() {
        assert_eq!(decode(b"").unwrap(), (RecordStats::default(), Vec::new()));
        assert_eq!(decode(&gzip(b"")).unwrap().0.records, 0);
        let plain = format!(
            "[0,\"stdout\",\"{}\"]\n\n[0.5,\"stdout\",\"{}\"]",
            b64(b"a"),
            b64(b"b")
        );
        assert_eq!(decode(plain.as_bytes()).unwrap().1, b"ab");
    }

    #[test]
    fn bad_records_name_their_line() {
        let cases: [(&str, &str); 8] = [
            (
                "{}",
                "invalid type: map, expected a list [delay, stream, base64 data]",
            ),
            ("[0, \"stdout\"]", "fewer than 3 items"),
            ("[0, \"stdout\", \"\", 1]", "more than 3 items"),
            (
                "[0, \"stdin\", \"\"]",
                "stream \"stdin\" is neither \"stdout\" nor \"stderr\"",
            ),
            ("[-1, \"stdout\", \"\"]", "negative delay -1"),
            (
                "[\"0\", \"stdout\", \"\"]",
                "invalid type: string \"0\", expected f64",
            ),
            (
                "[0, \"stdout\", \"Zm9\"]",
                "base64 text of 3 characters (not a multiple of 4)",
            ),
            (
                "[0, \"stdout\", 5]",
                "invalid type: integer `5`, expected a string",
            ),
        ];
        for (bad, detail) in cases {
            let text = format!("[0,\"stdout\",\"{}\"]\n{bad}\n", b64(b"ok"));
            let mut out = Vec::new();
            let e =
                decode_record(&gzip(text.as_bytes())[..], &mut out, Limits::default()).unwrap_err();
            match &e {
                RecordError::BadRecord { line: 2, detail: d } => {
                    assert!(d.starts_with(detail), "{bad}: {d}");
                }
                other => panic!("{bad}: {other}"),
            }
            // What came before the bad line was written, whole.
            assert_eq!(out, b"ok");
        }
    }

    #[test]
    fn a_truncated_log_shows_what_is_readable_then_fails() {
        let records: Vec<(f64, &str, &[u8])> = (0..2000)
            .map(|_| (0.0, "stdout", &b"0123456789abcdef\n"[..]))
            .collect();
        let file = record(&records);
        let mut out = Vec::new();
        let e = decode_record(&file[..file.len() - 12], &mut out, Limits::default()).unwrap_err();
        assert!(matches!(e, RecordError::CorruptGzip { .. }), "{e}");
        // Whole records only, none made up.
        assert_eq!(out.len() % 17, 0);
        assert!(out.chunks(17).all(|c| c == b"0123456789abcdef\n"));
        let mut bad_crc = file.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 1;
        assert!(matches!(
            decode(&bad_crc),
            Err(RecordError::CorruptGzip { .. })
        ));
    }

    #[test]
    fn the_limits_hold() {
        let limits = Limits {
            max_decoded: 1 << 16,
            max_output: 100,
        };
        let big = vec![b'x'; 60];
        let file = record(&[(0.0, "stdout", &big), (0.0, "stderr", &big)]);
        let mut out = Vec::new();
        let e = decode_record(&file[..], &mut out, limits).unwrap_err();
        assert!(
            matches!(e, RecordError::OutputTooLarge { limit: 100 }),
            "{e}"
        );
        assert_eq!(out.len(), 60, "the record past the limit is not written");

        // A bomb: one line of 16 MiB of spaces, far past the limit.
        let mut bomb = gzip(b"[0, \"stdout\", \"");
        let mib = gzip(&vec![b' '; 1 << 20]);
        for _ in 0..16 {
            bomb.extend_from_slice(&mib);
        }
        let e = decode_record(&bomb[..], io::sink(), limits).unwrap_err();
        assert!(
            matches!(e, RecordError::TooLarge { limit } if limit == 1 << 16),
            "{e}"
        );
    }

    #[test]
    fn a_closed_pipe_is_a_write_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let file = record(&[(0.0, "stdout", b"x")]);
        let e = decode_record(&file[..], Closed, Limits::default()).unwrap_err();
        assert!(
            matches!(e, RecordError::Write(ref io) if io.kind() == io::ErrorKind::BrokenPipe),
            "{e}"
        );
    }
}
