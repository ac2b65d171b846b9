//! The SSH cloud against real sshd hosts in network namespaces (skipped loudly without root or
//! `ip netns`; an error with SKY_REQUIRE_EMULATORS=1).

mod provider;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sky_cloud_ssh::SshProvider;
use sky_provider_testkit::netns::NetnsHosts;

/// A provider over one pool `pool` of `hosts`, with its ~/.sky under `sky_dir`.
pub fn provider(hosts: &NetnsHosts, sky_dir: &Path) -> Arc<SshProvider> {
    std::fs::create_dir_all(sky_dir).unwrap();
    std::fs::write(
        sky_dir.join("ssh_node_pools.yaml"),
        hosts.pools_yaml("pool"),
    )
    .unwrap();
    let p = SshProvider::from_sky_dir(sky_dir, sky_dir.parent().unwrap())
        .expect("valid pools")
        .expect("pools file exists")
        .with_connect_timeout(Duration::from_secs(3))
        .with_control_dir(std::path::PathBuf::from(format!(
            "/tmp/sky-ssh-t{}",
            std::process::id()
        )));
    Arc::new(p)
}
