//! Running jobs: env, logs, failures, cancel, backfill with resources.

use std::path::Path;

use sky_agent::{AgentClient, JobSpec, JobStatus};

use crate::support::{
    TestCluster, exchange, pid_alive, read, run, token_line, wait_gone, wait_pid_file,
};

#[tokio::test]
async fn three_nodes_see_their_rank_and_the_same_ips() {
    let c = TestCluster::start(3).await;
    let id = c
        .submit(JobSpec {
            num_nodes: 3,
            envs: vec![("GREETING".into(), "hi".into())],
            setup: Some("echo setup-rank=$SKYPILOT_SETUP_NODE_RANK".into()),
            ..run(concat!(
                "echo rank=$SKYPILOT_NODE_RANK n=$SKYPILOT_NUM_NODES g=$GREETING home=$HOME\n",
                "echo \"ips=$(echo \"$SKYPILOT_NODE_IPS\" | paste -sd,)\"\n",
                "echo task=$SKYPILOT_TASK_ID job=$SKYPILOT_INTERNAL_JOB_ID user=$SKYPILOT_USER\n",
                "echo info=$SKYPILOT_CLUSTER_INFO",
            ))
        })
        .await;
    assert_eq!(id, 1);
    let text = c.logs(id).await;
    let j = c.job(id).await;
    assert_eq!(j.status, JobStatus::Succeeded, "{text}");
    assert_eq!(j.exit_codes, vec![0, 0, 0]);
    assert_eq!(j.resources, "3x[CPU:0.5]");
    let ips = c.ips.join(",");
    let dir = Path::new(&j.log_dir);
    assert!(
        dir.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("sky-20"),
        "{}",
        dir.display()
    );
    for (rank, name) in ["0-head.log", "1-worker1.log", "2-worker2.log"]
        .iter()
        .enumerate()
    {
        let log = read(dir.join("tasks").join(name));
        let home = c.homes[rank].display();
        assert!(
            log.contains(&format!("rank={rank} n=3 g=hi home={home}\n")),
            "{log}"
        );
        assert!(log.contains(&format!("ips={ips}\n")), "{log}");
        assert!(log.contains("user=tester"), "{log}");
        assert!(log.contains(&format!("job={id} ")), "{log}");
        assert!(log.contains("_test_1 "), "{log}");
        assert!(
            log.contains(
                r#"info={"cloud":"local","cluster_name":"test","region":"local","zone":"local"}"#
            ),
            "{log}"
        );
    }
    // run.log: every rank, SkyPilot-style prefixes; setup output too.
    assert!(text.contains("(head, rank=0, pid="), "{text}");
    assert!(text.contains("rank=2, pid="), "{text}");
    assert!(
        text.contains(&format!("ip={}) rank=2 n=3", c.ips[2])),
        "{text}"
    );
    for r in 0..3 {
        assert!(text.contains(&format!("setup-rank={r}")), "{text}");
    }
    let setup = read(dir.join("setup.log"));
    assert_eq!(setup.lines().count(), 3, "{setup}");
}

#[tokio::test]
async fn single_node_logs_are_plain_and_run_in_the_workdir() {
    let c = TestCluster::start(1).await;
    std::fs::create_dir_all(c.homes[0].join("sky_workdir")).unwrap();
    let id = c
        .submit(run("echo hello from $(basename $PWD); echo err >&2"))
        .await;
    let text = c.logs(id).await;
    assert_eq!(text, "hello from sky_workdir\nerr\n");
    let j = c.job(id).await;
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(read(Path::new(&j.log_dir).join("tasks/run.log")), text);
    // `exec` a second job; both SUCCEEDED; replay without follow gives the same output.
    let id2 = c.submit(run("echo second")).await;
    assert_eq!(c.logs(id2).await, "second\n");
    let q = c.head.queue(false).await.unwrap();
    assert_eq!(
        q.iter().map(|j| (j.id, j.status)).collect::<Vec<_>>(),
        vec![(1, JobStatus::Succeeded), (2, JobStatus::Succeeded)]
    );
    let mut replay = Vec::new();
    let end = c
        .head
        .logs(Some(id), false, None, &mut |b| replay.extend_from_slice(b))
        .await
        .unwrap();
    assert_eq!(String::from_utf8(replay).unwrap(), text);
    assert_eq!(end.status, JobStatus::Succeeded);
    let mut tail = Vec::new();
    c.head
        .logs(Some(id), false, Some(1), &mut |b| tail.extend_from_slice(b))
        .await
        .unwrap();
    assert_eq!(String::from_utf8(tail).unwrap(), "err\n");
    // latest job when no id
    let end = c.head.logs(None, false, None, &mut |_| {}).await.unwrap();
    assert_eq!(end.job_id, id2);
}

