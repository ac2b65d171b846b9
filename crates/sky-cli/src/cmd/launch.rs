//! `sky launch` and `sky exec`: with `--dryrun`, the optimizer's plan in SkyPilot's format;
//! without, a launch through the backend, then the job's output streamed.

use sky_catalog::Catalog;
use sky_launch::LaunchRequest;
use sky_optimizer::OptimizeError;
use sky_spec::TaskFile;

use crate::{
    args::{ExecArgs, LaunchArgs},
    backend::{self, backend_or_exit, report, reporter, reporter_for},
    clouds,
    exit::{self, not_available},
    hostenv::HostEnv,
    interrupt::{block_on, cancel_on_interrupt, on_interrupt, stop_cancelling},
    names::{check_names, names_or_exit},
    plan::render_plan,
    taskload::{self, indent},
};

/// `sky launch --dryrun`.
pub fn run(env: &HostEnv, args: &LaunchArgs) -> i32 {
    if let Err(code) = check_names(args.cluster.iter()) {
        return code;
    }
    if args.entrypoint.is_empty() {
        eprintln!(
            "sky launch needs a task YAML or a command, e.g. `sky launch --dryrun task.yaml`"
        );
        return exit::USAGE;
    }
    let (path, file) = match taskload::load(env, &args.entrypoint, &args.task) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}", e.message);
            return exit::INVALID_INPUT;
        }
    };
    let task = match file {
        TaskFile::Task(t) => t,
        TaskFile::Pipeline(p) => {
            eprintln!(
                "{} is a pipeline of {} tasks; sky launch runs a single task. Run pipelines as managed jobs: sky jobs launch {}",
                path.as_deref().unwrap_or("the task"),
                p.tasks.len(),
                path.as_deref().unwrap_or("FILE"),
            );
            return exit::INVALID_INPUT;
        }
    };
    let config = match clouds::load_config(env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID_INPUT;
        }
    };
    let registry = match backend::providers(env, &config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID_INPUT;
        }
    };
    // Providers without a bundled table offer their own rows: the local cloud offers this
    // machine's capacity (from /proc, and nvidia-smi when present) per simulated zone.
    let extended = sky_launch::catalog_with_providers(&registry);
    let catalog = extended.as_ref().unwrap_or_else(|| Catalog::bundled());
    let problems = sky_optimizer::validate_task(catalog, &task);
    if !problems.is_empty() {
        eprintln!(
            "invalid task{}:\n{}",
            path.as_deref()
                .map(|p| format!(" YAML {p}"))
                .unwrap_or_default(),
            indent(&sky_spec::Diagnostics(problems).to_string())
        );
        return exit::INVALID_INPUT;
    }
    if !args.dryrun {
        return not_available(
            "launch (without --dryrun)",
            "the local cloud and cluster lifecycle; use --dryrun to see the plan",
        );
    }
    let checks = clouds::check_all(env, &config);
    let mut enabled = clouds::enabled_catalog_clouds(&checks);
    let provider_ids = registry.ids();
    enabled.extend(provider_ids.iter().map(String::as_str));
    // As `sky launch`: clouds that cannot carry out what the task asks (containers, ports,
    // ...) are left out of the plan, and a task none can run is refused.
    if !enabled.is_empty() {
        enabled = match sky_launch::capable_clouds(&registry, &task, &enabled) {
            Ok(c) => c,
            Err(message) => {
                eprintln!("{message}");
                return exit::INVALID_INPUT;
            }
        };
    }
    if let Some(p) = &path {
        println!("YAML to run: {p}");
    }
    let cluster = args
        .cluster
        .clone()
        .unwrap_or_else(|| generated_cluster_name(env));
    if enabled.is_empty() {
        eprintln!(
            "no cloud is enabled, so there is nowhere to run this task. Run `sky check` to see how to enable one{}",
            config
                .allowed_clouds
                .as_ref()
                .map(|a| format!(" (allowed_clouds: {})", a.join(", ")))
                .unwrap_or_default()
        );
        return exit::NO_RESOURCES;
    }
    match sky_optimizer::optimize_task(catalog, &task, &enabled, &[]) {
        Ok(plan) => {
            print!("{}", render_plan(&plan, &cluster));
            println!("Dryrun finished.");
            exit::OK
        }
        Err(
            OptimizeError::NoResources { message } | OptimizeError::CloudNotEnabled { message },
        ) => {
            eprintln!("{message}");
            exit::NO_RESOURCES
        }
        Err(OptimizeError::InvalidRequest { message }) => {
            eprintln!(
                "invalid task{}: {message}",
                path.as_deref()
                    .map(|p| format!(" YAML {p}"))
                    .unwrap_or_default()
            );
            exit::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("failed to plan the task: {e}");
            exit::FAILURE
        }
    }
}

