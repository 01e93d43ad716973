//! Latency model of sparkpilot: how fast each shuffle tier answers and moves data, how much CPU an
//! event costs, and what each compression codec buys (measured with the real `lz4_flex` and `zstd`
//! crates on IoT JSON records, see [`calibrate`]).
//!
//! ```
//! use latency_model::{LatencyModel, Tier, Compression};
//! let model = LatencyModel::embedded();
//! // Redis answers in well under a millisecond; S3 in about a hundred.
//! assert!(model.tier(Tier::Redis).access_ms < 1.0);
//! assert!(model.tier(Tier::S3).access_ms >= 100.0);
//! // Compression shrinks JSON records.
//! assert!(model.compression(Compression::Zstd).ratio < model.compression(Compression::Lz4).ratio);
//! ```

pub mod calibrate;
mod error;
pub mod job_fit;

pub use error::ModelError;

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where shuffle blocks are stored. The first four are the policy's choices (thesis, adaptive
/// shuffle report section 3); `Hdd` is the thesis's spinning disk (section 1.3), kept for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Redis,
    Nvme,
    S3,
    Glacier,
    Hdd,
}

impl Tier {
    /// The tiers a policy chooses from, in action-index order.
    pub const CHOICES: [Tier; 4] = [Tier::Redis, Tier::Nvme, Tier::S3, Tier::Glacier];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Redis => "redis",
            Tier::Nvme => "nvme",
            Tier::S3 => "s3",
            Tier::Glacier => "glacier",
            Tier::Hdd => "hdd",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Shuffle codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    pub const CHOICES: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// How a tier's bandwidth grows with the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BandwidthScope {
    /// One figure for the whole job, whatever the executor count (a single disk).
    Shared,
    /// Each executor brings its own (local disks).
    PerWorker,
    /// Each hot-tier node brings its own (a Redis cluster).
    PerNode,
    /// Capped by a request rate per key prefix: bandwidth = rate x block size x prefixes.
    SharedRequests,
}

/// Access latency and bandwidth of one tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierProfile {
    pub access_ms: f64,
    #[serde(default)]
    pub bandwidth_mb_s: f64,
    #[serde(default)]
    pub requests_per_s_per_prefix: f64,
    pub scope: BandwidthScope,
    pub source: String,
}

/// Context that a tier's bandwidth depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierContext {
    pub workers: f64,
    pub redis_nodes: f64,
    pub block_kb: f64,
    pub s3_prefixes: f64,
}

impl TierProfile {
    /// Bandwidth in MB/s available to the job.
    pub fn bandwidth_mb_s(&self, ctx: &TierContext) -> f64 {
        match self.scope {
            BandwidthScope::Shared => self.bandwidth_mb_s,
            BandwidthScope::PerWorker => self.bandwidth_mb_s * ctx.workers,
            BandwidthScope::PerNode => self.bandwidth_mb_s * ctx.redis_nodes,
            BandwidthScope::SharedRequests => {
                self.requests_per_s_per_prefix * ctx.block_kb / 1024.0 * ctx.s3_prefixes
            }
        }
    }
}

/// Measured effect of one codec on IoT records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressionProfile {
    /// Compressed bytes / raw bytes.
    pub ratio: f64,
    /// Raw MB compressed per second on one core.
    pub compress_mb_s: f64,
    /// Raw MB produced by decompression per second on one core.
    pub decompress_mb_s: f64,
}

impl CompressionProfile {
    /// CPU milliseconds to compress one raw MB and decompress it `reads` times.
    pub fn cpu_ms_per_mb(&self, reads: f64) -> f64 {
        let c = if self.compress_mb_s.is_finite() && self.compress_mb_s > 0.0 {
            1_000.0 / self.compress_mb_s
        } else {
            0.0
        };
        let d = if self.decompress_mb_s.is_finite() && self.decompress_mb_s > 0.0 {
            1_000.0 / self.decompress_mb_s
        } else {
            0.0
        };
        c + reads * d
    }
}

/// The measured table, as written by `sparkpilot calibrate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressionTable {
    /// How the figures were measured (payload, crate versions, machine).
    pub method: String,
    pub none: CompressionProfile,
    pub lz4: CompressionProfile,
    pub zstd: CompressionProfile,
}

/// Per-event processing parameters (see latency.toml for their sources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Processing {
    pub per_event_cpu_ms: f64,
    pub per_mb_cpu_ms: f64,
    pub batch_overhead_ms: f64,
    pub shuffle_ratio: f64,
    pub round_trips: f64,
    pub state_window_s: f64,
    pub executor_base_memory_gb: f64,
    pub memory_overhead_fraction: f64,
    pub memory_overhead_min_gb: f64,
    pub spill_floor: f64,
}

