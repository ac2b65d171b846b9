//! GPUs as `nvidia-smi` reports them, and SkyPilot's names for them: the one parser every
//! provider that probes a node (the local cloud, SSH node pools, VM clouds) uses, so a GPU gets
//! the same name whichever cloud found it. Pure: callers run `nvidia-smi` and pass its output.

/// One GPU as `nvidia-smi` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuInfo {
    pub index: u32,
    /// The full name (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    pub memory_mib: Option<u64>,
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
    fn geforce_and_workstation_names() {
        // The SSH pools' parser once turned this into `RTX`; one parser now names it.
        assert_eq!(canonical_gpu_name("NVIDIA GeForce RTX 4090"), "RTX4090");
        assert_eq!(canonical_gpu_name("NVIDIA GeForce RTX 3090"), "RTX3090");
        assert_eq!(canonical_gpu_name("NVIDIA A100 80GB PCIe"), "A100-80GB");
        assert_eq!(canonical_gpu_name("NVIDIA A10G"), "A10G");
    }
}
