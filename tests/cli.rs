//! The `sessionfs` command line, run as a separate process: every command's
//! normal use, the default repository location, and bad input (one clear
//! line on stderr, a distinct exit code, never a panic).

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::repo::{
    CliOutput, TestRepo, assert_no_next, assert_no_panic, id_of, pattern, run, scratch_dir,
    sessionfs_command, set_mtime,
};
use sessionfs::core::{BeginOptions, LAST_SESSION_LINK, Repository, SESSION_NEXT_FILE, Start};

const LOCKED: i32 = 3;
const NO_SUCH_SESSION: i32 = 4;
const USAGE: i32 = 2;
const FAILURE: i32 = 1;

/// `list`'s table as one map per session, keyed by the header's column
/// names (no cell but the last, TITLE, holds a space).
fn list_rows(t: &TestRepo) -> Vec<HashMap<String, String>> {
    parse_table(&t.cli(["list"]).assert_ok().stdout_text())
}

fn parse_table(text: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("list prints a header")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for col in ["ID", "SIZE", "LOCKED", "LAST"] {
        assert!(header.iter().any(|h| h == col), "no {col} column: {text}");
    }
    // Every cell but the last (TITLE, which may hold spaces) is one word.
    lines
        .map(|line| {
            let mut cells: Vec<&str> = Vec::new();
            let mut rest = line.trim_start();
            while cells.len() + 1 < header.len() && !rest.is_empty() {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                cells.push(&rest[..end]);
                rest = rest[end..].trim_start();
            }
            cells.push(rest);
            assert_eq!(cells.len(), header.len(), "ragged row {line:?} in {text}");
            header
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect()
        })
        .collect()
}

fn listed_ids(t: &TestRepo) -> Vec<String> {
    list_rows(t).into_iter().map(|r| r["ID"].clone()).collect()
}

fn id_str(s: &sessionfs::core::Storage) -> String {
    id_of(s)
}

// ---------------------------------------------------------------- default location

