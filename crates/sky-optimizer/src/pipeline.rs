//! Pipelines: a chain of tasks solved by dynamic programming (SkyPilot's `_optimize_by_dp`),
//! where moving data between different clouds costs the source cloud's egress price.
//!
//! Egress prices are the source cloud's profile's (`CloudProfile::egress`): AWS and GCP as
//! SkyPilot prices them; Azure uses Azure's published internet-egress tiers; Lambda, RunPod
//! and Vast do not charge for egress (SkyPilot returns 0 too). A bucket URI's cloud is the
//! built-in profile that owns its prefix (`s3://` → AWS).

use sky_catalog::Catalog;
use sky_clouds::CloudProfile;
use sky_spec::Pipeline;

use crate::{Blocked, OptimizeError, Plan, build_plan, candidates, cost_of, no_resources};

/// The optimizer's answer for a pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelinePlan {
    /// One plan per task, in pipeline order; each `chosen` is the jointly optimal placement.
    pub plans: Vec<Plan>,
    /// Sum of every task's hourly cost × nodes (1 h each) plus egress between tasks.
    pub total_cost: f64,
    /// The egress part of `total_cost`.
    pub egress_cost: f64,
}

/// Dollars to move `gigabytes` out of `src_cloud` to another cloud, at the egress prices of
/// its built-in profile (0 for a cloud without one).
pub fn egress_cost(src_cloud: &str, gigabytes: f64) -> f64 {
    sky_clouds::profile(src_cloud).map_or(0.0, |p| p.egress.cost(gigabytes))
}

/// The cloud a bucket URI lives in, for the first task's `inputs`.
fn uri_cloud(path: &str) -> Option<&'static str> {
    sky_clouds::builtin()
        .iter()
        .find(|p| p.owns_bucket(path))
        .map(|p| &*p.id)
}

/// Egress of `src` to `dst`: free within a cloud; at `src`'s prices among `clouds` (the
/// planned clouds' profiles), else its built-in profile's.
fn transfer(clouds: &[CloudProfile], src: &str, dst: &str, gb: f64) -> f64 {
    if src == dst || gb <= 0.0 {
        return 0.0;
    }
    match clouds.iter().find(|p| p.id.eq_ignore_ascii_case(src)) {
        Some(p) => p.egress.cost(gb),
        None => egress_cost(src, gb),
    }
}

/// Optimizes a chain of tasks jointly: each task's launchables cost hourly price × nodes, and
/// an edge between tasks on different clouds costs the parent's `outputs` size in egress.
/// The clouds are ids with their built-in profiles ([`crate::profiles_of`]).
pub fn optimize_pipeline(
    catalog: &Catalog,
    p: &Pipeline,
    enabled_clouds: &[&str],
    blocked: &[Blocked],
) -> Result<PipelinePlan, OptimizeError> {
    optimize_pipeline_with(catalog, p, &crate::profiles_of(enabled_clouds), blocked)
}

