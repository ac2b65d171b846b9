//! `sky jobs launch|queue|logs|cancel|dashboard` (clients of the managed-jobs controller) and
//! the hidden `sky jobs controller run` (the controller daemon itself).

use std::sync::Arc;
use std::time::Duration;

use sky_jobs::protocol::{CancelArgs, LogsArgs, QueueArgs};
use sky_jobs::{
    ControllerConfig, DaemonOptions, JobSubmission, JobView, JobsError, LaunchDriver,
    ManagedJobStatus, RecoveryStrategy, TaskSubmission,
};
use sky_spec::{Task, TaskFile};

use crate::{
    args::{
        JobsCancelArgs, JobsCommand, JobsControllerArgs, JobsLaunchArgs, JobsLogsArgs,
        JobsQueueArgs,
    },
    backend::{backend_or_exit, report},
    exit,
    hostenv::HostEnv,
    interrupt::{block_on, on_interrupt},
    jobsctl::{self, exit_code},
    plan::render_plan,
    stream::stdout_sink,
    table::{Table, ago, duration},
    taskload::{self, indent},
};

/// `sky jobs ...`.
pub fn jobs(env: &HostEnv, cmd: &JobsCommand, command_line: &str) -> i32 {
    match cmd {
        JobsCommand::Launch(a) => launch(env, a, command_line),
        JobsCommand::Queue(a) => queue(env, a),
        JobsCommand::Logs(a) => logs(env, a),
        JobsCommand::Cancel(a) => cancel(env, a),
        JobsCommand::Dashboard => dashboard(env),
        JobsCommand::Controller(a) => controller(env, a),
    }
}

fn fail(e: &JobsError) -> i32 {
    eprintln!("{e}");
    exit_code(e)
}

/// A duration flag (`--max-duration`, `--keep-on-failure`) in seconds, read as sky-spec reads
/// `resources.max_duration` (`90s`, `30m`, `1.5h`, `1d` or plain seconds); the error names
/// the flag and its value.
fn flag_duration(flag: &str, s: &str) -> Result<u64, String> {
    sky_spec::parse_duration(s).map_err(|e| format!("{flag} {s}: {e}"))
}

