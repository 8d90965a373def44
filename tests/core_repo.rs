//! The session repository: enumeration, creation, legacy mode and
//! `last-session`, removal and old-session cleanup.

mod common;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::repo::{TestRepo, assert_no_next, id_of, scratch_dir, set_mtime};
use sessionfs::core::name::utc_timestamp;
use sessionfs::core::{
    BeginOptions, Error, FailStep, LAST_SESSION_LINK, NameProblem, NewSession, Repository,
    SessionName, Start, Step, WELL_KNOWN_DIRS,
};

const HOUR: Duration = Duration::from_secs(3600);

fn ids(repo: &Repository) -> Vec<String> {
    repo.list()
        .expect("list")
        .iter()
        .map(|e| id_of(&e.storage))
        .collect()
}

fn write_canary(dir: &Path) -> PathBuf {
    let canary = dir.join("canary");
    std::fs::write(&canary, b"do not delete").expect("write canary");
    canary
}

fn assert_canary(canary: &Path) {
    assert_eq!(
        std::fs::read(canary).expect("the canary outside the repository is gone"),
        b"do not delete"
    );
}

// ---------------------------------------------------------------- listing

#[test]
fn list_is_youngest_first_by_directory_mtime() {
    let t = TestRepo::new();
    let now = SystemTime::now();
    // Names sort the opposite way of their ages, so a name sort fails.
    let specs = [("a", 1u64), ("b", 5), ("c", 3), ("d", 10), ("e", 2)];
    for (id, hours_ago) in specs {
        let dir = t.mkdir_session(id);
        set_mtime(&dir, now - HOUR * hours_ago as u32);
    }
    assert_eq!(ids(t.repo()), ["a", "e", "c", "b", "d"]);

    // Entries report those mtimes.
    let entries = t.repo().list().unwrap();
    let d = entries.iter().find(|e| e.storage.id() == "d").unwrap();
    let age = now.duration_since(d.modified).unwrap();
    assert!(age >= HOUR * 10 && age < HOUR * 10 + Duration::from_secs(5));

    // Touching an old one makes it the youngest.
    set_mtime(&t.path().join("d.session"), now + Duration::from_secs(60));
    assert_eq!(ids(t.repo()), ["d", "a", "e", "c", "b"]);
}

#[test]
fn a_commit_makes_a_session_the_youngest() {
    let t = TestRepo::new();
    let old = t.mkdir_session("old");
    let young = t.mkdir_session("young");
    let now = SystemTime::now();
    set_mtime(&old, now - HOUR * 2);
    set_mtime(&young, now - HOUR);
    assert_eq!(ids(t.repo()), ["young", "old"]);
    t.repo()
        .open(OsStr::new("old"))
        .unwrap()
        .save(b"x")
        .unwrap();
    assert_no_next(&t.repo().open(OsStr::new("old")).unwrap());
    assert_eq!(ids(t.repo()), ["old", "young"]);
}

#[test]
fn list_keeps_only_real_non_hidden_session_directories() {
    let t = TestRepo::new();
    let outside = t.outside("elsewhere.session");
    let p = t.path();
    t.mkdir_session("good");
    std::fs::create_dir(p.join(".hidden.session")).unwrap();
    std::fs::create_dir(p.join("not-a-session")).unwrap();
    std::fs::create_dir(p.join("almost.sessionx")).unwrap();
    std::fs::create_dir(p.join("session")).unwrap();
    std::fs::write(p.join("plainfile.session"), b"x").unwrap();
    symlink(&outside, p.join("linked.session")).unwrap();
    symlink(p.join("good.session"), p.join("alias.session")).unwrap();
    symlink("nowhere/at/all", p.join("dangling.session")).unwrap();
    symlink("nowhere", p.join("dangling")).unwrap();
    std::fs::write(p.join("last-session"), b"not a link").unwrap();
    // A bare ".session" is hidden too.
    std::fs::create_dir(p.join(".session")).unwrap();

    assert_eq!(ids(t.repo()), ["good"]);
    let entries = t.repo().list().unwrap();
    assert_eq!(entries[0].storage.location(), p.join("good.session"));
    assert_eq!(
        entries[0].storage.name().as_os_str(),
        OsStr::new("good.session")
    );
}

