//! Where each part of a scaling action takes effect while a streaming job runs.
//!
//! EMR Serverless accepts UpdateApplication only while an application is CREATED or STOPPED, and a
//! streaming job keeps its application STARTED. So a running job takes only what something inside
//! or beside it can change:
//!
//! - **executors**, live: the in-job agent (`spark/sparkpilot_agent.py`) follows the newest decision
//!   and sets the job's executor target through Spark's executor-allocation API;
//! - **the shuffle tier**, live: shuffle-router places the job's next blocks where the decision says;
//! - **memory per executor and the codec**, at the next job run: both are fixed per SparkContext
//!   (`spark.executor.memory`, `spark.io.compression.codec`), so they go into the next StartJobRun;
//! - **pre-initialised workers**, when the application is next stopped or created: they are the
//!   application's initial capacity, which only UpdateApplication (or CreateApplication) sets.
//!
//! The arena plays the same rule through [`running_action`], so that a policy is never rewarded for
//! a setting no real deployment would apply during the run it is judged on.
//!
//! ```
//! use control::{actuation::{running_action, Lever, Timing}, ScalingAction};
//! use latency_model::{Compression, Tier};
//!
//! let run = ScalingAction::spark_default(4);
//! let decided = ScalingAction { executors: 9, memory_gb: 30, tier: Tier::Redis, compression: Compression::Zstd, prewarm: 3 };
//! let running = running_action(&decided, &run);
//! assert_eq!((running.executors, running.tier), (9, Tier::Redis));
//! assert_eq!((running.memory_gb, running.compression, running.prewarm), (16, Compression::Lz4, 0));
//! assert_eq!(Lever::MemoryPerExecutor.timing(), Timing::NextJobRun);
//! ```

use crate::ScalingAction;
use serde::{Deserialize, Serialize};

/// One setting of a [`ScalingAction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lever {
    Executors,
    ShuffleTier,
    MemoryPerExecutor,
    Codec,
    Prewarm,
}

/// When a setting reaches a job that is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// While the job runs.
    Live,
    /// With the job's next run (StartJobRun's Spark parameters).
    NextJobRun,
    /// When the application is next stopped or created (UpdateApplication).
    ApplicationStopped,
}

impl Lever {
    pub const ALL: [Lever; 5] =
        [Lever::Executors, Lever::ShuffleTier, Lever::MemoryPerExecutor, Lever::Codec, Lever::Prewarm];

    pub fn timing(self) -> Timing {
        match self {
            Lever::Executors | Lever::ShuffleTier => Timing::Live,
            Lever::MemoryPerExecutor | Lever::Codec => Timing::NextJobRun,
            Lever::Prewarm => Timing::ApplicationStopped,
        }
    }

    /// The path that carries the setting to the job.
    pub fn via(self) -> &'static str {
        match self {
            Lever::Executors => "the in-job agent (scaling-decisions topic, Spark's executor-allocation API)",
            Lever::ShuffleTier => "shuffle-router (the job's next blocks)",
            Lever::MemoryPerExecutor => "StartJobRun sparkSubmitParameters (spark.executor.memory)",
            Lever::Codec => "StartJobRun sparkSubmitParameters (spark.io.compression.codec)",
            Lever::Prewarm => "UpdateApplication initialCapacity",
        }
    }

    /// The setting's value in `action`, as a record shows it.
    pub fn value(self, action: &ScalingAction) -> String {
        match self {
            Lever::Executors => action.executors.to_string(),
            Lever::ShuffleTier => action.tier.name().to_string(),
            Lever::MemoryPerExecutor => format!("{} GB", action.memory_gb),
            Lever::Codec => action.compression.name().to_string(),
            Lever::Prewarm => action.prewarm.to_string(),
        }
    }

    /// Whether the setting differs between two actions.
    pub fn differs(self, a: &ScalingAction, b: &ScalingAction) -> bool {
        match self {
            Lever::Executors => a.executors != b.executors,
            Lever::ShuffleTier => a.tier != b.tier,
            Lever::MemoryPerExecutor => a.memory_gb != b.memory_gb,
            Lever::Codec => a.compression != b.compression,
            Lever::Prewarm => a.prewarm != b.prewarm,
        }
    }
}

/// What a job configured as `run` runs once `decided` has been applied: the live settings from the
/// decision, the rest from the run.
pub fn running_action(decided: &ScalingAction, run: &ScalingAction) -> ScalingAction {
    ScalingAction {
        executors: decided.executors,
        tier: decided.tier,
        memory_gb: run.memory_gb,
        compression: run.compression,
        prewarm: run.prewarm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_model::{Compression, Tier};

    #[test]
    fn only_the_live_levers_reach_a_running_job_and_the_rest_keep_the_runs_values() {
        let run = ScalingAction {
            executors: 2,
            memory_gb: 12,
            tier: Tier::S3,
            compression: Compression::None,
            prewarm: 1,
        };
        let decided = ScalingAction {
            executors: 20,
            memory_gb: 30,
            tier: Tier::Nvme,
            compression: Compression::Zstd,
            prewarm: 8,
        };
        let running = running_action(&decided, &run);
        for lever in Lever::ALL {
            let from_decision = lever.value(&running) == lever.value(&decided);
            assert_eq!(from_decision, lever.timing() == Timing::Live, "{lever:?}");
            if lever.timing() != Timing::Live {
                assert_eq!(lever.value(&running), lever.value(&run), "{lever:?}");
            }
        }
        // Applying a decision twice changes nothing more.
        assert_eq!(running_action(&decided, &running), running);
    }
}
