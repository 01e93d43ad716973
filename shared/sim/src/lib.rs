//! The sparkpilot arenas.
//!
//! * [`realistic`]: EMR Serverless under a load trace, one-second steps, cold starts, backlog,
//!   tier bandwidth, per-event latency and billing from the cost model. The main arena.
//! * [`seed_compat`]: the thesis's published simulator, rule for rule, to reproduce its table.
//! * [`baselines`] and [`clairvoyant`]: the policies every learned policy must beat, and the bound.
//! * [`tournament`]: every policy on the same trace and seeds.
//!
//! ```
//! use sim::{Arena, baselines::Fixed};
//! let arena = Arena::embedded();
//! let trace = traces::resolve("step-burst", 1).unwrap();
//! let scores = arena.run(&trace, 1, &mut Fixed::default(), None).unwrap();
//! assert!(scores.cost_usd > 0.0);
//! ```

pub mod baselines;
pub mod clairvoyant;
pub mod config;
pub mod edge;
mod error;
pub mod learned;
pub mod metrics;
pub mod realistic;
pub mod seed_compat;
pub mod svg;
pub mod tournament;
pub mod workers;

pub use config::{Actuation, ArenaConfig, ColdStart, EdgeConfig};
pub use error::SimError;
pub use metrics::Scores;
pub use realistic::{Arena, ConstantPolicy, Episode, EpisodeInfo, IntervalOutcome, Policy, Timeline};
