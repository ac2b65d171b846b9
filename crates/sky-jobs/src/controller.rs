//! The controller's runtime: one tokio task per active job running the reconcile loop over
//! its tasks in order, a semaphore limiting concurrent launches, the truth in sky-state
//! (written before every effect), an in-memory index of [`JobView`]s for `queue`, and the
//! jobs home (`logs/<id>/<task>.log`, `logs/<id>/controller.log`, `secrets/<id>.json`).
//!
//! Durability: a task's [`TaskState`] is written (with the job's status) before the effect
//! its decision asks for, so a controller killed at any point resumes on [`Controller::start`]:
//! a task recorded `Launching` asks the cluster for the attempt's job (`find_job`) and either
//! follows it or tears the cluster down and launches again (a new attempt, a new job name);
//! a teardown recorded is done again (idempotent). A job whose loop has finished is marked
//! `finished` in its progress; only unfinished jobs are resumed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sky_state::{ManagedJobFilter, ManagedJobRow, ManagedTaskRow, StateDb};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::driver::{ClusterDriver, DriverError, DriverErrorKind, DriverLaunch};
use crate::model::*;
use crate::reconcile::{Effect, Event, Observation, Phase, Policy, TaskState, reconcile};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// `$SKY_HOME/jobs`: `logs/<id>/<task>.log`, `logs/<id>/controller.log`,
    /// `secrets/<id>.json`.
    pub home: PathBuf,
    /// Default 4 (env `SKY_JOBS_MAX_LAUNCHES`).
    pub max_concurrent_launches: usize,
    /// Default 5 s (env `SKY_JOBS_POLL_SECONDS`).
    pub poll_interval: Duration,
    /// Initial and maximum wait between launch retries when no capacity is found: default
    /// (30 s, 300 s) (env `SKY_JOBS_RETRY_SECONDS` = initial).
    pub retry_backoff: (Duration, Duration),
    /// After a user-code failure, wait this then re-probe before calling it FAILED (a
    /// preemption that killed the job shows up meanwhile). Default 5 s.
    pub failure_grace: Duration,
}

impl ControllerConfig {
    /// The defaults, overridden by the `SKY_JOBS_*` variables `vars` returns.
    pub fn from_env(home: PathBuf, vars: &dyn Fn(&str) -> Option<String>) -> Self {
        let secs = |name: &str| {
            vars(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Duration::from_secs_f64)
        };
        let initial = secs("SKY_JOBS_RETRY_SECONDS").unwrap_or(Duration::from_secs(30));
        ControllerConfig {
            home,
            max_concurrent_launches: vars("SKY_JOBS_MAX_LAUNCHES")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(4),
            poll_interval: secs("SKY_JOBS_POLL_SECONDS").unwrap_or(Duration::from_secs(5)),
            retry_backoff: (initial, Duration::from_secs(300).max(initial)),
            failure_grace: secs("SKY_JOBS_FAILURE_GRACE_SECONDS").unwrap_or(Duration::from_secs(5)),
        }
    }
}

/// The controller's own per-job state, kept as JSON in the job row's `progress`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Progress {
    tasks: Vec<TaskState>,
    /// The job's loop has ended: nothing left to resume.
    finished: bool,
}

/// A job in the in-memory index: its view, and what `queue` needs to compute durations.
#[derive(Clone, Debug)]
struct Entry {
    view: JobView,
    /// Per task: (milliseconds run over finished runs, current run start).
    runs: Vec<(i64, Option<i64>)>,
    finished: bool,
}

struct Running {
    cancel: watch::Sender<bool>,
}

