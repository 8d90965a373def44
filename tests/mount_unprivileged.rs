//! Mounting as an ordinary user, through the setuid `fusermount3`, as most
//! FUSE tools are mounted. `/dev/fuse` must have the mode a standard system
//! gives it (0666); scripts/test.sh sets it where the machine lacks it.
//! These tests fail, never skip, when it cannot be done.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::fs_helpers::{require_tool, run_cmd};
use common::mount::{BIN, is_mounted, scratch};
use common::users::User;
use tempfile::TempDir;

/// Held for reading by every mount of this file, for writing by the test
/// that takes /dev/fuse's standard mode away for a moment.
static DEVICE_MODE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn require_user_mounts() {
    require_tool("fusermount3", "fuse3");
    let mode = fs::metadata("/dev/fuse")
        .expect("/dev/fuse is missing: the mount tests need FUSE")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o006,
        0o006,
        "/dev/fuse has mode {:o}: ordinary users cannot mount (scripts/test.sh gives it 0666)",
        mode & 0o777
    );
}

/// A repository and a mountpoint that belong to the user, in a directory
/// every user can traverse.
struct UserMount {
    _device: std::sync::RwLockReadGuard<'static, ()>,
    user: User,
    _dir: TempDir,
    repo: PathBuf,
    mountpoint: PathBuf,
}

impl UserMount {
    fn new(tag: &str) -> UserMount {
        let device = DEVICE_MODE.read().unwrap_or_else(|p| p.into_inner());
        require_user_mounts();
        let user = User::create(tag);
        let dir = scratch("sessionfs-user");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let repo = dir.path().join("repo");
        let mountpoint = dir.path().join("mnt");
        for p in [&repo, &mountpoint] {
            fs::create_dir(p).unwrap();
            chown(p, Some(user.uid), Some(user.gid)).unwrap();
        }
        UserMount {
            _device: device,
            user,
            _dir: dir,
            repo,
            mountpoint,
        }
    }

    fn sessionfs(&self) -> Command {
        let mut cmd = self.user.command();
        cmd.arg(BIN).arg("--repo").arg(&self.repo);
        cmd
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    fn sh(&self, script: &str) -> std::process::Output {
        run_cmd(
            self.user
                .command()
                .arg("sh")
                .arg("-c")
                .arg(script)
                .env("M", &self.mountpoint)
                .env("R", &self.repo),
        )
    }

    fn mount_type(&self) -> Option<String> {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let want = self.mountpoint.to_string_lossy().into_owned();
        info.lines().find_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            (fields.get(4) == Some(&want.as_str())).then(|| fields[dash + 1].to_string())
        })
    }
}

impl Drop for UserMount {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.mountpoint)
                .output();
        }
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(20));
    }
}

