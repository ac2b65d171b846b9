//! Agent restarts and the one-shot orphan sweep.

use std::time::Duration;

use sky_agent::{AgentClient, JobStatus, mark_orphans_failed_driver, read_agent_addr};

use crate::support::{TestCluster, WAIT, pid_alive, run, wait_gone, wait_pid_file};

#[tokio::test]
async fn a_restarted_head_marks_orphans_failed_driver_and_kills_them() {
    let mut c = TestCluster::start(1).await;
    let id = c.submit(run("echo $$ > $HOME/pid; sleep 300")).await;
    let pending = c.submit(run("true")).await; // same node, cpu fits: runs too
    c.wait_status(id, JobStatus::Running).await;
    c.wait_end(pending).await;
    let pid = wait_pid_file(&c.homes[0].join("pid")).await;
    c.stop_head().await;
    assert!(pid_alive(pid), "an agent that dies leaves its jobs running");
    assert!(!c.homes[0].join(".sky/agent.addr").exists());
    c.start_head().await;
    let j = c.job(id).await;
    assert_eq!(j.status, JobStatus::FailedDriver);
    assert!(j.ended_at.is_some());
    wait_gone(pid).await;
    // ids continue
    assert_eq!(c.submit(run("true")).await, 3);
    let addr = read_agent_addr(&c.homes[0], Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(addr, c.head.addr());
}

#[tokio::test]
async fn mark_orphans_without_an_agent() {
    let mut c = TestCluster::start(2).await;
    let id = c
        .submit(sky_agent::JobSpec {
            num_nodes: 2,
            ..run("echo $$ > $HOME/pid; sleep 300")
        })
        .await;
    c.wait_status(id, JobStatus::Running).await;
    let head_pid = wait_pid_file(&c.homes[0].join("pid")).await;
    let worker_pid = wait_pid_file(&c.homes[1].join("pid")).await;
    c.stop_head().await;
    // the worker notices its head is gone and kills the rank
    wait_gone(worker_pid).await;
    let home = c.homes[0].clone();
    let marked = tokio::task::spawn_blocking(move || mark_orphans_failed_driver(&home))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marked, vec![id]);
    wait_gone(head_pid).await;
    let home = c.homes[0].clone();
    let again = tokio::task::spawn_blocking(move || mark_orphans_failed_driver(&home))
        .await
        .unwrap()
        .unwrap();
    assert!(again.is_empty());
    c.start_head().await;
    assert_eq!(c.job(id).await.status, JobStatus::FailedDriver);
}

#[tokio::test]
async fn shutdown_request_stops_the_agent() {
    let c = TestCluster::start(1).await;
    c.head.shutdown().await.unwrap();
    // The agent stops listening (bounded wait: it acts on the request after replying).
    let deadline = tokio::time::Instant::now() + WAIT;
    while AgentClient::connect(c.head.addr(), c.token.clone())
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent still answers after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
