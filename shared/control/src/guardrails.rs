//! Guardrails: hard limits that override whatever the policy proposes. A learned policy is trusted
//! for the shape of a decision, never for its bounds: the operator's minimum and maximum workers, a
//! spend cap, a cooldown against flapping and a largest step per decision are always enforced here,
//! in the simulator and in the scaling-decision function alike.
//!
//! One rule works the other way: the backlog safety net raises a proposal that leaves a growing
//! backlog undrained. A policy is trained on a range of loads; a spike beyond anything it saw (a 30x
//! flash crowd) can get a proposal far below what the input needs, and the net is what holds the SLA
//! then, from the job's own rates rather than from a model.

use crate::{ControlError, Observation, ScalingAction};
use serde::{Deserialize, Serialize};

/// Limits applied to every scaling decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardrailConfig {
    /// Fewest executors ever asked for.
    pub min_executors: u32,
    /// Most executors ever asked for.
    pub max_executors: u32,
    /// Largest change in executors within any [`step_window_s`](Self::step_window_s), up or down.
    pub max_step: u32,
    /// The time the step limit holds over. Decisions come from metrics, burst events and a schedule,
    /// so a limit per decision would let a flurry of them (or one burst event delivered three times)
    /// take several steps in a few seconds. The default is the arena's decision interval, where a
    /// limit per window and one per decision are the same thing.
    pub step_window_s: f64,
    /// Seconds after the last scale-up during which a scale-down is refused; a scale-up is never held
    /// back. EMR Serverless bills every worker for at least a minute, so releasing one younger than
    /// that saves nothing and only risks asking for it again. The clock starts at scale-ups alone: when
    /// it also restarted at every scale-down, a falling or noisy load could step down only once a
    /// minute, and the 1.0 x demand rule paid 1.18 x the clairvoyant bound on step-burst instead of
    /// 1.11 x, with the same events over the SLA (`models/scaling-ppo.md`, "History and ablations",
    /// change 6).
    pub cooldown_s: f64,
    /// Most dollars per hour the executors may cost; `None` for no cap.
    pub max_usd_per_hour: Option<f64>,
    /// Most pre-initialised workers.
    pub max_prewarm: u32,
    /// The backlog safety net: once the backlog grows (input above processing) and holds more than
    /// half the SLA's worth of processing, a proposal is raised to the executors that keep up with
    /// the input and clear the backlog within this many seconds, at the per-executor rate the job
    /// is processing at now. 0, the default, turns the net off: on the built-in traces it bought
    /// fewer events over the SLA only on step-burst, for 2-3.5 % more cost on the bursty ones
    /// (README, "The backlog safety net"); 30 is the setting measured there.
    pub backlog_drain_s: f64,
}

impl Default for GuardrailConfig {
    fn default() -> Self {
        Self {
            min_executors: 1,
            max_executors: 64,
            max_step: 16,
            step_window_s: 5.0,
            cooldown_s: 60.0,
            max_usd_per_hour: None,
            max_prewarm: 16,
            backlog_drain_s: 0.0,
        }
    }
}

impl GuardrailConfig {
    pub fn validate(&self) -> Result<(), ControlError> {
        let bad = |m: String| Err(ControlError::Guardrail(m));
        if self.min_executors == 0 {
            return bad("min_executors must be at least 1".into());
        }
        if self.min_executors > self.max_executors {
            return bad(format!(
                "min_executors {} above max_executors {}",
                self.min_executors, self.max_executors
            ));
        }
        if self.max_step == 0 {
            return bad("max_step must be at least 1".into());
        }
        if !(self.step_window_s.is_finite() && self.step_window_s >= 0.0) {
            return bad(format!("step_window_s {} must be a non-negative number", self.step_window_s));
        }
        if !(self.cooldown_s.is_finite() && self.cooldown_s >= 0.0) {
            return bad(format!("cooldown_s {} must be a non-negative number", self.cooldown_s));
        }
        if !(self.backlog_drain_s.is_finite() && self.backlog_drain_s >= 0.0) {
            return bad(format!(
                "backlog_drain_s {} must be a non-negative number (0 turns the backlog net off)",
                self.backlog_drain_s
            ));
        }
        if let Some(cap) = self.max_usd_per_hour {
            if !(cap.is_finite() && cap > 0.0) {
                return bad(format!("max_usd_per_hour {cap} must be positive"));
            }
        }
        Ok(())
    }
}

