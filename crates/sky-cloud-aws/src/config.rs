//! The `aws:` section of `~/.sky/config.yaml` (as JSON, passed in by the CLI) and the options an
//! embedder or test sets in code (endpoint, static credentials, how SSH reaches the nodes).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `aws:` keys sky-rs interprets; SkyPilot's other keys are accepted and ignored.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct AwsConfig {
    /// Nodes get no public IP and are reached at their private IPs (SkyPilot's
    /// `aws.use_internal_ips`). The provider then never returns a public address.
    pub use_internal_ips: bool,
    /// Launch into the VPC whose `Name` tag is this (default: the region's default VPC).
    pub vpc_name: Option<String>,
    /// The login user of the image (default `ubuntu`).
    pub ssh_user: Option<String>,
    /// An image for every region when the task names none (default: the newest Canonical
    /// Ubuntu 22.04 image found by DescribeImages).
    pub image_id: Option<String>,
    /// The AWS profile to use (default: `AWS_PROFILE` or `default`).
    pub profile: Option<String>,
    /// Also take credentials from the EC2 instance metadata service (when sky-rs itself runs
    /// on EC2). Off by default, so nothing contacts 169.254.169.254 unasked.
    pub instance_metadata_credentials: bool,
}

impl AwsConfig {
    /// Parses the `aws:` section (`null` = defaults).
    pub fn from_json(v: &serde_json::Value) -> Result<AwsConfig, String> {
        if v.is_null() {
            return Ok(AwsConfig::default());
        }
        serde_json::from_value(v.clone()).map_err(|e| format!("aws: {e}"))
    }

    pub fn ssh_user(&self) -> &str {
        self.ssh_user.as_deref().unwrap_or("ubuntu")
    }
}

/// Options set in code rather than in `config.yaml`.
#[derive(Clone, Default)]
pub struct AwsOptions {
    /// The EC2 endpoint (`AWS_ENDPOINT_URL`, e.g. a moto server). When set, the provider treats
    /// the cloud as an emulator whose addresses are invented (see [`EMULATOR_REACHABLE`]).
    pub endpoint_url: Option<String>,
    /// Static credentials instead of the standard chain (tests).
    pub static_credentials: Option<(String, String)>,
    /// The SSH public key file imported as each cluster's key pair (`~/.sky-rs/keys/sky-key.pub`,
    /// created with ssh-keygen if missing when a cluster is launched).
    pub public_key_path: Option<PathBuf>,
    /// The SDK's own retries (standard mode, 3 attempts); tests that inject errors turn them off.
    pub sdk_retries: bool,
    /// How long `wait_instances` waits for every node to run.
    pub wait_timeout_secs: u64,
    /// How long termination retries deleting the security group while instances shut down.
    pub sg_delete_timeout_secs: u64,
    /// Where the nodes' host keys are kept (`UserKnownHostsFile`; `None`: ssh's default). The
    /// CLI uses `~/.sky-rs/ssh/known_hosts`.
    pub ssh_known_hosts_file: Option<PathBuf>,
    /// `StrictHostKeyChecking` for the nodes (`None`: `accept-new`, as each new instance has a
    /// new host key; tests that know the keys use `yes`).
    pub ssh_strict_host_key_checking: Option<String>,
    /// The directory of the ControlMaster sockets (`None`: `sky_ssh::default_control_dir()`).
    pub ssh_control_dir: Option<PathBuf>,
    /// SSH `ConnectTimeout` (`None`: 10 s).
    pub ssh_connect_timeout: Option<std::time::Duration>,
    /// Credential files a head node gets so its autostop can stop or terminate the cluster
    /// (SkyPilot's default remote identity, `LOCAL_CREDENTIALS`): `(local file, path relative
    /// to the node's home)`.
    pub node_files: Vec<(PathBuf, String)>,
    /// Environment for the head's `sky agent self-stop` (credentials from the environment).
    pub node_env: Vec<(String, String)>,
}

impl std::fmt::Debug for AwsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsOptions")
            .field("endpoint_url", &self.endpoint_url)
            .field("static_credentials", &self.static_credentials.is_some())
            .field("public_key_path", &self.public_key_path)
            .field("sdk_retries", &self.sdk_retries)
            .field("ssh_known_hosts_file", &self.ssh_known_hosts_file)
            .field("node_files", &self.node_files)
            .finish_non_exhaustive()
    }
}

impl AwsOptions {
    /// Production defaults: the standard credential chain, SDK retries on.
    pub fn standard() -> AwsOptions {
        AwsOptions {
            sdk_retries: true,
            wait_timeout_secs: 600,
            sg_delete_timeout_secs: 300,
            ..AwsOptions::default()
        }
    }
}

/// The only networks SSH may reach when the endpoint is an emulator: loopback and the test
/// harness's namespace subnet. moto invents public `54.x` and random private `10.x` addresses
/// that must never be contacted.
pub const EMULATOR_REACHABLE: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 200, 0, 0), 24),
];

/// Whether `addr` lies in one of `nets`.
pub fn in_networks(addr: &str, nets: &[(Ipv4Addr, u8)]) -> bool {
    let Ok(ip) = addr.parse::<Ipv4Addr>() else {
        return false;
    };
    nets.iter().any(|(net, bits)| {
        let mask = if *bits == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(*bits))
        };
        u32::from(ip) & mask == u32::from(*net) & mask
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_ignores_unknown_keys() {
        let c = AwsConfig::from_json(&serde_json::json!({
            "use_internal_ips": true, "vpc_name": "sky-vpc", "security_group_name": "x"
        }))
        .unwrap();
        assert!(c.use_internal_ips);
        assert_eq!(c.vpc_name.as_deref(), Some("sky-vpc"));
        assert_eq!(c.ssh_user(), "ubuntu");
        assert_eq!(
            AwsConfig::from_json(&serde_json::Value::Null).unwrap(),
            AwsConfig::default()
        );
        assert!(AwsConfig::from_json(&serde_json::json!({"use_internal_ips": "maybe"})).is_err());
    }

    #[test]
    fn emulator_networks() {
        assert!(in_networks("10.200.0.4", EMULATOR_REACHABLE));
        assert!(in_networks("127.0.0.1", EMULATOR_REACHABLE));
        assert!(!in_networks("10.192.57.20", EMULATOR_REACHABLE));
        assert!(!in_networks("54.214.1.2", EMULATOR_REACHABLE));
        assert!(!in_networks("10.200.1.4", EMULATOR_REACHABLE));
        assert!(!in_networks("not-an-ip", EMULATOR_REACHABLE));
    }
}
