//! Hostile and broken input through burst-signal and scaling-decision on the in-memory backends: out
//! of range numbers, clocks far ahead, unreadable stored state, redeliveries cut into other batches
//! and delivered concurrently, a broken model. Nothing may panic, poison the stored state, or decide
//! twice on the same records. `PROPTEST_CASES` runs the property tests longer.

use handlers::ports::StateStore;
use handlers::{build, Embedded, Handler, KafkaMessage, Settings, Trigger};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;

fn now_ms() -> i64 {
    (handlers::events::now_s() * 1_000.0) as i64
}

fn record(topic: &str, offset: i64, timestamp_ms: i64, value: Value) -> KafkaMessage {
    KafkaMessage {
        topic: topic.into(),
        partition: 0,
        offset,
        timestamp_ms,
        key: None,
        value: Some(Ok(serde_json::to_vec(&value).unwrap())),
    }
}

fn metrics(t_s: f64, input_rate: f64, backlog: f64, processing_rate: f64) -> Value {
    json!({"timestamp": t_s, "input_rate": input_rate, "processing_rate": processing_rate, "batch_duration_ms": 800.0, "backlog": backlog, "running_executors": 4})
}

fn handler(env: &Embedded, settings: &Settings, name: &str) -> Arc<dyn Handler> {
    build(name, settings, &env.backends()).unwrap()
}

/// One metrics record through a fresh scaling-decision; its outcome as JSON.
async fn decide_once(env: &Embedded, settings: &Settings, metrics: Value) -> Value {
    let decide = handler(env, settings, "scaling-decision");
    let out = decide.handle(Trigger::Kafka(vec![record("spark-metrics", 0, now_ms(), metrics)])).await;
    out.unwrap().to_json()
}

fn decisions(env: &Embedded) -> usize {
    env.publisher.on("scaling-decisions").len()
}

#[tokio::test]
async fn out_of_range_numbers_are_refused_per_record_and_nothing_non_finite_is_stored() {
    let env = Embedded::default();
    let settings = Settings::default();
    let now = handlers::events::now_s();
    let burst = handler(&env, &settings, "burst-signal");
    let edges = vec![
        record("iot-metadata", 0, now_ms(), json!({"edge_id": "e1", "timestamp": now - 2.0, "rate": 1e308})),
        record(
            "iot-metadata",
            1,
            now_ms(),
            json!({"edge_id": "e2", "timestamp": now - 2.0, "rate": 100.0, "firmware": "2.1"}),
        ),
    ];
    let out = burst.handle(Trigger::Kafka(edges)).await.unwrap().to_json();
    assert_eq!(out["accepted"], 1, "{out}");
    assert!(out["errors"][0]["error"].as_str().unwrap().contains("rate 1e308"), "{out}");
    let decide = handler(&env, &settings, "scaling-decision");
    let batch = vec![
        record("spark-metrics", 0, now_ms(), metrics(now - 1.0, 4_000.0, 1e308, 1e-300)),
        // In range but drained at almost nothing: the latency is capped, not infinite.
        record("spark-metrics", 1, now_ms(), metrics(now - 1.0, 4_000.0, 1e12, 1e-300)),
    ];
    let out = decide.handle(Trigger::Kafka(batch)).await.unwrap().to_json();
    assert!(out["errors"][0]["error"].as_str().unwrap().contains("backlog"), "{out}");
    let latency = out["decision"]["inputs"]["latency_ms"].as_f64().expect("a finite latency, not null");
    assert!(latency.is_finite() && latency <= 86_400_000.0, "{latency}");
    // The next valid batch is decided on the stored state.
    let out = decide
        .handle(Trigger::Kafka(vec![record(
            "spark-metrics",
            2,
            now_ms(),
            metrics(now, 4_000.0, 10.0, 4_000.0),
        )]))
        .await
        .unwrap()
        .to_json();
    assert!(out["decision"].is_object(), "{out}");
}

