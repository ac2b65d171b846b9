//! Backend-independent test bodies, run by `backend_tests!` on SQLite and PostgreSQL.

use std::process::Command;

use sky_state::{Autostop, ClusterStatus, Error, ErrorKind, StateDb};

use crate::{Fixture, record};

pub const CHILD_URL_ENV: &str = "SKY_STATE_CHILD_URL";

pub async fn crud(f: &Fixture) {
    let db = f.open().await;
    assert!(db.list_clusters().await.unwrap().is_empty());
    assert_eq!(db.get_cluster("dev").await.unwrap(), None);

    let mut rec = record("dev", ClusterStatus::Init, 100);
    rec.zone = None;
    let hash = db.upsert_cluster(&rec).await.unwrap();
    assert_eq!(hash.len(), 32);
    db.upsert_cluster(&record("a-first", ClusterStatus::Up, 100))
        .await
        .unwrap();

    let got = db.get_cluster("dev").await.unwrap().unwrap();
    assert_eq!(
        got,
        sky_state::ClusterRecord {
            cluster_hash: hash.clone(),
            ..rec.clone()
        }
    );
    let names: Vec<_> = db
        .list_clusters()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a-first", "dev"]);

    // Upsert replaces fields but keeps the incarnation.
    rec.num_nodes = 3;
    rec.handle = serde_json::json!({"nested": [1, 2, {"x": null}]});
    rec.last_use = "sky exec dev 'echo hi'".to_owned();
    rec.cluster_hash = "ignored".to_owned();
    assert_eq!(db.upsert_cluster(&rec).await.unwrap(), hash);
    let got = db.get_cluster("dev").await.unwrap().unwrap();
    assert_eq!(got.num_nodes, 3);
    assert_eq!(got.handle, rec.handle);
    assert_eq!(got.cluster_hash, hash);

    // Read-modify-write.
    let updated = db
        .update_cluster("dev", |c| {
            c.last_use = "sky queue dev".to_owned();
            c.name = "renaming is ignored".to_owned();
        })
        .await
        .unwrap();
    assert_eq!(updated.name, "dev");
    assert_eq!(
        db.get_cluster("dev").await.unwrap().unwrap().last_use,
        "sky queue dev"
    );
    let err = db.update_cluster("nope", |_| {}).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Autostop.
    let a = Autostop {
        idle_minutes: 10,
        down: true,
    };
    db.set_autostop("dev", Some(a)).await.unwrap();
    assert_eq!(
        db.get_cluster("dev").await.unwrap().unwrap().autostop,
        Some(a)
    );
    db.set_autostop("dev", None).await.unwrap();
    assert_eq!(db.get_cluster("dev").await.unwrap().unwrap().autostop, None);
    let err = db.set_autostop("nope", Some(a)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("\"nope\""), "{err}");

    // Removal.
    db.remove_cluster("dev", 200).await.unwrap();
    assert_eq!(db.get_cluster("dev").await.unwrap(), None);
    let err = db.remove_cluster("dev", 201).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { ref name } if name == "dev"));
    assert_eq!(db.list_clusters().await.unwrap().len(), 1);
    db.close().await;
    f.assert_integrity().await;
}

pub async fn create_conflict(f: &Fixture) {
    let db = f.open().await;
    let rec = record("dev", ClusterStatus::Init, 1);
    let hash = db.create_cluster(&rec).await.unwrap();
    let err = db
        .create_cluster(&record("dev", ClusterStatus::Up, 2))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let got = db.get_cluster("dev").await.unwrap().unwrap();
    assert_eq!((got.status, got.cluster_hash), (ClusterStatus::Init, hash));
    // The loser opened no usage interval on the winner's history.
    assert!(
        db.cluster_history().await.unwrap()[0]
            .usage_intervals
            .is_empty()
    );
}

fn intervals(h: &[sky_state::HistoryRecord], hash: &str) -> Vec<(i64, Option<i64>)> {
    h.iter()
        .find(|r| r.cluster_hash == hash)
        .unwrap()
        .usage_intervals
        .clone()
}

async fn h(db: &StateDb, hash: &str) -> Vec<(i64, Option<i64>)> {
    intervals(&db.cluster_history().await.unwrap(), hash)
}

