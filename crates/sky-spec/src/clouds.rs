//! SkyPilot's cloud names.

/// Every canonical cloud id SkyPilot knows, in SkyPilot's registry order.
pub const CLOUDS: &[&str] = &[
    "aws",
    "azure",
    "gcp",
    "ibm",
    "lambda",
    "scp",
    "oci",
    "kubernetes",
    "runpod",
    "vast",
    "vsphere",
    "cudo",
    "fluidstack",
    "paperspace",
    "primeintellect",
    "do",
    "nebius",
    "ssh",
    "hyperbolic",
    "seeweb",
    "shadeform",
    "slurm",
    "local",
];

/// The canonical lower-case id of a cloud name, case-insensitive (`"AWS"` -> `"aws"`,
/// `"k8s"` -> `"kubernetes"`); `None` for an unknown name.
pub fn canonical_cloud(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_ascii_lowercase();
    if lower == "k8s" {
        return Some("kubernetes");
    }
    CLOUDS.iter().copied().find(|c| *c == lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        assert_eq!(canonical_cloud("AWS"), Some("aws"));
        assert_eq!(canonical_cloud("k8s"), Some("kubernetes"));
        assert_eq!(canonical_cloud("Kubernetes"), Some("kubernetes"));
        assert_eq!(canonical_cloud("Lambda"), Some("lambda"));
        assert_eq!(canonical_cloud("foo"), None);
    }
}
