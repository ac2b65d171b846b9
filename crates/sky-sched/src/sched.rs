//! The state machine: node usage, the queue, the scheduling pass and the starvation guard.

use std::collections::{BTreeMap, HashMap};

use crate::error::Unfit;
use crate::model::{
    Command, Config, DEFAULT_CPUS, Demand, DequeueReason, DeviceShare, Event, JobId, JobState,
    KillReason, NodeId, NodeSpec, Placement, RankAlloc,
};

/// Slack for float sums of shares and vCPUs.
const EPS: f64 = 1e-9;

/// No accelerator in a shape key.
const NO_ACC: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Pool {
    /// Interned lowercase name.
    key: u32,
    name: String,
    /// Capacity of each device (1, or less for a fractional tail).
    caps: Vec<f64>,
    ids: Vec<String>,
}

#[derive(Clone, Debug)]
struct NodeCap {
    alive: bool,
    cpus: Option<f64>,
    mem: Option<f64>,
    pools: Vec<Pool>,
}

/// What is in use on a node: vCPUs, memory, and per pool per device the sum of shares.
#[derive(Clone, Debug, PartialEq)]
struct Usage {
    cpus: f64,
    mem: f64,
    devs: Vec<Vec<f64>>,
}

/// A validated demand: accelerator counts of 1 or more are whole device counts.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Norm {
    nodes: usize,
    cpus: f64,
    mem: f64,
    /// (interned name, count): count < 1 is a share of one device.
    acc: Option<(u32, f64)>,
}

/// One rank's take on one node.
#[derive(Clone, Debug, PartialEq)]
struct Pick {
    node: NodeId,
    pool: Option<usize>,
    devs: Vec<(usize, f64)>,
}

#[derive(Clone, Debug)]
struct Pending {
    job: JobId,
    norm: Norm,
    shape: u32,
    submitted_at: f64,
}

#[derive(Clone, Debug)]
struct Active {
    job: JobId,
    norm: Norm,
    started_at: f64,
    started_pass: u64,
    picks: Vec<Pick>,
    placement: Placement,
    stopping: bool,
}

#[derive(Clone, Copy, Debug)]
enum Loc {
    Pending(u64),
    Active(u64),
}

/// The starving head's claim during one pass.
#[derive(Debug)]
struct Guard {
    head: Norm,
    /// Per node: usage by jobs behind the head that started after it began to starve.
    shadow: Vec<Usage>,
    /// Per node: whether the head fits beside `shadow`.
    fits: Vec<bool>,
    count: usize,
}

/// The gang scheduler. See the crate docs for the semantics.
#[derive(Clone, Debug)]
pub struct Scheduler {
    cfg: Config,
    specs: Vec<NodeSpec>,
    nodes: Vec<NodeCap>,
    usage: Vec<Usage>,
    idle: Vec<Usage>,
    acc_keys: HashMap<String, u32>,
    shapes: HashMap<(u32, u64, u64, u32, u64), u32>,
    /// Pending jobs by submission sequence number.
    queue: BTreeMap<u64, Pending>,
    /// Started (running or stopping) jobs by submission sequence number.
    active: BTreeMap<u64, Active>,
    jobs: HashMap<JobId, Loc>,
    next_seq: u64,
    /// Per shape: the pass in which it was last found not to fit.
    memo: Vec<u64>,
    /// Per shape: (pass, node) where its first rank last fit in that pass; nodes before it
    /// cannot fit it for the rest of the pass (resources only shrink during a pass).
    cursor: Vec<(u64, NodeId)>,
    pass: u64,
    /// The head of the queue that did not fit: (its sequence number, the first pass in which
    /// it was the head).
    head: Option<(u64, u64)>,
}

