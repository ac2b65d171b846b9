//! SkyPilot's catalog queries (`sky/catalog/common.py` and the per-cloud `*_catalog.py`),
//! reimplemented over the compact tables.
//!
//! Semantics kept on purpose: empty numbers behave like pandas NaN (never equal, never
//! greater); "cheapest" sorts by price with empty prices last and, on exact ties, keeps the
//! upstream row order; region names compare case-insensitively in filters.

use std::cmp::Ordering;
use std::collections::HashMap;

use sky_clouds::{Families, Zones};

use crate::compile::RawRow;
use crate::{Catalog, CloudTable};

/// `cpus:` as SkyPilot passes it to the catalog: `N` (exactly) or `N+` (at least).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuFilter {
    pub value: f64,
    pub at_least: bool,
}

/// `memory:` as SkyPilot passes it to the catalog.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemFilter {
    /// GiB, exactly or at least.
    Gib { value: f64, at_least: bool },
    /// At least this many GiB per vCPU (`4x`).
    PerVcpu(f64),
}

/// A region and, where the cloud has zones, its zones, in provisioning (price) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionZones {
    pub name: String,
    pub zones: Option<Vec<String>>,
}

/// The answer to "which instance types carry this accelerator".
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AcceleratorLookup {
    /// `None` when the cloud has no accelerator of that name and count at all; otherwise the
    /// matching instance types, cheapest first (may be empty when cpus/memory/spot filter all out).
    pub instance_types: Option<Vec<String>>,
    /// When `instance_types` is `None`: offered names containing the request (`A100:8`, ...).
    pub fuzzy: Vec<String>,
}

const GCP_HOST_FAMILIES: &[&str] = &["n1-standard", "n1-highmem", "n1-highcpu"];
/// GCP's memory per vCPU for the host VM of attachable GPUs.
const DEFAULT_MEMORY_CPU_RATIO: f64 = 4.0;

/// GCP: accelerators that need a specific host VM type (`_ACC_INSTANCE_TYPE_DICTS`).
pub(crate) fn gcp_acc_instance_types(
    acc: &str,
    count: f64,
) -> Option<Option<&'static [&'static str]>> {
    let table: &[(u32, &[&str])] = match acc {
        "A100" => &[
            (1, &["a2-highgpu-1g"]),
            (2, &["a2-highgpu-2g"]),
            (4, &["a2-highgpu-4g"]),
            (8, &["a2-highgpu-8g"]),
            (16, &["a2-megagpu-16g"]),
        ],
        "A100-80GB" => &[
            (1, &["a2-ultragpu-1g"]),
            (2, &["a2-ultragpu-2g"]),
            (4, &["a2-ultragpu-4g"]),
            (8, &["a2-ultragpu-8g"]),
        ],
        "L4" => &[
            (
                1,
                &[
                    "g2-standard-4",
                    "g2-standard-8",
                    "g2-standard-12",
                    "g2-standard-16",
                    "g2-standard-32",
                ],
            ),
            (2, &["g2-standard-24"]),
            (4, &["g2-standard-48"]),
            (8, &["g2-standard-96"]),
        ],
        "H100" => &[
            (1, &["a3-highgpu-1g"]),
            (2, &["a3-highgpu-2g"]),
            (4, &["a3-highgpu-4g"]),
            (8, &["a3-highgpu-8g"]),
        ],
        "H100-MEGA" => &[(8, &["a3-megagpu-8g"])],
        "H200" => &[(8, &["a3-ultragpu-8g"])],
        "B200" => &[(8, &["a4-highgpu-8g"])],
        _ => return None,
    };
    Some(
        table
            .iter()
            .find(|(n, _)| f64::from(*n) == count)
            .map(|(_, v)| *v),
    )
}

/// GCP: the accelerator a host VM type carries, for types that come with GPUs attached.
pub(crate) fn gcp_instance_accelerator(instance_type: &str) -> Option<(&'static str, f64)> {
    for acc in [
        "A100",
        "A100-80GB",
        "L4",
        "H100",
        "H100-MEGA",
        "H200",
        "B200",
    ] {
        for count in [1.0, 2.0, 4.0, 8.0, 16.0] {
            if let Some(Some(types)) = gcp_acc_instance_types(acc, count)
                && types.contains(&instance_type)
            {
                return Some((acc, count));
            }
        }
    }
    None
}

