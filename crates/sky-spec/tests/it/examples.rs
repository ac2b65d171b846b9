//! Every shared example parses; every invalid example is refused naming its field.

use std::path::{Path, PathBuf};

use sky_spec::{
    FileMount, ParseOptions, ResourceChoice, StorageMode, TaskFile, parse_task_file, to_yaml,
    to_yaml_redacted, validate_service_for_serve,
};

use crate::{EXAMPLES, parse};

fn yamls(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn task(file: &TaskFile) -> &sky_spec::Task {
    match file {
        TaskFile::Task(t) => t,
        TaskFile::Pipeline(p) => &p.tasks[0],
    }
}

#[test]
fn every_valid_example_parses_and_round_trips() {
    let root = Path::new(EXAMPLES);
    let mut files = yamls(root);
    for sub in ["exec", "pipelines", "serve"] {
        files.extend(yamls(&root.join(sub)));
    }
    assert!(
        files.len() >= 25,
        "expected the shared examples, found {}",
        files.len()
    );
    for f in files {
        if f.file_name().is_some_and(|n| n == "envs_required.yaml") {
            continue;
        }
        let text = read(&f);
        let parsed = parse(&text).unwrap_or_else(|d| panic!("{} should parse:\n{d}", f.display()));
        let dumped = to_yaml(&parsed);
        let again = parse(&dumped)
            .unwrap_or_else(|d| panic!("{} dump should parse:\n{d}\n{dumped}", f.display()));
        assert_eq!(parsed, again, "{} round trip\n{dumped}", f.display());
    }
}

#[test]
fn required_envs_need_overrides() {
    let text = read(&Path::new(EXAMPLES).join("envs_required.yaml"));
    let err = parse(&text).expect_err("null env and secret must be refused");
    let paths: Vec<&str> = err.0.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["$.envs.HF_TOKEN", "$.secrets.WANDB_API_KEY"],
        "{err}"
    );
    assert!(err.0[0].message.contains("--env HF_TOKEN="), "{err}");

    let mut opts = ParseOptions::default();
    opts.env_overrides
        .insert("HF_TOKEN".into(), "hf_abc".into());
    opts.secret_overrides
        .insert("WANDB_API_KEY".into(), "wandb-secret".into());
    let file = parse_task_file(&text, &opts).unwrap_or_else(|d| panic!("with overrides:\n{d}"));
    let t = task(&file);
    assert_eq!(t.envs.get("HF_TOKEN").map(String::as_str), Some("hf_abc"));
    assert_eq!(t.envs.get("MODEL").map(String::as_str), Some("llama"));
    assert_eq!(
        t.secrets.get("WANDB_API_KEY").map(String::as_str),
        Some("wandb-secret")
    );
    let redacted = to_yaml_redacted(&file);
    assert!(
        !redacted.contains("wandb-secret") && redacted.contains("<redacted>"),
        "{redacted}"
    );
    assert!(to_yaml(&file).contains("wandb-secret"));
}

#[test]
fn invalid_examples_are_refused_naming_the_field() {
    let dir = Path::new(EXAMPLES).join("invalid");
    let expected: &[(&str, &str)] = &[
        ("accel_bad_format.yaml", "$.resources.accelerators"),
        ("cpus_not_number.yaml", "$.resources.cpus"),
        ("disk_tier_bad.yaml", "$.resources.disk_tier"),
        ("env_bad_key.yaml", "$.envs[\"1BAD\"]"),
        ("gpus_and_accelerators.yaml", "$.resources.gpus"),
        ("infra_and_cloud.yaml", "$.resources.infra"),
        ("job_recovery_bad.yaml", "$.resources.job_recovery.strategy"),
        ("memory_negative.yaml", "$.resources.memory"),
        ("name_with_env_var.yaml", "$.name"),
        ("num_nodes_float.yaml", "$.num_nodes"),
        ("num_nodes_zero.yaml", "$.num_nodes"),
        ("port_out_of_range.yaml", "$.resources.ports"),
        ("port_range_reversed.yaml", "$.resources.ports"),
        ("storage_mode_bad.yaml", "$.file_mounts[\"/data\"].mode"),
        ("unknown_resources_field.yaml", "$.resources.accelerator"),
        ("unknown_top_field.yaml", "$.resoruces"),
        ("yaml_syntax.yaml", "$"),
    ];
    let files = yamls(&dir);
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let text = read(f);
        if name == "accel_unknown.yaml" || name == "zone_region_mismatch.yaml" {
            assert!(
                parse(&text).is_ok(),
                "{name}: only the catalog can refuse it"
            );
            continue;
        }
        let Some((_, path)) = expected.iter().find(|(n, _)| *n == name) else {
            panic!("no expectation for invalid example {name}");
        };
        let err = parse(&text).expect_err(name);
        assert_eq!(
            err.0.len(),
            1,
            "{name}: exactly one problem expected:\n{err}"
        );
        assert_eq!(err.0[0].path, *path, "{name}:\n{err}");
        assert!(!err.0[0].message.is_empty());
        if name == "yaml_syntax.yaml" {
            assert!(err.0[0].line_col.is_some_and(|(l, _)| l == 3), "{err:?}");
        }
        if name == "unknown_top_field.yaml" {
            assert!(
                err.0[0].message.contains("did you mean `resources`?"),
                "{err}"
            );
        }
        if name == "unknown_resources_field.yaml" {
            assert!(
                err.0[0].message.contains("did you mean `accelerators`?"),
                "{err}"
            );
        }
    }
    assert_eq!(files.len(), expected.len() + 2);
}

