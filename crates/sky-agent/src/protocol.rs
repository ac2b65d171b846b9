//! Wire protocol: newline-delimited JSON over TCP, one request per connection.
//!
//! The client writes one [`Request`] line, with the cluster token beside the `op`
//! (`{"token":"…","op":"ping"}`, see [`Envelope`]); a request without the right token gets one
//! `error` line and nothing is done. The client must not half-close its write side (a worker
//! reads EOF on an `Exec` connection as "the head is gone" and kills the process). The agent
//! answers with one or more [`Reply`] lines and closes the connection. Any failure is a single
//! `{"kind":"error","message":...}` line.

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest line either side accepts (a job spec with a large inline script fits easily).
pub const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// Protocol version reported by `Ping`.
pub const PROTOCOL_VERSION: u32 = 2;

/// A request: the first and only line a client sends on a connection.
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

/// A request line as sent: the cluster token and the request's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub token: String,
    #[serde(flatten)]
    pub request: Request,
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
        }
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

/// Reads one `\n`-terminated line (without the newline). `Ok(None)` at a clean EOF.
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
