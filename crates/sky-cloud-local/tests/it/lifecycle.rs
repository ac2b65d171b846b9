use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use sky_cloud_local::pid_alive;
use sky_provider::{CloudProvider, InstanceState, ProvisionErrorKind};

use crate::{leftovers, provider, request, run, runner, wait_until};

fn pid_of(out: &str) -> u32 {
    out.trim()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lifecycle() {
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(tmp.path(), serde_json::Value::Null);
    let h = p
        .run_instances(&request("three", 3, "local", None))
        .await
        .unwrap();
    assert_eq!(
        (h.cloud.as_str(), h.zone.as_deref(), h.num_nodes),
        ("local", Some("local"), 3)
    );
    // The handle survives a trip through JSON (it is stored in state).
    let h: sky_provider::ClusterHandle =
        serde_json::from_value(serde_json::to_value(&h).unwrap()).unwrap();
    p.wait_instances(&h).await.unwrap();

    let nodes = p.query_instances(&h).await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.rank).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(nodes.iter().all(|n| n.state == InstanceState::Running));
    let addrs: BTreeSet<&str> = nodes.iter().map(|n| n.internal_ip.as_str()).collect();
    assert_eq!(addrs.len(), 3, "distinct addresses: {addrs:?}");
    for n in &nodes {
        let ip: std::net::Ipv4Addr = n.internal_ip.parse().unwrap();
        assert!(ip.is_loopback());
    }

    // Each node runs in its own directory, which is its HOME.
    for n in &nodes {
        let r = runner(&p, &h, n).await;
        let home = r.node_home().unwrap();
        assert_eq!(home, p.node_dir(&h.cluster_name_on_cloud, n.rank));
        let (code, out) = run(r.as_ref(), "echo $HOME; pwd").await;
        assert_eq!(code, 0);
        let d = home.display();
        assert_eq!(out, format!("{d}\n{d}\n"));
    }

    // A server on node 0 at its address is reachable from node 2.
    let r0 = runner(&p, &h, &nodes[0]).await;
    let r2 = runner(&p, &h, &nodes[2]).await;
    let port = {
        let l = std::net::TcpListener::bind((nodes[0].internal_ip.as_str(), 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let server = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{}', {port}))\ns.listen()\nwhile True:\n    c,_=s.accept(); c.sendall(b'hello-from-rank-0\\n'); c.close()\n",
        nodes[0].internal_ip
    );
    let server_pid = r0
        .spawn_detached(
            &["python3".into(), "-c".into(), server],
            &[],
            "sky_logs/server.log",
        )
        .await
        .unwrap();
    let addr = r0.forward_port(port).await.unwrap();
    assert_eq!(addr.ip().to_string(), nodes[0].internal_ip);
    let client = format!(
        "for i in $(seq 100); do if exec 3<>/dev/tcp/{}/{}; then cat <&3; exit 0; fi 2>/dev/null; sleep 0.05; done; exit 7",
        addr.ip(),
        addr.port()
    );
    let (code, out) = run(r2.as_ref(), &client).await;
    assert_eq!((code, out.as_str()), (0, "hello-from-rank-0\n"));

    // Processes of every kind: detached (recorded), backgrounded by a command, and a daemon that
    // left its session; all belong to their node.
    let sleeper = r0
        .spawn_detached(&["sleep".into(), "1000".into()], &[], "sky_logs/sleep.log")
        .await
        .unwrap();
    let (_, out) = run(r0.as_ref(), "sleep 1001 >/dev/null 2>&1 & echo $!").await;
    let background = pid_of(&out);
    let (_, out) = run(
        r2.as_ref(),
        "setsid sleep 1002 >/dev/null 2>&1 < /dev/null & echo $!",
    )
    .await;
    let daemon = pid_of(&out);
    // A job that cleared its environment is still found by its working directory.
    let (_, out) = run(r2.as_ref(), "cd ~ && mkdir -p sky_workdir && cd sky_workdir && env -i /usr/bin/setsid /bin/sleep 1004 >/dev/null 2>&1 </dev/null & echo $!").await;
    let scrubbed = pid_of(&out);
    for pid in [server_pid, sleeper, background, daemon, scrubbed] {
        assert!(pid_alive(pid), "pid {pid} should run before stop");
    }
    assert!(
        p.node_dir(&h.cluster_name_on_cloud, 0)
            .join(".sky/pids")
            .join(sleeper.to_string())
            .exists()
    );

    p.stop_instances(&h).await.unwrap();
    for pid in [server_pid, sleeper, background, daemon, scrubbed] {
        assert!(
            wait_until(|| !pid_alive(pid), Duration::from_secs(5)).await,
            "pid {pid} survived stop"
        );
    }
    let nodes_after = p.query_instances(&h).await.unwrap();
    assert_eq!(nodes_after.len(), 3);
    assert!(
        nodes_after
            .iter()
            .all(|n| n.state == InstanceState::Stopped)
    );
    assert_eq!(
        nodes_after
            .iter()
            .map(|n| &n.internal_ip)
            .collect::<Vec<_>>(),
        nodes.iter().map(|n| &n.internal_ip).collect::<Vec<_>>()
    );
    assert!(
        p.node_dir(&h.cluster_name_on_cloud, 0)
            .join("sky_logs/server.log")
            .exists(),
        "stop keeps directories"
    );

    p.start_instances(&h).await.unwrap();
    assert!(
        p.query_instances(&h)
            .await
            .unwrap()
            .iter()
            .all(|n| n.state == InstanceState::Running)
    );
    let again = r0
        .spawn_detached(&["sleep".into(), "1003".into()], &[], "sky_logs/sleep.log")
        .await
        .unwrap();

    // A relaunch of the existing cluster resumes it with the same nodes.
    let h2 = p
        .run_instances(&request("three", 3, "local", None))
        .await
        .unwrap();
    assert_eq!(h2.cluster_name_on_cloud, h.cluster_name_on_cloud);
    assert_eq!(
        p.query_instances(&h2).await.unwrap(),
        p.query_instances(&h).await.unwrap()
    );
    let e = p
        .run_instances(&request("three", 2, "local", None))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::InvalidConfig);
    assert!(e.fix.is_some());

    p.terminate_instances(&h).await.unwrap();
    assert!(wait_until(|| !pid_alive(again), Duration::from_secs(5)).await);
    assert!(p.query_instances(&h).await.unwrap().is_empty());
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
    p.terminate_instances(&h).await.unwrap();
    assert!(p.start_instances(&h).await.is_err());
    p.stop_instances(&h).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_launches_get_distinct_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let p = std::sync::Arc::new(provider(tmp.path(), serde_json::Value::Null));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.run_instances(&request(&format!("c{i}"), 4, "local", None))
                .await
        }));
    }
    let mut handles = Vec::new();
    for t in tasks {
        handles.push(t.await.unwrap().unwrap());
    }
    let mut addrs = BTreeSet::new();
    for h in &handles {
        for n in p.query_instances(h).await.unwrap() {
            assert!(
                addrs.insert(n.internal_ip.clone()),
                "address {} reused",
                n.internal_ip
            );
        }
    }
    assert_eq!(addrs.len(), 24);
    for h in &handles {
        p.terminate_instances(h).await.unwrap();
    }
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_preemption_stops_the_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(
        tmp.path(),
        json!({"regions": [{"name": "r", "zones": [{"name": "z", "preempt_after_seconds": 1}]}]}),
    );
    assert!(p.features().spot);
    let mut req = request("spot", 2, "r", Some("z"));
    req.use_spot = true;
    let h = p.run_instances(&req).await.unwrap();
    let nodes = p.query_instances(&h).await.unwrap();
    let r1 = crate::runner(&p, &h, &nodes[1]).await;
    let pid = r1
        .spawn_detached(&["sleep".into(), "1000".into()], &[], "sleep.log")
        .await
        .unwrap();
    // The watchdog preempts without anyone asking.
    assert!(
        wait_until(|| !pid_alive(pid), Duration::from_secs(8)).await,
        "spot node process survived preemption"
    );
    let after = p.query_instances(&h).await.unwrap();
    assert!(
        after.iter().all(|n| n.state == InstanceState::Stopped),
        "{after:?}"
    );
    p.terminate_instances(&h).await.unwrap();
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());

    // On-demand in a zone without preemption: spot is refused there.
    let p2 = provider(tmp.path(), serde_json::Value::Null);
    let mut req = request("nospot", 1, "local", None);
    req.use_spot = true;
    let e = p2.run_instances(&req).await.unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::NotSupported);
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_preemption_can_terminate() {
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(
        tmp.path(),
        json!({"regions": [{"name": "r", "zones": [{"name": "z", "preempt_after_seconds": 0.5, "preempt_action": "terminate"}]}]}),
    );
    let mut req = request("spot", 1, "r", Some("z"));
    req.use_spot = true;
    let h = p.run_instances(&req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // query applies a due preemption itself even if the watchdog has not acted yet.
    assert!(p.query_instances(&h).await.unwrap().is_empty());
    assert!(
        wait_until(|| leftovers(tmp.path()).is_empty(), Duration::from_secs(6)).await,
        "{:?}",
        leftovers(tmp.path())
    );
    p.terminate_instances(&h).await.unwrap();
}