/// Reads of each shuffle byte for data of temperature `t` (0 cold .. 1 hot): hot data is re-read by
/// the job's windowed queries, up to three times.
pub fn reads_per_byte(temperature: f64) -> f64 {
    1.0 + 2.0 * temperature.clamp(0.0, 1.0)
}

impl Processing {
    /// CPU milliseconds one vCPU spends on one event of `bytes`, and on compressing its shuffle with
    /// `codec` and decompressing it for each of the reads data of `temperature` gets: what the job's
    /// executors are busy with per event.
    pub fn job_cpu_ms_per_event(&self, bytes: f64, codec: &CompressionProfile, temperature: f64) -> f64 {
        let shuffle_mb = bytes * self.shuffle_ratio / 1e6;
        self.cpu_ms_per_event(bytes) + codec.cpu_ms_per_mb(reads_per_byte(temperature)) * shuffle_mb
    }

    /// CPU milliseconds one vCPU spends on one event of `bytes`.
    pub fn cpu_ms_per_event(&self, bytes: f64) -> f64 {
        self.per_event_cpu_ms + self.per_mb_cpu_ms * bytes / 1e6
    }

    /// Working set of one executor processing `rate` events/s of `bytes` each, GB: the JVM's base plus
    /// the windowed state it keeps.
    pub fn working_set_gb(&self, rate: f64, bytes: f64) -> f64 {
        self.executor_base_memory_gb + rate.max(0.0) * bytes * self.state_window_s / 1e9
    }

    /// Memory left for Spark after the container overhead, GB.
    pub fn usable_memory_gb(&self, container_gb: f64) -> f64 {
        let overhead = (container_gb * self.memory_overhead_fraction).max(self.memory_overhead_min_gb);
        (container_gb - overhead).max(0.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tiers {
    redis: TierProfile,
    nvme: TierProfile,
    s3: TierProfile,
    glacier: TierProfile,
    hdd: TierProfile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LatencyFile {
    tiers: Tiers,
    processing: Processing,
}

/// The whole latency model.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    tiers: [TierProfile; 5],
    codecs: [CompressionProfile; 3],
    pub processing: Processing,
    pub compression_method: String,
}

const EMBEDDED_LATENCY: &str = include_str!("../latency.toml");
const EMBEDDED_COMPRESSION: &str = include_str!("../compression.toml");

impl LatencyModel {
    /// The model shipped with sparkpilot.
    pub fn embedded() -> Self {
        Self::from_strs(
            Path::new("latency.toml"),
            EMBEDDED_LATENCY,
            Path::new("compression.toml"),
            EMBEDDED_COMPRESSION,
        )
        .expect("the embedded latency model parses")
    }

    /// Load a user's latency and compression files.
    pub fn from_files(latency: &Path, compression: &Path) -> Result<Self, ModelError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|error| ModelError::Io { path: p.to_path_buf(), error })
        };
        Self::from_strs(latency, &read(latency)?, compression, &read(compression)?)
    }

    fn from_strs(lp: &Path, latency: &str, cp: &Path, compression: &str) -> Result<Self, ModelError> {
        let file: LatencyFile = toml::from_str(latency).map_err(|e| ModelError::from_toml(lp, latency, e))?;
        let table: CompressionTable =
            toml::from_str(compression).map_err(|e| ModelError::from_toml(cp, compression, e))?;
        let Tiers { redis, nvme, s3, glacier, hdd } = file.tiers;
        let model = Self {
            tiers: [redis, nvme, s3, glacier, hdd],
            codecs: [table.none, table.lz4, table.zstd],
            processing: file.processing,
            compression_method: table.method,
        };
        model.validate(lp, cp)?;
        Ok(model)
    }

