//! PPO with a multi-discrete action head, following CleanRL's `ppo.py` / `ppo_multidiscrete.py`
//! (Huang et al., "The 37 Implementation Details of PPO", ICLR blog track 2022): separate 64-64 tanh
//! actor and critic, orthogonal init (gain sqrt 2, actor head 0.01, critic head 1), Adam eps 1e-5 with
//! linear learning-rate annealing, GAE, advantage normalisation per minibatch, clipped surrogate and
//! clipped value loss, entropy bonus, global gradient-norm clipping.

use crate::net::{Activation, Mlp};
use crate::TrainError;
use candle_core::{Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use sim::metrics::RunningStd;

/// An environment PPO can train on: observations are flat f32 vectors, actions one index per head.
pub trait DiscreteEnv {
    fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32>;
    /// Apply an action; returns (next observation, reward, episode over).
    fn step(&mut self, action: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool);
    /// Which reward regime the current episode is in (for example, which scenario's weights it is
    /// scored with). Rewards are normalised per regime; one regime unless an environment says otherwise.
    fn regime(&self) -> usize {
        0
    }
    /// What a reference rule would do now, one index per head, for the warm start
    /// ([`PpoConfig::warm_start`]); `None` when the environment has no such rule.
    fn teacher(&self) -> Option<Vec<usize>> {
        None
    }
}

/// Behaviour cloning before PPO: the actor first learns to imitate the environments' reference rule
/// ([`DiscreteEnv::teacher`]), then the critic alone learns that policy's values, and only then does
/// PPO improve on it. Off by default (CleanRL's PPO starts from scratch).
#[derive(Debug, Clone, PartialEq)]
pub struct WarmStart {
    /// Decisions of the reference rule collected (spread over all environments).
    pub steps: usize,
    /// Passes of cross-entropy over them.
    pub epochs: usize,
    /// Share of each head's target spread evenly over its other choices (label smoothing), so the
    /// cloned policy keeps sampling alternatives and PPO still has something to compare with.
    pub label_smoothing: f64,
    /// Adam step size of the cloning.
    pub learning_rate: f64,
    /// PPO updates at the start that train the critic only (the actor's loss is off), so the first
    /// advantages come from a critic that knows the cloned policy rather than from a random one.
    pub critic_updates: usize,
    /// Weight, during PPO, of the cross-entropy between the policy and the reference rule's action on
    /// every rollout state (0: none). It holds the policy near the rule wherever the advantages
    /// average out to nothing, such as a head whose choice the reward barely sees, and yields where
    /// they consistently favour something else (the behaviour-cloning term of Rajeswaran et al.,
    /// "Learning Complex Dexterous Manipulation with Deep RL and Demonstrations", RSS 2018, kept
    /// constant here).
    pub bc_coef: f64,
}

/// Hyper-parameters (defaults: CleanRL's `ppo.py`, with 8 environments and 256-step rollouts).
#[derive(Debug, Clone, PartialEq)]
pub struct PpoConfig {
    pub total_steps: usize,
    pub num_envs: usize,
    pub num_steps: usize,
    pub learning_rate: f64,
    pub anneal_lr: bool,
    pub gamma: f64,
    pub gae_lambda: f64,
    pub num_minibatches: usize,
    pub update_epochs: usize,
    pub clip_coef: f64,
    pub ent_coef: f64,
    pub vf_coef: f64,
    pub max_grad_norm: f64,
    pub hidden: Vec<usize>,
    /// Scale rewards by the running std-dev of the discounted return and clip to +-10, as gym's
    /// `NormalizeReward` + `TransformReward` wrappers in CleanRL's continuous-action PPO: without it
    /// the value loss of long episodes dominates the shared gradient-norm clip and the actor barely moves.
    /// The std-dev is kept per reward regime ([`DiscreteEnv::regime`]): under one shared scale, the
    /// regime with the largest rewards sets every advantage and the others' preferences are lost.
    pub normalize_reward: bool,
    /// Behaviour cloning of the environments' reference rule before PPO (`None`: from scratch).
    pub warm_start: Option<WarmStart>,
    /// Start the actor from these layers (a committed policy read back with
    /// `onnx::import_multidiscrete`) instead of cloning the reference rule: fine-tuning. The
    /// warm start's critic-only updates and behaviour-cloning term still apply.
    pub init_actor: Option<Vec<crate::onnx::LayerWeights>>,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            total_steps: 1_000_000,
            num_envs: 8,
            num_steps: 256,
            learning_rate: 2.5e-4,
            anneal_lr: true,
            gamma: 0.99,
            gae_lambda: 0.95,
            num_minibatches: 4,
            update_epochs: 4,
            clip_coef: 0.2,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            hidden: vec![64, 64],
            normalize_reward: true,
            warm_start: None,
            init_actor: None,
        }
    }
}

