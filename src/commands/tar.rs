//! A minimal tar writer (POSIX ustar, with a pax `path` record for names
//! longer than ustar holds) for `sessionfs archive`: directories and
//! regular files only, each file streamed from an open descriptor.
//!
//! Invariants: every header's checksum is right and every member is padded
//! to 512 bytes; [`TarWriter::finish`] writes the two zero blocks that end
//! an archive, so GNU tar and Python's tarfile read it without a warning.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// Writes tar members to `out`.
pub(crate) struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> TarWriter<W> {
        TarWriter { out }
    }

    /// Adds a directory: `path` relative, `/`-separated, without the
    /// trailing `/`.
    pub(crate) fn add_dir(&mut self, path: &[u8], mode: u32, mtime: u64) -> io::Result<()> {
        let mut name = path.to_vec();
        name.push(b'/');
        let name = self.long_name(&name, mtime)?;
        self.header(&name, b'5', mode, mtime, 0)
    }

    /// Adds a regular file of `size` bytes read from `data`, streamed;
    /// fails when `data` holds fewer or more bytes than `size` (a file
    /// that changed while it was packed).
    pub(crate) fn add_file_from(
        &mut self,
        path: &[u8],
        mode: u32,
        mtime: u64,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let name = self.long_name(path, mtime)?;
        self.header(&name, b'0', mode, mtime, size)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        let mut extra = [0u8; 1];
        if copied != size || data.read(&mut extra)? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the file changed size while it was packed",
            ));
        }
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.out.write_all(&[0u8; BLOCK][..pad as usize])
    }

    /// The name for a member's own header: `name` itself when it fits;
    /// else a pax header carrying it is written first and a truncated one
    /// returned.
    fn long_name(&mut self, name: &[u8], mtime: u64) -> io::Result<Vec<u8>> {
        if name.len() <= 100 {
            return Ok(name.to_vec());
        }
        let record = pax_record(b"path", name);
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend_from_slice(&name[name.len().saturating_sub(80)..]);
        pax_name.truncate(100);
        self.header(&pax_name, b'x', 0o644, mtime, record.len() as u64)?;
        self.out.write_all(&record)?;
        let pad = (BLOCK - record.len() % BLOCK) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])?;
        Ok(name[..100].to_vec())
    }

    fn header(
        &mut self,
        name: &[u8],
        flag: u8,
        mode: u32,
        mtime: u64,
        size: u64,
    ) -> io::Result<()> {
        if size >= 1 << 33 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a file of 8 GiB or more does not fit a ustar header",
            ));
        }
        let mut h = [0u8; BLOCK];
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        octal(&mut h[100..108], u64::from(mode & 0o7777));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], mtime.min(0o77_777_777_777));
        h[148..156].fill(b' ');
        h[156] = flag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let sum = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(sum.as_bytes());
        self.out.write_all(&h)
    }

    /// Ends the archive and returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

/// `"%d key=value\n"`, the length counting itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// `value` in octal, zero-padded, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let n = field.len() - 1;
    let digits = format!("{value:0n$o}");
    field[..n].copy_from_slice(digits.as_bytes());
    field[n] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let r = pax_record(b"path", b"x");
        assert_eq!(r, b"9 path=x\n");
        let long = vec![b'a'; 95];
        let r = pax_record(b"path", &long);
        assert_eq!(r.len().to_string(), String::from_utf8_lossy(&r[..3]));
    }

    #[test]
    fn headers_are_blocks_with_a_valid_checksum() {
        let mut w = TarWriter::new(Vec::new());
        w.add_dir(b"s.session", 0o755, 1).unwrap();
        w.add_file_from(b"s.session/session", 0o644, 1, 5, &mut &b"hello"[..])
            .unwrap();
        let long = format!("s.session/io-logs/{}.record.gz", "j".repeat(120));
        w.add_file_from(long.as_bytes(), 0o644, 1, 1, &mut &b"x"[..])
            .unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % BLOCK, 0);
        let mut short = TarWriter::new(Vec::new());
        let err = short
            .add_file_from(b"s.session/y", 0o644, 1, 5, &mut &b"abc"[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = short
            .add_file_from(b"s.session/y", 0o644, 1, 2, &mut &b"abc"[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let h = &out[BLOCK..2 * BLOCK];
        let mut copy = h.to_vec();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        let stored = std::str::from_utf8(&h[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&h[124..135], b"00000000005");
        assert_eq!(&out[2 * BLOCK..2 * BLOCK + 5], b"hello");
        // The long name went into a pax record.
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(&format!("path={long}\n")));
    }
}
