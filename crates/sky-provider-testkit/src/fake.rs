//! `FakeCloud`: an in-memory cloud. Nodes are records; each node's runner runs commands on this
//! machine with HOME = a directory of its own and a loopback address of its own.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, FailureScope, FeatureSet, InstanceInfo,
    InstanceState, Offering, OutputSink, ProvisionError, ProvisionErrorKind, ProvisionRequest,
    RunnerError,
};
use sky_spec::model::PortRange;
use tokio::io::AsyncReadExt;

pub const FAKE_CLOUD_ID: &str = "fake";
pub const FAKE_INSTANCE_TYPE: &str = "fake-1";
/// Every process a fake node starts carries this variable (= the node's home), so stop and
/// terminate find them.
const NODE_ENV: &str = "SKY_FAKE_CLOUD_NODE";

static NEXT_CLOUD: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Debug)]
struct FakeNode {
    rank: u32,
    ip: Ipv4Addr,
    state: InstanceState,
}

#[derive(Clone, Debug)]
struct FakeCluster {
    region: String,
    zone: String,
    use_spot: bool,
    nodes: Vec<FakeNode>,
}

#[derive(Debug, Default)]
struct Inner {
    clusters: BTreeMap<String, FakeCluster>,
    next_ip: u32,
}

/// An in-memory cloud with regions and zones, all features but docker and custom images (stop,
/// spot, multi-node, open ports). Node `r` of a cluster has HOME `<root>/<name>/node-<r>` and an
/// address in 127.90.0.0/16 (unique per `FakeCloud`).
#[derive(Debug)]
pub struct FakeCloud {
    id: String,
    root: PathBuf,
    regions: Vec<(String, Vec<String>)>,
    net: u8,
    inner: Mutex<Inner>,
}

impl FakeCloud {
    /// A fake cloud whose node directories live under `root` (created on demand), with regions
    /// `fake-1` (zones `fake-1a`, `fake-1b`) and `fake-2` (zone `fake-2a`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FakeCloud {
            id: FAKE_CLOUD_ID.into(),
            root: root.into(),
            regions: vec![
                ("fake-1".into(), vec!["fake-1a".into(), "fake-1b".into()]),
                ("fake-2".into(), vec!["fake-2a".into()]),
            ],
            net: (NEXT_CLOUD.fetch_add(1, Ordering::Relaxed) % 250) as u8,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Uses `id` instead of [`FAKE_CLOUD_ID`] (for a second fake cloud beside the first:
    /// failover to the next cloud).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Replaces the topology: `(region, zones)` pairs.
    #[must_use]
    pub fn with_regions(mut self, regions: Vec<(String, Vec<String>)>) -> Self {
        self.regions = regions;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Names of the clusters that exist.
    pub fn clusters(&self) -> Vec<String> {
        self.lock().clusters.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node_dir(&self, name: &str, rank: u32) -> PathBuf {
        self.root.join(name).join(format!("node-{rank}"))
    }

    fn check_name(name: &str) -> Result<(), ProvisionError> {
        let ok = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(())
        } else {
            Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                format!("cluster name on cloud {name:?} is not usable on the fake cloud"),
            )
            .with_fix("use letters, digits, '-', '_' and '.' only"))
        }
    }

    fn handle(&self, name: &str, c: &FakeCluster, cluster_name: &str) -> ClusterHandle {
        ClusterHandle {
            cloud: self.id.clone(),
            cluster_name: cluster_name.into(),
            cluster_name_on_cloud: name.into(),
            region: c.region.clone(),
            zone: Some(c.zone.clone()),
            num_nodes: c.nodes.len() as u32,
            instance_type: FAKE_INSTANCE_TYPE.into(),
            use_spot: c.use_spot,
            provider_config: serde_json::json!({ "root": self.root }),
        }
    }

    async fn kill_nodes(&self, name: &str) {
        let dir = self.root.join(name);
        kill_tagged(&dir).await;
    }
}