#[test]
fn a_dangling_symlink_does_not_empty_the_listing() {
    let t = TestRepo::new();
    t.mkdir_session("one");
    t.mkdir_session("two");
    // plainbox 0.38 stats every entry while sorting, following links, and
    // a dangling one makes it fail: ours must not.
    symlink(t.path().join("gone"), t.path().join("zzz-dangling")).unwrap();
    symlink(t.path().join("gone"), t.path().join("dangling.session")).unwrap();
    let mut got = ids(t.repo());
    got.sort();
    assert_eq!(got, ["one", "two"]);
}

#[test]
fn a_missing_repository_lists_as_empty_and_a_file_is_an_error() {
    let t = TestRepo::missing();
    assert!(!t.path().exists());
    assert!(t.repo().list().unwrap().is_empty());
    assert!(t.repo().last_session().unwrap().is_none());
    assert!(t.repo().check().is_ok());
    assert!(!t.path().exists(), "listing must not create the repository");

    std::fs::write(t.path(), b"I am a file").unwrap();
    match t.repo().list() {
        Err(Error::NotARepository { path }) => assert_eq!(path, t.path()),
        other => panic!("expected NotARepository, got {other:?}"),
    }
    assert!(matches!(
        t.repo().check(),
        Err(Error::NotARepository { .. })
    ));
    assert!(matches!(
        t.repo().create("pbox-", false),
        Err(Error::NotARepository { .. })
    ));
}

#[test]
fn the_repository_location_is_made_absolute() {
    let repo = Repository::new("relative/dir");
    assert!(repo.location().is_absolute());
    assert_eq!(
        repo.location(),
        std::env::current_dir().unwrap().join("relative/dir")
    );
}

// ---------------------------------------------------------------- ids and opening

#[test]
fn the_id_is_the_directory_name_without_session() {
    let t = TestRepo::new();
    t.mkdir_session("pbox-2026-11-22T01.02.03_(4)");
    let s = t
        .repo()
        .open(OsStr::new("pbox-2026-11-22T01.02.03_(4)"))
        .unwrap();
    assert_eq!(s.id(), "pbox-2026-11-22T01.02.03_(4)");
    assert_eq!(
        s.location(),
        t.path().join("pbox-2026-11-22T01.02.03_(4).session")
    );
    assert_eq!(ids(t.repo()), ["pbox-2026-11-22T01.02.03_(4)"]);
}

#[test]
fn open_refuses_bad_ids_and_missing_sessions() {
    let t = TestRepo::new();
    t.mkdir_session("x");
    std::fs::write(t.path().join("file.session"), b"").unwrap();
    for (bad, problem) in [
        ("", NameProblem::Empty),
        ("a/b", NameProblem::HasSlash),
        ("../x", NameProblem::HasSlash),
        ("..", NameProblem::Hidden),
        (".x", NameProblem::Hidden),
    ] {
        match t.repo().open(OsStr::new(bad)) {
            Err(Error::InvalidName { problem: p, .. }) => assert_eq!(p, problem, "{bad:?}"),
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
    }
    for missing in ["y", "file"] {
        match t.repo().open(OsStr::new(missing)) {
            Err(Error::NoSuchSession { path }) => {
                assert_eq!(path, t.path().join(format!("{missing}.session")))
            }
            other => panic!("{missing:?}: expected NoSuchSession, got {other:?}"),
        }
    }
    assert!(t.repo().open(OsStr::new("x")).is_ok());
    // In a repository that does not exist, nothing exists.
    let gone = TestRepo::missing();
    assert!(matches!(
        gone.repo().open(OsStr::new("x")),
        Err(Error::NoSuchSession { .. })
    ));
}

// ---------------------------------------------------------------- creating

/// Checks `PREFIX` + `YYYY-MM-DDTHH.MM.SS` + optional `_(N)`; returns the
/// timestamp part.
fn check_name_format(id: &str, prefix: &str) -> String {
    let rest = id
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{id:?} does not start with {prefix:?}"));
    assert!(rest.len() >= 19, "{id:?} is too short");
    let (stamp, suffix) = rest.split_at(19);
    let b = stamp.as_bytes();
    for (i, c) in b.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-', "{id:?}"),
            10 => assert_eq!(*c, b'T', "{id:?}"),
            13 | 16 => assert_eq!(*c, b'.', "{id:?}"),
            _ => assert!(c.is_ascii_digit(), "{id:?}"),
        }
    }
    if !suffix.is_empty() {
        let n = suffix
            .strip_prefix("_(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("bad suffix in {id:?}"));
        assert!(n.parse::<u32>().is_ok(), "bad counter in {id:?}");
    }
    stamp.to_string()
}

