//! burst-signal: the cluster's view of the edge gateways.
//!
//! Triggered by batches from `iot-metadata`. Each edge's moving-average windows live in the store
//! (the function is stateless). The batch is applied by [`control::cluster::apply_batch`], the code
//! the arena runs over its simulated gateways: records in time order, a cluster-level
//! [`control::BurstDetector`] over the summed edge load (one sample per second), and a cluster burst
//! raised when that detector fires or a quorum of edges signal, cleared only when both have settled.
//! A change is published to `scaling-requests`. Each batch reports the burst state, the edges
//! reporting and the records refused as metrics ([`crate::metrics::burst_metrics`]).
//!
//! Round trips: the state is written with a versioned write (one atomic script). A warm container
//! whose last write is still the newest version, and which has seen all of the batch's edges, skips
//! the read: one round trip per batch, whatever its size. Otherwise it reads the batch's edges, the
//! cluster and the version in one MGET first, and if another writer wins the race it reads again.

use crate::wire::{ClusterBurst, EdgeRecord, EdgeState, Keys};
use crate::{
    read_or_discard, record_json, to_json, Backends, BurstEvent, Handler, HandlerError, RecordError,
    Settings, Trigger,
};
use async_trait::async_trait;
pub use control::cluster::apply_batch;
use control::cluster::Applied;
use std::collections::HashMap;
use std::time::Duration;

/// Edges silent this long are forgotten by the store (their windows expire).
const EDGE_TTL: Duration = Duration::from_secs(3_600);

pub struct BurstSignal {
    settings: Settings,
    keys: Keys,
    backends: Backends,
    /// What this container last wrote, with the version it wrote it at.
    cache: tokio::sync::Mutex<Option<Snapshot>>,
}

/// Edges cached per container at most.
const MAX_CACHED_EDGES: usize = 100_000;

