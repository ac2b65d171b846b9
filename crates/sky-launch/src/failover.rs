//! Provisioning with failover: zone → region → next-cheapest cloud.
//!
//! Each failed placement is blocked and the optimizer runs again, so candidates are tried
//! cheapest first and ordered lists keep their order. What each error does is
//! [`ProvisionError::action`]'s to say (docs/specs/provider.md §4); this loop only follows it:
//! block and move on, retry with backoff (then block), or stop with the fix. Every failed
//! placement goes into the history.

use std::sync::Arc;
use std::time::Duration;

use sky_optimizer::{Blocked, Launchable, OptimizeError};
use sky_provider::{
    CloudProvider, ClusterHandle, FailoverAction, FailureScope, ProvisionError, ProvisionErrorKind,
    ProvisionRequest,
};
use sky_spec::Task;
use sky_state::{ClusterRecord, ClusterStatus};

use crate::{
    Backend, CancellationToken, ClusterState, Events, LaunchError, LaunchErrorKind, LaunchEvent,
    LaunchRequest, RetryReason, StoredHandle, cancelled, now, race, runtime,
};

/// One failed placement, for the failover history.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The provider id tried (`aws`, `local`).
    pub cloud: String,
    pub region: String,
    /// The zone tried (`None`: the provider picked zones of the region itself).
    pub zone: Option<String>,
    /// `Cloud (region[/zone])`.
    pub infra: String,
    /// `2x local(local, H100:4)`.
    pub resources: String,
    /// The provider's message.
    pub reason: String,
    /// What failed, as the provider classified it.
    pub kind: ProvisionErrorKind,
    /// How much of the cloud the provider said it rules out.
    pub scope: FailureScope,
    /// What the provider says to do, if anything.
    pub fix: Option<String>,
}

impl Attempt {
    pub(crate) fn new(
        l: &Launchable,
        zone: Option<&str>,
        num_nodes: u32,
        e: &ProvisionError,
    ) -> Self {
        Attempt {
            cloud: l.cloud.clone(),
            region: l.region.clone(),
            zone: zone.map(str::to_string),
            infra: infra_str(&l.cloud, &l.region, zone),
            resources: resources_str(l, num_nodes),
            reason: e.message.clone(),
            kind: e.kind,
            scope: e.scope,
            fix: e.fix.clone(),
        }
    }

    /// The provider's error as it was (kind, scope, message, fix).
    pub fn error(&self) -> ProvisionError {
        ProvisionError {
            kind: self.kind,
            scope: self.scope,
            message: self.reason.clone(),
            fix: self.fix.clone(),
        }
    }
}

