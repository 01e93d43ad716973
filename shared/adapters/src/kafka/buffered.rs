//! The buffering producer and the admin and consumer settings of the local stack's Kafka clients
//! (the event-source bridge, the edge agent, the replays), on librdkafka.
//!
//! The functions publish with [`super::KafkaPublisher`] instead; this producer is for what must keep
//! records while the brokers are away: [`BufferedKafkaProducer::enqueue`] queues a record in
//! librdkafka's buffer and returns at once. It signs in as the functions do
//! (`SPARKPILOT_KAFKA_AUTH`), with the OpenSSL built into librdkafka; its CA bundle is found by probing
//! the usual system paths (`ssl.ca.location=probe`) unless `ssl.ca.location` names one. Any
//! librdkafka setting can be given (`SPARKPILOT_KAFKA_CONFIG_<NAME>`, dots as underscores) and wins.

use super::auth::{KafkaAuth, MskIamSigner};
use crate::AdapterError;
use rdkafka::client::OAuthToken;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientContext;
use std::sync::Arc;
use std::time::Duration;

/// The librdkafka settings for signing in with `auth` (the credentials of SCRAM included).
pub fn librdkafka_settings(auth: &KafkaAuth) -> Vec<(&'static str, String)> {
    let tls = |protocol: &str| {
        vec![("security.protocol", protocol.to_string()), ("ssl.ca.location", "probe".to_string())]
    };
    match auth {
        KafkaAuth::Plaintext => vec![("security.protocol", "plaintext".into())],
        KafkaAuth::Tls => tls("ssl"),
        KafkaAuth::Scram { mechanism, username, password } => {
            let mut s = tls("sasl_ssl");
            s.push(("sasl.mechanisms", mechanism.name().into()));
            s.push(("sasl.username", username.clone()));
            s.push(("sasl.password", password.expose().to_string()));
            s
        }
        KafkaAuth::MskIam { .. } => {
            let mut s = tls("sasl_ssl");
            s.push(("sasl.mechanisms", "OAUTHBEARER".into()));
            s
        }
    }
}

/// The producer's client context: makes MSK IAM tokens when librdkafka asks for one.
struct ProducerContext {
    msk_iam: Option<(Arc<MskIamSigner>, tokio::runtime::Handle)>,
}

impl ClientContext for ProducerContext {
    // Only fires when `sasl.mechanisms` is OAUTHBEARER.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        // librdkafka asks from its own thread; credentials are resolved on the caller's runtime.
        let (signer, runtime) = self
            .msk_iam
            .as_ref()
            .ok_or("OAUTHBEARER is configured but SPARKPILOT_KAFKA_AUTH is not msk-iam")?;
        let (token, lifetime_ms) = runtime.block_on(signer.token())?;
        Ok(OAuthToken { token, principal_name: "sparkpilot".into(), lifetime_ms })
    }
}

/// The settings of every librdkafka client sparkpilot makes (the buffering producer, the local
/// bridge's consumer and dead-letter producer, the admin client): `brokers`, then the client's own `defaults`, then
/// `extra` (librdkafka settings the user gave), which win over both.
pub fn client_config(brokers: &str, defaults: &[(&str, String)], extra: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        config.set(*k, v);
    }
    for (k, v) in extra {
        config.set(k, v);
    }
    config
}

/// Create `topics` (one partition each) unless they exist: brokers without automatic topic creation
/// (tansu among them) need them before a consumer subscribes or a producer writes.
pub async fn create_topics(brokers: &str, topics: &[&str]) -> Result<(), AdapterError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, &[], &[])
        .create()
        .map_err(|e| AdapterError::Kafka(format!("admin client for {brokers}: {e}")))?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| AdapterError::Kafka(format!("CreateTopics on {brokers}: {e}")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdapterError::Kafka(format!("CreateTopics {topic}: {code}"))),
        }
    }
    Ok(())
}

/// A librdkafka producer that queues records and delivers them in the background.
pub struct BufferedKafkaProducer {
    producer: FutureProducer<ProducerContext>,
    msk_iam: Option<Arc<MskIamSigner>>,
}

impl BufferedKafkaProducer {
    /// A producer for `brokers` (comma-separated host:port) without TLS or SASL; `extra` are
    /// librdkafka settings.
    pub fn new(brokers: &str, extra: &[(String, String)]) -> Result<Self, AdapterError> {
        Self::with_auth(brokers, &KafkaAuth::Plaintext, extra)
    }

