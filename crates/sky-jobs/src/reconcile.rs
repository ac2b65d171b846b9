//! The pure, idempotent decision function of a managed task's lifecycle: [`reconcile`] takes
//! the task's recorded state, what was just observed and the time, and returns the next state
//! (to be written to the database first) and the one effect to carry out. No IO, no clock.
//!
//! Rules (SkyPilot's, plus sky-rs' additions):
//! - PENDING → (a launch slot) STARTING: the cluster name is recorded before the launch.
//! - Launch results: ok → wait for the job to run (RUNNING when the head says so); a
//!   precheck error (auth, invalid config or task) → FAILED_PRECHECKS; no placement exists at
//!   all for the resources (nothing could be tried) → FAILED_NO_RESOURCE; no capacity → keep
//!   retrying with backoff (initial, doubled up to the maximum), staying STARTING/RECOVERING;
//!   another error → tear down, then retry with backoff.
//! - Preemption or a lost node (cluster not up or gone, the head lost the job, the job ended
//!   `FAILED_DRIVER`, or it failed/was cancelled while a preemption notice is up) → RECOVERING:
//!   tear down, relaunch. `EAGER_NEXT_REGION` blocks the preempted cloud+region on the first
//!   relaunch try (only when the task pins no region/zone), then tries anywhere; `FAILOVER`
//!   pins the same cloud+region on the first try, then anywhere.
//! - User code exiting non-zero is confirmed after a grace period (a preemption that killed it
//!   shows up meanwhile); then an exit code in `recover_on_exit_codes` always recovers, else
//!   `restarts < max_restarts_on_errors` restarts (fresh cluster: down, relaunch), else FAILED.
//!   A setup failure is FAILED_SETUP.
//! - `max_duration` exceeded while running → cancel the cluster job, down, FAILED with
//!   "exceeded max_duration <d>" (measured from the task's first RUNNING).
//! - `keep_on_failure`: a failed task's cluster is kept until the deadline, then torn down.
//! - Cancel: PENDING → CANCELLED directly; STARTING (the controller cancels the launch's
//!   token) and RUNNING (cancel the cluster job) → CANCELLING, down → CANCELLED.
//! - Success → down → SUCCEEDED (the next pipeline task starts when this one is done).

use serde::{Deserialize, Serialize};

use crate::driver::{Blocked, ClusterHealth, DriverError, DriverErrorKind, DriverLaunched, Probe};
use crate::model::{ManagedJobStatus, RecoveryStrategy};

/// Where a task is in its lifecycle (what the controller is doing for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting to (re)launch at `retry_at_ms` (PENDING, or STARTING/RECOVERING between tries).
    Waiting,
    /// A launch of `cluster` is in flight (or was, when the controller died).
    Launching,
    /// The cluster job `cluster_job_id` is submitted; probed every poll.
    Running,
    /// Tearing the cluster down (cancelling `cancel_job` first), then `then`.
    Downing {
        cancel_job: Option<u64>,
        then: After,
    },
    /// A failed task's cluster is kept until `until_ms` (`keep_on_failure`).
    Kept { until_ms: i64 },
    /// Nothing left to do: the status is terminal and no cluster is left.
    Done,
}

/// What follows a teardown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum After {
    /// Launch again (recovery, restart, retry after an error).
    Relaunch,
    /// The task ends with this status (already shown, except CANCELLED shown as CANCELLING).
    Finish(ManagedJobStatus),
}

/// Where a relaunch comes from: the placement that was preempted, and how many relaunch
/// tries have been made since.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// `(cloud, region)` that was preempted; `None` for a restart after a user failure.
    pub from: Option<(String, String)>,
    pub tries: u32,
}

