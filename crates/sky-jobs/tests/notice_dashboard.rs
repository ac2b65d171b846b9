//! The dashboard in headless Chromium (Debian's `chromium`): a controller with jobs in
//! different states (over a scripted in-test driver), the page rendered at phone size (390 px);
//! the DOM has a row per job with its status, the screenshot shows each status badge's color;
//! requests without the token are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sky_agent::JobStatus;
use sky_jobs::{
    CancelSelector, ClusterDriver, ClusterHealth, ClusterJob, Controller, ControllerConfig,
    DriverError, DriverLaunch, DriverLaunched, JobSubmission, ManagedJobStatus, Probe, QueueQuery,
    TaskSubmission,
};
use sky_state::StateDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// What each task (by name) does on its cluster.
#[derive(Debug, Default)]
struct Scripted {
    /// cluster name -> task name
    clusters: std::sync::Mutex<BTreeMap<String, String>>,
}

#[async_trait]
impl ClusterDriver for Scripted {
    async fn launch(
        &self,
        req: &DriverLaunch,
        cancel: &CancellationToken,
    ) -> Result<DriverLaunched, DriverError> {
        let name = req.task.name.clone().unwrap_or_default();
        if name == "stuck" {
            // Provisioning that never finishes: the job stays STARTING.
            cancel.cancelled().await;
            return Err(DriverError::new(
                sky_jobs::DriverErrorKind::Cancelled,
                "launch cancelled",
            ));
        }
        self.clusters
            .lock()
            .unwrap()
            .insert(req.cluster.clone(), name);
        Ok(DriverLaunched {
            cloud: "local".into(),
            region: "us-local".into(),
            zone: Some("us-local-a".into()),
            cluster_job_id: 1,
        })
    }

    async fn probe(&self, cluster: &str, _job: u64) -> Result<Probe, DriverError> {
        let name = self.clusters.lock().unwrap().get(cluster).cloned();
        let (status, codes) = match name.as_deref() {
            None => {
                return Ok(Probe {
                    cluster: ClusterHealth::Gone,
                    job: None,
                    preemption_notice: false,
                });
            }
            Some("ok") => (JobStatus::Succeeded, vec![0]),
            Some("bad") => (JobStatus::Failed, vec![1]),
            Some(_) => (JobStatus::Running, Vec::new()),
        };
        Ok(Probe {
            cluster: ClusterHealth::Up,
            job: Some(ClusterJob {
                status,
                exit_codes: codes,
            }),
            preemption_notice: false,
        })
    }

    async fn find_job(&self, cluster: &str, _name: &str) -> Result<Option<u64>, DriverError> {
        Ok(self
            .clusters
            .lock()
            .unwrap()
            .contains_key(cluster)
            .then_some(1))
    }

    async fn cancel_job(&self, _cluster: &str, _job: u64) -> Result<(), DriverError> {
        Ok(())
    }

    async fn down(&self, cluster: &str) -> Result<(), DriverError> {
        self.clusters.lock().unwrap().remove(cluster);
        Ok(())
    }

    async fn stream_logs(
        &self,
        cluster: &str,
        _job: u64,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), DriverError> {
        let _ = std::fs::write(out, format!("hello from {cluster}\n"));
        cancel.cancelled().await;
        Ok(())
    }
}

fn task(name: &str) -> TaskSubmission {
    TaskSubmission {
        name: Some(name.into()),
        yaml: format!("name: {name}\nrun: echo hi\n"),
        secrets: Vec::new(),
        requested: "1x[CPU:1+]".into(),
    }
}

fn job(name: &str, tasks: &[&str]) -> JobSubmission {
    JobSubmission {
        name: Some(name.into()),
        user: "alice".into(),
        tasks: tasks.iter().map(|t| task(t)).collect(),
        strategy: None,
        keep_on_failure: None,
        max_duration: None,
        command_line: format!("sky jobs launch -n {name}"),
    }
}

/// Debian's Chromium: found on PATH, else installed by the project's script. In CI
/// (`SKY_REQUIRE_EMULATORS=1`) a missing Chromium fails the test.
fn chromium() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-chromium.sh");
    let _ = std::process::Command::new("bash").arg(&script).status();
    let found = find();
    if found.is_none() {
        assert!(
            std::env::var("SKY_REQUIRE_EMULATORS").as_deref() != Ok("1"),
            "chromium is missing and {} could not install it (SKY_REQUIRE_EMULATORS=1)",
            script.display()
        );
        eprintln!(
            "SKIPPED dashboard_in_headless_chromium: chromium is missing and {} could not install it",
            script.display()
        );
    }
    found
}

async fn chromium_run(bin: &Path, profile: &Path, extra: &[String], url: &str) -> Vec<u8> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=390,1200",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("chromium did not finish in 180 s")
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A raw HTTP/1.1 GET on loopback: (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// `(id, status)` of every `<tr class="job" ...>` in the dumped DOM.
fn job_rows(dom: &str) -> Vec<(u64, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let i = tag.find(&key)? + key.len();
        Some(tag[i..].split('"').next()?.to_owned())
    };
    dom.split("<tr ")
        .skip(1)
        .filter_map(|rest| {
            let tag = rest.split('>').next()?;
            if !tag.contains("class=\"job") {
                return None;
            }
            Some((
                attr(tag, "data-id")?.parse().ok()?,
                attr(tag, "data-status")?,
            ))
        })
        .collect()
}

