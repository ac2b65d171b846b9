//! The task model: plain data produced by the parser and consumed by the optimizer, the
//! launcher and the CLI. Every type here is a value (Clone + PartialEq + Debug); nothing here
//! does IO.

use std::collections::BTreeMap;

use indexmap::IndexMap;

/// A whole task file: one task, or a pipeline of tasks run in order.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskFile {
    /// A single-document task YAML.
    Task(Box<Task>),
    /// A multi-document YAML whose first document is a header with only `name`
    /// (optionally `execution: serial`).
    Pipeline(Pipeline),
}

/// A chain of tasks: `tasks[0] >> tasks[1] >> ...`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub name: Option<String>,
    pub tasks: Vec<Task>,
}

/// One SkyPilot task.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub name: Option<String>,
    pub workdir: Option<Workdir>,
    /// Number of nodes (>= 1). Default 1.
    pub num_nodes: u32,
    pub resources: ResourceChoice,
    pub setup: Option<String>,
    pub run: Option<String>,
    /// Environment variables after `--env`/`--env-file` overrides. Values are never null here.
    pub envs: IndexMap<String, String>,
    /// Inline secrets (redacted in every output).
    pub secrets: IndexMap<String, String>,
    /// Envs written with a null value that no `--env` supplied: SkyPilot's loader accepts
    /// them, and launch requires a value. Always empty in a task from
    /// [`parse_task_file`](crate::parse_task_file); only
    /// [`check_task_file`](crate::check_task_file) leaves names here.
    pub required_envs: Vec<String>,
    /// Like [`Task::required_envs`], for inline secrets that no `--secret` supplied.
    pub required_secrets: Vec<String>,
    pub file_mounts: IndexMap<String, FileMount>,
    pub service: Option<Service>,
    /// `config:` overrides of `~/.sky/config.yaml`, kept as JSON.
    pub config: Option<serde_json::Value>,
    /// `inputs: {path: GB}` (at most one entry).
    pub inputs: Option<(String, f64)>,
    /// `outputs: {path: GB}` (at most one entry).
    pub outputs: Option<(String, f64)>,
    /// `event_callback`.
    pub event_callback: Option<String>,
    /// Managed secret references (`secrets:NAME[@scope]` keys with null values, or the list
    /// form), kept verbatim and in order.
    pub secret_refs: Vec<String>,
    /// Top-level keys SkyPilot accepts that this model does not interpret (`volumes`,
    /// `volume_mounts`, `file_mounts_mapping`, `pool`, `managed_secrets`, `api_server_access`,
    /// `_metadata`), kept as JSON so they survive a dump.
    pub extra: IndexMap<String, serde_json::Value>,
}

impl Default for Task {
    fn default() -> Self {
        Task {
            name: None,
            workdir: None,
            num_nodes: 1,
            resources: ResourceChoice::default(),
            setup: None,
            run: None,
            envs: IndexMap::new(),
            secrets: IndexMap::new(),
            required_envs: Vec::new(),
            required_secrets: Vec::new(),
            file_mounts: IndexMap::new(),
            service: None,
            config: None,
            inputs: None,
            outputs: None,
            event_callback: None,
            secret_refs: Vec::new(),
            extra: IndexMap::new(),
        }
    }
}

/// `workdir:` either a local path or a git repository.
#[derive(Clone, Debug, PartialEq)]
pub enum Workdir {
    Path(String),
    Git {
        url: String,
        git_ref: Option<String>,
    },
}

/// The resource request of a task.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "plain values matched by many crates; boxing would only add noise"
)]
pub enum ResourceChoice {
    /// One candidate.
    Single(Resources),
    /// `any_of:` or an accelerator set / multi-key dict: members compete on cost.
    AnyOf(Vec<Resources>),
    /// `ordered:` or an accelerator YAML list: tried in the listed order.
    Ordered(Vec<Resources>),
}

impl Default for ResourceChoice {
    fn default() -> Self {
        ResourceChoice::Single(Resources::default())
    }
}

impl ResourceChoice {
    /// All candidates, in declaration order.
    pub fn candidates(&self) -> &[Resources] {
        match self {
            ResourceChoice::Single(r) => std::slice::from_ref(r),
            ResourceChoice::AnyOf(v) | ResourceChoice::Ordered(v) => v,
        }
    }
}

