//! What a scaling policy sees and what it returns. The simulator fills an [`Observation`] from its
//! state; the scaling-decision function fills the same struct from live metrics.

use latency_model::{Compression, Tier};
use serde::{Deserialize, Serialize};

/// Memory per executor a policy may choose, in GB. Executors are 4-vCPU EMR Serverless workers, which
/// accept 8–30 GB in 1 GB steps (EMR Serverless user guide, worker configurations); these six levels
/// span that range.
pub const MEMORY_CHOICES_GB: [u32; 6] = [8, 12, 16, 20, 24, 30];

/// A complete scaling decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalingAction {
    /// Executors wanted in total (pre-initialised ones count towards it).
    pub executors: u32,
    /// Memory per executor, GB.
    pub memory_gb: u32,
    /// Where shuffle blocks go.
    pub tier: Tier,
    /// Codec for shuffle blocks.
    pub compression: Compression,
    /// Pre-initialised (warm, always billed) workers to hold.
    pub prewarm: u32,
}

impl ScalingAction {
    /// Spark's defaults on EMR Serverless: local disk shuffle, LZ4 (`spark.io.compression.codec`).
    pub fn spark_default(executors: u32) -> Self {
        Self { executors, memory_gb: 16, tier: Tier::Nvme, compression: Compression::Lz4, prewarm: 0 }
    }
}

/// The state a live system can observe at a decision point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Seconds since the start of the episode (or of the day, live).
    pub time_s: f64,
    /// Busy share of running vCPUs over the last interval, 0..1. I/O wait counts as idle, as in
    /// `top`: an I/O-bound job shows low CPU (thesis 1.3).
    pub cpu_utilisation: f64,
    /// Working set over usable executor memory, can exceed 1 (spilling).
    pub memory_utilisation: f64,
    /// Events waiting (consumer lag).
    pub backlog_events: f64,
    /// Mean arrival rate over the last interval, events/s.
    pub input_rate: f64,
    /// Mean processing rate over the last interval, events/s.
    pub processing_rate: f64,
    pub running_executors: u32,
    pub pending_executors: u32,
    /// Edge burst signal.
    pub burst_signal: bool,
    /// Most load the edge gateways expect to arrive within their lead time, events/s (the peak of
    /// their recent forecasts, `ClusterBurst::predicted_or`).
    pub predicted_load: f64,
    /// Reuse probability of the current shuffle data, 0..1.
    pub data_temperature: f64,
    /// Shuffle data produced per second at the current input rate, MB/s (before compression).
    pub shuffle_mb_per_s: f64,
    /// Mean event size, bytes.
    pub bytes_per_event: f64,
    /// Latency an event arriving now would see (backlog wait + processing), ms.
    pub latency_ms: f64,
    /// Weight of cost in the reward.
    pub alpha: f64,
    /// Weight of latency in the reward.
    pub beta: f64,
    /// The SLA threshold, ms.
    pub sla_ms: f64,
    /// The action in force.
    pub current: ScalingAction,
}
