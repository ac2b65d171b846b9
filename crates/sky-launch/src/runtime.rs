//! The runtime on provisioned nodes: starting the agents, syncing the workdir and local file
//! mounts, checking that a task fits an existing cluster.

use std::{net::SocketAddr, time::Duration};

use sky_agent::{AgentClient, Token};
use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, InstanceInfo, SELF_STOP_FILE, SelfStopFile,
};
use sky_spec::{FileMount, Task, Workdir};
use sky_state::ClusterRecord;

use crate::{Backend, Events, LaunchError, LaunchEvent, StoredHandle, failover::fmt_count};

const AGENT_START_TIMEOUT: Duration = Duration::from_secs(15);
use crate::binary::REMOTE_SKY_BINARY;

async fn run_quiet(runner: &dyn CommandRunner, script: &str) -> Result<(i32, String), String> {
    let mut out = Vec::new();
    let code = runner
        .run(script, &[], &mut |b: &[u8]| out.extend_from_slice(b))
        .await
        .map_err(|e| e.to_string())?;
    Ok((code, String::from_utf8_lossy(&out).into_owned()))
}

/// Starts the agent on every node (workers first, then the head with the cluster file) and
/// returns the handle with the head agent's address.
pub(crate) async fn start_agents(
    backend: &Backend,
    cluster: &str,
    handle: ClusterHandle,
    base: &StoredHandle,
    ev: &dyn Events,
) -> Result<StoredHandle, LaunchError> {
    let p = backend.provider(&handle.cloud)?;
    let nodes = p.query_instances(&handle).await.map_err(|e| {
        LaunchError::provider(format!("failed to list the nodes of `{cluster}`: {e}"))
            .with_provision(e)
    })?;
    if nodes.is_empty() {
        return Err(LaunchError::provider(format!(
            "cluster `{cluster}` has no nodes at its provider"
        )));
    }
    ev.event(&LaunchEvent::StartingAgents {
        cluster: cluster.to_string(),
        nodes: nodes.len(),
    });
    // Per-node capacity as the provider offers it in this zone.
    let offering = p.offerings().into_iter().find(|o| {
        o.region == handle.region
            && (handle.zone.is_none() || o.zone == handle.zone)
            && o.instance_type == handle.instance_type
    });
    // A fresh cluster token for these agents: written to a private local file and uploaded to
    // every node (never put on a command line), kept in the client's state.
    let token = Token::generate().map_err(|e| LaunchError::io(e.to_string()))?;
    let token_dir = tempfile::tempdir().map_err(|e| {
        LaunchError::io(format!(
            "create a private directory for the cluster token: {e}"
        ))
    })?;
    let token_file = token_dir.path().join("agent.token");
    token
        .save(&token_file)
        .map_err(|e| LaunchError::io(e.to_string()))?;
    let mut agent_addrs: Vec<Option<SocketAddr>> = vec![None; nodes.len()];
    let mut runners = Vec::with_capacity(nodes.len());
    for node in &nodes {
        runners.push(p.command_runner(&handle, node).map_err(|e| {
            LaunchError::runtime(format!(
                "no runner for node {} of `{cluster}`: {e}{}",
                node.rank,
                e.fix
                    .as_deref()
                    .map(|f| format!("\nTo fix: {f}"))
                    .unwrap_or_default()
            ))
            .with_provision(e)
        })?);
    }
    // The `sky` binary to every remote node before any agent starts: once from here to the
    // head (compressed), from the head to the workers (see `crate::binary`).
    crate::binary::send_to_nodes(backend, &nodes, &runners)
        .await
        .map_err(|e| {
            LaunchError::runtime(format!(
                "failed to put the sky binary on the nodes of `{cluster}`: {e}; `sky down {cluster}` cleans up"
            ))
        })?;
    let starter = NodeStarter {
        backend,
        cluster,
        p: p.as_ref(),
        handle: &handle,
        token_file: &token_file,
        private_dir: token_dir.path(),
    };
    // Workers first, all at once (uploads and agent starts overlap); then the head, which
    // needs their addresses.
    let workers = futures_util::future::join_all(
        nodes
            .iter()
            .zip(&runners)
            .skip(1)
            .map(|(node, runner)| starter.start(node, runner.as_ref(), None)),
    )
    .await;
    for (i, addr) in workers.into_iter().enumerate() {
        agent_addrs[i + 1] = Some(addr?);
    }
    let cluster_file = cluster_file_json(cluster, &handle, &nodes, &agent_addrs, offering.as_ref());
    agent_addrs[0] = Some(
        starter
            .start(&nodes[0], runners[0].as_ref(), Some(&cluster_file))
            .await?,
    );
    let head_addr = agent_addrs[0].ok_or_else(|| {
        LaunchError::runtime(format!("the head agent of `{cluster}` did not start"))
    })?;
    // The CLI reaches the head agent through the runner (a forward for remote nodes).
    let reachable = runners[0]
        .forward_port(head_addr.port())
        .await
        .map_err(|e| agent_start_err(cluster, &nodes[0], &e.to_string()))?;
    AgentClient::connect(reachable, token.clone())
        .await
        .map_err(|e| agent_start_err(cluster, &nodes[0], &e.to_string()))?;
    Ok(StoredHandle {
        agent_addr: Some(reachable.to_string()),
        agent_token: Some(token.expose().to_string()),
        ips: nodes.iter().map(|n| n.internal_ip.clone()).collect(),
        node_accelerators: offering
            .as_ref()
            .and_then(|o| o.accelerator.clone())
            .or_else(|| base.node_accelerators.clone()),
        launched_resources: base.launched_resources.clone(),
        ports: base.ports.clone(),
        provider: handle,
    })
}

