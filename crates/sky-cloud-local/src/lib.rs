//! sky-cloud-local is the embedded default cloud of sky-rs: it needs no credentials, and its
//! "nodes" are sandboxes on this machine. Each node is a directory
//! `<root>/<cluster_name_on_cloud>/node-<rank>/` that serves as the node's HOME (its own
//! `~/sky_workdir`, `~/sky_logs`), with its own loopback address (127.64.0.0/10) and its own
//! processes, which `stop` and `down` find and kill. Its capacity is this machine's vCPUs, memory
//! and GPUs, or simulated accelerators; the `local:` config section can also declare a simulated
//! topology of regions and zones with prices, per-zone failures and spot preemption, so failover
//! and recovery can be rehearsed. The CLI registers [`LocalProvider`] in its `ProviderRegistry`;
//! `sky-launch` and `sky-agent` use it only through `sky-provider`'s traits. It must not need
//! credentials, the network, or anything outside `root` (it never writes elsewhere), and it
//! starts processes only through its `process` module.

mod capacity;
mod config;
mod nodes;
mod process;
mod runner;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, FailureScope, FeatureSet, InstanceInfo,
    InstanceState, Offering, ProvisionError, ProvisionErrorKind, ProvisionRequest,
};
use sky_spec::model::PortRange;

pub use capacity::{
    Capacity, GpuInfo, canonical_gpu_name, parse_meminfo_total_gib, parse_nvidia_smi_list,
    parse_nvidia_smi_query,
};
pub use config::{
    LocalConfig, LocalConfigError, PreemptAction, RegionConfig, SimulatedFailure, ZoneConfig,
};
pub use nodes::NodeMeta;
pub use process::{NODE_MARKER_ENV, WATCHDOG_MARKER_ENV, pid_alive};
pub use runner::{LocalRunner, copy_tree};

use nodes::Layout;
use process::KillSet;

/// The provider id.
pub const LOCAL_CLOUD_ID: &str = "local";
/// The only instance type of the local cloud.
pub const LOCAL_INSTANCE_TYPE: &str = "local";
/// How long stopped processes get between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

const STATE_RUNNING: &str = "running";
const STATE_STOPPED: &str = "stopped";

/// The local cloud.
#[derive(Debug)]
pub struct LocalProvider {
    layout: Layout,
    cfg: LocalConfig,
    sky_binary: PathBuf,
    capacity: OnceLock<Capacity>,
    kill_grace: Duration,
}

impl LocalProvider {
    /// `root` holds the nodes (the CLI passes `~/.sky-rs/local`); `sky_binary` is the `sky`
    /// executable the launcher starts as each node's agent (recorded in handles).
    pub fn new(root: PathBuf, cfg: LocalConfig, sky_binary: PathBuf) -> Self {
        LocalProvider {
            layout: Layout { root },
            cfg,
            sky_binary,
            capacity: OnceLock::new(),
            kill_grace: KILL_GRACE,
        }
    }

    /// Parses the `local:` config section (`null` for defaults) and builds the provider.
    pub fn from_config_value(
        root: PathBuf,
        local: &serde_json::Value,
        sky_binary: PathBuf,
    ) -> Result<Self, LocalConfigError> {
        Ok(Self::new(root, LocalConfig::from_json(local)?, sky_binary))
    }

