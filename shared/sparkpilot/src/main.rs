//! `sparkpilot`: a thin command line over the sparkpilot libraries.

mod card;

/// `println!` that returns the write's error instead of panicking, so that a closed pipe
/// (`sparkpilot ... | head`) ends the command quietly (see `main`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use latency_model::{calibrate, LatencyModel};
use sim::tournament::{self, ArenaKind, Contender, SeedContender};
use sim::{Arena, ArenaConfig, ColdStart, SimError};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "sparkpilot", version, about = "Autoscaling for serverless Spark under bursty IoT load")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum TrainWhat {
    /// The scaling policy (PPO) for the realistic arena: scaling-ppo.onnx.
    Scaling,
    /// The meta-controller (TD3): meta-td3.onnx.
    Meta,
    /// The seed-compat policy (PPO): seed-compat-ppo.onnx.
    SeedCompat,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArenaArg {
    Realistic,
    SeedCompat,
}

#[derive(Subcommand)]
enum Command {
    /// Run every policy on the same trace and seeds; print the table, write results.csv and timeline.svg.
    Tournament(Box<TournamentArgs>),
    /// Drive a trace through the five real handlers (edge gateways -> burst-signal -> scaling-decision,
    /// with meta-weights, prewarmer and shuffle-router on their triggers), the arena standing in for
    /// EMR Serverless; print the scoreboard next to the tournament's learned policies on the same
    /// trace and seed, and write results.csv and timeline.svg.
    Replay(Box<ReplayArgs>),
    /// Play Lambda's MSK event-source mapping for a local stack: consume iot-metadata,
    /// scaling-requests and spark-metrics, invoke the handlers on their real backends (settings
    /// from the environment, as the functions read them), commit after success, dead-letter what
    /// keeps failing, and run the schedules. Stops on Ctrl-C.
    Bridge {
        /// Records per invocation at most (the mapping's BatchSize).
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// Longest a record waits for its batch, ms (MaximumBatchingWindowInSeconds).
        #[arg(long, default_value_t = 500)]
        batch_window_ms: u64,
        /// Tries before bisecting a failing batch and dead-lettering a lone failing record.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        #[arg(long, default_value = "sparkpilot-dlq")]
        dead_letter_topic: String,
        #[arg(long, default_value = "sparkpilot-bridge")]
        group: String,
        /// Do not run meta-weights, prewarmer and scaling-decision on their schedules.
        #[arg(long)]
        no_schedules: bool,
    },
    /// Run the edge agent of an IoT gateway: count the devices' MQTT messages each second, run the
    /// burst detector on the rate, publish an iot-metadata record a second and forward every message
    /// to iot-raw-data, at least once (acknowledged to the broker once Kafka has it). Kafka from
    /// KAFKA_BROKERS, SPARKPILOT_KAFKA_AUTH and SPARKPILOT_KAFKA_CONFIG_* (any librdkafka setting); the MQTT
    /// password from SPARKPILOT_MQTT_PASSWORD. Stops on Ctrl-C.
    Edge {
        /// The MQTT broker: mqtt://host[:1883] or mqtts://host[:8883].
        #[arg(long, env = "SPARKPILOT_MQTT_URL", default_value = "mqtt://127.0.0.1:1883")]
        mqtt: String,
        /// Topic filter the devices publish under (repeatable).
        #[arg(long = "topic", default_value = "devices/#")]
        topics: Vec<String>,
        /// This gateway's id (its records' edge_id and its MQTT client id).
        #[arg(long, env = "SPARKPILOT_EDGE_ID")]
        gateway_id: String,
        /// MQTT user name (the password from SPARKPILOT_MQTT_PASSWORD).
        #[arg(long, env = "SPARKPILOT_MQTT_USERNAME")]
        mqtt_username: Option<String>,
        #[arg(long, default_value = "iot-metadata")]
        metadata_topic: String,
        #[arg(long, default_value = "iot-raw-data")]
        raw_topic: String,
        /// Report rates only; do not forward the messages.
        #[arg(long)]
        no_forward: bool,
        /// Most records held while Kafka is away; beyond, device messages are dropped and counted.
        #[arg(long, default_value_t = 100_000)]
        buffer: usize,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Serve the dashboard on the store the functions write (Redis: REDIS_URL, SPARKPILOT_KEY_PREFIX,
    /// SPARKPILOT_REDIS_CA_FILE, as the functions read them), and a tournament's results with
    /// --results. Stops on Ctrl-C.
    Dashboard {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// A tournament's or replay's output directory (results.csv, timeline.svg).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Only the results: read no store.
        #[arg(long, requires = "results")]
        no_store: bool,
    },
    /// Train a policy on the simulator and export it as ONNX (with a model card).
    Train {
        #[arg(value_enum)]
        what: TrainWhat,
        /// Environment steps.
        #[arg(long, default_value_t = 1_000_000)]
        steps: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory for the model and its card. The committed models are in `models/`: writing
        /// there (or over any existing model) needs --overwrite.
        #[arg(long, default_value = "trained")]
        out: PathBuf,
        /// Replace a model already in --out.
        #[arg(long)]
        overwrite: bool,
        /// Seeds of the evaluation tournament written into the card.
        #[arg(long, default_value_t = 20)]
        eval_seeds: u64,
        /// Train the scaling policy on these traces instead of the built-in training shapes: a
        /// built-in name (see `sparkpilot traces`) or a CSV file in the documented format
        /// (`time_s,events_per_s[,bytes_per_event]`). Repeat for several. The last --holdout of
        /// each file is never trained on; the card evaluates on it.
        #[arg(long = "trace", value_name = "NAME|FILE")]
        traces: Vec<String>,
        /// Share of each CSV trace, at its end, held out of training for the card's evaluation.
        #[arg(long, default_value_t = 0.2, requires = "traces")]
        holdout: f64,
        /// Fine-tune this scaling model (such as models/scaling-ppo.onnx) instead of starting
        /// from the reference rule.
        #[arg(long, value_name = "MODEL")]
        init: Option<PathBuf>,
    },
    /// Run one function's handler in-process on the in-memory backends with an event file (as in
    /// events/), and print its result, what it published, and the EMR Serverless application after.
    Invoke {
        /// burst-signal, meta-weights, scaling-decision, shuffle-router or prewarmer.
        function: String,
        /// The event: a Lambda payload (MSK batch, EventBridge schedule) or a direct-invoke body.
        event: PathBuf,
        /// Decide and record, never act (SPARKPILOT_DRY_RUN).
        #[arg(long)]
        dry_run: bool,
    },
    /// List the built-in traces, or print one as CSV.
    Traces {
        /// Print this trace (built-in or file) as CSV instead of listing.
        #[arg(long)]
        show: Option<String>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Measure compression ratio and speed of none/LZ4/ZSTD on IoT records and write the table; with
    /// --job, fit a real Spark job's batch overhead and per-event cost from its micro-batches.
    Calibrate {
        /// Where to write the table (the embedded one is shared/latency-model/compression.toml).
        #[arg(long, default_value = "shared/latency-model/compression.toml")]
        out: PathBuf,
        /// Milliseconds spent per speed measurement.
        #[arg(long, default_value_t = 500)]
        budget_ms: u64,
        /// Micro-batches of a real job, one JSON object a line: `{"bytes_per_event", "cores_per_executor",
        /// "metrics": <the agent's spark-metrics record>}` (`infra/spark calibrate` writes them). The fit is
        /// printed beside latency.toml's assumptions; nothing is written.
        #[arg(long)]
        job: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct TournamentArgs {
    #[arg(long, value_enum, default_value = "realistic")]
    arena: ArenaArg,
    /// A built-in trace name (see `sparkpilot traces`) or a CSV file.
    #[arg(long, default_value = "step-burst")]
    trace: String,
    /// Number of seeds (episodes per policy).
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// First seed; seeds are consecutive from here.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Comma-separated policies; default: every baseline of the arena and the clairvoyant bound.
    /// `spark-dra:executorAllocationRatio=0.5:schedulerBacklogTimeout=5s` runs Spark dynamic
    /// allocation with your own `spark.dynamicAllocation.*` values.
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Output directory for results.csv and timeline.svg.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Where the learned policies' models are (`rl`, `rl-meta`). Default: ./models when it has
    /// them, else the models built into sparkpilot (seed-compat's `rl` has none built in).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Business scenario the meta-controller (`rl-meta`) serves: healthcare_critical,
    /// industrial_high_throughput, smart_city_budget or balanced.
    #[arg(long, default_value = "balanced")]
    scenario: String,
    #[command(flatten)]
    arena_opts: ArenaOpts,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// A built-in trace name (see `sparkpilot traces`) or a CSV file.
    #[arg(long, default_value = "step-burst")]
    trace: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Business scenario meta-weights serves: healthcare_critical, industrial_high_throughput,
    /// smart_city_budget or balanced.
    #[arg(long, default_value = "balanced")]
    scenario: String,
    /// Output directory for results.csv and timeline.svg.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Only the replay: skip the tournament rows it is compared with.
    #[arg(long)]
    no_compare: bool,
    /// Run against the local stack (`eval "$(infra/services start)"`): the gateways' records go
    /// through Kafka and the bridge to the handlers on Redis, moto (EMR Serverless, S3) and the broker.
    #[arg(long)]
    live: bool,
    /// With --live: play the trace against the real example Spark job on the local cluster
    /// (`infra/spark start` first), in real time, and print its latency and executors beside the
    /// arena's for the same fitted trace. Executors are 1-core; pass --max-executors 3 for the local worker.
    #[arg(long, requires = "live")]
    spark: bool,
    /// With --spark: events sent per event of the trace.
    #[arg(long, default_value_t = 0.2)]
    spark_scale: f64,
    /// With --spark: seconds of the trace played.
    #[arg(long, default_value_t = 300)]
    spark_seconds: usize,
    /// With --spark: the largest event sent, bytes.
    #[arg(long, default_value_t = 2_000.0)]
    spark_max_event_bytes: f64,
    /// Serve the dashboard on this address (port 0: any free port) while the replay runs, and
    /// after it until Ctrl-C. On the embedded backends only (for --live, run `sparkpilot dashboard`).
    #[arg(long, conflicts_with = "live")]
    dashboard: Option<String>,
    /// Trace seconds replayed per wall-clock second (default: as fast as it goes; with
    /// --dashboard, 60: a minute of trace a second).
    #[arg(long)]
    pace: Option<f64>,
    #[command(flatten)]
    arena_opts: ArenaOpts,
}

/// Options of the realistic arena.
#[derive(clap::Args)]
struct ArenaOpts {
    /// A price file with the layout of shared/cost-model/prices.toml.
    #[arg(long)]
    prices: Option<PathBuf>,
    #[arg(long, default_value = cost_model::DEFAULT_REGION)]
    region: String,
    /// Latency model and compression files (both, or neither).
    #[arg(long, requires = "compression_model")]
    latency_model: Option<PathBuf>,
    #[arg(long, requires = "latency_model")]
    compression_model: Option<PathBuf>,
    /// Worker cold start: thesis (45-60 s), reported (15-30 s), fixed:S or uniform:LO:HI.
    #[arg(long, default_value = "thesis")]
    cold_start: String,
    /// SLA threshold per event, ms.
    #[arg(long, default_value_t = 1000.0)]
    sla_ms: f64,
    /// Seconds between decisions (micro-batch).
    #[arg(long, default_value_t = 5)]
    decision_interval: usize,
    /// Maximum executors (4 vCPU each).
    #[arg(long, default_value_t = 64)]
    max_executors: u32,
    /// Edge gateways the load is split over (their records are aggregated as burst-signal does).
    #[arg(long, default_value_t = sim::EdgeConfig::default().gateways)]
    edges: usize,
    /// Which settings of a decision reach the job: running-job (executors and tier live; memory,
    /// codec and pre-initialised workers fixed for the run, as on EMR Serverless) or instant (every
    /// setting at once, the arena before the in-job agent).
    #[arg(long, default_value = "running-job")]
    actuation: String,
    /// The learned policies' backlog safety net: raise executors so that a growing backlog drains
    /// within this many seconds (SPARKPILOT_BACKLOG_DRAIN_S in the function); 0, the default, turns
    /// it off.
    #[arg(long, default_value_t = control::GuardrailConfig::default().backlog_drain_s)]
    backlog_drain_s: f64,
    /// The learned policies' guardrail: no scale-down for this many seconds after a scale-up
    /// (SPARKPILOT_COOLDOWN_S in the function); 0 turns it off.
    #[arg(long, default_value_t = control::GuardrailConfig::default().cooldown_s)]
    cooldown_s: f64,
}

impl ArenaOpts {
    fn arena(&self) -> Result<Arena> {
        let prices = match &self.prices {
            Some(p) => cost_model::PriceBook::from_file(p, &self.region)?,
            None => cost_model::PriceBook::embedded(&self.region)?,
        };
        let model = match (&self.latency_model, &self.compression_model) {
            (Some(l), Some(c)) => LatencyModel::from_files(l, c)?,
            _ => LatencyModel::embedded(),
        };
        let config = ArenaConfig {
            cold_start: ColdStart::parse(&self.cold_start)?,
            actuation: sim::Actuation::parse(&self.actuation)?,
            sla_ms: self.sla_ms,
            decision_interval_s: self.decision_interval,
            max_executors: self.max_executors,
            edge: sim::EdgeConfig { gateways: self.edges, ..sim::EdgeConfig::default() },
            backlog_drain_s: self.backlog_drain_s,
            cooldown_s: self.cooldown_s,
            ..ArenaConfig::default()
        };
        Ok(Arena::new(config, prices, model)?)
    }
}

/// `replay --live --spark`: the trace against the real job, beside the arena.
fn replay_spark_cmd(args: &ReplayArgs, scenario: control::Scenario) -> Result<()> {
    if !(args.spark_scale.is_finite() && args.spark_scale > 0.0) {
        bail!("--spark-scale must be a positive number, found {}", args.spark_scale);
    }
    // The local job's executors have one core each: the arena and the functions size for that.
    let mut arena = args.arena_opts.arena()?;
    arena.config.vcpu_per_executor = 1.0;
    let trace = traces::resolve(&args.trace, args.seed)?;
    let options = pipeline::spark::SparkReplayOptions {
        scale: args.spark_scale,
        seconds: args.spark_seconds,
        max_event_bytes: args.spark_max_event_bytes,
        root: std::env::current_dir()?,
        scenario,
    };
    let endpoints = pipeline::live::Endpoints::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let r =
        runtime.block_on(pipeline::spark::replay_spark(&arena, &trace, args.seed, &options, &endpoints))?;
    let sla = arena.config.sla_ms;
    out!(
        "{} (seed {}) against the real Spark job, {} decisions; SLA {sla:.0} ms",
        r.trace.name(),
        args.seed,
        r.decisions
    );
    let bound = |v: f64| if v.is_finite() { format!("<= {v:.0}") } else { "> 60000".to_string() };
    out!("  {:<28} {:>12} {:>12} {:>14} {:>16}", "", "P95 ms", "P99 ms", "over SLA %", "executors mean/max");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let real_ex: Vec<f64> = r.real_executors.iter().map(|&n| n as f64).collect();
    let arena_ex: Vec<f64> = r.arena.timeline.executors.iter().map(|&n| n as f64).collect();
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    out!(
        "  {:<28} {:>12} {:>12} {:>14.2} {:>10.2}/{:.0}",
        "real job (histogram bounds)",
        bound(r.real.p95_ms),
        bound(r.real.p99_ms),
        r.real.over_sla_pct,
        mean(&real_ex),
        max(&real_ex)
    );
    out!(
        "  {:<28} {:>12.0} {:>12.0} {:>14.2} {:>10.2}/{:.0}",
        "arena",
        r.arena.scores.p95_ms,
        r.arena.scores.p99_ms,
        r.arena.scores.sla_violation_pct,
        mean(&arena_ex),
        max(&arena_ex)
    );
    out!("  executors every 30 s (t: load events/s, real, arena):");
    for t in (0..r.trace.len()).step_by(30) {
        out!(
            "    {t:>5}: {:>8.0} {:>4} {:>6.1}",
            r.trace.at(t).events_per_s,
            r.real_executors.get(t).copied().unwrap_or(0),
            arena_ex.get(t).copied().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// Fit a real job's processing figures and set them beside the arena's assumptions.
fn calibrate_job(path: &std::path::Path) -> Result<()> {
    use latency_model::job_fit::{fit, BatchSample};
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut batches = Vec::new();
    let mut phases: Vec<Option<u64>> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line).with_context(at)?;
        let metrics: handlers::SparkMetrics =
            serde_json::from_value(v["metrics"].clone()).with_context(|| format!("{}: metrics", at()))?;
        let bytes = v["bytes_per_event"]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("{}: bytes_per_event must be a number", at()))?;
        let cores = v["cores_per_executor"].as_f64().unwrap_or(1.0);
        let executors = metrics
            .running_executors
            .ok_or_else(|| anyhow::anyhow!("{}: metrics.running_executors is missing", at()))?
            as f64;
        phases.push(v["phase"].as_u64());
        batches.push(BatchSample {
            // processedRowsPerSecond is the batch's rows over its trigger's duration.
            rows: metrics.processing_rate * metrics.batch_duration_ms / 1_000.0,
            cores: executors * cores,
            bytes_per_event: bytes,
            duration_ms: metrics.batch_duration_ms,
        });
    }
    // Batches of one load phase vary with the machine's noise (GC, the other cores' work): fit the
    // phases' medians, so that one slow batch does not pull the line.
    let mut by_phase: std::collections::BTreeMap<Option<u64>, Vec<BatchSample>> = Default::default();
    for (p, b) in phases.iter().zip(&batches) {
        by_phase.entry(*p).or_default().push(*b);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let points: Vec<BatchSample> = if by_phase.len() >= 3 && !by_phase.contains_key(&None) {
        by_phase
            .values()
            .map(|b| BatchSample {
                rows: median(b.iter().map(|x| x.rows).collect()),
                cores: median(b.iter().map(|x| x.cores).collect()),
                bytes_per_event: median(b.iter().map(|x| x.bytes_per_event).collect()),
                duration_ms: median(b.iter().map(|x| x.duration_ms).collect()),
            })
            .collect()
    } else {
        batches.clone()
    };
    let f = fit(&points).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let assumed = LatencyModel::embedded().processing;
    out!("real job, {} micro-batches in {} fitted points, R^2 {:.3}:", batches.len(), f.samples, f.r_squared);
    for p in &points {
        out!(
            "  {:>7.0} events of {:>6.0} B on {:.0} core(s): {:>7.0} ms",
            p.rows,
            p.bytes_per_event,
            p.cores,
            p.duration_ms
        );
    }
    out!("  {:<34} {:>12} {:>14} {:>8}", "figure", "measured", "latency.toml", "ratio");
    let row = |name: &str, m: f64, a: f64| -> Result<()> {
        out!("  {name:<34} {m:>12.3} {a:>14.3} {:>7.2}x", m / a);
        Ok(())
    };
    row("batch overhead, ms", f.batch_overhead_ms, assumed.batch_overhead_ms)?;
    row("CPU per event per core, ms", f.per_event_cpu_ms, assumed.per_event_cpu_ms)?;
    if let Some(mb) = f.per_mb_cpu_ms {
        row("CPU per MB per core, ms", mb, assumed.per_mb_cpu_ms)?;
    } else {
        out!("  CPU per MB per core: not fitted (every batch had the same event size)");
    }
    let mean_bytes = batches.iter().map(|b| b.bytes_per_event).sum::<f64>() / batches.len().max(1) as f64;
    let measured_ms = f.per_event_cpu_ms + f.per_mb_cpu_ms.unwrap_or(0.0) * mean_bytes / 1e6;
    let assumed_ms = assumed.cpu_ms_per_event(mean_bytes);
    if measured_ms <= 0.0 || f.r_squared < 0.5 {
        out!("the per-event cost is not resolved above the batches' noise (R^2 {:.2}): at these loads the batch overhead decides the latency; give the job larger batches (higher rates, larger events)", f.r_squared);
        return Ok(());
    }
    out!(
        "at {:.0} B a core handles {:.0} events/s measured against {:.0} assumed: a policy sized on latency.toml asks for {:.2}x the executors this job needs.",
        mean_bytes,
        1_000.0 / measured_ms.max(1e-9),
        1_000.0 / assumed_ms,
        assumed_ms / measured_ms.max(1e-9)
    );
    Ok(())
}

const SEED_MODEL: &str = "seed-compat-ppo.onnx";
const SCALING_MODEL: &str = "scaling-ppo.onnx";

/// Where the learned contenders' models come from.
#[derive(Clone, Copy)]
enum Models<'a> {
    /// A directory (--models, or a training run's --out): a missing model is an error naming it.
    Dir(&'a Path),
    /// No --models: `./models` when it has the model, else the one built into sparkpilot.
    Default,
}

impl Models<'_> {
    fn path(&self, file: &str) -> PathBuf {
        match self {
            Models::Dir(dir) => dir.join(file),
            Models::Default => Path::new("models").join(file),
        }
    }

    /// Whether `file` can be had: on disk, or built in (scaling and meta).
    fn has(&self, file: &str) -> bool {
        self.path(file).exists() || (matches!(self, Models::Default) && file != SEED_MODEL)
    }

    /// A note for a learned contender left out of the default line-up.
    fn left_out(&self, name: &str, file: &str) {
        eprintln!("note: `{name}` left out: no {} (pass --models DIR)", self.path(file).display());
    }

    fn scaling(&self, arena: &Arena) -> Result<policy::ScalingPolicy> {
        let path = self.path(SCALING_MODEL);
        Ok(if matches!(self, Models::Default) && !path.exists() {
            policy::ScalingPolicy::from_bytes(
                "embedded:scaling-ppo.onnx",
                handlers::scaling_decision::EMBEDDED_MODEL,
                arena.feature_builder(),
            )?
        } else {
            policy::ScalingPolicy::load(&path, arena.feature_builder())?
        })
    }

    fn meta(&self) -> Result<policy::MetaPolicy> {
        let path = self.path(META_MODEL);
        Ok(if matches!(self, Models::Default) && !path.exists() {
            policy::MetaPolicy::from_bytes("embedded:meta-td3.onnx", handlers::meta_weights::EMBEDDED_MODEL)?
        } else {
            policy::MetaPolicy::load(&path)?
        })
    }
}

fn seed_contender(name: &str, models: Models) -> Result<SeedContender> {
    if name == "rl" {
        let model = policy::SeedCompatPolicy::load(&models.path(SEED_MODEL))?;
        return Ok(SeedContender::Policy(Box::new(sim::learned::RlSeed::new(model))));
    }
    tournament::seed_baseline(name).ok_or_else(|| {
        SimError::UnknownPolicy {
            name: name.into(),
            arena: ArenaKind::SeedCompat.name(),
            known: format!("{}, rl", tournament::SEED_BASELINES.join(", ")),
        }
        .into()
    })
}

fn realistic_contender(
    name: &str,
    models: Models,
    arena: &Arena,
    scenario: control::Scenario,
) -> Result<Contender> {
    if name == "rl-meta" {
        return meta_contender(models, arena, scenario);
    }
    if name == "rl" {
        return Ok(Contender::Policy(Box::new(sim::learned::RlScaling::new("rl", models.scaling(arena)?))));
    }
    if name == "rule" {
        return Ok(Contender::Policy(Box::new(sim::learned::RuleScaling::new(arena))));
    }
    tournament::realistic_baseline(name)?.ok_or_else(|| {
        SimError::UnknownPolicy {
            name: name.into(),
            arena: ArenaKind::Realistic.name(),
            known: format!(
                "{}, spark-dra:<property=value:...>, rule, rl, rl-meta",
                tournament::REALISTIC_BASELINES.join(", ")
            ),
        }
        .into()
    })
}

const META_MODEL: &str = "meta-td3.onnx";

fn meta_contender(models: Models, arena: &Arena, scenario: control::Scenario) -> Result<Contender> {
    let (meta, scaling) = (models.meta()?, models.scaling(arena)?);
    // As deployed: meta-weights on its schedule and the prewarmer beside scaling-decision.
    Ok(Contender::Policy(Box::new(sim::learned::Prewarmed::new(
        sim::learned::RlMeta::new(meta, scaling, arena.clone(), scenario),
        arena,
    ))))
}

/// Refuse a training run that would overwrite a model without --overwrite, or train the
/// meta-controller without the scaling policy it is trained over.
fn check_train_out(what: TrainWhat, out: &Path, overwrite: bool) -> Result<()> {
    let model = out.join(match what {
        TrainWhat::Scaling => SCALING_MODEL,
        TrainWhat::Meta => META_MODEL,
        TrainWhat::SeedCompat => SEED_MODEL,
    });
    if model.exists() && !overwrite {
        bail!(
            "{} exists (the committed models are in models/): pass --overwrite to replace it, or --out another directory",
            model.display()
        );
    }
    if matches!(what, TrainWhat::Meta) && !out.join(SCALING_MODEL).exists() {
        bail!(
            "the meta-controller is trained over the scaling policy in --out, and {} is missing: train scaling into {} first, or copy models/{SCALING_MODEL} there",
            out.join(SCALING_MODEL).display(),
            out.display()
        );
    }
    Ok(())
}

/// What `train scaling` learns from: `--trace`, `--holdout`, `--init`.
struct TrainSource {
    traces: Vec<String>,
    holdout: f64,
    init: Option<PathBuf>,
}

impl TrainSource {
    /// The flags as they were given, for the card's command line.
    fn flags(&self) -> String {
        let mut flags = String::new();
        for t in &self.traces {
            flags.push_str(&format!(" --trace {t}"));
        }
        if !self.traces.is_empty() && self.traces.iter().any(|t| !traces::is_builtin(t)) {
            flags.push_str(&format!(" --holdout {}", self.holdout));
        }
        if let Some(init) = &self.init {
            flags.push_str(&format!(" --init {}", init.display()));
        }
        flags
    }

    /// The training run, and the traces to evaluate on: each built-in named (new seeds) and the
    /// held-out tail of each file. With no --trace, the built-in training shapes, evaluated on
    /// every built-in and the real traces.
    fn resolve(&self) -> Result<(trainer::ScalingRun, Vec<EvalTrace>)> {
        use trainer::scaling_env::{TrainingTrace, MIN_RECORDED_S};
        if self.traces.is_empty() {
            let eval = evaluation_traces().into_iter().map(EvalTrace::named).collect();
            return Ok((trainer::ScalingRun { init: self.init.clone(), ..Default::default() }, eval));
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            bail!("--holdout {} must be between 0 and 1 (a share of each trace)", self.holdout);
        }
        let mut train = Vec::new();
        let mut eval = Vec::new();
        for name in &self.traces {
            if let Some(kind) = traces::BuiltinTrace::from_name(name) {
                train.push(TrainingTrace::Builtin(kind));
                eval.push(EvalTrace::named(name.clone()));
                continue;
            }
            let whole = traces::load_csv(Path::new(name)).with_context(|| format!("--trace {name}"))?;
            let tail = ((whole.len() as f64) * self.holdout).round() as usize;
            let head = whole.len() - tail;
            if head < MIN_RECORDED_S || tail < MIN_RECORDED_S / 2 {
                bail!(
                    "--trace {name}: {} s, of which --holdout {} keeps {tail} s for evaluation and leaves {head} s to train on; \
                     training needs at least {MIN_RECORDED_S} s and the evaluation {} s",
                    whole.len(),
                    self.holdout,
                    MIN_RECORDED_S / 2
                );
            }
            train.push(TrainingTrace::recorded(whole.window(0, head))?);
            eval.push(EvalTrace {
                label: format!("{name}, held-out last {tail} s"),
                tail: Some(whole.window(head, tail)),
                name: name.clone(),
            });
        }
        Ok((trainer::ScalingRun { traces: train, init: self.init.clone() }, eval))
    }
}

/// A trace the card evaluates on: by name (built-in or file), or the held-out tail of a file.
struct EvalTrace {
    name: String,
    label: String,
    tail: Option<traces::Trace>,
}

impl EvalTrace {
    fn named(name: String) -> Self {
        Self { label: name.clone(), name, tail: None }
    }

    fn make(&self, seed: u64) -> Result<traces::Trace, SimError> {
        match &self.tail {
            Some(t) => Ok(t.clone()),
            None => traces::resolve(&self.name, seed).map_err(SimError::from),
        }
    }
}

fn train_cmd(
    what: TrainWhat,
    steps: usize,
    seed: u64,
    out: &std::path::Path,
    overwrite: bool,
    eval_seeds: u64,
    source: &TrainSource,
) -> Result<()> {
    if !matches!(what, TrainWhat::Scaling) && (!source.traces.is_empty() || source.init.is_some()) {
        bail!("--trace and --init apply to `train scaling` only");
    }
    check_train_out(what, out, overwrite)?;
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps, return {msg} (eta {eta})",
        )
        .expect("valid template"),
    );
    let mut on_progress = |p: trainer::ppo::PpoProgress| {
        bar.set_length(p.total_steps as u64);
        bar.set_position(p.steps as u64);
        if p.mean_return.is_finite() {
            bar.set_message(format!("{:.2}", p.mean_return));
        }
    };
    let command = format!(
        "sparkpilot train {} --steps {steps} --seed {seed}{} --out {}{}",
        train_name(what),
        source.flags(),
        out.display(),
        if overwrite { " --overwrite" } else { "" }
    );
    match what {
        TrainWhat::SeedCompat => {
            let report = trainer::train_seed_compat(steps, seed, out, &mut on_progress)?;
            bar.finish_and_clear();
            let seeds: Vec<u64> = (0..eval_seeds.max(1)).collect();
            let mut contenders: Vec<SeedContender> = ["fixed", "dexter", "seer", "clairvoyant", "rl"]
                .iter()
                .map(|n| seed_contender(n, Models::Dir(out)))
                .collect::<Result<_>>()?;
            let result = tournament::run_seed_compat(&seeds, &mut contenders, &|| {});
            print!("{}", result.table());
            card::write_seed_compat(out, &command, &report, &result)?;
        }
        TrainWhat::Scaling => {
            let (run, eval) = source.resolve()?;
            let report = trainer::train_scaling(steps, seed, &run, out, &mut on_progress)?;
            bar.finish_and_clear();
            if report.collapsed() {
                eprintln!(
                    "warning: the executor head picks one action on {:.1} % of the last update's states: \
                     the policy has collapsed to a constant; train with another --seed",
                    100.0 * report.greedy_top_share[0]
                );
            }
            let arena = Arena::embedded();
            let seeds: Vec<u64> = (0..eval_seeds.max(1)).collect();
            let mut results = Vec::new();
            for trace in &eval {
                let mut contenders: Vec<Contender> = tournament::REALISTIC_BASELINES
                    .iter()
                    .chain(&["rule", "rl"])
                    .map(|n| realistic_contender(n, Models::Dir(out), &arena, control::Scenario::Balanced))
                    .collect::<Result<_>>()?;
                let make = |seed: u64| trace.make(seed);
                let result =
                    tournament::run_realistic(&arena, &trace.label, &make, &seeds, &mut contenders, &|| {})?;
                print!("{}", result.table());
                results.push(result);
            }
            let trained: Vec<String> = if source.traces.is_empty() {
                run.traces.iter().map(|t| t.name().to_string()).collect()
            } else {
                source.traces.clone()
            };
            let how = card::ScalingSource {
                trained: &trained,
                init: source.init.as_deref(),
                holdout: (!source.traces.is_empty()).then_some(source.holdout),
            };
            card::write_scaling(out, &command, &report, &how, &results)?;
        }
        TrainWhat::Meta => {
            let mut on_td3 = |p: trainer::td3::Td3Progress| {
                bar.set_length(p.total_steps as u64);
                bar.set_position(p.steps as u64);
                if p.mean_return.is_finite() {
                    bar.set_message(format!("{:.2}", p.mean_return));
                }
            };
            let report = trainer::train_meta(steps, seed, out, &mut on_td3)?;
            bar.finish_and_clear();
            let arena = Arena::embedded();
            let seeds: Vec<u64> = (0..eval_seeds.max(1)).collect();
            let mut rows = Vec::new();
            for trace in evaluation_traces() {
                for scenario in control::Scenario::ALL {
                    let mut contenders = vec![meta_contender(Models::Dir(out), &arena, scenario)?];
                    let make = |seed: u64| traces::resolve(&trace, seed).map_err(SimError::from);
                    let result =
                        tournament::run_realistic(&arena, &trace, &make, &seeds, &mut contenders, &|| {})?;
                    rows.push((trace.clone(), scenario, result.rows[0].clone()));
                }
            }
            card::write_meta(out, &command, &report, &rows)?;
            print!("{}", std::fs::read_to_string(out.join("meta-td3.md")).unwrap_or_default());
        }
    }
    out!("wrote {}", out.display());
    Ok(())
}

/// The traces a scaling model is evaluated on: every built-in, and the real-shaped traces of
/// `data/traces/real/` when run from the repository root (they are never used for training).
fn evaluation_traces() -> Vec<String> {
    let mut all: Vec<String> = traces::BUILTINS.iter().map(|(n, _)| n.to_string()).collect();
    for real in ["data/traces/real/aws-elb-requests.csv", "data/traces/real/nyc-taxi-week.csv"] {
        if std::path::Path::new(real).exists() {
            all.push(real.to_string());
        }
    }
    all
}

fn train_name(what: TrainWhat) -> &'static str {
    match what {
        TrainWhat::Scaling => "scaling",
        TrainWhat::Meta => "meta",
        TrainWhat::SeedCompat => "seed-compat",
    }
}

fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} episodes (eta {eta})",
        )
        .expect("valid template"),
    );
    bar
}

