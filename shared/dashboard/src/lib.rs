//! sparkpilot's web dashboard: what the functions decided and why, live.
//!
//! It reads the store the functions write (Redis in a deployment, the in-memory store during an
//! embedded `replay`): the decision log scaling-decision keeps, burst-signal's view of the edge
//! fleet, meta-weights' weights and budget. The page polls [`Snapshot`]s once a second and draws
//! them with uPlot, which is compiled into the binary with the page, so nothing is fetched from the
//! network. Pointed at a results directory it also shows a tournament's table and timeline.
//!
//! Routes: `/` (the page), `/api/snapshot`, `/api/results`, `/results/timeline.svg`, `/assets/*`.
//!
//! ```
//! use dashboard::{Dashboard, Source};
//! use handlers::{Backends, Keys};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let backends = Backends::embedded();
//! let dash = Dashboard::new(Source { title: "example".into(), store: backends.store, keys: Keys::new("sparkpilot"), results: None });
//! let snapshot = dash.snapshot().await;
//! assert!(snapshot.decisions.is_empty() && snapshot.problems.is_empty());
//! # });
//! ```

mod assets;
mod error;
pub mod results;
pub mod snapshot;

pub use error::DashboardError;
pub use results::ResultsTable;
pub use snapshot::{Snapshot, SpendHistory};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use handlers::ports::StateStore;
use handlers::Keys;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the server samples the budget, which the store holds only the newest of.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// Where the dashboard reads from.
#[derive(Clone)]
pub struct Source {
    /// Shown in the page's heading ("replay of step-burst", "redis://…").
    pub title: String,
    pub store: Arc<dyn StateStore>,
    /// The key prefix the functions were deployed with (`SPARKPILOT_KEY_PREFIX`).
    pub keys: Keys,
    /// A tournament's or replay's output directory (`results.csv`, `timeline.svg`).
    pub results: Option<PathBuf>,
}

/// The dashboard: reads snapshots and serves the page.
pub struct Dashboard {
    source: Source,
    spend: Mutex<SpendHistory>,
}

impl Dashboard {
    pub fn new(source: Source) -> Arc<Self> {
        Arc::new(Self { source, spend: Mutex::new(SpendHistory::default()) })
    }

    /// Read the store now. A store that cannot be reached gives an empty snapshot whose
    /// `problems` say why, so the page shows the reason instead of going blank.
    pub async fn snapshot(&self) -> Snapshot {
        let read_at_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let read = snapshot::read(self.source.store.as_ref(), &self.source.keys).await;
        let mut out = Snapshot {
            title: self.source.title.clone(),
            read_at_s,
            decisions: Vec::new(),
            series: snapshot::Series::default(),
            sla: snapshot::SlaSummary::default(),
            waiting: Vec::new(),
            fleet: None,
            weights: None,
            spend: Vec::new(),
            problems: Vec::new(),
        };
        match read {
            Ok(mut r) => {
                if let Some(c) = &r.context {
                    self.spend.lock().unwrap_or_else(|p| p.into_inner()).observe(c);
                }
                out.waiting = snapshot::waiting(r.decisions.first());
                out.sla = snapshot::SlaSummary::of(&r.decisions);
                r.decisions.reverse();
                out.series = snapshot::Series::of(&r.decisions);
                r.decisions.reverse();
                r.decisions.truncate(snapshot::LOG_ROWS);
                out.decisions = r.decisions;
                out.fleet = r.fleet;
                out.weights = r.weights;
                out.problems = r.problems;
            }
            Err(e) => out.problems.push(format!("the store cannot be read: {e}")),
        }
        out.spend = self.spend.lock().unwrap_or_else(|p| p.into_inner()).points();
        out
    }

    /// The results directory's table, when the dashboard was given one.
    pub fn results(&self) -> Option<Result<ResultsTable, DashboardError>> {
        self.source.results.as_deref().map(results::read)
    }

