//! `sessionfs mount` / `sessionfs unmount` as users run them: background
//! and foreground daemons, clear errors, dead mountpoints, busy unmounts,
//! signals, and who may enter the mount.

mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::mount::{BIN, Mounted, Ran, errno_of, is_mounted, run, spawn, test_base};

fn sessionfs(repo: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG").arg("--repo").arg(repo);
    cmd
}

/// Asserts a failure reported as exactly one `sessionfs: error:` line.
fn one_error_line(out: &Ran) -> String {
    let stderr = out.assert_fails();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line: {stderr:?}");
    assert!(lines[0].starts_with("sessionfs: error: "), "{stderr:?}");
    lines[0].to_string()
}

/// For `mount --foreground`, which logs at info on stderr as a daemon
/// does: exactly one error line among the log lines; returns it.
fn one_error_among_logs(out: &Ran) -> String {
    let stderr = out.assert_fails();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !(l.starts_with('[') && l.contains(" INFO ")))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line: {stderr:?}");
    assert!(errors[0].starts_with("sessionfs: error: "), "{stderr:?}");
    errors[0].to_string()
}

/// The pids of processes whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// True while `pid` is alive (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        sleep(Duration::from_millis(20));
    }
}

/// A repository and mountpoint for a background mount; on drop, whatever
/// the test did, the mount is detached and its daemon killed.
struct Background {
    dir: tempfile::TempDir,
    repo: PathBuf,
    mnt: PathBuf,
}

