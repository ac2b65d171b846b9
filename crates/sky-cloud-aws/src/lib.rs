//! sky-cloud-aws is the AWS cloud of sky-rs: an [`AwsProvider`] (`sky_provider::CloudProvider`,
//! id `aws`) that launches, queries, stops, starts and terminates EC2 instances through
//! aws-sdk-ec2, with a per-cluster security group and key pair, EBS disks from
//! `disk_size`/`disk_tier`, spot through instance market options, and EC2 error codes mapped to
//! failover kinds and scopes ([`errors`]). Credentials come from the standard chain (env,
//! `~/.aws/credentials`, profiles) and `AWS_ENDPOINT_URL` is honoured. The CLI registers it
//! behind its default `aws` feature; nothing else depends on it, and it depends on no other
//! cloud crate: its nodes' runners are the SSH runtime's (`sky_ssh::SshRunner`), built here from
//! the node's address, the image's user, the cluster key and [`AwsOptions`]' host-key policy. It
//! lives in its own crate
//! because aws-sdk-ec2 is heavy to compile. Network safety: with a custom endpoint (an
//! emulator such as moto) it never hands out a runner for an address outside
//! [`EMULATOR_REACHABLE`] (loopback and the test subnet `10.200.0.0/24`).

mod config;
pub mod errors;

pub use config::{AwsConfig, AwsOptions, EMULATOR_REACHABLE, in_networks};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName,
    InstanceType, IpPermission, IpRange, MarketType, Placement, ResourceType, SpotInstanceType,
    SpotMarketOptions, Tag, TagSpecification, UserIdGroupPair, VolumeType,
};
use serde::{Deserialize, Serialize};
use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, FailureScope, FeatureSet, InstanceInfo,
    InstanceState, NodeSelfStop, ProvisionError, ProvisionErrorKind, ProvisionRequest,
};
use sky_spec::model::{DiskTier, ImageId, PortRange};
use sky_ssh::{SshRunner, SshTarget};

/// The provider id.
pub const AWS_ID: &str = "aws";
/// Tag holding the cluster's name on the cloud (SkyPilot's tag).
pub const TAG_CLUSTER: &str = "skypilot-cluster-name";
/// Tag holding a node's rank (0 = head).
pub const TAG_RANK: &str = "skypilot-node-rank";
/// Tag `head` or `worker`.
pub const TAG_NODE_TYPE: &str = "skypilot-node-type";
/// Canonical's account, owner of the Ubuntu images.
const CANONICAL: &str = "099720109477";

/// The cluster's security group name.
pub fn security_group_name(name_on_cloud: &str) -> String {
    format!("sky-sg-{name_on_cloud}")
}

/// The cluster's key pair name.
pub fn key_pair_name(name_on_cloud: &str) -> String {
    format!("sky-key-{name_on_cloud}")
}

/// What the provider stores in [`ClusterHandle::provider_config`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsHandleData {
    /// The zone name (`us-east-1a`) the nodes run in.
    pub zone_name: Option<String>,
    pub vpc_id: Option<String>,
    pub security_group_id: Option<String>,
    pub key_name: Option<String>,
    pub use_internal_ips: bool,
    pub ssh_user: String,
}

#[derive(Clone, Debug)]
struct Zone {
    name: String,
    id: String,
}

