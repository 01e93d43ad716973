//! Publishing to Kafka (MSK or self-managed) with rdkafka's future producer, and how it signs in.
//!
//! `SPARKPILOT_KAFKA_AUTH` picks the listener the producer talks to:
//!
//! | value | security | MSK port | credentials |
//! |---|---|---|---|
//! | `plaintext` (default) | none | 9092 | none |
//! | `tls` | TLS | 9094 | none (or mutual TLS through `SPARKPILOT_KAFKA_CONFIG_SSL_*`) |
//! | `scram-sha-512`, `scram-sha-256` | SASL/SCRAM over TLS | 9096 | a JSON secret `{"username", "password"}`: Secrets Manager (`SPARKPILOT_KAFKA_SECRET_ARN`, the secret the event-source mapping uses) or a file (`SPARKPILOT_KAFKA_SECRET_FILE`, an OpenFaaS secret) |
//! | `msk-iam` | SASL/OAUTHBEARER over TLS | 9098 | the function's AWS credentials: a SigV4-presigned `kafka-cluster:Connect` URL as token, made again before it expires |
//!
//! The MSK IAM token follows AWS's MSK IAM SASL signers (aws-msk-iam-sasl-signer-python and the
//! others): a GET of `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`
//! presigned for the `kafka-cluster` service with a 900 s expiry, a `User-Agent` parameter added
//! after signing, the whole URL base64url-encoded without padding. Its lifetime given to librdkafka
//! is the signing time plus those 900 s; librdkafka asks for a new one before then.
//!
//! TLS uses the OpenSSL built into librdkafka; its CA bundle is found by probing the usual system
//! paths (`ssl.ca.location=probe`, which covers Amazon Linux and Debian) unless
//! `SPARKPILOT_KAFKA_CONFIG_SSL_CA_LOCATION` names one. Any librdkafka setting can be given as
//! `SPARKPILOT_KAFKA_CONFIG_<NAME>` (dots as underscores) and wins over the above.

use crate::AdapterError;
use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use handlers::ports::{PortError, PortResult, Publisher};
use rdkafka::client::OAuthToken;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientContext;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long an MSK IAM token is valid, as AWS's signers make them.
pub const MSK_IAM_TOKEN_TTL: Duration = Duration::from_secs(900);
const MSK_IAM_USER_AGENT: &str = concat!("sparkpilot/", env!("CARGO_PKG_VERSION"));

/// A password or other secret: never in a `Debug` or error text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The SASL/SCRAM variants librdkafka speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }
}

/// `SPARKPILOT_KAFKA_AUTH`, before any credential is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAuthKind {
    Plaintext,
    Tls,
    Scram(ScramMechanism),
    MskIam,
}

impl std::str::FromStr for KafkaAuthKind {
    type Err = AdapterError;
    fn from_str(s: &str) -> Result<Self, AdapterError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "plaintext" | "none" => Ok(Self::Plaintext),
            "tls" | "ssl" => Ok(Self::Tls),
            "scram-sha-512" => Ok(Self::Scram(ScramMechanism::Sha512)),
            "scram-sha-256" => Ok(Self::Scram(ScramMechanism::Sha256)),
            "msk-iam" | "iam" => Ok(Self::MskIam),
            other => Err(AdapterError::Config(format!(
                "SPARKPILOT_KAFKA_AUTH={other:?}: expected plaintext, tls, scram-sha-512, scram-sha-256 or msk-iam"
            ))),
        }
    }
}

/// How the producer signs in, with its credentials resolved.
#[derive(Debug, Clone)]
pub enum KafkaAuth {
    Plaintext,
    Tls,
    Scram {
        mechanism: ScramMechanism,
        username: String,
        password: Secret,
    },
    /// Tokens are signed for `region` with credentials from `credentials` (the SDK's chain).
    MskIam {
        region: String,
        credentials: SharedCredentialsProvider,
    },
}

impl KafkaAuth {
    /// The librdkafka settings for this way of signing in (the credentials of SCRAM included).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let tls = |protocol: &str| {
            vec![("security.protocol", protocol.to_string()), ("ssl.ca.location", "probe".to_string())]
        };
        match self {
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
}

