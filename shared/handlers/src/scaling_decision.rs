//! scaling-decision: the PPO scaling policy, bounded by guardrails, applied to EMR Serverless.
//!
//! Triggered by `scaling-requests` (burst events), `spark-metrics` (micro-batch progress) and a
//! one-minute schedule. One invocation makes one decision from the newest state:
//!
//! 1. read the latest metrics, cluster burst state, weights and last decision (one round trip) and
//!    the application (GetApplication);
//! 2. build the [`Observation`], run scaling-ppo through [`ScalingPolicy`], and bound the result with
//!    [`Guardrails`] (the same code the simulator runs);
//! 3. apply it through a path EMR Serverless accepts in the application's present state
//!    (`control::actuation`). While the application is STARTED (a streaming job keeps it so) the
//!    executors reach the job through the in-job agent, which follows `scaling-decisions`, and the
//!    tier through shuffle-router; memory and codec are stored as the next run's Spark parameters,
//!    and a change of maximum capacity waits for the next stop. While it is CREATED or STOPPED,
//!    UpdateApplication sets the maximum capacity (the guardrails' ceiling) and the whole decision
//!    is the next run's. The record lists every setting with when it applies, through what, and why;
//!    nothing is left silently pending;
//! 4. when the policy picks the Redis tier under a burst, grow the ElastiCache hot tier by a shard;
//! 5. record the decision (store, `scaling-decisions`, a JSON log line). With dry run on, steps 3
//!    and 4 are skipped and the record says so.
//!
//! A redelivered batch (same topic, partition and offsets) is recognised and not decided again: the
//! batch is marked in the transaction that records its decision, so a batch whose invocation failed
//! or died is decided when it comes again. Round trips to the store: one read (state and mark), one
//! transaction (everything written), with the decision published while the transaction is in flight.

use crate::ports::{AppStatus, Capacity, StoreWrite};
use crate::state::{ClusterBurst, DecisionRecord, Keys};
use crate::{from_json, record_json, to_json, ActuationPart, Applies, Backends, BurstEvent, ExecutorReport, Handler, HandlerError, JobRunConfig, RecordError, Setting, Settings, SparkMetrics, Trigger, Weights};
use control::actuation::Lever;
use async_trait::async_trait;
use control::{GuardrailChange, GuardrailContext, Guardrails, Observation, ScalingAction, StateBuilder};
use cost_model::{PriceBook, WorkerSpec};
use latency_model::{LatencyModel, Tier};
use policy::ScalingPolicy;
use serde_json::json;
use std::time::Duration;

/// The model built into the binary; `SPARKPILOT_SCALING_MODEL` overrides it.
pub const EMBEDDED_MODEL: &[u8] = include_bytes!("../../../models/scaling-ppo.onnx");
/// Decisions kept in the store's log.
const DECISION_LOG: usize = 1_000;
/// Load samples kept for the prewarmer (one a second for two hours at most).
const LOAD_HISTORY: usize = control::PREWARM_HISTORY;
/// How long a batch is remembered for redelivery detection.
const SEEN_TTL: Duration = Duration::from_secs(24 * 3_600);
use control::DEFAULT_BYTES_PER_EVENT;

pub struct ScalingDecision {
    settings: Settings,
    keys: Keys,
    backends: Backends,
    policy: ScalingPolicy,
    guardrails: Guardrails,
    prices: PriceBook,
}

/// The stored state a decision starts from.
#[derive(Debug, Clone, Default)]
pub struct DecisionState {
    pub metrics: Option<SparkMetrics>,
    pub cluster: Option<ClusterBurst>,
    pub weights: Option<Weights>,
    pub last: Option<DecisionRecord>,
    /// Mean temperature of the newest shuffle blocks, as shuffle-router's TierRouter computed it.
    pub shuffle_temperature: Option<f64>,
}

/// Where a decision's settings went.
struct Actuated {
    parts: Vec<ActuationPart>,
    running: ScalingAction,
    next_run: Option<JobRunConfig>,
    emr: String,
}

