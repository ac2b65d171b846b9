//! `sky-spec`: SkyPilot's task YAML as Rust values.
//!
//! It parses and validates task YAML (every field, SkyPilot's meanings and defaults), reporting
//! every problem at once with its YAML path; applies `--env` / `--env-file` / `--secret`
//! overrides and `${VAR}` substitution; dumps a task back to YAML; and describes the format as a
//! JSON Schema. Used by the optimizer, the launcher and the CLI.
//!
//! Every YAML text is loaded through [`load_yaml`], which refuses oversized texts, alias bombs
//! and deep nesting. [`names`] checks the names users give clusters, jobs, services and
//! buckets.
//!
//! Invariant: this crate does no IO beyond reading the bytes it is given: no files, no
//! environment, no clock, no network, no processes. Catalog-dependent checks (unknown
//! accelerator names, zones outside a region) live in `sky-optimizer`.

pub mod buckets;
mod cli;
mod clouds;
mod emit;
pub mod model;
pub mod names;
mod parse;
mod resources;
mod schema;
pub mod sky_config;
pub mod ssh_pools;
mod util;
pub mod yaml_load;

use indexmap::IndexMap;

pub use cli::{TaskOverrides, apply_overrides, parse_env_arg, parse_env_file, task_from_command};
pub use clouds::{CLOUDS, canonical_cloud};
pub use model::*;
pub use resources::parse_duration;
pub use yaml_load::{MAX_YAML_BYTES, YamlLoadError, load_yaml};

/// Values given on the command line that the task loader merges before substitution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// `--env` / `--env-file` values, already merged by the CLI in SkyPilot's precedence.
    /// They override (or add to) the YAML's `envs` before `${VAR}` substitution.
    pub env_overrides: IndexMap<String, String>,
    /// `--secret` values; they override (or add to) the YAML's `secrets`.
    pub secret_overrides: IndexMap<String, String>,
}

/// Parses and validates a task file (one task, or a multi-document pipeline) for running it:
/// SkyPilot's loader rules plus what SkyPilot checks when it runs the task (every env and
/// secret written as null has been given a value by `--env` / `--secret`; storage objects can
/// be constructed: a name or a source, a source for COPY, a bucket name for a local source, no
/// URI as the name or in a list source). Every problem is reported, each with its YAML path.
/// Used by `sky launch` and `sky exec`.
pub fn parse_task_file(text: &str, opts: &ParseOptions) -> Result<TaskFile, Diagnostics> {
    parse::parse_task_file(text, opts, parse::Stage::Launch)
}

/// Checks a task file with SkyPilot's task loader rules only (`Task.from_yaml_config`), as
/// `sky validate` does: a valid file may still need values at launch. Envs and secrets left
/// null are listed in [`Task::required_envs`] / [`Task::required_secrets`] (they are not
/// substituted in `${VAR}`), and the storage checks SkyPilot makes when it constructs a
/// bucket at launch are left to [`parse_task_file`].
pub fn check_task_file(text: &str, opts: &ParseOptions) -> Result<TaskFile, Diagnostics> {
    parse::parse_task_file(text, opts, parse::Stage::Load)
}

/// Checks what `sky serve up` needs beyond a valid task: a `service` with a
/// `readiness_probe`. Empty when the task can be served.
pub fn validate_service_for_serve(task: &Task) -> Vec<Diagnostic> {
    parse::validate_service_for_serve(task)
}

/// Dumps a task file as YAML that parses back to an equal [`TaskFile`] (secrets included).
pub fn to_yaml(file: &TaskFile) -> String {
    emit::to_yaml(file, false)
}

/// Like [`to_yaml`], with every inline secret value replaced by `<redacted>`.
pub fn to_yaml_redacted(file: &TaskFile) -> String {
    emit::to_yaml(file, true)
}

/// A JSON Schema (draft 2020-12) of the task YAML, for editors and CI.
pub fn json_schema() -> serde_json::Value {
    schema::json_schema()
}

/// `NAME:COUNT` as SkyPilot writes an accelerator request (`A100:8`, `H100:0.5`).
pub fn accelerator_string(a: &AcceleratorRequest) -> String {
    emit::accel_str(a)
}

/// `80` or `1000-1010`.
pub fn port_range_string(p: &PortRange) -> String {
    emit::port_str(p)
}

/// One problem found in a task file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// JSONPath-like location, e.g. `$.resources.cpus`; `$` for the whole document. In a
    /// multi-document file the document index is prefixed: `$[1].resources`.
    pub path: String,
    /// A lowercase message that says what was found and what would be valid.
    pub message: String,
    /// 1-based line and column, when known (YAML syntax errors).
    pub line_col: Option<(usize, usize)>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line_col {
            Some((l, c)) => write!(f, "{} (line {l}, column {c}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every problem found in one task file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Diagnostics(pub Vec<Diagnostic>);
