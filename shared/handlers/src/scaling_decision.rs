//! scaling-decision: the PPO scaling policy, bounded by guardrails, applied to EMR Serverless.
//!
//! Triggered by `scaling-requests` (burst events), `spark-metrics` (micro-batch progress) and a
//! one-minute schedule. One invocation makes one decision from the newest state:
//!
//! 1. read the latest metrics, cluster burst state, weights and last decision (one round trip) and
//!    the application (GetApplication);
//! 2. build the [`Observation`], run scaling-ppo through [`ScalingPolicy`], and bound the result with
//!    [`Guardrails`] (the same code the simulator runs);
//! 3. apply it: UpdateApplication sets the maximum capacity, but EMR Serverless accepts it only while
//!    the application is CREATED or STOPPED. A STARTED application is never stopped for it (that
//!    would kill the streaming job): the capacity is stored as pending, the decision says
//!    "deferred", and it is applied at the application's next stop. Live executor counts inside
//!    the maximum are Spark dynamic allocation's business;
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
use crate::{from_json, record_json, to_json, Backends, BurstEvent, Handler, HandlerError, RecordError, Settings, SparkMetrics, Trigger, Weights};
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
        let current = state.last.as_ref().map(|d| d.applied).unwrap_or_else(|| {
            let mut a = ScalingAction::spark_default(self.executors_of(&app.capacity).max(1));
            a.prewarm = app.capacity.initial_executors;
            a
        });
        let m = state.metrics;
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

    /// The capacity an action asks of EMR Serverless (initial capacity is the prewarmer's).
    pub fn capacity_for(&self, action: &ScalingAction, app: &AppStatus) -> Capacity {
        Capacity {
            max_vcpu: action.executors * self.settings.vcpu_per_executor,
            max_memory_gb: action.executors * action.memory_gb,
            initial_executors: app.capacity.initial_executors,
            worker_vcpu: self.settings.vcpu_per_executor,
            worker_memory_gb: action.memory_gb,
        }
    }

    /// Apply the decision to EMR Serverless; the pending-capacity write it implies joins the
    /// decision record's batch (`writes`), so that it costs no round trip of its own.
    async fn apply_emr(&self, decision: &Decision, app: &AppStatus, writes: &mut Vec<StoreWrite>) -> Result<String, HandlerError> {
        let want = self.capacity_for(&decision.applied, app);
        if want.max_vcpu == app.capacity.max_vcpu && want.max_memory_gb == app.capacity.max_memory_gb {
            return Ok("unchanged".into());
        }
        if self.settings.dry_run {
            return Ok("dry run".into());
        }
        if app.state.accepts_update() {
            self.backends.emr.update_capacity(&want).await?;
            writes.push(StoreWrite::Delete { key: self.keys.pending_capacity() });
            Ok("updated".into())
        } else {
            writes.push(StoreWrite::Set { key: self.keys.pending_capacity(), value: to_json(&want), ttl: None });
            Ok(format!("deferred: application is {:?}; pending until it stops", app.state))
        }
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
        let mut keys = vec![self.keys.metrics(), self.keys.cluster(), self.keys.weights(), self.keys.last_decision(), self.keys.shuffle_temperature()];
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
        // Everything this invocation stores goes in one batch at the end, with the decision.
        let mut writes = Vec::new();
        if let Some(newest) = new_metrics.iter().copied().max_by(|a, b| a.timestamp.total_cmp(&b.timestamp)) {
            if state.metrics.is_none_or(|m| newest.timestamp >= m.timestamp) {
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
        let emr = self.apply_emr(&decision, &app, &mut writes).await?;
        let hot_tier = self.apply_hot_tier(&decision).await?;
        // A dry run changes nothing at EMR Serverless, so it starts no cooldown.
        let last_scale_up_s = if emr == "dry run" { last_scale_up } else { control::scale_up_time(last_scale_up, &obs.current, &decision.applied, now) };
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
            emr,
            hot_tier,
            last_scale_up_s,
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