/// [`optimize_pipeline`] over the clouds of `clouds`, each planned (and priced for egress) as
/// its profile says.
pub fn optimize_pipeline_with(
    catalog: &Catalog,
    p: &Pipeline,
    enabled_clouds: &[CloudProfile],
    blocked: &[Blocked],
) -> Result<PipelinePlan, OptimizeError> {
    if p.tasks.is_empty() {
        return Err(OptimizeError::EmptyPipeline);
    }
    // Tasks with identical requests share their (pure) candidate computation.
    let mut uniq: Vec<(usize, crate::Candidates)> = Vec::new();
    let mut which: Vec<usize> = Vec::with_capacity(p.tasks.len());
    for (i, t) in p.tasks.iter().enumerate() {
        if let Some(k) = uniq.iter().position(|(j, _)| {
            let o = &p.tasks[*j];
            o.resources == t.resources && o.num_nodes == t.num_nodes
        }) {
            which.push(k);
            continue;
        }
        let c = candidates(catalog, t, enabled_clouds, blocked)?;
        if !c
            .all
            .iter()
            .any(|l| c.choosable.contains(&l.candidate_index))
        {
            return Err(no_resources(t, &c));
        }
        which.push(uniq.len());
        uniq.push((i, c));
    }
    let all: Vec<&crate::Candidates> = which.iter().map(|&k| &uniq[k].1).collect();
    // best[i][j]: cheapest total up to task i with task i on launchable j; back[i][j]: parent.
    let mut best: Vec<Vec<f64>> = Vec::with_capacity(all.len());
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(all.len());
    for (i, (task, c)) in p.tasks.iter().zip(all.iter().copied()).enumerate() {
        let mut row = vec![f64::INFINITY; c.all.len()];
        let mut brow = vec![usize::MAX; c.all.len()];
        // Cheapest parent per cloud (first on ties).
        let parents: Vec<(String, f64, usize)> = if i == 0 {
            Vec::new()
        } else {
            let prev = all[i - 1];
            let mut m: Vec<(String, f64, usize)> = Vec::new();
            for (j, l) in prev.all.iter().enumerate() {
                let v = best[i - 1][j];
                if !v.is_finite() {
                    continue;
                }
                match m.iter_mut().find(|(c, _, _)| *c == l.cloud) {
                    Some(e) if v < e.1 => {
                        e.1 = v;
                        e.2 = j;
                    }
                    Some(_) => {}
                    None => m.push((l.cloud.clone(), v, j)),
                }
            }
            m
        };
        let out_gb = if i == 0 {
            0.0
        } else {
            p.tasks[i - 1].outputs.as_ref().map_or(0.0, |o| o.1)
        };
        for (j, l) in c.all.iter().enumerate() {
            if !c.choosable.contains(&l.candidate_index) {
                continue;
            }
            let own = cost_of(l, task.num_nodes);
            if i == 0 {
                let input = task
                    .inputs
                    .as_ref()
                    .and_then(|(path, gb)| {
                        uri_cloud(path).map(|src| transfer(enabled_clouds, src, &l.cloud, *gb))
                    })
                    .unwrap_or(0.0);
                row[j] = own + input;
                continue;
            }
            let mut bv = f64::INFINITY;
            let mut bj = usize::MAX;
            for (pc, pv, pj) in &parents {
                let v = pv + transfer(enabled_clouds, pc, &l.cloud, out_gb);
                if v < bv {
                    bv = v;
                    bj = *pj;
                }
            }
            row[j] = own + bv;
            brow[j] = bj;
        }
        best.push(row);
        back.push(brow);
    }
    let last = all.len() - 1;
    let mut end = 0usize;
    let mut total = f64::INFINITY;
    for (j, v) in best[last].iter().enumerate() {
        if *v < total {
            total = *v;
            end = j;
        }
    }
    if !total.is_finite() {
        return Err(no_resources(&p.tasks[last], all[last]));
    }
    let mut picks = vec![0usize; all.len()];
    let mut j = end;
    for i in (0..all.len()).rev() {
        picks[i] = j;
        if i > 0 {
            j = back[i][j];
        }
    }
    let plans: Vec<Plan> = p
        .tasks
        .iter()
        .zip(all.iter().copied())
        .zip(&picks)
        .map(|((t, c), &j)| build_plan(t, c, j))
        .collect();
    let compute: f64 = plans.iter().map(|pl| pl.estimated_cost_per_hour).sum();
    Ok(PipelinePlan {
        plans,
        total_cost: total,
        egress_cost: (total - compute).max(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sky_spec::{AcceleratorRequest, ResourceChoice, Resources, Task};

    #[test]
    fn egress_tiers() {
        assert_eq!(egress_cost("aws", 1.0), 0.0);
        assert!((egress_cost("aws", 101.0) - 9.0).abs() < 1e-9);
        assert!((egress_cost("gcp", 100.0) - 12.0).abs() < 1e-9);
        assert_eq!(egress_cost("lambda", 100.0), 0.0);
    }

    #[test]
    fn big_outputs_keep_tasks_on_one_cloud() {
        let gpu = |name: &str| Task {
            num_nodes: 1,
            resources: ResourceChoice::Single(Resources {
                accelerators: Some(AcceleratorRequest {
                    name: name.into(),
                    count: 1.0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Task 1 is cheapest on GCP (L4) and would go to AWS for A10G; with 10 TB of output the
        // second task is still forced to AWS (only AWS has A10G), and the total includes egress.
        let mut t1 = gpu("L4");
        t1.outputs = Some(("out".into(), 10_000.0));
        let t2 = gpu("A10G");
        let p = Pipeline {
            name: None,
            tasks: vec![t1, t2],
        };
        let plan = optimize_pipeline(Catalog::bundled(), &p, &["aws", "gcp"], &[]).expect("plan");
        assert_eq!(plan.plans[1].chosen.cloud, "aws");
        assert_eq!(
            plan.plans[0].chosen.cloud, "aws",
            "egress should pull task 1 onto AWS"
        );
        assert_eq!(plan.egress_cost, 0.0);
    }
}