#[test]
fn all_problems_are_reported_together() {
    let text = "name: -bad\nnum_nodes: 0\nresources:\n  cpus: many\n  memory: -1\n  ports: 70000\nrunn: x\n";
    let err = parse(text).expect_err("bad");
    let paths: Vec<&str> = err.0.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "$.runn",
            "$.name",
            "$.num_nodes",
            "$.resources.cpus",
            "$.resources.memory",
            "$.resources.ports"
        ],
        "{err}"
    );
}

#[test]
fn substitution_only_in_mounts_workdir_service() {
    let text = "envs:\n  B: bucket\n  P: /health\nname: t\nworkdir: ~/${B}\nrun: echo ${B}\nfile_mounts:\n  /d/$B: s3://${B}/x\n  /m:\n    name: ${B}\n    mode: mount_cached\nservice:\n  readiness_probe: ${P}\n  replicas: 1\n";
    let file = parse(text).unwrap_or_else(|d| panic!("{d}"));
    let t = task(&file);
    assert_eq!(t.run.as_deref(), Some("echo ${B}"));
    assert_eq!(t.workdir, Some(sky_spec::Workdir::Path("~/bucket".into())));
    assert_eq!(
        t.file_mounts.get("/d/bucket"),
        Some(&FileMount::Source("s3://bucket/x".into()))
    );
    match t.file_mounts.get("/m") {
        Some(FileMount::Storage(s)) => {
            assert_eq!(s.name.as_deref(), Some("bucket"));
            assert_eq!(s.mode, StorageMode::MountCached);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.service
            .as_ref()
            .and_then(|s| s.readiness_probe.as_ref())
            .map(|p| p.path.as_str()),
        Some("/health")
    );
    // Overrides are merged before substitution.
    let mut opts = ParseOptions::default();
    opts.env_overrides.insert("B".into(), "other".into());
    let file = parse_task_file(text, &opts).unwrap_or_else(|d| panic!("{d}"));
    assert!(task(&file).file_mounts.contains_key("/d/other"));
}

#[test]
fn pipelines_and_multi_docs() {
    let text = read(&Path::new(EXAMPLES).join("pipelines/pipeline.yaml"));
    match parse(&text) {
        Ok(TaskFile::Pipeline(p)) => {
            assert_eq!(p.name.as_deref(), Some("pipeline"));
            assert_eq!(p.tasks.len(), 2);
            assert!(matches!(p.tasks[0].resources, ResourceChoice::AnyOf(ref v) if v.len() == 2));
        }
        other => panic!("{other:?}"),
    }
    let no_header = "name: a\nrun: x\n---\nname: b\nrun: y\n";
    assert!(
        matches!(parse(no_header), Ok(TaskFile::Pipeline(ref p)) if p.name.is_none() && p.tasks.len() == 2)
    );
    let bad = "name: p\n---\nrun: x\n---\nresources:\n  cpus: zero\n";
    let err = parse(bad).expect_err("bad doc 2");
    assert_eq!(err.0[0].path, "$[2].resources.cpus");
}

#[test]
fn serve_needs_a_readiness_probe() {
    let text = read(&Path::new(EXAMPLES).join("serve/refused_no_readiness_probe.yaml"));
    let file = parse(&text).unwrap_or_else(|d| panic!("{d}"));
    let d = validate_service_for_serve(task(&file));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].path, "$.service.readiness_probe");
    let ok =
        parse(&read(&Path::new(EXAMPLES).join("service.yaml"))).unwrap_or_else(|d| panic!("{d}"));
    assert!(validate_service_for_serve(task(&ok)).is_empty());
}

#[test]
fn env_values_are_stringified_as_written() {
    let file = parse("envs:\n  LR: 1e-4\n  BS: 32\n  F: true\n  E: ''\n")
        .unwrap_or_else(|d| panic!("{d}"));
    let t = task(&file);
    let got: Vec<(&str, &str)> = t
        .envs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![("LR", "1e-4"), ("BS", "32"), ("F", "True"), ("E", "")]
    );
}

#[test]
fn deep_nesting_does_not_crash() {
    for depth in [100usize, 250, 256, 2_000, 20_000] {
        let flow = format!("config: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        eprintln!("flow {depth}");
        let _ = parse(&flow);
        let block: String = (0..depth)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        eprintln!("block {depth}");
        let _ = parse(&format!("config:\n{block}"));
        let seq = format!("config:\n{}x\n", "- ".repeat(depth));
        eprintln!("seq {depth}");
        let _ = parse(&seq);
    }
}
