//! The head: job table, queue, per-job drivers, logs and autostop.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use sky_sched::{Command, DequeueReason, Event, Placement, Scheduler};

use crate::config::{AgentConfig, ClusterInfo};
use crate::node::{self, NodeCtx, RankEvent};
use crate::protocol::{
    ExecSpec, JobRecord, JobSpec, JobStatus, Reply, Utf8Chunker, WaitFor, write_line,
};
use crate::sched;
use crate::store::{
    JobStore, StoredJob, create_private_dir_all, open_private_append, write_atomic,
};
use crate::{AgentClient, SubmitError};
use crate::{AgentError, clock};

/// Where a rank runs.
#[derive(Clone, Debug)]
enum Target {
    Local,
    Remote(AgentClient),
}

#[derive(Clone, Debug)]
struct RankPlan {
    ip: String,
    target: Target,
    cuda: Option<String>,
    gpus: u32,
}

#[derive(Debug)]
struct Running {
    cancel: CancellationToken,
    done: watch::Receiver<bool>,
}

#[derive(Debug)]
struct HeadState {
    store: JobStore,
    /// The queue and every node's free resources (gang scheduling with backfill).
    sched: Scheduler,
    running: HashMap<u64, Running>,
    last_ts: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct AutostopSetting {
    idle_minutes: i64,
    down: bool,
    wait_for: WaitFor,
}

#[derive(Debug)]
struct Autostop {
    setting: Option<AutostopSetting>,
    since: Instant,
    last_active: Instant,
    fired: bool,
    /// After a failed hook: when to run it again (one autostop minute later).
    retry_at: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Head {
    cluster: ClusterInfo,
    my_rank: u32,
    node: NodeCtx,
    sky_dir: PathBuf,
    hook: Vec<String>,
    tick: Duration,
    minute: Duration,
    state: Mutex<HeadState>,
    autostop: Mutex<Autostop>,
    /// Bumped on every state change and log write; log followers wait on it.
    changed: watch::Sender<u64>,
    stop: CancellationToken,
}

enum PhaseEnd {
    Done(Vec<i32>),
    Cancelled(Vec<i32>),
    Stopped,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Setup,
    Run,
}

impl Head {
    /// Loads the job table; jobs a previous agent left non-terminal become FAILED_DRIVER (their
    /// local processes were already killed by the caller; remote ranks are asked to die here).
    pub(crate) fn new(
        cfg: &AgentConfig,
        node: NodeCtx,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, AgentError> {
        let cluster = cfg
            .cluster
            .clone()
            .ok_or_else(|| AgentError::Config("the head needs a cluster file".into()))?;
        if cluster.nodes.is_empty() {
            return Err(AgentError::Config("the cluster file lists no nodes".into()));
        }
        if !cluster.nodes.iter().any(|n| n.rank == cfg.rank) {
            return Err(AgentError::Config(format!(
                "the cluster file has no node with this agent's rank {}",
                cfg.rank
            )));
        }
        if let Some(n) = cluster
            .nodes
            .iter()
            .find(|n| n.rank != cfg.rank && n.agent_addr.is_none())
        {
            return Err(AgentError::Config(format!(
                "node {} ({}) in the cluster file has no agent_addr; start the worker agents first and record their addresses",
                n.rank, n.ip
            )));
        }
        let sky_dir = cfg.sky_dir();
        let mut store = JobStore::load(&sky_dir)?;
        let orphans = store.fail_non_terminal();
        if !orphans.is_empty() {
            crate::log(&format!(
                "jobs {orphans:?} of a previous agent → FAILED_DRIVER"
            ));
            store.save()?;
            for n in &cluster.nodes {
                if n.rank != cfg.rank
                    && let Some(addr) = n.agent_addr
                {
                    for &id in &orphans {
                        let agent = AgentClient::new(addr, node.token.clone());
                        tokio::spawn(node::kill_remote(agent, id));
                    }
                }
            }
        }
        let setting = std::fs::read(sky_dir.join("autostop.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Option<AutostopSetting>>(&b).ok())
            .flatten();
        let now = Instant::now();
        Ok(Arc::new(Self {
            my_rank: cfg.rank,
            node,
            sky_dir,
            hook: cfg.autostop_hook.clone(),
            tick: cfg.autostop_tick,
            minute: cfg.autostop_minute,
            state: Mutex::new(HeadState {
                sched: Scheduler::new(
                    sched::node_specs(&cluster.nodes),
                    sky_sched::Config {
                        starvation_bound_s: cfg.starvation_bound.as_secs_f64(),
                    },
                ),
                store,
                running: HashMap::new(),
                last_ts: 0,
            }),
            cluster,
            autostop: Mutex::new(Autostop {
                setting,
                since: now,
                last_active: now,
                fired: false,
                retry_at: None,
            }),
            changed: watch::Sender::new(0),
            stop,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, HeadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Waits until no state write is in progress (used after `stop` is cancelled).
    pub(crate) fn barrier(&self) {
        drop(self.lock());
    }

    fn save(&self, st: &mut HeadState) {
        if let Err(e) = st.store.flush() {
            crate::log(&format!("failed to persist the job table: {e}"));
        }
    }

    // ---- requests ----

    pub(crate) fn submit(self: &Arc<Self>, spec: JobSpec) -> Result<u64, SubmitError> {
        if spec.num_nodes == 0 {
            return Err(SubmitError::InvalidSpec(
                "num_nodes must be at least 1".into(),
            ));
        }
        if let Some((name, n)) = &spec.accelerators
            && (name.is_empty() || !n.is_finite() || *n < 0.0)
        {
            return Err(SubmitError::InvalidSpec(format!(
                "invalid accelerator demand {name}:{n}"
            )));
        }
        if spec.cpus.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return Err(SubmitError::InvalidSpec(
                "cpus must be a non-negative number".into(),
            ));
        }
        let demand = sched::demand(&spec);
        let mut st = self.lock();
        st.sched
            .check(&demand)
            .map_err(|e| SubmitError::NeverFits(e.to_string()))?;
        let micros = clock::now_micros().max(st.last_ts + 1);
        st.last_ts = micros;
        let ts = clock::log_timestamp(micros);
        let log_dir = self.node.home.join("sky_logs").join(format!("sky-{ts}"));
        create_private_dir_all(&log_dir.join("tasks"))
            .and_then(|()| open_private_append(&log_dir.join("run.log")).map(drop))
            .map_err(|e| SubmitError::LogDir {
                path: log_dir.clone(),
                message: e.to_string(),
            })?;
        let id = st.store.alloc_id();
        let record = JobRecord {
            id,
            name: spec.name.clone(),
            user: spec.user.clone(),
            submitted_at: clock::now_unix(),
            started_at: None,
            ended_at: None,
            status: JobStatus::Pending,
            exit_codes: Vec::new(),
            log_dir: log_dir.display().to_string(),
            resources: sched::describe(&spec),
            num_nodes: spec.num_nodes,
        };
        st.store.insert(StoredJob {
            record,
            spec,
            run_timestamp: ts,
        });
        let cmds = st
            .sched
            .handle(Event::Submit { job: id, demand }, clock::now_unix());
        self.run_commands(&mut st, cmds);
        self.save(&mut st);
        drop(st);
        self.bump();
        Ok(id)
    }

    pub(crate) fn queue(&self, skip_finished: bool, user: Option<&str>) -> Vec<JobRecord> {
        self.lock()
            .store
            .jobs()
            .iter()
            .map(|j| &j.record)
            .filter(|r| !(skip_finished && r.status.is_terminal()))
            .filter(|r| user.is_none_or(|u| r.user == u))
            .cloned()
            .collect()
    }

    /// Cancels, then waits (bounded) until the cancelled running jobs' processes are gone.
    pub(crate) async fn cancel(self: &Arc<Self>, ids: &[u64], all: bool) -> Vec<u64> {
        let mut cancelled = Vec::new();
        let mut waits = Vec::new();
        {
            let mut st = self.lock();
            let targets: Vec<u64> = if all {
                st.store
                    .jobs()
                    .iter()
                    .filter(|j| !j.record.status.is_terminal())
                    .map(|j| j.record.id)
                    .collect()
            } else {
                ids.to_vec()
            };
            for id in targets {
                let cmds = st
                    .sched
                    .handle(Event::Cancel { job: id }, clock::now_unix());
                let hit = cmds.iter().any(|c| {
                    matches!(c, Command::Kill { job, .. } | Command::Dequeue { job, .. } if *job == id)
                });
                self.run_commands(&mut st, cmds);
                if hit {
                    cancelled.push(id);
                    if let Some(r) = st.running.get(&id) {
                        waits.push(r.done.clone());
                    }
                }
            }
            self.save(&mut st);
        }
        self.bump();
        let limit = self.node.grace + Duration::from_secs(10);
        for mut w in waits {
            let _ = tokio::time::timeout(limit, w.wait_for(|d| *d)).await;
        }
        cancelled
    }

    fn status_of(&self, id: u64) -> Option<(JobStatus, Vec<i32>, PathBuf)> {
        let st = self.lock();
        st.store.get(id).map(|j| {
            (
                j.record.status,
                j.record.exit_codes.clone(),
                PathBuf::from(&j.record.log_dir),
            )
        })
    }

    /// Streams `run.log` of a job (the latest when `id` is None).
    pub(crate) async fn stream_logs(
        &self,
        id: Option<u64>,
        follow: bool,
        tail: Option<usize>,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
    ) -> std::io::Result<()> {
        let id = match id.or_else(|| self.lock().store.jobs().last().map(|j| j.record.id)) {
            Some(id) => id,
            None => {
                let message = "no jobs on this cluster yet".to_string();
                return write_line(writer, &Reply::Error { message }).await;
            }
        };
        let Some((_, _, log_dir)) = self.status_of(id) else {
            let message = format!("job {id} not found; `sky queue` lists the jobs");
            return write_line(writer, &Reply::Error { message }).await;
        };
        let path = log_dir.join("run.log");
        let mut pos = match tail {
            Some(n) => tail_offset(&path, n),
            None => 0,
        };
        let mut rx = self.changed.subscribe();
        let mut chunker = Utf8Chunker::default();
        let mut probe = [0u8; 64];
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            rx.mark_unchanged();
            let (status, codes, _) = self.status_of(id).unwrap_or((
                JobStatus::FailedDriver,
                Vec::new(),
                log_dir.clone(),
            ));
            // Read everything written so far (a terminal status implies all output is on disk).
            if let Ok(mut f) = File::open(&path)
                && f.seek(SeekFrom::Start(pos)).is_ok()
            {
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    pos += n as u64;
                    let data = chunker.push(&buf[..n]);
                    if !data.is_empty() {
                        write_line(writer, &Reply::Log { data }).await?;
                    }
                }
            }
            if !follow || status.is_terminal() {
                let data = chunker.finish();
                if !data.is_empty() {
                    write_line(writer, &Reply::Log { data }).await?;
                }
                let end = Reply::LogEnd {
                    job_id: id,
                    status,
                    exit_codes: codes,
                };
                return write_line(writer, &end).await;
            }
            tokio::select! {
                _ = rx.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                r = reader.read(&mut probe) => if matches!(r, Ok(0) | Err(_)) { return Ok(()) },
            }
        }
    }

    pub(crate) fn set_autostop(&self, idle_minutes: i64, down: bool, wait_for: WaitFor) {
        let setting = (idle_minutes >= 0).then_some(AutostopSetting {
            idle_minutes,
            down,
            wait_for,
        });
        let now = Instant::now();
        {
            let mut a = self.autostop.lock().unwrap_or_else(|e| e.into_inner());
            *a = Autostop {
                setting,
                since: now,
                last_active: now,
                fired: false,
                retry_at: None,
            };
        }
        if let Ok(bytes) = serde_json::to_vec(&setting)
            && let Err(e) = write_atomic(&self.sky_dir.join("autostop.json"), &bytes)
        {
            crate::log(&format!("failed to persist the autostop setting: {e}"));
        }
    }

    /// The autostop loop: every tick, checks idleness and fires the hook once.
    pub(crate) async fn autostop_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let busy_jobs = {
                let st = self.lock();
                st.store
                    .jobs()
                    .iter()
                    .any(|j| !j.record.status.is_terminal())
            };
            let fire = {
                let mut a = self.autostop.lock().unwrap_or_else(|e| e.into_inner());
                let Some(s) = a.setting else { continue };
                let now = Instant::now();
                if a.fired || a.retry_at.is_some_and(|t| now < t) {
                    continue;
                }
                let active = match s.wait_for {
                    WaitFor::None => false,
                    WaitFor::Jobs => busy_jobs,
                    WaitFor::JobsAndSsh => busy_jobs || ssh_sessions_active(&self.sky_dir),
                };
                if active {
                    a.last_active = now;
                }
                let idle_since = if s.wait_for == WaitFor::None {
                    a.since
                } else {
                    a.last_active.max(a.since)
                };
                let limit = self
                    .minute
                    .saturating_mul(u32::try_from(s.idle_minutes).unwrap_or(u32::MAX));
                if now.duration_since(idle_since) >= limit {
                    a.fired = true;
                    Some(s.down)
                } else {
                    None
                }
            };
            if let Some(down) = fire {
                let mut argv = self.hook.clone();
                argv.push(if down { "down" } else { "stop" }.to_string());
                crate::log(&format!("autostop: idle, running `{}`", argv.join(" ")));
                if self.hook.is_empty() {
                    crate::log("autostop: no hook configured; nothing to run");
                    continue;
                }
                // A hook that fails (its `sky stop` could not reach the state, say) is run
                // again one autostop minute later, while the cluster is still idle.
                let done = match crate::proc::spawn_hook(&argv) {
                    Ok(task) => task.await.unwrap_or(false),
                    Err(e) => {
                        crate::log(&format!("autostop: failed to run the hook: {e}"));
                        false
                    }
                };
                if !done {
                    let mut a = self.autostop.lock().unwrap_or_else(|e| e.into_inner());
                    if a.fired {
                        a.fired = false;
                        a.retry_at = Some(Instant::now() + self.minute);
                        crate::log(
                            "autostop: the hook failed; trying again in one autostop minute",
                        );
                    }
                }
            }
        }
    }

    // ---- scheduling and drivers ----

    /// Carries out the scheduler's commands (in order).
    fn run_commands(self: &Arc<Self>, st: &mut HeadState, cmds: Vec<Command>) {
        let now = clock::now_unix();
        for c in cmds {
            match c {
                Command::Start { job, placement } => self.start_job(st, job, &placement, now),
                Command::Kill { job, .. } => {
                    if let Some(r) = st.running.get(&job) {
                        r.cancel.cancel();
                    }
                }
                Command::Dequeue { job, reason } => {
                    if let Some(j) = st.store.get_mut(job) {
                        j.record.status = match reason {
                            DequeueReason::Cancelled => JobStatus::Cancelled,
                            other => {
                                crate::log(&format!("job {job} dropped from the queue: {other:?}"));
                                JobStatus::FailedDriver
                            }
                        };
                        j.record.ended_at = Some(now);
                    }
                }
            }
        }
    }

    fn start_job(self: &Arc<Self>, st: &mut HeadState, id: u64, p: &Placement, now: f64) {
        let gpus = st
            .store
            .get(id)
            .and_then(|j| j.spec.accelerators.clone())
            .map_or(0, |(_, n)| n.max(0.0).ceil() as u32);
        let ranks: Vec<RankPlan> = p
            .ranks
            .iter()
            .map(|a| {
                let n = &self.cluster.nodes[a.node];
                RankPlan {
                    ip: n.ip.clone(),
                    target: if n.rank == self.my_rank {
                        Target::Local
                    } else {
                        n.agent_addr.map_or(Target::Local, |a| {
                            Target::Remote(AgentClient::new(a, self.node.token.clone()))
                        })
                    },
                    cuda: sched::visible_devices(n, a),
                    gpus,
                }
            })
            .collect();
        let Some(job) = st.store.get_mut(id) else {
            // Unknown to the table (cannot happen): give the resources back.
            st.sched.apply(Event::Finished { job: id }, now);
            return;
        };
        let setup = job.spec.run_setup && job.spec.setup.is_some();
        if setup {
            job.record.status = JobStatus::SettingUp;
        } else {
            job.record.status = JobStatus::Running;
            job.record.started_at = Some(now);
        }
        let job = job.clone();
        let cancel = CancellationToken::new();
        let (done_tx, done) = watch::channel(false);
        st.running.insert(
            id,
            Running {
                cancel: cancel.clone(),
                done,
            },
        );
        tokio::spawn(self.clone().drive(job, ranks, cancel, done_tx));
    }

    /// Moves a running job to `status`; returns false when the agent is stopping.
    fn set_status(&self, id: u64, status: JobStatus) -> bool {
        let mut st = self.lock();
        if self.stop.is_cancelled() {
            return false;
        }
        if let Some(j) = st.store.get_mut(id) {
            j.record.status = status;
            if status == JobStatus::Running {
                j.record.started_at = Some(clock::now_unix());
            }
        }
        self.save(&mut st);
        drop(st);
        self.bump();
        true
    }

    fn finish(self: &Arc<Self>, id: u64, status: JobStatus, codes: Vec<i32>) {
        let mut st = self.lock();
        if self.stop.is_cancelled() {
            return;
        }
        if let Some(j) = st.store.get_mut(id) {
            j.record.status = status;
            j.record.exit_codes = codes;
            j.record.ended_at = Some(clock::now_unix());
        }
        st.running.remove(&id);
        let cmds = st
            .sched
            .handle(Event::Finished { job: id }, clock::now_unix());
        self.run_commands(&mut st, cmds);
        self.save(&mut st);
        drop(st);
        self.bump();
    }

    async fn drive(
        self: Arc<Self>,
        job: StoredJob,
        ranks: Vec<RankPlan>,
        cancel: CancellationToken,
        done: watch::Sender<bool>,
    ) {
        let id = job.record.id;
        let spec = &job.spec;
        let n = ranks.len();
        let ips = ranks
            .iter()
            .map(|r| r.ip.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let cluster_info = serde_json::json!({
            "cluster_name": self.cluster.name,
            "cloud": self.cluster.cloud,
            "region": self.cluster.region,
            "zone": self.cluster.zone,
        })
        .to_string();
        let mut base = spec.envs.clone();
        base.extend([
            ("SKYPILOT_NUM_NODES".to_string(), n.to_string()),
            ("SKYPILOT_INTERNAL_JOB_ID".into(), id.to_string()),
            ("SKYPILOT_USER".into(), spec.user.clone()),
            ("SKYPILOT_CLUSTER_INFO".into(), cluster_info),
        ]);
        // A task id the job brings (a managed job's, stable across its recoveries) wins.
        if !spec.envs.iter().any(|(k, _)| k == "SKYPILOT_TASK_ID") {
            base.push((
                "SKYPILOT_TASK_ID".into(),
                format!("sky-{}_{}_{id}", job.run_timestamp, self.cluster.name),
            ));
        }
        let log_dir = PathBuf::from(&job.record.log_dir);
        let mut setup_ran = false;
        let end = 'end: {
            if spec.run_setup
                && let Some(setup) = &spec.setup
            {
                setup_ran = true;
                let envs = ranks
                    .iter()
                    .enumerate()
                    .map(|(rank, r)| {
                        let mut e = base.clone();
                        e.extend([
                            ("SKYPILOT_SETUP_NODE_RANK".to_string(), rank.to_string()),
                            ("SKYPILOT_SETUP_NODE_IPS".into(), ips.clone()),
                            (
                                "SKYPILOT_SETUP_NUM_GPUS_PER_NODE".into(),
                                r.gpus.to_string(),
                            ),
                        ]);
                        e
                    })
                    .collect();
                match self
                    .run_phase(Phase::Setup, id, setup, envs, &ranks, &log_dir, &cancel)
                    .await
                {
                    PhaseEnd::Stopped => return,
                    PhaseEnd::Cancelled(c) => break 'end (JobStatus::Cancelled, c),
                    PhaseEnd::Done(c) if c.iter().any(|&x| x != 0) => {
                        break 'end (JobStatus::FailedSetup, c);
                    }
                    PhaseEnd::Done(_) => {}
                }
            }
            let Some(run) = &spec.run else {
                break 'end (JobStatus::Succeeded, Vec::new());
            };
            if setup_ran && !self.set_status(id, JobStatus::Running) {
                return;
            }
            let envs = ranks
                .iter()
                .enumerate()
                .map(|(rank, r)| {
                    let mut e = base.clone();
                    e.extend([
                        ("SKYPILOT_NODE_RANK".to_string(), rank.to_string()),
                        ("SKYPILOT_NODE_IPS".into(), ips.clone()),
                        ("SKYPILOT_NUM_GPUS_PER_NODE".into(), r.gpus.to_string()),
                    ]);
                    if let Some(c) = &r.cuda {
                        e.push(("CUDA_VISIBLE_DEVICES".into(), c.clone()));
                    }
                    e
                })
                .collect();
            match self
                .run_phase(Phase::Run, id, run, envs, &ranks, &log_dir, &cancel)
                .await
            {
                PhaseEnd::Stopped => return,
                PhaseEnd::Cancelled(c) => (JobStatus::Cancelled, c),
                PhaseEnd::Done(c) if c.iter().any(|&x| x != 0) => (JobStatus::Failed, c),
                PhaseEnd::Done(c) => (JobStatus::Succeeded, c),
            }
        };
        if self.stop.is_cancelled() {
            return;
        }
        self.finish(id, end.0, end.1);
        let _ = done.send(true);
    }

    fn kill_ranks(&self, id: u64, ranks: &[RankPlan]) {
        for r in ranks {
            match &r.target {
                Target::Local => self.node.kill_job(id),
                Target::Remote(agent) => {
                    tokio::spawn(node::kill_remote(agent.clone(), id));
                }
            }
        }
    }

    #[expect(clippy::too_many_arguments)]
    async fn run_phase(
        self: &Arc<Self>,
        phase: Phase,
        id: u64,
        script: &str,
        envs: Vec<Vec<(String, String)>>,
        ranks: &[RankPlan],
        log_dir: &Path,
        cancel: &CancellationToken,
    ) -> PhaseEnd {
        let n = ranks.len();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel::<(usize, RankEvent)>();
        let writer = match LogWriter::open(phase, log_dir, ranks) {
            Ok(w) => Some(tokio::spawn(w.run(ev_rx, self.changed.clone()))),
            Err(e) => {
                crate::log(&format!(
                    "job {id}: failed to open logs in {}: {e}",
                    log_dir.display()
                ));
                None
            }
        };
        let mut set = JoinSet::new();
        for (rank, (r, env)) in ranks.iter().zip(envs).enumerate() {
            let tx = ev_tx.clone();
            let emit = move |e| {
                let _ = tx.send((rank, e));
            };
            let script = script.to_string();
            match &r.target {
                Target::Local => {
                    let node = self.node.clone();
                    set.spawn(async move { (rank, node.run_local(id, &script, &env, emit).await) });
                }
                Target::Remote(agent) => {
                    let agent = agent.clone();
                    let spec = ExecSpec {
                        job_id: id,
                        rank: rank as u32,
                        script,
                        env,
                        log_name: None,
                    };
                    set.spawn(async move { (rank, node::run_remote(agent, spec, emit).await) });
                }
            }
        }
        drop(ev_tx);
        let mut codes = vec![-1; n];
        let mut killing = false;
        let mut cancelled = false;
        let mut rekill = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = self.stop.cancelled() => {
                    set.abort_all();
                    return PhaseEnd::Stopped;
                }
                r = set.join_next() => match r {
                    None => break,
                    Some(Ok((rank, code))) => {
                        codes[rank] = code;
                        if code != 0 && !killing {
                            killing = true;
                            self.kill_ranks(id, ranks);
                        }
                    }
                    Some(Err(_)) => {
                        if !killing {
                            killing = true;
                            self.kill_ranks(id, ranks);
                        }
                    }
                },
                () = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    killing = true;
                    self.kill_ranks(id, ranks);
                }
                _ = rekill.tick(), if killing => self.kill_ranks(id, ranks),
            }
        }
        if let Some(w) = writer {
            let _ = w.await;
        }
        if cancelled {
            PhaseEnd::Cancelled(codes)
        } else {
            PhaseEnd::Done(codes)
        }
    }
}

/// Whether any `.sky/ssh_sessions/*` marker names a live pid (file content, else file name).
fn ssh_sessions_active(sky_dir: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(sky_dir.join("ssh_sessions")) else {
        return false;
    };
    dir.flatten().any(|e| {
        let from_content = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let pid = from_content.or_else(|| e.file_name().to_str()?.parse().ok());
        pid.is_some_and(crate::proc::pid_alive)
    })
}

/// Byte offset where the last `n` lines of the file start.
fn tail_offset(path: &Path, n: usize) -> u64 {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if n == 0 {
        return bytes.len() as u64;
    }
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return i as u64 + 1;
            }
        }
    }
    0
}

