//! A scaling policy that always picks the same action indices of the learned policy's heads (one set
//! while the burst signal is down, one while it is up), decoded by the same `FeatureBuilder` and bounded
//! by the same guardrails: the no-learning reference the ablation examples sweep.

use control::{FeatureBuilder, Observation, ScalingAction};
use sim::learned::ArenaGuardrails;
use sim::{Arena, EpisodeInfo, Policy};

pub struct FixedIndices {
    state: FeatureBuilder,
    /// Indices while the burst signal is down, and while it is up.
    indices: [[i64; 4]; 2],
    guard: ArenaGuardrails,
}

/// The rule "`quiet` x the demand while quiet, `burst` x under a burst signal" ([`FixedIndices::headroom_rule`])
/// on seeds `0..seeds` of trace `name`: its cost summed over the seeds and its mean share of events
/// over the SLA, %.
pub fn score_headroom_rule(
    arena: &Arena,
    name: &str,
    quiet: f64,
    burst: f64,
    seeds: u64,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let (mut cost, mut violations) = (0.0, 0.0);
    for seed in 0..seeds {
        let trace = traces::resolve(name, seed)?;
        let mut rule = FixedIndices::headroom_rule(arena, quiet, burst).ok_or_else(|| {
            format!("{quiet} / {burst}: not executor levels of {:?}", control::EXECUTOR_HEADROOM)
        })?;
        let scores = arena.run(&trace, seed, &mut rule, None)?;
        cost += scores.cost_usd;
        violations += scores.sla_violation_pct;
    }
    Ok((cost, violations / seeds.max(1) as f64))
}

impl FixedIndices {
    /// The rule "`quiet` x the demand while the burst signal is down, `burst` x while it is up" on
    /// NVMe, memory level 0, no codec; `None` if either headroom is not one of the executor levels.
    pub fn headroom_rule(arena: &Arena, quiet: f64, burst: f64) -> Option<Self> {
        let level =
            |h: f64| control::EXECUTOR_HEADROOM.iter().position(|&l| (l - h).abs() < 1e-9).map(|k| k as i64);
        let nvme = latency_model::Tier::CHOICES.iter().position(|&t| t == latency_model::Tier::Nvme)? as i64;
        let none = latency_model::Compression::CHOICES
            .iter()
            .position(|&c| c == latency_model::Compression::None)? as i64;
        Some(Self::new(arena, [level(quiet)?, 0, nvme, none], [level(burst)?, 0, nvme, none]))
    }

    /// Fixed head indices (executors, memory, tier, codec) while quiet and under a burst signal.
    pub fn new(arena: &Arena, quiet: [i64; 4], burst: [i64; 4]) -> Self {
        Self {
            state: arena.feature_builder(),
            indices: [quiet, burst],
            guard: ArenaGuardrails::new(arena.config.max_executors),
        }
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
