//! Cluster commands: launch (for real), exec, status, stop, start, down, autostop, queue,
//! logs, cancel, ssh, cost-report, and the hidden `agent` entry point run on nodes.

use std::{io::Write, sync::Arc};

use sky_launch::{Attempt, Backend, LaunchError, LaunchOptions, Reporter};
use sky_provider::ProviderRegistry;
use sky_spec::TaskFile;

use crate::{
    ClusterArgs, exit,
    hostenv::HostEnv,
    progress::Progress,
    taskload::{self, indent},
};

/// The providers this build can provision on, as the user's config allows: the local cloud
/// (enabled by default; `allowed_clouds` can exclude it), with the default `aws` feature AWS
/// when its credentials are found, and SSH node pools when `~/.sky/ssh_node_pools.yaml` exists.
pub fn providers(
    env: &HostEnv,
    config: &sky_spec::sky_config::SkyConfig,
) -> Result<ProviderRegistry, String> {
    let mut registry = ProviderRegistry::new();
    if allowed(config, "local") {
        let local_cfg = sky_cloud_local::LocalConfig::from_json(
            config.raw.get("local").unwrap_or(&serde_json::Value::Null),
        )
        .map_err(|e| {
            format!(
                "invalid `local:` section in {}: {e}",
                env.config_path().display()
            )
        })?;
        let sky_binary =
            std::env::current_exe().map_err(|e| format!("failed to find the sky binary: {e}"))?;
        registry.register(Arc::new(sky_cloud_local::LocalProvider::new(
            env.state_dir().join("local"),
            local_cfg,
            sky_binary,
        )));
    }
    #[cfg(feature = "aws")]
    {
        // AWS when its credentials are found (env, ~/.aws) and `allowed_clouds` allows it.
        if allowed(config, "aws") && crate::clouds::check_credentials(env, "aws").enabled {
            let aws_cfg = sky_cloud_aws::AwsConfig::from_json(
                config.raw.get("aws").unwrap_or(&serde_json::Value::Null),
            )
            .map_err(|e| {
                format!(
                    "invalid `aws:` section in {}: {e}",
                    env.config_path().display()
                )
            })?;
            // EC2 nodes are reached with the SSH runtime (the cloud crates do not depend on
            // each other; the CLI plugs one into the other).
            let known_hosts = env.state_dir().join("ssh").join("known_hosts");
            let runner_factory: sky_cloud_aws::RunnerFactory =
                Arc::new(move |t: &sky_cloud_aws::SshTarget| {
                    let target = sky_cloud_ssh::SshTarget {
                        ip: t.address.clone(),
                        port: 22,
                        user: Some(t.user.clone()),
                        identity_file: t.identity_file.clone(),
                        known_hosts_file: Some(known_hosts.clone()),
                        strict_host_key_checking: "accept-new".into(),
                        control_dir: sky_cloud_ssh::default_control_dir(),
                        connect_timeout: std::time::Duration::from_secs(10),
                    };
                    let runner: Arc<dyn sky_provider::CommandRunner> = Arc::new(
                        sky_cloud_ssh::SshRunner::new(target, t.cluster_name_on_cloud.clone()),
                    );
                    Ok(runner)
                });
            let opts = sky_cloud_aws::AwsOptions {
                endpoint_url: env
                    .var("AWS_ENDPOINT_URL_EC2")
                    .or_else(|| env.var("AWS_ENDPOINT_URL"))
                    .map(String::from),
                public_key_path: Some(env.state_dir().join("keys").join("sky-key.pub")),
                runner_factory: Some(runner_factory),
                // A head's autostop stops its own cluster with these credentials.
                node_files: aws_credential_files(env),
                node_env: [
                    "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY",
                    "AWS_SESSION_TOKEN",
                    "AWS_PROFILE",
                ]
                .iter()
                .filter_map(|k| env.var(k).map(|v| (k.to_string(), v.to_string())))
                .collect(),
                ..sky_cloud_aws::AwsOptions::standard()
            };
            registry.register(Arc::new(sky_cloud_aws::AwsProvider::new(aws_cfg, opts)));
        }
    }
    if let Some(ssh) = ssh_pools(env, config)? {
        registry.register(Arc::new(ssh));
    }
    Ok(registry)
}

/// The SSH node pools cloud, when `~/.sky/ssh_node_pools.yaml` exists and `allowed_clouds`
/// allows it; an unreadable or invalid pools file is an error.
pub fn ssh_pools(
    env: &HostEnv,
    config: &sky_spec::sky_config::SkyConfig,
) -> Result<Option<sky_cloud_ssh::SshProvider>, String> {
    if !allowed(config, "ssh") {
        return Ok(None);
    }
    sky_cloud_ssh::SshProvider::from_dirs(&env.sky_dir(), &env.state_dir(), &env.home)
        .map_err(|e| e.to_string())
}