/// Writes one phase's output: `run.log` (all ranks), plus `setup.log` (setup) or
/// `tasks/<rank>-<head|workerN>.log` / `tasks/run.log` (run). With more than one rank, lines in
/// `run.log` and `setup.log` carry SkyPilot's prefix `(head, rank=0, pid=N) ` or
/// `(worker1, rank=1, pid=N, ip=A) `; per-rank files hold the raw output.
struct LogWriter {
    shared: Vec<File>,
    per_rank: Vec<Option<File>>,
    prefix: bool,
    ips: Vec<String>,
    pids: Vec<Option<u32>>,
    partial: Vec<Vec<u8>>,
}

impl LogWriter {
    fn open(phase: Phase, log_dir: &Path, ranks: &[RankPlan]) -> std::io::Result<Self> {
        let append = |p: PathBuf| open_private_append(&p);
        let n = ranks.len();
        let mut shared = vec![append(log_dir.join("run.log"))?];
        let mut per_rank = Vec::with_capacity(n);
        match phase {
            Phase::Setup => {
                shared.push(append(log_dir.join("setup.log"))?);
                per_rank.resize_with(n, || None);
            }
            Phase::Run => {
                create_private_dir_all(&log_dir.join("tasks"))?;
                for rank in 0..n {
                    let name = if n == 1 {
                        "run.log".to_string()
                    } else if rank == 0 {
                        "0-head.log".to_string()
                    } else {
                        format!("{rank}-worker{rank}.log")
                    };
                    per_rank.push(Some(append(log_dir.join("tasks").join(name))?));
                }
            }
        }
        Ok(Self {
            shared,
            per_rank,
            prefix: n > 1,
            ips: ranks.iter().map(|r| r.ip.clone()).collect(),
            pids: vec![None; n],
            partial: vec![Vec::new(); n],
        })
    }

