//! The event-source bridge: what Lambda's MSK event-source mapping (or OpenFaaS's kafka-connector)
//! does for a deployed function, for a local stack.
//!
//! * Consumes the routed topics with an rdkafka consumer group, offsets committed by hand.
//! * Batches records per function until `batch_size` records or `batch_window` has passed since the
//!   batch's first record (the event-source mapping's `BatchSize` and
//!   `MaximumBatchingWindowInSeconds`), and invokes the function with a Kafka batch.
//! * Commits a batch's offsets only after it has been handled (at-least-once, as on AWS): a crash
//!   redelivers, and the handlers are idempotent for it.
//! * A failed invocation is retried with backoff; after `max_attempts` the batch is split in halves
//!   until the record that fails is alone (the mapping's `BisectBatchOnFunctionError`), and a record
//!   that fails `max_attempts` times on its own goes to the dead-letter topic. A record the handler
//!   reports as malformed goes there at once: decoding it again cannot succeed.
//! * Fires the schedule-triggered functions on their periods.
//!
//! Its clients are made from [`adapters::client_config`], like every other Kafka client of
//! sparkpilot; `sparkpilot bridge` runs it in front of the five handlers on their real backends.
//!
//! ```
//! use bridge::{Bridge, BridgeConfig, BridgeError};
//! // A mapping's batch holds 1 to 10,000 records: other sizes are refused before a client is made.
//! let config = BridgeConfig { batch_size: 0, ..BridgeConfig::default() };
//! assert!(matches!(Bridge::new(config, vec![], vec![]), Err(BridgeError::Config(_))));
//! ```

use handlers::{Handler, KafkaMessage, Trigger};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod error;
pub use error::BridgeError;

/// How the bridge batches, retries and connects.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    pub group_id: String,
    /// Records per invocation at most (MSK event-source mapping default: 100).
    pub batch_size: usize,
    /// Longest a record waits for its batch to fill (MSK default: 500 ms).
    pub batch_window: Duration,
    /// Tries of a failing invocation before its batch is bisected, and of a lone record before it
    /// is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt.
    pub retry_backoff: Duration,
    /// Where records that keep failing go.
    pub dead_letter_topic: String,
    /// Hand every batch to its function twice (a redelivery drill: the handlers must not act twice).
    pub deliver_twice: bool,
    /// More librdkafka settings for the consumer and producer (security, SASL, timeouts).
    pub extra: Vec<(String, String)>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "sparkpilot-bridge".into(),
            batch_size: 100,
            batch_window: Duration::from_millis(500),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(50),
            dead_letter_topic: "sparkpilot-dlq".into(),
            deliver_twice: false,
            extra: Vec::new(),
        }
    }
}

/// A topic and the function its records trigger.
#[derive(Clone)]
pub struct Route {
    pub topic: String,
    pub function: Arc<dyn Handler>,
}

/// A function run on a period.
#[derive(Clone)]
pub struct Schedule {
    pub every: Duration,
    pub function: Arc<dyn Handler>,
}

/// Counters, readable while the bridge runs.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub invocations: AtomicU64,
    pub failed_invocations: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub commits: AtomicU64,
    pub schedule_runs: AtomicU64,
}

impl BridgeStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The bridge: a consumer, a dead-letter producer, routes and schedules.
pub struct Bridge {
    config: BridgeConfig,
    consumer: StreamConsumer,
    producer: FutureProducer,
    routes: HashMap<String, Arc<dyn Handler>>,
    schedules: Vec<Schedule>,
    pub stats: Arc<BridgeStats>,
    /// Next offset per topic and partition, as last committed (asynchronously).
    committed: std::sync::Mutex<BTreeMap<(String, i64), i64>>,
}

impl Bridge {
    pub fn new(
        config: BridgeConfig,
        routes: Vec<Route>,
        schedules: Vec<Schedule>,
    ) -> Result<Self, BridgeError> {
        if config.batch_size == 0 || config.batch_size > 10_000 {
            return Err(BridgeError::Config(format!(
                "batch size {} must be 1-10000 (the event-source mapping's range)",
                config.batch_size
            )));
        }
        if config.max_attempts == 0 {
            return Err(BridgeError::Config("max_attempts must be at least 1".into()));
        }
        if routes.is_empty() && schedules.is_empty() {
            return Err(BridgeError::Config("the bridge has no routes and no schedules".into()));
        }
        // The user's extra settings may override these (e.g. session.timeout.ms).
        let consumer_defaults = [
            ("group.id", config.group_id.clone()),
            ("enable.auto.commit", "false".into()),
            ("auto.offset.reset", "earliest".into()),
            ("enable.partition.eof", "false".into()),
        ];
        let cc = adapters::client_config(&config.brokers, &consumer_defaults, &config.extra);
        let consumer: StreamConsumer =
            cc.create().map_err(|e| BridgeError::Kafka(format!("consumer for {}: {e}", config.brokers)))?;
        let topics: Vec<&str> = routes.iter().map(|r| r.topic.as_str()).collect();
        if !topics.is_empty() {
            consumer
                .subscribe(&topics)
                .map_err(|e| BridgeError::Kafka(format!("subscribe {topics:?}: {e}")))?;
        }
        let producer_defaults = [("message.timeout.ms", "5000".into()), ("linger.ms", "1".into())];
        let pc = adapters::client_config(&config.brokers, &producer_defaults, &config.extra);
        let producer: FutureProducer = pc
            .create()
            .map_err(|e| BridgeError::Kafka(format!("dead-letter producer for {}: {e}", config.brokers)))?;
        let routes = routes.into_iter().map(|r| (r.topic, r.function)).collect();
        Ok(Self {
            config,
            consumer,
            producer,
            routes,
            schedules,
            stats: Arc::new(BridgeStats::default()),
            committed: Default::default(),
        })
    }

