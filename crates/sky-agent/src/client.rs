//! The client side of the protocol (used by `sky-launch` and the CLI).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::protocol::{
    JobRecord, JobSpec, JobStatus, Reply, Request, WaitFor, encode_request, read_line,
};
use crate::{AgentError, Token};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed send, how long to wait for the agent's reply explaining the refusal.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// A handle on one agent. Cheap to clone; every call opens its own connection.
#[derive(Clone, Debug)]
pub struct AgentClient {
    addr: SocketAddr,
    token: Token,
}

/// What `ping` learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    pub version: u32,
    pub rank: u32,
    pub head: bool,
}

/// How a `logs` stream ended: the job's status then (terminal when following).
#[derive(Clone, Debug, PartialEq)]
pub struct LogsEnd {
    pub job_id: u64,
    pub status: JobStatus,
    pub exit_codes: Vec<i32>,
}

/// The reply lines of one request.
#[derive(Debug)]
pub struct ReplyStream {
    addr: SocketAddr,
    reader: BufReader<OwnedReadHalf>,
    _writer: OwnedWriteHalf,
}

impl ReplyStream {
    /// The next reply; `Ok(None)` when the agent closed the connection. An `error` reply
    /// becomes [`AgentError::Remote`].
    pub async fn next(&mut self) -> Result<Option<Reply>, AgentError> {
        let line = read_line(&mut self.reader).await.map_err(|e| {
            AgentError::io(format!("read a reply from the agent at {}", self.addr), e)
        })?;
        let Some(line) = line else { return Ok(None) };
        match serde_json::from_slice::<Reply>(&line) {
            Ok(Reply::Error { message }) => Err(AgentError::Remote(message)),
            Ok(r) => Ok(Some(r)),
            Err(e) => Err(AgentError::Protocol {
                addr: self.addr,
                message: format!("malformed reply: {e}"),
            }),
        }
    }

    async fn one(&mut self) -> Result<Reply, AgentError> {
        self.next().await?.ok_or_else(|| AgentError::Protocol {
            addr: self.addr,
            message: "the agent closed the connection without replying".into(),
        })
    }
}

impl AgentClient {
    /// A client for the agent at `addr` of the cluster whose token is `token`, checked with a
    /// `Ping`.
    pub async fn connect(addr: SocketAddr, token: Token) -> Result<Self, AgentError> {
        let c = Self::new(addr, token);
        c.ping().await?;
        Ok(c)
    }

    /// A client for `addr` without contacting it.
    pub fn new(addr: SocketAddr, token: Token) -> Self {
        Self { addr, token }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request (the token line, then the request line) and returns its reply lines.
    /// A request over the agent's limit is refused before connecting
    /// ([`AgentError::RequestTooLarge`]).
    pub async fn request(&self, req: &Request) -> Result<ReplyStream, AgentError> {
        let bytes = encode_request(&self.token, req)?;
        let ctx = || format!("connect to the agent at {}", self.addr);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| AgentError::io(ctx(), std::io::ErrorKind::TimedOut.into()))?
            .map_err(|e| AgentError::io(ctx(), e))?;
        let _ = stream.set_nodelay(true);
        let (r, mut w) = stream.into_split();
        let mut reader = BufReader::new(r);
        if let Err(e) = w.write_all(&bytes).await {
            // The agent may have refused the request and closed before reading all of it; its
            // reply says why.
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(REFUSAL_WAIT, read_line(&mut reader)).await
                && let Ok(Reply::Error { message }) = serde_json::from_slice(&line)
            {
                return Err(AgentError::Remote(message));
            }
            return Err(AgentError::io(
                format!("send a request to the agent at {}", self.addr),
                e,
            ));
        }
        Ok(ReplyStream {
            addr: self.addr,
            reader,
            _writer: w,
        })
    }

