//! The feature builder: turns an [`Observation`] into the 13 normalised features the scaling policy
//! reads, and the policy's action indices back into a [`ScalingAction`]. The simulator and the
//! scaling-decision function both go through here, so the policy sees the same numbers in both.

use crate::{ControlError, Observation, ScalingAction, MEMORY_CHOICES_GB};
use latency_model::{Compression, CompressionProfile, LatencyModel, Processing, Tier};

/// Number of features the scaling policy reads.
pub const FEATURES: usize = 13;
/// Names of the features, in order (the model card lists them with their normalisation).
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "cpu_utilisation",
    "memory_utilisation",
    "backlog",
    "input_rate",
    "processing_rate",
    "running_executors",
    "pending_executors",
    "burst_signal",
    "predicted_load",
    "data_temperature",
    "shuffle_mb_per_s",
    "alpha",
    "beta",
];
/// Most executors a scaling policy ever asks for, and the top of its count scale (the arena's
/// and the deployment's own maximum are applied after, by the guardrails).
pub const POLICY_MAX_EXECUTORS: u32 = 64;

/// The executor head's levels. Level 0 keeps the executors in force; level k > 0 sizes the cluster at
/// `EXECUTOR_HEADROOM[k]` times the demand (see [`FeatureBuilder::demand_executors`]).
///
/// Why relative and not an absolute count: an absolute head must learn a separate "right count" for
/// every load level it meets, and a policy trained on one trace's loads holds a fixed count on the
/// others. Sizing relative to the observed demand is scale-free: what the policy learns is how much
/// headroom to carry (more under a burst signal, less when cost weighs more), and that transfers
/// across trace shapes and load levels.
pub const EXECUTOR_HEADROOM: [f64; 16] =
    [0.0, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4, 1.5, 1.6, 1.8, 2.2, 3.0];

/// Seconds over which a backlog is to be drained: the demand counts backlog / this as extra load.
pub const BACKLOG_DRAIN_S: f64 = 10.0;

/// The memory head's levels: level k asks for executors of the smallest size in [`MEMORY_CHOICES_GB`]
/// whose usable memory holds `MEMORY_HEADROOM[k]` times the working set of an executor running at its
/// full CPU rate (see [`FeatureBuilder::memory_for`]); the last level is the largest size.
///
/// Why relative, as the executor head: the memory an executor needs follows the event size (its
/// windowed state grows with the bytes it holds), so an absolute size that fits one trace spills or
/// wastes on another. Sized relative to the observed event size, the head learns how much spare memory
/// is worth carrying, and that holds on every trace.
pub const MEMORY_HEADROOM: [f64; 6] = [1.0, 1.1, 1.25, 1.5, 2.0, f64::INFINITY];

/// Sizes of the policy's four action heads: executor level, memory level, tier, codec.
pub const ACTION_DIMS: [usize; 4] =
    [EXECUTOR_HEADROOM.len(), MEMORY_HEADROOM.len(), Tier::CHOICES.len(), Compression::CHOICES.len()];

/// Builds policy features from observations.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureBuilder {
    pub vcpu_per_executor: f64,
    pub max_executors: u32,
    pub processing: Processing,
    /// The codecs' measured costs, in [`Compression::CHOICES`] order.
    pub codecs: [CompressionProfile; 3],
}

impl FeatureBuilder {
    /// The builder every scaling policy is trained and run with: rates are normalised by the
    /// policy's executor head (64), not by a deployment's maximum, so a model means the same thing
    /// wherever it runs.
    pub fn for_policy(vcpu_per_executor: f64, model: &LatencyModel) -> Self {
        Self {
            vcpu_per_executor,
            max_executors: POLICY_MAX_EXECUTORS,
            processing: model.processing.clone(),
            codecs: model.codecs().clone(),
        }
    }

    /// The load to plan for, in running executors' worth (fractional, at
    /// [`running_executor_rate`](Self::running_executor_rate)): the larger of the arrival rate now and
    /// the load the edge gateways expect, plus the backlog spread over [`BACKLOG_DRAIN_S`].
    /// Executors requested now start after a cold start, so the gateways' forecast is what they will
    /// meet; the current rate keeps the cluster up until the load has actually gone.
    pub fn demand_executors(&self, obs: &Observation) -> f64 {
        let finite = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        let per_exec = self.running_executor_rate(obs);
        let rate = finite(obs.input_rate).max(finite(obs.predicted_load))
            + finite(obs.backlog_events) / BACKLOG_DRAIN_S;
        rate / per_exec
    }

