//! Hostile and careless input through the `sky` binary: names that are not names, YAML that
//! explodes, racing commands, a paused agent, secrets, symlinks, Ctrl-C while streaming.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Home, code, text};

fn ok(o: &std::process::Output, what: &str) -> String {
    let (out, err) = text(o);
    assert_eq!(code(o), 0, "{what} failed:\n{out}\n{err}");
    out
}

impl Home {
    /// `sky` started in the background in this HOME (stdout/stderr piped).
    fn spawn_sky(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_sky"))
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("HOME", self.path())
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("USER", "tester")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sky")
    }
}

/// The pids of this HOME's head agents (a child an agent forked to start a job is not one).
fn head_agent_pids(home: &Home) -> Vec<String> {
    crate::recover::head_agents(home)
        .iter()
        .map(|p| p.split(':').next().unwrap_or_default().to_string())
        .collect()
}

/// Polls (bounded, 30 s) until `f` returns `Some`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn names_that_are_not_cluster_names_are_refused_by_every_command() {
    let home = Home::new(&[]);
    let outside = home.path().join("outside");
    let long = "a".repeat(300);
    for name in [
        "../../outside/X",
        "",
        "a;b",
        "a b",
        "$(id)",
        long.as_str(),
        "a-",
    ] {
        for args in [
            vec!["launch", "--dryrun", "-c", name, "echo", "hi"],
            vec!["launch", "-y", "-c", name, "echo", "hi"],
            vec!["exec", name, "echo", "hi"],
            vec!["logs", name, "--provision"],
            vec!["logs", name],
            vec!["status", name],
            vec!["stop", name],
            vec!["start", name],
            vec!["down", name],
            vec!["autostop", name, "-i", "5"],
            vec!["queue", name],
            vec!["cancel", name, "-a"],
            vec!["ssh", name, "true"],
        ] {
            let o = home.sky_in(home.path(), &args);
            let (out, err) = text(&o);
            assert_eq!(code(&o), 3, "{args:?} must be refused:\n{out}{err}");
            assert!(
                err.contains("cluster name") && err.contains("invalid"),
                "{args:?}: {err}"
            );
        }
    }
    assert!(!outside.exists(), "a name built a path outside ~/.sky");
    // Nothing was recorded or started.
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    assert!(out.contains("No existing clusters"), "{out}");
    home.assert_clean();
}

/// Nine levels of nine aliases: 9^9 strings once expanded (a "billion laughs").
const ALIAS_BOMB: &str =
    "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
";

