//! `sessionfs`: parse the command line, run it, print one line on error.

use clap::Parser;

use sessionfs::{app, cli::Cli, exit_codes};

fn main() {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
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