/// A task's recorded state (the controller keeps it as JSON in the job's progress).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    pub status: ManagedJobStatus,
    pub phase: Phase,
    pub failure_reason: Option<String>,
    /// The cluster name, recorded before each launch.
    pub cluster: String,
    pub cluster_job_id: Option<u64>,
    /// Launch attempts so far (the cluster job's name carries it).
    pub attempt: u32,
    pub recovery_count: u32,
    pub restarts: u32,
    /// Where the current (or last) attempt landed.
    pub placement: Option<DriverLaunched>,
    /// Set while relaunching.
    pub recovery: Option<Recovery>,
    pub retry_at_ms: i64,
    pub backoff_ms: i64,
    /// When a user failure was first seen (confirmed after the grace period).
    pub failed_seen_ms: Option<i64>,
    /// The task's first RUNNING, and when the current run started (for durations).
    pub started_ms: Option<i64>,
    pub run_since_ms: Option<i64>,
    /// Milliseconds the task's jobs have run, over finished runs.
    pub ran_ms: i64,
    pub ended_ms: Option<i64>,
}

impl TaskState {
    /// A new task, PENDING, to run on `cluster`.
    pub fn new(cluster: String) -> Self {
        TaskState {
            status: ManagedJobStatus::Pending,
            phase: Phase::Waiting,
            failure_reason: None,
            cluster,
            cluster_job_id: None,
            attempt: 0,
            recovery_count: 0,
            restarts: 0,
            placement: None,
            recovery: None,
            retry_at_ms: 0,
            backoff_ms: 0,
            failed_seen_ms: None,
            started_ms: None,
            run_since_ms: None,
            ran_ms: 0,
            ended_ms: None,
        }
    }

    /// The cluster job's name of the current attempt: unique per task attempt.
    pub fn job_name(&self, job_id: u64, task: u32) -> String {
        format!("managed-{job_id}-{task}-{}", self.attempt)
    }

    /// Milliseconds the task's job has run, the current run included.
    pub fn job_duration_ms(&self, now_ms: i64) -> i64 {
        self.ran_ms + self.run_since_ms.map_or(0, |s| (now_ms - s).max(0))
    }
}

/// The job's recovery and limits, as submitted (not stored: rebuilt on resume).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub strategy: RecoveryStrategy,
    pub max_restarts_on_errors: u32,
    pub recover_on_exit_codes: Vec<i32>,
    /// The task pins a region or zone: EAGER_NEXT_REGION blocks nothing then.
    pub pinned: bool,
    pub max_duration_s: Option<u64>,
    pub keep_on_failure_s: Option<u64>,
    pub poll_ms: i64,
    pub grace_ms: i64,
    pub backoff_initial_ms: i64,
    pub backoff_max_ms: i64,
}

/// What happened since the last decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Time passed (a wait ended, the controller resumed, a cancel arrived).
    Tick,
    Launched(Result<DriverLaunched, DriverError>),
    /// `find_job` after a resume in `Launching`.
    Found(Result<Option<u64>, DriverError>),
    Probed(Result<Probe, DriverError>),
    Downed(Result<(), DriverError>),
}

/// What the controller observed: an event, and whether a cancel of the job is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub event: Event,
    pub cancel_requested: bool,
    /// The controller has just (re)started: a `Launching` task's launch is no longer in flight.
    pub resumed: bool,
}

/// The one effect to carry out after the new state is recorded.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Nothing until `until_ms` (or a cancel), then a [`Event::Tick`].
    Wait {
        until_ms: i64,
    },
    /// Launch the task's cluster (a launch slot is taken first).
    Launch {
        blocked: Vec<Blocked>,
        region: Option<(String, String)>,
    },
    /// Ask the cluster for the job submitted under the attempt's job name.
    FindJob,
    Probe,
    /// Cancel `cancel_job` (best effort) and tear the cluster down.
    Down {
        cancel_job: Option<u64>,
    },
    /// The task is done.
    Stop,
}

/// The decision: record `next`, then carry out `effect`.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub next: TaskState,
    pub effect: Effect,
}

