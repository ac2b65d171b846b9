//! sky-cloud-ssh runs clusters on existing machines reached over SSH, as SkyPilot's SSH node
//! pools do. [`SshProvider`] (cloud id `ssh`) reads pools from `~/.sky/ssh_node_pools.yaml`
//! (parsed by `sky-spec`), treats each pool `p` as region `ssh-p` (`--infra ssh/p`), leases
//! hosts to clusters with lease files under the client's `~/.sky-rs/ssh/leases` (two clusters never
//! share a host), checks hosts are reachable before handing them out, and detects their CPUs,
//! memory and GPUs (`sky_provider::gpu`, the catalog's names). Its nodes' runners are the SSH
//! runtime's (`sky-ssh`'s [`SshRunner`], re-exported here). It must not depend on another cloud
//! crate, on `sky-launch` or on `sky-state`, must not know YAML itself, and only ever connects to
//! the hosts its pools list.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, FailureScope, FeatureSet, InstanceInfo,
    InstanceState, Offering, ProvisionError, ProvisionErrorKind, ProvisionRequest,
};
use sky_spec::ssh_pools::{SshHost, SshPool, parse_ssh_node_pools};

pub use sky_ssh::{CLUSTER_MARKER_ENV, SshRunner, SshTarget, default_control_dir, shell_quote};

/// The provider id.
pub const SSH_CLOUD_ID: &str = "ssh";
/// The instance type of every SSH node (a whole existing machine).
pub const SSH_INSTANCE_TYPE: &str = "ssh-node";
/// The file the pools are read from, under the client's `~/.sky`.
pub const POOLS_FILE: &str = "ssh_node_pools.yaml";
/// Default limit for reaching a host.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// What a host offers, as detected over SSH (cached under `~/.sky-rs/ssh/capacity`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostCapacity {
    pub vcpus: f64,
    pub memory_gib: f64,
    /// Canonical accelerator name and count.
    pub accelerator: Option<(String, f64)>,
}

/// One pool as [`SshProvider::pools_summary`] reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSummary {
    pub pool: String,
    pub hosts: usize,
    /// Hosts no cluster holds (a cluster holds its hosts whole).
    pub free_hosts: usize,
    /// Per host (the pool's smallest host's); `None` until detected (`sky check ssh`).
    pub capacity: Option<HostCapacity>,
}

/// A pool's capacity as cached, with the hosts (`ip:port`) it was detected on.
#[derive(Serialize, Deserialize)]
struct CachedCapacity {
    hosts: Vec<String>,
    capacity: HostCapacity,
}

fn host_keys(pool: &SshPool) -> Vec<String> {
    pool.hosts
        .iter()
        .map(|h| format!("{}:{}", h.ip, h.port))
        .collect()
}

/// The SSH node pools cloud.
#[derive(Debug)]
pub struct SshProvider {
    pools: Vec<SshPool>,
    /// The client's `~/.sky` (leases, capacity cache).
    sky_dir: PathBuf,
    /// The client's home (expands `~` in pool paths).
    home: PathBuf,
    control_dir: PathBuf,
    connect_timeout: Duration,
}

/// Errors loading the pools file.
#[derive(Debug)]
pub struct PoolsError(pub String);