#[tokio::test]
async fn unreadable_stored_state_is_started_afresh_not_a_wedge() {
    let env = Embedded::default();
    let settings = Settings::default();
    let keys = handlers::Keys::new(&settings.key_prefix);
    env.store
        .set_many(
            &[
                (keys.last_decision(), b"{\"time_s\": null}".to_vec()),
                (keys.metrics(), b"not json".to_vec()),
                (keys.cluster(), b"[1,2".to_vec()),
            ],
            None,
        )
        .await
        .unwrap();
    let decide = handler(&env, &settings, "scaling-decision");
    let out = decide.handle(Trigger::Schedule { time_s: handlers::events::now_s() }).await.unwrap().to_json();
    let discarded = out["discarded_state"].as_array().unwrap();
    assert_eq!(discarded.len(), 3, "{out}");
    // It wrote a readable decision over the bad one: the next run discards nothing.
    let out = decide
        .handle(Trigger::Schedule { time_s: handlers::events::now_s() + 60.0 })
        .await
        .unwrap()
        .to_json();
    assert!(
        out.get("discarded_state").is_none_or(|d| d
            .as_array()
            .unwrap()
            .iter()
            .all(|k| !k.as_str().unwrap().contains("decision"))),
        "{out}"
    );
    let burst = handler(&env, &settings, "burst-signal");
    let now = handlers::events::now_s();
    let out = burst
        .handle(Trigger::Kafka(vec![record(
            "iot-metadata",
            0,
            now_ms(),
            json!({"edge_id": "e1", "timestamp": now, "rate": 10.0}),
        )]))
        .await
        .unwrap()
        .to_json();
    assert_eq!(out["accepted"], 1, "{out}");
}

#[tokio::test]
async fn clocks_far_ahead_are_refused_and_pin_nothing() {
    let env = Embedded::default();
    let settings = Settings::default();
    let now = handlers::events::now_s();
    let decide = handler(&env, &settings, "scaling-decision");
    // A record stamped in the year 2286: refused, and it does not become the decision's time.
    let out = decide
        .handle(Trigger::Kafka(vec![record(
            "spark-metrics",
            0,
            9_999_999_999_999,
            metrics(now, 4_000.0, 0.0, 4_000.0),
        )]))
        .await
        .unwrap()
        .to_json();
    assert!(out["errors"][0]["error"].as_str().unwrap().contains("ahead of this function's clock"), "{out}");
    assert!((out["decision"]["time_s"].as_f64().unwrap() - now).abs() < 60.0, "{out}");
    // Metrics stamped ahead inside a well-stamped record: refused too.
    let out = decide
        .handle(Trigger::Kafka(vec![record(
            "spark-metrics",
            1,
            now_ms(),
            metrics(now + 86_400.0, 1.0, 0.0, 1.0),
        )]))
        .await
        .unwrap()
        .to_json();
    assert!(out["errors"][0]["error"].as_str().unwrap().contains("timestamp"), "{out}");
    // An edge stamped in milliseconds is refused: it would never go stale.
    let burst = handler(&env, &settings, "burst-signal");
    let out = burst
        .handle(Trigger::Kafka(vec![record(
            "iot-metadata",
            0,
            now_ms(),
            json!({"edge_id": "e1", "timestamp": now * 1_000.0, "rate": 51_000.0}),
        )]))
        .await
        .unwrap()
        .to_json();
    assert_eq!(out["accepted"], 0, "{out}");
    assert!(out["errors"][0]["error"].as_str().unwrap().contains("milliseconds"), "{out}");
    // A cooldown stored ahead of the clock (by an older version) does not hold a scale-down back.
    let keys = handlers::Keys::new(&settings.key_prefix);
    let mut last: Value =
        serde_json::from_slice(&env.store.get(&keys.last_decision()).await.unwrap().unwrap()).unwrap();
    last["last_scale_up_s"] = json!(9_999_999_999.0);
    env.store.set_many(&[(keys.last_decision(), serde_json::to_vec(&last).unwrap())], None).await.unwrap();
    let out = decide.handle(Trigger::Schedule { time_s: now + 1.0 }).await.unwrap().to_json();
    let pinned =
        out["decision"]["guardrail_changes"].as_array().unwrap().iter().any(|c| c["rule"] == "cooldown");
    assert!(!pinned, "{out}");
    assert!(out["decision"]["last_scale_up_s"].as_f64().is_none_or(|t| t <= now + 1.0), "{out}");
}

