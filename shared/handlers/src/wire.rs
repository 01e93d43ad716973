//! Records on the wire and state kept in the store between invocations. All JSON, so that an
//! operator can read them with `redis-cli` and `kafka-console-consumer`.

use control::actuation::Lever;
use control::{GuardrailChange, Observation, ScalingAction, Scenario};
use latency_model::Compression;
use serde::{Deserialize, Serialize};

/// Redis keys of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys are `{prefix}:...`: the braces are a Redis hash tag, so all of a deployment's keys fall
    /// in one cluster slot and multi-key commands (MGET, the versioned write) stay legal.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: format!("{{{prefix}}}") }
    }
    pub fn edge(&self, edge_id: &str) -> String {
        format!("{}:edge:{edge_id}", self.prefix)
    }
    pub fn cluster(&self) -> String {
        format!("{}:cluster", self.prefix)
    }
    /// Counter advanced by every write of burst-signal's state.
    pub fn burst_version(&self) -> String {
        format!("{}:burst:version", self.prefix)
    }
    pub fn metrics(&self) -> String {
        format!("{}:metrics:latest", self.prefix)
    }
    pub fn load_history(&self) -> String {
        format!("{}:load-history", self.prefix)
    }
    pub fn weights(&self) -> String {
        format!("{}:weights", self.prefix)
    }
    pub fn weights_version(&self) -> String {
        format!("{}:weights:version", self.prefix)
    }
    pub fn context(&self) -> String {
        format!("{}:context", self.prefix)
    }
    pub fn decisions(&self) -> String {
        format!("{}:decisions", self.prefix)
    }
    pub fn last_decision(&self) -> String {
        format!("{}:decision:last", self.prefix)
    }
    /// The Spark parameters stored for the next job run.
    pub fn next_run(&self) -> String {
        format!("{}:emr:next-run", self.prefix)
    }
    pub fn pending_capacity(&self) -> String {
        format!("{}:emr:pending", self.prefix)
    }
    pub fn prewarm(&self) -> String {
        format!("{}:prewarm:last", self.prefix)
    }
    /// The highest offset of `topic`'s `partition` that scaling-decision has decided on.
    pub fn decided_offset(&self, topic: &str, partition: i64) -> String {
        format!("{}:offsets:{topic}:{partition}", self.prefix)
    }
    /// Held by the scaling decision under way.
    pub fn decision_lease(&self) -> String {
        format!("{}:decision:lease", self.prefix)
    }
    pub fn seen(&self, digest: &str) -> String {
        format!("{}:seen:{digest}", self.prefix)
    }
    /// Mean router temperature of the last shuffle blocks written (shuffle-router -> scaling-decision).
    pub fn shuffle_temperature(&self) -> String {
        format!("{}:shuffle:temperature", self.prefix)
    }
    pub fn block_index(&self, block_id: &str) -> String {
        format!("{}:block:{block_id}", self.prefix)
    }
    pub fn block_data(&self, block_id: &str) -> String {
        format!("{}:blockdata:{block_id}", self.prefix)
    }
}

// Edge records and the burst state built from them are the control crate's, shared with the arena.
pub use control::cluster::{ClusterBurst, EdgeRecord, EdgeState};

/// Published to `scaling-requests` when the cluster burst state changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstEvent {
    pub kind: String,
    pub burst: bool,
    pub time_s: f64,
    pub total_rate: f64,
    pub predicted_load: f64,
    /// The peak of the forecasts over the cluster's forecast window (see
    /// `control::ClusterBurst::predicted_or`); absent from events published before it existed.
    #[serde(default)]
    pub predicted_peak: f64,
    pub edges: usize,
    pub edges_bursting: usize,
}

/// Micro-batch progress the Spark job publishes to `spark-metrics` (StreamingQueryProgress, reduced);
/// the in-job agent (`spark/sparkpilot_agent.py`) writes one per micro-batch. Unknown fields are
/// ignored, so a job that reports more does not have every record refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparkMetrics {
    /// Unix seconds.
    pub timestamp: f64,
    /// Events/s arriving.
    pub input_rate: f64,
    /// Events/s processed.
    pub processing_rate: f64,
    pub batch_duration_ms: f64,
    /// Events waiting (consumer lag).
    pub backlog: f64,
    #[serde(default)]
    pub cpu_utilisation: Option<f64>,
    #[serde(default)]
    pub memory_utilisation: Option<f64>,
    #[serde(default)]
    pub running_executors: Option<u32>,
    #[serde(default)]
    pub pending_executors: Option<u32>,
    #[serde(default)]
    pub shuffle_mb_per_s: Option<f64>,
    #[serde(default)]
    pub bytes_per_event: Option<f64>,
    /// What the in-job agent did; absent when metrics come from elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentReport>,
}

