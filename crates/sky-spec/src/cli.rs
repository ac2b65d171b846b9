//! What the CLI layers on a task: `--env-file` parsing, `sky launch 'cmd'` tasks, and
//! resource overrides (`--gpus`, `--cpus`, `--infra`, ...).

use indexmap::IndexMap;
use yaml_rust2::Yaml;

use crate::model::*;
use crate::resources::{
    normalize_ports, parse_accel_str, parse_cpus, parse_disk_tier, parse_infra, parse_memory,
    parse_port_item,
};
use crate::util::{Ctx, is_env_key, is_valid_name};
use crate::{Diagnostic, Diagnostics};

/// Resource and task overrides given on the command line. `None` / empty = not given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskOverrides {
    pub name: Option<String>,
    pub workdir: Option<String>,
    pub infra: Option<String>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub gpus: Option<String>,
    pub cpus: Option<String>,
    pub memory: Option<String>,
    pub instance_type: Option<String>,
    pub disk_tier: Option<String>,
    pub image_id: Option<String>,
    pub num_nodes: Option<u32>,
    pub use_spot: Option<bool>,
    pub disk_size: Option<u64>,
    pub ports: Vec<String>,
}

/// The task `sky launch 'echo hi'` runs: SkyPilot names it `sky-cmd`.
pub fn task_from_command(cmd: &str) -> Task {
    Task {
        name: Some("sky-cmd".into()),
        run: Some(cmd.to_string()),
        ..Task::default()
    }
}

/// Applies CLI overrides to a task; resource overrides apply to every candidate. Diagnostic
/// paths name the flag (`--gpus`).
pub fn apply_overrides(task: &mut Task, o: &TaskOverrides) -> Result<(), Diagnostics> {
    let mut ctx = Ctx::default();
    if let Some(n) = &o.name {
        if is_valid_name(n) {
            task.name = Some(n.clone());
        } else {
            ctx.err("--name", format!("invalid task name {n:?}: names must match `[a-zA-Z0-9]+(?:[._-]{{1,2}}[a-zA-Z0-9]+)*`"));
        }
    }
    if let Some(w) = &o.workdir {
        task.workdir = Some(Workdir::Path(w.clone()));
    }
    if let Some(n) = o.num_nodes {
        if n == 0 {
            ctx.err(
                "--num-nodes",
                "num_nodes should be a positive integer, found 0",
            );
        } else {
            task.num_nodes = n;
        }
    }
    if o.infra.is_some() && (o.cloud.is_some() || o.region.is_some() || o.zone.is_some()) {
        ctx.err("--infra", "cannot specify both `--infra` and `--cloud`, `--region` or `--zone`; use `--infra cloud/region/zone`");
    }
    let location = o
        .infra
        .as_ref()
        .and_then(|s| parse_infra(&mut ctx, s, "--infra"));
    let cloud = o
        .cloud
        .as_ref()
        .and_then(|c| match crate::canonical_cloud(c) {
            Some(c) => Some(c.to_string()),
            None => {
                ctx.err(
                    "--cloud",
                    format!(
                        "unknown cloud {c:?}; valid clouds: {}",
                        crate::clouds::CLOUDS.join(", ")
                    ),
                );
                None
            }
        });
    let gpus = o
        .gpus
        .as_ref()
        .and_then(|g| parse_accel_str(&mut ctx, g, "--gpus"));
    let cpus = o
        .cpus
        .as_ref()
        .and_then(|c| parse_cpus(&mut ctx, &Yaml::String(c.clone()), "--cpus"));
    let memory = o
        .memory
        .as_ref()
        .and_then(|m| parse_memory(&mut ctx, &Yaml::String(m.clone()), "--memory"));
    let disk_tier = o
        .disk_tier
        .as_ref()
        .and_then(|d| parse_disk_tier(&mut ctx, d, "--disk-tier"));
    if o.disk_size == Some(0) {
        ctx.err(
            "--disk-size",
            "disk_size must be a positive integer (GB), found 0",
        );
    }
    let ports = if o.ports.is_empty() {
        None
    } else {
        let mut v = Vec::new();
        for p in &o.ports {
            for item in p.split(',') {
                v.extend(parse_port_item(&mut ctx, item, "--ports"));
            }
        }
        Some(normalize_ports(v))
    };
    if !ctx.diags.is_empty() {
        return Err(Diagnostics(ctx.diags));
    }
    let apply = |r: &mut Resources| {
        if let Some((c, reg, z)) = &location {
            r.cloud = c.clone();
            r.region = reg.clone();
            r.zone = z.clone();
        }
        if let Some(c) = &cloud {
            r.cloud = Some(c.clone());
        }
        if let Some(x) = &o.region {
            r.region = Some(x.clone());
        }
        if let Some(x) = &o.zone {
            r.zone = Some(x.clone());
        }
        if let Some(g) = &gpus {
            r.accelerators = Some(g.clone());
        }
        if let Some(c) = cpus {
            r.cpus = Some(c);
        }
        if let Some(m) = memory {
            r.memory = Some(m);
        }
        if let Some(x) = &o.instance_type {
            r.instance_type = Some(x.clone());
        }
        if let Some(d) = disk_tier {
            r.disk_tier = Some(d);
        }
        if let Some(i) = &o.image_id {
            r.image_id = Some(ImageId::All(i.clone()));
        }
        if let Some(s) = o.use_spot {
            r.use_spot = s;
            r.use_spot_specified = true;
        }
        if let Some(d) = o.disk_size {
            r.disk_size = d;
        }
        if let Some(p) = &ports {
            r.ports = p.clone();
        }
    };
    let choice = std::mem::take(&mut task.resources);
    task.resources = match choice {
        ResourceChoice::Single(mut r) => {
            apply(&mut r);
            ResourceChoice::Single(r)
        }
        ResourceChoice::AnyOf(v) | ResourceChoice::Ordered(v) if v.is_empty() => {
            ResourceChoice::default()
        }
        ResourceChoice::AnyOf(v) => collapse(v, &apply, ResourceChoice::AnyOf),
        ResourceChoice::Ordered(v) => collapse(v, &apply, ResourceChoice::Ordered),
    };
    Ok(())
}

