//! `sky-catalog`: the bundled price and offer tables of every supported cloud, and the
//! queries SkyPilot's catalog layer answers over them.
//!
//! The tables come from SkyPilot's catalog (schema v8 CSVs, kept verbatim under
//! `catalogs/upstream/`) and are embedded in the binary in the project's compact format
//! (`catalogs/catalog.bin`, produced by the pure [`compile`] function; `cargo xtask catalog`
//! rewrites it). [`Catalog::bundled`] decodes it once per process. Queries mirror SkyPilot's
//! `sky/catalog/*_catalog.py`: instance types for an accelerator (with GCP's attachable GPUs and
//! TPUs joined to host VMs), default instance types, regions and zones in price order,
//! hourly costs, instance-type facts, and the `sky show-gpus` listing.
//!
//! Each table is read as its cloud's profile (`sky-clouds`) says: the default instance
//! families and shape, whether zones may be named, whether `us-*` regions come first; the
//! bundled clouds and display names are the profiles'. GCP's attachable GPUs and TPUs keep
//! GCP's own join rules here.
//!
//! Used by `sky-optimizer` (feasibility, prices, failover order) and by the CLI (`sky
//! show-gpus`, validation). Invariant: this crate is pure and synchronous — no file, network,
//! environment, clock or process access, no async runtime — and it knows nothing about YAML.

mod compile;
mod list;
mod query;

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

pub use compile::compile;
pub use list::{AcceleratorOffer, AcceleratorQuery};
pub use query::{AcceleratorLookup, CpuFilter, MemFilter, RegionZones};

use compile::RawRow;
use sky_clouds::{CloudProfile, DefaultInstance, Zones};

/// The clouds whose tables are bundled, in id order: the profiles with `bundled_catalog`
/// (`sky_clouds::bundled_catalog_clouds`). Dereferences to `[&str]`.
pub static BUNDLED_CLOUDS: BundledClouds = BundledClouds;

/// The type of [`BUNDLED_CLOUDS`]: a view of the profiles' list, as a slice.
#[derive(Clone, Copy, Debug)]
pub struct BundledClouds;

impl std::ops::Deref for BundledClouds {
    type Target = [&'static str];
    fn deref(&self) -> &[&'static str] {
        sky_clouds::bundled_catalog_clouds()
    }
}

/// The compact catalog embedded in the binary (see `catalogs/README.md`).
pub const BUNDLED_BYTES: &[u8] = include_bytes!("../../../catalogs/catalog.bin");

/// Where the compact catalog lives, relative to the workspace root (`cargo xtask catalog`
/// rewrites it from `catalogs/upstream/`).
pub const COMPACT_PATH: &str = "catalogs/catalog.bin";

/// SkyPilot's display name of a cloud id (`aws` → `AWS`), from its profile
/// (`sky_clouds::display_name`); ids without a built-in profile are returned as given.
pub fn cloud_display_name(id: &str) -> &str {
    sky_clouds::display_name(id)
}

/// Errors from building or decoding a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// An upstream CSV file could not be parsed.
    #[error("failed to parse catalog file {file}: {message}")]
    Csv { file: String, message: String },
    /// An upstream CSV lacks a column the schema requires.
    #[error("catalog file {file} has no `{column}` column (expected SkyPilot catalog schema v8)")]
    MissingColumn { file: String, column: String },
    /// The compact bytes could not be decoded.
    #[error("failed to decode the compact catalog: {0}")]
    Decode(String),
    /// The compact bytes could not be encoded.
    #[error("failed to encode the compact catalog: {0}")]
    Encode(String),
}

/// An offer of a cloud without a bundled table (see [`Catalog::with_extra_cloud`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraOffer {
    pub instance_type: String,
    pub accelerator: Option<(String, f64)>,
    pub vcpus: f64,
    pub memory_gib: f64,
    pub price: f64,
    pub spot_price: Option<f64>,
    pub region: String,
    pub zone: Option<String>,
}

/// One row of a cloud's offer table, as borrowed views.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Offer<'a> {
    pub cloud: &'a str,
    /// `None` for GCP's attachable GPUs and TPUs.
    pub instance_type: Option<&'a str>,
    pub accelerator: Option<&'a str>,
    pub accelerator_count: Option<f64>,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    pub gpu_memory_mib: Option<u64>,
    pub price: Option<f64>,
    pub spot_price: Option<f64>,
    pub region: &'a str,
    pub zone: Option<&'a str>,
    pub arch: Option<&'a str>,
}

