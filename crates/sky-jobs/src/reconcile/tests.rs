use std::collections::VecDeque;

use sky_agent::JobStatus as J;

use super::*;
use crate::driver::ClusterJob;

fn policy() -> Policy {
    Policy {
        strategy: RecoveryStrategy::EagerNextRegion,
        max_restarts_on_errors: 0,
        recover_on_exit_codes: Vec::new(),
        pinned: false,
        max_duration_s: None,
        keep_on_failure_s: None,
        poll_ms: 1000,
        grace_ms: 3000,
        backoff_initial_ms: 10_000,
        backoff_max_ms: 40_000,
    }
}

fn placed(region: &str, id: u64) -> Result<DriverLaunched, DriverError> {
    Ok(DriverLaunched {
        cloud: "local".into(),
        region: region.into(),
        zone: None,
        cluster_job_id: id,
    })
}

fn err(kind: DriverErrorKind) -> DriverError {
    DriverError::new(kind, format!("{kind:?}"))
}

fn up(status: J, codes: &[i32]) -> Result<Probe, DriverError> {
    Ok(Probe {
        cluster: ClusterHealth::Up,
        job: Some(ClusterJob {
            status,
            exit_codes: codes.to_vec(),
        }),
        preemption_notice: false,
    })
}

fn gone() -> Result<Probe, DriverError> {
    Ok(Probe {
        cluster: ClusterHealth::Gone,
        job: None,
        preemption_notice: false,
    })
}

type LaunchRule = (Vec<Blocked>, Option<(String, String)>);

/// A scripted world answering the effects; a probe with nothing scripted is SUCCEEDED.
#[derive(Default)]
struct World {
    launches: VecDeque<Result<DriverLaunched, DriverError>>,
    probes: VecDeque<Result<Probe, DriverError>>,
    found: Option<u64>,
    /// (blocked, region) of every launch.
    launched: Vec<LaunchRule>,
    downs: Vec<Option<u64>>,
    cancel_at_step: Option<usize>,
    statuses: Vec<ManagedJobStatus>,
}

fn run(p: &Policy, w: &mut World, mut t: TaskState, mut obs: Observation) -> (TaskState, i64) {
    let mut now = 1_000_000;
    for step in 0..500 {
        if w.cancel_at_step == Some(step) {
            obs.cancel_requested = true;
        }
        let a = reconcile(&t, p, &obs, now);
        // Idempotent: the same inputs give the same action.
        assert_eq!(a, reconcile(&t, p, &obs, now));
        t = a.next;
        if w.statuses.last() != Some(&t.status) {
            w.statuses.push(t.status);
        }
        let cancel = obs.cancel_requested;
        let event = match a.effect {
            Effect::Stop => return (t, now),
            Effect::Wait { until_ms } => {
                assert!(until_ms >= now, "waits go forward");
                now = until_ms;
                Event::Tick
            }
            Effect::Launch { blocked, region } => {
                w.launched.push((blocked, region));
                Event::Launched(w.launches.pop_front().unwrap_or_else(|| placed("r1", 1)))
            }
            Effect::FindJob => Event::Found(Ok(w.found)),
            Effect::Probe => Event::Probed(
                w.probes
                    .pop_front()
                    .unwrap_or_else(|| up(J::Succeeded, &[0])),
            ),
            Effect::Down { cancel_job } => {
                w.downs.push(cancel_job);
                Event::Downed(Ok(()))
            }
        };
        obs = Observation {
            event,
            cancel_requested: cancel,
            resumed: false,
        };
    }
    panic!("no end after 500 steps: {t:?}");
}

fn tick() -> Observation {
    Observation {
        event: Event::Tick,
        cancel_requested: false,
        resumed: false,
    }
}

fn new() -> TaskState {
    TaskState::new("train-1".into())
}

#[test]
fn a_plain_task_succeeds_and_its_cluster_goes() {
    let mut w = World::default();
    w.probes.push_back(up(J::Running, &[]));
    let (t, _) = run(&policy(), &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Succeeded);
    assert_eq!(t.phase, Phase::Done);
    assert_eq!(w.launched.len(), 1);
    assert_eq!(w.downs.len(), 1);
    assert_eq!(
        w.statuses,
        [
            ManagedJobStatus::Starting,
            ManagedJobStatus::Running,
            ManagedJobStatus::Succeeded
        ]
    );
    assert!(t.started_ms.is_some() && t.ended_ms.is_some());
}

