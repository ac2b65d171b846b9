//! The command line's clap definitions: every command, its arguments and flags (SkyPilot's).
//! No logic lives here; `crate::run` dispatches a parsed [`Cli`] to the command modules.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sky",
    version,
    about = "sky-rs: run AI and batch jobs on any infrastructure (SkyPilot-compatible)",
    long_about = None,
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 invalid input, 4 no resources, 5 not available yet."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Resource and task overrides shared by `launch` and `exec` (SkyPilot's task options).
#[derive(Debug, Args, Clone, Default)]
pub struct TaskOptions {
    /// Task name (overrides `name` in the YAML).
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Working directory to sync to the cluster.
    #[arg(long)]
    pub workdir: Option<String>,
    /// Infrastructure: CLOUD[/REGION[/ZONE]] (`*` = any).
    #[arg(long)]
    pub infra: Option<String>,
    /// Cloud (legacy; prefer --infra).
    #[arg(long)]
    pub cloud: Option<String>,
    /// Region (legacy; prefer --infra).
    #[arg(long)]
    pub region: Option<String>,
    /// Zone (legacy; prefer --infra).
    #[arg(long)]
    pub zone: Option<String>,
    /// Number of nodes.
    #[arg(long)]
    pub num_nodes: Option<u32>,
    /// Use spot instances.
    #[arg(long, overrides_with = "no_use_spot")]
    pub use_spot: bool,
    /// Use on-demand instances.
    #[arg(long)]
    pub no_use_spot: bool,
    /// Image id (`docker:<image>` for a container).
    #[arg(long)]
    pub image_id: Option<String>,
    /// Environment variable: KEY=VALUE, or KEY to copy it from the local environment.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// A dotenv file of environment variables (lower precedence than --env).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Option<std::path::PathBuf>,
    /// Secret: KEY=VALUE, or KEY to copy it from the local environment.
    #[arg(long = "secret", value_name = "KEY[=VALUE]")]
    pub secret: Vec<String>,
    /// Number of vCPUs per node: N or N+.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Memory per node in GiB: N, N+, or with units (32GB).
    #[arg(long)]
    pub memory: Option<String>,
    /// Disk size in GiB.
    #[arg(long)]
    pub disk_size: Option<u64>,
    /// Disk tier: low, medium, high, ultra, best.
    #[arg(long)]
    pub disk_tier: Option<String>,
    /// Accelerators: NAME[:COUNT] (alias of --gpus in SkyPilot).
    #[arg(long)]
    pub gpus: Option<String>,
    /// Instance type.
    #[arg(long = "instance-type", short = 't')]
    pub instance_type: Option<String>,
    /// Ports to open: PORT or FROM-TO (repeatable).
    #[arg(long)]
    pub ports: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// A task YAML, or a command to run.
    #[arg(value_name = "YAML|COMMAND")]
    pub entrypoint: Vec<String>,
    /// Cluster name.
    #[arg(short = 'c', long)]
    pub cluster: Option<String>,
    /// Plan only: print the considered resources and exit.
    #[arg(long)]
    pub dryrun: bool,
    /// Skip the confirmation prompt.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Do not stream the run's output.
    #[arg(short = 'd', long = "detach-run")]
    pub detach_run: bool,
    /// Autostop after this many idle minutes.
    #[arg(short = 'i', long = "idle-minutes-to-autostop")]
    pub idle_minutes: Option<i64>,
    /// Tear down instead of stopping when autostop fires.
    #[arg(long)]
    pub down: bool,
    /// Keep retrying until resources are provisioned.
    #[arg(short = 'r', long = "retry-until-up")]
    pub retry_until_up: bool,
    /// Skip setup on an existing cluster.
    #[arg(long = "no-setup")]
    pub no_setup: bool,
    #[command(flatten)]
    pub task: TaskOptions,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The cluster to run on.
    pub cluster: String,
    /// A task YAML, or a command to run.
    #[arg(
        value_name = "YAML|COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub entrypoint: Vec<String>,
    /// Do not stream the job's output.
    #[arg(short = 'd', long = "detach-run")]
    pub detach_run: bool,
    #[command(flatten)]
    pub task: TaskOptions,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Clusters to show (default: all).
    pub clusters: Vec<String>,
    /// Show all details.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Ask the providers and agents for the truth first.
    #[arg(short = 'r', long)]
    pub refresh: bool,
    /// Show more: each cluster's head node address and node count.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print the head node's address of one cluster.
    #[arg(long)]
    pub ip: bool,
    /// Print the exposed endpoints of one cluster.
    #[arg(long)]
    pub endpoints: bool,
}

/// `stop`, `start`, `down`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Cluster names.
    pub clusters: Vec<String>,
    /// All clusters.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Skip confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// (down) Forget the cluster even if the provider fails to terminate it.
    #[arg(short = 'p', long)]
    pub purge: bool,
}

