//! The diagnostics the model cards and `docs/research-log.md` quote: sweeps of fixed rules against
//! the clairvoyant bound, cost breakdowns, the actions a model takes and the weights the
//! meta-controller picks. Each is an example of this crate
//! (`cargo run --release -p experiments --example NAME ...`, or `cargo build --release --workspace
//! --examples` and `target/release/examples/NAME`); the policy they share is the library.
//!
//! ```
//! use experiments::fixed_indices::FixedIndices;
//! use sim::Arena;
//!
//! // The reference rule's shape: 0.95 x the demand while quiet, 1.2 x under a burst signal.
//! let arena = Arena::embedded();
//! assert!(FixedIndices::headroom_rule(&arena, 0.95, 1.2).is_some());
//! ```

pub mod fixed_indices;

/// The fourteen traces the README's tables score: the built-ins, both real ones and the generated
/// shapes (`data/traces/generated/`), paths relative to the repository root.
pub const EVALUATION_TRACES: [&str; 14] = [
    "step-burst",
    "burst-4x",
    "rush-hour",
    "slow-ramp",
    "flash-crowd",
    "spike-30x",
    "data/traces/real/aws-elb-requests.csv",
    "data/traces/real/nyc-taxi-week.csv",
    "data/traces/generated/step-30x.csv",
    "data/traces/generated/ramp-30x.csv",
    "data/traces/generated/io-frames.csv",
    "data/traces/generated/false-alarms.csv",
    "data/traces/generated/diurnal.csv",
    "data/traces/generated/staircase.csv",
];
