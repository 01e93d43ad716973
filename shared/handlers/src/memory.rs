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
/// Objects with their storage class, whether an archived one has been restored and when each was
/// written (Unix seconds), by key.
type Objects = HashMap<String, (Vec<u8>, StorageClass, bool, f64)>;

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

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
        let mut k: Vec<String> = lock(&self.values)
            .iter()
            .filter(|(_, (_, exp))| exp.is_none_or(|e| e > now))
            .map(|(k, _)| k.clone())
            .collect();
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
        Ok(keys
            .iter()
            .map(|k| values.get(k).filter(|(_, exp)| exp.is_none_or(|e| e > now)).map(|(v, _)| v.clone()))
            .collect())
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
    async fn set_many_if_version(
        &self,
        version_key: &str,
        expected: u64,
        entries: &[(String, Vec<u8>)],
        ttl: Option<Duration>,
    ) -> PortResult<bool> {
        self.trip();
        let now = Instant::now();
        let mut values = lock(&self.values);
        let current = match values.get(version_key).filter(|(_, exp)| exp.is_none_or(|e| e > now)) {
            None => 0,
            Some((v, _)) => std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
                PortError::new("memory", "versioned set", format!("{version_key} is not a counter"))
            })?,
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
    async fn delete_if_equals(&self, key: &str, value: &[u8]) -> PortResult<bool> {
        self.trip();
        let now = Instant::now();
        let mut values = lock(&self.values);
        let holds = values.get(key).is_some_and(|(v, exp)| v == value && exp.is_none_or(|e| e > now));
        if holds {
            values.remove(key);
        }
        Ok(holds)
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
        let n: u64 = std::str::from_utf8(&entry.0)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| PortError::new("memory", "incr", format!("{key} is not a counter")))?;
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
                StoreWrite::PushCapped { key, values: new, cap } => {
                    push_front_capped(lists.entry(key.clone()).or_default(), new, *cap)
                }
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
        Self::new(
            AppState::Created,
            Capacity {
                max_vcpu: 16,
                max_memory_gb: 64,
                initial_executors: 0,
                worker_vcpu: 4,
                worker_memory_gb: 16,
            },
        )
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
            return Err(PortError::new(
                "emr-serverless",
                "UpdateApplication",
                format!("application is {:?}; updates need CREATED or STOPPED", status.state),
            ));
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
    /// Every key held, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = lock(&self.objects).keys().cloned().collect();
        k.sort();
        k
    }
    /// Pretend `key` was written `age_s` seconds ago (for sweeps in tests).
    pub fn age(&self, key: &str, age_s: f64) {
        if let Some(o) = lock(&self.objects).get_mut(key) {
            o.3 = unix_now() - age_s;
        }
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    async fn put(&self, key: &str, body: Vec<u8>, class: StorageClass) -> PortResult<()> {
        lock(&self.objects).insert(key.to_string(), (body, class, false, unix_now()));
        Ok(())
    }
    async fn get(&self, key: &str) -> PortResult<ObjectRead> {
        Ok(match lock(&self.objects).get(key) {
            None => ObjectRead::Missing,
            Some((_, StorageClass::Glacier, false, _)) => ObjectRead::Archived { restore_in_progress: false },
            Some((b, _, _, _)) => ObjectRead::Bytes(b.clone()),
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
    async fn list(&self, prefix: &str, limit: usize) -> PortResult<Vec<ObjectInfo>> {
        let mut out: Vec<ObjectInfo> = lock(&self.objects)
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| ObjectInfo { key: k.clone(), modified_s: o.3 })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit);
        Ok(out)
    }
}

/// Objects as files under a root directory: the NVMe tier (instance storage or an EFS mount).
/// Writes go to a temporary name and are renamed into place, so a reader never sees half a block.
/// A key is a path under the root: its `/`-separated segments are directories and a file.
///
/// Whether the directory can hold blocks for other instances ([`Reach`]) is decided once, here:
/// `SPARKPILOT_NVME_SHARED=true|false` says so outright; otherwise, on AWS Lambda (the function's
/// own `/tmp`) and in a Kubernetes pod (the container's file system), the directory is the
/// instance's own unless it is on a network file system (EFS is NFS); anywhere else (one host: a
/// local run, faasd, the tests) it is shared by every process of the host.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    reach: Reach,
}

