//! [`FakeDriver`]: an in-process [`ClusterDriver`] with realistic latencies (provisioning a
//! few seconds, a probe a few milliseconds, a teardown about a second; all scaled by one
//! factor) and scriptable outcomes: a job runs for a while then exits with a code, a cluster is
//! preempted after a while, a region has no capacity. Used by the `jobs` benchmark (10,000
//! jobs in one controller) and by tests. A cluster costs a few dozen bytes plus its names.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::driver::{
    ClusterDriver, ClusterHealth, ClusterJob, DriverError, DriverErrorKind, DriverLaunch,
    DriverLaunched, Probe,
};

/// The cloud name the fake reports.
pub const FAKE_CLOUD: &str = "fake";

/// What one attempt of a task does on its fake cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeOutcome {
    /// The job runs this long (unscaled) ...
    pub run_for: Duration,
    /// ... then exits with this code (0: SUCCEEDED, else FAILED).
    pub exit_code: i32,
    /// The cluster is preempted this long (unscaled) after the job started, if before its end.
    pub preempt_after: Option<Duration>,
}

impl Default for FakeOutcome {
    fn default() -> Self {
        FakeOutcome {
            run_for: Duration::from_secs(60),
            exit_code: 0,
            preempt_after: None,
        }
    }
}

/// Latencies and placement of a [`FakeDriver`].
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Multiplies every latency and every [`FakeOutcome`] duration (0.01: a hundred times
    /// faster than real).
    pub scale: f64,
    /// Provisioning time, uniformly spread in `[min, max]` per launch.
    pub provision: (Duration, Duration),
    /// A probe's round trip, spread in `[min, max]`.
    pub probe: (Duration, Duration),
    /// A teardown.
    pub down: Duration,
    /// `(region, zone)` in failover order.
    pub regions: Vec<(String, String)>,
    /// The outcome of an attempt no script names.
    pub default_outcome: FakeOutcome,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            scale: 1.0,
            provision: (Duration::from_secs(2), Duration::from_secs(5)),
            probe: (Duration::from_millis(5), Duration::from_millis(20)),
            down: Duration::from_secs(1),
            regions: vec![
                ("fake-east".to_owned(), "fake-east-a".to_owned()),
                ("fake-west".to_owned(), "fake-west-a".to_owned()),
                ("fake-north".to_owned(), "fake-north-a".to_owned()),
            ],
            default_outcome: FakeOutcome::default(),
        }
    }
}

/// One live fake cluster (small on purpose: 10,000 of them must stay cheap).
#[derive(Debug)]
struct FakeCluster {
    region: u16,
    job_id: u64,
    job_name: Box<str>,
    started: Instant,
    outcome: FakeOutcome,
    cancelled: bool,
}

#[derive(Debug, Default)]
struct World {
    clusters: HashMap<Box<str>, FakeCluster>,
    /// Outcomes for successive launches of a cluster name, consumed in order.
    scripts: HashMap<Box<str>, Vec<FakeOutcome>>,
    /// Regions (indexes) without capacity now.
    no_capacity: Vec<u16>,
}

/// Counters of what a [`FakeDriver`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeStats {
    /// Successful launches.
    pub launches: u64,
    /// Launches refused for lack of capacity.
    pub no_capacity: u64,
    /// Teardowns of a cluster that existed.
    pub downs: u64,
    /// Probes answered.
    pub probes: u64,
    /// Clusters alive now.
    pub live: u64,
    /// Most clusters alive at once.
    pub peak_live: u64,
}

/// An in-process cloud; see the module doc.
#[derive(Debug)]
pub struct FakeDriver {
    cfg: FakeConfig,
    world: Mutex<World>,
    next_job: AtomicU64,
    launches: AtomicU64,
    no_capacity: AtomicU64,
    downs: AtomicU64,
    probes: AtomicU64,
    peak_live: AtomicU64,
}

