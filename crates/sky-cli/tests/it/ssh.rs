//! SSH node pools end to end: `sky launch --infra ssh/<pool>` on real sshd hosts in network
//! namespaces (skipped loudly without root or `ip netns`; an error with SKY_REQUIRE_EMULATORS=1).

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use sky_provider_testkit::netns::NetnsHosts;

use crate::{Home, code, text};

fn sky(home: &Home, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sky"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", home.dir.path())
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("USER", "tester")
        .output()
        .expect("run sky")
}

fn ssh_home(hosts: &NetnsHosts) -> Home {
    let home = Home::new(&[]);
    home.write(".sky/ssh_node_pools.yaml", &hosts.pools_yaml("lab"));
    home.write(".sky/config.yaml", "allowed_clouds: [ssh]\n");
    home
}

fn wait_clean(hosts: &NetnsHosts) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = hosts.leftovers();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left on the hosts: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_node_job_on_an_ssh_pool() {
    let Some(hosts) = NetnsHosts::up(3) else {
        return;
    };
    let home = ssh_home(&hosts);
    let o = sky(&home, home.dir.path(), &["check"]);
    let (out, err) = text(&o);
    assert!(
        out.lines()
            .any(|l| l.contains("SSH") && l.contains("enabled"))
            || out.contains("SSH: enabled"),
        "sky check:\n{out}{err}"
    );
    let wd = home.dir.path().join("wd");
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
    let task = home.dir.path().join("three.yaml");
    std::fs::write(
        &task,
        format!(
            r#"
num_nodes: 3
workdir: {}
run: |
  echo "rank=${{SKYPILOT_NODE_RANK}} host=$(hostname) ips=$(echo "$SKYPILOT_NODE_IPS" | tr '\n' ',')"
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
    )
    .unwrap();
    let task = task.display().to_string();
    let o = sky(
        &home,
        home.dir.path(),
        &["launch", "-y", "-c", "s", "--infra", "ssh/lab", &task],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "launch failed:\n{out}\n{err}");
    let want: Vec<String> = hosts.hosts.iter().map(|h| h.ip.clone()).collect();
    for (rank, h) in hosts.hosts.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("rank={rank} ")))
            .unwrap_or_else(|| panic!("rank {rank} missing:\n{out}\n{err}"));
        assert!(line.contains(&format!("host={}", h.name)), "{line}");
        assert!(line.contains(&format!("ips={},", want.join(","))), "{line}");
    }
    assert!(
        out.contains("rank 1 got hello-from-rank0") && out.contains("rank 2 got hello-from-rank0"),
        "{out}"
    );
    let o = sky(&home, home.dir.path(), &["down", "s"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "down failed:\n{out}\n{err}");
    wait_clean(&hosts);
}

#[test]
fn a_cut_link_fails_the_launch_and_leaves_the_other_hosts_clean() {
    let Some(hosts) = NetnsHosts::up(3) else {
        return;
    };
    let home = ssh_home(&hosts);
    hosts.set_link(2, false);
    let o = sky(
        &home,
        home.dir.path(),
        &[
            "launch",
            "-y",
            "-c",
            "cut",
            "--infra",
            "ssh/lab",
            "--num-nodes",
            "3",
            "echo",
            "never",
        ],
    );
    let (out, err) = text(&o);
    assert_ne!(code(&o), 0, "{out}\n{err}");
    assert!(
        format!("{out}{err}").contains(&hosts.hosts[2].ip),
        "the error names the cut host:\n{out}\n{err}"
    );
    // The probe gave up (ssh's ConnectTimeout or no route): nothing waited on the host.
    assert!(
        format!("{out}{err}").contains("is unreachable: ssh: connect to host"),
        "{out}\n{err}"
    );
    wait_clean(&hosts);
    assert!(!hosts.hosts[0].home.join(".sky").exists());
}

