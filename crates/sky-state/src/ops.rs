//! Every SQL statement the crate runs, written once and instantiated per backend by
//! `backend_ops!` (placeholders are `$n`, which both SQLite and PostgreSQL accept).

use std::collections::HashMap;

use crate::error::{Context, Error, Result};
use crate::{Autostop, ClusterEvent, ClusterRecord, ClusterStatus, HistoryRecord};

/// The columns of `clusters`, in [`ClusterRow`] order.
macro_rules! cluster_cols {
    () => {
        "name, cluster_hash, status, handle, resources_str, num_nodes, cloud, region, zone, \
         launched_at, last_use, autostop, status_updated_at, price_per_hour"
    };
}

pub(crate) type ClusterRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    i64,
    String,
    Option<String>,
    i64,
    f64,
);

type HistoryRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    i64,
    f64,
);
type IntervalRow = (String, i64, Option<i64>);
type EventRow = (String, Option<String>, i64, String, String);

pub(crate) fn cluster_from_row(row: ClusterRow) -> Result<ClusterRecord> {
    let (
        name,
        cluster_hash,
        status,
        handle,
        resources_str,
        num_nodes,
        cloud,
        region,
        zone,
        launched_at,
        last_use,
        autostop,
        status_updated_at,
        price_per_hour,
    ) = row;
    let corrupt = |col: &str, reason: String| Error::Corrupt {
        what: format!("clusters.{col} of {name:?}"),
        reason,
    };
    let status = ClusterStatus::parse(&status)
        .ok_or_else(|| corrupt("status", format!("unknown status {status:?}")))?;
    let handle = serde_json::from_str(&handle).map_err(|e| corrupt("handle", e.to_string()))?;
    let autostop = match autostop {
        None => None,
        Some(s) => Some(
            serde_json::from_str::<Autostop>(&s).map_err(|e| corrupt("autostop", e.to_string()))?,
        ),
    };
    let num_nodes =
        u32::try_from(num_nodes).map_err(|_| corrupt("num_nodes", format!("{num_nodes}")))?;
    Ok(ClusterRecord {
        name,
        status,
        handle,
        resources_str,
        num_nodes,
        cloud,
        region,
        zone,
        launched_at,
        last_use,
        autostop,
        status_updated_at,
        price_per_hour,
        cluster_hash,
    })
}

pub(crate) fn autostop_json(a: Option<&Autostop>) -> Option<String> {
    // Serialising a plain struct of numbers and bools cannot fail.
    a.map(|a| serde_json::to_string(a).unwrap_or_default())
}

fn history_from_rows(rows: Vec<HistoryRow>, intervals: Vec<IntervalRow>) -> Vec<HistoryRecord> {
    let mut by_hash: HashMap<String, Vec<(i64, Option<i64>)>> = HashMap::new();
    for (hash, start, end) in intervals {
        by_hash.entry(hash).or_default().push((start, end));
    }
    rows.into_iter()
        .map(
            |(
                cluster_hash,
                name,
                num_nodes,
                resources_str,
                cloud,
                region,
                zone,
                launched_at,
                price,
            )| {
                HistoryRecord {
                    usage_intervals: by_hash.remove(&cluster_hash).unwrap_or_default(),
                    name,
                    cluster_hash,
                    num_nodes: u32::try_from(num_nodes).unwrap_or(0),
                    resources_str,
                    cloud,
                    region,
                    zone,
                    launched_at,
                    price_per_hour: price,
                }
            },
        )
        .collect()
}

fn event_from_row(cluster: &str, (_, hash, time, kind, message): EventRow) -> ClusterEvent {
    ClusterEvent {
        cluster: cluster.to_owned(),
        cluster_hash: hash,
        time,
        kind,
        message,
    }
}

