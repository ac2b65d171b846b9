//! Lambda Cloud (planned on from the bundled catalog; no provisioner yet).

use std::borrow::Cow;

use crate::{
    Base, CloudProfile, CredentialFile, Credentials, DefaultInstance, DefaultShape, Egress,
    Families, FeatureSet, NO_CREDENTIALS, Zones,
};

/// Lambda: no spot, no stop, no custom disk tiers, no zones; 30+ vCPUs by default.
pub const LAMBDA: CloudProfile = CloudProfile {
    id: Cow::Borrowed("lambda"),
    display_name: Cow::Borrowed("Lambda"),
    aliases: &[],
    features: FeatureSet {
        stop: false,
        spot: false,
        multi_node: true,
        open_ports: true,
        custom_image: false,
        docker: true,
        autostop: true,
        disk_tiers: false,
    },
    bundled_catalog: true,
    rank: Some(3),
    zones: Zones::Unsupported("Lambda Cloud does not support zones."),
    plans_per_zone: false,
    attachable_accelerators: false,
    tpu_vms: false,
    us_regions_first: true,
    default_instance: DefaultInstance {
        families: Families::All,
        shape: Some(DefaultShape {
            vcpus: 30.0,
            memory_per_vcpu: 4.0,
        }),
        any_region: false,
    },
    egress: Egress::Free,
    bucket_prefixes: &[],
    bucket_hosts: &[],
    credentials: Credentials {
        files: &[CredentialFile {
            base: Base::Home,
            path: ".lambda_cloud/lambda_keys",
            path_var: None,
            list: false,
            names: &[],
        }],
        missing: "no Lambda credentials: {0} does not exist",
        fix: "write `api_key = <your key>` to {0}",
        ..NO_CREDENTIALS
    },
};
