//! Kubernetes (`sky check` finds a kubeconfig; no catalog or provisioner yet).

use std::borrow::Cow;

use crate::{
    Base, CloudProfile, CredentialFile, Credentials, DefaultInstance, Egress, Families, FeatureSet,
    NO_CREDENTIALS, Zones,
};

/// Kubernetes: pods run container images; no stop, no spot.
pub const KUBERNETES: CloudProfile = CloudProfile {
    id: Cow::Borrowed("kubernetes"),
    display_name: Cow::Borrowed("Kubernetes"),
    aliases: &["k8s"],
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
            base: Base::Home,
            path: ".kube/config",
            path_var: Some("KUBECONFIG"),
            list: true,
            names: &[],
        }],
        missing: "no kubeconfig: {0} does not exist",
        fix: "point KUBECONFIG at a kubeconfig, or write ~/.kube/config",
        ..NO_CREDENTIALS
    },
};
