//! Ablation: a fixed executor level of the scaling policy's relative head (no learning), on every
//! built-in trace, against the clairvoyant bound. Shows what headroom over the demand costs and buys.
//!
//! `cargo run --release -p experiments --example headroom_sweep [SEEDS]`

use control::EXECUTOR_HEADROOM;
use experiments::fixed_indices::FixedIndices;
use latency_model::{Compression, Tier};
use sim::Arena;

fn main() {
    let seeds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let arena = Arena::embedded();
    // Memory level 0: executors just large enough for the working set at the observed event size.
    let fit = 0i64;
    let none = Compression::CHOICES.iter().position(|&c| c == Compression::None).unwrap() as i64;
    for name in ["step-burst", "burst-4x", "rush-hour", "slow-ramp", "flash-crowd"] {
        let mut bound = 0.0;
        for seed in 0..seeds {
            let trace = traces::resolve(name, seed).unwrap();
            bound += sim::clairvoyant::clairvoyant_bound(&arena, &trace, seed, None).unwrap().cost_usd;
        }
        println!("{name}: bound ${:.3}", bound / seeds as f64);
        for tier in [Tier::Redis, Tier::Nvme] {
            let ti = Tier::CHOICES.iter().position(|&t| t == tier).unwrap() as i64;
            for (k, headroom) in EXECUTOR_HEADROOM.iter().enumerate().skip(1) {
                let (mut cost, mut viol) = (0.0, 0.0);
                for seed in 0..seeds {
                    let trace = traces::resolve(name, seed).unwrap();
                    let indices = [k as i64, fit, ti, none];
                    let mut p = FixedIndices::new(&arena, indices, indices);
                    let s = arena.run(&trace, seed, &mut p, None).unwrap();
                    cost += s.cost_usd;
                    viol += s.sla_violation_pct;
                }
                println!(
                    "  {:>5} x{:<4} cost {:.3} ({:.2}x)  viol {:.2} %",
                    tier.name(),
                    headroom,
                    cost / seeds as f64,
                    cost / bound,
                    viol / seeds as f64
                );
            }
        }
    }
}
