//! sessionfs keeps application sessions on disk, in a repository shared
//! with Checkbox/Plainbox, and shows them as a FUSE filesystem.
//!
//! The layers, each importing only those before it (`tests/layering.rs`
//! checks it):
//!
//! 1. [`core`]: the storage library (repository, atomic checkpoints, locks,
//!    the system calls under them); it never depends on FUSE;
//! 2. [`decode`] and [`checkbox`]: checkpoints as pretty-printed JSON, and
//!    what a Checkbox checkpoint and its job logs say, pure;
//! 3. [`fs`]: the filesystem, as plain requests and results;
//! 4. `mount::adapter`: fuser's callbacks onto [`fs`];
//! 5. [`mount`]: the mount daemon's life cycle;
//! 6. `commands` (and [`exit_codes`]): what each command does, from a
//!    plain configuration;
//! 7. [`cli`], `docs` and [`helper`]: the command line (clap) and the
//!    mount(8) helper;
//! 8. `main`.

pub mod checkbox;
pub mod cli;
mod commands;
pub mod core;
pub mod decode;
mod docs;
pub mod exit_codes;
pub mod fs;
pub mod helper;
pub mod mount;
