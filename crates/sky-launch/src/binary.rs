//! The `sky` binary every remote node runs its agent from (`~/.sky/bin/sky`), sent from the
//! client once per cluster, compressed, and from the head to the workers over the cluster's own
//! network.
//!
//! The client compresses its binary once ([`LocalBinary::prepare`]: gzip, cached under the
//! client's state directory by the binary's SHA-256, the hash itself cached by size and mtime).
//! [`distribute`] asks every remote node for the SHA-256 of the binary it has (`sha256sum`); a
//! node that has this one already is left alone. The head, if it lacks it, gets the compressed
//! file (one upload from the client), unpacks it with `gunzip` and checks the hash before it
//! moves the binary into place. Workers that lack it pull it from the head: the head runs `sky
//! agent serve-file` (a one-file server bound to its internal IP, protected by a fresh token,
//! exiting after serving those workers or a timeout) and each worker reads it with bash's
//! `/dev/tcp`, checks the hash and renames it into place, so no client bandwidth and no
//! curl/python on the nodes. A worker that cannot reach the head gets the compressed binary
//! from the client instead (and the report says so). Nodes with a `node_home` (the local cloud)
//! run the client's binary itself and are skipped.
//!
//! Why gzip: `gunzip` is on every Linux image the clouds boot (zstd is not), and
//! `flate2`'s default backend (miniz_oxide) is pure Rust; a debug `sky` shrinks about 4x, a
//! release one about 3x.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sky_provider::{CommandRunner, InstanceInfo, shell_quote};

/// Where remote nodes keep the `sky` binary (relative to the node's home).
pub const REMOTE_SKY_BINARY: &str = ".sky/bin/sky";
/// The compressed upload on the head, removed once unpacked.
const REMOTE_GZ: &str = ".sky/bin/sky.gz";
/// The head's file server writes its address here.
const SERVE_ADDR_FILE: &str = ".sky/serve-file.addr";
/// ... and logs one line per connection here.
pub const SERVE_LOG_FILE: &str = ".sky/serve-file.log";
/// The environment variable carrying the server's one-time token.
pub const SERVE_TOKEN_ENV: &str = "SKY_SERVE_FILE_TOKEN";
/// How long the head serves before it gives up on the workers.
const SERVE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a worker's pull may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the head's server has to start listening.
const SERVE_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The client's `sky` binary, hashed and compressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalBinary {
    pub path: PathBuf,
    /// SHA-256 of the binary, 64 lower-case hex digits.
    pub sha256: String,
    pub size: u64,
    /// The gzip file (in the cache).
    pub gz: PathBuf,
    pub gz_size: u64,
}

/// Prepared binaries of this process, by path, with the size and mtime they were prepared at.
type Prepared = HashMap<PathBuf, ((u64, i128), Arc<LocalBinary>)>;
static PREPARED: Mutex<Option<Prepared>> = Mutex::new(None);

fn key_of(meta: &std::fs::Metadata) -> (u64, i128) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    (meta.len(), mtime)
}

impl LocalBinary {
    /// Hashes and compresses `binary` into `cache_dir` (created, mode 0700), once per process
    /// and once per binary on disk: the hash is cached by size and mtime, the gzip file by hash.
    pub async fn prepare(binary: &Path, cache_dir: &Path) -> Result<Arc<LocalBinary>, String> {
        let meta = std::fs::metadata(binary)
            .map_err(|e| format!("read the sky binary {}: {e}", binary.display()))?;
        let key = key_of(&meta);
        if let Some((k, b)) = PREPARED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .get(binary)
            && *k == key
        {
            return Ok(b.clone());
        }
        let (b, c) = (binary.to_owned(), cache_dir.to_owned());
        let prepared = tokio::task::spawn_blocking(move || prepare_blocking(&b, &c, key))
            .await
            .map_err(|e| format!("prepare the sky binary: {e}"))??;
        let prepared = Arc::new(prepared);
        PREPARED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(binary.to_owned(), (key, prepared.clone()));
        Ok(prepared)
    }
}