/// `sessionfs ARGS…` without `--repo`, in `cwd`, with exactly these
/// location variables.
fn cli_env(cwd: &Path, vars: &[(&str, Option<&OsStr>)], args: &[&str]) -> CliOutput {
    let mut cmd = sessionfs_command();
    cmd.current_dir(cwd)
        .env_remove("PLAINBOX_SESSION_REPOSITORY")
        .env_remove("XDG_CACHE_HOME")
        .args(args);
    for (k, v) in vars {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    run(cmd, None)
}

fn created_in(out: &CliOutput, dir: &Path) -> PathBuf {
    let id = out.stdout_text().trim().to_string();
    let session = dir.join(format!("{id}.session"));
    assert!(
        session.join("io-logs").is_dir(),
        "{} was not created",
        session.display()
    );
    session
}

#[test]
fn the_default_repository_is_plainbox_session_repository_made_absolute() {
    let dir = scratch_dir();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let home = dir.path().join("home");
    let xdg = dir.path().join("xdg");
    let vars = [
        ("PLAINBOX_SESSION_REPOSITORY", Some(OsStr::new("rel/repo"))),
        ("XDG_CACHE_HOME", Some(xdg.as_os_str())),
        ("HOME", Some(home.as_os_str())),
    ];
    let out = cli_env(&cwd, &vars, &["create"]);
    out.assert_ok();
    let session = created_in(&out, &cwd.join("rel/repo"));
    assert!(!xdg.exists() && !home.exists());
    // The same variables find it again.
    let listed = cli_env(&cwd, &vars, &["list"]).assert_ok().stdout_text();
    let id = session.file_stem().unwrap().to_str().unwrap();
    assert!(listed.contains(id), "{listed}");
    // `-v` says where it works.
    let out = cli_env(&cwd, &vars, &["-v", "list"]);
    out.assert_ok();
    assert!(
        out.stderr
            .contains(&cwd.join("rel/repo").display().to_string()),
        "{}",
        out.stderr
    );

    // Set but empty: the current directory, as plainbox's abspath('').
    let vars = [
        ("PLAINBOX_SESSION_REPOSITORY", Some(OsStr::new(""))),
        ("XDG_CACHE_HOME", Some(xdg.as_os_str())),
        ("HOME", Some(home.as_os_str())),
    ];
    let out = cli_env(&cwd, &vars, &["create"]);
    out.assert_ok();
    created_in(&out, &cwd);
    assert!(!xdg.exists() && !home.exists());
}

#[test]
fn the_default_repository_falls_back_to_xdg_cache_home_then_home() {
    let dir = scratch_dir();
    let home = dir.path().join("home");
    let xdg = dir.path().join("xdg");
    let cwd = dir.path();

    let out = cli_env(
        cwd,
        &[
            ("XDG_CACHE_HOME", Some(xdg.as_os_str())),
            ("HOME", Some(home.as_os_str())),
        ],
        &["create"],
    );
    out.assert_ok();
    created_in(&out, &xdg.join("plainbox/sessions"));
    assert!(!home.exists());

    for xdg_value in [None, Some(OsStr::new(""))] {
        let out = cli_env(
            cwd,
            &[
                ("XDG_CACHE_HOME", xdg_value),
                ("HOME", Some(home.as_os_str())),
            ],
            &["create"],
        );
        out.assert_ok();
        created_in(&out, &home.join(".cache/plainbox/sessions"));
    }
    assert_eq!(
        std::fs::read_dir(home.join(".cache/plainbox/sessions"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn the_repo_option_overrides_the_environment() {
    let t = TestRepo::new();
    let env_repo = t.outside("env-repo");
    let mut cmd = t.cli_command(["create"]);
    cmd.env("PLAINBOX_SESSION_REPOSITORY", &env_repo)
        .env("XDG_CACHE_HOME", t.outside("xdg"));
    let out = run(cmd, None);
    out.assert_ok();
    created_in(&out, t.path());
    assert_eq!(std::fs::read_dir(&env_repo).unwrap().count(), 0);
}

// ---------------------------------------------------------------- list

#[test]
fn list_shows_sessions_youngest_first_with_size_lock_and_last() {
    let t = TestRepo::new();
    // An empty or missing repository: just the header.
    assert!(list_rows(&t).is_empty());
    let missing = TestRepo::missing();
    assert!(list_rows(&missing).is_empty());
    assert!(!missing.path().exists(), "list created the repository");

    let now = SystemTime::now();
    let legacy = t.repo().create("pbox-", true).unwrap();
    let empty = t.mkdir_session("empty");
    let stale = t.mkdir_session("stale");
    let busy = t.mkdir_session("busy");
    std::fs::write(legacy.location().join("session"), vec![b'x'; 4096]).unwrap();
    std::fs::write(stale.join("session"), b"12345").unwrap();
    std::fs::write(stale.join(SESSION_NEXT_FILE), b"left over").unwrap();
    let busy_storage = t.repo().open(OsStr::new("busy")).unwrap();
    let writer = busy_storage.begin(BeginOptions::new(Start::Empty)).unwrap();
    // Not sessions: never shown.
    std::fs::write(t.path().join("file.session"), b"").unwrap();
    symlink(&empty, t.path().join("link.session")).unwrap();
    std::fs::create_dir(t.path().join(".hidden.session")).unwrap();

    set_mtime(&legacy.location(), now - Duration::from_secs(400));
    set_mtime(&empty, now - Duration::from_secs(100));
    set_mtime(&stale, now - Duration::from_secs(300));
    set_mtime(&busy, now - Duration::from_secs(200));

    let rows = list_rows(&t);
    let ids: Vec<&str> = rows.iter().map(|r| r["ID"].as_str()).collect();
    let legacy_id = id_str(&legacy);
    assert_eq!(ids, ["empty", "busy", "stale", legacy_id.as_str()]);
    let by_id: HashMap<&str, &HashMap<String, String>> =
        rows.iter().map(|r| (r["ID"].as_str(), r)).collect();

    assert_eq!(by_id["empty"]["SIZE"], "-");
    assert_eq!(by_id["stale"]["SIZE"], "5B");
    assert_eq!(by_id[legacy_id.as_str()]["SIZE"], "4.0K");

    assert_eq!(by_id["empty"]["LOCKED"], "-");
    assert_eq!(by_id["stale"]["LOCKED"], "stale");
    assert_eq!(by_id["busy"]["LOCKED"], "writing");
    assert_eq!(by_id[legacy_id.as_str()]["LOCKED"], "-");

    assert_eq!(by_id[legacy_id.as_str()]["LAST"], "yes");
    for id in ["empty", "stale", "busy"] {
        assert_eq!(by_id[id]["LAST"], "-", "{id}");
    }
    drop(writer);
    assert_eq!(
        list_rows(&t).iter().find(|r| r["ID"] == "busy").unwrap()["LOCKED"],
        "-"
    );
}

#[test]
fn list_survives_a_dangling_symlink() {
    let t = TestRepo::new();
    t.mkdir_session("a");
    symlink("/nonexistent/target", t.path().join("dangling.session")).unwrap();
    symlink("/nonexistent/target", t.path().join("dangling")).unwrap();
    assert_eq!(listed_ids(&t), ["a"]);
}

// ---------------------------------------------------------------- create

#[test]
fn create_prints_the_new_id() {
    let t = TestRepo::new();
    let out = t.cli(["create"]);
    out.assert_ok();
    let id = out.stdout_text().trim().to_string();
    assert!(id.starts_with("pbox-"), "{id}");
    assert_eq!(out.stdout_text(), format!("{id}\n"));
    assert!(t.path().join(format!("{id}.session/io-logs")).is_dir());
    assert_eq!(listed_ids(&t), std::slice::from_ref(&id));

    let out = t.cli(["create", "--prefix", "my app/"]);
    out.assert_ok();
    let id2 = out.stdout_text().trim().to_string();
    assert!(id2.starts_with("my_app_"), "{id2}");
    assert!(t.path().join(format!("{id2}.session")).is_dir());
    // Not legacy: no link.
    assert!(std::fs::symlink_metadata(t.path().join(LAST_SESSION_LINK)).is_err());
}

#[test]
fn create_makes_a_missing_repository() {
    let t = TestRepo::missing();
    let out = t.cli(["create"]);
    out.assert_ok();
    created_in(&out, t.path());
}

#[test]
fn create_legacy_replaces_the_last_session() {
    let t = TestRepo::new();
    let out = t.cli(["create", "--legacy"]);
    out.assert_ok();
    let first = created_in(&out, t.path());
    assert_eq!(
        std::fs::read_link(t.path().join(LAST_SESSION_LINK)).unwrap(),
        first
    );
    let out = t.cli(["create", "--legacy"]);
    out.assert_ok();
    let second = created_in(&out, t.path());
    assert!(!first.exists());
    assert_eq!(
        std::fs::read_link(t.path().join(LAST_SESSION_LINK)).unwrap(),
        second
    );
    let rows = list_rows(&t);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["LAST"], "yes");
}

#[test]
fn concurrent_create_processes_all_get_their_own_session() {
    let t = TestRepo::new();
    const N: usize = 10;
    let children: Vec<_> = (0..N)
        .map(|_| {
            t.cli_command(["create", "--prefix", "same-"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = common::repo::finish(c);
            out.assert_ok();
            out.stdout_text().trim().to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "duplicate ids");
    let mut listed = listed_ids(&t);
    listed.sort();
    assert_eq!(listed, ids);
}

// ---------------------------------------------------------------- cat and checkpoint

#[test]
fn checkpoint_from_a_file_and_cat_round_trip() {
    let t = TestRepo::new();
    let s = t.create();
    let id = id_str(&s);
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let input = t.root().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    let out = t.cli(["checkpoint", &id, input.to_str().unwrap()]);
    out.assert_ok();
    assert!(out.stdout.is_empty());
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), data);
    let out = t.cli(["cat", &id]);
    out.assert_ok();
    assert!(out.stdout == data);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn checkpoint_from_stdin() {
    let t = TestRepo::new();
    let s = t.create();
    let id = id_str(&s);
    t.cli_stdin(["checkpoint", &id], b"implicit stdin")
        .assert_ok();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"implicit stdin");
    t.cli_stdin(["checkpoint", &id, "-"], b"dash").assert_ok();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"dash");
    // Large, through a pipe.
    let big = pattern(5, 8 << 20);
    t.cli_stdin(["checkpoint", &id], &big).assert_ok();
    assert_no_next(&s);
    assert!(s.load().unwrap() == big);
    let out = t.cli(["cat", &id]);
    out.assert_ok();
    assert!(out.stdout == big, "cat of 8 MiB differs");
    // Empty input is an empty checkpoint.
    t.cli_stdin(["checkpoint", &id], b"").assert_ok();
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"");
    assert!(s.location().join("session").exists());
}

#[test]
fn cat_of_a_session_without_checkpoint_prints_nothing() {
    let t = TestRepo::new();
    let s = t.create();
    let out = t.cli(["cat", &id_str(&s)]);
    out.assert_ok();
    assert!(out.stdout.is_empty());
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn cat_into_a_closed_pipe_is_not_an_error() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(&pattern(1, 4 << 20)).unwrap();
    assert_no_next(&s);
    let mut child = t
        .cli_command(["cat", &id_str(&s)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // like `| head -c 10`
    let out = common::repo::finish(child);
    assert_no_panic(&out.stderr);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn a_failed_checkpoint_keeps_the_previous_one() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let id = id_str(&s);
    let missing = t.root().join("no-such-input");
    let line = t
        .cli(["checkpoint", &id, missing.to_str().unwrap()])
        .assert_error(FAILURE);
    assert!(line.contains(&missing.display().to_string()), "{line}");
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"previous");
    // An input that cannot be read (a directory) fails mid-stream.
    let dir = t.outside("a-directory");
    let line = t
        .cli(["checkpoint", &id, dir.to_str().unwrap()])
        .assert_error(FAILURE);
    assert!(line.contains(&dir.display().to_string()), "{line}");
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"previous");
}

#[test]
fn a_locked_session_gets_the_locked_exit_code() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"previous").unwrap();
    let id = id_str(&s);
    std::fs::write(s.location().join(SESSION_NEXT_FILE), b"stale").unwrap();
    let line = t
        .cli_stdin(["checkpoint", &id], b"new")
        .assert_error(LOCKED);
    assert!(line.contains("locked"), "{line}");
    assert!(line.contains(SESSION_NEXT_FILE), "{line}");
    assert_eq!(
        std::fs::read(s.location().join(SESSION_NEXT_FILE)).unwrap(),
        b"stale"
    );
    assert_eq!(s.load().unwrap(), b"previous");
    // cat still reads the last checkpoint.
    let out = t.cli(["cat", &id]);
    out.assert_ok();
    assert_eq!(out.stdout, b"previous");
}

// ---------------------------------------------------------------- remove, break-lock, gc

#[test]
fn remove_deletes_sessions_and_reports_unknown_ones() {
    let t = TestRepo::new();
    let a = t.create();
    let b = t.create();
    let c = t.create();
    let canary_dir = t.outside("outside");
    std::fs::write(canary_dir.join("canary"), b"alive").unwrap();
    symlink(&canary_dir, a.location().join("escape")).unwrap();

    t.cli(["remove", &id_str(&a), &id_str(&b)]).assert_ok();
    assert!(!a.location().exists() && !b.location().exists());
    assert_eq!(std::fs::read(canary_dir.join("canary")).unwrap(), b"alive");
    assert_eq!(listed_ids(&t), [id_str(&c)]);

    // One unknown among known ones: the known ones go, one error line.
    let d = t.create();
    let line = t
        .cli(["remove", "nope", &id_str(&d)])
        .assert_error(NO_SUCH_SESSION);
    assert!(line.contains("nope"), "{line}");
    assert!(!d.location().exists());
    assert!(c.location().exists());
}

#[test]
fn remove_never_follows_a_symlinked_session() {
    let t = TestRepo::new();
    let target = t.outside("target.session");
    std::fs::write(target.join("canary"), b"alive").unwrap();
    symlink(&target, t.path().join("evil.session")).unwrap();
    t.cli(["remove", "evil"]).assert_error(NO_SUCH_SESSION);
    assert_eq!(std::fs::read(target.join("canary")).unwrap(), b"alive");
    assert!(std::fs::symlink_metadata(t.path().join("evil.session")).is_ok());
}

#[test]
fn break_lock_removes_stale_locks_and_refuses_live_ones() {
    let t = TestRepo::new();
    let s = t.create();
    s.save(b"kept").unwrap();
    let id = id_str(&s);
    let next = s.location().join(SESSION_NEXT_FILE);

    // Not locked: nothing to do, success.
    let out = t.cli(["break-lock", &id]);
    out.assert_ok();
    assert!(out.stderr.contains("not locked"), "{}", out.stderr);

    // Stale.
    std::fs::write(&next, b"stale").unwrap();
    let out = t.cli(["break-lock", &id]);
    out.assert_ok();
    assert!(!next.exists());
    assert_eq!(s.load().unwrap(), b"kept");

    // Live, held by a writer in this process.
    let mut w = s.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"live", 0).unwrap();
    let line = t.cli(["break-lock", &id]).assert_error(LOCKED);
    assert!(line.contains("--force"), "{line}");
    assert!(next.exists());
    t.cli(["break-lock", "--force", &id]).assert_ok();
    assert!(!next.exists());
    assert!(w.commit().is_err(), "a broken writer must not commit");
    assert_eq!(s.load().unwrap(), b"kept");
    assert_no_next(&s);

    t.cli(["break-lock", "nope"]).assert_error(NO_SUCH_SESSION);
}

