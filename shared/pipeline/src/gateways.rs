//! The edge gateway simulator: a trace replayed as many gateways would report it.
//!
//! The gateways are the arena's own ([`sim::edge::EdgeFleet`]): the same shares, noise, lead and false
//! alarms, drawn from the same seed, so a replay sends burst-signal exactly the records the arena
//! aggregates for its observation. Every second each gateway emits one `iot-metadata` control message
//! (the [`EdgeRecord`] burst-signal reads) and one `iot-raw-data` summary of the events it forwarded.

use crate::PipelineError;
use handlers::EdgeRecord;
use serde::Serialize;
use sim::edge::EdgeFleet;
use sim::EdgeConfig;
use traces::Trace;

/// Unix time of trace second 0 in replays.
pub const REPLAY_EPOCH_S: f64 = sim::edge::EPOCH_S;

/// One gateway's forwarded load in one second (`iot-raw-data`), summarised: the events themselves
/// are the Spark job's business, which the simulator stands in for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawDataSummary {
    pub edge_id: String,
    pub timestamp: f64,
    pub events: f64,
    pub bytes: f64,
}

/// The arena's gateways, with the raw-data side a live deployment also sees.
#[derive(Debug, Clone)]
pub struct EdgeGateways {
    fleet: EdgeFleet,
}

impl EdgeGateways {
    /// `config.gateways` gateways, drawn from `seed` as the arena draws them.
    pub fn new(config: &EdgeConfig, seed: u64) -> Result<Self, PipelineError> {
        Ok(Self { fleet: EdgeFleet::new(config, seed)? })
    }

    pub fn len(&self) -> usize {
        self.fleet.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fleet.is_empty()
    }

    /// Unix time of trace second `t`.
    pub fn unix_time(&self, t: f64) -> f64 {
        EdgeFleet::unix_time(t)
    }

    /// Control messages for the seconds before the trace starts (see [`EdgeFleet::warm_up`]).
    pub fn warm_up(&mut self, trace: &Trace) -> Vec<EdgeRecord> {
        self.fleet.warm_up(trace)
    }

    /// What every gateway reports at trace second `t`: its control message and its forwarded load.
    pub fn second(&mut self, t: usize, trace: &Trace) -> (Vec<EdgeRecord>, Vec<RawDataSummary>) {
        let mut control = Vec::with_capacity(self.fleet.len());
        self.fleet.second(t, trace, &mut control);
        let now = trace.at(t);
        let timestamp = self.unix_time(t as f64);
        let raw = self
            .fleet
            .shares()
            .map(|(id, share)| {
                let events = now.events_per_s * share;
                RawDataSummary {
                    edge_id: id.to_string(),
                    timestamp,
                    events,
                    bytes: events * now.bytes_per_event,
                }
            })
            .collect();
        (control, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_summaries_split_the_load_the_cluster_receives() {
        let trace = traces::builtin(traces::BuiltinTrace::StepBurst, 1);
        let config = EdgeConfig { gateways: 8, ..EdgeConfig::default() };
        let mut gw = EdgeGateways::new(&config, 3).unwrap();
        assert_eq!(gw.warm_up(&trace).len(), 8 * config.detector.long_window);
        for t in [0, 299, 300, 301] {
            let (control, raw) = gw.second(t, &trace);
            assert_eq!((control.len(), raw.len()), (8, 8));
            let total: f64 = raw.iter().map(|r| r.events).sum();
            let want = trace.at(t).events_per_s;
            assert!(
                (total - want).abs() < 1e-6 * want.max(1.0),
                "second {t}: shares sum to {total}, load {want}"
            );
            assert!(control
                .iter()
                .zip(&raw)
                .all(|(c, r)| c.edge_id == r.edge_id && c.timestamp == r.timestamp));
        }
    }

    #[test]
    fn the_replay_gateways_are_the_arenas() {
        let trace = traces::builtin(traces::BuiltinTrace::Burst4x, 2);
        let config = EdgeConfig::default();
        let mut gw = EdgeGateways::new(&config, 9).unwrap();
        let mut fleet = EdgeFleet::new(&config, 9).unwrap();
        assert_eq!(gw.warm_up(&trace), fleet.warm_up(&trace));
        let mut direct = Vec::new();
        for t in 0..120 {
            direct.clear();
            fleet.second(t, &trace, &mut direct);
            assert_eq!(gw.second(t, &trace).0, direct, "second {t}");
        }
    }

    #[test]
    fn no_edges_is_refused() {
        let err = EdgeGateways::new(&EdgeConfig { gateways: 0, ..EdgeConfig::default() }, 1).unwrap_err();
        assert!(err.to_string().contains("at least one gateway"), "{err}");
    }
}
