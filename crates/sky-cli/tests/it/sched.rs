//! The cluster job queue end to end on a local cluster with simulated H100:4: SkyPilot's
//! five-job backfill example step by step, fractional GPUs sharing a device, cancel of pending
//! and running jobs, and `sky down`. Jobs end when the test creates their marker file; states
//! come from `sky queue` and `CUDA_VISIBLE_DEVICES` from each job's own output (`sky logs`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::{Home, code, text};

const WAIT: Duration = Duration::from_secs(60);

const STATUSES: &[&str] = &[
    "INIT",
    "PENDING",
    "SETTING_UP",
    "RUNNING",
    "FAILED_DRIVER",
    "SUCCEEDED",
    "FAILED",
    "FAILED_SETUP",
    "CANCELLED",
];

struct Gpu {
    home: Home,
    markers: PathBuf,
}

impl Gpu {
    fn new() -> Gpu {
        let home = Home::new(&[]);
        home.write(".sky/config.yaml", "local:\n  accelerators:\n    H100: 4\n");
        let markers = home.dir.path().join("markers");
        std::fs::create_dir_all(&markers).unwrap();
        Gpu { home, markers }
    }

    fn sky(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sky"))
            .args(args)
            .current_dir(self.home.dir.path())
            .env_clear()
            .env("HOME", self.home.dir.path())
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("USER", "tester")
            .output()
            .expect("run sky")
    }

