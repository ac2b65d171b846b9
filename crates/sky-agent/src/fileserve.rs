//! A short-lived, token-protected server of one file (`sky agent serve-file`): the head serves
//! the `sky` binary it just verified to the cluster's workers over the cluster's own network, so
//! the client sends it once. A client connects, sends the token and a newline, and reads the
//! file to EOF; a wrong token gets the connection closed with nothing sent. The server writes
//! its address to a file once it listens (so the launcher can find its port) and exits after
//! serving the file `count` times or when `timeout` passes, whichever is first. Workers pull
//! with bash's `/dev/tcp` (no curl or python on nodes) and check the SHA-256 themselves.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::{AgentError, Token};

/// How long a client has to send its token line.
const TOKEN_DEADLINE: Duration = Duration::from_secs(10);
/// The longest token line read.
const TOKEN_LINE_MAX: u64 = 512;
/// Connections handled at once; one more is closed at once (a flood cannot hold the head's
/// memory or sockets while the workers wait).
const MAX_CONNECTIONS: usize = 64;

/// What [`serve_file`] serves, where and for how long.
#[derive(Clone, Debug)]
pub struct ServeFile {
    /// The file served.
    pub file: PathBuf,
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    pub token: Token,
    /// Exit after serving the whole file this many times.
    pub count: u32,
    /// Exit after this long in any case.
    pub timeout: Duration,
    /// Written (atomically) with `ip:port` once the server listens.
    pub addr_file: PathBuf,
}

/// What a finished server did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeReport {
    /// Clients sent the whole file.
    pub served: u32,
    /// Connections refused for a wrong or missing token.
    pub refused: u32,
    /// Whether it stopped at the timeout before serving `count` times.
    pub timed_out: bool,
}

/// Serves `opts.file` until it has been sent `opts.count` times or `opts.timeout` passes.
/// Logs one line per connection to stderr (`served <peer>`, `refused <peer>: ...`).
pub async fn serve_file(opts: ServeFile) -> Result<ServeReport, AgentError> {
    let io = |context: String| move |source| AgentError::Io { context, source };
    let meta = std::fs::metadata(&opts.file)
        .map_err(io(format!("serve-file: read {}", opts.file.display())))?;
    if !meta.is_file() {
        return Err(AgentError::Config(format!(
            "serve-file: {} is not a file",
            opts.file.display()
        )));
    }
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(io(format!("serve-file: listen on {}", opts.listen)))?;
    let local = listener
        .local_addr()
        .map_err(io("serve-file: local address".into()))?;
    write_atomic(&opts.addr_file, format!("{local}\n").as_bytes()).map_err(io(format!(
        "serve-file: write {}",
        opts.addr_file.display()
    )))?;
    let token = Arc::new(opts.token.clone());
    let file = Arc::new(opts.file.clone());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let mut report = ServeReport {
        served: 0,
        refused: 0,
        timed_out: false,
    };
    let deadline = tokio::time::sleep(opts.timeout);
    tokio::pin!(deadline);
    let mut tasks = tokio::task::JoinSet::new();
    while report.served < opts.count {
        tokio::select! {
            _ = &mut deadline => {
                report.timed_out = true;
                break;
            }
            Some(ok) = done_rx.recv() => {
                if ok { report.served += 1 } else { report.refused += 1 }
            }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                while tasks.try_join_next().is_some() {}
                if tasks.len() >= MAX_CONNECTIONS {
                    eprintln!("refused {peer}: {MAX_CONNECTIONS} connections already open");
                    report.refused += 1;
                    drop(stream);
                    continue;
                }
                let (token, file, done) = (token.clone(), file.clone(), done_tx.clone());
                tasks.spawn(async move {
                    let ok = match serve_one(stream, &token, &file).await {
                        Ok(()) => {
                            eprintln!("served {peer}");
                            true
                        }
                        Err(e) => {
                            eprintln!("refused {peer}: {e}");
                            false
                        }
                    };
                    let _ = done.send(ok);
                });
            }
        }
    }
    tasks.abort_all();
    eprintln!(
        "serve-file: served {} of {}, refused {}{}",
        report.served,
        opts.count,
        report.refused,
        if report.timed_out { ", timed out" } else { "" }
    );
    Ok(report)
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    token: &Token,
    file: &std::path::Path,
) -> Result<(), String> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, TOKEN_LINE_MAX));
    match tokio::time::timeout(TOKEN_DEADLINE, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("read the token: {e}")),
        Err(_) => return Err("no token in time".into()),
    }
    if !token.matches(line.trim_end_matches(['\r', '\n'])) {
        return Err("wrong token".into());
    }
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("open {}: {e}", file.display()))?;
    tokio::io::copy(&mut f, &mut write)
        .await
        .map_err(|e| format!("send {}: {e}", file.display()))?;
    write.shutdown().await.map_err(|e| format!("close: {e}"))?;
    Ok(())
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The listen address for `ip` (any free port).
pub fn listen_on(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn fetch(addr: SocketAddr, token: &str) -> Vec<u8> {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{token}\n").as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_file_count_times_to_token_holders_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("blob");
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &body).unwrap();
        let token = Token::generate().unwrap();
        let addr_file = dir.path().join("addr");
        let server = tokio::spawn(serve_file(ServeFile {
            file,
            listen: listen_on("127.0.0.1".parse().unwrap()),
            token: token.clone(),
            count: 2,
            timeout: Duration::from_secs(60),
            addr_file: addr_file.clone(),
        }));
        let addr: SocketAddr = loop {
            if let Ok(t) = std::fs::read_to_string(&addr_file)
                && let Ok(a) = t.trim().parse()
            {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(fetch(addr, "not-the-token").await.is_empty());
        assert_eq!(fetch(addr, token.expose()).await, body);
        assert_eq!(fetch(addr, token.expose()).await, body);
        let report = server.await.unwrap().unwrap();
        assert_eq!(
            report,
            ServeReport {
                served: 2,
                refused: 1,
                timed_out: false
            }
        );
        // It exited: nothing listens there any more.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn stops_at_the_timeout_and_refuses_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("blob");
        std::fs::write(&file, b"x").unwrap();
        let opts = ServeFile {
            file: file.clone(),
            listen: listen_on("127.0.0.1".parse().unwrap()),
            token: Token::generate().unwrap(),
            count: 3,
            timeout: Duration::from_millis(50),
            addr_file: dir.path().join("addr"),
        };
        let report = serve_file(opts.clone()).await.unwrap();
        assert!(report.timed_out && report.served == 0, "{report:?}");
        let missing = ServeFile {
            file: dir.path().join("nope"),
            ..opts
        };
        let e = serve_file(missing).await.unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
