//! prewarmer: asks EMR Serverless for pre-initialised workers ahead of forecast load.
//!
//! Runs every minute. Reads the load history scaling-decision keeps (input rate per Spark
//! micro-batch), extracts the pattern features of [`LoadForecaster`] (velocity, acceleration,
//! rolling mean and spread, hour of day, periodicity), forecasts the next minutes, and sets the
//! application's initial capacity to the extra workers the forecast peak needs beyond what today's
//! load needs; back to zero when quiet. Initial capacity is the application's, which EMR Serverless
//! changes only while the application is CREATED or STOPPED: then it is set at once (with any
//! capacity scaling-decision left pending); while a job keeps the application STARTED it is stored
//! for the next stop and the result says so (`applies: when_stopped`).

use crate::ports::Capacity;
use crate::state::Keys;
use crate::{to_json, Applies, Backends, Handler, HandlerError, Settings, Trigger};
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
        // A capacity change scaling-decision left for the next stop is the base of this one.
        let pending: Option<Capacity> = crate::from_json(&self.keys.pending_capacity(), self.backends.store.get(&self.keys.pending_capacity()).await?.as_ref())?;
        let base = pending.unwrap_or(app.capacity);
        // Initial capacity must fit inside the maximum.
        let max_workers = base.max_vcpu / base.worker_vcpu.max(1);
        let want = Capacity { initial_executors: target.min(max_workers), ..base };
        let (applies, outcome) = if want == app.capacity {
            (Applies::Unchanged, "unchanged".to_string())
        } else if self.settings.dry_run {
            (Applies::DryRun, "dry run".to_string())
        } else if app.state.accepts_update() {
            self.backends.emr.update_capacity(&want).await?;
            self.backends.store.delete(&[self.keys.pending_capacity()]).await?;
            (Applies::Now, format!("initial capacity {} -> {}", app.capacity.initial_executors, want.initial_executors))
        } else {
            // Pre-initialised workers are the application's initial capacity: only a stopped or
            // created application takes them. A running job gets executors from scaling-decision
            // through the in-job agent, which sizes for the same edge forecast.
            self.backends.store.set_many(&[(self.keys.pending_capacity(), to_json(&want))], None).await?;
            (Applies::WhenStopped, format!("pending: the application is {:?}; initial capacity {} waits for the next stop (UpdateApplication needs CREATED or STOPPED)", app.state, want.initial_executors))
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
            "applies": applies,
            "dry_run": self.settings.dry_run,
        });
        self.backends.store.set_many(&[(self.keys.prewarm(), to_json(&result))], None).await?;
        tracing::info!(prewarm = target, peak = forecast.peak(), "prewarm decision");
        Ok(result)
    }
}