fn tournament_cmd(args: &TournamentArgs, scenario: control::Scenario) -> Result<()> {
    let TournamentArgs {
        arena: arena_kind,
        trace,
        seeds,
        first_seed,
        policies,
        out,
        models,
        arena_opts: opts,
        ..
    } = args;
    let (trace, seeds, first_seed) = (trace.as_str(), *seeds, *first_seed);
    let models = models.as_deref().map_or(Models::Default, Models::Dir);
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let seed_list: Vec<u64> = (first_seed..first_seed + seeds).collect();
    let result = match arena_kind {
        ArenaArg::SeedCompat => {
            let names: Vec<String> = if policies.is_empty() {
                let mut all: Vec<String> = tournament::SEED_BASELINES.iter().map(|s| s.to_string()).collect();
                if models.has(SEED_MODEL) {
                    all.push("rl".into());
                } else {
                    models.left_out("rl", SEED_MODEL);
                }
                all
            } else {
                policies.to_vec()
            };
            let mut contenders: Vec<SeedContender> =
                names.iter().map(|n| seed_contender(n, models)).collect::<Result<_>>()?;
            let bar = progress(seeds * contenders.len() as u64);
            let result = tournament::run_seed_compat(&seed_list, &mut contenders, &|| bar.inc(1));
            bar.finish_and_clear();
            result
        }
        ArenaArg::Realistic => {
            let arena = opts.arena()?;
            let names: Vec<String> = if policies.is_empty() {
                let mut all: Vec<String> =
                    tournament::REALISTIC_BASELINES.iter().map(|s| s.to_string()).collect();
                if models.has(SCALING_MODEL) {
                    all.push("rl".into());
                    if models.has(META_MODEL) {
                        all.push("rl-meta".into());
                    } else {
                        models.left_out("rl-meta", META_MODEL);
                    }
                } else {
                    models.left_out("rl", SCALING_MODEL);
                }
                all
            } else {
                policies.to_vec()
            };
            let mut contenders: Vec<Contender> = names
                .iter()
                .map(|n| realistic_contender(n, models, &arena, scenario))
                .collect::<Result<_>>()?;
            // Fail on a bad trace before the progress bar starts.
            traces::resolve(trace, first_seed)?;
            let make = |seed: u64| traces::resolve(trace, seed).map_err(SimError::from);
            let bar = progress(seeds * contenders.len() as u64);
            let result =
                tournament::run_realistic(&arena, trace, &make, &seed_list, &mut contenders, &|| bar.inc(1))?;
            bar.finish_and_clear();
            result
        }
    };
    print!("{}", result.table());
    result.write(out)?;
    out!("wrote {} and {}", out.join("results.csv").display(), out.join("timeline.svg").display());
    Ok(())
}

