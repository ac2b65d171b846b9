//! `sky-launch`: the backend behind `sky launch`, `exec`, `stop`, `start`, `down` and friends.
//!
//! It composes the pure planner (`sky-optimizer`), the cloud plugins (`sky-provider`
//! implementations in a [`ProviderRegistry`]), the state database (`sky-state`) and the node
//! agent (`sky-agent`): optimize → provision with failover (zone → region → next-cheapest
//! cloud, blocking what failed and re-optimizing) → start the agents → sync the workdir and
//! local file mounts → submit the job. Used by the CLI; embedders can drive it directly.
//!
//! Every command takes a [`CancellationToken`] and an [`Events`] sink: progress goes out as
//! typed [`LaunchEvent`]s (whose `Display` is the CLI's line), failures come back as a typed
//! [`LaunchError`] (its [`LaunchErrorKind`], the provider's error with kind and scope, the
//! failover history, and what was left of the cluster as a [`ClusterState`]), so a caller
//! branches on data. The CLI is one caller; a controller driving hundreds of launches is another.
//!
//! Invariants: a cluster is recorded in state (status INIT) *before* any provider call that can
//! create instances, and the record is removed only after the provider has terminated them, so
//! no failure path, cancel included, leaves an instance that `sky down` cannot find. A cancelled
//! launch removes what it made (or leaves it recorded INIT when terminating fails) and never
//! tears down a cluster that existed before it. This crate prints nothing.
//!
//! ```no_run
//! use sky_launch::{Backend, CancellationToken, LaunchErrorKind, LaunchEvent, LaunchRequest};
//!
//! async fn run(backend: &Backend, task: sky_spec::Task) {
//!     let cancel = CancellationToken::new();
//!     let events = |e: &LaunchEvent| eprintln!("{e}");
//!     let req = LaunchRequest::new(task, "dev");
//!     match backend.launch(&req, &cancel, &events).await {
//!         Ok(l) => println!("job {} on {} (reused: {})", l.job_id, l.cluster, l.reused),
//!         Err(e) if e.kind == LaunchErrorKind::NoResources => eprintln!("{}", e.history.len()),
//!         Err(e) => eprintln!("{e} (cluster left {:?})", e.cluster),
//!     }
//! }
//! ```

pub mod binary;
mod error;
mod events;
pub mod exit;
mod failover;
mod features;
mod lock;
mod recover;
mod runtime;

pub use error::{ClusterState, LaunchError, LaunchErrorKind};
pub use events::{EventKind, EventLog, Events, LaunchEvent, Quiet, RetryReason};
pub use lock::{ClusterLock, lock_cluster, try_lock_cluster};
pub use recover::RECOVERED_EVENT;
pub use runtime::{AgentHealth, local_uploads};
/// Cancels a command: every stage races it and stops where it is (see the crate docs).
pub use tokio_util::sync::CancellationToken;

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use sky_agent::{AgentClient, JobRecord, JobSpec, JobStatus};
use sky_catalog::Catalog;
use sky_provider::{CloudProvider, ClusterHandle, InstanceInfo, InstanceState, ProviderRegistry};
use sky_spec::Task;
use sky_state::{ClusterRecord, ClusterStatus, StateDb};

pub use failover::{Attempt, autostop_note, render_history};
pub use features::capable_clouds;
pub use sky_optimizer::Blocked;

/// Runs `fut` unless `cancel` fires first (checked before it starts too); `None` when
/// cancelled, the future then dropped, which stops its work (the provider contract's
/// cancel-by-drop).
pub(crate) async fn race<T>(cancel: &CancellationToken, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        v = fut => Some(v),
    }
}

/// The error of a command cancelled with `left` of `cluster`.
pub(crate) fn cancelled(cluster: &str, left: ClusterState) -> LaunchError {
    LaunchError::new(
        LaunchErrorKind::Cancelled,
        format!("cancelled: {}", events::cancel_note(cluster, left)),
    )
    .left(left)
}

/// What the backend stores in a cluster record's `handle` column.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredHandle {
    pub provider: ClusterHandle,
    /// The head agent's address as the CLI reaches it.
    pub agent_addr: Option<String>,
    /// The cluster token its agents require (see `sky_agent::Token`).
    #[serde(default)]
    pub agent_token: Option<String>,
    /// Node addresses in rank order.
    pub ips: Vec<String>,
    /// Per-node capacity given to the agents (cpus, memory, accelerators).
    pub node_accelerators: Option<(String, f64)>,
    pub launched_resources: String,
    /// Ports opened on the cluster (`8080`, `9000-9010`).
    #[serde(default)]
    pub ports: Vec<String>,
}

