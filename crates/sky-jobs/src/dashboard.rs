//! The managed-jobs dashboard: a small HTTP app (axum, HTTP/1) the controller daemon serves on
//! loopback. `GET /?token=T` answers the page (one self-contained HTML file, no external
//! assets) and sets the token as an `HttpOnly` cookie; the page polls `GET /api/jobs` every
//! 2 s and shows a job's logs from `GET /api/jobs/{id}/logs?task=N` (or `&controller=1`).
//! Every route refuses a request that carries neither the token (query `token=`) nor the
//! cookie.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{Controller, JobId, QueueQuery};

/// The page (inline CSS and JS).
const PAGE: &str = include_str!("dashboard.html");
/// The cookie that carries the token after the first visit.
pub const COOKIE: &str = "sky_jobs_token";
/// At most this much of the end of a log is returned.
const LOG_TAIL_BYTES: u64 = 512 * 1024;

#[derive(Clone)]
struct App {
    ctrl: Arc<Controller>,
    token: Arc<str>,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    token: Option<String>,
    #[serde(default)]
    task: u32,
    #[serde(default)]
    controller: Option<String>,
}

/// Equal-time comparison (the token is a secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

impl App {
    fn authorized(&self, query: Option<&str>, headers: &HeaderMap) -> bool {
        query.is_some_and(|q| same(q, &self.token))
            || cookie_token(headers).is_some_and(|c| same(&c, &self.token))
    }
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "unauthorized: open the URL `sky jobs dashboard` prints (it carries the token)\n",
    )
        .into_response()
}

async fn page(State(app): State<App>, Query(q): Query<TokenQuery>, headers: HeaderMap) -> Response {
    if !app.authorized(q.token.as_deref(), &headers) {
        return refused();
    }
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        app.token
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn server_error(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{e}\n"),
    )
        .into_response()
}

async fn jobs(State(app): State<App>, Query(q): Query<TokenQuery>, headers: HeaderMap) -> Response {
    if !app.authorized(q.token.as_deref(), &headers) {
        return refused();
    }
    let query = QueueQuery {
        all_users: true,
        skip_finished: false,
        user: None,
        ids: Vec::new(),
    };
    match app.ctrl.queue(&query).await {
        Ok(list) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(list)).into_response(),
        Err(e) => server_error(e),
    }
}

/// The last [`LOG_TAIL_BYTES`] of a file ("" when it does not exist yet).
async fn tail(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata().await?.len();
    if len > LOG_TAIL_BYTES {
        f.seek(std::io::SeekFrom::Start(len - LOG_TAIL_BYTES))
            .await?;
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).await?;
    Ok(buf)
}

async fn logs(
    State(app): State<App>,
    Path(id): Path<JobId>,
    Query(q): Query<LogQuery>,
    headers: HeaderMap,
) -> Response {
    if !app.authorized(q.token.as_deref(), &headers) {
        return refused();
    }
    let job = match app.ctrl.job(id).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                format!("managed job {id} not found\n"),
            )
                .into_response();
        }
        Err(e) => return server_error(e),
    };
    let controller = q.controller.as_deref().is_some_and(|c| c != "0");
    if !controller && !job.tasks.iter().any(|t| t.index == q.task) {
        return (
            StatusCode::NOT_FOUND,
            format!("managed job {id} has no task {}\n", q.task),
        )
            .into_response();
    }
    let path = if controller {
        app.ctrl.controller_log_path(id)
    } else {
        app.ctrl.log_path(id, q.task)
    };
    match tail(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            String::from_utf8_lossy(&bytes).into_owned(),
        )
            .into_response(),
        Err(e) => server_error(format!("read {}: {e}", path.display())),
    }
}

/// The dashboard's routes over `ctrl`, guarded by `token`.
pub fn router(ctrl: Arc<Controller>, token: String) -> Router {
    let app = App {
        ctrl,
        token: token.into(),
    };
    Router::new()
        .route("/", get(page))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}/logs", get(logs))
        .with_state(app)
}

/// Serves the dashboard on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctrl: Arc<Controller>,
    token: String,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(ctrl, token))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_cookie_and_comparison() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sky_jobs_token=s3cret; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("s3cret"));
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cret", "s3creT"));
        assert!(!same("s3cret", "s3cre"));
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
