//! `sky`: the sky-rs command line (SkyPilot's commands and flags).
//!
//! A thin layer: clap definitions, reading files and the environment, printing tables.
//! Planning lives in `sky-optimizer`, the task format in `sky-spec`.

mod check;
mod clouds;
mod exit;
mod gpus;
mod hostenv;
mod launch;
mod table;
mod taskload;
mod validate;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::hostenv::HostEnv;

#[derive(Debug, Parser)]
#[command(
    name = "sky",
    version,
    about = "sky-rs: run AI and batch jobs on any infrastructure (SkyPilot-compatible)",
    long_about = None,
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 invalid input, 4 no resources, 5 not available yet."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
enum GpusCommand {
    /// List accelerators and their prices.
    List(GpusArgs),
}

/// Arguments of a command that is not available yet, kept so `--help` lists it.
#[derive(Debug, Args)]
struct Later {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per process")]
enum Command {
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
    Exec(Later),
    /// Show clusters.
    Status(Later),
    /// Stop clusters.
    Stop(Later),
    /// Restart stopped clusters.
    Start(Later),
    /// Tear down clusters.
    Down(Later),
    /// Schedule a cluster's autostop.
    Autostop(Later),
    /// Show a cluster's job queue.
    Queue(Later),
    /// Show a job's logs.
    Logs(Later),
    /// Cancel jobs on a cluster.
    Cancel(Later),
    /// Open a shell on a cluster's head node.
    Ssh(Later),
    /// Show the cost of clusters.
    #[command(name = "cost-report")]
    CostReport(Later),
    /// Managed jobs.
    Jobs(Later),
    /// Services.
    Serve(Later),
    /// Storage buckets.
    Storage(Later),
}

/// Says plainly that a SkyPilot command is not in this build yet.
pub fn not_available(what: &str, arrives_with: &str) -> i32 {
    eprintln!("sky {what} is not available yet in sky-rs: it arrives with {arrives_with}.");
    exit::NOT_AVAILABLE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = HostEnv::from_process();
    let code = match cli.command {
        Command::Launch(args) => launch::run(&env, &args),
        Command::Validate(args) => validate::run(&env, &args),
        Command::Check(args) => check::run(&env, &args),
        Command::ShowGpus(args) | Command::Gpus(GpusCommand::List(args)) => gpus::run(&env, &args),
        Command::Exec(_) => not_available("exec", "the local cloud and cluster lifecycle"),
        Command::Status(_) => not_available("status", "the local cloud and cluster lifecycle"),
        Command::Stop(_) => not_available("stop", "the local cloud and cluster lifecycle"),
        Command::Start(_) => not_available("start", "the local cloud and cluster lifecycle"),
        Command::Down(_) => not_available("down", "the local cloud and cluster lifecycle"),
        Command::Autostop(_) => not_available("autostop", "the local cloud and cluster lifecycle"),
        Command::Queue(_) => not_available("queue", "the local cloud and cluster lifecycle"),
        Command::Logs(_) => not_available("logs", "the local cloud and cluster lifecycle"),
        Command::Cancel(_) => not_available("cancel", "the local cloud and cluster lifecycle"),
        Command::Ssh(_) => not_available("ssh", "the local cloud and cluster lifecycle"),
        Command::CostReport(_) => {
            not_available("cost-report", "the local cloud and cluster lifecycle")
        }
        Command::Jobs(_) => not_available("jobs", "managed jobs"),
        Command::Serve(_) => not_available("serve", "serving"),
        Command::Storage(_) => not_available("storage", "storage"),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