    /// Runs `sky`, which must succeed; stdout then stderr.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.sky(args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "sky {args:?} failed:\n{out}\n{err}");
        format!("{out}{err}")
    }

    /// A job that prints its devices and its shell's pid, then waits for its marker.
    fn script(&self, marker: &str) -> String {
        let m = self.markers.join(marker);
        format!(
            "echo CVD=$CUDA_VISIBLE_DEVICES; echo $$ > {}.pid; while [ ! -f {} ]; do sleep 0.05; done",
            m.display(),
            m.display()
        )
    }

    fn exec(&self, gpus: &str, name: &str) -> u64 {
        let out = self.ok(&[
            "exec",
            "gpu",
            "-d",
            "--gpus",
            gpus,
            "-n",
            name,
            &self.script(name),
        ]);
        job_id(&out).unwrap_or_else(|| panic!("no job id in:\n{out}"))
    }

    fn release(&self, marker: &str) {
        std::fs::write(self.markers.join(marker), "").unwrap();
    }

    fn pid(&self, marker: &str) -> i32 {
        let p = self.markers.join(format!("{marker}.pid"));
        let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        s.trim().parse().unwrap()
    }

    /// `sky queue gpu`: (id, name, status) per job.
    fn queue(&self) -> Vec<(u64, String, String)> {
        let out = self.ok(&["queue", "gpu"]);
        out.lines()
            .filter_map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                let id = t.first()?.parse().ok()?;
                let status = t.iter().rev().find(|w| STATUSES.contains(w))?;
                Some((id, t.get(1)?.to_string(), status.to_string()))
            })
            .collect()
    }

    fn status(&self, id: u64) -> String {
        let q = self.queue();
        q.iter()
            .find(|j| j.0 == id)
            .map(|j| j.2.clone())
            .unwrap_or_else(|| panic!("job {id} not in the queue: {q:?}"))
    }

    /// Polls `sky queue` until every (id, status) holds at once.
    fn wait_states(&self, want: &[(u64, &str)]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let q = self.queue();
            let ok = want
                .iter()
                .all(|(id, st)| q.iter().any(|j| j.0 == *id && j.2 == *st));
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "want {want:?}, queue: {q:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `CUDA_VISIBLE_DEVICES` as the job printed it.
    fn cvd(&self, id: u64) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            // Exit code 101 = the job has not ended yet (SkyPilot's); the output is what counts.
            let o = self.sky(&["logs", "gpu", &id.to_string(), "--no-follow"]);
            let (out, err) = text(&o);
            assert!(matches!(code(&o), 0 | 101), "sky logs {id}: {out}{err}");
            if let Some(l) = out.lines().find_map(|l| l.trim().strip_prefix("CVD=")) {
                return l.trim().to_string();
            }
            assert!(Instant::now() < deadline, "job {id} printed no CVD:\n{out}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn assert_clean(&self) {
        let needle = self.home.dir.path().display().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = processes_mentioning(&needle);
            let local = self.home.dir.path().join(".sky-rs/local");
            let dirs: Vec<String> = std::fs::read_dir(&local)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.starts_with('.'))
                .collect();
            if procs.is_empty() && dirs.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: processes {procs:?}, node dirs {dirs:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The job id `sky exec` / `sky launch` printed (`Job submitted, ID: N.`).
fn job_id(out: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let lower = l.to_lowercase();
        let i = lower.find("id:")?;
        lower[i + 3..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

fn pid_alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie (state Z) is gone as far as the job is concerned.
    !stat.is_empty()
        && stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let hay =
            String::from_utf8_lossy(&[cmdline.as_slice(), environ.as_slice()].concat()).to_string();
        if hay.contains(needle) {
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still alive");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn five_job_backfill_fractional_gpus_and_cancel() {
    let g = Gpu::new();
    // The initial `sky launch` job takes all 4 GPUs.
    let script = g.script("job1");
    let out = g.ok(&[
        "launch", "-y", "-c", "gpu", "-d", "--gpus", "H100:4", "-n", "job1", &script,
    ]);
    let job1 = job_id(&out).unwrap_or_else(|| panic!("no job id in:\n{out}"));
    assert_eq!(job1, 1, "{out}");
    g.wait_states(&[(1, "RUNNING")]);
    assert_eq!(g.cvd(1), "0,1,2,3");

    // Four more jobs while it runs: all PENDING (no free GPU).
    let job2 = g.exec("H100:1", "job2");
    let job3 = g.exec("H100:1", "job3");
    let job4 = g.exec("H100:4", "job4");
    let job5 = g.exec("H100:2", "job5");
    assert_eq!((job2, job3, job4, job5), (2, 3, 4, 5));
    for id in [2, 3, 4, 5] {
        assert_eq!(g.status(id), "PENDING", "{:?}", g.queue());
    }
    let names: Vec<String> = g.queue().into_iter().map(|j| j.1).collect();
    for n in ["job2", "job3", "job4", "job5"] {
        assert!(names.iter().any(|x| x == n), "{names:?}");
    }

    // job1 ends: job2 and job3 run on one GPU each, job4 (4 GPUs) stays PENDING, job5 runs
    // on the remaining two.
    g.release("job1");
    g.wait_states(&[
        (1, "SUCCEEDED"),
        (2, "RUNNING"),
        (3, "RUNNING"),
        (5, "RUNNING"),
    ]);
    assert_eq!(g.status(4), "PENDING");
    assert_eq!(g.cvd(2), "0");
    assert_eq!(g.cvd(3), "1");
    assert_eq!(g.cvd(5), "2,3");

    // job2 and job3 end: two GPUs are free, job4 still waits for four.
    g.release("job2");
    g.release("job3");
    g.wait_states(&[(2, "SUCCEEDED"), (3, "SUCCEEDED")]);
    assert_eq!(g.status(4), "PENDING");
    assert_eq!(g.status(5), "RUNNING");

    // job5 ends: all 4 GPUs are free and job4 runs on them.
    g.release("job5");
    g.wait_states(&[(5, "SUCCEEDED"), (4, "RUNNING")]);
    assert_eq!(g.cvd(4), "0,1,2,3");
    g.release("job4");
    g.wait_states(&[(4, "SUCCEEDED")]);

    // Fractional GPUs: two H100:0.5 jobs share device 0; a whole-device job uses another.
    let half1 = g.exec("H100:0.5", "half1");
    let half2 = g.exec("H100:0.5", "half2");
    let one = g.exec("H100:1", "one");
    g.wait_states(&[(half1, "RUNNING"), (half2, "RUNNING"), (one, "RUNNING")]);
    assert_eq!(g.cvd(half1), "0");
    assert_eq!(g.cvd(half2), "0");
    assert_eq!(g.cvd(one), "1");
    // 4 GPUs cannot fit now: PENDING; cancel it while pending.
    let big = g.exec("H100:4", "big");
    assert_eq!(g.status(big), "PENDING");
    g.ok(&["cancel", "gpu", &big.to_string()]);
    g.wait_states(&[(big, "CANCELLED")]);
    // Cancel a running job: its process is gone.
    let pid = g.pid("half1");
    assert!(pid_alive(pid));
    g.ok(&["cancel", "gpu", &half1.to_string()]);
    g.wait_states(&[(half1, "CANCELLED")]);
    wait_gone(pid);
    // Cancel all: the rest go too.
    let pids = [g.pid("half2"), g.pid("one")];
    g.ok(&["cancel", "gpu", "-a"]);
    g.wait_states(&[(half2, "CANCELLED"), (one, "CANCELLED")]);
    for p in pids {
        wait_gone(p);
    }
    let never = g.sky(&["exec", "gpu", "-d", "--gpus", "H100:8", "true"]);
    let (out, err) = text(&never);
    assert_ne!(code(&never), 0, "{out}{err}");

    g.ok(&["down", "gpu", "-y"]);
    g.assert_clean();
    assert!(Path::new(g.home.dir.path()).exists());
}
