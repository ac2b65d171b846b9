//! The backend's one error type: [`LaunchError`], typed so a caller (the CLI, a managed-jobs
//! controller) branches on data, not on messages.

use sky_provider::{FailureScope, ProvisionError};

use crate::{exit, failover::Attempt};

/// What kind of failure a [`LaunchError`] is. New kinds may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LaunchErrorKind {
    /// The task, a name or an option cannot work (or does not fit the cluster); nothing was
    /// changed because of it.
    InvalidTask,
    /// No such cluster in the state database.
    NoSuchCluster,
    /// No placement can be found, or every placement failed ([`LaunchError::history`]).
    NoResources,
    /// Failover stopped at an error that would repeat on every placement (auth, invalid
    /// configuration); [`LaunchError::provision`] carries it with its fix.
    FailoverStopped,
    /// A provider call outside failover failed (stop, start, terminate, query), or the cloud has
    /// no provisioner in this build; [`LaunchError::provision`] has the provider's error when
    /// there is one.
    Provider,
    /// The cluster's runtime could not be set up or used: starting the node agents, syncing
    /// files, running commands on the nodes.
    Runtime,
    /// The head agent did not answer (or has no recorded address or token).
    Agent,
    /// The head agent answered and refused the request (a job that can never run there).
    AgentRefused,
    /// `refresh` could not reach the head agent and has no proof it is gone: nothing changed.
    Unreachable,
    /// The state database failed ([`LaunchError::state_error`]).
    State,
    /// Local IO failed (a lock file, a private temporary file).
    Io,
    /// The caller cancelled the operation ([`crate::CancellationToken`]);
    /// [`LaunchError::cluster`] says what was left.
    Cancelled,
}

/// What a failed (or cancelled) command left of the cluster it acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClusterState {
    /// No record and nothing at the provider: the launch cleaned up what it made.
    Absent,
    /// Recorded INIT. `instances_up`: instances of the cluster may exist at the provider
    /// (`sky down` removes them; `sky launch` with the same task tries again); `false` when
    /// none was created.
    Init { instances_up: bool },
    /// Recorded UP: its instances and agents run (nothing was submitted when a launch failed
    /// after provisioning).
    Up,
    /// Recorded STOPPED.
    Stopped,
}

impl std::fmt::Display for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterState::Absent => "absent",
            ClusterState::Init { instances_up: true } => "INIT (instances up)",
            ClusterState::Init {
                instances_up: false,
            } => "INIT (no instances)",
            ClusterState::Up => "UP",
            ClusterState::Stopped => "STOPPED",
        })
    }
}

impl From<sky_state::ClusterStatus> for ClusterState {
    /// A recorded status; an INIT record counts as possibly having instances.
    fn from(s: sky_state::ClusterStatus) -> Self {
        match s {
            sky_state::ClusterStatus::Up => ClusterState::Up,
            sky_state::ClusterStatus::Stopped => ClusterState::Stopped,
            _ => ClusterState::Init { instances_up: true },
        }
    }
}

/// A failure of the backend. `Display` is the message the CLI prints: a lowercase fragment that
/// names the cluster or resource and says what to do.
#[derive(Debug)]
#[non_exhaustive]
pub struct LaunchError {
    pub kind: LaunchErrorKind,
    message: String,
    /// The provider's error behind this one: for failover, the last placement's (kind, scope,
    /// message and fix).
    pub provision: Option<ProvisionError>,
    /// Every failed placement, in the order tried (empty outside provisioning).
    pub history: Vec<Attempt>,
    /// What is left of the cluster (`None`: the command did not get as far as the cluster, or
    /// does not change it).
    pub cluster: Option<ClusterState>,
    state: Option<Box<sky_state::Error>>,
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LaunchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match (&self.state, &self.provision) {
            (Some(e), _) => Some(e.as_ref()),
            (None, Some(e)) => Some(e),
            _ => None,
        }
    }
}

impl From<sky_state::Error> for LaunchError {
    fn from(e: sky_state::Error) -> Self {
        let message = format!("state database: {e}");
        LaunchError {
            state: Some(Box::new(e)),
            ..LaunchError::new(LaunchErrorKind::State, message)
        }
    }
}

