//! The cluster's view of its edge gateways: per-edge state built from `iot-metadata` records and the
//! cluster burst aggregated over them.
//!
//! The burst-signal function applies each Kafka batch with [`apply_batch`] and keeps the state in
//! Redis between invocations; the arena applies its simulated gateways' records with the same function
//! every simulated second. So the burst signal and the predicted load a policy is trained on are the
//! ones the deployed scaling-decision reads.
//!
//! The cluster burst is raised when the detector over the summed edge load fires or when a quorum of
//! edges signal, and cleared only once both have settled (hysteresis on both).
//!
//! ```
//! use control::cluster::{apply_batch, ClusterBurst, ClusterConfig, EdgeRecord};
//! use std::collections::HashMap;
//!
//! let config = ClusterConfig::default();
//! let mut cluster = ClusterBurst::new(config.cluster_detector).unwrap();
//! let mut edges = HashMap::new();
//! let mut records: Vec<EdgeRecord> = (0..4)
//!     .map(|i| EdgeRecord { edge_id: format!("edge-{i}"), timestamp: 100.0, rate: Some(250.0), predicted_load: Some(260.0), burst_signal: Some(i < 2) })
//!     .collect();
//! let applied = apply_batch(&mut records, &mut edges, &mut cluster, &config).unwrap();
//! assert_eq!(applied.accepted, 4);
//! // Half of the edges signal, above the raise quorum (0.3): the cluster burst is raised.
//! assert!(cluster.burst && applied.changed);
//! assert_eq!(cluster.predicted_load, 4.0 * 260.0);
//! ```

use crate::{BurstDetector, BurstDetectorConfig, ControlError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A record on `iot-metadata`, sent by an edge gateway. Control messages carry `predicted_load` and
/// `burst_signal` (the gateway's own detector); raw samples carry `rate`, the events/s the gateway
/// forwarded in the second ending at `timestamp`. One record may carry both.
/// Unknown fields are ignored, so that a gateway which adds one does not have every record refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeRecord {
    pub edge_id: String,
    /// Unix seconds.
    pub timestamp: f64,
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub predicted_load: Option<f64>,
    #[serde(default)]
    pub burst_signal: Option<bool>,
}

/// Most events/s one gateway may report. Far above any gateway's link (a million 1 kB events/s is
/// 8 Gbit/s), and low enough that the sums over a fleet of a million edges, and the detectors'
/// squares of them, stay finite: a record of 1e308 once overflowed the cluster sums to infinity,
/// which JSON stores as null, and the stored state could no longer be read.
pub const MAX_EDGE_RATE: f64 = 1e9;

impl EdgeRecord {
    /// What is wrong with this record, if anything, in words that name the field.
    pub fn check(&self) -> Result<(), String> {
        let id = &self.edge_id;
        if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("edge_id {id:?} must be 1-256 printable characters without spaces"));
        }
        if !self.timestamp.is_finite() || self.timestamp < 0.0 {
            return Err(format!("timestamp {} is not a time", self.timestamp));
        }
        for (name, v) in [("rate", self.rate), ("predicted_load", self.predicted_load)] {
            if let Some(v) = v {
                if !(v.is_finite() && (0.0..=MAX_EDGE_RATE).contains(&v)) {
                    let shown = if v.abs() >= 1e9 { format!("{v:e}") } else { v.to_string() };
                    return Err(format!(
                        "{name} {shown} must be a number of events/s from 0 to {MAX_EDGE_RATE:e}"
                    ));
                }
            }
        }
        if self.rate.is_none() && self.predicted_load.is_none() && self.burst_signal.is_none() {
            return Err("record carries none of rate, predicted_load, burst_signal".into());
        }
        Ok(())
    }
}

