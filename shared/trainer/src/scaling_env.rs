//! The realistic arena as a PPO training environment for the scaling policy.

use crate::ppo::DiscreteEnv;
use crate::seed_env::TRAINING_SEED_BIT;
use control::{FeatureBuilder, Observation, FEATURES};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use sim::learned::ArenaGuardrails;
use sim::seed_compat::Scenario;
use sim::{Arena, Episode, IntervalOutcome};
use traces::{BuiltinTrace, Trace};

/// The trace shapes the scaling policy trains on; slow-ramp and the two real traces are held out to
/// measure generalisation. Flash-crowd is trained on: it is the only shape whose burst arrives about
/// as soon after the edge signal as a worker takes to start, and a policy that never met it carried
/// too little headroom into that race.
pub const TRAINING_TRACES: [BuiltinTrace; 4] =
    [BuiltinTrace::StepBurst, BuiltinTrace::Burst4x, BuiltinTrace::RushHour, BuiltinTrace::FlashCrowd];

/// Weight of the violation share inside the latency term of the reward. Violations come in short
/// runs at burst onsets while headroom is paid in every interval, so the weight must make an onset
/// dearer than carrying headroom all episode; at 50, under the balanced weights, 10 % more executors
/// for an interval pay for themselves if they save a fifth of a percent of its events.
///
/// Chosen by ablation (seed 1, 6 M steps, 20-seed cards). With the edges' forecast peak as the
/// predicted load, late capacity is rarer and the weight that had been needed against it made the
/// policy carry 1.15-1.3 x its demand throughout: at 100, 1.19-1.47 x the clairvoyant bound on the
/// built-in traces; at 50, 1.03-1.33 x, every trace within 0.7 % of events over the SLA; at 30,
/// 1.11-1.33 x. (Before the forecast peak, 30 left 2.8 % of flash-crowd's events over the SLA.)
pub const VIOLATION_WEIGHT: f64 = 50.0;

/// Reward of one decision interval under weights (alpha: cost, beta: latency), after the thesis's
/// global reward (3.1): minus alpha times the normalised cost (with the Redis hold booked when it is
/// chosen, see [`IntervalOutcome::committed_cost_usd`]), minus beta times the normalised latency
/// plus the share of events that violated the SLA. Cost is normalised by `cost_unit_usd`, what the
/// interval's arrivals cost on right-sized executors (see [`right_sized_cost`]), so the cost term
/// reads "times the necessary spend" on every trace and load level.
pub fn reward(out: &IntervalOutcome, alpha: f64, beta: f64, cost_unit_usd: f64, sla_ms: f64) -> f64 {
    let cost = out.committed_cost_usd / cost_unit_usd.max(1e-12);
    let latency = (out.mean_latency_ms / sla_ms).min(5.0) / 5.0;
    let events = out.events_processed.max(out.events_arrived).max(1.0);
    let violations = (out.events_violating / events).min(1.0);
    -(alpha * cost + beta * (latency + VIOLATION_WEIGHT * violations))
}

// The reference rule lives in `control`, so that scaling-decision can fall back to it when the model
// cannot load or run; the names stay here for the trainer's users.
pub use control::reference_rule::{
    executor_level, teacher_headroom, teacher_indices, TEACHER_BURST_HEADROOM, TEACHER_CAUTIOUS_RISK,
    TEACHER_QUIET_HEADROOM,
};

/// The longest episode drawn from a recorded trace, seconds: a window of this length at a random
/// start, so that a day- or week-long history gives many hour-long episodes, like the built-ins'.
pub const RECORDED_EPISODE_S: usize = 3_600;

/// The shortest recorded trace (after its held-out tail) training accepts, seconds: ten minutes is
/// 120 decisions, less than one burst and its aftermath on most shapes.
pub const MIN_RECORDED_S: usize = 600;

/// A trace to train on: a built-in shape, generated afresh for every episode's seed, or a recorded
/// history (a user's CSV), from which every episode takes a random window.
#[derive(Debug, Clone)]
pub enum TrainingTrace {
    Builtin(BuiltinTrace),
    Recorded(std::sync::Arc<Trace>),
}

