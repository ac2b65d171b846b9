//! The optimizer plans each cloud as its profile says: a cloud defined only by a profile and
//! its offers is planned without a change to the optimizer, a request the profile rules out
//! leaves the cloud out with the reason, and changing a built-in profile changes the plan.

use sky_catalog::{Catalog, ExtraOffer};
use sky_clouds::{AWS, CloudProfile, FeatureSet, GCP, RUNPOD};
use sky_optimizer::{OptimizeError, optimize_task, optimize_task_with};
use sky_spec::{AcceleratorRequest, DiskTier, ResourceChoice, Resources, Task};

/// A third-party cloud: nothing but its profile (no spot, one node per cluster) and offers.
fn acme() -> CloudProfile {
    CloudProfile {
        features: FeatureSet {
            stop: true,
            open_ports: true,
            autostop: true,
            disk_tiers: true,
            ..FeatureSet::default()
        },
        ..CloudProfile::named("acme", "Acme")
    }
}

fn acme_catalog() -> Catalog {
    let offer = |it: &str, region: &str, price: f64| ExtraOffer {
        instance_type: it.into(),
        accelerator: None,
        vcpus: 8.0,
        memory_gib: 32.0,
        price,
        spot_price: Some(price / 4.0),
        region: region.into(),
        zone: None,
    };
    Catalog::bundled().with_extra_cloud_profile(
        &acme(),
        &[
            offer("acme.large", "acme-west", 0.02),
            offer("acme.large", "acme-east", 0.03),
        ],
    )
}

fn task(r: Resources, num_nodes: u32) -> Task {
    Task {
        num_nodes,
        resources: ResourceChoice::Single(r),
        run: Some("echo hi".into()),
        ..Default::default()
    }
}

fn no_resources(e: OptimizeError) -> String {
    match e {
        OptimizeError::NoResources { message } => message,
        other => panic!("expected no resources, got {other:?}"),
    }
}

#[test]
fn a_cloud_defined_by_its_profile_is_planned() {
    let catalog = acme_catalog();
    let plan = optimize_task_with(
        &catalog,
        &task(Resources::default(), 1),
        &[AWS, acme()],
        &[],
    )
    .expect("plan");
    assert_eq!(plan.chosen.cloud, "acme");
    assert_eq!(plan.chosen.instance_type, "acme.large");
    assert_eq!(plan.chosen.region, "acme-west");
    // Its display name is the profile's, in the table and the failover order.
    let chosen = plan.rows.iter().find(|r| r.chosen).expect("a chosen row");
    assert_eq!(chosen.infra, "Acme (acme-west)");
    assert_eq!(chosen.cloud, "Acme");
    assert_eq!(plan.failover_order[1].region, "acme-east");
    assert!(plan.rows.iter().any(|r| r.cloud == "AWS"));
}

#[test]
fn a_spot_or_multi_node_task_skips_a_cloud_whose_profile_lacks_it() {
    let catalog = acme_catalog();
    let spot = Resources {
        use_spot: true,
        ..Default::default()
    };
    // With AWS beside it, the spot task goes to AWS although Acme's spot price is lower.
    let plan =
        optimize_task_with(&catalog, &task(spot.clone(), 1), &[AWS, acme()], &[]).expect("plan");
    assert_eq!(plan.chosen.cloud, "aws");
    assert!(plan.failover_order.iter().all(|l| l.cloud == "aws"));
    // Alone, it is refused with the reason.
    let msg =
        no_resources(optimize_task_with(&catalog, &task(spot, 1), &[acme()], &[]).unwrap_err());
    assert!(
        msg.contains(
            "Left out for what the request needs: Acme cannot use spot instances (use_spot: true)."
        ),
        "{msg}"
    );
    let msg = no_resources(
        optimize_task_with(&catalog, &task(Resources::default(), 2), &[acme()], &[]).unwrap_err(),
    );
    assert!(
        msg.contains("Acme cannot run clusters of several nodes (num_nodes: 2)"),
        "{msg}"
    );
    let plan = optimize_task_with(
        &catalog,
        &task(Resources::default(), 2),
        &[AWS, acme()],
        &[],
    )
    .expect("plan");
    assert_eq!(plan.chosen.cloud, "aws");
    // The same profile with the features: planned.
    let able = CloudProfile {
        features: FeatureSet {
            spot: true,
            multi_node: true,
            ..acme().features
        },
        ..acme()
    };
    let plan = optimize_task_with(&catalog, &task(Resources::default(), 2), &[AWS, able], &[])
        .expect("plan");
    assert_eq!(plan.chosen.cloud, "acme");
}

