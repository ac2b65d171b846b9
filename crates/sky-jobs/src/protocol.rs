//! The jobs controller's wire protocol: the agents' framing (sky-agent's protocol 3) with the
//! controller's own requests.
//!
//! A client connects over TCP, writes the token line `{"token":"<controller token>"}\n` (at
//! most [`PREAMBLE_MAX_BYTES`] bytes), then one [`JobsRequest`] line (at most
//! [`MAX_REQUEST_BYTES`]). The controller checks the token before it reads the request (the
//! check is sky-agent's `read_preamble`), answers with one or more [`JobsReply`] lines
//! (newline-delimited JSON) and closes the connection. Any failure is one `error` line whose
//! `error` names the [`JobsErrorKind`], so the client gives the same exit code as an
//! in-process call would.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

pub use sky_agent::protocol::PREAMBLE_MAX_BYTES;

use crate::model::{
    CancelSelector, JobId, JobSubmission, JobView, JobsError, JobsErrorKind, ManagedJobStatus,
    QueueQuery,
};

/// Reported by `Ping`; a client refuses a controller of another version.
pub const JOBS_PROTOCOL_VERSION: u32 = 1;

/// Longest request line after the token (a pipeline of large tasks fits easily).
pub const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Longest reply line a client accepts (a queue of 10,000 jobs fits).
pub const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// `sky jobs queue`'s filter on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueArgs {
    pub all_users: bool,
    pub skip_finished: bool,
    pub user: Option<String>,
    pub ids: Vec<JobId>,
}

impl From<&QueueArgs> for QueueQuery {
    fn from(q: &QueueArgs) -> Self {
        QueueQuery {
            all_users: q.all_users,
            skip_finished: q.skip_finished,
            user: q.user.clone(),
            ids: q.ids.clone(),
        }
    }
}

/// `sky jobs cancel`'s selector on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CancelArgs {
    pub ids: Vec<JobId>,
    pub name: Option<String>,
    pub all: bool,
    pub user: Option<String>,
}

impl From<&CancelArgs> for CancelSelector {
    fn from(c: &CancelArgs) -> Self {
        CancelSelector {
            ids: c.ids.clone(),
            name: c.name.clone(),
            all: c.all,
            user: c.user.clone(),
        }
    }
}

/// Which log `Logs` streams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogsArgs {
    /// The job (else the latest job named `name`, else the latest job).
    pub id: Option<JobId>,
    pub name: Option<String>,
    /// One task of a pipeline (default: every task in order).
    pub task: Option<u32>,
    /// Stream until the job ends.
    pub follow: bool,
    /// The controller's own events for the job instead of the task's output.
    pub controller: bool,
    /// Only this user's jobs are looked up by name / as "the latest".
    pub user: Option<String>,
}

/// A request: the line a client sends after the token line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum JobsRequest {
    /// Replies `pong`.
    Ping,
    /// Records a job and starts it; replies `submitted`.
    Submit(Box<JobSubmission>),
    /// Replies `jobs` (ascending id).
    Queue(QueueArgs),
    /// Replies `cancelled`.
    Cancel(CancelArgs),
    /// Replies `log` lines, then one `log_end`.
    Logs(LogsArgs),
    /// Replies `url`: the dashboard's address with its token.
    Dashboard,
}

impl JobsRequest {
    /// The `op` tag.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Submit(_) => "submit",
            Self::Queue(_) => "queue",
            Self::Cancel(_) => "cancel",
            Self::Logs(_) => "logs",
            Self::Dashboard => "dashboard",
        }
    }
}

/// One reply line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobsReply {
    Pong {
        version: u32,
        pid: u32,
        active_jobs: usize,
    },
    Submitted {
        id: JobId,
    },
    Jobs {
        jobs: Vec<JobView>,
    },
    Cancelled {
        /// Jobs this request cancelled (or started cancelling).
        ids: Vec<JobId>,
        /// Jobs that had already ended (not an error).
        already_done: Vec<JobId>,
    },
    /// A chunk of a log (lossy UTF-8).
    Log {
        data: String,
    },
    /// The last line of a `Logs` reply: which job, and its status when the stream ended.
    LogEnd {
        id: JobId,
        status: ManagedJobStatus,
        failure_reason: Option<String>,
    },
    Url {
        url: String,
    },
    Error {
        error: String,
        message: String,
    },
}

impl JobsReply {
    /// The `error` line for `e`.
    pub fn error(e: &JobsError) -> Self {
        JobsReply::Error {
            error: kind_name(e.kind).into(),
            message: e.message.clone(),
        }
    }
}

/// The wire name of an error kind.
pub fn kind_name(k: JobsErrorKind) -> &'static str {
    match k {
        JobsErrorKind::InvalidInput => "invalid_input",
        JobsErrorKind::NotFound => "not_found",
        JobsErrorKind::State => "state",
        JobsErrorKind::Io => "io",
        JobsErrorKind::Controller => "controller",
        JobsErrorKind::Driver => "driver",
    }
}

/// The error kind of a wire name (an unknown one is the controller's).
pub fn kind_of(name: &str) -> JobsErrorKind {
    match name {
        "invalid_input" => JobsErrorKind::InvalidInput,
        "not_found" => JobsErrorKind::NotFound,
        "state" => JobsErrorKind::State,
        "io" => JobsErrorKind::Io,
        "driver" => JobsErrorKind::Driver,
        _ => JobsErrorKind::Controller,
    }
}

