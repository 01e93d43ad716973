//! Model cards: what a model takes and returns, how it was trained, and how it scored.

use anyhow::{Context, Result};
use sim::tournament::Tournament;
use std::fmt::Write as _;
use std::path::Path;
use trainer::TrainReport;

fn table(t: &Tournament) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "| policy | cost $ | P95 ms | P99 ms | SLA viol. % | % steps | stability | CPU % |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in &t.rows {
        let m = &r.mean;
        let _ = writeln!(
            out,
            "| {} | {:.2} ± {:.2} | {:.1} | {:.1} | {:.2} ± {:.2} | {:.2} | {:.2} | {:.1} |",
            r.policy,
            m.cost_usd,
            r.cost_std,
            m.p95_ms,
            m.p99_ms,
            m.sla_violation_pct,
            r.sla_std,
            m.sla_step_violation_pct,
            m.stability,
            m.cpu_util_pct
        );
    }
    out
}

fn ratio_line(t: &Tournament, policy: &str) -> String {
    let schedule = match (t.row(policy), t.row("clairvoyant-schedule")) {
        (Some(p), Some(s)) if s.mean.cost_usd > 0.0 => {
            format!(" and {:.3} x the achievable clairvoyant schedule's", p.mean.cost_usd / s.mean.cost_usd)
        }
        _ => String::new(),
    };
    match (t.row(policy), t.row("clairvoyant")) {
        (Some(p), Some(c)) if c.mean.cost_usd > 0.0 => format!(
            "`{policy}`: {:.2} % SLA violations at {:.3} x the clairvoyant bound's cost{schedule}.",
            p.mean.sla_violation_pct,
            p.mean.cost_usd / c.mean.cost_usd
        ),
        _ => String::new(),
    }
}

const PPO_REFERENCE: &str = "PPO as in CleanRL's `ppo.py` (vwxyzjn/cleanrl; Huang et al., \"The 37 Implementation \
Details of Proximal Policy Optimization\", ICLR blog track 2022): separate 64-64 tanh actor and critic, orthogonal \
init (sqrt 2; actor head 0.01; critic head 1), Adam (eps 1e-5) at 2.5e-4 annealed linearly to 0, 8 environments x \
256 steps per update, GAE (gamma 0.99, lambda 0.95), 4 minibatches x 4 epochs, clip 0.2 (policy and value), \
entropy 0.01, value 0.5, gradient norm 0.5, rewards scaled by the running std-dev of the discounted return and \
clipped to +-10 (gym's NormalizeReward, as in CleanRL's continuous-action PPO). One categorical head per action dimension; log-probabilities and \
entropies summed over heads (CleanRL `ppo_multidiscrete.py`). Implemented in Rust on candle.";