/// A decision before it is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub observation: Observation,
    pub proposed: ScalingAction,
    pub applied: ScalingAction,
    pub changes: Vec<GuardrailChange>,
}

impl ScalingDecision {
    pub fn new(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError> {
        let state = StateBuilder::for_policy(settings.vcpu_per_executor as f64, LatencyModel::embedded().processing);
        let policy = match &settings.scaling_model {
            Some(path) => ScalingPolicy::load(path, state)?,
            None => ScalingPolicy::from_bytes("embedded:scaling-ppo.onnx", EMBEDDED_MODEL, state)?,
        };
        let prices = PriceBook::embedded(&settings.region).map_err(|e| HandlerError::Config(e.to_string()))?;
        Ok(Self { settings: settings.clone(), keys: Keys::new(&settings.key_prefix), backends: backends.clone(), policy, guardrails: Guardrails::new(settings.guardrails)?, prices })
    }

    pub fn model_version(&self) -> &str {
        self.policy.version()
    }

    fn executors_of(&self, capacity: &Capacity) -> u32 {
        capacity.max_vcpu / self.settings.vcpu_per_executor.max(1)
    }

    /// What a live system observes, from stored state and the application.
    pub fn observe(&self, state: &DecisionState, app: &AppStatus, now: f64) -> Observation {
        let current = state.last.as_ref().map(DecisionRecord::running).unwrap_or_else(|| {
            let mut a = ScalingAction::spark_default(self.executors_of(&app.capacity).max(1));
            a.prewarm = app.capacity.initial_executors;
            a
        });
        let m = state.metrics.as_ref();
        let bytes = m.and_then(|m| m.bytes_per_event).unwrap_or(DEFAULT_BYTES_PER_EVENT);
        let running = m.and_then(|m| m.running_executors).unwrap_or(current.executors);
        let input_rate = m.map_or(0.0, |m| m.input_rate);
        let processing_rate = m.map_or(0.0, |m| m.processing_rate);
        let backlog = m.map_or(0.0, |m| m.backlog);
        let capacity_rate = running as f64 * self.policy.state.executor_rate(bytes);
        let cpu = m.and_then(|m| m.cpu_utilisation).unwrap_or(if capacity_rate > 0.0 { processing_rate / capacity_rate } else { 0.0 });
        let latency_ms = m.map_or(0.0, |m| m.batch_duration_ms + if processing_rate > 0.0 { backlog / processing_rate * 1_000.0 } else { 0.0 });
        let burst = state.cluster.as_ref().is_some_and(|c| c.burst);
        let predicted = state.cluster.as_ref().map_or(input_rate, |c| c.predicted_or(input_rate));
        let [alpha, beta, _] = self.settings.scenario.weights();
        let (alpha, beta) = state.weights.as_ref().map_or((alpha, beta), |w| (w.alpha, w.beta));
        Observation {
            time_s: now,
            cpu_utilisation: cpu.clamp(0.0, 1.0),
            memory_utilisation: m.and_then(|m| m.memory_utilisation).unwrap_or(0.5),
            backlog_events: backlog,
            input_rate,
            processing_rate,
            running_executors: running,
            pending_executors: m.and_then(|m| m.pending_executors).unwrap_or(0),
            burst_signal: burst,
            predicted_load: predicted,
            // From shuffle-router; the neutral middle until it has written a block.
            data_temperature: state.shuffle_temperature.filter(|t| t.is_finite()).unwrap_or(0.5),
            shuffle_mb_per_s: m.and_then(|m| m.shuffle_mb_per_s).unwrap_or(input_rate * bytes / 1e6),
            bytes_per_event: bytes,
            latency_ms,
            alpha,
            beta,
            sla_ms: self.settings.sla_ms,
            current,
        }
    }

    /// Policy, then guardrails. No I/O: this is what the decision benchmark measures.
    pub fn decide(&self, obs: &Observation, last_scale_up_s: Option<f64>) -> Result<Decision, HandlerError> {
        let proposed = self.policy.decide(obs)?;
        let worker = WorkerSpec { vcpu: self.settings.vcpu_per_executor as f64, memory_gb: proposed.memory_gb as f64, disk_gb: 20.0 };
        let ctx = GuardrailContext { now_s: obs.time_s, last_scale_up_s, burst: obs.burst_signal, usd_per_executor_hour: self.prices.emr_rate_per_second(&worker) * 3_600.0 };
        let (applied, changes) = self.guardrails.apply(proposed, &obs.current, &ctx);
        Ok(Decision { observation: *obs, proposed, applied, changes })
    }

    /// The application's capacity for a decision: the maximum is the guardrails' ceiling on executors
    /// (the room the in-job agent scales in), shaped for the decided memory; the pre-initialised
    /// workers stay the prewarmer's (a pending wish of its own included).
    pub fn ceiling_for(&self, action: &ScalingAction, app: &AppStatus, pending: Option<&Capacity>) -> Capacity {
        let most = self.settings.guardrails.max_executors.max(1);
        Capacity {
            max_vcpu: most * self.settings.vcpu_per_executor,
            max_memory_gb: most * action.memory_gb,
            initial_executors: pending.map_or(app.capacity.initial_executors, |p| p.initial_executors).min(most),
            worker_vcpu: self.settings.vcpu_per_executor,
            worker_memory_gb: action.memory_gb,
        }
    }

    /// Send each setting of the decision where the service takes it in the application's present
    /// state (`control::actuation`), and say for each what became of it. Store writes it implies
    /// (pending capacity, next run) join the decision record's batch.
    async fn actuate(&self, decision: &Decision, app: &AppStatus, before: &ScalingAction, pending: Option<&Capacity>, agent_seen: bool, writes: &mut Vec<StoreWrite>) -> Result<Actuated, HandlerError> {
        let decided = &decision.applied;
        let dry = self.settings.dry_run;
        let part = |lever: Lever, value: &ScalingAction, applies: Applies, why: String| ActuationPart { setting: lever.into(), value: lever.value(value), applies, via: lever.via().to_string(), why };
        let mut parts = Vec::new();
        let ceiling = self.ceiling_for(decided, app, pending);
        // The ceiling: UpdateApplication now if the application takes it, else at its next stop.
        let accepts = app.state.accepts_update();
        let unchanged = if accepts { ceiling == app.capacity } else { (ceiling.max_vcpu, ceiling.max_memory_gb, ceiling.worker_memory_gb) == (app.capacity.max_vcpu, app.capacity.max_memory_gb, app.capacity.worker_memory_gb) };
        let (applies, why, emr) = if unchanged {
            (Applies::Unchanged, "already the application's".to_string(), "unchanged".to_string())
        } else if dry {
            (Applies::DryRun, "dry run".to_string(), "dry run".to_string())
        } else if accepts {
            self.backends.emr.update_capacity(&ceiling).await?;
            writes.push(StoreWrite::Delete { key: self.keys.pending_capacity() });
            (Applies::Now, format!("the application is {:?}, so it accepts UpdateApplication", app.state), "updated".to_string())
        } else {
            writes.push(StoreWrite::Set { key: self.keys.pending_capacity(), value: to_json(&ceiling), ttl: None });
            let why = format!("the application is {:?}; UpdateApplication needs CREATED or STOPPED, so it waits for the next stop", app.state);
            (Applies::WhenStopped, why.clone(), format!("pending: {why}"))
        };
        parts.push(ActuationPart { setting: Setting::MaximumCapacity, value: format!("{} vCPU, {} GB", ceiling.max_vcpu, ceiling.max_memory_gb), applies, via: "UpdateApplication maximumCapacity".into(), why });
        if accepts {
            // No job runs: the decision is what the next start gets.
            let running = ScalingAction { prewarm: ceiling.initial_executors, ..*decided };
            let next = JobRunConfig::for_action(&running);
            let why = format!("the application is {:?}: no job runs; the next StartJobRun starts with it", app.state);
            for lever in [Lever::Executors, Lever::MemoryPerExecutor, Lever::Codec] {
                parts.push(part(lever, decided, if dry { Applies::DryRun } else { Applies::NextJobRun }, why.clone()));
            }
            parts.push(self.tier_part(decided, before, dry));
            if !dry {
                writes.push(StoreWrite::Set { key: self.keys.next_run(), value: to_json(&next), ttl: None });
            }
            return Ok(Actuated { parts, running, next_run: Some(next), emr });
        }
        // A job may be running: the live settings go to it, the rest waits.
        let running = control::actuation::running_action(decided, &ScalingAction { prewarm: app.capacity.initial_executors, ..*before });
        let room = app.capacity.max_vcpu / self.settings.vcpu_per_executor.max(1);
        let executors = if decided.executors == before.executors {
            part(Lever::Executors, decided, Applies::Unchanged, "the job's target already".into())
        } else if dry {
            part(Lever::Executors, decided, Applies::DryRun, "dry run: the agent ignores dry-run decisions".into())
        } else if decided.executors > room {
            part(Lever::Executors, decided, Applies::Now, format!("capped at {room} by the application's maximum capacity until it stops (the larger ceiling waits)"))
        } else {
            let heard = if agent_seen { "" } else { "; no in-job agent has reported on spark-metrics yet, so nothing confirms the job follows it" };
            part(Lever::Executors, decided, Applies::Now, format!("the application is {:?}: the agent moves the running job's executors{heard}", app.state))
        };
        parts.push(executors);
        parts.push(self.tier_part(decided, before, dry));
        let mut next_run = None;
        for lever in [Lever::MemoryPerExecutor, Lever::Codec] {
            if lever.differs(decided, before) {
                let applies = if dry { Applies::DryRun } else { Applies::NextJobRun };
                parts.push(part(lever, decided, applies, "fixed for the life of a SparkContext: the running job keeps its own".into()));
                next_run = Some(JobRunConfig::for_action(decided));
            } else {
                parts.push(part(lever, decided, Applies::Unchanged, "the running job's already".into()));
            }
        }
        if let (Some(next), false) = (&next_run, dry) {
            writes.push(StoreWrite::Set { key: self.keys.next_run(), value: to_json(next), ttl: None });
        }
        Ok(Actuated { parts, running, next_run, emr })
    }

    fn tier_part(&self, decided: &ScalingAction, before: &ScalingAction, dry: bool) -> ActuationPart {
        let (applies, why) = if dry {
            (Applies::DryRun, "dry run: shuffle-router follows only applied decisions".to_string())
        } else if decided.tier == before.tier {
            (Applies::Unchanged, "where the job's blocks already go".to_string())
        } else {
            (Applies::Now, "shuffle-router places the job's next hot and intermediate blocks there".to_string())
        };
        let lever = Lever::ShuffleTier;
        ActuationPart { setting: lever.into(), value: lever.value(decided), applies, via: lever.via().to_string(), why }
    }

    async fn apply_hot_tier(&self, decision: &Decision) -> Result<String, HandlerError> {
        if !(decision.applied.tier == Tier::Redis && decision.observation.burst_signal) {
            return Ok("unchanged".into());
        }
        if self.settings.dry_run {
            return Ok("dry run".into());
        }
        let shards = self.backends.hot_tier.shards().await?;
        if shards >= self.settings.max_cache_shards {
            return Ok(format!("at most {} shards", self.settings.max_cache_shards));
        }
        self.backends.hot_tier.set_shards(shards + 1).await?;
        Ok(format!("shards {} -> {}", shards, shards + 1))
    }
}

/// A digest of the batch's record positions: a redelivered batch has the same one.
fn batch_digest(records: &[crate::KafkaMessage]) -> Option<String> {
    if records.is_empty() || records.iter().any(|r| r.offset < 0) {
        return None;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in records {
        for b in r.topic.bytes().chain(r.partition.to_le_bytes()).chain(r.offset.to_le_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Some(format!("{h:016x}"))
}

#[async_trait]
impl Handler for ScalingDecision {
    fn name(&self) -> &'static str {
        "scaling-decision"
    }

    async fn handle(&self, trigger: Trigger) -> Result<serde_json::Value, HandlerError> {
        // A batch is marked decided in the same transaction that records its decision, and the mark
        // is read with the state: a redelivery after success is skipped, and one after a failure,
        // a timeout or a crash is decided, since nothing was marked.
        let seen = match &trigger {
            Trigger::Kafka(records) => batch_digest(records).map(|d| self.keys.seen(&d)),
            _ => None,
        };
        self.decide_and_apply(trigger, seen).await
    }
}

impl ScalingDecision {
    async fn decide_and_apply(&self, trigger: Trigger, seen: Option<String>) -> Result<serde_json::Value, HandlerError> {
        let store = &self.backends.store;
        let mut errors = Vec::new();
        let mut new_metrics: Vec<SparkMetrics> = Vec::new();
        let mut burst_events: Vec<BurstEvent> = Vec::new();
        let now = trigger.time_s();
        let trigger_name = match &trigger {
            Trigger::Schedule { .. } => "schedule".to_string(),
            Trigger::Direct(_) => "direct".to_string(),
            Trigger::Kafka(records) => {
                let mut topics: Vec<&str> = records.iter().map(|r| &*r.topic).collect();
                topics.sort();
                topics.dedup();
                topics.join(",")
            }
        };
        if let Trigger::Kafka(records) = &trigger {
            for m in records {
                let err = |e: String| RecordError { record: m.locator(), error: e };
                if *m.topic == *self.settings.topics.spark_metrics {
                    match record_json::<SparkMetrics>(m) {
                        Ok(Some(x)) => match x.invalid_field() {
                            None => new_metrics.push(x),
                            Some(f) => errors.push(err(format!("spark-metrics field {f} must be a non-negative number"))),
                        },
                        Ok(None) => {}
                        Err(e) => errors.push(err(e)),
                    }
                } else {
                    match record_json::<BurstEvent>(m) {
                        Ok(Some(x)) => burst_events.push(x),
                        Ok(None) => {}
                        Err(e) => errors.push(err(e)),
                    }
                }
            }
        }
        if let Trigger::Direct(v) = &trigger {
            // A direct call may carry metrics to decide on: {"spark_metrics": {...}}.
            if let Some(m) = v.get("spark_metrics") {
                let x: SparkMetrics = serde_json::from_value(m.clone()).map_err(|e| HandlerError::BadRequest(format!("spark_metrics: {e}")))?;
                if let Some(f) = x.invalid_field() {
                    return Err(HandlerError::BadRequest(format!("spark_metrics field {f} must be a non-negative number")));
                }
                new_metrics.push(x);
            }
        }
        let mut keys = vec![self.keys.metrics(), self.keys.cluster(), self.keys.weights(), self.keys.last_decision(), self.keys.shuffle_temperature(), self.keys.pending_capacity()];
        let seen_at = keys.len();
        keys.extend(seen.clone());
        let got = store.get_many(&keys).await?;
        if let (Some(key), Some(Some(_))) = (&seen, got.get(seen_at)) {
            tracing::info!(key, "batch already decided; skipped");
            return Ok(json!({"duplicate": true, "batch": key.rsplit(':').next().unwrap_or(key)}));
        }
        let mut state = DecisionState {
            metrics: from_json(&keys[0], got[0].as_ref())?,
            cluster: from_json(&keys[1], got[1].as_ref())?,
            weights: from_json(&keys[2], got[2].as_ref())?,
            last: from_json(&keys[3], got[3].as_ref())?,
            shuffle_temperature: from_json(&keys[4], got[4].as_ref())?,
        };
        let pending: Option<Capacity> = from_json(&keys[5], got[5].as_ref())?;
        // Everything this invocation stores goes in one batch at the end, with the decision.
        let mut writes = Vec::new();
        if let Some(newest) = new_metrics.iter().max_by(|a, b| a.timestamp.total_cmp(&b.timestamp)).cloned() {
            if state.metrics.as_ref().is_none_or(|m| newest.timestamp >= m.timestamp) {
                state.metrics = Some(newest);
            }
            let history: Vec<Vec<u8>> = new_metrics.iter().map(|m| to_json(&control::LoadSample { time_s: m.timestamp, rate: m.input_rate })).collect();
            writes.push(StoreWrite::PushCapped { key: self.keys.load_history(), values: history, cap: LOAD_HISTORY });
            writes.push(StoreWrite::Set { key: self.keys.metrics(), value: to_json(&state.metrics), ttl: None });
        }
        if let Some(event) = burst_events.last() {
            // The event is newer than what the store may hold if burst-signal's write raced ours.
            if let Some(c) = state.cluster.as_mut() {
                c.burst = event.burst;
                c.predicted_load = event.predicted_load;
                c.predicted_peak = c.predicted_peak.max(event.predicted_peak);
            }
        }
        let app = self.backends.emr.get_application().await?;
        let obs = self.observe(&state, &app, now);
        let last_scale_up = state.last.as_ref().and_then(|d| d.last_scale_up_s);
        let decision = self.decide(&obs, last_scale_up)?;
        let agent_seen = state.metrics.as_ref().is_some_and(|m| m.agent.is_some());
        let actuated = self.actuate(&decision, &app, &obs.current, pending.as_ref(), agent_seen, &mut writes).await?;
        let hot_tier = self.apply_hot_tier(&decision).await?;
        // A dry run changes nothing, so it starts no cooldown.
        let last_scale_up_s = if self.settings.dry_run { last_scale_up } else { control::scale_up_time(last_scale_up, &obs.current, &decision.applied, now) };
        let agent = state.metrics.as_ref().and_then(|m| m.agent.as_ref());
        let executors = ExecutorReport {
            requested: decision.applied.executors,
            agent_target: agent.map(|a| a.target_executors),
            live: state.metrics.as_ref().and_then(|m| m.running_executors),
            agent_decision_time_s: agent.and_then(|a| a.decision_time_s),
            agent_status: agent.map(|a| a.status.clone()),
        };
        let reason = if !burst_events.is_empty() {
            format!("burst {}", if obs.burst_signal { "raised" } else { "cleared" })
        } else if !new_metrics.is_empty() {
            "new spark metrics".to_string()
        } else {
            "periodic check".to_string()
        };
        let record = DecisionRecord {
            time_s: now,
            trigger: trigger_name,
            reason,
            inputs: obs,
            proposed: decision.proposed,
            applied: decision.applied,
            guardrail_changes: decision.changes.clone(),
            model_version: self.policy.version().to_string(),
            weights_version: state.weights.as_ref().map_or(0, |w| w.version),
            dry_run: self.settings.dry_run,
            emr: actuated.emr,
            hot_tier,
            last_scale_up_s,
            running: Some(actuated.running),
            actuation: actuated.parts,
            executors: Some(executors),
            next_run: actuated.next_run,
        };
        let bytes = to_json(&record);
        writes.push(StoreWrite::Set { key: self.keys.last_decision(), value: bytes.clone(), ttl: None });
        writes.push(StoreWrite::PushCapped { key: self.keys.decisions(), values: vec![bytes.clone()], cap: DECISION_LOG });
        if let Some(key) = seen {
            writes.push(StoreWrite::Set { key, value: b"1".to_vec(), ttl: Some(SEEN_TTL) });
        }
        // The store and the topic are independent: write both at once, one round trip each.
        let publish = self.backends.publisher.publish_at(&self.settings.topics.scaling_decisions, "decision", &bytes, now);
        let (stored, published) = tokio::join!(store.write(&writes), publish);
        stored?;
        published?;
        tracing::info!(decision = %String::from_utf8_lossy(&bytes), "scaling decision");
        Ok(json!({ "decision": record, "errors": errors }))
    }
}
