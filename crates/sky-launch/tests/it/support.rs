//! The world the launcher's tests run in: one or two fake clouds behind fault injectors, a state
//! database in a temp dir, a small catalog, and (for tests that reach UP) a node agent.
//!
//! The catalog prices the first fake cloud's regions so that the optimizer's order (cheapest
//! first: `west`, `east`, `north`) is neither the topology's order nor the alphabet's; the
//! second cloud (`fake2`, region `south`) is dearer than all of them.
//!
//! The agent: the launcher starts `<sky_binary> agent serve --ip IP --rank N [--head
//! --cluster-file F]` on every node. [`World::with_agent`] points `sky_binary` at a script that
//! runs this test binary's ignored `agent_shim` test with those arguments, which serves a real
//! `sky_agent` on the node; the fake cloud kills it on terminate.

use std::sync::{Arc, OnceLock};

use sky_catalog::{Catalog, ExtraOffer};
use sky_launch::{Attempt, Backend, LaunchEvent, LaunchRequest};
use sky_provider::{ProviderRegistry, ProvisionError};
use sky_provider_testkit::{
    FAKE_CLOUD_ID, FAKE_INSTANCE_TYPE, FakeCloud, FaultInjector, FaultRule, Op,
};
use tokio::sync::mpsc;

pub const SECOND_CLOUD: &str = "fake2";

pub struct World {
    pub backend: Backend,
    pub fake: Arc<FakeCloud>,
    pub faults: Arc<FaultInjector>,
    pub fake2: Arc<FakeCloud>,
    pub faults2: Arc<FaultInjector>,
    pub dir: tempfile::TempDir,
}

fn offer(region: &str, zone: &str, price: f64) -> ExtraOffer {
    ExtraOffer {
        instance_type: FAKE_INSTANCE_TYPE.into(),
        accelerator: None,
        vcpus: 2.0,
        memory_gib: 4.0,
        price,
        spot_price: None,
        region: region.into(),
        zone: Some(zone.into()),
    }
}

/// One fake cloud (regions in topology order east, north, west; in price order west (0.10),
/// east (0.20), north (0.30)), `rules` in front of it.
pub async fn world(rules: Vec<FaultRule>) -> World {
    two_clouds(rules, Vec::new(), false).await
}

/// Both fake clouds enabled when `both`; the second (`fake2`, region `south`, 0.50) has
/// `rules2` in front of it.
pub async fn two_clouds(rules: Vec<FaultRule>, rules2: Vec<FaultRule>, both: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeCloud::new(dir.path().join("fake")).with_regions(vec![
        ("east".into(), vec!["east-a".into(), "east-b".into()]),
        ("north".into(), vec!["north-a".into()]),
        ("west".into(), vec!["west-a".into(), "west-b".into()]),
    ]));
    let fake2 = Arc::new(
        FakeCloud::new(dir.path().join("fake2"))
            .with_id(SECOND_CLOUD)
            .with_regions(vec![("south".into(), vec!["south-a".into()])]),
    );
    let faults = FaultInjector::wrap(fake.clone(), rules);
    let faults2 = FaultInjector::wrap(fake2.clone(), rules2);
    let catalog = Catalog::empty()
        .with_extra_cloud(
            FAKE_CLOUD_ID,
            &[
                offer("east", "east-a", 0.20),
                offer("east", "east-b", 0.20),
                offer("north", "north-a", 0.30),
                offer("west", "west-a", 0.10),
                offer("west", "west-b", 0.10),
            ],
        )
        .with_extra_cloud(SECOND_CLOUD, &[offer("south", "south-a", 0.50)]);
    let mut registry = ProviderRegistry::new();
    registry.register(faults.clone());
    registry.register(faults2.clone());
    let state = sky_state::StateDb::open(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))
    .await
    .unwrap();
    let mut enabled_clouds = vec![FAKE_CLOUD_ID.to_string()];
    if both {
        enabled_clouds.push(SECOND_CLOUD.into());
    }
    let backend = Backend {
        registry,
        state,
        catalog: OnceLock::from(Some(catalog)),
        enabled_clouds,
        sky_binary: "/nonexistent/sky".into(),
        hook_env: Vec::new(),
        agent_env: Vec::new(),
        user: "sky-launch-it".into(),
        lock_dir: dir.path().join("locks"),
    };
    World {
        backend,
        fake,
        faults,
        fake2,
        faults2,
        dir,
    }
}

