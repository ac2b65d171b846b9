//! A throwaway PostgreSQL server for tests (feature `testing`; sky-state's own suite includes
//! this file as a module, so it builds without the feature too).
//!
//! Installs nothing: it looks for the server binaries (`$SKY_STATE_PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin`) and, when they are absent, the PostgreSQL tests skip with a loud
//! message (or fail, when `SKY_STATE_REQUIRE_PG=1`, as CI sets after running
//! `scripts/install-postgres.sh`). One server per test process: `initdb` into a temp dir, then
//! `postgres` on a unix socket in that dir (no TCP port, so no clashes), run as the `postgres`
//! user when the tests run as root. A shell watchdog stops the server and deletes the dir once
//! this test process has exited. Each test gets its own database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

const PORT: u16 = 5432;

#[derive(Debug)]
pub struct PgServer {
    socket_dir: PathBuf,
}

impl PgServer {
    fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@localhost/{db}?host={}&port={PORT}",
            self.socket_dir.display()
        )
    }

    /// A new, empty database on the shared server.
    pub async fn fresh_db(&self, test: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let db = format!(
            "t_{}_{}",
            test.to_lowercase(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test PostgreSQL server");
        sqlx::raw_sql(&format!("CREATE DATABASE \"{db}\""))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        conn.close().await.ok();
        self.url(&db)
    }
}

/// The shared server, started on first use; None (after a loud message) when PostgreSQL is
/// not installed.
pub fn server() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let Some(bin) = find_bin_dir() else {
                let msg = "PostgreSQL server binaries not found (looked in $SKY_STATE_PG_BIN, else \
                           /usr/lib/postgresql/*/bin/initdb); run \
                           crates/sky-state/scripts/install-postgres.sh";
                assert!(
                    std::env::var_os("SKY_STATE_REQUIRE_PG").is_none(),
                    "SKY_STATE_REQUIRE_PG is set but {msg}"
                );
                // Written to fd 2 directly: libtest captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!! SKIPPING the PostgreSQL tests of sky-state: {msg} !!!\n"
                );
                return None;
            };
            Some(start(&bin).unwrap_or_else(|e| panic!("start the test PostgreSQL server: {e}")))
        })
        .as_ref()
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SKY_STATE_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `argv` as the `postgres` user when we are root (initdb refuses root), else as ourselves.
fn as_pg_user(root: bool, argv: &[&str]) -> Command {
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c.args(argv);
        c
    } else {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    };
    cmd.stdin(Stdio::null());
    cmd
}

fn start(bin: &Path) -> Result<PgServer, String> {
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("sky-state-pg.")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let d = dir.to_str().ok_or("temp dir is not UTF-8")?.to_owned();
    if root {
        let ok = Command::new("chown")
            .args(["postgres:postgres", &d])
            .status();
        if !ok.is_ok_and(|s| s.success()) {
            return Err(format!(
                "chown postgres {d} failed (is there a postgres user?)"
            ));
        }
    }
    let initdb = bin.join("initdb");
    let out = as_pg_user(
        root,
        &[
            initdb.to_str().unwrap(),
            "-D",
            &format!("{d}/data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    )
    .output()
    .map_err(|e| format!("run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Watchdog: runs the server until this test process is gone, then cleans up.
    let script = format!(
        r#"
"{bin}/postgres" -D "{d}/data" -k "{d}" -p {PORT} -c listen_addresses='' \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
    > "{d}/pg.log" 2>&1 &
pg=$!
while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 0.2; done
kill -INT $pg 2>/dev/null; wait $pg; rm -rf "{d}"
"#,
        bin = bin.display(),
        parent = std::process::id(),
    );
    as_pg_user(root, &["sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn postgres: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let isready = bin.join("pg_isready");
    loop {
        let ready = Command::new(&isready)
            .args(["-q", "-h", &d, "-p", &PORT.to_string(), "-U", "postgres"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(PgServer { socket_dir: dir });
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(format!("{d}/pg.log")).unwrap_or_default();
            return Err(format!("server not ready after 30 s; log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
