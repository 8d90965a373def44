//! `sessionfs`: parse the command line, run it, print one line on error,
//! exit with one of the codes `--help` documents ([`exit_codes`]).

use sessionfs::{cli, exit_codes, helper};

fn main() {
    tune_malloc();
    // Started by mount(8) as /sbin/mount.fuse.sessionfs, or by fuse(8) as
    // `sessionfs REPO MOUNTPOINT -o OPTS`: run `sessionfs mount` instead.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match helper::rewrite(&args) {
        None => {}
        Some(Ok(args)) => {
            let e = helper::exec(args);
            eprintln!("sessionfs: error: cannot run sessionfs mount: {e}");
            std::process::exit(exit_codes::FAILURE);
        }
        Some(Err(usage)) => {
            eprintln!("sessionfs: error: {usage}");
            std::process::exit(exit_codes::USAGE);
        }
    }
    let command_line = cli::parse(args);
    cli::init_logging(&command_line);
    let code = match cli::run(command_line) {
        Ok(()) => exit_codes::SUCCESS,
        Err(e) => {
            if !e.already_reported() {
                eprintln!("sessionfs: error: {e}");
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// glibc's allocator, set for a daemon whose tables grow with what the
/// kernel holds (a `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` set in the
/// environment wins over each setting):
///
/// - One arena. A mount's daemon serves requests on several threads, and
///   glibc gives each thread an arena of its own (up to eight per core):
///   memory freed in one arena is reused only by the threads of that
///   arena, so the transient buffers of requests and the inode table's
///   growth left free memory resident in every arena (after `find` over
///   100,000 sessions, 79 MiB resident with the default arenas, 61–82 MiB
///   with two, 41 MiB with one). One is enough: the table is behind one
///   mutex anyway, and glibc's per-thread caches serve most small
///   allocations without its lock.
/// - A fixed mmap threshold of 2 MiB. By default glibc raises the
///   threshold to the size of every mapped block freed, so once a hash
///   table of a few MiB has grown (the old one freed), the next, bigger
///   ones come from the heap, and the holes they leave stay resident.
///   Fixed, blocks past 2 MiB (only tables that large) are mapped and
///   go back to the system when freed; request and reply buffers (at most
///   1 MiB) stay on the heap. After `find` over 100,000 sessions the
///   daemon's peak resident memory is 59 MiB, 67 MiB without it.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets a parameter of glibc's allocator,
            // and runs here before any other thread of the process exists.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
            }
        }
    }
}
