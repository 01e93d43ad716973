//! The decision core shared by the simulator and the deployed functions.
//!
//! Whatever the arena evaluates is what the functions run: the edge [`BurstDetector`], the observed
//! [`Observation`] a scaling policy sees, and the [`ScalingAction`] it returns.

mod burst;
mod error;
mod features;
mod meta;
mod state;

pub use burst::{BurstDetector, BurstDetectorConfig};
pub use error::ControlError;
pub use features::{action_from_indices, StateBuilder, ACTION_DIMS, FEATURES, FEATURE_NAMES};
pub use meta::{MetaContext, Scenario, META_FEATURES};
pub use state::{Observation, ScalingAction, MEMORY_CHOICES_GB};
