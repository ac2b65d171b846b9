//! What one local node offers: this machine's vCPUs, memory and GPUs, or the simulated values
//! from the config.

use crate::config::LocalConfig;
use crate::process;

pub use sky_provider::gpu::{
    GpuInfo, canonical_gpu_name, parse_nvidia_smi_list, parse_nvidia_smi_query,
};

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
