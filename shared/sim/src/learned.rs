//! Learned policies in the arenas, run through the same `policy` crate (tract) the functions use.

use crate::realistic::{Arena, EpisodeInfo, Policy};
use crate::seed_compat::SeedPolicy;
use control::{GuardrailConfig, GuardrailContext, Guardrails, MetaContext, Observation, ScalingAction, Scenario};
use cost_model::WorkerSpec;
use policy::{MetaPolicy, ScalingPolicy, SeedCompatPolicy};

/// Utilisation at which a run's budget is sized (see [`episode_budget`]).
pub const BUDGET_UTILISATION: f64 = 0.7;
/// Scaling decisions between two meta-controller decisions (12 x 5 s = one minute).
pub const META_INTERVAL_DECISIONS: usize = 12;

/// A run's budget: what 16 GB executors sized for the trace's mean load at 70 % utilisation cost over
/// `seconds`.
pub fn episode_budget(arena: &Arena, info: &EpisodeInfo, seconds: f64) -> f64 {
    let executors = (info.mean_load / (info.nominal_executor_rate * BUDGET_UTILISATION)).ceil().max(1.0);
    let worker = WorkerSpec { vcpu: info.vcpu_per_executor, memory_gb: 16.0, disk_gb: 20.0 };
    executors * arena.prices.emr_rate_per_second(&worker) * seconds
}

/// Spend rate a live system can estimate from what it observes: running executors at their price.
pub fn observed_cost_rate(arena: &Arena, obs: &Observation) -> f64 {
    let worker = WorkerSpec { vcpu: arena.config.vcpu_per_executor, memory_gb: obs.current.memory_gb as f64, disk_gb: 20.0 };
    obs.running_executors as f64 * arena.prices.emr_rate_per_second(&worker)
}

/// The seed-compat PPO model as a seed-compat contender.
pub struct RlSeed {
    model: SeedCompatPolicy,
    /// First inference error, if any (the action then falls back to the largest deployment).
    pub error: Option<String>,
}

impl RlSeed {
    pub fn new(model: SeedCompatPolicy) -> Self {
        Self { model, error: None }
    }
}

impl SeedPolicy for RlSeed {
    fn name(&self) -> &str {
        "rl"
    }
    fn act(&mut self, obs: &[f64; 13]) -> [usize; 4] {
        match self.model.act(obs) {
            Ok(a) => a,
            Err(e) => {
                self.error.get_or_insert(e.to_string());
                [19, 7, 0, 0]
            }
        }
    }
}

/// The guardrails a learned scaling policy runs under in the arena: the scaling-decision function's
/// defaults with the arena's maximum, and the time of the last executor change for the cooldown.
/// The tournament and the trainer both go through here, so a policy is trained under the limits it
/// is judged (and deployed) under.
#[derive(Debug, Clone)]
pub struct ArenaGuardrails {
    guardrails: Guardrails,
    last_change_s: Option<f64>,
}

impl ArenaGuardrails {
    pub fn new(max_executors: u32) -> Self {
        let config = GuardrailConfig { max_executors: max_executors.max(1), ..GuardrailConfig::default() };
        Self { guardrails: Guardrails::new(config).expect("default guardrails with a maximum of at least one are valid"), last_change_s: None }
    }

    /// The action to apply for `proposed` at observation `obs`.
    pub fn apply(&mut self, proposed: ScalingAction, obs: &Observation) -> ScalingAction {
        // No spend cap in the arena, so the executor price does not matter here.
        let ctx = GuardrailContext { now_s: obs.time_s, last_change_s: self.last_change_s, burst: obs.burst_signal, usd_per_executor_hour: 0.0 };
        let (action, _) = self.guardrails.apply(proposed, &obs.current, &ctx);
        if action.executors != obs.current.executors {
            self.last_change_s = Some(obs.time_s);
        }
        action
    }
}

/// The scaling PPO model with fixed reward weights (the arena's alpha and beta), bounded by the same
/// [`Guardrails`] the scaling-decision function applies (default limits, the arena's maximum).
pub struct RlScaling {
    name: String,
    model: ScalingPolicy,
    max_executors: u32,
    guardrails: ArenaGuardrails,
    pub error: Option<String>,
}

impl RlScaling {
    pub fn new(name: &str, model: ScalingPolicy) -> Self {
        Self { name: name.to_string(), model, max_executors: 64, guardrails: ArenaGuardrails::new(64), error: None }
    }
}

impl Policy for RlScaling {
    fn name(&self) -> &str {
        &self.name
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.max_executors = info.max_executors;
        self.guardrails = ArenaGuardrails::new(info.max_executors);
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let proposed = match self.model.decide(obs) {
            Ok(a) => a,
            Err(e) => {
                self.error.get_or_insert(e.to_string());
                ScalingAction { executors: self.max_executors, ..obs.current }
            }
        };
        self.guardrails.apply(proposed, obs)
    }
}

/// The meta-controller choosing the scaling policy's weights every minute, for a scenario and a budget.
pub struct RlMeta {
    name: String,
    meta: MetaPolicy,
    scaling: RlScaling,
    arena: Arena,
    scenario: Scenario,
    ctx: MetaContext,
    weights: (f64, f64),
    decisions: usize,
    spent: f64,
    last_time: f64,
    slow: usize,
    observed_cost: f64,
}

impl RlMeta {
    pub fn new(meta: MetaPolicy, scaling: ScalingPolicy, arena: Arena, scenario: Scenario) -> Self {
        let [a, b, _] = scenario.weights();
        Self {
            name: "rl-meta".into(),
            meta,
            scaling: RlScaling::new("rl-meta", scaling),
            arena,
            scenario,
            ctx: MetaContext { scenario, budget_usd: 1.0, horizon_s: 1.0 },
            weights: (a, b),
            decisions: 0,
            spent: 0.0,
            last_time: 0.0,
            slow: 0,
            observed_cost: 0.0,
        }
    }

    /// The weights in force.
    pub fn weights(&self) -> (f64, f64) {
        self.weights
    }
}

impl Policy for RlMeta {
    fn name(&self) -> &str {
        &self.name
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.scaling.reset(info);
        self.ctx = MetaContext { scenario: self.scenario, budget_usd: episode_budget(&self.arena, info, info.duration_s), horizon_s: info.duration_s };
        self.decisions = 0;
        self.spent = 0.0;
        self.last_time = 0.0;
        self.slow = 0;
        self.observed_cost = 0.0;
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let rate = observed_cost_rate(&self.arena, obs);
        // Spend so far, as the live system estimates it from running executors.
        self.spent += rate * (obs.time_s - self.last_time).max(0.0);
        self.last_time = obs.time_s;
        if self.decisions.is_multiple_of(META_INTERVAL_DECISIONS) {
            let n = self.decisions.clamp(1, META_INTERVAL_DECISIONS) as f64;
            let features = self.ctx.features(self.spent, self.slow as f64 / n, self.observed_cost / n);
            if let Ok(w) = self.meta.weights(&features) {
                self.weights = w;
            }
            self.slow = 0;
            self.observed_cost = 0.0;
        }
        self.decisions += 1;
        self.slow += (obs.latency_ms > obs.sla_ms) as usize;
        self.observed_cost += rate;
        let mut obs = *obs;
        obs.alpha = self.weights.0;
        obs.beta = self.weights.1;
        self.scaling.decide(&obs)
    }
}
