//! The hidden `sky agent ...` subcommands, run on nodes by the launcher and the head's
//! autostop.

use crate::{args::AgentArgs, backend::providers, exit, hostenv::HostEnv};

/// `sky agent serve|mark-orphans` (runs on nodes; hidden).
pub fn agent(env: &HostEnv, args: &AgentArgs) -> i32 {
    match args.action.as_str() {
        "serve" => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("failed to start the agent runtime: {e}");
                    return exit::FAILURE;
                }
            };
            let cfg = match crate::agentcfg::config(env, args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return exit::INVALID_INPUT;
                }
            };
            match rt.block_on(sky_agent::serve(cfg, None)) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("agent failed: {e}");
                    exit::FAILURE
                }
            }
        }
        "mark-orphans" => match sky_agent::mark_orphans_failed_driver(&env.home) {
            Ok(_) => exit::OK,
            Err(e) => {
                eprintln!("{e}");
                exit::FAILURE
            }
        },
        "self-stop" => self_stop(env, args.what.as_deref()),
        "serve-file" => serve_file(env, args),
        other => {
            eprintln!(
                "unknown agent action `{other}`: serve | mark-orphans | self-stop | serve-file"
            );
            exit::USAGE
        }
    }
}

/// `sky agent self-stop stop|down`: the autostop hook of a remote head. It stops or
/// terminates its own cluster through the provider, with what the launcher left in
/// `~/.sky/self_stop.json` (the handle, the provider's settings and environment) and the
/// credentials it uploaded, as SkyPilot's skylet does. The client learns of it from the
/// provider (`sky status` refreshes clusters that have autostop set).
fn self_stop(env: &HostEnv, what: Option<&str>) -> i32 {
    let down = match what {
        Some("stop") => false,
        Some("down") => true,
        _ => {
            eprintln!("usage: sky agent self-stop stop|down");
            return exit::USAGE;
        }
    };
    let path = env.home.join(sky_provider::SELF_STOP_FILE);
    let file: sky_provider::SelfStopFile = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "self-stop: cannot read {} ({e}); the launcher writes it on heads whose cloud supports autostop",
                path.display()
            );
            return exit::FAILURE;
        }
    };
    let cloud = file.handle.cloud.clone();
    let node_env = env.with_vars(&file.env);
    let config = sky_spec::sky_config::SkyConfig {
        allowed_clouds: Some(vec![cloud.clone()]),
        db: None,
        raw: serde_json::json!({ cloud.as_str(): file.config }),
    };
    let provider = match providers(&node_env, &config) {
        Ok(r) => r.get(&cloud),
        Err(e) => {
            eprintln!("self-stop: {e}");
            return exit::FAILURE;
        }
    };
    let Some(p) = provider else {
        eprintln!("self-stop: cloud `{cloud}` is not available on this node (no credentials?)");
        return exit::FAILURE;
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("self-stop: {e}");
            return exit::FAILURE;
        }
    };
    let h = &file.handle;
    let res = rt.block_on(async {
        if down {
            p.terminate_instances(h).await
        } else {
            p.stop_instances(h).await
        }
    });
    match res {
        Ok(()) => {
            println!(
                "self-stop: {} {} on {cloud}",
                if down { "terminated" } else { "stopped" },
                h.cluster_name
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("self-stop: {e}");
            exit::FAILURE
        }
    }
}

/// `sky agent serve-file --file F --ip IP --count N --timeout-secs S --addr-file A`: the head
/// serves the `sky` binary to the cluster's workers (`sky_agent::fileserve`); the token comes
/// from `SKY_SERVE_FILE_TOKEN` (never the command line).
fn serve_file(env: &HostEnv, args: &AgentArgs) -> i32 {
    let under_home = |p: &str| env.home.join(p);
    let (Some(file), Some(addr_file), Some(ip)) = (&args.file, &args.addr_file, &args.ip) else {
        eprintln!(
            "usage: sky agent serve-file --file FILE --ip IP --addr-file FILE [--count N] [--timeout-secs S]"
        );
        return exit::USAGE;
    };
    let ip: std::net::IpAddr = match ip.parse() {
        Ok(ip) => ip,
        Err(_) => {
            eprintln!("serve-file: --ip {ip:?} is not an IP address");
            return exit::USAGE;
        }
    };
    let token = match env
        .var(sky_launch::binary::SERVE_TOKEN_ENV)
        .map(sky_agent::Token::parse)
    {
        Some(Ok(t)) => t,
        _ => {
            eprintln!(
                "serve-file: set {} to the token clients send",
                sky_launch::binary::SERVE_TOKEN_ENV
            );
            return exit::USAGE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start the serve-file runtime: {e}");
            return exit::FAILURE;
        }
    };
    let opts = sky_agent::fileserve::ServeFile {
        file: under_home(file),
        listen: sky_agent::fileserve::listen_on(ip),
        token,
        count: args.count,
        timeout: std::time::Duration::from_secs(args.timeout_secs),
        addr_file: under_home(addr_file),
    };
    match rt.block_on(sky_agent::fileserve::serve_file(opts)) {
        Ok(r) if !r.timed_out => exit::OK,
        Ok(_) => exit::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            exit::FAILURE
        }
    }
}
