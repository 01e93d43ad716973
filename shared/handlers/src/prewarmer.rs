//! prewarmer: asks EMR Serverless for pre-initialised workers ahead of forecast load.
//!
//! Runs every minute. Reads the load history scaling-decision keeps (input rate per Spark
//! micro-batch), extracts the pattern features of [`LoadForecaster`] (velocity, acceleration,
//! rolling mean and spread, hour of day, periodicity), forecasts the next minutes, and sets the
//! application's initial capacity to the extra workers the forecast peak needs beyond what today's
//! load needs; back to zero when quiet. Like scaling-decision it changes capacity only while the
//! application accepts UpdateApplication (CREATED or STOPPED) and otherwise records the wish as
//! pending.

use crate::ports::Capacity;
use crate::state::Keys;
use crate::{to_json, Backends, Handler, HandlerError, Settings, Trigger};
use async_trait::async_trait;
use control::{plan_prewarm, LoadForecaster, LoadSample, StateBuilder, DEFAULT_BYTES_PER_EVENT, PREWARM_HISTORY};
use latency_model::LatencyModel;
use serde_json::json;


pub struct Prewarmer {
    settings: Settings,
    keys: Keys,
    backends: Backends,
    forecaster: LoadForecaster,
    state: StateBuilder,
}

impl Prewarmer {
    pub fn new(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError> {
        Ok(Self {
            settings: settings.clone(),
            keys: Keys::new(&settings.key_prefix),
            backends: backends.clone(),
            forecaster: LoadForecaster::default(),
            state: StateBuilder::for_policy(settings.vcpu_per_executor as f64, LatencyModel::embedded().processing),
        })
    }
}

#[async_trait]
impl Handler for Prewarmer {
    fn name(&self) -> &'static str {
        "prewarmer"
    }

    async fn handle(&self, trigger: Trigger) -> Result<serde_json::Value, HandlerError> {
        let now = match trigger {
            Trigger::Schedule { time_s } => time_s,
            Trigger::Direct(_) => crate::events::now_s(),
            Trigger::Kafka(_) => return Err(HandlerError::BadEvent("prewarmer runs on a schedule, not on Kafka records".into())),
        };
        let raw = self.backends.store.recent(&self.keys.load_history(), PREWARM_HISTORY).await?;
        let mut skipped = 0;
        let samples: Vec<LoadSample> = raw
            .iter()
            .filter_map(|b| match serde_json::from_slice(b) {
                Ok(s) => Some(s),
                Err(_) => {
                    skipped += 1;
                    None
                }
            })
            .collect();
        let executor_rate = self.state.executor_rate(DEFAULT_BYTES_PER_EVENT);
        let plan = plan_prewarm(&self.forecaster, &samples, executor_rate, self.settings.prewarm_utilisation, self.settings.guardrails.max_prewarm);
        let (forecast, baseline, target) = (&plan.forecast, plan.baseline_executors, plan.workers);
        let app = self.backends.emr.get_application().await?;
        let outcome = if target == app.capacity.initial_executors {
            "unchanged".to_string()
        } else if self.settings.dry_run {
            "dry run".to_string()
        } else {
            // Initial capacity must fit inside the maximum.
            let max_workers = app.capacity.max_vcpu / app.capacity.worker_vcpu.max(1);
            let want = Capacity { initial_executors: target.min(max_workers), ..app.capacity };
            if app.state.accepts_update() {
                self.backends.emr.update_capacity(&want).await?;
                format!("initial capacity {} -> {}", app.capacity.initial_executors, want.initial_executors)
            } else {
                self.backends.store.set_many(&[(self.keys.pending_capacity(), to_json(&want))], None).await?;
                format!("deferred: application is {:?}; pending until it stops", app.state)
            }
        };
        let result = json!({
            "time_s": now,
            "samples": samples.len(),
            "skipped_samples": skipped,
            "features": forecast.features,
            "forecast": forecast.expected,
            "forecast_upper": forecast.upper,
            "baseline_executors": baseline,
            "prewarm_workers": target,
            "emr": outcome,
            "dry_run": self.settings.dry_run,
        });
        self.backends.store.set_many(&[(self.keys.prewarm(), to_json(&result))], None).await?;
        tracing::info!(prewarm = target, peak = forecast.peak(), "prewarm decision");
        Ok(result)
    }
}
