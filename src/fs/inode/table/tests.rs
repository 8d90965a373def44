//! Tests of the inode table: walks the way `find` makes the kernel hold
//! inodes, forgetting them, renames of directories and the special keys.

use super::*;
use std::ffi::OsString;
use std::path::PathBuf;

/// What `find` over a Checkbox-like session makes the kernel hold:
/// its directory, `session` (looked up afresh by each listing), the
/// well-known directories and an io-log; returns each inode with the
/// lookups held.
fn walk_session(t: &mut InodeTable, name: &str, held: &mut Vec<(u64, u64)>) {
    let s = || OsString::from(name);
    held.push((t.intern(NodeKey::Session(s()), true), 1));
    for _ in 0..2 {
        held.push((t.intern_fresh(NodeKey::Checkpoint(s())), 1));
    }
    for rel in [
        "io-logs",
        "io-logs/com.canonical.certification__info.record.gz",
        "session-share",
    ] {
        let key = NodeKey::Child(s(), rel.into());
        held.push((t.intern(key.clone(), true), 1));
        // A directory is looked up again as `find` enters it.
        if !rel.ends_with(".gz") {
            held.push((t.intern(key, true), 1));
        }
    }
}

#[test]
fn a_walk_forgotten_leaves_the_table_as_it_was() {
    let mut t = InodeTable::default();
    let (len0, bytes0) = (t.len(), t.bytes());
    let mut held = Vec::new();
    let n = 5000;
    for i in 0..n {
        walk_session(&mut t, &format!("bench-walk-{i:06}.session"), &mut held);
    }
    // Each session: its directory, two `session` inodes, io-logs, a
    // log, session-share.
    assert_eq!(t.len(), len0 + n * 6);
    let peak = t.bytes();
    let per_inode = (peak - bytes0) / (n * 6);
    assert!(per_inode <= 80, "{per_inode} bytes per inode");
    // The record's name, the same in every session, is stored once.
    let session_names = n * "bench-walk-000000.session".len();
    assert!(
        t.names.len() <= session_names + 64,
        "{} bytes of names for {session_names} of session names",
        t.names.len()
    );
    let key = NodeKey::Child("bench-walk-000042.session".into(), "io-logs".into());
    let io_logs = t.find(&key).unwrap();
    assert_eq!(t.key(io_logs), Some(key));
    for &(ino, n) in held.iter().rev() {
        t.forget(ino, n);
    }
    assert_eq!(t.len(), len0);
    assert_eq!(t.key(io_logs), None);
    assert_eq!(t.looked_up_sessions().count(), 0);
    assert!(
        t.bytes() <= bytes0 + 1024,
        "{} bytes left of {peak} at the peak, {bytes0} at the start",
        t.bytes()
    );
}

#[test]
fn forgetting_most_of_a_table_keeps_the_rest_whole() {
    let mut t = InodeTable::default();
    let mut held = Vec::new();
    for i in 0..3000 {
        walk_session(&mut t, &format!("s{i}.session"), &mut held);
    }
    let kept: Vec<(u64, NodeKey)> = held
        .iter()
        .step_by(97)
        .map(|&(ino, _)| (ino, t.key(ino).unwrap()))
        .collect();
    let peak = t.bytes();
    let mut kept_inos: Vec<u64> = kept.iter().map(|(ino, _)| *ino).collect();
    kept_inos.sort_unstable();
    kept_inos.dedup();
    for &(ino, n) in &held {
        if kept_inos.binary_search(&ino).is_err() {
            t.forget(ino, n);
        }
    }
    assert_eq!(t.len(), 2 + kept_inos.len());
    assert!(t.bytes() < peak / 4, "compacted: {} of {peak}", t.bytes());
    for (ino, key) in &kept {
        assert_eq!(t.key(*ino).as_ref(), Some(key), "{ino}");
        if !matches!(key, NodeKey::Checkpoint(_)) {
            assert_eq!(t.find(key), Some(*ino), "{key:?}");
        }
    }
    // Numbering goes on after the compaction without reuse.
    let fresh = t.intern(NodeKey::Session("new.session".into()), true);
    assert!(held.iter().all(|&(ino, _)| ino < fresh));
}