/// Whether `allowed_clouds` in the user's config (absent: every cloud) allows `cloud`.
fn allowed(config: &sky_spec::sky_config::SkyConfig, cloud: &str) -> bool {
    config
        .allowed_clouds
        .as_ref()
        .is_none_or(|a| a.iter().any(|c| c == cloud))
}

/// The AWS credential and config files found here, with where they go on a head node.
#[cfg(feature = "aws")]
fn aws_credential_files(env: &HostEnv) -> Vec<(std::path::PathBuf, String)> {
    let pick = |var: &str, default: &str| {
        env.var(var)
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env.home_path(default))
    };
    [
        (
            pick("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
            ".aws/credentials",
        ),
        (pick("AWS_CONFIG_FILE", ".aws/config"), ".aws/config"),
    ]
    .into_iter()
    .filter(|(p, _)| p.is_file())
    .map(|(p, d)| (p, d.to_string()))
    .collect()
}

/// Builds the backend: state database, providers (the local cloud), the catalog they plan on;
/// then adopts the clusters the state database lost (see `recover.rs`). With
/// `in_memory_if_damaged` (`sky down`), a damaged state database gives way to an in-memory one.
pub async fn backend(
    env: &HostEnv,
    in_memory_if_damaged: bool,
) -> Result<Backend, crate::recover::BackendError> {
    crate::agentcfg::autostop_minute(env)?;
    let config = crate::clouds::load_config(env)?;
    let sky_dir = env.state_dir();
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sky_dir)
    }
    .map_err(|e| format!("failed to create {}: {e}", sky_dir.display()))?;
    let url = config
        .db
        .clone()
        .or_else(|| env.var("SKYPILOT_DB_CONNECTION_URI").map(String::from))
        .unwrap_or_else(|| format!("sqlite://{}", sky_dir.join("state.db").display()));
    let state = crate::recover::open_state(&url, in_memory_if_damaged).await?;
    let registry = providers(env, &config)?;
    let enabled: Vec<String> = registry.ids();
    let sky_binary =
        std::env::current_exe().map_err(|e| format!("failed to find the sky binary: {e}"))?;
    // The agents run with HOME = their node; the autostop hook needs the client's.
    let mut hook_env = vec![(
        "SKY_CLIENT_HOME".to_string(),
        env.home.display().to_string(),
    )];
    if let Some(s) = env.var("SKY_HOME") {
        hook_env.push(("SKY_CLIENT_SKY_HOME".into(), s.to_string()));
    }
    if let Some(s) = env.var("SKYPILOT_CONFIG") {
        hook_env.push(("SKY_CLIENT_CONFIG".into(), s.to_string()));
    }
    // The test knob reaches the agents this process starts, remote ones too (checked above,
    // before any).
    let agent_env: Vec<(String, String)> = env
        .var(crate::agentcfg::AUTOSTOP_MINUTE_ENV)
        .map(|ms| (crate::agentcfg::AUTOSTOP_MINUTE_ENV.into(), ms.to_string()))
        .into_iter()
        .collect();
    let backend = Backend {
        registry,
        state,
        catalog: Default::default(),
        enabled_clouds: enabled,
        sky_binary,
        hook_env,
        agent_env,
        user: env.user(),
        lock_dir: sky_dir.join("locks"),
    };
    crate::recover::adopt(&backend).await?;
    Ok(backend)
}

/// The backend, or (from inside a command's async body) a message and its exit code (3, or 1
/// for a damaged state database). `backend_or_exit!(env, true)`: see [`backend`].
macro_rules! backend_or_exit {
    ($env:expr) => {
        backend_or_exit!($env, false)
    };
    ($env:expr, $in_memory_if_damaged:expr) => {
        match backend($env, $in_memory_if_damaged).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}", e.message);
                return e.code;
            }
        }
    };
}

/// What Ctrl-C prints, set by the command as it moves on (see [`on_interrupt`]).
static INTERRUPT_MESSAGE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Sets what Ctrl-C prints from now on in this command: it must describe the moment (a launch
/// in progress, logs being streamed), never a stage the command has left.
fn on_interrupt(message: String) {
    if let Ok(mut m) = INTERRUPT_MESSAGE.lock() {
        *m = Some(message);
    }
}

/// Runs an async command body on a small runtime, with Ctrl-C turning into a clean message.
pub fn block_on<F: std::future::Future<Output = i32>>(f: F) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    rt.block_on(async {
        tokio::select! {
            code = f => code,
            _ = tokio::signal::ctrl_c() => {
                let message = INTERRUPT_MESSAGE
                    .lock()
                    .ok()
                    .and_then(|m| m.clone())
                    .unwrap_or_else(|| "Interrupted.".into());
                eprintln!("\n{message}");
                exit::INTERRUPTED
            }
        }
    })
}

