//! The edge gateways as the arena simulates them, and the cluster's view of them.
//!
//! [`EdgeFleet`] is many gateways over one trace: each carries a fixed share of the load (shares drawn
//! once per seed), sees its share `lead_s` seconds before it reaches the cluster, with its own noise,
//! runs the shared [`control::gateway::Gateway`] (its burst detector) on what it sees, and now and then raises a false alarm. Every
//! second it reports one `iot-metadata` [`EdgeRecord`] per gateway.
//!
//! [`EdgeSignal`] feeds those records, second by second, through [`control::cluster::apply_batch`],
//! the function the burst-signal handler runs on each Kafka batch. The burst signal and predicted load
//! in the arena's observation are therefore what the deployed scaling-decision reads from the store,
//! and the replay (which sends the same fleet's records through the real handlers) sees the same.

use crate::config::EdgeConfig;
use crate::SimError;
use control::cluster::{apply_batch, ClusterBurst, EdgeState};
use control::EdgeRecord;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::HashMap;
use traces::Trace;

/// Unix time of trace second 0 (2026-01-01T00:00:00Z): records carry real-looking times.
pub const EPOCH_S: f64 = 1_767_225_600.0;

#[derive(Debug, Clone)]
struct Gateway {
    reporter: control::gateway::Gateway,
    share: f64,
    false_alarm_left: usize,
}

/// Many edge gateways over one trace.
#[derive(Debug, Clone)]
pub struct EdgeFleet {
    config: EdgeConfig,
    gateways: Vec<Gateway>,
    noise: Normal<f64>,
    rng: Xoshiro256PlusPlus,
    false_alarm_p: f64,
}

impl EdgeFleet {
    /// `config.gateways` gateways with load shares and noise drawn from `seed`.
    pub fn new(config: &EdgeConfig, seed: u64) -> Result<Self, SimError> {
        if config.gateways == 0 {
            return Err(SimError::Config("the edge model needs at least one gateway".into()));
        }
        let sd = if config.noise.is_finite() && config.noise > 0.0 { config.noise } else { 0.0 };
        let noise = Normal::new(0.0, sd)
            .map_err(|e| SimError::Config(format!("edge noise {}: {e}", config.noise)))?;
        // Their own stream, so that the rest of the arena draws the same numbers whatever the fleet.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xED6E_6A7E_0000_0001);
        let weights: Vec<f64> = (0..config.gateways).map(|_| rng.random_range(0.5..1.5)).collect();
        let total: f64 = weights.iter().sum();
        let mut gateways = Vec::with_capacity(config.gateways);
        for (i, w) in weights.into_iter().enumerate() {
            gateways.push(Gateway {
                reporter: control::gateway::Gateway::new(format!("edge-{i:04}"), config.detector)?,
                share: w / total,
                false_alarm_left: 0,
            });
        }
        Ok(Self {
            config: config.clone(),
            gateways,
            noise,
            rng,
            false_alarm_p: (config.false_alarms_per_hour / 3_600.0).clamp(0.0, 1.0),
        })
    }

    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// Each gateway's id and share of the load.
    pub fn shares(&self) -> impl Iterator<Item = (&str, f64)> {
        self.gateways.iter().map(|g| (g.reporter.id(), g.share))
    }

    /// Unix time of trace second `t`.
    pub fn unix_time(t: f64) -> f64 {
        EPOCH_S + t
    }

    /// Reports for the long window before the trace starts: the gateways and the cluster start warm,
    /// as in a system that has been running. A gateway at second `t < 0` sees the load of `t +
    /// lead_s`, so the last `lead_s` seconds before the start report the trace's opening seconds and
    /// the cluster's forecast at second 0 already covers them; earlier ones see the opening load.
    /// No noise and no burst flag: what the detectors learn, not what they signal.
    pub fn warm_up(&mut self, trace: &Trace) -> Vec<EdgeRecord> {
        let first = trace.at(0).events_per_s;
        let window = self.config.detector.long_window;
        let mut out = Vec::with_capacity(window * self.gateways.len());
        for k in 0..window {
            let before = window - k;
            let ts = EPOCH_S - before as f64;
            let seen = self.config.lead_s.checked_sub(before).map_or(first, |t| trace.at(t).events_per_s);
            for g in &mut self.gateways {
                out.push(g.reporter.warm(ts, seen * g.share));
            }
        }
        out
    }

    /// Every gateway's report for trace second `t`, appended to `out`.
    pub fn second(&mut self, t: usize, trace: &Trace, out: &mut Vec<EdgeRecord>) {
        let ahead = trace.at(t + self.config.lead_s).events_per_s;
        let ts = EPOCH_S + t as f64;
        for g in &mut self.gateways {
            let seen = ahead * g.share * (1.0 + self.noise.sample(&mut self.rng)).max(0.0);
            if g.false_alarm_left > 0 {
                g.false_alarm_left -= 1;
            } else if self.false_alarm_p > 0.0 && self.rng.random::<f64>() < self.false_alarm_p {
                g.false_alarm_left = self.config.false_alarm_s;
            }
            out.push(g.reporter.report(ts, seen, g.false_alarm_left > 0));
        }
    }
}

/// What the cluster knows of its edges at one second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeReport {
    pub burst: bool,
    /// The most load the edges expect over their lead time, events/s: the peak of their summed
    /// forecasts over the cluster's forecast window (`ClusterBurst::predicted_or`), as the deployed
    /// scaling-decision reads it; zero while no edge has reported.
    pub predicted_load: f64,
}

