//! SSH node pools: existing machines (`sky-cloud-ssh`).

use std::borrow::Cow;

use crate::{
    Base, CloudProfile, CredentialFile, Credentials, DefaultInstance, Egress, Families, FeatureSet,
    NO_CREDENTIALS, Zones,
};

/// SSH pools: existing machines cannot stop, be preempted, open ports or run other images.
pub const SSH: CloudProfile = CloudProfile {
    id: Cow::Borrowed("ssh"),
    display_name: Cow::Borrowed("SSH"),
    aliases: &[],
    features: FeatureSet {
        stop: false,
        spot: false,
        multi_node: true,
        open_ports: false,
        custom_image: false,
        docker: false,
        // The hosts cannot stop, and a head cannot release the client's leases.
        autostop: false,
        // Accepted as before: the hosts' disks are what they are.
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
        files: &[CredentialFile {
            base: Base::SkyDir,
            path: "ssh_node_pools.yaml",
            path_var: None,
            list: false,
            names: &[],
        }],
        found: "node pools in {path} (each pool is a region: --infra ssh/<pool>)",
        missing: "no SSH node pools: {0} does not exist",
        fix: "list your machines in {0} (pool-name: {user, identity_file, hosts: [ip, ...]})",
        ..NO_CREDENTIALS
    },
};
