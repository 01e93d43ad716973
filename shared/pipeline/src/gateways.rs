//! The edge gateway simulator: a trace replayed as many gateways would report it.
//!
//! Each gateway carries a fixed share of the load (shares drawn once per seed), sees its share
//! `lead_s` seconds before it reaches the cluster, with its own noise, runs the shared
//! [`BurstDetector`] on what it sees, and now and then raises a false alarm — the arena's edge model
//! ([`sim::EdgeConfig`]) split over many gateways. Every second it emits one `iot-metadata` control
//! message per gateway (the [`EdgeRecord`] that burst-signal reads) and one `iot-raw-data` summary of
//! the events it forwarded.

use crate::PipelineError;
use control::BurstDetector;
use handlers::EdgeRecord;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use sim::EdgeConfig;
use traces::Trace;

/// Unix time of trace second 0 in replays (2026-01-01T00:00:00Z): records carry real-looking times.
pub const REPLAY_EPOCH_S: f64 = 1_767_225_600.0;

/// One gateway's forwarded load in one second (`iot-raw-data`), summarised: the events themselves
/// are the Spark job's business, which the simulator stands in for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawDataSummary {
    pub edge_id: String,
    pub timestamp: f64,
    pub events: f64,
    pub bytes: f64,
}

#[derive(Debug, Clone)]
struct Gateway {
    id: String,
    share: f64,
    detector: BurstDetector,
    false_alarm_left: usize,
}

/// Many edge gateways over one trace.
#[derive(Debug, Clone)]
pub struct EdgeGateways {
    config: EdgeConfig,
    gateways: Vec<Gateway>,
    noise: Normal<f64>,
    rng: Xoshiro256PlusPlus,
    false_alarm_p: f64,
    epoch_s: f64,
}

impl EdgeGateways {
    /// `edges` gateways with load shares drawn from `seed`.
    pub fn new(config: &EdgeConfig, edges: usize, seed: u64) -> Result<Self, PipelineError> {
        if edges == 0 {
            return Err(PipelineError::Config("the gateway simulator needs at least one edge".into()));
        }
        let sd = if config.noise.is_finite() && config.noise > 0.0 { config.noise } else { 0.0 };
        let noise = Normal::new(0.0, sd).map_err(|e| PipelineError::Config(format!("edge noise {}: {e}", config.noise)))?;
        // Their own stream, so that the arena's random numbers are the same with or without them.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xED6E_6A7E_0000_0001);
        let weights: Vec<f64> = (0..edges).map(|_| rng.random_range(0.5..1.5)).collect();
        let total: f64 = weights.iter().sum();
        let mut gateways = Vec::with_capacity(edges);
        for (i, w) in weights.into_iter().enumerate() {
            let detector = BurstDetector::new(config.detector).map_err(|e| PipelineError::Config(format!("edge detector: {e}")))?;
            gateways.push(Gateway { id: format!("edge-{i:04}"), share: w / total, detector, false_alarm_left: 0 });
        }
        Ok(Self { config: config.clone(), gateways, noise, rng, false_alarm_p: (config.false_alarms_per_hour / 3_600.0).clamp(0.0, 1.0), epoch_s: REPLAY_EPOCH_S })
    }

    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// Unix time of trace second `t`.
    pub fn unix_time(&self, t: f64) -> f64 {
        self.epoch_s + t
    }

    /// Control messages for the seconds before the trace starts, at its opening load: the gateways
    /// and the cluster's windows start warm, as in a system that has been running.
    pub fn warm_up(&mut self, trace: &Trace) -> Vec<EdgeRecord> {
        let first = trace.at(0).events_per_s;
        let window = self.config.detector.long_window;
        let mut out = Vec::with_capacity(window * self.gateways.len());
        for k in 0..window {
            let ts = self.epoch_s - (window - k) as f64;
            for g in &mut self.gateways {
                let rate = first * g.share;
                g.detector.observe(rate);
                out.push(EdgeRecord { edge_id: g.id.clone(), timestamp: ts, rate: Some(rate), predicted_load: Some(g.detector.short_average()), burst_signal: Some(false) });
            }
        }
        out
    }

    /// What every gateway reports at trace second `t`: its control message and its forwarded load.
    pub fn second(&mut self, t: usize, trace: &Trace) -> (Vec<EdgeRecord>, Vec<RawDataSummary>) {
        let ahead = trace.at(t + self.config.lead_s).events_per_s;
        let now = trace.at(t);
        let ts = self.epoch_s + t as f64;
        let mut control = Vec::with_capacity(self.gateways.len());
        let mut raw = Vec::with_capacity(self.gateways.len());
        for g in &mut self.gateways {
            let seen = ahead * g.share * (1.0 + self.noise.sample(&mut self.rng)).max(0.0);
            let real = g.detector.observe(seen);
            if g.false_alarm_left > 0 {
                g.false_alarm_left -= 1;
            } else if self.false_alarm_p > 0.0 && self.rng.random::<f64>() < self.false_alarm_p {
                g.false_alarm_left = self.config.false_alarm_s;
            }
            control.push(EdgeRecord {
                edge_id: g.id.clone(),
                timestamp: ts,
                rate: Some(seen),
                predicted_load: Some(g.detector.short_average()),
                burst_signal: Some(real || g.false_alarm_left > 0),
            });
            let events = now.events_per_s * g.share;
            raw.push(RawDataSummary { edge_id: g.id.clone(), timestamp: ts, events, bytes: events * now.bytes_per_event });
        }
        (control, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_split_the_load_and_signal_ahead_of_the_step() {
        let trace = traces::builtin(traces::BuiltinTrace::StepBurst, 1);
        let config = EdgeConfig { false_alarms_per_hour: 0.0, noise: 0.0, ..EdgeConfig::default() };
        let mut gw = EdgeGateways::new(&config, 8, 3).unwrap();
        let warm = gw.warm_up(&trace);
        assert_eq!(warm.len(), 8 * config.detector.long_window);
        let (control, raw) = gw.second(0, &trace);
        let total: f64 = raw.iter().map(|r| r.events).sum();
        assert!((total - trace.at(0).events_per_s).abs() < 1e-6 * total.max(1.0), "shares sum to the load: {total}");
        assert_eq!(control.len(), 8);
        assert!(control.iter().all(|r| r.burst_signal == Some(false)));
        // The step is at 300 s and the gateways look 60 s ahead: most of them see it by 250 s.
        let mut first = None;
        for t in 1..400 {
            let (c, _) = gw.second(t, &trace);
            if first.is_none() && c.iter().filter(|r| r.burst_signal == Some(true)).count() * 2 > c.len() {
                first = Some(t);
            }
        }
        let first = first.expect("a majority signals the burst");
        assert!((235..=250).contains(&first), "majority signalled at {first}");
    }

    #[test]
    fn no_edges_is_refused() {
        let err = EdgeGateways::new(&EdgeConfig::default(), 0, 1).unwrap_err();
        assert!(err.to_string().contains("at least one edge"), "{err}");
    }
}
