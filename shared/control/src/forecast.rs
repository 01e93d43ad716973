//! Load pattern features and a short-horizon forecast, for the prewarmer: pre-initialised EMR
//! Serverless workers take effect only once they are up, so capacity must be asked for before the
//! load arrives. The forecast is deliberately simple and explainable: damped Holt trend, blended with
//! the value one period ago when the history shows a strong period, plus a margin of the residual
//! spread.
//!
//! The history it reads is bounded relative to the clock: [`LoadForecaster::forecast_at`] keeps the
//! samples of the last [`ForecastConfig::history_buckets`] buckets before `now` (plus
//! [`ForecastConfig::max_skew_s`] ahead of it) and ignores the rest, so one sample stamped a year
//! back (or at 0) neither stretches the history into hundreds of thousands of buckets nor pushes
//! the recent samples out of it. The work is then bounded: at most `history_buckets + skew` buckets,
//! and the autocorrelation is quadratic in that bound only (two days of minutes: about 3 M
//! multiply-adds).

use crate::ControlError;
use serde::{Deserialize, Serialize};

/// One load sample: events/s observed at `time_s` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadSample {
    pub time_s: f64,
    pub rate: f64,
}

/// Forecaster settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    /// Width of the buckets the history is averaged into, seconds.
    pub bucket_s: f64,
    /// Buckets ahead to forecast.
    pub horizon: usize,
    /// Buckets in the rolling mean and standard deviation.
    pub window: usize,
    /// Holt smoothing of the level and the trend, and the trend's damping per step.
    pub level_alpha: f64,
    pub trend_beta: f64,
    pub damping: f64,
    /// Standard deviations of residual added for the upper forecast.
    pub margin_sd: f64,
    /// Autocorrelation above which a period counts as found.
    pub min_periodicity: f64,
    /// Buckets of history used, counted back from now: samples older are ignored. Two days of
    /// minutes by default, so that a daily period can still be found.
    pub history_buckets: usize,
    /// How far ahead of now a sample may be stamped (clock skew between hosts), seconds; samples
    /// further ahead are ignored.
    pub max_skew_s: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            bucket_s: 60.0,
            horizon: 5,
            window: 15,
            level_alpha: 0.6,
            trend_beta: 0.4,
            damping: 0.98,
            margin_sd: 1.5,
            min_periodicity: 0.5,
            history_buckets: 2 * 1_440,
            max_skew_s: 300.0,
        }
    }
}

/// Features of the recent load pattern (rates in events/s, per bucket).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PatternFeatures {
    /// Change per bucket over the last two buckets.
    pub velocity: f64,
    /// Change of the velocity.
    pub acceleration: f64,
    pub rolling_mean: f64,
    pub rolling_std: f64,
    /// Hour of day of the last sample on the unit circle (UTC).
    pub hour_sin: f64,
    pub hour_cos: f64,
    /// Lag in buckets of the strongest autocorrelation, if above the threshold.
    pub period_buckets: Option<usize>,
    /// That autocorrelation (0 when none was found).
    pub periodicity: f64,
}

/// A forecast for the next `horizon` buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub features: PatternFeatures,
    /// Expected rate per future bucket.
    pub expected: Vec<f64>,
    /// Expected plus the margin: what capacity should be ready for.
    pub upper: Vec<f64>,
}

