//! The mount table as this process sees it (`/proc/self/mountinfo`): what
//! is mounted where, to refuse mounting twice and to say what is there.
//!
//! Invariants: paths are compared resolved (mountinfo shows resolved
//! paths), resolving only the parent of the mount point, which may itself
//! be a dead mount; fields are unescaped (` `, `\t`, `\n` and `\\` are
//! octal escapes there).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
    /// The device number (major, minor) of the mounted filesystem.
    pub device: (u32, u32),
}

fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Parses one mountinfo line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS
/// [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS`.
fn parse(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let dash = fields.iter().position(|f| *f == "-")?;
    let (major, minor) = fields.get(2)?.split_once(':')?;
    Some(MountEntry {
        device: (major.parse().ok()?, minor.parse().ok()?),
        mountpoint: PathBuf::from(OsString::from_vec(unescape(fields.get(4)?))),
        fstype: fields.get(dash + 1)?.to_string(),
        source: String::from_utf8_lossy(&unescape(fields.get(dash + 2)?)).into_owned(),
    })
}

fn resolved(path: &Path) -> PathBuf {
    // A bare name (`sessionfs unmount mnt`) has an empty parent: the
    // current directory.
    let parent = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    match (parent.map(Path::canonicalize), path.file_name()) {
        (Some(Ok(parent)), Some(name)) => parent.join(name),
        _ => path.to_path_buf(),
    }
}

impl MountEntry {
    /// The topmost mount at `path`, if anything is mounted there.
    pub(crate) fn at(path: &Path) -> Option<MountEntry> {
        let want = resolved(path);
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines()
            .rev()
            .filter_map(parse)
            .find(|e| e.mountpoint.as_os_str().as_bytes() == want.as_os_str().as_bytes())
    }

    /// `/srv/sessions (fuse.sessionfs)`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("{} ({})", self.source, self.fstype)
    }
}

/// Whether `path` is a mount point in this process's namespace.
pub(crate) fn is_mounted(path: &Path) -> bool {
    MountEntry::at(path).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mountinfo_line_gives_its_mount_point_type_and_source() {
        let line = "36 35 98:0 / /mnt/my\\040sessions rw,noatime master:1 - fuse.sessionfs /srv/s rw,user_id=0";
        assert_eq!(
            parse(line),
            Some(MountEntry {
                mountpoint: PathBuf::from("/mnt/my sessions"),
                fstype: "fuse.sessionfs".into(),
                source: "/srv/s".into(),
                device: (98, 0),
            })
        );
        assert_eq!(parse("garbage"), None);
    }

    #[test]
    fn a_bare_name_is_resolved_in_the_current_directory() {
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(resolved(Path::new("mnt")), here.join("mnt"));
        assert_eq!(resolved(Path::new("mnt/")), here.join("mnt"));
        assert_eq!(resolved(Path::new("./mnt")), here.join("mnt"));
    }

    #[test]
    fn the_root_is_mounted_and_a_fresh_directory_is_not() {
        assert!(is_mounted(Path::new("/")));
        let dir = std::env::temp_dir().join(format!("sessionfs-mounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!is_mounted(&dir));
        std::fs::remove_dir(&dir).unwrap();
    }
}
