//! Configuration of the realistic arena. Defaults are sourced or stated as assumptions next to them.

use crate::SimError;
use control::{BurstDetectorConfig, ClusterConfig};
use rand::Rng;

/// How long a newly requested worker takes to become ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColdStart {
    /// Always this many seconds.
    Fixed(f64),
    /// Uniform between the bounds, seconds.
    Uniform(f64, f64),
}

impl ColdStart {
    /// The thesis's figure: executors take 45–60 s to boot (thesis, edge-cloud section and README).
    pub const THESIS: ColdStart = ColdStart::Uniform(45.0, 60.0);
    /// Third-party reports for EMR Serverless workers: 15–30 s (AWS publishes no figure).
    pub const REPORTED: ColdStart = ColdStart::Uniform(15.0, 30.0);

    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            ColdStart::Fixed(s) => s,
            ColdStart::Uniform(lo, hi) if hi > lo => rng.random_range(lo..hi),
            ColdStart::Uniform(lo, _) => lo,
        }
    }

    /// The longest a start can take, seconds.
    pub fn upper_s(&self) -> f64 {
        match *self {
            ColdStart::Fixed(s) => s,
            ColdStart::Uniform(lo, hi) => lo.max(hi),
        }
    }

    /// Parse `fixed:S`, `uniform:LO:HI`, `thesis` or `reported`.
    pub fn parse(text: &str) -> Result<Self, SimError> {
        let bad = || {
            SimError::Config(format!(
                "cold start `{text}`: expected thesis, reported, fixed:S or uniform:LO:HI"
            ))
        };
        let parts: Vec<&str> = text.split(':').collect();
        let num = |s: &str| -> Result<f64, SimError> {
            let v: f64 = s.parse().map_err(|_| bad())?;
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        match parts.as_slice() {
            ["thesis"] => Ok(Self::THESIS),
            ["reported"] => Ok(Self::REPORTED),
            ["fixed", s] => Ok(Self::Fixed(num(s)?)),
            ["uniform", lo, hi] => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if hi < lo {
                    return Err(bad());
                }
                Ok(Self::Uniform(lo, hi))
            }
            _ => Err(bad()),
        }
    }

    pub fn mean(&self) -> f64 {
        match *self {
            ColdStart::Fixed(s) => s,
            ColdStart::Uniform(lo, hi) => (lo + hi) / 2.0,
        }
    }
}

/// How a decision reaches the simulated job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actuation {
    /// As a deployment applies it to a running streaming job (`control::actuation`): executors and
    /// the shuffle tier at once, memory per executor, the codec and pre-initialised workers held at
    /// the run's opening values, since only a new job run or a stopped application takes them.
    RunningJob,
    /// Every setting at once, as if the job could be reconfigured for free at each decision. What
    /// the arena did before the in-job agent existed; kept for comparison (`--actuation instant`).
    Instant,
}

impl Actuation {
    pub fn parse(text: &str) -> Result<Self, SimError> {
        match text {
            "running-job" => Ok(Self::RunningJob),
            "instant" => Ok(Self::Instant),
            _ => Err(SimError::Config(format!("actuation `{text}`: expected running-job or instant"))),
        }
    }
}

/// The edge gateways as the arena simulates them, and how the cluster aggregates them.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeConfig {
    /// Gateways the load is split over. An assumption: the thesis does not size its fleet; 32 keeps
    /// each gateway's share large enough that a quorum means something, and a simulated second cheap.
    pub gateways: usize,
    /// How far ahead the gateways see the load, seconds (thesis 5.2: 60 s).
    pub lead_s: usize,
    /// Relative noise on the gateways' view of the coming load.
    pub noise: f64,
    /// Spurious burst signals per hour, each lasting `false_alarm_s`.
    pub false_alarms_per_hour: f64,
    pub false_alarm_s: usize,
    /// Each gateway's own detector (the thesis's crossover).
    pub detector: BurstDetectorConfig,
    /// The cluster side: burst-signal's aggregation of the gateways' records.
    pub cluster: ClusterConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            gateways: 32,
            lead_s: 60,
            noise: 0.05,
            false_alarms_per_hour: 2.0,
            false_alarm_s: 10,
            detector: BurstDetectorConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// Everything the realistic arena needs besides the trace, prices and latency model.
