//! The managed-jobs data model shared by the controller, its protocol and the CLI.

use serde::{Deserialize, Serialize};

/// A managed job's id, assigned by the database (ascending, never reused).
pub type JobId = u64;

/// SkyPilot's managed-job statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ManagedJobStatus {
    /// Submitted, waiting for a launch slot (or for an earlier task of its pipeline).
    Pending,
    /// Its cluster is being provisioned and the task submitted.
    Starting,
    Running,
    /// Preempted (or restarted after an error): a fresh cluster is being launched.
    Recovering,
    /// A cancel is being carried out (job cancelled, cluster torn down).
    Cancelling,
    Succeeded,
    Cancelled,
    /// The user's code exited non-zero (and no restart was left).
    Failed,
    /// The task's `setup` failed.
    FailedSetup,
    /// The task or the configuration cannot work (invalid task, credentials, quota rules).
    FailedPrechecks,
    /// No resources could be found at all (the task fits no enabled cloud).
    FailedNoResource,
    /// The controller itself failed on this job (an internal error, a lost secret file).
    FailedController,
}

impl ManagedJobStatus {
    /// Every status, in the order above.
    pub const ALL: [ManagedJobStatus; 12] = [
        Self::Pending,
        Self::Starting,
        Self::Running,
        Self::Recovering,
        Self::Cancelling,
        Self::Succeeded,
        Self::Cancelled,
        Self::Failed,
        Self::FailedSetup,
        Self::FailedPrechecks,
        Self::FailedNoResource,
        Self::FailedController,
    ];

    /// SkyPilot's name (`FAILED_SETUP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Recovering => "RECOVERING",
            Self::Cancelling => "CANCELLING",
            Self::Succeeded => "SUCCEEDED",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "FAILED",
            Self::FailedSetup => "FAILED_SETUP",
            Self::FailedPrechecks => "FAILED_PRECHECKS",
            Self::FailedNoResource => "FAILED_NO_RESOURCE",
            Self::FailedController => "FAILED_CONTROLLER",
        }
    }

    /// The status named `s` (exactly as [`ManagedJobStatus::as_str`] writes it, any case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// Terminal statuses never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Cancelled
                | Self::Failed
                | Self::FailedSetup
                | Self::FailedPrechecks
                | Self::FailedNoResource
                | Self::FailedController
        )
    }

    /// A terminal status other than SUCCEEDED and CANCELLED.
    pub fn is_failure(self) -> bool {
        self.is_terminal() && !matches!(self, Self::Succeeded | Self::Cancelled)
    }
}

impl std::fmt::Display for ManagedJobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a preempted (or lost) task's cluster is relaunched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecoveryStrategy {
    /// Relaunch anywhere but the region that was just preempted first (when the task pins
    /// no region or zone), then anywhere.
    #[default]
    EagerNextRegion,
    /// Relaunch in the same cloud and region first, then anywhere.
    Failover,
}

impl RecoveryStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EagerNextRegion => "EAGER_NEXT_REGION",
            Self::Failover => "FAILOVER",
        }
    }

    /// `EAGER_NEXT_REGION` or `FAILOVER`, any case (`-` for `_` too). The error names
    /// `job_recovery.strategy` / `--job-recovery`.
    pub fn parse(s: &str) -> Result<Self, JobsError> {
        let norm = s.trim().replace('-', "_").to_ascii_uppercase();
        match norm.as_str() {
            "EAGER_NEXT_REGION" => Ok(Self::EagerNextRegion),
            "FAILOVER" => Ok(Self::Failover),
            _ => Err(JobsError::invalid(format!(
                "unknown recovery strategy `{s}` in job_recovery.strategy / --job-recovery: use EAGER_NEXT_REGION (the default) or FAILOVER"
            ))),
        }
    }
}

impl std::fmt::Display for RecoveryStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the CLI sends: everything resolved on the client (envs, secrets, overrides applied,
/// relative paths made absolute against the YAML's directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSubmission {
    /// `-n`, else the YAML/pipeline name.
    pub name: Option<String>,
    pub user: String,
    /// One for a task, N for a pipeline (run in order).
    pub tasks: Vec<TaskSubmission>,
    /// `--job-recovery`, overriding `resources.job_recovery`.
    pub strategy: Option<RecoveryStrategy>,
    /// Seconds to keep a failed task's cluster (`--keep-on-failure 30m`).
    pub keep_on_failure: Option<u64>,
    /// Seconds (`--max-duration` or `resources.max_duration`).
    pub max_duration: Option<u64>,
    pub command_line: String,
}

/// One task of a [`JobSubmission`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskSubmission {
    pub name: Option<String>,
    /// The task as one YAML document (`sky_spec::to_yaml`), secrets redacted.
    pub yaml: String,
    /// Secret values: kept only in a 0600 file under the jobs home, removed when the job
    /// ends; never in the database or the logs.
    pub secrets: Vec<(String, String)>,
    /// The REQUESTED column, e.g. `1x[CPU:1+]`.
    pub requested: String,
}

