//! Which clouds are enabled: credentials found the way each cloud's own CLI finds them,
//! restricted by `allowed_clouds` in `~/.sky/config.yaml`. Which clouds are checked, their
//! display names and where their credentials are looked for come from their profiles
//! (`sky_clouds::CloudProfile::credentials`); this module only reads the files and variables
//! the profiles name.
//!
//! This only looks for credential files and variables; it never contacts a cloud.

use std::path::PathBuf;

use sky_clouds::{Base, CredentialFile};
use sky_spec::sky_config::SkyConfig;

use crate::hostenv::{HostEnv, is_file};

/// The clouds `sky check` reports on, in display order: every built-in profile, by id.
pub fn checked_clouds() -> &'static [&'static str] {
    sky_clouds::checked_clouds()
}

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

/// SkyPilot's display name of a cloud, from its profile.
pub fn display_name(cloud: &str) -> &str {
    sky_clouds::display_name(cloud)
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

/// Where a profile's credentials file is on this machine: its variable's value (the first
/// `:`-separated entry of a list) or its path under the home or SkyPilot's directory.
fn place(env: &HostEnv, f: &CredentialFile) -> PathBuf {
    let var = f.path_var.and_then(|v| env.var(v)).map(|v| {
        if f.list {
            PathBuf::from(v.split(':').next().unwrap_or(v))
        } else {
            PathBuf::from(v)
        }
    });
    var.unwrap_or_else(|| match f.base {
        Base::Home => env.home_path(f.path),
        Base::SkyDir => env.sky_dir().join(f.path),
    })
}

/// A profile's message template with `{0}`, `{1}`, ... (the files' paths) and `{path}` filled.
fn fill(template: &str, paths: &[String], found: &str) -> String {
    let mut out = template.replace("{path}", found);
    for (i, p) in paths.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), p);
    }
    out
}

/// Checks one cloud's credentials (before `allowed_clouds`), as its profile says where they
/// are.
pub fn check_credentials(env: &HostEnv, cloud: &'static str) -> CloudCheck {
    let enabled = |reason: String| CloudCheck {
        cloud,
        enabled: true,
        reason,
        fix: String::new(),
    };
    let Some(profile) = sky_clouds::profile(cloud) else {
        return CloudCheck {
            cloud,
            enabled: false,
            reason: format!("{cloud} is not a cloud sky-rs knows"),
            fix: String::new(),
        };
    };
    let c = &profile.credentials;
    if let Some(reason) = c.always {
        return enabled(reason.to_string());
    }
    if !c.env_keys.is_empty() && c.env_keys.iter().all(|k| env.var(k).is_some()) {
        return enabled(format!("credentials found in {}", c.env_keys.join(" / ")));
    }
    if let Some(var) = c.env_file
        && let Some(p) = env.var(var)
        && is_file(&PathBuf::from(p))
    {
        return enabled(format!("credentials found in {var} ({p})"));
    }
    let mut shown: Vec<String> = Vec::with_capacity(c.files.len());
    for f in c.files {
        let path = place(env, f);
        let candidates: Vec<PathBuf> = if f.names.is_empty() {
            vec![path.clone()]
        } else {
            f.names.iter().map(|n| path.join(n)).collect()
        };
        if let Some(hit) = candidates.iter().find(|p| is_file(p)) {
            return enabled(fill(c.found, &[], &hit.display().to_string()));
        }
        shown.push(match f.names {
            [one] => path.join(one).display().to_string(),
            _ => path.display().to_string(),
        });
    }
    CloudCheck {
        cloud,
        enabled: false,
        reason: fill(c.missing, &shown, ""),
        fix: fill(c.fix, &shown, ""),
    }
}