fn replay_cmd(args: &ReplayArgs) -> Result<()> {
    let scenario = parse_scenario(&args.scenario)?;
    if args.spark {
        return replay_spark_cmd(args, scenario);
    }
    let arena = args.arena_opts.arena()?;
    let trace = traces::resolve(&args.trace, args.seed)?;
    if let Some(p) = args.pace.filter(|p| !(p.is_finite() && *p > 0.0)) {
        bail!("--pace must be a positive number of trace seconds per second, not {p}");
    }
    let pace = args.pace.or(args.dashboard.as_ref().map(|_| DASHBOARD_PACE));
    let options = pipeline::replay::ReplayOptions { scenario, pace, ..Default::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let embedded = handlers::Embedded::default();
    let dashboard = match &args.dashboard {
        Some(addr) => {
            let source = dashboard::Source {
                title: format!("replay of {} (seed {})", trace.name(), args.seed),
                store: embedded.store.clone(),
                keys: handlers::Keys::new(&pipeline::replay::replay_settings(&arena, scenario).key_prefix),
                results: Some(args.out.clone()),
            };
            Some(runtime.block_on(start_dashboard(source, addr))?)
        }
        None => None,
    };
    let started = std::time::Instant::now();
    let (report, backends) = if args.live {
        let endpoints = pipeline::live::Endpoints::from_env()?;
        let report =
            runtime.block_on(pipeline::live::replay_live(&arena, &trace, args.seed, &options, &endpoints))?;
        (
            report,
            format!(
                "the live stack (Kafka {}, Redis, AWS at {})",
                endpoints.kafka_brokers,
                std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "the default endpoints".into())
            ),
        )
    } else {
        (
            runtime.block_on(pipeline::replay::replay_embedded_on(
                &arena, &trace, args.seed, &options, &embedded,
            ))?,
            "the embedded backends".to_string(),
        )
    };
    let elapsed = started.elapsed();
    print_replay(&report, &arena, &trace, args.seed, &backends, elapsed)?;
    let row = |policy: &str, scores: sim::Scores| tournament::Row {
        policy: policy.into(),
        mean: scores,
        cost_std: 0.0,
        sla_std: 0.0,
        per_seed: vec![scores],
    };
    let mut rows = vec![row("replay", report.scores)];
    let mut timelines = vec![("replay".to_string(), report.timeline)];
    if !args.no_compare {
        let result = learned_on(&arena, &trace, args.seed, scenario)?;
        rows.extend(result.rows);
        timelines.extend(result.timelines);
    }
    let board = tournament::Tournament {
        arena: ArenaKind::Realistic,
        trace: trace.name().to_string(),
        seeds: vec![args.seed],
        sla_ms: arena.config.sla_ms,
        rows,
        timelines,
    };
    print!("{}", board.table());
    board.write(&args.out)?;
    out!("wrote {} and {}", args.out.join("results.csv").display(), args.out.join("timeline.svg").display());
    if let Some(server) = dashboard {
        eprintln!("the replay is over; the dashboard stays at {} until Ctrl-C", server.url);
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        let _ = server.stop.send(());
        runtime.block_on(server.task)??;
    }
    Ok(())
}

