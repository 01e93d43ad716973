//! How a Kafka client signs in: `SPARKPILOT_KAFKA_AUTH`, its credentials, and MSK IAM tokens.

use crate::AdapterError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The SASL/SCRAM variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub(crate) fn name(self) -> &'static str {
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
/// the epoch). See the module documentation of [`crate::kafka`] for its shape.
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

/// Makes MSK IAM tokens with the function's AWS credentials, resolved when a token is asked for (the
/// SDK's provider caches and refreshes them).
pub struct MskIamSigner {
    region: String,
    credentials: SharedCredentialsProvider,
    made: AtomicU64,
}

impl MskIamSigner {
    pub fn new(region: impl Into<String>, credentials: SharedCredentialsProvider) -> Self {
        Self { region: region.into(), credentials, made: AtomicU64::new(0) }
    }

    /// A token signed now and when it expires (ms since the epoch).
    pub async fn token(&self) -> Result<(String, i64), String> {
        let credentials =
            tokio::time::timeout(Duration::from_secs(10), self.credentials.provide_credentials())
                .await
                .map_err(|_| "MSK IAM: no AWS credentials within 10 s".to_string())?
                .map_err(|e| format!("MSK IAM: AWS credentials: {e}"))?;
        let (token, expires_ms) = msk_iam_token(&self.region, &credentials, SystemTime::now())?;
        let n = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(region = %self.region, tokens_made = n, expires_ms, "MSK IAM token made");
        Ok((token, expires_ms))
    }

    /// Tokens made so far.
    pub fn tokens_made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
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
    }

    #[tokio::test]
    async fn the_signer_resolves_credentials_and_counts_its_tokens() {
        let signer = MskIamSigner::new("eu-west-1", SharedCredentialsProvider::new(creds(None)));
        let (token, expires_ms) = signer.token().await.unwrap();
        assert!(query(&token)
            .iter()
            .any(|(k, v)| k == "X-Amz-Credential" && v.starts_with("AKIDEXAMPLE%2F")));
        assert!(expires_ms > 0);
        assert_eq!(signer.tokens_made(), 1);
    }
}
