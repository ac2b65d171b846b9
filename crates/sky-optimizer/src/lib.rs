//! `sky-optimizer`: picks where a task runs, the way SkyPilot's optimizer does.
//!
//! For every candidate of a task's resource request and every enabled cloud it finds the
//! feasible instance types in the catalog (default instance types for CPU-only requests, GCP
//! host VMs for attachable GPUs and TPU VMs), keeps each cloud's cheapest, expands it into one
//! launchable per region (on-demand) or per zone (spot, and always on GCP), prices it for one
//! hour × nodes, and chooses the cheapest; any-of candidates compete on cost, ordered lists are
//! tried in order, blocked launchables (what failover feeds back) are skipped. It returns the
//! plan, the full failover order and the "Considered resources" table data; pipelines are
//! solved by dynamic programming over the chain with cross-cloud egress costs.
//!
//! What it knows of each cloud comes from the cloud's [`CloudProfile`] (`sky-clouds`): which
//! features it has (spot, several nodes, disk tiers), whether it plans per zone, whether its
//! accelerators attach to host VMs, its display name, its egress prices and its tie-break rank.
//! [`optimize_task`] looks the built-in profiles up by name; [`optimize_task_with`] takes the
//! profiles from the caller (the launcher passes each provider's `CloudProvider::profile`), so
//! a third-party cloud is planned with its own profile without a change here.
//!
//! Used by the CLI (`sky launch --dryrun`) and by the launcher's failover loop. Invariant: the
//! optimizer is pure and synchronous — it never calls a provider, reads credentials, the
//! environment, files or the clock; callers pass in the enabled clouds and the blocked set.

mod feasible;
mod pipeline;
mod render;
mod validate;

use std::borrow::Cow;

use sky_catalog::{Catalog, cloud_display_name};
use sky_spec::{AcceleratorRequest, ResourceChoice, Resources, Task};

pub use pipeline::{PipelinePlan, egress_cost, optimize_pipeline, optimize_pipeline_with};
pub use sky_clouds::{CloudProfile, FeatureSet};
pub use validate::{Finding, Severity, check_task, validate_task};

use feasible::{Feasible, expand, feasible, is_tpu};

/// The profiles of clouds named by id: the built-in profile, or for a name without one (a
/// cloud whose offers the caller added to the catalog) a profile that claims every feature —
/// nothing is known of it, so nothing is ruled out (the launcher checks its providers'
/// features before it plans).
pub fn profiles_of(ids: &[&str]) -> Vec<CloudProfile> {
    ids.iter()
        .map(|id| {
            sky_clouds::profile(id).cloned().unwrap_or_else(|| {
                CloudProfile::minimal(
                    id,
                    FeatureSet {
                        stop: true,
                        spot: true,
                        multi_node: true,
                        open_ports: true,
                        custom_image: true,
                        docker: true,
                        autostop: true,
                        disk_tiers: true,
                    },
                )
            })
        })
        .collect()
}

/// A launchable that must not be chosen (a failover failure). `None` fields are wildcards.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Blocked {
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    /// Accelerator name (`A100`) or name and count (`A100:8`).
    pub accelerator: Option<String>,
    pub use_spot: Option<bool>,
}

impl Blocked {
    /// Blocks exactly this launchable's placement (cloud, region, zone, instance, accelerator, spot).
    pub fn from_launchable(l: &Launchable) -> Blocked {
        Blocked {
            cloud: Some(l.cloud.clone()),
            region: Some(l.region.clone()),
            zone: l.zone.clone(),
            instance_type: Some(l.instance_type.clone()),
            accelerator: l
                .accelerator
                .as_ref()
                .map(|(n, c)| format!("{n}:{}", fmt_count(*c))),
            use_spot: Some(l.use_spot),
        }
    }

    /// SkyPilot's `Resources.should_be_blocked_by`.
    pub fn blocks(&self, l: &Launchable) -> bool {
        let eq = |b: &Option<String>, v: &str| b.as_ref().is_none_or(|b| b.eq_ignore_ascii_case(v));
        eq(&self.cloud, &l.cloud)
            && eq(&self.region, &l.region)
            && self
                .zone
                .as_ref()
                .is_none_or(|z| l.zone.as_deref() == Some(z.as_str()))
            && eq(&self.instance_type, &l.instance_type)
            && self.use_spot.is_none_or(|s| s == l.use_spot)
            && self.accelerator.as_ref().is_none_or(|a| {
                let Some((name, count)) = &l.accelerator else {
                    return false;
                };
                match a.split_once(':') {
                    Some((n, c)) => {
                        n.eq_ignore_ascii_case(name)
                            && c.parse::<f64>().is_ok_and(|c| (c - count).abs() <= 0.01)
                    }
                    None => a.eq_ignore_ascii_case(name),
                }
            })
    }
}