#[test]
fn create_names_the_session_with_the_prefix_and_the_utc_time() {
    let t = TestRepo::new();
    let before = SystemTime::now();
    let s = t.create();
    let after = SystemTime::now();
    let id = id_of(&s);
    let stamp = check_name_format(&id, "pbox-");
    // The stamp is UTC: it is the stamp of a moment during the call.
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let candidates: Vec<String> = (secs(before)..=secs(after))
        .map(|s| utc_timestamp(UNIX_EPOCH + Duration::from_secs(s)))
        .collect();
    assert!(candidates.contains(&stamp), "{stamp} not in {candidates:?}");
    assert_eq!(s.location(), t.path().join(format!("{id}.session")));
    assert!(s.location().is_dir());
    for dir in WELL_KNOWN_DIRS {
        assert!(s.location().join(dir).is_dir(), "{dir} missing");
    }
    assert!(s.location().join("io-logs").is_dir());
    assert!(s.load().unwrap().is_empty());
    assert!(!s.location().join("session").exists());
    assert_eq!(ids(t.repo()), [id]);
    // A non-legacy create leaves no last-session.
    assert!(t.repo().last_session_target().unwrap().is_none());
}

#[test]
fn create_slugs_the_prefix() {
    let t = TestRepo::new();
    let s = t.repo().create("my prefix/é:x.Y_z-", false).unwrap();
    let id = id_of(&s);
    check_name_format(&id, "my_prefix___x.Y_z-");
    assert_eq!(s.location().parent().unwrap(), t.path());
    let s = t.repo().create("", false).unwrap();
    check_name_format(&id_of(&s), "");
}

#[test]
fn create_makes_a_missing_repository_and_its_parents() {
    let dir = scratch_dir();
    let location = dir.path().join("a/b/c");
    let repo = Repository::new(&location);
    let s = repo.create("pbox-", false).unwrap();
    assert!(location.is_dir());
    assert_eq!(s.location().parent().unwrap(), location);
    assert_eq!(repo.list().unwrap().len(), 1);
}

#[test]
fn a_name_clash_gets_the_next_counter() {
    let t = TestRepo::new();
    // Occupy every name create could pick in the next seconds, including
    // `_(1)`; `_(2)` is taken by a plain file (any entry counts as a clash).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stamps: Vec<String> = (now.saturating_sub(1)..now + 30)
        .map(|s| utc_timestamp(UNIX_EPOCH + Duration::from_secs(s)))
        .collect();
    for stamp in &stamps {
        std::fs::create_dir(t.path().join(format!("c-{stamp}.session"))).unwrap();
        std::fs::create_dir(t.path().join(format!("c-{stamp}_(1).session"))).unwrap();
        std::fs::write(t.path().join(format!("c-{stamp}_(2).session")), b"").unwrap();
    }
    let s = t.repo().create("c-", false).unwrap();
    let id = id_of(&s);
    let stamp = check_name_format(&id, "c-");
    assert!(stamps.contains(&stamp));
    assert_eq!(id, format!("c-{stamp}_(3)"));
    // The next one moves on again.
    let s2 = t.repo().create("c-", false).unwrap();
    let id2 = id_of(&s2);
    let stamp2 = check_name_format(&id2, "c-");
    if stamp2 == stamp {
        assert_eq!(id2, format!("c-{stamp}_(4)"));
    } else {
        assert_eq!(id2, format!("c-{stamp2}_(3)"));
    }
}

