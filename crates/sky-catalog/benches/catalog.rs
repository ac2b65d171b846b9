//! Catalog load time: decoding the embedded compact catalog (what `Catalog::bundled()` does
//! once per process), versus parsing the upstream CSVs.

use criterion::{Criterion, criterion_group, criterion_main};
use sky_catalog::{BUNDLED_BYTES, Catalog, compile};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalogs/upstream");

fn load(c: &mut Criterion) {
    c.bench_function("catalog_load_compact_all_clouds", |b| {
        b.iter(|| Catalog::from_compiled(std::hint::black_box(BUNDLED_BYTES)).expect("decodes"))
    });
    let mut inputs: Vec<(String, String, Vec<u8>)> = Vec::new();
    for &cloud in sky_catalog::BUNDLED_CLOUDS.iter() {
        inputs.push((
            cloud.into(),
            "vms.csv".into(),
            std::fs::read(format!("{ROOT}/{cloud}/vms.csv")).expect("csv"),
        ));
    }
    let refs: Vec<(&str, &str, &[u8])> = inputs
        .iter()
        .map(|(c, f, b)| (c.as_str(), f.as_str(), b.as_slice()))
        .collect();
    let mut g = c.benchmark_group("csv");
    g.sample_size(10);
    g.bench_function("catalog_load_from_csv_all_clouds", |b| {
        b.iter(|| compile(std::hint::black_box(&refs)).expect("compiles"))
    });
    g.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
