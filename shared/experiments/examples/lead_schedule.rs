//! Diagnostic: what the edges' lead leaves to any policy. The achievable clairvoyant schedule asks,
//! at each decision, for the most executors any second needs until the next request is sure to be
//! ready (the cold start's upper bound plus one interval, 65 s in the arena). A policy learns of the
//! load only through the edges' forecast, `lead_s` ahead (60 s). The same schedule held to shorter
//! horizons is what a perfect forecast over that lead could ask for, with no headroom: its cost as x
//! the full schedule's and its share of events over the SLA, trace by trace.
//!
//! `cargo run --release -p experiments --example lead_schedule [SEEDS] [HORIZON_S,...]`

use experiments::EVALUATION_TRACES;
use sim::clairvoyant::ClairvoyantSchedule;
use sim::Arena;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seeds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let arena = Arena::embedded();
    let horizons: Vec<usize> = match args.next() {
        Some(list) => list
            .split(',')
            .map(|h| h.parse().map_err(|_| format!("horizon `{h}` is not a whole number of seconds")))
            .collect::<Result<_, _>>()?,
        None => vec![arena.config.edge.lead_s, arena.config.edge.lead_s - arena.config.decision_interval_s],
    };
    println!(
        "the schedule held to a horizon: cost x the full schedule's and % of events over the SLA, mean of \
         {seeds} seeds (the full schedule's own violations first)"
    );
    for name in EVALUATION_TRACES {
        let mut full = (0.0, 0.0);
        let mut held = vec![(0.0, 0.0); horizons.len()];
        for seed in 0..seeds {
            let trace = traces::resolve(name, seed)?;
            let mut schedule = ClairvoyantSchedule::new(&arena, &trace, seed)?;
            let scores = arena.run(&trace, seed, &mut schedule, None)?;
            full.0 += scores.cost_usd;
            full.1 += scores.sla_violation_pct;
            for (h, sum) in horizons.iter().zip(held.iter_mut()) {
                let scores = arena.run(&trace, seed, &mut schedule.clone().with_horizon(*h), None)?;
                sum.0 += scores.cost_usd;
                sum.1 += scores.sla_violation_pct;
            }
        }
        let n = seeds.max(1) as f64;
        let short = name.rsplit('/').next().unwrap_or(name).trim_end_matches(".csv");
        let mut line = format!("{short:<16} | full {:.2} %", full.1 / n);
        for (h, (cost, violations)) in horizons.iter().zip(&held) {
            line += &format!(" | {h} s {:.3}x {:.2} %", cost / full.0.max(1e-12), violations / n);
        }
        println!("{line}");
    }
    Ok(())
}
