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

#[tokio::test]
async fn a_hang_rule_holds_the_call_until_it_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeCloud::new(tmp.path()));
    let fi = FaultInjector::wrap(
        fake.clone(),
        vec![
            FaultRule::hang(Op::RunInstances).in_zone("fake-1a"),
            FaultRule::hang(Op::RunInstances)
                .in_zone("fake-1b")
                .after_inner(),
        ],
    );
    // Before the inner provider: nothing is created while it is held.
    let f = fi.clone();
    let held = tokio::spawn(async move { f.run_instances(&req("fake-1", Some("fake-1a"))).await });
    fi.wait_for_held(1).await;
    assert!(!held.is_finished());
    assert!(fake.clusters().is_empty());
    held.abort();
    assert!(held.await.unwrap_err().is_cancelled());
    assert_eq!(fi.held(), 0);
    // After the inner provider: the cluster exists while the call is held.
    let f = fi.clone();
    let held = tokio::spawn(async move { f.run_instances(&req("fake-1", Some("fake-1b"))).await });
    fi.wait_for_held(1).await;
    assert_eq!(fake.clusters(), ["f-1"]);
    held.abort();
    let _ = held.await;
    fi.wait_for_held(0).await;
    assert_eq!(fi.count(Op::RunInstances), 2);
    fi.wait_for_calls(Op::RunInstances, 2).await;
}

/// A provider whose `run_instances`, dropped mid-way, leaves a node that terminating the
/// cluster's name does not remove: it creates the node under a second name, which only its
/// `query_instances` looks at.
#[derive(Debug)]
struct LeaksOnDrop(Arc<FakeCloud>);

#[async_trait::async_trait]
impl CloudProvider for LeaksOnDrop {
    fn id(&self) -> &str {
        self.0.id()
    }
    fn features(&self) -> FeatureSet {
        self.0.features()
    }
    async fn run_instances(
        &self,
        r: &ProvisionRequest,
    ) -> Result<sky_provider::ClusterHandle, ProvisionError> {
        if r.cluster_name.ends_with("-cancel") {
            let mut hidden = r.clone();
            hidden.cluster_name_on_cloud.push_str("-hidden");
            self.0.run_instances(&hidden).await?;
            std::future::pending::<()>().await;
        }
        self.0.run_instances(r).await
    }
    async fn query_instances(
        &self,
        h: &sky_provider::ClusterHandle,
    ) -> Result<Vec<sky_provider::InstanceInfo>, ProvisionError> {
        let mut nodes = self.0.query_instances(h).await?;
        let mut hidden = h.clone();
        hidden.cluster_name_on_cloud.push_str("-hidden");
        nodes.extend(self.0.query_instances(&hidden).await?);
        Ok(nodes)
    }
    async fn terminate_instances(
        &self,
        h: &sky_provider::ClusterHandle,
    ) -> Result<(), ProvisionError> {
        self.0.terminate_instances(h).await
    }
    fn command_runner(
        &self,
        h: &sky_provider::ClusterHandle,
        node: &sky_provider::InstanceInfo,
    ) -> Result<Arc<dyn sky_provider::CommandRunner>, ProvisionError> {
        self.0.command_runner(h, node)
    }
}

#[tokio::test]
async fn a_provider_that_leaks_on_drop_fails_cancelled_launch() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeCloud::new(tmp.path()));
    let cfg = ConformanceConfig::new("fake-1", "fake-1").num_nodes(1);
    let report = run_conformance(Arc::new(LeaksOnDrop(fake)), cfg).await;
    match report.outcome("cancelled_launch") {
        Some(CheckOutcome::Failed(why)) => assert!(why.contains("while its node existed"), "{why}"),
        other => panic!("expected cancelled_launch to fail, got {other:?}\n{report}"),
    }
    assert_eq!(report.outcome("launch"), Some(&CheckOutcome::Passed));
}
