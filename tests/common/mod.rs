pub mod mount;
pub mod repo;
