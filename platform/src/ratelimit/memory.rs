//! Limiter state in this process: one TAT and one day counter per client behind a mutex. The
//! map is bounded: when full, clients whose buckets are full again (TAT in the past, so their
//! entry says nothing) are dropped first, then the oldest.

use super::gcra::Gcra;
use super::{LimitError, LimitStore, StoreAnswer};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most clients tracked at once.
pub const MAX_CLIENTS: usize = 100_000;
const DAY_US: i64 = 86_400_000_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    tat_us: i64,
    day: i64,
    day_used: u64,
}

#[derive(Default)]
pub struct MemoryLimits {
    entries: Mutex<HashMap<String, Entry>>,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl MemoryLimits {
    /// The decision at an explicit instant (the trait uses the clock).
    pub fn check_at(
        &self,
        key: &str,
        gcra: &Gcra,
        day_quota: Option<u64>,
        now: i64,
    ) -> StoreAnswer {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CLIENTS && !entries.contains_key(key) {
            entries.retain(|_, e| e.tat_us > now);
            if entries.len() >= MAX_CLIENTS
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.tat_us)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let day = now.div_euclid(DAY_US);
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            tat_us: now,
            day,
            day_used: 0,
        });
        if entry.day != day {
            entry.day = day;
            entry.day_used = 0;
        }
        if day_quota.is_some_and(|q| entry.day_used >= q) {
            return StoreAnswer {
                outcome: gcra.refused(entry.tat_us.max(now), now),
                day_used: entry.day_used,
                day_exhausted: true,
                now_us: now,
            };
        }
        let outcome = gcra.check(Some(entry.tat_us), now);
        if outcome.allowed {
            entry.tat_us = outcome.tat_us;
            entry.day_used += 1;
        }
        StoreAnswer {
            outcome,
            day_used: entry.day_used,
            day_exhausted: false,
            now_us: now,
        }
    }
}

#[async_trait]
impl LimitStore for MemoryLimits {
    async fn check(
        &self,
        key: &str,
        gcra: &Gcra,
        day_quota: Option<u64>,
    ) -> Result<StoreAnswer, LimitError> {
        Ok(self.check_at(key, gcra, day_quota, now_us()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_apart_and_the_day_quota_binds() {
        let m = MemoryLimits::default();
        let g = Gcra::new(1000.0, 100);
        let t0 = DAY_US * 20_000;
        let allowed = |key: &str, n: usize, at: i64| {
            (0..n)
                .filter(|_| m.check_at(key, &g, Some(3), at).outcome.allowed)
                .count()
        };
        assert_eq!(allowed("a", 5, t0), 3);
        let refused = m.check_at("a", &g, Some(3), t0);
        assert!(refused.day_exhausted && !refused.outcome.allowed);
        assert_eq!(allowed("b", 5, t0), 3, "another client has its own quota");
        assert_eq!(allowed("a", 5, t0 + DAY_US), 3, "a new day, a new quota");
    }
}
