//! The provider contract suite (`sky-provider-testkit`) for AWS against moto.
//!
//! The checks that need a command runner on the nodes (second_cluster, run, upload, network,
//! forward_port, stop_start) are skipped here: moto's instances are records with invented
//! addresses, and no SSH connection may go to them. Stop/start is covered through the EC2 API
//! in `lifecycle.rs`; the runner checks need the internal-IPs + namespace-hosts setup.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sky_cloud_aws::AwsConfig;
use sky_provider_testkit::{ConformanceConfig, run_conformance};
use sky_spec::model::{ImageId, Resources};

use crate::{any_image, moto_or_skip, provider, zones};

pub const RUNNER_CHECKS: &[&str] = &[
    "second_cluster",
    "run",
    "upload",
    "network",
    "forward_port",
    "stop_start",
];

#[tokio::test]
async fn aws_passes_the_conformance_suite_against_moto() {
    let moto = moto_or_skip!();
    let p = Arc::new(provider(&moto.url(), AwsConfig::default()));
    let region = "ca-central-1";
    let c = p.client(region).await;
    let image = any_image(&c).await;
    let (_, zone_id) = zones(&c).await.remove(0);
    let mut cfg = ConformanceConfig::new(region, "m5.large")
        .zone(zone_id)
        .num_nodes(2)
        .cluster_prefix("awsconf");
    cfg.resources = Resources {
        image_id: Some(ImageId::All(image)),
        ..Resources::default()
    };
    for check in RUNNER_CHECKS {
        cfg = cfg.skip(check);
    }
    let probe_client = c.clone();
    cfg = cfg.leftovers(Arc::new(
        move || -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> {
            let c = probe_client.clone();
            Box::pin(async move {
                let mut left = Vec::new();
                let out = c
                    .describe_instances()
                    .filters(crate::filter("tag-key", &["skypilot-cluster-name"]))
                    .filters(crate::filter(
                        "instance-state-name",
                        &["pending", "running", "stopping", "stopped"],
                    ))
                    .send()
                    .await
                    .unwrap();
                for r in out.reservations() {
                    for i in r.instances() {
                        let name = i
                            .tags()
                            .iter()
                            .find(|t| t.key() == Some("skypilot-cluster-name"))
                            .and_then(|t| t.value())
                            .unwrap_or("");
                        // Only this suite's clusters (probed after the main one is terminated).
                        if name.starts_with("awsconf-") {
                            left.push(format!(
                                "instance {} of {name}",
                                i.instance_id().unwrap_or("")
                            ));
                        }
                    }
                }
                let groups = c.describe_security_groups().send().await.unwrap();
                for g in groups.security_groups() {
                    let n = g.group_name().unwrap_or("");
                    if n.starts_with("sky-sg-awsconf-") {
                        left.push(format!("security group {n}"));
                    }
                }
                let keys = c.describe_key_pairs().send().await.unwrap();
                for k in keys.key_pairs() {
                    let n = k.key_name().unwrap_or("");
                    if n.starts_with("sky-key-awsconf-") {
                        left.push(format!("key pair {n}"));
                    }
                }
                left
            })
        },
    ));
    let report = run_conformance(p, cfg).await;
    eprintln!("{report}");
    report.assert_passed();
}