macro_rules! backend_ops {
    ($module:ident, $db:ty, begin = $begin:literal, read = $read:literal, for_update = $fu:literal) => {
        pub(crate) mod $module {
            use super::*;

            type Pool = sqlx::Pool<$db>;
            type Tx = sqlx::Transaction<'static, $db>;

            /// A write transaction: `BEGIN IMMEDIATE` on SQLite, so a read-modify-write never
            /// fails half-way on a lock upgrade and concurrent writers queue on busy_timeout.
            async fn begin(pool: &Pool, what: &str) -> Result<Tx> {
                pool.begin_with($begin).await.ctx(what)
            }

            async fn commit(tx: Tx, what: &str) -> Result<()> {
                tx.commit().await.ctx(what)
            }

            /// Inserts or updates `rec` (keeping the stored `cluster_hash` of an existing row),
            /// refreshes its history row and applies the usage-interval rule for its status.
            /// With `create_only`, an existing row is left alone and `None` is returned.
            async fn write_cluster(
                tx: &mut Tx,
                rec: &ClusterRecord,
                create_only: bool,
            ) -> Result<Option<String>> {
                let sql = if create_only {
                    concat!(
                        "INSERT INTO clusters (",
                        cluster_cols!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                         ON CONFLICT (name) DO NOTHING RETURNING cluster_hash"
                    )
                } else {
                    concat!(
                        "INSERT INTO clusters (",
                        cluster_cols!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                         ON CONFLICT (name) DO UPDATE SET status = excluded.status, \
                         handle = excluded.handle, resources_str = excluded.resources_str, \
                         num_nodes = excluded.num_nodes, cloud = excluded.cloud, \
                         region = excluded.region, zone = excluded.zone, \
                         launched_at = excluded.launched_at, last_use = excluded.last_use, \
                         autostop = excluded.autostop, \
                         status_updated_at = excluded.status_updated_at, \
                         price_per_hour = excluded.price_per_hour \
                         RETURNING cluster_hash"
                    )
                };
                let hash: Option<(String,)> = sqlx::query_as(sql)
                    .bind(&rec.name)
                    .bind(crate::new_cluster_hash(&rec.name, rec.launched_at))
                    .bind(rec.status.as_str())
                    .bind(rec.handle.to_string())
                    .bind(&rec.resources_str)
                    .bind(i64::from(rec.num_nodes))
                    .bind(&rec.cloud)
                    .bind(&rec.region)
                    .bind(&rec.zone)
                    .bind(rec.launched_at)
                    .bind(&rec.last_use)
                    .bind(autostop_json(rec.autostop.as_ref()))
                    .bind(rec.status_updated_at)
                    .bind(rec.price_per_hour)
                    .fetch_optional(&mut **tx)
                    .await
                    .ctx("write cluster")?;
                let Some((hash,)) = hash else { return Ok(None) };
                sqlx::query(
                    "INSERT INTO cluster_history (cluster_hash, name, num_nodes, resources_str, \
                     cloud, region, zone, launched_at, price_per_hour) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (cluster_hash) DO UPDATE SET name = excluded.name, \
                     num_nodes = excluded.num_nodes, resources_str = excluded.resources_str, \
                     cloud = excluded.cloud, region = excluded.region, zone = excluded.zone, \
                     launched_at = excluded.launched_at, price_per_hour = excluded.price_per_hour",
                )
                .bind(&hash)
                .bind(&rec.name)
                .bind(i64::from(rec.num_nodes))
                .bind(&rec.resources_str)
                .bind(&rec.cloud)
                .bind(&rec.region)
                .bind(&rec.zone)
                .bind(rec.launched_at)
                .bind(rec.price_per_hour)
                .execute(&mut **tx)
                .await
                .ctx("write cluster history")?;
                apply_usage_rule(tx, &hash, rec.status, rec.status_updated_at).await?;
                Ok(Some(hash))
            }

            /// UP opens a usage interval if none is open; STOPPED closes the open one; INIT
            /// leaves intervals as they are.
            async fn apply_usage_rule(
                tx: &mut Tx,
                hash: &str,
                status: ClusterStatus,
                now: i64,
            ) -> Result<()> {
                match status {
                    ClusterStatus::Up => open_interval(tx, hash, now).await,
                    ClusterStatus::Stopped => close_interval(tx, hash, now).await,
                    ClusterStatus::Init => Ok(()),
                }
            }

            async fn open_interval(tx: &mut Tx, hash: &str, now: i64) -> Result<()> {
                // The partial unique index allows one open interval per cluster_hash.
                sqlx::query(
                    "INSERT INTO usage_intervals (cluster_hash, start_time) VALUES ($1, $2) \
                     ON CONFLICT (cluster_hash) WHERE end_time IS NULL DO NOTHING",
                )
                .bind(hash)
                .bind(now)
                .execute(&mut **tx)
                .await
                .ctx("open usage interval")?;
                Ok(())
            }

            async fn close_interval(tx: &mut Tx, hash: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE usage_intervals \
                     SET end_time = CASE WHEN start_time > $2 THEN start_time ELSE $2 END \
                     WHERE cluster_hash = $1 AND end_time IS NULL",
                )
                .bind(hash)
                .bind(now)
                .execute(&mut **tx)
                .await
                .ctx("close usage interval")?;
                Ok(())
            }

            async fn hash_of(tx: &mut Tx, name: &str) -> Result<String> {
                let row: Option<(String,)> = sqlx::query_as(concat!(
                    "SELECT cluster_hash FROM clusters WHERE name = $1",
                    $fu
                ))
                .bind(name)
                .fetch_optional(&mut **tx)
                .await
                .ctx("look up cluster")?;
                row.map(|r| r.0).ok_or_else(|| Error::not_found(name))
            }

            pub(crate) async fn upsert_cluster(pool: &Pool, rec: &ClusterRecord) -> Result<String> {
                let mut tx = begin(pool, "begin cluster write").await?;
                let hash = write_cluster(&mut tx, rec, false).await?;
                commit(tx, "commit cluster write").await?;
                // ON CONFLICT DO UPDATE always returns the row.
                hash.ok_or_else(|| Error::not_found(&rec.name))
            }

            pub(crate) async fn create_cluster(pool: &Pool, rec: &ClusterRecord) -> Result<String> {
                let mut tx = begin(pool, "begin cluster create").await?;
                let Some(hash) = write_cluster(&mut tx, rec, true).await? else {
                    return Err(Error::Conflict { name: rec.name.clone() });
                };
                commit(tx, "commit cluster create").await?;
                Ok(hash)
            }

            pub(crate) async fn update_cluster<F>(
                pool: &Pool,
                name: &str,
                f: F,
            ) -> Result<ClusterRecord>
            where
                F: FnOnce(&mut ClusterRecord) + Send,
            {
                let mut tx = begin(pool, "begin cluster update").await?;
                let row: Option<ClusterRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    cluster_cols!(),
                    " FROM clusters WHERE name = $1",
                    $fu
                ))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .ctx("read cluster")?;
                let mut rec = cluster_from_row(row.ok_or_else(|| Error::not_found(name))?)?;
                let hash = rec.cluster_hash.clone();
                f(&mut rec);
                rec.name = name.to_owned();
                rec.cluster_hash = hash;
                write_cluster(&mut tx, &rec, false).await?;
                commit(tx, "commit cluster update").await?;
                Ok(rec)
            }

            pub(crate) async fn get_cluster(pool: &Pool, name: &str) -> Result<Option<ClusterRecord>> {
                let row: Option<ClusterRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    cluster_cols!(),
                    " FROM clusters WHERE name = $1"
                ))
                .bind(name)
                .fetch_optional(pool)
                .await
                .ctx("read cluster")?;
                row.map(cluster_from_row).transpose()
            }

            pub(crate) async fn list_clusters(pool: &Pool) -> Result<Vec<ClusterRecord>> {
                let rows: Vec<ClusterRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    cluster_cols!(),
                    " FROM clusters ORDER BY name"
                ))
                .fetch_all(pool)
                .await
                .ctx("list clusters")?;
                rows.into_iter().map(cluster_from_row).collect()
            }

            pub(crate) async fn set_status(
                pool: &Pool,
                name: &str,
                status: ClusterStatus,
                now: i64,
            ) -> Result<()> {
                let mut tx = begin(pool, "begin status update").await?;
                let row: Option<(String,)> = sqlx::query_as(
                    "UPDATE clusters SET status = $2, status_updated_at = $3 WHERE name = $1 \
                     RETURNING cluster_hash",
                )
                .bind(name)
                .bind(status.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .ctx("update cluster status")?;
                let (hash,) = row.ok_or_else(|| Error::not_found(name))?;
                apply_usage_rule(&mut tx, &hash, status, now).await?;
                commit(tx, "commit status update").await
            }

            pub(crate) async fn set_autostop(
                pool: &Pool,
                name: &str,
                autostop: Option<&Autostop>,
            ) -> Result<()> {
                let done = sqlx::query("UPDATE clusters SET autostop = $2 WHERE name = $1")
                    .bind(name)
                    .bind(autostop_json(autostop))
                    .execute(pool)
                    .await
                    .ctx("update autostop")?;
                if done.rows_affected() == 0 {
                    return Err(Error::not_found(name));
                }
                Ok(())
            }

            pub(crate) async fn remove_cluster(pool: &Pool, name: &str, now: i64) -> Result<()> {
                let mut tx = begin(pool, "begin cluster removal").await?;
                let row: Option<(String,)> =
                    sqlx::query_as("DELETE FROM clusters WHERE name = $1 RETURNING cluster_hash")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await
                        .ctx("remove cluster")?;
                let (hash,) = row.ok_or_else(|| Error::not_found(name))?;
                close_interval(&mut tx, &hash, now).await?;
                commit(tx, "commit cluster removal").await
            }

            pub(crate) async fn usage(pool: &Pool, name: &str, now: i64, open: bool) -> Result<()> {
                let mut tx = begin(pool, "begin usage update").await?;
                let hash = hash_of(&mut tx, name).await?;
                if open {
                    open_interval(&mut tx, &hash, now).await?;
                } else {
                    close_interval(&mut tx, &hash, now).await?;
                }
                commit(tx, "commit usage update").await
            }

            pub(crate) async fn add_event(
                pool: &Pool,
                cluster: &str,
                kind: &str,
                message: &str,
                now: i64,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO cluster_events (cluster, cluster_hash, time, kind, message) \
                     VALUES ($1, (SELECT cluster_hash FROM clusters WHERE name = $1), $2, $3, $4)",
                )
                .bind(cluster)
                .bind(now)
                .bind(kind)
                .bind(message)
                .execute(pool)
                .await
                .ctx("record cluster event")?;
                Ok(())
            }

            pub(crate) async fn events(pool: &Pool, cluster: &str) -> Result<Vec<ClusterEvent>> {
                let rows: Vec<EventRow> = sqlx::query_as(
                    "SELECT cluster, cluster_hash, time, kind, message FROM cluster_events \
                     WHERE cluster = $1 ORDER BY time, id",
                )
                .bind(cluster)
                .fetch_all(pool)
                .await
                .ctx("read cluster events")?;
                Ok(rows.into_iter().map(|r| event_from_row(cluster, r)).collect())
            }

            /// History rows (oldest launch first) and the current status of each hash that
            /// still has a live cluster, read in one snapshot.
            pub(crate) async fn history(
                pool: &Pool,
            ) -> Result<(Vec<HistoryRecord>, HashMap<String, ClusterStatus>)> {
                let mut tx = pool.begin_with($read).await.ctx("begin history read")?;
                let rows: Vec<HistoryRow> = sqlx::query_as(
                    "SELECT cluster_hash, name, num_nodes, resources_str, cloud, region, zone, \
                     launched_at, price_per_hour FROM cluster_history \
                     ORDER BY launched_at, name, cluster_hash",
                )
                .fetch_all(&mut *tx)
                .await
                .ctx("read cluster history")?;
                let intervals: Vec<IntervalRow> = sqlx::query_as(
                    "SELECT cluster_hash, start_time, end_time FROM usage_intervals \
                     ORDER BY cluster_hash, start_time, id",
                )
                .fetch_all(&mut *tx)
                .await
                .ctx("read usage intervals")?;
                let live: Vec<(String, String)> =
                    sqlx::query_as("SELECT cluster_hash, status FROM clusters")
                        .fetch_all(&mut *tx)
                        .await
                        .ctx("read cluster statuses")?;
                tx.commit().await.ctx("end history read")?;
                let live = live
                    .into_iter()
                    .filter_map(|(h, s)| ClusterStatus::parse(&s).map(|s| (h, s)))
                    .collect();
                Ok((history_from_rows(rows, intervals), live))
            }
        }
    };
}

backend_ops!(
    sqlite,
    sqlx::Sqlite,
    begin = "BEGIN IMMEDIATE",
    read = "BEGIN",
    for_update = ""
);
backend_ops!(
    postgres,
    sqlx::Postgres,
    begin = "BEGIN",
    read = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    for_update = " FOR UPDATE"
);