pub(crate) struct CloudTable {
    pub(crate) id: String,
    pub(crate) has_zones: bool,
    /// What the cloud's profile says about reading its table.
    pub(crate) facts: TableFacts,
    pub(crate) rows: Vec<RawRow>,
    /// instance-type string id → row indices, built on first use.
    by_instance: OnceLock<HashMap<u32, Vec<u32>>>,
    /// accelerator string id → row indices, built on first use.
    by_accelerator: OnceLock<HashMap<u32, Vec<u32>>>,
    /// Rows of the default instance families (`get_default_instance_type`), built on first use.
    pub(crate) default_rows: OnceLock<Vec<u32>>,
}

/// The facts of a cloud's profile that its table's queries read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TableFacts {
    pub(crate) zones: Zones,
    pub(crate) us_regions_first: bool,
    pub(crate) default_instance: DefaultInstance,
}

impl TableFacts {
    fn of(p: &CloudProfile) -> TableFacts {
        TableFacts {
            zones: p.zones,
            us_regions_first: p.us_regions_first,
            default_instance: p.default_instance,
        }
    }
}

impl CloudTable {
    /// A table of `id`, read as its built-in profile says (a blank profile without one).
    pub(crate) fn new(id: String, has_zones: bool, rows: Vec<RawRow>) -> Self {
        let facts = TableFacts::of(sky_clouds::profile(&id).unwrap_or(&sky_clouds::BLANK));
        CloudTable::with_facts(id, has_zones, facts, rows)
    }

    fn with_facts(id: String, has_zones: bool, facts: TableFacts, rows: Vec<RawRow>) -> Self {
        CloudTable {
            id,
            has_zones,
            facts,
            rows,
            by_instance: OnceLock::new(),
            by_accelerator: OnceLock::new(),
            default_rows: OnceLock::new(),
        }
    }

    pub(crate) fn instance_index(&self) -> &HashMap<u32, Vec<u32>> {
        self.by_instance.get_or_init(|| {
            let mut m: HashMap<u32, Vec<u32>> = HashMap::new();
            for (i, r) in self.rows.iter().enumerate() {
                m.entry(r.instance_type).or_default().push(i as u32);
            }
            m
        })
    }

    pub(crate) fn accelerator_index(&self) -> &HashMap<u32, Vec<u32>> {
        self.by_accelerator.get_or_init(|| {
            let mut m: HashMap<u32, Vec<u32>> = HashMap::new();
            for (i, r) in self.rows.iter().enumerate() {
                if r.accelerator != 0 {
                    m.entry(r.accelerator).or_default().push(i as u32);
                }
            }
            m
        })
    }

    /// Rows whose accelerator is one of `ids`, in upstream order.
    pub(crate) fn rows_with_accelerator(&self, ids: &[u32]) -> Vec<&RawRow> {
        let idx = self.accelerator_index();
        let mut v: Vec<u32> = ids
            .iter()
            .filter_map(|id| idx.get(id))
            .flatten()
            .copied()
            .collect();
        v.sort_unstable();
        v.into_iter().map(|i| &self.rows[i as usize]).collect()
    }
}

/// The offer tables of every bundled cloud. Cheap to share (`&'static` via [`Catalog::bundled`]).
pub struct Catalog {
    strings: Vec<Box<str>>,
    clouds: Vec<CloudTable>,
    /// Canonical accelerator names (common/accelerators.csv, then any other table name).
    accelerator_names: Vec<u32>,
    gpu_memory_gb: Vec<(u32, f64)>,
    /// text → string id, built on first use.
    string_ids: OnceLock<HashMap<Box<str>, u32>>,
    /// lower-case text → string ids, built on first use.
    string_ids_ci: OnceLock<HashMap<String, Vec<u32>>>,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field(
                "clouds",
                &self
                    .clouds
                    .iter()
                    .map(|c| (&c.id, c.rows.len()))
                    .collect::<Vec<_>>(),
            )
            .field("strings", &self.strings.len())
            .finish()
    }
}

fn opt(v: f64) -> Option<f64> {
    if v.is_nan() { None } else { Some(v) }
}

