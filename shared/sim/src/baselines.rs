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

/// The `spark.dynamicAllocation.*` settings the arena's model of Spark dynamic allocation reads. The
/// defaults are Spark's own (the "Dynamic Allocation" table of Spark's configuration page): ratio 1,
/// 1 s backlog timeouts, 60 s idle timeout, no minimum, no maximum but the arena's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicAllocation {
    /// `executorAllocationRatio`: the share of the executors full parallelism would need that Spark
    /// asks for (1 = all of them).
    pub executor_allocation_ratio: f64,
    /// `schedulerBacklogTimeout`: seconds tasks must have been pending before the first request.
    pub scheduler_backlog_timeout_s: f64,
    /// `sustainedSchedulerBacklogTimeout`: seconds between later requests while the backlog lasts
    /// (each one asks for twice as many executors as the one before).
    pub sustained_scheduler_backlog_timeout_s: f64,
    /// `executorIdleTimeout`: seconds an executor stays idle before it is released.
    pub executor_idle_timeout_s: f64,
    /// `minExecutors`.
    pub min_executors: u32,
    /// `maxExecutors`; `None` for the arena's maximum.
    pub max_executors: Option<u32>,
}

impl Default for DynamicAllocation {
    fn default() -> Self {
        Self {
            executor_allocation_ratio: 1.0,
            scheduler_backlog_timeout_s: 1.0,
            sustained_scheduler_backlog_timeout_s: 1.0,
            executor_idle_timeout_s: 60.0,
            min_executors: 0,
            max_executors: None,
        }
    }
}

impl DynamicAllocation {
    /// The settings of an EMR Serverless scaling profile, as far as AWS's scaling-profiles page
    /// (EMR Serverless User Guide, "Using Scaling Profiles") is known to us: `performance-optimized`
    /// adds executors as fast as Spark can (Spark's defaults); `balanced` and `cost-optimized` aim
    /// for half and a third of those executors (the ratio), and wait longer between requests by
    /// amounts we could not read, so they keep Spark's timeouts here. Against the real profiles these
    /// two react faster: their events over the SLA here are a lower bound. A user who knows the real
    /// values (a job's Spark UI, Environment tab, lists every `spark.dynamicAllocation.*` the profile
    /// wrote) passes them with [`DynamicAllocation::parse`].
    pub fn emr_profile(name: &str) -> Option<Self> {
        let ratio = match name {
            "performance-optimized" => 1.0,
            "balanced" => 0.5,
            "cost-optimized" => 1.0 / 3.0,
            _ => return None,
        };
        Some(Self { executor_allocation_ratio: ratio, ..Self::default() })
    }

    /// Spark's settings with the properties in `spec` changed: `property=value` pairs joined by `:`,
    /// each property named as after `spark.dynamicAllocation.` (`executorAllocationRatio=0.5:
    /// schedulerBacklogTimeout=5s`); times in Spark's form (`500ms`, `5s`, `2min`, `1h`, a bare number
    /// being seconds). An unknown property, a value that is not one, or settings Spark would refuse
    /// (a ratio outside (0, 1], a maximum below the minimum) are errors naming the pair.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for pair in spec.split(':').filter(|p| !p.trim().is_empty()) {
            let (key, value) =
                pair.split_once('=').ok_or_else(|| format!("`{pair}` is not property=value"))?;
            let (key, value) = (key.trim(), value.trim());
            let key = key.strip_prefix("spark.dynamicAllocation.").unwrap_or(key);
            let count =
                || value.parse::<u32>().map_err(|_| format!("{key}: `{value}` is not a whole number"));
            match key {
                "executorAllocationRatio" => {
                    let ratio: f64 =
                        value.parse().map_err(|_| format!("{key}: `{value}` is not a number"))?;
                    if !(ratio > 0.0 && ratio <= 1.0) {
                        return Err(format!("{key}: {value} is outside (0, 1]"));
                    }
                    out.executor_allocation_ratio = ratio;
                }
                "schedulerBacklogTimeout" => out.scheduler_backlog_timeout_s = spark_seconds(key, value)?,
                "sustainedSchedulerBacklogTimeout" => {
                    out.sustained_scheduler_backlog_timeout_s = spark_seconds(key, value)?
                }
                "executorIdleTimeout" => out.executor_idle_timeout_s = spark_seconds(key, value)?,
                "minExecutors" => out.min_executors = count()?,
                "maxExecutors" => out.max_executors = Some(count()?),
                _ => {
                    return Err(format!(
                        "unknown property `{key}` (known: executorAllocationRatio, schedulerBacklogTimeout, \
                         sustainedSchedulerBacklogTimeout, executorIdleTimeout, minExecutors, maxExecutors)"
                    ))
                }
            }
        }
        if let Some(max) = out.max_executors {
            if max < out.min_executors.max(1) {
                return Err(format!("maxExecutors {max} is below minExecutors {} (or 1)", out.min_executors));
            }
        }
        Ok(out)
    }
}

