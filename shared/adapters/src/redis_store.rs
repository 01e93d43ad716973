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
static DELETE_IF_EQUALS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| redis::Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"));

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

impl RedisStore {
    /// Connect to `url` (`redis://host:port/db`, `rediss://` for TLS).
    pub async fn connect(url: &str) -> Result<Self, AdapterError> {
        let fail = |e: redis::RedisError| AdapterError::Redis { url: url.to_string(), message: e.to_string() };
        let client = redis::Client::open(url).map_err(fail)?;
        let con = ConnectionManager::new(client).await.map_err(fail)?;
        Ok(Self { con })
    }

    /// The connection, for benchmarks that compare access patterns.
    pub fn connection(&self) -> ConnectionManager {
        self.con.clone()
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn get_many(&self, keys: &[String]) -> PortResult<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.con.clone();
        redis::cmd("MGET").arg(keys).query_async(&mut con).await.map_err(err("MGET"))
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

    async fn set_many_if_version(&self, version_key: &str, expected: u64, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> PortResult<bool> {
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
        let set: Option<String> = redis::cmd("SET").arg(key).arg(value).arg("NX").arg("PX").arg(ttl.as_millis().max(1) as u64).query_async(&mut con).await.map_err(err("SET NX"))?;
        Ok(set.is_some())
    }

    async fn delete_if_equals(&self, key: &str, value: &[u8]) -> PortResult<bool> {
        let mut con = self.con.clone();
        let deleted: i64 = DELETE_IF_EQUALS.key(key).arg(value).invoke_async(&mut con).await.map_err(err("delete-if-equals script"))?;
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
        redis::cmd("LRANGE").arg(key).arg(0).arg(n as i64 - 1).query_async(&mut con).await.map_err(err("LRANGE"))
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
                StoreWrite::PushCapped { key, values, cap } if !values.is_empty() => add_push_capped(&mut pipe, key, values, *cap),
                StoreWrite::PushCapped { .. } => {}
            }
        }
        pipe.query_async::<()>(&mut con).await.map_err(err("MULTI/EXEC"))
    }
}
