//! sky-ssh is the SSH runtime of sky-rs: how the launcher reaches a node that is not on this
//! machine, whichever cloud made it. [`SshRunner`] is a `sky_provider::CommandRunner` over the
//! system `ssh` and `rsync`: one ControlMaster socket per host (under [`default_control_dir`],
//! so commands after the first skip the handshake), `BatchMode`, `ConnectTimeout`, the host's
//! identity file and host-key policy ([`SshTarget`]); `run` puts the script in its own session
//! and kills it when the future is dropped; uploads are `rsync -az --safe-links` over the
//! master; `forward_port` is an `ssh -L` tunnel that lives as long as this process;
//! `spawn_detached` tags every process with [`CLUSTER_MARKER_ENV`]; and the endpoint (`sky ssh`,
//! `Host` entries) carries the same options. Every VM cloud (AWS) and the SSH node pools build
//! their nodes' runners from it; no cloud crate declares runner types of its own. All shell
//! quoting goes through `sky_provider::shell_quote` (shlex). It depends only on `sky-provider`
//! and connects only to the targets its callers give it.

mod runner;

use std::path::PathBuf;

pub use runner::{CLUSTER_MARKER_ENV, SshRunner, SshTarget};
pub use sky_provider::shell_quote;

/// ControlMaster sockets go under `/tmp/sky-ssh-<uid>` (short, per user: socket paths are
/// limited to about 100 bytes).
pub fn default_control_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    PathBuf::from(format!("/tmp/sky-ssh-{uid}"))
}