    /// Uses `capacity` instead of detecting this machine's (tests, embedders).
    #[must_use]
    pub fn with_capacity(self, capacity: Capacity) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(capacity);
        LocalProvider {
            capacity: cell,
            ..self
        }
    }

    /// Sets the SIGTERM → SIGKILL grace period of stop/terminate (default [`KILL_GRACE`]).
    #[must_use]
    pub fn with_kill_grace(self, grace: Duration) -> Self {
        LocalProvider {
            kill_grace: grace,
            ..self
        }
    }

    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    pub fn config(&self) -> &LocalConfig {
        &self.cfg
    }

    pub fn sky_binary(&self) -> &Path {
        &self.sky_binary
    }

    /// Per-node capacity (detected once, lazily: `nvidia-smi` is only run when needed).
    pub fn capacity(&self) -> &Capacity {
        self.capacity.get_or_init(|| Capacity::detect(&self.cfg))
    }

    /// The directory (HOME) of node `rank` of a cluster.
    pub fn node_dir(&self, cluster_name_on_cloud: &str, rank: u32) -> PathBuf {
        self.layout.node_dir(cluster_name_on_cloud, rank)
    }

    /// The recorded metadata of every node of a cluster, in rank order.
    pub fn node_metas(&self, cluster_name_on_cloud: &str) -> Vec<NodeMeta> {
        self.layout
            .node_dirs(cluster_name_on_cloud)
            .iter()
            .filter_map(|(_, d)| nodes::read_meta(d))
            .collect()
    }

    fn check_name(&self, name: &str) -> Result<(), ProvisionError> {
        if nodes::valid_name(name) {
            Ok(())
        } else {
            Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                format!("cluster name on cloud {name:?} is not usable as a local node directory"),
            )
            .with_fix("use letters, digits, '-', '_' and '.' only"))
        }
    }

    fn simulated_failure(&self, zone: &ZoneConfig, region: &str) -> Option<ProvisionError> {
        let key = format!("{}.fail", zone.path);
        Some(match zone.fail? {
            SimulatedFailure::Capacity => ProvisionError::capacity(
                FailureScope::Zone,
                format!(
                    "no capacity for instance type local in zone {} of region {region} (simulated by {key})",
                    zone.name
                ),
            ),
            SimulatedFailure::Quota => ProvisionError::quota(
                FailureScope::Region,
                format!(
                    "quota exceeded for instance type local in region {region} (simulated by {key})"
                ),
            )
            .with_fix(format!(
                "remove `fail: quota` at {key} in ~/.sky/config.yaml"
            )),
            SimulatedFailure::Auth => ProvisionError::auth(format!(
                "credentials for the local cloud were rejected in zone {} (simulated by {key})",
                zone.name
            ))
            .with_fix(format!(
                "remove `fail: auth` at {key} in ~/.sky/config.yaml"
            )),
        })
    }

    fn check_fits(&self, req: &ProvisionRequest) -> Result<(), ProvisionError> {
        if req.num_nodes == 0 {
            return Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                "num_nodes must be at least 1",
            ));
        }
        if req.instance_type != LOCAL_INSTANCE_TYPE {
            return Err(ProvisionError::not_supported(format!(
                "instance type {:?} on the local cloud (its only instance type is \"local\")",
                req.instance_type
            )));
        }
        if let Some(want) = &req.resources.accelerators {
            let have = self.capacity().accelerator.as_ref();
            let fits = have.is_some_and(|(name, count)| {
                name.eq_ignore_ascii_case(&want.name) && *count >= want.count
            });
            if !fits {
                let have = have
                    .map(|(n, c)| format!("{n}:{c}"))
                    .unwrap_or_else(|| "no accelerators".into());
                return Err(ProvisionError::not_supported(format!(
                    "{}:{} on the local cloud: its nodes have {have}",
                    want.name, want.count
                ))
                .with_fix(
                    "declare simulated accelerators under local.accelerators in ~/.sky/config.yaml",
                ));
            }
        }
        Ok(())
    }

    fn handle_for(&self, req: &ProvisionRequest, zone: &str) -> ClusterHandle {
        ClusterHandle {
            cloud: LOCAL_CLOUD_ID.into(),
            cluster_name: req.cluster_name.clone(),
            cluster_name_on_cloud: req.cluster_name_on_cloud.clone(),
            region: req.region.clone(),
            zone: Some(zone.to_owned()),
            num_nodes: req.num_nodes,
            instance_type: LOCAL_INSTANCE_TYPE.into(),
            use_spot: req.use_spot,
            provider_config: self.provider_config(),
        }
    }

    /// The provider's part of every handle it returns.
    fn provider_config(&self) -> serde_json::Value {
        serde_json::json!({
            "root": self.layout.root,
            "sky_binary": self.sky_binary,
        })
    }

    /// The handle of the cluster whose nodes live under `<root>/<name_on_cloud>`, from the
    /// nodes' own metadata; `None` when no node of it is left.
    fn discovered_handle(&self, name_on_cloud: &str) -> Option<ClusterHandle> {
        let metas = self.node_metas(name_on_cloud);
        let first = metas.first()?;
        if first.cluster_name_on_cloud != name_on_cloud {
            return None;
        }
        Some(ClusterHandle {
            cloud: LOCAL_CLOUD_ID.into(),
            cluster_name: first.cluster_name.clone(),
            cluster_name_on_cloud: name_on_cloud.to_owned(),
            region: first.region.clone(),
            zone: Some(first.zone.clone()),
            num_nodes: u32::try_from(metas.len()).unwrap_or(u32::MAX),
            instance_type: LOCAL_INSTANCE_TYPE.into(),
            use_spot: first.use_spot,
            provider_config: self.provider_config(),
        })
    }

    async fn try_zone(
        &self,
        req: &ProvisionRequest,
        zone: &ZoneConfig,
    ) -> Result<ClusterHandle, ProvisionError> {
        if let Some(err) = self.simulated_failure(zone, &req.region) {
            return Err(err);
        }
        if req.use_spot && zone.preempt_after_seconds.is_none() {
            return Err(ProvisionError::new(
                ProvisionErrorKind::NotSupported,
                FailureScope::Zone,
                format!(
                    "spot nodes in local zone {} (no preempt_after_seconds configured)",
                    zone.name
                ),
            )
            .with_fix(format!(
                "set {}.preempt_after_seconds to simulate spot nodes",
                zone.path
            )));
        }
        let name = &req.cluster_name_on_cloud;
        let existing = self.node_metas(name);
        if !existing.is_empty() {
            return self.resume(req, zone, &existing).await;
        }
        let cluster_dir = self.layout.cluster_dir(name);
        match self.create_nodes(req, zone) {
            Ok(()) => {}
            Err(e) => {
                self.remove_cluster(&cluster_dir).await;
                return Err(ProvisionError::other(format!(
                    "create local nodes for cluster {} under {}: {e}",
                    req.cluster_name,
                    self.layout.root.display()
                )));
            }
        }
        if req.use_spot {
            self.start_watchdog(name);
        }
        Ok(self.handle_for(req, &zone.name))
    }

    async fn resume(
        &self,
        req: &ProvisionRequest,
        zone: &ZoneConfig,
        existing: &[NodeMeta],
    ) -> Result<ClusterHandle, ProvisionError> {
        let first = &existing[0];
        if existing.len() != req.num_nodes as usize
            || first.region != req.region
            || first.zone != zone.name
        {
            return Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                format!(
                    "cluster {} already exists on the local cloud with {} node(s) in {}/{}, which does not match the request ({} node(s) in {}/{})",
                    req.cluster_name,
                    existing.len(),
                    first.region,
                    first.zone,
                    req.num_nodes,
                    req.region,
                    zone.name
                ),
            )
            .with_fix(format!("run `sky down {}` first, or launch with the cluster's resources", req.cluster_name)));
        }
        let handle = self.handle_for(req, &zone.name);
        self.start_instances(&handle).await?;
        Ok(handle)
    }

    fn create_nodes(&self, req: &ProvisionRequest, zone: &ZoneConfig) -> std::io::Result<()> {
        let name = &req.cluster_name_on_cloud;
        // Owner-only: the nodes' homes below hold tokens, job specs and logs.
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(self.layout.cluster_dir(name))?;
        }
        let now = process::now_unix();
        for rank in 0..req.num_nodes {
            let dir = self.layout.node_dir(name, rank);
            let ip = self.layout.reserve_address(&dir)?;
            std::fs::create_dir_all(nodes::pids_dir(&dir))?;
            nodes::write_meta(
                &dir,
                &NodeMeta {
                    rank,
                    address: ip.to_string(),
                    cluster_name: req.cluster_name.clone(),
                    cluster_name_on_cloud: name.clone(),
                    region: req.region.clone(),
                    zone: zone.name.clone(),
                    use_spot: req.use_spot,
                    preempt_after_seconds: if req.use_spot {
                        zone.preempt_after_seconds
                    } else {
                        None
                    },
                    preempt_action: match zone.preempt_action {
                        PreemptAction::Stop => "stop".into(),
                        PreemptAction::Terminate => "terminate".into(),
                    },
                    preempt_notice_seconds: if req.use_spot {
                        zone.preempt_notice_seconds
                    } else {
                        0.0
                    },
                    created_at: now,
                },
            )?;
            nodes::write_state(&dir, STATE_RUNNING)?;
        }
        Ok(())
    }

    /// Kills every process of the cluster and removes its directory and address reservations.
    async fn remove_cluster(&self, cluster_dir: &Path) -> Option<String> {
        process::kill_watchdogs(cluster_dir);
        let groups = self
            .layout
            .node_dirs(
                &cluster_dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy(),
            )
            .iter()
            .flat_map(|(_, d)| nodes::recorded_pids(d))
            .collect();
        KillSet {
            under: vec![cluster_dir.to_owned()],
            groups,
            ..KillSet::default()
        }
        .kill(self.kill_grace)
        .await;
        let mut problems = Vec::new();
        if let Err(e) = self.layout.release_addresses(cluster_dir) {
            problems.push(format!("release addresses: {e}"));
        }
        match std::fs::remove_dir_all(cluster_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("remove {}: {e}", cluster_dir.display())),
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Kills a node's processes, marks it stopped.
    async fn stop_node(&self, dir: &Path) -> std::io::Result<()> {
        nodes::write_state(dir, STATE_STOPPED)?;
        KillSet {
            exact: vec![dir.to_owned()],
            groups: nodes::recorded_pids(dir),
            ..KillSet::default()
        }
        .kill(self.kill_grace)
        .await;
        nodes::clear_pids(dir)
    }

    fn start_watchdog(&self, name: &str) {
        let dirs = self.layout.node_dirs(name);
        let Some(meta) = dirs.first().and_then(|(_, d)| nodes::read_meta(d)) else {
            return;
        };
        let Some(after) = meta.preempt_after_seconds else {
            return;
        };
        let cluster_dir = self.layout.cluster_dir(name);
        process::kill_watchdogs(&cluster_dir);
        // The nodes' clock of preemption starts when they were last marked running (the
        // same reference `preempt_if_due` and `preemption_notice` use).
        let since = dirs
            .iter()
            .filter_map(|(_, d)| nodes::read_state(d))
            .map(|(_, at)| at)
            .fold(f64::NAN, f64::max);
        let now = process::now_unix();
        let since = if since.is_finite() { since } else { now };
        let deadline = since + after;
        let notice = meta.preempt_notice_seconds.clamp(0.0, after);
        let script = watchdog_script(
            &cluster_dir,
            &self.layout.addresses_dir(),
            &Timeline {
                until_notice: (deadline - notice - now).max(0.0),
                notice,
                deadline: deadline.ceil() as i64,
            },
            &meta.preempt_action,
        );
        // Without a watchdog, query_instances still applies the preemption when it is due.
        let _ = process::spawn_watchdog(&script, &cluster_dir);
    }

    /// Applies a due simulated preemption (the watchdog may be gone).
    async fn preempt_if_due(&self, name: &str) {
        let dirs = self.layout.node_dirs(name);
        let due = dirs.iter().find_map(|(_, d)| {
            let meta = nodes::read_meta(d)?;
            let after = meta.preempt_after_seconds?;
            let (state, since) = nodes::read_state(d)?;
            (state == STATE_RUNNING && process::now_unix() >= since + after)
                .then_some(meta.preempt_action)
        });
        match due.as_deref() {
            Some("terminate") => {
                let _ = self.remove_cluster(&self.layout.cluster_dir(name)).await;
            }
            Some(_) => {
                process::kill_watchdogs(&self.layout.cluster_dir(name));
                for (_, d) in &dirs {
                    let _ = self.stop_node(d).await;
                }
            }
            None => {}
        }
    }
}

