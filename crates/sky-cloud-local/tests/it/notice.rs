//! The simulated preemption notice: the notice file on every node and SIGTERM to the job
//! processes before the nodes go, the agents left alone until the preemption.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sky_cloud_local::pid_alive;
use sky_provider::{
    CloudProvider, InstanceState, JOB_PROCESS_ENV, PREEMPTION_NOTICE_ENV, PREEMPTION_NOTICE_FILE,
};

use crate::{leftovers, provider, request, run, runner, wait_until};

fn notice_of(node: &Path) -> Option<i64> {
    std::fs::read_to_string(node.join(PREEMPTION_NOTICE_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// A stand-in for a job: records the notice it found when SIGTERM came, then exits.
const JOB: &str = r#"trap 'cat "$HOME/.sky/preemption_notice" > "$HOME/term.tmp" 2>/dev/null; echo "$SKY_JOB_PROCESS" >> "$HOME/term.tmp"; mv "$HOME/term.tmp" "$HOME/term"; exit 0' TERM
while :; do sleep 0.05; done"#;
/// A stand-in for a node agent: records the node's state at any SIGTERM it gets and keeps
/// running (a preemption marks the nodes stopped before it signals them).
const AGENT: &str = r#"trap '{ cat "$HOME/.sky/state"; echo; } >> "$HOME/agent-term"' TERM
while :; do sleep 0.05; done"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_get_the_notice_and_sigterm_before_the_nodes_go_agents_survive_it() {
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(
        tmp.path(),
        json!({"regions": [{"name": "r", "zones": [
            {"name": "z", "preempt_after_seconds": 6, "preempt_notice_seconds": 3},
            {"name": "quiet", "preempt_after_seconds": 3600}
        ]}]}),
    );
    let mut req = request("spot", 2, "r", Some("z"));
    req.use_spot = true;
    let h = p.run_instances(&req).await.unwrap();
    let nodes = p.query_instances(&h).await.unwrap();
    let homes: Vec<_> = nodes
        .iter()
        .map(|n| p.node_dir(&h.cluster_name_on_cloud, n.rank))
        .collect();
    let bash = |script: &str| vec!["bash".to_string(), "-c".into(), script.into()];
    let mut agents = Vec::new();
    for n in &nodes {
        let r = runner(&p, &h, n).await;
        // What the provider starts on a node never carries the job markers.
        let (code, out) = run(
            r.as_ref(),
            &format!("echo ${{{JOB_PROCESS_ENV}:-none}} ${{{PREEMPTION_NOTICE_ENV}:-none}}"),
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "none none\n"));
        agents.push(
            r.spawn_detached(&bash(AGENT), &[], "agent.log")
                .await
                .unwrap(),
        );
    }
    // The job runs on the worker node, marked as sky-agent marks its job processes.
    let r1 = runner(&p, &h, &nodes[1]).await;
    let job = r1
        .spawn_detached(
            &bash(JOB),
            &[(JOB_PROCESS_ENV.to_string(), "1".to_string())],
            "job.log",
        )
        .await
        .unwrap();

    let term = homes[1].join("term");
    assert!(
        wait_until(|| term.exists(), Duration::from_secs(30)).await,
        "the job got no SIGTERM before the preemption"
    );
    // The job read the notice when SIGTERM came: the file was there first.
    let seen = std::fs::read_to_string(&term).unwrap();
    let mut lines = seen.lines();
    let deadline: i64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no deadline in what the job saw: {seen:?}"));
    assert_eq!(lines.next(), Some("1"), "{seen:?}");
    for home in &homes {
        assert_eq!(notice_of(home), Some(deadline), "{}", home.display());
    }
    assert_eq!(p.preemption_notice(&h).await.unwrap(), Some(deadline));
    // Nodes stay up during the notice (unless the deadline passed meanwhile on a slow box).
    let agents_alive_before_deadline = agents.iter().all(|&a| pid_alive(a));
    let states: Vec<_> = p
        .query_instances(&h)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.state)
        .collect();
    if (sky_now() as i64) < deadline - 1 {
        assert!(
            agents_alive_before_deadline,
            "an agent died from the notice"
        );
        assert!(
            states.iter().all(|s| *s == InstanceState::Running),
            "{states:?}"
        );
        for home in &homes {
            assert!(
                !home.join("agent-term").exists(),
                "an agent got SIGTERM from the notice"
            );
        }
    }
    assert!(
        wait_until(|| !pid_alive(job), Duration::from_secs(10)).await,
        "the job did not exit on SIGTERM"
    );

    // At the deadline the nodes go as before; the agents with them.
    assert!(
        wait_until(
            || agents.iter().all(|&a| !pid_alive(a)),
            Duration::from_secs(30)
        )
        .await,
        "the agents survived the preemption"
    );
    let after = p.query_instances(&h).await.unwrap();
    assert!(
        after.iter().all(|n| n.state == InstanceState::Stopped),
        "{after:?}"
    );
    // The agents were signalled by the preemption only, never by the notice (while running).
    for home in &homes {
        let got = std::fs::read_to_string(home.join("agent-term")).unwrap_or_default();
        assert!(
            !got.is_empty() && got.lines().all(|l| l == "stopped"),
            "{}: {got:?}",
            home.display()
        );
    }
    // Carried out: no notice is up any more.
    assert_eq!(p.preemption_notice(&h).await.unwrap(), None);

    // A restart clears the old notice (a new one may come for the new run, later).
    p.start_instances(&h).await.unwrap();
    for home in &homes {
        assert!(
            notice_of(home).is_none_or(|d| d > deadline),
            "stale notice after restart in {}",
            home.display()
        );
    }
    p.terminate_instances(&h).await.unwrap();

    // A zone without a notice configured never reports one.
    let mut req = request("quiet", 1, "r", Some("quiet"));
    req.use_spot = true;
    let q = p.run_instances(&req).await.unwrap();
    assert_eq!(p.preemption_notice(&q).await.unwrap(), None);
    p.terminate_instances(&q).await.unwrap();
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_is_reported_even_without_the_watchdog() {
    // preemption_notice reads the node metadata when no notice file was written: the notice
    // window is the whole run here (notice = preempt_after), so it is up from the start.
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(
        tmp.path(),
        json!({"regions": [{"name": "r", "zones": [
            {"name": "z", "preempt_after_seconds": 3600, "preempt_notice_seconds": 3600}
        ]}]}),
    );
    let mut req = request("early", 1, "r", Some("z"));
    req.use_spot = true;
    let h = p.run_instances(&req).await.unwrap();
    let home = p.node_dir(&h.cluster_name_on_cloud, 0);
    let got = p.preemption_notice(&h).await.unwrap();
    let now = sky_now();
    let deadline = got.expect("a notice is up from the start");
    assert!(
        (deadline as f64) > now + 3000.0 && (deadline as f64) <= now + 3601.0,
        "{deadline} vs now {now}"
    );
    // The watchdog writes the same deadline at once.
    assert!(
        wait_until(|| notice_of(&home).is_some(), Duration::from_secs(30)).await,
        "the watchdog wrote no notice"
    );
    assert_eq!(notice_of(&home), Some(deadline));
    p.terminate_instances(&h).await.unwrap();
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

fn sky_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
