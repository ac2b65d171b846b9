//! `sky validate FILE...`: checks task YAMLs with no credentials and no network, as SkyPilot's
//! task loader does: syntax, schema, field semantics, pipelines, and names the catalog must
//! know. A valid file may still need values at launch (envs and secrets written as null); they
//! are listed, not refused. Names the bundled catalogs lack (accelerators, instance types) are
//! warnings, since a Kubernetes cluster or an SSH node pool may offer them; `--strict` makes
//! them errors, as `sky launch` does.

use serde_json::json;
use sky_catalog::Catalog;
use sky_optimizer::Severity;
use sky_spec::{Diagnostic, Task, TaskFile};

use crate::{args::ValidateArgs, exit, hostenv::HostEnv, taskload};

/// What `sky validate` found in one file.
#[derive(Default)]
struct FileReport {
    /// Errors: the file is invalid.
    problems: Vec<Diagnostic>,
    /// Names the bundled catalogs lack (errors under `--strict`).
    warnings: Vec<Diagnostic>,
    /// `a task` or `a pipeline of N tasks`, when the file parsed.
    summary: String,
    /// Envs written as null, to give at launch with `--env`.
    required_envs: Vec<String>,
    /// Secrets written as null, to give at launch with `--secret`.
    required_secrets: Vec<String>,
}

impl FileReport {
    fn failed(problems: Vec<Diagnostic>) -> Self {
        FileReport {
            problems,
            ..FileReport::default()
        }
    }

    /// Adds one task's catalog findings (`doc`: its document index, to prefix paths) and its
    /// required values.
    fn add_task(&mut self, catalog: &Catalog, task: &Task, doc: Option<usize>, strict: bool) {
        for f in sky_optimizer::check_task(catalog, task) {
            let mut d = f.diagnostic;
            if let Some(doc) = doc {
                d.path = d.path.replacen('$', &format!("$[{doc}]"), 1);
            }
            if f.severity == Severity::Warning && !strict {
                self.warnings.push(d);
            } else {
                self.problems.push(d);
            }
        }
        for (have, add) in [
            (&mut self.required_envs, &task.required_envs),
            (&mut self.required_secrets, &task.required_secrets),
        ] {
            for k in add {
                if !have.contains(k) {
                    have.push(k.clone());
                }
            }
        }
    }

    /// `; needs at launch: --env K=VALUE --secret S=VALUE`, or nothing.
    fn needs_at_launch(&self) -> String {
        let flags: Vec<String> = self
            .required_envs
            .iter()
            .map(|k| format!("--env {k}=VALUE"))
            .chain(
                self.required_secrets
                    .iter()
                    .map(|k| format!("--secret {k}=VALUE")),
            )
            .collect();
        if flags.is_empty() {
            String::new()
        } else {
            format!("; needs at launch: {}", flags.join(" "))
        }
    }
}

fn check_file(path: &std::path::Path, opts: &sky_spec::ParseOptions, strict: bool) -> FileReport {
    let text = match crate::hostenv::read_text_file(path) {
        Ok(t) => t,
        Err(e) => {
            return FileReport::failed(vec![Diagnostic {
                path: "$".into(),
                message: format!("failed to read the file: {e}"),
                line_col: None,
            }]);
        }
    };
    // SkyPilot's loader rules: what must be supplied at launch is listed, not refused.
    let file = match sky_spec::check_task_file(&text, opts) {
        Ok(f) => f,
        Err(d) => return FileReport::failed(d.0),
    };
    let catalog = Catalog::bundled();
    let mut report = FileReport::default();
    match &file {
        TaskFile::Task(t) => {
            report.add_task(catalog, t, None, strict);
            report.summary = "a task".to_string();
        }
        TaskFile::Pipeline(p) => {
            for (i, t) in p.tasks.iter().enumerate() {
                // Documents are counted from the file's first: a header is document 0.
                let doc = i + usize::from(p.name.is_some());
                report.add_task(catalog, t, Some(doc), strict);
            }
            report.summary = format!("a pipeline of {} tasks", p.tasks.len());
        }
    }
    report
}

fn json_diags(ds: &[Diagnostic]) -> Vec<serde_json::Value> {
    ds.iter()
        .map(|d| {
            json!({
                "path": d.path,
                "message": d.message,
                "line": d.line_col.map(|x| x.0),
                "column": d.line_col.map(|x| x.1),
            })
        })
        .collect()
}

pub fn run(env: &HostEnv, args: &ValidateArgs) -> i32 {
    let opts = match taskload::parse_options(env, &args.env, args.env_file.as_deref(), &args.secret)
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}", e.message);
            return exit::INVALID_INPUT;
        }
    };
    let mut any_invalid = false;
    let mut any_warning = false;
    let mut report = Vec::new();
    for file in &args.files {
        let r = check_file(file, &opts, args.strict);
        let valid = r.problems.is_empty();
        any_invalid |= !valid;
        any_warning |= !r.warnings.is_empty();
        if args.json {
            report.push(json!({
                "file": file.display().to_string(),
                "valid": valid,
                "problems": json_diags(&r.problems),
                "warnings": json_diags(&r.warnings),
                "required_at_launch": {
                    "envs": r.required_envs,
                    "secrets": r.required_secrets,
                },
            }));
            continue;
        }
        for d in &r.problems {
            println!("{}: {d}", file.display());
        }
        for d in &r.warnings {
            println!("{}: warning: {d}", file.display());
        }
        if valid {
            println!(
                "{}: ok ({}{})",
                file.display(),
                r.summary,
                r.needs_at_launch()
            );
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return if any_invalid {
            exit::INVALID_INPUT
        } else {
            exit::OK
        };
    }
    if any_warning {
        eprintln!(
            "warning: the bundled catalogs lack these names; the file is valid (a Kubernetes cluster or an SSH node pool may offer them), but `sky launch` on the catalog clouds refuses them. `sky validate --strict` treats them as errors."
        );
    }
    if any_invalid {
        let n = args.files.len();
        eprintln!(
            "validation failed ({n} file{} checked)",
            if n == 1 { "" } else { "s" }
        );
        exit::INVALID_INPUT
    } else {
        exit::OK
    }
}
