//! Ablation: the predicted load a policy plans for. Runs fixed rules of the scaling policy's relative
//! executor head (one level while the burst signal is down, one while it is up; NVMe, memory level 0,
//! no codec) on every built-in trace and both real ones, once with the predicted load as the newest
//! edge forecast (`forecast_window_s = 0`) and once as the peak of the last minute's forecasts (the
//! default), against the clairvoyant bound.
//!
//! `cargo run --release -p sim --example rule_sweep [SEEDS]`

use control::{Observation, ScalingAction, StateBuilder, EXECUTOR_HEADROOM};
use latency_model::{Compression, Tier};
use sim::config::ArenaConfig;
use sim::learned::ArenaGuardrails;
use sim::{Arena, EpisodeInfo, Policy};

const TRACES: [&str; 7] = ["step-burst", "burst-4x", "rush-hour", "slow-ramp", "flash-crowd", "../shared/traces/real/nyc-taxi-week.csv", "../shared/traces/real/aws-elb-requests.csv"];

/// One executor level while the burst signal is down, another while it is up.
struct Rule {
    state: StateBuilder,
    levels: [i64; 2],
    guard: ArenaGuardrails,
}

impl Policy for Rule {
    fn name(&self) -> &str {
        "rule"
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.guard = ArenaGuardrails::new(info.max_executors);
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let level = self.levels[usize::from(obs.burst_signal)];
        let nvme = Tier::CHOICES.iter().position(|&t| t == Tier::Nvme).unwrap_or(1) as i64;
        let none = Compression::CHOICES.iter().position(|&c| c == Compression::None).unwrap_or(0) as i64;
        match self.state.action([level, 0, nvme, none], obs) {
            Ok(proposed) => self.guard.apply(proposed, obs),
            Err(_) => obs.current,
        }
    }
}

fn level(headroom: f64) -> i64 {
    EXECUTOR_HEADROOM.iter().position(|&h| h == headroom).unwrap_or(3) as i64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seeds: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let base = Arena::embedded();
    let mut bounds = [0.0; TRACES.len()];
    for (i, name) in TRACES.iter().enumerate() {
        for seed in 0..seeds {
            let trace = traces::resolve(name, seed)?;
            bounds[i] += sim::clairvoyant::clairvoyant_bound(&base, &trace, seed, None)?.cost_usd;
        }
    }
    println!("cost x the clairvoyant bound and % of events over the SLA, mean of {seeds} seeds; columns: {}", TRACES.map(|t| t.rsplit('/').next().unwrap_or(t)).join(", "));
    for window in [0.0, 60.0] {
        let mut config = ArenaConfig::default();
        config.edge.cluster.forecast_window_s = window;
        let arena = Arena::new(config, base.prices.clone(), base.model.clone())?;
        println!("forecast window {window} s");
        for (quiet, burst) in [(1.0, 1.0), (1.0, 1.15), (1.0, 1.4), (1.05, 1.05), (1.05, 1.4)] {
            let mut line = format!("  x{quiet:<4} (burst x{burst:<4})");
            for (i, name) in TRACES.iter().enumerate() {
                let (mut cost, mut violations) = (0.0, 0.0);
                for seed in 0..seeds {
                    let trace = traces::resolve(name, seed)?;
                    let mut rule = Rule { state: arena.state_builder(), levels: [level(quiet), level(burst)], guard: ArenaGuardrails::new(arena.config.max_executors) };
                    let scores = arena.run(&trace, seed, &mut rule, None)?;
                    cost += scores.cost_usd;
                    violations += scores.sla_violation_pct;
                }
                line += &format!(" | {:.2}x {:.2} %", cost / bounds[i], violations / seeds as f64);
            }
            println!("{line}");
        }
    }
    Ok(())
}
