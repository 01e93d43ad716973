//! shuffle-router: puts shuffle blocks on the tier their temperature calls for, and reads them back.
//!
//! A manifest names a block (id, size, access count, age, burst flag, archival flag) and carries its
//! bytes (base64) or an S3 pointer. The [`TierRouter`] (the code the simulator evaluates) picks the
//! tier and codec, with the job's working blocks on the tier of the scaling decision in force
//! ([`TierRouter::place_following`]: this is how the policy's tier reaches a running job). Blocks
//! are framed with their codec, length and CRC-32 so that every read is verified. Redis writes are
//! buffered and sent in pipelines of up to 10 MB with a TTL; S3 and Glacier writes go through the
//! object store; NVMe blocks are files. An index entry per block says where it
//! is. A block that must move is copied, read back and verified, indexed at its new place, and only
//! then deleted from the old one: a failure at any step leaves the old copy in place.
//!
//! Requests: `{"blocks": [manifest...]}` (or one manifest) to write; `{"op": "read", "block_id"}`;
//! `{"op": "move", "block_id", "tier": "s3"}`. From Kafka, each record is a manifest.

use crate::ports::{ObjectRead, ObjectStore, StorageClass};
use crate::state::{DecisionRecord, Keys};
use crate::{from_json, record_json, to_json, Backends, Handler, HandlerError, RecordError, RecordRef, Settings, Trigger};
use async_trait::async_trait;
use base64::Engine;
use control::{BlockStats, Placement, TierRouter};
use latency_model::{Compression, Tier};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// Largest block accepted, bytes (Spark shuffle blocks are far smaller; this guards memory).
pub const MAX_BLOCK_BYTES: i64 = 256 * 1024 * 1024;
/// Days a Glacier restore keeps the restored copy.
const RESTORE_DAYS: u32 = 1;

/// A block to place.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub block_id: String,
    pub size_bytes: i64,
    #[serde(default)]
    pub access_count: i64,
    #[serde(default)]
    pub age_s: f64,
    #[serde(default)]
    pub burst: bool,
    #[serde(default)]
    pub archival: bool,
    /// The block's bytes, base64.
    #[serde(default)]
    pub payload_b64: Option<String>,
    /// Or where the producer left it: `s3://bucket/key` (the function's bucket).
    #[serde(default)]
    pub s3_pointer: Option<String>,
}

/// Where a block is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockLocation {
    pub tier: Tier,
    pub key: String,
    pub compression: Compression,
    pub size_bytes: u64,
    pub stored_bytes: u64,
    pub crc32: u32,
}

const MAGIC: &[u8; 4] = b"SPB1";

/// Frame a block: magic, codec, original length, CRC-32 of the original, then the encoded bytes.
pub fn encode_block(data: &[u8], codec: Compression) -> Result<Vec<u8>, String> {
    let body = match codec {
        Compression::None => data.to_vec(),
        Compression::Lz4 => lz4_flex::compress(data),
        Compression::Zstd => zstd::bulk::compress(data, 3).map_err(|e| format!("zstd: {e}"))?,
    };
    let mut out = Vec::with_capacity(body.len() + 17);
    out.extend_from_slice(MAGIC);
    out.push(codec_byte(codec));
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Undo [`encode_block`], checking length and checksum.
pub fn decode_block(framed: &[u8]) -> Result<Vec<u8>, String> {
    if framed.len() < 17 || &framed[..4] != MAGIC {
        return Err("not a sparkpilot block (bad header)".into());
    }
    let codec = match framed[4] {
        0 => Compression::None,
        1 => Compression::Lz4,
        2 => Compression::Zstd,
        b => return Err(format!("unknown codec byte {b}")),
    };
    let len = u64::from_le_bytes(framed[5..13].try_into().expect("8 bytes")) as usize;
    if len as i64 > MAX_BLOCK_BYTES {
        return Err(format!("header claims {len} bytes, more than the {MAX_BLOCK_BYTES} allowed"));
    }
    let crc = u32::from_le_bytes(framed[13..17].try_into().expect("4 bytes"));
    let body = &framed[17..];
    let data = match codec {
        Compression::None => body.to_vec(),
        Compression::Lz4 => lz4_flex::decompress(body, len).map_err(|e| format!("lz4: {e}"))?,
        Compression::Zstd => zstd::bulk::decompress(body, len).map_err(|e| format!("zstd: {e}"))?,
    };
    if data.len() != len || crc32fast::hash(&data) != crc {
        return Err("block failed its checksum".into());
    }
    Ok(data)
}

fn codec_byte(c: Compression) -> u8 {
    match c {
        Compression::None => 0,
        Compression::Lz4 => 1,
        Compression::Zstd => 2,
    }
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Redis => "redis",
        Tier::Nvme => "nvme",
        Tier::S3 => "s3",
        Tier::Glacier => "glacier",
        Tier::Hdd => "hdd",
    }
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Ok(match s {
        "redis" => Tier::Redis,
        "nvme" => Tier::Nvme,
        "s3" => Tier::S3,
        "glacier" => Tier::Glacier,
        other => return Err(format!("unknown tier {other:?}; expected redis, nvme, s3 or glacier")),
    })
}

