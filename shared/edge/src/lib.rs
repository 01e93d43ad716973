//! The edge agent a user runs on an IoT gateway (`sparkpilot edge`): it subscribes to the devices'
//! MQTT topics, counts the messages and bytes of each second, runs the gateway's burst detector on
//! that rate ([`control::gateway::Gateway`], the code the arena's gateways run) and publishes one
//! `iot-metadata` record a second; it also forwards every device message to `iot-raw-data`.
//!
//! **Delivery.** Device messages are taken at QoS 1 with a persistent session and acknowledged to
//! the MQTT broker only once Kafka has them, so a message is lost neither when the agent restarts
//! (the broker sends it again) nor while Kafka is away: records wait in the producer's buffer, which
//! retries them until delivered (`message.timeout.ms=0`). The buffer is bounded
//! ([`EdgeConfig::buffer_messages`]); when it is full a device message is dropped (acknowledged, so
//! the broker does not send it again) and counted in [`EdgeStats::dropped_raw`], and the agent logs
//! the count. A message can be forwarded twice (at least once): when the agent stops between
//! Kafka's acknowledgement and its own to the broker.
//!
//! **Records.** Each `iot-metadata` record is a [`control::EdgeRecord`] (rate, forecast, burst
//! signal) with the second's mean message size added (`bytes_per_event`; readers of `EdgeRecord`
//! ignore it). The timestamp is the end of the second counted, on the gateway's clock.

mod error;

pub use error::EdgeError;

use adapters::{BufferedKafkaProducer, Delivery, EnqueueError};
use control::gateway::Gateway;
use control::{BurstDetectorConfig, EdgeRecord};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, Transport};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// What the agent connects to and how it reports.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]` (TLS, the system's roots).
    pub mqtt_url: String,
    /// MQTT user name and password, if the broker asks for them.
    pub mqtt_credentials: Option<(String, String)>,
    /// Topic filters the devices publish under.
    pub topics: Vec<String>,
    /// This gateway's id: its `edge_id` in the records and its MQTT client id.
    pub gateway_id: String,
    pub metadata_topic: String,
    pub raw_topic: String,
    /// Forward device messages to [`raw_topic`](Self::raw_topic) (off: report rates only).
    pub forward_raw: bool,
    /// Most records the producer holds while Kafka is away (device messages and reports).
    pub buffer_messages: usize,
    pub detector: BurstDetectorConfig,
    /// Reporting period (one second: the detector's windows count seconds).
    pub period: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            mqtt_url: "mqtt://127.0.0.1:1883".into(),
            mqtt_credentials: None,
            topics: vec!["devices/#".into()],
            gateway_id: "edge-0000".into(),
            metadata_topic: "iot-metadata".into(),
            raw_topic: "iot-raw-data".into(),
            forward_raw: true,
            buffer_messages: 100_000,
            detector: BurstDetectorConfig::default(),
            period: Duration::from_secs(1),
        }
    }
}

impl EdgeConfig {
    /// The librdkafka settings the agent's producer needs on top of the user's: retry a record until
    /// it is delivered, within a bounded buffer.
    pub fn producer_settings(&self) -> Vec<(String, String)> {
        vec![
            ("message.timeout.ms".into(), "0".into()),
            // An idempotent producer's sequence state dies with a broker that loses its own (a
            // restarted single broker), and librdkafka then stops the producer for good; at least
            // once needs no idempotence.
            ("enable.idempotence".into(), "false".into()),
            ("queue.buffering.max.messages".into(), self.buffer_messages.max(1).to_string()),
            ("linger.ms".into(), "5".into()),
        ]
    }

    fn mqtt_options(&self) -> Result<MqttOptions, EdgeError> {
        let bad = |why: &str| EdgeError::Config(format!("MQTT URL {:?}: {why}", self.mqtt_url));
        let (tls, rest) = match self.mqtt_url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => (false, rest),
            Some(("mqtts" | "ssl", rest)) => (true, rest),
            _ => return Err(bad("expected mqtt://host[:port] or mqtts://host[:port]")),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("the port is not a number"))?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if self.gateway_id.is_empty() || self.topics.is_empty() {
            return Err(EdgeError::Config("a gateway id and at least one topic are needed".into()));
        }
        let mut opts = MqttOptions::new(&self.gateway_id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        // A persistent session: the broker keeps the subscription and the QoS 1 messages not yet
        // acknowledged while the agent is away, and sends them when it is back.
        opts.set_clean_session(false);
        opts.set_manual_acks(true);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = &self.mqtt_credentials {
            opts.set_credentials(user, password);
        }
        if tls {
            adapters::install_tls_provider();
            opts.set_transport(Transport::tls_with_default_config());
        }
        Ok(opts)
    }
}

