//! Policy runtime speed with the committed scaling model, against tract (a general ONNX runtime) in
//! the same run: model load, one run of the network, and one decision (observation -> features ->
//! network -> action). Medians: `infra/bench-report`.

use control::{FeatureBuilder, Observation, ScalingAction};
use criterion::{criterion_group, criterion_main, Criterion};
use policy::{Elem, PolicyModel, ScalingPolicy, TensorSpec};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;
use tract_onnx::prelude::*;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn state() -> FeatureBuilder {
    FeatureBuilder::for_policy(4.0, &latency_model::LatencyModel::embedded())
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

fn tract_plan(onnx: &std::path::Path) -> std::sync::Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_path(onnx)
        .and_then(|m| m.with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), [1, 13])))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract loads the model")
}

fn benches(c: &mut Criterion) {
    let onnx = models().join("scaling-ppo.onnx");
    let input = TensorSpec::new(&[1, 13], Elem::F32);
    let output = TensorSpec::new(&[1, 4], Elem::I64);
    let mut group = c.benchmark_group("load");
    group.bench_function("policy", |b| {
        b.iter(|| black_box(PolicyModel::load(&onnx, input.clone(), output.clone()).unwrap()))
    });
    group.bench_function("tract", |b| b.iter(|| black_box(tract_plan(&onnx))));
    group.finish();

    let policy = ScalingPolicy::load(&onnx, state()).unwrap();
    let obs = observation();
    let features = policy.state.features(&obs);
    let tract = tract_plan(&onnx);
    let mut tract_state = tract.spawn().unwrap();
    let mut group = c.benchmark_group("decide");
    group.bench_function("network-policy", |b| {
        b.iter(|| black_box(policy.indices(black_box(&features)).unwrap()))
    });
    group.bench_function("network-tract", |b| {
        b.iter(|| {
            let x = Tensor::from_shape(&[1, 13], black_box(&features[..])).unwrap();
            black_box(tract_state.run(tvec!(x.into())).unwrap())
        })
    });
    group.bench_function("observation-to-action", |b| {
        b.iter(|| black_box(policy.decide(black_box(&obs)).unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = policy_benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = benches
}
criterion_main!(policy_benches);