#[test]
fn yaml_that_explodes_or_never_ends_is_refused_naming_the_file() {
    let home = Home::new(&[]);
    let bomb = home.task("bomb.yaml", ALIAS_BOMB);
    for args in [
        vec!["validate", bomb.as_str()],
        vec!["launch", "--dryrun", bomb.as_str()],
        vec!["launch", "-y", "-c", "b", bomb.as_str()],
    ] {
        let o = home.sky_in(home.path(), &args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 3, "{args:?}:\n{out}{err}");
        assert!(
            format!("{out}{err}").contains("bomb.yaml") && format!("{out}{err}").contains("alias"),
            "{args:?} must name the file and the aliases:\n{out}{err}"
        );
    }
    // A 20 MB run script is refused as too large, before any cluster exists.
    let big = home.task(
        "big.yaml",
        &format!("run: |\n  {}\n", "echo x; ".repeat(20_000_000 / 8)),
    );
    let o = home.sky_in(home.path(), &["launch", "-y", "-c", "big", &big]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(
        err.contains("big.yaml") && err.contains("larger than"),
        "{err}"
    );
    // /dev/zero is read up to the limit, then refused.
    let o = home.sky_in(home.path(), &["validate", "/dev/zero"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(format!("{out}{err}").contains("larger than"), "{out}{err}");
    // The same bomb in ~/.sky/config.yaml is refused by a command that reads it, naming it.
    home.write(".sky/config.yaml", ALIAS_BOMB);
    let o = home.sky_in(home.path(), &["status"]);
    let (out, err) = text(&o);
    assert_ne!(code(&o), 0, "{out}{err}");
    assert!(
        err.contains("config.yaml") && err.contains("alias"),
        "{err}"
    );
}

#[test]
fn parallel_launches_of_one_name_share_one_cluster() {
    let home = Home::new(&[]);
    let children: Vec<_> = (0..3)
        .map(|i| home.spawn_sky(&["launch", "-y", "-c", "same", "echo", &format!("hi-{i}")]))
        .collect();
    // (Whether a launch had to wait depends on timing; `sky-launch`'s lock tests show the
    // wait itself.)
    for (i, child) in children.into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "launch {i}:\n{out}\n{err}");
        assert!(out.contains(&format!("hi-{i}")), "launch {i}:\n{out}");
    }
    // One head agent, and the three jobs ran on it.
    assert_eq!(head_agent_pids(&home).len(), 1, "{:?}", home.processes());
    let out = ok(&home.sky_in(home.path(), &["queue", "same"]), "queue");
    assert_eq!(out.matches("SUCCEEDED").count(), 3, "{out}");
    ok(&home.sky_in(home.path(), &["down", "same"]), "down");
    home.assert_clean();
}

#[test]
fn down_racing_an_exec_that_syncs_a_large_workdir_leaves_nothing() {
    let home = Home::new(&[]);
    ok(
        &home.sky_in(home.path(), &["launch", "-y", "-c", "race", "true"]),
        "launch",
    );
    let wd = home.path().join("big");
    for d in 0..20 {
        let dir = wd.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}")), vec![b'x'; 4096]).unwrap();
        }
    }
    let wd = wd.display().to_string();
    let exec = home.spawn_sky(&["exec", "race", "--workdir", &wd, "-d", "ls | wc -l"]);
    let down = home.spawn_sky(&["down", "race"]);
    let d = down.wait_with_output().unwrap();
    let (out, err) = text(&d);
    assert_eq!(code(&d), 0, "down:\n{out}\n{err}");
    let e = exec.wait_with_output().unwrap();
    let (out, err) = text(&e);
    // Either the exec ran first (and its job was submitted), or down ran first and exec
    // found no cluster; never a half state.
    assert!(
        code(&e) == 0 || (code(&e) == 3 && err.contains("does not exist")),
        "exec:\n{out}\n{err}"
    );
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    assert!(out.contains("No existing clusters"), "{out}");
    home.assert_clean();
}

#[test]
fn a_paused_agent_is_unreachable_and_its_job_lives() {
    let home = Home::new(&[]);
    ok(
        &home.sky_in(
            home.path(),
            &["launch", "-y", "-c", "paused", "-d", "sleep", "120"],
        ),
        "launch",
    );
    let heads = head_agent_pids(&home);
    assert_eq!(heads.len(), 1, "{:?}", home.processes());
    let head = heads[0].clone();
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &head])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let o = home.sky_in(home.path(), &["status", "-r", "paused"]);
    signal("-CONT");
    let (out, err) = text(&o);
    assert!(err.contains("unreachable"), "{out}\n{err}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("paused"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("UP"),
        "a paused agent is not proof of death:\n{out}"
    );
    let out = ok(&home.sky_in(home.path(), &["queue", "paused"]), "queue");
    assert!(
        out.contains("RUNNING"),
        "the job must not be killed:\n{out}"
    );
    // A killed agent is proof: INIT, and its job lost its driver.
    assert!(
        Command::new("kill")
            .args(["-9", &head])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the agent to be gone", || {
        (!head_agent_pids(&home).contains(&head)).then_some(())
    });
    let out = ok(&home.sky_in(home.path(), &["status", "-r"]), "status -r");
    assert!(out.contains("INIT"), "{out}");
    ok(&home.sky_in(home.path(), &["down", "paused"]), "down");
    home.assert_clean();
}

