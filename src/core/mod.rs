//! The storage core: a plainbox-compatible session repository with
//! crash-safe atomic checkpoints. It knows nothing of FUSE.

pub mod calendar;
pub mod duration;
pub mod error;
mod lock;
pub mod manager;
pub mod name;
pub mod repo;
mod repo_dir;
pub mod seam;
pub mod storage;
pub mod sys;
pub mod writer;

pub use error::{Error, NameProblem, Op, Result};
pub use lock::is_checkpoint_temporary;
pub use manager::{RepositoryStore, SessionManager, SessionState, SessionStore};
pub use name::{CHECKBOX_REPOSITORY, Layout, SessionName};
pub use repo::{DEFAULT_PREFIX, LAST_SESSION_LINK, NewSession, Repository, SessionEntry};
pub use seam::{FailStep, FaultSeam, NoFaults, Step};
pub use storage::{
    BeginOptions, CheckpointInfo, LockState, SESSION_FILE, SESSION_NEXT_FILE, Start, Storage,
    WELL_KNOWN_DIRS, is_nfs_leftover,
};
pub use writer::CheckpointWriter;
