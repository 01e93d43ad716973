//! Diagnostic: the seed-compat model's action against the cheapest action that is safe for any
//! shuffle size the workload can draw, on episodes of every scenario, by band of next load.
//! `cargo run --release -p experiments --example seed_actions MODEL [EPISODES]`

use sim::seed_compat::{cheapest_meeting_sla, evaluate, Scenario, SeedEnv};

/// The workload's largest shuffle, MB (volume up to 500 MB times a factor up to 0.5: seed-env.md 3).
const WORST_SHUFFLE_MB: f64 = 250.0;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The cheapest action that meets the SLA whatever the shuffle (the observation's is stale).
fn safe_cheapest(load: f64) -> [usize; 4] {
    cheapest_meeting_sla(load, WORST_SHUFFLE_MB)
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, rest @ ..] = args.as_slice() else {
        return Err("usage: seed_actions MODEL [EPISODES]".into());
    };
    let episodes: u64 = match rest.first() {
        Some(s) => s.parse().map_err(|_| format!("episodes `{s}` is not a whole number"))?,
        None => 5,
    };
    let policy = policy::SeedCompatPolicy::load(std::path::Path::new(model)).map_err(|e| e.to_string())?;
    let (mut extra, mut total, mut steps) = (0.0, 0.0, 0usize);
    // Per band of 100 msg/s of next load: steps, extra cost over the safe cheapest, executors off.
    let mut bands = vec![(0usize, 0.0f64, 0.0f64, 0i64); 10];
    for seed in 0..episodes {
        for scenario in Scenario::ALL {
            let (mut env, mut obs) = SeedEnv::reset_with(seed, scenario);
            while env.steps() < sim::seed_compat::EPISODE_STEPS {
                let act = policy.act(&obs).map_err(|e| e.to_string())?;
                let load = env.load();
                let best = safe_cheapest(load);
                let (_, cost, _) = evaluate(act, load, env.shuffle());
                let (_, cost_best_here, _) = evaluate(best, load, env.shuffle());
                extra += cost - cost_best_here;
                total += cost_best_here;
                steps += 1;
                let b = &mut bands[((load / 100.0) as usize).min(9)];
                b.0 += 1;
                b.1 += cost - cost_best_here;
                b.2 += cost_best_here;
                b.3 += act[0] as i64 - best[0] as i64;
                if steps % 997 == 0 {
                    println!("load {load:>6.1}: model {act:?} ${cost:.2}  safe cheapest {best:?} ${cost_best_here:.2}");
                }
                obs = env.step(act).obs;
            }
        }
    }
    for (i, b) in bands.iter().enumerate().filter(|(_, b)| b.0 > 0) {
        println!(
            "load {:>3}-{:<3}: {:>6} steps, model {:+.1} % cost, executors {:+.2} on average",
            i * 100,
            i * 100 + 100,
            b.0,
            100.0 * b.1 / b.2.max(1e-9),
            b.3 as f64 / b.0 as f64
        );
    }
    println!(
        "{steps} steps: the model costs {:+.1} % against the safe cheapest action",
        100.0 * extra / total.max(1e-9)
    );
    Ok(())
}