/// How records become the cluster burst state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// The cluster-level detector (one sample per second of summed edge load).
    pub cluster_detector: BurstDetectorConfig,
    /// The per-edge detector over the raw rate samples.
    pub edge_detector: BurstDetectorConfig,
    /// Share of reporting edges whose own burst signal raises the cluster burst...
    pub quorum_raise: f64,
    /// ...and below which it may clear.
    pub quorum_clear: f64,
    /// An edge silent for longer than this, seconds, no longer counts towards the cluster load.
    pub edge_stale_s: f64,
    /// Seconds over which the cluster keeps the peak of the edges' forecasts: set it to how far ahead
    /// the gateways see (60 s in the thesis, 5.2). Each second's forecast is of the load one lead
    /// time later, so the forecasts of the last lead time together cover every second the cluster is
    /// about to serve, and their peak is the most load the next lead time brings (see
    /// [`ClusterBurst::predicted_or`]). `0` keeps only the newest forecast.
    #[serde(default = "default_forecast_window_s")]
    pub forecast_window_s: f64,
}

fn default_forecast_window_s() -> f64 {
    60.0
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            // Clears at 1.2 x the long average, not 1.5: a burst stays raised until the load settles.
            cluster_detector: BurstDetectorConfig { clear_ratio: 1.2, ..BurstDetectorConfig::default() },
            edge_detector: BurstDetectorConfig::default(),
            quorum_raise: 0.3,
            quorum_clear: 0.1,
            edge_stale_s: 30.0,
            forecast_window_s: default_forecast_window_s(),
        }
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ControlError> {
        self.cluster_detector.validate()?;
        self.edge_detector.validate()?;
        if !(0.0..=1.0).contains(&self.quorum_clear)
            || !(self.quorum_clear..=1.0).contains(&self.quorum_raise)
        {
            return Err(ControlError::Detector(format!(
                "quorum: need 0 <= clear ({}) <= raise ({}) <= 1",
                self.quorum_clear, self.quorum_raise
            )));
        }
        if !(self.edge_stale_s.is_finite() && self.edge_stale_s > 0.0) {
            return Err(ControlError::Detector(format!(
                "edge_stale_s {} must be a positive number of seconds",
                self.edge_stale_s
            )));
        }
        if !(self.forecast_window_s.is_finite() && (0.0..=86_400.0).contains(&self.forecast_window_s)) {
            return Err(ControlError::Detector(format!(
                "forecast_window_s {} must be 0-86,400 seconds",
                self.forecast_window_s
            )));
        }
        Ok(())
    }
}

/// What is kept per edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeState {
    pub detector: BurstDetector,
    /// Newest sample time applied; older or equal ones (redeliveries) are skipped.
    pub last_ts: f64,
    pub rate: f64,
    pub predicted_load: f64,
    /// The gateway's own signal, as last reported.
    pub reported_burst: bool,
}

impl EdgeState {
    /// An edge not heard from before.
    pub fn new(detector: BurstDetectorConfig) -> Result<Self, ControlError> {
        Ok(Self {
            detector: BurstDetector::new(detector)?,
            last_ts: f64::MIN,
            rate: 0.0,
            predicted_load: 0.0,
            reported_burst: false,
        })
    }

    pub fn burst(&self) -> bool {
        self.reported_burst || self.detector.is_burst()
    }
}

/// One edge as the cluster aggregate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EdgeSummary {
    pub rate: f64,
    pub predicted_load: f64,
    pub burst: bool,
    pub last_ts: f64,
}

/// The cluster burst state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterBurst {
    pub burst: bool,
    /// When `burst` last changed.
    pub since_s: f64,
    /// The detector over the summed edge load, one sample per second.
    pub detector: BurstDetector,
    /// Last whole second fed to the detector.
    pub last_second: i64,
    pub edges: BTreeMap<String, EdgeSummary>,
    pub total_rate: f64,
    /// The edges' summed forecast at the newest second: the load one lead time from now.
    pub predicted_load: f64,
    pub edges_bursting: usize,
    /// The largest of the smoothed forecasts of the last `forecast_window_s` seconds.
    #[serde(default)]
    pub predicted_peak: f64,
    /// The summed forecast averaged over about the cluster detector's short window (exponentially,
    /// one step per second). The peak is taken of this, not of the raw sums: the peak of a minute of
    /// noisy seconds sits well above the load (by some 5-10 % on the arena's traces, and that much
    /// more cost), while a second's excess load only queues for a moment.
    #[serde(default)]
    pub forecast_average: f64,
    /// (second, summed forecast) pairs from which `predicted_peak` is read, in time order with the
    /// forecasts strictly falling: a later, larger forecast makes the earlier ones irrelevant, so
    /// this stays short (one entry on a rising load) and is cheap to store between invocations.
    #[serde(default)]
    pub recent_forecasts: VecDeque<(i64, f64)>,
}

