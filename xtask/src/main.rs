//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! ci | tidy | deps | bench | catalog | codegen | demo. Few dependencies on purpose.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

mod deps;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("tidy") => tidy(&root),
        Some("deps") => deps(),
        Some("bench") => bench(&root, &args[1..]),
        Some("catalog") => catalog(&root),
        Some("codegen") => codegen(&root, args.iter().any(|a| a == "--check")),
        Some("demo") => demo(&root),
        Some("emulators") => emulators(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|tidy|deps|bench|catalog|codegen [--check]|demo|emulators up|down|status [N]>\n\
                 \n  ci       format check, clippy, tidy, deps, codegen --check, all tests\
                 \n  tidy     every lib.rs opens with a //! paragraph; no todo!/unimplemented! on shipped code\
                 \n  deps     the crate graph keeps docs/ARCHITECTURE.md's layer table (dev-deps too), cloud\
                 \n           crates are leaves, the pure crates stay pure\
                 \n  bench    criterion benches, then whole-process timings of `sky` (medians);\
                 \n           `bench jobs`: 10,000 managed jobs in one controller\
                 \n  catalog  rebuild catalogs/*.bin from the upstream-format CSVs in catalogs/upstream/\
                 \n  codegen  write schemas/task.schema.json (--check: fail if stale)\
                 \n  demo     plan the example tasks with every bundled cloud enabled (a throwaway HOME)\
                 \n  emulators up [N]|down|status  a moto server (EC2) on 127.0.0.1:5000 (installs moto\
                 \n           into /tmp/sky-emulators/moto-venv) and N (default 3) sshd hosts in network\
                 \n           namespaces on 10.200.0.(10+i), bridge skybr0, state in /tmp/skyhosts/run\
                 \n           (root; installs openssh-server and rsync); tests start their own"
            );
            bail!("no such task")
        }
    }
}

/// The workspace root, from the manifest directory cargo gives this run (at run time: a
/// target directory shared between clones may hold an xtask built from another checkout).
fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Installs what the tests need on a fresh machine (idempotent): PostgreSQL's server binaries
/// for sky-state's PostgreSQL suite. The tests start their own throwaway servers.
fn prerequisites(root: &Path) -> Result<()> {
    let script = root.join("crates/sky-state/scripts/install-postgres.sh");
    if script.exists() {
        run(Command::new("bash").arg(&script))?;
    }
    // sshd and rsync for the network-namespace hosts (the tests would install them too, but
    // once here is faster and avoids parallel apt runs).
    let have_ssh = Path::new("/usr/sbin/sshd").exists()
        && Command::new("sh")
            .args(["-c", "command -v rsync"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !have_ssh {
        run(Command::new("sh").args([
            "-c",
            "export DEBIAN_FRONTEND=noninteractive; apt-get install -y openssh-server rsync >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y openssh-server rsync >/dev/null; }",
        ]))?;
    }
    // Debian's Chromium for the managed-jobs dashboard's headless test.
    let chromium = root.join("scripts/install-chromium.sh");
    if chromium.exists() {
        run(Command::new("bash").arg(&chromium))?;
    }
    // moto's venv (created once; the AWS tests start their own servers from it).
    let moto = root.join("scripts/moto.sh");
    if moto.exists() && !Path::new("/tmp/sky-emulators/moto-venv/bin/moto_server").exists() {
        let emu = std::env::temp_dir().join(format!("sky-moto-install-{}", std::process::id()));
        run(Command::new("bash")
            .arg(&moto)
            .arg("up")
            .env("SKY_EMU_DIR", &emu)
            .env("SKY_MOTO_VENV", "/tmp/sky-emulators/moto-venv")
            .env("MOTO_PORT", "5999"))?;
        run(Command::new("bash")
            .arg(&moto)
            .arg("down")
            .env("SKY_EMU_DIR", &emu)
            .env("MOTO_PORT", "5999"))?;
        let _ = std::fs::remove_dir_all(&emu);
    }
    // fake-gcs-server and Azurite for sky-storage's tests (installed once; the tests start them).
    let storage = root.join("scripts/storage-emulators.sh");
    if storage.exists() {
        run(Command::new("bash").arg(&storage).arg("install"))?;
    }
    Ok(())
}

fn ci() -> Result<()> {
    prerequisites(&project_root())?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    tidy(&project_root())?;
    deps()?;
    codegen(&project_root(), true)?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // In CI nothing skips: the PostgreSQL suite must find its server.
    run(cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .env("SKY_STATE_REQUIRE_PG", "1")
        .env("SKY_REQUIRE_EMULATORS", "1"))?;
    eprintln!("xtask ci: all green");
    Ok(())
}

fn tidy(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let dir = entry?.path();
        let lib = dir.join("src/lib.rs");
        if lib.exists() {
            let text = std::fs::read_to_string(&lib)?;
            if !text.trim_start().starts_with("//!") {
                problems.push(format!(
                    "{}: must open with a `//!` paragraph",
                    lib.display()
                ));
            }
        }
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
        if !manifest.contains(&format!("name = \"{name}\"")) {
            problems.push(format!(
                "{}: folder name must equal the package name",
                dir.display()
            ));
        }
        if !manifest.contains("[lints]") {
            problems.push(format!(
                "{}: must inherit `[lints] workspace = true`",
                dir.display()
            ));
        }
        walk_rs(&dir.join("src"), &mut |path, text| {
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("todo!(") || code.contains("unimplemented!(") {
                    problems.push(format!(
                        "{}:{}: placeholder macro on a shipped path",
                        path.display(),
                        i + 1
                    ));
                }
            }
        })?;
    }
    if problems.is_empty() {
        eprintln!("tidy: ok");
        Ok(())
    } else {
        bail!("tidy found problems:\n{}", problems.join("\n"))
    }
}