impl TrainingTrace {
    /// The shapes the committed policy trains on ([`TRAINING_TRACES`]).
    pub fn defaults() -> Vec<TrainingTrace> {
        TRAINING_TRACES.iter().map(|&t| TrainingTrace::Builtin(t)).collect()
    }

    /// A recorded trace, refused if shorter than [`MIN_RECORDED_S`].
    pub fn recorded(trace: Trace) -> Result<TrainingTrace, crate::TrainError> {
        if trace.len() < MIN_RECORDED_S {
            return Err(crate::TrainError::Invalid(format!(
                "trace {} has {} s to train on; at least {MIN_RECORDED_S} s are needed",
                trace.name(),
                trace.len()
            )));
        }
        Ok(TrainingTrace::Recorded(std::sync::Arc::new(trace)))
    }

    pub fn name(&self) -> &str {
        match self {
            TrainingTrace::Builtin(t) => t.name(),
            TrainingTrace::Recorded(t) => t.name(),
        }
    }

    /// The trace of one episode: the built-in generated with `seed`, or a random window of the
    /// recording.
    fn episode(&self, seed: u64, rng: &mut Xoshiro256PlusPlus) -> Trace {
        match self {
            TrainingTrace::Builtin(kind) => traces::builtin(*kind, seed),
            TrainingTrace::Recorded(trace) => {
                let spare = trace.len().saturating_sub(RECORDED_EPISODE_S);
                let start = if spare == 0 { 0 } else { rng.random_range(0..=spare) };
                trace.window(start, RECORDED_EPISODE_S)
            }
        }
    }
}

/// One environment: a new episode on a random training trace, seed and scenario at every reset.
pub struct ScalingTrainEnv {
    arena: Arena,
    state: FeatureBuilder,
    episode: Option<Episode<'static>>,
    guardrails: ArenaGuardrails,
    weights: (f64, f64),
    scenario: usize,
    worker_usd_per_s: f64,
    traces: Vec<TrainingTrace>,
}

/// What `out`'s arrivals cost on right-sized executors: the CPU-bound executors the mean arrival rate
/// needs (at least one) at 16 GB, for the interval's seconds. One unit of cost in the reward.
pub fn right_sized_cost(
    out: &IntervalOutcome,
    state: &FeatureBuilder,
    bytes_per_event: f64,
    worker_usd_per_s: f64,
) -> f64 {
    let seconds = out.seconds.max(1) as f64;
    let need = (out.events_arrived / seconds / state.executor_rate(bytes_per_event)).max(1.0);
    need * worker_usd_per_s * seconds
}

impl ScalingTrainEnv {
    pub fn new(arena: Arena, traces: Vec<TrainingTrace>) -> Self {
        let worker =
            cost_model::WorkerSpec { vcpu: arena.config.vcpu_per_executor, memory_gb: 16.0, disk_gb: 20.0 };
        let worker_usd_per_s = arena.prices.emr_rate_per_second(&worker);
        let state = arena.feature_builder();
        let guardrails = ArenaGuardrails::without_backlog_net(arena.config.max_executors);
        Self {
            arena,
            state,
            episode: None,
            guardrails,
            weights: (0.33, 0.33),
            scenario: 0,
            worker_usd_per_s,
            traces,
        }
    }

    fn observation(&self) -> Option<Observation> {
        self.episode.as_ref().map(|e| {
            let mut obs = e.observe();
            obs.alpha = self.weights.0;
            obs.beta = self.weights.1;
            obs
        })
    }

    fn features(&self) -> Vec<f32> {
        match self.observation() {
            Some(obs) => self.state.features(&obs).to_vec(),
            None => vec![0.0; FEATURES],
        }
    }
}

