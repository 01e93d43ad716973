//! Diagnostic: how a scaling model's cost and SLA violations respond to the weights (alpha on cost,
//! beta on latency) it is given, held fixed over whole episodes. The meta-controller can only
//! steer through this response, so it must be monotonic for the scenarios to come out in order.
//! `cargo build --release --workspace --examples` (workspace features: no second build of tract),
//! then `target/release/examples/weight_response MODEL [TRACE,TRACE] [SEEDS]`

use sim::learned::ArenaGuardrails;
use sim::{Arena, Episode};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, rest @ ..] = args.as_slice() else {
        return Err("usage: weight_response MODEL [TRACE,TRACE] [SEEDS]".into());
    };
    let traces: Vec<&str> =
        rest.first().map_or("step-burst,burst-4x,rush-hour", |s| s.as_str()).split(',').collect();
    let seeds: u64 = match rest.get(1) {
        Some(s) => s.parse().map_err(|_| format!("seeds `{s}` is not a whole number"))?,
        None => 3,
    };
    let arena = Arena::embedded();
    let state = arena.feature_builder();
    let policy =
        policy::ScalingPolicy::load(std::path::Path::new(model), state.clone()).map_err(|e| e.to_string())?;
    let grid = [0.0, 0.25, 0.5, 0.75, 1.0];
    for name in traces {
        println!(
            "{name}: cost $ / SLA violations % of events, mean of {seeds} seeds (rows alpha, columns beta)"
        );
        println!(
            "{:>8} {}",
            "",
            grid.iter().map(|b| format!("{:>18}", format!("beta {b}"))).collect::<String>()
        );
        for &alpha in &grid {
            let mut row = format!("{:>8}", format!("a {alpha}"));
            for &beta in &grid {
                let (mut cost, mut viol) = (0.0, 0.0);
                for seed in 0..seeds {
                    let trace = traces::resolve(name, seed).map_err(|e| e.to_string())?;
                    let mut episode = Episode::new(&arena, &trace, seed).map_err(|e| e.to_string())?;
                    let mut guard = ArenaGuardrails::new(arena.config.max_executors);
                    while !episode.done() {
                        let mut obs = episode.observe();
                        obs.alpha = alpha;
                        obs.beta = beta;
                        let idx = policy.indices(&state.features(&obs)).map_err(|e| e.to_string())?;
                        let act = guard.apply(state.action(idx, &obs).map_err(|e| e.to_string())?, &obs);
                        episode.advance(act, None);
                    }
                    let scores = episode.scores();
                    cost += scores.cost_usd;
                    viol += scores.sla_violation_pct;
                }
                row.push_str(&format!(
                    "{:>18}",
                    format!("{:.3} / {:.2}", cost / seeds as f64, viol / seeds as f64)
                ));
            }
            println!("{row}");
        }
    }
    Ok(())
}
