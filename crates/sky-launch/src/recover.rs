//! Adopting clusters the state database lost: a deleted, emptied or replaced `state.db` must not
//! orphan running clusters. Providers that can list their clusters from their own records
//! (`CloudProvider::discover_clusters`; the local cloud reads its node directories) name them;
//! the rest of the record is rebuilt from what the head node holds: `~/.sky/cluster.json`
//! (written when its agent starts), the cluster token (`sky_agent::TOKEN_FILE`) and
//! `~/.sky/agent.addr`.

use std::{collections::HashSet, net::SocketAddr, path::Path, time::Duration};

use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, InstanceInfo, InstanceState, Offering,
};
use sky_state::{ClusterRecord, ClusterStatus};

use crate::{Backend, LaunchError, StoredHandle, failover::resources_str, now, runtime};

/// The event recorded for an adopted cluster.
pub const RECOVERED_EVENT: &str = "RECOVERED";

/// How long reading a remote head's files may take before the cluster is adopted without them.
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// What a head node keeps about its cluster.
#[derive(Debug, Default)]
struct HeadFiles {
    cluster_json: Option<serde_json::Value>,
    token: Option<String>,
    agent_addr: Option<SocketAddr>,
    /// Unix seconds `cluster.json` was written (the launch, or the last start).
    written_at: Option<i64>,
}

impl Backend {
    /// Finds the clusters that the registered providers know from their own records
    /// ([`CloudProvider::discover_clusters`]) but the state database does not (it was deleted,
    /// emptied or replaced), records each (UP when its nodes run and its head agent answers,
    /// STOPPED when its nodes are stopped, INIT otherwise) with a `RECOVERED` event, and
    /// returns their names. Cheap when nothing is lost: one discovery per provider (a listing
    /// for the local cloud) and, when something was discovered, one read of the cluster names;
    /// no node or agent of a recorded cluster is contacted. Idempotent; a provider whose
    /// discovery fails, or a cluster it cannot query, is skipped (a later call retries), so
    /// the only errors are the state database's.
    pub async fn adopt_lost_clusters(&self) -> Result<Vec<String>, LaunchError> {
        let mut discovered: Vec<(std::sync::Arc<dyn CloudProvider>, ClusterHandle)> = Vec::new();
        for p in self.registry.iter() {
            let Ok(handles) = p.discover_clusters().await else {
                continue;
            };
            discovered.extend(
                handles
                    .into_iter()
                    .filter(|h| h.cloud == p.id())
                    .map(|h| (p.clone(), h)),
            );
        }
        if discovered.is_empty() {
            return Ok(Vec::new());
        }
        let mut known: HashSet<String> = self
            .state
            .list_clusters()
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let mut adopted = Vec::new();
        for (p, handle) in discovered {
            let name = handle.cluster_name.clone();
            // Two clusters cannot share a name in state: the first one found keeps it.
            if !known.insert(name.clone()) {
                continue;
            }
            // A cluster whose provider cannot be asked now is left for a later command.
            let Ok(Some(rec)) = self.rebuild_record(p.as_ref(), handle).await else {
                continue;
            };
            match self.state.create_cluster(&rec).await {
                Ok(_) => {}
                // Another command recorded it meanwhile (it adopted it too, or launched it).
                Err(e) if e.kind() == sky_state::ErrorKind::Conflict => continue,
                Err(e) => return Err(e.into()),
            }
            self.state
                .add_event(
                    &name,
                    RECOVERED_EVENT,
                    &format!(
                        "found from the cluster's own records ({}); the state database had lost it",
                        rec.status
                    ),
                    now(),
                )
                .await?;
            adopted.push(name);
        }
        Ok(adopted)
    }

