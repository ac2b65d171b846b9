//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the agent and its client. Messages read well after "failed to ...".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A file or socket operation failed; `context` names what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work (for example a head without a cluster file).
    #[error("invalid agent config: {0}")]
    Config(String),
    /// The peer sent something that is not this protocol.
    #[error("talk to the agent at {addr}: {message}")]
    Protocol { addr: SocketAddr, message: String },
    /// The agent understood the request and refused it.
    #[error("{0}")]
    Remote(String),
    /// The client refused to send a request over the agent's line limit
    /// ([`MAX_LINE_BYTES`](crate::protocol::MAX_LINE_BYTES)); nothing was sent.
    #[error("{}", too_large(op, *bytes, *limit))]
    RequestTooLarge {
        /// The request's `op` (`submit`, `exec`, ...).
        op: &'static str,
        /// The encoded request line's length.
        bytes: u64,
        limit: u64,
    },
    /// `jobs.json` (or another state file) could not be parsed; move it away to start afresh.
    #[error("read agent state {path}: {message} (move the file away to start afresh)")]
    Store { path: PathBuf, message: String },
}

/// Why the head refused a job (`submit`); the agent's `Error` reply carries its message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The spec itself is wrong (no nodes, a negative demand).
    #[error("{0}")]
    InvalidSpec(String),
    /// The job's demand exceeds what the cluster has, so it could never start.
    #[error("the job can never run on this cluster: {0}")]
    NeverFits(String),
    /// The head could not create the job's log directory.
    #[error("failed to create the log directory {path}: {message}")]
    LogDir { path: PathBuf, message: String },
}

fn too_large(op: &str, bytes: u64, limit: u64) -> String {
    let what = match op {
        "submit" => "the job spec (its run/setup script and envs)",
        "exec" => "one node's part of the job (its run/setup script and envs)",
        _ => "the request",
    };
    format!(
        "{what} is {:.1} MB, over the agent's limit of {} MiB per request; put the script in a file in the workdir and run that (e.g. `run: bash my_script.sh`)",
        bytes as f64 / 1e6,
        limit >> 20
    )
}

impl AgentError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_errors_read_as_the_agent_answers() {
        let e = SubmitError::NeverFits("it needs 8 H100 per node, nodes have 4".into());
        assert_eq!(
            e.to_string(),
            "the job can never run on this cluster: it needs 8 H100 per node, nodes have 4"
        );
        let e = SubmitError::LogDir {
            path: PathBuf::from("/h/sky_logs/x"),
            message: "permission denied".into(),
        };
        assert_eq!(
            e.to_string(),
            "failed to create the log directory /h/sky_logs/x: permission denied"
        );
        let e = SubmitError::InvalidSpec("num_nodes must be at least 1".into());
        assert_eq!(e.to_string(), "num_nodes must be at least 1");
    }
}
