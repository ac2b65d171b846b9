//! GPUs as `nvidia-smi` reports them, and the bundled catalog's names for them: the one probe
//! and parser every provider that looks at a node (the local cloud, SSH node pools, VM clouds)
//! uses, so a GPU gets the same name whichever cloud found it, and that name is one the
//! optimizer and `sky show-gpus` know. [`probe_gpus`] runs [`PROBE_SCRIPT`] through any
//! `CommandRunner`; the parsers and [`canonical_gpu_name`] are pure.

use std::collections::BTreeMap;

use crate::{CommandRunner, RunnerError};

/// One GPU as `nvidia-smi` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuInfo {
    pub index: u32,
    /// The full name (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    pub memory_mib: Option<u64>,
}

/// What [`probe_gpus`] runs on a node: the query (`index, name, memory.total` per GPU), falling back to
/// `nvidia-smi -L` where the query fails or prints nothing; prints nothing (and exits 0) on a
/// node without `nvidia-smi`. [`parse_probe_output`] reads either.
pub const PROBE_SCRIPT: &str = "command -v nvidia-smi >/dev/null 2>&1 || exit 0; \
     q=$(nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>/dev/null); \
     if [ -n \"$q\" ]; then printf '%s\\n' \"$q\"; else nvidia-smi -L 2>/dev/null; fi; true";

/// Runs [`PROBE_SCRIPT`] on a node and returns its GPUs as canonical names and counts, the
/// most numerous first (empty without GPUs or `nvidia-smi`).
pub async fn probe_gpus(runner: &dyn CommandRunner) -> Result<Vec<(String, u32)>, RunnerError> {
    let (code, out) = runner.run_capture(PROBE_SCRIPT, &[]).await?;
    let out = String::from_utf8_lossy(&out);
    if code != 0 {
        return Err(RunnerError::Other(format!(
            "gpu probe (nvidia-smi) exited {code}: {}",
            out.trim()
        )));
    }
    Ok(count_gpus(&parse_probe_output(&out)))
}

/// Parses what [`PROBE_SCRIPT`] printed: `nvidia-smi -L` lines (`GPU 0: ...`) or query CSV.
pub fn parse_probe_output(text: &str) -> Vec<GpuInfo> {
    let listed = parse_nvidia_smi_list(text);
    if listed.is_empty() {
        parse_nvidia_smi_query(text)
    } else {
        listed
    }
}

/// Canonical names and counts of `gpus`, the most numerous first (ties by name).
pub fn count_gpus(gpus: &[GpuInfo]) -> Vec<(String, u32)> {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for g in gpus {
        *counts
            .entry(canonical_gpu_name_sized(&g.name, g.memory_mib))
            .or_default() += 1;
    }
    let mut v: Vec<(String, u32)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Parses `nvidia-smi --query-gpu=[index,]name,memory.total --format=csv,noheader[,nounits]`
/// (`0, NVIDIA H100 80GB HBM3, 81559 MiB` or `NVIDIA H100 80GB HBM3, 81559 MiB`). Extra columns
/// such as a `GPU-...` uuid are skipped: the index is a leading number (else the line's
/// position), the name the first field that is neither a number nor a uuid, the memory the
/// first number after it.
pub fn parse_nvidia_smi_query(csv: &str) -> Vec<GpuInfo> {
    let mut gpus = Vec::new();
    for line in csv.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (index, from) = match fields.first().and_then(|f| f.parse::<u32>().ok()) {
            Some(i) => (i, 1),
            None => (gpus.len() as u32, 0),
        };
        let Some(name_at) = fields
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, f)| !f.is_empty() && !f.starts_with("GPU-") && leading_number(f).is_none())
            .map(|(i, _)| i)
        else {
            continue;
        };
        // A line of an error message is not a GPU.
        if fields.len() < 2 {
            continue;
        }
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

/// Words of a GPU's name that say who made it, not which it is.
const VENDOR_WORDS: &[&str] = &["nvidia", "geforce", "tesla", "quadro"];
/// Words that say a GPU's form factor or memory kind; the catalog's names leave them out (an
/// H100 is `H100` whether SXM, PCIe or NVL).
const FORM_WORDS: &[&str] = &[
    "sxm", "sxm2", "sxm3", "sxm4", "sxm5", "sxm6", "pcie", "nvl", "hbm2", "hbm2e", "hbm3", "hbm3e",
];

/// `80GB` → 80.
fn memory_word(t: &str) -> Option<u64> {
    let lower = t.to_ascii_lowercase();
    lower.strip_suffix("gb")?.parse().ok()
}

