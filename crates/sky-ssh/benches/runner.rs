//! What the SSH runtime costs per command on a real sshd (a network-namespace host): a command
//! through `SshRunner` (multiplexed over its ControlMaster) against the same command over a
//! fresh `ssh` connection (handshake and key exchange each time), and a small upload (rsync
//! over the master). Needs root and `ip netns`; without them it says so and measures nothing.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sky_provider::CommandRunner;
use sky_provider_testkit::netns::NetnsHosts;
use sky_ssh::{SshRunner, SshTarget};

fn runner(c: &mut Criterion) {
    let Some(hosts) = NetnsHosts::up(1) else {
        eprintln!("ssh runner bench: no namespace host here (needs root and `ip netns`)");
        return;
    };
    let control = tempfile::tempdir().unwrap();
    let target = SshTarget {
        ip: hosts.hosts[0].ip.clone(),
        port: 22,
        user: Some("sky".into()),
        identity_file: Some(hosts.identity_file.clone()),
        known_hosts_file: Some(hosts.known_hosts.clone()),
        strict_host_key_checking: "yes".into(),
        control_dir: control.path().to_path_buf(),
        connect_timeout: Duration::from_secs(5),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = Arc::new(SshRunner::new(target.clone(), "bench"));
    let run_true = |r: Arc<SshRunner>| async move {
        let mut sink = |_: &[u8]| {};
        let code = r.run("true", &[], &mut sink).await.unwrap();
        assert_eq!(code, 0);
    };
    // The first command starts the ControlMaster.
    rt.block_on(run_true(r.clone()));
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), vec![b'x'; 64 * 1024]).unwrap();

    let mut g = c.benchmark_group("ssh");
    g.sample_size(30).measurement_time(Duration::from_secs(10));
    g.bench_function("run_true_multiplexed", |b| {
        b.iter(|| rt.block_on(run_true(r.clone())));
    });
    g.bench_function("run_true_fresh_connection", |b| {
        b.iter(|| {
            let st = std::process::Command::new("ssh")
                .args(target.options(false))
                .arg(target.destination())
                .arg("true")
                .stdin(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
        });
    });
    g.bench_function("upload_64k_file_multiplexed", |b| {
        b.iter(|| {
            rt.block_on(async {
                r.upload(&src.path().join("a.txt"), "bench/a.txt")
                    .await
                    .unwrap();
            })
        });
    });
    g.finish();
    drop(hosts);
}

criterion_group!(benches, runner);
criterion_main!(benches);
