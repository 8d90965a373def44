//! Compatibility with the real plainbox 0.38 (driven through
//! tests/compat/plainbox_tool.py): both work on the same repository — the
//! same sessions, ids and order, checkpoints, last-session link and lock.
//!
//! The Python comes from `$PLAINBOX_PYTHON` (set by scripts/test.sh), else
//! `.venv-plainbox/bin/python` in the project. Without a working one these
//! tests fail: they are never skipped.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use common::repo::{CliOutput, TestRepo, assert_no_next, id_of, pattern, run, set_mtime};
use sessionfs::core::{BeginOptions, LAST_SESSION_LINK, SESSION_NEXT_FILE, Start};

fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/plainbox_tool.py")
}

fn python_works(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import plainbox.impl.session.storage"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Python with plainbox installed; fails the test when there is none.
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let mut tried = Vec::new();
        if let Some(p) = std::env::var_os("PLAINBOX_PYTHON") {
            let p = PathBuf::from(p);
            if python_works(&p) {
                return Ok(p);
            }
            tried.push(format!("$PLAINBOX_PYTHON={}", p.display()));
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-plainbox/bin/python");
        if python_works(&venv) {
            return Ok(venv);
        }
        tried.push(venv.display().to_string());
        Err(format!(
            "no Python with plainbox 0.38 found (tried {}): run scripts/test.sh, which \
             installs it and sets PLAINBOX_PYTHON",
            tried.join(", ")
        ))
    });
    match found {
        Ok(p) => p,
        Err(msg) => panic!("{msg}"),
    }
}

/// Runs `plainbox_tool.py ARGS…`.
fn plainbox<I, S>(args: I) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(python());
    cmd.arg(tool()).args(args);
    run(cmd, None)
}

fn plainbox_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = plainbox(args);
    assert_eq!(out.code, Some(0), "plainbox failed: {out:?}");
    out.stdout_text()
}

fn repo_arg(t: &TestRepo) -> &str {
    t.path().to_str().unwrap()
}

/// Creates a session with plainbox; returns its id.
fn plainbox_create(t: &TestRepo, extra: &[&str]) -> String {
    let mut args = vec!["create", repo_arg(t)];
    args.extend_from_slice(extra);
    let out = plainbox_ok(args);
    let path = PathBuf::from(out.trim());
    assert_eq!(path.parent().unwrap(), t.path(), "{out}");
    let name = path.file_name().unwrap().to_str().unwrap();
    name.strip_suffix(".session").unwrap().to_string()
}

fn plainbox_ids(t: &TestRepo) -> Vec<String> {
    plainbox_ok(["list", repo_arg(t)])
        .lines()
        .map(str::to_string)
        .collect()
}

fn plainbox_last(t: &TestRepo) -> Option<String> {
    let out = plainbox_ok(["last", repo_arg(t)]);
    let id = out.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// `sessionfs list` as (id, LAST column) pairs, in order.
fn cli_list(t: &TestRepo) -> Vec<(String, String)> {
    let text = t.cli(["list"]).assert_ok().stdout_text();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let id_col = header.iter().position(|h| *h == "ID").unwrap();
    let last_col = header.iter().position(|h| *h == "LAST").unwrap();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[id_col].to_string(), cells[last_col].to_string())
        })
        .collect()
}

fn cli_ids(t: &TestRepo) -> Vec<String> {
    cli_list(t).into_iter().map(|(id, _)| id).collect()
}

fn cli_create(t: &TestRepo, extra: &[&str]) -> String {
    let mut args = vec!["create"];
    args.extend_from_slice(extra);
    t.cli(args).assert_ok().stdout_text().trim().to_string()
}

#[test]
fn sessions_created_by_plainbox_are_listed_with_the_same_ids_and_order() {
    let t = TestRepo::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(plainbox_create(&t, &[]));
    }
    ids.push(plainbox_create(&t, &["--prefix", "other app/"]));
    ids.push(cli_create(&t, &[]));
    ids.push(cli_create(&t, &["--prefix", "other app/"]));
    // Give them distinct ages so the order is well defined.
    let now = SystemTime::now();
    for (i, id) in ids.iter().enumerate() {
        let age = Duration::from_secs(60 * ((i as u64 * 7) % 6 + 1));
        set_mtime(&t.path().join(format!("{id}.session")), now - age);
    }
    // Things neither lists.
    std::fs::write(t.path().join("file.session"), b"").unwrap();
    std::fs::create_dir(t.path().join(".hidden.session")).unwrap();
    std::fs::create_dir(t.path().join("plain-dir")).unwrap();

    let theirs = plainbox_ids(&t);
    let ours = cli_ids(&t);
    assert_eq!(ours, theirs);
    let mut sorted = ours.clone();
    sorted.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(sorted, expected);
    // Same slug for the same prefix.
    assert!(ids[3].starts_with("other_app_"), "{}", ids[3]);
    assert!(ids[5].starts_with("other_app_"), "{}", ids[5]);
    // The library agrees with the command line.
    let lib: Vec<String> = t
        .repo()
        .list()
        .unwrap()
        .iter()
        .map(|e| id_of(&e.storage))
        .collect();
    assert_eq!(lib, theirs);
}