impl Catalog {
    /// The catalog embedded in the binary, decoded on first use.
    ///
    /// The embedded bytes are produced and checked by the build (a test asserts they equal
    /// `compile(catalogs/upstream)`), so a decoding failure is a build defect; should it happen
    /// anyway, an empty catalog is returned rather than aborting.
    pub fn bundled() -> &'static Catalog {
        static BUNDLED: OnceLock<Catalog> = OnceLock::new();
        BUNDLED.get_or_init(|| {
            Catalog::from_compiled(BUNDLED_BYTES).unwrap_or_else(|_| Catalog::empty())
        })
    }

    /// A catalog with no clouds.
    pub fn empty() -> Catalog {
        Catalog {
            strings: vec!["".into()],
            clouds: Vec::new(),
            accelerator_names: Vec::new(),
            gpu_memory_gb: Vec::new(),
            string_ids: OnceLock::new(),
            string_ids_ci: OnceLock::new(),
        }
    }

    /// Decodes compact bytes produced by [`compile`].
    pub fn from_compiled(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        let c = compile::decode(bytes)?;
        let strings: Vec<Box<str>> = c.strings.into_iter().map(String::into_boxed_str).collect();
        let n = strings.len() as u32;
        let check = |id: u32| -> Result<(), CatalogError> {
            if id < n {
                Ok(())
            } else {
                Err(CatalogError::Decode(format!("string id {id} out of range")))
            }
        };
        for cloud in &c.clouds {
            for r in &cloud.rows {
                for id in [r.instance_type, r.accelerator, r.region, r.zone, r.arch] {
                    check(id)?;
                }
            }
        }
        for &id in &c.accelerators {
            check(id)?;
        }
        for &(id, _) in &c.gpu_memory_gb {
            check(id)?;
        }
        let clouds: Vec<CloudTable> = c
            .clouds
            .into_iter()
            .map(|cc| CloudTable::new(cc.id, cc.has_zones, cc.rows))
            .collect();
        let mut accelerator_names = c.accelerators;
        for t in &clouds {
            for r in &t.rows {
                if r.accelerator != 0 && !accelerator_names.contains(&r.accelerator) {
                    accelerator_names.push(r.accelerator);
                }
            }
        }
        Ok(Catalog {
            strings,
            clouds,
            accelerator_names,
            gpu_memory_gb: c.gpu_memory_gb,
            string_ids: OnceLock::new(),
            string_ids_ci: OnceLock::new(),
        })
    }

    /// A copy of this catalog with one more cloud whose offers come from its provider rather
    /// than a bundled table (the local cloud: this machine's capacity per simulated zone).
    /// A table of the same id is replaced. Its table is read as the cloud's built-in profile
    /// says (zones, default instance types), or as a blank profile for a cloud without one;
    /// [`Catalog::with_extra_cloud_profile`] gives the profile.
    pub fn with_extra_cloud(&self, id: &str, offers: &[ExtraOffer]) -> Catalog {
        let profile = sky_clouds::profile(id).unwrap_or(&sky_clouds::BLANK);
        self.extra_cloud(id, TableFacts::of(profile), offers)
    }

    /// [`Catalog::with_extra_cloud`] for a cloud that brings its own profile (a third-party
    /// cloud): its table (id `profile.id`) is read as that profile says.
    pub fn with_extra_cloud_profile(
        &self,
        profile: &CloudProfile,
        offers: &[ExtraOffer],
    ) -> Catalog {
        self.extra_cloud(&profile.id, TableFacts::of(profile), offers)
    }

    fn extra_cloud(&self, id: &str, facts: TableFacts, offers: &[ExtraOffer]) -> Catalog {
        let mut strings = self.strings.clone();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut intern = |s: &str, strings: &mut Vec<Box<str>>| -> u32 {
            if s.is_empty() {
                return 0;
            }
            if let Some(&i) = index.get(s) {
                return i;
            }
            let i = strings.iter().position(|x| &**x == s).map_or_else(
                || {
                    strings.push(s.into());
                    (strings.len() - 1) as u32
                },
                |p| p as u32,
            );
            index.insert(s.to_owned(), i);
            i
        };
        let rows: Vec<RawRow> = offers
            .iter()
            .map(|o| RawRow {
                instance_type: intern(&o.instance_type, &mut strings),
                accelerator: o
                    .accelerator
                    .as_ref()
                    .map_or(0, |(n, _)| intern(n, &mut strings)),
                accelerator_count: o.accelerator.as_ref().map_or(f64::NAN, |(_, c)| *c),
                vcpus: o.vcpus,
                memory_gib: o.memory_gib,
                gpu_memory_mib: 0,
                price: o.price,
                spot_price: o.spot_price.unwrap_or(f64::NAN),
                region: intern(&o.region, &mut strings),
                zone: o.zone.as_deref().map_or(0, |z| intern(z, &mut strings)),
                arch: 0,
            })
            .collect();
        let has_zones = offers.iter().any(|o| o.zone.is_some());
        let mut clouds: Vec<CloudTable> = self
            .clouds
            .iter()
            .filter(|t| !t.id.eq_ignore_ascii_case(id))
            .map(|t| CloudTable::with_facts(t.id.clone(), t.has_zones, t.facts, t.rows.clone()))
            .collect();
        let mut accelerator_names = self.accelerator_names.clone();
        for r in &rows {
            if r.accelerator != 0 && !accelerator_names.contains(&r.accelerator) {
                accelerator_names.push(r.accelerator);
            }
        }
        clouds.push(CloudTable::with_facts(
            id.to_ascii_lowercase(),
            has_zones,
            facts,
            rows,
        ));
        Catalog {
            strings,
            clouds,
            accelerator_names,
            gpu_memory_gb: self.gpu_memory_gb.clone(),
            string_ids: OnceLock::new(),
            string_ids_ci: OnceLock::new(),
        }
    }

    /// Compiles upstream CSVs and loads the result (see [`compile`] for `inputs`).
    pub fn from_csvs(inputs: &[(&str, &str, &[u8])]) -> Result<Catalog, CatalogError> {
        Catalog::from_compiled(&compile(inputs)?)
    }

    pub(crate) fn s(&self, id: u32) -> &str {
        self.strings.get(id as usize).map(|s| &**s).unwrap_or("")
    }

    pub(crate) fn table(&self, cloud: &str) -> Option<&CloudTable> {
        self.clouds
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(cloud))
    }

    /// String ids whose text equals `name` ignoring ASCII case.
    pub(crate) fn ids_ci(&self, name: &str) -> Vec<u32> {
        let m = self.string_ids_ci.get_or_init(|| {
            let mut m: HashMap<String, Vec<u32>> = HashMap::new();
            for (i, s) in self.strings.iter().enumerate() {
                m.entry(s.to_ascii_lowercase()).or_default().push(i as u32);
            }
            m
        });
        m.get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// The string id of exactly `name`, if present.
    pub(crate) fn id_of(&self, name: &str) -> Option<u32> {
        let m = self.string_ids.get_or_init(|| {
            self.strings
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect()
        });
        m.get(name).copied()
    }

    pub(crate) fn offer<'a>(&'a self, t: &'a CloudTable, r: &RawRow) -> Offer<'a> {
        let nz = |id: u32| if id == 0 { None } else { Some(self.s(id)) };
        Offer {
            cloud: &t.id,
            instance_type: nz(r.instance_type),
            accelerator: nz(r.accelerator),
            accelerator_count: opt(r.accelerator_count),
            vcpus: opt(r.vcpus),
            memory_gib: opt(r.memory_gib),
            gpu_memory_mib: if r.gpu_memory_mib == 0 {
                None
            } else {
                Some(u64::from(r.gpu_memory_mib))
            },
            price: opt(r.price),
            spot_price: opt(r.spot_price),
            region: self.s(r.region),
            zone: nz(r.zone),
            arch: nz(r.arch),
        }
    }

    /// Cloud ids present in this catalog, in id order.
    pub fn clouds(&self) -> Vec<&str> {
        self.clouds.iter().map(|c| c.id.as_str()).collect()
    }

    /// Whether the catalog has a table for `cloud`.
    pub fn has_cloud(&self, cloud: &str) -> bool {
        self.table(cloud).is_some()
    }

    /// Every row of `cloud`'s table, in upstream order (empty for an unknown cloud).
    pub fn offers<'a>(&'a self, cloud: &str) -> impl Iterator<Item = Offer<'a>> + 'a {
        let t = self.table(cloud);
        t.into_iter()
            .flat_map(move |t| t.rows.iter().map(move |r| self.offer(t, r)))
    }

    /// Number of rows of `cloud`'s table.
    pub fn row_count(&self, cloud: &str) -> usize {
        self.table(cloud).map_or(0, |t| t.rows.len())
    }

    /// The canonical spelling of an accelerator name, matched case-insensitively
    /// (`a100-80gb` → `A100-80GB`; TPU names are lower-case: `TPU-V4-8` → `tpu-v4-8`).
    pub fn canonical_accelerator(&self, name: &str) -> Option<&str> {
        if name.to_ascii_lowercase().starts_with("tpu-") {
            return self
                .accelerator_names
                .iter()
                .map(|&id| self.s(id))
                .find(|s| s.eq_ignore_ascii_case(name));
        }
        if let Some(&id) = self
            .accelerator_names
            .iter()
            .find(|&&id| self.s(id) == name)
        {
            return Some(self.s(id));
        }
        self.accelerator_names
            .iter()
            .map(|&id| self.s(id))
            .find(|s| s.eq_ignore_ascii_case(name))
    }

    /// Every accelerator name known to the catalog (canonical spelling), sorted.
    pub fn accelerator_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .accelerator_names
            .iter()
            .map(|&id| self.s(id))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Up to `n` known accelerator names close to `name`: names containing it (case-insensitive),
    /// then the most similar by edit distance.
    pub fn close_accelerator_names(&self, name: &str, n: usize) -> Vec<String> {
        let lname = name.to_ascii_lowercase();
        let names = self.accelerator_names();
        let mut out: Vec<String> = names
            .iter()
            .filter(|s| s.to_ascii_lowercase().contains(&lname))
            .map(|s| (*s).to_owned())
            .collect();
        let mut scored: Vec<(f64, &str)> = names
            .iter()
            .map(|s| {
                (
                    strsim::normalized_levenshtein(&lname, &s.to_ascii_lowercase()),
                    *s,
                )
            })
            .filter(|(score, _)| *score >= 0.5)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        for (_, s) in scored {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        }
        out.truncate(n);
        out
    }

    /// GPU memory in GB of an accelerator (`common/metadata.csv`).
    pub fn accelerator_memory_gb(&self, name: &str) -> Option<f64> {
        self.gpu_memory_gb
            .iter()
            .find(|(id, _)| self.s(*id).eq_ignore_ascii_case(name))
            .map(|(_, m)| *m)
    }

    /// Regions of `cloud`, sorted by name.
    pub fn regions(&self, cloud: &str) -> Vec<&str> {
        let Some(t) = self.table(cloud) else {
            return Vec::new();
        };
        let mut ids: Vec<u32> = t.rows.iter().map(|r| r.region).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut v: Vec<&str> = ids
            .into_iter()
            .filter(|&i| i != 0)
            .map(|i| self.s(i))
            .collect();
        v.sort_unstable();
        v
    }

    /// Zones of `region` (case-insensitive) in `cloud`, sorted by name; empty when the cloud has
    /// no zones.
    pub fn zones(&self, cloud: &str, region: &str) -> Vec<&str> {
        let Some(t) = self.table(cloud) else {
            return Vec::new();
        };
        let mut v: Vec<&str> = t
            .rows
            .iter()
            .filter(|r| r.zone != 0 && self.s(r.region).eq_ignore_ascii_case(region))
            .map(|r| self.s(r.zone))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether the cloud's table has zones at all.
    pub fn cloud_has_zones(&self, cloud: &str) -> bool {
        self.table(cloud).is_some_and(|t| t.has_zones)
    }

    /// The region a zone belongs to, in any cloud (first match in id order) or in `cloud`.
    pub fn region_of_zone(&self, cloud: Option<&str>, zone: &str) -> Option<(&str, &str)> {
        for t in &self.clouds {
            if cloud.is_some_and(|c| !t.id.eq_ignore_ascii_case(c)) {
                continue;
            }
            if let Some(r) = t
                .rows
                .iter()
                .find(|r| r.zone != 0 && self.s(r.zone) == zone)
            {
                return Some((t.id.as_str(), self.s(r.region)));
            }
        }
        None
    }

    /// Clouds whose table has `region` (case-insensitive), in id order.
    pub fn clouds_with_region(&self, region: &str) -> Vec<&str> {
        self.clouds
            .iter()
            .filter(|t| {
                t.rows
                    .iter()
                    .any(|r| self.s(r.region).eq_ignore_ascii_case(region))
            })
            .map(|t| t.id.as_str())
            .collect()
    }

    /// Clouds offering `instance_type`, in id order.
    pub fn clouds_with_instance_type(&self, instance_type: &str) -> Vec<&str> {
        let Some(id) = self.id_of(instance_type) else {
            return Vec::new();
        };
        self.clouds
            .iter()
            .filter(|t| t.instance_index().contains_key(&id))
            .map(|t| t.id.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_loads_every_cloud() {
        let c = Catalog::bundled();
        assert_eq!(c.clouds(), BUNDLED_CLOUDS.to_vec());
        assert!(c.row_count("azure") > 50_000);
    }

    #[test]
    fn canonical_names_are_case_insensitive() {
        let c = Catalog::bundled();
        assert_eq!(c.canonical_accelerator("a100-80gb"), Some("A100-80GB"));
        assert_eq!(c.canonical_accelerator("TPU-V4-8"), Some("tpu-v4-8"));
        assert_eq!(c.canonical_accelerator("nope"), None);
    }

    #[test]
    fn every_bundled_table_has_a_profile() {
        for id in Catalog::bundled().clouds() {
            let p = sky_clouds::profile(id).unwrap_or_else(|| panic!("{id} has no profile"));
            assert!(p.bundled_catalog, "{id}: its profile says bundled_catalog");
            assert_eq!(p.id, id);
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(cloud_display_name("runpod"), "RunPod");
        assert_eq!(cloud_display_name("x"), "x");
    }
}
