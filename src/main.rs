//! `sessionfs`: parse the command line, run it, print one line on error.

use clap::Parser;

use sessionfs::{app, cli::Cli, exit_codes};

fn main() {
    let cli = Cli::parse();
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