/// Temporary files of writes under way end with this (and a nonce); listings skip them.
const PARTIAL: &str = ".partial";

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> PortResult<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| PortError::new("dir", "create", format!("{}: {e}", root.display())))?;
        let reach = dir_reach(&root, |k| std::env::var(k).ok());
        Ok(Self { root, reach })
    }

    /// A directory whose reach the caller states (tests, or a deployment that knows better).
    pub fn with_reach(root: impl Into<PathBuf>, reach: Reach) -> PortResult<Self> {
        let mut d = Self::new(root)?;
        d.reach = reach;
        Ok(d)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PortResult<PathBuf> {
        // Keys become paths: refuse anything that could leave the root or name a write under way.
        let safe = |seg: &str| {
            !(seg.is_empty()
                || seg == "."
                || seg == ".."
                || seg.contains('\0')
                || seg.contains('\\')
                || seg.contains(PARTIAL))
        };
        if !key.split('/').all(safe) {
            return Err(PortError::new("dir", "path", format!("key {key:?} is not a safe file name")));
        }
        Ok(self.root.join(key))
    }
}

/// The file system type of the mount holding `path`, from /proc/self/mountinfo (Linux).
fn filesystem_of(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let unescape = |s: &str| {
        s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
    };
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount = PathBuf::from(unescape(left.split(' ').nth(4)?));
            let fstype = right.split(' ').next()?.to_string();
            path.starts_with(&mount).then_some((mount.as_os_str().len(), fstype))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

/// [`DirStore`]'s rule for its reach, with the environment as a function (for tests).
fn dir_reach(root: &Path, env: impl Fn(&str) -> Option<String>) -> Reach {
    match env("SPARKPILOT_NVME_SHARED").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("true" | "1" | "yes") => return Reach::Shared,
        Some("false" | "0" | "no") => {
            return Reach::Instance(format!(
                "SPARKPILOT_NVME_SHARED says {} is this instance's own",
                root.display()
            ))
        }
        _ => {}
    }
    let platform = if env("AWS_LAMBDA_FUNCTION_NAME").is_some() || env("AWS_LAMBDA_RUNTIME_API").is_some() {
        "Lambda"
    } else if env("KUBERNETES_SERVICE_HOST").is_some() {
        "Kubernetes pod"
    } else {
        return Reach::Shared;
    };
    let fs = filesystem_of(root).unwrap_or_else(|| "unknown".into());
    let network = ["nfs", "nfs4", "efs", "cifs", "smb3", "lustre", "ceph", "glusterfs"]
        .contains(&fs.as_str())
        || fs.starts_with("fuse.");
    if network {
        Reach::Shared
    } else {
        Reach::Instance(format!(
            "{} is this {platform} instance's own storage ({fs}): other instances cannot read it and it goes when the instance is recycled; mount a shared file system (EFS) at SPARKPILOT_NVME_DIR, or set SPARKPILOT_NVME_SHARED=true",
            root.display()
        ))
    }
}

