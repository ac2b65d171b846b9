//! sky-provider is the cloud plugin seam of sky-rs: the [`CloudProvider`] trait a cloud implements
//! (provision, query, stop, start, terminate, ports, per-node [`CommandRunner`]s), the
//! [`ProvisionError`] kinds and scopes that drive failover, the serialisable [`ClusterHandle`] that
//! `sky-state` stores, the [`Offering`] rows a cloud without a bundled catalog plans on, and the
//! explicit [`ProviderRegistry`] the CLI (or a test, or an embedder) builds. `sky-launch`,
//! `sky-agent` and `sky-cli` use it through `Arc<dyn CloudProvider>`; cloud crates
//! (`sky-cloud-local`, `sky-cloud-aws`, ...) implement it. It must not depend on any cloud SDK,
//! on `sky-catalog`, or on `sky-state`; it only defines types and traits. The contract in words is
//! `docs/specs/provider.md`.

pub mod gpu;
pub mod objstore;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sky_spec::model::{PortRange, Resources};

/// What a cloud can do, as data (defined in `sky-clouds`, beside the clouds' profiles). The
/// launcher and optimizer check it before asking for a capability; a provider whose feature is
/// `false` keeps the trait's `NotSupported` default.
pub use sky_clouds::{CloudProfile, FeatureSet};

pub use objstore::{ObjectStore, ObjectStoreError, ObjectStoreErrorKind};

/// Why provisioning failed; failover branches on it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProvisionErrorKind {
    /// No capacity for the request where it was tried: move on (next zone/region/cloud).
    Capacity,
    /// A quota was hit: move on.
    Quota,
    /// Credentials are missing, expired or lack permission: stop failover and show the fix.
    Auth,
    /// The request or the cloud's configuration is invalid: stop failover and show the fix.
    InvalidConfig,
    /// The cloud cannot do what was asked (a feature, an instance type, an operation).
    NotSupported,
    /// A temporary error (rate limit, timeout, network): retry the same place with backoff.
    Transient,
    /// Anything else (unclassified): blocks where it was tried, failover moves on.
    Other,
}

impl fmt::Display for ProvisionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProvisionErrorKind::Capacity => "capacity",
            ProvisionErrorKind::Quota => "quota",
            ProvisionErrorKind::Auth => "auth",
            ProvisionErrorKind::InvalidConfig => "invalid config",
            ProvisionErrorKind::NotSupported => "not supported",
            ProvisionErrorKind::Transient => "transient",
            ProvisionErrorKind::Other => "other",
        })
    }
}

/// How much of the cloud a failure rules out: what failover blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FailureScope {
    /// Only the zone that was tried.
    Zone,
    /// The whole region that was tried.
    Region,
    /// Every region of this cloud.
    Cloud,
}

impl fmt::Display for FailureScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureScope::Zone => "zone",
            FailureScope::Region => "region",
            FailureScope::Cloud => "cloud",
        })
    }
}

/// What failover does next with an error (see [`ProvisionError::action`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailoverAction {
    /// Block `scope` (of the placement that was tried) and try the next candidate.
    MoveOn(FailureScope),
    /// Retry the same placement with backoff, up to [`FailoverAction::RETRIES`] tries in all;
    /// then block `scope` and move on, as [`FailoverAction::MoveOn`].
    Retry(FailureScope),
    /// Stop failover at once and report the error (with its fix).
    Stop,
}

impl FailoverAction {
    /// How many times in all a placement is tried when its errors say [`FailoverAction::Retry`].
    pub const RETRIES: u32 = 3;
}

/// A provisioning error: its kind and scope drive failover; `message` is what the user reads
/// (a lowercase fragment that reads well after "failed to provision: "), `fix` says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ProvisionError {
    pub kind: ProvisionErrorKind,
    pub scope: FailureScope,
    pub message: String,
    pub fix: Option<String>,
}

impl ProvisionError {
    pub fn new(kind: ProvisionErrorKind, scope: FailureScope, message: impl Into<String>) -> Self {
        ProvisionError {
            kind,
            scope,
            message: message.into(),
            fix: None,
        }
    }

    /// Adds the text that tells the user how to fix it.
    #[must_use]
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    pub fn capacity(scope: FailureScope, message: impl Into<String>) -> Self {
        Self::new(ProvisionErrorKind::Capacity, scope, message)
    }

    pub fn quota(scope: FailureScope, message: impl Into<String>) -> Self {
        Self::new(ProvisionErrorKind::Quota, scope, message)
    }

