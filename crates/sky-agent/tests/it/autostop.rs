//! Autostop with a shortened minute.

use std::path::Path;
use std::time::{Duration, Instant};

use sky_agent::{JobStatus, WaitFor};

use crate::support::{TestCluster, run};

fn hook(out: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo \"$1\" >> {}", out.display()),
        "hook".into(),
    ]
}

async fn wait_file(path: &Path, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn autostop_fires_once_after_idle_and_waits_for_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fired");
    let h = hook(&out);
    let c = TestCluster::start_with(1, None, move |cfg| {
        cfg.autostop_hook = h.clone();
        cfg.autostop_tick = Duration::from_millis(20);
        cfg.autostop_minute = Duration::from_millis(200);
    })
    .await;
    // a running job keeps the cluster busy
    let go = dir.path().join("go");
    let id = c
        .submit(run(&format!(
            "while [ ! -f {} ]; do sleep 0.02; done",
            go.display()
        )))
        .await;
    c.wait_status(id, JobStatus::Running).await;
    c.head.set_autostop(1, true, WaitFor::Jobs).await.unwrap();
    assert_eq!(wait_file(&out, Duration::from_millis(600)).await, None);
    std::fs::write(&go, "").unwrap();
    c.wait_end(id).await;
    let fired = wait_file(&out, Duration::from_secs(10)).await;
    assert_eq!(fired.as_deref(), Some("down\n"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "down\n",
        "fires once"
    );
}

#[tokio::test]
async fn autostop_counts_ssh_sessions_and_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fired");
    let h = hook(&out);
    let c = TestCluster::start_with(1, None, move |cfg| {
        cfg.autostop_hook = h.clone();
        cfg.autostop_tick = Duration::from_millis(20);
        cfg.autostop_minute = Duration::from_millis(100);
    })
    .await;
    let sessions = c.homes[0].join(".sky/ssh_sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(sessions.join("me"), std::process::id().to_string()).unwrap();
    c.head
        .set_autostop(1, false, WaitFor::JobsAndSsh)
        .await
        .unwrap();
    assert_eq!(wait_file(&out, Duration::from_millis(500)).await, None);
    // cancel, then set with wait_for none: activity ignored
    c.head.set_autostop(-1, false, WaitFor::Jobs).await.unwrap();
    c.head.set_autostop(2, false, WaitFor::None).await.unwrap();
    let fired = wait_file(&out, Duration::from_secs(10)).await;
    assert_eq!(fired.as_deref(), Some("stop\n"));
    // a live session stops mattering once it ends
    std::fs::write(sessions.join("me"), "999999999").unwrap();
}

#[tokio::test]
async fn a_failed_hook_is_run_again_a_minute_later() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fired");
    let tried = dir.path().join("tried");
    // Fails the first time (as a `sky stop` that cannot reach the state would), then works.
    let h = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "if [ -e {t} ]; then echo \"$1\" >> {o}; else touch {t}; exit 1; fi",
            t = tried.display(),
            o = out.display()
        ),
        "hook".into(),
    ];
    let c = TestCluster::start_with(1, None, move |cfg| {
        cfg.autostop_hook = h.clone();
        cfg.autostop_tick = Duration::from_millis(20);
        cfg.autostop_minute = Duration::from_millis(300);
    })
    .await;
    let t0 = Instant::now();
    c.head.set_autostop(1, false, WaitFor::None).await.unwrap();
    let fired = wait_file(&out, Duration::from_secs(10)).await;
    assert_eq!(fired.as_deref(), Some("stop\n"));
    assert!(tried.exists());
    // First try after one minute, the retry one minute after it failed.
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "stop\n",
        "a hook that worked is not run again"
    );
}
