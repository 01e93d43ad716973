//! The functions' producer: each record is sent and acknowledged by the partition's leader (acks
//! from all in-sync replicas) before `publish` returns, or it fails within the timeout with the
//! reason.
//!
//! Records go to partition CRC-32(key) mod partitions, librdkafka's default (`consistent_random`)
//! partitioner, so one key lands where the local stack's librdkafka producers put it; an empty key
//! takes the partitions in turn. The producer is not idempotent: a send retried after a lost
//! acknowledgement can be written twice (at least once, as before). An idempotent producer's
//! sequence state is also what stops librdkafka's producer for good when a broker loses its own.
//!
//! Nothing is sent at construction: the first `publish` connects (so a function starts while the
//! brokers are away, and each call reports their absence), and a lost connection is made again on
//! the next. With MSK IAM each sign-in gets a fresh token; the brokers close a connection whose
//! token has expired and the next send signs in again.

use super::auth::{KafkaAuth, MskIamSigner};
use crate::AdapterError;
use async_trait::async_trait;
use handlers::ports::{PortError, PortResult, Publisher};
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, OauthBearerCredentials, SaslConfig};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the producer takes besides its brokers and sign-in. From `SPARKPILOT_KAFKA_CONFIG_<NAME>`
/// variables, named as the librdkafka settings they stand for ([`ProducerOptions::from_settings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerOptions {
    /// How long a record may take to be acknowledged, retries included (`message.timeout.ms`).
    pub timeout: Duration,
    /// A PEM file of the CAs the brokers' certificates are checked against, instead of the
    /// system's (`ssl.ca.location`; `probe` is the system's).
    pub ca_file: Option<PathBuf>,
    /// PEM files of a client certificate chain and its private key, for mutual TLS
    /// (`ssl.certificate.location`, `ssl.key.location`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The client id the brokers log (`client.id`).
    pub client_id: String,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            // A decision that cannot be published within 5 s is reported, not retried forever.
            timeout: Duration::from_secs(5),
            ca_file: None,
            client_cert: None,
            client_id: "sparkpilot".into(),
        }
    }
}

/// The librdkafka setting names [`ProducerOptions::from_settings`] reads.
pub const PRODUCER_SETTINGS: [&str; 5] =
    ["message.timeout.ms", "ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "client.id"];

impl ProducerOptions {
    /// Read the settings this producer has ([`PRODUCER_SETTINGS`]); any other name, or a value it
    /// cannot use, is refused with the setting named: the functions' producer is not librdkafka,
    /// and a setting it silently ignored would look applied.
    pub fn from_settings(settings: &[(String, String)]) -> Result<Self, AdapterError> {
        let mut o = Self::default();
        let (mut cert, mut key) = (None, None);
        for (name, value) in settings {
            let bad = |why: &str| AdapterError::Config(format!("Kafka setting {name}={value:?}: {why}"));
            match name.as_str() {
                "message.timeout.ms" => {
                    let ms: u64 = value.trim().parse().map_err(|_| bad("not a whole number of ms"))?;
                    if ms == 0 {
                        return Err(bad("must be above 0: a function waits for its records"));
                    }
                    o.timeout = Duration::from_millis(ms);
                }
                "ssl.ca.location" if value.trim() == "probe" => o.ca_file = None,
                "ssl.ca.location" => o.ca_file = Some(PathBuf::from(value)),
                "ssl.certificate.location" => cert = Some(PathBuf::from(value)),
                "ssl.key.location" => key = Some(PathBuf::from(value)),
                "client.id" if !value.trim().is_empty() => o.client_id = value.trim().to_string(),
                "client.id" => return Err(bad("empty")),
                _ => {
                    return Err(AdapterError::Config(format!(
                        "Kafka setting {name}: the functions' producer takes only {}",
                        PRODUCER_SETTINGS.join(", ")
                    )))
                }
            }
        }
        o.client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(AdapterError::Config(
                    "Kafka mutual TLS needs both ssl.certificate.location and ssl.key.location".into(),
                ))
            }
        };
        Ok(o)
    }
}

