//! Kafka (MSK or self-managed): the functions' producer, how it signs in, and (feature `rdkafka`)
//! the local stack's buffering producer and admin settings.
//!
//! `SPARKPILOT_KAFKA_AUTH` picks the listener a producer talks to:
//!
//! | value | security | MSK port | credentials |
//! |---|---|---|---|
//! | `plaintext` (default) | none | 9092 | none |
//! | `tls` | TLS | 9094 | none (or mutual TLS: `ssl.certificate.location` and `ssl.key.location`) |
//! | `scram-sha-512`, `scram-sha-256` | SASL/SCRAM over TLS | 9096 | a JSON secret `{"username", "password"}`: Secrets Manager (`SPARKPILOT_KAFKA_SECRET_ARN`, the secret the event-source mapping uses) or a file (`SPARKPILOT_KAFKA_SECRET_FILE`, an OpenFaaS secret) |
//! | `msk-iam` | SASL/OAUTHBEARER over TLS | 9098 | the function's AWS credentials: a SigV4-presigned `kafka-cluster:Connect` URL as token, made anew for each sign-in |
//!
//! The MSK IAM token follows AWS's MSK IAM SASL signers (aws-msk-iam-sasl-signer-python and the
//! others): a GET of `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`
//! presigned for the `kafka-cluster` service with a 900 s expiry, a `User-Agent` parameter added
//! after signing, the whole URL base64url-encoded without padding.
//!
//! The functions publish with [`KafkaPublisher`], a pure-Rust client (rskafka) on the same rustls
//! and ring as every other TLS client here: no C library and no second crypto library in a
//! function. The bridge, the edge agent and the replays use librdkafka ([`BufferedKafkaProducer`],
//! feature `rdkafka`), whose buffer keeps records while the brokers are away.

mod auth;
#[cfg(feature = "rdkafka")]
mod buffered;
mod publisher;

pub use auth::{
    msk_iam_token, parse_scram_secret, KafkaAuth, KafkaAuthKind, MskIamSigner, ScramMechanism, Secret,
};
#[cfg(feature = "rdkafka")]
pub use buffered::{
    client_config, create_topics, librdkafka_settings, BufferedKafkaProducer, Delivery, EnqueueError,
};
pub use publisher::{KafkaPublisher, ProducerOptions};
