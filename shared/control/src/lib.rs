//! The decision core shared by the simulator and the deployed functions.
//!
//! Whatever the arena evaluates is what the functions run: the edge [`BurstDetector`], the observed
//! [`Observation`] a scaling policy sees, the [`ScalingAction`] it returns, the [`Guardrails`] that
//! bound it, the shuffle [`TierRouter`], the prewarmer's [`LoadForecaster`], and the rule of which
//! settings reach a running job ([`actuation`]).

pub mod actuation;
mod burst;
pub mod cluster;
mod error;
mod features;
mod forecast;
pub mod gateway;
mod guardrails;
mod meta;
mod policy_io;
pub mod reference_rule;
mod tier_router;

pub use burst::{BurstDetector, BurstDetectorConfig};
pub use cluster::{ClusterBurst, ClusterConfig, EdgeRecord};
pub use error::ControlError;
pub use features::{
    FeatureBuilder, ACTION_DIMS, BACKLOG_DRAIN_S, EXECUTOR_HEADROOM, FEATURES, FEATURE_NAMES,
    MEMORY_HEADROOM, POLICY_MAX_EXECUTORS,
};
pub use forecast::{
    plan_prewarm, prewarm_workers, Forecast, ForecastConfig, LoadForecaster, LoadSample, PatternFeatures,
    PrewarmPlan, DEFAULT_BYTES_PER_EVENT, PREWARM_HISTORY, PREWARM_UTILISATION,
};
pub use guardrails::{
    scale_up_time, GuardrailChange, GuardrailConfig, GuardrailContext, GuardrailRule, Guardrails, StepWindow,
    Throughput,
};
pub use meta::{recent_summary, MetaContext, Scenario, META_FEATURES};
pub use policy_io::{Observation, ScalingAction, MEMORY_CHOICES_GB};
pub use tier_router::{BlockStats, Placement, TierRouter, TierRouterConfig};