#[test]
fn two_creates_in_the_same_second_get_distinct_names() {
    let t = TestRepo::new();
    // Retry until both creates land in the same second (nearly always the
    // first try).
    for _ in 0..20 {
        let a = id_of(&t.create());
        let b = id_of(&t.create());
        let (sa, sb) = (
            check_name_format(&a, "pbox-"),
            check_name_format(&b, "pbox-"),
        );
        assert_ne!(a, b);
        if sa == sb {
            assert!(b.ends_with(")"), "{a} then {b}");
            return;
        }
    }
    panic!("could not create two sessions within one second");
}

#[test]
fn concurrent_creates_from_threads_all_get_their_own_directory() {
    let t = TestRepo::new();
    const THREADS: usize = 12;
    const EACH: usize = 8;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let repo = t.repo().clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..EACH)
                    .map(|_| id_of(&repo.create("race-", false).expect("create")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), THREADS * EACH, "duplicate ids: {all:?}");
    let listed: HashSet<String> = ids(t.repo()).into_iter().collect();
    assert_eq!(listed.len(), THREADS * EACH);
    for id in &all {
        check_name_format(id, "race-");
        assert!(listed.contains(id));
        assert!(t.path().join(format!("{id}.session/io-logs")).is_dir());
    }
}

// ---------------------------------------------------------------- legacy mode

fn link_target(t: &TestRepo) -> PathBuf {
    std::fs::read_link(t.path().join(LAST_SESSION_LINK)).expect("last-session link")
}

#[test]
fn legacy_create_replaces_the_previous_legacy_session() {
    let t = TestRepo::new();
    let other = t.create(); // not legacy: never touched
    let first = t.repo().create("pbox-", true).unwrap();
    assert_eq!(link_target(&t), first.location());
    assert!(link_target(&t).is_absolute());
    assert_eq!(
        t.repo().last_session().unwrap().unwrap().name(),
        first.name()
    );
    first.save(b"first").unwrap();
    assert_no_next(&first);

    let second = t.repo().create("pbox-", true).unwrap();
    assert_ne!(first.name(), second.name());
    assert!(!first.location().exists(), "previous legacy session kept");
    assert_eq!(link_target(&t), second.location());
    assert_eq!(
        t.repo().last_session().unwrap().unwrap().name(),
        second.name()
    );
    assert!(other.location().is_dir());

    // A non-legacy create leaves the link and the legacy session alone.
    let third = t.create();
    assert_eq!(link_target(&t), second.location());
    assert!(second.location().is_dir());
    let mut listed = ids(t.repo());
    listed.sort();
    let mut expected = vec![id_of(&other), id_of(&second), id_of(&third)];
    expected.sort();
    assert_eq!(listed, expected);
    // No temporary link is left behind.
    let names: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "leftovers: {names:?}"
    );
}

#[test]
fn legacy_create_never_deletes_outside_the_repository() {
    let t = TestRepo::new();
    let victim = t.outside("victim.session");
    let canary = write_canary(&victim);
    // An absolute link out of the repository.
    symlink(&victim, t.path().join(LAST_SESSION_LINK)).unwrap();
    assert!(t.repo().last_session().unwrap().is_none());
    let s = t.repo().create("pbox-", true).unwrap();
    assert_canary(&canary);
    assert_eq!(link_target(&t), s.location());

    // A link that climbs out with `..` from inside the repository.
    std::fs::remove_file(t.path().join(LAST_SESSION_LINK)).unwrap();
    let sneaky = t.path().join("..").join("victim.session");
    symlink(&sneaky, t.path().join(LAST_SESSION_LINK)).unwrap();
    let s2 = t.repo().create("pbox-", true).unwrap();
    assert_canary(&canary);
    assert!(s.location().is_dir(), "an unrelated session was removed");
    assert_eq!(link_target(&t), s2.location());

    // A relative link out of the repository.
    std::fs::remove_file(t.path().join(LAST_SESSION_LINK)).unwrap();
    symlink("../victim.session", t.path().join(LAST_SESSION_LINK)).unwrap();
    t.repo().create("pbox-", true).unwrap();
    assert_canary(&canary);

    // A link to a symlinked "session" in the repository that points out.
    std::fs::remove_file(t.path().join(LAST_SESSION_LINK)).unwrap();
    symlink(&victim, t.path().join("trap.session")).unwrap();
    symlink(
        t.path().join("trap.session"),
        t.path().join(LAST_SESSION_LINK),
    )
    .unwrap();
    t.repo().create("pbox-", true).unwrap();
    assert_canary(&canary);
    assert!(victim.is_dir());
}

