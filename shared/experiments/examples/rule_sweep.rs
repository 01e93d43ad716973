//! Ablation: the predicted load a policy plans for. Runs fixed rules of the scaling policy's relative
//! executor head (one level while the burst signal is down, one while it is up; NVMe, memory level 0,
//! no codec) on every built-in trace and both real ones, once with the predicted load as the newest
//! edge forecast (`forecast_window_s = 0`) and once as the peak of the last minute's forecasts (the
//! default), against the clairvoyant bound.
//!
//! `cargo run --release -p experiments --example rule_sweep [SEEDS]`

use experiments::fixed_indices::score_headroom_rule;
use sim::config::ArenaConfig;
use sim::Arena;

const TRACES: [&str; 7] = [
    "step-burst",
    "burst-4x",
    "rush-hour",
    "slow-ramp",
    "flash-crowd",
    "data/traces/real/nyc-taxi-week.csv",
    "data/traces/real/aws-elb-requests.csv",
];

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
    println!(
        "cost x the clairvoyant bound and % of events over the SLA, mean of {seeds} seeds; columns: {}",
        TRACES.map(|t| t.rsplit('/').next().unwrap_or(t)).join(", ")
    );
    for window in [0.0, 60.0] {
        let mut config = ArenaConfig::default();
        config.edge.cluster.forecast_window_s = window;
        let arena = Arena::new(config, base.prices.clone(), base.model.clone())?;
        println!("forecast window {window} s");
        // The last three are the scaling policy's reference rule at the scenarios' extremes and at the
        // balanced weights (`trainer::scaling_env::teacher_headroom`).
        for (quiet, burst) in [
            (1.0, 1.0),
            (1.0, 1.15),
            (1.0, 1.4),
            (1.05, 1.05),
            (1.05, 1.4),
            (0.95, 1.0),
            (0.95, 1.2),
            (1.0, 1.6),
        ] {
            let mut line = format!("  x{quiet:<4} (burst x{burst:<4})");
            for (i, name) in TRACES.iter().enumerate() {
                let (cost, violations) = score_headroom_rule(&arena, name, quiet, burst, seeds)?;
                line += &format!(" | {:.2}x {:.2} %", cost / bounds[i], violations);
            }
            println!("{line}");
        }
    }
    Ok(())
}
