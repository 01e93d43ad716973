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
//!
//! The history is judged at the function's clock (the schedule's time): samples stamped before the
//! forecaster's history window (two days of minute buckets) or more than its skew (300 s) ahead of
//! now are ignored and counted (`ignored_samples`), so one sample stamped a year back, or at 0, can
//! neither make the forecast quadratic in a year of buckets nor push the recent samples out; the
//! buckets forecast from are at most [`LoadForecaster::max_buckets`] (`buckets` in the result).

use crate::ports::Capacity;
use crate::wire::Keys;
use crate::{to_json, Applies, Backends, Handler, HandlerError, Settings, Trigger};
use async_trait::async_trait;
use control::{
    plan_prewarm, FeatureBuilder, LoadForecaster, LoadSample, DEFAULT_BYTES_PER_EVENT, PREWARM_HISTORY,
};
use latency_model::LatencyModel;

pub struct Prewarmer {
    settings: Settings,
    keys: Keys,
    backends: Backends,
    forecaster: LoadForecaster,
    state: FeatureBuilder,
}

impl Prewarmer {
    pub fn new(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError> {
        Ok(Self {
            settings: settings.clone(),
            keys: Keys::new(&settings.key_prefix),
            backends: backends.clone(),
            forecaster: LoadForecaster::default(),
            state: FeatureBuilder::for_policy(settings.vcpu_per_executor as f64, &LatencyModel::embedded()),
        })
    }
}

#[async_trait]
impl Handler for Prewarmer {
    fn name(&self) -> &'static str {
        <Self as crate::Function>::NAME
    }

    async fn handle(&self, trigger: Trigger) -> Result<crate::Outcome, HandlerError> {
        let now = match trigger {
            Trigger::Schedule { time_s } => time_s,
            Trigger::Direct(_) => crate::events::now_s(),
            Trigger::Kafka(_) => {
                return Err(HandlerError::BadEvent(
                    "prewarmer runs on a schedule, not on Kafka records".into(),
                ))
            }
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
        let (samples, ignored) = self.forecaster.window(&samples, now);
        let buckets = self.forecaster.bucketise(&samples).len();
        let executor_rate = self.state.executor_rate(DEFAULT_BYTES_PER_EVENT);
        let plan = plan_prewarm(
            &self.forecaster,
            &samples,
            executor_rate,
            self.settings.prewarm_utilisation,
            self.settings.guardrails.max_prewarm,
        );
        let (forecast, baseline, target) = (&plan.forecast, plan.baseline_executors, plan.workers);
        let app = self.backends.emr.get_application().await?;
        // A capacity change scaling-decision left for the next stop is the base of this one.
        let pending: Option<Capacity> = crate::from_json(
            &self.keys.pending_capacity(),
            self.backends.store.get(&self.keys.pending_capacity()).await?.as_ref(),
        )?;
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
            (
                Applies::Now,
                format!("initial capacity {} -> {}", app.capacity.initial_executors, want.initial_executors),
            )
        } else {
            // Pre-initialised workers are the application's initial capacity: only a stopped or
            // created application takes them. A running job gets executors from scaling-decision
            // through the in-job agent, which sizes for the same edge forecast.
            self.backends.store.set_many(&[(self.keys.pending_capacity(), to_json(&want))], None).await?;
            (Applies::WhenStopped, format!("pending: the application is {:?}; initial capacity {} waits for the next stop (UpdateApplication needs CREATED or STOPPED)", app.state, want.initial_executors))
        };
        let result = crate::outcome::PrewarmOutcome {
            time_s: now,
            samples: samples.len(),
            skipped_samples: skipped,
            ignored_samples: ignored,
            buckets,
            features: forecast.features,
            forecast: forecast.expected.clone(),
            forecast_upper: forecast.upper.clone(),
            baseline_executors: baseline,
            prewarm_workers: target,
            emr: outcome,
            applies,
            dry_run: self.settings.dry_run,
        };
        self.backends.store.set_many(&[(self.keys.prewarm(), to_json(&result))], None).await?;
        tracing::info!(prewarm = target, peak = forecast.peak(), "prewarm decision");
        crate::metrics::emit(
            self.settings.emf_metrics,
            "prewarmer",
            now,
            &crate::metrics::prewarm_metrics(target, applies, forecast.peak(), skipped + ignored),
        );
        Ok(crate::Outcome::Prewarm(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StateStore;
    use crate::Embedded;

    const NOW: f64 = 1_795_341_900.0;

    /// Half an hour of a steep ramp ending at `NOW`, one sample a second, plus `extra`, pushed as
    /// scaling-decision pushes them; then one prewarmer run at `NOW`.
    async fn run(extra: &[LoadSample]) -> serde_json::Value {
        let env = Embedded::default();
        let mut samples: Vec<LoadSample> = (0..1_800)
            .map(|s| LoadSample { time_s: NOW - 1_800.0 + s as f64, rate: 500.0 + 3.0 * s as f64 })
            .collect();
        samples.splice(900..900, extra.iter().copied());
        let raw: Vec<Vec<u8>> = samples.iter().map(to_json).collect();
        env.store.push_capped("{sparkpilot}:load-history", &raw, PREWARM_HISTORY).await.unwrap();
        let prewarmer = Prewarmer::new(&Settings::default(), &env.backends()).unwrap();
        prewarmer.handle(Trigger::Schedule { time_s: NOW }).await.unwrap().to_json()
    }

    fn same_plan(a: &serde_json::Value, b: &serde_json::Value) {
        for k in ["forecast", "forecast_upper", "baseline_executors", "prewarm_workers", "buckets", "samples"]
        {
            assert_eq!(a[k], b[k], "{k}: {a} vs {b}");
        }
    }

    #[tokio::test]
    async fn one_sample_stamped_a_year_back_is_ignored_and_the_work_stays_bounded() {
        // Before: 525,601 one-minute buckets and a quadratic autocorrelation over them (255 s).
        let clean = run(&[]).await;
        assert_eq!(clean["buckets"], 30, "{clean}");
        assert!(clean["prewarm_workers"].as_u64().unwrap() > 0, "{clean}");
        let out = run(&[LoadSample { time_s: NOW - 365.0 * 86_400.0, rate: 700.0 }]).await;
        assert_eq!(out["ignored_samples"], 1, "{out}");
        same_plan(&out, &clean);
    }

    #[tokio::test]
    async fn a_timestamp_of_zero_or_far_ahead_does_not_drop_the_recent_samples() {
        // Before: a sample at 0 anchored the buckets at 1970 and every recent sample fell past the cap.
        let clean = run(&[]).await;
        for t in [0.0, -1e300, NOW + 30.0 * 86_400.0, 1e300] {
            let out = run(&[LoadSample { time_s: t, rate: 700.0 }]).await;
            assert_eq!(out["ignored_samples"], 1, "{t}: {out}");
            same_plan(&out, &clean);
        }
    }

    #[tokio::test]
    async fn samples_spread_over_years_give_at_most_the_bounded_bucket_count() {
        let spread: Vec<LoadSample> =
            (0..5_000).map(|i| LoadSample { time_s: NOW - i as f64 * 6_311.0, rate: 800.0 }).collect();
        let out = run(&spread).await;
        let buckets = out["buckets"].as_u64().unwrap() as usize;
        assert!(buckets <= LoadForecaster::default().max_buckets(), "{out}");
        assert!(out["ignored_samples"].as_u64().unwrap() > 4_900, "{out}");
    }
}