#[test]
fn eager_next_region_blocks_the_preempted_region_on_the_first_relaunch_only() {
    let mut w = World::default();
    w.launches.extend([
        placed("r1", 1),
        Err(err(DriverErrorKind::NoResources)),
        placed("r1", 2),
        placed("r2", 3),
    ]);
    // preempted in r1; relaunch blocked r1 gets no capacity, next try (unconstrained) lands
    // in r1 again; preempted again in r1: blocked r1 again, lands in r2.
    w.probes.extend([
        up(J::Running, &[]),
        gone(),
        up(J::Running, &[]),
        gone(),
        up(J::Running, &[]),
    ]);
    let (t, _) = run(&policy(), &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Succeeded);
    assert_eq!(t.recovery_count, 2);
    let b = |r: &str| {
        vec![Blocked {
            cloud: Some("local".into()),
            region: Some(r.into()),
            ..Blocked::default()
        }]
    };
    let blocked: Vec<_> = w.launched.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(blocked, [vec![], b("r1"), vec![], b("r1")]);
    assert!(w.launched.iter().all(|(_, r)| r.is_none()));
    assert!(w.statuses.contains(&ManagedJobStatus::Recovering));
}

#[test]
fn eager_next_region_blocks_nothing_when_the_task_pins_a_region() {
    let mut w = World::default();
    w.probes.extend([up(J::Running, &[]), gone()]);
    let p = Policy {
        pinned: true,
        ..policy()
    };
    let (t, _) = run(&p, &mut w, new(), tick());
    assert_eq!(t.recovery_count, 1);
    assert!(w.launched.iter().all(|(b, r)| b.is_empty() && r.is_none()));
}

#[test]
fn failover_pins_the_same_region_first_then_anywhere() {
    let mut w = World::default();
    w.launches.extend([
        placed("r2", 1),
        Err(err(DriverErrorKind::NoResources)),
        placed("r1", 2),
    ]);
    w.probes
        .extend([up(J::Running, &[]), gone(), up(J::Running, &[])]);
    let p = Policy {
        strategy: RecoveryStrategy::Failover,
        ..policy()
    };
    let (t, _) = run(&p, &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Succeeded);
    assert_eq!(t.recovery_count, 1);
    let regions: Vec<_> = w.launched.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(regions, [None, Some(("local".into(), "r2".into())), None]);
    assert!(w.launched.iter().all(|(b, _)| b.is_empty()));
}

#[test]
fn no_capacity_keeps_retrying_with_a_doubling_capped_backoff() {
    let mut w = World::default();
    for _ in 0..5 {
        w.launches.push_back(Err(err(DriverErrorKind::NoResources)));
    }
    let p = policy();
    let mut t = new();
    let mut obs = tick();
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let a = reconcile(&t, &p, &obs, now);
        assert!(matches!(a.effect, Effect::Launch { .. }));
        let a2 = reconcile(
            &a.next,
            &p,
            &Observation {
                event: Event::Launched(w.launches.pop_front().unwrap()),
                ..tick()
            },
            now,
        );
        assert_eq!(
            a2.next.status,
            ManagedJobStatus::Starting,
            "stays STARTING while retrying"
        );
        let Effect::Wait { until_ms } = a2.effect else {
            panic!("{:?}", a2.effect)
        };
        waits.push(until_ms - now);
        now = until_ms;
        t = a2.next;
        obs = tick();
    }
    assert_eq!(waits, [10_000, 20_000, 40_000, 40_000, 40_000]);
}

#[test]
fn precheck_errors_fail_prechecks_after_cleaning_up() {
    let mut w = World::default();
    w.launches.push_back(Err(err(DriverErrorKind::Precheck)));
    let (t, _) = run(&policy(), &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::FailedPrechecks);
    assert_eq!(t.failure_reason.as_deref(), Some("Precheck"));
    assert_eq!(w.downs.len(), 1);
}

#[test]
fn an_infeasible_task_fails_no_resource_without_retrying() {
    let mut w = World::default();
    w.launches.push_back(Err(err(DriverErrorKind::Infeasible)));
    let (t, _) = run(&policy(), &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::FailedNoResource);
    assert_eq!(t.failure_reason.as_deref(), Some("Infeasible"));
    assert_eq!(w.launched.len(), 1, "no retry");
    assert_eq!(w.downs.len(), 1, "nothing left behind");
}

#[test]
fn transient_launch_errors_tear_down_and_retry() {
    let mut w = World::default();
    w.launches
        .extend([Err(err(DriverErrorKind::Transient)), placed("r1", 5)]);
    let (t, _) = run(&policy(), &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Succeeded);
    assert_eq!(w.launched.len(), 2);
    assert_eq!(w.downs.len(), 2);
    assert_eq!(t.recovery_count, 0);
}

#[test]
fn setup_failure_is_failed_setup() {
    let mut w = World::default();
    w.probes
        .extend([up(J::FailedSetup, &[2]), up(J::FailedSetup, &[2])]);
    let p = Policy {
        max_restarts_on_errors: 3,
        ..policy()
    };
    let (t, _) = run(&p, &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::FailedSetup);
    assert_eq!(
        t.failure_reason.as_deref(),
        Some("setup failed with exit code 2")
    );
    assert_eq!(w.launched.len(), 1);
}

