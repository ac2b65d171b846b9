//! Versioned schema migrations, one list per backend, embedded in the binary.
//!
//! Version `n` is reached by applying `MIGRATIONS[n - 1]`. SQLite keeps the version in
//! `PRAGMA user_version` (a header read, so the check on open is nearly free); PostgreSQL keeps
//! it in the one-row table `sky_schema_version`. Append new migrations; never edit old ones.

/// SQLite migrations.
pub(crate) const SQLITE: &[&str] = &[
    // 1: clusters, history with usage intervals, events.
    r#"
CREATE TABLE clusters (
    name              TEXT PRIMARY KEY NOT NULL,
    cluster_hash      TEXT NOT NULL UNIQUE,
    status            TEXT NOT NULL CHECK (status IN ('INIT', 'UP', 'STOPPED')),
    handle            TEXT NOT NULL,
    resources_str     TEXT NOT NULL,
    num_nodes         INTEGER NOT NULL,
    cloud             TEXT NOT NULL,
    region            TEXT NOT NULL,
    zone              TEXT,
    launched_at       INTEGER NOT NULL,
    last_use          TEXT NOT NULL,
    autostop          TEXT,
    status_updated_at INTEGER NOT NULL,
    price_per_hour    REAL NOT NULL
);
CREATE TABLE cluster_history (
    cluster_hash   TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    num_nodes      INTEGER NOT NULL,
    resources_str  TEXT NOT NULL,
    cloud          TEXT NOT NULL,
    region         TEXT NOT NULL,
    zone           TEXT,
    launched_at    INTEGER NOT NULL,
    price_per_hour REAL NOT NULL
);
CREATE INDEX cluster_history_name ON cluster_history (name);
CREATE TABLE usage_intervals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster_hash TEXT NOT NULL REFERENCES cluster_history (cluster_hash) ON DELETE CASCADE,
    start_time   INTEGER NOT NULL,
    end_time     INTEGER
);
CREATE INDEX usage_intervals_hash ON usage_intervals (cluster_hash, start_time);
CREATE UNIQUE INDEX usage_intervals_one_open ON usage_intervals (cluster_hash) WHERE end_time IS NULL;
CREATE TABLE cluster_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster      TEXT NOT NULL,
    cluster_hash TEXT,
    time         INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX cluster_events_cluster ON cluster_events (cluster, time);
"#,
    // 2: managed jobs (sky-jobs): one row per job, one per task, and the controller's events.
    // AUTOINCREMENT: a job id is never reused, even after its row is deleted.
    r#"
CREATE TABLE managed_jobs (
    job_id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    status           TEXT NOT NULL,
    submitted_at     INTEGER NOT NULL,
    ended_at         INTEGER,
    failure_reason   TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    spec             TEXT NOT NULL,
    progress         TEXT NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX managed_jobs_status ON managed_jobs (status);
CREATE INDEX managed_jobs_name ON managed_jobs (name);
CREATE TABLE managed_tasks (
    job_id         INTEGER NOT NULL REFERENCES managed_jobs (job_id) ON DELETE CASCADE,
    task_idx       INTEGER NOT NULL,
    name           TEXT NOT NULL,
    requested      TEXT NOT NULL,
    status         TEXT NOT NULL,
    started_at     INTEGER,
    ended_at       INTEGER,
    job_duration_s INTEGER NOT NULL,
    recovery_count INTEGER NOT NULL,
    restarts       INTEGER NOT NULL,
    failure_reason TEXT,
    cluster        TEXT,
    cluster_job_id INTEGER,
    cloud          TEXT,
    region         TEXT,
    zone           TEXT,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (job_id, task_idx)
);
CREATE TABLE managed_job_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   INTEGER NOT NULL REFERENCES managed_jobs (job_id) ON DELETE CASCADE,
    task_idx INTEGER,
    time     INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX managed_job_events_job ON managed_job_events (job_id, id);
"#,
];