/// Applies `f` to each candidate, drops duplicates, and collapses to one candidate if one is left.
fn collapse(
    v: Vec<Resources>,
    f: &dyn Fn(&mut Resources),
    wrap: fn(Vec<Resources>) -> ResourceChoice,
) -> ResourceChoice {
    let mut out: Vec<Resources> = Vec::with_capacity(v.len());
    for mut r in v {
        f(&mut r);
        if !out.contains(&r) {
            out.push(r);
        }
    }
    if out.len() == 1 {
        ResourceChoice::Single(out.remove(0))
    } else {
        wrap(out)
    }
}

/// Parses one `--env` / `--secret` argument (`flag` names it in messages): `KEY=VALUE`, or
/// `KEY` alone, whose value `lookup` finds (the CLI passes the local environment). The key
/// must match `[A-Za-z_][A-Za-z0-9_]*` and the value may not hold a NUL byte. Messages name the
/// key, never the value (a secret's value stays out of errors).
pub fn parse_env_arg(
    flag: &str,
    raw: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(String, String), Diagnostic> {
    let (key, value) = match raw.split_once('=') {
        Some((k, v)) => (k, v.to_string()),
        None => {
            if let Some(d) = check_env_key(flag, raw) {
                return Err(d);
            }
            match lookup(raw) {
                Some(v) => (raw, v),
                None => {
                    return Err(Diagnostic {
                        path: flag.to_string(),
                        message: format!(
                            "{raw} is not set in the local environment; pass {flag} {raw}=VALUE or export {raw}"
                        ),
                        line_col: None,
                    });
                }
            }
        }
    };
    match check_env_pair(flag, key, &value) {
        Some(d) => Err(d),
        None => Ok((key.to_string(), value)),
    }
}

/// A problem with an environment variable name given with `flag`, if any.
fn check_env_key(flag: &str, key: &str) -> Option<Diagnostic> {
    if is_env_key(key) {
        return None;
    }
    let what = if key.is_empty() {
        "the variable name is empty".to_string()
    } else {
        format!("invalid environment variable name {key:?}")
    };
    Some(Diagnostic {
        path: flag.to_string(),
        message: format!(
            "{what}; names must match `[A-Za-z_][A-Za-z0-9_]*` (a letter or `_`, then letters, digits or `_`); write {flag} NAME=VALUE, e.g. {flag} MY_VAR=1"
        ),
        line_col: None,
    })
}

/// A problem with a `flag` `key=value` pair (bad key, NUL byte in the value), if any.
pub(crate) fn check_env_pair(flag: &str, key: &str, value: &str) -> Option<Diagnostic> {
    if let Some(d) = check_env_key(flag, key) {
        return Some(d);
    }
    value.contains('\0').then(|| Diagnostic {
        path: flag.to_string(),
        message: format!(
            "the value of `{key}` contains a NUL byte, which an environment variable cannot hold; remove it"
        ),
        line_col: None,
    })
}

/// Parses a dotenv file: `K=V` lines, `export K=V`, `#` comments, single or double quotes.
pub fn parse_env_file(text: &str) -> Result<IndexMap<String, String>, Diagnostics> {
    let mut out = IndexMap::new();
    let mut diags = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let line_no = i + 1;
        let err = |diags: &mut Vec<Diagnostic>, msg: String| {
            diags.push(Diagnostic {
                path: format!("line {line_no}"),
                message: msg,
                line_col: Some((line_no, 1)),
            })
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            err(&mut diags, format!("expected `KEY=VALUE`, found {line:?}"));
            continue;
        };
        let key = k.trim();
        if !is_env_key(key) {
            err(
                &mut diags,
                format!(
                    "invalid environment variable name {key:?}; names must match `[A-Za-z_][A-Za-z0-9_]*`"
                ),
            );
            continue;
        }
        let v = v.trim_start();
        let value = if let Some(rest) = v.strip_prefix('"') {
            // Double quotes may span lines and understand backslash escapes.
            let mut buf = String::new();
            let mut cur = rest.to_string();
            let mut closed = false;
            loop {
                let mut chars = cur.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some('n') => buf.push('\n'),
                            Some('t') => buf.push('\t'),
                            Some('r') => buf.push('\r'),
                            Some(o) => buf.push(o),
                            None => buf.push('\\'),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        o => buf.push(o),
                    }
                }
                if closed {
                    break;
                }
                match lines.next() {
                    Some((_, next)) => {
                        buf.push('\n');
                        cur = next.to_string();
                    }
                    None => break,
                }
            }
            if !closed {
                err(
                    &mut diags,
                    format!("unterminated double quote in the value of `{key}`"),
                );
                continue;
            }
            buf
        } else if let Some(rest) = v.strip_prefix('\'') {
            match rest.find('\'') {
                Some(end) => rest[..end].to_string(),
                None => {
                    err(
                        &mut diags,
                        format!("unterminated single quote in the value of `{key}`"),
                    );
                    continue;
                }
            }
        } else {
            let v = match v.find(" #") {
                Some(p) => &v[..p],
                None => v,
            };
            v.trim().to_string()
        };
        if value.contains('\0') {
            err(
                &mut diags,
                format!(
                    "the value of `{key}` contains a NUL byte, which an environment variable cannot hold; remove it"
                ),
            );
            continue;
        }
        out.insert(key.to_string(), value);
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics(diags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file() {
        let m = parse_env_file("# c\nexport A=1\nB = 'x y'\nC=\"a\\nb\"\nD=v # comment\n\nE=\n")
            .unwrap_or_default();
        assert_eq!(m.get("A").map(String::as_str), Some("1"));
        assert_eq!(m.get("B").map(String::as_str), Some("x y"));
        assert_eq!(m.get("C").map(String::as_str), Some("a\nb"));
        assert_eq!(m.get("D").map(String::as_str), Some("v"));
        assert_eq!(m.get("E").map(String::as_str), Some(""));
        let e = parse_env_file("1X=2\nnoequals\n").err().map(|d| d.0.len());
        assert_eq!(e, Some(2));
    }

    #[test]
    fn overrides() {
        let mut t = task_from_command("echo hi");
        assert_eq!(t.num_nodes, 1);
        let o = TaskOverrides {
            gpus: Some("A100:8".into()),
            infra: Some("aws/us-east-1".into()),
            ports: vec!["8080".into(), "8081".into()],
            ..Default::default()
        };
        assert!(apply_overrides(&mut t, &o).is_ok());
        let r = &t.resources.candidates()[0];
        assert_eq!(r.cloud.as_deref(), Some("aws"));
        assert_eq!(
            r.ports,
            vec![PortRange {
                start: 8080,
                end: 8081
            }]
        );
        let bad = TaskOverrides {
            gpus: Some("A100:x".into()),
            cpus: Some("lots".into()),
            ..Default::default()
        };
        let d = apply_overrides(&mut t, &bad)
            .err()
            .map(|d| d.0)
            .unwrap_or_default();
        assert_eq!(
            d.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
            vec!["--gpus", "--cpus"]
        );
    }
}
