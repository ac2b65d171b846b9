//! The local cloud: nodes are sandboxes on this machine (`sky-cloud-local`).

use std::borrow::Cow;

use crate::{
    CloudProfile, Credentials, DefaultInstance, Egress, Families, FeatureSet, NO_CREDENTIALS, Zones,
};

/// Local: everything a directory on this machine can do. Spot exists only where the local
/// cloud's configuration simulates it (its provider's `features()` says so).
pub const LOCAL: CloudProfile = CloudProfile {
    id: Cow::Borrowed("local"),
    display_name: Cow::Borrowed("Local"),
    aliases: &[],
    features: FeatureSet {
        stop: true,
        spot: false,
        multi_node: true,
        open_ports: true,
        custom_image: false,
        docker: false,
        autostop: true,
        // Accepted as before: the nodes share this machine's disk.
        disk_tiers: true,
    },
    bundled_catalog: false,
    rank: None,
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
        always: Some("this machine: nodes are local sandboxes; no credentials needed"),
        ..NO_CREDENTIALS
    },
};
