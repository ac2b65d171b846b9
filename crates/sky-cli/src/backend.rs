//! The backend a command works through: the providers this build can provision on (as the
//! user's config allows), the state database, the `Backend` built from them, and how the CLI
//! reports the launcher's progress and errors.

use std::{io::Write, sync::Arc};

use sky_launch::{Backend, EventKind, Events, LaunchError, LaunchEvent};
use sky_provider::ProviderRegistry;

use crate::{exit, hostenv::HostEnv, progress::Progress};

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
        let sky_binary = env
            .sky_binary()
            .map_err(|e| format!("failed to find the sky binary: {e}"))?;
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
            // EC2 nodes are reached with the SSH runtime (sky-ssh), which the provider builds;
            // the host keys it learns are kept beside sky-rs's other SSH state.
            let known_hosts = env.state_dir().join("ssh").join("known_hosts");
            let opts = sky_cloud_aws::AwsOptions {
                endpoint_url: env
                    .var("AWS_ENDPOINT_URL_EC2")
                    .or_else(|| env.var("AWS_ENDPOINT_URL"))
                    .map(String::from),
                public_key_path: Some(env.state_dir().join("keys").join("sky-key.pub")),
                ssh_known_hosts_file: Some(known_hosts),
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
    let sky_binary = env
        .sky_binary()
        .map_err(|e| format!("failed to find the sky binary: {e}"))?;
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
        $crate::backend::backend_or_exit!($env, false)
    };
    ($env:expr, $in_memory_if_damaged:expr) => {
        match $crate::backend::backend($env, $in_memory_if_damaged).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}", e.message);
                return e.code;
            }
        }
    };
}
pub(crate) use backend_or_exit;

/// Prints a launcher error and returns its exit code (`LaunchError::exit_code`).
pub fn report(e: &LaunchError) -> i32 {
    eprintln!("{e}");
    e.exit_code()
}

/// How the CLI shows the launcher's events: a spinner on a terminal, plain lines otherwise;
/// with a cluster, every event is also appended to `~/.sky-rs/logs/<cluster>/provision.log`
/// (`sky logs --provision`).
pub struct CliReporter {
    progress: Progress,
    /// The provision log, and the environment whose clock stamps its lines.
    log: Option<(std::sync::Mutex<std::fs::File>, HostEnv)>,
}

impl CliReporter {
    fn record(&self, line: &str) {
        if let Some((f, env)) = &self.log
            && let Ok(mut f) = f.lock()
        {
            let _ = writeln!(f, "[{}] {line}", env.now_secs());
        }
    }
}

impl Events for CliReporter {
    fn event(&self, e: &LaunchEvent) {
        let line = e.to_string();
        self.record(&line);
        match e.kind() {
            EventKind::Step => self.progress.step(&line),
            EventKind::Done => self.progress.done(&line),
            EventKind::Note => self.progress.line(&line),
            // The CLI says these in its own words (`Job submitted, ID: ...`).
            _ => {}
        }
    }
}

/// A reporter without a provision log.
pub fn reporter() -> CliReporter {
    CliReporter {
        progress: Progress::new(),
        log: None,
    }
}

/// A reporter that also keeps the cluster's provision log.
pub fn reporter_for(env: &HostEnv, cluster: &str) -> CliReporter {
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
        .map(|f| (std::sync::Mutex::new(f), env.clone()));
    CliReporter {
        progress: Progress::new(),
        log,
    }
}

/// Names from the arguments, or every cluster with `-a`.
/// Clusters of managed jobs still in progress (cluster name → job id): the jobs controller
/// owns them. Unreadable managed-job tables count as none (the cluster commands still work).
pub async fn managed_clusters(backend: &Backend) -> std::collections::BTreeMap<String, i64> {
    let filter = sky_state::ManagedJobFilter {
        include_terminal: false,
        ..Default::default()
    };
    let Ok(jobs) = backend.state.list_managed_jobs(&filter).await else {
        return Default::default();
    };
    jobs.into_iter()
        .flat_map(|(job, tasks)| {
            tasks
                .into_iter()
                .filter(|t| !sky_state::MANAGED_TERMINAL_STATUSES.contains(&t.status.as_str()))
                .filter_map(move |t| t.cluster.map(|c| (c, job.job_id)))
        })
        .collect()
}

/// The clusters `sky stop|down|autostop` act on: with `-a`, all but those of managed jobs in
/// progress and the jobs controller's cluster `controller` (said, not silently); a managed job's cluster
/// named explicitly is refused: the
/// controller would recover the job onto a new cluster. `force` (`sky down --purge`) takes
/// them anyway.
pub async fn lifecycle_targets(
    controller: &str,
    backend: &Backend,
    what: &str,
    names: &[String],
    all: bool,
    force: bool,
) -> Result<Vec<String>, i32> {
    let mut names = targets(backend, names, all).await?;
    if force {
        return Ok(names);
    }
    let managed = managed_clusters(backend).await;
    if all {
        // The jobs controller's own cluster holds the managed jobs' truth: only by name.
        if names.iter().any(|n| n == controller) {
            eprintln!(
                "Skipping the jobs controller's cluster {controller}: `sky {what} {controller}` acts on it by name."
            );
            names.retain(|n| n != controller);
        }
        let skipped: Vec<String> = names
            .iter()
            .filter(|n| managed.contains_key(*n))
            .cloned()
            .collect();
        if !skipped.is_empty() {
            eprintln!(
                "Skipping {} cluster{} of managed jobs in progress ({}): `sky jobs cancel` stops them.",
                skipped.len(),
                if skipped.len() == 1 { "" } else { "s" },
                skipped.join(", ")
            );
            names.retain(|n| !managed.contains_key(n));
        }
        return Ok(names);
    }
    if let Some((name, id)) = names.iter().find_map(|n| managed.get(n).map(|id| (n, id))) {
        eprintln!(
            "cluster `{name}` runs managed job {id}: `sky jobs cancel {id}` stops it (a `sky {what}` would only make the jobs controller recover the job onto a new cluster){}",
            if what == "down" {
                "; `sky down --purge` takes it down anyway"
            } else {
                ""
            }
        );
        return Err(exit::INVALID_INPUT);
    }
    Ok(names)
}

pub async fn targets(backend: &Backend, names: &[String], all: bool) -> Result<Vec<String>, i32> {
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
