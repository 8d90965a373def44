//! The kernel caches what is inside session directories for long only
//! because the daemon's watch tells it of every change made outside the
//! mount: such a change (plainbox, the CLI, `cp` or `rm` in the repository)
//! still shows in `ls`, `stat` and `cat` of the mount within moments, after
//! the caches were filled by a walk. Where the daemon watches no more
//! directories (`-o max_watches=1`: only the root) the short cache times
//! keep the same promise.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::{Mounted, run};

/// How long a change made outside may take to show; the watch takes
/// milliseconds, and without it the kernel would keep the old view for an
/// hour, so the bound only needs to be far from both.
const SHOWS_WITHIN: Duration = Duration::from_secs(2);

/// Waits until `shown()` holds; fails naming `what` after [`SHOWS_WITHIN`].
fn shows(what: &str, mut shown: impl FnMut() -> bool) {
    let start = Instant::now();
    while !shown() {
        assert!(
            start.elapsed() < SHOWS_WITHIN,
            "{what}: not seen through the mount after {SHOWS_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `stat` of `path` shows `len` bytes.
fn shows_size(what: &str, path: &Path, len: u64) {
    shows(what, || fs::metadata(path).is_ok_and(|md| md.len() == len));
}

/// `chmod 600` of `outside` in the repository, then waits until `stat` of
/// `shown` (its path through the mount) shows it.
fn chmod_outside_shows(what: &str, outside: &Path, shown: &Path) {
    fs::set_permissions(outside, fs::Permissions::from_mode(0o600)).unwrap();
    shows(what, || {
        fs::metadata(shown).is_ok_and(|md| md.permissions().mode() & 0o777 == 0o600)
    });
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Fills the kernel's caches the way a user's walk does.
fn walk(m: &Mounted) {
    run(Command::new("find").arg(&m.mountpoint)).assert_ok();
    run(Command::new("ls").arg("-lR").arg(&m.mountpoint)).assert_ok();
    run(Command::new("du").arg("-s").arg(&m.mountpoint)).assert_ok();
}

fn changes_made_outside_show_after_a_walk(args: &[&str]) -> Mounted {
    let m = Mounted::start(args);
    let s = m.new_session("a");
    m.new_session("b");
    fs::create_dir_all(m.repo_path(format!("{s}/io-logs/sub"))).unwrap();
    fs::write(m.repo_path(format!("{s}/io-logs/job.log")), b"first").unwrap();
    fs::write(m.repo_path(format!("{s}/io-logs/sub/deep.log")), b"deep").unwrap();
    m.save("a", b"checkpoint one");
    let logs = m.path(format!("{s}/io-logs"));
    let job = logs.join("job.log");
    walk(&m);
    assert_eq!(names(&logs), ["job.log", "sub"]);
    assert_eq!(fs::metadata(&job).unwrap().len(), 5);

    // A new file: listed, and found by name.
    fs::write(m.repo_path(format!("{s}/io-logs/new.log")), b"new").unwrap();
    shows("a file created outside, in ls", || {
        names(&logs) == ["job.log", "new.log", "sub"]
    });
    assert_eq!(fs::read(logs.join("new.log")).unwrap(), b"new");

    // A file that grew: its size, then its content.
    fs::write(
        m.repo_path(format!("{s}/io-logs/job.log")),
        b"first and more",
    )
    .unwrap();
    shows_size("a file rewritten outside, in stat", &job, 14);
    assert_eq!(fs::read(&job).unwrap(), b"first and more");

    // Its mode.
    chmod_outside_shows(
        "a chmod made outside, in stat",
        &m.repo_path(format!("{s}/io-logs/job.log")),
        &job,
    );

    // A file replaced by a rename, as editors and `cp` to a temporary do.
    let tmp = m.repo_path(format!("{s}/io-logs/.job.tmp"));
    fs::write(&tmp, b"replaced").unwrap();
    fs::rename(&tmp, m.repo_path(format!("{s}/io-logs/job.log"))).unwrap();
    shows("a file replaced outside, in cat", || {
        fs::read(&job).is_ok_and(|d| d == b"replaced")
    });

    // A directory renamed, and a file removed, deep down.
    fs::rename(
        m.repo_path(format!("{s}/io-logs/sub")),
        m.repo_path(format!("{s}/io-logs/moved")),
    )
    .unwrap();
    shows("a directory renamed outside", || {
        !logs.join("sub").exists() && logs.join("moved/deep.log").exists()
    });
    fs::remove_file(m.repo_path(format!("{s}/io-logs/moved/deep.log"))).unwrap();
    shows("a file removed outside", || {
        names(&logs.join("moved")).is_empty() && !logs.join("moved/deep.log").exists()
    });

    // A checkpoint committed outside: seen at the very next open, and by
    // `stat` within milliseconds, however often the kernel kept the entry
    // of `session` in between (each read and stat here keeps it).
    let checkpoint = m.path(format!("{s}/session"));
    for round in 0..50 {
        let data = format!("checkpoint {round}{}", "+".repeat(round % 7));
        m.save("a", data.as_bytes());
        assert_eq!(fs::read(&checkpoint).unwrap(), data.as_bytes(), "{round}");
        assert_eq!(fs::metadata(&checkpoint).unwrap().len(), data.len() as u64);
    }
    m.save("a", b"checkpoint two, longer");
    shows_size("a checkpoint committed outside, in stat", &checkpoint, 22);
    assert_eq!(fs::read(&checkpoint).unwrap(), b"checkpoint two, longer");
    chmod_outside_shows(
        "a chmod of session made outside, in stat",
        &m.repo_path(format!("{s}/session")),
        &checkpoint,
    );
    // And through the mount, with the entry kept.
    fs::write(&checkpoint, b"through the mount").unwrap();
    assert_eq!(fs::metadata(&checkpoint).unwrap().len(), 17);
    assert_eq!(fs::read(&checkpoint).unwrap(), b"through the mount");
    m.save("a", b"checkpoint two");
    assert_eq!(fs::read(&checkpoint).unwrap(), b"checkpoint two");

    // A session created outside (as plainbox and Checkbox do): listed.
    assert!(!names(&m.mountpoint).contains(&"c.session".to_string()));
    m.new_session("c");
    shows("a session created outside, in ls of the root", || {
        names(&m.mountpoint).contains(&"c.session".to_string())
    });
    assert_eq!(names(&m.path("c.session")), ["io-logs", "session"]);

    // A whole session removed.
    fs::remove_dir_all(m.repo_path("b.session")).unwrap();
    shows("a session removed outside", || {
        !m.path("b.session").exists() && !m.path("b.session/io-logs").exists()
    });
    m
}

#[test]
fn with_every_directory_watched_changes_made_outside_show_at_once() {
    let m = changes_made_outside_show_after_a_walk(&[]);
    assert!(
        !m.log_text().contains("cached by the kernel only briefly"),
        "every directory should be watched here: {}",
        m.log_text()
    );
}

#[test]
fn past_the_watch_limit_changes_made_outside_show_as_well() {
    let m = changes_made_outside_show_after_a_walk(&["-o", "max_watches=1"]);
    assert!(
        m.log_text().contains(
            "watching 1 directories (max_watches): the others are cached by the kernel only briefly"
        ),
        "the fallback is logged: {}",
        m.log_text()
    );
}

/// `stat` of `session` after a commit through the mount shows it, however
/// the kernel's entry of `session` changed during the write: a reader held
/// the older version open (so the writer got an inode of its own), and a
/// `stat` meanwhile looked the name up (and got yet another, for the older
/// version).
fn a_commit_through_the_mount_shows_in_stat_after_a_stat_during_it(args: &[&str]) {
    let m = Mounted::start(args);
    let s = m.new_session("a");
    m.save("a", b"version 1");
    let checkpoint = m.path(format!("{s}/session"));
    for round in 0..5 {
        assert!(!fs::read(&checkpoint).unwrap().is_empty());
        let reader = (round % 2 == 0).then(|| fs::File::open(&checkpoint).unwrap());
        let mut w = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&checkpoint)
            .unwrap();
        fs::metadata(&checkpoint).unwrap();
        let data = format!("version {round}, through the mount{}", "+".repeat(round));
        std::io::Write::write_all(&mut w, data.as_bytes()).unwrap();
        drop(w);
        drop(reader);
        m.wait_checkpoint("a", data.as_bytes());
        shows_size(
            "a commit through the mount, in stat",
            &checkpoint,
            data.len() as u64,
        );
    }
}

#[test]
fn a_commit_through_the_mount_shows_in_stat_after_a_stat_during_it_with_passthrough() {
    a_commit_through_the_mount_shows_in_stat_after_a_stat_during_it(&[]);
}

#[test]
fn a_commit_through_the_mount_shows_in_stat_after_a_stat_during_it_without_passthrough() {
    a_commit_through_the_mount_shows_in_stat_after_a_stat_during_it(&["--no-passthrough"]);
}

/// A `session` changed in place in the repository (not by a commit: shell
/// `>`, `truncate`) shows in `stat` through the mount too.
#[test]
fn session_changed_in_place_outside_shows_in_stat() {
    let m = Mounted::start(&[]);
    let s = m.new_session("a");
    m.save("a", b"version 1");
    let checkpoint = m.path(format!("{s}/session"));
    assert_eq!(fs::read(&checkpoint).unwrap(), b"version 1");
    assert_eq!(fs::metadata(&checkpoint).unwrap().len(), 9);
    fs::write(
        m.repo_path(format!("{s}/session")),
        b"rewritten in place, outside",
    )
    .unwrap();
    shows_size(
        "session rewritten in place outside, in stat",
        &checkpoint,
        27,
    );
    assert_eq!(
        fs::read(&checkpoint).unwrap(),
        b"rewritten in place, outside"
    );
    run(Command::new("truncate")
        .args(["-s", "5"])
        .arg(m.repo_path(format!("{s}/session"))))
    .assert_ok();
    shows_size("session truncated outside, in stat", &checkpoint, 5);
}
