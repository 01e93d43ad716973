//! An HTTP/1.1 proxy in front of an S3 emulator that answers a stated share of requests with S3's
//! own failures: `500 InternalError` and `503 SlowDown` (throttling) without forwarding, and `500`
//! after forwarding, when the request did reach the store (a lost reply: the write landed, the
//! client thinks it failed). The shuffle-router's fault-injection tests put it between the S3
//! client and moto.
//!
//! Which requests fail is decided by a low-discrepancy sequence over the requests seen, so a share
//! of 0.25 fails one in four whatever the timing, and the three kinds take turns. Requests pass
//! through byte for byte (bodies by `Content-Length` or chunked), responses likewise; one upstream
//! connection per client connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy injects.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultPlan {
    /// Share of requests that fail, 0..=1.
    pub share: f64,
    /// Let the failing request reach the store first on every third fault (a lost reply).
    pub lost_replies: bool,
}

/// Counts of what went through.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub requests: AtomicU64,
    pub internal_errors: AtomicU64,
    pub slow_downs: AtomicU64,
    /// Forwarded, then answered 500.
    pub lost_replies: AtomicU64,
}

impl FaultStats {
    pub fn injected(&self) -> u64 {
        self.internal_errors.load(Ordering::Relaxed)
            + self.slow_downs.load(Ordering::Relaxed)
            + self.lost_replies.load(Ordering::Relaxed)
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    plan: Arc<Mutex<FaultPlan>>,
    pub stats: Arc<FaultStats>,
    task: tokio::task::JoinHandle<()>,
}

enum Fault {
    Internal,
    SlowDown,
    LostReply,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `target` (host:port).
    pub async fn start(target: SocketAddr, plan: FaultPlan) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let plan = Arc::new(Mutex::new(plan));
        let stats = Arc::new(FaultStats::default());
        let (p, s) = (plan.clone(), stats.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (p, s) = (p.clone(), s.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(client, target, p, s).await {
                        if e.kind() != std::io::ErrorKind::UnexpectedEof {
                            eprintln!("fault proxy: {e}");
                        }
                    }
                });
            }
        });
        Ok(Self { addr, plan, stats, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`, for an SDK's endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, plan: FaultPlan) {
        *self.plan.lock().unwrap() = plan;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fault for request number `n`, if any.
fn fault_for(n: u64, plan: FaultPlan) -> Option<Fault> {
    let x = (n as f64 * 0.618_033_988_749_895).fract();
    if x >= plan.share {
        return None;
    }
    Some(match n % 3 {
        0 => Fault::SlowDown,
        1 => Fault::Internal,
        _ if plan.lost_replies => Fault::LostReply,
        _ => Fault::Internal,
    })
}

/// One HTTP message: its head (with the final CRLFCRLF) and body, as raw bytes.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    })
}

async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
            return Ok(Some(head));
        }
        if head.len() > 1 << 20 {
            return Err(std::io::Error::other("header too long"));
        }
    }
}

/// The body after `head`, kept raw (chunk framing included) so it can be passed on verbatim. A
/// response with neither length nor chunks runs to the end of the connection (`to_eof`).
async fn read_body<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    head: &str,
    no_body: bool,
    to_eof: bool,
) -> std::io::Result<Vec<u8>> {
    if no_body {
        return Ok(Vec::new());
    }
    let chunked =
        header(head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut raw = Vec::new();
        loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line).await?;
            raw.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(text.trim().split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {text:?}")))?;
            if size == 0 {
                // Trailers, up to an empty line.
                loop {
                    let mut t = Vec::new();
                    if r.read_until(b'\n', &mut t).await? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    raw.extend_from_slice(&t);
                    if t == b"\r\n" {
                        return Ok(raw);
                    }
                }
            }
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).await?;
            raw.extend_from_slice(&chunk);
        }
    }
    let Some(len) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) else {
        let mut body = Vec::new();
        if to_eof {
            r.read_to_end(&mut body).await?;
        }
        return Ok(body);
    };
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

async fn read_message<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    no_body: impl Fn(&str) -> bool,
) -> std::io::Result<Option<Message>> {
    let Some(head) = read_head(r).await? else { return Ok(None) };
    let text = String::from_utf8_lossy(&head).to_string();
    let body = read_body(r, &text, no_body(&text), true).await?;
    Ok(Some(Message { head, body }))
}

fn s3_error(status: u16, reason: &str, code: &str, message: &str, head_request: bool) -> Vec<u8> {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>");
    let body = if head_request { String::new() } else { body };
    format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: fault-proxy\r\n\r\n{body}", body.len()).into_bytes()
}

async fn serve(
    client: TcpStream,
    target: SocketAddr,
    plan: Arc<Mutex<FaultPlan>>,
    stats: Arc<FaultStats>,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let (cr, mut cw) = client.into_split();
    let mut cr = BufReader::new(cr);
    let mut upstream: Option<(BufReader<tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf)> =
        None;
    loop {
        let Some(head) = read_head(&mut cr).await? else { return Ok(()) };
        let text = String::from_utf8_lossy(&head).to_string();
        let method = text.split_whitespace().next().unwrap_or("").to_string();
        // Answer `Expect: 100-continue` here and pass the request on without it.
        let mut head = head;
        if header(&text, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            cw.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            let kept: String = text
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("expect:"))
                .collect::<Vec<_>>()
                .join("\r\n");
            head = kept.into_bytes();
        }
        let body = read_body(&mut cr, &text, false, false).await?;
        let n = stats.requests.fetch_add(1, Ordering::Relaxed);
        let fault = fault_for(n, *plan.lock().unwrap());
        let is_head = method == "HEAD";
        match fault {
            Some(Fault::SlowDown) => {
                stats.slow_downs.fetch_add(1, Ordering::Relaxed);
                cw.write_all(&s3_error(
                    503,
                    "Slow Down",
                    "SlowDown",
                    "Please reduce your request rate.",
                    is_head,
                ))
                .await?;
                continue;
            }
            Some(Fault::Internal) => {
                stats.internal_errors.fetch_add(1, Ordering::Relaxed);
                cw.write_all(&s3_error(
                    500,
                    "Internal Server Error",
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    is_head,
                ))
                .await?;
                continue;
            }
            _ => {}
        }
        if upstream.is_none() {
            let s = TcpStream::connect(target).await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            upstream = Some((BufReader::new(r), w));
        }
        let (ur, uw) = upstream.as_mut().expect("connected above");
        uw.write_all(&head).await?;
        uw.write_all(&body).await?;
        let response = read_message(ur, |h| {
            let status: u16 = h.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            is_head || status == 204 || status == 304 || (100..200).contains(&status)
        })
        .await?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        let rhead = String::from_utf8_lossy(&response.head).to_string();
        let connection = header(&rhead, "connection").map(str::to_ascii_lowercase);
        let close = connection.as_deref() == Some("close")
            || (rhead.starts_with("HTTP/1.0") && connection.as_deref() != Some("keep-alive"))
            || (header(&rhead, "content-length").is_none()
                && header(&rhead, "transfer-encoding").is_none()
                && !is_head);
        if close {
            upstream = None;
        }
        if let Some(Fault::LostReply) = fault {
            stats.lost_replies.fetch_add(1, Ordering::Relaxed);
            cw.write_all(&s3_error(
                500,
                "Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
                is_head,
            ))
            .await?;
            continue;
        }
        cw.write_all(&response.head).await?;
        cw.write_all(&response.body).await?;
        if close {
            return Ok(());
        }
    }
}
