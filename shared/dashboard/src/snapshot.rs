//! What the page shows, read from the store the functions write.

use control::cluster::ClusterBurst;
use handlers::ports::StateStore;
use handlers::{Applies, Context, DecisionRecord, Keys, Weights};
use serde::Serialize;
use std::collections::VecDeque;

/// Decision records the log table gets (the charts get every stored one).
pub const LOG_ROWS: usize = 200;
/// Decision records read: scaling-decision keeps its newest 1,000.
pub const DECISIONS_READ: usize = 1_000;
/// Budget readings the dashboard remembers (meta-weights keeps only the newest in the store).
pub const SPEND_HISTORY: usize = 10_000;

/// Everything the page draws at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub title: String,
    /// Wall clock of the read, Unix seconds.
    pub read_at_s: f64,
    /// The newest decisions first, at most [`LOG_ROWS`].
    pub decisions: Vec<DecisionRecord>,
    /// Every stored decision, oldest first, as columns for the charts.
    pub series: Series,
    pub sla: SlaSummary,
    /// Settings of the newest decision that wait for something (the next job run, a stop).
    pub waiting: Vec<Waiting>,
    pub fleet: Option<Fleet>,
    pub weights: Option<Weights>,
    pub spend: Vec<SpendPoint>,
    /// What could not be read, each naming the key and the reason.
    pub problems: Vec<String>,
}

/// The decisions as columns, oldest first (the layout the chart library takes).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    pub time_s: Vec<f64>,
    pub input_rate: Vec<f64>,
    pub predicted_load: Vec<f64>,
    /// 1 while the edge burst signal was up.
    pub burst: Vec<u8>,
    /// Executors the decision asked for.
    pub requested: Vec<u32>,
    /// Executors running when the decision was taken (what the job reported).
    pub running: Vec<u32>,
    /// Executors Spark had registered, as the in-job agent reported them (none without an agent).
    pub live: Vec<Option<u32>>,
    pub memory_gb: Vec<u32>,
    pub tier: Vec<String>,
    pub codec: Vec<String>,
    pub latency_ms: Vec<f64>,
    pub sla_ms: Vec<f64>,
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
}

/// Decisions taken while the latency an event would see was above the SLA.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlaSummary {
    pub decisions: usize,
    pub over_sla: usize,
    pub share: f64,
}

/// A setting decided but not in force yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiting {
    pub setting: String,
    pub value: String,
    pub applies: Applies,
    pub via: String,
}

/// The edge gateways as burst-signal last merged them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    pub burst: bool,
    pub since_s: f64,
    pub total_rate: f64,
    pub predicted_load: f64,
    pub predicted_peak: f64,
    pub edges_bursting: usize,
    pub edges: Vec<EdgeRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeRow {
    pub edge_id: String,
    pub rate: f64,
    pub predicted_load: f64,
    pub burst: bool,
    pub last_ts: f64,
}

/// The budget meta-weights steered against, as it stood at `time_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpendPoint {
    pub time_s: f64,
    pub budget_usd: f64,
    pub budget_remaining: f64,
}

impl From<&ClusterBurst> for Fleet {
    fn from(c: &ClusterBurst) -> Self {
        let edges = c
            .edges
            .iter()
            .map(|(id, e)| EdgeRow {
                edge_id: id.clone(),
                rate: e.rate,
                predicted_load: e.predicted_load,
                burst: e.burst,
                last_ts: e.last_ts,
            })
            .collect();
        Self {
            burst: c.burst,
            since_s: c.since_s,
            total_rate: c.total_rate,
            predicted_load: c.predicted_load,
            predicted_peak: c.predicted_peak,
            edges_bursting: c.edges_bursting,
            edges,
        }
    }
}

impl Series {
    /// Columns of `oldest_first`.
    pub fn of(oldest_first: &[DecisionRecord]) -> Self {
        let mut s = Series::default();
        for d in oldest_first {
            let i = &d.inputs;
            s.time_s.push(d.time_s);
            s.input_rate.push(i.input_rate);
            s.predicted_load.push(i.predicted_load);
            s.burst.push(u8::from(i.burst_signal));
            s.requested.push(d.applied.executors);
            s.running.push(i.running_executors);
            s.live.push(d.executors.as_ref().and_then(|e| e.live));
            s.memory_gb.push(d.applied.memory_gb);
            s.tier.push(d.applied.tier.name().to_string());
            s.codec.push(d.applied.compression.name().to_string());
            s.latency_ms.push(i.latency_ms);
            s.sla_ms.push(i.sla_ms);
            s.alpha.push(i.alpha);
            s.beta.push(i.beta);
        }
        s
    }
}

