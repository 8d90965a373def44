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
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::CommandError;
use super::names;
use super::tar::TarWriter;
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

/// A regular file opened without following a symlink, with its stat;
/// `Ok(None)` when it is not one (said on stderr).
fn open_regular(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
) -> Result<Option<(File, libc::stat)>, CommandError> {
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
    Ok(Some((File::from(fd), st)))
}

/// A failure packing `path`: it could not be read, it changed while it was
/// read, or the archive could not be written.
fn pack_err(path: &Path, e: io::Error) -> CommandError {
    CommandError::Other(format!("cannot pack {}: {e}", path.display()))
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
    tar.add_dir(&top, 0o755, mtime_of(&dir_st))
        .map_err(out_err)?;
    // The committed checkpoint, through one descriptor.
    if let Some(mut checkpoint) = storage.open_checkpoint_in(dir)? {
        let shown = location.join(core::SESSION_FILE);
        let read_err = |e: io::Error| CommandError::Input {
            path: shown.clone(),
            source: e,
        };
        let st = sys::fstat(checkpoint.as_fd()).map_err(read_err)?;
        // A commit renames a new file into place: this one never changes.
        tar.add_file_from(
            &member(&[core::SESSION_FILE.as_bytes()]),
            0o644,
            mtime_of(&st),
            st.st_size as u64,
            &mut checkpoint,
        )
        .map_err(|e| pack_err(&shown, e))?;
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
            tar.add_dir(&member(&[IO_LOGS_DIR.as_bytes()]), 0o755, mtime_of(&st))
                .map_err(out_err)?;
            let mut entries =
                sys::read_dir_names(logs.as_fd()).map_err(|e| CommandError::Input {
                    path: logs_shown.clone(),
                    source: e,
                })?;
            entries.sort();
            for name in entries {
                let shown = logs_shown.join(&name);
                if let Some((mut file, st)) = open_regular(logs.as_fd(), &name, &shown)? {
                    tar.add_file_from(
                        &member(&[IO_LOGS_DIR.as_bytes(), name.as_bytes()]),
                        0o644,
                        mtime_of(&st),
                        st.st_size as u64,
                        &mut file,
                    )
                    .map_err(|e| pack_err(&shown, e))?;
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
