//! `sky-clouds`: what sky-rs knows about each cloud, as data: one [`CloudProfile`] per cloud
//! (its id and display name, the [`FeatureSet`] it offers, how its catalog is read, how the
//! optimizer plans on it, its egress prices, and where `sky check` finds its credentials), the
//! one list of built-in profiles ([`builtin`], [`profile`]), and the names SkyPilot's task YAML
//! accepts ([`SKYPILOT_CLOUDS`]).
//!
//! Every other list of clouds derives from these: the catalog's bundled clouds, the optimizer's
//! tie-break order, the CLI's `sky check` list and display names, the YAML's cloud names.
//! Adding a cloud means one profile here (or, for a third-party cloud, a profile its provider
//! returns from `CloudProvider::profile`) and its own crate. Used by `sky-spec`, `sky-catalog`,
//! `sky-optimizer`, `sky-provider` and the CLI. Invariant: this crate is pure data and a few
//! pure functions — it depends on `serde` only and does no IO, reads no environment or clock,
//! and runs no async code. The profiles are Rust constants rather than data files so that they
//! cost nothing at start-up (no parsing on the `sky launch --dryrun` path), are checked by the
//! compiler, and can be extended with struct-update syntax (`..sky_clouds::BLANK`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

mod profiles;

pub use profiles::{AWS, AZURE, GCP, KUBERNETES, LAMBDA, LOCAL, RUNPOD, SSH, VAST};

/// What a cloud can do, as data. The launcher and optimizer check it before asking for a
/// capability; a provider whose feature is `false` keeps the trait's `NotSupported` default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeatureSet {
    /// `stop_instances` / `start_instances` work and keep the nodes' disks.
    pub stop: bool,
    /// Spot (preemptible) nodes can be requested (`ProvisionRequest::use_spot`).
    pub spot: bool,
    /// More than one node per cluster.
    pub multi_node: bool,
    /// `open_ports` makes ports reachable from the client.
    pub open_ports: bool,
    /// `image_id` is honoured.
    pub custom_image: bool,
    /// Tasks may run in a docker image (`image_id: docker:...`).
    pub docker: bool,
    /// Autostop can act on this cloud's clusters: their nodes are on this machine (the head
    /// runs `sky stop|down` here), or the head stops or terminates its own cluster
    /// (`CloudProvider::node_self_stop`). `sky launch -i` leaves other clouds out.
    pub autostop: bool,
    /// `disk_tier` may be asked for: the optimizer plans a task with a disk tier only on
    /// clouds that have it (SkyPilot's `CUSTOM_DISK_TIER`).
    #[serde(default)]
    pub disk_tiers: bool,
}

/// Whether a cloud's catalog has zones a task may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Zones {
    /// `zone:` is accepted and checked against the catalog.
    Supported,
    /// `zone:` is refused with this message (SkyPilot's text: `Azure does not support zones.`).
    Unsupported(&'static str),
}

/// Which catalog rows a request without accelerators or an instance type may land on
/// (SkyPilot's `get_default_instance_type`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Families {
    /// Every row with an instance type.
    All,
    /// Instance types starting with one of these (`m6i.`, `n2-standard-`).
    Prefixes(&'static [&'static str]),
    /// Azure instance types whose series (`Standard_D8s_v5` → `Ds_v5`) is one of these.
    AzureSeries(&'static [&'static str]),
}

/// The shape a request without cpus or memory gets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DefaultShape {
    /// `N+` vCPUs when neither cpus nor memory is given.
    pub vcpus: f64,
    /// At least this many GiB per vCPU when memory is not given.
    pub memory_per_vcpu: f64,
}

/// How the catalog picks a default instance type.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DefaultInstance {
    pub families: Families,
    /// `None`: the request's cpus and memory as given (RunPod, Vast).
    pub shape: Option<DefaultShape>,
    /// The default instance type ignores the requested region and zone (Vast's offers are
    /// not tied to them).
    pub any_region: bool,
}

