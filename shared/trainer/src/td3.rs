//! TD3 (Fujimoto et al., 2018) following CleanRL's `td3_continuous_action.py`: twin critics, target
//! policy smoothing (noise 0.2 clipped at 0.5, in units of the action half-range), delayed actor and
//! target updates (every 2 critic updates), soft target updates (tau 0.005), Gaussian exploration
//! noise 0.1, uniform random actions before learning starts. Actions live in [0, 1]^n, produced by a
//! sigmoid; networks are ReLU MLPs.

use crate::net::{Activation, Mlp};
use crate::TrainError;
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A continuous-action environment with actions in [0, 1]^n.
pub trait ContinuousEnv {
    fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32>;
    fn step(&mut self, action: &[f32], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool);
}

#[derive(Debug, Clone, PartialEq)]
pub struct Td3Config {
    pub total_steps: usize,
    pub learning_rate: f64,
    pub buffer_size: usize,
    pub gamma: f64,
    pub tau: f64,
    pub batch_size: usize,
    /// In units of the action half-range (0.5 for [0, 1]).
    pub exploration_noise: f64,
    pub policy_noise: f64,
    pub noise_clip: f64,
    pub learning_starts: usize,
    pub policy_frequency: usize,
    pub hidden: Vec<usize>,
}

