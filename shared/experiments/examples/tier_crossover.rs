//! Diagnostic: when does the Redis hot tier pay in the realistic arena? For a grid of event sizes,
//! data temperatures, codecs and cluster sizes it asks the arena's own capacity model
//! (`Arena::capacity`, the code every episode runs) how many events/s the cluster carries with its
//! shuffle on the workers' local disks (NVMe) and on Redis, and what bounds each (CPU or the tier).
//! Where Redis carries more, it prints what the hot tier costs per second against what the extra
//! executors that would give NVMe the same capacity cost: Redis pays where the first is smaller.
//!
//! `cargo run --release -p experiments --example tier_crossover [NODES]` (NODES: Redis nodes, the
//! arena's default when not given).

use control::ScalingAction;
use latency_model::{Compression, Tier};
use sim::config::ArenaConfig;
use sim::Arena;
use traces::TracePoint;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ArenaConfig::default();
    if let Some(nodes) = std::env::args().nth(1) {
        config.redis_nodes = nodes.parse()?;
    }
    let prices = cost_model::PriceBook::embedded(cost_model::DEFAULT_REGION)?;
    let redis_usd_per_s =
        config.redis_nodes * prices.elasticache_node_rate_per_second(&config.redis_node_type)?;
    let arena = Arena::new(config, prices, latency_model::LatencyModel::embedded())?;
    let memory_gb = 16;
    let worker = cost_model::WorkerSpec {
        vcpu: arena.config.vcpu_per_executor,
        memory_gb: memory_gb as f64,
        disk_gb: 20.0,
    };
    let worker_usd_per_s = arena.prices.emr_rate_per_second(&worker);
    println!(
        "Redis: {} x {} at ${:.5}/s in all; a {}-vCPU {memory_gb} GB worker ${:.5}/s",
        arena.config.redis_nodes,
        arena.config.redis_node_type,
        redis_usd_per_s,
        worker.vcpu,
        worker_usd_per_s
    );
    println!(
        "{:>9} {:>5} {:>5} {:>7} | {:>12} {:>4} | {:>12} {:>4} | {:>10} {:>10} {:>6}",
        "bytes",
        "temp",
        "codec",
        "workers",
        "nvme ev/s",
        "by",
        "redis ev/s",
        "by",
        "redis $/s",
        "extra $/s",
        "pays"
    );
    let mut pays = 0;
    let mut rows = 0;
    for bytes in [2_500.0, 100_000.0, 1_000_000.0, 4_000_000.0] {
        for temperature in [0.0, 0.5, 1.0] {
            for codec in Compression::CHOICES {
                for workers in [2u32, 4, 8, 16, 32, 64] {
                    let point = TracePoint { events_per_s: 0.0, bytes_per_event: bytes };
                    let capacity = |tier: Tier, n: f64| {
                        let action = ScalingAction {
                            executors: n as u32,
                            memory_gb,
                            tier,
                            compression: codec,
                            prewarm: 0,
                        };
                        arena.capacity(&action, n, n * memory_gb as f64, point, temperature)
                    };
                    let nvme = capacity(Tier::Nvme, workers as f64);
                    let redis = capacity(Tier::Redis, workers as f64);
                    let carried = |c: &sim::realistic::Capacity| c.cpu_events_per_s.min(c.io_events_per_s);
                    let bound = |c: &sim::realistic::Capacity| {
                        if c.io_events_per_s < c.cpu_events_per_s {
                            "tier"
                        } else {
                            "cpu"
                        }
                    };
                    rows += 1;
                    if carried(&redis) <= carried(&nvme) * 1.001 {
                        continue;
                    }
                    // Workers NVMe needs to carry what Redis carries with `workers`.
                    let target = carried(&redis);
                    let need = (workers..=4 * workers.max(64))
                        .find(|&n| carried(&capacity(Tier::Nvme, n as f64)) >= target)
                        .unwrap_or(u32::MAX);
                    let extra_usd = (need.saturating_sub(workers)) as f64 * worker_usd_per_s;
                    let worth = redis_usd_per_s < extra_usd;
                    pays += usize::from(worth);
                    println!(
                        "{bytes:>9.0} {temperature:>5.1} {:>5} {workers:>7} | {:>12.0} {:>4} | {:>12.0} {:>4} | {:>10.5} {:>10.5} {:>6}",
                        codec.name(),
                        carried(&nvme),
                        bound(&nvme),
                        carried(&redis),
                        bound(&redis),
                        redis_usd_per_s,
                        extra_usd,
                        if worth { "yes" } else { "no" },
                    );
                }
            }
        }
    }
    println!("{rows} cases; Redis carries more than NVMe in the rows above; it pays in {pays} of them");
    Ok(())
}
