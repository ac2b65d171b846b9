//! The commands, one module per command group. Each takes the [`HostEnv`](crate::HostEnv) and
//! its parsed arguments and returns the process's exit code; they use the shared services
//! (`backend`, `clouds`, `table`, ...) and never each other.

pub mod agent;
pub mod check;
pub mod cluster;
pub mod gpus;
pub mod jobs;
pub mod launch;
pub mod queue;
pub mod ssh;
pub mod validate;
