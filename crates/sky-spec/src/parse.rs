//! Task files: documents, top-level fields, envs and secrets, file mounts, service.

use indexmap::IndexMap;
use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

use crate::model::*;
use crate::resources::parse_resources;
use crate::util::*;
use crate::{Diagnostic, Diagnostics, ParseOptions};

/// Every top-level key SkyPilot's task loader accepts.
pub(crate) const TOP_KEYS: &[&str] = &[
    "name",
    "workdir",
    "event_callback",
    "num_nodes",
    "resources",
    "file_mounts",
    "service",
    "pool",
    "setup",
    "run",
    "envs",
    "secrets",
    "managed_secrets",
    "inputs",
    "outputs",
    "file_mounts_mapping",
    "config",
    "volumes",
    "volume_mounts",
    "api_server_access",
    "_metadata",
];

/// Top-level keys kept verbatim in [`Task::extra`], with the YAML kind each must have.
const EXTRA_TOP: &[(&str, &str)] = &[
    ("pool", "mapping"),
    ("managed_secrets", "list"),
    ("file_mounts_mapping", "mapping"),
    ("volumes", "mapping"),
    ("volume_mounts", "list"),
    ("api_server_access", "boolean"),
    ("_metadata", "mapping"),
];

pub(crate) const STORE_TYPES: &[&str] = &[
    "s3",
    "gcs",
    "azure",
    "r2",
    "ibm",
    "oci",
    "nebius",
    "coreweave",
    "vastdata",
    "hf",
    "volume",
];
pub(crate) const FILE_MOUNT_TYPES: &[&str] = &[
    "MODEL_CHECKPOINT_RO",
    "MODEL_CHECKPOINT_RW",
    "DATASET_RO",
    "DATASET_RW",
];
pub(crate) const LB_POLICIES: &[&str] = &["round_robin", "least_load", "instance_aware_least_load"];

/// How far a task file is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// SkyPilot's task loader (`Task.from_yaml_config`): what `sky validate` accepts.
    Load,
    /// The loader plus what SkyPilot checks when it runs the task: required envs and
    /// secrets have values, storage objects can be constructed.
    Launch,
}

/// Parses a whole task file.
pub(crate) fn parse_task_file(
    text: &str,
    opts: &ParseOptions,
    stage: Stage,
) -> Result<TaskFile, Diagnostics> {
    // Bounded: refuses huge texts, alias bombs and deep nesting before building them.
    let docs =
        crate::yaml_load::load_yaml(text).map_err(|e| Diagnostics(vec![e.to_diagnostic()]))?;
    let docs: Vec<(usize, Yaml)> = docs
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !matches!(d, Yaml::Null | Yaml::BadValue))
        .collect();
    let mut all = Vec::new();
    let result = match docs.len() {
        0 => TaskFile::Task(Box::default()),
        1 => {
            let (i, d) = &docs[0];
            let t = parse_doc(&mut all, d, &root(*i), opts, stage);
            TaskFile::Task(Box::new(t))
        }
        _ => {
            let (i0, d0) = &docs[0];
            let mut name = None;
            let mut rest = &docs[..];
            if let Some(h) = header(&mut all, d0, &root(*i0)) {
                name = Some(h);
                rest = &docs[1..];
            }
            let tasks = rest
                .iter()
                .map(|(i, d)| parse_doc(&mut all, d, &root(*i), opts, stage))
                .collect();
            TaskFile::Pipeline(Pipeline { name, tasks })
        }
    };
    if all.is_empty() {
        Ok(result)
    } else {
        Err(Diagnostics(dedup(all)))
    }
}

