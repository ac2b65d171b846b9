//! A fault-injecting HTTP/1.1 proxy in front of moto. It answers chosen EC2 requests with
//! AWS-shaped XML errors (matched by action, region from the SigV4 credential scope, and zone
//! from the form body's `Placement.AvailabilityZone`) and forwards everything else unchanged.
//! Every request is recorded so tests can check the order of attempts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One injected fault.
#[derive(Clone, Debug)]
pub struct Fault {
    pub action: &'static str,
    /// `None` = any region.
    pub region: Option<String>,
    /// Zone name (`us-east-1a`); `None` = any zone.
    pub zone: Option<String>,
    pub code: &'static str,
    pub status: u16,
}

impl Fault {
    pub fn run_instances(region: Option<&str>, zone: Option<&str>, code: &'static str) -> Fault {
        let status = match code {
            "RequestLimitExceeded" | "Unavailable" => 503,
            "AuthFailure" => 401,
            "UnauthorizedOperation" => 403,
            "InsufficientInstanceCapacity" => 500,
            _ => 400,
        };
        Fault {
            action: "RunInstances",
            region: region.map(str::to_string),
            zone: zone.map(str::to_string),
            code,
            status,
        }
    }
}

/// One request seen by the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub action: String,
    pub region: String,
    pub zone: Option<String>,
    /// The code of the injected error, `None` when forwarded.
    pub injected: Option<String>,
}

/// Called with (action, form body, upstream response) after a forwarded request is answered
/// upstream and before the answer goes back to the client, so a test can make the EC2 calls
/// act on emulated machines at the moment the API reports them done.
pub type Hook = Arc<dyn Fn(&str, &str, &[u8]) + Send + Sync>;

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    seen: Vec<Seen>,
    hook: Option<Hook>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("faults", &self.faults)
            .field("seen", &self.seen)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

/// A running proxy (stops with the test's runtime).
#[derive(Clone, Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr, faults: Vec<Fault>) -> Proxy {
        Self::start_with_hook(upstream, faults, None).await
    }

    pub async fn start_with_hook(
        upstream: SocketAddr,
        faults: Vec<Fault>,
        hook: Option<Hook>,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            faults,
            seen: Vec::new(),
            hook,
        }));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, upstream, st).await;
                });
            }
        });
        Proxy { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The RunInstances requests, in order.
    pub fn run_attempts(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.action == "RunInstances")
            .collect()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(h, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// Region from `Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/ec2/aws4_request`.
fn region_of(headers: &str) -> String {
    headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .and_then(|l| l.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("")
        .to_string()
}

async fn serve(
    mut conn: TcpStream,
    upstream: SocketAddr,
    st: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    // One request per connection: read headers and the Content-Length body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let headers = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let action = form_value(&body, "Action").unwrap_or_default();
    let region = region_of(&headers);
    let zone = form_value(&body, "Placement.AvailabilityZone");
    let fault = {
        let mut s = st.lock().unwrap();
        let f = s
            .faults
            .iter()
            .find(|f| {
                f.action == action
                    && f.region.as_ref().is_none_or(|r| *r == region)
                    && f.zone.as_ref().is_none_or(|z| Some(z) == zone.as_ref())
            })
            .cloned();
        s.seen.push(Seen {
            action: action.clone(),
            region: region.clone(),
            zone: zone.clone(),
            injected: f.as_ref().map(|f| f.code.to_string()),
        });
        f
    };
    if let Some(f) = fault {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>injected by the test proxy: {} in {} {}</Message></Error></Errors><RequestID>00000000-0000-4000-8000-000000000000</RequestID></Response>",
            f.code,
            f.code,
            region,
            zone.as_deref().unwrap_or("")
        );
        let reason = match f.status {
            401 => "Unauthorized",
            403 => "Forbidden",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Bad Request",
        };
        let resp = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            f.status,
            xml.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        conn.shutdown().await?;
        return Ok(());
    }
    // Forward with `Connection: close` so the upstream ends the response with EOF.
    let mut fwd = String::new();
    for l in headers.trim_end().lines() {
        if l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        fwd.push_str(l);
        fwd.push_str("\r\n");
    }
    fwd.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(fwd.as_bytes()).await?;
    up.write_all(&buf[head_end..]).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    let hook = st.lock().unwrap().hook.clone();
    if let Some(hook) = hook {
        hook(&action, &body, &resp);
    }
    conn.write_all(&resp).await?;
    conn.shutdown().await?;
    Ok(())
}