/// What moving data out of a cloud costs (SkyPilot's `get_egress_cost`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Egress {
    /// No egress charge.
    Free,
    /// The whole volume at the rate of the first bracket whose bound (GB) it does not exceed:
    /// `(up_to_gb, usd_per_gb)`, the last bound `f64::INFINITY` (GCP, Azure).
    Brackets(&'static [(f64, f64)]),
    /// Above `flat_above_gb` the whole volume at `flat_rate`; below, each slice above a tier's
    /// start at its rate, highest tier first: `(start_gb, usd_per_gb)` (AWS).
    Graduated {
        flat_above_gb: f64,
        flat_rate: f64,
        tiers: &'static [(f64, f64)],
    },
}

impl Egress {
    /// Dollars to move `gigabytes` out (negative volumes count as 0).
    pub fn cost(&self, gigabytes: f64) -> f64 {
        let gb = gigabytes.max(0.0);
        match *self {
            Egress::Free => 0.0,
            Egress::Brackets(brackets) => brackets
                .iter()
                .find(|(bound, _)| gb <= *bound)
                .map_or(0.0, |(_, rate)| rate * gb),
            Egress::Graduated {
                flat_above_gb,
                flat_rate,
                tiers,
            } => {
                if gb > flat_above_gb {
                    return flat_rate * gb;
                }
                let mut rest = gb;
                let mut cost = 0.0;
                for &(start, rate) in tiers {
                    if rest >= start {
                        cost += (rest - start) * rate;
                        rest = start;
                    }
                }
                cost
            }
        }
    }
}

/// Where a credentials path is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Base {
    /// The user's home directory.
    Home,
    /// SkyPilot's directory (`~/.sky`), whose shared files sky-rs reads.
    SkyDir,
}

/// One place `sky check` looks for a cloud's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialFile {
    pub base: Base,
    /// Relative to `base`: the file, or the directory of `names`.
    pub path: &'static str,
    /// A variable whose value replaces `path` (the first `:`-separated entry when `list`).
    pub path_var: Option<&'static str>,
    pub list: bool,
    /// Files in the directory `path`, any one of which counts; empty: `path` is the file.
    pub names: &'static [&'static str],
}

/// How `sky check` decides that a cloud is enabled: only files and variables, never a call to
/// the cloud. Messages are templates: `{0}`, `{1}`, ... are the paths of `files` (the file
/// itself when it has at most one name, its directory when it has several), `{path}` the path
/// that was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// Always enabled, with this reason (the local cloud).
    pub always: Option<&'static str>,
    /// Variables that, all set, are the credentials.
    pub env_keys: &'static [&'static str],
    /// A variable naming a credentials file, which must exist.
    pub env_file: Option<&'static str>,
    /// Files looked at, in order, after the variables.
    pub files: &'static [CredentialFile],
    /// The reason when a file is found.
    pub found: &'static str,
    /// Why the cloud is disabled when nothing is found.
    pub missing: &'static str,
    /// How to enable it.
    pub fix: &'static str,
}

/// Credentials of a cloud `sky check` cannot find: it is never enabled by `sky check`.
pub const NO_CREDENTIALS: Credentials = Credentials {
    always: None,
    env_keys: &[],
    env_file: None,
    files: &[],
    found: "credentials found in {path}",
    missing: "",
    fix: "",
};