/// A Spark time setting in seconds: a number with `ms`, `s`, `m`/`min` or `h`, or a bare number of
/// seconds; never negative, never more than a day.
fn spark_seconds(key: &str, value: &str) -> Result<f64, String> {
    let split = value.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3_600.0,
        _ => return Err(format!("{key}: `{value}` has an unknown time unit `{unit}`")),
    };
    let n: f64 = number.trim().parse().map_err(|_| format!("{key}: `{value}` is not a time"))?;
    let seconds = n * scale;
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{key}: {value} must be between 0 and one day"));
    }
    Ok(seconds)
}

/// Spark dynamic allocation, as a streaming job's driver runs it: once tasks have been pending for
/// `schedulerBacklogTimeout`, executors are requested, then again every
/// `sustainedSchedulerBacklogTimeout` while the backlog lasts, doubling the number added each round;
/// the target is capped at what the pending and running work needs times `executorAllocationRatio`
/// (Spark's "max executors needed"), and an executor idle for `executorIdleTimeout` is released.
/// Pending work is counted as the rate that would drain the backlog within one decision interval on
/// top of the arrivals, one executor's share being its nominal rate.
#[derive(Debug)]
pub struct SparkDra {
    name: String,
    settings: DynamicAllocation,
    to_add: u32,
    target: u32,
    /// When the next request is due while the backlog lasts.
    next_request_s: Option<f64>,
    idle_since: Option<f64>,
    per_executor: f64,
    interval: usize,
    max: u32,
}

impl Default for SparkDra {
    fn default() -> Self {
        Self::new("spark-dra", DynamicAllocation::default())
    }
}

impl SparkDra {
    pub fn new(name: impl Into<String>, settings: DynamicAllocation) -> Self {
        Self {
            name: name.into(),
            settings,
            to_add: 1,
            target: 0,
            next_request_s: None,
            idle_since: None,
            per_executor: 1.0,
            interval: 1,
            max: 1,
        }
    }

    /// EMR Serverless's scaling profile `profile` (see [`DynamicAllocation::emr_profile`]), named
    /// `emr-<profile>`.
    pub fn emr_profile(profile: &str) -> Option<Self> {
        DynamicAllocation::emr_profile(profile).map(|s| Self::new(format!("emr-{profile}"), s))
    }

    /// Executors `rate` events/s keep busy, times the allocation ratio, within the settings' bounds.
    fn needed(&self, rate: f64) -> u32 {
        let full = if self.per_executor > 0.0 { rate / self.per_executor } else { self.max as f64 };
        let scaled = (full * self.settings.executor_allocation_ratio).ceil() as u32;
        scaled.clamp(self.settings.min_executors.max(1), self.max)
    }
}

