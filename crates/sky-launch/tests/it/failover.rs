//! Failover through the real launcher (`Backend::launch`) with the test kit's `FakeCloud` behind a
//! `FaultInjector` (see `support.rs`). A placement that works is stopped right after
//! provisioning by a `query_instances` fault, so no agent is needed: the cluster is then
//! recorded INIT where it was placed, with its instances up, which is what the assertions check.

use sky_launch::{
    Attempt, CancellationToken, ClusterState, EventLog, LaunchError, LaunchErrorKind,
};
use sky_provider::{FailureScope, ProvisionError, ProvisionErrorKind};
use sky_provider_testkit::{FaultRule, Op};
use sky_state::ClusterStatus;

use crate::support::{World, places, request, runs, stop_after_provisioning, world};

/// Launches `cluster`, returning the error and the history the reporter saw.
async fn launch(w: &World, cluster: &str) -> (LaunchError, Vec<Attempt>) {
    let log = EventLog::new();
    let err = w
        .backend
        .launch(&request(cluster), &CancellationToken::new(), &log)
        .await
        .expect_err("every launch here stops with an error");
    (err, log.attempts())
}

/// The launch got past provisioning in `region/zone`: the only instances left at the cloud are
/// that cluster's, and the state records it INIT there.
async fn placed_in(w: &World, cluster: &str, err: &LaunchError, region: &str, zone: &str) {
    assert!(
        err.kind == LaunchErrorKind::Provider && err.to_string().contains("stop here"),
        "expected the post-provisioning stop, got {err:?}"
    );
    assert_eq!(err.cluster, Some(ClusterState::Init { instances_up: true }));
    assert!(
        err.to_string().contains("is INIT with its instances up"),
        "{err}"
    );
    assert_eq!(w.fake.clusters().len(), 1, "{:?}", w.fake.clusters());
    let rec = w
        .backend
        .state
        .get_cluster(cluster)
        .await
        .unwrap()
        .expect("the placed cluster is recorded");
    assert_eq!(rec.status, ClusterStatus::Init);
    assert_eq!(rec.region, region);
    assert_eq!(rec.zone.as_deref(), Some(zone));
}

#[tokio::test]
async fn capacity_blocks_zones_quota_blocks_the_region_in_price_order() {
    let w = world(vec![
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::capacity(FailureScope::Zone, "no capacity in west-a"),
        )
        .in_zone("west-a"),
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::capacity(FailureScope::Zone, "no capacity in west-b"),
        )
        .in_zone("west-b"),
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::quota(FailureScope::Region, "vcpu quota hit in east"),
        )
        .in_region("east"),
        stop_after_provisioning(),
    ])
    .await;
    let (err, seen) = launch(&w, "fo-cap").await;
    // Cheapest region zone by zone, then one zone of the next (the quota blocks east-b too),
    // then the next region.
    assert_eq!(
        runs(&w.faults),
        ["west/west-a", "west/west-b", "east/east-a", "north/north-a"]
    );
    assert_eq!(places(&seen), ["west/west-a", "west/west-b", "east/east-a"]);
    let reasons: Vec<&str> = seen.iter().map(|a| a.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "no capacity in west-a",
            "no capacity in west-b",
            "vcpu quota hit in east"
        ]
    );
    placed_in(&w, "fo-cap", &err, "north", "north-a").await;
}

#[tokio::test]
async fn auth_stops_at_once_with_the_fix() {
    let w = world(vec![FaultRule::new(
        Op::RunInstances,
        ProvisionError::auth("the fake key expired").with_fix("renew the fake key"),
    )])
    .await;
    let (err, seen) = launch(&w, "fo-auth").await;
    assert_eq!(err.kind, LaunchErrorKind::FailoverStopped, "{err:?}");
    assert_eq!(err.exit_code(), sky_launch::exit::NO_RESOURCES);
    let message = err.to_string();
    assert!(message.contains("the fake key expired"), "{message}");
    assert!(message.contains("To fix: renew the fake key"), "{message}");
    let p = err.provision.as_ref().expect("the provider's error");
    assert_eq!(
        (p.kind, p.scope),
        (ProvisionErrorKind::Auth, FailureScope::Cloud)
    );
    assert_eq!(p.fix.as_deref(), Some("renew the fake key"));
    assert_eq!(err.cluster, Some(ClusterState::Absent));
    assert_eq!(runs(&w.faults), ["west/west-a"]);
    assert_eq!(places(&err.history), ["west/west-a"]);
    assert_eq!(err.history[0].kind, ProvisionErrorKind::Auth);
    assert_eq!(seen, err.history);
    w.nothing_left("fo-auth").await;
}

