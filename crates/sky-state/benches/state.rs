//! Opening the state database and listing 100 clusters: the work behind `sky status`; listing
//! 10,000 managed jobs: the work behind `sky jobs queue` (budget: < 50 ms).

use criterion::{Criterion, criterion_group, criterion_main};
use sky_state::{
    ClusterRecord, ClusterStatus, ManagedJobFilter, ManagedJobRow, ManagedTaskRow, StateDb,
};

/// Managed jobs in the listing case.
const MANAGED_JOBS: usize = 10_000;

/// A realistic managed job: the spec is a JobSubmission-sized JSON document.
fn managed_job(i: usize) -> (ManagedJobRow, Vec<ManagedTaskRow>) {
    let spec = serde_json::json!({
        "name": format!("train-{i}"), "user": "alice", "strategy": null,
        "keep_on_failure": null, "max_duration": null,
        "command_line": "sky jobs launch -n train task.yaml",
        "tasks": [{"name": "train", "requested": "1x[CPU:1+]",
                   "yaml": "name: train\nresources:\n  cpus: 1+\n  use_spot: true\nsetup: pip install -r requirements.txt\nrun: |\n  python train.py --epochs 10 --checkpoint /mnt/ckpt\n"}]
    });
    let job = ManagedJobRow {
        name: format!("train-{i}"),
        user: "alice".to_owned(),
        status: "RUNNING".to_owned(),
        submitted_at: 1_700_000_000 + i as i64,
        spec: spec.to_string(),
        progress: r#"{"attempt":1,"launching":false,"blocked":[]}"#.to_owned(),
        updated_at: 1_700_000_100,
        ..ManagedJobRow::default()
    };
    let task = ManagedTaskRow {
        task_idx: 0,
        name: "train".to_owned(),
        requested: "1x[CPU:1+]".to_owned(),
        status: "RUNNING".to_owned(),
        started_at: Some(1_700_000_050),
        job_duration_s: 50,
        cluster: Some(format!("train-{i}")),
        cluster_job_id: Some(1),
        cloud: Some("local".to_owned()),
        region: Some("us-local".to_owned()),
        zone: Some("us-local-a".to_owned()),
        updated_at: 1_700_000_100,
        ..ManagedTaskRow::default()
    };
    (job, vec![task])
}

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

    let jobs_dir = tempfile::tempdir().unwrap();
    let jobs_url = StateDb::sqlite_url(&jobs_dir.path().join("state.db"));
    let jobs_db = rt.block_on(async {
        let db = StateDb::open(&jobs_url).await.unwrap();
        for i in 0..MANAGED_JOBS {
            let (job, tasks) = managed_job(i);
            db.insert_managed_job(&job, &tasks).await.unwrap();
        }
        db
    });
    let filter = ManagedJobFilter {
        include_terminal: true,
        ..ManagedJobFilter::default()
    };
    c.bench_function("list_managed_jobs_10000", |b| {
        b.iter(|| {
            rt.block_on(async {
                let list = jobs_db.list_managed_jobs(&filter).await.unwrap();
                assert_eq!(list.len(), MANAGED_JOBS);
                list.len()
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
