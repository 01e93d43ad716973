//! The seed-compat arena as a PPO training environment.

use crate::ppo::DiscreteEnv;
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use sim::seed_compat::{SeedEnv, EPISODE_STEPS, SLA_MS};

/// Training reward: minus the step's cost (scaled as in the seed, cost / 10) and, for a step over the
/// SLA, `VIOLATION_PENALTY` plus how far over it went (latency / SLA - 1, capped at 3). The thesis's
/// global reward (3.1) weighs latency, cost and violations; here the target is the tournament's
/// (cheapest at no violation), so violations carry the weight: a compliant step costs about 0.5, a
/// violation at least four times that.
pub const VIOLATION_PENALTY: f32 = 2.0;

/// Training episodes draw seeds from the upper half of u64; tournaments use small seeds, so the
/// policy is never evaluated on a workload it trained on.
pub const TRAINING_SEED_BIT: u64 = 1 << 63;

pub struct SeedTrainEnv {
    env: Option<SeedEnv>,
}

impl SeedTrainEnv {
    pub fn new() -> Self {
        Self { env: None }
    }
}

impl Default for SeedTrainEnv {
    fn default() -> Self {
        Self::new()
    }
}

fn to_f32(obs: &[f64; 13]) -> Vec<f32> {
    obs.iter().map(|&v| v as f32).collect()
}

impl DiscreteEnv for SeedTrainEnv {
    fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
        let (env, obs) = SeedEnv::reset(rng.random::<u64>() | TRAINING_SEED_BIT);
        self.env = Some(env);
        to_f32(&obs)
    }

    fn step(&mut self, action: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool) {
        let Some(env) = self.env.as_mut() else {
            let obs = self.reset(rng);
            return (obs, 0.0, false);
        };
        let s = env.step([action[0], action[1], action[2], action[3]]);
        let violation = if s.latency_ms > SLA_MS { VIOLATION_PENALTY + ((s.latency_ms / SLA_MS - 1.0).min(3.0)) as f32 } else { 0.0 };
        let reward = -(s.cost / 10.0) as f32 - violation;
        (to_f32(&s.obs), reward, env.steps() >= EPISODE_STEPS)
    }
}