/// The AWS cloud.
pub struct AwsProvider {
    config: AwsConfig,
    opts: AwsOptions,
    shared: tokio::sync::OnceCell<aws_config::SdkConfig>,
    clients: Mutex<HashMap<String, Client>>,
    zones: Mutex<HashMap<String, Vec<Zone>>>,
    regions: tokio::sync::OnceCell<Vec<String>>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("config", &self.config)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// EC2 instance filter by name and values.
fn filter(name: &str, values: &[&str]) -> Filter {
    let mut b = Filter::builder().name(name);
    for v in values {
        b = b.values(*v);
    }
    b.build()
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// EBS volume type, IOPS and throughput for a disk tier (SkyPilot's mapping; medium is the default).
pub fn disk_spec(tier: Option<DiskTier>) -> (&'static str, Option<i32>, Option<i32>) {
    match tier.unwrap_or(DiskTier::Medium) {
        DiskTier::Low => ("standard", None, None),
        DiskTier::Medium => ("gp3", Some(3500), Some(3500 / 16)),
        DiskTier::High => ("gp3", Some(7000), Some(7000 / 16)),
        DiskTier::Ultra | DiskTier::Best => ("io2", Some(20000), None),
    }
}

/// Whether an instance type runs arm64 (Graviton families end their generation with `g`:
/// m6g, c7gn, t4g, g5g, ...).
pub fn is_arm64(instance_type: &str) -> bool {
    let family = instance_type.split('.').next().unwrap_or("");
    let mut seen_digit = false;
    for c in family.chars() {
        if c.is_ascii_digit() {
            seen_digit = true;
        } else if seen_digit {
            return c == 'g';
        }
    }
    false
}

fn state_of(s: Option<&InstanceStateName>) -> Option<InstanceState> {
    match s? {
        InstanceStateName::Pending => Some(InstanceState::Pending),
        InstanceStateName::Running => Some(InstanceState::Running),
        InstanceStateName::Stopping => Some(InstanceState::Stopping),
        InstanceStateName::Stopped => Some(InstanceState::Stopped),
        InstanceStateName::ShuttingDown | InstanceStateName::Terminated => None,
        _ => Some(InstanceState::Pending),
    }
}

/// One instance as the provider sees it.
#[derive(Clone, Debug)]
struct Node {
    id: String,
    rank: u32,
    state: Option<InstanceState>,
    private_ip: Option<String>,
    public_ip: Option<String>,
    zone: Option<String>,
}

fn pending_err(what: &str) -> ProvisionError {
    ProvisionError::transient(FailureScope::Zone, what.to_string())
}

impl AwsProvider {
    /// A provider with the `aws:` config and code-level options.
    pub fn new(config: AwsConfig, opts: AwsOptions) -> AwsProvider {
        AwsProvider {
            config,
            opts,
            shared: tokio::sync::OnceCell::new(),
            clients: Mutex::new(HashMap::new()),
            zones: Mutex::new(HashMap::new()),
            regions: tokio::sync::OnceCell::new(),
        }
    }

    /// Fails with `NotSupported` (scope region) unless EC2 lists `region` (DescribeRegions with
    /// all regions, once per provider).
    pub async fn check_region(&self, region: &str) -> Result<(), ProvisionError> {
        let regions = self
            .regions
            .get_or_try_init(|| async {
                let c = self.client(&default_region()).await;
                let out = c
                    .describe_regions()
                    .all_regions(true)
                    .send()
                    .await
                    .map_err(|e| errors::from_sdk("list the EC2 regions", &e, false))?;
                Ok::<_, ProvisionError>(
                    out.regions()
                        .iter()
                        .filter_map(|r| r.region_name().map(str::to_string))
                        .collect(),
                )
            })
            .await?;
        if regions.iter().any(|r| r == region) {
            return Ok(());
        }
        Err(ProvisionError::new(
            ProvisionErrorKind::NotSupported,
            FailureScope::Region,
            format!("{region} is not an EC2 region"),
        )
        .with_fix(format!("use one of: {}", regions.join(", "))))
    }

    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// Whether the endpoint is an emulator (a custom `AWS_ENDPOINT_URL`).
    pub fn is_emulated(&self) -> bool {
        self.opts.endpoint_url.is_some()
    }

    async fn shared(&self) -> &aws_config::SdkConfig {
        self.shared
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(10))
                        .operation_attempt_timeout(Duration::from_secs(120))
                        .build(),
                );
                if let Some(ep) = &self.opts.endpoint_url {
                    loader = loader.endpoint_url(ep);
                }
                // A region is always given, so nothing asks the instance metadata service.
                loader = loader.region(Region::new(default_region()));
                if let Some(p) = &self.config.profile {
                    loader = loader.profile_name(p);
                }
                match &self.opts.static_credentials {
                    Some((ak, sk)) => {
                        loader =
                            loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                                ak.clone(),
                                sk.clone(),
                                None,
                                None,
                                "sky-static",
                            ));
                    }
                    None => {
                        loader = loader.credentials_provider(credentials_chain(
                            self.config.profile.as_deref(),
                            self.config.instance_metadata_credentials,
                        ));
                    }
                }
                if !self.opts.sdk_retries {
                    loader = loader.retry_config(RetryConfig::disabled());
                }
                loader.load().await
            })
            .await
    }

    /// The (cached) EC2 client of a region.
    pub async fn client(&self, region: &str) -> Client {
        if let Some(c) = self
            .clients
            .lock()
            .ok()
            .and_then(|m| m.get(region).cloned())
        {
            return c;
        }
        let shared = self.shared().await;
        let conf = aws_sdk_ec2::config::Builder::from(shared)
            .region(Region::new(region.to_string()))
            .build();
        let c = Client::from_conf(conf);
        if let Ok(mut m) = self.clients.lock() {
            m.insert(region.to_string(), c.clone());
        }
        c
    }

    async fn region_zones(&self, region: &str) -> Result<Vec<Zone>, ProvisionError> {
        if let Some(z) = self.zones.lock().ok().and_then(|m| m.get(region).cloned()) {
            return Ok(z);
        }
        let c = self.client(region).await;
        let out = c
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| errors::from_sdk(&format!("list the zones of {region}"), &e, false))?;
        let zones: Vec<Zone> = out
            .availability_zones()
            .iter()
            .filter_map(|z| {
                Some(Zone {
                    name: z.zone_name()?.to_string(),
                    id: z.zone_id().unwrap_or_default().to_string(),
                })
            })
            .collect();
        if let Ok(mut m) = self.zones.lock() {
            m.insert(region.to_string(), zones.clone());
        }
        Ok(zones)
    }

    /// The zone name (`us-east-1a`) of a zone given by name or by AZ id (`use1-az1`, as in the
    /// catalog). Zone ids are the same physical zone for every account; names are not.
    pub async fn zone_name(&self, region: &str, zone: &str) -> Result<String, ProvisionError> {
        let zones = self.region_zones(region).await?;
        zones
            .iter()
            .find(|z| z.name == zone || z.id == zone)
            .map(|z| z.name.clone())
            .ok_or_else(|| {
                ProvisionError::new(
                    ProvisionErrorKind::NotSupported,
                    FailureScope::Zone,
                    format!(
                        "zone {zone} is not a zone of {region} (zones: {})",
                        zones
                            .iter()
                            .map(|z| format!("{} ({})", z.name, z.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }

    /// Ids of the cluster's instances whose state is one of `states` (stop and start act on
    /// these).
    async fn node_ids_in(
        &self,
        h: &ClusterHandle,
        states: &[InstanceState],
    ) -> Result<Vec<String>, ProvisionError> {
        let nodes = self
            .list_nodes(&h.region, &h.cluster_name_on_cloud, false)
            .await?;
        Ok(nodes
            .into_iter()
            .filter(|n| n.state.is_some_and(|st| states.contains(&st)))
            .map(|n| n.id)
            .collect())
    }

    async fn list_nodes(
        &self,
        region: &str,
        name_on_cloud: &str,
        include_shutting_down: bool,
    ) -> Result<Vec<Node>, ProvisionError> {
        let c = self.client(region).await;
        let mut states = vec!["pending", "running", "stopping", "stopped"];
        if include_shutting_down {
            states.push("shutting-down");
        }
        let pages = c
            .describe_instances()
            .filters(filter(&format!("tag:{TAG_CLUSTER}"), &[name_on_cloud]))
            .filters(filter("instance-state-name", &states))
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| {
                errors::from_sdk(
                    &format!("list the instances of {name_on_cloud} in {region}"),
                    &e,
                    false,
                )
            })?;
        let mut nodes = Vec::new();
        for page in pages {
            for r in page.reservations() {
                for i in r.instances() {
                    let Some(id) = i.instance_id() else { continue };
                    let rank = i
                        .tags()
                        .iter()
                        .find(|t| t.key() == Some(TAG_RANK))
                        .and_then(|t| t.value())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(u32::MAX);
                    nodes.push(Node {
                        id: id.to_string(),
                        rank,
                        state: state_of(i.state().and_then(|s| s.name())),
                        private_ip: i.private_ip_address().map(str::to_string),
                        public_ip: i.public_ip_address().map(str::to_string),
                        zone: i
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .map(str::to_string),
                    });
                }
            }
        }
        nodes.sort_by(|a, b| a.rank.cmp(&b.rank).then(a.id.cmp(&b.id)));
        Ok(nodes)
    }

    /// The VPC to launch in and, in a named VPC, the subnet of the zone.
    async fn network(
        &self,
        region: &str,
        zone_name: Option<&str>,
    ) -> Result<(String, Option<String>), ProvisionError> {
        let c = self.client(region).await;
        let vpc_filter = match &self.config.vpc_name {
            Some(n) => filter("tag:Name", &[n.as_str()]),
            None => filter("isDefault", &["true"]),
        };
        let vpcs = c
            .describe_vpcs()
            .filters(vpc_filter)
            .send()
            .await
            .map_err(|e| errors::from_sdk(&format!("find the VPC in {region}"), &e, false))?;
        let Some(vpc_id) = vpcs.vpcs().first().and_then(|v| v.vpc_id()) else {
            let what = match &self.config.vpc_name {
                Some(n) => format!("no VPC named {n} in {region}"),
                None => format!("no default VPC in {region}"),
            };
            return Err(ProvisionError::new(
                ProvisionErrorKind::NotSupported,
                FailureScope::Region,
                what,
            )
            .with_fix("create the VPC in this region, or set `aws.vpc_name` in ~/.sky/config.yaml to a VPC that exists"));
        };
        let vpc_id = vpc_id.to_string();
        if self.config.vpc_name.is_none() {
            return Ok((vpc_id, None));
        }
        let mut q = c
            .describe_subnets()
            .filters(filter("vpc-id", &[vpc_id.as_str()]));
        if let Some(z) = zone_name {
            q = q.filters(filter("availability-zone", &[z]));
        }
        let subnets = q.send().await.map_err(|e| {
            errors::from_sdk(
                &format!("find the subnets of {vpc_id}"),
                &e,
                zone_name.is_some(),
            )
        })?;
        let mut list: Vec<(String, i32)> = subnets
            .subnets()
            .iter()
            .filter_map(|s| {
                Some((
                    s.subnet_id()?.to_string(),
                    s.available_ip_address_count().unwrap_or(0),
                ))
            })
            .collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        match list.into_iter().next() {
            Some((s, _)) => Ok((vpc_id, Some(s))),
            None => Err(ProvisionError::new(
                ProvisionErrorKind::NotSupported,
                if zone_name.is_some() {
                    FailureScope::Zone
                } else {
                    FailureScope::Region
                },
                format!(
                    "VPC {} has no subnet in {}",
                    self.config.vpc_name.as_deref().unwrap_or(""),
                    zone_name.unwrap_or(region)
                ),
            )),
        }
    }

    async fn resolve_image(&self, req: &ProvisionRequest) -> Result<String, ProvisionError> {
        match &req.resources.image_id {
            Some(ImageId::All(s)) if s.starts_with("docker:") => {
                return Err(ProvisionError::not_supported(
                    "docker images (`image_id: docker:...`) on cloud aws",
                ));
            }
            Some(ImageId::All(s)) if !s.starts_with("skypilot:") => return Ok(s.clone()),
            Some(ImageId::PerRegion(m)) => {
                return m.get(&req.region).cloned().ok_or_else(|| {
                    ProvisionError::new(
                        ProvisionErrorKind::NotSupported,
                        FailureScope::Region,
                        format!("image_id names no image for region {}", req.region),
                    )
                });
            }
            _ => {}
        }
        if let Some(i) = &self.config.image_id {
            return Ok(i.clone());
        }
        let arch = if is_arm64(&req.instance_type) {
            "arm64"
        } else {
            "amd64"
        };
        let c = self.client(&req.region).await;
        let pattern = format!("ubuntu/images/hvm-ssd*/ubuntu-jammy-22.04-{arch}-server-*");
        let out = c
            .describe_images()
            .owners(CANONICAL)
            .filters(filter("name", &[pattern.as_str()]))
            .filters(filter("state", &["available"]))
            .send()
            .await
            .map_err(|e| {
                errors::from_sdk(
                    &format!("find an Ubuntu image in {}", req.region),
                    &e,
                    false,
                )
            })?;
        out.images()
            .iter()
            .filter_map(|i| Some((i.creation_date().unwrap_or(""), i.image_id()?)))
            .max()
            .map(|(_, id)| id.to_string())
            .ok_or_else(|| {
                ProvisionError::invalid_config(
                    FailureScope::Region,
                    format!("no Ubuntu 22.04 {arch} image found in {}", req.region),
                )
                .with_fix("set `image_id` in the task, or `aws.image_id` in ~/.sky/config.yaml")
            })
    }

    fn public_key(&self) -> Result<String, ProvisionError> {
        let path = self.opts.public_key_path.clone().ok_or_else(|| {
            ProvisionError::invalid_config(
                FailureScope::Cloud,
                "no SSH public key is configured for aws",
            )
            .with_fix("this build registers aws without a key; use the sky CLI")
        })?;
        ensure_ssh_key(&path)
    }

    async fn ensure_key_pair(&self, c: &Client, name: &str) -> Result<String, ProvisionError> {
        let key = self.public_key()?;
        let key_name = key_pair_name(name);
        match c
            .import_key_pair()
            .key_name(&key_name)
            .public_key_material(Blob::new(key.trim().as_bytes().to_vec()))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::KeyPair)
                    .tags(tag(TAG_CLUSTER, name))
                    .build(),
            )
            .send()
            .await
        {
            Ok(_) => Ok(key_name),
            Err(e) if errors::code_of(&e) == Some("InvalidKeyPair.Duplicate") => Ok(key_name),
            Err(e) => Err(errors::from_sdk(
                &format!("import key pair {key_name}"),
                &e,
                false,
            )),
        }
    }

    async fn find_security_group(
        &self,
        c: &Client,
        name: &str,
    ) -> Result<Option<String>, ProvisionError> {
        let sg_name = security_group_name(name);
        let out = c
            .describe_security_groups()
            .filters(filter("group-name", &[sg_name.as_str()]))
            .send()
            .await
            .map_err(|e| errors::from_sdk(&format!("find security group {sg_name}"), &e, false))?;
        Ok(out
            .security_groups()
            .first()
            .and_then(|g| g.group_id())
            .map(str::to_string))
    }

    async fn ensure_security_group(
        &self,
        c: &Client,
        name: &str,
        vpc_id: &str,
        ports: &[PortRange],
    ) -> Result<String, ProvisionError> {
        let sg_name = security_group_name(name);
        let id = match self.find_security_group(c, name).await? {
            Some(id) => id,
            None => {
                let out = c
                    .create_security_group()
                    .group_name(&sg_name)
                    .description(format!("sky-rs cluster {name}"))
                    .vpc_id(vpc_id)
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::SecurityGroup)
                            .tags(tag(TAG_CLUSTER, name))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        errors::from_sdk(&format!("create security group {sg_name}"), &e, false)
                    })?;
                let id = out.group_id().unwrap_or_default().to_string();
                // Nodes of the cluster reach each other on every port.
                let intra = IpPermission::builder()
                    .ip_protocol("-1")
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id(&id).build())
                    .build();
                self.authorize(c, &id, vec![intra]).await?;
                id
            }
        };
        let mut all = vec![PortRange { start: 22, end: 22 }];
        all.extend(ports.iter().copied());
        self.authorize(c, &id, all.iter().map(port_permission).collect())
            .await?;
        Ok(id)
    }

    async fn authorize(
        &self,
        c: &Client,
        sg: &str,
        perms: Vec<IpPermission>,
    ) -> Result<(), ProvisionError> {
        // One rule per call so that an existing rule (InvalidPermission.Duplicate) does not stop
        // the others.
        for p in perms {
            match c
                .authorize_security_group_ingress()
                .group_id(sg)
                .ip_permissions(p)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if errors::code_of(&e) == Some("InvalidPermission.Duplicate") => {}
                Err(e) => {
                    return Err(errors::from_sdk(
                        &format!("open ports on security group {sg}"),
                        &e,
                        false,
                    ));
                }
            }
        }
        Ok(())
    }

    async fn create_nodes(
        &self,
        req: &ProvisionRequest,
        zone_name: Option<&str>,
    ) -> Result<AwsHandleData, ProvisionError> {
        let name = &req.cluster_name_on_cloud;
        let c = self.client(&req.region).await;
        let image = self.resolve_image(req).await?;
        let (vpc_id, subnet) = self.network(&req.region, zone_name).await?;
        let key_name = self.ensure_key_pair(&c, name).await?;
        let sg = self
            .ensure_security_group(&c, name, &vpc_id, &req.ports)
            .await?;
        let (vtype, iops, throughput) = disk_spec(req.resources.disk_tier);
        let mut ebs = EbsBlockDevice::builder()
            .volume_size(i32::try_from(req.resources.disk_size).unwrap_or(i32::MAX))
            .volume_type(VolumeType::from(vtype))
            .delete_on_termination(true);
        if let Some(i) = iops {
            ebs = ebs.iops(i);
        }
        if let Some(t) = throughput {
            ebs = ebs.throughput(t);
        }
        let n = i32::try_from(req.num_nodes.max(1)).unwrap_or(1);
        let mut run = c
            .run_instances()
            .image_id(&image)
            .instance_type(InstanceType::from(req.instance_type.as_str()))
            .min_count(n)
            .max_count(n)
            .key_name(&key_name)
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/sda1")
                    .ebs(ebs.build())
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(tag(TAG_CLUSTER, name))
                    .tags(tag("Name", &format!("sky-{name}")))
                    .build(),
            );
        if let Some(z) = zone_name {
            run = run.placement(Placement::builder().availability_zone(z).build());
        }
        match &subnet {
            Some(s) => {
                run = run.network_interfaces(
                    InstanceNetworkInterfaceSpecification::builder()
                        .device_index(0)
                        .subnet_id(s)
                        .groups(&sg)
                        .associate_public_ip_address(!self.config.use_internal_ips)
                        .build(),
                );
            }
            None => run = run.security_group_ids(&sg),
        }
        if req.use_spot {
            run = run.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        let where_ = zone_name.unwrap_or(&req.region);
        let out = run.send().await.map_err(|e| {
            errors::from_sdk(
                &format!("run {n}x {} in {where_}", req.instance_type),
                &e,
                zone_name.is_some(),
            )
        })?;
        let mut launched: Vec<(i32, String)> = out
            .instances()
            .iter()
            .filter_map(|i| {
                Some((
                    i.ami_launch_index().unwrap_or(0),
                    i.instance_id()?.to_string(),
                ))
            })
            .collect();
        launched.sort();
        for (rank, (_, id)) in launched.iter().enumerate() {
            let kind = if rank == 0 { "head" } else { "worker" };
            c.create_tags()
                .resources(id)
                .tags(tag(TAG_RANK, &rank.to_string()))
                .tags(tag(TAG_NODE_TYPE, kind))
                .tags(tag("Name", &format!("sky-{name}-{kind}")))
                .send()
                .await
                .map_err(|e| errors::from_sdk(&format!("tag instance {id}"), &e, false))?;
        }
        Ok(AwsHandleData {
            zone_name: zone_name.map(str::to_string),
            vpc_id: Some(vpc_id),
            security_group_id: Some(sg),
            key_name: Some(key_name),
            use_internal_ips: self.config.use_internal_ips,
            ssh_user: self.config.ssh_user().to_string(),
        })
    }

    fn handle_data(h: &ClusterHandle) -> AwsHandleData {
        serde_json::from_value(h.provider_config.clone()).unwrap_or_default()
    }

    /// Terminates every instance of the cluster, then deletes its security group and key pair.
    async fn teardown(&self, region: &str, name: &str) -> Result<(), ProvisionError> {
        let c = self.client(region).await;
        let nodes = self.list_nodes(region, name, true).await?;
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        if !ids.is_empty() {
            c.terminate_instances()
                .set_instance_ids(Some(ids))
                .send()
                .await
                .map_err(|e| {
                    errors::from_sdk(&format!("terminate the instances of {name}"), &e, false)
                })?;
        }
        // The group cannot go while instances still use it (DependencyViolation): retry.
        if let Some(sg) = self.find_security_group(&c, name).await? {
            let deadline =
                tokio::time::Instant::now() + Duration::from_secs(self.opts.sg_delete_timeout_secs);
            loop {
                match c.delete_security_group().group_id(&sg).send().await {
                    Ok(_) => break,
                    Err(e) if errors::code_of(&e) == Some("InvalidGroup.NotFound") => break,
                    Err(e)
                        if errors::code_of(&e) == Some("DependencyViolation")
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    Err(e) => {
                        let mut err =
                            errors::from_sdk(&format!("delete security group {sg}"), &e, false);
                        if errors::code_of(&e) == Some("DependencyViolation") {
                            err.kind = ProvisionErrorKind::Transient;
                        }
                        return Err(err);
                    }
                }
            }
        }
        let key = key_pair_name(name);
        match c.delete_key_pair().key_name(&key).send().await {
            Ok(_) => Ok(()),
            Err(e) if errors::code_of(&e) == Some("InvalidKeyPair.NotFound") => Ok(()),
            Err(e) => Err(errors::from_sdk(
                &format!("delete key pair {key}"),
                &e,
                false,
            )),
        }
    }

    /// How SSH reaches a node (its address, user, key and host-key policy), refusing any
    /// address an emulator invented.
    pub fn ssh_target(
        &self,
        h: &ClusterHandle,
        node: &InstanceInfo,
    ) -> Result<SshTarget, ProvisionError> {
        let data = Self::handle_data(h);
        let address = if data.use_internal_ips || self.config.use_internal_ips {
            Some(node.internal_ip.clone())
        } else {
            node.external_ip.clone()
        };
        let Some(address) = address.filter(|a| !a.is_empty()) else {
            return Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                format!(
                    "node {} of {} has no public IP",
                    node.rank, h.cluster_name
                ),
            )
            .with_fix("set `aws.use_internal_ips: true` in ~/.sky/config.yaml when this machine reaches the VPC's private addresses"));
        };
        if self.is_emulated() && !in_networks(&address, EMULATOR_REACHABLE) {
            return Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                format!(
                    "refusing to connect to {address} (node {} of {}): the EC2 endpoint {} is an emulator whose addresses are invented; only 127.0.0.0/8 and 10.200.0.0/24 are reachable",
                    node.rank,
                    h.cluster_name,
                    self.opts.endpoint_url.as_deref().unwrap_or("")
                ),
            )
            .with_fix("launch with `aws.use_internal_ips: true` and `aws.vpc_name` naming a VPC whose subnet is 10.200.0.0/24, served by the test harness's namespace hosts"));
        }
        Ok(SshTarget {
            ip: address,
            port: 22,
            user: Some(if data.ssh_user.is_empty() {
                self.config.ssh_user().to_string()
            } else {
                data.ssh_user
            }),
            identity_file: self
                .opts
                .public_key_path
                .as_ref()
                .map(|p| p.with_extension("")),
            known_hosts_file: self.opts.ssh_known_hosts_file.clone(),
            strict_host_key_checking: self
                .opts
                .ssh_strict_host_key_checking
                .clone()
                .unwrap_or_else(|| "accept-new".into()),
            control_dir: self
                .opts
                .ssh_control_dir
                .clone()
                .unwrap_or_else(sky_ssh::default_control_dir),
            connect_timeout: self
                .opts
                .ssh_connect_timeout
                .unwrap_or(Duration::from_secs(10)),
        })
    }

    async fn wait_state(
        &self,
        h: &ClusterHandle,
        want: InstanceState,
    ) -> Result<(), ProvisionError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.opts.wait_timeout_secs.max(1));
        loop {
            let nodes = self
                .list_nodes(&h.region, &h.cluster_name_on_cloud, false)
                .await?;
            if nodes.len() as u32 >= h.num_nodes && nodes.iter().all(|n| n.state == Some(want)) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(pending_err(&format!(
                    "the nodes of {} did not become {want} within {}s ({})",
                    h.cluster_name,
                    self.opts.wait_timeout_secs,
                    nodes
                        .iter()
                        .map(|n| format!(
                            "{}: {}",
                            n.id,
                            n.state.map_or("gone".to_string(), |s| s.to_string())
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn resume(
        &self,
        req: &ProvisionRequest,
        nodes: Vec<Node>,
    ) -> Result<ClusterHandle, ProvisionError> {
        let name = &req.cluster_name_on_cloud;
        if nodes.len() as u32 != req.num_nodes.max(1) {
            return Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                format!(
                    "cluster {} already has {} instances in {} but {} were asked for",
                    req.cluster_name,
                    nodes.len(),
                    req.region,
                    req.num_nodes
                ),
            )
            .with_fix(format!(
                "run `sky down {}` first, or launch with the same node count",
                req.cluster_name
            )));
        }
        let c = self.client(&req.region).await;
        let zone_name = nodes.first().and_then(|n| n.zone.clone());
        let stopped: Vec<String> = nodes
            .iter()
            .filter(|n| {
                matches!(
                    n.state,
                    Some(InstanceState::Stopped | InstanceState::Stopping)
                )
            })
            .map(|n| n.id.clone())
            .collect();
        if !stopped.is_empty() {
            c.start_instances()
                .set_instance_ids(Some(stopped))
                .send()
                .await
                .map_err(|e| {
                    errors::from_sdk(&format!("start the instances of {name}"), &e, true)
                })?;
        }
        let sg = self.find_security_group(&c, name).await?;
        Ok(ClusterHandle {
            cloud: AWS_ID.into(),
            cluster_name: req.cluster_name.clone(),
            cluster_name_on_cloud: name.clone(),
            region: req.region.clone(),
            zone: req.zone.clone(),
            num_nodes: req.num_nodes.max(1),
            instance_type: req.instance_type.clone(),
            use_spot: req.use_spot,
            provider_config: serde_json::to_value(AwsHandleData {
                zone_name,
                vpc_id: None,
                security_group_id: sg,
                key_name: Some(key_pair_name(name)),
                use_internal_ips: self.config.use_internal_ips,
                ssh_user: self.config.ssh_user().to_string(),
            })
            .unwrap_or_default(),
        })
    }

    /// Revokes every rule of the cluster's group except port 22 and the intra-cluster rule.
    async fn revoke_ports(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        let c = self.client(&h.region).await;
        let name = &h.cluster_name_on_cloud;
        let Some(sg) = self.find_security_group(&c, name).await? else {
            return Ok(());
        };
        let out = c
            .describe_security_groups()
            .group_ids(&sg)
            .send()
            .await
            .map_err(|e| errors::from_sdk(&format!("read security group {sg}"), &e, false))?;
        let extra: Vec<IpPermission> = out
            .security_groups()
            .iter()
            .flat_map(|g| g.ip_permissions())
            .filter(|p| {
                p.ip_protocol() == Some("tcp")
                    && !(p.from_port() == Some(22) && p.to_port() == Some(22))
                    && p.user_id_group_pairs().is_empty()
            })
            .cloned()
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        c.revoke_security_group_ingress()
            .group_id(&sg)
            .set_ip_permissions(Some(extra))
            .send()
            .await
            .map_err(|e| errors::from_sdk(&format!("close ports on {sg}"), &e, false))?;
        Ok(())
    }
}

fn port_permission(p: &PortRange) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(i32::from(p.start))
        .to_port(i32::from(p.end))
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build()
}

/// `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1` (the region of account-wide calls
/// such as the credentials check; every cluster call names its own region).
pub fn default_region() -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "us-east-1".to_string())
}