/// The fleet's reports aggregated as burst-signal aggregates them.
#[derive(Debug, Clone)]
pub struct EdgeSignal {
    config: EdgeConfig,
    fleet: EdgeFleet,
    edges: HashMap<String, EdgeState>,
    cluster: ClusterBurst,
    /// One second's records, reused.
    buffer: Vec<EdgeRecord>,
}

impl EdgeSignal {
    pub fn new(config: &EdgeConfig, seed: u64) -> Result<Self, SimError> {
        config.cluster.validate()?;
        let fleet = EdgeFleet::new(config, seed)?;
        let buffer = Vec::with_capacity(fleet.len());
        Ok(Self {
            config: config.clone(),
            edges: HashMap::with_capacity(fleet.len()),
            cluster: ClusterBurst::new(config.cluster.cluster_detector)?,
            fleet,
            buffer,
        })
    }

    /// Warm the gateways and the cluster on the load before the episode.
    pub fn warm_up(&mut self, trace: &Trace) -> Result<EdgeReport, SimError> {
        let mut records = self.fleet.warm_up(trace);
        apply_batch(&mut records, &mut self.edges, &mut self.cluster, &self.config.cluster)?;
        Ok(self.report())
    }

    /// Advance one second at time `t`.
    pub fn step(&mut self, t: usize, trace: &Trace) -> EdgeReport {
        self.buffer.clear();
        self.fleet.second(t, trace, &mut self.buffer);
        // apply_batch fails only on an invalid detector configuration, which `new` has refused; were
        // it to fail, the cluster would keep its last state, as a burst-signal whose write failed.
        if let Err(e) =
            apply_batch(&mut self.buffer, &mut self.edges, &mut self.cluster, &self.config.cluster)
        {
            debug_assert!(false, "validated edge configuration refused: {e}");
        }
        self.report()
    }

    pub fn report(&self) -> EdgeReport {
        EdgeReport { burst: self.cluster.burst, predicted_load: self.cluster.predicted_or(0.0) }
    }

    /// The cluster state, as burst-signal would have stored it.
    pub fn cluster(&self) -> &ClusterBurst {
        &self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traces::TracePoint;

    fn quiet() -> EdgeConfig {
        EdgeConfig { false_alarms_per_hour: 0.0, noise: 0.0, ..EdgeConfig::default() }
    }

    #[test]
    fn the_fleet_splits_the_load_and_signals_ahead_of_the_step() {
        let trace = traces::builtin(traces::BuiltinTrace::StepBurst, 1);
        let config = EdgeConfig { gateways: 8, ..quiet() };
        let mut fleet = EdgeFleet::new(&config, 3).unwrap();
        let warm = fleet.warm_up(&trace);
        assert_eq!(warm.len(), 8 * config.detector.long_window);
        let total: f64 = fleet.shares().map(|(_, s)| s).sum();
        assert!((total - 1.0).abs() < 1e-12, "shares sum to one: {total}");
        let mut out = Vec::new();
        fleet.second(0, &trace, &mut out);
        assert_eq!(out.len(), 8);
        assert!(out.iter().all(|r| r.burst_signal == Some(false)));
        // The step is at 300 s and the gateways look 60 s ahead: most of them see it by 250 s.
        let mut first = None;
        for t in 1..400 {
            out.clear();
            fleet.second(t, &trace, &mut out);
            if first.is_none() && out.iter().filter(|r| r.burst_signal == Some(true)).count() * 2 > out.len()
            {
                first = Some(t);
            }
        }
        let first = first.expect("a majority signals the burst");
        assert!((235..=250).contains(&first), "majority signalled at {first}");
    }

    #[test]
    fn a_rise_within_the_lead_is_forecast_from_the_first_second() {
        // 1,000 events/s, then 4,000 from second `at`.
        let rise = |at: usize| {
            let points = (0..600)
                .map(|t| TracePoint {
                    events_per_s: if t < at { 1_000.0 } else { 4_000.0 },
                    bytes_per_event: 2_500.0,
                })
                .collect();
            let mut edge = EdgeSignal::new(&quiet(), 1).unwrap();
            edge.warm_up(&Trace::new("rise", points)).unwrap().predicted_load
        };
        // A system running before the trace would have seen a rise 30 s in ...
        assert!((rise(30) - 4_000.0).abs() < 1.0, "warm forecast {}", rise(30));
        // ... but not one beyond the gateways' 60 s lead.
        assert!((rise(90) - 1_000.0).abs() < 1.0, "warm forecast {}", rise(90));
    }

    #[test]
    fn the_cluster_signal_arrives_lead_seconds_before_the_burst() {
        let trace = traces::builtin(traces::BuiltinTrace::StepBurst, 1);
        let mut edge = EdgeSignal::new(&quiet(), 1).unwrap();
        let warm = edge.warm_up(&trace).unwrap();
        assert!(!warm.burst);
        // The gateways have seen the first minute: the forecast is that minute's (noisy) level.
        let first_minute = trace.points()[..60].iter().map(|p| p.events_per_s);
        let (low, high) = first_minute.fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
        assert!(
            (low..=high).contains(&warm.predicted_load),
            "warm forecast {} outside the first minute's {low}..{high}",
            warm.predicted_load
        );
        let first = (0..600).find(|&t| edge.step(t, &trace).burst).expect("burst seen");
        // The step happens at 300 s; the gateways see it 60 s early.
        assert!((238..=245).contains(&first), "first signal at {first}");
        assert_eq!(edge.cluster().edges.len(), EdgeConfig::default().gateways);
    }

    #[test]
    fn no_gateways_is_refused() {
        let err = EdgeFleet::new(&EdgeConfig { gateways: 0, ..EdgeConfig::default() }, 1).unwrap_err();
        assert!(err.to_string().contains("at least one gateway"), "{err}");
    }
}
