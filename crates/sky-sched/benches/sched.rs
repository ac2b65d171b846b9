//! One scheduling pass over 100,000 queued jobs on 1,000 nodes (8 × H100, 96 vCPUs each).
//!
//! `fill`: the cluster is idle and the pass starts what fits (about 6,000 jobs) and walks the
//! rest. `steady`: the cluster is full, one job just ended, and the pass walks the whole queue.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sky_sched::{AccSpec, Command, Config, Demand, Event, NodeSpec, Scheduler};

const NODES: usize = 1_000;
const JOBS: u64 = 100_000;

/// A fixed mix: CPU-only, fractional, 1/2/4/8 GPUs, and 2- and 4-node gangs.
fn demand(i: u64) -> Demand {
    let r = i
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        >> 33;
    match r % 10 {
        0 | 1 => Demand::default(),
        2 => Demand::gpus("H100", 0.5),
        3 | 4 => Demand::gpus("H100", 1.0),
        5 => Demand::gpus("H100", 2.0),
        6 => Demand::gpus("H100", 4.0),
        7 => Demand::gpus("H100", 8.0),
        8 => Demand::gpus("H100", 4.0).on_nodes(2),
        _ => Demand::gpus("H100", 8.0).on_nodes(4).with_cpus(8.0),
    }
}

fn queued() -> Scheduler {
    let nodes = (0..NODES)
        .map(|_| NodeSpec::cpus(96.0).with_acc(AccSpec::new("H100", 8.0)))
        .collect();
    let mut s = Scheduler::new(nodes, Config::default());
    for job in 0..JOBS {
        s.apply(
            Event::Submit {
                job,
                demand: demand(job),
            },
            0.0,
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let idle = queued();
    let mut full = idle.clone();
    let started = full.schedule(1.0);
    let first = started
        .iter()
        .find_map(|c| match c {
            Command::Start { job, .. } => Some(*job),
            _ => None,
        })
        .expect("something starts");
    full.apply(Event::Finished { job: first }, 2.0);
    let mut g = c.benchmark_group("sched");
    g.sample_size(20);
    g.bench_function("pass_100k_jobs_1k_nodes_fill", |b| {
        b.iter_batched(
            || idle.clone(),
            |mut s| s.schedule(1.0),
            BatchSize::LargeInput,
        );
    });
    g.bench_function("pass_100k_jobs_1k_nodes_steady", |b| {
        b.iter_batched(
            || full.clone(),
            |mut s| s.schedule(3.0),
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
