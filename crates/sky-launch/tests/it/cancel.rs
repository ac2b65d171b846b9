//! Cancelling a launch at each stage: what is left (`ClusterState`), that nothing leaks at the
//! fake cloud, that the lock is released, and that a `Cancelled` event says so. Stages are held
//! by `FaultRule::hang` rules (no sleeps): the test waits until the call is held, then cancels.

use std::sync::Arc;

use sky_launch::{
    CancellationToken, ClusterState, EventLog, LaunchErrorKind, LaunchEvent, RetryReason,
};
use sky_provider::{FailureScope, ProvisionError};
use sky_provider_testkit::{FaultRule, Op};
use sky_state::ClusterStatus;

use crate::support::{World, channel, request, stop_after_provisioning, wait_event, world};

/// Starts a launch of `cluster` in the background; returns its token and task.
fn start(
    w: &Arc<World>,
    cluster: &str,
) -> (
    CancellationToken,
    Arc<EventLog>,
    tokio::task::JoinHandle<Result<sky_launch::Launched, sky_launch::LaunchError>>,
) {
    let cancel = CancellationToken::new();
    let log = Arc::new(EventLog::new());
    let (w2, c2, l2, req) = (w.clone(), cancel.clone(), log.clone(), request(cluster));
    let task = tokio::spawn(async move { w2.backend.launch(&req, &c2, l2.as_ref()).await });
    (cancel, log, task)
}

fn assert_cancelled(err: &sky_launch::LaunchError, left: ClusterState, log: &EventLog) {
    assert_eq!(err.kind, LaunchErrorKind::Cancelled, "{err:?}");
    assert_eq!(err.exit_code(), sky_launch::exit::INTERRUPTED);
    assert_eq!(err.cluster, Some(left), "{err}");
    assert!(err.to_string().starts_with("cancelled: "), "{err}");
    let announced: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| matches!(e, LaunchEvent::Cancelled { .. }))
        .collect();
    assert_eq!(announced.len(), 1, "{:?}", log.events());
    assert!(
        matches!(&announced[0], LaunchEvent::Cancelled { left: l, .. } if *l == left),
        "{announced:?}"
    );
}

#[tokio::test]
async fn cancelled_before_it_starts_does_nothing() {
    let w = world(vec![]).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let log = EventLog::new();
    let err = w
        .backend
        .launch(&request("cx-before"), &cancel, &log)
        .await
        .unwrap_err();
    assert_cancelled(&err, ClusterState::Absent, &log);
    assert!(w.faults.calls().is_empty(), "{:?}", w.faults.calls());
    w.nothing_left("cx-before").await;
}

#[tokio::test]
async fn cancelled_while_waiting_for_the_lock() {
    let w = Arc::new(world(vec![]).await);
    let held = sky_launch::lock_cluster(&w.backend.lock_dir, "cx-lock", || {})
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let (events, mut rx) = channel();
    let (w2, c2) = (w.clone(), cancel.clone());
    let task =
        tokio::spawn(async move { w2.backend.launch(&request("cx-lock"), &c2, &events).await });
    wait_event(&mut rx, |e| matches!(e, LaunchEvent::WaitingForLock { .. })).await;
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind, LaunchErrorKind::Cancelled);
    assert_eq!(err.cluster, Some(ClusterState::Absent));
    wait_event(&mut rx, |e| matches!(e, LaunchEvent::Cancelled { .. })).await;
    assert!(w.faults.calls().is_empty());
    drop(held);
    w.nothing_left("cx-lock").await;
}

#[tokio::test]
async fn cancelled_in_run_instances_removes_the_record() {
    let w = Arc::new(world(vec![FaultRule::hang(Op::RunInstances)]).await);
    let (cancel, log, task) = start(&w, "cx-run");
    w.faults.wait_for_held(1).await;
    // Recorded INIT before the provider was called.
    assert_eq!(w.status("cx-run").await, Some(ClusterStatus::Init));
    assert!(!w.lock_is_free("cx-run"));
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_cancelled(&err, ClusterState::Absent, &log);
    assert_eq!(w.faults.held(), 0, "the held call was not dropped");
    assert!(w.faults.count(Op::TerminateInstances) >= 1);
    w.nothing_left("cx-run").await;
}

