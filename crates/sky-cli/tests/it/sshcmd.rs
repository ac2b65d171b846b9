//! `sky ssh CLUSTER [COMMAND]` on local and SSH-pool clusters, the clusters' `Host` entries in
//! sky-rs's own ssh config (`~/.sky-rs/ssh/config`) and `sky ssh --setup-config`; and tasks
//! that ask for what no enabled cloud does (a docker image on the local cloud) refused before
//! anything is provisioned. The SSH-pool test runs on network-namespace hosts (skipped loudly
//! without root or `ip netns`; an error with SKY_REQUIRE_EMULATORS=1).

use std::process::Command;

use sky_provider_testkit::netns::NetnsHosts;

use crate::{Home, code, text};

/// The clusters `sky status` lists.
fn listed(home: &Home) -> String {
    let o = home.sky_in(home.path(), &["status"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    text(&o).0
}

#[test]
fn a_docker_task_on_the_local_cloud_is_refused_before_anything_exists() {
    let home = Home::new(&[]);
    let dir = home.path();
    let task = dir.join("docker.yaml");
    std::fs::write(
        &task,
        "resources:\n  image_id: docker:ubuntu:22.04\nrun: hostname\n",
    )
    .unwrap();
    let task = task.display().to_string();
    let cases: [Vec<&str>; 3] = [
        vec!["launch", "-y", "-c", "dock", &task],
        vec![
            "launch",
            "-y",
            "-c",
            "dock",
            "--image-id",
            "docker:ubuntu:22.04",
            "hostname",
        ],
        vec!["launch", "--dryrun", "-y", "-c", "dock", &task],
    ];
    for args in cases {
        let o = home.sky_in(dir, &args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 3, "{args:?} must be refused:\n{out}\n{err}");
        for want in [
            "a cloud that can run docker containers (image_id: docker:ubuntu:22.04)",
            "but local cannot run docker containers",
            "Enabled clouds that can run docker containers: none",
            "nothing was provisioned",
        ] {
            assert!(err.contains(want), "{args:?}: {want:?} missing:\n{err}");
        }
        assert!(!out.contains("Considered resources"), "{out}");
    }
    // Nothing was recorded or created: no state row, no node directory, no lock taken.
    assert!(!listed(&home).contains("dock"));
    let local = dir.join(".sky-rs/local");
    let nodes: Vec<_> = std::fs::read_dir(&local)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(nodes.is_empty(), "node directories: {nodes:?}");
    assert!(!dir.join(".sky-rs/locks/dock.lock").exists());
    // Without the image the same task runs.
    let o = home.sky_in(dir, &["launch", "--dryrun", "-y", "-c", "dock", "hostname"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
}

#[test]
fn ssh_into_a_local_cluster_runs_in_its_head_node() {
    let home = Home::new(&[]);
    let dir = home.path();
    let o = home.sky_in(dir, &["launch", "-y", "-c", "lo", "echo", "up"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let head = home.head_node("lo");
    let o = home.sky_in(dir, &["ssh", "lo", "echo \"home=$HOME\"; exit 6"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 6, "{out}\n{err}");
    assert!(out.contains(&format!("home={}", head.display())), "{out}");
    // Local nodes are not reached with ssh: no Host entry.
    let config = dir.join(".sky-rs/ssh/config");
    assert!(
        std::fs::read_to_string(&config).map_or(true, |t| !t.contains("Host lo")),
        "local clusters get no ssh entry"
    );
    // A docker task is refused on the existing cluster too (exec and launch), not run on
    // the host.
    for verb in [vec!["exec", "lo"], vec!["launch", "-y", "-c", "lo"]] {
        let mut args = verb.clone();
        args.extend(["--image-id", "docker:ubuntu:22.04", "echo", "ran-on-host"]);
        let o = home.sky_in(dir, &args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 3, "{args:?}:\n{out}\n{err}");
        assert!(
            err.contains("cluster `lo` is on local, which cannot run docker containers"),
            "{err}"
        );
        assert!(!out.contains("ran-on-host"), "{out}");
    }
    let o = home.sky_in(dir, &["down", "lo"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
}

#[test]
fn ssh_into_an_ssh_pool_cluster_and_its_host_entry() {
    let Some(hosts) = NetnsHosts::up(1) else {
        return;
    };
    let home = Home::new(&[]);
    home.write(".sky/ssh_node_pools.yaml", &hosts.pools_yaml("lab"));
    home.write(".sky/config.yaml", "allowed_clouds: [ssh]\n");
    let dir = home.path();
    let wd = dir.join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    std::fs::write(wd.join("marker.txt"), "synced").unwrap();
    let task = dir.join("t.yaml");
    std::fs::write(&task, format!("workdir: {}\nrun: echo ran\n", wd.display())).unwrap();
    let o = home.sky_in(
        dir,
        &[
            "launch",
            "-y",
            "-c",
            "pool",
            "--infra",
            "ssh/lab",
            task.to_str().unwrap(),
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "launch failed:\n{out}\n{err}");
    // Told once how to include the entries; ~/.ssh/config is left alone until asked.
    assert!(err.contains("sky ssh --setup-config"), "{err}");
    assert!(!dir.join(".ssh/config").exists());

    // A command on the head host, in ~/sky_workdir, with its exit code.
    let o = home.sky_in(
        dir,
        &["ssh", "pool", "hostname; pwd; cat marker.txt; exit 7"],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 7, "{out}\n{err}");
    assert_eq!(
        out,
        format!("{}\n/home/sky/sky_workdir\nsynced", hosts.hosts[0].name),
        "{err}"
    );

    // The Host entry reaches the host with plain ssh.
    let config = dir.join(".sky-rs/ssh/config");
    let text_now = std::fs::read_to_string(&config).unwrap();
    assert!(text_now.contains("Host pool\n"), "{text_now}");
    assert!(
        text_now.contains(&format!("HostName {}", hosts.hosts[0].ip)),
        "{text_now}"
    );
    let o = Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-o", "BatchMode=yes", "pool", "hostname"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(out.trim(), hosts.hosts[0].name, "ssh -F failed:\n{err}");

    // Consent: one Include line at the top of ~/.ssh/config, however often it is asked.
    for _ in 0..2 {
        let o = home.sky_in(dir, &["ssh", "--setup-config"]);
        assert_eq!(code(&o), 0, "{:?}", text(&o));
    }
    let user = std::fs::read_to_string(dir.join(".ssh/config")).unwrap();
    let include = format!("Include {}", config.display());
    assert_eq!(user.matches(&include).count(), 1, "{user}");

    let o = home.sky_in(dir, &["down", "pool"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let after = std::fs::read_to_string(&config).unwrap();
    assert!(!after.contains("Host pool"), "{after}");
    // A cluster that is gone is refused by name.
    let o = home.sky_in(dir, &["ssh", "pool", "true"]);
    assert_eq!(code(&o), 3, "{:?}", text(&o));
}
