//! sky-sched is the gang scheduler of a cluster's job queue: a deterministic state machine over
//! the nodes' capacities (vCPUs, memory, named accelerators with device ids) and a queue of
//! jobs. The head node agent (`sky-agent`) feeds it [`Event`]s (submit, finished, rank failed,
//! cancel, node lost) with the current time and carries out the [`Command`]s it returns (start
//! a job's ranks on given nodes and devices, kill a job, drop a queued job). It must not do IO,
//! read the clock or the environment, spawn processes or use an async runtime: time is passed
//! in, so every decision is reproducible and property-tested.
//!
//! Semantics (SkyPilot's cluster job queue, plus a starvation guard):
//! - **Never over-allocate**: on every node the demands of the started jobs fit its vCPUs,
//!   memory and devices; fractional accelerator demands (`H100:0.5`) share one device and the
//!   shares on a device never exceed 1; demands of 1 or more get whole, distinct devices.
//!   A job that names no vCPUs asks for [`DEFAULT_CPUS`] (0.5) per node.
//! - **Gang**: a job starts on `num_nodes` distinct nodes at once or not at all; a failed rank
//!   or a lost node kills every rank, and its resources stay held until the caller reports
//!   [`Event::Finished`] (so nothing new lands on devices a dying process still uses).
//! - **Backfill**: each pass walks the queue in submission order and starts every job that
//!   fits, even past an earlier job that does not (SkyPilot's five-job example). Placement is
//!   first fit over nodes in rank order, lowest free devices first; fractional shares go to the
//!   fullest device that still has room.
//! - **Starvation guard**: once the head of the queue has waited longer than
//!   [`Config::starvation_bound_s`] and still does not fit, a later job may start only if the
//!   head would still fit on enough nodes once the jobs that were running when it became the
//!   starving head end; so the head starts no later than that. The default
//!   is [`DEFAULT_STARVATION_BOUND_S`] = one hour: long enough that ordinary interactive queues
//!   (SkyPilot's documented example, where jobs wait minutes) behave exactly as SkyPilot's
//!   backfill and no GPU sits idle behind a big job for short waits; short enough that a big
//!   job behind a stream of small ones gets its nodes within a working session rather than
//!   never. `f64::INFINITY` turns the guard off.
//!
//! A pass costs one walk of the queue with a per-shape memo of "does not fit now" (resources
//! only shrink during a pass), so 100,000 queued jobs on 1,000 nodes take milliseconds.

mod error;
mod model;
mod sched;

pub use error::Unfit;
pub use model::{
    AccSpec, Command, Config, DEFAULT_CPUS, DEFAULT_STARVATION_BOUND_S, Demand, DequeueReason,
    DeviceShare, Event, JobId, JobState, KillReason, NodeId, NodeSpec, Placement, RankAlloc,
};
pub use sched::Scheduler;
