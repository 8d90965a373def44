//! What a session directory of the mount never shows: the temporaries
//! checkpoint writers make (`.session.tmp-*`, live or left by a crash) and
//! the `.nfsXXXX` files an NFS client keeps of files removed while open.
//! Driven through the filesystem layer without a mount.

mod common;

use std::ffi::OsString;

use common::fs_driver::{Driver, errno_of};
use sessionfs::core::{BeginOptions, Start};

const S: &str = "a.session";

fn listing(d: &Driver, ino: u64) -> Vec<OsString> {
    let fh = d.fs.opendir(ino).unwrap();
    let mut entries = d.fs.readdir(fh, 0).unwrap();
    let mut names = Vec::new();
    while let Some((_, e)) = entries.next_entry() {
        names.push(e.name.clone());
    }
    d.fs.releasedir(fh);
    names
}

#[test]
fn temporaries_and_nfs_leftovers_are_neither_listed_nor_found() {
    let d = Driver::with_sessions(&[S]);
    std::fs::write(d.path(S).join("session"), b"whole").unwrap();
    std::fs::write(d.path(S).join(".session.tmp-host-1-2-3"), b"half").unwrap();
    std::fs::write(d.path(S).join(".nfs0000000000b6f2a900000001"), b"open").unwrap();
    std::fs::write(d.path(S).join(".hidden-but-mine"), b"kept").unwrap();
    // A live writer's temporary too.
    let storage = d.repo.repo().open(std::ffi::OsStr::new("a")).unwrap();
    let mut writer = storage.begin(BeginOptions::new(Start::Empty)).unwrap();
    writer.write_at(b"in progress", 0).unwrap();

    let ino = d.session(S);
    let names = listing(&d, ino);
    for hidden in [".session.tmp-", ".nfs"] {
        assert!(
            !names
                .iter()
                .any(|n| n.to_string_lossy().starts_with(hidden)),
            "{hidden}* listed: {names:?}"
        );
    }
    assert!(
        names.contains(&OsString::from(".hidden-but-mine")),
        "{names:?}"
    );
    assert!(names.contains(&OsString::from("session")), "{names:?}");
    for name in [".session.tmp-host-1-2-3", ".nfs0000000000b6f2a900000001"] {
        assert_eq!(errno_of(d.lookup(ino, name)), libc::ENOENT, "{name}");
    }
    assert!(d.lookup(ino, ".hidden-but-mine").is_ok());
    writer.abort().unwrap();
}