#[tokio::test]
async fn failing_run_is_failed_with_its_exit_code() {
    let c = TestCluster::start(1).await;
    let id = c.submit(run("echo before; exit 3")).await;
    let j = c.wait_end(id).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.exit_codes, vec![3]);
}

#[tokio::test]
async fn a_failing_rank_fails_the_job_and_stops_the_others() {
    let c = TestCluster::start(3).await;
    // Rank 1 fails once ranks 0 and 2 are running (their pid files exist).
    let (p0, p2) = (c.homes[0].join("pid"), c.homes[2].join("pid"));
    let id = c
        .submit(JobSpec {
            num_nodes: 3,
            ..run(&format!(
                "if [ $SKYPILOT_NODE_RANK = 1 ]; then while [ ! -s {} ] || [ ! -s {} ]; do sleep 0.02; done; exit 7; fi; echo $$ > $HOME/pid; sleep 60",
                p0.display(),
                p2.display()
            ))
        })
        .await;
    let j = c.wait_end(id).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.exit_codes[1], 7);
    // The others were stopped (SIGTERM), not left to finish their `sleep 60`.
    assert_eq!(j.exit_codes[0], 143, "{j:?}");
    assert_eq!(j.exit_codes[2], 143, "{j:?}");
    for p in [p0, p2] {
        wait_gone(wait_pid_file(&p).await).await;
    }
}

