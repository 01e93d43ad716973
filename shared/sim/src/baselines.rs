//! Baseline autoscalers for the realistic arena, each configured with its system's documented defaults.
//! All of them use Spark's default shuffle (local disk, LZ4) and 16 GB executors: they scale compute
//! only, as the systems they imitate do.

use crate::realistic::{EpisodeInfo, Policy};
use control::{Observation, ScalingAction};
use std::collections::VecDeque;

/// Utilisation the sizing baselines aim for: the 80 % CPU target of the HPA default, so that static
/// and predictive sizing keep the same headroom as the reactive scalers.
pub const TARGET_UTILISATION: f64 = 0.8;

fn executors_for(rate: f64, per_executor: f64, max: u32) -> u32 {
    if per_executor <= 0.0 {
        return max;
    }
    ((rate / per_executor).ceil() as u32).clamp(1, max)
}

/// Static deployment provisioned for the trace's mean rate at the target utilisation.
#[derive(Debug, Default)]
pub struct Fixed {
    executors: u32,
}

impl Policy for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.executors = executors_for(
            info.mean_load,
            info.nominal_executor_rate * TARGET_UTILISATION,
            info.max_executors,
        );
    }
    fn decide(&mut self, _obs: &Observation) -> ScalingAction {
        ScalingAction::spark_default(self.executors)
    }
}

/// Kubernetes HPA defaults (kube-controller-manager and autoscaling/v2 docs): 15 s sync period, 10 %
/// tolerance, scale-down stabilisation window of 300 s (the highest recommendation in the window wins),
/// scale-up limited to max(+100 %, +4 pods) per 15 s.
#[derive(Debug)]
pub struct HpaScaler {
    name: &'static str,
    /// Utilisation target (0.8 = 80 % CPU).
    pub target: f64,
    pub sync_s: f64,
    pub tolerance: f64,
    pub stabilisation_s: f64,
    max: u32,
    last_sync: f64,
    desired: u32,
    recommendations: VecDeque<(f64, u32)>,
    metric: HpaMetric,
}

#[derive(Debug, Clone, Copy)]
enum HpaMetric {
    /// CPU utilisation against `target` (the dexter baseline).
    Cpu,
    /// KEDA's Kafka scaler: consumer lag over `lag_threshold` per replica, polled every 30 s.
    KafkaLag { lag_threshold: f64 },
}

impl HpaScaler {
    /// HPA on CPU at 80 % ("dexter").
    pub fn dexter() -> Self {
        Self::new("dexter", HpaMetric::Cpu, 0.8, 15.0)
    }

    /// KEDA Kafka scaler (polling interval 30 s, HPA underneath). `lagThreshold` is set per episode
    /// to the lag one executor drains in 5 s, since KEDA's default of 10 messages is meant for small
    /// consumer groups.
    pub fn keda() -> Self {
        Self::new("keda", HpaMetric::KafkaLag { lag_threshold: 0.0 }, 1.0, 30.0)
    }

    fn new(name: &'static str, metric: HpaMetric, target: f64, sync_s: f64) -> Self {
        Self {
            name,
            target,
            sync_s,
            tolerance: 0.1,
            stabilisation_s: 300.0,
            max: 1,
            last_sync: f64::NEG_INFINITY,
            desired: 1,
            recommendations: VecDeque::new(),
            metric,
        }
    }
}

impl Policy for HpaScaler {
    fn name(&self) -> &str {
        self.name
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.max = info.max_executors;
        self.last_sync = f64::NEG_INFINITY;
        self.desired = 0;
        self.recommendations.clear();
        if let HpaMetric::KafkaLag { lag_threshold } = &mut self.metric {
            *lag_threshold = (info.nominal_executor_rate * 5.0).max(1.0);
        }
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let current = obs.running_executors.max(1);
        if self.desired == 0 {
            self.desired = current;
        }
        if obs.time_s - self.last_sync >= self.sync_s {
            self.last_sync = obs.time_s;
            let raw = match self.metric {
                HpaMetric::Cpu => {
                    let ratio = obs.cpu_utilisation / self.target;
                    if (ratio - 1.0).abs() <= self.tolerance {
                        current
                    } else {
                        (current as f64 * ratio).ceil() as u32
                    }
                }
                HpaMetric::KafkaLag { lag_threshold } => (obs.backlog_events / lag_threshold).ceil() as u32,
            }
            .clamp(1, self.max);
            // Scale-up limit: the larger of doubling and +4 per period.
            let up_limit = (current * 2).max(current + 4);
            let raw = raw.min(up_limit);
            self.recommendations.push_back((obs.time_s, raw));
            while let Some(&(ts, _)) = self.recommendations.front() {
                if obs.time_s - ts > self.stabilisation_s {
                    self.recommendations.pop_front();
                } else {
                    break;
                }
            }
            let stabilised = self.recommendations.iter().map(|r| r.1).max().unwrap_or(raw);
            self.desired = if raw > current { raw } else { stabilised.min(current.max(raw)) };
        }
        ScalingAction::spark_default(self.desired)
    }
}

/// Seer-like linear predictive scaler: least-squares trend over the last 60 s of input rate,
/// extrapolated one cold start ahead, divided by one executor's rate at the target utilisation.
#[derive(Debug, Default)]
pub struct Seer {
    history: VecDeque<(f64, f64)>,
    per_executor: f64,
    horizon: f64,
    max: u32,
}

impl Seer {
    const WINDOW_S: f64 = 60.0;
}