    /// Auth errors always rule out the whole cloud.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ProvisionErrorKind::Auth, FailureScope::Cloud, message)
    }

    pub fn invalid_config(scope: FailureScope, message: impl Into<String>) -> Self {
        Self::new(ProvisionErrorKind::InvalidConfig, scope, message)
    }

    /// `what` is a fragment such as "stop on cloud kubernetes".
    pub fn not_supported(what: impl Into<String>) -> Self {
        Self::new(ProvisionErrorKind::NotSupported, FailureScope::Cloud, what)
    }

    pub fn transient(scope: FailureScope, message: impl Into<String>) -> Self {
        Self::new(ProvisionErrorKind::Transient, scope, message)
    }

    /// An unclassified error; it blocks only where it was tried (see [`ProvisionError::action`]).
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ProvisionErrorKind::Other, FailureScope::Zone, message)
    }

    /// What failover does with this error, as SkyPilot does (docs/specs/provider.md §4). This is
    /// the one place the rule lives; the launcher only follows it.
    ///
    /// - capacity, quota, not-supported: block `scope` and move on;
    /// - transient: retry the same place with backoff, then block `scope` and move on;
    /// - auth, invalid config: stop at once (the error repeats everywhere; its fix says what to do);
    /// - other (unclassified): block where it was tried (the zone, or the region when the
    ///   placement had no zone), whatever `scope` says, and move on; the history shows it.
    pub fn action(&self) -> FailoverAction {
        match self.kind {
            ProvisionErrorKind::Capacity
            | ProvisionErrorKind::Quota
            | ProvisionErrorKind::NotSupported => FailoverAction::MoveOn(self.scope),
            ProvisionErrorKind::Transient => FailoverAction::Retry(self.scope),
            ProvisionErrorKind::Auth | ProvisionErrorKind::InvalidConfig => FailoverAction::Stop,
            ProvisionErrorKind::Other => FailoverAction::MoveOn(FailureScope::Zone),
        }
    }

    /// Message and fix on one line, for history tables and logs.
    pub fn display_with_fix(&self) -> String {
        match &self.fix {
            Some(fix) => format!("{} (fix: {fix})", self.message),
            None => self.message.clone(),
        }
    }
}

/// One provisioning attempt: a cluster in one region (and zone) of one cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct ProvisionRequest {
    /// The user's name (`sky launch -c NAME`).
    pub cluster_name: String,
    /// The name on the cloud (unique, cloud-safe; the launcher derives it).
    pub cluster_name_on_cloud: String,
    pub region: String,
    /// `None`: the provider picks a zone of `region`.
    pub zone: Option<String>,
    pub num_nodes: u32,
    pub instance_type: String,
    pub use_spot: bool,
    pub resources: Resources,
    pub ports: Vec<PortRange>,
}

/// A node's lifecycle state as the cloud reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    Terminated,
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Terminated => "terminated",
        })
    }
}

/// One node of a cluster (rank 0 is the head).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub rank: u32,
    /// The address other nodes of the cluster reach this node at.
    pub internal_ip: String,
    /// The address the client reaches it at, when different or public.
    pub external_ip: Option<String>,
    pub state: InstanceState,
}

/// What a provider needs to find a cluster again (stored in sky-state as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterHandle {
    /// The provider id ([`CloudProvider::id`]).
    pub cloud: String,
    pub cluster_name: String,
    pub cluster_name_on_cloud: String,
    pub region: String,
    pub zone: Option<String>,
    pub num_nodes: u32,
    pub instance_type: String,
    pub use_spot: bool,
    /// Provider-specific data (opaque to everyone else).
    #[serde(default)]
    pub provider_config: serde_json::Value,
}

/// See [`CloudProvider::node_self_stop`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSelfStop {
    /// `(local file, destination relative to the node's home)`, uploaded to the head.
    pub files: Vec<(std::path::PathBuf, String)>,
    /// Environment the head's `sky agent self-stop` runs with (an emulator's endpoint, say).
    pub env: Vec<(String, String)>,
    /// The provider's own settings (its section of `~/.sky/config.yaml`).
    pub config: serde_json::Value,
}

/// What the launcher leaves on a remote head as [`SELF_STOP_FILE`] (mode 0600) for
/// `sky agent self-stop stop|down`, the head's autostop hook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelfStopFile {
    pub handle: ClusterHandle,
    pub env: Vec<(String, String)>,
    pub config: serde_json::Value,
}

/// Where [`SelfStopFile`] lives on a head node, relative to its home.
pub const SELF_STOP_FILE: &str = ".sky/self_stop.json";

/// Where a cloud that announces preemptions leaves the notice on each node, relative to the
/// node's home: the deadline in unix seconds (decimal text). See
/// [`CloudProvider::preemption_notice`].
pub const PREEMPTION_NOTICE_FILE: &str = ".sky/preemption_notice";