impl Scheduler {
    /// A scheduler over `nodes` (rank order; [`NodeId`] is the index).
    pub fn new(nodes: Vec<NodeSpec>, cfg: Config) -> Self {
        let mut acc_keys = HashMap::new();
        let caps: Vec<NodeCap> = nodes
            .iter()
            .map(|n| NodeCap {
                alive: true,
                cpus: n.cpus.map(|c| c.max(0.0)),
                mem: n.memory_gb.map(|m| m.max(0.0)),
                pools: n
                    .accelerators
                    .iter()
                    .map(|a| {
                        let count = if a.count.is_finite() {
                            a.count.max(0.0)
                        } else {
                            0.0
                        };
                        let k = (count - EPS).ceil().max(0.0) as usize;
                        Pool {
                            key: intern(&mut acc_keys, &a.name),
                            name: a.name.clone(),
                            caps: (0..k).map(|i| (count - i as f64).min(1.0)).collect(),
                            ids: (0..k)
                                .map(|i| a.device_ids.get(i).cloned().unwrap_or(i.to_string()))
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let idle: Vec<Usage> = caps
            .iter()
            .map(|n| Usage {
                cpus: 0.0,
                mem: 0.0,
                devs: n.pools.iter().map(|p| vec![0.0; p.caps.len()]).collect(),
            })
            .collect();
        Self {
            cfg,
            specs: nodes,
            nodes: caps,
            usage: idle.clone(),
            idle,
            acc_keys,
            shapes: HashMap::new(),
            queue: BTreeMap::new(),
            active: BTreeMap::new(),
            jobs: HashMap::new(),
            next_seq: 0,
            memo: Vec::new(),
            cursor: Vec::new(),
            pass: 0,
            head: None,
        }
    }

    /// The nodes as given.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.specs
    }

    /// Whether the node is still part of the cluster.
    pub fn node_alive(&self, node: NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.alive)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Applies the event, then runs a scheduling pass: the commands of both, in order.
    pub fn handle(&mut self, event: Event, now: f64) -> Vec<Command> {
        let mut out = self.apply(event, now);
        out.extend(self.schedule(now));
        out
    }

    /// Applies the event without a scheduling pass (to batch many events before one
    /// [`Scheduler::schedule`]).
    pub fn apply(&mut self, event: Event, now: f64) -> Vec<Command> {
        match event {
            Event::Submit { job, demand } => self.submit(job, &demand, now),
            Event::Finished { job } => {
                self.finish(job);
                Vec::new()
            }
            Event::RankFailed { job, rank } => self.kill(job, KillReason::RankFailed { rank }),
            Event::Cancel { job } => self.cancel(job),
            Event::NodeLost { node } => self.node_lost(node),
        }
    }

    /// Whether the demand could ever run here (on the idle cluster's live nodes).
    pub fn check(&mut self, demand: &Demand) -> Result<(), Unfit> {
        let norm = self.normalize(demand)?;
        self.ever_fits(&norm)
    }

    /// Where the job is, if the scheduler still knows it (finished jobs are forgotten).
    pub fn state(&self, job: JobId) -> Option<JobState> {
        match *self.jobs.get(&job)? {
            Loc::Pending(_) => Some(JobState::Pending),
            Loc::Active(seq) => Some(if self.active[&seq].stopping {
                JobState::Stopping
            } else {
                JobState::Running
            }),
        }
    }

    /// The placement of a started job.
    pub fn placement(&self, job: JobId) -> Option<&Placement> {
        match *self.jobs.get(&job)? {
            Loc::Active(seq) => Some(&self.active[&seq].placement),
            Loc::Pending(_) => None,
        }
    }

    /// Pending jobs in queue order.
    pub fn pending(&self) -> impl Iterator<Item = JobId> + '_ {
        self.queue.values().map(|p| p.job)
    }

    /// Started jobs (running or stopping) in submission order.
    pub fn started(&self) -> impl Iterator<Item = JobId> + '_ {
        self.active.values().map(|a| a.job)
    }

    /// The head of the queue when it has waited longer than the starvation bound at `now`.
    pub fn starving_head(&self, now: f64) -> Option<JobId> {
        let (_, p) = self.queue.first_key_value()?;
        (now - p.submitted_at > self.cfg.starvation_bound_s).then_some(p.job)
    }

    // ---- events ----

    fn submit(&mut self, job: JobId, demand: &Demand, now: f64) -> Vec<Command> {
        let reject = |e| {
            vec![Command::Dequeue {
                job,
                reason: DequeueReason::Rejected(e),
            }]
        };
        if self.jobs.contains_key(&job) {
            return reject(Unfit::Duplicate(job));
        }
        let norm = match self.normalize(demand) {
            Ok(n) => n,
            Err(e) => return reject(e),
        };
        if let Err(e) = self.ever_fits(&norm) {
            return reject(e);
        }
        let shape = self.shape(&norm);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert(
            seq,
            Pending {
                job,
                norm,
                shape,
                submitted_at: now,
            },
        );
        self.jobs.insert(job, Loc::Pending(seq));
        Vec::new()
    }

    fn finish(&mut self, job: JobId) {
        let Some(&Loc::Active(seq)) = self.jobs.get(&job) else {
            return;
        };
        self.jobs.remove(&job);
        if let Some(a) = self.active.remove(&seq) {
            for p in &a.picks {
                apply(&mut self.usage[p.node], &a.norm, p, -1.0);
            }
        }
    }

    fn kill(&mut self, job: JobId, reason: KillReason) -> Vec<Command> {
        let Some(&Loc::Active(seq)) = self.jobs.get(&job) else {
            return Vec::new();
        };
        let a = self.active.get_mut(&seq).expect("active job is indexed");
        if a.stopping {
            return Vec::new();
        }
        a.stopping = true;
        vec![Command::Kill { job, reason }]
    }

    fn cancel(&mut self, job: JobId) -> Vec<Command> {
        match self.jobs.get(&job) {
            Some(&Loc::Pending(seq)) => {
                self.queue.remove(&seq);
                self.jobs.remove(&job);
                vec![Command::Dequeue {
                    job,
                    reason: DequeueReason::Cancelled,
                }]
            }
            Some(Loc::Active(_)) => self.kill(job, KillReason::Cancelled),
            None => Vec::new(),
        }
    }

    fn node_lost(&mut self, node: NodeId) -> Vec<Command> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        if !n.alive {
            return Vec::new();
        }
        n.alive = false;
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if !a.stopping && a.picks.iter().any(|p| p.node == node) {
                a.stopping = true;
                out.push(Command::Kill {
                    job: a.job,
                    reason: KillReason::NodeLost { node },
                });
            }
        }
        // Queued jobs that can no longer fit on what is left.
        let mut gone = Vec::new();
        let mut ok_shapes: HashMap<u32, Result<(), Unfit>> = HashMap::new();
        for (&seq, p) in &self.queue {
            let r = ok_shapes
                .entry(p.shape)
                .or_insert_with(|| self.ever_fits(&p.norm));
            if let Err(e) = r {
                gone.push((seq, p.job, e.clone()));
            }
        }
        for (seq, job, e) in gone {
            self.queue.remove(&seq);
            self.jobs.remove(&job);
            out.push(Command::Dequeue {
                job,
                reason: DequeueReason::Unschedulable(e),
            });
        }
        out
    }