/// One concrete placement: cloud, region (and zone), instance type, price.
#[derive(Clone, Debug, PartialEq)]
pub struct Launchable {
    /// Lower-case cloud id.
    pub cloud: String,
    pub region: String,
    /// Set for spot placements on zoned clouds and always on GCP.
    pub zone: Option<String>,
    pub instance_type: String,
    pub accelerator: Option<(String, f64)>,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    pub use_spot: bool,
    /// Hourly price of one node.
    pub hourly_price: f64,
    /// Index of the candidate in `task.resources.candidates()` this came from.
    pub candidate_index: usize,
    /// The candidate with cloud, region, zone, instance type and accelerators filled in.
    pub resources: Resources,
}

impl Launchable {
    /// `Cloud (zone-or-region)`, as in the INFRA column.
    pub fn infra(&self) -> String {
        format!("{} ({})", cloud_display_name(&self.cloud), self.location())
    }

    /// The zone where there is one, else the region.
    pub fn location(&self) -> &str {
        self.zone.as_deref().unwrap_or(&self.region)
    }

    /// `A100:8`, or `None` without accelerators.
    pub fn gpus(&self) -> Option<String> {
        self.accelerator
            .as_ref()
            .map(|(n, c)| format!("{n}:{}", fmt_count(*c)))
    }
}

/// One row of the "Considered resources" table.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsideredRow {
    /// `GCP (us-central1-a)`.
    pub infra: String,
    /// Display name (`GCP`).
    pub cloud: String,
    /// Zone where there is one, else region.
    pub location: String,
    /// Instance type, with a `[Spot]` suffix for spot.
    pub instance: String,
    pub vcpus: Option<f64>,
    pub mem_gb: Option<f64>,
    /// `A100:8`.
    pub gpus: Option<String>,
    /// Hourly price × nodes.
    pub cost: f64,
    pub chosen: bool,
}

/// The optimizer's answer for one task.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub num_nodes: u32,
    pub chosen: Launchable,
    /// Every unblocked launchable, in the order failover tries them (the chosen one first).
    pub failover_order: Vec<Launchable>,
    /// Table rows, in display order.
    pub rows: Vec<ConsideredRow>,
    /// Printed before the table (spot warning, ordered-list note, TPU runtime note).
    pub notes: Vec<String>,
    /// Printed after the table ("🔍 Multiple ... instances satisfy ...", "To list more details ...").
    pub hints: Vec<String>,
    /// Hourly price × nodes of the chosen launchable.
    pub estimated_cost_per_hour: f64,
}

/// Why no plan could be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OptimizeError {
    /// Nothing in the catalog (or nothing unblocked) satisfies the request.
    #[error("{message}")]
    NoResources { message: String },
    /// The request itself is invalid for the catalog (unknown region, instance type, ...).
    #[error("{message}")]
    InvalidRequest { message: String },
    /// No cloud is enabled, or every cloud the task names is disabled.
    #[error("{message}")]
    CloudNotEnabled { message: String },
    /// A pipeline with no tasks.
    #[error("the pipeline has no tasks")]
    EmptyPipeline,
}

pub(crate) fn fmt_count(c: f64) -> String {
    if c.fract() == 0.0 && c.abs() < 1e15 {
        format!("{}", c as i64)
    } else {
        format!("{c}")
    }
}

/// Enabled clouds that have a catalog, in SkyPilot's enumeration order: ranked profiles by
/// rank, then the others in the order given; a cloud given twice counts once (the first).
pub(crate) fn ordered_clouds<'a>(
    catalog: &Catalog,
    clouds: &'a [CloudProfile],
) -> Vec<&'a CloudProfile> {
    let mut v: Vec<&CloudProfile> = Vec::with_capacity(clouds.len());
    for p in clouds {
        if !v.iter().any(|q| q.id.eq_ignore_ascii_case(&p.id)) && catalog.has_cloud(&p.id) {
            v.push(p);
        }
    }
    v.sort_by_key(|p| p.rank.map_or(u16::MAX, u16::from));
    v
}