/// The rustls configuration for the brokers: the system's CAs or `options.ca_file`, and the client
/// certificate when given. Files are read here, so a missing or unreadable one is named at start.
fn tls_config(options: &ProducerOptions) -> Result<Arc<rustls::ClientConfig>, AdapterError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |what: String| AdapterError::Config(format!("Kafka TLS: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(format!("CA file {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| fail(format!("CA file {}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| fail(format!("CA file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(fail(format!("CA file {} holds no certificate", path.display())));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(fail(format!(
                    "no CA certificates found on this system ({} errors); name a CA file with ssl.ca.location",
                    found.errors.len()
                )));
            }
        }
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots);
    let config = match &options.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail(format!("client certificate {}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err(fail(format!("client certificate {} holds no certificate", cert.display())));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| fail(format!("client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| fail(format!("client certificate: {e}")))?
        }
    };
    Ok(Arc::new(config))
}

/// The functions' Kafka producer. See the module documentation.
pub struct KafkaPublisher {
    brokers: Vec<String>,
    /// How it signs in, for messages ("SASL SCRAM-SHA-512 over TLS").
    sign_in: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<SaslConfig>,
    options: ProducerOptions,
    msk_iam: Option<Arc<MskIamSigner>>,
    /// Made by the first publish; a failed attempt leaves it empty for the next.
    client: tokio::sync::OnceCell<Client>,
    /// Partition count per topic, as the brokers' metadata gave it.
    partitions: Mutex<HashMap<String, i32>>,
    leaders: Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
    /// The next partition for a record without a key.
    turn: AtomicU32,
}

impl KafkaPublisher {
    /// A producer for `brokers` (comma-separated host:port) without TLS or SASL.
    pub fn new(brokers: &str) -> Result<Self, AdapterError> {
        Self::with_auth(brokers, &KafkaAuth::Plaintext, ProducerOptions::default())
    }

