//! Failover through the real launcher (`sky_launch::Backend`) with AWS behind the
//! fault-injecting proxy, a state database in a temp dir, and a small catalog whose AWS zones are
//! moto's AZ ids.
//!
//! These launches never reach SSH, by construction: either every placement fails (the last
//! cloud is a stub that always reports capacity), or the AWS placement that succeeds runs on an
//! emulated endpoint, where `AwsProvider::command_runner` refuses moto's invented addresses and
//! no runner factory exists, so the launcher stops at "no runner for node 0".

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use sky_catalog::{Catalog, ExtraOffer};
use sky_cloud_aws::AwsConfig;
use sky_launch::{Backend, CancellationToken, LaunchErrorKind, LaunchRequest};
use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, FailureScope, FeatureSet, InstanceInfo,
    ProviderRegistry, ProvisionError, ProvisionRequest,
};
use sky_state::StateDb;

use crate::proxy::{Fault, Proxy};
use crate::{Leftovers, any_image, leftovers, moto_or_skip, provider, unique, zones};

const USER: &str = "sky-it";

/// The next cloud in price order: always out of capacity, counts its calls.
#[derive(Debug, Default)]
struct Stub {
    calls: AtomicU32,
}

#[async_trait]
impl CloudProvider for Stub {
    fn id(&self) -> &str {
        "stubcloud"
    }
    fn features(&self) -> FeatureSet {
        FeatureSet {
            multi_node: true,
            custom_image: true,
            ..FeatureSet::default()
        }
    }
    async fn run_instances(&self, req: &ProvisionRequest) -> Result<ClusterHandle, ProvisionError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(ProvisionError::capacity(
            FailureScope::Region,
            format!("stub cloud has no capacity in {}", req.region),
        ))
    }
    async fn query_instances(
        &self,
        _h: &ClusterHandle,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        Ok(Vec::new())
    }
    async fn terminate_instances(&self, _h: &ClusterHandle) -> Result<(), ProvisionError> {
        Ok(())
    }
    fn command_runner(
        &self,
        _h: &ClusterHandle,
        _n: &InstanceInfo,
    ) -> Result<Arc<dyn CommandRunner>, ProvisionError> {
        Err(ProvisionError::not_supported("runners on the stub cloud"))
    }
}

type Recorder = sky_launch::EventLog;

fn offer(it: &str, region: &str, zone: Option<&str>, price: f64) -> ExtraOffer {
    ExtraOffer {
        instance_type: it.into(),
        accelerator: None,
        vcpus: 2.0,
        memory_gib: 8.0,
        price,
        spot_price: None,
        region: region.into(),
        zone: zone.map(str::to_string),
    }
}

/// The name the launcher gives a cluster on the cloud (as `Backend::name_on_cloud`).
fn name_on_cloud(cluster: &str) -> String {
    let h = USER
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{cluster}-{:04x}", h & 0xffff)
}

struct World {
    backend: Backend,
    stub: Arc<Stub>,
    _dir: tempfile::TempDir,
}

/// A backend with AWS (through `endpoint`), the stub cloud, and a catalog: AWS us-east-1 (two
/// zones, cheapest), us-west-2 (two zones), then the stub cloud.
async fn world(
    endpoint: &str,
    image: &str,
    east: &[(String, String)],
    west: &[(String, String)],
) -> World {
    let mut rows = Vec::new();
    for (_, id) in east.iter().take(2) {
        rows.push(offer("m6i.large", "us-east-1", Some(id), 0.10));
    }
    for (_, id) in west.iter().take(2) {
        rows.push(offer("m6i.large", "us-west-2", Some(id), 0.20));
    }
    let catalog = Catalog::empty()
        .with_extra_cloud("aws", &rows)
        .with_extra_cloud("stubcloud", &[offer("stub.large", "stub-r1", None, 0.30)]);
    let stub = Arc::new(Stub::default());
    let mut registry = ProviderRegistry::new();
    // The image comes from `aws.image_id` (a task may name one only together with a cloud).
    let config = AwsConfig {
        image_id: Some(image.to_string()),
        ..AwsConfig::default()
    };
    registry.register(Arc::new(provider(endpoint, config)));
    registry.register(stub.clone());
    let dir = tempfile::tempdir().unwrap();
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
        enabled_clouds: vec!["aws".into(), "stubcloud".into()],
        sky_binary: "/nonexistent/sky".into(),
        hook_env: Vec::new(),
        agent_env: Vec::new(),
        user: USER.into(),
        lock_dir: dir.path().join("locks"),
    };
    World {
        backend,
        stub,
        _dir: dir,
    }
}

