//! The edge agent (`sparkpilot edge`, the release binary, as a process of its own) between a real
//! mosquitto and Kafka (the local stack's tansu):
//!
//! - latency from a device's MQTT publish to the `iot-metadata` record that counts it, read by a
//!   Kafka consumer: p50 and p99 over a steady 200 messages/s for 30 s. The agent reports once a
//!   second, so about half a second of it is the wait for the end of the second.
//! - throughput: messages forwarded per second of the agent's own CPU time (user + system, from
//!   /proc), while devices publish as fast as the broker takes them.
//!
//! Run by `infra/bench-edge` (which builds the release binary and starts the services).

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tests::{service_env, unique, workspace_binary};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// user + system CPU seconds of `pid`, from /proc/<pid>/stat (clock ticks of 1/100 s).
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let brokers = service_env("KAFKA_BROKERS");
    let port = free_port();
    let dir = std::env::temp_dir().join(unique("bench-mosquitto"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m.conf"), format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\nmax_inflight_messages 1000\n")).unwrap();
    let exe = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    let _mqtt = Killed(
        Command::new(exe)
            .arg("-c")
            .arg(dir.join("m.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto"),
    );
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let tag = unique("bench-edge");
    let (metadata, raw) = (format!("iot-metadata-{tag}"), format!("iot-raw-data-{tag}"));
    adapters::create_topics(&brokers, &[&metadata, &raw]).await.unwrap();

    let agent = Killed(
        Command::new(workspace_binary("sparkpilot"))
            .args([
                "edge",
                "--mqtt",
                &format!("mqtt://127.0.0.1:{port}"),
                "--gateway-id",
                &tag,
                "--metadata-topic",
                &metadata,
                "--raw-topic",
                &raw,
            ])
            .env("KAFKA_BROKERS", &brokers)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the release sparkpilot binary (infra/bench-edge builds it)"),
    );
    let pid = agent.0.id();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut opts = MqttOptions::new(unique("bench-device"), "127.0.0.1", port);
    opts.set_inflight(1_000);
    let (device, mut events) = AsyncClient::new(opts, 100_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });

    // Latency: a steady 200/s for 30 s; each report counts the messages of the second before its
    // timestamp, and is read by a consumer.
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("bench-edge-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    consumer.subscribe(&[&metadata]).unwrap();
    let reports = tokio::spawn(async move {
        let mut seen = Vec::new(); // (record timestamp, read at)
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                seen.push((v["timestamp"].as_f64().unwrap(), now_s()));
            }
        }
        seen
    });
    let mut published = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for seq in 0..6_000u64 {
        tick.tick().await;
        published.push(now_s());
        device
            .publish("devices/meter", QoS::AtLeastOnce, false, format!("{{\"seq\":{seq},\"v\":21.5}}"))
            .await
            .unwrap();
    }
    let seen = reports.await.unwrap();
    let mut latencies: Vec<f64> = published
        .iter()
        .filter_map(|&t| seen.iter().filter(|(ts, _)| *ts >= t).map(|&(_, read)| read - t).next())
        .collect();
    latencies.sort_by(f64::total_cmp);
    assert!(latencies.len() > 5_000, "{} of 6000 messages matched to a report", latencies.len());
    println!(
        "edge: MQTT publish -> iot-metadata record read: p50 {:.0} ms, p99 {:.0} ms over {} messages at 200/s (one report a second)",
        percentile(&latencies, 0.5) * 1e3,
        percentile(&latencies, 0.99) * 1e3,
        latencies.len()
    );

    // Throughput: 200,000 messages as fast as the broker takes them, forwarded to iot-raw-data.
    let raw_reader: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("bench-edge-raw"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    raw_reader.subscribe(&[&raw]).unwrap();
    let n = 200_000u64;
    let cpu_before = cpu_s(pid);
    let started = Instant::now();
    for seq in 0..n {
        device
            .publish("devices/flood", QoS::AtLeastOnce, false, format!("{{\"seq\":{seq},\"v\":21.5}}"))
            .await
            .unwrap();
    }
    // Wait until Kafka has them all (plus the 6,000 of the latency run).
    let mut count = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while count < n + 6_000 && Instant::now() < deadline {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), raw_reader.recv()).await {
            count += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_s(pid) - cpu_before;
    assert_eq!(count, n + 6_000, "every message forwarded");
    println!("edge: {n} messages forwarded in {wall:.1} s wall ({:.0}/s), agent CPU {cpu:.2} s: {:.0} messages per second per core", n as f64 / wall, n as f64 / cpu);
}
