//! Managed jobs (`managed_jobs`, `managed_tasks`, `managed_job_events`), run by
//! `backend_tests!` on SQLite and PostgreSQL.

use sky_state::{
    ErrorKind, MANAGED_TERMINAL_STATUSES, ManagedJobFilter, ManagedJobRow, ManagedTaskRow, StateDb,
};

use crate::Fixture;

pub fn job(name: &str, user: &str, status: &str) -> ManagedJobRow {
    ManagedJobRow {
        job_id: 999,
        name: name.to_owned(),
        user: user.to_owned(),
        status: status.to_owned(),
        submitted_at: 100,
        ended_at: None,
        failure_reason: None,
        cancel_requested: false,
        spec: r#"{"tasks":[{"yaml":"run: echo hi"}]}"#.to_owned(),
        progress: "{}".to_owned(),
        updated_at: 100,
    }
}

pub fn task(idx: i64, status: &str) -> ManagedTaskRow {
    ManagedTaskRow {
        job_id: 999,
        task_idx: idx,
        name: format!("t{idx}"),
        requested: "1x[CPU:1+]".to_owned(),
        status: status.to_owned(),
        ..ManagedTaskRow::default()
    }
}

fn ids(list: &[(ManagedJobRow, Vec<ManagedTaskRow>)]) -> Vec<i64> {
    list.iter().map(|(j, _)| j.job_id).collect()
}

async fn list(db: &StateDb, f: ManagedJobFilter) -> Vec<i64> {
    ids(&db.list_managed_jobs(&f).await.unwrap())
}

