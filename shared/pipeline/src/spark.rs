//! A trace played against the real Spark job, beside the arena's account of the same trace.
//!
//! The example job (`spark/iot_job.py`, with the in-job agent) is submitted to the local cluster
//! (`infra/spark start`). Every second of the trace, the edge gateway simulator's control messages
//! go to `iot-metadata` and the second's events (scaled to what the local machine can carry) to the
//! job's input topic; the bridge feeds burst-signal and scaling-decision (Redis, Kafka, a STARTED
//! application in moto), whose decisions the agent applies to the job. The job's own latency
//! histograms and Spark's live executors, read every second from its monitoring REST API, are the
//! real side; the embedded replay of the same scaled trace and seed is the arena's.

use crate::gateways::EdgeGateways;
use crate::live::{create_application, Endpoints};
use crate::replay::{replay_embedded, replay_settings, ReplayOptions, ReplayReport};
use crate::PipelineError;
use adapters::create_topics;
use adapters::{EmrServerless, KafkaPublisher, RedisStore};
use bridge::{Bridge, BridgeConfig};
use control::Scenario;
use handlers::memory::{MemoryHotTier, MemoryObjectStore};
use handlers::{Backends, Topics};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use traces::{Trace, TracePoint};

/// How the trace is fitted to the local job.
#[derive(Debug, Clone)]
pub struct SparkReplayOptions {
    /// Events the job gets per event of the trace.
    pub scale: f64,
    /// Seconds of the trace played (from its start), at most.
    pub seconds: usize,
    /// Largest event sent, bytes (the trace's size above it is capped).
    pub max_event_bytes: f64,
    /// The repository (for `infra/spark`).
    pub root: PathBuf,
    pub scenario: Scenario,
}

/// End-to-end latency of the events of a run, merged from the job's per-batch histograms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub events: u64,
    /// Upper bounds of the histogram buckets the percentiles fall in, ms.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Events whose latency was above the SLA (counted to the bucket bound at or above it).
    pub over_sla_pct: f64,
}

/// What the run measured, and the arena's replay of the same scaled trace.
#[derive(Debug, Clone)]
pub struct SparkReplayReport {
    pub trace: Trace,
    pub real: LatencySummary,
    /// Live executors each second.
    pub real_executors: Vec<u32>,
    pub decisions: u64,
    pub arena: ReplayReport,
}

/// The trace as the local job gets it: scaled, cut and capped.
pub fn fitted(trace: &Trace, options: &SparkReplayOptions) -> Trace {
    let points: Vec<TracePoint> = trace
        .points()
        .iter()
        .take(options.seconds.max(1))
        .map(|p| TracePoint {
            events_per_s: p.events_per_s * options.scale,
            bytes_per_event: p.bytes_per_event.min(options.max_event_bytes),
        })
        .collect();
    Trace::new(format!("{} x{} ({} s)", trace.name(), options.scale, points.len()), points)
}

/// Merge the job's `--latency-out` lines: events per histogram bucket over the whole run.
pub fn summarise(lines: &str, sla_ms: f64) -> Result<LatencySummary, PipelineError> {
    let mut bounds: Vec<f64> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for (i, line) in lines.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |what: &str| PipelineError::Protocol(format!("latency line {}: {what}", i + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let b: Vec<f64> = v["buckets_ms"]
            .as_array()
            .ok_or_else(|| bad("no buckets_ms"))?
            .iter()
            .filter_map(|x| x.as_f64())
            .collect();
        let h: Vec<u64> = v["histogram"]
            .as_array()
            .ok_or_else(|| bad("no histogram"))?
            .iter()
            .filter_map(|x| x.as_u64())
            .collect();
        if h.len() != b.len() + 1 {
            return Err(bad("histogram needs one bucket more than buckets_ms"));
        }
        if bounds.is_empty() {
            bounds = b;
            counts = vec![0; h.len()];
        } else if bounds != b {
            return Err(bad("buckets differ from the first line's"));
        }
        for (c, n) in counts.iter_mut().zip(h) {
            *c += n;
        }
    }
    let events: u64 = counts.iter().sum();
    if events == 0 {
        return Err(PipelineError::Protocol("the job reported no events".into()));
    }
    let upper = |k: usize| bounds.get(k).copied().unwrap_or(f64::INFINITY);
    let quantile = |q: f64| {
        let want = (q * events as f64).ceil() as u64;
        let mut seen = 0;
        for (k, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return upper(k);
            }
        }
        f64::INFINITY
    };
    let over: u64 =
        counts.iter().enumerate().filter(|(k, _)| *k > 0 && upper(k - 1) >= sla_ms).map(|(_, c)| c).sum();
    Ok(LatencySummary {
        events,
        p50_ms: quantile(0.5),
        p95_ms: quantile(0.95),
        p99_ms: quantile(0.99),
        over_sla_pct: 100.0 * over as f64 / events as f64,
    })
}

