//! The deployment side: template.yaml and stack.yml validate offline, and the function binaries
//! serve both platforms — a Lambda Runtime API (played by a minimal local server, and by
//! `cargo lambda watch` itself, driven with `cargo lambda invoke`) and the of-watchdog's HTTP
//! upstream.

use integration::{event, repo_root, workspace_binary};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The directory infra/tools-env links the Python-packaged tools into (moto_server, cfn-lint, sam,
/// cargo-lambda): `$SPARKPILOT_TOOLS/bin`, by default `~/.cache/sparkpilot/tools/bin`.
fn tools_bin() -> std::path::PathBuf {
    let tools = std::env::var_os("SPARKPILOT_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sparkpilot/tools"));
    tools.join("bin")
}

/// A tool from the tools directory, else by name from the PATH.
fn tool(name: &str) -> std::ffi::OsString {
    let linked = tools_bin().join(name);
    if linked.exists() {
        linked.into_os_string()
    } else {
        name.into()
    }
}

/// The tools virtualenv's Python (it has PyYAML, which cfn-lint needs), else `python3`.
fn tools_python() -> std::ffi::OsString {
    let venv = tools_bin().with_file_name("venv").join("bin/python");
    if venv.exists() {
        venv.into_os_string()
    } else {
        "python3".into()
    }
}

fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn template_yaml_passes_cfn_lint_with_no_ignored_checks() {
    let out = Command::new(tool("cfn-lint")).args(["--", "template.yaml"]).current_dir(repo_root()).output().expect("cfn-lint is installed by infra/setup");
    assert!(out.status.success(), "cfn-lint:\n{}", output_text(&out));
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    assert!(!template.contains("cfn-lint:") && !template.contains("IgnoreChecks"), "template.yaml silences cfn-lint checks");
    for f in handlers::FUNCTIONS {
        assert!(template.contains(&format!("CodeUri: functions/{f}")), "{f} missing from template.yaml");
    }
    assert_eq!(template.matches("BuildMethod: rust-cargolambda").count(), 5);
}