/// One job as `sky jobs queue` shows it (a pipeline has one [`TaskView`] per task).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: JobId,
    pub name: String,
    pub user: String,
    pub status: ManagedJobStatus,
    pub submitted_at: i64,
    pub ended_at: Option<i64>,
    pub failure_reason: Option<String>,
    /// Sum over the tasks.
    pub recovery_count: u32,
    pub job_duration_s: u64,
    pub total_duration_s: u64,
    pub tasks: Vec<TaskView>,
}

/// One task of a [`JobView`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub index: u32,
    pub name: String,
    pub requested: String,
    pub status: ManagedJobStatus,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub job_duration_s: u64,
    pub recovery_count: u32,
    pub restarts: u32,
    pub failure_reason: Option<String>,
    /// `<task name[:25]>-<job id>`.
    pub cluster: Option<String>,
    /// `local/us-local (us-local-a)`.
    pub infra: Option<String>,
}

/// Which jobs `queue` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueQuery {
    /// Every user's jobs (else only `user`'s, or all when `user` is `None`).
    pub all_users: bool,
    /// Leave out terminal jobs.
    pub skip_finished: bool,
    pub user: Option<String>,
    /// Only these ids (empty: any).
    pub ids: Vec<JobId>,
}

/// Which jobs `cancel` cancels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelSelector {
    pub ids: Vec<JobId>,
    pub name: Option<String>,
    /// Every non-terminal job (of `user` when set).
    pub all: bool,
    pub user: Option<String>,
}

/// What kind of failure a [`JobsError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobsErrorKind {
    /// Bad input: an invalid task, an unknown strategy (exit 3).
    InvalidInput,
    /// An unknown job id or name (exit 3).
    NotFound,
    /// The state database failed.
    State,
    /// Local IO failed (the jobs home, a log or secret file).
    Io,
    /// The controller cannot start or is unreachable.
    Controller,
    /// A cluster driver call failed.
    Driver,
}

/// The managed-jobs error: `Display` is a lowercase fragment that names the job or field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct JobsError {
    pub kind: JobsErrorKind,
    pub message: String,
}

impl JobsError {
    pub fn new(kind: JobsErrorKind, message: impl Into<String>) -> Self {
        JobsError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(JobsErrorKind::InvalidInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(JobsErrorKind::NotFound, message)
    }
    pub fn io(what: &str, e: std::io::Error) -> Self {
        Self::new(JobsErrorKind::Io, format!("{what}: {e}"))
    }
    pub fn state(e: impl std::fmt::Display) -> Self {
        Self::new(JobsErrorKind::State, format!("jobs state database: {e}"))
    }
}

/// The cluster name of task `task_name` of job `id`: SkyPilot's `<name[:25]>-<id>`, the name
/// lowercased and made a valid cluster name (letters, digits and `-`, starting with a
/// letter); an empty name is `sky-managed`.
pub fn cluster_name(task_name: &str, id: JobId) -> String {
    let mut s: String = task_name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    while s.starts_with(|c: char| !c.is_ascii_alphabetic()) && !s.is_empty() {
        s.remove(0);
    }
    let mut s: String = s.chars().take(25).collect();
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        s = "sky-managed".to_string();
    }
    format!("{s}-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_by_name_and_serde() {
        for s in ManagedJobStatus::ALL {
            assert_eq!(ManagedJobStatus::parse(s.as_str()), Some(s));
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(j, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(
            ManagedJobStatus::parse("failed_no_resource"),
            Some(ManagedJobStatus::FailedNoResource)
        );
        assert_eq!(ManagedJobStatus::parse("DONE"), None);
        let terminal: Vec<_> = ManagedJobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal.len(), 7);
        assert!(!ManagedJobStatus::Cancelling.is_terminal());
        assert!(!ManagedJobStatus::Cancelled.is_failure());
        assert!(ManagedJobStatus::FailedController.is_failure());
    }

    #[test]
    fn strategy_parse() {
        assert_eq!(
            RecoveryStrategy::parse("eager_next_region").unwrap(),
            RecoveryStrategy::EagerNextRegion
        );
        assert_eq!(
            RecoveryStrategy::parse("FAILOVER").unwrap(),
            RecoveryStrategy::Failover
        );
        let e = RecoveryStrategy::parse("SOMETIMES").unwrap_err();
        assert_eq!(e.kind, JobsErrorKind::InvalidInput);
        assert!(e.message.contains("job_recovery.strategy"), "{e}");
        assert!(e.message.contains("--job-recovery"), "{e}");
    }

    #[test]
    fn cluster_names() {
        assert_eq!(cluster_name("train", 7), "train-7");
        assert_eq!(
            cluster_name("a-very-long-task-name-that-goes-on", 12),
            "a-very-long-task-name-tha-12"
        );
        assert_eq!(cluster_name("My_Task", 3), "my-task-3");
        assert_eq!(cluster_name("", 3), "sky-managed-3");
        assert_eq!(cluster_name("123", 3), "sky-managed-3");
    }
}
