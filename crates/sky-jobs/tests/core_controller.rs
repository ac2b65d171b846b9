//! The controller against a scripted fake driver: recoveries per strategy, restarts, exit-code
//! recovery, pipelines, cancel in each phase, and a controller stopped mid-launch and
//! restarted from the same database.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sky_agent::JobStatus as J;
use sky_jobs::*;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a cluster job does at each probe; nothing left: SUCCEEDED.
#[derive(Clone, Debug)]
enum Step {
    Run,
    /// The job ended with this status and exit code.
    End(J, i32),
    /// The cluster is preempted (gone).
    Preempt,
}

#[derive(Debug)]
struct Launch {
    cluster: String,
    job_name: String,
    blocked: Vec<Blocked>,
    region: Option<(String, String)>,
    envs: Vec<(String, String)>,
}

#[derive(Default)]
struct World {
    /// Region of each launch in turn (default `r<n>`).
    regions: VecDeque<String>,
    /// Capacity errors before launches succeed.
    no_capacity: usize,
    /// The scripts of successive cluster jobs.
    scripts: VecDeque<Vec<Step>>,
    launches: Vec<Launch>,
    /// cluster -> (region, jobs: id -> (name, remaining script, final status))
    clusters: HashMap<String, Cluster>,
    downs: Vec<String>,
    cancelled_jobs: Vec<u64>,
    next_job: u64,
    /// Most clusters up at once for one name (must stay 1).
    double_launch: bool,
}

/// A cluster job: its name, what is left of its script, how it ended.
type FakeJob = (String, VecDeque<Step>, Option<(J, i32)>);

struct Cluster {
    region: String,
    jobs: HashMap<u64, FakeJob>,
    gone: bool,
}

#[derive(Clone, Default)]
struct Fake {
    w: Arc<Mutex<World>>,
    /// When set, a launch submits its job, then waits for this before returning.
    gate: Arc<Mutex<Option<Arc<Notify>>>>,
}

