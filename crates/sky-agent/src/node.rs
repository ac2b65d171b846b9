//! Running one rank of a job on a node: locally (any agent, including the head for its own
//! ranks) or remotely (the head asking a worker agent with `Exec`).

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::proc::{self, ProcTable};
use crate::protocol::{ExecSpec, Reply, Request, Utf8Chunker, write_line};
use crate::store::{create_private_dir_all, open_private_append};
use crate::{AgentClient, Token};

/// What a running rank reports.
#[derive(Debug)]
pub(crate) enum RankEvent {
    Started(u32),
    Data(Vec<u8>),
}

/// This node: where its processes run and which ones it started.
#[derive(Clone, Debug)]
pub(crate) struct NodeCtx {
    pub home: PathBuf,
    /// The cluster token (the head sends it to its workers).
    pub token: Token,
    pub procs: ProcTable,
    pub grace: Duration,
}

impl NodeCtx {
    /// Runs `script` here to completion, reporting events; returns the exit code.
    pub(crate) async fn run_local(
        &self,
        job_id: u64,
        script: &str,
        env: &[(String, String)],
        emit: impl Fn(RankEvent),
    ) -> i32 {
        let sp = match proc::spawn_bash(script, env, &self.home) {
            Ok(sp) => sp,
            Err(e) => {
                emit(RankEvent::Data(
                    format!("sky-agent: failed to start bash: {e}\n").into_bytes(),
                ));
                return -1;
            }
        };
        let pid = sp.pid;
        self.procs.register(job_id, pid);
        emit(RankEvent::Started(pid));
        let code = proc::wait_streaming(sp, |c| emit(RankEvent::Data(c.to_vec()))).await;
        self.procs.unregister(job_id, pid);
        code
    }

    /// Kills the job's processes on this node.
    pub(crate) fn kill_job(&self, job_id: u64) {
        self.procs.kill_job(job_id, self.grace);
    }

    /// Serves an `Exec` request: runs the rank and streams `started`, `output`, `exited`.
    /// When the head goes away (EOF or a failed write) the process group is killed.
    pub(crate) async fn serve_exec(
        &self,
        spec: ExecSpec,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ctx = self.clone();
        let job_id = spec.job_id;
        let mut local_log = spec
            .log_name
            .as_deref()
            .and_then(|name| open_node_log(&self.home, name));
        let run = tokio::spawn(async move {
            ctx.run_local(spec.job_id, &spec.script, &spec.env, |e| {
                let _ = tx.send(e);
            })
            .await
        });
        let mut chunker = Utf8Chunker::default();
        let mut peer_gone = false;
        let mut probe = [0u8; 64];
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let reply = match ev {
                        None => break,
                        Some(RankEvent::Started(pid)) => Reply::Started { pid },
                        Some(RankEvent::Data(d)) => {
                            if let Some(f) = local_log.as_mut() {
                                let _ = f.write_all(&d);
                            }
                            Reply::Output { data: chunker.push(&d) }
                        }
                    };
                    if !peer_gone && write_line(writer, &reply).await.is_err() {
                        peer_gone = true;
                        self.kill_job(job_id);
                    }
                }
                r = reader.read(&mut probe), if !peer_gone => {
                    if matches!(r, Ok(0) | Err(_)) {
                        peer_gone = true;
                        self.kill_job(job_id);
                    }
                }
            }
        }
        let code = run.await.unwrap_or(-1);
        if peer_gone {
            return;
        }
        let rest = chunker.finish();
        if !rest.is_empty() {
            let _ = write_line(writer, &Reply::Output { data: rest }).await;
        }
        let _ = write_line(writer, &Reply::Exited { code }).await;
    }
}

fn open_node_log(home: &Path, name: &str) -> Option<std::fs::File> {
    let rel = Path::new(name);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let path = home.join("sky_logs").join(rel);
    create_private_dir_all(path.parent()?).ok()?;
    open_private_append(&path).ok()
}

/// Runs one rank on the worker agent `agent`; returns its exit code (-1 when the agent cannot
/// be reached or the connection is lost).
pub(crate) async fn run_remote(
    agent: AgentClient,
    spec: ExecSpec,
    emit: impl Fn(RankEvent),
) -> i32 {
    let fail = |msg: String| {
        emit(RankEvent::Data(
            format!("sky-agent: rank {} on {}: {msg}\n", spec.rank, agent.addr()).into_bytes(),
        ));
        -1
    };
    let mut replies = match agent.request(&Request::Exec(spec.clone())).await {
        Ok(r) => r,
        Err(e) => return fail(format!("failed to send the job to the node agent: {e}")),
    };
    loop {
        match replies.next().await {
            Ok(Some(Reply::Started { pid })) => emit(RankEvent::Started(pid)),
            Ok(Some(Reply::Output { data })) => emit(RankEvent::Data(data.into_bytes())),
            Ok(Some(Reply::Exited { code })) => return code,
            Ok(Some(other)) => return fail(format!("unexpected reply {other:?}")),
            Ok(None) => return fail("lost the connection to the node agent".into()),
            Err(e) => return fail(e.to_string()),
        }
    }
}

/// Asks the worker agent `agent` to kill the job's processes (best effort).
pub(crate) async fn kill_remote(agent: AgentClient, job_id: u64) {
    let res = tokio::time::timeout(Duration::from_secs(5), async {
        agent.request(&Request::Kill { job_id }).await?.next().await
    })
    .await;
    if !matches!(res, Ok(Ok(Some(Reply::Ok)))) {
        crate::log(&format!(
            "could not ask {} to kill job {job_id}",
            agent.addr()
        ));
    }
}