/// The tournament's learned policies on the same trace and seed as a replay, from the very model
/// bytes the handlers embed, with the clairvoyant bound.
fn learned_on(
    arena: &Arena,
    trace: &traces::Trace,
    seed: u64,
    scenario: control::Scenario,
) -> Result<tournament::Tournament> {
    let scaling = || {
        policy::ScalingPolicy::from_bytes(
            "embedded:scaling-ppo.onnx",
            handlers::scaling_decision::EMBEDDED_MODEL,
            arena.feature_builder(),
        )
    };
    let meta =
        policy::MetaPolicy::from_bytes("embedded:meta-td3.onnx", handlers::meta_weights::EMBEDDED_MODEL)?;
    let mut contenders = vec![
        Contender::Policy(Box::new(sim::learned::RlScaling::new("rl", scaling()?))),
        Contender::Policy(Box::new(sim::learned::Prewarmed::new(
            sim::learned::RlMeta::new(meta, scaling()?, arena.clone(), scenario),
            arena,
        ))),
        Contender::Clairvoyant,
    ];
    let t = trace.clone();
    let make = move |_seed: u64| Ok::<_, SimError>(t.clone());
    Ok(tournament::run_realistic(arena, trace.name(), &make, &[seed], &mut contenders, &|| {})?)
}

