//! Google Cloud (planned on from the bundled catalog; no provisioner yet).

use std::borrow::Cow;

use crate::{
    Base, CloudProfile, CredentialFile, Credentials, DefaultInstance, DefaultShape, Egress,
    Families, FeatureSet, NO_CREDENTIALS, Zones,
};

/// GCP: GPUs and TPUs attach to host VMs and are billed separately; every launchable is
/// planned per zone.
pub const GCP: CloudProfile = CloudProfile {
    id: Cow::Borrowed("gcp"),
    display_name: Cow::Borrowed("GCP"),
    aliases: &[],
    features: FeatureSet {
        stop: true,
        spot: true,
        multi_node: true,
        open_ports: true,
        custom_image: true,
        docker: true,
        autostop: true,
        disk_tiers: true,
    },
    bundled_catalog: true,
    rank: Some(1),
    zones: Zones::Supported,
    plans_per_zone: true,
    attachable_accelerators: true,
    tpu_vms: true,
    us_regions_first: false,
    default_instance: DefaultInstance {
        families: Families::Prefixes(&[
            "n2-standard-",
            "n2-highmem-",
            "n2-highcpu-",
            "n4-standard-",
            "n4-highcpu-",
            "n4-highmem-",
        ]),
        shape: Some(DefaultShape {
            vcpus: 8.0,
            memory_per_vcpu: 4.0,
        }),
        any_region: false,
    },
    // SkyPilot's: the whole volume at $0.12/GB up to 1 TB, $0.11 to 10 TB, $0.08 beyond.
    egress: Egress::Brackets(&[(1024.0, 0.12), (10.0 * 1024.0, 0.11), (f64::INFINITY, 0.08)]),
    bucket_prefixes: &["gs://"],
    bucket_hosts: &[],
    credentials: Credentials {
        env_file: Some("GOOGLE_APPLICATION_CREDENTIALS"),
        files: &[CredentialFile {
            base: Base::Home,
            path: ".config/gcloud",
            path_var: Some("CLOUDSDK_CONFIG"),
            list: false,
            names: &["application_default_credentials.json"],
        }],
        missing: "no GCP credentials: GOOGLE_APPLICATION_CREDENTIALS names no file and {0} does not exist",
        fix: "run `gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS at a service-account key",
        ..NO_CREDENTIALS
    },
};
