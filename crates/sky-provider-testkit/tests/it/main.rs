//! The conformance suite against the fake cloud and the local cloud, and the fault injector.

use std::sync::Arc;
use std::time::Duration;

use sky_cloud_local::{Capacity, LocalConfig, LocalProvider};
use sky_provider::{
    CloudProvider, FailureScope, FeatureSet, ProvisionError, ProvisionErrorKind, ProvisionRequest,
};
use sky_provider_testkit::{
    CheckOutcome, ConformanceConfig, FakeCloud, FaultInjector, FaultRule, LeftoverProbe, Op,
    run_conformance,
};
use sky_spec::model::Resources;

fn dir_probe(root: std::path::PathBuf, ignore: &'static [&'static str]) -> LeftoverProbe {
    Arc::new(move || {
        let root = root.clone();
        Box::pin(async move {
            std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !ignore.contains(&n.as_str()))
                .collect()
        })
    })
}

#[tokio::test]
async fn fake_cloud_passes_the_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeCloud::new(tmp.path().join("fake")));
    let cfg = ConformanceConfig::new("fake-1", "fake-1")
        .num_nodes(3)
        .leftovers(dir_probe(tmp.path().join("fake"), &[]));
    let report = run_conformance(fake.clone(), cfg).await;
    eprintln!("{report}");
    report.assert_complete();
    assert!(fake.clusters().is_empty());
    // Spot and open_ports are features of the fake cloud; stop ran.
    assert_eq!(report.outcome("stop_start"), Some(&CheckOutcome::Passed));
}

#[tokio::test]
async fn local_cloud_passes_the_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("local");
    let cfg = LocalConfig::from_json(&serde_json::Value::Null).unwrap();
    let region = cfg.regions[0].name.clone();
    let local = LocalProvider::new(root.clone(), cfg, "/usr/bin/true".into())
        .with_capacity(Capacity::from_parts(4.0, 16.0, Vec::new()))
        .with_kill_grace(Duration::from_millis(300));
    let cfg = ConformanceConfig::new(region, "local")
        .num_nodes(2)
        .leftovers(dir_probe(root, &[".addresses"]));
    let report = run_conformance(Arc::new(local), cfg).await;
    eprintln!("{report}");
    // Every check runs on the local cloud: network and forward_port too (python3 is on this
    // machine; without it they fail rather than skip).
    report.assert_complete();
    assert_eq!(report.outcome("stop_start"), Some(&CheckOutcome::Passed));
}

#[tokio::test]
async fn skipped_and_not_applicable_checks_are_reported() {
    // The fake cloud presented as one without stop (as the SSH cloud is): its stop and start
    // are NotSupported, so stop_start is not applicable, which a complete run allows. Checks
    // left out by the configuration are skipped, which it does not.
    let tmp = tempfile::tempdir().unwrap();
    let fake: Arc<dyn CloudProvider> = Arc::new(FakeCloud::new(tmp.path()));
    let no_stop = FaultInjector::wrap(
        fake.clone(),
        vec![
            FaultRule::new(Op::StopInstances, ProvisionError::not_supported("stop")),
            FaultRule::new(Op::StartInstances, ProvisionError::not_supported("start")),
        ],
    );
    no_stop.set_features(FeatureSet {
        stop: false,
        ..fake.features()
    });
    let cfg = ConformanceConfig::new("fake-1", "fake-1")
        .num_nodes(1)
        .skip("upload");
    let report = run_conformance(no_stop, cfg).await;
    eprintln!("{report}");
    report.assert_passed();
    assert!(matches!(
        report.outcome("stop_start"),
        Some(CheckOutcome::NotApplicable(_))
    ));
    assert!(report.to_string().contains("n/a   stop_start"), "{report}");
    assert!(matches!(
        report.outcome("upload"),
        Some(CheckOutcome::Skipped(_))
    ));
    // One node of a multi-node cloud: left out by the configuration, so skipped.
    assert!(matches!(
        report.outcome("network"),
        Some(CheckOutcome::Skipped(_))
    ));
    let skipped: Vec<_> = report.skipped().iter().map(|c| c.name).collect();
    assert_eq!(skipped, ["upload", "network"]);
    assert!(!report.complete());
}

#[tokio::test]
async fn a_broken_provider_fails_the_suite() {
    // Launch fails in the suite's region: every later check is skipped, the report fails.
    let tmp = tempfile::tempdir().unwrap();
    let fake: Arc<dyn CloudProvider> = Arc::new(FakeCloud::new(tmp.path()));
    let broken = FaultInjector::wrap(
        fake,
        vec![
            FaultRule::new(
                Op::RunInstances,
                ProvisionError::capacity(FailureScope::Zone, "full"),
            )
            .in_region("fake-2"),
        ],
    );
    let report = run_conformance(broken, ConformanceConfig::new("fake-2", "fake-1")).await;
    assert!(!report.passed());
    assert!(matches!(
        report.outcome("launch"),
        Some(CheckOutcome::Failed(_))
    ));
    assert!(matches!(
        report.outcome("run"),
        Some(CheckOutcome::Skipped(_))
    ));
}

fn req(region: &str, zone: Option<&str>) -> ProvisionRequest {
    ProvisionRequest {
        cluster_name: "f".into(),
        cluster_name_on_cloud: "f-1".into(),
        region: region.into(),
        zone: zone.map(Into::into),
        num_nodes: 1,
        instance_type: "fake-1".into(),
        use_spot: false,
        resources: Resources::default(),
        ports: Vec::new(),
    }
}

#[tokio::test]
async fn fault_rules_match_region_zone_and_count() {
    let tmp = tempfile::tempdir().unwrap();
    let fake: Arc<dyn CloudProvider> = Arc::new(FakeCloud::new(tmp.path()));
    let fi = FaultInjector::wrap(
        fake,
        vec![
            FaultRule::new(
                Op::RunInstances,
                ProvisionError::capacity(FailureScope::Zone, "zone a full"),
            )
            .in_region("fake-1")
            .in_zone("fake-1a"),
            FaultRule::new(
                Op::RunInstances,
                ProvisionError::quota(FailureScope::Region, "quota"),
            )
            .in_region("fake-2")
            .times(1),
        ],
    );
    let e = fi
        .run_instances(&req("fake-1", Some("fake-1a")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.scope),
        (ProvisionErrorKind::Capacity, FailureScope::Zone)
    );
    let h = fi
        .run_instances(&req("fake-1", Some("fake-1b")))
        .await
        .unwrap();
    assert_eq!(h.zone.as_deref(), Some("fake-1b"));
    fi.terminate_instances(&h).await.unwrap();
    let e = fi.run_instances(&req("fake-2", None)).await.unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::Quota);
    let h = fi.run_instances(&req("fake-2", None)).await.unwrap();
    assert_eq!(fi.id(), "fake");
    assert_eq!(fi.query_instances(&h).await.unwrap().len(), 1);
    fi.terminate_instances(&h).await.unwrap();
    assert_eq!(fi.calls().len(), 7);
}
