//! meta-weights: the TD3 meta-controller choosing the reward weights (alpha for cost, beta for
//! latency) the scaling policy works with.
//!
//! Runs every five minutes and on context changes (`{"scenario", "budget_remaining"}`, optionally
//! `"budget_usd"`, `"horizon_s"` and `"time_s"`, when the budget was read). Reads the context and the recent decisions from the store, runs
//! meta-td3.onnx, and stores the weights with a new version number; the weights are also metrics
//! ([`crate::metrics::weights_metrics`]).

use crate::wire::{Context, DecisionRecord, Keys};
use crate::{
    from_json, record_json, to_json, Backends, Handler, HandlerError, RecordError, Settings, Trigger, Weights,
};
use async_trait::async_trait;
use control::{MetaContext, Scenario};
use cost_model::{PriceBook, WorkerSpec};
use policy::MetaPolicy;
use serde::Deserialize;

/// The model built into the binary; `SPARKPILOT_META_MODEL` overrides it.
pub const EMBEDDED_MODEL: &[u8] = models::META_TD3;

/// Decisions the recent violation share and spend rate are computed over (one hour at one a minute).
const RECENT_DECISIONS: usize = 60;

/// A context change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextChange {
    pub scenario: String,
    pub budget_remaining: f64,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub horizon_s: Option<f64>,
    /// When the budget was read (Unix seconds); the arrival time when absent. A replay stamps its
    /// own clock here so the budget lines up with the decisions on the dashboard.
    #[serde(default)]
    pub time_s: Option<f64>,
}

pub struct MetaWeights {
    settings: Settings,
    keys: Keys,
    backends: Backends,
    model: MetaPolicy,
    prices: PriceBook,
}

impl MetaWeights {
    pub fn new(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError> {
        let model = match &settings.meta_model {
            Some(path) => MetaPolicy::load(path)?,
            None => MetaPolicy::from_bytes("embedded:meta-td3.onnx", EMBEDDED_MODEL)?,
        };
        let prices =
            PriceBook::embedded(&settings.region).map_err(|e| HandlerError::Config(e.to_string()))?;
        Ok(Self {
            settings: settings.clone(),
            keys: Keys::new(&settings.key_prefix),
            backends: backends.clone(),
            model,
            prices,
        })
    }

    /// The stored context with the trigger's changes applied in order, the trigger's time, and the
    /// records whose change was refused (a direct call's refused change is the call's error).
    fn merge_changes(
        &self,
        trigger: Trigger,
        stored: Option<Context>,
    ) -> Result<(Context, f64, Vec<RecordError>), HandlerError> {
        let now = match &trigger {
            Trigger::Schedule { time_s } => *time_s,
            _ => trigger.time_s(self.settings.max_clock_skew_s),
        };
        let mut ctx = stored;
        let mut current = ctx.clone().unwrap_or(Context {
            scenario: self.settings.scenario,
            budget_usd: self.settings.budget_usd,
            budget_remaining: self.settings.budget_usd,
            horizon_s: self.settings.budget_horizon_s,
            time_s: now,
        });
        let mut errors = Vec::new();
        let mut apply = |change: Result<ContextChange, String>,
                         at: Option<crate::RecordRef>,
                         current: &mut Context|
         -> Result<(), HandlerError> {
            match change.and_then(|c| self.validate(&c, now, current)) {
                Ok(c) => {
                    *current = c;
                    ctx = Some(current.clone());
                    Ok(())
                }
                Err(e) => match at {
                    Some(record) => {
                        errors.push(RecordError { record, error: e });
                        Ok(())
                    }
                    None => Err(HandlerError::BadRequest(e)),
                },
            }
        };
        match trigger {
            Trigger::Schedule { .. } => {}
            Trigger::Direct(v) => apply(
                serde_json::from_value::<ContextChange>(v).map_err(|e| format!("context change: {e}")),
                None,
                &mut current,
            )?,
            Trigger::Kafka(records) => {
                for m in &records {
                    match record_json::<ContextChange>(m) {
                        Ok(None) => {}
                        Ok(Some(c)) => apply(Ok(c), Some(m.locator()), &mut current)?,
                        Err(e) => apply(Err(e), Some(m.locator()), &mut current)?,
                    }
                }
            }
        }
        Ok((ctx.unwrap_or(current), now, errors))
    }

    fn validate(&self, change: &ContextChange, now: f64, current: &Context) -> Result<Context, String> {
        let scenario = Scenario::from_name(&change.scenario).ok_or_else(|| {
            format!(
                "unknown scenario {:?}; expected one of {}",
                change.scenario,
                Scenario::ALL.map(|s| s.name()).join(", ")
            )
        })?;
        let budget_usd = change.budget_usd.unwrap_or(current.budget_usd);
        if !(budget_usd.is_finite() && budget_usd > 0.0) {
            return Err(format!("budget_usd {budget_usd} must be positive"));
        }
        if !(change.budget_remaining.is_finite() && change.budget_remaining >= 0.0) {
            return Err(format!(
                "budget_remaining {} must be a non-negative number",
                change.budget_remaining
            ));
        }
        let horizon_s = change.horizon_s.unwrap_or(current.horizon_s);
        if !(horizon_s.is_finite() && horizon_s > 0.0) {
            return Err(format!("horizon_s {horizon_s} must be positive"));
        }
        let time_s = match change.time_s {
            None => now,
            Some(t)
                if t.is_finite()
                    && t >= 0.0
                    && t <= crate::events::now_s() + self.settings.max_clock_skew_s =>
            {
                t
            }
            Some(t) => {
                return Err(format!(
                    "time_s {t} must be Unix seconds no later than the function's clock plus {} s",
                    self.settings.max_clock_skew_s
                ))
            }
        };
        Ok(Context {
            scenario,
            budget_usd,
            budget_remaining: change.budget_remaining.min(budget_usd),
            horizon_s,
            time_s,
        })
    }
}

/// Violation share and mean spend rate ($/s) of running executors over recent decisions.
pub fn recent_history(decisions: &[DecisionRecord], prices: &PriceBook, vcpu: f64) -> (f64, f64) {
    control::recent_summary(decisions.iter().map(|d| {
        let worker = WorkerSpec { vcpu, memory_gb: d.inputs.current.memory_gb as f64, disk_gb: 20.0 };
        (
            d.inputs.latency_ms > d.inputs.sla_ms,
            d.inputs.running_executors as f64 * prices.emr_rate_per_second(&worker),
        )
    }))
}

#[async_trait]
impl Handler for MetaWeights {
    fn name(&self) -> &'static str {
        <Self as crate::Function>::NAME
    }

