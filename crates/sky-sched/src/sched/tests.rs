use super::*;
use crate::AccSpec;

fn h100(n: f64) -> NodeSpec {
    NodeSpec::cpus(8.0).with_acc(AccSpec::new("H100", n))
}

fn sched(nodes: Vec<NodeSpec>) -> Scheduler {
    Scheduler::new(nodes, Config::default())
}

fn submit(s: &mut Scheduler, job: JobId, d: Demand, now: f64) -> Vec<Command> {
    s.handle(Event::Submit { job, demand: d }, now)
}

/// (job, CUDA_VISIBLE_DEVICES of each rank) of the Start commands.
fn starts(cmds: &[Command]) -> Vec<(JobId, Vec<String>)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Start { job, placement } => Some((
                *job,
                placement
                    .ranks
                    .iter()
                    .map(RankAlloc::visible_devices)
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

fn cvd(job: JobId, ids: &str) -> (JobId, Vec<String>) {
    (job, vec![ids.to_string()])
}

fn pending(s: &Scheduler) -> Vec<JobId> {
    s.pending().collect()
}

#[test]
fn skypilot_five_job_example_step_by_step() {
    let mut s = sched(vec![h100(4.0)]);
    // The initial `sky launch` job takes all 4 GPUs.
    let c = submit(&mut s, 1, Demand::gpus("H100", 4.0), 0.0);
    assert_eq!(starts(&c), vec![cvd(1, "0,1,2,3")]);
    // job2..job5 are submitted while it runs: all PENDING (no free GPU).
    for (job, n) in [(2, 1.0), (3, 1.0), (4, 4.0), (5, 2.0)] {
        let c = submit(&mut s, job, Demand::gpus("H100", n), 60.0);
        assert!(c.is_empty(), "{c:?}");
    }
    assert_eq!(pending(&s), vec![2, 3, 4, 5]);
    // job1 ends: job2 and job3 take one GPU each, job4 (4 GPUs) keeps waiting, job5 takes the
    // remaining two.
    let c = s.handle(Event::Finished { job: 1 }, 540.0);
    assert_eq!(starts(&c), vec![cvd(2, "0"), cvd(3, "1"), cvd(5, "2,3")]);
    assert_eq!(s.state(4), Some(JobState::Pending));
    assert_eq!(s.state(5), Some(JobState::Running));
    // job2 and job3 end: only 2 GPUs free, job4 still waits.
    assert!(s.handle(Event::Finished { job: 2 }, 560.0).is_empty());
    assert!(s.handle(Event::Finished { job: 3 }, 570.0).is_empty());
    assert_eq!(s.state(4), Some(JobState::Pending));
    // Once job5 ends, all 4 GPUs are free and job4 runs on them.
    let c = s.handle(Event::Finished { job: 5 }, 600.0);
    assert_eq!(starts(&c), vec![cvd(4, "0,1,2,3")]);
    assert!(pending(&s).is_empty());
}

#[test]
fn the_five_job_example_holds_with_waits_just_under_the_default_bound() {
    let mut s = sched(vec![h100(4.0)]);
    submit(&mut s, 1, Demand::gpus("H100", 4.0), 0.0);
    for (job, n) in [(2, 1.0), (3, 1.0), (4, 4.0), (5, 2.0)] {
        submit(&mut s, job, Demand::gpus("H100", n), 0.0);
    }
    let c = s.handle(
        Event::Finished { job: 1 },
        crate::DEFAULT_STARVATION_BOUND_S,
    );
    assert_eq!(starts(&c).len(), 3, "{c:?}");
}

#[test]
fn starvation_guard_stops_jumping_ahead_of_a_starving_head() {
    let cfg = Config {
        starvation_bound_s: 100.0,
    };
    let mut s = Scheduler::new(vec![h100(4.0)], cfg);
    submit(&mut s, 1, Demand::gpus("H100", 2.0), 0.0);
    submit(&mut s, 2, Demand::gpus("H100", 4.0), 0.0); // the head, waiting
    // Before the bound, small jobs backfill past it.
    let c = submit(&mut s, 3, Demand::gpus("H100", 1.0), 50.0);
    assert_eq!(starts(&c), vec![cvd(3, "2")]);
    // After the bound: the head still does not fit; a 1-GPU job would take a device the head
    // needs once job1 and job3 end, so it waits.
    let c = submit(&mut s, 4, Demand::gpus("H100", 1.0), 150.0);
    assert!(starts(&c).is_empty(), "{c:?}");
    // CPU-only work does not delay the head: it still backfills.
    let c = submit(&mut s, 5, Demand::default(), 151.0);
    assert_eq!(starts(&c), vec![(5, vec![String::new()])]);
    // job1 ends: 2 GPUs idle, but job4 still may not take one.
    assert!(starts(&s.handle(Event::Finished { job: 1 }, 160.0)).is_empty());
    // job3 (started before the head starved) ends: the head runs, then job4 waits behind it.
    let c = s.handle(Event::Finished { job: 3 }, 170.0);
    assert_eq!(starts(&c), vec![cvd(2, "0,1,2,3")]);
    assert_eq!(pending(&s), vec![4]);
    let c = s.handle(Event::Finished { job: 2 }, 180.0);
    assert_eq!(starts(&c), vec![cvd(4, "0")]);
}

#[test]
fn starvation_guard_allows_backfill_on_nodes_the_head_does_not_need() {
    let cfg = Config {
        starvation_bound_s: 10.0,
    };
    let mut s = Scheduler::new(vec![h100(4.0), h100(4.0), h100(4.0), h100(4.0)], cfg);
    // Two 4-GPU jobs fill nodes 0 and 1; the head wants 3 nodes × 4 GPUs.
    submit(&mut s, 1, Demand::gpus("H100", 4.0), 0.0);
    submit(&mut s, 2, Demand::gpus("H100", 4.0), 0.0);
    submit(&mut s, 3, Demand::gpus("H100", 4.0).on_nodes(3), 0.0);
    // Starving. Once jobs 1 and 2 end, all 4 nodes would fit it: one node is spare, so a
    // 1-GPU job may take node 2.
    let c = submit(&mut s, 4, Demand::gpus("H100", 1.0), 20.0);
    assert_eq!(starts(&c), vec![cvd(4, "0")]);
    assert_eq!(s.placement(4).unwrap().ranks[0].node, 2);
    // Node 2 is already out of the head's reach: more work may go there.
    let c = submit(&mut s, 5, Demand::gpus("H100", 2.0), 21.0);
    assert_eq!(starts(&c), vec![cvd(5, "1,2")]);
    // Node 3 is the head's (node 2 has one device left): a 2-GPU job waits.
    let c = submit(&mut s, 6, Demand::gpus("H100", 2.0), 22.0);
    assert!(starts(&c).is_empty(), "{c:?}");
    s.handle(Event::Finished { job: 1 }, 30.0);
    let c = s.handle(Event::Finished { job: 2 }, 31.0);
    assert_eq!(starts(&c), vec![(3, vec!["0,1,2,3".into(); 3])]);
    let nodes: Vec<NodeId> = s
        .placement(3)
        .unwrap()
        .ranks
        .iter()
        .map(|r| r.node)
        .collect();
    assert_eq!(nodes, vec![0, 1, 3]);
}

#[test]
fn no_guard_means_pure_backfill() {
    let cfg = Config {
        starvation_bound_s: f64::INFINITY,
    };
    let mut s = Scheduler::new(vec![h100(4.0)], cfg);
    submit(&mut s, 1, Demand::gpus("H100", 2.0), 0.0);
    submit(&mut s, 2, Demand::gpus("H100", 4.0), 0.0);
    let c = submit(&mut s, 3, Demand::gpus("H100", 1.0), 1e12);
    assert_eq!(starts(&c), vec![cvd(3, "2")]);
    assert_eq!(s.starving_head(1e12), None);
}

#[test]
fn fractional_gpus_share_a_device_and_never_exceed_it() {
    let mut s = sched(vec![h100(2.0)]);
    let half = || Demand::gpus("H100", 0.5);
    assert_eq!(starts(&submit(&mut s, 1, half(), 0.0)), vec![cvd(1, "0")]);
    assert_eq!(starts(&submit(&mut s, 2, half(), 0.0)), vec![cvd(2, "0")]);
    assert_eq!(starts(&submit(&mut s, 3, half(), 0.0)), vec![cvd(3, "1")]);
    // A whole-device job cannot use a half-used device.
    assert!(starts(&submit(&mut s, 4, Demand::gpus("H100", 1.0), 0.0)).is_empty());
    // 0.3 + 0.5 fits device 1 (best fit: the fullest device with room).
    assert_eq!(
        starts(&submit(&mut s, 5, Demand::gpus("H100", 0.3), 0.0)),
        vec![cvd(5, "1")]
    );
    assert!(starts(&submit(&mut s, 6, Demand::gpus("H100", 0.5), 0.0)).is_empty());
    let p = s.placement(1).unwrap();
    assert_eq!(p.ranks[0].devices[0].share, 0.5);
    // Half of device 0 frees: job6 (0.5) backfills there; the whole-device job4 waits until
    // device 0 is entirely free.
    let c = s.handle(Event::Finished { job: 1 }, 1.0);
    assert_eq!(starts(&c), vec![cvd(6, "0")]);
    assert!(starts(&s.handle(Event::Finished { job: 2 }, 1.0)).is_empty());
    let c = s.handle(Event::Finished { job: 6 }, 1.0);
    assert_eq!(starts(&c), vec![cvd(4, "0")]);
}

#[test]
fn integer_demands_get_whole_distinct_devices_with_real_ids() {
    let node = NodeSpec::cpus(8.0).with_acc(AccSpec {
        name: "H100".into(),
        count: 4.0,
        device_ids: vec!["4".into(), "5".into(), "6".into(), "7".into()],
    });
    let mut s = sched(vec![node]);
    assert_eq!(
        starts(&submit(&mut s, 1, Demand::gpus("h100", 1.0), 0.0)),
        vec![cvd(1, "4")]
    );
    // 1.5 rounds up to 2 whole devices.
    assert_eq!(
        starts(&submit(&mut s, 2, Demand::gpus("H100", 1.5), 0.0)),
        vec![cvd(2, "5,6")]
    );
    assert!(starts(&submit(&mut s, 3, Demand::gpus("H100", 2.0), 0.0)).is_empty());
    let c = s.handle(Event::Finished { job: 1 }, 0.0);
    assert_eq!(starts(&c), vec![cvd(3, "4,7")]);
}

#[test]
fn cpu_only_jobs_default_to_half_a_vcpu_and_explicit_cpus_are_honoured() {
    let mut s = sched(vec![NodeSpec::cpus(2.0)]);
    for job in 1..=4 {
        let c = submit(&mut s, job, Demand::default(), 0.0);
        assert_eq!(starts(&c).len(), 1, "job {job}: {c:?}");
        assert_eq!(s.placement(job).unwrap().ranks[0].cpus, 0.5);
    }
    assert!(starts(&submit(&mut s, 5, Demand::default(), 0.0)).is_empty());
    let mut s = sched(vec![NodeSpec::cpus(4.0)]);
    assert_eq!(
        starts(&submit(&mut s, 1, Demand::default().with_cpus(3.0), 0.0)).len(),
        1
    );
    assert!(starts(&submit(&mut s, 2, Demand::default().with_cpus(2.0), 0.0)).is_empty());
    assert_eq!(
        starts(&submit(&mut s, 3, Demand::default().with_cpus(1.0), 0.0)).len(),
        1
    );
    // Unaccounted vCPUs never limit.
    let mut s = sched(vec![NodeSpec::default()]);
    for job in 1..=100 {
        assert_eq!(
            starts(&submit(&mut s, job, Demand::default(), 0.0)).len(),
            1
        );
    }
}

#[test]
fn memory_is_accounted_when_both_sides_name_it() {
    let node = NodeSpec {
        cpus: Some(8.0),
        memory_gb: Some(32.0),
        accelerators: Vec::new(),
    };
    let mut s = sched(vec![node]);
    let mem = |gb| Demand {
        memory_gb: Some(gb),
        ..Demand::default()
    };
    assert_eq!(starts(&submit(&mut s, 1, mem(20.0), 0.0)).len(), 1);
    assert!(starts(&submit(&mut s, 2, mem(20.0), 0.0)).is_empty());
    assert_eq!(starts(&submit(&mut s, 3, mem(12.0), 0.0)).len(), 1);
    assert!(matches!(
        submit(&mut s, 4, mem(64.0), 0.0).as_slice(),
        [Command::Dequeue {
            reason: DequeueReason::Rejected(Unfit::NoRoom { .. }),
            ..
        }]
    ));
}

#[test]
fn gang_starts_on_distinct_nodes_all_at_once_or_not_at_all() {
    let mut s = sched(vec![h100(4.0), h100(4.0), h100(4.0)]);
    submit(&mut s, 1, Demand::gpus("H100", 2.0), 0.0); // node 0 half used
    let c = submit(&mut s, 2, Demand::gpus("H100", 4.0).on_nodes(3), 0.0);
    assert!(c.is_empty(), "only 2 nodes have 4 free GPUs: {c:?}");
    let c = submit(&mut s, 3, Demand::gpus("H100", 4.0).on_nodes(2), 0.0);
    let [Command::Start { job: 3, placement }] = c.as_slice() else {
        panic!("{c:?}")
    };
    let nodes: Vec<NodeId> = placement.ranks.iter().map(|r| r.node).collect();
    assert_eq!(nodes, vec![1, 2]);
    s.handle(Event::Finished { job: 3 }, 1.0);
    let c = s.handle(Event::Finished { job: 1 }, 1.0);
    assert_eq!(starts(&c), vec![(2, vec!["0,1,2,3".to_string(); 3])]);
}

#[test]
fn a_failed_rank_or_lost_node_kills_every_rank_and_holds_resources_until_finished() {
    let mut s = sched(vec![h100(1.0), h100(1.0)]);
    submit(&mut s, 1, Demand::gpus("H100", 1.0).on_nodes(2), 0.0);
    submit(&mut s, 2, Demand::gpus("H100", 1.0), 0.0);
    let c = s.handle(Event::RankFailed { job: 1, rank: 1 }, 1.0);
    assert_eq!(
        c,
        vec![Command::Kill {
            job: 1,
            reason: KillReason::RankFailed { rank: 1 }
        }]
    );
    assert_eq!(s.state(1), Some(JobState::Stopping));
    // A second failure report or a cancel is not a second kill.
    assert!(
        s.handle(Event::RankFailed { job: 1, rank: 0 }, 1.0)
            .is_empty()
    );
    assert!(s.handle(Event::Cancel { job: 1 }, 1.0).is_empty());
    let c = s.handle(Event::Finished { job: 1 }, 2.0);
    assert_eq!(starts(&c), vec![cvd(2, "0")]);
    assert_eq!(s.state(1), None);

    // Node lost: every job with a rank there is killed; queued jobs that can no longer fit
    // leave the queue; the node hosts nothing more.
    submit(&mut s, 3, Demand::gpus("H100", 1.0), 3.0); // node 1
    submit(&mut s, 4, Demand::gpus("H100", 1.0).on_nodes(2), 3.0); // waits
    submit(&mut s, 5, Demand::gpus("H100", 1.0), 3.0); // waits
    let c = s.handle(Event::NodeLost { node: 1 }, 4.0);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(
        c[0],
        Command::Kill {
            job: 3,
            reason: KillReason::NodeLost { node: 1 }
        }
    );
    assert!(matches!(
        &c[1],
        Command::Dequeue {
            job: 4,
            reason: DequeueReason::Unschedulable(Unfit::TooManyNodes { want: 2, have: 1 })
        }
    ));
    assert!(!s.node_alive(1));
    assert!(starts(&s.handle(Event::Finished { job: 3 }, 5.0)).is_empty());
    let c = s.handle(Event::Finished { job: 2 }, 5.0);
    assert_eq!(starts(&c), vec![cvd(5, "0")]);
    assert_eq!(s.placement(5).unwrap().ranks[0].node, 0);
}

#[test]
fn cancel_pending_and_running() {
    let mut s = sched(vec![h100(1.0)]);
    submit(&mut s, 1, Demand::gpus("H100", 1.0), 0.0);
    submit(&mut s, 2, Demand::gpus("H100", 1.0), 0.0);
    submit(&mut s, 3, Demand::gpus("H100", 1.0), 0.0);
    assert_eq!(
        s.handle(Event::Cancel { job: 2 }, 1.0),
        vec![Command::Dequeue {
            job: 2,
            reason: DequeueReason::Cancelled
        }]
    );
    assert_eq!(s.state(2), None);
    assert_eq!(
        s.handle(Event::Cancel { job: 1 }, 1.0),
        vec![Command::Kill {
            job: 1,
            reason: KillReason::Cancelled
        }]
    );
    // Still holds its GPU until its processes are gone.
    assert_eq!(pending(&s), vec![3]);
    let c = s.handle(Event::Finished { job: 1 }, 2.0);
    assert_eq!(starts(&c), vec![cvd(3, "0")]);
    assert!(s.handle(Event::Cancel { job: 99 }, 2.0).is_empty());
}

#[test]
fn impossible_duplicate_and_malformed_demands_are_rejected() {
    let mut s = sched(vec![h100(4.0), h100(4.0)]);
    let rejected = |c: Vec<Command>| match c.as_slice() {
        [
            Command::Dequeue {
                reason: DequeueReason::Rejected(e),
                ..
            },
        ] => e.to_string(),
        other => panic!("{other:?}"),
    };
    let e = rejected(submit(&mut s, 1, Demand::gpus("H100", 8.0), 0.0));
    assert_eq!(
        e,
        "fewer than 1 nodes of the cluster have 0.5 vCPUs and H100:8 when idle"
    );
    let e = rejected(submit(&mut s, 1, Demand::default().on_nodes(3), 0.0));
    assert_eq!(e, "the job asks for 3 nodes but the cluster has 2");
    let e = rejected(submit(&mut s, 1, Demand::gpus("A100", 1.0), 0.0));
    assert!(e.contains("A100:1"), "{e}");
    let e = rejected(submit(&mut s, 1, Demand::default().on_nodes(0), 0.0));
    assert!(e.contains("num_nodes"), "{e}");
    let e = rejected(submit(&mut s, 1, Demand::gpus("H100", f64::NAN), 0.0));
    assert!(e.contains("accelerator count"), "{e}");
    let e = rejected(submit(&mut s, 1, Demand::default().with_cpus(-1.0), 0.0));
    assert!(e.contains("cpus"), "{e}");
    assert!(s.check(&Demand::gpus("H100", 4.0).on_nodes(2)).is_ok());
    assert_eq!(starts(&submit(&mut s, 1, Demand::default(), 0.0)).len(), 1);
    let e = rejected(submit(&mut s, 1, Demand::default(), 0.0));
    assert!(e.contains("already submitted"), "{e}");
    // A zero accelerator count is a CPU-only job.
    assert_eq!(
        starts(&submit(&mut s, 2, Demand::gpus("H100", 0.0), 0.0)),
        vec![(2, vec![String::new()])]
    );
}

#[test]
fn the_same_events_give_the_same_commands() {
    let run = || {
        let mut s = sched(vec![h100(4.0), h100(2.0), NodeSpec::cpus(1.0)]);
        let mut all = Vec::new();
        for job in 0..40u64 {
            let d = match job % 5 {
                0 => Demand::gpus("H100", 0.5),
                1 => Demand::gpus("H100", 2.0),
                2 => Demand::default(),
                3 => Demand::gpus("H100", 1.0).on_nodes(2),
                _ => Demand::default().with_cpus(1.0).on_nodes(3),
            };
            all.extend(submit(&mut s, job, d, job as f64));
            if job % 3 == 0 {
                let first = s.started().next();
                if let Some(j) = first {
                    all.extend(s.handle(Event::Finished { job: j }, job as f64));
                }
            }
        }
        all
    };
    assert_eq!(run(), run());
}

#[test]
fn starvation_guard_counts_spare_nodes_across_one_pass() {
    let cfg = Config {
        starvation_bound_s: 10.0,
    };
    let mut s = Scheduler::new(vec![h100(4.0); 4], cfg);
    submit(&mut s, 1, Demand::gpus("H100", 4.0), 0.0);
    submit(&mut s, 2, Demand::gpus("H100", 4.0), 0.0);
    submit(&mut s, 3, Demand::gpus("H100", 4.0).on_nodes(3), 0.0);
    // Two 4-GPU jobs arrive together; only one node is spare for the starving head.
    s.apply(
        Event::Submit {
            job: 4,
            demand: Demand::gpus("H100", 4.0),
        },
        20.0,
    );
    s.apply(
        Event::Submit {
            job: 5,
            demand: Demand::gpus("H100", 4.0),
        },
        20.0,
    );
    let c = s.schedule(20.0);
    assert_eq!(starts(&c), vec![cvd(4, "0,1,2,3")]);
    assert_eq!(s.starving_head(20.0), Some(3));
    assert_eq!(pending(&s), vec![3, 5]);
}
