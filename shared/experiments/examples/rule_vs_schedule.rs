//! Ablation: fixed headroom rules of the scaling policy's executor head (one level while the burst
//! signal is down, one while it is up; NVMe, memory level 0, no codec) against the achievable
//! clairvoyant schedule, on the built-in traces, both real ones and the generated shapes
//! (`data/traces/generated/`). Prints each rule's cost as x the schedule's and its share of events
//! over the SLA, trace by trace.
//!
//! `cargo run --release -p experiments --example rule_vs_schedule [SEEDS] [Q/B,Q/B,...]`

use experiments::fixed_indices::score_headroom_rule;
use experiments::EVALUATION_TRACES;
use sim::clairvoyant::ClairvoyantSchedule;
use sim::Arena;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seeds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let rules: Vec<(f64, f64)> = match args.next() {
        Some(list) => list
            .split(',')
            .map(|pair| {
                let (q, b) = pair.split_once('/').ok_or_else(|| format!("`{pair}` is not Q/B"))?;
                Ok::<_, String>((
                    q.parse().map_err(|_| format!("`{q}` is not a number"))?,
                    b.parse().map_err(|_| format!("`{b}` is not a number"))?,
                ))
            })
            .collect::<Result<_, _>>()?,
        None => vec![(0.95, 1.2), (1.0, 1.2), (0.9, 1.2), (0.95, 1.1)],
    };
    let arena = Arena::embedded();
    println!("cost x the clairvoyant schedule's and % of events over the SLA, mean of {seeds} seeds");
    for name in EVALUATION_TRACES {
        let mut schedule = 0.0;
        for seed in 0..seeds {
            let trace = traces::resolve(name, seed)?;
            let mut policy = ClairvoyantSchedule::new(&arena, &trace, seed)?;
            schedule += arena.run(&trace, seed, &mut policy, None)?.cost_usd;
        }
        let mut line = format!("{:<16}", name.rsplit('/').next().unwrap_or(name).trim_end_matches(".csv"));
        for &(quiet, burst) in &rules {
            let (cost, violations) = score_headroom_rule(&arena, name, quiet, burst, seeds)?;
            line += &format!(" | {quiet}/{burst} {:.3}x {:.2} %", cost / schedule, violations);
        }
        println!("{line}");
    }
    Ok(())
}