#[test]
fn name_clashes_are_resolved_the_same_way() {
    let t = TestRepo::new();
    // Two plainbox sessions and two of ours, most likely within one second:
    // every name is distinct, and plainbox sees ours.
    let a = plainbox_create(&t, &["--prefix", "x-"]);
    let b = cli_create(&t, &["--prefix", "x-"]);
    let c = plainbox_create(&t, &["--prefix", "x-"]);
    let d = cli_create(&t, &["--prefix", "x-"]);
    let mut all = vec![a, b, c, d];
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4);
    let mut theirs = plainbox_ids(&t);
    theirs.sort();
    assert_eq!(theirs, all);
    for id in &all {
        let base = id.split("_(").next().unwrap();
        assert!(
            base.starts_with("x-") && base.len() == "x-".len() + 19,
            "{id}"
        );
    }
}

#[test]
fn checkpoints_saved_by_plainbox_are_read_by_sessionfs() {
    let t = TestRepo::new();
    let id = plainbox_create(&t, &[]);
    // No checkpoint yet: both read nothing.
    assert!(plainbox_ok(["load", repo_arg(&t), &id]).is_empty());
    let out = t.cli(["cat", &id]);
    out.assert_ok();
    assert!(out.stdout.is_empty());

    for data in [
        b"{\"plainbox\": \"json\"}".to_vec(),
        (0..=255u8).cycle().take(100_000).collect::<Vec<u8>>(),
        pattern(11, 1 << 20),
    ] {
        let input = t.root().join("input");
        std::fs::write(&input, &data).unwrap();
        plainbox_ok(["save", repo_arg(&t), &id, input.to_str().unwrap()]);
        let out = t.cli(["cat", &id]);
        out.assert_ok();
        assert!(out.stdout == data, "cat differs from plainbox's save");
        let storage = t.repo().open(OsStr::new(&id)).unwrap();
        assert!(storage.load().unwrap() == data);
        assert_no_next(&storage);
    }
}

#[test]
fn checkpoints_saved_by_sessionfs_are_loaded_by_plainbox() {
    let t = TestRepo::new();
    for id in [cli_create(&t, &[]), plainbox_create(&t, &[])] {
        for data in [
            b"hello plainbox".to_vec(),
            (0..=255u8).rev().cycle().take(65_537).collect::<Vec<u8>>(),
            pattern(12, 2 << 20),
            Vec::new(),
        ] {
            t.cli_stdin(["checkpoint", &id], &data).assert_ok();
            let storage = t.repo().open(OsStr::new(&id)).unwrap();
            assert_no_next(&storage);
            let out = plainbox(["load", repo_arg(&t), &id]);
            assert_eq!(out.code, Some(0), "{out:?}");
            assert!(out.stdout == data, "plainbox loads something else");
        }
        // The library's save too.
        let storage = t.repo().open(OsStr::new(&id)).unwrap();
        storage.save(b"from the library").unwrap();
        assert_no_next(&storage);
        let out = plainbox(["load", repo_arg(&t), &id]);
        assert_eq!(out.stdout, b"from the library");
    }
}

#[test]
fn the_legacy_last_session_is_shared() {
    let t = TestRepo::new();
    // plainbox's legacy session shows as LAST in our listing.
    let p1 = plainbox_create(&t, &["--legacy"]);
    let other = cli_create(&t, &[]);
    let rows = cli_list(&t);
    for (id, last) in &rows {
        let expected = if *id == p1 { "yes" } else { "-" };
        assert_eq!(last, expected, "{id}: {rows:?}");
    }
    assert_eq!(
        t.repo().last_session().unwrap().map(|s| id_of(&s)),
        Some(p1.clone())
    );

    // Our legacy create replaces plainbox's legacy session, and plainbox
    // follows the new link.
    let s1 = cli_create(&t, &["--legacy"]);
    assert!(!t.path().join(format!("{p1}.session")).exists());
    assert_eq!(plainbox_last(&t), Some(s1.clone()));
    let link = std::fs::read_link(t.path().join(LAST_SESSION_LINK)).unwrap();
    assert!(link.is_absolute(), "{}", link.display());

    // plainbox's next legacy create removes ours through that link (an
    // absolute link works from any working directory).
    let p2 = plainbox_create(&t, &["--legacy"]);
    assert!(!t.path().join(format!("{s1}.session")).exists());
    assert_eq!(plainbox_last(&t), Some(p2.clone()));
    let rows = cli_list(&t);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.contains(&(p2.clone(), "yes".to_string())), "{rows:?}");
    assert!(rows.contains(&(other.clone(), "-".to_string())), "{rows:?}");

    // A relative link, as another tool may write it: both resolve it
    // against the repository.
    std::fs::remove_file(t.path().join(LAST_SESSION_LINK)).unwrap();
    std::os::unix::fs::symlink(format!("{other}.session"), t.path().join(LAST_SESSION_LINK))
        .unwrap();
    assert_eq!(plainbox_last(&t), Some(other.clone()));
    let rows = cli_list(&t);
    assert!(
        rows.contains(&(other.clone(), "yes".to_string())),
        "{rows:?}"
    );
}

