//! Process spawning and signalling: every child process and signal of the crate goes through
//! here. Job processes run as `bash -c SCRIPT` in their own process group (pgid = pid) with
//! stdout and stderr merged into one pipe.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// How long output is drained after the main process exits before leftover background
/// processes of its group are killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// A recorded process group, robust to pid reuse via the kernel's start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcRef {
    pub pid: i32,
    /// `/proc/<pid>/stat` field 22, when readable.
    pub start_time: Option<u64>,
}

impl ProcRef {
    fn of(pid: i32) -> Self {
        Self {
            pid,
            start_time: start_time(pid),
        }
    }

    /// Whether the recorded group still has a member that is the process we started (the
    /// leader) or any member at all when the leader is gone.
    fn group_alive(&self) -> bool {
        if let (Some(want), Some(now)) = (self.start_time, start_time(self.pid))
            && want != now
        {
            return false; // pid reused by someone else
        }
        matches!(
            killpg(Pid::from_raw(self.pid), None),
            Ok(()) | Err(Errno::EPERM)
        )
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process with this pid exists.
pub(crate) fn pid_alive(pid: i32) -> bool {
    pid > 0 && matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM))
}

/// Sends `sig` to the group; returns false when it is gone.
fn signal_group(p: &ProcRef, sig: Signal) -> bool {
    p.group_alive() && killpg(Pid::from_raw(p.pid), sig).is_ok()
}

/// A started job process.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub pid: u32,
    child: tokio::process::Child,
    output: tokio::net::unix::pipe::Receiver,
}

/// The variable that marks job processes (`1`), so a cloud's preemption notice can signal
/// them and not the agent: `sky_provider::JOB_PROCESS_ENV`.
pub(crate) const JOB_PROCESS_ENV: &str = "SKY_JOB_PROCESS";
/// The variable that gives jobs the path of their node's preemption notice file:
/// `sky_provider::PREEMPTION_NOTICE_ENV`.
pub(crate) const PREEMPTION_NOTICE_ENV: &str = "SKYPILOT_PREEMPTION_NOTICE_FILE";
/// Where the notice is, relative to the node's home: `sky_provider::PREEMPTION_NOTICE_FILE`.
pub(crate) const PREEMPTION_NOTICE_FILE: &str = ".sky/preemption_notice";

/// Starts `bash -c script` with `HOME=home`, cwd `home/sky_workdir` (or `home`), `env` added,
/// stdin closed, stdout+stderr merged, in a new process group. The process is marked as a job
/// ([`JOB_PROCESS_ENV`]) and told where a preemption notice would appear
/// ([`PREEMPTION_NOTICE_ENV`]); neither can be overridden by `env`.
pub(crate) fn spawn_bash(
    script: &str,
    env: &[(String, String)],
    home: &Path,
) -> io::Result<Spawned> {
    let (tx, rx) = tokio::net::unix::pipe::pipe()?;
    let out = tx.into_blocking_fd()?;
    let err = out.try_clone()?;
    let workdir = home.join("sky_workdir");
    let cwd = if workdir.is_dir() {
        workdir
    } else {
        home.to_path_buf()
    };
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env("HOME", home)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(JOB_PROCESS_ENV, "1")
        .env(PREEMPTION_NOTICE_ENV, home.join(PREEMPTION_NOTICE_FILE))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    let child = cmd.spawn()?;
    drop(cmd); // closes our copies of the pipe's write end
    let pid = child.id().unwrap_or(0);
    Ok(Spawned {
        pid,
        child,
        output: rx,
    })
}

/// Hands the process's output to `on_chunk` until it exits and its output is drained; returns
/// the exit code (128+n for signal n). Background processes it left in its group are killed.
pub(crate) async fn wait_streaming(mut sp: Spawned, mut on_chunk: impl FnMut(&[u8])) -> i32 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut code: Option<i32> = None;
    let mut eof = false;
    let drain = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(drain);
    while !(eof && code.is_some()) {
        tokio::select! {
            r = sp.output.read(&mut buf), if !eof => match r {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => on_chunk(&buf[..n]),
            },
            s = sp.child.wait(), if code.is_none() => {
                code = Some(match s {
                    Ok(st) => exit_code(st),
                    Err(_) => -1,
                });
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            },
            () = &mut drain, if code.is_some() => {
                let _ = killpg(Pid::from_raw(sp.pid as i32), Signal::SIGKILL);
                break;
            }
        }
    }
    code.unwrap_or(-1)
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Starts the autostop hook `argv` detached (own process group); the task logs its exit and
/// yields whether it succeeded.
pub(crate) fn spawn_hook(argv: &[String]) -> io::Result<tokio::task::JoinHandle<bool>> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty hook argv",
        ));
    };
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()?;
    let shown = argv.join(" ");
    Ok(tokio::spawn(async move {
        match child.wait().await {
            Ok(st) => {
                crate::log(&format!("autostop hook `{shown}` exited: {st}"));
                st.success()
            }
            Err(e) => {
                crate::log(&format!("autostop hook `{shown}`: {e}"));
                false
            }
        }
    }))
}

/// The job processes this node started, by job id, persisted in `.sky/procs.json` so a
/// restarted agent (or `mark_orphans_failed_driver`) can kill what a dead agent left behind.
#[derive(Clone, Debug)]
pub(crate) struct ProcTable {
    path: PathBuf,
    inner: Arc<Mutex<BTreeMap<u64, Vec<ProcRef>>>>,
}