/// Everything sky-rs knows about one cloud. Built-in clouds have a `const` here
/// ([`AWS`], [`GCP`], ...) that spells out every field; a third-party cloud's provider returns
/// its own from `CloudProvider::profile`, typically `CloudProfile { features,
/// ..CloudProfile::named(id, display) }`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CloudProfile {
    /// Canonical lower-case id (`aws`), as in `ClusterHandle::cloud` and the task YAML.
    pub id: Cow<'static, str>,
    /// As SkyPilot prints it (`AWS`, `RunPod`).
    pub display_name: Cow<'static, str>,
    /// Other names the YAML and CLI accept (`k8s`).
    pub aliases: &'static [&'static str],
    /// What sky-rs can do on the cloud. For a cloud with a provider, the provider's
    /// `features()` (which may depend on its configuration) is authoritative; for clouds
    /// sky-rs only plans on, SkyPilot's capabilities.
    pub features: FeatureSet,
    /// Whether a catalog of its offers is bundled in the binary (`catalogs/`).
    pub bundled_catalog: bool,
    /// The optimizer's tie-break rank: on equal cost, lower ranks win; clouds without a rank
    /// come after, in the order the caller enabled them (SkyPilot's registry order).
    pub rank: Option<u8>,
    /// Whether a task may name a zone.
    pub zones: Zones,
    /// The optimizer makes one launchable per zone even on demand (GCP), not only for spot.
    pub plans_per_zone: bool,
    /// Accelerators attach to host VMs and are billed separately; the catalog joins them to
    /// host types and the optimizer prices both (GCP's GPUs and TPUs).
    pub attachable_accelerators: bool,
    /// TPU VMs (`tpu-*` accelerators on the `TPU-VM` host).
    pub tpu_vms: bool,
    /// Regions whose names start with `us-` are tried first (AWS, Lambda).
    pub us_regions_first: bool,
    /// How the default instance type is chosen.
    pub default_instance: DefaultInstance,
    /// Egress prices (pipelines between clouds).
    pub egress: Egress,
    /// Bucket URI prefixes that live in this cloud (`s3://`), for a pipeline's first input.
    pub bucket_prefixes: &'static [&'static str],
    /// Bucket hosts that live in this cloud (`.blob.core.windows.net`).
    pub bucket_hosts: &'static [&'static str],
    /// How `sky check` finds its credentials.
    pub credentials: Credentials,
}

/// A profile that claims nothing: no features, no catalog, no rank, zones accepted, default
/// instance types from every row, free egress. Start a new profile from it.
pub const BLANK: CloudProfile = CloudProfile {
    id: Cow::Borrowed(""),
    display_name: Cow::Borrowed(""),
    aliases: &[],
    features: FeatureSet {
        stop: false,
        spot: false,
        multi_node: false,
        open_ports: false,
        custom_image: false,
        docker: false,
        autostop: false,
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
    credentials: NO_CREDENTIALS,
};

impl CloudProfile {
    /// [`BLANK`] with an id and a display name (start a third-party profile from it:
    /// `CloudProfile { features, ..CloudProfile::named("mycloud", "MyCloud") }`).
    pub fn named(id: &'static str, display_name: &'static str) -> CloudProfile {
        CloudProfile {
            id: Cow::Borrowed(id),
            display_name: Cow::Borrowed(display_name),
            ..BLANK
        }
    }

    /// The profile of a cloud sky-rs has no profile for: [`BLANK`] with `features`, and the
    /// id as its display name.
    pub fn minimal(id: &str, features: FeatureSet) -> CloudProfile {
        let id = id.to_ascii_lowercase();
        CloudProfile {
            display_name: Cow::Owned(id.clone()),
            id: Cow::Owned(id),
            features,
            ..BLANK
        }
    }

    /// The built-in profile of `id` (case-insensitive, aliases too), or a minimal one with no
    /// features.
    pub fn of(id: &str) -> CloudProfile {
        profile(id)
            .cloned()
            .unwrap_or_else(|| CloudProfile::minimal(id, FeatureSet::default()))
    }

    /// Whether a bucket URI lives in this cloud.
    pub fn owns_bucket(&self, uri: &str) -> bool {
        self.bucket_prefixes.iter().any(|p| uri.starts_with(p))
            || self.bucket_hosts.iter().any(|h| uri.contains(h))
    }
}

static BUILTIN: [CloudProfile; 9] = [
    AWS, GCP, AZURE, LAMBDA, RUNPOD, VAST, KUBERNETES, SSH, LOCAL,
];

/// Every built-in profile, in the optimizer's tie-break order (ranked clouds first).
pub fn builtin() -> &'static [CloudProfile] {
    &BUILTIN
}

