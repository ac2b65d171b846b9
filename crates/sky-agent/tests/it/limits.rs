//! Nobody without the token can make an agent look dead: idle, slow and garbage-sending
//! connections are cut off, and requests over the line limit get an error that says so.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use sky_agent::protocol::{MAX_LINE_BYTES, PREAMBLE_MAX_BYTES, PROTOCOL_VERSION};
use sky_agent::{AgentError, JobStatus};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::{TestCluster, WAIT, eventually, exchange, run, token_line};

/// `n` connections that never send anything (non-blocking std streams, to poll).
async fn open_idle(addr: SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpStream::connect(addr).await.unwrap();
        out.push(s.into_std().unwrap());
    }
    out
}

/// Whether the agent has closed its end (after reading whatever it sent first).
fn closed_by_agent(s: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn count_closed(streams: &mut [std::net::TcpStream]) -> usize {
    streams
        .iter_mut()
        .map(closed_by_agent)
        .filter(|&c| c)
        .count()
}

#[tokio::test]
async fn idle_connections_beyond_the_cap_are_closed_and_a_client_with_the_token_gets_through() {
    let c = TestCluster::start_with(1, None, |cfg| {
        cfg.max_pending_connections = 8;
        cfg.preamble_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut idle = open_idle(c.head.addr(), 40).await;
    eventually(
        "the agent closes the idle connections beyond its cap",
        || count_closed(&mut idle) >= 32,
    )
    .await;
    // Eight idle connections are still held (the deadline is an hour away), yet a client that
    // sends its token at once is answered.
    assert_eq!(c.head.ping().await.unwrap().version, PROTOCOL_VERSION);
    let id = c.submit(run("echo hi")).await;
    assert_eq!(c.wait_end(id).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn silent_and_slow_clients_are_cut_off_at_the_deadline() {
    let c = TestCluster::start_with(1, None, |cfg| {
        cfg.max_pending_connections = 8;
        cfg.preamble_timeout = Duration::from_millis(300);
    })
    .await;
    let mut idle = open_idle(c.head.addr(), 20).await;
    // A client dribbling a token line, one byte every 20 ms (never more than the token line
    // limit, so only the deadline can stop it).
    let addr = c.head.addr();
    let slow = tokio::spawn(async move {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, mut w) = s.into_split();
        let mut sent = w.write_all(b"{\"token\":\"").await.map(|()| 10);
        let read = async move {
            let mut reply = String::new();
            let _ = BufReader::new(r).read_line(&mut reply).await;
            reply
        };
        tokio::pin!(read);
        loop {
            tokio::select! {
                reply = &mut read => return (reply, sent),
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if let Ok(n) = sent && n < PREAMBLE_MAX_BYTES - 10 {
                        sent = w.write_all(b"a").await.map(|()| n + 1);
                    }
                }
            }
        }
    });
    let (reply, sent) = tokio::time::timeout(WAIT, slow)
        .await
        .expect("the slow client is cut off")
        .unwrap();
    assert!(
        reply.contains("no complete token line within 300ms"),
        "after {sent:?} bytes: {reply}"
    );
    eventually("the agent closes every idle connection", || {
        count_closed(&mut idle) == idle.len()
    })
    .await;
    assert_eq!(c.head.ping().await.unwrap().version, PROTOCOL_VERSION);
}

#[tokio::test]
async fn garbage_before_the_token_is_cut_off_after_the_token_line_limit() {
    let c = TestCluster::start(1).await;
    let s = TcpStream::connect(c.head.addr()).await.unwrap();
    let (r, mut w) = s.into_split();
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0usize;
    let failed = loop {
        if w.write_all(&chunk).await.is_err() {
            break true;
        }
        written += chunk.len();
        if written as u64 >= 2 * MAX_LINE_BYTES {
            break false;
        }
    };
    // The agent closed after reading its token line limit; what the writer got in before that
    // sat in the socket buffers (a few hundred KiB on loopback), far from the 16 MiB line limit.
    assert!(failed, "the agent took {written} bytes of garbage");
    assert!(
        (written as u64) < MAX_LINE_BYTES / 2,
        "the agent took {written} bytes of garbage before closing"
    );
    let mut reply = String::new();
    let _ = BufReader::new(r).read_line(&mut reply).await;
    assert!(reply.is_empty() || reply.contains("token line"), "{reply}");
    c.head.ping().await.unwrap();
}

#[tokio::test]
async fn a_request_line_over_the_limit_gets_an_error_naming_the_limit() {
    let c = TestCluster::start(1).await;
    let s = TcpStream::connect(c.head.addr()).await.unwrap();
    let (r, mut w) = s.into_split();
    let first = token_line(&c.token);
    let writer = tokio::spawn(async move {
        w.write_all(first.as_bytes()).await.unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..=(MAX_LINE_BYTES >> 20) {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        w
    });
    let mut reply = String::new();
    tokio::time::timeout(WAIT, BufReader::new(r).read_line(&mut reply))
        .await
        .expect("a reply")
        .unwrap();
    assert!(
        reply.starts_with(r#"{"kind":"error","message":"request too large"#)
            && reply.contains("16 MiB"),
        "{reply}"
    );
    drop(writer.await.unwrap());
    c.head.ping().await.unwrap();
}

#[tokio::test]
async fn a_job_spec_over_the_limit_is_refused_before_sending_with_the_fix() {
    let c = TestCluster::start(1).await;
    let script = format!("echo {}", "x".repeat(20_000_000));
    let err = c.head.submit(&run(&script)).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, AgentError::RequestTooLarge { op: "submit", .. }),
        "{msg}"
    );
    for part in [
        "job spec",
        "20.0 MB",
        "limit of 16 MiB",
        "put the script in a file in the workdir",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert!(c.head.queue(true).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_protocol_2_request_with_the_right_token_is_told_the_versions() {
    let c = TestCluster::start(1).await;
    let v2 = format!("{{\"token\":\"{}\",\"op\":\"ping\"}}\n", c.token.expose());
    let reply = exchange(c.head.addr(), v2.as_bytes()).await;
    assert!(
        reply.contains("error") && reply.contains("protocol 3") && reply.contains("protocol-2"),
        "{reply}"
    );
}
