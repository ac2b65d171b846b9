//! sky-sched integration tests: invariants over random clusters and job streams, checked
//! against a model kept independently from the scheduler's own accounting.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sky_sched::{
    AccSpec, Command, Config, Demand, DequeueReason, Event, JobId, JobState, NodeSpec, Placement,
    Scheduler,
};

const EPS: f64 = 1e-9;

#[derive(Clone, Debug)]
enum Op {
    Submit(Demand),
    /// Index into the started jobs.
    Finish(usize),
    RankFailed(usize),
    /// Index into every submitted job.
    Cancel(usize),
    NodeLost(usize),
    Tick(u16),
}

fn node_strategy() -> impl Strategy<Value = NodeSpec> {
    (
        prop_oneof![Just(None), (1u32..=8).prop_map(|c| Some(f64::from(c)))],
        prop_oneof![Just(None), Just(Some(16.0)), Just(Some(64.0))],
        prop_oneof![
            Just(None),
            (
                prop_oneof![Just("H100"), Just("A100")],
                prop_oneof![Just(1.0), Just(2.0), Just(2.5), Just(4.0), Just(8.0)]
            )
                .prop_map(Some),
        ],
    )
        .prop_map(|(cpus, mem, acc)| NodeSpec {
            cpus,
            memory_gb: mem,
            accelerators: acc
                .map(|(n, c)| {
                    let mut a = AccSpec::new(n, c);
                    a.device_ids = (0..8).map(|i| format!("gpu{i}")).collect();
                    vec![a]
                })
                .unwrap_or_default(),
        })
}

