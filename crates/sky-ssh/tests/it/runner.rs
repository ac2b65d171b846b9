//! `SshRunner` on one namespace host.

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
            control_dir: format!("/tmp/sky-ssh-r{}", std::process::id()).into(),
            connect_timeout: std::time::Duration::from_secs(3),
        },
        "runner-test",
    ))
}

#[tokio::test]
async fn runs_uploads_spawns_and_cancels() {
    let Some(hosts) = NetnsHosts::up(1) else {
        return;
    };
    let r = runner(&hosts);
    let (code, out) = r
        .run_capture("hostname; echo err >&2; pwd; exit 3", &[])
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&hosts.hosts[0].name) && out.contains("err") && out.contains("/home/sky"),
        "{out}"
    );
    // Upload: directory contents into a nested path under the home.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("d/sub")).unwrap();
    std::fs::write(tmp.path().join("d/sub/f.txt"), "hi").unwrap();
    r.upload(&tmp.path().join("d"), "~/a/b").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(hosts.hosts[0].home.join("a/b/sub/f.txt")).unwrap(),
        "hi"
    );
    // Detached process: survives the ssh session, logs to the file.
    let pid = r
        .spawn_detached(
            &["bash".into(), "-c".into(), "echo started; sleep 60".into()],
            &[],
            ".sky/t.log",
        )
        .await
        .unwrap();
    let (code, _) = r.run_capture(&format!("kill -0 {pid}"), &[]).await.unwrap();
    assert_eq!(code, 0);
    // Dropping a run future kills the remote command.
    let fut = r.run_capture("echo $$ > ~/running.pid; sleep 100", &[]);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(1500), fut).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, out) = r
            .run_capture(
                "p=$(cat ~/running.pid); kill -0 $p 2>/dev/null && echo alive || echo gone",
                &[],
            )
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&out).trim().to_owned();
        if (code, out.as_str()) == (0, "gone") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped run's command lives on: exit {code}, {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = r.run_capture(&format!("kill {pid}"), &[]).await;
}
