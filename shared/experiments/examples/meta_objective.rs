//! Diagnostic: what the meta-controller's training reward asks for. Runs fixed weights for whole
//! training episodes (the same episodes for every pair) and prints each scenario's mean paired
//! return: above zero, the pair beats the scenario's own weights by the scenario's objective. The
//! trained meta-controller should land where its scenario's row is highest.
//!
//! `cargo run --release -p experiments --example meta_objective [MODELS_DIR] [EPISODES]`

use control::Scenario;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use trainer::td3::ContinuousEnv;

const PAIRS: [(f32, f32); 8] =
    [(0.0, 1.0), (0.0, 0.5), (0.2, 0.3), (0.33, 0.33), (0.5, 0.5), (1.0, 1.0), (0.5, 0.0), (1.0, 0.0)];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(args.get(1).map_or("models", |s| s.as_str()));
    let episodes: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(40);
    let arena = sim::Arena::embedded();
    let scaling = policy::ScalingPolicy::load(&dir.join("scaling-ppo.onnx"), arena.feature_builder())?;
    let mut env = trainer::meta_env::MetaTrainEnv::new(arena, scaling);
    println!("mean paired return per episode over {episodes} training episodes (columns: scenario, episodes drawn)");
    let mut header = format!("{:>12}", "alpha/beta");
    for (i, s) in Scenario::ALL.iter().enumerate() {
        let drawn = (0..episodes)
            .filter(|&e| scenario_of(&env.reset(&mut Xoshiro256PlusPlus::seed_from_u64(e))) == Some(i))
            .count();
        header.push_str(&format!("{:>32}", format!("{} ({drawn})", s.name())));
    }
    println!("{header}");
    for (alpha, beta) in PAIRS {
        let mut sums = [(0.0f64, 0usize); 4];
        for episode in 0..episodes {
            // Seeding the episode's stream alike for every pair replays the same trace, seed and scenario.
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(episode);
            let obs = env.reset(&mut rng);
            let Some(scenario) = scenario_of(&obs) else {
                return Err("the meta features lost their scenario one-hot".into());
            };
            loop {
                let (_, reward, done) = env.step(&[alpha, beta], &mut rng);
                sums[scenario].0 += reward as f64;
                if done {
                    break;
                }
            }
            sums[scenario].1 += 1;
        }
        let row: String = sums
            .iter()
            .map(|(total, n)| format!("{:>32}", format!("{:+.3}", total / (*n).max(1) as f64)))
            .collect();
        println!("{:>12}{row}", format!("{alpha}/{beta}"));
    }
    Ok(())
}

fn scenario_of(features: &[f32]) -> Option<usize> {
    features.iter().take(4).position(|&x| x > 0.5)
}
