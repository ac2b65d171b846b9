//! `sky-state`: the persistent record of what `sky` has launched.
//!
//! It stores clusters (status INIT / UP / STOPPED, the provider's handle as JSON, resources,
//! autostop, launch time, last use), the cluster history with usage intervals that
//! `sky cost-report` prices, per-cluster events, and the managed jobs of `sky jobs` (jobs, their
//! tasks and the controller's events; see [`ManagedJobRow`]). The database is SQLite at
//! `~/.sky-rs/state.db` by default (WAL, a busy timeout, foreign keys) or PostgreSQL when a
//! `db:` URL is configured; both run the same statements behind one [`StateDb`] API, and both
//! carry embedded, versioned migrations that are applied on [`StateDb::open`]. Used by
//! `sky-launch`, `sky-agent` and the CLI.
//!
//! Invariants: this is the only crate that knows SQL; it never reads the clock (every time is
//! a unix-seconds argument); every read-modify-write runs in one transaction (`BEGIN IMMEDIATE`
//! on SQLite, row locks on PostgreSQL), so concurrent `sky` processes never lose updates.

mod error;
mod managed;
mod ops;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use error::Context;
pub use error::{Error, ErrorKind, Result};
pub use managed::{
    MANAGED_TERMINAL_STATUSES, ManagedEvent, ManagedJob, ManagedJobFilter, ManagedJobRow,
    ManagedTaskRow,
};

/// How long a SQLite writer waits for another writer (another `sky` process) before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per pool: a CLI needs one; the launcher and agent a few.
const MAX_CONNECTIONS: u32 = 4;

/// A cluster's lifecycle state, as SkyPilot shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClusterStatus {
    /// Being provisioned, or in an unknown / partial state.
    Init,
    /// All nodes up.
    Up,
    /// Nodes stopped; disks kept.
    Stopped,
}

impl ClusterStatus {
    /// `INIT`, `UP` or `STOPPED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Init => "INIT",
            ClusterStatus::Up => "UP",
            ClusterStatus::Stopped => "STOPPED",
        }
    }

    /// Parses `INIT`, `UP` or `STOPPED` (exact case).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "INIT" => Some(ClusterStatus::Init),
            "UP" => Some(ClusterStatus::Up),
            "STOPPED" => Some(ClusterStatus::Stopped),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Autostop settings of a cluster (stored as JSON; unknown fields are ignored on read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autostop {
    /// Idle minutes before the cluster is stopped (or torn down).
    pub idle_minutes: u32,
    /// Tear down instead of stopping.
    pub down: bool,
}

/// One row of `clusters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The user-facing cluster name (primary key).
    pub name: String,
    /// Lifecycle state.
    pub status: ClusterStatus,
    /// The provider's `ClusterHandle`, as JSON.
    pub handle: serde_json::Value,
    /// Human-readable resources, e.g. `1x local(cpus=4, H100:4)`.
    pub resources_str: String,
    /// Number of nodes.
    pub num_nodes: u32,
    /// Cloud id, e.g. `local`.
    pub cloud: String,
    /// Region.
    pub region: String,
    /// Zone, if the cloud has zones.
    pub zone: Option<String>,
    /// Unix seconds of the launch that created the cluster.
    pub launched_at: i64,
    /// The last command run against the cluster (e.g. `sky exec dev task.yaml`).
    pub last_use: String,
    /// Autostop settings, if any.
    pub autostop: Option<Autostop>,
    /// Unix seconds of the last status change; also the time the usage-interval rule uses
    /// when this record is written with [`StateDb::upsert_cluster`].
    pub status_updated_at: i64,
    /// Price of the whole cluster (all nodes) per hour, in dollars; copied into the history
    /// for `cost-report`.
    pub price_per_hour: f64,
    /// Identity of this incarnation of the cluster: assigned by the database when the name is
    /// first inserted, kept while the row lives, ignored on write (leave it empty).
    pub cluster_hash: String,
}