#[test]
fn template_yaml_passes_sam_validate_lint() {
    // Offline: SAM CLI needs a region to name, not credentials or the network.
    let home = std::env::temp_dir().join(integration::unique("sam-home"));
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

/// infra/check-template.py on `path`: whether it passed, and what it printed.
fn check_template(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(tools_python())
        .arg(repo_root().join("infra/check-template.py"))
        .arg("--repo")
        .arg(repo_root())
        .arg(path)
        .output()
        .expect("python with PyYAML (infra/tools-env)");
    (out.status.success(), output_text(&out))
}

#[test]
fn template_yaml_iam_destinations_schedules_and_concurrency() {
    let (ok, text) = check_template(&repo_root().join("template.yaml"));
    assert!(ok, "infra/check-template.py:\n{text}");
    assert!(text.contains("4 Kafka mappings, 4 schedules"), "{text}");
    // The checker itself catches each kind of break.
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let cases: [(&str, &str, &str); 9] = [
        ("                - s3:DeleteObject\n", "                - s3:*\n", "action wildcard 's3:*'"),
        ("            # Lambda's event poller inspects the cluster's network; these Describe actions have no\n            # resource-level permissions, so IAM accepts only \"*\" for them.\n", "", "Resource \"*\" without a justifying comment"),
        ("        - !Ref FailedBatchesWritePolicy\n        - Statement:\n            # The object calls", "        - S3CrudPolicy:\n            BucketName: !Ref ShuffleBucket\n        - !Ref FailedBatchesWritePolicy\n        - Statement:\n            # The object calls", "does not spell out its actions"),
        ("                - s3:RestoreObject\n", "                - s3:RestoreObject\n                - s3:PutObjectAcl\n", "s3:PutObjectAcl is never called"),
        ("      DestinationConfig:\n        OnFailure:\n          Destination: !GetAtt FailedBatchesBucket.Arn\n", "", "without an on-failure destination"),
        ("            Action: s3:PutObject\n", "            Action: s3:GetObject\n", "lacks s3:PutObject on its on-failure destination"),
        ("Topics: [shuffle-manifests]", "Topics: [shuffle-blocks]", "reads topic 'shuffle-manifests' but no mapping"),
        ("              MaximumEventAgeInSeconds: 300\n", "              MaximumEventAgeInSeconds: 600\n", "delivered 600 s late"),
        ("ReservedConcurrentExecutions: 1", "ReservedConcurrentExecutions: 2", "ReservedConcurrentExecutions must be 1"),
    ];
    for (from, to, expect) in cases {
        assert!(template.contains(from), "the test's anchor {from:?} is gone from template.yaml");
        let bad = std::env::temp_dir().join(integration::unique("template")).with_extension("yaml");
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
fn stack_yml_matches_the_openfaas_schema_and_the_repository() {
    let (ok, text) = check_stack(&repo_root(), &["stack.yml"]);
    assert!(ok, "infra/check-stack.py:\n{text}");
    let stack = std::fs::read_to_string(repo_root().join("stack.yml")).unwrap();
    for f in handlers::FUNCTIONS {
        assert!(stack.contains(&format!("handler: ./functions/{f}")), "{f} missing from stack.yml");
    }
    // The checker itself catches each kind of break, in a copy of the project (what faas-cli reads
    // from its working directory: stack.yml, template/ and the copied paths) with one thing changed.
    let dockerfile = std::fs::read_to_string(repo_root().join("template/sparkpilot-rust/Dockerfile")).unwrap();
    let cases: [(&str, &str, &str, &str); 7] = [
        ("stack", "lang: sparkpilot-rust", "language: rust", "unknown key 'language'"),
        ("stack", "*/5 * * * *", "every five minutes", "not a 5-field cron"),
        ("stack", "    - ./tests\n", "", "workspace member tests is not copied"),
        ("stack", "      AWS_SHARED_CREDENTIALS_FILE: /var/openfaas/secrets/aws-credentials\n", "", "AWS_SHARED_CREDENTIALS_FILE is not /var/openfaas/secrets/aws-credentials"),
        ("stack", "      FUNCTION: prewarmer", "      FUNCTION: pre-warmer", "build_args.FUNCTION must be the handler's package, 'prewarmer'"),
        ("Dockerfile", "COPY function/models models", "COPY models models", "copies models, which is not in the build context"),
        ("Dockerfile", "upstream_url=\"http://127.0.0.1:8082\"", "upstream_url=\"http://127.0.0.1:8081\"", "is not the port the function listens on"),
    ];
    for (file, from, to, expect) in cases {
        let dir = std::env::temp_dir().join(integration::unique("stack"));
        std::fs::create_dir_all(dir.join("template/sparkpilot-rust")).unwrap();
        for entry in ["Cargo.toml", "Cargo.lock", "shared", "functions", "tests", "models"] {
            std::os::unix::fs::symlink(repo_root().join(entry), dir.join(entry)).unwrap();
        }
        std::fs::copy(repo_root().join("template/sparkpilot-rust/template.yml"), dir.join("template/sparkpilot-rust/template.yml")).unwrap();
        let (text_of, original) = if file == "stack" { (&stack, "stack.yml") } else { (&dockerfile, "template/sparkpilot-rust/Dockerfile") };
        assert!(text_of.contains(from), "the test's anchor {from:?} is gone from {original}");
        let changed = text_of.replacen(from, to, 1);
        std::fs::write(dir.join("stack.yml"), if file == "stack" { &changed } else { &stack }).unwrap();
        std::fs::write(dir.join("template/sparkpilot-rust/Dockerfile"), if file == "stack" { &dockerfile } else { &changed }).unwrap();
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
#[test]
fn openfaas_build_context_builds_meta_weights() {
    let (ok, text) = check_stack(&repo_root(), &["--build", "meta-weights", "stack.yml"]);
    assert!(ok, "infra/check-stack.py --build meta-weights:\n{text}");
    for expect in ["RUN cargo chef prepare", "RUN cargo chef cook --release --locked -p \"${FUNCTION}\"", "RUN cargo build --release --locked -p \"${FUNCTION}\"", "meta-weights: initialises, and answers /_/health over HTTP"] {
        assert!(text.contains(expect), "{expect:?} not in:\n{text}");
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn function(name: &str, envs: &[(&str, String)]) -> Killed {
    let mut cmd = Command::new(workspace_binary(name));
    cmd.env("SPARKPILOT_BACKEND", "embedded").env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Killed(cmd.spawn().expect("spawn function"))
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut h = String::new();
        stream.read_line(&mut h).await.ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((method, path, body))
}

/// Play the Lambda Runtime API for one invocation of `payload`; return the function's response.
/// Every connection is served on its own task: the runtime client keeps a pool, and may post the
/// response on a second connection while the first sits idle, kept alive.
async fn lambda_invoke(function_name: &str, payload: &Value) -> (String, Value) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _child = function(
        function_name,
        &[
            ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "test".into()),
        ],
    );
    let body = std::sync::Arc::new(payload.to_string());
    let served = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Value)>(1);
    let function_name = function_name.to_string();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (body, served, tx, function_name) = (body.clone(), served.clone(), tx.clone(), function_name.clone());
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                while let Some((method, path, req_body)) = read_request(&mut stream).await {
                    if method == "GET" && path.ends_with("/runtime/invocation/next") {
                        if served.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            // Hold the next poll open: one invocation is all this test wants.
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        let deadline_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 60_000;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: req-1\r\nlambda-runtime-deadline-ms: {deadline_ms}\r\nlambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:{function_name}\r\nlambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.get_mut().write_all(head.as_bytes()).await;
                        let _ = stream.get_mut().write_all(body.as_bytes()).await;
                    } else if method == "POST" && (path.ends_with("/response") || path.ends_with("/error")) {
                        let _ = stream.get_mut().write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").await;
                        let kind = if path.ends_with("/response") { "response" } else { "error" };
                        let _ = tx.send((kind.into(), serde_json::from_slice(&req_body).unwrap_or(Value::Null))).await;
                    } else {
                        let _ = stream.get_mut().write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
                    }
                }
            });
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("the function answered through the runtime API within 30 s").expect("runtime API server stopped");
    server.abort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_binaries_answer_the_lambda_runtime_api() {
    let (kind, out) = lambda_invoke("burst-signal", &event("burst-signal-msk.json")).await;
    assert_eq!(kind, "response", "{out}");
    assert_eq!((out["accepted"].as_u64(), out["burst"].as_bool()), (Some(280), Some(true)), "{out}");
    let (kind, out) = lambda_invoke("meta-weights", &event("schedule.json")).await;
    assert_eq!(kind, "response", "{out}");
    assert_eq!(out["weights"]["version"], 1);
    let (kind, out) = lambda_invoke("meta-weights", &serde_json::json!({"scenario": "atlantis", "budget_remaining": 1})).await;
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
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
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
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not the handler's JSON ({e}): {out}"));
    assert_eq!((v["accepted"].as_u64(), v["burst"].as_bool()), (Some(280), Some(true)), "{v}");
    // A malformed batch: each bad record is reported, the good ones are still applied.
    let (ok, out) = cargo_lambda_invoke(port, "events/burst-signal-msk-malformed.json");
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not the handler's JSON ({e}): {out}"));
    assert!(!v["errors"].as_array().unwrap().is_empty() && v["accepted"].as_u64().unwrap() > 0, "{v}");
}

async fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
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
    let (status, out) = http(&addr, "POST", "/", &[("X-Topic", "iot-metadata"), ("X-Kafka-Partition", "0"), ("X-Kafka-Offset", "17")], record).await;
    assert_eq!((status, out["accepted"].as_u64()), (200, Some(1)), "{out}");
    let (status, out) = http(&addr, "POST", "/", &[("X-Topic", "iot-metadata"), ("X-Kafka-Offset", "18")], b"{broken").await;
    assert_eq!(status, 200, "a bad record is reported, not a failed call");
    assert_eq!(out["errors"][0]["offset"], 18, "{out}");
    let (_p, addr) = serve("prewarmer").await;
    let (status, out) = http(&addr, "POST", "/", &[("X-Connector", "cron-connector")], b"").await;
    assert_eq!(status, 200, "{out}");
    assert!(out.get("prewarm_workers").is_some(), "{out}");
    let (status, out) = http(&addr, "POST", "/", &[("X-Topic", "iot-metadata")], b"{}").await;
    assert_eq!(status, 400, "prewarmer refuses Kafka records: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_decision_writes_cloudwatch_embedded_metric_lines() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let out_path = std::env::temp_dir().join(integration::unique("emf")).with_extension("log");
    let stdout = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(workspace_binary("scaling-decision"));
    cmd.env("SPARKPILOT_BACKEND", "embedded").env("RUST_LOG", "warn").env("SPARKPILOT_METRICS", "emf").env("SPARKPILOT_HTTP_ADDR", &addr).stdout(Stdio::from(stdout)).stderr(Stdio::null());
    let child = Killed(cmd.spawn().expect("spawn scaling-decision"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "scaling-decision never listened on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..2 {
        let (status, out) = http(&addr, "POST", "/", &[("X-Connector", "cron-connector")], b"").await;
        assert_eq!(status, 200, "{out}");
    }
    drop(child);
    let text = std::fs::read_to_string(&out_path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v.get("_aws").is_some()).collect();
    assert_eq!(lines.len(), 2, "one EMF line per decision:\n{text}");
    for v in &lines {
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "sparkpilot");
        for m in spec["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "{name} has no value: {v}");
        }
        assert_eq!((v["Function"].as_str(), v["Decisions"].as_f64(), v["ModelFallback"].as_f64()), (Some("scaling-decision"), Some(1.0), Some(0.0)), "{v}");
    }
    std::fs::remove_file(out_path).ok();
}