/// Starts one node's agent: clears its old agent files, uploads the cluster token (and, to a
/// remote node, this `sky` binary), starts `sky agent serve`, and waits for its address.
struct NodeStarter<'a> {
    backend: &'a Backend,
    cluster: &'a str,
    p: &'a dyn CloudProvider,
    handle: &'a ClusterHandle,
    token_file: &'a std::path::Path,
    /// A private directory for files the head gets (see [`give_head_self_stop`]).
    private_dir: &'a std::path::Path,
}

impl NodeStarter<'_> {
    /// `cluster_file` is the head's (`None` for a worker).
    async fn start(
        &self,
        node: &InstanceInfo,
        runner: &dyn CommandRunner,
        cluster_file: Option<&str>,
    ) -> Result<SocketAddr, LaunchError> {
        let cluster = self.cluster;
        let head = cluster_file.is_some();
        let err = |detail: &str| agent_start_err(cluster, node, detail);
        if let Some(cluster_file) = cluster_file {
            // Written whole, then renamed: a reader never sees half a file.
            let script = format!(
                "umask 077 && mkdir -p ~/.sky && cat > ~/.sky/cluster.json.$$ <<'SKY_CLUSTER_EOF'\n{cluster_file}\nSKY_CLUSTER_EOF\nmv -f ~/.sky/cluster.json.$$ ~/.sky/cluster.json\n"
            );
            let (code, out) = run_quiet(runner, &script).await.map_err(|e| err(&e))?;
            if code != 0 {
                return Err(err(&out));
            }
        }
        let (code, out) = run_quiet(
            runner,
            "mkdir -p ~/.sky && rm -f ~/.sky/agent.addr ~/.sky/agent.pid ~/.sky/agent.token ~/.sky/self_stop.json",
        )
        .await
        .map_err(|e| err(&e))?;
        if code != 0 {
            return Err(err(&out));
        }
        runner
            .upload(self.token_file, sky_agent::TOKEN_FILE)
            .await
            .map_err(|e| err(&format!("upload the cluster token: {e}")))?;
        // A remote node runs the agent from ~/.sky/bin/sky (put there by `crate::binary`);
        // local sandboxes run this binary directly.
        let remote = runner.node_home().is_none();
        if head && remote {
            give_head_self_stop(self.p, self.handle, runner, self.private_dir)
                .await
                .map_err(|e| err(&e))?;
        }
        let binary = if remote {
            REMOTE_SKY_BINARY.to_string()
        } else {
            self.backend.sky_binary.display().to_string()
        };
        // The autostop hook's environment names client paths; remote nodes do not have them.
        let mut env = self.backend.agent_env.clone();
        if !remote {
            env.extend(self.backend.hook_env.iter().cloned());
        }
        let mut argv = vec![
            binary,
            "agent".into(),
            "serve".into(),
            "--ip".into(),
            node.internal_ip.clone(),
            "--rank".into(),
            node.rank.to_string(),
        ];
        if head {
            argv.extend([
                "--head".into(),
                "--cluster-file".into(),
                ".sky/cluster.json".into(),
            ]);
        }
        let pid = runner
            .spawn_detached(&argv, &env, ".sky/agent.log")
            .await
            .map_err(|e| err(&e.to_string()))?;
        if head {
            // What `sky status -r` checks before it declares the agent gone.
            let (code, out) = run_quiet(runner, &format!("echo {pid} > ~/.sky/agent.pid"))
                .await
                .map_err(|e| err(&e))?;
            if code != 0 {
                return Err(err(&out));
            }
        }
        wait_agent_addr(runner).await.map_err(|e| err(&e))
    }
}

