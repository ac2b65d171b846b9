//! Agent configuration and the cluster file the head reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{AgentError, Token};

/// How one agent runs. Build with [`AgentConfig::worker`] or [`AgentConfig::head`] and adjust.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The node's HOME: job processes get `HOME=node_home` and run in `node_home/sky_workdir`
    /// (or `node_home` when that does not exist). State lives in `node_home/.sky/`.
    pub node_home: PathBuf,
    /// Address to bind; port 0 picks one. The bound address is written to
    /// `node_home/.sky/agent.addr` once listening.
    pub listen: SocketAddr,
    /// This node's rank in the cluster (0 = head).
    pub rank: u32,
    /// Whether this agent keeps the job queue.
    pub head: bool,
    /// The cluster token requests must carry (the head also sends it to its workers). `None`
    /// = read `node_home/.sky/agent.token` when binding.
    pub token: Option<Token>,
    /// Head only: the cluster's nodes (rank order; the entry with `rank` is this node).
    pub cluster: Option<ClusterInfo>,
    /// Head only: argv run when autostop fires, with `stop` or `down` appended.
    pub autostop_hook: Vec<String>,
    /// How often autostop checks for idleness (SkyPilot: 60 s).
    pub autostop_tick: Duration,
    /// The length of one autostop "minute" (60 s; tests shorten it).
    pub autostop_minute: Duration,
    /// SIGTERM → SIGKILL grace when killing a job's processes.
    pub kill_grace: Duration,
    /// Head only: how long the head of the queue may wait before later jobs may no longer
    /// jump ahead of it when that would delay it (`sky-sched`'s starvation guard; one hour).
    pub starvation_bound: Duration,
    /// How long a new connection may take to send its complete token line
    /// ([`PREAMBLE_TIMEOUT`](crate::protocol::PREAMBLE_TIMEOUT)).
    pub preamble_timeout: Duration,
    /// How many connections may be waiting for their token line at once; one more closes the
    /// oldest ([`MAX_PENDING_CONNECTIONS`](crate::protocol::MAX_PENDING_CONNECTIONS)).
    pub max_pending_connections: usize,
}

impl AgentConfig {
    /// A worker agent (runs `Exec`/`Kill` from the head).
    pub fn worker(node_home: impl Into<PathBuf>, listen: SocketAddr, rank: u32) -> Self {
        Self {
            node_home: node_home.into(),
            listen,
            rank,
            head: false,
            token: None,
            cluster: None,
            autostop_hook: Vec::new(),
            autostop_tick: Duration::from_secs(20),
            autostop_minute: Duration::from_secs(60),
            kill_grace: Duration::from_secs(5),
            starvation_bound: Duration::from_secs_f64(sky_sched::DEFAULT_STARVATION_BOUND_S),
            preamble_timeout: crate::protocol::PREAMBLE_TIMEOUT,
            max_pending_connections: crate::protocol::MAX_PENDING_CONNECTIONS,
        }
    }

    /// The head agent (rank 0) of `cluster`.
    pub fn head(node_home: impl Into<PathBuf>, listen: SocketAddr, cluster: ClusterInfo) -> Self {
        Self {
            head: true,
            cluster: Some(cluster),
            ..Self::worker(node_home, listen, 0)
        }
    }

    pub(crate) fn sky_dir(&self) -> PathBuf {
        self.node_home.join(".sky")
    }
}

/// The cluster file: what the head knows about its cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub cloud: String,
    pub region: String,
    #[serde(default)]
    pub zone: Option<String>,
    /// Rank order.
    pub nodes: Vec<NodeInfo>,
}

impl ClusterInfo {
    /// Reads a cluster file (JSON).
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::io(format!("read cluster file {}", path.display()), e))?;
        serde_json::from_str(&text)
            .map_err(|e| AgentError::Config(format!("cluster file {}: {e}", path.display())))
    }
}

/// One node of the cluster file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub rank: u32,
    /// The address jobs see in `SKYPILOT_NODE_IPS`.
    pub ip: String,
    /// Where this node's agent listens (may be absent for the head itself).
    #[serde(default)]
    pub agent_addr: Option<SocketAddr>,
    /// vCPUs; absent = not accounted.
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub memory_gb: Option<f64>,
    /// `{"H100": 4}`.
    #[serde(default)]
    pub accelerators: BTreeMap<String, f64>,
    /// Device ids for `CUDA_VISIBLE_DEVICES` (default `0..count` of the accelerator); strings
    /// or numbers in the file.
    #[serde(default, deserialize_with = "device_ids")]
    pub gpu_ids: Vec<String>,
}

impl NodeInfo {
    /// A node with no accounted resources.
    pub fn new(rank: u32, ip: impl Into<String>, agent_addr: Option<SocketAddr>) -> Self {
        Self {
            rank,
            ip: ip.into(),
            agent_addr,
            cpus: None,
            memory_gb: None,
            accelerators: BTreeMap::new(),
            gpu_ids: Vec::new(),
        }
    }
}

/// `["0", "1"]` or `[0, 1]` (the launcher writes nvidia-smi indices as numbers).
fn device_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error;
    Vec::<serde_json::Value>::deserialize(d)?
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            other => Err(D::Error::custom(format!(
                "gpu_ids: expected a device id (string or number), got {other}"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_ids_may_be_numbers_or_strings() {
        let n: NodeInfo = serde_json::from_str(
            r#"{"rank":0,"ip":"10.0.0.1","accelerators":{"H100":2},"gpu_ids":[2,"3"]}"#,
        )
        .unwrap();
        assert_eq!(n.gpu_ids, vec!["2", "3"]);
        let e = serde_json::from_str::<NodeInfo>(r#"{"rank":0,"ip":"x","gpu_ids":[true]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("gpu_ids"), "{e}");
    }
}