/// One row of `cluster_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// Cluster name.
    pub cluster: String,
    /// The cluster's `cluster_hash` when the event was recorded (None if it did not exist).
    pub cluster_hash: Option<String>,
    /// Unix seconds.
    pub time: i64,
    /// A short machine-readable kind, e.g. `provision`, `failover`, `stop`.
    pub kind: String,
    /// Free text.
    pub message: String,
}

/// One cluster incarnation in `cluster_history` with its usage intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Cluster name.
    pub name: String,
    /// Incarnation id (see [`ClusterRecord::cluster_hash`]).
    pub cluster_hash: String,
    /// Number of nodes.
    pub num_nodes: u32,
    /// Human-readable resources.
    pub resources_str: String,
    /// Cloud id.
    pub cloud: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: Option<String>,
    /// Unix seconds of the launch.
    pub launched_at: i64,
    /// `(start, end)` unix seconds, oldest first; `end` is None while the cluster is up.
    pub usage_intervals: Vec<(i64, Option<i64>)>,
    /// Price of the whole cluster per hour.
    pub price_per_hour: f64,
}

/// One line of `sky cost-report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    /// Cluster name.
    pub name: String,
    /// Incarnation id.
    pub cluster_hash: String,
    /// Current status, or None when the cluster was terminated.
    pub status: Option<ClusterStatus>,
    /// Unix seconds of the launch.
    pub launched_at: i64,
    /// Seconds spent in usage intervals (open ones counted up to `now`).
    pub duration_seconds: i64,
    /// Number of nodes.
    pub num_nodes: u32,
    /// Human-readable resources.
    pub resources_str: String,
    /// Price of the whole cluster per hour.
    pub price_per_hour: f64,
    /// `duration_seconds / 3600 * price_per_hour`.
    pub total_cost: f64,
}

/// Which database a [`StateDb`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

#[derive(Debug, Clone)]
enum Inner {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same operation on whichever backend this database uses.
macro_rules! dispatch {
    ($self:ident, $op:ident ( $($arg:expr),* )) => {
        match &$self.inner {
            Inner::Sqlite(p) => ops::sqlite::$op(p $(, $arg)*)
                .await
                .map_err(|e| $self.damaged(e)),
            Inner::Postgres(p) => ops::postgres::$op(p $(, $arg)*).await,
        }
    };
}

/// A handle on the state database (cheap to clone: it holds a connection pool).
#[derive(Debug, Clone)]
pub struct StateDb {
    inner: Inner,
    /// The SQLite file (None in memory and on PostgreSQL), named by [`ErrorKind::Damaged`].
    sqlite_path: Option<PathBuf>,
}

impl StateDb {
    /// The SQLite URL for a database file, e.g. `sqlite:///home/me/.sky/state.db`.
    pub fn sqlite_url(path: &Path) -> String {
        format!("sqlite://{}", path.display())
    }

