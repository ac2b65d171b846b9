use serde_json::json;
use sky_provider::{CloudProvider, FailoverAction, FailureScope, ProvisionErrorKind};

use crate::{leftovers, provider, request};

fn topology() -> serde_json::Value {
    json!({"regions": [
        {"name": "r1", "zones": [{"name": "z1", "fail": "capacity"}, {"name": "z2", "fail": "capacity", "price": 1}]},
        {"name": "r2", "zones": [{"name": "z3", "fail": "quota"}]},
        {"name": "r3", "zones": [{"name": "z4", "fail": "auth"}]},
        {"name": "r4", "zones": [{"name": "z5", "price": 3}]}
    ]})
}

#[tokio::test]
async fn simulated_failures_have_kind_and_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(tmp.path(), topology());

    let e = p
        .run_instances(&request("f", 2, "r1", Some("z1")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.scope),
        (ProvisionErrorKind::Capacity, FailureScope::Zone)
    );
    assert!(
        e.message.contains("z1") && e.message.contains("local.regions[0].zones[0].fail"),
        "{e}"
    );
    assert_eq!(e.action(), FailoverAction::MoveOn(FailureScope::Zone));

    // Zone left to the provider: every zone of the region is tried, then the region fails.
    let e = p
        .run_instances(&request("f", 2, "r1", None))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.scope),
        (ProvisionErrorKind::Capacity, FailureScope::Region)
    );
    assert!(e.message.contains("z1") && e.message.contains("z2"), "{e}");

    let e = p
        .run_instances(&request("f", 2, "r2", Some("z3")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.scope),
        (ProvisionErrorKind::Quota, FailureScope::Region)
    );

    let e = p
        .run_instances(&request("f", 2, "r3", Some("z4")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.scope),
        (ProvisionErrorKind::Auth, FailureScope::Cloud)
    );
    assert_eq!(e.action(), FailoverAction::Stop);
    assert!(
        e.fix
            .as_deref()
            .unwrap()
            .contains("local.regions[2].zones[0].fail"),
        "{e:?}"
    );

    let e = p
        .run_instances(&request("f", 2, "nowhere", None))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::InvalidConfig);
    let e = p
        .run_instances(&request("f", 2, "r4", Some("z9")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::InvalidConfig);
    let mut bad = request("f", 1, "r4", None);
    bad.instance_type = "m5.large".into();
    assert_eq!(
        p.run_instances(&bad).await.unwrap_err().kind,
        ProvisionErrorKind::NotSupported
    );
    let mut bad = request("f", 1, "r4", None);
    bad.cluster_name_on_cloud = "../escape".into();
    assert_eq!(
        p.run_instances(&bad).await.unwrap_err().kind,
        ProvisionErrorKind::InvalidConfig
    );
    let mut gpu = request("f", 1, "r4", None);
    gpu.resources.accelerators = Some(sky_spec::model::AcceleratorRequest {
        name: "H100".into(),
        count: 1.0,
    });
    assert_eq!(
        p.run_instances(&gpu).await.unwrap_err().kind,
        ProvisionErrorKind::NotSupported
    );

    // Nothing was left behind by any failure.
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());

    // The working zone works.
    let h = p.run_instances(&request("f", 2, "r4", None)).await.unwrap();
    assert_eq!((h.region.as_str(), h.zone.as_deref()), ("r4", Some("z5")));
    p.terminate_instances(&h).await.unwrap();
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_launch_failing_partway_removes_what_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(tmp.path(), serde_json::Value::Null);
    let req = request("partial", 3, "local", None);
    // A file where node 1's directory must go makes creation fail after node 0 exists.
    std::fs::create_dir_all(tmp.path().join(&req.cluster_name_on_cloud)).unwrap();
    std::fs::write(
        tmp.path().join(&req.cluster_name_on_cloud).join("node-1"),
        b"in the way",
    )
    .unwrap();
    let e = p.run_instances(&req).await.unwrap_err();
    assert_eq!(e.kind, ProvisionErrorKind::Other, "{e}");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[test]
fn bad_config_names_the_key() {
    let e = sky_cloud_local::LocalProvider::from_config_value(
        "/nonexistent".into(),
        &json!({"regions": [{"name": "r", "zones": [{"name": "a"}, {"name": "b", "fail": "sometimes"}]}]}),
        "sky".into(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("local.regions[0].zones[1].fail"),
        "{e}"
    );
}