/// What a replay did, for a person: messages, invocations and how closely the functions saw the arena.
fn print_replay(
    report: &pipeline::replay::ReplayReport,
    arena: &Arena,
    trace: &traces::Trace,
    seed: u64,
    backends: &str,
    elapsed: Duration,
) -> Result<()> {
    out!(
        "replay of {} (seed {}, {} s) through the five handlers on {backends}, in {:.1} s:",
        trace.name(),
        seed,
        trace.len(),
        elapsed.as_secs_f64()
    );
    out!(
        "  {} control messages from {} edges, {} raw-data summaries, {} shuffle blocks, {} decisions ({} executor changes), {} record errors",
        report.control_messages, arena.config.edge.gateways, report.raw_summaries, report.shuffle_blocks, report.decisions, report.executor_changes, report.record_errors
    );
    let calls: Vec<String> = report.invocations.iter().map(|(f, n)| format!("{f} {n}")).collect();
    out!("  invocations: {}", calls.join(", "));
    out!(
        "  what scaling-decision saw against the arena: observation drift {:.1e}, burst signal agreed on {:.1} % of decisions, temperature within {:.3}",
        report.observation_drift,
        report.burst_agreement * 100.0,
        report.temperature_drift
    );
    Ok(())
}

/// Trace seconds a second when a replay is watched on the dashboard.
const DASHBOARD_PACE: f64 = 60.0;

