//! The seed-compat arena: the thesis's published tournament simulator, rule for rule as restated in
//! `seed-env.md`, flaws included (an exact oracle of the next load in the observation, stale volume,
//! shuffle and temperature, independent steps). It exists so that the thesis's table can be
//! reproduced and our policies measured in the same arena. Never train the realistic policy here.

use crate::metrics::{percentile_linear, RunningStd, Scores};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Steps of one tournament episode.
pub const EPISODE_STEPS: usize = 500;
/// The SLA of the seed's tournament, ms.
pub const SLA_MS: f64 = 1_000.0;
/// Action space: executors 1..20, GB 1..8, tier, compression.
pub const ACTION_DIMS: [usize; 4] = [20, 8, 4, 3];
/// Declared upper bounds of the observation (values can exceed them).
pub const OBS_HIGH: [f64; 13] =
    [1000.0, 1000.0, 100.0, 100.0, 10000.0, 100.0, 1.0, 1.0, 1.0, 10000.0, 1.0, 1000.0, 1.0];

/// Access time per 100 MB of (compressed) shuffle, ms, by tier: Redis, NVMe, S3, Glacier.
pub const ACCESS: [f64; 4] = [5.0, 20.0, 100.0, 5000.0];
/// Compressed size as a share of the shuffle, by codec: none, light, heavy.
pub const COMPRESSED: [f64; 3] = [1.0, 0.6, 0.3];
/// Decompression time per 100 MB of shuffle, ms, by codec.
pub const DECOMPRESS: [f64; 3] = [0.0, 10.0, 50.0];
/// The largest shuffle a step can have, MB: a volume of up to 500 MB times a share of up to 0.5
/// (seed-env.md 3). The observation's shuffle is the previous step's, so a policy that must meet
/// the SLA whatever comes plans for this one.
pub const MAX_SHUFFLE_MB: f64 = 500.0 * 0.5;
/// Storage price per GB of (compressed) shuffle per step, by tier.
pub const STORAGE_PRICE: [f64; 4] = [0.10, 0.05, 0.02, 0.005];
/// Cost per executor per step, and per executor-GB per step.
pub const EXECUTOR_PRICE: f64 = 0.1;
pub const GB_PRICE: f64 = 0.05;

pub use control::Scenario;

/// Result of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedStep {
    pub obs: [f64; 13],
    pub reward: f64,
    pub latency_ms: f64,
    pub cost: f64,
    pub executors: usize,
    pub throughput: f64,
}

/// Per-step outcome of an action for a given load and shuffle size (the seed's formulas, section 4).
pub fn evaluate(action: [usize; 4], load: f64, shuffle: f64) -> (f64, f64, f64) {
    let n = (action[0].min(19) + 1) as f64;
    let m = (action[1].min(7) + 1) as f64;
    let tier = action[2].min(3);
    let comp = action[3].min(2);
    let compute = 100.0 * load / (n * m);
    let compressed = shuffle * COMPRESSED[comp];
    let access = ACCESS[tier] * compressed / 100.0;
    let decompression = DECOMPRESS[comp] * shuffle / 100.0;
    let latency = (compute + access + decompression).max(10.0);
    let cost = EXECUTOR_PRICE * n + GB_PRICE * n * m + compressed / 1024.0 * STORAGE_PRICE[tier];
    let throughput = n * m * 1_000.0 / latency;
    (latency, cost, throughput)
}

/// The seed environment.
#[derive(Debug, Clone)]
pub struct SeedEnv {
    rng: Xoshiro256PlusPlus,
    scenario: Scenario,
    load: f64,
    volume: f64,
    shuffle: f64,
    temperature: f64,
    steps: usize,
}

