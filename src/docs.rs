//! Shell completions and manual pages, rendered from a clap definition of
//! the command line (`crate::cli` hands its own), so they never drift from
//! the real command line. This is the bottom of the command-line layer: it
//! knows clap, not the commands, and not which definition it renders.

use std::io::{self, Write};
use std::path::Path;

use clap_complete::Shell;

/// The program name completions and pages are made for.
const BIN_NAME: &str = "sessionfs";

/// Writes the completion script of `cmd` for `shell`.
pub fn completions(mut cmd: clap::Command, shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    // clap_complete panics on a broken writer; render into memory first.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN_NAME, &mut buf);
    out.write_all(&buf)?;
    out.flush()
}

/// Writes the manual page of `cmd` (section 1, roff).
pub fn man_page(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(cmd).render(out)?;
    out.flush()
}

/// Writes `sessionfs.1` and one `sessionfs-COMMAND.1` per command of `cmd`
/// into `dir` (created if missing).
pub fn man_pages(cmd: clap::Command, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)
}
