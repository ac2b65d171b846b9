//! `SshRunner`: a `CommandRunner` over the system `ssh` (with a ControlMaster) and `rsync`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sky_provider::{CommandRunner, OutputSink, RunnerError, SshEndpoint, shell_quote};
use tokio::io::AsyncReadExt;

/// The environment variable every process started by `spawn_detached` carries (= the cluster's
/// name on cloud); terminate finds the cluster's processes on a host by it.
pub const CLUSTER_MARKER_ENV: &str = "SKY_SSH_CLUSTER";

/// How to reach one host: address, port, user and the SSH options of its pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    pub ip: String,
    pub port: u16,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    /// `UserKnownHostsFile`; `None` = ssh's default.
    pub known_hosts_file: Option<PathBuf>,
    /// `StrictHostKeyChecking`: `yes`, `no` or `accept-new`.
    pub strict_host_key_checking: String,
    /// Directory of the ControlMaster sockets (kept short: socket paths are limited to ~100
    /// bytes).
    pub control_dir: PathBuf,
    pub connect_timeout: Duration,
}

impl SshTarget {
    /// `user@ip` (or `ip`).
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.ip),
            None => self.ip.clone(),
        }
    }

    /// The `ssh` options (without the destination), multiplexed over a ControlMaster when
    /// `multiplex`.
    pub fn options(&self, multiplex: bool) -> Vec<String> {
        let mut o = vec![
            "-p".to_string(),
            self.port.to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
            "-o".into(),
            format!("StrictHostKeyChecking={}", self.strict_host_key_checking),
            "-o".into(),
            "ServerAliveInterval=5".into(),
            "-o".into(),
            "ServerAliveCountMax=3".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ];
        if let Some(k) = &self.known_hosts_file {
            o.extend(["-o".into(), format!("UserKnownHostsFile={}", k.display())]);
        }
        if let Some(i) = &self.identity_file {
            o.extend([
                "-i".into(),
                i.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        if multiplex {
            o.extend([
                "-o".into(),
                "ControlMaster=auto".into(),
                "-o".into(),
                format!("ControlPath={}/%C", self.control_dir.display()),
                "-o".into(),
                "ControlPersist=60s".into(),
            ]);
        } else {
            o.extend([
                "-o".into(),
                "ControlMaster=no".into(),
                "-o".into(),
                "ControlPath=none".into(),
            ]);
        }
        o
    }

    /// This host as the system `ssh` reaches it (`sky ssh`, the CLI's `Host` entries): the
    /// runner's port, user, identity, host-key policy, and its ControlMaster and keep-alive
    /// options (no BatchMode: a person may answer a prompt).
    pub fn endpoint(&self) -> SshEndpoint {
        SshEndpoint {
            host_name: self.ip.clone(),
            port: self.port,
            user: self.user.clone(),
            identity_file: self.identity_file.clone(),
            known_hosts_file: self.known_hosts_file.clone(),
            strict_host_key_checking: Some(self.strict_host_key_checking.clone()),
            options: vec![
                format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
                "ServerAliveInterval=5".into(),
                "ServerAliveCountMax=3".into(),
                "LogLevel=ERROR".into(),
                "ControlMaster=auto".into(),
                format!("ControlPath={}/%C", self.control_dir.display()),
                "ControlPersist=60s".into(),
            ],
        }
    }

    fn ensure_control_dir(&self) -> Result<(), RunnerError> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.control_dir)
        {
            Ok(()) => Ok(()),
            Err(e) => Err(RunnerError::io(
                format!("create {}", self.control_dir.display()),
                e,
            )),
        }
    }

    /// An `ssh` command running `remote` (a shell command line) on the host.
    pub fn command(&self, remote: &str) -> Result<tokio::process::Command, RunnerError> {
        self.ensure_control_dir()?;
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(self.options(true))
            .arg(self.destination())
            .arg("--")
            .arg(remote);
        Ok(cmd)
    }

    /// Runs `remote` and returns (exit code, merged output); exit 255 is ssh's own failure.
    pub async fn output(&self, remote: &str) -> Result<(i32, String), RunnerError> {
        let out = self
            .command(remote)?
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| RunnerError::io("run ssh", e))?;
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((exit_code(out.status), s))
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Forwards opened by [`SshRunner::forward_port`]: each `ssh` child runs `cat > /dev/null`
/// remotely with its stdin held here, so it ends (remote `cat` sees EOF) when this process
/// exits, and never outlives it for long.
static FORWARDS: Mutex<Vec<(std::process::Child, std::process::ChildStdin)>> =
    Mutex::new(Vec::new());

/// Runs commands on one SSH host. Working directory is the remote user's home.
#[derive(Clone, Debug)]
pub struct SshRunner {
    target: SshTarget,
    /// The cluster's name on cloud (the marker of its processes).
    cluster: String,
}

impl SshRunner {
    pub fn new(target: SshTarget, cluster_name_on_cloud: impl Into<String>) -> Self {
        SshRunner {
            target,
            cluster: cluster_name_on_cloud.into(),
        }
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    fn unreachable(&self, detail: &str) -> RunnerError {
        RunnerError::Unreachable(format!(
            "ssh to {}:{} failed: {}",
            self.target.ip,
            self.target.port,
            detail.trim()
        ))
    }
}

/// `~`, `~/x` and relative paths are under the remote home; absolute paths stay.
fn remote_path(remote: &str) -> String {
    if remote == "~" || remote.is_empty() {
        ".".into()
    } else if let Some(rest) = remote.strip_prefix("~/") {
        if rest.is_empty() {
            ".".into()
        } else {
            rest.to_owned()
        }
    } else {
        remote.to_owned()
    }
}

fn exports(env: &[(String, String)]) -> String {
    env.iter()
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| format!("export {k}={}; ", shell_quote(v)))
        .collect()
}

#[async_trait]
impl CommandRunner for SshRunner {
    async fn run(
        &self,
        script: &str,
        env: &[(String, String)],
        sink: &mut OutputSink<'_>,
    ) -> Result<i32, RunnerError> {
        // The script runs in its own session; when the local ssh goes away (the future is
        // dropped), the remote stdin sees EOF and the watcher kills the script's group.
        let remote = format!(
            "exec 2>&1 3<&0; cd ~ || exit 1; {exports}setsid bash -c {script} < /dev/null 3<&- & p=$!; \
             {{ cat <&3 > /dev/null; kill -TERM -- -$p 2>/dev/null; sleep 2; kill -KILL -- -$p 2>/dev/null; }} > /dev/null 2>&1 & w=$!; \
             wait $p; rc=$?; kill $w 2>/dev/null; exit $rc",
            exports = exports(env),
            script = shell_quote(script),
        );
        let mut child = self
            .target
            .command(&remote)?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RunnerError::io("spawn ssh", e))?;
        let _stdin = child.stdin.take();
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| RunnerError::Other("no stdout".into()))?;
        let mut err = child
            .stderr
            .take()
            .ok_or_else(|| RunnerError::Other("no stderr".into()))?;
        let mut buf = vec![0u8; 16384];
        let mut err_text = Vec::new();
        let err_task = async {
            let _ = err.read_to_end(&mut err_text).await;
        };
        let out_task = async {
            loop {
                match out.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink(&buf[..n]),
                }
            }
        };
        tokio::join!(out_task, err_task);
        let status = child
            .wait()
            .await
            .map_err(|e| RunnerError::io("wait for ssh", e))?;
        let code = exit_code(status);
        if code == 255 {
            // ssh's own failure (connection, authentication); the script never exits 255
            // without also printing to its merged stdout.
            let e = String::from_utf8_lossy(&err_text);
            if !e.trim().is_empty() {
                return Err(self.unreachable(&e));
            }
        }
        Ok(code)
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RunnerError> {
        let meta = std::fs::metadata(local).map_err(|_| RunnerError::InvalidPath {
            path: local.display().to_string(),
            reason: "does not exist".into(),
        })?;
        self.target.ensure_control_dir()?;
        let dst = remote_path(remote);
        let (src, dst, mkdir) = if meta.is_dir() {
            (
                format!("{}/", local.display()),
                format!("{dst}/"),
                dst.clone(),
            )
        } else if remote.ends_with('/') {
            (local.display().to_string(), format!("{dst}/"), dst.clone())
        } else {
            let parent = Path::new(&dst)
                .parent()
                .map(|p| p.display().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| ".".into());
            (local.display().to_string(), dst.clone(), parent)
        };
        let ssh = std::iter::once("ssh".to_string())
            .chain(self.target.options(true))
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ");
        let out = tokio::process::Command::new("rsync")
            .arg("-az")
            // Links that lead out of the tree are not copied (as the local cloud; the
            // launcher warns about them).
            .arg("--safe-links")
            .arg("-e")
            .arg(ssh)
            .arg(format!(
                "--rsync-path=mkdir -p {} && rsync",
                shell_quote(&mkdir)
            ))
            .arg(&src)
            .arg(format!("{}:{dst}", self.target.destination()))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| RunnerError::io("run rsync (is rsync installed?)", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RunnerError::Other(format!(
                "rsync {src} to {}:{dst} failed ({}): {}",
                self.target.ip,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    async fn spawn_detached(
        &self,
        argv: &[String],
        env: &[(String, String)],
        log_file: &str,
    ) -> Result<u32, RunnerError> {
        let log = shell_quote(&remote_path(log_file));
        let args: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
        let mut env = env.to_vec();
        env.push((CLUSTER_MARKER_ENV.into(), self.cluster.clone()));
        let remote = format!(
            "cd ~ || exit 1; mkdir -p \"$(dirname {log})\"; {exports}nohup setsid {args} >> {log} 2>&1 < /dev/null & echo $!",
            exports = exports(&env),
            args = args.join(" "),
        );
        let (code, out) = self.target.output(&remote).await?;
        if code == 255 {
            return Err(self.unreachable(&out));
        }
        out.trim()
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| {
                RunnerError::Other(format!(
                    "start {:?} on {}: exit {code}: {}",
                    argv.first(),
                    self.target.ip,
                    out.trim()
                ))
            })
    }

    fn ssh_endpoint(&self) -> Option<SshEndpoint> {
        Some(self.target.endpoint())
    }

    fn interactive_command(&self, command: &[String]) -> Option<std::process::Command> {
        let mut e = self.target.endpoint();
        if self.target.ensure_control_dir().is_err() {
            // No socket directory: connect without sharing a master.
            e.options.retain(|o| !o.starts_with("Control"));
        }
        Some(e.session_command(command))
    }

    async fn forward_port(&self, remote_port: u16) -> Result<SocketAddr, RunnerError> {
        let local = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| RunnerError::io("find a free local port", e))?;
        let spec = format!(
            "127.0.0.1:{}:{}:{remote_port}",
            local.port(),
            self.target.ip
        );
        let mut child = std::process::Command::new("ssh")
            .args(self.target.options(false))
            .args(["-o", "ExitOnForwardFailure=yes", "-L", &spec])
            .arg(self.target.destination())
            .arg("--")
            .arg("exec bash -c 'exec -a sky-port-forward cat > /dev/null'")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| RunnerError::io("spawn ssh -L", e))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| RunnerError::Other("no stdin".into()))?;
        let deadline =
            tokio::time::Instant::now() + self.target.connect_timeout + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(self.unreachable(&format!("ssh -L {spec} exited ({status})")));
            }
            if tokio::net::TcpStream::connect(local).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.unreachable(&format!("ssh -L {spec} did not listen in time")));
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        FORWARDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((child, stdin));
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_options_follow_the_target() {
        let t = SshTarget {
            ip: "10.200.0.11".into(),
            port: 22,
            user: Some("sky".into()),
            identity_file: Some("/k/id".into()),
            known_hosts_file: Some("/k/known".into()),
            strict_host_key_checking: "yes".into(),
            control_dir: "/tmp/c".into(),
            connect_timeout: Duration::from_secs(3),
        };
        let o = t.options(true).join(" ");
        for want in [
            "BatchMode=yes",
            "ConnectTimeout=3",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/k/known",
            "-i /k/id",
            "ControlPath=/tmp/c/%C",
            "ControlPersist=",
        ] {
            assert!(o.contains(want), "{want} not in {o}");
        }
        assert!(t.options(false).join(" ").contains("ControlPath=none"));
        assert_eq!(t.destination(), "sky@10.200.0.11");
        for word in ["a'b", "plain", "with space", "$HOME", "~/x", "", "a\"b\\c"] {
            assert_eq!(
                shlex::split(&shell_quote(word)),
                Some(vec![word.to_string()]),
                "{word}"
            );
        }
    }

    #[test]
    fn remote_paths_are_under_the_home() {
        assert_eq!(remote_path("~"), ".");
        assert_eq!(remote_path("~/"), ".");
        assert_eq!(remote_path("~/.sky/bin/sky"), ".sky/bin/sky");
        assert_eq!(remote_path("/opt/x"), "/opt/x");
        assert_eq!(
            exports(&[("A".into(), "x y".into()), ("B-C".into(), "z".into())]),
            "export A='x y'; "
        );
    }
}