/// A metrics stream that asks for more executors with every record.
fn rising(n: i64, now: f64) -> Vec<KafkaMessage> {
    (0..n)
        .map(|i| {
            record(
                "spark-metrics",
                i,
                now_ms() - 1_000 * (n - i),
                metrics(now - (n - i) as f64, 2_000.0 + 3_000.0 * i as f64, 50_000.0 * i as f64, 2_000.0),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_same_records_recut_and_delivered_concurrently_decide_once() {
    let env = Embedded::default();
    let settings = Settings::default();
    let decide = handler(&env, &settings, "scaling-decision");
    let now = handlers::events::now_s();
    let records = rising(12, now);
    // Three cuts of the same twelve records, all delivered at once.
    let cuts: Vec<Vec<KafkaMessage>> =
        vec![records.clone(), records[..5].to_vec(), records[5..].to_vec(), records[3..9].to_vec()];
    let runs = cuts.into_iter().map(|c| {
        let d = decide.clone();
        tokio::spawn(async move { d.handle(Trigger::Kafka(c)).await.map(|o| o.to_json()) })
    });
    let mut decided = 0;
    for r in futures_join(runs).await {
        let out = r.unwrap().unwrap();
        if out["decision"].is_object() {
            decided += 1;
        }
    }
    // The whole batch first decides all of it; any cut after it is a duplicate. A part first leaves
    // the rest new for the next: at most one decision per distinct record set, never two for one.
    assert_eq!(decisions(&env), decided);
    let first = env.publisher.on("scaling-decisions");
    assert!(decided <= 3, "{decided} decisions for 12 records cut 4 ways");
    // Every record is now marked: any cut again decides nothing.
    for cut in [records.clone(), records[2..7].to_vec()] {
        let out = decide.handle(Trigger::Kafka(cut)).await.unwrap().to_json();
        assert_eq!(out["duplicate"], true, "{out}");
    }
    assert_eq!(env.publisher.on("scaling-decisions").len(), first.len());
}

#[tokio::test]
async fn a_batch_then_its_recut_redelivery_makes_one_decision() {
    let env = Embedded::default();
    let settings = Settings::default();
    let decide = handler(&env, &settings, "scaling-decision");
    let records = rising(10, handlers::events::now_s());
    decide.handle(Trigger::Kafka(records.clone())).await.unwrap();
    for cut in [&records[..4], &records[4..], &records[2..8]] {
        let out = decide.handle(Trigger::Kafka(cut.to_vec())).await.unwrap().to_json();
        assert_eq!(out["duplicate"], true, "{out}");
    }
    assert_eq!(decisions(&env), 1);
}

#[tokio::test]
async fn records_without_offsets_and_republished_burst_events_decide_once() {
    let env = Embedded::default();
    let settings = Settings::default();
    let decide = handler(&env, &settings, "scaling-decision");
    let now = handlers::events::now_s();
    // OpenFaaS' connector without an offset header: the record's content identifies it.
    let openfaas = record("spark-metrics", -1, now_ms(), metrics(now, 9_000.0, 100_000.0, 2_000.0));
    decide.handle(Trigger::Kafka(vec![openfaas.clone()])).await.unwrap();
    let again = decide.handle(Trigger::Kafka(vec![openfaas])).await.unwrap().to_json();
    assert_eq!(again["duplicate"], true, "{again}");
    // One burst event published three times (three offsets): one step.
    let event = json!({"kind": "burst", "burst": true, "time_s": now, "total_rate": 9_000.0, "predicted_load": 20_000.0, "predicted_peak": 20_000.0, "edges": 4, "edges_bursting": 3});
    for offset in [10, 11, 12] {
        decide
            .handle(Trigger::Kafka(vec![record("scaling-requests", offset, now_ms(), event.clone())]))
            .await
            .unwrap()
            .to_json();
    }
    assert_eq!(decisions(&env), 2, "one for the metrics, one for the burst event");
}

#[tokio::test]
async fn decisions_in_quick_succession_step_at_most_max_step_per_window() {
    let env = Embedded::default();
    let settings = Settings::default();
    let decide = handler(&env, &settings, "scaling-decision");
    let now = handlers::events::now_s();
    let mut executors = Vec::new();
    for i in 0..4 {
        let out = decide
            .handle(Trigger::Kafka(vec![record(
                "spark-metrics",
                i,
                now_ms(),
                metrics(now + i as f64 * 0.5, 200_000.0, 1e7, 2_000.0),
            )]))
            .await
            .unwrap()
            .to_json();
        executors.push(out["decision"]["applied"]["executors"].as_u64().unwrap());
    }
    let start = 1; // no stored decision: the application's ceiling / vCPU, at least one
    assert!(
        executors.iter().all(|&e| e <= start.max(executors[0]) + settings.guardrails.max_step as u64),
        "{executors:?}"
    );
    assert_eq!(
        executors[1..].iter().max(),
        Some(&executors[0]),
        "within one window nothing steps further: {executors:?}"
    );
}

#[tokio::test]
async fn the_backlog_net_raises_a_decision_only_when_it_is_turned_on() {
    // 4 executors processing 2,000 events/s, 20,000 arriving, ten million waiting: the net asks for
    // (20,000 + 10^7 / 30) / 500 = 707 executors, which the maximum and the step limit then cut.
    let now = handlers::events::now_s();
    let mut seen = Vec::new();
    for drain in [None, Some("30")] {
        let env = Embedded::default();
        let settings = Settings::from_lookup(|k| match k {
            "SPARKPILOT_BACKLOG_DRAIN_S" => drain.map(str::to_string),
            _ => None,
        })
        .unwrap();
        let out = decide_once(&env, &settings, metrics(now, 20_000.0, 1e7, 2_000.0)).await;
        let changes = out["decision"]["guardrail_changes"].as_array().unwrap().clone();
        seen.push(changes.into_iter().find(|c| c["rule"] == "backlog"));
    }
    assert_eq!(seen[0], None, "off by default");
    assert_eq!(seen[1].as_ref().map(|c| c["applied"].clone()), Some(json!(707)), "on: {seen:?}");
    let e = Settings::from_lookup(|k| (k == "SPARKPILOT_BACKLOG_DRAIN_S").then(|| "soon".to_string()))
        .unwrap_err();
    assert!(e.to_string().contains("SPARKPILOT_BACKLOG_DRAIN_S"), "{e}");
}

#[tokio::test]
async fn a_broken_or_tampered_model_falls_back_to_the_reference_rule_and_says_so() {
    let dir = std::env::temp_dir().join(format!("sparkpilot-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("scaling.onnx");
    std::fs::write(&truncated, &handlers::scaling_decision::EMBEDDED_MODEL[..2_000]).unwrap();
    let now = handlers::events::now_s();
    for settings in [
        Settings { scaling_model: Some(truncated.clone()), ..Settings::default() },
        Settings { scaling_model_sha256: Some("0".repeat(64)), ..Settings::default() },
    ] {
        let env = Embedded::default();
        let out = decide_once(&env, &settings, metrics(now, 8_000.0, 0.0, 8_000.0)).await;
        assert_eq!(out["decision"]["model_version"], "reference-rule", "{out}");
        assert!(!out["decision"]["fallback"].as_str().unwrap().is_empty(), "{out}");
        assert!(out["decision"]["applied"]["executors"].as_u64().unwrap() >= 1);
    }
    // The right digest loads the model.
    let pinned = Settings {
        scaling_model_sha256: Some(handlers::scaling_decision::sha256_hex(
            handlers::scaling_decision::EMBEDDED_MODEL,
        )),
        ..Settings::default()
    };
    let env = Embedded::default();
    let out = handler(&env, &pinned, "scaling-decision")
        .handle(Trigger::Schedule { time_s: now })
        .await
        .unwrap()
        .to_json();
    assert_ne!(out["decision"]["model_version"], "reference-rule");
    assert!(out["decision"].get("fallback").is_none(), "{out}");
    std::fs::remove_dir_all(dir).ok();
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await);
    }
    out
}

/// `PROPTEST_CASES` when set (a longer run), else the modest default `./infra/test` runs.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Any JSON a producer might send, weighted toward the numbers that once broke the state.
fn wild_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(1e308)),
        Just(json!(-1.0)),
        Just(json!(1e-300)),
        Just(json!(0)),
        Just(json!(9_999_999_999_999i64)),
        Just(Value::Null),
        Just(json!("12")),
        (0.0..1e6f64).prop_map(|v| json!(v)),
        any::<f64>().prop_map(|v| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)),
    ]
}