#[test]
fn feasibility_reads_the_profile() {
    let catalog = Catalog::bundled();
    // multi_node: AWS without it cannot take a 2-node task.
    let t2 = task(Resources::default(), 2);
    assert_eq!(
        optimize_task_with(catalog, &t2, &[AWS], &[])
            .expect("plan")
            .chosen
            .cloud,
        "aws"
    );
    let single_node_aws = CloudProfile {
        features: FeatureSet {
            multi_node: false,
            ..AWS.features
        },
        ..AWS
    };
    let msg = no_resources(optimize_task_with(catalog, &t2, &[single_node_aws], &[]).unwrap_err());
    assert!(
        msg.contains("AWS cannot run clusters of several nodes"),
        "{msg}"
    );

    // spot: AWS without it.
    let spot = task(
        Resources {
            use_spot: true,
            ..Default::default()
        },
        1,
    );
    assert!(
        optimize_task_with(catalog, &spot, &[AWS], &[])
            .expect("plan")
            .chosen
            .use_spot
    );
    let no_spot_aws = CloudProfile {
        features: FeatureSet {
            spot: false,
            ..AWS.features
        },
        ..AWS
    };
    let msg = no_resources(optimize_task_with(catalog, &spot, &[no_spot_aws], &[]).unwrap_err());
    assert!(msg.contains("AWS cannot use spot instances"), "{msg}");

    // disk_tier: AWS without disk tiers; RunPod (none, as SkyPilot) with them.
    let tiered = |acc: Option<&str>| {
        task(
            Resources {
                disk_tier: Some(DiskTier::High),
                accelerators: acc.map(|a| AcceleratorRequest {
                    name: a.into(),
                    count: 1.0,
                }),
                ..Default::default()
            },
            1,
        )
    };
    assert_eq!(
        optimize_task_with(catalog, &tiered(None), &[AWS], &[])
            .expect("plan")
            .chosen
            .cloud,
        "aws"
    );
    let untiered_aws = CloudProfile {
        features: FeatureSet {
            disk_tiers: false,
            ..AWS.features
        },
        ..AWS
    };
    let msg =
        no_resources(optimize_task_with(catalog, &tiered(None), &[untiered_aws], &[]).unwrap_err());
    assert!(msg.contains("AWS cannot choose a disk tier"), "{msg}");
    let msg = no_resources(
        optimize_task(catalog, &tiered(Some("A100-80GB")), &["runpod"], &[]).unwrap_err(),
    );
    assert!(msg.contains("RunPod cannot choose a disk tier"), "{msg}");
    let tiered_runpod = CloudProfile {
        features: FeatureSet {
            disk_tiers: true,
            ..RUNPOD.features
        },
        ..RUNPOD
    };
    assert_eq!(
        optimize_task_with(catalog, &tiered(Some("A100-80GB")), &[tiered_runpod], &[])
            .expect("plan")
            .chosen
            .cloud,
        "runpod"
    );
}

#[test]
fn per_zone_planning_and_attachable_accelerators_read_the_profile() {
    let catalog = Catalog::bundled();
    let t = task(Resources::default(), 1);
    // AWS plans on-demand per region; planned per zone, every launchable has a zone.
    let plan = optimize_task_with(catalog, &t, &[AWS], &[]).expect("plan");
    assert!(plan.failover_order.iter().all(|l| l.zone.is_none()));
    let zoned_aws = CloudProfile {
        plans_per_zone: true,
        ..AWS
    };
    let plan = optimize_task_with(catalog, &t, &[zoned_aws], &[]).expect("plan");
    assert!(plan.failover_order.iter().all(|l| l.zone.is_some()));
    assert!(
        plan.chosen
            .infra()
            .contains(plan.chosen.zone.as_deref().unwrap())
    );
    // GCP prices its attachable GPUs on top of the host.
    let t4 = task(
        Resources {
            accelerators: Some(AcceleratorRequest {
                name: "T4".into(),
                count: 1.0,
            }),
            ..Default::default()
        },
        1,
    );
    let plan = optimize_task_with(catalog, &t4, &[GCP], &[]).expect("plan");
    assert!(
        plan.chosen.instance_type.starts_with("n1-"),
        "{:?}",
        plan.chosen
    );
    let host_price = catalog
        .hourly_cost(
            "gcp",
            &plan.chosen.instance_type,
            false,
            Some(&plan.chosen.region),
            plan.chosen.zone.as_deref(),
        )
        .expect("host price");
    assert!(
        plan.chosen.hourly_price > host_price,
        "the GPU is billed on top"
    );
    let plain_gcp = CloudProfile {
        attachable_accelerators: false,
        ..GCP
    };
    // Without the flag the GPU is not priced: the same host costs only itself.
    let plan = optimize_task_with(catalog, &t4, &[plain_gcp], &[]).expect("plan");
    let host_price = catalog
        .hourly_cost(
            "gcp",
            &plan.chosen.instance_type,
            false,
            Some(&plan.chosen.region),
            plan.chosen.zone.as_deref(),
        )
        .expect("host price");
    assert_eq!(plan.chosen.hourly_price, host_price);
}

#[test]
fn ties_follow_the_profiles_ranks() {
    // Two clouds with the same offer at the same price: the lower rank wins; unranked
    // clouds keep the order given.
    let offer = ExtraOffer {
        instance_type: "box".into(),
        accelerator: None,
        vcpus: 8.0,
        memory_gib: 32.0,
        price: 0.5,
        spot_price: None,
        region: "r1".into(),
        zone: None,
    };
    let a = CloudProfile::named("alpha", "Alpha");
    let b = CloudProfile::named("beta", "Beta");
    let catalog = Catalog::empty()
        .with_extra_cloud_profile(&a, std::slice::from_ref(&offer))
        .with_extra_cloud_profile(&b, std::slice::from_ref(&offer));
    let t = task(Resources::default(), 1);
    let pick = |clouds: &[CloudProfile]| {
        optimize_task_with(&catalog, &t, clouds, &[])
            .expect("plan")
            .chosen
            .cloud
    };
    assert_eq!(pick(&[a.clone(), b.clone()]), "alpha");
    assert_eq!(pick(&[b.clone(), a.clone()]), "beta");
    let ranked_b = CloudProfile {
        rank: Some(0),
        ..b.clone()
    };
    assert_eq!(pick(&[a.clone(), ranked_b]), "beta");
}
