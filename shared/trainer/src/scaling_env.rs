//! The realistic arena as a PPO training environment for the scaling policy.

use crate::ppo::DiscreteEnv;
use crate::seed_env::TRAINING_SEED_BIT;
use control::{action_from_indices, StateBuilder, FEATURES};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use sim::seed_compat::Scenario;
use sim::{Arena, Episode, IntervalOutcome};
use traces::{BuiltinTrace, Trace};

/// The trace shapes the scaling policy trains on; the others (slow-ramp, flash-crowd and the real
/// traces) are held out to measure generalisation.
pub const TRAINING_TRACES: [BuiltinTrace; 3] = [BuiltinTrace::StepBurst, BuiltinTrace::Burst4x, BuiltinTrace::RushHour];

/// Weight of the violation share inside the latency term of the reward.
pub const VIOLATION_WEIGHT: f64 = 5.0;

/// Reward of one decision interval under weights (alpha: cost, beta: latency), after the thesis's
/// global reward (3.1): minus alpha times the normalised cost, minus beta times the normalised latency
/// plus the share of events that violated the SLA.
pub fn reward(out: &IntervalOutcome, alpha: f64, beta: f64, cost_ref_per_s: f64, sla_ms: f64) -> f64 {
    let seconds = out.seconds.max(1) as f64;
    let cost = out.cost_usd / (cost_ref_per_s * seconds);
    let latency = (out.mean_latency_ms / sla_ms).min(5.0) / 5.0;
    let events = out.events_processed.max(out.events_arrived).max(1.0);
    let violations = (out.events_violating / events).min(1.0);
    -(alpha * cost + beta * (latency + VIOLATION_WEIGHT * violations))
}

/// One environment: a new episode on a random training trace, seed and scenario at every reset.
pub struct ScalingTrainEnv {
    arena: Arena,
    state: StateBuilder,
    episode: Option<Episode<'static>>,
    weights: (f64, f64),
    cost_ref_per_s: f64,
    traces: Vec<BuiltinTrace>,
}

/// Cost of 16 executors of 16 GB for one second: one unit of cost in the reward.
pub fn cost_reference_per_s(arena: &Arena) -> f64 {
    let worker = cost_model::WorkerSpec { vcpu: arena.config.vcpu_per_executor, memory_gb: 16.0, disk_gb: 20.0 };
    16.0 * arena.prices.emr_rate_per_second(&worker)
}

impl ScalingTrainEnv {
    pub fn new(arena: Arena, traces: Vec<BuiltinTrace>) -> Self {
        let cost_ref_per_s = cost_reference_per_s(&arena);
        let state = arena.state_builder();
        Self { arena, state, episode: None, weights: (0.33, 0.33), cost_ref_per_s, traces }
    }

    fn features(&self) -> Vec<f32> {
        match &self.episode {
            Some(e) => {
                let mut obs = e.observe();
                obs.alpha = self.weights.0;
                obs.beta = self.weights.1;
                self.state.features(&obs).to_vec()
            }
            None => vec![0.0; FEATURES],
        }
    }
}

impl DiscreteEnv for ScalingTrainEnv {
    fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
        let seed = rng.random::<u64>() | TRAINING_SEED_BIT;
        let kind = self.traces[rng.random_range(0..self.traces.len())];
        let trace: Trace = traces::builtin(kind, seed);
        let scenario = Scenario::ALL[rng.random_range(0..4)];
        let [a, b, _] = scenario.weights();
        self.weights = (a, b);
        self.episode = Episode::owned(self.arena.clone(), trace, seed).ok();
        self.features()
    }

    fn step(&mut self, action: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool) {
        let indices = [action[0] as i64, action[1] as i64, action[2] as i64, action[3] as i64];
        let (Some(episode), Ok(act)) = (self.episode.as_mut(), action_from_indices(indices, 0)) else {
            return (self.reset(rng), 0.0, true);
        };
        let out = episode.advance(act, None);
        let r = reward(&out, self.weights.0, self.weights.1, self.cost_ref_per_s, self.arena.config.sla_ms);
        let done = episode.done();
        (self.features(), r as f32, done)
    }
}
