//! The client of the controller's protocol (the CLI's side): one connection per request.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::model::{JobId, JobSubmission, JobView, JobsError, JobsErrorKind, ManagedJobStatus};
use crate::protocol::{
    CancelArgs, JOBS_PROTOCOL_VERSION, JobsReply, JobsRequest, LogsArgs, MAX_REPLY_BYTES,
    QueueArgs, encode_request, kind_of, read_line_limited,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a controller writes to `$SKY_HOME/jobs/controller.json` once it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerInfo {
    pub pid: u32,
    /// The protocol's address.
    pub addr: SocketAddr,
    /// The dashboard's address (none when it could not be served).
    #[serde(default)]
    pub dashboard_addr: Option<SocketAddr>,
    /// The 0600 file holding the token.
    pub token_file: std::path::PathBuf,
}

impl ControllerInfo {
    /// Reads `controller.json`; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<ControllerInfo>, JobsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                JobsError::new(
                    JobsErrorKind::Controller,
                    format!(
                        "the controller file {} is not valid ({e}); remove it and retry",
                        path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(JobsError::new(
                JobsErrorKind::Io,
                format!("failed to read {}: {e}", path.display()),
            )),
        }
    }
}

/// What `ping` learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerStatus {
    pub version: u32,
    pub pid: u32,
    pub active_jobs: usize,
}

/// How a `logs` stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogsEnded {
    pub id: JobId,
    pub status: ManagedJobStatus,
    pub failure_reason: Option<String>,
}

/// A handle on one controller. Cheap to clone; every call opens its own connection.
#[derive(Clone)]
pub struct JobsClient {
    addr: SocketAddr,
    token: String,
}

impl std::fmt::Debug for JobsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsClient")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The reply lines of one request.
#[derive(Debug)]
pub struct JobsReplies {
    addr: SocketAddr,
    reader: BufReader<OwnedReadHalf>,
    _writer: OwnedWriteHalf,
}

fn unreachable_err(addr: SocketAddr, what: &str, e: impl std::fmt::Display) -> JobsError {
    JobsError::new(
        JobsErrorKind::Controller,
        format!("failed to {what} the jobs controller at {addr}: {e}"),
    )
}

impl JobsReplies {
    /// The next reply; `Ok(None)` when the controller closed the connection. An `error` line
    /// becomes a [`JobsError`] of its kind.
    pub async fn next(&mut self) -> Result<Option<JobsReply>, JobsError> {
        let Some(line) = self.next_line().await? else {
            return Ok(None);
        };
        self.parse(&line).map(Some)
    }

    /// The next reply line as sent; `Ok(None)` when the controller closed the connection.
    async fn next_line(&mut self) -> Result<Option<Vec<u8>>, JobsError> {
        read_line_limited(&mut self.reader, Vec::new(), MAX_REPLY_BYTES)
            .await
            .map_err(|e| unreachable_err(self.addr, "read a reply from", e))
    }

    fn parse(&self, line: &[u8]) -> Result<JobsReply, JobsError> {
        match serde_json::from_slice::<JobsReply>(line) {
            Ok(JobsReply::Error { error, message }) => {
                Err(JobsError::new(kind_of(&error), message))
            }
            Ok(r) => Ok(r),
            Err(e) => Err(unreachable_err(
                self.addr,
                "understand",
                format!("malformed reply: {e}"),
            )),
        }
    }

    async fn one(&mut self) -> Result<JobsReply, JobsError> {
        self.next().await?.ok_or_else(|| {
            unreachable_err(
                self.addr,
                "get an answer from",
                "it closed the connection without replying",
            )
        })
    }
}

impl JobsClient {
    /// A client for the controller at `addr` whose token is `token`, without contacting it.
    pub fn new(addr: SocketAddr, token: impl Into<String>) -> Self {
        Self {
            addr,
            token: token.into(),
        }
    }

