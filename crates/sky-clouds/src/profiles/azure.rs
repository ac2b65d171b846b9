//! Microsoft Azure (planned on from the bundled catalog; no provisioner yet).

use std::borrow::Cow;

use crate::{
    Base, CloudProfile, CredentialFile, Credentials, DefaultInstance, DefaultShape, Egress,
    Families, FeatureSet, NO_CREDENTIALS, Zones,
};

/// Azure: no zones in its catalog.
pub const AZURE: CloudProfile = CloudProfile {
    id: Cow::Borrowed("azure"),
    display_name: Cow::Borrowed("Azure"),
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
    rank: Some(2),
    zones: Zones::Unsupported("Azure does not support zones."),
    plans_per_zone: false,
    attachable_accelerators: false,
    tpu_vms: false,
    us_regions_first: false,
    default_instance: DefaultInstance {
        families: Families::AzureSeries(&["Ds_v5", "Es_v5", "Fs_v2"]),
        shape: Some(DefaultShape {
            vcpus: 8.0,
            memory_per_vcpu: 4.0,
        }),
        any_region: false,
    },
    // Azure's published internet-egress tiers, the whole volume at the bracket's rate:
    // $0.0875/GB up to 10 TB, $0.083 to 50 TB, $0.07 to 150 TB, $0.05 beyond.
    egress: Egress::Brackets(&[
        (10.0 * 1024.0, 0.0875),
        (50.0 * 1024.0, 0.083),
        (150.0 * 1024.0, 0.07),
        (f64::INFINITY, 0.05),
    ]),
    bucket_prefixes: &["az://"],
    bucket_hosts: &[".blob.core.windows.net"],
    credentials: Credentials {
        files: &[CredentialFile {
            base: Base::Home,
            path: ".azure",
            path_var: Some("AZURE_CONFIG_DIR"),
            list: false,
            names: &[
                "azureProfile.json",
                "msal_token_cache.json",
                "msal_token_cache.bin",
                "accessTokens.json",
            ],
        }],
        missing: "no Azure credentials: no azureProfile.json or token cache in {0}",
        fix: "run `az login`",
        ..NO_CREDENTIALS
    },
};