/// The backend: everything `sky` needs to act on clusters.
pub struct Backend {
    pub registry: ProviderRegistry,
    pub state: StateDb,
    /// The catalog the optimizer plans on (the bundled one plus providers' own offerings),
    /// built on first use so commands that do not plan never decode it.
    pub catalog: std::sync::OnceLock<Option<Catalog>>,
    /// Clouds the user enabled (credentials present, `allowed_clouds`).
    pub enabled_clouds: Vec<String>,
    /// The `sky` binary to start as the node agent.
    pub sky_binary: PathBuf,
    /// Environment the agent's autostop hook needs to run `sky stop|down` (HOME, SKY_HOME);
    /// given to agents on this machine only.
    pub hook_env: Vec<(String, String)>,
    /// Environment every agent gets, remote ones too.
    pub agent_env: Vec<(String, String)>,
    pub user: String,
    /// Where the per-cluster lock files live (`~/.sky-rs/locks`); see [`lock_cluster`].
    pub lock_dir: PathBuf,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("enabled_clouds", &self.enabled_clouds)
            .finish_non_exhaustive()
    }
}

/// What to launch: `sky launch`'s arguments as data.
#[derive(Clone, Debug, Default)]
pub struct LaunchRequest {
    pub task: Task,
    pub cluster: String,
    /// When every placement failed, wait and start failover over (cancellable).
    pub retry_until_up: bool,
    pub no_setup: bool,
    /// Autostop after idle minutes, and whether to tear down instead of stopping.
    pub idle_minutes: Option<i64>,
    pub down: bool,
    /// The command line, stored as the cluster's last use.
    pub command_line: String,
    /// Placements ruled out from the start (a managed-jobs controller blocks the region that
    /// preempted it); failover adds what fails. `retry_until_up` starts over from these.
    pub blocked: Vec<Blocked>,
}

impl LaunchRequest {
    /// `task` on cluster `cluster`, nothing else set.
    pub fn new(task: Task, cluster: impl Into<String>) -> Self {
        LaunchRequest {
            task,
            cluster: cluster.into(),
            ..LaunchRequest::default()
        }
    }
}

/// A launched (or exec'd) job.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Launched {
    pub cluster: String,
    pub job_id: u64,
    /// A client of the cluster's head agent (logs, queue, cancel).
    pub agent: AgentClient,
    /// The cluster's handle as recorded.
    pub handle: StoredHandle,
    /// The cluster was UP already and nothing was provisioned.
    pub reused: bool,
}