#[test]
fn gc_removes_old_sessions_and_dry_run_only_tells() {
    let t = TestRepo::new();
    let now = SystemTime::now();
    let old = t.mkdir_session("old");
    let older = t.mkdir_session("older");
    let young = t.mkdir_session("young");
    set_mtime(&old, now - Duration::from_secs(3 * 86_400));
    set_mtime(&older, now - Duration::from_secs(10 * 86_400));
    set_mtime(&young, now - Duration::from_secs(3600));

    let out = t.cli(["gc", "--older-than", "2d", "--dry-run"]);
    out.assert_ok();
    let mut lines: Vec<String> = out.stdout_text().lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["would remove old", "would remove older"]);
    assert!(old.exists() && older.exists() && young.exists());

    let out = t.cli(["gc", "--older-than", "1w"]);
    out.assert_ok();
    assert_eq!(out.stdout_text(), "removed older\n");
    assert!(!older.exists() && old.exists());

    let out = t.cli(["gc", "--older-than", "1d12h"]);
    out.assert_ok();
    assert_eq!(out.stdout_text(), "removed old\n");
    assert_eq!(listed_ids(&t), ["young"]);

    let out = t.cli(["gc", "--older-than", "30d"]);
    out.assert_ok();
    assert!(out.stdout.is_empty());

    // A bad duration is a usage error.
    let out = t.cli(["gc", "--older-than", "3 fortnights"]);
    assert_eq!(out.code, Some(USAGE), "{out:?}");
    assert_no_panic(&out.stderr);
    assert!(young.exists());
}