#[test]
fn secrets_are_never_written_to_disk_or_shown() {
    let home = Home::new(&[]);
    let task = home.task(
        "secret.yaml",
        // The script shows only the values' tails, so it holds no secret itself.
        "secrets:\n  FROM_YAML: hunter2-yaml\nrun: |\n  echo \"got ${API_KEY#hunter2-} ${FROM_YAML#hunter2-}\"\n",
    );
    let out = ok(
        &home.sky_in(
            home.path(),
            &[
                "launch",
                "-y",
                "-c",
                "sec",
                "--secret",
                "API_KEY=hunter2-cli",
                &task,
            ],
        ),
        "launch",
    );
    assert!(
        out.contains("got cli yaml"),
        "the job gets the values:\n{out}"
    );
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("API_KEY=<redacted>"), "{out}");
    // No file under HOME (state, node directories, journals, logs) holds a value.
    let mut stack = vec![home.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.display().to_string() == task {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                let hay = String::from_utf8_lossy(&bytes);
                assert!(
                    !hay.contains("hunter2-cli") && !hay.contains("hunter2-yaml"),
                    "{} holds a secret",
                    p.display()
                );
            }
        }
    }
    ok(&home.sky_in(home.path(), &["down", "sec"]), "down");
    home.assert_clean();
}

#[test]
fn ctrl_c_while_streaming_says_the_job_keeps_running() {
    let home = Home::new(&[]);
    ok(
        &home.sky_in(home.path(), &["launch", "-y", "-c", "cc", "true"]),
        "launch",
    );
    let mut child = home.spawn_sky(&["exec", "cc", "echo started; sleep 60"]);
    // Streaming has begun once the job's first line reached this process's stdout.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("started") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the job's output is streamed");
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let o = child.wait_with_output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(code(&o), 130, "{err}");
    assert!(err.contains("keeps running"), "{err}");
    assert!(!err.contains("half-launched"), "{err}");
    let out = ok(&home.sky_in(home.path(), &["queue", "cc"]), "queue");
    assert!(out.contains("RUNNING"), "{out}");
    ok(&home.sky_in(home.path(), &["down", "cc"]), "down");
    home.assert_clean();
}

#[test]
fn status_verbose_shows_the_head_address() {
    let home = Home::new(&[]);
    ok(
        &home.sky_in(home.path(), &["launch", "-y", "-c", "vv", "true"]),
        "launch",
    );
    let ip = ok(&home.sky_in(home.path(), &["status", "--ip", "vv"]), "--ip");
    let out = ok(&home.sky_in(home.path(), &["status", "-v"]), "status -v");
    assert!(out.contains("HEAD_IP") && out.contains(ip.trim()), "{out}");
    ok(&home.sky_in(home.path(), &["down", "vv"]), "down");
    home.assert_clean();
}

