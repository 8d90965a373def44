//! `sessionfs archive ID|--last -o FILE.tar.gz`: one session packed for a
//! bug report (Checkbox's bug template asks for the newest session), as a
//! gzip-compressed tar of `ID.session/session` and `ID.session/io-logs/*`.
//!
//! Invariants:
//! - the checkpoint is the committed one, read through one open descriptor,
//!   so the archive holds one whole version even while Checkbox saves;
//! - nothing is followed out of the session: the session directory,
//!   `io-logs` and every file are opened without following symlinks, and a
//!   symlink or anything else that is not a regular file is left out (said
//!   on standard error);
//! - the output appears whole or not at all: it is written to a temporary
//!   file next to it, fsynced and renamed over `FILE`; on any failure the
//!   temporary file is removed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::CommandError;
use super::names;
use super::tar::{Kind, TarWriter};
use crate::checkbox::IO_LOGS_DIR;
use crate::core::{self, Repository, Storage, sys};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `sessionfs archive`: `id` or, for `None`, the session modified last.
pub fn archive(repo: &Repository, id: Option<&OsStr>, output: &Path) -> Result<(), CommandError> {
    let storage = match id {
        Some(id) => repo.open(id)?,
        None => match repo.list()?.into_iter().next() {
            Some(entry) => entry.storage,
            None => {
                return Err(CommandError::Core(core::Error::NoSuchSession {
                    path: repo.location().join("*.session"),
                }));
            }
        },
    };
    let dir = storage.open_dir()?;
    let out_err = |what: &str, e: io::Error| {
        CommandError::Other(format!("cannot {what} {}: {e}", output.display()))
    };
    let file_name = output
        .file_name()
        .ok_or_else(|| CommandError::Usage(format!("{} is not a file name", output.display())))?;
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent_fd = sys::open_dir_path(&parent).map_err(|e| {
        CommandError::Other(format!("cannot open directory {}: {e}", parent.display()))
    })?;
    let mut tmp = OsString::from(".");
    tmp.push(file_name);
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let fd = sys::openat(
        parent_fd.as_fd(),
        &tmp,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0o644,
    )
    .map_err(|e| out_err("create a temporary file next to", e))?;
    let file = File::from(fd);
    let written = write_archive(&storage, dir.as_fd(), file)
        .and_then(|()| {
            sys::renameat(parent_fd.as_fd(), &tmp, parent_fd.as_fd(), file_name)
                .map_err(|e| out_err("rename the temporary file to", e))
        })
        .and_then(|()| {
            sys::fsync(parent_fd.as_fd()).map_err(|e| out_err("fsync the directory of", e))
        });
    if let Err(e) = written {
        let _ = sys::unlinkat(parent_fd.as_fd(), &tmp, false);
        return Err(e);
    }
    eprintln!(
        "sessionfs: packed {} into {}",
        names::escape(storage.id()),
        output.display()
    );
    Ok(())
}

/// Seconds of `st`'s modification time (0 before the epoch).
fn mtime_of(st: &libc::stat) -> u64 {
    u64::try_from(st.st_mtime).unwrap_or(0)
}

/// A regular file opened without following a symlink: its bytes and
/// modification time; `Ok(None)` when it is not one (said on stderr).
fn read_regular(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
) -> Result<Option<(Vec<u8>, u64)>, CommandError> {
    let read_err = |e: io::Error| CommandError::Input {
        path: shown.to_path_buf(),
        source: e,
    };
    let fd = match sys::openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            eprintln!(
                "sessionfs: leaving out {}: it is a symlink (never followed)",
                shown.display()
            );
            return Ok(None);
        }
        Err(e) => return Err(read_err(e)),
    };
    let st = sys::fstat(fd.as_fd()).map_err(read_err)?;
    if !sys::is_reg(&st) {
        eprintln!(
            "sessionfs: leaving out {}: it is not a regular file",
            shown.display()
        );
        return Ok(None);
    }
    let mut data = Vec::new();
    File::from(fd).read_to_end(&mut data).map_err(read_err)?;
    Ok(Some((data, mtime_of(&st))))
}

fn write_archive(storage: &Storage, dir: BorrowedFd<'_>, file: File) -> Result<(), CommandError> {
    let location = storage.location();
    let out_err = |e: io::Error| CommandError::Other(format!("cannot write the archive: {e}"));
    let gz =
        flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::default());
    let mut tar = TarWriter::new(gz);
    let top = storage.name().as_os_str().as_bytes().to_vec();
    let member = |rest: &[&[u8]]| {
        let mut p = top.clone();
        for r in rest {
            p.push(b'/');
            p.extend_from_slice(r);
        }
        p
    };
    let dir_st = sys::fstat(dir).map_err(|e| CommandError::Input {
        path: location.clone(),
        source: e,
    })?;
    tar.add(&top, Kind::Dir, 0o755, mtime_of(&dir_st), b"")
        .map_err(out_err)?;
    // The committed checkpoint, through one descriptor.
    if let Some(mut checkpoint) = storage.open_checkpoint_in(dir)? {
        let shown = location.join(core::SESSION_FILE);
        let read_err = |e: io::Error| CommandError::Input {
            path: shown.clone(),
            source: e,
        };
        let st = sys::fstat(checkpoint.as_fd()).map_err(read_err)?;
        let mut data = Vec::new();
        checkpoint.read_to_end(&mut data).map_err(read_err)?;
        tar.add(
            &member(&[core::SESSION_FILE.as_bytes()]),
            Kind::File,
            0o644,
            mtime_of(&st),
            &data,
        )
        .map_err(out_err)?;
    } else {
        eprintln!(
            "sessionfs: {} has no checkpoint yet",
            names::escape(storage.id())
        );
    }
    let logs_shown = location.join(IO_LOGS_DIR);
    match sys::open_subdir(dir, OsStr::new(IO_LOGS_DIR)) {
        Ok(logs) => {
            let st = sys::fstat(logs.as_fd()).map_err(|e| CommandError::Input {
                path: logs_shown.clone(),
                source: e,
            })?;
            tar.add(
                &member(&[IO_LOGS_DIR.as_bytes()]),
                Kind::Dir,
                0o755,
                mtime_of(&st),
                b"",
            )
            .map_err(out_err)?;
            let mut entries =
                sys::read_dir_names(logs.as_fd()).map_err(|e| CommandError::Input {
                    path: logs_shown.clone(),
                    source: e,
                })?;
            entries.sort();
            for name in entries {
                let shown = logs_shown.join(&name);
                if let Some((data, mtime)) = read_regular(logs.as_fd(), &name, &shown)? {
                    tar.add(
                        &member(&[IO_LOGS_DIR.as_bytes(), name.as_bytes()]),
                        Kind::File,
                        0o644,
                        mtime,
                        &data,
                    )
                    .map_err(out_err)?;
                }
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            eprintln!(
                "sessionfs: leaving out {}: it is not a directory (a symlink is never followed)",
                logs_shown.display()
            );
        }
        Err(e) => {
            return Err(CommandError::Input {
                path: logs_shown,
                source: e,
            });
        }
    }
    let gz = tar.finish().map_err(out_err)?;
    let buffered = gz.finish().map_err(out_err)?;
    let file = buffered.into_inner().map_err(|e| out_err(e.into_error()))?;
    file.sync_all().map_err(out_err)?;
    Ok(())
}
