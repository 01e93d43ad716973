//! `sparkpilot`: a thin command line over the sparkpilot libraries.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use latency_model::{calibrate, LatencyModel};
use sim::tournament::{self, ArenaKind, Contender, SeedContender};
use sim::{Arena, ArenaConfig, ColdStart, SimError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "sparkpilot", version, about = "Autoscaling for serverless Spark under bursty IoT load")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArenaArg {
    Realistic,
    SeedCompat,
}

#[derive(Subcommand)]
enum Command {
    /// Run every policy on the same trace and seeds; print the table, write results.csv and timeline.svg.
    Tournament {
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
        #[arg(long, value_delimiter = ',')]
        policies: Vec<String>,
        /// Output directory for results.csv and timeline.svg.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        #[command(flatten)]
        arena_opts: Box<ArenaOpts>,
    },
    /// List the built-in traces, or print one as CSV.
    Traces {
        /// Print this trace (built-in or file) as CSV instead of listing.
        #[arg(long)]
        show: Option<String>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Measure compression ratio and speed of none/LZ4/ZSTD on IoT records and write the table.
    Calibrate {
        /// Where to write the table (the embedded one is shared/latency-model/compression.toml).
        #[arg(long, default_value = "shared/latency-model/compression.toml")]
        out: PathBuf,
        /// Milliseconds spent per speed measurement.
        #[arg(long, default_value_t = 500)]
        budget_ms: u64,
    },
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
            sla_ms: self.sla_ms,
            decision_interval_s: self.decision_interval,
            max_executors: self.max_executors,
            ..ArenaConfig::default()
        };
        Ok(Arena::new(config, prices, model)?)
    }
}

fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} episodes (eta {eta})")
            .expect("valid template"),
    );
    bar
}

fn tournament_cmd(
    arena_kind: ArenaArg,
    trace: &str,
    seeds: u64,
    first_seed: u64,
    policies: &[String],
    out: &std::path::Path,
    opts: &ArenaOpts,
) -> Result<()> {
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let seed_list: Vec<u64> = (first_seed..first_seed + seeds).collect();
    let result = match arena_kind {
        ArenaArg::SeedCompat => {
            let names: Vec<String> = if policies.is_empty() {
                tournament::SEED_BASELINES.iter().map(|s| s.to_string()).collect()
            } else {
                policies.to_vec()
            };
            let mut contenders: Vec<SeedContender> = names
                .iter()
                .map(|n| {
                    tournament::seed_baseline(n).ok_or_else(|| SimError::UnknownPolicy {
                        name: n.clone(),
                        arena: ArenaKind::SeedCompat.name(),
                        known: tournament::SEED_BASELINES.join(", "),
                    })
                })
                .collect::<Result<_, _>>()?;
            let bar = progress(seeds * contenders.len() as u64);
            let result = tournament::run_seed_compat(&seed_list, &mut contenders, &|| bar.inc(1));
            bar.finish_and_clear();
            result
        }
        ArenaArg::Realistic => {
            let arena = opts.arena()?;
            let names: Vec<String> = if policies.is_empty() {
                tournament::REALISTIC_BASELINES.iter().map(|s| s.to_string()).collect()
            } else {
                policies.to_vec()
            };
            let mut contenders: Vec<Contender> = names
                .iter()
                .map(|n| {
                    tournament::realistic_baseline(n).ok_or_else(|| SimError::UnknownPolicy {
                        name: n.clone(),
                        arena: ArenaKind::Realistic.name(),
                        known: tournament::REALISTIC_BASELINES.join(", "),
                    })
                })
                .collect::<Result<_, _>>()?;
            // Fail on a bad trace before the progress bar starts.
            traces::resolve(trace, first_seed)?;
            let make = |seed: u64| traces::resolve(trace, seed).map_err(SimError::from);
            let bar = progress(seeds * contenders.len() as u64);
            let result = tournament::run_realistic(&arena, trace, &make, &seed_list, &mut contenders, &|| bar.inc(1))?;
            bar.finish_and_clear();
            result
        }
    };
    print!("{}", result.table());
    result.write(out)?;
    println!("wrote {} and {}", out.join("results.csv").display(), out.join("timeline.svg").display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain on one line, without a backtrace: the message names what was wrong.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tournament { arena, trace, seeds, first_seed, policies, out, arena_opts } => {
            tournament_cmd(arena, &trace, seeds, first_seed, &policies, &out, &arena_opts)
        }
        Command::Traces { show: None, .. } => {
            println!("built-in traces (any CSV file `time_s,events_per_s[,bytes_per_event]` works too):");
            for (name, description) in traces::BUILTINS {
                println!("  {name:<12} {description}");
            }
            Ok(())
        }
        Command::Traces { show: Some(name), seed } => {
            let trace = traces::resolve(&name, seed)?;
            println!("time_s,events_per_s,bytes_per_event");
            for (t, p) in trace.points().iter().enumerate() {
                println!("{t},{:.1},{:.0}", p.events_per_s, p.bytes_per_event);
            }
            Ok(())
        }
        Command::Calibrate { out, budget_ms } => {
            let payload = calibrate::iot_payload(calibrate::CALIBRATION_SEED, calibrate::CALIBRATION_BYTES);
            let table = calibrate::measure(&payload, calibrate::CALIBRATION_BLOCK, Duration::from_millis(budget_ms))?;
            std::fs::write(&out, calibrate::to_toml(&table)).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", calibrate::to_toml(&table));
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}
