//! shuffle-router under faults, against the real servers: redis-server for the index and the Redis
//! tier, moto for S3 and Glacier (through [`FaultProxy`], which answers a share of requests with
//! S3's 500 InternalError and 503 SlowDown, some after the request reached the store), and a
//! directory for NVMe. A crash between copy and delete is a store whose deletes fail. After each
//! workload, with the faults off and the sweep run: every block reads back its exact bytes, from
//! exactly one copy (the one its index entry names), and no other copy is left on S3, NVMe or Redis.

use adapters::{RedisStore, S3Store};
use base64::Engine;
use handlers::memory::{DirStore, Faults, Flaky, MemoryEmr, MemoryHotTier, MemoryPublisher};
use handlers::ports::{ObjectStore, Reach, StorageClass};
use handlers::shuffle_router::{BlockRead, ShuffleRouter, SWEEP_MIN_AGE_S};
use handlers::{Backends, Handler, HandlerError, Settings, Trigger};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tests::fault_proxy::{FaultPlan, FaultProxy};
use tests::*;

/// The four placements of the default router: (access_count, age_s, archival) for Redis, NVMe, S3
/// and Glacier (the sample manifest's blocks).
const CLASSES: [(i64, f64, bool); 4] =
    [(12, 4.0, false), (2, 60.0, false), (0, 7_200.0, false), (0, 86_400.0, true)];

struct Rig {
    router: ShuffleRouter,
    settings: Settings,
    /// S3 straight to moto, to see what the bucket really holds.
    s3: aws_sdk_s3::Client,
    bucket: String,
    nvme: DirStore,
}

/// A bucket on moto, an S3 client to it with `attempts` SDK attempts (through `proxy` if given),
/// and a router over them; `objects` wraps the S3 store (a Flaky one for crashes).
async fn rig(
    proxy: Option<&FaultProxy>,
    attempts: u32,
    wrap: impl FnOnce(S3Store) -> Arc<dyn ObjectStore>,
    wrap_nvme: impl FnOnce(DirStore) -> Arc<dyn ObjectStore>,
    ttl_s: u64,
) -> Rig {
    let conf = aws_config().await;
    let direct = s3_client(&conf);
    let bucket = unique("faults").to_lowercase();
    direct.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
    let mut builder = aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).retry_config(
        aws_sdk_s3::config::retry::RetryConfig::standard()
            .with_max_attempts(attempts)
            .with_initial_backoff(Duration::from_millis(5))
            .with_max_backoff(Duration::from_millis(50)),
    );
    if let Some(p) = proxy {
        builder = builder.endpoint_url(p.url());
    }
    let through = aws_sdk_s3::Client::from_conf(builder.build());
    let redis = Arc::new(RedisStore::connect(&service_env("REDIS_URL")).await.expect("redis-server answers"));
    let nvme =
        DirStore::with_reach(std::env::temp_dir().join(unique("sparkpilot-nvme")), Reach::Shared).unwrap();
    let backends = Backends {
        store: redis,
        publisher: Arc::new(MemoryPublisher::default()),
        emr: Arc::new(MemoryEmr::default()),
        hot_tier: Arc::new(MemoryHotTier::default()),
        objects: wrap(S3Store::new(through, &bucket)),
        nvme: wrap_nvme(nvme.clone()),
    };
    let settings = Settings { key_prefix: unique("sp"), block_ttl_s: ttl_s, ..Settings::default() };
    Rig { router: ShuffleRouter::new(&settings, &backends).unwrap(), settings, s3: direct, bucket, nvme }
}

fn plain(s: S3Store) -> Arc<dyn ObjectStore> {
    Arc::new(s)
}
fn plain_dir(d: DirStore) -> Arc<dyn ObjectStore> {
    Arc::new(d)
}

/// Pseudo-random bytes, different per block and version.
fn bytes(i: usize, version: usize) -> Vec<u8> {
    let n = 64 + (i * 997 + version * 131) % 6_000;
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 7) as u8 + b'a'
        })
        .collect()
}

fn manifest(id: &str, data: &[u8], class: usize) -> Value {
    let (access_count, age_s, archival) = CLASSES[class % 4];
    json!({"block_id": id, "size_bytes": data.len(), "access_count": access_count, "age_s": age_s, "archival": archival, "payload_b64": base64::engine::general_purpose::STANDARD.encode(data)})
}

