//! `sparkpilot replay`: a trace driven through the five real handlers, with the simulator standing in
//! for EMR Serverless and the Spark job.
//!
//! Every decision interval of the arena's [`Episode`]:
//!
//! 1. the [`EdgeGateways`] report the seconds since the last interval: `iot-metadata` control
//!    messages go to **burst-signal** as one Kafka batch;
//! 2. on their schedules, **meta-weights** (every 5 minutes, and once at the start with the
//!    scenario's context) and the **prewarmer** (every minute) run;
//! 3. the simulated Spark job writes its shuffle blocks through **shuffle-router** (their access
//!    statistics carry the arena's data temperature) and publishes its micro-batch progress on
//!    `spark-metrics`;
//! 4. **scaling-decision** gets that record together with whatever burst-signal published on
//!    `scaling-requests`, decides, and calls the EMR Serverless port — here the [`SimulatedEmr`],
//!    which the arena reads back: the maximum capacity becomes the executors, the prewarmer's initial
//!    capacity the pre-initialised workers, and the decision's tier and compression the shuffle
//!    placement of the next interval.
//!
//! How the records travel is a [`ControlPlane`]: [`InProcess`] calls the handlers directly on the
//! in-memory backends (the embedded default); the live plane sends them through Kafka and the
//! event-source bridge to handlers on Redis, moto and a broker.

use crate::gateways::{EdgeGateways, RawDataSummary};
use crate::PipelineError;
use async_trait::async_trait;
use control::{BlockStats, Observation, ScalingAction, Scenario, TierRouter};
use handlers::ports::{AppState, AppStatus, Capacity, EmrControl, PortError, PortResult, Publisher};
use handlers::{
    AgentReport, Backends, DecisionRecord, EdgeRecord, Handler, KafkaMessage, Outcome, Settings,
    SparkMetrics, Trigger,
};
use serde_json::json;
use sim::{Arena, Episode, Scores, Timeline};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use traces::Trace;

pub use sim::learned::{META_EVERY_S, PREWARM_EVERY_S};

/// What a replay is asked to do besides the arena, trace and seed.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The business scenario meta-weights serves.
    pub scenario: Scenario,
    /// Shuffle blocks the simulated job writes per interval, and their size.
    pub blocks_per_interval: usize,
    pub block_bytes: usize,
    /// Trace seconds per wall-clock second: the replay waits between intervals so that it runs no
    /// faster (to be watched on the dashboard). None: as fast as it goes.
    pub pace: Option<f64>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self { scenario: Scenario::Balanced, blocks_per_interval: 2, block_bytes: 4_096, pace: None }
    }
}

/// The handler settings a replay runs with: the arena's executor size, maximum, SLA and edge
/// aggregation.
pub fn replay_settings(arena: &Arena, scenario: Scenario) -> Settings {
    let defaults = Settings::default();
    Settings {
        cluster: arena.config.edge.cluster,
        vcpu_per_executor: arena.config.vcpu_per_executor.round().max(1.0) as u32,
        guardrails: control::GuardrailConfig {
            max_executors: arena.config.max_executors.max(1),
            backlog_drain_s: arena.config.backlog_drain_s,
            cooldown_s: arena.config.cooldown_s,
            ..defaults.guardrails
        },
        sla_ms: arena.config.sla_ms,
        scenario,
        ..defaults
    }
}

/// One interval's traffic, as the gateways and the simulated job produce it.
#[derive(Debug, Clone)]
pub struct IntervalInputs {
    /// Trace second of the decision.
    pub t: usize,
    /// Unix time of the decision.
    pub time_s: f64,
    /// `iot-metadata` control messages since the last interval.
    pub control: Vec<EdgeRecord>,
    /// `iot-raw-data` summaries since the last interval.
    pub raw: Vec<RawDataSummary>,
    /// Shuffle manifests the job writes.
    pub manifests: Vec<serde_json::Value>,
    /// The job's `spark-metrics` record.
    pub metrics: SparkMetrics,
    /// Schedules due now, by function.
    pub schedules: Vec<&'static str>,
    /// A context change for meta-weights, if any.
    pub context: Option<serde_json::Value>,
}