/// Zones in the launcher's order: the catalog sorts a region's zones by AZ id.
fn by_id(mut z: Vec<(String, String)>) -> Vec<(String, String)> {
    z.sort_by(|a, b| a.1.cmp(&b.1));
    z
}

fn task() -> sky_spec::Task {
    let yaml = "resources:\n  cpus: 2\nrun: echo hi\n";
    match sky_spec::parse_task_file(yaml, &sky_spec::ParseOptions::default()).unwrap() {
        sky_spec::TaskFile::Task(t) => *t,
        other => panic!("not a task: {other:?}"),
    }
}

fn opts(cluster: &str) -> LaunchRequest {
    LaunchRequest {
        command_line: "sky launch".into(),
        ..LaunchRequest::new(task(), cluster)
    }
}

#[tokio::test]
async fn capacity_and_quota_move_zone_then_region_then_next_cloud() {
    let moto = moto_or_skip!();
    let direct = provider(&moto.url(), AwsConfig::default());
    let ce = direct.client("us-east-1").await;
    let cw = direct.client("us-west-2").await;
    let east = by_id(zones(&ce).await);
    let west = by_id(zones(&cw).await);
    let image = any_image(&ce).await;
    let proxy = Proxy::start(
        moto.addr,
        vec![
            Fault::run_instances(
                Some("us-east-1"),
                Some(&east[0].0),
                "InsufficientInstanceCapacity",
            ),
            Fault::run_instances(
                Some("us-east-1"),
                Some(&east[1].0),
                "InsufficientInstanceCapacity",
            ),
            Fault::run_instances(Some("us-west-2"), None, "VcpuLimitExceeded"),
        ],
    )
    .await;
    let w = world(&proxy.url(), &image, &east, &west).await;
    let cluster = unique("fo");
    let rep = Recorder::default();
    let err = w
        .backend
        .launch(&opts(&cluster), &CancellationToken::new(), &rep)
        .await
        .unwrap_err();
    assert_eq!(err.kind, LaunchErrorKind::NoResources, "{err:?}");
    let (history, message) = (err.history.clone(), err.to_string());
    let infra: Vec<&str> = history.iter().map(|a| a.infra.as_str()).collect();
    // Zone by zone in the cheapest region, then one zone of the next region (a quota blocks
    // the whole region, so its second zone is skipped), then the next cloud.
    assert_eq!(
        infra,
        vec![
            format!("AWS (us-east-1/{})", east[0].1).as_str(),
            format!("AWS (us-east-1/{})", east[1].1).as_str(),
            format!("AWS (us-west-2/{})", west[0].1).as_str(),
            "stubcloud (stub-r1)",
        ],
        "{message}"
    );
    assert!(history[0].reason.contains("InsufficientInstanceCapacity"));
    assert!(history[2].reason.contains("VcpuLimitExceeded"));
    assert_eq!(w.stub.calls.load(Ordering::SeqCst), 1);
    // The RunInstances calls the proxy saw, in order, with zone names.
    let runs: Vec<(String, Option<String>)> = proxy
        .run_attempts()
        .into_iter()
        .map(|s| (s.region, s.zone))
        .collect();
    assert_eq!(
        runs,
        vec![
            ("us-east-1".to_string(), Some(east[0].0.clone())),
            ("us-east-1".to_string(), Some(east[1].0.clone())),
            ("us-west-2".to_string(), Some(west[0].0.clone())),
        ]
    );
    // Nothing left behind: no instance, group or key in either region, no state record.
    let name = name_on_cloud(&cluster);
    assert_eq!(leftovers(&ce, &name).await, Leftovers::NONE);
    assert_eq!(leftovers(&cw, &name).await, Leftovers::NONE);
    assert!(
        w.backend
            .state
            .get_cluster(&cluster)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(rep.attempts().len(), 4);
}

#[tokio::test]
async fn auth_error_stops_failover_at_once() {
    let moto = moto_or_skip!();
    let direct = provider(&moto.url(), AwsConfig::default());
    let ce = direct.client("us-east-1").await;
    let cw = direct.client("us-west-2").await;
    let east = by_id(zones(&ce).await);
    let west = by_id(zones(&cw).await);
    let image = any_image(&ce).await;
    let proxy = Proxy::start(
        moto.addr,
        vec![Fault::run_instances(None, None, "AuthFailure")],
    )
    .await;
    let w = world(&proxy.url(), &image, &east, &west).await;
    let cluster = unique("auth");
    let err = w
        .backend
        .launch(
            &opts(&cluster),
            &CancellationToken::new(),
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, LaunchErrorKind::FailoverStopped, "{err:?}");
    let (history, message) = (err.history.clone(), err.to_string());
    assert_eq!(history.len(), 1, "{message}");
    assert!(
        message.contains("AuthFailure") && message.contains("aws configure"),
        "{message}"
    );
    assert_eq!(proxy.run_attempts().len(), 1);
    assert_eq!(w.stub.calls.load(Ordering::SeqCst), 0);
    let name = name_on_cloud(&cluster);
    assert_eq!(leftovers(&ce, &name).await, Leftovers::NONE);
    assert!(
        w.backend
            .state
            .get_cluster(&cluster)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn transient_errors_retry_the_same_zone() {
    let moto = moto_or_skip!();
    let direct = provider(&moto.url(), AwsConfig::default());
    let ce = direct.client("us-east-1").await;
    let cw = direct.client("us-west-2").await;
    let east = by_id(zones(&ce).await);
    let west = by_id(zones(&cw).await);
    let image = any_image(&ce).await;
    // Throttled everywhere in us-east-1: the launcher retries each zone, then moves on.
    let proxy = Proxy::start(
        moto.addr,
        vec![
            Fault::run_instances(Some("us-east-1"), None, "RequestLimitExceeded"),
            Fault::run_instances(Some("us-west-2"), None, "InstanceLimitExceeded"),
        ],
    )
    .await;
    let w = world(&proxy.url(), &image, &east, &west).await;
    let cluster = unique("thr");
    let err = w
        .backend
        .launch(
            &opts(&cluster),
            &CancellationToken::new(),
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, LaunchErrorKind::NoResources, "{err:?}");
    let runs = proxy.run_attempts();
    let east_runs = runs.iter().filter(|s| s.region == "us-east-1").count();
    assert!(east_runs >= 4, "each us-east-1 zone is retried: {runs:?}");
    assert_eq!(runs.iter().filter(|s| s.region == "us-west-2").count(), 1);
    let name = name_on_cloud(&cluster);
    assert_eq!(leftovers(&ce, &name).await, Leftovers::NONE);
}

#[tokio::test]
async fn zone_failover_then_success_stops_before_ssh_and_down_cleans_up() {
    let moto = moto_or_skip!();
    let direct = provider(&moto.url(), AwsConfig::default());
    let ce = direct.client("us-east-1").await;
    let cw = direct.client("us-west-2").await;
    let east = by_id(zones(&ce).await);
    let west = by_id(zones(&cw).await);
    let image = any_image(&ce).await;
    let proxy = Proxy::start(
        moto.addr,
        vec![Fault::run_instances(
            Some("us-east-1"),
            Some(&east[0].0),
            "InsufficientInstanceCapacity",
        )],
    )
    .await;
    let w = world(&proxy.url(), &image, &east, &west).await;
    let cluster = unique("ok");
    let rep = Recorder::default();
    let err = w
        .backend
        .launch(&opts(&cluster), &CancellationToken::new(), &rep)
        .await
        .unwrap_err();
    // The instances came up in the second zone; the agent stage refused moto's addresses.
    assert_eq!(
        err.kind,
        LaunchErrorKind::Runtime,
        "expected the runner refusal: {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("refusing to connect"), "{msg}");
    assert_eq!(
        err.cluster,
        Some(sky_launch::ClusterState::Init { instances_up: true })
    );
    assert_eq!(rep.attempts().len(), 1);
    let name = name_on_cloud(&cluster);
    let left = leftovers(&ce, &name).await;
    assert_eq!(
        left,
        Leftovers {
            instances: 1,
            security_group: true,
            key_pair: true
        }
    );
    let rec = w
        .backend
        .state
        .get_cluster(&cluster)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.zone.as_deref(), Some(east[1].1.as_str()));
    // `sky down` finds it through state and removes everything.
    w.backend
        .down(
            &cluster,
            false,
            &CancellationToken::new(),
            &sky_launch::Quiet,
        )
        .await
        .unwrap();
    assert_eq!(leftovers(&ce, &name).await, Leftovers::NONE);
    assert!(
        w.backend
            .state
            .get_cluster(&cluster)
            .await
            .unwrap()
            .is_none()
    );
}
