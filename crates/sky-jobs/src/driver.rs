//! The seam between the controller and clusters: [`ClusterDriver`], and [`LaunchDriver`], the
//! real one over `sky_launch::Backend`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use sky_launch::Blocked;

/// What the controller asks of clusters. Every method is idempotent where it can be (a
/// `down` of an absent cluster is `Ok`), and cancel-safe by drop.
#[async_trait]
pub trait ClusterDriver: Send + Sync + 'static {
    /// Provisions `req.cluster` (failover, never into `req.blocked`; `req.region` pins
    /// cloud+region for FAILOVER's first try) and submits the task's job named `req.job_name`
    /// with `req.envs` added.
    async fn launch(
        &self,
        req: &DriverLaunch,
        cancel: &CancellationToken,
    ) -> Result<DriverLaunched, DriverError>;
    /// Refreshes the cluster from the cloud and asks the head for the job.
    async fn probe(&self, cluster: &str, cluster_job_id: u64) -> Result<Probe, DriverError>;
    /// The cluster job submitted under `job_name`, if any (after a controller crash between
    /// submit and record).
    async fn find_job(&self, cluster: &str, job_name: &str) -> Result<Option<u64>, DriverError>;
    async fn cancel_job(&self, cluster: &str, cluster_job_id: u64) -> Result<(), DriverError>;
    /// Tears the cluster down; an absent cluster is `Ok`.
    async fn down(&self, cluster: &str) -> Result<(), DriverError>;
    /// Appends the job's run log to `out` (from its current length) until the job ends (or
    /// `cancel`).
    async fn stream_logs(
        &self,
        cluster: &str,
        cluster_job_id: u64,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), DriverError>;
}

/// One launch of a task's cluster.
#[derive(Clone, Debug)]
pub struct DriverLaunch {
    pub cluster: String,
    pub task: sky_spec::Task,
    /// The cluster job's name: unique per task attempt (`<job id>-<task>-<attempt>`), so
    /// [`ClusterDriver::find_job`] finds exactly this attempt's job.
    pub job_name: String,
    /// Added to the task's envs (`SKYPILOT_TASK_ID`, `SKYPILOT_MANAGED_JOB_ID`, secrets).
    pub envs: Vec<(String, String)>,
    /// Keys of `envs` whose values are secrets.
    pub secret_keys: Vec<String>,
    pub blocked: Vec<Blocked>,
    /// `(cloud, region)` to try first (FAILOVER's first relaunch).
    pub region: Option<(String, String)>,
}

/// Where a launch landed, and its cluster job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverLaunched {
    pub cloud: String,
    pub region: String,
    pub zone: Option<String>,
    pub cluster_job_id: u64,
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub cluster: ClusterHealth,
    /// `None`: the head has no such job (or the cluster is not up).
    pub job: Option<ClusterJob>,
    /// The cloud announced a preemption of the cluster's nodes.
    pub preemption_notice: bool,
}

/// The cluster as its cloud reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClusterHealth {
    Up,
    /// Stopped, preempted or partly gone.
    NotUp,
    /// No instance left.
    Gone,
}

/// The task's cluster job as the head reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterJob {
    pub status: sky_agent::JobStatus,
    /// One per rank of the phase that ended the job.
    pub exit_codes: Vec<i32>,
}

/// What kind of failure a [`DriverError`] is: the controller's decisions branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DriverErrorKind {
    /// Auth, an invalid configuration or task: FAILED_PRECHECKS.
    Precheck,
    /// No capacity anywhere (right now): retried with backoff.
    NoResources,
    /// The cluster or its agent did not answer: retried.
    Transient,
    /// The operation was cancelled through its token.
    Cancelled,
    Other,
}

/// A driver failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub kind: DriverErrorKind,
    pub message: String,
}

impl DriverError {
    pub fn new(kind: DriverErrorKind, message: impl Into<String>) -> Self {
        DriverError {
            kind,
            message: message.into(),
        }
    }
}

/// The real driver: clusters through `sky_launch::Backend`.
pub struct LaunchDriver {
    backend: Arc<sky_launch::Backend>,
}

impl std::fmt::Debug for LaunchDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchDriver").finish_non_exhaustive()
    }
}

impl LaunchDriver {
    pub fn new(backend: Arc<sky_launch::Backend>) -> Self {
        LaunchDriver { backend }
    }

    pub fn backend(&self) -> &Arc<sky_launch::Backend> {
        &self.backend
    }
}

fn not_built() -> DriverError {
    DriverError::new(DriverErrorKind::Other, "the launch driver is not built yet")
}

#[async_trait]
impl ClusterDriver for LaunchDriver {
    async fn launch(
        &self,
        _req: &DriverLaunch,
        _cancel: &CancellationToken,
    ) -> Result<DriverLaunched, DriverError> {
        Err(not_built())
    }
    async fn probe(&self, _cluster: &str, _cluster_job_id: u64) -> Result<Probe, DriverError> {
        Err(not_built())
    }
    async fn find_job(&self, _cluster: &str, _job_name: &str) -> Result<Option<u64>, DriverError> {
        Err(not_built())
    }
    async fn cancel_job(&self, _cluster: &str, _cluster_job_id: u64) -> Result<(), DriverError> {
        Err(not_built())
    }
    async fn down(&self, _cluster: &str) -> Result<(), DriverError> {
        Err(not_built())
    }
    async fn stream_logs(
        &self,
        _cluster: &str,
        _cluster_job_id: u64,
        _out: &Path,
        _cancel: &CancellationToken,
    ) -> Result<(), DriverError> {
        Err(not_built())
    }
}