    /// A producer for `brokers` signing in with `auth`; `extra` (librdkafka settings) win over
    /// what `auth` sets. MSK IAM needs to be called inside a Tokio runtime (its credentials are
    /// resolved there).
    pub fn with_auth(
        brokers: &str,
        auth: &KafkaAuth,
        extra: &[(String, String)],
    ) -> Result<Self, AdapterError> {
        let mut defaults: Vec<(&str, String)> = vec![
            // A record that cannot be delivered within 5 s is reported unless the caller asks to
            // wait longer (`message.timeout.ms=0`: until it is delivered).
            ("message.timeout.ms", "5000".into()),
            ("enable.idempotence", "true".into()),
            ("linger.ms", "1".into()),
        ];
        defaults.extend(librdkafka_settings(auth));
        let config = client_config(brokers, &defaults, extra);
        let msk_iam = match auth {
            KafkaAuth::MskIam { region, credentials } => {
                let runtime = tokio::runtime::Handle::try_current()
                    .map_err(|_| AdapterError::Kafka("MSK IAM needs a Tokio runtime".into()))?;
                Some((Arc::new(MskIamSigner::new(region.clone(), credentials.clone())), runtime))
            }
            _ => None,
        };
        let signer = msk_iam.as_ref().map(|(s, _)| s.clone());
        // librdkafka's messages name settings, never their values, so a password cannot leak here.
        let producer = config
            .create_with_context(ProducerContext { msk_iam })
            .map_err(|e| AdapterError::Kafka(format!("producer for {brokers}: {e}")))?;
        Ok(Self { producer, msk_iam: signer })
    }

    /// MSK IAM tokens made for librdkafka so far.
    pub fn msk_iam_tokens_made(&self) -> u64 {
        self.msk_iam.as_ref().map_or(0, |s| s.tokens_made())
    }
}

/// Why a record could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The producer's buffer (`queue.buffering.max.messages` / `.kbytes`) is full: the brokers have
    /// been away long enough to fill it.
    #[error("the producer's buffer is full")]
    Full,
    #[error("{0}")]
    Other(String),
}

/// A queued record's outcome: delivered, or why not.
pub type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

impl BufferedKafkaProducer {
    /// Queue a record in the producer's buffer without waiting for the brokers; the returned future
    /// says when it is delivered. With `message.timeout.ms=0` librdkafka retries a record until it
    /// is delivered, so records wait in the buffer (bounded by `queue.buffering.max.*`) while the
    /// brokers are away, and [`EnqueueError::Full`] says when it is full.
    pub fn enqueue(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        timestamp_ms: Option<i64>,
    ) -> Result<Delivery, EnqueueError> {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(ts) = timestamp_ms {
            record = record.timestamp(ts);
        }
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let topic = topic.to_string();
                Ok(Box::pin(async move {
                    match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(format!("{topic}: {e}")),
                        Err(_) => Err(format!("{topic}: the producer was dropped before delivery")),
                    }
                }))
            }
            Err((
                rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                _,
            )) => Err(EnqueueError::Full),
            Err((e, _)) => Err(EnqueueError::Other(format!("{topic}: {e}"))),
        }
    }

    /// Wait up to `timeout` for every queued record to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        use rdkafka::producer::Producer;
        self.producer.flush(timeout).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;

    #[test]
    fn scram_settings_name_the_mechanism_over_tls() {
        let auth = KafkaAuth::Scram {
            mechanism: super::super::ScramMechanism::Sha512,
            username: "sp".into(),
            password: super::super::Secret::new("hunter2"),
        };
        let s = librdkafka_settings(&auth);
        assert!(
            s.contains(&("security.protocol", "sasl_ssl".into()))
                && s.contains(&("sasl.mechanisms", "SCRAM-SHA-512".into()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_msk_iam_producer_asks_for_a_token_and_gets_one() {
        // The broker is unreachable: what matters is that librdkafka (built with OAUTHBEARER)
        // accepts the settings and that the refresh callback produces a token.
        let creds =
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, None, "test");
        let auth = KafkaAuth::MskIam {
            region: "eu-west-1".into(),
            credentials: SharedCredentialsProvider::new(creds),
        };
        let publisher = BufferedKafkaProducer::with_auth("127.0.0.1:9", &auth, &[])
            .expect("librdkafka accepts SASL_SSL with OAUTHBEARER");
        // librdkafka asks for the first token itself, from its polling thread.
        let made = || publisher.msk_iam_tokens_made();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while made() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(made() >= 1, "librdkafka never asked for a token");
        let token = tokio::task::spawn_blocking(move || {
            rdkafka::producer::Producer::context(&publisher.producer)
                .generate_oauth_token(None)
                .map(|t| (t.token, t.lifetime_ms))
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap()
        .expect("a token");
        assert!(!token.0.is_empty() && token.1 > 0);
    }
}