impl Background {
    fn new() -> Background {
        let dir = tempfile::Builder::new()
            .prefix("sessionfs-bg")
            .tempdir_in(test_base())
            .unwrap();
        let repo = dir.path().join("repo");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&repo).unwrap();
        fs::create_dir(&mnt).unwrap();
        Background { dir, repo, mnt }
    }

    fn daemons(&self) -> Vec<i32> {
        pids_mentioning(&self.mnt.to_string_lossy())
            .into_iter()
            .filter(|&p| alive(p))
            .collect()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let c = std::ffi::CString::new(self.mnt.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `c` is a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        for pid in self.daemons() {
            // SAFETY: the pid is a daemon this test started for its own
            // mountpoint (found by that unique path).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn mount_returns_once_ready_and_unmount_stops_the_daemon() {
    common::mount::require_fuse();
    let bg = Background::new();
    fs::create_dir_all(bg.repo.join("a.session/io-logs")).unwrap();
    fs::write(bg.repo.join("a.session/session"), b"ready").unwrap();
    let log = bg.dir.path().join("daemon.log");
    let out = run(sessionfs(&bg.repo)
        .arg("mount")
        .arg(&bg.mnt)
        .arg("--log-file")
        .arg(&log));
    out.assert_ok();
    assert!(out.stderr.is_empty(), "{out:?}");
    // Ready when it returns: no waiting.
    assert!(is_mounted(&bg.mnt));
    assert_eq!(
        fs::read(bg.mnt.join("a.session/session")).unwrap(),
        b"ready"
    );
    let daemons = bg.daemons();
    assert_eq!(daemons.len(), 1, "one daemon: {daemons:?}");
    let out = run(Command::new(BIN).arg("unmount").arg(&bg.mnt));
    out.assert_ok();
    assert!(!is_mounted(&bg.mnt));
    wait_until("the daemon exits", Duration::from_secs(10), || {
        !alive(daemons[0])
    });
    let log = fs::read_to_string(&log).unwrap();
    assert!(log.contains("mounted"), "log: {log}");
    // Unmounting what is not mounted is a clear error.
    let out = run(Command::new(BIN).arg("unmount").arg(&bg.mnt));
    let line = one_error_line(&out);
    assert!(line.contains("cannot unmount"), "{line}");
    assert!(line.contains("nothing is mounted there"), "{line}");
}

#[test]
fn mounting_twice_on_one_mount_point_is_refused_saying_by_what() {
    common::mount::require_fuse();
    let bg = Background::new();
    run(sessionfs(&bg.repo).arg("mount").arg(&bg.mnt)).assert_ok();
    let daemons = bg.daemons();
    for foreground in [false, true] {
        let mut cmd = sessionfs(&bg.repo);
        cmd.arg("mount").arg(&bg.mnt);
        if foreground {
            cmd.arg("--foreground");
        }
        let out = run(&mut cmd);
        let line = if foreground {
            one_error_among_logs(&out)
        } else {
            one_error_line(&out)
        };
        assert!(line.contains("already mounted"), "{line}");
        assert!(line.contains("(fuse"), "{line}");
        assert!(line.contains(&*bg.repo.to_string_lossy()), "{line}");
        assert!(line.contains("sessionfs unmount"), "{line}");
    }
    assert_eq!(bg.daemons(), daemons, "no second daemon was started");
    run(Command::new(BIN).arg("unmount").arg(&bg.mnt)).assert_ok();
    assert!(!is_mounted(&bg.mnt));
}

#[test]
fn a_missing_mount_point_is_created_saying_so() {
    common::mount::require_fuse();
    let bg = Background::new();
    // As the README's first command does on a fresh machine.
    let missing = bg.dir.path().join("mnt").join("sessions");
    let out = run(sessionfs(&bg.repo).arg("mount").arg(&missing));
    out.assert_ok();
    let said = out.stderr.clone();
    assert_eq!(
        said.trim(),
        format!("sessionfs: created the mount point {}", missing.display())
    );
    assert!(is_mounted(&missing));
    run(Command::new(BIN).arg("unmount").arg(&missing)).assert_ok();
    assert!(!is_mounted(&missing));
    let out = run(Command::new(BIN)
        .arg("unmount")
        .arg(bg.dir.path().join("nowhere")));
    assert!(
        one_error_line(&out).contains("no such directory"),
        "{out:?}"
    );
}

#[test]
fn mounting_on_a_file_is_one_clear_line() {
    common::mount::require_fuse();
    let bg = Background::new();
    let file = bg.dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    for foreground in [false, true] {
        let mut cmd = sessionfs(&bg.repo);
        cmd.arg("mount").arg(&file);
        if foreground {
            cmd.arg("--foreground");
        }
        let out = run(&mut cmd);
        let line = if foreground {
            one_error_among_logs(&out)
        } else {
            one_error_line(&out)
        };
        assert!(line.contains("not a directory"), "{line}");
    }
    assert!(bg.daemons().is_empty());
}

#[test]
fn a_dead_mountpoint_is_explained_and_unmount_clears_it() {
    let mut m = Mounted::start(&[]);
    m.new_session("a");
    assert!(m.path("a.session").is_dir());
    m.kill_daemon();
    assert!(is_mounted(&m.mountpoint));
    assert_eq!(errno_of(fs::read_dir(&m.mountpoint)), libc::ENOTCONN);
    let ls = run(Command::new("ls").arg(&m.mountpoint));
    assert!(ls.assert_fails().contains("not connected"), "{ls:?}");
    for foreground in [false, true] {
        let mut cmd = sessionfs(&m.repo);
        cmd.arg("mount").arg(&m.mountpoint);
        if foreground {
            cmd.arg("--foreground");
        }
        let out = run(&mut cmd);
        let line = if foreground {
            one_error_among_logs(&out)
        } else {
            one_error_line(&out)
        };
        assert!(line.contains("sessionfs unmount"), "{line}");
    }
    let out = run(Command::new(BIN).arg("unmount").arg(&m.mountpoint));
    out.assert_ok();
    assert!(!is_mounted(&m.mountpoint));
    assert!(fs::read_dir(&m.mountpoint).unwrap().next().is_none());
    // And it can be mounted again.
    let bg_out = run(sessionfs(&m.repo).arg("mount").arg(&m.mountpoint));
    bg_out.assert_ok();
    assert!(m.path("a.session").is_dir());
    let pids: Vec<i32> = pids_mentioning(&m.mountpoint.to_string_lossy())
        .into_iter()
        .filter(|&p| alive(p))
        .collect();
    run(Command::new(BIN).arg("unmount").arg(&m.mountpoint)).assert_ok();
    for pid in pids {
        wait_until("the daemon exits", Duration::from_secs(10), || !alive(pid));
    }
    m.assert_no_next();
}

fn a_daemon_killed_mid_write_leaves_the_checkpoint_intact(mode: &[&str]) {
    let mut m = Mounted::start(mode);
    m.new_session("a");
    m.save("a", b"intact");
    let mut writer = spawn(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys\n\
                 f = open(sys.argv[1], 'w')\n\
                 f.write('partial' * 1000)\n\
                 f.flush()\n\
                 print('ready', flush=True)\n\
                 sys.stdin.readline()\n\
                 try:\n\
                 \x20   f.write('more')\n\
                 \x20   f.close()\n\
                 except OSError as e:\n\
                 \x20   print(e.errno, flush=True)\n",
            )
            .arg(m.path("a.session/session"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut out = BufReader::new(writer.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    m.kill_daemon();
    drop(writer.stdin.take());
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        libc::ENOTCONN.to_string(),
        "the writer's close fails"
    );
    writer.wait().unwrap();
    assert_eq!(m.checkpoint("a"), b"intact");
    // Its lock stays behind, stale; after a remount `rm session.next`
    // through the mount clears it.
    assert!(m.repo_path("a.session/session.next").exists());
    run(Command::new(BIN).arg("unmount").arg(&m.mountpoint)).assert_ok();
    run(sessionfs(&m.repo).arg("mount").arg(&m.mountpoint)).assert_ok();
    let pids: Vec<i32> = pids_mentioning(&m.mountpoint.to_string_lossy())
        .into_iter()
        .filter(|&p| alive(p))
        .collect();
    assert_eq!(fs::read(m.path("a.session/session")).unwrap(), b"intact");
    let ls = run(Command::new("ls").arg(m.path("a.session"))).stdout_text();
    assert!(ls.lines().any(|l| l == "session.next"), "{ls}");
    run(Command::new("rm").arg(m.path("a.session/session.next"))).assert_ok();
    m.sh("echo fresh > \"$M/a.session/session\"").assert_ok();
    assert_eq!(m.checkpoint("a"), b"fresh\n");
    run(Command::new(BIN).arg("unmount").arg(&m.mountpoint)).assert_ok();
    for pid in pids {
        wait_until("the daemon exits", Duration::from_secs(10), || !alive(pid));
    }
    m.assert_no_next();
}

#[test]
fn auto_unmount_clears_the_mount_when_the_daemon_is_killed() {
    let mut m = Mounted::start(&["--auto-unmount"]);
    m.new_session("a");
    assert!(m.path("a.session").is_dir());
    m.kill_daemon();
    wait_until("the mount goes away", Duration::from_secs(10), || {
        !is_mounted(&m.mountpoint)
    });
    assert!(fs::read_dir(&m.mountpoint).unwrap().next().is_none());
}

fn unmount_with_files_open_detaches_and_the_writer_still_commits(mode: &[&str]) {
    let mut m = Mounted::start(mode);
    m.new_session("a");
    m.save("a", b"0123456789");
    // A reader in this process and a writer in another.
    let mut reader = File::open(m.path("a.session/session")).unwrap();
    let mut first = [0u8; 4];
    reader.read_exact(&mut first).unwrap();
    let mut writer = spawn(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys\n\
                 f = open(sys.argv[1], 'w')\n\
                 f.write('written before')\n\
                 f.flush()\n\
                 print('ready', flush=True)\n\
                 sys.stdin.readline()\n\
                 f.write(' and after the unmount')\n\
                 f.close()\n",
            )
            .arg(m.path("a.session/session"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(writer.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");

    let out = run(Command::new(BIN).arg("unmount").arg(&m.mountpoint));
    out.assert_ok();
    assert!(out.stderr.contains("detached"), "{out:?}");
    assert!(!is_mounted(&m.mountpoint));
    // Still served to those who have it open.
    assert!(m.wait_daemon(Duration::from_millis(300)).is_none());
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"456789");
    drop(writer.stdin.take());
    assert!(writer.wait().unwrap().success());
    assert_eq!(m.checkpoint("a"), b"written before and after the unmount");
    drop(reader);
    let status = m
        .wait_daemon(Duration::from_secs(10))
        .expect("the daemon exits once the last file is closed");
    assert!(status.success(), "{status}");
    m.assert_no_next();
}

#[test]
fn a_foreground_daemon_unmounts_on_sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut m = Mounted::start(&[]);
        m.new_session("a");
        m.sh("echo kept > \"$M/a.session/session\"").assert_ok();
        // SAFETY: the daemon is our child.
        assert_eq!(unsafe { libc::kill(m.daemon_pid() as i32, signal) }, 0);
        let status = m
            .wait_daemon(Duration::from_secs(10))
            .expect("the daemon exits on the signal");
        assert!(status.success(), "signal {signal}: {status}");
        assert!(!is_mounted(&m.mountpoint), "signal {signal}");
        assert_eq!(m.checkpoint("a"), b"kept\n");
        m.assert_no_next();
    }
}

fn sigterm_with_a_file_open_detaches_and_exits_once_it_is_closed(mode: &[&str]) {
    let mut m = Mounted::start(mode);
    m.new_session("a");
    m.save("a", b"abc");
    let mut f = File::open(m.path("a.session/session")).unwrap();
    // SAFETY: the daemon is our child.
    assert_eq!(
        unsafe { libc::kill(m.daemon_pid() as i32, libc::SIGTERM) },
        0
    );
    wait_until("the mount is detached", Duration::from_secs(10), || {
        !is_mounted(&m.mountpoint)
    });
    let mut data = Vec::new();
    f.read_to_end(&mut data).unwrap();
    assert_eq!(data, b"abc");
    drop(f);
    let status = m
        .wait_daemon(Duration::from_secs(10))
        .expect("the daemon exits once the file is closed");
    assert!(status.success(), "{status}");
    m.assert_no_next();
}

// ----- who may enter ---------------------------------------------------

const USER: &str = "sessionfs-test";

/// The unprivileged test user's uid and gid, creating the user if needed.
fn test_user() -> (u32, u32) {
    static MADE: Mutex<()> = Mutex::new(());
    let _g = MADE.lock().unwrap_or_else(|p| p.into_inner());
    let id = |flag: &str| run(Command::new("id").arg(flag).arg(USER));
    if !id("-u").ok() {
        let out = run(Command::new("useradd")
            .arg("-M")
            .arg("-r")
            .arg("-s")
            .arg("/usr/sbin/nologin")
            .arg(USER));
        // 9: the user exists already (made meanwhile by another run).
        assert!(matches!(out.code, Some(0) | Some(9)), "useradd: {out:?}");
    }
    let num = |flag: &str| {
        let out = id(flag);
        out.assert_ok();
        out.stdout_text().trim().parse::<u32>().unwrap()
    };
    (num("-u"), num("-g"))
}

/// Runs a command as the test user.
fn as_user(args: &[&std::ffi::OsStr]) -> Ran {
    let (uid, gid) = test_user();
    run(Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .args(args))
}

/// Lets every user walk down to the mountpoint.
fn open_up(m: &Mounted) {
    fs::set_permissions(m.root(), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn without_allow_other_other_users_cannot_enter() {
    let m = Mounted::start(&[]);
    open_up(&m);
    m.new_session("a");
    m.save("a", b"root's");
    // The user reaches the directory holding the mountpoint...
    as_user(&["ls".as_ref(), m.root().as_os_str()]).assert_ok();
    // ...but not the mount.
    let ls = as_user(&["ls".as_ref(), m.mountpoint.as_os_str()]);
    assert!(ls.assert_fails().contains("Permission denied"), "{ls:?}");
    let cat = as_user(&["cat".as_ref(), m.path("a.session/session").as_os_str()]);
    cat.assert_fails();
    assert!(cat.stdout.is_empty());
    // Root can.
    assert_eq!(fs::read(m.path("a.session/session")).unwrap(), b"root's");
    m.assert_no_next();
}

#[test]
fn with_allow_other_the_files_own_modes_decide() {
    let m = Mounted::start(&["--allow-other"]);
    open_up(&m);
    m.new_session("pub");
    m.new_session("priv");
    m.save("pub", b"public checkpoint");
    m.save("priv", b"private checkpoint");
    fs::set_permissions(
        m.repo_path("pub.session"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::set_permissions(
        m.repo_path("priv.session"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();

    let ls = as_user(&["ls".as_ref(), m.mountpoint.as_os_str()]);
    assert_eq!(ls.assert_ok(), b"priv.session\npub.session\n");
    let cat = as_user(&["cat".as_ref(), m.path("pub.session/session").as_os_str()]);
    assert_eq!(cat.assert_ok(), b"public checkpoint");
    let cat = as_user(&["cat".as_ref(), m.path("priv.session/session").as_os_str()]);
    assert!(cat.assert_fails().contains("Permission denied"), "{cat:?}");
    assert!(cat.stdout.is_empty());
    let ls = as_user(&["ls".as_ref(), m.path("priv.session").as_os_str()]);
    assert!(ls.assert_fails().contains("Permission denied"), "{ls:?}");
    // Root's 0644 checkpoint is not the user's to write; nor is the root.
    let w = as_user(&[
        "sh".as_ref(),
        "-c".as_ref(),
        "echo x > \"$0\"".as_ref(),
        m.path("pub.session/session").as_os_str(),
    ]);
    assert!(w.assert_fails().contains("Permission denied"), "{w:?}");
    let mk = as_user(&["mkdir".as_ref(), m.path("mine.session").as_os_str()]);
    assert!(mk.assert_fails().contains("Permission denied"), "{mk:?}");
    assert_eq!(m.checkpoint("pub"), b"public checkpoint");
    assert!(!m.repo_path("mine.session").exists());

    // A session the user owns is theirs to write, and the commit keeps
    // the owner.
    let (uid, gid) = test_user();
    m.new_session("theirs");
    m.save("theirs", b"old");
    for p in [
        "theirs.session",
        "theirs.session/session",
        "theirs.session/io-logs",
    ] {
        std::os::unix::fs::lchown(m.repo_path(p), Some(uid), Some(gid)).unwrap();
    }
    let w = as_user(&[
        "sh".as_ref(),
        "-c".as_ref(),
        "echo theirs > \"$0\"".as_ref(),
        m.path("theirs.session/session").as_os_str(),
    ]);
    w.assert_ok();
    assert_eq!(m.checkpoint("theirs"), b"theirs\n");
    let meta = fs::metadata(m.repo_path("theirs.session/session")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    m.assert_no_next();
}

#[test]
fn a_daemon_killed_mid_write_leaves_the_checkpoint_intact_passthrough() {
    a_daemon_killed_mid_write_leaves_the_checkpoint_intact(&[]);
}

#[test]
fn a_daemon_killed_mid_write_leaves_the_checkpoint_intact_daemon_served() {
    a_daemon_killed_mid_write_leaves_the_checkpoint_intact(&["--no-passthrough"]);
}

#[test]
fn unmount_with_files_open_detaches_and_the_writer_still_commits_passthrough() {
    unmount_with_files_open_detaches_and_the_writer_still_commits(&[]);
}

#[test]
fn unmount_with_files_open_detaches_and_the_writer_still_commits_daemon_served() {
    unmount_with_files_open_detaches_and_the_writer_still_commits(&["--no-passthrough"]);
}

#[test]
fn sigterm_with_a_file_open_detaches_and_exits_once_it_is_closed_passthrough() {
    sigterm_with_a_file_open_detaches_and_exits_once_it_is_closed(&[]);
}

#[test]
fn sigterm_with_a_file_open_detaches_and_exits_once_it_is_closed_daemon_served() {
    sigterm_with_a_file_open_detaches_and_exits_once_it_is_closed(&["--no-passthrough"]);
}
