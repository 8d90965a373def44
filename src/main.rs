//! `sessionfs`: parse the command line, run it, print one line on error,
//! exit with one of the codes `--help` documents ([`exit_codes`]).

use sessionfs::{cli, exit_codes, helper};

fn main() {
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
