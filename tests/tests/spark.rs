//! The control loop closed on a real Spark: the example streaming job (`spark/iot_job.py`) runs on
//! the local standalone cluster that `infra/spark start` brings up, with the in-job agent. Its
//! micro-batch progress goes to `spark-metrics` on the broker; the event-source bridge hands it to
//! scaling-decision (Redis state, a STARTED application in moto); the decision goes out on
//! `scaling-decisions`; the agent sets the job's executors; Spark's monitoring REST API shows them.
//!
//! One Spark job at a time (the machine has two cores): the tests take [`ONE_JOB`].

use adapters::{EmrServerless, KafkaPublisher, RedisStore};
use async_trait::async_trait;
use bridge::{Bridge, BridgeConfig, Route};
use handlers::memory::{MemoryHotTier, MemoryObjectStore};
use handlers::ports::StateStore;
use handlers::{
    Backends, DecisionRecord, Handler, HandlerError, Outcome, Settings, SparkMetrics, Topics, Trigger,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::*;

static ONE_JOB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How often the tests ask Spark's REST API.
const POLL: Duration = Duration::from_millis(250);

fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The submitted job: its driver's UI (and REST API) and application id.
struct Job {
    ui: String,
    app: String,
}

impl Job {
    /// `infra/spark submit` with the agent pointed at `topics` on `brokers`.
    async fn submit(brokers: &str, raw: &str, topics: &Topics, max_executors: u32, extra: &[String]) -> Job {
        let checkpoint = std::env::temp_dir().join(unique("sparkpilot-ckpt"));
        let mut args: Vec<String> = vec!["submit".into()];
        for conf in [
            format!("spark.sparkpilot.kafka.brokers={brokers}"),
            format!("spark.sparkpilot.metricsTopic={}", topics.spark_metrics),
            format!("spark.sparkpilot.decisionsTopic={}", topics.scaling_decisions),
            format!("spark.sparkpilot.maxExecutors={max_executors}"),
            "spark.sparkpilot.minExecutors=1".into(),
        ] {
            args.push("--conf".into());
            args.push(conf);
        }
        args.extend([
            "--brokers".into(),
            brokers.into(),
            "--topic".into(),
            raw.into(),
            "--checkpoint".into(),
            checkpoint.display().to_string(),
        ]);
        args.extend(extra.iter().cloned());
        let out = tokio::process::Command::new(repo_root().join("infra/spark"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("infra/spark runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "infra/spark submit failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("no {name} in: {text}"))
                .to_string()
        };
        Job { ui: var("SPARK_DRIVER_UI"), app: var("SPARK_APP_ID") }
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}/api/v1/applications/{}/{path}", self.ui, self.app);
        let (status, body) = http_get(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(status, 200, "{url}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
    }

    /// Active executors, the driver excluded, with when each was added (Unix seconds).
    async fn executors(&self) -> Vec<(String, f64)> {
        let all = self.get("executors").await;
        all.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["id"] != "driver" && e["isActive"] == true)
            .map(|e| (e["id"].as_str().unwrap().to_string(), added_s(&e["addTime"])))
            .collect()
    }

    /// Failed tasks over every executor the job ever had, and failed stages.
    async fn failures(&self) -> (u64, usize) {
        let all = self.get("allexecutors").await;
        let tasks = all.as_array().unwrap().iter().map(|e| e["totalFailedTasks"].as_u64().unwrap_or(0)).sum();
        let stages = self.get("stages?status=failed").await.as_array().map_or(0, |a| a.len());
        (tasks, stages)
    }

    /// Whether the driver still answers.
    async fn alive(&self) -> bool {
        http_get(&format!("{}/api/v1/applications/{}/jobs", self.ui, self.app))
            .await
            .is_ok_and(|(s, _)| s == 200)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo_root().join("infra/spark"))
            .arg("stop-job")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
    }
}

/// Spark's REST API times: "2026-12-04T16:20:01.123GMT".
fn added_s(v: &Value) -> f64 {
    let t = v.as_str().unwrap_or_default().trim_end_matches("GMT");
    let (date, time) = t.split_once('T').unwrap_or_else(|| panic!("time {v}"));
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let hms: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86_400.0 + hms[0] * 3_600.0 + hms[1] * 60.0 + hms[2]
}

/// scaling-decision, keeping every decision with the wall-clock time it was made and the end times
/// of the micro-batches it was given.
struct Timed {
    inner: Arc<dyn Handler>,
    seen: Mutex<Vec<Call>>,
}

/// One call: when it was made, the end times of the micro-batches it was given, its decision.
type Call = (f64, Vec<f64>, Option<DecisionRecord>);

#[async_trait]
impl Handler for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn handle(&self, trigger: Trigger) -> Result<Outcome, HandlerError> {
        let at = now_s();
        let batches: Vec<f64> = match &trigger {
            Trigger::Kafka(records) => records
                .iter()
                .filter_map(|r| {
                    r.value
                        .as_ref()
                        .and_then(|v| v.as_ref().ok())
                        .and_then(|v| serde_json::from_slice::<SparkMetrics>(v).ok())
                })
                .map(|m| m.timestamp)
                .collect(),
            _ => Vec::new(),
        };
        let out = self.inner.handle(trigger).await?;
        let record = out.decision().cloned();
        self.seen.lock().unwrap().push((at, batches, record));
        Ok(out)
    }
}