/// Counts since the agent started, readable while it runs.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Device messages received.
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Device messages Kafka has (and the broker has been told so).
    pub forwarded: AtomicU64,
    /// Device messages dropped because the buffer was full.
    pub dropped_raw: AtomicU64,
    /// `iot-metadata` records Kafka has.
    pub reports: AtomicU64,
    /// `iot-metadata` records dropped because the buffer was full.
    pub dropped_reports: AtomicU64,
    /// Records Kafka refused for good (not buffer space: an unknown topic, a record too large).
    pub failed: AtomicU64,
    /// Times the MQTT connection was lost.
    pub mqtt_reconnects: AtomicU64,
}

impl EdgeStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The messages and bytes of the current period.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tally {
    pub messages: u64,
    pub bytes: u64,
}

impl Tally {
    pub fn add(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }

    /// Events per second over `elapsed`, and the mean message size (`last_size` when none came).
    pub fn rate(&self, elapsed: Duration, last_size: f64) -> (f64, f64) {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let size = if self.messages > 0 { self.bytes as f64 / self.messages as f64 } else { last_size };
        (self.messages as f64 / secs, size)
    }
}

/// An `iot-metadata` record as the agent publishes it.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeReport {
    #[serde(flatten)]
    pub record: EdgeRecord,
    /// Mean size of the second's device messages, bytes.
    pub bytes_per_event: f64,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// What waits for Kafka's answer: a device message to acknowledge, or a report.
enum Pending {
    Raw(Box<Publish>),
    Report,
}

/// Run the agent until `stop` turns true; returns its counts. `kafka` should be built with
/// [`EdgeConfig::producer_settings`].
pub async fn run(
    config: &EdgeConfig,
    kafka: Arc<BufferedKafkaProducer>,
    stats: Arc<EdgeStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), EdgeError> {
    let gateway = Gateway::new(config.gateway_id.clone(), config.detector)
        .map_err(|e| EdgeError::Config(e.to_string()))?;
    let (client, mut events) = AsyncClient::new(config.mqtt_options()?, 1_024);

    // Kafka's answers are awaited apart from the MQTT loop, which must keep polling meanwhile.
    let (pending_tx, pending_rx) =
        mpsc::channel::<(Delivery, Pending)>(config.buffer_messages.clamp(1, 1 << 20));
    let acker = tokio::spawn(acknowledge(client.clone(), pending_rx, stats.clone()));

    let mut agent = Agent {
        config,
        kafka,
        stats,
        client: client.clone(),
        pending: pending_tx,
        gateway,
        tally: Tally::default(),
        last_size: 0.0,
        period_start: Instant::now(),
        last_drop_log: (0, Instant::now()),
        connected: false,
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + config.period, config.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let step = tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    break Ok(());
                }
                Ok(())
            }
            _ = ticks.tick() => agent.report().await,
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => agent.forward(publish).await,
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    agent.on_connected(ack.session_present);
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => {
                    agent.connected = false;
                    agent.stats.mqtt_reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, url = %config.mqtt_url, "MQTT connection lost; reconnecting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(())
                }
            }
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    drop(agent);
    // What Kafka already has is acknowledged to the broker; the rest the broker sends again.
    let _ = tokio::time::timeout(Duration::from_secs(5), acker).await;
    let _ = client.disconnect().await;
    result
}

/// The agent's state between MQTT events and report ticks.
struct Agent<'a> {
    config: &'a EdgeConfig,
    kafka: Arc<BufferedKafkaProducer>,
    stats: Arc<EdgeStats>,
    client: AsyncClient,
    /// Deliveries Kafka has yet to confirm, for the acknowledging task.
    pending: mpsc::Sender<(Delivery, Pending)>,
    gateway: Gateway,
    /// This period's messages so far.
    tally: Tally,
    last_size: f64,
    period_start: Instant,
    /// Drops counted when they were last logged, and when.
    last_drop_log: (u64, Instant),
    connected: bool,
}

