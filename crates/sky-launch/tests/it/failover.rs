//! Failover through the real launcher (`Backend::launch`) with the test kit's `FakeCloud` behind a
//! `FaultInjector`, a state database in a temp dir and a small catalog.
//!
//! The catalog prices the fake cloud's regions so that the optimizer's order (cheapest first:
//! `west`, `east`, `north`) is neither the topology's order nor the alphabet's. A placement that
//! works is stopped right after provisioning by a `query_instances` fault (the launcher's first
//! call when it starts the agents), so no agent binary is needed: the cluster is then recorded
//! INIT where it was placed, with its instances up, which is what the assertions check.

use std::sync::{Arc, Mutex, OnceLock};

use sky_catalog::{Catalog, ExtraOffer};
use sky_launch::{Attempt, Backend, LaunchError, LaunchOptions, Reporter};
use sky_provider::{FailureScope, ProviderRegistry, ProvisionError, ProvisionErrorKind};
use sky_provider_testkit::{
    FAKE_CLOUD_ID, FAKE_INSTANCE_TYPE, FakeCloud, FaultInjector, FaultRule, Op,
};
use sky_state::{ClusterStatus, StateDb};

#[derive(Default)]
struct Recorder {
    attempts: Mutex<Vec<Attempt>>,
}

impl Reporter for Recorder {
    fn step(&self, _m: &str) {}
    fn attempt_failed(&self, a: &Attempt) {
        self.attempts.lock().unwrap().push(a.clone());
    }
    fn done(&self, _m: &str) {}
}

struct World {
    backend: Backend,
    fake: Arc<FakeCloud>,
    faults: Arc<FaultInjector>,
    dir: tempfile::TempDir,
}

fn offer(region: &str, zone: &str, price: f64) -> ExtraOffer {
    ExtraOffer {
        instance_type: FAKE_INSTANCE_TYPE.into(),
        accelerator: None,
        vcpus: 2.0,
        memory_gib: 4.0,
        price,
        spot_price: None,
        region: region.into(),
        zone: Some(zone.into()),
    }
}

/// Regions in topology order east, north, west; in price order west (0.10), east (0.20),
/// north (0.30).
async fn world(rules: Vec<FaultRule>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeCloud::new(dir.path().join("fake")).with_regions(vec![
        ("east".into(), vec!["east-a".into(), "east-b".into()]),
        ("north".into(), vec!["north-a".into()]),
        ("west".into(), vec!["west-a".into(), "west-b".into()]),
    ]));
    let faults = FaultInjector::wrap(fake.clone(), rules);
    let catalog = Catalog::empty().with_extra_cloud(
        FAKE_CLOUD_ID,
        &[
            offer("east", "east-a", 0.20),
            offer("east", "east-b", 0.20),
            offer("north", "north-a", 0.30),
            offer("west", "west-a", 0.10),
            offer("west", "west-b", 0.10),
        ],
    );
    let mut registry = ProviderRegistry::new();
    registry.register(faults.clone());
    let state = StateDb::open(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))
    .await
    .unwrap();
    let backend = Backend {
        registry,
        state,
        catalog: OnceLock::from(Some(catalog)),
        enabled_clouds: vec![FAKE_CLOUD_ID.into()],
        sky_binary: "/nonexistent/sky".into(),
        hook_env: Vec::new(),
        agent_env: Vec::new(),
        user: "sky-launch-it".into(),
        lock_dir: dir.path().join("locks"),
    };
    World {
        backend,
        fake,
        faults,
        dir,
    }
}

fn task() -> sky_spec::Task {
    let yaml = "resources:\n  cpus: 2\nrun: echo hi\n";
    match sky_spec::parse_task_file(yaml, &sky_spec::ParseOptions::default()).unwrap() {
        sky_spec::TaskFile::Task(t) => *t,
        other => panic!("not a task: {other:?}"),
    }
}

fn opts(cluster: &str) -> LaunchOptions {
    LaunchOptions {
        cluster: cluster.into(),
        command_line: "sky launch".into(),
        ..LaunchOptions::default()
    }
}

/// Stops a placement that worked right after provisioning (see the module docs).
fn stop_after_provisioning() -> FaultRule {
    FaultRule::new(
        Op::QueryInstances,
        ProvisionError::other("stop here: the placement worked"),
    )
}

/// `region/zone` of each attempt in the history (`Cloud (region/zone)`).
fn places(history: &[Attempt]) -> Vec<String> {
    history
        .iter()
        .map(|a| {
            let (_, rest) = a.infra.split_once('(').expect("infra names a place");
            rest.trim_end_matches(')').to_string()
        })
        .collect()
}

/// `region/zone` of each `run_instances` call, in order.
fn runs(faults: &FaultInjector) -> Vec<String> {
    faults
        .calls()
        .into_iter()
        .filter(|(op, _, _)| *op == Op::RunInstances)
        .map(|(_, r, z)| format!("{r}/{}", z.unwrap_or_default()))
        .collect()
}

/// Launches `cluster`, returning the error and the history the reporter saw.
async fn launch(w: &World, cluster: &str) -> (LaunchError, Vec<Attempt>) {
    let rep = Recorder::default();
    let err = w
        .backend
        .launch(&task(), &opts(cluster), &rep)
        .await
        .expect_err("every launch here stops with an error");
    let seen = rep.attempts.lock().unwrap().clone();
    (err, seen)
}

/// The launch got past provisioning in `region/zone`: the only instances left at the cloud are
/// that cluster's, and the state records it INIT there.
async fn placed_in(w: &World, cluster: &str, err: &LaunchError, region: &str, zone: &str) {
    assert!(
        matches!(err, LaunchError::Provider(m) if m.contains("stop here")),
        "expected the post-provisioning stop, got {err:?}"
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

/// Nothing of a failed launch is left: no instances, no node directories, no record.
async fn nothing_left(w: &World, cluster: &str) {
    assert!(w.fake.clusters().is_empty(), "{:?}", w.fake.clusters());
    let root = w.dir.path().join("fake");
    let dirs = std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0);
    assert_eq!(dirs, 0, "node directories left under {}", root.display());
    assert!(
        w.backend
            .state
            .get_cluster(cluster)
            .await
            .unwrap()
            .is_none(),
        "a failed launch left its record"
    );
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
    let LaunchError::Stopped { message, history } = &err else {
        panic!("expected Stopped, got {err:?}");
    };
    assert!(message.contains("the fake key expired"), "{message}");
    assert!(message.contains("To fix: renew the fake key"), "{message}");
    assert_eq!(runs(&w.faults), ["west/west-a"]);
    assert_eq!(places(history), ["west/west-a"]);
    assert_eq!(&seen, history);
    nothing_left(&w, "fo-auth").await;
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
    let LaunchError::Stopped { message, history } = &err else {
        panic!("expected Stopped, got {err:?}");
    };
    assert!(
        message.contains("To fix: create the fake network"),
        "{message}"
    );
    assert_eq!(places(history), ["west/west-a"]);
    assert_eq!(runs(&w.faults), ["west/west-a"]);
    nothing_left(&w, "fo-cfg").await;
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
    let LaunchError::NoResources { message, history } = &err else {
        panic!("expected NoResources, got {err:?}");
    };
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
    nothing_left(&w, "fo-none").await;
}
