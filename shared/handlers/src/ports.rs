//! The narrow interfaces the handlers need from the outside world. Each has an in-memory
//! implementation ([`crate::memory`]) for the embedded default and tests, and a real one in the
//! `adapters` crate (Redis, Kafka, EMR Serverless, ElastiCache, S3).

use async_trait::async_trait;
use std::time::Duration;

/// A failure of a backend, with the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{backend} {operation}: {message}")]
pub struct PortError {
    pub backend: &'static str,
    pub operation: &'static str,
    pub message: String,
}

impl PortError {
    pub fn new(backend: &'static str, operation: &'static str, message: impl std::fmt::Display) -> Self {
        Self { backend, operation, message: message.to_string() }
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// Key-value state shared by invocations (Redis live). Every method is one round trip.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Values of `keys`, in order (MGET).
    async fn get_many(&self, keys: &[String]) -> PortResult<Vec<Option<Vec<u8>>>>;
    /// Write all entries, each with the TTL if given, in one pipeline.
    async fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> PortResult<()>;
    /// Write all entries only if the counter at `version_key` still reads `expected` (a missing
    /// counter reads 0), and advance it to `expected + 1`, atomically and in one round trip. False,
    /// with nothing written, if another writer got there first.
    async fn set_many_if_version(
        &self,
        version_key: &str,
        expected: u64,
        entries: &[(String, Vec<u8>)],
        ttl: Option<Duration>,
    ) -> PortResult<bool>;
    /// Set `key` only if it does not exist (SET NX), with a TTL; true if this call set it.
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> PortResult<bool>;
    async fn delete(&self, keys: &[String]) -> PortResult<()>;
    /// Delete `key` only if it holds `value` (releasing a lease this caller took); true if deleted.
    async fn delete_if_equals(&self, key: &str, value: &[u8]) -> PortResult<bool>;
    /// Push to the front of a list and trim it to `cap` entries (LPUSH + LTRIM).
    async fn push_capped(&self, key: &str, values: &[Vec<u8>], cap: usize) -> PortResult<()>;
    /// The newest `n` entries of a list, newest first.
    async fn recent(&self, key: &str, n: usize) -> PortResult<Vec<Vec<u8>>>;
    /// Increment a counter and return its new value.
    async fn incr(&self, key: &str) -> PortResult<u64>;
    /// Apply `writes` in order, all or none (MULTI/EXEC), in one round trip.
    async fn write(&self, writes: &[StoreWrite]) -> PortResult<()>;

    async fn get(&self, key: &str) -> PortResult<Option<Vec<u8>>> {
        Ok(self.get_many(&[key.to_string()]).await?.pop().flatten())
    }
}

/// One write of a batch that [`StateStore::write`] applies in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreWrite {
    Set {
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    Delete {
        key: String,
    },
    /// Push to the front of a list and trim it to `cap` entries.
    PushCapped {
        key: String,
        values: Vec<Vec<u8>>,
        cap: usize,
    },
}

/// Publishes records to a topic (Kafka live).
#[async_trait]
pub trait Publisher: Send + Sync {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> PortResult<()>;
    /// Publish with the time the record describes (Unix seconds) as its timestamp, so that a
    /// consumer judges it at event time. Publishers without timestamps ignore it.
    async fn publish_at(&self, topic: &str, key: &str, payload: &[u8], _time_s: f64) -> PortResult<()> {
        self.publish(topic, key, payload).await
    }
}

/// State of an EMR Serverless application (the API's `ApplicationState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppState {
    Creating,
    Created,
    Starting,
    Started,
    Stopping,
    Stopped,
    Terminated,
}

impl AppState {
    /// UpdateApplication is accepted only in these states (EMR Serverless API reference).
    pub fn accepts_update(self) -> bool {
        matches!(self, AppState::Created | AppState::Stopped)
    }
}

/// Worker shape and counts as EMR Serverless expresses capacity.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    /// Most vCPUs the application may use.
    pub max_vcpu: u32,
    /// Most memory, GB.
    pub max_memory_gb: u32,
    /// Pre-initialised executor workers.
    pub initial_executors: u32,
    /// Shape of a pre-initialised worker.
    pub worker_vcpu: u32,
    pub worker_memory_gb: u32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AppStatus {
    pub state: AppState,
    pub capacity: Capacity,
}

/// EMR Serverless control plane.
#[async_trait]
pub trait EmrControl: Send + Sync {
    async fn get_application(&self) -> PortResult<AppStatus>;
    /// UpdateApplication with maximum and initial capacity. Callers check `accepts_update` first;
    /// the service refuses the call in any other state.
    async fn update_capacity(&self, capacity: &Capacity) -> PortResult<()>;
}

/// The ElastiCache hot tier.
#[async_trait]
pub trait HotTier: Send + Sync {
    /// Shards (node groups) now.
    async fn shards(&self) -> PortResult<u32>;
    /// Ask for `shards` node groups (online resharding).
    async fn set_shards(&self, shards: u32) -> PortResult<()>;
}

/// Storage class of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StorageClass {
    Standard,
    Glacier,
}

/// Result of reading an object.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectRead {
    Bytes(Vec<u8>),
    /// Archived and not (yet) restored: a restore must be asked for, or is under way.
    Archived {
        restore_in_progress: bool,
    },
    Missing,
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    pub key: String,
    /// Last written, Unix seconds.
    pub modified_s: f64,
}

/// Who can read what an object store holds, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every instance of the function reads what any one wrote, and it outlives them (S3, an EFS
    /// mount, a host directory all the function's processes share).
    Shared,
    /// Only this instance sees it and it goes when the instance is recycled (a Lambda's own /tmp, a
    /// pod's container file system): why, to put in the placement record.
    Instance(String),
}

/// Blob storage by key: S3 live, a directory for NVMe or EFS.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn put(&self, key: &str, body: Vec<u8>, class: StorageClass) -> PortResult<()>;
    async fn get(&self, key: &str) -> PortResult<ObjectRead>;
    /// Start a restore of an archived object for `days`.
    async fn restore(&self, key: &str, days: u32) -> PortResult<()>;
    async fn delete(&self, key: &str) -> PortResult<()>;
    /// The objects whose keys start with `prefix`, at most `limit` of them, in key order (the
    /// shuffle-router's sweep of orphaned copies). Stores that cannot list say so.
    async fn list(&self, _prefix: &str, _limit: usize) -> PortResult<Vec<ObjectInfo>> {
        Err(PortError::new("object store", "list", "this store cannot list its objects"))
    }
    /// Whether other instances see what this one writes here ([`Reach`]).
    fn reach(&self) -> Reach {
        Reach::Shared
    }
    /// The S3 bucket this store reads and writes, if it is one.
    fn bucket(&self) -> Option<&str> {
        None
    }
}