impl ClusterBurst {
    /// No edges yet, no burst.
    pub fn new(detector: BurstDetectorConfig) -> Result<Self, ControlError> {
        Ok(Self {
            burst: false,
            since_s: 0.0,
            detector: BurstDetector::new(detector)?,
            last_second: i64::MIN,
            edges: BTreeMap::new(),
            total_rate: 0.0,
            predicted_load: 0.0,
            edges_bursting: 0,
            predicted_peak: 0.0,
            forecast_average: 0.0,
            recent_forecasts: VecDeque::new(),
        })
    }

    /// The most load the edges expect over their lead time (the larger of the newest forecast and
    /// the peak of the recent smoothed ones, see [`ClusterConfig::forecast_window_s`]), or
    /// `measured` while no edge predicts any (no edges yet, or all silent): what a scaling policy
    /// sees as the predicted load.
    ///
    /// Why the peak and not the newest forecast: executors asked for now serve every second until
    /// the next ones could be ready, and a forecast is of one second a lead time away. A load that
    /// rises and falls inside the lead time is gone from the newest forecast but not yet from the
    /// cluster; sized on the newest forecast alone, the cluster lets go of the executors the peak
    /// still needs (in the arena, a fixed 1.0 x rule left 6.4 % of aws-elb's events over the SLA on
    /// the newest forecast and 1.0 % on the peak: the `rule_sweep` example).
    ///
    /// State stored before the peak existed loads with an average of zero; the newest forecast
    /// covers the few seconds the average takes to catch up.
    pub fn predicted_or(&self, measured: f64) -> f64 {
        let peak = self.predicted_peak.max(self.predicted_load);
        if peak > 0.0 {
            peak
        } else {
            measured
        }
    }

    /// Record the smoothed forecast of `second` and drop the ones older than `window_s`.
    fn remember_forecast(&mut self, second: i64, window_s: f64) {
        let value = self.forecast_average;
        // A second older than the newest (a late batch) counts as the newest: the window only moves on.
        let second = self.recent_forecasts.back().map_or(second, |&(s, _)| second.max(s));
        while self.recent_forecasts.back().is_some_and(|&(s, p)| s == second || p <= value) {
            self.recent_forecasts.pop_back();
        }
        self.recent_forecasts.push_back((second, value));
        let oldest = second - window_s.ceil() as i64;
        while self.recent_forecasts.front().is_some_and(|&(s, _)| s < oldest) {
            self.recent_forecasts.pop_front();
        }
        self.predicted_peak = self.recent_forecasts.front().map_or(value, |&(_, p)| p);
    }
}

/// What one [`apply_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub accepted: usize,
    /// Records no newer than their edge's last one (redeliveries, reordering): skipped.
    pub stale: usize,
    /// The cluster burst flipped.
    pub changed: bool,
}

