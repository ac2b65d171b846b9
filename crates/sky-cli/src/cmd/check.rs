//! `sky check`: which clouds are enabled, why, and how to enable the others.
//!
//! Credentials are found the way each cloud's CLI finds them; clouds whose provisioner is in
//! this build are then verified live: AWS with one cheap API call (EC2 DescribeRegions, at
//! `AWS_ENDPOINT_URL` when set), SSH node pools by logging in to every host, which also detects
//! and caches the hosts' CPUs, memory and GPUs; the others are not contacted yet.

use crate::{args::CheckArgs, clouds, exit, hostenv::HostEnv};

pub fn run(env: &HostEnv, args: &CheckArgs) -> i32 {
    let config = match clouds::load_config(env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID_INPUT;
        }
    };
    let wanted: Vec<String> = args
        .clouds
        .iter()
        .map(|c| sky_spec::canonical_cloud(c).unwrap_or(c).to_string())
        .collect();
    for w in &wanted {
        if !clouds::checked_clouds().contains(&w.as_str()) {
            eprintln!(
                "unknown cloud `{w}`; sky check knows: {}",
                clouds::checked_clouds().join(", ")
            );
            return exit::USAGE;
        }
    }
    let mut checks: Vec<_> = clouds::check_all(env, &config)
        .into_iter()
        .filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.cloud))
        .collect();
    verify_live(env, &config, &mut checks);
    println!("Checking credentials to enable infra for sky-rs.");
    for c in &checks {
        let name = clouds::display_name(c.cloud);
        if c.enabled {
            println!("  {name}: enabled");
            if args.verbose {
                println!("    {}", c.reason);
            }
        } else {
            println!("  {name}: disabled");
            println!("    Reason: {}", c.reason);
            if !c.fix.is_empty() {
                println!("    Fix: {}", c.fix);
            }
        }
    }
    println!();
    let enabled: Vec<&str> = checks
        .iter()
        .filter(|c| c.enabled)
        .map(|c| clouds::display_name(c.cloud))
        .collect();
    if enabled.is_empty() {
        println!("No infra is enabled. Follow a Fix above, then run `sky check` again.");
    } else {
        println!("Enabled infra: {}", enabled.join(", "));
    }
    exit::OK
}

/// Asks each enabled cloud that has a provisioner in this build to prove its credentials.
fn verify_live(
    env: &HostEnv,
    config: &sky_spec::sky_config::SkyConfig,
    checks: &mut [clouds::CloudCheck],
) {
    let live: Vec<&'static str> = checks
        .iter()
        .filter(|c| c.enabled && matches!(c.cloud, "aws" | "ssh"))
        .map(|c| c.cloud)
        .collect();
    if live.is_empty() {
        return;
    }
    let Ok(registry) = crate::backend::providers(env, config) else {
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    for cloud in live {
        let Some(p) = registry.get(cloud) else {
            continue;
        };
        let verdict = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(20), p.check_credentials()).await
        });
        let Some(c) = checks.iter_mut().find(|c| c.cloud == cloud) else {
            continue;
        };
        match verdict {
            Ok(Ok(())) => c.reason = format!("{} (verified live)", c.reason),
            Ok(Err(e)) if cloud == "ssh" => {
                c.enabled = false;
                c.reason = format!("not every host of the node pools answered: {}", e.message);
                c.fix = e.fix.clone().unwrap_or_else(|| {
                    "check the hosts, users and identity files in ~/.sky/ssh_node_pools.yaml".into()
                });
            }
            Ok(Err(e)) => {
                c.enabled = false;
                c.reason = format!(
                    "the live check with these credentials failed: {}",
                    e.message
                );
                c.fix = e
                    .fix
                    .clone()
                    .unwrap_or_else(|| "run `aws configure` with valid keys".into());
            }
            Err(_) => {
                c.enabled = false;
                c.reason = "the live credential check timed out after 20 s".into();
                c.fix =
                    "check the network path to the cloud's API, then run `sky check` again".into();
            }
        }
    }
}