#[test]
fn concurrent_gc_runs_and_listings_do_not_fail() {
    let t = TestRepo::new();
    let past = SystemTime::now() - Duration::from_secs(7 * 86_400);
    for i in 0..60 {
        let dir = t.mkdir_session(&format!("old-{i:02}"));
        std::fs::create_dir(dir.join("io-logs")).unwrap();
        std::fs::write(dir.join("session"), b"x").unwrap();
        set_mtime(&dir, past);
    }
    let spawn = |args: &[&str]| {
        t.cli_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = vec![
        spawn(&["gc", "--older-than", "1d"]),
        spawn(&["list"]),
        spawn(&["gc", "--older-than", "1d"]),
        spawn(&["list"]),
        spawn(&["gc", "--older-than", "1d"]),
    ];
    let mut removed = Vec::new();
    for child in children {
        let out = common::repo::finish(child);
        out.assert_ok();
        removed.extend(
            out.stdout_text()
                .lines()
                .filter_map(|l| l.strip_prefix("removed ").map(str::to_string)),
        );
    }
    removed.sort();
    let n = removed.len();
    removed.dedup();
    assert_eq!(n, removed.len(), "a session was reported removed twice");
    assert_eq!(removed.len(), 60);
    assert!(listed_ids(&t).is_empty());
}

#[test]
fn relative_repository_paths_work_with_legacy_sessions() {
    let t = TestRepo::new();
    for (cwd, repo) in [(t.path().to_path_buf(), "."), (t.outside("sub"), "../repo")] {
        let mut cmd = sessionfs_command();
        cmd.current_dir(&cwd)
            .args(["--repo", repo, "create", "--legacy"]);
        let out = run(cmd, None);
        out.assert_ok();
        let id = out.stdout_text().trim().to_string();
        assert!(t.path().join(format!("{id}.session")).is_dir());
        let mut cmd = sessionfs_command();
        cmd.current_dir(&cwd).args(["--repo", repo, "list"]);
        let rows = parse_table(&run(cmd, None).assert_ok().stdout_text());
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["ID"], id);
        assert_eq!(rows[0]["LAST"], "yes");
        // The link works from anywhere.
        let target = std::fs::read_link(t.path().join(LAST_SESSION_LINK)).unwrap();
        assert!(target.is_absolute());
        assert!(target.join("io-logs").is_dir());
    }
}