/// A dashboard serving in the background.
struct DashboardServer {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), dashboard::DashboardError>>,
}

/// Bind `addr` and serve `source` on the current runtime; the URL is printed for the user (and for
/// the tests, which look for it).
async fn start_dashboard(source: dashboard::Source, addr: &str) -> Result<DashboardServer> {
    let listener = dashboard::bind(addr).await?;
    let url = format!("http://{}/", listener.local_addr()?);
    eprintln!("dashboard: {url}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(dashboard::Dashboard::new(source).serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(DashboardServer { url, stop, task })
}

fn dashboard_cmd(listen: &str, results: Option<PathBuf>, no_store: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let settings = handlers::Settings::from_env()?;
        let (store, title): (std::sync::Arc<dyn handlers::ports::StateStore>, String) = if no_store {
            (std::sync::Arc::new(handlers::memory::MemoryStore::default()), "results".into())
        } else {
            let url = std::env::var("REDIS_URL").map_err(|_| {
                anyhow::anyhow!(
                    "REDIS_URL is not set: the Redis the functions write (or pass --no-store with --results)"
                )
            })?;
            let ca = std::env::var("SPARKPILOT_REDIS_CA_FILE")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from);
            let store = adapters::RedisStore::connect_with_ca(&url, ca.as_deref()).await?;
            (
                std::sync::Arc::new(store),
                format!("{} (prefix {})", adapters::redact_url(&url), settings.key_prefix),
            )
        };
        let source =
            dashboard::Source { title, store, keys: handlers::Keys::new(&settings.key_prefix), results };
        let server = start_dashboard(source, listen).await?;
        let _ = tokio::signal::ctrl_c().await;
        let _ = server.stop.send(());
        server.task.await??;
        Ok(())
    })
}

