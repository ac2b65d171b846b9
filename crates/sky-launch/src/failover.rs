//! Provisioning with failover: zone → region → next-cheapest cloud.
//!
//! Each failed placement is blocked and the optimizer runs again, so candidates are tried
//! cheapest first and ordered lists keep their order. What each error does is
//! [`ProvisionError::action`]'s to say (docs/specs/provider.md §4); this loop only follows it:
//! block and move on, retry with backoff (then block), or stop with the fix. Every failed
//! placement goes into the history.

use std::time::Duration;

use sky_optimizer::{Blocked, Launchable, OptimizeError};
use sky_provider::{ClusterHandle, FailoverAction, FailureScope, ProvisionError, ProvisionRequest};
use sky_spec::Task;
use sky_state::{ClusterRecord, ClusterStatus};

use crate::{Backend, LaunchError, LaunchOptions, Reporter, StoredHandle, now, runtime};

/// One failed placement, for the failover history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// `Cloud (region[/zone])`.
    pub infra: String,
    /// `2x local(local, H100:4)`.
    pub resources: String,
    pub reason: String,
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
    /// Something that failover cannot fix (state, agents).
    Fatal(LaunchError),
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
        task: &Task,
        opts: &LaunchOptions,
        rep: &dyn Reporter,
    ) -> Result<StoredHandle, LaunchError> {
        let (enabled, left_out) = self.task_clouds(task, opts.idle_minutes, opts.down)?;
        // Each cloud planned as its provider's profile says (a catalog cloud without one: its
        // built-in profile).
        let clouds: Vec<sky_optimizer::CloudProfile> = enabled
            .iter()
            .map(|c| match self.registry.get(c) {
                Some(p) => p.profile(),
                None => sky_optimizer::profiles_of(&[c]).remove(0),
            })
            .collect();
        let mut blocked: Vec<Blocked> = Vec::new();
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
                        let message = format!("{message}{}", autostop_note(&left_out, opts.down));
                        return Err(LaunchError::NoResources { message, history });
                    }
                    if opts.retry_until_up {
                        rounds += 1;
                        let wait = Duration::from_secs(u64::from(rounds.min(6)) * 5);
                        rep.step(&format!(
                            "every placement failed ({} attempts); retrying in {}s (--retry-until-up)",
                            history.len(),
                            wait.as_secs()
                        ));
                        tokio::time::sleep(wait).await;
                        blocked.clear();
                        continue;
                    }
                    return Err(LaunchError::NoResources {
                        message: format!(
                            "failed to provision cluster `{}`: every placement failed ({} attempts). Try other resources, enable more clouds (`sky check`), or retry with --retry-until-up.\n{}",
                            opts.cluster,
                            history.len(),
                            render_history(&history)
                        ),
                        history,
                    });
                }
                Err(e) => return Err(LaunchError::Invalid(e.to_string())),
            };
            let l = plan.chosen;
            let mut region_done = false;
            for zone in self.zones_to_try(&l, &blocked) {
                rep.step(&format!(
                    "Launching on {}",
                    infra_str(&l.cloud, &l.region, zone.as_deref())
                ));
                match self.try_place(task, opts, &l, zone.clone(), rep).await {
                    Ok(h) => return Ok(h),
                    Err(TryError::Fatal(e)) => return Err(e),
                    Err(TryError::Failed(e)) => {
                        let attempt = Attempt {
                            infra: infra_str(&l.cloud, &l.region, zone.as_deref()),
                            resources: resources_str(&l, task.num_nodes),
                            reason: e.message.clone(),
                        };
                        rep.attempt_failed(&attempt);
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
                                return Err(LaunchError::Stopped {
                                    message: format!(
                                        "failed to provision cluster `{}` on {}: {}{fix}\nFailover stopped: this error would repeat on every placement of {}.",
                                        opts.cluster,
                                        infra_str(&l.cloud, &l.region, zone.as_deref()),
                                        e.message,
                                        display_cloud(&l.cloud)
                                    ),
                                    history,
                                });
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

    /// Re-provisions an INIT cluster in its recorded place (no failover: its instances may exist).
    pub(crate) async fn provision_in_place(
        &self,
        task: &Task,
        opts: &LaunchOptions,
        h: &StoredHandle,
        rep: &dyn Reporter,
    ) -> Result<StoredHandle, LaunchError> {
        let p = self.provider(&h.provider.cloud)?;
        let req = request_from_handle(&h.provider, task);
        let handle = p.run_instances(&req).await.map_err(|e| {
            LaunchError::Provider(format!(
                "failed to provision `{}` in its recorded place: {e}; `sky down {}` removes it",
                opts.cluster, opts.cluster
            ))
        })?;
        self.finish_provisioning(opts, handle, rep, false).await
    }

    async fn try_place(
        &self,
        task: &Task,
        opts: &LaunchOptions,
        l: &Launchable,
        zone: Option<String>,
        rep: &dyn Reporter,
    ) -> Result<StoredHandle, TryError> {
        let p = self.provider(&l.cloud).map_err(TryError::Fatal)?;
        let prelim = ClusterHandle {
            cloud: l.cloud.clone(),
            cluster_name: opts.cluster.clone(),
            cluster_name_on_cloud: self.name_on_cloud(&opts.cluster),
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
            name: opts.cluster.clone(),
            status: ClusterStatus::Init,
            handle: serde_json::to_value(&stored).unwrap_or_default(),
            resources_str: launched.clone(),
            num_nodes: task.num_nodes.max(1),
            cloud: l.cloud.clone(),
            region: l.region.clone(),
            zone: zone.clone(),
            launched_at: t,
            last_use: opts.command_line.clone(),
            autostop: None,
            status_updated_at: t,
            price_per_hour: l.hourly_price * f64::from(task.num_nodes.max(1)),
        };
        self.state
            .upsert_cluster(&record)
            .await
            .map_err(|e| TryError::Fatal(e.into()))?;
        let mut req = request_from_handle(&prelim, task);
        req.resources = l.resources.clone();
        let mut tries = 0;
        loop {
            tries += 1;
            let e = match p.run_instances(&req).await {
                // Waiting is part of provisioning: if the instances never come up, this
                // placement failed like any other (terminated, then failover).
                Ok(handle) => match p.wait_instances(&handle).await {
                    Ok(()) => {
                        return self
                            .finish_provisioning(opts, handle, rep, true)
                            .await
                            .map_err(TryError::Fatal);
                    }
                    Err(e) => {
                        let _ = p.terminate_instances(&handle).await;
                        e
                    }
                },
                Err(e) => e,
            };
            // The provider must have cleaned up; terminate again to be sure, then forget.
            let _ = p.terminate_instances(&prelim).await;
            if matches!(e.action(), FailoverAction::Retry(_)) && tries < FailoverAction::RETRIES {
                let wait = Duration::from_millis(500 * (1 << tries));
                rep.step(&format!(
                    "transient error ({}); retrying in {:.1}s",
                    e.message,
                    wait.as_secs_f64()
                ));
                tokio::time::sleep(wait).await;
                continue;
            }
            self.state
                .remove_cluster(&opts.cluster, now())
                .await
                .map_err(|e| TryError::Fatal(e.into()))?;
            return Err(TryError::Failed(e));
        }
    }

    /// After the instances exist: wait (unless `waited`), start the agents, record the cluster UP.
    async fn finish_provisioning(
        &self,
        opts: &LaunchOptions,
        handle: ClusterHandle,
        rep: &dyn Reporter,
        waited: bool,
    ) -> Result<StoredHandle, LaunchError> {
        let cluster = opts.cluster.clone();
        let p = self.provider(&handle.cloud)?;
        // Save the provider's real handle before anything else can fail.
        let mut rec = self.record(&cluster).await?;
        let mut stored = Self::stored_handle(&rec)?;
        stored.provider = handle.clone();
        rec.handle = serde_json::to_value(&stored).unwrap_or_default();
        rec.zone = handle.zone.clone();
        self.state.upsert_cluster(&rec).await?;
        if !waited {
            p.wait_instances(&handle).await.map_err(|e| {
                LaunchError::Provider(format!(
                    "instances of `{cluster}` did not come up: {e}; `sky down {cluster}` removes them"
                ))
            })?;
        }
        let stored = runtime::start_agents(self, &cluster, handle, &stored, rep)
            .await
            .map_err(|e| match e {
                // The instances exist and the cluster is recorded INIT: say what to do with it.
                LaunchError::Provider(m) => LaunchError::Provider(format!(
                    "{m}\nCluster `{cluster}` is INIT with its instances up: `sky launch -c {cluster}` with the same task tries again, `sky down {cluster}` removes them."
                )),
                e => e,
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
        rep.done(&format!(
            "Cluster {cluster} is UP on {}",
            infra_str(
                &stored.provider.cloud,
                &stored.provider.region,
                stored.provider.zone.as_deref()
            )
        ));
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
        let h = vec![
            Attempt {
                infra: "Local (r1/z1)".into(),
                resources: "1x Local(local)".into(),
                reason: "no capacity".into(),
            },
            Attempt {
                infra: "Local (r1/z2)".into(),
                resources: "1x Local(local)".into(),
                reason: "quota".into(),
            },
        ];
        let t = render_history(&h);
        assert!(t.starts_with("INFRA"));
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("r1/z2") && t.contains("quota"));
    }
}
