//! The live stack: the handlers on their real backends (Redis, Kafka, EMR Serverless, S3), fed by the
//! event-source bridge, as `sparkpilot bridge` runs them and as `sparkpilot replay --live` drives them.

use crate::replay::ControlPlane;
use crate::PipelineError;
use adapters::create_topics;
use adapters::{BufferedKafkaProducer, EmrServerless, KafkaPublisher, RedisStore, S3Store};
use async_trait::async_trait;
use bridge::{Bridge, BridgeConfig, Route, Schedule};
use control::ScalingAction;
use handlers::memory::{DirStore, MemoryHotTier};
use handlers::ports::{AppStatus, EmrControl};
use handlers::{
    Backends, EdgeRecord, Handler, HandlerError, Outcome, Settings, SparkMetrics, Topics, Trigger,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The deployment's triggers (template.yaml, stack.yml): topics to functions.
pub fn standard_routes(
    topics: &Topics,
    functions: &HashMap<&'static str, Arc<dyn Handler>>,
) -> Result<Vec<Route>, PipelineError> {
    let get = |name: &str| {
        functions.get(name).cloned().ok_or_else(|| PipelineError::Config(format!("no handler for {name}")))
    };
    Ok(vec![
        Route { topic: topics.iot_metadata.clone(), function: get("burst-signal")? },
        Route { topic: topics.scaling_requests.clone(), function: get("scaling-decision")? },
        Route { topic: topics.spark_metrics.clone(), function: get("scaling-decision")? },
    ])
}

/// The deployment's schedules: meta-weights every 5 minutes, prewarmer and scaling-decision every
/// minute.
pub fn standard_schedules(functions: &HashMap<&'static str, Arc<dyn Handler>>) -> Vec<Schedule> {
    [("meta-weights", 300), ("prewarmer", 60), ("scaling-decision", 60)]
        .into_iter()
        .filter_map(|(name, s)| {
            functions.get(name).map(|f| Schedule { every: Duration::from_secs(s), function: f.clone() })
        })
        .collect()
}

/// A handler wrapper that counts what it handled, per topic, and keeps its last output.
pub struct Observed {
    inner: Arc<dyn Handler>,
    handled: Mutex<HashMap<String, u64>>,
    last: Mutex<Option<Outcome>>,
    calls: AtomicU64,
}

impl Observed {
    pub fn new(inner: Arc<dyn Handler>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            handled: Mutex::new(HashMap::new()),
            last: Mutex::new(None),
            calls: AtomicU64::new(0),
        })
    }
    /// Records of `topic` handled so far.
    pub fn handled(&self, topic: &str) -> u64 {
        self.handled.lock().unwrap_or_else(|p| p.into_inner()).get(topic).copied().unwrap_or(0)
    }
    pub fn last(&self) -> Option<Outcome> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Handler for Observed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn handle(&self, trigger: Trigger) -> Result<Outcome, HandlerError> {
        let counts: Vec<(String, u64)> = match &trigger {
            Trigger::Kafka(records) => {
                let mut m: BTreeMap<&str, u64> = BTreeMap::new();
                for r in records {
                    *m.entry(&*r.topic).or_default() += 1;
                }
                m.into_iter().map(|(t, n)| (t.to_string(), n)).collect()
            }
            _ => Vec::new(),
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let out = self.inner.handle(trigger).await?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(out.clone());
        let mut handled = self.handled.lock().unwrap_or_else(|p| p.into_inner());
        for (t, n) in counts {
            *handled.entry(t).or_default() += n;
        }
        Ok(out)
    }
}

/// Where the live stack is (the variables `infra/services env` prints).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub kafka_brokers: String,
    pub redis_url: String,
}

impl Endpoints {
    /// From `KAFKA_BROKERS` and `REDIS_URL`; AWS clients read `AWS_ENDPOINT_URL` themselves.
    pub fn from_env() -> Result<Self, PipelineError> {
        let need = |k: &str| {
            std::env::var(k).ok().filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                PipelineError::Config(format!(
                    "{k} is not set: start the local stack (eval \"$(infra/services start)\")"
                ))
            })
        };
        Ok(Self { kafka_brokers: need("KAFKA_BROKERS")?, redis_url: need("REDIS_URL")? })
    }
}

