//! `sky agent serve` arguments → the agent's configuration.
//!
//! The agent runs with HOME = the node's home; the client's HOME (needed by the autostop hook,
//! which runs `sky stop|down` against the client's state) arrives in `SKY_CLIENT_HOME`.
//! `SKY_AUTOSTOP_MINUTE_MS` (a test knob, see `docs/cli.md`) shortens the autostop minute.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sky_agent::{AgentConfig, ClusterInfo};

use crate::{args::AgentArgs, hostenv::HostEnv};

use sky_provider::shell_quote as sh_quote;

/// The argv the head agent runs when autostop fires (`stop` or `down` is appended as `$1`).
pub fn autostop_hook(env: &HostEnv, cluster: &str) -> Vec<String> {
    let sky = env
        .sky_binary()
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

/// The variable that shortens the head agent's autostop "minute" (milliseconds; tests only).
pub const AUTOSTOP_MINUTE_ENV: &str = "SKY_AUTOSTOP_MINUTE_MS";

/// The longest autostop tick (the agent's default).
const MAX_AUTOSTOP_TICK: Duration = Duration::from_secs(20);

/// `SKY_AUTOSTOP_MINUTE_MS` as a duration: `None` when unset (one minute is 60 s), an error
/// naming the variable when it is not a positive whole number of milliseconds.
pub fn autostop_minute(env: &HostEnv) -> Result<Option<Duration>, String> {
    let Some(v) = env.var(AUTOSTOP_MINUTE_ENV) else {
        return Ok(None);
    };
    match v.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(format!(
            "{AUTOSTOP_MINUTE_ENV}={v}: expected a positive whole number of milliseconds \
             (the length of one autostop minute, for tests); unset it for 60 s"
        )),
    }
}

/// How often the agent checks for idleness when a minute lasts `minute`: a third of it,
/// at least 1 ms and at most the default 20 s.
fn autostop_tick(minute: Duration) -> Duration {
    (minute / 3).clamp(Duration::from_millis(1), MAX_AUTOSTOP_TICK)
}

pub fn config(env: &HostEnv, args: &AgentArgs) -> Result<AgentConfig, String> {
    let minute = autostop_minute(env)?;
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
    // A remote head stops its own cluster through the provider; a node on this machine runs
    // `sky stop|down` against the client's state.
    let hook = if home.join(sky_provider::SELF_STOP_FILE).is_file() {
        let sky = env
            .sky_binary()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "sky".into());
        vec![sky, "agent".into(), "self-stop".into()]
    } else {
        autostop_hook(env, &cluster.name)
    };
    let mut cfg = AgentConfig::head(home, listen, cluster);
    cfg.rank = args.rank;
    cfg.autostop_hook = hook;
    if let Some(minute) = minute {
        cfg.autostop_minute = minute;
        cfg.autostop_tick = autostop_tick(minute);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autostop_minute_is_validated() {
        let home = std::path::Path::new("/nonexistent");
        let unset = HostEnv::for_test(home, &[]);
        assert_eq!(autostop_minute(&unset), Ok(None));
        let set = HostEnv::for_test(home, &[(AUTOSTOP_MINUTE_ENV, "300")]);
        assert_eq!(autostop_minute(&set), Ok(Some(Duration::from_millis(300))));
        for bad in ["0", "-5", "1.5", "soon"] {
            let env = HostEnv::for_test(home, &[(AUTOSTOP_MINUTE_ENV, bad)]);
            let e = autostop_minute(&env).unwrap_err();
            assert!(e.contains(AUTOSTOP_MINUTE_ENV) && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_autostop_hook_runs_the_given_sky_binary_with_the_client_home() {
        let home = std::path::Path::new("/nonexistent");
        let env = HostEnv::for_test(home, &[("SKY_CLIENT_HOME", "/home/client")])
            .with_sky_binary("/opt/sky rs/sky");
        let hook = autostop_hook(&env, "dev");
        assert_eq!(hook[..2], ["sh".to_string(), "-c".to_string()]);
        assert!(
            hook[2].contains("HOME=/home/client '/opt/sky rs/sky' \"$1\" -y dev"),
            "{hook:?}"
        );
        // Without one, the running executable (the `sky` binary itself when run as `sky`).
        let own = HostEnv::for_test(home, &[]).sky_binary().unwrap();
        assert_eq!(own, std::env::current_exe().unwrap());
    }

    #[test]
    fn autostop_tick_is_a_third_of_the_minute_within_bounds() {
        assert_eq!(
            autostop_tick(Duration::from_millis(300)),
            Duration::from_millis(100)
        );
        assert_eq!(
            autostop_tick(Duration::from_millis(1)),
            Duration::from_millis(1)
        );
        assert_eq!(autostop_tick(Duration::from_secs(60)), MAX_AUTOSTOP_TICK);
        assert_eq!(autostop_tick(Duration::from_secs(3600)), MAX_AUTOSTOP_TICK);
    }
}