impl std::fmt::Display for PoolsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PoolsError {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Lease {
    cluster_name_on_cloud: String,
    cluster_name: String,
    pool: String,
    ip: String,
    port: u16,
    rank: u32,
}

impl SshProvider {
    /// A provider over `pools`; `sky_dir` is the client's `~/.sky`, `home` its home directory.
    pub fn new(pools: Vec<SshPool>, sky_dir: PathBuf, home: PathBuf) -> Self {
        let control_dir = default_control_dir();
        SshProvider {
            pools,
            sky_dir,
            home,
            control_dir,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// Reads `<sky_dir>/ssh_node_pools.yaml` and keeps leases and capacity under the same
    /// directory; `Ok(None)` when the file does not exist.
    pub fn from_sky_dir(sky_dir: &Path, home: &Path) -> Result<Option<Self>, PoolsError> {
        Self::from_dirs(sky_dir, sky_dir, home)
    }

    /// Reads `<config_dir>/ssh_node_pools.yaml` (SkyPilot's file, never written) and keeps
    /// sky-rs's own leases and capacity cache under `state_dir`; `Ok(None)` when the pools file
    /// does not exist.
    pub fn from_dirs(
        config_dir: &Path,
        state_dir: &Path,
        home: &Path,
    ) -> Result<Option<Self>, PoolsError> {
        let path = config_dir.join(POOLS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PoolsError(format!("read {}: {e}", path.display()))),
        };
        let pools = parse_ssh_node_pools(&text)
            .map_err(|d| PoolsError(format!("invalid {}: {d}", path.display())))?;
        Ok(Some(Self::new(
            pools,
            state_dir.to_owned(),
            home.to_owned(),
        )))
    }

    #[must_use]
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Uses `dir` for ControlMaster sockets (keep it short).
    #[must_use]
    pub fn with_control_dir(mut self, dir: PathBuf) -> Self {
        self.control_dir = dir;
        self
    }

    pub fn pools(&self) -> &[SshPool] {
        &self.pools
    }

    /// The pool of a region: `ssh-<pool>` (SkyPilot's region name for `--infra ssh/<pool>`) or
    /// the bare pool name.
    fn pool(&self, region: &str) -> Result<&SshPool, ProvisionError> {
        let name = region
            .strip_prefix("ssh-")
            .filter(|b| self.pools.iter().any(|p| p.name == *b))
            .unwrap_or(region);
        self.pools.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
            ProvisionError::invalid_config(
                FailureScope::Region,
                format!(
                    "ssh node pool {name:?} is not in ~/.sky/{POOLS_FILE} (pools: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
            .with_fix(format!(
                "add it to ~/.sky/{POOLS_FILE} or use --infra ssh/<pool> with a listed pool"
            ))
        })
    }

    fn expand(&self, p: &str) -> PathBuf {
        if p == "~" {
            self.home.clone()
        } else if let Some(rest) = p.strip_prefix("~/") {
            self.home.join(rest)
        } else {
            PathBuf::from(p)
        }
    }

    /// How to reach `host`.
    pub fn target(&self, host: &SshHost) -> SshTarget {
        SshTarget {
            ip: host.ip.clone(),
            port: host.port,
            user: host.user.clone(),
            identity_file: host.identity_file.as_deref().map(|p| self.expand(p)),
            known_hosts_file: Some(
                host.known_hosts_file
                    .as_deref()
                    .map(|p| self.expand(p))
                    .unwrap_or_else(|| self.sky_dir.join("ssh").join("known_hosts")),
            ),
            strict_host_key_checking: host
                .strict_host_key_checking
                .clone()
                .unwrap_or_else(|| "accept-new".into()),
            control_dir: self.control_dir.clone(),
            connect_timeout: self.connect_timeout,
        }
    }

    fn leases_dir(&self, pool: &str) -> PathBuf {
        self.sky_dir.join("ssh").join("leases").join(pool)
    }

    fn lease_path(&self, pool: &str, host: &SshHost) -> PathBuf {
        self.leases_dir(pool)
            .join(format!("{}_{}", host.ip, host.port))
    }

    fn capacity_path(&self, pool: &str) -> PathBuf {
        self.sky_dir
            .join("ssh")
            .join("capacity")
            .join(format!("{pool}.json"))
    }

    /// Every lease of a cluster, in rank order.
    fn leases_of(&self, cluster_name_on_cloud: &str) -> Vec<Lease> {
        let mut out: Vec<Lease> = self
            .pools
            .iter()
            .flat_map(|p| {
                std::fs::read_dir(self.leases_dir(&p.name))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .filter_map(|e| serde_json::from_slice::<Lease>(&std::fs::read(e.path()).ok()?).ok())
            .filter(|l| l.cluster_name_on_cloud == cluster_name_on_cloud)
            .collect();
        out.sort_by_key(|l| l.rank);
        out
    }

    fn host_of(&self, lease: &Lease) -> Option<&SshHost> {
        self.pools
            .iter()
            .find(|p| p.name == lease.pool)?
            .hosts
            .iter()
            .find(|h| h.ip == lease.ip && h.port == lease.port)
    }

    /// Takes a lease on `host` for the cluster; false when another cluster holds it.
    fn try_lease(&self, pool: &str, host: &SshHost, lease: &Lease) -> Result<bool, ProvisionError> {
        let dir = self.leases_dir(pool);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ProvisionError::other(format!("create {}: {e}", dir.display())))?;
        let path = self.lease_path(pool, host);
        let body = serde_json::to_vec(lease).unwrap_or_default();
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(&body).map_err(|e| {
                    let _ = std::fs::remove_file(&path);
                    ProvisionError::other(format!("write {}: {e}", path.display()))
                })?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A lease file still being written, or unreadable, counts as taken.
                Ok(false)
            }
            Err(e) => Err(ProvisionError::other(format!(
                "create {}: {e}",
                path.display()
            ))),
        }
    }