#[tokio::test]
async fn failing_setup_is_failed_setup_and_run_never_starts() {
    let c = TestCluster::start(2).await;
    // Rank 1 fails only after rank 0's setup has exited and been reaped (its pid, in a marker
    // both can see, is gone from /proc), so rank 0's exit code is deterministically 0 rather
    // than racing the kill of the other ranks.
    let marker = c.homes[0].join("setup0-pid");
    let id = c
        .submit(JobSpec {
            num_nodes: 2,
            setup: Some(format!(
                "echo setting up; if [ $SKYPILOT_SETUP_NODE_RANK = 0 ]; then echo $$ > {m}.tmp; mv {m}.tmp {m}; else while [ ! -s {m} ]; do sleep 0.02; done; while [ -e /proc/$(cat {m}) ]; do sleep 0.02; done; exit 4; fi",
                m = marker.display()
            )),
            ..run("touch $HOME/ran")
        })
        .await;
    let j = c.wait_end(id).await;
    assert_eq!(j.status, JobStatus::FailedSetup);
    assert_eq!(j.exit_codes, vec![0, 4]);
    assert!(!c.homes[0].join("ran").exists());
    assert!(read(Path::new(&j.log_dir).join("setup.log")).contains("setting up"));
    // --no-setup skips it
    let id = c
        .submit(JobSpec {
            num_nodes: 2,
            setup: Some("exit 1".into()),
            run_setup: false,
            ..run("true")
        })
        .await;
    assert_eq!(c.wait_end(id).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn cancel_running_kills_every_rank() {
    let c = TestCluster::start(2).await;
    let id = c
        .submit(JobSpec {
            num_nodes: 2,
            ..run("echo $$ > $HOME/pid; trap '' TERM; sleep 300 & wait; sleep 300")
        })
        .await;
    c.wait_status(id, JobStatus::Running).await;
    let pids = [
        wait_pid_file(&c.homes[0].join("pid")).await,
        wait_pid_file(&c.homes[1].join("pid")).await,
    ];
    assert!(pids.iter().all(|&p| pid_alive(p)));
    assert_eq!(c.head.cancel(&[id], false).await.unwrap(), vec![id]);
    let j = c.job(id).await;
    assert_eq!(j.status, JobStatus::Cancelled);
    for p in pids {
        wait_gone(p).await; // SIGTERM ignored: gone through SIGKILL after the grace
    }
    // terminal jobs are not cancelled again
    assert!(c.head.cancel(&[id], false).await.unwrap().is_empty());
}

#[tokio::test]
async fn gpu_jobs_wait_for_devices_while_cpu_jobs_backfill() {
    let c = TestCluster::start_with(1, Some(("H100", 4.0)), |_| {}).await;
    let go = c.dir.path().join("go");
    let wait_go = format!(
        "echo cuda=$CUDA_VISIBLE_DEVICES gpus=$SKYPILOT_NUM_GPUS_PER_NODE; while [ ! -f {} ]; do sleep 0.02; done",
        go.display()
    );
    let gpus = |n: f64| Some(("H100".to_string(), n));
    let big = c
        .submit(JobSpec {
            accelerators: gpus(4.0),
            ..run(&wait_go)
        })
        .await;
    c.wait_status(big, JobStatus::Running).await;
    let small = c
        .submit(JobSpec {
            accelerators: gpus(1.0),
            ..run("echo cuda=$CUDA_VISIBLE_DEVICES")
        })
        .await;
    // The CPU-only job fits beside the 4-GPU job: it backfills past the waiting GPU job.
    let cpu = c.submit(run("echo cpu=[$CUDA_VISIBLE_DEVICES]")).await;
    assert_eq!(c.logs(cpu).await, "cpu=[]\n");
    assert_eq!(c.job(cpu).await.status, JobStatus::Succeeded);
    assert_eq!(c.job(small).await.status, JobStatus::Pending);
    assert_eq!(c.job(small).await.resources, "1x[H100:1]");
    std::fs::write(&go, "").unwrap();
    assert_eq!(c.logs(big).await, "cuda=0,1,2,3 gpus=4\n");
    assert_eq!(c.logs(small).await, "cuda=0\n");
    // can never fit → refused at submit
    let err = c
        .head
        .submit(&JobSpec {
            accelerators: gpus(8.0),
            ..run("true")
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("can never run"), "{err}");
    let err = c
        .head
        .submit(&JobSpec {
            num_nodes: 2,
            ..run("true")
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2 nodes"), "{err}");
}

#[tokio::test]
async fn cancel_pending_lets_the_queue_move_on() {
    let c = TestCluster::start_with(1, Some(("H100", 1.0)), |_| {}).await;
    let gpu = || JobSpec {
        accelerators: Some(("H100".into(), 1.0)),
        ..run("sleep 30")
    };
    let a = c.submit(gpu()).await;
    let b = c.submit(gpu()).await;
    c.wait_status(a, JobStatus::Running).await;
    assert_eq!(c.head.cancel(&[b], false).await.unwrap(), vec![b]);
    assert_eq!(c.job(b).await.status, JobStatus::Cancelled);
    let all = c.head.cancel(&[], true).await.unwrap();
    assert_eq!(all, vec![a]);
    assert_eq!(c.job(a).await.status, JobStatus::Cancelled);
}

#[tokio::test]
async fn logs_follow_streams_until_the_job_ends() {
    let c = TestCluster::start(1).await;
    // The job prints line1, then waits until the follower has received it.
    let go = c.dir.path().join("go");
    let id = c
        .submit(run(&format!(
            "echo line1; while [ ! -f {} ]; do sleep 0.02; done; echo line2; echo line3; exit 2",
            go.display()
        )))
        .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = c.head.clone();
    let follower = tokio::spawn(async move {
        client
            .logs(Some(id), true, None, &mut |b| {
                let _ = tx.send(b.to_vec());
            })
            .await
            .unwrap()
    });
    // Streamed, not delivered at the end: line1 arrives while the job still runs.
    let first = rx.recv().await.expect("a first chunk while the job runs");
    assert_eq!(String::from_utf8_lossy(&first), "line1\n");
    assert_eq!(c.job(id).await.status, JobStatus::Running);
    std::fs::write(&go, "").unwrap();
    let mut text = String::from_utf8(first).unwrap();
    while let Some(b) = rx.recv().await {
        text.push_str(&String::from_utf8_lossy(&b));
    }
    let end = follower.await.unwrap();
    assert_eq!(end.status, JobStatus::Failed);
    assert_eq!(end.exit_codes, vec![2]);
    assert_eq!(text, "line1\nline2\nline3\n");
}

/// Jobs submitted one after another each get the next id, run and succeed. (How long submit →
/// RUNNING takes is measured by `benches/submit.rs`, not here.)
#[tokio::test]
async fn jobs_submitted_one_after_another_each_run_and_succeed() {
    let c = TestCluster::start(1).await;
    for want in 1..=3 {
        let id = c.submit(run("echo job=$SKYPILOT_INTERNAL_JOB_ID")).await;
        assert_eq!(id, want);
        assert_eq!(c.logs(id).await, format!("job={id}\n"));
        let j = c.wait_end(id).await;
        assert_eq!(j.status, JobStatus::Succeeded, "{j:?}");
        assert!(j.started_at.is_some(), "{j:?}");
    }
}

#[tokio::test]
async fn bad_requests_get_an_error_line_and_the_agent_lives_on() {
    let c = TestCluster::start(2).await;
    for line in [
        "not json\n",
        "{\"op\":\"nope\"}\n",
        "{\"op\":\"submit\",\"num_nodes\":\"x\"}\n",
    ] {
        let bytes = format!("{}{line}", token_line(&c.token));
        let reply = exchange(c.head.addr(), bytes.as_bytes()).await;
        assert!(
            reply.starts_with(r#"{"kind":"error","message":"bad request"#),
            "{reply}"
        );
    }
    // a token line that is not one
    for first in ["not json\n", "[1]\n"] {
        let reply = exchange(c.head.addr(), first.as_bytes()).await;
        assert!(
            reply.starts_with(r#"{"kind":"error","message":"bad request"#),
            "{reply}"
        );
    }
    c.head.ping().await.unwrap();
    // job requests to a worker are refused with a hint
    let worker = std::fs::read_to_string(c.homes[1].join(".sky/agent.addr")).unwrap();
    let worker = AgentClient::connect(worker.trim().parse().unwrap(), c.token.clone())
        .await
        .unwrap();
    assert!(!worker.ping().await.unwrap().head);
    let err = worker.queue(true).await.unwrap_err();
    assert!(
        err.to_string().contains("send job requests to the head"),
        "{err}"
    );
    let err = c
        .head
        .logs(Some(99), false, None, &mut |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("job 99 not found"), "{err}");
    let err = c
        .head
        .submit(&JobSpec {
            num_nodes: 0,
            ..run("true")
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("num_nodes"), "{err}");
}

#[tokio::test]
async fn requests_without_the_cluster_token_are_refused_and_do_nothing() {
    use sky_agent::{JobStatus as S, Token};
    let c = TestCluster::start(2).await;
    let marker = c.dir.path().join("must-not-exist");
    let submit = format!(
        r#""op":"submit","run":"touch {}","num_nodes":1"#,
        marker.display()
    );
    let worker: std::net::SocketAddr = std::fs::read_to_string(c.homes[1].join(".sky/agent.addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let exec = format!(
        r#""op":"exec","job_id":7,"rank":1,"script":"touch {}","env":[]"#,
        marker.display()
    );
    let wrong = format!(r#"{{"token":"{}x"}}"#, c.token.expose());
    for (addr, first, body) in [
        (c.head.addr(), "{}", format!("{{{submit}}}")),
        (c.head.addr(), r#"{"token":""}"#, format!("{{{submit}}}")),
        (c.head.addr(), &wrong, format!("{{{submit}}}")),
        (worker, "{}", format!("{{{exec}}}")),
        (worker, r#"{"token":"nope"}"#, format!("{{{exec}}}")),
        // protocol 2's single line
        (
            worker,
            &format!(r#"{{"token":"nope",{exec}}}"#),
            String::new(),
        ),
    ] {
        let reply = exchange(addr, format!("{first}\n{body}\n").as_bytes()).await;
        assert!(
            reply.starts_with(r#"{"kind":"error","message":"unauthorized"#),
            "{first} {body} -> {reply}"
        );
    }
    // A client with another cluster's token is refused too, by every call.
    let other = AgentClient::new(c.head.addr(), Token::generate().unwrap());
    let e = other.ping().await.unwrap_err().to_string();
    assert!(e.contains("unauthorized"), "{e}");
    assert!(other.cancel(&[], true).await.is_err());
    // Each refusal was answered before anything ran: the queue is empty, and the first job
    // the real token submits is job 1 (no refused submit took an id).
    assert!(c.head.queue(true).await.unwrap().is_empty());
    // The real token works, and the head's own requests to its worker carry it.
    let id = c
        .submit(JobSpec {
            num_nodes: 2,
            ..run("echo rank=$SKYPILOT_NODE_RANK")
        })
        .await;
    assert_eq!(id, 1);
    let j = c.wait_for(id, |j| j.status.is_terminal()).await;
    assert_eq!(j.status, S::Succeeded, "{}", c.logs(id).await);
    let q = c.head.queue(true).await.unwrap();
    assert_eq!(q.iter().map(|j| j.id).collect::<Vec<_>>(), vec![1]);
    // Neither a refused submit to the head nor a refused exec on the worker ran.
    assert!(!marker.exists());
}

#[tokio::test]
async fn a_task_id_the_job_brings_wins_over_the_agents() {
    let c = TestCluster::start(1).await;
    let id = c
        .submit(JobSpec {
            envs: vec![("SKYPILOT_TASK_ID".into(), "sky-managed-1_train_7-0".into())],
            ..run("echo task=$SKYPILOT_TASK_ID")
        })
        .await;
    let text = c.logs(id).await;
    assert_eq!(c.job(id).await.status, JobStatus::Succeeded, "{text}");
    assert!(text.contains("task=sky-managed-1_train_7-0\n"), "{text}");
}
