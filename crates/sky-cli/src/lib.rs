//! `sky_cli`: the sky-rs command line (SkyPilot's commands and flags) as a library; the `sky`
//! binary is a thin `main` over [`main_with`].
//!
//! A thin layer over the backend: clap definitions ([`args`]), reading files and the
//! environment (only through [`HostEnv`]), printing tables (`table`). Planning lives in
//! `sky-optimizer`, the task format in `sky-spec`, launching in `sky-launch`.
//!
//! Modules are layered, and no module uses one above it: `args` (clap structs, no logic) ←
//! shared services (`hostenv`, `exit`, `table`, `progress`, `taskload`, `clouds`, `recover`,
//! `agentcfg`, `names`, `interrupt`, `backend`, `stream`, `sshconfig`, `plan`, `jobsctl`) ← commands (`cmd::*`,
//! one module per command group, which never use each other) ← dispatch ([`run`], here).

mod agentcfg;
pub mod args;
mod backend;
mod clouds;
mod cmd;
pub mod exit;
pub mod hostenv;
mod interrupt;
mod jobsctl;
#[cfg(test)]
mod modgraph;
mod names;
mod plan;
mod progress;
mod recover;
mod sshconfig;
mod stream;
mod table;
mod taskload;

use std::ffi::OsString;

use clap::Parser;

pub use crate::hostenv::HostEnv;
use crate::{
    args::{Cli, Command, GpusCommand},
    cmd::{agent, check, cluster, gpus, jobs, launch, queue, ssh, validate},
    exit::not_available,
};

/// Runs `sky` with these arguments (the first is the program name, as in `std::env::args_os`)
/// in the process's environment; returns the exit code.
pub fn main_with<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    run(args, &HostEnv::from_process())
}

/// Runs `sky` with these arguments (the first is the program name) in `env`; returns the exit
/// code. Usage errors print clap's message and return 2; `--help` and `--version` print and
/// return 0.
pub fn run<I, T>(args: I, env: &HostEnv) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let command_line = recorded_command_line(&words);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    dispatch(env, cli.command, &command_line)
}

/// Runs one parsed command.
fn dispatch(env: &HostEnv, command: Command, command_line: &str) -> i32 {
    match command {
        Command::Launch(args) if args.dryrun => launch::run(env, &args),
        Command::Launch(args) => launch::launch(env, &args, format!("sky {command_line}")),
        Command::Validate(args) => validate::run(env, &args),
        Command::Check(args) => check::run(env, &args),
        Command::ShowGpus(args) | Command::Gpus(GpusCommand::List(args)) => gpus::run(env, &args),
        Command::Exec(args) => launch::exec(env, &args, format!("sky {command_line}")),
        Command::Status(args) => cluster::status(env, &args),
        Command::Stop(args) => cluster::lifecycle(env, "stop", &args),
        Command::Start(args) => cluster::lifecycle(env, "start", &args),
        Command::Down(args) => cluster::lifecycle(env, "down", &args),
        Command::Autostop(args) => cluster::autostop(env, &args),
        Command::Queue(args) => queue::queue(env, &args),
        Command::Logs(args) => queue::logs(env, &args),
        Command::Cancel(args) => queue::cancel(env, &args),
        Command::Ssh(args) => ssh::ssh(env, &args),
        Command::CostReport(args) => cluster::cost_report(env, &args),
        Command::Agent(args) => agent::agent(env, &args),
        Command::Jobs(cmd) => jobs::jobs(env, &cmd, command_line),
        Command::Serve(_) => not_available("serve", "serving"),
        Command::Storage(_) => not_available("storage", "storage"),
    }
}

/// The command line as sky records it (a cluster's last use, its history): the value of every
/// `--secret KEY=VALUE` is replaced by `<redacted>`, so no secret reaches the state database
/// or `sky status`.
fn recorded_command_line(args: &[String]) -> String {
    let redact = |kv: &str| match kv.split_once('=') {
        Some((k, _)) => format!("{k}=<redacted>"),
        None => kv.to_string(),
    };
    let mut out = Vec::with_capacity(args.len());
    let mut next_is_secret = false;
    for a in args {
        if next_is_secret {
            out.push(redact(a));
            next_is_secret = false;
        } else if a == "--secret" {
            out.push(a.clone());
            next_is_secret = true;
        } else if let Some(kv) = a.strip_prefix("--secret=") {
            out.push(format!("--secret={}", redact(kv)));
        } else {
            out.push(a.clone());
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::recorded_command_line;

    #[test]
    fn secrets_are_redacted_in_the_recorded_command_line() {
        let args: Vec<String> = [
            "launch",
            "--secret",
            "API_KEY=hunter2",
            "--secret=TOKEN=s3cr3t=x",
            "--secret",
            "FROM_ENV",
            "--env",
            "A=visible",
            "task.yaml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let line = recorded_command_line(&args);
        assert_eq!(
            line,
            "launch --secret API_KEY=<redacted> --secret=TOKEN=<redacted> --secret FROM_ENV --env A=visible task.yaml"
        );
        assert!(!line.contains("hunter2") && !line.contains("s3cr3t"));
    }
}