    fn release(&self, leases: &[Lease]) {
        for l in leases {
            let _ = std::fs::remove_file(
                self.leases_dir(&l.pool)
                    .join(format!("{}_{}", l.ip, l.port)),
            );
        }
    }

    fn handle(&self, req: &ProvisionRequest, leases: &[Lease]) -> ClusterHandle {
        ClusterHandle {
            cloud: SSH_CLOUD_ID.into(),
            cluster_name: req.cluster_name.clone(),
            cluster_name_on_cloud: req.cluster_name_on_cloud.clone(),
            region: req.region.clone(),
            zone: None,
            num_nodes: leases.len() as u32,
            instance_type: SSH_INSTANCE_TYPE.into(),
            use_spot: false,
            provider_config: serde_json::json!({
                "pool": req.region,
                "hosts": leases.iter().map(|l| format!("{}:{}", l.ip, l.port)).collect::<Vec<_>>(),
            }),
        }
    }

    /// Checks that `host` answers over SSH and detects its capacity. Errors name the host.
    async fn probe(&self, pool: &str, host: &SshHost) -> Result<HostCapacity, ProvisionError> {
        let target = self.target(host);
        // One round trip: CPUs, memory, then the GPU probe every cloud shares.
        let script = format!(
            "nproc 2>/dev/null || echo 1; awk '/MemTotal/ {{print $2}}' /proc/meminfo 2>/dev/null; ( {} ); true",
            sky_provider::gpu::PROBE_SCRIPT
        );
        let res = tokio::time::timeout(
            self.connect_timeout + Duration::from_secs(10),
            target.output(&script),
        )
        .await;
        let (code, out) = match res {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => (255, e.to_string()),
            Err(_) => (255, "timed out".into()),
        };
        if code == 0 {
            return Ok(parse_capacity(&out));
        }
        let who = format!(
            "host {}{} of ssh node pool {pool}",
            host.ip,
            if host.port == 22 {
                String::new()
            } else {
                format!(":{}", host.port)
            }
        );
        let detail = out.trim().lines().last().unwrap_or("").to_owned();
        let auth = [
            "Permission denied",
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION",
        ]
        .iter()
        .any(|s| out.contains(s));
        Err(if auth {
            ProvisionError::invalid_config(
                FailureScope::Region,
                format!("cannot log in to {who}: {detail}"),
            )
            .with_fix(format!(
                "check user, identity_file and the host key of {} in ~/.sky/{POOLS_FILE}",
                host.ip
            ))
        } else {
            ProvisionError::capacity(
                FailureScope::Region,
                format!("{who} is unreachable: {detail}"),
            )
            .with_fix(format!(
                "bring {} back (or remove it from ~/.sky/{POOLS_FILE}) and launch again",
                host.ip
            ))
        })
    }

    /// Probes the hosts of every pool (with `only_uncached`, of the pools whose capacity has
    /// not been detected yet), all in parallel, and caches each pool's capacity (its smallest
    /// host's CPUs, memory and GPUs, which its offering then advertises) when every host of
    /// the pool answered. Returns the failures, each naming its host; nothing is started on
    /// any host.
    pub async fn detect_capacity(&self, only_uncached: bool) -> Vec<ProvisionError> {
        let pools: Vec<&SshPool> = self
            .pools
            .iter()
            .filter(|p| !only_uncached || self.cached_capacity(p).is_none())
            .collect();
        let per_pool = join_all(pools.iter().map(|pool| async move {
            join_all(pool.hosts.iter().map(|h| self.probe(&pool.name, h))).await
        }))
        .await;
        let mut failures = Vec::new();
        for (pool, results) in pools.iter().zip(per_pool) {
            let (caps, errs): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
            if errs.is_empty() {
                let caps: Vec<HostCapacity> = caps.into_iter().flatten().collect();
                if let Some(cap) = min_capacity(&caps) {
                    self.save_capacity(pool, &cap);
                }
            }
            failures.extend(errs.into_iter().filter_map(Result::err));
        }
        failures
    }