impl SeedEnv {
    /// A new episode; returns the environment and its first observation.
    pub fn reset(seed: u64) -> (Self, [f64; 13]) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let scenario = Scenario::ALL[rng.random_range(0..4)];
        Self::start(rng, scenario)
    }

    /// A new episode with a chosen scenario (for training and per-scenario evaluation).
    pub fn reset_with(seed: u64, scenario: Scenario) -> (Self, [f64; 13]) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let _ = rng.random_range(0..4); // keep the workload stream identical to `reset`
        Self::start(rng, scenario)
    }

    fn start(mut rng: Xoshiro256PlusPlus, scenario: Scenario) -> (Self, [f64; 13]) {
        let load = rng.random_range(10.0..200.0);
        let volume = rng.random_range(10.0..500.0);
        let shuffle = volume * rng.random_range(0.1..0.5);
        debug_assert!(shuffle <= MAX_SHUFFLE_MB);
        let temperature = rng.random_range(0.0..1.0);
        let [a, b, g] = scenario.weights();
        let obs = [load, volume, 50.0, 50.0, 500.0, 5.0, a, b, g, shuffle, temperature, load, 0.0];
        (Self { rng, scenario, load, volume, shuffle, temperature, steps: 0 }, obs)
    }

    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// The load the next step will process (what the clairvoyant knows).
    pub fn load(&self) -> f64 {
        self.load
    }

    /// The shuffle size the next step will process (hidden from the observation, which is stale).
    pub fn shuffle(&self) -> f64 {
        self.shuffle
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Apply an action (indices of the MultiDiscrete [20, 8, 4, 3] space).
    pub fn step(&mut self, action: [usize; 4]) -> SeedStep {
        let (latency, cost, throughput) = evaluate(action, self.load, self.shuffle);
        let n = action[0].min(19) + 1;
        let m = action[1].min(7) + 1;
        let [alpha, beta, gamma] = self.scenario.weights();
        let penalty = if self.temperature > 0.7 && action[2].min(3) > 1 { 0.5 } else { 0.0 };
        let reward = -alpha * cost / 10.0 - beta * latency / 1_000.0 + gamma * throughput / 1_000.0 - penalty;
        let nm = (n * m) as f64;
        let cpu = (self.load / nm * 100.0).min(100.0);
        let mem = (self.volume / nm * 100.0).min(100.0);
        let (done_load, done_volume, done_shuffle, done_temp) =
            (self.load, self.volume, self.shuffle, self.temperature);
        // Next step's workload: burst test, growth factor, volume, shuffle factor, temperature.
        let burst = self.rng.random::<f64>() < 0.2;
        self.load = if burst {
            (self.load * self.rng.random_range(2.0..4.0)).min(900.0)
        } else {
            (self.load * self.rng.random_range(0.8..1.2)).clamp(10.0, 900.0)
        };
        self.volume = self.rng.random_range(10.0..500.0);
        self.shuffle = self.volume * self.rng.random_range(0.1..0.5);
        self.temperature = self.rng.random_range(0.0..1.0);
        self.steps += 1;
        let obs = [
            done_load,
            done_volume,
            cpu,
            mem,
            latency,
            cost,
            alpha,
            beta,
            gamma,
            done_shuffle,
            done_temp,
            self.load,
            if burst { 1.0 } else { 0.0 },
        ];
        SeedStep { obs, reward, latency_ms: latency, cost, executors: n, throughput }
    }
}

/// A policy in the seed-compat arena: raw observation in, action indices out.
pub trait SeedPolicy {
    fn name(&self) -> &str;
    fn reset(&mut self) {}
    fn act(&mut self, obs: &[f64; 13]) -> [usize; 4];
}

/// The seed's Fixed baseline: 15 executors, 4 GB, NVMe, light compression.
#[derive(Debug, Default)]
pub struct SeedFixed;

impl SeedPolicy for SeedFixed {
    fn name(&self) -> &str {
        "fixed"
    }
    fn act(&mut self, _obs: &[f64; 13]) -> [usize; 4] {
        [14, 3, 1, 1]
    }
}

/// The seed's Dexter (HPA-like): from 11 executors, +2 above 80 % CPU, -1 below 30 %, no cooldown.
#[derive(Debug)]
pub struct SeedDexter {
    executors: usize,
}

impl Default for SeedDexter {
    fn default() -> Self {
        Self { executors: 11 }
    }
}

impl SeedPolicy for SeedDexter {
    fn name(&self) -> &str {
        "dexter"
    }
    fn reset(&mut self) {
        self.executors = 11;
    }
    fn act(&mut self, obs: &[f64; 13]) -> [usize; 4] {
        if obs[2] > 80.0 {
            self.executors += 2;
        } else if obs[2] < 30.0 {
            self.executors = self.executors.saturating_sub(1);
        }
        self.executors = self.executors.clamp(1, 20);
        [self.executors - 1, 3, 1, 1]
    }
}

/// The seed's Seer: floor(predicted / 50) + 1 executors, 4 GB, Redis, no compression.
#[derive(Debug, Default)]
pub struct SeedSeer;

impl SeedPolicy for SeedSeer {
    fn name(&self) -> &str {
        "seer"
    }
    fn act(&mut self, obs: &[f64; 13]) -> [usize; 4] {
        let n = ((obs[11] / 50.0).floor() as i64 + 1).clamp(1, 20) as usize;
        [n - 1, 3, 0, 0]
    }
}