    /// Opens (creating and migrating if needed) the database at `url`:
    /// `sqlite:///abs/path/state.db` (file and parent directory created) or
    /// `postgres://...` / `postgresql://...`. When the schema is current this costs one
    /// connection and a version check.
    pub async fn open(url: &str) -> Result<StateDb> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            Self::open_sqlite(url, Path::new(path)).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url).await
        } else {
            Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "unknown scheme".to_owned(),
            })
        }
    }

    /// A private, empty database in this process's memory (migrated, gone when the handle
    /// is dropped): for commands that must work without the file, e.g. `sky down` when the
    /// file is damaged.
    pub async fn open_in_memory() -> Result<StateDb> {
        let opts = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        // One connection that never closes: each in-memory connection is its own database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(SQLITE_BUSY_TIMEOUT * 2)
            .connect_with(opts)
            .await
            .ctx("open an in-memory state database")?;
        migrate_sqlite(&pool).await?;
        Ok(StateDb {
            inner: Inner::Sqlite(pool),
            sqlite_path: None,
        })
    }

    /// [`Error::Damaged`] for what SQLite says about a damaged file.
    fn damaged(&self, e: Error) -> Error {
        match &self.sqlite_path {
            Some(path) => e.damaged_at(path),
            None => e,
        }
    }

    async fn open_sqlite(url: &str, path: &Path) -> Result<StateDb> {
        Self::open_sqlite_file(url, path)
            .await
            .map_err(|e| e.damaged_at(path))
    }

    async fn open_sqlite_file(url: &str, path: &Path) -> Result<StateDb> {
        if !path.is_absolute() {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "the SQLite path must be absolute".to_owned(),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        // The state holds secrets (each cluster's agent token): a new database file is
        // readable by its owner only (SQLite gives its -wal and -shm files the same mode).
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(Error::Io {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(SQLITE_BUSY_TIMEOUT * 2)
            .connect_with(opts)
            .await
            .ctx("open the SQLite state database")?;
        ensure_wal(&pool).await?;
        let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
            .fetch_one(&pool)
            .await
            .ctx("read the schema version")?;
        if version != schema::LATEST {
            migrate_sqlite(&pool).await?;
        }
        Ok(StateDb {
            inner: Inner::Sqlite(pool),
            sqlite_path: Some(path.to_owned()),
        })
    }

    async fn open_postgres(url: &str) -> Result<StateDb> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .ctx("connect to the PostgreSQL state database")?;
        let version: Option<(i64,)> = sqlx::query_as("SELECT version FROM sky_schema_version")
            .fetch_optional(&pool)
            .await
            .unwrap_or(None);
        match version {
            Some((v,)) if v == schema::LATEST => {}
            Some((v,)) if v > schema::LATEST => {
                return Err(Error::SchemaTooNew {
                    found: v,
                    supported: schema::LATEST,
                });
            }
            _ => migrate_postgres(&pool).await?,
        }
        Ok(StateDb {
            inner: Inner::Postgres(pool),
            sqlite_path: None,
        })
    }

    /// Which backend this handle uses.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes the pool, waiting for connections to finish (optional: dropping also closes).
    pub async fn close(&self) {
        match &self.inner {
            Inner::Sqlite(p) => p.close().await,
            Inner::Postgres(p) => p.close().await,
        }
    }

    /// Inserts the cluster or replaces every field of the existing row of that name (keeping its
    /// `cluster_hash`); refreshes its history row and applies the usage rule of
    /// [`StateDb::set_status`] at `rec.status_updated_at`. Returns the cluster hash.
    pub async fn upsert_cluster(&self, rec: &ClusterRecord) -> Result<String> {
        dispatch!(self, upsert_cluster(rec))
    }

    /// Like [`StateDb::upsert_cluster`] but fails with [`ErrorKind::Conflict`] when a cluster of
    /// that name exists: the atomic way for two concurrent launches to claim a name.
    pub async fn create_cluster(&self, rec: &ClusterRecord) -> Result<String> {
        dispatch!(self, create_cluster(rec))
    }

    /// Read-modify-write of one cluster in a single transaction: `f` sees the stored record
    /// and changes it (its `name` and `cluster_hash` are kept). Returns the written record.
    pub async fn update_cluster<F>(&self, name: &str, f: F) -> Result<ClusterRecord>
    where
        F: FnOnce(&mut ClusterRecord) + Send,
    {
        dispatch!(self, update_cluster(name, f))
    }

    /// The cluster named `name`, if it exists.
    pub async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRecord>> {
        dispatch!(self, get_cluster(name))
    }

    /// Every cluster, by name.
    pub async fn list_clusters(&self) -> Result<Vec<ClusterRecord>> {
        dispatch!(self, list_clusters())
    }

    /// Sets the status and `status_updated_at = now`. UP opens a usage interval at `now` unless
    /// one is open; STOPPED closes the open one at `now`; INIT leaves intervals alone.
    /// [`ErrorKind::NotFound`] if there is no such cluster.
    pub async fn set_status(&self, name: &str, status: ClusterStatus, now: i64) -> Result<()> {
        dispatch!(self, set_status(name, status, now))
    }

    /// Sets or clears autostop. [`ErrorKind::NotFound`] if there is no such cluster.
    pub async fn set_autostop(&self, name: &str, autostop: Option<Autostop>) -> Result<()> {
        dispatch!(self, set_autostop(name, autostop.as_ref()))
    }

    /// Deletes the cluster (its history and events stay) and closes its usage interval at
    /// `now`. [`ErrorKind::NotFound`] if there is no such cluster.
    pub async fn remove_cluster(&self, name: &str, now: i64) -> Result<()> {
        dispatch!(self, remove_cluster(name, now))
    }

    /// Opens a usage interval at `now` unless one is open.
    pub async fn start_usage(&self, name: &str, now: i64) -> Result<()> {
        dispatch!(self, usage(name, now, true))
    }

    /// Closes the open usage interval, if any, at `now`.
    pub async fn end_usage(&self, name: &str, now: i64) -> Result<()> {
        dispatch!(self, usage(name, now, false))
    }

    /// Records an event for `cluster` (which need not exist).
    pub async fn add_event(
        &self,
        cluster: &str,
        kind: &str,
        message: &str,
        now: i64,
    ) -> Result<()> {
        dispatch!(self, add_event(cluster, kind, message, now))
    }

    /// Every event recorded under the name `cluster`, oldest first (across incarnations; see
    /// [`ClusterEvent::cluster_hash`]).
    pub async fn events(&self, cluster: &str) -> Result<Vec<ClusterEvent>> {
        dispatch!(self, events(cluster))
    }

    /// Every cluster incarnation ever recorded, oldest launch first.
    pub async fn cluster_history(&self) -> Result<Vec<HistoryRecord>> {
        Ok(dispatch!(self, history())?.0)
    }

    /// The cost report at `now`: one row per incarnation, oldest launch first; open intervals
    /// count up to `now`.
    pub async fn cost_report(&self, now: i64) -> Result<Vec<CostRow>> {
        let (history, live) = dispatch!(self, history())?;
        Ok(history
            .into_iter()
            .map(|h| cost_row(h, &live, now))
            .collect())
    }
}

fn cost_row(h: HistoryRecord, live: &HashMap<String, ClusterStatus>, now: i64) -> CostRow {
    let duration_seconds: i64 = h
        .usage_intervals
        .iter()
        .map(|&(start, end)| (end.unwrap_or(now) - start).max(0))
        .sum();
    CostRow {
        status: live.get(&h.cluster_hash).copied(),
        total_cost: duration_seconds as f64 / 3600.0 * h.price_per_hour,
        duration_seconds,
        name: h.name,
        cluster_hash: h.cluster_hash,
        launched_at: h.launched_at,
        num_nodes: h.num_nodes,
        resources_str: h.resources_str,
        price_per_hour: h.price_per_hour,
    }
}

impl FromStr for ClusterStatus {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ClusterStatus::parse(s).ok_or_else(|| format!("unknown cluster status {s:?}"))
    }
}