#[async_trait]
impl ClusterDriver for Fake {
    async fn launch(
        &self,
        req: &DriverLaunch,
        cancel: &CancellationToken,
    ) -> Result<DriverLaunched, DriverError> {
        let (id, region) = {
            let mut w = self.w.lock().unwrap();
            w.launches.push(Launch {
                cluster: req.cluster.clone(),
                job_name: req.job_name.clone(),
                blocked: req.blocked.clone(),
                region: req.region.clone(),
                envs: req.envs.clone(),
            });
            if w.no_capacity > 0 {
                w.no_capacity -= 1;
                return Err(DriverError::new(
                    DriverErrorKind::NoResources,
                    "no capacity",
                ));
            }
            if w.clusters.get(&req.cluster).is_some_and(|c| !c.gone) {
                w.double_launch = true;
            }
            let n = w.launches.len();
            let region = match &req.region {
                Some((_, r)) => r.clone(),
                None => w.regions.pop_front().unwrap_or_else(|| format!("r{n}")),
            };
            if req
                .blocked
                .iter()
                .any(|b| b.region.as_deref() == Some(&region))
            {
                panic!("launched into blocked region {region}");
            }
            w.next_job += 1;
            let id = w.next_job;
            let script: VecDeque<Step> = w.scripts.pop_front().unwrap_or_default().into();
            let c = w.clusters.entry(req.cluster.clone()).or_insert(Cluster {
                region: region.clone(),
                jobs: HashMap::new(),
                gone: false,
            });
            c.region = region.clone();
            c.gone = false;
            c.jobs.insert(id, (req.job_name.clone(), script, None));
            (id, region)
        };
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            tokio::select! {
                () = g.notified() => {}
                () = cancel.cancelled() => {
                    return Err(DriverError::new(DriverErrorKind::Cancelled, "cancelled"));
                }
            }
        }
        Ok(DriverLaunched {
            cloud: "fake".into(),
            region,
            zone: None,
            cluster_job_id: id,
        })
    }

    async fn probe(&self, cluster: &str, job: u64) -> Result<Probe, DriverError> {
        let mut w = self.w.lock().unwrap();
        let gone = Probe {
            cluster: ClusterHealth::Gone,
            job: None,
            preemption_notice: false,
        };
        let Some(c) = w.clusters.get_mut(cluster) else {
            return Ok(gone);
        };
        if c.gone {
            return Ok(gone);
        }
        let Some((_, script, end)) = c.jobs.get_mut(&job) else {
            return Ok(Probe {
                cluster: ClusterHealth::Up,
                job: None,
                preemption_notice: false,
            });
        };
        let (status, code) = match end {
            Some(e) => *e,
            None => match script.pop_front() {
                None => {
                    *end = Some((J::Succeeded, 0));
                    (J::Succeeded, 0)
                }
                Some(Step::Run) => (J::Running, 0),
                Some(Step::End(s, code)) => {
                    *end = Some((s, code));
                    (s, code)
                }
                Some(Step::Preempt) => {
                    c.gone = true;
                    return Ok(gone);
                }
            },
        };
        Ok(Probe {
            cluster: ClusterHealth::Up,
            job: Some(ClusterJob {
                status,
                exit_codes: if status.is_terminal() {
                    vec![code]
                } else {
                    vec![]
                },
            }),
            preemption_notice: false,
        })
    }

    async fn find_job(&self, cluster: &str, job_name: &str) -> Result<Option<u64>, DriverError> {
        let w = self.w.lock().unwrap();
        Ok(w.clusters.get(cluster).filter(|c| !c.gone).and_then(|c| {
            c.jobs
                .iter()
                .find(|(_, (n, _, _))| n == job_name)
                .map(|(id, _)| *id)
        }))
    }

    async fn cancel_job(&self, cluster: &str, job: u64) -> Result<(), DriverError> {
        let mut w = self.w.lock().unwrap();
        w.cancelled_jobs.push(job);
        if let Some((_, _, end)) = w
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.jobs.get_mut(&job))
        {
            *end = Some((J::Cancelled, 0));
        }
        Ok(())
    }

    async fn down(&self, cluster: &str) -> Result<(), DriverError> {
        let mut w = self.w.lock().unwrap();
        w.downs.push(cluster.to_string());
        w.clusters.remove(cluster);
        Ok(())
    }

    async fn stream_logs(
        &self,
        _cluster: &str,
        job: u64,
        out: &std::path::Path,
        _cancel: &CancellationToken,
    ) -> Result<(), DriverError> {
        // Appends, as the real drivers do (each attempt's log after the last one's).
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .and_then(|mut f| f.write_all(format!("log of cluster job {job}\n").as_bytes()))
            .map_err(|e| DriverError::new(DriverErrorKind::Other, e.to_string()))
    }
}

struct Env {
    _dir: tempfile::TempDir,
    home: std::path::PathBuf,
    url: String,
    fake: Fake,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("jobs");
    let url = sky_state::StateDb::sqlite_url(&dir.path().join("state.db"));
    Env {
        _dir: dir,
        home,
        url,
        fake: Fake::default(),
    }
}

fn cfg(home: &std::path::Path, launches: usize) -> ControllerConfig {
    ControllerConfig {
        home: home.to_path_buf(),
        max_concurrent_launches: launches,
        poll_interval: Duration::from_millis(10),
        retry_backoff: (Duration::from_millis(10), Duration::from_millis(40)),
        failure_grace: Duration::from_millis(20),
    }
}

async fn start(e: &Env, launches: usize) -> Arc<Controller> {
    let db = sky_state::StateDb::open(&e.url).await.unwrap();
    Controller::start(cfg(&e.home, launches), db, Arc::new(e.fake.clone()))
        .await
        .unwrap()
}

fn task(name: &str, yaml_extra: &str) -> TaskSubmission {
    TaskSubmission {
        name: Some(name.into()),
        yaml: format!("name: {name}\nrun: echo hi\n{yaml_extra}"),
        secrets: Vec::new(),
        requested: "1x[CPU:1+]".into(),
    }
}

fn job(tasks: Vec<TaskSubmission>) -> JobSubmission {
    JobSubmission {
        name: None,
        user: "alice".into(),
        tasks,
        strategy: None,
        keep_on_failure: None,
        max_duration: None,
        command_line: "sky jobs launch t.yaml".into(),
    }
}