/// Run the bridge on the stack `KAFKA_BROKERS` names; `SPARKPILOT_KAFKA_CONFIG_<NAME>` variables are
/// librdkafka settings (dots as underscores), as for the functions.
fn bridge_cmd(mut config: bridge::BridgeConfig, schedules: bool) -> Result<()> {
    config.brokers = std::env::var("KAFKA_BROKERS")
        .map_err(|_| anyhow::anyhow!("KAFKA_BROKERS is not set (eval \"$(infra/services start)\")"))?;
    config.extra = std::env::vars()
        .filter_map(|(k, v)| {
            k.strip_prefix("SPARKPILOT_KAFKA_CONFIG_").map(|s| (s.to_ascii_lowercase().replace('_', "."), v))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let settings = handlers::Settings::from_env()?;
        let mut functions = std::collections::HashMap::new();
        for name in handlers::FUNCTIONS {
            let backends = adapters::connect(name).await.with_context(|| format!("backends of {name}"))?;
            functions.insert(name, handlers::build(name, &settings, &backends)?);
        }
        let routes = pipeline::live::standard_routes(&settings.topics, &functions)?;
        let schedules = if schedules { pipeline::live::standard_schedules(&functions) } else { Vec::new() };
        let topics: Vec<&str> = routes.iter().map(|r| r.topic.as_str()).chain([config.dead_letter_topic.as_str()]).collect();
        adapters::create_topics(&config.brokers, &topics).await?;
        eprintln!("bridge: routes {}; dead letters to {}; {} schedule(s); Ctrl-C stops", routes.iter().map(|r| format!("{} -> {}", r.topic, r.function.name())).collect::<Vec<_>>().join(", "), config.dead_letter_topic, schedules.len());
        let bridge = bridge::Bridge::new(config, routes, schedules)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
        });
        bridge.run(stopped).await?;
        let s = &bridge.stats;
        use bridge::BridgeStats as B;
        eprintln!("bridge: {} records in {} batches, {} invocations ({} failed), {} dead-lettered, {} scheduled runs", B::get(&s.records), B::get(&s.batches), B::get(&s.invocations), B::get(&s.failed_invocations), B::get(&s.dead_lettered), B::get(&s.schedule_runs));
        Ok(())
    })
}

/// The MQTT user and password: the name from `--mqtt-username`, the password only from
/// `SPARKPILOT_MQTT_PASSWORD` (never a flag, which `ps` would show).
fn mqtt_credentials(username: Option<String>) -> Result<Option<(String, String)>> {
    let password = std::env::var("SPARKPILOT_MQTT_PASSWORD").ok();
    Ok(match (username, password) {
        (Some(user), Some(password)) => Some((user, password)),
        (Some(_), None) => bail!("--mqtt-username is set but SPARKPILOT_MQTT_PASSWORD is not"),
        (None, _) => None,
    })
}

