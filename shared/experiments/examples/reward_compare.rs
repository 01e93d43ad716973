//! Diagnostic: is the scaling policy's behaviour what its reward asks for? Scores a model and fixed
//! rules (one executor level while the burst signal is down, one while it is up; a memory level and a
//! codec; NVMe) with the training reward itself (`trainer::scaling_env::reward`, per scenario), on the training traces and
//! evaluation seeds. If a rule earns more reward than the model, PPO has not found the reward's
//! optimum; if the model earns more, the reward prefers the model's behaviour.
//!
//! `cargo run --release -p experiments --example reward_compare MODEL [SEEDS]`

use control::{Scenario, EXECUTOR_HEADROOM};
use experiments::fixed_indices::FixedIndices;
use sim::learned::RlScaling;
use sim::{Arena, Episode, Policy};
use trainer::scaling_env::{reward, right_sized_cost};

fn level(headroom: f64) -> i64 {
    EXECUTOR_HEADROOM.iter().position(|&h| h == headroom).unwrap_or(3) as i64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).ok_or("usage: reward_compare MODEL [SEEDS]")?;
    let seeds: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let arena = Arena::embedded();
    let state = arena.feature_builder();
    let worker =
        cost_model::WorkerSpec { vcpu: arena.config.vcpu_per_executor, memory_gb: 16.0, disk_gb: 20.0 };
    let worker_usd_per_s = arena.prices.emr_rate_per_second(&worker);
    // (quiet level, burst level, memory level, codec index: 0 none, 1 LZ4, 2 ZSTD); NVMe throughout.
    let rules: Vec<(f64, f64, i64, i64)> = vec![
        (1.0, 1.0, 1, 0),
        (1.0, 1.2, 1, 0),
        (0.95, 1.2, 1, 0),
        (1.0, 1.2, 1, 1),
        (1.0, 1.2, 1, 2),
        (0.95, 1.2, 1, 2),
    ];
    for scenario in [Scenario::Balanced, Scenario::HealthcareCritical, Scenario::SmartCityBudget] {
        let [alpha, beta, _] = scenario.weights();
        println!("{} (alpha {alpha}, beta {beta}): mean reward per decision (cost x bound-free units / % events over the SLA)", scenario.name());
        for name in trainer::scaling_env::TRAINING_TRACES.map(|t| t.name()) {
            let mut line = format!("  {name:<12}");
            for who in std::iter::once(None).chain(rules.iter().map(Some)) {
                let (mut total, mut steps, mut violating, mut events) = (0.0, 0usize, 0.0, 0.0);
                for seed in 0..seeds {
                    let trace = traces::resolve(name, seed)?;
                    let mut policy: Box<dyn Policy> = match who {
                        None => Box::new(RlScaling::new(
                            "rl",
                            policy::ScalingPolicy::load(std::path::Path::new(model), state.clone())?,
                        )),
                        Some(&(quiet, burst, memory, codec)) => Box::new(FixedIndices::new(
                            &arena,
                            [level(quiet), memory, 1, codec],
                            [level(burst), memory, 1, codec],
                        )),
                    };
                    policy.reset(&arena.episode_info(&trace, seed));
                    let mut episode = Episode::new(&arena, &trace, seed)?;
                    while !episode.done() {
                        let mut obs = episode.observe();
                        (obs.alpha, obs.beta) = (alpha, beta);
                        let action = policy.decide(&obs);
                        let out = episode.advance(action, None);
                        let unit = right_sized_cost(&out, &state, obs.bytes_per_event, worker_usd_per_s);
                        total += reward(&out, alpha, beta, unit, arena.config.sla_ms);
                        steps += 1;
                        violating += out.events_violating;
                        events += out.events_arrived;
                    }
                }
                let label = match who {
                    None => "rl".to_string(),
                    Some((q, b, m, c)) => format!("{q}/{b}/m{m}/c{c}"),
                };
                line += &format!(
                    " | {label} {:.4} ({:.2} %)",
                    total / steps as f64,
                    100.0 * violating / events.max(1.0)
                );
            }
            println!("{line}");
        }
    }
    Ok(())
}
