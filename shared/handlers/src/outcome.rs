//! What an invocation did, as types. Callers in other crates (the replay, the event-source bridge,
//! the live stack) read these fields; JSON is made from them only at the edge: the function's
//! response in `serve`, `sparkpilot invoke`, and the prewarm plan the dashboard shows.

use crate::events::RecordError;
use crate::shuffle_router::SweepReport;
use crate::wire::{Applies, DecisionRecord, Weights};
use control::PatternFeatures;
use serde::Serialize;
use std::collections::BTreeMap;

/// One invocation's outcome, one variant per function. Serialised untagged: each function's
/// response has its own fields.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Burst(BurstOutcome),
    Weights(WeightsOutcome),
    Decision(DecisionOutcome),
    Prewarm(PrewarmOutcome),
    Shuffle(ShuffleOutcome),
}

impl Outcome {
    /// The records of the batch the function could not use. The event-source bridge sends each to
    /// the dead-letter topic; the rest of the batch was handled.
    pub fn record_errors(&self) -> &[RecordError] {
        match self {
            Outcome::Burst(b) => &b.errors,
            Outcome::Weights(w) => &w.errors,
            Outcome::Decision(DecisionOutcome::Decided { errors, .. }) => errors,
            Outcome::Shuffle(ShuffleOutcome::Written(w)) => &w.errors,
            _ => &[],
        }
    }

    /// The decision scaling-decision made, if it made one.
    pub fn decision(&self) -> Option<&DecisionRecord> {
        match self {
            Outcome::Decision(DecisionOutcome::Decided { decision, .. }) => Some(decision.as_ref()),
            _ => None,
        }
    }

    /// What burst-signal saw, if this is its outcome.
    pub fn burst(&self) -> Option<&BurstOutcome> {
        match self {
            Outcome::Burst(b) => Some(b),
            _ => None,
        }
    }

    /// The response body a caller of the function gets.
    pub fn to_json(&self) -> serde_json::Value {
        // Every field is a plain number, string, list or map of them: this cannot fail.
        serde_json::to_value(self).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }
}

/// burst-signal: what one batch of edge records did to the cluster's burst state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BurstOutcome {
    /// Records in the batch.
    pub records: usize,
    pub accepted: usize,
    /// No newer than their edge's last record (redeliveries, reordering): skipped.
    pub stale: usize,
    /// Records with no value (compaction deletes).
    pub tombstones: usize,
    pub errors: Vec<RecordError>,
    /// The cluster is bursting.
    pub burst: bool,
    /// The burst state flipped with this batch (and a burst event was published).
    pub changed: bool,
    /// Events per second, rounded for a reader: the measured rate, the edges' newest summed
    /// forecast (one lead time ahead), the peak of the smoothed forecasts over the forecast window
    /// (below the newest forecast on a sharp rise: it is of the smoothed sums), and the larger of
    /// the two, which is what the scaling policy is given as predicted load.
    pub total_rate: f64,
    pub predicted_load: f64,
    pub smoothed_peak: f64,
    pub load_for_scaling: f64,
    pub edges: usize,
    pub edges_bursting: usize,
}

/// meta-weights: the weights it stored and what it based them on.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsOutcome {
    pub weights: Weights,
    pub context: ContextSummary,
    pub recent_violation_share: f64,
    pub recent_cost_per_s: f64,
    /// The meta-policy's input.
    pub features: Vec<f32>,
    pub errors: Vec<RecordError>,
}

/// The business context meta-weights decided in.
#[derive(Debug, Clone, Serialize)]
pub struct ContextSummary {
    pub scenario: &'static str,
    pub budget_usd: f64,
    pub budget_remaining: f64,
    pub horizon_s: f64,
}

/// scaling-decision: a decision, or why there was none.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum DecisionOutcome {
    /// Another decision held the lease past the wait (a schedule or direct call; a Kafka batch is
    /// refused as busy instead, so that it is delivered again).
    Skipped { skipped: String },
    /// Every record of the batch was decided on before (a redelivery).
    Duplicate { duplicate: bool, records: usize, seen_before: usize },
    Decided {
        // Boxed: a decision record is several hundred bytes, every other outcome a few dozen.
        decision: Box<DecisionRecord>,
        errors: Vec<RecordError>,
        /// Records of the batch decided on before, left out of this decision.
        #[serde(skip_serializing_if = "Option::is_none")]
        seen_before: Option<usize>,
        /// Stored state that could not be read and was started afresh, by key.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        discarded_state: Vec<String>,
    },
}

/// prewarmer: the capacity it planned from the load history, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct PrewarmOutcome {
    pub time_s: f64,
    /// Load samples in the forecast window.
    pub samples: usize,
    /// Stored samples that did not parse.
    pub skipped_samples: usize,
    /// Samples outside the window (too old, or ahead of the clock).
    pub ignored_samples: usize,
    pub buckets: usize,
    pub features: PatternFeatures,
    /// Expected rate per future bucket, events/s.
    pub forecast: Vec<f64>,
    /// The same with the margin: what capacity should be ready for.
    pub forecast_upper: Vec<f64>,
    pub baseline_executors: u32,
    pub prewarm_workers: u32,
    /// What happened to the application's capacity, in words.
    pub emr: String,
    pub applies: Applies,
    pub dry_run: bool,
}

/// shuffle-router: one of its operations.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ShuffleOutcome {
    Written(WriteOutcome),
    /// `status` is "ok" with the payload, or "restoring" while Glacier restores the block.
    Read {
        block_id: String,
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        size_bytes: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        payload_b64: Option<String>,
    },
    Moved {
        block_id: String,
        status: &'static str,
        tier: &'static str,
    },
    Swept {
        status: &'static str,
        report: SweepReport,
    },
}

/// A batch of block manifests placed and stored.
#[derive(Debug, Clone, Serialize)]
pub struct WriteOutcome {
    pub manifests: usize,
    pub stored: usize,
    /// Blocks stored per tier.
    pub tiers: BTreeMap<&'static str, usize>,
    pub bytes_in: u64,
    /// After compression.
    pub bytes_stored: u64,
    /// Copies written but not indexed, left for the sweep.
    pub orphans_left: usize,
    pub errors: Vec<RecordError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvme_fallback: Option<NvmeFallback>,
}

/// Blocks meant for NVMe that went to S3 because the NVMe directory is not usable.
#[derive(Debug, Clone, Serialize)]
pub struct NvmeFallback {
    pub blocks: usize,
    pub to: &'static str,
    pub reason: Option<String>,
}