    // ---- the pass ----

    /// One scheduling pass at `now`: starts, in queue order, every job that fits (subject to
    /// the starvation guard).
    pub fn schedule(&mut self, now: f64) -> Vec<Command> {
        self.pass += 1;
        let pass = self.pass;
        let queue = std::mem::take(&mut self.queue);
        let mut started: Vec<u64> = Vec::new();
        let mut out = Vec::new();
        let mut at_head = true;
        let mut guard: Option<Guard> = None;
        for (&seq, p) in &queue {
            if !at_head && self.memo[p.shape as usize] == pass {
                continue;
            }
            let from = match self.cursor[p.shape as usize] {
                (at, node) if at == pass => node,
                _ => 0,
            };
            match self.place(&p.norm, from, guard.as_mut()) {
                Some(picks) => {
                    self.cursor[p.shape as usize] = (pass, picks[0].node);
                    out.push(self.start(seq, p, picks, now));
                    started.push(seq);
                }
                None => {
                    self.memo[p.shape as usize] = pass;
                    if at_head {
                        at_head = false;
                        let head_pass = match self.head {
                            Some((s, first)) if s == seq => first,
                            _ => {
                                self.head = Some((seq, pass));
                                pass
                            }
                        };
                        if now - p.submitted_at > self.cfg.starvation_bound_s {
                            guard = Some(self.guard(seq, p, head_pass));
                        }
                    }
                }
            }
        }
        self.queue = queue;
        for seq in started {
            self.queue.remove(&seq);
        }
        out
    }