pub async fn managed_crud_and_filters(f: &Fixture) {
    let db = f.open().await;
    assert!(
        db.list_managed_jobs(&ManagedJobFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.get_managed_job(1).await.unwrap(), None);

    // A pipeline of three tasks, given out of order: read back by index.
    let mut full = task(2, "PENDING");
    full.started_at = Some(5);
    full.ended_at = Some(6);
    full.job_duration_s = 7;
    full.recovery_count = 2;
    full.restarts = 1;
    full.failure_reason = Some("boom".to_owned());
    full.cluster = Some("t2-1".to_owned());
    full.cluster_job_id = Some(3);
    full.cloud = Some("local".to_owned());
    full.region = Some("us-local".to_owned());
    full.zone = Some("us-local-a".to_owned());
    full.updated_at = 9;
    let a = db
        .insert_managed_job(
            &job("a", "alice", "RUNNING"),
            &[full.clone(), task(0, "SUCCEEDED"), task(1, "RUNNING")],
        )
        .await
        .unwrap();
    let mut done = job("b", "bob", "SUCCEEDED");
    done.ended_at = Some(200);
    done.cancel_requested = true;
    done.failure_reason = Some("why".to_owned());
    let b = db
        .insert_managed_job(&done, &[task(0, "SUCCEEDED")])
        .await
        .unwrap();
    let c = db
        .insert_managed_job(&job("a", "bob", "PENDING"), &[task(0, "PENDING")])
        .await
        .unwrap();
    assert!(a < b && b < c, "ids ascend: {a} {b} {c}");

    let (j, t) = db.get_managed_job(a).await.unwrap().unwrap();
    assert_eq!(
        j,
        ManagedJobRow {
            job_id: a,
            ..job("a", "alice", "RUNNING")
        }
    );
    assert_eq!(t.iter().map(|t| t.task_idx).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(t.iter().all(|t| t.job_id == a));
    assert_eq!(t[2], ManagedTaskRow { job_id: a, ..full });
    let (j, _) = db.get_managed_job(b).await.unwrap().unwrap();
    assert_eq!(j, ManagedJobRow { job_id: b, ..done });

    // Filters.
    assert_eq!(list(&db, ManagedJobFilter::default()).await, [a, c]);
    let all = ManagedJobFilter {
        include_terminal: true,
        ..Default::default()
    };
    let everything = db.list_managed_jobs(&all).await.unwrap();
    assert_eq!(ids(&everything), [a, b, c]);
    let task_counts: Vec<_> = everything.iter().map(|(_, t)| t.len()).collect();
    assert_eq!(task_counts, [3, 1, 1]);
    assert!(
        everything
            .iter()
            .all(|(j, ts)| ts.iter().all(|t| t.job_id == j.job_id))
    );
    let bob = ManagedJobFilter {
        include_terminal: true,
        user: Some("bob".to_owned()),
        ..Default::default()
    };
    assert_eq!(list(&db, bob.clone()).await, [b, c]);
    let bob_named_a = ManagedJobFilter {
        name: Some("a".to_owned()),
        ..bob.clone()
    };
    assert_eq!(list(&db, bob_named_a).await, [c]);
    let by_id = ManagedJobFilter {
        include_terminal: true,
        ids: vec![c, b, 12345],
        ..Default::default()
    };
    assert_eq!(list(&db, by_id.clone()).await, [b, c]);
    let by_id_live = ManagedJobFilter {
        include_terminal: false,
        ..by_id
    };
    assert_eq!(list(&db, by_id_live).await, [c]);
    let nobody = ManagedJobFilter {
        user: Some("carol".to_owned()),
        ..all
    };
    assert!(list(&db, nobody).await.is_empty());

    // Every terminal status is left out by default; every other one is listed.
    let mut terminal = Vec::new();
    for s in MANAGED_TERMINAL_STATUSES {
        terminal.push(db.insert_managed_job(&job("t", "t", s), &[]).await.unwrap());
    }
    let mut live = Vec::new();
    for s in ["PENDING", "STARTING", "RUNNING", "RECOVERING", "CANCELLING"] {
        live.push(db.insert_managed_job(&job("l", "l", s), &[]).await.unwrap());
    }
    let listed = list(&db, ManagedJobFilter::default()).await;
    assert!(live.iter().all(|id| listed.contains(id)), "{listed:?}");
    assert!(terminal.iter().all(|id| !listed.contains(id)), "{listed:?}");
    // A job without tasks lists with none.
    let got = db.get_managed_job(live[0]).await.unwrap().unwrap();
    assert!(got.1.is_empty());
    f.assert_integrity().await;
}

pub async fn managed_ids_never_reused(f: &Fixture) {
    let db = f.open().await;
    let mut last = 0;
    for _ in 0..3 {
        let id = db
            .insert_managed_job(&job("j", "u", "PENDING"), &[task(0, "PENDING")])
            .await
            .unwrap();
        assert!(id > last);
        last = id;
    }
    // Deleting the newest job (and then every job) never hands its id out again, not even
    // after a reopen.
    f.raw(&format!("DELETE FROM managed_jobs WHERE job_id = {last}"))
        .await;
    let next = db
        .insert_managed_job(&job("j", "u", "PENDING"), &[])
        .await
        .unwrap();
    assert!(next > last, "id {next} reused after {last} was deleted");
    f.raw("DELETE FROM managed_jobs").await;
    db.close().await;
    let db = f.open().await;
    let after = db
        .insert_managed_job(&job("j", "u", "PENDING"), &[])
        .await
        .unwrap();
    assert!(after > next, "id {after} reused after {next} was deleted");
    // Deleting a job deletes its tasks and events.
    db.add_managed_event(after, None, 1, "k", "m")
        .await
        .unwrap();
    f.raw(&format!("DELETE FROM managed_jobs WHERE job_id = {after}"))
        .await;
    assert!(db.managed_events(after).await.unwrap().is_empty());
    db.close().await;
    f.assert_integrity().await;
}

pub async fn managed_insert_is_atomic(f: &Fixture) {
    let db = f.open().await;
    // Two tasks with the same index: the second insert fails, and nothing of the job is left.
    let err = db
        .insert_managed_job(
            &job("half", "u", "PENDING"),
            &[task(0, "PENDING"), task(0, "PENDING")],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    let all = ManagedJobFilter {
        include_terminal: true,
        ..Default::default()
    };
    assert!(db.list_managed_jobs(&all).await.unwrap().is_empty());
    let id = db
        .insert_managed_job(&job("whole", "u", "PENDING"), &[task(0, "PENDING")])
        .await
        .unwrap();
    let listed = db.list_managed_jobs(&all).await.unwrap();
    assert_eq!(ids(&listed), [id]);
    assert_eq!(listed[0].0.name, "whole");
    f.assert_integrity().await;
}

pub async fn managed_update_read_modify_write(f: &Fixture) {
    let db = f.open().await;
    let id = db
        .insert_managed_job(
            &job("j", "u", "PENDING"),
            &[task(0, "PENDING"), task(1, "PENDING")],
        )
        .await
        .unwrap();
    let (j, t) = db
        .update_managed_job(id, |j, t| {
            j.job_id = 777;
            j.status = "RUNNING".to_owned();
            j.progress = r#"{"attempt":1}"#.to_owned();
            j.updated_at = 150;
            t[0].job_id = 777;
            t[0].status = "RUNNING".to_owned();
            t[0].cluster = Some("t0-1".to_owned());
            t[0].cluster_job_id = Some(1);
        })
        .await
        .unwrap();
    assert_eq!(j.job_id, id, "the job id is kept");
    assert!(t.iter().all(|t| t.job_id == id));
    let (got_j, got_t) = db.get_managed_job(id).await.unwrap().unwrap();
    assert_eq!((got_j, got_t), (j, t));
    let (_, t) = db.get_managed_job(id).await.unwrap().unwrap();
    assert_eq!(t[0].cluster.as_deref(), Some("t0-1"));
    assert_eq!(t[1].status, "PENDING");

    // Removing and adding tasks; a repeated index: the last one wins.
    let (_, t) = db
        .update_managed_job(id, |_, t| {
            t.remove(0);
            t.push(task(5, "PENDING"));
            t.push(task(5, "RUNNING"));
        })
        .await
        .unwrap();
    assert_eq!(
        t.iter()
            .map(|t| (t.task_idx, t.status.as_str()))
            .collect::<Vec<_>>(),
        [(1, "PENDING"), (5, "RUNNING")]
    );
    assert_eq!(db.get_managed_job(id).await.unwrap().unwrap().1, t);

    let err = db
        .update_managed_job(id + 100, |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains(&format!("{}", id + 100)), "{err}");

    // Concurrent read-modify-writes from several pools lose nothing.
    const WRITERS: i64 = 6;
    const EACH: i64 = 15;
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = f.url.clone();
            let shared = db.clone();
            tokio::spawn(async move {
                let db = if w % 2 == 0 {
                    shared
                } else {
                    StateDb::open(&url).await.unwrap()
                };
                for _ in 0..EACH {
                    db.update_managed_job(id, |j, t| {
                        j.updated_at += 1;
                        t[0].recovery_count += 1;
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let (j, t) = db.get_managed_job(id).await.unwrap().unwrap();
    assert_eq!(j.updated_at, 150 + WRITERS * EACH, "lost job update");
    assert_eq!(t[0].recovery_count, WRITERS * EACH, "lost task update");
    f.assert_integrity().await;
}

pub async fn managed_events(f: &Fixture) {
    let db = f.open().await;
    let a = db
        .insert_managed_job(&job("a", "u", "PENDING"), &[])
        .await
        .unwrap();
    let b = db
        .insert_managed_job(&job("b", "u", "PENDING"), &[])
        .await
        .unwrap();
    // Recorded order, not time order.
    db.add_managed_event(a, None, 20, "submit", "submitted")
        .await
        .unwrap();
    db.add_managed_event(a, Some(0), 10, "launch", "launching t0-1")
        .await
        .unwrap();
    db.add_managed_event(b, Some(0), 5, "launch", "other job")
        .await
        .unwrap();
    db.add_managed_event(a, Some(0), 30, "preempted", "zone us-local-a")
        .await
        .unwrap();
    let ev = db.managed_events(a).await.unwrap();
    let got: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.job_id,
                e.task_idx,
                e.at,
                e.kind.as_str(),
                e.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (a, None, 20, "submit", "submitted"),
            (a, Some(0), 10, "launch", "launching t0-1"),
            (a, Some(0), 30, "preempted", "zone us-local-a"),
        ]
    );
    assert_eq!(db.managed_events(b).await.unwrap().len(), 1);
    assert!(db.managed_events(b + 10).await.unwrap().is_empty());
    let err = db
        .add_managed_event(b + 10, None, 1, "k", "m")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}
