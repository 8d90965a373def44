//! The `session` file through the mount: reads see one committed
//! checkpoint, writes commit atomically through the core, locks and
//! interrupted writers behave, in both I/O modes (FUSE passthrough and
//! daemon-served) wherever they differ.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::{Mounted, errno_of, run, spawn, writing};
use common::repo::pattern;

fn open_write(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).truncate(true).open(path)
}

fn open_rdwr(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// A python3 writer that opens `path` for writing, writes `data`, says
/// `ready` and sleeps until killed.
fn spawn_python_writer(path: &std::path::Path, data_len: usize) -> std::process::Child {
    let mut child = spawn(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, time\n\
             f = open(sys.argv[1], 'w')\n\
             f.write('p' * int(sys.argv[2]))\n\
             f.flush()\n\
             print('ready', flush=True)\n\
             time.sleep(60)\n",
            )
            .arg(path)
            .arg(data_len.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read from python3");
    assert_eq!(line, "ready\n", "the python writer did not start");
    child
}

fn wait_gone(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::symlink_metadata(path).is_ok() {
        assert!(Instant::now() < deadline, "{} stays", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A python3 process holding `session` open for writing, with `data`
/// written and flushed to the mount.
struct HeldWriter(std::process::Child);

fn hold_writer(path: &std::path::Path, data: &str) -> HeldWriter {
    let mut child = spawn(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys\n\
                 f = open(sys.argv[1], 'w')\n\
                 f.write(sys.argv[2])\n\
                 f.flush()\n\
                 print('ready', flush=True)\n\
                 sys.stdin.readline()\n\
                 f.close()\n",
            )
            .arg(path)
            .arg(data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read from python3");
    assert_eq!(line, "ready\n", "the python writer did not start");
    HeldWriter(child)
}

impl HeldWriter {
    /// Closes the descriptor (commits) and waits for the process.
    fn close(&mut self) {
        drop(self.0.stdin.take());
        let status = self.0.wait().expect("wait for python3");
        assert!(status.success(), "the python writer failed: {status}");
    }
}

impl Drop for HeldWriter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

both_modes! {
    fn a_shell_descriptor_kept_open_across_commands_commits_everything(m) {
        m.new_session("a");
        m.save("a", b"old");
        m.sh("exec 3>\"$M/a.session/session\"; echo a >&3; echo b >&3; cat /dev/null; echo c >&3")
            .assert_ok();
        m.wait_checkpoint("a", b"a\nb\nc\n");
        assert_eq!(fs::read(m.path("a.session/session")).unwrap(), b"a\nb\nc\n");
        m.assert_no_next();
    }

    fn a_late_close_of_a_committed_descriptor_does_not_revert_newer_commits(m) {
        // A descriptor shared with a child (fork) outlives the commit made
        // by the parent's close; when the child exits later, after another
        // checkpoint was committed, nothing of the old one comes back.
        m.new_session("a");
        m.save("a", b"v0");
        let p = m.path("a.session/session");
        let mut child = spawn(
            Command::new("python3")
                .arg("-c")
                .arg(
                    "import os, sys\n\
                     f = open(sys.argv[1], 'w')\n\
                     f.write('v1 from python')\n\
                     f.flush()\n\
                     r, w = os.pipe()\n\
                     pid = os.fork()\n\
                     if pid == 0:\n\
                     \x20   os.read(r, 1)\n\
                     \x20   os._exit(0)\n\
                     f.close()\n\
                     print('committed', flush=True)\n\
                     sys.stdin.readline()\n\
                     os.write(w, b'x')\n\
                     os.waitpid(pid, 0)\n",
                )
                .arg(&p)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "committed\n");
        assert_eq!(m.checkpoint("a"), b"v1 from python");
        m.save("a", b"v2 from the core");
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        // The child's close (flush and release) has been answered.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(m.checkpoint("a"), b"v2 from the core");
        assert_eq!(fs::read(&p).unwrap(), b"v2 from the core");
        m.assert_no_next();
    }

    fn readers_never_see_a_partial_checkpoint_while_one_writes(m) {
        // Version k is byte k, 1000 + 37 k times: a reader can tell a whole
        // version from anything else.
        m.new_session("a");
        let version = |k: u8| vec![k; 1000 + 37 * k as usize];
        m.save("a", &version(1));
        let p = m.path("a.session/session");
        let stop = m.root().join("stop");
        let readers: Vec<_> = (0..2)
            .map(|_| {
                spawn(
                    Command::new("python3")
                        .arg("-c")
                        .arg(
                            "import os, sys\n\
                             n = bad = 0\n\
                             while not os.path.exists(sys.argv[2]):\n\
                             \x20   with open(sys.argv[1], 'rb') as f:\n\
                             \x20       d = f.read()\n\
                             \x20   n += 1\n\
                             \x20   if len(d) == 0 or len(set(d)) != 1 or len(d) != 1000 + 37 * d[0]:\n\
                             \x20       bad += 1\n\
                             \x20       print('partial', len(d), d[:4], flush=True)\n\
                             print('reads', n, 'bad', bad)\n",
                        )
                        .arg(&p)
                        .arg(&stop)
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped()),
                )
            })
            .collect();
        {
            let _w = writing();
            for k in 2..=120u8 {
                fs::write(&p, version(k)).unwrap_or_else(|e| panic!("version {k}: {e}"));
            }
        }
        fs::write(&stop, b"").unwrap();
        for r in readers {
            let out = r.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}{err}");
            assert!(text.ends_with("bad 0\n"), "{text}{err}");
        }
        assert_eq!(m.checkpoint("a"), version(120));
        m.assert_no_next();
    }

    fn racing_writers_get_ebusy_and_never_mix(m) {
        m.new_session("a");
        m.save("a", b"start");
        let p = m.path("a.session/session");
        let writers: Vec<_> = (1..=6u8)
            .map(|i| {
                spawn(
                    Command::new("python3")
                        .arg("-c")
                        .arg(
                            "import errno, sys\n\
                             i = int(sys.argv[2])\n\
                             try:\n\
                             \x20   f = open(sys.argv[1], 'wb')\n\
                             except OSError as e:\n\
                             \x20   print('busy' if e.errno == errno.EBUSY else 'errno %d' % e.errno)\n\
                             \x20   sys.exit(0)\n\
                             for _ in range(50):\n\
                             \x20   f.write(bytes([i]) * 2000)\n\
                             \x20   f.flush()\n\
                             f.close()\n\
                             print('ok')\n",
                        )
                        .arg(&p)
                        .arg(i.to_string())
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped()),
                )
            })
            .collect();
        let mut committed = Vec::new();
        for (i, w) in (1..=6u8).zip(writers) {
            let out = w.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(out.status.success() && (text == "ok" || text == "busy"), "writer {i}: {text}");
            if text == "ok" {
                committed.push(i);
            }
        }
        assert!(!committed.is_empty());
        let data = m.checkpoint("a");
        assert!(
            committed.iter().any(|&i| data == vec![i; 100_000]),
            "the checkpoint is no writer's whole data ({} bytes, first {:?})",
            data.len(),
            &data[..data.len().min(4)]
        );
        m.assert_no_next();
    }

    fn reads_give_the_last_checkpoint_and_stat_matches(m) {
        m.new_session("a");
        let file = m.path("a.session/session");
        // No checkpoint yet: an empty file.
        assert_eq!(fs::read(&file).unwrap(), b"");
        assert_eq!(fs::metadata(&file).unwrap().len(), 0);

        m.save("a", b"first");
        assert_eq!(fs::read(&file).unwrap(), b"first");
        let big = pattern(7, 3 << 20);
        m.save("a", &big);
        let out = m.sh("cat \"$M/a.session/session\"");
        assert!(out.stdout == big, "cat gave {} bytes", out.stdout.len());

        let through = fs::metadata(&file).unwrap();
        let direct = fs::metadata(m.repo_path("a.session/session")).unwrap();
        assert_eq!(through.len(), direct.len());
        assert_eq!(through.modified().unwrap(), direct.modified().unwrap());
        assert!(through.is_file());
        // `ls -l` agrees.
        let ls = m.sh("ls -l \"$M/a.session/session\"").stdout_text();
        assert!(ls.contains(&(3u64 << 20).to_string()), "ls -l: {ls}");
        // mmap reads the same bytes.
        let mapped = run(Command::new("python3")
            .arg("-c")
            .arg(
                "import hashlib, mmap, sys\n\
                 f = open(sys.argv[1], 'rb')\n\
                 m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n\
                 print(len(m), hashlib.sha256(m[:]).hexdigest())\n",
            )
            .arg(&file));
        let plain = run(Command::new("sha256sum").arg(m.repo_path("a.session/session")));
        let want_sum = plain.stdout_text();
        let want_sum = want_sum.split(' ').next().unwrap();
        assert_eq!(mapped.stdout_text().trim(), format!("{} {want_sum}", 3u64 << 20), "{mapped:?}");
        m.assert_no_next();
    }

    fn a_shared_mapping_of_a_writer_commits_at_close(m) {
        m.new_session("a");
        m.save("a", b"0123456789");
        let file = m.path("a.session/session");
        // A writer that edits the checkpoint in place through mmap.
        let out = run(Command::new("python3")
            .arg("-c")
            .arg(
                "import mmap, sys\n\
                 with open(sys.argv[1], 'r+b') as f:\n\
                 \x20   m = mmap.mmap(f.fileno(), 0)\n\
                 \x20   m[0:4] = b'ABCD'\n\
                 \x20   m.flush()\n\
                 \x20   m.close()\n",
            )
            .arg(&file));
        out.assert_ok();
        assert_eq!(m.checkpoint("a"), b"ABCD456789");
        assert_eq!(fs::read(&file).unwrap(), b"ABCD456789");
        m.assert_no_next();
    }

    fn a_reader_keeps_its_version_while_others_commit(m) {
        m.new_session("a");
        let old = pattern(1, 2 << 20);
        m.save("a", &old);
        let mut reader = File::open(m.path("a.session/session")).unwrap();
        let mut got = vec![0u8; 1 << 20];
        reader.read_exact(&mut got).unwrap();

        let new = pattern(2, 3 << 19);
        let src = m.root().join("new.bin");
        fs::write(&src, &new).unwrap();
        m.cli([std::ffi::OsStr::new("checkpoint"), "a".as_ref(), src.as_os_str()])
            .assert_ok();
        assert_eq!(m.checkpoint("a"), new);

        reader.read_to_end(&mut got).unwrap();
        assert!(got == old, "the open reader did not see one whole version");
        drop(reader);
        assert!(fs::read(m.path("a.session/session")).unwrap() == new);
        m.assert_no_next();
    }

    fn o_trunc_starts_empty(m) {
        m.new_session("a");
        m.save("a", b"a rather long previous checkpoint");
        m.sh("echo x > \"$M/a.session/session\"").assert_ok();
        assert_eq!(m.checkpoint("a"), b"x\n");
        // `: > session` commits an empty checkpoint (when the kernel
        // releases the file: nothing was written, so no close commits).
        m.sh(": > \"$M/a.session/session\"").assert_ok();
        m.wait_checkpoint("a", b"");
        m.save("a", b"again");
        {
            let _w = writing();
            drop(open_write(&m.path("a.session/session")).unwrap());
        }
        m.wait_checkpoint("a", b"");
        // python3's open(p, 'w').write(...)
        let p = m.path("a.session/session");
        run(Command::new("python3")
            .arg("-c")
            .arg("import sys; open(sys.argv[1], 'w').write('from python')")
            .arg(&p))
        .assert_ok();
        assert_eq!(m.checkpoint("a"), b"from python");
        assert_eq!(fs::read(&p).unwrap(), b"from python");
        m.assert_no_next();
    }

    fn rdwr_append_and_notrunc_start_from_the_current_checkpoint(m) {
        m.new_session("a");
        m.save("a", b"0123456789");
        let p = m.path("a.session/session");
        {
            let _w = writing();
            let f = open_rdwr(&p).unwrap();
            f.write_all_at(b"AB", 2).unwrap();
        }
        assert_eq!(m.checkpoint("a"), b"01AB456789");
        m.sh("echo more >> \"$M/a.session/session\"").assert_ok();
        assert_eq!(m.checkpoint("a"), b"01AB456789more\n");
        m.sh("printf XY | dd of=\"$M/a.session/session\" bs=1 seek=4 conv=notrunc status=none")
            .assert_ok();
        assert_eq!(m.checkpoint("a"), b"01ABXY6789more\n");
        // Without conv=notrunc dd truncates at the seek offset.
        m.sh("printf hello | dd of=\"$M/a.session/session\" conv=fsync status=none")
            .assert_ok();
        assert_eq!(m.checkpoint("a"), b"hello");
        // An O_APPEND descriptor from Rust.
        {
            let _w = writing();
            let mut f = OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(b" world").unwrap();
        }
        assert_eq!(fs::read(&p).unwrap(), b"hello world");
        m.assert_no_next();
    }

    fn writes_at_offsets_truncate_and_read_back_through_the_writer(m) {
        m.new_session("a");
        m.save("a", b"old checkpoint");
        let p = m.path("a.session/session");
        let w = writing();
        let f = OpenOptions::new().read(true).write(true).truncate(true).open(&p).unwrap();
        let mut buf = vec![0u8; 64];
        // O_TRUNC: the checkpoint being written starts empty.
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 0);
        assert_eq!(f.metadata().unwrap().len(), 0);
        f.write_all_at(b"hello", 0).unwrap();
        f.write_all_at(b"world", 10).unwrap();
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"hello\0\0\0\0\0world");
        assert_eq!(f.metadata().unwrap().len(), 15);
        // Nothing is committed while writing; the lock is held.
        assert_eq!(m.checkpoint("a"), b"old checkpoint");
        assert!(m.repo_path("a.session/session.next").exists());
        // Another reader sees the committed checkpoint, never the partial
        // one, and `stat` of the path shows the committed one too.
        assert_eq!(fs::read(&p).unwrap(), b"old checkpoint");
        assert_eq!(fs::metadata(&p).unwrap().len(), 14);
        f.set_len(7).unwrap();
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"hello\0\0");
        assert_eq!(f.metadata().unwrap().len(), 7);
        drop(f);
        drop(w);
        assert_eq!(m.checkpoint("a"), b"hello\0\0");
        assert_eq!(fs::read(&p).unwrap(), b"hello\0\0");

        // `truncate -s` on the path is a commit of its own.
        m.sh("truncate -s 3 \"$M/a.session/session\"").assert_ok();
        assert_eq!(m.checkpoint("a"), b"hel");
        m.sh("truncate -s 5 \"$M/a.session/session\"").assert_ok();
        assert_eq!(m.checkpoint("a"), b"hel\0\0");
        assert_eq!(fs::metadata(&p).unwrap().len(), 5);
        m.assert_no_next();
    }

    fn close_commits_and_fsync_commits_durably(m) {
        m.new_session("a");
        m.save("a", b"before");
        let p = m.path("a.session/session");
        let w = writing();
        let mut f = open_write(&p).unwrap();
        f.write_all(b"part1").unwrap();
        assert_eq!(m.checkpoint("a"), b"before");
        f.sync_all().unwrap();
        // fsync returned: the repository holds the data.
        assert_eq!(m.checkpoint("a"), b"part1");
        assert_eq!(fs::read(&p).unwrap(), b"part1");
        f.write_all(b"part2").unwrap();
        assert_eq!(m.checkpoint("a"), b"part1");
        f.sync_data().unwrap();
        assert_eq!(m.checkpoint("a"), b"part1part2");
        f.write_all(b"part3").unwrap();
        drop(f);
        drop(w);
        assert_eq!(m.checkpoint("a"), b"part1part2part3");
        assert_eq!(fs::read(&p).unwrap(), b"part1part2part3");
        // dd conv=fsync
        m.sh("head -c 100000 /dev/zero | tr '\\0' z | dd of=\"$M/a.session/session\" bs=4096 conv=fsync status=none")
            .assert_ok();
        assert_eq!(m.checkpoint("a"), vec![b'z'; 100_000]);
        m.assert_no_next();
    }

    fn cp_in_and_out_round_trips(m) {
        m.new_session("a");
        m.save("a", b"short");
        let src = m.root().join("in.bin");
        let data = pattern(3, (5 << 20) + 123);
        fs::write(&src, &data).unwrap();
        run(Command::new("cp").arg(&src).arg(m.path("a.session/session"))).assert_ok();
        assert!(m.checkpoint("a") == data);
        let out = m.root().join("out.bin");
        run(Command::new("cp").arg(m.path("a.session/session")).arg(&out)).assert_ok();
        assert!(fs::read(&out).unwrap() == data);
        m.assert_no_next();
    }

    fn renaming_a_file_over_session_commits_it(m) {
        m.new_session("a");
        m.save("a", b"old version");
        let p = m.path("a.session/session");
        let mut reader = File::open(&p).unwrap();
        m.sh("printf 'new version' > \"$M/a.session/tmp\"").assert_ok();
        let tmp_ino = fs::metadata(m.repo_path("a.session/tmp")).unwrap().ino();
        m.sh("mv \"$M/a.session/tmp\" \"$M/a.session/session\"").assert_ok();
        assert_eq!(m.checkpoint("a"), b"new version");
        // Renamed into place, not copied: the old checkpoint was replaced
        // in one step.
        assert_eq!(fs::metadata(m.repo_path("a.session/session")).unwrap().ino(), tmp_ino);
        assert!(!m.repo_path("a.session/tmp").exists());
        assert!(fs::symlink_metadata(m.path("a.session/tmp")).is_err());
        let mut old = String::new();
        reader.read_to_string(&mut old).unwrap();
        assert_eq!(old, "old version");
        assert_eq!(fs::read(&p).unwrap(), b"new version");
        // The editor pattern from Rust: write a temporary file, rename it.
        {
            let _w = writing();
            fs::write(m.path("a.session/.session.swp"), b"edited").unwrap();
        }
        fs::rename(m.path("a.session/.session.swp"), &p).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"edited");
        assert_eq!(m.checkpoint("a"), b"edited");
        m.assert_no_next();
    }

    fn a_second_writer_gets_ebusy(m) {
        m.new_session("a");
        m.save("a", b"committed");
        let p = m.path("a.session/session");
        // The first writer is another process (python3), holding its
        // descriptor open until told to close it.
        let mut first = hold_writer(&p, "first writer");
        let ls = m.sh("ls \"$M/a.session\"").stdout_text();
        assert!(ls.lines().any(|l| l == "session.next"), "ls: {ls}");

        assert_eq!(errno_of(open_write(&p)), libc::EBUSY);
        assert_eq!(errno_of(open_rdwr(&p)), libc::EBUSY);
        assert_eq!(errno_of(OpenOptions::new().append(true).open(&p)), libc::EBUSY);
        let sh = m.sh("echo second > \"$M/a.session/session\"");
        assert!(sh.assert_fails().contains("busy"), "{sh:?}");
        assert_eq!(errno_of(fs::write(&p, b"x")), libc::EBUSY);
        m.sh("truncate -s 0 \"$M/a.session/session\"").assert_fails();
        // Through the command line: the locked exit code.
        let src = m.root().join("x");
        fs::write(&src, b"cli").unwrap();
        assert_eq!(
            m.cli([std::ffi::OsStr::new("checkpoint"), "a".as_ref(), src.as_os_str()]).code,
            Some(3)
        );
        // Through the core in this process.
        let err = m.core().open("a".as_ref()).unwrap().save(b"core").unwrap_err();
        assert!(err.is_locked(), "{err}");
        // The live writer's lock cannot be broken.
        assert_eq!(errno_of(fs::remove_file(m.path("a.session/session.next"))), libc::EBUSY);
        assert_eq!(m.sh("rm -f \"$M/a.session/session.next\"").code, Some(1));
        assert_eq!(m.cli(["break-lock", "a"]).code, Some(3));
        // Readers see the committed checkpoint meanwhile.
        assert_eq!(fs::read(&p).unwrap(), b"committed");
        assert_eq!(m.checkpoint("a"), b"committed");

        first.close();
        assert_eq!(m.checkpoint("a"), b"first writer");
        m.assert_no_next();
        // The lock is free again.
        m.sh("echo second > \"$M/a.session/session\"").assert_ok();
        assert_eq!(m.checkpoint("a"), b"second\n");

        // The same between two descriptors of this process.
        {
            let _w = writing();
            let mut one = open_write(&p).unwrap();
            one.write_all(b"one").unwrap();
            assert_eq!(errno_of(open_write(&p)), libc::EBUSY);
            assert_eq!(errno_of(open_rdwr(&p)), libc::EBUSY);
            drop(one);
        }
        assert_eq!(m.checkpoint("a"), b"one");
        m.assert_no_next();
    }

    fn a_stale_lock_shows_and_rm_breaks_it(m) {
        m.new_session("a");
        m.save("a", b"committed");
        fs::write(m.repo_path("a.session/session.next"), b"half a checkpoint").unwrap();
        let ls = m.sh("ls -a \"$M/a.session\"").stdout_text();
        let names: Vec<&str> = ls.lines().collect();
        assert!(names.contains(&"session.next"), "ls: {ls}");
        assert!(names.contains(&"session"), "ls: {ls}");
        assert_eq!(errno_of(open_write(&m.path("a.session/session"))), libc::EBUSY);
        assert_eq!(fs::read(m.path("a.session/session")).unwrap(), b"committed");
        m.sh("rm \"$M/a.session/session.next\"").assert_ok();
        assert!(!m.repo_path("a.session/session.next").exists());
        let ls = m.sh("ls -a \"$M/a.session\"").stdout_text();
        assert!(!ls.lines().any(|l| l == "session.next"), "ls: {ls}");
        m.sh("echo fresh > \"$M/a.session/session\"").assert_ok();
        assert_eq!(m.checkpoint("a"), b"fresh\n");
        m.assert_no_next();
    }

    fn a_writer_killed_by_a_signal_does_not_commit(m) {
        m.new_session("a");
        m.save("a", b"intact");
        let p = m.path("a.session/session");
        for signal in [libc::SIGKILL, libc::SIGTERM] {
            let mut child = spawn_python_writer(&p, 100_000);
            assert!(m.repo_path("a.session/session.next").exists());
            // SAFETY: the child is ours and not yet reaped.
            assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
            let status = child.wait().unwrap();
            assert!(!status.success());
            wait_gone(&m.repo_path("a.session/session.next"));
            assert_eq!(m.checkpoint("a"), b"intact", "signal {signal}");
            assert_eq!(fs::read(&p).unwrap(), b"intact");
        }
        // A normal exit without close() commits.
        run(Command::new("python3")
            .arg("-c")
            .arg("import os, sys\nf = open(sys.argv[1], 'w')\nf.write('exited')\nf.flush()\nos._exit(0)\n")
            .arg(&p))
        .assert_ok();
        wait_gone(&m.repo_path("a.session/session.next"));
        assert_eq!(m.checkpoint("a"), b"exited");
        m.assert_no_next();
    }

    fn a_process_that_starts_a_program_while_writing_does_not_hang(m) {
        // An exec closes the close-on-exec descriptors of the session (a
        // flush the daemon must answer without waiting for the exec).
        m.new_session("a");
        m.save("a", b"old");
        let p = m.path("a.session/session");
        let mut child = spawn(
            Command::new("python3")
                .arg("-c")
                .arg(
                    "import subprocess, sys\n\
                     r = open(sys.argv[1])\n\
                     assert r.read() == 'old'\n\
                     f = open(sys.argv[1], 'w')\n\
                     f.write('x' * 10)\n\
                     f.flush()\n\
                     subprocess.run(['true'], check=True)\n\
                     subprocess.run(['true'], check=True)\n\
                     f.write('y')\n\
                     f.close()\n\
                     r.close()\n",
                )
                .arg(&p)
                .stdin(Stdio::null()),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the writer hangs in exec");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success());
        assert_eq!(m.checkpoint("a"), b"xxxxxxxxxxy");
        assert_eq!(fs::read(&p).unwrap(), b"xxxxxxxxxxy");
        m.assert_no_next();
    }

    fn outside_commits_are_seen_at_the_next_open(m) {
        m.new_session("a");
        m.save("a", b"version 1");
        let p = m.path("a.session/session");
        assert_eq!(fs::read(&p).unwrap(), b"version 1");
        // Keep a reader open across the commits too.
        let held = File::open(&p).unwrap();
        let src = m.root().join("v2");
        fs::write(&src, b"version 2!").unwrap();
        m.cli([std::ffi::OsStr::new("checkpoint"), "a".as_ref(), src.as_os_str()]).assert_ok();
        assert_eq!(fs::read(&p).unwrap(), b"version 2!");
        // Same size, written in place by cp straight into the repository,
        // right after the last read.
        fs::write(&src, b"version 3!").unwrap();
        run(Command::new("cp").arg(&src).arg(m.repo_path("a.session/session"))).assert_ok();
        assert_eq!(fs::read(&p).unwrap(), b"version 3!");
        assert_eq!(m.sh("cat \"$M/a.session/session\"").stdout, b"version 3!");
        m.save("a", b"v4");
        assert_eq!(fs::read(&p).unwrap(), b"v4");
        assert_eq!(fs::metadata(&p).unwrap().len(), 2);
        let mut buf = vec![0u8; 32];
        let n = held.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"version 1");
        m.assert_no_next();
    }

    fn readers_and_writers_of_several_sessions_in_parallel(m) {
        let ids: Vec<String> = (0..4).map(|i| format!("s{i}")).collect();
        for id in &ids {
            m.new_session(id);
        }
        let w = writing();
        std::thread::scope(|scope| {
            for (i, id) in ids.iter().enumerate() {
                let p = m.path(format!("{id}.session/session"));
                scope.spawn(move || {
                    for round in 0..5u8 {
                        let data = pattern(i as u8 * 16 + round, 200_000 + round as usize);
                        fs::write(&p, &data).unwrap();
                        assert!(fs::read(&p).unwrap() == data);
                    }
                });
            }
        });
        drop(w);
        for (i, id) in ids.iter().enumerate() {
            assert!(m.checkpoint(id) == pattern(i as u8 * 16 + 4, 200_004));
        }
        m.assert_no_next();
    }
}