    /// The record of a discovered cluster, rebuilt from its provider and its head node;
    /// `None` when none of its nodes exists any more.
    async fn rebuild_record(
        &self,
        p: &dyn CloudProvider,
        handle: ClusterHandle,
    ) -> Result<Option<ClusterRecord>, LaunchError> {
        let cluster = handle.cluster_name.clone();
        let nodes = p.query_instances(&handle).await.map_err(|e| {
            LaunchError::provider(format!("failed to query `{cluster}` to adopt it: {e}"))
        })?;
        if nodes.is_empty() || nodes.iter().all(|n| n.state == InstanceState::Terminated) {
            return Ok(None);
        }
        let head = read_head(p, &handle, &nodes[0]).await;
        let offering = p.offerings().into_iter().find(|o| {
            o.region == handle.region
                && (handle.zone.is_none() || o.zone == handle.zone)
                && o.instance_type == handle.instance_type
        });
        let node_accelerators = head
            .cluster_json
            .as_ref()
            .and_then(head_accelerators)
            .or_else(|| offering.as_ref().and_then(|o| o.accelerator.clone()));
        let launched_resources = resources_str(
            &launchable(&handle, node_accelerators.clone(), offering.as_ref()),
            handle.num_nodes,
        );
        let agent_addr = match head.agent_addr {
            Some(addr) => Some(reachable_addr(p, &handle, &nodes[0], addr).await),
            None => None,
        };
        let stored = StoredHandle {
            agent_addr,
            agent_token: head.token,
            ips: nodes.iter().map(|n| n.internal_ip.clone()).collect(),
            node_accelerators,
            launched_resources: launched_resources.clone(),
            ports: Vec::new(),
            provider: handle.clone(),
        };
        let status = if nodes.iter().all(|n| n.state == InstanceState::Stopped) {
            ClusterStatus::Stopped
        } else if nodes.iter().all(|n| n.state == InstanceState::Running)
            && stored.agent_addr.is_some()
            && stored.agent_token.is_some()
            && runtime::agent_health(self, &cluster, &stored).await == runtime::AgentHealth::Alive
        {
            ClusterStatus::Up
        } else {
            ClusterStatus::Init
        };
        let price = offering
            .map(|o| {
                if handle.use_spot {
                    o.spot_price.unwrap_or(o.price)
                } else {
                    o.price
                }
            })
            .unwrap_or(0.0);
        let t = now();
        Ok(Some(ClusterRecord {
            name: cluster,
            status,
            handle: serde_json::to_value(&stored).unwrap_or_default(),
            resources_str: launched_resources,
            num_nodes: handle.num_nodes,
            cloud: handle.cloud.clone(),
            region: handle.region.clone(),
            zone: handle.zone.clone(),
            launched_at: head.written_at.unwrap_or(t),
            last_use: "-".into(),
            autostop: None,
            status_updated_at: t,
            price_per_hour: price * f64::from(handle.num_nodes),
            cluster_hash: String::new(),
        }))
    }
}

/// Reads the head's files: straight from its directory when the runner has one (a stopped
/// local node too), else through the runner when the head runs; nothing otherwise.
async fn read_head(
    p: &dyn CloudProvider,
    handle: &ClusterHandle,
    head: &InstanceInfo,
) -> HeadFiles {
    let Ok(runner) = p.command_runner(handle, head) else {
        return HeadFiles::default();
    };
    if let Some(home) = runner.node_home() {
        return read_head_dir(&home);
    }
    if head.state != InstanceState::Running {
        return HeadFiles::default();
    }
    tokio::time::timeout(HEAD_READ_TIMEOUT, read_head_remote(runner.as_ref()))
        .await
        .unwrap_or_default()
}

fn read_head_dir(home: &Path) -> HeadFiles {
    let read = |rel: &str| std::fs::read_to_string(home.join(rel)).ok();
    let cluster_file = home.join(".sky/cluster.json");
    HeadFiles {
        cluster_json: read(".sky/cluster.json").and_then(|t| serde_json::from_str(&t).ok()),
        token: read(sky_agent::TOKEN_FILE).and_then(|t| token(&t)),
        agent_addr: read(".sky/agent.addr").and_then(|t| t.trim().parse().ok()),
        written_at: std::fs::metadata(cluster_file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok()),
    }
}