    /// Each pool's hosts, how many no cluster holds, and its detected per-host capacity (what
    /// `sky show-gpus --infra ssh` lists); reads only local files.
    pub fn pools_summary(&self) -> Vec<PoolSummary> {
        self.pools
            .iter()
            .map(|p| PoolSummary {
                pool: p.name.clone(),
                hosts: p.hosts.len(),
                free_hosts: p
                    .hosts
                    .iter()
                    .filter(|h| !self.lease_path(&p.name, h).exists())
                    .count(),
                capacity: self.cached_capacity(p),
            })
            .collect()
    }

    /// Caches a pool's capacity, with the hosts it was detected on.
    fn save_capacity(&self, pool: &SshPool, cap: &HostCapacity) {
        let path = self.capacity_path(&pool.name);
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let cached = CachedCapacity {
            hosts: host_keys(pool),
            capacity: cap.clone(),
        };
        let _ = std::fs::write(&path, serde_json::to_vec(&cached).unwrap_or_default());
    }

    /// A pool's cached capacity, unless its hosts changed since it was detected.
    fn cached_capacity(&self, pool: &SshPool) -> Option<HostCapacity> {
        let cached: CachedCapacity =
            serde_json::from_slice(&std::fs::read(self.capacity_path(&pool.name)).ok()?).ok()?;
        (cached.hosts == host_keys(pool)).then_some(cached.capacity)
    }

    /// Kills the cluster's processes on a host and removes what sky put in the home.
    async fn clean_host(&self, host: &SshHost, cluster: &str) -> Result<(), String> {
        let marker = format!("{CLUSTER_MARKER_ENV}={cluster}");
        let script = format!(
            r#"M={m}
k() {{ n=0; for p in /proc/[0-9]*; do pid=${{p#/proc/}}; [ "$pid" = "$$" ] && continue
  if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qxF -- "$M"; then kill -$1 "$pid" 2>/dev/null && n=$((n+1)); fi; done; echo $n; }}
if [ "$(k TERM)" != 0 ]; then for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.2; [ "$(k 0)" = 0 ] && break; done; k KILL >/dev/null; fi
cd ~ && rm -rf .sky sky_workdir sky_logs
true"#,
            m = shell_quote(&marker)
        );
        let target = self.target(host);
        match tokio::time::timeout(Duration::from_secs(60), target.output(&script)).await {
            Ok(Ok((0, _))) => Ok(()),
            Ok(Ok((code, out))) => Err(format!("host {}: exit {code}: {}", host.ip, out.trim())),
            Ok(Err(e)) => Err(format!("host {}: {e}", host.ip)),
            Err(_) => Err(format!("host {}: cleanup timed out", host.ip)),
        }
    }
}

/// The region name of a pool (`ssh-<pool>`, as SkyPilot names `--infra ssh/<pool>`).
pub fn region_of(pool: &str) -> String {
    format!("ssh-{pool}")
}

/// Parses the probe's output: `nproc`, MemTotal in KiB, then what
/// `sky_provider::gpu::PROBE_SCRIPT` printed; the accelerator is the most numerous GPU, by the
/// catalog's name.
pub fn parse_capacity(out: &str) -> HostCapacity {
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    let vcpus = lines.next().and_then(|l| l.parse().ok()).unwrap_or(1.0);
    let memory_gib = lines
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    let rest: Vec<&str> = lines.collect();
    let gpus =
        sky_provider::gpu::count_gpus(&sky_provider::gpu::parse_probe_output(&rest.join("\n")));
    HostCapacity {
        vcpus,
        memory_gib,
        accelerator: gpus
            .into_iter()
            .next()
            .map(|(name, n)| (name, f64::from(n))),
    }
}

pub use sky_provider::gpu::canonical_gpu_name;

/// Releases leases taken by `run_instances` unless it succeeded (also when it is cancelled).
struct LeaseGuard<'a> {
    p: &'a SshProvider,
    leases: Vec<Lease>,
    keep: bool,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.p.release(&self.leases);
        }
    }
}

