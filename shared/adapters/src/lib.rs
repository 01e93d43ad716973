//! Real backends behind the handlers' ports, and [`connect`], which builds the ones a function
//! needs from its environment, once, at init.
//!
//! | port | adapter | configured by |
//! |---|---|---|
//! | `StateStore` | [`RedisStore`] (ElastiCache or any Redis) | `REDIS_URL` |
//! | `Publisher` | [`KafkaPublisher`] (MSK or any Kafka) | `KAFKA_BROKERS`, `SPARKPILOT_KAFKA_CONFIG_*` |
//! | `EmrControl` | [`EmrServerless`] | `SPARKPILOT_EMR_APPLICATION_ID` |
//! | `HotTier` | [`ElastiCacheHotTier`] | `SPARKPILOT_CACHE_REPLICATION_GROUP` |
//! | `ObjectStore` (S3) | [`S3Store`] | `SPARKPILOT_BUCKET` |
//! | `ObjectStore` (NVMe) | `handlers::memory::DirStore` | `SPARKPILOT_NVME_DIR` (default `/tmp/sparkpilot-nvme`) |
//!
//! AWS clients take the usual SDK configuration (region, credentials) and honour
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`, so they run against a local emulator.
//! `SPARKPILOT_BACKEND=embedded` uses the in-memory backends instead, with no network at all.

mod aws;
mod error;
mod kafka;
mod redis_store;

pub use aws::{parse_quantity, ElastiCacheHotTier, EmrServerless, S3Store};
pub use error::AdapterError;
pub use kafka::KafkaPublisher;
pub use redis_store::{redact_url, RedisStore};

use async_trait::async_trait;
use handlers::ports::*;
use handlers::Backends;
use std::sync::Arc;

/// What a function needs from the outside world.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub store: bool,
    pub publisher: bool,
    pub emr: bool,
    pub hot_tier: bool,
    pub objects: bool,
    pub nvme: bool,
}

impl Needs {
    /// The ports each of the five functions uses.
    pub fn of(function: &str) -> Result<Self, AdapterError> {
        let n = Needs { store: true, ..Default::default() };
        Ok(match function {
            "burst-signal" => Needs { publisher: true, ..n },
            "meta-weights" => n,
            "scaling-decision" => Needs { publisher: true, emr: true, hot_tier: true, ..n },
            "shuffle-router" => Needs { objects: true, nvme: true, ..n },
            "prewarmer" => Needs { emr: true, ..n },
            other => return Err(AdapterError::Config(format!("unknown function {other:?}"))),
        })
    }
}

/// A port the function was not configured for: every call says so.
struct NotConfigured(&'static str);

impl NotConfigured {
    fn err(&self) -> PortError {
        PortError::new(self.0, "call", "not configured for this function")
    }
}

#[async_trait]
impl Publisher for NotConfigured {
    async fn publish(&self, _: &str, _: &str, _: &[u8]) -> PortResult<()> {
        Err(self.err())
    }
}
#[async_trait]
impl EmrControl for NotConfigured {
    async fn get_application(&self) -> PortResult<AppStatus> {
        Err(self.err())
    }
    async fn update_capacity(&self, _: &Capacity) -> PortResult<()> {
        Err(self.err())
    }
}
#[async_trait]
impl HotTier for NotConfigured {
    async fn shards(&self) -> PortResult<u32> {
        Err(self.err())
    }
    async fn set_shards(&self, _: u32) -> PortResult<()> {
        Err(self.err())
    }
}
#[async_trait]
impl ObjectStore for NotConfigured {
    async fn put(&self, _: &str, _: Vec<u8>, _: StorageClass) -> PortResult<()> {
        Err(self.err())
    }
    async fn get(&self, _: &str) -> PortResult<ObjectRead> {
        Err(self.err())
    }
    async fn restore(&self, _: &str, _: u32) -> PortResult<()> {
        Err(self.err())
    }
    async fn delete(&self, _: &str) -> PortResult<()> {
        Err(self.err())
    }
}

/// Time limits on every AWS call. The functions' timeout is 60 s and a decision makes two or three
/// calls; without an operation timeout a call to an endpoint that accepts and never answers would
/// use all of it.
pub fn aws_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(5))
        .operation_timeout(std::time::Duration::from_secs(15))
        .build()
}

/// Throttling and 5xx answers are retried with the SDK's standard back-off, three attempts at most
/// (inside [`aws_timeouts`]' operation timeout).
pub fn aws_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(3)
}

/// Build `function`'s backends from the environment. A needed setting that is missing is an error
/// naming the variable; with `SPARKPILOT_BACKEND=embedded` everything is in memory.
pub async fn connect(function: &str) -> Result<Backends, AdapterError> {
    connect_with(function, |k| std::env::var(k).ok()).await
}

pub async fn connect_with(function: &str, env: impl Fn(&str) -> Option<String>) -> Result<Backends, AdapterError> {
    let needs = Needs::of(function)?;
    if env("SPARKPILOT_BACKEND").as_deref() == Some("embedded") {
        return Ok(Backends::embedded());
    }
    let require = |k: &str| env(k).filter(|v| !v.trim().is_empty()).ok_or_else(|| AdapterError::Config(format!("{function} needs {k}")));
    let mut b = Backends {
        store: Arc::new(handlers::memory::MemoryStore::default()),
        publisher: Arc::new(NotConfigured("kafka")),
        emr: Arc::new(NotConfigured("emr-serverless")),
        hot_tier: Arc::new(NotConfigured("elasticache")),
        objects: Arc::new(NotConfigured("s3")),
        nvme: Arc::new(NotConfigured("nvme")),
    };
    if needs.store {
        let ca = env("SPARKPILOT_REDIS_CA_FILE").filter(|v| !v.trim().is_empty()).map(std::path::PathBuf::from);
        b.store = Arc::new(RedisStore::connect_with_ca(&require("REDIS_URL")?, ca.as_deref()).await?);
    }
    if needs.publisher {
        let extra: Vec<(String, String)> = std::env::vars()
            .filter_map(|(k, v)| k.strip_prefix("SPARKPILOT_KAFKA_CONFIG_").map(|s| (s.to_ascii_lowercase().replace('_', "."), v)))
            .collect();
        b.publisher = Arc::new(KafkaPublisher::new(&require("KAFKA_BROKERS")?, &extra)?);
    }
    if needs.emr || needs.hot_tier || needs.objects {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(aws_timeouts()).retry_config(aws_retries()).load().await;
        if needs.emr {
            b.emr = Arc::new(EmrServerless::new(aws_sdk_emrserverless::Client::new(&conf), &require("SPARKPILOT_EMR_APPLICATION_ID")?));
        }
        if needs.hot_tier {
            b.hot_tier = Arc::new(ElastiCacheHotTier::new(aws_sdk_elasticache::Client::new(&conf), &require("SPARKPILOT_CACHE_REPLICATION_GROUP")?));
        }
        if needs.objects {
            // Emulators answer on one host: address buckets by path when the endpoint is overridden.
            let path_style = env("AWS_ENDPOINT_URL").is_some() || env("AWS_ENDPOINT_URL_S3").is_some();
            let s3 = aws_sdk_s3::config::Builder::from(&conf).force_path_style(path_style).build();
            b.objects = Arc::new(S3Store::new(aws_sdk_s3::Client::from_conf(s3), &require("SPARKPILOT_BUCKET")?));
        }
    }
    if needs.nvme {
        let dir = env("SPARKPILOT_NVME_DIR").unwrap_or_else(|| "/tmp/sparkpilot-nvme".into());
        b.nvme = Arc::new(handlers::memory::DirStore::new(dir)?);
    }
    Ok(b)
}