/// The live control plane of a replay: records go through Kafka and the bridge to handlers on Redis,
/// Kafka, EMR Serverless and S3 (moto on a local stack). Each run gets its own topics, key prefix,
/// consumer group, application (STARTED, as a streaming job keeps it: the decisions reach the
/// replayed job as they would through its agent) and bucket. ElastiCache stays in memory: the emulator lacks shard configuration.
pub struct LivePlane {
    settings: Settings,
    publisher: Arc<BufferedKafkaProducer>,
    burst: Arc<Observed>,
    decision: Arc<Observed>,
    direct: HashMap<&'static str, Arc<dyn Handler>>,
    emr: Arc<EmrServerless>,
    stop: watch::Sender<bool>,
    bridge: tokio::task::JoinHandle<Result<(), bridge::BridgeError>>,
    produced_control: u64,
    expected_requests: u64,
    invocations: BTreeMap<String, usize>,
    record_errors: usize,
    timeout: Duration,
    pub application_id: String,
}

/// The bridge in front of the functions for one run: large batches and a short window, so that a
/// second's records reach a function together and quickly.
fn start_bridge(
    brokers: &str,
    tag: &str,
    dead_letter_topic: String,
    routes: Vec<Route>,
    stopped: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Result<(), bridge::BridgeError>>, PipelineError> {
    let config = BridgeConfig {
        brokers: brokers.to_string(),
        group_id: format!("sparkpilot-replay-{tag}"),
        batch_size: 10_000,
        batch_window: Duration::from_millis(5),
        dead_letter_topic,
        extra: vec![("session.timeout.ms".into(), "6000".into()), ("fetch.wait.max.ms".into(), "1".into())],
        ..BridgeConfig::default()
    };
    let bridge = Bridge::new(config, routes, vec![])?;
    Ok(tokio::spawn(async move { bridge.run(stopped).await }))
}

impl LivePlane {
    pub async fn connect(
        endpoints: &Endpoints,
        settings: &Settings,
        start: &ScalingAction,
        tag: &str,
    ) -> Result<Self, PipelineError> {
        let mut settings = settings.clone();
        settings.topics = Topics::tagged(tag);
        settings.key_prefix = format!("replay-{tag}");
        let dlq = format!("sparkpilot-dlq-{tag}");
        let t = &settings.topics;
        create_topics(
            &endpoints.kafka_brokers,
            &[&t.iot_metadata, &t.scaling_requests, &t.spark_metrics, &t.scaling_decisions, &dlq],
        )
        .await?;
        let conf = adapters::sdk_config().await;
        let emr_client = aws_sdk_emrserverless::Client::new(&conf);
        let application_id = create_application(
            &emr_client,
            start,
            settings.guardrails.max_executors.max(start.executors),
            settings.vcpu_per_executor,
            tag,
        )
        .await?;
        let s3 = adapters::s3_client(&conf, &|k| std::env::var(k).ok());
        let bucket = format!("sparkpilot-replay-{tag}").to_lowercase();
        s3.create_bucket().bucket(&bucket).send().await.map_err(|e| {
            PipelineError::Protocol(format!(
                "CreateBucket {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ))
        })?;
        // The functions publish with their own producer; what the replay sends as the edges and the
        // job goes through a buffering one, a whole interval's records queued together.
        let kafka_error = |e: adapters::AdapterError| PipelineError::Kafka(e.to_string());
        let publisher = Arc::new(
            BufferedKafkaProducer::new(&endpoints.kafka_brokers, &[("linger.ms".into(), "0".into())])
                .map_err(kafka_error)?,
        );
        let emr = Arc::new(EmrServerless::new(emr_client, &application_id));
        let nvme = std::env::temp_dir().join(format!("sparkpilot-nvme-{tag}"));
        let backends = Backends {
            store: Arc::new(
                RedisStore::connect(&endpoints.redis_url)
                    .await
                    .map_err(|e| PipelineError::Config(e.to_string()))?,
            ),
            publisher: Arc::new(KafkaPublisher::new(&endpoints.kafka_brokers).map_err(kafka_error)?),
            emr: emr.clone(),
            hot_tier: Arc::new(MemoryHotTier::default()),
            objects: Arc::new(S3Store::new(s3, &bucket)),
            nvme: Arc::new(DirStore::new(&nvme).map_err(|e| PipelineError::Config(e.to_string()))?),
        };
        let mut direct = HashMap::new();
        for name in handlers::FUNCTIONS {
            direct.insert(name, handlers::build(name, &settings, &backends)?);
        }
        let burst = Observed::new(direct["burst-signal"].clone());
        let decision = Observed::new(direct["scaling-decision"].clone());
        // The schedules are driven in simulated time by the replay, not by the bridge's clock.
        let routes = vec![
            Route { topic: t.iot_metadata.clone(), function: burst.clone() },
            Route { topic: t.scaling_requests.clone(), function: decision.clone() },
            Route { topic: t.spark_metrics.clone(), function: decision.clone() },
        ];
        let (stop, stopped) = watch::channel(false);
        let task = start_bridge(&endpoints.kafka_brokers, tag, dlq, routes, stopped)?;
        Ok(Self {
            settings,
            publisher,
            burst,
            decision,
            direct,
            emr,
            stop,
            bridge: task,
            produced_control: 0,
            expected_requests: 0,
            invocations: BTreeMap::new(),
            record_errors: 0,
            timeout: Duration::from_secs(60),
            application_id,
        })
    }

    async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        time_s: f64,
    ) -> Result<(), PipelineError> {
        let failed = |e: String| PipelineError::Kafka(format!("produce to {topic}: {e}"));
        let ts = (time_s.is_finite() && time_s > 0.0).then_some((time_s * 1_000.0) as i64);
        self.publisher
            .enqueue(topic, key, payload, ts)
            .map_err(|e| failed(e.to_string()))?
            .await
            .map_err(failed)
    }

    async fn wait(&self, what: &str, done: impl Fn() -> bool) -> Result<(), PipelineError> {
        let start = Instant::now();
        while !done() {
            if start.elapsed() > self.timeout {
                return Err(PipelineError::Timeout(format!("{what} after {:?}", self.timeout)));
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        Ok(())
    }

    /// Stop the bridge.
    pub async fn shutdown(self) -> Result<(), PipelineError> {
        let _ = self.stop.send(true);
        Ok(self.bridge.await.map_err(|e| PipelineError::Protocol(format!("bridge task: {e}")))??)
    }
}

#[async_trait]
impl ControlPlane for LivePlane {
    async fn invoke(&mut self, name: &'static str, trigger: Trigger) -> Result<Outcome, PipelineError> {
        let h = self
            .direct
            .get(name)
            .cloned()
            .ok_or_else(|| PipelineError::Config(format!("no handler {name}")))?;
        *self.invocations.entry(name.to_string()).or_default() += 1;
        let out =
            h.handle(trigger).await.map_err(|error| PipelineError::Handler { function: name, error })?;
        self.record_errors += out.record_errors().len();
        Ok(out)
    }

    async fn send_control(&mut self, records: &[EdgeRecord]) -> Result<(), PipelineError> {
        let topics = self.settings.topics.clone();
        // Queued together, then awaited: one round of deliveries for the interval's records.
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            let value =
                serde_json::to_vec(r).map_err(|e| PipelineError::Config(format!("edge record: {e}")))?;
            let ts = Some((r.timestamp * 1_000.0) as i64);
            deliveries.push(
                self.publisher
                    .enqueue(&topics.iot_metadata, &r.edge_id, &value, ts)
                    .map_err(|e| PipelineError::Kafka(format!("produce to {}: {e}", topics.iot_metadata)))?,
            );
        }
        for d in deliveries {
            d.await.map_err(|e| PipelineError::Kafka(format!("produce to {e}")))?;
        }
        self.produced_control += records.len() as u64;
        let want = self.produced_control;
        let burst = self.burst.clone();
        self.wait("burst-signal handling the interval's control messages", || {
            burst.handled(&topics.iot_metadata) >= want
        })
        .await?;
        // A changed cluster state was published to scaling-requests: let scaling-decision take it
        // before this interval's metrics, as the in-process plane does.
        if self.burst.last().is_some_and(|o| o.burst().is_some_and(|b| b.changed)) {
            self.expected_requests += 1;
            let want = self.expected_requests;
            let decision = self.decision.clone();
            self.wait("scaling-decision handling a scaling request", || {
                decision.handled(&topics.scaling_requests) >= want
            })
            .await?;
        }
        Ok(())
    }

    async fn send_metrics(&mut self, metrics: &SparkMetrics, time_s: f64) -> Result<Outcome, PipelineError> {
        let topic = self.settings.topics.spark_metrics.clone();
        let value =
            serde_json::to_vec(metrics).map_err(|e| PipelineError::Config(format!("spark metrics: {e}")))?;
        let want = self.decision.handled(&topic) + 1;
        self.produce(&topic, "job", &value, time_s).await?;
        let decision = self.decision.clone();
        self.wait("scaling-decision handling the interval's spark-metrics", || {
            decision.handled(&topic) >= want
        })
        .await?;
        self.decision
            .last()
            .ok_or_else(|| PipelineError::Protocol("scaling-decision returned nothing".into()))
    }

    async fn application(&self) -> Result<AppStatus, PipelineError> {
        self.emr.get_application().await.map_err(|e| PipelineError::Protocol(e.to_string()))
    }

    fn invocations(&self) -> BTreeMap<String, usize> {
        // The bridge invokes these two; the rest are invoked directly, on their schedules.
        let mut all = self.invocations.clone();
        all.insert("burst-signal".into(), self.burst.calls() as usize);
        all.insert("scaling-decision".into(), self.decision.calls() as usize);
        all
    }

    fn record_errors(&self) -> usize {
        self.record_errors
    }
}

/// A STARTED application, as a streaming job keeps it, with room for the guardrails' ceiling of
/// `most` executors: scaling-decision cannot update it, and the replayed job's agent moves the
/// executors inside it.
pub(crate) async fn create_application(
    client: &aws_sdk_emrserverless::Client,
    start: &ScalingAction,
    most: u32,
    vcpu: u32,
    tag: &str,
) -> Result<String, PipelineError> {
    use aws_sdk_emrserverless::types::MaximumAllowedResources;
    let err = |op: &str, e: String| PipelineError::Protocol(format!("EMR Serverless {op}: {e}"));
    let max = MaximumAllowedResources::builder()
        .cpu(format!("{} vCPU", most * vcpu))
        .memory(format!("{} GB", most * start.memory_gb))
        .build()
        .map_err(|e| err("CreateApplication", e.to_string()))?;
    let out = client
        .create_application()
        .name(format!("sparkpilot-replay-{tag}"))
        .release_label("emr-7.5.0")
        .r#type("SPARK")
        .maximum_capacity(max)
        .send()
        .await
        .map_err(|e| {
            err("CreateApplication", aws_sdk_emrserverless::error::DisplayErrorContext(e).to_string())
        })?;
    let id = out.application_id().to_string();
    client.start_application().application_id(&id).send().await.map_err(|e| {
        err("StartApplication", aws_sdk_emrserverless::error::DisplayErrorContext(e).to_string())
    })?;
    Ok(id)
}

/// Replay `trace` on the live stack at `endpoints`.
pub async fn replay_live(
    arena: &sim::Arena,
    trace: &traces::Trace,
    seed: u64,
    options: &crate::replay::ReplayOptions,
    endpoints: &Endpoints,
) -> Result<crate::replay::ReplayReport, PipelineError> {
    let settings = crate::replay::replay_settings(arena, options.scenario);
    let start = sim::Episode::new(arena, trace, seed)?.action();
    let tag = run_tag();
    let mut plane = LivePlane::connect(endpoints, &settings, &start, &tag).await?;
    let result = crate::replay::run(arena, trace, seed, options, &settings, &mut plane).await;
    plane.shutdown().await?;
    result
}

/// A tag no other run on the stack has (process and start time): it names this run's topics, keys,
/// consumer group and EMR application, so runs sharing a broker and a Redis never meet.
pub(crate) fn run_tag() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{}-{ms}", std::process::id())
}
