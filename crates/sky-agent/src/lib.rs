//! sky-agent is the node agent (SkyPilot's skylet): one runs on every node of a cluster. The
//! head's agent keeps the cluster's job queue (`.sky/jobs.json`), runs each job's setup and run
//! on every node of the job (its own ranks itself, the others through the worker agents), writes
//! the logs under `~/sky_logs/sky-<timestamp>/`, and runs autostop. `sky-launch` and the CLI
//! talk to it with [`AgentClient`] over newline-delimited JSON on TCP ([`protocol`]); the `sky
//! agent` command runs [`serve`]; every connection starts with the cluster's [`Token`], checked
//! before the agent reads the request. It must not depend on the launcher, the CLI, a cloud or
//! the state database: everything it knows about its cluster comes from [`ClusterInfo`], and
//! the only thing it does to the cluster itself is run the autostop hook the launcher gave it.
//!
//! Log layout of a job: `run.log` holds every rank's setup and run output (with more than one
//! rank, each line is prefixed `(head, rank=0, pid=N) ` or `(worker1, rank=1, pid=N, ip=A) `,
//! like SkyPilot; single-node output is plain), `setup.log` the setup output, and
//! `tasks/run.log` (one node) or `tasks/<rank>-<head|workerN>.log` each rank's raw run output.

mod auth;
mod client;
mod clock;
mod config;
mod error;
pub mod fileserve;
mod head;
mod node;
mod proc;
pub mod protocol;
mod sched;
mod server;
mod store;

pub use auth::{TOKEN_FILE, Token};
pub use client::{AgentClient, AgentInfo, LogsEnd, ReplyStream};
pub use config::{AgentConfig, ClusterInfo, NodeInfo};
pub use error::{AgentError, SubmitError};
pub use protocol::{ExecSpec, JobRecord, JobSpec, JobStatus, Reply, Request, WaitFor};
pub use server::{Agent, agent_addr_file, read_agent_addr, serve};
pub use store::mark_orphans_failed_driver;

/// The agent's own log line (stderr; the launcher redirects it to `~/.sky/agent.log`).
pub(crate) fn log(msg: &str) {
    eprintln!("[sky-agent {:.3}] {msg}", clock::now_unix());
}
