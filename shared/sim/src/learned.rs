//! Learned policies in the arenas, run through the same `policy` crate the functions use.

use crate::realistic::{Arena, EpisodeInfo, Policy};
use crate::seed_compat::SeedPolicy;
use control::{
    plan_prewarm, GuardrailConfig, GuardrailContext, Guardrails, LoadForecaster, LoadSample, MetaContext,
    Observation, ScalingAction, Scenario, DEFAULT_BYTES_PER_EVENT, PREWARM_HISTORY, PREWARM_UTILISATION,
};
use cost_model::WorkerSpec;
use policy::{MetaPolicy, ScalingPolicy, SeedCompatPolicy};

/// Utilisation at which a run's budget is sized (see [`episode_budget`]).
pub const BUDGET_UTILISATION: f64 = 0.7;
/// Seconds between two meta-controller decisions: the meta-weights schedule (template.yaml and
/// stack.yml: every 5 minutes).
pub const META_EVERY_S: usize = 300;
/// Scaling decisions a meta-controller decision looks back over (the meta-weights function reads the
/// last 60 decision records: 5 minutes at one decision per 5 s).
pub const META_RECENT_DECISIONS: usize = 60;
/// Seconds between two prewarm decisions: the prewarmer schedule (every minute).
pub const PREWARM_EVERY_S: usize = 60;

/// Spend a live system estimates from what it observes: each decision's running executors at their
/// price, for the seconds since the one before. The replay sends it to meta-weights as the budget
/// feed's `budget_remaining`; the tournament's `rl-meta` and the meta-controller's training use it
/// directly.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpendEstimate {
    pub spent_usd: f64,
    last_time_s: Option<f64>,
    last_rate: f64,
}

impl SpendEstimate {
    /// Account the seconds since the previous observation at the previous observation's rate, and
    /// remember this one's. Returns the spend so far.
    pub fn observe(&mut self, arena: &Arena, obs: &Observation) -> f64 {
        if let Some(last) = self.last_time_s {
            self.spent_usd += self.last_rate * (obs.time_s - last).max(0.0);
        }
        self.last_time_s = Some(obs.time_s);
        self.last_rate = observed_cost_rate(arena, obs);
        self.spent_usd
    }
}

/// The recent decisions' violation share and spend rate, as meta-weights computes them from its
/// decision log: the last [`META_RECENT_DECISIONS`].
#[derive(Debug, Clone, Default)]
pub struct RecentDecisions {
    /// (latency over the SLA, spend rate $/s), oldest first.
    window: std::collections::VecDeque<(bool, f64)>,
}

impl RecentDecisions {
    pub fn push(&mut self, arena: &Arena, obs: &Observation) {
        if self.window.len() == META_RECENT_DECISIONS {
            self.window.pop_front();
        }
        self.window.push_back((obs.latency_ms > obs.sla_ms, observed_cost_rate(arena, obs)));
    }

    /// (share of decisions over the SLA, mean spend rate $/s); zeros before the first decision.
    pub fn summary(&self) -> (f64, f64) {
        control::recent_summary(self.window.iter().copied())
    }

    pub fn clear(&mut self) {
        self.window.clear();
    }
}

/// A run's budget: what 16 GB executors sized for the trace's mean load at 70 % utilisation cost over
/// `seconds`.
pub fn episode_budget(arena: &Arena, info: &EpisodeInfo, seconds: f64) -> f64 {
    let executors = (info.mean_load / (info.nominal_executor_rate * BUDGET_UTILISATION)).ceil().max(1.0);
    let worker = WorkerSpec { vcpu: info.vcpu_per_executor, memory_gb: 16.0, disk_gb: 20.0 };
    executors * arena.prices.emr_rate_per_second(&worker) * seconds
}