/// Refuses, with exit 3, any name that is not a valid cluster name (SkyPilot's rule), before a
/// command does anything with it: names become file names and appear in shell commands.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<(), i32> {
    for name in names {
        if let Err(e) = sky_spec::names::check_cluster_name(name) {
            eprintln!("{e}");
            return Err(exit::INVALID_INPUT);
        }
    }
    Ok(())
}

/// `check_names` as the first statement of a command.
macro_rules! names_or_exit {
    ($names:expr) => {
        if let Err(code) = check_names($names) {
            return code;
        }
    };
}

fn report(e: &LaunchError) -> i32 {
    eprintln!("{e}");
    match e {
        LaunchError::Invalid(_) | LaunchError::NoSuchCluster(_) => exit::INVALID_INPUT,
        LaunchError::NoResources { .. } | LaunchError::Stopped { .. } => exit::NO_RESOURCES,
        _ => exit::FAILURE,
    }
}

/// The reporter the CLI uses: a spinner on a terminal, plain lines otherwise; with a cluster,
/// every line is also appended to `~/.sky-rs/logs/<cluster>/provision.log` (`sky logs --provision`).
struct CliReporter {
    progress: Progress,
    log: Option<std::sync::Mutex<std::fs::File>>,
}

impl CliReporter {
    fn record(&self, line: &str) {
        if let Some(f) = &self.log
            && let Ok(mut f) = f.lock()
        {
            let _ = writeln!(f, "[{}] {line}", sky_launch::now());
        }
    }
}

impl Reporter for CliReporter {
    fn step(&self, message: &str) {
        self.record(message);
        self.progress.step(message);
    }
    fn attempt_failed(&self, a: &Attempt) {
        let line = format!(
            "Failed to provision on {} ({}): {}. Trying the next placement.",
            a.infra, a.resources, a.reason
        );
        self.record(&line);
        self.progress.line(&line);
    }
    fn done(&self, message: &str) {
        self.record(message);
        self.progress.done(message);
    }
}

fn reporter() -> CliReporter {
    CliReporter {
        progress: Progress::new(),
        log: None,
    }
}

/// A reporter that also keeps the cluster's provision log.
fn reporter_for(env: &HostEnv, cluster: &str) -> CliReporter {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = env.state_dir().join("logs").join(cluster);
    let log = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(dir.join("provision.log"))
        })
        .ok()
        .map(std::sync::Mutex::new);
    CliReporter {
        progress: Progress::new(),
        log,
    }
}

fn stdout_sink() -> impl FnMut(&[u8]) + Send {
    |b: &[u8]| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b);
        let _ = out.flush();
    }
}

/// Follows a job's logs until it ends; returns SkyPilot's job exit code.
async fn follow_job(backend: &Backend, cluster: &str, job: u64) -> i32 {
    on_interrupt(format!(
        "Interrupted: stopped streaming; job {job} keeps running on {cluster}. `sky logs {cluster} {job}` streams it again, `sky cancel {cluster} {job}` stops it."
    ));
    eprintln!(
        "Job submitted, ID: {job}. Streaming logs (Ctrl-C stops streaming; the job keeps running)."
    );
    let mut sink = stdout_sink();
    match backend
        .logs(cluster, Some(job), true, None, &mut sink)
        .await
    {
        Ok(rec) => {
            let status = rec.as_ref().map(|r| r.status);
            match &rec {
                Some(r) => eprintln!(
                    "Job {job} finished (status: {}{}).",
                    r.status,
                    exit_codes_suffix(&r.exit_codes)
                ),
                None => eprintln!("Job {job} is not in the queue of {cluster}."),
            }
            sky_launch::job_exit_code(status)
        }
        Err(e) => report(&e),
    }
}

