//! Every policy on the same trace and seeds: one table, `results.csv`, and an SVG timeline.

use crate::baselines::{DynamicAllocation, Fixed, HpaScaler, Seer, SparkDra, Tiered};
use crate::clairvoyant::{clairvoyant_bound, ClairvoyantSchedule};
use crate::metrics::{RunningStd, Scores};
use crate::realistic::{Arena, Policy, Timeline};
use crate::seed_compat::{self, SeedDexter, SeedFixed, SeedPolicy, SeedSeer};
use crate::SimError;
use std::fmt::Write as _;
use std::path::Path;
use traces::Trace;

/// Which arena a tournament runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaKind {
    Realistic,
    SeedCompat,
}

impl ArenaKind {
    pub fn name(self) -> &'static str {
        match self {
            ArenaKind::Realistic => "realistic",
            ArenaKind::SeedCompat => "seed-compat",
        }
    }
}

/// The realistic baselines by name, then the two clairvoyant references (the lower bound and the
/// achievable schedule).
pub const REALISTIC_BASELINES: [&str; 10] = [
    "fixed",
    "dexter",
    "seer",
    "keda",
    "spark-dra",
    "emr-performance-optimized",
    "emr-balanced",
    "emr-cost-optimized",
    "clairvoyant",
    "clairvoyant-schedule",
];
/// The seed-compat baselines by name.
pub const SEED_BASELINES: [&str; 4] = ["fixed", "dexter", "seer", "clairvoyant"];

/// A contender in the realistic arena.
pub enum Contender {
    Policy(Box<dyn Policy>),
    /// The lower bound (no start-up delay, no minimum).
    Clairvoyant,
    /// The achievable clairvoyant schedule, built from each episode's trace.
    ClairvoyantSchedule,
}

impl Contender {
    pub fn name(&self) -> &str {
        match self {
            Contender::Policy(p) => p.name(),
            Contender::Clairvoyant => "clairvoyant",
            Contender::ClairvoyantSchedule => "clairvoyant-schedule",
        }
    }
}

/// A contender in the seed-compat arena.
pub enum SeedContender {
    Policy(Box<dyn SeedPolicy>),
    Clairvoyant,
}

impl SeedContender {
    pub fn name(&self) -> &str {
        match self {
            SeedContender::Policy(p) => p.name(),
            SeedContender::Clairvoyant => "clairvoyant",
        }
    }
}

/// A realistic baseline by name: `Ok(None)` for names this crate does not know (learned policies live
/// in the policy crate); an error for `spark-dra:<settings>` whose settings do not parse (see
/// [`DynamicAllocation::parse`]). `emr-<profile>` is EMR Serverless's scaling profile of that name
/// ([`DynamicAllocation::emr_profile`]).
pub fn realistic_baseline(name: &str) -> Result<Option<Contender>, SimError> {
    if let Some(spec) = name.strip_prefix("spark-dra:") {
        let settings =
            DynamicAllocation::parse(spec).map_err(|e| SimError::Config(format!("policy `{name}`: {e}")))?;
        return Ok(Some(Contender::Policy(Box::new(SparkDra::new(name, settings)))));
    }
    if let Some(dra) = name.strip_prefix("emr-").and_then(SparkDra::emr_profile) {
        return Ok(Some(Contender::Policy(Box::new(dra))));
    }
    Ok(Some(match name {
        "fixed" => Contender::Policy(Box::<Fixed>::default()),
        "dexter" => Contender::Policy(Box::new(HpaScaler::dexter())),
        "seer" => Contender::Policy(Box::<Seer>::default()),
        "keda" => Contender::Policy(Box::new(HpaScaler::keda())),
        "spark-dra" => Contender::Policy(Box::<SparkDra>::default()),
        // Opt-in variants: the baseline's executors, shuffle placed by the shuffle-router's TierRouter.
        "seer+tiers" => Contender::Policy(Box::new(Tiered::new(Seer::default()))),
        "spark-dra+tiers" => Contender::Policy(Box::new(Tiered::new(SparkDra::default()))),
        "clairvoyant" => Contender::Clairvoyant,
        "clairvoyant-schedule" => Contender::ClairvoyantSchedule,
        _ => return Ok(None),
    }))
}

/// A seed-compat baseline by name.
pub fn seed_baseline(name: &str) -> Option<SeedContender> {
    Some(match name {
        "fixed" => SeedContender::Policy(Box::new(SeedFixed)),
        "dexter" => SeedContender::Policy(Box::<SeedDexter>::default()),
        "seer" => SeedContender::Policy(Box::new(SeedSeer)),
        "clairvoyant" => SeedContender::Clairvoyant,
        _ => return None,
    })
}

/// One policy's row: means over seeds and the spread of the headline figures.
#[derive(Debug, Clone)]
pub struct Row {
    pub policy: String,
    pub mean: Scores,
    pub cost_std: f64,
    pub sla_std: f64,
    pub per_seed: Vec<Scores>,
}

/// A finished tournament.
#[derive(Debug, Clone)]
pub struct Tournament {
    pub arena: ArenaKind,
    pub trace: String,
    pub seeds: Vec<u64>,
    pub sla_ms: f64,
    pub rows: Vec<Row>,
    /// Timelines of the first seed, one per policy, for the plot.
    pub timelines: Vec<(String, Timeline)>,
}

fn row(policy: &str, per_seed: Vec<Scores>) -> Row {
    let (mut cost, mut sla) = (RunningStd::default(), RunningStd::default());
    for s in &per_seed {
        cost.add(s.cost_usd);
        sla.add(s.sla_violation_pct);
    }
    Row {
        policy: policy.to_string(),
        mean: Scores::mean(&per_seed),
        cost_std: cost.std(),
        sla_std: sla.std(),
        per_seed,
    }
}

