//! What one local node offers: this machine's vCPUs, memory and GPUs, or the simulated values
//! from the config.

use crate::config::LocalConfig;
use crate::process;

/// One GPU as `nvidia-smi` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuInfo {
    pub index: u32,
    /// The full name (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    pub memory_mib: Option<u64>,
}

/// Per-node capacity (every node of this machine advertises the same).
#[derive(Clone, Debug, PartialEq)]
pub struct Capacity {
    pub vcpus: f64,
    pub memory_gib: f64,
    /// Canonical accelerator name and count (simulated ones win over detected GPUs).
    pub accelerator: Option<(String, f64)>,
    /// Device ids of the accelerators (`0..n-1`), what `CUDA_VISIBLE_DEVICES` draws from.
    pub accelerator_ids: Vec<u32>,
    /// GPUs detected on this machine (empty when simulated or absent).
    pub gpus: Vec<GpuInfo>,
    /// Whether `accelerator` comes from the config rather than the hardware.
    pub simulated: bool,
}

impl Capacity {
    /// Detects this machine's capacity and applies the config's overrides.
    pub fn detect(cfg: &LocalConfig) -> Capacity {
        let vcpus = cfg.cpus.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0)
        });
        let memory_gib = cfg.memory_gb.unwrap_or_else(|| {
            std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|s| parse_meminfo_total_gib(&s))
                .unwrap_or(1.0)
        });
        if let Some((name, count)) = &cfg.accelerators {
            return Capacity {
                vcpus,
                memory_gib,
                accelerator: Some((name.clone(), *count)),
                accelerator_ids: (0..count.ceil() as u32).collect(),
                gpus: Vec::new(),
                simulated: true,
            };
        }
        let gpus = process::nvidia_smi_query()
            .map(|out| parse_nvidia_smi_query(&out))
            .unwrap_or_default();
        Self::from_parts(vcpus, memory_gib, gpus)
    }

    /// Capacity with the given detected GPUs (all of the first GPU's model are counted).
    pub fn from_parts(vcpus: f64, memory_gib: f64, gpus: Vec<GpuInfo>) -> Capacity {
        let accelerator = gpus.first().map(|g| {
            let name = canonical_gpu_name(&g.name);
            let count = gpus
                .iter()
                .filter(|o| canonical_gpu_name(&o.name) == name)
                .count();
            (name, count as f64)
        });
        let accelerator_ids = match &accelerator {
            Some((name, _)) => gpus
                .iter()
                .filter(|g| &canonical_gpu_name(&g.name) == name)
                .map(|g| g.index)
                .collect(),
            None => Vec::new(),
        };
        Capacity {
            vcpus,
            memory_gib,
            accelerator,
            accelerator_ids,
            gpus,
            simulated: false,
        }
    }
}

/// `MemTotal` from `/proc/meminfo`, in GiB (rounded to 0.1).
pub fn parse_meminfo_total_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let unit = parts.next().unwrap_or("kB");
    let kib = match unit {
        "kB" | "KiB" => value,
        "MB" | "MiB" => value * 1024.0,
        _ => value,
    };
    Some((kib / (1024.0 * 1024.0) * 10.0).round() / 10.0)
}

/// Parses `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader[,nounits]`
/// (`0, NVIDIA H100 80GB HBM3, 81559 MiB`). Extra columns such as a `GPU-...` uuid are skipped:
/// the name is the first field that is neither a number nor a uuid, the memory the first number
/// after it.
pub fn parse_nvidia_smi_query(csv: &str) -> Vec<GpuInfo> {
    let mut gpus = Vec::new();
    for line in csv.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some(index) = fields.first().and_then(|f| f.parse::<u32>().ok()) else {
            continue;
        };
        let Some(name_at) = fields
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, f)| !f.is_empty() && !f.starts_with("GPU-") && leading_number(f).is_none())
            .map(|(i, _)| i)
        else {
            continue;
        };
        let memory_mib = fields[name_at + 1..].iter().find_map(|f| leading_number(f));
        gpus.push(GpuInfo {
            index,
            name: fields[name_at].to_owned(),
            memory_mib,
        });
    }
    gpus
}

