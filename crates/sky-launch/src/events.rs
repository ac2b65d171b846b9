//! Progress as typed events: the backend prints nothing; it hands every step to an
//! [`Events`] sink, which the CLI draws as spinners and lines and a controller can record,
//! count or forward.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::{ClusterState, failover::Attempt, failover::infra_str};

/// One step of a launch (or of stop, start, down, exec). `Display` is the line the CLI shows.
/// New events may be added.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LaunchEvent {
    /// Another command holds the cluster's lock; this one waits for it.
    WaitingForLock {
        cluster: String,
        lock_path: PathBuf,
    },
    /// The cluster is UP and fits the task: no provisioning.
    Reusing {
        cluster: String,
    },
    /// The cluster is INIT (a launch did not finish): provisioned again where it is recorded.
    Reprovisioning {
        cluster: String,
    },
    /// A placement is being tried.
    Provisioning {
        cloud: String,
        region: String,
        zone: Option<String>,
    },
    /// A placement failed; failover goes on (or stops: the error says).
    AttemptFailed(Attempt),
    /// Waiting before trying again.
    Retrying {
        after: Duration,
        why: RetryReason,
    },
    /// Starting the node agents.
    StartingAgents {
        cluster: String,
        nodes: usize,
    },
    /// Provisioned: the cluster is UP.
    Up {
        cluster: String,
        cloud: String,
        region: String,
        zone: Option<String>,
    },
    /// Uploading a local tree to every node.
    Syncing {
        src: PathBuf,
        dst: String,
        nodes: usize,
    },
    /// The workdir and local file mounts are on every node.
    Synced,
    /// The job is queued on the cluster.
    Submitted {
        cluster: String,
        job_id: u64,
    },
    Stopping {
        cluster: String,
    },
    Stopped {
        cluster: String,
    },
    Starting {
        cluster: String,
    },
    /// Started (`sky start`, or a launch on a STOPPED cluster).
    Started {
        cluster: String,
    },
    /// `sky start` on a cluster whose agent answers.
    AlreadyUp {
        cluster: String,
    },
    Terminating {
        cluster: String,
    },
    Terminated {
        cluster: String,
    },
    /// The command was cancelled; `left` is what remains of the cluster.
    Cancelled {
        cluster: String,
        left: ClusterState,
    },
    /// Something the user should know that does not stop the command.
    Warning(String),
}

/// Why a launch waits before trying again.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// A transient error; the same placement is tried again.
    Transient { message: String },
    /// Every placement failed and `retry_until_up` is set: failover starts over.
    RetryUntilUp { attempts: usize },
}

/// How the CLI shows an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A step begins (a spinner until the next event).
    Step,
    /// A step finished.
    Done,
    /// A line between steps.
    Note,
    /// For logs only (the CLI says it in its own words).
    Record,
}

impl LaunchEvent {
    pub fn kind(&self) -> EventKind {
        use LaunchEvent as E;
        match self {
            E::WaitingForLock { .. }
            | E::Reprovisioning { .. }
            | E::Provisioning { .. }
            | E::Retrying { .. }
            | E::StartingAgents { .. }
            | E::Syncing { .. }
            | E::Stopping { .. }
            | E::Starting { .. }
            | E::Terminating { .. } => EventKind::Step,
            E::Reusing { .. }
            | E::Up { .. }
            | E::Synced
            | E::Stopped { .. }
            | E::Started { .. }
            | E::AlreadyUp { .. }
            | E::Terminated { .. }
            | E::Cancelled { .. }
            | E::Warning(_) => EventKind::Done,
            E::AttemptFailed(_) => EventKind::Note,
            E::Submitted { .. } => EventKind::Record,
        }
    }
}

fn nodes(n: usize) -> String {
    format!("{n} node{}", if n == 1 { "" } else { "s" })
}

/// What a cancelled command left, in words (after "cancelled: ").
pub(crate) fn cancel_note(cluster: &str, left: ClusterState) -> String {
    match left {
        ClusterState::Absent => {
            format!("nothing of cluster {cluster} is left (what this launch made was removed)")
        }
        ClusterState::Init { instances_up: true } => format!(
            "cluster {cluster} is INIT with its instances up; `sky launch -c {cluster}` with the same task tries again, `sky down {cluster}` removes it"
        ),
        ClusterState::Init {
            instances_up: false,
        } => format!(
            "cluster {cluster} is recorded INIT with no instances; `sky down {cluster}` removes the record"
        ),
        ClusterState::Up => format!("cluster {cluster} is left UP as it was"),
        ClusterState::Stopped => format!("cluster {cluster} is left STOPPED"),
    }
}