#[tokio::test]
async fn invalid_config_stops_at_once() {
    let w = world(vec![
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::invalid_config(FailureScope::Cloud, "the fake network is missing")
                .with_fix("create the fake network"),
        )
        .in_region("west"),
    ])
    .await;
    let (err, _) = launch(&w, "fo-cfg").await;
    assert_eq!(err.kind, LaunchErrorKind::FailoverStopped, "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("To fix: create the fake network"),
        "{message}"
    );
    assert_eq!(
        err.provision.as_ref().map(|p| p.kind),
        Some(ProvisionErrorKind::InvalidConfig)
    );
    assert_eq!(places(&err.history), ["west/west-a"]);
    assert_eq!(runs(&w.faults), ["west/west-a"]);
    w.nothing_left("fo-cfg").await;
}

#[tokio::test]
async fn transient_retries_with_backoff_then_blocks_the_zone() {
    let w = world(vec![
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::transient(FailureScope::Zone, "rate limited in west-a"),
        )
        .in_zone("west-a"),
        stop_after_provisioning(),
    ])
    .await;
    let (err, seen) = launch(&w, "fo-transient").await;
    // Three tries in all, then the zone is blocked like capacity and failover moves on.
    assert_eq!(
        runs(&w.faults),
        ["west/west-a", "west/west-a", "west/west-a", "west/west-b"]
    );
    assert_eq!(places(&seen), ["west/west-a"]);
    assert_eq!(seen[0].reason, "rate limited in west-a");
    assert_eq!(
        (seen[0].kind, seen[0].scope),
        (ProvisionErrorKind::Transient, FailureScope::Zone)
    );
    // The history travels with the error too.
    assert_eq!(err.history, seen);
    placed_in(&w, "fo-transient", &err, "west", "west-b").await;
}

#[tokio::test]
async fn a_transient_error_that_clears_needs_no_failover() {
    let w = world(vec![
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::transient(FailureScope::Zone, "rate limited"),
        )
        .in_zone("west-a")
        .times(1),
        stop_after_provisioning(),
    ])
    .await;
    let (err, seen) = launch(&w, "fo-blip").await;
    assert_eq!(runs(&w.faults), ["west/west-a", "west/west-a"]);
    assert!(seen.is_empty(), "{seen:?}");
    placed_in(&w, "fo-blip", &err, "west", "west-a").await;
}

#[tokio::test]
async fn unclassified_blocks_where_it_was_tried_and_moves_on() {
    // It claims the whole cloud; an unclassified error still blocks only the zone tried.
    let w = world(vec![
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::new(
                ProvisionErrorKind::Other,
                FailureScope::Cloud,
                "the fake api said something odd",
            ),
        )
        .in_zone("west-a"),
        stop_after_provisioning(),
    ])
    .await;
    let (err, seen) = launch(&w, "fo-other").await;
    assert_eq!(runs(&w.faults), ["west/west-a", "west/west-b"]);
    assert_eq!(places(&seen), ["west/west-a"]);
    assert_eq!(seen[0].reason, "the fake api said something odd");
    // The attempt keeps what the provider said (kind and claimed scope).
    assert_eq!(
        (seen[0].kind, seen[0].scope),
        (ProvisionErrorKind::Other, FailureScope::Cloud)
    );
    placed_in(&w, "fo-other", &err, "west", "west-b").await;
}

