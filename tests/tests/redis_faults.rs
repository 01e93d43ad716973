//! Redis killed in the middle of a stream of decisions, against a redis-server this test starts and
//! kills: every invocation either completes or fails with a backend error (no panic, no hang past the
//! time limits), and once Redis is back the redelivered records are decided once each and the state
//! reads back.

use adapters::RedisStore;
use handlers::{build, Backends, Embedded, KafkaMessage, Settings, Trigger};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::unique;

fn start_redis(port: u16) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed by infra/setup")
}

async fn connect(url: &str) -> RedisStore {
    let started = Instant::now();
    loop {
        match RedisStore::connect(url).await {
            Ok(s) => return s,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("redis did not come up: {e}"),
        }
    }
}

fn metrics_record(offset: i64, now: f64) -> KafkaMessage {
    let value = json!({"timestamp": now - 30.0 + offset as f64 * 0.1, "input_rate": 1_000.0 + 100.0 * offset as f64, "processing_rate": 1_000.0, "batch_duration_ms": 900.0, "backlog": 5_000.0 * offset as f64});
    KafkaMessage {
        topic: "spark-metrics".into(),
        partition: 0,
        offset,
        timestamp_ms: ((now - 30.0) * 1_000.0) as i64 + offset * 100,
        key: None,
        value: Some(Ok(serde_json::to_vec(&value).unwrap())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_stream_loses_no_decision_and_makes_none_twice() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let mut server = start_redis(port);
    let store = Arc::new(connect(&url).await);
    let env = Embedded::default();
    let backends = Backends { store: store.clone(), ..env.backends() };
    let settings = Settings { key_prefix: unique("faults"), ..Settings::default() };
    let decide = build("scaling-decision", &settings, &backends).unwrap();
    let now = handlers::events::now_s();
    let batches: Vec<Vec<KafkaMessage>> =
        (0..20).map(|b| (0..5).map(|i| metrics_record(b * 5 + i, now)).collect()).collect();

    // Deliver the batches one after another; kill Redis after the fifth.
    let mut failed = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        if i == 5 {
            server.kill().unwrap();
            server.wait().unwrap();
        }
        let started = Instant::now();
        match decide.handle(Trigger::Kafka(batch.clone())).await.map(|o| o.to_json()) {
            Ok(out) => assert!(out["decision"].is_object() || out["duplicate"] == true, "{out}"),
            Err(e) => {
                assert!(e.to_string().contains("redis"), "a backend error naming Redis: {e}");
                failed.push(i);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "batch {i} took {:?} with Redis gone",
            started.elapsed()
        );
    }
    assert!(failed.len() >= 10, "with Redis down the batches fail and stay in Kafka: {failed:?}");
    let decided_before = env.publisher.on("scaling-decisions").len();

    // Redis comes back (empty: no persistence) and the event source delivers again from the first
    // uncommitted batch: everything from the first failure on, in the same batches and recut.
    server = start_redis(port);
    let first = failed[0];
    let rest: Vec<KafkaMessage> = batches[first..].iter().flatten().cloned().collect();
    let started = Instant::now();
    let out = loop {
        match decide.handle(Trigger::Kafka(rest.clone())).await.map(|o| o.to_json()) {
            Ok(out) => break out,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("Redis is back but the batch still fails: {e}"),
        }
    };
    assert!(out["decision"].is_object(), "{out}");
    // The same records again, recut: nothing new to decide.
    for cut in rest.chunks(7) {
        let again = decide.handle(Trigger::Kafka(cut.to_vec())).await.unwrap().to_json();
        assert_eq!(again["duplicate"], true, "{again}");
    }
    assert_eq!(env.publisher.on("scaling-decisions").len(), decided_before + 1);
    // The state reads back and the next batch is decided.
    let next = decide.handle(Trigger::Kafka(vec![metrics_record(1_000, now)])).await.unwrap().to_json();
    assert!(next["decision"].is_object() && next.get("discarded_state").is_none(), "{next}");
    server.kill().ok();
    server.wait().ok();
}