#[async_trait]
impl ObjectStore for DirStore {
    async fn put(&self, key: &str, body: Vec<u8>, _class: StorageClass) -> PortResult<()> {
        static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = self.path(key)?;
        // A name of its own per write: two writers of one key never share a temporary file.
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(
            "{PARTIAL}.{}.{}",
            std::process::id(),
            NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let tmp = PathBuf::from(tmp);
        let io = |e: std::io::Error| PortError::new("dir", "write", format!("{}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        if let Err(e) = tokio::fs::write(&tmp, &body).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io(e));
        }
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
    async fn list(&self, prefix: &str, limit: usize) -> PortResult<Vec<ObjectInfo>> {
        let io = |e: std::io::Error| PortError::new("dir", "list", format!("{}: {e}", self.root.display()));
        // Walk from the deepest directory the prefix names.
        let base = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if base.is_empty() { self.root.clone() } else { self.path(base)? };
        let mut out = Vec::new();
        let mut dirs = vec![(start, base.to_string())];
        while let Some((dir, key_dir)) = dirs.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(io)? {
                let Ok(name) = entry.file_name().into_string() else { continue };
                let key = if key_dir.is_empty() { name.clone() } else { format!("{key_dir}/{name}") };
                let Ok(meta) = entry.metadata().await else { continue };
                if meta.is_dir() {
                    if prefix.starts_with(&format!("{key}/")) || key.starts_with(prefix) {
                        dirs.push((entry.path(), key));
                    }
                    continue;
                }
                if name.contains(PARTIAL) || !key.starts_with(prefix) {
                    continue;
                }
                let modified_s = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                out.push(ObjectInfo { key, modified_s });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit);
        Ok(out)
    }
    fn reach(&self) -> Reach {
        self.reach.clone()
    }
}

/// Which calls of a [`Flaky`] store fail.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Fraction of puts, gets and deletes that fail (decided by a counter, deterministically).
    pub put: f64,
    pub get: f64,
    pub delete: f64,
    /// A put that fails still stores the object (the reply was lost, not the write).
    pub put_lands: bool,
}

/// An object store that fails a stated share of its calls: the fault injection of the shuffle
/// tests (a delete that fails is a crash between copy and delete, as far as the store can tell).
pub struct Flaky<S> {
    pub inner: S,
    pub faults: Mutex<Faults>,
    calls: std::sync::atomic::AtomicU64,
    /// Calls failed so far.
    pub failed: std::sync::atomic::AtomicU64,
}

impl<S> Flaky<S> {
    pub fn new(inner: S, faults: Faults) -> Self {
        Self { inner, faults: Mutex::new(faults), calls: Default::default(), failed: Default::default() }
    }
    pub fn set(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }
    /// Whether this call fails: a low-discrepancy sequence over the calls, so a share of 0.3 fails
    /// 3 calls in 10 whatever their order, and 0 or 1 fail none or all.
    fn fails(&self, share: f64, op: &'static str) -> PortResult<()> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let x = (n as f64 * 0.618_033_988_749_895).fract();
        if x < share {
            self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(PortError::new("flaky", op, "injected fault"));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Flaky<S> {
    async fn put(&self, key: &str, body: Vec<u8>, class: StorageClass) -> PortResult<()> {
        let f = *lock(&self.faults);
        if let Err(e) = self.fails(f.put, "put") {
            if f.put_lands {
                self.inner.put(key, body, class).await?;
            }
            return Err(e);
        }
        self.inner.put(key, body, class).await
    }
    async fn get(&self, key: &str) -> PortResult<ObjectRead> {
        let share = lock(&self.faults).get;
        self.fails(share, "get")?;
        self.inner.get(key).await
    }
    async fn restore(&self, key: &str, days: u32) -> PortResult<()> {
        self.inner.restore(key, days).await
    }
    async fn delete(&self, key: &str) -> PortResult<()> {
        let share = lock(&self.faults).delete;
        self.fails(share, "delete")?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str, limit: usize) -> PortResult<Vec<ObjectInfo>> {
        self.inner.list(prefix, limit).await
    }
    fn reach(&self) -> Reach {
        self.inner.reach()
    }
    fn bucket(&self) -> Option<&str> {
        self.inner.bucket()
    }
}

#[async_trait]
impl<S: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<S> {
    async fn put(&self, key: &str, body: Vec<u8>, class: StorageClass) -> PortResult<()> {
        (**self).put(key, body, class).await
    }
    async fn get(&self, key: &str) -> PortResult<ObjectRead> {
        (**self).get(key).await
    }
    async fn restore(&self, key: &str, days: u32) -> PortResult<()> {
        (**self).restore(key, days).await
    }
    async fn delete(&self, key: &str) -> PortResult<()> {
        (**self).delete(key).await
    }
    async fn list(&self, prefix: &str, limit: usize) -> PortResult<Vec<ObjectInfo>> {
        (**self).list(prefix, limit).await
    }
    fn reach(&self) -> Reach {
        (**self).reach()
    }
    fn bucket(&self) -> Option<&str> {
        (**self).bucket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dir_store_lists_the_keys_it_was_given_and_no_write_under_way() {
        let root =
            std::env::temp_dir().join(format!("sparkpilot-dirstore-{}-{}", std::process::id(), unix_now()));
        let d = DirStore::with_reach(&root, Reach::Shared).unwrap();
        for k in ["p/shuffle/blocks/a.b~nvme-1", "p/shuffle/blocks/a.c~nvme-2", "p/shuffle/x%y", "q/other"] {
            d.put(k, k.as_bytes().to_vec(), StorageClass::Standard).await.unwrap();
        }
        std::fs::write(root.join("p/shuffle/blocks/z.partial.1.2"), b"half").unwrap();
        let keys: Vec<String> = d.list("p/shuffle/", 10).await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["p/shuffle/blocks/a.b~nvme-1", "p/shuffle/blocks/a.c~nvme-2", "p/shuffle/x%y"]);
        assert_eq!(d.get("p/shuffle/x%y").await.unwrap(), ObjectRead::Bytes(b"p/shuffle/x%y".to_vec()));
        assert_eq!(d.list("p/", 1).await.unwrap().len(), 1);
        assert!(d.put("a.partial.x", vec![], StorageClass::Standard).await.is_err());
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", ""] {
            assert!(d.get(bad).await.is_err(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_lambdas_own_tmp_is_not_shared_and_the_deployment_can_say_otherwise() {
        let tmp = std::env::temp_dir();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(dir_reach(&tmp, env(&[])), Reach::Shared);
        let Reach::Instance(why) = dir_reach(&tmp, env(&[("AWS_LAMBDA_FUNCTION_NAME", "f")])) else {
            panic!("a Lambda's /tmp is its own")
        };
        assert!(why.contains("Lambda") && why.contains("EFS"), "{why}");
        assert!(matches!(
            dir_reach(&tmp, env(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")])),
            Reach::Instance(_)
        ));
        assert_eq!(
            dir_reach(&tmp, env(&[("AWS_LAMBDA_FUNCTION_NAME", "f"), ("SPARKPILOT_NVME_SHARED", "true")])),
            Reach::Shared
        );
        assert!(matches!(dir_reach(&tmp, env(&[("SPARKPILOT_NVME_SHARED", "false")])), Reach::Instance(_)));
    }

    #[tokio::test]
    async fn a_flaky_store_fails_the_share_it_was_given() {
        let f = Flaky::new(MemoryObjectStore::default(), Faults { delete: 0.3, ..Default::default() });
        f.put("k", vec![1], StorageClass::Standard).await.unwrap();
        let failed = futures_count(&f).await;
        assert!((25..=35).contains(&failed), "{failed} of 100 deletes failed");
        f.set(Faults { put: 1.0, put_lands: true, ..Default::default() });
        assert!(f.put("landed", vec![2], StorageClass::Standard).await.is_err());
        assert_eq!(f.inner.get("landed").await.unwrap(), ObjectRead::Bytes(vec![2]));
    }

    async fn futures_count(f: &Flaky<MemoryObjectStore>) -> usize {
        let mut failed = 0;
        for _ in 0..100 {
            failed += usize::from(f.delete("k").await.is_err());
        }
        failed
    }
}