#[test]
fn a_sessionfs_writer_locks_out_plainbox() {
    let t = TestRepo::new();
    let id = plainbox_create(&t, &[]);
    let storage = t.repo().open(OsStr::new(&id)).unwrap();
    storage.save(b"committed").unwrap();
    let input = t.root().join("input");
    std::fs::write(&input, b"from plainbox").unwrap();

    let mut w = storage.begin(BeginOptions::new(Start::Empty)).unwrap();
    w.write_at(b"being written", 0).unwrap();
    let out = plainbox(["save", repo_arg(&t), &id, input.to_str().unwrap()]);
    assert_eq!(out.code, Some(3), "plainbox was not locked out: {out:?}");
    assert_eq!(out.stdout_text().trim(), "locked");
    // plainbox's attempt left our lock and checkpoint alone.
    assert_eq!(storage.load().unwrap(), b"committed");
    w.write_at(b"!", 13).unwrap();
    w.commit().unwrap();
    assert_no_next(&storage);
    assert_eq!(
        plainbox_ok(["load", repo_arg(&t), &id]).as_bytes(),
        b"being written!"
    );

    // Once we are done, plainbox saves normally.
    plainbox_ok(["save", repo_arg(&t), &id, input.to_str().unwrap()]);
    assert_eq!(storage.load().unwrap(), b"from plainbox");
    assert_no_next(&storage);
}

#[test]
fn a_lock_left_by_plainbox_locks_out_sessionfs() {
    let t = TestRepo::new();
    let id = plainbox_create(&t, &[]);
    let input = t.root().join("input");
    std::fs::write(&input, b"plainbox data").unwrap();
    plainbox_ok(["save", repo_arg(&t), &id, input.to_str().unwrap()]);
    let storage = t.repo().open(OsStr::new(&id)).unwrap();
    // What an interrupted plainbox save leaves: a plain session.next, with
    // no lock on it.
    let next = storage.location().join(SESSION_NEXT_FILE);
    std::fs::write(&next, b"plainbox partial").unwrap();

    let line = t.cli_stdin(["checkpoint", &id], b"ours").assert_error(3);
    assert!(line.contains("locked"), "{line}");
    assert_eq!(std::fs::read(&next).unwrap(), b"plainbox partial");
    // plainbox is locked out by it too.
    let out = plainbox(["save", repo_arg(&t), &id, input.to_str().unwrap()]);
    assert_eq!(out.code, Some(3), "{out:?}");
    let rows = t.cli(["list"]).assert_ok().stdout_text();
    assert!(rows.contains("stale"), "{rows}");

    // Our break-lock clears it, and both can save again.
    t.cli(["break-lock", &id]).assert_ok();
    assert_no_next(&storage);
    assert_eq!(storage.load().unwrap(), b"plainbox data");
    t.cli_stdin(["checkpoint", &id], b"ours").assert_ok();
    assert_eq!(plainbox_ok(["load", repo_arg(&t), &id]), "ours");

    // And plainbox's break-lock clears a lock our killed writer left.
    std::fs::write(&next, b"our partial").unwrap();
    plainbox_ok(["break-lock", repo_arg(&t), &id]);
    assert_no_next(&storage);
    t.cli_stdin(["checkpoint", &id], b"again").assert_ok();
    assert_no_next(&storage);
}

#[test]
fn sessions_removed_by_one_are_gone_for_the_other() {
    let t = TestRepo::new();
    let ours = cli_create(&t, &[]);
    let theirs = plainbox_create(&t, &[]);
    std::fs::write(t.path().join(format!("{ours}.session/io-logs/log")), b"x").unwrap();
    plainbox_ok(["remove", repo_arg(&t), &ours]);
    assert_eq!(cli_ids(&t), std::slice::from_ref(&theirs));
    t.cli(["remove", &theirs]).assert_ok();
    assert!(plainbox_ids(&t).is_empty());
    assert!(cli_ids(&t).is_empty());
}
