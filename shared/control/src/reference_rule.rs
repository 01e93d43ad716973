//! The reference rule: the fixed scaling rule the learned policy is warm-started from and held near
//! during training, and what scaling-decision decides with when its model cannot be loaded or run
//! (a truncated or tampered file, an inference error). Demand times a headroom, so it never needs
//! anything the observation does not carry.

/// The reference rule the scaling PPO is warm-started from and held near (see
/// [`trainer's `ppo::WarmStart``]): the demand ([`crate::FeatureBuilder::demand_executors`]) times a headroom
/// that depends on the burst signal and on how the weights split between latency and cost, memory
/// level 1, the NVMe tier, no codec. With `risk` = beta / (alpha + beta) (0.5 when both are 0), the
/// headroom while the edges' burst signal is up runs linearly through [`TEACHER_BURST_HEADROOM`] at
/// risk 0, 0.5 and 1; while it is down it is [`TEACHER_QUIET_HEADROOM`]`.0`, or `.1` from a risk of
/// [`TEACHER_CAUTIOUS_RISK`]. Each is then rounded up to an executor level.
///
/// Why these points, from fixed rules on 20 seeds of every trace with the edges' 60 s forecast
/// window (`cargo run --release -p experiments --example rule_sweep 20`): 0.95 x quiet and 1.2 x under a
/// burst was the cheapest pair tried within 1 % of events over the SLA on every trace, 1.02-1.13 x
/// the clairvoyant bound on the built-in ones; 0.95 / 1.0 costs 2-5 % less there (13 % on aws-elb)
/// and leaves 1.6 % of step-burst's events over the SLA, which a scenario that weighs cost 18 times
/// more than latency accepts; 1.0 / 1.6 is the most cautious pair, 0.19-0.37 % on the bursty
/// built-in traces at 1.06-1.21 x. A rule fixed for all weights taught a policy that ignored them,
/// and the meta-controller then had nothing to steer (`models/scaling-ppo.md`, "History and
/// ablations", change 7).
pub const TEACHER_BURST_HEADROOM: [f64; 3] = [1.0, 1.2, 1.6];
/// The reference rule's headroom while the burst signal is down: below and from [`TEACHER_CAUTIOUS_RISK`].
pub const TEACHER_QUIET_HEADROOM: (f64, f64) = (0.95, 1.0);
/// The latency share of the weights from which the reference rule carries 1.0 x the demand while quiet.
pub const TEACHER_CAUTIOUS_RISK: f64 = 0.75;

/// The reference rule's headroom over the demand for weights (alpha, beta), with the burst signal up or down.
pub fn teacher_headroom(alpha: f64, beta: f64, burst: bool) -> f64 {
    let (a, b) = (alpha.max(0.0), beta.max(0.0));
    let risk = if a + b > 0.0 { (b / (a + b)).clamp(0.0, 1.0) } else { 0.5 };
    if burst {
        let [low, mid, high] = TEACHER_BURST_HEADROOM;
        if risk <= 0.5 {
            low + (mid - low) * risk / 0.5
        } else {
            mid + (high - mid) * (risk - 0.5) / 0.5
        }
    } else if risk >= TEACHER_CAUTIOUS_RISK {
        TEACHER_QUIET_HEADROOM.1
    } else {
        TEACHER_QUIET_HEADROOM.0
    }
}

/// Index of the executor level whose headroom is `headroom` (the nearest one above it).
pub fn executor_level(headroom: f64) -> usize {
    crate::EXECUTOR_HEADROOM
        .iter()
        .skip(1)
        .position(|&h| h >= headroom - 1e-9)
        .map_or(crate::EXECUTOR_HEADROOM.len() - 1, |i| i + 1)
}

/// The reference rule's action indices for an observation, under its weights (see [`teacher_headroom`]).
pub fn teacher_indices(obs: &crate::Observation) -> [usize; 4] {
    let headroom = teacher_headroom(obs.alpha, obs.beta, obs.burst_signal);
    let tier = latency_model::Tier::CHOICES.iter().position(|&t| t == latency_model::Tier::Nvme).unwrap_or(0);
    let codec = latency_model::Compression::CHOICES
        .iter()
        .position(|&c| c == latency_model::Compression::None)
        .unwrap_or(0);
    [executor_level(headroom), 1, tier, codec]
}

/// The reference rule's action for an observation, as the policy's indices would give it.
pub fn reference_action(
    state: &crate::FeatureBuilder,
    obs: &crate::Observation,
) -> Result<crate::ScalingAction, crate::ControlError> {
    let [e, m, t, c] = teacher_indices(obs);
    state.action([e as i64, m as i64, t as i64, c as i64], obs)
}
