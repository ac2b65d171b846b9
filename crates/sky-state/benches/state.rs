//! Opening the state database and listing 100 clusters: the work behind `sky status`.

use criterion::{Criterion, criterion_group, criterion_main};
use sky_state::{ClusterRecord, ClusterStatus, StateDb};

fn record(i: usize) -> ClusterRecord {
    ClusterRecord {
        name: format!("cluster-{i:03}"),
        status: ClusterStatus::Up,
        handle: serde_json::json!({"cloud": "local", "cluster_name": format!("cluster-{i:03}"),
            "region": "local", "num_nodes": 2, "provider_config": {"dir": "/tmp/x"}}),
        resources_str: "2x local(cpus=4, H100:4)".to_owned(),
        num_nodes: 2,
        cloud: "local".to_owned(),
        region: "local".to_owned(),
        zone: Some("local".to_owned()),
        launched_at: 1_700_000_000,
        last_use: "sky launch -c x task.yaml".to_owned(),
        autostop: None,
        status_updated_at: 1_700_000_000,
        price_per_hour: 1.5,
        cluster_hash: String::new(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = StateDb::sqlite_url(&dir.path().join("state.db"));
    rt.block_on(async {
        let db = StateDb::open(&url).await.unwrap();
        for i in 0..100 {
            db.upsert_cluster(&record(i)).await.unwrap();
        }
        db.close().await;
    });
    c.bench_function("open_and_list_100", |b| {
        b.iter(|| {
            rt.block_on(async {
                let db = StateDb::open(&url).await.unwrap();
                let list = db.list_clusters().await.unwrap();
                assert_eq!(list.len(), 100);
                db.close().await;
            })
        })
    });
    let db = rt.block_on(StateDb::open(&url)).unwrap();
    c.bench_function("list_100", |b| {
        b.iter(|| rt.block_on(async { db.list_clusters().await.unwrap().len() }))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
