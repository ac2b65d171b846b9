//! Why a job cannot be queued or can no longer run.

use crate::model::JobId;

/// Why a demand can never be met (or was refused). Messages read well after "the job can never
/// run on this cluster: ".
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Unfit {
    /// The demand itself is malformed (names the field).
    #[error("invalid demand: {0}")]
    Invalid(String),
    /// The id was already submitted; the earlier job is unaffected.
    #[error("job {0} was already submitted; job ids must be unique")]
    Duplicate(JobId),
    /// More nodes than the cluster has (alive).
    #[error("the job asks for {want} nodes but the cluster has {have}")]
    TooManyNodes { want: usize, have: usize },
    /// Not enough nodes could host one rank even when idle.
    #[error("fewer than {num_nodes} nodes of the cluster have {what} when idle")]
    NoRoom { num_nodes: usize, what: String },
}