    /// The HTTP routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(|| async { page(assets::INDEX_HTML, "text/html; charset=utf-8") }))
            .route("/assets/app.js", get(|| async { page(assets::APP_JS, "text/javascript; charset=utf-8") }))
            .route("/assets/style.css", get(|| async { page(assets::STYLE_CSS, "text/css; charset=utf-8") }))
            .route(
                "/assets/uPlot.iife.min.js",
                get(|| async { page(assets::UPLOT_JS, "text/javascript; charset=utf-8") }),
            )
            .route(
                "/assets/uPlot.min.css",
                get(|| async { page(assets::UPLOT_CSS, "text/css; charset=utf-8") }),
            )
            .route("/api/snapshot", get(snapshot_route))
            .route("/api/results", get(results_route))
            .route("/results/timeline.svg", get(timeline_route))
            .with_state(self.clone())
    }

    /// Serve on `listener` until `shutdown` completes, sampling the budget meanwhile.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        let sampler = {
            let dash = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    dash.sample_spend().await;
                }
            })
        };
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(DashboardError::Serve);
        sampler.abort();
        served
    }

    async fn sample_spend(&self) {
        let key = self.source.keys.context();
        if let Ok(Some(bytes)) = self.source.store.get(&key).await {
            if let Ok(c) = serde_json::from_slice::<handlers::Context>(&bytes) {
                self.spend.lock().unwrap_or_else(|p| p.into_inner()).observe(&c);
            }
        }
    }
}

/// Bind `addr` ("127.0.0.1:8080"; port 0 picks a free one), naming the address when it fails.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, DashboardError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| DashboardError::Bind { addr: addr.to_string(), error })
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn snapshot_route(State(dash): State<Arc<Dashboard>>) -> Json<Snapshot> {
    Json(dash.snapshot().await)
}

#[derive(serde::Serialize)]
struct ApiError {
    error: String,
}

async fn results_route(State(dash): State<Arc<Dashboard>>) -> Response {
    match dash.results() {
        None => (
            StatusCode::NOT_FOUND,
            Json(ApiError { error: "no results directory was given (--results DIR)".into() }),
        )
            .into_response(),
        Some(Ok(table)) => Json(table).into_response(),
        Some(Err(e)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(ApiError { error: e.to_string() })).into_response()
        }
    }
}

