//! The `sky show-gpus` listing (`list_accelerators`), with GCP's attachable GPUs priced
//! together with the host VM SkyPilot would attach them to.

use std::collections::HashMap;

use crate::Catalog;
use crate::compile::RawRow;
use crate::query::{gcp_acc_instance_types, gcp_default_host_cpus};

/// Filters for [`Catalog::list_accelerators`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AcceleratorQuery {
    /// Substring of the accelerator name, case-insensitive.
    pub name: Option<String>,
    /// Exact accelerator count.
    pub count: Option<f64>,
    /// Cloud ids to list; empty = every bundled cloud.
    pub clouds: Vec<String>,
    /// Substring of the region name, case-insensitive.
    pub region: Option<String>,
    /// One entry per region instead of the cheapest region only.
    pub all_regions: bool,
}

/// One accelerator offering of one cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct AcceleratorOffer {
    pub accelerator: String,
    pub count: f64,
    /// Lower-case cloud id.
    pub cloud: String,
    /// `-` for GCP TPUs (no host VM type).
    pub instance_type: String,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    /// Per-device GPU memory, when the catalog says.
    pub gpu_memory_mib: Option<u64>,
    /// On-demand $/hour (VM plus separately billed accelerators).
    pub price: Option<f64>,
    pub spot_price: Option<f64>,
    pub region: String,
}

fn opt(v: f64) -> Option<f64> {
    if v.is_nan() { None } else { Some(v) }
}

