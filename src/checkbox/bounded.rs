//! Bounded input: the bytes of a gzip-compressed (or plain) document, never
//! more than a limit, with what went wrong underneath remembered so that a
//! parse failure can be told apart from a truncated stream, a corrupt one,
//! or one past the limit.
//!
//! Invariants:
//! - at most `limit` bytes come out of a [`Bounded`] reader (plus one byte
//!   read ahead to tell a stream that ends at the limit from one that goes
//!   on); past it, every read fails and [`Bounded::exceeded`] is true, so a
//!   gzip bomb costs at most `limit` bytes of inflating;
//! - the first failure of the underlying reader (a corrupt or truncated
//!   gzip stream, an I/O error) is kept in [`Bounded::failure`], because the
//!   parser above only passes on a copy of its message.

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::MultiGzDecoder;

pub(crate) use crate::decode::bounded::Bounded;

/// The two magic bytes that open a gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How the input was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Envelope {
    Gzip,
    Plain,
}

/// The decoded bytes of a document: inflated when it starts with the gzip
/// magic (all members of a multi-member stream), as they are otherwise.
pub(crate) enum Source<R> {
    Gzip(MultiGzDecoder<BufReader<R>>),
    Plain(BufReader<R>),
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Gzip(r) => r.read(buf),
            Source::Plain(r) => r.read(buf),
        }
    }
}

/// Looks at the first bytes of `reader` and returns a bounded reader of its
/// decoded content (at most `limit` bytes of it), and how it is stored;
/// `None` when there are no bytes at all.
pub(crate) fn open<R: Read>(
    reader: R,
    limit: u64,
) -> io::Result<Option<(Envelope, Bounded<Source<R>>)>> {
    let mut input = BufReader::with_capacity(64 * 1024, reader);
    let head = loop {
        match input.fill_buf() {
            Ok(head) => break head,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if head.is_empty() {
        return Ok(None);
    }
    let (envelope, source) = if head.starts_with(&GZIP_MAGIC) {
        (Envelope::Gzip, Source::Gzip(MultiGzDecoder::new(input)))
    } else {
        (Envelope::Plain, Source::Plain(input))
    };
    Ok(Some((envelope, Bounded::new(source, limit))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_fails_past_it() {
        let mut exact = Bounded::new(&b"abcd"[..], 4);
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");
        assert!(!exact.exceeded());

        let mut over = Bounded::new(&b"abcde"[..], 4);
        let mut out = Vec::new();
        assert!(over.read_to_end(&mut out).is_err());
        assert!(over.exceeded());
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn remembers_the_first_failure_underneath() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut short"))
            }
        }
        let mut b = Bounded::new(Broken, 10);
        let e = b.read(&mut [0; 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(b.failure().unwrap().to_string(), "cut short");
        assert!(!b.exceeded());
    }

    #[test]
    fn tells_gzip_from_plain_and_empty() {
        assert!(open(&b""[..], 10).unwrap().is_none());
        assert!(matches!(
            open(&b"{}"[..], 10).unwrap(),
            Some((Envelope::Plain, _))
        ));
        assert!(matches!(
            open(&[0x1f, 0x8b, 0][..], 10).unwrap(),
            Some((Envelope::Gzip, _))
        ));
    }
}