/// Polls until `f` holds for the job (20 s guard against a hang, not a timing check).
async fn wait_for(c: &Controller, id: JobId, f: impl Fn(&JobView) -> bool) -> JobView {
    let mut changes = c.changes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = c.job(id).await.unwrap()
            && f(&v)
        {
            return v;
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep_until(deadline) => {
                panic!("job {id} never got there: {:?}", c.job(id).await.unwrap())
            }
        }
    }
}

async fn wait_done(c: &Controller, id: JobId) -> JobView {
    let v = wait_for(c, id, |v| v.status.is_terminal()).await;
    // the loop also finishes (cluster torn down)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.active_jobs() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "loop never ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.job(id).await.unwrap().unwrap_or(v)
}

fn blocked_regions(w: &World) -> Vec<Vec<String>> {
    w.launches
        .iter()
        .map(|l| l.blocked.iter().filter_map(|b| b.region.clone()).collect())
        .collect()
}

#[tokio::test]
async fn preempted_twice_recovers_in_other_regions_under_eager_next_region() {
    let e = env();
    e.fake.w.lock().unwrap().scripts.extend([
        vec![Step::Run, Step::Preempt],
        vec![Step::Run, Step::Preempt],
        vec![Step::Run],
    ]);
    let c = start(&e, 4).await;
    let id = c.submit(job(vec![task("train", "")])).await.unwrap();
    let v = wait_done(&c, id).await;
    assert_eq!(v.status, ManagedJobStatus::Succeeded, "{v:?}");
    assert_eq!(v.recovery_count, 2);
    assert_eq!(
        v.tasks[0].cluster.as_deref(),
        Some(format!("train-{id}").as_str())
    );
    let w = e.fake.w.lock().unwrap();
    assert_eq!(w.launches.len(), 3);
    assert_eq!(
        blocked_regions(&w),
        [vec![], vec!["r1".to_string()], vec!["r2".to_string()]]
    );
    assert!(!w.double_launch);
    assert!(w.clusters.is_empty(), "no cluster left");
    // SKYPILOT_TASK_ID is the same on every attempt; SKYPILOT_MANAGED_JOB_ID is set
    let ids: Vec<_> = w
        .launches
        .iter()
        .map(|l| {
            l.envs
                .iter()
                .find(|(k, _)| k == "SKYPILOT_TASK_ID")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert!(
        w.launches[0]
            .envs
            .contains(&("SKYPILOT_MANAGED_JOB_ID".into(), id.to_string()))
    );
    // one job name per attempt
    let names: std::collections::HashSet<_> = w.launches.iter().map(|l| &l.job_name).collect();
    assert_eq!(names.len(), 3);
    drop(w);
    let log = std::fs::read_to_string(c.controller_log_path(id)).unwrap();
    assert!(log.contains("RECOVERING"), "{log}");
    assert!(log.contains("not in fake/r1"), "{log}");
}

#[tokio::test]
async fn failover_relaunches_in_the_same_region_first() {
    let e = env();
    {
        let mut w = e.fake.w.lock().unwrap();
        w.scripts.extend([
            vec![Step::Run, Step::Preempt],
            vec![Step::Run, Step::Preempt],
            vec![],
        ]);
    }
    let c = start(&e, 4).await;
    let mut j = job(vec![task("ft", "")]);
    j.strategy = Some(RecoveryStrategy::Failover);
    let id = c.submit(j).await.unwrap();
    let v = wait_done(&c, id).await;
    assert_eq!(v.status, ManagedJobStatus::Succeeded);
    assert_eq!(v.recovery_count, 2);
    let w = e.fake.w.lock().unwrap();
    let pinned: Vec<_> = w.launches.iter().map(|l| l.region.clone()).collect();
    let r1 = Some(("fake".to_string(), "r1".to_string()));
    assert_eq!(pinned, [None, r1.clone(), r1]);
    assert!(blocked_regions(&w).iter().all(|b| b.is_empty()));
}

#[tokio::test]
async fn no_capacity_retries_then_launches() {
    let e = env();
    e.fake.w.lock().unwrap().no_capacity = 3;
    let c = start(&e, 4).await;
    let id = c.submit(job(vec![task("cap", "")])).await.unwrap();
    let v = wait_done(&c, id).await;
    assert_eq!(v.status, ManagedJobStatus::Succeeded);
    assert_eq!(e.fake.w.lock().unwrap().launches.len(), 4);
}

#[tokio::test]
async fn max_restarts_on_errors_three_gives_four_attempts_then_failed() {
    let e = env();
    for _ in 0..4 {
        e.fake
            .w
            .lock()
            .unwrap()
            .scripts
            .push_back(vec![Step::Run, Step::End(J::Failed, 1)]);
    }
    let c = start(&e, 4).await;
    let id = c
        .submit(job(vec![task(
            "flaky",
            "resources:\n  job_recovery:\n    max_restarts_on_errors: 3\n",
        )]))
        .await
        .unwrap();
    let v = wait_done(&c, id).await;
    assert_eq!(v.status, ManagedJobStatus::Failed, "{v:?}");
    assert_eq!(v.tasks[0].restarts, 3);
    assert!(
        v.failure_reason.as_deref().unwrap().contains("exit code 1"),
        "{v:?}"
    );
    let w = e.fake.w.lock().unwrap();
    assert_eq!(w.launches.len(), 4);
    assert_eq!(w.downs.len(), 4, "a fresh cluster each time");
    assert!(w.clusters.is_empty());
}

#[tokio::test]
async fn recover_on_exit_codes_recovers_on_33_only() {
    let e = env();
    e.fake.w.lock().unwrap().scripts.extend([
        vec![Step::End(J::Failed, 33)],
        vec![Step::End(J::Failed, 33)],
        vec![Step::End(J::Failed, 4)],
    ]);
    let c = start(&e, 4).await;
    let id = c
        .submit(job(vec![task(
            "codes",
            "resources:\n  job_recovery:\n    recover_on_exit_codes: [33]\n",
        )]))
        .await
        .unwrap();
    let v = wait_done(&c, id).await;
    assert_eq!(v.status, ManagedJobStatus::Failed);
    assert_eq!(v.recovery_count, 2);
    assert_eq!(e.fake.w.lock().unwrap().launches.len(), 3);
}

#[tokio::test]
async fn a_two_task_pipeline_runs_in_order_and_a_failure_cancels_the_rest() {
    let e = env();
    let c = start(&e, 4).await;
    let id = c
        .submit(job(vec![task("prep", ""), task("train", "")]))
        .await
        .unwrap();
    let v = wait_done(&c, id).await;
    assert_eq!(v.status, ManagedJobStatus::Succeeded);
    assert_eq!(v.tasks.len(), 2);
    assert!(
        v.tasks
            .iter()
            .all(|t| t.status == ManagedJobStatus::Succeeded)
    );
    {
        let w = e.fake.w.lock().unwrap();
        let order: Vec<_> = w.launches.iter().map(|l| l.cluster.clone()).collect();
        assert_eq!(order, [format!("prep-{id}"), format!("train-{id}")]);
        assert_eq!(w.downs, order, "each task's cluster goes after it succeeds");
    }
    // a failing first task: the second is CANCELLED
    e.fake
        .w
        .lock()
        .unwrap()
        .scripts
        .push_back(vec![Step::End(J::Failed, 2)]);
    let id2 = c
        .submit(job(vec![task("bad", ""), task("never", "")]))
        .await
        .unwrap();
    let v = wait_done(&c, id2).await;
    assert_eq!(v.status, ManagedJobStatus::Failed);
    assert_eq!(v.tasks[1].status, ManagedJobStatus::Cancelled);
    assert_eq!(
        v.tasks[1].failure_reason.as_deref(),
        Some("an earlier task failed")
    );
    assert!(
        !e.fake
            .w
            .lock()
            .unwrap()
            .launches
            .iter()
            .any(|l| l.cluster == format!("never-{id2}"))
    );
}

#[tokio::test]
async fn cancel_while_pending_launching_and_running() {
    let e = env();
    let gate = Arc::new(Notify::new());
    *e.fake.gate.lock().unwrap() = Some(gate.clone());
    // one launch slot: the second job waits PENDING behind the first's launch
    let c = start(&e, 1).await;
    let launching = c.submit(job(vec![task("a", "")])).await.unwrap();
    wait_for(&c, launching, |v| v.status == ManagedJobStatus::Starting).await;
    let pending = c.submit(job(vec![task("b", "")])).await.unwrap();
    // b's loop reached its launch (the controller log says so) and waits for the slot, shown
    // as PENDING (as SkyPilot's scheduler queue), not STARTING.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(c.controller_log_path(pending))
        .unwrap_or_default()
        .contains("launching")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never got to its launch"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        c.job(pending).await.unwrap().unwrap().status,
        ManagedJobStatus::Pending
    );
    assert_eq!(
        e.fake.w.lock().unwrap().launches.len(),
        1,
        "b waits for the launch slot"
    );
    // cancel the one waiting for a slot, then the one launching
    let asked = c
        .cancel(&CancelSelector {
            ids: vec![pending],
            ..CancelSelector::default()
        })
        .await
        .unwrap();
    assert_eq!(asked, [pending]);
    let asked = c
        .cancel(&CancelSelector {
            ids: vec![launching],
            ..CancelSelector::default()
        })
        .await
        .unwrap();
    assert_eq!(asked, [launching]);
    let v = wait_done(&c, launching).await;
    assert_eq!(v.status, ManagedJobStatus::Cancelled);
    assert_eq!(
        c.job(pending).await.unwrap().unwrap().status,
        ManagedJobStatus::Cancelled
    );
    {
        let w = e.fake.w.lock().unwrap();
        assert_eq!(w.launches.len(), 1, "the pending job never launched");
        assert!(
            w.downs.contains(&format!("a-{launching}")),
            "the launching cluster goes"
        );
        assert!(w.clusters.is_empty());
    }
    // running: cancel the cluster job and tear down
    *e.fake.gate.lock().unwrap() = None;
    e.fake
        .w
        .lock()
        .unwrap()
        .scripts
        .push_back(vec![Step::Run; 100_000]);
    let running = c.submit(job(vec![task("c", "")])).await.unwrap();
    wait_for(&c, running, |v| v.status == ManagedJobStatus::Running).await;
    c.cancel(&CancelSelector {
        name: Some("c".into()),
        ..CancelSelector::default()
    })
    .await
    .unwrap();
    let v = wait_done(&c, running).await;
    assert_eq!(v.status, ManagedJobStatus::Cancelled);
    assert_eq!(e.fake.w.lock().unwrap().cancelled_jobs.len(), 1);
    // already ended: reported, not an error; unknown: NotFound naming the id
    let (asked, done) = c
        .cancel_report(&CancelSelector {
            ids: vec![running],
            ..CancelSelector::default()
        })
        .await
        .unwrap();
    assert!(asked.is_empty());
    assert_eq!(done, [running]);
    let err = c
        .cancel(&CancelSelector {
            ids: vec![999],
            ..CancelSelector::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, JobsErrorKind::NotFound);
    assert!(err.message.contains("999"), "{err}");
}

#[tokio::test]
async fn a_controller_stopped_mid_launch_resumes_without_a_second_launch() {
    let e = env();
    let gate = Arc::new(Notify::new());
    *e.fake.gate.lock().unwrap() = Some(gate.clone());
    e.fake
        .w
        .lock()
        .unwrap()
        .scripts
        .push_back(vec![Step::Run, Step::Run]);
    let c = start(&e, 4).await;
    let id = c.submit(job(vec![task("resume", "")])).await.unwrap();
    // the launch has submitted its job and hangs: stop the controller there (its future dropped)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while e.fake.w.lock().unwrap().launches.is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.shutdown().await;
    drop(c);
    *e.fake.gate.lock().unwrap() = None;
    let c2 = start(&e, 4).await;
    let v = wait_done(&c2, id).await;
    assert_eq!(v.status, ManagedJobStatus::Succeeded, "{v:?}");
    let w = e.fake.w.lock().unwrap();
    assert_eq!(
        w.launches.len(),
        1,
        "the submitted job was found, not launched again"
    );
    assert!(w.clusters.is_empty());
}

#[tokio::test]
async fn a_controller_stopped_while_running_resumes_the_same_cluster_job() {
    let e = env();
    e.fake
        .w
        .lock()
        .unwrap()
        .scripts
        .push_back(vec![Step::Run; 30]);
    let c = start(&e, 4).await;
    let id = c.submit(job(vec![task("long", "")])).await.unwrap();
    wait_for(&c, id, |v| v.status == ManagedJobStatus::Running).await;
    c.shutdown().await;
    drop(c);
    let c2 = start(&e, 4).await;
    assert_eq!(
        c2.job(id).await.unwrap().unwrap().status,
        ManagedJobStatus::Running
    );
    let v = wait_done(&c2, id).await;
    assert_eq!(v.status, ManagedJobStatus::Succeeded);
    assert_eq!(e.fake.w.lock().unwrap().launches.len(), 1);
    assert_eq!(
        std::fs::read_to_string(c2.log_path(id, 0)).unwrap(),
        "log of cluster job 1\n"
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_recorded() {
    let e = env();
    let c = start(&e, 4).await;
    let bad = TaskSubmission {
        yaml: "resources:\n  cpus: lots\nrun: x\n".into(),
        ..task("x", "")
    };
    let err = c.submit(job(vec![bad])).await.unwrap_err();
    assert_eq!(err.kind, JobsErrorKind::InvalidInput);
    assert!(err.message.contains("cpus"), "{err}");
    let err = c
        .submit(job(vec![task(
            "y",
            "resources:\n  job_recovery: SOMETIMES\n",
        )]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, JobsErrorKind::InvalidInput, "{err}");
    let err = c.submit(job(vec![])).await.unwrap_err();
    assert_eq!(err.kind, JobsErrorKind::InvalidInput);
    assert!(c.queue(&QueueQuery::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn secrets_stay_in_a_private_file_until_the_job_ends() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    let gate = Arc::new(Notify::new());
    *e.fake.gate.lock().unwrap() = Some(gate.clone());
    let c = start(&e, 4).await;
    let mut t = task("sec", "secrets:\n  TOKEN: <redacted>\n");
    t.secrets = vec![("TOKEN".into(), "s3cr3t-value".into())];
    let id = c.submit(job(vec![t])).await.unwrap();
    let f = e.home.join("secrets").join(format!("{id}.json"));
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let db = std::fs::read(e._dir.path().join("state.db")).unwrap();
    assert!(
        !db.windows(12).any(|w| w == b"s3cr3t-value"),
        "secret in the database"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while e.fake.w.lock().unwrap().launches.is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gate.notify_one();
    let v = wait_done(&c, id).await;
    assert_eq!(v.status, ManagedJobStatus::Succeeded);
    assert!(
        e.fake.w.lock().unwrap().launches[0]
            .envs
            .contains(&("TOKEN".into(), "s3cr3t-value".into()))
    );
    assert!(!f.exists(), "the secret file is removed when the job ends");
    let log = std::fs::read_to_string(c.controller_log_path(id)).unwrap();
    assert!(!log.contains("s3cr3t"));
}

#[tokio::test]
async fn queue_filters_and_counts_active_jobs() {
    let e = env();
    let c = start(&e, 4).await;
    let mut ids = Vec::new();
    for u in ["alice", "bob"] {
        let mut j = job(vec![task("q", "")]);
        j.user = u.into();
        ids.push(c.submit(j).await.unwrap());
    }
    for id in &ids {
        wait_done(&c, *id).await;
    }
    let all = c
        .queue(&QueueQuery {
            all_users: true,
            ..QueueQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.iter().map(|v| v.id).collect::<Vec<_>>(), ids);
    let bob = c
        .queue(&QueueQuery {
            user: Some("bob".into()),
            ..QueueQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].user, "bob");
    let live = c
        .queue(&QueueQuery {
            all_users: true,
            skip_finished: true,
            ..QueueQuery::default()
        })
        .await
        .unwrap();
    assert!(live.is_empty());
    assert_eq!(c.active_jobs(), 0);
}
