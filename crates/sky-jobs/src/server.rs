//! The controller's listener: checks each connection's token (sky-agent's preamble check),
//! reads its one request, answers from the [`Controller`].
//!
//! Nobody without the token gets anything done, and nobody can hold the listener: a connection
//! must send its token line within [`PREAMBLE_TIMEOUT`], and at most [`MAX_UNAUTHENTICATED`]
//! connections may be waiting for theirs (more are closed at once).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sky_agent::Token;
use sky_agent::protocol::{RequestError, read_preamble};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::controller::Controller;
use crate::model::{JobId, JobView, JobsError, QueueQuery};
use crate::protocol::{
    JOBS_PROTOCOL_VERSION, JobsReply, JobsRequest, LogsArgs, MAX_REQUEST_BYTES, read_line_limited,
    write_reply,
};

/// How long a connection may take to send its token line.
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections waiting for their token line at once; more are closed.
pub const MAX_UNAUTHENTICATED: usize = 128;

/// How often a followed log is read again when nothing wakes it sooner.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Largest log chunk sent in one `log` line.
const LOG_CHUNK: usize = 64 * 1024;

/// What the daemon's idle shutdown needs to know about the listener: requests in flight and
/// when the last one ended.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last: std::sync::Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    /// Requests being answered now (a followed log counts until it ends).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// How long since the last request ended (or this was made).
    pub fn idle_for(&self) -> Duration {
        self.last.lock().map(|l| l.elapsed()).unwrap_or_default()
    }

    /// Marks now as activity.
    pub fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the listener answers with besides the controller.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub token: Token,
    /// `Dashboard`'s answer (with the token); `None`: no dashboard is served.
    pub dashboard_url: Option<String>,
}

/// Serves the protocol on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ctrl: Arc<Controller>,
    opts: ServeOptions,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
) {
    let waiting = Arc::new(tokio::sync::Semaphore::new(MAX_UNAUTHENTICATED));
    let opts = Arc::new(opts);
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("[sky-jobs] accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = waiting.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let ctrl = ctrl.clone();
        let opts = opts.clone();
        let activity = activity.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            handle(stream, permit, ctrl, opts, activity, shutdown).await;
        });
    }
}

async fn handle(
    stream: TcpStream,
    permit: tokio::sync::OwnedSemaphorePermit,
    ctrl: Arc<Controller>,
    opts: Arc<ServeOptions>,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
) {
    let (mut r, mut w) = stream.into_split();
    let start = match tokio::time::timeout(PREAMBLE_TIMEOUT, read_preamble(&mut r, &opts.token))
        .await
    {
        Err(_) => {
            let e = RequestError::TimedOut(PREAMBLE_TIMEOUT);
            let _ = write_reply(&mut w, &error_reply("unauthorized", e.to_string())).await;
            return;
        }
        Ok(Err(RequestError::Closed)) => return,
        Ok(Err(RequestError::Unauthorized)) => {
            let _ = write_reply(
                &mut w,
                &error_reply(
                    "unauthorized",
                    "unauthorized: the request does not carry the jobs controller's token ($SKY_HOME/jobs/controller.token)",
                ),
            )
            .await;
            return;
        }
        Ok(Err(e)) => {
            let _ = write_reply(&mut w, &error_reply("invalid_input", e.to_string())).await;
            return;
        }
        Ok(Ok(start)) => start,
    };
    drop(permit);
    let _busy = activity.enter();
    let mut r = tokio::io::BufReader::new(r);
    let req = match read_line_limited(&mut r, start, MAX_REQUEST_BYTES).await {
        Ok(Some(line)) => match serde_json::from_slice::<JobsRequest>(&line) {
            Ok(req) => req,
            Err(e) => {
                let _ = write_reply(
                    &mut w,
                    &error_reply("invalid_input", format!("bad request: {e}")),
                )
                .await;
                return;
            }
        },
        Ok(None) => return,
        Err(e) => {
            let _ = write_reply(
                &mut w,
                &error_reply("invalid_input", format!("bad request: {e}")),
            )
            .await;
            return;
        }
    };
    let result = answer(&ctrl, &opts, req, &mut w, &shutdown).await;
    if let Err(e) = result {
        let _ = write_reply(&mut w, &JobsReply::error(&e)).await;
    }
}

fn error_reply(error: &str, message: impl Into<String>) -> JobsReply {
    JobsReply::Error {
        error: error.into(),
        message: message.into(),
    }
}

