//! What it costs to put the `sky` binary on a 3-node SSH cluster (network-namespace sshd hosts),
//! before and after `sky_launch::binary`, with the same binary in the same run:
//!
//! - `rsync_to_every_node`: the old way, `rsync -az` of the binary from the client to each node
//!   (all three at once, as the launcher's per-node starts overlapped);
//! - `gzip_to_head_then_pull`: the new way, the cached gzip file to the head, unpacked and
//!   checked there, the workers pulling from the head's `sky agent serve-file`;
//! - `already_there`: the new way when every node has this binary (a second launch).
//!
//! Each run starts from nodes without the binary (removed outside the timing); each case runs
//! `SKY_BENCH_RUNS` times (default 5) and the median, min and max are printed. Not criterion:
//! one run moves hundreds of megabytes, and criterion's ten-sample minimum would take many
//! minutes per case. The binary is this build's `sky` (`cargo bench` builds it with the release
//! profile; `cargo bench --profile dev` uses the debug one), or `SKY_BENCH_BINARY`. Needs root
//! and `ip netns`; without them it says so and measures nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sky_launch::binary::{LocalBinary, REMOTE_SKY_BINARY, distribute};
use sky_provider::{CloudProvider, CommandRunner, ProvisionRequest};
use sky_provider_testkit::netns::NetnsHosts;

fn main() {
    let runs: usize = std::env::var("SKY_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    let Some(hosts) = NetnsHosts::up(3) else {
        eprintln!("distribute bench: no namespace hosts here (needs root and `ip netns`)");
        return;
    };
    let binary = std::env::var_os("SKY_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sky")));
    let tmp = tempfile::tempdir().unwrap();
    let sky_dir = tmp.path().join(".sky");
    std::fs::create_dir_all(&sky_dir).unwrap();
    std::fs::write(sky_dir.join("ssh_node_pools.yaml"), hosts.pools_yaml("lab")).unwrap();
    let p = sky_cloud_ssh::SshProvider::from_sky_dir(&sky_dir, tmp.path())
        .unwrap()
        .unwrap()
        .with_control_dir(PathBuf::from(format!(
            "/tmp/sky-ssh-d{}",
            std::process::id()
        )));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (h, nodes, runners) = rt.block_on(async {
        let req = ProvisionRequest {
            cluster_name: "bench".into(),
            cluster_name_on_cloud: "bench-1".into(),
            region: "ssh-lab".into(),
            zone: None,
            num_nodes: 3,
            instance_type: sky_cloud_ssh::SSH_INSTANCE_TYPE.into(),
            use_spot: false,
            resources: Default::default(),
            ports: Vec::new(),
        };
        let h = p.run_instances(&req).await.unwrap();
        let nodes = p.query_instances(&h).await.unwrap();
        let runners: Vec<Arc<dyn CommandRunner>> = nodes
            .iter()
            .map(|n| p.command_runner(&h, n).unwrap())
            .collect();
        // The ControlMasters are up before anything is timed.
        for r in &runners {
            r.run_capture("true", &[]).await.unwrap();
        }
        (h, nodes, runners)
    });
    let t = Instant::now();
    let bin = rt
        .block_on(LocalBinary::prepare(&binary, &tmp.path().join("cache")))
        .unwrap();
    eprintln!(
        "distribute bench: {} ({} bytes) -> {} bytes gzip; hash + compress once: {:.2?}",
        binary.display(),
        bin.size,
        bin.gz_size,
        t.elapsed()
    );
    let clear = |hosts: &NetnsHosts| {
        for host in &hosts.hosts {
            let _ = std::fs::remove_dir_all(host.home.join(".sky/bin"));
        }
    };
    let timed = |name: &str, work: &dyn Fn(), setup: &dyn Fn()| {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                setup();
                let t = Instant::now();
                work();
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "sky_binary_to_3_nodes/{name}: median {:.2?} (min {:.2?}, max {:.2?}, {runs} runs)",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    };
    let before = || {
        rt.block_on(async {
            let uploads: Vec<_> = runners
                .iter()
                .map(|r| {
                    let (r, b) = (r.clone(), binary.clone());
                    tokio::spawn(async move { r.upload(&b, REMOTE_SKY_BINARY).await.unwrap() })
                })
                .collect();
            for u in uploads {
                u.await.unwrap();
            }
        })
    };
    let after = || {
        let d = rt.block_on(distribute(&bin, &nodes, &runners)).unwrap();
        assert!(d.fallbacks.is_empty(), "{d:?}");
    };
    let check = |hosts: &NetnsHosts| {
        for host in &hosts.hosts {
            assert_eq!(
                sky_launch::binary::sha256_file(&host.home.join(REMOTE_SKY_BINARY)).unwrap(),
                bin.sha256
            );
        }
    };
    timed("rsync_to_every_node", &before, &|| clear(&hosts));
    check(&hosts);
    timed("gzip_to_head_then_pull", &after, &|| clear(&hosts));
    check(&hosts);
    timed("already_there", &after, &|| {});
    rt.block_on(p.terminate_instances(&h)).unwrap();
    drop(hosts);
}