#[async_trait]
impl CloudProvider for FakeCloud {
    fn id(&self) -> &str {
        &self.id
    }

    fn features(&self) -> FeatureSet {
        FeatureSet {
            stop: true,
            spot: true,
            multi_node: true,
            open_ports: true,
            custom_image: false,
            docker: false,
            autostop: true,
            disk_tiers: true,
        }
    }

    fn offerings(&self) -> Vec<Offering> {
        self.regions
            .iter()
            .flat_map(|(r, zones)| {
                zones.iter().map(move |z| Offering {
                    cloud: self.id.clone(),
                    region: r.clone(),
                    zone: Some(z.clone()),
                    instance_type: FAKE_INSTANCE_TYPE.into(),
                    vcpus: 2.0,
                    memory_gib: 4.0,
                    accelerator: None,
                    price: 0.1,
                    spot_price: Some(0.03),
                })
            })
            .collect()
    }

    async fn run_instances(&self, req: &ProvisionRequest) -> Result<ClusterHandle, ProvisionError> {
        let name = &req.cluster_name_on_cloud;
        Self::check_name(name)?;
        if req.num_nodes == 0 {
            return Err(ProvisionError::invalid_config(
                FailureScope::Cloud,
                "num_nodes must be at least 1",
            )
            .with_fix("set num_nodes to 1 or more"));
        }
        if req.instance_type != FAKE_INSTANCE_TYPE {
            return Err(ProvisionError::not_supported(format!(
                "instance type {:?} on the fake cloud (its only type is {FAKE_INSTANCE_TYPE})",
                req.instance_type
            )));
        }
        let Some((_, zones)) = self.regions.iter().find(|(r, _)| *r == req.region) else {
            return Err(ProvisionError::invalid_config(
                FailureScope::Region,
                format!("region {:?} is not a fake cloud region", req.region),
            )
            .with_fix("pick one of the fake cloud's regions"));
        };
        let zone = match &req.zone {
            Some(z) if zones.contains(z) => z.clone(),
            Some(z) => {
                return Err(ProvisionError::invalid_config(
                    FailureScope::Zone,
                    format!("zone {z:?} is not in fake region {}", req.region),
                )
                .with_fix("pick a zone of the region"));
            }
            None => zones[0].clone(),
        };
        let existing = self.lock().clusters.get(name).cloned();
        if let Some(c) = existing {
            if c.nodes.len() != req.num_nodes as usize
                || c.region != req.region
                || req.zone.as_ref().is_some_and(|z| *z != c.zone)
            {
                return Err(ProvisionError::invalid_config(
                    FailureScope::Cloud,
                    format!(
                        "cluster {} already exists on the fake cloud with {} node(s) in {}/{}, which does not match the request ({} node(s) in {})",
                        req.cluster_name,
                        c.nodes.len(),
                        c.region,
                        c.zone,
                        req.num_nodes,
                        req.region
                    ),
                )
                .with_fix(format!("run `sky down {}` first", req.cluster_name)));
            }
            let h = self.handle(name, &c, &req.cluster_name);
            self.start_instances(&h).await?;
            return Ok(h);
        }
        let mut nodes = Vec::new();
        for rank in 0..req.num_nodes {
            let dir = self.node_dir(name, rank);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                let _ = std::fs::remove_dir_all(self.root.join(name));
                return Err(ProvisionError::other(format!(
                    "create fake node {}: {e}",
                    dir.display()
                )));
            }
            let mut g = self.lock();
            g.next_ip += 1;
            let n = g.next_ip;
            nodes.push(FakeNode {
                rank,
                ip: Ipv4Addr::new(127, 90, self.net, (n % 250 + 1) as u8),
                state: InstanceState::Running,
            });
        }
        let c = FakeCluster {
            region: req.region.clone(),
            zone,
            use_spot: req.use_spot,
            nodes,
        };
        let h = self.handle(name, &c, &req.cluster_name);
        self.lock().clusters.insert(name.clone(), c);
        Ok(h)
    }

    async fn query_instances(
        &self,
        h: &ClusterHandle,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        let g = self.lock();
        Ok(g.clusters
            .get(&h.cluster_name_on_cloud)
            .map(|c| {
                c.nodes
                    .iter()
                    .map(|n| InstanceInfo {
                        instance_id: format!("{}-{}", h.cluster_name_on_cloud, n.rank),
                        rank: n.rank,
                        internal_ip: n.ip.to_string(),
                        external_ip: None,
                        state: n.state,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn stop_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        if let Some(c) = self.lock().clusters.get_mut(&h.cluster_name_on_cloud) {
            c.nodes
                .iter_mut()
                .for_each(|n| n.state = InstanceState::Stopped);
        }
        self.kill_nodes(&h.cluster_name_on_cloud).await;
        Ok(())
    }

    async fn start_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        match self.lock().clusters.get_mut(&h.cluster_name_on_cloud) {
            Some(c) => {
                c.nodes
                    .iter_mut()
                    .for_each(|n| n.state = InstanceState::Running);
                Ok(())
            }
            None => Err(ProvisionError::other(format!(
                "fake cluster {} does not exist",
                h.cluster_name
            ))),
        }
    }

    async fn terminate_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        Self::check_name(&h.cluster_name_on_cloud)?;
        self.kill_nodes(&h.cluster_name_on_cloud).await;
        let dir = self.root.join(&h.cluster_name_on_cloud);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ProvisionError::transient(
                    FailureScope::Cloud,
                    format!("remove {}: {e}", dir.display()),
                ));
            }
        }
        self.lock().clusters.remove(&h.cluster_name_on_cloud);
        Ok(())
    }

    async fn open_ports(
        &self,
        _h: &ClusterHandle,
        _ports: &[PortRange],
    ) -> Result<(), ProvisionError> {
        Ok(())
    }

    fn command_runner(
        &self,
        h: &ClusterHandle,
        node: &InstanceInfo,
    ) -> Result<Arc<dyn CommandRunner>, ProvisionError> {
        let g = self.lock();
        let n = g
            .clusters
            .get(&h.cluster_name_on_cloud)
            .and_then(|c| c.nodes.iter().find(|n| n.rank == node.rank))
            .ok_or_else(|| {
                ProvisionError::new(
                    ProvisionErrorKind::Other,
                    FailureScope::Cloud,
                    format!(
                        "node {} of fake cluster {} does not exist",
                        node.rank, h.cluster_name
                    ),
                )
            })?;
        Ok(Arc::new(FakeRunner {
            home: self.node_dir(&h.cluster_name_on_cloud, n.rank),
            ip: IpAddr::V4(n.ip),
        }))
    }
}