fn walk_rs(dir: &Path, f: &mut dyn FnMut(&Path, &str)) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk_rs(&path, f)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            f(&path, &std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}

/// Checks the crate graph against the rules of docs/ARCHITECTURE.md (see `deps.rs`).
fn deps() -> Result<()> {
    let out = cargo()
        .args(["metadata", "--format-version", "1"])
        .output()
        .context("failed to run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    deps::run(&project_root(), &meta)
}

fn codegen(root: &Path, check: bool) -> Result<()> {
    let path = root.join("schemas/task.schema.json");
    let mut text = serde_json::to_string_pretty(&sky_spec::json_schema())?;
    text.push('\n');
    if check {
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old != text {
            bail!(
                "{} is stale: run `cargo xtask codegen` and commit it",
                path.display()
            );
        }
        eprintln!("codegen: schemas/task.schema.json is up to date");
    } else {
        std::fs::create_dir_all(path.parent().unwrap_or(root))?;
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn catalog(root: &Path) -> Result<()> {
    let upstream = root.join("catalogs/upstream");
    let mut files: Vec<(String, String, Vec<u8>)> = Vec::new();
    for entry in
        std::fs::read_dir(&upstream).with_context(|| format!("reading {}", upstream.display()))?
    {
        let dir = entry?.path();
        if !dir.is_dir() {
            continue;
        }
        let cloud = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for f in std::fs::read_dir(&dir)? {
            let f = f?.path();
            if f.extension().is_some_and(|e| e == "csv") {
                let name = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                files.push((cloud.clone(), name, std::fs::read(&f)?));
            }
        }
    }
    files.sort();
    let inputs: Vec<(&str, &str, &[u8])> = files
        .iter()
        .map(|(c, n, b)| (c.as_str(), n.as_str(), b.as_slice()))
        .collect();
    let compact = sky_catalog::compile(&inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = root.join(sky_catalog::COMPACT_PATH);
    std::fs::write(&out, &compact)?;
    eprintln!(
        "wrote {} ({} bytes from {} CSV files)",
        out.display(),
        compact.len(),
        files.len()
    );
    Ok(())
}

/// Median wall time of `n` runs of a command (after one warm-up run).
fn time_process(cmd: &mut Command, n: usize) -> Result<Duration> {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.status()?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let st = cmd.status()?;
        times.push(t.elapsed());
        if !st.success() {
            bail!("{cmd:?} exited with {st}");
        }
    }
    times.sort();
    Ok(times[n / 2])
}

/// A throwaway HOME where all six bundled clouds look enabled (placeholder credential files;
/// nothing ever contacts a cloud from a dryrun).
fn demo_home() -> Result<PathBuf> {
    let home = std::env::temp_dir().join(format!("sky-rs-demo-home-{}", std::process::id()));
    let files = [
        (
            ".aws/credentials",
            "[default]\naws_access_key_id = DEMO\naws_secret_access_key = DEMO\n",
        ),
        (
            ".config/gcloud/application_default_credentials.json",
            "{\"type\": \"authorized_user\"}\n",
        ),
        (".azure/azureProfile.json", "{}\n"),
        (".lambda_cloud/lambda_keys", "api_key = DEMO\n"),
        (".runpod/config.toml", "[default]\napi_key = \"DEMO\"\n"),
        (".config/vastai/vast_api_key", "DEMO\n"),
    ];
    for (rel, body) in files {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().unwrap_or(&home))?;
        std::fs::write(p, body)?;
    }
    Ok(home)
}

fn sky_release(root: &Path) -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "sky-cli"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/sky"))
}

fn demo(root: &Path) -> Result<()> {
    let sky = sky_release(root)?;
    let home = demo_home()?;
    let result = (|| -> Result<()> {
        for example in ["gpu_a100.yaml", "gpu_set.yaml", "spot_with_fallback.yaml"] {
            let file = root.join("examples").join(example);
            run(Command::new(&sky)
                .args(["launch", "--dryrun", "-y"])
                .arg(&file)
                .env("HOME", &home)
                .env_remove("SKY_HOME"))?;
            println!();
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&home);
    result
}

fn bench(root: &Path, extra: &[String]) -> Result<()> {
    if extra.first().map(String::as_str) == Some("jobs") {
        // 10,000 managed jobs in one controller (crates/sky-jobs/benches/jobs.rs), its
        // `p50_status_ms` the release `sky jobs queue -a` against it (SKY_JOBS_BENCH_SKY); its
        // last line is `jobs=N peak_rss_mib=M submit_per_s=S p50_status_ms=P`.
        let sky = sky_release(root)?;
        return run(cargo()
            .args(["bench", "-p", "sky-jobs", "--bench", "jobs"])
            .env("SKY_JOBS_BENCH_SKY", &sky));
    }
    let quick = extra.iter().any(|a| a == "--quick");
    if !extra.iter().any(|a| a == "--process-only") {
        let mut c = cargo();
        // Only bench targets: criterion flags would be refused by the libs' libtest harness.
        c.args(["bench", "--workspace", "--bench", "*"]);
        if quick {
            c.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
        }
        run(&mut c)?;
    }
    let sky = sky_release(root)?;
    let home = demo_home()?;
    let n = 31;
    let help = time_process(Command::new(&sky).arg("--help"), n)?;
    let file = root.join("examples/gpu_a100.yaml");
    let dry = time_process(
        Command::new(&sky)
            .args(["launch", "--dryrun", "-y"])
            .arg(&file)
            .env("HOME", &home)
            .env_remove("SKY_HOME"),
        n,
    )?;
    let validate = time_process(
        Command::new(&sky)
            .arg("validate")
            .arg(root.join("examples/full_reference.yaml"))
            .env("HOME", &home),
        n,
    )?;
    let _ = std::fs::remove_dir_all(&home);
    println!("process wall-time medians over {n} runs (release build):");
    println!(
        "  sky --help                                   {:>8.2} ms (budget 20 ms)",
        help.as_secs_f64() * 1e3
    );
    println!(
        "  sky launch --dryrun -y examples/gpu_a100.yaml {:>8.2} ms (budget 50 ms)",
        dry.as_secs_f64() * 1e3
    );
    println!(
        "  sky validate examples/full_reference.yaml    {:>8.2} ms",
        validate.as_secs_f64() * 1e3
    );
    Ok(())
}

/// `cargo xtask emulators up [N]|down|status`: network-namespace sshd hosts for trying the SSH
/// cloud by hand (scripts/netns-hosts.sh; see ../shared/emulators.md section 5). Tests start
/// their own hosts through `sky_provider_testkit::netns`.
fn emulators(root: &Path, args: &[String]) -> Result<()> {
    let action = args.first().map(String::as_str).unwrap_or("");
    if !matches!(action, "up" | "down" | "status") {
        bail!("usage: cargo xtask emulators up [N]|down|status");
    }
    // moto first (it needs no root): on 127.0.0.1:5000, its venv shared with the tests.
    if action == "status" {
        let up = Path::new("/tmp/sky-emulators/moto.pid").exists();
        println!("moto: {}", if up { "up on 127.0.0.1:5000" } else { "down" });
    } else {
        run(Command::new("bash")
            .arg(root.join("scripts/moto.sh"))
            .arg(action)
            .env("SKY_EMU_DIR", "/tmp/sky-emulators")
            .env("SKY_MOTO_VENV", "/tmp/sky-emulators/moto-venv")
            .env("MOTO_PORT", "5000"))?;
    }
    let n = args.get(1).map(String::as_str).unwrap_or("3");
    let state = "/tmp/skyhosts/run";
    let n_for_down = std::fs::read_to_string(format!("{state}/sshd.pids"))
        .map(|s| s.lines().count().max(1).to_string())
        .unwrap_or_else(|_| n.to_string());
    let mut c = Command::new("bash");
    c.arg(root.join("scripts/netns-hosts.sh"))
        .arg(action)
        .env("N", if action == "up" { n } else { &n_for_down })
        .env("W", state);
    run(&mut c)?;
    if action == "up" {
        println!(
            "\nSSH node pool for ~/.sky/ssh_node_pools.yaml:\n\
             emu:\n  user: sky\n  identity_file: {state}/id_ed25519\n  known_hosts_file: {state}/known_hosts\n  strict_host_key_checking: 'yes'\n  hosts: [{}]\n\
             then: sky launch --infra ssh/emu ...\n\n\
             EC2 (moto): export AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=testing \
             AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1\n\
             stop both with `cargo xtask emulators down`",
            (1..=n.parse::<u32>().unwrap_or(3))
                .map(|i| format!("10.200.0.{}", 10 + i))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