/// A fresh, practically unique id for a new cluster incarnation (no clock, no RNG crate:
/// std's randomly keyed hasher mixed with the process id and a counter).
pub(crate) fn new_cluster_hash(name: &str, launched_at: i64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        *part = std::collections::hash_map::RandomState::new().hash_one((
            name,
            launched_at,
            std::process::id(),
            n,
            i,
        ));
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

/// Switches the file to WAL once (the mode is persistent). Changing the mode needs a lock that
/// busy_timeout does not wait for, so a concurrent first open retries.
async fn ensure_wal(pool: &SqlitePool) -> Result<()> {
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .ctx("read the journal mode")?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    loop {
        let res: std::result::Result<(String,), sqlx::Error> =
            sqlx::query_as("PRAGMA journal_mode = WAL")
                .fetch_one(pool)
                .await;
        match res {
            // A file system without WAL support answers with the old mode: carry on with it.
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e).ctx("switch the state database to WAL mode"),
        }
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED, including their extended codes.
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

async fn migrate_sqlite(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .ctx("begin schema migration")?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .ctx("read the schema version")?;
    if version > schema::LATEST {
        return Err(Error::SchemaTooNew {
            found: version,
            supported: schema::LATEST,
        });
    }
    let first = usize::try_from(version).unwrap_or(0);
    for stmt in schema::statements(&schema::SQLITE[first..]) {
        sqlx::query(stmt)
            .execute(&mut *tx)
            .await
            .ctx("apply a schema migration")?;
    }
    let set_version = format!("PRAGMA user_version = {}", schema::LATEST);
    sqlx::query(&set_version)
        .execute(&mut *tx)
        .await
        .ctx("record the schema version")?;
    tx.commit().await.ctx("commit schema migration")
}

async fn migrate_postgres(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await.ctx("begin schema migration")?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(schema::PG_MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .ctx("lock for schema migration")?;
    sqlx::query("CREATE TABLE IF NOT EXISTS sky_schema_version (version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await
        .ctx("create the schema version table")?;
    let version: Option<(i64,)> = sqlx::query_as("SELECT version FROM sky_schema_version")
        .fetch_optional(&mut *tx)
        .await
        .ctx("read the schema version")?;
    let version = version.map_or(0, |v| v.0);
    if version > schema::LATEST {
        return Err(Error::SchemaTooNew {
            found: version,
            supported: schema::LATEST,
        });
    }
    let first = usize::try_from(version).unwrap_or(0);
    for stmt in schema::statements(&schema::POSTGRES[first..]) {
        sqlx::query(stmt)
            .execute(&mut *tx)
            .await
            .ctx("apply a schema migration")?;
    }
    sqlx::query("DELETE FROM sky_schema_version")
        .execute(&mut *tx)
        .await
        .ctx("record the schema version")?;
    sqlx::query("INSERT INTO sky_schema_version (version) VALUES ($1)")
        .bind(schema::LATEST)
        .execute(&mut *tx)
        .await
        .ctx("record the schema version")?;
    tx.commit().await.ctx("commit schema migration")
}

/// Compile-time check that every public future can be `tokio::spawn`ed: sqlx executors are
/// prone to "not general enough" errors that only show at a caller's spawn.
#[cfg(test)]
mod send_checks {
    use super::*;

    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}

    #[expect(dead_code, reason = "only type-checked")]
    fn checks(db: StateDb, rec: ClusterRecord) {
        spawnable(async { StateDb::open("sqlite:///x").await });
        macro_rules! check {
            ($($call:ident($($arg:expr),*)),* $(,)?) => {$({
                let db = db.clone();
                spawnable(async move { db.$call($($arg),*).await });
            })*};
        }
        let (db1, rec1) = (db.clone(), rec.clone());
        spawnable(async move { db1.upsert_cluster(&rec1).await });
        let db2 = db.clone();
        spawnable(async move { db2.create_cluster(&rec).await });
        check!(
            get_cluster("x"),
            list_clusters(),
            set_status("x", ClusterStatus::Up, 1),
            set_autostop("x", None),
            remove_cluster("x", 1),
            start_usage("x", 1),
            end_usage("x", 1),
            add_event("x", "k", "m", 1),
            events("x"),
            cluster_history(),
            cost_report(1),
            update_cluster("x", |c| c.num_nodes += 1),
            close(),
            get_managed_job(1),
            update_managed_job(1, |j, t| {
                j.cancel_requested = true;
                t.clear();
            }),
            add_managed_event(1, Some(0), 1, "k", "m"),
            managed_events(1),
        );
        let db3 = db.clone();
        spawnable(async move {
            db3.insert_managed_job(&ManagedJobRow::default(), &[ManagedTaskRow::default()])
                .await
        });
        let db4 = db.clone();
        spawnable(async move { db4.list_managed_jobs(&ManagedJobFilter::default()).await });
    }
}