/// The managed-jobs controller.
pub struct Controller {
    cfg: ControllerConfig,
    state: StateDb,
    driver: Arc<dyn ClusterDriver>,
    changes: watch::Sender<u64>,
    counter: AtomicU64,
    index: Mutex<BTreeMap<JobId, Entry>>,
    running: Mutex<HashMap<JobId, Running>>,
    launches: Arc<Semaphore>,
    stop: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
    me: std::sync::Weak<Controller>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("home", &self.cfg.home)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const REDACTED: &str = "<redacted>";

impl Controller {
    /// Resumes every unfinished job found in the database (none started twice, no cluster
    /// leaked).
    pub async fn start(
        cfg: ControllerConfig,
        state: StateDb,
        driver: Arc<dyn ClusterDriver>,
    ) -> Result<Arc<Controller>, JobsError> {
        for d in ["logs", "secrets"] {
            std::fs::create_dir_all(cfg.home.join(d))
                .map_err(|e| JobsError::io(&format!("jobs home {}", cfg.home.display()), e))?;
        }
        let (changes, _) = watch::channel(0);
        let ctrl = Arc::new_cyclic(|me| Controller {
            me: me.clone(),
            launches: Arc::new(Semaphore::new(cfg.max_concurrent_launches.max(1))),
            cfg,
            state,
            driver,
            changes,
            counter: AtomicU64::new(0),
            index: Mutex::new(BTreeMap::new()),
            running: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
        });
        let rows = ctrl
            .state
            .list_managed_jobs(&ManagedJobFilter {
                include_terminal: true,
                ..ManagedJobFilter::default()
            })
            .await
            .map_err(JobsError::state)?;
        for (job, tasks) in rows {
            let id = job.job_id as JobId;
            let sub: Option<JobSubmission> = serde_json::from_str(&job.spec).ok();
            let prog: Progress = serde_json::from_str(&job.progress).unwrap_or_default();
            let entry = entry_from_rows(&job, &tasks, &prog);
            let finished = entry.finished;
            ctrl.index.lock().expect("index").insert(id, entry);
            if finished {
                continue;
            }
            match sub {
                Some(sub) if prog.tasks.len() == sub.tasks.len() => {
                    ctrl.spawn(id, job.submitted_at, sub, prog, job.cancel_requested, true);
                }
                _ => {
                    // Unreadable: nothing can be launched for it; say so instead of guessing.
                    let reason = "the controller could not read this job's recorded spec";
                    ctrl.fail_unreadable(id, reason).await;
                }
            }
        }
        Ok(ctrl)
    }

    async fn fail_unreadable(&self, id: JobId, reason: &str) {
        let t = now_ms() / 1000;
        let r = self
            .state
            .update_managed_job(id as i64, |job, tasks| {
                job.status = ManagedJobStatus::FailedController.as_str().into();
                job.failure_reason = Some(reason.into());
                job.ended_at = Some(t);
                job.progress = serde_json::to_string(&Progress {
                    tasks: Vec::new(),
                    finished: true,
                })
                .unwrap_or_default();
                for task in tasks.iter_mut() {
                    if !ManagedJobStatus::parse(&task.status).is_some_and(|s| s.is_terminal()) {
                        task.status = ManagedJobStatus::FailedController.as_str().into();
                        task.failure_reason = Some(reason.into());
                    }
                }
            })
            .await;
        if let Ok((job, tasks)) = r {
            let prog = Progress {
                tasks: Vec::new(),
                finished: true,
            };
            self.index
                .lock()
                .expect("index")
                .insert(id, entry_from_rows(&job, &tasks, &prog));
            self.bump();
        }
    }

    /// Validates (every task parses; the strategy is known), records the job atomically and
    /// starts its loop.
    pub async fn submit(&self, sub: JobSubmission) -> Result<JobId, JobsError> {
        if self.stop.is_cancelled() {
            return Err(JobsError::new(
                JobsErrorKind::Controller,
                "the jobs controller is shutting down; submit again",
            ));
        }
        if sub.tasks.is_empty() {
            return Err(JobsError::invalid(
                "the job has no task: give a task YAML or a command",
            ));
        }
        let mut names = Vec::new();
        for (i, t) in sub.tasks.iter().enumerate() {
            let task = parse_task(t, i)?;
            policy_of(&sub, &task, &self.cfg)?;
            names.push(
                t.name
                    .clone()
                    .or(task.name.clone())
                    .or(sub.name.clone())
                    .unwrap_or_else(|| "sky-managed".into()),
            );
        }
        let name = sub
            .name
            .clone()
            .or_else(|| sub.tasks.first().and_then(|t| t.name.clone()))
            .unwrap_or_else(|| names[0].clone());
        let mut stored = sub.clone();
        stored.name = Some(name.clone());
        for t in &mut stored.tasks {
            for (_, v) in &mut t.secrets {
                *v = REDACTED.to_string();
            }
        }
        let now = now_ms();
        let prog = Progress {
            tasks: sub
                .tasks
                .iter()
                .map(|_| TaskState::new(String::new()))
                .collect(),
            finished: false,
        };
        let row = ManagedJobRow {
            job_id: 0,
            name: name.clone(),
            user: sub.user.clone(),
            status: ManagedJobStatus::Pending.as_str().into(),
            submitted_at: now / 1000,
            ended_at: None,
            failure_reason: None,
            cancel_requested: false,
            spec: serde_json::to_string(&stored).map_err(JobsError::state)?,
            progress: serde_json::to_string(&prog).map_err(JobsError::state)?,
            updated_at: now / 1000,
        };
        let tasks: Vec<ManagedTaskRow> = sub
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| ManagedTaskRow {
                task_idx: i as i64,
                name: names[i].clone(),
                requested: t.requested.clone(),
                status: ManagedJobStatus::Pending.as_str().into(),
                updated_at: now / 1000,
                ..ManagedTaskRow::default()
            })
            .collect();
        let id = self
            .state
            .insert_managed_job(&row, &tasks)
            .await
            .map_err(JobsError::state)? as JobId;
        if sub.tasks.iter().any(|t| !t.secrets.is_empty()) {
            let secrets: Vec<&Vec<(String, String)>> =
                sub.tasks.iter().map(|t| &t.secrets).collect();
            if let Err(e) = crate::logs::write_private(&self.secrets_path(id), &secrets) {
                self.fail_unreadable(id, "the controller could not keep the job's secrets")
                    .await;
                return Err(JobsError::io("writing the job's secret file", e));
            }
        }
        let mut row = row;
        row.job_id = id as i64;
        let mut task_rows = tasks;
        for t in &mut task_rows {
            t.job_id = id as i64;
        }
        self.index
            .lock()
            .expect("index")
            .insert(id, entry_from_rows(&row, &task_rows, &prog));
        self.log_event(id, &format!("submitted job {id} ({name}) by {}", sub.user));
        self.bump();
        if let Some(me) = self.me.upgrade() {
            me.spawn(id, row.submitted_at, stored, prog, false, false);
        }
        Ok(id)
    }