/// The standard credential chain (environment, shared files and profiles, web identity, ECS
/// container credentials) with the EC2 instance metadata service only when asked for: nothing
/// here contacts 169.254.169.254 unless `aws.instance_metadata_credentials` is true.
pub fn credentials_chain(
    profile: Option<&str>,
    imds: bool,
) -> aws_config::meta::credentials::CredentialsProviderChain {
    use aws_config::meta::credentials::CredentialsProviderChain;
    let mut files = aws_config::profile::ProfileFileCredentialsProvider::builder();
    if let Some(p) = profile {
        files = files.profile_name(p);
    }
    let chain = CredentialsProviderChain::first_try(
        "Environment",
        aws_config::environment::credentials::EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else("Profile", files.build())
    .or_else(
        "WebIdentityToken",
        aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder().build(),
    )
    .or_else(
        "EcsContainer",
        aws_config::ecs::EcsCredentialsProvider::builder().build(),
    );
    if imds {
        chain.or_else(
            "Ec2InstanceMetadata",
            aws_config::imds::credentials::ImdsCredentialsProvider::builder().build(),
        )
    } else {
        chain
    }
}

/// Reads the SSH public key at `path`, creating the key pair (`path` without `.pub`) with
/// `ssh-keygen` when it is missing.
pub fn ensure_ssh_key(path: &Path) -> Result<String, ProvisionError> {
    if !path.exists() {
        let private: PathBuf = path.with_extension("");
        if let Some(dir) = private.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                ProvisionError::other(format!("failed to create {}: {e}", dir.display()))
            })?;
        }
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "sky-key", "-f"])
            .arg(&private)
            .status()
            .map_err(|e| {
                ProvisionError::invalid_config(
                    FailureScope::Cloud,
                    format!(
                        "failed to run ssh-keygen to create {}: {e}",
                        private.display()
                    ),
                )
                .with_fix("install OpenSSH (ssh-keygen), or create the key yourself")
            })?;
        if !status.success() {
            return Err(ProvisionError::other(format!(
                "ssh-keygen failed to create {} ({status})",
                private.display()
            )));
        }
    }
    std::fs::read_to_string(path).map_err(|e| {
        ProvisionError::invalid_config(
            FailureScope::Cloud,
            format!("failed to read the SSH public key {}: {e}", path.display()),
        )
        .with_fix("remove the broken key files; sky creates a new key pair")
    })
}

