//! Vast.ai (planned on from the bundled catalog; no provisioner yet).

use std::borrow::Cow;

use crate::{
    Base, CloudProfile, CredentialFile, Credentials, DefaultInstance, Egress, Families, FeatureSet,
    NO_CREDENTIALS, Zones,
};

/// Vast: single-node offers, no custom disk tiers, no zones; the default instance is the
/// cheapest offer anywhere.
pub const VAST: CloudProfile = CloudProfile {
    id: Cow::Borrowed("vast"),
    display_name: Cow::Borrowed("Vast"),
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
    rank: Some(5),
    zones: Zones::Unsupported("Vast does not support zones."),
    plans_per_zone: false,
    attachable_accelerators: false,
    tpu_vms: false,
    us_regions_first: false,
    default_instance: DefaultInstance {
        families: Families::All,
        shape: None,
        any_region: true,
    },
    egress: Egress::Free,
    bucket_prefixes: &[],
    bucket_hosts: &[],
    credentials: Credentials {
        files: &[CredentialFile {
            base: Base::Home,
            path: ".config/vastai/vast_api_key",
            path_var: None,
            list: false,
            names: &[],
        }],
        missing: "no Vast credentials: {0} does not exist",
        fix: "run `vastai set api-key <your key>`",
        ..NO_CREDENTIALS
    },
};