#[test]
fn a_renamed_session_takes_everything_below_along() {
    let mut t = InodeTable::default();
    let (a, b) = (
        || OsString::from("a.session"),
        || OsString::from("b.session"),
    );
    let dir = t.intern(NodeKey::Session(a()), true);
    let older = t.intern_fresh(NodeKey::Checkpoint(a()));
    let checkpoint = t.intern_fresh(NodeKey::Checkpoint(a()));
    let log = t.intern(NodeKey::Child(a(), "io-logs/x.record.gz".into()), true);
    t.rename(&NodeKey::Session(a()), &NodeKey::Session(b()));
    assert_eq!(t.key(dir), Some(NodeKey::Session(b())));
    assert_eq!(t.find(&NodeKey::Checkpoint(b())), Some(checkpoint));
    assert_eq!(t.key(checkpoint), Some(NodeKey::Checkpoint(b())));
    assert_eq!(
        t.key(older),
        Some(NodeKey::Checkpoint(b())),
        "an older inode of `session` is in the same directory"
    );
    assert_eq!(
        t.find(&NodeKey::Child(b(), "io-logs/x.record.gz".into())),
        Some(log)
    );
    assert_eq!(t.find(&NodeKey::Session(a())), None);
    assert_eq!(t.find(&NodeKey::Checkpoint(a())), None);
    // Out of a session into another, as a plain name.
    t.rename(
        &NodeKey::Child(b(), "io-logs".into()),
        &NodeKey::Child(a(), "logs".into()),
    );
    assert_eq!(
        t.key(log),
        Some(NodeKey::Child(a(), "logs/x.record.gz".into()))
    );
}

#[test]
fn a_directory_forgotten_before_what_is_below_it_comes_back_as_a_new_inode() {
    let mut t = InodeTable::default();
    let s = || OsString::from("s.session");
    let dir = t.intern(NodeKey::Child(s(), "d".into()), true);
    let file = t.intern(NodeKey::Child(s(), "d/f".into()), true);
    t.forget(dir, 1);
    assert_eq!(t.key(dir), None);
    assert_eq!(t.find(&NodeKey::Child(s(), "d".into())), None);
    assert_eq!(t.key(file), Some(NodeKey::Child(s(), "d/f".into())));
    assert_eq!(t.find(&NodeKey::Child(s(), "d/f".into())), Some(file));
    let again = t.intern(NodeKey::Child(s(), "d".into()), true);
    assert_ne!(again, dir);
    t.forget(file, 1);
    t.forget(again, 1);
    assert_eq!(t.len(), 2);
}

#[test]
fn pending_links_and_sessions_of_one_name_are_apart() {
    let mut t = InodeTable::default();
    let link = t.intern(NodeKey::PendingLink("x".into()), true);
    let session = t.intern(NodeKey::Session("x".into()), true);
    assert_ne!(link, session);
    assert_eq!(t.key(link), Some(NodeKey::PendingLink("x".into())));
    let held: Vec<&OsStr> = t.looked_up_sessions().collect();
    assert_eq!(held, [OsStr::new("x")]);
    // Neither moves nor goes by a detach or a rename of a pending link.
    t.detach(&NodeKey::PendingLink("x".into()));
    assert_eq!(t.find(&NodeKey::PendingLink("x".into())), Some(link));
    assert_eq!(t.find(&NodeKey::Root), Some(ROOT));
    assert_eq!(t.find(&NodeKey::LastSession), Some(LAST_SESSION));
}

