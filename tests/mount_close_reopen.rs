//! Closing `session` through a real mount never leaves the next open EBUSY
//! (the kernel sends RELEASE only after `close()` returned): the sequences
//! of shells and of fsx, 1,000 times each, in both I/O modes. A writer
//! whose data is not committed yet still makes a second writer get EBUSY.

mod common;

use std::process::Command;

use common::mount::{Mounted, run};

const LOOPS: usize = 1_000;

/// Runs `script` with bash, `$F` being session `a`'s `session` file.
fn bash(m: &Mounted, script: &str) -> common::mount::Ran {
    run(Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("F", m.path("a.session/session"))
        .env("LOOPS", LOOPS.to_string()))
}

both_modes! {
    fn shell_truncate_rdwr_and_redirections_never_find_the_session_busy(m) {
        m.new_session("a");
        m.save("a", b"old checkpoint\n");
        let ran = bash(m, r##"
            set -u
            for i in $(seq "$LOOPS"); do
                : > "$F" || { echo "#$i: ': > session' failed"; exit 1; }
                c=$(cat "$F")
                [ -z "$c" ] || { echo "#$i: after ': > session' it reads '$c'"; exit 1; }
                echo "x$i" > "$F" || { echo "#$i: echo after ': >' failed"; exit 1; }
                exec 3<>"$F" || { echo "#$i: exec 3<> failed"; exit 1; }
                read -r l <&3
                [ "$l" = "x$i" ] || { echo "#$i: read '$l' through 3<>"; exit 1; }
                exec 3>&-
                echo "y$i" > "$F" || { echo "#$i: echo after 'exec 3>&-' failed"; exit 1; }
                /bin/echo "z$i" > "$F" || { echo "#$i: /bin/echo failed"; exit 1; }
                [ "$(cat "$F")" = "z$i" ] || { echo "#$i: reads '$(cat "$F")'"; exit 1; }
            done
            echo ok
        "##);
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            "ok\n",
            "stderr: {}",
            ran.stderr
        );
        assert_eq!(m.checkpoint("a"), format!("z{LOOPS}\n").as_bytes());
        m.assert_no_next();
    }

    fn fsync_then_close_then_reopen_never_finds_the_session_busy(m) {
        m.new_session("a");
        m.save("a", b"");
        // fsx's close/reopen: write, fsync (or fdatasync), read, mmap read,
        // close, reopen O_RDWR.
        let ran = run(Command::new("python3")
            .arg("-c")
            .arg(
                "import mmap, os, sys\n\
                 p, n = sys.argv[1], int(sys.argv[2])\n\
                 for i in range(n):\n\
                 \x20   fd = os.open(p, os.O_RDWR)\n\
                 \x20   rec = b'%08d' % i\n\
                 \x20   os.pwrite(fd, rec, i * 8)\n\
                 \x20   (os.fsync if i % 2 else os.fdatasync)(fd)\n\
                 \x20   assert os.pread(fd, 8, i * 8) == rec, i\n\
                 \x20   with mmap.mmap(fd, (i + 1) * 8, prot=mmap.PROT_READ) as mm:\n\
                 \x20       assert mm[i * 8:] == rec, i\n\
                 \x20   os.close(fd)\n\
                 \x20   fd = os.open(p, os.O_RDWR)\n\
                 \x20   os.close(fd)\n\
                 print('ok')\n",
            )
            .arg(m.path("a.session/session"))
            .arg(LOOPS.to_string()));
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            "ok\n",
            "stderr: {}",
            ran.stderr
        );
        let want: String = (0..LOOPS).map(|i| format!("{i:08}")).collect();
        assert_eq!(m.checkpoint("a"), want.as_bytes());
        m.assert_no_next();
    }

    fn a_program_truncating_with_one_close_never_makes_the_next_open_busy(m) {
        m.new_session("a");
        m.save("a", b"old checkpoint");
        // `open(F, "w").close()` closes once: its empty checkpoint is
        // committed at RELEASE, after close() returned, while the next
        // open may already be on its way; it waits that commit out.
        let ran = run(Command::new("python3")
            .arg("-c")
            .arg(
                "import sys\n\
                 p, n = sys.argv[1], int(sys.argv[2])\n\
                 for i in range(n):\n\
                 \x20   open(p, 'w').close()\n\
                 \x20   with open(p, 'w') as f:\n\
                 \x20       f.write('x%d' % i)\n\
                 \x20   got = open(p).read()\n\
                 \x20   assert got == 'x%d' % i, (i, got)\n\
                 \x20   with open(p, 'r+') as f:\n\
                 \x20       f.read()\n\
                 print('ok')\n",
            )
            .arg(m.path("a.session/session"))
            .arg(LOOPS.to_string()));
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            "ok\n",
            "stderr: {}",
            ran.stderr
        );
        assert_eq!(m.checkpoint("a"), format!("x{}", LOOPS - 1).as_bytes());
        m.assert_no_next();
    }

    fn a_writer_with_uncommitted_data_still_refuses_a_second_one(m) {
        m.new_session("a");
        m.save("a", b"old");
        // One descriptor closed, a dup of it still open and written (not
        // through a shell, whose redirections close their dups at once):
        // the second writer is refused until the dup's close commits.
        let ran = run(Command::new("python3")
            .arg("-c")
            .arg(
                "import errno, os, sys\n\
                 p = sys.argv[1]\n\
                 fd = os.open(p, os.O_RDWR)\n\
                 dup = os.dup(fd)\n\
                 os.close(fd)\n\
                 os.write(dup, b'held')\n\
                 try:\n\
                 \x20   os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))\n\
                 \x20   print('second writer got in')\n\
                 except OSError as e:\n\
                 \x20   print('refused' if e.errno == errno.EBUSY else 'errno %d' % e.errno)\n\
                 os.close(dup)\n\
                 print(open(p).read())\n",
            )
            .arg(m.path("a.session/session")));
        let stdout = String::from_utf8_lossy(&ran.stdout);
        // With passthrough the kernel writes the dup's file without the
        // daemon, which cannot take the lock again before the dup's close
        // (see the checkpoint module's doc): the second writer's
        // checkpoint is then replaced by the dup's at that close.
        let served = m.log_text().contains("session file I/O: served by the daemon");
        let want = if served { "refused\nheld\n" } else { "second writer got in\nheld\n" };
        assert_eq!(stdout, want, "stderr: {}", ran.stderr);
        assert_eq!(m.checkpoint("a"), b"held");
        m.assert_no_next();
    }
}