fn exit_codes_suffix(codes: &[i32]) -> String {
    if codes.iter().all(|c| *c == 0) {
        String::new()
    } else {
        format!(
            ", exit code{} {}",
            if codes.len() == 1 { "" } else { "s" },
            codes
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// `sky launch` without `--dryrun`.
pub fn launch(env: &HostEnv, args: &crate::LaunchArgs, command_line: String) -> i32 {
    names_or_exit!(args.cluster.iter());
    let (path, file) = match taskload::load(env, &args.entrypoint, &args.task) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}", e.message);
            return exit::INVALID_INPUT;
        }
    };
    let task = match file {
        TaskFile::Task(t) => *t,
        TaskFile::Pipeline(p) => {
            eprintln!(
                "{} is a pipeline of {} tasks; sky launch runs a single task. Run pipelines as managed jobs: sky jobs launch {}",
                path.as_deref().unwrap_or("the task"),
                p.tasks.len(),
                path.as_deref().unwrap_or("FILE")
            );
            return exit::INVALID_INPUT;
        }
    };
    if let Err(e) = sky_launch::local_uploads(&task) {
        return report(&e);
    }
    let cluster = args
        .cluster
        .clone()
        .unwrap_or_else(|| crate::launch::generated_cluster_name(env));
    block_on(async {
        // Only when the task may land on a pool (a dead host costs a connect timeout).
        if task
            .resources
            .candidates()
            .iter()
            .any(|r| r.cloud.as_deref().is_none_or(|c| c == "ssh"))
        {
            detect_ssh_pools(env).await;
        }
        let backend = backend_or_exit!(env);
        let problems = sky_optimizer::validate_task(backend.catalog(), &task);
        if !problems.is_empty() {
            eprintln!(
                "invalid task:\n{}",
                indent(&sky_spec::Diagnostics(problems).to_string())
            );
            return exit::INVALID_INPUT;
        }
        if let Some(p) = &path {
            eprintln!("YAML to run: {p}");
        }
        // Show the plan for a new cluster, as SkyPilot does.
        if backend
            .state
            .get_cluster(&cluster)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            // Clouds that cannot carry out what the task asks (containers, ports, ...) are
            // left out; none left is refused here, before anything exists.
            let (enabled, left_out) = match backend.task_clouds(&task, args.idle_minutes, args.down)
            {
                Ok(c) => c,
                Err(e) => return report(&e),
            };
            match sky_optimizer::optimize_task(backend.catalog(), &task, &enabled, &[]) {
                Ok(plan) => eprint!("{}", crate::launch::render_plan(&plan, &cluster)),
                Err(sky_optimizer::OptimizeError::NoResources { message }) => {
                    eprintln!(
                        "{message}{}",
                        sky_launch::autostop_note(&left_out, args.down)
                    );
                    return exit::NO_RESOURCES;
                }
                Err(e) => {
                    eprintln!("failed to plan the task: {e}");
                    return exit::FAILURE;
                }
            }
            if !args.yes
                && !crate::progress::confirm(&format!(
                    "Launching a new cluster '{cluster}'. Proceed?"
                ))
            {
                eprintln!("Aborted.");
                return exit::FAILURE;
            }
        }
        let opts = LaunchOptions {
            cluster: cluster.clone(),
            retry_until_up: args.retry_until_up,
            no_setup: args.no_setup,
            idle_minutes: args.idle_minutes,
            down: args.down,
            command_line,
        };
        on_interrupt(format!(
            "Interrupted. State is consistent: `sky status {cluster}` shows what exists; `sky launch -c {cluster} ...` tries again, `sky down {cluster}` removes a half-launched cluster."
        ));
        let rep = reporter_for(env, &cluster);
        let submitted = match backend.launch(&task, &opts, &rep).await {
            Ok(s) => s,
            Err(e) => return report(&e),
        };
        crate::sshconfig::refresh(env, &backend, &cluster).await;
        if args.detach_run {
            eprintln!(
                "Job submitted, ID: {}. `sky logs {cluster} {}` streams it.",
                submitted.job_id, submitted.job_id
            );
            return exit::OK;
        }
        follow_job(&backend, &cluster, submitted.job_id).await
    })
}

/// Probes the SSH node pools whose hosts have not been detected yet (by `sky check` or an
/// earlier launch), so that their GPUs, CPUs and memory are offered from the first launch on.
/// Hosts that do not answer are left to the launch itself, which names them.
async fn detect_ssh_pools(env: &HostEnv) {
    let Ok(config) = crate::clouds::load_config(env) else {
        return;
    };
    if let Ok(Some(ssh)) = ssh_pools(env, &config) {
        ssh.detect_capacity(true).await;
    }
}

/// `sky exec`.
pub fn exec(env: &HostEnv, args: &crate::ExecArgs, command_line: String) -> i32 {
    names_or_exit!(std::iter::once(&args.cluster));
    let (_, file) = match taskload::load(env, &args.entrypoint, &args.task) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}", e.message);
            return exit::INVALID_INPUT;
        }
    };
    let TaskFile::Task(task) = file else {
        eprintln!("sky exec runs a single task; run pipelines with `sky jobs launch`");
        return exit::INVALID_INPUT;
    };
    if let Err(e) = sky_launch::local_uploads(&task) {
        return report(&e);
    }
    block_on(async {
        let backend = backend_or_exit!(env);
        let rep = reporter();
        let submitted = match backend
            .exec(&args.cluster, &task, &command_line, &rep)
            .await
        {
            Ok(s) => s,
            Err(e) => return report(&e),
        };
        if args.detach_run {
            eprintln!(
                "Job submitted, ID: {}. `sky logs {} {}` streams it.",
                submitted.job_id, args.cluster, submitted.job_id
            );
            return exit::OK;
        }
        follow_job(&backend, &args.cluster, submitted.job_id).await
    })
}

