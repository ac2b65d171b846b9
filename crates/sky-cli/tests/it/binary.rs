//! The `sky` binary to a 3-node SSH pool cluster (`sky_launch::binary`), on real sshd hosts in
//! network namespaces (skipped loudly without root or `ip netns`; an error with
//! SKY_REQUIRE_EMULATORS=1): the client uploads it once, to the head; the workers pull it from
//! the head's `sky agent serve-file` (this very binary) over the hosts' network; every node's
//! copy has the client's SHA-256; a second distribution uploads nothing, and a worker that lost
//! its copy gets it from the head again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sky_launch::binary::{Distribution, LocalBinary, REMOTE_SKY_BINARY, distribute, sha256_file};
use sky_provider::{
    CloudProvider, CommandRunner, OutputSink, ProvisionRequest, RunnerError, SshEndpoint,
};
use sky_provider_testkit::netns::NetnsHosts;

/// A runner that counts the client's uploads through it.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn CommandRunner>,
    uploads: Arc<AtomicU32>,
}

#[async_trait]
impl CommandRunner for Counting {
    async fn run(
        &self,
        script: &str,
        env: &[(String, String)],
        sink: &mut OutputSink<'_>,
    ) -> Result<i32, RunnerError> {
        self.inner.run(script, env, sink).await
    }
    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RunnerError> {
        self.uploads.fetch_add(1, Ordering::SeqCst);
        self.inner.upload(local, remote).await
    }
    async fn spawn_detached(
        &self,
        argv: &[String],
        env: &[(String, String)],
        log_file: &str,
    ) -> Result<u32, RunnerError> {
        self.inner.spawn_detached(argv, env, log_file).await
    }
    async fn forward_port(&self, remote_port: u16) -> Result<std::net::SocketAddr, RunnerError> {
        self.inner.forward_port(remote_port).await
    }
    fn node_home(&self) -> Option<PathBuf> {
        self.inner.node_home()
    }
    fn ssh_endpoint(&self) -> Option<SshEndpoint> {
        self.inner.ssh_endpoint()
    }
}

fn served_lines(hosts: &NetnsHosts) -> Vec<String> {
    std::fs::read_to_string(hosts.hosts[0].home.join(sky_launch::binary::SERVE_LOG_FILE))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("served "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_client_sends_the_binary_once_and_workers_pull_it_from_the_head() {
    let Some(hosts) = NetnsHosts::up(3) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sky_dir = tmp.path().join(".sky");
    std::fs::create_dir_all(&sky_dir).unwrap();
    std::fs::write(sky_dir.join("ssh_node_pools.yaml"), hosts.pools_yaml("lab")).unwrap();
    let p = sky_cloud_ssh::SshProvider::from_sky_dir(&sky_dir, tmp.path())
        .unwrap()
        .unwrap()
        .with_connect_timeout(Duration::from_secs(3))
        .with_control_dir(PathBuf::from(format!(
            "/tmp/sky-ssh-b{}",
            std::process::id()
        )));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let req = ProvisionRequest {
            cluster_name: "bin".into(),
            cluster_name_on_cloud: "bin-1234".into(),
            region: "ssh-lab".into(),
            zone: None,
            num_nodes: 3,
            instance_type: sky_cloud_ssh::SSH_INSTANCE_TYPE.into(),
            use_spot: false,
            resources: Default::default(),
            ports: Vec::new(),
        };
        let h = p.run_instances(&req).await.expect("three hosts leased");
        let nodes = p.query_instances(&h).await.unwrap();
        assert_eq!(nodes.len(), 3);
        let uploads = Arc::new(AtomicU32::new(0));
        let runners: Vec<Arc<dyn CommandRunner>> = nodes
            .iter()
            .map(|n| {
                Arc::new(Counting {
                    inner: p.command_runner(&h, n).unwrap(),
                    uploads: uploads.clone(),
                }) as Arc<dyn CommandRunner>
            })
            .collect();
        let bin = LocalBinary::prepare(
            Path::new(env!("CARGO_BIN_EXE_sky")),
            &tmp.path().join("cache"),
        )
        .await
        .unwrap();
        assert_eq!(
            bin.sha256,
            sha256_file(Path::new(env!("CARGO_BIN_EXE_sky"))).unwrap()
        );

        // First time: one upload (the head's), the workers from the head.
        let d = distribute(&bin, &nodes, &runners).await.unwrap();
        assert_eq!(
            d,
            Distribution {
                up_to_date: vec![],
                uploaded: vec![0],
                from_head: vec![1, 2],
                fallbacks: vec![],
            }
        );
        assert_eq!(
            uploads.load(Ordering::SeqCst),
            1,
            "the client uploads to the head only"
        );
        for host in &hosts.hosts {
            let copy = host.home.join(REMOTE_SKY_BINARY);
            assert_eq!(
                sha256_file(&copy).unwrap(),
                bin.sha256,
                "{}",
                copy.display()
            );
            let left: Vec<String> = std::fs::read_dir(copy.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                left,
                vec!["sky".to_string()],
                "only the binary is left on {}",
                host.name
            );
        }
        // The head served both workers, at their own addresses (the cluster's network).
        let served = served_lines(&hosts);
        assert_eq!(served.len(), 2, "{served:?}");
        for w in &hosts.hosts[1..] {
            assert!(
                served.iter().any(|l| l.contains(&format!("{}:", w.ip))),
                "{served:?}"
            );
        }

        // Again: every node has it; nothing is uploaded or served.
        let d = distribute(&bin, &nodes, &runners).await.unwrap();
        assert_eq!(d.up_to_date, vec![0, 1, 2]);
        assert!(d.uploaded.is_empty() && d.from_head.is_empty(), "{d:?}");
        assert_eq!(uploads.load(Ordering::SeqCst), 1);
        assert_eq!(served_lines(&hosts).len(), 2);

        // A worker that lost its copy (or has another binary) gets it from the head.
        std::fs::write(hosts.hosts[2].home.join(REMOTE_SKY_BINARY), b"stale").unwrap();
        let d = distribute(&bin, &nodes, &runners).await.unwrap();
        assert_eq!((d.up_to_date, d.from_head), (vec![0, 1], vec![2]));
        assert_eq!(
            uploads.load(Ordering::SeqCst),
            1,
            "still one upload from the client"
        );
        assert_eq!(
            sha256_file(&hosts.hosts[2].home.join(REMOTE_SKY_BINARY)).unwrap(),
            bin.sha256
        );

        p.terminate_instances(&h).await.unwrap();
    });
}