#[test]
fn symlinks_out_of_the_workdir_are_not_synced() {
    let home = Home::new(&[]);
    let wd = home.path().join("wd");
    std::fs::create_dir_all(wd.join("sub")).unwrap();
    std::fs::write(wd.join("sub/file"), "data").unwrap();
    std::os::unix::fs::symlink("../.sky", wd.join("evil")).unwrap();
    std::os::unix::fs::symlink("/tmp", wd.join("abs")).unwrap();
    std::os::unix::fs::symlink("sub/file", wd.join("inside")).unwrap();
    let wd = wd.display().to_string();
    let o = home.sky_in(
        home.path(),
        &[
            "launch",
            "-y",
            "-c",
            "links",
            "--workdir",
            &wd,
            "ls -a; cat inside",
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}\n{err}");
    assert!(
        err.contains("2 symlinks") && err.contains("not synced"),
        "{err}"
    );
    assert!(
        out.contains("data"),
        "a link inside the tree is kept:\n{out}"
    );
    let synced = home.head_node("links").join("sky_workdir");
    assert!(std::fs::symlink_metadata(synced.join("inside")).is_ok());
    for gone in ["evil", "abs"] {
        assert!(
            std::fs::symlink_metadata(synced.join(gone)).is_err(),
            "{gone} was synced"
        );
    }
    ok(&home.sky_in(home.path(), &["down", "links"]), "down");
    home.assert_clean();
}

#[test]
fn env_flags_and_mount_destinations_are_checked_up_front() {
    let home = Home::new(&[]);
    for bad in ["1X=2", "A B=v", "=v", "NUL=a\u{1}b"] {
        let bad = bad.replace('\u{1}', "\0");
        // A NUL cannot be passed on a command line; its check is in sky-spec's own tests.
        if bad.contains('\0') {
            continue;
        }
        let o = home.sky_in(home.path(), &["launch", "--dryrun", "--env", &bad, "echo"]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 3, "--env {bad}:\n{out}{err}");
        assert!(err.contains("--env"), "{err}");
    }
    for dst in ["''", "relative/path", "~/.sky/agent.token", "~/sky_logs/x"] {
        let task = home.task(
            "mount.yaml",
            &format!("file_mounts:\n  {dst}: ./mount.yaml\nrun: echo hi\n"),
        );
        let o = home.sky_in(home.path(), &["validate", &task]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 3, "destination {dst}:\n{out}{err}");
        assert!(format!("{out}{err}").contains("file_mounts"), "{out}{err}");
    }
    home.assert_clean();
}

/// SkyPilot's own `~/.sky/state.db` (its `clusters` table has other columns) must be left
/// byte for byte as it is while sky-rs launches, lists and tears down clusters.
#[test]
fn skypilots_state_database_is_left_untouched() {
    let home = Home::new(&[]);
    let db = home.path().join(".sky/state.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute('CREATE TABLE clusters (name TEXT PRIMARY KEY, launched_at INTEGER, handle BLOB, last_use TEXT, status TEXT, autostop INTEGER, to_down INTEGER, metadata TEXT DEFAULT \"{}\")'); \
             c.execute(\"INSERT INTO clusters (name, status) VALUES ('sp-cluster', 'UP')\"); \
             c.execute('CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT)'); c.commit()",
        )
        .arg(&db)
        .status()
        .expect("python3 (with sqlite3) makes the SkyPilot-shaped database");
    assert!(made.success());
    let before = std::fs::read(&db).unwrap();
    let listing = |dir: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    let sky_before = listing(&home.path().join(".sky"));
    let out = ok(
        &home.sky_in(home.path(), &["launch", "-y", "-c", "beside", "echo", "hi"]),
        "launch",
    );
    assert!(out.contains("hi"), "{out}");
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    assert!(
        out.contains("beside") && !out.contains("sp-cluster"),
        "{out}"
    );
    ok(&home.sky_in(home.path(), &["down", "beside"]), "down");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "SkyPilot's state.db changed"
    );
    assert_eq!(
        listing(&home.path().join(".sky")),
        sky_before,
        "sky-rs wrote into ~/.sky"
    );
    assert!(home.path().join(".sky-rs/state.db").exists());
    home.assert_clean();
}

#[test]
fn ctrl_c_cancels_a_launch_that_cleans_up_and_says_so() {
    // Every placement fails and --retry-until-up waits: Ctrl-C there cancels the launch,
    // which says nothing of the cluster is left and exits 130; nothing is recorded.
    let home = Home::new(&[]);
    home.write(
        ".sky/config.yaml",
        "local:\n  regions:\n    - name: lab\n      zones:\n        - {name: lab-a, fail: capacity}\n",
    );
    let mut child = home.spawn_sky(&["launch", "-y", "-r", "-c", "cx", "echo", "never"]);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("(--retry-until-up)") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the launch waits to retry");
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let err = lines.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("cancelled: nothing of cluster cx is left"),
        "{err}"
    );
    let out = ok(&home.sky_in(home.path(), &["status"]), "status");
    assert!(!out.contains("cx"), "{out}");
    home.assert_clean();
}