#[async_trait]
impl CloudProvider for SshProvider {
    fn id(&self) -> &str {
        SSH_CLOUD_ID
    }

    fn features(&self) -> FeatureSet {
        // No stop, spot, ports or images; no autostop (a head cannot release the leases).
        sky_clouds::SSH.features
    }

    fn offerings(&self) -> Vec<Offering> {
        self.pools
            .iter()
            .map(|p| {
                let cap = self.cached_capacity(p).unwrap_or(HostCapacity {
                    vcpus: 1.0,
                    memory_gib: 1.0,
                    accelerator: None,
                });
                Offering {
                    cloud: SSH_CLOUD_ID.into(),
                    region: region_of(&p.name),
                    zone: None,
                    instance_type: SSH_INSTANCE_TYPE.into(),
                    vcpus: cap.vcpus,
                    memory_gib: cap.memory_gib,
                    accelerator: cap.accelerator,
                    price: 0.0,
                    spot_price: None,
                }
            })
            .collect()
    }

    /// Logs in to every host of every pool and detects its capacity (see
    /// [`SshProvider::detect_capacity`]); every host that failed is named in the error.
    async fn check_credentials(&self) -> Result<(), ProvisionError> {
        combined(&self.detect_capacity(false).await).map_or(Ok(()), Err)
    }

