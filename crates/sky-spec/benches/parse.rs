//! YAML parse + validate of every example task (the files `sky validate` sees most).

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

fn examples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut v = Vec::new();
    for sub in ["", "exec", "pipelines", "serve"] {
        let d = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                v.push((
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap_or_default(),
                ));
            }
        }
    }
    v.sort();
    v
}

fn bench(c: &mut Criterion) {
    let files = examples();
    let opts = sky_spec::ParseOptions::default();
    let full = files
        .iter()
        .find(|(p, _)| p.ends_with("full_reference.yaml"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    c.bench_function("parse full_reference.yaml", |b| {
        b.iter(|| sky_spec::parse_task_file(std::hint::black_box(&full), &opts))
    });
    c.bench_function(&format!("parse all {} examples", files.len()), |b| {
        b.iter(|| {
            for (_, text) in &files {
                let _ = sky_spec::parse_task_file(std::hint::black_box(text), &opts);
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