/// The variable that gives every job process the absolute path of [`PREEMPTION_NOTICE_FILE`]
/// on its node (set by sky-agent on any cloud; the file exists only while a notice is up).
pub const PREEMPTION_NOTICE_ENV: &str = "SKYPILOT_PREEMPTION_NOTICE_FILE";

/// The variable sky-agent sets (to `1`) on the processes of jobs it runs, so a cloud can tell
/// them from the agents and other node processes (a preemption notice signals only jobs).
/// Processes a provider starts on a node itself MUST NOT carry it.
pub const JOB_PROCESS_ENV: &str = "SKY_JOB_PROCESS";

/// One row a cloud without a bundled catalog offers to the optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offering {
    pub cloud: String,
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
    pub vcpus: f64,
    pub memory_gib: f64,
    /// Accelerator name and count per node.
    pub accelerator: Option<(String, f64)>,
    /// On-demand price per node-hour (USD).
    pub price: f64,
    /// Spot price per node-hour; `None` = no spot here.
    pub spot_price: Option<f64>,
}

/// A cloud. Held as `Arc<dyn CloudProvider>`; new methods only ever arrive with defaults.
///
/// **Cancellation is by drop** (docs/specs/provider.md §8): every async method MUST be
/// cancel-safe when its future is dropped at any await point. Dropping it stops the work (no
/// task spawned by the call goes on creating things), and whatever the call created by then
/// MUST be findable and removable by [`CloudProvider::terminate_instances`] of a handle built
/// from the request alone (same `cluster_name_on_cloud`, region, zone; `provider_config`
/// null): tag or name what you create before you create more. There is no token parameter:
/// the launcher races each call against its cancellation token and drops the loser.
#[async_trait]
pub trait CloudProvider: Send + Sync + fmt::Debug + 'static {
    /// Canonical lower-case id (`local`, `aws`, ...); equals [`ClusterHandle::cloud`].
    fn id(&self) -> &str;

    fn features(&self) -> FeatureSet;

    /// What the optimizer, catalog and CLI know of this cloud: its built-in profile (or a
    /// minimal one for a cloud sky-rs has none for) with [`CloudProvider::features`].
    fn profile(&self) -> CloudProfile {
        CloudProfile {
            features: self.features(),
            ..CloudProfile::of(self.id())
        }
    }

    /// Offerings for clouds without a bundled catalog (the optimizer plans on them).
    fn offerings(&self) -> Vec<Offering> {
        Vec::new()
    }

    /// Checks that credentials work; `Auth` errors carry the fix.
    async fn check_credentials(&self) -> Result<(), ProvisionError> {
        Ok(())
    }

    /// What the head node of a remote cluster needs to stop or terminate its own cluster
    /// through this provider when autostop fires (as SkyPilot's skylet does): credential files
    /// to upload, environment and this provider's settings. `None` (the default): this cloud's
    /// remote clusters cannot, and autostop is refused on them. Clusters whose nodes are on
    /// this machine (a runner with a `node_home`) run `sky stop|down` here instead.
    fn node_self_stop(&self) -> Option<NodeSelfStop> {
        None
    }

    /// The clusters this provider can find from its own records (node metadata, instance
    /// tags), without sky's state database: one handle per cluster of which some node still
    /// exists, in any state, equal to the handle [`CloudProvider::run_instances`] returned for
    /// it (`provider_config` included). The launcher adopts those its database lost
    /// (`Backend::adopt_lost_clusters`), so this is called by many commands: it MUST be cheap
    /// (a listing, no node contacted) and MUST NOT change anything. Default: none (a cloud
    /// that cannot list its clusters).
    async fn discover_clusters(&self) -> Result<Vec<ClusterHandle>, ProvisionError> {
        Ok(Vec::new())
    }

    /// Creates (or resumes) the nodes; on error it MUST have cleaned up what it created.
    async fn run_instances(&self, req: &ProvisionRequest) -> Result<ClusterHandle, ProvisionError>;

    /// Waits until every node is running and reachable.
    async fn wait_instances(&self, _h: &ClusterHandle) -> Result<(), ProvisionError> {
        Ok(())
    }

    /// Nodes in rank order (empty = nothing exists).
    async fn query_instances(&self, h: &ClusterHandle)
    -> Result<Vec<InstanceInfo>, ProvisionError>;

    /// Stops the nodes, keeping their disks.
    async fn stop_instances(&self, _h: &ClusterHandle) -> Result<(), ProvisionError> {
        Err(ProvisionError::not_supported(format!(
            "stopping clusters on cloud {}",
            self.id()
        )))
    }

    /// Starts stopped nodes again.
    async fn start_instances(&self, _h: &ClusterHandle) -> Result<(), ProvisionError> {
        Err(ProvisionError::not_supported(format!(
            "starting stopped clusters on cloud {}",
            self.id()
        )))
    }

    /// Idempotent: terminating twice, or a cluster that never existed, is Ok.
    async fn terminate_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError>;

    /// Makes `ports` reachable from the client. Nothing to open is always Ok.
    async fn open_ports(
        &self,
        _h: &ClusterHandle,
        ports: &[PortRange],
    ) -> Result<(), ProvisionError> {
        if ports.is_empty() {
            Ok(())
        } else {
            Err(ProvisionError::not_supported(format!(
                "opening ports on cloud {}",
                self.id()
            )))
        }
    }

    /// Removes what `open_ports` created (called before termination).
    async fn cleanup_ports(&self, _h: &ClusterHandle) -> Result<(), ProvisionError> {
        Ok(())
    }

    /// The deadline (unix seconds) of a preemption this cloud has announced for the cluster
    /// and not yet carried out, or `None` (no notice, or a cloud that gives none: the
    /// default). While a notice is up the nodes still answer `query_instances` as before; the
    /// job processes have been told (SIGTERM and [`PREEMPTION_NOTICE_FILE`] on the nodes,
    /// where the cloud can). The managed-jobs controller treats a job that fails while a
    /// notice is up as preempted. MUST be cheap (no node contacted) and MUST NOT change
    /// anything the cluster's owner can see.
    async fn preemption_notice(&self, _h: &ClusterHandle) -> Result<Option<i64>, ProvisionError> {
        Ok(None)
    }

    /// A runner for one node (rank order as in `query_instances`).
    fn command_runner(
        &self,
        h: &ClusterHandle,
        node: &InstanceInfo,
    ) -> Result<Arc<dyn CommandRunner>, ProvisionError>;
}

