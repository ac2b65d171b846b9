//! The one module of this crate that starts processes, sends signals, reads `/proc` and the
//! clock.
//!
//! Every process started for a node carries `SKY_LOCAL_NODE=<node dir>` in its environment
//! (children inherit it), so stopping a node finds all of its processes, including ones that
//! daemonised themselves, by scanning `/proc/*/environ`; processes whose working directory is
//! inside the node (jobs that cleared their environment) and recorded process groups are
//! signalled as well. The calling process (and its process group) is never signalled, so
//! `sky stop` run from inside a node (autostop) is safe.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp};
use sky_provider::OutputSink;
use tokio::io::AsyncReadExt;

/// The environment variable that tags a process with its node directory.
pub const NODE_MARKER_ENV: &str = "SKY_LOCAL_NODE";

/// Seconds since the Unix epoch (the crate's clock).
pub(crate) fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Output of `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader`, or `None`
/// when the tool is absent or fails.
pub(crate) fn nvidia_smi_query() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total",
            "--format=csv,noheader",
        ])
        .env_remove(NODE_MARKER_ENV)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The environment a node's processes get.
#[derive(Clone, Debug)]
pub(crate) struct NodeEnv<'a> {
    pub home: &'a Path,
    pub address: &'a str,
    pub rank: u32,
}

impl NodeEnv<'_> {
    fn apply_std(&self, cmd: &mut std::process::Command, env: &[(String, String)]) {
        cmd.current_dir(self.home)
            .env("HOME", self.home)
            .env("PWD", self.home);
        // What the provider starts on a node (agents, commands) is never a job, even when the
        // caller itself runs inside a job (a controller on a cluster of its own): a
        // preemption notice must not signal it. A caller may still set the marker in `env`.
        cmd.env_remove(sky_provider::JOB_PROCESS_ENV)
            .env_remove(sky_provider::PREEMPTION_NOTICE_ENV);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.env(NODE_MARKER_ENV, self.home)
            .env("SKY_LOCAL_NODE_IP", self.address)
            .env("SKY_LOCAL_NODE_RANK", self.rank.to_string());
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Kills a process group when dropped unless disarmed: a dropped `run` future kills its command.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// Runs `bash -c script` on the node (own process group), streaming merged stdout+stderr to
/// `sink`; returns the exit code (128+N when killed by signal N).
pub(crate) async fn run_script(
    node: &NodeEnv<'_>,
    script: &str,
    env: &[(String, String)],
    sink: &mut OutputSink<'_>,
) -> io::Result<i32> {
    let (reader, writer) = io::pipe()?;
    let writer2 = writer.try_clone()?;
    let mut std_cmd = std::process::Command::new("bash");
    std_cmd.arg("-c").arg(script);
    node.apply_std(&mut std_cmd, env);
    std_cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    let mut cmd = tokio::process::Command::from(std_cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn()?;
    // Close our copies of the write end so EOF arrives when the script's side closes.
    drop(cmd);
    let mut guard = GroupGuard(child.id().map(|p| p as i32));
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut status: Option<ExitStatus> = None;
    loop {
        match status {
            None => {
                tokio::select! {
                    r = rx.read(&mut buf) => match r? {
                        0 => status = Some(child.wait().await?),
                        n => sink(&buf[..n]),
                    },
                    st = child.wait() => status = Some(st?),
                }
            }
            Some(_) => {
                // The script exited; drain what is buffered, but do not wait for background
                // processes that inherited the pipe.
                match tokio::time::timeout(Duration::from_millis(50), rx.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => sink(&buf[..n]),
                    _ => break,
                }
            }
        }
    }
    guard.0 = None;
    Ok(status.map(exit_code).unwrap_or(-1))
}

/// Starts `argv` in a new session with stdout/stderr appended to `log`, tagged with the node;
/// returns its pid. The child is reaped by a background thread.
pub(crate) fn spawn_detached(
    node: &NodeEnv<'_>,
    argv: &[String],
    env: &[(String, String)],
    log: &Path,
) -> io::Result<u32> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)?;
    let err = out.try_clone()?;
    let build = |with_setsid: bool| {
        let mut cmd = if with_setsid {
            let mut c = std::process::Command::new("setsid");
            c.arg(program).args(args);
            c
        } else {
            let mut c = std::process::Command::new(program);
            c.args(args).process_group(0);
            c
        };
        node.apply_std(&mut cmd, env);
        cmd
    };
    let mut cmd = build(true);
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound && which("setsid").is_none() => {
            let mut cmd = build(false);
            cmd.stdin(Stdio::null()).stdout(out).stderr(err);
            cmd.spawn()?
        }
        Err(e) => return Err(e),
    };
    Ok(reap_in_background(child))
}

/// The environment variable that tags a cluster's preemption watchdog with the cluster directory.
pub const WATCHDOG_MARKER_ENV: &str = "SKY_LOCAL_WATCHDOG";

/// Starts a `bash -c script` watchdog in its own process group, tagged with `cluster_dir` (and
/// not with any node).
pub(crate) fn spawn_watchdog(script: &str, cluster_dir: &Path) -> io::Result<u32> {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .env_remove(NODE_MARKER_ENV)
        .env(WATCHDOG_MARKER_ENV, cluster_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    Ok(reap_in_background(cmd.spawn()?))
}

fn reap_in_background(mut child: std::process::Child) -> u32 {
    let pid = child.id();
    let _ = std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || child.wait());
    pid
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Whether `pid` is a live (non-zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the `)` that closes the command name.
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => false,
    }
}