fn ago(now: i64, then: i64) -> String {
    let d = (now - then).max(0);
    if d < 60 {
        format!("{d} secs ago")
    } else if d < 3600 {
        format!("{} mins ago", d / 60)
    } else if d < 86400 {
        format!("{} hrs ago", d / 3600)
    } else {
        format!("{} days ago", d / 86400)
    }
}

fn duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    }
}

/// `sky status`.
pub fn status(env: &HostEnv, args: &crate::StatusArgs) -> i32 {
    names_or_exit!(&args.clusters);
    block_on(async {
        let backend = backend_or_exit!(env);
        let mut records = match backend.state.list_clusters().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("failed to read clusters: {e}");
                return exit::FAILURE;
            }
        };
        if !args.clusters.is_empty() {
            for c in &args.clusters {
                if !records.iter().any(|r| &r.name == c) {
                    eprintln!("cluster `{c}` does not exist; `sky status` lists the clusters");
                    return exit::INVALID_INPUT;
                }
            }
            records.retain(|r| args.clusters.contains(&r.name));
        }
        // Like SkyPilot, clusters with autostop set are always refreshed: their head may have
        // stopped or terminated them.
        let autostopping = |r: &sky_state::ClusterRecord| {
            r.autostop.is_some() && r.status == sky_state::ClusterStatus::Up
        };
        if args.refresh || records.iter().any(autostopping) {
            let mut fresh = Vec::new();
            for r in &records {
                if !args.refresh && !autostopping(r) {
                    fresh.push(r.clone());
                    continue;
                }
                match backend.refresh(&r.name).await {
                    Ok(Some(x)) => fresh.push(x),
                    Ok(None) => {
                        eprintln!("Cluster {} no longer exists (removed from state).", r.name)
                    }
                    Err(e) => {
                        eprintln!("failed to refresh {}: {e}", r.name);
                        fresh.push(r.clone());
                    }
                }
            }
            records = fresh;
        }
        if args.ip || args.endpoints {
            let [one] = records.as_slice() else {
                eprintln!("--ip and --endpoints need exactly one cluster: `sky status --ip NAME`");
                return exit::USAGE;
            };
            let h = match Backend::stored_handle(one) {
                Ok(h) => h,
                Err(e) => return report(&e),
            };
            if args.ip {
                println!("{}", h.ips.first().cloned().unwrap_or_default());
            } else {
                let head = h.ips.first().cloned().unwrap_or_default();
                let ports: Vec<String> =
                    h.ports.iter().map(|p| format!("{p}: {head}:{p}")).collect();
                if ports.is_empty() {
                    println!("No endpoints exposed; add `ports:` to the task's resources.");
                }
                for p in ports {
                    println!("{p}");
                }
            }
            return exit::OK;
        }
        let now = sky_launch::now();
        if records.is_empty() {
            println!("No existing clusters.");
            return exit::OK;
        }
        println!("Clusters");
        let mut columns = vec![
            "NAME",
            "LAUNCHED",
            "INFRA",
            "RESOURCES",
            "STATUS",
            "AUTOSTOP",
            "LAST_USE",
        ];
        if args.verbose {
            columns.extend(["NODES", "HEAD_IP"]);
        }
        let mut t = crate::gpus::plain_table(&columns);
        for r in &records {
            let infra = match &r.zone {
                Some(z) => format!(
                    "{} ({}/{z})",
                    crate::clouds::display_name(&r.cloud),
                    r.region
                ),
                None => format!("{} ({})", crate::clouds::display_name(&r.cloud), r.region),
            };
            let autostop = match &r.autostop {
                Some(a) => format!("{}m{}", a.idle_minutes, if a.down { " (down)" } else { "" }),
                None => "-".into(),
            };
            let mut row = vec![
                r.name.clone(),
                ago(now, r.launched_at),
                infra,
                r.resources_str.clone(),
                r.status.to_string(),
                autostop,
                r.last_use.clone(),
            ];
            if args.verbose {
                let head_ip = Backend::stored_handle(r)
                    .ok()
                    .and_then(|h| h.ips.first().cloned())
                    .unwrap_or_else(|| "-".into());
                row.extend([r.num_nodes.to_string(), head_ip]);
            }
            t.add_row(row);
        }
        crate::gpus::print_table(&t);
        exit::OK
    })
}