/// What came back from one interval.
#[derive(Debug, Clone)]
pub struct IntervalResult {
    /// The decision scaling-decision recorded for this interval.
    pub decision: DecisionRecord,
    /// The application as the EMR Serverless port shows it afterwards.
    pub application: AppStatus,
}

/// How an interval's records reach the handlers. What happens in an interval, and in which order,
/// is [`step`], the same for every plane; a plane says only how records travel.
#[async_trait]
pub trait ControlPlane: Send {
    /// Call a function directly, as its schedule or a direct invocation does.
    async fn invoke(&mut self, function: &'static str, trigger: Trigger) -> Result<Outcome, PipelineError>;
    /// Deliver the edges' `iot-metadata` records to burst-signal. What it publishes on
    /// `scaling-requests` reaches scaling-decision before the interval's metrics do.
    async fn send_control(&mut self, records: &[EdgeRecord]) -> Result<(), PipelineError>;
    /// Deliver the job's `spark-metrics` record; return what scaling-decision did with it.
    async fn send_metrics(&mut self, metrics: &SparkMetrics, time_s: f64) -> Result<Outcome, PipelineError>;
    /// The application as the EMR Serverless port shows it.
    async fn application(&self) -> Result<AppStatus, PipelineError>;
    /// Invocations so far, by function.
    fn invocations(&self) -> BTreeMap<String, usize>;
    /// Record errors the handlers reported so far.
    fn record_errors(&self) -> usize;
}

/// One interval through `plane`: the context change to meta-weights, the control messages to
/// burst-signal, the schedules due, the shuffle manifests to shuffle-router, then the job's metrics
/// to scaling-decision, whose decision is the interval's.
pub async fn step(
    plane: &mut dyn ControlPlane,
    inputs: IntervalInputs,
) -> Result<IntervalResult, PipelineError> {
    if let Some(ctx) = inputs.context {
        plane.invoke("meta-weights", Trigger::Direct(ctx)).await?;
    }
    if !inputs.control.is_empty() {
        plane.send_control(&inputs.control).await?;
    }
    for f in &inputs.schedules {
        plane.invoke(f, Trigger::Schedule { time_s: inputs.time_s }).await?;
    }
    if !inputs.manifests.is_empty() {
        plane.invoke("shuffle-router", Trigger::Direct(json!({ "blocks": inputs.manifests }))).await?;
    }
    let out = plane.send_metrics(&inputs.metrics, inputs.time_s).await?;
    let decision = out.decision().cloned().ok_or_else(|| {
        PipelineError::Protocol(format!("scaling-decision made no decision: {}", out.to_json()))
    })?;
    let application = plane.application().await?;
    Ok(IntervalResult { decision, application })
}

/// A finished replay.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub scores: Scores,
    pub timeline: Timeline,
    pub decisions: usize,
    /// Decisions that changed the running job's executors.
    pub executor_changes: usize,
    pub control_messages: usize,
    pub raw_summaries: usize,
    pub shuffle_blocks: usize,
    pub invocations: BTreeMap<String, usize>,
    pub record_errors: usize,
    /// Largest relative difference, over every decision, between a measured field of the
    /// observation scaling-decision built (rates, backlog, executors, utilisation, latency) and
    /// the arena's own observation at that moment: 0 when the function sees what the arena sees.
    pub observation_drift: f64,
    /// Largest relative difference between the latency scaling-decision estimated and the arena's.
    pub latency_drift: f64,
    /// Share of decisions whose burst signal (the cluster quorum over the gateways) matched the
    /// arena's single edge model.
    pub burst_agreement: f64,
    /// Largest difference between the data temperature scaling-decision read (shuffle-router's
    /// mean over the blocks written) and the arena's.
    pub temperature_drift: f64,
}

/// Relative difference, guarded near zero.
fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-6)
}

