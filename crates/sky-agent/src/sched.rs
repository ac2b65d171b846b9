//! The queue policy seam and resource accounting. The head asks a [`QueuePolicy`] which
//! queued jobs to start and where; the policy here is strict FIFO (like SkyPilot's
//! `FIFOScheduler`). The gang scheduler (`sky-sched`) will replace [`Fifo`] behind the same trait.

use crate::config::NodeInfo;
use crate::protocol::JobSpec;

const EPS: f64 = 1e-9;

/// SkyPilot's per-node CPU demand of a job that names none.
pub(crate) const DEFAULT_CPU_DEMAND: f64 = 0.5;

/// What a job needs on each of its nodes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Demand {
    pub num_nodes: usize,
    pub cpus: f64,
    pub accelerator: Option<(String, f64)>,
}

impl Demand {
    pub(crate) fn of(spec: &JobSpec) -> Self {
        Self {
            num_nodes: spec.num_nodes.max(1) as usize,
            cpus: spec.cpus.unwrap_or(DEFAULT_CPU_DEMAND).max(0.0),
            accelerator: spec.accelerators.clone().filter(|(_, n)| *n > 0.0),
        }
    }

    /// `2x[H100:4]`, `1x[CPU:0.5]`.
    pub(crate) fn describe(&self) -> String {
        match &self.accelerator {
            Some((name, n)) => format!("{}x[{name}:{}]", self.num_nodes, fmt_num(*n)),
            None => format!("{}x[CPU:{}]", self.num_nodes, fmt_num(self.cpus)),
        }
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    }
}

/// A job waiting in the queue, in submission order.
#[derive(Clone, Debug)]
pub(crate) struct QueuedJob<'a> {
    pub id: u64,
    pub demand: &'a Demand,
}

/// Where one job runs: its ranks in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Placement {
    pub job_id: u64,
    pub nodes: Vec<NodeAlloc>,
}

/// One rank's share of a node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NodeAlloc {
    /// Index into the cluster's nodes.
    pub node: usize,
    pub cpus: f64,
    /// Accelerator pool index on the node and `(device index, share)` pairs.
    pub devices: Option<(usize, Vec<(usize, f64)>)>,
}

