//! End-to-end tests of the `sky` binary with a temporary HOME.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A temporary HOME; `clouds` get placeholder credential files.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(clouds: &[&str]) -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home { dir };
        for c in clouds {
            let rel = match *c {
                "aws" => ".aws/credentials",
                "gcp" => ".config/gcloud/application_default_credentials.json",
                "azure" => ".azure/azureProfile.json",
                "lambda" => ".lambda_cloud/lambda_keys",
                "runpod" => ".runpod/config.toml",
                "vast" => ".config/vastai/vast_api_key",
                "kubernetes" => ".kube/config",
                other => panic!("unknown cloud {other}"),
            };
            home.write(rel, "placeholder\n");
        }
        home
    }

    /// The six catalog clouds enabled, as in SkyPilot's oracle runs (the local cloud, on by
    /// default, is excluded by `allowed_clouds`).
    fn all() -> Home {
        let h = Home::new(&["aws", "gcp", "azure", "lambda", "runpod", "vast"]);
        h.write(
            ".sky/config.yaml",
            "allowed_clouds: [aws, gcp, azure, lambda, runpod, vast]\n",
        );
        h
    }

    fn write(&self, rel: &str, body: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    fn sky(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sky"))
            .args(args)
            .current_dir(repo())
            .env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", "/usr/bin:/bin")
            .env("USER", "tester")
            .output()
            .expect("run sky")
    }
}