/// The largest relative difference between the measured fields of two observations. Latency is left
/// out: under a backlog the live system estimates it from what Spark publishes (backlog over the
/// processing rate), the arena knows its true service time, and no policy feature reads it; it is
/// reported apart as `latency_drift`.
pub fn observation_drift(seen: &control::Observation, arena: &control::Observation) -> f64 {
    [
        rel(seen.input_rate, arena.input_rate),
        rel(seen.processing_rate, arena.processing_rate),
        rel(seen.backlog_events, arena.backlog_events),
        rel(seen.running_executors as f64, arena.running_executors as f64),
        rel(seen.pending_executors as f64, arena.pending_executors as f64),
        rel(seen.cpu_utilisation, arena.cpu_utilisation),
        rel(seen.memory_utilisation, arena.memory_utilisation),
        rel(seen.shuffle_mb_per_s, arena.shuffle_mb_per_s),
        rel(seen.bytes_per_event, arena.bytes_per_event),
        rel(seen.sla_ms, arena.sla_ms),
    ]
    .into_iter()
    .fold(0.0, f64::max)
}

/// Access statistics a block of temperature `target` has under `router` (the closest whole access
/// count and age), so that the blocks the job writes carry the arena's data temperature.
pub fn block_stats_for(router: &TierRouter, target: f64, burst: bool) -> BlockStats {
    let target = target.clamp(0.0, 1.0);
    let mut best = BlockStats { access_count: 0, age_s: 3_600.0, burst, archival: false };
    let mut best_err = f64::INFINITY;
    // Ages on a geometric grid from 1 s to a day; for each, the access count nearest the target.
    let mut age = 1.0_f64;
    while age <= 86_400.0 {
        let c = &router.config();
        let recency = c.age_half_s / (c.age_half_s + age);
        let w = c.w_frequency + c.w_recency;
        let f_needed = ((target * w - c.w_recency * recency) / c.w_frequency).clamp(0.0, 0.999_999);
        let per_minute = -c.reads_per_minute_scale * (1.0 - f_needed).ln();
        let exact = per_minute * age.max(1.0) / 60.0;
        for count in [exact.floor(), exact.ceil()] {
            let stats =
                BlockStats { access_count: count.max(0.0) as u64, age_s: age, burst, archival: false };
            let err = (router.temperature(&stats) - target).abs();
            if err < best_err {
                best_err = err;
                best = stats;
            }
        }
        age *= 1.15;
    }
    best
}

/// Drive `trace` through the handlers behind `plane`, with the arena standing in for EMR
/// Serverless and the Spark job.
pub async fn run(
    arena: &Arena,
    trace: &Trace,
    seed: u64,
    options: &ReplayOptions,
    settings: &Settings,
    plane: &mut dyn ControlPlane,
) -> Result<ReplayReport, PipelineError> {
    let mut episode = Episode::new(arena, trace, seed)?;
    let mut gateways = EdgeGateways::new(&arena.config.edge, seed)?;
    let router =
        TierRouter::new(settings.router).map_err(|e| PipelineError::Config(format!("tier router: {e}")))?;
    let info = arena.episode_info(trace, seed);
    let budget = sim::learned::episode_budget(arena, &info, trace.len() as f64);
    let mut spend = sim::learned::SpendEstimate::default();
    let payload = block_payload(options.block_bytes, seed);
    let mut timeline = Timeline::default();
    let (mut decisions, mut executor_changes, mut control_messages, mut raw_summaries, mut shuffle_blocks) =
        (0, 0, 0, 0, 0);
    let mut warm = Some(gateways.warm_up(trace));
    let mut next_second = 0usize;
    let mut burst = false;
    let mut last_executors: Option<u32> = None;
    let mut drift = Drift::default();
    let started = tokio::time::Instant::now();
    let pace = options.pace.filter(|p| p.is_finite() && *p > 0.0);
    while !episode.done() {
        let t = episode.time();
        if let Some(pace) = pace {
            tokio::time::sleep_until(started + std::time::Duration::from_secs_f64(t as f64 / pace)).await;
        }
        let time_s = gateways.unix_time(t as f64);
        let mut control = warm.take().unwrap_or_default();
        let mut raw = Vec::new();
        for s in next_second..t {
            let (c, r) = gateways.second(s, trace);
            control.extend(c);
            raw.extend(r);
        }
        next_second = t.max(next_second);
        // The job marks its blocks as written in a burst when most of the interval's gateway
        // reports signal one (the same majority the replay's tests look for).
        if !control.is_empty() {
            burst = control.iter().filter(|r| r.burst_signal == Some(true)).count() * 2 > control.len();
        }
        let obs = episode.observe();
        let metrics = job_metrics(&obs, time_s);
        let stats = block_stats_for(&router, obs.data_temperature, burst);
        let manifests = block_manifests(options.blocks_per_interval, &payload, &stats, burst, seed, t);
        let schedules = schedules_due(t);
        // The budget feed: before each meta-weights run, what is left after the spend a live system
        // estimates from its running executors (the estimate the tournament's rl-meta keeps).
        let spent = spend.observe(arena, &obs);
        let context = (t % META_EVERY_S == 0).then(|| json!({"scenario": options.scenario.name(), "budget_remaining": (budget - spent).max(0.0), "budget_usd": budget, "horizon_s": trace.len() as f64, "time_s": time_s}));
        control_messages += control.len();
        raw_summaries += raw.len();
        shuffle_blocks += manifests.len();
        let result =
            step(plane, IntervalInputs { t, time_s, control, raw, manifests, metrics, schedules, context })
                .await?;
        decisions += 1;
        drift.add(&result.decision.inputs, &obs);
        // The job runs what the decision record says reached it: executors and tier through the
        // agent and shuffle-router, memory and codec of the run, pre-initialised workers of the
        // application.
        let running = result.decision.running();
        if last_executors.is_some_and(|n| n != running.executors) {
            executor_changes += 1;
        }
        last_executors = Some(running.executors);
        let action = ScalingAction { prewarm: result.application.capacity.initial_executors, ..running };
        episode.advance(action, Some(&mut timeline));
    }
    Ok(ReplayReport {
        scores: episode.scores(),
        timeline,
        decisions,
        executor_changes,
        control_messages,
        raw_summaries,
        shuffle_blocks,
        invocations: plane.invocations(),
        record_errors: plane.record_errors(),
        observation_drift: drift.observation,
        latency_drift: drift.latency,
        burst_agreement: drift.burst_agree as f64 / decisions.max(1) as f64,
        temperature_drift: drift.temperature,
    })
}

