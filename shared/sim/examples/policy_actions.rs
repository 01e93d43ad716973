//! Diagnostic: what a scaling model chooses on one episode, head by head, with and without the
//! edge burst signal. `cargo run --release -p sim --example policy_actions MODEL TRACE [SEED]`

use control::{StateBuilder, ACTION_DIMS};
use sim::learned::ArenaGuardrails;
use sim::{Arena, Episode};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (model, trace_name) = (&args[1], &args[2]);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let arena = Arena::embedded();
    let state: StateBuilder = arena.state_builder();
    let policy = policy::ScalingPolicy::load(std::path::Path::new(model), state.clone()).unwrap();
    let trace = traces::resolve(trace_name, seed).unwrap();
    let mut episode = Episode::new(&arena, &trace, seed).unwrap();
    let mut guard = ArenaGuardrails::new(arena.config.max_executors);
    let mut counts = [[vec![0usize; ACTION_DIMS[0]], vec![0; ACTION_DIMS[1]], vec![0; ACTION_DIMS[2]], vec![0; ACTION_DIMS[3]]], [vec![0; ACTION_DIMS[0]], vec![0; ACTION_DIMS[1]], vec![0; ACTION_DIMS[2]], vec![0; ACTION_DIMS[3]]]];
    let mut violating = 0.0;
    while !episode.done() {
        let obs = episode.observe();
        let idx = policy.indices(&state.features(&obs)).unwrap();
        for h in 0..4 {
            counts[obs.burst_signal as usize][h][idx[h] as usize] += 1;
        }
        let act = guard.apply(state.action(idx, &obs).unwrap(), &obs);
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
}
