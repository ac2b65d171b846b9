//! Per-cloud feasibility (SkyPilot's `Cloud._get_feasible_launchable_resources` and feature
//! checks) and the expansion of the cheapest feasible instance type into one launchable per
//! region (on-demand) or per zone (spot, and always on clouds whose profile plans per zone).
//! What a cloud can do comes from its [`CloudProfile`].

use sky_catalog::{Catalog, CpuFilter, MemFilter};
use sky_clouds::CloudProfile;
use sky_spec::{MemoryRequest, Quantity, Resources};

/// One feasible (cloud, instance type, accelerators) before region expansion.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Feasible {
    pub cloud: String,
    pub instance_type: String,
    pub accelerator: Option<(String, f64)>,
}

/// The feasible instance types of one cloud, cheapest first, or the fuzzy names offered.
#[derive(Clone, Debug, Default)]
pub(crate) struct FeasibleSet {
    pub list: Vec<Feasible>,
    pub fuzzy: Vec<String>,
    /// Why the cloud was left out, when its profile lacks a feature the request needs
    /// (`cannot use spot instances (use_spot: true)`).
    pub lacks: Option<String>,
}

pub(crate) fn cpu_filter(q: Option<Quantity>) -> Option<CpuFilter> {
    q.map(|q| CpuFilter {
        value: q.value,
        at_least: q.at_least,
    })
}

pub(crate) fn mem_filter(m: Option<MemoryRequest>) -> Option<MemFilter> {
    m.map(|m| match m {
        MemoryRequest::Gib(q) => MemFilter::Gib {
            value: q.value,
            at_least: q.at_least,
        },
        MemoryRequest::PerVcpu(q) => MemFilter::PerVcpu(q.value),
    })
}

pub(crate) fn is_tpu(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("tpu-")
}

fn fits(q: Option<Quantity>, have: Option<f64>) -> bool {
    match (q, have) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(q), Some(h)) if q.at_least => h >= q.value,
        (Some(q), Some(h)) => h == q.value,
    }
}

fn mem_fits(m: Option<MemoryRequest>, vcpus: Option<f64>, have: Option<f64>) -> bool {
    match m {
        None => true,
        Some(MemoryRequest::Gib(q)) => fits(Some(q), have),
        Some(MemoryRequest::PerVcpu(q)) => match (vcpus, have) {
            (Some(c), Some(h)) => h >= c * q.value,
            _ => false,
        },
    }
}

/// What the request needs that the profile's features lack (SkyPilot's
/// `_CLOUD_UNSUPPORTED_FEATURES`, as far as the optimizer cares: spot, several nodes, a disk
/// tier), as "cannot ... (the request)"; `None` when the cloud can do it all.
fn lacks(profile: &CloudProfile, r: &Resources, num_nodes: u32) -> Option<String> {
    let f = &profile.features;
    let mut what: Vec<String> = Vec::new();
    if r.use_spot && !f.spot {
        what.push("use spot instances (use_spot: true)".to_owned());
    }
    if num_nodes > 1 && !f.multi_node {
        what.push(format!(
            "run clusters of several nodes (num_nodes: {num_nodes})"
        ));
    }
    if r.disk_tier.is_some() && !f.disk_tiers {
        what.push("choose a disk tier (disk_tier)".to_owned());
    }
    (!what.is_empty()).then(|| format!("cannot {}", what.join(" or ")))
}