/// PostgreSQL migrations (same tables and columns as [`SQLITE`], PostgreSQL types).
pub(crate) const POSTGRES: &[&str] = &[
    // 1: clusters, history with usage intervals, events.
    r#"
CREATE TABLE clusters (
    name              TEXT PRIMARY KEY NOT NULL,
    cluster_hash      TEXT NOT NULL UNIQUE,
    status            TEXT NOT NULL CHECK (status IN ('INIT', 'UP', 'STOPPED')),
    handle            TEXT NOT NULL,
    resources_str     TEXT NOT NULL,
    num_nodes         BIGINT NOT NULL,
    cloud             TEXT NOT NULL,
    region            TEXT NOT NULL,
    zone              TEXT,
    launched_at       BIGINT NOT NULL,
    last_use          TEXT NOT NULL,
    autostop          TEXT,
    status_updated_at BIGINT NOT NULL,
    price_per_hour    DOUBLE PRECISION NOT NULL
);
CREATE TABLE cluster_history (
    cluster_hash   TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    num_nodes      BIGINT NOT NULL,
    resources_str  TEXT NOT NULL,
    cloud          TEXT NOT NULL,
    region         TEXT NOT NULL,
    zone           TEXT,
    launched_at    BIGINT NOT NULL,
    price_per_hour DOUBLE PRECISION NOT NULL
);
CREATE INDEX cluster_history_name ON cluster_history (name);
CREATE TABLE usage_intervals (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    cluster_hash TEXT NOT NULL REFERENCES cluster_history (cluster_hash) ON DELETE CASCADE,
    start_time   BIGINT NOT NULL,
    end_time     BIGINT
);
CREATE INDEX usage_intervals_hash ON usage_intervals (cluster_hash, start_time);
CREATE UNIQUE INDEX usage_intervals_one_open ON usage_intervals (cluster_hash) WHERE end_time IS NULL;
CREATE TABLE cluster_events (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    cluster      TEXT NOT NULL,
    cluster_hash TEXT,
    time         BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX cluster_events_cluster ON cluster_events (cluster, time);
"#,
    // 2: managed jobs (sky-jobs); an identity column's sequence never hands out an id twice.
    r#"
CREATE TABLE managed_jobs (
    job_id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name             TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    status           TEXT NOT NULL,
    submitted_at     BIGINT NOT NULL,
    ended_at         BIGINT,
    failure_reason   TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    spec             TEXT NOT NULL,
    progress         TEXT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX managed_jobs_status ON managed_jobs (status);
CREATE INDEX managed_jobs_name ON managed_jobs (name);
CREATE TABLE managed_tasks (
    job_id         BIGINT NOT NULL REFERENCES managed_jobs (job_id) ON DELETE CASCADE,
    task_idx       BIGINT NOT NULL,
    name           TEXT NOT NULL,
    requested      TEXT NOT NULL,
    status         TEXT NOT NULL,
    started_at     BIGINT,
    ended_at       BIGINT,
    job_duration_s BIGINT NOT NULL,
    recovery_count BIGINT NOT NULL,
    restarts       BIGINT NOT NULL,
    failure_reason TEXT,
    cluster        TEXT,
    cluster_job_id BIGINT,
    cloud          TEXT,
    region         TEXT,
    zone           TEXT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (job_id, task_idx)
);
CREATE TABLE managed_job_events (
    id       BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id   BIGINT NOT NULL REFERENCES managed_jobs (job_id) ON DELETE CASCADE,
    task_idx BIGINT,
    time     BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX managed_job_events_job ON managed_job_events (job_id, id);
"#,
];

/// The newest schema version this build knows (both lists have the same length).
pub(crate) const LATEST: i64 = SQLITE.len() as i64;

const _: () = assert!(SQLITE.len() == POSTGRES.len());

/// Key for `pg_advisory_xact_lock`, serialising concurrent migrations ("skystate").
pub(crate) const PG_MIGRATION_LOCK: i64 = 0x736b_7973_7461_7465;

/// The single statements of `migrations`, in order (statements are separated by `;`; the
/// migrations contain no `;` inside literals).
pub(crate) fn statements(migrations: &[&'static str]) -> Vec<&'static str> {
    migrations
        .iter()
        .flat_map(|m| m.split(';'))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}
