//! Guardrails: hard limits that override whatever the policy proposes. A learned policy is trusted
//! for the shape of a decision, never for its bounds: the operator's minimum and maximum workers, a
//! spend cap, a cooldown against flapping and a largest step per decision are always enforced here,
//! in the simulator and in the scaling-decision function alike.

use crate::{ControlError, ScalingAction};
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
    /// every change made, in the order the rules ran (bounds, step, cooldown, budget).
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
}