async fn spark_cmd(root: &Path, args: &[String]) -> Result<String, PipelineError> {
    let out = tokio::process::Command::new(root.join("infra/spark"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            PipelineError::Config(format!(
                "infra/spark: {e} (run from the repository, with `infra/spark start` done)"
            ))
        })?;
    if !out.status.success() {
        return Err(PipelineError::Config(format!(
            "infra/spark {}: {}",
            args.first().map_or("", |a| a.as_str()),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Active executors, the driver excluded.
async fn live_executors(ui: &str, app: &str) -> Option<u32> {
    let (status, body) = crate::http::get(&format!("{ui}/api/v1/applications/{app}/executors")).await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
    Some(v.as_array()?.iter().filter(|e| e["id"] != "driver" && e["isActive"] == true).count() as u32)
}

/// Play `trace` (fitted by `options`) against the real job on the local stack.
pub async fn replay_spark(
    arena: &sim::Arena,
    trace: &Trace,
    seed: u64,
    options: &SparkReplayOptions,
    endpoints: &Endpoints,
) -> Result<SparkReplayReport, PipelineError> {
    let trace = fitted(trace, options);
    let tag = crate::live::run_tag();
    let mut settings = replay_settings(arena, options.scenario);
    settings.topics = Topics::tagged(&tag);
    settings.key_prefix = format!("spark-replay-{tag}");
    let t = settings.topics.clone();
    let raw = format!("iot-raw-data-{tag}");
    let dlq = format!("sparkpilot-dlq-{tag}");
    create_topics(
        &endpoints.kafka_brokers,
        &[&raw, &t.iot_metadata, &t.scaling_requests, &t.spark_metrics, &t.scaling_decisions, &dlq],
    )
    .await?;
    let conf = adapters::sdk_config().await;
    let emr_client = aws_sdk_emrserverless::Client::new(&conf);
    let start = sim::Episode::new(arena, &trace, seed)?.action();
    let most = settings.guardrails.max_executors.max(1);
    let app = create_application(&emr_client, &start, most, settings.vcpu_per_executor, &tag).await?;
    let backends = Backends {
        store: Arc::new(
            RedisStore::connect(&endpoints.redis_url)
                .await
                .map_err(|e| PipelineError::Config(e.to_string()))?,
        ),
        publisher: Arc::new(
            KafkaPublisher::new(&endpoints.kafka_brokers).map_err(|e| PipelineError::Kafka(e.to_string()))?,
        ),
        emr: Arc::new(EmrServerless::new(emr_client, &app)),
        hot_tier: Arc::new(MemoryHotTier::default()),
        objects: Arc::new(MemoryObjectStore::default()),
        nvme: Arc::new(MemoryObjectStore::default()),
    };
    let burst = handlers::build("burst-signal", &settings, &backends)?;
    let decision = crate::live::Observed::new(handlers::build("scaling-decision", &settings, &backends)?);
    let config = BridgeConfig {
        brokers: endpoints.kafka_brokers.clone(),
        group_id: format!("sparkpilot-spark-replay-{tag}"),
        batch_size: 1_000,
        batch_window: Duration::from_millis(50),
        dead_letter_topic: dlq,
        extra: vec![("session.timeout.ms".into(), "6000".into())],
        ..BridgeConfig::default()
    };
    let functions: std::collections::HashMap<&'static str, Arc<dyn handlers::Handler>> =
        [("burst-signal", burst), ("scaling-decision", decision.clone() as Arc<dyn handlers::Handler>)]
            .into_iter()
            .collect();
    let routes = crate::live::standard_routes(&t, &functions)?;
    let bridge = Arc::new(Bridge::new(config, routes, vec![])?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bridge_task = tokio::spawn(async move { bridge.run(stopped).await });

    let job = JobSubmission {
        brokers: &endpoints.kafka_brokers,
        topics: &t,
        raw: &raw,
        max_executors: most,
        max_step: settings.guardrails.max_step,
        tag: &tag,
    };
    let (ui, app_id, latency_out) = job.submit(&options.root).await?;
    let played =
        play(&trace, seed, arena, &endpoints.kafka_brokers, &raw, &t.iot_metadata, &ui, &app_id).await;
    // The job drains what it was sent before it is stopped.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = spark_cmd(&options.root, &["stop-job".to_string()]).await;
    let _ = stop.send(true);
    let _ = bridge_task.await;
    let real_executors = played?;
    let lines = tokio::fs::read_to_string(&latency_out)
        .await
        .map_err(|e| PipelineError::Protocol(format!("{}: {e}", latency_out.display())))?;
    let real = summarise(&lines, arena.config.sla_ms)?;
    let arena_report = replay_embedded(
        arena,
        &trace,
        seed,
        &ReplayOptions { scenario: options.scenario, ..ReplayOptions::default() },
    )
    .await?;
    Ok(SparkReplayReport { trace, real, real_executors, decisions: decision.calls(), arena: arena_report })
}

/// The streaming job as `infra/spark submit` starts it: where it reads and reports, and its bounds.
struct JobSubmission<'a> {
    brokers: &'a str,
    topics: &'a Topics,
    /// The topic the job reads the events from.
    raw: &'a str,
    max_executors: u32,
    max_step: u32,
    tag: &'a str,
}

impl JobSubmission<'_> {
    /// Submit the job; returns its driver UI, application id and the file its per-batch latencies go to.
    async fn submit(&self, root: &Path) -> Result<(String, String, PathBuf), PipelineError> {
        let tag = self.tag;
        let latency_out = std::env::temp_dir().join(format!("sparkpilot-latency-{tag}.jsonl"));
        let checkpoint = std::env::temp_dir().join(format!("sparkpilot-ckpt-{tag}"));
        let mut args: Vec<String> = vec!["submit".into()];
        for c in [
            format!("spark.sparkpilot.kafka.brokers={}", self.brokers),
            format!("spark.sparkpilot.metricsTopic={}", self.topics.spark_metrics),
            format!("spark.sparkpilot.decisionsTopic={}", self.topics.scaling_decisions),
            format!("spark.sparkpilot.maxExecutors={}", self.max_executors),
            format!("spark.sparkpilot.maxStep={}", self.max_step),
        ] {
            args.extend(["--conf".to_string(), c]);
        }
        args.extend(["--brokers", self.brokers, "--topic", self.raw].map(String::from));
        args.extend([
            "--checkpoint".to_string(),
            checkpoint.display().to_string(),
            "--latency-out".to_string(),
            latency_out.display().to_string(),
        ]);
        let exports = spark_cmd(root, &args).await?;
        let var = |name: &str| {
            exports
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(str::to_string)
                .ok_or_else(|| PipelineError::Protocol(format!("infra/spark submit printed no {name}")))
        };
        Ok((var("SPARK_DRIVER_UI")?, var("SPARK_APP_ID")?, latency_out))
    }
}

/// Each second: the gateways' control messages and the second's events, then a look at the
/// executors. Returns the live executors per second.
#[allow(clippy::too_many_arguments)]
async fn play(
    trace: &Trace,
    seed: u64,
    arena: &sim::Arena,
    brokers: &str,
    raw: &str,
    metadata: &str,
    ui: &str,
    app: &str,
) -> Result<Vec<u32>, PipelineError> {
    let producer = adapters::BufferedKafkaProducer::new(
        brokers,
        &[("linger.ms".into(), "20".into()), ("queue.buffering.max.messages".into(), "1000000".into())],
    )
    .map_err(|e| PipelineError::Kafka(e.to_string()))?;
    let mut gateways = EdgeGateways::new(&arena.config.edge, seed)?;
    let send = |topic: &str, key: &str, payload: &[u8]| {
        // Queued without waiting for each delivery; the flush at the end waits for them all.
        producer
            .enqueue(topic, key, payload, None)
            .map(drop)
            .map_err(|e| PipelineError::Kafka(format!("produce to {topic}: {e}")))
    };
    for r in gateways.warm_up(trace) {
        send(
            metadata,
            &r.edge_id,
            &serde_json::to_vec(&r).map_err(|e| PipelineError::Protocol(e.to_string()))?,
        )?;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut executors = Vec::with_capacity(trace.len());
    let mut carry = 0.0;
    for t in 0..trace.len() {
        tick.tick().await;
        let (control, _) = gateways.second(t, trace);
        for r in &control {
            send(
                metadata,
                &r.edge_id,
                &serde_json::to_vec(r).map_err(|e| PipelineError::Protocol(e.to_string()))?,
            )?;
        }
        let point = trace.at(t);
        carry += point.events_per_s;
        let n = carry.floor() as u64;
        carry -= n as f64;
        let pad = "x".repeat((point.bytes_per_event - 100.0).max(0.0) as usize);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        for i in 0..n {
            let edge = format!("edge-{:03}", i % 32);
            let e = serde_json::json!({"edge_id": edge, "device_id": format!("dev-{}", i % 500), "ts": now, "value": (i % 100) as f64, "pad": pad});
            send(raw, &edge, e.to_string().as_bytes())?;
        }
        executors.push(live_executors(ui, app).await.unwrap_or(0));
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| PipelineError::Kafka(format!("flush: {e}")))?;
    Ok(executors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_histograms_merge_into_run_percentiles_and_bad_lines_are_named() {
        let line = |h: [u64; 3]| {
            format!("{{\"buckets_ms\": [500, 1000], \"histogram\": [{}, {}, {}]}}\n", h[0], h[1], h[2])
        };
        let run = line([90, 5, 0]) + &line([0, 0, 5]);
        let s = summarise(&run, 1_000.0).unwrap();
        assert_eq!((s.events, s.p50_ms, s.p95_ms), (100, 500.0, 1_000.0));
        assert_eq!(s.p99_ms, f64::INFINITY);
        assert!((s.over_sla_pct - 5.0).abs() < 1e-9, "{s:?}");
        let e = summarise("{\"buckets_ms\": [500], \"histogram\": [1]}\n", 1_000.0).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(summarise("", 1_000.0).is_err());
    }

    #[test]
    fn the_fitted_trace_is_scaled_cut_and_capped() {
        let trace = Trace::new(
            "t",
            (0..100)
                .map(|i| TracePoint { events_per_s: 1_000.0 + i as f64, bytes_per_event: 100_000.0 })
                .collect(),
        );
        let o = SparkReplayOptions {
            scale: 0.1,
            seconds: 30,
            max_event_bytes: 2_000.0,
            root: PathBuf::new(),
            scenario: Scenario::Balanced,
        };
        let f = fitted(&trace, &o);
        assert_eq!(f.len(), 30);
        assert!((f.at(5).events_per_s - 100.5).abs() < 1e-9 && f.at(5).bytes_per_event == 2_000.0);
    }
}