/// One candidate resource request (SkyPilot's `Resources`).
#[derive(Clone, Debug, PartialEq)]
pub struct Resources {
    /// Canonical lower-case cloud id (`aws`, `gcp`, `azure`, `lambda`, `runpod`, `vast`,
    /// `kubernetes`, `ssh`, `local`, ...). `None` = any enabled cloud.
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    /// One accelerator request (lists and sets were expanded into [`ResourceChoice`]).
    pub accelerators: Option<AcceleratorRequest>,
    /// `accelerator_args` (e.g. TPU `runtime_version`), kept as JSON.
    pub accelerator_args: Option<serde_json::Value>,
    pub cpus: Option<Quantity>,
    pub memory: Option<MemoryRequest>,
    pub instance_type: Option<String>,
    pub use_spot: bool,
    /// Whether `use_spot` was written explicitly.
    pub use_spot_specified: bool,
    /// GiB, default 256.
    pub disk_size: u64,
    pub disk_tier: Option<DiskTier>,
    pub network_tier: Option<NetworkTier>,
    /// Normalised, merged, sorted port ranges.
    pub ports: Vec<PortRange>,
    pub image_id: Option<ImageId>,
    pub labels: BTreeMap<String, String>,
    pub job_recovery: Option<JobRecovery>,
    pub autostop: Option<Autostop>,
    pub max_hourly_cost: Option<f64>,
    /// `max_duration` (a sky-rs extension for managed jobs), in seconds: a job running longer
    /// is ended with its own failure reason. `None` = no limit.
    pub max_duration: Option<u64>,
    /// -1000..=1000, default 0.
    pub priority: Option<i32>,
    /// Resource keys SkyPilot accepts that this model does not interpret (`local_disk`,
    /// `ephemeral_storage`, `volumes`, `priority_class`, internal `_...` keys), kept as JSON.
    pub extra: IndexMap<String, serde_json::Value>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cloud: None,
            region: None,
            zone: None,
            accelerators: None,
            accelerator_args: None,
            cpus: None,
            memory: None,
            instance_type: None,
            use_spot: false,
            use_spot_specified: false,
            disk_size: DEFAULT_DISK_SIZE_GB,
            disk_tier: None,
            network_tier: None,
            ports: Vec::new(),
            image_id: None,
            labels: BTreeMap::new(),
            job_recovery: None,
            autostop: None,
            max_hourly_cost: None,
            max_duration: None,
            priority: None,
            extra: IndexMap::new(),
        }
    }
}

/// SkyPilot's default disk size in GiB.
pub const DEFAULT_DISK_SIZE_GB: u64 = 256;

/// `NAME:COUNT`; the count may be fractional (`H100:0.5`). The name is as written (the
/// catalog canonicalises it).
#[derive(Clone, Debug, PartialEq)]
pub struct AcceleratorRequest {
    pub name: String,
    pub count: f64,
}

/// `N` (exactly N) or `N+` (at least N).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantity {
    pub value: f64,
    pub at_least: bool,
}

/// `memory:`: an absolute amount in GiB (`32`, `32+`, `64GB`), or GiB per vCPU (`4x`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryRequest {
    Gib(Quantity),
    PerVcpu(Quantity),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskTier {
    Low,
    Medium,
    High,
    Ultra,
    Best,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkTier {
    Standard,
    Best,
}

/// An inclusive port range (`start == end` for a single port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

/// `8080`, or `9000-9010` for a range (SkyPilot's `ports:` form).
impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// `image_id:` a single image for every region, or one per region.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageId {
    /// Any region (`docker:` prefix = container image, `skypilot:` = catalog tag).
    All(String),
    PerRegion(IndexMap<String, String>),
}

/// `job_recovery:`.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecovery {
    /// Upper-cased strategy name (`EAGER_NEXT_REGION`, `FAILOVER`), `None` for `none`.
    pub strategy: Option<String>,
    pub max_restarts_on_errors: u32,
    pub recover_on_exit_codes: Vec<u8>,
}

/// `autostop:`.
#[derive(Clone, Debug, PartialEq)]
pub struct Autostop {
    pub enabled: bool,
    pub idle_minutes: u32,
    pub down: bool,
    pub wait_for: AutostopWaitFor,
    /// `hook`: a script run before autostop.
    pub hook: Option<String>,
    /// `hook_timeout` in seconds (>= 1).
    pub hook_timeout: Option<u32>,
}

/// SkyPilot's default idle time before autostop, in minutes.
pub const DEFAULT_AUTOSTOP_IDLE_MINUTES: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutostopWaitFor {
    #[default]
    JobsAndSsh,
    Jobs,
    None,
}

/// A `file_mounts` entry.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "plain values matched by many crates; boxing would only add noise"
)]
pub enum FileMount {
    /// A local path or a bucket URI (`s3://...`, `gs://...`, `https://<acct>.blob...`, `r2://`).
    Source(String),
    Storage(StorageSpec),
}

