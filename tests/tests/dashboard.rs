//! The dashboard against real parts: `sparkpilot dashboard` on redis-server with a decision the
//! scaling-decision handler stored there, and the page in Debian's headless Chromium during an
//! embedded replay (`sparkpilot replay --dashboard`).

use handlers::{Backends, Settings};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::{event, service_env, unique, workspace_binary};

/// A `sparkpilot` subcommand whose stderr is read for the dashboard's URL, killed when dropped.
struct Running {
    child: Child,
    url: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(args: &[&str], env: &[(&str, String)]) -> Running {
        let mut cmd = Command::new(workspace_binary("sparkpilot"));
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped()).env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("sparkpilot runs");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut seen = Vec::new();
        let url = loop {
            let line = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
                panic!("no dashboard URL after {:?}; stderr: {seen:?}", started.elapsed())
            });
            if let Some(url) = line.strip_prefix("dashboard: ") {
                break url.trim().to_string();
            }
            seen.push(line);
        };
        Running { child, url, stderr: rx }
    }

    /// Wait for a stderr line containing `needle`.
    fn wait_for(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {needle:?} within {timeout:?}"));
            if line.contains(needle) {
                return;
            }
        }
    }
}

/// GET `path` from `base` ("http://127.0.0.1:port/"): status and body.
fn get(base: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("dashboard listens");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_string())
}