/// The client's encoder: the token line, then the request line.
pub fn encode_request(token: &str, req: &JobsRequest) -> Result<Vec<u8>, JobsError> {
    #[derive(Serialize)]
    struct TokenLine<'a> {
        token: &'a str,
    }
    let mut out = serde_json::to_vec(&TokenLine { token }).map_err(|e| {
        JobsError::new(
            JobsErrorKind::Controller,
            format!("encode the token line: {e}"),
        )
    })?;
    out.push(b'\n');
    if out.len() > PREAMBLE_MAX_BYTES {
        return Err(JobsError::new(
            JobsErrorKind::Controller,
            format!(
                "the controller token is too long for the protocol's {PREAMBLE_MAX_BYTES}-byte token line"
            ),
        ));
    }
    let start = out.len();
    serde_json::to_writer(&mut out, req).map_err(|e| {
        JobsError::new(
            JobsErrorKind::InvalidInput,
            format!("encode the {} request: {e}", req.op()),
        )
    })?;
    if out.len() - start > MAX_REQUEST_BYTES {
        return Err(JobsError::new(
            JobsErrorKind::InvalidInput,
            format!(
                "the {} request is {} bytes, over the controller's limit of {} MiB; put large files in the workdir instead of the task",
                req.op(),
                out.len() - start,
                MAX_REQUEST_BYTES >> 20
            ),
        ));
    }
    out.push(b'\n');
    Ok(out)
}

/// Reads one newline-terminated line of at most `limit` bytes (the newline excluded), starting
/// with the bytes already read (`start`). `Ok(None)`: the stream ended before any byte.
///
/// Only the line and its newline are taken from `reader`: what follows stays buffered for the
/// next call (a streamed reply sends many lines that arrive together).
pub async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    start: Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let too_long = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line is longer than the limit of {limit} bytes"),
        )
    };
    let mut line = start;
    if let Some(i) = line.iter().position(|&b| b == b'\n') {
        if i > limit {
            return Err(too_long());
        }
        line.truncate(i);
        return Ok(Some(line));
    }
    loop {
        if line.len() > limit {
            return Err(too_long());
        }
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection ended in the middle of a line",
            ));
        }
        let room = limit + 1 - line.len();
        match buf.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                reader.consume(i + 1);
                return Ok(Some(line));
            }
            None => {
                let n = buf.len().min(room);
                line.extend_from_slice(&buf[..n]);
                reader.consume(n);
            }
        }
    }
}

/// Writes one reply line.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    reply: &JobsReply,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_with_the_token_line_first() {
        let req = JobsRequest::Cancel(CancelArgs {
            ids: vec![3, 4],
            ..Default::default()
        });
        let bytes = encode_request("t0k", &req).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("{\"token\":\"t0k\"}"));
        let back: JobsRequest = serde_json::from_str(lines.next().unwrap()).unwrap();
        match back {
            JobsRequest::Cancel(c) => assert_eq!(c.ids, vec![3, 4]),
            other => panic!("{other:?}"),
        }
        assert!(text.contains("\"op\":\"cancel\""), "{text}");
    }

    #[test]
    fn error_kinds_survive_the_wire() {
        for k in [
            JobsErrorKind::InvalidInput,
            JobsErrorKind::NotFound,
            JobsErrorKind::State,
            JobsErrorKind::Io,
            JobsErrorKind::Controller,
            JobsErrorKind::Driver,
        ] {
            assert_eq!(kind_of(kind_name(k)), k);
        }
        assert_eq!(kind_of("something-new"), JobsErrorKind::Controller);
    }

    #[tokio::test]
    async fn lines_over_the_limit_are_refused() {
        let data = b"0123456789\nrest".to_vec();
        let mut r = &data[..];
        let line = read_line_limited(&mut r, Vec::new(), 10).await.unwrap();
        assert_eq!(line.as_deref(), Some(&b"0123456789"[..]));
        let mut r = &data[..];
        let e = read_line_limited(&mut r, Vec::new(), 9).await.unwrap_err();
        assert!(e.to_string().contains("limit of 9"), "{e}");
        let mut r = &b""[..];
        assert!(
            read_line_limited(&mut r, Vec::new(), 9)
                .await
                .unwrap()
                .is_none()
        );
        let mut r = &b"abc"[..];
        assert!(read_line_limited(&mut r, Vec::new(), 9).await.is_err());
    }

    #[tokio::test]
    async fn lines_that_arrive_together_are_all_read() {
        // A streamed reply: many lines in one segment, the last one (the end) included.
        let data = b"{\"a\":1}\n{\"b\":2}\nlast\n".to_vec();
        let mut r = tokio::io::BufReader::new(&data[..]);
        let mut got = Vec::new();
        while let Some(l) = read_line_limited(&mut r, Vec::new(), 64).await.unwrap() {
            got.push(String::from_utf8(l).unwrap());
        }
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}", "last"]);
        // Bytes already read past the preamble start the first line.
        let mut r = &b"est\nnext\n"[..];
        let l = read_line_limited(&mut r, b"requ".to_vec(), 64)
            .await
            .unwrap();
        assert_eq!(l.as_deref(), Some(&b"request"[..]));
        let l = read_line_limited(&mut r, Vec::new(), 64).await.unwrap();
        assert_eq!(l.as_deref(), Some(&b"next"[..]));
    }
}
