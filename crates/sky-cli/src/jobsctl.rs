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

/// The controller, started when none answers.
pub async fn connect(env: &HostEnv) -> Result<JobsClient, JobsError> {
    if let Some((c, _)) = running(env).await {
        return Ok(c);
    }
    start(env).await
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
    let deadline = tokio::time::Instant::now() + wait;
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
        if tokio::time::Instant::now() >= deadline {
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
