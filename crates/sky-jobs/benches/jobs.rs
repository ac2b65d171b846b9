//! `cargo xtask bench jobs`: 10,000 concurrent managed jobs held by ONE controller, measured
//! the way users reach it.
//!
//! The bench process is the controller: `sky_jobs::Controller` over [`FakeDriver`] with
//! realistic latencies (provisioning 2-5 s, probes 5-20 ms; every job runs far longer than the
//! bench), SQLite state in a temp dir, serving the real jobs protocol
//! ([`sky_jobs::server::serve`]) on `127.0.0.1:0` with a fresh token, and announcing itself
//! the way the daemon does: `controller.json` and `controller.token` under
//! `<temp HOME>/.sky-rs/jobs` (where the `sky` CLI looks), its `controller.lock` held so a
//! CLI that missed it could not start a controller of its own there.
//!
//! - `submit_per_s`: all N jobs submitted through [`JobsClient::submit`] (one connection per
//!   request, token first), [`SUBMIT_CONCURRENCY`] in flight at once as many users' CLIs
//!   would (env `SKY_JOBS_BENCH_CONCURRENCY`).
//! - `p50_status_ms`, once every job is launched and RUNNING: the wall time of the real `sky`
//!   binary (env `SKY_JOBS_BENCH_SKY`, which `cargo xtask bench jobs` sets to the release
//!   build) running `sky jobs queue -a` (table; stdout is a pipe, read and discarded) with
//!   HOME at the temp HOME and nothing else in its environment but PATH, median of 20 runs;
//!   every run must list all N jobs. `sky jobs queue -a -o json` is timed the same way and
//!   printed on its own line. Without `SKY_JOBS_BENCH_SKY` (`cargo bench -p sky-jobs --bench
//!   jobs`) the bench says so loudly and times [`JobsClient::queue`] over the protocol
//!   instead; the line before the final one says which was measured.
//!   The protocol alone (`JobsClient::queue`) is timed and printed too, for the breakdown.
//! - `peak_rss_mib`: this process's peak RSS (VmHWM): the controller's. The CLI's own max RSS
//!   for one queue run (GNU time's `%M`, when `/usr/bin/time` exists) is printed apart.
//!
//! Budgets: RSS < 1 GiB, all submitted in < 60 s, queue < 200 ms. Final line:
//! `jobs=N peak_rss_mib=M submit_per_s=S p50_status_ms=P`.
//!
//! `SKY_JOBS_BENCH_N` changes the job count (default 10,000); `SKY_JOBS_BENCH_HOLD_S` keeps
//! the controller serving that many seconds after measuring (to profile the CLI by hand).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sky_agent::Token;
use sky_jobs::fake::{FakeConfig, FakeDriver, FakeOutcome};
use sky_jobs::protocol::QueueArgs;
use sky_jobs::server::{Activity, ServeOptions, serve};
use sky_jobs::{
    Controller, ControllerConfig, ControllerInfo, JobSubmission, JobsClient, ManagedJobStatus,
    QueueQuery, TaskSubmission, daemon,
};
use tokio_util::sync::CancellationToken;

/// Submissions in flight at once (default; env `SKY_JOBS_BENCH_CONCURRENCY`).
const SUBMIT_CONCURRENCY: usize = 16;

