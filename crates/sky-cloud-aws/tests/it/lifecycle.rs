//! The provider against moto: launch, check through the EC2 API, query, stop, start, ports,
//! terminate (twice), spot, resume, bad requests, internal-IPs mode.

use sky_cloud_aws::{AwsConfig, TAG_CLUSTER, TAG_NODE_TYPE, TAG_RANK, security_group_name};
use sky_provider::{CloudProvider, InstanceState, ProvisionErrorKind};
use sky_spec::model::{DiskTier, PortRange};

use crate::{
    Leftovers, any_image, filter, leftovers, moto_or_skip, provider, request, unique,
    vpc_with_subnet, zones,
};

#[tokio::test]
async fn launch_query_stop_start_terminate_through_the_ec2_api() {
    let moto = moto_or_skip!();
    let p = provider(&moto.url(), AwsConfig::default());
    let region = "us-east-1";
    let c = p.client(region).await;
    let image = any_image(&c).await;
    let (zone_name, zone_id) = zones(&c).await.remove(0);
    let name = unique("life");
    let mut req = request(&name, region, Some(&zone_id), 2, "m5.large", &image);
    req.ports = vec![PortRange {
        start: 8080,
        end: 8081,
    }];
    req.resources.disk_size = 100;
    req.resources.disk_tier = Some(DiskTier::High);

    p.check_credentials().await.unwrap();
    let h = p.run_instances(&req).await.unwrap();
    assert_eq!(h.cloud, "aws");
    assert_eq!(h.zone.as_deref(), Some(zone_id.as_str()));
    let back: sky_provider::ClusterHandle =
        serde_json::from_value(serde_json::to_value(&h).unwrap()).unwrap();
    assert_eq!(back, h);
    p.wait_instances(&h).await.unwrap();

    // Instances: tagged with the cluster, ranks and head/worker, in the catalog's zone.
    let out = c
        .describe_instances()
        .filters(filter(&format!("tag:{TAG_CLUSTER}"), &[name.as_str()]))
        .send()
        .await
        .unwrap();
    let insts: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(insts.len(), 2);
    let mut ranks = Vec::new();
    for i in &insts {
        let tag = |k: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .unwrap_or("")
                .to_string()
        };
        let rank = tag(TAG_RANK);
        assert_eq!(
            tag(TAG_NODE_TYPE),
            if rank == "0" { "head" } else { "worker" }
        );
        ranks.push(rank);
        assert_eq!(i.instance_type().map(|t| t.as_str()), Some("m5.large"));
        assert_eq!(
            i.placement().and_then(|p| p.availability_zone()),
            Some(zone_name.as_str())
        );
        assert_eq!(
            i.key_name(),
            Some(sky_cloud_aws::key_pair_name(&name).as_str())
        );
        let groups: Vec<_> = i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_name())
            .collect();
        assert_eq!(groups, vec![security_group_name(&name)]);
    }
    ranks.sort();
    assert_eq!(ranks, vec!["0", "1"]);
    // EBS: size and tier.
    let vols = c
        .describe_volumes()
        .filters(filter(
            "attachment.instance-id",
            &[insts[0].instance_id().unwrap()],
        ))
        .send()
        .await
        .unwrap();
    let v = &vols.volumes()[0];
    assert_eq!(v.size(), Some(100));
    assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp3"));
    // Security group: 22 and the task's ports from anywhere, and the intra-cluster rule.
    let sg = c
        .describe_security_groups()
        .filters(filter("group-name", &[security_group_name(&name).as_str()]))
        .send()
        .await
        .unwrap();
    let perms = sg.security_groups()[0].ip_permissions();
    let tcp: Vec<(i32, i32)> = perms
        .iter()
        .filter(|p| p.ip_protocol() == Some("tcp"))
        .map(|p| (p.from_port().unwrap(), p.to_port().unwrap()))
        .collect();
    assert!(
        tcp.contains(&(22, 22)) && tcp.contains(&(8080, 8081)),
        "{tcp:?}"
    );
    assert!(perms.iter().any(|p| !p.user_id_group_pairs().is_empty()));
    assert_eq!(
        leftovers(&c, &name).await,
        Leftovers {
            instances: 2,
            security_group: true,
            key_pair: true
        }
    );

    // Query: rank order, running, public addresses in default-VPC mode.
    let nodes = p.query_instances(&h).await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.rank).collect::<Vec<_>>(), vec![0, 1]);
    assert!(nodes.iter().all(|n| n.state == InstanceState::Running));
    assert!(nodes.iter().all(|n| !n.internal_ip.is_empty()));
    // ... which a runner would never contact: the endpoint is an emulator.
    let e = p.command_runner(&h, &nodes[0]).unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::InvalidConfig, "{e:?}");

    // Ports opened later, then cleaned up (22 stays).
    p.open_ports(
        &h,
        &[PortRange {
            start: 9000,
            end: 9000,
        }],
    )
    .await
    .unwrap();
    p.open_ports(
        &h,
        &[PortRange {
            start: 9000,
            end: 9000,
        }],
    )
    .await
    .unwrap();
    let sg_ports = |c: aws_sdk_ec2::Client, name: String| async move {
        let sg = c
            .describe_security_groups()
            .filters(filter("group-name", &[security_group_name(&name).as_str()]))
            .send()
            .await
            .unwrap();
        let mut v: Vec<i32> = sg.security_groups()[0]
            .ip_permissions()
            .iter()
            .filter(|p| p.ip_protocol() == Some("tcp"))
            .filter_map(|p| p.from_port())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        sg_ports(c.clone(), name.clone()).await,
        vec![22, 8080, 9000]
    );
    p.cleanup_ports(&h).await.unwrap();
    assert_eq!(sg_ports(c.clone(), name.clone()).await, vec![22]);

    // Stop and start keep the same instances and ranks.
    let ids_before: Vec<String> = nodes.iter().map(|n| n.instance_id.clone()).collect();
    p.stop_instances(&h).await.unwrap();
    let nodes = p.query_instances(&h).await.unwrap();
    assert!(
        nodes.iter().all(|n| n.state == InstanceState::Stopped),
        "{nodes:?}"
    );
    p.stop_instances(&h).await.unwrap();
    p.start_instances(&h).await.unwrap();
    let nodes = p.query_instances(&h).await.unwrap();
    assert!(nodes.iter().all(|n| n.state == InstanceState::Running));
    assert_eq!(
        nodes
            .iter()
            .map(|n| n.instance_id.clone())
            .collect::<Vec<_>>(),
        ids_before
    );

    // Launching again resumes the same cluster; a different node count is refused.
    let h2 = p.run_instances(&req).await.unwrap();
    assert_eq!(p.query_instances(&h2).await.unwrap().len(), 2);
    let mut bigger = req.clone();
    bigger.num_nodes = 3;
    let e = p.run_instances(&bigger).await.unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::InvalidConfig);
    assert!(e.fix.is_some());

    // Terminate leaves nothing, and is idempotent.
    p.terminate_instances(&h).await.unwrap();
    assert_eq!(leftovers(&c, &name).await, Leftovers::NONE);
    assert!(p.query_instances(&h).await.unwrap().is_empty());
    p.terminate_instances(&h).await.unwrap();
}

