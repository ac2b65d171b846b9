//! Managed jobs end to end through the `sky` binary on the local cloud: the controller daemon
//! the CLI starts, spot recovery (EAGER_NEXT_REGION, FAILOVER), restarts on errors,
//! `recover_on_exit_codes`, pipelines, cancel, logs after the end, bad input.
//!
//! Each test has its own HOME; the controller polls fast (`SKY_JOBS_*` variables) and exits
//! soon after it is idle; the test's guard stops it and tears down what is left.

use std::{
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{Home, code, text};

/// A HOME with a `local:` topology and the fast controller settings.
pub(crate) struct Jobs {
    pub(crate) home: Home,
    /// Outside every node: where jobs keep their progress.
    progress: PathBuf,
}

const FAST: &[(&str, &str)] = &[
    ("SKY_JOBS_POLL_SECONDS", "0.2"),
    ("SKY_JOBS_RETRY_SECONDS", "0.5"),
    ("SKY_JOBS_FAILURE_GRACE_SECONDS", "0.5"),
    ("SKY_JOBS_CONTROLLER_IDLE_SECONDS", "5"),
];

impl Jobs {
    pub(crate) fn new(config: &str) -> Jobs {
        let home = Home::new(&[]);
        home.write(".sky/config.yaml", config);
        let progress = home.path().join("progress");
        std::fs::create_dir_all(&progress).unwrap();
        Jobs { home, progress }
    }

    pub(crate) fn sky(&self, args: &[&str]) -> Output {
        self.sky_with(&[], args)
    }

    fn sky_with(&self, extra: &[(&str, &str)], args: &[&str]) -> Output {
        let mut vars: Vec<(&str, &str)> = FAST.to_vec();
        vars.extend_from_slice(extra);
        self.home.sky_env(self.home.path(), &vars, args)
    }

    pub(crate) fn task(&self, name: &str, body: &str) -> String {
        self.home.task(
            name,
            &body.replace("PROGRESS", &self.progress.display().to_string()),
        )
    }

    /// Submits with `-d -y`; returns the job id.
    pub(crate) fn submit(&self, args: &[&str]) -> u64 {
        let mut all = vec!["jobs", "launch", "-d", "-y"];
        all.extend_from_slice(args);
        let o = self.sky(&all);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "jobs launch {args:?}:\n{out}{err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("Managed job ID: "))
            .unwrap_or_else(|| panic!("no job id in:\n{err}"));
        line["Managed job ID: ".len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// `sky jobs queue -a -o json`: every job.
    pub(crate) fn queue(&self) -> Vec<Value> {
        let o = self.sky(&["jobs", "queue", "-a", "-o", "json"]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "jobs queue:\n{out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// `sky jobs queue -a -o json`, job `id`.
    pub(crate) fn job(&self, id: u64) -> Value {
        let jobs = self.queue();
        let listed = format!("{jobs:?}");
        jobs.into_iter()
            .find(|j| j["id"] == id)
            .unwrap_or_else(|| panic!("job {id} not in the queue: {listed}"))
    }

    /// Polls until job `id`'s status satisfies `done` (at most `secs`); returns the job.
    pub(crate) fn wait(&self, id: u64, secs: u64, done: impl Fn(&str) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let j = self.job(id);
            let st = j["status"].as_str().unwrap_or_default().to_string();
            if done(&st) {
                return j;
            }
            if Instant::now() > deadline {
                let log = text(&self.sky(&[
                    "jobs",
                    "logs",
                    "--controller",
                    "--no-follow",
                    &id.to_string(),
                ]));
                panic!(
                    "job {id} still {st} after {secs}s: {j}\ncontroller log:\n{}{}",
                    log.0, log.1
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_terminal(&self, id: u64) -> Value {
        self.wait(id, 180, |s| {
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
        })
    }

    pub(crate) fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.progress.join(file))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The controller daemon's own log (what it printed, across restarts).
    pub(crate) fn controller_log(&self) -> String {
        std::fs::read_to_string(self.home.path().join(".sky-rs/jobs/controller.log"))
            .unwrap_or_else(|e| format!("(no controller log: {e})"))
    }

    /// The clusters `sky status` lists.
    pub(crate) fn clusters(&self) -> String {
        text(&self.sky(&["status"])).0
    }
}

impl Drop for Jobs {
    /// Stops the controller (it would relaunch what `sky down` removes), then `Home`'s drop
    /// tears the clusters down.
    fn drop(&mut self) {
        let info = self.home.path().join(".sky-rs/jobs/controller.json");
        if let Ok(t) = std::fs::read_to_string(&info)
            && let Ok(v) = serde_json::from_str::<Value>(&t)
            && let Some(pid) = v["pid"].as_u64()
        {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::path::Path::new(&format!("/proc/{pid}")).exists()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Three regions of one spot zone each, r1 cheapest; spot nodes are preempted `after`
/// seconds after they start.
fn spot_regions(after: u32) -> String {
    let mut s = String::from("local:\n  regions:\n");
    for (i, r) in ["r1", "r2", "r3"].iter().enumerate() {
        s.push_str(&format!(
            "    - name: {r}\n      zones:\n        - {{name: {r}-a, price: {}, preempt_after_seconds: {after}}}\n",
            i + 1
        ));
    }
    s
}

/// A spot job that waits to be preempted on its first two attempts and finishes on the third;
/// every attempt appends its cluster info and task id to a file outside the node.
const SPOT_JOB: &str = "name: spotjob
resources:
  cloud: local
  use_spot: true
run: |
  echo \"$SKYPILOT_CLUSTER_INFO|$SKYPILOT_TASK_ID|$SKYPILOT_MANAGED_JOB_ID\" >> PROGRESS/attempts
  n=$(wc -l < PROGRESS/attempts)
  if [ \"$n\" -lt 3 ]; then sleep 600; fi
  echo finished after $n attempts
";

/// (region, task id, managed job id) of each attempt.
fn attempts(j: &Jobs) -> Vec<(String, String, String)> {
    j.lines("attempts")
        .iter()
        .map(|l| {
            let parts: Vec<&str> = l.split('|').collect();
            let info: Value = serde_json::from_str(parts[0]).unwrap_or(Value::Null);
            (
                info["region"].as_str().unwrap_or_default().to_string(),
                parts.get(1).copied().unwrap_or_default().to_string(),
                parts.get(2).copied().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn spot_job_recovers(strategy: &str) -> Vec<(String, String, String)> {
    let j = Jobs::new(&spot_regions(4));
    let task = j.task("spot.yaml", SPOT_JOB);
    let id = j.submit(&["--job-recovery", strategy, &task]);
    let done = j.wait_terminal(id);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["recovery_count"], 2, "{done}");
    let att = attempts(&j);
    assert_eq!(att.len(), 3, "progress kept outside the node: {att:?}");
    // SKYPILOT_TASK_ID is stable across recoveries; SKYPILOT_MANAGED_JOB_ID is the job's id.
    assert!(
        att.iter().all(|a| a.1 == att[0].1 && !a.1.is_empty()),
        "{att:?}"
    );
    assert!(att.iter().all(|a| a.2 == id.to_string()), "{att:?}");
    // The logs are kept after the job ended and its cluster is gone.
    let o = j.sky(&["jobs", "logs", "--no-follow", &id.to_string()]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(out.contains("finished after 3 attempts"), "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while j.clusters().contains(&format!("spotjob-{id}")) {
        assert!(Instant::now() < deadline, "cluster left: {}", j.clusters());
        std::thread::sleep(Duration::from_millis(200));
    }
    att
}

#[test]
fn a_spot_job_preempted_twice_moves_region_under_eager_next_region() {
    let att = spot_job_recovers("EAGER_NEXT_REGION");
    assert_eq!(att[0].0, "r1", "{att:?}");
    assert_ne!(
        att[1].0, att[0].0,
        "relaunched in the preempted region: {att:?}"
    );
    assert_ne!(
        att[2].0, att[1].0,
        "relaunched in the preempted region: {att:?}"
    );
}

#[test]
fn a_spot_job_preempted_twice_stays_in_its_region_under_failover() {
    let att = spot_job_recovers("FAILOVER");
    assert!(att.iter().all(|a| a.0 == "r1"), "{att:?}");
}

const ONE_REGION: &str =
    "local:\n  regions:\n    - name: lab\n      zones:\n        - {name: lab-a}\n";

#[test]
fn max_restarts_on_errors_gives_four_attempts_then_failed() {
    let j = Jobs::new(ONE_REGION);
    let task = j.task(
        "fail.yaml",
        "name: flaky\nresources:\n  job_recovery:\n    max_restarts_on_errors: 3\nrun: |\n  echo x >> PROGRESS/tries\n  exit 1\n",
    );
    let id = j.submit(&[&task]);
    let done = j.wait_terminal(id);
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(j.lines("tries").len(), 4, "{done}");
}

#[test]
fn recover_on_exit_codes_recovers_on_those_codes_only() {
    let j = Jobs::new(ONE_REGION);
    let task = j.task(
        "codes.yaml",
        "name: codes\nresources:\n  job_recovery:\n    recover_on_exit_codes: [33]\nrun: |\n  echo x >> PROGRESS/tries\n  n=$(wc -l < PROGRESS/tries)\n  if [ \"$n\" -eq 1 ]; then exit 33; fi\n  exit 7\n",
    );
    let id = j.submit(&[&task]);
    let done = j.wait_terminal(id);
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(j.lines("tries").len(), 2, "33 recovered, 7 did not: {done}");
}

#[test]
fn a_two_task_pipeline_runs_in_order_and_streams_to_the_end() {
    let j = Jobs::new(ONE_REGION);
    let task = j.task(
        "pipe.yaml",
        "name: pipe\n---\nname: prep\nrun: echo prep >> PROGRESS/order; echo prep-out\n---\nname: train\nrun: echo train >> PROGRESS/order; echo train-out\n",
    );
    // Without -d the CLI streams the logs until the job ends, and exits 0 on success.
    let o = j.sky(&["jobs", "launch", "-y", &task]);
    let (out, err) = text(&o);
    assert_eq!(
        code(&o),
        0,
        "{out}{err}\ncontroller log:\n{}",
        j.controller_log()
    );
    assert!(
        out.contains("prep-out") && out.contains("train-out"),
        "{out}{err}"
    );
    assert_eq!(j.lines("order"), vec!["prep", "train"]);
    let o = j.sky(&["jobs", "queue"]);
    let (q, _) = text(&o);
    assert!(q.contains("↳ prep") && q.contains("↳ train"), "{q}");
    assert_eq!(q.matches("SUCCEEDED").count(), 3, "{q}");
}

#[test]
fn cancel_while_launching_running_and_pending() {
    // Launching: no zone has capacity, the controller keeps retrying.
    let j = Jobs::new(
        "local:\n  regions:\n    - name: lab\n      zones:\n        - {name: lab-a, fail: capacity}\n",
    );
    let id = j.submit(&["echo never"]);
    j.wait(id, 60, |s| s == "STARTING" || s == "PENDING");
    let o = j.sky(&["jobs", "cancel", "-y", &id.to_string()]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    assert_eq!(j.wait_terminal(id)["status"], "CANCELLED");
    // Cancelling it again says it had ended; an unknown id is an error naming it.
    let (out, _) = text(&j.sky(&["jobs", "cancel", "-y", &id.to_string()]));
    assert!(out.contains("already ended"), "{out}");
    let o = j.sky(&["jobs", "cancel", "-y", "9999"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(err.contains("9999"), "{err}");

    // Running, and a pipeline whose second task is still pending.
    let j = Jobs::new(ONE_REGION);
    let task = j.task(
        "long.yaml",
        "name: long\n---\nname: first\nrun: echo up >> PROGRESS/up; sleep 600\n---\nname: second\nrun: echo second >> PROGRESS/second\n",
    );
    let id = j.submit(&[&task]);
    let running = j.wait(id, 120, |s| s == "RUNNING");
    assert_eq!(running["tasks"][1]["status"], "PENDING", "{running}");
    let o = j.sky(&["jobs", "cancel", "-y", &id.to_string()]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let done = j.wait_terminal(id);
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["tasks"][1]["status"], "CANCELLED", "{done}");
    assert!(j.lines("second").is_empty(), "the pending task ran");
    let deadline = Instant::now() + Duration::from_secs(30);
    while j.clusters().contains(&format!("first-{id}")) {
        assert!(Instant::now() < deadline, "cluster left: {}", j.clusters());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bad_input_is_refused_and_nothing_is_recorded() {
    let j = Jobs::new(ONE_REGION);
    let bad = j.task(
        "bad.yaml",
        "name: bad\nresources:\n  cpus: lots\nrun: echo\n",
    );
    let o = j.sky(&["jobs", "launch", "-y", &bad]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(err.contains(&bad) && err.contains("cpus"), "{err}");
    let good = j.task("good.yaml", "name: good\nrun: echo hi\n");
    let o = j.sky(&["jobs", "launch", "-y", "--job-recovery", "SIDEWAYS", &good]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(
        err.contains("--job-recovery") && err.contains("SIDEWAYS"),
        "{err}"
    );
    let o = j.sky(&["jobs", "launch", "-y", "--max-duration", "soon", &good]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(err.contains("--max-duration soon"), "{err}");
    // --dryrun plans and records nothing.
    let o = j.sky(&["jobs", "launch", "--dryrun", &good]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        out.contains("Considered resources") && out.contains("Dryrun finished."),
        "{out}"
    );
    let o = j.sky(&["jobs", "queue"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(out.contains("No managed jobs found."), "{out}");
    let o = j.sky(&["jobs", "logs", "--no-follow", "42"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(err.contains("42"), "{err}");
    // `sky status` mentions the controller.
    let (out, _) = text(&j.sky(&["status"]));
    assert!(out.contains("Managed jobs controller: running"), "{out}");
}

#[test]
fn a_controller_that_cannot_start_is_a_clear_error() {
    let j = Jobs::new(ONE_REGION);
    let good = j.task("good.yaml", "name: good\nrun: echo hi\n");
    // An address of no interface here: binding it fails (nothing is sent anywhere).
    let o = j.sky_with(
        &[("SKY_JOBS_CONTROLLER_LISTEN", "192.0.2.1:9")],
        &["jobs", "launch", "-y", "-d", &good],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(
        err.contains("jobs controller failed to start") && err.contains("192.0.2.1:9"),
        "{err}"
    );
}

#[test]
fn the_controller_serves_only_with_its_token() {
    let j = Jobs::new(ONE_REGION);
    assert_eq!(code(&j.sky(&["jobs", "queue"])), 0);
    let jobs_home = j.home.path().join(".sky-rs/jobs");
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(jobs_home.join("controller.json")).unwrap())
            .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let token_file = info["token_file"].as_str().unwrap();
    let mode = std::fs::metadata(token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let ask = |token: &str| {
        use std::io::{BufRead, Write};
        let mut s = std::net::TcpStream::connect(info["addr"].as_str().unwrap()).unwrap();
        s.write_all(format!("{{\"token\":\"{token}\"}}\n{{\"op\":\"ping\"}}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        line
    };
    assert!(ask("wrong").contains("unauthorized"), "{}", ask("wrong"));
    let token = std::fs::read_to_string(token_file).unwrap();
    assert!(
        ask(token.trim()).contains("\"kind\":\"pong\""),
        "{}",
        ask(token.trim())
    );
    // `sky jobs dashboard` prints the dashboard's URL with its token; the page answers.
    let o = j.sky(&["jobs", "dashboard"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    let url = out.trim();
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url}"));
    let (hostport, path) = rest.split_once('/').unwrap();
    assert!(path.contains(&format!("token={}", token.trim())), "{url}");
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "{}",
        &reply[..reply.len().min(200)]
    );
}

/// `sky-jobs-controller-<FNV-1a of the user>` (the CLI's name for user `tester`).
fn controller_cluster(user: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in user.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("sky-jobs-controller-{h:08x}")
}

#[test]
fn the_controller_on_its_own_cluster_runs_a_job_while_no_client_exists() {
    let j = Jobs::new(&format!(
        "{ONE_REGION}jobs:\n  controller:\n    resources:\n      cloud: local\n"
    ));
    let task = j.task(
        "solo.yaml",
        "name: solo\nrun: |\n  sleep 2\n  echo done >> PROGRESS/solo\n",
    );
    // Submitted with -d: the client has exited when this returns.
    let id = j.submit(&[&task]);
    // No controller runs on this machine's jobs home; its state lives on its node.
    assert!(!j.home.path().join(".sky-rs/jobs/controller.json").exists());
    let node = j.home.head_node(&controller_cluster("tester"));
    assert!(node.join(".sky-rs/jobs/controller.json").exists());
    let deadline = Instant::now() + Duration::from_secs(120);
    while j.lines("solo").is_empty() {
        assert!(Instant::now() < deadline, "the job did not run");
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = j.wait_terminal(id);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert!(node.join(".sky-rs/state.db").exists());
}

#[test]
fn a_spot_job_gets_sigterm_and_the_notice_file_before_each_preemption() {
    let j = Jobs::new(
        "local:\n  regions:\n    - name: r1\n      zones:\n        - {name: r1-a, preempt_after_seconds: 4, preempt_notice_seconds: 2}\n    - name: r2\n      zones:\n        - {name: r2-a, price: 1, preempt_after_seconds: 4, preempt_notice_seconds: 2}\n",
    );
    let task = j.task(
        "notice.yaml",
        "name: notice\nresources:\n  use_spot: true\nrun: |\n  trap 'echo \"notice=$(cat $SKYPILOT_PREEMPTION_NOTICE_FILE 2>/dev/null)\" >> PROGRESS/signals; exit 143' TERM\n  echo a >> PROGRESS/attempts\n  n=$(wc -l < PROGRESS/attempts)\n  if [ \"$n\" -lt 3 ]; then sleep 600 & wait; fi\n  echo finished\n",
    );
    let id = j.submit(&[&task]);
    let done = j.wait_terminal(id);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["recovery_count"], 2, "{done}");
    let signals = j.lines("signals");
    assert_eq!(
        signals.len(),
        2,
        "one SIGTERM before each preemption: {signals:?}"
    );
    // The notice file held the deadline (unix seconds) when the signal came.
    for s in &signals {
        let deadline = s.trim_start_matches("notice=").trim();
        assert!(deadline.parse::<f64>().is_ok(), "{signals:?}");
    }
}

/// Polls `sky status` until it no longer lists `cluster` (at most `secs`); returns when it
/// was first seen gone. Panics with the controller log when it is still there.
fn wait_cluster_gone(j: &Jobs, cluster: &str, secs: u64) -> std::time::SystemTime {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let listed = j.clusters();
        if !listed.contains(cluster) {
            return std::time::SystemTime::now();
        }
        assert!(
            Instant::now() < deadline,
            "cluster {cluster} still listed after {secs}s:\n{listed}\ncontroller log:\n{}",
            j.controller_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn max_duration_from_the_flag_or_the_yaml_ends_a_long_job_failed_with_its_reason() {
    let j = Jobs::new(ONE_REGION);
    let plain = j.task("flag.yaml", "name: byflag\nrun: sleep 600\n");
    let in_yaml = j.task(
        "yaml.yaml",
        "name: byyaml\nresources:\n  max_duration: 3s\nrun: sleep 600\n",
    );
    // Both given: the flag wins over the YAML's hour.
    let both = j.task(
        "both.yaml",
        "name: both\nresources:\n  max_duration: 1h\nrun: sleep 600\n",
    );
    let jobs = [
        ("byflag", j.submit(&["--max-duration", "3s", &plain])),
        ("byyaml", j.submit(&[&in_yaml])),
        ("both", j.submit(&["--max-duration", "3s", &both])),
    ];
    for (name, id) in jobs {
        let done = j.wait_terminal(id);
        let log = j.controller_log();
        assert_eq!(done["status"], "FAILED", "{name}: {done}\n{log}");
        assert_eq!(
            done["failure_reason"], "exceeded max_duration 3s",
            "{name}: {done}\n{log}"
        );
        let task = &done["tasks"][0];
        assert_eq!(task["status"], "FAILED", "{name}: {done}");
        assert_eq!(
            task["failure_reason"], "exceeded max_duration 3s",
            "{name}: {done}"
        );
        // It ran (it was RUNNING for the limit), and was ended long before `sleep 600`.
        let (start, end) = (
            task["started_at"].as_i64().expect("started_at"),
            task["ended_at"].as_i64().expect("ended_at"),
        );
        assert!(
            (2..=60).contains(&(end - start)),
            "{name}: ran {}s: {done}",
            end - start
        );
        let cluster = format!("{name}-{id}");
        assert_eq!(task["cluster"], cluster.as_str(), "{name}: {done}");
        wait_cluster_gone(&j, &cluster, 30);
    }
}

#[test]
fn keep_on_failure_keeps_a_failed_jobs_cluster_for_the_time_then_downs_it() {
    let j = Jobs::new(ONE_REGION);
    let kept = j.task("kept.yaml", "name: kept\nrun: exit 1\n");
    let id = j.submit(&["--keep-on-failure", "6s", &kept]);
    let done = j.wait(id, 180, |s| s == "FAILED");
    let cluster = format!("kept-{id}");
    assert_eq!(done["tasks"][0]["cluster"], cluster.as_str(), "{done}");
    assert!(
        done["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("exit code 1")),
        "{done}"
    );
    // Still there once FAILED (the debugging window), and still up.
    let listed = j.clusters();
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&cluster) && l.contains("UP")),
        "{cluster} not kept after FAILED:\n{listed}\ncontroller log:\n{}",
        j.controller_log()
    );
    let ended = done["ended_at"].as_i64().expect("ended_at") as f64;
    let gone = unix_secs(wait_cluster_gone(&j, &cluster, 30));
    // Kept for the 6 s (ended_at is whole seconds, rounded down), not torn down at once.
    assert!(
        gone - ended >= 5.0,
        "gone {:.1}s after the job ended, kept for 6s:\n{}",
        gone - ended,
        j.controller_log()
    );
    let o = j.sky(&[
        "jobs",
        "logs",
        "--controller",
        "--no-follow",
        &id.to_string(),
    ]);
    let (log, err) = text(&o);
    assert!(
        log.contains(&format!(
            "keeping {cluster} for debugging (keep_on_failure)"
        )),
        "{log}{err}"
    );
    let after = j.job(id);
    assert_eq!(after["status"], "FAILED", "{after}");

    // Without the flag a failed job's cluster goes away, and is not kept.
    let plain = j.task("plain.yaml", "name: plain\nrun: exit 1\n");
    let id = j.submit(&[&plain]);
    let done = j.wait(id, 180, |s| s == "FAILED");
    let cluster = format!("plain-{id}");
    assert_eq!(done["tasks"][0]["cluster"], cluster.as_str(), "{done}");
    wait_cluster_gone(&j, &cluster, 30);
    let o = j.sky(&[
        "jobs",
        "logs",
        "--controller",
        "--no-follow",
        &id.to_string(),
    ]);
    let (log, _) = text(&o);
    assert!(!log.contains("keep_on_failure"), "{log}");
    assert_eq!(j.job(id)["status"], "FAILED");
}

#[test]
fn a_bad_duration_is_refused_naming_its_flag_and_nothing_is_recorded() {
    let j = Jobs::new(ONE_REGION);
    let good = j.task("good.yaml", "name: good\nrun: echo hi\n");
    for flag in ["--max-duration", "--keep-on-failure"] {
        for bad in ["soon", "0", "-5m"] {
            // `--flag=VALUE`: clap takes `-5m` apart as an option otherwise.
            let arg = format!("{flag}={bad}");
            let o = j.sky(&["jobs", "launch", "-y", "-d", &arg, &good]);
            let (out, err) = text(&o);
            assert_eq!(code(&o), 3, "{flag} {bad}: {out}{err}");
            // Named with its value, then what is wrong (sky-spec's message, as for the YAML).
            assert!(
                err.contains(&format!("{flag} {bad}: ")) && err.contains(&format!("{bad:?}")),
                "{flag} {bad}: {err}"
            );
            if bad == "soon" {
                assert!(err.contains("such as 90s, 30m, 2h"), "{err}");
            }
        }
    }
    // The YAML's spelling is checked the same way, naming the field.
    let bad = j.task(
        "bad.yaml",
        "name: bad\nresources:\n  max_duration: soon\nrun: echo hi\n",
    );
    let o = j.sky(&["jobs", "launch", "-y", "-d", &bad]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(
        err.contains("max_duration") && err.contains("\"soon\""),
        "{err}"
    );
    let jobs = j.queue();
    assert!(jobs.is_empty(), "a refused launch was recorded: {jobs:?}");
}

#[test]
fn a_pipeline_whose_tasks_set_different_max_durations_says_which_applies() {
    let j = Jobs::new(ONE_REGION);
    let pipe = j.task(
        "pipe.yaml",
        "name: pipe\n---\nname: prep\nresources:\n  max_duration: 10m\nrun: echo prep\n---\nname: train\nresources:\n  max_duration: 2h\nrun: echo train\n",
    );
    let o = j.sky(&["jobs", "launch", "--dryrun", &pipe]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        err.contains("prep 10m, train 2h") && err.contains("using the largest, 2h"),
        "{err}"
    );
    // The flag sets the limit: no note.
    let o = j.sky(&["jobs", "launch", "--dryrun", "--max-duration", "1h", &pipe]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(!err.contains("max_duration"), "{err}");
}