    /// A producer for `brokers` signing in with `auth`. TLS files are read now; no broker is
    /// contacted until the first publish.
    pub fn with_auth(
        brokers: &str,
        auth: &KafkaAuth,
        options: ProducerOptions,
    ) -> Result<Self, AdapterError> {
        let list: Vec<String> =
            brokers.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_string).collect();
        if list.is_empty() {
            return Err(AdapterError::Config(format!("no Kafka broker in {brokers:?}")));
        }
        if let Some(bad) =
            list.iter().find(|b| b.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()))
        {
            return Err(AdapterError::Config(format!("Kafka broker {bad:?} is not host:port")));
        }
        let tls = match auth {
            KafkaAuth::Plaintext => {
                if options.ca_file.is_some() || options.client_cert.is_some() {
                    return Err(AdapterError::Config(
                        "Kafka TLS files are set but SPARKPILOT_KAFKA_AUTH is plaintext".into(),
                    ));
                }
                None
            }
            _ => Some(tls_config(&options)?),
        };
        let mut msk_iam = None;
        let sasl = match auth {
            KafkaAuth::Plaintext | KafkaAuth::Tls => None,
            KafkaAuth::Scram { mechanism, username, password } => {
                let c = Credentials::new(username.clone(), password.expose().to_string());
                Some(match mechanism {
                    super::ScramMechanism::Sha256 => SaslConfig::ScramSha256(c),
                    super::ScramMechanism::Sha512 => SaslConfig::ScramSha512(c),
                })
            }
            KafkaAuth::MskIam { region, credentials } => {
                let signer = Arc::new(MskIamSigner::new(region.clone(), credentials.clone()));
                msk_iam = Some(signer.clone());
                Some(SaslConfig::Oauthbearer(OauthBearerCredentials {
                    callback: Arc::new(move || {
                        let signer = signer.clone();
                        Box::pin(
                            async move { signer.token().await.map(|(token, _)| token).map_err(Into::into) },
                        )
                    }),
                    authz_id: None,
                    bearer_kvs: vec![],
                }))
            }
        };
        let sign_in = match auth {
            KafkaAuth::Plaintext => "plaintext".to_string(),
            KafkaAuth::Tls => "TLS".to_string(),
            KafkaAuth::Scram { mechanism, .. } => format!("SASL {} over TLS", mechanism.name()),
            KafkaAuth::MskIam { .. } => "MSK IAM (SASL OAUTHBEARER) over TLS".to_string(),
        };
        Ok(Self {
            brokers: list,
            sign_in,
            tls,
            sasl,
            options,
            msk_iam,
            client: tokio::sync::OnceCell::new(),
            partitions: Mutex::default(),
            leaders: Mutex::default(),
            turn: AtomicU32::new(0),
        })
    }

    /// MSK IAM tokens made so far (one per sign-in).
    pub fn msk_iam_tokens_made(&self) -> u64 {
        self.msk_iam.as_ref().map_or(0, |s| s.tokens_made())
    }

    async fn client(&self) -> Result<&Client, String> {
        self.client
            .get_or_try_init(|| async {
                let mut builder = ClientBuilder::new(self.brokers.clone())
                    .client_id(self.options.client_id.as_str())
                    .backoff_config(BackoffConfig {
                        init_backoff: Duration::from_millis(50),
                        max_backoff: Duration::from_secs(1),
                        base: 2.0,
                        deadline: Some(self.options.timeout),
                    });
                if let Some(tls) = &self.tls {
                    builder = builder.tls_config(tls.clone());
                }
                if let Some(sasl) = &self.sasl {
                    builder = builder.sasl_config(sasl.clone());
                }
                builder
                    .build()
                    .await
                    .map_err(|e| format!("connecting to {} ({}): {e}", self.brokers.join(","), self.sign_in))
            })
            .await
    }

    /// The partition a record of `key` goes to.
    async fn partition(&self, client: &Client, topic: &str, key: &str) -> Result<i32, String> {
        let known = self.partitions.lock().unwrap_or_else(|p| p.into_inner()).get(topic).copied();
        let count = match known {
            Some(n) => n,
            None => {
                let topics = client.list_topics().await.map_err(|e| format!("metadata: {e}"))?;
                let n = topics.iter().find(|t| t.name == topic).map_or(0, |t| t.partitions.len() as i32);
                if n == 0 {
                    return Err("no such topic on the brokers (create it first)".into());
                }
                self.partitions.lock().unwrap_or_else(|p| p.into_inner()).insert(topic.to_string(), n);
                n
            }
        };
        Ok(partition_of(key, count, &self.turn))
    }

    async fn leader(
        &self,
        client: &Client,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, String> {
        let id = (topic.to_string(), partition);
        if let Some(c) = self.leaders.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(c.clone());
        }
        let c = Arc::new(
            client
                .partition_client(topic, partition, UnknownTopicHandling::Error)
                .await
                .map_err(|e| format!("partition {partition}: {e}"))?,
        );
        self.leaders.lock().unwrap_or_else(|p| p.into_inner()).insert(id, c.clone());
        Ok(c)
    }

    /// Forget what is known of `topic`, so that the next record asks the brokers again.
    fn forget(&self, topic: &str) {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).remove(topic);
        self.leaders.lock().unwrap_or_else(|p| p.into_inner()).retain(|(t, _), _| t != topic);
    }

    async fn send(&self, topic: &str, key: &str, payload: &[u8], timestamp: DateTime<Utc>) -> PortResult<()> {
        let attempt = async {
            let client = self.client().await?;
            let partition = self.partition(client, topic, key).await?;
            let leader = self.leader(client, topic, partition).await?;
            let record = Record {
                key: Some(key.as_bytes().to_vec()),
                value: Some(payload.to_vec()),
                headers: BTreeMap::new(),
                timestamp,
            };
            leader
                .produce(vec![record], Compression::NoCompression)
                .await
                .map_err(|e| format!("partition {partition}: {e}"))
        };
        let outcome = match tokio::time::timeout(self.options.timeout, attempt).await {
            Ok(Ok(_offsets)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => format!("not acknowledged within {} ms", self.options.timeout.as_millis()),
        };
        self.forget(topic);
        Err(PortError::new("kafka", "produce", format!("{topic}: {outcome}")))
    }
}