/// The in-job agent's account of the executor target it set, with each micro-batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    /// Executors the agent asked Spark for.
    pub target_executors: u32,
    /// `time_s` of the decision it follows; none before the first one.
    #[serde(default)]
    pub decision_time_s: Option<f64>,
    /// "following", "no decision", "stale decision ignored", "kafka unavailable", ...
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub application_id: String,
    #[serde(default)]
    pub query_id: String,
    #[serde(default)]
    pub batch_id: Option<u64>,
    /// Tasks failed in the job so far (a scale-down must not add any).
    #[serde(default)]
    pub failed_tasks: Option<u64>,
}

/// Physical bounds of a micro-batch report. Each is far beyond a real job, and small enough that every
/// quantity the decision derives from them (latency = backlog / rate, cost, the policy's features)
/// stays finite: a backlog of 1e308 drained at 1e-300 events/s once made the latency infinite, which
/// JSON stores as null, and every later decision failed on the stored record.
pub mod bounds {
    /// Events/s in or out of a job.
    pub const RATE: f64 = 1e9;
    /// Events waiting.
    pub const BACKLOG: f64 = 1e13;
    /// A micro-batch's duration: a day.
    pub const BATCH_MS: f64 = 86_400_000.0;
    /// Utilisation is a share; agents round, so a little over 1 is accepted (and clamped later).
    pub const UTILISATION: f64 = 2.0;
    pub const SHUFFLE_MB_PER_S: f64 = 1e7;
    /// A gigabyte per event.
    pub const BYTES_PER_EVENT: f64 = 1e9;
    pub const EXECUTORS: u32 = 100_000;
}

impl SparkMetrics {
    /// The first field out of its physical range (or not a number), with the range, if any.
    pub fn invalid_field(&self) -> Option<String> {
        let out = |v: f64, max: f64| !(v.is_finite() && (0.0..=max).contains(&v));
        let opt = |v: Option<f64>, max: f64| v.is_some_and(|v| out(v, max));
        let checks = [
            ("timestamp", out(self.timestamp, f64::MAX), f64::MAX),
            ("input_rate", out(self.input_rate, bounds::RATE), bounds::RATE),
            ("processing_rate", out(self.processing_rate, bounds::RATE), bounds::RATE),
            ("batch_duration_ms", out(self.batch_duration_ms, bounds::BATCH_MS), bounds::BATCH_MS),
            ("backlog", out(self.backlog, bounds::BACKLOG), bounds::BACKLOG),
            ("cpu_utilisation", opt(self.cpu_utilisation, bounds::UTILISATION), bounds::UTILISATION),
            ("memory_utilisation", opt(self.memory_utilisation, bounds::UTILISATION), bounds::UTILISATION),
            (
                "shuffle_mb_per_s",
                opt(self.shuffle_mb_per_s, bounds::SHUFFLE_MB_PER_S),
                bounds::SHUFFLE_MB_PER_S,
            ),
            ("bytes_per_event", opt(self.bytes_per_event, bounds::BYTES_PER_EVENT), bounds::BYTES_PER_EVENT),
            (
                "running_executors",
                self.running_executors.is_some_and(|n| n > bounds::EXECUTORS),
                bounds::EXECUTORS as f64,
            ),
            (
                "pending_executors",
                self.pending_executors.is_some_and(|n| n > bounds::EXECUTORS),
                bounds::EXECUTORS as f64,
            ),
            (
                "agent.decision_time_s",
                opt(self.agent.as_ref().and_then(|a| a.decision_time_s), f64::MAX),
                f64::MAX,
            ),
        ];
        checks.into_iter().find(|c| c.1).map(|(name, _, max)| {
            if max == f64::MAX {
                format!("{name} must be a non-negative number")
            } else {
                format!("{name} must be a number from 0 to {max:e}")
            }
        })
    }
}

/// Reward weights chosen by the meta-controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub alpha: f64,
    pub beta: f64,
    pub version: u64,
    pub scenario: Scenario,
    pub time_s: f64,
    pub model_version: String,
}

/// The business context the meta-controller steers for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub scenario: Scenario,
    pub budget_usd: f64,
    pub budget_remaining: f64,
    pub horizon_s: f64,
    pub time_s: f64,
}