fn valid_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) || id.contains("..") {
        return Err(format!("block_id {id:?} must be 1-200 characters of letters, digits, - _ . :"));
    }
    Ok(())
}

pub struct ShuffleRouter {
    settings: Settings,
    keys: Keys,
    backends: Backends,
    router: TierRouter,
}

/// A block ready to store.
struct Prepared {
    id: String,
    placement: Placement,
    framed: Vec<u8>,
    size: u64,
    crc: u32,
    at: Option<RecordRef>,
    /// The router's temperature of the block (0 for moves, which do not count).
    temperature: Option<f64>,
}

/// A block stored, with the record it came from.
type Stored = (Option<RecordRef>, BlockLocation);
/// A block that could not be stored, and why.
type Failed = (Option<RecordRef>, String);

/// Result of a read.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockRead {
    Bytes(Vec<u8>),
    /// In Glacier; a restore is under way. Read again later.
    Restoring,
}

impl ShuffleRouter {
    pub fn new(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError> {
        Ok(Self { settings: settings.clone(), keys: Keys::new(&settings.key_prefix), backends: backends.clone(), router: TierRouter::new(settings.router)? })
    }

    fn object_key(&self, tier: Tier, id: &str) -> String {
        match tier {
            Tier::Redis => self.keys.block_data(id),
            _ => format!("{}/shuffle/{id}", self.settings.key_prefix),
        }
    }

    fn store_for(&self, tier: Tier) -> &dyn ObjectStore {
        match tier {
            Tier::Nvme | Tier::Hdd => self.backends.nvme.as_ref(),
            _ => self.backends.objects.as_ref(),
        }
    }

    async fn payload(&self, m: &Manifest) -> Result<Vec<u8>, String> {
        valid_id(&m.block_id)?;
        if m.size_bytes < 0 {
            return Err(format!("size_bytes {} is negative", m.size_bytes));
        }
        if m.size_bytes > MAX_BLOCK_BYTES {
            return Err(format!("size_bytes {} is above the {MAX_BLOCK_BYTES} limit", m.size_bytes));
        }
        if m.access_count < 0 {
            return Err(format!("access_count {} is negative", m.access_count));
        }
        if !(m.age_s.is_finite() && m.age_s >= 0.0) {
            return Err(format!("age_s {} must be a non-negative number", m.age_s));
        }
        let data = match (&m.payload_b64, &m.s3_pointer) {
            (Some(b), None) => base64::engine::general_purpose::STANDARD.decode(b.trim()).map_err(|e| format!("payload_b64 is not valid base64: {e}"))?,
            (None, Some(p)) => {
                let key = p.strip_prefix("s3://").and_then(|rest| rest.split_once('/')).map(|(_, k)| k).filter(|k| !k.is_empty());
                let key = key.ok_or_else(|| format!("s3_pointer {p:?} is not s3://bucket/key"))?;
                match self.backends.objects.get(key).await.map_err(|e| e.to_string())? {
                    ObjectRead::Bytes(b) => b,
                    ObjectRead::Missing => return Err(format!("s3_pointer {p}: no such object")),
                    ObjectRead::Archived { .. } => return Err(format!("s3_pointer {p}: object is archived")),
                }
            }
            (Some(_), Some(_)) => return Err("give payload_b64 or s3_pointer, not both".into()),
            (None, None) => return Err("manifest has neither payload_b64 nor s3_pointer".into()),
        };
        if data.len() as i64 != m.size_bytes {
            return Err(format!("size_bytes says {} but the payload has {} bytes", m.size_bytes, data.len()));
        }
        Ok(data)
    }

    /// The tier of the scaling decision in force (what the running job's blocks follow), if any.
    async fn decided_tier(&self) -> Result<Option<Tier>, HandlerError> {
        let key = self.keys.last_decision();
        // An unreadable decision must not stop blocks from being stored: place them by temperature.
        match from_json::<DecisionRecord>(&key, self.backends.store.get(&key).await?.as_ref()) {
            Ok(last) => Ok(last.filter(|d| !d.dry_run).map(|d| d.running().tier)),
            Err(e) => {
                tracing::warn!(error = %e, "placing blocks by temperature alone");
                Ok(None)
            }
        }
    }

    async fn prepare(&self, m: &Manifest, at: Option<RecordRef>, decided: Option<Tier>) -> Result<Prepared, String> {
        let data = self.payload(m).await?;
        let stats = BlockStats { access_count: m.access_count as u64, age_s: m.age_s, burst: m.burst, archival: m.archival };
        let placement = self.router.place_following(&stats, decided);
        let framed = encode_block(&data, placement.compression)?;
        Ok(Prepared { id: m.block_id.clone(), placement, framed, size: data.len() as u64, crc: crc32fast::hash(&data), at, temperature: Some(self.router.temperature(&stats)) })
    }

    async fn locate(&self, ids: &[String]) -> Result<Vec<Option<BlockLocation>>, HandlerError> {
        let keys: Vec<String> = ids.iter().map(|id| self.keys.block_index(id)).collect();
        let got = self.backends.store.get_many(&keys).await?;
        keys.iter().zip(got.iter()).map(|(k, v)| from_json(k, v.as_ref())).collect()
    }

    async fn read_framed(&self, loc: &BlockLocation) -> Result<Option<Vec<u8>>, HandlerError> {
        if loc.tier == Tier::Redis {
            return Ok(self.backends.store.get(&loc.key).await?);
        }
        match self.store_for(loc.tier).get(&loc.key).await? {
            ObjectRead::Bytes(b) => Ok(Some(b)),
            ObjectRead::Missing => Ok(None),
            ObjectRead::Archived { restore_in_progress } => {
                if !restore_in_progress {
                    self.backends.objects.restore(&loc.key, RESTORE_DAYS).await?;
                }
                Err(HandlerError::State("restoring".into()))
            }
        }
    }

    /// Read a block's exact bytes.
    pub async fn read(&self, id: &str) -> Result<BlockRead, HandlerError> {
        valid_id(id).map_err(HandlerError::BadRequest)?;
        let loc = self.locate(&[id.to_string()]).await?.pop().flatten().ok_or_else(|| HandlerError::BadRequest(format!("no block {id}")))?;
        let framed = match self.read_framed(&loc).await {
            Ok(Some(f)) => f,
            Ok(None) => return Err(HandlerError::State(format!("block {id} is indexed on {} but its data is gone (expired?)", tier_name(loc.tier)))),
            Err(HandlerError::State(s)) if s == "restoring" => return Ok(BlockRead::Restoring),
            Err(e) => return Err(e),
        };
        decode_block(&framed).map(BlockRead::Bytes).map_err(|e| HandlerError::State(format!("block {id}: {e}")))
    }

    /// Move a block: copy, verify, index, then delete the old copy.
    pub async fn move_block(&self, id: &str, to: Tier) -> Result<BlockLocation, HandlerError> {
        let data = match self.read(id).await? {
            BlockRead::Bytes(b) => b,
            BlockRead::Restoring => return Err(HandlerError::State(format!("block {id} is being restored from Glacier; move it once it is readable"))),
        };
        let old = self.locate(&[id.to_string()]).await?.pop().flatten().ok_or_else(|| HandlerError::State(format!("block {id} was removed while being moved")))?;
        if old.tier == to {
            return Ok(old);
        }
        let placement = Placement { tier: to, compression: TierRouter::codec_for(to) };
        let framed = encode_block(&data, placement.compression).map_err(HandlerError::State)?;
        let p = Prepared { id: id.to_string(), placement, framed, size: data.len() as u64, crc: crc32fast::hash(&data), at: None, temperature: None };
        let (mut written, errors) = self.store_all(vec![p]).await?;
        if let Some(e) = errors.into_iter().next() {
            return Err(HandlerError::State(e.1));
        }
        // store_all deleted the old copy once the new one was indexed.
        let (_, new) = written.pop().ok_or_else(|| HandlerError::State(format!("block {id} was not stored on {}", tier_name(to))))?;
        Ok(new)
    }

    async fn delete_copy(&self, loc: &BlockLocation) -> Result<(), HandlerError> {
        if loc.tier == Tier::Redis {
            self.backends.store.delete(std::slice::from_ref(&loc.key)).await?;
        } else {
            self.store_for(loc.tier).delete(&loc.key).await?;
        }
        Ok(())
    }

    /// Store prepared blocks, verify each copy, index them; then delete copies left on other tiers.
    /// Returns the blocks stored and the (id, error) of those that failed.
    async fn store_all(&self, blocks: Vec<Prepared>) -> Result<(Vec<Stored>, Vec<Failed>), HandlerError> {
        let ids: Vec<String> = blocks.iter().map(|b| b.id.clone()).collect();
        let previous = self.locate(&ids).await?;
        let ttl = Duration::from_secs(self.settings.block_ttl_s);
        let mut stored = Vec::new();
        let mut failed = Vec::new();
        // Redis blocks in pipelines of at most `pipeline_bytes`.
        let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut batch_meta: Vec<usize> = Vec::new();
        let mut locations: Vec<Option<BlockLocation>> = vec![None; blocks.len()];
        for (i, b) in blocks.iter().enumerate() {
            let key = self.object_key(b.placement.tier, &b.id);
            let loc = BlockLocation { tier: b.placement.tier, key: key.clone(), compression: b.placement.compression, size_bytes: b.size, stored_bytes: b.framed.len() as u64, crc32: b.crc };
            match b.placement.tier {
                Tier::Redis => {
                    if batch_bytes + b.framed.len() > self.settings.pipeline_bytes && !batch.is_empty() {
                        self.backends.store.set_many(&batch, Some(ttl)).await?;
                        batch.clear();
                        batch_bytes = 0;
                    }
                    batch_bytes += b.framed.len();
                    batch.push((key, b.framed.clone()));
                    batch_meta.push(i);
                    locations[i] = Some(loc);
                }
                tier => {
                    let class = if tier == Tier::Glacier { StorageClass::Glacier } else { StorageClass::Standard };
                    match self.store_for(tier).put(&key, b.framed.clone(), class).await {
                        Ok(()) => locations[i] = Some(loc),
                        Err(e) => failed.push((b.at.clone(), format!("block {}: {e}", b.id))),
                    }
                }
            }
        }
        if !batch.is_empty() {
            self.backends.store.set_many(&batch, Some(ttl)).await?;
        }
        // Verify: read every new copy back (Redis in one round trip) before indexing it.
        let redis_keys: Vec<String> = batch_meta.iter().filter_map(|&i| locations[i].as_ref().map(|l| l.key.clone())).collect();
        let redis_back = if redis_keys.is_empty() { Vec::new() } else { self.backends.store.get_many(&redis_keys).await? };
        let mut redis_iter = redis_back.into_iter();
        let mut index = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            let Some(loc) = locations[i].clone() else { continue };
            let back = if loc.tier == Tier::Redis {
                redis_iter.next().flatten()
            } else if loc.tier == Tier::Glacier {
                // An archived copy cannot be read back without a restore; S3 checked the upload's
                // integrity, so trust the write (its checksum is in the index for the later read).
                Some(b.framed.clone())
            } else {
                match self.store_for(loc.tier).get(&loc.key).await? {
                    ObjectRead::Bytes(x) => Some(x),
                    _ => None,
                }
            };
            if back.as_deref() != Some(&b.framed[..]) {
                failed.push((b.at.clone(), format!("block {}: the copy on {} did not read back intact", b.id, tier_name(loc.tier))));
                continue;
            }
            index.push((self.keys.block_index(&b.id), to_json(&loc)));
            stored.push((b.at.clone(), loc));
        }
        // The mean temperature of what was just written: the scaling policy's data_temperature.
        let temps: Vec<f64> = blocks.iter().filter_map(|b| b.temperature).collect();
        if !temps.is_empty() {
            let mean = temps.iter().sum::<f64>() / temps.len() as f64;
            index.push((self.keys.shuffle_temperature(), to_json(&mean)));
        }
        if !index.is_empty() {
            self.backends.store.set_many(&index, None).await?;
        }
        // Old copies elsewhere go only after the new one is indexed.
        for (b, prev) in blocks.iter().zip(previous) {
            if let (Some(prev), Some(new)) = (prev, stored.iter().find(|(_, l)| l.key == self.object_key(b.placement.tier, &b.id))) {
                if prev.key != new.1.key || prev.tier != new.1.tier {
                    self.delete_copy(&prev).await?;
                }
            }
        }
        Ok((stored, failed))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpRequest {
    op: String,
    block_id: String,
    #[serde(default)]
    tier: Option<String>,
}

#[async_trait]
impl Handler for ShuffleRouter {
    fn name(&self) -> &'static str {
        "shuffle-router"
    }

    async fn handle(&self, trigger: Trigger) -> Result<serde_json::Value, HandlerError> {
        let mut manifests: Vec<(Option<RecordRef>, Result<Manifest, String>)> = Vec::new();
        match trigger {
            Trigger::Schedule { .. } => return Err(HandlerError::BadEvent("shuffle-router takes manifests, not a schedule".into())),
            Trigger::Direct(v) if v.get("op").is_some() => {
                let req: OpRequest = serde_json::from_value(v).map_err(|e| HandlerError::BadRequest(format!("request: {e}")))?;
                return match req.op.as_str() {
                    "read" => match self.read(&req.block_id).await? {
                        BlockRead::Bytes(b) => Ok(json!({"block_id": req.block_id, "status": "ok", "size_bytes": b.len(), "payload_b64": base64::engine::general_purpose::STANDARD.encode(&b)})),
                        BlockRead::Restoring => Ok(json!({"block_id": req.block_id, "status": "restoring"})),
                    },
                    "move" => {
                        let tier = parse_tier(req.tier.as_deref().unwrap_or_default()).map_err(HandlerError::BadRequest)?;
                        let loc = self.move_block(&req.block_id, tier).await?;
                        Ok(json!({"block_id": req.block_id, "status": "moved", "tier": tier_name(loc.tier)}))
                    }
                    "write" => Err(HandlerError::BadRequest("write with {\"blocks\": [...]}".into())),
                    other => Err(HandlerError::BadRequest(format!("unknown op {other:?}; expected read or move"))),
                };
            }
            Trigger::Direct(v) => {
                let list = match v.get("blocks") {
                    Some(serde_json::Value::Array(a)) => a.clone(),
                    Some(_) => return Err(HandlerError::BadRequest("blocks must be a list of manifests".into())),
                    None => vec![v],
                };
                for (i, m) in list.into_iter().enumerate() {
                    let at = RecordRef { topic: "direct".into(), partition: 0, offset: i as i64 };
                    manifests.push((Some(at), serde_json::from_value(m).map_err(|e| format!("manifest: {e}"))));
                }
            }
            Trigger::Kafka(records) => {
                for m in &records {
                    match record_json::<Manifest>(m) {
                        Ok(None) => {}
                        Ok(Some(x)) => manifests.push((Some(m.locator()), Ok(x))),
                        Err(e) => manifests.push((Some(m.locator()), Err(e))),
                    }
                }
            }
        }
        let total = manifests.len();
        let decided = self.decided_tier().await?;
        let mut errors: Vec<RecordError> = Vec::new();
        let mut prepared = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (at, m) in manifests {
            let result = match m {
                Ok(m) if !seen.insert(m.block_id.clone()) => Err(format!("block {} appears twice in one request", m.block_id)),
                Ok(m) => self.prepare(&m, at.clone(), decided).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(p) => prepared.push(p),
                Err(e) => errors.push(RecordError { record: at.unwrap_or(RecordRef { topic: String::new(), partition: -1, offset: -1 }), error: e }),
            }
        }
        let (stored, failed) = self.store_all(prepared).await?;
        for (at, e) in failed {
            errors.push(RecordError { record: at.unwrap_or(RecordRef { topic: String::new(), partition: -1, offset: -1 }), error: e });
        }
        let mut per_tier = serde_json::Map::new();
        for (_, loc) in &stored {
            let n = per_tier.entry(tier_name(loc.tier)).or_insert(json!(0));
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
        let bytes_in: u64 = stored.iter().map(|(_, l)| l.size_bytes).sum();
        let bytes_stored: u64 = stored.iter().map(|(_, l)| l.stored_bytes).sum();
        for e in &errors {
            tracing::warn!(offset = e.record.offset, error = %e.error, "manifest skipped");
        }
        Ok(json!({
            "manifests": total,
            "stored": stored.len(),
            "tiers": per_tier,
            "bytes_in": bytes_in,
            "bytes_stored": bytes_stored,
            "errors": errors,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_corruption_is_caught() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        for codec in Compression::CHOICES {
            let f = encode_block(&data, codec).unwrap();
            assert_eq!(decode_block(&f).unwrap(), data);
            let mut bad = f.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0xff;
            assert!(decode_block(&bad).is_err());
        }
        assert!(decode_block(b"nope").unwrap_err().contains("bad header"));
    }
}