    fn validate(&self, lp: &Path, cp: &Path) -> Result<(), ModelError> {
        let invalid = |p: &Path, message: String| ModelError::Invalid { path: p.to_path_buf(), message };
        for (tier, profile) in
            [Tier::Redis, Tier::Nvme, Tier::S3, Tier::Glacier, Tier::Hdd].iter().zip(&self.tiers)
        {
            if !(profile.access_ms.is_finite() && profile.access_ms >= 0.0) {
                return Err(invalid(
                    lp,
                    format!("tiers.{}.access_ms must be a non-negative number", tier.name()),
                ));
            }
            let bw = match profile.scope {
                BandwidthScope::SharedRequests => profile.requests_per_s_per_prefix,
                _ => profile.bandwidth_mb_s,
            };
            if !(bw.is_finite() && bw > 0.0) {
                return Err(invalid(
                    lp,
                    format!("tiers.{}: bandwidth (or request rate) must be positive", tier.name()),
                ));
            }
        }
        let p = &self.processing;
        for (name, v) in [
            ("per_event_cpu_ms", p.per_event_cpu_ms),
            ("per_mb_cpu_ms", p.per_mb_cpu_ms),
            ("batch_overhead_ms", p.batch_overhead_ms),
            ("shuffle_ratio", p.shuffle_ratio),
            ("round_trips", p.round_trips),
            ("state_window_s", p.state_window_s),
            ("executor_base_memory_gb", p.executor_base_memory_gb),
            ("memory_overhead_fraction", p.memory_overhead_fraction),
            ("memory_overhead_min_gb", p.memory_overhead_min_gb),
            ("spill_floor", p.spill_floor),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(
                    lp,
                    format!("processing.{name} must be a non-negative number, found {v}"),
                ));
            }
        }
        if p.per_event_cpu_ms + p.per_mb_cpu_ms <= 0.0 {
            return Err(invalid(lp, "processing: an event must cost some CPU".into()));
        }
        for (c, profile) in Compression::CHOICES.iter().zip(&self.codecs) {
            if !(profile.ratio.is_finite() && profile.ratio > 0.0 && profile.ratio <= 1.5) {
                return Err(invalid(
                    cp,
                    format!("{}.ratio must be in (0, 1.5], found {}", c.name(), profile.ratio),
                ));
            }
        }
        Ok(())
    }

    pub fn tier(&self, tier: Tier) -> &TierProfile {
        &self.tiers[tier.index()]
    }

    pub fn compression(&self, codec: Compression) -> &CompressionProfile {
        &self.codecs[codec as usize]
    }

    /// The three codecs' profiles, in [`Compression::CHOICES`] order.
    pub fn codecs(&self) -> &[CompressionProfile; 3] {
        &self.codecs
    }

    /// Replace the compression figures (after a fresh calibration).
    pub fn with_compression(mut self, table: CompressionTable) -> Self {
        self.codecs = [table.none, table.lz4, table.zstd];
        self.compression_method = table.method;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_model_loads_and_orders_tiers_sensibly() {
        let m = LatencyModel::embedded();
        let ctx = TierContext { workers: 10.0, redis_nodes: 2.0, block_kb: 64.0, s3_prefixes: 1.0 };
        assert!(m.tier(Tier::Redis).access_ms < m.tier(Tier::Nvme).access_ms * 10.0);
        assert!(m.tier(Tier::Hdd).bandwidth_mb_s(&ctx) < m.tier(Tier::Redis).bandwidth_mb_s(&ctx));
        // 3,500 requests/s of 64 KB blocks = 218.75 MB/s through one S3 prefix.
        assert!((m.tier(Tier::S3).bandwidth_mb_s(&ctx) - 218.75).abs() < 1e-9);
        assert!(m.tier(Tier::Glacier).access_ms >= 60_000.0);
    }

    #[test]
    fn per_worker_bandwidth_grows_with_workers_shared_does_not() {
        let m = LatencyModel::embedded();
        let small = TierContext { workers: 5.0, redis_nodes: 1.0, block_kb: 64.0, s3_prefixes: 1.0 };
        let big = TierContext { workers: 10.0, ..small };
        assert_eq!(m.tier(Tier::Nvme).bandwidth_mb_s(&big), 2.0 * m.tier(Tier::Nvme).bandwidth_mb_s(&small));
        assert_eq!(m.tier(Tier::Hdd).bandwidth_mb_s(&big), m.tier(Tier::Hdd).bandwidth_mb_s(&small));
        assert_eq!(m.tier(Tier::S3).bandwidth_mb_s(&big), m.tier(Tier::S3).bandwidth_mb_s(&small));
    }

    #[test]
    fn malformed_model_file_names_file_and_line() {
        let bad = EMBEDDED_LATENCY.replace("access_ms = 0.5", "access_ms = \"fast\"");
        let err =
            LatencyModel::from_strs(Path::new("mine.toml"), &bad, Path::new("c.toml"), EMBEDDED_COMPRESSION)
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("mine.toml:"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(bad.lines().nth(line - 1).unwrap().contains("\"fast\""), "{err}");
        let negative = EMBEDDED_LATENCY.replace("per_event_cpu_ms = 5.0", "per_event_cpu_ms = -1.0");
        let err = LatencyModel::from_strs(
            Path::new("mine.toml"),
            &negative,
            Path::new("c.toml"),
            EMBEDDED_COMPRESSION,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("per_event_cpu_ms"), "{err}");
    }

    #[test]
    fn memory_overhead_follows_emr_serverless() {
        let p = LatencyModel::embedded().processing;
        assert!((p.usable_memory_gb(16.0) - 14.4).abs() < 1e-9);
        // The 384 MB floor applies to small containers.
        assert!((p.usable_memory_gb(2.0) - 1.616).abs() < 1e-9);
    }
}
