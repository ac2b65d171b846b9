//! `~/.sky/ssh_node_pools.yaml`: SkyPilot's SSH node pools (existing machines grouped in pools;
//! each pool is a region of the `ssh` cloud, `--infra ssh/<pool>`).
//!
//! ```yaml
//! my-box:
//!   user: ubuntu                      # default for the hosts below
//!   identity_file: ~/.ssh/id_ed25519
//!   hosts:
//!     - 192.168.1.10
//!     - ip: 192.168.1.11
//!       user: admin                   # per-host override
//!       identity_file: ~/.ssh/other
//! ```
//! sky-rs extensions (pool or host level): `port` (default 22), `known_hosts_file` and
//! `strict_host_key_checking` (`yes`, `no`, `accept-new`). Parsed from bytes given by the
//! caller; every problem is reported with its path.

use yaml_rust2::Yaml;

use crate::{Diagnostic, Diagnostics};

/// One host of a pool, with the pool's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshHost {
    pub ip: String,
    pub user: Option<String>,
    pub identity_file: Option<String>,
    pub port: u16,
    pub known_hosts_file: Option<String>,
    pub strict_host_key_checking: Option<String>,
}

/// One pool (a region of the `ssh` cloud).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshPool {
    pub name: String,
    pub hosts: Vec<SshHost>,
}

/// Parses the text of `ssh_node_pools.yaml`, pools in file order. An empty file has no pools.
pub fn parse_ssh_node_pools(text: &str) -> Result<Vec<SshPool>, Diagnostics> {
    let docs =
        crate::yaml_load::load_yaml(text).map_err(|e| Diagnostics(vec![e.to_diagnostic()]))?;
    let mut problems = Vec::new();
    let mut pools = Vec::new();
    let doc = docs.into_iter().next().unwrap_or(Yaml::Null);
    let map = match &doc {
        Yaml::Null => return Ok(pools),
        Yaml::Hash(h) => h,
        _ => {
            return Err(one("$", "expected a mapping of pool names to pools"));
        }
    };
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            problems.push(diag("$", "pool names must be strings"));
            continue;
        };
        let path = format!("$.{name}");
        if !valid_pool_name(name) {
            problems.push(diag(
                &path,
                "pool names may use letters, digits, '-', '_' and '.' only",
            ));
        }
        let Yaml::Hash(_) = v else {
            problems.push(diag(&path, "expected a mapping with `hosts:`"));
            continue;
        };
        check_keys(v, &path, &["hosts"], &mut problems);
        let defaults = host_fields(v, &path, None, &mut problems);
        let mut hosts = Vec::new();
        match &v["hosts"] {
            Yaml::Array(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let hp = format!("{path}.hosts[{i}]");
                    match item {
                        Yaml::String(ip) => hosts.push(SshHost {
                            ip: ip.clone(),
                            ..defaults.clone()
                        }),
                        Yaml::Hash(_) => {
                            check_keys(item, &hp, &["ip"], &mut problems);
                            let mut h = host_fields(item, &hp, Some(&defaults), &mut problems);
                            match item["ip"].as_str() {
                                Some(ip) if !ip.is_empty() => h.ip = ip.to_owned(),
                                _ => problems.push(diag(&hp, "a host needs `ip:` (a string)")),
                            }
                            hosts.push(h);
                        }
                        _ => {
                            problems.push(diag(&hp, "expected an address or a mapping with `ip:`"))
                        }
                    }
                }
            }
            _ => problems.push(diag(
                &format!("{path}.hosts"),
                "expected a non-empty list of hosts",
            )),
        }
        pools.push(SshPool {
            name: name.to_owned(),
            hosts,
        });
    }
    if problems.is_empty() {
        Ok(pools)
    } else {
        Err(Diagnostics(problems))
    }
}

fn valid_pool_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

const HOST_KEYS: &[&str] = &[
    "user",
    "identity_file",
    "port",
    "known_hosts_file",
    "strict_host_key_checking",
    "password",
    "use_ssh_config",
];