impl Forecast {
    /// The highest upper-bound rate over the horizon.
    pub fn peak(&self) -> f64 {
        self.upper.iter().copied().fold(0.0, f64::max)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadForecaster {
    config: ForecastConfig,
}

impl LoadForecaster {
    pub fn new(config: ForecastConfig) -> Result<Self, ControlError> {
        let c = &config;
        let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !(c.bucket_s.is_finite() && c.bucket_s > 0.0) || c.horizon == 0 || c.window < 2 {
            return Err(ControlError::Forecast(
                "bucket_s must be positive, horizon at least 1, window at least 2".into(),
            ));
        }
        if !(c.window..=MAX_HISTORY_BUCKETS).contains(&c.history_buckets) {
            return Err(ControlError::Forecast(format!(
                "history_buckets {} must lie in window..={MAX_HISTORY_BUCKETS}",
                c.history_buckets
            )));
        }
        if !(c.max_skew_s.is_finite() && c.max_skew_s >= 0.0 && c.max_skew_s <= c.bucket_s * 60.0) {
            return Err(ControlError::Forecast(format!(
                "max_skew_s {} must lie in 0..=60 buckets",
                c.max_skew_s
            )));
        }
        if !(unit(c.level_alpha) && unit(c.trend_beta) && unit(c.damping) && unit(c.min_periodicity)) {
            return Err(ControlError::Forecast(
                "level_alpha, trend_beta, damping and min_periodicity must lie in 0..=1".into(),
            ));
        }
        if !(c.margin_sd.is_finite() && c.margin_sd >= 0.0) {
            return Err(ControlError::Forecast(format!("margin_sd {} must be non-negative", c.margin_sd)));
        }
        Ok(Self { config })
    }

    pub fn config(&self) -> &ForecastConfig {
        &self.config
    }

    /// Most buckets [`Self::bucketise`] returns: the history plus the skew allowed ahead of now.
    pub fn max_buckets(&self) -> usize {
        let c = &self.config;
        c.history_buckets + (c.max_skew_s / c.bucket_s).ceil() as usize + 1
    }

    /// The samples the forecast at `now_s` uses: those stamped within the last `history_buckets`
    /// buckets before `now_s`, or at most `max_skew_s` after it. Returns them and how many were
    /// ignored for their time (non-finite included).
    pub fn window(&self, samples: &[LoadSample], now_s: f64) -> (Vec<LoadSample>, usize) {
        let c = &self.config;
        let from = now_s - c.history_buckets as f64 * c.bucket_s;
        let to = now_s + c.max_skew_s;
        let kept: Vec<LoadSample> = samples
            .iter()
            .copied()
            .filter(|s| s.time_s.is_finite() && s.time_s > from && s.time_s <= to)
            .collect();
        let ignored = samples.len() - kept.len();
        (kept, ignored)
    }

    /// Average the samples into buckets, oldest first; empty buckets between samples carry the last
    /// value (a missing report is not a zero load). Non-finite or negative rates are skipped. At
    /// most [`Self::max_buckets`], ending at the newest sample: older samples are ignored, so a
    /// clock jump in the input can neither blow up the work nor push the recent samples out.
    pub fn bucketise(&self, samples: &[LoadSample]) -> Vec<f64> {
        let mut good: Vec<LoadSample> = samples
            .iter()
            .copied()
            .filter(|s| s.time_s.is_finite() && s.rate.is_finite() && s.rate >= 0.0)
            .collect();
        if good.is_empty() {
            return Vec::new();
        }
        good.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
        let last = (good[good.len() - 1].time_s / self.config.bucket_s).floor();
        let cap = self.max_buckets();
        let oldest_allowed = last - (cap - 1) as f64;
        good.retain(|s| (s.time_s / self.config.bucket_s).floor() >= oldest_allowed);
        let start = (good[0].time_s / self.config.bucket_s).floor();
        let n = ((last - start) as usize + 1).min(cap);
        let mut sum = vec![0.0; n];
        let mut count = vec![0u32; n];
        for s in &good {
            let i = ((s.time_s / self.config.bucket_s).floor() - start) as usize;
            if i < n {
                sum[i] += s.rate;
                count[i] += 1;
            }
        }
        let mut out = Vec::with_capacity(n);
        let mut carry = 0.0;
        for i in 0..n {
            if count[i] > 0 {
                carry = sum[i] / count[i] as f64;
            }
            out.push(carry);
        }
        out
    }

    /// Pattern features of bucketed history (oldest first), the last bucket ending at `now_s`.
    pub fn features(&self, buckets: &[f64], now_s: f64) -> PatternFeatures {
        let n = buckets.len();
        let at = |k: usize| if n > k { buckets[n - 1 - k] } else { buckets.first().copied().unwrap_or(0.0) };
        let velocity = at(0) - at(1);
        let acceleration = velocity - (at(1) - at(2));
        let tail = &buckets[n.saturating_sub(self.config.window)..];
        let (mean, std) = mean_std(tail);
        let hour = (now_s.rem_euclid(86_400.0)) / 3_600.0;
        let angle = hour / 24.0 * std::f64::consts::TAU;
        let (period_buckets, periodicity) = self.period(buckets);
        PatternFeatures {
            velocity,
            acceleration,
            rolling_mean: mean,
            rolling_std: std,
            hour_sin: angle.sin(),
            hour_cos: angle.cos(),
            period_buckets,
            periodicity,
        }
    }

    /// Strongest autocorrelation of the bucket-to-bucket changes at lags 2..n/2, if above the
    /// threshold. Differencing first keeps a trend from passing for a period.
    fn period(&self, buckets: &[f64]) -> (Option<usize>, f64) {
        let x: Vec<f64> = buckets.windows(2).map(|w| w[1] - w[0]).collect();
        let x = &x[..];
        let n = x.len();
        if n < 8 {
            return (None, 0.0);
        }
        let (mean, std) = mean_std(x);
        let var = std * std * n as f64;
        if var <= 1e-12 {
            return (None, 0.0);
        }
        // Scale up for the shorter overlap so long lags are not penalised for it.
        let acf: Vec<(usize, f64)> = (2..=n / 2)
            .map(|lag| {
                let r: f64 = (lag..n).map(|i| (x[i] - mean) * (x[i - lag] - mean)).sum::<f64>() / var;
                (lag, (r * n as f64 / (n - lag) as f64).min(1.0))
            })
            .collect();
        let best = acf.iter().map(|&(_, r)| r).fold(0.0, f64::max);
        if best < self.config.min_periodicity {
            return (None, 0.0);
        }
        // Multiples of the period correlate as well as the period itself: take the shortest lag
        // that comes close to the best.
        acf.into_iter().find(|&(_, r)| r >= 0.9 * best).map_or((None, 0.0), |(lag, r)| (Some(lag), r))
    }

    /// Forecast the next `horizon` buckets at `now_s` (the caller's clock) from samples in any
    /// order, using only those [`Self::window`] keeps. Empty history gives an empty forecast with
    /// zero peak.
    pub fn forecast_at(&self, samples: &[LoadSample], now_s: f64) -> Forecast {
        self.forecast(&self.window(samples, now_s).0)
    }

    /// Forecast the next `horizon` buckets from samples (any order), the newest sample's time taken
    /// as now (the arena, whose history is its own). A function with a clock calls
    /// [`Self::forecast_at`], so that a sample stamped in the future cannot stand for now. Empty
    /// history gives an empty forecast with zero peak.
    pub fn forecast(&self, samples: &[LoadSample]) -> Forecast {
        let buckets = self.bucketise(samples);
        let now = samples.iter().map(|s| s.time_s).filter(|t| t.is_finite()).fold(0.0, f64::max);
        let features = self.features(&buckets, now);
        let c = &self.config;
        if buckets.is_empty() {
            return Forecast { features, expected: vec![0.0; c.horizon], upper: vec![0.0; c.horizon] };
        }
        // Damped Holt, collecting one-step residuals for the margin.
        let mut level = buckets[0];
        let mut trend = if buckets.len() > 1 { buckets[1] - buckets[0] } else { 0.0 };
        let mut residuals = Vec::with_capacity(buckets.len());
        for &y in &buckets[1..] {
            let predicted = level + c.damping * trend;
            residuals.push(y - predicted);
            let new_level = c.level_alpha * y + (1.0 - c.level_alpha) * predicted;
            trend = c.trend_beta * (new_level - level) + (1.0 - c.trend_beta) * c.damping * trend;
            level = new_level;
        }
        let (_, resid_sd) = mean_std(&residuals[residuals.len().saturating_sub(c.window)..]);
        let mut expected = Vec::with_capacity(c.horizon);
        let mut damp = 0.0;
        for h in 1..=c.horizon {
            damp += c.damping.powi(h as i32);
            let holt = level + damp * trend;
            let value = match features.period_buckets {
                Some(p) => {
                    // The bucket one period before the one being forecast, if history holds it.
                    let idx = buckets.len() as isize + h as isize - 1 - p as isize;
                    let seasonal =
                        if idx >= 0 && (idx as usize) < buckets.len() { buckets[idx as usize] } else { holt };
                    features.periodicity * seasonal + (1.0 - features.periodicity) * holt
                }
                None => holt,
            };
            expected.push(value.max(0.0));
        }
        let upper = expected
            .iter()
            .enumerate()
            .map(|(h, v)| v + c.margin_sd * resid_sd * ((h + 1) as f64).sqrt())
            .collect();
        Forecast { features, expected, upper }
    }
}

/// Load samples the prewarmer forecasts from: two hours at one per second at most.
pub const PREWARM_HISTORY: usize = 7_200;
/// Largest `history_buckets` a forecaster accepts: a week of minutes.
pub const MAX_HISTORY_BUCKETS: usize = 7 * 1_440;
/// Utilisation the prewarmer sizes warm capacity for, by default.
pub const PREWARM_UTILISATION: f64 = 0.8;
/// Event size assumed when the job has not reported one, bytes (the embedded traces' typical size).
pub const DEFAULT_BYTES_PER_EVENT: f64 = 2_500.0;

/// One prewarm decision: the forecast, the executors today's load needs, and the warm workers asked
/// for beyond them.
#[derive(Debug, Clone, PartialEq)]
pub struct PrewarmPlan {
    pub forecast: Forecast,
    pub baseline_executors: u32,
    pub workers: u32,
}

/// Plan the prewarm from the load history (any order): the prewarmer function and the tournament's
/// learned bundle both call this. The function, which has a clock, passes the samples
/// [`LoadForecaster::window`] keeps at its time.
pub fn plan_prewarm(
    forecaster: &LoadForecaster,
    samples: &[LoadSample],
    executor_rate: f64,
    utilisation: f64,
    max_prewarm: u32,
) -> PrewarmPlan {
    plan_from(forecaster.forecast(samples), executor_rate, utilisation, max_prewarm)
}

fn plan_from(forecast: Forecast, executor_rate: f64, utilisation: f64, max_prewarm: u32) -> PrewarmPlan {
    let now_rate = forecast.features.rolling_mean;
    let baseline_executors = if now_rate > 0.0 && executor_rate > 0.0 && utilisation > 0.0 {
        (now_rate / (executor_rate * utilisation)).ceil() as u32
    } else {
        0
    };
    let workers =
        prewarm_workers(forecast.peak(), executor_rate, utilisation, baseline_executors, max_prewarm);
    PrewarmPlan { forecast, baseline_executors, workers }
}

/// Pre-initialised workers to hold for a forecast: enough to carry the forecast peak at the target
/// utilisation, capped; zero when the peak is within what `baseline_executors` already carry (quiet).
pub fn prewarm_workers(
    peak_rate: f64,
    executor_rate: f64,
    utilisation: f64,
    baseline_executors: u32,
    max_prewarm: u32,
) -> u32 {
    if !(peak_rate.is_finite() && executor_rate > 0.0 && utilisation > 0.0) {
        return 0;
    }
    let needed = (peak_rate / (executor_rate * utilisation)).ceil();
    let extra = needed - baseline_executors as f64;
    if extra <= 0.0 {
        0
    } else {
        (extra as u32).min(max_prewarm)
    }
}

fn mean_std(x: &[f64]) -> (f64, f64) {
    if x.is_empty() {
        return (0.0, 0.0);
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(f: impl Fn(usize) -> f64, minutes: usize) -> Vec<LoadSample> {
        (0..minutes).map(|m| LoadSample { time_s: 1_700_000_000.0 + m as f64 * 60.0, rate: f(m) }).collect()
    }

    #[test]
    fn a_rising_ramp_is_forecast_higher_than_now() {
        let f = LoadForecaster::default().forecast(&samples(|m| 1_000.0 + 100.0 * m as f64, 30));
        assert!(f.features.velocity > 90.0 && f.features.velocity < 110.0, "{:?}", f.features);
        assert!(f.expected[0] > 3_900.0, "{:?}", f.expected);
        assert!(f.peak() >= f.expected[4]);
    }

    #[test]
    fn a_periodic_load_finds_its_period_and_anticipates_the_next_peak() {
        // A peak every 10 minutes lasting 2 minutes.
        let load = |m: usize| if m % 10 < 2 { 5_000.0 } else { 1_000.0 };
        let history = samples(load, 48);
        let f = LoadForecaster::default().forecast(&history);
        assert_eq!(f.features.period_buckets, Some(10), "{:?}", f.features);
        // Minutes 48..53: the next peak starts at minute 50.
        assert!(f.expected[2] > 3_000.0, "{:?}", f.expected);
        assert!(f.expected[0] < 2_500.0, "{:?}", f.expected);
    }

    /// Thirty minutes of a ramp ending at `NOW`, newest first as the prewarmer reads the history.
    const NOW: f64 = 1_700_000_000.0 + 30.0 * 60.0;
    fn recent() -> Vec<LoadSample> {
        let mut s = samples(|m| 1_000.0 + 100.0 * m as f64, 30);
        s.reverse();
        s
    }

    #[test]
    fn one_sample_stamped_a_year_back_neither_stretches_nor_pushes_out_the_history() {
        // It made 525,600 one-minute buckets and a quadratic autocorrelation over them (255 s).
        let f = LoadForecaster::default();
        let mut history = recent();
        history.push(LoadSample { time_s: NOW - 365.0 * 86_400.0, rate: 50.0 });
        let clean = f.forecast_at(&recent(), NOW);
        assert_eq!(f.window(&history, NOW), (recent(), 1));
        assert_eq!(f.forecast_at(&history, NOW), clean);
        // Without a clock too (the arena's call): bucketise keeps the newest max_buckets at most.
        assert_eq!(f.bucketise(&history).len(), 30);
        assert_eq!(f.forecast(&history), clean);
        // The work is bounded by the bucket count whatever the spread of the input.
        let spread: Vec<LoadSample> = (0..10_000)
            .map(|i| LoadSample { time_s: NOW - i as f64 * 3_153.6, rate: 1_000.0 + (i % 7) as f64 })
            .collect();
        assert!(f.bucketise(&spread).len() <= f.max_buckets());
        assert_eq!(f.max_buckets(), 2 * 1_440 + 5 + 1);
        let (kept, ignored) = f.window(&spread, NOW);
        assert!(f.bucketise(&kept).len() <= 2 * 1_440 && ignored > 9_000, "{} kept", kept.len());
    }

    #[test]
    fn a_timestamp_of_zero_or_far_ahead_is_ignored_and_the_recent_samples_are_kept() {
        let f = LoadForecaster::default();
        let clean = f.forecast_at(&recent(), NOW);
        assert!(clean.features.rolling_mean > 3_000.0, "{:?}", clean.features);
        for t in [0.0, -1e300, NOW + 86_400.0, 1e300, f64::INFINITY, f64::NAN] {
            let mut history = recent();
            history.insert(3, LoadSample { time_s: t, rate: 123.0 });
            assert_eq!(f.window(&history, NOW).1, 1, "{t}");
            assert_eq!(f.forecast_at(&history, NOW), clean, "{t}");
        }
        // Zero without a clock: it is older than the bucket bound, so dropped, not the recent ones.
        let mut history = recent();
        history.push(LoadSample { time_s: 0.0, rate: 123.0 });
        assert_eq!(f.forecast(&history), clean);
        // A sample within the allowed skew ahead counts.
        let mut history = recent();
        history.push(LoadSample { time_s: NOW + 200.0, rate: 9_000.0 });
        assert_eq!(f.window(&history, NOW).1, 0);
    }

    #[test]
    fn a_forecaster_rejects_an_unbounded_history() {
        assert!(LoadForecaster::new(ForecastConfig {
            history_buckets: MAX_HISTORY_BUCKETS + 1,
            ..Default::default()
        })
        .is_err());
        assert!(LoadForecaster::new(ForecastConfig { history_buckets: 1, ..Default::default() }).is_err());
        assert!(
            LoadForecaster::new(ForecastConfig { max_skew_s: f64::INFINITY, ..Default::default() }).is_err()
        );
        assert!(LoadForecaster::new(ForecastConfig::default()).is_ok());
    }

    #[test]
    fn quiet_gives_no_prewarm_and_bad_samples_are_skipped() {
        let mut s = samples(|_| 1_000.0, 20);
        s.push(LoadSample { time_s: f64::NAN, rate: 1e12 });
        s.push(LoadSample { time_s: 1_700_000_000.0, rate: -5.0 });
        let f = LoadForecaster::default().forecast(&s);
        assert!((f.peak() - 1_000.0).abs() < 1.0, "{}", f.peak());
        assert_eq!(prewarm_workers(f.peak(), 400.0, 0.8, 4, 16), 0);
        assert_eq!(prewarm_workers(8_000.0, 400.0, 0.8, 4, 16), 16);
        assert_eq!(prewarm_workers(4_000.0, 400.0, 0.8, 4, 16), 9);
        assert!(LoadForecaster::default().forecast(&[]).expected.iter().all(|v| *v == 0.0));
    }
}