/// The runner of a fake node: `bash -c` on this machine with HOME and cwd = the node directory.
#[derive(Clone, Debug)]
pub struct FakeRunner {
    home: PathBuf,
    ip: IpAddr,
}

impl FakeRunner {
    pub fn new(home: PathBuf, ip: IpAddr) -> Self {
        FakeRunner { home, ip }
    }

    fn resolve(&self, remote: &str) -> Result<PathBuf, RunnerError> {
        let rel = if remote == "~" || remote.is_empty() {
            ""
        } else if let Some(rest) = remote.strip_prefix("~/") {
            rest
        } else if Path::new(remote).is_absolute() {
            return Path::new(remote)
                .strip_prefix(&self.home)
                .map(|_| PathBuf::from(remote))
                .map_err(|_| RunnerError::InvalidPath {
                    path: remote.into(),
                    reason: "fake nodes only write under their home".into(),
                });
        } else {
            remote
        };
        Ok(self.home.join(rel))
    }

    fn command(
        &self,
        script: &str,
        env: &[(String, String)],
    ) -> Result<tokio::process::Command, RunnerError> {
        if !self.home.is_dir() {
            return Err(RunnerError::Unreachable(format!(
                "fake node {} does not exist",
                self.home.display()
            )));
        }
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .current_dir(&self.home)
            .env("HOME", &self.home)
            .env(NODE_ENV, &self.home)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        Ok(cmd)
    }
}