/// Apply checked records to the edges and the cluster, in time order: each second's records, then one
/// cluster sample for that second. Pure: no I/O.
pub fn apply_batch(
    records: &mut [EdgeRecord],
    edges: &mut HashMap<String, EdgeState>,
    cluster: &mut ClusterBurst,
    config: &ClusterConfig,
) -> Result<Applied, ControlError> {
    records.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
    let was = cluster.burst;
    let mut applied = Applied::default();
    let mut i = 0;
    while i < records.len() {
        let second = records[i].timestamp.floor() as i64;
        while i < records.len() && records[i].timestamp.floor() as i64 == second {
            let r = &records[i];
            i += 1;
            let edge = match edges.get_mut(&r.edge_id) {
                Some(e) => e,
                None => edges.entry(r.edge_id.clone()).or_insert(EdgeState::new(config.edge_detector)?),
            };
            if r.timestamp <= edge.last_ts {
                applied.stale += 1;
                continue;
            }
            edge.last_ts = r.timestamp;
            if let Some(rate) = r.rate {
                edge.rate = rate;
                edge.detector.observe(rate);
            }
            if let Some(p) = r.predicted_load {
                edge.predicted_load = p;
            }
            if let Some(b) = r.burst_signal {
                edge.reported_burst = b;
            }
            let summary = EdgeSummary {
                rate: edge.rate,
                predicted_load: edge.predicted_load.max(edge.rate),
                burst: edge.burst(),
                last_ts: edge.last_ts,
            };
            // Known edges are updated in place: a key allocation per record is most of this loop.
            match cluster.edges.get_mut(&r.edge_id) {
                Some(s) => *s = summary,
                None => {
                    cluster.edges.insert(r.edge_id.clone(), summary);
                }
            }
            applied.accepted += 1;
        }
        advance_cluster(cluster, second, config);
    }
    applied.changed = cluster.burst != was;
    Ok(applied)
}

