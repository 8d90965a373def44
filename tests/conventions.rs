//! The conventions people expect of a tool they run on real systems:
//! `sessionfs list` as a table and as JSON, shell completions and manual
//! pages generated from the command line definitions, `scripts/install.sh`,
//! `mount -t fuse.sessionfs` and /etc/fstab lines (through the
//! `mount.fuse.sessionfs` helper, and through fuse3's `mount.fuse`), and the
//! background daemon's `log_file`, with one line per refusal.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use common::mount::{BIN, errno_of, is_mounted, require_fuse, run};
use common::repo::{TestRepo, set_mtime};
use tempfile::TempDir;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
const DEMO_ID: &str = "pbox-2026-11-22T02.28.00";

fn cli(repo: &TestRepo, args: &[&str]) -> common::repo::CliOutput {
    common::repo::run(repo.cli_command(args), None)
}

fn sessionfs(args: &[&str]) -> common::mount::Ran {
    run(Command::new(BIN).args(args))
}

fn scratch() -> TempDir {
    common::mount::scratch("sessionfs-conventions")
}

// ----- list ---------------------------------------------------------------

#[test]
fn list_prints_an_aligned_table_and_json_for_scripts() {
    let repo = TestRepo::new();
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    let newest = repo.mkdir_session("pbox-2026-01-02T03.04.05");
    fs::write(newest.join("session"), vec![7u8; 4096]).unwrap();
    let stale = repo.mkdir_session("zz-custom");
    fs::write(stale.join("session.next"), b"partial").unwrap();
    let oldest = repo.mkdir_session("aa-2025-12-31T23.59.59_(2)");
    fs::write(oldest.join("session"), b"x").unwrap();
    set_mtime(&newest, now - hour);
    set_mtime(&stale, now - 2 * hour);
    set_mtime(&oldest, now - 3 * hour);
    std::os::unix::fs::symlink(&oldest, repo.path().join("last-session")).unwrap();

    let out = cli(&repo, &["list"]);
    out.assert_ok();
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "CREATED", "MODIFIED", "SIZE", "LOCKED", "LAST", "STATUS", "PROGRESS", "RUNNING",
            "TITLE"
        ],
        "{text}"
    );
    // Youngest first; columns start at the same place on every line.
    assert!(lines[1].starts_with("pbox-2026-01-02T03.04.05 "), "{text}");
    assert!(lines[2].starts_with("zz-custom "), "{text}");
    assert!(
        lines[3].starts_with("aa-2025-12-31T23.59.59_(2) "),
        "{text}"
    );
    let created_col = lines[0].find("CREATED").unwrap();
    assert_eq!(
        lines[1].find("2026-01-02T03:04:05Z"),
        Some(created_col),
        "{text}"
    );
    assert_eq!(
        lines[3].find("2025-12-31T23:59:59Z"),
        Some(created_col),
        "{text}"
    );
    let modified_col = lines[0].find("MODIFIED").unwrap();
    for l in &lines[1..] {
        assert_eq!(&l[modified_col + 19..modified_col + 20], "Z", "{text}");
    }
    let words = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    // No Checkbox checkpoint: dashes for its status, progress, running job
    // and title.
    assert_eq!(
        words(lines[1])[3..],
        ["4.0K", "-", "-", "-", "-", "-", "-"],
        "{text}"
    );
    assert_eq!(words(lines[2])[3..6], ["-", "stale", "-"], "{text}");
    assert_eq!(words(lines[3])[3..6], ["1B", "-", "yes"], "{text}");

    let out = cli(&repo, &["list", "--json"]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3);
    let first = &items[0];
    assert_eq!(first["id"], "pbox-2026-01-02T03.04.05");
    assert_eq!(
        first["path"],
        newest.to_str().unwrap(),
        "the session directory's path"
    );
    assert_eq!(first["created"], "2026-01-02T03:04:05Z");
    assert!(first["modified"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["size"], 4096);
    assert_eq!(first["locked"], "no");
    assert_eq!(first["last"], false);
    assert_eq!(items[1]["size"], serde_json::Value::Null);
    assert_eq!(items[1]["locked"], "stale");
    assert_eq!(items[2]["last"], true);
    // The custom name carries no time: its creation time is the directory's.
    assert!(items[1]["created"].as_str().unwrap().len() == 20);

    let ids = |args: &[&str]| -> Vec<String> {
        let out = cli(&repo, args);
        out.assert_ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&["list", "--json", "--sort", "name"]),
        [
            "aa-2025-12-31T23.59.59_(2)",
            "pbox-2026-01-02T03.04.05",
            "zz-custom"
        ]
    );
    assert_eq!(
        ids(&["list", "--json", "--sort", "age"]),
        [
            "pbox-2026-01-02T03.04.05",
            "zz-custom",
            "aa-2025-12-31T23.59.59_(2)"
        ]
    );
    assert_eq!(cli(&repo, &["list", "--sort", "size"]).code, Some(2));

    let empty = TestRepo::new();
    let out = cli(&empty, &["list", "--json"]);
    out.assert_ok();
    assert_eq!(out.stdout_text().trim(), "[]");
}

