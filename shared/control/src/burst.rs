//! The edge gateway's moving-average crossover (thesis, chapter 5.1): keep a short (5 s) and a long
//! (60 s) average of the observed event rate and raise the burst signal when the short average exceeds
//! 1.5 times the long one. O(1) per sample and no training, which is why the thesis runs it on
//! battery-powered gateways.

use crate::ControlError;
use serde::{Deserialize, Serialize};

/// Window lengths and thresholds of a [`BurstDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BurstDetectorConfig {
    /// Short window in samples (one sample per second): 5 in the thesis.
    pub short_window: usize,
    /// Long window in samples: 60 in the thesis.
    pub long_window: usize,
    /// Raise when short > raise_ratio * long: 1.5 in the thesis.
    pub raise_ratio: f64,
    /// Clear when short < clear_ratio * long. Equal to `raise_ratio` means no hysteresis (the thesis's
    /// gateway); a lower value keeps a burst raised until the load has clearly settled.
    pub clear_ratio: f64,
}

impl Default for BurstDetectorConfig {
    fn default() -> Self {
        Self { short_window: 5, long_window: 60, raise_ratio: 1.5, clear_ratio: 1.5 }
    }
}

impl BurstDetectorConfig {
    pub fn validate(&self) -> Result<(), ControlError> {
        if self.short_window == 0 || self.long_window == 0 {
            return Err(ControlError::Detector("windows must hold at least one sample".into()));
        }
        if self.short_window > self.long_window {
            return Err(ControlError::Detector(format!(
                "short window ({}) longer than long window ({})",
                self.short_window, self.long_window
            )));
        }
        if !(self.raise_ratio.is_finite() && self.raise_ratio > 0.0) {
            return Err(ControlError::Detector(format!("raise ratio {} must be positive", self.raise_ratio)));
        }
        if !(self.clear_ratio.is_finite() && self.clear_ratio > 0.0 && self.clear_ratio <= self.raise_ratio) {
            return Err(ControlError::Detector(format!(
                "clear ratio {} must be positive and at most the raise ratio {}",
                self.clear_ratio, self.raise_ratio
            )));
        }
        Ok(())
    }
}

/// Moving-average crossover burst detector. Serialisable, so a stateless function can keep it in a
/// key-value store between invocations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstDetector {
    config: BurstDetectorConfig,
    /// The last `long_window` samples, oldest overwritten first.
    ring: Vec<f64>,
    /// Next slot to write.
    head: usize,
    /// Samples seen, saturating at `long_window`.
    filled: usize,
    long_sum: f64,
    short_sum: f64,
    burst: bool,
}

impl BurstDetector {
    pub fn new(config: BurstDetectorConfig) -> Result<Self, ControlError> {
        config.validate()?;
        Ok(Self {
            config,
            ring: vec![0.0; config.long_window],
            head: 0,
            filled: 0,
            long_sum: 0.0,
            short_sum: 0.0,
            burst: false,
        })
    }

    /// The thesis's detector: 5 s / 60 s windows, ratio 1.5.
    pub fn thesis() -> Self {
        Self::new(BurstDetectorConfig::default()).expect("default config is valid")
    }

    pub fn config(&self) -> &BurstDetectorConfig {
        &self.config
    }