// ---------------------------------------------------------------- bad input

#[test]
fn unknown_ids_exit_4_with_one_line() {
    let t = TestRepo::new();
    t.create();
    for args in [
        vec!["cat", "nope"],
        vec!["checkpoint", "nope"],
        vec!["remove", "nope"],
        vec!["break-lock", "nope"],
    ] {
        let line = t.cli_stdin(&args, b"data").assert_error(NO_SUCH_SESSION);
        assert!(line.contains("nope.session"), "{args:?}: {line}");
    }
    assert!(!t.path().join("nope.session").exists());
}

#[test]
fn ids_that_escape_the_repository_are_usage_errors() {
    let t = TestRepo::new();
    let outside = t.root().join("x.session");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("session"), b"outside").unwrap();
    for bad in ["../x", "a/b", "..", ".", "", ".hidden", "/etc/passwd"] {
        for cmd in ["cat", "checkpoint", "remove", "break-lock"] {
            let line = t.cli_stdin([cmd, bad], b"evil").assert_error(USAGE);
            assert!(
                line.contains("invalid session name"),
                "{cmd} {bad:?}: {line}"
            );
        }
    }
    assert_eq!(std::fs::read(outside.join("session")).unwrap(), b"outside");
    assert!(!outside.join(SESSION_NEXT_FILE).exists());
}