// ----- completions and manual pages ---------------------------------------

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let ran = sessionfs(&["completions", shell]);
        let script = String::from_utf8(ran.assert_ok().to_vec()).unwrap();
        for word in ["mount", "unmount", "list", "break-lock", "decode", "json"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    // The bash script is valid bash.
    let dir = scratch();
    let script = dir.path().join("sessionfs.bash");
    fs::write(&script, sessionfs(&["completions", "bash"]).assert_ok()).unwrap();
    run(Command::new("bash").arg("-n").arg(&script)).assert_ok();
    // And completes a subcommand.
    let ran = run(Command::new("bash").arg("-c").arg(format!(
        "source {}; COMP_WORDS=(sessionfs unmo); COMP_CWORD=1; _sessionfs sessionfs unmo sessionfs; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    )));
    assert!(ran.stdout_text().lines().any(|l| l == "unmount"), "{ran:?}");

    let ran = sessionfs(&["completions", "tcsh"]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
}

#[test]
fn the_manual_pages_are_roff_and_describe_mounting() {
    let ran = sessionfs(&["man"]);
    let page = String::from_utf8(ran.assert_ok().to_vec()).unwrap();
    assert!(
        page.starts_with(".ie \\n(.g") || page.starts_with(".TH"),
        "{page}"
    );
    assert!(page.contains(".TH sessionfs 1"), "{page}");
    assert!(page.contains("mount"), "{page}");

    let dir = scratch();
    let out = dir.path().join("man1");
    sessionfs(&["man", "--out-dir", out.to_str().unwrap()]).assert_ok();
    let mount_page = fs::read_to_string(out.join("sessionfs-mount.1")).unwrap();
    assert!(mount_page.contains("fuse.sessionfs"), "{mount_page}");
    assert!(mount_page.contains("session.json"), "{mount_page}");
    for cmd in ["list", "cat", "unmount", "completions", "man"] {
        assert!(out.join(format!("sessionfs-{cmd}.1")).is_file(), "{cmd}");
    }
    if Path::new("/usr/bin/groff").exists() {
        let ran = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(out.join("sessionfs.1"))
            .arg(out.join("sessionfs-mount.1")));
        ran.assert_ok();
        assert_eq!(ran.stderr, "", "groff warns");
    }
}

#[test]
fn install_sh_installs_the_binary_helper_completions_and_pages() {
    let dir = scratch();
    let prefix = dir.path().join("usr");
    let sbin = dir.path().join("sbin");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");
    let ran = run(Command::new(script)
        .arg(&prefix)
        .env("SESSIONFS_BIN", BIN)
        .env("SBINDIR", &sbin));
    ran.assert_ok();
    let bin = prefix.join("bin/sessionfs");
    assert!(fs::metadata(&bin).unwrap().permissions().mode() & 0o111 != 0);
    assert_eq!(
        fs::read_link(sbin.join("mount.fuse.sessionfs")).unwrap(),
        bin,
        "the mount helper links to the binary"
    );
    for f in [
        "share/bash-completion/completions/sessionfs",
        "share/zsh/site-functions/_sessionfs",
        "share/fish/vendor_completions.d/sessionfs.fish",
        "share/man/man1/sessionfs.1",
        "share/man/man1/sessionfs-mount.1",
    ] {
        let len = fs::metadata(prefix.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f} is missing or empty");
    }
    let ran = run(Command::new(script).arg("relative/prefix"));
    assert_eq!(ran.code, Some(2), "{ran:?}");
}

// ----- mount(8), fstab and fuse(8) -----------------------------------------

/// Serialises the tests that install /sbin/mount.fuse.sessionfs.
static SBIN_HELPER: Mutex<()> = Mutex::new(());

/// /sbin/mount.fuse.sessionfs linked to the binary under test while it
/// lives; whatever was there before is put back.
struct HelperLink {
    path: PathBuf,
    saved: Option<PathBuf>,
}

impl HelperLink {
    fn install() -> HelperLink {
        let path = PathBuf::from("/sbin/mount.fuse.sessionfs");
        let saved = path.with_extension("sessionfs-test-saved");
        let saved = if fs::symlink_metadata(&path).is_ok() {
            fs::rename(&path, &saved).expect("set the installed helper aside");
            Some(saved)
        } else {
            None
        };
        std::os::unix::fs::symlink(BIN, &path).expect("link /sbin/mount.fuse.sessionfs");
        HelperLink { path, saved }
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        if let Some(saved) = &self.saved {
            let _ = fs::rename(saved, &self.path);
        }
    }
}

/// The pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline"))
            && cmdline.windows(needle.len()).any(|w| w == needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// A mount made by mount(8) or mount.fuse: unmounted, and its background
/// daemon gone, when dropped.
struct ExternalMount {
    mountpoint: PathBuf,
}

impl ExternalMount {
    fn wait_for_daemon_exit(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = processes_mentioning(&self.mountpoint);
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                for pid in &left {
                    // SAFETY: kill has no memory-safety preconditions; these
                    // are daemons this test started.
                    unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
                }
                panic!("daemons {left:?} did not exit after the unmount");
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ExternalMount {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            let _ = Command::new(BIN)
                .arg("unmount")
                .arg(&self.mountpoint)
                .status();
        }
        if !std::thread::panicking() {
            self.wait_for_daemon_exit();
        } else {
            for pid in processes_mentioning(&self.mountpoint) {
                // SAFETY: as above.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
    }
}

/// A repository holding the committed plainbox checkpoint, and a
/// mountpoint, in `dir`.
fn demo_repo(dir: &Path) -> (PathBuf, PathBuf) {
    let repo = dir.join("repo");
    let session = repo.join(format!("{DEMO_ID}.session"));
    fs::create_dir_all(session.join("io-logs")).unwrap();
    fs::copy(
        Path::new(DATA).join("plainbox-0.38-demo.session"),
        session.join("session"),
    )
    .unwrap();
    let mountpoint = dir.join("mnt");
    fs::create_dir(&mountpoint).unwrap();
    (repo, mountpoint)
}

fn expected_json() -> String {
    fs::read_to_string(Path::new(DATA).join("plainbox-0.38-demo.json")).unwrap()
}

fn assert_read_only_mount_serves(mountpoint: &Path) {
    assert!(is_mounted(mountpoint));
    let session = mountpoint.join(format!("{DEMO_ID}.session"));
    assert_eq!(
        fs::read_to_string(session.join("session.json")).unwrap(),
        expected_json()
    );
    assert_eq!(
        &fs::read(session.join("session")).unwrap()[..2],
        b"\x1f\x8b",
        "the checkpoint reads as stored"
    );
    assert_eq!(
        errno_of(fs::write(session.join("session"), b"x")),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::create_dir(mountpoint.join("new.session"))),
        libc::EROFS
    );
}

#[test]
fn mount_t_fuse_sessionfs_and_an_fstab_line_work() {
    require_fuse();
    let _serial = SBIN_HELPER.lock().unwrap_or_else(|p| p.into_inner());
    let _helper = HelperLink::install();
    let dir = scratch();
    let (repo, mountpoint) = demo_repo(dir.path());

    // mount -t fuse.sessionfs REPO MOUNTPOINT -o ro (plus an option that
    // means nothing to sessionfs).
    let m = ExternalMount {
        mountpoint: mountpoint.clone(),
    };
    let ran = run(Command::new("mount")
        .args(["-t", "fuse.sessionfs"])
        .arg(&repo)
        .arg(&mountpoint)
        .args(["-o", "ro,noatime"]));
    ran.assert_ok();
    assert_read_only_mount_serves(&mountpoint);
    run(Command::new("umount").arg(&mountpoint)).assert_ok();
    assert!(!is_mounted(&mountpoint));
    m.wait_for_daemon_exit();

    // An fstab line (in a file of its own: mount -T), read-write, with the
    // daemon's log in a file.
    let log = dir.path().join("daemon.log");
    let fstab = dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# sessionfs\n{} {} fuse.sessionfs rw,allow_other,nofail,x-systemd.automount,log_file={} 0 0\n",
            repo.display(),
            mountpoint.display(),
            log.display()
        ),
    )
    .unwrap();
    let ran = run(Command::new("mount").arg("-T").arg(&fstab).arg(&mountpoint));
    ran.assert_ok();
    assert!(is_mounted(&mountpoint));
    let session = mountpoint.join(format!("{DEMO_ID}.session"));
    assert_eq!(
        fs::read_to_string(session.join("session.json")).unwrap(),
        expected_json()
    );
    fs::write(session.join("session"), b"{\"rw\":true}").unwrap();
    assert_eq!(
        fs::read(repo.join(format!("{DEMO_ID}.session/session"))).unwrap(),
        b"{\"rw\":true}"
    );
    // A refusal: one info line with the path and the reason, in the log file.
    assert_eq!(
        errno_of(fs::create_dir(mountpoint.join("not-a-session"))),
        libc::EINVAL
    );
    run(Command::new("umount").arg(&mountpoint)).assert_ok();
    m.wait_for_daemon_exit();
    let text = fs::read_to_string(&log).unwrap();
    let refusals: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("not-a-session"))
        .collect();
    assert_eq!(refusals.len(), 1, "one line per refusal: {text}");
    assert!(refusals[0].contains("INFO"), "{text}");
    assert!(
        refusals[0].contains(&repo.join("not-a-session").display().to_string()),
        "the line names the path: {text}"
    );
    assert!(
        refusals[0].contains("only NAME.session directories"),
        "the line gives the reason: {text}"
    );
}

#[test]
fn fuse3_mount_fuse_runs_sessionfs_with_source_and_mountpoint() {
    require_fuse();
    let helper = ["/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("mount.fuse3 is missing: install the fuse3 package (scripts/test.sh does)");
    let dir = scratch();
    let (repo, mountpoint) = demo_repo(dir.path());
    // mount.fuse runs the program named by the type, from PATH.
    let bin_dir = dir.path().join("bin");
    fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("sessionfs")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _m = ExternalMount {
        mountpoint: mountpoint.clone(),
    };
    let ran = run(Command::new(helper)
        .arg(&repo)
        .arg(&mountpoint)
        .args(["-o", "ro,allow_other", "-t", "fuse.sessionfs"])
        .env("PATH", path));
    ran.assert_ok();
    assert_read_only_mount_serves(&mountpoint);
    sessionfs(&["unmount", mountpoint.to_str().unwrap()]).assert_ok();
    assert!(!is_mounted(&mountpoint));
}

#[test]
fn helper_usage_errors_are_one_line() {
    let dir = scratch();
    let helper = dir.path().join("mount.fuse.sessionfs");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let ran = run(Command::new(&helper).arg("/only/one/operand"));
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:?}");
    assert!(
        ran.stderr
            .starts_with("sessionfs: error: usage: mount.fuse.sessionfs")
    );
    let mountpoint = dir.path().join("mnt");
    fs::create_dir(&mountpoint).unwrap();
    fs::create_dir(dir.path().join("repo")).unwrap();
    let ran = run(Command::new(&helper)
        .arg(dir.path().join("repo"))
        .arg(&mountpoint)
        .args(["-o", "ro,frobnicate"]));
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stderr.contains("unknown mount option \"frobnicate\""),
        "{ran:?}"
    );
    assert!(!is_mounted(&mountpoint));
}