    /// Feed one per-second rate sample; returns whether a burst is signalled after it.
    pub fn observe(&mut self, rate: f64) -> bool {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 0.0 };
        let long = self.config.long_window;
        let short = self.config.short_window;
        // The sample leaving the short window is `short` slots behind the head.
        if self.filled >= short {
            let leaving_short = self.ring[(self.head + long - short) % long];
            self.short_sum -= leaving_short;
        }
        if self.filled >= long {
            self.long_sum -= self.ring[self.head];
        }
        self.ring[self.head] = rate;
        self.long_sum += rate;
        self.short_sum += rate;
        self.head = (self.head + 1) % long;
        self.filled = (self.filled + 1).min(long);
        self.update_flag();
        self.burst
    }

    fn update_flag(&mut self) {
        // Until the short window is full there is no meaningful short average.
        if self.filled < self.config.short_window {
            return;
        }
        let short_avg = self.short_average();
        let long_avg = self.long_average();
        if self.burst {
            if short_avg < self.config.clear_ratio * long_avg {
                self.burst = false;
            }
        } else if short_avg > self.config.raise_ratio * long_avg {
            self.burst = true;
        }
    }

    pub fn short_average(&self) -> f64 {
        let n = self.filled.min(self.config.short_window).max(1);
        (self.short_sum / n as f64).max(0.0)
    }

    pub fn long_average(&self) -> f64 {
        let n = self.filled.max(1);
        (self.long_sum / n as f64).max(0.0)
    }

    pub fn is_burst(&self) -> bool {
        self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_on_a_step_and_clears_when_the_long_average_catches_up() {
        let mut d = BurstDetector::thesis();
        for _ in 0..120 {
            assert!(!d.observe(1_000.0));
        }
        // 1,000 -> 5,000: the short average passes 1.5x the long one within a few seconds.
        let raised_after = (1..=10).find(|_| d.observe(5_000.0)).expect("burst raised");
        assert!(raised_after <= 3, "raised after {raised_after} s");
        // After a minute at the new level the long average has caught up.
        for _ in 0..60 {
            d.observe(5_000.0);
        }
        assert!(!d.is_burst());
        assert!((d.long_average() - 5_000.0).abs() < 1e-6);
    }

    #[test]
    fn running_sums_match_a_direct_average() {
        let mut d = BurstDetector::thesis();
        let samples: Vec<f64> = (0..500).map(|i| ((i * 37) % 101) as f64 * 10.0).collect();
        for (i, &s) in samples.iter().enumerate() {
            d.observe(s);
            let lo = i.saturating_sub(59);
            let long = samples[lo..=i].iter().sum::<f64>() / (i - lo + 1) as f64;
            let so = i.saturating_sub(4);
            let short = samples[so..=i].iter().sum::<f64>() / (i - so + 1) as f64;
            assert!((d.long_average() - long).abs() < 1e-6);
            assert!((d.short_average() - short).abs() < 1e-6);
        }
    }

    #[test]
    fn hysteresis_holds_the_burst_until_the_clear_ratio() {
        let config = BurstDetectorConfig { clear_ratio: 1.1, ..Default::default() };
        let mut with = BurstDetector::new(config).unwrap();
        let mut without = BurstDetector::thesis();
        for _ in 0..60 {
            with.observe(1_000.0);
            without.observe(1_000.0);
        }
        let mut held_with = 0;
        let mut held_without = 0;
        for _ in 0..60 {
            held_with += with.observe(3_000.0) as usize;
            held_without += without.observe(3_000.0) as usize;
        }
        assert!(held_with > held_without);
    }

    #[test]
    fn rejects_bad_configuration_and_survives_bad_samples() {
        assert!(BurstDetector::new(BurstDetectorConfig { short_window: 0, ..Default::default() }).is_err());
        assert!(BurstDetector::new(BurstDetectorConfig { short_window: 90, ..Default::default() }).is_err());
        assert!(BurstDetector::new(BurstDetectorConfig { clear_ratio: 2.0, ..Default::default() }).is_err());
        let mut d = BurstDetector::thesis();
        d.observe(f64::NAN);
        d.observe(-5.0);
        assert_eq!(d.long_average(), 0.0);
    }

    #[test]
    fn state_round_trips_through_serde() {
        let mut d = BurstDetector::thesis();
        for i in 0..70 {
            d.observe(i as f64);
        }
        // The burst-signal function keeps this state in Redis between invocations.
        let json = serde_json::to_string(&d).unwrap();
        let mut back: BurstDetector = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.observe(1.0), d.observe(1.0));
    }
}