impl SlaSummary {
    pub fn of(decisions: &[DecisionRecord]) -> Self {
        let over_sla = decisions.iter().filter(|d| d.inputs.latency_ms > d.inputs.sla_ms).count();
        Self {
            decisions: decisions.len(),
            over_sla,
            share: if decisions.is_empty() { 0.0 } else { over_sla as f64 / decisions.len() as f64 },
        }
    }
}

/// The settings of `newest` that something still has to apply.
pub fn waiting(newest: Option<&DecisionRecord>) -> Vec<Waiting> {
    newest
        .map(|d| {
            d.actuation
                .iter()
                .filter(|p| matches!(p.applies, Applies::NextJobRun | Applies::WhenStopped))
                .map(|p| Waiting {
                    setting: serde_json::to_value(p.setting)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    value: p.value.clone(),
                    applies: p.applies,
                    via: p.via.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Budget readings in time order, one per distinct reading time, the oldest dropped past the cap.
#[derive(Debug, Default)]
pub struct SpendHistory {
    points: VecDeque<SpendPoint>,
}

impl SpendHistory {
    pub fn observe(&mut self, c: &Context) {
        if !(c.time_s.is_finite() && c.budget_usd.is_finite() && c.budget_remaining.is_finite()) {
            return;
        }
        match self.points.back() {
            Some(last) if last.time_s == c.time_s => return,
            // An older reading (a replay started over, a clock set back) starts the history afresh.
            Some(last) if last.time_s > c.time_s => self.points.clear(),
            _ => {}
        }
        if self.points.len() == SPEND_HISTORY {
            self.points.pop_front();
        }
        self.points.push_back(SpendPoint {
            time_s: c.time_s,
            budget_usd: c.budget_usd,
            budget_remaining: c.budget_remaining,
        });
    }

    pub fn points(&self) -> Vec<SpendPoint> {
        self.points.iter().copied().collect()
    }
}

/// What one read of the store found.
pub(crate) struct Read {
    pub decisions: Vec<DecisionRecord>,
    pub fleet: Option<Fleet>,
    pub weights: Option<Weights>,
    pub context: Option<Context>,
    pub problems: Vec<String>,
}

/// Read the decision log, the cluster's burst state, the weights and the budget context. A value
/// that does not parse is named in `problems` and left out; a store that cannot be reached is an
/// error for the caller to show.
pub(crate) async fn read(store: &dyn StateStore, keys: &Keys) -> Result<Read, String> {
    let mut problems = Vec::new();
    let raw = store.recent(&keys.decisions(), DECISIONS_READ).await.map_err(|e| e.to_string())?;
    let mut decisions = Vec::with_capacity(raw.len());
    let mut unreadable = 0;
    for bytes in &raw {
        match serde_json::from_slice::<DecisionRecord>(bytes) {
            Ok(d) => decisions.push(d),
            Err(e) => {
                if unreadable == 0 {
                    problems.push(format!("{}: a decision record is unreadable: {e}", keys.decisions()));
                }
                unreadable += 1;
            }
        }
    }
    if unreadable > 1 {
        problems.push(format!("{}: {unreadable} decision records unreadable in all", keys.decisions()));
    }
    let names = [keys.cluster(), keys.weights(), keys.context()];
    let values = store.get_many(&names).await.map_err(|e| e.to_string())?;
    fn parse<T: serde::de::DeserializeOwned>(
        key: &str,
        value: Option<&Vec<u8>>,
        problems: &mut Vec<String>,
    ) -> Option<T> {
        let bytes = value?;
        serde_json::from_slice(bytes).map_err(|e| problems.push(format!("{key} is unreadable: {e}"))).ok()
    }
    let cluster: Option<ClusterBurst> =
        parse(&names[0], values.first().and_then(Option::as_ref), &mut problems);
    let weights: Option<Weights> = parse(&names[1], values.get(1).and_then(Option::as_ref), &mut problems);
    let context: Option<Context> = parse(&names[2], values.get(2).and_then(Option::as_ref), &mut problems);
    Ok(Read { decisions, fleet: cluster.as_ref().map(Fleet::from), weights, context, problems })
}
