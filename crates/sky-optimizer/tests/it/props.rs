//! Invariants: nothing feasible is cheaper than the chosen launchable; blocked launchables are
//! never chosen.

use proptest::prelude::*;
use sky_catalog::{BUNDLED_CLOUDS, Catalog};
use sky_optimizer::{Blocked, optimize_task};
use sky_spec::{AcceleratorRequest, Quantity, ResourceChoice, Resources, Task};

const GPUS: &[&str] = &[
    "A100",
    "V100",
    "T4",
    "L4",
    "A10G",
    "H100",
    "A10",
    "RTX4090",
    "A100-80GB",
];

fn task_strategy() -> impl Strategy<Value = Task> {
    (
        prop::option::of((
            0..GPUS.len(),
            prop::sample::select(vec![1.0, 2.0, 4.0, 8.0]),
        )),
        prop::option::of(prop::sample::select(vec![2.0, 4.0, 8.0, 16.0, 32.0])),
        any::<bool>(),
        1u32..4,
    )
        .prop_map(|(gpu, cpus, spot, nodes)| Task {
            num_nodes: nodes,
            resources: ResourceChoice::Single(Resources {
                accelerators: gpu.map(|(i, c)| AcceleratorRequest {
                    name: GPUS[i].into(),
                    count: c,
                }),
                cpus: cpus.map(|v| Quantity {
                    value: v,
                    at_least: true,
                }),
                use_spot: spot,
                ..Default::default()
            }),
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn nothing_feasible_is_cheaper_than_the_choice(task in task_strategy()) {
        let catalog = Catalog::bundled();
        if let Ok(plan) = optimize_task(catalog, &task, &BUNDLED_CLOUDS, &[]) {
            for l in &plan.failover_order {
                prop_assert!(l.hourly_price >= plan.chosen.hourly_price);
            }
            prop_assert!(plan.rows.iter().all(|r| r.cost >= plan.estimated_cost_per_hour));
            prop_assert_eq!(&plan.failover_order[0], &plan.chosen);
        }
    }

    #[test]
    fn blocked_launchables_are_never_chosen(task in task_strategy(), k in 1usize..6) {
        let catalog = Catalog::bundled();
        let Ok(plan) = optimize_task(catalog, &task, &BUNDLED_CLOUDS, &[]) else { return Ok(()) };
        let blocked: Vec<Blocked> = plan.failover_order.iter().take(k).map(Blocked::from_launchable).collect();
        match optimize_task(catalog, &task, &BUNDLED_CLOUDS, &blocked) {
            Ok(p2) => {
                prop_assert!(!blocked.iter().any(|b| b.blocks(&p2.chosen)));
                prop_assert_eq!(&p2.chosen, &plan.failover_order[k.min(plan.failover_order.len() - 1)]);
            }
            Err(_) => prop_assert!(k >= plan.failover_order.len()),
        }
    }

    #[test]
    fn a_blocked_cloud_is_skipped(task in task_strategy()) {
        let catalog = Catalog::bundled();
        let Ok(plan) = optimize_task(catalog, &task, &BUNDLED_CLOUDS, &[]) else { return Ok(()) };
        let b = Blocked { cloud: Some(plan.chosen.cloud.clone()), ..Default::default() };
        if let Ok(p2) = optimize_task(catalog, &task, &BUNDLED_CLOUDS, &[b]) {
            prop_assert_ne!(&p2.chosen.cloud, &plan.chosen.cloud);
        }
    }
}
