//! Submit → RUNNING latency on a one-node head agent (loopback), as `sky exec` sees it: the
//! time from sending `Submit` until a `Queue` reply shows the job RUNNING (or later); and the
//! whole round trip of a short job, from `Submit` until its record says SUCCEEDED (what
//! `sky exec` followed by `sky logs` waits for). The integration tests assert behaviour only;
//! these timings live here.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sky_agent::{
    Agent, AgentClient, AgentConfig, ClusterInfo, JobSpec, JobStatus, NodeInfo, Token,
};

fn submit_to_running(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = rt.block_on(async {
        let cluster = ClusterInfo {
            name: "bench".into(),
            cloud: "local".into(),
            region: "local".into(),
            zone: None,
            nodes: vec![NodeInfo::new(0, "127.0.0.1", None)],
        };
        let token = Token::generate().unwrap();
        let mut cfg = AgentConfig::head(dir.path(), "127.0.0.1:0".parse().unwrap(), cluster);
        cfg.token = Some(token.clone());
        let agent = Agent::bind(cfg).await.unwrap();
        let addr = agent.local_addr();
        tokio::spawn(agent.run(None));
        AgentClient::connect(addr, token).await.unwrap()
    });
    let spec = JobSpec {
        run: Some("true".into()),
        ..JobSpec::default()
    };
    let mut group = c.benchmark_group("agent");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("submit_to_running", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let id = client.submit(&spec).await.unwrap();
                    loop {
                        let jobs = client.queue_filtered(true, true, None).await.unwrap();
                        match jobs.iter().find(|j| j.id == id) {
                            Some(j) if j.status < JobStatus::Running => {}
                            _ => break, // RUNNING, or already finished (dropped by skip_finished)
                        }
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    });
    group.bench_function("submit_to_succeeded", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let id = client.submit(&spec).await.unwrap();
                    loop {
                        let j = client.job(id).await.unwrap().expect("the job exists");
                        if j.status.is_terminal() {
                            assert_eq!(j.status, JobStatus::Succeeded, "{j:?}");
                            break;
                        }
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    });
    group.finish();
}

criterion_group!(benches, submit_to_running);
criterion_main!(benches);
