//! Integration tests of the local cloud: real processes, temporary roots.

mod capacity;
mod discover;
mod failures;
mod lifecycle;
mod notice;
mod runner;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sky_cloud_local::{Capacity, LocalConfig, LocalProvider};
use sky_provider::{CloudProvider, ClusterHandle, CommandRunner, InstanceInfo, ProvisionRequest};
use sky_spec::model::Resources;

pub fn provider(root: &Path, cfg: serde_json::Value) -> LocalProvider {
    let cfg = LocalConfig::from_json(&cfg).expect("valid config");
    LocalProvider::new(root.to_owned(), cfg, "/usr/bin/true".into())
        .with_capacity(Capacity::from_parts(4.0, 16.0, Vec::new()))
        .with_kill_grace(Duration::from_millis(500))
}

pub fn request(name: &str, nodes: u32, region: &str, zone: Option<&str>) -> ProvisionRequest {
    ProvisionRequest {
        cluster_name: name.into(),
        cluster_name_on_cloud: format!("{name}-0a1b"),
        region: region.into(),
        zone: zone.map(Into::into),
        num_nodes: nodes,
        instance_type: "local".into(),
        use_spot: false,
        resources: Resources::default(),
        ports: Vec::new(),
    }
}

pub async fn runner(
    p: &LocalProvider,
    h: &ClusterHandle,
    node: &InstanceInfo,
) -> Arc<dyn CommandRunner> {
    p.command_runner(h, node).expect("runner")
}

pub async fn run(r: &dyn CommandRunner, script: &str) -> (i32, String) {
    let (code, out) = r.run_capture(script, &[]).await.expect("run");
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// Entries under `root`, ignoring the (possibly empty) `.addresses` directory.
pub fn leftovers(root: &Path) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".addresses")
        .collect();
    left.extend(
        std::fs::read_dir(root.join(".addresses"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!(".addresses/{}", e.file_name().to_string_lossy())),
    );
    left
}

pub async fn wait_until(mut cond: impl FnMut() -> bool, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}
