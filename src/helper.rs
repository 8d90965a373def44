//! Mounting the way mount(8) and /etc/fstab do it.
//!
//! `mount -t fuse.sessionfs REPO MOUNTPOINT -o OPTS` (and an fstab line of
//! type `fuse.sessionfs`) runs one of two programs, both of which end here:
//!
//! - `/sbin/mount.fuse.sessionfs REPO MOUNTPOINT [-n] [-s] [-v] -o OPTS`
//!   when that helper exists (a link to `sessionfs`; mount(8) prefers it);
//! - otherwise fuse3's `mount.fuse`, which runs
//!   `sessionfs REPO MOUNTPOINT -o OPTS` (the program named by the type's
//!   subtype, found on mount's PATH) — the form fuse(8) documents.
//!
//! [`rewrite`] turns either into the ordinary command line,
//! `sessionfs --repo REPO mount MOUNTPOINT -o OPTS`, which `main` then
//! executes in place of the current process (so the background daemon is
//! started, and its arguments recorded, exactly as for a direct
//! `sessionfs mount`). Mount options that only mean something to the kernel
//! or to mount(8) itself (`noatime`, `defaults`, `x-systemd.*`, `comment=`…)
//! are dropped; with `-s` (sloppy) unknown options are dropped too, else
//! `sessionfs mount` rejects them with a clear message. Which options are
//! known is the table in `commands::mount_options`.
//!
//! This sits at the command-line layer: it asks [`crate::cli`] which
//! names are commands, and nothing below it knows of it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::commands::mount_options::is_known;

/// The helper's name, as mount(8) looks it up in /sbin.
const HELPER_NAME: &str = "mount.fuse.sessionfs";

/// Options for the kernel's VFS or for mount(8) and systemd, meaningless
/// to sessionfs (its mount always uses its own time handling).
const IGNORED: &[&str] = &[
    "defaults",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "sync",
    "async",
    "dirsync",
    "iversion",
    "noiversion",
    "mand",
    "nomand",
    "silent",
    "loud",
    "users",
    "owner",
    "group",
];

const IGNORED_PREFIXES: &[&str] = &["x-", "comment=", "fsname=", "subtype="];

fn is_ignored(opt: &str) -> bool {
    IGNORED.contains(&opt) || IGNORED_PREFIXES.iter().any(|p| opt.starts_with(p))
}

/// True when `argv0` names the mount helper (`mount.fuse.sessionfs`, or
/// `mount.fuseblk.sessionfs`).
fn called_as_helper(argv0: &OsStr) -> bool {
    let base = Path::new(argv0)
        .file_name()
        .map(OsStr::as_bytes)
        .unwrap_or_default();
    base == HELPER_NAME.as_bytes() || base == b"mount.fuseblk.sessionfs"
}

fn is_subcommand(arg: &OsStr) -> bool {
    let Some(arg) = arg.to_str() else {
        return false;
    };
    arg == "help"
        || Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == arg || c.get_all_aliases().any(|a| a == arg))
}

/// The ordinary command line (without the program name) for a process
/// started as a mount helper or in fuse(8)'s `sessionfs SOURCE MOUNTPOINT
/// -o OPTS` form; `None` for an ordinary command line. `Err` is a usage
/// error.
pub fn rewrite(args: &[OsString]) -> Option<Result<Vec<OsString>, String>> {
    let argv0 = args.first()?;
    let first = args.get(1)?;
    if first.as_bytes().starts_with(b"-") {
        return None;
    }
    if !called_as_helper(argv0) {
        // fuse(8)'s form: two operands, the second an existing directory,
        // and the first not a command of ours.
        let mountpoint = args.get(2)?;
        if is_subcommand(first) || !Path::new(mountpoint).is_dir() {
            return None;
        }
    }
    Some(parse_helper_args(&args[1..]))
}

fn parse_helper_args(args: &[OsString]) -> Result<Vec<OsString>, String> {
    let usage =
        || format!("usage: {HELPER_NAME} REPOSITORY MOUNTPOINT [-o OPT[,OPT]...] [-n] [-s] [-v]");
    let mut operands: Vec<&OsString> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut sloppy = false;
    let mut verbose = 0;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        if bytes == b"-o" {
            let value = it
                .next()
                .ok_or_else(|| format!("-o needs a value; {}", usage()))?;
            options.push(utf8(value)?);
        } else if let Some(value) = bytes.strip_prefix(b"-o") {
            options.push(utf8(OsStr::from_bytes(value))?);
        } else if bytes == b"-t" {
            // mount.fuse's own way to name the type; ours is known.
            it.next()
                .ok_or_else(|| format!("-t needs a value; {}", usage()))?;
        } else if bytes == b"-n" {
            // "Do not write /etc/mtab": sessionfs never does.
        } else if bytes == b"-s" {
            sloppy = true;
        } else if bytes == b"-v" {
            verbose += 1;
        } else if bytes.starts_with(b"-") && bytes.len() > 1 {
            return Err(format!(
                "unsupported option {:?}; {}",
                arg.to_string_lossy(),
                usage()
            ));
        } else {
            operands.push(arg);
        }
    }
    let [source, mountpoint] = operands[..] else {
        return Err(usage());
    };
    let mut kept = Vec::new();
    for opt in options.iter().flat_map(|o| o.split(',')) {
        let opt = opt.trim();
        if opt.is_empty() || is_ignored(opt) {
            continue;
        }
        if !sloppy || is_known(opt) {
            kept.push(opt.to_string());
        }
    }
    let mut out: Vec<OsString> = vec!["--repo".into(), source.clone()];
    out.extend((0..verbose).map(|_| OsString::from("-v")));
    out.push("mount".into());
    out.push(mountpoint.clone());
    if !kept.is_empty() {
        out.push("-o".into());
        out.push(kept.join(",").into());
    }
    Ok(out)
}

