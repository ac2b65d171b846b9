//! A managed job's cluster belongs to the jobs controller: `sky down -a` / `sky stop -a` skip it
//! (and say so), naming it is refused with the `sky jobs cancel` to run, and `sky down --purge`
//! takes it anyway. Relative local paths of a managed task are the CLI's directory's.

use std::time::{Duration, Instant};

use crate::jobs::Jobs;
use crate::{code, text};

const ONE_REGION: &str =
    "local:\n  regions:\n    - name: lab\n      zones:\n        - {name: lab-a}\n";

fn status_of(j: &Jobs, id: u64) -> String {
    j.job(id)["status"].as_str().unwrap_or_default().to_string()
}

fn wait_status(j: &Jobs, id: u64, want: &str) {
    j.wait(id, 120, |s| s == want);
}

#[test]
fn cluster_commands_leave_managed_job_clusters_to_the_controller() {
    let j = Jobs::new(ONE_REGION);
    let task = j.task(
        "own.yaml",
        "name: own\nrun: echo up >> PROGRESS/runs; sleep 600\n",
    );
    let id = j.submit(&[&task]);
    wait_status(&j, id, "RUNNING");
    let cluster = format!("own-{id}");
    let status = j.clusters();
    assert!(
        status.contains(&format!(
            "owned by the jobs controller: {cluster} (job {id})"
        )),
        "{status}"
    );
    // A cluster of the user's own beside it.
    let o = j.sky(&["launch", "-y", "-c", "mine", "echo mine"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));

    let o = j.sky(&["down", "-a", "-y"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        err.contains(&format!(
            "Skipping 1 cluster of managed jobs in progress ({cluster})"
        )),
        "{err}"
    );
    let status = j.clusters();
    assert!(status.contains(&cluster), "{status}");
    assert!(!status.contains("mine"), "{status}");

    for what in ["down", "stop"] {
        let o = j.sky(&[what, "-y", &cluster]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 3, "{out}{err}");
        assert!(
            err.contains(&format!("runs managed job {id}"))
                && err.contains(&format!("sky jobs cancel {id}")),
            "{err}"
        );
    }
    // The job was not disturbed: still RUNNING on its first attempt.
    assert_eq!(status_of(&j, id), "RUNNING");
    assert_eq!(j.lines("runs").len(), 1);

    // --purge takes it anyway; the controller then recovers the job onto a new cluster.
    let o = j.sky(&["down", "-y", "--purge", &cluster]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(120);
    while j.lines("runs").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "not recovered:\n{}",
            j.controller_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = j.sky(&["jobs", "cancel", "-y", &id.to_string()]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    wait_status(&j, id, "CANCELLED");
}

/// Relative local paths in a managed job's task are the CLI's directory's, not the
/// controller's: the workdir and a file_mounts source given as `./...` reach the node.
#[test]
fn relative_workdir_and_file_mounts_are_the_clis() {
    let j = Jobs::new(ONE_REGION);
    j.home.write("proj/hello.txt", "from the workdir\n");
    j.home.write("data/in.txt", "from a file mount\n");
    let task = j.task(
        "paths.yaml",
        "name: paths\nworkdir: ./proj\nfile_mounts:\n  ~/in.txt: ./data/in.txt\nrun: |\n  cat hello.txt >> PROGRESS/seen\n  cat ~/in.txt >> PROGRESS/seen\n",
    );
    let id = j.submit(&[&task]);
    wait_status(&j, id, "SUCCEEDED");
    assert_eq!(j.lines("seen"), ["from the workdir", "from a file mount"]);
}

/// A controller on its own cluster on another cloud cannot read this machine's files: a task
/// that uploads some is refused before anything is recorded or launched.
#[test]
fn local_files_are_refused_for_a_controller_on_another_cloud() {
    let j = Jobs::new(&format!(
        "{ONE_REGION}jobs:\n  controller:\n    resources:\n      cloud: aws\n      cpus: 2\n"
    ));
    j.home.write("proj/hello.txt", "hi\n");
    let task = j.task("up.yaml", "name: up\nworkdir: ./proj\nrun: cat hello.txt\n");
    let o = j.sky(&["jobs", "launch", "-d", "-y", &task]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(
        err.contains("jobs controller runs on its own cluster sky-jobs-controller-")
            && err.contains("/proj")
            && err.contains("cloud: local"),
        "{err}"
    );
    // Nothing launched: no controller cluster, no job.
    let status = j.clusters();
    assert!(status.contains("No existing clusters."), "{status}");
    assert!(
        !j.home.path().join(".sky-rs/jobs/controller.json").exists(),
        "no local controller started either"
    );
}
