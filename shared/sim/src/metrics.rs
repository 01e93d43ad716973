//! Tournament metrics: per-event latency percentiles from a log-bucket histogram, SLA violations per
//! event and per step, cost, stability, CPU utilisation, throughput.

/// Weighted latency histogram with 1 % wide log buckets from 0.1 ms to about 3 hours; the error of a
/// percentile is under 1 %.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Vec<f64>,
    total: f64,
}

const MIN_MS: f64 = 0.1;
const GROWTH: f64 = 1.01;
const BUCKETS: usize = 1_800;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { buckets: vec![0.0; BUCKETS], total: 0.0 }
    }
}

impl LatencyHistogram {
    fn bucket(ms: f64) -> usize {
        // NaN and anything at or below the floor land in the first bucket.
        if ms.is_nan() || ms <= MIN_MS {
            return 0;
        }
        (((ms / MIN_MS).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1)
    }

    fn value(bucket: usize) -> f64 {
        // Geometric middle of the bucket.
        MIN_MS * GROWTH.powf(bucket as f64 + 0.5)
    }

    /// Record `weight` events of latency `ms`.
    pub fn add(&mut self, ms: f64, weight: f64) {
        if weight > 0.0 && weight.is_finite() {
            self.buckets[Self::bucket(ms)] += weight;
            self.total += weight;
        }
    }

    pub fn total(&self) -> f64 {
        self.total
    }

    /// The `q` quantile (0..1) in ms; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let target = q.clamp(0.0, 1.0) * self.total;
        let mut seen = 0.0;
        for (i, w) in self.buckets.iter().enumerate() {
            seen += w;
            if seen >= target && *w > 0.0 {
                return Self::value(i);
            }
        }
        Self::value(BUCKETS - 1)
    }
}

/// Population standard deviation, streamed (Welford).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunningStd {
    n: f64,
    mean: f64,
    m2: f64,
}

impl RunningStd {
    pub fn add(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }
    pub fn mean(&self) -> f64 {
        self.mean
    }
    /// Population variance; 0 before the first value.
    pub fn var(&self) -> f64 {
        if self.n > 0.0 {
            self.m2 / self.n
        } else {
            0.0
        }
    }
    /// Population standard deviation; 0 before the first value.
    pub fn std(&self) -> f64 {
        self.var().sqrt()
    }
    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.n as u64
    }
}

/// The scoreboard row of one policy on one episode (or averaged over episodes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub cost_usd: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Realistic arena: % of events over the SLA; seed-compat: % of steps.
    pub sla_violation_pct: f64,
    /// % of steps whose latency exceeds the SLA.
    pub sla_step_violation_pct: f64,
    /// Population std-dev of the executor count over the steps.
    pub stability: f64,
    pub cpu_util_pct: f64,
    pub throughput_mb_s: f64,
}

impl Scores {
    pub const CSV_HEADER: &'static str =
        "policy,cost_usd,p95_ms,p99_ms,sla_violation_pct,sla_step_violation_pct,stability,cpu_util_pct,throughput_mb_s";

    /// Mean of several episodes' scores.
    pub fn mean(all: &[Scores]) -> Scores {
        let n = all.len().max(1) as f64;
        let mut m = Scores::default();
        for s in all {
            m.cost_usd += s.cost_usd / n;
            m.p95_ms += s.p95_ms / n;
            m.p99_ms += s.p99_ms / n;
            m.sla_violation_pct += s.sla_violation_pct / n;
            m.sla_step_violation_pct += s.sla_step_violation_pct / n;
            m.stability += s.stability / n;
            m.cpu_util_pct += s.cpu_util_pct / n;
            m.throughput_mb_s += s.throughput_mb_s / n;
        }
        m
    }

    pub fn csv_row(&self, policy: &str) -> String {
        format!(
            "{policy},{:.4},{:.2},{:.2},{:.3},{:.3},{:.3},{:.2},{:.3}",
            self.cost_usd,
            self.p95_ms,
            self.p99_ms,
            self.sla_violation_pct,
            self.sla_step_violation_pct,
            self.stability,
            self.cpu_util_pct,
            self.throughput_mb_s
        )
    }
}

/// Linear-interpolation percentile of a sample (numpy's default), used by the seed-compat arena.
pub fn percentile_linear(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_one_percent() {
        let mut h = LatencyHistogram::default();
        for i in 1..=10_000 {
            h.add(i as f64, 1.0);
        }
        let p95 = h.quantile(0.95);
        assert!((p95 / 9_500.0 - 1.0).abs() < 0.01, "{p95}");
        let p50 = h.quantile(0.5);
        assert!((p50 / 5_000.0 - 1.0).abs() < 0.01, "{p50}");
    }

    #[test]
    fn weights_count() {
        let mut h = LatencyHistogram::default();
        h.add(10.0, 99.0);
        h.add(5_000.0, 1.0);
        assert!(h.quantile(0.95) < 11.0);
        assert!(h.quantile(0.999) > 4_900.0);
        assert_eq!(h.total(), 100.0);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile_linear(&mut v, 0.95), 4.8);
        let mut w = vec![10.0, 0.0];
        assert_eq!(percentile_linear(&mut w, 0.5), 5.0);
    }

    #[test]
    fn running_std_is_population_std() {
        let mut s = RunningStd::default();
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            s.add(x);
        }
        assert!((s.std() - 2.0).abs() < 1e-12);
        assert!((s.mean() - 5.0).abs() < 1e-12);
    }
}