    fn prefix_of(&self, rank: usize) -> String {
        let pid = self.pids[rank].map_or("-".to_string(), |p| p.to_string());
        if rank == 0 {
            format!("(head, rank=0, pid={pid}) ")
        } else {
            format!(
                "(worker{rank}, rank={rank}, pid={pid}, ip={}) ",
                self.ips[rank]
            )
        }
    }

    fn write_shared(&mut self, bytes: &[u8]) {
        for f in &mut self.shared {
            let _ = f.write_all(bytes);
        }
    }

    fn data(&mut self, rank: usize, d: &[u8]) {
        if let Some(f) = &mut self.per_rank[rank] {
            let _ = f.write_all(d);
        }
        if !self.prefix {
            self.write_shared(d);
            return;
        }
        let mut buf = std::mem::take(&mut self.partial[rank]);
        buf.extend_from_slice(d);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            out.extend_from_slice(self.prefix_of(rank).as_bytes());
            out.extend_from_slice(&buf[start..start + nl + 1]);
            start += nl + 1;
        }
        self.partial[rank] = buf.split_off(start);
        if !out.is_empty() {
            self.write_shared(&out);
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<(usize, RankEvent)>,
        changed: watch::Sender<u64>,
    ) {
        while let Some((rank, ev)) = rx.recv().await {
            match ev {
                RankEvent::Started(pid) => self.pids[rank] = Some(pid),
                RankEvent::Data(d) => self.data(rank, &d),
            }
            changed.send_modify(|v| *v = v.wrapping_add(1));
        }
        for rank in 0..self.partial.len() {
            if !self.partial[rank].is_empty() {
                let mut line = self.prefix_of(rank).into_bytes();
                line.append(&mut self.partial[rank]);
                line.push(b'\n');
                self.write_shared(&line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_offset_finds_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail_offset(&p, 2), 2);
        assert_eq!(tail_offset(&p, 5), 0);
        assert_eq!(tail_offset(&p, 0), 6);
    }
}