impl Timed {
    fn decisions(&self) -> Vec<(f64, DecisionRecord)> {
        self.seen.lock().unwrap().iter().filter_map(|(at, _, d)| d.clone().map(|d| (*at, d))).collect()
    }
    /// Seconds from each micro-batch's end to scaling-decision holding its metrics.
    fn metric_delays(&self) -> Vec<f64> {
        self.seen.lock().unwrap().iter().flat_map(|(at, ends, _)| ends.iter().map(move |e| at - e)).collect()
    }
}

/// Produces JSON events at a rate that `rate` reads each second, until told to stop.
fn feed(
    brokers: &str,
    topic: &str,
    rate: Arc<Mutex<f64>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<u64> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("message.timeout.ms", "300000")
        .create()
        .unwrap();
    let topic = topic.to_string();
    tokio::spawn(async move {
        let mut sent = 0u64;
        let pad = "x".repeat(200);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !*stop.borrow() {
            tick.tick().await;
            let n = (*rate.lock().unwrap() / 10.0).round() as u64;
            for i in 0..n {
                let edge = format!("gw-{:02}", (sent + i) % 16);
                let e = json!({"edge_id": edge, "device_id": format!("d-{}", (sent + i) % 500), "ts": now_s(), "value": (i % 100) as f64, "pad": pad});
                // A full local queue (the broker away) drops the event: this is load, not state.
                let _ = producer.send_result(FutureRecord::to(&topic).key(&edge).payload(&e.to_string()));
            }
            sent += n;
        }
        sent
    })
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((q * s.len() as f64) as usize).min(s.len() - 1)]
}