/// Which guardrail changed a decision, and from what to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailChange {
    pub rule: GuardrailRule,
    pub field: String,
    pub proposed: u32,
    pub applied: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailRule {
    MinExecutors,
    MaxExecutors,
    MaxStep,
    Cooldown,
    BudgetCap,
    MaxPrewarm,
    /// The backlog safety net raised the executors ([`GuardrailConfig::backlog_drain_s`]).
    Backlog,
}

/// What the guardrails need to know beyond the proposal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardrailContext {
    /// Now, in seconds (any fixed origin).
    pub now_s: f64,
    /// When the executor count was last raised, if ever (see [`scale_up_time`]).
    pub last_scale_up_s: Option<f64>,
    /// The burst signal in force.
    pub burst: bool,
    /// Dollars per hour one executor of the proposed memory costs.
    pub usd_per_executor_hour: f64,
    /// The step window in force before this decision, if any (see [`StepWindow::after`]).
    pub step_window: Option<StepWindow>,
    /// The job's queue and rates, for the backlog safety net.
    pub throughput: Throughput,
}

/// The job's queue and rates over the last interval, as the backlog safety net reads them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Throughput {
    /// Events waiting.
    pub backlog_events: f64,
    /// Events arriving per second.
    pub input_rate: f64,
    /// Events processed per second.
    pub processing_rate: f64,
    /// Executors that did that processing.
    pub running_executors: u32,
    /// The SLA, seconds.
    pub sla_s: f64,
}

impl From<&Observation> for Throughput {
    fn from(obs: &Observation) -> Self {
        Self {
            backlog_events: obs.backlog_events,
            input_rate: obs.input_rate,
            processing_rate: obs.processing_rate,
            running_executors: obs.running_executors,
            sla_s: obs.sla_ms / 1_000.0,
        }
    }
}

impl Throughput {
    /// The executors that keep up with the input and clear the backlog within `drain_s`, when the
    /// backlog is growing and already holds more than half the SLA's worth of processing; `None`
    /// otherwise, or when the rates cannot tell (nothing running or processed, numbers that are
    /// not numbers).
    pub fn executors_to_drain(&self, drain_s: f64) -> Option<u32> {
        let t = self;
        let numbers = [t.backlog_events, t.input_rate, t.processing_rate, t.sla_s, drain_s];
        if !numbers.iter().all(|x| x.is_finite() && *x >= 0.0) || drain_s == 0.0 {
            return None;
        }
        if t.running_executors == 0 || t.processing_rate <= 0.0 {
            return None;
        }
        let growing = t.input_rate > t.processing_rate;
        let deep = t.backlog_events > t.processing_rate * 0.5 * t.sla_s;
        if !(growing && deep) {
            return None;
        }
        let per_executor = t.processing_rate / t.running_executors as f64;
        let need = (t.input_rate + t.backlog_events / drain_s) / per_executor;
        Some(need.ceil().min(u32::MAX as f64) as u32)
    }
}

/// Where the step limit counts from: the executors in force when the window opened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepWindow {
    pub start_s: f64,
    pub executors: u32,
}

impl StepWindow {
    /// Whether the window still holds at `now_s`. One opened in the future (a clock that jumped back,
    /// or a bad stored value) does not: nothing may pin the limit.
    fn open_at(&self, now_s: f64, window_s: f64) -> bool {
        self.start_s <= now_s && now_s - self.start_s < window_s
    }

    /// The window in force once a decision at `now_s` replaces `current`: the same one while it holds,
    /// else a new one from `current`.
    pub fn after(
        previous: Option<StepWindow>,
        current: &ScalingAction,
        now_s: f64,
        config: &GuardrailConfig,
    ) -> StepWindow {
        match previous {
            Some(w) if w.open_at(now_s, config.step_window_s) => w,
            _ => StepWindow { start_s: now_s, executors: current.executors },
        }
    }
}

/// The guardrails of one deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guardrails {
    config: GuardrailConfig,
}

impl Guardrails {
    pub fn new(config: GuardrailConfig) -> Result<Self, ControlError> {
        config.validate()?;
        Ok(Self { config })
    }

    pub fn config(&self) -> &GuardrailConfig {
        &self.config
    }

