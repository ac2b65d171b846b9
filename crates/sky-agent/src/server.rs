//! The listener: binds, writes `agent.addr`, dispatches one request per connection.
//!
//! Nobody without the cluster token can make the agent look dead: a connection must send its
//! token line (at most [`PREAMBLE_MAX_BYTES`](crate::protocol::PREAMBLE_MAX_BYTES)) within
//! the preamble timeout, and at most `max_pending_connections` connections may be waiting for
//! theirs (accepting one more closes the oldest waiting one, so idle connections cannot hold
//! the file limit, and a client that sends its token at once still gets through). Only after
//! the token is checked is the request line (up to `MAX_LINE_BYTES`) read.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::head::Head;
use crate::node::NodeCtx;
use crate::proc::{self, ProcTable};
use crate::protocol::{
    PROTOCOL_VERSION, Reply, Request, RequestError, read_preamble, read_request_line, write_line,
};
use crate::store::{create_private_dir_all, write_atomic};
use crate::{AgentError, Token};

/// Where an agent writes its bound address (`<node_home>/.sky/agent.addr`).
pub fn agent_addr_file(node_home: &Path) -> PathBuf {
    node_home.join(".sky").join("agent.addr")
}

/// Waits until the agent of `node_home` has written its address, then returns it. Delete the
/// file before starting an agent so a stale one is not picked up.
pub async fn read_agent_addr(
    node_home: &Path,
    timeout: Duration,
) -> Result<SocketAddr, AgentError> {
    let path = agent_addr_file(node_home);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = tokio::fs::read_to_string(&path).await
            && let Ok(addr) = text.trim().parse()
        {
            return Ok(addr);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AgentError::io(
                format!("wait for the agent address in {}", path.display()),
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the agent did not start in time; see its log",
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A bound agent, not yet serving. [`serve`] is `bind` + `run`.
#[derive(Debug)]
pub struct Agent {
    listener: TcpListener,
    addr: SocketAddr,
    addr_file: PathBuf,
    inner: Arc<Inner>,
    pending: Arc<Pending>,
}

#[derive(Debug)]
struct Inner {
    rank: u32,
    node: NodeCtx,
    head: Option<Arc<Head>>,
    stop: CancellationToken,
    preamble_timeout: Duration,
}

/// The connections still waiting for their token line, oldest first.
#[derive(Debug)]
struct Pending {
    cap: usize,
    next_id: AtomicU64,
    queue: Mutex<VecDeque<(u64, CancellationToken)>>,
    /// Whether "full" was logged since the queue was last empty (one line per flood).
    logged_full: AtomicBool,
}

/// A connection's place in [`Pending`]; dropping it (once the token is checked, or when the
/// connection ends) gives the place back.
#[derive(Debug)]
struct Admission {
    pending: Arc<Pending>,
    id: u64,
    evicted: CancellationToken,
}

impl Pending {
    fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            next_id: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
            logged_full: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, CancellationToken)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection, closing the oldest waiting ones when full.
    fn admit(self: &Arc<Self>) -> Admission {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        let mut q = self.lock();
        while q.len() >= self.cap {
            if let Some((_, oldest)) = q.pop_front() {
                oldest.cancel();
            }
            if !self.logged_full.swap(true, Ordering::Relaxed) {
                crate::log(&format!(
                    "{} connections are waiting for their token line; closing the oldest ones",
                    self.cap
                ));
            }
        }
        q.push_back((id, evicted.clone()));
        Admission {
            pending: self.clone(),
            id,
            evicted,
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut q = self.pending.lock();
        if let Ok(i) = q.binary_search_by_key(&self.id, |(id, _)| *id) {
            q.remove(i);
        }
        if q.is_empty() {
            self.pending.logged_full.store(false, Ordering::Relaxed);
        }
    }
}

impl Agent {
    /// Prepares the node (kills processes a previous agent left; on the head, marks its
    /// unfinished jobs FAILED_DRIVER), binds, and writes `agent.addr`.
    pub async fn bind(cfg: AgentConfig) -> Result<Self, AgentError> {
        let token = match &cfg.token {
            Some(t) => t.clone(),
            None => Token::load(&Token::path_in(&cfg.node_home))?,
        };
        let sky_dir = cfg.sky_dir();
        create_private_dir_all(&sky_dir)
            .map_err(|e| AgentError::io(format!("create {}", sky_dir.display()), e))?;
        let (dir, grace) = (sky_dir.clone(), cfg.kill_grace);
        tokio::task::spawn_blocking(move || proc::kill_recorded_orphans(&dir, grace))
            .await
            .map_err(|e| AgentError::io("kill orphaned processes", std::io::Error::other(e)))?;
        let node = NodeCtx {
            home: cfg.node_home.clone(),
            token,
            procs: ProcTable::new(&sky_dir),
            grace: cfg.kill_grace,
        };
        let stop = CancellationToken::new();
        let head = if cfg.head {
            Some(Head::new(&cfg, node.clone(), stop.clone())?)
        } else {
            None
        };
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| AgentError::io(format!("bind the agent to {}", cfg.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| AgentError::io("read the bound address", e))?;
        let addr_file = agent_addr_file(&cfg.node_home);
        write_atomic(&addr_file, format!("{addr}\n").as_bytes())
            .map_err(|e| AgentError::io(format!("write {}", addr_file.display()), e))?;
        crate::log(&format!(
            "rank {} listening on {addr} ({})",
            cfg.rank,
            if cfg.head { "head" } else { "worker" }
        ));
        Ok(Self {
            listener,
            addr,
            addr_file,
            inner: Arc::new(Inner {
                rank: cfg.rank,
                node,
                head,
                stop,
                preamble_timeout: cfg.preamble_timeout,
            }),
            pending: Pending::new(cfg.max_pending_connections),
        })
    }

    /// The address the agent listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled or a `Shutdown` request arrives. Job processes are
    /// left running (a restarted head marks their jobs FAILED_DRIVER and kills them).
    pub async fn run(self, shutdown: Option<CancellationToken>) -> Result<(), AgentError> {
        let external = shutdown.unwrap_or_default();
        let stop = self.inner.stop.clone();
        if let Some(head) = &self.inner.head {
            tokio::spawn(head.clone().autostop_loop());
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = external.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => {
                        let inner = self.inner.clone();
                        let admission = self.pending.admit();
                        tokio::spawn(async move {
                            let stop = inner.stop.clone();
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = handle(inner, stream, admission) => {}
                            }
                        });
                    }
                    Err(e) => {
                        crate::log(&format!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        stop.cancel();
        if let Some(head) = &self.inner.head {
            head.barrier();
        }
        let _ = std::fs::remove_file(&self.addr_file);
        crate::log("stopped");
        Ok(())
    }
}

/// Runs an agent until `shutdown` is cancelled (if given) or it receives `Shutdown`.
pub async fn serve(
    cfg: AgentConfig,
    shutdown: Option<CancellationToken>,
) -> Result<(), AgentError> {
    Agent::bind(cfg).await?.run(shutdown).await
}

async fn handle(inner: Arc<Inner>, stream: TcpStream, admission: Admission) {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let preamble = tokio::select! {
        () = admission.evicted.cancelled() => return,
        p = tokio::time::timeout(inner.preamble_timeout, read_preamble(&mut r, &inner.node.token)) => {
            p.unwrap_or(Err(RequestError::TimedOut(inner.preamble_timeout)))
        }
    };
    drop(admission);
    let req = match preamble {
        Ok(start) => read_request_line(&mut r, start).await,
        Err(e) => Err(e),
    };
    let req = match req {
        Ok(req) => req,
        Err(RequestError::Closed) => return,
        Err(e) => {
            let _ = write_line(&mut w, &error(e.to_string())).await;
            return;
        }
    };
    let head = || {
        inner.head.clone().ok_or_else(|| {
            error(format!(
                "this agent is a worker (rank {}); send job requests to the head",
                inner.rank
            ))
        })
    };
    let reply = match req {
        Request::Ping => Reply::Pong {
            version: PROTOCOL_VERSION,
            rank: inner.rank,
            head: inner.head.is_some(),
        },
        Request::Submit(spec) => match head() {
            Ok(h) => match h.submit(spec) {
                Ok(job_id) => Reply::Submitted { job_id },
                Err(e) => Reply::Error {
                    message: e.to_string(),
                },
            },
            Err(e) => e,
        },
        Request::Queue {
            all,
            skip_finished,
            user,
        } => match head() {
            Ok(h) => Reply::Jobs {
                jobs: h.queue(skip_finished, if all { None } else { user.as_deref() }),
            },
            Err(e) => e,
        },
        Request::Cancel { ids, all } => match head() {
            Ok(h) => Reply::Cancelled {
                ids: h.cancel(&ids, all).await,
            },
            Err(e) => e,
        },
        Request::Logs { id, follow, tail } => match head() {
            Ok(h) => {
                let _ = h.stream_logs(id, follow, tail, &mut r, &mut w).await;
                return;
            }
            Err(e) => e,
        },
        Request::SetAutostop {
            idle_minutes,
            down,
            wait_for,
        } => match head() {
            Ok(h) => {
                h.set_autostop(idle_minutes, down, wait_for);
                Reply::Ok
            }
            Err(e) => e,
        },
        Request::Exec(spec) => {
            inner.node.serve_exec(spec, &mut r, &mut w).await;
            return;
        }
        Request::Kill { job_id } => {
            inner.node.kill_job(job_id);
            Reply::Ok
        }
        Request::Shutdown => {
            let _ = write_line(&mut w, &Reply::Ok).await;
            inner.stop.cancel();
            return;
        }
    };
    let _ = write_line(&mut w, &reply).await;
}

fn error(message: String) -> Reply {
    Reply::Error { message }
}
