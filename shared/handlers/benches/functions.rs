//! Function hot paths without I/O:
//! - burst-signal: a 10,000-record MSK batch from raw payload bytes (JSON, base64, per-record JSON)
//!   through the edge and cluster detectors; throughput in records per second;
//! - scaling-decision: stored state -> observation -> policy network -> guardrails, one decision.
//!
//! `cargo bench --workspace --bench functions` (add `--profile dev` for a quick look).

use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use handlers::burst_signal::{apply_batch, decode_records};
use handlers::ports::{AppState, AppStatus, Capacity};
use handlers::scaling_decision::{DecisionState, ScalingDecision};
use handlers::{decode_lambda, decode_lambda_bytes, Backends, Settings, SparkMetrics, Trigger};
use std::collections::HashMap;
use std::hint::black_box;

// The function binaries' allocator (see the `serve` crate), so that these figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EDGES: usize = 100;
const SECONDS: usize = 100;

/// An MSK event of EDGES x SECONDS raw rate samples, as the bytes Lambda would hand over.
fn msk_batch() -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut records = Vec::with_capacity(EDGES * SECONDS);
    for s in 0..SECONDS {
        for e in 0..EDGES {
            let rate = if s > 80 { 900.0 } else { 250.0 } + (e % 7) as f64;
            let value =
                format!(r#"{{"edge_id":"gw-{e:04}","timestamp":{},"rate":{rate}}}"#, 1_795_341_600 + s);
            records.push(serde_json::json!({
                "topic": "iot-metadata", "partition": e % 4, "offset": s * EDGES + e, "timestamp": 1_795_341_600_000u64 + s as u64 * 1000,
                "timestampType": "CREATE_TIME", "key": null, "value": b64.encode(value), "headers": []
            }));
        }
    }
    let mut by_partition: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for r in records {
        by_partition.entry(format!("iot-metadata-{}", r["partition"])).or_default().push(r);
    }
    serde_json::to_vec(&serde_json::json!({"eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:us-east-1:1:cluster/c/u", "records": by_partition})).unwrap()
}

fn burst_signal(c: &mut Criterion) {
    let settings = Settings::default();
    let bytes = msk_batch();
    let mut group = c.benchmark_group("burst-signal");
    group.throughput(Throughput::Elements((EDGES * SECONDS) as u64));
    group.sample_size(20);
    group.bench_function("stage: event bytes to records", |b| {
        b.iter(|| black_box(decode_lambda_bytes(black_box(&bytes)).unwrap()))
    });
    group.bench_function("stage: bytes to Value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(&bytes)).unwrap()))
    });
    group.bench_function("stage: bytes to KafkaEvent", |b| {
        b.iter(|| {
            black_box(
                serde_json::from_slice::<aws_lambda_events::event::kafka::KafkaEvent>(black_box(&bytes))
                    .unwrap(),
            )
        })
    });
    let Trigger::Kafka(records) = decode_lambda(serde_json::from_slice(&bytes).unwrap()).unwrap() else {
        unreachable!()
    };
    group.bench_function("stage: record JSON", |b| {
        b.iter(|| black_box(decode_records(black_box(&records), f64::MAX / 2.0, 0.0)))
    });
    let (good, _, _) = decode_records(&records, f64::MAX / 2.0, 0.0);
    group.bench_function("stage: detectors", |b| {
        b.iter_batched(
            || good.clone(),
            |mut good| {
                let mut edges = HashMap::new();
                let mut cluster = handlers::ClusterBurst::new(settings.cluster.cluster_detector).unwrap();
                black_box(apply_batch(&mut good, &mut edges, &mut cluster, &settings.cluster).unwrap())
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("decode+detect 10k records", |b| {
        b.iter_batched(
            || bytes.clone(),
            |bytes| {
                let Trigger::Kafka(records) = decode_lambda_bytes(&bytes).unwrap() else { unreachable!() };
                let (mut good, _, errors) = decode_records(&records, f64::MAX / 2.0, 0.0);
                assert!(errors.is_empty());
                let mut edges = HashMap::new();
                let mut cluster = handlers::ClusterBurst::new(settings.cluster.cluster_detector).unwrap();
                let out = apply_batch(&mut good, &mut edges, &mut cluster, &settings.cluster).unwrap();
                black_box((out, cluster.burst))
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn scaling_decision(c: &mut Criterion) {
    let settings = Settings::default();
    let handler = ScalingDecision::new(&settings, &Backends::embedded()).unwrap();
    let state = DecisionState {
        metrics: Some(SparkMetrics {
            timestamp: 1_795_341_600.0,
            input_rate: 4_000.0,
            processing_rate: 1_800.0,
            batch_duration_ms: 950.0,
            backlog: 66_000.0,
            cpu_utilisation: Some(0.9),
            memory_utilisation: Some(0.6),
            running_executors: Some(4),
            pending_executors: Some(0),
            shuffle_mb_per_s: None,
            bytes_per_event: Some(2_500.0),
            agent: None,
        }),
        ..DecisionState::default()
    };
    let app = AppStatus {
        state: AppState::Stopped,
        capacity: Capacity {
            max_vcpu: 16,
            max_memory_gb: 64,
            initial_executors: 0,
            worker_vcpu: 4,
            worker_memory_gb: 16,
        },
    };
    c.bench_function("scaling-decision/state to guarded action", |b| {
        b.iter(|| {
            let obs = handler.observe(black_box(&state), black_box(&app), 1_795_341_660.0);
            black_box(handler.decide(&obs, None, None).unwrap())
        })
    });
}

criterion_group!(benches, burst_signal, scaling_decision);
criterion_main!(benches);