#[test]
fn legacy_create_with_a_broken_or_bogus_link_still_works() {
    let t = TestRepo::new();
    symlink(
        t.path().join("gone.session"),
        t.path().join(LAST_SESSION_LINK),
    )
    .unwrap();
    let s = t.repo().create("pbox-", true).unwrap();
    assert_eq!(link_target(&t), s.location());

    // last-session a regular file: replaced by a link.
    std::fs::remove_file(t.path().join(LAST_SESSION_LINK)).unwrap();
    std::fs::write(t.path().join(LAST_SESSION_LINK), b"junk").unwrap();
    let s2 = t.repo().create("pbox-", true).unwrap();
    assert_eq!(link_target(&t), s2.location());
    assert!(s.location().is_dir());
}

#[test]
fn last_session_is_replaced_atomically() {
    let t = TestRepo::new();
    t.repo().create("pbox-", true).unwrap();
    let link = t.path().join(LAST_SESSION_LINK);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let link = link.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = std::fs::read_link(&link) {
                    return Err(format!("last-session missing after {reads} reads: {e}"));
                }
                reads += 1;
            }
            Ok(reads)
        })
    };
    for _ in 0..40 {
        t.repo().create("pbox-", true).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let reads = watcher.join().unwrap().unwrap();
    assert!(reads > 0);
    // Only the last legacy session remains.
    assert_eq!(t.repo().list().unwrap().len(), 1);
}

#[test]
fn last_session_resolves_absolute_and_relative_targets() {
    let t = TestRepo::new();
    let a = t.mkdir_session("a");
    let link = t.path().join(LAST_SESSION_LINK);

    symlink(&a, &link).unwrap();
    assert_eq!(t.repo().last_session().unwrap().unwrap().id(), "a");
    assert_eq!(
        t.repo().last_session_target().unwrap().unwrap(),
        a.as_os_str()
    );

    // Relative targets resolve against the repository, not the current
    // directory.
    std::fs::remove_file(&link).unwrap();
    symlink("a.session", &link).unwrap();
    assert_eq!(t.repo().last_session().unwrap().unwrap().id(), "a");
    std::fs::remove_file(&link).unwrap();
    symlink("./a.session", &link).unwrap();
    assert_eq!(t.repo().last_session().unwrap().unwrap().id(), "a");

    // The repository reached through a symlinked path still matches.
    let alias = t.root().join("alias");
    symlink(t.path(), &alias).unwrap();
    std::fs::remove_file(&link).unwrap();
    symlink(alias.join("a.session"), &link).unwrap();
    assert_eq!(t.repo().last_session().unwrap().unwrap().id(), "a");
    let via_alias = Repository::new(&alias);
    std::fs::remove_file(&link).unwrap();
    symlink(&a, &link).unwrap();
    assert_eq!(via_alias.last_session().unwrap().unwrap().id(), "a");
}

