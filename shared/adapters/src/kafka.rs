//! Publishing to Kafka (MSK) with rdkafka's future producer.

use crate::AdapterError;
use async_trait::async_trait;
use handlers::ports::{PortError, PortResult, Publisher};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

pub struct KafkaPublisher {
    producer: FutureProducer,
}

impl KafkaPublisher {
    /// A producer for `brokers` (comma-separated host:port); `extra` are librdkafka settings
    /// (for MSK: `security.protocol=SSL`, SASL settings).
    pub fn new(brokers: &str, extra: &[(String, String)]) -> Result<Self, AdapterError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            // A decision that cannot be published within 5 s is reported, not retried forever.
            .set("message.timeout.ms", "5000")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1");
        for (k, v) in extra {
            config.set(k, v);
        }
        let producer = config.create().map_err(|e| AdapterError::Kafka(format!("producer for {brokers}: {e}")))?;
        Ok(Self { producer })
    }
}

impl KafkaPublisher {
    async fn send(&self, record: FutureRecord<'_, str, [u8]>, topic: &str) -> PortResult<()> {
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(e, _)| PortError::new("kafka", "produce", format!("{topic}: {e}")))
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> PortResult<()> {
        self.send(FutureRecord::to(topic).key(key).payload(payload), topic).await
    }
    async fn publish_at(&self, topic: &str, key: &str, payload: &[u8], time_s: f64) -> PortResult<()> {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if time_s.is_finite() && time_s > 0.0 {
            record = record.timestamp((time_s * 1_000.0) as i64);
        }
        self.send(record, topic).await
    }
}