/// The deployment under test: scaling-decision on Redis, Kafka and a STARTED application in moto,
/// fed by the bridge from `spark-metrics`.
struct Loop {
    decision: Arc<Timed>,
    redis: Arc<RedisStore>,
    settings: Settings,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn control_loop(brokers: &str, topics: &Topics, settings: Settings) -> Loop {
    let conf = aws_config().await;
    // A STARTED application with room for the guardrails' ceiling, as a streaming job keeps it.
    let most = settings.guardrails.max_executors * settings.vcpu_per_executor;
    let app = emr_application(&conf, most, most * 16, false).await;
    let redis = Arc::new(RedisStore::connect(&service_env("REDIS_URL")).await.expect("redis-server answers"));
    let backends = Backends {
        store: redis.clone(),
        publisher: Arc::new(KafkaPublisher::new(brokers).expect("producer")),
        emr: Arc::new(EmrServerless::new(aws_sdk_emrserverless::Client::new(&conf), &app)),
        hot_tier: Arc::new(MemoryHotTier::default()),
        objects: Arc::new(MemoryObjectStore::default()),
        nvme: Arc::new(MemoryObjectStore::default()),
    };
    let decision = Arc::new(Timed {
        inner: handlers::build("scaling-decision", &settings, &backends).unwrap(),
        seen: Mutex::new(Vec::new()),
    });
    let config = BridgeConfig {
        brokers: brokers.to_string(),
        group_id: unique("bridge"),
        batch_size: 100,
        batch_window: Duration::from_millis(50),
        max_attempts: 3,
        dead_letter_topic: format!("{}-dlq", topics.spark_metrics),
        extra: vec![("session.timeout.ms".into(), "6000".into())],
        ..BridgeConfig::default()
    };
    let routes = vec![Route { topic: topics.spark_metrics.clone(), function: decision.clone() }];
    let bridge = Arc::new(Bridge::new(config, routes, vec![]).expect("bridge"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move { bridge.run(stopped).await });
    Loop { decision, redis, settings, stop }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_burst_moves_the_real_jobs_executors_up_and_back_down_without_a_failed_task() {
    let _one = ONE_JOB.lock().await;
    let brokers = service_env("KAFKA_BROKERS");
    let tag = unique("spark");
    let topics = Topics::tagged(&tag);
    let raw = format!("iot-raw-data-{tag}");
    adapters::create_topics(
        &brokers,
        &[&raw, &topics.spark_metrics, &topics.scaling_decisions, &format!("{}-dlq", topics.spark_metrics)],
    )
    .await
    .expect("CreateTopics");
    // One-vCPU executors, at most three (the local worker's cores), a short cooldown for the test.
    let mut settings = Settings {
        key_prefix: unique("sp"),
        topics: topics.clone(),
        vcpu_per_executor: 1,
        ..Settings::default()
    };
    settings.guardrails.max_executors = 3;
    settings.guardrails.cooldown_s = 20.0;
    let l = control_loop(&brokers, &topics, settings).await;

    let rate = Arc::new(Mutex::new(100.0));
    let (stop_feed, feeding) = tokio::sync::watch::channel(false);
    let fed = feed(&brokers, &raw, rate.clone(), feeding);
    let latency_out = std::env::temp_dir().join(unique("latency")).with_extension("jsonl");
    let job =
        Job::submit(&brokers, &raw, &topics, 3, &["--latency-out".into(), latency_out.display().to_string()])
            .await;

    // Quiet: one executor is enough and the policy says so.
    wait_until_every(POLL, Duration::from_secs(120), "decisions on the job's own metrics", || async {
        l.decision.decisions().len() >= 5
    })
    .await;
    assert_eq!(job.executors().await.len(), 1, "the job opens with one executor");
    // The step: ten times the load. The model rates a one-vCPU executor at about 200 events/s.
    let burst_at = now_s();
    *rate.lock().unwrap() = 1_000.0;
    wait_until_every(POLL, Duration::from_secs(90), "three executors registered in Spark", || async {
        job.executors().await.len() == 3
    })
    .await;
    let executors = job.executors().await;
    let first_three = l
        .decision
        .decisions()
        .into_iter()
        .find(|(_, d)| d.applied.executors == 3)
        .expect("a decision for 3 executors")
        .0;
    let registered = executors.iter().map(|(_, t)| *t).fold(f64::MIN, f64::max);
    eprintln!("burst at {burst_at:.1}: decision for 3 executors {:.1} s later, third executor registered {:.1} s after the decision", first_three - burst_at, registered - first_three);
    // The agent reports following it: a decision record with live = requested.
    wait_until_every(POLL, Duration::from_secs(30), "a record with live = requested = 3", || async {
        l.decision.decisions().iter().any(|(_, d)| {
            d.executors
                .as_ref()
                .is_some_and(|e| e.requested == 3 && e.live == Some(3) && e.agent_target == Some(3))
        })
    })
    .await;

    // The load falls back: after the cooldown the job returns to one executor, gracefully.
    *rate.lock().unwrap() = 100.0;
    let fell = wait_until_every(POLL, Duration::from_secs(150), "back to one executor", || async {
        job.executors().await.len() == 1
    })
    .await;
    eprintln!("back to one executor {:.1} s after the load fell", fell.as_secs_f64());
    wait_until_every(POLL, Duration::from_secs(30), "a record with live = requested = 1", || async {
        l.decision.decisions().iter().any(|(_, d)| {
            d.executors
                .as_ref()
                .is_some_and(|e| e.requested == 1 && e.live == Some(1) && e.agent_target == Some(1))
        })
    })
    .await;
    let (failed_tasks, failed_stages) = job.failures().await;
    assert_eq!((failed_tasks, failed_stages), (0, 0), "scale-down without a failed task or stage");
    // Every decision was also recorded in Redis, with where each setting went.
    let log = l.redis.recent(&format!("{{{}}}:decisions", l.settings.key_prefix), 1_000).await.unwrap();
    assert_eq!(log.len(), l.decision.decisions().len());
    let last: DecisionRecord = serde_json::from_slice(&log[0]).unwrap();
    assert!(
        last.actuation.iter().any(|p| p.setting == handlers::Setting::Executors && p.via.contains("agent")),
        "{last:?}"
    );

    let delays = l.decision.metric_delays();
    eprintln!(
        "micro-batch end -> metrics in scaling-decision: median {:.3} s, p99 {:.3} s over {} batches",
        quantile(&delays, 0.5),
        quantile(&delays, 0.99),
        delays.len()
    );
    assert!(quantile(&delays, 0.5) < 5.0, "{delays:?}");
    let _ = stop_feed.send(true);
    let _ = fed.await;
    let _ = l.stop.send(true);
    drop(job);
}

/// A broker of its own (so that stopping it disturbs no other test), from the tansu `infra/setup`
/// built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_and_its_agent_ride_out_the_broker_going_away_and_coming_back() {
    let _one = ONE_JOB.lock().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let brokers = format!("127.0.0.1:{port}");
    let tag = unique("outage");
    let topics = Topics::tagged(&tag);
    let raw = format!("iot-raw-data-{tag}");
    let all = [raw.as_str(), topics.spark_metrics.as_str(), topics.scaling_decisions.as_str()];
    let mut broker = tests::OwnBroker::start(port, &all).await;
    let rate = Arc::new(Mutex::new(200.0));
    let (stop_feed, feeding) = tokio::sync::watch::channel(false);
    let fed = feed(&brokers, &raw, rate.clone(), feeding);
    let job = Job::submit(&brokers, &raw, &topics, 3, &[]).await;

    let metrics_reader = || {
        let c: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", unique("metrics-reader"))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        c.subscribe(&[&topics.spark_metrics]).unwrap();
        c
    };
    let next_metrics = |c: StreamConsumer| async move {
        let m = tokio::time::timeout(Duration::from_secs(90), c.recv())
            .await
            .expect("a spark-metrics record within 90 s")
            .expect("consumer");
        serde_json::from_slice::<SparkMetrics>(m.payload().unwrap())
            .expect("the agent's record parses as scaling-decision reads it")
    };
    let first = next_metrics(metrics_reader()).await;
    assert!(first.agent.is_some(), "{first:?}");

    // The broker goes away for 20 s: the query and the agent keep running on the last target.
    broker.stop().await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(job.alive().await, "the driver still answers");
    assert_eq!(job.executors().await.len(), 1);
    // It comes back empty (memory storage), on the same port, with the topics re-created.
    let _broker = tests::OwnBroker::start(broker.port, &all).await;
    let back = now_s();
    let resumed = next_metrics(metrics_reader()).await;
    assert!(resumed.timestamp >= back - 1.0, "metrics resume after the outage: {resumed:?}");
    // And the agent follows decisions again.
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let decision = json!({"time_s": now_s(), "dry_run": false, "applied": {"executors": 2}});
    producer
        .send(
            FutureRecord::to(&topics.scaling_decisions).key("decision").payload(&decision.to_string()),
            Duration::from_secs(10),
        )
        .await
        .expect("decision published");
    wait_until_every(POLL, Duration::from_secs(90), "two executors after the broker came back", || async {
        job.executors().await.len() == 2
    })
    .await;
    assert!(job.alive().await);
    let _ = stop_feed.send(true);
    let _ = fed.await;
    drop(job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_live_spark_plays_a_trace_against_the_real_job_beside_the_arena() {
    let _one = ONE_JOB.lock().await;
    service_env("KAFKA_BROKERS");
    let out = tokio::process::Command::new(workspace_binary("sparkpilot"))
        .args([
            "replay",
            "--live",
            "--spark",
            "--trace",
            "flash-crowd",
            "--seed",
            "1",
            "--max-executors",
            "3",
            "--spark-seconds",
            "45",
            "--spark-scale",
            "0.2",
        ])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("sparkpilot runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{stdout}"))
            .to_string()
    };
    // Both sides report a share of events over the SLA and executors, from their own runs.
    for name in ["real job", "arena"] {
        let r = row(name);
        let over: f64 =
            r.split_whitespace().rev().nth(1).and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{r}"));
        assert!((0.0..=100.0).contains(&over), "{r}");
    }
    // The real job had executors while the trace played, read from Spark's REST API.
    let at_30 = row("30:");
    let real: u32 =
        at_30.split_whitespace().nth(2).and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{at_30}"));
    assert!((1..=3).contains(&real), "{stdout}");
}
