//! The state builder: turns an [`Observation`] into the 13 normalised features the scaling policy
//! reads, and the policy's action indices back into a [`ScalingAction`]. The simulator and the
//! scaling-decision function both go through here, so the policy sees the same numbers in both.

use crate::{ControlError, Observation, ScalingAction, MEMORY_CHOICES_GB};
use latency_model::{Compression, Processing, Tier};

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
/// Sizes of the policy's four action heads: executors (1..=64), memory level, tier, codec.
pub const ACTION_DIMS: [usize; 4] = [64, MEMORY_CHOICES_GB.len(), Tier::CHOICES.len(), Compression::CHOICES.len()];

/// Builds policy features from observations.
#[derive(Debug, Clone, PartialEq)]
pub struct StateBuilder {
    pub vcpu_per_executor: f64,
    pub max_executors: u32,
    pub processing: Processing,
}

impl StateBuilder {
    /// The builder every scaling policy is trained and run with: rates are normalised by the
    /// policy's executor head (64), not by a deployment's maximum, so a model means the same thing
    /// wherever it runs.
    pub fn for_policy(vcpu_per_executor: f64, processing: Processing) -> Self {
        Self { vcpu_per_executor, max_executors: ACTION_DIMS[0] as u32, processing }
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

/// Decode the policy's action indices; an index out of range is an error naming the head.
pub fn action_from_indices(indices: [i64; 4], prewarm: u32) -> Result<ScalingAction, ControlError> {
    let names = ["executors", "memory", "tier", "compression"];
    for (i, (&v, &dim)) in indices.iter().zip(ACTION_DIMS.iter()).enumerate() {
        if v < 0 || v as usize >= dim {
            return Err(ControlError::Action(format!("{} index {v} outside 0..{dim}", names[i])));
        }
    }
    Ok(ScalingAction {
        executors: indices[0] as u32 + 1,
        memory_gb: MEMORY_CHOICES_GB[indices[1] as usize],
        tier: Tier::CHOICES[indices[2] as usize],
        compression: Compression::CHOICES[indices[3] as usize],
        prewarm,
    })
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

    fn builder() -> StateBuilder {
        StateBuilder { vcpu_per_executor: 4.0, max_executors: 64, processing: latency_model::LatencyModel::embedded().processing }
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
    fn indices_decode_and_out_of_range_is_refused() {
        let a = action_from_indices([9, 2, 0, 1], 0).unwrap();
        assert_eq!((a.executors, a.memory_gb, a.tier, a.compression), (10, 16, Tier::Redis, Compression::Lz4));
        let err = action_from_indices([0, 6, 0, 0], 0).unwrap_err().to_string();
        assert!(err.contains("memory index 6"), "{err}");
        assert!(action_from_indices([-1, 0, 0, 0], 0).is_err());
    }
}
