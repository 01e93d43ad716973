//! Diagnostic: where a scaling model's cost above the clairvoyant bound goes. For every decision
//! interval it splits the policy's bill into (a) what the cheapest configuration, right-sized every
//! second, costs (the bound), (b) what the policy's own configuration (memory, tier, codec), right-
//! sized every second, adds on top, and (c) what its executor count adds beyond that right size
//! (headroom, late scale-down, the one-minute minimum). Intervals are grouped by what the decision
//! saw: the edges' burst signal up; down with the predicted load (the peak of the last minute's
//! forecasts) still 30 % above the input rate, as after a burst; or neither. The achievable
//! clairvoyant schedule is split the same way.
//!
//! `cargo run --release -p experiments --example cost_breakdown MODEL TRACE [SEEDS]`; MODEL may also be
//! `rule:Q/B`, the fixed rule "Q x the demand while the burst signal is down, B x while it is up"
//! (memory level 0, NVMe, no codec), to see what the demand estimate itself leaves above the bound.

use latency_model::Tier;
use sim::clairvoyant::{cheapest_action, fewest_executors, worker_rate_per_second, ClairvoyantSchedule};
use sim::learned::RlScaling;
use sim::realistic::TemperatureSeries;
use sim::{Arena, Episode, Policy};

#[derive(Default, Clone, Copy)]
struct Split {
    paid: f64,
    bound: f64,
    config: f64,
    intervals: usize,
    executors: f64,
    right_size: f64,
}

/// The fixed rule named by `Q/B` (headrooms while the burst signal is down / up).
fn rule_policy(
    arena: &Arena,
    rule: &str,
) -> Result<experiments::fixed_indices::FixedIndices, Box<dyn std::error::Error>> {
    let (quiet, burst) = rule.split_once('/').ok_or_else(|| format!("rule {rule:?} is not Q/B"))?;
    experiments::fixed_indices::FixedIndices::headroom_rule(arena, quiet.parse()?, burst.parse()?).ok_or_else(
        || format!("rule {rule:?}: each headroom must be one of {:?}", control::EXECUTOR_HEADROOM).into(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, trace_name, rest @ ..] = args.as_slice() else {
        return Err("usage: cost_breakdown MODEL TRACE [SEEDS]".into());
    };
    let seeds: u64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let arena = Arena::embedded();
    for who in ["rl", "clairvoyant-schedule"] {
        let mut phases = [Split::default(); 3];
        let mut configs: std::collections::BTreeMap<String, usize> = Default::default();
        for seed in 0..seeds {
            let trace = traces::resolve(trace_name, seed)?;
            let mut policy: Box<dyn Policy> = match who {
                "rl" => match model.strip_prefix("rule:") {
                    Some(rule) => Box::new(rule_policy(&arena, rule)?),
                    None => Box::new(RlScaling::new(
                        "rl",
                        policy::ScalingPolicy::load(std::path::Path::new(model), arena.feature_builder())?,
                    )),
                },
                _ => Box::new(ClairvoyantSchedule::new(&arena, &trace, seed)?),
            };
            policy.reset(&arena.episode_info(&trace, seed));
            let mut temps = TemperatureSeries::new(&arena.config, seed)?;
            let temperatures: Vec<f64> = (0..trace.len()).map(|_| temps.advance()).collect();
            let mut episode = Episode::new(&arena, &trace, seed)?;
            while !episode.done() {
                let obs = episode.observe();
                let action = policy.decide(&obs);
                let t0 = episode.time();
                let out = episode.advance(action, None);
                let t1 = episode.time().min(trace.len());
                let kept = episode.action();
                *configs
                    .entry(format!("{} GB {:?} {:?}", kept.memory_gb, kept.tier, kept.compression))
                    .or_default() += 1;
                let (mut bound, mut config, mut right) = (0.0, 0.0, 0.0);
                for (&p, &temperature) in trace.points()[t0..t1].iter().zip(&temperatures[t0..t1]) {
                    if let Some((_, c)) = cheapest_action(&arena, p, temperature) {
                        bound += c;
                    }
                    if let Some(n) = fewest_executors(&arena, &kept, p, temperature) {
                        let mut c = n as f64 * worker_rate_per_second(&arena, &kept)
                            + arena.tier_cost_per_second(
                                &kept,
                                p.events_per_s,
                                p.bytes_per_event,
                                temperature,
                            );
                        if kept.tier == Tier::Redis {
                            c += arena.redis_rate_per_second();
                        }
                        config += c;
                        right += n as f64;
                    }
                }
                let seconds = (t1 - t0).max(1) as f64;
                let group = if obs.burst_signal {
                    1
                } else if obs.predicted_load > 1.3 * obs.input_rate {
                    2
                } else {
                    0
                };
                let s = &mut phases[group];
                s.paid += out.cost_usd;
                s.bound += bound;
                s.config += config;
                s.intervals += 1;
                s.executors += kept.executors as f64;
                s.right_size += right / seconds;
            }
        }
        let total: f64 = phases.iter().map(|s| s.bound).sum();
        let decisions: usize = configs.values().sum();
        let mut common: Vec<(String, usize)> = configs.into_iter().collect();
        common.sort_by_key(|c| std::cmp::Reverse(c.1));
        let common: Vec<String> = common
            .iter()
            .take(3)
            .map(|(c, n)| format!("{c} {:.0} %", 100.0 * *n as f64 / decisions.max(1) as f64))
            .collect();
        println!(
            "{who} on {trace_name}, {seeds} seeds (cost as x the whole bound); configurations: {}",
            common.join(", ")
        );
        for (name, s) in ["quiet", "burst", "hold"].iter().zip(phases) {
            println!(
                "  {name:<8} {:>4} intervals: bound {:.3}  + config {:+.3}  + count {:+.3}  = paid {:.3};  executors {:.1} vs right size {:.1}",
                s.intervals,
                s.bound / total,
                (s.config - s.bound) / total,
                (s.paid - s.config) / total,
                s.paid / total,
                s.executors / s.intervals.max(1) as f64,
                s.right_size / s.intervals.max(1) as f64
            );
        }
    }
    Ok(())
}