impl Default for Td3Config {
    fn default() -> Self {
        Self {
            total_steps: 20_000,
            learning_rate: 3e-4,
            buffer_size: 1_000_000,
            gamma: 0.99,
            tau: 0.005,
            batch_size: 256,
            exploration_noise: 0.1,
            policy_noise: 0.2,
            noise_clip: 0.5,
            learning_starts: 2_000,
            policy_frequency: 2,
            hidden: vec![64, 64],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Td3Progress {
    pub steps: usize,
    pub total_steps: usize,
    pub mean_return: f64,
}

pub struct Td3Agent {
    pub actor: Mlp,
}

fn sigmoid_actor(actor: &Mlp, x: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::sigmoid(&actor.forward(x)?)
}

impl Td3Agent {
    /// The deterministic action for one observation (what the exported model computes).
    pub fn act(&self, obs: &[f32]) -> Result<Vec<f32>, TrainError> {
        let x = Tensor::from_slice(obs, (1, obs.len()), &Device::Cpu)?;
        Ok(sigmoid_actor(&self.actor, &x)?.flatten_all()?.to_vec1()?)
    }
}

struct Replay {
    obs: Vec<f32>,
    next: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<f32>,
    len: usize,
    head: usize,
    cap: usize,
    obs_dim: usize,
    act_dim: usize,
}

impl Replay {
    fn new(cap: usize, obs_dim: usize, act_dim: usize) -> Self {
        Self {
            obs: vec![0.0; cap * obs_dim],
            next: vec![0.0; cap * obs_dim],
            actions: vec![0.0; cap * act_dim],
            rewards: vec![0.0; cap],
            dones: vec![0.0; cap],
            len: 0,
            head: 0,
            cap,
            obs_dim,
            act_dim,
        }
    }

    fn push(&mut self, o: &[f32], a: &[f32], r: f32, n: &[f32], d: bool) {
        let i = self.head;
        self.obs[i * self.obs_dim..(i + 1) * self.obs_dim].copy_from_slice(o);
        self.next[i * self.obs_dim..(i + 1) * self.obs_dim].copy_from_slice(n);
        self.actions[i * self.act_dim..(i + 1) * self.act_dim].copy_from_slice(a);
        self.rewards[i] = r;
        self.dones[i] = if d { 1.0 } else { 0.0 };
        self.head = (self.head + 1) % self.cap;
        self.len = (self.len + 1).min(self.cap);
    }

    fn sample(&self, n: usize, rng: &mut impl Rng) -> Result<[Tensor; 5], TrainError> {
        let (mut o, mut x, mut a, mut r, mut d) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let i = rng.random_range(0..self.len);
            o.extend_from_slice(&self.obs[i * self.obs_dim..(i + 1) * self.obs_dim]);
            x.extend_from_slice(&self.next[i * self.obs_dim..(i + 1) * self.obs_dim]);
            a.extend_from_slice(&self.actions[i * self.act_dim..(i + 1) * self.act_dim]);
            r.push(self.rewards[i]);
            d.push(self.dones[i]);
        }
        let dev = &Device::Cpu;
        Ok([
            Tensor::from_vec(o, (n, self.obs_dim), dev)?,
            Tensor::from_vec(x, (n, self.obs_dim), dev)?,
            Tensor::from_vec(a, (n, self.act_dim), dev)?,
            Tensor::from_vec(r, (n, 1), dev)?,
            Tensor::from_vec(d, (n, 1), dev)?,
        ])
    }
}

fn q(critic: &Mlp, obs: &Tensor, act: &Tensor) -> candle_core::Result<Tensor> {
    critic.forward(&Tensor::cat(&[obs, act], 1)?)
}

fn adam(vars: Vec<Var>, lr: f64) -> Result<AdamW, TrainError> {
    Ok(AdamW::new(vars, ParamsAdamW { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 })?)
}

/// Train with TD3 on one environment.
pub fn train(
    env: &mut dyn ContinuousEnv,
    obs_dim: usize,
    act_dim: usize,
    config: &Td3Config,
    seed: u64,
    progress: &mut dyn FnMut(Td3Progress),
) -> Result<Td3Agent, TrainError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut sizes = vec![obs_dim];
    sizes.extend_from_slice(&config.hidden);
    let mut actor_sizes = sizes.clone();
    actor_sizes.push(act_dim);
    let mut critic_sizes = vec![obs_dim + act_dim];
    critic_sizes.extend_from_slice(&config.hidden);
    critic_sizes.push(1);
    let gain = 2f64.sqrt();
    let actor = Mlp::new(&actor_sizes, Activation::Relu, gain, &mut rng)?;
    let actor_t = Mlp::new(&actor_sizes, Activation::Relu, gain, &mut rng)?;
    actor_t.soft_update(&actor, 1.0)?;
    let (q1, q2) = (
        Mlp::new(&critic_sizes, Activation::Relu, gain, &mut rng)?,
        Mlp::new(&critic_sizes, Activation::Relu, gain, &mut rng)?,
    );
    let (q1_t, q2_t) = (
        Mlp::new(&critic_sizes, Activation::Relu, gain, &mut rng)?,
        Mlp::new(&critic_sizes, Activation::Relu, gain, &mut rng)?,
    );
    q1_t.soft_update(&q1, 1.0)?;
    q2_t.soft_update(&q2, 1.0)?;
    let mut q_opt = adam([q1.vars(), q2.vars()].concat(), config.learning_rate)?;
    let mut actor_opt = adam(actor.vars(), config.learning_rate)?;
    let half_range = 0.5;
    let explore = Normal::new(0.0, config.exploration_noise * half_range)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let mut replay = Replay::new(config.buffer_size.min(config.total_steps.max(1)), obs_dim, act_dim);
    let agent = Td3Agent { actor };

    let mut obs = env.reset(&mut rng);
    let (mut episode_return, mut finished) = (0.0f64, Vec::new());
    for step in 0..config.total_steps {
        let action: Vec<f32> = if step < config.learning_starts {
            (0..act_dim).map(|_| rng.random::<f32>()).collect()
        } else {
            agent
                .act(&obs)?
                .into_iter()
                .map(|a| (a as f64 + explore.sample(&mut rng)).clamp(0.0, 1.0) as f32)
                .collect()
        };
        let (next, reward, done) = env.step(&action, &mut rng);
        replay.push(&obs, &action, reward, &next, done);
        episode_return += reward as f64;
        obs = if done {
            finished.push(episode_return);
            episode_return = 0.0;
            env.reset(&mut rng)
        } else {
            next
        };

        if step >= config.learning_starts {
            let [o, x, a, r, d] = replay.sample(config.batch_size, &mut rng)?;
            // Target policy smoothing: clipped Gaussian noise on the target actor's action.
            let noise: Vec<f32> = (0..config.batch_size * act_dim)
                .map(|_| {
                    let n: f64 = rng.sample(rand_distr::StandardNormal);
                    (n * config.policy_noise * half_range)
                        .clamp(-config.noise_clip * half_range, config.noise_clip * half_range)
                        as f32
                })
                .collect();
            let noise = Tensor::from_vec(noise, (config.batch_size, act_dim), &Device::Cpu)?;
            let next_a = (sigmoid_actor(&actor_t, &x)? + noise)?.clamp(0.0, 1.0)?;
            let target_q = q(&q1_t, &x, &next_a)?.minimum(&q(&q2_t, &x, &next_a)?)?;
            let y = (r + ((1.0 - d)? * config.gamma)?.mul(&target_q)?)?.detach();
            let l1 = (q(&q1, &o, &a)? - &y)?.sqr()?.mean_all()?;
            let l2 = (q(&q2, &o, &a)? - &y)?.sqr()?.mean_all()?;
            q_opt.backward_step(&(l1 + l2)?)?;
            if step % config.policy_frequency == 0 {
                let actor_loss = q(&q1, &o, &sigmoid_actor(&agent.actor, &o)?)?.mean_all()?.neg()?;
                actor_opt.backward_step(&actor_loss)?;
                actor_t.soft_update(&agent.actor, config.tau)?;
                q1_t.soft_update(&q1, config.tau)?;
                q2_t.soft_update(&q2, config.tau)?;
            }
        }
        if (step + 1) % 500 == 0 || step + 1 == config.total_steps {
            let recent = &finished[finished.len().saturating_sub(10)..];
            let mean_return =
                if recent.is_empty() { f64::NAN } else { recent.iter().sum::<f64>() / recent.len() as f64 };
            progress(Td3Progress { steps: step + 1, total_steps: config.total_steps, mean_return });
        }
    }
    Ok(agent)
}