/// The burst state as of one version of the store.
#[derive(Debug, Clone)]
struct Snapshot {
    version: u64,
    edges: HashMap<String, EdgeState>,
    cluster: ClusterBurst,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl BurstSignal {
    pub fn new(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError> {
        settings.cluster.validate()?;
        Ok(Self {
            settings: settings.clone(),
            keys: Keys::new(&settings.key_prefix),
            backends: backends.clone(),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// Read the version, the cluster state and the given edges in one round trip.
    async fn load(&self, ids: &[String]) -> Result<Snapshot, HandlerError> {
        let mut keys: Vec<String> = ids.iter().map(|id| self.keys.edge(id)).collect();
        keys.push(self.keys.cluster());
        keys.push(self.keys.burst_version());
        let mut values = self.backends.store.get_many(&keys).await?;
        let version_raw = values.pop().flatten();
        let version = match version_raw {
            None => 0,
            Some(v) => std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
                HandlerError::State(format!("{} is not a counter", self.keys.burst_version()))
            })?,
        };
        // State that cannot be read, or that is stamped ahead of the clock (written before records were
        // checked against it), is started afresh and overwritten by this batch's write.
        let ahead = crate::events::now_s() + self.settings.max_clock_skew_s;
        let mut discarded = Vec::new();
        let cluster_raw = values.pop().flatten();
        let cluster =
            match read_or_discard::<ClusterBurst>(&self.keys.cluster(), cluster_raw.as_ref(), &mut discarded)
            {
                Some(c)
                    if (c.last_second as f64) <= ahead && c.edges.values().all(|e| e.last_ts <= ahead) =>
                {
                    c
                }
                _ => ClusterBurst::new(self.settings.cluster.cluster_detector)?,
            };
        let mut edges = HashMap::with_capacity(ids.len());
        for ((id, key), raw) in ids.iter().zip(&keys).zip(&values) {
            let state = match read_or_discard::<EdgeState>(key, raw.as_ref(), &mut discarded) {
                Some(state) if state.last_ts <= ahead => state,
                _ => EdgeState::new(self.settings.cluster.edge_detector)?,
            };
            edges.insert(id.clone(), state);
        }
        Ok(Snapshot { version, edges, cluster })
    }
}

/// Decode a batch's records: good ones with their position, and an error for each bad one. Records
/// stamped more than `max_skew_s` ahead of `now_s` are refused: a gateway stamping milliseconds as
/// seconds would otherwise be an edge that never goes stale, its load counted forever.
pub fn decode_records(
    records: &[crate::KafkaMessage],
    now_s: f64,
    max_skew_s: f64,
) -> (Vec<EdgeRecord>, usize, Vec<RecordError>) {
    let mut good = Vec::with_capacity(records.len());
    let mut errors = Vec::new();
    let mut tombstones = 0;
    for m in records {
        if m.ahead_of_clock(max_skew_s, now_s) {
            errors.push(RecordError {
                record: m.locator(),
                error: format!(
                    "record timestamp {} ms is more than {max_skew_s} s ahead of this function's clock",
                    m.timestamp_ms
                ),
            });
            continue;
        }
        match record_json::<EdgeRecord>(m) {
            Ok(None) => tombstones += 1,
            Ok(Some(r)) => match r.check() {
                Ok(()) if r.timestamp > now_s + max_skew_s => errors.push(RecordError { record: m.locator(), error: format!("timestamp {} is more than {max_skew_s} s ahead of this function's clock (seconds, not milliseconds?)", r.timestamp) }),
                Ok(()) => good.push(r),
                Err(e) => errors.push(RecordError { record: m.locator(), error: e }),
            },
            Err(e) => errors.push(RecordError { record: m.locator(), error: e }),
        }
    }
    (good, tombstones, errors)
}

#[async_trait]
impl Handler for BurstSignal {
    fn name(&self) -> &'static str {
        <Self as crate::Function>::NAME
    }

    async fn handle(&self, trigger: Trigger) -> Result<crate::Outcome, HandlerError> {
        let records = trigger_records(trigger)?;
        let (mut good, tombstones, errors) =
            decode_records(&records, crate::events::now_s(), self.settings.max_clock_skew_s);
        let mut ids: Vec<String> = good.iter().map(|r| r.edge_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let (Applied { accepted, stale, changed }, cluster) = self.apply_and_store(&mut good, &ids).await?;
        let event = BurstEvent {
            kind: "burst".into(),
            burst: cluster.burst,
            time_s: cluster.since_s,
            total_rate: cluster.total_rate,
            predicted_load: cluster.predicted_load,
            predicted_peak: cluster.predicted_peak,
            edges: cluster.edges.len(),
            edges_bursting: cluster.edges_bursting,
        };
        if changed {
            self.backends
                .publisher
                .publish_at(&self.settings.topics.scaling_requests, "cluster", &to_json(&event), event.time_s)
                .await?;
            tracing::info!(
                burst = event.burst,
                total_rate = event.total_rate,
                predicted_load = event.predicted_load,
                "cluster burst state changed"
            );
        }
        for e in &errors {
            tracing::warn!(topic = %e.record.topic, partition = e.record.partition, offset = e.record.offset, error = %e.error, "record skipped");
        }
        crate::metrics::emit(
            self.settings.emf_metrics,
            "burst-signal",
            crate::events::now_s(),
            &crate::metrics::burst_metrics(&cluster, changed, accepted, errors.len()),
        );
        Ok(crate::Outcome::Burst(crate::outcome::BurstOutcome {
            records: records.len(),
            accepted,
            stale,
            tombstones,
            errors,
            burst: cluster.burst,
            changed,
            total_rate: round1(cluster.total_rate),
            predicted_load: round1(cluster.predicted_load),
            smoothed_peak: round1(cluster.predicted_peak),
            load_for_scaling: round1(cluster.predicted_or(cluster.total_rate)),
            edges: cluster.edges.len(),
            edges_bursting: cluster.edges_bursting,
        }))
    }
}

/// The edge records a trigger carries: a Kafka batch, or `{"records": [EdgeRecord...]}` in a direct
/// call (tests, replays).
fn trigger_records(trigger: Trigger) -> Result<Vec<crate::KafkaMessage>, HandlerError> {
    match trigger {
        Trigger::Kafka(records) => Ok(records),
        Trigger::Schedule { .. } => Err(HandlerError::BadEvent(
            "burst-signal is triggered by iot-metadata records, not a schedule".into(),
        )),
        Trigger::Direct(v) => {
            let list = v.get("records").and_then(|r| r.as_array()).ok_or_else(|| {
                HandlerError::BadEvent("expected a Kafka event or {\"records\": [...]}".into())
            })?;
            Ok(list
                .iter()
                .enumerate()
                .map(|(i, r)| crate::KafkaMessage {
                    topic: "direct".into(),
                    partition: 0,
                    offset: i as i64,
                    timestamp_ms: 0,
                    key: None,
                    value: Some(Ok(to_json(r))),
                })
                .collect())
        }
    }
}

impl BurstSignal {
    /// Fold the batch into the edges' and the cluster's state and store it, one versioned write.
    /// The state this container wrote last is still right if nobody has written since: the
    /// versioned write checks exactly that, so a warm container with all the batch's edges cached
    /// needs one round trip per batch. Otherwise read, then write (and retry on a race).
    async fn apply_and_store(
        &self,
        good: &mut [EdgeRecord],
        ids: &[String],
    ) -> Result<(Applied, ClusterBurst), HandlerError> {
        let mut cache = self.cache.lock().await;
        loop {
            let mut state = match cache.take() {
                Some(warm) if ids.iter().all(|id| warm.edges.contains_key(id)) => warm,
                Some(mut warm) => {
                    // New edges: read the batch's edges; if nobody wrote meanwhile, the rest of what
                    // this container knows is still good.
                    let fresh = self.load(ids).await?;
                    if fresh.version == warm.version {
                        warm.edges.extend(fresh.edges);
                        warm
                    } else {
                        fresh
                    }
                }
                None => self.load(ids).await?,
            };
            let applied = apply_batch(good, &mut state.edges, &mut state.cluster, &self.settings.cluster)?;
            if good.is_empty() {
                return Ok((applied, state.cluster));
            }
            let mut writes: Vec<(String, Vec<u8>)> = ids
                .iter()
                .filter_map(|id| state.edges.get(id).map(|s| (self.keys.edge(id), to_json(s))))
                .collect();
            writes.push((self.keys.cluster(), to_json(&state.cluster)));
            if self
                .backends
                .store
                .set_many_if_version(&self.keys.burst_version(), state.version, &writes, Some(EDGE_TTL))
                .await?
            {
                state.version += 1;
                // Keep what this container knows; bound it so a fleet of edges cannot grow it forever.
                if state.edges.len() > MAX_CACHED_EDGES {
                    state.edges.retain(|id, _| ids.binary_search(id).is_ok());
                }
                let cluster = state.cluster.clone();
                *cache = Some(state);
                return Ok((applied, cluster));
            }
            // Another writer got there first: start again from the store.
            tracing::debug!("burst state changed under us; re-reading");
        }
    }
}

impl BurstSignal {
    /// The shared backends (for tests and the local bridge).
    pub fn backends(&self) -> &Backends {
        &self.backends
    }
}
