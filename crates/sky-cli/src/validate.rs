//! `sky validate FILE...`: checks task YAMLs with no credentials and no network: syntax,
//! schema, field semantics, required envs, pipelines, and names the catalog must know.

use serde_json::json;
use sky_catalog::Catalog;
use sky_spec::{Diagnostic, TaskFile};

use crate::{ValidateArgs, exit, hostenv::HostEnv, taskload};

/// The problems of one file (empty = valid) and a one-line summary when valid.
fn check_file(path: &std::path::Path, opts: &sky_spec::ParseOptions) -> (Vec<Diagnostic>, String) {
    let text = match crate::hostenv::read_text_file(path) {
        Ok(t) => t,
        Err(e) => {
            return (
                vec![Diagnostic {
                    path: "$".into(),
                    message: format!("failed to read the file: {e}"),
                    line_col: None,
                }],
                String::new(),
            );
        }
    };
    let file = match sky_spec::parse_task_file(&text, opts) {
        Ok(f) => f,
        Err(d) => return (d.0, String::new()),
    };
    let catalog = Catalog::bundled();
    match &file {
        TaskFile::Task(t) => (
            sky_optimizer::validate_task(catalog, t),
            "a task".to_string(),
        ),
        TaskFile::Pipeline(p) => {
            let mut all = Vec::new();
            for (i, t) in p.tasks.iter().enumerate() {
                for mut d in sky_optimizer::validate_task(catalog, t) {
                    // Documents are counted from the file's first: a header is document 0.
                    let doc = i + usize::from(p.name.is_some());
                    d.path = d.path.replacen('$', &format!("$[{doc}]"), 1);
                    all.push(d);
                }
            }
            (all, format!("a pipeline of {} tasks", p.tasks.len()))
        }
    }
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
    let mut report = Vec::new();
    for file in &args.files {
        let (problems, summary) = check_file(file, &opts);
        any_invalid |= !problems.is_empty();
        if args.json {
            report.push(json!({
                "file": file.display().to_string(),
                "valid": problems.is_empty(),
                "problems": problems.iter().map(|d| json!({
                    "path": d.path,
                    "message": d.message,
                    "line": d.line_col.map(|x| x.0),
                    "column": d.line_col.map(|x| x.1),
                })).collect::<Vec<_>>(),
            }));
        } else if problems.is_empty() {
            println!("{}: ok ({summary})", file.display());
        } else {
            for d in &problems {
                println!("{}: {d}", file.display());
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if any_invalid {
        let n = report.len().max(args.files.len());
        eprintln!(
            "validation failed ({n} file{} checked)",
            if n == 1 { "" } else { "s" }
        );
    }
    if any_invalid {
        exit::INVALID_INPUT
    } else {
        exit::OK
    }
}
