//! SkyPilot's loader rules (`check_task_file`, what `sky validate` accepts) against what it
//! checks only when it runs a task (`parse_task_file`, `sky launch` / `sky exec`): required
//! envs and secrets, the removed `spot_recovery`, the service rules of `SkyServiceSpec`, and
//! storage objects (loaded as written, constructed at launch).

use std::path::Path;

use sky_spec::{
    Diagnostics, FileMount, ParseOptions, TaskFile, check_task_file, parse_task_file, to_yaml,
};

use crate::{EXAMPLES, parse};

fn check(text: &str) -> Result<TaskFile, Diagnostics> {
    check_task_file(text, &ParseOptions::default())
}

fn task(file: &TaskFile) -> &sky_spec::Task {
    match file {
        TaskFile::Task(t) => t,
        TaskFile::Pipeline(p) => &p.tasks[0],
    }
}

/// The one problem of `text` under SkyPilot's loader rules: (path, message).
fn refused(text: &str) -> (String, String) {
    let err = check(text).expect_err(text);
    assert_eq!(err.0.len(), 1, "exactly one problem expected:\n{err}");
    (err.0[0].path.clone(), err.0[0].message.clone())
}

fn paths(err: &Diagnostics) -> Vec<&str> {
    err.0.iter().map(|d| d.path.as_str()).collect()
}

#[test]
fn null_envs_and_secrets_are_valid_files_and_required_at_launch() {
    let text =
        "envs:\n  HF_TOKEN:\n  MODEL: llama\nsecrets:\n  WANDB_API_KEY: null\nrun: echo $MODEL\n";
    let file = check(text).unwrap_or_else(|d| panic!("a valid file:\n{d}"));
    let t = task(&file);
    assert_eq!(t.required_envs, vec!["HF_TOKEN"]);
    assert_eq!(t.required_secrets, vec!["WANDB_API_KEY"]);
    assert_eq!(t.envs.get("MODEL").map(String::as_str), Some("llama"));
    assert!(t.secrets.is_empty());
    // The dump keeps them required.
    let dumped = to_yaml(&file);
    assert_eq!(check(&dumped).as_ref().ok(), Some(&file), "{dumped}");

    // Launch refuses both, naming the flag that supplies each.
    let err = parse(text).expect_err("launch needs the values");
    assert_eq!(
        paths(&err),
        vec!["$.envs.HF_TOKEN", "$.secrets.WANDB_API_KEY"]
    );
    assert!(err.0[0].message.contains("--env HF_TOKEN=VALUE"), "{err}");
    assert!(
        err.0[1].message.contains("--secret WANDB_API_KEY=VALUE"),
        "{err}"
    );

    // Supplied: no longer required, at either stage.
    let mut opts = ParseOptions::default();
    opts.env_overrides.insert("HF_TOKEN".into(), "hf".into());
    opts.secret_overrides
        .insert("WANDB_API_KEY".into(), "w".into());
    for file in [
        parse_task_file(text, &opts).unwrap_or_else(|d| panic!("{d}")),
        check_task_file(text, &opts).unwrap_or_else(|d| panic!("{d}")),
    ] {
        let t = task(&file);
        assert!(t.required_envs.is_empty() && t.required_secrets.is_empty());
        assert_eq!(
            t.secrets.get("WANDB_API_KEY").map(String::as_str),
            Some("w")
        );
    }
}

#[test]
fn required_values_are_reported_per_pipeline_document() {
    let text = "name: p\n---\nrun: a\n---\nenvs:\n  X:\nrun: b\n";
    let file = check(text).unwrap_or_else(|d| panic!("{d}"));
    let TaskFile::Pipeline(p) = file else {
        panic!("a pipeline")
    };
    assert_eq!(p.tasks[1].required_envs, vec!["X"]);
    let err = parse(text).expect_err("launch needs X");
    assert_eq!(paths(&err), vec!["$[2].envs.X"]);
}

#[test]
fn a_null_env_is_not_substituted() {
    let text = "envs:\n  B:\nfile_mounts:\n  /d: s3://${B}/x\n";
    let file = check(text).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        task(&file).file_mounts.get("/d"),
        Some(&FileMount::Source("s3://${B}/x".into()))
    );
}

#[test]
fn the_envs_required_example_is_a_valid_file() {
    let text =
        std::fs::read_to_string(Path::new(EXAMPLES).join("envs_required.yaml")).expect("example");
    let file = check(&text).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(task(&file).required_envs, vec!["HF_TOKEN"]);
    assert_eq!(task(&file).required_secrets, vec!["WANDB_API_KEY"]);
    assert!(parse(&text).is_err());
}