/// Timed queue runs (the median is reported).
const QUEUE_RUNS: usize = 20;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn submission(i: usize) -> JobSubmission {
    let yaml = format!(
        "name: train-{i}\nresources:\n  cpus: 1+\n  use_spot: true\nrun: |\n  python train.py --epochs 10\n"
    );
    JobSubmission {
        name: Some(format!("train-{i}")),
        user: "alice".into(),
        tasks: vec![TaskSubmission {
            name: Some("train".into()),
            yaml,
            secrets: vec![],
            requested: "1x[CPU:1+]".into(),
        }],
        strategy: None,
        keep_on_failure: None,
        max_duration: None,
        command_line: "sky jobs launch -n train task.yaml".into(),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: give a whole number")),
        Err(_) => default,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the libtest-style filter args are ignored.
    let n = env_usize("SKY_JOBS_BENCH_N", 10_000);
    let concurrency = env_usize("SKY_JOBS_BENCH_CONCURRENCY", SUBMIT_CONCURRENCY).max(1);
    let sky = std::env::var_os("SKY_JOBS_BENCH_SKY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    match &sky {
        Some(p) => assert!(
            p.is_file(),
            "SKY_JOBS_BENCH_SKY={}: no such file; build it with `cargo build --release -p sky-cli` (or run `cargo xtask bench jobs`, which does)",
            p.display()
        ),
        None => {
            let warn = "!!! SKY_JOBS_BENCH_SKY is not set: p50_status_ms will time JobsClient::queue \
                        over the protocol, NOT the sky CLI (`sky jobs queue -a`). Run \
                        `cargo xtask bench jobs` for the CLI's figure. !!!";
            eprintln!("{warn}");
            println!("{warn}");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    rt.block_on(run(n, concurrency, sky));
}

/// Writes `controller.json` as the daemon does (whole, through a rename, owner-only).
fn write_controller_json(jobs_home: &Path, info: &ControllerInfo) {
    use std::os::unix::fs::PermissionsExt;
    let path = daemon::info_path(jobs_home);
    let tmp = jobs_home.join(".controller.json.bench");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(info).expect("encode controller.json"),
    )
    .expect("write controller.json");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .expect("chmod controller.json");
    std::fs::rename(&tmp, &path).expect("write controller.json");
}

async fn run(n: usize, concurrency: usize, sky: Option<PathBuf>) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    // The CLI's view: HOME=<dir>/home, state dir ~/.sky-rs, jobs home ~/.sky-rs/jobs.
    let home = dir.path().join("home");
    let jobs_home = home.join(".sky-rs").join("jobs");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&jobs_home)
            .expect("create the jobs home");
    }
    // The daemon's lock: a `sky jobs controller run` started by a CLI that did not find this
    // controller would stop at once instead of replacing it.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(daemon::lock_path(&jobs_home))
        .expect("open controller.lock");
    lock.try_lock().expect("lock controller.lock");

    let url = sky_state::StateDb::sqlite_url(&dir.path().join("state.db"));
    let db = sky_state::StateDb::open(&url)
        .await
        .expect("open the state database");
    // Realistic latencies (scale 1): provisioning 2-5 s, probes 5-20 ms; every job runs far
    // longer than the bench, so all n are held at once.
    let driver = Arc::new(FakeDriver::new(FakeConfig {
        default_outcome: FakeOutcome {
            run_for: Duration::from_secs(3600),
            exit_code: 0,
            preempt_after: None,
        },
        ..FakeConfig::default()
    }));
    let cfg = ControllerConfig {
        home: jobs_home.clone(),
        max_concurrent_launches: 512,
        poll_interval: Duration::from_secs(5),
        retry_backoff: (Duration::from_secs(30), Duration::from_secs(300)),
        failure_grace: Duration::from_secs(5),
    };

    // Wired as `sky_jobs::daemon::run` does: token file, listener, controller, server, then
    // controller.json.
    let token = Token::generate().expect("generate the controller token");
    let token_file = daemon::token_path(&jobs_home);
    token.save(&token_file).expect("write controller.token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen on 127.0.0.1:0");
    let addr = listener.local_addr().expect("the listening address");
    let ctrl = Controller::start(cfg, db, driver.clone())
        .await
        .expect("start the controller");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        ctrl.clone(),
        ServeOptions {
            token: token.clone(),
            dashboard_url: None,
        },
        Arc::new(Activity::default()),
        shutdown.clone(),
    ));
    let info = ControllerInfo {
        pid: std::process::id(),
        addr,
        dashboard_addr: None,
        token_file,
    };
    write_controller_json(&jobs_home, &info);
    // The client the CLI would make: from controller.json and the token file.
    let loaded = ControllerInfo::load(&daemon::info_path(&jobs_home))
        .expect("read controller.json")
        .expect("controller.json exists");
    let client = JobsClient::from_info(&loaded).expect("a client from controller.json");
    let pong = client.ping().await.expect("ping the controller");
    println!(
        "controller pid {} serving the jobs protocol on {addr} (protocol {}); HOME {}",
        pong.pid,
        pong.version,
        home.display()
    );

    // Submission: `concurrency` clients at once, each one connection per job.
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return ids;
                }
                let id = client
                    .submit(&submission(i))
                    .await
                    .unwrap_or_else(|e| panic!("submit job {i} through the protocol: {e}"));
                ids.push(id);
            }
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await.expect("a submitting task"));
    }
    let submit_s = t0.elapsed().as_secs_f64();
    let submit_per_s = n as f64 / submit_s;
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "every submission got its own job id");
    println!(
        "submitted {n} jobs in {submit_s:.1} s ({submit_per_s:.0}/s) through JobsClient::submit, {concurrency} in flight; rss {:.0} MiB",
        peak_rss_mib()
    );

    // Wait (bounded) until every job is launched and RUNNING: the controller then holds n live
    // jobs, each probed every poll interval.
    let all = QueueQuery {
        all_users: true,
        skip_finished: false,
        user: None,
        ids: vec![],
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let jobs = ctrl.queue(&all).await.expect("queue");
        let running = jobs
            .iter()
            .filter(|j| j.status == ManagedJobStatus::Running)
            .count();
        let failed = jobs.iter().filter(|j| j.status.is_terminal()).count();
        assert_eq!(failed, 0, "a job ended during the bench");
        if running == n {
            break;
        }
        if Instant::now() > deadline {
            println!("only {running}/{n} jobs RUNNING after 240 s; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "{} clusters up after {:.1} s; fake stats {:?}",
        driver.stats().live,
        t0.elapsed().as_secs_f64(),
        driver.stats()
    );

    let (p50, measured) = match &sky {
        Some(sky) => {
            let table = time_cli(sky, &home, &info, n, false).await;
            let json = time_cli(sky, &home, &info, n, true).await;
            println!(
                "sky jobs queue -a -o json with {n} jobs (sky CLI): p50 {:.1} ms, max {:.1} ms",
                json.p50_ms, json.max_ms
            );
            println!(
                "sky jobs queue -a with {n} jobs (sky CLI, table): p50 {:.1} ms, max {:.1} ms",
                table.p50_ms, table.max_ms
            );
            let protocol = time_protocol(&client, n).await;
            println!(
                "queue with {n} jobs (JobsClient::queue, the protocol alone): p50 {:.1} ms, max {:.1} ms",
                protocol.p50_ms, protocol.max_ms
            );
            let (sky2, home2) = (sky.clone(), home.clone());
            if let Ok(Some(mib)) =
                tokio::task::spawn_blocking(move || cli_max_rss_mib(&sky2, &home2)).await
            {
                println!("sky CLI max RSS for one `sky jobs queue -a`: {mib:.0} MiB");
            }
            hold(&home).await;
            (
                table.p50_ms,
                format!(
                    "p50_status_ms measured: the sky CLI `{} jobs queue -a` (table, stdout to a pipe), median of {QUEUE_RUNS} runs",
                    sky.display()
                ),
            )
        }
        None => {
            let s = time_protocol(&client, n).await;
            println!(
                "queue with {n} jobs (JobsClient::queue): p50 {:.1} ms, max {:.1} ms",
                s.p50_ms, s.max_ms
            );
            hold(&home).await;
            (
                s.p50_ms,
                format!(
                    "p50_status_ms measured: JobsClient::queue over the protocol (NOT the sky CLI: SKY_JOBS_BENCH_SKY is unset), median of {QUEUE_RUNS} calls"
                ),
            )
        }
    };

    shutdown.cancel();
    let _ = server.await;
    ctrl.shutdown().await;
    let _ = std::fs::remove_file(daemon::info_path(&jobs_home));
    drop(lock);
    let rss = peak_rss_mib();
    println!("{measured}");
    println!(
        "jobs={n} peak_rss_mib={rss:.0} submit_per_s={submit_per_s:.0} p50_status_ms={p50:.1}"
    );
}

/// [`QUEUE_RUNS`] timed `JobsClient::queue` calls (all users), each checked to list every job.
async fn time_protocol(client: &JobsClient, n: usize) -> Timings {
    let q = QueueArgs {
        all_users: true,
        ..QueueArgs::default()
    };
    let mut times = Vec::new();
    for _ in 0..QUEUE_RUNS {
        let t = Instant::now();
        let jobs = client.queue(&q).await.expect("queue through the protocol");
        times.push(t.elapsed());
        assert_eq!(jobs.len(), n, "the queue lists every job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    summarize(times)
}

/// With `SKY_JOBS_BENCH_HOLD_S`, keeps the controller serving that long after measuring, to
/// profile the CLI against it by hand (`HOME=<home> sky jobs queue -a`).
async fn hold(home: &Path) {
    let secs = env_usize("SKY_JOBS_BENCH_HOLD_S", 0);
    if secs > 0 {
        println!(
            "holding the controller {secs} s: HOME={} sky jobs queue -a",
            home.display()
        );
        tokio::time::sleep(Duration::from_secs(secs as u64)).await;
    }
}

struct Timings {
    p50_ms: f64,
    max_ms: f64,
}

fn summarize(mut times: Vec<Duration>) -> Timings {
    times.sort();
    Timings {
        p50_ms: times[times.len() / 2].as_secs_f64() * 1e3,
        max_ms: times[times.len() - 1].as_secs_f64() * 1e3,
    }
}

/// Runs `sky jobs queue -a [-o json]` once untimed (checked: it found this controller and
/// listed every job) and [`QUEUE_RUNS`] times timed, each from spawn to exit with its stdout
/// read to the end.
async fn time_cli(sky: &Path, home: &Path, info: &ControllerInfo, n: usize, json: bool) -> Timings {
    let first = cli_queue(sky, home, json).await;
    let listed = if json {
        serde_json::from_slice::<Vec<serde_json::Value>>(&first.stdout)
            .expect("`sky jobs queue -a -o json` prints a JSON array")
            .len()
    } else {
        // Header lines, the column header, then one row per job starting with its id.
        String::from_utf8_lossy(&first.stdout)
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<u64>().is_ok())
            })
            .count()
    };
    assert_eq!(
        listed,
        n,
        "`sky jobs queue -a{}` listed {listed} jobs, not the bench controller's {n}; stderr:\n{}",
        if json { " -o json" } else { "" },
        first.stderr
    );
    // Still this process's controller: the CLI did not start one of its own.
    let now = ControllerInfo::load(&daemon::info_path(&home.join(".sky-rs/jobs")))
        .expect("read controller.json")
        .expect("controller.json exists");
    assert_eq!(
        &now, info,
        "controller.json changed: the CLI started a controller"
    );
    let mut times = Vec::new();
    for _ in 0..QUEUE_RUNS {
        times.push(cli_queue(sky, home, json).await.wall);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    summarize(times)
}

struct CliRun {
    wall: Duration,
    stdout: Vec<u8>,
    stderr: String,
}

/// One `sky jobs queue -a [-o json]` with HOME at `home` and PATH only; panics if it fails.
async fn cli_queue(sky: &Path, home: &Path, json: bool) -> CliRun {
    let sky = sky.to_path_buf();
    let home = home.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(&sky);
        cmd.args(["jobs", "queue", "-a"]);
        if json {
            cmd.args(["-o", "json"]);
        }
        cmd.env_clear()
            .env("HOME", &home)
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let t = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", sky.display()));
        let mut stdout = Vec::new();
        let mut out = child.stdout.take().expect("the child's stdout");
        let mut err = child.stderr.take().expect("the child's stderr");
        // stderr is small; a thread drains it so a chatty CLI cannot block on it.
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        out.read_to_end(&mut stdout).expect("read the CLI's stdout");
        let status = child.wait().expect("wait for the CLI");
        let wall = t.elapsed();
        let stderr = err_reader.join().unwrap_or_default();
        assert!(
            status.success(),
            "`{} jobs queue -a{}` failed ({status}):\n{stderr}",
            sky.display(),
            if json { " -o json" } else { "" }
        );
        CliRun {
            wall,
            stdout,
            stderr,
        }
    })
    .await
    .expect("the CLI run")
}

/// The sky CLI's own max RSS (MiB) for one `sky jobs queue -a`, through GNU time (`%M`), when
/// `/usr/bin/time` exists. Not `getrusage(RUSAGE_CHILDREN)` of the bench: a child spawned
/// with vfork reports the bench's own peak (the address space it had before exec).
fn cli_max_rss_mib(sky: &Path, home: &Path) -> Option<f64> {
    let time = Path::new("/usr/bin/time");
    if !time.is_file() {
        return None;
    }
    let out = home.join("cli-rss.txt");
    let mut cmd = Command::new(time);
    cmd.args(["-f", "%M", "-o"])
        .arg(&out)
        .arg(sky)
        .args(["jobs", "queue", "-a"])
        .env_clear()
        .env("HOME", home)
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let ok = cmd.status().ok()?.success();
    let kib: f64 = std::fs::read_to_string(&out).ok()?.trim().parse().ok()?;
    ok.then_some(kib / 1024.0)
}