#[async_trait]
impl CloudProvider for AwsProvider {
    fn id(&self) -> &str {
        AWS_ID
    }

    fn features(&self) -> FeatureSet {
        // Autostop: the head stops or terminates its own cluster (`node_self_stop`).
        sky_clouds::AWS.features
    }

    /// One cheap call (DescribeRegions) in the default region.
    async fn check_credentials(&self) -> Result<(), ProvisionError> {
        let region = self
            .shared()
            .await
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(default_region);
        let c = self.client(&region).await;
        c.describe_regions().send().await.map(|_| ()).map_err(|e| {
            let mut err = errors::from_sdk("list the EC2 regions", &e, false);
            if matches!(
                err.kind,
                ProvisionErrorKind::Other | ProvisionErrorKind::InvalidConfig
            ) {
                err.kind = ProvisionErrorKind::Auth;
                err.fix = Some(errors::AUTH_FIX.to_string());
            }
            err
        })
    }

    async fn run_instances(&self, req: &ProvisionRequest) -> Result<ClusterHandle, ProvisionError> {
        let name = &req.cluster_name_on_cloud;
        self.check_region(&req.region).await?;
        let existing = self.list_nodes(&req.region, name, false).await?;
        if !existing.is_empty() {
            return self.resume(req, existing).await;
        }
        let zone_name = match &req.zone {
            Some(z) => Some(self.zone_name(&req.region, z).await?),
            None => None,
        };
        match self.create_nodes(req, zone_name.as_deref()).await {
            Ok(data) => Ok(ClusterHandle {
                cloud: AWS_ID.into(),
                cluster_name: req.cluster_name.clone(),
                cluster_name_on_cloud: name.clone(),
                region: req.region.clone(),
                zone: req.zone.clone(),
                num_nodes: req.num_nodes.max(1),
                instance_type: req.instance_type.clone(),
                use_spot: req.use_spot,
                provider_config: serde_json::to_value(data).unwrap_or_default(),
            }),
            Err(e) => {
                // Leave nothing of this attempt behind.
                if let Err(clean) = self.teardown(&req.region, name).await {
                    return Err(ProvisionError {
                        message: format!(
                            "{}; cleaning up the partial cluster also failed: {}",
                            e.message, clean.message
                        ),
                        ..e
                    });
                }
                Err(e)
            }
        }
    }