impl World {
    /// Nodes run a real agent (this test binary's `agent_shim`).
    pub fn with_agent(mut self) -> Self {
        let exe = std::env::current_exe().unwrap();
        let script = self.dir.path().join("sky");
        std::fs::write(
            &script,
            format!(
                "#!/bin/bash\nexport {AGENT_ARGS}=\"$(printf '%s\\n' \"$@\")\"\nexec {} support::agent_shim --exact --ignored --nocapture --test-threads=1\n",
                sky_provider::shell_quote(&exe.display().to_string())
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        self.backend.sky_binary = script;
        self
    }

    /// The cluster's record status, `None` without one.
    pub async fn status(&self, cluster: &str) -> Option<sky_state::ClusterStatus> {
        self.backend
            .state
            .get_cluster(cluster)
            .await
            .unwrap()
            .map(|r| r.status)
    }

    /// The cluster's lock is free (the launch released it).
    pub fn lock_is_free(&self, cluster: &str) -> bool {
        sky_launch::try_lock_cluster(&self.backend.lock_dir, cluster)
            .unwrap()
            .is_some()
    }

    /// Nothing of a failed launch is left: no instances, no node directories, no record.
    pub async fn nothing_left(&self, cluster: &str) {
        for (fake, sub) in [(&self.fake, "fake"), (&self.fake2, "fake2")] {
            assert!(fake.clusters().is_empty(), "{:?}", fake.clusters());
            let root = self.dir.path().join(sub);
            let dirs = std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0);
            assert_eq!(dirs, 0, "node directories left under {}", root.display());
        }
        assert!(self.status(cluster).await.is_none(), "the record was left");
        assert!(self.lock_is_free(cluster), "the lock was left held");
    }
}

/// The variable that carries the agent's arguments to the shim (one per line).
pub const AGENT_ARGS: &str = "SKY_LAUNCH_IT_AGENT_ARGS";

/// A task of one node asking for 2 CPUs.
pub fn task() -> sky_spec::Task {
    task_yaml("resources:\n  cpus: 2\nrun: echo hi\n")
}

pub fn task_yaml(yaml: &str) -> sky_spec::Task {
    match sky_spec::parse_task_file(yaml, &sky_spec::ParseOptions::default()).unwrap() {
        sky_spec::TaskFile::Task(t) => *t,
        other => panic!("not a task: {other:?}"),
    }
}

pub fn request(cluster: &str) -> LaunchRequest {
    LaunchRequest {
        command_line: "sky launch".into(),
        ..LaunchRequest::new(task(), cluster)
    }
}

/// Stops a placement that worked right after provisioning: a `query_instances` fault (the
/// launcher's first call when it starts the agents). The cluster is then recorded INIT where it
/// was placed, with its instances up.
pub fn stop_after_provisioning() -> FaultRule {
    FaultRule::new(
        Op::QueryInstances,
        ProvisionError::other("stop here: the placement worked"),
    )
}

/// `region/zone` of each attempt in the history.
pub fn places(history: &[Attempt]) -> Vec<String> {
    history
        .iter()
        .map(|a| format!("{}/{}", a.region, a.zone.as_deref().unwrap_or_default()))
        .collect()
}

/// `region/zone` of each `run_instances` call, in order.
pub fn runs(faults: &FaultInjector) -> Vec<String> {
    faults
        .calls()
        .into_iter()
        .filter(|(op, _, _)| *op == Op::RunInstances)
        .map(|(_, r, z)| format!("{r}/{}", z.unwrap_or_default()))
        .collect()
}

/// An event sink whose events can be awaited.
pub fn channel() -> (
    impl Fn(&LaunchEvent) + Send + Sync,
    mpsc::UnboundedReceiver<LaunchEvent>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        move |e: &LaunchEvent| {
            let _ = tx.send(e.clone());
        },
        rx,
    )
}

/// Waits for the first event that `want` accepts; panics if the sender goes first.
pub async fn wait_event(
    rx: &mut mpsc::UnboundedReceiver<LaunchEvent>,
    want: impl Fn(&LaunchEvent) -> bool,
) -> LaunchEvent {
    loop {
        match rx.recv().await {
            Some(e) if want(&e) => return e,
            Some(_) => {}
            None => panic!("the launch ended before the event came"),
        }
    }
}

/// The node agent, when run by [`World::with_agent`]'s script; refuses to run otherwise.
#[test]
#[ignore = "the node agent of the tests that reach UP; they run it as a process"]
fn agent_shim() {
    let args = std::env::var(AGENT_ARGS).expect("run by World::with_agent's script only");
    let args: Vec<&str> = args.lines().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1))
            .copied()
    };
    assert_eq!(&args[..2], ["agent", "serve"], "{args:?}");
    let home = std::path::PathBuf::from(std::env::var("HOME").unwrap());
    let ip: std::net::IpAddr = arg("--ip").unwrap().parse().unwrap();
    let rank: u32 = arg("--rank").unwrap().parse().unwrap();
    let listen = std::net::SocketAddr::new(ip, 0);
    let cfg = match arg("--cluster-file") {
        Some(f) => {
            let cluster = sky_agent::ClusterInfo::load(&home.join(f)).unwrap();
            let mut cfg = sky_agent::AgentConfig::head(home, listen, cluster);
            cfg.rank = rank;
            cfg
        }
        None => sky_agent::AgentConfig::worker(home, listen, rank),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(sky_agent::serve(cfg, None))
        .unwrap();
}