/// The trained networks.
pub struct PpoAgent {
    pub actor: Mlp,
    pub critic: Mlp,
    pub head_dims: Vec<usize>,
    /// Observations are divided by this before the networks (and in the exported graph).
    pub input_scale: Option<Vec<f32>>,
    obs_dim: usize,
}

/// Progress report after each update.
#[derive(Debug, Clone, PartialEq)]
pub struct PpoProgress {
    pub steps: usize,
    pub total_steps: usize,
    /// Mean return of the episodes finished in the last update (NaN if none finished).
    pub mean_return: f64,
    /// Per head, the share of the update's observations on which the greedy policy (what is
    /// exported) picks its most common action: 1.0 is a head that has collapsed to one constant
    /// action, whatever the state.
    pub greedy_top_share: Vec<f64>,
}

impl PpoAgent {
    pub fn new(
        obs_dim: usize,
        head_dims: &[usize],
        input_scale: Option<Vec<f32>>,
        hidden: &[usize],
        rng: &mut impl Rng,
    ) -> Result<Self, TrainError> {
        let mut sizes = vec![obs_dim];
        sizes.extend_from_slice(hidden);
        let mut actor_sizes = sizes.clone();
        actor_sizes.push(head_dims.iter().sum());
        let mut critic_sizes = sizes;
        critic_sizes.push(1);
        Ok(Self {
            actor: Mlp::new(&actor_sizes, Activation::Tanh, 0.01, rng)?,
            critic: Mlp::new(&critic_sizes, Activation::Tanh, 1.0, rng)?,
            head_dims: head_dims.to_vec(),
            input_scale,
            obs_dim,
        })
    }

    fn input(&self, obs: &[f32], rows: usize) -> Result<Tensor, TrainError> {
        let scaled: Vec<f32> = match &self.input_scale {
            Some(s) => obs.iter().enumerate().map(|(i, v)| v / s[i % self.obs_dim]).collect(),
            None => obs.to_vec(),
        };
        Ok(Tensor::from_vec(scaled, (rows, self.obs_dim), &Device::Cpu)?)
    }

    /// Greedy action (argmax per head) for one observation: what the exported model computes.
    pub fn act_greedy(&self, obs: &[f32]) -> Result<Vec<usize>, TrainError> {
        let logits: Vec<f32> = self.actor.forward(&self.input(obs, 1)?)?.flatten_all()?.to_vec1()?;
        let mut offset = 0;
        Ok(self
            .head_dims
            .iter()
            .map(|&d| {
                let head = &logits[offset..offset + d];
                offset += d;
                // First maximum, as ONNX ArgMax (select_last_index = 0) picks.
                head.iter().enumerate().fold(0, |best, (i, v)| if *v > head[best] { i } else { best })
            })
            .collect())
    }

    /// Sum over heads of log pi(a|s) and of the entropies, for a batch.
    fn evaluate(&self, x: &Tensor, actions: &Tensor) -> Result<(Tensor, Tensor), TrainError> {
        let logits = self.actor.forward(x)?;
        let mut offset = 0;
        let mut logp_sum: Option<Tensor> = None;
        let mut ent_sum: Option<Tensor> = None;
        for (h, &d) in self.head_dims.iter().enumerate() {
            let lp = candle_nn::ops::log_softmax(&logits.narrow(1, offset, d)?.contiguous()?, D::Minus1)?;
            let a = actions.narrow(1, h, 1)?.contiguous()?;
            let chosen = lp.gather(&a, 1)?.squeeze(1)?;
            let ent = (lp.exp()? * &lp)?.sum(1)?.neg()?;
            logp_sum = Some(match logp_sum {
                Some(s) => (s + chosen)?,
                None => chosen,
            });
            ent_sum = Some(match ent_sum {
                Some(s) => (s + ent)?,
                None => ent,
            });
            offset += d;
        }
        Ok((logp_sum.expect("at least one head"), ent_sum.expect("at least one head")))
    }

