//! The edge agent against a real MQTT broker (Debian's mosquitto, one per test) and Kafka (tansu):
//! a burst of device messages becomes a burst signal in the store through burst-signal, end to end;
//! and while Kafka is away messages wait in the bounded buffer, none is lost, and what a full
//! buffer drops is counted.

use adapters::create_topics;
use adapters::{BufferedKafkaProducer, KafkaPublisher, RedisStore};
use bridge::{Bridge, BridgeConfig, Route};
use edge::{EdgeConfig, EdgeStats};
use handlers::ports::StateStore;
use handlers::{Backends, Settings, Topics};
use rdkafka::consumer::StreamConsumer;
use rdkafka::Message;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tests::{service_env, unique, wait_until, OwnBroker};
use tokio::sync::watch;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A mosquitto of the test's own on loopback, anonymous, without persistence. Its window of QoS 1
/// messages in flight to one client is raised from 20 to 1,000: with 20, an agent whose Kafka is
/// away holds 20 unacknowledged messages and the broker queues the rest (the first outage case
/// works either way; the full-buffer case needs more in flight than the buffer holds).
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("mosquitto"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 1000\n")).unwrap();
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let exe = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (infra/setup: Debian's mosquitto)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Mosquitto { child, port }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A device: publishes `count` messages at `per_s` a second under `devices/<name>`, each payload
/// carrying its sequence number from `first`.
async fn publish(client: &AsyncClient, name: &str, first: u64, count: u64, per_s: f64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s));
    for seq in first..first + count {
        tick.tick().await;
        let payload = format!("{{\"device\":\"{name}\",\"seq\":{seq},\"temperature\":21.5}}");
        client.publish(format!("devices/{name}"), QoS::AtLeastOnce, false, payload).await.unwrap();
    }
}

