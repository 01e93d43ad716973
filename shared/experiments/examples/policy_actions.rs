//! Diagnostic: what a scaling model chooses on one episode, head by head, with and without the
//! edge burst signal. `cargo run --release -p experiments --example policy_actions MODEL TRACE [SEED]`

use control::{FeatureBuilder, ACTION_DIMS};
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
    let [_, model, trace_name, rest @ ..] = args.as_slice() else {
        return Err("usage: policy_actions MODEL TRACE [SEED]".into());
    };
    let seed: u64 = match rest.first() {
        Some(s) => s.parse().map_err(|_| format!("seed `{s}` is not a whole number"))?,
        None => 0,
    };
    let arena = Arena::embedded();
    let state: FeatureBuilder = arena.feature_builder();
    let policy =
        policy::ScalingPolicy::load(std::path::Path::new(model), state.clone()).map_err(|e| e.to_string())?;
    let trace = traces::resolve(trace_name, seed).map_err(|e| e.to_string())?;
    let mut episode = Episode::new(&arena, &trace, seed).map_err(|e| e.to_string())?;
    let mut guard = ArenaGuardrails::new(arena.config.max_executors);
    let mut counts = [
        [
            vec![0usize; ACTION_DIMS[0]],
            vec![0; ACTION_DIMS[1]],
            vec![0; ACTION_DIMS[2]],
            vec![0; ACTION_DIMS[3]],
        ],
        [vec![0; ACTION_DIMS[0]], vec![0; ACTION_DIMS[1]], vec![0; ACTION_DIMS[2]], vec![0; ACTION_DIMS[3]]],
    ];
    let mut violating = 0.0;
    while !episode.done() {
        let obs = episode.observe();
        let idx = policy.indices(&state.features(&obs)).map_err(|e| e.to_string())?;
        for h in 0..4 {
            counts[obs.burst_signal as usize][h][idx[h] as usize] += 1;
        }
        let act = guard.apply(state.action(idx, &obs).map_err(|e| e.to_string())?, &obs);
        let out = episode.advance(act, None);
        violating += out.events_violating;
        if out.events_violating > 0.0 {
            println!("t={:>5} load {:>7.0} pred {:>7.0} run {:>3} pend {:>3} want {:>3} lvl {:>2} tier {:?} viol {:.0}", obs.time_s, obs.input_rate, obs.predicted_load, obs.running_executors, obs.pending_executors, act.executors, idx[0], act.tier, out.events_violating);
        }
    }
    println!("violating events {violating:.0}; scores {:?}", episode.scores());
    for (b, c) in counts.iter().enumerate() {
        println!("burst={b}: level {:?}\n         memory {:?} tier {:?} codec {:?}", c[0], c[1], c[2], c[3]);
    }
    Ok(())
}