    /// Set the actor's layers to `layers` (hidden layers, then the output layer), refusing a
    /// network of another shape.
    fn load_actor(&self, layers: &[crate::onnx::LayerWeights]) -> Result<(), TrainError> {
        let ours: Vec<&crate::net::Linear> =
            self.actor.hidden.iter().chain(std::iter::once(&self.actor.out)).collect();
        let shape = |dims: Vec<(usize, usize)>| format!("{dims:?}");
        let theirs: Vec<(usize, usize)> = layers.iter().map(|l| (l.input, l.output)).collect();
        let want: Vec<(usize, usize)> = ours.iter().map(|l| l.dims()).collect();
        if theirs != want {
            return Err(TrainError::Invalid(format!(
                "the initial actor's layers {} do not match this network's {}",
                shape(theirs),
                shape(want)
            )));
        }
        for (layer, init) in ours.iter().zip(layers) {
            layer.w.set(&Tensor::from_vec(init.w.clone(), (init.input, init.output), &Device::Cpu)?)?;
            layer.b.set(&Tensor::from_vec(init.b.clone(), init.output, &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// Per head, the share of the rows of `x` (network inputs) on which the greedy action is the
    /// head's most common one.
    fn greedy_top_share(&self, x: &Tensor) -> Result<Vec<f64>, TrainError> {
        let logits = self.actor.forward(x)?;
        let rows = x.dims()[0].max(1);
        let mut offset = 0;
        let mut shares = Vec::with_capacity(self.head_dims.len());
        for &d in &self.head_dims {
            let picks: Vec<u32> = logits.narrow(1, offset, d)?.argmax(D::Minus1)?.to_vec1()?;
            let mut counts = vec![0usize; d];
            for p in picks {
                counts[p as usize] += 1;
            }
            shares.push(counts.iter().copied().max().unwrap_or(0) as f64 / rows as f64);
            offset += d;
        }
        Ok(shares)
    }

    fn vars(&self) -> Vec<Var> {
        let mut v = self.actor.vars();
        v.extend(self.critic.vars());
        v
    }
}

/// The variance rewards are scaled by: the returns' population variance (Welford, the same
/// accumulator the arena scores with), 1 until there are two returns to measure.
fn reward_scale_var(stats: &RunningStd) -> f64 {
    if stats.count() > 1 {
        stats.var()
    } else {
        1.0
    }
}

/// Fisher-Yates with our own generator, which keeps training reproducible.
fn shuffle(order: &mut [u32], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..order.len()).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
}

/// Clip the gradients' global norm to `max_norm`, in place.
fn clip_grad_norm(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[Var],
    max_norm: f64,
) -> Result<(), TrainError> {
    let mut total = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = total.sqrt();
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.get(v) {
                let scaled = (g * scale)?;
                grads.insert(v, scaled);
            }
        }
    }
    Ok(())
}

/// Train with PPO on `envs` (one per parallel environment). `progress` is called after every update.
pub fn train(
    envs: &mut [Box<dyn DiscreteEnv>],
    obs_dim: usize,
    head_dims: &[usize],
    input_scale: Option<Vec<f32>>,
    config: &PpoConfig,
    seed: u64,
    progress: &mut dyn FnMut(PpoProgress),
) -> Result<PpoAgent, TrainError> {
    if envs.len() != config.num_envs {
        return Err(TrainError::Invalid(format!(
            "{} environments for num_envs = {}",
            envs.len(),
            config.num_envs
        )));
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let agent = PpoAgent::new(obs_dim, head_dims, input_scale, &config.hidden, &mut rng)?;
    let vars = agent.vars();
    let params =
        ParamsAdamW { lr: config.learning_rate, beta1: 0.9, beta2: 0.999, eps: 1e-5, weight_decay: 0.0 };
    let mut opt = AdamW::new(vars.clone(), params)?;
    let batch = config.num_envs * config.num_steps;
    let updates = (config.total_steps / batch).max(1);

    let mut obs: Vec<Vec<f32>> = envs.iter_mut().map(|e| e.reset(&mut rng)).collect();
    if let Some(layers) = &config.init_actor {
        agent.load_actor(layers)?;
    } else if let Some(warm) = &config.warm_start {
        obs = clone_teacher(&agent, envs, warm, &mut rng)?;
    }
    let mut rewards = RewardScaler::new(config.num_envs, config.gamma);
    let mut episode_returns = vec![0.0f64; config.num_envs];
    let mut steps_done = 0usize;

    for update in 0..updates {
        if config.anneal_lr {
            opt.set_learning_rate(config.learning_rate * (1.0 - update as f64 / updates as f64));
        }
        let rollout =
            collect_rollout(&agent, envs, &mut obs, config, &mut rewards, &mut episode_returns, &mut rng)?;
        steps_done += batch;
        // Bootstrap from the value of the observations after the rollout.
        let flat: Vec<f32> = obs.iter().flatten().copied().collect();
        let next_values: Vec<f32> =
            agent.critic.forward(&agent.input(&flat, config.num_envs)?)?.squeeze(1)?.to_vec1()?;
        let advantages = gae(&rollout, &next_values, config);
        // While the critic catches up with a warm-started actor, only the value loss trains.
        let actor_on = config.warm_start.as_ref().is_none_or(|w| update >= w.critic_updates);
        let mean_return = rollout.mean_finished_return();
        let observed = agent.input(&rollout.obs, batch)?;
        optimise(&agent, &mut opt, &vars, rollout, advantages, config, actor_on, &mut rng)?;
        let greedy_top_share = agent.greedy_top_share(&observed)?;
        progress(PpoProgress {
            steps: steps_done,
            total_steps: updates * batch,
            mean_return,
            greedy_top_share,
        });
    }
    Ok(agent)
}

/// One rollout of `num_steps` steps in every environment, flattened step-major (step t of env e at
/// `t * num_envs + e`).
struct Rollout {
    obs: Vec<f32>,
    actions: Vec<u32>,
    logp: Vec<f32>,
    values: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<bool>,
    /// The reference rule's actions, when behaviour cloning is on.
    teacher: Vec<u32>,
    /// Undiscounted returns of the episodes that ended during the rollout.
    finished: Vec<f64>,
}

impl Rollout {
    fn mean_finished_return(&self) -> f64 {
        if self.finished.is_empty() {
            f64::NAN
        } else {
            self.finished.iter().sum::<f64>() / self.finished.len() as f64
        }
    }
}

/// Rewards divided by the running standard deviation of the discounted return, per regime.
struct RewardScaler {
    gamma: f64,
    discounted: Vec<f64>,
    stats: Vec<RunningStd>,
}

impl RewardScaler {
    fn new(num_envs: usize, gamma: f64) -> Self {
        Self { gamma, discounted: vec![0.0; num_envs], stats: Vec::new() }
    }

    /// The reward of env `e` in `regime`, scaled and clipped to ±10.
    fn scale(&mut self, e: usize, regime: usize, reward: f32, done: bool) -> f32 {
        if self.stats.len() <= regime {
            self.stats.resize(regime + 1, RunningStd::default());
        }
        let stats = &mut self.stats[regime];
        self.discounted[e] = self.discounted[e] * self.gamma + reward as f64;
        stats.add(self.discounted[e]);
        if done {
            self.discounted[e] = 0.0;
        }
        (reward as f64 / (reward_scale_var(stats) + 1e-8).sqrt()).clamp(-10.0, 10.0) as f32
    }
}

/// Sample one action per head from the actor's logits (softmax); returns the actions and their
/// joint log-probability.
fn sample_heads(logits: &[f32], head_dims: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<usize>, f64) {
    let mut action = Vec::with_capacity(head_dims.len());
    let mut logp = 0.0f64;
    let mut offset = 0;
    for &d in head_dims {
        let head = &logits[offset..offset + d];
        let max = head.iter().fold(f32::MIN, |a, &b| a.max(b));
        let exps: Vec<f64> = head.iter().map(|&v| ((v - max) as f64).exp()).collect();
        let z: f64 = exps.iter().sum();
        let mut u = rng.random::<f64>() * z;
        let mut pick = d - 1;
        for (i, p) in exps.iter().enumerate() {
            if u < *p {
                pick = i;
                break;
            }
            u -= p;
        }
        logp += (exps[pick] / z).ln();
        action.push(pick);
        offset += d;
    }
    (action, logp)
}

/// Step every environment `num_steps` times with the current policy; `obs` ends as the observations
/// after the rollout.
fn collect_rollout(
    agent: &PpoAgent,
    envs: &mut [Box<dyn DiscreteEnv>],
    obs: &mut [Vec<f32>],
    config: &PpoConfig,
    rewards: &mut RewardScaler,
    episode_returns: &mut [f64],
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Rollout, TrainError> {
    let (n_envs, head_dims) = (config.num_envs, &agent.head_dims);
    let (batch, heads) = (n_envs * config.num_steps, head_dims.len());
    let bc_coef = config.warm_start.as_ref().map_or(0.0, |w| w.bc_coef);
    let mut r = Rollout {
        obs: Vec::with_capacity(batch * agent.obs_dim),
        actions: Vec::with_capacity(batch * heads),
        logp: Vec::with_capacity(batch),
        values: Vec::with_capacity(batch),
        rewards: Vec::with_capacity(batch),
        dones: Vec::with_capacity(batch),
        teacher: Vec::with_capacity(if bc_coef > 0.0 { batch * heads } else { 0 }),
        finished: Vec::new(),
    };
    for _ in 0..config.num_steps {
        let flat: Vec<f32> = obs.iter().flatten().copied().collect();
        let x = agent.input(&flat, n_envs)?;
        let logits: Vec<Vec<f32>> = agent.actor.forward(&x)?.to_vec2()?;
        let values: Vec<f32> = agent.critic.forward(&x)?.squeeze(1)?.to_vec1()?;
        for e in 0..n_envs {
            let (action, logp) = sample_heads(&logits[e], head_dims, rng);
            if bc_coef > 0.0 {
                let taught = teacher_action(envs[e].as_ref(), head_dims, "bc_coef > 0")?;
                r.teacher.extend(taught.iter().map(|&a| a as u32));
            }
            // The regime of the episode the reward belongs to (a step may end it and start another).
            let regime = envs[e].regime();
            let (next, reward, done) = envs[e].step(&action, rng);
            r.obs.extend_from_slice(&obs[e]);
            r.actions.extend(action.iter().map(|&a| a as u32));
            r.logp.push(logp as f32);
            r.values.push(values[e]);
            r.rewards.push(if config.normalize_reward {
                rewards.scale(e, regime, reward, done)
            } else {
                reward
            });
            r.dones.push(done);
            episode_returns[e] += reward as f64;
            obs[e] = if done {
                r.finished.push(episode_returns[e]);
                episode_returns[e] = 0.0;
                envs[e].reset(rng)
            } else {
                next
            };
        }
    }
    Ok(r)
}

/// Generalised advantage estimates, backwards in time from the values after the rollout.
fn gae(r: &Rollout, next_values: &[f32], config: &PpoConfig) -> Vec<f32> {
    let (n_envs, n_steps) = (config.num_envs, config.num_steps);
    let mut advantages = vec![0.0f32; n_envs * n_steps];
    for (e, &bootstrap) in next_values.iter().enumerate() {
        let mut last = 0.0f64;
        for t in (0..n_steps).rev() {
            let i = t * n_envs + e;
            let (next_value, next_nonterminal) = if t == n_steps - 1 {
                (bootstrap as f64, if r.dones[i] { 0.0 } else { 1.0 })
            } else {
                (r.values[i + n_envs] as f64, if r.dones[i] { 0.0 } else { 1.0 })
            };
            let delta =
                r.rewards[i] as f64 + config.gamma * next_value * next_nonterminal - r.values[i] as f64;
            last = delta + config.gamma * config.gae_lambda * next_nonterminal * last;
            advantages[i] = last as f32;
        }
    }
    advantages
}

/// `update_epochs` passes of clipped-PPO minibatch updates over the rollout (the value loss alone
/// while `actor_on` is false; behaviour cloning toward the reference rule when configured).
#[allow(clippy::too_many_arguments)]
fn optimise(
    agent: &PpoAgent,
    opt: &mut AdamW,
    vars: &[Var],
    r: Rollout,
    advantages: Vec<f32>,
    config: &PpoConfig,
    actor_on: bool,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<(), TrainError> {
    let batch = config.num_envs * config.num_steps;
    let heads = agent.head_dims.len();
    let minibatch = (batch / config.num_minibatches.max(1)).max(1);
    let bc_coef = config.warm_start.as_ref().map_or(0.0, |w| w.bc_coef);
    let returns: Vec<f32> = advantages.iter().zip(&r.values).map(|(a, v)| a + v).collect();
    let t_obs = agent.input(&r.obs, batch)?;
    let t_actions = Tensor::from_vec(r.actions, (batch, heads), &Device::Cpu)?;
    let t_logp = Tensor::from_vec(r.logp, batch, &Device::Cpu)?;
    let t_adv = Tensor::from_vec(advantages, batch, &Device::Cpu)?;
    let t_ret = Tensor::from_vec(returns, batch, &Device::Cpu)?;
    let t_val = Tensor::from_vec(r.values, batch, &Device::Cpu)?;
    let t_teacher =
        if bc_coef > 0.0 { Some(Tensor::from_vec(r.teacher, (batch, heads), &Device::Cpu)?) } else { None };
    let mut order: Vec<u32> = (0..batch as u32).collect();
    for _ in 0..config.update_epochs {
        shuffle(&mut order, rng);
        for chunk in order.chunks(minibatch) {
            let idx = Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?;
            let x = t_obs.index_select(&idx, 0)?;
            let a = t_actions.index_select(&idx, 0)?;
            let old_logp = t_logp.index_select(&idx, 0)?;
            let adv = t_adv.index_select(&idx, 0)?;
            let ret = t_ret.index_select(&idx, 0)?;
            let old_v = t_val.index_select(&idx, 0)?;
            let (logp, entropy) = agent.evaluate(&x, &a)?;
            let ratio = (&logp - &old_logp)?.exp()?;
            let mean = adv.mean_all()?;
            let std = adv.broadcast_sub(&mean)?.sqr()?.mean_all()?.sqrt()?;
            let adv = adv.broadcast_sub(&mean)?.broadcast_div(&(std + 1e-8)?)?;
            let pg1 = (adv.neg()? * &ratio)?;
            let pg2 = (adv.neg()? * ratio.clamp(1.0 - config.clip_coef, 1.0 + config.clip_coef)?)?;
            let pg_loss = pg1.maximum(&pg2)?.mean_all()?;
            let v = agent.critic.forward(&x)?.squeeze(1)?;
            let v_unclipped = (&v - &ret)?.sqr()?;
            let v_clipped = (&old_v + (&v - &old_v)?.clamp(-config.clip_coef, config.clip_coef)?)?;
            let v_loss = (v_unclipped.maximum(&(v_clipped - &ret)?.sqr()?)?.mean_all()? * 0.5)?;
            let v_term = (v_loss * config.vf_coef)?;
            let mut loss = if actor_on {
                ((pg_loss - (entropy.mean_all()? * config.ent_coef)?)? + v_term)?
            } else {
                v_term
            };
            if let (true, Some(teacher)) = (actor_on, &t_teacher) {
                let (taught_logp, _) = agent.evaluate(&x, &teacher.index_select(&idx, 0)?)?;
                loss = (loss - (taught_logp.mean_all()? * bc_coef)?)?;
            }
            let mut grads = loss.backward()?;
            clip_grad_norm(&mut grads, vars, config.max_grad_norm)?;
            opt.step(&grads)?;
        }
    }
    Ok(())
}

/// The environment's reference-rule action, checked against the heads; `who` names what asked for it.
fn teacher_action(env: &dyn DiscreteEnv, head_dims: &[usize], who: &str) -> Result<Vec<usize>, TrainError> {
    let action = env.teacher().ok_or_else(|| {
        TrainError::Invalid(format!("{who} asked of an environment without a reference rule"))
    })?;
    if action.len() != head_dims.len() || action.iter().zip(head_dims).any(|(&a, &d)| a >= d) {
        return Err(TrainError::Invalid(format!(
            "reference rule's action {action:?} does not fit heads {head_dims:?}"
        )));
    }
    Ok(action)
}

/// Run the environments' reference rule for `warm.steps` decisions and fit the actor to its choices
/// by cross-entropy against label-smoothed targets. Returns the environments' current observations.
fn clone_teacher(
    agent: &PpoAgent,
    envs: &mut [Box<dyn DiscreteEnv>],
    warm: &WarmStart,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let n_envs = envs.len();
    let heads = agent.head_dims.len();
    let mut obs: Vec<Vec<f32>> = envs.iter_mut().map(|e| e.reset(rng)).collect();
    let mut x = Vec::with_capacity(warm.steps * agent.obs_dim);
    let mut labels: Vec<usize> = Vec::with_capacity(warm.steps * heads);
    let rounds = warm.steps.div_ceil(n_envs.max(1));
    for _ in 0..rounds {
        for (e, env) in envs.iter_mut().enumerate() {
            let action = teacher_action(env.as_ref(), &agent.head_dims, "warm start")?;
            x.extend_from_slice(&obs[e]);
            labels.extend_from_slice(&action);
            let (next, _, done) = env.step(&action, rng);
            obs[e] = if done { env.reset(rng) } else { next };
        }
    }
    let rows = labels.len() / heads.max(1);
    // Smoothed one-hot targets, head after head, as the actor's logits are laid out.
    let width: usize = agent.head_dims.iter().sum();
    let mut target = vec![0.0f32; rows * width];
    for r in 0..rows {
        let mut offset = 0;
        for (h, &d) in agent.head_dims.iter().enumerate() {
            let spread = if d > 1 { warm.label_smoothing / (d - 1) as f64 } else { 0.0 };
            for i in 0..d {
                target[r * width + offset + i] = if i == labels[r * heads + h] {
                    (1.0 - warm.label_smoothing) as f32
                } else {
                    spread as f32
                };
            }
            offset += d;
        }
    }
    let t_x = agent.input(&x, rows)?;
    let t_target = Tensor::from_vec(target, (rows, width), &Device::Cpu)?;
    let actor_vars = agent.actor.vars();
    let params =
        ParamsAdamW { lr: warm.learning_rate, beta1: 0.9, beta2: 0.999, eps: 1e-5, weight_decay: 0.0 };
    let mut opt = AdamW::new(actor_vars, params)?;
    let minibatch = 2_048.min(rows.max(1));
    let mut order: Vec<u32> = (0..rows as u32).collect();
    for _ in 0..warm.epochs {
        shuffle(&mut order, rng);
        for chunk in order.chunks(minibatch) {
            let idx = Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?;
            let logits = agent.actor.forward(&t_x.index_select(&idx, 0)?)?;
            let target = t_target.index_select(&idx, 0)?;
            let mut offset = 0;
            let mut loss: Option<Tensor> = None;
            for &d in &agent.head_dims {
                let lp = candle_nn::ops::log_softmax(&logits.narrow(1, offset, d)?.contiguous()?, D::Minus1)?;
                let ce = (lp * target.narrow(1, offset, d)?)?.sum(1)?.mean_all()?.neg()?;
                loss = Some(match loss {
                    Some(l) => (l + ce)?,
                    None => ce,
                });
                offset += d;
            }
            if let Some(loss) = loss {
                opt.backward_step(&loss)?;
            }
        }
    }
    Ok(obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A contextual bandit: the observation x ~ U(0, 1) decides which of two actions pays.
    struct Threshold {
        x: f32,
    }

    impl DiscreteEnv for Threshold {
        fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
            self.x = rng.random();
            vec![self.x]
        }
        fn step(&mut self, action: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool) {
            let right = (self.x > 0.5) == (action[0] == 1);
            let r = if right { 1.0 } else { 0.0 };
            self.x = rng.random();
            (vec![self.x], r, false)
        }
        fn teacher(&self) -> Option<Vec<usize>> {
            Some(vec![usize::from(self.x > 0.5)])
        }
    }

    #[test]
    fn an_initial_actor_replaces_the_clone_and_a_constant_one_is_reported_collapsed() {
        use crate::onnx::LayerWeights;
        // An actor that picks action 1 below x = 0.5 and 0 above: the opposite of the rule. With
        // the actor's loss off throughout, training must leave it as given, not cloned.
        let hidden = 4;
        let mut w1 = vec![0.0f32; hidden];
        w1[0] = 1.0;
        let layers = |flip: f32| {
            vec![
                LayerWeights { w: w1.clone(), b: vec![-0.5, 0.0, 0.0, 0.0], input: 1, output: hidden },
                LayerWeights {
                    w: [vec![flip, -flip], vec![0.0; 2 * (hidden - 1)]].concat(),
                    b: vec![0.0, 0.0],
                    input: hidden,
                    output: 2,
                },
            ]
        };
        let run = |init: Vec<LayerWeights>| {
            let warm = WarmStart {
                steps: 4_096,
                epochs: 5,
                label_smoothing: 0.1,
                learning_rate: 1e-2,
                critic_updates: usize::MAX,
                bc_coef: 0.0,
            };
            let config = PpoConfig {
                total_steps: 4_096,
                gamma: 0.0,
                hidden: vec![hidden],
                warm_start: Some(warm),
                init_actor: Some(init),
                ..PpoConfig::default()
            };
            let mut envs: Vec<Box<dyn DiscreteEnv>> = (0..config.num_envs)
                .map(|_| Box::new(Threshold { x: 0.0 }) as Box<dyn DiscreteEnv>)
                .collect();
            let mut shares = Vec::new();
            let agent =
                train(&mut envs, 1, &[2], None, &config, 1, &mut |p| shares = p.greedy_top_share).unwrap();
            (agent, shares)
        };
        let (agent, shares) = run(layers(10.0));
        for i in 0..100 {
            let x = (i as f32 + 0.5) / 100.0;
            assert_eq!(agent.act_greedy(&[x]).unwrap()[0], usize::from(x < 0.5), "x = {x}");
        }
        assert!(shares[0] < 0.7, "{shares:?}");
        // A flat output layer picks action 0 everywhere: a collapsed head, reported as such.
        let (_, shares) = run(layers(0.0));
        assert_eq!(shares, vec![1.0]);
        // Layers of another shape are refused, naming both.
        let mut wrong = layers(1.0);
        wrong[1].output = 3;
        let warm = PpoConfig { init_actor: Some(wrong), hidden: vec![hidden], ..PpoConfig::default() };
        let mut envs: Vec<Box<dyn DiscreteEnv>> =
            (0..warm.num_envs).map(|_| Box::new(Threshold { x: 0.0 }) as Box<dyn DiscreteEnv>).collect();
        let err = train(&mut envs, 1, &[2], None, &warm, 1, &mut |_| {}).err().unwrap().to_string();
        assert!(err.contains("[(1, 4), (4, 3)]") && err.contains("[(1, 4), (4, 2)]"), "{err}");
    }

    #[test]
    fn the_warm_start_clones_the_reference_rule() {
        // One update whose actor loss is off: whatever the greedy policy does, cloning taught it.
        let warm = WarmStart {
            steps: 8_192,
            epochs: 20,
            label_smoothing: 0.1,
            learning_rate: 1e-2,
            critic_updates: 1,
            bc_coef: 0.0,
        };
        let config =
            PpoConfig { total_steps: 2_048, gamma: 0.0, warm_start: Some(warm), ..PpoConfig::default() };
        let mut envs: Vec<Box<dyn DiscreteEnv>> =
            (0..config.num_envs).map(|_| Box::new(Threshold { x: 0.0 }) as Box<dyn DiscreteEnv>).collect();
        let agent = train(&mut envs, 1, &[2], None, &config, 1, &mut |_| {}).unwrap();
        let wrong = (0..100).filter(|i| {
            let x = (*i as f32 + 0.5) / 100.0;
            (x > 0.5) != (agent.act_greedy(&[x]).unwrap()[0] == 1)
        });
        assert!(wrong.count() <= 3);
    }

    #[test]
    fn a_warm_start_needs_a_reference_rule() {
        let warm = WarmStart {
            steps: 64,
            epochs: 1,
            label_smoothing: 0.1,
            learning_rate: 1e-3,
            critic_updates: 0,
            bc_coef: 0.0,
        };
        let config = PpoConfig { total_steps: 2_048, warm_start: Some(warm), ..PpoConfig::default() };
        let mut envs: Vec<Box<dyn DiscreteEnv>> =
            (0..config.num_envs).map(|_| Box::new(TwoScales { regime: 0 }) as Box<dyn DiscreteEnv>).collect();
        let err = train(&mut envs, 1, &[2], None, &config, 1, &mut |_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("reference rule"), "{err}");
    }

    /// The threshold bandit with a second head the reward ignores; the reference rule always picks
    /// action 0 on both heads, so it is wrong on the first head half the time.
    struct BlindHead {
        x: f32,
    }

    impl DiscreteEnv for BlindHead {
        fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
            self.x = rng.random();
            vec![self.x]
        }
        fn step(&mut self, action: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool) {
            let r = if (self.x > 0.5) == (action[0] == 1) { 1.0 } else { 0.0 };
            self.x = rng.random();
            (vec![self.x], r, false)
        }
        fn teacher(&self) -> Option<Vec<usize>> {
            Some(vec![0, 0])
        }
    }

    #[test]
    fn the_cloning_term_holds_what_the_reward_ignores_and_yields_to_what_it_pays() {
        let warm = WarmStart {
            steps: 4_096,
            epochs: 2,
            label_smoothing: 0.2,
            learning_rate: 1e-2,
            critic_updates: 2,
            bc_coef: 0.1,
        };
        let config =
            PpoConfig { total_steps: 120_000, gamma: 0.0, warm_start: Some(warm), ..PpoConfig::default() };
        let mut envs: Vec<Box<dyn DiscreteEnv>> =
            (0..config.num_envs).map(|_| Box::new(BlindHead { x: 0.0 }) as Box<dyn DiscreteEnv>).collect();
        let agent = train(&mut envs, 1, &[2, 3], None, &config, 1, &mut |_| {}).unwrap();
        let actions: Vec<(f32, Vec<usize>)> = (0..100)
            .map(|i| (i as f32 + 0.5) / 100.0)
            .map(|x| (x, agent.act_greedy(&[x]).unwrap()))
            .collect();
        let wrong = actions.iter().filter(|(x, a)| (*x > 0.5) != (a[0] == 1)).count();
        assert!(wrong <= 5, "{wrong} of 100 wrong on the paid head");
        assert!(actions.iter().all(|(_, a)| a[1] == 0), "the ignored head left the rule: {actions:?}");
    }

    #[test]
    fn learns_a_state_dependent_choice() {
        let config = PpoConfig {
            total_steps: std::env::var("PPO_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(120_000),
            gamma: 0.0,
            ..PpoConfig::default()
        };
        let mut envs: Vec<Box<dyn DiscreteEnv>> =
            (0..config.num_envs).map(|_| Box::new(Threshold { x: 0.0 }) as Box<dyn DiscreteEnv>).collect();
        let agent = train(&mut envs, 1, &[2], None, &config, 1, &mut |_| {}).unwrap();
        let wrong = (0..100).filter(|i| {
            let x = (*i as f32 + 0.5) / 100.0;
            let a = agent.act_greedy(&[x]).unwrap()[0];
            (x > 0.5) != (a == 1)
        });
        let wrong = wrong.count();
        eprintln!("wrong {wrong}");
        assert!(wrong <= 5);
    }

    /// Two regimes of a bandit, told apart by the observation, whose rewards differ 1,000 times in
    /// scale and prefer opposite actions.
    struct TwoScales {
        regime: usize,
    }

    impl DiscreteEnv for TwoScales {
        fn reset(&mut self, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
            self.regime = rng.random_range(0..2);
            vec![self.regime as f32]
        }
        fn step(&mut self, action: &[usize], rng: &mut Xoshiro256PlusPlus) -> (Vec<f32>, f32, bool) {
            let (scale, wanted) = if self.regime == 0 { (1_000.0, 0) } else { (1.0, 1) };
            let r = if action[0] == wanted { scale } else { 0.0 };
            (self.reset(rng), r, true)
        }
        fn regime(&self) -> usize {
            self.regime
        }
    }

    #[test]
    fn a_regime_with_small_rewards_is_still_learned() {
        let config = PpoConfig { total_steps: 60_000, gamma: 0.0, ..PpoConfig::default() };
        let mut envs: Vec<Box<dyn DiscreteEnv>> =
            (0..config.num_envs).map(|_| Box::new(TwoScales { regime: 0 }) as Box<dyn DiscreteEnv>).collect();
        let agent = train(&mut envs, 1, &[2], None, &config, 1, &mut |_| {}).unwrap();
        assert_eq!(agent.act_greedy(&[0.0]).unwrap(), vec![0]);
        assert_eq!(agent.act_greedy(&[1.0]).unwrap(), vec![1]);
    }
}
