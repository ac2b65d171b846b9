//! Integration tests of sky-cloud-aws against a real moto server (started by [`moto`]), with a
//! fault-injecting proxy ([`proxy`]) for the capacity, quota and auth errors moto cannot make.
//!
//! Network safety: only `conformance` opens SSH connections, to its own namespace hosts, which
//! are the only addresses of its VPC's subnet (see there). Elsewhere, tests that call the
//! provider directly never ask for a runner except to check that one is refused; launcher tests
//! use an emulated endpoint, so `AwsProvider::command_runner` refuses every address outside
//! 127.0.0.0/8 and 10.200.0.0/24 (moto's invented 54.x / 10.x addresses), and no runner
//! factory is plugged in at all: the launch stops at the agent stage by construction.

mod conformance;
mod failover;
mod lifecycle;
mod moto;
mod proxy;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_ec2::types::Filter;
use sky_cloud_aws::{AwsConfig, AwsOptions, AwsProvider, key_pair_name, security_group_name};
use sky_provider::ProvisionRequest;
use sky_spec::model::{ImageId, Resources};

/// A key pair for the tests (created once with ssh-keygen).
pub fn public_key() -> PathBuf {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sky-aws-it-{}", std::process::id()));
        let p = dir.join("sky-key.pub");
        sky_cloud_aws::ensure_ssh_key(&p).expect("ssh-keygen");
        p
    })
    .clone()
}

/// A provider talking to `endpoint` (moto or the proxy) with test credentials and no SDK retries.
pub fn provider(endpoint: &str, config: AwsConfig) -> AwsProvider {
    AwsProvider::new(
        config,
        AwsOptions {
            endpoint_url: Some(endpoint.to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
            public_key_path: Some(public_key()),
            sdk_retries: false,
            wait_timeout_secs: 30,
            sg_delete_timeout_secs: 30,
            ..AwsOptions::default()
        },
    )
}

/// A unique name per call in this process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn filter(name: &str, values: &[&str]) -> Filter {
    let mut b = Filter::builder().name(name);
    for v in values {
        b = b.values(*v);
    }
    b.build()
}

/// An AMI that exists in moto's region.
pub async fn any_image(c: &aws_sdk_ec2::Client) -> String {
    let out = c.describe_images().owners("amazon").send().await.unwrap();
    out.images()
        .iter()
        .filter_map(|i| i.image_id())
        .min()
        .expect("moto lists default AMIs")
        .to_string()
}

/// Creates a VPC (10.200.0.0/16) tagged `Name=name` with one subnet `subnet` in `zone`;
/// returns the VPC's id.
pub async fn vpc_with_subnet(
    c: &aws_sdk_ec2::Client,
    name: &str,
    subnet: &str,
    zone: &str,
) -> String {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let vpc = c
        .create_vpc()
        .cidr_block("10.200.0.0/16")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Vpc)
                .tags(Tag::builder().key("Name").value(name).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    c.create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block(subnet)
        .availability_zone(zone)
        .send()
        .await
        .unwrap();
    vpc_id
}

/// (zone name, zone id) pairs of a region, in name order.
pub async fn zones(c: &aws_sdk_ec2::Client) -> Vec<(String, String)> {
    let out = c.describe_availability_zones().send().await.unwrap();
    let mut v: Vec<(String, String)> = out
        .availability_zones()
        .iter()
        .map(|z| {
            (
                z.zone_name().unwrap().to_string(),
                z.zone_id().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn request(
    name: &str,
    region: &str,
    zone: Option<&str>,
    num_nodes: u32,
    instance_type: &str,
    image: &str,
) -> ProvisionRequest {
    let resources = Resources {
        image_id: Some(ImageId::All(image.to_string())),
        ..Resources::default()
    };
    ProvisionRequest {
        cluster_name: name.to_string(),
        cluster_name_on_cloud: name.to_string(),
        region: region.to_string(),
        zone: zone.map(str::to_string),
        num_nodes,
        instance_type: instance_type.to_string(),
        use_spot: false,
        ports: resources.ports.clone(),
        resources,
    }
}

/// What is left of a cluster, checked through the EC2 API: live instances, the security
/// group, the key pair.
#[derive(Debug, PartialEq, Eq)]
pub struct Leftovers {
    pub instances: usize,
    pub security_group: bool,
    pub key_pair: bool,
}

impl Leftovers {
    pub const NONE: Leftovers = Leftovers {
        instances: 0,
        security_group: false,
        key_pair: false,
    };
}

pub async fn leftovers(c: &aws_sdk_ec2::Client, name: &str) -> Leftovers {
    let out = c
        .describe_instances()
        .filters(filter("tag:skypilot-cluster-name", &[name]))
        .filters(filter(
            "instance-state-name",
            &["pending", "running", "stopping", "stopped", "shutting-down"],
        ))
        .send()
        .await
        .unwrap();
    let instances = out.reservations().iter().map(|r| r.instances().len()).sum();
    let sg = security_group_name(name);
    let groups = c
        .describe_security_groups()
        .filters(filter("group-name", &[sg.as_str()]))
        .send()
        .await
        .unwrap();
    let keys = c.describe_key_pairs().send().await.unwrap();
    let key = key_pair_name(name);
    Leftovers {
        instances,
        security_group: !groups.security_groups().is_empty(),
        key_pair: keys.key_pairs().iter().any(|k| k.key_name() == Some(&key)),
    }
}

/// The moto server, or return early from the test (after the harness's loud skip message).
#[macro_export]
macro_rules! moto_or_skip {
    () => {
        match $crate::moto::moto() {
            Some(m) => m,
            None => return,
        }
    };
}