/// Card of the seed-compat PPO model.
pub fn write_seed_compat(dir: &Path, command: &str, report: &TrainReport, eval: &Tournament) -> Result<()> {
    let path = dir.join("seed-compat-ppo.md");
    let high = sim::seed_compat::OBS_HIGH.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "# seed-compat-ppo.onnx\n\n\
         PPO policy for the seed-compat arena (the thesis's published simulator, `seed-env.md`).\n\n\
         ## Input\n\n`input`: float32 [1, 13], the seed environment's raw observation exactly as it returns it, in its order: \
         load processed, data volume, CPU %, memory %, latency ms, cost, alpha, beta, gamma, shuffle MB, temperature, \
         edge-predicted load (the next step's load), edge burst flag. The graph divides it by the declared upper bounds \
         [{high}] before the first layer; no normalisation is needed outside.\n\n\
         ## Output\n\n`actions`: int64 [1, 4], indices into the seed's MultiDiscrete [20, 8, 4, 3]: executors - 1, GB - 1, \
         tier (0 Redis, 1 NVMe, 2 S3, 3 Glacier), compression (0 none, 1 light, 2 heavy). Greedy (argmax per head).\n\n\
         The network has three heads: a margin level, the tier and the codec. The graph sizes the cluster for them \
         (`trainer::onnx::export_seed_relative`; training decodes with `trainer::seed_env::seed_action`, the same \
         operations in f32): need = {cpl} x W / (SLA - the largest shuffle's time on that tier and codec) executor-GB, \
         W the edge-predicted load (obs 11) and the largest shuffle {worst} MB (the observation's shuffle is a step \
         stale); executors and GB per executor are the cheapest pair of the seed's sizes whose product is at least \
         level x need, level in {mlevels:?}. Level 1 meets the SLA whatever the shuffle. The shuffle is then stored on \
         the tier and codec whose storage is cheapest among those that keep the largest shuffle within the SLA on that \
         pair (the heads' own choice always does): the output's tier and codec.\n\n\
         ## Training\n\n- command: `{command}`\n- seed: {seed}\n- environment steps: {steps}\n- wall time: {wall:.0} s\n\
         - final mean episode return (training reward): {ret:.2}\n\
         - reward: -(step cost / 10), and for a step over the 1,000 ms SLA a further -({pen} + min(latency / SLA - 1, 3)); training episodes use seeds with the top \
         bit set, evaluation seeds are small, so no evaluation workload was seen in training.\n\
         - deviations from the reference below: gamma = {g} (the seed's steps are independent of the actions, so this is a \
         contextual bandit), entropy coefficient 0.001, learning rate 1e-3 (annealed).\n\
         - algorithm: {PPO_REFERENCE}\n\n\
         ## Evaluation\n\n`sparkpilot tournament --arena seed-compat --seeds {n}` (seeds 0..{n}), through the policy runtime:\n\n{table}\n{ratio}\n",
        seed = report.seed,
        steps = report.steps,
        wall = report.wall_time_s,
        ret = report.final_return,
        pen = trainer::seed_env::VIOLATION_PENALTY,
        cpl = trainer::seed_env::COMPUTE_MS_PER_LOAD,
        worst = sim::seed_compat::MAX_SHUFFLE_MB,
        mlevels = trainer::seed_env::MARGIN_LEVELS,
        g = trainer::SEED_COMPAT_GAMMA,
        n = eval.seeds.len(),
        table = table(eval),
        ratio = ratio_line(eval, "rl"),
    );
    write_keeping_history(&path, text)
}

/// What a scaling model was trained on and from, for its card.
pub struct ScalingSource<'a> {
    /// Names of the training traces (built-in names or files).
    pub trained: &'a [String],
    /// The model it was fine-tuned from, if any.
    pub init: Option<&'a Path>,
    /// The share of each file held out of training, when files were given.
    pub holdout: Option<f64>,
}