#[derive(Debug, Args)]
pub struct AutostopArgs {
    pub clusters: Vec<String>,
    /// All clusters.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Idle minutes before autostop (default 5).
    #[arg(short = 'i', long = "idle-minutes")]
    pub idle_minutes: Option<i64>,
    /// Cancel autostop.
    #[arg(long)]
    pub cancel: bool,
    /// Tear down instead of stopping.
    #[arg(long)]
    pub down: bool,
    /// What counts as activity: jobs_and_ssh (default), jobs, none.
    #[arg(long = "wait-for")]
    pub wait_for: Option<String>,
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Clusters (default: all).
    pub clusters: Vec<String>,
    /// Hide finished jobs.
    #[arg(short = 's', long = "skip-finished")]
    pub skip_finished: bool,
    /// Jobs of all users.
    #[arg(short = 'a', long = "all-users", visible_alias = "all")]
    pub all_users: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub cluster: String,
    /// Job IDs (default: the latest).
    pub job_ids: Vec<u64>,
    /// Print the job's status and exit with its code (0, 100 failed, 101 not finished, 102 not found, 103 cancelled).
    #[arg(long)]
    pub status: bool,
    /// Follow the log until the job ends (default).
    #[arg(long, overrides_with = "no_follow")]
    pub follow: bool,
    /// Print what is there and exit.
    #[arg(long = "no-follow")]
    pub no_follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// The provisioning log instead.
    #[arg(long)]
    pub provision: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub cluster: String,
    pub job_ids: Vec<u64>,
    /// Cancel every job.
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    #[arg(required_unless_present = "setup_config")]
    pub cluster: Option<String>,
    /// Add `Include <sky-rs's ssh config>` at the top of ~/.ssh/config (once), so that
    /// `ssh CLUSTER` reaches UP clusters whose nodes are reached with SSH.
    #[arg(long = "setup-config", conflicts_with = "cluster")]
    pub setup_config: bool,
    /// Run this command instead of an interactive shell.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CostReportArgs {
    /// Only clusters launched in the last N days.
    #[arg(long)]
    pub days: Option<u32>,
}

/// `sky agent serve|mark-orphans|self-stop stop|down|serve-file` (run on nodes by the launcher
/// and the head's autostop).
#[derive(Debug, Args)]
pub struct AgentArgs {
    pub action: String,
    /// `self-stop`: `stop` or `down`.
    pub what: Option<String>,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub rank: u32,
    #[arg(long)]
    pub head: bool,
    /// Relative paths are under HOME.
    #[arg(long = "cluster-file")]
    pub cluster_file: Option<String>,
    /// `serve-file`: the file served (relative paths are under HOME).
    #[arg(long)]
    pub file: Option<String>,
    /// `serve-file`: exit after serving the file this many times.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// `serve-file`: exit after this many seconds in any case.
    #[arg(long = "timeout-secs", default_value_t = 300)]
    pub timeout_secs: u64,
    /// `serve-file`: where to write `ip:port` once listening (relative paths are under HOME).
    #[arg(long = "addr-file")]
    pub addr_file: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Task YAML files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
    /// Environment variable for required envs: KEY=VALUE or KEY (from the local environment).
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// A dotenv file of environment variables.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Option<std::path::PathBuf>,
    /// Secret for required secrets: KEY=VALUE or KEY.
    #[arg(long = "secret", value_name = "KEY[=VALUE]")]
    pub secret: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Treat warnings (accelerators and instance types the bundled catalogs lack) as errors.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Only these clouds.
    pub clouds: Vec<String>,
    /// Show where credentials were found.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct GpusArgs {
    /// Accelerator name (NAME or NAME:COUNT); without it, list the common ones.
    pub accelerator: Option<String>,
    /// Show every accelerator, not only the common ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Restrict to CLOUD or CLOUD/REGION.
    #[arg(long)]
    pub infra: Option<String>,
    /// Restrict to a cloud (legacy; prefer --infra).
    #[arg(long)]
    pub cloud: Option<String>,
    /// Restrict to a region.
    #[arg(long)]
    pub region: Option<String>,
    /// Show every region's price, not only the cheapest.
    #[arg(long = "all-regions")]
    pub all_regions: bool,
}

#[derive(Debug, Subcommand)]
pub enum GpusCommand {
    /// List accelerators and their prices.
    List(GpusArgs),
}

