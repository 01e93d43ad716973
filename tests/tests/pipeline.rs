//! The bundle as a system on the live local stack: a Kafka-compatible broker (tansu), redis-server and
//! moto, started by `infra/services start`. The edge gateway simulator produces a step burst to
//! Kafka; the event-source bridge batches it into the handlers (burst-signal, then scaling-decision
//! through `scaling-requests`), which keep their state in Redis and scale the EMR Serverless
//! application in moto.

use adapters::{EmrServerless, KafkaPublisher, RedisStore};
use async_trait::async_trait;
use bridge::{dead_letter_headers, Bridge, BridgeConfig, BridgeStats, Route};
use handlers::memory::{MemoryHotTier, MemoryObjectStore};
use handlers::outcome::BurstOutcome;
use handlers::ports::StateStore;
use handlers::{Backends, Handler, HandlerError, Outcome, Settings, Topics, Trigger};
use pipeline::gateways::EdgeGateways;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::*;

/// A handler that keeps what every invocation returned, and the offsets of the records of every
/// invocation that succeeded.
struct Recording {
    inner: Arc<dyn Handler>,
    outputs: Mutex<Vec<Value>>,
    handled: Mutex<Vec<i64>>,
}

impl Recording {
    fn new(inner: Arc<dyn Handler>) -> Arc<Self> {
        Arc::new(Self { inner, outputs: Mutex::new(Vec::new()), handled: Mutex::new(Vec::new()) })
    }
    /// Each invocation's response, as the function's caller gets it.
    fn outputs(&self) -> Vec<Value> {
        self.outputs.lock().unwrap().clone()
    }
    /// Offsets of the records handled, in the order they were handled.
    fn handled(&self) -> Vec<i64> {
        self.handled.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler for Recording {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn handle(&self, trigger: Trigger) -> Result<Outcome, HandlerError> {
        let offsets: Vec<i64> = match &trigger {
            Trigger::Kafka(records) => records.iter().map(|r| r.offset).collect(),
            _ => Vec::new(),
        };
        let out = self.inner.handle(trigger).await?;
        self.outputs.lock().unwrap().push(out.to_json());
        self.handled.lock().unwrap().extend(offsets);
        Ok(out)
    }
}

/// A consumer of the dead-letter topic from its start, in a group of its own.
fn dead_letter_reader(brokers: &str, dlq: &str) -> StreamConsumer {
    tests::reader(brokers, "dlq-reader", dlq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_burst_through_kafka_scales_emr_once_per_batch_and_dead_letters_a_poison_record() {
    let brokers = service_env("KAFKA_BROKERS");
    let tag = unique("e2e");
    let topics = Topics::tagged(&tag);
    let dlq = format!("sparkpilot-dlq-{tag}");
    adapters::create_topics(
        &brokers,
        &[
            &topics.iot_metadata,
            &topics.scaling_requests,
            &topics.spark_metrics,
            &topics.scaling_decisions,
            &dlq,
        ],
    )
    .await
    .expect("CreateTopics on the broker");

    let conf = aws_config().await;
    let app = emr_application(&conf, 16, 64, true).await;
    let emr = aws_sdk_emrserverless::Client::new(&conf);
    let redis = Arc::new(RedisStore::connect(&service_env("REDIS_URL")).await.expect("redis-server answers"));
    let backends = Backends {
        store: redis.clone(),
        publisher: Arc::new(KafkaPublisher::new(&brokers).expect("producer")),
        emr: Arc::new(EmrServerless::new(emr.clone(), &app)),
        hot_tier: Arc::new(MemoryHotTier::default()),
        objects: Arc::new(MemoryObjectStore::default()),
        nvme: Arc::new(MemoryObjectStore::default()),
    };
    let settings = Settings { key_prefix: unique("sp"), topics: topics.clone(), ..Settings::default() };
    let burst = Recording::new(handlers::build("burst-signal", &settings, &backends).unwrap());
    let decision = Recording::new(handlers::build("scaling-decision", &settings, &backends).unwrap());

    // Every batch is handed over twice: the handlers must not act twice.
    let config = BridgeConfig {
        brokers: brokers.clone(),
        group_id: unique("bridge"),
        batch_size: 500,
        batch_window: Duration::from_millis(50),
        max_attempts: 3,
        dead_letter_topic: dlq.clone(),
        deliver_twice: true,
        extra: vec![("session.timeout.ms".into(), "6000".into())],
        ..BridgeConfig::default()
    };
    let routes = vec![
        Route { topic: topics.iot_metadata.clone(), function: burst.clone() },
        Route { topic: topics.scaling_requests.clone(), function: decision.clone() },
        Route { topic: topics.spark_metrics.clone(), function: decision.clone() },
    ];
    let bridge = Arc::new(Bridge::new(config, routes, vec![]).expect("bridge"));
    let stats: Arc<BridgeStats> = bridge.stats.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = {
        let bridge = bridge.clone();
        tokio::spawn(async move { bridge.run(stopped).await })
    };

    // The gateways: 16 edges over the step-burst trace (the step is at 300 s; they see it 60 s
    // early), warm-up included, and a poison record in the middle.
    let trace = traces::resolve("step-burst", 1).unwrap();
    let edge = sim::EdgeConfig { gateways: 16, false_alarms_per_hour: 0.0, ..sim::EdgeConfig::default() };
    let mut gateways = EdgeGateways::new(&edge, 1).unwrap();
    let mut records: Vec<(String, Vec<u8>)> = gateways
        .warm_up(&trace)
        .into_iter()
        .map(|r| (r.edge_id.clone(), serde_json::to_vec(&r).unwrap()))
        .collect();
    for t in 0..=280 {
        let (control, _) = gateways.second(t, &trace);
        records.extend(control.into_iter().map(|r| (r.edge_id.clone(), serde_json::to_vec(&r).unwrap())));
        if t == 100 {
            records.push(("edge-poison".into(), b"{\"edge_id\": \"edge-0001\", \"timestamp\": ".to_vec()));
        }
    }
    let good = records.len() - 1;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let started = Instant::now();
    let sends: Vec<_> = records
        .iter()
        .map(|(k, v)| {
            producer.send_result(FutureRecord::to(&topics.iot_metadata).key(k).payload(v)).expect("queued")
        })
        .collect();
    for s in sends {
        s.await.expect("delivery").expect("produced");
    }
    // The Spark job's progress in the burst: three times the opening load, a backlog building.
    let metrics = serde_json::json!({"timestamp": handlers::events::now_s(), "input_rate": 3.0 * trace.at(0).events_per_s, "processing_rate": trace.at(0).events_per_s, "batch_duration_ms": 4_000.0, "backlog": 500_000.0});
    producer
        .send(
            FutureRecord::to(&topics.spark_metrics)
                .key("job")
                .payload(&serde_json::to_vec(&metrics).unwrap()),
            Duration::from_secs(5),
        )
        .await
        .expect("produced");

    // Deadline: 30 s from the first record produced to a decision for more executors than the 16 vCPU
    // application opened with, and the guardrails' ceiling in the emulator (the application is
    // STOPPED, so UpdateApplication takes it).
    let cpu = || {
        let (emr, app) = (emr.clone(), app.clone());
        async move {
            let out = emr.get_application().application_id(&app).send().await.unwrap();
            out.application()
                .unwrap()
                .maximum_capacity()
                .map(|m| m.cpu().trim_end_matches(" vCPU").parse::<u32>().unwrap())
                .unwrap_or(0)
        }
    };
    let opening = 16 / settings.vcpu_per_executor;
    let scaled_up = || {
        decision
            .outputs()
            .iter()
            .any(|o| o["decision"]["applied"]["executors"].as_u64().is_some_and(|n| n > opening as u64))
    };
    wait_until(
        Duration::from_secs(30),
        "a decision for more executors and the ceiling in EMR Serverless",
        || async { scaled_up() && cpu().await > 16 },
    )
    .await;
    let scaled_after = started.elapsed();
    assert!(scaled_after < Duration::from_secs(30));
    // Everything consumed and handed over twice.
    let total = records.len() as u64 + 1;
    wait_until(Duration::from_secs(30), "every record consumed", || async {
        BridgeStats::get(&stats.records) >= total
    })
    .await;
    let delivered = || burst.outputs().iter().map(|o| o["records"].as_u64().unwrap()).sum::<u64>();
    wait_until(Duration::from_secs(30), "every control message delivered twice", || async {
        delivered() >= 2 * records.len() as u64
    })
    .await;
    wait_until(Duration::from_secs(30), "the poison record dead-lettered", || async {
        BridgeStats::get(&stats.dead_lettered) >= 1
    })
    .await;

    // The rest of the batch was processed, each good record exactly once despite the redelivery.
    let burst_out = burst.outputs();
    let accepted: u64 = burst_out.iter().map(|o| o["accepted"].as_u64().unwrap()).sum();
    assert_eq!(accepted as usize, good, "each good control message applied once");
    assert!(burst_out.iter().any(|o| o["burst"] == true), "the cluster burst was raised");
    // Every scaling-decision batch came twice; the second was recognised and did nothing.
    wait_until(Duration::from_secs(10), "the decisions settle", || async {
        decision.outputs().len().is_multiple_of(2) && !decision.outputs().is_empty()
    })
    .await;
    let outs = decision.outputs();
    let duplicates = outs.iter().filter(|o| o["duplicate"] == true).count();
    let decided: Vec<&Value> = outs.iter().filter(|o| o.get("decision").is_some()).collect();
    assert_eq!(duplicates, decided.len(), "one duplicate per batch: {outs:?}");
    let log = redis.recent(&format!("{{{}}}:decisions", settings.key_prefix), 1_000).await.unwrap();
    assert_eq!(log.len(), decided.len(), "one recorded decision per batch");
    let updates = decided.iter().filter(|o| o["decision"]["emr"] == "updated").count();
    assert!(updates >= 1 && updates <= decided.len());
    let cap_now = cpu().await;
    assert_eq!(
        cap_now,
        settings.guardrails.max_executors * settings.vcpu_per_executor,
        "the emulator holds the guardrails' ceiling"
    );
    let last = &decided.last().unwrap()["decision"];
    assert_eq!(
        last["next_run"]["executors"], last["applied"]["executors"],
        "the next run starts with the last decision: {last}"
    );

    // The poison record is on the dead-letter topic with where it came from and why.
    let consumer = dead_letter_reader(&brokers, &dlq);
    let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("a dead letter within 20 s")
        .unwrap();
    assert_eq!(m.payload().unwrap(), b"{\"edge_id\": \"edge-0001\", \"timestamp\": ");
    let h = dead_letter_headers(&m);
    assert_eq!(h["x-sparkpilot-function"], "burst-signal");
    assert_eq!(h["x-sparkpilot-source-topic"], topics.iot_metadata);
    assert!(h["x-sparkpilot-error"].contains("not a valid record"), "{h:?}");
    assert_eq!(BridgeStats::get(&stats.dead_lettered), 1);
    eprintln!(
        "step burst produced -> larger EMR Serverless capacity in {scaled_after:?}; {} batches, {} commits",
        BridgeStats::get(&stats.batches),
        BridgeStats::get(&stats.commits)
    );

    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

/// A handler that fails every invocation holding a record whose value is `fail`.
struct FailsOn(&'static [u8]);

#[async_trait]
impl Handler for FailsOn {
    fn name(&self) -> &'static str {
        "fails-on"
    }
    async fn handle(&self, trigger: Trigger) -> Result<Outcome, HandlerError> {
        let records = match trigger {
            Trigger::Kafka(records) => records,
            _ => Vec::new(),
        };
        if records.iter().any(|r| matches!(&r.value, Some(Ok(v)) if v.as_slice() == self.0)) {
            return Err(HandlerError::State("simulated downstream failure".into()));
        }
        // The bridge reads only the record errors (none here); `Recording` keeps the offsets.
        let n = records.len();
        Ok(Outcome::Burst(BurstOutcome { records: n, accepted: n, ..BurstOutcome::default() }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_is_bisected_out_and_dead_lettered_after_n_tries() {
    let brokers = service_env("KAFKA_BROKERS");
    let tag = unique("bisect");
    let (topic, dlq) = (format!("work-{tag}"), format!("dlq-{tag}"));
    adapters::create_topics(&brokers, &[&topic, &dlq]).await.unwrap();
    let handler = Recording::new(Arc::new(FailsOn(b"fail")));
    let config = BridgeConfig {
        brokers: brokers.clone(),
        group_id: unique("bridge"),
        batch_size: 8,
        batch_window: Duration::from_millis(200),
        max_attempts: 2,
        retry_backoff: Duration::from_millis(5),
        dead_letter_topic: dlq.clone(),
        extra: vec![("session.timeout.ms".into(), "6000".into())],
        ..BridgeConfig::default()
    };
    let bridge = Arc::new(
        Bridge::new(config, vec![Route { topic: topic.clone(), function: handler.clone() }], vec![]).unwrap(),
    );
    let stats = bridge.stats.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = {
        let bridge = bridge.clone();
        tokio::spawn(async move { bridge.run(stopped).await })
    };
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    for i in 0..8 {
        let v: &[u8] = if i == 5 { b"fail" } else { b"ok" };
        producer.send(FutureRecord::<(), _>::to(&topic).payload(v), Duration::from_secs(5)).await.unwrap();
    }
    wait_until(Duration::from_secs(30), "the failing record dead-lettered", || async {
        BridgeStats::get(&stats.dead_lettered) == 1 && BridgeStats::get(&stats.commits) >= 1
    })
    .await;
    // Every other record was handled, in order, once (its half succeeded); the failing one never.
    let mut handled = handler.handled();
    handled.sort();
    assert_eq!(handled.len(), 7, "{handled:?}");
    assert!(!handled.contains(&5));
    // 2 tries of the batch of 8, 2 of its half holding the record, 2 of the quarter, 2 alone; the
    // other halves once each.
    assert!(
        BridgeStats::get(&stats.failed_invocations) == 8,
        "failed invocations {}",
        BridgeStats::get(&stats.failed_invocations)
    );
    let consumer = dead_letter_reader(&brokers, &dlq);
    let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("a dead letter within 20 s")
        .unwrap();
    let h = dead_letter_headers(&m);
    assert_eq!((h["x-sparkpilot-attempts"].as_str(), h["x-sparkpilot-source-offset"].as_str()), ("2", "5"));
    assert!(h["x-sparkpilot-error"].contains("simulated downstream failure"));
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_replay_scores_exactly_as_the_embedded_one() {
    // Through Kafka, the bridge, Redis, moto's EMR Serverless and S3, the same trace and seed give
    // the same decisions as the handlers in-process: one code path, whatever carries the records.
    let endpoints = pipeline::live::Endpoints::from_env().expect("the local stack is up");
    let mut arena = sim::Arena::embedded();
    arena.config.edge.gateways = 8;
    let trace = traces::resolve("step-burst", 2).unwrap().window(0, 420);
    let options = pipeline::replay::ReplayOptions::default();
    let live =
        pipeline::live::replay_live(&arena, &trace, 2, &options, &endpoints).await.expect("live replay");
    let embedded = pipeline::replay::replay_embedded(&arena, &trace, 2, &options).await.unwrap();
    assert_eq!(live.decisions, embedded.decisions);
    assert_eq!(live.record_errors, 0);
    assert_eq!(live.timeline.executors, embedded.timeline.executors, "same capacity every second");
    assert!(
        (live.scores.cost_usd - embedded.scores.cost_usd).abs() < 1e-9,
        "live ${} vs embedded ${}",
        live.scores.cost_usd,
        embedded.scores.cost_usd
    );
    assert_eq!(live.scores.sla_violation_pct, embedded.scores.sla_violation_pct);
    for f in handlers::FUNCTIONS {
        assert!(
            live.invocations.get(f).copied().unwrap_or(0) > 0,
            "{f} never ran live: {:?}",
            live.invocations
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bridge_resumes_after_the_last_handled_batch() {
    let brokers = service_env("KAFKA_BROKERS");
    let tag = unique("resume");
    let (topic, dlq, group) = (format!("work-{tag}"), format!("dlq-{tag}"), unique("group"));
    adapters::create_topics(&brokers, &[&topic, &dlq]).await.unwrap();
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let produce = |from: usize, to: usize| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            for i in from..to {
                producer
                    .send(
                        FutureRecord::<(), _>::to(&topic).payload(format!("r{i}").as_bytes()),
                        Duration::from_secs(5),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    let run = |expect: u64| {
        let (brokers, topic, dlq, group) = (brokers.clone(), topic.clone(), dlq.clone(), group.clone());
        async move {
            let handler = Recording::new(Arc::new(FailsOn(b"never")));
            let config = BridgeConfig {
                brokers,
                group_id: group,
                batch_size: 4,
                batch_window: Duration::from_millis(20),
                dead_letter_topic: dlq,
                extra: vec![("session.timeout.ms".into(), "6000".into())],
                ..BridgeConfig::default()
            };
            let bridge = Arc::new(
                Bridge::new(config, vec![Route { topic, function: handler.clone() }], vec![]).unwrap(),
            );
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = {
                let b = bridge.clone();
                tokio::spawn(async move { b.run(stopped).await })
            };
            let h = handler.clone();
            wait_until(Duration::from_secs(30), "the records handled", || {
                let h = h.clone();
                async move { h.handled().len() as u64 >= expect }
            })
            .await;
            // Nothing more arrives: what was committed is not handed over again.
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.send(true).unwrap();
            task.await.unwrap().unwrap();
            handler.handled()
        }
    };
    produce(0, 10).await;
    let first = run(10).await;
    assert_eq!(first, (0..10).collect::<Vec<i64>>());
    produce(10, 15).await;
    let second = run(5).await;
    assert_eq!(
        second,
        (10..15).collect::<Vec<i64>>(),
        "the restarted bridge starts after the committed offsets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_command_consumes_hands_over_and_stops_on_interrupt() {
    // `sparkpilot bridge` with the handlers on in-memory backends (SPARKPILOT_BACKEND=embedded), its
    // own topics, and a record produced while it runs; SIGINT stops it with its counters.
    let brokers = service_env("KAFKA_BROKERS");
    let tag = unique("cli");
    let topic = format!("iot-metadata-{tag}");
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let child = tokio::process::Command::new(workspace_binary("sparkpilot"))
        .args([
            "bridge",
            "--no-schedules",
            "--batch-window-ms",
            "20",
            "--group",
            &unique("cli-group"),
            "--dead-letter-topic",
            &format!("dlq-{tag}"),
        ])
        .env("KAFKA_BROKERS", &brokers)
        .env("SPARKPILOT_BACKEND", "embedded")
        .env("SPARKPILOT_TOPIC_IOT_METADATA", &topic)
        .env("SPARKPILOT_TOPIC_SCALING_REQUESTS", format!("scaling-requests-{tag}"))
        .env("SPARKPILOT_TOPIC_SPARK_METRICS", format!("spark-metrics-{tag}"))
        .env("SPARKPILOT_KAFKA_CONFIG_SESSION_TIMEOUT_MS", "6000")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sparkpilot bridge starts");
    // The bridge creates its topics; produce once the topic exists.
    let record = br#"{"edge_id": "edge-cli", "timestamp": 1767225600.0, "rate": 100.0}"#;
    let start = Instant::now();
    loop {
        match producer
            .send(FutureRecord::<(), _>::to(&topic).payload(&record[..]), Duration::from_secs(2))
            .await
        {
            Ok(_) => break,
            Err(_) if start.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err((e, _)) => panic!("produce to {topic}: {e}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pid = child.id().expect("running") as i32;
    std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops on SIGINT")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{topic} -> burst-signal")), "{stderr}");
    assert!(stderr.contains("1 records in 1 batches, 1 invocations (0 failed), 0 dead-lettered"), "{stderr}");
}