/// The failover history as SkyPilot prints it: INFRA | RESOURCES | REASON.
pub fn render_history(history: &[Attempt]) -> String {
    let w0 = history
        .iter()
        .map(|a| a.infra.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let w1 = history
        .iter()
        .map(|a| a.resources.len())
        .max()
        .unwrap_or(0)
        .max(9);
    let mut out = format!("{:<w0$}   {:<w1$}   REASON\n", "INFRA", "RESOURCES");
    for a in history {
        out.push_str(&format!(
            "{:<w0$}   {:<w1$}   {}\n",
            a.infra, a.resources, a.reason
        ));
    }
    out
}

fn display_cloud(cloud: &str) -> String {
    sky_catalog::cloud_display_name(cloud).to_string()
}

pub(crate) fn infra_str(cloud: &str, region: &str, zone: Option<&str>) -> String {
    match zone {
        Some(z) => format!("{} ({region}/{z})", display_cloud(cloud)),
        None => format!("{} ({region})", display_cloud(cloud)),
    }
}

pub(crate) fn resources_str(l: &Launchable, num_nodes: u32) -> String {
    let mut inner = l.instance_type.clone();
    if let Some((a, c)) = &l.accelerator {
        inner.push_str(&format!(", {a}:{}", fmt_count(*c)));
    }
    if l.use_spot {
        inner.push_str(", spot");
    }
    format!("{num_nodes}x {}({inner})", display_cloud(&l.cloud))
}

pub(crate) fn fmt_count(c: f64) -> String {
    if c.fract() == 0.0 {
        format!("{c:.0}")
    } else {
        format!("{c}")
    }
}

enum TryError {
    /// The placement failed; failover may move on.
    Failed(ProvisionError),
    /// Something that failover cannot fix (state, agents, a cancel).
    Fatal(LaunchError),
}

/// How long `--retry-until-up` waits after round `rounds` (5 s more per round, at most 30 s).
fn retry_until_up_wait(rounds: u32) -> Duration {
    Duration::from_secs(u64::from(rounds.min(6)) * 5)
}

/// How long a transient error waits before try `tries + 1`.
fn transient_wait(tries: u32) -> Duration {
    Duration::from_millis(500 * (1 << tries))
}

impl Backend {
    /// Name of the cluster's resources at the provider: unique per user.
    fn name_on_cloud(&self, cluster: &str) -> String {
        let h = self
            .user
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        format!("{cluster}-{:04x}", h & 0xffff)
    }

    fn zones_to_try(&self, l: &Launchable, blocked: &[Blocked]) -> Vec<Option<String>> {
        if let Some(z) = &l.zone {
            return vec![Some(z.clone())];
        }
        let zones = self.catalog().zones(&l.cloud, &l.region);
        if zones.is_empty() {
            return vec![None];
        }
        zones
            .into_iter()
            .filter(|z| {
                !blocked.iter().any(|b| {
                    b.cloud.as_deref() == Some(l.cloud.as_str())
                        && b.region.as_deref() == Some(l.region.as_str())
                        && b.zone.as_deref() == Some(*z)
                })
            })
            .map(|z| Some(z.to_string()))
            .collect()
    }

    /// Provisions a new cluster, failing over until a placement works or none is left.
    /// The enabled clouds a launch may use, and those left out: with `-i`, clouds whose
    /// clusters autostop cannot act on (without `--down`, also those that cannot stop), as
    /// SkyPilot's optimizer does with its AUTOSTOP / AUTODOWN features.
    /// `Err` (the message) when `-i` left every enabled cloud out.
    pub fn launch_clouds(
        &self,
        idle_minutes: Option<i64>,
        down: bool,
    ) -> Result<(Vec<&str>, Vec<&str>), String> {
        let (usable, left_out): (Vec<&str>, Vec<&str>) = self
            .enabled_clouds
            .iter()
            .map(String::as_str)
            .partition(|c| {
                idle_minutes.is_none_or(|i| i < 0)
                    || self.registry.get(c).is_none_or(|p| {
                        let f = p.features();
                        f.autostop && (down || f.stop)
                    })
            });
        if usable.is_empty() && !left_out.is_empty() {
            return Err(format!(
                "no enabled cloud can run this launch.{}",
                autostop_note(&left_out, down)
            ));
        }
        Ok((usable, left_out))
    }

    pub(crate) async fn provision_new(
        &self,
        req: &LaunchRequest,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<StoredHandle, LaunchError> {
        let task = &req.task;
        let cluster = &req.cluster;
        let (enabled, left_out) = self
            .task_clouds(task, req.idle_minutes, req.down)
            .map_err(|e| e.left(ClusterState::Absent))?;
        // Each cloud planned as its provider's profile says (a catalog cloud without one: its
        // built-in profile).
        let clouds: Vec<sky_optimizer::CloudProfile> = enabled
            .iter()
            .map(|c| match self.registry.get(c) {
                Some(p) => p.profile(),
                None => sky_optimizer::profiles_of(&[c]).remove(0),
            })
            .collect();
        let mut blocked: Vec<Blocked> = req.blocked.clone();
        let mut history: Vec<Attempt> = Vec::new();
        let mut rounds = 0u32;
        loop {
            let plan = match sky_optimizer::optimize_task_with(
                self.catalog(),
                task,
                &clouds,
                &blocked,
            ) {
                Ok(p) => p,
                Err(OptimizeError::NoResources { message }) => {
                    if history.is_empty() {
                        let message = format!("{message}{}", autostop_note(&left_out, req.down));
                        return Err(LaunchError::new(LaunchErrorKind::NoResources, message)
                            .left(ClusterState::Absent));
                    }
                    if req.retry_until_up {
                        rounds += 1;
                        let wait = retry_until_up_wait(rounds);
                        ev.event(&LaunchEvent::Retrying {
                            after: wait,
                            why: RetryReason::RetryUntilUp {
                                attempts: history.len(),
                            },
                        });
                        if race(cancel, tokio::time::sleep(wait)).await.is_none() {
                            return Err(
                                cancelled(cluster, ClusterState::Absent).with_history(history)
                            );
                        }
                        blocked = req.blocked.clone();
                        continue;
                    }
                    let last = history.last().map(Attempt::error);
                    let message = format!(
                        "failed to provision cluster `{cluster}`: every placement failed ({} attempts). Try other resources, enable more clouds (`sky check`), or retry with --retry-until-up.\n{}",
                        history.len(),
                        render_history(&history)
                    );
                    let mut e = LaunchError::new(LaunchErrorKind::NoResources, message)
                        .with_history(history)
                        .left(ClusterState::Absent);
                    e.provision = last;
                    return Err(e);
                }
                Err(e) => {
                    return Err(LaunchError::invalid(e.to_string()).left(ClusterState::Absent));
                }
            };
            let l = plan.chosen;
            let mut region_done = false;
            for zone in self.zones_to_try(&l, &blocked) {
                ev.event(&LaunchEvent::Provisioning {
                    cloud: l.cloud.clone(),
                    region: l.region.clone(),
                    zone: zone.clone(),
                });
                match self.try_place(req, &l, zone.clone(), cancel, ev).await {
                    Ok(h) => return Ok(h),
                    Err(TryError::Fatal(e)) => {
                        return Err(e.with_history(history));
                    }
                    Err(TryError::Failed(e)) => {
                        let attempt = Attempt::new(&l, zone.as_deref(), task.num_nodes, &e);
                        ev.event(&LaunchEvent::AttemptFailed(attempt.clone()));
                        history.push(attempt);
                        // try_place has used up the retries: a retry's scope is blocked now.
                        let scope = match e.action() {
                            FailoverAction::Stop => None,
                            FailoverAction::MoveOn(s) | FailoverAction::Retry(s) => Some(s),
                        };
                        match scope {
                            None => {
                                let fix = e
                                    .fix
                                    .clone()
                                    .map(|f| format!("\nTo fix: {f}"))
                                    .unwrap_or_default();
                                let message = format!(
                                    "failed to provision cluster `{cluster}` on {}: {}{fix}\nFailover stopped: this error would repeat on every placement of {}.",
                                    infra_str(&l.cloud, &l.region, zone.as_deref()),
                                    e.message,
                                    display_cloud(&l.cloud)
                                );
                                return Err(LaunchError::new(
                                    LaunchErrorKind::FailoverStopped,
                                    message,
                                )
                                .with_provision(e)
                                .with_history(history)
                                .left(ClusterState::Absent));
                            }
                            Some(scope) => match scope {
                                FailureScope::Zone => blocked.push(block(&l, zone.clone(), false)),
                                FailureScope::Region => {
                                    blocked.push(block(&l, None, false));
                                    region_done = true;
                                    break;
                                }
                                _ => {
                                    blocked.push(Blocked {
                                        cloud: Some(l.cloud.clone()),
                                        ..Blocked::default()
                                    });
                                    region_done = true;
                                    break;
                                }
                            },
                        }
                    }
                }
            }
            if !region_done {
                blocked.push(block(&l, l.zone.clone(), false));
                if l.zone.is_none() {
                    // Every zone of the region failed: block the region.
                    blocked.push(block(&l, None, false));
                }
            }
        }
    }

    /// Re-provisions an INIT cluster in its recorded place (no failover: its instances may
    /// exist). Cancelled, it leaves the cluster INIT as it was: a launch never tears down a
    /// cluster it did not create.
    pub(crate) async fn provision_in_place(
        &self,
        req: &LaunchRequest,
        h: &StoredHandle,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<StoredHandle, LaunchError> {
        let cluster = &req.cluster;
        let left = ClusterState::Init { instances_up: true };
        let p = self.provider(&h.provider.cloud)?;
        let preq = request_from_handle(&h.provider, &req.task);
        let handle = race(cancel, p.run_instances(&preq))
            .await
            .ok_or_else(|| cancelled(cluster, left))?
            .map_err(|e| {
                LaunchError::provider(format!(
                    "failed to provision `{cluster}` in its recorded place: {e}; `sky down {cluster}` removes it"
                ))
                .with_provision(e)
                .left(left)
            })?;
        self.finish_provisioning(req, handle, false, cancel, ev)
            .await
    }

    async fn try_place(
        &self,
        req: &LaunchRequest,
        l: &Launchable,
        zone: Option<String>,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<StoredHandle, TryError> {
        let task = &req.task;
        let cluster = &req.cluster;
        let p = self.provider(&l.cloud).map_err(TryError::Fatal)?;
        let prelim = ClusterHandle {
            cloud: l.cloud.clone(),
            cluster_name: cluster.clone(),
            cluster_name_on_cloud: self.name_on_cloud(cluster),
            region: l.region.clone(),
            zone: zone.clone(),
            num_nodes: task.num_nodes.max(1),
            instance_type: l.instance_type.clone(),
            use_spot: l.use_spot,
            provider_config: serde_json::Value::Null,
        };
        let launched = resources_str(l, task.num_nodes.max(1));
        let stored = StoredHandle {
            provider: prelim.clone(),
            agent_addr: None,
            agent_token: None,
            ips: Vec::new(),
            node_accelerators: l.accelerator.clone(),
            launched_resources: launched.clone(),
            ports: l.resources.ports.iter().map(ToString::to_string).collect(),
        };
        // Record first: whatever happens next, `sky down` can find it.
        let t = now();
        let record = ClusterRecord {
            cluster_hash: String::new(),
            name: cluster.clone(),
            status: ClusterStatus::Init,
            handle: serde_json::to_value(&stored).unwrap_or_default(),
            resources_str: launched.clone(),
            num_nodes: task.num_nodes.max(1),
            cloud: l.cloud.clone(),
            region: l.region.clone(),
            zone: zone.clone(),
            launched_at: t,
            last_use: req.command_line.clone(),
            autostop: None,
            status_updated_at: t,
            price_per_hour: l.hourly_price * f64::from(task.num_nodes.max(1)),
        };
        self.state
            .upsert_cluster(&record)
            .await
            .map_err(|e| TryError::Fatal(e.into()))?;
        let mut preq = request_from_handle(&prelim, task);
        preq.resources = l.resources.clone();
        let mut tries = 0;
        loop {
            tries += 1;
            let e = match race(cancel, p.run_instances(&preq)).await {
                None => {
                    return Err(TryError::Fatal(
                        self.undo_cancelled(&p, &prelim, None, cluster).await,
                    ));
                }
                // Waiting is part of provisioning: if the instances never come up, this
                // placement failed like any other (terminated, then failover).
                Some(Ok(handle)) => match race(cancel, p.wait_instances(&handle)).await {
                    None => {
                        return Err(TryError::Fatal(
                            self.undo_cancelled(&p, &prelim, Some(&handle), cluster)
                                .await,
                        ));
                    }
                    Some(Ok(())) => {
                        return self
                            .finish_provisioning(req, handle, true, cancel, ev)
                            .await
                            .map_err(TryError::Fatal);
                    }
                    Some(Err(e)) => {
                        let _ = p.terminate_instances(&handle).await;
                        e
                    }
                },
                Some(Err(e)) => e,
            };
            // The provider must have cleaned up; terminate again to be sure, then forget.
            let _ = p.terminate_instances(&prelim).await;
            if matches!(e.action(), FailoverAction::Retry(_)) && tries < FailoverAction::RETRIES {
                let wait = transient_wait(tries);
                ev.event(&LaunchEvent::Retrying {
                    after: wait,
                    why: RetryReason::Transient {
                        message: e.message.clone(),
                    },
                });
                if race(cancel, tokio::time::sleep(wait)).await.is_none() {
                    self.state
                        .remove_cluster(cluster, now())
                        .await
                        .map_err(|e| TryError::Fatal(e.into()))?;
                    return Err(TryError::Fatal(
                        cancelled(cluster, ClusterState::Absent).with_provision(e),
                    ));
                }
                continue;
            }
            self.state
                .remove_cluster(cluster, now())
                .await
                .map_err(|e| TryError::Fatal(e.into()))?;
            return Err(TryError::Failed(e));
        }
    }

    /// A launch cancelled while its instances were being made: terminates what this attempt
    /// made and forgets the record (`Absent`); if terminating fails, the record stays INIT
    /// for `sky down` (`Init { instances_up: true }`), and the error says so.
    async fn undo_cancelled(
        &self,
        p: &Arc<dyn CloudProvider>,
        prelim: &ClusterHandle,
        made: Option<&ClusterHandle>,
        cluster: &str,
    ) -> LaunchError {
        let mut failed = None;
        if let Some(h) = made
            && let Err(e) = p.terminate_instances(h).await
        {
            failed = Some(e);
        }
        if let Err(e) = p.terminate_instances(prelim).await {
            failed = Some(e);
        }
        match failed {
            None => match self.state.remove_cluster(cluster, now()).await {
                Ok(_) => cancelled(cluster, ClusterState::Absent),
                Err(e) => cancelled(cluster, ClusterState::Init { instances_up: false })
                    .with_message(format!(
                        "cancelled: what this launch made was terminated, but removing the record of cluster {cluster} failed ({e}); `sky down {cluster}` removes it"
                    )),
            },
            Some(e) => cancelled(cluster, ClusterState::Init { instances_up: true })
                .with_message(format!(
                    "cancelled: terminating what this launch made failed ({e}); cluster {cluster} stays recorded INIT: `sky down {cluster}` removes it"
                ))
                .with_provision(e),
        }
    }

    /// After the instances exist: wait (unless `waited`), start the agents, record the cluster
    /// UP. A failure or a cancel from here on leaves the cluster INIT with its instances up.
    async fn finish_provisioning(
        &self,
        req: &LaunchRequest,
        handle: ClusterHandle,
        waited: bool,
        cancel: &CancellationToken,
        ev: &dyn Events,
    ) -> Result<StoredHandle, LaunchError> {
        let cluster = req.cluster.clone();
        let left = ClusterState::Init { instances_up: true };
        let p = self.provider(&handle.cloud)?;
        // Save the provider's real handle before anything else can fail.
        let mut rec = self.record(&cluster).await?;
        let mut stored = Self::stored_handle(&rec)?;
        stored.provider = handle.clone();
        rec.handle = serde_json::to_value(&stored).unwrap_or_default();
        rec.zone = handle.zone.clone();
        self.state.upsert_cluster(&rec).await?;
        if !waited {
            race(cancel, p.wait_instances(&handle))
                .await
                .ok_or_else(|| cancelled(&cluster, left))?
                .map_err(|e| {
                    LaunchError::provider(format!(
                        "instances of `{cluster}` did not come up: {e}; `sky down {cluster}` removes them"
                    ))
                    .with_provision(e)
                    .left(left)
                })?;
        }
        let stored = race(
            cancel,
            runtime::start_agents(self, &cluster, handle, &stored, ev),
        )
        .await
        .ok_or_else(|| cancelled(&cluster, left))?
        .map_err(|e| {
            // The instances exist and the cluster is recorded INIT: say what to do with it.
            let m = format!(
                "{e}\nCluster `{cluster}` is INIT with its instances up: `sky launch -c {cluster}` with the same task tries again, `sky down {cluster}` removes them."
            );
            match e.kind {
                LaunchErrorKind::Provider | LaunchErrorKind::Runtime => e.with_message(m),
                _ => e,
            }
            .left(left)
        })?;
        let mut rec = self.record(&cluster).await?;
        rec.handle = serde_json::to_value(&stored).unwrap_or_default();
        self.state.upsert_cluster(&rec).await?;
        self.state
            .set_status(&cluster, ClusterStatus::Up, now())
            .await?;
        self.state
            .add_event(
                &cluster,
                "UP",
                &format!(
                    "provisioned on {}",
                    infra_str(
                        &stored.provider.cloud,
                        &stored.provider.region,
                        stored.provider.zone.as_deref()
                    )
                ),
                now(),
            )
            .await?;
        ev.event(&LaunchEvent::Up {
            cluster: cluster.clone(),
            cloud: stored.provider.cloud.clone(),
            region: stored.provider.region.clone(),
            zone: stored.provider.zone.clone(),
        });
        Ok(stored)
    }
}

fn block(l: &Launchable, zone: Option<String>, any_spot: bool) -> Blocked {
    Blocked {
        cloud: Some(l.cloud.clone()),
        region: Some(l.region.clone()),
        zone,
        instance_type: Some(l.instance_type.clone()),
        accelerator: None,
        use_spot: if any_spot { None } else { Some(l.use_spot) },
    }
}

fn request_from_handle(h: &ClusterHandle, task: &Task) -> ProvisionRequest {
    let first = task
        .resources
        .candidates()
        .first()
        .cloned()
        .unwrap_or_default();
    ProvisionRequest {
        cluster_name: h.cluster_name.clone(),
        cluster_name_on_cloud: h.cluster_name_on_cloud.clone(),
        region: h.region.clone(),
        zone: h.zone.clone(),
        num_nodes: h.num_nodes,
        instance_type: h.instance_type.clone(),
        use_spot: h.use_spot,
        ports: first.ports.clone(),
        resources: first,
    }
}

/// What to add to a "nothing fits" message when `-i` left clouds out (empty when none).
pub fn autostop_note(left_out: &[&str], down: bool) -> String {
    if left_out.is_empty() {
        return String::new();
    }
    format!(
        "\nLeft out because autostop (-i) cannot act on their clusters{}: {}",
        if down { "" } else { " without --down" },
        left_out.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_a_table() {
        let l = Launchable {
            cloud: "local".into(),
            region: "r1".into(),
            zone: None,
            instance_type: "local".into(),
            accelerator: None,
            vcpus: None,
            memory_gib: None,
            use_spot: false,
            hourly_price: 0.0,
            candidate_index: 0,
            resources: Default::default(),
        };
        let cap = ProvisionError::capacity(FailureScope::Zone, "no capacity");
        let quota = ProvisionError::quota(FailureScope::Region, "quota").with_fix("raise it");
        let h = vec![
            Attempt::new(&l, Some("z1"), 1, &cap),
            Attempt::new(&l, Some("z2"), 1, &quota),
        ];
        assert_eq!(h[0].infra, "Local (r1/z1)");
        assert_eq!(h[1].resources, "1x Local(local)");
        assert_eq!(h[1].error(), quota);
        assert_eq!(
            (h[1].kind, h[1].scope, h[1].zone.as_deref()),
            (ProvisionErrorKind::Quota, FailureScope::Region, Some("z2"))
        );
        let t = render_history(&h);
        assert!(t.starts_with("INFRA"));
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("r1/z2") && t.contains("quota"));
    }
}