impl Policy for Seer {
    fn name(&self) -> &str {
        "seer"
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.history.clear();
        self.per_executor = info.nominal_executor_rate * TARGET_UTILISATION;
        self.horizon = info.cold_start_mean_s;
        self.max = info.max_executors;
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        self.history.push_back((obs.time_s, obs.input_rate));
        while self.history.front().is_some_and(|&(t, _)| obs.time_s - t > Self::WINDOW_S) {
            self.history.pop_front();
        }
        let n = self.history.len() as f64;
        let (sx, sy) = self.history.iter().fold((0.0, 0.0), |a, &(x, y)| (a.0 + x, a.1 + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxy, sxx) = self
            .history
            .iter()
            .fold((0.0, 0.0), |a, &(x, y)| (a.0 + (x - mx) * (y - my), a.1 + (x - mx) * (x - mx)));
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let forecast = (my + slope * (obs.time_s + self.horizon - mx)).max(0.0);
        ScalingAction::spark_default(executors_for(forecast, self.per_executor, self.max))
    }
}

/// Spark dynamic allocation (Spark configuration docs): executors are requested when tasks have been
/// pending for `schedulerBacklogTimeout` (1 s) and then every `sustainedSchedulerBacklogTimeout` (1 s),
/// doubling the number added each round; capped at what the pending work needs; an executor idle for
/// `executorIdleTimeout` (60 s) is removed.
#[derive(Debug, Default)]
pub struct SparkDra {
    to_add: u32,
    target: u32,
    idle_since: Option<f64>,
    per_executor: f64,
    interval: usize,
    max: u32,
}

impl SparkDra {
    const IDLE_TIMEOUT_S: f64 = 60.0;
}

impl Policy for SparkDra {
    fn name(&self) -> &str {
        "spark-dra"
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.to_add = 1;
        self.target = 0;
        self.idle_since = None;
        self.per_executor = info.nominal_executor_rate;
        self.interval = info.decision_interval_s;
        self.max = info.max_executors;
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let have = obs.running_executors + obs.pending_executors;
        if self.target == 0 {
            self.target = have.max(1);
        }
        // Work that needs executors: what arrives plus draining the backlog within one interval.
        let needed_rate = obs.input_rate + obs.backlog_events / self.interval as f64;
        let max_needed = executors_for(needed_rate, self.per_executor, self.max);
        if obs.backlog_events > 0.0 {
            // One round per second of sustained backlog since the last decision.
            for _ in 0..self.interval {
                if self.target >= max_needed {
                    break;
                }
                self.target = (self.target + self.to_add).min(max_needed);
                self.to_add = self.to_add.saturating_mul(2);
            }
            self.idle_since = None;
        } else {
            self.to_add = 1;
            let busy = executors_for(obs.input_rate, self.per_executor, self.max);
            if busy < self.target {
                let since = *self.idle_since.get_or_insert(obs.time_s);
                if obs.time_s - since >= Self::IDLE_TIMEOUT_S {
                    self.target = busy;
                    self.idle_since = None;
                }
            } else {
                self.idle_since = None;
            }
        }
        ScalingAction::spark_default(self.target.clamp(1, self.max))
    }
}

/// Any baseline with its shuffle placed by [`control::TierRouter`], the code shuffle-router runs.
/// The arena tracks one temperature for all shuffle data (reuse probability T, read 1 + 2T times
/// over the job's state window); the router sees that as a block of the window's age with that
/// many reads, written during a burst when the edge signal is up.
pub struct Tiered<P: Policy> {
    inner: P,
    name: String,
    router: control::TierRouter,
}

impl<P: Policy> Tiered<P> {
    /// Seconds of input a Spark stateful job keeps and re-reads (the arena's state window).
    const WINDOW_S: f64 = 120.0;

    pub fn new(inner: P) -> Self {
        let name = format!("{}+tiers", inner.name());
        Self { inner, name, router: control::TierRouter::default() }
    }
}

impl<P: Policy> Policy for Tiered<P> {
    fn name(&self) -> &str {
        &self.name
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.inner.reset(info);
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let action = self.inner.decide(obs);
        let reads = (1.0 + 2.0 * obs.data_temperature.clamp(0.0, 1.0)).round() as u64;
        let stats = control::BlockStats {
            access_count: reads,
            age_s: Self::WINDOW_S,
            burst: obs.burst_signal,
            archival: false,
        };
        let placement = self.router.place(&stats);
        ScalingAction { tier: placement.tier, compression: placement.compression, ..action }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_model::Tier;

    #[test]
    fn tiered_baselines_place_shuffle_with_the_shuffle_router_code() {
        let arena = crate::Arena::embedded();
        let trace = traces::builtin(traces::BuiltinTrace::StepBurst, 1);
        let episode = crate::Episode::new(&arena, &trace, 1).unwrap();
        let mut policy = Tiered::new(Fixed::default());
        policy.reset(&arena.episode_info(&trace, 1));
        let mut obs = episode.observe();
        obs.burst_signal = true;
        assert_eq!(policy.decide(&obs).tier, Tier::Redis, "burst: hot tier");
        obs.burst_signal = false;
        obs.data_temperature = 0.0;
        let cold = policy.decide(&obs);
        let router = control::TierRouter::default();
        let expected = router.place(&control::BlockStats {
            access_count: 1,
            age_s: 120.0,
            burst: false,
            archival: false,
        });
        assert_eq!((cold.tier, cold.compression), (expected.tier, expected.compression));
        assert_eq!(policy.name(), "fixed+tiers");
    }
}