/// `get_feasible_launchable_resources` of the cloud of `profile` for a validated candidate `r`
/// (canonical accelerator name).
pub(crate) fn feasible(
    catalog: &Catalog,
    profile: &CloudProfile,
    r: &Resources,
    num_nodes: u32,
) -> FeasibleSet {
    if let Some(why) = lacks(profile, r, num_nodes) {
        return FeasibleSet {
            lacks: Some(why),
            ..FeasibleSet::default()
        };
    }
    let cloud = &*profile.id;
    let attachable = profile.attachable_accelerators;
    let region = r.region.as_deref();
    let zone = r.zone.as_deref();
    let acc = r.accelerators.as_ref().map(|a| (a.name.clone(), a.count));
    if let Some(it) = &r.instance_type {
        if !catalog.instance_type_exists(cloud, it) {
            return FeasibleSet::default();
        }
        let (vcpus, mem) = catalog.vcpus_mem(cloud, it);
        if !fits(r.cpus, vcpus) || !mem_fits(r.memory, vcpus, mem) {
            return FeasibleSet::default();
        }
        let inst_acc = catalog.instance_accelerator(cloud, it);
        let accelerator = match (&acc, inst_acc) {
            (Some((n, c)), Some((in_, ic))) => {
                if !n.eq_ignore_ascii_case(&in_) || (c - ic).abs() > 0.01 {
                    return FeasibleSet::default();
                }
                Some((in_, ic))
            }
            // GCP: GPUs attach to a host VM.
            (Some(a), None) if attachable => Some(a.clone()),
            (Some(_), None) => return FeasibleSet::default(),
            (None, inst) => inst,
        };
        return FeasibleSet {
            list: vec![Feasible {
                cloud: cloud.to_owned(),
                instance_type: it.clone(),
                accelerator,
            }],
            fuzzy: Vec::new(),
            lacks: None,
        };
    }
    let Some((acc_name, acc_count)) = acc else {
        let Some(it) = catalog.default_instance_type(
            cloud,
            cpu_filter(r.cpus),
            mem_filter(r.memory),
            region,
            zone,
        ) else {
            return FeasibleSet::default();
        };
        let accelerator = catalog.instance_accelerator(cloud, it);
        return FeasibleSet {
            list: vec![Feasible {
                cloud: cloud.to_owned(),
                instance_type: it.to_owned(),
                accelerator,
            }],
            fuzzy: Vec::new(),
            lacks: None,
        };
    };
    let tpu_vm = profile.tpu_vms && is_tpu(&acc_name);
    let (cpus, memory) = if tpu_vm {
        (None, None)
    } else {
        (r.cpus, r.memory)
    };
    let lookup = catalog.instance_types_for_accelerator(
        cloud,
        &acc_name,
        acc_count,
        cpu_filter(cpus),
        mem_filter(memory),
        r.use_spot,
        region,
        zone,
    );
    let Some(types) = lookup.instance_types else {
        return FeasibleSet {
            list: Vec::new(),
            fuzzy: lookup.fuzzy,
            lacks: None,
        };
    };
    if tpu_vm {
        if types.is_empty() {
            return FeasibleSet::default();
        }
        let v4 = acc_name.contains("v4");
        let tpu_cpus = if v4 { 240.0 } else { 96.0 };
        let tpu_mem = if v4 { 400.0 } else { 334.0 };
        if !fits(r.cpus, Some(tpu_cpus)) {
            return FeasibleSet::default();
        }
        if let Some(MemoryRequest::Gib(q)) = r.memory
            && !fits(Some(q), Some(tpu_mem))
        {
            return FeasibleSet::default();
        }
        return FeasibleSet {
            list: vec![Feasible {
                cloud: cloud.to_owned(),
                instance_type: "TPU-VM".to_owned(),
                accelerator: Some((acc_name, acc_count)),
            }],
            fuzzy: Vec::new(),
            lacks: None,
        };
    }
    let list = types
        .into_iter()
        .map(|it| {
            let accelerator = if attachable {
                Some((acc_name.clone(), acc_count))
            } else {
                catalog
                    .instance_accelerator(cloud, &it)
                    .or_else(|| Some((acc_name.clone(), acc_count)))
            };
            Feasible {
                cloud: cloud.to_owned(),
                instance_type: it,
                accelerator,
            }
        })
        .collect();
    FeasibleSet {
        list,
        fuzzy: Vec::new(),
        lacks: None,
    }
}

/// One (region, zone) placement of a feasible instance type with its hourly price per node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Placement {
    pub region: String,
    pub zone: Option<String>,
    pub hourly: f64,
}

/// `make_launchables_for_valid_region_zones`.
pub(crate) fn expand(
    catalog: &Catalog,
    profile: &CloudProfile,
    f: &Feasible,
    r: &Resources,
) -> Vec<Placement> {
    let attachable = profile.attachable_accelerators;
    let acc_for_regions = if attachable {
        f.accelerator.as_ref().map(|(n, c)| (n.as_str(), *c))
    } else {
        None
    };
    let regions = catalog.regions_with_offering(
        &f.cloud,
        &f.instance_type,
        acc_for_regions,
        r.use_spot,
        r.region.as_deref(),
        r.zone.as_deref(),
    );
    let mut out = Vec::new();
    for region in regions {
        let per_zone = (r.use_spot && region.zones.is_some()) || profile.plans_per_zone;
        if per_zone {
            for zone in region.zones.iter().flatten() {
                if let Some(hourly) =
                    price(catalog, f, attachable, r.use_spot, &region.name, Some(zone))
                {
                    out.push(Placement {
                        region: region.name.clone(),
                        zone: Some(zone.clone()),
                        hourly,
                    });
                }
            }
        } else if let Some(hourly) = price(catalog, f, attachable, r.use_spot, &region.name, None) {
            out.push(Placement {
                region: region.name.clone(),
                zone: None,
                hourly,
            });
        }
    }
    out
}

/// `Resources.get_cost` for one hour: the VM plus separately billed (`attachable`)
/// accelerators.
fn price(
    catalog: &Catalog,
    f: &Feasible,
    attachable: bool,
    use_spot: bool,
    region: &str,
    zone: Option<&str>,
) -> Option<f64> {
    let vm = catalog.hourly_cost(&f.cloud, &f.instance_type, use_spot, Some(region), zone)?;
    // GCP bills attachable GPUs and TPUs (and the GPUs of a2/g2/a3 hosts) separately.
    let acc = match &f.accelerator {
        Some((n, c)) if attachable => {
            catalog.accelerator_hourly_cost(&f.cloud, n, *c, use_spot, Some(region), zone)?
        }
        _ => 0.0,
    };
    Some(vm + acc)
}
