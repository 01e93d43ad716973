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

/// Where the raw observation holds the edge-predicted load: the next step's, exactly (seed-env.md 1).
pub const PREDICTED_LOAD_INDEX: usize = 11;

/// Executor-GB of capacity per msg/s of load for the compute alone to take the whole SLA: the seed's
/// compute latency is 100 W / (n m) ms (seed-env.md 4), so n m = 100 W / 1,000.
pub const CAPACITY_PER_LOAD: f32 = 100.0 / 1_000.0;

/// GB per executor the executor level counts in: the seed's largest, the cheapest per GB
/// (n executors of m GB cost n (0.1 + 0.05 m)).
pub const EXECUTOR_UNIT_GB: f32 = 8.0;

/// Executor levels: executors = ceil(level x capacity / 8 GB), where capacity is what the memory
/// level asks for, so level 1 is the fewest executors that can hold it at the largest size, and higher
/// levels spread it over more, smaller ones.
pub const EXECUTOR_LEVELS: [f32; 8] = [1.0, 1.05, 1.1, 1.2, 1.35, 1.5, 2.0, 3.0];

/// Memory levels: capacity = level x need, and GB per executor = ceil(capacity / executors), the
/// smallest size that gives the chosen executors `level` times the compute capacity the next load
/// needs. The margin above 1 pays for the shuffle's access time, which the stale observation cannot
/// tell (at most 12.5 ms on Redis uncompressed, 1.25 % of the SLA; far more on the slow tiers).
/// Steps of a quarter per cent up to 1.03: at the seed's loads one step is worth about one executor-GB.
pub const MEMORY_LEVELS: [f32; 16] =
    [1.0, 1.0025, 1.005, 1.0075, 1.01, 1.0125, 1.015, 1.0175, 1.02, 1.025, 1.03, 1.04, 1.06, 1.1, 1.2, 1.5];

/// The policy's heads: executor level, memory level, tier, compression.
pub const HEAD_DIMS: [usize; 4] = [
    EXECUTOR_LEVELS.len(),
    MEMORY_LEVELS.len(),
    sim::seed_compat::ACTION_DIMS[2],
    sim::seed_compat::ACTION_DIMS[3],
];

/// The decode the exported graph performs, from the same constants.
pub fn decode() -> crate::onnx::SeedDecode<'static> {
    crate::onnx::SeedDecode {
        load_index: PREDICTED_LOAD_INDEX,
        capacity_per_load: CAPACITY_PER_LOAD,
        executor_levels: &EXECUTOR_LEVELS,
        memory_levels: &MEMORY_LEVELS,
        max_executors: sim::seed_compat::ACTION_DIMS[0] as f32,
        max_memory_gb: sim::seed_compat::ACTION_DIMS[1] as f32,
        executor_unit_gb: EXECUTOR_UNIT_GB,
    }
}

/// The seed action (a0..a3) of the policy's head indices on raw observation `obs`, computed in f32
/// operation for operation as the exported graph does (`onnx::export_seed_relative`), so training
/// and the exported model take the same action. The heads are relative to the edge-predicted next
/// load (obs 11), as the scaling policy's are to its demand: a level means the same margin at every
/// load, where raw indices left PPO to learn a staircase of 90 steps (it settled on a handful of
/// sizes, 1.11 to 1.14 x the clairvoyant bound).
pub fn seed_action(heads: &[usize], obs: &[f32]) -> [usize; 4] {
    let load = obs.get(PREDICTED_LOAD_INDEX).copied().filter(|v| v.is_finite()).unwrap_or(0.0).max(0.0);
    let need = load * CAPACITY_PER_LOAD;
    let level = |table: &[f32], k: usize| table[heads.get(k).copied().unwrap_or(0).min(table.len() - 1)];
    let capacity = level(&MEMORY_LEVELS, 1) * need;
    let executors = (level(&EXECUTOR_LEVELS, 0) * capacity / EXECUTOR_UNIT_GB)
        .ceil()
        .clamp(1.0, sim::seed_compat::ACTION_DIMS[0] as f32);
    let memory = (capacity / executors).ceil().clamp(1.0, sim::seed_compat::ACTION_DIMS[1] as f32);
    [
        executors as usize - 1,
        memory as usize - 1,
        heads.get(2).copied().unwrap_or(0),
        heads.get(3).copied().unwrap_or(0),
    ]
}

pub struct SeedTrainEnv {
    env: Option<SeedEnv>,
    /// The raw observation the next action is decided on.
    last: Vec<f32>,
}

impl SeedTrainEnv {
    pub fn new() -> Self {
        Self { env: None, last: vec![0.0; 13] }
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
        self.last = to_f32(&obs);
        self.last.clone()
    }

    fn step(&mut self, action: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool) {
        let Some(env) = self.env.as_mut() else {
            let obs = self.reset(rng);
            return (obs, 0.0, false);
        };
        let s = env.step(seed_action(action, &self.last));
        let violation = if s.latency_ms > SLA_MS {
            VIOLATION_PENALTY + ((s.latency_ms / SLA_MS - 1.0).min(3.0)) as f32
        } else {
            0.0
        };
        let reward = -(s.cost / 10.0) as f32 - violation;
        self.last = to_f32(&s.obs);
        (self.last.clone(), reward, env.steps() >= EPISODE_STEPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::seed_compat::{evaluate, SLA_MS};

    fn obs_with_load(load: f32) -> Vec<f32> {
        let mut obs = vec![0.0; 13];
        obs[PREDICTED_LOAD_INDEX] = load;
        obs
    }

    #[test]
    fn level_one_is_the_fewest_executors_then_the_smallest_memory_that_hold_the_load() {
        for load in [10.0f32, 95.0, 170.0, 333.0, 640.0, 900.0] {
            let [n, m, _, _] = seed_action(&[0, 0, 0, 0], &obs_with_load(load));
            let (n, m) = (n as f32 + 1.0, m as f32 + 1.0);
            let need = load * CAPACITY_PER_LOAD;
            assert!(n * m >= need, "load {load}: {n} x {m} GB < {need}");
            assert!(
                (n - 1.0) * EXECUTOR_UNIT_GB < need || n == 1.0,
                "load {load}: {n} executors, one fewer would do"
            );
            assert!(n * (m - 1.0) < need || m == 1.0, "load {load}: {m} GB, a size less would do");
            // Compute alone takes at most the SLA.
            let (latency, _, _) = evaluate([n as usize - 1, m as usize - 1, 0, 0], load as f64, 0.0);
            assert!(latency <= SLA_MS + 1e-6);
        }
    }

    #[test]
    fn decoding_is_bounded_for_any_observation() {
        for load in [f32::NAN, f32::INFINITY, -5.0, 0.0, 1e9] {
            for h in [[0, 0, 0, 0], [HEAD_DIMS[0] - 1, HEAD_DIMS[1] - 1, 3, 2]] {
                let a = seed_action(&h, &obs_with_load(load));
                assert!(
                    a.iter().zip(sim::seed_compat::ACTION_DIMS).all(|(&i, d)| i < d),
                    "load {load}: {a:?}"
                );
            }
        }
    }
}