/// Decides which queued jobs start now. Implementations must only return placements that
/// `pool.fits` (the head allocates them in order).
pub(crate) trait QueuePolicy: Send + std::fmt::Debug {
    fn pick(&mut self, queue: &[QueuedJob<'_>], pool: &ResourcePool) -> Vec<Placement>;
}

/// Strict FIFO: start jobs in submission order until the first that does not fit.
#[derive(Debug, Default)]
pub(crate) struct Fifo;

impl QueuePolicy for Fifo {
    fn pick(&mut self, queue: &[QueuedJob<'_>], pool: &ResourcePool) -> Vec<Placement> {
        let mut scratch = pool.clone();
        let mut out = Vec::new();
        for job in queue {
            match scratch.place(job.id, job.demand) {
                Some(p) => {
                    scratch.allocate(&p);
                    out.push(p);
                }
                None => break,
            }
        }
        out
    }
}

#[derive(Clone, Debug)]
struct Device {
    id: String,
    used: f64,
}

#[derive(Clone, Debug)]
struct AccPool {
    name: String,
    capacity: f64,
    devices: Vec<Device>,
}

#[derive(Clone, Debug)]
struct NodeState {
    cpus: Option<f64>,
    cpus_used: f64,
    accs: Vec<AccPool>,
}

/// Free and used resources of every node.
#[derive(Clone, Debug)]
pub(crate) struct ResourcePool {
    nodes: Vec<NodeState>,
}

impl ResourcePool {
    pub(crate) fn new(nodes: &[NodeInfo]) -> Self {
        let nodes = nodes
            .iter()
            .map(|n| {
                let single = n.accelerators.len() == 1;
                let accs = n
                    .accelerators
                    .iter()
                    .map(|(name, &count)| {
                        let k = count.max(0.0).ceil() as usize;
                        let devices = (0..k)
                            .map(|i| Device {
                                id: if single && i < n.gpu_ids.len() {
                                    n.gpu_ids[i].clone()
                                } else {
                                    i.to_string()
                                },
                                used: 0.0,
                            })
                            .collect();
                        AccPool {
                            name: name.clone(),
                            capacity: count,
                            devices,
                        }
                    })
                    .collect();
                NodeState {
                    cpus: n.cpus,
                    cpus_used: 0.0,
                    accs,
                }
            })
            .collect();
        Self { nodes }
    }

    /// Whether the job could ever run on this cluster (all nodes free).
    pub(crate) fn ever_fits(&self, d: &Demand) -> Result<(), String> {
        if d.num_nodes > self.nodes.len() {
            return Err(format!(
                "the job asks for {} nodes but the cluster has {}",
                d.num_nodes,
                self.nodes.len()
            ));
        }
        let mut empty = self.clone();
        for n in &mut empty.nodes {
            n.cpus_used = 0.0;
            for a in &mut n.accs {
                for dev in &mut a.devices {
                    dev.used = 0.0;
                }
            }
        }
        if empty.place(0, d).is_some() {
            return Ok(());
        }
        Err(match &d.accelerator {
            Some((name, n)) => format!(
                "fewer than {} nodes of the cluster have {name}:{} and {} vCPUs free when idle",
                d.num_nodes,
                fmt_num(*n),
                fmt_num(d.cpus)
            ),
            None => format!(
                "fewer than {} nodes of the cluster have {} vCPUs",
                d.num_nodes,
                fmt_num(d.cpus)
            ),
        })
    }

    /// The first `num_nodes` nodes (rank order) where the demand fits now.
    pub(crate) fn place(&self, job_id: u64, d: &Demand) -> Option<Placement> {
        let mut nodes = Vec::with_capacity(d.num_nodes);
        for (i, n) in self.nodes.iter().enumerate() {
            if nodes.len() == d.num_nodes {
                break;
            }
            if let Some(a) = fit_node(i, n, d) {
                nodes.push(a);
            }
        }
        (nodes.len() == d.num_nodes).then_some(Placement { job_id, nodes })
    }

    pub(crate) fn allocate(&mut self, p: &Placement) {
        self.apply(p, 1.0);
    }

    pub(crate) fn release(&mut self, p: &Placement) {
        self.apply(p, -1.0);
    }

    fn apply(&mut self, p: &Placement, sign: f64) {
        for a in &p.nodes {
            let n = &mut self.nodes[a.node];
            n.cpus_used = (n.cpus_used + sign * a.cpus).max(0.0);
            if let Some((pool, devs)) = &a.devices {
                for &(d, share) in devs {
                    let dev = &mut n.accs[*pool].devices[d];
                    dev.used = (dev.used + sign * share).max(0.0);
                }
            }
        }
    }

    /// `CUDA_VISIBLE_DEVICES` for one rank: its device ids, or empty on a node with
    /// accelerators when the job asked for none (like Ray); `None` on nodes without any.
    pub(crate) fn visible_devices(&self, a: &NodeAlloc) -> Option<String> {
        let n = &self.nodes[a.node];
        match &a.devices {
            Some((pool, devs)) => Some(
                devs.iter()
                    .map(|&(d, _)| n.accs[*pool].devices[d].id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            None if !n.accs.is_empty() => Some(String::new()),
            None => None,
        }
    }
}

fn fit_node(index: usize, n: &NodeState, d: &Demand) -> Option<NodeAlloc> {
    if let Some(cap) = n.cpus
        && n.cpus_used + d.cpus > cap + EPS
    {
        return None;
    }
    let devices = match &d.accelerator {
        None => None,
        Some((name, count)) => {
            let (pi, pool) = n
                .accs
                .iter()
                .enumerate()
                .find(|(_, a)| a.name.eq_ignore_ascii_case(name))?;
            if *count > pool.capacity + EPS {
                return None;
            }
            if *count < 1.0 {
                // Best fit: the most used device that still has room.
                let (di, _) = pool
                    .devices
                    .iter()
                    .enumerate()
                    .filter(|(_, dev)| dev.used + count <= 1.0 + EPS)
                    .max_by(|a, b| a.1.used.total_cmp(&b.1.used))?;
                Some((pi, vec![(di, *count)]))
            } else {
                let k = count.ceil() as usize;
                let free: Vec<(usize, f64)> = pool
                    .devices
                    .iter()
                    .enumerate()
                    .filter(|(_, dev)| dev.used < EPS)
                    .take(k)
                    .map(|(di, _)| (di, 1.0))
                    .collect();
                if free.len() < k {
                    return None;
                }
                Some((pi, free))
            }
        }
    };
    Some(NodeAlloc {
        node: index,
        cpus: d.cpus,
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_node(rank: u32, n: f64) -> NodeInfo {
        let mut node = NodeInfo::new(rank, format!("10.0.0.{rank}"), None);
        node.cpus = Some(8.0);
        node.accelerators.insert("H100".into(), n);
        node
    }

    fn demand(nodes: usize, acc: Option<f64>) -> Demand {
        Demand {
            num_nodes: nodes,
            cpus: 0.5,
            accelerator: acc.map(|n| ("h100".into(), n)),
        }
    }

    #[test]
    fn fifo_blocks_behind_a_job_that_does_not_fit() {
        let mut pool = ResourcePool::new(&[gpu_node(0, 4.0)]);
        let big = demand(1, Some(4.0));
        let small = demand(1, Some(1.0));
        let q = [QueuedJob {
            id: 1,
            demand: &big,
        }];
        let started = Fifo.pick(&q, &pool);
        assert_eq!(started.len(), 1);
        pool.allocate(&started[0]);
        assert_eq!(
            pool.visible_devices(&started[0].nodes[0]).unwrap(),
            "0,1,2,3"
        );
        let q = [
            QueuedJob {
                id: 2,
                demand: &small,
            },
            QueuedJob {
                id: 3,
                demand: &small,
            },
        ];
        assert!(Fifo.pick(&q, &pool).is_empty());
        pool.release(&started[0]);
        let next = Fifo.pick(&q, &pool);
        assert_eq!(next.len(), 2);
        assert_eq!(pool.visible_devices(&next[1].nodes[0]).unwrap(), "1");
    }

    #[test]
    fn fractional_demands_share_a_device() {
        let mut pool = ResourcePool::new(&[gpu_node(0, 1.0)]);
        let half = demand(1, Some(0.5));
        let a = pool.place(1, &half).unwrap();
        pool.allocate(&a);
        let b = pool.place(2, &half).unwrap();
        pool.allocate(&b);
        assert_eq!(pool.visible_devices(&b.nodes[0]).unwrap(), "0");
        assert!(pool.place(3, &half).is_none());
    }

    #[test]
    fn cpu_demands_and_impossible_jobs() {
        let pool = ResourcePool::new(&[gpu_node(0, 4.0), gpu_node(1, 4.0)]);
        assert!(pool.ever_fits(&demand(3, None)).is_err());
        assert!(pool.ever_fits(&demand(2, Some(8.0))).is_err());
        assert!(
            pool.ever_fits(&Demand {
                num_nodes: 1,
                cpus: 9.0,
                accelerator: None
            })
            .is_err()
        );
        let p = pool.place(1, &demand(2, None)).unwrap();
        assert_eq!(pool.visible_devices(&p.nodes[1]).unwrap(), "");
        assert_eq!(demand(2, Some(4.0)).describe(), "2x[h100:4]");
        assert_eq!(demand(1, None).describe(), "1x[CPU:0.5]");
    }
}