/// Arguments of a command that is not available yet, kept so `--help` lists it.
#[derive(Debug, Args)]
pub struct Later {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

#[derive(Debug, Args)]
pub struct JobsLaunchArgs {
    /// A task or pipeline YAML, or a command to run.
    #[arg(value_name = "YAML|COMMAND")]
    pub entrypoint: Vec<String>,
    /// Recovery strategy: EAGER_NEXT_REGION (default) or FAILOVER (overrides the YAML's
    /// `job_recovery`).
    #[arg(long = "job-recovery", value_name = "STRATEGY")]
    pub job_recovery: Option<String>,
    /// Submit and return; do not stream the job's logs.
    #[arg(short = 'd', long = "detach-run")]
    pub detach_run: bool,
    /// Skip the confirmation prompt.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Plan only: print the considered resources of each task and exit.
    #[arg(long)]
    pub dryrun: bool,
    /// End the job when it has run this long (90s, 30m, 2h, or seconds).
    #[arg(long = "max-duration", value_name = "DURATION")]
    pub max_duration: Option<String>,
    /// Keep a failed task's cluster this long for debugging (30m), then tear it down.
    #[arg(long = "keep-on-failure", value_name = "DURATION")]
    pub keep_on_failure: Option<String>,
    #[command(flatten)]
    pub task: TaskOptions,
}

#[derive(Debug, Args)]
pub struct JobsQueueArgs {
    /// Jobs of all users.
    #[arg(short = 'a', long = "all-users", visible_alias = "all")]
    pub all_users: bool,
    /// Hide finished jobs.
    #[arg(short = 's', long = "skip-finished")]
    pub skip_finished: bool,
    /// Output format: table (default) or json.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    /// Only these job ids.
    pub job_ids: Vec<u64>,
}

#[derive(Debug, Args)]
pub struct JobsLogsArgs {
    /// The job (default: the latest).
    #[arg(conflicts_with = "name")]
    pub job_id: Option<u64>,
    /// The latest job of this name.
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// The controller's events for the job instead of its output.
    #[arg(long)]
    pub controller: bool,
    /// Follow until the job ends (default).
    #[arg(long, overrides_with = "no_follow")]
    pub follow: bool,
    /// Print what is there and exit.
    #[arg(long = "no-follow")]
    pub no_follow: bool,
    /// Only this task of a pipeline (0-based).
    #[arg(long)]
    pub task: Option<u32>,
}

#[derive(Debug, Args)]
pub struct JobsCancelArgs {
    /// Job ids.
    pub job_ids: Vec<u64>,
    /// The jobs of this name.
    #[arg(short = 'n', long, conflicts_with = "job_ids")]
    pub name: Option<String>,
    /// Every unfinished job (yours; with --all-users everyone's).
    #[arg(short = 'a', long, conflicts_with_all = ["job_ids", "name"])]
    pub all: bool,
    /// With -a: every user's jobs.
    #[arg(short = 'u', long = "all-users")]
    pub all_users: bool,
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `sky jobs controller run` (started by the CLI).
#[derive(Debug, Args)]
pub struct JobsControllerArgs {
    /// `run`.
    pub action: String,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Submit a task or pipeline as a managed job.
    Launch(Box<JobsLaunchArgs>),
    /// Show managed jobs.
    Queue(JobsQueueArgs),
    /// Stream a managed job's logs (kept after the job and its cluster are gone).
    Logs(JobsLogsArgs),
    /// Cancel managed jobs.
    Cancel(JobsCancelArgs),
    /// Print the URL of the jobs dashboard.
    Dashboard,
    /// The controller daemon (started by the other `sky jobs` commands).
    #[command(hide = true)]
    Controller(JobsControllerArgs),
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a cluster and run a task (`--dryrun` plans only).
    Launch(LaunchArgs),
    /// Check task YAML files offline: syntax, fields, required envs, catalog names.
    Validate(ValidateArgs),
    /// Show which clouds are enabled, why, and how to enable the others.
    Check(CheckArgs),
    /// List accelerators and their prices (alias: `sky gpus list`).
    #[command(name = "show-gpus")]
    ShowGpus(GpusArgs),
    /// Accelerator commands.
    #[command(subcommand)]
    Gpus(GpusCommand),
    /// Run a task on an existing cluster.
    Exec(ExecArgs),
    /// Show clusters.
    Status(StatusArgs),
    /// Stop clusters.
    Stop(ClusterArgs),
    /// Restart stopped clusters.
    Start(ClusterArgs),
    /// Tear down clusters.
    Down(ClusterArgs),
    /// Schedule a cluster's autostop.
    Autostop(AutostopArgs),
    /// Show a cluster's job queue.
    Queue(QueueArgs),
    /// Show a job's logs.
    Logs(LogsArgs),
    /// Cancel jobs on a cluster.
    Cancel(CancelArgs),
    /// Open a shell on a cluster's head node.
    Ssh(SshArgs),
    /// Show the cost of clusters.
    #[command(name = "cost-report")]
    CostReport(CostReportArgs),
    /// The node agent (started on nodes by `sky launch`).
    #[command(hide = true)]
    Agent(AgentArgs),
    /// Managed jobs: tasks and pipelines a controller runs, recovers and cleans up.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Services.
    Serve(Later),
    /// Storage buckets.
    Storage(Later),
}