    /// The executors the events arriving now keep busy (fractional), at
    /// [`running_executor_rate`](Self::running_executor_rate).
    pub fn arrival_executors(&self, obs: &Observation) -> f64 {
        let input = if obs.input_rate.is_finite() { obs.input_rate.max(0.0) } else { 0.0 };
        input / self.running_executor_rate(obs)
    }

    /// Decode the policy's action indices for the observation they were chosen on. An index out of
    /// range is an error naming the head. The executor count is the level's headroom times the
    /// demand, and at least what the arrival rate needs ([`arrival_executors`](Self::arrival_executors)),
    /// rounded up, within 1..=[`POLICY_MAX_EXECUTORS`]; level 0 keeps the count in force.
    pub fn action(&self, indices: [i64; 4], obs: &Observation) -> Result<ScalingAction, ControlError> {
        let names = ["executors", "memory", "tier", "compression"];
        for (i, (&v, &dim)) in indices.iter().zip(ACTION_DIMS.iter()).enumerate() {
            if v < 0 || v as usize >= dim {
                return Err(ControlError::Action(format!("{} index {v} outside 0..{dim}", names[i])));
            }
        }
        let executors = match indices[0] as usize {
            0 => obs.current.executors,
            // Never fewer than the events arriving now need: a level below 1 trims the headroom a
            // forecast's peak carries, but a cluster below the arrival rate only builds a backlog.
            k => (EXECUTOR_HEADROOM[k] * self.demand_executors(obs)).max(self.arrival_executors(obs)).ceil()
                as u32,
        }
        .clamp(1, self.max_executors.max(1));
        Ok(ScalingAction {
            executors,
            memory_gb: self.memory_for(obs.bytes_per_event, MEMORY_HEADROOM[indices[1] as usize]),
            tier: Tier::CHOICES[indices[2] as usize],
            compression: Compression::CHOICES[indices[3] as usize],
            prewarm: obs.current.prewarm,
        })
    }

    /// The smallest executor size (GB, from [`MEMORY_CHOICES_GB`]) whose usable memory holds `headroom`
    /// times the working set of an executor processing events of `bytes` at its full CPU rate: the
    /// JVM's base plus the state it keeps over the processing model's window. The largest size when
    /// none does (or `headroom` is infinite).
    pub fn memory_for(&self, bytes_per_event: f64, headroom: f64) -> u32 {
        let bytes = if bytes_per_event.is_finite() { bytes_per_event.max(0.0) } else { 0.0 };
        let p = &self.processing;
        let working_set = p.working_set_gb(self.executor_rate(bytes), bytes);
        let largest = MEMORY_CHOICES_GB[MEMORY_CHOICES_GB.len() - 1];
        MEMORY_CHOICES_GB
            .iter()
            .copied()
            .find(|&gb| p.usable_memory_gb(gb as f64) >= headroom * working_set)
            .unwrap_or(largest)
    }

    /// Events/s one running executor carries at full CPU in the job as it runs now: the event's own
    /// CPU and the shuffle's codec in force ([`Observation::current`]), compressing it once and
    /// decompressing it for each read data of the observed temperature gets. This is what the arena's
    /// capacity is made of (`sim::Arena::capacity`), and what a demand must be counted in: on
    /// step-burst's 100 KB events the codec takes 4 % of an executor, and a demand in
    /// [`executor_rate`](Self::executor_rate)'s units left the cluster one executor short of the
    /// plateau at 0.95 x (`models/scaling-ppo.md`, "History and ablations").
    pub fn running_executor_rate(&self, obs: &Observation) -> f64 {
        let bytes = if obs.bytes_per_event.is_finite() { obs.bytes_per_event.max(0.0) } else { 0.0 };
        let temperature = if obs.data_temperature.is_finite() { obs.data_temperature } else { 0.0 };
        let codec = &self.codecs[obs.current.compression as usize];
        let ms = self.processing.job_cpu_ms_per_event(bytes, codec, temperature);
        self.vcpu_per_executor * 1_000.0 / ms.max(1e-9)
    }

    /// Events/s one executor processes at `bytes` per event, by the latency model (CPU only): the
    /// unit in which every rate is expressed, so that a policy reads "executors' worth of load".
    pub fn executor_rate(&self, bytes_per_event: f64) -> f64 {
        self.vcpu_per_executor * 1_000.0 / self.processing.cpu_ms_per_event(bytes_per_event).max(1e-9)
    }