fn utf8(s: &OsStr) -> Result<String, String> {
    s.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("mount options must be UTF-8: {:?}", s.to_string_lossy()))
}

/// Runs the rewritten command line in place of this process; returns only
/// if that failed.
pub fn exec(args: Vec<OsString>) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    std::process::Command::new(exe)
        .arg0("sessionfs")
        .args(args)
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn rewritten(v: &[&str]) -> Option<Result<Vec<String>, String>> {
        rewrite(&os(v))
            .map(|r| r.map(|a| a.into_iter().map(|s| s.into_string().unwrap()).collect()))
    }

    #[test]
    fn the_helper_form_becomes_sessionfs_mount() {
        assert_eq!(
            rewritten(&[
                "/sbin/mount.fuse.sessionfs",
                "/r",
                "/m",
                "-o",
                "ro,allow_other"
            ]),
            Some(Ok(os(&[
                "--repo",
                "/r",
                "mount",
                "/m",
                "-o",
                "ro,allow_other"
            ])
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()))
        );
        let r = rewritten(&[
            "mount.fuse.sessionfs",
            "/r",
            "/m",
            "-n",
            "-v",
            "-o",
            "rw,noatime,x-systemd.automount,nofail,_netdev,defaults",
            "-ocomment=x",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            r,
            [
                "--repo",
                "/r",
                "-v",
                "mount",
                "/m",
                "-o",
                "rw,nofail,_netdev"
            ]
        );
        let r = rewritten(&["mount.fuse.sessionfs", "/r", "/m"])
            .unwrap()
            .unwrap();
        assert_eq!(r, ["--repo", "/r", "mount", "/m"]);
    }

    #[test]
    fn unknown_options_are_kept_for_sessionfs_to_reject_unless_sloppy() {
        let r = rewritten(&["mount.fuse.sessionfs", "/r", "/m", "-o", "ro,frobnicate"]);
        assert_eq!(r.unwrap().unwrap()[5], "ro,frobnicate");
        let r = rewritten(&[
            "mount.fuse.sessionfs",
            "/r",
            "/m",
            "-s",
            "-o",
            "ro,frobnicate",
        ]);
        assert_eq!(r.unwrap().unwrap()[5], "ro");
        let r = rewritten(&["mount.fuse.sessionfs", "-s", "/r", "/m", "-o", "threads=4"]);
        assert!(r.is_none(), "a leading flag is an ordinary command line");
    }

    #[test]
    fn usage_errors_are_reported() {
        assert!(matches!(
            rewritten(&["mount.fuse.sessionfs", "/r"]),
            Some(Err(_))
        ));
        assert!(matches!(
            rewritten(&["mount.fuse.sessionfs", "/r", "/m", "/x"]),
            Some(Err(_))
        ));
        assert!(matches!(
            rewritten(&["mount.fuse.sessionfs", "/r", "/m", "-o"]),
            Some(Err(_))
        ));
        assert!(matches!(
            rewritten(&["mount.fuse.sessionfs", "/r", "/m", "-N", "ns"]),
            Some(Err(_))
        ));
    }

    #[test]
    fn the_fuse8_form_needs_a_directory_and_no_command_name() {
        let dir = std::env::temp_dir();
        let d = dir.to_str().unwrap();
        let r = rewritten(&["sessionfs", "/r", d, "-o", "ro,dev,suid"]);
        assert_eq!(
            r.unwrap().unwrap(),
            ["--repo", "/r", "mount", d, "-o", "ro,dev,suid"]
        );
        assert!(rewritten(&["sessionfs", "list"]).is_none());
        assert!(rewritten(&["sessionfs", "cat", d]).is_none());
        assert!(rewritten(&["sessionfs", "help", d]).is_none());
        assert!(rewritten(&["sessionfs", "/r", "/no/such/dir"]).is_none());
        assert!(rewritten(&["sessionfs", "--repo", "/r", "list"]).is_none());
        assert!(rewritten(&["/usr/bin/sessionfs"]).is_none());
    }

    #[test]
    fn options_for_mount8_are_ignored() {
        assert!(is_ignored("x-systemd.requires=a"));
        assert!(!is_ignored("ro"));
    }
}