#[test]
fn last_session_counts_only_when_it_names_a_session_directory() {
    let t = TestRepo::new();
    let link = t.path().join(LAST_SESSION_LINK);
    let relink = |target: &Path| {
        let _ = std::fs::remove_file(&link);
        symlink(target, &link).unwrap();
    };
    // No link at all.
    assert!(t.repo().last_session().unwrap().is_none());
    // A file named like a session.
    std::fs::write(t.path().join("file.session"), b"x").unwrap();
    relink(&t.path().join("file.session"));
    assert!(t.repo().last_session().unwrap().is_none());
    // A missing session.
    relink(&t.path().join("gone.session"));
    assert!(t.repo().last_session().unwrap().is_none());
    // A directory outside the repository.
    let out = t.outside("out.session");
    relink(&out);
    assert!(t.repo().last_session().unwrap().is_none());
    // A symlink in the repository to a directory.
    symlink(&out, t.path().join("ln.session")).unwrap();
    relink(&t.path().join("ln.session"));
    assert!(t.repo().last_session().unwrap().is_none());
    // A directory without the .session suffix.
    std::fs::create_dir(t.path().join("plain")).unwrap();
    relink(&t.path().join("plain"));
    assert!(t.repo().last_session().unwrap().is_none());
    // last-session itself a directory or regular file.
    std::fs::remove_file(&link).unwrap();
    std::fs::write(&link, b"x").unwrap();
    assert!(t.repo().last_session().unwrap().is_none());
    assert!(t.repo().last_session_target().unwrap().is_none());
    // And finally a good one.
    let good = t.mkdir_session("good");
    relink(&good);
    assert_eq!(t.repo().last_session().unwrap().unwrap().id(), "good");
}

#[test]
fn set_last_session_points_the_link_at_a_session() {
    let t = TestRepo::new();
    let a = t.create();
    let b = t.create();
    t.repo().set_last_session(a.name()).unwrap();
    assert_eq!(link_target(&t), a.location());
    t.repo().set_last_session(b.name()).unwrap();
    assert_eq!(link_target(&t), b.location());
    assert!(a.location().is_dir(), "set_last_session must not remove");
}

// ---------------------------------------------------------------- removing

#[test]
fn remove_deletes_the_whole_session() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"data").unwrap();
    std::fs::create_dir_all(s.location().join("io-logs/deep/er")).unwrap();
    std::fs::write(s.location().join("io-logs/deep/er/log"), b"log").unwrap();
    std::fs::write(s.location().join("session.next"), b"stale").unwrap();
    let keep = t.create();
    t.repo().remove(s.id()).unwrap();
    assert!(!s.location().exists());
    assert_eq!(ids(t.repo()), [id_of(&keep)]);
    // Removing it again: no such session.
    assert!(matches!(
        t.repo().remove(s.id()),
        Err(Error::NoSuchSession { .. })
    ));
    assert!(matches!(s.remove(), Err(Error::NoSuchSession { .. })));
}

#[test]
fn remove_never_follows_symlinks_out_of_the_session() {
    let t = TestRepo::new();
    let outside = t.outside("precious");
    let canary = write_canary(&outside);
    let s = t.create();
    symlink(&outside, s.location().join("link-to-dir")).unwrap();
    symlink(&canary, s.location().join("link-to-file")).unwrap();
    symlink(&outside, s.location().join("io-logs/nested-link")).unwrap();
    t.repo().remove(s.id()).unwrap();
    assert!(!s.location().exists());
    assert_canary(&canary);
    assert!(outside.is_dir());
}

#[test]
fn a_symlinked_session_in_the_repository_is_never_listed_followed_or_removed() {
    let t = TestRepo::new();
    let outside = t.outside("target.session");
    let canary = write_canary(&outside);
    std::fs::write(outside.join("session"), b"outside checkpoint").unwrap();
    let link = t.path().join("evil.session");
    symlink(&outside, &link).unwrap();

    assert!(ids(t.repo()).is_empty());
    match t.repo().remove(OsStr::new("evil")) {
        Err(Error::NoSuchSession { .. }) => {}
        other => panic!("expected NoSuchSession, got {other:?}"),
    }
    assert!(matches!(
        t.repo().open(OsStr::new("evil")),
        Err(Error::NoSuchSession { .. })
    ));
    assert_canary(&canary);
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "the link was removed"
    );

    // A storage handle on that name, made without checking, must not read
    // or write through the link either.
    let name = sessionfs::core::SessionName::from_id(OsStr::new("evil")).unwrap();
    let st = t.repo().storage(name);
    assert!(st.load().is_err());
    assert!(st.save(b"overwrite").is_err());
    assert_eq!(
        std::fs::read(outside.join("session")).unwrap(),
        b"outside checkpoint"
    );
    assert!(!outside.join("session.next").exists());
    // Its remove only unlinks the link.
    st.remove().unwrap();
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert_canary(&canary);
    assert_eq!(
        std::fs::read(outside.join("session")).unwrap(),
        b"outside checkpoint"
    );
}