    /// A client for the controller `controller.json` describes (its token read from its file).
    pub fn from_info(info: &ControllerInfo) -> Result<Self, JobsError> {
        let token = std::fs::read_to_string(&info.token_file).map_err(|e| {
            JobsError::new(
                JobsErrorKind::Controller,
                format!(
                    "failed to read the controller token {}: {e}",
                    info.token_file.display()
                ),
            )
        })?;
        Ok(Self::new(info.addr, token.trim()))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request (token line, request line) and returns its reply lines.
    pub async fn request(&self, req: &JobsRequest) -> Result<JobsReplies, JobsError> {
        let bytes = encode_request(&self.token, req)?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| unreachable_err(self.addr, "connect to", "timed out"))?
            .map_err(|e| unreachable_err(self.addr, "connect to", e))?;
        let _ = stream.set_nodelay(true);
        let (r, mut w) = stream.into_split();
        w.write_all(&bytes)
            .await
            .map_err(|e| unreachable_err(self.addr, "send a request to", e))?;
        Ok(JobsReplies {
            addr: self.addr,
            reader: BufReader::new(r),
            _writer: w,
        })
    }

    fn unexpected(&self, r: &JobsReply) -> JobsError {
        unreachable_err(self.addr, "understand", format!("unexpected reply {r:?}"))
    }

    /// Checks the controller answers with this token and speaks this protocol version.
    pub async fn ping(&self) -> Result<ControllerStatus, JobsError> {
        match self.request(&JobsRequest::Ping).await?.one().await? {
            JobsReply::Pong {
                version,
                pid,
                active_jobs,
            } => {
                if version != JOBS_PROTOCOL_VERSION {
                    return Err(JobsError::new(
                        JobsErrorKind::Controller,
                        format!(
                            "the jobs controller at {} speaks protocol {version}, this sky speaks {JOBS_PROTOCOL_VERSION}; run the same sky version on both sides",
                            self.addr
                        ),
                    ));
                }
                Ok(ControllerStatus {
                    version,
                    pid,
                    active_jobs,
                })
            }
            r => Err(self.unexpected(&r)),
        }
    }

    pub async fn submit(&self, sub: &JobSubmission) -> Result<JobId, JobsError> {
        match self
            .request(&JobsRequest::Submit(Box::new(sub.clone())))
            .await?
            .one()
            .await?
        {
            JobsReply::Submitted { id } => Ok(id),
            r => Err(self.unexpected(&r)),
        }
    }

    pub async fn queue(&self, q: &QueueArgs) -> Result<Vec<JobView>, JobsError> {
        /// The `jobs` reply decoded straight into its list: the tagged enum would buffer all
        /// of it first (serde's internally tagged enums), a third of the time with 10,000 jobs.
        #[derive(serde::Deserialize)]
        struct JobsLine {
            kind: String,
            jobs: Vec<JobView>,
        }
        let mut s = self.request(&JobsRequest::Queue(q.clone())).await?;
        let line = s.next_line().await?.ok_or_else(|| {
            unreachable_err(
                self.addr,
                "get an answer from",
                "it closed the connection without replying",
            )
        })?;
        if let Ok(l) = serde_json::from_slice::<JobsLine>(&line)
            && l.kind == "jobs"
        {
            return Ok(l.jobs);
        }
        match s.parse(&line)? {
            JobsReply::Jobs { jobs } => Ok(jobs),
            r => Err(self.unexpected(&r)),
        }
    }

    /// Returns (cancelled, already ended).
    pub async fn cancel(&self, c: &CancelArgs) -> Result<(Vec<JobId>, Vec<JobId>), JobsError> {
        match self
            .request(&JobsRequest::Cancel(c.clone()))
            .await?
            .one()
            .await?
        {
            JobsReply::Cancelled { ids, already_done } => Ok((ids, already_done)),
            r => Err(self.unexpected(&r)),
        }
    }

    /// Streams a log to `sink`; with `follow`, until the job ends.
    pub async fn logs(
        &self,
        args: &LogsArgs,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<LogsEnded, JobsError> {
        let mut s = self.request(&JobsRequest::Logs(args.clone())).await?;
        loop {
            match s.one().await? {
                JobsReply::Log { data } => sink(data.as_bytes()),
                JobsReply::LogEnd {
                    id,
                    status,
                    failure_reason,
                } => {
                    return Ok(LogsEnded {
                        id,
                        status,
                        failure_reason,
                    });
                }
                r => return Err(self.unexpected(&r)),
            }
        }
    }

    /// The dashboard's URL (with its token).
    pub async fn dashboard(&self) -> Result<String, JobsError> {
        match self.request(&JobsRequest::Dashboard).await?.one().await? {
            JobsReply::Url { url } => Ok(url),
            r => Err(self.unexpected(&r)),
        }
    }
}