impl FakeDriver {
    /// A fake cloud with `cfg`'s latencies and regions.
    pub fn new(cfg: FakeConfig) -> FakeDriver {
        FakeDriver {
            cfg,
            world: Mutex::default(),
            next_job: AtomicU64::new(1),
            launches: AtomicU64::new(0),
            no_capacity: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            peak_live: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FakeConfig {
        &self.cfg
    }

    /// The next launches of `cluster` get these outcomes, in order (then the default).
    pub fn script(&self, cluster: &str, outcomes: Vec<FakeOutcome>) {
        let mut w = self.lock();
        w.scripts.insert(cluster.into(), outcomes);
    }

    /// Marks `region` as without capacity (launches there fail with `NoResources`) or gives
    /// it capacity back. An unknown region is ignored.
    pub fn set_capacity(&self, region: &str, available: bool) {
        let Some(idx) = self.region_index(region) else {
            return;
        };
        let mut w = self.lock();
        w.no_capacity.retain(|&r| r != idx);
        if !available {
            w.no_capacity.push(idx);
        }
    }

    /// Preempts `cluster` now (its job is lost, the cluster reports `NotUp`).
    pub fn preempt(&self, cluster: &str) {
        if let Some(c) = self.lock().clusters.get_mut(cluster) {
            c.outcome.preempt_after = Some(Duration::ZERO);
        }
    }

    /// Names of the live clusters, sorted.
    pub fn clusters(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().clusters.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    /// The region `cluster` runs in, if it is alive.
    pub fn region_of(&self, cluster: &str) -> Option<String> {
        let w = self.lock();
        let c = w.clusters.get(cluster)?;
        Some(self.cfg.regions[usize::from(c.region)].0.clone())
    }

    /// What the driver did so far.
    pub fn stats(&self) -> FakeStats {
        FakeStats {
            launches: self.launches.load(Ordering::Relaxed),
            no_capacity: self.no_capacity.load(Ordering::Relaxed),
            downs: self.downs.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
            live: self.lock().clusters.len() as u64,
            peak_live: self.peak_live.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn region_index(&self, region: &str) -> Option<u16> {
        self.cfg
            .regions
            .iter()
            .position(|(r, _)| r == region)
            .and_then(|i| u16::try_from(i).ok())
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.cfg.scale.max(0.0))
    }

    /// A duration in `[min, max]`, spread by a hash of `key` (no RNG: reproducible).
    fn spread(&self, (min, max): (Duration, Duration), key: &str) -> Duration {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        let span = max.saturating_sub(min);
        let frac = (h % 1024) as f64 / 1023.0;
        self.scaled(min + span.mul_f64(frac))
    }

    fn blocked(req: &DriverLaunch, region: &str, zone: &str) -> bool {
        req.blocked.iter().any(|b| {
            b.cloud.as_deref().is_none_or(|c| c == FAKE_CLOUD)
                && b.region.as_deref().is_none_or(|r| r == region)
                && b.zone.as_deref().is_none_or(|z| z == zone)
        })
    }

    /// The job's state at `now` (None: preempted, the cluster is not up).
    fn job_state(&self, c: &FakeCluster, now: Instant) -> Option<ClusterJob> {
        let elapsed = now.saturating_duration_since(c.started);
        let run_for = self.scaled(c.outcome.run_for);
        if let Some(p) = c.outcome.preempt_after.map(|p| self.scaled(p))
            && elapsed >= p
            && (p < run_for || p == Duration::ZERO)
        {
            return None;
        }
        let (status, exit_codes) = if c.cancelled {
            (sky_agent::JobStatus::Cancelled, vec![])
        } else if elapsed < run_for {
            (sky_agent::JobStatus::Running, vec![])
        } else if c.outcome.exit_code == 0 {
            (sky_agent::JobStatus::Succeeded, vec![0])
        } else {
            (sky_agent::JobStatus::Failed, vec![c.outcome.exit_code])
        };
        Some(ClusterJob { status, exit_codes })
    }
}

#[async_trait]
impl ClusterDriver for FakeDriver {
    async fn launch(
        &self,
        req: &DriverLaunch,
        cancel: &CancellationToken,
    ) -> Result<DriverLaunched, DriverError> {
        // Pick the region first (failover order, the pinned one first, never a blocked one).
        let region = {
            let w = self.lock();
            let mut order: Vec<usize> = (0..self.cfg.regions.len()).collect();
            if let Some((_, pinned)) = &req.region
                && let Some(i) = self.cfg.regions.iter().position(|(r, _)| r == pinned)
            {
                order.retain(|&j| j != i);
                order.insert(0, i);
            }
            order.into_iter().find(|&i| {
                let (r, z) = &self.cfg.regions[i];
                !Self::blocked(req, r, z) && !w.no_capacity.iter().any(|&n| usize::from(n) == i)
            })
        };
        let Some(region) = region else {
            self.no_capacity.fetch_add(1, Ordering::Relaxed);
            return Err(DriverError::new(
                DriverErrorKind::NoResources,
                format!(
                    "no capacity for cluster {} in any {FAKE_CLOUD} region (blocked or full)",
                    req.cluster
                ),
            ));
        };
        let wait = self.spread(self.cfg.provision, &req.job_name);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => {
                return Err(DriverError::new(
                    DriverErrorKind::Cancelled,
                    format!("launch of cluster {} cancelled", req.cluster),
                ));
            }
        }
        let job_id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let mut w = self.lock();
        let outcome = match w.scripts.get_mut(req.cluster.as_str()) {
            Some(list) if !list.is_empty() => list.remove(0),
            _ => self.cfg.default_outcome,
        };
        w.clusters.insert(
            req.cluster.as_str().into(),
            FakeCluster {
                region: u16::try_from(region).unwrap_or(u16::MAX),
                job_id,
                job_name: req.job_name.as_str().into(),
                started: Instant::now(),
                outcome,
                cancelled: false,
            },
        );
        self.peak_live
            .fetch_max(w.clusters.len() as u64, Ordering::Relaxed);
        drop(w);
        self.launches.fetch_add(1, Ordering::Relaxed);
        let (r, z) = &self.cfg.regions[region];
        Ok(DriverLaunched {
            cloud: FAKE_CLOUD.to_owned(),
            region: r.clone(),
            zone: Some(z.clone()),
            cluster_job_id: job_id,
        })
    }

    async fn probe(&self, cluster: &str, cluster_job_id: u64) -> Result<Probe, DriverError> {
        tokio::time::sleep(self.spread(self.cfg.probe, cluster)).await;
        self.probes.fetch_add(1, Ordering::Relaxed);
        let w = self.lock();
        let Some(c) = w.clusters.get(cluster) else {
            return Ok(Probe {
                cluster: ClusterHealth::Gone,
                job: None,
                preemption_notice: false,
            });
        };
        Ok(match self.job_state(c, Instant::now()) {
            None => Probe {
                cluster: ClusterHealth::NotUp,
                job: None,
                preemption_notice: false,
            },
            Some(job) => Probe {
                cluster: ClusterHealth::Up,
                job: (c.job_id == cluster_job_id).then_some(job),
                preemption_notice: false,
            },
        })
    }

    async fn find_job(&self, cluster: &str, job_name: &str) -> Result<Option<u64>, DriverError> {
        tokio::time::sleep(self.spread(self.cfg.probe, cluster)).await;
        let w = self.lock();
        Ok(w.clusters
            .get(cluster)
            .filter(|c| &*c.job_name == job_name)
            .map(|c| c.job_id))
    }

    async fn cancel_job(&self, cluster: &str, cluster_job_id: u64) -> Result<(), DriverError> {
        tokio::time::sleep(self.spread(self.cfg.probe, cluster)).await;
        if let Some(c) = self.lock().clusters.get_mut(cluster)
            && c.job_id == cluster_job_id
        {
            c.cancelled = true;
        }
        Ok(())
    }

    async fn down(&self, cluster: &str) -> Result<(), DriverError> {
        tokio::time::sleep(self.scaled(self.cfg.down)).await;
        if self.lock().clusters.remove(cluster).is_some() {
            self.downs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn stream_logs(
        &self,
        cluster: &str,
        cluster_job_id: u64,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), DriverError> {
        let io = |e: std::io::Error| {
            DriverError::new(
                DriverErrorKind::Other,
                format!(
                    "write the log of cluster {cluster} to {}: {e}",
                    out.display()
                ),
            )
        };
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .await
            .map_err(io)?;
        f.write_all(format!("fake job {cluster_job_id} on {cluster} started\n").as_bytes())
            .await
            .map_err(io)?;
        f.flush().await.map_err(io)?;
        loop {
            let done = {
                let w = self.lock();
                match w.clusters.get(cluster) {
                    None => true,
                    Some(c) if c.job_id != cluster_job_id => true,
                    Some(c) => self
                        .job_state(c, Instant::now())
                        .is_none_or(|j| j.status != sky_agent::JobStatus::Running),
                }
            };
            if done {
                f.write_all(format!("fake job {cluster_job_id} on {cluster} ended\n").as_bytes())
                    .await
                    .map_err(io)?;
                // tokio's File completes writes in the background: wait for them.
                f.flush().await.map_err(io)?;
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(self.scaled(Duration::from_secs(1))
                    .max(Duration::from_millis(10))) => {}
                () = cancel.cancelled() => return f.flush().await.map_err(io),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch_req(cluster: &str) -> DriverLaunch {
        let task = match sky_spec::parse_task_file("run: echo hi\n", &Default::default()) {
            Ok(sky_spec::TaskFile::Task(t)) => *t,
            _ => panic!("a one-line task parses"),
        };
        DriverLaunch {
            cluster: cluster.to_owned(),
            task,
            job_name: format!("{cluster}-0"),
            envs: vec![],
            secret_keys: vec![],
            blocked: vec![],
            region: None,
        }
    }

    /// Probes until `done` holds (the fake's clock is the real one, scaled).
    async fn probe_until(
        d: &FakeDriver,
        cluster: &str,
        id: u64,
        done: impl Fn(&Probe) -> bool,
    ) -> Probe {
        for _ in 0..2000 {
            let p = d.probe(cluster, id).await.unwrap();
            if done(&p) {
                return p;
            }
        }
        panic!("cluster {cluster} never reached the expected state");
    }

    #[tokio::test]
    async fn outcomes_latencies_and_capacity() {
        // 100 times faster than real: provisioning 20-50 ms, a probe 0.05-0.2 ms.
        let d = FakeDriver::new(FakeConfig {
            scale: 0.01,
            ..FakeConfig::default()
        });
        d.script(
            "a-1",
            vec![
                FakeOutcome {
                    run_for: Duration::from_secs(1000),
                    exit_code: 0,
                    preempt_after: Some(Duration::from_secs(3)),
                },
                FakeOutcome {
                    run_for: Duration::from_secs(3),
                    exit_code: 7,
                    preempt_after: None,
                },
            ],
        );
        let cancel = CancellationToken::new();
        let t0 = Instant::now();
        let l = d.launch(&launch_req("a-1"), &cancel).await.unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(20),
            "provisioning takes time"
        );
        assert_eq!(l.region, "fake-east");
        assert_eq!(d.region_of("a-1").as_deref(), Some("fake-east"));
        assert_eq!(
            d.find_job("a-1", "a-1-0").await.unwrap(),
            Some(l.cluster_job_id)
        );
        assert_eq!(d.find_job("a-1", "other").await.unwrap(), None);
        // Running, then preempted (the scripted 3 s are 30 ms here).
        let p = probe_until(&d, "a-1", l.cluster_job_id, |p| {
            p.cluster != ClusterHealth::Up
        })
        .await;
        assert_eq!(
            (p.cluster, p.job),
            (ClusterHealth::NotUp, None),
            "preempted"
        );
        d.down("a-1").await.unwrap();
        assert_eq!(
            d.probe("a-1", 1).await.unwrap().cluster,
            ClusterHealth::Gone
        );

        // Second attempt: the first region is blocked; the job exits 7.
        let mut req = launch_req("a-1");
        req.blocked.push(crate::Blocked {
            cloud: Some(FAKE_CLOUD.to_owned()),
            region: Some("fake-east".to_owned()),
            ..Default::default()
        });
        let l = d.launch(&req, &cancel).await.unwrap();
        assert_eq!(l.region, "fake-west");
        let p = probe_until(&d, "a-1", l.cluster_job_id, |p| {
            p.job
                .as_ref()
                .is_some_and(|j| j.status != sky_agent::JobStatus::Running)
        })
        .await;
        let job = p.job.unwrap();
        assert_eq!(
            (job.status, job.exit_codes),
            (sky_agent::JobStatus::Failed, vec![7])
        );
        // A stale job id is not the cluster's job.
        assert_eq!(
            d.probe("a-1", l.cluster_job_id + 100).await.unwrap().job,
            None
        );

        // No capacity anywhere, then in one region; a pinned region is tried first.
        for (r, _) in d.config().regions.clone() {
            d.set_capacity(&r, false);
        }
        let err = d.launch(&launch_req("b-2"), &cancel).await.unwrap_err();
        assert_eq!(err.kind, DriverErrorKind::NoResources);
        d.set_capacity("fake-north", true);
        d.set_capacity("fake-west", true);
        let mut pinned = launch_req("b-2");
        pinned.region = Some((FAKE_CLOUD.to_owned(), "fake-north".to_owned()));
        let l = d.launch(&pinned, &cancel).await.unwrap();
        assert_eq!(l.region, "fake-north");
        // Cancel of a running job; its log ends.
        d.cancel_job("b-2", l.cluster_job_id).await.unwrap();
        let job = d.probe("b-2", l.cluster_job_id).await.unwrap().job.unwrap();
        assert_eq!(job.status, sky_agent::JobStatus::Cancelled);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        d.stream_logs("b-2", l.cluster_job_id, &log, &cancel)
            .await
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("started") && text.contains("ended"), "{text}");
        // A cancelled launch leaves nothing.
        cancel.cancel();
        let err = d.launch(&launch_req("c-3"), &cancel).await.unwrap_err();
        assert_eq!(err.kind, DriverErrorKind::Cancelled);
        let s = d.stats();
        assert_eq!((s.launches, s.no_capacity, s.downs, s.live), (3, 1, 1, 2));
        assert_eq!(d.clusters(), ["a-1", "b-2"]);
    }
}
