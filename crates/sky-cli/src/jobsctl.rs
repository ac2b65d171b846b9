//! Reaching the managed-jobs controller: the one `controller.json` under `$SKY_HOME/jobs`
//! names, started here (detached: its own process group, output to `jobs/controller.log`, so
//! it outlives this command and its Ctrl-C) when none answers.

use std::path::PathBuf;
use std::time::Duration;

use sky_jobs::client::ControllerStatus;
use sky_jobs::{ControllerInfo, JobsClient, JobsError, JobsErrorKind, daemon};

use crate::{exit, hostenv::HostEnv};

/// How long the CLI waits for a controller it started to answer (env
/// `SKY_JOBS_CONTROLLER_START_SECONDS`).
const START_WAIT: Duration = Duration::from_secs(10);

/// The jobs home, `$SKY_HOME/jobs`.
pub fn jobs_home(env: &HostEnv) -> PathBuf {
    env.state_dir().join("jobs")
}

/// The exit code of a jobs error (bad input and unknown jobs: 3).
pub fn exit_code(e: &JobsError) -> i32 {
    match e.kind {
        JobsErrorKind::InvalidInput | JobsErrorKind::NotFound => exit::INVALID_INPUT,
        _ => exit::FAILURE,
    }
}

/// The controller that answers now, if any (nothing is started).
pub async fn running(env: &HostEnv) -> Option<(JobsClient, ControllerStatus)> {
    let info = ControllerInfo::load(&daemon::info_path(&jobs_home(env)))
        .ok()
        .flatten()?;
    let client = JobsClient::from_info(&info).ok()?;
    let status = client.ping().await.ok()?;
    Some((client, status))
}

/// The controller, started when none answers: on this machine, or, with
/// `jobs.controller.resources` in `~/.sky/config.yaml`, on a cluster of its own.
pub async fn connect(env: &HostEnv) -> Result<JobsClient, JobsError> {
    if let Some(resources) = remote_resources(env) {
        return connect_remote(env, &resources).await;
    }
    if let Some((c, _)) = running(env).await {
        return Ok(c);
    }
    start(env).await
}

/// Where the controller runs when it cannot see this machine's files: `Some(cluster)` when
/// `jobs.controller.resources` puts it on a cluster of its own on a cloud other than the local
/// one (whose nodes share this machine's filesystem).
pub fn controller_elsewhere(env: &HostEnv) -> Option<String> {
    let r = remote_resources(env)?;
    let cloud = r
        .get("cloud")
        .or_else(|| r.get("infra"))
        .and_then(|v| v.as_str());
    match cloud {
        Some(c) if c == "local" || c.starts_with("local/") => None,
        _ => Some(controller_cluster(env)),
    }
}

/// `jobs.controller.resources` of the user's config, if set.
fn remote_resources(env: &HostEnv) -> Option<serde_json::Value> {
    let config = crate::clouds::load_config(env).ok()?;
    config
        .raw
        .get("jobs")?
        .get("controller")?
        .get("resources")
        .filter(|v| !v.is_null())
        .cloned()
}

/// `sky-jobs-controller-<user hash>` (SkyPilot's name: one controller cluster per user).
pub fn controller_cluster(env: &HostEnv) -> String {
    // FNV-1a of the user name: stable across runs and machines.
    let mut h: u32 = 0x811c_9dc5;
    for b in env.user().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("sky-jobs-controller-{h:08x}")
}

/// Where the CLI keeps the address and token of the controller on its own cluster.
fn remote_cache(env: &HostEnv, cluster: &str) -> PathBuf {
    jobs_home(env).join(format!("{cluster}.json"))
}

/// The controller cluster's job: the node's own `sky` (remote nodes get the client's binary at
/// `~/.sky/bin/sky` when the cluster is provisioned; local-cloud nodes run the client's binary
/// in place, at `client_sky`).
fn controller_run_script(client_sky: &std::path::Path) -> String {
    let fallback = shlex::try_quote(&client_sky.to_string_lossy())
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| "sky".into());
    format!(
        "rm -f ~/.sky-rs/jobs/controller.json; export SKYPILOT_CONFIG=$HOME/.sky-jobs-controller/config.yaml; \
         S=\"$HOME/{}\"; [ -x \"$S\" ] || S={fallback}; exec \"$S\" jobs controller run",
        sky_launch::binary::REMOTE_SKY_BINARY
    )
}

