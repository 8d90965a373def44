pub mod fs_driver;
pub mod fs_helpers;
pub mod mount;
pub mod repo;
pub mod users;