    async fn run_instances(&self, req: &ProvisionRequest) -> Result<ClusterHandle, ProvisionError> {
        let pool = self.pool(&req.region)?;
        if req.num_nodes == 0 {
            return Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                "num_nodes must be at least 1",
            )
            .with_fix("set num_nodes to 1 or more"));
        }
        if req.use_spot {
            return Err(ProvisionError::not_supported(
                "spot nodes on ssh node pools (existing machines)",
            ));
        }
        if req.instance_type != SSH_INSTANCE_TYPE {
            return Err(ProvisionError::not_supported(format!(
                "instance type {:?} on ssh node pools (its only type is {SSH_INSTANCE_TYPE})",
                req.instance_type
            )));
        }
        if let Some(z) = &req.zone {
            return Err(ProvisionError::invalid_config(
                FailureScope::Zone,
                format!("ssh node pools have no zones (asked for zone {z:?})"),
            )
            .with_fix("leave the zone out"));
        }
        let existing = self.leases_of(&req.cluster_name_on_cloud);
        if !existing.is_empty() {
            if existing.len() != req.num_nodes as usize || existing[0].pool != pool.name {
                return Err(ProvisionError::invalid_config(
                    FailureScope::Cloud,
                    format!(
                        "cluster {} already exists on ssh pool {} with {} node(s), which does not match the request ({} node(s) on pool {})",
                        req.cluster_name, existing[0].pool, existing.len(), req.num_nodes, pool.name
                    ),
                )
                .with_fix(format!("run `sky down {}` first, or launch with the cluster's resources", req.cluster_name)));
            }
            return Ok(self.handle(req, &existing));
        }
        let mut guard = LeaseGuard {
            p: self,
            leases: Vec::new(),
            keep: false,
        };
        let mut hosts = Vec::new();
        for host in &pool.hosts {
            if guard.leases.len() == req.num_nodes as usize {
                break;
            }
            let lease = Lease {
                cluster_name_on_cloud: req.cluster_name_on_cloud.clone(),
                cluster_name: req.cluster_name.clone(),
                pool: pool.name.clone(),
                ip: host.ip.clone(),
                port: host.port,
                rank: guard.leases.len() as u32,
            };
            if self.try_lease(&pool.name, host, &lease)? {
                guard.leases.push(lease);
                hosts.push(host);
            }
        }
        if guard.leases.len() < req.num_nodes as usize {
            return Err(ProvisionError::capacity(
                FailureScope::Region,
                format!(
                    "ssh node pool {} has {} free host(s) of {}; cluster {} needs {}",
                    pool.name,
                    guard.leases.len(),
                    pool.hosts.len(),
                    req.cluster_name,
                    req.num_nodes
                ),
            )
            .with_fix("add hosts to the pool or `sky down` a cluster that uses it"));
        }
        // Every host must answer, in parallel and fast; on failure nothing has been started
        // on any host, and the leases are released by the guard.
        let results = join_all(hosts.iter().map(|h| self.probe(&pool.name, h))).await;
        let mut caps = Vec::new();
        let mut failures = Vec::new();
        for r in results {
            match r {
                Ok(c) => caps.push(c),
                Err(e) => failures.push(e),
            }
        }
        if let Some(e) = combined(&failures) {
            return Err(e);
        }
        // The pool's capacity is its smallest host's: only a probe of all of them may
        // refresh it (a few leased hosts may have more than the others).
        if hosts.len() == pool.hosts.len()
            && let Some(cap) = min_capacity(&caps)
        {
            self.save_capacity(pool, &cap);
        }
        guard.keep = true;
        Ok(self.handle(req, &guard.leases))
    }

    async fn wait_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        let leases = self.leases_of(&h.cluster_name_on_cloud);
        if leases.len() != h.num_nodes as usize {
            return Err(ProvisionError::other(format!(
                "ssh cluster {} holds {} of {} hosts",
                h.cluster_name,
                leases.len(),
                h.num_nodes
            )));
        }
        Ok(())
    }

    async fn query_instances(
        &self,
        h: &ClusterHandle,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        Ok(self
            .leases_of(&h.cluster_name_on_cloud)
            .into_iter()
            .map(|l| InstanceInfo {
                instance_id: format!("{}/{}:{}", l.pool, l.ip, l.port),
                rank: l.rank,
                internal_ip: l.ip.clone(),
                external_ip: Some(l.ip),
                state: InstanceState::Running,
            })
            .collect())
    }

    async fn terminate_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        let leases = self.leases_of(&h.cluster_name_on_cloud);
        let cleanups = leases.iter().map(|l| async move {
            match self.host_of(l) {
                Some(host) => self.clean_host(host, &h.cluster_name_on_cloud).await,
                // The host left the pools file: nothing to reach; forget the lease.
                None => Ok(()),
            }
        });
        let results = join_all(cleanups).await;
        let mut problems = Vec::new();
        let mut done = Vec::new();
        for (l, r) in leases.iter().zip(results) {
            match r {
                Ok(()) => done.push(l.clone()),
                Err(e) => problems.push(e),
            }
        }
        self.release(&done);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ProvisionError::transient(
                FailureScope::Cloud,
                format!(
                    "terminate ssh cluster {}: could not clean {}",
                    h.cluster_name,
                    problems.join("; ")
                ),
            )
            .with_fix(format!(
                "bring the hosts back and run `sky down {}` again (or `sky down -p` to forget them)",
                h.cluster_name
            )))
        }
    }

    fn command_runner(
        &self,
        h: &ClusterHandle,
        node: &InstanceInfo,
    ) -> Result<Arc<dyn CommandRunner>, ProvisionError> {
        let lease = self
            .leases_of(&h.cluster_name_on_cloud)
            .into_iter()
            .find(|l| l.rank == node.rank)
            .ok_or_else(|| {
                ProvisionError::other(format!(
                    "node {} of ssh cluster {} does not exist",
                    node.rank, h.cluster_name
                ))
            })?;
        let host = self.host_of(&lease).ok_or_else(|| {
            ProvisionError::invalid_config(
                FailureScope::Cloud,
                format!(
                    "host {} of cluster {} is no longer in ssh node pool {}",
                    lease.ip, h.cluster_name, lease.pool
                ),
            )
            .with_fix(format!(
                "restore it in ~/.sky/{POOLS_FILE} or `sky down -p {}`",
                h.cluster_name
            ))
        })?;
        Ok(Arc::new(SshRunner::new(
            self.target(host),
            h.cluster_name_on_cloud.clone(),
        )))
    }
}

/// Hosts' failures as one error naming every host: a refused login (`InvalidConfig`, which
/// stops failover) wins over an unreachable host; `None` when there is none.
fn combined(failures: &[ProvisionError]) -> Option<ProvisionError> {
    let first = failures.first()?;
    let base = failures
        .iter()
        .find(|e| e.kind == ProvisionErrorKind::InvalidConfig)
        .unwrap_or(first)
        .clone();
    let message = failures
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Some(ProvisionError { message, ..base })
}

