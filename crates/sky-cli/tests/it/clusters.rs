//! Clusters on the local cloud, end to end through the `sky` binary with a temporary HOME:
//! launch, exec, status, queue, logs, stop, start, down; multi-node; failover on a simulated
//! topology; failures.

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::{Home, code, text};

impl Home {
    /// Runs `sky` with a working directory of the test's choosing.
    pub(crate) fn sky_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.sky_env(dir, &[], args)
    }

    /// Like [`Home::sky_in`], with extra environment variables.
    pub(crate) fn sky_env(&self, dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sky"))
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("HOME", self.dir.path())
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("USER", "tester")
            .envs(vars.iter().copied())
            .output()
            .expect("run sky")
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The home of a local cluster's head node.
    pub(crate) fn head_node(&self, cluster: &str) -> std::path::PathBuf {
        let local = self.path().join(".sky-rs/local");
        std::fs::read_dir(&local)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{cluster}-")))
            })
            .unwrap_or_else(|| panic!("no node directory of {cluster} in {}", local.display()))
            .join("node-0")
    }

    /// The head node's cluster token, checked to be readable by its owner only.
    pub(crate) fn agent_token(&self, cluster: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.head_node(cluster).join(".sky/agent.token");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
        std::fs::read_to_string(p).unwrap().trim().to_string()
    }

    /// The head agent's first answer line to a `queue` request carrying `token`.
    pub(crate) fn agent_says(&self, cluster: &str, token: Option<&str>) -> String {
        use std::io::{BufRead, Write};
        let addr =
            std::fs::read_to_string(self.head_node(cluster).join(".sky/agent.addr")).unwrap();
        let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
        // Protocol 3: the token line, then the request line.
        let req = match token {
            Some(t) => format!("{{\"token\":\"{t}\"}}\n{{\"op\":\"queue\"}}\n"),
            None => "{}\n{\"op\":\"queue\"}\n".to_string(),
        };
        s.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        line
    }

    pub(crate) fn task(&self, name: &str, body: &str) -> String {
        let p = self.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    }

    /// Every process whose environment or command line mentions this HOME.
    pub(crate) fn processes(&self) -> Vec<String> {
        let needle = self.path().display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().to_string();
            if !pid.chars().all(|c| c.is_ascii_digit()) || pid == std::process::id().to_string() {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let hay = String::from_utf8_lossy(&[cmdline.as_slice(), environ.as_slice()].concat())
                .to_string();
            if hay.contains(&needle) {
                found.push(format!(
                    "{pid}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
        found
    }

    /// Nothing is left: no processes, no node directories.
    pub(crate) fn assert_clean(&self) {
        self.assert_no_processes_and(true);
    }

    /// No process is left (node directories may stay: a stopped cluster's do).
    pub(crate) fn assert_no_processes(&self) {
        self.assert_no_processes_and(false);
    }

    /// Waits (bounded) until no process is left and, with `no_dirs`, no node directory.
    pub(crate) fn assert_no_processes_and(&self, no_dirs: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = self.processes();
            let local = self.path().join(".sky-rs/local");
            let dirs: Vec<String> = std::fs::read_dir(&local)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| no_dirs && !n.starts_with('.'))
                .collect();
            if procs.is_empty() && dirs.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("left behind: processes {procs:?}, node dirs {dirs:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ok(o: &Output, what: &str) -> String {
    let (out, err) = text(o);
    assert_eq!(code(o), 0, "{what} failed:\n{out}\n{err}");
    out
}

#[test]
fn hello_lifecycle() {
    let home = Home::new(&[]);
    let repo = crate::repo();
    let o = home.sky_in(&repo, &["launch", "-y", "-c", "dev", "examples/hello.yaml"]);
    let out = ok(&o, "launch");
    assert!(
        out.contains("Hello from sky-rs on") && out.contains("node rank: 0 of 1"),
        "{out}"
    );

    let out = ok(&home.sky_in(&repo, &["status"]), "status");
    assert!(out.contains("dev") && out.contains("UP"), "{out}");
    // The agent takes requests only with the cluster token, kept private on the node.
    let first_token = home.agent_token("dev");
    assert!(home.agent_says("dev", None).contains("unauthorized"));
    assert!(
        home.agent_says("dev", Some("0123"))
            .contains("unauthorized")
    );
    assert!(
        home.agent_says("dev", Some(&first_token))
            .contains(r#""kind":"jobs""#)
    );

    let out = ok(
        &home.sky_in(
            &repo,
            &["exec", "dev", "echo second-job-$SKYPILOT_NODE_RANK"],
        ),
        "exec",
    );
    assert!(out.contains("second-job-0"), "{out}");

    let out = ok(&home.sky_in(&repo, &["queue", "dev"]), "queue");
    assert_eq!(out.matches("SUCCEEDED").count(), 2, "{out}");

    let out = ok(&home.sky_in(&repo, &["logs", "dev", "1"]), "logs");
    assert!(out.contains("Hello from sky-rs on"), "{out}");

    ok(&home.sky_in(&repo, &["stop", "dev"]), "stop");
    let out = ok(&home.sky_in(&repo, &["status"]), "status");
    assert!(out.contains("STOPPED"), "{out}");
    assert!(
        home.processes().is_empty(),
        "stop must leave no process: {:?}",
        home.processes()
    );

    ok(&home.sky_in(&repo, &["start", "dev"]), "start");
    let out = ok(&home.sky_in(&repo, &["status", "-r"]), "status -r");
    assert!(out.contains("UP"), "{out}");
    // Restarted agents have a fresh token; the old one no longer works.
    assert_ne!(home.agent_token("dev"), first_token);
    assert!(
        home.agent_says("dev", Some(&first_token))
            .contains("unauthorized")
    );
    let out = ok(
        &home.sky_in(&repo, &["exec", "dev", "echo after-restart"]),
        "exec after start",
    );
    assert!(out.contains("after-restart"), "{out}");

    ok(&home.sky_in(&repo, &["down", "dev"]), "down");
    let out = ok(&home.sky_in(&repo, &["status"]), "status");
    assert!(!out.contains("dev"), "{out}");
    home.assert_clean();
}

#[test]
fn three_nodes_see_ranks_addresses_and_each_other() {
    let home = Home::new(&[]);
    // The workdir carries a tiny TCP server and client; rank 0 serves on the first address.
    let wd = home.path().join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    std::fs::write(
        wd.join("serve.py"),
        "import socket, sys\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind((sys.argv[1], 29555))\ns.listen(4)\ns.settimeout(20)\nfor _ in range(2):\n    c, _ = s.accept()\n    c.sendall(b'hello-from-rank0')\n    c.close()\n",
    )
    .unwrap();
    std::fs::write(
        wd.join("ask.py"),
        "import socket, sys\ns = socket.create_connection((sys.argv[1], 29555), timeout=1)\nprint(s.recv(100).decode())\n",
    )
    .unwrap();
    let task = home.task(
        "three.yaml",
        &format!(
            r#"
num_nodes: 3
workdir: {}
run: |
  echo "rank=${{SKYPILOT_NODE_RANK}} nodes=${{SKYPILOT_NUM_NODES}} ips=$(echo "$SKYPILOT_NODE_IPS" | tr '\n' ',')"
  head_ip=$(echo "$SKYPILOT_NODE_IPS" | head -n1)
  if [ "$SKYPILOT_NODE_RANK" = 0 ]; then
    python3 serve.py "$head_ip"
  else
    for i in $(seq 1 100); do
      if reply=$(python3 ask.py "$head_ip" 2>/dev/null); then echo "rank ${{SKYPILOT_NODE_RANK}} got ${{reply}}"; break; fi
      sleep 0.1
    done
  fi
"#,
            wd.display()
        ),
    );
    let o = home.sky_in(home.path(), &["launch", "-y", "-c", "tri", &task]);
    let out = ok(&o, "3-node launch");
    let mut ips = Vec::new();
    for rank in 0..3 {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("rank={rank} ")))
            .unwrap_or_else(|| panic!("rank {rank} missing:\n{out}"));
        assert!(line.contains("nodes=3"), "{line}");
        ips.push(line.split("ips=").nth(1).unwrap().to_string());
    }
    assert!(
        ips.iter().all(|i| i == &ips[0]),
        "every rank sees the same SKYPILOT_NODE_IPS: {ips:?}"
    );
    let list: Vec<&str> = ips[0].trim_end_matches(',').split(',').collect();
    assert_eq!(list.len(), 3, "{list:?}");
    let distinct: std::collections::BTreeSet<&&str> = list.iter().collect();
    assert_eq!(distinct.len(), 3, "addresses must be distinct: {list:?}");
    assert!(
        out.contains("rank 1 got hello-from-rank0") && out.contains("rank 2 got hello-from-rank0"),
        "{out}"
    );
    ok(&home.sky_in(home.path(), &["down", "tri"]), "down");
    home.assert_clean();
}

const TOPOLOGY: &str = r#"
local:
  regions:
    - name: lab
      zones:
        - {name: lab-a, price: 0.1, fail: capacity}
        - {name: lab-b, price: 0.2, fail: capacity}
        - {name: lab-c, price: 0.3}
"#;

#[test]
fn failover_moves_through_zones() {
    let home = Home::new(&[]);
    home.write(".sky/config.yaml", TOPOLOGY);
    let o = home.sky_in(home.path(), &["launch", "-y", "-c", "fo", "echo", "landed"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}\n{err}");
    assert!(out.contains("landed"), "{out}");
    assert!(
        err.contains("lab-a") && err.contains("lab-b"),
        "each failed attempt is printed:\n{err}"
    );
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    assert!(out.contains("lab-c"), "{out}");
    ok(&home.sky_in(home.path(), &["down", "fo"]), "down");
    home.assert_clean();
}

#[test]
fn failover_exhausted_prints_history() {
    let home = Home::new(&[]);
    home.write(
        ".sky/config.yaml",
        "local:\n  regions:\n    - name: lab\n      zones:\n        - {name: lab-a, fail: capacity}\n        - {name: lab-b, fail: quota}\n",
    );
    let o = home.sky_in(
        home.path(),
        &["launch", "-y", "-c", "nope", "echo", "never"],
    );
    let (out, err) = text(&o);
    assert_ne!(code(&o), 0, "{out}\n{err}");
    assert!(!out.contains("never"));
    assert!(
        err.contains("INFRA") && err.contains("REASON") && err.contains("lab-a"),
        "{err}"
    );
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    assert!(!out.contains("nope"), "{out}");
    home.assert_clean();
}

#[test]
fn auth_failure_stops_at_once_with_the_fix() {
    let home = Home::new(&[]);
    home.write(
        ".sky/config.yaml",
        "local:\n  regions:\n    - name: lab\n      zones:\n        - {name: lab-a, fail: auth}\n        - {name: lab-b}\n",
    );
    let o = home.sky_in(
        home.path(),
        &["launch", "-y", "-c", "auth", "echo", "never"],
    );
    let (out, err) = text(&o);
    assert_ne!(code(&o), 0, "{out}\n{err}");
    assert!(
        !err.contains("lab-b"),
        "auth errors must not fail over:\n{err}"
    );
    assert!(err.to_lowercase().contains("fix"), "{err}");
    home.assert_clean();
}

#[test]
fn failing_run_and_setup_are_recorded() {
    let home = Home::new(&[]);
    let bad_run = home.task("bad_run.yaml", "run: |\n  echo about-to-fail\n  exit 7\n");
    let o = home.sky_in(home.path(), &["launch", "-y", "-c", "f", &bad_run]);
    let (out, err) = text(&o);
    assert_eq!(
        code(&o),
        100,
        "a failed job exits 100 like SkyPilot:\n{out}\n{err}"
    );
    let bad_setup = home.task("bad_setup.yaml", "setup: exit 3\nrun: echo never-runs\n");
    let o = home.sky_in(home.path(), &["launch", "-y", "-c", "f", &bad_setup]);
    let (out, _) = text(&o);
    assert!(!out.contains("never-runs"), "{out}");
    let out = ok(&home.sky_in(home.path(), &["queue", "f"]), "queue");
    assert!(out.contains("FAILED_SETUP"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("FAILED") && !l.contains("FAILED_SETUP")),
        "{out}"
    );
    let o = home.sky_in(home.path(), &["logs", "f", "1", "--status"]);
    assert_eq!(code(&o), 100);
    ok(&home.sky_in(home.path(), &["down", "f"]), "down");
    home.assert_clean();
}

#[test]
fn killed_agent_means_failed_driver() {
    let home = Home::new(&[]);
    ok(
        &home.sky_in(
            home.path(),
            &["launch", "-y", "-c", "k", "-d", "sleep", "60"],
        ),
        "launch",
    );
    // Kill the head agent.
    let agents: Vec<String> = home
        .processes()
        .into_iter()
        .filter(|p| p.contains("agent serve"))
        .collect();
    assert!(!agents.is_empty(), "no agent found");
    for a in &agents {
        let pid = a.split(':').next().unwrap();
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    // SIGKILL lands asynchronously: wait (bounded) until each agent is gone or a zombie.
    let deadline = Instant::now() + Duration::from_secs(30);
    for a in &agents {
        let stat = format!("/proc/{}/stat", a.split(':').next().unwrap());
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z")) {
            assert!(Instant::now() < deadline, "{a} survived kill -9");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let out = ok(&home.sky_in(home.path(), &["status", "-r"]), "status -r");
    assert!(
        out.contains("INIT"),
        "a cluster whose agent died is not UP:\n{out}"
    );
    ok(
        &home.sky_in(home.path(), &["start", "k"]),
        "start brings the agent back",
    );
    let out = ok(&home.sky_in(home.path(), &["queue", "k"]), "queue");
    assert!(out.contains("FAILED_DRIVER"), "{out}");
    ok(&home.sky_in(home.path(), &["down", "k"]), "down");
    home.assert_clean();
}

#[test]
fn exec_needs_an_existing_cluster_and_bad_yaml_is_refused() {
    let home = Home::new(&[]);
    let o = home.sky_in(home.path(), &["exec", "ghost", "echo", "hi"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 3, "{err}");
    assert!(err.contains("ghost"), "{err}");
    let o = home.sky_in(
        &crate::repo(),
        &[
            "launch",
            "-y",
            "-c",
            "x",
            "examples/invalid/num_nodes_zero.yaml",
        ],
    );
    assert_eq!(code(&o), 3);
    home.assert_clean();
}

#[test]
fn concurrent_launches_keep_state_whole() {
    let home = Home::new(&[]);
    let spawn = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_sky"))
            .args([
                "launch",
                "-y",
                "-c",
                name,
                "echo",
                &format!("hi-from-{name}"),
            ])
            .current_dir(home.path())
            .env_clear()
            .env("HOME", home.path())
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("USER", "tester")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sky")
    };
    let children: Vec<_> = ["c1", "c2", "c3"]
        .iter()
        .map(|n| (n.to_string(), spawn(n)))
        .collect();
    for (name, child) in children {
        let o = child.wait_with_output().unwrap();
        let out = ok(&o, &format!("concurrent launch {name}"));
        assert!(out.contains(&format!("hi-from-{name}")), "{out}");
    }
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    for n in ["c1", "c2", "c3"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(n) && l.contains("UP")),
            "{out}"
        );
    }
    ok(&home.sky_in(home.path(), &["down", "-a"]), "down -a");
    let out = ok(&home.sky_in(home.path(), &["cost-report"]), "cost-report");
    assert!(out.contains("c1") && out.contains("TERMINATED"), "{out}");
    home.assert_clean();
}

#[test]
fn ctrl_c_during_launch_leaves_a_consistent_state() {
    // Interrupt at several points of a launch; afterwards the cluster is either absent, or
    // recorded and removable by `sky down`, and nothing is left once it is down.
    for delay_ms in [30u64, 150, 400] {
        let home = Home::new(&[]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_sky"))
            .args(["launch", "-y", "-c", "intr", "sleep", "30"])
            .current_dir(home.path())
            .env_clear()
            .env("HOME", home.path())
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("USER", "tester")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sky");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        // Finished before the signal (0), or interrupted (130, SkyPilot's convention).
        assert!(matches!(status.code(), Some(0 | 130)), "{status:?}");
        let out = ok(
            &home.sky_in(home.path(), &["status"]),
            "status after Ctrl-C",
        );
        if out.contains("intr") {
            ok(
                &home.sky_in(home.path(), &["down", "intr"]),
                "down after Ctrl-C",
            );
        }
        home.assert_clean();
    }
}

#[test]
fn provision_log_is_kept() {
    let home = Home::new(&[]);
    home.write(".sky/config.yaml", TOPOLOGY);
    ok(
        &home.sky_in(home.path(), &["launch", "-y", "-c", "pl", "true"]),
        "launch",
    );
    let out = ok(
        &home.sky_in(home.path(), &["logs", "pl", "--provision"]),
        "logs --provision",
    );
    assert!(
        out.contains("lab-a") && out.contains("Cluster pl is UP"),
        "{out}"
    );
    ok(&home.sky_in(home.path(), &["down", "pl"]), "down");
    home.assert_clean();
}

/// One autostop "minute" in the autostop tests (`SKY_AUTOSTOP_MINUTE_MS`): real agents, short
/// minutes. Given to the commands that start agents (`launch`); a later `sky start` without it
/// gets 60 s minutes, so a restarted cluster stays UP while the test looks at it.
const FAST_MINUTE: &[(&str, &str)] = &[("SKY_AUTOSTOP_MINUTE_MS", "300")];

/// `sky status`'s row of `name`, if listed.
fn status_row(home: &Home, name: &str) -> Option<String> {
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(str::to_string)
}

/// Polls (bounded: 30 s, generous for a loaded machine) until `done` holds for the row of
/// `name` (`None`: not listed); returns that row.
fn wait_row(
    home: &Home,
    name: &str,
    what: &str,
    done: impl Fn(Option<&str>) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = status_row(home, name);
        if done(row.as_deref()) {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "`{name}` never became {what}; last status row: {row:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is(status: &'static str) -> impl Fn(Option<&str>) -> bool {
    move |row| row.is_some_and(|r| r.split_whitespace().any(|w| w == status))
}

/// `sky queue`'s status of job `id` on `cluster`.
fn job_status(home: &Home, cluster: &str, id: &str) -> String {
    let out = ok(&home.sky_in(home.path(), &["queue", cluster]), "queue");
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("job {id} not in the queue:\n{out}"));
    row.split_whitespace()
        .find(|w| {
            [
                "INIT",
                "PENDING",
                "SETTING_UP",
                "RUNNING",
                "SUCCEEDED",
                "FAILED",
                "FAILED_SETUP",
                "FAILED_DRIVER",
                "CANCELLED",
            ]
            .contains(w)
        })
        .unwrap_or_else(|| panic!("no job status in {row:?}"))
        .to_string()
}

#[test]
fn autostop_stops_an_idle_cluster_and_start_brings_it_back() {
    let home = Home::new(&[]);
    let out = ok(
        &home.sky_env(
            home.path(),
            FAST_MINUTE,
            &["launch", "-y", "-c", "as1", "-i", "1", "echo", "quick"],
        ),
        "launch -i 1",
    );
    assert!(out.contains("quick"), "{out}");
    let row = wait_row(&home, "as1", "STOPPED", is("STOPPED")).unwrap();
    assert!(
        row.contains(" 1m "),
        "the AUTOSTOP column keeps the setting: {row}"
    );
    // Stopped by its own agent: the agent is gone too, and `status -r` agrees.
    home.assert_no_processes();
    let out = ok(&home.sky_in(home.path(), &["status", "-r"]), "status -r");
    assert!(out.contains("STOPPED"), "{out}");

    ok(&home.sky_in(home.path(), &["start", "as1"]), "start");
    assert!(is("UP")(status_row(&home, "as1").as_deref()));
    let out = ok(
        &home.sky_in(home.path(), &["exec", "as1", "echo", "back"]),
        "exec after start",
    );
    assert!(out.contains("back"), "{out}");
    ok(&home.sky_in(home.path(), &["down", "as1"]), "down");
    assert_eq!(status_row(&home, "as1"), None);
    home.assert_clean();
}

#[test]
fn autostop_down_removes_the_cluster() {
    let home = Home::new(&[]);
    ok(
        &home.sky_env(
            home.path(),
            FAST_MINUTE,
            &["launch", "-y", "-c", "as2", "-i", "1", "--down", "true"],
        ),
        "launch -i 1 --down",
    );
    wait_row(&home, "as2", "gone", |row| row.is_none());
    home.assert_clean();
    let out = ok(&home.sky_in(home.path(), &["cost-report"]), "cost-report");
    assert!(out.contains("as2") && out.contains("TERMINATED"), "{out}");
}

#[test]
fn a_running_job_holds_autostop_off() {
    let home = Home::new(&[]);
    // The job runs until the test lets it end, after six idle minutes (1.8 s) of watching; it
    // counts as activity the whole time.
    let release = home.path().join("release");
    let job = format!("while [ ! -e {} ]; do sleep 0.05; done", release.display());
    ok(
        &home.sky_env(
            home.path(),
            FAST_MINUTE,
            &["launch", "-y", "-d", "-c", "as3", "-i", "1", &job],
        ),
        "launch -d -i 1",
    );
    let launched = Instant::now();
    while launched.elapsed() < Duration::from_millis(1800) {
        let row = status_row(&home, "as3");
        assert!(
            is("UP")(row.as_deref()),
            "stopped while its job runs: {row:?}"
        );
        let job = job_status(&home, "as3", "1");
        assert!(
            ["PENDING", "SETTING_UP", "RUNNING"].contains(&job.as_str()),
            "job 1 should still run: {job}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(&release, "").unwrap();
    wait_row(&home, "as3", "STOPPED", is("STOPPED"));
    // Restarted (with 60 s minutes), the queue shows the job finished on its own: autostop
    // did not cut it short.
    ok(&home.sky_in(home.path(), &["start", "as3"]), "start");
    assert_eq!(job_status(&home, "as3", "1"), "SUCCEEDED");
    ok(&home.sky_in(home.path(), &["down", "as3"]), "down");
    home.assert_clean();
}

#[test]
fn autostop_cancel_keeps_the_cluster_up_until_set_again() {
    let home = Home::new(&[]);
    // Ten minutes (3 s) leave time to cancel before it fires.
    ok(
        &home.sky_env(
            home.path(),
            FAST_MINUTE,
            &["launch", "-y", "-c", "as4", "-i", "10", "true"],
        ),
        "launch -i 10",
    );
    let o = home.sky_in(home.path(), &["autostop", "as4", "--cancel"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(err.contains("Autostop cancelled for as4"), "{err}");
    let row = status_row(&home, "as4").unwrap();
    assert!(is("UP")(Some(&row)) && row.contains(" - "), "{row}");
    // Past the ten idle minutes the cancelled setting named (set before the cancel): still UP,
    // its agent alive.
    std::thread::sleep(Duration::from_millis(3300));
    let out = ok(&home.sky_in(home.path(), &["status", "-r"]), "status -r");
    assert!(is("UP")(status_row(&home, "as4").as_deref()), "{out}");

    let o = home.sky_in(home.path(), &["autostop", "as4", "-i", "1"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(err.contains("as4 will stop after 1 idle minute."), "{err}");
    let row = wait_row(&home, "as4", "STOPPED", is("STOPPED")).unwrap();
    assert!(row.contains(" 1m "), "{row}");
    home.assert_no_processes();
    ok(&home.sky_in(home.path(), &["down", "as4"]), "down");
    home.assert_clean();
}

#[test]
fn a_bad_autostop_minute_is_refused_before_any_agent() {
    let home = Home::new(&[]);
    let o = home.sky_env(
        home.path(),
        &[("SKY_AUTOSTOP_MINUTE_MS", "soon")],
        &["launch", "-y", "-c", "bad", "-i", "1", "true"],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}\n{err}");
    assert!(err.contains("SKY_AUTOSTOP_MINUTE_MS=soon"), "{err}");
    assert_eq!(status_row(&home, "bad"), None);
    home.assert_clean();
}

#[test]
fn state_in_postgresql_is_shared_and_complete() {
    let Some(pg) = sky_state::testing::server() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(pg.fresh_db("cli"));
    let home = Home::new(&[]);
    home.write(".sky/config.yaml", &format!("db: {url}\n"));
    let repo = crate::repo();
    let out = ok(
        &home.sky_in(&repo, &["launch", "-y", "-c", "pgc", "examples/hello.yaml"]),
        "launch",
    );
    assert!(out.contains("Hello from sky-rs on"), "{out}");
    ok(&home.sky_in(&repo, &["exec", "pgc", "echo on-pg"]), "exec");
    let out = ok(&home.sky_in(&repo, &["queue", "pgc"]), "queue");
    assert_eq!(out.matches("SUCCEEDED").count(), 2, "{out}");
    // Nothing went to SQLite: the cluster is in PostgreSQL, with its handle and history.
    assert!(!home.path().join(".sky-rs/state.db").exists());
    let rows = rt.block_on(async {
        let db = sky_state::StateDb::open(&url).await.unwrap();
        db.list_clusters().await.unwrap()
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].name, "pgc");
    assert_eq!(rows[0].status, sky_state::ClusterStatus::Up);
    // Another HOME on the same database sees the cluster (a team's shared state).
    let other = Home::new(&[]);
    other.write(".sky/config.yaml", &format!("db: {url}\n"));
    let out = ok(
        &other.sky_in(&repo, &["status"]),
        "status from another HOME",
    );
    assert!(out.contains("pgc") && out.contains("UP"), "{out}");
    std::fs::remove_file(other.path().join(".sky/config.yaml")).unwrap();

    ok(&home.sky_in(&repo, &["stop", "pgc"]), "stop");
    let out = ok(&home.sky_in(&repo, &["status"]), "status");
    assert!(out.contains("STOPPED"), "{out}");
    ok(&home.sky_in(&repo, &["start", "pgc"]), "start");
    ok(&home.sky_in(&repo, &["down", "pgc"]), "down");
    let rows = rt.block_on(async {
        let db = sky_state::StateDb::open(&url).await.unwrap();
        db.list_clusters().await.unwrap()
    });
    assert!(rows.is_empty(), "{rows:?}");
    let out = ok(&home.sky_in(&repo, &["cost-report"]), "cost-report");
    assert!(out.contains("pgc"), "{out}");
    home.assert_clean();
}