/// Every checked cloud, with `allowed_clouds` applied.
pub fn check_all(env: &HostEnv, config: &SkyConfig) -> Vec<CloudCheck> {
    checked_clouds()
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

    /// `sky check`'s words for every cloud, read from the profiles, as they were written by
    /// hand before.
    #[test]
    fn messages_from_the_profiles() {
        let home = home_with(&[]);
        let h = home.path().display().to_string();
        let env = HostEnv::for_test(home.path(), &[]);
        let got: Vec<(String, bool, String, String)> = check_all(&env, &SkyConfig::default())
            .into_iter()
            .map(|c| (c.cloud.to_string(), c.enabled, c.reason, c.fix))
            .collect();
        let want: Vec<(String, bool, String, String)> = [
            (
                "aws",
                false,
                format!(
                    "no AWS credentials: AWS_ACCESS_KEY_ID is unset and neither {h}/.aws/credentials nor {h}/.aws/config exists"
                ),
                "run `aws configure`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string(),
            ),
            (
                "azure",
                false,
                format!("no Azure credentials: no azureProfile.json or token cache in {h}/.azure"),
                "run `az login`".to_string(),
            ),
            (
                "gcp",
                false,
                format!(
                    "no GCP credentials: GOOGLE_APPLICATION_CREDENTIALS names no file and {h}/.config/gcloud/application_default_credentials.json does not exist"
                ),
                "run `gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS at a service-account key".to_string(),
            ),
            (
                "kubernetes",
                false,
                format!("no kubeconfig: {h}/.kube/config does not exist"),
                "point KUBECONFIG at a kubeconfig, or write ~/.kube/config".to_string(),
            ),
            (
                "lambda",
                false,
                format!("no Lambda credentials: {h}/.lambda_cloud/lambda_keys does not exist"),
                format!("write `api_key = <your key>` to {h}/.lambda_cloud/lambda_keys"),
            ),
            (
                "local",
                true,
                "this machine: nodes are local sandboxes; no credentials needed".to_string(),
                String::new(),
            ),
            (
                "runpod",
                false,
                format!("no RunPod credentials: {h}/.runpod/config.toml does not exist"),
                "run `runpod config` with your API key".to_string(),
            ),
            (
                "ssh",
                false,
                format!("no SSH node pools: {h}/.sky/ssh_node_pools.yaml does not exist"),
                format!(
                    "list your machines in {h}/.sky/ssh_node_pools.yaml (pool-name: {{user, identity_file, hosts: [ip, ...]}})"
                ),
            ),
            (
                "vast",
                false,
                format!("no Vast credentials: {h}/.config/vastai/vast_api_key does not exist"),
                "run `vastai set api-key <your key>`".to_string(),
            ),
        ]
        .into_iter()
        .map(|(c, e, r, f)| (c.to_string(), e, r, f))
        .collect();
        assert_eq!(got, want);

        // Found: the file (or variable) that enabled each cloud.
        let home = home_with(&[
            ".aws/config",
            ".azure/msal_token_cache.bin",
            "adc/application_default_credentials.json",
            "kube/a",
            ".sky/ssh_node_pools.yaml",
        ]);
        let h = home.path().display().to_string();
        let adc = format!("{h}/adc");
        let kube = format!("{h}/kube/a:{h}/kube/b");
        let env = HostEnv::for_test(
            home.path(),
            &[
                ("CLOUDSDK_CONFIG", adc.as_str()),
                ("KUBECONFIG", kube.as_str()),
            ],
        );
        let reason = |c: &'static str| check_credentials(&env, c).reason;
        assert_eq!(
            reason("aws"),
            format!("credentials found in {h}/.aws/config")
        );
        assert_eq!(
            reason("azure"),
            format!("credentials found in {h}/.azure/msal_token_cache.bin")
        );
        assert_eq!(
            reason("gcp"),
            format!("credentials found in {adc}/application_default_credentials.json")
        );
        assert_eq!(
            reason("kubernetes"),
            format!("credentials found in {h}/kube/a")
        );
        assert_eq!(
            reason("ssh"),
            format!(
                "node pools in {h}/.sky/ssh_node_pools.yaml (each pool is a region: --infra ssh/<pool>)"
            )
        );
        assert_eq!(
            check_credentials(&env, "oci").reason,
            "oci is not a cloud sky-rs knows"
        );
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
        let reason = |c: &str| &checks.iter().find(|x| x.cloud == c).unwrap().reason;
        assert_eq!(
            reason("aws"),
            "credentials found in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        );
        assert_eq!(
            *reason("gcp"),
            format!(
                "credentials found in GOOGLE_APPLICATION_CREDENTIALS ({})",
                key.display()
            )
        );
    }
}