fn snapshot(base: &str) -> serde_json::Value {
    let (status, body) = get(base, "/api/snapshot");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_on_redis_shows_what_scaling_decision_stored() {
    let prefix = unique("dash");
    let settings = Settings { key_prefix: prefix.clone(), ..Settings::default() };
    let store = Arc::new(
        adapters::RedisStore::connect(&service_env("REDIS_URL")).await.expect("redis-server answers"),
    );
    let backends = Backends { store, ..Backends::embedded() };
    let decide = handlers::build("scaling-decision", &settings, &backends).unwrap();
    let trigger = handlers::decode_lambda(event("scaling-decision-spark-metrics.json")).unwrap();
    decide.handle(trigger).await.expect("a decision");

    let run = Running::start(
        &["dashboard", "--listen", "127.0.0.1:0"],
        &[("REDIS_URL", service_env("REDIS_URL")), ("SPARKPILOT_KEY_PREFIX", prefix.clone())],
    );
    let s = snapshot(&run.url);
    assert!(s["title"].as_str().unwrap().contains(&prefix), "{}", s["title"]);
    assert_eq!(s["problems"], serde_json::json!([]));
    let decisions = s["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1, "{s}");
    assert_eq!(decisions[0]["trigger"], "spark-metrics");
    assert_eq!(s["series"]["time_s"].as_array().unwrap().len(), 1);
    assert_eq!(s["series"]["requested"][0], decisions[0]["applied"]["executors"]);
    assert_eq!(s["sla"]["decisions"], 1);
    // No results directory: the page is told so, and the route says why.
    let (status, body) = get(&run.url, "/api/results");
    assert_eq!(status, 404);
    assert!(body.contains("--results"), "{body}");
}

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    // The flags keep Chromium off the network it would otherwise reach for at start (sync,
    // component updates), which this machine's closed network refuses.
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("chromium is installed (infra/setup: Debian's chromium)")
}

/// The rendered page: Chromium runs the page's scripts (polling, drawing) for a few seconds of
/// virtual time, then prints the DOM.
fn rendered_dom(url: &str, profile: &Path) -> String {
    let out = chromium(&["--virtual-time-budget=6000", "--dump-dom", url], profile);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn number_attr(dom: &str, attr: &str) -> usize {
    let at = dom.find(&format!("{attr}=\"")).unwrap_or_else(|| panic!("no {attr} in the page"));
    dom[at + attr.len() + 2..].split('"').next().unwrap().parse().unwrap()
}

#[test]
fn chromium_shows_the_replays_decisions_charts_and_results() {
    let dir = std::env::temp_dir().join(unique("dashboard"));
    let out = dir.join("results");
    std::fs::create_dir_all(&dir).unwrap();
    let out_arg = out.display().to_string();
    // 240 trace seconds a wall second: the hour-long trace takes some 15 s, so the page is read
    // while the replay is still going.
    let run = Running::start(
        &[
            "replay",
            "--trace",
            "step-burst",
            "--no-compare",
            "--dashboard",
            "127.0.0.1:0",
            "--pace",
            "240",
            "--out",
            &out_arg,
        ],
        &[],
    );
    let started = Instant::now();
    while snapshot(&run.url)["sla"]["decisions"].as_u64().unwrap() < 5 {
        assert!(started.elapsed() < Duration::from_secs(60), "no decisions stored within a minute");
        std::thread::sleep(Duration::from_millis(200));
    }

    let dom = rendered_dom(&run.url, &dir.join("chromium-1"));
    let during = number_attr(&dom, "data-decisions");
    assert!(during >= 5, "the page saw {during} decisions");
    assert!(!dom.contains("cannot read"), "the page reports a failure");
    // Four charts drawn by uPlot, and the decision log filled from the store.
    assert_eq!(count(&dom, "class=\"uplot"), 4, "uPlot charts in the page");
    let log = dom.split("id=\"decisions\"").nth(1).expect("the decision log");
    let log = log.split("</table>").next().unwrap();
    assert!(count(log, "<tr") > 5, "decision rows: {}", count(log, "<tr"));
    assert!(log.contains("spark-metrics") || log.contains("scaling-requests"), "the log names the triggers");
    assert!(log.contains(" GB, "), "the log shows the actions");
    // The fleet of simulated gateways, as burst-signal merged it.
    let fleet = dom.split("id=\"fleet\"").nth(1).unwrap().split("</table>").next().unwrap();
    assert!(count(fleet, "<tr") > 2, "gateway rows");

    // After the replay its results are there too: the table and the timeline.
    run.wait_for("the dashboard stays at", Duration::from_secs(180));
    let dom = rendered_dom(&run.url, &dir.join("chromium-2"));
    let after = number_attr(&dom, "data-decisions");
    assert!(after > during, "decisions grew from {during} to {after}");
    let results =
        dom.split("id=\"results\"").nth(1).expect("the results table").split("</table>").next().unwrap();
    assert!(results.contains("replay"), "the replay's row in the results table");
    assert!(dom.contains("/results/timeline.svg"), "the timeline image");
    // The budget readings carry the replay's clock, as the decisions do, so the budget line is
    // drawn under them (stamped with the wall clock they would all lie past the last decision).
    let snap = snapshot(&run.url);
    let times: Vec<f64> =
        snap["series"]["time_s"].as_array().unwrap().iter().filter_map(serde_json::Value::as_f64).collect();
    let (first, last) = (times[0], *times.last().unwrap());
    let spend: Vec<f64> = snap["spend"]
        .as_array()
        .expect("budget readings")
        .iter()
        .filter_map(|p| p["time_s"].as_f64())
        .collect();
    assert!(
        spend.iter().any(|t| (first..=last).contains(t)),
        "no budget reading within the decisions' {first}..{last}: {spend:?}"
    );
    assert!(spend.iter().all(|t| *t <= last + 300.0), "budget readings after the last decision: {spend:?}");
    let (status, svg) = get(&run.url, "/results/timeline.svg");
    assert_eq!(status, 200);
    assert!(svg.contains("<svg"));

    let shot: PathBuf = tests::target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &[
            "--virtual-time-budget=6000",
            "--window-size=1400,2200",
            &format!("--screenshot={}", shot.display()),
            &run.url,
        ],
        &dir.join("chromium-3"),
    );
    assert!(out.status.success(), "chromium screenshot failed: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a screenshot of {} bytes", png.len());
    eprintln!("dashboard screenshot: {}", shot.display());
    std::fs::remove_dir_all(&dir).ok();
}
