//! The handlers against real servers: redis-server for state and the Redis shuffle tier, moto for
//! EMR Serverless, S3 (with Glacier semantics) and ElastiCache. Kafka publishing is in-memory here;
//! the live Kafka path has its own tests.

use adapters::{ElastiCacheHotTier, EmrServerless, RedisStore, S3Store};
use handlers::memory::{DirStore, MemoryPublisher};
use handlers::ports::{HotTier, ObjectRead, StateStore, StorageClass, StoreWrite};
use handlers::{build, decode_lambda, Backends, KafkaMessage, Settings, Trigger};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tests::*;

struct Live {
    backends: Backends,
    publisher: Arc<MemoryPublisher>,
    redis: Arc<RedisStore>,
    emr: aws_sdk_emrserverless::Client,
    app: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    settings: Settings,
}

async fn live(app_stopped: bool) -> Live {
    let conf = aws_config().await;
    let redis = Arc::new(RedisStore::connect(&service_env("REDIS_URL")).await.expect("redis-server answers"));
    let app = emr_application(&conf, 16, 64, app_stopped).await;
    let s3 = s3_client(&conf);
    let bucket = unique("shuffle").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
    let publisher = Arc::new(MemoryPublisher::default());
    let nvme_dir = std::env::temp_dir().join(unique("sparkpilot-nvme"));
    let backends = Backends {
        store: redis.clone(),
        publisher: publisher.clone(),
        emr: Arc::new(EmrServerless::new(aws_sdk_emrserverless::Client::new(&conf), &app)),
        hot_tier: Arc::new(handlers::memory::MemoryHotTier::default()),
        objects: Arc::new(S3Store::new(s3.clone(), &bucket)),
        nvme: Arc::new(DirStore::new(nvme_dir).unwrap()),
    };
    let settings = Settings { key_prefix: unique("sp"), ..Settings::default() };
    Live {
        backends,
        publisher,
        redis,
        emr: aws_sdk_emrserverless::Client::new(&conf),
        app,
        s3,
        bucket,
        settings,
    }
}

impl Live {
    async fn invoke(&self, function: &str, trigger: Trigger) -> Value {
        build(function, &self.settings, &self.backends)
            .unwrap()
            .handle(trigger)
            .await
            .map(|o| o.to_json())
            .unwrap_or_else(|e| panic!("{function}: {e}"))
    }

    /// Max vCPUs and executor initial capacity, as GetApplication reports them.
    async fn capacity(&self) -> (String, Option<i64>, String) {
        let out = self.emr.get_application().application_id(&self.app).send().await.unwrap();
        let a = out.application().unwrap();
        let cpu = a.maximum_capacity().map(|m| m.cpu().to_string()).unwrap_or_default();
        let executors = a.initial_capacity().and_then(|m| m.get("Executor")).map(|e| e.worker_count());
        (cpu, executors, a.state().as_str().to_string())
    }

    fn published_as_kafka(&self, topic: &str) -> Trigger {
        let records = self
            .publisher
            .on(topic)
            .into_iter()
            .enumerate()
            .map(|(i, p)| KafkaMessage {
                topic: topic.into(),
                partition: 0,
                offset: i as i64,
                timestamp_ms: 0,
                key: None,
                value: Some(Ok(p)),
            })
            .collect();
        Trigger::Kafka(records)
    }
}

