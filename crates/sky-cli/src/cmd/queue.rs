//! A cluster's jobs: queue, logs, cancel.

use crate::{
    args::{CancelArgs, LogsArgs, QueueArgs},
    backend::{backend_or_exit, report, targets},
    exit,
    hostenv::HostEnv,
    interrupt::block_on,
    names::names_or_exit,
    stream::stdout_sink,
    table::{Table, ago, duration},
};

/// `sky queue`.
pub fn queue(env: &HostEnv, args: &QueueArgs) -> i32 {
    names_or_exit!(&args.clusters);
    block_on(async {
        let backend = backend_or_exit!(env);
        let names = match targets(&backend, &args.clusters, args.clusters.is_empty()).await {
            Ok(n) => n,
            Err(code) => return code,
        };
        let now = env.now_secs();
        let mut code = exit::OK;
        for name in names {
            let jobs = match backend.queue(&name, !args.skip_finished).await {
                Ok(j) => j,
                Err(e) => {
                    code = report(&e);
                    continue;
                }
            };
            println!("Job queue of cluster {name}");
            let mut t = Table::plain([
                "ID",
                "NAME",
                "USER",
                "SUBMITTED",
                "STARTED",
                "DURATION",
                "RESOURCES",
                "STATUS",
                "LOG",
            ]);
            for j in jobs.iter().rev() {
                if args.skip_finished && j.status.is_terminal() {
                    continue;
                }
                let secs = |t: f64| t as i64;
                let started = j
                    .started_at
                    .map(|s| ago(now, secs(s)))
                    .unwrap_or_else(|| "-".into());
                let dur = match (j.started_at, j.ended_at) {
                    (Some(s), Some(e)) => duration(secs(e) - secs(s)),
                    (Some(s), None) => duration(now - secs(s)),
                    _ => "-".into(),
                };
                t.row([
                    j.id.to_string(),
                    j.name.clone().unwrap_or_else(|| "-".into()),
                    j.user.clone(),
                    ago(now, secs(j.submitted_at)),
                    started,
                    dur,
                    j.resources.clone(),
                    j.status.to_string(),
                    j.log_dir.clone(),
                ]);
            }
            t.print();
        }
        code
    })
}

/// `sky logs`.
pub fn logs(env: &HostEnv, args: &LogsArgs) -> i32 {
    names_or_exit!(std::iter::once(&args.cluster));
    if args.provision {
        let path = env
            .state_dir()
            .join("logs")
            .join(&args.cluster)
            .join("provision.log");
        return match std::fs::read_to_string(&path) {
            Ok(t) => {
                print!("{t}");
                exit::OK
            }
            Err(e) => {
                eprintln!(
                    "no provision log for `{}` at {}: {e}",
                    args.cluster,
                    path.display()
                );
                exit::INVALID_INPUT
            }
        };
    }
    block_on(async {
        let backend = backend_or_exit!(env);
        let job = args.job_ids.first().copied();
        if args.status {
            return match backend.queue(&args.cluster, true).await {
                Ok(jobs) => {
                    let want = job.or_else(|| jobs.iter().map(|j| j.id).max());
                    let rec = jobs.iter().find(|j| Some(j.id) == want);
                    match rec {
                        Some(r) => println!("Job {}: {}", r.id, r.status),
                        None => println!(
                            "Job {} not found",
                            want.map(|w| w.to_string()).unwrap_or_else(|| "-".into())
                        ),
                    }
                    sky_launch::job_exit_code(rec.map(|r| r.status))
                }
                Err(e) => report(&e),
            };
        }
        let mut sink = stdout_sink();
        match backend
            .logs(&args.cluster, job, !args.no_follow, args.tail, &mut sink)
            .await
        {
            Ok(rec) => sky_launch::job_exit_code(rec.map(|r| r.status)),
            Err(e) => report(&e),
        }
    })
}

/// `sky cancel`.
pub fn cancel(env: &HostEnv, args: &CancelArgs) -> i32 {
    names_or_exit!(std::iter::once(&args.cluster));
    if args.job_ids.is_empty() && !args.all {
        eprintln!(
            "name job IDs to cancel, or pass -a/--all: `sky cancel {} 3 4`",
            args.cluster
        );
        return exit::USAGE;
    }
    block_on(async {
        let backend = backend_or_exit!(env);
        match backend
            .cancel(&args.cluster, args.job_ids.clone(), args.all)
            .await
        {
            Ok(ids) if ids.is_empty() => {
                eprintln!("No job to cancel on {}.", args.cluster);
                exit::OK
            }
            Ok(ids) => {
                eprintln!(
                    "Cancelled job{} {} on {}.",
                    if ids.len() == 1 { "" } else { "s" },
                    ids.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    args.cluster
                );
                exit::OK
            }
            Err(e) => report(&e),
        }
    })
}