/// Names from the arguments, or every cluster with `-a`.
async fn targets(backend: &Backend, names: &[String], all: bool) -> Result<Vec<String>, i32> {
    if all {
        return backend
            .state
            .list_clusters()
            .await
            .map(|v| v.into_iter().map(|r| r.name).collect())
            .map_err(|e| {
                eprintln!("failed to read clusters: {e}");
                exit::FAILURE
            });
    }
    if names.is_empty() {
        eprintln!("name a cluster, or pass -a/--all");
        return Err(exit::USAGE);
    }
    Ok(names.to_vec())
}

/// `sky stop`, `sky start`, `sky down`.
pub fn lifecycle(env: &HostEnv, what: &str, args: &ClusterArgs) -> i32 {
    names_or_exit!(&args.clusters);
    block_on(async {
        // `sky down` can clean up without a readable state database.
        let backend = backend_or_exit!(env, what == "down");
        let names = match targets(&backend, &args.clusters, args.all).await {
            Ok(n) => n,
            Err(code) => return code,
        };
        let rep = reporter();
        let mut code = exit::OK;
        for name in names {
            on_interrupt(format!(
                "Interrupted during `sky {what} {name}`. `sky status -r {name}` shows where it stands; `sky {what} {name}` again finishes it."
            ));
            let r = match what {
                "stop" => backend.stop(&name, &rep).await,
                "start" => backend
                    .start(&name, &reporter_for(env, &name))
                    .await
                    .map(|_| ()),
                _ => backend.down(&name, args.purge, &rep).await,
            };
            match r {
                // The cluster's `Host` entry follows it: written when UP, gone when down.
                Ok(()) if what != "stop" => crate::sshconfig::refresh(env, &backend, &name).await,
                Ok(()) => {}
                Err(e) => code = report(&e),
            }
        }
        code
    })
}

/// `sky autostop`.
pub fn autostop(env: &HostEnv, args: &crate::AutostopArgs) -> i32 {
    names_or_exit!(&args.clusters);
    block_on(async {
        let backend = backend_or_exit!(env);
        let names = match targets(&backend, &args.clusters, args.all).await {
            Ok(n) => n,
            Err(code) => return code,
        };
        let idle = if args.cancel {
            -1
        } else {
            args.idle_minutes.unwrap_or(5)
        };
        let wait_for = match args.wait_for.as_deref() {
            Some("jobs") => sky_agent::WaitFor::Jobs,
            Some("none") => sky_agent::WaitFor::None,
            Some("jobs_and_ssh") | None => sky_agent::WaitFor::JobsAndSsh,
            Some(other) => {
                eprintln!("--wait-for {other}: choose jobs_and_ssh, jobs or none");
                return exit::USAGE;
            }
        };
        let mut code = exit::OK;
        for name in names {
            match backend
                .set_autostop(&name, idle, args.down, wait_for, &reporter())
                .await
            {
                Ok(()) if idle < 0 => eprintln!("Autostop cancelled for {name}."),
                Ok(()) => eprintln!(
                    "{name} will {} after {idle} idle minute{}.",
                    if args.down { "be torn down" } else { "stop" },
                    if idle == 1 { "" } else { "s" }
                ),
                Err(e) => code = report(&e),
            }
        }
        code
    })
}

/// `sky queue`.
pub fn queue(env: &HostEnv, args: &crate::QueueArgs) -> i32 {
    names_or_exit!(&args.clusters);
    block_on(async {
        let backend = backend_or_exit!(env);
        let names = match targets(&backend, &args.clusters, args.clusters.is_empty()).await {
            Ok(n) => n,
            Err(code) => return code,
        };
        let now = sky_launch::now();
        let mut code = exit::OK;
        for name in names {
            let jobs = match backend.queue(&name, !args.skip_finished).await {
                Ok(j) => j,
                Err(e) => {
                    code = report(&e);
                    continue;
                }
            };
            println!("Job queue of cluster {name}");
            let mut t = crate::gpus::plain_table(&[
                "ID",
                "NAME",
                "USER",
                "SUBMITTED",
                "STARTED",
                "DURATION",
                "RESOURCES",
                "STATUS",
                "LOG",
            ]);
            for j in jobs.iter().rev() {
                if args.skip_finished && j.status.is_terminal() {
                    continue;
                }
                let secs = |t: f64| t as i64;
                let started = j
                    .started_at
                    .map(|s| ago(now, secs(s)))
                    .unwrap_or_else(|| "-".into());
                let dur = match (j.started_at, j.ended_at) {
                    (Some(s), Some(e)) => duration(secs(e) - secs(s)),
                    (Some(s), None) => duration(now - secs(s)),
                    _ => "-".into(),
                };
                t.add_row([
                    j.id.to_string(),
                    j.name.clone().unwrap_or_else(|| "-".into()),
                    j.user.clone(),
                    ago(now, secs(j.submitted_at)),
                    started,
                    dur,
                    j.resources.clone(),
                    j.status.to_string(),
                    j.log_dir.clone(),
                ]);
            }
            crate::gpus::print_table(&t);
        }
        code
    })
}