#[test]
fn max_restarts_on_errors_gives_four_attempts_then_failed() {
    let mut w = World::default();
    for _ in 0..4 {
        w.probes.extend([
            up(J::Running, &[]),
            up(J::Failed, &[1]),
            up(J::Failed, &[1]),
        ]);
    }
    let p = Policy {
        max_restarts_on_errors: 3,
        ..policy()
    };
    let (t, _) = run(&p, &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Failed);
    assert_eq!(t.restarts, 3);
    assert_eq!(t.recovery_count, 0);
    assert_eq!(w.launched.len(), 4);
    // a fresh cluster each time: one down per attempt
    assert_eq!(w.downs.len(), 4);
    assert!(
        t.failure_reason.as_deref().unwrap().contains("exit code 1"),
        "{t:?}"
    );
    assert!(w.launched.iter().all(|(b, r)| b.is_empty() && r.is_none()));
}

#[test]
fn recover_on_exit_codes_recovers_on_those_codes_only() {
    let mut w = World::default();
    w.probes.extend([
        up(J::Failed, &[33]),
        up(J::Failed, &[33]),
        up(J::Failed, &[34]),
        up(J::Failed, &[34]),
    ]);
    let p = Policy {
        recover_on_exit_codes: vec![33],
        ..policy()
    };
    let (t, _) = run(&p, &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Failed);
    assert_eq!(t.recovery_count, 1);
    assert_eq!(w.launched.len(), 2);
    assert_eq!(
        t.failure_reason.as_deref(),
        Some("user code failed with exit code 34")
    );
}

#[test]
fn a_failure_during_a_preemption_notice_or_that_turns_into_a_lost_cluster_recovers() {
    let mut w = World::default();
    let mut notice = up(J::Failed, &[143]);
    if let Ok(p) = &mut notice {
        p.preemption_notice = true;
    }
    // failure with a notice up: recovered at once; failure then gone within the grace: recovered
    w.probes.extend([notice, up(J::Failed, &[1]), gone()]);
    let (t, _) = run(&policy(), &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Succeeded);
    assert_eq!(t.recovery_count, 2);
    assert_eq!(t.restarts, 0);
}

#[test]
fn max_duration_cancels_downs_and_fails_with_a_reason() {
    let mut w = World::default();
    for _ in 0..100 {
        w.probes.push_back(up(J::Running, &[]));
    }
    let p = Policy {
        max_duration_s: Some(30),
        ..policy()
    };
    let (t, _) = run(&p, &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Failed);
    assert_eq!(
        t.failure_reason.as_deref(),
        Some("exceeded max_duration 30s")
    );
    assert_eq!(
        w.downs,
        [Some(1)],
        "the cluster job is cancelled, then the cluster goes"
    );
    assert_eq!(t.job_duration_ms(0), 30_000);
    assert_eq!(human_duration(1800), "30m");
    assert_eq!(human_duration(5400), "1h30m");
}

#[test]
fn keep_on_failure_keeps_the_cluster_until_the_deadline() {
    let mut w = World::default();
    w.probes.extend([up(J::Failed, &[1]), up(J::Failed, &[1])]);
    let p = Policy {
        keep_on_failure_s: Some(60),
        ..policy()
    };
    let mut t = new();
    let mut obs = tick();
    let mut now = 0;
    let mut kept_from = None;
    loop {
        let a = reconcile(&t, &p, &obs, now);
        t = a.next;
        if matches!(t.phase, Phase::Kept { .. }) && kept_from.is_none() {
            kept_from = Some(now);
            assert_eq!(
                t.status,
                ManagedJobStatus::Failed,
                "FAILED shows while kept"
            );
        }
        obs = Observation {
            event: match a.effect {
                Effect::Stop => break,
                Effect::Wait { until_ms } => {
                    now = until_ms;
                    Event::Tick
                }
                Effect::Launch { .. } => Event::Launched(placed("r1", 1)),
                Effect::Probe => Event::Probed(w.probes.pop_front().unwrap()),
                Effect::Down { .. } => {
                    assert!(
                        now - kept_from.unwrap() >= 60_000,
                        "not torn down before the deadline"
                    );
                    Event::Downed(Ok(()))
                }
                Effect::FindJob => unreachable!(),
            },
            ..tick()
        };
    }
    assert_eq!(t.status, ManagedJobStatus::Failed);
}

#[test]
fn cancel_while_pending_is_direct() {
    let a = reconcile(
        &new(),
        &policy(),
        &Observation {
            cancel_requested: true,
            ..tick()
        },
        5,
    );
    assert_eq!(a.effect, Effect::Stop);
    assert_eq!(a.next.status, ManagedJobStatus::Cancelled);
}

