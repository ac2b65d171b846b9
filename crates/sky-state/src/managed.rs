//! Managed jobs (the rows behind `sky jobs`): one row per job in `managed_jobs`, one per task in
//! `managed_tasks`, and the controller's per-job events in `managed_job_events`.
//!
//! Statuses are stored as sky-jobs' strings (`PENDING`, `FAILED_SETUP`, ...); this crate only
//! knows which of them are terminal ([`MANAGED_TERMINAL_STATUSES`]) for
//! [`ManagedJobFilter::include_terminal`]. Job ids come from the database: ascending, never
//! reused, even after a row is deleted.

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::{Inner, StateDb};

/// The job statuses after which a managed job never changes again (sky-jobs'
/// `ManagedJobStatus::is_terminal`); a listing without [`ManagedJobFilter::include_terminal`]
/// leaves jobs in these statuses out.
pub const MANAGED_TERMINAL_STATUSES: [&str; 7] = [
    "SUCCEEDED",
    "CANCELLED",
    "FAILED",
    "FAILED_SETUP",
    "FAILED_PRECHECKS",
    "FAILED_NO_RESOURCE",
    "FAILED_CONTROLLER",
];

/// One row of `managed_jobs`. The field order is the column order: listings read rows as
/// JSON arrays in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedJobRow {
    /// Assigned by the database on insert (the given value is ignored there).
    pub job_id: i64,
    /// Job name.
    pub name: String,
    /// The submitting user.
    pub user: String,
    /// The job-level status, e.g. `RUNNING`.
    pub status: String,
    /// Unix seconds.
    pub submitted_at: i64,
    /// Unix seconds, once terminal.
    pub ended_at: Option<i64>,
    /// Why the job failed or was cancelled.
    pub failure_reason: Option<String>,
    /// A cancel was asked for and is not done yet.
    pub cancel_requested: bool,
    /// JSON: sky-jobs' `JobSubmission` without its secrets.
    pub spec: String,
    /// JSON: the controller's own per-job state.
    pub progress: String,
    /// Unix seconds of the last write (set by the caller).
    pub updated_at: i64,
}

/// One row of `managed_tasks` (a pipeline has one per task, `task_idx` 0, 1, ...). The field
/// order is the column order: listings read rows as JSON arrays in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedTaskRow {
    /// The job (set by insert and update; the given value is ignored there).
    pub job_id: i64,
    /// Position in the pipeline, from 0; unique within the job.
    pub task_idx: i64,
    /// Task name.
    pub name: String,
    /// The REQUESTED column, e.g. `1x[CPU:1+]`.
    pub requested: String,
    /// The task's status.
    pub status: String,
    /// Unix seconds the task first ran.
    pub started_at: Option<i64>,
    /// Unix seconds the task ended.
    pub ended_at: Option<i64>,
    /// Seconds the task's job has run, over all attempts.
    pub job_duration_s: i64,
    /// Recoveries from preemption or lost nodes.
    pub recovery_count: i64,
    /// Restarts after user-code failures.
    pub restarts: i64,
    /// Why the task failed.
    pub failure_reason: Option<String>,
    /// The task's cluster while it has (or may have) one.
    pub cluster: Option<String>,
    /// The job id on that cluster.
    pub cluster_job_id: Option<i64>,
    /// Where the current attempt runs.
    pub cloud: Option<String>,
    /// Region of the current attempt.
    pub region: Option<String>,
    /// Zone of the current attempt.
    pub zone: Option<String>,
    /// Unix seconds of the last write (set by the caller).
    pub updated_at: i64,
}

/// Which jobs [`StateDb::list_managed_jobs`] returns; the default is every non-terminal job of
/// every user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedJobFilter {
    /// Also jobs in a terminal status ([`MANAGED_TERMINAL_STATUSES`]).
    pub include_terminal: bool,
    /// Only this user's jobs.
    pub user: Option<String>,
    /// Only these job ids (empty: no restriction).
    pub ids: Vec<i64>,
    /// Only jobs of this name.
    pub name: Option<String>,
}