/// `sky logs`.
pub fn logs(env: &HostEnv, args: &crate::LogsArgs) -> i32 {
    names_or_exit!(std::iter::once(&args.cluster));
    if args.provision {
        let path = env
            .state_dir()
            .join("logs")
            .join(&args.cluster)
            .join("provision.log");
        return match std::fs::read_to_string(&path) {
            Ok(t) => {
                print!("{t}");
                exit::OK
            }
            Err(e) => {
                eprintln!(
                    "no provision log for `{}` at {}: {e}",
                    args.cluster,
                    path.display()
                );
                exit::INVALID_INPUT
            }
        };
    }
    block_on(async {
        let backend = backend_or_exit!(env);
        let job = args.job_ids.first().copied();
        if args.status {
            return match backend.queue(&args.cluster, true).await {
                Ok(jobs) => {
                    let want = job.or_else(|| jobs.iter().map(|j| j.id).max());
                    let rec = jobs.iter().find(|j| Some(j.id) == want);
                    match rec {
                        Some(r) => println!("Job {}: {}", r.id, r.status),
                        None => println!(
                            "Job {} not found",
                            want.map(|w| w.to_string()).unwrap_or_else(|| "-".into())
                        ),
                    }
                    sky_launch::job_exit_code(rec.map(|r| r.status))
                }
                Err(e) => report(&e),
            };
        }
        let mut sink = stdout_sink();
        match backend
            .logs(&args.cluster, job, !args.no_follow, args.tail, &mut sink)
            .await
        {
            Ok(rec) => sky_launch::job_exit_code(rec.map(|r| r.status)),
            Err(e) => report(&e),
        }
    })
}

/// `sky cancel`.
pub fn cancel(env: &HostEnv, args: &crate::CancelArgs) -> i32 {
    names_or_exit!(std::iter::once(&args.cluster));
    if args.job_ids.is_empty() && !args.all {
        eprintln!(
            "name job IDs to cancel, or pass -a/--all: `sky cancel {} 3 4`",
            args.cluster
        );
        return exit::USAGE;
    }
    block_on(async {
        let backend = backend_or_exit!(env);
        match backend
            .cancel(&args.cluster, args.job_ids.clone(), args.all)
            .await
        {
            Ok(ids) if ids.is_empty() => {
                eprintln!("No job to cancel on {}.", args.cluster);
                exit::OK
            }
            Ok(ids) => {
                eprintln!(
                    "Cancelled job{} {} on {}.",
                    if ids.len() == 1 { "" } else { "s" },
                    ids.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    args.cluster
                );
                exit::OK
            }
            Err(e) => report(&e),
        }
    })
}

/// `sky ssh CLUSTER [COMMAND]`: a shell (or one command) on the head node.
pub fn ssh(env: &HostEnv, args: &crate::SshArgs) -> i32 {
    if args.setup_config {
        return crate::sshconfig::setup_include(env);
    }
    let Some(cluster) = args.cluster.as_ref() else {
        eprintln!("name a cluster: `sky ssh CLUSTER [COMMAND]`, or `sky ssh --setup-config`");
        return exit::USAGE;
    };
    names_or_exit!(std::iter::once(cluster));
    // The ssh session runs after the async runtime is gone: Ctrl-C belongs to it.
    let mut session: Option<std::process::Command> = None;
    let code = block_on(async {
        let backend = backend_or_exit!(env);
        let (p, h, nodes) = match backend.nodes(cluster).await {
            Ok(x) => x,
            Err(e) => return report(&e),
        };
        let Some(head) = nodes.first() else {
            eprintln!("cluster `{cluster}` has no nodes; `sky status -r {cluster}` refreshes it");
            return exit::FAILURE;
        };
        let runner = match p.command_runner(&h.provider, head) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return exit::FAILURE;
            }
        };
        if let Some(home) = runner.node_home() {
            return crate::hostenv::interactive_shell(&home, &args.command);
        }
        if head.state != sky_provider::InstanceState::Running {
            eprintln!(
                "the head node of `{cluster}` is {}, not running: `sky start {cluster}` brings it back",
                head.state
            );
            return exit::FAILURE;
        }
        match runner.interactive_command(&args.command) {
            Some(cmd) => {
                session = Some(cmd);
                exit::OK
            }
            None => {
                eprintln!(
                    "sky ssh cannot enter the nodes of {} clusters: their runner is not SSH",
                    h.provider.cloud
                );
                exit::NOT_AVAILABLE
            }
        }
    });
    let Some(mut cmd) = session else {
        return code;
    };
    match cmd.status() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(exit::FAILURE)
        }
        Err(e) => {
            eprintln!("failed to run ssh (is OpenSSH's client installed?): {e}");
            exit::FAILURE
        }
    }
}