impl Rig {
    /// Write `blocks` as a producer would: failed records are delivered again until all are in.
    /// Returns the record errors seen on the way.
    async fn write_all(&self, blocks: &[(String, Vec<u8>, usize)]) -> usize {
        let mut pending: Vec<usize> = (0..blocks.len()).collect();
        let mut errors = 0;
        for _round in 0..30 {
            if pending.is_empty() {
                return errors;
            }
            let mut next = Vec::new();
            for batch in pending.chunks(8) {
                let list: Vec<Value> =
                    batch.iter().map(|&i| manifest(&blocks[i].0, &blocks[i].1, blocks[i].2)).collect();
                match self.router.handle(Trigger::Direct(json!({"blocks": list}))).await.map(|o| o.to_json())
                {
                    Ok(out) => {
                        for e in out["errors"].as_array().unwrap() {
                            errors += 1;
                            next.push(batch[e["offset"].as_u64().unwrap() as usize]);
                        }
                    }
                    // The whole batch failed (a store unreachable): deliver it again.
                    Err(_) => next.extend_from_slice(batch),
                }
            }
            pending = next;
        }
        panic!("blocks {pending:?} could not be written in 30 deliveries");
    }

    /// Read a block's bytes, through a Glacier restore and transient faults.
    async fn read(&self, id: &str) -> Vec<u8> {
        let mut last = String::new();
        for _ in 0..60 {
            match self.router.read(id).await {
                Ok(BlockRead::Bytes(b)) => return b,
                Ok(BlockRead::Restoring) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e @ HandlerError::BadRequest(_)) => panic!("{id}: {e}"),
                Err(e) => last = e.to_string(),
            }
        }
        panic!("{id} could not be read: {last}");
    }

    /// Move a block, again until it moves (a Glacier block is read first, which restores it).
    async fn move_to(&self, id: &str, tier: &str) -> u32 {
        let mut failures = 0;
        for _ in 0..60 {
            match self
                .router
                .handle(Trigger::Direct(json!({"op": "move", "block_id": id, "tier": tier})))
                .await
                .map(|o| o.to_json())
            {
                Ok(v) if v["status"] == "moved" => return failures,
                Ok(v) => panic!("{id} -> {tier}: {v}"),
                Err(HandlerError::BadRequest(e)) => panic!("{id} -> {tier}: {e}"),
                Err(_) => {
                    failures += 1;
                    let _ = self.router.read(id).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        panic!("{id} could not be moved to {tier}");
    }

    /// Every copy the router holds: S3 keys (straight from moto), NVMe files, Redis data keys.
    async fn copies(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        let prefix = self.router.blocks_prefix();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            all.extend(page.contents().iter().filter_map(|o| o.key().map(String::from)));
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        all.extend(self.nvme.list(&prefix, usize::MAX).await.unwrap().into_iter().map(|o| o.key));
        let url = service_env("REDIS_URL");
        let pattern = format!("{{{}}}:blockdata:*", self.settings.key_prefix);
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &url, "--scan", "--pattern", &pattern])
            .output()
            .expect("redis-cli");
        all.extend(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(String::from));
        all
    }

    /// The faults are over: sweep, then every block reads its bytes and the copies left are
    /// exactly the indexed ones. Returns the copies the sweep deleted.
    async fn settle(&self, expected: &BTreeMap<String, Vec<u8>>) -> usize {
        let report = self.router.sweep(0.0).await.unwrap();
        assert!(report.errors.is_empty() && report.unsure == 0 && !report.truncated, "{report:?}");
        let mut indexed = BTreeSet::new();
        for (id, want) in expected {
            let got = self.read(id).await;
            assert!(&got == want, "{id} came back different ({} bytes, want {})", got.len(), want.len());
            indexed.insert(self.router.location(id).await.unwrap().expect("indexed").key);
        }
        assert_eq!(indexed.len(), expected.len());
        let copies = self.copies().await;
        assert_eq!(copies, indexed, "copies left beside the indexed ones, or indexed copies missing");
        report.deleted
    }
}