/// One row of `managed_job_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedEvent {
    /// The job.
    pub job_id: i64,
    /// The task, for a task's event.
    pub task_idx: Option<i64>,
    /// Unix seconds.
    pub at: i64,
    /// A short machine-readable kind, e.g. `launch`, `preempted`.
    pub kind: String,
    /// Free text.
    pub message: String,
}

/// A job with its tasks (ascending `task_idx`).
pub type ManagedJob = (ManagedJobRow, Vec<ManagedTaskRow>);

/// Runs the same operation on whichever backend this database uses.
macro_rules! managed_dispatch {
    ($self:ident, $op:ident ( $($arg:expr),* )) => {
        match &$self.inner {
            Inner::Sqlite(p) => sqlite::$op(p $(, $arg)*)
                .await
                .map_err(|e| $self.damaged(e)),
            Inner::Postgres(p) => postgres::$op(p $(, $arg)*).await,
        }
    };
}

impl StateDb {
    /// Records a job and its tasks in one transaction (never a job without its tasks) and
    /// returns the job id the database assigned (ascending, never reused); `job.job_id` and
    /// the tasks' `job_id` are ignored. Two tasks with one `task_idx` fail the whole insert.
    pub async fn insert_managed_job(
        &self,
        job: &ManagedJobRow,
        tasks: &[ManagedTaskRow],
    ) -> Result<i64> {
        managed_dispatch!(self, insert_job(job, tasks))
    }

    /// The job and its tasks, if it exists.
    pub async fn get_managed_job(&self, id: i64) -> Result<Option<ManagedJob>> {
        managed_dispatch!(self, get_job(id))
    }

    /// The jobs `f` selects, ascending id, each with its tasks: two queries (jobs, then the
    /// tasks of those jobs) in one read snapshot, each answering one JSON document.
    pub async fn list_managed_jobs(&self, f: &ManagedJobFilter) -> Result<Vec<ManagedJob>> {
        managed_dispatch!(self, list_jobs(f))
    }

    /// Read-modify-write of one job and its tasks in a single transaction: `f` sees the stored
    /// rows and changes them; only changed rows are written. Tasks `f` removes are deleted,
    /// tasks it adds are inserted (a repeated `task_idx`: the last one wins). The job id is
    /// kept. Returns what was written; [`crate::ErrorKind::NotFound`] when there is no such job.
    pub async fn update_managed_job<F>(&self, id: i64, f: F) -> Result<ManagedJob>
    where
        F: FnOnce(&mut ManagedJobRow, &mut Vec<ManagedTaskRow>) + Send,
    {
        managed_dispatch!(self, update_job(id, f))
    }

    /// Records an event of the job (of one of its tasks with `task_idx`);
    /// [`crate::ErrorKind::NotFound`] when there is no such job.
    pub async fn add_managed_event(
        &self,
        job_id: i64,
        task_idx: Option<i64>,
        at: i64,
        kind: &str,
        message: &str,
    ) -> Result<()> {
        managed_dispatch!(self, add_event(job_id, task_idx, at, kind, message))
    }

    /// The job's events in the order they were recorded (empty for an unknown job).
    pub async fn managed_events(&self, job_id: i64) -> Result<Vec<ManagedEvent>> {
        managed_dispatch!(self, events(job_id))
    }
}

/// The columns of `managed_jobs`, in [`ManagedJobRow`] order.
macro_rules! job_cols {
    () => {
        "job_id, name, user_name, status, submitted_at, ended_at, failure_reason, \
         cancel_requested, spec, progress, updated_at"
    };
}

/// The columns of `managed_tasks`, in [`ManagedTaskRow`] order.
macro_rules! task_cols {
    () => {
        "job_id, task_idx, name, requested, status, started_at, ended_at, job_duration_s, \
         recovery_count, restarts, failure_reason, cluster, cluster_job_id, cloud, region, zone, \
         updated_at"
    };
}

/// A value bound to a placeholder of a filter's WHERE clause.
enum FilterBind<'a> {
    Text(&'a str),
    Id(i64),
}

