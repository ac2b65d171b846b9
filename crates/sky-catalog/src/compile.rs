//! Upstream CSV (SkyPilot catalog schema v8) → the project's compact binary format.
//!
//! The compact format is a postcard-encoded [`Compiled`] value: one string table shared by
//! every cloud, and per cloud a vector of fixed-shape rows whose text columns are indices into
//! the string table. Loading it allocates each distinct string once instead of once per row,
//! which is what makes `Catalog::bundled()` fast (see `catalogs/README.md`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::CatalogError;

/// Bumped whenever the layout of [`Compiled`] changes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The whole compiled catalog.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Compiled {
    pub version: u32,
    /// String table; index 0 is always the empty string (= "none").
    pub strings: Vec<String>,
    pub clouds: Vec<CompiledCloud>,
    /// `common/accelerators.csv`: canonical accelerator names (string ids).
    pub accelerators: Vec<u32>,
    /// `common/metadata.csv`: (GPU name id, memory in GB).
    pub gpu_memory_gb: Vec<(u32, f64)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CompiledCloud {
    /// Lower-case cloud id (`aws`, `gcp`, ...).
    pub id: String,
    /// Whether the upstream table has an `AvailabilityZone` column.
    pub has_zones: bool,
    pub rows: Vec<RawRow>,
}

/// One upstream row. Text columns are string ids (0 = empty); numbers are NaN when empty,
/// mirroring how pandas reads the CSV in SkyPilot.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct RawRow {
    pub instance_type: u32,
    pub accelerator: u32,
    pub accelerator_count: f64,
    pub vcpus: f64,
    pub memory_gib: f64,
    /// Per-device memory from `GpuInfo` (`SizeInMiB` of the first GPU), 0 when unknown.
    pub gpu_memory_mib: u32,
    pub price: f64,
    pub spot_price: f64,
    pub region: u32,
    pub zone: u32,
    pub arch: u32,
}

struct Interner {
    strings: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    fn new() -> Self {
        let mut ids = HashMap::new();
        ids.insert(String::new(), 0);
        Interner {
            strings: vec![String::new()],
            ids,
        }
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }
}

fn parse_num(s: &str) -> f64 {
    let s = s.trim();
    if s.is_empty() {
        return f64::NAN;
    }
    s.parse::<f64>().unwrap_or(f64::NAN)
}

/// Extracts the first `'SizeInMiB': N` of a Python-literal `GpuInfo` string.
fn gpu_memory_mib(gpu_info: &str) -> u32 {
    let Some(pos) = gpu_info.find("SizeInMiB") else {
        return 0;
    };
    let rest = &gpu_info[pos + "SizeInMiB".len()..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse::<f64>().map(|v| v as u32).unwrap_or(0)
}

fn read_table(
    file: &str,
    bytes: &[u8],
) -> Result<(Vec<String>, Vec<csv::StringRecord>), CatalogError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| CatalogError::Csv {
            file: file.to_owned(),
            message: e.to_string(),
        })?
        .iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let mut records = Vec::new();
    for rec in reader.records() {
        records.push(rec.map_err(|e| CatalogError::Csv {
            file: file.to_owned(),
            message: e.to_string(),
        })?);
    }
    Ok((headers, records))
}

fn column(headers: &[String], name: &str) -> Option<usize> {
    headers.iter().position(|h| h == name)
}

fn compile_vms(
    cloud: &str,
    file: &str,
    bytes: &[u8],
    interner: &mut Interner,
) -> Result<CompiledCloud, CatalogError> {
    let (headers, records) = read_table(file, bytes)?;
    let need = |name: &str| {
        column(&headers, name).ok_or_else(|| CatalogError::MissingColumn {
            file: file.to_owned(),
            column: name.to_owned(),
        })
    };
    let c_it = need("InstanceType")?;
    let c_acc = need("AcceleratorName")?;
    let c_cnt = need("AcceleratorCount")?;
    let c_cpu = need("vCPUs")?;
    let c_mem = need("MemoryGiB")?;
    let c_price = need("Price")?;
    let c_region = need("Region")?;
    let c_spot = column(&headers, "SpotPrice");
    let c_zone = column(&headers, "AvailabilityZone");
    let c_gpu = column(&headers, "GpuInfo");
    let c_arch = column(&headers, "Arch");
    let get = |rec: &csv::StringRecord, c: Option<usize>| -> String {
        c.and_then(|c| rec.get(c)).unwrap_or("").to_owned()
    };
    let mut rows = Vec::with_capacity(records.len());
    for rec in &records {
        rows.push(RawRow {
            instance_type: interner.intern(&get(rec, Some(c_it))),
            accelerator: interner.intern(&get(rec, Some(c_acc))),
            accelerator_count: parse_num(&get(rec, Some(c_cnt))),
            vcpus: parse_num(&get(rec, Some(c_cpu))),
            memory_gib: parse_num(&get(rec, Some(c_mem))),
            gpu_memory_mib: gpu_memory_mib(&get(rec, c_gpu)),
            price: parse_num(&get(rec, Some(c_price))),
            spot_price: parse_num(&get(rec, c_spot)),
            region: interner.intern(&get(rec, Some(c_region))),
            zone: interner.intern(&get(rec, c_zone)),
            arch: interner.intern(&get(rec, c_arch)),
        });
    }
    if cloud == "aws" {
        rows = dedup_aws(rows);
    }
    Ok(CompiledCloud {
        id: cloud.to_owned(),
        has_zones: c_zone.is_some(),
        rows,
    })
}

