//! The state store on Redis. Every trait method is one round trip: multi-key writes are pipelined.

use crate::AdapterError;
use async_trait::async_trait;
use handlers::ports::{PortError, PortResult, StateStore, StoreWrite};
use redis::aio::ConnectionManager;
use std::time::Duration;

/// Compare the version counter (KEYS[1]) with ARGV[1]; if equal, SET every KEYS[i>1] to ARGV[i+1]
/// (with PX ARGV[2] when it is not 0) and advance the counter. Atomic: Redis runs a script alone.
/// Compare-and-delete: a lease is released only by its holder, never after it expired and another
/// caller took it.
static DELETE_IF_EQUALS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

static VERSIONED_SET: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then return 0 end
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  if ttl > 0 then redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ttl) else redis.call('SET', KEYS[i], ARGV[i + 1]) end
end
redis.call('SET', KEYS[1], current + 1)
return 1
",
    )
});

/// SET, with PX when there is a TTL.
fn add_set(pipe: &mut redis::Pipeline, key: &str, value: &[u8], ttl: Option<Duration>) {
    let cmd = pipe.cmd("SET").arg(key).arg(value);
    if let Some(ttl) = ttl {
        cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
    }
    cmd.ignore();
}

/// LPUSH then LTRIM to the newest `cap`.
fn add_push_capped(pipe: &mut redis::Pipeline, key: &str, values: &[Vec<u8>], cap: usize) {
    pipe.cmd("LPUSH").arg(key).arg(values).ignore();
    pipe.cmd("LTRIM").arg(key).arg(0).arg(cap.max(1) as i64 - 1).ignore();
}

/// Redis through a multiplexed, self-reconnecting connection (built once, cloned per call).
#[derive(Clone)]
pub struct RedisStore {
    con: ConnectionManager,
}

fn err(op: &'static str) -> impl Fn(redis::RedisError) -> PortError {
    move |e| PortError::new("redis", op, e)
}

/// Longest a command may wait for its reply, and a connection for its handshake. A decision makes a
/// handful of round trips and the function's timeout is 60 s: a Redis that stopped answering must
/// fail the invocation (the event source delivers the batch again) long before that.
pub const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
pub const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Reconnection attempts after the connection drops (exponential back-off, at most a second apart).
const RECONNECT_ATTEMPTS: usize = 4;
/// Attempts at a read. Reads are retried; writes are not, since a write whose reply was lost may
/// have been applied: the handler fails and the event source redelivers its batch, which the
/// functions recognise (scaling-decision's decided offsets, burst-signal's per-edge timestamps).
const READ_ATTEMPTS: u32 = 3;

/// `url` with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let rest = &url[scheme_end..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_string(),
    }
}

impl RedisStore {
    /// Connect to `url` (`redis://[user:password@]host:port/db`, `rediss://` for TLS, checked against
    /// the system's roots, or against the PEM file `ca_file` when given: a private CA, or a test's).
    pub async fn connect(url: &str) -> Result<Self, AdapterError> {
        Self::connect_with_ca(url, None).await
    }

    pub async fn connect_with_ca(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, AdapterError> {
        let fail =
            |e: redis::RedisError| AdapterError::Redis { url: redact_url(url), message: e.to_string() };
        crate::install_tls_provider();
        let client = match ca_file {
            None => redis::Client::open(url).map_err(fail)?,
            Some(path) => {
                let root_cert = std::fs::read(path)
                    .map_err(|e| AdapterError::Config(format!("Redis CA file {}: {e}", path.display())))?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) },
                )
                .map_err(fail)?
            }
        };
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(RECONNECT_ATTEMPTS)
            .set_max_delay(std::time::Duration::from_secs(1));
        let con = ConnectionManager::new_with_config(client, config).await.map_err(fail)?;
        Ok(Self { con })
    }

    /// The connection, for benchmarks that compare access patterns.
    pub fn connection(&self) -> ConnectionManager {
        self.con.clone()
    }
}

