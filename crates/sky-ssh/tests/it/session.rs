//! `sky ssh`'s side of `SshRunner`: its interactive command and its `Host` entry, on one
//! namespace host.

use std::sync::Arc;

use sky_provider::CommandRunner;
use sky_provider_testkit::netns::NetnsHosts;
use sky_ssh::{SshRunner, SshTarget};

fn runner(hosts: &NetnsHosts) -> Arc<dyn CommandRunner> {
    Arc::new(SshRunner::new(
        SshTarget {
            ip: hosts.hosts[0].ip.clone(),
            port: 22,
            user: Some("sky".into()),
            identity_file: Some(hosts.identity_file.clone()),
            known_hosts_file: Some(hosts.known_hosts.clone()),
            strict_host_key_checking: "yes".into(),
            control_dir: format!("/tmp/sky-ssh-s{}", std::process::id()).into(),
            connect_timeout: std::time::Duration::from_secs(3),
        },
        "session-test",
    ))
}

#[tokio::test]
async fn interactive_commands_and_host_entries_reach_the_host() {
    let Some(hosts) = NetnsHosts::up(1) else {
        return;
    };
    let r = runner(&hosts);
    let run = |cmd: &[&str]| {
        let argv: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let out = r
            .interactive_command(&argv)
            .expect("an SSH runner has an interactive command")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // In the home without a workdir, in ~/sky_workdir with one; the exit code comes back.
    let (code, out) = run(&["hostname;", "pwd;", "exit 4"]);
    assert_eq!(code, Some(4), "{out}");
    assert_eq!(out, format!("{}\n/home/sky\n", hosts.hosts[0].name));
    std::fs::create_dir_all(hosts.hosts[0].home.join("sky_workdir")).unwrap();
    assert_eq!(run(&["pwd"]), (Some(0), "/home/sky/sky_workdir\n".into()));
    // The Host entry alone (ssh -F) logs in as the runner does.
    let e = r.ssh_endpoint().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, e.host_entry("c1")).unwrap();
    let out = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-o", "BatchMode=yes", "c1", "hostname"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        hosts.hosts[0].name,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