#[test]
fn a_repository_that_is_a_file_is_reported() {
    let t = TestRepo::missing();
    std::fs::write(t.path(), b"not a directory").unwrap();
    for args in [
        vec!["list"],
        vec!["create"],
        vec!["cat", "x"],
        vec!["checkpoint", "x"],
        vec!["gc", "--older-than", "1d"],
    ] {
        let line = t.cli_stdin(&args, b"").assert_error(FAILURE);
        assert!(
            line.contains(&t.path().display().to_string()) && line.contains("not a directory"),
            "{args:?}: {line}"
        );
    }
    // Below a file.
    let below = t.path().join("sub");
    let mut cmd = sessionfs_command();
    cmd.arg("--repo").arg(&below).arg("list");
    let line = run(cmd, None).assert_error(FAILURE);
    assert!(line.contains(&below.display().to_string()), "{line}");
    assert_eq!(std::fs::read(t.path()).unwrap(), b"not a directory");
}

#[test]
fn usage_errors_exit_2_without_panicking() {
    let t = TestRepo::new();
    for args in [
        vec!["frobnicate"],
        vec!["cat"],
        vec!["remove"],
        vec!["gc"],
        vec!["create", "--bogus"],
    ] {
        let out = t.cli(&args);
        assert_eq!(out.code, Some(USAGE), "{args:?}: {out:?}");
        assert_no_panic(&out.stderr);
        assert!(!out.stderr.is_empty());
    }
    // A prefix too long for a file name is refused, creating nothing.
    let long = "p".repeat(300);
    let line = t.cli(["create", "--prefix", &long]).assert_error(USAGE);
    assert!(line.contains("255"), "{line}");
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    let out = t.cli(["--help"]);
    out.assert_ok();
    assert!(out.stdout_text().contains("Exit status"));
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = scratch_dir();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs (these tests run as root)"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "cannot remount read-only");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn an_unwritable_repository_is_reported_clearly() {
    let fs = Tmpfs::mount();
    let location = fs.path().join("repo");
    let repo = Repository::new(&location);
    let s = repo.create("pbox-", false).unwrap();
    s.save(b"before").unwrap();
    fs.remount_read_only();
    let id = id_str(&s);
    let cli = |args: &[&str], input: &[u8]| {
        let mut cmd = sessionfs_command();
        cmd.arg("--repo").arg(&location).args(args);
        run(cmd, Some(input))
    };

    // Reading still works.
    let out = cli(&["list"], b"");
    out.assert_ok();
    assert!(out.stdout_text().contains(&id));
    let out = cli(&["cat", &id], b"");
    out.assert_ok();
    assert_eq!(out.stdout, b"before");

    // Writing fails with one line naming the place and the reason.
    for args in [
        vec!["create"],
        vec!["checkpoint", id.as_str()],
        vec!["remove", id.as_str()],
    ] {
        let line = cli(&args, b"after").assert_error(FAILURE);
        assert!(
            line.contains(&location.display().to_string()),
            "{args:?}: {line}"
        );
        assert!(line.contains("Read-only file system"), "{args:?}: {line}");
    }
    assert_eq!(s.load().unwrap(), b"before");
    assert_no_next(&s);
}

