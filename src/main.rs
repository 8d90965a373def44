//! `sessionfs`: parse the command line, run it, print one line on error.

use clap::Parser;

use sessionfs::{app, cli::Cli, exit_codes};

fn main() {
    // Started by mount(8) as /sbin/mount.fuse.sessionfs, or by fuse(8) as
    // `sessionfs REPO MOUNTPOINT -o OPTS`: run `sessionfs mount` instead.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match sessionfs::helper::rewrite(&args) {
        None => {}
        Some(Ok(args)) => {
            let e = sessionfs::helper::exec(args);
            eprintln!("sessionfs: error: cannot run sessionfs mount: {e}");
            std::process::exit(exit_codes::FAILURE);
        }
        Some(Err(usage)) => {
            eprintln!("sessionfs: error: {usage}");
            std::process::exit(exit_codes::USAGE);
        }
    }
    let cli = Cli::parse_from(args);
    // A mount daemon reports its choices and refusals at info.
    let quiet = if matches!(&cli.command, sessionfs::cli::Command::Mount(m) if m.foreground) {
        "info"
    } else {
        "warn"
    };
    let level = match cli.verbose {
        0 => quiet,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let mut logger = env_logger::Builder::new();
    logger.format_timestamp_millis();
    match std::env::var("RUST_LOG") {
        Ok(filter) => {
            logger.parse_filters(&filter);
        }
        Err(_) => {
            // fuser reports every operation it does not implement (such as
            // security xattr probes) and the unmount it finds already done.
            logger
                .parse_filters(level)
                .filter_module("fuser", log::LevelFilter::Error);
        }
    }
    logger.init();
    let code = match app::run(cli) {
        Ok(()) => exit_codes::SUCCESS,
        Err(e) => {
            if !matches!(e, app::AppError::Partial { .. }) {
                eprintln!("sessionfs: error: {e}");
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}