fn prepare_blocking(
    binary: &Path,
    cache_dir: &Path,
    key: (u64, i128),
) -> Result<LocalBinary, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)
        .map_err(|e| format!("create {}: {e}", cache_dir.display()))?;
    let hash_file = cache_dir.join(format!("sky-{}-{}.sha256", key.0, key.1));
    let sha256 = match std::fs::read_to_string(&hash_file) {
        Ok(h) if is_sha256(h.trim()) => h.trim().to_owned(),
        _ => {
            let h = sha256_file(binary)?;
            write_atomic(&hash_file, h.as_bytes())?;
            h
        }
    };
    let gz = cache_dir.join(format!("sky-{sha256}.gz"));
    if !gz.is_file() {
        let tmp = cache_dir.join(format!("sky-{sha256}.gz.tmp{}", std::process::id()));
        let compress = || -> std::io::Result<()> {
            let mut src = std::io::BufReader::new(std::fs::File::open(binary)?);
            let out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(3));
            std::io::copy(&mut src, &mut enc)?;
            enc.finish()?.flush()
        };
        compress().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("compress {} into {}: {e}", binary.display(), tmp.display())
        })?;
        std::fs::rename(&tmp, &gz).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
    }
    let gz_size = std::fs::metadata(&gz)
        .map_err(|e| format!("read {}: {e}", gz.display()))?
        .len();
    Ok(LocalBinary {
        path: binary.to_owned(),
        sha256,
        size: key.0,
        gz,
        gz_size,
    })
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// How each node got its binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distribution {
    /// Ranks that already had this binary.
    pub up_to_date: Vec<u32>,
    /// Ranks the client uploaded the compressed binary to (the head; a worker only when it
    /// could not pull from the head).
    pub uploaded: Vec<u32>,
    /// Ranks that pulled it from the head.
    pub from_head: Vec<u32>,
    /// Why a worker fell back to an upload from the client (rank, reason).
    pub fallbacks: Vec<(u32, String)>,
}

