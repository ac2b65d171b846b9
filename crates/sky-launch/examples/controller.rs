//! Driving launches from another Rust program, as a managed-jobs controller would: two launches
//! run at once on the test kit's fake cloud; one is cancelled as soon as it starts provisioning,
//! the other is stopped by a fault after its instances are up; the controller branches on the
//! typed errors, never on messages.
//!
//! `cargo run -p sky-launch --example controller`

use std::sync::{Arc, OnceLock};

use sky_launch::{
    Backend, CancellationToken, ClusterState, LaunchErrorKind, LaunchEvent, LaunchRequest,
};
use sky_provider::{ProviderRegistry, ProvisionError};
use sky_provider_testkit::{FAKE_CLOUD_ID, FakeCloud, FaultInjector, FaultRule, Op};

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The clouds, the state database and the catalog are the embedder's to choose.
    let fake = Arc::new(FakeCloud::new(dir.path().join("fake")));
    // The agent stage fails (this example runs no node agent), leaving the cluster INIT.
    let cloud = FaultInjector::wrap(
        fake.clone(),
        vec![FaultRule::new(
            Op::QueryInstances,
            ProvisionError::other("no agents in this example"),
        )],
    );
    let mut registry = ProviderRegistry::new();
    registry.register(cloud);
    let state = sky_state::StateDb::open(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))
    .await
    .expect("a state database");
    let backend = Arc::new(Backend {
        catalog: OnceLock::from(sky_launch::catalog_with_providers(&registry)),
        registry,
        state,
        enabled_clouds: vec![FAKE_CLOUD_ID.into()],
        sky_binary: "/nonexistent/sky".into(),
        hook_env: Vec::new(),
        agent_env: Vec::new(),
        user: "controller".into(),
        lock_dir: dir.path().join("locks"),
    });
    let task = match sky_spec::parse_task_file(
        "resources:\n  cpus: 2\nrun: echo hi\n",
        &sky_spec::ParseOptions::default(),
    ) {
        Ok(sky_spec::TaskFile::Task(t)) => *t,
        other => panic!("not a task: {other:?}"),
    };

    let mut launches = Vec::new();
    for name in ["job-1", "job-2"] {
        let cancel = CancellationToken::new();
        let backend = backend.clone();
        let req = LaunchRequest {
            // Placements ruled out up front (a region that preempted us, say).
            blocked: vec![sky_launch::Blocked {
                cloud: Some(FAKE_CLOUD_ID.into()),
                region: Some("fake-2".into()),
                ..Default::default()
            }],
            ..LaunchRequest::new(task.clone(), name)
        };
        let c = cancel.clone();
        let cancel_first = name == "job-1";
        launches.push(tokio::spawn(async move {
            // Events are typed; `Display` is the line the CLI prints.
            let events = move |e: &LaunchEvent| {
                println!("[{name}] {e}");
                if cancel_first && matches!(e, LaunchEvent::Provisioning { .. }) {
                    c.cancel();
                }
            };
            (name, backend.launch(&req, &cancel, &events).await)
        }));
    }
    for l in launches {
        let (name, result) = l.await.expect("the launch task");
        match result {
            Ok(l) => println!("{name}: job {} on {}", l.job_id, l.cluster),
            Err(e) if e.kind == LaunchErrorKind::Cancelled => {
                assert_eq!(e.cluster, Some(ClusterState::Absent));
                println!("{name}: cancelled, nothing left");
            }
            Err(e) if e.cluster == Some(ClusterState::Init { instances_up: true }) => {
                println!(
                    "{name}: INIT with instances up ({:?}); tearing it down",
                    e.kind
                );
                backend
                    .down(name, false, &CancellationToken::new(), &sky_launch::Quiet)
                    .await
                    .expect("down");
            }
            Err(e) => println!("{name}: {e} (exit code {})", e.exit_code()),
        }
    }
    assert!(fake.clusters().is_empty());
}
