//! `cargo xtask bench jobs`: 10,000 concurrent managed jobs held by ONE controller
//! (`sky_jobs::Controller` over [`FakeDriver`] with realistic latencies, SQLite state in a temp
//! dir). Measures the submission rate (through `Controller::submit`), `queue` latency with every
//! job listed (p50 over 20 calls, through `Controller::queue`, once every job is held: launched
//! and RUNNING), and the process's peak RSS (VmHWM). Budgets: RSS < 1 GiB, all submitted in
//! < 60 s, queue < 200 ms. Final line:
//! `jobs=N peak_rss_mib=M submit_per_s=S p50_status_ms=P`.
//!
//! `SKY_JOBS_BENCH_N` changes the job count (default 10,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sky_jobs::fake::{FakeConfig, FakeDriver, FakeOutcome};
use sky_jobs::{
    Controller, ControllerConfig, JobSubmission, ManagedJobStatus, QueueQuery, TaskSubmission,
};

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

fn main() {
    // `cargo bench` passes `--bench`; the libtest-style filter args are ignored.
    let n: usize = std::env::var("SKY_JOBS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().expect("create a temp dir");
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
        home: dir.path().join("jobs"),
        max_concurrent_launches: 512,
        poll_interval: Duration::from_secs(5),
        retry_backoff: (Duration::from_secs(30), Duration::from_secs(300)),
        failure_grace: Duration::from_secs(5),
    };
    let ctrl = Controller::start(cfg, db, driver.clone())
        .await
        .expect("start the controller");

    let t0 = Instant::now();
    for i in 0..n {
        ctrl.submit(submission(i)).await.expect("submit a job");
    }
    let submit_s = t0.elapsed().as_secs_f64();
    let submit_per_s = n as f64 / submit_s;
    println!(
        "submitted {n} jobs in {submit_s:.1} s ({submit_per_s:.0}/s) through Controller::submit; rss {:.0} MiB",
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

    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let jobs = ctrl.queue(&all).await.expect("queue");
        times.push(t.elapsed());
        assert_eq!(jobs.len(), n);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    times.sort();
    let p50 = times[times.len() / 2].as_secs_f64() * 1e3;
    println!(
        "queue with {n} jobs (Controller::queue): p50 {p50:.1} ms, max {:.1} ms",
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    ctrl.shutdown().await;
    let rss = peak_rss_mib();
    println!(
        "jobs={n} peak_rss_mib={rss:.0} submit_per_s={submit_per_s:.0} p50_status_ms={p50:.1}"
    );
}
