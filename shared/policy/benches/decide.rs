//! Policy runtime speed: model load time for ONNX against NNEF (the same network), and one decision
//! (observation -> features -> tract -> action) with the committed scaling model.
//! Medians: `infra/bench-report`.

use control::{FeatureBuilder, Observation, ScalingAction};
use criterion::{criterion_group, criterion_main, Criterion};
use policy::{Elem, PolicyModel, ScalingPolicy, TensorSpec};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn state() -> FeatureBuilder {
    FeatureBuilder {
        vcpu_per_executor: 4.0,
        max_executors: 64,
        processing: latency_model::LatencyModel::embedded().processing,
    }
}

fn observation() -> Observation {
    Observation {
        time_s: 300.0,
        cpu_utilisation: 0.72,
        memory_utilisation: 0.6,
        backlog_events: 1_200.0,
        input_rate: 4_800.0,
        processing_rate: 4_500.0,
        running_executors: 11,
        pending_executors: 2,
        burst_signal: true,
        predicted_load: 5_200.0,
        data_temperature: 0.6,
        shuffle_mb_per_s: 480.0,
        bytes_per_event: 100_000.0,
        latency_ms: 450.0,
        alpha: 0.33,
        beta: 0.33,
        sla_ms: 1_000.0,
        current: ScalingAction::spark_default(11),
    }
}

fn benches(c: &mut Criterion) {
    let onnx = models().join("scaling-ppo.onnx");
    if !onnx.exists() {
        eprintln!("{} not found: train it first (sparkpilot train scaling)", onnx.display());
        return;
    }
    let input = TensorSpec::new(&[1, 13], Elem::F32);
    let output = TensorSpec::new(&[1, 4], Elem::I64);
    let nnef = std::env::temp_dir().join(format!("scaling-ppo-{}.nnef.tar", std::process::id()));
    PolicyModel::convert_onnx_to_nnef(&onnx, &nnef, &input).expect("convert to NNEF");
    let mut group = c.benchmark_group("load");
    group.bench_function("onnx", |b| {
        b.iter(|| black_box(PolicyModel::load(&onnx, input.clone(), output.clone()).unwrap()))
    });
    group.bench_function("nnef", |b| {
        b.iter(|| black_box(PolicyModel::load(&nnef, input.clone(), output.clone()).unwrap()))
    });
    group.finish();

    let policy = ScalingPolicy::load(&onnx, state()).unwrap();
    let obs = observation();
    let features = policy.state.features(&obs);
    let mut group = c.benchmark_group("decide");
    group.bench_function("tract-only", |b| {
        b.iter(|| black_box(policy.indices(black_box(&features)).unwrap()))
    });
    group.bench_function("observation-to-action", |b| {
        b.iter(|| black_box(policy.decide(black_box(&obs)).unwrap()))
    });
    group.finish();
    let _ = std::fs::remove_file(&nnef);
}

criterion_group! {
    name = policy_benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = benches
}
criterion_main!(policy_benches);