impl Policy for SparkDra {
    fn name(&self) -> &str {
        &self.name
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.to_add = 1;
        self.target = 0;
        self.next_request_s = None;
        self.idle_since = None;
        self.per_executor = info.nominal_executor_rate;
        self.interval = info.decision_interval_s.max(1);
        self.max =
            self.settings.max_executors.map_or(info.max_executors, |m| m.min(info.max_executors)).max(1);
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        let have = obs.running_executors + obs.pending_executors;
        if self.target == 0 {
            self.target = have.max(1);
        }
        let s = self.settings;
        // Work that needs executors: what arrives plus draining the backlog within one interval.
        let max_needed = self.needed(obs.input_rate + obs.backlog_events / self.interval as f64);
        if obs.backlog_events > 0.0 {
            // The backlog is taken to have started with the interval it was first seen in; requests
            // fall due at its timeout and then at every sustained timeout up to now.
            let first_seen = obs.time_s - self.interval as f64;
            let mut due = *self.next_request_s.get_or_insert(first_seen + s.scheduler_backlog_timeout_s);
            while due <= obs.time_s + 1e-9 {
                if self.target >= max_needed {
                    break;
                }
                self.target = (self.target + self.to_add).min(max_needed);
                self.to_add = self.to_add.saturating_mul(2);
                // A zero timeout asks once per second, as Spark's allocation loop would at most.
                due += s.sustained_scheduler_backlog_timeout_s.max(1.0);
            }
            self.next_request_s = Some(due);
            self.idle_since = None;
        } else {
            self.to_add = 1;
            self.next_request_s = None;
            let busy = self.needed(obs.input_rate);
            if busy < self.target {
                let since = *self.idle_since.get_or_insert(obs.time_s);
                if obs.time_s - since >= s.executor_idle_timeout_s {
                    self.target = busy;
                    self.idle_since = None;
                }
            } else {
                self.idle_since = None;
            }
        }
        ScalingAction::spark_default(self.target.clamp(s.min_executors.max(1), self.max))
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
    fn dynamic_allocation_settings_parse_as_spark_writes_them_and_bad_ones_are_named() {
        let s = DynamicAllocation::parse(
            "executorAllocationRatio=0.5:spark.dynamicAllocation.schedulerBacklogTimeout=500ms:\
             sustainedSchedulerBacklogTimeout=5:executorIdleTimeout=2min:minExecutors=2:maxExecutors=40",
        )
        .unwrap();
        assert_eq!(
            s,
            DynamicAllocation {
                executor_allocation_ratio: 0.5,
                scheduler_backlog_timeout_s: 0.5,
                sustained_scheduler_backlog_timeout_s: 5.0,
                executor_idle_timeout_s: 120.0,
                min_executors: 2,
                max_executors: Some(40),
            }
        );
        assert_eq!(DynamicAllocation::parse("").unwrap(), DynamicAllocation::default());
        for (spec, names) in [
            ("executorAllocationRatio=0", "outside (0, 1]"),
            ("executorAllocationRatio=x", "not a number"),
            ("executorIdleTimeout=5parsecs", "unknown time unit `parsecs`"),
            ("executorIdleTimeout=-1s", "between 0 and one day"),
            ("maxExecutors=3:minExecutors=4", "below minExecutors"),
            ("minExecutors=1.5", "not a whole number"),
            ("shuffleTracking.enabled=true", "unknown property `shuffleTracking.enabled`"),
            ("executorAllocationRatio", "not property=value"),
        ] {
            let err = DynamicAllocation::parse(spec).unwrap_err();
            assert!(err.contains(names), "{spec}: {err}");
        }
        assert_eq!(
            DynamicAllocation::emr_profile("performance-optimized"),
            Some(DynamicAllocation::default())
        );
        assert_eq!(DynamicAllocation::emr_profile("balanced").unwrap().executor_allocation_ratio, 0.5);
        assert!(DynamicAllocation::emr_profile("turbo").is_none());
    }

    /// Runs a dynamic-allocation baseline through a backlog that appears and lasts, then an idle
    /// spell, and returns the executors asked for at each decision.
    fn dra_targets(settings: DynamicAllocation, backlog: &[(f64, f64)]) -> Vec<u32> {
        let arena = crate::Arena::embedded();
        let trace = traces::builtin(traces::BuiltinTrace::StepBurst, 1);
        let mut info = arena.episode_info(&trace, 1);
        (info.nominal_executor_rate, info.decision_interval_s, info.max_executors) = (100.0, 5, 64);
        let mut dra = SparkDra::new("t", settings);
        dra.reset(&info);
        let mut obs = crate::Episode::new(&arena, &trace, 1).unwrap().observe();
        (obs.running_executors, obs.pending_executors) = (1, 0);
        backlog
            .iter()
            .enumerate()
            .map(|(i, &(input, queued))| {
                (obs.time_s, obs.input_rate, obs.backlog_events) = (5.0 * (i + 1) as f64, input, queued);
                dra.decide(&obs).executors
            })
            .collect()
    }

    #[test]
    fn dynamic_allocation_ramps_by_doubling_after_its_timeouts_and_the_ratio_caps_the_target() {
        // 3,000 events/s with a 5,000-event queue need (3,000 + 5,000 / 5) / 100 = 40 executors.
        let load = [(3_000.0, 5_000.0); 4];
        // Spark's defaults: a request every second of backlog, 1 + 2 + 4 + 8 + 16 added in the first
        // interval (capped at 40 on the second).
        assert_eq!(dra_targets(DynamicAllocation::default(), &load), [32, 40, 40, 40]);
        // Half of that at ratio 0.5, a third (rounded up) at 1/3.
        let half = DynamicAllocation { executor_allocation_ratio: 0.5, ..Default::default() };
        assert_eq!(dra_targets(half, &load)[3], 20);
        let third = DynamicAllocation::emr_profile("cost-optimized").unwrap();
        assert_eq!(dra_targets(third, &load)[3], 14);
        // A 4 s first timeout and 10 s sustained one: one request in the first interval, one in the
        // third, doubling.
        let slow = DynamicAllocation {
            scheduler_backlog_timeout_s: 4.0,
            sustained_scheduler_backlog_timeout_s: 10.0,
            ..Default::default()
        };
        assert_eq!(dra_targets(slow, &load), [2, 2, 4, 4]);
        // Idle executors go after the idle timeout, to what the input needs.
        let fall = [(3_000.0, 5_000.0), (3_000.0, 5_000.0), (500.0, 0.0), (500.0, 0.0), (500.0, 0.0)];
        let quick = DynamicAllocation { executor_idle_timeout_s: 5.0, ..Default::default() };
        assert_eq!(dra_targets(quick, &fall), [32, 40, 40, 5, 5]);
        // A floor and a ceiling of the user's.
        let bounded = DynamicAllocation { min_executors: 8, max_executors: Some(12), ..quick };
        assert_eq!(dra_targets(bounded, &fall), [12, 12, 12, 8, 8]);
    }

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
