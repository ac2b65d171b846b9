//! `sky ssh`: a shell or a command on a cluster's head node.

use crate::{
    args::SshArgs,
    backend::{backend_or_exit, report},
    exit,
    hostenv::HostEnv,
    interrupt::block_on,
    names::names_or_exit,
};

/// `sky ssh CLUSTER [COMMAND]`: a shell (or one command) on the head node.
pub fn ssh(env: &HostEnv, args: &SshArgs) -> i32 {
    if args.setup_config {
        return crate::sshconfig::setup_include(env);
    }
    let Some(cluster) = args.cluster.as_ref() else {
        eprintln!("name a cluster: `sky ssh CLUSTER [COMMAND]`, or `sky ssh --setup-config`");
        return exit::USAGE;
    };
    names_or_exit!(std::iter::once(cluster));
    // The ssh session runs after the async runtime is gone: Ctrl-C belongs to it.
    let mut session: Option<std::process::Command> = None;
    let code = block_on(async {
        let backend = backend_or_exit!(env);
        let (p, h, nodes) = match backend.nodes(cluster).await {
            Ok(x) => x,
            Err(e) => return report(&e),
        };
        let Some(head) = nodes.first() else {
            eprintln!("cluster `{cluster}` has no nodes; `sky status -r {cluster}` refreshes it");
            return exit::FAILURE;
        };
        let runner = match p.command_runner(&h.provider, head) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return exit::FAILURE;
            }
        };
        if let Some(home) = runner.node_home() {
            return crate::hostenv::interactive_shell(&home, &args.command);
        }
        if head.state != sky_provider::InstanceState::Running {
            eprintln!(
                "the head node of `{cluster}` is {}, not running: `sky start {cluster}` brings it back",
                head.state
            );
            return exit::FAILURE;
        }
        match runner.interactive_command(&args.command) {
            Some(cmd) => {
                session = Some(cmd);
                exit::OK
            }
            None => {
                eprintln!(
                    "sky ssh cannot enter the nodes of {} clusters: their runner is not SSH",
                    h.provider.cloud
                );
                exit::NOT_AVAILABLE
            }
        }
    });
    let Some(mut cmd) = session else {
        return code;
    };
    match cmd.status() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(exit::FAILURE)
        }
        Err(e) => {
            eprintln!("failed to run ssh (is OpenSSH's client installed?): {e}");
            exit::FAILURE
        }
    }
}
