//! Cluster commands: status, stop, start, down, autostop, cost-report.

use sky_launch::{Backend, CancellationToken};

use crate::{
    args::{AutostopArgs, ClusterArgs, CostReportArgs, StatusArgs},
    backend::{backend_or_exit, lifecycle_targets, report, reporter, reporter_for},
    exit,
    hostenv::HostEnv,
    interrupt::{block_on, on_interrupt},
    names::names_or_exit,
    table::{Table, ago, duration},
};

/// `sky status`.
pub fn status(env: &HostEnv, args: &StatusArgs) -> i32 {
    names_or_exit!(&args.clusters);
    block_on(async {
        let backend = backend_or_exit!(env);
        let mut records = match backend.state.list_clusters().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("failed to read clusters: {e}");
                return exit::FAILURE;
            }
        };
        if !args.clusters.is_empty() {
            for c in &args.clusters {
                if !records.iter().any(|r| &r.name == c) {
                    eprintln!("cluster `{c}` does not exist; `sky status` lists the clusters");
                    return exit::INVALID_INPUT;
                }
            }
            records.retain(|r| args.clusters.contains(&r.name));
        }
        // Like SkyPilot, clusters with autostop set are always refreshed: their head may have
        // stopped or terminated them.
        let autostopping = |r: &sky_state::ClusterRecord| {
            r.autostop.is_some() && r.status == sky_state::ClusterStatus::Up
        };
        if args.refresh || records.iter().any(autostopping) {
            let mut fresh = Vec::new();
            for r in &records {
                if !args.refresh && !autostopping(r) {
                    fresh.push(r.clone());
                    continue;
                }
                match backend
                    .refresh(&r.name, &CancellationToken::new(), &sky_launch::Quiet)
                    .await
                {
                    Ok(Some(x)) => fresh.push(x),
                    Ok(None) => {
                        eprintln!("Cluster {} no longer exists (removed from state).", r.name)
                    }
                    Err(e) => {
                        eprintln!("failed to refresh {}: {e}", r.name);
                        fresh.push(r.clone());
                    }
                }
            }
            records = fresh;
        }
        if args.ip || args.endpoints {
            let [one] = records.as_slice() else {
                eprintln!("--ip and --endpoints need exactly one cluster: `sky status --ip NAME`");
                return exit::USAGE;
            };
            let h = match Backend::stored_handle(one) {
                Ok(h) => h,
                Err(e) => return report(&e),
            };
            if args.ip {
                println!("{}", h.ips.first().cloned().unwrap_or_default());
            } else {
                let head = h.ips.first().cloned().unwrap_or_default();
                let ports: Vec<String> =
                    h.ports.iter().map(|p| format!("{p}: {head}:{p}")).collect();
                if ports.is_empty() {
                    println!("No endpoints exposed; add `ports:` to the task's resources.");
                }
                for p in ports {
                    println!("{p}");
                }
            }
            return exit::OK;
        }
        let now = env.now_secs();
        if records.is_empty() {
            println!("No existing clusters.");
            println!("{}", crate::jobsctl::status_line(env).await);
            return exit::OK;
        }
        println!("Clusters");
        let mut columns = vec![
            "NAME",
            "LAUNCHED",
            "INFRA",
            "RESOURCES",
            "STATUS",
            "AUTOSTOP",
            "LAST_USE",
        ];
        if args.verbose {
            columns.extend(["NODES", "HEAD_IP"]);
        }
        let mut t = Table::plain(columns);
        for r in &records {
            let infra = match &r.zone {
                Some(z) => format!(
                    "{} ({}/{z})",
                    crate::clouds::display_name(&r.cloud),
                    r.region
                ),
                None => format!("{} ({})", crate::clouds::display_name(&r.cloud), r.region),
            };
            let autostop = match &r.autostop {
                Some(a) => format!("{}m{}", a.idle_minutes, if a.down { " (down)" } else { "" }),
                None => "-".into(),
            };
            let mut row = vec![
                r.name.clone(),
                ago(now, r.launched_at),
                infra,
                r.resources_str.clone(),
                r.status.to_string(),
                autostop,
                r.last_use.clone(),
            ];
            if args.verbose {
                let head_ip = Backend::stored_handle(r)
                    .ok()
                    .and_then(|h| h.ips.first().cloned())
                    .unwrap_or_else(|| "-".into());
                row.extend([r.num_nodes.to_string(), head_ip]);
            }
            t.row(row);
        }
        t.print();
        let managed = crate::backend::managed_clusters(&backend).await;
        let theirs: Vec<String> = records
            .iter()
            .filter_map(|r| {
                managed
                    .get(&r.name)
                    .map(|id| format!("{} (job {id})", r.name))
            })
            .collect();
        if !theirs.is_empty() {
            println!(
                "Clusters of managed jobs, owned by the jobs controller: {}; `sky jobs queue` shows their jobs, `sky jobs cancel` stops them.",
                theirs.join(", ")
            );
        }
        println!("{}", crate::jobsctl::status_line(env).await);
        exit::OK
    })
}