    /// The 13 features, each roughly in 0..1:
    /// 0 CPU utilisation; 1 memory utilisation / 2 (capped at 1); 2 ln(1 + backlog in executor-seconds) / 10;
    /// 3, 4, 8 input, processing and predicted rate in executors' worth, on the log scale
    /// ln(1 + x) / ln(1 + max); 5, 6 running and pending executors on the same scale; 7 burst signal 0/1;
    /// 9 data temperature; 10 shuffle MB/s / 1,000; 11, 12 the weights alpha and beta.
    /// The log scale keeps one executor's difference visible at small counts, where most decisions are.
    pub fn features(&self, obs: &Observation) -> [f32; FEATURES] {
        let per_exec = self.executor_rate(obs.bytes_per_event);
        let log_max = (1.0 + self.max_executors.max(1) as f64).ln();
        let count = |n: f64| ((1.0 + n.max(0.0)).ln() / log_max).min(2.0);
        let rate = |r: f64| count(r / per_exec);
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        [
            obs.cpu_utilisation.clamp(0.0, 1.0),
            (finite(obs.memory_utilisation) / 2.0).clamp(0.0, 1.0),
            ((1.0 + finite(obs.backlog_events).max(0.0) / per_exec).ln() / 10.0).min(2.0),
            rate(finite(obs.input_rate)),
            rate(finite(obs.processing_rate)),
            count(obs.running_executors as f64),
            count(obs.pending_executors as f64),
            if obs.burst_signal { 1.0 } else { 0.0 },
            rate(finite(obs.predicted_load)),
            obs.data_temperature.clamp(0.0, 1.0),
            (finite(obs.shuffle_mb_per_s).max(0.0) / 1_000.0).min(4.0),
            obs.alpha.clamp(0.0, 1.0),
            obs.beta.clamp(0.0, 1.0),
        ]
        .map(|v| v as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs() -> Observation {
        Observation {
            time_s: 0.0,
            cpu_utilisation: 0.5,
            memory_utilisation: 0.7,
            backlog_events: 0.0,
            input_rate: 1_000.0,
            processing_rate: 1_000.0,
            running_executors: 4,
            pending_executors: 0,
            burst_signal: true,
            predicted_load: 4_000.0,
            data_temperature: 0.3,
            shuffle_mb_per_s: 2.5,
            bytes_per_event: 2_500.0,
            latency_ms: 200.0,
            alpha: 0.33,
            beta: 0.33,
            sla_ms: 1_000.0,
            current: ScalingAction::spark_default(4),
        }
    }

    fn builder() -> FeatureBuilder {
        FeatureBuilder::for_policy(4.0, &latency_model::LatencyModel::embedded())
    }

    #[test]
    fn features_are_bounded_and_in_executor_units() {
        let b = builder();
        let f = b.features(&obs());
        assert!(f.iter().all(|v| v.is_finite() && (0.0..=4.0).contains(v)));
        let per_exec = b.executor_rate(2_500.0);
        assert!((f[3] as f64 - (1.0 + 1_000.0 / per_exec).ln() / 65f64.ln()).abs() < 1e-6);
        // One executor more is visible at small counts.
        let mut more = obs();
        more.running_executors = 5;
        assert!(b.features(&more)[5] - f[5] > 0.03);
        assert_eq!(f[7], 1.0);
        let mut wild = obs();
        wild.backlog_events = f64::INFINITY;
        wild.memory_utilisation = f64::NAN;
        wild.input_rate = -5.0;
        assert!(b.features(&wild).iter().all(|v| v.is_finite()));
    }

    #[test]
    fn the_running_rate_counts_the_codec_in_force_and_the_reads_of_hot_data() {
        let b = builder();
        let mut o = obs();
        o.bytes_per_event = 100_000.0;
        o.current.compression = Compression::None;
        let plain = b.running_executor_rate(&o);
        o.current.compression = Compression::Lz4;
        o.data_temperature = 0.0;
        let cold = b.running_executor_rate(&o);
        o.data_temperature = 1.0;
        let hot = b.running_executor_rate(&o);
        assert!(plain <= b.executor_rate(100_000.0) + 1e-9);
        assert!(hot < cold && cold < plain, "{hot} {cold} {plain}");
        // As the arena counts it: the same model's CPU per event.
        let model = latency_model::LatencyModel::embedded();
        let ms = model.processing.job_cpu_ms_per_event(100_000.0, model.compression(Compression::Lz4), 1.0);
        assert!((hot - 4_000.0 / ms).abs() < 1e-9);
        // Numbers that are not numbers fall back to a finite rate.
        o.bytes_per_event = f64::NAN;
        o.data_temperature = f64::INFINITY;
        assert!(b.running_executor_rate(&o).is_finite() && b.running_executor_rate(&o) > 0.0);
    }

    #[test]
    fn indices_decode_relative_to_demand_and_out_of_range_is_refused() {
        let b = builder();
        let o = obs();
        // Planning load: the gateways' 4,000 events/s (above the 1,000 arriving), no backlog.
        let demand = 4_000.0 / b.running_executor_rate(&o);
        assert!((b.demand_executors(&o) - demand).abs() < 1e-9);
        let k = EXECUTOR_HEADROOM.iter().position(|&h| h == 1.2).unwrap() as i64;
        let a = b.action([k, 2, 0, 1], &o).unwrap();
        assert_eq!(a.executors, (1.2 * demand).ceil() as u32);
        assert_eq!(
            (a.memory_gb, a.tier, a.compression),
            (b.memory_for(2_500.0, MEMORY_HEADROOM[2]), Tier::Redis, Compression::Lz4)
        );
        assert_eq!(b.action([k, 5, 0, 1], &o).unwrap().memory_gb, 30);
        // Level 0 holds the count in force.
        assert_eq!(b.action([0, 2, 1, 1], &o).unwrap().executors, o.current.executors);
        // A backlog adds its drain rate to the demand.
        let mut late = o;
        late.backlog_events = 50_000.0;
        assert!(b.demand_executors(&late) > demand + 4_999.0 / b.running_executor_rate(&late) - 1e-9);
        // A level below 1 trims the forecast's headroom, never the arrival rate's own need: with the
        // load arriving at what the gateways forecast, 0.9 x keeps the cluster at the arrival rate.
        let trim = EXECUTOR_HEADROOM.iter().position(|&h| h == 0.9).unwrap() as i64;
        assert_eq!(b.action([trim, 0, 0, 0], &o).unwrap().executors, (0.9 * demand).ceil() as u32);
        let mut arrived = o;
        arrived.input_rate = 4_000.0;
        assert_eq!(b.action([trim, 0, 0, 0], &arrived).unwrap().executors, demand.ceil() as u32);
        // Never below one executor, never above the policy's maximum.
        let mut idle = o;
        (idle.input_rate, idle.predicted_load) = (0.0, 0.0);
        assert_eq!(b.action([1, 0, 0, 0], &idle).unwrap().executors, 1);
        let mut flood = o;
        flood.predicted_load = 1e12;
        assert_eq!(b.action([15, 0, 0, 0], &flood).unwrap().executors, POLICY_MAX_EXECUTORS);
        let err = b.action([0, 6, 0, 0], &o).unwrap_err().to_string();
        assert!(err.contains("memory index 6"), "{err}");
        assert!(b.action([-1, 0, 0, 0], &o).is_err());
        assert!(b.action([0, 0, 4, 0], &o).unwrap_err().to_string().contains("tier index 4"));
        assert!(b.action([ACTION_DIMS[0] as i64, 0, 0, 0], &o).is_err());
    }

    #[test]
    fn memory_levels_fit_the_working_set_of_the_observed_event_size() {
        let b = builder();
        let p = &b.processing;
        let working_set = |bytes: f64| p.working_set_gb(b.executor_rate(bytes), bytes);
        for bytes in [200.0, 2_500.0, 20_000.0, 200_000.0] {
            let fit = b.memory_for(bytes, 1.0);
            let ws = working_set(bytes);
            // The fit level holds the working set, and the next size down would not.
            assert!(p.usable_memory_gb(fit as f64) >= ws || fit == 30, "{bytes} B: {fit} GB for {ws} GB");
            if let Some(smaller) = MEMORY_CHOICES_GB.iter().rev().find(|&&gb| gb < fit) {
                assert!(p.usable_memory_gb(*smaller as f64) < ws, "{bytes} B: {smaller} GB would have done");
            }
            // More headroom never means less memory.
            let sizes: Vec<u32> = MEMORY_HEADROOM.iter().map(|&h| b.memory_for(bytes, h)).collect();
            assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
            assert_eq!(sizes[5], 30);
        }
        assert!(b.memory_for(200_000.0, 1.0) >= b.memory_for(200.0, 1.0));
        assert_eq!(b.memory_for(f64::NAN, 1.0), b.memory_for(0.0, 1.0));
    }
}