/// Pixels of `rgb` (within 8 per channel) in an RGB(A) PNG, and its width.
fn count_color(png_bytes: &[u8], rgb: [u8; 3]) -> (usize, u32) {
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().expect("a PNG screenshot");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("decode the screenshot");
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG color type {other:?}"),
    };
    let n = buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| (0..3).all(|c| p[c].abs_diff(rgb[c]) <= 8))
        .count();
    (n, info.width)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let Some(bin) = chromium() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = ControllerConfig::from_env(tmp.path().join("jobs"), &|_| None);
    cfg.poll_interval = Duration::from_millis(200);
    cfg.failure_grace = Duration::from_millis(200);
    let state = StateDb::open_in_memory().await.unwrap();
    let ctrl = Controller::start(cfg, state, Arc::new(Scripted::default()))
        .await
        .unwrap();
    let ok = ctrl.submit(job("finishes", &["ok"])).await.unwrap();
    let runs = ctrl.submit(job("trains", &["runs"])).await.unwrap();
    let bad = ctrl.submit(job("crashes", &["bad"])).await.unwrap();
    let stuck = ctrl.submit(job("waits", &["stuck"])).await.unwrap();
    let gone = ctrl.submit(job("dropped", &["runs"])).await.unwrap();
    let pipe = ctrl.submit(job("pipeline", &["ok", "runs"])).await.unwrap();
    let want: BTreeMap<u64, ManagedJobStatus> = [
        (ok, ManagedJobStatus::Succeeded),
        (runs, ManagedJobStatus::Running),
        (bad, ManagedJobStatus::Failed),
        (stuck, ManagedJobStatus::Starting),
        (gone, ManagedJobStatus::Cancelled),
        (pipe, ManagedJobStatus::Running),
    ]
    .into();
    let all = QueueQuery {
        all_users: true,
        skip_finished: false,
        user: None,
        ids: Vec::new(),
    };
    // Wait for the running one to run before cancelling it.
    let mut seen = BTreeMap::new();
    let mut cancelled = false;
    for _ in 0..600 {
        seen = ctrl
            .queue(&all)
            .await
            .unwrap()
            .into_iter()
            .map(|j| (j.id, j.status))
            .collect::<BTreeMap<_, _>>();
        if !cancelled && seen.get(&gone) == Some(&ManagedJobStatus::Running) {
            ctrl.cancel(&CancelSelector {
                ids: vec![gone],
                name: None,
                all: false,
                user: None,
            })
            .await
            .unwrap();
            cancelled = true;
        }
        if seen == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen, want,
        "the controller did not reach the scripted states"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = "t0ken-for-the-dashboard-test".to_string();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(sky_jobs::dashboard::serve(
        listener,
        ctrl.clone(),
        token.clone(),
        shutdown.clone(),
    ));

    // Without the token every route refuses; with it (or its cookie) it answers.
    for path in ["/", "/api/jobs", &format!("/api/jobs/{ok}/logs?task=0")] {
        assert_eq!(get(addr, path, None).await.0, 401, "{path}");
        assert_eq!(
            get(addr, path, Some("sky_jobs_token=wrong")).await.0,
            401,
            "{path}"
        );
    }
    let (code, body) = get(addr, &format!("/api/jobs?token={token}"), None).await;
    assert_eq!(code, 200);
    assert!(body.contains("\"trains\""), "{body}");
    let cookie = format!("sky_jobs_token={token}");
    let (code, body) = get(
        addr,
        &format!("/api/jobs/{runs}/logs?task=0"),
        Some(&cookie),
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("hello from"), "{body:?}");
    let (code, _) = get(addr, "/api/jobs/999999/logs?task=0", Some(&cookie)).await;
    assert_eq!(code, 404);

    let url = format!("http://{addr}/?token={token}");
    let profile = tmp.path().join("chromium-profile");
    let dom = String::from_utf8(chromium_run(&bin, &profile, &["--dump-dom".into()], &url).await)
        .unwrap();
    let rows: BTreeMap<u64, String> = job_rows(&dom).into_iter().collect();
    let want_rows: BTreeMap<u64, String> = want
        .iter()
        .map(|(id, s)| (*id, s.as_str().to_string()))
        .collect();
    assert_eq!(rows, want_rows, "job rows in the DOM:\n{dom}");
    // The pipeline lists its two tasks under the job.
    assert_eq!(
        dom.matches(&format!("data-job=\"{pipe}\"")).count(),
        2,
        "{dom}"
    );
    assert!(dom.contains("#RECOVERIES"), "{dom}");

    let shot = tmp.path().join("shot.png");
    chromium_run(
        &bin,
        &profile,
        &[format!("--screenshot={}", shot.display())],
        &url,
    )
    .await;
    let bytes = std::fs::read(&shot).expect("chromium wrote the screenshot");
    if let Ok(keep) = std::env::var("SKY_DASHBOARD_SHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
    // Each status badge's color (dashboard.html) is on screen: the rows were rendered.
    for (status, rgb) in [
        ("SUCCEEDED", [0x00, 0x89, 0x7b]),
        ("RUNNING", [0x2e, 0x7d, 0x32]),
        ("FAILED", [0xd3, 0x2f, 0x2f]),
        ("STARTING", [0x1e, 0x88, 0xe5]),
        ("CANCELLED", [0x6d, 0x4c, 0x41]),
    ] {
        let (n, width) = count_color(&bytes, rgb);
        assert_eq!(width, 390, "phone-sized screenshot");
        assert!(
            n >= 300,
            "{status} badge color {rgb:?}: {n} pixels in the screenshot"
        );
    }
    // A color no status uses is not there (the check can fail).
    assert!(count_color(&bytes, [0xff, 0x00, 0xff]).0 < 10);

    shutdown.cancel();
    server.await.unwrap().unwrap();
    ctrl.shutdown().await;
}
