//! The moto harness: installs moto into a venv (once), starts one `moto_server` per test binary
//! on a free 127.0.0.1 port, and stops it when the binary exits (a watchdog shell kills it
//! once this process is gone). Tests share the server and isolate themselves by unique cluster
//! names, VPC names and regions (no `/moto-api/reset`, since tests run in parallel).
//!
//! Skips loudly when python3 is missing, and panics instead when `SKY_REQUIRE_EMULATORS=1`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    pub addr: SocketAddr,
}

impl Moto {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The venv moto lives in (shared with `scripts/moto.sh`).
pub fn venv_dir() -> PathBuf {
    std::env::var_os("SKY_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/sky-emulators/moto-venv"))
}

fn require() -> bool {
    std::env::var("SKY_REQUIRE_EMULATORS").is_ok_and(|v| v == "1")
}

fn has_python() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn install(venv: &PathBuf) -> Result<(), String> {
    if venv.join("bin/moto_server").exists() {
        return Ok(());
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
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
    };
    if !venv.join("bin/pip").exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(venv),
            "python3 -m venv",
        )?;
    }
    run(
        Command::new(venv.join("bin/pip")).args(["install", "-q", "moto[server]"]),
        "pip install moto[server]",
    )
}

/// HTTP/1.1 request to 127.0.0.1 (readiness probe, reset); returns the status code.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn start() -> Result<Moto, String> {
    let venv = venv_dir();
    install(&venv)?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = std::env::temp_dir().join(format!("sky-moto-{port}.log"));
    // The watchdog stops moto when this test binary exits.
    let script = format!(
        "{bin} -H 127.0.0.1 -p {port} >{log} 2>&1 & m=$!; while kill -0 {me} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m 2>/dev/null",
        bin = venv.join("bin/moto_server").display(),
        log = log.display(),
        me = std::process::id(),
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
        .env("MOTO_ENABLE_AMI_VALIDATION", "true")
        .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("failed to start moto_server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http(addr, "GET", "/moto-api/").is_ok_and(|s| s == 200) {
            return Ok(Moto { addr });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "moto_server did not answer on {addr} within 60s; see {}",
        log.display()
    ))
}

/// The shared moto server, or `None` (after a loud message) when python3 is missing.
pub fn moto() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| {
        if !has_python() {
            assert!(
                !require(),
                "SKY_REQUIRE_EMULATORS=1 but python3 is missing, so moto cannot run"
            );
            // Written to fd 2 directly: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! SKIPPING the moto tests of sky-cloud-aws: python3 is not installed (CI sets SKY_REQUIRE_EMULATORS=1 and fails instead) !!!\n"
            );
            return None;
        }
        match start() {
            Ok(m) => Some(m),
            Err(e) => panic!("moto harness: {e}"),
        }
    })
    .as_ref()
}
