//! The state store on Redis. Every trait method is one round trip: multi-key writes are pipelined.

use crate::AdapterError;
use async_trait::async_trait;
use handlers::ports::{PortError, PortResult, StateStore};
use redis::aio::ConnectionManager;
use std::time::Duration;

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
            Some(ttl) => {
                let ms = ttl.as_millis().max(1) as u64;
                for (k, v) in entries {
                    pipe.cmd("SET").arg(k).arg(v).arg("PX").arg(ms).ignore();
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

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> PortResult<bool> {
        let mut con = self.con.clone();
        let set: Option<String> = redis::cmd("SET").arg(key).arg(value).arg("NX").arg("PX").arg(ttl.as_millis().max(1) as u64).query_async(&mut con).await.map_err(err("SET NX"))?;
        Ok(set.is_some())
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
        pipe.cmd("LPUSH").arg(key).arg(values).ignore();
        pipe.cmd("LTRIM").arg(key).arg(0).arg(cap.max(1) as i64 - 1).ignore();
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
}