    async fn wait_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.wait_state(h, InstanceState::Running).await
    }

    async fn query_instances(
        &self,
        h: &ClusterHandle,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        let internal = Self::handle_data(h).use_internal_ips || self.config.use_internal_ips;
        let nodes = self
            .list_nodes(&h.region, &h.cluster_name_on_cloud, false)
            .await?;
        Ok(nodes
            .into_iter()
            .filter_map(|n| {
                Some(InstanceInfo {
                    instance_id: n.id,
                    rank: n.rank,
                    internal_ip: n.private_ip.unwrap_or_default(),
                    external_ip: if internal { None } else { n.public_ip },
                    state: n.state?,
                })
            })
            .collect())
    }

    async fn stop_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        if h.use_spot {
            return Err(ProvisionError::not_supported(format!(
                "stopping cluster {}: its nodes are one-time spot instances, which AWS cannot stop",
                h.cluster_name
            ))
            .with_fix(format!(
                "run `sky down {}` to terminate it, or launch on-demand nodes (`use_spot: false`) to be able to stop them",
                h.cluster_name
            )));
        }
        let ids = self
            .node_ids_in(h, &[InstanceState::Running, InstanceState::Pending])
            .await?;
        if !ids.is_empty() {
            self.client(&h.region)
                .await
                .stop_instances()
                .set_instance_ids(Some(ids))
                .send()
                .await
                .map_err(|e| {
                    errors::from_sdk(
                        &format!("stop the instances of {}", h.cluster_name),
                        &e,
                        false,
                    )
                })?;
        }
        self.wait_state(h, InstanceState::Stopped).await
    }

    async fn start_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        let ids = self
            .node_ids_in(h, &[InstanceState::Stopped, InstanceState::Stopping])
            .await?;
        if !ids.is_empty() {
            self.client(&h.region)
                .await
                .start_instances()
                .set_instance_ids(Some(ids))
                .send()
                .await
                .map_err(|e| {
                    errors::from_sdk(
                        &format!("start the instances of {}", h.cluster_name),
                        &e,
                        true,
                    )
                })?;
        }
        self.wait_state(h, InstanceState::Running).await
    }

    async fn terminate_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.teardown(&h.region, &h.cluster_name_on_cloud).await
    }

    async fn open_ports(
        &self,
        h: &ClusterHandle,
        ports: &[PortRange],
    ) -> Result<(), ProvisionError> {
        if ports.is_empty() {
            return Ok(());
        }
        let c = self.client(&h.region).await;
        let Some(sg) = self
            .find_security_group(&c, &h.cluster_name_on_cloud)
            .await?
        else {
            return Err(ProvisionError::other(format!(
                "cluster {} has no security group {} in {}",
                h.cluster_name,
                security_group_name(&h.cluster_name_on_cloud),
                h.region
            )));
        };
        self.authorize(&c, &sg, ports.iter().map(port_permission).collect())
            .await
    }

    async fn cleanup_ports(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.revoke_ports(h).await
    }

    fn node_self_stop(&self) -> Option<NodeSelfStop> {
        let mut env = self.opts.node_env.clone();
        if let Some(url) = &self.opts.endpoint_url {
            env.push(("AWS_ENDPOINT_URL".into(), url.clone()));
        }
        if let Some((key, secret)) = &self.opts.static_credentials {
            env.push(("AWS_ACCESS_KEY_ID".into(), key.clone()));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), secret.clone()));
        }
        Some(NodeSelfStop {
            files: self.opts.node_files.clone(),
            env,
            config: serde_json::to_value(&self.config).unwrap_or_default(),
        })
    }

    fn command_runner(
        &self,
        h: &ClusterHandle,
        node: &InstanceInfo,
    ) -> Result<Arc<dyn CommandRunner>, ProvisionError> {
        let target = self.ssh_target(h, node)?;
        Ok(Arc::new(SshRunner::new(
            target,
            h.cluster_name_on_cloud.clone(),
        )))
    }
}