/// The controller on its own cluster: the cached address if it answers, else (re)launch the
/// cluster with `sky jobs controller run` as its job and read the address and token from the
/// node.
async fn connect_remote(
    env: &HostEnv,
    resources: &serde_json::Value,
) -> Result<JobsClient, JobsError> {
    let cluster = controller_cluster(env);
    let cache = remote_cache(env, &cluster);
    if let Ok(Some(info)) = ControllerInfo::load(&cache)
        && let Ok(c) = JobsClient::from_info(&info)
        && c.ping().await.is_ok()
    {
        return Ok(c);
    }
    let backend = crate::backend::backend(env, false)
        .await
        .map_err(|e| ctl(e.message))?;
    let sky = env
        .sky_binary()
        .map_err(|e| ctl(format!("failed to find the sky binary: {e}")))?;
    // The controller's own SKY_HOME (state database, logs, its clusters' nodes) lives on the
    // node; it gets the user's config for its clouds, and the SKY_JOBS_* settings.
    let mut envs = serde_json::Map::new();
    envs.insert("SKY_JOBS_CONTROLLER_LISTEN".into(), "0.0.0.0:0".into());
    envs.insert("SKY_JOBS_CONTROLLER_IDLE_SECONDS".into(), "31536000".into());
    for (k, v) in env.vars() {
        if k.starts_with("SKY_JOBS_") && k != "SKY_JOBS_CONTROLLER_IDLE_SECONDS" {
            envs.insert(k.into(), v.into());
        }
    }
    let task_json = serde_json::json!({
        "name": "jobs-controller",
        "resources": resources,
        "envs": envs,
        // Not in `~/.sky` (sky's own directory on a node): SKYPILOT_CONFIG points at it.
        "file_mounts": { "~/.sky-jobs-controller/config.yaml": env.config_path().display().to_string() },
        "run": controller_run_script(&sky),
    });
    // JSON is YAML: the task goes through the same parser as a task file.
    let file =
        sky_spec::parse_task_file(&task_json.to_string(), &Default::default()).map_err(|d| {
            JobsError::invalid(format!(
                "invalid jobs.controller.resources in {}:\n{d}",
                env.config_path().display()
            ))
        })?;
    let sky_spec::TaskFile::Task(task) = file else {
        return Err(JobsError::invalid(
            "jobs.controller.resources must describe one task's resources",
        ));
    };
    let cancel = sky_launch::CancellationToken::new();
    let rep = crate::backend::reporter_for(env, &cluster);
    eprintln!("Starting the jobs controller on cluster {cluster}...");
    let req = sky_launch::LaunchRequest {
        command_line: "sky jobs (controller)".into(),
        ..sky_launch::LaunchRequest::new(*task, cluster.clone())
    };
    backend.launch(&req, &cancel, &rep).await.map_err(|e| {
        ctl(format!(
            "failed to launch the jobs controller cluster {cluster}: {e}"
        ))
    })?;
    let record = backend
        .state
        .get_cluster(&cluster)
        .await
        .map_err(JobsError::state)?
        .ok_or_else(|| ctl(format!("the jobs controller cluster {cluster} vanished")))?;
    let head_ip = sky_launch::Backend::stored_handle(&record)
        .ok()
        .and_then(|h| h.ips.first().cloned())
        .ok_or_else(|| {
            ctl(format!(
                "the jobs controller cluster {cluster} has no head address"
            ))
        })?;
    // Read controller.json and the token from the node (a job on it), until it is written.
    let read = sky_spec::task_from_command(
        "cat ~/.sky-rs/jobs/controller.json 2>/dev/null && echo '@@token' && cat ~/.sky-rs/jobs/controller.token",
    );
    let deadline = env.now_nanos() + Duration::from_secs(60).as_nanos();
    loop {
        let submitted = backend
            .exec(
                &cluster,
                &read,
                "sky jobs (controller address)",
                &cancel,
                &sky_launch::Quiet,
            )
            .await
            .map_err(|e| {
                ctl(format!(
                    "failed to reach the jobs controller cluster {cluster}: {e}"
                ))
            })?;
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        let _ = backend
            .logs(&cluster, Some(submitted.job_id), true, None, &mut sink)
            .await;
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((json, token)) = text.split_once("@@token")
            && let Ok(info) = serde_json::from_str::<ControllerInfo>(json.trim())
            && !token.trim().is_empty()
        {
            let ip: std::net::IpAddr = head_ip
                .parse()
                .map_err(|e| ctl(format!("the controller's head address {head_ip}: {e}")))?;
            let addr = std::net::SocketAddr::new(ip, info.addr.port());
            let token_file = jobs_home(env).join(format!("{cluster}.token"));
            let t = sky_agent::Token::parse(token.trim()).map_err(|e| ctl(e.to_string()))?;
            t.save(&token_file).map_err(|e| ctl(e.to_string()))?;
            let local = ControllerInfo {
                pid: info.pid,
                addr,
                dashboard_addr: info
                    .dashboard_addr
                    .map(|d| std::net::SocketAddr::new(ip, d.port())),
                token_file,
            };
            let client = JobsClient::from_info(&local)?;
            if client.ping().await.is_ok() {
                if let Ok(bytes) = serde_json::to_vec_pretty(&local) {
                    let _ = std::fs::write(&cache, bytes);
                }
                return Ok(client);
            }
        }
        if env.now_nanos() >= deadline {
            return Err(ctl(format!(
                "the jobs controller on cluster {cluster} did not answer within 60 s; `sky logs {cluster}` shows its output"
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn ctl(message: String) -> JobsError {
    JobsError::new(JobsErrorKind::Controller, message)
}

/// Starts `sky jobs controller run` detached and waits for it to answer.
async fn start(env: &HostEnv) -> Result<JobsClient, JobsError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::os::unix::process::CommandExt;
    let home = jobs_home(env);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&home)
        .map_err(|e| ctl(format!("failed to create {}: {e}", home.display())))?;
    let log_path = daemon::log_path(&home);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| ctl(format!("failed to open {}: {e}", log_path.display())))?;
    let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let err_log = log
        .try_clone()
        .map_err(|e| ctl(format!("failed to open {}: {e}", log_path.display())))?;
    let sky = env
        .sky_binary()
        .map_err(|e| ctl(format!("failed to find the sky binary: {e}")))?;
    let mut child = std::process::Command::new(&sky)
        .args(["jobs", "controller", "run"])
        .env_clear()
        .envs(env.vars())
        .env("HOME", &env.home)
        .current_dir(&home)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err_log)
        // Its own process group: the terminal's Ctrl-C (sent to the foreground group) does
        // not reach it, and it outlives this command.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            ctl(format!(
                "failed to start the jobs controller ({} jobs controller run): {e}",
                sky.display()
            ))
        })?;
    let wait = env
        .var("SKY_JOBS_CONTROLLER_START_SECONDS")
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(START_WAIT);
    let deadline = env.now_nanos() + wait.as_nanos();
    loop {
        if let Some((c, _)) = running(env).await {
            return Ok(c);
        }
        // A daemon that exited (another one won the lock: keep waiting for that one; or it
        // failed: say why).
        if let Ok(Some(status)) = child.try_wait()
            && !status.success()
        {
            let tail = log_tail(&log_path, log_len);
            if !tail.contains("another jobs controller") {
                return Err(ctl(format!(
                    "the jobs controller failed to start ({status}); its log {}:\n{tail}",
                    log_path.display()
                )));
            }
        }
        if env.now_nanos() >= deadline {
            return Err(ctl(format!(
                "the jobs controller did not answer within {wait:?}; see its log {}:\n{}",
                log_path.display(),
                log_tail(&log_path, log_len)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the log got since `from` (its last 20 lines), indented.
fn log_tail(path: &std::path::Path, from: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `sky status`'s line about the controller.
pub async fn status_line(env: &HostEnv) -> String {
    if remote_resources(env).is_some() {
        let cluster = controller_cluster(env);
        let answer = match ControllerInfo::load(&remote_cache(env, &cluster)) {
            Ok(Some(info)) => match JobsClient::from_info(&info) {
                Ok(c) => c.ping().await.ok().map(|s| (c, s)),
                Err(_) => None,
            },
            _ => None,
        };
        return match answer {
            Some((c, s)) => format!(
                "Managed jobs controller: running on cluster {cluster} ({}, {} active job{}).",
                c.addr(),
                s.active_jobs,
                if s.active_jobs == 1 { "" } else { "s" }
            ),
            None => format!(
                "Managed jobs controller: not answering (cluster {cluster}; `sky jobs queue` starts it)."
            ),
        };
    }
    match running(env).await {
        Some((c, s)) => format!(
            "Managed jobs controller: running (pid {}, {}, {} active job{}). `sky jobs queue` lists the jobs.",
            s.pid,
            c.addr(),
            s.active_jobs,
            if s.active_jobs == 1 { "" } else { "s" }
        ),
        None => "Managed jobs controller: not running (`sky jobs launch` starts it).".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_job_prefers_the_nodes_own_sky() {
        let script = controller_run_script(std::path::Path::new("/opt/my tools/sky"));
        assert!(
            script.contains("S=\"$HOME/.sky/bin/sky\"; [ -x \"$S\" ] || S='/opt/my tools/sky'"),
            "{script}"
        );
        assert!(
            script.ends_with("exec \"$S\" jobs controller run"),
            "{script}"
        );
        // It runs: with no node binary, the fallback is what it execs.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake sky");
        std::fs::write(&fake, "#!/bin/sh\necho ran \"$@\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(controller_run_script(&fake))
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ran jobs controller run\n"
        );
    }
}