    /// Run until `stop` turns true. Schedules run as their own tasks on the current runtime.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<(), BridgeError> {
        let mut tasks = Vec::new();
        for s in &self.schedules {
            let (s, stats, mut stop) = (s.clone(), self.stats.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(s.every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let now = handlers::events::now_s();
                            if let Err(e) = s.function.handle(Trigger::Schedule { time_s: now }).await {
                                tracing::warn!(function = s.function.name(), error = %e, "scheduled run failed");
                            }
                            stats.schedule_runs.fetch_add(1, Ordering::Relaxed);
                        }
                        _ = stop.changed() => break,
                    }
                }
            }));
        }
        let result = if self.routes.is_empty() {
            let _ = stop.changed().await;
            Ok(())
        } else {
            self.consume(&mut stop).await
        };
        for t in tasks {
            t.abort();
        }
        result
    }

    async fn consume(&self, stop: &mut watch::Receiver<bool>) -> Result<(), BridgeError> {
        let result = self.consume_until_stopped(stop).await;
        // The commits were sent without waiting; make sure the last ones reached the broker.
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), o) in self.committed.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = tpl.add_partition_offset(topic, *p as i32, Offset::Offset(*o));
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "final commit failed; the last batches will be redelivered");
            }
        }
        result
    }

    async fn consume_until_stopped(&self, stop: &mut watch::Receiver<bool>) -> Result<(), BridgeError> {
        // Per function: records waiting, and when the oldest arrived.
        let mut pending: BTreeMap<String, (Instant, Vec<KafkaMessage>)> = BTreeMap::new();
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            // Wait for a record at most until the oldest waiting batch is due.
            let wait = pending
                .values()
                .map(|(since, _)| self.config.batch_window.saturating_sub(since.elapsed()))
                .min()
                .unwrap_or(Duration::from_millis(200));
            tokio::select! {
                msg = tokio::time::timeout(wait, self.consumer.recv()) => match msg {
                    Ok(Ok(m)) => {
                        let record = KafkaMessage {
                            topic: m.topic().into(),
                            partition: m.partition() as i64,
                            offset: m.offset(),
                            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                            key: m.key().map(|k| k.to_vec()),
                            value: m.payload().map(|p| Ok(p.to_vec())),
                        };
                        self.stats.records.fetch_add(1, Ordering::Relaxed);
                        let entry = pending.entry(record.topic.to_string()).or_insert_with(|| (Instant::now(), Vec::new()));
                        entry.1.push(record);
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "kafka consumer"),
                    Err(_) => {}
                },
                _ = stop.changed() => return Ok(()),
            }
            let due: Vec<String> = pending
                .iter()
                .filter(|(_, (since, batch))| {
                    batch.len() >= self.config.batch_size || since.elapsed() >= self.config.batch_window
                })
                .map(|(t, _)| t.clone())
                .collect();
            for topic in due {
                let (_, mut batch) = pending.remove(&topic).unwrap_or_else(|| (Instant::now(), Vec::new()));
                while !batch.is_empty() {
                    let rest = if batch.len() > self.config.batch_size {
                        batch.split_off(self.config.batch_size)
                    } else {
                        Vec::new()
                    };
                    self.deliver(&topic, batch).await?;
                    batch = rest;
                }
            }
        }
    }

    /// Handle one batch to the end (success or dead letter), then commit its offsets.
    async fn deliver(&self, topic: &str, batch: Vec<KafkaMessage>) -> Result<(), BridgeError> {
        let Some(function) = self.routes.get(topic).cloned() else { return Ok(()) };
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let rounds = if self.config.deliver_twice { 2 } else { 1 };
        // A record is dead-lettered once, however often its batch is delivered.
        let mut dead = HashSet::new();
        for _ in 0..rounds {
            self.handle_bisecting(function.as_ref(), batch.clone(), &mut dead).await?;
        }
        let mut tpl = TopicPartitionList::new();
        let mut next: BTreeMap<i64, i64> = BTreeMap::new();
        for r in &batch {
            let e = next.entry(r.partition).or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        for (p, o) in next {
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(o))
                .map_err(|e| BridgeError::Kafka(format!("commit list: {e}")))?;
            self.committed.lock().unwrap_or_else(|e| e.into_inner()).insert((topic.to_string(), p), o);
        }
        // Sent after the batch is handled, not awaited: waiting for the broker's answer would hold
        // the next batch back a round trip, and a commit that is lost only means a redelivery,
        // which the handlers recognise.
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| BridgeError::Kafka(format!("commit {topic}: {e}")))?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Invoke with retries; on lasting failure bisect; lone records that keep failing are
    /// dead-lettered. Records the handler calls malformed are dead-lettered at once.
    async fn handle_bisecting(
        &self,
        function: &dyn Handler,
        batch: Vec<KafkaMessage>,
        dead: &mut HashSet<(String, i64, i64)>,
    ) -> Result<(), BridgeError> {
        let mut work = vec![batch];
        while let Some(batch) = work.pop() {
            let mut last_error = String::new();
            let mut done = false;
            for attempt in 0..self.config.max_attempts {
                if attempt > 0 {
                    tokio::time::sleep(self.config.retry_backoff * 2u32.saturating_pow(attempt - 1)).await;
                }
                self.stats.invocations.fetch_add(1, Ordering::Relaxed);
                match function.handle(Trigger::Kafka(batch.clone())).await {
                    Ok(out) => {
                        self.dead_letter_malformed(function.name(), &batch, &out, dead).await?;
                        done = true;
                        break;
                    }
                    Err(e) => {
                        self.stats.failed_invocations.fetch_add(1, Ordering::Relaxed);
                        last_error = e.to_string();
                        tracing::warn!(function = function.name(), attempt = attempt + 1, records = batch.len(), error = %e, "invocation failed");
                    }
                }
            }
            if done {
                continue;
            }
            if batch.len() == 1 {
                self.dead_letter(function.name(), &batch[0], &last_error, self.config.max_attempts, dead)
                    .await?;
            } else {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                // Depth first, earlier records first: order within a partition is kept.
                work.push(second);
                work.push(first);
            }
        }
        Ok(())
    }

    async fn dead_letter_malformed(
        &self,
        function: &str,
        batch: &[KafkaMessage],
        out: &handlers::Outcome,
        dead: &mut HashSet<(String, i64, i64)>,
    ) -> Result<(), BridgeError> {
        for e in out.record_errors() {
            let at = &e.record;
            if let Some(r) = batch.iter().find(|r| {
                r.partition == at.partition
                    && r.offset == at.offset
                    && (at.topic.is_empty() || *r.topic == *at.topic)
            }) {
                self.dead_letter(function, r, &e.error, 1, dead).await?;
            }
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        function: &str,
        r: &KafkaMessage,
        error: &str,
        attempts: u32,
        dead: &mut HashSet<(String, i64, i64)>,
    ) -> Result<(), BridgeError> {
        if !dead.insert((r.topic.to_string(), r.partition, r.offset)) {
            return Ok(());
        }
        let (partition, offset, attempts) =
            (r.partition.to_string(), r.offset.to_string(), attempts.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header { key: "x-sparkpilot-error", value: Some(error) })
            .insert(Header { key: "x-sparkpilot-function", value: Some(function) })
            .insert(Header { key: "x-sparkpilot-source-topic", value: Some(&*r.topic) })
            .insert(Header { key: "x-sparkpilot-source-partition", value: Some(partition.as_str()) })
            .insert(Header { key: "x-sparkpilot-source-offset", value: Some(offset.as_str()) })
            .insert(Header { key: "x-sparkpilot-attempts", value: Some(attempts.as_str()) });
        let payload: &[u8] = match &r.value {
            Some(Ok(v)) => v,
            _ => &[],
        };
        let mut record = FutureRecord::to(&self.config.dead_letter_topic).payload(payload).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        self.producer.send(record, Duration::from_secs(5)).await.map_err(|(e, _)| {
            BridgeError::Kafka(format!("dead letter to {}: {e}", self.config.dead_letter_topic))
        })?;
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(function, topic = %r.topic, partition = r.partition, offset = r.offset, error, "record dead-lettered");
        Ok(())
    }
}

/// A dead-lettered record's headers, by name (tests and tools read them back).
pub fn dead_letter_headers<M: Message>(m: &M) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(h) = m.headers() {
        for i in 0..h.count() {
            let header = h.get(i);
            out.insert(
                header.key.to_string(),
                header.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
            );
        }
    }
    out
}