fn cmp_nan_last(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

impl Catalog {
    /// Accelerator offerings for `sky show-gpus`, sorted by accelerator name, count, instance
    /// type, price and region; by default only the cheapest region of each
    /// (cloud, instance type, accelerator, count) is kept.
    pub fn list_accelerators(&self, q: &AcceleratorQuery) -> Vec<AcceleratorOffer> {
        let name = q.name.as_ref().map(|s| s.to_ascii_lowercase());
        let region = q.region.as_ref().map(|s| s.to_ascii_lowercase());
        let mut out: Vec<AcceleratorOffer> = Vec::new();
        for t in &self.clouds {
            if !q.clouds.is_empty() && !q.clouds.iter().any(|c| c.eq_ignore_ascii_case(&t.id)) {
                continue;
            }
            let keep = |r: &RawRow| -> bool {
                r.accelerator != 0
                    && name
                        .as_ref()
                        .is_none_or(|n| self.s(r.accelerator).to_ascii_lowercase().contains(n))
                    && region
                        .as_ref()
                        .is_none_or(|g| self.s(r.region).to_ascii_lowercase().contains(g))
                    && q.count.is_none_or(|c| r.accelerator_count == c)
            };
            let mut offers: Vec<AcceleratorOffer> = Vec::new();
            if t.id == "gcp" {
                // Host VMs per (region, zone), for the join.
                let mut by_zone: HashMap<(u32, u32), Vec<&RawRow>> = HashMap::new();
                for r in t.rows.iter().filter(|r| r.instance_type != 0) {
                    by_zone.entry((r.region, r.zone)).or_default().push(r);
                }
                for r in t.rows.iter().filter(|r| keep(r)) {
                    let acc = self.s(r.accelerator);
                    if r.instance_type != 0 {
                        continue; // host VMs with built-in GPUs are listed via the GPU rows
                    }
                    if acc.starts_with("tpu-") {
                        offers.push(AcceleratorOffer {
                            accelerator: acc.to_owned(),
                            count: r.accelerator_count,
                            cloud: t.id.clone(),
                            instance_type: "-".into(),
                            vcpus: None,
                            memory_gib: None,
                            gpu_memory_mib: None,
                            price: opt(r.price),
                            spot_price: opt(r.spot_price),
                            region: self.s(r.region).to_owned(),
                        });
                        continue;
                    }
                    let hosts = by_zone
                        .get(&(r.region, r.zone))
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    let host = match gcp_acc_instance_types(acc, r.accelerator_count) {
                        Some(Some(types)) => hosts
                            .iter()
                            .filter(|h| {
                                types.contains(&self.s(h.instance_type)) && !h.price.is_nan()
                            })
                            .min_by(|a, b| a.price.total_cmp(&b.price)),
                        Some(None) => None,
                        None => {
                            let Some(cpus) = gcp_default_host_cpus(acc, r.accelerator_count) else {
                                continue;
                            };
                            hosts
                                .iter()
                                .filter(|h| {
                                    let it = self.s(h.instance_type);
                                    ["n1-standard", "n1-highmem", "n1-highcpu"]
                                        .iter()
                                        .any(|p| it.starts_with(p))
                                        && h.vcpus >= cpus
                                        && h.memory_gib >= cpus * 4.0
                                        && !h.price.is_nan()
                                })
                                .min_by(|a, b| a.price.total_cmp(&b.price))
                        }
                    };
                    let Some(h) = host else { continue };
                    offers.push(AcceleratorOffer {
                        accelerator: acc.to_owned(),
                        count: r.accelerator_count,
                        cloud: t.id.clone(),
                        instance_type: self.s(h.instance_type).to_owned(),
                        vcpus: opt(h.vcpus),
                        memory_gib: opt(h.memory_gib),
                        gpu_memory_mib: self
                            .accelerator_memory_gb(acc)
                            .map(|g| (g * 1024.0) as u64),
                        price: opt(r.price + h.price),
                        spot_price: opt(r.spot_price + h.spot_price),
                        region: self.s(r.region).to_owned(),
                    });
                }
            } else {
                for r in t.rows.iter().filter(|r| keep(r)) {
                    let acc = self.s(r.accelerator);
                    offers.push(AcceleratorOffer {
                        accelerator: acc.to_owned(),
                        count: r.accelerator_count,
                        cloud: t.id.clone(),
                        instance_type: self.s(r.instance_type).to_owned(),
                        vcpus: opt(r.vcpus),
                        memory_gib: opt(r.memory_gib),
                        gpu_memory_mib: if r.gpu_memory_mib != 0 {
                            Some(u64::from(r.gpu_memory_mib))
                        } else {
                            self.accelerator_memory_gb(acc).map(|g| (g * 1024.0) as u64)
                        },
                        price: opt(r.price),
                        spot_price: opt(r.spot_price),
                        region: self.s(r.region).to_owned(),
                    });
                }
            }
            // Cheapest first, then keep one per group (per region with all_regions).
            offers.sort_by(|a, b| {
                cmp_nan_last(a.price, b.price)
                    .then_with(|| cmp_nan_last(a.spot_price, b.spot_price))
                    .then_with(|| a.region.cmp(&b.region))
            });
            let mut seen: Vec<(String, String, u64, String)> = Vec::new();
            for o in offers {
                let key = (
                    o.instance_type.clone(),
                    o.accelerator.clone(),
                    o.count.to_bits(),
                    if q.all_regions {
                        o.region.clone()
                    } else {
                        String::new()
                    },
                );
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                out.push(o);
            }
        }
        out.sort_by(|a, b| {
            a.accelerator
                .cmp(&b.accelerator)
                .then(a.count.total_cmp(&b.count))
                .then_with(|| a.cloud.cmp(&b.cloud))
                .then_with(|| a.instance_type.cmp(&b.instance_type))
                .then_with(|| cmp_nan_last(a.price, b.price))
                .then_with(|| a.region.cmp(&b.region))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_gcp_t4_with_host() {
        let c = Catalog::bundled();
        let v = c.list_accelerators(&AcceleratorQuery {
            name: Some("t4".into()),
            clouds: vec!["gcp".into()],
            count: Some(1.0),
            ..Default::default()
        });
        assert!(!v.is_empty());
        assert!(
            v.iter().all(|o| o.instance_type.starts_with("n1-")),
            "{v:?}"
        );
    }

    #[test]
    fn lists_tpus_without_host() {
        let c = Catalog::bundled();
        let v = c.list_accelerators(&AcceleratorQuery {
            name: Some("tpu-v4".into()),
            ..Default::default()
        });
        assert!(
            v.iter()
                .any(|o| o.accelerator == "tpu-v4-8" && o.instance_type == "-"),
            "{v:?}"
        );
    }
}