async fn timeline_route(State(dash): State<Arc<Dashboard>>) -> Response {
    let Some(dir) = dash.source.results.as_ref() else {
        return (StatusCode::NOT_FOUND, "no results directory").into_response();
    };
    match tokio::fs::read(dir.join("timeline.svg")).await {
        Ok(svg) => ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-cache")], svg)
            .into_response(),
        Err(e) => {
            (StatusCode::NOT_FOUND, format!("{}: {e}", dir.join("timeline.svg").display())).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handlers::{Backends, KafkaMessage, Settings, SparkMetrics, Trigger};
    use std::io::{Read, Write};

    fn now_s() -> f64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
    }

    /// One decision by the real scaling-decision handler, on `backends`.
    async fn decide(backends: &Backends, settings: &Settings, offset: i64) {
        let metrics = SparkMetrics {
            timestamp: now_s(),
            input_rate: 900.0,
            processing_rate: 850.0,
            batch_duration_ms: 400.0,
            backlog: 2_000.0,
            cpu_utilisation: Some(0.7),
            memory_utilisation: Some(0.5),
            running_executors: Some(4),
            pending_executors: Some(0),
            shuffle_mb_per_s: None,
            bytes_per_event: None,
            agent: None,
        };
        let record = KafkaMessage {
            topic: settings.topics.spark_metrics.as_str().into(),
            partition: 0,
            offset,
            timestamp_ms: (now_s() * 1_000.0) as i64,
            key: None,
            value: Some(Ok(serde_json::to_vec(&metrics).unwrap())),
        };
        let handler = handlers::build("scaling-decision", settings, backends).unwrap();
        handler.handle(Trigger::Kafka(vec![record])).await.unwrap();
    }

    fn dashboard(backends: &Backends, results: Option<PathBuf>) -> Arc<Dashboard> {
        Dashboard::new(Source {
            title: "test".into(),
            store: backends.store.clone(),
            keys: Keys::new(&Settings::default().key_prefix),
            results,
        })
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_handlers_decisions_as_log_and_columns() {
        let backends = Backends::embedded();
        let settings = Settings::default();
        decide(&backends, &settings, 1).await;
        decide(&backends, &settings, 2).await;
        let s = dashboard(&backends, None).snapshot().await;
        assert_eq!(s.problems, Vec::<String>::new());
        assert_eq!(s.decisions.len(), 2);
        assert_eq!(s.sla.decisions, 2);
        // The log is newest first, the columns oldest first.
        assert!(s.decisions[0].time_s >= s.decisions[1].time_s);
        assert_eq!(s.series.time_s, [s.decisions[1].time_s, s.decisions[0].time_s]);
        assert_eq!(s.series.requested[1], s.decisions[0].applied.executors);
        assert_eq!(s.series.input_rate, [900.0, 900.0]);
        assert_eq!(s.series.tier.len(), 2);
    }

    #[tokio::test]
    async fn an_unreadable_record_is_named_and_the_rest_is_shown() {
        let backends = Backends::embedded();
        let settings = Settings::default();
        decide(&backends, &settings, 1).await;
        let keys = Keys::new(&settings.key_prefix);
        backends.store.push_capped(&keys.decisions(), &[b"{not json".to_vec()], 1_000).await.unwrap();
        backends.store.set_many(&[(keys.cluster(), b"[]".to_vec())], None).await.unwrap();
        let s = dashboard(&backends, None).snapshot().await;
        assert_eq!(s.decisions.len(), 1);
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert!(
            s.problems[0].contains(&keys.decisions()) && s.problems[1].contains(&keys.cluster()),
            "{:?}",
            s.problems
        );
        assert!(s.fleet.is_none());
    }

    #[test]
    fn spend_history_keeps_one_point_per_reading_and_starts_over_when_time_goes_back() {
        let mut h = SpendHistory::default();
        let ctx = |t: f64, left: f64| handlers::Context {
            scenario: control::Scenario::Balanced,
            budget_usd: 10.0,
            budget_remaining: left,
            horizon_s: 3_600.0,
            time_s: t,
        };
        h.observe(&ctx(1.0, 10.0));
        h.observe(&ctx(1.0, 10.0));
        h.observe(&ctx(2.0, 9.0));
        h.observe(&ctx(3.0, f64::NAN));
        assert_eq!(h.points().iter().map(|p| p.budget_remaining).collect::<Vec<_>>(), [10.0, 9.0]);
        h.observe(&ctx(0.5, 10.0));
        assert_eq!(h.points().len(), 1);
        for i in 0..snapshot::SPEND_HISTORY + 10 {
            h.observe(&ctx(10.0 + i as f64, 5.0));
        }
        assert_eq!(h.points().len(), snapshot::SPEND_HISTORY);
    }

    fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_the_page_its_assets_the_snapshot_and_the_results() {
        let dir = std::env::temp_dir().join(format!("dashboard-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("results.csv"), "policy,cost_usd\nreplay,1.25\n").unwrap();
        std::fs::write(dir.join("timeline.svg"), "<svg xmlns=\"http://www.w3.org/2000/svg\"/>").unwrap();
        let backends = Backends::embedded();
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(dashboard(&backends, Some(dir.clone())).serve(listener, async move {
            let _ = stopped.await;
        }));
        let answers = tokio::task::spawn_blocking(move || {
            [
                "/",
                "/assets/app.js",
                "/assets/uPlot.iife.min.js",
                "/api/snapshot",
                "/api/results",
                "/results/timeline.svg",
                "/nowhere",
            ]
            .map(|p| get(addr, p))
        })
        .await
        .unwrap();
        let ok = |i: usize| answers[i].0.starts_with("HTTP/1.1 200");
        assert!(ok(0) && answers[0].1.contains("uPlot.iife.min.js") && answers[0].0.contains("text/html"));
        assert!(ok(1) && answers[1].1.contains("/api/snapshot"));
        assert!(ok(2) && answers[2].1.contains("uPlot"));
        assert!(ok(3));
        let snap: serde_json::Value = serde_json::from_str(&answers[3].1).unwrap();
        assert_eq!(snap["decisions"], serde_json::json!([]));
        assert!(ok(4));
        let table: serde_json::Value = serde_json::from_str(&answers[4].1).unwrap();
        assert_eq!(table["rows"], serde_json::json!([["replay", "1.25"]]));
        assert_eq!(table["timeline"], true);
        assert!(ok(5) && answers[5].0.contains("image/svg+xml"));
        assert!(answers[6].0.starts_with("HTTP/1.1 404"));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
