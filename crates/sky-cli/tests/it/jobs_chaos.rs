//! The managed-jobs controller killed with SIGKILL at random points across a run of 50 jobs
//! (while they launch, run, recover from spot preemption and are cancelled): after each kill
//! the next `sky jobs` command starts a new controller, which resumes every job. At the end
//! every job is in the state it should be, no job ran twice at once, and no cluster is left.
//!
//! "Twice at once" is caught by the jobs themselves: each run holds an exclusive `flock` on a
//! file named after its `SKYPILOT_TASK_ID` outside the node for its whole life, and writes to
//! `overlap` when the lock is already held (a second copy of the same task alive). The seed is
//! printed; `SKY_CHAOS_SEED=N` replays a run.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::jobs::Jobs;
use crate::{code, text};

const JOBS: u64 = 50;

/// xorshift64*: deterministic for a seed, enough for choosing pauses and victims.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn controller_pid(j: &Jobs) -> Option<u32> {
    let info = j.home.path().join(".sky-rs/jobs/controller.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(info).ok()?).ok()?;
    let pid = u32::try_from(v["pid"].as_u64()?).ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

fn queue(j: &Jobs) -> Vec<Value> {
    j.queue()
}

fn terminal(s: &str) -> bool {
    matches!(
        s,
        "SUCCEEDED"
            | "CANCELLED"
            | "FAILED"
            | "FAILED_SETUP"
            | "FAILED_PRECHECKS"
            | "FAILED_NO_RESOURCE"
            | "FAILED_CONTROLLER"
    )
}

#[test]
fn fifty_jobs_survive_a_controller_killed_at_random_points() {
    let seed = std::env::var("SKY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("jobs_chaos: seed {seed} (replay with SKY_CHAOS_SEED={seed})");
    let mut rng = Rng(seed);

    // r1: on-demand only; r2: spot, preempted 4 s after a node starts.
    let j = Jobs::new(
        "local:\n  regions:\n    - name: r1\n      zones:\n        - name: r1-a\n          price: 1\n    - name: r2\n      zones:\n        - name: r2-a\n          price: 2\n          preempt_after_seconds: 4\n          spot_price: 0.5\n",
    );
    let body = |secs: u32| {
        format!(
            "run: |\n  exec 9>\"PROGRESS/lock-$SKYPILOT_TASK_ID\"\n  flock -n 9 || echo \"$SKYPILOT_TASK_ID\" >> PROGRESS/overlap\n  echo start >> \"PROGRESS/job-$SKYPILOT_MANAGED_JOB_ID\"\n  sleep {secs}\n  echo end >> \"PROGRESS/job-$SKYPILOT_MANAGED_JOB_ID\"\n"
        )
    };
    let plain = j.task("chaos.yaml", &body(5));
    let long = j.task("chaos-long.yaml", &body(600));
    let spot = j.task(
        "chaos-spot.yaml",
        &format!("resources:\n  use_spot: true\n{}", body(2)),
    );

    // Every 10th job is spot (preempted whenever it outlives 4 s, recovered); every 7th runs
    // until cancelled.
    let mut expect = Vec::new();
    let mut kills = 0u32;
    for i in 1..=JOBS {
        let (file, want) = if i % 7 == 0 {
            (&long, "CANCELLED")
        } else if i % 10 == 0 {
            (&spot, "SUCCEEDED")
        } else {
            (&plain, "SUCCEEDED")
        };
        let id = j.submit(&["-n", &format!("chaos-{i}"), file]);
        expect.push((id, want));
        // A few kills while jobs are still being submitted.
        if rng.below(12) == 0
            && let Some(pid) = controller_pid(&j)
        {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            kills += 1;
        }
    }

    let mut cancelled = false;
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        std::thread::sleep(Duration::from_millis(100 + rng.below(1100)));
        if !cancelled && kills >= 3 {
            for (id, want) in &expect {
                if *want == "CANCELLED" {
                    let o = j.sky(&["jobs", "cancel", "-y", &id.to_string()]);
                    assert_eq!(code(&o), 0, "cancel {id}: {:?}", text(&o));
                }
            }
            cancelled = true;
            // Kill right after the cancels were accepted: the next controller must finish them.
        }
        if let Some(pid) = controller_pid(&j) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            kills += 1;
        }
        // The next command starts a new controller.
        let jobs = queue(&j);
        let open = jobs
            .iter()
            .filter(|v| !terminal(v["status"].as_str().unwrap_or_default()))
            .count();
        if cancelled && open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {open} jobs still open after {kills} kills: {jobs:?}"
        );
    }

    let jobs = queue(&j);
    for (id, want) in &expect {
        let v = jobs
            .iter()
            .find(|v| v["id"] == *id)
            .unwrap_or_else(|| panic!("seed {seed}: job {id} missing"));
        assert_eq!(
            v["status"].as_str(),
            Some(*want),
            "seed {seed}: job {id}: {v}"
        );
        if *want == "SUCCEEDED" {
            assert!(
                j.lines(&format!("job-{id}")).iter().any(|l| l == "end"),
                "seed {seed}: job {id} succeeded without its run finishing"
            );
        }
    }
    let overlap = j.lines("overlap");
    assert!(
        overlap.is_empty(),
        "seed {seed}: tasks ran twice at once: {overlap:?}"
    );
    // Every job's cluster is gone once the job is terminal.
    let status = j.clusters();
    assert!(
        !status.contains("chaos") && !status.contains("sky-managed"),
        "seed {seed}: job clusters left:\n{status}"
    );
    let local = j.home.path().join(".sky-rs/local");
    if let Ok(entries) = std::fs::read_dir(&local) {
        let left: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "seed {seed}: local nodes left: {left:?}");
    }
    assert!(kills >= 5, "seed {seed}: only {kills} controller kills");
    eprintln!("jobs_chaos: {kills} controller kills, {JOBS} jobs ended as expected");
}