/// `sky stop`, `sky start`, `sky down`.
pub fn lifecycle(env: &HostEnv, what: &str, args: &ClusterArgs) -> i32 {
    names_or_exit!(&args.clusters);
    block_on(async {
        // `sky down` can clean up without a readable state database.
        let backend = backend_or_exit!(env, what == "down");
        let force = what == "down" && args.purge;
        let names = match lifecycle_targets(
            &crate::jobsctl::controller_cluster(env),
            &backend,
            what,
            &args.clusters,
            args.all,
            force,
        )
        .await
        {
            Ok(n) => n,
            Err(code) => return code,
        };
        let rep = reporter();
        let mut code = exit::OK;
        for name in names {
            on_interrupt(format!(
                "Interrupted during `sky {what} {name}`. `sky status -r {name}` shows where it stands; `sky {what} {name}` again finishes it."
            ));
            let never = CancellationToken::new();
            let r = match what {
                "stop" => backend.stop(&name, &never, &rep).await,
                "start" => backend
                    .start(&name, &never, &reporter_for(env, &name))
                    .await
                    .map(|_| ()),
                _ => backend.down(&name, args.purge, &never, &rep).await,
            };
            match r {
                // The cluster's `Host` entry follows it: written when UP, gone when down.
                Ok(()) if what != "stop" => crate::sshconfig::refresh(env, &backend, &name).await,
                Ok(()) => {}
                Err(e) => code = report(&e),
            }
        }
        code
    })
}

/// `sky autostop`.
pub fn autostop(env: &HostEnv, args: &AutostopArgs) -> i32 {
    names_or_exit!(&args.clusters);
    block_on(async {
        let backend = backend_or_exit!(env);
        let names = match lifecycle_targets(
            &crate::jobsctl::controller_cluster(env),
            &backend,
            "autostop",
            &args.clusters,
            args.all,
            false,
        )
        .await
        {
            Ok(n) => n,
            Err(code) => return code,
        };
        let idle = if args.cancel {
            -1
        } else {
            args.idle_minutes.unwrap_or(5)
        };
        let wait_for = match args.wait_for.as_deref() {
            Some("jobs") => sky_agent::WaitFor::Jobs,
            Some("none") => sky_agent::WaitFor::None,
            Some("jobs_and_ssh") | None => sky_agent::WaitFor::JobsAndSsh,
            Some(other) => {
                eprintln!("--wait-for {other}: choose jobs_and_ssh, jobs or none");
                return exit::USAGE;
            }
        };
        let mut code = exit::OK;
        for name in names {
            match backend
                .set_autostop(
                    &name,
                    idle,
                    args.down,
                    wait_for,
                    &CancellationToken::new(),
                    &reporter(),
                )
                .await
            {
                Ok(()) if idle < 0 => eprintln!("Autostop cancelled for {name}."),
                Ok(()) => eprintln!(
                    "{name} will {} after {idle} idle minute{}.",
                    if args.down { "be torn down" } else { "stop" },
                    if idle == 1 { "" } else { "s" }
                ),
                Err(e) => code = report(&e),
            }
        }
        code
    })
}

/// `sky cost-report`.
pub fn cost_report(env: &HostEnv, _args: &CostReportArgs) -> i32 {
    block_on(async {
        let backend = backend_or_exit!(env);
        let rows = match backend.state.cost_report(env.now_secs()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("failed to read the cost report: {e}");
                return exit::FAILURE;
            }
        };
        let mut t = Table::plain([
            "NAME",
            "LAUNCHED",
            "DURATION",
            "RESOURCES",
            "STATUS",
            "COST (est.)",
        ]);
        let now = env.now_secs();
        for r in rows {
            t.row([
                r.name.clone(),
                ago(now, r.launched_at),
                duration(r.duration_seconds),
                r.resources_str.clone(),
                r.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "TERMINATED".into()),
                format!("$ {:.2}", r.total_cost),
            ]);
        }
        t.print();
        exit::OK
    })
}
