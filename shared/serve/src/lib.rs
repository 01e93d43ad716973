//! Runs a sparkpilot handler on either platform.
//!
//! Inside AWS Lambda (`AWS_LAMBDA_RUNTIME_API` is set) the handler is served by `lambda_runtime`;
//! the payload (MSK or self-managed Kafka batch, EventBridge schedule, direct invoke) is decoded
//! with [`handlers::decode_lambda`]. Anywhere else it listens for HTTP on `SPARKPILOT_HTTP_ADDR`
//! (default `127.0.0.1:8082`, the of-watchdog's default `upstream_url` in http mode): each POST is
//! one invocation, decoded with [`handlers::decode_http`] (kafka-connector and cron-connector
//! requests, or a JSON event), and `GET /_/health` answers when the function is ready.

use handlers::{Handler, HandlerError};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use tokio::net::TcpListener;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Every function binary links this crate, so this is their allocator. An invocation builds and
/// drops megabytes at a time (a 10,000-record Kafka batch, a 10 MB shuffle pipeline); glibc hands
/// such blocks back to the kernel and takes page faults to get them again on the next invocation,
/// while mimalloc keeps them. In back-to-back runs of `cargo bench --workspace --bench
/// redis_pipeline`, 64 × 64 KB blocks pipelined to a loopback redis-server took 2.4 ms against
/// 5.0 ms with the system allocator. The function benchmarks declare the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// JSON log lines to stderr (CloudWatch and the OpenFaaS gateway both collect them), filtered by
/// `RUST_LOG`: a level (`warn`) and/or `target=level` pairs (`info,handlers=debug`); default info.
/// The filter is tracing-subscriber's `Targets`, not `EnvFilter`: it takes no span or field
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO));
    let json = tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_current_span(false);
    let _ = tracing_subscriber::registry().with(json).with(filter).try_init();
}

/// A function binary's whole `main`: tracing, settings, backends and handler built once, then
/// served. Errors at init name what was wrong (a missing variable, an unreachable Redis). The
/// function is a type, so the binary links its handler and the clients of its ports only.
pub async fn start<F: handlers::Function>() -> Result<(), Error> {
    init_tracing();
    let settings = handlers::Settings::from_env()?;
    let backends = adapters::connect_ports(F::NAME, F::PORTS, |k| std::env::var(k).ok()).await?;
    let handler: Arc<dyn Handler> = Arc::new(F::init(&settings, &backends)?);
    run(handler).await
}

/// Serve `handler` until the process is stopped. With `SPARKPILOT_EXIT_AFTER_INIT=1` it returns as
/// soon as it is ready (used to measure init time).
pub async fn run(handler: Arc<dyn Handler>) -> Result<(), Error> {
    if std::env::var("SPARKPILOT_EXIT_AFTER_INIT").is_ok_and(|v| v == "1") {
        tracing::info!(function = handler.name(), "ready");
        return Ok(());
    }
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return run_lambda(handler).await;
    }
    let addr = std::env::var("SPARKPILOT_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8082".into());
    let listener = TcpListener::bind(&addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(function = handler.name(), addr = %listener.local_addr()?, "ready (HTTP, of-watchdog upstream)");
    serve_http(listener, handler).await
}

async fn run_lambda(handler: Arc<dyn Handler>) -> Result<(), Error> {
    tracing::info!(function = handler.name(), "ready (Lambda)");
    // The payload stays raw JSON until the handler's decoder reads it: a Kafka batch is decoded
    // once, borrowing from the bytes, instead of through a generic JSON tree.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<serde_json::value::RawValue>>| {
        let handler = handler.clone();
        async move {
            let result = match handlers::decode_lambda_bytes(event.payload.get().as_bytes()) {
                Ok(trigger) => handler.handle(trigger).await,
                Err(e) => Err(e),
            };
            result.map_err(|e| {
                tracing::error!(error = %e, "invocation failed");
                diagnostic(&e)
            })
        }
    }))
    .await
}

/// Lambda's error object. The type tells an operator (and a retry policy) what kind of failure it
/// was: a bad event will fail the same way again, a backend failure may not.
fn diagnostic(e: &HandlerError) -> lambda_runtime::Diagnostic {
    let kind = match e {
        HandlerError::BadEvent(_) | HandlerError::BadRequest(_) => "NonRetryable.BadInput",
        HandlerError::Config(_) | HandlerError::Policy(_) | HandlerError::Control(_) => {
            "NonRetryable.Configuration"
        }
        HandlerError::State(_) => "NonRetryable.State",
        HandlerError::Port(_) => "Retryable.Backend",
        HandlerError::Busy(_) => "Retryable.Busy",
    };
    lambda_runtime::Diagnostic { error_type: kind.to_string(), error_message: e.to_string() }
}

/// Serve HTTP on `listener` (one connection per task) until the process ends.
pub async fn serve_http(listener: TcpListener, handler: Arc<dyn Handler>) -> Result<(), Error> {
    loop {
        let (stream, _) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| respond(handler.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// Largest request body accepted (a shuffle manifest batch with payloads), bytes.
const MAX_BODY: u64 = 64 * 1024 * 1024;

async fn respond(
    handler: Arc<dyn Handler>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.method() == Method::GET && (req.uri().path() == "/_/health" || req.uri().path() == "/health") {
        return Ok(json_response(
            StatusCode::OK,
            serde_json::json!({"function": handler.name(), "status": "ready"}),
        ));
    }
    if req.method() != Method::POST {
        return Ok(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "POST an event, or GET /_/health"}),
        ));
    }
    let too_big = hyper::body::Body::size_hint(req.body()).lower() > MAX_BODY;
    if too_big {
        return Ok(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!({"error": format!("body above {MAX_BODY} bytes")}),
        ));
    }
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY as usize).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!("reading body: {e}")}),
            ))
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let result = match handlers::decode_http(header, &body, handlers::events::now_s()) {
        Ok(trigger) => handler.handle(trigger).await,
        Err(e) => Err(e),
    };
    Ok(match result {
        Ok(outcome) => json_response(StatusCode::OK, outcome.to_json()),
        Err(e) => {
            let status = match e {
                HandlerError::BadEvent(_) | HandlerError::BadRequest(_) => StatusCode::BAD_REQUEST,
                HandlerError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::error!(error = %e, "invocation failed");
            json_response(status, serde_json::json!({"error": e.to_string()}))
        }
    })
}