fn edge_cmd(config: edge::EdgeConfig, run_for: Option<Duration>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let brokers = std::env::var("KAFKA_BROKERS").map_err(|_| anyhow::anyhow!("KAFKA_BROKERS is not set: the brokers the agent publishes to"))?;
        let env = |k: &str| std::env::var(k).ok();
        let kind: adapters::KafkaAuthKind = env("SPARKPILOT_KAFKA_AUTH").unwrap_or_default().parse()?;
        let conf = if kind == adapters::KafkaAuthKind::MskIam || env("SPARKPILOT_KAFKA_SECRET_ARN").is_some() { Some(adapters::sdk_config().await) } else { None };
        let auth = adapters::kafka_auth(conf.as_ref(), &env).await?;
        let mut settings = config.producer_settings();
        settings.extend(
            std::env::vars().filter_map(|(k, v)| k.strip_prefix("SPARKPILOT_KAFKA_CONFIG_").map(|s| (s.to_ascii_lowercase().replace('_', "."), v))),
        );
        let kafka = std::sync::Arc::new(adapters::BufferedKafkaProducer::with_auth(&brokers, &auth, &settings)?);
        let stats = std::sync::Arc::new(edge::EdgeStats::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            match run_for {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            let _ = stop.send(true);
        });
        eprintln!("edge {}: {} {} -> {} (reports) and {} (messages); Ctrl-C stops", config.gateway_id, config.mqtt_url, config.topics.join(","), config.metadata_topic, if config.forward_raw { config.raw_topic.as_str() } else { "nowhere" });
        let result = edge::run(&config, kafka.clone(), stats.clone(), stopped).await;
        let _ = tokio::task::spawn_blocking(move || kafka.flush(Duration::from_secs(5))).await;
        let g = edge::EdgeStats::get;
        eprintln!(
            "edge {}: {} messages ({} bytes), {} forwarded, {} reports, dropped {} messages and {} reports (buffer full), {} refused by Kafka, {} MQTT reconnects",
            config.gateway_id,
            g(&stats.messages),
            g(&stats.bytes),
            g(&stats.forwarded),
            g(&stats.reports),
            g(&stats.dropped_raw),
            g(&stats.dropped_reports),
            g(&stats.failed),
            g(&stats.mqtt_reconnects)
        );
        Ok(result?)
    })
}

fn parse_scenario(name: &str) -> Result<control::Scenario> {
    control::Scenario::from_name(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown scenario `{}` (known: {})",
            name,
            control::Scenario::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
        )
    })
}

fn invoke_cmd(function: &str, event: &Path, dry_run: bool) -> Result<()> {
    let text =
        std::fs::read_to_string(event).with_context(|| format!("reading event {}", event.display()))?;
    let payload: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("event {} is not JSON", event.display()))?;
    let mut settings = handlers::Settings::from_env()?;
    settings.dry_run |= dry_run;
    let embedded = handlers::Embedded::default();
    let handler = handlers::build(function, &settings, &embedded.backends())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(async { handler.handle(handlers::decode_lambda(payload)?).await })?;
    let published: Vec<serde_json::Value> = embedded
        .publisher
        .records
        .lock()
        .map_err(|_| anyhow::anyhow!("publisher lock poisoned"))?
        .iter()
        .map(|(topic, key, payload)| {
            let value = serde_json::from_slice(payload)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into()));
            serde_json::json!({"topic": topic, "key": key, "value": value})
        })
        .collect();
    let emr = runtime
        .block_on(async { handlers::ports::EmrControl::get_application(embedded.emr.as_ref()).await })?;
    let out = serde_json::json!({"function": function, "result": result, "published": published, "emr_application": emr});
    out!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted it has.
        Err(err)
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            // The whole chain on one line, without a backtrace: the message names what was wrong.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `traces`: the built-in traces, or one of them (or a CSV file) as CSV.
fn traces_cmd(show: Option<&str>, seed: u64) -> Result<()> {
    let Some(name) = show else {
        out!("built-in traces (any CSV file `time_s,events_per_s[,bytes_per_event]` works too):");
        for (name, description) in traces::BUILTINS {
            out!("  {name:<12} {description}");
        }
        return Ok(());
    };
    let trace = traces::resolve(name, seed)?;
    out!("time_s,events_per_s,bytes_per_event");
    for (t, p) in trace.points().iter().enumerate() {
        out!("{t},{:.1},{:.0}", p.events_per_s, p.bytes_per_event);
    }
    Ok(())
}

/// `calibrate`: measure the codecs on this machine and write the table to `out`.
fn calibrate_codecs(out: &Path, budget_ms: u64) -> Result<()> {
    let payload = calibrate::iot_payload(calibrate::CALIBRATION_SEED, calibrate::CALIBRATION_BYTES);
    let table = calibrate::measure(&payload, calibrate::CALIBRATION_BLOCK, Duration::from_millis(budget_ms))?;
    std::fs::write(out, calibrate::to_toml(&table)).with_context(|| format!("writing {}", out.display()))?;
    out!("{}", calibrate::to_toml(&table));
    out!("wrote {}", out.display());
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tournament(args) => tournament_cmd(&args, parse_scenario(&args.scenario)?),
        Command::Replay(args) => replay_cmd(&args),
        Command::Bridge {
            batch_size,
            batch_window_ms,
            max_attempts,
            dead_letter_topic,
            group,
            no_schedules,
        } => {
            let config = bridge::BridgeConfig {
                group_id: group,
                batch_size,
                batch_window: Duration::from_millis(batch_window_ms),
                max_attempts,
                dead_letter_topic,
                ..Default::default()
            };
            bridge_cmd(config, !no_schedules)
        }
        Command::Dashboard { listen, results, no_store } => dashboard_cmd(&listen, results, no_store),
        Command::Edge {
            mqtt,
            topics,
            gateway_id,
            mqtt_username,
            metadata_topic,
            raw_topic,
            no_forward,
            buffer,
            seconds,
        } => {
            let config = edge::EdgeConfig {
                mqtt_url: mqtt,
                mqtt_credentials: mqtt_credentials(mqtt_username)?,
                topics,
                gateway_id,
                metadata_topic,
                raw_topic,
                forward_raw: !no_forward,
                buffer_messages: buffer,
                ..edge::EdgeConfig::default()
            };
            edge_cmd(config, seconds.map(Duration::from_secs))
        }
        Command::Train { what, steps, seed, out, overwrite, eval_seeds, traces, holdout, init } => {
            let source = TrainSource { traces, holdout, init };
            train_cmd(what, steps, seed, &out, overwrite, eval_seeds, &source)
        }
        Command::Invoke { function, event, dry_run } => invoke_cmd(&function, &event, dry_run),
        Command::Traces { show, seed } => traces_cmd(show.as_deref(), seed),
        Command::Calibrate { job: Some(samples), .. } => calibrate_job(&samples),
        Command::Calibrate { out, budget_ms, job: None } => calibrate_codecs(&out, budget_ms),
    }
}
