//! The controller daemon (`sky jobs controller run`): one per jobs home, found by the CLI
//! through `controller.json`.
//!
//! It holds an exclusive `flock` on `<home>/controller.lock` for its whole life (a second one
//! stops at once, and the kernel releases the lock when the process dies, so a killed daemon
//! leaves nothing stale), writes a fresh token to `<home>/controller.token` (0600), serves the
//! protocol ([`crate::server`]) on `listen`, then writes `<home>/controller.json`
//! ([`ControllerInfo`]); it exits after `idle_exit` with no active job and no request, on
//! SIGTERM or SIGINT, removing `controller.json` first. Jobs keep their state in the database:
//! the next daemon resumes them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sky_agent::Token;
use sky_state::StateDb;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::client::ControllerInfo;
use crate::controller::{Controller, ControllerConfig};
use crate::driver::ClusterDriver;
use crate::model::{JobsError, JobsErrorKind};
use crate::server::{Activity, ServeOptions, serve};

/// Default idle time before the daemon exits (env `SKY_JOBS_CONTROLLER_IDLE_SECONDS`).
pub const DEFAULT_IDLE_EXIT: Duration = Duration::from_secs(60);

/// `controller.json` under the jobs home.
pub fn info_path(home: &Path) -> PathBuf {
    home.join("controller.json")
}

/// `controller.token` under the jobs home.
pub fn token_path(home: &Path) -> PathBuf {
    home.join("controller.token")
}

/// `controller.lock` under the jobs home.
pub fn lock_path(home: &Path) -> PathBuf {
    home.join("controller.lock")
}

/// `controller.log` under the jobs home (where the CLI sends a daemon's output).
pub fn log_path(home: &Path) -> PathBuf {
    home.join("controller.log")
}

/// What the daemon runs with.
pub struct DaemonOptions {
    /// The jobs home (`$SKY_HOME/jobs`); `config.home` should be the same.
    pub home: PathBuf,
    /// Where the protocol listens (`127.0.0.1:0`: loopback, any port).
    pub listen: SocketAddr,
    /// Where the dashboard listens; `None`: no dashboard.
    pub dashboard_listen: Option<SocketAddr>,
    /// Exit after this long with no active job and no request; `None`: never.
    pub idle_exit: Option<Duration>,
    pub config: ControllerConfig,
    pub state: StateDb,
    pub driver: Arc<dyn ClusterDriver>,
}

impl std::fmt::Debug for DaemonOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonOptions")
            .field("home", &self.home)
            .field("listen", &self.listen)
            .field("dashboard_listen", &self.dashboard_listen)
            .field("idle_exit", &self.idle_exit)
            .finish_non_exhaustive()
    }
}

fn ctl(message: String) -> JobsError {
    JobsError::new(JobsErrorKind::Controller, message)
}

/// Creates `dir` (and its parents) readable by its owner only.
fn private_dir(dir: &Path) -> Result<(), JobsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| JobsError::io(&format!("create {}", dir.display()), e))
}