/// The job's `max_duration` from its tasks' `resources.max_duration` (any of a task's
/// candidates; the largest wins), used when `--max-duration` is not given.
///
/// The submission carries one limit for the whole job, which the controller applies to each
/// task (counted from that task's first RUNNING). For a pipeline whose tasks disagree (or
/// only some set one), the largest is used so no task is ended before its own limit; the
/// second value is a note saying so, for the user.
fn yaml_max_duration(tasks: &[Task]) -> (Option<u64>, Option<String>) {
    let per_task: Vec<Option<u64>> = tasks
        .iter()
        .map(|t| {
            t.resources
                .candidates()
                .iter()
                .filter_map(|r| r.max_duration)
                .max()
        })
        .collect();
    let largest = per_task.iter().flatten().copied().max();
    let note = match largest {
        Some(max) if per_task.len() > 1 && per_task.iter().any(|d| *d != Some(max)) => {
            let each = tasks
                .iter()
                .zip(&per_task)
                .enumerate()
                .map(|(i, (t, d))| {
                    format!(
                        "{} {}",
                        t.name.clone().unwrap_or_else(|| format!("task {i}")),
                        d.map_or("none".into(), sky_jobs::reconcile::human_duration)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            Some(format!(
                "Note: the pipeline's tasks set different resources.max_duration ({each}); a managed job has one limit, applied to each task: using the largest, {} (--max-duration sets another).",
                sky_jobs::reconcile::human_duration(max)
            ))
        }
        _ => None,
    };
    (largest, note)
}

/// SkyPilot's REQUESTED cell: `1x[CPU:1+]`, `2x[H100:8]`.
fn requested(task: &Task) -> String {
    let inner = match task.resources.candidates().first() {
        Some(r) => {
            let mut parts = Vec::new();
            if let Some(a) = &r.accelerators {
                parts.push(sky_spec::accelerator_string(a));
            } else if let Some(c) = &r.cpus {
                parts.push(format!(
                    "CPU:{}{}",
                    c.value,
                    if c.at_least { "+" } else { "" }
                ));
            } else if let Some(it) = &r.instance_type {
                parts.push(it.clone());
            } else {
                parts.push("CPU:1+".into());
            }
            if r.use_spot {
                parts.push("spot".into());
            }
            parts.join(", ")
        }
        None => "CPU:1+".into(),
    };
    format!("{}x[{inner}]", task.num_nodes)
}

/// The task as the controller gets it: a relative workdir and relative local file_mounts
/// sources made absolute (the controller runs from elsewhere), secrets apart.
fn submission_task(env: &HostEnv, mut task: Task) -> TaskSubmission {
    task.absolutize_local_paths(&env.cwd());
    let secrets: Vec<(String, String)> = task
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let name = task.name.clone();
    let requested = requested(&task);
    let yaml = sky_spec::to_yaml_redacted(&TaskFile::Task(Box::new(task)));
    TaskSubmission {
        name,
        yaml,
        secrets,
        requested,
    }
}

/// `sky jobs launch`.
fn launch(env: &HostEnv, args: &JobsLaunchArgs, command_line: &str) -> i32 {
    if args.entrypoint.is_empty() {
        eprintln!(
            "sky jobs launch needs a task YAML or a command, e.g. `sky jobs launch task.yaml`"
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
    let strategy = match args.job_recovery.as_deref().map(RecoveryStrategy::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return fail(&e),
    };
    let durations = (
        args.max_duration
            .as_deref()
            .map(|s| flag_duration("--max-duration", s))
            .transpose(),
        args.keep_on_failure
            .as_deref()
            .map(|s| flag_duration("--keep-on-failure", s))
            .transpose(),
    );
    let (max_duration, keep_on_failure) = match durations {
        (Ok(m), Ok(k)) => (m, k),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return exit::INVALID_INPUT;
        }
    };
    let (pipeline_name, mut tasks) = match file {
        TaskFile::Task(t) => (None, vec![*t]),
        TaskFile::Pipeline(p) => (p.name, p.tasks),
    };
    for t in &mut tasks {
        if t.name.is_none() && path.is_none() {
            t.name = Some("sky-cmd".into());
        }
    }
    // `--max-duration` wins over the tasks' `resources.max_duration` (the controller reads
    // only the submission's limit).
    let max_duration = match max_duration {
        Some(d) => Some(d),
        None => {
            let (d, note) = yaml_max_duration(&tasks);
            if let Some(note) = note {
                eprintln!("{note}");
            }
            d
        }
    };
    let where_ = path
        .as_deref()
        .map(|p| format!(" YAML {p}"))
        .unwrap_or_default();
    block_on(async {
        let backend = backend_or_exit!(env);
        // Every task must be one the enabled clouds can run, before anything is recorded.
        for (i, t) in tasks.iter().enumerate() {
            let problems = sky_optimizer::validate_task(backend.catalog(), t);
            if !problems.is_empty() {
                eprintln!(
                    "invalid task{where_}{}:\n{}",
                    if tasks.len() > 1 {
                        format!(" (task {i})")
                    } else {
                        String::new()
                    },
                    indent(&sky_spec::Diagnostics(problems).to_string())
                );
                return exit::INVALID_INPUT;
            }
            match sky_launch::local_uploads(t) {
                Err(e) => return report(&e),
                Ok(up) if !up.is_empty() => {
                    // Refused up front rather than failing on the controller's node.
                    if let Some(cluster) = crate::jobsctl::controller_elsewhere(env) {
                        let paths: Vec<String> =
                            up.iter().map(|(p, _)| p.display().to_string()).collect();
                        eprintln!(
                            "invalid task{where_}: it uploads files from this machine ({}), but the jobs controller runs on its own cluster {cluster} (jobs.controller.resources in {}), which cannot read them; sky-rs does not yet ship local files to a remote controller (SkyPilot stages them in a bucket). Put the controller on the local cloud (`cloud: local`), or remove the local workdir/file_mounts.",
                            paths.join(", "),
                            env.config_path().display()
                        );
                        return exit::INVALID_INPUT;
                    }
                }
                Ok(_) => {}
            }
        }
        let name = args
            .task
            .name
            .clone()
            .or(pipeline_name.clone())
            .or_else(|| tasks.first().and_then(|t| t.name.clone()))
            .unwrap_or_else(|| "sky-cmd".into());
        if let Some(p) = &path {
            eprintln!("YAML to run: {p}");
        }
        for (i, t) in tasks.iter().enumerate() {
            let (enabled, _) = match backend.task_clouds(t, None, false) {
                Ok(c) => c,
                Err(e) => return report(&e),
            };
            // Each cloud planned as its provider says (the local cloud offers spot where
            // its config simulates preemption), as the launch itself plans.
            let profiles: Vec<sky_clouds::CloudProfile> = enabled
                .iter()
                .map(|c| match backend.registry.get(c) {
                    Some(p) => p.profile(),
                    None => sky_clouds::CloudProfile::of(c),
                })
                .collect();
            match sky_optimizer::optimize_task_with(backend.catalog(), t, &profiles, &[]) {
                Ok(plan) => {
                    let label = format!(
                        "managed job '{name}'{}",
                        if tasks.len() > 1 {
                            format!(" task {i}")
                        } else {
                            String::new()
                        }
                    );
                    let text = render_plan(&plan, &label);
                    if args.dryrun {
                        print!("{text}");
                    } else {
                        eprint!("{text}");
                    }
                }
                Err(sky_optimizer::OptimizeError::NoResources { message }) => {
                    eprintln!("{message}");
                    return exit::NO_RESOURCES;
                }
                Err(e) => {
                    eprintln!("invalid task{where_}: {e}");
                    return exit::INVALID_INPUT;
                }
            }
        }
        if args.dryrun {
            println!("Dryrun finished.");
            return exit::OK;
        }
        if !args.yes
            && !crate::progress::confirm(&format!("Launching a managed job '{name}'. Proceed?"))
        {
            eprintln!("Aborted.");
            return exit::FAILURE;
        }
        let sub = JobSubmission {
            name: Some(name.clone()),
            user: env.user(),
            tasks: tasks.into_iter().map(|t| submission_task(env, t)).collect(),
            strategy,
            keep_on_failure,
            max_duration,
            command_line: format!("sky {command_line}"),
        };
        let client = match jobsctl::connect(env).await {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        let id = match client.submit(&sub).await {
            Ok(id) => id,
            Err(e) => return fail(&e),
        };
        eprintln!("Managed job ID: {id} ('{name}').");
        if args.detach_run {
            eprintln!(
                "`sky jobs logs {id}` streams it, `sky jobs queue` shows it, `sky jobs cancel {id}` stops it."
            );
            return exit::OK;
        }
        follow(&client, id).await
    })
}

/// Streams job `id`'s logs until it ends; exit 0 when it succeeded, 103 cancelled, else 100.
async fn follow(client: &sky_jobs::JobsClient, id: u64) -> i32 {
    on_interrupt(format!(
        "Interrupted: stopped streaming; managed job {id} keeps running. `sky jobs logs {id}` streams it again, `sky jobs cancel {id}` stops it."
    ));
    eprintln!(
        "Streaming the logs of managed job {id} (Ctrl-C stops streaming; job {id} keeps running)."
    );
    let mut sink = stdout_sink();
    let args = LogsArgs {
        id: Some(id),
        follow: true,
        ..Default::default()
    };
    match client.logs(&args, &mut sink).await {
        Ok(end) => {
            eprintln!(
                "Managed job {id} finished: {}{}.",
                end.status,
                end.failure_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            status_code(end.status)
        }
        Err(e) => fail(&e),
    }
}

fn status_code(s: ManagedJobStatus) -> i32 {
    match s {
        ManagedJobStatus::Succeeded => exit::OK,
        ManagedJobStatus::Cancelled => 103,
        s if s.is_terminal() => 100,
        _ => 101,
    }
}

/// `sky jobs queue`.
fn queue(env: &HostEnv, args: &JobsQueueArgs) -> i32 {
    let json = match args.output.as_str() {
        "json" => true,
        "table" => false,
        other => {
            eprintln!("--output {other}: use table or json");
            return exit::USAGE;
        }
    };
    block_on(async {
        let client = match jobsctl::connect(env).await {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        let q = QueueArgs {
            all_users: args.all_users,
            skip_finished: args.skip_finished,
            user: (!args.all_users).then(|| env.user()),
            ids: args.job_ids.clone(),
        };
        let jobs = match client.queue(&q).await {
            Ok(j) => j,
            Err(e) => return fail(&e),
        };
        if json {
            match serde_json::to_string_pretty(&jobs) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("failed to encode the jobs: {e}");
                    return exit::FAILURE;
                }
            }
            return exit::OK;
        }
        print!("{}", render_queue(&jobs, env.now_secs(), args.all_users));
        exit::OK
    })
}

/// SkyPilot's managed-jobs table; a pipeline's tasks are listed under their job.
fn render_queue(jobs: &[JobView], now: i64, users: bool) -> String {
    if jobs.is_empty() {
        return "No managed jobs found.\n".into();
    }
    let active = jobs.iter().filter(|j| !j.status.is_terminal()).count();
    let mut cols = vec![
        "ID",
        "TASK",
        "NAME",
        "REQUESTED",
        "SUBMITTED",
        "TOT. DURATION",
        "JOB DURATION",
        "#RECOVERIES",
        "STATUS",
    ];
    if users {
        cols.insert(3, "USER");
    }
    let mut t = Table::plain(cols);
    for j in jobs {
        let single = j.tasks.len() == 1;
        let mut row = vec![
            j.id.to_string(),
            "-".to_string(),
            j.name.clone(),
            if single {
                j.tasks[0].requested.clone()
            } else {
                "-".into()
            },
            ago(now, j.submitted_at),
            duration(j.total_duration_s as i64),
            duration(j.job_duration_s as i64),
            j.recovery_count.to_string(),
            j.status.to_string(),
        ];
        if users {
            row.insert(3, j.user.clone());
        }
        t.row(row);
        if !single {
            for task in &j.tasks {
                let mut row = vec![
                    String::new(),
                    task.index.to_string(),
                    format!("↳ {}", task.name),
                    task.requested.clone(),
                    "-".into(),
                    "-".into(),
                    duration(task.job_duration_s as i64),
                    task.recovery_count.to_string(),
                    task.status.to_string(),
                ];
                if users {
                    row.insert(3, String::new());
                }
                t.row(row);
            }
        }
    }
    format!("Managed jobs\nIn progress tasks: {active}\n{}", t.render())
}

/// `sky jobs logs`.
fn logs(env: &HostEnv, args: &JobsLogsArgs) -> i32 {
    block_on(async {
        let client = match jobsctl::connect(env).await {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        let req = LogsArgs {
            id: args.job_id,
            name: args.name.clone(),
            task: args.task,
            follow: !args.no_follow,
            controller: args.controller,
            user: None,
        };
        if req.follow {
            on_interrupt(
                "Interrupted: stopped streaming; the job keeps running. `sky jobs logs` streams it again."
                    .into(),
            );
        }
        let mut sink = stdout_sink();
        match client.logs(&req, &mut sink).await {
            Ok(end) => {
                if req.follow {
                    eprintln!("Managed job {} is {}.", end.id, end.status);
                }
                exit::OK
            }
            Err(e) => fail(&e),
        }
    })
}

/// `sky jobs cancel`.
fn cancel(env: &HostEnv, args: &JobsCancelArgs) -> i32 {
    if args.job_ids.is_empty() && args.name.is_none() && !args.all {
        eprintln!("name the jobs to cancel: sky jobs cancel ID..., -n NAME, or -a for all");
        return exit::USAGE;
    }
    let what = if args.all {
        "all your unfinished managed jobs".to_string()
    } else if let Some(n) = &args.name {
        format!("managed jobs named '{n}'")
    } else {
        format!(
            "managed job{} {}",
            if args.job_ids.len() == 1 { "" } else { "s" },
            args.job_ids
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if !args.yes && !crate::progress::confirm(&format!("Cancelling {what}. Proceed?")) {
        eprintln!("Aborted.");
        return exit::FAILURE;
    }
    block_on(async {
        let client = match jobsctl::connect(env).await {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        let sel = CancelArgs {
            ids: args.job_ids.clone(),
            name: args.name.clone(),
            all: args.all,
            user: (!args.all_users).then(|| env.user()),
        };
        match client.cancel(&sel).await {
            Ok((ids, done)) => {
                let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
                if !ids.is_empty() {
                    println!("Cancelling managed job(s): {}.", list(&ids));
                }
                if !done.is_empty() {
                    println!(
                        "Managed job(s) {} had already ended; nothing to cancel.",
                        list(&done)
                    );
                }
                if ids.is_empty() && done.is_empty() {
                    println!("No unfinished managed job to cancel.");
                }
                exit::OK
            }
            Err(e) => fail(&e),
        }
    })
}

/// `sky jobs dashboard`.
fn dashboard(env: &HostEnv) -> i32 {
    block_on(async {
        let client = match jobsctl::connect(env).await {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        match client.dashboard().await {
            Ok(url) => {
                println!("{url}");
                exit::OK
            }
            Err(e) => fail(&e),
        }
    })
}

/// `sky jobs controller run`: the daemon, until idle.
fn controller(env: &HostEnv, args: &JobsControllerArgs) -> i32 {
    if args.action != "run" {
        eprintln!(
            "sky jobs controller {}: the only action is `run`",
            args.action
        );
        return exit::USAGE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    rt.block_on(async {
        let backend = match crate::backend::backend(env, false).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}", e.message);
                return e.code;
            }
        };
        let state = backend.state.clone();
        let home = jobsctl::jobs_home(env);
        let config = ControllerConfig::from_env(home.clone(), &|k| env.var(k).map(String::from));
        let idle = env
            .var("SKY_JOBS_CONTROLLER_IDLE_SECONDS")
            .and_then(|s| s.parse::<f64>().ok())
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
            .unwrap_or(sky_jobs::daemon::DEFAULT_IDLE_EXIT);
        let listen = env
            .var("SKY_JOBS_CONTROLLER_LISTEN")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("loopback address"));
        let opts = DaemonOptions {
            home,
            listen,
            dashboard_listen: Some("127.0.0.1:0".parse().expect("loopback address")),
            idle_exit: Some(idle),
            config,
            state,
            driver: Arc::new(LaunchDriver::new(Arc::new(backend))),
        };
        match sky_jobs::daemon::run(opts).await {
            Ok(()) => exit::OK,
            Err(e) => fail(&e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_name_the_flag() {
        assert_eq!(flag_duration("--max-duration", "90s"), Ok(90));
        assert_eq!(flag_duration("--max-duration", "30m"), Ok(1800));
        assert_eq!(flag_duration("--max-duration", "2h"), Ok(7200));
        assert_eq!(flag_duration("--max-duration", "1d"), Ok(86_400));
        assert_eq!(flag_duration("--max-duration", "1.5h"), Ok(5400));
        assert_eq!(flag_duration("--max-duration", "45"), Ok(45));
        let e = flag_duration("--keep-on-failure", "soon").unwrap_err();
        assert!(e.starts_with("--keep-on-failure soon: "), "{e}");
        assert!(e.contains("such as 90s, 30m"), "{e}");
        for bad in ["-3m", "0", "0s", "", "1w"] {
            let e = flag_duration("--max-duration", bad).unwrap_err();
            assert!(e.starts_with(&format!("--max-duration {bad}: ")), "{e}");
        }
        // The same forms as `resources.max_duration` in a task YAML.
        for text in ["90s", "30m", "1.5h", "1d", "3600", "45 m", "0.1s", "w"] {
            assert_eq!(
                flag_duration("--max-duration", text).ok(),
                sky_spec::parse_duration(text).ok(),
                "{text:?}"
            );
        }
    }

    fn task_with(yaml: &str) -> Task {
        match sky_spec::parse_task_file(yaml, &sky_spec::ParseOptions::default()) {
            Ok(TaskFile::Task(t)) => *t,
            other => panic!("{yaml}: {other:?}"),
        }
    }

    #[test]
    fn max_duration_comes_from_the_tasks_resources() {
        let none = task_with("name: a\nrun: echo\n");
        let short = task_with("name: b\nresources:\n  max_duration: 90s\nrun: echo\n");
        let long = task_with("name: c\nresources:\n  max_duration: 2h\nrun: echo\n");
        let any_of = task_with(
            "name: d\nresources:\n  any_of:\n    - {cpus: 1, max_duration: 10m}\n    - {cpus: 2, max_duration: 1h}\nrun: echo\n",
        );
        assert_eq!(yaml_max_duration(std::slice::from_ref(&none)), (None, None));
        assert_eq!(
            yaml_max_duration(std::slice::from_ref(&short)),
            (Some(90), None)
        );
        assert_eq!(yaml_max_duration(&[any_of]), (Some(3600), None));
        // A pipeline whose tasks agree: that limit, no note.
        assert_eq!(
            yaml_max_duration(&[short.clone(), short.clone()]),
            (Some(90), None)
        );
        // Disagreeing (or unset on some): the largest, with a note naming each task's.
        let (d, note) = yaml_max_duration(&[none, short, long]);
        assert_eq!(d, Some(7200));
        let note = note.expect("a note");
        assert!(
            note.contains("a none, b 1m30s, c 2h") && note.contains("using the largest, 2h"),
            "{note}"
        );
    }

    #[test]
    fn pipelines_list_their_tasks_under_the_job() {
        let task = |index: u32, name: &str, status| sky_jobs::TaskView {
            index,
            name: name.into(),
            requested: "1x[CPU:1+]".into(),
            status,
            started_at: None,
            ended_at: None,
            job_duration_s: 5,
            recovery_count: 0,
            restarts: 0,
            failure_reason: None,
            cluster: None,
            infra: None,
        };
        let job = JobView {
            id: 7,
            name: "pipe".into(),
            user: "u".into(),
            status: ManagedJobStatus::Running,
            submitted_at: 100,
            ended_at: None,
            failure_reason: None,
            recovery_count: 2,
            job_duration_s: 5,
            total_duration_s: 65,
            tasks: vec![
                task(0, "prep", ManagedJobStatus::Succeeded),
                task(1, "train", ManagedJobStatus::Running),
            ],
        };
        let out = render_queue(&[job], 130, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Managed jobs");
        assert!(lines[2].starts_with(" ID  TASK  NAME"), "{out}");
        assert!(lines[2].contains("#RECOVERIES  STATUS"), "{out}");
        assert!(
            lines[3].contains("pipe") && lines[3].contains("1m 5s"),
            "{out}"
        );
        assert!(
            lines[4].contains("↳ prep") && lines[4].contains("SUCCEEDED"),
            "{out}"
        );
        assert!(
            lines[5].contains("↳ train") && lines[5].contains("RUNNING"),
            "{out}"
        );
    }
}