/// The bundled catalog's accelerator name for an `nvidia-smi` name: `NVIDIA H100 80GB HBM3` →
/// `H100`, `NVIDIA A100-SXM4-80GB` → `A100-80GB`, `Tesla T4` → `T4`, `NVIDIA GeForce RTX 4090`
/// → `RTX4090`. The memory in the name (if any) picks a memory-sized variant; see
/// [`canonical_gpu_name_sized`] to pass the memory `nvidia-smi` reported.
pub fn canonical_gpu_name(full: &str) -> String {
    canonical_gpu_name_sized(full, None)
}

/// [`canonical_gpu_name`] with the GPU's memory: vendor words (NVIDIA, GeForce, Tesla, Quadro)
/// and form-factor words are dropped, the longest run of leading words that (joined) is a
/// catalog name, matched case-insensitively, is the base (`RTX 6000 Ada Generation` →
/// `RTX6000Ada`), and among the base and its catalog variants `<base>-<N>GB` the one whose memory
/// is nearest the GPU's wins (an A100 with 80 GB is `A100-80GB`, with 40 GB `A100`). A GPU the
/// catalog does not know keeps its words joined by `-` (letters, digits, `-` and `.` only).
pub fn canonical_gpu_name_sized(full: &str, memory_mib: Option<u64>) -> String {
    let words: Vec<&str> = full
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
        .filter(|w| !VENDOR_WORDS.contains(&w.to_ascii_lowercase().as_str()))
        .collect();
    let name_memory_gb = words.iter().find_map(|w| memory_word(w));
    let core: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| {
            memory_word(w).is_none() && !FORM_WORDS.contains(&w.to_ascii_lowercase().as_str())
        })
        .collect();
    let catalog = sky_catalog::Catalog::bundled();
    let base = (1..=core.len())
        .rev()
        .find_map(|n| catalog.canonical_accelerator(&core[..n].concat()));
    let Some(base) = base else {
        return sanitised(&words);
    };
    let memory_gb = memory_mib
        .map(|m| m as f64 / 1024.0)
        .or(name_memory_gb.map(|g| g as f64));
    let Some(memory_gb) = memory_gb else {
        return base.to_owned();
    };
    // The base and its `<base>-<N>GB` variants, with the memory each stands for.
    let prefix = format!("{}-", base.to_ascii_lowercase());
    let mut candidates: Vec<(f64, &str)> = Vec::new();
    if let Some(m) = catalog.accelerator_memory_gb(base) {
        candidates.push((m, base));
    }
    for name in catalog.accelerator_names() {
        let lower = name.to_ascii_lowercase();
        if let Some(gb) = lower.strip_prefix(&prefix).and_then(memory_word) {
            candidates.push((gb as f64, name));
        }
    }
    candidates
        .into_iter()
        .min_by(|a, b| (a.0 - memory_gb).abs().total_cmp(&(b.0 - memory_gb).abs()))
        .map(|(_, n)| n.to_owned())
        .unwrap_or_else(|| base.to_owned())
}

