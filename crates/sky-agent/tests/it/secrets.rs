//! Secrets reach the jobs but never the disk, and what the agent writes is its owner's only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sky_agent::{JobSpec, JobStatus, Token, WaitFor};

use crate::support::{TestCluster, read, run};

/// Every file under `dir` (recursively), with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, bytes));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// No file under the homes holds `secret`.
fn assert_nowhere_on_disk(homes: &[PathBuf], secret: &str) {
    for home in homes {
        let files = files_under(home);
        assert!(!files.is_empty());
        for (path, bytes) in files {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn secrets_reach_every_rank_but_never_the_disk() {
    let mut c = TestCluster::start(2).await;
    let secret = format!("s3cr3t-{}", Token::generate().unwrap().expose());
    // The job proves it sees the value by printing its two halves (never the whole).
    let halves = r#"echo "$PHASE rank=${SKYPILOT_NODE_RANK:-$SKYPILOT_SETUP_NODE_RANK} head=${API_KEY:0:10} plain=$PLAIN"; echo "tail=${API_KEY:10}""#;
    let id = c
        .submit(JobSpec {
            num_nodes: 2,
            envs: vec![
                ("API_KEY".into(), secret.clone()),
                ("PLAIN".into(), "visible".into()),
            ],
            secret_keys: vec!["API_KEY".into()],
            setup: Some(format!("PHASE=setup; {halves}")),
            ..run(&format!("PHASE=run; {halves}"))
        })
        .await;
    let text = c.logs(id).await;
    assert_eq!(c.job(id).await.status, JobStatus::Succeeded, "{text}");
    for phase in ["setup", "run"] {
        for rank in 0..2 {
            let line = format!("{phase} rank={rank} head={} plain=visible", &secret[..10]);
            assert!(text.contains(&line), "{line}: {text}");
        }
    }
    assert_eq!(
        text.matches(&format!("tail={}", &secret[10..])).count(),
        4,
        "{text}"
    );
    let sky = c.homes[0].join(".sky");
    let journal = read(sky.join("jobs.journal"));
    assert!(journal.contains(r#"["API_KEY","<redacted>"]"#), "{journal}");
    assert!(journal.contains(r#"["PLAIN","visible"]"#), "{journal}");
    assert_nowhere_on_disk(&c.homes, &secret);
    // A restarted head compacts the journal into the snapshot: redacted there too.
    c.stop_head().await;
    c.start_head().await;
    let snapshot = read(sky.join("jobs.json"));
    assert!(
        snapshot.contains(r#"["API_KEY","<redacted>"]"#),
        "{snapshot}"
    );
    assert_eq!(c.job(id).await.status, JobStatus::Succeeded);
    assert_nowhere_on_disk(&c.homes, &secret);
}

/// Every directory under `dir` (itself included) is 0700 and every file 0600.
fn assert_private(dir: &Path) {
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            assert_private(&p);
        } else {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

#[tokio::test]
async fn files_and_directories_the_agent_creates_are_its_owners_only() {
    let mut c = TestCluster::start(2).await;
    let id = c
        .submit(JobSpec {
            num_nodes: 2,
            setup: Some("echo setup".into()),
            ..run("echo run")
        })
        .await;
    assert_eq!(c.wait_end(id).await.status, JobStatus::Succeeded);
    c.head.set_autostop(60, false, WaitFor::Jobs).await.unwrap();
    c.stop_head().await; // the restart writes jobs.json
    c.start_head().await;
    let sky = c.homes[0].join(".sky");
    for f in ["jobs.json", "autostop.json", "agent.addr"] {
        assert!(sky.join(f).is_file(), "{f}");
    }
    let log_dir = PathBuf::from(c.job(id).await.log_dir);
    assert!(log_dir.join("setup.log").is_file());
    assert!(log_dir.join("tasks/0-head.log").is_file());
    let again = c.submit(run("true")).await; // and a journal again
    c.wait_end(again).await;
    assert!(sky.join("jobs.journal").is_file());
    for home in &c.homes {
        assert_private(&home.join(".sky"));
    }
    assert_private(&c.homes[0].join("sky_logs"));
    // The token file, in a directory the agent creates.
    let dir = tempfile::tempdir().unwrap();
    Token::generate()
        .unwrap()
        .save(&Token::path_in(&dir.path().join("home")))
        .unwrap();
    assert_private(&dir.path().join("home/.sky"));
}
