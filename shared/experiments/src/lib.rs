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
