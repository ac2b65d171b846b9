//! `sky-launch`: the backend behind `sky launch`, `exec`, `stop`, `start`, `down` and friends.
//!
//! It composes the pure planner (`sky-optimizer`), the cloud plugins (`sky-provider`
//! implementations in a [`ProviderRegistry`]), the state database (`sky-state`) and the node
//! agent (`sky-agent`): optimize → provision with failover (zone → region → next-cheapest
//! cloud, blocking what failed and re-optimizing) → start the agents → sync the workdir and
//! local file mounts → submit the job. Used by the CLI; embedders can drive it directly.
//!
//! Invariants: a cluster is recorded in state (status INIT) *before* any provider call that can
//! create instances, and the record is removed only after the provider has terminated them, so
//! no failure path leaves an instance that `sky down` cannot find. This crate prints nothing:
//! progress goes through a [`Reporter`].

pub mod binary;
pub mod exit;
mod failover;
mod features;
mod lock;
mod recover;
mod runtime;

pub use lock::{ClusterLock, lock_cluster, try_lock_cluster};
pub use recover::RECOVERED_EVENT;
pub use runtime::{AgentHealth, local_uploads};

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use sky_agent::{AgentClient, JobRecord, JobSpec, JobStatus};
use sky_catalog::Catalog;
use sky_provider::{CloudProvider, ClusterHandle, InstanceInfo, InstanceState, ProviderRegistry};
use sky_spec::Task;
use sky_state::{ClusterRecord, ClusterStatus, StateDb};

pub use failover::{Attempt, autostop_note, render_history};
pub use features::capable_clouds;

/// Receives progress from long operations. The CLI draws spinners; tests collect lines.
pub trait Reporter: Send + Sync {
    /// A step begins ("Provisioning ...", "Syncing workdir ...").
    fn step(&self, message: &str);
    /// A placement failed and failover moves on.
    fn attempt_failed(&self, attempt: &Attempt);
    /// A step finished.
    fn done(&self, message: &str);
}

/// A reporter that drops everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn step(&self, _: &str) {}
    fn attempt_failed(&self, _: &Attempt) {}
    fn done(&self, _: &str) {}
}

