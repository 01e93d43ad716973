//! Simulator speed: steps per second of the realistic arena, and the time of one 500-step episode per
//! policy in both arenas. Medians: `infra/bench-report` prints them from criterion's estimates.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use latency_model::{Compression, Tier};
use sim::clairvoyant::{clairvoyant_bound, ClairvoyantSchedule};
use sim::seed_compat;
use sim::tournament::{realistic_baseline, seed_baseline, Contender, SeedContender};
use sim::{Arena, ConstantPolicy};
use std::hint::black_box;
use std::time::Duration;

fn steps_per_second(c: &mut Criterion) {
    let arena = Arena::embedded();
    let trace = traces::resolve("rush-hour", 1).unwrap();
    let mut group = c.benchmark_group("realistic-steps");
    group.throughput(Throughput::Elements(trace.len() as u64));
    group.bench_function("constant-policy-3600-steps", |b| {
        let mut policy = ConstantPolicy::new(8, 16, Tier::Nvme, Compression::Lz4);
        b.iter(|| black_box(arena.run(&trace, 1, &mut policy, None).unwrap()))
    });
    group.finish();
}

fn episode_500(c: &mut Criterion) {
    let arena = Arena::embedded();
    let trace = traces::resolve("burst-4x", 1).unwrap().window(0, 500);
    let mut group = c.benchmark_group("realistic-episode-500");
    for name in sim::tournament::REALISTIC_BASELINES {
        group.bench_with_input(BenchmarkId::from_parameter(name), &name, |b, name| match realistic_baseline(
            name,
        )
        .unwrap()
        .unwrap()
        {
            Contender::Policy(mut p) => b.iter(|| black_box(arena.run(&trace, 1, p.as_mut(), None).unwrap())),
            Contender::Clairvoyant => {
                b.iter(|| black_box(clairvoyant_bound(&arena, &trace, 1, None).unwrap()))
            }
            Contender::ClairvoyantSchedule => b.iter(|| {
                let mut schedule = ClairvoyantSchedule::new(&arena, &trace, 1).unwrap();
                black_box(arena.run(&trace, 1, &mut schedule, None).unwrap())
            }),
        });
    }
    group.finish();
    let mut group = c.benchmark_group("seed-compat-episode-500");
    for name in sim::tournament::SEED_BASELINES {
        group.bench_with_input(BenchmarkId::from_parameter(name), &name, |b, name| {
            match seed_baseline(name).unwrap() {
                SeedContender::Policy(mut p) => {
                    b.iter(|| black_box(seed_compat::run_episode(1, Some(p.as_mut()), None)))
                }
                SeedContender::Clairvoyant => b.iter(|| black_box(seed_compat::run_episode(1, None, None))),
            }
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = steps_per_second, episode_500
}
criterion_main!(benches);
