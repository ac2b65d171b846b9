use sky_catalog::{AcceleratorQuery, Catalog, compile};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalogs");

fn upstream_inputs() -> Vec<(String, String, Vec<u8>)> {
    let mut v = Vec::new();
    for cloud in ["aws", "azure", "gcp", "lambda", "runpod", "vast"] {
        let bytes =
            std::fs::read(format!("{ROOT}/upstream/{cloud}/vms.csv")).expect("upstream csv");
        v.push((cloud.to_owned(), "vms.csv".to_owned(), bytes));
    }
    for file in ["accelerators.csv", "metadata.csv"] {
        let bytes = std::fs::read(format!("{ROOT}/upstream/common/{file}")).expect("common csv");
        v.push(("common".to_owned(), file.to_owned(), bytes));
    }
    v
}

/// The committed compact file is exactly `compile(upstream CSVs)`.
/// Regenerate with `cargo xtask catalog` (or `SKY_BLESS=1 cargo test -p sky-catalog --test it`).
#[test]
fn committed_compact_catalog_matches_upstream() {
    let inputs = upstream_inputs();
    let refs: Vec<(&str, &str, &[u8])> = inputs
        .iter()
        .map(|(c, f, b)| (c.as_str(), f.as_str(), b.as_slice()))
        .collect();
    let compiled = compile(&refs).expect("upstream compiles");
    let committed = std::fs::read(format!("{ROOT}/catalog.bin")).unwrap_or_default();
    if compiled != committed {
        if std::env::var_os("SKY_BLESS").is_some() {
            std::fs::write(format!("{ROOT}/catalog.bin"), &compiled).expect("write catalog.bin");
            return;
        }
        panic!("catalogs/catalog.bin is stale: run `cargo xtask catalog`");
    }
    // Order of inputs does not matter.
    let mut rev = refs.clone();
    rev.reverse();
    assert_eq!(compile(&rev).expect("compiles"), compiled);
}

#[test]
fn bundled_has_every_row() {
    let c = Catalog::bundled();
    assert_eq!(c.row_count("aws"), 3615 - c_dups());
    assert_eq!(c.row_count("gcp"), 31285);
    assert_eq!(c.row_count("vast"), 64);
}

/// AWS rows dropped by SkyPilot's per-(type, region, zone) de-duplication.
fn c_dups() -> usize {
    let text = std::fs::read_to_string(format!("{ROOT}/upstream/aws/vms.csv")).expect("aws");
    let mut seen = std::collections::HashSet::new();
    let mut dups = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let key = (
            f[0].to_owned(),
            f[f.len() - 3].to_owned(),
            f[f.len() - 2].to_owned(),
        );
        if !seen.insert(key) {
            dups += 1;
        }
    }
    dups
}

#[test]
fn queries_by_region_zone_and_instance() {
    let c = Catalog::bundled();
    assert!(c.regions("aws").contains(&"us-east-1"));
    assert!(c.zones("gcp", "us-central1").contains(&"us-central1-a"));
    assert!(c.zones("azure", "eastus").is_empty());
    assert_eq!(c.vcpus_mem("aws", "p3.8xlarge"), (Some(32.0), Some(244.0)));
    assert_eq!(
        c.instance_accelerator("aws", "p3.8xlarge"),
        Some(("V100".to_owned(), 4.0))
    );
    assert_eq!(c.vcpus_mem("gcp", "TPU-VM"), (None, None));
    assert!(c.instance_type_exists("gcp", "TPU-VM"));
    assert_eq!(
        c.clouds_with_instance_type("Standard_NC6s_v3"),
        vec!["azure"]
    );
}

#[test]
fn show_gpus_listing() {
    let c = Catalog::bundled();
    let v = c.list_accelerators(&AcceleratorQuery {
        name: Some("a100".into()),
        ..Default::default()
    });
    for cloud in ["aws", "azure", "gcp", "lambda"] {
        assert!(v.iter().any(|o| o.cloud == cloud), "{cloud} missing");
    }
    let all = c.list_accelerators(&AcceleratorQuery {
        name: Some("H100".into()),
        all_regions: true,
        ..Default::default()
    });
    assert!(all.len() > v.iter().filter(|o| o.accelerator.contains("H100")).count());
}