    /// First fit over nodes in rank order from node `from`; `None` unless all `num_nodes`
    /// ranks fit at once.
    fn place(&self, d: &Norm, from: NodeId, mut guard: Option<&mut Guard>) -> Option<Vec<Pick>> {
        let mut picks = Vec::with_capacity(d.nodes);
        let mut spare = guard
            .as_ref()
            .map_or(usize::MAX, |g| g.count.saturating_sub(g.head.nodes));
        for (i, n) in self.nodes.iter().enumerate().skip(from) {
            if !n.alive {
                continue;
            }
            let Some(pick) = fit(i, n, &self.usage[i], d) else {
                continue;
            };
            if let Some(g) = guard.as_deref_mut()
                && g.fits[i]
            {
                apply(&mut g.shadow[i], d, &pick, 1.0);
                let still = fit(i, n, &g.shadow[i], &g.head).is_some();
                apply(&mut g.shadow[i], d, &pick, -1.0);
                if !still {
                    if spare == 0 {
                        continue;
                    }
                    spare -= 1;
                }
            }
            picks.push(pick);
            if picks.len() == d.nodes {
                break;
            }
        }
        if picks.len() < d.nodes {
            return None;
        }
        if let Some(g) = guard {
            for p in &picks {
                apply(&mut g.shadow[p.node], d, p, 1.0);
                if g.fits[p.node]
                    && fit(p.node, &self.nodes[p.node], &g.shadow[p.node], &g.head).is_none()
                {
                    g.fits[p.node] = false;
                    g.count -= 1;
                }
            }
        }
        Some(picks)
    }

    fn start(&mut self, seq: u64, p: &Pending, picks: Vec<Pick>, now: f64) -> Command {
        for pick in &picks {
            apply(&mut self.usage[pick.node], &p.norm, pick, 1.0);
        }
        let ranks = picks
            .iter()
            .map(|pick| {
                let node = &self.nodes[pick.node];
                let pool = pick.pool.map(|i| &node.pools[i]);
                RankAlloc {
                    node: pick.node,
                    cpus: p.norm.cpus,
                    memory_gb: p.norm.mem,
                    accelerator: pool.map(|pl| pl.name.clone()),
                    devices: pick
                        .devs
                        .iter()
                        .map(|&(index, share)| DeviceShare {
                            index,
                            id: pool.map(|pl| pl.ids[index].clone()).unwrap_or_default(),
                            share,
                        })
                        .collect(),
                }
            })
            .collect();
        let placement = Placement { ranks };
        self.active.insert(
            seq,
            Active {
                job: p.job,
                norm: p.norm,
                started_at: now,
                started_pass: self.pass,
                picks,
                placement: placement.clone(),
                stopping: false,
            },
        );
        self.jobs.insert(p.job, Loc::Active(seq));
        Command::Start {
            job: p.job,
            placement,
        }
    }

