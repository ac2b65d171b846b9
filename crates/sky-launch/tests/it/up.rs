//! Launches that reach UP: the nodes run a real agent (`World::with_agent`), the job runs.

use std::sync::Arc;

use sky_launch::{CancellationToken, ClusterState, EventLog, LaunchErrorKind, LaunchEvent};
use sky_provider::{FailureScope, ProvisionError};
use sky_provider_testkit::{FaultRule, Op};
use sky_state::ClusterStatus;

use crate::support::{request, world};

#[tokio::test]
async fn a_transient_error_then_up_then_reused_then_down() {
    let w = world(vec![
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::transient(FailureScope::Zone, "rate limited"),
        )
        .times(1),
    ])
    .await
    .with_agent();
    let log = EventLog::new();
    let cancel = CancellationToken::new();
    let l = w
        .backend
        .launch(&request("up-1"), &cancel, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!l.reused);
    assert_eq!(l.cluster, "up-1");
    assert_eq!(w.status("up-1").await, Some(ClusterStatus::Up));
    assert_eq!(l.handle.provider.region, "west");
    let events = log.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LaunchEvent::Up { region, .. } if region == "west"))
    );
    assert!(events.contains(&LaunchEvent::Submitted {
        cluster: "up-1".into(),
        job_id: l.job_id
    }));
    // The job ran on the node.
    let mut out = Vec::new();
    let rec = w
        .backend
        .logs("up-1", Some(l.job_id), true, None, &mut |b: &[u8]| {
            out.extend_from_slice(b)
        })
        .await
        .unwrap()
        .expect("the job is in the queue");
    assert_eq!(rec.status, sky_agent::JobStatus::Succeeded);
    assert!(String::from_utf8_lossy(&out).contains("hi"));
    // A second launch reuses it.
    let again = w
        .backend
        .launch(&request("up-1"), &cancel, &sky_launch::Quiet)
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(w.faults.count(Op::RunInstances), 2);
    w.backend
        .down("up-1", false, &cancel, &sky_launch::Quiet)
        .await
        .unwrap();
    w.nothing_left("up-1").await;
}

#[tokio::test]
async fn a_cancelled_launch_on_an_up_cluster_leaves_it_up() {
    let w = Arc::new(world(vec![]).await.with_agent());
    let cancel = CancellationToken::new();
    w.backend
        .launch(&request("up-2"), &cancel, &sky_launch::Quiet)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Held where the launch reaches the head agent (it lists the nodes first).
    w.faults.add_rule(FaultRule::hang(Op::QueryInstances));
    let cancel = CancellationToken::new();
    let log = Arc::new(EventLog::new());
    let (w2, c2, l2) = (w.clone(), cancel.clone(), log.clone());
    let task =
        tokio::spawn(async move { w2.backend.launch(&request("up-2"), &c2, l2.as_ref()).await });
    w.faults.wait_for_held(1).await;
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind, LaunchErrorKind::Cancelled);
    assert_eq!(err.cluster, Some(ClusterState::Up));
    assert!(log.events().contains(&LaunchEvent::Cancelled {
        cluster: "up-2".into(),
        left: ClusterState::Up
    }));
    assert_eq!(w.status("up-2").await, Some(ClusterStatus::Up));
    assert_eq!(w.faults.count(Op::TerminateInstances), 0);
    w.faults.clear_rules();
    // Its agent still answers.
    w.backend.client("up-2").await.unwrap();
    w.backend
        .down("up-2", false, &CancellationToken::new(), &sky_launch::Quiet)
        .await
        .unwrap();
    w.nothing_left("up-2").await;
}

#[tokio::test]
async fn a_fault_while_the_agents_start_leaves_it_init_with_instances_up() {
    let w = world(vec![crate::support::stop_after_provisioning()])
        .await
        .with_agent();
    let err = w
        .backend
        .launch(
            &request("up-3"),
            &CancellationToken::new(),
            &sky_launch::Quiet,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, LaunchErrorKind::Provider);
    assert_eq!(err.cluster, Some(ClusterState::Init { instances_up: true }));
    assert_eq!(
        err.provision.as_ref().map(|p| p.message.as_str()),
        Some("stop here: the placement worked")
    );
    // Launching again with the fault gone finishes it in place.
    w.faults.clear_rules();
    let l = w
        .backend
        .launch(
            &request("up-3"),
            &CancellationToken::new(),
            &sky_launch::Quiet,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!l.reused);
    assert_eq!(w.status("up-3").await, Some(ClusterStatus::Up));
    w.backend
        .down("up-3", false, &CancellationToken::new(), &sky_launch::Quiet)
        .await
        .unwrap();
    w.nothing_left("up-3").await;
}