/// The result of a command (kept for callers that want a struct rather than the bare code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutput {
    pub exit_code: i32,
}

/// Errors of a [`CommandRunner`] (a command that ran and failed is not an error: it is an exit code).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// An IO operation failed; `op` says which ("spawn bash on node 1", "copy a to b").
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// A path the runner refuses (outside the node, missing source, ...).
    #[error("invalid path {path}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// The node is not reachable (stopped, gone, connection refused).
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The runner cannot do this.
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("{0}")]
    Other(String),
}

impl RunnerError {
    pub fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        RunnerError::Io {
            op: op.into(),
            source,
        }
    }
}

/// Where [`CommandRunner::run`] sends output chunks. (An alias because `#[async_trait]` would
/// otherwise rewrite the elided lifetime in `dyn FnMut(&[u8])`; implementers write
/// `sink: &mut OutputSink<'_>`.)
pub type OutputSink<'a> = dyn FnMut(&[u8]) + Send + 'a;

/// How the system `ssh` reaches a node whose runner is SSH: what `sky ssh` runs
/// ([`SshEndpoint::session_command`]) and what the CLI writes as the cluster's `Host` entry
/// ([`SshEndpoint::host_entry`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshEndpoint {
    /// The address `ssh` connects to (`HostName`).
    pub host_name: String,
    pub port: u16,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    /// `UserKnownHostsFile`; `None` = ssh's default.
    pub known_hosts_file: Option<PathBuf>,
    /// `StrictHostKeyChecking` (`yes`, `no`, `accept-new`); `None` = ssh's default.
    pub strict_host_key_checking: Option<String>,
    /// Further `-o Key=Value` options of the runner's own connections (a ControlMaster,
    /// keep-alives): used on the command line, left out of `Host` entries.
    pub options: Vec<String>,
}

/// Quotes `s` as one POSIX shell word (with `shlex`: the one quoter every crate uses). NUL
/// bytes, which no shell word can hold, are dropped; inputs that may hold one (env values,
/// names) are refused at validation before they get here.
pub fn shell_quote(s: &str) -> String {
    match shlex::try_quote(&s.replace('\0', "")) {
        Ok(q) => q.into_owned(),
        Err(_) => String::from("''"),
    }
}

fn sh_quote(s: &str) -> String {
    shell_quote(s)
}

/// Quotes a value of an ssh config file when it needs it (spaces, quotes).
fn ssh_config_value(s: &str) -> String {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"' || c == '#') {
        format!("\"{}\"", s.replace('"', ""))
    } else {
        s.to_string()
    }
}

