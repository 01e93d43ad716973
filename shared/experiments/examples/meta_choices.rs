//! Diagnostic: the weights the meta-controller picks, per scenario, over whole episodes of a trace,
//! with the deployed bundle's cost and violations (`rl-meta`: meta-controller, scaling policy and
//! prewarmer, as in the tournament).
//!
//! `cargo build --release --workspace --examples`, then
//! `target/release/examples/meta_choices [MODELS_DIR] [TRACE] [SEEDS]`

use control::{Observation, ScalingAction, Scenario};
use sim::learned::{Prewarmed, RlMeta};
use sim::{Arena, EpisodeInfo, Policy};

/// The bundle, recording the weights in force at every decision.
struct Recorded {
    bundle: Prewarmed<RlMeta>,
    weights: Vec<(f64, f64)>,
}

impl Policy for Recorded {
    fn name(&self) -> &str {
        self.bundle.name()
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.bundle.reset(info)
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let action = self.bundle.decide(obs);
        self.weights.push(self.bundle.inner().weights());
        action
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(args.get(1).map_or("models", |s| s.as_str()));
    let trace_name = args.get(2).map_or("step-burst", |s| s.as_str());
    let seeds: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let arena = Arena::embedded();
    println!("{trace_name}, seeds 0..{seeds}: mean cost, events over the SLA, and the weights in force (mean [min, max])");
    for scenario in Scenario::ALL {
        let (mut cost, mut violations, mut weights) = (0.0, 0.0, Vec::new());
        for seed in 0..seeds {
            let meta = policy::MetaPolicy::load(&dir.join("meta-td3.onnx"))?;
            let scaling =
                policy::ScalingPolicy::load(&dir.join("scaling-ppo.onnx"), arena.feature_builder())?;
            let bundle = Prewarmed::new(RlMeta::new(meta, scaling, arena.clone(), scenario), &arena);
            let mut recorded = Recorded { bundle, weights: Vec::new() };
            let trace = traces::resolve(trace_name, seed)?;
            let scores = arena.run(&trace, seed, &mut recorded, None)?;
            cost += scores.cost_usd;
            violations += scores.sla_violation_pct;
            weights.extend(recorded.weights);
        }
        let summary = |pick: fn(&(f64, f64)) -> f64| {
            let n = weights.len().max(1) as f64;
            let mean = weights.iter().map(pick).sum::<f64>() / n;
            let (lo, hi) = weights
                .iter()
                .map(pick)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), w| (lo.min(w), hi.max(w)));
            format!("{mean:.2} [{lo:.2}, {hi:.2}]")
        };
        println!(
            "{:28} ${:.3}  {:.2} %  alpha {}  beta {}",
            scenario.name(),
            cost / seeds as f64,
            violations / seeds as f64,
            summary(|w| w.0),
            summary(|w| w.1)
        );
    }
    Ok(())
}
