//! Training for sparkpilot's learned policies, on the simulator, in Rust (candle for autodiff and
//! Adam), with ONNX export.
//!
//! * [`ppo`]: PPO with a multi-discrete head (CleanRL's implementation details).
//! * [`onnx`]: ONNX writers for the trained networks.
//! * [`seed_env`]: the seed-compat arena as a training environment.

mod error;
pub mod meta_env;
pub mod net;
pub mod onnx;
pub mod ppo;
pub mod scaling_env;
pub mod seed_env;
pub mod td3;

pub use error::TrainError;

use ppo::{DiscreteEnv, PpoConfig, PpoProgress, WarmStart};
use std::path::Path;
use std::time::Instant;

/// Discount of the seed-compat PPO (see `train_seed_compat`).
pub const SEED_COMPAT_GAMMA: f64 = 0.0;
/// Discount of the scaling PPO, CleanRL's 0.99 (a horizon of about 100 decisions, 500 s): with 0.95
/// the policy stopped provisioning ahead of the step burst.
pub const SCALING_GAMMA: f64 = 0.99;

/// Entropy coefficient of the scaling PPO, a third of CleanRL's 0.01. The exported policy is greedy,
/// and a policy kept broad by the full bonus learns the margins its own random picks need: at 0.01
/// the greedy policy carried 1.2 to 1.8 x the demand on step-burst, where a fixed 1.05 x had no
/// violations. At 0.001 every head collapsed to one action whatever the state, burst or weights
/// (`models/scaling-ppo.md`, "History and ablations", change 3).
pub const SCALING_ENT_COEF: f64 = 0.003;

/// The scaling PPO's hyper-parameters for a run of `steps` decisions: CleanRL's defaults but for
/// [`SCALING_GAMMA`] and [`SCALING_ENT_COEF`]; rewards are normalised per scenario
/// ([`ppo::DiscreteEnv::regime`]). The actor starts as a clone of `scaling_env::teacher_indices`'s
/// rule (a twentieth of the run's decisions, at most 200,000; 10 passes; label smoothing 0.05),
/// the critic alone trains for the first 20 updates, and [`SCALING_BC_COEF`] holds PPO near the rule.
pub fn scaling_config(steps: usize) -> PpoConfig {
    let warm_start = WarmStart {
        steps: (steps / 20).min(200_000),
        epochs: 10,
        label_smoothing: 0.05,
        learning_rate: 1e-3,
        critic_updates: 20,
        bc_coef: SCALING_BC_COEF,
    };
    PpoConfig {
        total_steps: steps,
        gamma: SCALING_GAMMA,
        ent_coef: SCALING_ENT_COEF,
        warm_start: Some(warm_start),
        ..PpoConfig::default()
    }
}

/// Weight of the term that holds the scaling PPO near its reference rule (`ppo::WarmStart::bc_coef`).
pub const SCALING_BC_COEF: f64 = 0.1;

/// Discount of the meta-controller's TD3. Its reward is paired (`meta_env`): each step is scored
/// against the scenario's own weights from the same state, so what a step leaves behind is already
/// in the next step's comparison, and a discount would only add the later steps' noise.
pub const META_GAMMA: f64 = 0.0;

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub model: String,
    pub steps: usize,
    pub seed: u64,
    pub wall_time_s: f64,
    /// Mean episode return over the last updates.
    pub final_return: f64,
    /// Per action head, the share of the last update's observations on which the greedy policy
    /// picked its most common action (`ppo::PpoProgress::greedy_top_share`); empty for TD3.
    pub greedy_top_share: Vec<f64>,
}

/// A share of the last update's states at or above which the executor head counts as collapsed to
/// one constant action (the failure two of four training seeds once showed).
pub const COLLAPSE_SHARE: f64 = 0.99;

impl TrainReport {
    /// Whether the first head (the executor level, the one that must follow the load) ended
    /// training on one action for practically every state.
    pub fn collapsed(&self) -> bool {
        self.greedy_top_share.first().is_some_and(|&s| s >= COLLAPSE_SHARE)
    }
}

/// What a scaling run trains on, and from what.
#[derive(Debug, Clone)]
pub struct ScalingRun {
    /// The traces episodes are drawn from.
    pub traces: Vec<scaling_env::TrainingTrace>,
    /// Fine-tune this model (one [`onnx::export_multidiscrete`] wrote, such as the committed
    /// `scaling-ppo.onnx`) instead of starting from a clone of the reference rule.
    pub init: Option<std::path::PathBuf>,
}

impl Default for ScalingRun {
    fn default() -> Self {
        Self { traces: scaling_env::TrainingTrace::defaults(), init: None }
    }
}