/// Read a SCRAM secret in the JSON shape Lambda's Kafka event sources and MSK use:
/// `{"username": "...", "password": "..."}`. `source` names where it came from in errors; the
/// secret's text is never part of one.
pub fn parse_scram_secret(text: &str, source: &str) -> Result<(String, Secret), AdapterError> {
    #[derive(serde::Deserialize)]
    struct Scram {
        username: String,
        password: String,
    }
    let s: Scram = serde_json::from_str(text).map_err(|e| {
        // serde's message can quote the input: keep only its category and position.
        let what =
            if e.is_syntax() || e.is_eof() { "is not JSON" } else { "lacks a string username or password" };
        AdapterError::Config(format!(
            "Kafka SCRAM secret {source} {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if s.username.is_empty() || s.password.is_empty() {
        return Err(AdapterError::Config(format!(
            "Kafka SCRAM secret {source} has an empty username or password"
        )));
    }
    Ok((s.username, Secret(s.password)))
}

/// An MSK IAM token for `region`, signed with `credentials` at `now`, and when it expires (ms since
/// the epoch). See the module documentation for its shape.
pub fn msk_iam_token(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<(String, i64), String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
    use base64::Engine;

    if region.trim().is_empty() {
        return Err("MSK IAM needs a region (AWS_REGION)".into());
    }
    let url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(MSK_IAM_TOKEN_TTL);
    let identity = credentials.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let request = SignableRequest::new("GET", url.as_str(), std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("request to sign: {e}"))?;
    let (instructions, _) = sign(request, &params).map_err(|e| format!("signing: {e}"))?.into_parts();
    let mut signed = http::Request::builder()
        .method("GET")
        .uri(url.as_str())
        .body(())
        .map_err(|e| format!("request: {e}"))?;
    instructions.apply_to_request_http1x(&mut signed);
    let token_url = format!("{}&User-Agent={}", signed.uri(), MSK_IAM_USER_AGENT.replace('/', "%2F"));
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token_url.as_bytes());
    let signed_at_s =
        now.duration_since(UNIX_EPOCH).map_err(|_| "the clock is before 1970".to_string())?.as_secs();
    Ok((token, ((signed_at_s + MSK_IAM_TOKEN_TTL.as_secs()) * 1_000) as i64))
}

/// The producer's client context: makes MSK IAM tokens when librdkafka asks for one.
struct ProducerContext {
    msk_iam: Option<MskIamSigner>,
    /// Tokens made so far (logged with each, so a deployment shows its refreshes).
    tokens_made: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

struct MskIamSigner {
    region: String,
    credentials: SharedCredentialsProvider,
    /// librdkafka asks from its own thread; credentials are resolved on the function's runtime.
    runtime: tokio::runtime::Handle,
}

impl ClientContext for ProducerContext {
    // Only fires when `sasl.mechanisms` is OAUTHBEARER.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let signer = self
            .msk_iam
            .as_ref()
            .ok_or("OAUTHBEARER is configured but SPARKPILOT_KAFKA_AUTH is not msk-iam")?;
        let credentials = signer
            .runtime
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), signer.credentials.provide_credentials()).await
            })
            .map_err(|_| "MSK IAM: no AWS credentials within 10 s")?
            .map_err(|e| format!("MSK IAM: AWS credentials: {e}"))?;
        let (token, lifetime_ms) = msk_iam_token(&signer.region, &credentials, SystemTime::now())?;
        let n = self.tokens_made.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        tracing::info!(region = %signer.region, tokens_made = n, expires_ms = lifetime_ms, "MSK IAM token made");
        Ok(OAuthToken { token, principal_name: "sparkpilot".into(), lifetime_ms })
    }
}

/// The settings of every Kafka client sparkpilot makes (producers here, the local bridge's consumer
/// and dead-letter producer, the admin client): `brokers`, then the client's own `defaults`, then
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

