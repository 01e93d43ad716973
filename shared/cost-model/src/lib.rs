//! AWS prices and bills for sparkpilot.
//!
//! Prices live in a TOML file keyed by region (`prices.toml` in this crate is the embedded default;
//! every table names its public source). A user can load their own file with the same layout.
//!
//! ```
//! use cost_model::{PriceBook, WorkerSpec};
//! let prices = PriceBook::embedded("us-east-1").unwrap();
//! let worker = WorkerSpec { vcpu: 4.0, memory_gb: 16.0, disk_gb: 20.0 };
//! // 30 seconds of a worker are billed as one minute.
//! assert_eq!(prices.emr_worker_cost(&worker, 30.0), prices.emr_worker_cost(&worker, 60.0));
//! ```

mod error;

pub use error::PriceError;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The region used when none is given.
pub const DEFAULT_REGION: &str = "us-east-1";

const EMBEDDED: &str = include_str!("../prices.toml");
const SECONDS_PER_HOUR: f64 = 3_600.0;
/// AWS bills storage per GB-month; a month is taken as 730 hours, as on AWS pricing pages.
const HOURS_PER_MONTH: f64 = 730.0;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmrPrices {
    pub vcpu_hour: f64,
    pub gb_hour: f64,
    pub ephemeral_storage_gb_hour: f64,
    pub free_ephemeral_storage_gb: f64,
    pub minimum_billed_seconds: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodePrice {
    pub hour: f64,
    #[serde(default)]
    pub memory_gib: f64,
    #[serde(default)]
    pub network_gbps: f64,
    #[serde(default)]
    pub network_baseline_gbps: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerlessCachePrices {
    pub data_stored_gb_hour: f64,
    pub per_million_ecpus: f64,
    pub minimum_data_stored_gb: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct S3Prices {
    pub storage_gb_month: f64,
    pub put_copy_post_list_per_1000: f64,
    pub get_per_1000: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GlacierInstantPrices {
    pub storage_gb_month: f64,
    pub put_copy_post_list_per_1000: f64,
    pub get_per_1000: f64,
    pub retrieval_gb: f64,
    pub minimum_storage_days: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GlacierFlexiblePrices {
    pub storage_gb_month: f64,
    pub put_copy_post_list_per_1000: f64,
    pub expedited_retrieval_gb: f64,
    pub expedited_requests_per_1000: f64,
    pub standard_retrieval_gb: f64,
    pub standard_requests_per_1000: f64,
    pub minimum_storage_days: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NvmePrices {
    pub storage_gb_hour: f64,
    pub free_gb_per_worker: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ElastiCacheServerless {
    redis_oss: ServerlessCachePrices,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ElastiCache {
    nodes: BTreeMap<String, NodePrice>,
    serverless: ElastiCacheServerless,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct RegionFile {
    emr_serverless: EmrPrices,
    elasticache: ElastiCache,
    s3_standard: S3Prices,
    s3_glacier_instant: GlacierInstantPrices,
    s3_glacier_flexible: GlacierFlexiblePrices,
    local_nvme: NvmePrices,
}

#[derive(Debug, Deserialize)]
struct PriceFile {
    regions: BTreeMap<String, RegionFile>,
}

/// A worker's size as EMR Serverless bills it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerSpec {
    pub vcpu: f64,
    pub memory_gb: f64,
    /// Ephemeral disk per worker; the first `free_ephemeral_storage_gb` are free.
    pub disk_gb: f64,
}

/// Prices of one region.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceBook {
    pub region: String,
    pub path: PathBuf,
    pub emr: EmrPrices,
    pub elasticache_nodes: BTreeMap<String, NodePrice>,
    pub elasticache_serverless: ServerlessCachePrices,
    pub s3: S3Prices,
    pub glacier_instant: GlacierInstantPrices,
    pub glacier_flexible: GlacierFlexiblePrices,
    pub nvme: NvmePrices,
}

impl PriceBook {
    /// The embedded price file (`shared/cost-model/prices.toml`).
    pub fn embedded(region: &str) -> Result<Self, PriceError> {
        Self::parse(Path::new("prices.toml (embedded)"), EMBEDDED, region)
    }

    /// A user's price file with the same layout.
    pub fn from_file(path: &Path, region: &str) -> Result<Self, PriceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| PriceError::Io { path: path.to_path_buf(), error })?;
        Self::parse(path, &text, region)
    }

    /// Parse price-file text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str, region: &str) -> Result<Self, PriceError> {
        let file: PriceFile = toml::from_str(text).map_err(|err| {
            let line =
                err.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1)).unwrap_or(0);
            PriceError::Parse { path: path.to_path_buf(), line, message: err.message().trim().to_string() }
        })?;
        let available = file.regions.keys().cloned().collect::<Vec<_>>().join(", ");
        let Some(r) = file.regions.get(region) else {
            return Err(PriceError::UnknownRegion {
                path: path.to_path_buf(),
                region: region.to_string(),
                available,
            });
        };
        let book = PriceBook {
            region: region.to_string(),
            path: path.to_path_buf(),
            emr: r.emr_serverless.clone(),
            elasticache_nodes: r.elasticache.nodes.clone(),
            elasticache_serverless: r.elasticache.serverless.redis_oss.clone(),
            s3: r.s3_standard.clone(),
            glacier_instant: r.s3_glacier_instant.clone(),
            glacier_flexible: r.s3_glacier_flexible.clone(),
            nvme: r.local_nvme.clone(),
        };
        book.validate()?;
        Ok(book)
    }

    fn validate(&self) -> Result<(), PriceError> {
        let e = &self.emr;
        let s = &self.elasticache_serverless;
        let mut figures = vec![
            ("emr_serverless.vcpu_hour", e.vcpu_hour),
            ("emr_serverless.gb_hour", e.gb_hour),
            ("emr_serverless.ephemeral_storage_gb_hour", e.ephemeral_storage_gb_hour),
            ("emr_serverless.free_ephemeral_storage_gb", e.free_ephemeral_storage_gb),
            ("emr_serverless.minimum_billed_seconds", e.minimum_billed_seconds),
            ("elasticache.serverless.redis_oss.data_stored_gb_hour", s.data_stored_gb_hour),
            ("elasticache.serverless.redis_oss.per_million_ecpus", s.per_million_ecpus),
            ("s3_standard.storage_gb_month", self.s3.storage_gb_month),
            ("s3_standard.put_copy_post_list_per_1000", self.s3.put_copy_post_list_per_1000),
            ("s3_standard.get_per_1000", self.s3.get_per_1000),
            ("s3_glacier_instant.retrieval_gb", self.glacier_instant.retrieval_gb),
            ("s3_glacier_flexible.expedited_retrieval_gb", self.glacier_flexible.expedited_retrieval_gb),
            ("local_nvme.storage_gb_hour", self.nvme.storage_gb_hour),
        ];
        let node_names: Vec<String> =
            self.elasticache_nodes.keys().map(|n| format!("elasticache.nodes.\"{n}\".hour")).collect();
        for (name, node) in node_names.iter().zip(self.elasticache_nodes.values()) {
            figures.push((name.as_str(), node.hour));
        }
        for (name, v) in figures {
            if !(v.is_finite() && v >= 0.0) {
                return Err(PriceError::Invalid {
                    path: self.path.clone(),
                    message: format!(
                        "regions.{}.{name} must be a non-negative number, found {v}",
                        self.region
                    ),
                });
            }
        }
        Ok(())
    }

    /// EMR Serverless cost of one worker per second of running, storage included.
    pub fn emr_rate_per_second(&self, w: &WorkerSpec) -> f64 {
        let billable_disk = (w.disk_gb - self.emr.free_ephemeral_storage_gb).max(0.0);
        (w.vcpu * self.emr.vcpu_hour
            + w.memory_gb * self.emr.gb_hour
            + billable_disk * self.emr.ephemeral_storage_gb_hour)
            / SECONDS_PER_HOUR
    }

    /// Seconds EMR Serverless bills for a worker that ran `seconds`: rounded up to the second, with a
    /// one-minute minimum per worker (EMR Serverless pricing).
    pub fn emr_billed_seconds(&self, seconds: f64) -> f64 {
        seconds.max(0.0).ceil().max(self.emr.minimum_billed_seconds)
    }

    /// EMR Serverless bill for one worker that ran `seconds`.
    pub fn emr_worker_cost(&self, w: &WorkerSpec, seconds: f64) -> f64 {
        self.emr_rate_per_second(w) * self.emr_billed_seconds(seconds)
    }

    /// Price of an ElastiCache node type per second.
    pub fn elasticache_node_rate_per_second(&self, node_type: &str) -> Result<f64, PriceError> {
        self.elasticache_nodes
            .get(node_type)
            .map(|n| n.hour / SECONDS_PER_HOUR)
            .ok_or_else(|| PriceError::UnknownNode(node_type.to_string()))
    }

    /// ElastiCache Serverless (Redis OSS) bill: average GB stored over `hours`, and ECPUs used.
    pub fn elasticache_serverless_cost(&self, avg_gb_stored: f64, hours: f64, ecpus: f64) -> f64 {
        let s = &self.elasticache_serverless;
        avg_gb_stored.max(s.minimum_data_stored_gb) * hours * s.data_stored_gb_hour
            + ecpus / 1e6 * s.per_million_ecpus
    }

    /// S3 Standard: requests and GB-seconds of storage.
    pub fn s3_cost(&self, puts: f64, gets: f64, gb_seconds: f64) -> f64 {
        puts / 1_000.0 * self.s3.put_copy_post_list_per_1000
            + gets / 1_000.0 * self.s3.get_per_1000
            + gb_seconds / SECONDS_PER_HOUR / HOURS_PER_MONTH * self.s3.storage_gb_month
    }

    /// S3 Glacier Flexible Retrieval with expedited restores. Data deleted early is still billed for the
    /// minimum storage duration (90 days).
    pub fn glacier_flexible_cost(&self, puts: f64, gb_written: f64, restores: f64, gb_restored: f64) -> f64 {
        let g = &self.glacier_flexible;
        let min_storage = gb_written * g.minimum_storage_days * 24.0 / HOURS_PER_MONTH * g.storage_gb_month;
        puts / 1_000.0 * g.put_copy_post_list_per_1000
            + min_storage
            + restores / 1_000.0 * g.expedited_requests_per_1000
            + gb_restored * g.expedited_retrieval_gb
    }

    /// Local disk per worker above the free allowance, per second.
    pub fn nvme_rate_per_second(&self, disk_gb_per_worker: f64) -> f64 {
        (disk_gb_per_worker - self.nvme.free_gb_per_worker).max(0.0) * self.nvme.storage_gb_hour
            / SECONDS_PER_HOUR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> PriceBook {
        PriceBook::embedded(DEFAULT_REGION).unwrap()
    }

    const W: WorkerSpec = WorkerSpec { vcpu: 4.0, memory_gb: 16.0, disk_gb: 20.0 };

    #[test]
    fn ten_workers_for_ninety_seconds_by_hand() {
        // 4 x 0.052624 + 16 x 0.0057785 = 0.302952 $/h per worker; 90 s = 0.025 h.
        let bill = 10.0 * book().emr_worker_cost(&W, 90.0);
        assert!((bill - 10.0 * 0.302952 * 90.0 / 3600.0).abs() < 1e-12);
        assert!((bill - 0.0757380).abs() < 1e-7, "{bill}");
    }

    #[test]
    fn thirty_seconds_is_billed_as_the_one_minute_minimum() {
        let bill = 10.0 * book().emr_worker_cost(&W, 30.0);
        assert!((bill - 0.0504920).abs() < 1e-7, "{bill}");
        // Partial seconds round up.
        assert_eq!(book().emr_billed_seconds(90.2), 91.0);
    }

    #[test]
    fn disk_above_twenty_gb_is_billed() {
        let b = book();
        let with_disk = WorkerSpec { disk_gb: 120.0, ..W };
        let extra = b.emr_rate_per_second(&with_disk) - b.emr_rate_per_second(&W);
        assert!((extra * 3600.0 - 100.0 * 0.000111).abs() < 1e-12);
    }

    #[test]
    fn elasticache_and_s3_by_hand() {
        let b = book();
        assert!(
            (b.elasticache_node_rate_per_second("cache.r7g.large").unwrap() * 3600.0 - 0.219).abs() < 1e-12
        );
        assert!(matches!(b.elasticache_node_rate_per_second("cache.x99"), Err(PriceError::UnknownNode(_))));
        // 2 GB for an hour and 10 M ECPUs: 2 x 0.125 + 10 x 0.0034.
        assert!((b.elasticache_serverless_cost(2.0, 1.0, 10e6) - 0.284).abs() < 1e-12);
        // 1 M PUTs and 1 M GETs: 5.00 + 0.40.
        assert!((b.s3_cost(1e6, 1e6, 0.0) - 5.4).abs() < 1e-9);
    }

    #[test]
    fn user_price_file_errors_name_file_and_line() {
        let bad = EMBEDDED.replace("vcpu_hour = 0.052624", "vcpu_hour = \"cheap\"");
        let err =
            PriceBook::parse(Path::new("my-prices.toml"), &bad, DEFAULT_REGION).unwrap_err().to_string();
        assert!(err.starts_with("my-prices.toml:"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(bad.lines().nth(line - 1).unwrap().contains("cheap"), "{err}");

        let err = PriceBook::parse(Path::new("p.toml"), EMBEDDED, "mars-north-1").unwrap_err().to_string();
        assert!(err.contains("mars-north-1") && err.contains("us-east-1"), "{err}");

        let negative = EMBEDDED.replace("gb_hour = 0.0057785", "gb_hour = -1.0");
        let err = PriceBook::parse(Path::new("p.toml"), &negative, DEFAULT_REGION).unwrap_err().to_string();
        assert!(err.contains("gb_hour"), "{err}");

        let err =
            PriceBook::from_file(Path::new("/no/such/prices.toml"), DEFAULT_REGION).unwrap_err().to_string();
        assert!(err.contains("/no/such/prices.toml"), "{err}");
    }
}