/// Node ranks to instance ids of a cluster (tests and tooling).
pub async fn instance_ids_by_rank(
    p: &AwsProvider,
    h: &ClusterHandle,
) -> Result<BTreeMap<u32, String>, ProvisionError> {
    Ok(p.list_nodes(&h.region, &h.cluster_name_on_cloud, false)
        .await?
        .into_iter()
        .map(|n| (n.rank, n.id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_tiers_follow_skypilot() {
        assert_eq!(disk_spec(None), ("gp3", Some(3500), Some(218)));
        assert_eq!(disk_spec(Some(DiskTier::Low)), ("standard", None, None));
        assert_eq!(
            disk_spec(Some(DiskTier::High)),
            ("gp3", Some(7000), Some(437))
        );
        assert_eq!(disk_spec(Some(DiskTier::Ultra)), ("io2", Some(20000), None));
        assert_eq!(disk_spec(Some(DiskTier::Best)), ("io2", Some(20000), None));
    }

    #[test]
    fn graviton_types_are_arm64() {
        for t in [
            "m6g.large",
            "c7gn.xlarge",
            "t4g.micro",
            "g5g.xlarge",
            "r8g.2xlarge",
        ] {
            assert!(is_arm64(t), "{t}");
        }
        for t in [
            "m5.large",
            "g5.xlarge",
            "p4d.24xlarge",
            "c6i.xlarge",
            "trn1.2xlarge",
        ] {
            assert!(!is_arm64(t), "{t}");
        }
    }

    #[test]
    fn names_are_per_cluster() {
        assert_eq!(security_group_name("dev-1a2b"), "sky-sg-dev-1a2b");
        assert_eq!(key_pair_name("dev-1a2b"), "sky-key-dev-1a2b");
    }

    #[test]
    fn emulated_provider_refuses_invented_addresses() {
        let p = AwsProvider::new(
            AwsConfig::default(),
            AwsOptions {
                endpoint_url: Some("http://127.0.0.1:1".into()),
                ..AwsOptions::standard()
            },
        );
        let h = ClusterHandle {
            cloud: "aws".into(),
            cluster_name: "c".into(),
            cluster_name_on_cloud: "c-1".into(),
            region: "us-east-1".into(),
            zone: None,
            num_nodes: 1,
            instance_type: "m5.large".into(),
            use_spot: false,
            provider_config: serde_json::Value::Null,
        };
        let node = InstanceInfo {
            instance_id: "i-1".into(),
            rank: 0,
            internal_ip: "10.192.57.20".into(),
            external_ip: Some("54.214.1.2".into()),
            state: InstanceState::Running,
        };
        let e = p.command_runner(&h, &node).unwrap_err();
        assert_eq!(e.kind, ProvisionErrorKind::InvalidConfig);
        assert!(e.message.contains("54.214.1.2"), "{}", e.message);
        // Internal-IPs mode: the private address, and only inside the test subnet.
        let p = AwsProvider::new(
            AwsConfig {
                use_internal_ips: true,
                ..AwsConfig::default()
            },
            AwsOptions {
                endpoint_url: Some("http://127.0.0.1:1".into()),
                ..AwsOptions::standard()
            },
        );
        assert!(p.ssh_target(&h, &node).is_err());
        let ok = InstanceInfo {
            internal_ip: "10.200.0.4".into(),
            ..node
        };
        let t = p.ssh_target(&h, &ok).unwrap();
        assert_eq!(t.ip, "10.200.0.4");
        assert_eq!(t.user.as_deref(), Some("ubuntu"));
        assert_eq!(t.strict_host_key_checking, "accept-new");
        // The runner is the SSH runtime's, to that address (nothing is contacted yet).
        let r = p.command_runner(&h, &ok).unwrap();
        assert_eq!(r.ssh_endpoint().unwrap().host_name, "10.200.0.4");
    }
}