impl SshEndpoint {
    /// `user@host` (or `host`).
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host_name),
            None => self.host_name.clone(),
        }
    }

    /// The `ssh` options (port, identity, host-key policy, [`SshEndpoint::options`]), without
    /// the destination.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["-p".to_string(), self.port.to_string()];
        if let Some(i) = &self.identity_file {
            a.extend([
                "-i".into(),
                i.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        if let Some(k) = &self.known_hosts_file {
            a.extend(["-o".into(), format!("UserKnownHostsFile={}", k.display())]);
        }
        if let Some(s) = &self.strict_host_key_checking {
            a.extend(["-o".into(), format!("StrictHostKeyChecking={s}")]);
        }
        for o in &self.options {
            a.extend(["-o".into(), o.clone()]);
        }
        a
    }

    /// The shell script `sky ssh` runs on the node: in `~/sky_workdir` when it exists (else
    /// the home), `command` (joined with spaces, run by `bash -c`) or, when it is empty, the
    /// user's login shell; while it runs, `~/.sky/ssh_sessions/<pid>` tells the head agent
    /// that a session is open (autostop `jobs_and_ssh`). Exits with the command's code.
    pub fn session_script(command: &[String]) -> String {
        let body = if command.is_empty() {
            "\"${SHELL:-/bin/bash}\" -l".to_string()
        } else {
            format!("bash -c {}", sh_quote(&command.join(" ")))
        };
        format!(
            "d=~/.sky/ssh_sessions; mkdir -p \"$d\" 2>/dev/null && echo $$ > \"$d/$$\" 2>/dev/null; \
             cd ~/sky_workdir 2>/dev/null || cd; {body}; rc=$?; rm -f \"$d/$$\"; exit $rc"
        )
    }

    /// The `ssh` command of `sky ssh`: [`SshEndpoint::session_script`] on the node, with a
    /// terminal (`-t`) when `command` is empty (an interactive shell). Its exit code is the
    /// command's, or 255 when ssh itself failed.
    pub fn session_command(&self, command: &[String]) -> std::process::Command {
        let mut cmd = std::process::Command::new("ssh");
        if command.is_empty() {
            cmd.arg("-t");
        }
        cmd.args(self.args())
            .arg(self.destination())
            .arg("--")
            .arg(format!(
                "exec bash -c {}",
                sh_quote(&Self::session_script(command))
            ));
        cmd
    }

    /// A `Host <alias>` block of an ssh config file (`HostName`, `User`, `Port`,
    /// `IdentityFile`, `UserKnownHostsFile`, `StrictHostKeyChecking`), ending with a newline.
    /// `alias` must be a plain name (a checked cluster name).
    pub fn host_entry(&self, alias: &str) -> String {
        let mut s = format!(
            "Host {alias}\n  HostName {}\n  Port {}\n",
            ssh_config_value(&self.host_name),
            self.port
        );
        if let Some(u) = &self.user {
            s.push_str(&format!("  User {}\n", ssh_config_value(u)));
        }
        if let Some(i) = &self.identity_file {
            s.push_str(&format!(
                "  IdentityFile {}\n  IdentitiesOnly yes\n",
                ssh_config_value(&i.display().to_string())
            ));
        }
        if let Some(k) = &self.known_hosts_file {
            s.push_str(&format!(
                "  UserKnownHostsFile {}\n",
                ssh_config_value(&k.display().to_string())
            ));
        }
        if let Some(c) = &self.strict_host_key_checking {
            s.push_str(&format!(
                "  StrictHostKeyChecking {}\n",
                ssh_config_value(c)
            ));
        }
        s
    }
}

/// Runs commands on one node.
///
/// **Cancellation is by drop**, as for [`CloudProvider`]: dropping the future of `run`,
/// `upload`, `spawn_detached` or `forward_port` MUST stop what it started on the node and here
/// (a running command and its process group are killed; a copy stops), and MUST NOT leave a
/// process that the provider's `stop_instances`/`terminate_instances` cannot find.
/// `spawn_detached`'s process is meant to outlive the call once it returned its pid.
#[async_trait]
pub trait CommandRunner: Send + Sync + fmt::Debug {
    /// Runs `bash -c script` on the node with `env` added, cwd = the node's home; each output
    /// chunk (stdout+stderr merged) goes to `sink`. Returns the exit code (128+N when killed by
    /// signal N). Dropping the future kills the command.
    async fn run(
        &self,
        script: &str,
        env: &[(String, String)],
        sink: &mut OutputSink<'_>,
    ) -> Result<i32, RunnerError>;

    /// rsync semantics: copies the tree `local` to `remote` (relative paths are under the node's
    /// home; `~/x` too). A directory's contents land in `remote`; parents are created.
    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RunnerError>;

    /// Starts a detached long-running process (the agent) in its own session, stdout and stderr
    /// appended to `log_file` (relative to the node's home); returns its pid.
    async fn spawn_detached(
        &self,
        argv: &[String],
        env: &[(String, String)],
        log_file: &str,
    ) -> Result<u32, RunnerError>;

    /// Forwards a local port to `remote_port` on the node; local clouds return the node address
    /// directly.
    async fn forward_port(&self, remote_port: u16) -> Result<SocketAddr, RunnerError>;

    /// Local sandboxes expose their directory.
    fn node_home(&self) -> Option<PathBuf> {
        None
    }

    /// How the system `ssh` reaches this node, for runners that are SSH (the CLI writes it as
    /// the cluster's `Host` entry). `None` (the default): not reachable with `ssh`.
    fn ssh_endpoint(&self) -> Option<SshEndpoint> {
        None
    }

    /// The command `sky ssh` runs with the terminal's stdio: an interactive shell on the node
    /// (`command` empty) or `command`, in `~/sky_workdir` when it exists; its exit code is the
    /// command's. Default: [`SshEndpoint::session_command`] of
    /// [`ssh_endpoint`](Self::ssh_endpoint), `None` without one (nodes with a
    /// [`node_home`](Self::node_home) are entered locally instead).
    fn interactive_command(&self, command: &[String]) -> Option<std::process::Command> {
        self.ssh_endpoint().map(|e| e.session_command(command))
    }

    /// Runs `script` and returns the exit code with the merged output collected.
    async fn run_capture(
        &self,
        script: &str,
        env: &[(String, String)],
    ) -> Result<(i32, Vec<u8>), RunnerError> {
        let mut out = Vec::new();
        let code = self
            .run(script, env, &mut |chunk: &[u8]| {
                out.extend_from_slice(chunk)
            })
            .await?;
        Ok((code, out))
    }
}

/// The set of enabled clouds, built explicitly by the CLI (from cargo features and config) or by
/// a test. Registering an id twice replaces the earlier provider.
#[derive(Clone, Debug, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Arc<dyn CloudProvider>>,
}

