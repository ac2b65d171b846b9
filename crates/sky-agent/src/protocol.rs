//! Wire protocol (version 3): newline-delimited JSON over TCP, one request per connection.
//!
//! The client first writes the token line `{"token":"<cluster token>"}\n` (at most [`PREAMBLE_MAX_BYTES`] bytes with its newline), then one [`Request`] line
//! (`{"op":"ping"}\n`, at most [`MAX_LINE_BYTES`] bytes). The agent reads no more than the
//! token line until it has checked the token: a connection whose token line is too long, not
//! JSON, or not complete within [`PREAMBLE_TIMEOUT`] gets one `error` line and is closed, and
//! so is one with the wrong token (`unauthorized`); nothing is done. At most
//! [`MAX_PENDING_CONNECTIONS`] connections may be waiting for their token line: a new one
//! closes the oldest. A request line over the limit gets an `error` line naming the limit. The
//! client must not half-close its write side (a worker reads EOF on an `Exec` connection as
//! "the head is gone" and kills the process). The agent answers with one or more [`Reply`]
//! lines and closes the connection. Any failure is a single `{"kind":"error","message":...}`
//! line.
//!
//! [`read_request`] is the agent's decoder; [`encode_request`] the client's encoder.
//! Version 2 sent the token beside the `op` on a single line; a version-3 agent answers such a
//! line with an error naming the versions.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};

use crate::{AgentError, Token};

/// Longest request line the agent accepts after the token (a job spec with a large inline
/// script fits easily), and the longest reply line the client accepts.
pub const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// Longest token line (with its newline) the agent reads before checking the token.
pub const PREAMBLE_MAX_BYTES: usize = 512;

/// How long the agent waits for a connection's complete token line (default of
/// [`AgentConfig::preamble_timeout`](crate::AgentConfig::preamble_timeout)).
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections may be waiting for their token line at once (default of
/// [`AgentConfig::max_pending_connections`](crate::AgentConfig::max_pending_connections));
/// one more closes the oldest. Authenticated connections do not count.
pub const MAX_PENDING_CONNECTIONS: usize = 256;

/// Protocol version reported by `Ping`.
pub const PROTOCOL_VERSION: u32 = 3;

/// A request: the line a client sends after the token line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Replies `pong`.
    Ping,
    /// Head only. Queues a job; replies `submitted`.
    Submit(JobSpec),
    /// Head only. Replies `jobs` (ascending id).
    Queue {
        /// All users' jobs (the agent keeps no per-caller identity; see `user`).
        #[serde(default)]
        all: bool,
        /// Leave out jobs in a terminal state.
        #[serde(default)]
        skip_finished: bool,
        /// Only this user's jobs (ignored when `all`).
        #[serde(default)]
        user: Option<String>,
    },
    /// Head only. Cancels pending and running jobs; replies `cancelled` once their processes
    /// are gone.
    Cancel {
        #[serde(default)]
        ids: Vec<u64>,
        /// Every non-terminal job.
        #[serde(default)]
        all: bool,
    },
    /// Head only. Streams `log` lines of the job's `run.log` (the latest job when `id` is
    /// absent), then one `log_end`. With `follow`, streams until the job is terminal.
    Logs {
        #[serde(default)]
        id: Option<u64>,
        #[serde(default)]
        follow: bool,
        /// Start with the last `tail` lines instead of the whole file.
        #[serde(default)]
        tail: Option<usize>,
    },
    /// Head only. `idle_minutes < 0` cancels autostop. Replies `ok`.
    SetAutostop {
        idle_minutes: i64,
        #[serde(default)]
        down: bool,
        #[serde(default)]
        wait_for: WaitFor,
    },
    /// Head → node: run one rank's script here. Replies `started`, `output`*, `exited`.
    Exec(ExecSpec),
    /// Head → node: kill every process of the job on this node (SIGTERM, SIGKILL after a
    /// grace). Replies `ok`.
    Kill { job_id: u64 },
    /// Stops the agent (running job processes are left alone). Replies `ok`.
    Shutdown,
}

/// The first line of a connection as the agent reads it: the cluster token (a missing one is
/// empty, hence wrong). `op` is only there to recognise a version-2 client, which put the
/// request on the same line.
#[derive(Deserialize)]
struct Preamble {
    #[serde(default)]
    token: String,
    #[serde(default)]
    op: Option<serde::de::IgnoredAny>,
}

