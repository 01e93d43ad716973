//! Shared set-up for the tests that talk to real servers. The servers are started by
//! `infra/services start` (which `infra/test` runs); the tests find them through the environment it
//! prints: `REDIS_URL`, `AWS_ENDPOINT_URL` and test credentials.

pub mod delay_proxy;
pub mod fault_proxy;
pub mod lambda_api;

use std::path::PathBuf;

/// The environment variable, or a panic that says how to get the services.
pub fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the local services first (eval \"$(infra/services start)\"), or run ./infra/test")
    })
}

/// A name no other test run uses, for keys, buckets and applications.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository").to_path_buf()
}

/// A sample event from events/.
pub fn event(name: &str) -> serde_json::Value {
    let path = repo_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, or the repository's `target`): where tests leave
/// artefacts worth looking at (the bundle's zips, the dashboard's screenshot).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// A built binary of the workspace (cargo test builds every member's binaries into the same
/// profile directory as this test).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(path.exists(), "{} not built; run cargo test --workspace", path.display());
    path
}

/// The directory infra/setup builds tools into and infra/tools-env links the Python-packaged ones
/// into (moto_server, cfn-lint, sam, cargo-lambda, tansu): `$SPARKPILOT_TOOLS/bin`, by default
/// `~/.cache/sparkpilot/tools/bin`.
pub fn tools_bin() -> PathBuf {
    let tools = std::env::var_os("SPARKPILOT_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sparkpilot/tools")
    });
    tools.join("bin")
}

/// A tool from the tools directory, else by name from the PATH.
pub fn tool(name: &str) -> std::ffi::OsString {
    let linked = tools_bin().join(name);
    if linked.exists() {
        linked.into_os_string()
    } else {
        name.into()
    }
}

/// The tools virtualenv's Python (PyYAML for cfn-lint, botocore from SAM CLI), else `python3`.
pub fn tools_python() -> std::ffi::OsString {
    let venv = tools_bin().with_file_name("venv").join("bin/python");
    if venv.exists() {
        venv.into_os_string()
    } else {
        "python3".into()
    }
}

/// SDK configuration pointing at the emulator.
pub async fn aws_config() -> aws_config::SdkConfig {
    service_env("AWS_ENDPOINT_URL");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(adapters::https_client())
        .load()
        .await
}

/// An S3 client addressing buckets by path, as emulators need.
pub fn s3_client(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(conf).force_path_style(true).build())
}

/// A new EMR Serverless application with `max_vcpu` / `max_gb` capacity and one pre-initialised
/// driver, in the STOPPED state (the emulator, like AWS, starts new applications; capacity changes
/// need CREATED or STOPPED).
pub async fn emr_application(
    conf: &aws_config::SdkConfig,
    max_vcpu: u32,
    max_gb: u32,
    stopped: bool,
) -> String {
    use aws_sdk_emrserverless::types::{
        InitialCapacityConfig, MaximumAllowedResources, WorkerResourceConfig,
    };
    let client = aws_sdk_emrserverless::Client::new(conf);
    let driver = InitialCapacityConfig::builder()
        .worker_count(1)
        .worker_configuration(WorkerResourceConfig::builder().cpu("4 vCPU").memory("16 GB").build().unwrap())
        .build()
        .unwrap();
    let out = client
        .create_application()
        .name(unique("sparkpilot"))
        .release_label("emr-7.5.0")
        .r#type("SPARK")
        .maximum_capacity(
            MaximumAllowedResources::builder()
                .cpu(format!("{max_vcpu} vCPU"))
                .memory(format!("{max_gb} GB"))
                .build()
                .unwrap(),
        )
        .initial_capacity("Driver", driver)
        .send()
        .await
        .expect("CreateApplication on the emulator");
    let id = out.application_id().to_string();
    if stopped {
        client.stop_application().application_id(&id).send().await.expect("StopApplication");
    }
    id
}

pub use pipeline::http::get as http_get;

/// Poll `check` every 25 ms until it holds, and return how long that took; a panic naming `what` once
/// `deadline` has passed.
pub async fn wait_until<F: std::future::Future<Output = bool>>(
    deadline: std::time::Duration,
    what: &str,
    check: impl FnMut() -> F,
) -> std::time::Duration {
    wait_until_every(std::time::Duration::from_millis(25), deadline, what, check).await
}

/// [`wait_until`], polling every `every` (checks that cost a request to a busy server).
pub async fn wait_until_every<F: std::future::Future<Output = bool>>(
    every: std::time::Duration,
    deadline: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(every).await;
    }
    panic!("{what} did not happen within {deadline:?}");
}

/// A tansu broker of a test's own (memory storage) on `port`, to stop and start again: a Kafka that
/// goes away and comes back empty.
pub struct OwnBroker {
    pub port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnBroker {
    fn tansu() -> PathBuf {
        tools_bin().join("tansu")
    }

    pub async fn start(port: u16, topics: &[&str]) -> OwnBroker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = tokio::process::Command::new(Self::tansu())
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        let brokers = format!("127.0.0.1:{port}");
        let start = std::time::Instant::now();
        loop {
            if adapters::create_topics(&brokers, topics).await.is_ok() {
                break;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(30), "tansu on {port} did not answer");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        OwnBroker { port, child: Some(child) }
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

/// A consumer of `topic` from its start, in a group of its own (`group` and a unique suffix), with
/// the short session timeout test consumers use.
pub fn reader(brokers: &str, group: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::Consumer;
    let c: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique(group))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("a consumer");
    c.subscribe(&[topic]).expect("subscribed");
    c
}