fn demand_strategy() -> impl Strategy<Value = Demand> {
    (
        prop_oneof![4 => Just(1u32), 1 => 2u32..=3],
        prop_oneof![Just(None), Just(Some(0.0)), Just(Some(1.0)), Just(Some(2.5))],
        prop_oneof![4 => Just(None), 1 => Just(Some(8.0)), 1 => Just(Some(40.0))],
        prop_oneof![
            2 => Just(None),
            5 => (
                prop_oneof![4 => Just("H100"), 1 => Just("a100"), 1 => Just("TPU")],
                prop_oneof![Just(0.25), Just(0.5), Just(1.0), Just(1.0), Just(2.0), Just(3.0), Just(4.0), Just(8.0)]
            )
                .prop_map(|(n, c)| Some((n.to_string(), c))),
        ],
    )
        .prop_map(|(num_nodes, cpus, memory_gb, accelerator)| Demand {
            num_nodes,
            cpus,
            memory_gb,
            accelerator,
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => demand_strategy().prop_map(Op::Submit),
        6 => any::<u8>().prop_map(|i| Op::Finish(i.into())),
        1 => any::<u8>().prop_map(|i| Op::RankFailed(i.into())),
        2 => any::<u8>().prop_map(|i| Op::Cancel(i.into())),
        1 => any::<u8>().prop_map(|i| Op::NodeLost(i.into())),
        3 => (0u16..40).prop_map(Op::Tick),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum St {
    Pending,
    Running,
    Stopping,
    Done,
}

#[derive(Debug)]
struct Job {
    demand: Demand,
    seq: usize,
    submitted_at: f64,
    started_at: f64,
    /// The step that started it, and the first step after which it was the head.
    started_step: usize,
    head_step: Option<usize>,
    state: St,
    placement: Option<Placement>,
}

/// The test's own view, built only from the events it sent and the commands it got back.
#[derive(Debug)]
struct Model {
    nodes: Vec<NodeSpec>,
    alive: Vec<bool>,
    jobs: BTreeMap<JobId, Job>,
    next: JobId,
    bound: f64,
    step: usize,
}

/// Per node: cpus, memory, and per device the sum of shares (one accelerator pool per node).
#[derive(Clone, Debug)]
struct Use {
    cpus: f64,
    mem: f64,
    devs: Vec<f64>,
    /// Per device: the jobs holding it and whether as a whole device.
    holders: Vec<Vec<(JobId, bool)>>,
}

fn dev_caps(n: &NodeSpec) -> Vec<f64> {
    n.accelerators.first().map_or(Vec::new(), |a| {
        let k = (a.count - EPS).ceil() as usize;
        (0..k).map(|i| (a.count - i as f64).min(1.0)).collect()
    })
}

impl Model {
    fn usage(&self, only: impl Fn(&Job) -> bool) -> Vec<Use> {
        let mut u: Vec<Use> = self
            .nodes
            .iter()
            .map(|n| {
                let k = dev_caps(n).len();
                Use {
                    cpus: 0.0,
                    mem: 0.0,
                    devs: vec![0.0; k],
                    holders: vec![Vec::new(); k],
                }
            })
            .collect();
        for (&id, j) in &self.jobs {
            if !matches!(j.state, St::Running | St::Stopping) || !only(j) {
                continue;
            }
            for r in &j.placement.as_ref().unwrap().ranks {
                let n = &mut u[r.node];
                n.cpus += r.cpus;
                n.mem += r.memory_gb;
                for d in &r.devices {
                    n.devs[d.index] += d.share;
                    n.holders[d.index].push((id, d.share >= 1.0));
                }
            }
        }
        u
    }

    /// Whether one rank of `d` fits on node `i` beside `u`, computed naively.
    fn rank_fits(&self, i: usize, u: &Use, d: &Demand) -> bool {
        let n = &self.nodes[i];
        let cpus = d.cpus.unwrap_or(0.5);
        if n.cpus.is_some_and(|c| u.cpus + cpus > c + EPS) {
            return false;
        }
        if n.memory_gb
            .is_some_and(|m| u.mem + d.memory_gb.unwrap_or(0.0) > m + EPS)
        {
            return false;
        }
        let Some((name, count)) = &d.accelerator else {
            return true;
        };
        if *count == 0.0 {
            return true;
        }
        let Some(a) = n.accelerators.first() else {
            return false;
        };
        if !a.name.eq_ignore_ascii_case(name) {
            return false;
        }
        let caps = dev_caps(n);
        if *count < 1.0 {
            caps.iter().zip(&u.devs).any(|(c, x)| x + count <= c + EPS)
        } else {
            let whole = caps
                .iter()
                .zip(&u.devs)
                .filter(|(c, x)| **x <= EPS && **c >= 1.0 - EPS)
                .count();
            whole as f64 >= count.ceil()
        }
    }

    /// How many live nodes have room for one rank of `d` beside `u`.
    fn room(&self, u: &[Use], d: &Demand) -> usize {
        (0..self.nodes.len())
            .filter(|&i| self.alive[i] && self.rank_fits(i, &u[i], d))
            .count()
    }

    fn fits(&self, u: &[Use], d: &Demand) -> bool {
        self.room(u, d) >= d.num_nodes as usize && d.num_nodes > 0
    }

    fn ever_fits(&self, d: &Demand) -> bool {
        let idle = self.usage(|_| false);
        self.fits(&idle, d)
    }

    fn apply(&mut self, cmds: &[Command], now: f64) {
        for c in cmds {
            match c {
                Command::Start { job, placement } => {
                    let j = self.jobs.get_mut(job).expect("start of a known job");
                    assert_eq!(j.state, St::Pending, "job {job} started twice");
                    j.state = St::Running;
                    j.started_at = now;
                    j.started_step = self.step;
                    j.placement = Some(placement.clone());
                }
                Command::Kill { job, .. } => {
                    let j = self.jobs.get_mut(job).expect("kill of a known job");
                    assert_eq!(j.state, St::Running, "job {job} killed while {:?}", j.state);
                    j.state = St::Stopping;
                }
                Command::Dequeue { job, reason } => {
                    let j = self.jobs.get_mut(job).expect("dequeue of a known job");
                    assert_eq!(
                        j.state,
                        St::Pending,
                        "job {job} dequeued while {:?}",
                        j.state
                    );
                    j.state = St::Done;
                    if let DequeueReason::Rejected(_) | DequeueReason::Unschedulable(_) = reason {
                        assert!(
                            !self.ever_fits(&self.jobs[job].demand.clone()),
                            "{reason:?}"
                        );
                    }
                }
            }
        }
    }

    fn check(&mut self, s: &Scheduler, now: f64, cmds: &[Command]) {
        // Note when the head of the queue became the head.
        let step = self.step;
        if let Some(h) = self
            .jobs
            .values_mut()
            .filter(|j| j.state == St::Pending)
            .min_by_key(|j| j.seq)
        {
            h.head_step.get_or_insert(step);
        }
        self.step += 1;
        let u = self.usage(|_| true);
        // Never over-allocated; integer devices are held by one job only.
        for (i, n) in self.nodes.iter().enumerate() {
            assert!(
                n.cpus.is_none_or(|c| u[i].cpus <= c + 1e-6),
                "node {i} cpus {u:?}"
            );
            assert!(
                n.memory_gb.is_none_or(|m| u[i].mem <= m + 1e-6),
                "node {i} mem"
            );
            for (d, c) in dev_caps(n).iter().enumerate() {
                assert!(
                    u[i].devs[d] <= c + 1e-6,
                    "node {i} device {d}: {}",
                    u[i].devs[d]
                );
                let h = &u[i].holders[d];
                if h.iter().any(|(_, whole)| *whole) {
                    assert_eq!(h.len(), 1, "node {i} device {d} shared by {h:?}");
                }
            }
        }
        // Gang: every start covers num_nodes distinct live nodes, with the asked devices.
        for c in cmds {
            if let Command::Start { job, placement } = c {
                let d = &self.jobs[job].demand;
                let mut nodes: Vec<usize> = placement.ranks.iter().map(|r| r.node).collect();
                assert_eq!(nodes.len(), d.num_nodes as usize);
                nodes.sort_unstable();
                nodes.dedup();
                assert_eq!(nodes.len(), d.num_nodes as usize, "ranks share a node");
                for r in &placement.ranks {
                    assert!(self.alive[r.node]);
                    let want = d.accelerator.as_ref().map_or(0.0, |(_, c)| *c);
                    let got: f64 = r.devices.iter().map(|x| x.share).sum();
                    if want >= 1.0 {
                        assert_eq!(got, want.ceil());
                    } else {
                        assert!((got - want).abs() < EPS);
                    }
                    let ids: Vec<String> = r
                        .devices
                        .iter()
                        .map(|x| format!("gpu{}", x.index))
                        .collect();
                    assert_eq!(r.visible_devices(), ids.join(","));
                }
            }
        }
        // No job on a lost node keeps running.
        for (id, j) in &self.jobs {
            if j.state == St::Running {
                for r in &j.placement.as_ref().unwrap().ranks {
                    assert!(
                        self.alive[r.node],
                        "job {id} still runs on lost node {}",
                        r.node
                    );
                }
            }
        }
        // The queue never loses or duplicates a job: the scheduler's view equals the model's.
        let pending: Vec<JobId> = s.pending().collect();
        let mut model_pending: Vec<(usize, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == St::Pending)
            .map(|(id, j)| (j.seq, *id))
            .collect();
        model_pending.sort_unstable();
        assert_eq!(
            pending,
            model_pending.iter().map(|p| p.1).collect::<Vec<_>>()
        );
        for (id, j) in &self.jobs {
            let want = match j.state {
                St::Pending => Some(JobState::Pending),
                St::Running => Some(JobState::Running),
                St::Stopping => Some(JobState::Stopping),
                St::Done => None,
            };
            assert_eq!(s.state(*id), want, "job {id}");
        }
        // Work-conserving: no pending job fits while its resources are idle, except behind a
        // starving head.
        let starving = s.starving_head(now);
        for &id in &pending {
            if self.fits(&u, &self.jobs[&id].demand) {
                assert!(
                    starving.is_some(),
                    "job {id} fits now but waits, and no head is starving"
                );
            }
        }
        // The starving head still fits on enough nodes beside what later jobs took after it
        // became the head and began to starve: it starts once the jobs running then have ended.
        // A lost node can take away room the head was promised, which no scheduler can undo;
        // so the jobs started in this step must leave the head the room it had before them
        // (all it needs, or what was left), on the nodes alive now.
        if let Some(h) = starving {
            let hj = &self.jobs[&h];
            let since = hj.submitted_at + self.bound;
            let head_step = hj.head_step.expect("the head was seen");
            let jumped =
                |j: &Job| j.seq > hj.seq && j.started_at > since && j.started_step >= head_step;
            let before = self.usage(|j| jumped(j) && j.started_step != step);
            let after = self.usage(jumped);
            let (had, has) = (
                self.room(&before, &hj.demand),
                self.room(&after, &hj.demand),
            );
            assert!(
                has >= had.min(hj.demand.num_nodes as usize),
                "starving head {h} was jumped: room {had} -> {has}"
            );
        }
    }
}

fn run(nodes: Vec<NodeSpec>, ops: Vec<Op>, bound: f64) {
    let mut s = Scheduler::new(
        nodes.clone(),
        Config {
            starvation_bound_s: bound,
        },
    );
    let mut m = Model {
        alive: vec![true; nodes.len()],
        nodes,
        jobs: BTreeMap::new(),
        next: 1,
        bound,
        step: 0,
    };
    let mut now = 0.0;
    let mut seq = 0;
    for op in ops {
        let event = match op {
            Op::Submit(demand) => {
                let job = m.next;
                m.next += 1;
                m.jobs.insert(
                    job,
                    Job {
                        demand: demand.clone(),
                        seq,
                        submitted_at: now,
                        started_at: 0.0,
                        started_step: 0,
                        head_step: None,
                        state: St::Pending,
                        placement: None,
                    },
                );
                seq += 1;
                Event::Submit { job, demand }
            }
            Op::Finish(i) | Op::RankFailed(i) => {
                let started: Vec<JobId> = m
                    .jobs
                    .iter()
                    .filter(|(_, j)| matches!(j.state, St::Running | St::Stopping))
                    .map(|(id, _)| *id)
                    .collect();
                if started.is_empty() {
                    continue;
                }
                let job = started[i % started.len()];
                if let Op::Finish(_) = op {
                    m.jobs.get_mut(&job).unwrap().state = St::Done;
                    Event::Finished { job }
                } else {
                    Event::RankFailed { job, rank: 0 }
                }
            }
            Op::Cancel(i) => {
                if m.next == 1 {
                    continue;
                }
                Event::Cancel {
                    job: 1 + (i as u64 % (m.next - 1)),
                }
            }
            Op::NodeLost(i) => {
                let node = i % m.nodes.len();
                m.alive[node] = false;
                Event::NodeLost { node }
            }
            Op::Tick(t) => {
                now += f64::from(t);
                let cmds = s.schedule(now);
                m.apply(&cmds, now);
                m.check(&s, now, &cmds);
                continue;
            }
        };
        let ev = event.clone();
        let cmds = s.handle(event, now);
        m.apply(&cmds, now);
        match &ev {
            Event::RankFailed { job, .. } => {
                // A running job is told to stop every rank (a stopping one already was).
                assert_eq!(m.jobs[job].state, St::Stopping);
            }
            Event::NodeLost { node } => {
                for j in m.jobs.values() {
                    if let Some(p) = &j.placement
                        && j.state != St::Done
                        && p.ranks.iter().any(|r| r.node == *node)
                    {
                        assert_eq!(j.state, St::Stopping, "a rank on the lost node");
                    }
                }
            }
            Event::Submit { job, demand } => {
                let rejected = cmds.iter().any(|c| matches!(c, Command::Dequeue { job: k, reason: DequeueReason::Rejected(_) } if k == job));
                assert_eq!(!rejected, m.ever_fits(demand), "submit {job}: {cmds:?}");
            }
            _ => {}
        }
        m.check(&s, now, &cmds);
    }
    // Drain: finish everything; every accepted job ends up started exactly once.
    for _ in 0..10_000 {
        let started: Vec<JobId> = s.started().collect();
        let Some(&job) = started.first() else { break };
        m.jobs.get_mut(&job).unwrap().state = St::Done;
        now += 1.0;
        let cmds = s.handle(Event::Finished { job }, now);
        m.apply(&cmds, now);
        m.check(&s, now, &cmds);
    }
    // On the drained cluster nothing waits: a job that lost nodes made impossible was dequeued.
    let left: Vec<JobId> = s.pending().collect();
    assert!(left.is_empty(), "{left:?} still pending on an idle cluster");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// SkyPilot's semantics: pure backfill, no guard.
    #[test]
    fn invariants_without_guard(
        nodes in prop::collection::vec(node_strategy(), 1..5),
        ops in prop::collection::vec(op_strategy(), 1..120),
    ) {
        run(nodes, ops, f64::INFINITY);
    }

    /// With a short starvation bound the guard is active most of the time.
    #[test]
    fn invariants_with_guard(
        nodes in prop::collection::vec(node_strategy(), 1..5),
        ops in prop::collection::vec(op_strategy(), 1..120),
    ) {
        run(nodes, ops, 30.0);
    }
}

#[test]
fn a_large_queue_on_a_large_cluster_fills_it_and_drains() {
    let nodes: Vec<NodeSpec> = (0..100)
        .map(|_| NodeSpec::cpus(32.0).with_acc(AccSpec::new("H100", 8.0)))
        .collect();
    let mut s = Scheduler::new(nodes, Config::default());
    for job in 0..5_000u64 {
        let d = match job % 4 {
            0 => Demand::gpus("H100", 1.0),
            1 => Demand::gpus("H100", 0.5),
            2 => Demand::gpus("H100", 8.0).on_nodes(2),
            _ => Demand::default(),
        };
        s.apply(Event::Submit { job, demand: d }, 0.0);
    }
    let mut started = 0;
    let mut now = 0.0;
    let mut cmds = s.schedule(now);
    loop {
        started += cmds
            .iter()
            .filter(|c| matches!(c, Command::Start { .. }))
            .count();
        let Some(job) = s.started().next() else { break };
        now += 1.0;
        cmds = s.handle(Event::Finished { job }, now);
    }
    assert_eq!(started, 5_000);
    assert_eq!(s.pending().count(), 0);
}

fn node(mem: Option<f64>, acc: Option<(&str, f64)>) -> NodeSpec {
    NodeSpec {
        cpus: None,
        memory_gb: mem,
        accelerators: acc
            .map(|(n, c)| {
                let mut a = AccSpec::new(n, c);
                a.device_ids = (0..8).map(|i| format!("gpu{i}")).collect();
                vec![a]
            })
            .unwrap_or_default(),
    }
}

fn sub(mem: Option<f64>, acc: Option<(&str, f64)>) -> Op {
    Op::Submit(Demand {
        num_nodes: 1,
        cpus: None,
        memory_gb: mem,
        accelerator: acc.map(|(n, c)| (n.to_string(), c)),
    })
}

/// Proptest's shrunk case (invariants_with_guard): job 9 (H100:2) starves; job 12 (H100:1)
/// rightly starts on node 1 since the head still fits on node 0 once its jobs end; then node 0
/// is lost. The head no longer fits beside job 12, through no fault of the scheduler: the model
/// must judge a start against the room the head had just before it, not against a lost node.
#[test]
fn starving_head_after_node_lost_regression() {
    let nodes = vec![
        node(Some(64.0), Some(("H100", 2.0))),
        node(Some(64.0), Some(("H100", 2.0))),
        node(None, None),
        node(None, None),
    ];
    let ops = vec![
        sub(None, Some(("a100", 0.25))),
        sub(None, Some(("a100", 0.25))),
        sub(None, None),
        sub(None, None),
        sub(None, Some(("H100", 0.5))),
        sub(Some(40.0), Some(("H100", 0.5))),
        sub(None, None),
        sub(Some(40.0), Some(("H100", 0.25))),
        sub(None, Some(("H100", 2.0))),
        sub(None, None),
        sub(None, Some(("H100", 0.25))),
        Op::Tick(31),
        sub(None, Some(("H100", 1.0))),
        sub(None, None),
        Op::NodeLost(188),
    ];
    run(nodes, ops, 30.0);
}
