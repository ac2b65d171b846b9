//! Reading a task from the command line: a YAML file or a command, with `--env`,
//! `--env-file`, `--secret` and the resource overrides applied in SkyPilot's precedence
//! (`--env K=V` over `--env-file` over the YAML).

use std::path::Path;

use indexmap::IndexMap;
use sky_spec::{ParseOptions, TaskFile, TaskOverrides};

use crate::{args::TaskOptions, hostenv::HostEnv};

/// A failure to load a task, already rendered for the user.
#[derive(Debug)]
pub struct LoadError {
    pub message: String,
}

impl LoadError {
    fn new(message: impl Into<String>) -> Self {
        LoadError {
            message: message.into(),
        }
    }
}

/// `KEY=VALUE` or `KEY` (copied from the local environment); the key must be a variable name
/// and the value may not hold a NUL byte (`sky_spec::parse_env_arg`).
fn parse_kv(env: &HostEnv, flag: &str, raw: &str) -> Result<(String, String), LoadError> {
    sky_spec::parse_env_arg(flag, raw, |k| env.var(k).map(String::from))
        .map_err(|d| LoadError::new(format!("{flag} {}: {}", key_of(raw), d.message)))
}

/// The key part of a `KEY=VALUE` argument, for messages (a secret's value never appears).
fn key_of(raw: &str) -> &str {
    raw.split_once('=').map_or(raw, |(k, _)| k)
}

/// Builds the parse options from `--env`, `--env-file` and `--secret`.
pub fn parse_options(
    env: &HostEnv,
    envs: &[String],
    env_file: Option<&Path>,
    secrets: &[String],
) -> Result<ParseOptions, LoadError> {
    let mut env_overrides: IndexMap<String, String> = IndexMap::new();
    if let Some(file) = env_file {
        let text = crate::hostenv::read_text_file(file).map_err(|e| {
            LoadError::new(format!(
                "--env-file {}: failed to read: {e}",
                file.display()
            ))
        })?;
        let parsed = sky_spec::parse_env_file(&text)
            .map_err(|d| LoadError::new(format!("--env-file {}:\n{d}", file.display())))?;
        env_overrides.extend(parsed);
    }
    for raw in envs {
        let (k, v) = parse_kv(env, "--env", raw)?;
        env_overrides.insert(k, v);
    }
    let mut secret_overrides = IndexMap::new();
    for raw in secrets {
        let (k, v) = parse_kv(env, "--secret", raw)?;
        secret_overrides.insert(k, v);
    }
    Ok(ParseOptions {
        env_overrides,
        secret_overrides,
    })
}

/// The overrides `--gpus`, `--cpus`, ... as the spec crate takes them.
pub fn overrides(o: &TaskOptions) -> TaskOverrides {
    TaskOverrides {
        name: o.name.clone(),
        workdir: o.workdir.clone(),
        infra: o.infra.clone(),
        cloud: o.cloud.clone(),
        region: o.region.clone(),
        zone: o.zone.clone(),
        gpus: o.gpus.clone(),
        cpus: o.cpus.clone(),
        memory: o.memory.clone(),
        instance_type: o.instance_type.clone(),
        disk_tier: o.disk_tier.clone(),
        image_id: o.image_id.clone(),
        num_nodes: o.num_nodes,
        use_spot: if o.use_spot {
            Some(true)
        } else if o.no_use_spot {
            Some(false)
        } else {
            None
        },
        disk_size: o.disk_size,
        ports: o.ports.clone(),
    }
}

/// Whether the entrypoint names a YAML file (SkyPilot: a single argument ending in .yaml/.yml,
/// or an existing file).
pub fn is_yaml_entrypoint(entrypoint: &[String]) -> bool {
    match entrypoint {
        [one] => one.ends_with(".yaml") || one.ends_with(".yml") || Path::new(one).is_file(),
        _ => false,
    }
}

/// Loads the task of `sky launch` / `sky exec`: from a YAML or from a command.
/// Returns the YAML path (if any) and the task file with overrides applied.
pub fn load(
    env: &HostEnv,
    entrypoint: &[String],
    opts: &TaskOptions,
) -> Result<(Option<String>, TaskFile), LoadError> {
    let parse_opts = parse_options(env, &opts.env, opts.env_file.as_deref(), &opts.secret)?;
    let (path, mut file) = if is_yaml_entrypoint(entrypoint) {
        let path = &entrypoint[0];
        let text = crate::hostenv::read_text_file(Path::new(path))
            .map_err(|e| LoadError::new(format!("failed to read task YAML {path}: {e}")))?;
        let file = sky_spec::parse_task_file(&text, &parse_opts).map_err(|d| {
            LoadError::new(format!(
                "invalid task YAML {path}:\n{}",
                indent(&d.to_string())
            ))
        })?;
        (Some(path.clone()), file)
    } else {
        let mut task = sky_spec::task_from_command(&entrypoint.join(" "));
        for (k, v) in &parse_opts.env_overrides {
            task.envs.insert(k.clone(), v.clone());
        }
        for (k, v) in &parse_opts.secret_overrides {
            task.secrets.insert(k.clone(), v.clone());
        }
        (None, TaskFile::Task(Box::new(task)))
    };
    let ov = overrides(opts);
    let apply = |t: &mut sky_spec::Task| {
        sky_spec::apply_overrides(t, &ov)
            .map_err(|d| LoadError::new(format!("invalid option:\n{}", indent(&d.to_string()))))
    };
    match &mut file {
        TaskFile::Task(t) => apply(t)?,
        TaskFile::Pipeline(p) => {
            for t in &mut p.tasks {
                apply(t)?;
            }
        }
    }
    Ok((path, file))
}

pub fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