/// Train the seed-compat PPO policy and export `seed-compat-ppo.onnx` into `out_dir`.
pub fn train_seed_compat(
    steps: usize,
    seed: u64,
    out_dir: &Path,
    progress: &mut dyn FnMut(PpoProgress),
) -> Result<TrainReport, TrainError> {
    let start = Instant::now();
    // The seed's steps are independent: an action changes nothing that follows (seed-env.md 7), so the
    // problem is a contextual bandit and future rewards are pure noise in the advantage: gamma = 0.
    // A bandit needs little exploration once the heads have found their range: a tenth of CleanRL's
    // entropy bonus, and a larger step size.
    let config = PpoConfig {
        total_steps: steps,
        gamma: SEED_COMPAT_GAMMA,
        ent_coef: 0.001,
        learning_rate: 1e-3,
        ..PpoConfig::default()
    };
    let mut envs: Vec<Box<dyn DiscreteEnv>> = (0..config.num_envs)
        .map(|_| Box::new(seed_env::SeedTrainEnv::new()) as Box<dyn DiscreteEnv>)
        .collect();
    let scale: Vec<f32> = sim::seed_compat::OBS_HIGH.iter().map(|&v| v as f32).collect();
    let mut last = f64::NAN;
    let mut shares = Vec::new();
    let agent =
        ppo::train(&mut envs, 13, &seed_env::HEAD_DIMS, Some(scale.clone()), &config, seed, &mut |p| {
            if p.mean_return.is_finite() {
                last = p.mean_return;
            }
            shares.clone_from(&p.greedy_top_share);
            progress(p)
        })?;
    std::fs::create_dir_all(out_dir)
        .map_err(|error| TrainError::Write { path: out_dir.to_path_buf(), error })?;
    let path = out_dir.join("seed-compat-ppo.onnx");
    onnx::export_seed_relative(
        &path,
        &agent.actor,
        &seed_env::HEAD_DIMS,
        Some(&scale),
        &seed_env::decode(),
        "sparkpilot seed-compat PPO: raw seed observation float32[1,13] -> action indices int64[1,4]",
    )?;
    Ok(TrainReport {
        model: path.display().to_string(),
        steps,
        seed,
        wall_time_s: start.elapsed().as_secs_f64(),
        final_return: last,
        greedy_top_share: shares,
    })
}

/// Train the scaling PPO policy on the realistic arena with `run`'s traces (from `run.init` when
/// given) and export `scaling-ppo.onnx` into `out_dir`.
pub fn train_scaling(
    steps: usize,
    seed: u64,
    run: &ScalingRun,
    out_dir: &Path,
    progress: &mut dyn FnMut(PpoProgress),
) -> Result<TrainReport, TrainError> {
    let start = Instant::now();
    if run.traces.is_empty() {
        return Err(TrainError::Invalid("no traces to train on".into()));
    }
    let mut config = scaling_config(steps);
    if let Some(init) = &run.init {
        config.init_actor = Some(onnx::import_multidiscrete(init, &control::ACTION_DIMS)?);
    }
    let arena = sim::Arena::embedded();
    let mut envs: Vec<Box<dyn DiscreteEnv>> = (0..config.num_envs)
        .map(|_| {
            Box::new(scaling_env::ScalingTrainEnv::new(arena.clone(), run.traces.clone()))
                as Box<dyn DiscreteEnv>
        })
        .collect();
    let mut last = f64::NAN;
    let mut shares = Vec::new();
    let agent =
        ppo::train(&mut envs, control::FEATURES, &control::ACTION_DIMS, None, &config, seed, &mut |p| {
            if p.mean_return.is_finite() {
                last = p.mean_return;
            }
            shares.clone_from(&p.greedy_top_share);
            progress(p)
        })?;
    std::fs::create_dir_all(out_dir)
        .map_err(|error| TrainError::Write { path: out_dir.to_path_buf(), error })?;
    let path = out_dir.join("scaling-ppo.onnx");
    onnx::export_multidiscrete(
        &path,
        &agent.actor,
        &control::ACTION_DIMS,
        None,
        "sparkpilot scaling PPO: 13 normalised features float32[1,13] -> action indices int64[1,4]",
    )?;
    Ok(TrainReport {
        model: path.display().to_string(),
        steps,
        seed,
        wall_time_s: start.elapsed().as_secs_f64(),
        final_return: last,
        greedy_top_share: shares,
    })
}

/// Train the TD3 meta-controller with the scaling policy `out_dir/scaling-ppo.onnx` in the loop and
/// export `meta-td3.onnx` into `out_dir`.
pub fn train_meta(
    steps: usize,
    seed: u64,
    out_dir: &Path,
    progress: &mut dyn FnMut(td3::Td3Progress),
) -> Result<TrainReport, TrainError> {
    let start = Instant::now();
    let arena = sim::Arena::embedded();
    let scaling = policy::ScalingPolicy::load(&out_dir.join("scaling-ppo.onnx"), arena.feature_builder())?;
    let mut env = meta_env::MetaTrainEnv::new(arena, scaling);
    let config = td3::Td3Config {
        total_steps: steps,
        gamma: META_GAMMA,
        learning_starts: (steps / 10).min(2_000),
        ..td3::Td3Config::default()
    };
    let mut last = f64::NAN;
    let agent = td3::train(&mut env, meta_env::INPUTS, 2, &config, seed, &mut |p| {
        if p.mean_return.is_finite() {
            last = p.mean_return;
        }
        progress(p)
    })?;
    let path = out_dir.join("meta-td3.onnx");
    onnx::export_sigmoid_actor(
        &path,
        &agent.actor,
        "sparkpilot meta-controller TD3: 7 features float32[1,7] -> weights (alpha, beta) float32[1,2]",
    )?;
    Ok(TrainReport {
        model: path.display().to_string(),
        steps,
        seed,
        wall_time_s: start.elapsed().as_secs_f64(),
        final_return: last,
        greedy_top_share: Vec::new(),
    })
}
