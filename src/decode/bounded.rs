//! A reader that gives at most a limit of bytes, shared by every decoder
//! of the decoding layer.
//!
//! Invariants:
//! - at most `limit` bytes come out of a [`Bounded`] reader (plus one byte
//!   read ahead to tell a stream that ends at the limit from one that goes
//!   on); past it, every read fails and [`Bounded::exceeded`] is true, so a
//!   gzip bomb costs at most `limit` bytes of inflating;
//! - the first failure of the underlying reader (a corrupt or truncated
//!   gzip stream, an I/O error) is kept in [`Bounded::failure`], because a
//!   parser above passes on only a copy of its message.

use std::fmt;
use std::io::{self, Read};

/// Marks the error a [`Bounded`] reader returns at its limit.
#[derive(Debug)]
pub(crate) struct LimitReached;

impl fmt::Display for LimitReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("size limit reached")
    }
}

impl std::error::Error for LimitReached {}

/// A reader that fails once more than `limit` bytes come out of `inner`.
pub(crate) struct Bounded<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
    failure: Option<io::Error>,
}

impl<R> Bounded<R> {
    pub(crate) fn new(inner: R, limit: u64) -> Bounded<R> {
        Bounded {
            inner,
            remaining: limit,
            exceeded: false,
            failure: None,
        }
    }

    /// True once the input went past the limit.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// The first error of the underlying reader, if any.
    pub(crate) fn failure(&self) -> Option<&io::Error> {
        self.failure.as_ref()
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.exceeded {
            return Err(io::Error::other(LimitReached));
        }
        // At the limit, one more byte tells a stream that ends exactly there
        // from one that goes on.
        let want = if self.remaining == 0 {
            1
        } else {
            buf.len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX))
        };
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    if self.failure.is_none() {
                        self.failure = Some(e);
                    }
                    return Err(copy);
                }
            }
        };
        if self.remaining == 0 {
            if n == 0 {
                return Ok(0);
            }
            self.exceeded = true;
            return Err(io::Error::other(LimitReached));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