/// A writer holding `session` open for writing, as the user, until killed.
fn hold_writer(m: &UserMount, file: &Path) -> Child {
    let mut child = m
        .user
        .command()
        // The system's Python: a user's PATH may name one they cannot run.
        .arg("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys, time\n\
             f = open(sys.argv[1], 'wb')\n\
             f.write(b'held'); f.flush()\n\
             print('ready', flush=True)\n\
             time.sleep(60)\n",
        )
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn /usr/bin/python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    if line.trim() != "ready" {
        let out = child.wait_with_output().unwrap();
        panic!(
            "the writer did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child
}

#[test]
fn an_ordinary_user_mounts_reads_writes_commits_and_unmounts() {
    let m = UserMount::new("mnt");
    let out = run_cmd(m.sessionfs().arg("mount").arg(&m.mountpoint));
    assert!(out.status.success(), "user mount failed: {}", text(&out));
    assert!(is_mounted(&m.mountpoint));
    assert_eq!(m.mount_type().as_deref(), Some("fuse.sessionfs"));

    let out = m.sh(
        "set -e; mkdir \"$M/u.session\"; echo first > \"$M/u.session/session\"; \
         cat \"$M/u.session/session\"; ls \"$M\"",
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.starts_with("first\n"), "{shown}");
    assert!(shown.contains("u.session"), "{shown}");
    // Committed through the core, into the user's repository, as the user.
    assert_eq!(
        fs::read(m.repo.join("u.session/session")).unwrap(),
        b"first\n"
    );
    let meta = fs::metadata(m.repo.join("u.session/session")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        m.user.uid,
        "the checkpoint belongs to the user"
    );

    // A second writer gets EBUSY while the first holds the lock.
    let mut writer = hold_writer(&m, &m.path("u.session/session"));
    let out = m.sh("echo second > \"$M/u.session/session\"");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Device or resource busy"),
        "{}",
        text(&out)
    );
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(
        fs::read(m.repo.join("u.session/session")).unwrap(),
        b"first\n",
        "a writer killed by a signal never commits"
    );

    let out = run_cmd(m.sessionfs().arg("unmount").arg(&m.mountpoint));
    assert!(out.status.success(), "user unmount failed: {}", text(&out));
    assert!(!is_mounted(&m.mountpoint));
}

#[test]
fn auto_unmount_cleans_up_after_a_killed_user_daemon() {
    let m = UserMount::new("aut");
    let mut daemon = m
        .sessionfs()
        .args(["mount", "--foreground", "--auto-unmount"])
        .arg(&m.mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the daemon");
    wait_until("the user's mount is up", Duration::from_secs(10), || {
        is_mounted(&m.mountpoint)
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    wait_until(
        "fusermount3 unmounts the dead mount",
        Duration::from_secs(10),
        || !is_mounted(&m.mountpoint),
    );
}

#[test]
fn allow_other_without_user_allow_other_is_refused_saying_so() {
    let conf = fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    assert!(
        !conf
            .lines()
            .any(|l| l.trim_start().starts_with("user_allow_other")),
        "this test needs /etc/fuse.conf without user_allow_other"
    );
    let m = UserMount::new("alo");
    let out = run_cmd(
        m.sessionfs()
            .args(["mount", "--allow-other"])
            .arg(&m.mountpoint),
    );
    assert!(!out.status.success(), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("user_allow_other"), "{msg}");
    assert!(msg.contains("/etc/fuse.conf"), "{msg}");
    assert_eq!(msg.trim().lines().count(), 1, "one line: {msg}");
    assert!(!is_mounted(&m.mountpoint));
}

/// One line naming the cause and the fix, and nothing mounted.
fn assert_refused(m: &UserMount, out: &std::process::Output, wants: &[&str]) {
    assert!(!out.status.success(), "{}", text(out));
    let msg = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = msg.lines().filter(|l| !l.contains(" INFO ")).collect();
    assert_eq!(lines.len(), 1, "one line: {msg}");
    for want in wants {
        assert!(lines[0].contains(want), "{want:?} not in {msg}");
    }
    assert!(!is_mounted(&m.mountpoint));
}

#[test]
fn without_fusermount3_an_ordinary_user_is_told_to_install_it() {
    let m = UserMount::new("nfm");
    let mut cmd = m.user.command();
    cmd.args(["/usr/bin/env", "PATH=/nonexistent"])
        .arg(BIN)
        .arg("--repo")
        .arg(&m.repo)
        .arg("mount")
        .arg(&m.mountpoint);
    let out = run_cmd(&mut cmd);
    assert_refused(&m, &out, &["fusermount3", "fuse3"]);
}

#[test]
fn a_repository_the_user_cannot_write_is_refused_saying_so() {
    let m = UserMount::new("rep");
    let theirs = m._dir.path().join("root-only");
    fs::create_dir(&theirs).unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = m.user.command();
    cmd.arg(BIN)
        .arg("--repo")
        .arg(&theirs)
        .arg("mount")
        .arg(&m.mountpoint);
    let out = run_cmd(&mut cmd);
    assert_refused(
        &m,
        &out,
        &[
            &theirs.display().to_string(),
            "cannot read and write",
            "--repo",
        ],
    );
}

#[test]
fn a_missing_mount_point_is_created_and_the_user_told() {
    let m = UserMount::new("new");
    let fresh = m.mountpoint.join("sub").join("mnt");
    let mut cmd = m.sessionfs();
    cmd.arg("mount").arg(&fresh);
    let out = run_cmd(&mut cmd);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("created the mount point"),
        "{}",
        text(&out)
    );
    assert!(is_mounted(&fresh));
    let out = run_cmd(m.sessionfs().arg("unmount").arg(&fresh));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!is_mounted(&fresh));
}

/// Gives /dev/fuse back its standard mode, whatever the test did.
struct RestoreDeviceMode;

impl Drop for RestoreDeviceMode {
    fn drop(&mut self) {
        let _ = fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666));
    }
}

#[test]
fn a_fuse_device_ordinary_users_cannot_open_is_named_with_the_fix() {
    let exclusive = DEVICE_MODE.write().unwrap_or_else(|p| p.into_inner());
    require_user_mounts();
    let user = User::create("dev");
    let dir = scratch("sessionfs-user");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mountpoint = dir.path().join("mnt");
    fs::create_dir(&mountpoint).unwrap();
    chown(&mountpoint, Some(user.uid), Some(user.gid)).unwrap();
    let restore = RestoreDeviceMode;
    fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = user.command();
    cmd.arg(BIN)
        .arg("--repo")
        .arg(dir.path().join("repo"))
        .arg("mount")
        .arg(&mountpoint);
    let out = run_cmd(&mut cmd);
    drop(restore);
    drop(exclusive);
    assert!(!out.status.success(), "{}", text(&out));
    let msg = String::from_utf8_lossy(&out.stderr).into_owned();
    for want in ["/dev/fuse", "0600", "0666"] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    assert_eq!(msg.trim().lines().count(), 1, "one line: {msg}");
    assert!(!is_mounted(&mountpoint));
}