/// `sky launch` without `--dryrun`.
pub fn launch(env: &HostEnv, args: &LaunchArgs, command_line: String) -> i32 {
    names_or_exit!(args.cluster.iter());
    let (path, file) = match taskload::load(env, &args.entrypoint, &args.task) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}", e.message);
            return exit::INVALID_INPUT;
        }
    };
    let task = match file {
        TaskFile::Task(t) => *t,
        TaskFile::Pipeline(p) => {
            eprintln!(
                "{} is a pipeline of {} tasks; sky launch runs a single task. Run pipelines as managed jobs: sky jobs launch {}",
                path.as_deref().unwrap_or("the task"),
                p.tasks.len(),
                path.as_deref().unwrap_or("FILE")
            );
            return exit::INVALID_INPUT;
        }
    };
    if let Err(e) = sky_launch::local_uploads(&task) {
        return report(&e);
    }
    let cluster = args
        .cluster
        .clone()
        .unwrap_or_else(|| generated_cluster_name(env));
    block_on(async {
        // Only when the task may land on a pool (a dead host costs a connect timeout).
        if task
            .resources
            .candidates()
            .iter()
            .any(|r| r.cloud.as_deref().is_none_or(|c| c == "ssh"))
        {
            detect_ssh_pools(env).await;
        }
        let backend = backend_or_exit!(env);
        let problems = sky_optimizer::validate_task(backend.catalog(), &task);
        if !problems.is_empty() {
            eprintln!(
                "invalid task:\n{}",
                indent(&sky_spec::Diagnostics(problems).to_string())
            );
            return exit::INVALID_INPUT;
        }
        if let Some(p) = &path {
            eprintln!("YAML to run: {p}");
        }
        // Show the plan for a new cluster, as SkyPilot does.
        if backend
            .state
            .get_cluster(&cluster)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            // Clouds that cannot carry out what the task asks (containers, ports, ...) are
            // left out; none left is refused here, before anything exists.
            let (enabled, left_out) = match backend.task_clouds(&task, args.idle_minutes, args.down)
            {
                Ok(c) => c,
                Err(e) => return report(&e),
            };
            match sky_optimizer::optimize_task(backend.catalog(), &task, &enabled, &[]) {
                Ok(plan) => eprint!("{}", render_plan(&plan, &cluster)),
                Err(sky_optimizer::OptimizeError::NoResources { message }) => {
                    eprintln!(
                        "{message}{}",
                        sky_launch::autostop_note(&left_out, args.down)
                    );
                    return exit::NO_RESOURCES;
                }
                Err(e) => {
                    eprintln!("failed to plan the task: {e}");
                    return exit::FAILURE;
                }
            }
            if !args.yes
                && !crate::progress::confirm(&format!(
                    "Launching a new cluster '{cluster}'. Proceed?"
                ))
            {
                eprintln!("Aborted.");
                return exit::FAILURE;
            }
        }
        let req = LaunchRequest {
            retry_until_up: args.retry_until_up,
            no_setup: args.no_setup,
            idle_minutes: args.idle_minutes,
            down: args.down,
            command_line,
            ..LaunchRequest::new(task, cluster.clone())
        };
        on_interrupt(format!(
            "Interrupted. State is consistent: `sky status {cluster}` shows what exists; `sky launch -c {cluster} ...` tries again, `sky down {cluster}` removes a half-launched cluster."
        ));
        // Ctrl-C cancels the launch, which cleans up what it made and says what is left (a
        // second Ctrl-C quits at once with the message above).
        let cancel = cancel_on_interrupt();
        let rep = reporter_for(env, &cluster);
        let launched = backend.launch(&req, &cancel, &rep).await;
        stop_cancelling();
        let submitted = match launched {
            Ok(s) => s,
            Err(e) => return report(&e),
        };
        crate::sshconfig::refresh(env, &backend, &cluster).await;
        if args.detach_run {
            eprintln!(
                "Job submitted, ID: {}. `sky logs {cluster} {}` streams it.",
                submitted.job_id, submitted.job_id
            );
            return exit::OK;
        }
        crate::stream::follow_job(&backend, &cluster, submitted.job_id).await
    })
}

/// Probes the SSH node pools whose hosts have not been detected yet (by `sky check` or an
/// earlier launch), so that their GPUs, CPUs and memory are offered from the first launch on.
/// Hosts that do not answer are left to the launch itself, which names them.
async fn detect_ssh_pools(env: &HostEnv) {
    let Ok(config) = crate::clouds::load_config(env) else {
        return;
    };
    if let Ok(Some(ssh)) = backend::ssh_pools(env, &config) {
        ssh.detect_capacity(true).await;
    }
}

/// `sky exec`.
pub fn exec(env: &HostEnv, args: &ExecArgs, command_line: String) -> i32 {
    names_or_exit!(std::iter::once(&args.cluster));
    let (_, file) = match taskload::load(env, &args.entrypoint, &args.task) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}", e.message);
            return exit::INVALID_INPUT;
        }
    };
    let TaskFile::Task(task) = file else {
        eprintln!("sky exec runs a single task; run pipelines with `sky jobs launch`");
        return exit::INVALID_INPUT;
    };
    if let Err(e) = sky_launch::local_uploads(&task) {
        return report(&e);
    }
    block_on(async {
        let backend = backend_or_exit!(env);
        let rep = reporter();
        let cancel = cancel_on_interrupt();
        let submitted = backend
            .exec(&args.cluster, &task, &command_line, &cancel, &rep)
            .await;
        stop_cancelling();
        let submitted = match submitted {
            Ok(s) => s,
            Err(e) => return report(&e),
        };
        if args.detach_run {
            eprintln!(
                "Job submitted, ID: {}. `sky logs {} {}` streams it.",
                submitted.job_id, args.cluster, submitted.job_id
            );
            return exit::OK;
        }
        crate::stream::follow_job(&backend, &args.cluster, submitted.job_id).await
    })
}

/// SkyPilot's name for an unnamed cluster: `sky-<4 hex>-<user>`.
/// The user part keeps only what a cluster name may hold (`john.doe@corp` → `john.doe-corp`).
pub fn generated_cluster_name(env: &HostEnv) -> String {
    let n = env.now_nanos();
    let user: String = env
        .user()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(sky_spec::names::MAX_NAME_LEN - 10)
        .collect();
    let user = user.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let name = format!("sky-{:04x}", (n ^ (n >> 17)) as u16);
    if user.is_empty() {
        name
    } else {
        format!("{name}-{user}")
    }
}
