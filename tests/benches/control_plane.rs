//! The control plane on the live local stack (tansu, redis-server, moto), through the event-source
//! bridge:
//!
//! 1. latency from an edge control message produced to `iot-metadata` to the scaling decision it
//!    causes being recorded (burst-signal -> `scaling-requests` -> scaling-decision, state in Redis;
//!    recorded = in Redis and acknowledged on `scaling-decisions`), and in a second run with a
//!    reader, to it arriving on `scaling-decisions`; p50 and p99 — once with EMR Serverless in moto (every decision calls
//!    GetApplication and, when the capacity changes, UpdateApplication over HTTP) and once with the
//!    EMR port in memory, which isolates Kafka, the bridge, Redis and the handlers;
//! 2. throughput: control messages per second through the bridge and burst-signal, from a topic
//!    holding them all to the last one handled (median of three runs).
//!
//! `./infra/bench-pipeline`, or `eval "$(infra/services start)" && cargo bench --workspace --bench control_plane`

use adapters::{EmrServerless, KafkaPublisher, RedisStore};
use bridge::{Bridge, BridgeConfig, BridgeStats, Route};
use handlers::memory::{MemoryEmr, MemoryHotTier, MemoryObjectStore};
use handlers::ports::EmrControl;
use handlers::{Backends, EdgeRecord, Settings, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::*;

// The function binaries' allocator (see the `serve` crate): the handlers here stand in for them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROBES: usize = 400;

/// Time spent inside a handler, to split the latency into handling and transport.
struct Timed {
    inner: Arc<dyn handlers::Handler>,
    micros: std::sync::Mutex<Vec<f64>>,
    /// When the last invocation returned (the decision is in Redis and published by then).
    done: tokio::sync::watch::Sender<Option<Instant>>,
}

#[async_trait::async_trait]
impl handlers::Handler for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn handle(&self, trigger: handlers::Trigger) -> Result<handlers::Outcome, handlers::HandlerError> {
        let t = Instant::now();
        let out = self.inner.handle(trigger).await;
        self.micros.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
        self.done.send_replace(Some(Instant::now()));
        out
    }
}

fn timed(inner: Arc<dyn handlers::Handler>) -> Arc<Timed> {
    Arc::new(Timed {
        inner,
        micros: std::sync::Mutex::new(Vec::new()),
        done: tokio::sync::watch::channel(None).0,
    })
}