    /// Ascending id.
    pub async fn queue(&self, q: &QueueQuery) -> Result<Vec<JobView>, JobsError> {
        let now = now_ms();
        let idx = self.index.lock().expect("index");
        let pick = |e: &Entry| {
            let v = &e.view;
            (q.ids.is_empty() || q.ids.contains(&v.id))
                && !(q.skip_finished && v.status.is_terminal())
                && (q.all_users || q.user.as_ref().is_none_or(|u| *u == v.user))
        };
        Ok(idx
            .values()
            .filter(|e| pick(e))
            .map(|e| live_view(e, now))
            .collect())
    }

    pub async fn job(&self, id: JobId) -> Result<Option<JobView>, JobsError> {
        let now = now_ms();
        Ok(self
            .index
            .lock()
            .expect("index")
            .get(&id)
            .map(|e| live_view(e, now)))
    }

    /// Asks the selected jobs to cancel; returns the ids a cancel was asked for. `NotFound`
    /// names an unknown id; already-terminal ids are left out (see [`Controller::cancel_report`]).
    pub async fn cancel(&self, sel: &CancelSelector) -> Result<Vec<JobId>, JobsError> {
        Ok(self.cancel_report(sel).await?.0)
    }

    /// Like [`Controller::cancel`], also returning the selected ids that had already ended.
    pub async fn cancel_report(
        &self,
        sel: &CancelSelector,
    ) -> Result<(Vec<JobId>, Vec<JobId>), JobsError> {
        let selected: Vec<(JobId, bool)> = {
            let idx = self.index.lock().expect("index");
            let mut out = Vec::new();
            for id in &sel.ids {
                match idx.get(id) {
                    Some(e) => out.push((*id, e.view.status.is_terminal())),
                    None => {
                        return Err(JobsError::not_found(format!(
                            "no managed job with id {id}: `sky jobs queue` lists them"
                        )));
                    }
                }
            }
            if let Some(name) = &sel.name {
                let before = out.len();
                out.extend(
                    idx.values()
                        .filter(|e| &e.view.name == name)
                        .map(|e| (e.view.id, e.view.status.is_terminal())),
                );
                if out.len() == before {
                    return Err(JobsError::not_found(format!(
                        "no managed job named `{name}`: `sky jobs queue` lists them"
                    )));
                }
            }
            if sel.all {
                out.extend(
                    idx.values()
                        .filter(|e| !e.view.status.is_terminal())
                        .filter(|e| sel.user.as_ref().is_none_or(|u| *u == e.view.user))
                        .map(|e| (e.view.id, false)),
                );
            }
            if sel.ids.is_empty() && sel.name.is_none() && !sel.all {
                return Err(JobsError::invalid(
                    "nothing to cancel: give job ids, -n NAME or -a",
                ));
            }
            out.sort_unstable();
            out.dedup();
            out
        };
        let (mut asked, mut done) = (Vec::new(), Vec::new());
        for (id, terminal) in selected {
            if terminal {
                done.push(id);
                continue;
            }
            let r = self
                .state
                .update_managed_job(id as i64, |job, _| job.cancel_requested = true)
                .await
                .map_err(JobsError::state)?;
            if ManagedJobStatus::parse(&r.0.status).is_some_and(|s| s.is_terminal()) {
                done.push(id);
                continue;
            }
            if let Some(r) = self.running.lock().expect("running").get(&id) {
                let _ = r.cancel.send(true);
            }
            self.log_event(id, "cancel requested");
            asked.push(id);
        }
        Ok((asked, done))
    }

