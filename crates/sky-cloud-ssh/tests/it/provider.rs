//! The SSH provider: conformance, a cut link, leases.

use std::sync::Arc;
use std::time::Duration;

use sky_provider::{CloudProvider, ProvisionErrorKind, ProvisionRequest};
use sky_provider_testkit::netns::NetnsHosts;
use sky_provider_testkit::{CheckOutcome, ConformanceConfig, LeftoverProbe, run_conformance};
use sky_spec::model::Resources;

use crate::provider;

fn req(name: &str, n: u32) -> ProvisionRequest {
    ProvisionRequest {
        cluster_name: name.into(),
        cluster_name_on_cloud: format!("{name}-1234"),
        region: "ssh-pool".into(),
        zone: None,
        num_nodes: n,
        instance_type: "ssh-node".into(),
        use_spot: false,
        resources: Resources::default(),
        ports: Vec::new(),
    }
}

#[tokio::test]
async fn ssh_passes_the_conformance_suite() {
    let Some(hosts) = NetnsHosts::up(3) else {
        return;
    };
    let hosts = Arc::new(hosts);
    let tmp = tempfile::tempdir().unwrap();
    let sky_dir = tmp.path().join(".sky");
    let p = provider(&hosts, &sky_dir);
    let h2 = hosts.clone();
    let leases = sky_dir.join("ssh/leases/pool");
    let probe: LeftoverProbe = Arc::new(move || {
        let h2 = h2.clone();
        let leases = leases.clone();
        Box::pin(async move {
            let mut left = h2.leftovers();
            left.extend(
                std::fs::read_dir(&leases)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| format!("lease {}", e.file_name().to_string_lossy())),
            );
            left
        })
    });
    let cfg = ConformanceConfig::new("ssh-pool", "ssh-node")
        .num_nodes(2)
        .leftovers(probe);
    let report = run_conformance(p, cfg).await;
    eprintln!("{report}");
    // Every check runs (network and forward_port fail, not skip, when they cannot); only
    // stop_start is not applicable: the hosts are not ours to stop.
    report.assert_complete();
    assert!(
        matches!(
            report.outcome("stop_start"),
            Some(CheckOutcome::NotApplicable(_))
        ),
        "{report}"
    );
}

#[tokio::test]
async fn a_cut_link_fails_naming_the_host_and_leaks_nothing() {
    let Some(hosts) = NetnsHosts::up(3) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sky_dir = tmp.path().join(".sky");
    let p = provider(&hosts, &sky_dir);
    hosts.set_link(1, false);
    let e = p.run_instances(&req("cut", 3)).await.unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::Capacity, "{e:?}");
    assert!(e.message.contains(&hosts.hosts[1].ip), "{}", e.message);
    assert!(!e.message.contains(&hosts.hosts[0].ip), "{}", e.message);
    // ssh itself gave up connecting (its ConnectTimeout, or no route), rather than the probe
    // hanging until the provider's outer limit ("timed out").
    assert!(
        e.message.contains("is unreachable: ssh: connect to host"),
        "{}",
        e.message
    );
    assert!(hosts.leftovers().is_empty(), "{:?}", hosts.leftovers());
    assert_eq!(
        std::fs::read_dir(sky_dir.join("ssh/leases/pool"))
            .unwrap()
            .count(),
        0
    );
    // Healed: the same launch works and takes every host; a second cluster finds none free.
    hosts.set_link(1, true);
    // The neighbour entry of the cut host needs a moment to recover.
    let mut tries = 0;
    let h = loop {
        match p.run_instances(&req("cut", 3)).await {
            Ok(h) => break h,
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("after healing: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    let nodes = p.query_instances(&h).await.unwrap();
    let ips: Vec<_> = nodes.iter().map(|n| n.internal_ip.clone()).collect();
    let want: Vec<_> = hosts.hosts.iter().map(|h| h.ip.clone()).collect();
    assert_eq!(ips, want);
    let e = p.run_instances(&req("other", 1)).await.unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::Capacity);
    p.terminate_instances(&h).await.unwrap();
    assert!(p.query_instances(&h).await.unwrap().is_empty());
    // Capacity was detected and cached for offerings.
    let o = p.offerings();
    assert_eq!(o.len(), 1);
    assert!(o[0].vcpus >= 1.0 && o[0].memory_gib > 0.0, "{o:?}");
}
