//! In-memory backends for the embedded default, `sparkpilot invoke` and unit tests, plus
//! [`DirStore`], the local-directory object store used for the NVMe tier in every deployment.

use crate::ports::*;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written in a way that matters here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Values with their expiry, by key.
type Expiring = HashMap<String, (Vec<u8>, Option<Instant>)>;
/// Objects with their storage class and whether an archived one has been restored, by key.
type Objects = HashMap<String, (Vec<u8>, StorageClass, bool)>;

/// Redis stand-in: keys with optional expiry, lists, counters.
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<Expiring>,
    lists: Mutex<HashMap<String, VecDeque<Vec<u8>>>>,
    /// Round trips served, for tests that count them.
    pub round_trips: std::sync::atomic::AtomicU64,
}

/// LPUSH + LTRIM on a list held in memory.
fn push_front_capped(list: &mut VecDeque<Vec<u8>>, values: &[Vec<u8>], cap: usize) {
    for v in values {
        list.push_front(v.clone());
    }
    list.truncate(cap);
}

impl MemoryStore {
    fn trip(&self) {
        self.round_trips.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn trips(&self) -> u64 {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Keys currently held (not expired), sorted.
    pub fn keys(&self) -> Vec<String> {
        let now = Instant::now();
        let mut k: Vec<String> = lock(&self.values).iter().filter(|(_, (_, exp))| exp.is_none_or(|e| e > now)).map(|(k, _)| k.clone()).collect();
        k.sort();
        k
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn get_many(&self, keys: &[String]) -> PortResult<Vec<Option<Vec<u8>>>> {
        self.trip();
        let now = Instant::now();
        let values = lock(&self.values);
        Ok(keys.iter().map(|k| values.get(k).filter(|(_, exp)| exp.is_none_or(|e| e > now)).map(|(v, _)| v.clone())).collect())
    }
    async fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> PortResult<()> {
        self.trip();
        let exp = ttl.map(|t| Instant::now() + t);
        let mut values = lock(&self.values);
        for (k, v) in entries {
            values.insert(k.clone(), (v.clone(), exp));
        }
        Ok(())
    }
    async fn set_many_if_version(&self, version_key: &str, expected: u64, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> PortResult<bool> {
        self.trip();
        let now = Instant::now();
        let mut values = lock(&self.values);
        let current = match values.get(version_key).filter(|(_, exp)| exp.is_none_or(|e| e > now)) {
            None => 0,
            Some((v, _)) => std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or_else(|| PortError::new("memory", "versioned set", format!("{version_key} is not a counter")))?,
        };
        if current != expected {
            return Ok(false);
        }
        let exp = ttl.map(|t| now + t);
        for (k, v) in entries {
            values.insert(k.clone(), (v.clone(), exp));
        }
        values.insert(version_key.to_string(), ((expected + 1).to_string().into_bytes(), None));
        Ok(true)
    }
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> PortResult<bool> {
        self.trip();
        let now = Instant::now();
        let mut values = lock(&self.values);
        if values.get(key).is_some_and(|(_, exp)| exp.is_none_or(|e| e > now)) {
            return Ok(false);
        }
        values.insert(key.to_string(), (value.to_vec(), Some(now + ttl)));
        Ok(true)
    }
    async fn delete(&self, keys: &[String]) -> PortResult<()> {
        self.trip();
        let mut values = lock(&self.values);
        for k in keys {
            values.remove(k);
        }
        Ok(())
    }
    async fn push_capped(&self, key: &str, values: &[Vec<u8>], cap: usize) -> PortResult<()> {
        self.trip();
        push_front_capped(lock(&self.lists).entry(key.to_string()).or_default(), values, cap);
        Ok(())
    }
    async fn recent(&self, key: &str, n: usize) -> PortResult<Vec<Vec<u8>>> {
        self.trip();
        Ok(lock(&self.lists).get(key).map(|l| l.iter().take(n).cloned().collect()).unwrap_or_default())
    }
    async fn incr(&self, key: &str) -> PortResult<u64> {
        self.trip();
        let mut values = lock(&self.values);
        let entry = values.entry(key.to_string()).or_insert_with(|| (b"0".to_vec(), None));
        let n: u64 = std::str::from_utf8(&entry.0).ok().and_then(|s| s.parse().ok()).ok_or_else(|| PortError::new("memory", "incr", format!("{key} is not a counter")))?;
        entry.0 = (n + 1).to_string().into_bytes();
        Ok(n + 1)
    }
    async fn write(&self, writes: &[StoreWrite]) -> PortResult<()> {
        self.trip();
        let now = Instant::now();
        // Both maps locked for the whole batch, values first as everywhere else: all or nothing.
        let mut values = lock(&self.values);
        let mut lists = lock(&self.lists);
        for w in writes {
            match w {
                StoreWrite::Set { key, value, ttl } => {
                    values.insert(key.clone(), (value.clone(), ttl.map(|t| now + t)));
                }
                StoreWrite::Delete { key } => {
                    values.remove(key);
                    lists.remove(key);
                }
                StoreWrite::PushCapped { key, values: new, cap } => push_front_capped(lists.entry(key.clone()).or_default(), new, *cap),
            }
        }
        Ok(())
    }
}

/// Kafka stand-in: keeps what was published.
#[derive(Debug, Default)]
pub struct MemoryPublisher {
    pub records: Mutex<Vec<(String, String, Vec<u8>)>>,
}

impl MemoryPublisher {
    /// Payloads published to `topic`, in order.
    pub fn on(&self, topic: &str) -> Vec<Vec<u8>> {
        lock(&self.records).iter().filter(|(t, _, _)| t == topic).map(|(_, _, p)| p.clone()).collect()
    }
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> PortResult<()> {
        lock(&self.records).push((topic.to_string(), key.to_string(), payload.to_vec()));
        Ok(())
    }
}

/// EMR Serverless stand-in with the service's rule that capacity changes only in CREATED or STOPPED.
#[derive(Debug)]
pub struct MemoryEmr {
    pub status: Mutex<AppStatus>,
    pub updates: Mutex<Vec<Capacity>>,
}

impl MemoryEmr {
    pub fn new(state: AppState, capacity: Capacity) -> Self {
        Self { status: Mutex::new(AppStatus { state, capacity }), updates: Mutex::new(Vec::new()) }
    }
}

impl Default for MemoryEmr {
    fn default() -> Self {
        Self::new(AppState::Created, Capacity { max_vcpu: 16, max_memory_gb: 64, initial_executors: 0, worker_vcpu: 4, worker_memory_gb: 16 })
    }
}

#[async_trait]
impl EmrControl for MemoryEmr {
    async fn get_application(&self) -> PortResult<AppStatus> {
        Ok(lock(&self.status).clone())
    }
    async fn update_capacity(&self, capacity: &Capacity) -> PortResult<()> {
        let mut status = lock(&self.status);
        if !status.state.accepts_update() {
            return Err(PortError::new("emr-serverless", "UpdateApplication", format!("application is {:?}; updates need CREATED or STOPPED", status.state)));
        }
        status.capacity = *capacity;
        lock(&self.updates).push(*capacity);
        Ok(())
    }
}

/// ElastiCache stand-in.
#[derive(Debug)]
pub struct MemoryHotTier {
    pub shards: Mutex<u32>,
}

impl Default for MemoryHotTier {
    fn default() -> Self {
        Self { shards: Mutex::new(1) }
    }
}

#[async_trait]
impl HotTier for MemoryHotTier {
    async fn shards(&self) -> PortResult<u32> {
        Ok(*lock(&self.shards))
    }
    async fn set_shards(&self, shards: u32) -> PortResult<()> {
        *lock(&self.shards) = shards;
        Ok(())
    }
}

/// S3 stand-in with Glacier semantics: an archived object reads as `Archived` until restored.
#[derive(Debug, Default)]
pub struct MemoryObjectStore {
    objects: Mutex<Objects>,
}

impl MemoryObjectStore {
    pub fn class_of(&self, key: &str) -> Option<StorageClass> {
        lock(&self.objects).get(key).map(|o| o.1)
    }
    pub fn len(&self) -> usize {
        lock(&self.objects).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    async fn put(&self, key: &str, body: Vec<u8>, class: StorageClass) -> PortResult<()> {
        lock(&self.objects).insert(key.to_string(), (body, class, false));
        Ok(())
    }
    async fn get(&self, key: &str) -> PortResult<ObjectRead> {
        Ok(match lock(&self.objects).get(key) {
            None => ObjectRead::Missing,
            Some((_, StorageClass::Glacier, false)) => ObjectRead::Archived { restore_in_progress: false },
            Some((b, _, _)) => ObjectRead::Bytes(b.clone()),
        })
    }
    async fn restore(&self, key: &str, _days: u32) -> PortResult<()> {
        match lock(&self.objects).get_mut(key) {
            Some(o) => {
                o.2 = true;
                Ok(())
            }
            None => Err(PortError::new("memory-s3", "RestoreObject", format!("no object {key}"))),
        }
    }
    async fn delete(&self, key: &str) -> PortResult<()> {
        lock(&self.objects).remove(key);
        Ok(())
    }
}

/// Objects as files under a root directory: the NVMe tier (instance storage or an EFS mount).
/// Writes go to a temporary name and are renamed into place, so a reader never sees half a block.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> PortResult<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| PortError::new("dir", "create", format!("{}: {e}", root.display())))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PortResult<PathBuf> {
        // Keys become file names: refuse anything that could leave the root.
        if key.is_empty() || key.contains("..") || key.starts_with('/') || key.contains('\0') {
            return Err(PortError::new("dir", "path", format!("key {key:?} is not a safe file name")));
        }
        Ok(self.root.join(key.replace('/', "_")))
    }
}

#[async_trait]
impl ObjectStore for DirStore {
    async fn put(&self, key: &str, body: Vec<u8>, _class: StorageClass) -> PortResult<()> {
        let path = self.path(key)?;
        let tmp = path.with_extension("partial");
        let io = |e: std::io::Error| PortError::new("dir", "write", format!("{}: {e}", path.display()));
        tokio::fs::write(&tmp, &body).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }
    async fn get(&self, key: &str) -> PortResult<ObjectRead> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(ObjectRead::Bytes(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ObjectRead::Missing),
            Err(e) => Err(PortError::new("dir", "read", format!("{}: {e}", path.display()))),
        }
    }
    async fn restore(&self, _key: &str, _days: u32) -> PortResult<()> {
        Ok(())
    }
    async fn delete(&self, key: &str) -> PortResult<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PortError::new("dir", "delete", format!("{}: {e}", path.display()))),
        }
    }
}