impl LaunchError {
    /// An error of `kind` with `message` and nothing else known.
    pub fn new(kind: LaunchErrorKind, message: impl Into<String>) -> Self {
        LaunchError {
            kind,
            message: message.into(),
            provision: None,
            history: Vec::new(),
            cluster: None,
            state: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(LaunchErrorKind::InvalidTask, message)
    }

    pub(crate) fn no_such_cluster(name: &str) -> Self {
        Self::new(
            LaunchErrorKind::NoSuchCluster,
            format!("cluster `{name}` does not exist; `sky status` lists the clusters"),
        )
    }

    pub(crate) fn provider(message: impl Into<String>) -> Self {
        Self::new(LaunchErrorKind::Provider, message)
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self::new(LaunchErrorKind::Runtime, message)
    }

    pub(crate) fn io(message: impl Into<String>) -> Self {
        Self::new(LaunchErrorKind::Io, message)
    }

    pub(crate) fn agent(cluster: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            LaunchErrorKind::Agent,
            format!(
                "the agent of cluster `{cluster}` is unreachable ({detail}); run `sky status -r {cluster}`, then `sky start {cluster}` to bring it back"
            ),
        )
    }

    pub(crate) fn unreachable(cluster: &str, detail: &str) -> Self {
        Self::new(
            LaunchErrorKind::Unreachable,
            format!(
                "the agent of cluster `{cluster}` is unreachable ({detail}); its status and jobs are left as they are: try again later, or `sky down {cluster}` to remove it"
            ),
        )
    }

    /// The provider's error behind this one.
    #[must_use]
    pub(crate) fn with_provision(mut self, e: ProvisionError) -> Self {
        self.provision = Some(e);
        self
    }

    #[must_use]
    pub(crate) fn with_history(mut self, history: Vec<Attempt>) -> Self {
        self.history = history;
        self
    }

    /// What is left of the cluster (kept when already known).
    #[must_use]
    pub(crate) fn left(mut self, state: ClusterState) -> Self {
        self.cluster.get_or_insert(state);
        self
    }

    /// Replaces the message (keeping the data).
    #[must_use]
    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// The message (as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The state database's error, for kind [`LaunchErrorKind::State`] (a damaged database has
    /// `sky_state::ErrorKind::Damaged`).
    pub fn state_error(&self) -> Option<&sky_state::Error> {
        self.state.as_deref()
    }

    /// The failure scope of the provider's error, if any.
    pub fn scope(&self) -> Option<FailureScope> {
        self.provision.as_ref().map(|p| p.scope)
    }

    /// Whether the caller cancelled it.
    pub fn is_cancelled(&self) -> bool {
        self.kind == LaunchErrorKind::Cancelled
    }

    /// The exit code `sky` uses for it ([`crate::exit`]): invalid input and unknown clusters
    /// 3, no resources (failover ran out or stopped) 4, cancelled 130, anything else 1.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            LaunchErrorKind::InvalidTask | LaunchErrorKind::NoSuchCluster => exit::INVALID_INPUT,
            LaunchErrorKind::NoResources | LaunchErrorKind::FailoverStopped => exit::NO_RESOURCES,
            LaunchErrorKind::Cancelled => exit::INTERRUPTED,
            _ => exit::FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_kinds() {
        let e = LaunchError::invalid("bad task");
        assert_eq!((e.exit_code(), e.to_string().as_str()), (3, "bad task"));
        assert_eq!(LaunchError::no_such_cluster("x").exit_code(), 3);
        assert_eq!(
            LaunchError::new(LaunchErrorKind::FailoverStopped, "x").exit_code(),
            4
        );
        assert_eq!(
            LaunchError::new(LaunchErrorKind::NoResources, "x").exit_code(),
            4
        );
        let c = LaunchError::new(LaunchErrorKind::Cancelled, "x").left(ClusterState::Absent);
        assert_eq!((c.exit_code(), c.is_cancelled()), (130, true));
        assert_eq!(c.left(ClusterState::Up).cluster, Some(ClusterState::Absent));
        assert_eq!(LaunchError::agent("c", "gone").exit_code(), 1);
    }
}