    fn unexpected(&self, r: &Reply) -> AgentError {
        AgentError::Protocol {
            addr: self.addr,
            message: format!("unexpected reply {r:?}"),
        }
    }

    pub async fn ping(&self) -> Result<AgentInfo, AgentError> {
        match self.request(&Request::Ping).await?.one().await? {
            Reply::Pong {
                version,
                rank,
                head,
            } => Ok(AgentInfo {
                version,
                rank,
                head,
            }),
            r => Err(self.unexpected(&r)),
        }
    }

    /// Queues a job; returns its id. A spec whose request would be over the agent's limit
    /// ([`MAX_LINE_BYTES`](crate::protocol::MAX_LINE_BYTES)) is refused without contacting
    /// the agent ([`AgentError::RequestTooLarge`]).
    pub async fn submit(&self, spec: &JobSpec) -> Result<u64, AgentError> {
        match self
            .request(&Request::Submit(spec.clone()))
            .await?
            .one()
            .await?
        {
            Reply::Submitted { job_id } => Ok(job_id),
            r => Err(self.unexpected(&r)),
        }
    }

    /// Every job (finished ones included), ascending id.
    pub async fn queue(&self, all: bool) -> Result<Vec<JobRecord>, AgentError> {
        self.queue_filtered(all, false, None).await
    }

    /// `sky queue -s` / per-user view.
    pub async fn queue_filtered(
        &self,
        all: bool,
        skip_finished: bool,
        user: Option<&str>,
    ) -> Result<Vec<JobRecord>, AgentError> {
        let req = Request::Queue {
            all,
            skip_finished,
            user: user.map(str::to_string),
        };
        match self.request(&req).await?.one().await? {
            Reply::Jobs { jobs } => Ok(jobs),
            r => Err(self.unexpected(&r)),
        }
    }

    /// One job's record.
    pub async fn job(&self, id: u64) -> Result<Option<JobRecord>, AgentError> {
        Ok(self.queue(true).await?.into_iter().find(|j| j.id == id))
    }

    /// Cancels jobs (or every unfinished one); returns the ids it cancelled, once their
    /// processes are gone.
    pub async fn cancel(&self, ids: &[u64], all: bool) -> Result<Vec<u64>, AgentError> {
        let req = Request::Cancel {
            ids: ids.to_vec(),
            all,
        };
        match self.request(&req).await?.one().await? {
            Reply::Cancelled { ids } => Ok(ids),
            r => Err(self.unexpected(&r)),
        }
    }

    /// Streams a job's `run.log` to `sink` (the latest job when `id` is None); with `follow`,
    /// until the job is terminal.
    pub async fn logs(
        &self,
        id: Option<u64>,
        follow: bool,
        tail: Option<usize>,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<LogsEnd, AgentError> {
        let mut s = self.request(&Request::Logs { id, follow, tail }).await?;
        loop {
            match s.one().await? {
                Reply::Log { data } => sink(data.as_bytes()),
                Reply::LogEnd {
                    job_id,
                    status,
                    exit_codes,
                } => {
                    return Ok(LogsEnd {
                        job_id,
                        status,
                        exit_codes,
                    });
                }
                r => return Err(self.unexpected(&r)),
            }
        }
    }

    /// `idle_minutes < 0` cancels autostop.
    pub async fn set_autostop(
        &self,
        idle_minutes: i64,
        down: bool,
        wait_for: WaitFor,
    ) -> Result<(), AgentError> {
        let req = Request::SetAutostop {
            idle_minutes,
            down,
            wait_for,
        };
        match self.request(&req).await?.one().await? {
            Reply::Ok => Ok(()),
            r => Err(self.unexpected(&r)),
        }
    }

    /// Stops the agent (job processes keep running).
    pub async fn shutdown(&self) -> Result<(), AgentError> {
        match self.request(&Request::Shutdown).await?.one().await? {
            Reply::Ok => Ok(()),
            r => Err(self.unexpected(&r)),
        }
    }
}
