//! The values the scheduler takes and gives: nodes, demands, events, commands, placements.

/// The caller's job id (the agent's job number). Unique per scheduler.
pub type JobId = u64;

/// Index of a node in the list given to [`crate::Scheduler::new`] (rank order).
pub type NodeId = usize;

/// Default per-node vCPU demand of a job that names none (SkyPilot's `{'CPU': 0.5}`), so about
/// two CPU-only jobs run per vCPU.
pub const DEFAULT_CPUS: f64 = 0.5;

/// Default starvation bound in seconds (one hour); see the crate docs.
pub const DEFAULT_STARVATION_BOUND_S: f64 = 3600.0;

/// One node's capacity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSpec {
    /// vCPUs; `None` = not accounted (any CPU demand fits).
    pub cpus: Option<f64>,
    /// Memory in GB; `None` = not accounted.
    pub memory_gb: Option<f64>,
    /// Accelerator pools, one per name.
    pub accelerators: Vec<AccSpec>,
}

/// A pool of one kind of accelerator on a node.
#[derive(Clone, Debug, PartialEq)]
pub struct AccSpec {
    /// `H100` (matched case-insensitively).
    pub name: String,
    /// How many devices (`ceil(count)` devices; a fractional tail device has that capacity).
    pub count: f64,
    /// Device ids for `CUDA_VISIBLE_DEVICES`, in device order; missing ids default to the index.
    pub device_ids: Vec<String>,
}

impl AccSpec {
    /// `count` devices with ids `0..count`.
    pub fn new(name: impl Into<String>, count: f64) -> Self {
        Self {
            name: name.into(),
            count,
            device_ids: Vec::new(),
        }
    }
}

impl NodeSpec {
    /// A node with `cpus` vCPUs and nothing else accounted.
    pub fn cpus(cpus: f64) -> Self {
        Self {
            cpus: Some(cpus),
            ..Self::default()
        }
    }

    /// Adds an accelerator pool.
    #[must_use]
    pub fn with_acc(mut self, acc: AccSpec) -> Self {
        self.accelerators.push(acc);
        self
    }
}

/// What a job asks for on each of its nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Demand {
    /// Distinct nodes the job runs on at once (a gang).
    pub num_nodes: u32,
    /// vCPUs per node; `None` = [`DEFAULT_CPUS`].
    pub cpus: Option<f64>,
    /// Memory per node in GB; `None` = none accounted.
    pub memory_gb: Option<f64>,
    /// `("H100", 4.0)` per node. Below 1: a share of one device (shares on a device never
    /// add up to more than 1). 1 or more: that many whole, distinct devices (rounded up).
    pub accelerator: Option<(String, f64)>,
}

impl Default for Demand {
    fn default() -> Self {
        Self {
            num_nodes: 1,
            cpus: None,
            memory_gb: None,
            accelerator: None,
        }
    }
}

impl Demand {
    /// One node, `count` of `name`.
    pub fn gpus(name: impl Into<String>, count: f64) -> Self {
        Self {
            accelerator: Some((name.into(), count)),
            ..Self::default()
        }
    }

    /// The same demand on `n` nodes.
    #[must_use]
    pub fn on_nodes(mut self, n: u32) -> Self {
        self.num_nodes = n;
        self
    }

    /// The same demand with an explicit vCPU count.
    #[must_use]
    pub fn with_cpus(mut self, cpus: f64) -> Self {
        self.cpus = Some(cpus);
        self
    }
}

/// Scheduler settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Seconds the head of the queue may wait before later jobs may no longer jump ahead of it
    /// when that would delay it. `f64::INFINITY` turns the guard off (SkyPilot's behaviour).
    pub starvation_bound_s: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            starvation_bound_s: DEFAULT_STARVATION_BOUND_S,
        }
    }
}

/// Something that happened, told to [`crate::Scheduler::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A new job joins the end of the queue.
    Submit { job: JobId, demand: Demand },
    /// Every rank of a started job is gone (it ended, failed, or was killed): its resources
    /// are free again.
    Finished { job: JobId },
    /// One rank of a running job failed: every rank must stop and the job fails.
    RankFailed { job: JobId, rank: usize },
    /// The user cancels a pending or running job.
    Cancel { job: JobId },
    /// A node is gone for good: its ranks are lost and it hosts nothing more.
    NodeLost { node: NodeId },
}

/// What the caller must do, returned by [`crate::Scheduler::handle`] in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Start every rank of the job now, rank `i` on `placement.ranks[i]`.
    Start { job: JobId, placement: Placement },
    /// Stop every rank of a started job; report [`Event::Finished`] once all are gone (its
    /// resources stay held until then).
    Kill { job: JobId, reason: KillReason },
    /// The job leaves the queue without having started (it never will).
    Dequeue { job: JobId, reason: DequeueReason },
}

/// Why a started job must stop.
#[derive(Clone, Debug, PartialEq)]
pub enum KillReason {
    Cancelled,
    RankFailed { rank: usize },
    NodeLost { node: NodeId },
}

/// Why a job left the queue without starting.
#[derive(Clone, Debug, PartialEq)]
pub enum DequeueReason {
    Cancelled,
    /// The submission was refused (bad demand, duplicate id, or it can never fit).
    Rejected(crate::Unfit),
    /// Nodes were lost and the job can no longer fit even on the idle cluster.
    Unschedulable(crate::Unfit),
}

/// Where a job runs: one entry per rank, on distinct nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub ranks: Vec<RankAlloc>,
}

/// One rank's share of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct RankAlloc {
    pub node: NodeId,
    pub cpus: f64,
    pub memory_gb: f64,
    /// The accelerator pool's name as the node spells it, when the job asked for one.
    pub accelerator: Option<String>,
    /// The devices given to this rank, in device order.
    pub devices: Vec<DeviceShare>,
}

/// A device (or a share of one) given to a rank.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceShare {
    /// Index of the device in its pool.
    pub index: usize,
    /// Its id for `CUDA_VISIBLE_DEVICES`.
    pub id: String,
    /// 1.0 for whole devices, the fraction otherwise.
    pub share: f64,
}

impl RankAlloc {
    /// `CUDA_VISIBLE_DEVICES` for this rank: its device ids joined by commas (empty when it got
    /// none).
    pub fn visible_devices(&self) -> String {
        let ids: Vec<&str> = self.devices.iter().map(|d| d.id.as_str()).collect();
        ids.join(",")
    }
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    /// Told to stop; still holds its resources until [`Event::Finished`].
    Stopping,
}
