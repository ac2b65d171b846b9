//! `sky check`: which clouds are enabled, why, and how to enable the others.
//!
//! Credentials are found the way each cloud's CLI finds them; nothing is contacted (live
//! verification arrives with each cloud's provisioner).

use crate::{CheckArgs, clouds, exit, hostenv::HostEnv};

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
        if !clouds::CHECKED_CLOUDS.contains(&w.as_str()) {
            eprintln!(
                "unknown cloud `{w}`; sky check knows: {}",
                clouds::CHECKED_CLOUDS.join(", ")
            );
            return exit::USAGE;
        }
    }
    let checks: Vec<_> = clouds::check_all(env, &config)
        .into_iter()
        .filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.cloud))
        .collect();
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