pub async fn status_and_usage_intervals(f: &Fixture) {
    let db = f.open().await;
    let hash = db
        .upsert_cluster(&record("dev", ClusterStatus::Init, 100))
        .await
        .unwrap();
    assert_eq!(h(&db, &hash).await, []);

    db.set_status("dev", ClusterStatus::Up, 110).await.unwrap();
    let c = db.get_cluster("dev").await.unwrap().unwrap();
    assert_eq!((c.status, c.status_updated_at), (ClusterStatus::Up, 110));
    assert_eq!(h(&db, &hash).await, [(110, None)]);
    // UP again (e.g. `status -r`) does not open a second interval; INIT keeps it open.
    db.set_status("dev", ClusterStatus::Up, 120).await.unwrap();
    db.set_status("dev", ClusterStatus::Init, 130)
        .await
        .unwrap();
    db.start_usage("dev", 140).await.unwrap();
    assert_eq!(h(&db, &hash).await, [(110, None)]);

    db.set_status("dev", ClusterStatus::Stopped, 200)
        .await
        .unwrap();
    assert_eq!(h(&db, &hash).await, [(110, Some(200))]);
    db.set_status("dev", ClusterStatus::Stopped, 210)
        .await
        .unwrap();
    db.end_usage("dev", 220).await.unwrap();
    assert_eq!(h(&db, &hash).await, [(110, Some(200))]);

    db.set_status("dev", ClusterStatus::Up, 300).await.unwrap();
    db.end_usage("dev", 350).await.unwrap();
    db.start_usage("dev", 360).await.unwrap();
    // Removal closes the open interval; the history outlives the cluster.
    db.remove_cluster("dev", 400).await.unwrap();
    assert_eq!(
        h(&db, &hash).await,
        [(110, Some(200)), (300, Some(350)), (360, Some(400))]
    );

    // An end before the start (clock skew between processes) gives an empty interval.
    let hash2 = db
        .upsert_cluster(&record("skew", ClusterStatus::Up, 1000))
        .await
        .unwrap();
    db.set_status("skew", ClusterStatus::Stopped, 990)
        .await
        .unwrap();
    assert_eq!(
        intervals(&db.cluster_history().await.unwrap(), &hash2),
        [(1000, Some(1000))]
    );

    for err in [
        db.set_status("nope", ClusterStatus::Up, 1)
            .await
            .unwrap_err(),
        db.start_usage("nope", 1).await.unwrap_err(),
        db.end_usage("nope", 1).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
    f.assert_integrity().await;
}

pub async fn relaunch_gets_new_incarnation(f: &Fixture) {
    let db = f.open().await;
    let h1 = db
        .upsert_cluster(&record("dev", ClusterStatus::Up, 10))
        .await
        .unwrap();
    db.remove_cluster("dev", 20).await.unwrap();
    let h2 = db
        .upsert_cluster(&record("dev", ClusterStatus::Up, 30))
        .await
        .unwrap();
    assert_ne!(h1, h2);
    let hist = db.cluster_history().await.unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(intervals(&hist, &h1), [(10, Some(20))]);
    assert_eq!(intervals(&hist, &h2), [(30, None)]);
}

pub async fn cost_report_math(f: &Fixture) {
    let db = f.open().await;
    // a: $2/h, up 0..3600, stopped, up again from 7200 (still up at now = 9000).
    let mut a = record("a", ClusterStatus::Init, 0);
    a.price_per_hour = 2.0;
    a.num_nodes = 2;
    db.upsert_cluster(&a).await.unwrap();
    db.set_status("a", ClusterStatus::Up, 0).await.unwrap();
    db.set_status("a", ClusterStatus::Stopped, 3600)
        .await
        .unwrap();
    db.set_status("a", ClusterStatus::Up, 7200).await.unwrap();
    // b: $10/h, written UP directly at 100, torn down at 460.
    let mut b = record("b", ClusterStatus::Up, 100);
    b.price_per_hour = 10.0;
    db.upsert_cluster(&b).await.unwrap();
    db.remove_cluster("b", 460).await.unwrap();
    // c: never came up.
    db.upsert_cluster(&record("c", ClusterStatus::Init, 200))
        .await
        .unwrap();
    // d: stopped.
    let mut d = record("d", ClusterStatus::Up, 300);
    d.price_per_hour = 0.5;
    db.upsert_cluster(&d).await.unwrap();
    db.set_status("d", ClusterStatus::Stopped, 300 + 7200)
        .await
        .unwrap();

    let report = db.cost_report(9000).await.unwrap();
    let rows: Vec<_> = report
        .iter()
        .map(|r| (r.name.as_str(), r.status, r.duration_seconds, r.num_nodes))
        .collect();
    assert_eq!(
        rows,
        [
            ("a", Some(ClusterStatus::Up), 3600 + 1800, 2),
            ("b", None, 360, 1),
            ("c", Some(ClusterStatus::Init), 0, 1),
            ("d", Some(ClusterStatus::Stopped), 7200, 1),
        ]
    );
    let costs: Vec<f64> = report.iter().map(|r| r.total_cost).collect();
    for (got, want) in costs.iter().zip([3.0, 1.0, 0.0, 1.0]) {
        assert!((got - want).abs() < 1e-9, "{costs:?}");
    }
    assert_eq!(report[0].resources_str, "1x local(cpus=4, H100:4)");
    // Later `now` only grows the open interval.
    let later = db.cost_report(9000 + 3600).await.unwrap();
    assert!((later[0].total_cost - 5.0).abs() < 1e-9);
    assert!((later[3].total_cost - 1.0).abs() < 1e-9);
}

pub async fn events(f: &Fixture) {
    let db = f.open().await;
    let hash = db
        .upsert_cluster(&record("dev", ClusterStatus::Init, 1))
        .await
        .unwrap();
    db.add_event("dev", "provision", "zone local: capacity", 5)
        .await
        .unwrap();
    db.add_event("dev", "status", "INIT -> UP", 6)
        .await
        .unwrap();
    db.add_event("dev", "status", "same second", 6)
        .await
        .unwrap();
    db.add_event("ghost", "down", "no such cluster", 7)
        .await
        .unwrap();
    let ev = db.events("dev").await.unwrap();
    let got: Vec<_> = ev
        .iter()
        .map(|e| (e.time, e.kind.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (5, "provision", "zone local: capacity"),
            (6, "status", "INIT -> UP"),
            (6, "status", "same second")
        ]
    );
    assert!(
        ev.iter()
            .all(|e| e.cluster == "dev" && e.cluster_hash.as_deref() == Some(&*hash))
    );
    let ghost = db.events("ghost").await.unwrap();
    assert_eq!(ghost.len(), 1);
    assert_eq!(ghost[0].cluster_hash, None);
    // Events outlive the cluster.
    db.remove_cluster("dev", 10).await.unwrap();
    assert_eq!(db.events("dev").await.unwrap().len(), 3);
    assert!(db.events("other").await.unwrap().is_empty());
}

pub async fn migrations_idempotent(f: &Fixture) {
    // Concurrent first opens of a fresh database all succeed and migrate exactly once.
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = f.url.clone();
            tokio::spawn(async move { StateDb::open(&url).await })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let db = f.open().await;
    db.upsert_cluster(&record("dev", ClusterStatus::Up, 1))
        .await
        .unwrap();
    db.close().await;
    let db = f.open().await;
    let db2 = f.open().await;
    assert_eq!(
        db.get_cluster("dev").await.unwrap().unwrap().status,
        ClusterStatus::Up
    );
    assert_eq!(db2.list_clusters().await.unwrap().len(), 1);
    f.assert_integrity().await;
}

pub async fn schema_too_new(f: &Fixture) {
    f.open().await.close().await;
    if f.sqlite_path.is_some() {
        f.raw("PRAGMA user_version = 99").await;
    } else {
        f.raw("UPDATE sky_schema_version SET version = 99").await;
    }
    let err = StateDb::open(&f.url).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 99,
                supported: 2
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(err.to_string().contains("upgrade sky"), "{err}");
}

/// Writes done by each writer in `concurrent_writers`.
const PER_WRITER: i64 = 20;
const SHARED: &str = "shared";

/// One writer of `concurrent_writers` (also run by the child process): creates its own
/// clusters and read-modify-writes the shared one.
pub async fn writer(db: StateDb, id: &str) {
    for i in 0..PER_WRITER {
        let name = format!("{id}-{i}");
        db.upsert_cluster(&record(&name, ClusterStatus::Init, i))
            .await
            .unwrap();
        db.set_status(&name, ClusterStatus::Up, i + 1)
            .await
            .unwrap();
        db.update_cluster(SHARED, |c| c.num_nodes += 1)
            .await
            .unwrap();
        let status = if i % 2 == 0 {
            ClusterStatus::Up
        } else {
            ClusterStatus::Stopped
        };
        db.set_status(SHARED, status, 1000 + i).await.unwrap();
        db.add_event(SHARED, "write", &name, i).await.unwrap();
    }
}

pub async fn concurrent_writers(f: &Fixture) {
    const TASKS: usize = 8;
    let db = f.open().await;
    let mut shared = record(SHARED, ClusterStatus::Init, 0);
    shared.num_nodes = 0;
    let hash = db.upsert_cluster(&shared).await.unwrap();

    // A second OS process: this test binary running only `child_writer`.
    let mut child = tokio::process::Command::from({
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["child_writer", "--exact", "--test-threads=1", "-q"])
            .env(CHILD_URL_ENV, &f.url)
            .stdout(std::process::Stdio::null());
        c
    })
    .spawn()
    .unwrap();

    // TASKS tasks: half share one pool, half open their own.
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let db = if t % 2 == 0 { Some(db.clone()) } else { None };
            let url = f.url.clone();
            tokio::spawn(async move {
                let db = match db {
                    Some(db) => db,
                    None => StateDb::open(&url).await.unwrap(),
                };
                writer(db, &format!("task{t}")).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "child writer process failed: {status}");

    let writers = TASKS as i64 + 1;
    let all = db.list_clusters().await.unwrap();
    assert_eq!(all.len() as i64, writers * PER_WRITER + 1);
    assert!(
        all.iter()
            .filter(|c| c.name != SHARED)
            .all(|c| c.status == ClusterStatus::Up),
        "a status update was lost"
    );
    let shared = db.get_cluster(SHARED).await.unwrap().unwrap();
    assert_eq!(
        i64::from(shared.num_nodes),
        writers * PER_WRITER,
        "lost read-modify-write"
    );
    assert_eq!(
        db.events(SHARED).await.unwrap().len() as i64,
        writers * PER_WRITER
    );
    let hist = db.cluster_history().await.unwrap();
    assert_eq!(hist.len() as i64, writers * PER_WRITER + 1);
    let open = intervals(&hist, &hash)
        .iter()
        .filter(|(_, e)| e.is_none())
        .count();
    assert!(open <= 1, "{open} open usage intervals for one cluster");
    db.close().await;
    f.assert_integrity().await;
}