/// Unix seconds now. The backend is an effect layer; the clock is read here only.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Backend {
    /// The bundled catalog plus an offer table for every registered provider without one
    /// (the local cloud). Accelerator offers are listed for every whole count up to the node's,
    /// since a sandbox can run a job that asks for fewer devices than it has.
    pub fn catalog(&self) -> &Catalog {
        self.catalog
            .get_or_init(|| catalog_with_providers(&self.registry))
            .as_ref()
            .unwrap_or_else(|| Catalog::bundled())
    }

    pub(crate) fn provider(&self, cloud: &str) -> Result<Arc<dyn CloudProvider>, LaunchError> {
        self.registry.get(cloud).ok_or_else(|| {
            LaunchError::provider(format!(
                "no provisioner for cloud `{cloud}` in this build of sky-rs"
            ))
        })
    }

    /// The clouds a new cluster for `task` may use, and those `-i` left out
    /// ([`Backend::launch_clouds`]), narrowed to the clouds that can carry out what the task
    /// asks ([`capable_clouds`]: containers, a custom image, ports, spot, several nodes).
    /// `Invalid` when no enabled cloud can (nothing has been recorded or provisioned);
    /// `NoResources` when `-i` left every cloud out.
    pub fn task_clouds(
        &self,
        task: &Task,
        idle_minutes: Option<i64>,
        down: bool,
    ) -> Result<(Vec<&str>, Vec<&str>), LaunchError> {
        let (usable, left_out) = self
            .launch_clouds(idle_minutes, down)
            .map_err(|message| LaunchError::new(LaunchErrorKind::NoResources, message))?;
        let usable = if usable.is_empty() {
            usable
        } else {
            capable_clouds(&self.registry, task, &usable).map_err(LaunchError::invalid)?
        };
        Ok((usable, left_out))
    }

    /// Takes the cluster's lock, saying so through `ev` when another command holds it.
    /// Cancelled while waiting: nothing was done; the error says what the cluster is.
    async fn lock(
        &self,
        cluster: &str,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<ClusterLock, LaunchError> {
        let waiting = lock_cluster(&self.lock_dir, cluster, || {
            ev.event(&LaunchEvent::WaitingForLock {
                cluster: cluster.to_string(),
                lock_path: self.lock_dir.join(format!("{cluster}.lock")),
            });
        });
        match race(cancel, waiting).await {
            Some(lock) => lock,
            None => Err(self.cancelled_as_recorded(cluster).await),
        }
    }

    /// What is recorded of `cluster`: `Absent` without a record.
    pub async fn cluster_state(&self, cluster: &str) -> Result<ClusterState, LaunchError> {
        Ok(match self.state.get_cluster(cluster).await? {
            Some(rec) => rec.status.into(),
            None => ClusterState::Absent,
        })
    }

    /// A cancel that changed nothing: the cluster is as recorded.
    async fn cancelled_as_recorded(&self, cluster: &str) -> LaunchError {
        match self.cluster_state(cluster).await {
            Ok(left) => cancelled(cluster, left),
            Err(e) => LaunchError::new(
                LaunchErrorKind::Cancelled,
                format!("cancelled: nothing was done to cluster {cluster} ({e})"),
            ),
        }
    }

    pub async fn record(&self, name: &str) -> Result<ClusterRecord, LaunchError> {
        self.state
            .get_cluster(name)
            .await?
            .ok_or_else(|| LaunchError::no_such_cluster(name))
    }

    pub fn stored_handle(record: &ClusterRecord) -> Result<StoredHandle, LaunchError> {
        serde_json::from_value(record.handle.clone()).map_err(|e| {
            LaunchError::new(
                LaunchErrorKind::State,
                format!(
                    "cluster `{}` has an unreadable handle in state: {e}",
                    record.name
                ),
            )
        })
    }

    /// `sky launch`: provisions (or reuses, or restarts) the cluster and submits the task.
    ///
    /// Cancelled (`cancel`), it stops where it is and returns [`LaunchErrorKind::Cancelled`]
    /// (with a [`LaunchEvent::Cancelled`]): before the lock or while waiting for it, nothing was
    /// done; while a new cluster's instances are being made (or waited for, or between
    /// retries), what this launch made is terminated and forgotten ([`ClusterState::Absent`];
    /// if terminating fails, it stays recorded INIT for `sky down`); once the instances are up
    /// (agents, sync, submit), and for a cluster that existed before, the cluster is left as it
    /// is (INIT or UP). The lock is released in every case. On any error,
    /// [`LaunchError::cluster`] says what is left.
    pub async fn launch(
        &self,
        req: &LaunchRequest,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<Launched, LaunchError> {
        let r = self.launch_locked(req, cancel, ev).await;
        match r {
            Ok(l) => Ok(l),
            Err(e) => Err(self.settle(e, &req.cluster, ev).await),
        }
    }

    /// Fills in what is left of the cluster when the error does not say, and announces a
    /// cancel.
    async fn settle(&self, mut e: LaunchError, cluster: &str, ev: &dyn Events) -> LaunchError {
        if e.cluster.is_none()
            && sky_spec::names::check_cluster_name(cluster).is_ok()
            && let Ok(left) = self.cluster_state(cluster).await
        {
            e = e.left(left);
        }
        announce(&e, cluster, ev);
        e
    }

    async fn launch_locked(
        &self,
        req: &LaunchRequest,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<Launched, LaunchError> {
        let task = &req.task;
        let cluster = &req.cluster;
        // Held until the job is submitted: a concurrent launch of the same name waits, then
        // finds the cluster UP and reuses it. A cancel while waiting is announced there.
        let _lock = self.lock(cluster, cancel, ev).await?;
        let existing = self.state.get_cluster(cluster).await?;
        // What the task asks of its cloud (containers, ports, ...) is checked before anything
        // is recorded or provisioned; a new cluster's clouds are checked by provision_new.
        if let Some(rec) = &existing {
            features::check_cluster(&self.registry, task, cluster, &rec.cloud)?;
        }
        let mut reused = false;
        let handle = match existing {
            Some(rec) if rec.status == ClusterStatus::Up => {
                let h = Self::stored_handle(&rec)?;
                runtime::check_compatible(task, &rec, &h)?;
                ev.event(&LaunchEvent::Reusing {
                    cluster: cluster.clone(),
                });
                reused = true;
                h
            }
            Some(rec) if rec.status == ClusterStatus::Stopped => {
                runtime::check_compatible(task, &rec, &Self::stored_handle(&rec)?)?;
                self.start_locked(cluster, cancel, ev).await?
            }
            Some(rec) => {
                // INIT: a previous launch did not finish. Retry in its place.
                let h = Self::stored_handle(&rec)?;
                ev.event(&LaunchEvent::Reprovisioning {
                    cluster: cluster.clone(),
                });
                self.provision_in_place(req, &h, cancel, ev).await?
            }
            None => self.provision_new(req, cancel, ev).await?,
        };
        // From here on the cluster is UP: a failure or a cancel leaves it so.
        let up = ClusterState::Up;
        if req.idle_minutes.is_some_and(|i| i >= 0) {
            self.check_autostop(cluster, &handle, req.down)
                .map_err(|e| {
                    let m = format!(
                        "{e}. The cluster is up with nothing submitted: `sky down {cluster}`, or launch again without -i"
                    );
                    e.with_message(m).left(up)
                })?;
        }
        let agent = race(cancel, runtime::reach_agent(self, cluster, &handle))
            .await
            .ok_or_else(|| cancelled(cluster, up))?
            .map_err(|e| e.left(up))?;
        race(cancel, runtime::sync(self, task, &handle, ev))
            .await
            .ok_or_else(|| cancelled(cluster, up))?
            .map_err(|e| e.left(up))?;
        let job_id = race(
            cancel,
            self.submit(cluster, &handle, task, !req.no_setup, &agent),
        )
        .await
        .ok_or_else(|| {
            let e = cancelled(cluster, up);
            let m = format!(
                "{e} (the job may have reached its queue as the cancel came: `sky queue {cluster}` shows it)"
            );
            e.with_message(m)
        })?
        .map_err(|e| e.left(up))?;
        // Submitted: the launch has done its work; what follows is not cancelled.
        ev.event(&LaunchEvent::Submitted {
            cluster: cluster.clone(),
            job_id,
        });
        self.touch(cluster, &req.command_line).await?;
        // After the submit, so the queued job already counts as activity: set before it, a
        // short idle limit could fire between the two.
        if let Some(idle) = req.idle_minutes {
            self.set_autostop_locked(cluster, idle, req.down, task_wait_for(task))
                .await
                .map_err(|e| e.left(up))?;
        }
        Ok(Launched {
            cluster: cluster.clone(),
            job_id,
            agent,
            handle,
            reused,
        })
    }

    /// `sky exec`: submits to an UP cluster (syncs the workdir; no setup). Cancelled, the
    /// cluster is left as it is.
    pub async fn exec(
        &self,
        cluster: &str,
        task: &Task,
        command_line: &str,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<Launched, LaunchError> {
        let r = async {
            let _lock = self.lock(cluster, cancel, ev).await?;
            let rec = self.record(cluster).await?;
            let left = ClusterState::from(rec.status);
            if rec.status != ClusterStatus::Up {
                return Err(LaunchError::invalid(format!(
                    "cluster `{cluster}` is {}; sky exec needs an UP cluster: run `sky start {cluster}` or `sky launch -c {cluster} ...`",
                    rec.status
                ))
                .left(left));
            }
            let handle = Self::stored_handle(&rec)?;
            runtime::check_compatible(task, &rec, &handle)?;
            features::check_cluster(&self.registry, task, cluster, &rec.cloud)?;
            let agent = race(cancel, runtime::reach_agent(self, cluster, &handle))
                .await
                .ok_or_else(|| cancelled(cluster, left))??;
            race(cancel, runtime::sync(self, task, &handle, ev))
                .await
                .ok_or_else(|| cancelled(cluster, left))??;
            let job_id = race(cancel, self.submit(cluster, &handle, task, false, &agent))
                .await
                .ok_or_else(|| cancelled(cluster, left))??;
            ev.event(&LaunchEvent::Submitted {
                cluster: cluster.to_string(),
                job_id,
            });
            self.touch(cluster, command_line).await?;
            Ok(Launched {
                cluster: cluster.to_string(),
                job_id,
                agent,
                handle,
                reused: true,
            })
        }
        .await;
        finish(r, cluster, ev)
    }

    /// Records the last command. One transaction: a whole-record write could undo a status
    /// change made meanwhile (an autostop hook's `sky stop`), or bring back a cluster that its
    /// `sky down` has just removed.
    async fn touch(&self, cluster: &str, command_line: &str) -> Result<(), LaunchError> {
        match self
            .state
            .update_cluster(cluster, |rec| rec.last_use = command_line.to_string())
            .await
        {
            Err(e) if e.kind() == sky_state::ErrorKind::NotFound => Ok(()),
            r => r.map(drop).map_err(Into::into),
        }
    }

    async fn submit(
        &self,
        cluster: &str,
        handle: &StoredHandle,
        task: &Task,
        run_setup: bool,
        agent: &AgentClient,
    ) -> Result<u64, LaunchError> {
        let first = task
            .resources
            .candidates()
            .first()
            .cloned()
            .unwrap_or_default();
        let spec = JobSpec {
            name: task.name.clone(),
            user: self.user.clone(),
            setup: task.setup.clone(),
            run: task.run.clone(),
            envs: task
                .envs
                .iter()
                .chain(task.secrets.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            num_nodes: task.num_nodes.max(1),
            accelerators: first
                .accelerators
                .as_ref()
                .map(|a| (a.name.clone(), a.count)),
            cpus: first.cpus.map(|q| q.value),
            run_setup,
            // The head keeps these values off its disk and out of its logs.
            secret_keys: task.secrets.keys().cloned().collect(),
        };
        if spec.num_nodes > handle.provider.num_nodes {
            return Err(LaunchError::invalid(format!(
                "the task asks for {} nodes but cluster `{cluster}` has {}; launch a new cluster with `sky launch -c NEW ...`",
                spec.num_nodes, handle.provider.num_nodes
            )));
        }
        agent.submit(&spec).await.map_err(|e| agent_err(cluster, e))
    }

    /// Streams a job's logs to `sink` (following until it ends when `follow`), then returns its
    /// final record.
    pub async fn logs(
        &self,
        cluster: &str,
        job: Option<u64>,
        follow: bool,
        tail: Option<usize>,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<Option<JobRecord>, LaunchError> {
        let client = self.client(cluster).await?;
        client
            .logs(job, follow, tail, sink)
            .await
            .map_err(|e| agent_err(cluster, e))?;
        let jobs = client
            .queue(true)
            .await
            .map_err(|e| agent_err(cluster, e))?;
        let want = job.or_else(|| jobs.iter().map(|j| j.id).max());
        Ok(jobs.into_iter().find(|j| Some(j.id) == want))
    }

    pub async fn client(&self, cluster: &str) -> Result<AgentClient, LaunchError> {
        let rec = self.record(cluster).await?;
        if rec.status != ClusterStatus::Up {
            return Err(LaunchError::invalid(format!(
                "cluster `{cluster}` is {}; its jobs are reachable when it is UP (`sky start {cluster}`)",
                rec.status
            )));
        }
        let h = Self::stored_handle(&rec)?;
        let c = runtime::reach_agent(self, cluster, &h).await?;
        c.ping().await.map_err(|e| agent_err(cluster, e))?;
        Ok(c)
    }

    pub async fn queue(&self, cluster: &str, all: bool) -> Result<Vec<JobRecord>, LaunchError> {
        let c = self.client(cluster).await?;
        c.queue(all).await.map_err(|e| agent_err(cluster, e))
    }

    pub async fn cancel(
        &self,
        cluster: &str,
        ids: Vec<u64>,
        all: bool,
    ) -> Result<Vec<u64>, LaunchError> {
        let c = self.client(cluster).await?;
        c.cancel(&ids, all).await.map_err(|e| agent_err(cluster, e))
    }

    /// `sky autostop`: sets (or with `idle_minutes < 0` cancels) the cluster's autostop.
    pub async fn set_autostop(
        &self,
        cluster: &str,
        idle_minutes: i64,
        down: bool,
        wait_for: sky_agent::WaitFor,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<(), LaunchError> {
        let r = async {
            let _lock = self.lock(cluster, cancel, ev).await?;
            match race(
                cancel,
                self.set_autostop_locked(cluster, idle_minutes, down, wait_for),
            )
            .await
            {
                Some(r) => r,
                None => Err(self.cancelled_as_recorded(cluster).await),
            }
        }
        .await;
        finish(r, cluster, ev)
    }

    async fn set_autostop_locked(
        &self,
        cluster: &str,
        idle_minutes: i64,
        down: bool,
        wait_for: sky_agent::WaitFor,
    ) -> Result<(), LaunchError> {
        if idle_minutes >= 0 {
            let h = Self::stored_handle(&self.record(cluster).await?)?;
            self.check_autostop(cluster, &h, down)?;
        }
        let c = self.client(cluster).await?;
        c.set_autostop(idle_minutes, down, wait_for)
            .await
            .map_err(|e| agent_err(cluster, e))?;
        let autostop = (idle_minutes >= 0).then(|| sky_state::Autostop {
            idle_minutes: u32::try_from(idle_minutes).unwrap_or(u32::MAX),
            down,
        });
        self.state.set_autostop(cluster, autostop).await?;
        Ok(())
    }

    /// Whether autostop can act on the cluster: its cloud must support it
    /// (`FeatureSet::autostop`), and spot clusters and clouds that cannot stop need `--down`.
    fn check_autostop(
        &self,
        cluster: &str,
        h: &StoredHandle,
        down: bool,
    ) -> Result<(), LaunchError> {
        let p = self.provider(&h.provider.cloud)?;
        if !p.features().autostop {
            return Err(LaunchError::invalid(format!(
                "autostop is not supported on `{}` clusters: their head cannot stop or terminate its own cluster; use `sky stop {cluster}` or `sky down {cluster}` when done",
                h.provider.cloud
            )));
        }
        if !down && h.provider.use_spot {
            return Err(LaunchError::invalid(format!(
                "cluster `{cluster}` runs on spot instances, which cannot be stopped: autostop needs --down"
            )));
        }
        if !down && !p.features().stop {
            return Err(LaunchError::invalid(format!(
                "cloud `{}` cannot stop clusters: autostop on `{cluster}` needs --down",
                h.provider.cloud
            )));
        }
        Ok(())
    }

    /// `sky stop`. Cancelled while the nodes stop, the cluster stays recorded as it was
    /// (some nodes may have stopped: `sky stop` again finishes, `sky status -r` tells).
    pub async fn stop(
        &self,
        cluster: &str,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<(), LaunchError> {
        let r = async {
            let _lock = self.lock(cluster, cancel, ev).await?;
            let rec = self.record(cluster).await?;
            let left = ClusterState::from(rec.status);
            let h = Self::stored_handle(&rec)?;
            let p = self.provider(&h.provider.cloud)?;
            if !p.features().stop {
                return Err(LaunchError::invalid(format!(
                    "cloud `{}` cannot stop clusters; use `sky down {cluster}`",
                    h.provider.cloud
                ))
                .left(left));
            }
            if h.provider.use_spot {
                return Err(LaunchError::invalid(format!(
                    "cluster `{cluster}` runs on spot instances, which cannot be stopped; use `sky down {cluster}`"
                ))
                .left(left));
            }
            ev.event(&LaunchEvent::Stopping {
                cluster: cluster.to_string(),
            });
            race(cancel, p.stop_instances(&h.provider))
                .await
                .ok_or_else(|| cancelled(cluster, left))?
                .map_err(|e| {
                    LaunchError::provider(format!("failed to stop `{cluster}`: {e}"))
                        .with_provision(e)
                        .left(left)
                })?;
            self.state
                .set_status(cluster, ClusterStatus::Stopped, now())
                .await?;
            self.state
                .add_event(cluster, "STOPPED", "stopped by the user", now())
                .await?;
            ev.event(&LaunchEvent::Stopped {
                cluster: cluster.to_string(),
            });
            Ok(())
        }
        .await;
        finish(r, cluster, ev)
    }

    /// `sky start`: restarts the nodes and their agents. Cancelled once it began, the
    /// cluster is left INIT (`sky start` again finishes).
    pub async fn start(
        &self,
        cluster: &str,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<StoredHandle, LaunchError> {
        let r = async {
            let _lock = self.lock(cluster, cancel, ev).await?;
            self.start_locked(cluster, cancel, ev).await
        }
        .await;
        finish(r, cluster, ev)
    }

    async fn start_locked(
        &self,
        cluster: &str,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<StoredHandle, LaunchError> {
        let rec = self.record(cluster).await?;
        let h = Self::stored_handle(&rec)?;
        if rec.status == ClusterStatus::Up {
            let health = race(cancel, runtime::agent_health(self, cluster, &h))
                .await
                .ok_or_else(|| cancelled(cluster, ClusterState::Up))?;
            match health {
                AgentHealth::Alive => {
                    ev.event(&LaunchEvent::AlreadyUp {
                        cluster: cluster.to_string(),
                    });
                    return Ok(h);
                }
                // Starting agents beside one that still runs would give the node two heads.
                AgentHealth::Unreachable(detail) => {
                    return Err(LaunchError::agent(cluster, detail).left(ClusterState::Up));
                }
                AgentHealth::Gone(_) => {}
            }
        }
        let p = self.provider(&h.provider.cloud)?;
        ev.event(&LaunchEvent::Starting {
            cluster: cluster.to_string(),
        });
        self.state
            .set_status(cluster, ClusterStatus::Init, now())
            .await?;
        let left = ClusterState::Init { instances_up: true };
        race(cancel, p.start_instances(&h.provider))
            .await
            .ok_or_else(|| cancelled(cluster, left))?
            .map_err(|e| {
                LaunchError::provider(format!("failed to start `{cluster}`: {e}"))
                    .with_provision(e)
                    .left(left)
            })?;
        let h = race(
            cancel,
            runtime::start_agents(self, cluster, h.provider.clone(), &h, ev),
        )
        .await
        .ok_or_else(|| cancelled(cluster, left))?
        .map_err(|e| e.left(left))?;
        let mut rec = self.record(cluster).await?;
        rec.handle = serde_json::to_value(&h).unwrap_or_default();
        self.state.upsert_cluster(&rec).await?;
        self.state
            .set_status(cluster, ClusterStatus::Up, now())
            .await?;
        self.state
            .add_event(cluster, "UP", "started", now())
            .await?;
        ev.event(&LaunchEvent::Started {
            cluster: cluster.to_string(),
        });
        Ok(h)
    }

    /// `sky down`: terminates everything and forgets the cluster. With `purge`, a provider
    /// error still removes the record (and is reported). Cancelled, the cluster stays
    /// recorded (`sky down` again finishes; terminating is idempotent).
    pub async fn down(
        &self,
        cluster: &str,
        purge: bool,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<(), LaunchError> {
        let r = async {
            let _lock = self.lock(cluster, cancel, ev).await?;
            let rec = self.record(cluster).await?;
            let left = ClusterState::from(rec.status);
            let h = Self::stored_handle(&rec)?;
            ev.event(&LaunchEvent::Terminating {
                cluster: cluster.to_string(),
            });
            let shutdown = async {
                if let Ok(c) = runtime::reach_agent(self, cluster, &h).await
                    && let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_millis(500), c.ping()).await
                {
                    let _ = tokio::time::timeout(Duration::from_secs(2), c.shutdown()).await;
                }
            };
            race(cancel, shutdown)
                .await
                .ok_or_else(|| cancelled(cluster, left))?;
            let p = self.provider(&h.provider.cloud)?;
            let terminated = race(cancel, p.terminate_instances(&h.provider))
                .await
                .ok_or_else(|| cancelled(cluster, left))?;
            if let Err(e) = terminated {
                if !purge {
                    return Err(LaunchError::provider(format!(
                        "failed to terminate `{cluster}`: {e}; the cluster stays recorded. Retry, or `sky down -p {cluster}` to forget it anyway"
                    ))
                    .with_provision(e)
                    .left(left));
                }
                ev.event(&LaunchEvent::Warning(format!(
                    "terminating {cluster} failed ({e}); purged from state anyway"
                )));
            }
            self.state.remove_cluster(cluster, now()).await?;
            ev.event(&LaunchEvent::Terminated {
                cluster: cluster.to_string(),
            });
            Ok(())
        }
        .await;
        finish(r, cluster, ev)
    }

    /// `sky status -r`: asks the providers and agents for the truth and updates state.
    /// A cluster another command holds the lock of (a launch in progress, say) is returned as
    /// recorded: its truth is being changed.
    /// Cancelled, nothing more is changed (what was already updated stays updated).
    pub async fn refresh(
        &self,
        cluster: &str,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<Option<ClusterRecord>, LaunchError> {
        let r = match race(cancel, self.refresh_inner(cluster)).await {
            Some(r) => r,
            None => Err(self.cancelled_as_recorded(cluster).await),
        };
        finish(r, cluster, ev)
    }

    async fn refresh_inner(&self, cluster: &str) -> Result<Option<ClusterRecord>, LaunchError> {
        let Some(_lock) = try_lock_cluster(&self.lock_dir, cluster)? else {
            return Ok(Some(self.record(cluster).await?));
        };
        let rec = self.record(cluster).await?;
        let h = Self::stored_handle(&rec)?;
        let p = self.provider(&h.provider.cloud)?;
        let nodes = p.query_instances(&h.provider).await.map_err(|e| {
            LaunchError::provider(format!("failed to query `{cluster}`: {e}")).with_provision(e)
        })?;
        let t = now();
        if nodes.is_empty() || nodes.iter().all(|n| n.state == InstanceState::Terminated) {
            // What the instances leave (a security group, a key pair) goes too; the record
            // stays until it has (terminating is idempotent).
            p.terminate_instances(&h.provider).await.map_err(|e| {
                LaunchError::provider(format!(
                    "the nodes of `{cluster}` are gone but cleaning up after them failed: {e}; `sky down {cluster}` retries"
                ))
                .with_provision(e)
            })?;
            self.state
                .add_event(
                    cluster,
                    "TERMINATED",
                    "no instance exists any more (terminated outside sky, or preempted)",
                    t,
                )
                .await?;
            self.state.remove_cluster(cluster, t).await?;
            return Ok(None);
        }
        let status = if nodes.iter().all(|n| n.state == InstanceState::Stopped) {
            ClusterStatus::Stopped
        } else if nodes.iter().all(|n| n.state == InstanceState::Running) {
            match runtime::agent_health(self, cluster, &h).await {
                AgentHealth::Alive => ClusterStatus::Up,
                AgentHealth::Gone(detail) => {
                    // The head agent is gone: its jobs lost their driver.
                    runtime::mark_orphans(p.as_ref(), &h, &nodes).await;
                    self.state
                        .add_event(
                            cluster,
                            "AGENT_DOWN",
                            &format!(
                                "the head agent is not running ({detail}); non-terminal jobs are FAILED_DRIVER"
                            ),
                            t,
                        )
                        .await?;
                    ClusterStatus::Init
                }
                // No proof it is gone: nothing is changed, nothing is killed.
                AgentHealth::Unreachable(detail) => {
                    return Err(LaunchError::unreachable(cluster, &detail));
                }
            }
        } else {
            ClusterStatus::Init
        };
        if status != rec.status {
            self.state.set_status(cluster, status, t).await?;
        }
        Ok(self.state.get_cluster(cluster).await?)
    }

    /// The node instances of a cluster (rank order), for `sky ssh` and `status --ip`.
    pub async fn nodes(
        &self,
        cluster: &str,
    ) -> Result<(Arc<dyn CloudProvider>, StoredHandle, Vec<InstanceInfo>), LaunchError> {
        let rec = self.record(cluster).await?;
        let h = Self::stored_handle(&rec)?;
        let p = self.provider(&h.provider.cloud)?;
        let nodes = p.query_instances(&h.provider).await.map_err(|e| {
            LaunchError::provider(format!("failed to query `{cluster}`: {e}")).with_provision(e)
        })?;
        Ok((p, h, nodes))
    }
}

/// Says a cancel through `ev` ([`LaunchEvent::Cancelled`]).
fn announce(e: &LaunchError, cluster: &str, ev: &dyn Events) {
    if e.is_cancelled()
        && let Some(left) = e.cluster
    {
        ev.event(&LaunchEvent::Cancelled {
            cluster: cluster.to_string(),
            left,
        });
    }
}

/// A command's result, its cancel announced.
fn finish<T>(r: Result<T, LaunchError>, cluster: &str, ev: &dyn Events) -> Result<T, LaunchError> {
    if let Err(e) = &r {
        announce(e, cluster, ev);
    }
    r
}

/// The bundled catalog plus an offer table for every registered provider without one (the
/// local cloud); `None` when every provider has a bundled table. Accelerator offers are listed
/// for every whole count up to the node's, since a node can run a job that asks for fewer
/// devices than it has.
pub fn catalog_with_providers(registry: &ProviderRegistry) -> Option<Catalog> {
    let bundled = Catalog::bundled();
    let mut extra: std::collections::BTreeMap<String, Vec<sky_catalog::ExtraOffer>> =
        Default::default();
    for o in registry.offerings() {
        if bundled.has_cloud(&o.cloud) {
            continue;
        }
        let rows = extra.entry(o.cloud.clone()).or_default();
        let base = sky_catalog::ExtraOffer {
            instance_type: o.instance_type.clone(),
            accelerator: None,
            vcpus: o.vcpus,
            memory_gib: o.memory_gib,
            price: o.price,
            spot_price: o.spot_price,
            region: o.region.clone(),
            zone: o.zone.clone(),
        };
        rows.push(base.clone());
        if let Some((name, count)) = &o.accelerator {
            let mut counts: Vec<f64> = (1..=(count.floor() as u32)).map(f64::from).collect();
            if count.fract() != 0.0 || counts.is_empty() {
                counts.push(*count);
            }
            for c in counts {
                rows.push(sky_catalog::ExtraOffer {
                    accelerator: Some((name.clone(), c)),
                    ..base.clone()
                });
            }
        }
    }
    let mut catalog: Option<Catalog> = None;
    for (cloud, rows) in extra {
        // Read as the provider's own profile says (default instance types, zones): a
        // third-party cloud's rules apply to its table without a built-in profile.
        let base = catalog.as_ref().unwrap_or(bundled);
        let next = match registry.get(&cloud) {
            Some(p) => {
                let mut profile = p.profile();
                profile.id = cloud.clone().into();
                base.with_extra_cloud_profile(&profile, &rows)
            }
            None => base.with_extra_cloud(&cloud, &rows),
        };
        catalog = Some(next);
    }
    catalog
}

fn task_wait_for(task: &Task) -> sky_agent::WaitFor {
    match task
        .resources
        .candidates()
        .first()
        .and_then(|r| r.autostop.as_ref())
        .map(|a| a.wait_for)
    {
        Some(sky_spec::AutostopWaitFor::Jobs) => sky_agent::WaitFor::Jobs,
        Some(sky_spec::AutostopWaitFor::None) => sky_agent::WaitFor::None,
        _ => sky_agent::WaitFor::JobsAndSsh,
    }
}

/// An agent client's error as the launcher reports it: what the agent refused (or what the
/// client would not send) is the caller's to fix; anything else means the agent was not
/// reached.
fn agent_err(cluster: &str, e: sky_agent::AgentError) -> LaunchError {
    match e {
        sky_agent::AgentError::RequestTooLarge { .. } => {
            LaunchError::invalid(format!("cluster `{cluster}`: {e}"))
        }
        sky_agent::AgentError::Remote(message) => LaunchError::new(
            LaunchErrorKind::AgentRefused,
            format!("the agent of cluster `{cluster}` refused: {message}"),
        ),
        e => LaunchError::agent(cluster, e),
    }
}

/// SkyPilot's job exit codes for `sky launch`/`exec`/`logs --status`.
pub fn job_exit_code(status: Option<JobStatus>) -> i32 {
    match status {
        Some(JobStatus::Succeeded) => exit::OK,
        Some(JobStatus::Cancelled) => exit::JOB_CANCELLED,
        Some(s) if s.is_terminal() => exit::JOB_FAILED,
        Some(_) => exit::JOB_NOT_FINISHED,
        None => exit::JOB_NOT_FOUND,
    }
}