/// Failures of the backend. Messages read well after "failed to ...", name the cluster or
/// resource, and say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    #[error("{0}")]
    Invalid(String),
    #[error("cluster `{0}` does not exist; `sky status` lists the clusters")]
    NoSuchCluster(String),
    #[error("{message}")]
    NoResources {
        message: String,
        history: Vec<Attempt>,
    },
    #[error("{message}")]
    Stopped {
        message: String,
        history: Vec<Attempt>,
    },
    #[error("{0}")]
    Provider(String),
    #[error(
        "the agent of cluster `{cluster}` is unreachable ({detail}); run `sky status -r {cluster}`, then `sky start {cluster}` to bring it back"
    )]
    Agent { cluster: String, detail: String },
    /// `sky status -r` could not reach the head agent and has no proof it is gone: the
    /// cluster's status and jobs were left as they are.
    #[error(
        "the agent of cluster `{cluster}` is unreachable ({detail}); its status and jobs are left as they are: try again later, or `sky down {cluster}` to remove it"
    )]
    Unreachable { cluster: String, detail: String },
    #[error("state database: {0}")]
    State(#[from] sky_state::Error),
    #[error("interrupted; the cluster is recorded and `sky down` removes what was created")]
    Interrupted,
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

/// Options of `sky launch`.
#[derive(Clone, Debug, Default)]
pub struct LaunchOptions {
    pub cluster: String,
    pub retry_until_up: bool,
    pub no_setup: bool,
    /// Autostop after idle minutes, and whether to tear down instead of stopping.
    pub idle_minutes: Option<i64>,
    pub down: bool,
    /// The command line, stored as the cluster's last use.
    pub command_line: String,
}

/// A submitted job.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub cluster: String,
    pub job_id: u64,
    pub agent: AgentClient,
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

    fn provider(&self, cloud: &str) -> Result<Arc<dyn CloudProvider>, LaunchError> {
        self.registry.get(cloud).ok_or_else(|| {
            LaunchError::Provider(format!(
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
        let (usable, left_out) =
            self.launch_clouds(idle_minutes, down)
                .map_err(|message| LaunchError::NoResources {
                    message,
                    history: Vec::new(),
                })?;
        let usable = if usable.is_empty() {
            usable
        } else {
            capable_clouds(&self.registry, task, &usable).map_err(LaunchError::Invalid)?
        };
        Ok((usable, left_out))
    }

    /// Takes the cluster's lock, saying so through `rep` when another command holds it.
    async fn lock(&self, cluster: &str, rep: &dyn Reporter) -> Result<ClusterLock, LaunchError> {
        lock_cluster(&self.lock_dir, cluster, || {
            rep.step(&format!(
                "Waiting for another sky command on cluster {cluster} to finish (it holds {})",
                self.lock_dir.join(format!("{cluster}.lock")).display()
            ));
        })
        .await
    }

    pub async fn record(&self, name: &str) -> Result<ClusterRecord, LaunchError> {
        self.state
            .get_cluster(name)
            .await?
            .ok_or_else(|| LaunchError::NoSuchCluster(name.to_string()))
    }

    pub fn stored_handle(record: &ClusterRecord) -> Result<StoredHandle, LaunchError> {
        serde_json::from_value(record.handle.clone()).map_err(|e| {
            LaunchError::Provider(format!(
                "cluster `{}` has an unreadable handle in state: {e}",
                record.name
            ))
        })
    }

    /// `sky launch`: provisions (or reuses) the cluster and submits the task. Returns the job.
    pub async fn launch(
        &self,
        task: &Task,
        opts: &LaunchOptions,
        rep: &dyn Reporter,
    ) -> Result<Submitted, LaunchError> {
        // Held until the job is submitted: a concurrent launch of the same name waits, then
        // finds the cluster UP and reuses it.
        let _lock = self.lock(&opts.cluster, rep).await?;
        let existing = self.state.get_cluster(&opts.cluster).await?;
        // What the task asks of its cloud (containers, ports, ...) is checked before anything
        // is recorded or provisioned; a new cluster's clouds are checked by provision_new.
        if let Some(rec) = &existing {
            features::check_cluster(&self.registry, task, &opts.cluster, &rec.cloud)?;
        }
        let handle = match existing {
            Some(rec) if rec.status == ClusterStatus::Up => {
                let h = Self::stored_handle(&rec)?;
                runtime::check_compatible(task, &rec, &h)?;
                rep.done(&format!(
                    "Cluster {} is UP; reusing it (no provisioning)",
                    opts.cluster
                ));
                h
            }
            Some(rec) if rec.status == ClusterStatus::Stopped => {
                runtime::check_compatible(task, &rec, &Self::stored_handle(&rec)?)?;
                self.start_locked(&opts.cluster, rep).await?
            }
            Some(rec) => {
                // INIT: a previous launch did not finish. Retry in its place.
                let h = Self::stored_handle(&rec)?;
                rep.step(&format!(
                    "Cluster {} is INIT (a previous launch did not finish); provisioning it again",
                    opts.cluster
                ));
                self.provision_in_place(task, opts, &h, rep).await?
            }
            None => self.provision_new(task, opts, rep).await?,
        };
        if opts.idle_minutes.is_some_and(|i| i >= 0) {
            self.check_autostop(&opts.cluster, &handle, opts.down)
                .map_err(|e| {
                    LaunchError::Invalid(format!(
                        "{e}. The cluster is up with nothing submitted: `sky down {}`, or launch again without -i",
                        opts.cluster
                    ))
                })?;
        }
        let agent = runtime::reach_agent(self, &opts.cluster, &handle).await?;
        runtime::sync(self, task, &handle, rep).await?;
        let job_id = self
            .submit(&opts.cluster, &handle, task, !opts.no_setup, &agent)
            .await?;
        self.touch(&opts.cluster, &opts.command_line).await?;
        // After the submit, so the queued job already counts as activity: set before it, a
        // short idle limit could fire between the two.
        if let Some(idle) = opts.idle_minutes {
            self.set_autostop_locked(&opts.cluster, idle, opts.down, task_wait_for(task))
                .await?;
        }
        Ok(Submitted {
            cluster: opts.cluster.clone(),
            job_id,
            agent,
        })
    }

    /// `sky exec`: submits to an UP cluster (syncs the workdir; no setup).
    pub async fn exec(
        &self,
        cluster: &str,
        task: &Task,
        command_line: &str,
        rep: &dyn Reporter,
    ) -> Result<Submitted, LaunchError> {
        let _lock = self.lock(cluster, rep).await?;
        let rec = self.record(cluster).await?;
        if rec.status != ClusterStatus::Up {
            return Err(LaunchError::Invalid(format!(
                "cluster `{cluster}` is {}; sky exec needs an UP cluster: run `sky start {cluster}` or `sky launch -c {cluster} ...`",
                rec.status
            )));
        }
        let handle = Self::stored_handle(&rec)?;
        runtime::check_compatible(task, &rec, &handle)?;
        features::check_cluster(&self.registry, task, cluster, &rec.cloud)?;
        let agent = runtime::reach_agent(self, cluster, &handle).await?;
        runtime::sync(self, task, &handle, rep).await?;
        let job_id = self.submit(cluster, &handle, task, false, &agent).await?;
        self.touch(cluster, command_line).await?;
        Ok(Submitted {
            cluster: cluster.to_string(),
            job_id,
            agent,
        })
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
            return Err(LaunchError::Invalid(format!(
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
            return Err(LaunchError::Invalid(format!(
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
        rep: &dyn Reporter,
    ) -> Result<(), LaunchError> {
        let _lock = self.lock(cluster, rep).await?;
        self.set_autostop_locked(cluster, idle_minutes, down, wait_for)
            .await
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
            return Err(LaunchError::Invalid(format!(
                "autostop is not supported on `{}` clusters: their head cannot stop or terminate its own cluster; use `sky stop {cluster}` or `sky down {cluster}` when done",
                h.provider.cloud
            )));
        }
        if !down && h.provider.use_spot {
            return Err(LaunchError::Invalid(format!(
                "cluster `{cluster}` runs on spot instances, which cannot be stopped: autostop needs --down"
            )));
        }
        if !down && !p.features().stop {
            return Err(LaunchError::Invalid(format!(
                "cloud `{}` cannot stop clusters: autostop on `{cluster}` needs --down",
                h.provider.cloud
            )));
        }
        Ok(())
    }

    /// `sky stop`.
    pub async fn stop(&self, cluster: &str, rep: &dyn Reporter) -> Result<(), LaunchError> {
        let _lock = self.lock(cluster, rep).await?;
        let rec = self.record(cluster).await?;
        let h = Self::stored_handle(&rec)?;
        let p = self.provider(&h.provider.cloud)?;
        if !p.features().stop {
            return Err(LaunchError::Invalid(format!(
                "cloud `{}` cannot stop clusters; use `sky down {cluster}`",
                h.provider.cloud
            )));
        }
        if h.provider.use_spot {
            return Err(LaunchError::Invalid(format!(
                "cluster `{cluster}` runs on spot instances, which cannot be stopped; use `sky down {cluster}`"
            )));
        }
        rep.step(&format!("Stopping cluster {cluster}"));
        p.stop_instances(&h.provider)
            .await
            .map_err(|e| LaunchError::Provider(format!("failed to stop `{cluster}`: {e}")))?;
        self.state
            .set_status(cluster, ClusterStatus::Stopped, now())
            .await?;
        self.state
            .add_event(cluster, "STOPPED", "stopped by the user", now())
            .await?;
        rep.done(&format!("Cluster {cluster} stopped"));
        Ok(())
    }

    /// `sky start`: restarts the nodes and their agents.
    pub async fn start(
        &self,
        cluster: &str,
        rep: &dyn Reporter,
    ) -> Result<StoredHandle, LaunchError> {
        let _lock = self.lock(cluster, rep).await?;
        self.start_locked(cluster, rep).await
    }

    async fn start_locked(
        &self,
        cluster: &str,
        rep: &dyn Reporter,
    ) -> Result<StoredHandle, LaunchError> {
        let rec = self.record(cluster).await?;
        let h = Self::stored_handle(&rec)?;
        if rec.status == ClusterStatus::Up {
            match runtime::agent_health(self, cluster, &h).await {
                AgentHealth::Alive => {
                    rep.done(&format!("Cluster {cluster} is already UP"));
                    return Ok(h);
                }
                // Starting agents beside one that still runs would give the node two heads.
                AgentHealth::Unreachable(detail) => {
                    return Err(LaunchError::Agent {
                        cluster: cluster.to_string(),
                        detail,
                    });
                }
                AgentHealth::Gone(_) => {}
            }
        }
        let p = self.provider(&h.provider.cloud)?;
        rep.step(&format!("Starting cluster {cluster}"));
        self.state
            .set_status(cluster, ClusterStatus::Init, now())
            .await?;
        p.start_instances(&h.provider)
            .await
            .map_err(|e| LaunchError::Provider(format!("failed to start `{cluster}`: {e}")))?;
        let h = runtime::start_agents(self, cluster, h.provider.clone(), &h, rep).await?;
        let mut rec = self.record(cluster).await?;
        rec.handle = serde_json::to_value(&h).unwrap_or_default();
        self.state.upsert_cluster(&rec).await?;
        self.state
            .set_status(cluster, ClusterStatus::Up, now())
            .await?;
        self.state
            .add_event(cluster, "UP", "started", now())
            .await?;
        rep.done(&format!("Cluster {cluster} is UP"));
        Ok(h)
    }

    /// `sky down`: terminates everything and forgets the cluster. With `purge`, a provider
    /// error still removes the record (and is reported).
    pub async fn down(
        &self,
        cluster: &str,
        purge: bool,
        rep: &dyn Reporter,
    ) -> Result<(), LaunchError> {
        let _lock = self.lock(cluster, rep).await?;
        let rec = self.record(cluster).await?;
        let h = Self::stored_handle(&rec)?;
        rep.step(&format!("Terminating cluster {cluster}"));
        if let Ok(c) = runtime::reach_agent(self, cluster, &h).await
            && let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), c.ping()).await
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.shutdown()).await;
        }
        let p = self.provider(&h.provider.cloud)?;
        if let Err(e) = p.terminate_instances(&h.provider).await {
            if !purge {
                return Err(LaunchError::Provider(format!(
                    "failed to terminate `{cluster}`: {e}; the cluster stays recorded. Retry, or `sky down -p {cluster}` to forget it anyway"
                )));
            }
            rep.done(&format!(
                "warning: terminating {cluster} failed ({e}); purged from state anyway"
            ));
        }
        self.state.remove_cluster(cluster, now()).await?;
        rep.done(&format!("Cluster {cluster} terminated"));
        Ok(())
    }

    /// `sky status -r`: asks the providers and agents for the truth and updates state.
    /// A cluster another command holds the lock of (a launch in progress, say) is returned as
    /// recorded: its truth is being changed.
    pub async fn refresh(&self, cluster: &str) -> Result<Option<ClusterRecord>, LaunchError> {
        let Some(_lock) = try_lock_cluster(&self.lock_dir, cluster)? else {
            return Ok(Some(self.record(cluster).await?));
        };
        let rec = self.record(cluster).await?;
        let h = Self::stored_handle(&rec)?;
        let p = self.provider(&h.provider.cloud)?;
        let nodes = p
            .query_instances(&h.provider)
            .await
            .map_err(|e| LaunchError::Provider(format!("failed to query `{cluster}`: {e}")))?;
        let t = now();
        if nodes.is_empty() || nodes.iter().all(|n| n.state == InstanceState::Terminated) {
            // What the instances leave (a security group, a key pair) goes too; the record
            // stays until it has (terminating is idempotent).
            p.terminate_instances(&h.provider).await.map_err(|e| {
                LaunchError::Provider(format!(
                    "the nodes of `{cluster}` are gone but cleaning up after them failed: {e}; `sky down {cluster}` retries"
                ))
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
                    return Err(LaunchError::Unreachable {
                        cluster: cluster.to_string(),
                        detail,
                    });
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
        let nodes = p
            .query_instances(&h.provider)
            .await
            .map_err(|e| LaunchError::Provider(format!("failed to query `{cluster}`: {e}")))?;
        Ok((p, h, nodes))
    }
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
        let next = catalog
            .as_ref()
            .unwrap_or(bundled)
            .with_extra_cloud(&cloud, &rows);
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
            LaunchError::Invalid(format!("cluster `{cluster}`: {e}"))
        }
        sky_agent::AgentError::Remote(message) => LaunchError::Provider(format!(
            "the agent of cluster `{cluster}` refused: {message}"
        )),
        e => LaunchError::Agent {
            cluster: cluster.to_string(),
            detail: e.to_string(),
        },
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