/// A find through the filesystem layer over Checkbox-like sessions:
/// READDIRPLUS of each directory (each entry one lookup the kernel
/// holds) and a LOOKUP of each directory entered; then the kernel
/// forgets all it was given.
#[test]
fn the_table_shrinks_back_when_the_kernel_forgets_a_walk() {
    use crate::fs::test_fixture::fs_with_sessions;
    use crate::fs::{Kind, SessionFs};

    fn walk(fs: &SessionFs, dir: u64, held: &mut Vec<u64>) {
        let fh = fs.opendir(dir).unwrap();
        let mut entries = Vec::new();
        fs.readdirplus(dir, fh, 0, |_, e, a| {
            if e.is_kept_by_kernel() {
                entries.push((e.name.clone(), a.ino, a.kind));
            }
            false
        })
        .unwrap();
        fs.releasedir(fh);
        for (name, ino, kind) in entries {
            held.push(ino);
            if kind == Kind::Directory {
                let entered = fs.lookup_by(dir, &name, 0).unwrap();
                held.push(entered.ino);
                walk(fs, entered.ino, held);
            }
        }
    }

    let names: Vec<String> = (0..200).map(|i| format!("s{i:03}.session")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (dir, fs) = fs_with_sessions(&refs);
    for n in &names {
        let s = dir.path().join(n);
        std::fs::write(s.join("session"), b"x").unwrap();
        std::fs::create_dir(s.join("io-logs")).unwrap();
        std::fs::write(s.join("io-logs/ns__job.record.gz"), b"not gzip").unwrap();
        std::fs::create_dir(s.join("session-share")).unwrap();
    }
    let start = fs.nodes().table.len();
    let mut held = Vec::new();
    walk(&fs, ROOT, &mut held);
    let files = held
        .iter()
        .filter(|&&ino| matches!(fs.key(ino), Ok(NodeKey::Checkpoint(_))))
        .count();
    assert_eq!(files, names.len(), "every `session` was listed");
    let peak = fs.nodes().table.len();
    assert!(peak >= start + names.len() * 5, "{start} → {peak}");
    for ino in held {
        fs.forget(ino, 1);
    }
    assert_eq!(fs.nodes().table.len(), start);
    assert_eq!(fs.nodes().table.looked_up_sessions().count(), 0);
}

/// Random operations, the way the filesystem layer makes them (`session`
/// interned afresh, hard links only of files, renames never into
/// themselves), on the compact table and on the table it replaced: every
/// name finds the same inode, the same inodes live, and every inode with
/// a name the kernel can reach has the same key. (The old table left an
/// unattached inode — an older `session`, an unlinked file — with its old
/// key when a directory above it was renamed; the compact one moves it
/// along, so those keys are not compared.)
#[test]
fn the_compact_table_behaves_as_the_one_it_replaced() {
    use super::model::Model;

    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let sessions = ["a.session", "b.session"];
    let dirs = ["d", "e"];
    let files = ["f", "g", "session", "session.json"];
    // Every place: sessions, and up to two directories deep in them.
    let mut places: Vec<(NodeKey, bool)> = Vec::new();
    for s in sessions {
        places.push((NodeKey::Session(s.into()), true));
        let mut rels: Vec<(PathBuf, bool)> = Vec::new();
        for d in dirs {
            rels.push((d.into(), true));
            for d2 in dirs {
                rels.push((PathBuf::from(d).join(d2), true));
            }
        }
        let parents: Vec<PathBuf> = std::iter::once(PathBuf::new())
            .chain(rels.iter().map(|(r, _)| r.clone()))
            .collect();
        for p in parents {
            for f in files {
                rels.push((p.join(f), false));
            }
        }
        for (rel, is_dir) in rels {
            places.push((NodeKey::inside(s.into(), rel), is_dir));
        }
    }
    let below = |k: &NodeKey, top: &NodeKey| -> bool {
        match (k, top) {
            (_, NodeKey::Session(t)) => match k {
                NodeKey::Session(s) => s == t,
                _ => k.in_session().is_some_and(|(s, _)| s == t),
            },
            _ => match (k.in_session(), top.in_session()) {
                (Some((a, ra)), Some((b, rb))) => a == b && ra.starts_with(rb),
                _ => false,
            },
        }
    };
    for round in 0..30 {
        let mut t = InodeTable::default();
        let mut m = Model::default();
        let mut inos: Vec<u64> = Vec::new();
        for step in 0..400 {
            let (key, is_dir) = places[rand(places.len())].clone();
            let what = rand(100);
            let op;
            if what < 35 {
                let lookup = rand(4) != 0;
                op = format!("intern {key:?} {lookup}");
                let (a, b) = (t.intern(key.clone(), lookup), m.intern(key, lookup));
                assert_eq!(a, b, "{op}");
                inos.push(a);
            } else if what < 45 {
                let s = sessions[rand(2)];
                op = format!("intern_fresh {s}");
                let k = NodeKey::Checkpoint(s.into());
                let (a, b) = (t.intern_fresh(k.clone()), m.intern_fresh(k));
                assert_eq!(a, b, "{op}");
                inos.push(a);
            } else if what < 70 && !inos.is_empty() {
                let ino = inos[rand(inos.len())];
                let n = 1 + rand(2) as u64;
                op = format!("forget {ino} {n}");
                t.forget(ino, n);
                m.forget(ino, n);
            } else if what < 80 {
                let (to, to_dir) = places[rand(places.len())].clone();
                if is_dir != to_dir || below(&to, &key) {
                    continue;
                }
                op = format!("rename {key:?} {to:?}");
                t.rename(&key, &to);
                m.rename(&key, &to);
            } else if what < 88 {
                op = format!("detach {key:?}");
                t.detach(&key);
                m.detach(&key);
            } else if !is_dir && !inos.is_empty() {
                // A hard link: only of a file, to a file's name.
                let ino = inos[rand(inos.len())];
                // (Of an inode whose name is gone, the old table kept the
                // gone name as the primary one and counted the link as a
                // second name: which name was primary depended on its
                // hash order, so that is not compared.)
                let file = m.key(ino).is_some_and(|k| {
                    m.find(&k) == Some(ino) && places.iter().any(|(p, d)| *p == k && !d)
                });
                if !file || matches!(key, NodeKey::Checkpoint(_)) {
                    continue;
                }
                op = format!("alias {key:?} {ino}");
                assert_eq!(t.alias(key.clone(), ino, true), m.alias(key, ino, true));
                t.set_identity(ino, (1, ino));
                m.set_identity(ino, (1, ino));
            } else {
                continue;
            }
            let at = format!("round {round} step {step}: {op}");
            assert_eq!(t.len(), m.len(), "{at}");
            for (k, _) in &places {
                assert_eq!(t.find(k), m.find(k), "{at}: find {k:?}");
            }
            for &ino in &inos {
                let mk = m.key(ino);
                assert_eq!(t.key(ino).is_some(), mk.is_some(), "{at}: {ino} lives");
                if let Some(mk) = mk
                    && m.find(&mk) == Some(ino)
                {
                    // With hard links, which name goes on as the primary
                    // one when it goes was the old table's hash order: any
                    // name of the inode will do.
                    let tk = t.key(ino).unwrap();
                    assert!(
                        tk == mk || (t.find(&tk) == Some(ino) && m.find(&tk) == Some(ino)),
                        "{at}: key of {ino}: {tk:?}, not {mk:?}"
                    );
                    assert_eq!(
                        t.linked((1, ino)).map(|(i, _)| i),
                        m.linked((1, ino)).map(|(i, _)| i),
                        "{at}: linked {ino}"
                    );
                }
            }
            let mut ts: Vec<_> = t.looked_up_sessions().collect();
            let mut ms: Vec<_> = m.looked_up_sessions().collect();
            ts.sort();
            ms.sort();
            assert_eq!(ts, ms, "{at}");
        }
    }
}