/// Run realistic contenders on the trace `make_trace(seed)` for every seed. `progress` is called once
/// per finished episode.
pub fn run_realistic(
    arena: &Arena,
    trace_name: &str,
    make_trace: &dyn Fn(u64) -> Result<Trace, SimError>,
    seeds: &[u64],
    contenders: &mut [Contender],
    progress: &dyn Fn(),
) -> Result<Tournament, SimError> {
    let mut per: Vec<Vec<Scores>> = vec![Vec::with_capacity(seeds.len()); contenders.len()];
    let mut timelines: Vec<(String, Timeline)> = Vec::new();
    for (si, &seed) in seeds.iter().enumerate() {
        let trace = make_trace(seed)?;
        for (ci, contender) in contenders.iter_mut().enumerate() {
            let mut tl = Timeline::default();
            let record = if si == 0 { Some(&mut tl) } else { None };
            let scores = match contender {
                Contender::Policy(p) => arena.run(&trace, seed, p.as_mut(), record)?,
                Contender::Clairvoyant => clairvoyant_bound(arena, &trace, seed, record)?,
                Contender::ClairvoyantSchedule => {
                    arena.run(&trace, seed, &mut ClairvoyantSchedule::new(arena, &trace, seed)?, record)?
                }
            };
            if si == 0 {
                timelines.push((contender.name().to_string(), tl));
            }
            per[ci].push(scores);
            progress();
        }
    }
    let rows = contenders.iter().zip(per).map(|(c, s)| row(c.name(), s)).collect();
    Ok(Tournament {
        arena: ArenaKind::Realistic,
        trace: trace_name.to_string(),
        seeds: seeds.to_vec(),
        sla_ms: arena.config.sla_ms,
        rows,
        timelines,
    })
}

/// Run seed-compat contenders over `seeds` (500 steps each, the seed's tournament).
pub fn run_seed_compat(seeds: &[u64], contenders: &mut [SeedContender], progress: &dyn Fn()) -> Tournament {
    let mut rows = Vec::new();
    let mut timelines = Vec::new();
    for contender in contenders.iter_mut() {
        let mut per = Vec::with_capacity(seeds.len());
        for (si, &seed) in seeds.iter().enumerate() {
            let mut tl = Timeline::default();
            let record = if si == 0 { Some(&mut tl) } else { None };
            let scores = match contender {
                SeedContender::Policy(p) => seed_compat::run_episode(seed, Some(p.as_mut()), record),
                SeedContender::Clairvoyant => seed_compat::run_episode(seed, None, record),
            };
            if si == 0 {
                timelines.push((contender.name().to_string(), tl));
            }
            per.push(scores);
            progress();
        }
        rows.push(row(contender.name(), per));
    }
    Tournament {
        arena: ArenaKind::SeedCompat,
        trace: "seed workload (section 3 of seed-env.md)".into(),
        seeds: seeds.to_vec(),
        sla_ms: seed_compat::SLA_MS,
        rows,
        timelines,
    }
}

impl Tournament {
    pub fn row(&self, policy: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.policy == policy)
    }

    /// The table printed on the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let sla_unit = if self.arena == ArenaKind::Realistic { "events" } else { "steps" };
        let _ = writeln!(
            out,
            "{} arena, trace {}, {} seed(s), SLA {:.0} ms (means over seeds; +- is the std-dev across seeds)",
            self.arena.name(),
            self.trace,
            self.seeds.len(),
            self.sla_ms
        );
        let _ = writeln!(
            out,
            "{:<12} {:>18} {:>10} {:>10} {:>16} {:>9} {:>9} {:>8} {:>10}",
            "policy",
            "cost $",
            "P95 ms",
            "P99 ms",
            format!("SLA viol % {sla_unit}"),
            "% steps",
            "stability",
            "CPU %",
            if self.arena == ArenaKind::Realistic { "MB/s" } else { "thr (seed)" }
        );
        for r in &self.rows {
            let m = &r.mean;
            let _ = writeln!(
                out,
                "{:<12} {:>18} {:>10.1} {:>10.1} {:>16} {:>9.2} {:>9.2} {:>8.1} {:>10.2}",
                r.policy,
                format!("{:.3} +- {:.3}", m.cost_usd, r.cost_std),
                m.p95_ms,
                m.p99_ms,
                format!("{:.2} +- {:.2}", m.sla_violation_pct, r.sla_std),
                m.sla_step_violation_pct,
                m.stability,
                m.cpu_util_pct,
                m.throughput_mb_s
            );
        }
        out
    }

    /// `results.csv`: one row per policy.
    pub fn csv(&self) -> String {
        let mut out = String::from(Scores::CSV_HEADER);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.mean.csv_row(&r.policy));
            out.push('\n');
        }
        out
    }

    /// Write `results.csv` and `timeline.svg` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<(), SimError> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|error| SimError::Write { path, error })
        };
        std::fs::create_dir_all(dir).map_err(|error| SimError::Write { path: dir.to_path_buf(), error })?;
        write("results.csv", &self.csv())?;
        let title = format!(
            "{} arena, trace {}, seed {}",
            self.arena.name(),
            self.trace,
            self.seeds.first().copied().unwrap_or(0)
        );
        let axis = match self.arena {
            ArenaKind::Realistic => crate::svg::TimeAxis::SECONDS_AS_MINUTES,
            ArenaKind::SeedCompat => crate::svg::TimeAxis::STEPS,
        };
        let svg = crate::svg::render(&title, &self.timelines, self.sla_ms, axis).map_err(SimError::Plot)?;
        write("timeline.svg", &svg)?;
        Ok(())
    }
}
