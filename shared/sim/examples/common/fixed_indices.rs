//! A scaling policy that always picks the same action indices of the learned policy's heads (one set
//! while the burst signal is down, one while it is up), decoded by the same `StateBuilder` and bounded
//! by the same guardrails: the no-learning reference the ablation examples sweep.

use control::{Observation, ScalingAction, StateBuilder};
use sim::learned::ArenaGuardrails;
use sim::{Arena, EpisodeInfo, Policy};

pub struct FixedIndices {
    state: StateBuilder,
    /// Indices while the burst signal is down, and while it is up.
    indices: [[i64; 4]; 2],
    guard: ArenaGuardrails,
}

impl FixedIndices {
    pub fn new(arena: &Arena, quiet: [i64; 4], burst: [i64; 4]) -> Self {
        Self { state: arena.state_builder(), indices: [quiet, burst], guard: ArenaGuardrails::new(arena.config.max_executors) }
    }
}

impl Policy for FixedIndices {
    fn name(&self) -> &str {
        "fixed-indices"
    }
    fn reset(&mut self, info: &EpisodeInfo) {
        self.guard = ArenaGuardrails::new(info.max_executors);
    }
    fn decide(&mut self, obs: &Observation) -> ScalingAction {
        // Indices out of range keep the action in force (the sweeps only pass valid ones).
        match self.state.action(self.indices[usize::from(obs.burst_signal)], obs) {
            Ok(proposed) => self.guard.apply(proposed, obs),
            Err(_) => obs.current,
        }
    }
}
