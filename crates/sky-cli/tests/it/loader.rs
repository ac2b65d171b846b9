//! `sky validate` follows SkyPilot's task loader: it accepts what the loader accepts (null envs
//! and secrets, storage objects as written, names the bundled catalogs lack, with a warning)
//! and refuses what it refuses (`spot_recovery`, autoscaling without a QPS target); `sky
//! launch` and `sky exec` still refuse what SkyPilot refuses when it runs a task.

use crate::{Home, code, text};

/// Writes `body` as `name` in the home directory and returns its path.
fn task_file(home: &Home, name: &str, body: &str) -> String {
    home.write(name, body);
    home.path().join(name).display().to_string()
}

fn all(o: &std::process::Output) -> String {
    let (out, err) = text(o);
    format!("{out}{err}")
}

#[test]
fn a_null_secret_is_a_valid_file_that_launch_and_exec_refuse() {
    let home = Home::all();
    let f = task_file(
        &home,
        "t.yaml",
        "secrets:\n  WANDB_API_KEY: null\nrun: echo hi\n",
    );
    let o = home.sky(&["validate", &f]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        all(&o).contains("needs at launch: --secret WANDB_API_KEY=VALUE"),
        "{}",
        all(&o)
    );
    let o = home.sky(&["launch", "--dryrun", "-y", &f]);
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        all(&o).contains("--secret WANDB_API_KEY=VALUE"),
        "{}",
        all(&o)
    );
    let o = home.sky(&["exec", "somecluster", &f]);
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        all(&o).contains("--secret WANDB_API_KEY=VALUE"),
        "{}",
        all(&o)
    );
    let o = home.sky(&[
        "launch",
        "--dryrun",
        "-y",
        &f,
        "--secret",
        "WANDB_API_KEY=w",
    ]);
    assert_eq!(code(&o), 0, "{}", all(&o));
}

#[test]
fn spot_recovery_is_refused_pointing_to_job_recovery() {
    let home = Home::new(&[]);
    let f = task_file(
        &home,
        "t.yaml",
        "resources:\n  use_spot: true\n  spot_recovery: FAILOVER\n",
    );
    let o = home.sky(&["validate", &f]);
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        all(&o).contains("$.resources.spot_recovery")
            && all(&o).contains("did you mean `job_recovery`"),
        "{}",
        all(&o)
    );
}

#[test]
fn autoscaling_without_a_qps_target_is_refused() {
    let home = Home::new(&[]);
    let f = task_file(
        &home,
        "t.yaml",
        "service:\n  readiness_probe: /health\n  replica_policy:\n    min_replicas: 1\n    max_replicas: 3\nrun: serve\n",
    );
    let o = home.sky(&["validate", &f]);
    assert_eq!(code(&o), 3, "{}", all(&o));
    let out = all(&o);
    assert!(
        out.contains("$.service.replica_policy.target_qps_per_replica")
            && out.contains("min_replicas (1)")
            && out.contains("max_replicas (3)"),
        "{out}"
    );
}

#[test]
fn a_storage_object_with_a_null_name_is_a_valid_file() {
    let home = Home::new(&[]);
    let f = task_file(
        &home,
        "t.yaml",
        "file_mounts:\n  /data:\n    name:\n    source: s3://bucket\n  /scratch:\n    name: null\n",
    );
    let o = home.sky(&["validate", &f]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    // Constructing `/scratch` (no name, no source) is what SkyPilot refuses at launch.
    let o = Home::all().sky(&["launch", "--dryrun", "-y", &f]);
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        all(&o).contains("$.file_mounts[\"/scratch\"]"),
        "{}",
        all(&o)
    );
}

#[test]
fn names_the_catalogs_lack_warn_unless_strict_and_launch_refuses_them() {
    let home = Home::all();
    let accel = "examples/invalid/accel_unknown.yaml";
    let itype = task_file(
        &home,
        "itype.yaml",
        "resources:\n  instance_type: my-k8s-node-8x\nrun: hi\n",
    );
    for (f, path, word) in [
        (accel, "$.resources.accelerators", "Z9000"),
        (
            itype.as_str(),
            "$.resources.instance_type",
            "my-k8s-node-8x",
        ),
    ] {
        let o = home.sky(&["validate", f]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{f}: a valid file:\n{out}{err}");
        assert!(
            out.contains(&format!("warning: {path}")) && out.contains(word),
            "{f}:\n{out}"
        );
        assert!(out.contains(": ok ("), "{out}");
        assert!(err.contains("--strict"), "{err}");

        let o = home.sky(&["validate", "--strict", f]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 3, "{f} --strict:\n{out}{err}");
        assert!(out.contains(path) && !out.contains("warning:"), "{out}");

        let o = home.sky(&["launch", "--dryrun", "-y", f]);
        assert_eq!(code(&o), 3, "{f} launch:\n{}", all(&o));
        assert!(all(&o).contains(word), "{}", all(&o));
    }
    let o = home.sky(&["launch", "--dryrun", "-y", &itype]);
    assert!(
        all(&o).contains("invalid instance type 'my-k8s-node-8x'"),
        "{}",
        all(&o)
    );
}

#[test]
fn validate_json_carries_warnings_apart() {
    let home = Home::new(&[]);
    let o = home.sky(&[
        "validate",
        "--json",
        "examples/invalid/accel_unknown.yaml",
        "examples/envs_required.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["valid"], true);
    assert_eq!(v[0]["problems"].as_array().map(Vec::len), Some(0));
    assert_eq!(v[0]["warnings"][0]["path"], "$.resources.accelerators");
    assert_eq!(v[1]["valid"], true);
    assert_eq!(v[1]["required_at_launch"]["envs"][0], "HF_TOKEN");
    assert_eq!(v[1]["required_at_launch"]["secrets"][0], "WANDB_API_KEY");

    let o = home.sky(&[
        "validate",
        "--json",
        "--strict",
        "examples/invalid/accel_unknown.yaml",
    ]);
    assert_eq!(code(&o), 3, "{}", all(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["valid"], false);
    assert_eq!(v[0]["problems"][0]["path"], "$.resources.accelerators");
    assert_eq!(v[0]["warnings"].as_array().map(Vec::len), Some(0));
}
