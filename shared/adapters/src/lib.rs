//! Real backends behind the handlers' ports, and [`connect`], which builds the ones a function
//! needs from its environment, once, at init.
//!
//! | port | adapter | configured by | feature |
//! |---|---|---|---|
//! | `StateStore` | `RedisStore` (ElastiCache or any Redis) | `REDIS_URL` | always |
//! | `Publisher` | `KafkaPublisher` (MSK or any Kafka) | `KAFKA_BROKERS`, `SPARKPILOT_KAFKA_AUTH` (+ `_SECRET_ARN` / `_SECRET_FILE`), `SPARKPILOT_KAFKA_CONFIG_*` | `kafka` |
//! | `EmrControl` | `EmrServerless` | `SPARKPILOT_EMR_APPLICATION_ID` | `emr` |
//! | `HotTier` | `ElastiCacheHotTier` | `SPARKPILOT_CACHE_REPLICATION_GROUP` | `elasticache` |
//! | `ObjectStore` (S3) | `S3Store` | `SPARKPILOT_BUCKET` | `s3` |
//! | `ObjectStore` (NVMe) | `handlers::memory::DirStore` | `SPARKPILOT_NVME_DIR` (default `/tmp/sparkpilot-nvme`) | always |
//!
//! Every client is a feature (all on by default): a function crate turns on only those of its
//! ports, so that building it (`sam build` builds one function crate at a time) compiles nothing it
//! does not use. The functions' Kafka producer is pure Rust; librdkafka (feature `rdkafka`) is only
//! in the local stack's bridge, edge agent and replays.
//!
//! AWS clients take the usual SDK configuration (region, credentials) and honour
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`, so they run against a local emulator.
//! `SPARKPILOT_BACKEND=embedded` uses the in-memory backends instead, with no network at all.

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "elasticache")]
mod elasticache;
#[cfg(feature = "emr")]
mod emr;
mod error;
#[cfg(feature = "kafka")]
mod kafka;
mod redis_store;
#[cfg(feature = "s3")]
mod s3;

#[cfg(feature = "aws")]
pub use aws::{aws_retries, aws_timeouts, https_client, sdk_config};
#[cfg(feature = "elasticache")]
pub use elasticache::ElastiCacheHotTier;
#[cfg(feature = "emr")]
pub use emr::{parse_quantity, EmrServerless};
pub use error::AdapterError;
#[cfg(feature = "rdkafka")]
pub use kafka::{
    client_config, create_topics, librdkafka_settings, BufferedKafkaProducer, Delivery, EnqueueError,
};
#[cfg(feature = "kafka")]
pub use kafka::{
    msk_iam_token, parse_scram_secret, KafkaAuth, KafkaAuthKind, KafkaPublisher, MskIamSigner,
    ProducerOptions, ScramMechanism, Secret,
};
pub use redis_store::{redact_url, RedisStore};

/// Make ring the process's rustls crypto provider. rustls picks no provider by itself when more
/// than one is compiled in, and a dependency that turns on its aws-lc default would make two, so
/// every TLS client here (Redis, the edge agent's MQTT) calls this before building its
/// configuration. An earlier call, by this or another client, is fine.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
#[cfg(feature = "s3")]
pub use s3::S3Store;

use async_trait::async_trait;
use handlers::ports::*;
use handlers::{Backends, Ports};
use std::sync::Arc;

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

/// Build `function`'s backends from the environment. A needed setting that is missing is an error
/// naming the variable; with `SPARKPILOT_BACKEND=embedded` everything is in memory.
pub async fn connect(function: &str) -> Result<Backends, AdapterError> {
    connect_with(function, |k| std::env::var(k).ok()).await
}

/// [`connect`], reading settings through `env`.
pub async fn connect_with(
    function: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Backends, AdapterError> {
    let ports = Ports::of(function).map_err(|e| AdapterError::Config(e.to_string()))?;
    connect_ports(function, ports, env).await
}

/// Build the backends a function with `ports` needs, reading settings through `env`. A function
/// binary passes its [`handlers::Function::PORTS`], a constant, so the clients of the other ports
/// are not linked into it; a port whose client this build of the crate leaves out (see the crate's
/// features) is an error naming the feature.
pub async fn connect_ports(
    function: &str,
    ports: Ports,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Backends, AdapterError> {
    if env("SPARKPILOT_BACKEND").as_deref() == Some("embedded") {
        return Ok(Backends::embedded());
    }
    let require = |k: &str| {
        env(k)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| AdapterError::Config(format!("{function} needs {k}")))
    };
    let mut b = Backends {
        store: Arc::new(handlers::memory::MemoryStore::default()),
        publisher: Arc::new(NotConfigured("kafka")),
        emr: Arc::new(NotConfigured("emr-serverless")),
        hot_tier: Arc::new(NotConfigured("elasticache")),
        objects: Arc::new(NotConfigured("s3")),
        nvme: Arc::new(NotConfigured("nvme")),
    };
    if ports.store {
        let ca =
            env("SPARKPILOT_REDIS_CA_FILE").filter(|v| !v.trim().is_empty()).map(std::path::PathBuf::from);
        b.store = Arc::new(RedisStore::connect_with_ca(&require("REDIS_URL")?, ca.as_deref()).await?);
    }
    #[cfg(feature = "aws")]
    let conf = if ports.emr || ports.hot_tier || ports.objects || (ports.publisher && kafka_needs_aws(&env)?)
    {
        Some(sdk_config().await)
    } else {
        None
    };
    #[cfg(not(feature = "aws"))]
    let conf: Option<SdkConfig> = None;
    if ports.publisher {
        b.publisher = publisher(conf.as_ref(), &require, &env).await?;
    }
    if ports.emr {
        b.emr = emr(conf.as_ref(), &require)?;
    }
    if ports.hot_tier {
        b.hot_tier = hot_tier(conf.as_ref(), &require)?;
    }
    if ports.objects {
        b.objects = objects(conf.as_ref(), &require, &env)?;
    }
    if ports.nvme {
        let dir = env("SPARKPILOT_NVME_DIR").unwrap_or_else(|| "/tmp/sparkpilot-nvme".into());
        b.nvme = Arc::new(handlers::memory::DirStore::new(dir)?);
    }
    Ok(b)
}

// Unused when every client is compiled in.
#[allow(dead_code)]
fn left_out(port: &str, feature: &str) -> AdapterError {
    AdapterError::Config(format!(
        "this binary was built without the {port} client (the adapters crate's `{feature}` feature)"
    ))
}

type Require<'a> = dyn Fn(&str) -> Result<String, AdapterError> + 'a;

/// Whether the producer's sign-in needs the AWS SDK: MSK IAM (credentials, region) or a SCRAM
/// secret in Secrets Manager.
#[cfg(feature = "aws")]
fn kafka_needs_aws(env: &dyn Fn(&str) -> Option<String>) -> Result<bool, AdapterError> {
    #[cfg(feature = "kafka")]
    {
        let kind: KafkaAuthKind = env("SPARKPILOT_KAFKA_AUTH").unwrap_or_default().parse()?;
        Ok(kind == KafkaAuthKind::MskIam
            || (matches!(kind, KafkaAuthKind::Scram(_)) && env("SPARKPILOT_KAFKA_SECRET_ARN").is_some()))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = env;
        Ok(false)
    }
}

/// `SPARKPILOT_KAFKA_AUTH` with its credentials looked up (see the `kafka` module).
#[cfg(feature = "kafka")]
pub async fn kafka_auth(
    conf: Option<&SdkConfig>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<KafkaAuth, AdapterError> {
    let kind: KafkaAuthKind = env("SPARKPILOT_KAFKA_AUTH").unwrap_or_default().parse()?;
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    Ok(match kind {
        KafkaAuthKind::Plaintext => KafkaAuth::Plaintext,
        KafkaAuthKind::Tls => KafkaAuth::Tls,
        KafkaAuthKind::MskIam => {
            let conf =
                conf.ok_or_else(|| AdapterError::Config("MSK IAM needs the AWS SDK configuration".into()))?;
            let region = conf.region().map(|r| r.to_string()).ok_or_else(|| {
                AdapterError::Config("SPARKPILOT_KAFKA_AUTH=msk-iam needs AWS_REGION".into())
            })?;
            let credentials = conf.credentials_provider().ok_or_else(|| {
                AdapterError::Config("SPARKPILOT_KAFKA_AUTH=msk-iam found no AWS credentials provider".into())
            })?;
            KafkaAuth::MskIam { region, credentials }
        }
        KafkaAuthKind::Scram(mechanism) => {
            let (username, password) = match (set("SPARKPILOT_KAFKA_SECRET_ARN"), set("SPARKPILOT_KAFKA_SECRET_FILE")) {
                (Some(arn), _) => {
                    let conf = conf.ok_or_else(|| AdapterError::Config("a Secrets Manager secret needs the AWS SDK configuration".into()))?;
                    let client = aws_sdk_secretsmanager::Client::new(conf);
                    let out = client.get_secret_value().secret_id(&arn).send().await.map_err(|e| {
                        AdapterError::Config(format!("Kafka SCRAM secret {arn}: {}", aws_smithy_types::error::display::DisplayErrorContext(&e)))
                    })?;
                    let text = out.secret_string().ok_or_else(|| AdapterError::Config(format!("Kafka SCRAM secret {arn} has no SecretString")))?;
                    parse_scram_secret(text, &arn)?
                }
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| AdapterError::Config(format!("Kafka SCRAM secret file {path}: {e}")))?;
                    parse_scram_secret(&text, &path)?
                }
                (None, None) => {
                    return Err(AdapterError::Config(
                        "SPARKPILOT_KAFKA_AUTH=scram-* needs SPARKPILOT_KAFKA_SECRET_ARN (Secrets Manager) or SPARKPILOT_KAFKA_SECRET_FILE".into(),
                    ))
                }
            };
            KafkaAuth::Scram { mechanism, username, password }
        }
    })
}

#[cfg(feature = "kafka")]
async fn publisher(
    conf: Option<&SdkConfig>,
    require: &Require<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Publisher>, AdapterError> {
    let extra: Vec<(String, String)> = std::env::vars()
        .filter_map(|(k, v)| {
            k.strip_prefix("SPARKPILOT_KAFKA_CONFIG_").map(|s| (s.to_ascii_lowercase().replace('_', "."), v))
        })
        .collect();
    let options = ProducerOptions::from_settings(&extra)?;
    let auth = kafka_auth(conf, env).await?;
    Ok(Arc::new(KafkaPublisher::with_auth(&require("KAFKA_BROKERS")?, &auth, options)?))
}
#[cfg(not(feature = "kafka"))]
async fn publisher(
    _: Option<&SdkConfig>,
    _: &Require<'_>,
    _: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Publisher>, AdapterError> {
    Err(left_out("Kafka", "kafka"))
}

#[cfg(not(feature = "aws"))]
type SdkConfig = ();
#[cfg(feature = "aws")]
type SdkConfig = aws_config::SdkConfig;

#[cfg(feature = "emr")]
fn emr(conf: Option<&SdkConfig>, require: &Require) -> Result<Arc<dyn EmrControl>, AdapterError> {
    let conf = conf.expect("the SDK configuration is loaded when an AWS port is needed");
    Ok(Arc::new(EmrServerless::new(
        aws_sdk_emrserverless::Client::new(conf),
        &require("SPARKPILOT_EMR_APPLICATION_ID")?,
    )))
}
#[cfg(not(feature = "emr"))]
fn emr(_: Option<&SdkConfig>, _: &Require) -> Result<Arc<dyn EmrControl>, AdapterError> {
    Err(left_out("EMR Serverless", "emr"))
}

#[cfg(feature = "elasticache")]
fn hot_tier(conf: Option<&SdkConfig>, require: &Require) -> Result<Arc<dyn HotTier>, AdapterError> {
    let conf = conf.expect("the SDK configuration is loaded when an AWS port is needed");
    Ok(Arc::new(ElastiCacheHotTier::new(
        aws_sdk_elasticache::Client::new(conf),
        &require("SPARKPILOT_CACHE_REPLICATION_GROUP")?,
    )))
}
#[cfg(not(feature = "elasticache"))]
fn hot_tier(_: Option<&SdkConfig>, _: &Require) -> Result<Arc<dyn HotTier>, AdapterError> {
    Err(left_out("ElastiCache", "elasticache"))
}

#[cfg(feature = "s3")]
fn objects(
    conf: Option<&SdkConfig>,
    require: &Require,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ObjectStore>, AdapterError> {
    let conf = conf.expect("the SDK configuration is loaded when an AWS port is needed");
    Ok(Arc::new(S3Store::new(s3_client(conf, env), &require("SPARKPILOT_BUCKET")?)))
}

/// An S3 client on `conf`. Emulators answer on one host: buckets are addressed by path when the
/// endpoint is overridden (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3` in `env`).
#[cfg(feature = "s3")]
pub fn s3_client(conf: &aws_config::SdkConfig, env: &dyn Fn(&str) -> Option<String>) -> aws_sdk_s3::Client {
    let path_style = env("AWS_ENDPOINT_URL").is_some() || env("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf).force_path_style(path_style).build(),
    )
}
#[cfg(not(feature = "s3"))]
fn objects(
    _: Option<&SdkConfig>,
    _: &Require,
    _: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ObjectStore>, AdapterError> {
    Err(left_out("S3", "s3"))
}