// ---------------------------------------------------------------- old sessions

#[test]
fn older_than_and_delete_older_than_use_the_directory_mtime() {
    let t = TestRepo::new();
    let now = SystemTime::now();
    let ancient = t.mkdir_session("ancient");
    let old = t.mkdir_session("old");
    let fresh = t.mkdir_session("fresh");
    std::fs::write(old.join("session"), b"x").unwrap();
    set_mtime(&ancient, now - HOUR * 24 * 30);
    set_mtime(&old, now - HOUR * 24 * 2);
    set_mtime(&fresh, now - HOUR);

    let listed = |v: Vec<sessionfs::core::SessionEntry>| -> Vec<String> {
        v.iter().map(|e| id_of(&e.storage)).collect()
    };
    assert_eq!(
        listed(t.repo().older_than(HOUR * 24).unwrap()),
        ["old", "ancient"]
    );
    assert_eq!(
        listed(t.repo().older_than(HOUR * 24 * 7).unwrap()),
        ["ancient"]
    );
    assert!(t.repo().older_than(HOUR * 24 * 365).unwrap().is_empty());
    // older_than only reports.
    assert_eq!(t.repo().list().unwrap().len(), 3);

    let deleted: Vec<String> = t
        .repo()
        .delete_older_than(HOUR * 24)
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(deleted, ["old", "ancient"]);
    assert!(!ancient.exists() && !old.exists());
    assert_eq!(ids(t.repo()), ["fresh"]);
    assert!(t.repo().delete_older_than(HOUR * 24).unwrap().is_empty());
}

#[test]
fn delete_older_than_keeps_a_session_being_written_but_not_a_stale_lock() {
    let t = TestRepo::new();
    let busy = t.create();
    let stale = t.create();
    let writer = busy.begin(BeginOptions::new(Start::Empty)).unwrap();
    std::fs::write(stale.location().join("session.next"), b"left over").unwrap();
    let past = SystemTime::now() - HOUR * 48;
    set_mtime(&busy.location(), past);
    set_mtime(&stale.location(), past);

    let deleted = t.repo().delete_older_than(HOUR).unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].name(), stale.name());
    assert!(busy.location().is_dir());
    assert!(!stale.location().exists());
    writer.commit().unwrap();
    assert_eq!(busy.load().unwrap(), b"");
}

// ---------------------------------------------------------------- churn