#[test]
fn spot_recovery_is_refused_pointing_to_job_recovery() {
    for (text, path) in [
        (
            "resources:\n  spot_recovery: FAILOVER\n",
            "$.resources.spot_recovery",
        ),
        (
            "resources:\n  any_of:\n    - use_spot: true\n      spot_recovery: failover\n",
            "$.resources.any_of[0].spot_recovery",
        ),
    ] {
        let (p, m) = refused(text);
        assert_eq!(p, path);
        assert!(m.contains("did you mean `job_recovery`"), "{m}");
    }
    assert!(check("resources:\n  job_recovery: FAILOVER\n").is_ok());
    assert!(
        sky_spec::json_schema()["$defs"]["single_resources"]["properties"]
            .get("spot_recovery")
            .is_none()
    );
}

const PROBE: &str = "service:\n  readiness_probe: /health\n";

#[test]
fn autoscaling_needs_a_qps_target() {
    let (p, m) = refused(&format!(
        "{PROBE}  replica_policy:\n    min_replicas: 1\n    max_replicas: 3\n"
    ));
    assert_eq!(p, "$.service.replica_policy.target_qps_per_replica");
    for fragment in [
        "min_replicas (1)",
        "max_replicas (3)",
        "target_qps_per_replica",
        "autoscaling",
    ] {
        assert!(m.contains(fragment), "{m}");
    }
    // Equal counts are a fixed size; with a target it autoscales.
    for ok in [
        "    min_replicas: 2\n    max_replicas: 2\n",
        "    min_replicas: 2\n",
        "    min_replicas: 1\n    max_replicas: 3\n    target_qps_per_replica: 2.5\n",
    ] {
        let text = format!("{PROBE}  replica_policy:\n{ok}");
        check(&text).unwrap_or_else(|d| panic!("{text}\n{d}"));
    }
    // A target needs an upper bound.
    let (p, m) = refused(&format!(
        "{PROBE}  replica_policy:\n    min_replicas: 1\n    target_qps_per_replica: 5\n"
    ));
    assert_eq!(p, "$.service.replica_policy.max_replicas");
    assert!(m.contains("max_replicas"), "{m}");
    // max below min: one problem, not two.
    let (p, m) = refused(&format!(
        "{PROBE}  replica_policy:\n    min_replicas: 3\n    max_replicas: 1\n"
    ));
    assert_eq!(p, "$.service.replica_policy.max_replicas");
    assert!(m.contains("greater than or equal"), "{m}");
}

#[test]
fn service_rules_of_skyservicespec() {
    let (p, _) = refused(&format!(
        "{PROBE}  replicas: 2\n  replica_policy:\n    min_replicas: 1\n"
    ));
    assert_eq!(p, "$.service.replicas");
    // Per-accelerator targets and the instance-aware policy go together.
    let per_accel = "  replica_policy:\n    min_replicas: 1\n    max_replicas: 4\n    target_qps_per_replica:\n      H100:1: 10\n      A100: 5\n";
    let (p, m) = refused(&format!("{PROBE}{per_accel}"));
    assert_eq!(p, "$.service.load_balancing_policy");
    assert!(m.contains("instance_aware_least_load"), "{m}");
    check(&format!(
        "{PROBE}{per_accel}  load_balancing_policy: instance_aware_least_load\n"
    ))
    .unwrap_or_else(|d| panic!("{d}"));
    let (p, _) = refused(&format!(
        "{PROBE}  replicas: 2\n  load_balancing_policy: instance_aware_least_load\n"
    ));
    assert_eq!(p, "$.service.load_balancing_policy");
    // Keys are upper-case accelerator names with an optional count.
    let err = check(&format!(
        "{PROBE}  replica_policy:\n    min_replicas: 1\n    max_replicas: 2\n    target_qps_per_replica:\n      h100: 3\n  load_balancing_policy: instance_aware_least_load\n"
    ))
    .expect_err("lower-case key");
    assert_eq!(
        paths(&err)[0],
        "$.service.replica_policy.target_qps_per_replica.h100"
    );
    // Ports.
    let (p, _) = refused(&format!("{PROBE}  ports: 70000\n"));
    assert_eq!(p, "$.service.ports");
}

#[test]
fn readiness_probe_forms() {
    for ok in [
        "service:\n  readiness_probe: /health\n",
        "service:\n  readiness_probe:\n    path: /v1/models\n    post_data: '{\"model\": \"m\"}'\n    headers: {Authorization: Bearer x}\n",
        "service:\n  replicas: 2\n",
    ] {
        check(ok).unwrap_or_else(|d| panic!("{ok}\n{d}"));
    }
    let (p, _) = refused("service:\n  readiness_probe:\n    initial_delay_seconds: 5\n");
    assert_eq!(p, "$.service.readiness_probe.path");
    let (p, m) = refused("service:\n  readiness_probe: health\n");
    assert_eq!(p, "$.service.readiness_probe");
    assert!(m.contains("start with `/`"), "{m}");
    let (p, _) =
        refused("service:\n  readiness_probe:\n    path: /h\n    post_data: '{not json'\n");
    assert_eq!(p, "$.service.readiness_probe.post_data");
}