/// `nvidia-smi` of a host with `n` H100 80GB HBM3 GPUs, answering the query the probe asks with
/// rows built from the one captured on a real H100 (its name and memory, renumbered).
fn nvidia_smi_with_h100s(n: usize) -> String {
    let captured =
        include_str!("../../../sky-cloud-local/tests/fixtures/nvidia-smi-h100/query-gpu.csv");
    // index, uuid, name, memory.total (MiB), memory.used, utilization.gpu
    let cols: Vec<&str> = captured.lines().next().unwrap().split(", ").collect();
    let rows: String = (0..n)
        .map(|i| format!("{i}, {}, {} MiB\n", cols[2], cols[3]))
        .collect();
    format!(
        "#!/bin/sh\ncase \"$*\" in\n  *--query-gpu=index,name,memory.total*--format=csv,noheader*)\n    cat <<'ROWS'\n{rows}ROWS\n    ;;\n  *) echo \"nvidia-smi (test): unsupported arguments: $*\" >&2; exit 2 ;;\nesac\n"
    )
}

#[test]
fn gpus_on_the_hosts_are_detected_offered_and_given_to_jobs() {
    let Some(hosts) = NetnsHosts::up(2) else {
        return;
    };
    for h in 0..2 {
        hosts.install_program(h, "nvidia-smi", &nvidia_smi_with_h100s(2));
    }
    let home = ssh_home(&hosts);
    let dir = home.dir.path();
    // No `sky check` first: the launch detects the new pool's hosts before planning.
    let o = sky(
        &home,
        dir,
        &[
            "launch",
            "-y",
            "-c",
            "g",
            "--infra",
            "ssh/lab",
            "--num-nodes",
            "2",
            "--gpus",
            "H100:2",
            "echo \"rank=$SKYPILOT_NODE_RANK cvd=$CUDA_VISIBLE_DEVICES per_node=$SKYPILOT_NUM_GPUS_PER_NODE\"",
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "launch failed:\n{out}\n{err}");
    for rank in 0..2 {
        assert!(
            out.contains(&format!("rank={rank} cvd=0,1 per_node=2")),
            "rank {rank}:\n{out}\n{err}"
        );
    }
    // A job on one of the two devices of the head gets exactly one.
    let o = sky(
        &home,
        dir,
        &[
            "exec",
            "g",
            "--gpus",
            "H100:1",
            "echo \"one cvd=$CUDA_VISIBLE_DEVICES\"",
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "exec failed:\n{out}\n{err}");
    assert!(
        out.contains("one cvd=0") || out.contains("one cvd=1"),
        "{out}\n{err}"
    );
    // show-gpus lists the pool's GPUs; the cluster holds both hosts.
    let gpus_row = |args: &[&str]| {
        let o = sky(&home, dir, args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{args:?}:\n{out}\n{err}");
        assert!(out.contains("SSH Node Pool: lab"), "{out}");
        out.lines()
            .find(|l| l.trim_start().starts_with("H100"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no H100 row:\n{out}"))
    };
    assert_eq!(
        gpus_row(&["show-gpus", "--infra", "ssh/lab"]),
        "H100 1, 2 0 of 4 free"
    );
    let o = sky(&home, dir, &["show-gpus", "--infra", "ssh", "A100"]);
    assert_eq!(code(&o), 4, "{}", text(&o).0);
    // More GPUs than a host has, or another kind, cannot be placed on the pool.
    for gpus in ["H100:4", "A100:1"] {
        let o = sky(
            &home,
            dir,
            &[
                "launch", "--dryrun", "-y", "--infra", "ssh/lab", "--gpus", gpus, "echo", "x",
            ],
        );
        let (out, err) = text(&o);
        assert_eq!(code(&o), 4, "--gpus {gpus}:\n{out}\n{err}");
    }
    let o = sky(&home, dir, &["down", "g"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "down failed:\n{out}\n{err}");
    wait_clean(&hosts);
    assert_eq!(
        gpus_row(&["show-gpus", "--infra", "ssh", "H100"]),
        "H100 1, 2 4 of 4 free"
    );

    // `sky check` logs in to every host: a host cut off disables the cloud, named.
    hosts.set_link(1, false);
    let o = sky(&home, dir, &["check", "ssh"]);
    let (out, err) = text(&o);
    assert!(out.contains("SSH: disabled"), "{out}\n{err}");
    assert!(out.contains(&hosts.hosts[1].ip), "{out}\n{err}");
    hosts.set_link(1, true);
    let o = sky(&home, dir, &["check", "ssh"]);
    let (out, err) = text(&o);
    assert!(out.contains("SSH: enabled"), "{out}\n{err}");
}