/// How far what the functions decided on strays from the arena's own observation, over a replay.
#[derive(Default)]
struct Drift {
    /// The largest relative difference of the observation's fields.
    observation: f64,
    latency: f64,
    temperature: f64,
    /// Decisions whose burst signal matched the arena's.
    burst_agree: usize,
}

impl Drift {
    fn add(&mut self, seen: &Observation, obs: &Observation) {
        self.observation = self.observation.max(observation_drift(seen, obs));
        self.latency = self.latency.max(rel(seen.latency_ms, obs.latency_ms));
        self.temperature = self.temperature.max((seen.data_temperature - obs.data_temperature).abs());
        self.burst_agree += usize::from(seen.burst_signal == obs.burst_signal);
    }
}

/// What the job would report for the arena's second: the arena stands in for the job and its agent,
/// and runs what the decisions ask.
fn job_metrics(obs: &Observation, time_s: f64) -> SparkMetrics {
    let wait_ms =
        if obs.processing_rate > 0.0 { obs.backlog_events / obs.processing_rate * 1_000.0 } else { 0.0 };
    SparkMetrics {
        agent: Some(AgentReport {
            target_executors: obs.current.executors,
            status: "arena".into(),
            ..AgentReport::default()
        }),
        timestamp: time_s,
        input_rate: obs.input_rate,
        processing_rate: obs.processing_rate,
        // What the job reports as batch duration is the latency without the backlog wait, so
        // that the latency scaling-decision derives is the arena's.
        batch_duration_ms: (obs.latency_ms - wait_ms).max(0.0),
        backlog: obs.backlog_events,
        cpu_utilisation: Some(obs.cpu_utilisation),
        memory_utilisation: Some(obs.memory_utilisation),
        running_executors: Some(obs.running_executors),
        pending_executors: Some(obs.pending_executors),
        shuffle_mb_per_s: Some(obs.shuffle_mb_per_s),
        bytes_per_event: Some(obs.bytes_per_event),
    }
}