#[test]
fn listing_while_sessions_come_and_go_never_fails() {
    let t = TestRepo::new();
    for _ in 0..20 {
        t.create();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let churn = {
        let (repo, stop, rounds) = (t.repo().clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let s = repo.create("churn-", false).unwrap();
                s.save(b"x").unwrap();
                s.remove().unwrap();
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // At least 200 listings, and on until the churn has gone round a few
    // times (a loaded machine may hold the churn thread back).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut listings = 0;
    while listings < 200 || rounds.load(Ordering::Relaxed) < 5 {
        assert!(std::time::Instant::now() < deadline, "the churn never ran");
        let entries = t.repo().list().expect("list during churn");
        assert!(entries.len() >= 20);
        for e in entries {
            // Each entry is a session or has just gone.
            match e.storage.lock_state() {
                Ok(_) | Err(Error::NoSuchSession { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        listings += 1;
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    assert_eq!(t.repo().list().unwrap().len(), 20);
}

#[test]
fn concurrent_cleanups_do_not_fail_on_each_other() {
    let t = TestRepo::new();
    let past = SystemTime::now() - HOUR * 48;
    for i in 0..150 {
        let dir = t.mkdir_session(&format!("old-{i:03}"));
        std::fs::create_dir(dir.join("io-logs")).unwrap();
        std::fs::write(dir.join("session"), b"x").unwrap();
        set_mtime(&dir, past);
    }
    let barrier = Arc::new(Barrier::new(3));
    let cleaners: Vec<_> = (0..3)
        .map(|_| {
            let (repo, barrier) = (t.repo().clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                repo.delete_older_than(HOUR)
                    .map(|v| v.iter().map(id_of).collect::<Vec<_>>())
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in cleaners {
        all.extend(c.join().unwrap().expect("a concurrent cleanup failed"));
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a session was reported removed twice");
    assert_eq!(all.len(), 150);
    assert!(t.repo().list().unwrap().is_empty());
}

#[test]
fn non_utf8_session_names_are_listed_and_opened() {
    use std::os::unix::ffi::OsStrExt;
    let t = TestRepo::new();
    let id = OsStr::from_bytes(b"caf\xe9");
    std::fs::create_dir(t.path().join(OsStr::from_bytes(b"caf\xe9.session"))).unwrap();
    let entries = t.repo().list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].storage.id(), id);
    let s = t.repo().open(id).unwrap();
    s.save(b"bytes").unwrap();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"bytes");
    t.repo().remove(id).unwrap();
    assert!(t.repo().list().unwrap().is_empty());
}

// ---------------------------------------------------------- create_session

#[test]
fn create_session_makes_the_named_session_with_its_well_known_dirs() {
    let t = TestRepo::new();
    let name = SessionName::new(OsStr::new("named.session")).unwrap();
    let storage = t
        .repo()
        .create_session(name, NewSession::default())
        .expect("create_session");
    assert_eq!(storage.id(), OsStr::new("named"));
    for wk in sessionfs::core::WELL_KNOWN_DIRS {
        assert!(storage.location().join(wk).is_dir(), "{wk} missing");
    }
    assert_eq!(ids(t.repo()), vec!["named".to_string()]);
}

#[test]
fn create_session_of_an_existing_name_is_eexist_and_keeps_what_is_there() {
    let t = TestRepo::new();
    let name = SessionName::new(OsStr::new("taken.session")).unwrap();
    let first = t
        .repo()
        .create_session(name.clone(), NewSession::default())
        .unwrap();
    first.save(b"kept").unwrap();
    let err = t
        .repo()
        .create_session(name, NewSession::default())
        .expect_err("a second create of one name must fail");
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert_eq!(first.load().unwrap(), b"kept");
}

#[test]
fn create_session_gives_the_session_and_its_dirs_to_the_owner() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs as root (scripts/test.sh is run as root in CI)");
    }
    use std::os::unix::fs::MetadataExt;
    let t = TestRepo::new();
    let name = SessionName::new(OsStr::new("owned.session")).unwrap();
    let how = NewSession {
        mode: 0o750,
        owner: Some((4321, 4322)),
    };
    let storage = t.repo().create_session(name, how).unwrap();
    let meta = std::fs::metadata(storage.location()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4321, 4322));
    assert_eq!(meta.mode() & 0o7777, 0o750 & !current_umask());
    for wk in sessionfs::core::WELL_KNOWN_DIRS {
        let meta = std::fs::metadata(storage.location().join(wk)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4321, 4322), "{wk}");
    }
}

fn current_umask() -> u32 {
    // SAFETY: umask has no preconditions; it is set back at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

#[test]
fn a_failed_create_session_leaves_nothing_behind() {
    for step in Step::CREATE_SESSION {
        let dir = scratch_dir();
        let repo = Repository::with_seam(dir.path(), Arc::new(FailStep::new(step, libc::EIO, 1)));
        let name = SessionName::new(OsStr::new("half.session")).unwrap();
        let err = repo
            .create_session(name, NewSession::default())
            .expect_err("the injected failure must fail the create");
        assert_eq!(
            err.io_kind(),
            Some(std::io::Error::from_raw_os_error(libc::EIO).kind()),
            "{step:?}: {err}"
        );
        assert!(
            !dir.path().join("half.session").exists(),
            "{step:?}: the half-made session was left behind"
        );
        assert!(ids(&repo).is_empty(), "{step:?}");
    }
}

#[test]
fn a_failed_timestamped_create_leaves_nothing_behind() {
    for step in Step::CREATE_SESSION {
        let dir = scratch_dir();
        let repo =
            Repository::with_seam(dir.path(), Arc::new(FailStep::new(step, libc::ENOSPC, 1)));
        repo.create("pbox-", false)
            .expect_err("the injected failure must fail the create");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{step:?}: left {left:?}");
    }
}