    /// Bring `proposed` within the limits, given the action in force. Returns the action to apply and
    /// every change made, in the order the rules ran (backlog net, bounds, step, cooldown, budget):
    /// the net's raise is still held to the maximum, the step limit and the spend cap.
    pub fn apply(
        &self,
        proposed: ScalingAction,
        current: &ScalingAction,
        ctx: &GuardrailContext,
    ) -> (ScalingAction, Vec<GuardrailChange>) {
        let c = &self.config;
        let mut changes = Vec::new();
        let mut out = proposed;
        let mut set = |out: &mut u32, value: u32, rule: GuardrailRule, field: &'static str| {
            if *out != value {
                changes.push(GuardrailChange {
                    rule,
                    field: field.to_string(),
                    proposed: *out,
                    applied: value,
                });
                *out = value;
            }
        };
        if let Some(need) = ctx.throughput.executors_to_drain(c.backlog_drain_s) {
            if out.executors < need {
                set(&mut out.executors, need, GuardrailRule::Backlog, "executors");
            }
        }
        if out.executors < c.min_executors {
            set(&mut out.executors, c.min_executors, GuardrailRule::MinExecutors, "executors");
        }
        if out.executors > c.max_executors {
            set(&mut out.executors, c.max_executors, GuardrailRule::MaxExecutors, "executors");
        }
        let base = match ctx.step_window {
            Some(w) if w.open_at(ctx.now_s, c.step_window_s) => w.executors,
            _ => current.executors,
        };
        let from = base.clamp(c.min_executors, c.max_executors);
        if out.executors > from.saturating_add(c.max_step) {
            set(&mut out.executors, from + c.max_step, GuardrailRule::MaxStep, "executors");
        } else if out.executors + c.max_step < from {
            set(&mut out.executors, from - c.max_step, GuardrailRule::MaxStep, "executors");
        }
        // A scale-up time ahead of now (a bad clock) does not hold anything back.
        let cooling = ctx.last_scale_up_s.is_some_and(|t| t <= ctx.now_s && ctx.now_s - t < c.cooldown_s);
        if cooling && out.executors < current.executors {
            set(
                &mut out.executors,
                current.executors.min(c.max_executors),
                GuardrailRule::Cooldown,
                "executors",
            );
        }
        if let Some(cap) = c.max_usd_per_hour {
            if ctx.usd_per_executor_hour > 0.0 {
                let affordable = ((cap / ctx.usd_per_executor_hour).floor() as u32).max(c.min_executors);
                if out.executors > affordable {
                    set(&mut out.executors, affordable, GuardrailRule::BudgetCap, "executors");
                }
            }
        }
        let prewarm_cap = c.max_prewarm.min(out.executors);
        if out.prewarm > prewarm_cap {
            set(&mut out.prewarm, prewarm_cap, GuardrailRule::MaxPrewarm, "prewarm");
        }
        (out, changes)
    }
}