/// librdkafka's `consistent_random` partitioner: CRC-32 of the key modulo the partition count; a
/// record without a key takes the next partition in turn.
fn partition_of(key: &str, partitions: i32, turn: &AtomicU32) -> i32 {
    let n = partitions.max(1) as u32;
    let slot =
        if key.is_empty() { turn.fetch_add(1, Ordering::Relaxed) } else { crc32fast::hash(key.as_bytes()) };
    (slot % n) as i32
}

fn timestamp_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> PortResult<()> {
        self.send(topic, key, payload, timestamp_ms(now_ms())).await
    }
    async fn publish_at(&self, topic: &str, key: &str, payload: &[u8], time_s: f64) -> PortResult<()> {
        let ms = if time_s.is_finite() && time_s > 0.0 { (time_s * 1_000.0) as i64 } else { now_ms() };
        self.send(topic, key, payload, timestamp_ms(ms)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn keys_land_where_librdkafka_puts_them() {
        let turn = AtomicU32::new(0);
        // librdkafka's consistent partitioner is rd_crc32(key) % partitions (the IEEE CRC-32).
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926, "the IEEE CRC-32 check value");
        assert_eq!(partition_of("123456789", 7, &turn), (0xCBF4_3926u32 % 7) as i32);
        for key in ["gw-1", "scaling", "app-00f1"] {
            let p = partition_of(key, 12, &turn);
            assert!((0..12).contains(&p));
            assert_eq!(p, partition_of(key, 12, &turn), "one key, one partition");
        }
        let spread: std::collections::BTreeSet<i32> = (0..6).map(|_| partition_of("", 3, &turn)).collect();
        assert_eq!(spread.len(), 3, "records without a key take the partitions in turn");
        assert_eq!(partition_of("x", 0, &turn), 0);
    }

    #[test]
    fn settings_are_read_and_unknown_ones_refused_by_name() {
        let o = ProducerOptions::from_settings(&settings(&[
            ("message.timeout.ms", "2500"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("client.id", "fn-a"),
        ]))
        .unwrap();
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.ca_file.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(o.client_id, "fn-a");
        assert_eq!(
            ProducerOptions::from_settings(&settings(&[("ssl.ca.location", "probe")])).unwrap().ca_file,
            None
        );
        for (bad, named) in [
            (("linger.ms", "5"), "linger.ms"),
            (("message.timeout.ms", "0"), "message.timeout.ms"),
            (("message.timeout.ms", "soon"), "message.timeout.ms"),
            (("ssl.certificate.location", "/c.pem"), "ssl.key.location"),
        ] {
            let e = ProducerOptions::from_settings(&settings(&[bad])).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
        }
    }

    #[test]
    fn bad_brokers_and_tls_files_are_named_at_construction() {
        for bad in ["", " , ", "kafka-1", "kafka-1:port"] {
            assert!(KafkaPublisher::new(bad).is_err(), "{bad:?}");
        }
        let missing = ProducerOptions { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        let e =
            KafkaPublisher::with_auth("b:9094", &KafkaAuth::Tls, missing.clone()).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e =
            KafkaPublisher::with_auth("b:9092", &KafkaAuth::Plaintext, missing).err().unwrap().to_string();
        assert!(e.contains("plaintext"), "{e}");
        let dir = std::env::temp_dir().join(format!("sp-kafka-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let o = ProducerOptions { ca_file: Some(empty), ..Default::default() };
        let e = KafkaPublisher::with_auth("b:9094", &KafkaAuth::Tls, o).err().unwrap().to_string();
        assert!(e.contains("no certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_absent_broker_is_reported_within_the_timeout() {
        let options = ProducerOptions { timeout: Duration::from_millis(400), ..Default::default() };
        let p = KafkaPublisher::with_auth("127.0.0.1:9", &KafkaAuth::Plaintext, options).unwrap();
        let started = std::time::Instant::now();
        let e = p.publish("t", "k", b"v").await.unwrap_err().to_string();
        assert!(e.contains("t:") && e.contains("127.0.0.1:9 (plaintext)"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        // And again: a failed connection is not kept.
        assert!(p.publish("t", "k", b"v").await.is_err());
    }
}