async fn answer<W: AsyncWrite + Unpin>(
    ctrl: &Arc<Controller>,
    opts: &ServeOptions,
    req: JobsRequest,
    w: &mut W,
    shutdown: &CancellationToken,
) -> Result<(), JobsError> {
    let io = |e: std::io::Error| JobsError::io("write a reply", e);
    match req {
        JobsRequest::Ping => write_reply(
            w,
            &JobsReply::Pong {
                version: JOBS_PROTOCOL_VERSION,
                pid: std::process::id(),
                active_jobs: ctrl.active_jobs(),
            },
        )
        .await
        .map_err(io),
        JobsRequest::Submit(sub) => {
            let id = ctrl.submit(*sub).await?;
            write_reply(w, &JobsReply::Submitted { id })
                .await
                .map_err(io)
        }
        JobsRequest::Queue(q) => {
            let jobs = ctrl.queue(&QueueQuery::from(&q)).await?;
            write_reply(w, &JobsReply::Jobs { jobs }).await.map_err(io)
        }
        JobsRequest::Cancel(c) => {
            // Jobs named by id that had ended already are reported apart (not an error).
            let mut already_done = Vec::new();
            if !c.ids.is_empty() {
                let views = ctrl
                    .queue(&QueueQuery {
                        all_users: true,
                        skip_finished: false,
                        user: None,
                        ids: c.ids.clone(),
                    })
                    .await?;
                already_done = views
                    .iter()
                    .filter(|v| v.status.is_terminal())
                    .map(|v| v.id)
                    .collect();
            }
            let sel = crate::model::CancelSelector::from(&c);
            let ids = ctrl.cancel(&sel).await?;
            let cancelled = ids
                .into_iter()
                .filter(|id| !already_done.contains(id))
                .collect();
            write_reply(
                w,
                &JobsReply::Cancelled {
                    ids: cancelled,
                    already_done,
                },
            )
            .await
            .map_err(io)
        }
        JobsRequest::Logs(args) => stream_logs(ctrl, &args, w, shutdown).await,
        JobsRequest::Dashboard => match &opts.dashboard_url {
            Some(url) => write_reply(w, &JobsReply::Url { url: url.clone() })
                .await
                .map_err(io),
            None => Err(JobsError::new(
                crate::model::JobsErrorKind::Controller,
                "this jobs controller serves no dashboard (it failed to start; see jobs/controller.log)",
            )),
        },
    }
}

/// The job `args` names: its id, else the latest job of that name, else the latest job.
async fn resolve_job(ctrl: &Controller, args: &LogsArgs) -> Result<JobView, JobsError> {
    if let Some(id) = args.id {
        return ctrl.job(id).await?.ok_or_else(|| no_such_job(id));
    }
    let all = ctrl
        .queue(&QueueQuery {
            all_users: args.user.is_none(),
            skip_finished: false,
            user: args.user.clone(),
            ids: Vec::new(),
        })
        .await?;
    let found = match &args.name {
        Some(n) => all.into_iter().rev().find(|j| &j.name == n),
        None => all.into_iter().next_back(),
    };
    found.ok_or_else(|| match &args.name {
        Some(n) => JobsError::not_found(format!(
            "no managed job named `{n}`; `sky jobs queue` lists the jobs"
        )),
        None => JobsError::not_found("there is no managed job yet; `sky jobs launch` starts one"),
    })
}

fn no_such_job(id: JobId) -> JobsError {
    JobsError::not_found(format!(
        "no managed job with id {id}; `sky jobs queue` lists the jobs"
    ))
}

/// Streams a job's kept logs: each task's run log in order (or one task's), or the
/// controller's events for the job; with `follow`, until each is finished.
async fn stream_logs<W: AsyncWrite + Unpin>(
    ctrl: &Arc<Controller>,
    args: &LogsArgs,
    w: &mut W,
    shutdown: &CancellationToken,
) -> Result<(), JobsError> {
    let job = resolve_job(ctrl, args).await?;
    let id = job.id;
    let mut changes = ctrl.changes();
    // (path, task index) in the order they are streamed; `None`: the controller's log.
    let parts: Vec<Option<u32>> = if args.controller {
        vec![None]
    } else if let Some(t) = args.task {
        if !job.tasks.iter().any(|x| x.index == t) {
            return Err(JobsError::invalid(format!(
                "managed job {id} has no task {t} (it has {})",
                job.tasks.len()
            )));
        }
        vec![Some(t)]
    } else {
        job.tasks.iter().map(|t| Some(t.index)).collect()
    };
    let mut last = job;
    for part in parts {
        let path = match part {
            Some(t) => ctrl.log_path(id, t),
            None => ctrl.controller_log_path(id),
        };
        let mut offset = 0u64;
        loop {
            // Whether this part is finished, read before the file so nothing written before
            // the end is missed.
            let view = ctrl.job(id).await?.ok_or_else(|| no_such_job(id))?;
            let finished = match part {
                Some(t) => {
                    view.tasks
                        .iter()
                        .find(|x| x.index == t)
                        .is_none_or(|x| x.status.is_terminal())
                        || view.status.is_terminal()
                }
                None => view.status.is_terminal(),
            };
            last = view;
            offset = send_from(&path, offset, w).await?;
            if !args.follow || finished {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    }
    write_reply(
        w,
        &JobsReply::LogEnd {
            id,
            status: last.status,
            failure_reason: last.failure_reason.clone(),
        },
    )
    .await
    .map_err(|e| JobsError::io("write a reply", e))
}

/// Sends what `path` holds from `offset` on (a missing file holds nothing yet) as `log`
/// lines; returns the new offset. A chunk ends at a character boundary where it can.
async fn send_from<W: AsyncWrite + Unpin>(
    path: &Path,
    offset: u64,
    w: &mut W,
) -> Result<u64, JobsError> {
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => return Err(JobsError::io(&format!("read {}", path.display()), e)),
    };
    f.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| JobsError::io(&format!("read {}", path.display()), e))?;
    let mut offset = offset;
    let mut buf = vec![0u8; LOG_CHUNK];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| JobsError::io(&format!("read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        carry.extend_from_slice(&buf[..n]);
        let valid = match std::str::from_utf8(&carry) {
            Ok(_) => carry.len(),
            // An incomplete character at the end waits for the next read.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => carry.len(),
        };
        if valid > 0 {
            let data = String::from_utf8_lossy(&carry[..valid]).into_owned();
            write_reply(w, &JobsReply::Log { data })
                .await
                .map_err(|e| JobsError::io("write a reply", e))?;
            offset += valid as u64;
            carry.drain(..valid);
        }
    }
    Ok(offset)
}