/// When the executor count was last raised, once `applied` replaces `current` at `now_s`: the clock
/// the cooldown reads ([`GuardrailContext::last_scale_up_s`]), kept by every caller of
/// [`Guardrails::apply`] the same way.
pub fn scale_up_time(
    previous: Option<f64>,
    current: &ScalingAction,
    applied: &ScalingAction,
    now_s: f64,
) -> Option<f64> {
    if applied.executors > current.executors {
        Some(now_s)
    } else {
        previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now: f64, last: Option<f64>, burst: bool) -> GuardrailContext {
        GuardrailContext {
            now_s: now,
            last_scale_up_s: last,
            burst,
            usd_per_executor_hour: 0.3,
            step_window: None,
            throughput: Throughput::default(),
        }
    }

    #[test]
    fn the_step_limit_holds_per_window_not_per_decision() {
        let g = Guardrails::new(GuardrailConfig { max_step: 8, step_window_s: 5.0, ..Default::default() })
            .unwrap();
        let ten = ScalingAction::spark_default(10);
        let window = StepWindow::after(None, &ten, 100.0, g.config());
        let (a, _) = g.apply(
            ScalingAction::spark_default(64),
            &ten,
            &GuardrailContext { step_window: Some(window), ..ctx(100.0, None, true) },
        );
        assert_eq!(a.executors, 18);
        // Three more decisions within the window (say, one burst event delivered three times) add nothing.
        let window = StepWindow::after(Some(window), &a, 101.0, g.config());
        for t in [101.0, 102.0, 104.9] {
            let (b, ch) = g.apply(
                ScalingAction::spark_default(64),
                &a,
                &GuardrailContext { step_window: Some(window), ..ctx(t, None, true) },
            );
            assert_eq!((b.executors, ch.last().unwrap().rule), (18, GuardrailRule::MaxStep));
        }
        // Once the window has passed, the next step is allowed.
        let later = StepWindow::after(Some(window), &a, 105.0, g.config());
        assert_eq!(later, StepWindow { start_s: 105.0, executors: 18 });
        let (c, _) = g.apply(
            ScalingAction::spark_default(64),
            &a,
            &GuardrailContext { step_window: Some(later), ..ctx(105.0, None, true) },
        );
        assert_eq!(c.executors, 26);
        // A window stamped in the future does not pin the limit.
        let future = StepWindow { start_s: 1e12, executors: 1 };
        assert_eq!(StepWindow::after(Some(future), &a, 106.0, g.config()).start_s, 106.0);
    }

    #[test]
    fn a_scale_up_time_in_the_future_does_not_pin_the_cooldown() {
        let g = Guardrails::new(GuardrailConfig::default()).unwrap();
        let (a, ch) = g.apply(
            ScalingAction::spark_default(12),
            &ScalingAction::spark_default(20),
            &ctx(100.0, Some(9_999_999_999.0), false),
        );
        assert_eq!((a.executors, ch.len()), (12, 0));
    }

    #[test]
    fn bounds_and_step_are_enforced_and_reported() {
        let g = Guardrails::new(GuardrailConfig {
            min_executors: 2,
            max_executors: 40,
            max_step: 8,
            ..Default::default()
        })
        .unwrap();
        let current = ScalingAction::spark_default(10);
        let (a, ch) = g.apply(ScalingAction::spark_default(64), &current, &ctx(0.0, None, true));
        assert_eq!(a.executors, 18);
        assert_eq!(
            ch.iter().map(|c| c.rule).collect::<Vec<_>>(),
            vec![GuardrailRule::MaxExecutors, GuardrailRule::MaxStep]
        );
        assert_eq!((ch[0].proposed, ch[0].applied, ch[1].applied), (64, 40, 18));
        let (a, ch) = g.apply(ScalingAction::spark_default(0), &current, &ctx(0.0, None, false));
        assert_eq!(a.executors, 2);
        assert_eq!(ch[0].rule, GuardrailRule::MinExecutors);
    }

    #[test]
    fn cooldown_holds_scale_down_but_not_scale_up() {
        let g = Guardrails::new(GuardrailConfig { cooldown_s: 60.0, ..Default::default() }).unwrap();
        let current = ScalingAction::spark_default(20);
        let (a, ch) = g.apply(ScalingAction::spark_default(12), &current, &ctx(100.0, Some(70.0), false));
        assert_eq!((a.executors, ch[0].rule), (20, GuardrailRule::Cooldown));
        let (a, ch) = g.apply(ScalingAction::spark_default(30), &current, &ctx(100.0, Some(70.0), true));
        assert_eq!((a.executors, ch.len()), (30, 0));
        let (a, _) = g.apply(ScalingAction::spark_default(12), &current, &ctx(200.0, Some(70.0), false));
        assert_eq!(a.executors, 12);
    }

    #[test]
    fn only_a_scale_up_starts_the_cooldown() {
        let g = Guardrails::new(GuardrailConfig { cooldown_s: 60.0, ..Default::default() }).unwrap();
        let (twenty, twelve, eight) = (
            ScalingAction::spark_default(20),
            ScalingAction::spark_default(12),
            ScalingAction::spark_default(8),
        );
        assert_eq!(scale_up_time(Some(5.0), &twelve, &twenty, 100.0), Some(100.0));
        // A scale-down (or no change) keeps the clock: a second step down follows at once.
        let last = scale_up_time(Some(5.0), &twenty, &twelve, 100.0);
        assert_eq!(last, Some(5.0));
        let (a, ch) = g.apply(eight, &twelve, &ctx(105.0, last, false));
        assert_eq!((a.executors, ch.len()), (8, 0));
        assert_eq!(scale_up_time(None, &twelve, &twelve, 105.0), None);
    }

    #[test]
    fn budget_cap_limits_executors() {
        let g = Guardrails::new(GuardrailConfig {
            max_usd_per_hour: Some(3.0),
            max_step: 64,
            ..Default::default()
        })
        .unwrap();
        let (a, ch) = g.apply(
            ScalingAction::spark_default(30),
            &ScalingAction::spark_default(5),
            &ctx(0.0, None, true),
        );
        assert_eq!(a.executors, 10);
        assert_eq!(ch.last().unwrap().rule, GuardrailRule::BudgetCap);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let e = Guardrails::new(GuardrailConfig { min_executors: 9, max_executors: 4, ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().contains("min_executors 9 above max_executors 4"), "{e}");
        let e = Guardrails::new(GuardrailConfig { max_usd_per_hour: Some(-1.0), ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().contains("max_usd_per_hour"), "{e}");
    }

    /// The default guardrails with the backlog net on, as measured in the README.
    fn net() -> GuardrailConfig {
        GuardrailConfig { backlog_drain_s: 30.0, ..GuardrailConfig::default() }
    }

    /// A job at 8 executors processing 8,000 events/s (1,000 each) under a 1 s SLA.
    fn hot(backlog_events: f64, input_rate: f64) -> Throughput {
        Throughput { backlog_events, input_rate, processing_rate: 8_000.0, running_executors: 8, sla_s: 1.0 }
    }

    #[test]
    fn a_growing_backlog_raises_the_proposal_to_what_drains_it() {
        let g = Guardrails::new(GuardrailConfig { max_step: 64, ..net() }).unwrap();
        let current = ScalingAction::spark_default(8);
        // 30,000 events/s arriving, 60,000 waiting: keep up (30) and clear the backlog in 30 s (2).
        let c = GuardrailContext { throughput: hot(60_000.0, 30_000.0), ..ctx(0.0, None, true) };
        let (a, ch) = g.apply(ScalingAction::spark_default(9), &current, &c);
        assert_eq!(a.executors, 32);
        assert_eq!((ch[0].rule, ch[0].proposed, ch[0].applied), (GuardrailRule::Backlog, 9, 32));
        // A proposal above that is left alone.
        let (a, ch) = g.apply(ScalingAction::spark_default(40), &current, &c);
        assert_eq!((a.executors, ch.len()), (40, 0));
        // The raise is still held to the step limit and the maximum.
        let g = Guardrails::new(GuardrailConfig { max_step: 16, max_executors: 20, ..net() }).unwrap();
        let (a, ch) = g.apply(ScalingAction::spark_default(9), &current, &c);
        assert_eq!(a.executors, 20);
        let rules: Vec<_> = ch.iter().map(|c| c.rule).collect();
        assert_eq!(rules, vec![GuardrailRule::Backlog, GuardrailRule::MaxExecutors]);
    }

    #[test]
    fn a_shallow_or_shrinking_backlog_and_a_net_turned_off_change_nothing() {
        let g = Guardrails::new(net()).unwrap();
        let current = ScalingAction::spark_default(8);
        for t in [
            hot(3_000.0, 30_000.0), // growing, but under half the SLA's worth of processing
            hot(60_000.0, 7_000.0), // deep, but draining
            Throughput { running_executors: 0, ..hot(60_000.0, 30_000.0) }, // nothing to measure by
            Throughput { processing_rate: 0.0, ..hot(60_000.0, 30_000.0) },
        ] {
            let c = GuardrailContext { throughput: t, ..ctx(0.0, None, true) };
            let (a, ch) = g.apply(ScalingAction::spark_default(9), &current, &c);
            assert_eq!((a.executors, ch.len()), (9, 0), "{t:?}");
        }
        let off = Guardrails::new(GuardrailConfig::default()).unwrap();
        let c = GuardrailContext { throughput: hot(60_000.0, 30_000.0), ..ctx(0.0, None, true) };
        assert_eq!(off.apply(ScalingAction::spark_default(9), &current, &c).0.executors, 9);
        let e =
            Guardrails::new(GuardrailConfig { backlog_drain_s: f64::NAN, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("backlog_drain_s"), "{e}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn number() -> impl Strategy<Value = f64> {
            prop_oneof![
                8 => 0.0..1e7f64,
                1 => Just(f64::NAN),
                1 => Just(f64::INFINITY),
                1 => -1e6..0.0f64,
            ]
        }

        proptest! {
            /// Whatever the rates say (garbage included), the net only ever raises a proposal, and
            /// what comes out stays within the bounds and the step limit.
            #[test]
            fn the_net_only_raises_and_the_limits_still_hold(
                backlog in number(), input in number(), processing in number(),
                running in 0u32..100, proposed in 0u32..200, current in 1u32..64,
            ) {
                let config = GuardrailConfig { max_step: 8, ..net() };
                let g = Guardrails::new(config).unwrap();
                let t = Throughput {
                    backlog_events: backlog, input_rate: input, processing_rate: processing,
                    running_executors: running, sla_s: 1.0,
                };
                let c = GuardrailContext { throughput: t, ..ctx(0.0, None, true) };
                let off = GuardrailContext { throughput: Throughput::default(), ..c };
                let current = ScalingAction::spark_default(current);
                let (with, _) = g.apply(ScalingAction::spark_default(proposed), &current, &c);
                let (without, _) = g.apply(ScalingAction::spark_default(proposed), &current, &off);
                prop_assert!(with.executors >= without.executors);
                prop_assert!(with.executors <= config.max_executors);
                prop_assert!(with.executors <= current.executors.clamp(1, 64) + config.max_step);
            }
        }
    }
}