fn wild_metrics(now: f64) -> impl Strategy<Value = Value> {
    (wild_number(), wild_number(), wild_number(), wild_number(), prop::option::of(wild_number())).prop_map(move |(rate, processing, backlog, batch, ts)| {
        json!({"timestamp": ts.unwrap_or(json!(now)), "input_rate": rate, "processing_rate": processing, "batch_duration_ms": batch, "backlog": backlog, "cpu_utilisation": 0.5})
    })
}

fn wild_edge(now: f64) -> impl Strategy<Value = Value> {
    (0..4u8, wild_number(), wild_number(), prop::option::of(any::<bool>()), prop::option::of(wild_number())).prop_map(move |(e, rate, predicted, signal, ts)| {
        json!({"edge_id": format!("e{e}"), "timestamp": ts.unwrap_or(json!(now)), "rate": rate, "predicted_load": predicted, "burst_signal": signal})
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), failure_persistence: None, ..ProptestConfig::default() })]

    /// After any sequence of wild batches through both functions, every stored value reads back and the
    /// next valid batch is decided.
    #[test]
    fn no_sequence_of_wild_records_wedges_the_functions(
        batches in prop::collection::vec((prop::collection::vec(wild_metrics(1.0), 1..4), prop::collection::vec(wild_edge(1.0), 1..6), prop::option::of(any::<i64>())), 1..5)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let env = Embedded::default();
            let settings = Settings::default();
            let decide = handler(&env, &settings, "scaling-decision");
            let burst = handler(&env, &settings, "burst-signal");
            let now = handlers::events::now_s();
            let mut offset = 0;
            for (ms, edges, stamp) in &batches {
                let stamp = stamp.map_or(now_ms(), |s| s.rem_euclid(20_000_000_000_000));
                // Timestamps given as 1.0 mean "now" (strategies cannot see the clock).
                let fix = |mut v: Value| { if v["timestamp"] == json!(1.0) { v["timestamp"] = json!(now - 1.0); } v };
                let edge_records: Vec<_> = edges.iter().map(|e| { offset += 1; record("iot-metadata", offset, stamp, fix(e.clone())) }).collect();
                let metric_records: Vec<_> = ms.iter().map(|m| { offset += 1; record("spark-metrics", offset, stamp, fix(m.clone())) }).collect();
                let b = burst.handle(Trigger::Kafka(edge_records)).await.map(|o| o.to_json());
                prop_assert!(b.is_ok(), "burst-signal: {:?}", b.err());
                let d = decide.handle(Trigger::Kafka(metric_records)).await.map(|o| o.to_json());
                prop_assert!(d.is_ok(), "scaling-decision: {:?}", d.err());
            }
            // Every stored value is readable JSON with no null where a number was.
            for key in env.store.keys() {
                if let Some(bytes) = env.store.get(&key).await.unwrap() {
                    if key.contains(":decision:last") {
                        let v: Value = serde_json::from_slice(&bytes).unwrap();
                        for (k, x) in v["inputs"].as_object().unwrap() {
                            prop_assert!(!x.is_null(), "{key}: inputs.{k} is null");
                        }
                    }
                }
            }
            let ok = decide.handle(Trigger::Kafka(vec![record("spark-metrics", offset + 1, now_ms(), metrics(now, 3_000.0, 10.0, 3_000.0))])).await.unwrap().to_json();
            prop_assert!(ok["decision"].is_object(), "{ok}");
            let ok = burst.handle(Trigger::Kafka(vec![record("iot-metadata", offset + 2, now_ms(), json!({"edge_id": "fresh", "timestamp": now, "rate": 5.0}))])).await.unwrap().to_json();
            prop_assert_eq!(&ok["accepted"], &json!(1));
            Ok(())
        })?;
    }

    /// The Kafka envelope decoder: any shape of record list decodes without a panic, bad records
    /// as errors of their own.
    #[test]
    fn any_envelope_decodes_per_record(fields in prop::collection::vec((wild_number(), wild_number(), wild_number(), prop_oneof![Just(json!("e30=")), Just(json!(5)), Just(Value::Null), Just(json!("%%"))]), 0..8)) {
        let records: Vec<Value> = fields.iter().map(|(p, o, t, v)| json!({"topic": "t", "partition": p, "offset": o, "timestamp": t, "value": v})).collect();
        let event = json!({"eventSource": "aws:kafka", "records": {"t-0": records}});
        let Ok(Trigger::Kafka(decoded)) = handlers::decode_lambda_bytes(&serde_json::to_vec(&event).unwrap()) else { panic!("a Kafka batch decodes") };
        prop_assert_eq!(decoded.len(), fields.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), failure_persistence: None, ..ProptestConfig::default() })]

    /// OpenFaaS requests: any headers and body decode to a trigger or a clear error, never a panic;
    /// a kafka-connector request is exactly one record.
    #[test]
    fn any_openfaas_request_decodes_or_is_refused(topic in prop::option::of("[a-z-]{1,12}"), offset in prop::option::of(".{0,8}"), key in prop::option::of(".{0,8}"), b64 in any::<bool>(), body in prop::collection::vec(any::<u8>(), 0..64)) {
        let header = |h: &str| match h {
            "x-topic" => topic.clone(),
            "x-kafka-offset" => offset.clone(),
            "x-kafka-key" => key.clone(),
            "x-kafka-key-enc" => b64.then(|| "b64".to_string()),
            _ => None,
        };
        match handlers::decode_http(header, &body, 1.0) {
            Ok(Trigger::Kafka(records)) => prop_assert_eq!(records.len(), 1),
            Ok(_) => prop_assert!(topic.is_none()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// meta-weights and the prewarmer: any direct payload and any stored load history give an answer
    /// or a clear error, and a valid call after them works.
    #[test]
    fn meta_weights_and_prewarmer_survive_wild_input(payloads in prop::collection::vec((prop_oneof![Just(json!("healthcare_critical")), Just(json!("mars")), Just(json!(5)), Just(Value::Null)], wild_number()), 1..4), history in prop::collection::vec((wild_number(), wild_number()), 0..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let env = Embedded::default();
            let settings = Settings::default();
            let meta = handler(&env, &settings, "meta-weights");
            for (scenario, budget) in &payloads {
                let _ = meta.handle(Trigger::Direct(json!({"scenario": scenario, "budget_remaining": budget}))).await;
            }
            let ok = meta.handle(Trigger::Direct(json!({"scenario": "balanced", "budget_remaining": 40.0}))).await.map(|o| o.to_json());
            prop_assert!(ok.is_ok(), "meta-weights after wild input: {:?}", ok.err());
            let keys = handlers::Keys::new(&settings.key_prefix);
            let now = handlers::events::now_s();
            let samples: Vec<Vec<u8>> = history.iter().map(|(t, r)| serde_json::to_vec(&json!({"time_s": t, "rate": r})).unwrap()).chain((0..30).map(|s| serde_json::to_vec(&json!({"time_s": now - s as f64, "rate": 100.0})).unwrap())).collect();
            env.store.push_capped(&keys.load_history(), &samples, 7_200).await.unwrap();
            let out = handler(&env, &settings, "prewarmer").handle(Trigger::Schedule { time_s: now }).await.map(|o| o.to_json());
            prop_assert!(out.is_ok(), "prewarmer: {:?}", out.err());
            Ok(())
        })?;
    }
}