/// Everything about one scaling decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub time_s: f64,
    /// What triggered it ("scaling-requests", "spark-metrics", "schedule", ...).
    pub trigger: String,
    pub reason: String,
    pub inputs: Observation,
    pub proposed: ScalingAction,
    pub applied: ScalingAction,
    pub guardrail_changes: Vec<GuardrailChange>,
    pub model_version: String,
    pub weights_version: u64,
    pub dry_run: bool,
    /// What happened to the maximum capacity at EMR Serverless: "updated", "unchanged", "pending: ..."
    /// (waits for the next stop), "dry run". Every setting's own outcome is in `actuation`.
    pub emr: String,
    /// What happened at ElastiCache.
    pub hot_tier: String,
    /// When the executor count was last raised (the guardrails' cooldown clock). Records written
    /// before the cooldown counted from scale-ups alone name it `last_change_s`; read as this, it
    /// holds one scale-down back a little longer, once.
    #[serde(alias = "last_change_s")]
    pub last_scale_up_s: Option<f64>,
    /// What the job runs once this decision is applied: executors and tier from it, memory, codec
    /// and pre-initialised workers from the job run (`control::actuation`). Absent from records
    /// written before the in-job agent, which read as `applied`.
    #[serde(default)]
    pub running: Option<ScalingAction>,
    /// Each setting of the decision: its value, when it takes effect, through what, and why.
    #[serde(default)]
    pub actuation: Vec<ActuationPart>,
    /// Executors decided against what the in-job agent set and what Spark runs, as the newest
    /// micro-batch reported them.
    #[serde(default)]
    pub executors: Option<ExecutorReport>,
    /// The Spark parameters the next job run should start with, when they differ from this run's.
    #[serde(default)]
    pub next_run: Option<JobRunConfig>,
    /// The step window in force after this decision (the guardrails' step limit counts from it).
    #[serde(default)]
    pub step_window: Option<control::StepWindow>,
    /// Why the decision comes from the reference rule instead of the model, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl DecisionRecord {
    /// What the job runs after this decision (records from before the agent: what was applied).
    pub fn running(&self) -> ScalingAction {
        self.running.unwrap_or(self.applied)
    }
}

/// A setting a decision carries, as a record names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    Executors,
    ShuffleTier,
    MemoryPerExecutor,
    Codec,
    Prewarm,
    /// The application's maximum capacity: the ceiling the agent scales executors under.
    MaximumCapacity,
}

impl From<Lever> for Setting {
    fn from(l: Lever) -> Self {
        match l {
            Lever::Executors => Setting::Executors,
            Lever::ShuffleTier => Setting::ShuffleTier,
            Lever::MemoryPerExecutor => Setting::MemoryPerExecutor,
            Lever::Codec => Setting::Codec,
            Lever::Prewarm => Setting::Prewarm,
        }
    }
}

/// When a setting takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applies {
    /// Sent now through a path the service accepts in its present state.
    Now,
    /// Stored for the next job run (StartJobRun's Spark parameters).
    NextJobRun,
    /// Stored until the application is stopped or created (UpdateApplication).
    WhenStopped,
    /// Already in force.
    Unchanged,
    /// Dry run: nothing sent.
    DryRun,
}

/// One setting of a decision and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActuationPart {
    pub setting: Setting,
    pub value: String,
    pub applies: Applies,
    pub via: String,
    pub why: String,
}

/// Executors decided against what the in-job agent set and what Spark runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorReport {
    /// The decision's executors.
    pub requested: u32,
    /// The agent's target with the newest micro-batch.
    pub agent_target: Option<u32>,
    /// Executors Spark had registered then.
    pub live: Option<u32>,
    /// `time_s` of the decision the agent followed then.
    pub agent_decision_time_s: Option<f64>,
    pub agent_status: Option<String>,
}

/// What a job run is started with: EMR Serverless takes these in StartJobRun's
/// `sparkSubmitParameters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRunConfig {
    pub executors: u32,
    /// Worker memory, GB.
    pub memory_gb: u32,
    pub codec: Compression,
    pub spark_submit_parameters: String,
}

/// Share of a worker's memory Spark's heap gets on EMR Serverless: its default Spark properties give
/// 16 GB workers `spark.executor.memory` 14G, the rest being the container overhead.
const HEAP_SHARE: f64 = 14.0 / 16.0;

impl JobRunConfig {
    pub fn for_action(action: &ScalingAction) -> Self {
        let heap_gb = ((action.memory_gb as f64 * HEAP_SHARE).floor() as u32).max(1);
        let codec = match action.compression {
            Compression::None => {
                "--conf spark.shuffle.compress=false --conf spark.shuffle.spill.compress=false".to_string()
            }
            c => format!("--conf spark.io.compression.codec={}", c.name()),
        };
        Self {
            executors: action.executors,
            memory_gb: action.memory_gb,
            codec: action.compression,
            spark_submit_parameters: format!("--conf spark.dynamicAllocation.enabled=false --conf spark.executor.instances={} --conf spark.executor.memory={heap_gb}g {codec}", action.executors),
        }
    }
}