#[test]
fn pools_use_workers() {
    check("service:\n  pool: true\n  workers: 2\n").unwrap_or_else(|d| panic!("{d}"));
    let (p, _) = refused("service:\n  pool: true\n  replicas: 2\n");
    assert_eq!(p, "$.service.replicas");
    let (p, _) = refused("service:\n  replicas: 2\n  workers: 2\n");
    assert_eq!(p, "$.service.replicas");
    let (p, _) = refused("service:\n  pool: true\n  replica_policy:\n    min_replicas: 1\n");
    assert_eq!(p, "$.service.replica_policy");
}

fn mounts(body: &str) -> String {
    format!("file_mounts:\n{body}")
}

#[test]
fn storage_is_loaded_as_written_and_constructed_at_launch() {
    // A null name beside a bucket URI: valid at both stages.
    let text = mounts("  /a:\n    name:\n    source: s3://bucket\n");
    check(&text).unwrap_or_else(|d| panic!("{d}"));
    parse(&text).unwrap_or_else(|d| panic!("{d}"));
    // Valid files that SkyPilot's `Storage.construct()` refuses at launch.
    for (body, path) in [
        ("  /b:\n    name: null\n", "$.file_mounts[\"/b\"]"),
        (
            "  /b:\n    mode: COPY\n    name: bkt\n",
            "$.file_mounts[\"/b\"].source",
        ),
        ("  /b:\n    name: s3://x\n", "$.file_mounts[\"/b\"].name"),
        ("  /b:\n    source: ./data\n", "$.file_mounts[\"/b\"].name"),
        (
            "  /b:\n    source: [./a, ./b]\n",
            "$.file_mounts[\"/b\"].name",
        ),
        (
            "  /b:\n    name: bkt\n    source: s3://other\n",
            "$.file_mounts[\"/b\"].name",
        ),
        (
            "  /b:\n    name: bkt\n    source: [./a, s3://b]\n",
            "$.file_mounts[\"/b\"].source[1]",
        ),
        // Bucket name rules per store (sky_spec::buckets).
        (
            "  /b:\n    name: my_bucket\n    store: s3\n",
            "$.file_mounts[\"/b\"].name",
        ),
        (
            "  /b:\n    name: my.ctr\n    store: azure\n",
            "$.file_mounts[\"/b\"].name",
        ),
        ("  /b:\n    name: bk\n", "$.file_mounts[\"/b\"].name"),
    ] {
        let text = mounts(body);
        check(&text).unwrap_or_else(|d| panic!("{body}: a valid file:\n{d}"));
        let err = parse(&text).expect_err(body);
        assert_eq!(paths(&err), vec![path], "{body}\n{err}");
    }
    // A name for a new bucket, empty or uploaded: valid at both stages.
    for body in [
        "  /b:\n    name: bkt\n",
        "  /b:\n    name: bkt\n    source: ./data\n    store: VastData\n",
        "  /b:\n    name: bkt\n    source: [./a, ./b]\n    mode: copy\n",
    ] {
        let text = mounts(body);
        check(&text).unwrap_or_else(|d| panic!("{body}\n{d}"));
        parse(&text).unwrap_or_else(|d| panic!("{body}\n{d}"));
    }
}

#[test]
fn storage_schema_rules_hold_at_load() {
    for (body, path) in [
        (
            "  /b:\n    source: s3://x\n    mode: STREAM\n",
            "$.file_mounts[\"/b\"].mode",
        ),
        ("  /b:\n    source: []\n", "$.file_mounts[\"/b\"].source"),
        (
            "  /b:\n    source: s3://x\n    store: dropbox\n",
            "$.file_mounts[\"/b\"].store",
        ),
        (
            "  /b:\n    source: s3://x\n    config:\n      mount_cached: {transfers: 4}\n",
            "$.file_mounts[\"/b\"].config.mount_cached",
        ),
        (
            "  /b:\n    source: s3://x\n    mode: copy\n    config:\n      mount_cached: {transfers: 4}\n",
            "$.file_mounts[\"/b\"].config.mount_cached",
        ),
    ] {
        let (p, _) = refused(&mounts(body));
        assert_eq!(p, path, "{body}");
    }
    for mode in ["mount", "Copy", "MOUNT_CACHED"] {
        let text = mounts(&format!(
            "  /b:\n    source: s3://x\n    mode: {mode}\n    config:\n      mount_cached: {{}}\n"
        ));
        let ok = check(&text);
        assert_eq!(ok.is_ok(), mode == "MOUNT_CACHED", "{mode}: {ok:?}");
    }
}
