//! What it costs to put the `sky` binary on a 3-node SSH cluster (network-namespace sshd hosts),
//! before and after `sky_launch::binary`, with the same binary in the same run:
//!
//! - `rsync_to_every_node`: the old way, `rsync -az` of the binary from the client to each node
//!   (all three at once, as the launcher's per-node starts overlapped);
//! - `gzip_to_head_then_pull`: the new way, the cached gzip file to the head, unpacked and
//!   checked there, the workers pulling from the head's `sky agent serve-file`;
//! - `already_there`: the new way when every node has this binary (a second launch).
//!
//! Each sample starts from nodes without the binary (removed outside the timing). The binary is
//! this build's `sky` (`cargo bench` builds it with the release profile), or `SKY_BENCH_BINARY`.
//! Needs root and `ip netns`; without them it says so and measures nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sky_launch::binary::{LocalBinary, REMOTE_SKY_BINARY, distribute};
use sky_provider::{CloudProvider, CommandRunner, ProvisionRequest};
use sky_provider_testkit::netns::NetnsHosts;

fn bench(c: &mut Criterion) {
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
    let timed = |work: &dyn Fn(), iters: u64, setup: &dyn Fn()| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            setup();
            let t = Instant::now();
            work();
            total += t.elapsed();
        }
        total
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
    let mut g = c.benchmark_group("sky_binary_to_3_nodes");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("rsync_to_every_node", |b| {
        b.iter_custom(|iters| timed(&before, iters, &|| clear(&hosts)))
    });
    check(&hosts);
    g.bench_function("gzip_to_head_then_pull", |b| {
        b.iter_custom(|iters| timed(&after, iters, &|| clear(&hosts)))
    });
    check(&hosts);
    g.bench_function("already_there", |b| {
        b.iter_custom(|iters| timed(&after, iters, &|| {}))
    });
    g.finish();
    rt.block_on(p.terminate_instances(&h)).unwrap();
    drop(hosts);
}

criterion_group!(benches, bench);
criterion_main!(benches);
