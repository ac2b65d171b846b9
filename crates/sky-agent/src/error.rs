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
    /// `jobs.json` (or another state file) could not be parsed; move it away to start afresh.
    #[error("read agent state {path}: {message} (move the file away to start afresh)")]
    Store { path: PathBuf, message: String },
}

impl AgentError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