/// One reply line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Pong {
        version: u32,
        rank: u32,
        head: bool,
    },
    Ok,
    Submitted {
        job_id: u64,
    },
    Jobs {
        jobs: Vec<JobRecord>,
    },
    Cancelled {
        ids: Vec<u64>,
    },
    /// A chunk of a job's log (lossy UTF-8; chunks never split a character).
    Log {
        data: String,
    },
    /// Last line of a `Logs` reply: the job's status when the stream ended.
    LogEnd {
        job_id: u64,
        status: JobStatus,
        exit_codes: Vec<i32>,
    },
    /// `Exec`: the process started (its pid is also its process group id).
    Started {
        pid: u32,
    },
    /// `Exec`: a chunk of stdout+stderr, merged in order.
    Output {
        data: String,
    },
    /// `Exec`: the process ended (signals as 128+n; -1 when it could not run).
    Exited {
        code: i32,
    },
    Error {
        message: String,
    },
}

/// What the head should run. Resource demands are per node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    pub name: Option<String>,
    pub user: String,
    pub setup: Option<String>,
    pub run: Option<String>,
    pub envs: Vec<(String, String)>,
    pub num_nodes: u32,
    /// `("H100", 4.0)`; fractional counts below 1 share a device.
    pub accelerators: Option<(String, f64)>,
    /// vCPUs per node; default 0.5 (SkyPilot's per-job demand).
    pub cpus: Option<f64>,
    /// Run `setup` on every node before `run` (`--no-setup` clears it).
    pub run_setup: bool,
    /// Keys of `envs` whose values are secrets: the jobs get the real values, but the head
    /// never writes them to disk (its job table stores `<redacted>`) nor to its logs.
    #[serde(default)]
    pub secret_keys: Vec<String>,
}

impl Default for JobSpec {
    fn default() -> Self {
        Self {
            name: None,
            user: String::new(),
            setup: None,
            run: None,
            envs: Vec::new(),
            num_nodes: 1,
            accelerators: None,
            cpus: None,
            run_setup: true,
            secret_keys: Vec::new(),
        }
    }
}

/// What the job table on disk stores instead of a secret's value.
pub(crate) const REDACTED: &str = "<redacted>";

impl JobSpec {
    /// Whether the env `key` is a secret.
    fn is_secret(&self, key: &str) -> bool {
        self.secret_keys.iter().any(|k| k == key)
    }

    /// This spec with the values of its secret envs replaced by `<redacted>`.
    pub(crate) fn redacted(&self) -> JobSpec {
        let mut spec = self.clone();
        for (k, v) in &mut spec.envs {
            if self.is_secret(k) {
                *v = REDACTED.to_string();
            }
        }
        spec
    }
}

/// Head → node: one rank's process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub job_id: u64,
    pub rank: u32,
    pub script: String,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// When set, the node also appends the output to `~/sky_logs/<log_name>` on itself.
    #[serde(default)]
    pub log_name: Option<String>,
}

/// Job states, in SkyPilot's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Init,
    Pending,
    SettingUp,
    Running,
    Succeeded,
    Failed,
    FailedSetup,
    FailedDriver,
    Cancelled,
}

impl JobStatus {
    /// SkyPilot's name (`SETTING_UP`, `FAILED_DRIVER`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::Pending => "PENDING",
            Self::SettingUp => "SETTING_UP",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::FailedSetup => "FAILED_SETUP",
            Self::FailedDriver => "FAILED_DRIVER",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Self::Init | Self::Pending | Self::SettingUp | Self::Running
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `wait_for` of autostop: what counts as activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    #[default]
    JobsAndSsh,
    Jobs,
    None,
}

/// A row of the job table. Times are Unix seconds (fractional).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: u64,
    pub name: Option<String>,
    pub user: String,
    pub submitted_at: f64,
    /// When the job became RUNNING.
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub status: JobStatus,
    /// One per rank (rank order) of the phase that ended the job; empty when nothing ran.
    pub exit_codes: Vec<i32>,
    /// Absolute path of `~/sky_logs/sky-<timestamp>` on the head.
    pub log_dir: String,
    /// SkyPilot-style, e.g. `2x[H100:4]` or `1x[CPU:0.5]`.
    pub resources: String,
    #[serde(default = "one")]
    pub num_nodes: u32,
}

fn one() -> u32 {
    1
}

/// Reads one `\n`-terminated reply line (without the newline). `Ok(None)` at a clean EOF.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let n = reader
        .take(MAX_LINE_BYTES)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if n as u64 >= MAX_LINE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line longer than the protocol limit",
        ));
    }
    Ok(Some(buf))
}

/// Writes one value as a JSON line.
pub(crate) async fn write_line<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

