//! `sky agent serve` arguments → the agent's configuration.
//!
//! The agent runs with HOME = the node's home; the client's HOME (needed by the autostop hook,
//! which runs `sky stop|down` against the client's state) arrives in `SKY_CLIENT_HOME`.

use std::net::{IpAddr, SocketAddr};

use sky_agent::{AgentConfig, ClusterInfo};

use crate::{AgentArgs, hostenv::HostEnv};

/// Single-quotes a word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The argv the head agent runs when autostop fires (`stop` or `down` is appended as `$1`).
pub fn autostop_hook(env: &HostEnv, cluster: &str) -> Vec<String> {
    let sky = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "sky".into());
    let mut assigns = Vec::new();
    if let Some(h) = env.var("SKY_CLIENT_HOME") {
        assigns.push(format!("HOME={}", sh_quote(h)));
    }
    if let Some(h) = env.var("SKY_CLIENT_SKY_HOME") {
        assigns.push(format!("SKY_HOME={}", sh_quote(h)));
    }
    if let Some(h) = env.var("SKY_CLIENT_CONFIG") {
        assigns.push(format!("SKYPILOT_CONFIG={}", sh_quote(h)));
    }
    // The hook must not carry the node's identity, or stopping the node would stop the hook.
    let script = format!(
        "exec env -u SKY_LOCAL_NODE -u SKY_LOCAL_NODE_IP -u SKY_LOCAL_NODE_RANK {} {} \"$1\" -y {}",
        assigns.join(" "),
        sh_quote(&sky),
        sh_quote(cluster)
    );
    vec!["sh".into(), "-c".into(), script, "sky-autostop".into()]
}

pub fn config(env: &HostEnv, args: &AgentArgs) -> Result<AgentConfig, String> {
    let ip: IpAddr = args
        .ip
        .as_deref()
        .unwrap_or("127.0.0.1")
        .parse()
        .map_err(|e| {
            format!(
                "--ip {}: not an IP address ({e})",
                args.ip.as_deref().unwrap_or_default()
            )
        })?;
    let listen = SocketAddr::new(ip, 0);
    let home = env.home.clone();
    if !args.head {
        return Ok(AgentConfig::worker(home, listen, args.rank));
    }
    let file = args
        .cluster_file
        .as_deref()
        .ok_or("--head needs --cluster-file")?;
    let path = if std::path::Path::new(file).is_absolute() {
        file.into()
    } else {
        home.join(file)
    };
    let cluster =
        ClusterInfo::load(&path).map_err(|e| format!("failed to load the cluster file: {e}"))?;
    let hook = autostop_hook(env, &cluster.name);
    let mut cfg = AgentConfig::head(home, listen, cluster);
    cfg.rank = args.rank;
    cfg.autostop_hook = hook;
    Ok(cfg)
}