    /// The starving head's claim: what jobs behind it hold that started while it was the head
    /// and starving (those were admitted by this guard; anything older ends before it runs).
    fn guard(&self, head_seq: u64, head: &Pending, head_pass: u64) -> Guard {
        let since = head.submitted_at + self.cfg.starvation_bound_s;
        let mut shadow = self.idle.clone();
        for (&seq, a) in &self.active {
            if seq > head_seq && a.started_at > since && a.started_pass >= head_pass {
                for p in &a.picks {
                    apply(&mut shadow[p.node], &a.norm, p, 1.0);
                }
            }
        }
        let fits: Vec<bool> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| n.alive && fit(i, n, &shadow[i], &head.norm).is_some())
            .collect();
        let count = fits.iter().filter(|&&f| f).count();
        Guard {
            head: head.norm,
            shadow,
            fits,
            count,
        }
    }

    // ---- demands ----

    fn normalize(&mut self, d: &Demand) -> Result<Norm, Unfit> {
        if d.num_nodes == 0 {
            return Err(Unfit::Invalid("num_nodes must be at least 1".into()));
        }
        let cpus = d.cpus.unwrap_or(DEFAULT_CPUS);
        if !cpus.is_finite() || cpus < 0.0 {
            return Err(Unfit::Invalid(format!(
                "cpus must be a non-negative number, not {cpus}"
            )));
        }
        let mem = d.memory_gb.unwrap_or(0.0);
        if !mem.is_finite() || mem < 0.0 {
            return Err(Unfit::Invalid(format!(
                "memory must be a non-negative number, not {mem}"
            )));
        }
        let acc = match &d.accelerator {
            None => None,
            Some((name, n)) => {
                if name.trim().is_empty() {
                    return Err(Unfit::Invalid("the accelerator name is empty".into()));
                }
                if !n.is_finite() || *n < 0.0 {
                    return Err(Unfit::Invalid(format!(
                        "accelerator count must be a non-negative number, not {name}:{n}"
                    )));
                }
                if *n <= EPS {
                    None
                } else {
                    let count = if *n < 1.0 { *n } else { (*n - EPS).ceil() };
                    Some((intern(&mut self.acc_keys, name), count))
                }
            }
        };
        Ok(Norm {
            nodes: d.num_nodes as usize,
            cpus,
            mem,
            acc,
        })
    }

    fn shape(&mut self, n: &Norm) -> u32 {
        let (k, c) = n.acc.map_or((NO_ACC, 0), |(k, c)| (k, c.to_bits()));
        let key = (n.nodes as u32, n.cpus.to_bits(), n.mem.to_bits(), k, c);
        let next = self.shapes.len() as u32;
        let id = *self.shapes.entry(key).or_insert(next);
        if id as usize >= self.memo.len() {
            self.memo.push(0);
            self.cursor.push((0, 0));
        }
        id
    }

    fn ever_fits(&self, d: &Norm) -> Result<(), Unfit> {
        let alive = self.nodes.iter().filter(|n| n.alive).count();
        if d.nodes > alive {
            return Err(Unfit::TooManyNodes {
                want: d.nodes,
                have: alive,
            });
        }
        let room = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.alive && fit(*i, n, &self.idle[*i], d).is_some())
            .count();
        if room >= d.nodes {
            return Ok(());
        }
        let mut what = vec![fmt_num(d.cpus) + " vCPUs"];
        if d.mem > 0.0 {
            what.push(format!("{} GB of memory", fmt_num(d.mem)));
        }
        if let Some((k, c)) = d.acc {
            let name = self
                .acc_keys
                .iter()
                .find(|(_, v)| **v == k)
                .map_or("?", |(n, _)| n.as_str());
            what.push(format!("{}:{}", name.to_uppercase(), fmt_num(c)));
        }
        Err(Unfit::NoRoom {
            num_nodes: d.nodes,
            what: what.join(" and "),
        })
    }
}

fn intern(keys: &mut HashMap<String, u32>, name: &str) -> u32 {
    let lower = name.trim().to_ascii_lowercase();
    let next = keys.len() as u32;
    *keys.entry(lower).or_insert(next)
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    }
}

/// Whether one rank of `d` fits on the node beside `u`, and on which devices.
fn fit(node: NodeId, cap: &NodeCap, u: &Usage, d: &Norm) -> Option<Pick> {
    if let Some(c) = cap.cpus
        && u.cpus + d.cpus > c + EPS
    {
        return None;
    }
    if let Some(m) = cap.mem
        && u.mem + d.mem > m + EPS
    {
        return None;
    }
    let Some((key, count)) = d.acc else {
        return Some(Pick {
            node,
            pool: None,
            devs: Vec::new(),
        });
    };
    let pi = cap.pools.iter().position(|p| p.key == key)?;
    let caps = &cap.pools[pi].caps;
    let used = &u.devs[pi];
    let devs = if count < 1.0 {
        // Best fit: the fullest device that still has room (lowest index on ties).
        let mut best: Option<usize> = None;
        for (i, (&c, &x)) in caps.iter().zip(used).enumerate() {
            if x + count <= c + EPS && best.is_none_or(|b| x > used[b] + EPS) {
                best = Some(i);
            }
        }
        vec![(best?, count)]
    } else {
        let k = count as usize;
        let free = |i: &usize| used[*i] <= EPS && caps[*i] >= 1.0 - EPS;
        if (0..caps.len()).filter(free).count() < k {
            return None;
        }
        (0..caps.len())
            .filter(free)
            .take(k)
            .map(|i| (i, 1.0))
            .collect()
    };
    Some(Pick {
        node,
        pool: Some(pi),
        devs,
    })
}

fn apply(u: &mut Usage, d: &Norm, p: &Pick, sign: f64) {
    u.cpus = clamp0(u.cpus + sign * d.cpus);
    u.mem = clamp0(u.mem + sign * d.mem);
    if let Some(pi) = p.pool {
        for &(i, share) in &p.devs {
            let x = &mut u.devs[pi][i];
            *x = clamp0(*x + sign * share);
        }
    }
}

/// Keeps float residue from a release from reading as "in use".
fn clamp0(x: f64) -> f64 {
    if x < EPS { 0.0 } else { x }
}

#[cfg(test)]
mod tests;