/// The WHERE clause (over `managed_jobs`) for `f`, placeholders `$1...`, and their values.
fn filter_clause(f: &ManagedJobFilter) -> (String, Vec<FilterBind<'_>>) {
    let mut conds: Vec<String> = Vec::new();
    let mut binds = Vec::new();
    if !f.include_terminal {
        let list: Vec<String> = MANAGED_TERMINAL_STATUSES
            .iter()
            .map(|s| format!("'{s}'"))
            .collect();
        conds.push(format!("status NOT IN ({})", list.join(", ")));
    }
    if let Some(user) = &f.user {
        binds.push(FilterBind::Text(user));
        conds.push(format!("user_name = ${}", binds.len()));
    }
    if let Some(name) = &f.name {
        binds.push(FilterBind::Text(name));
        conds.push(format!("name = ${}", binds.len()));
    }
    if !f.ids.is_empty() {
        let mut marks = Vec::with_capacity(f.ids.len());
        for &id in &f.ids {
            binds.push(FilterBind::Id(id));
            marks.push(format!("${}", binds.len()));
        }
        conds.push(format!("job_id IN ({})", marks.join(", ")));
    }
    if conds.is_empty() {
        ("1 = 1".to_owned(), binds)
    } else {
        (conds.join(" AND "), binds)
    }
}

/// Pairs jobs (ascending id) with their tasks (ascending job id, then index).
fn attach_tasks(jobs: Vec<ManagedJobRow>, tasks: Vec<ManagedTaskRow>) -> Vec<ManagedJob> {
    let mut tasks = tasks.into_iter().peekable();
    jobs.into_iter()
        .map(|job| {
            // Tasks of jobs the first query did not see (inserted between the two reads on a
            // backend without a snapshot) are skipped.
            while tasks.next_if(|t| t.job_id < job.job_id).is_some() {}
            let mut mine = Vec::new();
            while let Some(t) = tasks.next_if(|t| t.job_id == job.job_id) {
                mine.push(t);
            }
            (job, mine)
        })
        .collect()
}