/// Lets a remote head stop or terminate its own cluster when autostop fires: uploads the
/// provider's credential files and leaves [`SELF_STOP_FILE`] (mode 0600) for the head's
/// `sky agent self-stop`. Nothing when the provider cannot (autostop is then refused).
async fn give_head_self_stop(
    p: &dyn CloudProvider,
    handle: &ClusterHandle,
    runner: &dyn CommandRunner,
    private_dir: &std::path::Path,
) -> Result<(), String> {
    let Some(s) = p.node_self_stop() else {
        return Ok(());
    };
    for (local, dest) in &s.files {
        if local.is_file() {
            runner
                .upload(local, dest)
                .await
                .map_err(|e| format!("upload {} for autostop: {e}", local.display()))?;
        }
    }
    let file = SelfStopFile {
        handle: handle.clone(),
        env: s.env,
        config: s.config,
    };
    let path = private_dir.join("self_stop.json");
    let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    write_private(&path, &bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    runner
        .upload(&path, SELF_STOP_FILE)
        .await
        .map_err(|e| format!("upload the autostop file: {e}"))
}

/// Writes a file readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

fn agent_start_err(cluster: &str, node: &InstanceInfo, detail: &str) -> LaunchError {
    LaunchError::runtime(format!(
        "failed to start the agent on node {} ({}) of `{cluster}`: {}; see ~/.sky/agent.log on that node, and `sky down {cluster}` to clean up",
        node.rank,
        node.internal_ip,
        detail.trim()
    ))
}

async fn wait_agent_addr(runner: &dyn CommandRunner) -> Result<SocketAddr, String> {
    let deadline = tokio::time::Instant::now() + AGENT_START_TIMEOUT;
    loop {
        let (code, out) = run_quiet(runner, "cat ~/.sky/agent.addr 2>/dev/null").await?;
        if code == 0
            && let Ok(a) = out.trim().parse::<SocketAddr>()
        {
            return Ok(a);
        }
        if tokio::time::Instant::now() > deadline {
            let (_, log) = run_quiet(runner, "tail -n 20 ~/.sky/agent.log 2>/dev/null")
                .await
                .unwrap_or_default();
            return Err(format!(
                "the agent did not report its address within {}s; its log:\n{log}",
                AGENT_START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cluster_file_json(
    cluster: &str,
    h: &ClusterHandle,
    nodes: &[InstanceInfo],
    addrs: &[Option<SocketAddr>],
    offering: Option<&sky_provider::Offering>,
) -> String {
    let accelerators = offering
        .and_then(|o| o.accelerator.clone())
        .map(|(n, c)| serde_json::json!({ n: c }))
        .unwrap_or_else(|| serde_json::json!({}));
    let gpu_ids: Vec<u32> = offering
        .and_then(|o| o.accelerator.as_ref())
        .map(|(_, c)| (0..c.ceil() as u32).collect())
        .unwrap_or_default();
    let node_list: Vec<serde_json::Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            serde_json::json!({
                "rank": n.rank,
                "ip": n.internal_ip,
                "agent_addr": addrs.get(i).copied().flatten().map(|a| a.to_string()),
                "cpus": offering.map(|o| o.vcpus),
                "memory_gb": offering.map(|o| o.memory_gib),
                "accelerators": accelerators,
                "gpu_ids": gpu_ids,
            })
        })
        .collect();
    serde_json::json!({
        "name": cluster,
        "cloud": h.cloud,
        "region": h.region,
        "zone": h.zone,
        "nodes": node_list,
    })
    .to_string()
}

/// The cluster token its agents require, as recorded when they started.
fn agent_token(cluster: &str, h: &StoredHandle) -> Result<Token, LaunchError> {
    h.agent_token
        .as_deref()
        .and_then(|t| Token::parse(t).ok())
        .ok_or_else(|| {
            LaunchError::agent(
                cluster,
                format!(
                    "no agent token recorded; `sky stop {cluster}` then `sky start {cluster}` restarts its agents with one"
                ),
            )
        })
}

pub(crate) fn agent_addr(cluster: &str, h: &StoredHandle) -> Result<SocketAddr, LaunchError> {
    h.agent_addr
        .as_deref()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| LaunchError::agent(cluster, "no agent address recorded"))
}

/// A client of the head agent (not yet contacted), with the cluster token.
pub(crate) async fn reach_agent(
    backend: &Backend,
    cluster: &str,
    h: &StoredHandle,
) -> Result<AgentClient, LaunchError> {
    let token = agent_token(cluster, h)?;
    let addr = agent_addr_here(backend, cluster, h).await?;
    Ok(AgentClient::new(addr, token))
}

/// The head agent's address as this process reaches it. For a remote head (no `node_home`),
/// the recorded address was a forward of the process that launched the cluster, so it forwards
/// again: reads the agent's port from `~/.sky/agent.addr` on the head and opens a new tunnel.
async fn agent_addr_here(
    backend: &Backend,
    cluster: &str,
    h: &StoredHandle,
) -> Result<SocketAddr, LaunchError> {
    let p = backend.provider(&h.provider.cloud)?;
    let nodes = p.query_instances(&h.provider).await.map_err(|e| {
        LaunchError::provider(format!("failed to list the nodes of `{cluster}`: {e}"))
            .with_provision(e)
    })?;
    let Some(head) = nodes.first() else {
        return agent_addr(cluster, h);
    };
    let runner = p
        .command_runner(&h.provider, head)
        .map_err(|e| LaunchError::runtime(e.to_string()).with_provision(e))?;
    if runner.node_home().is_some() {
        return agent_addr(cluster, h);
    }
    let agent_err = |detail: String| LaunchError::agent(cluster, detail);
    let (code, out) = run_quiet(runner.as_ref(), "cat ~/.sky/agent.addr")
        .await
        .map_err(agent_err)?;
    let remote: SocketAddr = out
        .trim()
        .parse()
        .ok()
        .filter(|_| code == 0)
        .ok_or_else(|| agent_err(format!("no agent address on the head node: {}", out.trim())))?;
    runner
        .forward_port(remote.port())
        .await
        .map_err(|e| agent_err(e.to_string()))
}

/// What the client can tell of a cluster's head agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentHealth {
    /// It answered a ping.
    Alive,
    /// Proven gone: its recorded process is not running on the head (or nothing was started).
    Gone(String),
    /// No answer, but no proof it is gone (busy, paused, a slow network): its jobs are left
    /// alone.
    Unreachable(String),
}

/// How long a ping may take before the agent counts as not answering.
const PING_TIMEOUT: Duration = Duration::from_secs(8);
/// How long the check of the agent's process on the head may take.
const PROOF_TIMEOUT: Duration = Duration::from_secs(15);

/// Pings the head agent; when it does not answer, looks for proof that it is gone (its
/// recorded process no longer runs on the head). A timeout alone is never proof.
pub(crate) async fn agent_health(
    backend: &Backend,
    cluster: &str,
    h: &StoredHandle,
) -> AgentHealth {
    let ping = async {
        let c = reach_agent(backend, cluster, h)
            .await
            .map_err(|e| e.to_string())?;
        c.ping().await.map_err(|e| e.to_string())
    };
    let detail = match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => return AgentHealth::Alive,
        Ok(Err(e)) => e,
        Err(_) => format!("no answer in {} s", PING_TIMEOUT.as_secs()),
    };
    let proof = async {
        let p = backend.provider(&h.provider.cloud).ok()?;
        let nodes = p.query_instances(&h.provider).await.ok()?;
        let runner = p.command_runner(&h.provider, nodes.first()?).ok()?;
        let (code, out) = run_quiet(runner.as_ref(), AGENT_PROCESS_CHECK).await.ok()?;
        (code == 0).then(|| out.trim().lines().last().unwrap_or("").to_string())
    };
    match tokio::time::timeout(PROOF_TIMEOUT, proof).await {
        Ok(Some(s)) if s == "gone" => AgentHealth::Gone(format!(
            "its process is not running on the head node ({detail})"
        )),
        Ok(Some(s)) if s == "running" => AgentHealth::Unreachable(format!(
            "its process is running on the head node but does not answer ({detail})"
        )),
        _ => AgentHealth::Unreachable(format!(
            "{detail}; whether its process still runs could not be checked"
        )),
    }
}

/// Prints `running`, `gone`, or `unknown` (no pid recorded) for the head agent's process. A
/// zombie (killed, not yet reaped by its parent) is gone.
const AGENT_PROCESS_CHECK: &str = r#"if [ ! -f ~/.sky/agent.pid ]; then echo unknown; exit 0; fi
pid=$(cat ~/.sky/agent.pid)
if [ -r "/proc/$pid/stat" ]; then
  state=$(sed 's/.*) //' "/proc/$pid/stat" | cut -c1)
  if [ "$state" = Z ]; then echo gone; else echo running; fi
elif kill -0 "$pid" 2>/dev/null; then echo running
else echo gone
fi"#;

/// Marks the head's non-terminal jobs FAILED_DRIVER when its agent is gone.
pub(crate) async fn mark_orphans(p: &dyn CloudProvider, h: &StoredHandle, nodes: &[InstanceInfo]) {
    let Some(head) = nodes.first() else { return };
    let Ok(runner) = p.command_runner(&h.provider, head) else {
        return;
    };
    if let Some(home) = runner.node_home() {
        let _ = sky_agent::mark_orphans_failed_driver(&home);
    }
}

/// Uploads the workdir to `~/sky_workdir` and local file mounts to their destinations, on
/// every node.
pub(crate) async fn sync(
    backend: &Backend,
    task: &Task,
    h: &StoredHandle,
    ev: &dyn Events,
) -> Result<(), LaunchError> {
    let uploads = local_uploads(task)?;
    if uploads.is_empty() {
        return Ok(());
    }
    let p = backend.provider(&h.provider.cloud)?;
    let nodes = p.query_instances(&h.provider).await.map_err(|e| {
        LaunchError::provider(format!(
            "failed to list the nodes of `{}`: {e}",
            h.provider.cluster_name
        ))
        .with_provision(e)
    })?;
    for (src, dst) in &uploads {
        let leaving = sky_provider::links_leaving(src);
        if !leaving.is_empty() {
            ev.event(&LaunchEvent::Warning(format!(
                "{} symlink{} in {} point{} outside it and {} not synced: {}",
                leaving.len(),
                if leaving.len() == 1 { "" } else { "s" },
                src.display(),
                if leaving.len() == 1 { "s" } else { "" },
                if leaving.len() == 1 { "is" } else { "are" },
                leaving
                    .iter()
                    .take(5)
                    .map(|(p, t)| format!("{} -> {}", p.display(), t.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        ev.event(&LaunchEvent::Syncing {
            src: src.clone(),
            dst: dst.clone(),
            nodes: nodes.len(),
        });
        for n in &nodes {
            let runner = p
                .command_runner(&h.provider, n)
                .map_err(|e| LaunchError::runtime(e.to_string()).with_provision(e))?;
            runner.upload(src, dst).await.map_err(|e| {
                LaunchError::runtime(format!(
                    "failed to sync {} to {dst} on node {}: {e}",
                    src.display(),
                    n.rank
                ))
            })?;
        }
    }
    ev.event(&LaunchEvent::Synced);
    Ok(())
}

/// The local (source, destination) pairs of a task. Bucket sources are refused until storage
/// arrives; nothing is provisioned before this check runs in `launch`.
pub fn local_uploads(task: &Task) -> Result<Vec<(std::path::PathBuf, String)>, LaunchError> {
    let mut v = Vec::new();
    match &task.workdir {
        Some(Workdir::Path(p)) => {
            let path = std::path::PathBuf::from(p);
            if !path.is_dir() {
                return Err(LaunchError::invalid(format!(
                    "workdir `{p}` is not a directory; fix `workdir:` in the task YAML or --workdir"
                )));
            }
            v.push((path, "~/sky_workdir".to_string()));
        }
        Some(Workdir::Git { url, .. }) => {
            return Err(LaunchError::invalid(format!(
                "workdir from git ({url}) is not available yet in sky-rs; clone it locally and use a path"
            )));
        }
        None => {}
    }
    for (dst, m) in &task.file_mounts {
        match m {
            FileMount::Source(src) if !src.contains("://") => {
                let path = std::path::PathBuf::from(src);
                if !path.exists() {
                    return Err(LaunchError::invalid(format!(
                        "file_mounts.{dst}: source `{src}` does not exist"
                    )));
                }
                v.push((path, dst.clone()));
            }
            _ => {
                return Err(LaunchError::invalid(format!(
                    "file_mounts.{dst}: buckets and storage objects are not available yet in sky-rs (they arrive with storage); use a local path"
                )));
            }
        }
    }
    Ok(v)
}

/// Refuses a task that does not fit an existing cluster.
pub(crate) fn check_compatible(
    task: &Task,
    rec: &ClusterRecord,
    h: &StoredHandle,
) -> Result<(), LaunchError> {
    let cluster = &rec.name;
    if task.num_nodes > h.provider.num_nodes {
        return Err(LaunchError::invalid(format!(
            "the task asks for {} nodes but cluster `{cluster}` has {}; use a new cluster (`sky launch -c NEW ...`) or lower num_nodes",
            task.num_nodes, h.provider.num_nodes
        )));
    }
    let mut reasons = Vec::new();
    for r in task.resources.candidates() {
        let mut bad = Vec::new();
        if let Some(c) = &r.cloud
            && c != &h.provider.cloud
        {
            bad.push(format!("cloud {c} (cluster: {})", h.provider.cloud));
        }
        if let Some(reg) = &r.region
            && reg != &h.provider.region
        {
            bad.push(format!("region {reg} (cluster: {})", h.provider.region));
        }
        if let Some(a) = &r.accelerators {
            let have = h
                .node_accelerators
                .as_ref()
                .filter(|(n, _)| n.eq_ignore_ascii_case(&a.name))
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            if have + 1e-9 < a.count {
                bad.push(format!(
                    "{}:{} (cluster nodes have {})",
                    a.name,
                    fmt_count(a.count),
                    h.node_accelerators
                        .as_ref()
                        .map(|(n, c)| format!("{n}:{}", fmt_count(*c)))
                        .unwrap_or_else(|| "no accelerators".into())
                ));
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        reasons.push(bad.join(", "));
    }
    Err(LaunchError::invalid(format!(
        "the task's resources do not fit cluster `{cluster}` ({}): {}; launch it on a new cluster with `sky launch -c NEW ...`",
        h.launched_resources,
        reasons.join("; or ")
    )))
}