/// Why the agent refused a connection's request (the message goes back as an `error` line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The connection ended before sending anything (no reply is due).
    #[error("the client closed the connection without sending anything")]
    Closed,
    /// The token line is missing its newline within [`PREAMBLE_MAX_BYTES`].
    #[error(
        "bad request: the first line must be the token line {{\"token\":\"…\"}} of at most {PREAMBLE_MAX_BYTES} bytes (protocol {PROTOCOL_VERSION})"
    )]
    PreambleTooLong,
    /// The token line did not arrive in time.
    #[error("bad request: no complete token line within {0:?}")]
    TimedOut(Duration),
    /// The token line is missing or not this cluster's token.
    #[error(
        "unauthorized: the request does not carry this cluster's token (~/.sky/agent.token on its nodes)"
    )]
    Unauthorized,
    /// The right token, with the request on the same line (protocol version 2).
    #[error(
        "this agent speaks protocol {PROTOCOL_VERSION} (a token line, then the request line) but the client sent a protocol-2 request; use the same sky version on both sides (`sky start` restarts a cluster's agents)"
    )]
    OldProtocol,
    /// The request line is longer than [`MAX_LINE_BYTES`].
    #[error(
        "request too large: the request line is over the agent's limit of {} MiB ({MAX_LINE_BYTES} bytes); put large scripts in a file in the workdir and run that",
        MAX_LINE_BYTES >> 20
    )]
    TooLarge,
    /// The connection ended in the middle of a line.
    #[error("bad request: the connection ended before the {0} did")]
    Truncated(&'static str),
    /// A line is not what the protocol expects.
    #[error("bad request: {0}")]
    Malformed(String),
    #[error("read the request: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the token line of a connection, never more than [`PREAMBLE_MAX_BYTES`] bytes, and
/// checks the token. Returns the bytes that followed the token line in the last read (the
/// start of the request line, for [`read_request_line`]).
pub async fn read_preamble<R: AsyncRead + Unpin>(
    reader: &mut R,
    token: &Token,
) -> Result<Vec<u8>, RequestError> {
    let mut buf = [0u8; PREAMBLE_MAX_BYTES];
    let mut filled = 0;
    let mut scanned = 0;
    let newline = loop {
        if let Some(i) = buf[scanned..filled].iter().position(|&b| b == b'\n') {
            break scanned + i;
        }
        scanned = filled;
        if filled == buf.len() {
            return Err(RequestError::PreambleTooLong);
        }
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(if filled == 0 {
                RequestError::Closed
            } else {
                RequestError::Truncated("token line")
            });
        }
        filled += n;
    };
    let preamble = serde_json::from_slice::<Preamble>(&buf[..newline]).map_err(|e| {
        RequestError::Malformed(format!(
            "the first line must be the token line {{\"token\":\"…\"}}: {e}"
        ))
    })?;
    if !token.matches(&preamble.token) {
        return Err(RequestError::Unauthorized);
    }
    if preamble.op.is_some() {
        return Err(RequestError::OldProtocol);
    }
    Ok(buf[newline + 1..filled].to_vec())
}

/// Reads the request line (after the token line; `start` is what [`read_preamble`] returned)
/// and parses it. Reads at most [`MAX_LINE_BYTES`] + 1 bytes; bytes after the newline are
/// dropped (a client sends nothing after its request).
pub async fn read_request_line<R: AsyncRead + Unpin>(
    reader: &mut R,
    start: Vec<u8>,
) -> Result<Request, RequestError> {
    let limit = usize::try_from(MAX_LINE_BYTES).unwrap_or(usize::MAX);
    let mut line = start;
    let mut scanned = 0;
    let mut chunk = Vec::new();
    let end = loop {
        if let Some(i) = line[scanned..].iter().position(|&b| b == b'\n') {
            break scanned + i;
        }
        scanned = line.len();
        if line.len() > limit {
            return Err(RequestError::TooLarge);
        }
        if chunk.is_empty() {
            chunk = vec![0u8; 64 * 1024];
        }
        let want = (limit + 1 - line.len()).min(chunk.len());
        let n = reader.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(RequestError::Truncated("request line"));
        }
        line.extend_from_slice(&chunk[..n]);
    };
    if end > limit {
        return Err(RequestError::TooLarge);
    }
    serde_json::from_slice(&line[..end]).map_err(|e| RequestError::Malformed(e.to_string()))
}

/// The agent's decoder: [`read_preamble`] then [`read_request_line`] (without the agent's
/// deadline and connection limit, which it applies around `read_preamble`).
pub async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    token: &Token,
) -> Result<Request, RequestError> {
    let start = read_preamble(reader, token).await?;
    read_request_line(reader, start).await
}

