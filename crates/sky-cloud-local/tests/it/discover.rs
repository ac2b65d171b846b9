//! `discover_clusters`: the local cloud finds its clusters from the nodes' own metadata.

use sky_provider::CloudProvider;

use crate::{provider, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_handles_run_instances_returned() {
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(tmp.path(), serde_json::Value::Null);
    // Nothing launched yet (the root does not even exist): nothing found.
    assert!(p.discover_clusters().await.unwrap().is_empty());

    let two = p
        .run_instances(&request("two", 2, "local", None))
        .await
        .unwrap();
    let one = p
        .run_instances(&request("one", 1, "local", None))
        .await
        .unwrap();
    // A stopped cluster still exists and is found.
    p.stop_instances(&one).await.unwrap();
    // Neither stray files nor directories without node metadata are clusters.
    std::fs::write(tmp.path().join("stray.txt"), "x").unwrap();
    std::fs::create_dir_all(tmp.path().join("half-made/node-0")).unwrap();

    let found = p.discover_clusters().await.unwrap();
    assert_eq!(found, vec![one.clone(), two.clone()]);
    // A second provider on the same root (a later `sky` process) finds the same handles.
    let again = provider(tmp.path(), serde_json::Value::Null);
    assert_eq!(again.discover_clusters().await.unwrap(), found);

    p.terminate_instances(&two).await.unwrap();
    assert_eq!(p.discover_clusters().await.unwrap(), vec![one.clone()]);
    p.terminate_instances(&one).await.unwrap();
    assert!(p.discover_clusters().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_spot_clusters_in_their_zone() {
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(
        tmp.path(),
        serde_json::json!({"regions": [{"name": "r", "zones": [
            {"name": "z1"},
            {"name": "z2", "preempt_after_seconds": 3600}
        ]}]}),
    );
    let mut req = request("spot", 1, "r", None);
    req.use_spot = true;
    let h = p.run_instances(&req).await.unwrap();
    assert_eq!(h.zone.as_deref(), Some("z2"));
    assert_eq!(p.discover_clusters().await.unwrap(), vec![h.clone()]);
    p.terminate_instances(&h).await.unwrap();
}
