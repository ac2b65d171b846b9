//! The bridge to the gang scheduler (`sky-sched`): node capacities from the cluster file,
//! per-node demands from job specs, `CUDA_VISIBLE_DEVICES` from placements, and the resources
//! string `sky queue` shows. The head drives its queue through [`sky_sched::Scheduler`].

use sky_sched::{AccSpec, Demand, NodeSpec, RankAlloc};

use crate::config::NodeInfo;
use crate::protocol::JobSpec;

/// The scheduler's view of the cluster's nodes (same order: `NodeId` = index).
pub(crate) fn node_specs(nodes: &[NodeInfo]) -> Vec<NodeSpec> {
    nodes
        .iter()
        .map(|n| {
            // `gpu_ids` (real ids from nvidia-smi) belong to the node's one accelerator kind.
            let single = n.accelerators.len() == 1;
            NodeSpec {
                cpus: n.cpus,
                memory_gb: n.memory_gb,
                accelerators: n
                    .accelerators
                    .iter()
                    .map(|(name, &count)| AccSpec {
                        name: name.clone(),
                        count,
                        device_ids: if single {
                            n.gpu_ids.clone()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect(),
            }
        })
        .collect()
}

/// What the job asks for on each node (no `cpus` = the scheduler's 0.5 vCPU default).
pub(crate) fn demand(spec: &JobSpec) -> Demand {
    Demand {
        num_nodes: spec.num_nodes,
        cpus: spec.cpus,
        memory_gb: None,
        accelerator: spec.accelerators.clone().filter(|(_, n)| *n > 0.0),
    }
}

/// `2x[H100:4]`, `1x[CPU:0.5]`.
pub(crate) fn describe(spec: &JobSpec) -> String {
    let nodes = spec.num_nodes.max(1);
    match spec.accelerators.as_ref().filter(|(_, n)| *n > 0.0) {
        Some((name, n)) => format!("{nodes}x[{name}:{}]", fmt_num(*n)),
        None => format!(
            "{nodes}x[CPU:{}]",
            fmt_num(spec.cpus.unwrap_or(sky_sched::DEFAULT_CPUS))
        ),
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    }
}

/// `CUDA_VISIBLE_DEVICES` for one rank: exactly its device ids; empty on a node with
/// accelerators when the job asked for none (like Ray); unset on nodes without any.
pub(crate) fn visible_devices(node: &NodeInfo, rank: &RankAlloc) -> Option<String> {
    if rank.accelerator.is_some() {
        Some(rank.visible_devices())
    } else if node.accelerators.values().any(|&c| c > 0.0) {
        Some(String::new())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use sky_sched::{Command, Config, Event, Scheduler};

    use super::*;

    fn gpu_node(rank: u32, n: f64) -> NodeInfo {
        let mut node = NodeInfo::new(rank, format!("10.0.0.{rank}"), None);
        node.cpus = Some(8.0);
        node.accelerators.insert("H100".into(), n);
        node
    }

    fn spec(nodes: u32, acc: Option<f64>) -> JobSpec {
        JobSpec {
            num_nodes: nodes,
            accelerators: acc.map(|n| ("h100".into(), n)),
            ..JobSpec::default()
        }
    }

    /// (job, CUDA_VISIBLE_DEVICES of rank 0) of each start.
    fn started(nodes: &[NodeInfo], cmds: &[Command]) -> Vec<(u64, Option<String>)> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Start { job, placement } => {
                    let r = &placement.ranks[0];
                    Some((*job, visible_devices(&nodes[r.node], r)))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn backfill_runs_small_jobs_past_a_big_one_on_real_device_ids() {
        let mut node = gpu_node(0, 4.0);
        node.gpu_ids = vec!["4".into(), "5".into(), "6".into(), "7".into()];
        let nodes = vec![node];
        let mut s = Scheduler::new(node_specs(&nodes), Config::default());
        let submit = |s: &mut Scheduler, job, sp: &JobSpec| {
            s.handle(
                Event::Submit {
                    job,
                    demand: demand(sp),
                },
                0.0,
            )
        };
        let c = submit(&mut s, 1, &spec(1, Some(4.0)));
        assert_eq!(started(&nodes, &c), vec![(1, Some("4,5,6,7".into()))]);
        assert!(submit(&mut s, 2, &spec(1, Some(4.0))).is_empty());
        // The CPU-only job backfills past the waiting 4-GPU job and sees no GPU.
        let c = submit(&mut s, 3, &spec(1, None));
        assert_eq!(started(&nodes, &c), vec![(3, Some(String::new()))]);
        let c = s.handle(Event::Finished { job: 1 }, 1.0);
        assert_eq!(started(&nodes, &c), vec![(2, Some("4,5,6,7".into()))]);
    }

    #[test]
    fn fractional_demands_share_a_device() {
        let nodes = vec![gpu_node(0, 1.0)];
        let mut s = Scheduler::new(node_specs(&nodes), Config::default());
        let mut all = Vec::new();
        for job in 1..=3 {
            let d = demand(&spec(1, Some(0.5)));
            all.extend(s.handle(Event::Submit { job, demand: d }, 0.0));
        }
        assert_eq!(
            started(&nodes, &all),
            vec![(1, Some("0".into())), (2, Some("0".into()))]
        );
        assert_eq!(s.pending().collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn cpu_demands_impossible_jobs_and_descriptions() {
        let nodes = vec![gpu_node(0, 4.0), gpu_node(1, 4.0)];
        let mut s = Scheduler::new(node_specs(&nodes), Config::default());
        assert!(s.check(&demand(&spec(3, None))).is_err());
        assert!(s.check(&demand(&spec(2, Some(8.0)))).is_err());
        assert!(
            s.check(&demand(&JobSpec {
                cpus: Some(9.0),
                ..spec(1, None)
            }))
            .is_err()
        );
        let plain = vec![NodeInfo::new(0, "10.0.0.9", None)];
        let mut p = Scheduler::new(node_specs(&plain), Config::default());
        let c = p.handle(
            Event::Submit {
                job: 1,
                demand: demand(&spec(1, None)),
            },
            0.0,
        );
        assert_eq!(started(&plain, &c), vec![(1, None)]);
        assert_eq!(describe(&spec(2, Some(4.0))), "2x[h100:4]");
        assert_eq!(describe(&spec(1, None)), "1x[CPU:0.5]");
        assert_eq!(describe(&spec(1, Some(0.5))), "1x[h100:0.5]");
    }
}