fn check_keys(y: &Yaml, path: &str, extra: &[&str], problems: &mut Vec<Diagnostic>) {
    if let Yaml::Hash(h) = y {
        for k in h.keys() {
            let key = k.as_str().unwrap_or("");
            if !HOST_KEYS.contains(&key) && !extra.contains(&key) {
                let mut valid: Vec<&str> = HOST_KEYS.to_vec();
                valid.extend(extra);
                problems.push(diag(
                    &format!("{path}.{key}"),
                    &format!("unknown key; valid keys: {}", valid.join(", ")),
                ));
            }
        }
    }
}

fn host_fields(
    y: &Yaml,
    path: &str,
    defaults: Option<&SshHost>,
    problems: &mut Vec<Diagnostic>,
) -> SshHost {
    let mut h = defaults.cloned().unwrap_or(SshHost {
        ip: String::new(),
        user: None,
        identity_file: None,
        port: 22,
        known_hosts_file: None,
        strict_host_key_checking: None,
    });
    let mut string = |key: &str, slot: &mut Option<String>| match &y[key] {
        Yaml::BadValue | Yaml::Null => {}
        Yaml::String(s) => *slot = Some(s.clone()),
        _ => problems.push(diag(&format!("{path}.{key}"), "expected a string")),
    };
    string("user", &mut h.user);
    string("identity_file", &mut h.identity_file);
    string("known_hosts_file", &mut h.known_hosts_file);
    string("strict_host_key_checking", &mut h.strict_host_key_checking);
    match &y["port"] {
        Yaml::BadValue | Yaml::Null => {}
        Yaml::Integer(p) if (1..=65535).contains(p) => h.port = *p as u16,
        _ => problems.push(diag(
            &format!("{path}.port"),
            "expected a port number (1-65535)",
        )),
    }
    if let Some(v) = &h.strict_host_key_checking
        && !matches!(v.as_str(), "yes" | "no" | "accept-new")
    {
        problems.push(diag(
            &format!("{path}.strict_host_key_checking"),
            &format!("`{v}` is not one of yes, no, accept-new"),
        ));
    }
    if !matches!(y["password"], Yaml::BadValue | Yaml::Null) {
        problems.push(diag(
            &format!("{path}.password"),
            "password logins are not supported by sky-rs; use identity_file (key-based login)",
        ));
    }
    h
}

fn diag(path: &str, message: &str) -> Diagnostic {
    Diagnostic {
        path: path.to_owned(),
        message: message.to_owned(),
        line_col: None,
    }
}

fn one(path: &str, message: &str) -> Diagnostics {
    Diagnostics(vec![diag(path, message)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skypilot_format_with_overrides() {
        let pools = parse_ssh_node_pools(
            "p1:\n  user: sky\n  identity_file: ~/.ssh/k\n  hosts:\n    - 10.0.0.1\n    - ip: 10.0.0.2\n      user: admin\n      port: 2222\np2:\n  hosts: [h]\n",
        )
        .unwrap();
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].name, "p1");
        assert_eq!(pools[0].hosts[0].user.as_deref(), Some("sky"));
        assert_eq!(pools[0].hosts[0].identity_file.as_deref(), Some("~/.ssh/k"));
        assert_eq!(pools[0].hosts[1].user.as_deref(), Some("admin"));
        assert_eq!(pools[0].hosts[1].port, 2222);
        assert_eq!(pools[0].hosts[1].identity_file.as_deref(), Some("~/.ssh/k"));
        assert_eq!(pools[1].hosts[0].ip, "h");
        assert!(parse_ssh_node_pools("").unwrap().is_empty());
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let e = parse_ssh_node_pools(
            "p:\n  hosts:\n    - {user: x}\n  password: pw\n  strict_host_key_checking: maybe\n  colour: red\nq: {}\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|d| d.path.as_str()).collect();
        assert!(paths.contains(&"$.p.hosts[0]"), "{paths:?}");
        assert!(paths.contains(&"$.p.password"), "{paths:?}");
        assert!(paths.contains(&"$.p.strict_host_key_checking"), "{paths:?}");
        assert!(paths.contains(&"$.p.colour"), "{paths:?}");
        assert!(paths.contains(&"$.q.hosts"), "{paths:?}");
    }
}
