//! The provider contract suite (`sky-provider-testkit`) for AWS against moto, every check.
//!
//! moto's instances are records; the machines behind them are network-namespace sshd hosts.
//! The provider launches in internal-IPs mode into a VPC whose subnet is exactly the hosts'
//! /28 block (moto hands out a subnet's addresses in order from offset 4, where the hosts
//! listen), and reaches nodes with the real SSH runtime (the provider's own `sky_ssh::SshRunner`s). The EC2
//! calls go through the test proxy, whose hook makes them act on the hosts at the moment the
//! API answers: StopInstances powers a host off (its processes die, its link goes down, its disk
//! stays), StartInstances powers it on, TerminateInstances wipes it. So the suite's checks that
//! need the nodes (run, upload, network, forward_port, stop_start, a second cluster's isolation)
//! run for real, and no connection ever goes to an address moto invented: the provider refuses
//! any address outside loopback and 10.200.0.0/24 when its endpoint is an emulator.
//!
//! Where namespace hosts cannot run (not root) and `SKY_REQUIRE_EMULATORS` is not 1, the suite
//! still runs its API-only checks, and the report names the skipped ones.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use sky_cloud_aws::{AwsConfig, AwsOptions, AwsProvider};
use sky_provider_testkit::netns::NetnsHosts;
use sky_provider_testkit::{ConformanceConfig, LeftoverProbe, run_conformance};
use sky_spec::model::{ImageId, Resources};

use crate::proxy::{Hook, Proxy, form_value};
use crate::{any_image, moto_or_skip, provider, unique, vpc_with_subnet, zones};

/// The checks that need a command runner on the nodes.
const RUNNER_CHECKS: &[&str] = &[
    "second_cluster",
    "run",
    "upload",
    "network",
    "forward_port",
    "stop_start",
];

/// What is left of the suite's clusters, through the EC2 API (instances, groups, key pairs
/// whose names start with the prefix).
fn api_leftovers(
    c: aws_sdk_ec2::Client,
    prefix: &'static str,
) -> impl Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync {
    move || {
        let c = c.clone();
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
                    if name.starts_with(&format!("{prefix}-")) {
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
                if n.starts_with(&format!("sky-sg-{prefix}-")) {
                    left.push(format!("security group {n}"));
                }
            }
            let keys = c.describe_key_pairs().send().await.unwrap();
            for k in keys.key_pairs() {
                let n = k.key_name().unwrap_or("");
                if n.starts_with(&format!("sky-key-{prefix}-")) {
                    left.push(format!("key pair {n}"));
                }
            }
            left
        })
    }
}

/// `(instance id, private IP)` pairs of a RunInstances answer.
fn launched(xml: &str) -> Vec<(String, String)> {
    fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
        let a = s.find(open)? + open.len();
        let b = s[a..].find(close)?;
        Some(&s[a..a + b])
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<instanceId>") {
        rest = &rest[i + "<instanceId>".len()..];
        let Some(end) = rest.find("</instanceId>") else {
            break;
        };
        let id = rest[..end].to_string();
        // The instance's own fields run until the next instance id.
        let scope = &rest[..rest[end..]
            .find("<instanceId>")
            .map_or(rest.len(), |j| end + j)];
        if let Some(ip) = between(scope, "<privateIpAddress>", "</privateIpAddress>")
            && !out.iter().any(|(k, _)| *k == id)
        {
            out.push((id, ip.to_string()));
        }
    }
    out
}

/// The instance ids of a Stop/Start/TerminateInstances request.
fn request_ids(body: &str) -> Vec<String> {
    (1..)
        .map_while(|n| form_value(body, &format!("InstanceId.{n}")))
        .collect()
}

/// Makes the EC2 API's answers act on the namespace hosts (see the module text). Returns the
/// hook and a log of what it did, for the test to check that the emulation really ran.
fn power_hook(hosts: Arc<NetnsHosts>) -> (Hook, Arc<Mutex<Vec<String>>>) {
    let ips: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let log2 = log.clone();
    let hook: Hook = Arc::new(move |action: &str, body: &str, resp: &[u8]| {
        if !resp.starts_with(b"HTTP/1.1 200") {
            return;
        }
        let resp = String::from_utf8_lossy(resp);
        if action == "RunInstances" {
            let mut map = ips.lock().unwrap();
            for (id, ip) in launched(&resp) {
                // Checked by the test at the end (a panic here would only drop the answer).
                if hosts.host_of(&ip).is_none() {
                    log2.lock().unwrap().push(format!("UNSERVED {id} {ip}"));
                }
                map.insert(id, ip);
            }
            return;
        }
        let act: fn(&NetnsHosts, usize) = match action {
            "StopInstances" => NetnsHosts::power_off,
            "StartInstances" => NetnsHosts::power_on,
            "TerminateInstances" => NetnsHosts::wipe,
            _ => return,
        };
        for id in request_ids(body) {
            let ip = ips.lock().unwrap().get(&id).cloned();
            if let Some(host) = ip.as_deref().and_then(|ip| hosts.host_of(ip)) {
                act(&hosts, host);
                log2.lock().unwrap().push(format!("{action} {id}"));
            }
        }
    });
    (hook, log)
}

