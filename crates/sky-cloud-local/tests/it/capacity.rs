use sky_cloud_local::{
    Capacity, canonical_gpu_name, parse_nvidia_smi_list, parse_nvidia_smi_query,
};
use sky_provider::CloudProvider;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/nvidia-smi-h100"
);

#[test]
fn parses_the_h100_query_fixture() {
    let csv = std::fs::read_to_string(format!("{FIXTURES}/query-gpu.csv")).unwrap();
    let gpus = parse_nvidia_smi_query(&csv);
    assert_eq!(gpus.len(), 1);
    assert_eq!(gpus[0].index, 0);
    assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
    assert_eq!(gpus[0].memory_mib, Some(81559));
    let cap = Capacity::from_parts(16.0, 128.0, gpus);
    assert_eq!(cap.accelerator, Some(("H100".to_string(), 1.0)));
    assert_eq!(cap.accelerator_ids, vec![0]);
    assert!(!cap.simulated);
}

#[test]
fn parses_the_h100_list_fixture() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/nvidia-smi-L.txt")).unwrap();
    let gpus = parse_nvidia_smi_list(&text);
    assert_eq!(gpus.len(), 1);
    assert_eq!(canonical_gpu_name(&gpus[0].name), "H100");
}

#[test]
fn offerings_per_zone_with_simulated_accelerators() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = sky_cloud_local::LocalConfig::from_json(&serde_json::json!({
        "accelerators": {"H100": 4},
        "cpus": 8,
        "memory_gb": 32,
        "regions": [{"name": "r1", "zones": [{"name": "a", "price": 2.5}, {"name": "b", "preempt_after_seconds": 5}]}]
    }))
    .unwrap();
    let p = sky_cloud_local::LocalProvider::new(tmp.path().to_owned(), cfg, "sky".into());
    let offers = p.offerings();
    assert_eq!(offers.len(), 2);
    assert_eq!(offers[0].instance_type, "local");
    assert_eq!(
        (offers[0].region.as_str(), offers[0].zone.as_deref()),
        ("r1", Some("a"))
    );
    assert_eq!(offers[0].price, 2.5);
    assert_eq!(offers[0].spot_price, None);
    assert_eq!(offers[1].spot_price, Some(0.0));
    assert_eq!(offers[0].vcpus, 8.0);
    assert_eq!(offers[0].memory_gib, 32.0);
    assert_eq!(offers[0].accelerator, Some(("H100".into(), 4.0)));
    assert_eq!(p.capacity().accelerator_ids, vec![0, 1, 2, 3]);
    let f = p.features();
    assert!(f.stop && f.multi_node && f.open_ports && f.spot && !f.docker && !f.custom_image);
}

#[test]
fn default_offering_uses_this_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let p = sky_cloud_local::LocalProvider::new(
        tmp.path().to_owned(),
        Default::default(),
        "sky".into(),
    );
    let offers = p.offerings();
    assert_eq!(offers.len(), 1);
    assert_eq!(
        (
            offers[0].region.as_str(),
            offers[0].zone.as_deref(),
            offers[0].price
        ),
        ("local", Some("local"), 0.0)
    );
    assert!(offers[0].vcpus >= 1.0 && offers[0].memory_gib > 0.0);
    assert!(!p.features().spot);
}
