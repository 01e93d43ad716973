//! The clairvoyant bound of the realistic arena: every second, exactly the cheapest configuration that
//! carries that second's load within the SLA, with no start-up delay and no one-minute minimum. No
//! real policy can be cheaper without violating the SLA, so it is a valid lower bound on cost.

use crate::metrics::{LatencyHistogram, RunningStd, Scores};
use crate::realistic::{Arena, TemperatureSeries, Timeline};
use crate::SimError;
use control::{ScalingAction, MEMORY_CHOICES_GB};
use cost_model::WorkerSpec;
use latency_model::{Compression, Tier};
use traces::{Trace, TracePoint};

/// The cheapest action for one second and its cost per second; `None` if nothing meets the SLA.
pub fn cheapest_action(arena: &Arena, point: TracePoint, temperature: f64) -> Option<(ScalingAction, f64)> {
    let cfg = &arena.config;
    let mut best: Option<(ScalingAction, f64)> = None;
    for &memory_gb in &MEMORY_CHOICES_GB {
        for tier in Tier::CHOICES {
            for compression in Compression::CHOICES {
                let action = ScalingAction { executors: 1, memory_gb, tier, compression, prewarm: 0 };
                let meets = |n: u32| {
                    let cap = arena.capacity(&action, n as f64, (n * memory_gb) as f64, point, temperature);
                    cap.events_per_s() >= point.events_per_s && cap.service_ms <= cfg.sla_ms
                };
                if !meets(cfg.max_executors) {
                    continue;
                }
                // Capacity grows with executors, so the fewest that suffice are found by bisection.
                let (mut lo, mut hi) = (1u32, cfg.max_executors);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if meets(mid) {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                let disk = if tier == Tier::Nvme { cfg.nvme_disk_gb } else { arena.prices.emr.free_ephemeral_storage_gb };
                let worker = WorkerSpec { vcpu: cfg.vcpu_per_executor, memory_gb: memory_gb as f64, disk_gb: disk };
                let action = ScalingAction { executors: lo, ..action };
                let mut cost = lo as f64 * arena.prices.emr_rate_per_second(&worker)
                    + arena.tier_cost_per_second(&action, point.events_per_s, point.bytes_per_event, temperature);
                if tier == Tier::Redis {
                    cost += arena.redis_rate_per_second();
                }
                if best.is_none_or(|(_, c)| cost < c) {
                    best = Some((action, cost));
                }
            }
        }
    }
    best
}

/// Score the bound on `trace` with the temperatures of episode `seed`.
pub fn clairvoyant_bound(arena: &Arena, trace: &Trace, seed: u64, mut timeline: Option<&mut Timeline>) -> Result<Scores, SimError> {
    let mut temperature = TemperatureSeries::new(&arena.config, seed)?;
    let mut hist = LatencyHistogram::default();
    let (mut cost, mut events, mut violating, mut bytes, mut steps_violating) = (0.0, 0.0, 0.0, 0.0, 0usize);
    let (mut executors, mut cpu) = (RunningStd::default(), RunningStd::default());
    let sla = arena.config.sla_ms;
    for point in trace.points() {
        let temp = temperature.advance();
        let (action, c, latency) = match cheapest_action(arena, *point, temp) {
            Some((a, c)) => {
                let cap = arena.capacity(&a, a.executors as f64, (a.executors * a.memory_gb) as f64, *point, temp);
                (a, c, cap.service_ms)
            }
            None => {
                // Beyond the arena's maximum capacity: the largest fast deployment, its overflow violating.
                let a = ScalingAction { executors: arena.config.max_executors, memory_gb: 30, tier: Tier::Redis, compression: Compression::Lz4, prewarm: 0 };
                let cap = arena.capacity(&a, a.executors as f64, (a.executors * a.memory_gb) as f64, *point, temp);
                violating += (point.events_per_s - cap.events_per_s()).max(0.0);
                steps_violating += 1;
                (a, f64::NAN, cap.service_ms)
            }
        };
        let c = if c.is_nan() {
            let worker = WorkerSpec { vcpu: arena.config.vcpu_per_executor, memory_gb: 30.0, disk_gb: 20.0 };
            action.executors as f64 * arena.prices.emr_rate_per_second(&worker)
        } else {
            c
        };
        cost += c;
        hist.add(latency, point.events_per_s);
        events += point.events_per_s;
        bytes += point.events_per_s * point.bytes_per_event;
        executors.add(action.executors as f64);
        let cap = arena.capacity(&action, action.executors as f64, (action.executors * action.memory_gb) as f64, *point, temp);
        let avail = action.executors as f64 * arena.config.vcpu_per_executor * 1_000.0;
        cpu.add((point.events_per_s.min(cap.events_per_s()) * cap.cpu_ms_per_event / avail).min(1.0));
        if let Some(tl) = timeline.as_deref_mut() {
            tl.load.push(point.events_per_s as f32);
            tl.processed.push(point.events_per_s.min(cap.events_per_s()) as f32);
            tl.executors.push(action.executors as f32);
            tl.latency_ms.push(latency as f32);
            tl.tier.push(action.tier);
        }
        if latency > sla {
            steps_violating += 1;
        }
    }
    let seconds = trace.len().max(1) as f64;
    Ok(Scores {
        cost_usd: cost,
        p95_ms: hist.quantile(0.95),
        p99_ms: hist.quantile(0.99),
        sla_violation_pct: if events > 0.0 { 100.0 * violating / events } else { 0.0 },
        sla_step_violation_pct: 100.0 * steps_violating as f64 / seconds,
        stability: executors.std(),
        cpu_util_pct: 100.0 * cpu.mean(),
        throughput_mb_s: bytes / 1e6 / seconds,
    })
}