impl ProcTable {
    pub(crate) fn new(sky_dir: &Path) -> Self {
        Self {
            path: sky_dir.join("procs.json"),
            inner: Arc::default(),
        }
    }

    pub(crate) fn register(&self, job_id: u64, pid: u32) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.entry(job_id).or_default().push(ProcRef::of(pid as i32));
        self.save(&t);
    }

    pub(crate) fn unregister(&self, job_id: u64, pid: u32) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = t.get_mut(&job_id) {
            v.retain(|p| p.pid != pid as i32);
            if v.is_empty() {
                t.remove(&job_id);
            }
        }
        self.save(&t);
    }

    /// SIGTERM to every group of the job here, SIGKILL to survivors after `grace`.
    pub(crate) fn kill_job(&self, job_id: u64, grace: Duration) {
        let procs: Vec<ProcRef> = {
            let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            t.get(&job_id).cloned().unwrap_or_default()
        };
        let alive: Vec<ProcRef> = procs
            .into_iter()
            .filter(|p| signal_group(p, Signal::SIGTERM))
            .collect();
        if !alive.is_empty() {
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                for p in alive {
                    signal_group(&p, Signal::SIGKILL);
                }
            });
        }
    }

    fn save(&self, t: &BTreeMap<u64, Vec<ProcRef>>) {
        if let Ok(bytes) = serde_json::to_vec(t)
            && let Err(e) = crate::store::write_atomic(&self.path, &bytes)
        {
            crate::log(&format!(
                "failed to record processes in {}: {e}",
                self.path.display()
            ));
        }
    }
}

/// Kills (TERM, then KILL after `grace`) every process group recorded in `sky_dir/procs.json`
/// by a previous agent and clears the file. Blocking. Returns the job ids that had processes.
pub(crate) fn kill_recorded_orphans(sky_dir: &Path, grace: Duration) -> Vec<u64> {
    let path = sky_dir.join("procs.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    let table: BTreeMap<u64, Vec<ProcRef>> = serde_json::from_slice(&bytes).unwrap_or_default();
    let all: Vec<ProcRef> = table.values().flatten().copied().collect();
    let mut alive: Vec<ProcRef> = all
        .into_iter()
        .filter(|p| signal_group(p, Signal::SIGTERM))
        .collect();
    let deadline = std::time::Instant::now() + grace;
    while !alive.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        alive.retain(ProcRef::group_alive);
    }
    for p in &alive {
        signal_group(p, Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(&path);
    table.into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn merges_output_and_reports_exit_code() {
        let home = tempfile::tempdir().unwrap();
        let sp = spawn_bash(
            "echo out; echo err >&2; echo \"$HOME $FOO\"; exit 3",
            &[("FOO".into(), "bar".into())],
            home.path(),
        )
        .unwrap();
        let mut out = Vec::new();
        let code = wait_streaming(sp, |c| out.extend_from_slice(c)).await;
        assert_eq!(code, 3);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, format!("out\nerr\n{} bar\n", home.path().display()));
    }

    #[tokio::test]
    async fn jobs_are_marked_and_told_where_the_preemption_notice_is() {
        let home = tempfile::tempdir().unwrap();
        let sp = spawn_bash(
            "echo \"$SKY_JOB_PROCESS $SKYPILOT_PREEMPTION_NOTICE_FILE\"",
            &[(JOB_PROCESS_ENV.into(), "0".into())],
            home.path(),
        )
        .unwrap();
        let mut out = Vec::new();
        assert_eq!(wait_streaming(sp, |c| out.extend_from_slice(c)).await, 0);
        let want = format!("1 {}/.sky/preemption_notice\n", home.path().display());
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // The names are the provider contract's (a cloud's notice finds jobs by them).
        assert_eq!(JOB_PROCESS_ENV, sky_provider::JOB_PROCESS_ENV);
        assert_eq!(PREEMPTION_NOTICE_ENV, sky_provider::PREEMPTION_NOTICE_ENV);
        assert_eq!(PREEMPTION_NOTICE_FILE, sky_provider::PREEMPTION_NOTICE_FILE);
    }

    #[tokio::test]
    async fn background_children_do_not_hold_the_job_open() {
        let home = tempfile::tempdir().unwrap();
        let sp = spawn_bash("sleep 30 & echo $! > bg; echo done", &[], home.path()).unwrap();
        // The job ends although its background child (30 s) still holds the output open; the
        // timeout only guards against a hang (it is six times the child's life).
        let code = tokio::time::timeout(Duration::from_secs(180), wait_streaming(sp, |_| {}))
            .await
            .expect("the job ended without waiting for its background child");
        assert_eq!(code, 0);
        let bg: i32 = std::fs::read_to_string(home.path().join("bg"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The child is killed with the job's group: poll until it is gone (or a zombie, until
        // init reaps it), for at most the child's own life.
        let gone = |stat: &str| stat.is_empty() || stat.contains(") Z");
        let mut stat = String::new();
        for _ in 0..3000 {
            stat = std::fs::read_to_string(format!("/proc/{bg}/stat")).unwrap_or_default();
            if gone(&stat) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone(&stat), "background child still running: {stat}");
    }
}
