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
//! 5. record the decision (store, `scaling-decisions`, a log line whose `decision` field is the
//!    record as a JSON object, see [`crate::records`]) and its metrics ([`crate::metrics`]). With
//!    dry run on, steps 3 and 4 are skipped and the record says so.
//!
//! Exactly one decision per set of records. Decisions take a lease in the store (one at a time, across
//! the Kafka mappings and the schedule); under it, each record is checked against the highest offset
//! already decided on its topic and partition, and records without an offset (an OpenFaaS request
//! without the header) and burst events (one republished gets new offsets) against a digest of their
//! content. Records seen before are dropped; a batch of nothing new decides nothing. The offsets and
//! digests are written in the transaction that records the decision, so a batch whose invocation
//! failed or died is decided when it comes again, however its records are cut into batches. A Kafka
//! batch that finds the lease taken fails (the event source delivers it again); a schedule tick skips.
//! Round trips to the store: the lease, one read (state and marks), one transaction (everything
//! written, the decision published while it is in flight), the lease's release.
//!
//! When the model cannot be loaded (a missing, truncated or tampered file; `SPARKPILOT_SCALING_MODEL_SHA256`
//! pins its digest) or fails to run, decisions come from the reference rule the policy was trained
//! from (`control::reference_rule`), and each record says so in `fallback` and `model_version`.

use crate::outcome::DecisionOutcome;
use crate::ports::{AppStatus, Capacity, StoreWrite};
use crate::wire::{ClusterBurst, DecisionRecord, Keys};
use crate::{
    read_or_discard, record_json, to_json, ActuationPart, Applies, Backends, BurstEvent, ExecutorReport,
    Handler, HandlerError, JobRunConfig, RecordError, Setting, Settings, SparkMetrics, Trigger, Weights,
};
use async_trait::async_trait;
use control::actuation::Lever;
use control::{
    FeatureBuilder, GuardrailChange, GuardrailContext, Guardrails, Observation, ScalingAction, StepWindow,
};
use cost_model::{PriceBook, WorkerSpec};
use latency_model::{LatencyModel, Tier};
use policy::ScalingPolicy;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The model built into the binary; `SPARKPILOT_SCALING_MODEL` overrides it.
pub const EMBEDDED_MODEL: &[u8] = models::SCALING_PPO;
/// Decisions kept in the store's log.
const DECISION_LOG: usize = 1_000;
/// Load samples kept for the prewarmer (one a second for two hours at most).
const LOAD_HISTORY: usize = control::PREWARM_HISTORY;
/// How long a record without an offset is remembered for redelivery detection.
const SEEN_TTL: Duration = Duration::from_secs(24 * 3_600);
/// How long the highest decided offset of a partition is kept after its last decision: far longer than
/// an event source's redelivery, short enough that a topic deleted and created again (offsets from 0)
/// is muted for minutes only.
const OFFSETS_TTL: Duration = Duration::from_secs(15 * 60);
/// Longest a decision holds the lease: past it (an invocation that died) the next one goes ahead.
const LEASE_TTL: Duration = Duration::from_secs(30);
/// How long an invocation waits for the lease before giving up.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// Largest latency an observation carries, ms (a day): backlog over a rate near zero is unbounded.
const MAX_LATENCY_MS: f64 = 86_400_000.0;
use control::DEFAULT_BYTES_PER_EVENT;

pub struct ScalingDecision {
    settings: Settings,
    keys: Keys,
    backends: Backends,
    /// `None` when the model could not be loaded: the reference rule decides.
    policy: Option<ScalingPolicy>,
    state: FeatureBuilder,
    /// Why the model is not in use, when it is not.
    model_problem: Option<String>,
    guardrails: Guardrails,
    prices: PriceBook,
}

/// The version recorded with decisions made by the reference rule.
pub const REFERENCE_RULE_VERSION: &str = "reference-rule";

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
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
    /// Why the reference rule decided instead of the model, when it did.
    pub fallback: Option<String>,
}