impl ProviderRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, p: Arc<dyn CloudProvider>) {
        self.providers.insert(p.id().to_owned(), p);
    }

    pub fn get(&self, id: &str) -> Option<Arc<dyn CloudProvider>> {
        self.providers.get(id).cloned()
    }

    /// Registered ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    /// Removes a provider (e.g. excluded by `allowed_clouds`); returns it.
    pub fn remove(&mut self, id: &str) -> Option<Arc<dyn CloudProvider>> {
        self.providers.remove(id)
    }

    /// Keeps only the providers whose id `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.providers.retain(|id, _| keep(id));
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Providers in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn CloudProvider>> {
        self.providers.values()
    }

    /// Every provider's offerings, in id order.
    pub fn offerings(&self) -> Vec<Offering> {
        self.providers
            .values()
            .flat_map(|p| p.offerings())
            .collect()
    }
}

/// Whether a symlink found `depth` directories below the root of a tree being uploaded (0: in
/// the root itself), pointing at `target`, stays inside that tree. Uploads copy only such
/// links (rsync's `--safe-links`): an absolute link, or one that climbs out with `..`, is left
/// out, so nothing sky syncs can reach outside the tree through it. Lexical: the target need
/// not exist.
pub fn link_stays_inside(target: &Path, depth: usize) -> bool {
    use std::path::Component;
    let mut level = depth;
    for c in target.components() {
        match c {
            Component::Normal(_) => level += 1,
            Component::CurDir => {}
            Component::ParentDir => match level.checked_sub(1) {
                Some(l) => level = l,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The symlinks under `root` that [`link_stays_inside`] refuses, as `(path, target)`; empty
/// when `root` is a file or has none. Unreadable entries are skipped (the upload reports them).
pub fn links_leaving(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&path)
                    && !link_stays_inside(&target, depth)
                {
                    out.push((path, target));
                }
            } else if meta.is_dir() {
                walk(&path, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    if std::fs::metadata(root).is_ok_and(|m| m.is_dir()) {
        walk(root, 0, &mut out);
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn links_that_leave_the_tree_are_found() {
        assert!(link_stays_inside(Path::new("a/b"), 0));
        assert!(link_stays_inside(Path::new("../x"), 1));
        assert!(!link_stays_inside(Path::new("../x"), 0));
        assert!(!link_stays_inside(Path::new("a/../../x"), 0));
        assert!(!link_stays_inside(Path::new("/etc/passwd"), 3));
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::os::unix::fs::symlink("../.sky", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("sub/abs")).unwrap();
        std::os::unix::fs::symlink("../evil", root.join("sub/ok")).unwrap();
        std::os::unix::fs::symlink("sub", root.join("fine")).unwrap();
        assert_eq!(
            links_leaving(root),
            vec![
                (root.join("evil"), PathBuf::from("../.sky")),
                (root.join("sub/abs"), PathBuf::from("/tmp")),
            ]
        );
    }
    use super::*;

    #[derive(Debug)]
    struct Minimal;

    #[async_trait]
    impl CloudProvider for Minimal {
        fn id(&self) -> &str {
            "minimal"
        }
        fn features(&self) -> FeatureSet {
            FeatureSet::default()
        }
        async fn run_instances(
            &self,
            req: &ProvisionRequest,
        ) -> Result<ClusterHandle, ProvisionError> {
            Err(ProvisionError::capacity(
                FailureScope::Zone,
                format!("no room for {}", req.cluster_name),
            ))
        }
        async fn query_instances(
            &self,
            _h: &ClusterHandle,
        ) -> Result<Vec<InstanceInfo>, ProvisionError> {
            Ok(Vec::new())
        }
        async fn terminate_instances(&self, _h: &ClusterHandle) -> Result<(), ProvisionError> {
            Ok(())
        }
        fn command_runner(
            &self,
            _h: &ClusterHandle,
            _node: &InstanceInfo,
        ) -> Result<Arc<dyn CommandRunner>, ProvisionError> {
            Err(ProvisionError::not_supported(
                "command runners on cloud minimal",
            ))
        }
    }

    fn handle() -> ClusterHandle {
        ClusterHandle {
            cloud: "minimal".into(),
            cluster_name: "dev".into(),
            cluster_name_on_cloud: "dev-1234".into(),
            region: "r".into(),
            zone: Some("z".into()),
            num_nodes: 2,
            instance_type: "t".into(),
            use_spot: false,
            provider_config: serde_json::json!({"k": 1}),
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn defaults_return_not_supported() {
        let p: Arc<dyn CloudProvider> = Arc::new(Minimal);
        let h = handle();
        block_on(async {
            assert!(p.check_credentials().await.is_ok());
            assert!(p.wait_instances(&h).await.is_ok());
            let e = p.stop_instances(&h).await.unwrap_err();
            assert_eq!(e.kind, ProvisionErrorKind::NotSupported);
            let e = p.start_instances(&h).await.unwrap_err();
            assert_eq!(e.kind, ProvisionErrorKind::NotSupported);
            assert!(p.open_ports(&h, &[]).await.is_ok());
            let e = p
                .open_ports(&h, &[PortRange { start: 80, end: 80 }])
                .await
                .unwrap_err();
            assert_eq!(e.kind, ProvisionErrorKind::NotSupported);
            assert!(p.cleanup_ports(&h).await.is_ok());
            assert!(p.discover_clusters().await.unwrap().is_empty());
            assert_eq!(p.preemption_notice(&h).await.unwrap(), None);
        });
        assert!(p.offerings().is_empty());
    }

    #[test]
    fn failover_actions_follow_kinds() {
        let cap = ProvisionError::capacity(FailureScope::Zone, "no capacity");
        assert_eq!(cap.action(), FailoverAction::MoveOn(FailureScope::Zone));
        let quota = ProvisionError::quota(FailureScope::Region, "quota");
        assert_eq!(quota.action(), FailoverAction::MoveOn(FailureScope::Region));
        let auth = ProvisionError::auth("bad key").with_fix("run aws configure");
        assert_eq!(auth.scope, FailureScope::Cloud);
        assert_eq!(auth.action(), FailoverAction::Stop);
        assert_eq!(auth.to_string(), "bad key");
        assert_eq!(auth.display_with_fix(), "bad key (fix: run aws configure)");
        assert_eq!(
            ProvisionError::invalid_config(FailureScope::Cloud, "x").action(),
            FailoverAction::Stop
        );
        assert_eq!(
            ProvisionError::transient(FailureScope::Zone, "x").action(),
            FailoverAction::Retry(FailureScope::Zone)
        );
        assert_eq!(
            ProvisionError::not_supported("x").action(),
            FailoverAction::MoveOn(FailureScope::Cloud)
        );
        // Unclassified: blocks where it was tried, whatever scope it claims.
        assert_eq!(
            ProvisionError::other("x").action(),
            FailoverAction::MoveOn(FailureScope::Zone)
        );
        assert_eq!(
            ProvisionError::new(ProvisionErrorKind::Other, FailureScope::Cloud, "x").action(),
            FailoverAction::MoveOn(FailureScope::Zone)
        );
        assert!(
            FailureScope::Zone < FailureScope::Region && FailureScope::Region < FailureScope::Cloud
        );
    }

    #[test]
    fn handle_round_trips_through_json() {
        let h = handle();
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["cluster_name_on_cloud"], "dev-1234");
        let back: ClusterHandle = serde_json::from_value(v).unwrap();
        assert_eq!(back, h);
        // provider_config may be absent in older records.
        let mut v = serde_json::to_value(&h).unwrap();
        v.as_object_mut().unwrap().remove("provider_config");
        let back: ClusterHandle = serde_json::from_value(v).unwrap();
        assert_eq!(back.provider_config, serde_json::Value::Null);
    }

    #[test]
    fn registry_is_explicit_and_sorted() {
        let mut r = ProviderRegistry::new();
        assert!(r.is_empty());
        r.register(Arc::new(Minimal));
        r.register(Arc::new(Minimal));
        assert_eq!(r.len(), 1);
        assert_eq!(r.ids(), vec!["minimal".to_string()]);
        assert!(r.get("minimal").is_some());
        assert!(r.get("aws").is_none());
        r.retain(|id| id != "minimal");
        assert!(r.is_empty());
    }

    #[derive(Debug)]
    struct Echo;

    #[async_trait]
    impl CommandRunner for Echo {
        async fn run(
            &self,
            script: &str,
            _env: &[(String, String)],
            sink: &mut OutputSink<'_>,
        ) -> Result<i32, RunnerError> {
            sink(script.as_bytes());
            sink(b"!");
            Ok(3)
        }
        async fn upload(&self, _local: &Path, _remote: &str) -> Result<(), RunnerError> {
            Err(RunnerError::NotSupported("upload".into()))
        }
        async fn spawn_detached(
            &self,
            _argv: &[String],
            _env: &[(String, String)],
            _log_file: &str,
        ) -> Result<u32, RunnerError> {
            Ok(1)
        }
        async fn forward_port(&self, remote_port: u16) -> Result<SocketAddr, RunnerError> {
            Ok(SocketAddr::from(([127, 0, 0, 1], remote_port)))
        }
    }

    #[test]
    fn run_capture_collects_chunks() {
        let r: Arc<dyn CommandRunner> = Arc::new(Echo);
        let (code, out) = block_on(r.run_capture("hi", &[])).unwrap();
        assert_eq!((code, out.as_slice()), (3, &b"hi!"[..]));
        assert!(r.node_home().is_none());
        assert!(r.ssh_endpoint().is_none() && r.interactive_command(&[]).is_none());
    }

    fn endpoint() -> SshEndpoint {
        SshEndpoint {
            host_name: "10.0.0.5".into(),
            port: 2222,
            user: Some("sky".into()),
            identity_file: Some(PathBuf::from("/keys/my key")),
            known_hosts_file: Some(PathBuf::from("/kh")),
            strict_host_key_checking: Some("accept-new".into()),
            options: vec!["BatchMode=yes".into()],
        }
    }

    #[test]
    fn host_entries_carry_what_the_runner_uses() {
        assert_eq!(
            endpoint().host_entry("c1"),
            "Host c1\n  HostName 10.0.0.5\n  Port 2222\n  User sky\n  IdentityFile \"/keys/my key\"\n  \
             IdentitiesOnly yes\n  UserKnownHostsFile /kh\n  StrictHostKeyChecking accept-new\n"
        );
        let bare = SshEndpoint {
            host_name: "h".into(),
            port: 22,
            ..SshEndpoint::default()
        };
        assert_eq!(bare.host_entry("x"), "Host x\n  HostName h\n  Port 22\n");
    }

    #[test]
    fn session_commands_land_in_the_workdir() {
        let e = endpoint();
        let args = |c: &std::process::Command| -> Vec<String> {
            c.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let shell = args(&e.session_command(&[]));
        assert_eq!(shell[0], "-t");
        assert!(shell.windows(2).any(|w| w == ["-p", "2222"]));
        assert!(shell.windows(2).any(|w| w == ["-o", "BatchMode=yes"]));
        assert!(shell.contains(&"sky@10.0.0.5".to_string()));
        let one = args(&e.session_command(&["echo".into(), "it's".into()]));
        assert_ne!(one[0], "-t");
        let script = one.last().unwrap();
        assert!(script.starts_with("exec bash -c "), "{script}");
        // The script itself, run here: it cds to ~/sky_workdir when there is one.
        let home = tempfile::tempdir().unwrap();
        let run = |cmd: &[String]| {
            std::process::Command::new("bash")
                .arg("-c")
                .arg(SshEndpoint::session_script(cmd))
                .env("HOME", home.path())
                .current_dir(home.path())
                .output()
                .unwrap()
        };
        let o = run(&["pwd; exit 7".into()]);
        assert_eq!(o.status.code(), Some(7));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            home.path().display().to_string()
        );
        std::fs::create_dir(home.path().join("sky_workdir")).unwrap();
        let o = run(&["pwd;".into(), "ls ~/.sky/ssh_sessions | wc -l".into()]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.starts_with(&format!("{}/sky_workdir\n1", home.path().display())),
            "{out}"
        );
        // The session marker goes when the session ends.
        assert_eq!(
            std::fs::read_dir(home.path().join(".sky/ssh_sessions"))
                .unwrap()
                .count(),
            0
        );
    }
}