async fn run_quiet(runner: &dyn CommandRunner, script: &str) -> Result<(i32, String), String> {
    let (code, out) = runner
        .run_capture(script, &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok((code, String::from_utf8_lossy(&out).into_owned()))
}

fn node_name(node: &InstanceInfo) -> String {
    format!("node {} ({})", node.rank, node.internal_ip)
}

/// The SHA-256 of the node's `~/.sky/bin/sky`, `None` when it has none.
async fn remote_sha256(
    runner: &dyn CommandRunner,
    node: &InstanceInfo,
) -> Result<Option<String>, String> {
    let script = format!(
        "f={bin}; if [ -f \"$f\" ]; then sha256sum \"$f\" | cut -d' ' -f1; fi",
        bin = shell_quote(REMOTE_SKY_BINARY)
    );
    let (code, out) = run_quiet(runner, &script)
        .await
        .map_err(|e| format!("check the sky binary on {}: {e}", node_name(node)))?;
    if code != 0 {
        return Err(format!(
            "check the sky binary on {}: exit {code}: {}",
            node_name(node),
            out.trim()
        ));
    }
    Ok(out
        .lines()
        .map(str::trim)
        .find(|l| is_sha256(l))
        .map(str::to_owned))
}

/// The shell lines that check the file `$t` against `sha256`, then move it to the binary's
/// place (or remove it and fail).
fn verify_and_install(sha256: &str) -> String {
    format!(
        "h=$(sha256sum \"$t\" | cut -d' ' -f1); \
         if [ \"$h\" != {sha256} ]; then rm -f \"$t\"; echo \"sha256 $h, expected {sha256}\"; exit 3; fi; \
         chmod 755 \"$t\" && mv -f \"$t\" sky"
    )
}

/// Uploads the compressed binary to one node and unpacks it there (checking the hash).
async fn install_from_client(
    bin: &LocalBinary,
    runner: &dyn CommandRunner,
    node: &InstanceInfo,
) -> Result<(), String> {
    runner.upload(&bin.gz, REMOTE_GZ).await.map_err(|e| {
        format!(
            "upload the sky binary ({} compressed) to {}: {e}",
            bin.gz.display(),
            node_name(node)
        )
    })?;
    let script = format!(
        "cd ~/.sky/bin || exit 1; t=sky.unpack.$$; \
         if ! gunzip -c sky.gz > \"$t\"; then rm -f \"$t\" sky.gz; echo 'gunzip failed (is gzip installed?)'; exit 3; fi; \
         rm -f sky.gz; {}",
        verify_and_install(&bin.sha256)
    );
    let (code, out) = run_quiet(runner, &script)
        .await
        .map_err(|e| format!("unpack the sky binary on {}: {e}", node_name(node)))?;
    if code != 0 {
        return Err(format!(
            "unpack the sky binary on {}: exit {code}: {}; check the node's disk space and that gzip and sha256sum are installed",
            node_name(node),
            out.trim()
        ));
    }
    Ok(())
}

/// A worker pulls the binary from the head's server at `addr` with bash's `/dev/tcp`.
fn fetch_script(addr: &std::net::SocketAddr, token: &str, sha256: &str) -> String {
    format!(
        "mkdir -p ~/.sky/bin && cd ~/.sky/bin || exit 1; t=sky.fetch.$$; \
         if ! exec 3<>/dev/tcp/{ip}/{port}; then echo 'cannot connect to the head at {addr}'; exit 4; fi; \
         printf '%s\\n' {token} >&3; cat <&3 > \"$t\"; exec 3<&-; {install}",
        ip = addr.ip(),
        port = addr.port(),
        token = shell_quote(token),
        install = verify_and_install(sha256),
    )
}

/// Where the client caches its compressed binary: `~/.sky-rs/cache/sky-binary` (beside the
/// backend's lock directory, `~/.sky-rs/locks`).
pub fn cache_dir(backend: &crate::Backend) -> PathBuf {
    backend
        .lock_dir
        .parent()
        .unwrap_or(&backend.lock_dir)
        .join("cache")
        .join("sky-binary")
}

/// [`distribute`]s the backend's `sky` binary to the remote nodes among `nodes` (nothing, and
/// nothing prepared, when every node is local).
pub(crate) async fn send_to_nodes(
    backend: &crate::Backend,
    nodes: &[InstanceInfo],
    runners: &[Arc<dyn CommandRunner>],
) -> Result<Distribution, String> {
    if runners.iter().all(|r| r.node_home().is_some()) {
        return Ok(Distribution::default());
    }
    let bin = LocalBinary::prepare(&backend.sky_binary, &cache_dir(backend)).await?;
    distribute(&bin, nodes, runners).await
}

/// Puts `bin` at `~/.sky/bin/sky` on every node whose runner has no `node_home`: once from the
/// client to the head (compressed), from the head to the workers. `nodes[0]` is the head;
/// `runners` are the nodes' in the same order. Errors name the node and what to check.
pub async fn distribute(
    bin: &LocalBinary,
    nodes: &[InstanceInfo],
    runners: &[Arc<dyn CommandRunner>],
) -> Result<Distribution, String> {
    let mut d = Distribution::default();
    let remote: Vec<usize> = (0..nodes.len().min(runners.len()))
        .filter(|&i| runners[i].node_home().is_none())
        .collect();
    if remote.is_empty() {
        return Ok(d);
    }
    let have = futures_util::future::join_all(
        remote
            .iter()
            .map(|&i| remote_sha256(runners[i].as_ref(), &nodes[i])),
    )
    .await;
    let mut needy = Vec::new();
    for (&i, h) in remote.iter().zip(have) {
        if h?.as_deref() == Some(bin.sha256.as_str()) {
            d.up_to_date.push(nodes[i].rank);
        } else {
            needy.push(i);
        }
    }
    let head_remote = remote.first() == Some(&0);
    if head_remote && needy.first() == Some(&0) {
        install_from_client(bin, runners[0].as_ref(), &nodes[0]).await?;
        d.uploaded.push(nodes[0].rank);
        needy.remove(0);
    }
    if needy.is_empty() {
        return Ok(d);
    }
    let pulled: Vec<Result<(), String>> = if head_remote {
        pull_from_head(bin, nodes, runners, &needy).await?
    } else {
        // No remote head to serve them: each worker from the client.
        needy
            .iter()
            .map(|_| Err("the head is not a remote node".to_string()))
            .collect()
    };
    for (&i, r) in needy.iter().zip(pulled) {
        match r {
            Ok(()) => d.from_head.push(nodes[i].rank),
            Err(why) => {
                install_from_client(bin, runners[i].as_ref(), &nodes[i]).await?;
                d.uploaded.push(nodes[i].rank);
                d.fallbacks.push((nodes[i].rank, why));
            }
        }
    }
    Ok(d)
}

/// Starts the head's one-file server for the `needy` workers and has each pull the binary.
/// The outer error is the server's (it did not start); the inner ones each worker's.
async fn pull_from_head(
    bin: &LocalBinary,
    nodes: &[InstanceInfo],
    runners: &[Arc<dyn CommandRunner>],
    needy: &[usize],
) -> Result<Vec<Result<(), String>>, String> {
    let head = runners[0].as_ref();
    let token = sky_agent::Token::generate().map_err(|e| e.to_string())?;
    let (code, out) = run_quiet(head, &format!("rm -f ~/{SERVE_ADDR_FILE}"))
        .await
        .map_err(|e| {
            format!(
                "prepare the file server on the head {}: {e}",
                node_name(&nodes[0])
            )
        })?;
    if code != 0 {
        return Err(format!(
            "prepare the file server on the head {}: {}",
            node_name(&nodes[0]),
            out.trim()
        ));
    }
    let argv: Vec<String> = [
        REMOTE_SKY_BINARY,
        "agent",
        "serve-file",
        "--file",
        REMOTE_SKY_BINARY,
        "--ip",
        &nodes[0].internal_ip,
        "--count",
        &needy.len().to_string(),
        "--timeout-secs",
        &SERVE_TIMEOUT.as_secs().to_string(),
        "--addr-file",
        SERVE_ADDR_FILE,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let env = [(SERVE_TOKEN_ENV.to_string(), token.expose().to_string())];
    let pid = head
        .spawn_detached(&argv, &env, SERVE_LOG_FILE)
        .await
        .map_err(|e| {
            format!(
                "start the file server on the head {}: {e}",
                node_name(&nodes[0])
            )
        })?;
    let addr = match wait_serve_addr(head).await {
        Ok(a) => a,
        Err(e) => {
            let _ = run_quiet(head, &format!("kill {pid} 2>/dev/null")).await;
            return Err(format!(
                "the file server on the head {} did not start: {e}; see ~/{SERVE_LOG_FILE} there",
                node_name(&nodes[0])
            ));
        }
    };
    // The workers reach the head at its internal address, on the server's port.
    let at = std::net::SocketAddr::new(
        nodes[0].internal_ip.parse().map_err(|_| {
            format!(
                "the head's internal IP {:?} is not an address",
                nodes[0].internal_ip
            )
        })?,
        addr.port(),
    );
    let script = fetch_script(&at, token.expose(), &bin.sha256);
    let results = futures_util::future::join_all(needy.iter().map(|&i| {
        let (runner, node, script) = (runners[i].as_ref(), &nodes[i], &script);
        async move {
            match tokio::time::timeout(FETCH_TIMEOUT, run_quiet(runner, script)).await {
                Ok(Ok((0, _))) => Ok(()),
                Ok(Ok((code, out))) => Err(format!(
                    "{} could not pull the sky binary from the head at {at}: exit {code}: {}",
                    node_name(node),
                    out.trim()
                )),
                Ok(Err(e)) => Err(format!("{}: {e}", node_name(node))),
                Err(_) => Err(format!(
                    "{} did not pull the sky binary from the head at {at} in {}s",
                    node_name(node),
                    FETCH_TIMEOUT.as_secs()
                )),
            }
        }
    }))
    .await;
    if results.iter().any(Result::is_err) {
        // The server waits for pulls that will not come: stop it.
        let _ = run_quiet(head, &format!("kill {pid} 2>/dev/null")).await;
    }
    Ok(results)
}

async fn wait_serve_addr(head: &dyn CommandRunner) -> Result<std::net::SocketAddr, String> {
    let deadline = tokio::time::Instant::now() + SERVE_START_TIMEOUT;
    loop {
        let (code, out) = run_quiet(head, &format!("cat ~/{SERVE_ADDR_FILE} 2>/dev/null")).await?;
        if code == 0
            && let Ok(a) = out.trim().parse()
        {
            return Ok(a);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "no address in ~/{SERVE_ADDR_FILE} after {}s",
                SERVE_START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prepares_once_and_caches_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("sky");
        let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 7) as u8).collect();
        std::fs::write(&bin, &body).unwrap();
        let cache = dir.path().join("cache");
        let a = LocalBinary::prepare(&bin, &cache).await.unwrap();
        assert_eq!(a.sha256, sha256_file(&bin).unwrap());
        assert!(is_sha256(&a.sha256));
        assert!(a.gz_size < a.size / 10, "{a:?}");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&a.gz).unwrap())
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body);
        // The same binary again: the same prepared copy.
        let b = LocalBinary::prepare(&bin, &cache).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // A changed binary: a new hash and a new file.
        std::fs::write(&bin, b"other").unwrap();
        let c = LocalBinary::prepare(&bin, &cache).await.unwrap();
        assert_ne!(c.sha256, a.sha256);
        assert_ne!(c.gz, a.gz);
        assert!(a.gz.is_file() && c.gz.is_file());
    }

    #[test]
    fn node_scripts_parse_and_quote_the_token() {
        let sha = "a".repeat(64);
        let s = fetch_script(&"10.200.0.2:4567".parse().unwrap(), "t'k", &sha);
        assert!(s.contains("/dev/tcp/10.200.0.2/4567"), "{s}");
        assert!(s.contains(&shell_quote("t'k")), "{s}");
        for script in [s, verify_and_install(&sha)] {
            let st = std::process::Command::new("bash")
                .args(["-n", "-c", &script])
                .status()
                .unwrap();
            assert!(st.success(), "{script}");
        }
    }

    /// The worker's pull and check against a real server, in bash, on this machine.
    #[tokio::test]
    async fn a_pull_with_the_wrong_hash_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let served = dir.path().join("served");
        std::fs::write(&served, b"binary").unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".sky/bin")).unwrap();
        let token = sky_agent::Token::generate().unwrap();
        let addr_file = dir.path().join("addr");
        let server = tokio::spawn(sky_agent::fileserve::serve_file(
            sky_agent::fileserve::ServeFile {
                file: served.clone(),
                listen: "127.0.0.1:0".parse().unwrap(),
                token: token.clone(),
                count: 2,
                timeout: Duration::from_secs(60),
                addr_file: addr_file.clone(),
            },
        ));
        let addr: std::net::SocketAddr = loop {
            if let Ok(t) = std::fs::read_to_string(&addr_file)
                && let Ok(a) = t.trim().parse()
            {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let pull = |sha: String| {
            let home = home.clone();
            let script = fetch_script(&addr, token.expose(), &sha);
            async move {
                tokio::process::Command::new("bash")
                    .args(["-c", &script])
                    .env("HOME", &home)
                    .output()
                    .await
                    .unwrap()
            }
        };
        let wrong = pull("0".repeat(64)).await;
        assert_eq!(wrong.status.code(), Some(3), "{wrong:?}");
        assert!(!home.join(".sky/bin/sky").exists());
        let right = pull(sha256_file(&served).unwrap()).await;
        assert!(right.status.success(), "{right:?}");
        assert_eq!(std::fs::read(home.join(".sky/bin/sky")).unwrap(), b"binary");
        let left: Vec<_> = std::fs::read_dir(home.join(".sky/bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("sky")]);
        assert_eq!(server.await.unwrap().unwrap().served, 2);
    }
}