impl Drop for Home {
    /// A test that failed half-way must not leak clusters: tear down whatever this HOME still
    /// has (agents, node directories) before the directory goes.
    fn drop(&mut self) {
        // State lives in ~/.sky-rs/state.db, or wherever ~/.sky/config.yaml's `db:` says.
        let sky = self.dir.path().join(".sky");
        let own = self.dir.path().join(".sky-rs");
        if own.join("state.db").exists() || sky.join("config.yaml").exists() {
            let _ = Command::new(env!("CARGO_BIN_EXE_sky"))
                .args(["down", "-a", "-p"])
                .env_clear()
                .env("HOME", self.dir.path())
                .env("PATH", "/usr/bin:/bin")
                .output();
        }
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn yamls(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    v.sort();
    v
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

#[test]
fn help_lists_commands() {
    let o = Home::new(&[]).sky(&["--help"]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0);
    for c in [
        "launch",
        "validate",
        "check",
        "show-gpus",
        "status",
        "jobs",
        "serve",
    ] {
        assert!(out.contains(c), "--help misses {c}:\n{out}");
    }
}

#[test]
fn every_example_validates() {
    let home = Home::new(&[]);
    let ex = repo().join("examples");
    let mut files = yamls(&ex);
    for sub in ["exec", "pipelines", "serve"] {
        files.extend(yamls(&ex.join(sub)));
    }
    assert!(
        files.len() >= 25,
        "expected the example set, found {}",
        files.len()
    );
    for f in files {
        let r = rel(&f);
        let mut args = vec!["validate", r.as_str()];
        if f.ends_with("envs_required.yaml") {
            args.extend(["--env", "HF_TOKEN=hf_x", "--secret", "WANDB_API_KEY=w"]);
        }
        let o = home.sky(&args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{} should validate:\n{out}{err}", f.display());
        assert!(out.contains(": ok ("), "{out}");
    }
}

#[test]
fn required_env_and_secret_are_enforced() {
    // A valid file (SkyPilot's loader accepts null values), whose launch needs them.
    let home = Home::all();
    let o = home.sky(&["validate", "examples/envs_required.yaml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        out.contains("needs at launch: --env HF_TOKEN=VALUE --secret WANDB_API_KEY=VALUE"),
        "{out}"
    );
    let o = home.sky(&["launch", "--dryrun", "-y", "examples/envs_required.yaml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(
        err.contains("--env HF_TOKEN=VALUE") && err.contains("--secret WANDB_API_KEY=VALUE"),
        "{err}"
    );
    // One given: the other is still reported.
    let o = home.sky(&[
        "launch",
        "--dryrun",
        "-y",
        "examples/envs_required.yaml",
        "--env",
        "HF_TOKEN=x",
    ]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3);
    assert!(
        err.contains("WANDB_API_KEY") && !err.contains("HF_TOKEN"),
        "{err}"
    );
}

#[test]
fn every_valid_example_plans_with_six_clouds() {
    let home = Home::all();
    for f in yamls(&repo().join("examples")) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let r = rel(&f);
        let mut args = vec!["launch", "--dryrun", "-y", r.as_str()];
        if name == "envs_required.yaml" {
            args.extend(["--env", "HF_TOKEN=hf_x", "--secret", "WANDB_API_KEY=w"]);
        }
        let home_for = if name == "anyof_regions.yaml" {
            let h = Home::new(&["aws", "gcp"]);
            h.write(".sky/config.yaml", "allowed_clouds: [aws, gcp]\n");
            Some(h)
        } else {
            None
        };
        let o = home_for.as_ref().unwrap_or(&home).sky(&args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{name} should plan:\n{out}{err}");
        assert!(
            out.contains("Considered resources (")
                && out.contains("✔")
                && out.contains("Dryrun finished."),
            "{name}:\n{out}"
        );
    }
}

#[test]
fn anyof_regions_is_ambiguous_with_lambda() {
    let o = Home::all().sky(&["launch", "--dryrun", "-y", "examples/anyof_regions.yaml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(err.contains("Lambda"), "{err}");
    assert!(err.to_lowercase().contains("cloud"), "{err}");
}

#[test]
fn pipelines_point_to_managed_jobs_and_fractional_finds_nothing() {
    let home = Home::all();
    for f in yamls(&repo().join("examples/pipelines")) {
        let o = home.sky(&["launch", "--dryrun", "-y", &rel(&f)]);
        let (_, err) = text(&o);
        assert_eq!(code(&o), 3, "{err}");
        assert!(err.contains("sky jobs launch"), "{err}");
    }
    for f in yamls(&repo().join("examples/exec")) {
        let o = home.sky(&["launch", "--dryrun", "-y", &rel(&f)]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 4, "{out}{err}");
    }
}

/// Each invalid example and a fragment the message must contain (the field it names).
const INVALID: &[(&str, &str)] = &[
    ("accel_bad_format.yaml", "accelerators"),
    ("accel_unknown.yaml", "Z9000"),
    ("cpus_not_number.yaml", "cpus"),
    ("disk_tier_bad.yaml", "disk_tier"),
    ("env_bad_key.yaml", "envs"),
    ("gpus_and_accelerators.yaml", "gpus"),
    ("infra_and_cloud.yaml", "infra"),
    ("job_recovery_bad.yaml", "job_recovery"),
    ("memory_negative.yaml", "memory"),
    ("name_with_env_var.yaml", "name"),
    ("num_nodes_float.yaml", "num_nodes"),
    ("num_nodes_zero.yaml", "num_nodes"),
    ("port_out_of_range.yaml", "ports"),
    ("port_range_reversed.yaml", "ports"),
    ("storage_mode_bad.yaml", "mode"),
    ("unknown_resources_field.yaml", "accelerator"),
    ("unknown_top_field.yaml", "resoruces"),
    ("yaml_syntax.yaml", "line"),
    ("zone_region_mismatch.yaml", "zone"),
];

#[test]
fn every_invalid_example_is_refused_naming_its_field() {
    let home = Home::all();
    let files = yamls(&repo().join("examples/invalid"));
    assert_eq!(
        files.len(),
        INVALID.len(),
        "the table above must cover every invalid example"
    );
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let want = INVALID
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} not in INVALID"))
            .1;
        // Names the bundled catalogs lack are valid files (a Kubernetes cluster or an SSH
        // pool may offer them): `sky validate` warns, and refuses them under `--strict`.
        let r = rel(&f);
        let validate = if name == "accel_unknown.yaml" {
            vec!["validate", "--strict", r.as_str()]
        } else {
            vec!["validate", r.as_str()]
        };
        for args in [validate, vec!["launch", "--dryrun", "-y", r.as_str()]] {
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = home.sky(&args);
            let (out, err) = text(&o);
            let all = format!("{out}{err}");
            assert_eq!(
                code(&o),
                3,
                "{name} via {args:?} must be refused with exit 3:\n{all}"
            );
            assert!(!all.contains("panicked"), "{name}: {all}");
            assert!(
                all.contains(want),
                "{name} via {args:?}: message should name `{want}`:\n{all}"
            );
        }
    }
}

#[test]
fn unknown_fields_suggest_the_closest() {
    let o = Home::new(&[]).sky(&["validate", "examples/invalid/unknown_top_field.yaml"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("did you mean") && out.contains("resources"),
        "{out}"
    );
}

#[test]
fn validate_json_reports_every_file() {
    let o = Home::new(&[]).sky(&[
        "validate",
        "--json",
        "examples/hello.yaml",
        "examples/invalid/num_nodes_zero.yaml",
        "examples/invalid/cpus_not_number.yaml",
    ]);
    assert_eq!(code(&o), 3);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["valid"], true);
    assert_eq!(arr[1]["valid"], false);
    assert_eq!(arr[1]["problems"][0]["path"], "$.num_nodes");
    assert_eq!(arr[2]["problems"][0]["path"], "$.resources.cpus");
}

/// SkyPilot 0.14.1's own dryrun answers (tests/oracle, from ../shared/oracle): the whole printed output must match,
/// but for the YAML path and cost ties between regions that SkyPilot breaks in no fixed order.
#[test]
fn oracle_dryruns_match_skypilot() {
    let oracle = repo().join("tests/oracle");
    let home = Home::all();
    let mut failures = Vec::new();
    let cases = yamls(&oracle.join("cases"));
    assert_eq!(cases.len(), 20);
    for case in cases {
        let stem = case.file_stem().unwrap().to_string_lossy().to_string();
        let expected =
            std::fs::read_to_string(oracle.join("expected").join(format!("{stem}.txt"))).unwrap();
        let (expected_body, expected_exit) = expected.rsplit_once("exit: ").unwrap();
        let o = home.sky(&[
            "launch",
            "--dryrun",
            "-y",
            "-c",
            "anchor",
            case.to_str().unwrap(),
        ]);
        let (out, err) = text(&o);
        let got = out.replace(case.to_str().unwrap(), &format!("cases/{stem}.yaml"));
        let exp = expected_body.to_string();
        let same = got == exp
            || (stem.starts_with("10_")
                && got.replace("us-west-2", "us-east-1") == exp.replace("us-west-2", "us-east-1"));
        if !same || code(&o).to_string() != expected_exit.trim() {
            failures.push(format!(
                "== {stem} (exit {})\n--- expected\n{exp}--- got\n{got}{err}",
                code(&o)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 20 oracle cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn overrides_change_the_plan() {
    let home = Home::all();
    let o = home.sky(&[
        "launch",
        "--dryrun",
        "-y",
        "--gpus",
        "H100:8",
        "--infra",
        "aws",
        "examples/hello.yaml",
    ]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        out.contains("p5.48xlarge") && !out.contains("GCP ("),
        "{out}"
    );
    let o = home.sky(&[
        "launch",
        "--dryrun",
        "-y",
        "--cpus",
        "lots",
        "examples/hello.yaml",
    ]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(err.contains("--cpus"), "{err}");
}

#[test]
fn a_command_can_be_planned_too() {
    let o = Home::all().sky(&["launch", "--dryrun", "-y", "--gpus", "A100:8", "echo", "hi"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        !out.contains("YAML to run") && out.contains("gpu_8x_a100"),
        "{out}"
    );
}

#[test]
fn no_enabled_cloud_says_how_to_fix() {
    let home = Home::new(&[]);
    home.write(".sky/config.yaml", "allowed_clouds: [aws]\n");
    let o = home.sky(&["launch", "--dryrun", "-y", "examples/gpu_a100.yaml"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 4);
    assert!(err.contains("sky check"), "{err}");
}

#[test]
fn nothing_fits_names_request_and_close_names() {
    let o = Home::all().sky(&["launch", "--dryrun", "-y", "--gpus", "A100:3", "echo", "hi"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 4, "{out}{err}");
    assert!(err.contains("A100"), "{err}");
}

#[test]
fn check_reports_reason_and_fix() {
    // No AWS credentials here: `sky check` verifies AWS live, and a test may only talk to the
    // emulators it starts (see aws.rs for the live check against moto).
    let home = Home::new(&["gcp", "lambda"]);
    home.write(".sky/config.yaml", "allowed_clouds: [gcp, local]\n");
    let o = home.sky(&["check"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        out.contains("GCP: enabled") && out.contains("Local: enabled"),
        "{out}"
    );
    assert!(
        out.contains("Lambda: disabled") && out.contains("allowed_clouds"),
        "{out}"
    );
    assert!(
        out.contains("AWS: disabled") && out.contains("aws configure"),
        "{out}"
    );
}

#[test]
fn show_gpus_lists_prices() {
    let home = Home::all();
    let o = home.sky(&["show-gpus", "A100:8"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        out.contains("p4d.24xlarge")
            && out.contains("a2-highgpu-8g")
            && out.contains("gpu_8x_a100"),
        "{out}"
    );
    let o = home.sky(&["gpus", "list", "--infra", "aws"]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0);
    assert!(out.contains("COMMON_GPU") && out.contains("A10G"), "{out}");
    assert!(!out.contains("TPU"), "{out}");
}

#[test]
fn later_commands_say_so() {
    let o = Home::new(&[]).sky(&["serve", "up", "x.yaml"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 5);
    assert!(err.contains("not available yet"), "{err}");
}

#[test]
fn with_no_credentials_the_local_cloud_plans() {
    let o = Home::new(&[]).sky(&["launch", "--dryrun", "-y", "examples/hello.yaml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(out.contains("Local (local)") && out.contains("✔"), "{out}");
}

#[cfg(feature = "aws")]
mod aws;
mod binary;
mod clusters;
mod hardening;
mod jobs;
mod jobs_chaos;
mod jobs_clusters;
mod loader;
mod recover;
mod sched;
mod ssh;
mod sshcmd;
