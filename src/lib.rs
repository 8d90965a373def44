//! sessionfs keeps application sessions on disk, in a repository shared
//! with Checkbox/Plainbox, and shows them as a FUSE filesystem.
//!
//! - [`core`]: the storage library (repository, atomic checkpoints, locks);
//!   it never depends on FUSE;
//! - [`cli`] and [`app`]: the `sessionfs` command line.

pub mod app;
pub mod checkbox;
pub mod cli;
pub mod core;
pub mod decode;
pub mod docs;
pub mod exit_codes;
pub mod fs;
pub mod helper;
pub mod list;
pub mod mount;