pub struct KafkaPublisher {
    producer: FutureProducer<ProducerContext>,
    tokens_made: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl KafkaPublisher {
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
            // A decision that cannot be published within 5 s is reported, not retried forever.
            ("message.timeout.ms", "5000".into()),
            ("enable.idempotence", "true".into()),
            ("linger.ms", "1".into()),
        ];
        defaults.extend(auth.settings());
        let config = client_config(brokers, &defaults, extra);
        let msk_iam = match auth {
            KafkaAuth::MskIam { region, credentials } => {
                let runtime = tokio::runtime::Handle::try_current()
                    .map_err(|_| AdapterError::Kafka("MSK IAM needs a Tokio runtime".into()))?;
                Some(MskIamSigner { region: region.clone(), credentials: credentials.clone(), runtime })
            }
            _ => None,
        };
        // librdkafka's messages name settings, never their values, so a password cannot leak here.
        let tokens_made = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
        let producer = config
            .create_with_context(ProducerContext { msk_iam, tokens_made: tokens_made.clone() })
            .map_err(|e| AdapterError::Kafka(format!("producer for {brokers}: {e}")))?;
        Ok(Self { producer, tokens_made })
    }

    /// MSK IAM tokens made for librdkafka so far.
    pub fn msk_iam_tokens_made(&self) -> u64 {
        self.tokens_made.load(std::sync::atomic::Ordering::Relaxed)
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

impl KafkaPublisher {
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_string),
            None,
            "test",
        )
    }

    fn query(token: &str) -> Vec<(String, String)> {
        let url = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).unwrap())
            .unwrap();
        let (base, q) = url.split_once('?').unwrap();
        assert_eq!(base, "https://kafka.eu-west-1.amazonaws.com/");
        q.split('&')
            .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap())
            .collect()
    }

    #[test]
    fn the_msk_iam_token_is_a_presigned_connect_url_valid_for_900_s() {
        let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
        let (token, expires_ms) = msk_iam_token("eu-west-1", &creds(Some("SESSION")), at).unwrap();
        assert!(!token.contains('='), "no padding");
        assert_eq!(expires_ms, (1_767_225_600 + 900) * 1_000);
        let q = query(&token);
        let get = |k: &str| {
            q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{k} in {q:?}"))
        };
        assert_eq!(get("Action"), "kafka-cluster%3AConnect");
        assert_eq!(get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
        assert_eq!(
            get("X-Amz-Credential"),
            "AKIDEXAMPLE%2F20260101%2Feu-west-1%2Fkafka-cluster%2Faws4_request"
        );
        assert_eq!(get("X-Amz-Date"), "20260101T000000Z");
        assert_eq!(get("X-Amz-Expires"), "900");
        assert_eq!(get("X-Amz-SignedHeaders"), "host");
        assert_eq!(get("X-Amz-Security-Token"), "SESSION");
        assert_eq!(get("X-Amz-Signature").len(), 64);
        assert_eq!(q.last().unwrap().0, "User-Agent", "added after signing, as AWS's signers do");
        // Another second, another signature.
        let (other, _) =
            msk_iam_token("eu-west-1", &creds(Some("SESSION")), at + Duration::from_secs(1)).unwrap();
        assert_ne!(token, other);
    }

    #[test]
    fn auth_kinds_parse_and_unknown_ones_are_named() {
        assert_eq!("".parse::<KafkaAuthKind>().unwrap(), KafkaAuthKind::Plaintext);
        assert_eq!("MSK-IAM".parse::<KafkaAuthKind>().unwrap(), KafkaAuthKind::MskIam);
        assert_eq!(
            "scram-sha-512".parse::<KafkaAuthKind>().unwrap(),
            KafkaAuthKind::Scram(ScramMechanism::Sha512)
        );
        let e = "kerberos".parse::<KafkaAuthKind>().unwrap_err().to_string();
        assert!(e.contains("\"kerberos\"") && e.contains("msk-iam"), "{e}");
    }

    #[test]
    fn scram_secrets_are_read_and_never_echoed() {
        let (user, pass) = parse_scram_secret(r#"{"username":"sp","password":"hunter2"}"#, "arn:x").unwrap();
        assert_eq!((user.as_str(), pass.expose()), ("sp", "hunter2"));
        assert_eq!(format!("{pass:?}"), "Secret(***)");
        for bad in [
            r#"{"username":"sp","password":"hunter2""#,
            r#"{"user":"sp","password":"hunter2"}"#,
            r#"{"username":"sp","password":""}"#,
            "hunter2",
        ] {
            let e = parse_scram_secret(bad, "arn:x").unwrap_err().to_string();
            assert!(e.contains("arn:x") && !e.contains("hunter2"), "{e}");
        }
        let auth = KafkaAuth::Scram { mechanism: ScramMechanism::Sha512, username: user, password: pass };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let s = auth.settings();
        assert!(
            s.contains(&("security.protocol", "sasl_ssl".into()))
                && s.contains(&("sasl.mechanisms", "SCRAM-SHA-512".into()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_msk_iam_producer_asks_for_a_token_and_gets_one() {
        // The broker is unreachable: what matters is that librdkafka (built with OAUTHBEARER)
        // accepts the settings and that the refresh callback produces a token.
        let provider = SharedCredentialsProvider::new(creds(None));
        let auth = KafkaAuth::MskIam { region: "eu-west-1".into(), credentials: provider };
        let publisher = KafkaPublisher::with_auth("127.0.0.1:9", &auth, &[])
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
        assert!(query(&token.0)
            .iter()
            .any(|(k, v)| k == "X-Amz-Credential" && v.starts_with("AKIDEXAMPLE%2F")));
        assert!(token.1 > 0);
    }
}