/// One command prints every file, each after a record separator and its name.
async fn read_head_remote(runner: &dyn CommandRunner) -> HeadFiles {
    let script = format!(
        "cd ~ || exit 1\nfor f in .sky/cluster.json {} .sky/agent.addr; do printf '\\036%s\\n' \"$f\"; cat \"$f\" 2>/dev/null; done\nprintf '\\036mtime\\n'; stat -c %Y .sky/cluster.json 2>/dev/null || stat -f %m .sky/cluster.json 2>/dev/null\n",
        sky_agent::TOKEN_FILE
    );
    let Ok((0, out)) = runner.run_capture(&script, &[]).await else {
        return HeadFiles::default();
    };
    let out = String::from_utf8_lossy(&out);
    let mut files = HeadFiles::default();
    for part in out.split('\u{1e}').skip(1) {
        let (name, body) = part.split_once('\n').unwrap_or((part, ""));
        match name {
            ".sky/cluster.json" => files.cluster_json = serde_json::from_str(body).ok(),
            ".sky/agent.addr" => files.agent_addr = body.trim().parse().ok(),
            "mtime" => files.written_at = body.trim().parse().ok(),
            n if n == sky_agent::TOKEN_FILE => files.token = token(body),
            _ => {}
        }
    }
    files
}

fn token(text: &str) -> Option<String> {
    sky_agent::Token::parse(text)
        .ok()
        .map(|t| t.expose().to_string())
}

/// The head's accelerators as `cluster.json` gives them (`{"H100": 4}`).
fn head_accelerators(cluster_json: &serde_json::Value) -> Option<(String, f64)> {
    let (name, count) = cluster_json
        .get("nodes")?
        .get(0)?
        .get("accelerators")?
        .as_object()?
        .iter()
        .next()?;
    Some((name.clone(), count.as_f64()?))
}

/// The head agent's address as this process reaches it (a forward for remote nodes).
async fn reachable_addr(
    p: &dyn CloudProvider,
    handle: &ClusterHandle,
    head: &InstanceInfo,
    addr: SocketAddr,
) -> String {
    let forwarded = match p.command_runner(handle, head) {
        Ok(r) => r.forward_port(addr.port()).await.ok(),
        Err(_) => None,
    };
    forwarded.unwrap_or(addr).to_string()
}

/// The placement a discovered cluster stands for (to describe its resources as a launch
/// would).
fn launchable(
    h: &ClusterHandle,
    accelerator: Option<(String, f64)>,
    offering: Option<&Offering>,
) -> sky_optimizer::Launchable {
    sky_optimizer::Launchable {
        cloud: h.cloud.clone(),
        region: h.region.clone(),
        zone: h.zone.clone(),
        instance_type: h.instance_type.clone(),
        accelerator,
        vcpus: offering.map(|o| o.vcpus),
        memory_gib: offering.map(|o| o.memory_gib),
        use_spot: h.use_spot,
        hourly_price: offering.map_or(0.0, |o| o.price),
        candidate_index: 0,
        resources: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_accelerators_come_from_the_cluster_file() {
        let j =
            serde_json::json!({"name": "x", "nodes": [{"rank": 0, "accelerators": {"H100": 4.0}}]});
        assert_eq!(head_accelerators(&j), Some(("H100".into(), 4.0)));
        let j = serde_json::json!({"name": "x", "nodes": [{"rank": 0, "accelerators": {}}]});
        assert_eq!(head_accelerators(&j), None);
    }

    #[test]
    fn a_head_directory_gives_token_address_and_cluster_file() {
        let tmp = tempfile::tempdir().unwrap();
        let sky = tmp.path().join(".sky");
        std::fs::create_dir_all(&sky).unwrap();
        std::fs::write(sky.join("cluster.json"), r#"{"name": "dev", "nodes": []}"#).unwrap();
        std::fs::write(sky.join("agent.token"), "abc123\n").unwrap();
        std::fs::write(sky.join("agent.addr"), "127.64.1.2:4567\n").unwrap();
        let f = read_head_dir(tmp.path());
        assert_eq!(f.token.as_deref(), Some("abc123"));
        assert_eq!(f.agent_addr, Some("127.64.1.2:4567".parse().unwrap()));
        assert_eq!(f.cluster_json.unwrap()["name"], "dev");
        assert!(f.written_at.is_some());
        // A head whose agent never started: nothing but what is there.
        let empty = tempfile::tempdir().unwrap();
        let f = read_head_dir(empty.path());
        assert!(f.token.is_none() && f.agent_addr.is_none() && f.cluster_json.is_none());
    }
}