/// The shuffle manifests the job writes in the interval starting at `t`.
fn block_manifests(
    count: usize,
    payload: &[u8],
    stats: &BlockStats,
    burst: bool,
    seed: u64,
    t: usize,
) -> Vec<serde_json::Value> {
    (0..count)
        .map(|i| {
            json!({
                "block_id": format!("replay-{seed}-{t}-{i}"),
                "size_bytes": payload.len(),
                "access_count": stats.access_count,
                "age_s": stats.age_s,
                "burst": burst,
                "payload_b64": base64_encode(payload),
            })
        })
        .collect()
}

/// The scheduled functions due at second `t`.
fn schedules_due(t: usize) -> Vec<&'static str> {
    let mut schedules = Vec::new();
    if t.is_multiple_of(META_EVERY_S) {
        schedules.push("meta-weights");
    }
    if t.is_multiple_of(PREWARM_EVERY_S) {
        schedules.push("prewarmer");
    }
    schedules
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A shuffle block's bytes: IoT-like records, so that the codecs have something real to do.
fn block_payload(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 96);
    let mut i = 0u64;
    while out.len() < len {
        let line = format!(
            "{{\"device\":\"dev-{:05}\",\"seq\":{},\"temp_c\":{:.2}}}\n",
            (seed.wrapping_mul(31) + i) % 50_000,
            i,
            20.0 + ((i * 7) % 100) as f64 / 10.0
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// EMR Serverless as the arena stands in for it: updates apply at once, as they do for every
/// contender in the tournament (the arena models executors coming and going, with cold starts,
/// itself). The application reports CREATED so that scaling-decision takes the update path.
#[derive(Debug)]
pub struct SimulatedEmr {
    status: Mutex<AppStatus>,
    updates: Mutex<usize>,
}

impl SimulatedEmr {
    /// A STARTED application (the replayed streaming job runs in it) whose maximum capacity is
    /// `executors` workers of `vcpu` vCPUs and `memory_gb`.
    pub fn new(executors: u32, vcpu: u32, memory_gb: u32) -> Self {
        let capacity = Capacity {
            max_vcpu: executors * vcpu,
            max_memory_gb: executors * memory_gb,
            initial_executors: 0,
            worker_vcpu: vcpu,
            worker_memory_gb: memory_gb,
        };
        Self { status: Mutex::new(AppStatus { state: AppState::Started, capacity }), updates: Mutex::new(0) }
    }

    pub fn updates(&self) -> usize {
        *self.updates.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EmrControl for SimulatedEmr {
    async fn get_application(&self) -> PortResult<AppStatus> {
        Ok(self.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
    async fn update_capacity(&self, capacity: &Capacity) -> PortResult<()> {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if !status.state.accepts_update() {
            return Err(PortError::new(
                "emr-serverless",
                "UpdateApplication",
                format!("application is {:?}; updates need CREATED or STOPPED", status.state),
            ));
        }
        status.capacity = *capacity;
        drop(status);
        *self.updates.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Ok(())
    }
}

/// Kafka in one process: topics as queues with offsets. burst-signal publishes `scaling-requests`
/// into it, and the replay hands them to scaling-decision with the next interval's metrics.
#[derive(Debug, Default)]
pub struct InProcessBus {
    topics: Mutex<HashMap<String, (i64, VecDeque<KafkaMessage>)>>,
}

impl InProcessBus {
    /// Append a record to `topic` at Unix time `time_s`.
    pub fn append(&self, topic: &str, key: Option<&str>, value: Vec<u8>, time_s: f64) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let (next, queue) = topics.entry(topic.to_string()).or_default();
        queue.push_back(KafkaMessage {
            topic: topic.into(),
            partition: 0,
            offset: *next,
            timestamp_ms: (time_s * 1_000.0) as i64,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(Ok(value)),
        });
        *next += 1;
    }

    /// Take everything waiting on `topic`.
    pub fn drain(&self, topic: &str) -> Vec<KafkaMessage> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.get_mut(topic).map(|(_, q)| q.drain(..).collect()).unwrap_or_default()
    }
}

#[async_trait]
impl Publisher for InProcessBus {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> PortResult<()> {
        self.append(topic, Some(key), payload.to_vec(), 0.0);
        Ok(())
    }
    async fn publish_at(&self, topic: &str, key: &str, payload: &[u8], time_s: f64) -> PortResult<()> {
        self.append(topic, Some(key), payload.to_vec(), time_s);
        Ok(())
    }
}

/// The embedded control plane: the five handlers called in-process on the in-memory backends,
/// with the [`SimulatedEmr`].
pub struct InProcess {
    settings: Settings,
    bus: Arc<InProcessBus>,
    pub emr: Arc<SimulatedEmr>,
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
    invocations: BTreeMap<String, usize>,
    record_errors: usize,
}

impl InProcess {
    /// Handlers on in-memory backends, the application starting at the episode's opening capacity.
    pub fn new(settings: &Settings, start: &ScalingAction) -> Result<Self, PipelineError> {
        Self::on(settings, start, &handlers::Embedded::default())
    }

    /// [`InProcess::new`] on the given in-memory backends (whose store a dashboard can read).
    pub fn on(
        settings: &Settings,
        start: &ScalingAction,
        embedded: &handlers::Embedded,
    ) -> Result<Self, PipelineError> {
        let bus = Arc::new(InProcessBus::default());
        // The job was started with room for the guardrails' ceiling, as a deployment starts it.
        let emr = Arc::new(SimulatedEmr::new(
            settings.guardrails.max_executors.max(start.executors),
            settings.vcpu_per_executor.max(1),
            start.memory_gb,
        ));
        let mut backends: Backends = embedded.backends();
        backends.publisher = bus.clone();
        backends.emr = emr.clone();
        let mut built = HashMap::new();
        for name in handlers::FUNCTIONS {
            built.insert(name, handlers::build(name, settings, &backends)?);
        }
        Ok(Self {
            settings: settings.clone(),
            bus,
            emr,
            handlers: built,
            invocations: BTreeMap::new(),
            record_errors: 0,
        })
    }
}

#[async_trait]
impl ControlPlane for InProcess {
    async fn invoke(&mut self, name: &'static str, trigger: Trigger) -> Result<Outcome, PipelineError> {
        let handler = self
            .handlers
            .get(name)
            .ok_or_else(|| PipelineError::Config(format!("no handler {name}")))?
            .clone();
        *self.invocations.entry(name.to_string()).or_default() += 1;
        let out = handler
            .handle(trigger)
            .await
            .map_err(|error| PipelineError::Handler { function: name, error })?;
        self.record_errors += out.record_errors().len();
        Ok(out)
    }

    async fn send_control(&mut self, records: &[EdgeRecord]) -> Result<(), PipelineError> {
        let topic = self.settings.topics.iot_metadata.clone();
        for r in records {
            let value =
                serde_json::to_vec(r).map_err(|e| PipelineError::Config(format!("edge record: {e}")))?;
            self.bus.append(&topic, Some(&r.edge_id), value, r.timestamp);
        }
        let batch = self.bus.drain(&topic);
        self.invoke("burst-signal", Trigger::Kafka(batch)).await?;
        Ok(())
    }

    async fn send_metrics(&mut self, metrics: &SparkMetrics, time_s: f64) -> Result<Outcome, PipelineError> {
        let topics = self.settings.topics.clone();
        let value =
            serde_json::to_vec(metrics).map_err(|e| PipelineError::Config(format!("spark metrics: {e}")))?;
        // The scaling requests burst-signal published this interval come first, in one batch.
        let mut batch = self.bus.drain(&topics.scaling_requests);
        self.bus.append(&topics.spark_metrics, Some("job"), value, time_s);
        batch.extend(self.bus.drain(&topics.spark_metrics));
        let out = self.invoke("scaling-decision", Trigger::Kafka(batch)).await?;
        // What scaling-decision published on scaling-decisions is consumed by nobody here.
        self.bus.drain(&topics.scaling_decisions);
        Ok(out)
    }

    async fn application(&self) -> Result<AppStatus, PipelineError> {
        self.emr.get_application().await.map_err(|e| PipelineError::Protocol(e.to_string()))
    }

    fn invocations(&self) -> BTreeMap<String, usize> {
        self.invocations.clone()
    }

    fn record_errors(&self) -> usize {
        self.record_errors
    }
}

/// Replay `trace` on the embedded default: the handlers in-process, the arena as EMR Serverless.
pub async fn replay_embedded(
    arena: &Arena,
    trace: &Trace,
    seed: u64,
    options: &ReplayOptions,
) -> Result<ReplayReport, PipelineError> {
    replay_embedded_on(arena, trace, seed, options, &handlers::Embedded::default()).await
}

/// [`replay_embedded`] on the given in-memory backends: what the handlers store stays readable
/// (by the dashboard) during and after the replay.
pub async fn replay_embedded_on(
    arena: &Arena,
    trace: &Trace,
    seed: u64,
    options: &ReplayOptions,
    embedded: &handlers::Embedded,
) -> Result<ReplayReport, PipelineError> {
    let settings = replay_settings(arena, options.scenario);
    let start = Episode::new(arena, trace, seed)?.action();
    let mut plane = InProcess::on(&settings, &start, embedded)?;
    run(arena, trace, seed, options, &settings, &mut plane).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_stats_hit_the_target_temperature() {
        let router = TierRouter::new(control::TierRouterConfig::default()).unwrap();
        for target in [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95] {
            let stats = block_stats_for(&router, target, false);
            let got = router.temperature(&stats);
            assert!((got - target).abs() < 0.02, "target {target}: {stats:?} gives {got}");
        }
    }

    #[test]
    fn block_payload_has_the_asked_length() {
        assert_eq!(block_payload(4_096, 1).len(), 4_096);
        assert_eq!(block_payload(0, 1).len(), 0);
    }

    #[test]
    fn replay_runs_the_five_handlers_and_scores_like_the_arena() {
        let mut arena = Arena::embedded();
        arena.config.edge.gateways = 8;
        let trace = traces::resolve("step-burst", 1).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let options = ReplayOptions::default();
        let report = runtime.block_on(replay_embedded(&arena, &trace, 1, &options)).unwrap();
        for f in handlers::FUNCTIONS {
            assert!(
                report.invocations.get(f).copied().unwrap_or(0) > 0,
                "{f} never ran: {:?}",
                report.invocations
            );
        }
        let interval = arena.config.decision_interval_s;
        assert_eq!(report.decisions, trace.len().div_ceil(interval));
        assert_eq!(report.record_errors, 0);
        assert!(report.scores.cost_usd > 0.0 && report.scores.throughput_mb_s > 0.0);
        // scaling-decision sees what the arena measures: the metrics travel as spark-metrics records,
        // the gateways' reports go through burst-signal, and both come back as the same observation.
        assert!(report.observation_drift < 1e-9, "observation drift {}", report.observation_drift);
        assert!(report.temperature_drift < 0.02, "temperature drift {}", report.temperature_drift);
        assert!(report.latency_drift < 0.05, "latency drift {}", report.latency_drift);
        assert_eq!(report.burst_agreement, 1.0, "the arena aggregates its gateways as burst-signal does");
        // Same code path: the tournament's `rl-meta` (meta-controller on the meta-weights schedule,
        // scaling policy, guardrails, prewarmer) on the same trace and seed, from the same model bytes
        // and for the scenario meta-weights serves, scores as the replay.
        let scaling = || {
            policy::ScalingPolicy::from_bytes(
                "embedded",
                handlers::scaling_decision::EMBEDDED_MODEL,
                arena.feature_builder(),
            )
            .unwrap()
        };
        let meta =
            policy::MetaPolicy::from_bytes("embedded", handlers::meta_weights::EMBEDDED_MODEL).unwrap();
        let mut contender = sim::learned::Prewarmed::new(
            sim::learned::RlMeta::new(meta, scaling(), arena.clone(), options.scenario),
            &arena,
        );
        let rl = arena.run(&trace, 1, &mut contender, None).unwrap();
        assert!(
            rel(report.scores.cost_usd, rl.cost_usd) < 0.01,
            "replay ${} vs rl-meta ${}",
            report.scores.cost_usd,
            rl.cost_usd
        );
        assert!(
            (report.scores.sla_violation_pct - rl.sla_violation_pct).abs() < 0.5,
            "replay {} % vs rl-meta {} %",
            report.scores.sla_violation_pct,
            rl.sla_violation_pct
        );
    }
}