    async fn handle(&self, trigger: Trigger) -> Result<crate::Outcome, HandlerError> {
        let store = &self.backends.store;
        let got = store.get_many(&[self.keys.context()]).await?;
        let stored: Option<Context> = from_json(&self.keys.context(), got[0].as_ref())?;
        let (context, now, errors) = self.merge_changes(trigger, stored)?;
        let recent: Vec<DecisionRecord> = store
            .recent(&self.keys.decisions(), RECENT_DECISIONS)
            .await?
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect();
        let (violations, cost_rate) =
            recent_history(&recent, &self.prices, self.settings.vcpu_per_executor as f64);
        let meta = MetaContext {
            scenario: context.scenario,
            budget_usd: context.budget_usd,
            horizon_s: context.horizon_s,
        };
        let features = meta.features(context.budget_usd - context.budget_remaining, violations, cost_rate);
        // Within the scenario's band, as the arena and the trainer run the controller.
        let (alpha, beta) = {
            let (a, b) = self.model.weights(&features)?;
            context.scenario.bounded_weights(a, b)
        };
        let version = store.incr(&self.keys.weights_version()).await?;
        let weights = Weights {
            alpha,
            beta,
            version,
            scenario: context.scenario,
            time_s: now,
            model_version: self.model.version().to_string(),
        };
        store
            .set_many(
                &[(self.keys.weights(), to_json(&weights)), (self.keys.context(), to_json(&context))],
                None,
            )
            .await?;
        tracing::info!(alpha, beta, version, scenario = context.scenario.name(), "weights stored");
        crate::metrics::emit(
            self.settings.emf_metrics,
            "meta-weights",
            now,
            &crate::metrics::weights_metrics(&weights, violations, errors.len()),
        );
        Ok(crate::Outcome::Weights(crate::outcome::WeightsOutcome {
            weights,
            context: crate::outcome::ContextSummary {
                scenario: context.scenario.name(),
                budget_usd: context.budget_usd,
                budget_remaining: context.budget_remaining,
                horizon_s: context.horizon_s,
            },
            recent_violation_share: violations,
            recent_cost_per_s: cost_rate,
            features: features.to_vec(),
            errors,
        }))
    }
}