async fn device(broker: &Mosquitto, name: &str) -> AsyncClient {
    let mut opts = MqttOptions::new(unique(name), "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_inflight(1_000);
    let (client, mut events) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
}

fn agent(
    broker: &Mosquitto,
    brokers: &str,
    tag: &str,
    buffer: usize,
) -> (EdgeConfig, Arc<BufferedKafkaProducer>) {
    let config = EdgeConfig {
        mqtt_url: broker.url(),
        gateway_id: format!("gw-{tag}"),
        metadata_topic: format!("iot-metadata-{tag}"),
        raw_topic: format!("iot-raw-data-{tag}"),
        buffer_messages: buffer,
        ..EdgeConfig::default()
    };
    let kafka = Arc::new(BufferedKafkaProducer::new(brokers, &config.producer_settings()).unwrap());
    (config, kafka)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_mqtt_messages_becomes_a_burst_signal_in_the_store() {
    let brokers = service_env("KAFKA_BROKERS");
    let mqtt = Mosquitto::start();
    let tag = unique("edge");
    let topics = Topics::tagged(&tag);
    let raw = format!("iot-raw-data-{tag}");
    let dlq = format!("sparkpilot-dlq-{tag}");
    create_topics(&brokers, &[&topics.iot_metadata, &topics.scaling_requests, &raw, &dlq]).await.unwrap();

    // burst-signal on the real store, fed from iot-metadata by the bridge (Lambda's mapping).
    let settings =
        Settings { topics: topics.clone(), key_prefix: format!("edge-{tag}"), ..Settings::default() };
    let store = Arc::new(RedisStore::connect(&service_env("REDIS_URL")).await.unwrap());
    let backends = Backends {
        store: store.clone(),
        publisher: Arc::new(KafkaPublisher::new(&brokers).unwrap()),
        ..Backends::embedded()
    };
    let burst_signal = handlers::build("burst-signal", &settings, &backends).unwrap();
    let bridge = Arc::new(
        Bridge::new(
            BridgeConfig {
                brokers: brokers.clone(),
                group_id: format!("edge-{tag}"),
                dead_letter_topic: dlq,
                extra: vec![("session.timeout.ms".into(), "6000".into())],
                ..BridgeConfig::default()
            },
            vec![Route { topic: topics.iot_metadata.clone(), function: burst_signal }],
            vec![],
        )
        .unwrap(),
    );
    let (stop, stopped) = watch::channel(false);
    let bridge_task = {
        let b = bridge.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move { b.run(stopped).await })
    };

    let (config, kafka) = agent(&mqtt, &brokers, &tag, 100_000);
    let stats = Arc::new(EdgeStats::default());
    let agent_task = {
        let (config, kafka, stats) = (config.clone(), kafka.clone(), stats.clone());
        tokio::spawn(async move { edge::run(&config, kafka, stats, stopped).await })
    };
    // The agent's subscription is in place before the devices start.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Two devices at 10 messages/s each for 12 s, then one of them at 150/s for 6 s.
    let (a, b) = (device(&mqtt, "sensor-a").await, device(&mqtt, "sensor-b").await);
    let calm = tokio::join!(publish(&a, "sensor-a", 0, 120, 10.0), publish(&b, "sensor-b", 0, 120, 10.0));
    let _ = calm;
    let cluster_key = handlers::Keys::new(&settings.key_prefix).cluster();
    let read_cluster = || async {
        store
            .get(&cluster_key)
            .await
            .unwrap()
            .map(|v| serde_json::from_slice::<handlers::ClusterBurst>(&v).unwrap())
    };
    let before =
        read_cluster().await.expect("burst-signal stored the cluster state from the agent's reports");
    assert!(!before.burst, "steady load: no burst ({before:?})");
    assert!(before.edges.contains_key(&config.gateway_id), "{:?}", before.edges.keys().collect::<Vec<_>>());
    assert!(
        (before.total_rate - 20.0).abs() < 6.0,
        "the agent counted about 20 messages/s: {}",
        before.total_rate
    );

    publish(&a, "sensor-a", 120, 900, 150.0).await;
    wait_until(Duration::from_secs(20), "the cluster burst raised from the agent's records", || async {
        read_cluster().await.is_some_and(|c| c.burst)
    })
    .await;
    let during = read_cluster().await.unwrap();
    assert!(during.total_rate > 100.0, "{}", during.total_rate);

    // Every device message reached iot-raw-data, acknowledged to the broker.
    wait_until(Duration::from_secs(20), "every message forwarded", || async {
        EdgeStats::get(&stats.forwarded) == 1_140
    })
    .await;
    assert_eq!(EdgeStats::get(&stats.messages), 1_140);
    assert_eq!(EdgeStats::get(&stats.dropped_raw) + EdgeStats::get(&stats.failed), 0);

    let _ = stop.send(true);
    agent_task.await.unwrap().unwrap();
    bridge_task.await.unwrap().unwrap();
}

fn consumer(brokers: &str, topic: &str) -> StreamConsumer {
    tests::reader(brokers, "edge-reader", topic)
}

/// Read sequence numbers from `c` until `want` of them are in `seen` or `patience` passes quietly.
async fn read_seqs(c: &StreamConsumer, seen: &mut BTreeSet<u64>, want: usize, patience: Duration) {
    while seen.len() < want {
        match tokio::time::timeout(patience, c.recv()).await {
            Ok(Ok(m)) => {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                seen.insert(v["seq"].as_u64().unwrap());
            }
            Ok(Err(e)) => panic!("consumer: {e}"),
            Err(_) => break,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_kafka_is_away_messages_wait_in_the_buffer_and_a_full_buffer_counts_its_drops() {
    let mqtt = Mosquitto::start();
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let tag = unique("edge-outage");
    let (config, kafka) = agent(&mqtt, &brokers, &tag, 10_000);
    let all = [config.raw_topic.as_str(), config.metadata_topic.as_str()];
    let mut kafka_broker = OwnBroker::start(port, &all).await;

    let stats = Arc::new(EdgeStats::default());
    let (stop, stopped) = watch::channel(false);
    let agent_task = {
        let (config, kafka, stats) = (config.clone(), kafka.clone(), stats.clone());
        tokio::spawn(async move { edge::run(&config, kafka, stats, stopped).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dev = device(&mqtt, "meter").await;

    // 100 messages reach Kafka and are read back.
    publish(&dev, "meter", 0, 100, 50.0).await;
    wait_until(Duration::from_secs(20), "100 messages forwarded", || async {
        EdgeStats::get(&stats.forwarded) == 100
    })
    .await;
    let mut seen = BTreeSet::new();
    read_seqs(&consumer(&brokers, &config.raw_topic), &mut seen, 100, Duration::from_secs(20)).await;
    assert_eq!(seen.len(), 100);

    // Kafka goes away; 200 more messages arrive meanwhile: none forwarded, none dropped.
    kafka_broker.stop().await;
    publish(&dev, "meter", 100, 200, 50.0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(EdgeStats::get(&stats.forwarded), 100);
    assert_eq!(EdgeStats::get(&stats.messages), 300);
    assert_eq!(EdgeStats::get(&stats.dropped_raw), 0);

    // Kafka is back (empty, the topics made again): the buffered messages are delivered, then new ones.
    let _back = OwnBroker::start(port, &all).await;
    publish(&dev, "meter", 300, 50, 50.0).await;
    wait_until(Duration::from_secs(60), "the buffered messages delivered", || async {
        EdgeStats::get(&stats.forwarded) == 350
    })
    .await;
    read_seqs(&consumer(&brokers, &config.raw_topic), &mut seen, 350, Duration::from_secs(20)).await;
    assert_eq!(seen.len(), 350, "missing: {:?}", (0..350).filter(|s| !seen.contains(s)).collect::<Vec<_>>());
    assert_eq!(EdgeStats::get(&stats.failed), 0);
    let _ = stop.send(true);
    agent_task.await.unwrap().unwrap();

    // A small buffer and no Kafka at all: what does not fit is dropped, counted, and acknowledged.
    let (config, kafka) = agent(&mqtt, &format!("127.0.0.1:{}", free_port()), &unique("edge-full"), 50);
    let stats = Arc::new(EdgeStats::default());
    let (stop, stopped) = watch::channel(false);
    let agent_task = {
        let (config, kafka, stats) = (config.clone(), kafka.clone(), stats.clone());
        tokio::spawn(async move { edge::run(&config, kafka, stats, stopped).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish(&dev, "meter", 1_000, 200, 100.0).await;
    wait_until(Duration::from_secs(10), "200 messages received", || async {
        EdgeStats::get(&stats.messages) == 200
    })
    .await;
    let dropped = EdgeStats::get(&stats.dropped_raw);
    assert!(
        (140..=200).contains(&dropped),
        "a 50-record buffer held at most 50 of 200 messages (and reports): {dropped} dropped"
    );
    assert_eq!(EdgeStats::get(&stats.forwarded), 0);
    let _ = stop.send(true);
    agent_task.await.unwrap().unwrap();
}
