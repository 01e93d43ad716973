//! The deployment side: template.yaml and stack.yml validate offline, and the function binaries
//! serve both platforms — a Lambda Runtime API (played by a minimal local server, and by
//! `cargo lambda watch` itself, driven with `cargo lambda invoke`) and the of-watchdog's HTTP
//! upstream.

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::{event, repo_root, tool, tools_bin, tools_python, workspace_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn template_yaml_passes_cfn_lint_with_no_ignored_checks() {
    let out = Command::new(tool("cfn-lint"))
        .args(["--", "template.yaml"])
        .current_dir(repo_root())
        .output()
        .expect("cfn-lint is installed by infra/setup");
    assert!(out.status.success(), "cfn-lint:\n{}", output_text(&out));
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    assert!(
        !template.contains("cfn-lint:") && !template.contains("IgnoreChecks"),
        "template.yaml silences cfn-lint checks"
    );
    for f in handlers::FUNCTIONS {
        assert!(template.contains(&format!("CodeUri: functions/{f}")), "{f} missing from template.yaml");
    }
    assert_eq!(template.matches("BuildMethod: rust-cargolambda").count(), 5);
}

#[test]
fn template_yaml_passes_sam_validate_lint() {
    // Offline: SAM CLI needs a region to name, not credentials or the network.
    let home = std::env::temp_dir().join(tests::unique("sam-home"));
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(tool("sam"))
        .args(["validate", "--lint", "-t", "template.yaml"])
        .current_dir(repo_root())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("SAM_CLI_TELEMETRY", "0")
        .env("HOME", &home)
        .output()
        .expect("sam (aws-sam-cli) is installed by infra/setup");
    let _ = std::fs::remove_dir_all(&home);
    assert!(out.status.success(), "sam validate --lint:\n{}", output_text(&out));
    assert!(output_text(&out).contains("is a valid SAM Template"), "{}", output_text(&out));
}

/// The metrics each function emits, from the compiled code.
fn code_metrics() -> Value {
    handlers::FUNCTIONS
        .iter()
        .map(|f| (f.to_string(), serde_json::json!(handlers::metrics::metric_names(f))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// infra/check-template.py on `path`, with the metrics the compiled functions emit: whether it
/// passed, and what it printed.
fn check_template(path: &std::path::Path) -> (bool, String) {
    let metrics = std::env::temp_dir().join(tests::unique("metrics")).with_extension("json");
    std::fs::write(&metrics, code_metrics().to_string()).unwrap();
    let out = Command::new(tools_python())
        .arg(repo_root().join("infra/check-template.py"))
        .arg("--repo")
        .arg(repo_root())
        .arg("--metrics")
        .arg(&metrics)
        .arg(path)
        .output()
        .expect("python with PyYAML (infra/tools-env)");
    let _ = std::fs::remove_file(&metrics);
    (out.status.success(), output_text(&out))
}

#[test]
fn template_yaml_iam_destinations_schedules_and_concurrency() {
    let (ok, text) = check_template(&repo_root().join("template.yaml"));
    assert!(ok, "infra/check-template.py:\n{text}");
    assert!(text.contains("4 Kafka mappings, 4 schedules, 1 dashboard"), "{text}");
    assert!(text.contains("10 alarms"), "{text}");
    // The checker itself catches each kind of break.
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let cases: [(&str, &str, &str); 15] = [
        ("                - s3:DeleteObject\n", "                - s3:*\n", "action wildcard 's3:*'"),
        ("            # Lambda's event poller inspects the cluster's network; these Describe actions have no\n            # resource-level permissions, so IAM accepts only \"*\" for them.\n", "", "Resource \"*\" without a justifying comment"),
        ("        - !Ref FailedBatchesWritePolicy\n        - Statement:\n            # The object calls", "        - S3CrudPolicy:\n            BucketName: !Ref ShuffleBucket\n        - !Ref FailedBatchesWritePolicy\n        - Statement:\n            # The object calls", "does not spell out its actions"),
        ("                - s3:RestoreObject\n", "                - s3:RestoreObject\n                - s3:PutObjectAcl\n", "s3:PutObjectAcl is never called"),
        ("      DestinationConfig:\n        OnFailure:\n          Destination: !GetAtt FailedBatchesBucket.Arn\n", "", "without an on-failure destination"),
        ("            Action: s3:PutObject\n", "            Action: s3:GetObject\n", "lacks s3:PutObject on its on-failure destination"),
        ("Topics: [shuffle-manifests]", "Topics: [shuffle-blocks]", "reads topic 'shuffle-manifests' but no mapping"),
        ("              MaximumEventAgeInSeconds: 300\n", "              MaximumEventAgeInSeconds: 600\n", "delivered 600 s late"),
        ("ReservedConcurrentExecutions: 1", "ReservedConcurrentExecutions: 2", "ReservedConcurrentExecutions must be 1"),
        // Monitoring: metrics the code does not emit, and alarms an operator needs.
        ("\"ExecutorsRequested\", \"Function\", \"scaling-decision\"", "\"ExecutorsAsked\", \"Function\", \"scaling-decision\"", "ExecutorsAsked is not a metric scaling-decision emits"),
        ("MetricName: ModelFallback", "MetricName: FallbackInUse", "no alarm on ModelFallback of scaling-decision"),
        ("TreatMissingData: breaching", "TreatMissingData: notBreaching", "must treat missing data as breaching"),
        ("Value: !Ref PrewarmerFunction", "Value: prewarmer", "no Errors alarm for PrewarmerFunction"),
        ("        - Id: FailedBatches\n", "        - Id: Failed\n", "has no MetricsConfigurations entry with Id 'FailedBatches'"),
        ("\"Throttles\", \"FunctionName\", \"${ShuffleRouterFunction}\"", "\"Throttles\", \"FunctionName\", \"${ShuffleRouterFunctio}\"", "does not show ShuffleRouterFunction's Lambda Throttles"),
    ];
    for (from, to, expect) in cases {
        assert!(template.contains(from), "the test's anchor {from:?} is gone from template.yaml");
        let bad = std::env::temp_dir().join(tests::unique("template")).with_extension("yaml");
        std::fs::write(&bad, template.replacen(from, to, 1)).unwrap();
        let (ok, text) = check_template(&bad);
        let _ = std::fs::remove_file(&bad);
        assert!(!ok && text.contains(expect), "expected {expect:?} from the checker:\n{text}");
    }
}

/// infra/check-stack.py with `args`, in `dir`, the tools directory first on the PATH (cargo-chef).
fn check_stack(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let path = format!("{}:{}", tools_bin().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(tools_python())
        .arg(repo_root().join("infra/check-stack.py"))
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .expect("python with PyYAML (infra/tools-env)");
    (out.status.success(), output_text(&out))
}

#[test]
fn check_template_reads_the_metrics_the_code_emits() {
    // Run on its own (CI, by hand), the checker reads the metric lists from metrics.rs: the same as compiled.
    let out = Command::new(tools_python())
        .arg(repo_root().join("infra/check-template.py"))
        .arg("--repo")
        .arg(repo_root())
        .arg("--print-metrics")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let parsed: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
    assert_eq!(parsed, code_metrics());
    let out = Command::new(tools_python())
        .arg(repo_root().join("infra/check-template.py"))
        .arg("--repo")
        .arg(repo_root())
        .arg(repo_root().join("template.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn stack_yml_matches_the_openfaas_schema_and_the_repository() {
    let (ok, text) = check_stack(&repo_root(), &["stack.yml"]);
    assert!(ok, "infra/check-stack.py:\n{text}");
    let stack = std::fs::read_to_string(repo_root().join("stack.yml")).unwrap();
    for f in handlers::FUNCTIONS {
        assert!(stack.contains(&format!("handler: ./functions/{f}")), "{f} missing from stack.yml");
    }
    // The checker itself catches each kind of break, in a copy of the project (what faas-cli reads
    // from its working directory: stack.yml, template/ and the copied paths) with one thing changed.
    let dockerfile =
        std::fs::read_to_string(repo_root().join("template/sparkpilot-rust/Dockerfile")).unwrap();
    let cases: [(&str, &str, &str, &str); 7] = [
        ("stack", "lang: sparkpilot-rust", "language: rust", "unknown key 'language'"),
        ("stack", "*/5 * * * *", "every five minutes", "not a 5-field cron"),
        ("stack", "    - ./tests\n", "", "workspace member tests is not copied"),
        (
            "stack",
            "      AWS_SHARED_CREDENTIALS_FILE: /var/openfaas/secrets/aws-credentials\n",
            "",
            "AWS_SHARED_CREDENTIALS_FILE is not /var/openfaas/secrets/aws-credentials",
        ),
        (
            "stack",
            "      FUNCTION: prewarmer",
            "      FUNCTION: pre-warmer",
            "build_args.FUNCTION must be the handler's package, 'prewarmer'",
        ),
        (
            "Dockerfile",
            "COPY function/models models",
            "COPY models models",
            "copies models, which is not in the build context",
        ),
        (
            "Dockerfile",
            "upstream_url=\"http://127.0.0.1:8082\"",
            "upstream_url=\"http://127.0.0.1:8081\"",
            "is not the port the function listens on",
        ),
    ];
    for (file, from, to, expect) in cases {
        let dir = std::env::temp_dir().join(tests::unique("stack"));
        std::fs::create_dir_all(dir.join("template/sparkpilot-rust")).unwrap();
        for entry in ["Cargo.toml", "Cargo.lock", "shared", "functions", "tests", "models"] {
            std::os::unix::fs::symlink(repo_root().join(entry), dir.join(entry)).unwrap();
        }
        std::fs::copy(
            repo_root().join("template/sparkpilot-rust/template.yml"),
            dir.join("template/sparkpilot-rust/template.yml"),
        )
        .unwrap();
        let (text_of, original) = if file == "stack" {
            (&stack, "stack.yml")
        } else {
            (&dockerfile, "template/sparkpilot-rust/Dockerfile")
        };
        assert!(text_of.contains(from), "the test's anchor {from:?} is gone from {original}");
        let changed = text_of.replacen(from, to, 1);
        std::fs::write(dir.join("stack.yml"), if file == "stack" { &changed } else { &stack }).unwrap();
        std::fs::write(
            dir.join("template/sparkpilot-rust/Dockerfile"),
            if file == "stack" { &dockerfile } else { &changed },
        )
        .unwrap();
        let (ok, text) = check_stack(&dir, &["stack.yml"]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!ok && text.contains(expect), "expected {expect:?} from the checker:\n{text}");
    }
}

/// `faas-cli build` of meta-weights, without Docker: infra/check-stack.py lays out its build
/// context as faas-cli does (template, handler and `copy:` paths), checks every COPY source is in
/// it, follows the Dockerfile's stages and runs their cargo steps (`cargo chef prepare`, `cargo
/// chef cook`, `cargo build --release -p meta-weights`) with the shared CARGO_TARGET_DIR, then runs
/// the binary the runtime stage copies: it initialises, and answers of-watchdog's ready path over
/// HTTP. Warm, about 40 s (the workspace's own crates, release); cold, about 15 minutes on 2 cores.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn function(name: &str, envs: &[(&str, String)]) -> Killed {
    let mut cmd = Command::new(workspace_binary(name));
    cmd.env("SPARKPILOT_BACKEND", "embedded")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Killed(cmd.spawn().expect("spawn function"))
}

/// Play the Lambda Runtime API for one invocation of `payload` to the workspace's `function_name`
/// binary (embedded backends); return the function's response.
async fn lambda_invoke(function_name: &str, payload: &Value) -> (String, Value) {
    let mut cmd = tokio::process::Command::new(workspace_binary(function_name));
    cmd.env("SPARKPILOT_BACKEND", "embedded").env("RUST_LOG", "warn");
    let out = tests::lambda_api::invoke(cmd, function_name, payload, Duration::from_secs(30)).await;
    (out.kind, out.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_binaries_answer_the_lambda_runtime_api() {
    let (kind, out) = lambda_invoke("burst-signal", &event("burst-signal-msk.json")).await;
    assert_eq!(kind, "response", "{out}");
    assert_eq!((out["accepted"].as_u64(), out["burst"].as_bool()), (Some(280), Some(true)), "{out}");
    let (kind, out) = lambda_invoke("meta-weights", &event("schedule.json")).await;
    assert_eq!(kind, "response", "{out}");
    assert_eq!(out["weights"]["version"], 1);
    let (kind, out) =
        lambda_invoke("meta-weights", &serde_json::json!({"scenario": "atlantis", "budget_remaining": 1}))
            .await;
    assert_eq!(kind, "error", "a bad request is an invocation error: {out}");
    assert!(out["errorMessage"].as_str().unwrap_or_default().contains("unknown scenario"), "{out}");
}

/// A free port for a server that binds it itself, taken below the kernel's ephemeral range: a port
/// from `bind(0)` would be free again once returned, and the next `bind(0)` in a parallel test could
/// take it before the server does.
fn free_port() -> u16 {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768);
    let span = low.saturating_sub(10_000).max(1);
    let start = 10_000 + (std::process::id() as u16 % span);
    (0..span)
        .map(|i| 10_000 + (start - 10_000 + i) % span)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// `cargo lambda invoke` against the emulator on `port`; its stdout and whether it succeeded.
fn cargo_lambda_invoke(port: u16, data_file: &str) -> (bool, String) {
    let out = Command::new(tool("cargo-lambda"))
        .args(["lambda", "invoke", "-A", "127.0.0.1", "-P", &port.to_string(), "--data-file", data_file])
        .current_dir(repo_root())
        .output()
        .expect("cargo-lambda is installed by infra/setup");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn cargo_lambda_watch_and_invoke_run_a_function_binary() {
    // cargo lambda's own Runtime API emulator, without its build step (`--only-lambda-apis`): the
    // function binary is the one the workspace built, so no second build with other features.
    let port = free_port();
    // `cargo lambda X` is cargo running `cargo-lambda lambda X`: the tools directory's binary directly.
    let mut watch = Command::new(tool("cargo-lambda"));
    watch
        .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _watch = Killed(watch.spawn().expect("cargo-lambda is installed by infra/setup"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "cargo lambda watch did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The variables `cargo lambda watch --only-lambda-apis` asks the function to run with.
    let _function = function(
        "burst-signal",
        &[
            ("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt")),
            ("AWS_LAMBDA_FUNCTION_NAME", "_".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096".into()),
        ],
    );
    let (ok, out) = cargo_lambda_invoke(port, "events/burst-signal-msk.json");
    assert!(ok, "cargo lambda invoke failed: {out}");
    let v: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not the handler's JSON ({e}): {out}"));
    assert_eq!((v["accepted"].as_u64(), v["burst"].as_bool()), (Some(280), Some(true)), "{v}");
    // A malformed batch: each bad record is reported, the good ones are still applied.
    let (ok, out) = cargo_lambda_invoke(port, "events/burst-signal-msk-malformed.json");
    assert!(ok, "{out}");
    let v: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not the handler's JSON ({e}): {out}"));
    assert!(!v["errors"].as_array().unwrap().is_empty() && v["accepted"].as_u64().unwrap() > 0, "{v}");
}

async fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn serve(name: &str) -> (Killed, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = function(name, &[("SPARKPILOT_HTTP_ADDR", addr.clone())]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "{name} never listened on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_binaries_serve_openfaas_connector_requests() {
    let (_c, addr) = serve("burst-signal").await;
    let (status, health) = http(&addr, "GET", "/_/health", &[], b"").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ready")));
    // The kafka-connector posts the raw record value with the topic in a header.
    let record = br#"{"edge_id":"gw-9","timestamp":1795341600,"rate":120.5}"#;
    let (status, out) = http(
        &addr,
        "POST",
        "/",
        &[("X-Topic", "iot-metadata"), ("X-Kafka-Partition", "0"), ("X-Kafka-Offset", "17")],
        record,
    )
    .await;
    assert_eq!((status, out["accepted"].as_u64()), (200, Some(1)), "{out}");
    let (status, out) =
        http(&addr, "POST", "/", &[("X-Topic", "iot-metadata"), ("X-Kafka-Offset", "18")], b"{broken").await;
    assert_eq!(status, 200, "a bad record is reported, not a failed call");
    assert_eq!(out["errors"][0]["offset"], 18, "{out}");
    let (_p, addr) = serve("prewarmer").await;
    let (status, out) = http(&addr, "POST", "/", &[("X-Connector", "cron-connector")], b"").await;
    assert_eq!(status, 200, "{out}");
    assert!(out.get("prewarm_workers").is_some(), "{out}");
    let (status, out) = http(&addr, "POST", "/", &[("X-Topic", "iot-metadata")], b"{}").await;
    assert_eq!(status, 400, "prewarmer refuses Kafka records: {out}");
}

/// A function binary serving HTTP with its stdout (metrics and record lines) going to a file.
async fn serve_logged(name: &str, rust_log: &str) -> (Killed, String, std::path::PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let out_path = std::env::temp_dir().join(tests::unique(name)).with_extension("log");
    let stdout = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(workspace_binary(name));
    cmd.env("SPARKPILOT_BACKEND", "embedded")
        .env("RUST_LOG", rust_log)
        .env("SPARKPILOT_METRICS", "emf")
        .env("SPARKPILOT_HTTP_ADDR", &addr)
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::null());
    let child = Killed(cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "{name} never listened on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, addr, out_path)
}

/// The JSON lines of a finished function's stdout (the file is removed).
fn json_lines(child: Killed, out_path: &std::path::Path) -> (Vec<Value>, String) {
    drop(child);
    let text = std::fs::read_to_string(out_path).unwrap();
    std::fs::remove_file(out_path).ok();
    (text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect(), text)
}

/// The EMF lines among `lines`, each checked as CloudWatch reads it: namespace sparkpilot, the
/// Function dimension naming `function`, exactly the metrics the code lists for it
/// (`handlers::metrics::metric_names`), valid units, and a number for every metric.
fn emf_lines(function: &str, lines: &[Value]) -> Vec<Value> {
    let emf: Vec<Value> = lines.iter().filter(|v| v.get("_aws").is_some()).cloned().collect();
    for v in &emf {
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "sparkpilot");
        assert_eq!(spec["Dimensions"], serde_json::json!([["Function"]]));
        assert_eq!(v["Function"], function);
        let names: Vec<&str> =
            spec["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        assert_eq!(names, handlers::metrics::metric_names(function), "{function}: {v}");
        for m in spec["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(
                handlers::metrics::UNITS.contains(&m["Unit"].as_str().unwrap()),
                "{name}: not a CloudWatch unit: {v}"
            );
            assert!(v[name].is_number(), "{name} has no value: {v}");
        }
    }
    emf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_decision_writes_cloudwatch_embedded_metric_lines() {
    let (child, addr, out_path) = serve_logged("scaling-decision", "warn").await;
    for _ in 0..2 {
        let (status, out) = http(&addr, "POST", "/", &[("X-Connector", "cron-connector")], b"").await;
        assert_eq!(status, 200, "{out}");
    }
    // A spark-metrics record that is not one: rejected, and the decision still made.
    let (status, out) =
        http(&addr, "POST", "/", &[("X-Topic", "spark-metrics"), ("X-Kafka-Offset", "4")], b"{broken").await;
    assert_eq!(status, 200, "{out}");
    let (lines, text) = json_lines(child, &out_path);
    let lines = emf_lines("scaling-decision", &lines);
    assert_eq!(lines.len(), 3, "one EMF line per decision:\n{text}");
    for v in &lines {
        assert_eq!((v["Decisions"].as_f64(), v["ModelFallback"].as_f64()), (Some(1.0), Some(0.0)), "{v}");
    }
    let rejected: Vec<f64> = lines.iter().map(|v| v["RecordsRejected"].as_f64().unwrap()).collect();
    assert_eq!(rejected, [0.0, 0.0, 1.0], "{text}");
    assert!(
        !text.contains("\"type\":\"decision\""),
        "RUST_LOG=warn holds the decision record lines back:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_writes_its_embedded_metric_lines() {
    // burst-signal: a good record, then one that is not JSON.
    let (child, addr, out) = serve_logged("burst-signal", "warn").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let record = format!(r#"{{"edge_id":"gw-9","timestamp":{now},"rate":120.5}}"#);
    let (status, _) =
        http(&addr, "POST", "/", &[("X-Topic", "iot-metadata"), ("X-Kafka-Offset", "1")], record.as_bytes())
            .await;
    assert_eq!(status, 200);
    let (status, _) =
        http(&addr, "POST", "/", &[("X-Topic", "iot-metadata"), ("X-Kafka-Offset", "2")], b"{broken").await;
    assert_eq!(status, 200);
    let (lines, text) = json_lines(child, &out);
    let emf = emf_lines("burst-signal", &lines);
    assert_eq!(emf.len(), 2, "{text}");
    assert_eq!(
        (
            emf[0]["RecordsAccepted"].as_f64(),
            emf[0]["RecordsRejected"].as_f64(),
            emf[0]["EdgesReporting"].as_f64()
        ),
        (Some(1.0), Some(0.0), Some(1.0)),
        "{text}"
    );
    assert_eq!(
        (emf[1]["RecordsAccepted"].as_f64(), emf[1]["RecordsRejected"].as_f64()),
        (Some(0.0), Some(1.0)),
        "{text}"
    );
    assert!(matches!(emf[1]["ClusterBurst"].as_f64(), Some(b) if b == 0.0 || b == 1.0), "{text}");

    // shuffle-router: a write of one good and one bad manifest, a read, and a read of a block that is not there.
    let (child, addr, out) = serve_logged("shuffle-router", "warn").await;
    let write = serde_json::json!({"blocks": [
        {"block_id": "m1", "size_bytes": 5, "access_count": 3, "age_s": 1.0, "payload_b64": "aGVsbG8="},
        {"block_id": "m2", "size_bytes": 5},
    ]});
    let (status, body) = http(&addr, "POST", "/", &[], write.to_string().as_bytes()).await;
    assert_eq!((status, body["stored"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = http(&addr, "POST", "/", &[], br#"{"op": "read", "block_id": "m1"}"#).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&addr, "POST", "/", &[], br#"{"op": "read", "block_id": "gone"}"#).await;
    assert_ne!(status, 200, "{body}");
    let (lines, text) = json_lines(child, &out);
    let emf = emf_lines("shuffle-router", &lines);
    assert_eq!(emf.len(), 3, "{text}");
    let row = |v: &Value| {
        ["BlocksWritten", "BlocksRead", "BlockFailures", "RecordsRejected", "BytesWritten"]
            .map(|n| v[n].as_f64().unwrap())
    };
    assert_eq!(row(&emf[0]), [1.0, 0.0, 0.0, 1.0, 5.0], "{text}");
    assert_eq!(row(&emf[1]), [0.0, 1.0, 0.0, 0.0, 0.0], "{text}");
    assert_eq!(row(&emf[2]), [0.0, 0.0, 1.0, 0.0, 0.0], "a failed read is a failure:\n{text}");

    // prewarmer and meta-weights: one scheduled run each.
    for function in ["prewarmer", "meta-weights"] {
        let (child, addr, out) = serve_logged(function, "warn").await;
        let (status, body) = http(&addr, "POST", "/", &[("X-Connector", "cron-connector")], b"").await;
        assert_eq!(status, 200, "{body}");
        let (lines, text) = json_lines(child, &out);
        let emf = emf_lines(function, &lines);
        assert_eq!(emf.len(), 1, "{text}");
        if function == "meta-weights" {
            for w in ["WeightAlpha", "WeightBeta", "WeightGamma"] {
                assert!((0.0..=1.0).contains(&emf[0][w].as_f64().unwrap()), "{w}: {text}");
            }
            assert_eq!(emf[0]["WeightAlpha"], body["weights"]["alpha"], "{text}");
        } else {
            assert_eq!(emf[0]["PrewarmWorkers"].as_f64(), body["prewarm_workers"].as_f64(), "{text}");
            assert!(
                emf[0]["PrewarmApplied"].as_f64().unwrap() + emf[0]["PrewarmDeferred"].as_f64().unwrap()
                    <= 1.0,
                "{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_decision_logs_its_record_as_json_fields() {
    let (child, addr, out) = serve_logged("scaling-decision", "info").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let metrics = serde_json::json!({"timestamp": now - 5.0, "input_rate": 1_500.0, "processing_rate": 1_400.0, "batch_duration_ms": 900.0, "backlog": 3_000.0});
    let (status, body) = http(
        &addr,
        "POST",
        "/",
        &[("X-Topic", "spark-metrics"), ("X-Kafka-Partition", "0"), ("X-Kafka-Offset", "7")],
        metrics.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (lines, text) = json_lines(child, &out);
    let records: Vec<&Value> = lines.iter().filter(|v| v["type"] == "decision").collect();
    assert_eq!(records.len(), 1, "one decision record line:\n{text}");
    let line = records[0];
    assert_eq!(
        (line["message"].as_str(), line["level"].as_str()),
        (Some("scaling decision"), Some("INFO")),
        "{line}"
    );
    // The record's fields are JSON fields (what Logs Insights indexes as decision.applied.executors, ...).
    let d = &line["decision"];
    assert!(d.is_object(), "the record is an object, not a string: {line}");
    assert_eq!(d["applied"]["executors"], body["decision"]["applied"]["executors"], "{line}");
    assert!(d["applied"]["executors"].as_u64().is_some_and(|n| n >= 1), "{line}");
    assert_eq!(
        (d["trigger"].as_str(), d["inputs"]["input_rate"].as_f64()),
        (Some("spark-metrics"), Some(1_500.0)),
        "{line}"
    );
    assert!(d["inputs"]["latency_ms"].as_f64().is_some_and(|l| l > 0.0), "{line}");
    assert!(
        d["actuation"].as_array().is_some_and(
            |a| !a.is_empty() && a.iter().all(|p| p["setting"].is_string() && p["applies"].is_string())
        ),
        "{line}"
    );
    assert_eq!(d, &body["decision"], "the line carries the whole record the function returned");
    // Nothing in it is JSON hidden inside a string.
    fn no_escaped_json(v: &Value) -> bool {
        match v {
            Value::String(s) => {
                serde_json::from_str::<Value>(s).map_or(true, |x| !x.is_object() && !x.is_array())
            }
            Value::Array(a) => a.iter().all(no_escaped_json),
            Value::Object(o) => o.values().all(no_escaped_json),
            _ => true,
        }
    }
    assert!(no_escaped_json(line), "{line}");
}
