//! Every sample event in events/ through its handler, on the in-memory backends.

use base64::Engine;
use handlers::ports::{AppState, EmrControl, HotTier, ObjectStore, StorageClass};
use handlers::{build, decode_lambda, Embedded, HandlerError, Settings, Trigger};
use serde_json::{json, Value};
use std::path::PathBuf;

fn event(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn trigger(name: &str) -> Trigger {
    decode_lambda(event(name)).unwrap()
}

async fn invoke(
    env: &Embedded,
    settings: &Settings,
    function: &str,
    t: Trigger,
) -> Result<Value, HandlerError> {
    build(function, settings, &env.backends()).unwrap().handle(t).await.map(|o| o.to_json())
}

/// Published payloads on a topic, as Kafka records the next function would receive.
fn as_kafka(env: &Embedded, topic: &str) -> Trigger {
    let records = env
        .publisher
        .on(topic)
        .into_iter()
        .enumerate()
        .map(|(i, p)| handlers::KafkaMessage {
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

#[tokio::test]
async fn msk_burst_batch_raises_the_cluster_burst_in_two_round_trips() {
    let env = Embedded::default();
    let out =
        invoke(&env, &Settings::default(), "burst-signal", trigger("burst-signal-msk.json")).await.unwrap();
    assert_eq!(out["records"], 280);
    assert_eq!(out["accepted"], 280);
    assert_eq!(out["errors"].as_array().unwrap().len(), 0);
    assert_eq!(out["burst"], true, "{out}");
    assert_eq!(out["changed"], true);
    assert_eq!(out["edges"], 4);
    // A cold container: one read of every edge, the cluster and the version, one versioned write.
    assert_eq!(env.store.trips(), 2);
    let published = env.publisher.on("scaling-requests");
    assert_eq!(published.len(), 1);
    let event: Value = serde_json::from_slice(&published[0]).unwrap();
    assert_eq!(event["burst"], true);
    assert!(event["total_rate"].as_f64().unwrap() > 3_000.0, "{event}");

    // The same batch again (a redelivery) changes nothing: every sample is older than the state.
    let again =
        invoke(&env, &Settings::default(), "burst-signal", trigger("burst-signal-msk.json")).await.unwrap();
    assert_eq!(
        (again["accepted"].as_u64(), again["stale"].as_u64(), again["changed"].as_bool()),
        (Some(0), Some(280), Some(false))
    );
}

#[tokio::test]
async fn a_warm_container_needs_one_round_trip_per_batch_and_a_racing_writer_is_caught() {
    let env = Embedded::default();
    let settings = Settings::default();
    let handler = build("burst-signal", &settings, &env.backends()).unwrap();
    let batch = |second: u64| {
        let records: Vec<Value> = (0..1_000).map(|i| json!({"edge_id": format!("gw-{:03}", i % 50), "timestamp": 1_795_341_600 + second * 100 + i / 50, "rate": 100.0})).collect();
        Trigger::Direct(json!({"records": records}))
    };
    handler.handle(batch(0)).await.unwrap();
    let before = env.store.trips();
    let out = handler.handle(batch(1)).await.unwrap().to_json();
    assert_eq!(out["accepted"], 1_000);
    assert_eq!(env.store.trips() - before, 1, "1,000 records, 50 edges, one round trip");
    // Another container writes in between: the versioned write fails, the state is re-read, and
    // the batch still lands exactly once.
    let other = build("burst-signal", &settings, &env.backends()).unwrap();
    other.handle(batch(2)).await.unwrap();
    let before = env.store.trips();
    let out = handler.handle(batch(3)).await.unwrap().to_json();
    assert_eq!((out["accepted"].as_u64(), out["stale"].as_u64()), (Some(1_000), Some(0)), "{out}");
    assert_eq!(env.store.trips() - before, 3, "failed write, read, write");
    let out = handler.handle(batch(2)).await.unwrap().to_json();
    assert_eq!(out["stale"], 1_000, "the other container's batch is in the state this one read");
}

#[tokio::test]
async fn malformed_records_are_reported_one_by_one_and_the_rest_processed() {
    let env = Embedded::default();
    let out = invoke(&env, &Settings::default(), "burst-signal", trigger("burst-signal-msk-malformed.json"))
        .await
        .unwrap();
    assert_eq!(out["accepted"], 2, "{out}");
    assert_eq!(out["tombstones"], 1);
    let errors = out["errors"].as_array().unwrap();
    let by_offset =
        |o: i64| errors.iter().find(|e| e["offset"] == o).map(|e| e["error"].as_str().unwrap().to_string());
    assert!(by_offset(1).unwrap().contains("base64"), "{errors:?}");
    assert!(by_offset(2).unwrap().contains("not a valid record"), "{errors:?}");
    assert!(by_offset(4).unwrap().contains("rate -5"), "{errors:?}");
    assert_eq!(errors.len(), 3);
}

#[tokio::test]
async fn self_managed_kafka_batches_decode_too() {
    let env = Embedded::default();
    let out = invoke(&env, &Settings::default(), "burst-signal", trigger("burst-signal-self-managed.json"))
        .await
        .unwrap();
    assert_eq!((out["accepted"].as_u64(), out["burst"].as_bool()), (Some(10), Some(false)));
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

#[tokio::test]
async fn a_created_application_takes_the_ceiling_and_the_decision_waits_for_the_next_run() {
    let env = Embedded::default();
    let settings = Settings::default();
    let before = env.emr.get_application().await.unwrap().capacity;
    invoke(&env, &settings, "burst-signal", trigger("burst-signal-msk.json")).await.unwrap();
    let out = invoke(&env, &settings, "scaling-decision", as_kafka(&env, "scaling-requests")).await.unwrap();
    let d = &out["decision"];
    assert_eq!(d["inputs"]["burst_signal"], true, "{out}");
    assert_eq!(d["reason"], "burst raised");
    assert_eq!(d["emr"], "updated", "{out}");
    // UpdateApplication set the guardrails' ceiling: the room the job's agent scales in.
    let after = env.emr.get_application().await.unwrap().capacity;
    assert_eq!(
        after.max_vcpu,
        settings.guardrails.max_executors * settings.vcpu_per_executor,
        "{before:?} -> {after:?}"
    );
    assert_eq!(part(d, "maximum_capacity")["applies"], "now");
    // No job runs in a CREATED application: executors, memory and codec are the next run's.
    let executors = d["applied"]["executors"].as_u64().unwrap();
    assert!(executors > 4, "{out}");
    for setting in ["executors", "memory_per_executor", "codec"] {
        assert_eq!(part(d, setting)["applies"], "next_job_run", "{setting}: {d}");
    }
    let params = d["next_run"]["spark_submit_parameters"].as_str().unwrap();
    assert!(params.contains(&format!("spark.executor.instances={executors} ")), "{params}");
    assert!(params.contains("spark.dynamicAllocation.enabled=false"), "{params}");
    assert!(env.store.keys().contains(&"{sparkpilot}:emr:next-run".to_string()));
    assert_eq!(env.publisher.on("scaling-decisions").len(), 1);
    assert_eq!(d["model_version"].as_str().unwrap().len(), 16);
    // The scale-up starts the cooldown clock; a record stored before the clock was renamed, and
    // before records carried their actuation, still reads.
    assert_eq!(d["last_scale_up_s"], d["time_s"], "{out}");
    let mut old = d.clone();
    let o = old.as_object_mut().unwrap();
    let clock = o.remove("last_scale_up_s").unwrap();
    for k in ["running", "actuation", "executors", "next_run"] {
        o.remove(k);
    }
    old["last_change_s"] = clock;
    let record: handlers::DecisionRecord = serde_json::from_value(old).unwrap();
    assert_eq!(record.last_scale_up_s, d["time_s"].as_f64());
    assert_eq!(record.running(), record.applied);
}

#[tokio::test]
async fn a_started_application_gets_executors_through_the_agent_and_nothing_waits_unsaid() {
    let env = Embedded::default();
    let settings = Settings::default();
    env.emr.status.lock().unwrap().state = AppState::Started;
    invoke(&env, &settings, "burst-signal", trigger("burst-signal-msk.json")).await.unwrap();
    let out = invoke(&env, &settings, "scaling-decision", as_kafka(&env, "scaling-requests")).await.unwrap();
    let d = &out["decision"];
    assert!(env.emr.updates.lock().unwrap().is_empty(), "a STARTED application is never updated");
    assert!(!out.to_string().contains("deferred"), "{out}");
    let executors = d["applied"]["executors"].as_u64().unwrap();
    // The 16 vCPU application holds 4 executors until it stops: the agent is capped there and the
    // larger ceiling waits, said as such.
    assert_eq!(part(d, "executors")["applies"], "now", "{d}");
    assert!(part(d, "executors")["via"].as_str().unwrap().contains("agent"));
    if executors > 4 {
        assert!(part(d, "executors")["why"].as_str().unwrap().contains("capped at 4"), "{d}");
    }
    assert_eq!(part(d, "maximum_capacity")["applies"], "when_stopped", "{d}");
    assert!(env.store.keys().contains(&"{sparkpilot}:emr:pending".to_string()));
    for part in d["actuation"].as_array().unwrap() {
        assert!(
            !part["why"].as_str().unwrap().is_empty() && !part["via"].as_str().unwrap().is_empty(),
            "{part}"
        );
    }
    // What the job runs now: the decided executors and tier, this run's memory and codec.
    assert_eq!(d["running"]["executors"], executors);
    assert_eq!(d["running"]["memory_gb"], d["inputs"]["current"]["memory_gb"]);
    assert_eq!(d["running"]["compression"], d["inputs"]["current"]["compression"]);
    // The agent reports following it with the next micro-batch: the record shows live = requested.
    let metrics = json!({"timestamp": 1_795_341_900.0, "input_rate": 4_000.0, "processing_rate": 3_900.0, "batch_duration_ms": 900.0, "backlog": 100.0,
        "running_executors": executors, "agent": {"target_executors": executors, "decision_time_s": d["time_s"], "status": "following", "application_id": "app-1", "query_id": "q", "batch_id": 7, "failed_tasks": 0}});
    let out = invoke(&env, &settings, "scaling-decision", Trigger::Direct(json!({"spark_metrics": metrics})))
        .await
        .unwrap();
    let report = &out["decision"]["executors"];
    assert_eq!(
        (report["agent_target"].as_u64(), report["live"].as_u64()),
        (Some(executors), Some(executors)),
        "{out}"
    );
    assert_eq!(report["agent_status"], "following");

    // Once the application stops, the next decision carries the waiting capacity.
    env.emr.status.lock().unwrap().state = AppState::Stopped;
    let out = invoke(&env, &settings, "scaling-decision", trigger("schedule.json")).await.unwrap();
    assert_eq!(out["decision"]["emr"], "updated", "{out}");
    assert_eq!(
        env.emr.get_application().await.unwrap().capacity.max_vcpu,
        settings.guardrails.max_executors * settings.vcpu_per_executor
    );
    assert!(!env.store.keys().contains(&"{sparkpilot}:emr:pending".to_string()));
}

#[tokio::test]
async fn a_started_applications_prewarm_waits_for_the_stop_and_says_so() {
    let env = Embedded::default();
    env.emr.status.lock().unwrap().state = AppState::Started;
    let samples: Vec<Vec<u8>> = (0..1_800)
        .map(|s| {
            serde_json::to_vec(&control::LoadSample {
                time_s: 1_795_340_000.0 + s as f64,
                rate: 500.0 + 3.0 * s as f64,
            })
            .unwrap()
        })
        .collect();
    handlers::ports::StateStore::push_capped(
        env.store.as_ref(),
        "{sparkpilot}:load-history",
        &samples,
        7_200,
    )
    .await
    .unwrap();
    let out = invoke(&env, &Settings::default(), "prewarmer", trigger("schedule.json")).await.unwrap();
    assert!(out["prewarm_workers"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(out["applies"], "when_stopped", "{out}");
    assert!(out["emr"].as_str().unwrap().contains("waits for the next stop"), "{out}");
    assert!(env.emr.updates.lock().unwrap().is_empty());
    env.emr.status.lock().unwrap().state = AppState::Stopped;
    let out = invoke(&env, &Settings::default(), "prewarmer", trigger("schedule.json")).await.unwrap();
    assert_eq!(out["applies"], "now", "{out}");
    assert!(env.emr.get_application().await.unwrap().capacity.initial_executors > 0);
}

#[tokio::test]
async fn scaling_decision_handles_each_trigger_and_skips_a_redelivered_batch() {
    let env = Embedded::default();
    let settings = Settings::default();
    let out = invoke(&env, &settings, "scaling-decision", trigger("scaling-decision-spark-metrics.json"))
        .await
        .unwrap();
    assert_eq!(out["decision"]["inputs"]["input_rate"], 4_000.0, "{out}");
    assert_eq!(out["decision"]["reason"], "new spark metrics");
    let dup = invoke(&env, &settings, "scaling-decision", trigger("scaling-decision-spark-metrics.json"))
        .await
        .unwrap();
    assert_eq!(dup["duplicate"], true);
    assert_eq!(env.publisher.on("scaling-decisions").len(), 1, "a redelivered batch decides nothing");
    let out =
        invoke(&env, &settings, "scaling-decision", trigger("scaling-decision-burst.json")).await.unwrap();
    assert_eq!(
        out["decision"]["inputs"]["burst_signal"], false,
        "no cluster state yet: the event alone does not invent one"
    );
    let out = invoke(&env, &settings, "scaling-decision", trigger("schedule.json")).await.unwrap();
    assert_eq!(out["decision"]["trigger"], "schedule");
    assert_eq!(out["decision"]["time_s"], 1_795_341_900.0);
}

/// EMR Serverless that is unreachable for the first `failures` calls.
struct FlakyEmr {
    inner: handlers::memory::MemoryEmr,
    failures: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl EmrControl for FlakyEmr {
    async fn get_application(&self) -> handlers::ports::PortResult<handlers::ports::AppStatus> {
        let left = self.failures.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            return Err(handlers::ports::PortError::new(
                "emr-serverless",
                "GetApplication",
                "connection refused",
            ));
        }
        self.inner.get_application().await
    }
    async fn update_capacity(&self, capacity: &handlers::ports::Capacity) -> handlers::ports::PortResult<()> {
        self.inner.update_capacity(capacity).await
    }
}

#[tokio::test]
async fn a_batch_that_failed_is_decided_when_redelivered() {
    let env = Embedded::default();
    let settings = Settings::default();
    let emr =
        std::sync::Arc::new(FlakyEmr { inner: handlers::memory::MemoryEmr::default(), failures: 1.into() });
    let backends = handlers::Backends { emr: emr.clone(), ..env.backends() };
    let handler = build("scaling-decision", &settings, &backends).unwrap();
    let err = handler.handle(trigger("scaling-decision-spark-metrics.json")).await.unwrap_err();
    assert!(err.to_string().contains("GetApplication"), "{err}");
    assert!(env.publisher.on("scaling-decisions").is_empty(), "nothing recorded for a failed batch");
    assert!(
        !env.store.keys().iter().any(|k| k.contains(":metrics")),
        "no partial state: {:?}",
        env.store.keys()
    );
    // The event-source mapping delivers it again: this time it is decided, not skipped.
    let out = handler.handle(trigger("scaling-decision-spark-metrics.json")).await.unwrap().to_json();
    assert_eq!(out["decision"]["reason"], "new spark metrics", "{out}");
    assert_eq!(env.publisher.on("scaling-decisions").len(), 1);
    let dup = handler.handle(trigger("scaling-decision-spark-metrics.json")).await.unwrap().to_json();
    assert_eq!(dup["duplicate"], true);
}

#[tokio::test]
async fn dry_run_decides_and_records_but_changes_nothing() {
    let env = Embedded::default();
    let settings = Settings { dry_run: true, ..Settings::default() };
    let before = env.emr.get_application().await.unwrap();
    invoke(&env, &settings, "burst-signal", trigger("burst-signal-msk.json")).await.unwrap();
    let out = invoke(&env, &settings, "scaling-decision", as_kafka(&env, "scaling-requests")).await.unwrap();
    assert_eq!(out["decision"]["dry_run"], true);
    assert_eq!(out["decision"]["emr"], "dry run", "{out}");
    assert_eq!(out["decision"]["last_scale_up_s"], Value::Null, "a dry run starts no cooldown");
    assert_eq!(env.emr.get_application().await.unwrap(), before);
    assert!(env.emr.updates.lock().unwrap().is_empty());
    assert_eq!(env.hot_tier.shards().await.unwrap(), 1);
    let pre = invoke(&env, &settings, "prewarmer", trigger("schedule.json")).await.unwrap();
    assert!(pre["emr"] == "dry run" || pre["emr"] == "unchanged", "{pre}");
    assert!(env.emr.updates.lock().unwrap().is_empty());
}

#[tokio::test]
async fn meta_weights_follow_context_changes_and_refuse_unknown_scenarios() {
    let env = Embedded::default();
    let settings = Settings::default();
    let out = invoke(&env, &settings, "meta-weights", trigger("meta-weights-context.json")).await.unwrap();
    assert_eq!(out["weights"]["version"], 1);
    assert_eq!(out["weights"]["scenario"], "healthcare_critical");
    for w in ["alpha", "beta"] {
        assert!((0.0..=1.0).contains(&out["weights"][w].as_f64().unwrap()));
    }
    let out = invoke(&env, &settings, "meta-weights", trigger("schedule.json")).await.unwrap();
    assert_eq!(
        (out["weights"]["version"].as_u64(), out["context"]["scenario"].as_str()),
        (Some(2), Some("healthcare_critical"))
    );
    // Whatever the budget, every scenario's weights stay in its band of the latency share.
    for scenario in control::Scenario::ALL {
        for budget in [0.0, 0.5, 5.0] {
            let out = invoke(
                &env,
                &settings,
                "meta-weights",
                Trigger::Direct(json!({"scenario": scenario.name(), "budget_remaining": budget})),
            )
            .await
            .unwrap();
            let (alpha, beta) =
                (out["weights"]["alpha"].as_f64().unwrap(), out["weights"]["beta"].as_f64().unwrap());
            let (low, high) = scenario.latency_share_band();
            let share = beta / (alpha + beta);
            assert!(share >= low - 1e-9 && share <= high + 1e-9, "{scenario:?} at {budget}: {out}");
        }
    }
    let err = invoke(
        &env,
        &settings,
        "meta-weights",
        Trigger::Direct(json!({"scenario": "mars_colony", "budget_remaining": 1.0})),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unknown scenario \"mars_colony\""), "{err}");
    let err = invoke(
        &env,
        &settings,
        "meta-weights",
        Trigger::Direct(json!({"scenario": "balanced", "budget_remaining": -3.0})),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("budget_remaining -3"), "{err}");
    // A reading stamped with its own time (a replay's clock) keeps it; one from the future is refused.
    let stored_time = || async {
        let key = handlers::Keys::new(&settings.key_prefix).context();
        let got = env.backends().store.get_many(&[key]).await.unwrap();
        serde_json::from_slice::<Value>(got[0].as_ref().unwrap()).unwrap()["time_s"].as_f64()
    };
    invoke(
        &env,
        &settings,
        "meta-weights",
        Trigger::Direct(json!({"scenario": "balanced", "budget_remaining": 2.0, "time_s": 1_767_225_600.0})),
    )
    .await
    .unwrap();
    assert_eq!(stored_time().await, Some(1_767_225_600.0));
    let err = invoke(
        &env,
        &settings,
        "meta-weights",
        Trigger::Direct(json!({"scenario": "balanced", "budget_remaining": 2.0, "time_s": 9e12})),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("time_s 9000000000000 must be Unix seconds"), "{err}");
    assert_eq!(stored_time().await, Some(1_767_225_600.0), "a refused change leaves the context as it was");
}

#[tokio::test]
async fn shuffle_blocks_land_by_temperature_and_read_back_byte_identical() {
    let env = Embedded::default();
    let settings = Settings::default();
    let manifest = event("shuffle-router-manifest.json");
    let out =
        invoke(&env, &settings, "shuffle-router", trigger("shuffle-router-manifest.json")).await.unwrap();
    assert_eq!(out["stored"], 5, "{out}");
    assert_eq!(out["tiers"], json!({"redis": 2, "nvme": 1, "s3": 1, "glacier": 1}));
    let router = handlers::shuffle_router::ShuffleRouter::new(&settings, &env.backends()).unwrap();
    let archived = router.location("shuffle_5_0_0").await.unwrap().unwrap();
    assert_eq!(env.objects.class_of(&archived.key), Some(StorageClass::Glacier));
    for block in manifest["blocks"].as_array().unwrap() {
        let id = block["block_id"].as_str().unwrap();
        let read = |id: &str| Trigger::Direct(json!({"op": "read", "block_id": id}));
        let mut got = invoke(&env, &settings, "shuffle-router", read(id)).await.unwrap();
        if got["status"] == "restoring" {
            // Glacier: the first read starts the restore; the next one returns the bytes.
            got = invoke(&env, &settings, "shuffle-router", read(id)).await.unwrap();
        }
        assert_eq!(got["status"], "ok", "{id}: {got}");
        assert_eq!(got["payload_b64"], block["payload_b64"], "{id} changed on the way");
    }
    let on_nvme = router.location("shuffle_7_2_0").await.unwrap().unwrap();
    let moved = invoke(&env, &settings, "shuffle-router", trigger("shuffle-router-move.json")).await.unwrap();
    assert_eq!(moved["tier"], "s3");
    assert!(
        matches!(env.nvme.get(&on_nvme.key).await.unwrap(), handlers::ports::ObjectRead::Missing),
        "old copy deleted after the move"
    );
    assert!(env.nvme.is_empty());
    let back = invoke(
        &env,
        &settings,
        "shuffle-router",
        Trigger::Direct(json!({"op": "read", "block_id": "shuffle_7_2_0"})),
    )
    .await
    .unwrap();
    assert_eq!(back["payload_b64"], manifest["blocks"][2]["payload_b64"]);
    let read = invoke(&env, &settings, "shuffle-router", trigger("shuffle-router-read.json")).await.unwrap();
    assert_eq!(read["status"], "ok");
    let msk = invoke(&env, &settings, "shuffle-router", trigger("shuffle-router-msk.json")).await.unwrap();
    assert_eq!(msk["stored"], 2, "{msk}");
    // The scaling policy now sees the temperature of what shuffle-router just wrote.
    let decision = invoke(&env, &settings, "scaling-decision", trigger("schedule.json")).await.unwrap();
    let t = decision["decision"]["inputs"]["data_temperature"].as_f64().unwrap();
    assert!(t > 0.5 && t <= 1.0, "two hot blocks: {t}");
}

#[tokio::test]
async fn bad_manifests_get_an_error_each_and_the_good_ones_are_stored() {
    let env = Embedded::default();
    let ok = base64::engine::general_purpose::STANDARD.encode(b"abcd");
    let blocks = json!({"blocks": [
        {"block_id": "good", "size_bytes": 4, "payload_b64": ok},
        {"block_id": "negative", "size_bytes": -4, "payload_b64": ok},
        {"block_id": "liar", "size_bytes": 9, "payload_b64": ok},
        {"block_id": "garbled", "size_bytes": 4, "payload_b64": "@@@"},
        {"block_id": "../etc/passwd", "size_bytes": 4, "payload_b64": ok},
        {"block_id": "nothing", "size_bytes": 4},
        {"size_bytes": 4}
    ]});
    let out = invoke(&env, &Settings::default(), "shuffle-router", Trigger::Direct(blocks)).await.unwrap();
    assert_eq!(out["stored"], 1, "{out}");
    let errors: Vec<String> =
        out["errors"].as_array().unwrap().iter().map(|e| e["error"].as_str().unwrap().to_string()).collect();
    assert_eq!(errors.len(), 6, "{errors:?}");
    for needle in [
        "size_bytes -4 is negative",
        "payload has 4 bytes",
        "not valid base64",
        "block_id \"../etc/passwd\"",
        "neither payload_b64",
        "missing field `block_id`",
    ] {
        assert!(errors.iter().any(|e| e.contains(needle)), "no error mentions {needle:?}: {errors:?}");
    }
}

#[tokio::test]
async fn prewarmer_sets_initial_capacity_ahead_of_a_rising_load_and_releases_it_when_quiet() {
    let env = Embedded::default();
    let settings = Settings::default();
    // A load history climbing steeply over the last half hour.
    let store = env.store.clone();
    let samples: Vec<Vec<u8>> = (0..1_800)
        .map(|s| {
            serde_json::to_vec(&control::LoadSample {
                time_s: 1_795_340_000.0 + s as f64,
                rate: 500.0 + 3.0 * s as f64,
            })
            .unwrap()
        })
        .collect();
    handlers::ports::StateStore::push_capped(store.as_ref(), "{sparkpilot}:load-history", &samples, 7_200)
        .await
        .unwrap();
    let out = invoke(&env, &settings, "prewarmer", trigger("schedule.json")).await.unwrap();
    let target = out["prewarm_workers"].as_u64().unwrap();
    assert!(target > 0, "{out}");
    assert_eq!(env.emr.get_application().await.unwrap().capacity.initial_executors as u64, target.min(4));
    // Then flat: nothing to prepare for.
    let flat: Vec<Vec<u8>> = (0..1_800)
        .map(|s| {
            serde_json::to_vec(&control::LoadSample { time_s: 1_795_340_100.0 + s as f64, rate: 1_000.0 })
                .unwrap()
        })
        .collect();
    handlers::ports::StateStore::push_capped(store.as_ref(), "{sparkpilot}:load-history", &flat, 1_800)
        .await
        .unwrap();
    let out = invoke(&env, &settings, "prewarmer", trigger("schedule.json")).await.unwrap();
    assert_eq!(out["prewarm_workers"], 0, "{out}");
    assert_eq!(env.emr.get_application().await.unwrap().capacity.initial_executors, 0);
}

#[tokio::test]
async fn each_function_rejects_triggers_it_does_not_take_with_a_clear_error() {
    let env = Embedded::default();
    let e = invoke(&env, &Settings::default(), "burst-signal", trigger("schedule.json")).await.unwrap_err();
    assert!(e.to_string().contains("not a schedule"), "{e}");
    let e =
        invoke(&env, &Settings::default(), "prewarmer", trigger("burst-signal-msk.json")).await.unwrap_err();
    assert!(e.to_string().contains("schedule"), "{e}");
    assert!(build("nope", &Settings::default(), &env.backends()).is_err());
    // A schedule runs shuffle-router's sweep.
    let swept = invoke(&env, &Settings::default(), "shuffle-router", trigger("schedule.json")).await.unwrap();
    assert_eq!(swept["status"], "swept", "{swept}");
    let _ = env.objects.put("x", vec![1], StorageClass::Standard).await;
}