#[derive(Clone, Debug, PartialEq)]
pub struct StorageSpec {
    pub name: Option<String>,
    /// One source or several local paths.
    pub source: Vec<String>,
    /// Lower-case store id (`s3`, `gcs`, `azure`, `r2`, ...).
    pub store: Option<String>,
    pub persistent: bool,
    pub mode: StorageMode,
    /// `config:` of the storage object (e.g. `mount_cached` knobs), kept as JSON.
    pub config: Option<serde_json::Value>,
    /// `type:` a MOUNT_CACHED preset (`MODEL_CHECKPOINT_RO`, ...), upper-cased.
    pub file_mount_type: Option<String>,
    /// `mount_options:` passed to the mount tool.
    pub mount_options: Option<String>,
    /// Internal `_...` keys SkyPilot accepts, kept as JSON.
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StorageMode {
    #[default]
    Mount,
    Copy,
    MountCached,
}

/// `service:`.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub readiness_probe: Option<ReadinessProbe>,
    pub replica_policy: Option<ReplicaPolicy>,
    /// `replicas: N` (fixed count, mutually exclusive with `replica_policy`).
    pub replicas: Option<u32>,
    pub ports: Option<u16>,
    /// Lower-cased policy name (`round_robin`, `least_load`, `instance_aware_least_load`).
    pub load_balancing_policy: Option<String>,
    /// `tls: {keyfile, certfile}` as `(keyfile, certfile)`.
    pub tls: Option<(String, String)>,
    /// Keys SkyPilot accepts that this model does not interpret (`load_balancer`, `pool`,
    /// `workers`), kept as JSON.
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReadinessProbe {
    pub path: String,
    pub post_data: Option<serde_json::Value>,
    /// Default 1200.
    pub initial_delay_seconds: u64,
    /// Default 15.
    pub timeout_seconds: u64,
    pub headers: IndexMap<String, String>,
    /// Other probe knobs (`endpoint_probe_interval_seconds`,
    /// `consecutive_failure_threshold_timeout`), kept as JSON.
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaPolicy {
    pub min_replicas: u32,
    pub max_replicas: Option<u32>,
    pub target_qps_per_replica: Option<f64>,
    /// `target_qps_per_replica` given per accelerator (`{H100:1: 10, A100: 5}`).
    pub target_qps_per_accelerator: IndexMap<String, f64>,
    /// Default 300.
    pub upscale_delay_seconds: u64,
    /// Default 1200.
    pub downscale_delay_seconds: u64,
    pub num_overprovision: Option<u32>,
    pub base_ondemand_fallback_replicas: Option<u32>,
    pub dynamic_ondemand_fallback: Option<bool>,
    pub spot_placer: Option<String>,
}

impl Task {
    /// Makes the task's local paths absolute against `cwd` (where the CLI runs): a relative
    /// `workdir` path and relative local `file_mounts` sources (plain sources and storage
    /// objects' local sources). Bucket URIs, absolute and `~` paths are left as they are. For
    /// a task that runs from somewhere else than the CLI's directory (the managed-jobs
    /// controller).
    pub fn absolutize_local_paths(&mut self, cwd: &std::path::Path) {
        let fix = |p: &mut String| {
            if !p.is_empty()
                && !p.starts_with('/')
                && !p.starts_with('~')
                && !crate::util::is_uri(p)
            {
                let rel: std::path::PathBuf = std::path::Path::new(&*p)
                    .components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect();
                let abs = if rel.as_os_str().is_empty() {
                    cwd.to_path_buf()
                } else {
                    cwd.join(rel)
                };
                *p = abs.display().to_string();
            }
        };
        if let Some(Workdir::Path(p)) = &mut self.workdir {
            fix(p);
        }
        for m in self.file_mounts.values_mut() {
            match m {
                FileMount::Source(s) => fix(s),
                FileMount::Storage(st) => st.source.iter_mut().for_each(fix),
            }
        }
    }
}

#[cfg(test)]
mod absolutize_tests {
    use super::*;

    #[test]
    fn relative_local_paths_become_absolute_and_the_rest_stays() {
        let yaml = "workdir: .\nfile_mounts:\n  /data: ./data\n  /abs: /srv/x\n  /home: ~/y\n  /b: s3://bucket/p\n  /st:\n    name: my-bucket\n    source: ./up\n    mode: COPY\nrun: ls\n";
        let crate::TaskFile::Task(mut t) =
            crate::parse_task_file(yaml, &crate::ParseOptions::default()).unwrap()
        else {
            panic!("one task");
        };
        t.absolutize_local_paths(std::path::Path::new("/work/proj"));
        assert_eq!(t.workdir, Some(Workdir::Path("/work/proj".into())));
        let src = |k: &str| match &t.file_mounts[k] {
            FileMount::Source(s) => s.clone(),
            FileMount::Storage(s) => s.source.join(","),
        };
        assert_eq!(src("/data"), "/work/proj/data");
        assert_eq!(src("/abs"), "/srv/x");
        assert_eq!(src("/home"), "~/y");
        assert_eq!(src("/b"), "s3://bucket/p");
        assert_eq!(src("/st"), "/work/proj/up");
    }
}