#[tokio::test]
async fn aws_passes_the_conformance_suite_against_moto() {
    let moto = moto_or_skip!();
    // Four hosts: the main cluster's two nodes, the second cluster's and the cancelled
    // launch's instance (moto hands out the subnet's addresses in order).
    let Some(hosts) = NetnsHosts::up_from(4, 4) else {
        // Loudly skipped above (or a panic under SKY_REQUIRE_EMULATORS=1): API checks only.
        return api_only(&moto.url()).await;
    };
    let hosts = Arc::new(hosts);
    let region = "us-east-1";
    let direct = provider(&moto.url(), AwsConfig::default());
    let c = direct.client(region).await;
    let image = any_image(&c).await;
    let zone = "us-east-1a";
    let zone_id = zones(&c)
        .await
        .into_iter()
        .find(|(n, _)| n == zone)
        .expect("moto has us-east-1a")
        .1;
    // A VPC whose only subnet (in the suite's zone) is the hosts' block.
    let vpc_name = unique("sky-conf");
    vpc_with_subnet(&c, &vpc_name, &hosts.block_cidr, zone).await;

    let (hook, power_log) = power_hook(hosts.clone());
    let proxy = Proxy::start_with_hook(moto.addr, Vec::new(), Some(hook)).await;
    let control = tempfile::tempdir().unwrap();
    let p = Arc::new(AwsProvider::new(
        AwsConfig {
            use_internal_ips: true,
            vpc_name: Some(vpc_name),
            ssh_user: Some("sky".into()),
            ..AwsConfig::default()
        },
        AwsOptions {
            endpoint_url: Some(proxy.url()),
            static_credentials: Some(("testing".into(), "testing".into())),
            // The hosts trust the harness's key: it is the key pair the provider imports.
            public_key_path: Some(PathBuf::from(format!(
                "{}.pub",
                hosts.identity_file.display()
            ))),
            sdk_retries: false,
            wait_timeout_secs: 30,
            sg_delete_timeout_secs: 30,
            // The provider's own SSH runners, trusting the hosts' keys.
            ssh_known_hosts_file: Some(hosts.known_hosts.clone()),
            ssh_strict_host_key_checking: Some("yes".into()),
            ssh_control_dir: Some(control.path().to_path_buf()),
            ..AwsOptions::default()
        },
    ));
    let mut cfg = ConformanceConfig::new(region, "m5.large")
        .zone(zone_id)
        .num_nodes(2)
        .cluster_prefix("awsconf");
    cfg.resources = Resources {
        image_id: Some(ImageId::All(image)),
        ..Resources::default()
    };
    let api = api_leftovers(c.clone(), "awsconf");
    let on_hosts = hosts.clone();
    let probe: LeftoverProbe = Arc::new(move || {
        let api = api();
        let on_hosts = on_hosts.clone();
        Box::pin(async move {
            let mut left = api.await;
            left.extend(on_hosts.leftovers());
            left
        })
    });
    cfg = cfg.leftovers(probe);
    let report = run_conformance(p, cfg).await;
    eprintln!("{report}");
    report.assert_complete();
    for check in RUNNER_CHECKS {
        assert_eq!(
            report.outcome(check),
            Some(&sky_provider_testkit::CheckOutcome::Passed),
            "{check} must run and pass with namespace hosts behind the instances"
        );
    }
    // The emulation really ran: the stop/start check stopped and started both main nodes,
    // and every node of both clusters was terminated.
    let log = power_log.lock().unwrap().clone();
    let count = |a: &str| log.iter().filter(|l| l.starts_with(a)).count();
    assert_eq!(count("UNSERVED"), 0, "power log: {log:?}");
    assert!(count("StopInstances") >= 2, "power log: {log:?}");
    assert!(count("StartInstances") >= 2, "power log: {log:?}");
    assert!(count("TerminateInstances") >= 3, "power log: {log:?}");
}

/// Without namespace hosts: the API checks against moto, the runner checks skipped by name.
async fn api_only(url: &str) {
    let p = Arc::new(provider(url, AwsConfig::default()));
    let region = "ca-central-1";
    let c = p.client(region).await;
    let image = any_image(&c).await;
    let (_, zone_id) = zones(&c).await.remove(0);
    let mut cfg = ConformanceConfig::new(region, "m5.large")
        .zone(zone_id)
        .num_nodes(2)
        .cluster_prefix("awsapi");
    cfg.resources = Resources {
        image_id: Some(ImageId::All(image)),
        ..Resources::default()
    };
    for check in RUNNER_CHECKS {
        cfg = cfg.skip(check);
    }
    let api = api_leftovers(c.clone(), "awsapi");
    cfg = cfg.leftovers(Arc::new(move || api()));
    let report = run_conformance(p, cfg).await;
    eprintln!("{report}");
    report.assert_passed();
    // Only the runner checks are left out, by name; every other check ran.
    let skipped: Vec<_> = report.skipped().iter().map(|c| c.name).collect();
    assert_eq!(skipped, RUNNER_CHECKS, "{report}");
}

#[test]
fn run_instances_answers_are_parsed_per_instance() {
    let xml = "<RunInstancesResponse><instancesSet>\
        <item><instanceId>i-1</instanceId><privateIpAddress>10.200.0.132</privateIpAddress>\
        <networkInterfaceSet><item><privateIpAddress>10.200.0.132</privateIpAddress></item></networkInterfaceSet></item>\
        <item><instanceId>i-2</instanceId><privateIpAddress>10.200.0.133</privateIpAddress></item>\
        </instancesSet></RunInstancesResponse>";
    assert_eq!(
        launched(xml),
        vec![
            ("i-1".to_string(), "10.200.0.132".to_string()),
            ("i-2".to_string(), "10.200.0.133".to_string())
        ]
    );
    assert_eq!(
        request_ids("Action=StopInstances&InstanceId.1=i-1&InstanceId.2=i-2&Version=2016-11-15"),
        vec!["i-1".to_string(), "i-2".to_string()]
    );
}