/// Parses `nvidia-smi -L` (`GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)`).
pub fn parse_nvidia_smi_list(text: &str) -> Vec<GpuInfo> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("GPU ")?;
            let (index, rest) = rest.split_once(':')?;
            let name = rest.split(" (UUID").next()?.trim();
            Some(GpuInfo {
                index: index.trim().parse().ok()?,
                name: name.to_owned(),
                memory_mib: None,
            })
        })
        .collect()
}

fn leading_number(field: &str) -> Option<u64> {
    let digits = field.split_whitespace().next()?;
    let rest = field[digits.len()..].trim();
    if !(rest.is_empty() || rest == "MiB") {
        return None;
    }
    digits.parse().ok()
}

/// SkyPilot's accelerator name for an `nvidia-smi` name: `NVIDIA H100 80GB HBM3` → `H100`,
/// `NVIDIA A100-SXM4-80GB` → `A100-80GB`, `Tesla T4` → `T4`.
pub fn canonical_gpu_name(full: &str) -> String {
    const KNOWN: &[&str] = &[
        "GH200", "H200", "H100", "B200", "B100", "A100", "A10G", "A10", "A40", "L40S", "L40", "L4",
        "T4", "V100", "P100", "P40", "P4", "K80", "A6000", "A5000", "A4000", "RTX6000", "RTX4090",
        "RTX3090",
    ];
    let name = full
        .trim()
        .trim_start_matches("NVIDIA")
        .trim()
        .trim_start_matches("Tesla")
        .trim();
    let upper = name.to_ascii_uppercase().replace("RTX ", "RTX");
    let tokens: Vec<&str> = upper.split([' ', '-']).filter(|t| !t.is_empty()).collect();
    for known in KNOWN {
        if tokens.contains(known) {
            if *known == "A100" && tokens.contains(&"80GB") {
                return "A100-80GB".to_owned();
            }
            return (*known).to_owned();
        }
    }
    tokens
        .first()
        .map(|t| (*t).to_owned())
        .unwrap_or_else(|| full.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let s = "MemTotal:       131891244 kB\nMemFree:        1 kB\n";
        assert_eq!(parse_meminfo_total_gib(s), Some(125.8));
        assert_eq!(parse_meminfo_total_gib("nothing"), None);
    }

    #[test]
    fn query_formats() {
        let g = parse_nvidia_smi_query(
            "0, NVIDIA H100 80GB HBM3, 81559 MiB\n1, NVIDIA H100 80GB HBM3, 81559 MiB\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(
            g[1],
            GpuInfo {
                index: 1,
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_mib: Some(81559)
            }
        );
        let g = parse_nvidia_smi_query("0, Tesla T4, 15360\n");
        assert_eq!(g[0].memory_mib, Some(15360));
        assert!(parse_nvidia_smi_query("No devices were found\n").is_empty());
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_gpu_name("NVIDIA H100 80GB HBM3"), "H100");
        assert_eq!(canonical_gpu_name("NVIDIA A100-SXM4-80GB"), "A100-80GB");
        assert_eq!(canonical_gpu_name("NVIDIA A100-SXM4-40GB"), "A100");
        assert_eq!(canonical_gpu_name("Tesla T4"), "T4");
        assert_eq!(canonical_gpu_name("NVIDIA L40S"), "L40S");
        assert_eq!(canonical_gpu_name("NVIDIA GeForce RTX 4090"), "RTX4090");
    }

    #[test]
    fn simulated_accelerators_override() {
        let cfg = LocalConfig {
            accelerators: Some(("H100".into(), 4.0)),
            cpus: Some(3.0),
            ..LocalConfig::default()
        };
        let c = Capacity::detect(&cfg);
        assert_eq!(c.accelerator, Some(("H100".into(), 4.0)));
        assert_eq!(c.accelerator_ids, vec![0, 1, 2, 3]);
        assert_eq!(c.vcpus, 3.0);
        assert!(c.simulated && c.memory_gib > 0.0);
    }
}
