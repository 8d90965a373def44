//! A session's checkpoint on standard output (`sessionfs cat`, raw or
//! decoded) and a new checkpoint from a file or standard input
//! (`sessionfs checkpoint`).
//!
//! Invariants: a checkpoint is either committed whole or not at all (the
//! core's writer aborts on any error, keeping the previous one); a
//! decoded `cat` prints nothing but the error for a damaged checkpoint;
//! a reader closing the pipe early (`| head`) is not a failure.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::CommandError;
use super::names;
use crate::core::{self, BeginOptions, Repository, Start, Storage};
use crate::decode::{self, DecodeError, Limits};

/// `sessionfs cat ID`: the checkpoint's bytes as they are.
pub fn cat(repo: &Repository, id: &OsStr) -> Result<(), CommandError> {
    let storage = repo.open(id)?;
    let Some(mut file) = storage.open_checkpoint()? else {
        return Ok(());
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; 1 << 20];
    let mut written = false;
    let mut reopened = false;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // On NFSv3, a checkpoint replaced and removed on the server
            // between the open and the first read is a stale handle: open
            // the newer one, once, while nothing of the old was printed.
            Err(e) if e.raw_os_error() == Some(libc::ESTALE) && !written && !reopened => {
                reopened = true;
                match storage.open_checkpoint()? {
                    Some(newer) => file = newer,
                    None => return Ok(()),
                }
                continue;
            }
            Err(e) => {
                return Err(core::Error::io(
                    core::Op::ReadCheckpoint,
                    storage.location().join(core::SESSION_FILE),
                    e,
                )
                .into());
            }
        };
        written = true;
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            // `sessionfs cat ID | head` is not a failure.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(CommandError::Output(e)),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CommandError::Output(e)),
        _ => Ok(()),
    }
}

/// `sessionfs cat --decode ID`: the checkpoint decoded and pretty-printed
/// to standard output. The checkpoint is decoded twice (it is one open
/// version): once to check it, so that a damaged one prints nothing but the
/// error, then to print it.
pub fn cat_decoded(repo: &Repository, id: &OsStr) -> Result<(), CommandError> {
    let storage = repo.open(id)?;
    let fail = |e: &dyn fmt::Display| {
        CommandError::Other(format!(
            "cannot decode the checkpoint of {}: {e}",
            names::escape(id)
        ))
    };
    let Some(mut file) = storage.open_checkpoint()? else {
        return Err(fail(&DecodeError::Empty));
    };
    let limits = Limits::default();
    decode::measure(&file, limits).map_err(|e| fail(&e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| fail(&e))?;
    let stdout = io::stdout();
    let out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match decode::decode_to(&file, limits, out) {
        Ok(_) => Ok(()),
        // `sessionfs cat --decode ID | head` is not a failure.
        Err(DecodeError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(DecodeError::Write(e)) => Err(CommandError::Output(e)),
        Err(e) => Err(fail(&e)),
    }
}

/// `sessionfs checkpoint ID [FILE]`: `FILE` (or standard input, for none
/// or `-`) becomes the session's checkpoint.
pub fn checkpoint(repo: &Repository, id: &OsStr, file: Option<&Path>) -> Result<(), CommandError> {
    let storage = repo.open(id)?;
    let (mut input, input_path): (Box<dyn Read>, PathBuf) = match file {
        None => (Box::new(io::stdin().lock()), PathBuf::from("-")),
        Some(p) if p.as_os_str() == "-" => (Box::new(io::stdin().lock()), p.to_path_buf()),
        Some(p) => {
            let f = File::open(p).map_err(|source| CommandError::Input {
                path: p.to_path_buf(),
                source,
            })?;
            (Box::new(f), p.to_path_buf())
        }
    };
    save_stream(&storage, &mut input, &input_path)
}

/// Streams `input` into a new checkpoint and commits it; on any error the
/// checkpoint is aborted and the previous one stays.
fn save_stream(
    storage: &Storage,
    input: &mut dyn Read,
    input_path: &Path,
) -> Result<(), CommandError> {
    let mut writer = storage.begin(BeginOptions::new(Start::Empty))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(CommandError::Input {
                    path: input_path.to_path_buf(),
                    source,
                });
            }
        };
        writer.write_at(&buf[..n], offset)?;
        offset += n as u64;
    }
    writer.commit()?;
    log::info!(
        "committed {} bytes to {}",
        offset,
        storage.location().display()
    );
    Ok(())
}