/// The lower-case ids of `clouds`.
pub(crate) fn ids(clouds: &[&CloudProfile]) -> Vec<String> {
    clouds.iter().map(|p| p.id.to_ascii_lowercase()).collect()
}

/// The display name of `id`: its profile's among `clouds`, else the built-in one.
pub(crate) fn display<'a>(clouds: &'a [&CloudProfile], id: &'a str) -> &'a str {
    match clouds.iter().find(|p| p.id.eq_ignore_ascii_case(id)) {
        Some(p) => &p.display_name,
        None => cloud_display_name(id),
    }
}

/// The launchables of one task, before choosing.
pub(crate) struct Candidates {
    /// (id, display name) of the clouds planned on.
    pub names: Vec<(String, Cow<'static, str>)>,
    /// (launchable, insertion order) for every candidate considered in the table.
    pub all: Vec<Launchable>,
    /// Candidate indices whose launchables may be chosen (ordered: the first with any).
    pub choosable: Vec<usize>,
    /// Per cloud, the feasible instance types of the choosable candidates (for the hints).
    pub per_cloud: Vec<(String, Vec<Feasible>)>,
    pub fuzzy: Vec<String>,
    /// Clouds left out for a feature they lack: `RunPod cannot run clusters of several nodes
    /// (num_nodes: 2)`.
    pub left_out: Vec<String>,
    pub notes: Vec<String>,
    /// Resolved (validated) candidates.
    pub resolved: Vec<Resources>,
}

impl Candidates {
    /// The display name of a cloud planned on.
    pub(crate) fn display<'a>(&'a self, id: &'a str) -> &'a str {
        match self.names.iter().find(|(c, _)| c == id) {
            Some((_, d)) => d,
            None => cloud_display_name(id),
        }
    }
}

/// Resolves, checks and expands every candidate of `task`.
pub(crate) fn candidates(
    catalog: &Catalog,
    task: &Task,
    enabled: &[CloudProfile],
    blocked: &[Blocked],
) -> Result<Candidates, OptimizeError> {
    let profiles = ordered_clouds(catalog, enabled);
    let clouds = ids(&profiles);
    if clouds.is_empty() {
        return Err(OptimizeError::CloudNotEnabled {
            message: "no cloud with a catalog is enabled. Run `sky check` to see which clouds are enabled and how to enable them".into(),
        });
    }
    let num_nodes = task.num_nodes.max(1);
    let cands = task.resources.candidates();
    let ordered = matches!(task.resources, ResourceChoice::Ordered(_));
    let mut notes = Vec::new();
    let mut resolved = Vec::with_capacity(cands.len());
    for c in cands {
        resolved.push(
            validate::resolve(catalog, c, &clouds, &profiles)
                .map_err(|message| OptimizeError::InvalidRequest { message })?,
        );
    }
    if resolved
        .iter()
        .any(|r| r.accelerators.as_ref().is_some_and(|a| is_tpu(&a.name)))
    {
        for r in &resolved {
            if let Some(a) = &r.accelerators
                && is_tpu(&a.name)
                && r.accelerator_args
                    .as_ref()
                    .is_none_or(|v| v.get("runtime_version").is_none())
            {
                let default = if a.name.contains("v6e") {
                    "v2-alpha-tpuv6e"
                } else if a.name.contains("v5") {
                    "v2-alpha-tpuv5"
                } else {
                    "tpu-vm-base"
                };
                let note = format!(
                    "Missing runtime_version in accelerator_args, using default ({default})"
                );
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
    }
    // Named clouds that are not enabled.
    let named: Vec<&str> = resolved.iter().filter_map(|r| r.cloud.as_deref()).collect();
    if !named.is_empty()
        && resolved
            .iter()
            .all(|r| r.cloud.as_ref().is_some_and(|c| !clouds.contains(c)))
    {
        let mut names: Vec<&str> = named.iter().map(|c| display(&profiles, c)).collect();
        names.dedup();
        return Err(OptimizeError::CloudNotEnabled {
            message: format!(
                "Task requires {} which {} not enabled. To enable access, change the task cloud requirement or run: sky check {}",
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" },
                named.join(" ")
            ),
        });
    }
    if resolved.iter().any(|r| r.use_spot) {
        notes.push(
            "Launching a spot job that does not automatically recover from preemptions. To get automatic recovery, use managed job instead: sky jobs launch or sky.jobs.launch()."
                .to_owned(),
        );
    }
    if ordered {
        let list: Vec<String> = resolved.iter().map(render::resources_repr).collect();
        notes.push(format!(
            "Using user-specified accelerators list (will be tried in the listed order): {}",
            list.join(", ")
        ));
    }

    let mut all = Vec::new();
    let mut per_candidate_cloud: Vec<Vec<(String, Vec<Feasible>)>> = Vec::new();
    let mut fuzzy: Vec<String> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    for (idx, r) in resolved.iter().enumerate() {
        let mut pc: Vec<(String, Vec<Feasible>)> = Vec::new();
        let cloud_list: Vec<&CloudProfile> = match &r.cloud {
            Some(c) => profiles
                .iter()
                .copied()
                .filter(|p| p.id.eq_ignore_ascii_case(c))
                .take(1)
                .collect(),
            None => profiles.clone(),
        };
        for profile in cloud_list {
            let cloud = &profile.id.to_ascii_lowercase();
            let fs = feasible(catalog, profile, r, num_nodes);
            if let Some(why) = &fs.lacks {
                let line = format!("{} {why}", profile.display_name);
                if !left_out.contains(&line) {
                    left_out.push(line);
                }
            }
            let Some(cheapest) = fs.list.first() else {
                for f in fs.fuzzy {
                    if !fuzzy.contains(&f) {
                        fuzzy.push(f);
                    }
                }
                continue;
            };
            let (vcpus, mem) = catalog.vcpus_mem(cloud, &cheapest.instance_type);
            for p in expand(catalog, profile, cheapest, r) {
                if r.max_hourly_cost.is_some_and(|m| p.hourly > m) {
                    continue;
                }
                let mut res = r.clone();
                res.cloud = Some(cloud.clone());
                res.region = Some(p.region.clone());
                res.zone = p.zone.clone();
                res.instance_type = Some(cheapest.instance_type.clone());
                res.accelerators = cheapest
                    .accelerator
                    .as_ref()
                    .map(|(n, c)| AcceleratorRequest {
                        name: n.clone(),
                        count: *c,
                    });
                res.cpus = None;
                res.memory = None;
                let l = Launchable {
                    cloud: cloud.clone(),
                    region: p.region,
                    zone: p.zone,
                    instance_type: cheapest.instance_type.clone(),
                    accelerator: cheapest.accelerator.clone(),
                    vcpus,
                    memory_gib: mem,
                    use_spot: r.use_spot,
                    hourly_price: p.hourly,
                    candidate_index: idx,
                    resources: res,
                };
                if !blocked.iter().any(|b| b.blocks(&l)) {
                    all.push(l);
                }
            }
            pc.push((cloud.clone(), fs.list));
        }
        per_candidate_cloud.push(pc);
    }
    fuzzy.sort();
    let choosable: Vec<usize> = if ordered {
        (0..resolved.len())
            .find(|i| all.iter().any(|l| l.candidate_index == *i))
            .into_iter()
            .collect()
    } else {
        (0..resolved.len()).collect()
    };
    let mut per_cloud: Vec<(String, Vec<Feasible>)> = Vec::new();
    for i in &choosable {
        for (cloud, list) in &per_candidate_cloud[*i] {
            match per_cloud.iter_mut().find(|(c, _)| c == cloud) {
                Some((_, v)) => v.extend(list.iter().cloned()),
                None => per_cloud.push((cloud.clone(), list.clone())),
            }
        }
    }
    Ok(Candidates {
        names: profiles
            .iter()
            .map(|p| (p.id.to_ascii_lowercase(), p.display_name.clone()))
            .collect(),
        all,
        choosable,
        per_cloud,
        fuzzy,
        left_out,
        notes,
        resolved,
    })
}

pub(crate) fn no_resources(task: &Task, c: &Candidates) -> OptimizeError {
    let n = task.num_nodes.max(1);
    let reqs: Vec<String> = c
        .resolved
        .iter()
        .map(|r| format!("{n}x {}", render::resources_repr(r)))
        .collect();
    let clouds: Vec<&str> = c.names.iter().map(|(_, d)| &**d).collect();
    let mut message = format!(
        "Catalog does not contain any instances satisfying the request: {}.\nEnabled clouds searched: {}.\n\nTo fix: relax or change the resource requirements.",
        reqs.join(", "),
        clouds.join(", ")
    );
    if !c.left_out.is_empty() {
        message.push_str(&format!(
            "\nLeft out for what the request needs: {}.",
            c.left_out.join("; ")
        ));
    }
    if !c.fuzzy.is_empty() {
        let quoted: Vec<String> = c.fuzzy.iter().map(|f| format!("'{f}'")).collect();
        message.push_str(&format!(
            "\nTry one of these offered accelerators: [{}]",
            quoted.join(", ")
        ));
    }
    message.push_str("\n\nHint: sky gpus list to list available accelerators.\n      sky check to check the enabled clouds.");
    OptimizeError::NoResources { message }
}

/// Total order used to pick: cost, then insertion order (first wins, as SkyPilot's strict `<`).
pub(crate) fn cost_of(l: &Launchable, num_nodes: u32) -> f64 {
    l.hourly_price * f64::from(num_nodes.max(1))
}

/// Builds the plan of one task once its launchable is chosen.
pub(crate) fn build_plan(task: &Task, c: &Candidates, chosen_idx: usize) -> Plan {
    let n = task.num_nodes.max(1);
    let ordered = matches!(task.resources, ResourceChoice::Ordered(_));
    let chosen = c.all[chosen_idx].clone();
    // Failover order: ordered lists by list position, then cost; any-of by cost; stable.
    let mut order: Vec<usize> = (0..c.all.len()).collect();
    order.sort_by(|&a, &b| {
        let (la, lb) = (&c.all[a], &c.all[b]);
        let ka = if ordered { la.candidate_index } else { 0 };
        let kb = if ordered { lb.candidate_index } else { 0 };
        ka.cmp(&kb).then(cost_of(la, n).total_cmp(&cost_of(lb, n)))
    });
    let mut failover_order: Vec<Launchable> = vec![chosen.clone()];
    failover_order.extend(
        order
            .into_iter()
            .filter(|&i| i != chosen_idx)
            .map(|i| c.all[i].clone()),
    );

    // Table: cheapest per (cloud, accelerators, spot); the chosen one replaces its group.
    let mut groups: Vec<(String, usize)> = Vec::new();
    let key = |l: &Launchable| {
        format!(
            "{}|{}|{}",
            l.cloud,
            l.gpus().unwrap_or_default(),
            l.use_spot
        )
    };
    for (i, l) in c.all.iter().enumerate() {
        let k = key(l);
        match groups.iter_mut().find(|(gk, _)| *gk == k) {
            Some((_, best)) => {
                if cost_of(l, n) < cost_of(&c.all[*best], n) {
                    *best = i;
                }
            }
            None => groups.push((k, i)),
        }
    }
    let ck = key(&chosen);
    if let Some(g) = groups.iter_mut().find(|(gk, _)| *gk == ck) {
        g.1 = chosen_idx;
    }
    let acc_spot_list: Vec<String> = c
        .resolved
        .iter()
        .map(|r| {
            let a = r
                .accelerators
                .as_ref()
                .map(|a| format!("{}:{}", a.name, fmt_count(a.count)))
                .unwrap_or_default();
            format!("{a}{}", if r.use_spot { "[Spot]" } else { "" })
        })
        .collect();
    let mut rows: Vec<(usize, f64, ConsideredRow)> = groups
        .iter()
        .map(|(_, i)| {
            let l = &c.all[*i];
            let cost = cost_of(l, n);
            // SkyPilot sorts by the rounded cost string.
            let rounded = (cost * 100.0).round() / 100.0;
            let rank = if ordered {
                let s = format!(
                    "{}{}",
                    l.gpus().unwrap_or_default(),
                    if l.use_spot { "[Spot]" } else { "" }
                );
                acc_spot_list
                    .iter()
                    .position(|x| *x == s)
                    .unwrap_or(l.candidate_index)
            } else {
                0
            };
            let row = ConsideredRow {
                infra: format!("{} ({})", c.display(&l.cloud), l.location()),
                cloud: c.display(&l.cloud).to_owned(),
                location: l.location().to_owned(),
                instance: format!(
                    "{}{}",
                    l.instance_type,
                    if l.use_spot { "[Spot]" } else { "" }
                ),
                vcpus: l.vcpus,
                mem_gb: l.memory_gib,
                gpus: l.gpus(),
                cost,
                chosen: *i == chosen_idx,
            };
            (rank, rounded, row)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let rows = rows.into_iter().map(|(_, _, r)| r).collect();
    let hints = render::hints(&chosen, &c.per_cloud, &|id| c.display(id).to_owned());
    Plan {
        num_nodes: n,
        estimated_cost_per_hour: cost_of(&chosen, n),
        chosen,
        failover_order,
        rows,
        notes: c.notes.clone(),
        hints,
    }
}

/// Index of the cheapest choosable launchable (first on ties).
pub(crate) fn cheapest(c: &Candidates, n: u32) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, l) in c.all.iter().enumerate() {
        if !c.choosable.contains(&l.candidate_index) {
            continue;
        }
        if best.is_none_or(|b| cost_of(l, n) < cost_of(&c.all[b], n)) {
            best = Some(i);
        }
    }
    best
}

/// Optimizes one task over `enabled_clouds` (ids, with their built-in profiles; see
/// [`profiles_of`]; clouds without a catalog are ignored), skipping `blocked` launchables.
pub fn optimize_task(
    catalog: &Catalog,
    task: &Task,
    enabled_clouds: &[&str],
    blocked: &[Blocked],
) -> Result<Plan, OptimizeError> {
    optimize_task_with(catalog, task, &profiles_of(enabled_clouds), blocked)
}

/// Optimizes one task over the clouds of `clouds`, each planned as its profile says (clouds
/// without a table in `catalog` are ignored), skipping `blocked` launchables.
pub fn optimize_task_with(
    catalog: &Catalog,
    task: &Task,
    clouds: &[CloudProfile],
    blocked: &[Blocked],
) -> Result<Plan, OptimizeError> {
    let c = candidates(catalog, task, clouds, blocked)?;
    let Some(best) = cheapest(&c, task.num_nodes) else {
        return Err(no_resources(task, &c));
    };
    Ok(build_plan(task, &c, best))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sky_spec::Quantity;

    fn task(r: Resources) -> Task {
        Task {
            num_nodes: 1,
            resources: ResourceChoice::Single(r),
            ..Default::default()
        }
    }

    #[test]
    fn default_task_picks_something_cheap() {
        let plan = optimize_task(
            Catalog::bundled(),
            &task(Resources::default()),
            &["aws"],
            &[],
        )
        .expect("plan");
        assert_eq!(plan.chosen.instance_type, "m6i.2xlarge");
        assert_eq!(plan.chosen.region, "us-east-1");
    }

    #[test]
    fn blocking_moves_to_next_region() {
        let t = task(Resources {
            cpus: Some(Quantity {
                value: 8.0,
                at_least: true,
            }),
            ..Default::default()
        });
        let p1 = optimize_task(Catalog::bundled(), &t, &["aws"], &[]).expect("plan");
        let b = Blocked::from_launchable(&p1.chosen);
        let p2 = optimize_task(Catalog::bundled(), &t, &["aws"], &[b]).expect("plan");
        assert_ne!(p1.chosen.region, p2.chosen.region);
        assert_eq!(p2.chosen, p1.failover_order[1]);
    }

    #[test]
    fn unknown_accelerator_count_is_no_resources_with_suggestions() {
        let t = task(Resources {
            accelerators: Some(AcceleratorRequest {
                name: "A100".into(),
                count: 3.0,
            }),
            ..Default::default()
        });
        let err =
            optimize_task(Catalog::bundled(), &t, &sky_catalog::BUNDLED_CLOUDS, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("Catalog does not contain any instances satisfying the request: 1x"),
            "{msg}"
        );
        assert!(msg.contains("'A100:8'"), "{msg}");
    }

    #[test]
    fn no_enabled_cloud_is_an_error() {
        let err = optimize_task(
            Catalog::bundled(),
            &task(Resources::default()),
            &["kubernetes"],
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, OptimizeError::CloudNotEnabled { .. }));
    }
}