    /// Task `task`'s run log (kept after the job and its cluster are gone).
    pub fn log_path(&self, id: JobId, task: u32) -> PathBuf {
        self.cfg
            .home
            .join("logs")
            .join(id.to_string())
            .join(format!("{task}.log"))
    }

    /// The job's controller-side events, human-readable lines.
    pub fn controller_log_path(&self, id: JobId) -> PathBuf {
        self.cfg
            .home
            .join("logs")
            .join(id.to_string())
            .join("controller.log")
    }

    fn secrets_path(&self, id: JobId) -> PathBuf {
        self.cfg.home.join("secrets").join(format!("{id}.json"))
    }

    /// Bumped on every status change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Jobs whose loop still runs (non-terminal, or a failed task's cluster still kept).
    pub fn active_jobs(&self) -> usize {
        self.running.lock().expect("running").len()
    }

    /// Stops the loops without changing job states (a restart resumes them).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn bump(&self) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.changes.send_replace(n);
    }

    /// Appends a line to the job's controller log (best effort: the DB is the truth).
    fn log_event(&self, id: JobId, line: &str) {
        crate::logs::append_line(&self.controller_log_path(id), now_ms(), line);
    }

    fn spawn(
        self: &Arc<Self>,
        id: JobId,
        submitted_at: i64,
        sub: JobSubmission,
        prog: Progress,
        cancel_requested: bool,
        resumed: bool,
    ) {
        let (tx, rx) = watch::channel(cancel_requested);
        self.running
            .lock()
            .expect("running")
            .insert(id, Running { cancel: tx });
        let me = self.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                () = stop.cancelled() => {}
                () = me.clone().run_job(id, submitted_at, sub, prog, rx, resumed) => {}
            }
            me.running.lock().expect("running").remove(&id);
        });
    }

    /// The job's loop: its tasks in order, each through the reconcile loop.
    async fn run_job(
        self: Arc<Self>,
        id: JobId,
        submitted_at: i64,
        sub: JobSubmission,
        mut prog: Progress,
        mut cancel: watch::Receiver<bool>,
        mut resumed: bool,
    ) {
        let secrets: Vec<Vec<(String, String)>> = if sub.tasks.iter().any(|t| !t.secrets.is_empty())
        {
            match std::fs::read(self.secrets_path(id))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(s) => s,
                None => {
                    self.fail_unreadable(id, "the job's secret file is gone; submit the job again")
                        .await;
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let name = sub.name.clone().unwrap_or_else(|| "sky-managed".into());
        for i in 0..sub.tasks.len() {
            let mut ts = sub.tasks[i].clone();
            if let Some(s) = secrets.get(i) {
                ts.secrets = s.clone();
            }
            let (task, pol) = match parse_task(&ts, i).and_then(|t| {
                let p = policy_of(&sub, &t, &self.cfg)?;
                Ok((t, p))
            }) {
                Ok(x) => x,
                Err(e) => {
                    let st = &mut prog.tasks[i];
                    st.status = ManagedJobStatus::FailedController;
                    st.failure_reason = Some(format!("the recorded task no longer parses: {e}"));
                    st.phase = Phase::Done;
                    break;
                }
            };
            if prog.tasks[i].cluster.is_empty() {
                let tname = task.name.clone().unwrap_or_else(|| name.clone());
                prog.tasks[i].cluster = cluster_name(&tname, id);
            }
            let task_id = format!("sky-managed-{submitted_at}_{name}_{id}-{i}");
            let envs = [
                ("SKYPILOT_TASK_ID".to_string(), task_id),
                ("SKYPILOT_MANAGED_JOB_ID".to_string(), id.to_string()),
            ];
            let secret_keys: Vec<String> = ts.secrets.iter().map(|(k, _)| k.clone()).collect();
            let mut event = Event::Tick;
            let mut logs: Option<LogFollow> = None;
            loop {
                let st = prog.tasks[i].clone();
                let obs = Observation {
                    event: std::mem::replace(&mut event, Event::Tick),
                    cancel_requested: *cancel.borrow(),
                    resumed,
                };
                resumed = false;
                let a = reconcile(&st, &pol, &obs, now_ms());
                // The attempt's job ended by itself: let the log copy reach the log's end (bounded)
                // before the end is recorded, so a reader that stops at the end has every line.
                if matches!(st.phase, Phase::Running)
                    && matches!(
                        a.next.phase,
                        Phase::Downing {
                            cancel_job: None,
                            ..
                        } | Phase::Kept { .. }
                            | Phase::Done
                    )
                    && let Some(l) = logs.as_mut()
                {
                    let _ = tokio::time::timeout(LOG_DRAIN, &mut l.done).await;
                }
                if a.next != st {
                    prog.tasks[i] = a.next.clone();
                    self.persist(id, &prog, Some((i, &st))).await;
                }
                let st = a.next;
                // Follow the run log while the attempt's job is known.
                match (&st.phase, st.cluster_job_id) {
                    (Phase::Running, Some(job))
                        if logs.as_ref().map(|l| l.attempt) != Some(st.attempt) =>
                    {
                        if let Some(l) = logs.take() {
                            l.token.cancel();
                        }
                        let token = self.stop.child_token();
                        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
                        let (d, c, out, t2, attempt) = (
                            self.driver.clone(),
                            st.cluster.clone(),
                            self.log_path(id, i as u32),
                            token.clone(),
                            st.attempt,
                        );
                        self.tasks.spawn(async move {
                            if let Some(dir) = out.parent() {
                                let _ = std::fs::create_dir_all(dir);
                            }
                            // A controller that restarts mid-attempt copies the attempt's log
                            // again from its start: cut what the last copy wrote first.
                            if let Err(e) = crate::logs::rewind_for_attempt(&out, attempt) {
                                eprintln!("[sky-jobs] {}: {e}", out.display());
                            }
                            let _ = d.stream_logs(&c, job, &out, &t2).await;
                            let _ = done_tx.send(());
                        });
                        logs = Some(LogFollow {
                            attempt: st.attempt,
                            token,
                            done,
                        });
                    }
                    (Phase::Running, _) => {}
                    _ => {
                        if let Some(l) = logs.take() {
                            l.token.cancel();
                        }
                    }
                }
                event = match a.effect {
                    Effect::Stop => break,
                    Effect::Wait { until_ms } => {
                        let d = Duration::from_millis((until_ms - now_ms()).max(0) as u64);
                        if *cancel.borrow() {
                            tokio::time::sleep(d).await;
                        } else {
                            tokio::select! {
                                () = tokio::time::sleep(d) => {}
                                _ = cancel.changed() => {}
                            }
                        }
                        Event::Tick
                    }
                    Effect::Launch { blocked, region } => {
                        let req = DriverLaunch {
                            cluster: st.cluster.clone(),
                            task: task.clone(),
                            job_name: st.job_name(id, i as u32),
                            envs: envs
                                .iter()
                                .cloned()
                                .chain(ts.secrets.iter().cloned())
                                .collect(),
                            secret_keys: secret_keys_clone(&secret_keys),
                            blocked,
                            region,
                        };
                        self.log_event(
                            id,
                            &format!(
                                "task {i}: launching {} (attempt {}){}",
                                req.cluster,
                                st.attempt,
                                describe_rule(&req)
                            ),
                        );
                        let permit = match self.launches.clone().try_acquire_owned() {
                            Ok(p) => Ok(p),
                            Err(_) => {
                                // Waiting for a launch slot is PENDING (SkyPilot: waiting
                                // for the scheduler); a recovery stays RECOVERING.
                                let first = prog.tasks[i].status == ManagedJobStatus::Starting;
                                if first {
                                    prog.tasks[i].status = ManagedJobStatus::Pending;
                                    self.persist(id, &prog, None).await;
                                }
                                let p = self.launch_slot(&mut cancel).await;
                                if first && p.is_ok() {
                                    prog.tasks[i].status = ManagedJobStatus::Starting;
                                    self.persist(id, &prog, None).await;
                                }
                                p
                            }
                        };
                        Event::Launched(match permit {
                            Ok(p) => self.launch(&req, &mut cancel, p).await,
                            Err(e) => Err(e),
                        })
                    }
                    Effect::FindJob => Event::Found(
                        self.driver
                            .find_job(&st.cluster, &st.job_name(id, i as u32))
                            .await,
                    ),
                    Effect::Probe => Event::Probed(
                        self.driver
                            .probe(&st.cluster, st.cluster_job_id.unwrap_or(0))
                            .await,
                    ),
                    Effect::Down { cancel_job } => {
                        if let Some(j) = cancel_job {
                            let _ = self.driver.cancel_job(&st.cluster, j).await;
                        }
                        let r = self.driver.down(&st.cluster).await;
                        if let Err(e) = &r {
                            self.log_event(
                                id,
                                &format!(
                                    "task {i}: tearing down {} failed: {e}; retrying",
                                    st.cluster
                                ),
                            );
                        }
                        Event::Downed(r)
                    }
                };
            }
            if let Some(l) = logs.take() {
                l.token.cancel();
            }
            if prog.tasks[i].status != ManagedJobStatus::Succeeded {
                break;
            }
        }
        // The rest of a pipeline after a failure or a cancel.
        let failed_at = prog
            .tasks
            .iter()
            .position(|t| t.status != ManagedJobStatus::Succeeded);
        if let Some(f) = failed_at {
            let now = now_ms();
            for t in prog.tasks.iter_mut().skip(f + 1) {
                if !t.status.is_terminal() {
                    t.status = ManagedJobStatus::Cancelled;
                    t.failure_reason = Some("an earlier task failed".into());
                    t.phase = Phase::Done;
                    t.ended_ms = Some(now);
                }
            }
        }
        prog.finished = true;
        self.persist(id, &prog, None).await;
        let _ = std::fs::remove_file(self.secrets_path(id));
    }

    /// Waits for a slot of the launch semaphore (or the job's cancel).
    async fn launch_slot(
        &self,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, DriverError> {
        loop {
            if *cancel.borrow() {
                return Err(cancelled_before_launch());
            }
            tokio::select! {
                p = self.launches.clone().acquire_owned() => {
                    return p.map_err(|_| cancelled_before_launch());
                }
                r = cancel.changed() => if r.is_err() { return Err(cancelled_before_launch()) },
            }
        }
    }

    /// One launch, holding a slot of the semaphore; a cancel of the job cancels the launch.
    async fn launch(
        &self,
        req: &DriverLaunch,
        cancel: &mut watch::Receiver<bool>,
        _permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<crate::driver::DriverLaunched, DriverError> {
        if *cancel.borrow() {
            return Err(cancelled_before_launch());
        }
        let token = CancellationToken::new();
        let fut = self.driver.launch(req, &token);
        tokio::pin!(fut);
        let mut asked = false;
        loop {
            if !asked && *cancel.borrow() {
                token.cancel();
                asked = true;
            }
            tokio::select! {
                r = &mut fut => return r,
                r = cancel.changed(), if !asked => {
                    if r.is_err() {
                        asked = true;
                    }
                }
            }
        }
    }

    /// Writes the job's progress and its task rows (retrying until the database takes it: an
    /// effect never runs without its intent recorded), then updates the index.
    async fn persist(&self, id: JobId, prog: &Progress, changed: Option<(usize, &TaskState)>) {
        let json = serde_json::to_string(prog).unwrap_or_default();
        let status = job_status(&prog.tasks);
        let now = now_ms();
        let finished = prog.finished;
        let mut wait = Duration::from_millis(100);
        let written = loop {
            let r = self
                .state
                .update_managed_job(id as i64, |job, tasks| {
                    job.progress = json.clone();
                    job.status = status.as_str().into();
                    job.updated_at = now / 1000;
                    job.failure_reason = prog
                        .tasks
                        .iter()
                        .find(|t| t.status != ManagedJobStatus::Succeeded)
                        .and_then(|t| t.failure_reason.clone());
                    if finished || status.is_terminal() {
                        job.ended_at.get_or_insert(now / 1000);
                    }
                    for (row, st) in tasks.iter_mut().zip(&prog.tasks) {
                        fill_task_row(row, st, now);
                    }
                })
                .await;
            match r {
                Ok(w) => break w,
                Err(e) if e.kind() == sky_state::ErrorKind::NotFound => return,
                Err(e) => {
                    self.log_event(
                        id,
                        &format!("recording the job's state failed ({e}); retrying"),
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        };
        if let Some((i, before)) = changed
            && let Some(after) = prog.tasks.get(i)
            && (after.status != before.status || after.phase != before.phase)
        {
            self.log_event(id, &describe_change(i, before, after));
        }
        self.index
            .lock()
            .expect("index")
            .insert(id, entry_from_rows(&written.0, &written.1, prog));
        self.bump();
    }
}

fn cancelled_before_launch() -> DriverError {
    DriverError::new(
        DriverErrorKind::Cancelled,
        "cancelled before the launch started",
    )
}

/// How long a task whose job ended waits for its log copy to reach the end before its cluster
/// is torn down.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// The copy of an attempt's run log into the kept log.
struct LogFollow {
    attempt: u32,
    token: CancellationToken,
    /// Resolves (or errs) when the copy ended.
    done: tokio::sync::oneshot::Receiver<()>,
}

fn secret_keys_clone(k: &[String]) -> Vec<String> {
    k.to_vec()
}

fn describe_rule(req: &DriverLaunch) -> String {
    let mut s = String::new();
    if !req.blocked.is_empty() {
        let b: Vec<String> = req
            .blocked
            .iter()
            .map(|b| {
                format!(
                    "{}/{}",
                    b.cloud.as_deref().unwrap_or("*"),
                    b.region.as_deref().unwrap_or("*")
                )
            })
            .collect();
        s.push_str(&format!(", not in {}", b.join(", ")));
    }
    if let Some((c, r)) = &req.region {
        s.push_str(&format!(", {c}/{r} first"));
    }
    s
}

fn describe_change(i: usize, before: &TaskState, after: &TaskState) -> String {
    let mut s = format!("task {i}: {}", after.status);
    if before.status != after.status {
        s = format!("task {i}: {} -> {}", before.status, after.status);
    }
    let phase = match &after.phase {
        Phase::Waiting => "waiting to launch".to_string(),
        Phase::Launching => format!("launching {}", after.cluster),
        Phase::Running => match &after.placement {
            Some(p) => format!(
                "job {} on {} ({}/{})",
                after.cluster_job_id.unwrap_or(0),
                after.cluster,
                p.cloud,
                p.region
            ),
            None => format!(
                "job {} on {}",
                after.cluster_job_id.unwrap_or(0),
                after.cluster
            ),
        },
        Phase::Downing { .. } => format!("tearing down {}", after.cluster),
        Phase::Kept { .. } => format!("keeping {} for debugging (keep_on_failure)", after.cluster),
        Phase::Done => "done".into(),
    };
    s.push_str(&format!(" ({phase})"));
    if let Some(r) = &after.failure_reason
        && before.failure_reason.as_ref() != Some(r)
    {
        s.push_str(&format!(": {r}"));
    }
    s
}

/// Parses a submitted task, its secrets put back.
fn parse_task(t: &TaskSubmission, i: usize) -> Result<sky_spec::Task, JobsError> {
    let opts = sky_spec::ParseOptions {
        secret_overrides: t.secrets.iter().cloned().collect(),
        ..sky_spec::ParseOptions::default()
    };
    match sky_spec::parse_task_file(&t.yaml, &opts) {
        Ok(sky_spec::TaskFile::Task(task)) => Ok(*task),
        Ok(sky_spec::TaskFile::Pipeline(_)) => Err(JobsError::invalid(format!(
            "task {i} of the job is itself a pipeline: send each task as its own document"
        ))),
        Err(d) => Err(JobsError::invalid(format!(
            "task {i} of the job is invalid: {d}"
        ))),
    }
}

/// The job's policy for one task: its `job_recovery` with the submission's overrides.
fn policy_of(
    sub: &JobSubmission,
    task: &sky_spec::Task,
    cfg: &ControllerConfig,
) -> Result<Policy, JobsError> {
    let cands = task.resources.candidates();
    let jr = cands.iter().find_map(|r| r.job_recovery.clone());
    let strategy = match (sub.strategy, jr.as_ref().and_then(|j| j.strategy.clone())) {
        (Some(s), _) => s,
        (None, Some(s)) => RecoveryStrategy::parse(&s)?,
        (None, None) => RecoveryStrategy::default(),
    };
    Ok(Policy {
        strategy,
        max_restarts_on_errors: jr.as_ref().map_or(0, |j| j.max_restarts_on_errors),
        recover_on_exit_codes: jr
            .as_ref()
            .map(|j| {
                j.recover_on_exit_codes
                    .iter()
                    .map(|c| i32::from(*c))
                    .collect()
            })
            .unwrap_or_default(),
        pinned: cands.iter().any(|r| r.region.is_some() || r.zone.is_some()),
        max_duration_s: sub.max_duration,
        keep_on_failure_s: sub.keep_on_failure,
        poll_ms: ms(cfg.poll_interval).max(1),
        grace_ms: ms(cfg.failure_grace),
        backoff_initial_ms: ms(cfg.retry_backoff.0),
        backoff_max_ms: ms(cfg.retry_backoff.1.max(cfg.retry_backoff.0)),
    })
}

/// The job's status: the first non-SUCCEEDED task's.
fn job_status(tasks: &[TaskState]) -> ManagedJobStatus {
    tasks
        .iter()
        .map(|t| t.status)
        .find(|s| *s != ManagedJobStatus::Succeeded)
        .unwrap_or(ManagedJobStatus::Succeeded)
}

fn fill_task_row(row: &mut ManagedTaskRow, st: &TaskState, now: i64) {
    row.status = st.status.as_str().into();
    row.started_at = st.started_ms.map(|m| m / 1000);
    row.ended_at = st.ended_ms.map(|m| m / 1000);
    row.job_duration_s = st.job_duration_ms(now) / 1000;
    row.recovery_count = i64::from(st.recovery_count);
    row.restarts = i64::from(st.restarts);
    row.failure_reason = st.failure_reason.clone();
    row.cluster = (!st.cluster.is_empty()).then(|| st.cluster.clone());
    row.cluster_job_id = st.cluster_job_id.map(|j| j as i64);
    row.cloud = st.placement.as_ref().map(|p| p.cloud.clone());
    row.region = st.placement.as_ref().map(|p| p.region.clone());
    row.zone = st.placement.as_ref().and_then(|p| p.zone.clone());
    row.updated_at = now / 1000;
}

fn entry_from_rows(job: &ManagedJobRow, tasks: &[ManagedTaskRow], prog: &Progress) -> Entry {
    let status = ManagedJobStatus::parse(&job.status).unwrap_or(ManagedJobStatus::FailedController);
    let views: Vec<TaskView> = tasks
        .iter()
        .map(|t| TaskView {
            index: t.task_idx as u32,
            name: t.name.clone(),
            requested: t.requested.clone(),
            status: ManagedJobStatus::parse(&t.status)
                .unwrap_or(ManagedJobStatus::FailedController),
            started_at: t.started_at,
            ended_at: t.ended_at,
            job_duration_s: t.job_duration_s.max(0) as u64,
            recovery_count: t.recovery_count.max(0) as u32,
            restarts: t.restarts.max(0) as u32,
            failure_reason: t.failure_reason.clone(),
            cluster: t.cluster.clone(),
            infra: t.cloud.as_ref().map(|c| match (&t.region, &t.zone) {
                (Some(r), Some(z)) => format!("{c}/{r} ({z})"),
                (Some(r), None) => format!("{c}/{r}"),
                _ => c.clone(),
            }),
        })
        .collect();
    let runs = prog
        .tasks
        .iter()
        .map(|t| (t.ran_ms, t.run_since_ms))
        .collect();
    Entry {
        view: JobView {
            id: job.job_id as JobId,
            name: job.name.clone(),
            user: job.user.clone(),
            status,
            submitted_at: job.submitted_at,
            ended_at: job.ended_at,
            failure_reason: job.failure_reason.clone(),
            recovery_count: views.iter().map(|t| t.recovery_count).sum(),
            job_duration_s: views.iter().map(|t| t.job_duration_s).sum(),
            total_duration_s: 0,
            tasks: views,
        },
        runs,
        finished: prog.finished || (status.is_terminal() && prog.tasks.is_empty()),
    }
}

/// The view with its durations as of `now`.
fn live_view(e: &Entry, now: i64) -> JobView {
    let mut v = e.view.clone();
    for (t, (ran, since)) in v.tasks.iter_mut().zip(&e.runs) {
        if let Some(s) = since {
            t.job_duration_s = ((ran + (now - s).max(0)) / 1000) as u64;
        }
    }
    v.job_duration_s = v.tasks.iter().map(|t| t.job_duration_s).sum();
    let end = v.ended_at.unwrap_or(now / 1000);
    v.total_duration_s = (end - v.submitted_at).max(0) as u64;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc() {
        assert_eq!(crate::logs::stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            crate::logs::stamp(1_796_673_535_000),
            "2026-12-07T19:58:55Z"
        );
    }

    #[test]
    fn config_from_env() {
        let c = ControllerConfig::from_env(PathBuf::from("/j"), &|k| match k {
            "SKY_JOBS_MAX_LAUNCHES" => Some("9".into()),
            "SKY_JOBS_POLL_SECONDS" => Some("0.25".into()),
            "SKY_JOBS_RETRY_SECONDS" => Some("2".into()),
            _ => None,
        });
        assert_eq!(c.max_concurrent_launches, 9);
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(
            c.retry_backoff,
            (Duration::from_secs(2), Duration::from_secs(300))
        );
        let d = ControllerConfig::from_env(PathBuf::from("/j"), &|_| None);
        assert_eq!(d.max_concurrent_launches, 4);
        assert_eq!(d.poll_interval, Duration::from_secs(5));
        assert_eq!(d.failure_grace, Duration::from_secs(5));
    }
}