/// Card of the scaling PPO model, with one evaluation table per trace and the ablation against
/// its reference rule. A hand-written "## History and ablations" section of the card already at
/// the path is kept after the generated part.
pub fn write_scaling(
    dir: &Path,
    command: &str,
    report: &TrainReport,
    source: &ScalingSource,
    evals: &[Tournament],
) -> Result<()> {
    let path = dir.join("scaling-ppo.md");
    let warm = trainer::scaling_config(report.steps)
        .warm_start
        .context("the scaling PPO has no warm start to describe")?;
    let trained = source.trained;
    let mut features = String::new();
    for (i, name) in control::FEATURE_NAMES.iter().enumerate() {
        let _ = writeln!(features, "{i}. `{name}`");
    }
    let mut tables = String::new();
    for t in evals {
        let seen = if t.trace.contains(", held-out last ") {
            "the tail of a trained trace, never trained on"
        } else if trained.contains(&t.trace) {
            "trained on this shape"
        } else {
            "never seen in training"
        };
        let _ = writeln!(
            tables,
            "### {} ({seen}), {} seeds\n\n{}\n{}\n",
            t.trace,
            t.seeds.len(),
            table(t),
            ratio_line(t, "rl")
        );
    }
    let mut ablation = String::from(
        "| trace | rule cost $ | rl cost $ | rl vs rule cost | rule SLA viol. % events | rl SLA viol. % events |\n|---|---|---|---|---|---|\n",
    );
    for t in evals {
        if let (Some(rule), Some(rl)) = (t.row("rule"), t.row("rl")) {
            let _ = writeln!(
                ablation,
                "| {} | {:.3} | {:.3} | {:+.1} % | {:.2} | {:.2} |",
                t.trace,
                rule.mean.cost_usd,
                rl.mean.cost_usd,
                100.0 * (rl.mean.cost_usd / rule.mean.cost_usd.max(1e-12) - 1.0),
                rule.mean.sla_violation_pct,
                rl.mean.sla_violation_pct
            );
        }
    }
    let text = format!(
        "# scaling-ppo.onnx\n\n\
         The scaling policy: executors, memory per executor, shuffle tier and compression for the next micro-batch.\n\n\
         ## Input\n\n`input`: float32 [1, 13], built by `control::FeatureBuilder::features` from what a live system observes \
         (the simulator and the scaling-decision function call the same code). In order:\n\n{features}\n\
         Normalisation: utilisation in 0..1; memory utilisation / 2; backlog as ln(1 + backlog in executor-seconds) / 10; \
         rates (input, processing, predicted) in executors' worth (events/s over one executor's events/s at the observed event \
         size) and executor counts, both as ln(1 + x) / ln(65); burst 0/1; temperature 0..1; shuffle MB/s / 1,000; alpha and beta as given. \
         The predicted load is the most load the edge gateways expect within their lead time: the larger of their newest summed forecast and the peak of the last {window} s of forecasts, smoothed over {smooth} s (`control::ClusterBurst::predicted_or`).\n\n\
         ## Output\n\n`actions`: int64 [1, 4]: executor level (0..{levels}), memory level (0..{mlevels}), tier \
         (0 Redis, 1 NVMe, 2 S3, 3 Glacier), codec (0 none, 1 LZ4, 2 ZSTD). Greedy (argmax per head).\n\n\
         The executor level is relative to the demand (`control::FeatureBuilder::action`): level 0 keeps the executors in force; \
         level k sizes the cluster at headroom[k] x demand, and at least at the input rate's own need, rounded up, within \
         1..{max}, where headroom = {headroom:?} and demand = (max(input rate, predicted load) + backlog / {drain} s) in \
         running executors' worth: events/s over what one executor carries in the job as it runs, the event's CPU and \
         the codec in force on its shuffle (`control::FeatureBuilder::running_executor_rate`). The guardrails \
         (`control::Guardrails`, default limits: at most {step} executors up or down per decision, no scale-down within \
         {cooldown} s of the last scale-up) apply after, in the arena, in training and in the scaling-decision function.\n\n\
         The memory level is relative to the observed event size (`control::FeatureBuilder::memory_for`): level k picks the \
         smallest executor size of {sizes:?} GB whose usable memory (after the container overhead) holds mheadroom[k] x the \
         working set of an executor running at its full CPU rate (the JVM's base plus the state it keeps over the window), \
         where mheadroom = {mheadroom:?}; the last level is the largest size.\n\n\
         ## Training\n\n- command: `{command}`\n- seed: {seed}\n- environment steps (decisions): {steps}\n- wall time: {wall:.0} s\n\
         - final mean episode return: {ret:.2}\n\
         - environment: the realistic arena (embedded defaults), one decision per 5 s; each episode draws a trace from {trained:?}, \
         a training seed (top bit set) and one of the four scenarios; half the episodes run under the scenario's own weights (alpha, beta), half under a pair drawn uniformly from the unit square and brought into the scenario's band of beta / (alpha + beta) (`control::Scenario::bounded_weights`), the weights the meta-controller can send.{recorded}\n\
         - greedy action spread at the end of training (share of the last update's states on which each head picks its most \
         common action; executor, memory, tier, codec): {spread}{collapse}\n\
         - actuation: a running job (`sim::Actuation::RunningJob`): executors and the tier apply during the episode; memory, \
         codec and pre-initialised workers stay at the run's opening values (16 GB, LZ4, none), as on EMR Serverless, where only \
         a new job run or a stopped application takes them. The memory and codec heads therefore earn nothing in training.\n\
         - reward per decision: -(alpha x cost / right-sized cost + beta x (min(latency / SLA, 5) / 5 + {vw} x share of events over the SLA)).\n\
         - right-sized cost: the CPU-bound executors the interval's mean arrival rate needs (at least one), at 16 GB, for the interval.\n\
         - cost in the reward books the Redis hot tier's hold (`redis_hold_s`) when a decision starts or extends it, not as it runs \
         (`sim::IntervalOutcome::committed_cost_usd`); the scores below bill it as it runs.\n\
         - discount: gamma = {g}.\n\
         - deviations from the reference below: entropy coefficient {ent} (the exported policy is greedy; a broader policy \
         learns safety margins for its own random picks), and the return's running std-dev kept per scenario, so that each \
         scenario's rewards are scaled alike (smart city's are mostly cost, healthcare's mostly rare violations).\n\
         {init}- warm start (not in the reference): before PPO the actor is fitted by cross-entropy (label smoothing {smooth_bc}, \
         {bc_epochs} passes, Adam {bc_lr}) to {bc_steps} decisions of the reference rule `trainer::scaling_env::teacher_indices` \
         (with risk = beta / (alpha + beta): while the edges' burst signal is up, the demand times a headroom running linearly \
         through {burst:?} at risk 0, 0.5 and 1; while it is down, {quiet:?}, the second from risk {cautious}; each rounded up to \
         a level; memory level 1, NVMe, no codec); the \
         critic alone trains for the first {critic} updates; during PPO a cross-entropy term towards the rule's action on every \
         rollout state, weight {bc}, is added to the loss (`trainer::ppo::WarmStart`).\n\
         - algorithm: {PPO_REFERENCE}\n\n\
         ## Evaluation\n\nThrough the policy runtime, with the balanced weights (alpha = beta = 0.33):\n\n{tables}\
         ## Ablation: the learned policy against its reference rule\n\n`rule` is the reference rule the actor is warm-started \
         from and held near (`control::reference_rule`, also the function's fallback), through the same features and guardrails; \
         same traces and seeds as above.\n\n{ablation}\n",
        recorded = match source.holdout {
            Some(h) => format!(
                " A CSV trace gives episodes of up to {} s from random starts in its first {:.0} %; its last {:.0} % is held out \
                 and evaluated below.",
                trainer::scaling_env::RECORDED_EPISODE_S,
                100.0 * (1.0 - h),
                100.0 * h
            ),
            None => String::new(),
        },
        spread = report.greedy_top_share.iter().map(|s| format!("{:.1} %", 100.0 * s)).collect::<Vec<_>>().join(", "),
        collapse = if report.collapsed() {
            format!(
                ". **The executor head has collapsed** (one action on at least {:.0} % of states): do not deploy this model",
                100.0 * trainer::COLLAPSE_SHARE
            )
        } else {
            String::new()
        },
        init = match source.init {
            Some(m) => format!(
                "- fine-tuned from `{}`: the actor starts as that model (read back with `trainer::onnx::import_multidiscrete`), \
                 not as a clone of the rule; the rest of the warm start below applies as written.\n",
                m.display()
            ),
            None => String::new(),
        },
        seed = report.seed,
        steps = report.steps,
        wall = report.wall_time_s,
        ret = report.final_return,
        vw = trainer::scaling_env::VIOLATION_WEIGHT,
        g = trainer::SCALING_GAMMA,
        ent = trainer::SCALING_ENT_COEF,
        smooth_bc = warm.label_smoothing,
        bc_epochs = warm.epochs,
        bc_lr = warm.learning_rate,
        bc_steps = warm.steps,
        quiet = trainer::scaling_env::TEACHER_QUIET_HEADROOM,
        burst = trainer::scaling_env::TEACHER_BURST_HEADROOM,
        cautious = trainer::scaling_env::TEACHER_CAUTIOUS_RISK,
        critic = warm.critic_updates,
        bc = warm.bc_coef,
        levels = control::ACTION_DIMS[0] - 1,
        max = control::POLICY_MAX_EXECUTORS,
        headroom = control::EXECUTOR_HEADROOM,
        mlevels = control::ACTION_DIMS[1] - 1,
        sizes = control::MEMORY_CHOICES_GB,
        mheadroom = control::MEMORY_HEADROOM,
        drain = control::BACKLOG_DRAIN_S,
        step = control::GuardrailConfig::default().max_step,
        cooldown = control::GuardrailConfig::default().cooldown_s,
        window = sim::config::ArenaConfig::default().edge.cluster.forecast_window_s,
        smooth = sim::config::ArenaConfig::default().edge.cluster.cluster_detector.short_window,
    );
    write_keeping_history(&path, text)
}

