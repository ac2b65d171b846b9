//! Whole-process timings of `sky` (release build): `sky status` with 100 clusters in state, and
//! `sky exec -d` on a local cluster (submit → RUNNING: the agent answers a submit once the job
//! is RUNNING, so the process's wall time bounds the latency a user sees).

use std::{path::Path, process::Command};

use criterion::{Criterion, criterion_group, criterion_main};

fn sky(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sky"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "bench")
        .output()
        .expect("run sky")
}

fn populate(home: &Path, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // sky-rs keeps its own state beside SkyPilot's ~/.sky.
        let db_path = home.join(".sky-rs/state.db");
        std::fs::create_dir_all(db_path.parent().expect("parent")).expect("mkdir");
        let db = sky_state::StateDb::open(&sky_state::StateDb::sqlite_url(&db_path))
            .await
            .expect("open");
        for i in 0..n {
            let rec = sky_state::ClusterRecord {
                name: format!("c{i:03}"),
                status: sky_state::ClusterStatus::Stopped,
                handle: serde_json::json!({}),
                resources_str: "1x Local(local)".into(),
                num_nodes: 1,
                cloud: "local".into(),
                region: "local".into(),
                zone: Some("local".into()),
                launched_at: 1_700_000_000,
                last_use: "sky launch".into(),
                autostop: None,
                status_updated_at: 1_700_000_000,
                price_per_hour: 0.0,
                cluster_hash: String::new(),
            };
            db.upsert_cluster(&rec).await.expect("upsert");
        }
    });
}

fn bench(c: &mut Criterion) {
    let home = tempfile::tempdir().expect("tempdir");
    populate(home.path(), 100);
    let out = sky(home.path(), &["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("c099"),
        "status must list the clusters"
    );
    c.bench_function("process: sky status (100 clusters)", |b| {
        b.iter(|| sky(home.path(), &["status"]))
    });
    c.bench_function("process: sky --help", |b| {
        b.iter(|| sky(home.path(), &["--help"]))
    });

    let exec_home = tempfile::tempdir().expect("tempdir");
    let up = sky(exec_home.path(), &["launch", "-y", "-c", "bench", "true"]);
    assert!(
        up.status.success(),
        "launch failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    c.bench_function("process: sky exec -d (submit -> RUNNING)", |b| {
        b.iter(|| sky(exec_home.path(), &["exec", "bench", "-d", "true"]))
    });
    let _ = sky(exec_home.path(), &["down", "bench"]);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
