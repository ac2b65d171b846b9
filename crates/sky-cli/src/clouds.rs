//! Which clouds are enabled: credentials found the way each cloud's own CLI finds them,
//! restricted by `allowed_clouds` in `~/.sky/config.yaml`.
//!
//! This only looks for credential files and variables; it never contacts a cloud.

use std::path::PathBuf;

use sky_spec::sky_config::SkyConfig;

use crate::hostenv::{HostEnv, is_file};

/// The clouds `sky check` reports on, in display order.
pub const CHECKED_CLOUDS: &[&str] = &[
    "aws",
    "azure",
    "gcp",
    "kubernetes",
    "lambda",
    "local",
    "runpod",
    "ssh",
    "vast",
];

/// The outcome of checking one cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudCheck {
    pub cloud: &'static str,
    pub enabled: bool,
    /// Where the credentials were found, or why the cloud is disabled.
    pub reason: String,
    /// How to enable it (empty when enabled).
    pub fix: String,
}

pub fn display_name(cloud: &str) -> &str {
    match cloud {
        "kubernetes" => "Kubernetes",
        "local" => "Local",
        "ssh" => "SSH",
        other => sky_catalog::cloud_display_name(other),
    }
}

/// Loads `~/.sky/config.yaml` (missing file = empty config).
pub fn load_config(env: &HostEnv) -> Result<SkyConfig, String> {
    let path = env.config_path();
    match crate::hostenv::read_text_file(&path) {
        Ok(text) => sky_spec::sky_config::parse_sky_config(&text)
            .map_err(|d| format!("invalid {}:\n{}", path.display(), d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SkyConfig::default()),
        Err(e) => Err(format!("failed to read {}: {e}", path.display())),
    }
}

fn found(path: &std::path::Path) -> Option<String> {
    is_file(path).then(|| format!("credentials found in {}", path.display()))
}

/// Checks one cloud's credentials (before `allowed_clouds`).
pub fn check_credentials(env: &HostEnv, cloud: &'static str) -> CloudCheck {
    let (hit, missing, fix): (Option<String>, String, String) = match cloud {
        "aws" => {
            let creds = env
                .var("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| env.home_path(".aws/credentials"));
            let config = env
                .var("AWS_CONFIG_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| env.home_path(".aws/config"));
            let hit = if env.var("AWS_ACCESS_KEY_ID").is_some()
                && env.var("AWS_SECRET_ACCESS_KEY").is_some()
            {
                Some("credentials found in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY".to_string())
            } else {
                found(&creds).or_else(|| found(&config))
            };
            (
                hit,
                format!(
                    "no AWS credentials: AWS_ACCESS_KEY_ID is unset and neither {} nor {} exists",
                    creds.display(),
                    config.display()
                ),
                "run `aws configure`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            )
        }
        "gcp" => {
            let adc_dir = env
                .var("CLOUDSDK_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| env.home_path(".config/gcloud"));
            let adc = adc_dir.join("application_default_credentials.json");
            let hit = match env.var("GOOGLE_APPLICATION_CREDENTIALS") {
                Some(p) if is_file(&PathBuf::from(p)) => Some(format!(
                    "credentials found in GOOGLE_APPLICATION_CREDENTIALS ({p})"
                )),
                _ => found(&adc),
            };
            (
                hit,
                format!("no GCP credentials: GOOGLE_APPLICATION_CREDENTIALS names no file and {} does not exist", adc.display()),
                "run `gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS at a service-account key".into(),
            )
        }
        "azure" => {
            let dir = env
                .var("AZURE_CONFIG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| env.home_path(".azure"));
            let hit = [
                "azureProfile.json",
                "msal_token_cache.json",
                "msal_token_cache.bin",
                "accessTokens.json",
            ]
            .iter()
            .find_map(|f| found(&dir.join(f)));
            (
                hit,
                format!(
                    "no Azure credentials: no azureProfile.json or token cache in {}",
                    dir.display()
                ),
                "run `az login`".into(),
            )
        }
        "lambda" => {
            let p = env.home_path(".lambda_cloud/lambda_keys");
            (
                found(&p),
                format!("no Lambda credentials: {} does not exist", p.display()),
                format!("write `api_key = <your key>` to {}", p.display()),
            )
        }
        "runpod" => {
            let p = env.home_path(".runpod/config.toml");
            (
                found(&p),
                format!("no RunPod credentials: {} does not exist", p.display()),
                "run `runpod config` with your API key".into(),
            )
        }
        "vast" => {
            let p = env.home_path(".config/vastai/vast_api_key");
            (
                found(&p),
                format!("no Vast credentials: {} does not exist", p.display()),
                "run `vastai set api-key <your key>`".into(),
            )
        }
        "kubernetes" => {
            let p = env
                .var("KUBECONFIG")
                .and_then(|v| v.split(':').next().map(PathBuf::from))
                .unwrap_or_else(|| env.home_path(".kube/config"));
            (
                found(&p),
                format!("no kubeconfig: {} does not exist", p.display()),
                "point KUBECONFIG at a kubeconfig, or write ~/.kube/config".into(),
            )
        }
        "ssh" => {
            let p = env.sky_dir().join("ssh_node_pools.yaml");
            (
                is_file(&p).then(|| {
                    format!(
                        "node pools in {} (each pool is a region: --infra ssh/<pool>)",
                        p.display()
                    )
                }),
                format!("no SSH node pools: {} does not exist", p.display()),
                format!(
                    "list your machines in {} (pool-name: {{user, identity_file, hosts: [ip, ...]}})",
                    p.display()
                ),
            )
        }
        "local" => (
            Some("this machine: nodes are local sandboxes; no credentials needed".to_string()),
            String::new(),
            String::new(),
        ),
        other => (
            None,
            format!("{other} is not a cloud sky-rs knows"),
            String::new(),
        ),
    };
    match hit {
        Some(reason) => CloudCheck {
            cloud,
            enabled: true,
            reason,
            fix: String::new(),
        },
        None => CloudCheck {
            cloud,
            enabled: false,
            reason: missing,
            fix,
        },
    }
}

/// Every checked cloud, with `allowed_clouds` applied.
pub fn check_all(env: &HostEnv, config: &SkyConfig) -> Vec<CloudCheck> {
    CHECKED_CLOUDS
        .iter()
        .map(|c| {
            let mut check = check_credentials(env, c);
            // Missing credentials are the first thing to fix; `allowed_clouds` only matters
            // for a cloud that could otherwise be used.
            if let Some(allowed) = &config.allowed_clouds
                && check.enabled
                && !allowed.iter().any(|a| a == c)
            {
                check.enabled = false;
                check.reason = format!("not in allowed_clouds of {}", env.config_path().display());
                check.fix = format!(
                    "add `{c}` to allowed_clouds in {}",
                    env.config_path().display()
                );
            }
            check
        })
        .collect()
}

/// Enabled clouds that have bundled catalogs (the ones the optimizer can plan on).
pub fn enabled_catalog_clouds(checks: &[CloudCheck]) -> Vec<&'static str> {
    checks
        .iter()
        .filter(|c| c.enabled && sky_catalog::BUNDLED_CLOUDS.contains(&c.cloud))
        .map(|c| c.cloud)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        dir
    }

    #[test]
    fn empty_home_enables_only_local() {
        let home = home_with(&[]);
        let env = HostEnv::for_test(home.path(), &[]);
        let checks = check_all(&env, &SkyConfig::default());
        let enabled: Vec<&str> = checks
            .iter()
            .filter(|c| c.enabled)
            .map(|c| c.cloud)
            .collect();
        assert_eq!(enabled, vec!["local"], "{checks:?}");
        assert!(
            checks
                .iter()
                .filter(|c| !c.enabled)
                .all(|c| !c.fix.is_empty())
        );
        let cfg = SkyConfig {
            allowed_clouds: Some(vec!["aws".into()]),
            ..SkyConfig::default()
        };
        assert!(check_all(&env, &cfg).iter().all(|c| !c.enabled));
    }

    #[test]
    fn files_enable_clouds_and_allowed_clouds_restricts() {
        let home = home_with(&[
            ".aws/credentials",
            ".lambda_cloud/lambda_keys",
            ".config/vastai/vast_api_key",
        ]);
        let env = HostEnv::for_test(home.path(), &[]);
        let checks = check_all(&env, &SkyConfig::default());
        assert_eq!(
            enabled_catalog_clouds(&checks),
            vec!["aws", "lambda", "vast"]
        );
        let cfg = SkyConfig {
            allowed_clouds: Some(vec!["aws".into()]),
            ..SkyConfig::default()
        };
        let checks = check_all(&env, &cfg);
        assert_eq!(enabled_catalog_clouds(&checks), vec!["aws"]);
        let lambda = checks.iter().find(|c| c.cloud == "lambda").unwrap();
        assert!(lambda.reason.contains("allowed_clouds"));
    }

    #[test]
    fn env_vars_enable_aws_and_gcp() {
        let home = home_with(&["key.json"]);
        let key = home.path().join("key.json");
        let env = HostEnv::for_test(
            home.path(),
            &[
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "b"),
                ("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap()),
            ],
        );
        let checks = check_all(&env, &SkyConfig::default());
        assert_eq!(enabled_catalog_clouds(&checks), vec!["aws", "gcp"]);
    }
}
