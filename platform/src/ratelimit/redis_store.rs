//! Limiter state in Redis, so that every node enforces one limit per client. One Lua script
//! does the whole decision atomically on Redis's own clock (so nodes with skewed clocks still
//! agree): the day counter, then GCRA. Keys expire once they carry no information.

use super::gcra::Gcra;
use super::{LimitError, LimitStore, StoreAnswer};
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;

/// KEYS: the TAT key, the day-counter prefix. ARGV: interval, tolerance, day quota (0: none).
/// Returns {allowed, tat, now, day_used, day_exhausted}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local day = math.floor(now / 86400000000)
local day_key = KEYS[2] .. ':' .. day
local used = tonumber(redis.call('GET', day_key) or '0')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if quota > 0 and used >= quota then
  return {0, tat, now, used, 1}
end
if now < tat - tolerance then
  return {0, tat, now, used, 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
if quota > 0 then
  used = redis.call('INCR', day_key)
  if used == 1 then redis.call('EXPIRE', day_key, 90000) end
else
  used = used + 1
end
return {1, new_tat, now, used, 0}
"#;

#[derive(Clone)]
pub struct RedisLimits {
    conn: MultiplexedConnection,
    prefix: String,
}

impl RedisLimits {
    /// Connects; keys are `{prefix}:{client}` (the prefix lets deployments share a Redis).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        let unavailable = |e: redis::RedisError| LimitError::Unavailable(e.to_string());
        let client = redis::Client::open(url).map_err(unavailable)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }
}

#[async_trait]
impl LimitStore for RedisLimits {
    async fn check(
        &self,
        key: &str,
        gcra: &Gcra,
        day_quota: Option<u64>,
    ) -> Result<StoreAnswer, LimitError> {
        let mut conn = self.conn.clone();
        let (allowed, tat, now, used, exhausted): (i64, i64, i64, u64, i64) = redis::cmd("EVAL")
            .arg(SCRIPT)
            .arg(2)
            .arg(format!("{}:tat:{key}", self.prefix))
            .arg(format!("{}:day:{key}", self.prefix))
            .arg(gcra.interval_us)
            .arg(gcra.tolerance_us)
            .arg(day_quota.unwrap_or(0))
            .query_async(&mut conn)
            .await
            .map_err(|e| LimitError::Unavailable(e.to_string()))?;
        let outcome = if allowed == 1 {
            gcra.allowed(tat, now)
        } else {
            gcra.refused(tat, now)
        };
        Ok(StoreAnswer {
            outcome,
            day_used: used,
            day_exhausted: exhausted == 1,
            now_us: now,
        })
    }

    async fn ping(&self) -> Result<(), LimitError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| LimitError::Unavailable(e.to_string()))
    }
}