#[derive(Debug, Clone, PartialEq)]
pub struct ArenaConfig {
    /// vCPUs of one executor (EMR Serverless worker sizes: 1, 2, 4, 8, 16).
    pub vcpu_per_executor: f64,
    /// Maximum capacity of the application, in executors.
    pub max_executors: u32,
    /// Seconds between decisions (one micro-batch).
    pub decision_interval_s: usize,
    /// An event slower than this violates the SLA (thesis tournament: 1,000 ms).
    pub sla_ms: f64,
    pub cold_start: ColdStart,
    /// Which settings of a decision reach the running job.
    pub actuation: Actuation,
    /// Nodes in the Redis hot tier and their type (priced from the price file).
    pub redis_nodes: f64,
    pub redis_node_type: String,
    /// Once used, the hot tier stays provisioned (and billed) this long: ElastiCache nodes take minutes
    /// to create, so they cannot follow every micro-batch.
    pub redis_hold_s: f64,
    /// Local disk per worker when shuffling to NVMe, GB (the first 20 GB are free).
    pub nvme_disk_gb: f64,
    /// Shuffle block size, KB: sets S3 request counts and S3 bandwidth.
    pub block_kb: f64,
    /// S3 key prefixes the shuffle spreads over (each gets its own request-rate limit).
    pub s3_prefixes: f64,
    /// How long shuffle data stays in S3 before deletion, seconds (storage billing).
    pub s3_retention_s: f64,
    pub edge: EdgeConfig,
    /// Data temperature: AR(1) around `temperature_mean`, reads per shuffle byte = 1 + 2 T.
    pub temperature_mean: f64,
    pub temperature_sd: f64,
    /// Reward weights observed by the policy (alpha: cost, beta: latency).
    pub alpha: f64,
    pub beta: f64,
    /// The learned policies' backlog safety net, as the scaling-decision function runs it
    /// (`control::GuardrailConfig::backlog_drain_s`; 0 turns it off).
    pub backlog_drain_s: f64,
    /// The learned policies' scale-down cooldown after a scale-up, seconds, as the scaling-decision
    /// function runs it (`control::GuardrailConfig::cooldown_s`, `SPARKPILOT_COOLDOWN_S`).
    pub cooldown_s: f64,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        Self {
            vcpu_per_executor: 4.0,
            max_executors: 64,
            decision_interval_s: 5,
            sla_ms: 1_000.0,
            cold_start: ColdStart::THESIS,
            actuation: Actuation::RunningJob,
            redis_nodes: 2.0,
            redis_node_type: "cache.r7g.large".into(),
            redis_hold_s: 600.0,
            nvme_disk_gb: 100.0,
            block_kb: 64.0,
            s3_prefixes: 1.0,
            s3_retention_s: 3_600.0,
            edge: EdgeConfig::default(),
            temperature_mean: 0.5,
            temperature_sd: 0.2,
            alpha: 0.33,
            beta: 0.33,
            backlog_drain_s: control::GuardrailConfig::default().backlog_drain_s,
            cooldown_s: control::GuardrailConfig::default().cooldown_s,
        }
    }
}

impl ArenaConfig {
    /// Seconds a request made now must cover: until workers asked for at the next decision are sure
    /// to be ready (the cold start's upper bound plus one decision interval).
    pub fn request_horizon_s(&self) -> usize {
        self.cold_start.upper_s().ceil() as usize + self.decision_interval_s
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let positive = [
            ("vcpu_per_executor", self.vcpu_per_executor),
            ("sla_ms", self.sla_ms),
            ("redis_nodes", self.redis_nodes),
            ("block_kb", self.block_kb),
            ("s3_prefixes", self.s3_prefixes),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(SimError::Config(format!("{name} must be positive, found {v}")));
            }
        }
        if self.max_executors == 0 {
            return Err(SimError::Config("max_executors must be at least 1".into()));
        }
        if self.decision_interval_s == 0 {
            return Err(SimError::Config("decision_interval_s must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.temperature_mean) {
            return Err(SimError::Config(format!("temperature_mean {} outside 0..1", self.temperature_mean)));
        }
        self.edge.detector.validate()?;
        self.edge.cluster.validate()?;
        if self.edge.gateways == 0 {
            return Err(SimError::Config("edge.gateways must be at least 1".into()));
        }
        if !(self.backlog_drain_s.is_finite() && self.backlog_drain_s >= 0.0) {
            return Err(SimError::Config(format!(
                "backlog_drain_s {} must be a non-negative number of seconds (0 turns the net off)",
                self.backlog_drain_s
            )));
        }
        if !(self.cooldown_s.is_finite() && self.cooldown_s >= 0.0) {
            return Err(SimError::Config(format!(
                "cooldown_s {} must be a non-negative number of seconds (0 turns the cooldown off)",
                self.cooldown_s
            )));
        }
        Ok(())
    }
}