/// Takes the daemon lock of `home`, or says which daemon holds it.
fn take_lock(home: &Path) -> Result<std::fs::File, JobsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = lock_path(home);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| JobsError::io(&format!("open {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let who = ControllerInfo::load(&info_path(home))
                .ok()
                .flatten()
                .map(|i| format!(" (pid {}, {})", i.pid, i.addr))
                .unwrap_or_default();
            Err(ctl(format!(
                "another jobs controller already runs for {}{who}; it holds {}",
                home.display(),
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(JobsError::io(&format!("lock {}", path.display()), e))
        }
    }
}

/// Writes `controller.json` atomically (a reader never sees half of it).
fn write_info(home: &Path, info: &ControllerInfo) -> Result<(), JobsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = info_path(home);
    let tmp = home.join(format!(".controller.json.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(info)
        .map_err(|e| ctl(format!("encode {}: {e}", path.display())))?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| JobsError::io(&format!("write {}", tmp.display()), e))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| JobsError::io(&format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| JobsError::io(&format!("write {}", path.display()), e))
}

/// Removes `controller.json` if it still describes this process.
fn remove_info(home: &Path) {
    let path = info_path(home);
    if let Ok(Some(info)) = ControllerInfo::load(&path)
        && info.pid == std::process::id()
    {
        let _ = std::fs::remove_file(&path);
    }
}

/// Runs the daemon until it is idle for `idle_exit`, or SIGTERM/SIGINT.
pub async fn run(opts: DaemonOptions) -> Result<(), JobsError> {
    let home = opts.home.clone();
    private_dir(&home)?;
    let _lock = take_lock(&home)?;
    // What a dead daemon left (it held the lock, so it is gone).
    let _ = std::fs::remove_file(info_path(&home));
    let token = Token::generate().map_err(|e| ctl(e.to_string()))?;
    let token_file = token_path(&home);
    token
        .save(&token_file)
        .map_err(|e| ctl(format!("failed to write the controller token: {e}")))?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| ctl(format!("failed to listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ctl(format!("failed to read the listening address: {e}")))?;
    let dashboard = match opts.dashboard_listen {
        Some(a) => match TcpListener::bind(a).await {
            Ok(l) => l.local_addr().ok().map(|d| (l, d)),
            Err(e) => {
                eprintln!("[sky-jobs] no dashboard: failed to listen on {a}: {e}");
                None
            }
        },
        None => None,
    };
    let ctrl = Controller::start(opts.config, opts.state, opts.driver).await?;
    let shutdown = CancellationToken::new();
    let activity = Arc::new(Activity::default());
    let dashboard_addr = dashboard.as_ref().map(|(_, a)| *a);
    let dashboard_url = dashboard_addr.map(|a| format!("http://{a}/?token={}", token.expose()));
    if let Some((listener, _)) = dashboard {
        start_dashboard(
            listener,
            ctrl.clone(),
            token.expose().to_string(),
            shutdown.clone(),
        );
    }
    let server = tokio::spawn(serve(
        listener,
        ctrl.clone(),
        ServeOptions {
            token: token.clone(),
            dashboard_url,
        },
        activity.clone(),
        shutdown.clone(),
    ));
    write_info(
        &home,
        &ControllerInfo {
            pid: std::process::id(),
            addr,
            dashboard_addr,
            token_file: token_file.clone(),
        },
    )?;
    eprintln!(
        "[sky-jobs] controller pid {} serving on {addr} ({} active jobs)",
        std::process::id(),
        ctrl.active_jobs()
    );
    let why = wait_for_exit(&ctrl, &activity, opts.idle_exit).await;
    eprintln!("[sky-jobs] controller exits: {why}");
    remove_info(&home);
    shutdown.cancel();
    let _ = server.await;
    ctrl.shutdown().await;
    Ok(())
}

/// Serves the dashboard ([`crate::dashboard::serve`]) on its listener.
fn start_dashboard(
    listener: TcpListener,
    ctrl: Arc<Controller>,
    token: String,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        if let Err(e) = crate::dashboard::serve(listener, ctrl, token, shutdown).await {
            eprintln!("[sky-jobs] the dashboard stopped: {e}");
        }
    });
}

/// Waits until idle for `idle_exit` (no active job, no request in flight or within it) or a
/// signal; says which.
async fn wait_for_exit(
    ctrl: &Controller,
    activity: &Activity,
    idle_exit: Option<Duration>,
) -> String {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return "failed to install signal handlers".into();
    };
    let mut idle_since = Instant::now();
    let tick = idle_exit
        .map(|d| (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => return "SIGTERM".into(),
            _ = int.recv() => return "SIGINT".into(),
            // A terminal that goes away does not end the controller.
            _ = hup.recv() => continue,
            _ = tokio::time::sleep(tick) => {}
        }
        if ctrl.active_jobs() > 0 || activity.in_flight() > 0 {
            idle_since = Instant::now();
            continue;
        }
        if let Some(idle) = idle_exit
            && idle_since.elapsed() >= idle
            && activity.idle_for() >= idle
        {
            return format!("idle for {idle:?} with no active job");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = take_lock(dir.path()).unwrap();
        let e = take_lock(dir.path()).unwrap_err();
        assert_eq!(e.kind, JobsErrorKind::Controller);
        assert!(e.message.contains("another jobs controller"), "{e}");
        drop(first);
        take_lock(dir.path()).unwrap();
    }

    #[test]
    fn controller_json_is_written_whole_and_removed_only_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let info = ControllerInfo {
            pid: std::process::id(),
            addr: "127.0.0.1:4242".parse().unwrap(),
            dashboard_addr: None,
            token_file: token_path(dir.path()),
        };
        write_info(dir.path(), &info).unwrap();
        assert_eq!(
            ControllerInfo::load(&info_path(dir.path())).unwrap(),
            Some(info.clone())
        );
        let other = ControllerInfo {
            pid: info.pid + 1,
            ..info
        };
        write_info(dir.path(), &other).unwrap();
        remove_info(dir.path());
        assert!(info_path(dir.path()).exists());
        write_info(
            dir.path(),
            &ControllerInfo {
                pid: std::process::id(),
                ..other
            },
        )
        .unwrap();
        remove_info(dir.path());
        assert!(!info_path(dir.path()).exists());
    }
}
