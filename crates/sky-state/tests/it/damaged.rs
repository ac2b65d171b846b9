//! A damaged SQLite file gives [`ErrorKind::Damaged`] with a message that names the file and
//! says what to do; an empty or missing file is a fresh database.

use std::path::Path;

use sky_state::{ClusterStatus, ErrorKind, StateDb};

use crate::{Fixture, record};

/// Opens the fixture's database and expects `ErrorKind::Damaged` naming the file.
async fn assert_damaged(path: &Path, why: &str) {
    let url = StateDb::sqlite_url(path);
    let e = StateDb::open(&url)
        .await
        .err()
        .unwrap_or_else(|| panic!("{why}: opening {} must fail", path.display()));
    assert_eq!(e.kind(), ErrorKind::Damaged, "{why}: {e}");
    let msg = e.to_string();
    let p = path.display();
    assert!(
        msg.contains(&format!("the state database {p} is damaged"))
            && msg.contains(&format!("`mv {p} {p}.damaged"))
            && !msg.contains("(code:"),
        "{why}: {msg}"
    );
}

/// Whether this process still has the database file (or its -wal, -shm) open.
fn open_here(path: &Path) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(path.as_os_str().as_encoded_bytes())
        })
}

/// Closes `db` and waits until SQLite has really closed the file (the pool's close returns
/// before its connection threads close their handles, which may still checkpoint into it).
async fn close(db: StateDb, path: &Path) {
    db.close().await;
    drop(db);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while open_here(path) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} is still open",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A database with a few clusters, closed; returns its bytes.
async fn populated(f: &Fixture) -> Vec<u8> {
    let db = f.open().await;
    for i in 0..40 {
        db.upsert_cluster(&record(&format!("c{i}"), ClusterStatus::Up, 10))
            .await
            .unwrap();
        db.add_event(&format!("c{i}"), "UP", &"x".repeat(500), 10)
            .await
            .unwrap();
    }
    // Everything into the file itself (closing connections may race and leave the WAL).
    f.raw("PRAGMA wal_checkpoint(TRUNCATE);").await;
    let path = f.sqlite_path.as_deref().unwrap();
    close(db, path).await;
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_damaged() {
    let f = Fixture::sqlite();
    let path = f.sqlite_path.clone().unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_damaged(&path, "garbage").await;
    // The damaged file is left as it was: the user decides what to do with it.
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_file_is_damaged() {
    let f = Fixture::sqlite();
    let path = f.sqlite_path.clone().unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "clusters:\n  - dev\n".repeat(20)).unwrap();
    assert_damaged(&path, "text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sqlite_header_is_damaged() {
    let f = Fixture::sqlite();
    let mut bytes = populated(&f).await;
    let path = f.sqlite_path.clone().unwrap();
    // Keep the magic string, break the page size and the rest of the header.
    for b in &mut bytes[16..100] {
        *b = 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert_damaged(&path, "header").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_is_damaged() {
    let f = Fixture::sqlite();
    let bytes = populated(&f).await;
    assert!(bytes.len() > 8192, "{} bytes", bytes.len());
    let path = f.sqlite_path.clone().unwrap();
    // Cut mid-page: the schema is on the first page, the clusters' rows are beyond it.
    std::fs::write(&path, &bytes[..4096 + 1000]).unwrap();
    let url = StateDb::sqlite_url(&path);
    // Whether the open or the first read notices, the error is the typed one.
    let err = match StateDb::open(&url).await {
        Err(e) => e,
        Ok(db) => db
            .list_clusters()
            .await
            .expect_err("reading a truncated database must fail"),
    };
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_missing_file_is_a_fresh_database() {
    let f = Fixture::sqlite();
    let path = f.sqlite_path.clone().unwrap();
    // Missing (its directory too).
    let db = f.open().await;
    db.upsert_cluster(&record("dev", ClusterStatus::Up, 1))
        .await
        .unwrap();
    close(db, &path).await;
    // Emptied (0 bytes), as `: > state.db` leaves it, its -wal and -shm gone.
    std::fs::write(&path, b"").unwrap();
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(path.with_extension(ext));
    }
    let db = f.open().await;
    assert!(db.list_clusters().await.unwrap().is_empty());
    db.upsert_cluster(&record("dev", ClusterStatus::Up, 2))
        .await
        .unwrap();
    assert_eq!(db.list_clusters().await.unwrap().len(), 1);
    close(db, &path).await;
    // Deleted.
    std::fs::remove_file(&path).unwrap();
    let db = f.open().await;
    assert!(db.list_clusters().await.unwrap().is_empty());
    f.assert_integrity().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_databases_are_private_and_work() {
    let a = StateDb::open_in_memory().await.unwrap();
    let b = StateDb::open_in_memory().await.unwrap();
    a.upsert_cluster(&record("dev", ClusterStatus::Init, 1))
        .await
        .unwrap();
    a.set_status("dev", ClusterStatus::Up, 2).await.unwrap();
    a.add_event("dev", "UP", "up", 2).await.unwrap();
    assert_eq!(
        a.get_cluster("dev").await.unwrap().unwrap().status,
        ClusterStatus::Up
    );
    assert_eq!(a.events("dev").await.unwrap().len(), 1);
    assert!(b.list_clusters().await.unwrap().is_empty());
    a.remove_cluster("dev", 3).await.unwrap();
    assert!(a.list_clusters().await.unwrap().is_empty());
}
