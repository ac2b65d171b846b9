//! The emulator harness: moto (S3), fake-gcs-server (GCS) and Azurite (Azure Blob), installed
//! once (moto into the venv `scripts/moto.sh` and sky-cloud-aws share, the other two by
//! `scripts/storage-emulators.sh install`), each started once per test binary on a free
//! 127.0.0.1 port and stopped by a watchdog shell when this process is gone. Tests share the
//! servers and isolate themselves by unique bucket names.
//!
//! A missing tool (python3, npm) skips loudly; with `SKY_REQUIRE_EMULATORS=1` it panics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Emulator {
    pub addr: SocketAddr,
}

impl Emulator {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn require() -> bool {
    std::env::var("SKY_REQUIRE_EMULATORS").is_ok_and(|v| v == "1")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn emu_dir() -> PathBuf {
    std::env::var_os("SKY_EMU_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/sky-emulators"))
}

/// HTTP/1.1 GET to 127.0.0.1; the status code.
fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts `cmd` (a shell command line using `{port}`) under a watchdog and waits until `probe`
/// answers with a status `ok` accepts.
fn start(name: &str, cmd: &str, probe: &str, ok: fn(u16) -> bool) -> Result<Emulator, String> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = std::env::temp_dir().join(format!("sky-storage-{name}-{port}.log"));
    let cmd = cmd.replace("{port}", &port.to_string());
    let script = format!(
        "{cmd} >{log} 2>&1 & m=$!; while kill -0 {me} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m 2>/dev/null",
        log = log.display(),
        me = std::process::id(),
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("failed to start {name}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_status(addr, probe).is_ok_and(ok) {
            return Ok(Emulator { addr });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{name} did not answer on {addr} within 60s; see {}",
        log.display()
    ))
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `None` after a loud message when a tool is missing (a panic under SKY_REQUIRE_EMULATORS=1);
/// a failed start always panics.
fn get_or_skip(
    name: &str,
    tools: &[&str],
    f: impl FnOnce() -> Result<Emulator, String>,
) -> Option<Emulator> {
    if let Some(t) = tools.iter().find(|t| !has(t)) {
        assert!(
            !require(),
            "SKY_REQUIRE_EMULATORS=1 but {t} is missing, so {name} cannot run"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPING the {name} tests of sky-storage: {t} is not installed (CI sets SKY_REQUIRE_EMULATORS=1 and fails instead) !!!\n"
        );
        return None;
    }
    match f() {
        Ok(e) => Some(e),
        Err(e) => panic!("{name}: {e}"),
    }
}

fn storage_install() -> Result<(), String> {
    run(
        Command::new("bash")
            .arg(root().join("scripts/storage-emulators.sh"))
            .arg("install")
            .env("SKY_EMU_DIR", emu_dir()),
        "scripts/storage-emulators.sh install",
    )
}

pub fn moto() -> Option<&'static Emulator> {
    static E: OnceLock<Option<Emulator>> = OnceLock::new();
    E.get_or_init(|| {
        get_or_skip("moto", &["python3"], || {
            let venv = std::env::var_os("SKY_MOTO_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| emu_dir().join("moto-venv"));
            if !venv.join("bin/moto_server").exists() {
                if !venv.join("bin/pip").exists() {
                    run(
                        Command::new("python3").arg("-m").arg("venv").arg(&venv),
                        "python3 -m venv",
                    )?;
                }
                run(
                    Command::new(venv.join("bin/pip")).args(["install", "-q", "moto[server]"]),
                    "pip install moto[server]",
                )?;
            }
            start(
                "moto",
                &format!(
                    "{} -H 127.0.0.1 -p {{port}}",
                    venv.join("bin/moto_server").display()
                ),
                "/moto-api/",
                |s| s == 200,
            )
        })
    })
    .as_ref()
}

pub fn fake_gcs() -> Option<&'static Emulator> {
    static E: OnceLock<Option<Emulator>> = OnceLock::new();
    E.get_or_init(|| {
        get_or_skip("fake-gcs-server", &["python3"], || {
            storage_install()?;
            let out = Command::new("bash")
                .arg(root().join("scripts/storage-emulators.sh"))
                .arg("fgcs-bin")
                .env("SKY_EMU_DIR", emu_dir())
                .output()
                .map_err(|e| format!("fgcs-bin: {e}"))?;
            let bin = String::from_utf8_lossy(&out.stdout).trim().to_string();
            start(
                "fake-gcs-server",
                &format!("{bin} -scheme http -backend memory -host 127.0.0.1 -port {{port}} -external-url http://127.0.0.1:{{port}} -public-host 127.0.0.1:{{port}} -log-level error"),
                "/storage/v1/b",
                |s| s == 200,
            )
        })
    })
    .as_ref()
}

pub fn azurite() -> Option<&'static Emulator> {
    static E: OnceLock<Option<Emulator>> = OnceLock::new();
    E.get_or_init(|| {
        get_or_skip("azurite", &["npm", "node"], || {
            storage_install()?;
            let bin = emu_dir().join("azurite/node_modules/.bin/azurite-blob");
            start(
                "azurite",
                &format!("{} --blobHost 127.0.0.1 --blobPort {{port}} --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --silent", bin.display()),
                "/",
                |s| s > 0,
            )
        })
    })
    .as_ref()
}
