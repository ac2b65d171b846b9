use std::time::Duration;

use sky_cloud_local::{LocalRunner, pid_alive};
use sky_provider::{CloudProvider, CommandRunner, RunnerError};

use crate::{provider, request, run, runner, wait_until};

async fn one_node(
    tmp: &std::path::Path,
) -> (
    sky_cloud_local::LocalProvider,
    sky_provider::ClusterHandle,
    std::sync::Arc<dyn CommandRunner>,
) {
    let p = provider(tmp, serde_json::Value::Null);
    let h = p
        .run_instances(&request("one", 1, "local", None))
        .await
        .unwrap();
    let n = p.query_instances(&h).await.unwrap().remove(0);
    let r = runner(&p, &h, &n).await;
    (p, h, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_streams_merged_output_env_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, h, r) = one_node(tmp.path()).await;
    let mut chunks = Vec::new();
    let env = vec![("GREETING".to_string(), "hi there".to_string())];
    // The command prints `done` only once the callback has seen the output before it: so the
    // output is streamed in chunks, not delivered at the end.
    let go = tmp.path().join("go");
    let script = format!(
        "echo \"$GREETING\"; echo oops >&2; while [ ! -e {} ]; do sleep 0.02; done; echo done; exit 3",
        go.display()
    );
    let mut on_output = |c: &[u8]| {
        chunks.push(c.to_vec());
        if chunks.concat().ends_with(b"oops\n") {
            std::fs::write(&go, "").unwrap();
        }
    };
    let streamed = r.run(&script, &env, &mut on_output);
    let code = tokio::time::timeout(Duration::from_secs(60), streamed)
        .await
        .expect("the output before `done` was not streamed")
        .unwrap();
    assert_eq!(code, 3);
    assert!(chunks.len() >= 2, "streamed in chunks: {chunks:?}");
    assert_eq!(
        String::from_utf8(chunks.concat()).unwrap(),
        "hi there\noops\ndone\n"
    );
    let (code, _) = run(r.as_ref(), "kill -9 $$").await;
    assert_eq!(code, 137);
    // A background process holding the output open does not block the command: it runs until
    // `bg-go` exists, which is made only after the command returned.
    let bg_go = tmp.path().join("bg-go");
    let bg = format!(
        "(while [ ! -e {} ]; do sleep 0.05; done) & echo started",
        bg_go.display()
    );
    let (code, out) = tokio::time::timeout(Duration::from_secs(60), run(r.as_ref(), &bg))
        .await
        .expect("the command waited for its background process");
    assert_eq!((code, out.as_str()), (0, "started\n"));
    std::fs::write(&bg_go, "").unwrap();
    // The node is visible to its processes.
    let (_, out) = run(r.as_ref(), "echo $SKY_LOCAL_NODE_IP").await;
    assert_eq!(
        out.trim(),
        p.query_instances(&h).await.unwrap()[0].internal_ip
    );
    p.terminate_instances(&h).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_run_kills_its_process_group() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, h, r) = one_node(tmp.path()).await;
    let pidfile = r.node_home().unwrap().join("child.pid");
    let script = "sleep 1000 & echo $! > child.pid; wait";
    let res = tokio::time::timeout(Duration::from_millis(500), r.run_capture(script, &[])).await;
    assert!(res.is_err(), "the command should still run");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_until(|| !pid_alive(pid), Duration::from_secs(5)).await,
        "child {pid} survived the drop"
    );
    p.terminate_instances(&h).await.unwrap();
}

#[tokio::test]
async fn upload_copies_trees_with_rsync_semantics() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, h, r) = one_node(tmp.path()).await;
    let home = r.node_home().unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("pkg/sub")).unwrap();
    std::fs::write(src.path().join("train.py"), "print('hi')").unwrap();
    std::fs::write(src.path().join("pkg/sub/data.txt"), "data").unwrap();
    std::os::unix::fs::symlink("train.py", src.path().join("link.py")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            src.path().join("train.py"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }

    r.upload(src.path(), "~/sky_workdir").await.unwrap();
    let wd = home.join("sky_workdir");
    assert_eq!(
        std::fs::read_to_string(wd.join("train.py")).unwrap(),
        "print('hi')"
    );
    assert_eq!(
        std::fs::read_to_string(wd.join("pkg/sub/data.txt")).unwrap(),
        "data"
    );
    assert_eq!(
        std::fs::read_link(wd.join("link.py")).unwrap(),
        std::path::Path::new("train.py")
    );
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(wd.join("train.py"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
    }
    // Re-upload overwrites changed files and keeps extra ones.
    std::fs::write(wd.join("extra"), "x").unwrap();
    std::fs::write(src.path().join("train.py"), "print('v2')").unwrap();
    r.upload(src.path(), "sky_workdir").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(wd.join("train.py")).unwrap(),
        "print('v2')"
    );
    assert!(wd.join("extra").exists());

    // Single files: to a path (parents created) or into a directory.
    r.upload(&src.path().join("pkg/sub/data.txt"), "~/a/b/renamed.txt")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(home.join("a/b/renamed.txt")).unwrap(),
        "data"
    );
    r.upload(&src.path().join("pkg/sub/data.txt"), "~/into/")
        .await
        .unwrap();
    assert!(home.join("into/data.txt").exists());
    let inside = home.join("abs");
    r.upload(&src.path().join("train.py"), inside.to_str().unwrap())
        .await
        .unwrap();
    assert!(inside.exists());

    // Refused: outside the node, `..`, a missing source.
    assert!(matches!(
        r.upload(src.path(), "/tmp/elsewhere").await,
        Err(RunnerError::InvalidPath { .. })
    ));
    assert!(matches!(
        r.upload(src.path(), "~/../x").await,
        Err(RunnerError::InvalidPath { .. })
    ));
    assert!(matches!(
        r.upload(&src.path().join("nope"), "~/x").await,
        Err(RunnerError::InvalidPath { .. })
    ));

    // The job sees the synced workdir.
    let (code, out) = run(r.as_ref(), "cd ~/sky_workdir && cat pkg/sub/data.txt").await;
    assert_eq!((code, out.as_str()), (0, "data"));
    p.terminate_instances(&h).await.unwrap();
}

#[tokio::test]
async fn runner_on_a_missing_node_is_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let r = LocalRunner::new(tmp.path().join("gone"), "127.64.0.9".parse().unwrap(), 0);
    assert!(matches!(
        r.run_capture("true", &[]).await,
        Err(RunnerError::Unreachable(_))
    ));
    assert_eq!(
        r.forward_port(8080).await.unwrap().to_string(),
        "127.64.0.9:8080"
    );
}
