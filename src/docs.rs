//! Shell completions and manual pages, generated from the clap definitions
//! in [`crate::cli`], so they never drift from the real command line (this
//! is part of the command-line layer: the commands never see clap).

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The program name completions and pages are made for.
pub const BIN_NAME: &str = "sessionfs";

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    // clap_complete panics on a broken writer; render into memory first.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN_NAME, &mut buf);
    out.write_all(&buf)?;
    out.flush()
}

/// Writes the manual page of `sessionfs` (section 1, roff).
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)?;
    out.flush()
}

/// Writes `sessionfs.1` and one `sessionfs-COMMAND.1` per command into
/// `dir` (created if missing).
pub fn man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
