//! SkyPilot's cloud names: the one list lives in `sky-clouds` (`sky_clouds::SKYPILOT_CLOUDS`,
//! aliases from the profiles); these are the names the task YAML accepts.

/// Every canonical cloud id SkyPilot knows, in SkyPilot's registry order.
pub const CLOUDS: &[&str] = sky_clouds::SKYPILOT_CLOUDS;

/// The canonical lower-case id of a cloud name, case-insensitive (`"AWS"` -> `"aws"`,
/// `"k8s"` -> `"kubernetes"`); `None` for an unknown name.
pub fn canonical_cloud(name: &str) -> Option<&'static str> {
    sky_clouds::canonical(name)
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