fn dedup(v: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(v.len());
    for d in v {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

fn root(i: usize) -> String {
    if i == 0 {
        "$".into()
    } else {
        format!("$[{i}]")
    }
}

/// A pipeline header: keys exactly `{name}` or `{name, execution: serial}`.
fn header(all: &mut Vec<Diagnostic>, d: &Yaml, path: &str) -> Option<String> {
    let Yaml::Hash(h) = d else { return None };
    let name = get(h, "name")?;
    let exec = get(h, "execution");
    if h.len() != 1 + usize::from(exec.is_some()) {
        return None;
    }
    if let Some(e) = exec {
        match e {
            Yaml::String(s) if s == "serial" => {}
            other => {
                all.push(Diagnostic {
                    path: child(path, "execution"),
                    message: format!("pipeline `execution` {} is not supported; only `serial` is (job groups with `parallel` are not available yet)", show(other)),
                    line_col: None,
                });
            }
        }
    }
    match name {
        Yaml::String(s) => Some(s.clone()),
        other => {
            all.push(Diagnostic {
                path: child(path, "name"),
                message: format!("expected a pipeline name string, found {}", show(other)),
                line_col: None,
            });
            Some(String::new())
        }
    }
}

/// Stringifies an env/secret value as SkyPilot does (`str(v)`, null stays null).
fn stringify(ctx: &mut Ctx, v: &Yaml, path: &str) -> Result<Option<String>, ()> {
    match v {
        Yaml::Null => Ok(None),
        Yaml::String(s) | Yaml::Real(s) => Ok(Some(s.clone())),
        Yaml::Integer(i) => Ok(Some(i.to_string())),
        Yaml::Boolean(b) => Ok(Some(if *b { "True".into() } else { "False".into() })),
        other => {
            ctx.err(
                path,
                format!(
                    "expected a string value (or null for a required value), found {}",
                    kind(other)
                ),
            );
            Err(())
        }
    }
}

fn parse_envs(ctx: &mut Ctx, y: &Yaml, path: &str) -> IndexMap<String, Option<String>> {
    let mut out = IndexMap::new();
    let Some(h) = (match y {
        Yaml::Null => return out,
        other => expect_hash(ctx, other, path),
    }) else {
        return out;
    };
    for (k, v) in entries(ctx, h, path) {
        let p = child(path, &k);
        if !is_env_key(&k) {
            ctx.err(&p, format!("invalid environment variable name {k:?}; names must match `[A-Za-z_][A-Za-z0-9_]*` (a letter or `_`, then letters, digits or `_`)"));
            continue;
        }
        if let Ok(val) = stringify(ctx, v, &p) {
            if val.as_deref().is_some_and(has_nul) {
                ctx.err(&p, NUL_VALUE);
                continue;
            }
            out.insert(k, val);
        }
    }
    out
}

/// Refused in env and secret values: a process environment cannot hold it.
const NUL_VALUE: &str =
    "the value contains a NUL byte (`\\0`), which an environment variable cannot hold; remove it";

fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

fn is_secret_ref(k: &str) -> bool {
    k.strip_prefix("secrets:").is_some_and(|n| !n.is_empty())
}

/// `secrets:` as (inline secrets, managed refs).
fn parse_secrets(
    ctx: &mut Ctx,
    y: &Yaml,
    path: &str,
) -> (IndexMap<String, Option<String>>, Vec<String>) {
    let mut inline = IndexMap::new();
    let mut refs = Vec::new();
    match y {
        Yaml::Null => {}
        Yaml::Array(a) => {
            for (i, it) in a.iter().enumerate() {
                let p = index(path, i);
                match it {
                    Yaml::String(s) if is_secret_ref(s) => refs.push(s.clone()),
                    other => ctx.err(&p, format!("a `secrets` list holds managed secret references like `secrets:NAME`, found {}", show(other))),
                }
            }
        }
        Yaml::Hash(h) => {
            for (k, v) in entries(ctx, h, path) {
                let p = child(path, &k);
                if is_secret_ref(&k) {
                    if !matches!(v, Yaml::Null) {
                        ctx.err(&p, format!("the managed secret reference `{k}` must have a null value (write `{k}:` with nothing after it)"));
                    } else {
                        refs.push(k);
                    }
                    continue;
                }
                if !is_env_key(&k) {
                    ctx.err(&p, format!("invalid secret name {k:?}; names must match `[A-Za-z_][A-Za-z0-9_]*`, or be a managed reference `secrets:NAME`"));
                    continue;
                }
                if let Ok(val) = stringify(ctx, v, &p) {
                    if val.as_deref().is_some_and(has_nul) {
                        ctx.err(&p, NUL_VALUE);
                        continue;
                    }
                    inline.insert(k, val);
                }
            }
        }
        other => ctx.err(
            path,
            format!(
                "expected a mapping of secrets or a list of `secrets:NAME` references, found {}",
                kind(other)
            ),
        ),
    }
    (inline, refs)
}

fn parse_doc(
    all: &mut Vec<Diagnostic>,
    doc: &Yaml,
    path: &str,
    opts: &ParseOptions,
    stage: Stage,
) -> Task {
    let mut ctx = Ctx {
        launch: stage == Stage::Launch,
        ..Ctx::default()
    };
    let task = parse_task(&mut ctx, doc, path, opts);
    if stage == Stage::Launch {
        launch_problems(&mut ctx, &task, path);
    }
    all.extend(ctx.diags);
    task
}

/// What SkyPilot refuses when it runs a task rather than when it loads it: envs and secrets
/// still null (required values no `--env` / `--secret` gave), and storage objects it cannot
/// construct (`Storage.construct()`: no name and no source, COPY without a source, a URI as
/// the name, a local source without a bucket name, a name beside a bucket URI source; a URI
/// in a list source is refused while parsing, where the list is still known).
fn launch_problems(ctx: &mut Ctx, t: &Task, root: &str) {
    for k in &t.required_envs {
        ctx.err(
            &child(&child(root, "envs"), k),
            format!("environment variable `{k}` is null (required): give it a value at launch with `--env {k}=VALUE` (or `--env-file`), or set one in the task YAML; to set it empty, use `{k}: \"\"` in the YAML or `--env {k}=\"\"`"),
        );
    }
    for k in &t.required_secrets {
        ctx.err(
            &child(&child(root, "secrets"), k),
            format!("secret `{k}` is null (required): give it a value at launch with `--secret {k}=VALUE`, or set one in the task YAML; to set it empty, use `{k}: \"\"` in the YAML or `--secret {k}=\"\"`"),
        );
    }
    let mounts = child(root, "file_mounts");
    for (dst, m) in &t.file_mounts {
        let FileMount::Storage(s) = m else { continue };
        let p = child(&mounts, dst);
        if let Some(n) = s.name.as_deref().filter(|n| is_uri(n)) {
            ctx.err(&child(&p, "name"), format!("storage name {n:?} is a URI; put a bucket URI in `source:` and leave `name:` for a bucket name"));
        } else if let Some(n) = s.name.as_deref()
            && let Err(e) = crate::buckets::check_name_for(s.store.as_deref(), n)
        {
            ctx.err(&child(&p, "name"), e);
        }
        if s.source.is_empty() {
            if s.mode == StorageMode::Copy {
                ctx.err(
                    &child(&p, "source"),
                    "storage mode COPY needs a `source:` to copy from",
                );
            } else if s.name.is_none() {
                ctx.err(&p, "a storage object needs `source:` or `name:` (or both)");
            }
        } else if s.source.len() == 1 && is_uri(&s.source[0]) {
            if s.name.is_some() {
                ctx.err(&child(&p, "name"), format!("a storage object whose `source` is a bucket URI ({:?}) uses that bucket; remove `name:` (a name is for a new bucket, made empty or from a local source)", s.source[0]));
            }
        } else if s.name.is_none() {
            ctx.err(&child(&p, "name"), "a storage object with a local `source` is uploaded to a new bucket, which needs a `name:` (e.g. `name: my-bucket`); or use a bucket URI (`s3://...`) as the source");
        }
    }
}

pub(crate) fn parse_task(ctx: &mut Ctx, doc: &Yaml, path: &str, opts: &ParseOptions) -> Task {
    let mut t = Task::default();
    let Yaml::Hash(h) = doc else {
        ctx.err(
            path,
            format!(
                "expected a mapping of task fields (name, resources, run, ...), found {} ({})",
                kind(doc),
                show(doc)
            ),
        );
        return t;
    };
    check_keys(ctx, h, path, TOP_KEYS);
    let p = |k: &str| child(path, k);

    // envs and secrets first: overrides are merged before substitution.
    let mut envs = get(h, "envs")
        .map(|y| parse_envs(ctx, y, &p("envs")))
        .unwrap_or_default();
    for (k, v) in &opts.env_overrides {
        if let Some(d) = crate::cli::check_env_pair("--env", k, v) {
            ctx.diags.push(d);
            continue;
        }
        envs.insert(k.clone(), Some(v.clone()));
    }
    let (mut secrets, refs) = get(h, "secrets")
        .map(|y| parse_secrets(ctx, y, &p("secrets")))
        .unwrap_or_default();
    for (k, v) in &opts.secret_overrides {
        if let Some(d) = crate::cli::check_env_pair("--secret", k, v) {
            ctx.diags.push(d);
            continue;
        }
        secrets.insert(k.clone(), Some(v.clone()));
    }
    t.secret_refs = refs;
    // A null value means "required": SkyPilot's loader accepts it and launch refuses it
    // unless `--env` / `--secret` supplies one (see `launch_problems`).
    for (k, v) in envs {
        match v {
            Some(v) => {
                t.envs.insert(k, v);
            }
            None => t.required_envs.push(k),
        }
    }
    for (k, v) in secrets {
        match v {
            Some(v) => {
                t.secrets.insert(k, v);
            }
            None => t.required_secrets.push(k),
        }
    }
    let vars: IndexMap<String, String> = t
        .envs
        .iter()
        .chain(t.secrets.iter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let lookup = |k: &str| vars.get(k).cloned();
    let subst = |y: &Yaml| substitute_yaml(y, &lookup, 0);

    for (k, v) in entries(ctx, h, path) {
        let kp = p(&k);
        let null = matches!(v, Yaml::Null);
        match k.as_str() {
            "name" if !null => {
                if let Some(s) = expect_str(ctx, v, &kp) {
                    if is_valid_name(&s) {
                        t.name = Some(s);
                    } else {
                        let env_hint = if s.contains('$') {
                            "; environment variables are not substituted in `name`"
                        } else {
                            ""
                        };
                        ctx.err(&kp, format!("invalid task name {s:?}: names must match `[a-zA-Z0-9]+(?:[._-]{{1,2}}[a-zA-Z0-9]+)*` (letters and digits, separated by at most two of `.`, `_`, `-`){env_hint}"));
                    }
                }
            }
            "workdir" if !null => t.workdir = parse_workdir(ctx, &subst(v), &kp),
            "event_callback" if !null => t.event_callback = expect_str(ctx, v, &kp),
            "num_nodes" if !null => match v {
                Yaml::Integer(n) if *n >= 1 && *n <= u32::MAX as i64 => t.num_nodes = *n as u32,
                other => ctx.err(
                    &kp,
                    format!(
                        "num_nodes should be a positive integer, found {}",
                        show(other)
                    ),
                ),
            },
            "resources" => t.resources = parse_resources(ctx, Some(v), &kp),
            "setup" if !null => t.setup = expect_str(ctx, v, &kp),
            "run" if !null => t.run = expect_str(ctx, v, &kp),
            "file_mounts" if !null => t.file_mounts = parse_file_mounts(ctx, &subst(v), &kp),
            "service" if !null => t.service = parse_service(ctx, &subst(v), &kp),
            "config" if !null => {
                if expect_hash(ctx, v, &kp).is_some() {
                    t.config = to_json(ctx, v, &kp);
                }
            }
            "inputs" if !null => t.inputs = parse_io(ctx, v, &kp),
            "outputs" if !null => t.outputs = parse_io(ctx, v, &kp),
            other => {
                if let Some((_, want)) = EXTRA_TOP.iter().find(|(n, _)| *n == other)
                    && !null
                {
                    let v = if other == "volumes" {
                        subst(v)
                    } else {
                        v.clone()
                    };
                    let ok = match *want {
                        "mapping" => matches!(v, Yaml::Hash(_)),
                        "list" => matches!(v, Yaml::Array(_)),
                        _ => matches!(v, Yaml::Boolean(_)),
                    };
                    if !ok {
                        ctx.err(
                            &kp,
                            format!("expected a {want}, found {} ({})", kind(&v), show(&v)),
                        );
                    } else if let Some(j) = to_json(ctx, &v, &kp) {
                        t.extra.insert(other.to_string(), j);
                    }
                }
            }
        }
    }
    if t.service.is_some() && t.extra.contains_key("pool") {
        ctx.err(
            &p("pool"),
            "cannot specify both `service` and `pool`; a task is either a service or a pool",
        );
    }
    t
}

fn parse_workdir(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<Workdir> {
    match y {
        Yaml::String(s) if has_nul(s) => {
            ctx.err(
                path,
                "the workdir path contains a NUL byte (`\\0`), which no path can hold; remove it",
            );
            None
        }
        Yaml::String(s) => Some(Workdir::Path(s.clone())),
        Yaml::Hash(h) => {
            check_keys(ctx, h, path, &["url", "ref"]);
            let url = match get(h, "url") {
                Some(u) => expect_str(ctx, u, &child(path, "url")),
                None => {
                    ctx.err(
                        &child(path, "url"),
                        "a git `workdir` needs `url` (and optionally `ref`)",
                    );
                    None
                }
            };
            let git_ref = get_some(h, "ref").and_then(|r| expect_str(ctx, r, &child(path, "ref")));
            url.map(|url| Workdir::Git { url, git_ref })
        }
        other => {
            ctx.err(
                path,
                format!(
                    "expected a local path or a mapping {{url, ref}}, found {} ({})",
                    kind(other),
                    show(other)
                ),
            );
            None
        }
    }
}

fn parse_io(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<(String, f64)> {
    let h = expect_hash(ctx, y, path)?;
    if h.len() > 1 {
        ctx.err(
            path,
            format!("expected one `path: size_in_GB` entry, found {}", h.len()),
        );
        return None;
    }
    let (k, v) = entries(ctx, h, path).into_iter().next()?;
    match as_number(v) {
        Some(n) if n.is_finite() => Some((k, n)),
        _ => {
            ctx.err(
                &child(path, &k),
                format!("expected a size in GB (a number), found {}", show(v)),
            );
            None
        }
    }
}

const STORAGE_KEYS: &[&str] = &[
    "name",
    "source",
    "store",
    "persistent",
    "mode",
    "mount_options",
    "type",
    "config",
    "_is_sky_managed",
    "_bucket_sub_path",
    "_force_delete",
];

fn parse_file_mounts(ctx: &mut Ctx, y: &Yaml, path: &str) -> IndexMap<String, FileMount> {
    let mut out = IndexMap::new();
    let Some(h) = expect_hash(ctx, y, path) else {
        return out;
    };
    for (dst, v) in entries(ctx, h, path) {
        let p = child(path, &dst);
        if is_uri(&dst) {
            ctx.err(&p, format!("file mount destination {dst:?} is a cloud storage URI; destinations must be paths on the cluster (e.g. `/data`)"));
            continue;
        }
        if let Some(why) = bad_destination(&dst) {
            ctx.err(&p, why);
            continue;
        }
        match v {
            Yaml::String(s) => {
                if s.trim().is_empty() {
                    ctx.err(&p, "the file mount source is empty; expected a local path or a bucket URI");
                } else {
                    out.insert(dst, FileMount::Source(s.clone()));
                }
            }
            Yaml::Hash(sh) => {
                if let Some(s) = parse_storage(ctx, sh, &p) {
                    out.insert(dst, FileMount::Storage(s));
                }
            }
            other => ctx.err(&p, format!("expected a local path, a bucket URI or a storage object {{name, source, store, mode}}, found {} ({})", kind(other), show(other))),
        }
    }
    out
}

/// The directories under the node's home that sky itself uses: `~/.sky` (the agent, its
/// token, keys, state), `~/sky_logs` (job logs) and `~/sky_workdir` (the synced workdir).
const RESERVED_HOME_DIRS: &[(&str, &str)] = &[
    (
        ".sky",
        "sky's own directory on every node (the agent, its token and state)",
    ),
    ("sky_logs", "where sky writes job logs"),
    (
        "sky_workdir",
        "where the task's `workdir` is synced; put the files in the workdir instead",
    ),
];

/// Why a file mount destination is refused: empty, relative, with a `..` component, the home
/// directory itself, or inside a directory sky uses on the node. Absolute paths that reach
/// those directories (`/home/user/.sky`) cannot be known here.
fn bad_destination(dst: &str) -> Option<String> {
    let fix = "write an absolute path or one under the home directory, e.g. `/data` or `~/data`";
    if dst.trim().is_empty() {
        return Some(format!("the file mount destination is empty; {fix}"));
    }
    if has_nul(dst) {
        return Some(format!(
            "file mount destination {dst:?} contains a NUL byte, which no path can hold; {fix}"
        ));
    }
    let parts: Vec<&str> = dst
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Some(format!(
            "file mount destination {dst:?} has a `..` component; write the path without `..`, e.g. `/data` or `~/data`"
        ));
    }
    if dst.starts_with('/') {
        return None;
    }
    if dst != "~" && !dst.starts_with("~/") {
        return Some(format!(
            "file mount destination {dst:?} is a relative path; {fix}"
        ));
    }
    match parts.get(1) {
        None => Some(format!(
            "file mount destination {dst:?} is the home directory itself, which holds sky's `~/.sky`; mount into a directory under it, e.g. `~/data`"
        )),
        Some(first) => RESERVED_HOME_DIRS.iter().find(|(d, _)| d == first).map(|(d, what)| {
            format!(
                "file mount destination {dst:?} is inside `~/{d}`, {what}; mount somewhere else, e.g. `~/data`"
            )
        }),
    }
}

fn parse_storage(ctx: &mut Ctx, h: &Hash, path: &str) -> Option<StorageSpec> {
    check_keys(ctx, h, path, STORAGE_KEYS);
    let mut s = StorageSpec {
        name: None,
        source: Vec::new(),
        store: None,
        persistent: true,
        mode: StorageMode::Mount,
        config: None,
        file_mount_type: None,
        mount_options: None,
        extra: IndexMap::new(),
    };
    let before = ctx.diags.len();
    for (k, v) in entries(ctx, h, path) {
        let p = child(path, &k);
        if matches!(v, Yaml::Null) {
            continue;
        }
        match k.as_str() {
            // A URI as the name is refused at launch (`launch_problems`), as SkyPilot's
            // `Storage.construct()` does.
            "name" => s.name = expect_str(ctx, v, &p),
            "source" => match v {
                Yaml::String(x) => s.source = vec![x.clone()],
                Yaml::Array(a) if !a.is_empty() => {
                    for (i, it) in a.iter().enumerate() {
                        let ip = index(&p, i);
                        if let Some(x) = expect_str(ctx, it, &ip) {
                            if ctx.launch && is_uri(&x) {
                                ctx.err(&ip, format!("a list `source` holds local paths only, found the URI {x:?}; use a single URI as `source` instead"));
                            }
                            s.source.push(x);
                        }
                    }
                }
                other => ctx.err(&p, format!("expected a path, a bucket URI or a non-empty list of local paths, found {}", show(other))),
            },
            "store" => {
                if let Some(st) = expect_str(ctx, v, &p) {
                    let low = st.to_ascii_lowercase();
                    if STORE_TYPES.contains(&low.as_str()) {
                        s.store = Some(low);
                    } else {
                        ctx.err(&p, format!("invalid store {st:?}; valid stores: {}", STORE_TYPES.join(", ")));
                    }
                }
            }
            "persistent" => {
                if let Some(b) = expect_bool(ctx, v, &p) {
                    s.persistent = b;
                }
            }
            "mode" => {
                if let Some(m) = expect_str(ctx, v, &p) {
                    match m.to_ascii_uppercase().as_str() {
                        "MOUNT" => s.mode = StorageMode::Mount,
                        "COPY" => s.mode = StorageMode::Copy,
                        "MOUNT_CACHED" => s.mode = StorageMode::MountCached,
                        _ => ctx.err(&p, format!("invalid storage mode {m:?}; valid modes: MOUNT, COPY, MOUNT_CACHED")),
                    }
                }
            }
            "mount_options" => s.mount_options = expect_str(ctx, v, &p),
            "type" => {
                if let Some(t) = expect_str(ctx, v, &p) {
                    let up = t.to_ascii_uppercase();
                    if FILE_MOUNT_TYPES.contains(&up.as_str()) {
                        s.file_mount_type = Some(up);
                    } else {
                        ctx.err(&p, format!("invalid file mount type {t:?}; valid types: {}", FILE_MOUNT_TYPES.join(", ")));
                    }
                }
            }
            "config" if expect_hash(ctx, v, &p).is_some() => s.config = to_json(ctx, v, &p),
            other if other.starts_with('_') => {
                if let Some(j) = to_json(ctx, v, &p) {
                    s.extra.insert(other.to_string(), j);
                }
            }
            _ => {}
        }
    }
    if ctx.diags.len() > before {
        return None;
    }
    // SkyPilot's `Storage.from_yaml_config`: rclone knobs belong to MOUNT_CACHED only.
    if s.mode != StorageMode::MountCached
        && let Some(serde_json::Value::Object(c)) = &s.config
        && c.contains_key("mount_cached")
    {
        let mode = if s.mode == StorageMode::Copy {
            "COPY"
        } else {
            "MOUNT"
        };
        ctx.err(
            &child(&child(path, "config"), "mount_cached"),
            format!("`config.mount_cached` applies to storage mode MOUNT_CACHED only, but the mode is {mode} (MOUNT is the default); set `mode: MOUNT_CACHED` or remove `mount_cached`"),
        );
        return None;
    }
    // No name and no source, COPY without a source, a local source without a name: SkyPilot
    // accepts these when it loads the task and refuses them when it constructs the storage
    // at launch (`launch_problems`).
    Some(s)
}

const SERVICE_KEYS: &[&str] = &[
    "readiness_probe",
    "replica_policy",
    "replicas",
    "ports",
    "load_balancing_policy",
    "tls",
    "load_balancer",
    "pool",
    "workers",
];
const PROBE_KEYS: &[&str] = &[
    "path",
    "initial_delay_seconds",
    "timeout_seconds",
    "post_data",
    "headers",
    "endpoint_probe_interval_seconds",
    "consecutive_failure_threshold_timeout",
];
const POLICY_KEYS: &[&str] = &[
    "min_replicas",
    "max_replicas",
    "target_qps_per_replica",
    "upscale_delay_seconds",
    "downscale_delay_seconds",
    "num_overprovision",
    "base_ondemand_fallback_replicas",
    "dynamic_ondemand_fallback",
    "spot_placer",
];

fn seconds(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<u64> {
    match as_number(y) {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => Some(n as u64),
        _ => {
            ctx.err(
                path,
                format!(
                    "expected a non-negative whole number of seconds, found {}",
                    show(y)
                ),
            );
            None
        }
    }
}

fn nonneg(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<u32> {
    expect_int(ctx, y, path, 0, u32::MAX as i64).map(|n| n as u32)
}

fn parse_service(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<Service> {
    let h = expect_hash(ctx, y, path)?;
    check_keys(ctx, h, path, SERVICE_KEYS);
    let mut s = Service {
        readiness_probe: None,
        replica_policy: None,
        replicas: None,
        ports: None,
        load_balancing_policy: None,
        tls: None,
        extra: IndexMap::new(),
    };
    for (k, v) in entries(ctx, h, path) {
        let p = child(path, &k);
        if matches!(v, Yaml::Null) {
            continue;
        }
        match k.as_str() {
            "readiness_probe" => s.readiness_probe = parse_probe(ctx, v, &p),
            "replica_policy" => s.replica_policy = parse_policy(ctx, v, &p),
            "replicas" => s.replicas = nonneg(ctx, v, &p),
            "ports" => s.ports = expect_int(ctx, v, &p, 1, 65535).map(|n| n as u16),
            "load_balancing_policy" => {
                if let Some(l) = expect_str(ctx, v, &p) {
                    let low = l.to_ascii_lowercase();
                    if LB_POLICIES.contains(&low.as_str()) {
                        s.load_balancing_policy = Some(low);
                    } else {
                        ctx.err(
                            &p,
                            format!(
                                "invalid load_balancing_policy {l:?}; valid policies: {}",
                                LB_POLICIES.join(", ")
                            ),
                        );
                    }
                }
            }
            "tls" => {
                if let Some(th) = expect_hash(ctx, v, &p) {
                    check_keys(ctx, th, &p, &["keyfile", "certfile"]);
                    let kf = match get(th, "keyfile") {
                        Some(x) => expect_str(ctx, x, &child(&p, "keyfile")),
                        None => {
                            ctx.err(
                                &child(&p, "keyfile"),
                                "`tls` needs both `keyfile` and `certfile`",
                            );
                            None
                        }
                    };
                    let cf = match get(th, "certfile") {
                        Some(x) => expect_str(ctx, x, &child(&p, "certfile")),
                        None => {
                            ctx.err(
                                &child(&p, "certfile"),
                                "`tls` needs both `keyfile` and `certfile`",
                            );
                            None
                        }
                    };
                    if let (Some(a), Some(b)) = (kf, cf) {
                        s.tls = Some((a, b));
                    }
                }
            }
            // SkyPilot's service schema has `pool: true|false` (what a top-level `pool:`
            // section becomes); a mapping is kept too.
            "pool" if matches!(v, Yaml::Boolean(_)) => {
                if let Some(j) = to_json(ctx, v, &p) {
                    s.extra.insert(k.clone(), j);
                }
            }
            "load_balancer" | "pool" => {
                if expect_hash(ctx, v, &p).is_some()
                    && let Some(j) = to_json(ctx, v, &p)
                {
                    s.extra.insert(k.clone(), j);
                }
            }
            "workers" => {
                if let Some(n) = nonneg(ctx, v, &p) {
                    s.extra.insert(k.clone(), serde_json::Value::from(n));
                }
            }
            _ => {}
        }
    }
    if s.replicas.is_some() && s.replica_policy.is_some() {
        ctx.err(&child(path, "replicas"), "cannot specify both `replicas` and `replica_policy`; use `replica_policy.min_replicas` for a fixed count with autoscaling off");
    }
    // SkyPilot's SkyServiceSpec: per-accelerator QPS targets and the instance-aware policy
    // go together.
    let per_accel = s
        .replica_policy
        .as_ref()
        .is_some_and(|rp| !rp.target_qps_per_accelerator.is_empty());
    let instance_aware = s.load_balancing_policy.as_deref() == Some("instance_aware_least_load");
    if per_accel && !instance_aware {
        ctx.err(&child(path, "load_balancing_policy"), "a per-accelerator `target_qps_per_replica` mapping needs `load_balancing_policy: instance_aware_least_load`; set it, or give `target_qps_per_replica` as one number");
    }
    if instance_aware && !per_accel {
        ctx.err(&child(path, "load_balancing_policy"), "`load_balancing_policy: instance_aware_least_load` needs `replica_policy.target_qps_per_replica` as a mapping of accelerator to QPS (e.g. `{H100: 10, A100: 5}`)");
    }
    // Pools: `workers` instead of `replicas`, no `replica_policy`.
    let pool = match s.extra.get("pool") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => true,
        None => false,
    };
    if s.replicas.is_some() && s.extra.contains_key("workers") {
        ctx.err(
            &child(path, "replicas"),
            "cannot specify both `replicas` and `workers`; use one of them",
        );
    } else if pool && s.replicas.is_some() {
        ctx.err(
            &child(path, "replicas"),
            "a pool sizes itself with `workers`, not `replicas`; write `workers: N`",
        );
    }
    if pool && s.replica_policy.is_some() {
        ctx.err(
            &child(path, "replica_policy"),
            "a pool cannot have a `replica_policy`; only `workers: N` is supported for pools",
        );
    }
    Some(s)
}

fn parse_probe(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<ReadinessProbe> {
    let mut pr = ReadinessProbe {
        path: String::new(),
        post_data: None,
        initial_delay_seconds: 1200,
        timeout_seconds: 15,
        headers: IndexMap::new(),
        extra: IndexMap::new(),
    };
    match y {
        Yaml::String(s) => pr.path = s.clone(),
        Yaml::Hash(h) => {
            check_keys(ctx, h, path, PROBE_KEYS);
            match get(h, "path") {
                Some(x) => pr.path = expect_str(ctx, x, &child(path, "path"))?,
                None => {
                    ctx.err(
                        &child(path, "path"),
                        "a `readiness_probe` mapping needs `path` (e.g. `/health`)",
                    );
                    return None;
                }
            }
            for (k, v) in entries(ctx, h, path) {
                let p = child(path, &k);
                match k.as_str() {
                    "initial_delay_seconds" => pr.initial_delay_seconds = seconds(ctx, v, &p)?,
                    "timeout_seconds" => pr.timeout_seconds = seconds(ctx, v, &p)?,
                    "post_data" => match v {
                        Yaml::Null => {}
                        Yaml::String(s) => match serde_json::from_str::<serde_json::Value>(s) {
                            Ok(j) => pr.post_data = Some(j),
                            Err(e) => {
                                ctx.err(&p, format!("`post_data` as a string must be JSON: {e}"))
                            }
                        },
                        Yaml::Hash(_) => pr.post_data = to_json(ctx, v, &p),
                        other => ctx.err(
                            &p,
                            format!("expected a JSON string or a mapping, found {}", show(other)),
                        ),
                    },
                    "headers" => {
                        if let Some(hh) = expect_hash(ctx, v, &p) {
                            for (hk, hv) in entries(ctx, hh, &p) {
                                if let Some(s) = expect_str(ctx, hv, &child(&p, &hk)) {
                                    pr.headers.insert(hk, s);
                                }
                            }
                        }
                    }
                    "endpoint_probe_interval_seconds" | "consecutive_failure_threshold_timeout" => {
                        match as_number(v) {
                            Some(_) => {
                                if let Some(j) = to_json(ctx, v, &p) {
                                    pr.extra.insert(k.clone(), j);
                                }
                            }
                            None => ctx.err(
                                &p,
                                format!("expected a number of seconds, found {}", show(v)),
                            ),
                        }
                    }
                    _ => {}
                }
            }
        }
        other => {
            ctx.err(path, format!("expected a path string (e.g. `/health`) or a mapping {{path, initial_delay_seconds, timeout_seconds, post_data, headers}}, found {}", show(other)));
            return None;
        }
    }
    if !pr.path.starts_with('/') {
        let p = if matches!(y, Yaml::Hash(_)) {
            child(path, "path")
        } else {
            path.to_string()
        };
        ctx.err(
            &p,
            format!(
                "the readiness probe path must start with `/`, found {:?}",
                pr.path
            ),
        );
        return None;
    }
    Some(pr)
}

fn parse_policy(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<ReplicaPolicy> {
    let h = expect_hash(ctx, y, path)?;
    check_keys(ctx, h, path, POLICY_KEYS);
    let mut rp = ReplicaPolicy {
        min_replicas: 0,
        max_replicas: None,
        target_qps_per_replica: None,
        target_qps_per_accelerator: IndexMap::new(),
        upscale_delay_seconds: 300,
        downscale_delay_seconds: 1200,
        num_overprovision: None,
        base_ondemand_fallback_replicas: None,
        dynamic_ondemand_fallback: None,
        spot_placer: None,
    };
    match get_some(h, "min_replicas") {
        Some(v) => rp.min_replicas = nonneg(ctx, v, &child(path, "min_replicas"))?,
        None => {
            ctx.err(
                &child(path, "min_replicas"),
                "`replica_policy` needs `min_replicas`",
            );
            return None;
        }
    }
    for (k, v) in entries(ctx, h, path) {
        let p = child(path, &k);
        if matches!(v, Yaml::Null) {
            continue;
        }
        match k.as_str() {
            "max_replicas" => rp.max_replicas = nonneg(ctx, v, &p),
            "num_overprovision" => rp.num_overprovision = nonneg(ctx, v, &p),
            "base_ondemand_fallback_replicas" => rp.base_ondemand_fallback_replicas = nonneg(ctx, v, &p),
            "dynamic_ondemand_fallback" => rp.dynamic_ondemand_fallback = expect_bool(ctx, v, &p),
            "upscale_delay_seconds" => {
                if let Some(s) = seconds(ctx, v, &p) {
                    rp.upscale_delay_seconds = s;
                }
            }
            "downscale_delay_seconds" => {
                if let Some(s) = seconds(ctx, v, &p) {
                    rp.downscale_delay_seconds = s;
                }
            }
            "spot_placer" => {
                if let Some(s) = expect_str(ctx, v, &p) {
                    if s.eq_ignore_ascii_case("dynamic_fallback") {
                        rp.spot_placer = Some("dynamic_fallback".into());
                    } else {
                        ctx.err(&p, format!("invalid spot_placer {s:?}; valid placers: dynamic_fallback"));
                    }
                }
            }
            "target_qps_per_replica" => match v {
                Yaml::Hash(qh) => {
                    for (ak, av) in entries(ctx, qh, &p) {
                        if !is_qps_accelerator_key(&ak) {
                            ctx.err(&child(&p, &ak), format!("invalid accelerator key {ak:?} in `target_qps_per_replica`; keys are upper-case accelerator names with an optional count, like `H100` or `A100:8`"));
                            continue;
                        }
                        match as_number(av) {
                            Some(n) if n.is_finite() && n >= 0.0 => {
                                rp.target_qps_per_accelerator.insert(ak, n);
                            }
                            _ => ctx.err(&child(&p, &ak), format!("expected a non-negative number, found {}", show(av))),
                        }
                    }
                }
                other => match as_number(other) {
                    Some(n) if n.is_finite() && n >= 0.0 => rp.target_qps_per_replica = Some(n),
                    _ => ctx.err(&p, format!("expected a non-negative number or a mapping {{ACCELERATOR: qps}}, found {}", show(other))),
                },
            },
            _ => {}
        }
    }
    let min = rp.min_replicas;
    let qps_set = rp.target_qps_per_replica.is_some() || !rp.target_qps_per_accelerator.is_empty();
    match rp.max_replicas {
        Some(max) if max < min => ctx.err(
            &child(path, "max_replicas"),
            format!("max_replicas ({max}) must be greater than or equal to min_replicas ({min})"),
        ),
        // SkyPilot's SkyServiceSpec: autoscaling between two counts needs a QPS target.
        Some(max) if max != min && !qps_set => ctx.err(
            &child(path, "target_qps_per_replica"),
            format!("min_replicas ({min}) and max_replicas ({max}) differ but `target_qps_per_replica` is not set; autoscaling between them needs it: set `target_qps_per_replica` (e.g. `target_qps_per_replica: 5`), or set `max_replicas` equal to `min_replicas` (or remove it) for a fixed number of replicas"),
        ),
        None if qps_set => ctx.err(
            &child(path, "max_replicas"),
            format!("`target_qps_per_replica` is set but `max_replicas` is not; autoscaling needs an upper bound: set `max_replicas` (at least min_replicas, {min}), or remove `target_qps_per_replica` for a fixed number of replicas"),
        ),
        _ => {}
    }
    Some(rp)
}

/// A `target_qps_per_replica` mapping key as SkyPilot's schema allows: `H100`, `A100:8`.
fn is_qps_accelerator_key(k: &str) -> bool {
    let (name, count) = match k.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (k, None),
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && count.is_none_or(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_digit()))
}

/// Checks that a task can be served by `sky serve up`.
pub(crate) fn validate_service_for_serve(task: &Task) -> Vec<Diagnostic> {
    let mut ctx = Ctx::default();
    match &task.service {
        None => ctx.err("$.service", "the task has no `service` section; `sky serve up` needs `service: {readiness_probe: /health, replicas: 1}`"),
        Some(s) if s.readiness_probe.is_none() => ctx.err(
            "$.service.readiness_probe",
            "`service.readiness_probe` is required by `sky serve up`; add a path such as `readiness_probe: /health`",
        ),
        Some(_) => {}
    }
    ctx.diags
}
