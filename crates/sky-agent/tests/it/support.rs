//! A test cluster: one head and N-1 worker agents served in-process on 127.0.0.x.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sky_agent::{
    Agent, AgentClient, AgentConfig, ClusterInfo, JobRecord, JobSpec, JobStatus, NodeInfo, Token,
};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestCluster {
    pub dir: TempDir,
    pub homes: Vec<PathBuf>,
    pub ips: Vec<String>,
    pub head: AgentClient,
    /// The cluster token every agent of this cluster requires.
    pub token: Token,
    head_cfg: AgentConfig,
    head_task: Option<(CancellationToken, JoinHandle<()>)>,
    workers: Vec<(CancellationToken, JoinHandle<()>)>,
}

async fn spawn_agent(cfg: AgentConfig) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let agent = Agent::bind(cfg).await.expect("agent binds");
    let addr = agent.local_addr();
    let token = CancellationToken::new();
    let t = token.clone();
    let h = tokio::spawn(async move { agent.run(Some(t)).await.expect("agent runs") });
    (addr, token, h)
}

impl TestCluster {
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, None, |_| {}).await
    }

    pub async fn start_with(
        n: usize,
        accelerators: Option<(&str, f64)>,
        tweak: impl Fn(&mut AgentConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let homes: Vec<PathBuf> = (0..n)
            .map(|r| dir.path().join(format!("node-{r}")))
            .collect();
        let ips: Vec<String> = (0..n).map(|r| format!("127.0.0.{}", r + 1)).collect();
        let token = Token::generate().unwrap();
        let mut nodes = Vec::new();
        let mut workers = Vec::new();
        for rank in 0..n {
            std::fs::create_dir_all(&homes[rank]).unwrap();
            let mut node = NodeInfo::new(rank as u32, ips[rank].clone(), None);
            node.cpus = Some(4.0);
            if let Some((name, count)) = accelerators {
                node.accelerators.insert(name.to_string(), count);
            }
            if rank > 0 {
                let listen = format!("{}:0", ips[rank]).parse().unwrap();
                let mut cfg = AgentConfig::worker(&homes[rank], listen, rank as u32);
                cfg.kill_grace = Duration::from_secs(1);
                cfg.token = Some(token.clone());
                let (addr, t, h) = spawn_agent(cfg).await;
                node.agent_addr = Some(addr);
                workers.push((t, h));
            }
            nodes.push(node);
        }
        let cluster = ClusterInfo {
            name: "test".into(),
            cloud: "local".into(),
            region: "local".into(),
            zone: Some("local".into()),
            nodes,
        };
        let mut cfg = AgentConfig::head(&homes[0], "127.0.0.1:0".parse().unwrap(), cluster);
        cfg.kill_grace = Duration::from_secs(1);
        cfg.token = Some(token.clone());
        tweak(&mut cfg);
        let (addr, t, h) = spawn_agent(cfg.clone()).await;
        Self {
            dir,
            homes,
            ips,
            head: AgentClient::connect(addr, token.clone()).await.unwrap(),
            token,
            head_cfg: cfg,
            head_task: Some((t, h)),
            workers,
        }
    }

    /// Stops the head as if it died (job processes keep running).
    pub async fn stop_head(&mut self) {
        if let Some((t, h)) = self.head_task.take() {
            t.cancel();
            h.await.unwrap();
        }
    }

    pub async fn start_head(&mut self) {
        let (addr, t, h) = spawn_agent(self.head_cfg.clone()).await;
        self.head = AgentClient::connect(addr, self.token.clone())
            .await
            .unwrap();
        self.head_task = Some((t, h));
    }

    pub async fn submit(&self, spec: JobSpec) -> u64 {
        self.head.submit(&spec).await.expect("submit")
    }

    pub async fn job(&self, id: u64) -> JobRecord {
        self.head.job(id).await.unwrap().expect("job exists")
    }

    pub async fn wait_for(&self, id: u64, pred: impl Fn(&JobRecord) -> bool) -> JobRecord {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let j = self.job(id).await;
            if pred(&j) {
                return j;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting on {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_status(&self, id: u64, status: JobStatus) -> JobRecord {
        let j = self
            .wait_for(id, |j| j.status == status || j.status.is_terminal())
            .await;
        assert_eq!(j.status, status, "{j:?}");
        j
    }

    pub async fn wait_end(&self, id: u64) -> JobRecord {
        self.wait_for(id, |j| j.status.is_terminal()).await
    }

    /// Follows the job's logs to the end; returns the text.
    pub async fn logs(&self, id: u64) -> String {
        let mut out = Vec::new();
        self.head
            .logs(Some(id), true, None, &mut |b| out.extend_from_slice(b))
            .await
            .unwrap();
        String::from_utf8(out).unwrap()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for (t, _) in self.workers.iter().chain(self.head_task.iter()) {
            t.cancel();
        }
    }
}

pub fn run(script: &str) -> JobSpec {
    JobSpec {
        run: Some(script.to_string()),
        user: "tester".into(),
        ..JobSpec::default()
    }
}

pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); treat it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `path` holds a pid and returns it.
pub async fn wait_pid_file(path: &Path) -> i32 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(pid) = s.trim().parse()
        {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pid in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn wait_gone(pid: i32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while pid_alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The token line a client sends first.
pub fn token_line(token: &Token) -> String {
    format!("{{\"token\":\"{}\"}}\n", token.expose())
}

/// Sends raw bytes to an agent and returns its first reply line ("" when it closed without
/// one).
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut reply = String::new();
    let _ = BufReader::new(s).read_line(&mut reply).await;
    reply
}

/// Polls `cond` until it holds; panics with `what` after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
