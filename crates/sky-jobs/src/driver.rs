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
    /// No placement exists at all for the task's resources on the enabled clouds (nothing
    /// was tried): FAILED_NO_RESOURCE.
    Infeasible,
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

/// The launcher's error as the controller branches on it.
pub fn map_launch_error(e: &sky_launch::LaunchError) -> DriverError {
    use sky_launch::LaunchErrorKind as L;
    let kind = match e.kind {
        L::InvalidTask | L::FailoverStopped | L::AgentRefused => DriverErrorKind::Precheck,
        L::NoResources => DriverErrorKind::NoResources,
        L::Cancelled => DriverErrorKind::Cancelled,
        L::Agent | L::Unreachable | L::Provider | L::Runtime | L::State | L::Io => {
            DriverErrorKind::Transient
        }
        _ => DriverErrorKind::Other,
    };
    DriverError::new(kind, e.to_string())
}

/// The task a launch submits: named after the attempt, the controller's envs and secrets
/// added (a value given here wins over the task's), pinned to `region` when asked.
pub fn task_for_launch(req: &DriverLaunch) -> sky_spec::Task {
    let mut task = req.task.clone();
    task.name = Some(req.job_name.clone());
    for (k, v) in &req.envs {
        if req.secret_keys.contains(k) {
            task.secrets.insert(k.clone(), v.clone());
        } else {
            task.envs.insert(k.clone(), v.clone());
        }
    }
    if let Some((cloud, region)) = &req.region {
        let pin = |r: &mut sky_spec::Resources| {
            r.cloud = Some(cloud.clone());
            r.region = Some(region.clone());
        };
        match &mut task.resources {
            sky_spec::ResourceChoice::Single(r) => pin(r),
            sky_spec::ResourceChoice::AnyOf(v) | sky_spec::ResourceChoice::Ordered(v) => {
                v.retain(|r| r.cloud.as_deref().is_none_or(|c| c == cloud));
                v.iter_mut().for_each(pin);
            }
        }
    }
    task
}

fn is_absent(e: &sky_launch::LaunchError) -> bool {
    e.kind == sky_launch::LaunchErrorKind::NoSuchCluster
}

#[async_trait]
impl ClusterDriver for LaunchDriver {
    async fn launch(
        &self,
        req: &DriverLaunch,
        cancel: &CancellationToken,
    ) -> Result<DriverLaunched, DriverError> {
        let lr = sky_launch::LaunchRequest {
            blocked: req.blocked.clone(),
            command_line: format!("sky jobs launch (managed job task {})", req.job_name),
            ..sky_launch::LaunchRequest::new(task_for_launch(req), req.cluster.clone())
        };
        let l = self
            .backend
            .launch(&lr, cancel, &sky_launch::Quiet)
            .await
            .map_err(|e| {
                let mut d = map_launch_error(&e);
                // The optimizer found no placement before any try, with nothing blocked or
                // pinned by the controller: retrying cannot help.
                if d.kind == DriverErrorKind::NoResources
                    && e.history.is_empty()
                    && req.blocked.is_empty()
                    && req.region.is_none()
                {
                    d.kind = DriverErrorKind::Infeasible;
                }
                d
            })?;
        let p = &l.handle.provider;
        Ok(DriverLaunched {
            cloud: p.cloud.clone(),
            region: p.region.clone(),
            zone: p.zone.clone(),
            cluster_job_id: l.job_id,
        })
    }

    async fn probe(&self, cluster: &str, cluster_job_id: u64) -> Result<Probe, DriverError> {
        let token = CancellationToken::new();
        let rec = match self
            .backend
            .refresh(cluster, &token, &sky_launch::Quiet)
            .await
        {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                return Ok(Probe {
                    cluster: ClusterHealth::Gone,
                    job: None,
                    preemption_notice: false,
                });
            }
            Err(e) if is_absent(&e) => {
                return Ok(Probe {
                    cluster: ClusterHealth::Gone,
                    job: None,
                    preemption_notice: false,
                });
            }
            Err(e) => return Err(map_launch_error(&e)),
        };
        let handle = sky_launch::Backend::stored_handle(&rec).map_err(|e| map_launch_error(&e))?;
        let preemption_notice = match self.backend.registry.get(&handle.provider.cloud) {
            Some(p) => matches!(p.preemption_notice(&handle.provider).await, Ok(Some(_))),
            None => false,
        };
        if rec.status != sky_state::ClusterStatus::Up {
            return Ok(Probe {
                cluster: ClusterHealth::NotUp,
                job: None,
                preemption_notice,
            });
        }
        let jobs = self
            .backend
            .queue(cluster, true)
            .await
            .map_err(|e| map_launch_error(&e))?;
        let job = jobs
            .into_iter()
            .find(|j| j.id == cluster_job_id)
            .map(|j| ClusterJob {
                status: j.status,
                exit_codes: j.exit_codes,
            });
        Ok(Probe {
            cluster: ClusterHealth::Up,
            job,
            preemption_notice,
        })
    }

    async fn find_job(&self, cluster: &str, job_name: &str) -> Result<Option<u64>, DriverError> {
        match self.backend.record(cluster).await {
            Ok(rec) if rec.status == sky_state::ClusterStatus::Up => {}
            Ok(_) => return Ok(None),
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(map_launch_error(&e)),
        }
        let jobs = self
            .backend
            .queue(cluster, true)
            .await
            .map_err(|e| map_launch_error(&e))?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.name.as_deref() == Some(job_name))
            .map(|j| j.id)
            .max())
    }

    async fn cancel_job(&self, cluster: &str, cluster_job_id: u64) -> Result<(), DriverError> {
        match self
            .backend
            .cancel(cluster, vec![cluster_job_id], false)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(map_launch_error(&e)),
        }
    }

    async fn down(&self, cluster: &str) -> Result<(), DriverError> {
        let token = CancellationToken::new();
        match self
            .backend
            .down(cluster, false, &token, &sky_launch::Quiet)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(map_launch_error(&e)),
        }
    }

    async fn stream_logs(
        &self,
        cluster: &str,
        cluster_job_id: u64,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), DriverError> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| {
                DriverError::new(
                    DriverErrorKind::Other,
                    format!("cannot open the job log {}: {e}", out.display()),
                )
            })?;
        let mut sink = |b: &[u8]| {
            let _ = f.write_all(b);
        };
        let follow = self
            .backend
            .logs(cluster, Some(cluster_job_id), true, None, &mut sink);
        tokio::select! {
            r = follow => r.map(drop).map_err(|e| map_launch_error(&e)),
            () = cancel.cancelled() => Ok(()),
        }
    }
}