#[async_trait]
impl CommandRunner for FakeRunner {
    async fn run(
        &self,
        script: &str,
        env: &[(String, String)],
        sink: &mut OutputSink<'_>,
    ) -> Result<i32, RunnerError> {
        let merged = format!("exec 2>&1\n{script}");
        let mut cmd = self.command(&merged, env)?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| RunnerError::io("spawn bash on a fake node", e))?;
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| RunnerError::Other("no stdout".into()))?;
        let mut buf = vec![0u8; 8192];
        let mut status = None;
        loop {
            tokio::select! {
                n = out.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink(&buf[..n]),
                },
                s = child.wait(), if status.is_none() => {
                    status = Some(s.map_err(|e| RunnerError::io("wait for bash", e))?);
                    // Drain what is buffered; a background process may hold the pipe open.
                    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), out.read(&mut buf)).await {
                        if n == 0 { break; }
                        sink(&buf[..n]);
                    }
                    break;
                }
            }
        }
        let status = match status {
            Some(s) => s,
            None => child
                .wait()
                .await
                .map_err(|e| RunnerError::io("wait for bash", e))?,
        };
        Ok(exit_code(status))
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RunnerError> {
        let dst = self.resolve(remote)?;
        let meta = std::fs::symlink_metadata(local).map_err(|_| RunnerError::InvalidPath {
            path: local.display().to_string(),
            reason: "does not exist".into(),
        })?;
        let script = if meta.is_dir() {
            r#"mkdir -p "$2" && cp -a "$1/." "$2/""#
        } else if remote.ends_with('/') || dst.is_dir() {
            r#"mkdir -p "$2" && cp -a "$1" "$2/""#
        } else {
            r#"mkdir -p "$(dirname "$2")" && cp -a "$1" "$2""#
        };
        let status = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("upload")
            .arg(local)
            .arg(&dst)
            .status()
            .await
            .map_err(|e| RunnerError::io("run cp", e))?;
        if status.success() {
            Ok(())
        } else {
            Err(RunnerError::Other(format!(
                "copy {} to {} failed ({status})",
                local.display(),
                dst.display()
            )))
        }
    }

    async fn spawn_detached(
        &self,
        argv: &[String],
        env: &[(String, String)],
        log_file: &str,
    ) -> Result<u32, RunnerError> {
        let log = self.resolve(log_file)?;
        let script = r#"log=$1; shift; mkdir -p "$(dirname "$log")"; setsid "$@" >> "$log" 2>&1 < /dev/null & echo $!"#;
        let mut cmd = self.command(script, env)?;
        cmd.arg("spawn").arg(&log).args(argv);
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| RunnerError::io("spawn on a fake node", e))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                RunnerError::Other(format!(
                    "start {:?}: {}",
                    argv.first(),
                    String::from_utf8_lossy(&out.stderr)
                ))
            })
    }

    async fn forward_port(&self, remote_port: u16) -> Result<SocketAddr, RunnerError> {
        Ok(SocketAddr::new(self.ip, remote_port))
    }

    fn node_home(&self) -> Option<PathBuf> {
        Some(self.home.clone())
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// SIGTERM then SIGKILL to every process whose environment tags it with a node under `dir`.
async fn kill_tagged(dir: &Path) {
    let prefix = format!("{NODE_ENV}={}/", dir.display());
    let find = || -> Vec<i32> {
        let me = std::process::id() as i32;
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|b| *b == 0)
                        .any(|kv| kv.starts_with(prefix.as_bytes()))
                })
            })
            .collect()
    };
    for sig in ["TERM", "KILL"] {
        let pids = find();
        if pids.is_empty() {
            return;
        }
        let _ = tokio::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .args(pids.iter().map(|p| p.to_string()))
            .stderr(Stdio::null())
            .status()
            .await;
        for _ in 0..20 {
            if find().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