/// SkyPilot drops duplicate AWS rows per (instance type, region, zone), keeping the one with
/// the lowest spot price (a row with a spot price beats one without). Row order is kept.
fn dedup_aws(rows: Vec<RawRow>) -> Vec<RawRow> {
    let mut best: HashMap<(u32, u32, u32), usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let key = (r.instance_type, r.region, r.zone);
        match best.get(&key) {
            None => {
                best.insert(key, i);
            }
            Some(&j) => {
                let cur = rows[j].spot_price;
                let better = !r.spot_price.is_nan() && (cur.is_nan() || r.spot_price < cur);
                if better {
                    best.insert(key, i);
                }
            }
        }
    }
    rows.iter()
        .enumerate()
        .filter(|(i, r)| best.get(&(r.instance_type, r.region, r.zone)) == Some(i))
        .map(|(_, r)| *r)
        .collect()
}

/// Compiles upstream-format CSV files into the compact catalog bytes.
///
/// `inputs` holds `(cloud or "common", file name, bytes)`: `("aws", "vms.csv", ..)`,
/// `("common", "accelerators.csv", ..)`, `("common", "metadata.csv", ..)`. Files other than
/// `vms.csv` under a cloud are ignored. Clouds are stored sorted by id, so the output does not
/// depend on the order of `inputs`. Pure: no IO.
pub fn compile(inputs: &[(&str, &str, &[u8])]) -> Result<Vec<u8>, CatalogError> {
    let mut interner = Interner::new();
    let mut vms: Vec<&(&str, &str, &[u8])> = inputs
        .iter()
        .filter(|(c, f, _)| *c != "common" && *f == "vms.csv")
        .collect();
    vms.sort_by(|a, b| a.0.cmp(b.0));
    let mut clouds = Vec::new();
    for (cloud, file, bytes) in vms {
        let path = format!("{cloud}/{file}");
        clouds.push(compile_vms(cloud, &path, bytes, &mut interner)?);
    }
    let mut accelerators = Vec::new();
    let mut gpu_memory_gb = Vec::new();
    let mut commons: Vec<&(&str, &str, &[u8])> =
        inputs.iter().filter(|(c, _, _)| *c == "common").collect();
    commons.sort_by(|a, b| a.1.cmp(b.1));
    for (_, file, bytes) in commons {
        let path = format!("common/{file}");
        match *file {
            "accelerators.csv" => {
                let (headers, records) = read_table(&path, bytes)?;
                let c = column(&headers, "AcceleratorName").ok_or_else(|| {
                    CatalogError::MissingColumn {
                        file: path.clone(),
                        column: "AcceleratorName".into(),
                    }
                })?;
                for rec in &records {
                    if let Some(name) = rec.get(c).filter(|s| !s.is_empty()) {
                        accelerators.push(interner.intern(name));
                    }
                }
            }
            "metadata.csv" => {
                let (headers, records) = read_table(&path, bytes)?;
                let (Some(cg), Some(cm)) = (column(&headers, "GPU"), column(&headers, "MemoryGB"))
                else {
                    return Err(CatalogError::MissingColumn {
                        file: path,
                        column: "GPU/MemoryGB".into(),
                    });
                };
                for rec in &records {
                    if let (Some(g), Some(m)) = (rec.get(cg), rec.get(cm)) {
                        gpu_memory_gb.push((interner.intern(g), parse_num(m)));
                    }
                }
            }
            _ => {}
        }
    }
    let compiled = Compiled {
        version: FORMAT_VERSION,
        strings: interner.strings,
        clouds,
        accelerators,
        gpu_memory_gb,
    };
    postcard::to_stdvec(&compiled).map_err(|e| CatalogError::Encode(e.to_string()))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Compiled, CatalogError> {
    let c: Compiled =
        postcard::from_bytes(bytes).map_err(|e| CatalogError::Decode(e.to_string()))?;
    if c.version != FORMAT_VERSION {
        return Err(CatalogError::Decode(format!(
            "compact catalog format version {} is not the supported version {FORMAT_VERSION}; rebuild it with `cargo xtask catalog`",
            c.version
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_memory_is_read_from_python_literal() {
        let s = "{'Gpus': [{'Name': 'A100', 'Count': 8, 'MemoryInfo': {'SizeInMiB': 40960}}], 'TotalGpuMemoryInMiB': 327680}";
        assert_eq!(gpu_memory_mib(s), 40960);
        assert_eq!(gpu_memory_mib("A10"), 0);
    }

    #[test]
    fn compile_round_trips() {
        let vms = b"InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice\nx,,,4.0,16.0,0.2,r1,,\n";
        let bytes = compile(&[("lambda", "vms.csv", vms)]).expect("compiles");
        let c = decode(&bytes).expect("decodes");
        assert_eq!(c.clouds.len(), 1);
        assert!(!c.clouds[0].has_zones);
        assert_eq!(c.clouds[0].rows.len(), 1);
        assert!(c.clouds[0].rows[0].spot_price.is_nan());
    }

    #[test]
    fn bad_csv_is_an_error_not_a_panic() {
        let err = compile(&[("aws", "vms.csv", b"Foo,Bar\n1,2\n")]).unwrap_err();
        assert!(err.to_string().contains("InstanceType"), "{err}");
    }
}
