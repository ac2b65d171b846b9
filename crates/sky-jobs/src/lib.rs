//! Managed jobs: a controller that provisions a cluster for each task of a submitted job,
//! watches it, recovers it from preemption and failures (`EAGER_NEXT_REGION`, `FAILOVER`,
//! `max_restarts_on_errors`, `recover_on_exit_codes`), runs pipelines task after task, and
//! cleans up. The decisions are a pure, idempotent state machine ([`reconcile`]); the effects
//! go through a [`ClusterDriver`] (the real one, [`LaunchDriver`], drives `sky_launch`); the
//! truth is in `sky-state`, written before every effect so a killed controller resumes every
//! job on restart without running a task twice or leaking a cluster.

pub mod client;
mod controller;
pub mod daemon;
pub mod dashboard;
mod driver;
pub mod fake;
mod logs;
mod model;
pub mod protocol;
pub mod reconcile;
pub mod server;

pub use client::{ControllerInfo, JobsClient};
pub use controller::{Controller, ControllerConfig};
pub use daemon::DaemonOptions;
pub use driver::{
    Blocked, ClusterDriver, ClusterHealth, ClusterJob, DriverError, DriverErrorKind, DriverLaunch,
    DriverLaunched, LaunchDriver, Probe,
};
pub use model::*;