impl std::fmt::Display for LaunchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use LaunchEvent as E;
        match self {
            E::WaitingForLock { cluster, lock_path } => write!(
                f,
                "Waiting for another sky command on cluster {cluster} to finish (it holds {})",
                lock_path.display()
            ),
            E::Reusing { cluster } => {
                write!(f, "Cluster {cluster} is UP; reusing it (no provisioning)")
            }
            E::Reprovisioning { cluster } => write!(
                f,
                "Cluster {cluster} is INIT (a previous launch did not finish); provisioning it again"
            ),
            E::Provisioning {
                cloud,
                region,
                zone,
            } => write!(
                f,
                "Launching on {}",
                infra_str(cloud, region, zone.as_deref())
            ),
            E::AttemptFailed(a) => write!(
                f,
                "Failed to provision on {} ({}): {}. Trying the next placement.",
                a.infra, a.resources, a.reason
            ),
            E::Retrying {
                after,
                why: RetryReason::Transient { message },
            } => write!(
                f,
                "transient error ({message}); retrying in {:.1}s",
                after.as_secs_f64()
            ),
            E::Retrying {
                after,
                why: RetryReason::RetryUntilUp { attempts },
            } => write!(
                f,
                "every placement failed ({attempts} attempts); retrying in {}s (--retry-until-up)",
                after.as_secs()
            ),
            E::StartingAgents { nodes: n, .. } => {
                write!(f, "Starting the agent on {}", nodes(*n))
            }
            E::Up {
                cluster,
                cloud,
                region,
                zone,
            } => write!(
                f,
                "Cluster {cluster} is UP on {}",
                infra_str(cloud, region, zone.as_deref())
            ),
            E::Syncing { src, dst, nodes: n } => {
                write!(f, "Syncing {} -> {dst} on {}", src.display(), nodes(*n))
            }
            E::Synced => f.write_str("Synced workdir and file mounts"),
            E::Submitted { cluster, job_id } => write!(f, "Job {job_id} submitted to {cluster}"),
            E::Stopping { cluster } => write!(f, "Stopping cluster {cluster}"),
            E::Stopped { cluster } => write!(f, "Cluster {cluster} stopped"),
            E::Starting { cluster } => write!(f, "Starting cluster {cluster}"),
            E::Started { cluster } => write!(f, "Cluster {cluster} is UP"),
            E::AlreadyUp { cluster } => write!(f, "Cluster {cluster} is already UP"),
            E::Terminating { cluster } => write!(f, "Terminating cluster {cluster}"),
            E::Terminated { cluster } => write!(f, "Cluster {cluster} terminated"),
            E::Cancelled { cluster, left } => {
                write!(f, "Cancelled: {}", cancel_note(cluster, *left))
            }
            E::Warning(w) => write!(f, "warning: {w}"),
        }
    }
}

/// Receives the events of a command, in order, from the task that runs it (several commands
/// may share one sink). Must not block: it runs inside the command.
pub trait Events: Send + Sync {
    fn event(&self, e: &LaunchEvent);
}

/// Drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Events for Quiet {
    fn event(&self, _: &LaunchEvent) {}
}

impl<F: Fn(&LaunchEvent) + Send + Sync> Events for F {
    fn event(&self, e: &LaunchEvent) {
        self(e)
    }
}

/// Keeps every event (tests, controllers that report later).
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<LaunchEvent>>,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far, in order.
    pub fn events(&self) -> Vec<LaunchEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The failed placements so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                LaunchEvent::AttemptFailed(a) => Some(a),
                _ => None,
            })
            .collect()
    }
}

impl Events for EventLog {
    fn event(&self, e: &LaunchEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_the_cli_lines() {
        let e = LaunchEvent::Provisioning {
            cloud: "local".into(),
            region: "r1".into(),
            zone: Some("z1".into()),
        };
        assert_eq!(e.to_string(), "Launching on Local (r1/z1)");
        assert_eq!(e.kind(), EventKind::Step);
        let e = LaunchEvent::Retrying {
            after: Duration::from_millis(1000),
            why: RetryReason::Transient {
                message: "rate limited".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "transient error (rate limited); retrying in 1.0s"
        );
        let e = LaunchEvent::Syncing {
            src: "/w".into(),
            dst: "~/sky_workdir".into(),
            nodes: 1,
        };
        assert_eq!(e.to_string(), "Syncing /w -> ~/sky_workdir on 1 node");
        let e = LaunchEvent::Cancelled {
            cluster: "c".into(),
            left: ClusterState::Absent,
        };
        assert!(e.to_string().starts_with("Cancelled: nothing of cluster c"));
        let log = EventLog::new();
        log.event(&LaunchEvent::Synced);
        assert_eq!(log.events(), [LaunchEvent::Synced]);
    }
}