#[tokio::test]
async fn cancelled_after_run_instances_made_the_nodes_terminates_them() {
    // The provider created the nodes, then the call is held: the cancel must remove them.
    let w = Arc::new(world(vec![FaultRule::hang(Op::RunInstances).after_inner()]).await);
    let (cancel, log, task) = start(&w, "cx-made");
    w.faults.wait_for_held(1).await;
    assert_eq!(w.fake.clusters().len(), 1);
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_cancelled(&err, ClusterState::Absent, &log);
    w.nothing_left("cx-made").await;
}

#[tokio::test]
async fn cancelled_in_wait_instances_terminates_them() {
    let w = Arc::new(world(vec![FaultRule::hang(Op::WaitInstances)]).await);
    let (cancel, log, task) = start(&w, "cx-wait");
    w.faults.wait_for_held(1).await;
    assert_eq!(w.fake.clusters().len(), 1);
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_cancelled(&err, ClusterState::Absent, &log);
    w.nothing_left("cx-wait").await;
}

#[tokio::test]
async fn a_cancel_whose_cleanup_fails_leaves_it_init_for_sky_down() {
    let w = Arc::new(
        world(vec![
            FaultRule::hang(Op::RunInstances).after_inner(),
            FaultRule::new(
                Op::TerminateInstances,
                ProvisionError::transient(FailureScope::Cloud, "the fake api is down"),
            ),
        ])
        .await,
    );
    let (cancel, log, task) = start(&w, "cx-dirty");
    w.faults.wait_for_held(1).await;
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_cancelled(&err, ClusterState::Init { instances_up: true }, &log);
    assert!(err.to_string().contains("`sky down cx-dirty`"), "{err}");
    assert!(err.to_string().contains("the fake api is down"), "{err}");
    assert_eq!(w.status("cx-dirty").await, Some(ClusterStatus::Init));
    assert_eq!(w.fake.clusters().len(), 1);
    assert!(w.lock_is_free("cx-dirty"));
    // `sky down` finds it and removes it.
    w.faults.clear_rules();
    w.backend
        .down(
            "cx-dirty",
            false,
            &CancellationToken::new(),
            &sky_launch::Quiet,
        )
        .await
        .unwrap();
    w.nothing_left("cx-dirty").await;
}

#[tokio::test]
async fn cancelled_in_a_transient_backoff() {
    let w = Arc::new(
        world(vec![FaultRule::new(
            Op::RunInstances,
            ProvisionError::transient(FailureScope::Zone, "rate limited"),
        )])
        .await,
    );
    let cancel = CancellationToken::new();
    let (events, mut rx) = channel();
    let (w2, c2) = (w.clone(), cancel.clone());
    let task = tokio::spawn(async move {
        w2.backend
            .launch(&request("cx-backoff"), &c2, &events)
            .await
    });
    wait_event(&mut rx, |e| {
        matches!(
            e,
            LaunchEvent::Retrying {
                why: RetryReason::Transient { .. },
                ..
            }
        )
    })
    .await;
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind, LaunchErrorKind::Cancelled);
    assert_eq!(err.cluster, Some(ClusterState::Absent));
    // Cancelled in the first backoff: one try, no second.
    assert_eq!(w.faults.count(Op::RunInstances), 1);
    w.nothing_left("cx-backoff").await;
}

#[tokio::test]
async fn cancelled_while_retry_until_up_waits() {
    let w = Arc::new(
        world(vec![FaultRule::new(
            Op::RunInstances,
            ProvisionError::capacity(FailureScope::Region, "full"),
        )])
        .await,
    );
    let cancel = CancellationToken::new();
    let (events, mut rx) = channel();
    let (w2, c2) = (w.clone(), cancel.clone());
    let task = tokio::spawn(async move {
        let req = sky_launch::LaunchRequest {
            retry_until_up: true,
            ..request("cx-retry")
        };
        w2.backend.launch(&req, &c2, &events).await
    });
    wait_event(&mut rx, |e| {
        matches!(
            e,
            LaunchEvent::Retrying {
                why: RetryReason::RetryUntilUp { attempts: 3 },
                ..
            }
        )
    })
    .await;
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind, LaunchErrorKind::Cancelled);
    assert_eq!(err.cluster, Some(ClusterState::Absent));
    // The round's failed placements travel with the cancel.
    assert_eq!(err.history.len(), 3, "{:?}", err.history);
    w.nothing_left("cx-retry").await;
}