fn min_capacity(caps: &[HostCapacity]) -> Option<HostCapacity> {
    let first = caps.first()?.clone();
    Some(caps.iter().skip(1).fold(first, |a, c| HostCapacity {
        vcpus: a.vcpus.min(c.vcpus),
        memory_gib: a.memory_gib.min(c.memory_gib),
        accelerator: match (&a.accelerator, &c.accelerator) {
            (Some((n1, c1)), Some((n2, c2))) if n1 == n2 => Some((n1.clone(), c1.min(*c2))),
            _ => None,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_from_probe_output() {
        let c = parse_capacity(
            "8\n16314200\n0, NVIDIA A100-SXM4-80GB, 81920 MiB\n1, NVIDIA A100-SXM4-80GB, 81920 MiB\n",
        );
        assert_eq!(c.vcpus, 8.0);
        assert!((c.memory_gib - 15.6).abs() < 0.01, "{}", c.memory_gib);
        assert_eq!(c.accelerator, Some(("A100-80GB".into(), 2.0)));
        assert_eq!(parse_capacity("2\n1000000\n").accelerator, None);
        assert_eq!(canonical_gpu_name("Tesla T4"), "T4");
        assert_eq!(canonical_gpu_name("NVIDIA H100 80GB HBM3"), "H100");
        // Both clouds name a GeForce card alike (this parser once said `RTX`).
        let c = parse_capacity("4\n1000000\n0, NVIDIA GeForce RTX 4090, 24564 MiB\n");
        assert_eq!(c.accelerator, Some(("RTX4090".into(), 1.0)));
        // The shared probe's formats: name and memory (sized by memory), or `nvidia-smi -L`.
        let c = parse_capacity(
            "8\n1000000\nNVIDIA A100-SXM4-40GB, 40960 MiB\nNVIDIA A100-SXM4-40GB, 40960 MiB\n",
        );
        assert_eq!(c.accelerator, Some(("A100".into(), 2.0)));
        let c = parse_capacity("8\n1000000\nGPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-2a03)\n");
        assert_eq!(c.accelerator, Some(("H100".into(), 1.0)));
    }

    #[test]
    fn cached_capacity_is_offered_until_the_pool_changes() {
        let dir = tempfile::tempdir().unwrap();
        let pools = |yaml: &str| parse_ssh_node_pools(yaml).unwrap();
        let two = "lab:\n  user: sky\n  hosts: [10.200.0.2, 10.200.0.3]\n";
        let p = SshProvider::new(pools(two), dir.path().into(), dir.path().into());
        let offered = |p: &SshProvider| p.offerings()[0].accelerator.clone();
        assert_eq!(offered(&p), None, "nothing detected yet");
        let cap = HostCapacity {
            vcpus: 8.0,
            memory_gib: 15.6,
            accelerator: Some(("H100".into(), 2.0)),
        };
        p.save_capacity(&p.pools[0], &cap);
        assert_eq!(offered(&p), Some(("H100".into(), 2.0)));
        assert_eq!(p.offerings()[0].vcpus, 8.0);
        // The same pool read again keeps it; a host added means detecting again.
        let again = SshProvider::new(pools(two), dir.path().into(), dir.path().into());
        assert_eq!(offered(&again), Some(("H100".into(), 2.0)));
        let three = "lab:\n  user: sky\n  hosts: [10.200.0.2, 10.200.0.3, 10.200.0.4]\n";
        let grown = SshProvider::new(pools(three), dir.path().into(), dir.path().into());
        assert_eq!(offered(&grown), None);
        assert!(grown.cached_capacity(&grown.pools[0]).is_none());
        // The summary counts hosts without a lease as free.
        let lease = Lease {
            cluster_name_on_cloud: "c-1".into(),
            cluster_name: "c".into(),
            pool: "lab".into(),
            ip: "10.200.0.3".into(),
            port: 22,
            rank: 0,
        };
        assert!(p.try_lease("lab", &p.pools[0].hosts[1], &lease).unwrap());
        assert_eq!(
            p.pools_summary(),
            vec![PoolSummary {
                pool: "lab".into(),
                hosts: 2,
                free_hosts: 1,
                capacity: Some(cap),
            }]
        );
    }
}