/// Spend rate a live system can estimate from what it observes: running executors at their price.
pub fn observed_cost_rate(arena: &Arena, obs: &Observation) -> f64 {
    let worker = WorkerSpec {
        vcpu: arena.config.vcpu_per_executor,
        memory_gb: obs.current.memory_gb as f64,
        disk_gb: 20.0,
    };
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
/// is judged (and deployed) under: all but the backlog safety net, which training leaves out
/// ([`ArenaGuardrails::without_backlog_net`]).
#[derive(Debug, Clone)]
pub struct ArenaGuardrails {
    guardrails: Guardrails,
    last_scale_up_s: Option<f64>,
    step_window: Option<control::StepWindow>,
}

impl ArenaGuardrails {
    pub fn new(max_executors: u32) -> Self {
        Self::with(GuardrailConfig { max_executors: max_executors.max(1), ..GuardrailConfig::default() })
    }

    /// The guardrails of an episode: the arena's maximum, backlog safety net and cooldown.
    pub fn for_episode(info: &EpisodeInfo) -> Self {
        Self::with(GuardrailConfig {
            max_executors: info.max_executors.max(1),
            backlog_drain_s: info.backlog_drain_s,
            cooldown_s: info.cooldown_s,
            ..GuardrailConfig::default()
        })
    }

    /// The same limits without the backlog safety net ([`GuardrailConfig::backlog_drain_s`]), for
    /// training. The net is for loads beyond what a policy learnt; trained under it, a policy is
    /// rescued from the backlogs its own under-provisioning builds and pays for them less, so it
    /// learns to lean on a rule meant as the last resort.
    pub fn without_backlog_net(max_executors: u32) -> Self {
        Self::with(GuardrailConfig {
            max_executors: max_executors.max(1),
            backlog_drain_s: 0.0,
            ..GuardrailConfig::default()
        })
    }

    fn with(config: GuardrailConfig) -> Self {
        Self {
            guardrails: Guardrails::new(config)
                .expect("default guardrails with a maximum of at least one are valid"),
            last_scale_up_s: None,
            step_window: None,
        }
    }

    /// The action to apply for `proposed` at observation `obs`.
    pub fn apply(&mut self, proposed: ScalingAction, obs: &Observation) -> ScalingAction {
        // No spend cap in the arena, so the executor price does not matter here.
        let ctx = GuardrailContext {
            now_s: obs.time_s,
            last_scale_up_s: self.last_scale_up_s,
            burst: obs.burst_signal,
            usd_per_executor_hour: 0.0,
            step_window: self.step_window,
            throughput: obs.into(),
        };
        let (action, _) = self.guardrails.apply(proposed, &obs.current, &ctx);
        self.step_window = Some(control::StepWindow::after(
            self.step_window,
            &obs.current,
            obs.time_s,
            self.guardrails.config(),
        ));
        self.last_scale_up_s =
            control::scale_up_time(self.last_scale_up_s, &obs.current, &action, obs.time_s);
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
        Self {
            name: name.to_string(),
            model,
            max_executors: 64,
            guardrails: ArenaGuardrails::new(64),
            error: None,
        }
    }
}

impl Policy for RlScaling {
    fn name(&self) -> &str {
        &self.name
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.max_executors = info.max_executors;
        self.guardrails = ArenaGuardrails::for_episode(info);
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

/// The reference rule the scaling policy is warm-started from and held near
/// (`control::reference_rule`), decided through the same [`FeatureBuilder`] and guardrails as
/// [`RlScaling`]: the scaling-decision function's fallback when its model cannot load or run, and
/// the baseline that shows what training added.
pub struct RuleScaling {
    state: control::FeatureBuilder,
    max_executors: u32,
    guardrails: ArenaGuardrails,
}

impl RuleScaling {
    pub fn new(arena: &Arena) -> Self {
        Self { state: arena.feature_builder(), max_executors: 64, guardrails: ArenaGuardrails::new(64) }
    }
}

impl Policy for RuleScaling {
    fn name(&self) -> &str {
        "rule"
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.max_executors = info.max_executors;
        self.guardrails = ArenaGuardrails::for_episode(info);
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let proposed = control::reference_rule::reference_action(&self.state, obs)
            .unwrap_or(ScalingAction { executors: self.max_executors, ..obs.current });
        self.guardrails.apply(proposed, obs)
    }
}

/// The meta-controller choosing the scaling policy's weights, as the meta-weights function does: on
/// its schedule ([`META_EVERY_S`]), from the scenario, the budget left after the estimated spend, and
/// the last [`META_RECENT_DECISIONS`] decisions.
pub struct RlMeta {
    name: String,
    meta: MetaPolicy,
    scaling: RlScaling,
    arena: Arena,
    scenario: Scenario,
    ctx: MetaContext,
    weights: (f64, f64),
    spend: SpendEstimate,
    recent: RecentDecisions,
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
            spend: SpendEstimate::default(),
            recent: RecentDecisions::default(),
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
        self.ctx = MetaContext {
            scenario: self.scenario,
            budget_usd: episode_budget(&self.arena, info, info.duration_s),
            horizon_s: info.duration_s,
        };
        let [a, b, _] = self.scenario.weights();
        self.weights = (a, b);
        self.spend = SpendEstimate::default();
        self.recent.clear();
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let spent = self.spend.observe(&self.arena, obs);
        if (obs.time_s as usize).is_multiple_of(META_EVERY_S) {
            let (violations, cost_rate) = self.recent.summary();
            if let Ok((a, b)) = self.meta.weights(&self.ctx.features(spent, violations, cost_rate)) {
                self.weights = self.scenario.bounded_weights(a, b);
            }
        }
        self.recent.push(&self.arena, obs);
        let mut obs = *obs;
        obs.alpha = self.weights.0;
        obs.beta = self.weights.1;
        self.scaling.decide(&obs)
    }
}

/// A policy with the prewarmer beside it, as deployed: every [`PREWARM_EVERY_S`] the prewarm plan
/// (`control::plan_prewarm`, the prewarmer function's code) sets the warm workers from the load
/// history, within the maximum capacity then in force.
pub struct Prewarmed<P> {
    inner: P,
    forecaster: LoadForecaster,
    history: std::collections::VecDeque<LoadSample>,
    executor_rate: f64,
    max_prewarm: u32,
    warm: u32,
}

impl<P: Policy> Prewarmed<P> {
    pub fn new(inner: P, arena: &Arena) -> Self {
        Self {
            inner,
            forecaster: LoadForecaster::default(),
            history: std::collections::VecDeque::new(),
            executor_rate: arena.feature_builder().executor_rate(DEFAULT_BYTES_PER_EVENT),
            max_prewarm: GuardrailConfig::default().max_prewarm,
            warm: 0,
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: Policy> Policy for Prewarmed<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.inner.reset(info);
        self.history.clear();
        self.warm = 0;
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        if (obs.time_s as usize).is_multiple_of(PREWARM_EVERY_S) {
            // The history holds the decisions before this one: the prewarmer runs before
            // scaling-decision records the interval's metrics.
            let samples: Vec<LoadSample> = self.history.iter().copied().collect();
            let plan = plan_prewarm(
                &self.forecaster,
                &samples,
                self.executor_rate,
                PREWARM_UTILISATION,
                self.max_prewarm,
            );
            // As the function: an unchanged plan leaves the application alone; a new one is bounded
            // by the maximum capacity in force.
            if plan.workers != self.warm {
                self.warm = plan.workers.min(obs.current.executors);
            }
        }
        if self.history.len() == PREWARM_HISTORY {
            self.history.pop_front();
        }
        self.history
            .push_back(LoadSample { time_s: crate::edge::EPOCH_S + obs.time_s, rate: obs.input_rate });
        let mut action = self.inner.decide(obs);
        action.prewarm = self.warm;
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Episode;

    #[test]
    fn spend_accounts_elapsed_seconds_at_the_previous_rate_once() {
        let arena = Arena::embedded();
        let trace = traces::resolve("step-burst", 1).unwrap();
        let mut episode = Episode::new(&arena, &trace, 1).unwrap();
        let mut spend = SpendEstimate::default();
        let first = episode.observe();
        assert_eq!(spend.observe(&arena, &first), 0.0);
        // The same decision point seen twice (the meta environment does) adds nothing.
        assert_eq!(spend.observe(&arena, &first), 0.0);
        episode.advance(first.current, None);
        let next = episode.observe();
        let want = observed_cost_rate(&arena, &first) * (next.time_s - first.time_s);
        assert!((spend.observe(&arena, &next) - want).abs() < 1e-12);
    }

    #[test]
    fn the_episode_sets_the_cooldown_the_function_would_run() {
        let arena = Arena::embedded();
        let trace = traces::resolve("step-burst", 1).unwrap();
        let episode = Episode::new(&arena, &trace, 1).unwrap();
        let mut obs = episode.observe();
        let start = obs.current.executors;
        let up = ScalingAction { executors: start + 4, ..obs.current };
        let down = ScalingAction { executors: start, ..obs.current };
        for (cooldown_s, held) in [(60.0, true), (0.0, false)] {
            let info = EpisodeInfo { cooldown_s, ..arena.episode_info(&trace, 1) };
            let mut guard = ArenaGuardrails::for_episode(&info);
            obs.time_s = 100.0;
            obs.current = guard.apply(up, &obs);
            assert_eq!(obs.current.executors, start + 4);
            obs.time_s = 110.0;
            let after = guard.apply(down, &obs);
            let want = if held { start + 4 } else { start };
            assert_eq!(after.executors, want, "cooldown {cooldown_s} s");
        }
    }

    #[test]
    fn recent_decisions_keep_the_meta_functions_window() {
        let arena = Arena::embedded();
        let trace = traces::resolve("step-burst", 1).unwrap();
        let episode = Episode::new(&arena, &trace, 1).unwrap();
        let mut recent = RecentDecisions::default();
        assert_eq!(recent.summary(), (0.0, 0.0));
        let mut obs = episode.observe();
        obs.latency_ms = obs.sla_ms * 2.0;
        for _ in 0..10 {
            recent.push(&arena, &obs);
        }
        obs.latency_ms = 0.0;
        for _ in 0..META_RECENT_DECISIONS {
            recent.push(&arena, &obs);
        }
        // The slow decisions have left the window.
        assert_eq!(recent.summary().0, 0.0);
        assert!((recent.summary().1 - observed_cost_rate(&arena, &obs)).abs() < 1e-12);
    }
}