fn sanitised(words: &[&str]) -> String {
    let s: String = words
        .join("-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    if s.is_empty() { "GPU".to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nvidia-smi` printed on a real one-GPU H100 machine (captured fixtures).
    const H100_QUERY: &str = include_str!("../tests/fixtures/nvidia-smi-h100/query-gpu.csv");
    const H100_LIST: &str = include_str!("../tests/fixtures/nvidia-smi-h100/nvidia-smi-L.txt");

    #[test]
    fn captured_h100_outputs() {
        let q = parse_nvidia_smi_query(H100_QUERY);
        assert_eq!(
            q,
            vec![GpuInfo {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_mib: Some(81559)
            }]
        );
        assert_eq!(count_gpus(&q), vec![("H100".to_string(), 1)]);
        let l = parse_probe_output(H100_LIST);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(count_gpus(&l), vec![("H100".to_string(), 1)]);
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
        // The probe's own format: name and memory, no index.
        let g = parse_probe_output(
            "NVIDIA A100-SXM4-40GB, 40960 MiB\nNVIDIA A100-SXM4-40GB, 40960 MiB\n",
        );
        assert_eq!(g.iter().map(|g| g.index).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(count_gpus(&g), vec![("A100".to_string(), 2)]);
        assert!(parse_probe_output("").is_empty());
    }

    #[test]
    fn canonical_names_are_the_catalogs() {
        // (nvidia-smi name, memory MiB, catalog name)
        let table: &[(&str, Option<u64>, &str)] = &[
            ("NVIDIA H100 80GB HBM3", Some(81559), "H100"),
            ("NVIDIA H100 NVL", Some(95830), "H100"),
            ("NVIDIA H100 PCIe", Some(81559), "H100"),
            ("NVIDIA H100 SXM5 80GB", None, "H100"),
            ("NVIDIA A100-SXM4-80GB", Some(81920), "A100-80GB"),
            ("NVIDIA A100 80GB PCIe", None, "A100-80GB"),
            ("NVIDIA A100-SXM4-40GB", Some(40960), "A100"),
            ("NVIDIA A100-PCIE-40GB", None, "A100"),
            ("Tesla V100-SXM2-32GB", Some(32768), "V100-32GB"),
            ("Tesla V100-SXM2-16GB", Some(16384), "V100"),
            ("Tesla T4", Some(15360), "T4"),
            ("NVIDIA L40S", Some(46068), "L40S"),
            ("NVIDIA L4", Some(23034), "L4"),
            ("NVIDIA A10G", Some(23028), "A10G"),
            ("NVIDIA GeForce RTX 4090", Some(24564), "RTX4090"),
            ("NVIDIA GeForce RTX 3090", None, "RTX3090"),
            ("NVIDIA RTX A6000", Some(49140), "RTXA6000"),
            ("NVIDIA RTX 6000 Ada Generation", Some(49140), "RTX6000Ada"),
            ("Quadro RTX 6000", Some(24576), "RTX6000"),
            ("NVIDIA GH200 480GB", Some(97871), "GH200"),
            ("NVIDIA H200", Some(143771), "H200"),
            ("NVIDIA B200", None, "B200"),
            ("nvidia tesla k80", None, "K80"),
            // Unknown to the catalog: a sanitised name.
            (
                "NVIDIA Frobnicator X1 (rev b)",
                None,
                "Frobnicator-X1-rev-b",
            ),
            ("", None, "GPU"),
        ];
        for (smi, mem, want) in table {
            assert_eq!(
                canonical_gpu_name_sized(smi, *mem),
                *want,
                "{smi:?} with {mem:?} MiB"
            );
        }
        assert_eq!(canonical_gpu_name("NVIDIA GeForce RTX 4090"), "RTX4090");
        assert_eq!(canonical_gpu_name("NVIDIA A100-SXM4-80GB"), "A100-80GB");
    }

    #[test]
    fn every_canonical_name_is_in_the_catalog_or_sanitised() {
        let names = sky_catalog::Catalog::bundled().accelerator_names();
        for smi in [
            "NVIDIA H100 80GB HBM3",
            "Tesla T4",
            "NVIDIA GeForce RTX 4090",
        ] {
            let n = canonical_gpu_name(smi);
            assert!(names.contains(&n.as_str()), "{n}");
        }
    }

    #[test]
    fn probe_runs_the_script_through_the_runner() {
        use crate::OutputSink;
        use std::sync::Mutex;

        #[derive(Debug)]
        struct Smi(Mutex<Vec<String>>, &'static str);
        #[async_trait::async_trait]
        impl CommandRunner for Smi {
            async fn run(
                &self,
                script: &str,
                _env: &[(String, String)],
                sink: &mut OutputSink<'_>,
            ) -> Result<i32, RunnerError> {
                self.0.lock().unwrap().push(script.to_owned());
                sink(self.1.as_bytes());
                Ok(0)
            }
            async fn upload(&self, _: &std::path::Path, _: &str) -> Result<(), RunnerError> {
                Ok(())
            }
            async fn spawn_detached(
                &self,
                _: &[String],
                _: &[(String, String)],
                _: &str,
            ) -> Result<u32, RunnerError> {
                Ok(1)
            }
            async fn forward_port(&self, _: u16) -> Result<std::net::SocketAddr, RunnerError> {
                Err(RunnerError::Other("no forwards".into()))
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = Smi(
            Mutex::new(Vec::new()),
            "NVIDIA GeForce RTX 4090, 24564 MiB\nNVIDIA GeForce RTX 4090, 24564 MiB\nTesla T4, 15360 MiB\n",
        );
        let got = rt.block_on(probe_gpus(&r)).unwrap();
        assert_eq!(got, vec![("RTX4090".into(), 2), ("T4".into(), 1)]);
        assert_eq!(r.0.lock().unwrap().as_slice(), &[PROBE_SCRIPT.to_string()]);
        // The script itself: a node without nvidia-smi prints nothing and succeeds.
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", PROBE_SCRIPT])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    }
}