/// Pids whose `var` value satisfies `matches` (never this process).
fn tagged_pids(var: &str, matches: &dyn Fn(&[u8]) -> bool) -> BTreeSet<u32> {
    let me = std::process::id();
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let prefix = format!("{var}=");
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let tagged = environ
            .split(|b| *b == 0)
            .filter_map(|var| var.strip_prefix(prefix.as_bytes()))
            .any(matches);
        if tagged {
            found.insert(pid);
        }
    }
    found
}

/// The start time of a process (clock ticks since boot, field 22 of `/proc/<pid>/stat`).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after the command name start at field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// This process and its ancestors.
fn ancestors() -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && set.insert(pid) {
        match parent_of(pid) {
            Some(parent) => pid = parent,
            None => break,
        }
    }
    set
}

/// A detached process recorded for a node: its pid (= process group) and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub pid: u32,
    pub start: Option<u64>,
}

/// Which processes to kill: those of a node directory (`exact`) or of any node directory under a
/// cluster directory (`under`), plus recorded process groups.
///
/// A process belongs to a node when its `SKY_LOCAL_NODE` tag names the node, or when its working
/// directory lies inside the node directory (jobs that cleared their environment) unless it is an
/// ancestor of this process (the user's shell that runs `sky down`).
#[derive(Clone, Debug, Default)]
pub(crate) struct KillSet {
    pub exact: Vec<std::path::PathBuf>,
    pub under: Vec<std::path::PathBuf>,
    pub groups: Vec<Recorded>,
}

impl KillSet {
    fn owned(&self) -> BTreeSet<u32> {
        let mut found = BTreeSet::new();
        if self.exact.is_empty() && self.under.is_empty() {
            return found;
        }
        let bytes = |p: &std::path::PathBuf| p.as_os_str().as_encoded_bytes().to_vec();
        let with_slash = |p: &std::path::PathBuf| {
            let mut v = bytes(p);
            v.push(b'/');
            v
        };
        let exact: Vec<Vec<u8>> = self.exact.iter().map(bytes).collect();
        let prefixes: Vec<Vec<u8>> = self
            .exact
            .iter()
            .chain(&self.under)
            .map(with_slash)
            .collect();
        let me = std::process::id();
        let protected = ancestors();
        let marker = format!("{NODE_MARKER_ENV}=");
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let inside = |value: &[u8]| {
                exact.iter().any(|e| e.as_slice() == value)
                    || prefixes.iter().any(|p| value.starts_with(p))
            };
            let tagged = std::fs::read(entry.path().join("environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .filter_map(|var| var.strip_prefix(marker.as_bytes()))
                    .any(inside)
            });
            let in_dir = !tagged
                && !protected.contains(&pid)
                && std::fs::read_link(entry.path().join("cwd"))
                    .is_ok_and(|cwd| inside(cwd.as_os_str().as_encoded_bytes()));
            if (tagged || in_dir) && pid_alive(pid) {
                found.insert(pid);
            }
        }
        found
    }

    /// Recorded groups that are still ours: the leader is the recorded process (same start time),
    /// or the leader is gone (the kernel does not reuse a pid still used as a process group id,
    /// so signalling the group can only reach its remaining members).
    fn live_groups(&self) -> Vec<u32> {
        self.groups
            .iter()
            .filter(|r| match start_time(r.pid) {
                Some(now) => r.start == Some(now) && pid_alive(r.pid),
                None => true,
            })
            .map(|r| r.pid)
            .collect()
    }

    fn signal(&self, pids: &BTreeSet<u32>, sig: Signal) {
        let own_group = getpgrp().as_raw();
        let me = std::process::id();
        for g in self.live_groups() {
            if g > 1 && g as i32 != own_group && g != me {
                let _ = killpg(Pid::from_raw(g as i32), sig);
            }
        }
        for &p in pids {
            if p > 1 && p != me {
                let _ = kill(Pid::from_raw(p as i32), sig);
            }
        }
    }

    fn alive(&self) -> BTreeSet<u32> {
        let mut pids = self.owned();
        pids.extend(
            self.groups
                .iter()
                .filter(|r| r.start.is_some() && start_time(r.pid) == r.start && pid_alive(r.pid))
                .map(|r| r.pid),
        );
        pids
    }

    /// SIGTERM to everything, then SIGKILL to what is left after `grace`. Returns the pids that
    /// were signalled.
    pub async fn kill(&self, grace: Duration) -> BTreeSet<u32> {
        let first = self.alive();
        self.signal(&first, Signal::SIGTERM);
        if first.is_empty() {
            return first;
        }
        let deadline = Instant::now() + grace;
        let mut left = self.alive();
        while !left.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
            left = self.alive();
        }
        let mut all = first;
        if !left.is_empty() {
            self.signal(&left, Signal::SIGKILL);
            all.extend(&left);
            for _ in 0..40 {
                if self.alive().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        all
    }
}

/// Kills the preemption watchdogs of `cluster_dir` (found by their tag, so a reused pid is never
/// hit).
pub(crate) fn kill_watchdogs(cluster_dir: &Path) {
    let tag = cluster_dir.as_os_str().as_encoded_bytes().to_vec();
    for pid in tagged_pids(WATCHDOG_MARKER_ENV, &|value: &[u8]| value == tag.as_slice()) {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}
