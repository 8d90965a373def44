//! The smallest end-to-end check: mount, write a checkpoint with the shell,
//! read it back through the mount and the repository.

mod common;

use std::fs;
use std::process::Command;

use common::mount::Mounted;

#[test]
fn echo_and_cat_through_the_mount() {
    let m = Mounted::start(&[]);
    fs::create_dir(m.path("demo.session")).expect("mkdir a session");
    assert!(m.repo_path("demo.session/io-logs").is_dir());
    let status = Command::new("sh")
        .arg("-c")
        .arg("echo hello > \"$1\"/demo.session/session")
        .arg("sh")
        .arg(&m.mountpoint)
        .status()
        .expect("run sh");
    assert!(status.success());
    assert_eq!(
        fs::read(m.path("demo.session/session")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        fs::read(m.repo_path("demo.session/session")).unwrap(),
        b"hello\n"
    );
    assert!(!m.repo_path("demo.session/session.next").exists());
}

#[test]
fn the_mount_reads_ahead_a_full_request() {
    use std::os::unix::fs::MetadataExt;
    let m = Mounted::start(&["--no-passthrough"]);
    let dev = fs::metadata(&m.mountpoint).unwrap().dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    // The fixture sees the mount as soon as the kernel lists it; the daemon
    // raises the read-ahead just after, before it reports itself ready.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = fs::read_to_string(&knob).unwrap();
        if now.trim() == "1024" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{knob}: {now}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