/// The record's part for `setting`.
fn part<'a>(decision: &'a Value, setting: &str) -> &'a Value {
    decision["actuation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["setting"] == setting)
        .unwrap_or_else(|| panic!("no {setting} part: {decision}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_application_takes_the_decision_through_update_application() {
    let l = live(true).await;
    let (cpu_before, _, state) = l.capacity().await;
    assert_eq!((cpu_before.as_str(), state.as_str()), ("16 vCPU", "STOPPED"));
    let out = l.invoke("burst-signal", decode_lambda(event("burst-signal-msk.json")).unwrap()).await;
    assert_eq!(out["burst"], true, "{out}");
    // The edge windows really are in Redis.
    let edge: Option<Vec<u8>> =
        l.redis.get(&format!("{{{}}}:edge:gw-000", l.settings.key_prefix)).await.unwrap();
    assert!(edge.is_some_and(|e| e.len() > 100));
    let decision = l.invoke("scaling-decision", l.published_as_kafka("scaling-requests")).await;
    let d = &decision["decision"];
    assert_eq!(d["emr"], "updated", "{decision}");
    assert_eq!(part(d, "maximum_capacity")["applies"], "now");
    assert_eq!(part(d, "executors")["applies"], "next_job_run");
    let (cpu_after, _, _) = l.capacity().await;
    let ceiling = l.settings.guardrails.max_executors * l.settings.vcpu_per_executor;
    assert_eq!(
        adapters::parse_quantity(&cpu_after).unwrap() as u32,
        ceiling,
        "GetApplication shows {cpu_before} -> {cpu_after}"
    );
    let logged = l.redis.recent(&format!("{{{}}}:decisions", l.settings.key_prefix), 10).await.unwrap();
    assert_eq!(logged.len(), 1, "the decision is recorded in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_application_gets_executors_through_the_agent_and_the_rest_at_its_stop() {
    let l = live(false).await;
    assert_eq!(l.capacity().await.2, "STARTED");
    l.invoke("burst-signal", decode_lambda(event("burst-signal-msk.json")).unwrap()).await;
    let decision = l.invoke("scaling-decision", l.published_as_kafka("scaling-requests")).await;
    let d = &decision["decision"];
    assert!(!decision.to_string().contains("deferred"), "{decision}");
    // The executors go to the running job through the agent, which reads them on scaling-decisions.
    assert_eq!(part(d, "executors")["applies"], "now", "{d}");
    let published: Value =
        serde_json::from_slice(l.publisher.on("scaling-decisions").last().unwrap()).unwrap();
    assert_eq!(published["applied"]["executors"], d["applied"]["executors"]);
    // The emulator refuses UpdateApplication now, as AWS does: the ceiling waits for the stop.
    assert_eq!(part(d, "maximum_capacity")["applies"], "when_stopped", "{d}");
    assert_eq!(l.capacity().await.0, "16 vCPU");
    let pending = l.redis.get(&format!("{{{}}}:emr:pending", l.settings.key_prefix)).await.unwrap();
    assert!(pending.is_some());
    // Stopped: the next decision carries it.
    l.emr.stop_application().application_id(&l.app).send().await.expect("StopApplication");
    let decision = l.invoke("scaling-decision", decode_lambda(event("schedule.json")).unwrap()).await;
    assert_eq!(decision["decision"]["emr"], "updated", "{decision}");
    let ceiling = l.settings.guardrails.max_executors * l.settings.vcpu_per_executor;
    assert_eq!(adapters::parse_quantity(&l.capacity().await.0).unwrap() as u32, ceiling);
    assert!(l.redis.get(&format!("{{{}}}:emr:pending", l.settings.key_prefix)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_on_the_emulator() {
    let mut l = live(true).await;
    l.settings.dry_run = true;
    let before = l.capacity().await;
    l.invoke("burst-signal", decode_lambda(event("burst-signal-msk.json")).unwrap()).await;
    let decision = l.invoke("scaling-decision", l.published_as_kafka("scaling-requests")).await;
    assert_eq!(decision["decision"]["dry_run"], true);
    l.invoke("prewarmer", decode_lambda(event("schedule.json")).unwrap()).await;
    assert_eq!(l.capacity().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prewarmer_sets_initial_capacity_on_the_emulator() {
    let l = live(true).await;
    let history: Vec<Vec<u8>> = (0..1_800)
        .map(|s| {
            serde_json::to_vec(&control::LoadSample {
                time_s: 1_795_340_000.0 + s as f64,
                rate: 500.0 + 3.0 * s as f64,
            })
            .unwrap()
        })
        .collect();
    l.redis
        .push_capped(&format!("{{{}}}:load-history", l.settings.key_prefix), &history, 7_200)
        .await
        .unwrap();
    let out = l.invoke("prewarmer", decode_lambda(event("schedule.json")).unwrap()).await;
    let target = out["prewarm_workers"].as_i64().unwrap();
    assert!(target > 0, "{out}");
    let (_, executors, _) = l.capacity().await;
    assert_eq!(executors, Some(target.min(4)), "{out}");
    // Quiet again: the pre-initialised executors are released.
    let flat: Vec<Vec<u8>> = (0..1_800)
        .map(|s| {
            serde_json::to_vec(&control::LoadSample { time_s: 1_795_340_100.0 + s as f64, rate: 1_000.0 })
                .unwrap()
        })
        .collect();
    l.redis.push_capped(&format!("{{{}}}:load-history", l.settings.key_prefix), &flat, 1_800).await.unwrap();
    let out = l.invoke("prewarmer", decode_lambda(event("schedule.json")).unwrap()).await;
    assert_eq!(out["prewarm_workers"], 0, "{out}");
    assert_eq!(l.capacity().await.1, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffle_blocks_on_every_tier_read_back_byte_identical() {
    let l = live(true).await;
    let manifest = event("shuffle-router-manifest.json");
    let out = l.invoke("shuffle-router", decode_lambda(manifest.clone()).unwrap()).await;
    assert_eq!(out["tiers"], json!({"redis": 2, "nvme": 1, "s3": 1, "glacier": 1}), "{out}");
    // Glacier really is the GLACIER storage class on S3.
    let router = handlers::shuffle_router::ShuffleRouter::new(&l.settings, &l.backends).unwrap();
    let archived = router.location("shuffle_5_0_0").await.unwrap().unwrap();
    let head = l.s3.head_object().bucket(&l.bucket).key(&archived.key).send().await.unwrap();
    assert_eq!(head.storage_class().map(|c| c.as_str()), Some("GLACIER"));
    for block in manifest["blocks"].as_array().unwrap() {
        let id = block["block_id"].as_str().unwrap();
        let mut got = Value::Null;
        for _ in 0..20 {
            got = l.invoke("shuffle-router", Trigger::Direct(json!({"op": "read", "block_id": id}))).await;
            if got["status"] != "restoring" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(got["status"], "ok", "{id}: {got}");
        assert_eq!(got["payload_b64"], block["payload_b64"], "{id} came back different");
    }
    // A move copies, verifies, indexes, then deletes the old copy.
    let on_nvme = router.location("shuffle_7_2_0").await.unwrap().unwrap();
    let moved = l.invoke("shuffle-router", decode_lambda(event("shuffle-router-move.json")).unwrap()).await;
    assert_eq!(moved["tier"], "s3");
    let on_s3 = router.location("shuffle_7_2_0").await.unwrap().unwrap();
    let s3_copy = l.backends.objects.get(&on_s3.key).await.unwrap();
    assert!(matches!(s3_copy, ObjectRead::Bytes(_)));
    assert_eq!(l.backends.nvme.get(&on_nvme.key).await.unwrap(), ObjectRead::Missing);
    let again =
        l.invoke("shuffle-router", Trigger::Direct(json!({"op": "read", "block_id": "shuffle_7_2_0"}))).await;
    assert_eq!(again["payload_b64"], manifest["blocks"][2]["payload_b64"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_object_reads_as_archived_until_restored() {
    let l = live(true).await;
    let key = unique("archived");
    l.backends.objects.put(&key, b"cold bytes".to_vec(), StorageClass::Glacier).await.unwrap();
    assert_eq!(
        l.backends.objects.get(&key).await.unwrap(),
        ObjectRead::Archived { restore_in_progress: false }
    );
    l.backends.objects.restore(&key, 1).await.unwrap();
    assert_eq!(l.backends.objects.get(&key).await.unwrap(), ObjectRead::Bytes(b"cold bytes".to_vec()));
    assert_eq!(l.backends.objects.get("no/such/key").await.unwrap(), ObjectRead::Missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_behaves_like_the_in_memory_store() {
    let redis = RedisStore::connect(&service_env("REDIS_URL")).await.unwrap();
    let memory = handlers::memory::MemoryStore::default();
    let p = unique("contract");
    for store in [&redis as &dyn StateStore, &memory as &dyn StateStore] {
        let k = |s: &str| format!("{p}:{s}");
        store.set_many(&[(k("a"), b"1".to_vec()), (k("b"), b"2".to_vec())], None).await.unwrap();
        assert_eq!(
            store.get_many(&[k("a"), k("missing"), k("b")]).await.unwrap(),
            vec![Some(b"1".to_vec()), None, Some(b"2".to_vec())]
        );
        assert!(store.set_if_absent(&k("once"), b"x", Duration::from_secs(60)).await.unwrap());
        assert!(!store.set_if_absent(&k("once"), b"y", Duration::from_secs(60)).await.unwrap());
        store.push_capped(&k("list"), &[b"1".to_vec(), b"2".to_vec(), b"3".to_vec()], 2).await.unwrap();
        assert_eq!(store.recent(&k("list"), 10).await.unwrap(), vec![b"3".to_vec(), b"2".to_vec()]);
        assert!(store.set_many_if_version(&k("v"), 0, &[(k("x"), b"1".to_vec())], None).await.unwrap());
        assert!(
            !store.set_many_if_version(&k("v"), 0, &[(k("x"), b"2".to_vec())], None).await.unwrap(),
            "stale version refused"
        );
        assert_eq!(store.get(&k("x")).await.unwrap(), Some(b"1".to_vec()));
        assert!(store
            .set_many_if_version(
                &k("v"),
                1,
                &[(k("x"), b"3".to_vec()), (k("y"), b"4".to_vec())],
                Some(Duration::from_secs(60))
            )
            .await
            .unwrap());
        assert_eq!(
            store.get_many(&[k("x"), k("y"), k("v")]).await.unwrap(),
            vec![Some(b"3".to_vec()), Some(b"4".to_vec()), Some(b"2".to_vec())]
        );
        assert_eq!(store.incr(&k("n")).await.unwrap(), 1);
        assert_eq!(store.incr(&k("n")).await.unwrap(), 2);
        store.delete(&[k("a")]).await.unwrap();
        assert_eq!(store.get(&k("a")).await.unwrap(), None);
        store
            .write(&[
                StoreWrite::Set { key: k("w1"), value: b"one".to_vec(), ttl: None },
                StoreWrite::Set {
                    key: k("w2"),
                    value: b"two".to_vec(),
                    ttl: Some(Duration::from_millis(50)),
                },
                StoreWrite::Delete { key: k("b") },
                StoreWrite::PushCapped { key: k("list"), values: vec![b"4".to_vec(), b"5".to_vec()], cap: 3 },
            ])
            .await
            .unwrap();
        assert_eq!(
            store.get_many(&[k("w1"), k("w2"), k("b")]).await.unwrap(),
            vec![Some(b"one".to_vec()), Some(b"two".to_vec()), None]
        );
        assert_eq!(
            store.recent(&k("list"), 10).await.unwrap(),
            vec![b"5".to_vec(), b"4".to_vec(), b"3".to_vec()]
        );
        store.set_many(&[(k("ttl"), b"t".to_vec())], Some(Duration::from_millis(50))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(store.get(&k("ttl")).await.unwrap(), None, "expired");
        assert_eq!(store.get(&k("w2")).await.unwrap(), None, "a batched write's TTL expires too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_tier_reads_shards_from_the_emulator() {
    let conf = aws_config().await;
    let client = aws_sdk_elasticache::Client::new(&conf);
    let group = unique("hot")
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect::<String>();
    client
        .create_replication_group()
        .replication_group_id(&group)
        .replication_group_description("sparkpilot hot tier")
        .engine("redis")
        .cache_node_type("cache.r7g.large")
        .num_node_groups(2)
        .send()
        .await
        .expect("CreateReplicationGroup");
    let tier = ElastiCacheHotTier::new(client, &group);
    assert_eq!(tier.shards().await.unwrap(), 2);
}

/// moto has no ModifyReplicationGroupShardConfiguration: this one call goes to the SDK's own mock,
/// which checks the request the adapter builds.
#[tokio::test]
async fn resharding_sends_the_node_group_count_through_the_sdk() {
    use aws_sdk_elasticache::operation::modify_replication_group_shard_configuration::ModifyReplicationGroupShardConfigurationOutput;
    use aws_smithy_mocks::{mock, mock_client};
    let rule = mock!(aws_sdk_elasticache::Client::modify_replication_group_shard_configuration)
        .match_requests(|r| {
            r.replication_group_id() == Some("hot")
                && r.node_group_count() == Some(3)
                && r.apply_immediately() == Some(true)
        })
        .then_output(|| ModifyReplicationGroupShardConfigurationOutput::builder().build());
    let client = mock_client!(aws_sdk_elasticache, [&rule]);
    ElastiCacheHotTier::new(client, "hot").set_shards(3).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_builds_backends_from_the_environment_and_names_what_is_missing() {
    let err =
        adapters::connect_with("scaling-decision", |k| (k == "REDIS_URL").then(|| service_env("REDIS_URL")))
            .await
            .err()
            .expect("missing settings");
    assert!(err.to_string().contains("scaling-decision needs KAFKA_BROKERS"), "{err}");
    let err = adapters::connect_with("meta-weights", |k| {
        (k == "REDIS_URL").then(|| "redis://127.0.0.1:1/".to_string())
    })
    .await
    .err()
    .expect("nothing listens on port 1");
    assert!(err.to_string().contains("redis redis://127.0.0.1:1/"), "{err}");
    let b = adapters::connect_with("meta-weights", |k| (k == "REDIS_URL").then(|| service_env("REDIS_URL")))
        .await
        .unwrap();
    b.store.set_many(&[(unique("connect"), b"ok".to_vec())], Some(Duration::from_secs(5))).await.unwrap();
    let _ = b.emr.get_application().await.expect_err("meta-weights has no EMR access");
}
