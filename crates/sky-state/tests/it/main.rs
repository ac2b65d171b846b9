//! Integration tests for sky-state: every test in `suite` runs against SQLite and, when the
//! server binaries are installed, against a throwaway PostgreSQL (see `src/testing.rs`).

mod damaged;
mod managed;
#[path = "../../src/testing.rs"]
mod pg;
mod suite;

use std::path::PathBuf;

use sky_state::{ClusterRecord, ClusterStatus, StateDb};
use sqlx::Connection;

/// Where a test's database lives.
#[derive(Debug)]
pub struct Fixture {
    pub url: String,
    /// The SQLite file (None on PostgreSQL).
    pub sqlite_path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // A parent that does not exist yet: open must create it.
        let path = dir.path().join("home/.sky/state.db");
        Fixture {
            url: StateDb::sqlite_url(&path),
            sqlite_path: Some(path),
            _dir: Some(dir),
        }
    }

    async fn postgres(test: &str) -> Option<Fixture> {
        let server = pg::server()?;
        Some(Fixture {
            url: server.fresh_db(test).await,
            sqlite_path: None,
            _dir: None,
        })
    }

    pub async fn open(&self) -> StateDb {
        StateDb::open(&self.url).await.unwrap()
    }

    /// Runs raw SQL on a separate connection (to tamper with or inspect the database).
    pub async fn raw(&self, sql: &str) {
        if self.sqlite_path.is_some() {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    }

    /// `PRAGMA integrity_check` on SQLite; nothing to check on PostgreSQL.
    pub async fn assert_integrity(&self) {
        if self.sqlite_path.is_some() {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            let (r,): (String,) = sqlx::query_as("PRAGMA integrity_check")
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(r, "ok");
            let (fk,): (i64,) = sqlx::query_as("SELECT count(*) FROM pragma_foreign_key_check")
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(fk, 0, "foreign key violations");
        }
    }
}

pub fn record(name: &str, status: ClusterStatus, now: i64) -> ClusterRecord {
    ClusterRecord {
        name: name.to_owned(),
        status,
        handle: serde_json::json!({"cloud": "local", "cluster_name": name, "num_nodes": 1,
                                   "provider_config": {"dir": format!("/tmp/{name}")}}),
        resources_str: "1x local(cpus=4, H100:4)".to_owned(),
        num_nodes: 1,
        cloud: "local".to_owned(),
        region: "local".to_owned(),
        zone: Some("local".to_owned()),
        launched_at: now,
        last_use: format!("sky launch -c {name}"),
        autostop: None,
        status_updated_at: now,
        price_per_hour: 1.0,
        cluster_hash: String::new(),
    }
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = crate::Fixture::sqlite();
                    crate::$name(&f).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(f) = crate::Fixture::postgres(stringify!($name)).await else {
                        return;
                    };
                    crate::$name(&f).await;
                }
            )*
        }
    };
}

use managed::{
    managed_crud_and_filters, managed_events, managed_ids_never_reused, managed_insert_is_atomic,
    managed_update_read_modify_write,
};
use suite::{
    concurrent_writers, cost_report_math, create_conflict, crud, events, migrations_idempotent,
    relaunch_gets_new_incarnation, schema_too_new, status_and_usage_intervals,
};

backend_tests!(
    managed_crud_and_filters,
    managed_ids_never_reused,
    managed_insert_is_atomic,
    managed_update_read_modify_write,
    managed_events,
    crud,
    create_conflict,
    status_and_usage_intervals,
    relaunch_gets_new_incarnation,
    cost_report_math,
    events,
    migrations_idempotent,
    schema_too_new,
    concurrent_writers,
);

/// The second OS process of `concurrent_writers`: does nothing unless the parent test set
/// `SKY_STATE_CHILD_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    let Ok(url) = std::env::var(suite::CHILD_URL_ENV) else {
        return;
    };
    let db = StateDb::open(&url).await.unwrap();
    suite::writer(db, "proc").await;
}

#[tokio::test]
async fn invalid_urls() {
    use sky_state::ErrorKind;
    for url in [
        "sqlite://relative/state.db",
        "mysql://x/y",
        "state.db",
        "sqlite::memory:",
    ] {
        let err = StateDb::open(url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{url}: {err}");
    }
}

#[tokio::test]
async fn sqlite_file_is_wal() {
    let f = Fixture::sqlite();
    let db = f.open().await;
    assert_eq!(db.backend(), sky_state::Backend::Sqlite);
    db.close().await;
    let mut c = sqlx::SqliteConnection::connect(&f.url).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_new_sqlite_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::sqlite();
    let db = f.open().await;
    let path = f.sqlite_path.clone().unwrap();
    db.list_clusters().await.unwrap();
    for p in [
        path.clone(),
        PathBuf::from(format!("{}-wal", path.display())),
    ] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
    }
    db.close().await;
}
