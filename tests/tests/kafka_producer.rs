//! The functions' Kafka producer (rskafka) against tansu: records arrive with their key, value and
//! time, one key lands on the partition librdkafka's producer puts it on, a missing topic is named,
//! and a broker that goes away is reported within the timeout and used again when it is back.

use adapters::{BufferedKafkaProducer, KafkaAuth, KafkaPublisher, ProducerOptions};
use handlers::ports::Publisher;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::Message;
use std::collections::BTreeMap;
use std::time::Duration;
use tests::{service_env, unique, OwnBroker};

const PARTITIONS: i32 = 4;

async fn create_partitioned(brokers: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> =
        adapters::client_config(brokers, &[], &[]).create().expect("admin client");
    let new: Vec<NewTopic> =
        topics.iter().map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await.expect("CreateTopics") {
        r.expect("topic created");
    }
}

/// key → (partition, value, timestamp ms) of the first `n` records on `topic`.
async fn read(brokers: &str, topic: &str, n: usize) -> BTreeMap<String, (i32, String, i64)> {
    let c = tests::reader(brokers, "producer-reader", topic);
    let mut seen = BTreeMap::new();
    while seen.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic}: {} of {n} records after 30 s", seen.len()))
            .expect("consumer");
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
        seen.insert(key, (m.partition(), value, m.timestamp().to_millis().unwrap()));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_whole_and_each_key_lands_where_librdkafka_puts_it() {
    let brokers = service_env("KAFKA_BROKERS");
    let ours = unique("producer-rs");
    let theirs = unique("producer-rd");
    create_partitioned(&brokers, &[&ours, &theirs]).await;

    let publisher = KafkaPublisher::new(&brokers).unwrap();
    let reference = BufferedKafkaProducer::new(&brokers, &[]).unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("edge-{i:03}")).collect();
    let t0 = 1_780_000_000.0;
    for (i, key) in keys.iter().enumerate() {
        let value = format!("{{\"i\":{i}}}");
        let at = t0 + i as f64;
        publisher.publish_at(&ours, key, value.as_bytes(), at).await.expect("published");
        reference.enqueue(&theirs, key, value.as_bytes(), Some((at * 1000.0) as i64)).unwrap().await.unwrap();
    }
    let got = read(&brokers, &ours, keys.len()).await;
    let want = read(&brokers, &theirs, keys.len()).await;
    assert_eq!(got, want, "same partition, value and time for every key");
    let used: std::collections::BTreeSet<i32> = got.values().map(|(p, _, _)| *p).collect();
    assert!(used.len() > 1, "40 keys spread over the partitions: {used:?}");
    assert_eq!(got["edge-007"], (got["edge-007"].0, "{\"i\":7}".to_string(), ((t0 + 7.0) * 1000.0) as i64));

    // A topic the brokers do not have is named, not waited on.
    let missing = unique("no-such-topic");
    let e = publisher.publish(&missing, "k", b"v").await.unwrap_err().to_string();
    assert!(e.contains(&missing) && e.contains("no such topic"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_goes_away_is_reported_in_time_and_used_again_when_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let topic = unique("producer-outage");
    let mut broker = OwnBroker::start(port, &[&topic]).await;
    let brokers = format!("127.0.0.1:{port}");
    let options = ProducerOptions { timeout: Duration::from_secs(2), ..Default::default() };
    let publisher = KafkaPublisher::with_auth(&brokers, &KafkaAuth::Plaintext, options).unwrap();
    publisher.publish(&topic, "k", b"before").await.expect("published while the broker is up");

    broker.stop().await;
    let started = std::time::Instant::now();
    let e = publisher.publish(&topic, "k", b"during").await.unwrap_err().to_string();
    assert!(e.contains(&topic), "{e}");
    assert!(started.elapsed() < Duration::from_secs(6), "reported after {:?}", started.elapsed());

    // The broker comes back empty (memory storage): the topic is made again, and the same
    // publisher reconnects by itself.
    let _broker = OwnBroker::start(port, &[&topic]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match publisher.publish(&topic, "k", b"after").await {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("the broker is back but publishing still fails: {e}"),
        }
    }
    let after = read(&brokers, &topic, 1).await;
    assert_eq!(after["k"].1, "after");
}