/// `--read-only`: reads work; every change fails with EROFS.
fn read_only_mount(m: &Mounted) {
    m.new_session("a");
    m.save("a", b"keep me");
    fs::write(m.repo_path("a.session/io-logs/log"), b"log").unwrap();
    fs::write(m.repo_path("a.session/session.next"), b"stale").unwrap();
    let p = m.path("a.session/session");
    assert_eq!(fs::read(&p).unwrap(), b"keep me");
    assert_eq!(m.sh("cat \"$M/a.session/session\"").assert_ok(), b"keep me");
    assert_eq!(fs::read(m.path("a.session/io-logs/log")).unwrap(), b"log");

    assert_eq!(errno_of(open_write(&p)), libc::EROFS);
    assert_eq!(errno_of(open_rdwr(&p)), libc::EROFS);
    assert_eq!(errno_of(fs::create_dir(m.path("b.session"))), libc::EROFS);
    assert_eq!(
        errno_of(fs::remove_dir_all(m.path("a.session"))),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::remove_file(m.path("a.session/session.next"))),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::write(m.path("a.session/io-logs/new"), b"x")),
        libc::EROFS
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink(
            "a.session",
            m.path("last-session")
        )),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::rename(
            m.path("a.session/io-logs/log"),
            m.path("a.session/session")
        )),
        libc::EROFS
    );
    for script in [
        "echo x > \"$M/a.session/session\"",
        "echo x >> \"$M/a.session/session\"",
        "truncate -s 0 \"$M/a.session/session\"",
        "mkdir \"$M/c.session\"",
        "rm -r \"$M/a.session\"",
        "ln -sfn a.session \"$M/last-session\"",
        "chmod 600 \"$M/a.session/session\"",
        "touch \"$M/a.session/io-logs/log\"",
    ] {
        let out = m.sh(script);
        assert!(
            out.assert_fails().contains("Read-only file system"),
            "{script}: {out:?}"
        );
    }
    assert_eq!(m.checkpoint("a"), b"keep me");
    assert!(m.repo_path("a.session/io-logs/log").exists());
    assert!(!m.repo_path("b.session").exists());
    assert!(!m.repo_path("last-session").exists());
}

#[test]
fn read_only_mount_passthrough() {
    let m = Mounted::start(&["--read-only"]);
    read_only_mount(&m);
}

#[test]
fn read_only_mount_daemon_served() {
    let m = Mounted::start(&["--read-only", "--no-passthrough"]);
    read_only_mount(&m);
}