#[tokio::test]
async fn cancelled_after_the_instances_are_up_leaves_them_init() {
    // The launcher's first call once the instances are up lists the nodes to start agents.
    let w = Arc::new(world(vec![FaultRule::hang(Op::QueryInstances)]).await);
    let (cancel, log, task) = start(&w, "cx-up");
    w.faults.wait_for_held(1).await;
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_cancelled(&err, ClusterState::Init { instances_up: true }, &log);
    assert!(
        err.to_string().contains("`sky down cx-up` removes it"),
        "{err}"
    );
    assert_eq!(w.status("cx-up").await, Some(ClusterStatus::Init));
    assert_eq!(w.fake.clusters().len(), 1);
    assert_eq!(w.faults.count(Op::TerminateInstances), 0);
    assert!(w.lock_is_free("cx-up"));
}

#[tokio::test]
async fn a_cancelled_relaunch_of_an_init_cluster_never_tears_it_down() {
    let w = Arc::new(world(vec![stop_after_provisioning()]).await);
    // A first launch leaves the cluster INIT with its instances up.
    let err = w
        .backend
        .launch(
            &request("cx-init"),
            &CancellationToken::new(),
            &sky_launch::Quiet,
        )
        .await
        .unwrap_err();
    assert_eq!(err.cluster, Some(ClusterState::Init { instances_up: true }));
    // A second launch provisions it again in place; cancelled there, it stays as it was.
    w.faults.clear_rules();
    w.faults.add_rule(FaultRule::hang(Op::RunInstances));
    let (cancel, log, task) = start(&w, "cx-init");
    w.faults.wait_for_held(1).await;
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_cancelled(&err, ClusterState::Init { instances_up: true }, &log);
    assert_eq!(w.status("cx-init").await, Some(ClusterStatus::Init));
    assert_eq!(w.fake.clusters().len(), 1);
    assert_eq!(w.faults.count(Op::TerminateInstances), 0);
}

#[tokio::test]
async fn one_of_two_hundred_concurrent_launches_is_cancelled() {
    const N: usize = 200;
    let target = "cx-many-7";
    let w = Arc::new(
        world(vec![
            FaultRule::hang(Op::RunInstances).for_cluster(target),
            stop_after_provisioning(),
        ])
        .await,
    );
    let mut tokens = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..N {
        let cancel = CancellationToken::new();
        let (w2, c2) = (w.clone(), cancel.clone());
        let name = format!("cx-many-{i}");
        tasks.push(tokio::spawn(async move {
            w2.backend
                .launch(&request(&name), &c2, &sky_launch::Quiet)
                .await
        }));
        tokens.push(cancel);
    }
    w.faults.wait_for_held(1).await;
    tokens[7].cancel();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap_err());
    }
    for (i, err) in results.iter().enumerate() {
        if i == 7 {
            assert_eq!(err.kind, LaunchErrorKind::Cancelled, "{err:?}");
            assert_eq!(err.cluster, Some(ClusterState::Absent));
        } else {
            // Every other launch went its own way: provisioned, then stopped by the fault.
            assert_eq!(err.kind, LaunchErrorKind::Provider, "launch {i}: {err:?}");
            assert_eq!(err.cluster, Some(ClusterState::Init { instances_up: true }));
        }
    }
    let clusters = w.fake.clusters();
    assert_eq!(clusters.len(), N - 1);
    assert!(
        !clusters
            .iter()
            .any(|c| c.starts_with(&format!("{target}-")))
    );
    assert!(w.status(target).await.is_none());
    assert_eq!(w.backend.state.list_clusters().await.unwrap().len(), N - 1);
    assert!(w.lock_is_free(target));
}