fn median_of(m: &std::sync::Mutex<Vec<f64>>) -> f64 {
    let mut v = m.lock().unwrap().clone();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
// Set ONLY=latency to skip the throughput runs.
const THROUGHPUT_RECORDS: usize = 50_000;

/// Low-latency client settings. tansu answers a fetch when its wait expires rather than when a
/// record arrives, so the wait bounds each hop's latency: 0 makes the consumers poll (measured here,
/// produced -> decision read back, EMR port in memory: p50 9.9 ms at 0, 14.1 ms at 1 ms, 24.2 ms at
/// 5 ms). Override with FETCH_WAIT_MS.
fn fast() -> Vec<(String, String)> {
    let wait = std::env::var("FETCH_WAIT_MS").unwrap_or_else(|_| "0".into());
    // (socket.nagle.disable=true was tried too: no difference on loopback.)
    vec![
        ("session.timeout.ms".into(), "6000".into()),
        ("fetch.wait.max.ms".into(), wait),
        ("linger.ms".into(), "0".into()),
    ]
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

async fn latency(brokers: &str, emr: Arc<dyn EmrControl>, label: &str) {
    let tag = unique("lat");
    let t = Topics::tagged(&tag);
    let dlq = format!("dlq-{tag}");
    adapters::create_topics(
        brokers,
        &[&t.iot_metadata, &t.scaling_requests, &t.spark_metrics, &t.scaling_decisions, &dlq],
    )
    .await
    .unwrap();
    let redis = Arc::new(RedisStore::connect(&service_env("REDIS_URL")).await.unwrap());
    let backends = Backends {
        store: redis,
        publisher: Arc::new(KafkaPublisher::new(brokers).unwrap()),
        emr,
        hot_tier: Arc::new(MemoryHotTier::default()),
        objects: Arc::new(MemoryObjectStore::default()),
        nvme: Arc::new(MemoryObjectStore::default()),
    };
    // One edge: its own burst flag decides the quorum, so every probe flips the cluster state and
    // causes exactly one decision.
    let settings = Settings { key_prefix: unique("bench"), topics: t.clone(), ..Settings::default() };
    let burst = timed(handlers::build("burst-signal", &settings, &backends).unwrap());
    let decision = timed(handlers::build("scaling-decision", &settings, &backends).unwrap());
    let config = BridgeConfig {
        brokers: brokers.into(),
        group_id: unique("bridge"),
        batch_size: 100,
        batch_window: Duration::ZERO,
        dead_letter_topic: dlq,
        extra: fast(),
        ..BridgeConfig::default()
    };
    let routes = vec![
        Route { topic: t.iot_metadata.clone(), function: burst.clone() },
        Route { topic: t.scaling_requests.clone(), function: decision.clone() },
    ];
    let bridge = Arc::new(Bridge::new(config, routes, vec![]).unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = {
        let b = bridge.clone();
        tokio::spawn(async move { b.run(stopped).await })
    };
    let mut pc = rdkafka::ClientConfig::new();
    pc.set("bootstrap.servers", brokers);
    for (k, v) in fast().into_iter().filter(|(k, _)| k == "linger.ms" || k.starts_with("socket")) {
        pc.set(k, v);
    }
    let producer: FutureProducer = pc.create().unwrap();
    let mut done = decision.done.subscribe();
    let base = handlers::events::now_s().floor();
    let mut probe = 0usize;
    // Phase 1, produced -> recorded: nothing but the system under test consumes, so the figure is
    // the system's alone (a consumer polling with fetch wait 0 competes for this machine's 2 cores).
    // Phase 2 adds that reader, for produced -> read back.
    let mut recorded = Vec::with_capacity(PROBES);
    let mut samples = Vec::with_capacity(PROBES);
    for read_back in [false, true] {
        let decisions: Option<StreamConsumer> = read_back.then(|| {
            let mut cc = rdkafka::ClientConfig::new();
            cc.set("bootstrap.servers", brokers)
                .set("group.id", unique("reader"))
                .set("auto.offset.reset", "earliest");
            for (k, v) in fast().into_iter().filter(|(k, _)| k != "linger.ms") {
                cc.set(k, v);
            }
            let c: StreamConsumer = cc.create().unwrap();
            c.subscribe(&[&t.scaling_decisions]).unwrap();
            c
        });
        if let Some(d) = &decisions {
            // Read past the first run's decisions (one per probe), so that each probe below waits
            // for its own.
            for _ in 0..probe {
                tokio::time::timeout(Duration::from_secs(30), d.recv())
                    .await
                    .expect("the first run's decisions")
                    .unwrap();
            }
        }
        // Warm-up probes (group joins, connections) are not counted.
        for i in 0..PROBES + 20 {
            let r = EdgeRecord {
                edge_id: "edge-bench".into(),
                timestamp: base + probe as f64,
                rate: Some(10_000.0),
                predicted_load: Some(10_000.0),
                burst_signal: Some(probe.is_multiple_of(2)),
            };
            probe += 1;
            let payload = serde_json::to_vec(&r).unwrap();
            done.borrow_and_update();
            let sent = Instant::now();
            producer
                .send(
                    FutureRecord::to(&t.iot_metadata).key("edge-bench").payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            let read = match &decisions {
                Some(d) => {
                    let got = tokio::time::timeout(Duration::from_secs(10), d.recv())
                        .await
                        .expect("a decision within 10 s")
                        .unwrap();
                    drop(got);
                    Some(sent.elapsed().as_secs_f64() * 1e3)
                }
                None => None,
            };
            tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| d.is_some_and(|d| d > sent)))
                .await
                .expect("decision handler returned")
                .unwrap();
            let at = done.borrow().unwrap();
            if i >= 20 {
                match read {
                    Some(ms) => samples.push(ms),
                    None => recorded.push(at.duration_since(sent).as_secs_f64() * 1e3),
                }
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    recorded.sort_by(f64::total_cmp);
    println!("control message produced -> decision recorded ({label}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {PROBES} probes", percentile(&recorded, 0.5), percentile(&recorded, 0.99), recorded[recorded.len() - 1]);
    println!("control message produced -> decision read from scaling-decisions ({label}, a second run with a reader polling): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {PROBES} probes; inside the handlers over both runs (median): burst-signal {:.2} ms, scaling-decision {:.2} ms", percentile(&samples, 0.5), percentile(&samples, 0.99), samples[samples.len() - 1], median_of(&burst.micros), median_of(&decision.micros));
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

async fn throughput_once(brokers: &str) -> f64 {
    let tag = unique("thr");
    let t = Topics::tagged(&tag);
    let dlq = format!("dlq-{tag}");
    adapters::create_topics(brokers, &[&t.iot_metadata, &t.scaling_requests, &dlq]).await.unwrap();
    // 500 edges, 100 seconds of control messages.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()
        .unwrap();
    let base = handlers::events::now_s().floor();
    let mut sends = Vec::with_capacity(THROUGHPUT_RECORDS);
    for i in 0..THROUGHPUT_RECORDS {
        let edge = format!("edge-{:04}", i % 500);
        let r = EdgeRecord {
            edge_id: edge.clone(),
            timestamp: base + (i / 500) as f64,
            rate: Some(200.0 + (i % 7) as f64),
            predicted_load: Some(200.0),
            burst_signal: Some(false),
        };
        let payload = serde_json::to_vec(&r).unwrap();
        sends.push(
            producer.send_result(FutureRecord::to(&t.iot_metadata).key(&edge).payload(&payload)).unwrap(),
        );
    }
    for s in sends {
        s.await.unwrap().unwrap();
    }
    let redis = Arc::new(RedisStore::connect(&service_env("REDIS_URL")).await.unwrap());
    let backends = Backends {
        store: redis,
        publisher: Arc::new(KafkaPublisher::new(brokers).unwrap()),
        emr: Arc::new(MemoryEmr::default()),
        hot_tier: Arc::new(MemoryHotTier::default()),
        objects: Arc::new(MemoryObjectStore::default()),
        nvme: Arc::new(MemoryObjectStore::default()),
    };
    let settings = Settings { key_prefix: unique("bench"), topics: t.clone(), ..Settings::default() };
    let burst = handlers::build("burst-signal", &settings, &backends).unwrap();
    let mut extra = fast();
    extra.push(("fetch.max.bytes".into(), "52428800".into()));
    let config = BridgeConfig {
        brokers: brokers.into(),
        group_id: unique("bridge"),
        batch_size: 10_000,
        batch_window: Duration::from_millis(100),
        dead_letter_topic: dlq,
        extra,
        ..BridgeConfig::default()
    };
    let bridge = Arc::new(
        Bridge::new(config, vec![Route { topic: t.iot_metadata.clone(), function: burst }], vec![]).unwrap(),
    );
    let stats = bridge.stats.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let running = {
        let b = bridge.clone();
        tokio::spawn(async move { b.run(stopped).await })
    };
    // Handled = consumed, invoked and committed: the last commit follows the last invocation.
    let mut first_record: Option<Instant> = None;
    loop {
        if first_record.is_none() && BridgeStats::get(&stats.records) > 0 {
            first_record = Some(Instant::now());
        }
        if BridgeStats::get(&stats.records) >= THROUGHPUT_RECORDS as u64
            && BridgeStats::get(&stats.batches) == BridgeStats::get(&stats.commits)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "throughput run stalled at {} records",
            BridgeStats::get(&stats.records)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // From the first record received: the consumer group join is not the control plane's speed.
    let secs = first_record.unwrap().elapsed().as_secs_f64();
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    THROUGHPUT_RECORDS as f64 / secs
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let brokers = service_env("KAFKA_BROKERS");
    rt.block_on(async {
        let conf = aws_config().await;
        let app = emr_application(&conf, 16, 64, true).await;
        let moto: Arc<dyn EmrControl> = Arc::new(EmrServerless::new(aws_sdk_emrserverless::Client::new(&conf), &app));
        latency(&brokers, moto, "EMR Serverless in moto").await;
        latency(&brokers, Arc::new(MemoryEmr::default()), "EMR port in memory").await;
        if std::env::var("ONLY").as_deref() == Ok("latency") {
            return;
        }
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(throughput_once(&brokers).await);
        }
        runs.sort_by(f64::total_cmp);
        println!(
            "control-plane throughput, Kafka -> bridge -> burst-signal (Redis state, batches of up to 10000): median {:.0} records/s (runs: {})",
            runs[1],
            runs.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
        );
    });
}
