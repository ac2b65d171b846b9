//! Optimizer speed: one task over every bundled catalog, and a 100-task pipeline.

use criterion::{Criterion, criterion_group, criterion_main};
use sky_catalog::{BUNDLED_CLOUDS, Catalog};
use sky_optimizer::{optimize_pipeline, optimize_task};
use sky_spec::{AcceleratorRequest, Pipeline, Quantity, ResourceChoice, Resources, Task};

fn gpu_task(name: &str, count: f64) -> Task {
    Task {
        num_nodes: 1,
        resources: ResourceChoice::Single(Resources {
            accelerators: Some(AcceleratorRequest {
                name: name.into(),
                count,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::bundled();
    c.bench_function("optimize_task_a100_8_all_clouds", |b| {
        let t = gpu_task("A100", 8.0);
        b.iter(|| {
            optimize_task(catalog, std::hint::black_box(&t), &BUNDLED_CLOUDS, &[]).expect("plan")
        })
    });
    c.bench_function("optimize_task_default_cpu_all_clouds", |b| {
        let t = Task::default();
        b.iter(|| {
            optimize_task(catalog, std::hint::black_box(&t), &BUNDLED_CLOUDS, &[]).expect("plan")
        })
    });
    c.bench_function("optimize_task_anyof_spot_all_clouds", |b| {
        let r = Resources {
            accelerators: Some(AcceleratorRequest {
                name: "A100".into(),
                count: 8.0,
            }),
            ..Default::default()
        };
        let t = Task {
            num_nodes: 1,
            resources: ResourceChoice::AnyOf(vec![
                Resources {
                    use_spot: true,
                    ..r.clone()
                },
                r,
            ]),
            ..Default::default()
        };
        b.iter(|| {
            optimize_task(catalog, std::hint::black_box(&t), &BUNDLED_CLOUDS, &[]).expect("plan")
        })
    });
    let kinds = ["A100", "V100", "T4", "L4", "H100"];
    let tasks: Vec<Task> = (0..100)
        .map(|i| {
            let mut t = if i % 3 == 0 {
                Task {
                    num_nodes: 1,
                    resources: ResourceChoice::Single(Resources {
                        cpus: Some(Quantity {
                            value: 8.0,
                            at_least: true,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            } else {
                gpu_task(kinds[i % kinds.len()], 1.0)
            };
            t.outputs = Some((format!("out{i}"), 50.0));
            t
        })
        .collect();
    let p = Pipeline {
        name: Some("bench".into()),
        tasks,
    };
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(20);
    g.bench_function("optimize_pipeline_100_tasks_all_clouds", |b| {
        b.iter(|| {
            optimize_pipeline(catalog, std::hint::black_box(&p), &BUNDLED_CLOUDS, &[])
                .expect("plan")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
