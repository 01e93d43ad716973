//! Shuffle blocks into Redis: one pipelined round trip for a batch of 64 KB blocks (what
//! shuffle-router does) against one SET per block, on a real redis-server (`REDIS_URL`).
//!
//! `eval "$(infra/services start)" && cargo bench --workspace --bench redis_pipeline`

use adapters::RedisStore;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use handlers::ports::StateStore;
use std::time::Duration;

const BLOCKS: usize = 64;
const BLOCK: usize = 64 * 1024;

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = integration::service_env("REDIS_URL");
    let store = rt.block_on(RedisStore::connect(&url)).expect("redis-server answers");
    let blocks: Vec<(String, Vec<u8>)> = (0..BLOCKS).map(|i| (format!("bench:block:{i}"), vec![(i % 251) as u8; BLOCK])).collect();
    let ttl = Some(Duration::from_secs(60));
    let mut group = c.benchmark_group("redis 64 KB blocks");
    group.throughput(Throughput::Elements(BLOCKS as u64));
    group.sample_size(30);
    group.bench_function("pipelined (one round trip)", |b| b.iter(|| rt.block_on(store.set_many(&blocks, ttl)).unwrap()));
    group.bench_function("one SET per block", |b| {
        b.iter(|| {
            rt.block_on(async {
                for block in &blocks {
                    store.set_many(std::slice::from_ref(block), ttl).await.unwrap();
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