impl DiscreteEnv for ScalingTrainEnv {
    fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
        let seed = rng.random::<u64>() | TRAINING_SEED_BIT;
        let pick = rng.random_range(0..self.traces.len());
        let trace: Trace = self.traces[pick].episode(seed, rng);
        self.scenario = rng.random_range(0..Scenario::ALL.len());
        let scenario = Scenario::ALL[self.scenario];
        // Half the episodes under the scenario's own weights, half under any the meta-controller can
        // send for it (a pair in the unit square, brought into the scenario's band as meta-weights
        // does). Trained on the four scenario pairs alone, the policy met the controller's other
        // weights out of distribution, and its cost and violations did not follow them in order: on
        // aws-elb (0, 1) cost less and missed more than (0, 0.75) (`weight_response`,
        // `models/meta-td3.md`).
        self.weights = if rng.random_bool(0.5) {
            let [a, b, _] = scenario.weights();
            (a, b)
        } else {
            scenario.bounded_weights(rng.random::<f64>(), rng.random::<f64>())
        };
        self.episode = Episode::owned(self.arena.clone(), trace, seed).ok();
        self.guardrails = ArenaGuardrails::without_backlog_net(self.arena.config.max_executors);
        self.features()
    }

    fn step(&mut self, action: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool) {
        let indices = [action[0] as i64, action[1] as i64, action[2] as i64, action[3] as i64];
        let Some(obs) = self.observation() else {
            return (self.reset(rng), 0.0, true);
        };
        let Ok(proposed) = self.state.action(indices, &obs) else {
            return (self.reset(rng), 0.0, true);
        };
        let act = self.guardrails.apply(proposed, &obs);
        let Some(episode) = self.episode.as_mut() else {
            return (self.reset(rng), 0.0, true);
        };
        let out = episode.advance(act, None);
        let unit = right_sized_cost(&out, &self.state, obs.bytes_per_event, self.worker_usd_per_s);
        let r = reward(&out, self.weights.0, self.weights.1, unit, self.arena.config.sla_ms);
        let done = episode.done();
        (self.features(), r as f32, done)
    }

    /// The scenario whose weights score the episode. Their rewards differ several times in scale (smart
    /// city's are mostly cost, healthcare's mostly rare violations); under one shared scale the policy
    /// learned one behaviour for all four and ignored its weights.
    fn regime(&self) -> usize {
        self.scenario
    }

    fn teacher(&self) -> Option<Vec<usize>> {
        self.observation().map(|obs| teacher_indices(&obs).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_rule_picks_its_levels() {
        assert_eq!(control::EXECUTOR_HEADROOM[executor_level(1.0)], 1.0);
        assert_eq!(control::EXECUTOR_HEADROOM[executor_level(1.2)], 1.2);
        assert_eq!(control::EXECUTOR_HEADROOM[executor_level(1.17)], 1.2);
        assert_eq!(executor_level(9.0), control::EXECUTOR_HEADROOM.len() - 1);
        let arena = Arena::embedded();
        let trace = traces::builtin(BuiltinTrace::StepBurst, 3);
        let episode = Episode::new(&arena, &trace, 3).expect("episode");
        let mut obs = episode.observe();
        obs.burst_signal = true;
        (obs.alpha, obs.beta) = (0.33, 0.33);
        let [level, memory, tier, codec] = teacher_indices(&obs);
        assert_eq!(control::EXECUTOR_HEADROOM[level], 1.2);
        assert_eq!(memory, 1);
        assert_eq!(latency_model::Tier::CHOICES[tier], latency_model::Tier::Nvme);
        assert_eq!(latency_model::Compression::CHOICES[codec], latency_model::Compression::None);
    }

    #[test]
    fn the_reference_rule_carries_more_headroom_as_latency_weighs_more() {
        let level = |alpha, beta, burst| {
            control::EXECUTOR_HEADROOM[executor_level(teacher_headroom(alpha, beta, burst))]
        };
        // The four scenarios' weights (control::Scenario::weights): smart city, balanced, industrial, healthcare.
        let burst: Vec<f64> = [(0.9, 0.05), (0.33, 0.33), (0.2, 0.3), (0.1, 0.8)]
            .iter()
            .map(|&(a, b)| level(a, b, true))
            .collect();
        assert_eq!(burst, vec![1.05, 1.2, 1.3, 1.6]);
        let quiet: Vec<f64> = [(0.9, 0.05), (0.33, 0.33), (0.2, 0.3), (0.1, 0.8)]
            .iter()
            .map(|&(a, b)| level(a, b, false))
            .collect();
        assert_eq!(quiet, vec![0.95, 0.95, 0.95, 1.0]);
        assert_eq!(teacher_headroom(0.0, 0.0, true), 1.2, "no weights read as balanced");
        assert_eq!(teacher_headroom(0.0, 1.0, true), 1.6);
    }
}