#[tokio::test]
async fn spot_clusters_cannot_stop_and_say_how_to_fix_it() {
    let moto = moto_or_skip!();
    let p = provider(&moto.url(), AwsConfig::default());
    let region = "us-east-2";
    let c = p.client(region).await;
    let image = any_image(&c).await;
    let name = unique("spot");
    let mut req = request(&name, region, None, 1, "m5.large", &image);
    req.use_spot = true;
    req.resources.use_spot = true;
    let h = p.run_instances(&req).await.unwrap();
    let out = c
        .describe_instances()
        .filters(filter(&format!("tag:{TAG_CLUSTER}"), &[name.as_str()]))
        .send()
        .await
        .unwrap();
    let i = &out.reservations()[0].instances()[0];
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    // moto would accept the stop; AWS rejects it, so the provider refuses first.
    let e = p.stop_instances(&h).await.unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::NotSupported);
    assert!(e.fix.as_deref().unwrap().contains("sky down"), "{e:?}");
    assert_eq!(
        p.query_instances(&h).await.unwrap()[0].state,
        InstanceState::Running
    );
    p.terminate_instances(&h).await.unwrap();
    assert_eq!(leftovers(&c, &name).await, Leftovers::NONE);
}

#[tokio::test]
async fn bad_requests_map_to_kinds_and_leave_nothing() {
    let moto = moto_or_skip!();
    let p = provider(&moto.url(), AwsConfig::default());
    let region = "eu-west-1";
    let c = p.client(region).await;
    let image = any_image(&c).await;

    // A bogus instance type (moto validates it): invalid config, and the group and key
    // created before RunInstances are gone again.
    let name = unique("badtype");
    let e = p
        .run_instances(&request(&name, region, None, 1, "m5.bogus", &image))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::InvalidConfig, "{e:?}");
    assert!(e.message.contains("InvalidInstanceType"), "{}", e.message);
    assert_eq!(leftovers(&c, &name).await, Leftovers::NONE);

    // A bogus AMI.
    let name = unique("badami");
    let e = p
        .run_instances(&request(&name, region, None, 1, "m5.large", "ami-00000000"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::InvalidConfig, "{e:?}");
    assert!(e.fix.as_deref().unwrap().contains("image_id"));
    assert_eq!(leftovers(&c, &name).await, Leftovers::NONE);

    // A zone of another region: not this region's zone, move on.
    let name = unique("badzone");
    let e = p
        .run_instances(&request(
            &name,
            region,
            Some("use1-az1"),
            1,
            "m5.large",
            &image,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::NotSupported, "{e:?}");
    assert_eq!(leftovers(&c, &name).await, Leftovers::NONE);

    // Terminating a cluster that never existed is fine.
    let h = sky_provider::ClusterHandle {
        cloud: "aws".into(),
        cluster_name: "never".into(),
        cluster_name_on_cloud: unique("never"),
        region: region.into(),
        zone: None,
        num_nodes: 1,
        instance_type: "m5.large".into(),
        use_spot: false,
        provider_config: serde_json::Value::Null,
    };
    p.terminate_instances(&h).await.unwrap();
    assert!(p.query_instances(&h).await.unwrap().is_empty());
}

/// Internal-IPs mode in a moto VPC whose subnet is the test network 10.200.0.0/24: nodes get
/// sequential private addresses there, no public address, and runners would target exactly
/// those (no connection is made here).
#[tokio::test]
async fn internal_ips_mode_returns_only_subnet_addresses() {
    let moto = moto_or_skip!();
    let region = "us-west-1";
    let vpc_name = unique("sky-it-vpc");
    let p = provider(
        &moto.url(),
        AwsConfig {
            use_internal_ips: true,
            vpc_name: Some(vpc_name.clone()),
            ssh_user: Some("sky".into()),
            ..AwsConfig::default()
        },
    );
    let c = p.client(region).await;
    let (zone_name, zone_id) = zones(&c).await.remove(0);
    let vpc_id = vpc_with_subnet(&c, &vpc_name, "10.200.0.0/24", &zone_name).await;
    let image = any_image(&c).await;
    let name = unique("internal");
    let h = p
        .run_instances(&request(
            &name,
            region,
            Some(&zone_id),
            3,
            "m5.large",
            &image,
        ))
        .await
        .unwrap();
    p.wait_instances(&h).await.unwrap();
    let nodes = p.query_instances(&h).await.unwrap();
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        assert!(n.internal_ip.starts_with("10.200.0."), "{n:?}");
        assert_eq!(n.external_ip, None);
        let t = p.ssh_target(&h, n).unwrap();
        assert_eq!(
            (t.ip.as_str(), t.user.as_deref()),
            (n.internal_ip.as_str(), Some("sky"))
        );
    }
    // Distinct addresses.
    let mut ips: Vec<_> = nodes.iter().map(|n| n.internal_ip.clone()).collect();
    ips.dedup();
    assert_eq!(ips.len(), 3);
    // Security group in the named VPC.
    let sg = c
        .describe_security_groups()
        .filters(filter("group-name", &[security_group_name(&name).as_str()]))
        .send()
        .await
        .unwrap();
    assert_eq!(sg.security_groups()[0].vpc_id(), Some(vpc_id.as_str()));
    p.terminate_instances(&h).await.unwrap();
    assert_eq!(leftovers(&c, &name).await, Leftovers::NONE);
}

/// Without a VPC of that name the region is ruled out (failover moves on) with a fix.
#[tokio::test]
async fn missing_vpc_blocks_the_region() {
    let moto = moto_or_skip!();
    let p = provider(
        &moto.url(),
        AwsConfig {
            use_internal_ips: true,
            vpc_name: Some(unique("no-such-vpc")),
            ..AwsConfig::default()
        },
    );
    let region = "ap-south-1";
    let c = p.client(region).await;
    let image = any_image(&c).await;
    let name = unique("novpc");
    let e = p
        .run_instances(&request(&name, region, None, 1, "m5.large", &image))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.scope),
        (
            ProvisionErrorKind::NotSupported,
            sky_provider::FailureScope::Region
        )
    );
    assert!(e.fix.is_some());
    assert_eq!(leftovers(&c, &name).await, Leftovers::NONE);
}
