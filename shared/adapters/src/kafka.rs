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

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> PortResult<()> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(e, _)| PortError::new("kafka", "produce", format!("{topic}: {e}")))
    }
}