/// A duration as `30m`, `90s`, `2h`, `1h30m`.
pub fn human_duration(s: u64) -> String {
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// Decides what to do next for one task. Idempotent: the same state, observation and time
/// give the same action; a [`Event::Tick`] never repeats an effect whose result was recorded.
pub fn reconcile(t: &TaskState, p: &Policy, obs: &Observation, now: i64) -> Action {
    let mut n = t.clone();
    let cancel = obs.cancel_requested;
    match (&t.phase, &obs.event) {
        (Phase::Done, _) => act(n, Effect::Stop),

        // A cancel: PENDING (or waiting between tries, no cluster job) ends at once unless a
        // cluster may exist; otherwise cancel the job and tear down.
        (Phase::Waiting, _) if cancel => {
            if t.attempt == 0 {
                finish_now(
                    n,
                    ManagedJobStatus::Cancelled,
                    Some("cancelled by the user"),
                    now,
                )
            } else {
                down_then(n, None, After::Finish(ManagedJobStatus::Cancelled), now)
            }
        }
        (Phase::Running, _) if cancel => {
            let job = t.cluster_job_id;
            stop_run(&mut n, now);
            down_then(n, job, After::Finish(ManagedJobStatus::Cancelled), now)
        }

        (Phase::Waiting, _) => {
            if now < t.retry_at_ms {
                return act(
                    n,
                    Effect::Wait {
                        until_ms: t.retry_at_ms,
                    },
                );
            }
            if n.status == ManagedJobStatus::Pending {
                n.status = ManagedJobStatus::Starting;
            }
            let (blocked, region) = placement_rule(t, p);
            if let Some(r) = &mut n.recovery {
                r.tries += 1;
            }
            n.attempt += 1;
            n.cluster_job_id = None;
            n.placement = None;
            n.phase = Phase::Launching;
            act(n, Effect::Launch { blocked, region })
        }

        // Resumed while a launch was in flight: the job may have been submitted.
        (Phase::Launching, Event::Tick) => {
            if obs.resumed || cancel {
                act(n, Effect::FindJob)
            } else {
                // A launch is in flight; its result comes as Launched.
                act(
                    n,
                    Effect::Wait {
                        until_ms: now + p.poll_ms,
                    },
                )
            }
        }
        (Phase::Launching, Event::Found(r)) => match r {
            Ok(Some(id)) if !cancel => {
                n.cluster_job_id = Some(*id);
                n.phase = Phase::Running;
                act(n, Effect::Probe)
            }
            Ok(Some(id)) => down_then(
                n,
                Some(*id),
                After::Finish(ManagedJobStatus::Cancelled),
                now,
            ),
            Ok(None) if cancel => {
                down_then(n, None, After::Finish(ManagedJobStatus::Cancelled), now)
            }
            // Nothing submitted: whatever was made goes, then launch again.
            Ok(None) => down_then(n, None, After::Relaunch, now),
            Err(_) => {
                // Cannot tell: tear down (never two cluster jobs for one task) and relaunch.
                let then = if cancel {
                    After::Finish(ManagedJobStatus::Cancelled)
                } else {
                    After::Relaunch
                };
                down_then(n, None, then, now)
            }
        },
        (Phase::Launching, Event::Launched(r)) => match r {
            Ok(l) => {
                n.cluster_job_id = Some(l.cluster_job_id);
                n.placement = Some(l.clone());
                n.backoff_ms = 0;
                if cancel {
                    return down_then(
                        n,
                        Some(l.cluster_job_id),
                        After::Finish(ManagedJobStatus::Cancelled),
                        now,
                    );
                }
                n.phase = Phase::Running;
                act(n, Effect::Probe)
            }
            Err(_) if cancel => down_then(n, None, After::Finish(ManagedJobStatus::Cancelled), now),
            Err(e) => match e.kind {
                DriverErrorKind::Precheck => {
                    n.failure_reason = Some(e.message.clone());
                    n.status = ManagedJobStatus::FailedPrechecks;
                    down_then(
                        n,
                        None,
                        After::Finish(ManagedJobStatus::FailedPrechecks),
                        now,
                    )
                }
                DriverErrorKind::Infeasible => {
                    n.failure_reason = Some(e.message.clone());
                    n.status = ManagedJobStatus::FailedNoResource;
                    down_then(
                        n,
                        None,
                        After::Finish(ManagedJobStatus::FailedNoResource),
                        now,
                    )
                }
                DriverErrorKind::NoResources => {
                    n.phase = Phase::Waiting;
                    backoff(&mut n, p, now);
                    let until = n.retry_at_ms;
                    act(n, Effect::Wait { until_ms: until })
                }
                _ => {
                    backoff(&mut n, p, now);
                    down_then(n, None, After::Relaunch, now)
                }
            },
        },
        (Phase::Launching, _) => act(n, Effect::FindJob),

        (Phase::Running, Event::Tick) => act(n, Effect::Probe),
        (Phase::Running, Event::Probed(r)) => probed(n, p, r, now),
        (Phase::Running, _) => act(n, Effect::Probe),

        (Phase::Downing { cancel_job, then }, Event::Downed(r)) => match r {
            Ok(()) => {
                n.cluster_job_id = None;
                match then {
                    After::Relaunch => {
                        n.phase = Phase::Waiting;
                        if n.retry_at_ms < now {
                            n.retry_at_ms = now;
                        }
                        let until = n.retry_at_ms;
                        act(n, Effect::Wait { until_ms: until })
                    }
                    After::Finish(s) => {
                        n.status = *s;
                        if *s == ManagedJobStatus::Cancelled && n.failure_reason.is_none() {
                            n.failure_reason = Some("cancelled by the user".into());
                        }
                        n.phase = Phase::Done;
                        n.ended_ms.get_or_insert(now);
                        act(n, Effect::Stop)
                    }
                }
            }
            // Never leak a cluster: try again after a poll.
            Err(_) => {
                n.phase = Phase::Downing {
                    cancel_job: *cancel_job,
                    then: then.clone(),
                };
                n.retry_at_ms = now + p.poll_ms;
                act(
                    n,
                    Effect::Wait {
                        until_ms: now + p.poll_ms,
                    },
                )
            }
        },
        (Phase::Downing { cancel_job, then }, _) => {
            // A cancel arriving while tearing down for a relaunch ends the task instead.
            if cancel && *then == After::Relaunch {
                n.status = ManagedJobStatus::Cancelling;
                n.phase = Phase::Downing {
                    cancel_job: *cancel_job,
                    then: After::Finish(ManagedJobStatus::Cancelled),
                };
                return act(
                    n,
                    Effect::Down {
                        cancel_job: *cancel_job,
                    },
                );
            }
            if matches!(obs.event, Event::Tick) && now < t.retry_at_ms && !obs.resumed {
                return act(
                    n,
                    Effect::Wait {
                        until_ms: t.retry_at_ms,
                    },
                );
            }
            act(
                n,
                Effect::Down {
                    cancel_job: *cancel_job,
                },
            )
        }

        (Phase::Kept { until_ms }, _) => {
            if now < *until_ms && !cancel {
                act(
                    n,
                    Effect::Wait {
                        until_ms: *until_ms,
                    },
                )
            } else {
                let s = t.status;
                down_then(n, None, After::Finish(s), now)
            }
        }
    }
}

fn act(next: TaskState, effect: Effect) -> Action {
    Action { next, effect }
}

/// Sets the next retry time, doubling the backoff up to the maximum.
fn backoff(n: &mut TaskState, p: &Policy, now: i64) {
    let b = if n.backoff_ms <= 0 {
        p.backoff_initial_ms
    } else {
        (n.backoff_ms * 2).min(p.backoff_max_ms)
    };
    n.backoff_ms = b.max(0);
    n.retry_at_ms = now + n.backoff_ms;
}

fn finish_now(
    mut n: TaskState,
    status: ManagedJobStatus,
    reason: Option<&str>,
    now: i64,
) -> Action {
    n.status = status;
    if let Some(r) = reason {
        n.failure_reason.get_or_insert_with(|| r.to_string());
    }
    n.phase = Phase::Done;
    n.ended_ms.get_or_insert(now);
    act(n, Effect::Stop)
}

/// Tear down (after cancelling `job`), then `then`. A cancel shows CANCELLING meanwhile; a
/// relaunch keeps the status it has (RECOVERING for a recovery).
fn down_then(mut n: TaskState, job: Option<u64>, then: After, now: i64) -> Action {
    if then == After::Finish(ManagedJobStatus::Cancelled) {
        n.status = ManagedJobStatus::Cancelling;
    } else if let After::Finish(s) = then {
        n.status = s;
    }
    stop_run(&mut n, now);
    n.failed_seen_ms = None;
    n.phase = Phase::Downing {
        cancel_job: job,
        then,
    };
    act(n, Effect::Down { cancel_job: job })
}

/// The current run (if any) stops counting toward the job duration.
fn stop_run(n: &mut TaskState, now: i64) {
    if let Some(s) = n.run_since_ms.take() {
        n.ran_ms += (now - s).max(0);
    }
}

/// The relaunch's placement rule: (blocked, pinned region).
fn placement_rule(t: &TaskState, p: &Policy) -> (Vec<Blocked>, Option<(String, String)>) {
    let Some(Recovery {
        from: Some((cloud, region)),
        tries: 0,
    }) = &t.recovery
    else {
        return (Vec::new(), None);
    };
    match p.strategy {
        RecoveryStrategy::EagerNextRegion if !p.pinned => (
            vec![Blocked {
                cloud: Some(cloud.clone()),
                region: Some(region.clone()),
                ..Blocked::default()
            }],
            None,
        ),
        RecoveryStrategy::EagerNextRegion => (Vec::new(), None),
        RecoveryStrategy::Failover => (Vec::new(), Some((cloud.clone(), region.clone()))),
    }
}

/// Recovery from a preemption or a lost node: down, relaunch (blocked per the strategy).
fn recover(mut n: TaskState, now: i64) -> Action {
    n.recovery_count += 1;
    n.status = ManagedJobStatus::Recovering;
    n.recovery = Some(Recovery {
        from: n
            .placement
            .as_ref()
            .map(|l| (l.cloud.clone(), l.region.clone())),
        tries: 0,
    });
    n.retry_at_ms = now;
    n.backoff_ms = 0;
    down_then(n, None, After::Relaunch, now)
}

/// A user failure confirmed: restart, or the final status (kept when asked).
fn user_failure(mut n: TaskState, p: &Policy, codes: &[i32], setup: bool, now: i64) -> Action {
    let code = codes.iter().copied().find(|c| *c != 0);
    if !setup && codes.iter().any(|c| p.recover_on_exit_codes.contains(c)) {
        let c = codes.iter().find(|c| p.recover_on_exit_codes.contains(c));
        n.recovery_count += 1;
        n.status = ManagedJobStatus::Recovering;
        n.recovery = Some(Recovery {
            from: None,
            tries: 0,
        });
        n.failure_reason =
            c.map(|c| format!("exit code {c} is in recover_on_exit_codes; recovering"));
        n.retry_at_ms = now;
        return down_then(n, None, After::Relaunch, now);
    }
    if !setup && n.restarts < p.max_restarts_on_errors {
        n.restarts += 1;
        n.status = ManagedJobStatus::Recovering;
        n.recovery = Some(Recovery {
            from: None,
            tries: 0,
        });
        n.retry_at_ms = now;
        return down_then(n, None, After::Relaunch, now);
    }
    let (status, reason) = if setup {
        (
            ManagedJobStatus::FailedSetup,
            format!(
                "setup failed{}",
                code.map(|c| format!(" with exit code {c}"))
                    .unwrap_or_default()
            ),
        )
    } else {
        (
            ManagedJobStatus::Failed,
            format!(
                "user code failed{}{}",
                code.map(|c| format!(" with exit code {c}"))
                    .unwrap_or_default(),
                if p.max_restarts_on_errors > 0 {
                    format!(" after {} restarts (max_restarts_on_errors)", n.restarts)
                } else {
                    String::new()
                }
            ),
        )
    };
    fail(n, p, status, reason, now)
}

/// The task fails with `status`: kept for `keep_on_failure`, else torn down.
fn fail(
    mut n: TaskState,
    p: &Policy,
    status: ManagedJobStatus,
    reason: String,
    now: i64,
) -> Action {
    n.status = status;
    n.failure_reason = Some(reason);
    stop_run(&mut n, now);
    n.failed_seen_ms = None;
    n.ended_ms = Some(now);
    match p.keep_on_failure_s {
        Some(k) if k > 0 => {
            let until = now + (k as i64) * 1000;
            n.phase = Phase::Kept { until_ms: until };
            act(n, Effect::Wait { until_ms: until })
        }
        _ => down_then(n, None, After::Finish(status), now),
    }
}

fn probed(mut n: TaskState, p: &Policy, r: &Result<Probe, DriverError>, now: i64) -> Action {
    use sky_agent::JobStatus as J;
    let wait = |n: TaskState| {
        let until = now + p.poll_ms;
        act(n, Effect::Wait { until_ms: until })
    };
    // max_duration, counted from the task's first RUNNING.
    if let (Some(max), Some(start)) = (p.max_duration_s, n.started_ms)
        && now - start >= (max as i64) * 1000
    {
        let job = n.cluster_job_id;
        n.status = ManagedJobStatus::Failed;
        n.failure_reason = Some(format!("exceeded max_duration {}", human_duration(max)));
        n.ended_ms = Some(now);
        return down_then(n, job, After::Finish(ManagedJobStatus::Failed), now);
    }
    let probe = match r {
        Ok(p) => p,
        // Not reached: nothing is decided on no news.
        Err(_) => return wait(n),
    };
    if probe.cluster != ClusterHealth::Up {
        return recover(n, now);
    }
    let Some(job) = &probe.job else {
        // The head has no such job: it lost its state (a replaced node).
        return recover(n, now);
    };
    match job.status {
        J::Init | J::Pending | J::SettingUp => {
            n.failed_seen_ms = None;
            wait(n)
        }
        J::Running => {
            n.failed_seen_ms = None;
            if n.status != ManagedJobStatus::Running {
                n.status = ManagedJobStatus::Running;
                n.started_ms.get_or_insert(now);
                n.run_since_ms = Some(now);
                n.failure_reason = None;
            }
            wait(n)
        }
        J::Succeeded => {
            stop_run(&mut n, now);
            n.started_ms.get_or_insert(now);
            n.status = ManagedJobStatus::Succeeded;
            n.failure_reason = None;
            n.ended_ms = Some(now);
            down_then(n, None, After::Finish(ManagedJobStatus::Succeeded), now)
        }
        J::FailedDriver => recover(n, now),
        _ if probe.preemption_notice => recover(n, now),
        J::Cancelled => {
            n.failure_reason = Some("the cluster job was cancelled outside the controller".into());
            down_then(n, None, After::Finish(ManagedJobStatus::Cancelled), now)
        }
        J::Failed | J::FailedSetup => match n.failed_seen_ms {
            None => {
                n.failed_seen_ms = Some(now);
                act(
                    n,
                    Effect::Wait {
                        until_ms: now + p.grace_ms,
                    },
                )
            }
            Some(seen) if now - seen < p.grace_ms => act(
                n,
                Effect::Wait {
                    until_ms: seen + p.grace_ms,
                },
            ),
            Some(_) => {
                let codes = job.exit_codes.clone();
                user_failure(n, p, &codes, job.status == J::FailedSetup, now)
            }
        },
    }
}

#[cfg(test)]
mod tests;