fn advance_cluster(cluster: &mut ClusterBurst, second: i64, config: &ClusterConfig) {
    let now = second as f64 + 1.0;
    cluster.edges.retain(|_, e| now - e.last_ts <= config.edge_stale_s);
    let (mut total, mut predicted, mut bursting) = (0.0, 0.0, 0);
    for e in cluster.edges.values() {
        total += e.rate;
        predicted += e.predicted_load;
        bursting += usize::from(e.burst);
    }
    cluster.total_rate = total;
    cluster.predicted_load = predicted;
    cluster.edges_bursting = bursting;
    if second > cluster.last_second {
        // Seconds without records repeat the last total, up to one long window.
        let gap = if cluster.last_second == i64::MIN {
            1
        } else {
            (second - cluster.last_second).min(cluster.detector.config().long_window as i64)
        };
        let smoothing = cluster.detector.config().short_window.max(1) as f64;
        if cluster.last_second == i64::MIN {
            cluster.forecast_average = predicted;
        }
        for _ in 0..gap {
            cluster.detector.observe(cluster.total_rate);
            cluster.forecast_average += (predicted - cluster.forecast_average) / smoothing;
        }
        cluster.last_second = second;
    }
    cluster.remember_forecast(second, config.forecast_window_s);
    let share = if cluster.edges.is_empty() {
        0.0
    } else {
        cluster.edges_bursting as f64 / cluster.edges.len() as f64
    };
    let next = if cluster.burst {
        cluster.detector.is_burst() || share >= config.quorum_clear
    } else {
        cluster.detector.is_burst() || share >= config.quorum_raise
    };
    if next != cluster.burst {
        cluster.burst = next;
        cluster.since_s = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ts: f64, rate: f64, burst: bool) -> EdgeRecord {
        EdgeRecord {
            edge_id: id.into(),
            timestamp: ts,
            rate: Some(rate),
            predicted_load: Some(rate),
            burst_signal: Some(burst),
        }
    }

    #[test]
    fn a_quorum_raises_and_only_a_settled_cluster_clears() {
        let config = ClusterConfig::default();
        let mut cluster = ClusterBurst::new(config.cluster_detector).unwrap();
        let mut edges = HashMap::new();
        // Ten quiet edges for a minute.
        for s in 0..60 {
            let mut batch: Vec<_> =
                (0..10).map(|i| record(&format!("e{i}"), s as f64, 100.0, false)).collect();
            assert!(!apply_batch(&mut batch, &mut edges, &mut cluster, &config).unwrap().changed);
        }
        // Three of ten signal: at the raise quorum.
        let mut batch: Vec<_> = (0..10).map(|i| record(&format!("e{i}"), 60.0, 100.0, i < 3)).collect();
        assert!(apply_batch(&mut batch, &mut edges, &mut cluster, &config).unwrap().changed);
        assert!(cluster.burst);
        assert_eq!(cluster.since_s, 61.0);
        // One of ten still signals: at the clear quorum, the burst holds.
        let mut batch: Vec<_> = (0..10).map(|i| record(&format!("e{i}"), 61.0, 100.0, i < 1)).collect();
        assert!(!apply_batch(&mut batch, &mut edges, &mut cluster, &config).unwrap().changed);
        let mut batch: Vec<_> = (0..10).map(|i| record(&format!("e{i}"), 62.0, 100.0, false)).collect();
        assert!(apply_batch(&mut batch, &mut edges, &mut cluster, &config).unwrap().changed);
        assert!(!cluster.burst);
    }

    #[test]
    fn redelivered_and_stale_edges_do_not_count() {
        let config = ClusterConfig::default();
        let mut cluster = ClusterBurst::new(config.cluster_detector).unwrap();
        let mut edges = HashMap::new();
        let mut batch = vec![record("a", 10.0, 50.0, false), record("b", 10.0, 70.0, false)];
        apply_batch(&mut batch, &mut edges, &mut cluster, &config).unwrap();
        let applied = apply_batch(&mut batch, &mut edges, &mut cluster, &config).unwrap();
        assert_eq!((applied.accepted, applied.stale), (0, 2));
        assert_eq!(cluster.total_rate, 120.0);
        // `b` falls silent: after edge_stale_s it leaves the totals.
        let mut later = vec![record("a", 10.0 + config.edge_stale_s + 1.0, 50.0, false)];
        apply_batch(&mut later, &mut edges, &mut cluster, &config).unwrap();
        assert_eq!(cluster.total_rate, 50.0);
        assert_eq!(cluster.predicted_load, 50.0);
        // The forecast of both edges is still inside the forecast window: the cluster plans for it.
        assert_eq!(cluster.predicted_or(7.0), 120.0);
        let mut much_later = vec![record("a", 10.0 + config.forecast_window_s + 5.0, 50.0, false)];
        apply_batch(&mut much_later, &mut edges, &mut cluster, &config).unwrap();
        // Once it has left the window, what remains is `a`'s forecast (the average has all but settled).
        assert!((cluster.predicted_or(7.0) - 50.0).abs() < 0.1, "{}", cluster.predicted_or(7.0));
    }

    /// Forecasts of one edge, one per second, through a cluster with a `window`-second forecast window;
    /// the predicted load the policy would see after each.
    fn peaks(window: f64, forecasts: &[f64]) -> Vec<f64> {
        // A short window of one second: no smoothing, so the peaks can be read off the series.
        let detector = BurstDetectorConfig { short_window: 1, ..BurstDetectorConfig::default() };
        let config = ClusterConfig {
            forecast_window_s: window,
            cluster_detector: detector,
            ..ClusterConfig::default()
        };
        let mut cluster = ClusterBurst::new(config.cluster_detector).unwrap();
        let mut edges = HashMap::new();
        forecasts
            .iter()
            .enumerate()
            .map(|(t, &p)| {
                let mut batch = vec![EdgeRecord {
                    edge_id: "e".into(),
                    timestamp: t as f64,
                    rate: Some(1.0),
                    predicted_load: Some(p),
                    burst_signal: Some(false),
                }];
                apply_batch(&mut batch, &mut edges, &mut cluster, &config).unwrap();
                assert!(cluster.recent_forecasts.len() <= window as usize + 1);
                cluster.predicted_or(0.0)
            })
            .collect()
    }

    #[test]
    fn the_predicted_load_is_the_peak_of_the_forecast_window() {
        let forecasts = [10.0, 30.0, 20.0, 50.0, 40.0, 10.0, 10.0, 10.0, 10.0, 5.0];
        // A 3-second window holds each peak for three seconds after it, then lets it go.
        assert_eq!(peaks(3.0, &forecasts), vec![10.0, 30.0, 30.0, 50.0, 50.0, 50.0, 50.0, 40.0, 10.0, 10.0]);
        // A window of 0 is the newest forecast alone.
        assert_eq!(peaks(0.0, &forecasts), forecasts.to_vec());
        // A window longer than the series keeps the largest so far.
        assert!(peaks(600.0, &forecasts).iter().skip(3).all(|&p| p == 50.0));
        // With the default smoothing (the detector's 5-second short window), a one-second spike counts
        // in full while it is the newest forecast, then only by a fifth of its excess.
        let config = ClusterConfig::default();
        let mut cluster = ClusterBurst::new(config.cluster_detector).unwrap();
        let mut edges = HashMap::new();
        let mut seen = Vec::new();
        for t in 0..70 {
            let p = if t == 60 { 200.0 } else { 100.0 };
            let mut batch = vec![EdgeRecord {
                edge_id: "e".into(),
                timestamp: t as f64,
                rate: Some(1.0),
                predicted_load: Some(p),
                burst_signal: Some(false),
            }];
            apply_batch(&mut batch, &mut edges, &mut cluster, &config).unwrap();
            seen.push(cluster.predicted_or(0.0));
        }
        assert_eq!((seen[59], seen[60]), (100.0, 200.0));
        assert!((seen[61] - 120.0).abs() < 1e-9 && (seen[69] - 120.0).abs() < 1e-9, "{:?}", &seen[59..]);
        // A brute-force maximum agrees on a noisy series.
        let noisy: Vec<f64> =
            (0..300).map(|t| 100.0 + ((t * 37 % 101) as f64) * (1.0 + (t / 50) as f64)).collect();
        for (t, peak) in peaks(60.0, &noisy).into_iter().enumerate() {
            let want = noisy[t.saturating_sub(60)..=t].iter().copied().fold(0.0, f64::max);
            assert_eq!(peak, want, "second {t}");
        }
    }

    #[test]
    fn state_stored_before_the_forecast_window_still_loads() {
        let config = ClusterConfig::default();
        let mut cluster = ClusterBurst::new(config.cluster_detector).unwrap();
        cluster.predicted_load = 80.0;
        let mut json: serde_json::Value = serde_json::to_value(&cluster).unwrap();
        let fields = json.as_object_mut().unwrap();
        fields.remove("predicted_peak");
        fields.remove("forecast_average");
        fields.remove("recent_forecasts");
        let old: ClusterBurst = serde_json::from_value(json).unwrap();
        assert_eq!(old.predicted_or(7.0), 80.0);
        let config: ClusterConfig = serde_json::from_str(r#"{"cluster_detector":{"short_window":5,"long_window":60,"raise_ratio":1.5,"clear_ratio":1.2},"edge_detector":{"short_window":5,"long_window":60,"raise_ratio":1.5,"clear_ratio":1.5},"quorum_raise":0.3,"quorum_clear":0.1,"edge_stale_s":30.0}"#).unwrap();
        assert_eq!(config.forecast_window_s, 60.0);
        assert!(ClusterConfig { forecast_window_s: f64::NAN, ..config }
            .validate()
            .unwrap_err()
            .to_string()
            .contains("forecast_window_s"));
    }

    #[test]
    fn records_are_checked_field_by_field() {
        let mut r = record("edge 1", 1.0, 1.0, false);
        assert!(r.check().unwrap_err().contains("edge_id"));
        r.edge_id = "edge-1".into();
        r.rate = Some(f64::NAN);
        assert!(r.check().unwrap_err().contains("rate"));
        r.rate = None;
        r.predicted_load = None;
        r.burst_signal = None;
        assert!(r.check().unwrap_err().contains("none of"));
    }

    #[test]
    fn a_raise_quorum_below_the_clear_quorum_is_refused() {
        let config = ClusterConfig { quorum_raise: 0.05, ..ClusterConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("quorum"));
    }
}