/// GCP: default host vCPUs per attachable GPU count (`_NUM_ACC_TO_NUM_CPU`).
pub(crate) fn gcp_default_host_cpus(acc: &str, count: f64) -> Option<f64> {
    let table: &[(f64, f64)] = match acc {
        "K80" => &[
            (1.0, 4.0),
            (2.0, 8.0),
            (4.0, 16.0),
            (8.0, 32.0),
            (16.0, 64.0),
        ],
        "V100" | "P100" => &[(1.0, 8.0), (2.0, 16.0), (4.0, 32.0), (8.0, 64.0)],
        "T4" => &[(1.0, 4.0), (2.0, 8.0), (4.0, 48.0)],
        _ => &[
            (1.0, 8.0),
            (2.0, 16.0),
            (4.0, 32.0),
            (8.0, 64.0),
            (16.0, 128.0),
        ],
    };
    table.iter().find(|(n, _)| *n == count).map(|(_, c)| *c)
}

fn azure_family(instance_type: &str) -> Option<String> {
    if instance_type.starts_with("Basic_A") {
        return Some("basic_a".into());
    }
    let rest = instance_type.strip_prefix("Standard_")?;
    let rest = rest.strip_suffix("_Promo").unwrap_or(rest);
    let letters: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let after_letters = &rest[letters.len()..];
    let digits: String = after_letters
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if letters.is_empty() || digits.is_empty() {
        return None;
    }
    let tail = &after_letters[digits.len()..];
    if rest.contains('-') {
        // ([A-Za-z]+)([0-9]+)(-)([0-9]+)(.*)  →  letters + '_' + rest
        let t = tail.strip_prefix('-')?;
        let d2: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
        if d2.is_empty() {
            return None;
        }
        Some(format!("{letters}_{}", &t[d2.len()..]))
    } else {
        Some(format!("{letters}{tail}"))
    }
}

/// Price order: ascending, NaN last.
fn price_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.total_cmp(&b),
    }
}

pub(crate) fn cpus_ok(r: &RawRow, cpus: Option<CpuFilter>) -> bool {
    match cpus {
        None => true,
        Some(c) if c.at_least => r.vcpus >= c.value,
        Some(c) => r.vcpus == c.value,
    }
}

pub(crate) fn mem_ok(r: &RawRow, mem: Option<MemFilter>) -> bool {
    match mem {
        None => true,
        Some(MemFilter::Gib {
            value,
            at_least: true,
        }) => r.memory_gib >= value,
        Some(MemFilter::Gib {
            value,
            at_least: false,
        }) => r.memory_gib == value,
        Some(MemFilter::PerVcpu(ratio)) => r.memory_gib >= r.vcpus * ratio,
    }
}

impl Catalog {
    fn loc_ok(&self, r: &RawRow, region: Option<&str>, zone: Option<&str>) -> bool {
        region.is_none_or(|reg| self.s(r.region).eq_ignore_ascii_case(reg))
            && zone.is_none_or(|z| self.s(r.zone).eq_ignore_ascii_case(z))
    }