/// Write a card, keeping the hand-written "## History and ablations" section of the card already
/// at `path` (a retrain rewrites the measured sections, not the record of how the model got there).
fn write_keeping_history(path: &Path, text: String) -> Result<()> {
    let history = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.find("\n## History and ablations").map(|at| old[at..].to_string()))
        .unwrap_or_default();
    std::fs::write(path, text + &history).with_context(|| format!("writing {}", path.display()))
}

/// Card of the TD3 meta-controller, with its per-scenario table.
pub fn write_meta(
    dir: &Path,
    command: &str,
    report: &TrainReport,
    rows: &[(String, control::Scenario, sim::tournament::Row)],
) -> Result<()> {
    let path = dir.join("meta-td3.md");
    let mut table =
        String::from("| trace | scenario | cost $ | SLA viol. % events | P99 ms |\n|---|---|---|---|---|\n");
    for (trace, scenario, row) in rows {
        let _ = writeln!(
            table,
            "| {trace} | {} | {:.3} | {:.2} | {:.0} |",
            scenario.name(),
            row.mean.cost_usd,
            row.mean.sla_violation_pct,
            row.mean.p99_ms
        );
    }
    let text = format!(
        "# meta-td3.onnx\n\n\
         The meta-controller: picks the weights (alpha: cost, beta: latency) the scaling policy sees, every {every} s \
         (the meta-weights schedule).\n\n\
         ## Input\n\n`input`: float32 [1, 7], built by `control::MetaContext::features`: scenario one-hot (healthcare_critical, \
         industrial_high_throughput, smart_city_budget, balanced); budget remaining as a share of the run's budget (-1..1); \
         share of the last {recent} decisions whose latency exceeded the SLA; their mean spend rate (running executors at \
         their price) over the budget's even rate, / 3, capped at 1 (`sim::learned::SpendEstimate` and `RecentDecisions`, \
         what the meta-weights function reads from its budget feed and decision log). The run's budget is what 16 GB executors sized for the \
         trace's mean load at 70 % utilisation would cost.\n\n\
         ## Output\n\n`weights`: float32 [1, 2], (alpha, beta) in 0..1 (sigmoid); the meta-weights function, the arena and training bring them into the scenario's band of beta / (alpha + beta) (`control::Scenario::bounded_weights`: healthcare at least 0.75, smart city at most 0.25, the others 0.25 to 0.75).\n\n\
         ## Training\n\n- command: `{command}`\n- seed: {seed}\n- meta steps ({every} s each): {steps}\n- wall time: {wall:.0} s\n\
         - final mean episode return: {ret:.2}\n\
         - environment: the realistic arena on the scaling policy's training traces, with `scaling-ppo.onnx` in the loop \
         through the policy runtime; each episode draws a scenario, and each action is brought into its band before the scaling policy sees it. Actuation: a running job (executors and tier live; memory, codec and \
         pre-initialised workers held for the run).\n\
         - reward per meta step, paired: the scenario's own objective, -(alpha_s x cost / cost of 16 executors + beta_s x 5 x \
         share of events over the SLA) - overspend beyond the budget as a share of it, with (alpha_s, beta_s) the scenario's \
         weights, minus the same objective for the same {every} s run from a copy of the episode under (alpha_s, beta_s) (common \
         random numbers: the same arrivals, burst signals and temperatures), x {scale}.\n\
         - algorithm: TD3 as in CleanRL's `td3_continuous_action.py` (Fujimoto et al. 2018): twin critics, target policy \
         smoothing (0.2, clip 0.5, in action half-ranges), actor and targets updated every 2 steps, tau 0.005, gamma {gamma} (CleanRL: 0.99; the paired reward scores each step on its own), \
         Adam 3e-4, batch 256, exploration noise 0.1, random actions for the first tenth of the steps (at most 2,000); \
         64-64 ReLU networks, sigmoid actions. Implemented in Rust on candle.\n\n\
         ## Evaluation (rl-meta per scenario, through the policy runtime)\n\n`rl-meta` is the deployed bundle: the meta-controller on its schedule, \
         the scaling policy with its guardrails, and the prewarmer (`control::plan_prewarm`) every {prewarm} s.\n\n{table}",
        every = sim::learned::META_EVERY_S,
        recent = sim::learned::META_RECENT_DECISIONS,
        prewarm = sim::learned::PREWARM_EVERY_S,
        scale = trainer::meta_env::PAIRED_REWARD_SCALE,
        gamma = trainer::META_GAMMA,
        seed = report.seed,
        steps = report.steps,
        wall = report.wall_time_s,
        ret = report.final_return,
    );
    write_keeping_history(&path, text)
}
