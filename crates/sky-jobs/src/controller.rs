//! The controller's runtime: one tokio task per active job running the reconcile loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sky_state::StateDb;

use crate::driver::ClusterDriver;
use crate::model::*;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// `$SKY_HOME/jobs`: `logs/<id>/<task>.log`, `logs/<id>/controller.log`,
    /// `secrets/<id>.json`.
    pub home: PathBuf,
    /// Default 4 (env `SKY_JOBS_MAX_LAUNCHES`).
    pub max_concurrent_launches: usize,
    /// Default 5 s (env `SKY_JOBS_POLL_SECONDS`).
    pub poll_interval: Duration,
    /// Initial and maximum wait between launch retries when no capacity is found: default
    /// (30 s, 300 s) (env `SKY_JOBS_RETRY_SECONDS` = initial).
    pub retry_backoff: (Duration, Duration),
    /// After a user-code failure, wait this then re-probe before calling it FAILED (a
    /// preemption that killed the job shows up meanwhile). Default 5 s.
    pub failure_grace: Duration,
}

impl ControllerConfig {
    /// The defaults, overridden by the `SKY_JOBS_*` variables `vars` returns.
    pub fn from_env(home: PathBuf, vars: &dyn Fn(&str) -> Option<String>) -> Self {
        let secs = |name: &str| {
            vars(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Duration::from_secs_f64)
        };
        let initial = secs("SKY_JOBS_RETRY_SECONDS").unwrap_or(Duration::from_secs(30));
        ControllerConfig {
            home,
            max_concurrent_launches: vars("SKY_JOBS_MAX_LAUNCHES")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(4),
            poll_interval: secs("SKY_JOBS_POLL_SECONDS").unwrap_or(Duration::from_secs(5)),
            retry_backoff: (initial, Duration::from_secs(300).max(initial)),
            failure_grace: Duration::from_secs(5),
        }
    }
}

/// The managed-jobs controller.
pub struct Controller {
    cfg: ControllerConfig,
    #[allow(dead_code)]
    state: StateDb,
    #[allow(dead_code)]
    driver: Arc<dyn ClusterDriver>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("home", &self.cfg.home)
            .finish_non_exhaustive()
    }
}

fn not_built() -> JobsError {
    JobsError::new(JobsErrorKind::Controller, "the controller is not built yet")
}

impl Controller {
    /// Resumes every non-terminal job found in the database (none started twice, no cluster
    /// leaked).
    pub async fn start(
        cfg: ControllerConfig,
        state: StateDb,
        driver: Arc<dyn ClusterDriver>,
    ) -> Result<Arc<Controller>, JobsError> {
        let (changes, _) = tokio::sync::watch::channel(0);
        Ok(Arc::new(Controller {
            cfg,
            state,
            driver,
            changes,
        }))
    }

    /// Validates (every task parses; the strategy is known), records the job atomically and
    /// starts its loop.
    pub async fn submit(&self, _sub: JobSubmission) -> Result<JobId, JobsError> {
        Err(not_built())
    }

    /// Ascending id.
    pub async fn queue(&self, _q: &QueueQuery) -> Result<Vec<JobView>, JobsError> {
        Err(not_built())
    }

    pub async fn job(&self, _id: JobId) -> Result<Option<JobView>, JobsError> {
        Err(not_built())
    }

    /// `NotFound` names an unknown id; already-terminal ids are reported, not an error.
    pub async fn cancel(&self, _sel: &CancelSelector) -> Result<Vec<JobId>, JobsError> {
        Err(not_built())
    }

    /// Task `task`'s run log (kept after the job and its cluster are gone).
    pub fn log_path(&self, id: JobId, task: u32) -> PathBuf {
        self.cfg
            .home
            .join("logs")
            .join(id.to_string())
            .join(format!("{task}.log"))
    }

    /// The job's controller-side events, human-readable lines.
    pub fn controller_log_path(&self, id: JobId) -> PathBuf {
        self.cfg
            .home
            .join("logs")
            .join(id.to_string())
            .join("controller.log")
    }

    /// Bumped on every status change.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Non-terminal jobs.
    pub fn active_jobs(&self) -> usize {
        0
    }

    /// Stops the loops without changing job states (a restart resumes them).
    pub async fn shutdown(&self) {}
}