macro_rules! managed_ops {
    (
        $module:ident, $db:ty, $row:ty, begin = $begin:literal, read = $read:literal,
        for_update = $fu:literal, agg_open = $agg_open:literal, agg_close = $agg_close:literal,
        job_json = $job_json:literal, task_json = $task_json:literal
    ) => {
        mod $module {
            use sqlx::Row;

            use super::*;

            type Pool = sqlx::Pool<$db>;
            type Tx = sqlx::Transaction<'static, $db>;

            fn job_from_row(r: &$row) -> std::result::Result<ManagedJobRow, sqlx::Error> {
                Ok(ManagedJobRow {
                    job_id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    user: r.try_get(2)?,
                    status: r.try_get(3)?,
                    submitted_at: r.try_get(4)?,
                    ended_at: r.try_get(5)?,
                    failure_reason: r.try_get(6)?,
                    cancel_requested: r.try_get(7)?,
                    spec: r.try_get(8)?,
                    progress: r.try_get(9)?,
                    updated_at: r.try_get(10)?,
                })
            }

            fn task_from_row(r: &$row) -> std::result::Result<ManagedTaskRow, sqlx::Error> {
                Ok(ManagedTaskRow {
                    job_id: r.try_get(0)?,
                    task_idx: r.try_get(1)?,
                    name: r.try_get(2)?,
                    requested: r.try_get(3)?,
                    status: r.try_get(4)?,
                    started_at: r.try_get(5)?,
                    ended_at: r.try_get(6)?,
                    job_duration_s: r.try_get(7)?,
                    recovery_count: r.try_get(8)?,
                    restarts: r.try_get(9)?,
                    failure_reason: r.try_get(10)?,
                    cluster: r.try_get(11)?,
                    cluster_job_id: r.try_get(12)?,
                    cloud: r.try_get(13)?,
                    region: r.try_get(14)?,
                    zone: r.try_get(15)?,
                    updated_at: r.try_get(16)?,
                })
            }

            fn tasks_from_rows(rows: &[$row]) -> Result<Vec<ManagedTaskRow>> {
                rows.iter()
                    .map(task_from_row)
                    .collect::<std::result::Result<_, _>>()
                    .ctx("read managed tasks")
            }

            /// Writes one task: a plain insert (a repeated index fails) or, with `upsert`, an
            /// insert that replaces the stored task of that index.
            async fn write_task(
                tx: &mut Tx,
                job_id: i64,
                t: &ManagedTaskRow,
                upsert: bool,
            ) -> Result<()> {
                const INSERT: &str = concat!(
                    "INSERT INTO managed_tasks (",
                    task_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                     $15, $16, $17)"
                );
                const UPSERT: &str = concat!(
                    "INSERT INTO managed_tasks (",
                    task_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                     $15, $16, $17) \
                     ON CONFLICT (job_id, task_idx) DO UPDATE SET name = excluded.name, \
                     requested = excluded.requested, status = excluded.status, \
                     started_at = excluded.started_at, ended_at = excluded.ended_at, \
                     job_duration_s = excluded.job_duration_s, \
                     recovery_count = excluded.recovery_count, restarts = excluded.restarts, \
                     failure_reason = excluded.failure_reason, cluster = excluded.cluster, \
                     cluster_job_id = excluded.cluster_job_id, cloud = excluded.cloud, \
                     region = excluded.region, zone = excluded.zone, \
                     updated_at = excluded.updated_at"
                );
                sqlx::query(if upsert { UPSERT } else { INSERT })
                    .bind(job_id)
                    .bind(t.task_idx)
                    .bind(&t.name)
                    .bind(&t.requested)
                    .bind(&t.status)
                    .bind(t.started_at)
                    .bind(t.ended_at)
                    .bind(t.job_duration_s)
                    .bind(t.recovery_count)
                    .bind(t.restarts)
                    .bind(&t.failure_reason)
                    .bind(&t.cluster)
                    .bind(t.cluster_job_id)
                    .bind(&t.cloud)
                    .bind(&t.region)
                    .bind(&t.zone)
                    .bind(t.updated_at)
                    .execute(&mut **tx)
                    .await
                    .ctx("write managed task")?;
                Ok(())
            }

            pub(super) async fn insert_job(
                pool: &Pool,
                job: &ManagedJobRow,
                tasks: &[ManagedTaskRow],
            ) -> Result<i64> {
                let mut tx = pool
                    .begin_with($begin)
                    .await
                    .ctx("begin managed job insert")?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO managed_jobs (name, user_name, status, submitted_at, ended_at, \
                     failure_reason, cancel_requested, spec, progress, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING job_id",
                )
                .bind(&job.name)
                .bind(&job.user)
                .bind(&job.status)
                .bind(job.submitted_at)
                .bind(job.ended_at)
                .bind(&job.failure_reason)
                .bind(job.cancel_requested)
                .bind(&job.spec)
                .bind(&job.progress)
                .bind(job.updated_at)
                .fetch_one(&mut *tx)
                .await
                .ctx("insert managed job")?;
                for t in tasks {
                    write_task(&mut tx, id, t, false).await?;
                }
                tx.commit().await.ctx("commit managed job insert")?;
                Ok(id)
            }

            async fn read_job<'e, E>(ex: E, id: i64, lock: bool) -> Result<Option<ManagedJobRow>>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let sql = if lock {
                    concat!("SELECT ", job_cols!(), " FROM managed_jobs WHERE job_id = $1", $fu)
                } else {
                    concat!("SELECT ", job_cols!(), " FROM managed_jobs WHERE job_id = $1")
                };
                let row = sqlx::query(sql)
                    .bind(id)
                    .fetch_optional(ex)
                    .await
                    .ctx("read managed job")?;
                row.map(|r| job_from_row(&r).ctx("read managed job")).transpose()
            }

            async fn read_tasks<'e, E>(ex: E, id: i64) -> Result<Vec<ManagedTaskRow>>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    task_cols!(),
                    " FROM managed_tasks WHERE job_id = $1 ORDER BY task_idx"
                ))
                .bind(id)
                .fetch_all(ex)
                .await
                .ctx("read managed tasks")?;
                tasks_from_rows(&rows)
            }

            pub(super) async fn get_job(pool: &Pool, id: i64) -> Result<Option<ManagedJob>> {
                let mut tx = pool.begin_with($read).await.ctx("begin managed job read")?;
                let Some(job) = read_job(&mut *tx, id, false).await? else {
                    return Ok(None);
                };
                let tasks = read_tasks(&mut *tx, id).await?;
                tx.commit().await.ctx("end managed job read")?;
                Ok(Some((job, tasks)))
            }

            fn bind_all_as<'q>(
                mut q: sqlx::query::QueryAs<'q, $db, (String,), <$db as sqlx::Database>::Arguments<'q>>,
                binds: &[FilterBind<'q>],
            ) -> sqlx::query::QueryAs<'q, $db, (String,), <$db as sqlx::Database>::Arguments<'q>> {
                for b in binds {
                    q = match *b {
                        FilterBind::Text(s) => q.bind(s),
                        FilterBind::Id(i) => q.bind(i),
                    };
                }
                q
            }

            /// Each query returns ONE row: the selected rows as a JSON array of arrays (in
            /// the field order of [`ManagedJobRow`] / [`ManagedTaskRow`], which serde reads as
            /// sequences), built inside the database. Fetching 10,000 rows one by one costs
            /// the driver a few microseconds each; one text value and serde_json cost far less.
            pub(super) async fn list_jobs(
                pool: &Pool,
                f: &ManagedJobFilter,
            ) -> Result<Vec<ManagedJob>> {
                let (clause, binds) = filter_clause(f);
                let jobs_sql = format!(
                    concat!("SELECT ", $agg_open, $job_json, $agg_close, " FROM managed_jobs WHERE {}"),
                    clause
                );
                let tasks_sql = format!(
                    concat!(
                        "SELECT ",
                        $agg_open,
                        $task_json,
                        $agg_close,
                        " FROM managed_tasks WHERE job_id IN \
                         (SELECT job_id FROM managed_jobs WHERE {})"
                    ),
                    clause
                );
                let mut tx = pool.begin_with($read).await.ctx("begin managed job listing")?;
                let (jobs,): (String,) = bind_all_as(sqlx::query_as(&jobs_sql), &binds)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("list managed jobs")?;
                let (tasks,): (String,) = bind_all_as(sqlx::query_as(&tasks_sql), &binds)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("list managed tasks")?;
                tx.commit().await.ctx("end managed job listing")?;
                let corrupt = |what: &str, e: serde_json::Error| Error::Corrupt {
                    what: what.to_owned(),
                    reason: e.to_string(),
                };
                let mut jobs: Vec<ManagedJobRow> =
                    serde_json::from_str(&jobs).map_err(|e| corrupt("managed_jobs", e))?;
                let mut tasks: Vec<ManagedTaskRow> =
                    serde_json::from_str(&tasks).map_err(|e| corrupt("managed_tasks", e))?;
                // Usually in order already (a rowid scan), for which these sorts are linear.
                jobs.sort_by_key(|j| j.job_id);
                tasks.sort_by_key(|t| (t.job_id, t.task_idx));
                Ok(attach_tasks(jobs, tasks))
            }

            pub(super) async fn update_job<F>(pool: &Pool, id: i64, f: F) -> Result<ManagedJob>
            where
                F: FnOnce(&mut ManagedJobRow, &mut Vec<ManagedTaskRow>) + Send,
            {
                let mut tx = pool
                    .begin_with($begin)
                    .await
                    .ctx("begin managed job update")?;
                let Some(old_job) = read_job(&mut *tx, id, true).await? else {
                    return Err(Error::ManagedJobNotFound { job_id: id });
                };
                let old_tasks = read_tasks(&mut *tx, id).await?;
                let mut job = old_job.clone();
                let mut tasks = old_tasks.clone();
                f(&mut job, &mut tasks);
                job.job_id = id;
                for t in &mut tasks {
                    t.job_id = id;
                }
                // The last of a repeated index wins; written and returned in index order.
                tasks.reverse();
                tasks.sort_by_key(|t| t.task_idx);
                tasks.dedup_by_key(|t| t.task_idx);
                if job != old_job {
                    sqlx::query(
                        "UPDATE managed_jobs SET name = $2, user_name = $3, status = $4, \
                         submitted_at = $5, ended_at = $6, failure_reason = $7, \
                         cancel_requested = $8, spec = $9, progress = $10, updated_at = $11 \
                         WHERE job_id = $1",
                    )
                    .bind(id)
                    .bind(&job.name)
                    .bind(&job.user)
                    .bind(&job.status)
                    .bind(job.submitted_at)
                    .bind(job.ended_at)
                    .bind(&job.failure_reason)
                    .bind(job.cancel_requested)
                    .bind(&job.spec)
                    .bind(&job.progress)
                    .bind(job.updated_at)
                    .execute(&mut *tx)
                    .await
                    .ctx("update managed job")?;
                }
                for old in &old_tasks {
                    if tasks.binary_search_by_key(&old.task_idx, |t| t.task_idx).is_err() {
                        sqlx::query("DELETE FROM managed_tasks WHERE job_id = $1 AND task_idx = $2")
                            .bind(id)
                            .bind(old.task_idx)
                            .execute(&mut *tx)
                            .await
                            .ctx("delete managed task")?;
                    }
                }
                for t in &tasks {
                    if !old_tasks.contains(t) {
                        write_task(&mut tx, id, t, true).await?;
                    }
                }
                tx.commit().await.ctx("commit managed job update")?;
                Ok((job, tasks))
            }

            pub(super) async fn add_event(
                pool: &Pool,
                job_id: i64,
                task_idx: Option<i64>,
                at: i64,
                kind: &str,
                message: &str,
            ) -> Result<()> {
                let done = sqlx::query(
                    "INSERT INTO managed_job_events (job_id, task_idx, time, kind, message) \
                     SELECT job_id, $2, $3, $4, $5 FROM managed_jobs WHERE job_id = $1",
                )
                .bind(job_id)
                .bind(task_idx)
                .bind(at)
                .bind(kind)
                .bind(message)
                .execute(pool)
                .await
                .ctx("record managed job event")?;
                if done.rows_affected() == 0 {
                    return Err(Error::ManagedJobNotFound { job_id });
                }
                Ok(())
            }

            pub(super) async fn events(pool: &Pool, job_id: i64) -> Result<Vec<ManagedEvent>> {
                let rows: Vec<(i64, Option<i64>, i64, String, String)> = sqlx::query_as(
                    "SELECT job_id, task_idx, time, kind, message FROM managed_job_events \
                     WHERE job_id = $1 ORDER BY id",
                )
                .bind(job_id)
                .fetch_all(pool)
                .await
                .ctx("read managed job events")?;
                Ok(rows
                    .into_iter()
                    .map(|(job_id, task_idx, at, kind, message)| ManagedEvent {
                        job_id,
                        task_idx,
                        at,
                        kind,
                        message,
                    })
                    .collect())
            }
        }
    };
}

managed_ops!(
    sqlite,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    begin = "BEGIN IMMEDIATE",
    read = "BEGIN",
    for_update = "",
    agg_open = "json_group_array(",
    agg_close = ")",
    job_json = "json_array(job_id, name, user_name, status, submitted_at, ended_at, \
                failure_reason, json(iif(cancel_requested, 'true', 'false')), spec, progress, \
                updated_at)",
    task_json = "json_array(job_id, task_idx, name, requested, status, started_at, ended_at, \
                 job_duration_s, recovery_count, restarts, failure_reason, cluster, \
                 cluster_job_id, cloud, region, zone, updated_at)"
);
managed_ops!(
    postgres,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    begin = "BEGIN",
    read = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    for_update = " FOR UPDATE",
    agg_open = "coalesce(json_agg(",
    agg_close = "), '[]'::json)::text",
    job_json = "json_build_array(job_id, name, user_name, status, submitted_at, ended_at, \
                failure_reason, cancel_requested, spec, progress, updated_at)",
    task_json = "json_build_array(job_id, task_idx, name, requested, status, started_at, \
                 ended_at, job_duration_s, recovery_count, restarts, failure_reason, cluster, \
                 cluster_job_id, cloud, region, zone, updated_at)"
);