/// Write 40 blocks over the four tiers, move each twice (across stores and between S3 and
/// Glacier), rewrite a quarter, read all, through `plan`'s faults.
async fn workload(r: &Rig, proxy: &FaultProxy, plan: FaultPlan) -> (BTreeMap<String, Vec<u8>>, usize, u32) {
    proxy.set(plan);
    let blocks: Vec<(String, Vec<u8>, usize)> =
        (0..40).map(|i| (format!("blk-{i}"), bytes(i, 0), i)).collect();
    let mut errors = r.write_all(&blocks).await;
    let mut move_failures = 0;
    // From each tier through two others, across stores and between S3 and Glacier.
    let routes = [["nvme", "s3"], ["s3", "glacier"], ["glacier", "nvme"], ["redis", "s3"]];
    for (i, (id, _, _)) in blocks.iter().enumerate() {
        for to in routes[i % 4] {
            move_failures += r.move_to(id, to).await;
        }
    }
    // A quarter rewritten with new bytes, on whatever tier their new manifest calls for.
    let rewrites: Vec<(String, Vec<u8>, usize)> =
        (0..40).step_by(4).map(|i| (format!("blk-{i}"), bytes(i, 1), i / 4)).collect();
    errors += r.write_all(&rewrites).await;
    let mut expected: BTreeMap<String, Vec<u8>> = blocks.into_iter().map(|(id, b, _)| (id, b)).collect();
    for (id, b, _) in rewrites {
        expected.insert(id, b);
    }
    for (id, want) in &expected {
        assert!(&r.read(id).await == want, "{id} changed under faults");
    }
    proxy.set(FaultPlan::default());
    (expected, errors, move_failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_and_throttling_lose_no_block_and_leave_no_orphan_after_the_sweep() {
    let moto: std::net::SocketAddr = service_env("AWS_ENDPOINT_URL")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("moto on an IP:port");
    let proxy = FaultProxy::start(moto, FaultPlan::default()).await.unwrap();

    // The SDK's own retries (three attempts) absorb 30 % of 500s and 503 SlowDowns.
    let r = rig(Some(&proxy), 3, plain, plain_dir, 3_600).await;
    let (expected, errors, move_failures) =
        workload(&r, &proxy, FaultPlan { share: 0.3, lost_replies: true }).await;
    let injected = proxy.stats.injected();
    let swept = r.settle(&expected).await;
    eprintln!("with SDK retries: {} requests, {injected} faults injected, {errors} record errors, {move_failures} failed moves, {swept} orphans swept, 0 blocks lost", proxy.stats.requests.load(std::sync::atomic::Ordering::Relaxed));
    assert!(injected > 50, "too few faults to mean anything: {injected}");

    // No SDK retries: every fault reaches the router (failed puts, lost replies whose copy landed,
    // failed read-backs, failed deletes), and the producer's redelivery is the retry.
    let r = rig(Some(&proxy), 1, plain, plain_dir, 3_600).await;
    let before = proxy.stats.injected();
    let (expected, errors, move_failures) =
        workload(&r, &proxy, FaultPlan { share: 0.3, lost_replies: true }).await;
    let injected = proxy.stats.injected() - before;
    // Nothing young is swept while writes may be under way.
    let young = r.router.sweep(SWEEP_MIN_AGE_S).await.unwrap();
    assert_eq!(young.deleted, 0, "{young:?}");
    let swept = r.settle(&expected).await;
    eprintln!("without SDK retries: {injected} faults injected, {errors} record errors, {move_failures} failed moves, {swept} orphans swept, 0 blocks lost");
    assert!(
        errors > 0 && move_failures > 0,
        "faults must reach the router: {errors} record errors, {move_failures} failed moves"
    );
    assert!(swept > 0, "lost replies and failed deletes leave orphans for the sweep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_copy_and_delete_leaves_orphans_only_the_sweep_removes() {
    let mut s3f: Option<Arc<Flaky<S3Store>>> = None;
    let mut nvf: Option<Arc<Flaky<DirStore>>> = None;
    let r = rig(
        None,
        3,
        |s| {
            let f = Arc::new(Flaky::new(s, Faults::default()));
            s3f = Some(f.clone());
            f
        },
        |d| {
            let f = Arc::new(Flaky::new(d, Faults::default()));
            nvf = Some(f.clone());
            f
        },
        3_600,
    )
    .await;
    let (s3_faults, nvme_faults) = (s3f.unwrap(), nvf.unwrap());
    let blocks: Vec<(String, Vec<u8>, usize)> =
        (0..12).map(|i| (format!("crash-{i}"), bytes(i, 7), i)).collect();
    assert_eq!(r.write_all(&blocks).await, 0);
    // From here every delete of S3 and NVMe "crashes": the new copy is indexed, the old stays.
    s3_faults.set(Faults { delete: 1.0, ..Faults::default() });
    nvme_faults.set(Faults { delete: 1.0, ..Faults::default() });
    let mut orphans = 0;
    for (i, (id, _, _)) in blocks.iter().enumerate() {
        // Redis -> S3, NVMe -> S3, S3 -> Glacier, Glacier -> S3: all but the first leave an orphan.
        let to = ["s3", "s3", "glacier", "s3"][i % 4];
        r.move_to(id, to).await;
        orphans += usize::from(i % 4 != 0);
    }
    let expected: BTreeMap<String, Vec<u8>> = blocks.into_iter().map(|(id, b, _)| (id, b)).collect();
    for (id, want) in &expected {
        assert!(&r.read(id).await == want, "{id}");
    }
    assert_eq!(r.copies().await.len(), expected.len() + orphans);
    s3_faults.set(Faults::default());
    nvme_faults.set(Faults::default());
    let young = r.router.sweep(SWEEP_MIN_AGE_S).await.unwrap();
    assert_eq!((young.deleted, young.young), (0, orphans), "{young:?}");
    assert_eq!(r.settle(&expected).await, orphans);
    // A rewrite whose delete fails says so.
    s3_faults.set(Faults { delete: 1.0, ..Faults::default() });
    let out = r
        .router
        .handle(Trigger::Direct(json!({"blocks": [manifest("crash-2", b"new bytes", 2)]})))
        .await
        .unwrap()
        .to_json();
    assert_eq!(out["orphans_left"], 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_pointer_reads_its_own_bucket_under_the_shuffle_prefix_only() {
    let r = rig(None, 3, plain, plain_dir, 3_600).await;
    let area = format!("{}/shuffle/incoming/p1", r.settings.key_prefix);
    for (key, body) in [(area.as_str(), &b"pointed bytes"[..]), ("private/secret", b"secret bytes")] {
        r.s3.put_object().bucket(&r.bucket).key(key).body(body.to_vec().into()).send().await.unwrap();
    }
    let pointer =
        |p: String, n: usize| json!({"blocks": [{"block_id": "p", "size_bytes": n, "s3_pointer": p}]});
    let out = r
        .router
        .handle(Trigger::Direct(pointer(format!("s3://{}/{area}", r.bucket), 13)))
        .await
        .unwrap()
        .to_json();
    assert_eq!(out["stored"], 1, "{out}");
    assert_eq!(r.read("p").await, b"pointed bytes");
    for (p, why) in [
        (format!("s3://{}/private/secret", r.bucket), "outside the shuffle prefix"),
        (
            format!("s3://{}/{}/shuffle/../private/secret", r.bucket, r.settings.key_prefix),
            "outside the shuffle prefix",
        ),
        (format!("s3://other-bucket/{area}"), "reads only its own bucket"),
    ] {
        let out = r.router.handle(Trigger::Direct(pointer(p.clone(), 12))).await.unwrap().to_json();
        let e = out["errors"][0]["error"].as_str().unwrap_or_default();
        assert!(e.contains(why), "{p}: {out}");
    }
    // Nothing was stored from outside: "p" still holds the pointed bytes.
    assert_eq!(r.read("p").await, b"pointed bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_blocks_index_entry_expires_with_it_on_redis() {
    let r = rig(None, 3, plain, plain_dir, 1).await;
    let out = r
        .router
        .handle(Trigger::Direct(
            json!({"blocks": [manifest("hot", b"hot bytes", 0), manifest("cold", b"cold bytes", 2)]}),
        ))
        .await
        .unwrap()
        .to_json();
    assert_eq!(out["tiers"], json!({"redis": 1, "s3": 1}), "{out}");
    assert_eq!(r.read("hot").await, b"hot bytes");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(r.router.location("hot").await.unwrap(), None, "the index entry went with the data");
    let e = r.router.read("hot").await.unwrap_err().to_string();
    assert!(e.contains("no block hot"), "{e}");
    // The S3 block is not on a TTL.
    assert_eq!(r.read("cold").await, b"cold bytes");
    let mut left = r.copies().await;
    left.retain(|k| k.contains("hot"));
    assert!(left.is_empty(), "{left:?}");
    let _ = StorageClass::Standard;
}