#[test]
fn cancel_while_starting_downs_then_cancelled() {
    let p = policy();
    let a = reconcile(&new(), &p, &tick(), 0);
    assert!(matches!(a.effect, Effect::Launch { .. }));
    // the controller cancelled the launch's token: the launch returns Cancelled
    let obs = Observation {
        event: Event::Launched(Err(err(DriverErrorKind::Cancelled))),
        cancel_requested: true,
        resumed: false,
    };
    let b = reconcile(&a.next, &p, &obs, 1);
    assert_eq!(b.next.status, ManagedJobStatus::Cancelling);
    assert_eq!(b.effect, Effect::Down { cancel_job: None });
    let c = reconcile(
        &b.next,
        &p,
        &Observation {
            event: Event::Downed(Ok(())),
            ..obs
        },
        2,
    );
    assert_eq!(c.next.status, ManagedJobStatus::Cancelled);
    assert_eq!(c.effect, Effect::Stop);
}

#[test]
fn cancel_while_running_cancels_the_job_and_downs() {
    let mut w = World {
        cancel_at_step: Some(6),
        ..World::default()
    };
    for _ in 0..10 {
        w.probes.push_back(up(J::Running, &[]));
    }
    let (t, _) = run(&policy(), &mut w, new(), tick());
    assert_eq!(t.status, ManagedJobStatus::Cancelled);
    assert_eq!(w.downs, [Some(1)]);
    assert!(w.statuses.contains(&ManagedJobStatus::Cancelling));
}

#[test]
fn resumed_mid_launch_finds_the_submitted_job_instead_of_launching_again() {
    let p = policy();
    let a = reconcile(&new(), &p, &tick(), 0);
    // controller killed after recording Launching; on restart:
    let resumed = Observation {
        resumed: true,
        ..tick()
    };
    let b = reconcile(&a.next, &p, &resumed, 10);
    assert_eq!(b.effect, Effect::FindJob);
    let c = reconcile(
        &b.next,
        &p,
        &Observation {
            event: Event::Found(Ok(Some(7))),
            ..tick()
        },
        11,
    );
    assert_eq!(c.next.cluster_job_id, Some(7));
    assert_eq!(c.effect, Effect::Probe);
    // nothing submitted: down, then a relaunch with a new attempt number
    let d = reconcile(
        &b.next,
        &p,
        &Observation {
            event: Event::Found(Ok(None)),
            ..tick()
        },
        11,
    );
    assert_eq!(d.effect, Effect::Down { cancel_job: None });
    let e = reconcile(
        &d.next,
        &p,
        &Observation {
            event: Event::Downed(Ok(())),
            ..tick()
        },
        12,
    );
    let f = reconcile(&e.next, &p, &tick(), 12);
    assert!(matches!(f.effect, Effect::Launch { .. }));
    assert_eq!(f.next.attempt, 2);
    assert_ne!(f.next.job_name(1, 0), a.next.job_name(1, 0));
}

#[test]
fn a_failed_teardown_is_retried_never_dropped() {
    let p = policy();
    let mut t = new();
    t.phase = Phase::Downing {
        cancel_job: None,
        then: After::Finish(ManagedJobStatus::Succeeded),
    };
    let a = reconcile(
        &t,
        &p,
        &Observation {
            event: Event::Downed(Err(err(DriverErrorKind::Transient))),
            ..tick()
        },
        0,
    );
    assert_eq!(a.effect, Effect::Wait { until_ms: 1000 });
    let b = reconcile(&a.next, &p, &tick(), 1000);
    assert_eq!(b.effect, Effect::Down { cancel_job: None });
}

#[test]
fn probe_errors_decide_nothing() {
    let p = policy();
    let mut t = new();
    t.phase = Phase::Running;
    t.cluster_job_id = Some(3);
    t.status = ManagedJobStatus::Running;
    let a = reconcile(
        &t,
        &p,
        &Observation {
            event: Event::Probed(Err(err(DriverErrorKind::Transient))),
            ..tick()
        },
        0,
    );
    assert_eq!(a.next, t);
    assert_eq!(a.effect, Effect::Wait { until_ms: 1000 });
}

#[test]
fn done_stays_done() {
    let mut t = new();
    t.phase = Phase::Done;
    t.status = ManagedJobStatus::Succeeded;
    for ev in [Event::Tick, Event::Downed(Ok(())), Event::Probed(gone())] {
        let a = reconcile(
            &t,
            &policy(),
            &Observation {
                event: ev,
                cancel_requested: true,
                resumed: true,
            },
            9,
        );
        assert_eq!(a.effect, Effect::Stop);
        assert_eq!(a.next, t);
    }
}