#[tokio::test]
async fn a_fault_while_the_instances_come_up_terminates_them_and_moves_on() {
    let w = world(vec![
        FaultRule::new(
            Op::WaitInstances,
            ProvisionError::other("the fake nodes never booted"),
        )
        .in_zone("west-a"),
        stop_after_provisioning(),
    ])
    .await;
    let (err, seen) = launch(&w, "fo-setup").await;
    // west-a's instances were created, then terminated; west-b's are the only ones left.
    assert_eq!(runs(&w.faults), ["west/west-a", "west/west-b"]);
    assert_eq!(places(&seen), ["west/west-a"]);
    assert_eq!(seen[0].reason, "the fake nodes never booted");
    let terminated_west_a = w
        .faults
        .calls()
        .iter()
        .any(|(op, _, z)| *op == Op::TerminateInstances && z.as_deref() == Some("west-a"));
    assert!(terminated_west_a, "{:?}", w.faults.calls());
    placed_in(&w, "fo-setup", &err, "west", "west-b").await;
}

#[tokio::test]
async fn every_placement_failing_is_no_resources_with_the_whole_history() {
    let w = world(vec![
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::capacity(FailureScope::Zone, "no capacity"),
        )
        .in_region("west"),
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::other("unclassified failure"),
        )
        .in_region("east"),
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::quota(FailureScope::Region, "quota"),
        )
        .in_region("north"),
    ])
    .await;
    let (err, seen) = launch(&w, "fo-none").await;
    assert_eq!(err.kind, LaunchErrorKind::NoResources, "{err:?}");
    assert_eq!(err.cluster, Some(ClusterState::Absent));
    let (message, history) = (err.to_string(), &err.history);
    let kinds: Vec<_> = history.iter().map(|a| (a.kind, a.scope)).collect();
    assert_eq!(
        kinds,
        [
            (ProvisionErrorKind::Capacity, FailureScope::Zone),
            (ProvisionErrorKind::Capacity, FailureScope::Zone),
            (ProvisionErrorKind::Other, FailureScope::Zone),
            (ProvisionErrorKind::Other, FailureScope::Zone),
            (ProvisionErrorKind::Quota, FailureScope::Region),
        ]
    );
    // The last placement's error is the one behind it.
    assert_eq!(
        err.provision.as_ref().map(|p| p.kind),
        Some(ProvisionErrorKind::Quota)
    );
    let order = [
        "west/west-a",
        "west/west-b",
        "east/east-a",
        "east/east-b",
        "north/north-a",
    ];
    assert_eq!(runs(&w.faults), order);
    assert_eq!(places(history), order);
    assert_eq!(&seen, history);
    assert!(
        message.contains("every placement failed (5 attempts)"),
        "{message}"
    );
    assert!(message.contains("unclassified failure"), "{message}");
    w.nothing_left("fo-none").await;
}

#[tokio::test]
async fn a_cloud_out_of_capacity_fails_over_to_the_next_cloud() {
    // Every region of the cheaper cloud is full: failover moves to the second cloud.
    let full = |region: &str| {
        FaultRule::new(
            Op::RunInstances,
            ProvisionError::capacity(FailureScope::Region, format!("{region} is full")),
        )
        .in_region(region)
    };
    let w = crate::support::two_clouds(
        vec![full("west"), full("east"), full("north")],
        vec![stop_after_provisioning()],
        true,
    )
    .await;
    let (err, seen) = launch(&w, "fo-cloud").await;
    assert_eq!(
        runs(&w.faults),
        ["west/west-a", "east/east-a", "north/north-a"]
    );
    assert_eq!(runs(&w.faults2), ["south/south-a"]);
    let clouds: Vec<&str> = seen.iter().map(|a| a.cloud.as_str()).collect();
    assert_eq!(clouds, ["fake", "fake", "fake"]);
    assert_eq!(err.cluster, Some(ClusterState::Init { instances_up: true }));
    assert!(w.fake.clusters().is_empty(), "{:?}", w.fake.clusters());
    assert_eq!(w.fake2.clusters().len(), 1);
    let rec = w
        .backend
        .state
        .get_cluster("fo-cloud")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rec.cloud.as_str(), rec.region.as_str()),
        ("fake2", "south")
    );
}