/// The cheapest of all 1,920 actions whose latency meets the SLA for this load and shuffle size, or the
/// fastest action when none does.
pub fn cheapest_meeting_sla(load: f64, shuffle: f64) -> [usize; 4] {
    let mut best: Option<([usize; 4], f64)> = None;
    let mut fastest = ([19, 7, 0, 0], f64::INFINITY);
    for a0 in 0..20 {
        for a1 in 0..8 {
            for a2 in 0..4 {
                for a3 in 0..3 {
                    let a = [a0, a1, a2, a3];
                    let (latency, cost, _) = evaluate(a, load, shuffle);
                    if latency < fastest.1 {
                        fastest = (a, latency);
                    }
                    if latency <= SLA_MS && best.is_none_or(|(_, c)| cost < c) {
                        best = Some((a, cost));
                    }
                }
            }
        }
    }
    best.map_or(fastest.0, |(a, _)| a)
}

/// Run one episode of `policy`; `clairvoyant` replaces the policy with the bound of section 7.
pub fn run_episode(
    seed: u64,
    policy: Option<&mut dyn SeedPolicy>,
    timeline: Option<&mut crate::Timeline>,
) -> Scores {
    let (mut env, mut obs) = SeedEnv::reset(seed);
    let mut policy = policy;
    if let Some(p) = policy.as_deref_mut() {
        p.reset();
    }
    let mut latencies = Vec::with_capacity(EPISODE_STEPS);
    let mut executors = RunningStd::default();
    let (mut cost, mut cpu, mut throughput, mut violations) = (0.0, 0.0, 0.0, 0usize);
    let mut timeline = timeline;
    for _ in 0..EPISODE_STEPS {
        let action = match policy.as_deref_mut() {
            Some(p) => p.act(&obs),
            None => cheapest_meeting_sla(env.load(), env.shuffle()),
        };
        let load = env.load();
        let step = env.step(action);
        obs = step.obs;
        latencies.push(step.latency_ms);
        executors.add(step.executors as f64);
        cost += step.cost;
        cpu += obs[2];
        throughput += step.throughput;
        if step.latency_ms > SLA_MS {
            violations += 1;
        }
        if let Some(tl) = timeline.as_deref_mut() {
            tl.load.push(load as f32);
            tl.processed.push(load as f32);
            tl.executors.push(step.executors as f32);
            tl.latency_ms.push(step.latency_ms as f32);
            tl.tier.push(latency_model::Tier::CHOICES[action[2].min(3)]);
        }
    }
    let n = EPISODE_STEPS as f64;
    let pct = 100.0 * violations as f64 / n;
    Scores {
        cost_usd: cost,
        p95_ms: percentile_linear(&mut latencies.clone(), 0.95),
        p99_ms: percentile_linear(&mut latencies, 0.99),
        sla_violation_pct: pct,
        sla_step_violation_pct: pct,
        stability: executors.std(),
        cpu_util_pct: cpu / n,
        // The seed's own throughput figure (n * m * 1000 / latency), averaged over steps.
        throughput_mb_s: throughput / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_the_spec_by_hand() {
        // 15 executors x 4 GB, NVMe, light; load 900, shuffle 100 MB.
        let (lat, cost, thr) = evaluate([14, 3, 1, 1], 900.0, 100.0);
        // compute 1500 + access 20*60/100 = 12 + decompression 10*100/100 = 10.
        assert!((lat - 1_522.0).abs() < 1e-9);
        assert!((cost - (1.5 + 3.0 + 60.0 / 1024.0 * 0.05)).abs() < 1e-12);
        assert!((thr - 60.0 * 1_000.0 / 1_522.0).abs() < 1e-9);
        // Latency never drops below 10 ms.
        assert_eq!(evaluate([19, 7, 0, 0], 10.0, 0.0).0, 10.0);
    }

    #[test]
    fn same_seed_same_workload_whatever_the_actions() {
        let (mut a, _) = SeedEnv::reset(5);
        let (mut b, _) = SeedEnv::reset(5);
        for i in 0..100 {
            a.step([i % 20, 0, 0, 0]);
            b.step([19, 7, 3, 2]);
            assert_eq!(a.load(), b.load());
            assert_eq!(a.shuffle(), b.shuffle());
        }
    }

    #[test]
    fn observation_carries_the_oracle_and_the_stale_fields() {
        let (mut env, _) = SeedEnv::reset(11);
        let shuffle_done = env.shuffle();
        let step = env.step([10, 3, 1, 1]);
        assert_eq!(step.obs[11], env.load(), "obs 11 is exactly the next load");
        assert_eq!(step.obs[9], shuffle_done, "obs 9 is the shuffle just processed");
    }

    #[test]
    fn load_stays_in_its_bounds_and_drifts_to_the_cap() {
        let (mut env, _) = SeedEnv::reset(2);
        let mut at_cap = 0;
        for _ in 0..5_000 {
            env.step([0, 0, 0, 0]);
            assert!((10.0..=900.0).contains(&env.load()));
            at_cap += (env.load() >= 899.999) as usize;
        }
        let share = at_cap as f64 / 5_000.0;
        assert!((0.3..0.55).contains(&share), "{share}");
    }
}

#[cfg(test)]
mod reproduction {
    //! The thesis's table, re-run over seeds (seed-env.md section 6), must come out of this arena.
    use super::*;
    use crate::tournament::{run_seed_compat, seed_baseline};

    /// Seeds used here; the acceptance run uses 200 (`sparkpilot tournament --arena seed-compat --seeds 200`).
    const SEEDS: u64 = 100;
    /// Stated tolerance: cost within 1 %, SLA violations within 2 percentage points.
    const COST_TOLERANCE: f64 = 0.01;
    const SLA_TOLERANCE_POINTS: f64 = 2.0;

    #[test]
    fn reproduces_the_published_rerun_table() {
        let seeds: Vec<u64> = (0..SEEDS).collect();
        let mut contenders: Vec<_> =
            ["fixed", "dexter", "seer", "clairvoyant"].iter().map(|n| seed_baseline(n).unwrap()).collect();
        let t = run_seed_compat(&seeds, &mut contenders, &|| {});
        // (policy, cost $, SLA %) from the re-run over 200 seeds in seed-env.md section 6.
        for (policy, cost, sla) in
            [("fixed", 2_251.1, 90.3), ("dexter", 2_991.0, 62.9), ("seer", 2_476.0, 99.3)]
        {
            let m = t.row(policy).unwrap().mean;
            assert!(
                (m.cost_usd / cost - 1.0).abs() <= COST_TOLERANCE,
                "{policy}: cost {} vs {cost}",
                m.cost_usd
            );
            assert!(
                (m.sla_violation_pct - sla).abs() <= SLA_TOLERANCE_POINTS,
                "{policy}: SLA {} vs {sla}",
                m.sla_violation_pct
            );
        }
        // P95 of the three baselines (1,533 / 1,158 / 1,247 ms) within 1 %.
        for (policy, p95) in [("fixed", 1_533.0), ("dexter", 1_158.0), ("seer", 1_247.0)] {
            let m = t.row(policy).unwrap().mean;
            assert!((m.p95_ms / p95 - 1.0).abs() <= 0.01, "{policy}: P95 {} vs {p95}", m.p95_ms);
        }
        // The clairvoyant bound: about $2,582 with no violation (section 7).
        let c = t.row("clairvoyant").unwrap().mean;
        assert!((c.cost_usd / 2_582.0 - 1.0).abs() <= COST_TOLERANCE, "clairvoyant {}", c.cost_usd);
        assert_eq!(c.sla_violation_pct, 0.0);
    }

    #[test]
    fn the_simple_oracle_rule_lands_near_its_published_ratio() {
        // "8 GB, Redis, no compression, fewest executors with 100*W/(8n) <= 985" reaches 0 % at about
        // 1.023x the bound (section 7): a check that obs 11 is the oracle the spec describes.
        struct Rule;
        impl SeedPolicy for Rule {
            fn name(&self) -> &str {
                "rule"
            }
            fn act(&mut self, obs: &[f64; 13]) -> [usize; 4] {
                let n = (1..=20).find(|&n| 100.0 * obs[11] / (8.0 * n as f64) <= 985.0).unwrap_or(20);
                [n - 1, 7, 0, 0]
            }
        }
        let seeds: Vec<u64> = (0..50).collect();
        let mut contenders = vec![
            crate::tournament::SeedContender::Policy(Box::new(Rule)),
            seed_baseline("clairvoyant").unwrap(),
        ];
        let t = run_seed_compat(&seeds, &mut contenders, &|| {});
        let rule = t.row("rule").unwrap().mean;
        let bound = t.row("clairvoyant").unwrap().mean;
        assert_eq!(rule.sla_violation_pct, 0.0);
        let ratio = rule.cost_usd / bound.cost_usd;
        assert!((1.01..1.035).contains(&ratio), "ratio {ratio}");
    }
}