    /// `get_instance_type_for_cpus_mem_impl`: the cheapest row (by on-demand price) that
    /// satisfies cpus/memory/region/zone, among `rows`.
    fn cheapest_for_cpus_mem<'a>(
        &self,
        rows: impl Iterator<Item = &'a RawRow>,
        cpus: Option<CpuFilter>,
        mem: Option<MemFilter>,
        region: Option<&str>,
        zone: Option<&str>,
    ) -> Option<u32> {
        let mut best: Option<&RawRow> = None;
        for r in rows {
            if !(self.loc_ok(r, region, zone) && cpus_ok(r, cpus) && mem_ok(r, mem)) {
                continue;
            }
            if best.is_none_or(|b| price_cmp(r.price, b.price) == Ordering::Less) {
                best = Some(r);
            }
        }
        best.map(|r| r.instance_type)
    }

    /// SkyPilot's default instance type of `cloud` for a request without accelerators or an
    /// instance type (`get_default_instance_type`), as the cloud's profile describes it
    /// (`CloudProfile::default_instance`): AWS/GCP/Azure pick from their general families with
    /// `8+` vCPUs and `4x` memory by default; Lambda defaults to `30+` vCPUs and `4x`; RunPod
    /// and Vast take the cheapest row satisfying whatever was given (Vast anywhere).
    pub fn default_instance_type(
        &self,
        cloud: &str,
        cpus: Option<CpuFilter>,
        memory: Option<MemFilter>,
        region: Option<&str>,
        zone: Option<&str>,
    ) -> Option<&str> {
        let t = self.table(cloud)?;
        let defaults = t.facts.default_instance;
        let (cpus, memory) = match defaults.shape {
            Some(shape) => {
                let cpus = if cpus.is_none() && memory.is_none() {
                    Some(CpuFilter {
                        value: shape.vcpus,
                        at_least: true,
                    })
                } else {
                    cpus
                };
                (
                    cpus,
                    Some(memory.unwrap_or(MemFilter::PerVcpu(shape.memory_per_vcpu))),
                )
            }
            None => (cpus, memory),
        };
        let rows = t.default_rows.get_or_init(|| {
            let mut family_ok: HashMap<u32, bool> = HashMap::new();
            let mut out = Vec::new();
            for (i, r) in t.rows.iter().enumerate() {
                let ok = *family_ok.entry(r.instance_type).or_insert_with(|| {
                    let it = self.s(r.instance_type);
                    r.instance_type != 0
                        && match defaults.families {
                            Families::All => true,
                            Families::Prefixes(p) => p.iter().any(|p| it.starts_with(p)),
                            Families::AzureSeries(series) => {
                                azure_family(it).is_some_and(|f| series.contains(&f.as_str()))
                            }
                        }
                });
                if ok {
                    out.push(i as u32);
                }
            }
            out
        });
        let rows = rows.iter().map(|&i| &t.rows[i as usize]);
        let (region, zone) = if defaults.any_region {
            (None, None)
        } else {
            (region, zone)
        };
        let id = self.cheapest_for_cpus_mem(rows, cpus, memory, region, zone)?;
        Some(self.s(id))
    }

    /// `get_instance_type_for_accelerator_impl` over one table.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors SkyPilot's catalog signature"
    )]
    fn accelerator_impl(
        &self,
        t: &CloudTable,
        acc: &str,
        count: f64,
        cpus: Option<CpuFilter>,
        memory: Option<MemFilter>,
        use_spot: bool,
        region: Option<&str>,
        zone: Option<&str>,
    ) -> AcceleratorLookup {
        let ids = self.ids_ci(acc);
        let exact: Vec<&RawRow> = t
            .rows_with_accelerator(&ids)
            .into_iter()
            .filter(|r| (r.accelerator_count - count).abs() <= 0.01 && self.loc_ok(r, region, zone))
            .collect();
        if exact.is_empty() {
            let lacc = acc.to_ascii_lowercase();
            let names: Vec<u32> = t
                .accelerator_index()
                .keys()
                .copied()
                .filter(|&id| self.s(id).to_ascii_lowercase().contains(&lacc))
                .collect();
            let mut fuzzy_rows: Vec<&RawRow> = t
                .rows_with_accelerator(&names)
                .into_iter()
                .filter(|r| r.accelerator_count >= count && self.loc_ok(r, region, zone))
                .collect();
            fuzzy_rows.sort_by(|a, b| price_cmp(a.price, b.price));
            let mut fuzzy: Vec<String> = Vec::new();
            for r in fuzzy_rows {
                let c = r.accelerator_count;
                let cs = if c.fract() == 0.0 {
                    format!("{}", c as i64)
                } else {
                    format!("{c:.2}")
                };
                let s = format!("{}:{cs}", self.s(r.accelerator));
                if !fuzzy.contains(&s) {
                    fuzzy.push(s);
                }
            }
            return AcceleratorLookup {
                instance_types: None,
                fuzzy,
            };
        }
        let mut rows: Vec<&RawRow> = exact
            .into_iter()
            .filter(|r| cpus_ok(r, cpus) && mem_ok(r, memory))
            .collect();
        let price = |r: &RawRow| if use_spot { r.spot_price } else { r.price };
        if rows.iter().all(|r| price(r).is_nan()) {
            return AcceleratorLookup {
                instance_types: Some(Vec::new()),
                fuzzy: Vec::new(),
            };
        }
        rows.sort_by(|a, b| price_cmp(price(a), price(b)));
        let mut out: Vec<String> = Vec::new();
        let mut seen: Vec<u32> = Vec::new();
        for r in rows {
            if !seen.contains(&r.instance_type) {
                seen.push(r.instance_type);
                out.push(self.s(r.instance_type).to_owned());
            }
        }
        AcceleratorLookup {
            instance_types: Some(out),
            fuzzy: Vec::new(),
        }
    }

    /// Instance types of `cloud` carrying `count` × `accelerator`, cheapest first
    /// (`get_instance_type_for_accelerator`). For GCP, attachable GPUs are joined to the one host
    /// VM SkyPilot would pick (A100/L4/H100/... → their fixed families; others → the cheapest
    /// N1 type with the default vCPUs and 4 GiB per vCPU). `accelerator` should be canonical.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors SkyPilot's catalog signature"
    )]
    pub fn instance_types_for_accelerator(
        &self,
        cloud: &str,
        accelerator: &str,
        count: f64,
        cpus: Option<CpuFilter>,
        memory: Option<MemFilter>,
        use_spot: bool,
        region: Option<&str>,
        zone: Option<&str>,
    ) -> AcceleratorLookup {
        let Some(t) = self.table(cloud) else {
            return AcceleratorLookup::default();
        };
        let base =
            self.accelerator_impl(t, accelerator, count, cpus, memory, use_spot, region, zone);
        if t.id != "gcp" || base.instance_types.is_none() {
            return base;
        }
        let none = AcceleratorLookup {
            instance_types: None,
            fuzzy: Vec::new(),
        };
        let host_rows = t.rows.iter().filter(|r| r.instance_type != 0);
        if let Some(types) = gcp_acc_instance_types(accelerator, count) {
            let Some(types) = types else { return none };
            let ids: Vec<u32> = types.iter().filter_map(|n| self.id_of(n)).collect();
            let rows = host_rows.filter(|r| ids.contains(&r.instance_type));
            return match self.cheapest_for_cpus_mem(rows, cpus, memory, None, None) {
                Some(id) => AcceleratorLookup {
                    instance_types: Some(vec![self.s(id).to_owned()]),
                    fuzzy: Vec::new(),
                },
                None => none,
            };
        }
        let (cpus, memory) = match (cpus, memory) {
            (None, None) => {
                let Some(c) = gcp_default_host_cpus(accelerator, count) else {
                    return none;
                };
                let c = CpuFilter {
                    value: c,
                    at_least: true,
                };
                (
                    Some(c),
                    Some(MemFilter::Gib {
                        value: c.value.trunc() * DEFAULT_MEMORY_CPU_RATIO,
                        at_least: true,
                    }),
                )
            }
            (Some(c), None) => (
                Some(c),
                Some(MemFilter::Gib {
                    value: c.value.trunc() * DEFAULT_MEMORY_CPU_RATIO,
                    at_least: true,
                }),
            ),
            other => other,
        };
        let rows = host_rows.filter(|r| {
            GCP_HOST_FAMILIES
                .iter()
                .any(|p| self.s(r.instance_type).starts_with(p))
        });
        match self.cheapest_for_cpus_mem(rows, cpus, memory, None, None) {
            Some(id) => AcceleratorLookup {
                instance_types: Some(vec![self.s(id).to_owned()]),
                fuzzy: Vec::new(),
            },
            None => none,
        }
    }

    /// `common.get_region_zones`: regions (and zones) of `rows` with a price, sorted by
    /// (price, region, zone).
    fn region_zones_of<'a>(
        &self,
        t: &CloudTable,
        rows: impl Iterator<Item = &'a RawRow>,
        use_spot: bool,
    ) -> Vec<RegionZones> {
        let price = |r: &RawRow| if use_spot { r.spot_price } else { r.price };
        let mut rows: Vec<&RawRow> = rows
            .filter(|r| !price(r).is_nan() && r.region != 0 && (!t.has_zones || r.zone != 0))
            .collect();
        rows.sort_by(|a, b| {
            price(a)
                .total_cmp(&price(b))
                .then_with(|| self.s(a.region).cmp(self.s(b.region)))
                .then_with(|| self.s(a.zone).cmp(self.s(b.zone)))
        });
        let mut out: Vec<RegionZones> = Vec::new();
        for r in rows {
            let name = self.s(r.region);
            let idx = match out.iter().position(|x| x.name == name) {
                Some(i) => i,
                None => {
                    out.push(RegionZones {
                        name: name.to_owned(),
                        zones: t.has_zones.then(Vec::new),
                    });
                    out.len() - 1
                }
            };
            if let Some(zones) = out[idx].zones.as_mut() {
                zones.push(self.s(r.zone).to_owned());
            }
        }
        out
    }

    fn instance_rows<'a>(
        &'a self,
        t: &'a CloudTable,
        instance_type: &str,
    ) -> impl Iterator<Item = &'a RawRow> + 'a {
        let idxs: &[u32] = match self.id_of(instance_type) {
            Some(id) => t
                .instance_index()
                .get(&id)
                .map(|v| v.as_slice())
                .unwrap_or(&[]),
            None => &[],
        };
        idxs.iter().map(move |&i| &t.rows[i as usize])
    }

    fn gcp_accelerator_rows<'a>(
        &'a self,
        t: &'a CloudTable,
        acc: &str,
        count: f64,
    ) -> impl Iterator<Item = &'a RawRow> + 'a {
        let ids = self.ids_ci(acc);
        t.rows_with_accelerator(&ids)
            .into_iter()
            .filter(move |r| r.instance_type == 0 && r.accelerator_count == count)
    }

    /// Where a launchable can run, in the order SkyPilot tries them
    /// (`Cloud.regions_with_offering`): cheapest first; clouds whose profile says
    /// `us_regions_first` (AWS, Lambda) put `us-*` regions first;
    /// for GCP with an accelerator, the accelerator's zones that also offer the host VM.
    pub fn regions_with_offering(
        &self,
        cloud: &str,
        instance_type: &str,
        accelerator: Option<(&str, f64)>,
        use_spot: bool,
        region: Option<&str>,
        zone: Option<&str>,
    ) -> Vec<RegionZones> {
        let Some(t) = self.table(cloud) else {
            return Vec::new();
        };
        let mut regions = match (t.id.as_str(), accelerator) {
            ("gcp", Some((acc, count))) => {
                let acc_regions =
                    self.region_zones_of(t, self.gcp_accelerator_rows(t, acc, count), use_spot);
                if instance_type == "TPU-VM" {
                    acc_regions
                } else {
                    let vm =
                        self.region_zones_of(t, self.instance_rows(t, instance_type), use_spot);
                    let mut out = Vec::new();
                    for r1 in acc_regions {
                        if let Some(r2) = vm.iter().find(|r2| r2.name == r1.name) {
                            let z2 = r2.zones.clone().unwrap_or_default();
                            let zones: Vec<String> = r1
                                .zones
                                .unwrap_or_default()
                                .into_iter()
                                .filter(|z| z2.contains(z))
                                .collect();
                            if !zones.is_empty() {
                                out.push(RegionZones {
                                    name: r1.name,
                                    zones: Some(zones),
                                });
                            }
                        }
                    }
                    out
                }
            }
            _ => {
                let v = self.region_zones_of(t, self.instance_rows(t, instance_type), use_spot);
                if t.facts.us_regions_first {
                    let (us, other): (Vec<_>, Vec<_>) =
                        v.into_iter().partition(|r| r.name.starts_with("us-"));
                    us.into_iter().chain(other).collect()
                } else {
                    v
                }
            }
        };
        if let Some(region) = region {
            regions.retain(|r| r.name == region);
        }
        if let Some(zone) = zone {
            for r in &mut regions {
                if let Some(zs) = r.zones.as_mut() {
                    zs.retain(|z| z == zone);
                }
            }
            regions.retain(|r| r.zones.as_ref().is_some_and(|z| !z.is_empty()));
        }
        regions
    }

    /// Hourly price of one `instance_type` VM (`get_hourly_cost`): the cheapest matching row in
    /// `region`/`zone` (or anywhere). GCP's `TPU-VM` host costs 0. `None` when not offered there.
    pub fn hourly_cost(
        &self,
        cloud: &str,
        instance_type: &str,
        use_spot: bool,
        region: Option<&str>,
        zone: Option<&str>,
    ) -> Option<f64> {
        let t = self.table(cloud)?;
        if t.id == "gcp" && instance_type == "TPU-VM" {
            return Some(0.0);
        }
        self.instance_rows(t, instance_type)
            .filter(|r| {
                region.is_none_or(|reg| self.s(r.region).eq_ignore_ascii_case(reg))
                    && zone.is_none_or(|z| self.s(r.zone) == z)
            })
            .map(|r| if use_spot { r.spot_price } else { r.price })
            .filter(|p| !p.is_nan())
            .min_by(|a, b| a.total_cmp(b))
    }

    /// Hourly price of separately billed accelerators (GCP's attachable GPUs and TPUs); 0 for
    /// clouds that bill GPUs with the VM. Spot falls back to the on-demand price when the zone
    /// has no spot price, as SkyPilot does.
    pub fn accelerator_hourly_cost(
        &self,
        cloud: &str,
        accelerator: &str,
        count: f64,
        use_spot: bool,
        region: Option<&str>,
        zone: Option<&str>,
    ) -> Option<f64> {
        let t = self.table(cloud)?;
        if t.id != "gcp" {
            return Some(0.0);
        }
        let rows: Vec<&RawRow> = self
            .gcp_accelerator_rows(t, accelerator, count)
            .filter(|r| {
                region.is_none_or(|reg| self.s(r.region) == reg)
                    && zone.is_none_or(|z| self.s(r.zone) == z)
            })
            .collect();
        let min = |f: fn(&RawRow) -> f64| {
            rows.iter()
                .map(|r| f(r))
                .filter(|p| !p.is_nan())
                .min_by(|a, b| a.total_cmp(b))
        };
        let on_demand = min(|r| r.price);
        if use_spot {
            min(|r| r.spot_price).or(on_demand)
        } else {
            on_demand
        }
    }

    /// Whether `cloud` offers `instance_type` (GCP's `TPU-VM` always exists).
    pub fn instance_type_exists(&self, cloud: &str, instance_type: &str) -> bool {
        let Some(t) = self.table(cloud) else {
            return false;
        };
        if t.id == "gcp" && instance_type == "TPU-VM" {
            return true;
        }
        self.instance_rows(t, instance_type).next().is_some()
    }

    /// vCPUs and memory (GiB) of an instance type (`None`s for GCP's `TPU-VM`).
    pub fn vcpus_mem(&self, cloud: &str, instance_type: &str) -> (Option<f64>, Option<f64>) {
        let Some(t) = self.table(cloud) else {
            return (None, None);
        };
        match self.instance_rows(t, instance_type).next() {
            Some(r) => (
                if r.vcpus.is_nan() {
                    None
                } else {
                    Some(r.vcpus)
                },
                if r.memory_gib.is_nan() {
                    None
                } else {
                    Some(r.memory_gib)
                },
            ),
            None => (None, None),
        }
    }

    /// The accelerators an instance type comes with (`get_accelerators_from_instance_type`).
    /// GCP: only the types with GPUs pre-attached (`a2-*`, `g2-*`, `a3-*`, `a4-*`).
    pub fn instance_accelerator(&self, cloud: &str, instance_type: &str) -> Option<(String, f64)> {
        let t = self.table(cloud)?;
        if t.id == "gcp" {
            return gcp_instance_accelerator(instance_type).map(|(a, c)| (a.to_owned(), c));
        }
        let r = self.instance_rows(t, instance_type).next()?;
        if r.accelerator == 0 {
            return None;
        }
        let count = if r.accelerator_count.is_nan() {
            1.0
        } else {
            r.accelerator_count
        };
        Some((self.s(r.accelerator).to_owned(), count))
    }

    /// Checks a region/zone pair against `cloud`'s table (`validate_region_zone`), returning the
    /// validated (region, zone) — the region inferred from the zone when only a zone is given —
    /// or SkyPilot's error text.
    pub fn validate_region_zone(
        &self,
        cloud: &str,
        region: Option<&str>,
        zone: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), String> {
        let Some(t) = self.table(cloud) else {
            return Err(format!("cloud {cloud:?} has no bundled catalog"));
        };
        if zone.is_some()
            && let Zones::Unsupported(message) = t.facts.zones
        {
            return Err(message.into());
        }
        let mut validated_region = region.map(str::to_owned);
        let mut region_rows: Vec<&RawRow> = t.rows.iter().collect();
        if let Some(region) = region {
            region_rows.retain(|r| self.s(r.region).eq_ignore_ascii_case(region));
            if region_rows.is_empty() {
                let all = self.regions(&t.id);
                let mut msg = format!("Invalid region {region:?}");
                let close = close_matches(&region.to_ascii_lowercase(), &all, 0.9);
                if close.is_empty() {
                    msg.push_str(&format!(
                        "\nList of supported {} regions: {:?}",
                        t.id,
                        all.iter()
                            .map(|s| s.to_ascii_lowercase())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                } else {
                    msg.push_str(&format!(
                        "\nDid you mean one of these: {:?}?",
                        close.join(", ")
                    ));
                }
                return Err(msg);
            }
            validated_region = Some(self.s(region_rows[0].region).to_owned());
        }
        if let Some(zone) = zone {
            let in_zone: Vec<&&RawRow> = region_rows
                .iter()
                .filter(|r| self.s(r.zone) == zone)
                .collect();
            let Some(first) = in_zone.first() else {
                let region_str = region
                    .map(|r| format!(" for region {r:?}"))
                    .unwrap_or_default();
                let mut zones: Vec<&str> = region_rows
                    .iter()
                    .filter(|r| r.zone != 0)
                    .map(|r| self.s(r.zone))
                    .collect();
                zones.sort_unstable();
                zones.dedup();
                let mut msg = format!("Invalid zone {zone:?}{region_str}");
                let close = close_matches(zone, &zones, 0.9);
                if !close.is_empty() {
                    msg.push_str(&format!(
                        "\nDid you mean one of these: {:?}?",
                        close.join(", ")
                    ));
                }
                return Err(msg);
            };
            validated_region = Some(self.s(first.region).to_owned());
        }
        Ok((validated_region, zone.map(str::to_owned)))
    }
}

/// `difflib.get_close_matches`-like: up to 5 candidates with similarity ≥ `cutoff`, sorted.
fn close_matches(word: &str, candidates: &[&str], cutoff: f64) -> Vec<String> {
    let mut scored: Vec<(f64, String)> = candidates
        .iter()
        .map(|c| (strsim::normalized_levenshtein(word, c), (*c).to_owned()))
        .filter(|(s, _)| *s >= cutoff)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(5);
    let mut v: Vec<String> = scored.into_iter().map(|(_, s)| s).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_families() {
        assert_eq!(azure_family("Standard_D8s_v5").as_deref(), Some("Ds_v5"));
        assert_eq!(azure_family("Standard_E4-2s_v5").as_deref(), Some("E_s_v5"));
        assert_eq!(azure_family("Standard_NC6s_v3").as_deref(), Some("NCs_v3"));
        assert_eq!(azure_family("Basic_A1").as_deref(), Some("basic_a"));
    }

    #[test]
    fn gcp_hosts() {
        let c = Catalog::bundled();
        let v100 =
            c.instance_types_for_accelerator("gcp", "V100", 1.0, None, None, false, None, None);
        assert_eq!(v100.instance_types, Some(vec!["n1-highmem-8".to_owned()]));
        let t4 = c.instance_types_for_accelerator(
            "gcp",
            "T4",
            1.0,
            None,
            None,
            false,
            Some("us-central1"),
            None,
        );
        assert_eq!(t4.instance_types, Some(vec!["n1-highmem-4".to_owned()]));
        let l4 = c.instance_types_for_accelerator("gcp", "L4", 1.0, None, None, false, None, None);
        assert_eq!(l4.instance_types, Some(vec!["g2-standard-4".to_owned()]));
    }

    #[test]
    fn unknown_accelerator_gives_fuzzy_names() {
        let c = Catalog::bundled();
        let r = c.instance_types_for_accelerator("aws", "A100", 3.0, None, None, false, None, None);
        assert!(r.instance_types.is_none());
        assert!(r.fuzzy.iter().any(|s| s == "A100:8"), "{:?}", r.fuzzy);
    }

    #[test]
    fn defaults() {
        let c = Catalog::bundled();
        assert_eq!(
            c.default_instance_type("aws", None, None, None, None),
            Some("m6i.2xlarge")
        );
        assert_eq!(
            c.default_instance_type("lambda", None, None, None, None),
            Some("gpu_1x_a10")
        );
    }

    #[test]
    fn region_validation() {
        let c = Catalog::bundled();
        assert_eq!(
            c.validate_region_zone("gcp", None, Some("us-central1-a")),
            Ok((Some("us-central1".into()), Some("us-central1-a".into())))
        );
        assert!(
            c.validate_region_zone("aws", Some("us-east-7"), None)
                .is_err()
        );
        assert!(
            c.validate_region_zone("azure", Some("eastus"), Some("x"))
                .is_err()
        );
    }
}
