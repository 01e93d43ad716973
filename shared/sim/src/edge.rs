//! The edge gateways as the arena simulates them: they see the load `lead_s` seconds before it reaches
//! the cluster, with noise, run the shared [`control::BurstDetector`] on it, and now and then raise a
//! false alarm.

use crate::config::EdgeConfig;
use crate::SimError;
use control::BurstDetector;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use traces::Trace;

#[derive(Debug, Clone)]
pub struct EdgeSignal {
    config: EdgeConfig,
    detector: BurstDetector,
    noise: Normal<f64>,
    false_alarm_left: usize,
    /// Probability per second of a false alarm starting.
    false_alarm_p: f64,
}

/// What the gateways report at one second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeReport {
    pub burst: bool,
    /// The gateways' forecast of the load arriving `lead_s` from now (short moving average), events/s.
    pub predicted_load: f64,
}

impl EdgeSignal {
    pub fn new(config: &EdgeConfig) -> Result<Self, SimError> {
        let detector = BurstDetector::new(config.detector)?;
        let sd = if config.noise.is_finite() && config.noise > 0.0 { config.noise } else { 0.0 };
        let noise = Normal::new(0.0, sd).map_err(|e| SimError::Config(format!("edge noise: {e}")))?;
        Ok(Self {
            config: config.clone(),
            detector,
            noise,
            false_alarm_left: 0,
            false_alarm_p: (config.false_alarms_per_hour / 3_600.0).clamp(0.0, 1.0),
        })
    }

    /// Warm the detector on the load before the episode, as gateways that have been running.
    pub fn warm_up(&mut self, trace: &Trace) {
        let first = trace.at(0).events_per_s;
        for _ in 0..self.config.detector.long_window {
            self.detector.observe(first);
        }
    }

    /// Advance one second at time `t`.
    pub fn step(&mut self, t: usize, trace: &Trace, rng: &mut impl Rng) -> EdgeReport {
        let ahead = trace.at(t + self.config.lead_s).events_per_s;
        let seen = ahead * (1.0 + self.noise.sample(rng)).max(0.0);
        let real = self.detector.observe(seen);
        if self.false_alarm_left > 0 {
            self.false_alarm_left -= 1;
        } else if self.false_alarm_p > 0.0 && rng.random::<f64>() < self.false_alarm_p {
            self.false_alarm_left = self.config.false_alarm_s;
        }
        EdgeReport { burst: real || self.false_alarm_left > 0, predicted_load: self.detector.short_average() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn signal_arrives_lead_seconds_before_the_burst() {
        let trace = traces::builtin(traces::BuiltinTrace::StepBurst, 1);
        let config = EdgeConfig { false_alarms_per_hour: 0.0, ..EdgeConfig::default() };
        let mut edge = EdgeSignal::new(&config).unwrap();
        edge.warm_up(&trace);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let first = (0..600).find(|&t| edge.step(t, &trace, &mut rng).burst).expect("burst seen");
        // The step happens at 300 s; the gateways see it 60 s early.
        assert!((238..=245).contains(&first), "first signal at {first}");
    }
}