/// The client's encoder: the token line and the request line, as sent. Refuses a request
/// line over [`MAX_LINE_BYTES`] ([`AgentError::RequestTooLarge`]) and a token that does not
/// fit the token line.
pub fn encode_request(token: &Token, req: &Request) -> Result<Vec<u8>, AgentError> {
    #[derive(Serialize)]
    struct TokenLine<'a> {
        token: &'a str,
    }
    let mut out = serde_json::to_vec(&TokenLine {
        token: token.expose(),
    })
    .map_err(|e| AgentError::Config(format!("encode the token line: {e}")))?;
    out.push(b'\n');
    if out.len() > PREAMBLE_MAX_BYTES {
        return Err(AgentError::Config(format!(
            "the cluster token is {} bytes, too long for the protocol's {PREAMBLE_MAX_BYTES}-byte token line",
            token.expose().len()
        )));
    }
    let start = out.len();
    serde_json::to_writer(&mut out, req)
        .map_err(|e| AgentError::Config(format!("encode the request: {e}")))?;
    let bytes = (out.len() - start) as u64;
    if bytes > MAX_LINE_BYTES {
        return Err(AgentError::RequestTooLarge {
            op: req.op(),
            bytes,
            limit: MAX_LINE_BYTES,
        });
    }
    out.push(b'\n');
    Ok(out)
}

impl Request {
    /// The `op` tag.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Submit(_) => "submit",
            Self::Queue { .. } => "queue",
            Self::Cancel { .. } => "cancel",
            Self::Logs { .. } => "logs",
            Self::SetAutostop { .. } => "set_autostop",
            Self::Exec(_) => "exec",
            Self::Kill { .. } => "kill",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Splits a byte stream into valid UTF-8 chunks, carrying an incomplete trailing character
/// over to the next chunk (invalid bytes become U+FFFD).
#[derive(Debug, Default)]
pub(crate) struct Utf8Chunker {
    carry: Vec<u8>,
}

impl Utf8Chunker {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let keep = match std::str::from_utf8(&self.carry) {
            Ok(_) => 0,
            Err(e) if e.error_len().is_none() => self.carry.len() - e.valid_up_to(),
            Err(_) => {
                // An invalid sequence somewhere: find an incomplete tail, if any, after it.
                let tail_start = self.carry.len().saturating_sub(3);
                (tail_start..self.carry.len())
                    .find(|&i| {
                        matches!(std::str::from_utf8(&self.carry[i..]), Err(e) if e.error_len().is_none() && e.valid_up_to() == 0)
                    })
                    .map_or(0, |i| self.carry.len() - i)
            }
        };
        let split = self.carry.len() - keep;
        let rest = self.carry.split_off(split);
        let out = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry = rest;
        out
    }

    pub(crate) fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_with_snake_case_tags() {
        let r = Request::Submit(JobSpec {
            run: Some("echo hi".into()),
            accelerators: Some(("H100".into(), 4.0)),
            ..JobSpec::default()
        });
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.starts_with(r#"{"op":"submit""#), "{s}");
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        let q: Request = serde_json::from_str(r#"{"op":"queue"}"#).unwrap();
        assert_eq!(
            q,
            Request::Queue {
                all: false,
                skip_finished: false,
                user: None
            }
        );
        let s: Request = serde_json::from_str(r#"{"op":"submit","run":"x"}"#).unwrap();
        let Request::Submit(spec) = s else { panic!() };
        assert_eq!(spec.num_nodes, 1);
        assert!(spec.run_setup);
    }

    #[test]
    fn status_names_match_skypilot() {
        assert_eq!(
            serde_json::to_string(&JobStatus::FailedDriver).unwrap(),
            "\"FAILED_DRIVER\""
        );
        assert_eq!(JobStatus::SettingUp.to_string(), "SETTING_UP");
        assert!(!JobStatus::Pending.is_terminal());
        assert!(JobStatus::Cancelled.is_terminal());
    }

    #[test]
    fn chunker_never_splits_a_character() {
        let text = "héllo wörld ✓".as_bytes();
        for cut in 0..text.len() {
            let mut c = Utf8Chunker::default();
            let mut out = c.push(&text[..cut]);
            out += &c.push(&text[cut..]);
            out += &c.finish();
            assert_eq!(out, "héllo wörld ✓");
        }
        let mut c = Utf8Chunker::default();
        assert_eq!(c.push(b"a\xffb"), "a\u{fffd}b");
    }
}