/// `sky cost-report`.
pub fn cost_report(env: &HostEnv, _args: &crate::CostReportArgs) -> i32 {
    block_on(async {
        let backend = backend_or_exit!(env);
        let rows = match backend.state.cost_report(sky_launch::now()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("failed to read the cost report: {e}");
                return exit::FAILURE;
            }
        };
        let mut t = crate::gpus::plain_table(&[
            "NAME",
            "LAUNCHED",
            "DURATION",
            "RESOURCES",
            "STATUS",
            "COST (est.)",
        ]);
        let now = sky_launch::now();
        for r in rows {
            t.add_row([
                r.name.clone(),
                ago(now, r.launched_at),
                duration(r.duration_seconds),
                r.resources_str.clone(),
                r.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "TERMINATED".into()),
                format!("$ {:.2}", r.total_cost),
            ]);
        }
        crate::gpus::print_table(&t);
        exit::OK
    })
}

/// `sky agent serve|mark-orphans` (runs on nodes; hidden).
pub fn agent(env: &HostEnv, args: &crate::AgentArgs) -> i32 {
    match args.action.as_str() {
        "serve" => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("failed to start the agent runtime: {e}");
                    return exit::FAILURE;
                }
            };
            let cfg = match crate::agentcfg::config(env, args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return exit::INVALID_INPUT;
                }
            };
            match rt.block_on(sky_agent::serve(cfg, None)) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("agent failed: {e}");
                    exit::FAILURE
                }
            }
        }
        "mark-orphans" => match sky_agent::mark_orphans_failed_driver(&env.home) {
            Ok(_) => exit::OK,
            Err(e) => {
                eprintln!("{e}");
                exit::FAILURE
            }
        },
        "self-stop" => self_stop(env, args.what.as_deref()),
        other => {
            eprintln!("unknown agent action `{other}`: serve | mark-orphans | self-stop");
            exit::USAGE
        }
    }
}

/// `sky agent self-stop stop|down`: the autostop hook of a remote head. It stops or
/// terminates its own cluster through the provider, with what the launcher left in
/// `~/.sky/self_stop.json` (the handle, the provider's settings and environment) and the
/// credentials it uploaded, as SkyPilot's skylet does. The client learns of it from the
/// provider (`sky status` refreshes clusters that have autostop set).
fn self_stop(env: &HostEnv, what: Option<&str>) -> i32 {
    let down = match what {
        Some("stop") => false,
        Some("down") => true,
        _ => {
            eprintln!("usage: sky agent self-stop stop|down");
            return exit::USAGE;
        }
    };
    let path = env.home.join(sky_provider::SELF_STOP_FILE);
    let file: sky_provider::SelfStopFile = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "self-stop: cannot read {} ({e}); the launcher writes it on heads whose cloud supports autostop",
                path.display()
            );
            return exit::FAILURE;
        }
    };
    let cloud = file.handle.cloud.clone();
    let node_env = env.with_vars(&file.env);
    let config = sky_spec::sky_config::SkyConfig {
        allowed_clouds: Some(vec![cloud.clone()]),
        db: None,
        raw: serde_json::json!({ cloud.as_str(): file.config }),
    };
    let provider = match providers(&node_env, &config) {
        Ok(r) => r.get(&cloud),
        Err(e) => {
            eprintln!("self-stop: {e}");
            return exit::FAILURE;
        }
    };
    let Some(p) = provider else {
        eprintln!("self-stop: cloud `{cloud}` is not available on this node (no credentials?)");
        return exit::FAILURE;
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("self-stop: {e}");
            return exit::FAILURE;
        }
    };
    let h = &file.handle;
    let res = rt.block_on(async {
        if down {
            p.terminate_instances(h).await
        } else {
            p.stop_instances(h).await
        }
    });
    match res {
        Ok(()) => {
            println!(
                "self-stop: {} {} on {cloud}",
                if down { "terminated" } else { "stopped" },
                h.cluster_name
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("self-stop: {e}");
            exit::FAILURE
        }
    }
}