fn shell_quote(p: &Path) -> String {
    sky_provider::shell_quote(&p.to_string_lossy())
}

/// When the watchdog acts, from its start: the notice (if any), then the preemption.
#[derive(Clone, Copy, Debug)]
struct Timeline {
    /// Seconds until the notice (or, without one, until the preemption).
    until_notice: f64,
    /// Seconds of notice (0: none).
    notice: f64,
    /// The preemption's deadline (unix seconds), written into the notice files.
    deadline: i64,
}

/// The preemption watchdog: with a notice configured, `notice` seconds before the deadline it
/// writes the deadline to every node's [`sky_provider::PREEMPTION_NOTICE_FILE`] and sends
/// SIGTERM to the job processes (those tagged with the node and
/// [`sky_provider::JOB_PROCESS_ENV`]; agents and other node processes are left alone); at the
/// deadline it does to the cluster what a spot preemption would (mark stopped and kill every
/// node process, or also remove everything).
fn watchdog_script(cluster_dir: &Path, addresses: &Path, t: &Timeline, action: &str) -> String {
    let c = shell_quote(cluster_dir);
    let a = shell_quote(addresses);
    let notice = if t.notice > 0.0 {
        format!(
            r#"for d in "$C"/node-*; do
  [ -d "$d/.sky" ] && printf '%s\n' {deadline} > "$d/{file}.tmp$$" && mv -f "$d/{file}.tmp$$" "$d/{file}"
done
for p in /proc/[0-9]*; do
  pid=${{p#/proc/}}; [ "$pid" = "$$" ] && continue
  e=$(tr '\0' '\n' < "$p/environ" 2>/dev/null) || continue
  printf '%s\n' "$e" | grep -qF -- "{marker}=$C/node-" || continue
  printf '%s\n' "$e" | grep -qxF -- "{job}=1" && kill -TERM "$pid" 2>/dev/null
done
sleep {notice}
"#,
            deadline = t.deadline,
            file = sky_provider::PREEMPTION_NOTICE_FILE,
            marker = NODE_MARKER_ENV,
            job = sky_provider::JOB_PROCESS_ENV,
            notice = t.notice,
        )
    } else {
        String::new()
    };
    let mark = if action == "terminate" {
        String::new()
    } else {
        format!(
            r#"for d in "$C"/node-*; do [ -d "$d/.sky" ] && printf {STATE_STOPPED} > "$d/.sky/state"; done"#
        )
    };
    let finish = if action == "terminate" {
        r#"for r in "$A"/*; do o=$(cat "$r/owner" 2>/dev/null); case "$o" in "$C"/*) rm -rf "$r";; esac; done; rm -rf "$C""#
    } else {
        r#"for d in "$C"/node-*; do rm -rf "$d/.sky/pids"; mkdir -p "$d/.sky/pids"; done"#
    };
    format!(
        r#"C={c}; A={a}
sleep {until}
{notice}{mark}
k() {{
  for f in "$C"/node-*/.sky/pids/*; do [ -e "$f" ] && kill -$1 -- -"${{f##*/}}" 2>/dev/null; done
  for p in /proc/[0-9]*; do
    pid=${{p#/proc/}}; [ "$pid" = "$$" ] && continue
    if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qF -- "{marker}=$C/node-"; then kill -$1 "$pid" 2>/dev/null; fi
  done
}}
k TERM; sleep 2; k KILL
{finish}
"#,
        marker = NODE_MARKER_ENV,
        until = t.until_notice,
    )
}

#[async_trait]
impl CloudProvider for LocalProvider {
    fn id(&self) -> &str {
        LOCAL_CLOUD_ID
    }

    fn features(&self) -> FeatureSet {
        FeatureSet {
            // Spot exists where the configuration simulates it.
            spot: self.cfg.offers_spot(),
            ..sky_clouds::LOCAL.features
        }
    }

    fn offerings(&self) -> Vec<Offering> {
        let cap = self.capacity();
        self.cfg
            .regions
            .iter()
            .flat_map(|r| {
                r.zones.iter().map(move |z| Offering {
                    cloud: LOCAL_CLOUD_ID.into(),
                    region: r.name.clone(),
                    zone: Some(z.name.clone()),
                    instance_type: LOCAL_INSTANCE_TYPE.into(),
                    vcpus: cap.vcpus,
                    memory_gib: cap.memory_gib,
                    accelerator: cap.accelerator.clone(),
                    price: z.price,
                    spot_price: z
                        .preempt_after_seconds
                        .map(|_| z.spot_price.unwrap_or(z.price)),
                })
            })
            .collect()
    }

    /// One handle per directory under the root with a node's `.sky/node.json` (running or
    /// stopped), by cluster name: a listing, no process is contacted.
    async fn discover_clusters(&self) -> Result<Vec<ClusterHandle>, ProvisionError> {
        let entries = match std::fs::read_dir(&self.layout.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(ProvisionError::other(format!(
                    "list the local clusters under {}: {e}",
                    self.layout.root.display()
                )));
            }
        };
        let mut found: Vec<ClusterHandle> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                nodes::valid_name(&name).then_some(())?;
                self.discovered_handle(&name)
            })
            .collect();
        found.sort_by(|a, b| {
            (&a.cluster_name, &a.cluster_name_on_cloud)
                .cmp(&(&b.cluster_name, &b.cluster_name_on_cloud))
        });
        Ok(found)
    }

    async fn run_instances(&self, req: &ProvisionRequest) -> Result<ClusterHandle, ProvisionError> {
        self.check_name(&req.cluster_name_on_cloud)?;
        self.check_fits(req)?;
        let Some(region) = self.cfg.region(&req.region) else {
            let known: Vec<&str> = self.cfg.regions.iter().map(|r| r.name.as_str()).collect();
            return Err(ProvisionError::invalid_config(
                FailureScope::Region,
                format!(
                    "region {:?} is not in the local cloud's topology (regions: {})",
                    req.region,
                    known.join(", ")
                ),
            )
            .with_fix("add it under local.regions in ~/.sky/config.yaml or pick a listed region"));
        };
        let zones: Vec<&ZoneConfig> = match &req.zone {
            Some(z) => match region.zones.iter().find(|c| &c.name == z) {
                Some(zone) => vec![zone],
                None => {
                    return Err(ProvisionError::invalid_config(
                        FailureScope::Zone,
                        format!("zone {z:?} is not in local region {}", region.name),
                    ));
                }
            },
            // An existing cluster is resumed where it is.
            None => match self.node_metas(&req.cluster_name_on_cloud).first() {
                Some(meta) if region.zones.iter().any(|z| z.name == meta.zone) => region
                    .zones
                    .iter()
                    .filter(|z| z.name == meta.zone)
                    .collect(),
                _ => region.zones.iter().collect(),
            },
        };
        let mut failures: Vec<ProvisionError> = Vec::new();
        for zone in zones {
            match self.try_zone(req, zone).await {
                Ok(h) => return Ok(h),
                Err(e)
                    if req.zone.is_none()
                        && matches!(
                            e.kind,
                            ProvisionErrorKind::Capacity | ProvisionErrorKind::NotSupported
                        )
                        && e.scope == FailureScope::Zone =>
                {
                    failures.push(e)
                }
                Err(e) => return Err(e),
            }
        }
        // Zone left open and every zone failed: the whole region failed.
        let last = failures
            .pop()
            .unwrap_or_else(|| ProvisionError::capacity(FailureScope::Region, "no zones"));
        let mut all: Vec<String> = failures.iter().map(|f| f.message.clone()).collect();
        all.push(last.message.clone());
        Err(ProvisionError {
            scope: FailureScope::Region,
            message: all.join("; "),
            ..last
        })
    }

    async fn wait_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        let nodes = self.query_instances(h).await?;
        if nodes.len() == h.num_nodes as usize
            && nodes.iter().all(|n| n.state == InstanceState::Running)
        {
            Ok(())
        } else {
            Err(ProvisionError::other(format!(
                "local cluster {} has {} of {} nodes running",
                h.cluster_name,
                nodes
                    .iter()
                    .filter(|n| n.state == InstanceState::Running)
                    .count(),
                h.num_nodes
            )))
        }
    }

    async fn query_instances(
        &self,
        h: &ClusterHandle,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        self.check_name(&h.cluster_name_on_cloud)?;
        self.preempt_if_due(&h.cluster_name_on_cloud).await;
        let mut out = Vec::new();
        for (rank, dir) in self.layout.node_dirs(&h.cluster_name_on_cloud) {
            let Some(meta) = nodes::read_meta(&dir) else {
                continue;
            };
            let state = match nodes::read_state(&dir).map(|(s, _)| s).as_deref() {
                Some(STATE_RUNNING) => InstanceState::Running,
                Some(STATE_STOPPED) => InstanceState::Stopped,
                _ => InstanceState::Pending,
            };
            out.push(InstanceInfo {
                instance_id: format!("{}-node-{rank}", h.cluster_name_on_cloud),
                rank,
                internal_ip: meta.address.clone(),
                external_ip: Some(meta.address),
                state,
            });
        }
        Ok(out)
    }

    async fn stop_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check_name(&h.cluster_name_on_cloud)?;
        process::kill_watchdogs(&self.layout.cluster_dir(&h.cluster_name_on_cloud));
        for (rank, dir) in self.layout.node_dirs(&h.cluster_name_on_cloud) {
            self.stop_node(&dir).await.map_err(|e| {
                ProvisionError::other(format!("stop local node {rank} of {}: {e}", h.cluster_name))
            })?;
        }
        Ok(())
    }

    async fn start_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check_name(&h.cluster_name_on_cloud)?;
        let dirs = self.layout.node_dirs(&h.cluster_name_on_cloud);
        if dirs.is_empty() {
            return Err(ProvisionError::other(format!(
                "local cluster {} has no nodes under {}",
                h.cluster_name,
                self.layout.root.display()
            ))
            .with_fix(format!(
                "run `sky down {}` and launch it again",
                h.cluster_name
            )));
        }
        for (rank, dir) in &dirs {
            // A notice belongs to the run it announced the end of.
            nodes::clear_notice(dir).map_err(|e| {
                ProvisionError::other(format!(
                    "start local node {rank} of {}: clear its preemption notice: {e}",
                    h.cluster_name
                ))
            })?;
            nodes::write_state(dir, STATE_RUNNING).map_err(|e| {
                ProvisionError::other(format!(
                    "start local node {rank} of {}: {e}",
                    h.cluster_name
                ))
            })?;
        }
        if h.use_spot {
            self.start_watchdog(&h.cluster_name_on_cloud);
        }
        Ok(())
    }

    async fn terminate_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check_name(&h.cluster_name_on_cloud)?;
        match self
            .remove_cluster(&self.layout.cluster_dir(&h.cluster_name_on_cloud))
            .await
        {
            None => Ok(()),
            Some(problem) => Err(ProvisionError::transient(
                FailureScope::Cloud,
                format!("terminate local cluster {}: {problem}", h.cluster_name),
            )),
        }
    }

    /// The deadline of the simulated preemption once its notice is due (from the nodes' notice
    /// files, or from their metadata when the watchdog has not written them yet), while some
    /// node is still running; `None` before the notice, after the preemption, and on
    /// clusters without a notice configured.
    async fn preemption_notice(&self, h: &ClusterHandle) -> Result<Option<i64>, ProvisionError> {
        self.check_name(&h.cluster_name_on_cloud)?;
        let now = process::now_unix();
        for (_, dir) in self.layout.node_dirs(&h.cluster_name_on_cloud) {
            let Some((state, since)) = nodes::read_state(&dir) else {
                continue;
            };
            if state != STATE_RUNNING {
                continue;
            }
            if let Some(deadline) = nodes::read_notice(&dir)
                && deadline as f64 >= since
            {
                return Ok(Some(deadline));
            }
            let Some(meta) = nodes::read_meta(&dir) else {
                continue;
            };
            if let Some(after) = meta.preempt_after_seconds
                && meta.preempt_notice_seconds > 0.0
                && now >= since + after - meta.preempt_notice_seconds
            {
                return Ok(Some((since + after).ceil() as i64));
            }
        }
        Ok(None)
    }

    async fn open_ports(
        &self,
        _h: &ClusterHandle,
        _ports: &[PortRange],
    ) -> Result<(), ProvisionError> {
        // Every port of a node's loopback address is reachable from this machine.
        Ok(())
    }

    fn command_runner(
        &self,
        h: &ClusterHandle,
        node: &InstanceInfo,
    ) -> Result<Arc<dyn CommandRunner>, ProvisionError> {
        self.check_name(&h.cluster_name_on_cloud)?;
        let home = self.layout.node_dir(&h.cluster_name_on_cloud, node.rank);
        let address: IpAddr = match node.internal_ip.parse() {
            Ok(a) => a,
            Err(_) => nodes::read_meta(&home)
                .and_then(|m| m.address.parse().ok())
                .ok_or_else(|| {
                    ProvisionError::other(format!(
                        "local node {} of {} does not exist",
                        node.rank, h.cluster_name
                    ))
                })?,
        };
        Ok(Arc::new(LocalRunner::new(home, address, node.rank)))
    }
}
