//! The meta-controller's training environment: the realistic arena with the trained scaling policy
//! (through tract, as deployed) in the loop. Every meta step lasts [`META_EVERY_S`], the meta-weights
//! schedule, and sees what that function sees: the budget left after the estimated spend and the
//! last decisions' violations and spend rate ([`SpendEstimate`], [`RecentDecisions`]). The meta action
//! is the (alpha, beta) the scaling policy sees meanwhile.

use crate::scaling_env::TRAINING_TRACES;
use crate::seed_env::TRAINING_SEED_BIT;
use crate::td3::ContinuousEnv;
use control::{MetaContext, Scenario, META_FEATURES};
use policy::ScalingPolicy;
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use sim::learned::{episode_budget, ArenaGuardrails, RecentDecisions, SpendEstimate, META_EVERY_S};
use sim::{Arena, Episode};

/// Cost of 16 executors of 16 GB for one second: the meta reward's unit of cost.
pub fn cost_reference_per_s(arena: &Arena) -> f64 {
    let worker = cost_model::WorkerSpec { vcpu: arena.config.vcpu_per_executor, memory_gb: 16.0, disk_gb: 20.0 };
    16.0 * arena.prices.emr_rate_per_second(&worker)
}

/// The scenario's own objective for one meta step: its weights on cost and on SLA violations.
pub fn meta_reward(scenario: Scenario, cost_n: f64, violation_share: f64, overspend_share: f64) -> f64 {
    let [alpha, beta, _] = scenario.weights();
    -(alpha * cost_n + beta * 5.0 * violation_share) - overspend_share
}

pub struct MetaTrainEnv {
    arena: Arena,
    scaling: ScalingPolicy,
    episode: Option<Episode<'static>>,
    guardrails: ArenaGuardrails,
    ctx: MetaContext,
    spent: f64,
    /// Spend as the live system estimates it (what the features show).
    spend: SpendEstimate,
    recent: RecentDecisions,
    cost_ref_per_s: f64,
}

impl MetaTrainEnv {
    pub fn new(arena: Arena, scaling: ScalingPolicy) -> Self {
        let cost_ref_per_s = cost_reference_per_s(&arena);
        Self {
            guardrails: ArenaGuardrails::new(arena.config.max_executors),
            arena,
            scaling,
            episode: None,
            ctx: MetaContext { scenario: Scenario::Balanced, budget_usd: 1.0, horizon_s: 1.0 },
            spent: 0.0,
            spend: SpendEstimate::default(),
            recent: RecentDecisions::default(),
            cost_ref_per_s,
        }
    }

    fn features(&mut self) -> Vec<f32> {
        // Observing the episode's next decision point here and again in the next step changes
        // nothing: the estimate accounts elapsed seconds only.
        let spent = match &self.episode {
            Some(e) if !e.done() => self.spend.observe(&self.arena, &e.observe()),
            _ => self.spend.spent_usd,
        };
        let (violations, cost_rate) = self.recent.summary();
        self.ctx.features(spent, violations, cost_rate).to_vec()
    }
}

impl ContinuousEnv for MetaTrainEnv {
    fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
        let seed = rng.random::<u64>() | TRAINING_SEED_BIT;
        let kind = TRAINING_TRACES[rng.random_range(0..TRAINING_TRACES.len())];
        let trace = traces::builtin(kind, seed);
        let info = self.arena.episode_info(&trace, seed);
        let seconds = info.duration_s;
        let scenario = Scenario::ALL[rng.random_range(0..4)];
        self.ctx = MetaContext { scenario, budget_usd: episode_budget(&self.arena, &info, seconds), horizon_s: seconds };
        self.spent = 0.0;
        self.spend = SpendEstimate::default();
        self.recent.clear();
        self.episode = Episode::owned(self.arena.clone(), trace, seed).ok();
        self.guardrails = ArenaGuardrails::new(self.arena.config.max_executors);
        self.features()
    }

    fn step(&mut self, action: &[f32], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool) {
        let Some(episode) = self.episode.as_mut() else {
            return (self.reset(rng), 0.0, true);
        };
        let (alpha, beta) = (action[0].clamp(0.0, 1.0) as f64, action[1].clamp(0.0, 1.0) as f64);
        let (mut cost, mut seconds, mut violating, mut events) = (0.0, 0.0, 0.0, 0.0);
        let decisions = (META_EVERY_S / self.arena.config.decision_interval_s.max(1)).max(1);
        for _ in 0..decisions {
            if episode.done() {
                break;
            }
            let mut obs = episode.observe();
            self.spend.observe(&self.arena, &obs);
            self.recent.push(&self.arena, &obs);
            obs.alpha = alpha;
            obs.beta = beta;
            let proposed = self.scaling.decide(&obs).unwrap_or(obs.current);
            let act = self.guardrails.apply(proposed, &obs);
            let out = episode.advance(act, None);
            cost += out.cost_usd;
            seconds += out.seconds as f64;
            violating += out.events_violating;
            events += out.events_processed.max(out.events_arrived);
        }
        let before = self.spent;
        self.spent += cost;
        let overspend = ((self.spent - self.ctx.budget_usd.max(before)).max(0.0)) / self.ctx.budget_usd.max(1e-9);
        let cost_n = cost / (self.cost_ref_per_s * seconds.max(1.0));
        let share = if events > 0.0 { violating / events } else { 0.0 };
        let reward = meta_reward(self.ctx.scenario, cost_n, share, overspend);
        let done = episode.done();
        (self.features(), reward as f32, done)
    }
}

/// Number of meta features (for the exported model's input).
pub const INPUTS: usize = META_FEATURES;
