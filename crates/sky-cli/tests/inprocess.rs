//! The commands called in process through the library (`sky_cli::run` with a `HostEnv` the
//! test makes): exit codes and what they leave on disk. Nothing here reads the test process's
//! environment: HOME, SKY_HOME and the variables are the test's own.

use std::path::{Path, PathBuf};

use sky_cli::{HostEnv, exit};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> String {
    repo().join("examples").join(name).display().to_string()
}

/// A temporary HOME (with placeholder credentials for `clouds`) and a separate SKY_HOME.
struct Home {
    home: tempfile::TempDir,
    sky_home: tempfile::TempDir,
}

impl Home {
    fn new(clouds: &[(&str, &str)]) -> Home {
        let h = Home {
            home: tempfile::tempdir().expect("tempdir"),
            sky_home: tempfile::tempdir().expect("tempdir"),
        };
        for (_, rel) in clouds {
            h.write(rel, "placeholder\n");
        }
        h
    }

    /// AWS, GCP and Lambda credentials, and a config that allows only those three.
    fn three_clouds() -> Home {
        let h = Home::new(&[
            ("aws", ".aws/credentials"),
            ("gcp", ".config/gcloud/application_default_credentials.json"),
            ("lambda", ".lambda_cloud/lambda_keys"),
        ]);
        h.write(".sky/config.yaml", "allowed_clouds: [aws, gcp, lambda]\n");
        h
    }

    fn write(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.home.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
        p
    }

    fn env(&self) -> HostEnv {
        HostEnv::new(
            self.home.path(),
            [
                ("HOME", self.home.path().display().to_string()),
                ("SKY_HOME", self.sky_home.path().display().to_string()),
                ("USER", "tester".to_string()),
                // An unreachable endpoint: nothing in these tests may talk to a cloud.
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_string()),
            ],
        )
    }

    fn sky(&self, args: &[&str]) -> i32 {
        sky_cli::run(
            std::iter::once("sky").chain(args.iter().copied()),
            &self.env(),
        )
    }

    /// The files under a directory, relative to it (sorted).
    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

#[test]
fn usage_help_version_and_commands_to_come() {
    let h = Home::new(&[]);
    assert_eq!(h.sky(&["no-such-command"]), exit::USAGE);
    assert_eq!(h.sky(&["status", "--no-such-flag"]), exit::USAGE);
    assert_eq!(h.sky(&["--version"]), exit::OK);
    assert_eq!(h.sky(&["--help"]), exit::OK);
    assert_eq!(h.sky(&["storage", "ls"]), exit::NOT_AVAILABLE);
}

#[test]
fn validate_accepts_a_good_file_and_refuses_a_bad_one() {
    let h = Home::new(&[]);
    assert_eq!(h.sky(&["validate", &example("hello.yaml")]), exit::OK);
    let bad = h.write("bad.yaml", "resources:\n  cpus: many\nrun: echo hi\n");
    assert_eq!(
        h.sky(&["validate", &bad.display().to_string()]),
        exit::INVALID_INPUT
    );
    let missing = h.home.path().join("missing.yaml");
    assert_ne!(
        h.sky(&["validate", &missing.display().to_string()]),
        exit::OK
    );
}

#[test]
fn check_and_show_gpus_read_only_the_given_home() {
    let h = Home::three_clouds();
    assert_eq!(h.sky(&["check"]), exit::OK);
    assert_eq!(h.sky(&["check", "no-such-cloud"]), exit::USAGE);
    assert_eq!(h.sky(&["show-gpus"]), exit::OK);
    assert_eq!(h.sky(&["gpus", "list", "H100"]), exit::OK);
    assert_eq!(
        h.sky(&["show-gpus", "--infra", "no-such-cloud"]),
        exit::INVALID_INPUT
    );
    assert_eq!(h.sky(&["show-gpus", "A100:zero"]), exit::INVALID_INPUT);
    // Neither command writes: not into ~/.sky (SkyPilot's), not into SKY_HOME.
    assert_eq!(
        Home::files(&h.home.path().join(".sky")),
        vec!["config.yaml"]
    );
    assert!(Home::files(h.sky_home.path()).is_empty());
}

#[test]
fn launch_dryrun_plans_with_the_given_clouds_only() {
    let h = Home::three_clouds();
    let task = h.write(
        "task.yaml",
        "resources:\n  accelerators: H100:8\nrun: nvidia-smi\n",
    );
    let task = task.display().to_string();
    assert_eq!(h.sky(&["launch", "--dryrun", "-y", &task]), exit::OK);
    // A cloud the config does not allow is not enabled, whatever credentials exist.
    assert_eq!(
        h.sky(&["launch", "--dryrun", "-y", "--infra", "azure", &task]),
        exit::NO_RESOURCES
    );
    assert_eq!(
        h.sky(&["launch", "--dryrun", "-c", "Bad Name!", &task]),
        exit::INVALID_INPUT
    );
    // Planning records nothing.
    assert!(Home::files(h.sky_home.path()).is_empty());
    // The same HOME with no cloud allowed but the local one: nothing in the catalogs.
    let none = Home::new(&[]);
    none.write(".sky/config.yaml", "allowed_clouds: [gcp]\n");
    assert_eq!(
        none.sky(&["launch", "--dryrun", "-y", &task]),
        exit::NO_RESOURCES
    );
}

#[test]
fn status_on_an_empty_home_makes_the_state_in_sky_home() {
    let h = Home::new(&[]);
    // The local cloud only (no pools, no AWS): status needs nothing but the state database.
    assert_eq!(h.sky(&["status"]), exit::OK);
    assert!(
        h.sky_home.path().join("state.db").is_file(),
        "{:?}",
        Home::files(h.sky_home.path())
    );
    // Nothing under HOME: sky-rs's state went to SKY_HOME, and ~/.sky is SkyPilot's.
    assert!(Home::files(h.home.path()).is_empty());
    assert_eq!(h.sky(&["status", "no-such-cluster"]), exit::INVALID_INPUT);
    assert_eq!(h.sky(&["queue"]), exit::OK);
    assert_eq!(h.sky(&["cost-report"]), exit::OK);
    assert_eq!(h.sky(&["down", "Bad Name!"]), exit::INVALID_INPUT);
    assert_eq!(h.sky(&["stop"]), exit::USAGE);
}