#[test]
fn a_full_disk_fails_the_checkpoint_and_keeps_the_previous_one() {
    let fs = Tmpfs::mount();
    let location = fs.path().join("repo");
    let repo = Repository::new(&location);
    let s = repo.create("pbox-", false).unwrap();
    s.save(b"before").unwrap();
    let mut cmd = sessionfs_command();
    cmd.arg("--repo")
        .arg(&location)
        .args(["checkpoint", &id_str(&s)]);
    let line = run(cmd, Some(&pattern(2, 6 << 20))).assert_error(FAILURE);
    assert!(line.contains("No space left on device"), "{line}");
    assert!(
        line.contains(&s.location().display().to_string()),
        "the error names the session: {line}"
    );
    assert_no_next(&s);
    assert_eq!(s.load().unwrap(), b"before");
}

#[test]
fn ids_with_control_characters_and_bad_bytes_are_printed_escaped_and_accepted_back() {
    use std::os::unix::ffi::OsStrExt;
    let t = TestRepo::new();
    let raw: &[u8] = b"evil\n\x1b[2J\xff name";
    let dir = t
        .path()
        .join(std::ffi::OsStr::from_bytes(&[raw, b".session"].concat()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("session"), b"payload").unwrap();
    let printed = "evil\\n\\033[2J\\377\\ name";

    let out = t.cli(["list"]);
    out.assert_ok();
    let table = out.stdout_text();
    assert_eq!(table.lines().count(), 2, "one line per session: {table:?}");
    assert!(table.contains(printed), "{table}");
    assert!(!table.contains('\x1b'), "a raw escape reached the terminal");

    // Every command takes the id as it was printed.
    let out = t.cli(["cat", printed]);
    out.assert_ok();
    assert_eq!(out.stdout, b"payload");
    t.cli_stdin(["checkpoint", printed], b"second").assert_ok();
    assert_eq!(std::fs::read(dir.join("session")).unwrap(), b"second");

    // JSON keeps it lossless: the escaped form, marked as such.
    let out = t.cli(["list", "--json"]);
    out.assert_ok();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["id"], printed);
    assert_eq!(rows[0]["id_escaped"], true);

    t.cli(["remove", printed]).assert_ok();
    assert!(!dir.exists());
}

#[test]
fn a_utf8_id_with_a_newline_is_plain_in_json() {
    let t = TestRepo::new();
    let dir = t.path().join("two\nlines.session");
    std::fs::create_dir(&dir).unwrap();
    let out = t.cli(["list", "--json"]);
    out.assert_ok();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["id"], "two\nlines");
    assert!(rows[0].get("id_escaped").is_none());
    // The raw id works too.
    t.cli(["cat", "two\nlines"]).assert_ok();
}