impl Agent<'_> {
    /// The period is over: report its rate and size to `iot-metadata`.
    async fn report(&mut self) -> Result<(), EdgeError> {
        let elapsed = self.period_start.elapsed();
        self.period_start = Instant::now();
        let (rate, size) = std::mem::take(&mut self.tally).rate(elapsed, self.last_size);
        self.last_size = size;
        // Cut off from the devices, the agent does not know the rate: a second reported as zero
        // would read as a burst when they are back.
        if !self.connected {
            return Ok(());
        }
        let (config, stats) = (self.config, &self.stats);
        let report =
            EdgeReport { record: self.gateway.report(unix_now(), rate, false), bytes_per_event: size };
        let payload = serde_json::to_vec(&report).map_err(|e| EdgeError::Config(format!("report: {e}")))?;
        let timestamp_ms = Some((report.record.timestamp * 1_000.0) as i64);
        match self.kafka.enqueue(&config.metadata_topic, &config.gateway_id, &payload, timestamp_ms) {
            Ok(delivery) => self.pend(delivery, Pending::Report).await?,
            Err(EnqueueError::Full) => {
                stats.dropped_reports.fetch_add(1, Ordering::Relaxed);
            }
            Err(EnqueueError::Other(e)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "report not queued");
            }
        }
        let dropped = EdgeStats::get(&stats.dropped_raw) + EdgeStats::get(&stats.dropped_reports);
        if dropped > self.last_drop_log.0 && self.last_drop_log.1.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(
                dropped_raw = EdgeStats::get(&stats.dropped_raw),
                dropped_reports = EdgeStats::get(&stats.dropped_reports),
                buffer = config.buffer_messages,
                "Kafka's buffer is full: records dropped"
            );
            self.last_drop_log = (dropped, Instant::now());
        }
        Ok(())
    }

    /// A device message: count it and forward it to `iot-raw-data`; the broker gets its
    /// acknowledgement once Kafka has it (or at once when it is not forwarded or was dropped).
    async fn forward(&mut self, publish: Publish) -> Result<(), EdgeError> {
        let stats = &self.stats;
        stats.messages.fetch_add(1, Ordering::Relaxed);
        stats.bytes.fetch_add(publish.payload.len() as u64, Ordering::Relaxed);
        self.tally.add(publish.payload.len());
        if !self.config.forward_raw {
            let _ = self.client.try_ack(&publish);
            return Ok(());
        }
        match self.kafka.enqueue(&self.config.raw_topic, &publish.topic, &publish.payload, None) {
            Ok(delivery) => self.pend(delivery, Pending::Raw(Box::new(publish))).await,
            Err(full_or_other) => {
                match full_or_other {
                    EnqueueError::Full => stats.dropped_raw.fetch_add(1, Ordering::Relaxed),
                    EnqueueError::Other(e) => {
                        tracing::warn!(error = %e, topic = %publish.topic, "device message not queued");
                        stats.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                // Dropped and counted: the broker need not send it again.
                let _ = self.client.try_ack(&publish);
                Ok(())
            }
        }
    }

    async fn pend(&self, delivery: Delivery, what: Pending) -> Result<(), EdgeError> {
        self.pending
            .send((delivery, what))
            .await
            .map_err(|_| EdgeError::Stopped("the acknowledging task ended".into()))
    }

    fn on_connected(&mut self, session_present: bool) {
        tracing::info!(session_present, url = %self.config.mqtt_url, "MQTT connected");
        self.connected = true;
        // Subscribe on every connection: a broker without persistence forgets.
        for topic in &self.config.topics {
            if let Err(e) = self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                tracing::warn!(error = %e, topic = %topic, "MQTT subscribe not sent");
            }
        }
    }
}

/// Acknowledge each device message to the MQTT broker once Kafka has it; count reports.
async fn acknowledge(
    client: AsyncClient,
    mut incoming: mpsc::Receiver<(Delivery, Pending)>,
    stats: Arc<EdgeStats>,
) {
    let mut waiting = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            next = incoming.recv(), if open => match next {
                Some((delivery, what)) => waiting.push(async move { (delivery.await, what) }),
                None => open = false,
            },
            Some((outcome, what)) = waiting.next() => {
                match (outcome, what) {
                    (Ok(()), Pending::Raw(publish)) => {
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        let _ = client.ack(&publish).await;
                    }
                    (Ok(()), Pending::Report) => {
                        stats.reports.fetch_add(1, Ordering::Relaxed);
                    }
                    (Err(e), what) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "Kafka refused a record");
                        if let Pending::Raw(publish) = what {
                            let _ = client.ack(&publish).await;
                        }
                    }
                }
            }
            else => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_is_a_rate_and_a_mean_size() {
        let mut t = Tally::default();
        for n in [100, 300] {
            t.add(n);
        }
        assert_eq!(t.rate(Duration::from_millis(500), 7.0), (4.0, 200.0));
        assert_eq!(Tally::default().rate(Duration::from_secs(1), 7.0), (0.0, 7.0));
    }

    #[test]
    fn mqtt_urls_are_checked() {
        let with = |url: &str| EdgeConfig { mqtt_url: url.into(), ..EdgeConfig::default() }.mqtt_options();
        assert_eq!(with("mqtt://broker:1884").unwrap().broker_address(), ("broker".to_string(), 1884));
        assert_eq!(with("mqtt://broker").unwrap().broker_address(), ("broker".to_string(), 1883));
        assert_eq!(with("mqtts://broker").unwrap().broker_address(), ("broker".to_string(), 8883));
        for bad in ["broker:1883", "http://broker", "mqtt://broker:x", "mqtt://:1883"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_report_is_an_edge_record_with_the_mean_size() {
        let mut gw = Gateway::new("gw-1", BurstDetectorConfig::default()).unwrap();
        let report = EdgeReport { record: gw.report(1_000.0, 12.0, false), bytes_per_event: 512.0 };
        let text = serde_json::to_string(&report).unwrap();
        let back: EdgeRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report.record);
        assert!(back.check().is_ok());
        assert!(text.contains("\"bytes_per_event\":512.0"), "{text}");
    }
}
