//! How the functions' Kafka producer signs in: the MSK IAM token against AWS's own SigV4 code
//! (botocore, from the tools virtualenv, signing the request AWS's MSK IAM signer for Python
//! signs), and SCRAM credentials read from Secrets Manager (moto) without ever being printed.

use adapters::{kafka_auth, msk_iam_token, KafkaAuth};
use aws_config::SdkConfig;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};
use tests::{tools_python, unique};

fn query_of(url: &str) -> BTreeMap<String, String> {
    let (_, q) = url.split_once('?').expect("a query");
    q.split('&')
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).expect("k=v"))
        .collect()
}

#[test]
fn msk_iam_token_signs_what_botocore_signs() {
    use base64::Engine;
    let at_s = 1_780_000_000u64;
    let creds = aws_credential_types::Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("TOKEN/with+chars=".into()),
        None,
        "test",
    );
    let (token, expires_ms) =
        msk_iam_token("us-east-2", &creds, UNIX_EPOCH + Duration::from_secs(at_s)).unwrap();
    assert_eq!(expires_ms, ((at_s + 900) * 1000) as i64);
    let ours =
        String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token).unwrap()).unwrap();

    // The request aws-msk-iam-sasl-signer-python presigns, signed by botocore at the same instant.
    let script = r#"
import datetime, sys
from unittest import mock
import botocore.auth
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
at = datetime.datetime.fromtimestamp(int(sys.argv[1]), datetime.timezone.utc).replace(tzinfo=None)
creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "TOKEN/with+chars=")
with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
    request = AWSRequest(method="GET", url="https://kafka.us-east-2.amazonaws.com/", params={"Action": "kafka-cluster:Connect"})
    SigV4QueryAuth(creds, "kafka-cluster", "us-east-2", expires=900).add_auth(request)
print(request.prepare().url)
"#;
    let out = Command::new(tools_python())
        .arg("-c")
        .arg(script)
        .arg(at_s.to_string())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "botocore (infra/tools-env installs it with SAM CLI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8(out.stdout).unwrap().trim().to_string();

    assert!(ours.starts_with("https://kafka.us-east-2.amazonaws.com/?"), "{ours}");
    let mut ours_q = query_of(&ours);
    assert!(ours_q.remove("User-Agent").is_some_and(|ua| ua.starts_with("sparkpilot%2F")), "{ours}");
    let theirs_q = query_of(&theirs);
    assert_eq!(ours_q, theirs_q, "\nours:   {ours}\ntheirs: {theirs}");
}

async fn moto() -> SdkConfig {
    tests::aws_config().await
}

#[tokio::test]
async fn scram_credentials_come_from_secrets_manager_and_are_never_printed() {
    let conf = moto().await;
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let name = unique("AmazonMSK_sparkpilot");
    let arn = sm
        .create_secret()
        .name(&name)
        .secret_string(r#"{"username":"sparkpilot","password":"s3cr3t-Pa55"}"#)
        .send()
        .await
        .expect("moto creates the secret")
        .arn
        .unwrap();
    let env = |arn: String| {
        move |k: &str| match k {
            "SPARKPILOT_KAFKA_AUTH" => Some("scram-sha-512".to_string()),
            "SPARKPILOT_KAFKA_SECRET_ARN" => Some(arn.clone()),
            _ => None,
        }
    };

    let auth = kafka_auth(Some(&conf), &env(arn.clone())).await.expect("the secret is read");
    let KafkaAuth::Scram { ref username, ref password, .. } = auth else { panic!("{auth:?}") };
    assert_eq!((username.as_str(), password.expose()), ("sparkpilot", "s3cr3t-Pa55"));
    assert!(!format!("{auth:?}").contains("s3cr3t"));
    let settings = adapters::librdkafka_settings(&auth);
    for want in [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "sparkpilot"),
        ("sasl.password", "s3cr3t-Pa55"),
    ] {
        assert!(settings.iter().any(|(k, v)| *k == want.0 && v == want.1), "{want:?}");
    }

    // A secret that is not the JSON Lambda's Kafka sources use, and one that does not exist: the
    // error names the secret and never its text.
    let bad = sm
        .create_secret()
        .name(unique("AmazonMSK_bad"))
        .secret_string("sparkpilot:s3cr3t-Pa55")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let e = kafka_auth(Some(&conf), &env(bad.clone())).await.unwrap_err().to_string();
    assert!(e.contains(&bad) && !e.contains("s3cr3t"), "{e}");
    let missing = arn.replace(&name, "AmazonMSK_missing");
    let e = kafka_auth(Some(&conf), &env(missing.clone())).await.unwrap_err().to_string();
    assert!(e.contains(&missing) && e.contains("ResourceNotFound"), "{e}");

    // Without a secret, the error says what to set.
    let e = kafka_auth(Some(&conf), &|k: &str| {
        (k == "SPARKPILOT_KAFKA_AUTH").then(|| "scram-sha-512".to_string())
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("SPARKPILOT_KAFKA_SECRET_ARN") && e.contains("SPARKPILOT_KAFKA_SECRET_FILE"), "{e}");
}

#[tokio::test]
async fn msk_iam_takes_the_region_and_credentials_of_the_sdk_chain() {
    let conf = moto().await;
    let auth =
        kafka_auth(Some(&conf), &|k: &str| (k == "SPARKPILOT_KAFKA_AUTH").then(|| "msk-iam".to_string()))
            .await
            .unwrap();
    let KafkaAuth::MskIam { region, .. } = &auth else { panic!("{auth:?}") };
    assert_eq!(Some(region.as_str()), conf.region().map(|r| r.as_ref()));
    assert!(adapters::librdkafka_settings(&auth)
        .iter()
        .any(|(k, v)| *k == "sasl.mechanisms" && v == "OAUTHBEARER"));
}