/// The built-in profile of a cloud name (case-insensitive; aliases such as `k8s` too).
pub fn profile(name: &str) -> Option<&'static CloudProfile> {
    let name = name.trim();
    BUILTIN.iter().find(|p| {
        p.id.eq_ignore_ascii_case(name) || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// SkyPilot's display name of a cloud id (`aws` → `AWS`); ids without a built-in profile are
/// returned as given.
pub fn display_name(id: &str) -> &str {
    match profile(id) {
        Some(p) => &p.display_name,
        None => id,
    }
}

/// Every canonical cloud name SkyPilot's task YAML accepts, in SkyPilot's registry order. The
/// clouds with a [`CloudProfile`] are among them; the others are accepted in a task file and
/// never planned on (no catalog, no provider).
pub const SKYPILOT_CLOUDS: &[&str] = &[
    "aws",
    "azure",
    "gcp",
    "ibm",
    "lambda",
    "scp",
    "oci",
    "kubernetes",
    "runpod",
    "vast",
    "vsphere",
    "cudo",
    "fluidstack",
    "paperspace",
    "primeintellect",
    "do",
    "nebius",
    "ssh",
    "hyperbolic",
    "seeweb",
    "shadeform",
    "slurm",
    "local",
];

/// The canonical lower-case id of a cloud name, case-insensitive (`"AWS"` → `"aws"`, `"k8s"`
/// → `"kubernetes"`); `None` for a name SkyPilot does not know.
pub fn canonical(name: &str) -> Option<&'static str> {
    let name = name.trim();
    if let Some(p) = BUILTIN
        .iter()
        .find(|p| p.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
    {
        return SKYPILOT_CLOUDS.iter().copied().find(|c| *c == p.id);
    }
    SKYPILOT_CLOUDS
        .iter()
        .copied()
        .find(|c| c.eq_ignore_ascii_case(name))
}

/// Ids of the clouds whose catalogs are bundled, sorted by id.
pub fn bundled_catalog_clouds() -> &'static [&'static str] {
    static IDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        let mut v: Vec<&'static str> = BUILTIN
            .iter()
            .filter(|p| p.bundled_catalog)
            .map(|p| static_id(p))
            .collect();
        v.sort_unstable();
        v
    })
}

/// Ids of the clouds `sky check` reports on (every built-in profile), sorted by id.
pub fn checked_clouds() -> &'static [&'static str] {
    static IDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        let mut v: Vec<&'static str> = BUILTIN.iter().map(static_id).collect();
        v.sort_unstable();
        v
    })
}

fn static_id(p: &'static CloudProfile) -> &'static str {
    &p.id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        assert_eq!(canonical("AWS"), Some("aws"));
        assert_eq!(canonical("k8s"), Some("kubernetes"));
        assert_eq!(canonical("Kubernetes"), Some("kubernetes"));
        assert_eq!(canonical(" Lambda "), Some("lambda"));
        assert_eq!(canonical("oci"), Some("oci"));
        assert_eq!(canonical("foo"), None);
        assert_eq!(profile("K8S").map(|p| &*p.id), Some("kubernetes"));
        assert_eq!(display_name("runpod"), "RunPod");
        assert_eq!(display_name("x"), "x");
    }

    #[test]
    fn egress_tiers() {
        assert_eq!(AWS.egress.cost(1.0), 0.0);
        assert!((AWS.egress.cost(101.0) - 9.0).abs() < 1e-9);
        assert!((AWS.egress.cost(200_000.0) - 10_000.0).abs() < 1e-6);
        assert!((GCP.egress.cost(100.0) - 12.0).abs() < 1e-9);
        assert!((GCP.egress.cost(2048.0) - 225.28).abs() < 1e-9);
        assert!((AZURE.egress.cost(20_480.0) - 1699.84).abs() < 1e-6);
        assert_eq!(LAMBDA.egress.cost(100.0), 0.0);
        assert_eq!(GCP.egress.cost(-5.0), 0.0);
    }

    #[test]
    fn minimal_profiles_claim_only_their_features() {
        let f = FeatureSet {
            multi_node: true,
            ..FeatureSet::default()
        };
        let p = CloudProfile::minimal("MyCloud", f);
        assert_eq!(p.id, "mycloud");
        assert_eq!(p.display_name, "mycloud");
        assert_eq!(p.features, f);
        assert!(!p.bundled_catalog && p.rank.is_none());
        assert_eq!(CloudProfile::of("aws"), AWS);
        assert_eq!(CloudProfile::of("nope").features, FeatureSet::default());
    }
}