impl ScalingDecision {
    pub fn new(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError> {
        let state = FeatureBuilder::for_policy(settings.vcpu_per_executor as f64, &LatencyModel::embedded());
        let (policy, model_problem) = match Self::load_model(settings, state.clone()) {
            Ok(p) => (Some(p), None),
            Err(problem) => {
                tracing::error!(%problem, "scaling model unusable; deciding with the reference rule");
                (None, Some(problem))
            }
        };
        let prices =
            PriceBook::embedded(&settings.region).map_err(|e| HandlerError::Config(e.to_string()))?;
        Ok(Self {
            settings: settings.clone(),
            keys: Keys::new(&settings.key_prefix),
            backends: backends.clone(),
            policy,
            state,
            model_problem,
            guardrails: Guardrails::new(settings.guardrails)?,
            prices,
        })
    }

    /// The configured model, checked against the pinned digest if one is set.
    fn load_model(settings: &Settings, state: FeatureBuilder) -> Result<ScalingPolicy, String> {
        let (label, bytes) = match &settings.scaling_model {
            Some(path) => (
                path.display().to_string(),
                std::borrow::Cow::Owned(
                    std::fs::read(path)
                        .map_err(|e| format!("SPARKPILOT_SCALING_MODEL {}: {e}", path.display()))?,
                ),
            ),
            None => ("embedded:scaling-ppo.onnx".to_string(), std::borrow::Cow::Borrowed(EMBEDDED_MODEL)),
        };
        if let Some(want) = &settings.scaling_model_sha256 {
            let got = sha256_hex(&bytes);
            if &got != want {
                return Err(format!(
                    "{label}: SHA-256 {got} is not the pinned {want} (SPARKPILOT_SCALING_MODEL_SHA256)"
                ));
            }
        }
        ScalingPolicy::from_bytes(&label, &bytes, state).map_err(|e| e.to_string())
    }

    pub fn model_version(&self) -> &str {
        self.policy.as_ref().map_or(REFERENCE_RULE_VERSION, |p| p.version())
    }

    /// Why decisions come from the reference rule, if they do.
    pub fn model_problem(&self) -> Option<&str> {
        self.model_problem.as_deref()
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
        let capacity_rate = running as f64 * self.state.executor_rate(bytes);
        let cpu = m.and_then(|m| m.cpu_utilisation).unwrap_or(if capacity_rate > 0.0 {
            processing_rate / capacity_rate
        } else {
            0.0
        });
        let latency_ms = m.map_or(0.0, |m| {
            (m.batch_duration_ms
                + if processing_rate > 0.0 { backlog / processing_rate * 1_000.0 } else { 0.0 })
            .min(MAX_LATENCY_MS)
        });
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

    /// Policy (or the reference rule when the model is unusable), then guardrails. No I/O: this is
    /// what the decision benchmark measures.
    pub fn decide(
        &self,
        obs: &Observation,
        last_scale_up_s: Option<f64>,
        step_window: Option<StepWindow>,
    ) -> Result<Decision, HandlerError> {
        let model = match &self.policy {
            Some(p) => p.decide(obs).map_err(|e| format!("the model failed: {e}")),
            None => Err(self.model_problem.clone().unwrap_or_default()),
        };
        let (proposed, fallback) = match model {
            Ok(a) => (a, None),
            Err(why) => (control::reference_rule::reference_action(&self.state, obs)?, Some(why)),
        };
        let worker = WorkerSpec {
            vcpu: self.settings.vcpu_per_executor as f64,
            memory_gb: proposed.memory_gb as f64,
            disk_gb: 20.0,
        };
        let ctx = GuardrailContext {
            now_s: obs.time_s,
            last_scale_up_s,
            burst: obs.burst_signal,
            usd_per_executor_hour: self.prices.emr_rate_per_second(&worker) * 3_600.0,
            step_window,
            throughput: obs.into(),
        };
        let (applied, changes) = self.guardrails.apply(proposed, &obs.current, &ctx);
        Ok(Decision { observation: *obs, proposed, applied, changes, fallback })
    }

    /// The application's capacity for a decision: the maximum is the guardrails' ceiling on executors
    /// (the room the in-job agent scales in), shaped for the decided memory; the pre-initialised
    /// workers stay the prewarmer's (a pending wish of its own included).
    pub fn ceiling_for(
        &self,
        action: &ScalingAction,
        app: &AppStatus,
        pending: Option<&Capacity>,
    ) -> Capacity {
        let most = self.settings.guardrails.max_executors.max(1);
        Capacity {
            max_vcpu: most * self.settings.vcpu_per_executor,
            max_memory_gb: most * action.memory_gb,
            initial_executors: pending
                .map_or(app.capacity.initial_executors, |p| p.initial_executors)
                .min(most),
            worker_vcpu: self.settings.vcpu_per_executor,
            worker_memory_gb: action.memory_gb,
        }
    }

    /// Send each setting of the decision where the service takes it in the application's present
    /// state (`control::actuation`), and say for each what became of it. Store writes it implies
    /// (pending capacity, next run) join the decision record's batch.
    async fn actuate(
        &self,
        decision: &Decision,
        app: &AppStatus,
        before: &ScalingAction,
        pending: Option<&Capacity>,
        agent_seen: bool,
        writes: &mut Vec<StoreWrite>,
    ) -> Result<Actuated, HandlerError> {
        let decided = &decision.applied;
        let ceiling = self.ceiling_for(decided, app, pending);
        let (ceiling_part, emr) = self.apply_ceiling(&ceiling, app, writes).await?;
        let mut parts = vec![ceiling_part];
        let (running, next_run) = if app.state.accepts_update() {
            self.for_next_start(decided, before, &ceiling, app, &mut parts, writes)
        } else {
            self.for_running_job(decided, before, app, agent_seen, &mut parts, writes)
        };
        Ok(Actuated { parts, running, next_run, emr })
    }

    /// The ceiling: UpdateApplication now if the application takes it, else at its next stop.
    /// Returns its part of the record and what became of it at EMR.
    async fn apply_ceiling(
        &self,
        ceiling: &Capacity,
        app: &AppStatus,
        writes: &mut Vec<StoreWrite>,
    ) -> Result<(ActuationPart, String), HandlerError> {
        let accepts = app.state.accepts_update();
        let unchanged = if accepts {
            *ceiling == app.capacity
        } else {
            (ceiling.max_vcpu, ceiling.max_memory_gb, ceiling.worker_memory_gb)
                == (app.capacity.max_vcpu, app.capacity.max_memory_gb, app.capacity.worker_memory_gb)
        };
        let (applies, why, emr) = if unchanged {
            (Applies::Unchanged, "already the application's".to_string(), "unchanged".to_string())
        } else if self.settings.dry_run {
            (Applies::DryRun, "dry run".to_string(), "dry run".to_string())
        } else if accepts {
            self.backends.emr.update_capacity(ceiling).await?;
            writes.push(StoreWrite::Delete { key: self.keys.pending_capacity() });
            (
                Applies::Now,
                format!("the application is {:?}, so it accepts UpdateApplication", app.state),
                "updated".to_string(),
            )
        } else {
            writes.push(StoreWrite::Set {
                key: self.keys.pending_capacity(),
                value: to_json(ceiling),
                ttl: None,
            });
            let why = format!("the application is {:?}; UpdateApplication needs CREATED or STOPPED, so it waits for the next stop", app.state);
            (Applies::WhenStopped, why.clone(), format!("pending: {why}"))
        };
        let part = ActuationPart {
            setting: Setting::MaximumCapacity,
            value: format!("{} vCPU, {} GB", ceiling.max_vcpu, ceiling.max_memory_gb),
            applies,
            via: "UpdateApplication maximumCapacity".into(),
            why,
        };
        Ok((part, emr))
    }

    /// No job runs (the application is CREATED or STOPPED): the whole decision is what the next
    /// StartJobRun starts with. Returns what runs and the next run's configuration.
    fn for_next_start(
        &self,
        decided: &ScalingAction,
        before: &ScalingAction,
        ceiling: &Capacity,
        app: &AppStatus,
        parts: &mut Vec<ActuationPart>,
        writes: &mut Vec<StoreWrite>,
    ) -> (ScalingAction, Option<JobRunConfig>) {
        let dry = self.settings.dry_run;
        let running = ScalingAction { prewarm: ceiling.initial_executors, ..*decided };
        let next = JobRunConfig::for_action(&running);
        let why =
            format!("the application is {:?}: no job runs; the next StartJobRun starts with it", app.state);
        for lever in [Lever::Executors, Lever::MemoryPerExecutor, Lever::Codec] {
            let applies = if dry { Applies::DryRun } else { Applies::NextJobRun };
            parts.push(lever_part(lever, decided, applies, why.clone()));
        }
        parts.push(self.tier_part(decided, before, dry));
        if !dry {
            writes.push(StoreWrite::Set { key: self.keys.next_run(), value: to_json(&next), ttl: None });
        }
        (running, Some(next))
    }

    /// A job may be running: executors go to it through the agent, the tier through
    /// shuffle-router; memory and codec wait for the next run. Returns what runs and the next run's
    /// configuration if the decision changed one of those.
    fn for_running_job(
        &self,
        decided: &ScalingAction,
        before: &ScalingAction,
        app: &AppStatus,
        agent_seen: bool,
        parts: &mut Vec<ActuationPart>,
        writes: &mut Vec<StoreWrite>,
    ) -> (ScalingAction, Option<JobRunConfig>) {
        let dry = self.settings.dry_run;
        let running = control::actuation::running_action(
            decided,
            &ScalingAction { prewarm: app.capacity.initial_executors, ..*before },
        );
        let room = app.capacity.max_vcpu / self.settings.vcpu_per_executor.max(1);
        let executors = if decided.executors == before.executors {
            lever_part(Lever::Executors, decided, Applies::Unchanged, "the job's target already".into())
        } else if dry {
            lever_part(
                Lever::Executors,
                decided,
                Applies::DryRun,
                "dry run: the agent ignores dry-run decisions".into(),
            )
        } else if decided.executors > room {
            lever_part(Lever::Executors, decided, Applies::Now, format!("capped at {room} by the application's maximum capacity until it stops (the larger ceiling waits)"))
        } else {
            let heard = if agent_seen {
                ""
            } else {
                "; no in-job agent has reported on spark-metrics yet, so nothing confirms the job follows it"
            };
            lever_part(
                Lever::Executors,
                decided,
                Applies::Now,
                format!(
                    "the application is {:?}: the agent moves the running job's executors{heard}",
                    app.state
                ),
            )
        };
        parts.push(executors);
        parts.push(self.tier_part(decided, before, dry));
        let mut next_run = None;
        for lever in [Lever::MemoryPerExecutor, Lever::Codec] {
            if lever.differs(decided, before) {
                let applies = if dry { Applies::DryRun } else { Applies::NextJobRun };
                let why = "fixed for the life of a SparkContext: the running job keeps its own";
                parts.push(lever_part(lever, decided, applies, why.into()));
                next_run = Some(JobRunConfig::for_action(decided));
            } else {
                parts.push(lever_part(
                    lever,
                    decided,
                    Applies::Unchanged,
                    "the running job's already".into(),
                ));
            }
        }
        if let (Some(next), false) = (&next_run, dry) {
            writes.push(StoreWrite::Set { key: self.keys.next_run(), value: to_json(next), ttl: None });
        }
        (running, next_run)
    }

    fn tier_part(&self, decided: &ScalingAction, before: &ScalingAction, dry: bool) -> ActuationPart {
        let (applies, why) = if dry {
            (Applies::DryRun, "dry run: shuffle-router follows only applied decisions".to_string())
        } else if decided.tier == before.tier {
            (Applies::Unchanged, "where the job's blocks already go".to_string())
        } else {
            (
                Applies::Now,
                "shuffle-router places the job's next hot and intermediate blocks there".to_string(),
            )
        };
        let lever = Lever::ShuffleTier;
        ActuationPart {
            setting: lever.into(),
            value: lever.value(decided),
            applies,
            via: lever.via().to_string(),
            why,
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

/// A lever's part of the decision record.
fn lever_part(lever: Lever, value: &ScalingAction, applies: Applies, why: String) -> ActuationPart {
    ActuationPart {
        setting: lever.into(),
        value: lever.value(value),
        applies,
        via: lever.via().to_string(),
        why,
    }
}

/// Who a record is, for redelivery detection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RecordId {
    /// Kafka's own position.
    Offset { topic: String, partition: i64, offset: i64 },
    /// A digest of the record's topic, key and value: for records without a position, and for burst
    /// events (one event republished gets new offsets, and must not take a second step).
    Content(String),
}

/// FNV-1a over the record's topic, key and value.
fn content_digest(m: &crate::KafkaMessage) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let value = match &m.value {
        Some(Ok(v)) => v.as_slice(),
        _ => &[],
    };
    let parts: [&[u8]; 3] = [m.topic.as_bytes(), m.key.as_deref().unwrap_or_default(), value];
    for part in parts {
        for &b in part.iter().chain((part.len() as u64).to_le_bytes().iter()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A usable record of a batch.
enum Input {
    Metrics(SparkMetrics),
    Burst(BurstEvent),
}

/// A Kafka batch decoded: usable records with who they are, and an error for each bad one.
#[derive(Default)]
struct Batch {
    inputs: Vec<(Vec<RecordId>, Input)>,
    errors: Vec<RecordError>,
    /// Positions of the bad records: they are not decided on, but a redelivery of them is still a
    /// redelivery.
    bad: Vec<RecordId>,
}

impl ScalingDecision {
    fn decode_batch(&self, records: &[crate::KafkaMessage], wall_s: f64) -> Batch {
        let skew = self.settings.max_clock_skew_s;
        let mut batch = Batch::default();
        for m in records {
            let mut ids = Vec::with_capacity(2);
            if m.offset >= 0 {
                ids.push(RecordId::Offset {
                    topic: m.topic.to_string(),
                    partition: m.partition,
                    offset: m.offset,
                });
            }
            let is_metrics = *m.topic == *self.settings.topics.spark_metrics;
            if m.offset < 0 || !is_metrics {
                ids.push(RecordId::Content(content_digest(m)));
            }
            let input = if m.ahead_of_clock(skew, wall_s) {
                Err(format!(
                    "record timestamp {} ms is more than {skew} s ahead of this function's clock",
                    m.timestamp_ms
                ))
            } else if is_metrics {
                match record_json::<SparkMetrics>(m) {
                    Ok(Some(x)) => match x.invalid_field() {
                        Some(f) => Err(format!("spark-metrics: {f}")),
                        None if x.timestamp > wall_s + skew => Err(format!(
                            "spark-metrics timestamp {} is more than {skew} s ahead of this function's clock",
                            x.timestamp
                        )),
                        None => Ok(Some(Input::Metrics(x))),
                    },
                    other => other.map(|_| None),
                }
            } else {
                match record_json::<BurstEvent>(m) {
                    Ok(Some(x))
                        if !(x.time_s.is_finite()
                            && x.predicted_load.is_finite()
                            && x.predicted_peak.is_finite()
                            && x.total_rate.is_finite()) =>
                    {
                        Err("burst event has a field that is not a finite number".into())
                    }
                    Ok(Some(x)) if x.time_s > wall_s + skew => Err(format!(
                        "burst event time_s {} is more than {skew} s ahead of this function's clock",
                        x.time_s
                    )),
                    other => other.map(|x| x.map(Input::Burst)),
                }
            };
            match input {
                Ok(Some(x)) => batch.inputs.push((ids, x)),
                Ok(None) => batch.bad.extend(ids),
                Err(error) => {
                    batch.errors.push(RecordError { record: m.locator(), error });
                    batch.bad.extend(ids);
                }
            }
        }
        batch
    }

    /// Take the decision lease, waiting a little for another decision to finish. `None` if it
    /// stayed taken.
    async fn take_lease(&self) -> Result<Option<Vec<u8>>, HandlerError> {
        static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let token = format!(
            "{}-{}-{}",
            std::process::id(),
            crate::events::now_s(),
            TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
        .into_bytes();
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        loop {
            if self.backends.store.set_if_absent(&self.keys.decision_lease(), &token, LEASE_TTL).await? {
                return Ok(Some(token));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[async_trait]
impl Handler for ScalingDecision {
    fn name(&self) -> &'static str {
        <Self as crate::Function>::NAME
    }

    async fn handle(&self, trigger: Trigger) -> Result<crate::Outcome, HandlerError> {
        let Some(token) = self.take_lease().await? else {
            let why = format!("another decision has held the lease for more than {} s", LEASE_WAIT.as_secs());
            return match trigger {
                // The event source delivers the batch again; its records are then decided once.
                Trigger::Kafka(_) => Err(HandlerError::Busy(why)),
                _ => Ok(crate::Outcome::Decision(DecisionOutcome::Skipped { skipped: why })),
            };
        };
        let result = self.decide_and_apply(trigger).await;
        // Released whatever happened: a failed decision must not hold the next one back for the TTL.
        if let Err(e) = self.backends.store.delete_if_equals(&self.keys.decision_lease(), &token).await {
            tracing::warn!(error = %e, "decision lease not released; it expires by itself");
        }
        result
    }
}

/// The stored state a decision reads, in the order of [`ScalingDecision::state_keys`].
const STATE_KEYS: usize = 6;

/// The records of a batch by who they are, and what the store says was decided of them before:
/// the highest decided offset per partition and the content digests already seen.
struct Redelivery {
    ids: Vec<RecordId>,
    partitions: Vec<(String, i64)>,
    digests: Vec<String>,
    decided: HashMap<(String, i64), i64>,
    seen: HashSet<String>,
}

impl Redelivery {
    fn of(batch: &Batch) -> Self {
        let ids: Vec<RecordId> =
            batch.inputs.iter().flat_map(|(ids, _)| ids).chain(&batch.bad).cloned().collect();
        let mut partitions: Vec<(String, i64)> = ids
            .iter()
            .filter_map(|id| match id {
                RecordId::Offset { topic, partition, .. } => Some((topic.clone(), *partition)),
                RecordId::Content(_) => None,
            })
            .collect();
        partitions.sort();
        partitions.dedup();
        let digests = ids
            .iter()
            .filter_map(|id| match id {
                RecordId::Content(d) => Some(d.clone()),
                RecordId::Offset { .. } => None,
            })
            .collect();
        Self { ids, partitions, digests, decided: HashMap::new(), seen: HashSet::new() }
    }

    /// The store keys that say what was decided: one per partition, then one per digest.
    fn keys(&self, keys: &Keys) -> Vec<String> {
        let offsets = self.partitions.iter().map(|(t, p)| keys.decided_offset(t, *p));
        offsets.chain(self.digests.iter().map(|d| keys.seen(d))).collect()
    }

    /// Take in what the store returned for [`Self::keys`], in the same order.
    fn read(&mut self, got: &[Option<Vec<u8>>]) {
        let (offsets, digests) = got.split_at(self.partitions.len());
        self.decided = self
            .partitions
            .iter()
            .zip(offsets)
            .filter_map(|(p, v)| {
                let offset = std::str::from_utf8(v.as_deref()?).ok()?.parse().ok()?;
                Some((p.clone(), offset))
            })
            .collect();
        self.seen =
            self.digests.iter().zip(digests).filter(|(_, v)| v.is_some()).map(|(d, _)| d.clone()).collect();
    }

    fn is_old(&self, id: &RecordId) -> bool {
        match id {
            RecordId::Offset { topic, partition, offset } => {
                self.decided.get(&(topic.clone(), *partition)).is_some_and(|&o| *offset <= o)
            }
            RecordId::Content(d) => self.seen.contains(d),
        }
    }

    /// Mark every record of the batch decided (written in the transaction that records the decision).
    fn mark_decided(&self, keys: &Keys, writes: &mut Vec<StoreWrite>) {
        let mut highest: HashMap<(String, i64), i64> = HashMap::new();
        for id in &self.ids {
            match id {
                RecordId::Offset { topic, partition, offset } => {
                    let h = highest.entry((topic.clone(), *partition)).or_insert(*offset);
                    *h = (*h).max(*offset);
                }
                RecordId::Content(d) => writes.push(StoreWrite::Set {
                    key: keys.seen(d),
                    value: b"1".to_vec(),
                    ttl: Some(SEEN_TTL),
                }),
            }
        }
        for ((topic, partition), offset) in highest {
            let offset = offset.max(self.decided.get(&(topic.clone(), partition)).copied().unwrap_or(-1));
            writes.push(StoreWrite::Set {
                key: keys.decided_offset(&topic, partition),
                value: offset.to_string().into_bytes(),
                ttl: Some(OFFSETS_TTL),
            });
        }
    }
}

/// What triggered a decision, as the record names it: "schedule", "direct" or the Kafka topics.
fn trigger_name(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Schedule { .. } => "schedule".to_string(),
        Trigger::Direct(_) => "direct".to_string(),
        Trigger::Kafka(records) => {
            let mut topics: Vec<&str> = records.iter().map(|r| &*r.topic).collect();
            topics.sort();
            topics.dedup();
            topics.join(",")
        }
    }
}

impl ScalingDecision {
    async fn decide_and_apply(&self, trigger: Trigger) -> Result<crate::Outcome, HandlerError> {
        let wall = crate::events::now_s();
        let now = trigger.time_s(self.settings.max_clock_skew_s);
        let mut batch = self.decode_trigger(&trigger, wall)?;
        // One read: the stored state, then what was decided of this batch's records before.
        let mut redelivery = Redelivery::of(&batch);
        let mut keys = self.state_keys().to_vec();
        keys.extend(redelivery.keys(&self.keys));
        let got = self.backends.store.get_many(&keys).await?;
        redelivery.read(&got[STATE_KEYS..]);
        let records = match &trigger {
            Trigger::Kafka(r) => r.len(),
            _ => 0,
        };
        let before = batch.inputs.len();
        batch.inputs.retain(|(ids, _)| !ids.iter().any(|id| redelivery.is_old(id)));
        let repeated = before - batch.inputs.len();
        let bad_new = batch.bad.iter().any(|id| !redelivery.is_old(id));
        if records > 0 && batch.inputs.is_empty() && !bad_new {
            tracing::info!(records, "every record of the batch was decided on before; skipped");
            return Ok(crate::Outcome::Decision(DecisionOutcome::Duplicate {
                duplicate: true,
                records,
                seen_before: records,
            }));
        }
        let mut discarded = Vec::new();
        let (mut state, pending) =
            self.read_state(&keys[..STATE_KEYS], &got[..STATE_KEYS], wall, &mut discarded);
        let mut new_metrics = Vec::new();
        let mut burst_events = Vec::new();
        for (_, input) in std::mem::take(&mut batch.inputs) {
            match input {
                Input::Metrics(m) => new_metrics.push(m),
                Input::Burst(b) => burst_events.push(b),
            }
        }
        // Everything this invocation stores goes in one batch at the end, with the decision.
        let mut writes = Vec::new();
        self.take_in(&mut state, &new_metrics, &burst_events, &mut writes);
        redelivery.mark_decided(&self.keys, &mut writes);
        let reason = if !burst_events.is_empty() {
            "burst"
        } else if !new_metrics.is_empty() {
            "new spark metrics"
        } else {
            "periodic check"
        };
        let record = self
            .decide_and_record(&state, pending.as_ref(), now, trigger_name(&trigger), reason, &mut writes)
            .await?;
        crate::metrics::emit(
            self.settings.emf_metrics,
            "scaling-decision",
            now,
            &crate::metrics::decision_metrics(&record, batch.errors.len()),
        );
        Ok(crate::Outcome::Decision(DecisionOutcome::Decided {
            decision: Box::new(record),
            errors: batch.errors,
            seen_before: (repeated > 0).then_some(repeated),
            discarded_state: discarded,
        }))
    }

    /// The records a trigger carries: a Kafka batch decoded per record, or the metrics a direct call
    /// may carry (`{"spark_metrics": {...}}`); a schedule carries none.
    fn decode_trigger(&self, trigger: &Trigger, wall: f64) -> Result<Batch, HandlerError> {
        let mut batch = match trigger {
            Trigger::Kafka(records) => self.decode_batch(records, wall),
            _ => Batch::default(),
        };
        if let Trigger::Direct(v) = trigger {
            if let Some(m) = v.get("spark_metrics") {
                let x: SparkMetrics = serde_json::from_value(m.clone())
                    .map_err(|e| HandlerError::BadRequest(format!("spark_metrics: {e}")))?;
                if let Some(f) = x.invalid_field() {
                    return Err(HandlerError::BadRequest(format!("spark_metrics: {f}")));
                }
                batch.inputs.push((Vec::new(), Input::Metrics(x)));
            }
        }
        Ok(batch)
    }

    /// The keys of the state a decision reads, in the order [`Self::read_state`] takes them.
    fn state_keys(&self) -> [String; STATE_KEYS] {
        [
            self.keys.metrics(),
            self.keys.cluster(),
            self.keys.weights(),
            self.keys.last_decision(),
            self.keys.shuffle_temperature(),
            self.keys.pending_capacity(),
        ]
    }

    /// The stored state and the capacity waiting for a stop. A part that cannot be read (or that is
    /// stamped ahead of the clock) is started afresh and named in `discarded`.
    fn read_state(
        &self,
        keys: &[String],
        got: &[Option<Vec<u8>>],
        wall: f64,
        discarded: &mut Vec<String>,
    ) -> (DecisionState, Option<Capacity>) {
        let mut state = DecisionState {
            metrics: read_or_discard(&keys[0], got[0].as_ref(), discarded),
            cluster: read_or_discard(&keys[1], got[1].as_ref(), discarded),
            weights: read_or_discard(&keys[2], got[2].as_ref(), discarded),
            last: read_or_discard(&keys[3], got[3].as_ref(), discarded),
            shuffle_temperature: read_or_discard(&keys[4], got[4].as_ref(), discarded),
        };
        let pending = read_or_discard(&keys[5], got[5].as_ref(), discarded);
        let skew = self.settings.max_clock_skew_s;
        if state.metrics.as_ref().is_some_and(|m| m.timestamp > wall + skew || m.invalid_field().is_some()) {
            discarded.push(format!("{} (stamped ahead of the clock or out of range)", keys[0]));
            state.metrics = None;
        }
        (state, pending)
    }

    /// Fold the batch's new metrics and burst events into the state, queueing the metrics' writes.
    fn take_in(
        &self,
        state: &mut DecisionState,
        new_metrics: &[SparkMetrics],
        burst_events: &[BurstEvent],
        writes: &mut Vec<StoreWrite>,
    ) {
        if let Some(newest) = new_metrics.iter().max_by(|a, b| a.timestamp.total_cmp(&b.timestamp)).cloned() {
            if state.metrics.as_ref().is_none_or(|m| newest.timestamp >= m.timestamp) {
                state.metrics = Some(newest);
            }
            let history: Vec<Vec<u8>> = new_metrics
                .iter()
                .map(|m| to_json(&control::LoadSample { time_s: m.timestamp, rate: m.input_rate }))
                .collect();
            writes.push(StoreWrite::PushCapped {
                key: self.keys.load_history(),
                values: history,
                cap: LOAD_HISTORY,
            });
            writes.push(StoreWrite::Set {
                key: self.keys.metrics(),
                value: to_json(&state.metrics),
                ttl: None,
            });
        }
        if let Some(event) = burst_events.last() {
            // The event is newer than what the store may hold if burst-signal's write raced ours.
            if let Some(c) = state.cluster.as_mut() {
                c.burst = event.burst;
                c.predicted_load = event.predicted_load;
                c.predicted_peak = c.predicted_peak.max(event.predicted_peak);
            }
        }
    }

    /// Decide from the state, apply, and store and publish the record with `writes`.
    async fn decide_and_record(
        &self,
        state: &DecisionState,
        pending: Option<&Capacity>,
        now: f64,
        trigger: String,
        reason: &str,
        writes: &mut Vec<StoreWrite>,
    ) -> Result<DecisionRecord, HandlerError> {
        let app = self.backends.emr.get_application().await?;
        let obs = self.observe(state, &app, now);
        // Times ahead of now (written under a clock that was wrong) hold nothing back.
        let last = state.last.as_ref();
        let last_scale_up = last.and_then(|d| d.last_scale_up_s).filter(|&t| t <= now);
        let window = last.and_then(|d| d.step_window).filter(|w| w.start_s <= now);
        let decision = self.decide(&obs, last_scale_up, window)?;
        let agent_seen = state.metrics.as_ref().is_some_and(|m| m.agent.is_some());
        let actuated = self.actuate(&decision, &app, &obs.current, pending, agent_seen, writes).await?;
        let hot_tier = self.apply_hot_tier(&decision).await?;
        // A dry run changes nothing, so it starts no cooldown and no step window.
        let dry = self.settings.dry_run;
        let last_scale_up_s = if dry {
            last_scale_up
        } else {
            control::scale_up_time(last_scale_up, &obs.current, &decision.applied, now)
        };
        let step_window = if dry {
            window
        } else {
            Some(StepWindow::after(window, &obs.current, now, self.guardrails.config()))
        };
        let agent = state.metrics.as_ref().and_then(|m| m.agent.as_ref());
        let executors = ExecutorReport {
            requested: decision.applied.executors,
            agent_target: agent.map(|a| a.target_executors),
            live: state.metrics.as_ref().and_then(|m| m.running_executors),
            agent_decision_time_s: agent.and_then(|a| a.decision_time_s),
            agent_status: agent.map(|a| a.status.clone()),
        };
        let reason = match reason {
            "burst" => format!("burst {}", if obs.burst_signal { "raised" } else { "cleared" }),
            other => other.to_string(),
        };
        if let Some(why) = &decision.fallback {
            tracing::error!(why, "decided with the reference rule");
        }
        let record = DecisionRecord {
            time_s: now,
            trigger,
            reason,
            inputs: obs,
            proposed: decision.proposed,
            applied: decision.applied,
            guardrail_changes: decision.changes.clone(),
            model_version: if decision.fallback.is_some() {
                REFERENCE_RULE_VERSION.to_string()
            } else {
                self.model_version().to_string()
            },
            weights_version: state.weights.as_ref().map_or(0, |w| w.version),
            dry_run: dry,
            emr: actuated.emr,
            hot_tier,
            last_scale_up_s,
            running: Some(actuated.running),
            actuation: actuated.parts,
            executors: Some(executors),
            next_run: actuated.next_run,
            step_window,
            fallback: decision.fallback,
        };
        self.store_and_publish(&record, now, writes).await?;
        Ok(record)
    }

    /// Store the record with `writes` (the last decision, the capped log), publish it to
    /// `scaling-decisions`, and log it.
    async fn store_and_publish(
        &self,
        record: &DecisionRecord,
        now: f64,
        writes: &mut Vec<StoreWrite>,
    ) -> Result<(), HandlerError> {
        let bytes = to_json(record);
        writes.push(StoreWrite::Set { key: self.keys.last_decision(), value: bytes.clone(), ttl: None });
        writes.push(StoreWrite::PushCapped {
            key: self.keys.decisions(),
            values: vec![bytes.clone()],
            cap: DECISION_LOG,
        });
        // The store and the topic are independent: write both at once, one round trip each.
        let publish = self.backends.publisher.publish_at(
            &self.settings.topics.scaling_decisions,
            "decision",
            &bytes,
            now,
        );
        let (stored, published) = tokio::join!(self.backends.store.write(writes), publish);
        stored?;
        published?;
        // The record's fields as JSON fields of the line (not one escaped string), for Logs Insights.
        if tracing::enabled!(tracing::Level::INFO) {
            match serde_json::value::RawValue::from_string(String::from_utf8_lossy(&bytes).into_owned()) {
                Ok(raw) => println!(
                    "{}",
                    crate::records::record_line(module_path!(), "decision", "scaling decision", &raw)
                ),
                Err(_) => println!(
                    "{}",
                    crate::records::record_line(module_path!(), "decision", "scaling decision", record)
                ),
            }
        }
        Ok(())
    }
}
