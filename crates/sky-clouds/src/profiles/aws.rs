//! Amazon Web Services (provisioned by `sky-cloud-aws`).

use std::borrow::Cow;

use crate::{
    Base, CloudProfile, CredentialFile, Credentials, DefaultInstance, DefaultShape, Egress,
    Families, FeatureSet, NO_CREDENTIALS, Zones,
};

/// AWS: EC2 with stop, spot, ports and custom AMIs; containers are not run yet.
pub const AWS: CloudProfile = CloudProfile {
    id: Cow::Borrowed("aws"),
    display_name: Cow::Borrowed("AWS"),
    aliases: &[],
    features: FeatureSet {
        stop: true,
        spot: true,
        multi_node: true,
        open_ports: true,
        custom_image: true,
        docker: false,
        // The head stops or terminates its own cluster (`node_self_stop`).
        autostop: true,
        disk_tiers: true,
    },
    bundled_catalog: true,
    rank: Some(0),
    zones: Zones::Supported,
    plans_per_zone: false,
    attachable_accelerators: false,
    tpu_vms: false,
    us_regions_first: true,
    default_instance: DefaultInstance {
        families: Families::Prefixes(&[
            "m6i.", "m6id.", "m7i.", "r6i.", "r6id.", "r7i.", "c6i.", "c6id.", "c7i.",
        ]),
        shape: Some(DefaultShape {
            vcpus: 8.0,
            memory_per_vcpu: 4.0,
        }),
        any_region: false,
    },
    // SkyPilot's tiers (egress from US East): the first GB free, then $0.09/GB to 10 TB,
    // $0.085 to 50 TB, $0.07 to 150 TB; beyond 150 TB the whole volume at $0.05.
    egress: Egress::Graduated {
        flat_above_gb: 150.0 * 1024.0,
        flat_rate: 0.05,
        tiers: &[(50.0 * 1024.0, 0.07), (10.0 * 1024.0, 0.085), (1.0, 0.09)],
    },
    bucket_prefixes: &["s3://"],
    bucket_hosts: &[],
    credentials: Credentials {
        env_keys: &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        files: &[
            CredentialFile {
                base: Base::Home,
                path: ".aws/credentials",
                path_var: Some("AWS_SHARED_CREDENTIALS_FILE"),
                list: false,
                names: &[],
            },
            CredentialFile {
                base: Base::Home,
                path: ".aws/config",
                path_var: Some("AWS_CONFIG_FILE"),
                list: false,
                names: &[],
            },
        ],
        missing: "no AWS credentials: AWS_ACCESS_KEY_ID is unset and neither {0} nor {1} exists",
        fix: "run `aws configure`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ..NO_CREDENTIALS
    },
};
