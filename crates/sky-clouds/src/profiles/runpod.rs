//! RunPod (planned on from the bundled catalog; no provisioner yet).

use std::borrow::Cow;

use crate::{
    Base, CloudProfile, CredentialFile, Credentials, DefaultInstance, Egress, Families, FeatureSet,
    NO_CREDENTIALS, Zones,
};

/// RunPod: single-node pods, no custom disk tiers; the default instance is the cheapest row.
pub const RUNPOD: CloudProfile = CloudProfile {
    id: Cow::Borrowed("runpod"),
    display_name: Cow::Borrowed("RunPod"),
    aliases: &[],
    features: FeatureSet {
        stop: true,
        spot: true,
        multi_node: false,
        open_ports: true,
        custom_image: false,
        docker: true,
        autostop: true,
        disk_tiers: false,
    },
    bundled_catalog: true,
    rank: Some(4),
    zones: Zones::Supported,
    plans_per_zone: false,
    attachable_accelerators: false,
    tpu_vms: false,
    us_regions_first: false,
    default_instance: DefaultInstance {
        families: Families::All,
        shape: None,
        any_region: false,
    },
    egress: Egress::Free,
    bucket_prefixes: &[],
    bucket_hosts: &[],
    credentials: Credentials {
        files: &[CredentialFile {
            base: Base::Home,
            path: ".runpod/config.toml",
            path_var: None,
            list: false,
            names: &[],
        }],
        missing: "no RunPod credentials: {0} does not exist",
        fix: "run `runpod config` with your API key",
        ..NO_CREDENTIALS
    },
};