impl RedisStore {
    async fn mget(&self, keys: &[String]) -> PortResult<Vec<Option<Vec<u8>>>> {
        let mut con = self.con.clone();
        redis::cmd("MGET").arg(keys).query_async(&mut con).await.map_err(err("MGET"))
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn get_many(&self, keys: &[String]) -> PortResult<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempt = 1;
        loop {
            match self.mget(keys).await {
                Err(e) if attempt < READ_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "redis read failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> PortResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        match ttl {
            Some(_) => {
                for (k, v) in entries {
                    add_set(&mut pipe, k, v, ttl);
                }
            }
            None => {
                let mut mset = redis::cmd("MSET");
                for (k, v) in entries {
                    mset.arg(k).arg(v);
                }
                pipe.add_command(mset).ignore();
            }
        }
        pipe.query_async::<()>(&mut con).await.map_err(err("SET pipeline"))
    }

    async fn set_many_if_version(
        &self,
        version_key: &str,
        expected: u64,
        entries: &[(String, Vec<u8>)],
        ttl: Option<Duration>,
    ) -> PortResult<bool> {
        let mut con = self.con.clone();
        let mut invocation = VERSIONED_SET.key(version_key);
        invocation.arg(expected).arg(ttl.map_or(0, |t| t.as_millis().max(1) as u64));
        for (k, v) in entries {
            invocation.key(k).arg(v);
        }
        // EVALSHA, loading the script on the first NOSCRIPT: one round trip once it is cached.
        let written: i64 = invocation.invoke_async(&mut con).await.map_err(err("versioned set"))?;
        Ok(written == 1)
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> PortResult<bool> {
        let mut con = self.con.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut con)
            .await
            .map_err(err("SET NX"))?;
        Ok(set.is_some())
    }

    async fn delete_if_equals(&self, key: &str, value: &[u8]) -> PortResult<bool> {
        let mut con = self.con.clone();
        let deleted: i64 = DELETE_IF_EQUALS
            .key(key)
            .arg(value)
            .invoke_async(&mut con)
            .await
            .map_err(err("delete-if-equals script"))?;
        Ok(deleted == 1)
    }

    async fn delete(&self, keys: &[String]) -> PortResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut con = self.con.clone();
        redis::cmd("DEL").arg(keys).query_async::<()>(&mut con).await.map_err(err("DEL"))
    }

    async fn push_capped(&self, key: &str, values: &[Vec<u8>], cap: usize) -> PortResult<()> {
        if values.is_empty() {
            return Ok(());
        }
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        add_push_capped(&mut pipe, key, values, cap);
        pipe.query_async::<()>(&mut con).await.map_err(err("LPUSH/LTRIM"))
    }

    async fn recent(&self, key: &str, n: usize) -> PortResult<Vec<Vec<u8>>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut con = self.con.clone();
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(n as i64 - 1)
            .query_async(&mut con)
            .await
            .map_err(err("LRANGE"))
    }

    async fn incr(&self, key: &str) -> PortResult<u64> {
        let mut con = self.con.clone();
        redis::cmd("INCR").arg(key).query_async(&mut con).await.map_err(err("INCR"))
    }

    async fn write(&self, writes: &[StoreWrite]) -> PortResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut con = self.con.clone();
        // MULTI ... EXEC, sent as one pipeline: one round trip, applied all together.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for w in writes {
            match w {
                StoreWrite::Set { key, value, ttl } => add_set(&mut pipe, key, value, *ttl),
                StoreWrite::Delete { key } => {
                    pipe.cmd("DEL").arg(key).ignore();
                }
                StoreWrite::PushCapped { key, values, cap } if !values.is_empty() => {
                    add_push_capped(&mut pipe, key, values, *cap)
                }
                StoreWrite::PushCapped { .. } => {}
            }
        }
        pipe.query_async::<()>(&mut con).await.map_err(err("MULTI/EXEC"))
    }
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            super::redact_url("rediss://default:s3cret@cache.example:6379/0"),
            "rediss://default:***@cache.example:6379/0"
        );
        assert_eq!(super::redact_url("redis://:s3cret@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(super::redact_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
    }
}
