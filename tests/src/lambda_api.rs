//! A minimal Lambda Runtime API (the `2018-06-01/runtime` endpoints a function polls), so tests and
//! benchmarks run a function binary as Lambda would, without Lambda: how long it takes to ask for
//! its first event (init), and what it answers to one.

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What one invocation gave.
#[derive(Debug)]
pub struct Invocation {
    /// `response` or `error`, the endpoint the function posted to.
    pub kind: String,
    pub body: Value,
    /// From the process's start to its first `GET .../invocation/next`: its init.
    pub ready_after: Duration,
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut h = String::new();
        stream.read_line(&mut h).await.ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((method, path, body))
}

/// Start `cmd` (a function binary, its environment set by the caller) as Lambda would, hand it
/// `payload` as its one event, and return what it posted back. Panics if it does not answer within
/// `limit`. Every connection is served on its own task: the runtime client keeps a pool, and may
/// post the response on a second connection while the first sits idle, kept alive.
pub async fn invoke(
    mut cmd: tokio::process::Command,
    function_name: &str,
    payload: &Value,
    limit: Duration,
) -> Invocation {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let _child = cmd.spawn().expect("spawn function");
    let body = Arc::new(payload.to_string());
    let served = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Value)>(1);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Duration>(1);
    let function_name = function_name.to_string();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (body, served, tx, ready_tx, function_name) =
                (body.clone(), served.clone(), tx.clone(), ready_tx.clone(), function_name.clone());
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                while let Some((method, path, req_body)) = read_request(&mut stream).await {
                    if method == "GET" && path.ends_with("/runtime/invocation/next") {
                        if served.swap(true, Ordering::SeqCst) {
                            // Hold the next poll open: one invocation is all this wants.
                            tokio::time::sleep(Duration::from_secs(600)).await;
                            return;
                        }
                        let _ = ready_tx.send(started.elapsed()).await;
                        let deadline_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_millis()
                            + 60_000;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: req-1\r\nlambda-runtime-deadline-ms: {deadline_ms}\r\nlambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:{function_name}\r\nlambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.get_mut().write_all(head.as_bytes()).await;
                        let _ = stream.get_mut().write_all(body.as_bytes()).await;
                    } else if method == "POST" && (path.ends_with("/response") || path.ends_with("/error")) {
                        let _ = stream
                            .get_mut()
                            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        let kind = if path.ends_with("/response") { "response" } else { "error" };
                        let _ = tx
                            .send((kind.into(), serde_json::from_slice(&req_body).unwrap_or(Value::Null)))
                            .await;
                    } else {
                        let _ = stream
                            .get_mut()
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    let (kind, body) = tokio::time::timeout(limit, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("the function answered through the runtime API within {limit:?}"))
        .expect("runtime API server stopped");
    server.abort();
    let ready_after = ready_rx.try_recv().expect("the function asked for its event before answering it");
    Invocation { kind, body, ready_after }
}
