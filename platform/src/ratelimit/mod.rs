//! Per-app rate limits: each app's tier (requests per second, burst, requests per day) decided
//! by GCRA, with state either in this process or in Redis so that the limit holds across
//! nodes; the same machinery counts anonymous traffic per client address ([`Limit`]). [`RateLimiter::check`] answers with what the response needs: allowed or not,
//! `Retry-After`, and the IETF `RateLimit-Policy` / `RateLimit` header values.

pub mod gcra;
pub mod memory;
pub mod redis_store;
pub mod spec;
pub mod tiers;

pub use gcra::{Gcra, Outcome};
pub use memory::MemoryLimits;
pub use redis_store::RedisLimits;
pub use spec::{Limit, LimitSpecError};
pub use tiers::{Tier, Tiers, TiersError, TiersFile};

use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate-limit store unavailable: {0}")]
    Unavailable(String),
}

/// What a store answers for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreAnswer {
    pub outcome: Outcome,
    /// Requests counted today (UTC), this one included when allowed.
    pub day_used: u64,
    /// Refused because the day's quota is spent (not the rate).
    pub day_exhausted: bool,
    /// The store's clock, microseconds: the instant the decision was made at.
    pub now_us: i64,
}

/// Where limiter state lives.
#[async_trait]
pub trait LimitStore: Send + Sync {
    async fn check(
        &self,
        key: &str,
        gcra: &Gcra,
        day_quota: Option<u64>,
    ) -> Result<StoreAnswer, LimitError>;

    /// Whether the store answers (for `/healthz`).
    async fn ping(&self) -> Result<(), LimitError> {
        Ok(())
    }
}

/// Whom a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A third-party app, across every seller it acts for.
    App { id: String, tier: String },
    /// A seller's own systems (account token, API keys).
    Account { seller: String },
}

/// A decision and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub tier: String,
    pub answer: StoreAnswer,
    pub burst: u32,
    pub window_s: i64,
    pub day_quota: Option<u64>,
}

const DAY_US: i64 = 86_400_000_000;

impl Decision {
    /// Whole seconds to wait before retrying (at least 1 when refused).
    pub fn retry_after_s(&self) -> u64 {
        let us = if self.answer.day_exhausted {
            DAY_US - self.answer.now_us.rem_euclid(DAY_US)
        } else {
            self.answer.outcome.retry_after_us
        };
        (us.max(1) as u64).div_ceil(1_000_000)
    }

    /// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the tier's policies.
    pub fn policy_header(&self) -> String {
        let mut h = format!("\"burst\";q={};w={}", self.burst, self.window_s);
        if let Some(q) = self.day_quota {
            h.push_str(&format!(", \"daily\";q={q};w=86400"));
        }
        h
    }

    /// `RateLimit`: what is left of the policy that binds now, and when it resets.
    pub fn limit_header(&self) -> String {
        let reset_day = (DAY_US - self.answer.now_us.rem_euclid(DAY_US)).div_euclid(1_000_000);
        if let Some(q) = self.day_quota {
            let day_left = q.saturating_sub(self.answer.day_used);
            if self.answer.day_exhausted || day_left < u64::from(self.answer.outcome.remaining) {
                return format!("\"daily\";r={day_left};t={reset_day}");
            }
        }
        let reset = (self.answer.outcome.reset_us + 999_999) / 1_000_000;
        format!("\"burst\";r={};t={reset}", self.answer.outcome.remaining)
    }
}

/// The limiter: tiers plus a store.
#[derive(Clone)]
pub struct RateLimiter {
    tiers: Arc<Tiers>,
    store: Arc<dyn LimitStore>,
}

impl RateLimiter {
    pub fn new(tiers: Tiers, store: Arc<dyn LimitStore>) -> Self {
        Self {
            tiers: Arc::new(tiers),
            store,
        }
    }

    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    pub async fn check(&self, subject: &Subject) -> Result<Decision, LimitError> {
        let (key, tier_name) = match subject {
            Subject::App { id, tier } => (format!("app:{id}"), tier.as_str()),
            Subject::Account { seller } => (format!("acct:{seller}"), self.tiers.account_tier()),
        };
        let (tier_name, tier) = self.tiers.get(tier_name);
        let gcra = tier.gcra();
        let answer = self.store.check(&key, &gcra, tier.requests_per_day).await?;
        Ok(Decision {
            allowed: answer.outcome.allowed,
            tier: tier_name.to_owned(),
            answer,
            burst: gcra.burst,
            window_s: gcra.window_s(),
            day_quota: tier.requests_per_day,
        })
    }
}

impl RateLimiter {
    /// Counts a request against `key` under `limit`, a limit outside the tiers (the
    /// per-address limits of anonymous traffic); `name` labels the decision as a tier would.
    pub async fn check_limit(
        &self,
        key: &str,
        name: &str,
        limit: &Limit,
    ) -> Result<Decision, LimitError> {
        self.decide(key, name, &limit.gcra(), limit.gcra()).await
    }

    /// Whether one more request against `key` would pass `limit` now, without counting it.
    pub async fn probe_limit(
        &self,
        key: &str,
        name: &str,
        limit: &Limit,
    ) -> Result<Decision, LimitError> {
        self.decide(key, name, &limit.gcra().probe(), limit.gcra())
            .await
    }

    async fn decide(
        &self,
        key: &str,
        name: &str,
        gcra: &Gcra,
        shown: Gcra,
    ) -> Result<Decision, LimitError> {
        let answer = self.store.check(key, gcra, None).await?;
        Ok(Decision {
            allowed: answer.outcome.allowed,
            tier: name.to_owned(),
            answer,
            burst: shown.burst,
            window_s: shown.window_s(),
            day_quota: None,
        })
    }

    /// Whether the limiter's store answers.
    pub async fn ping(&self) -> Result<(), LimitError> {
        self.store.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(remaining: u32, reset_us: i64, day_used: u64, exhausted: bool) -> Decision {
        Decision {
            allowed: !exhausted && remaining > 0,
            tier: "free".into(),
            answer: StoreAnswer {
                outcome: Outcome {
                    allowed: true,
                    tat_us: 0,
                    remaining,
                    reset_us,
                    retry_after_us: 0,
                },
                day_used,
                day_exhausted: exhausted,
                now_us: DAY_US * 20_000 + 3_600_000_000,
            },
            burst: 10,
            window_s: 2,
            day_quota: Some(1000),
        }
    }

    #[test]
    fn headers_describe_the_binding_policy() {
        let d = decision(7, 600_000, 3, false);
        assert_eq!(
            d.policy_header(),
            "\"burst\";q=10;w=2, \"daily\";q=1000;w=86400"
        );
        assert_eq!(d.limit_header(), "\"burst\";r=7;t=1");
        let near_quota = decision(7, 600_000, 996, false);
        assert_eq!(near_quota.limit_header(), "\"daily\";r=4;t=82800");
        let spent = decision(7, 0, 1000, true);
        assert_eq!(spent.limit_header(), "\"daily\";r=0;t=82800");
        assert_eq!(spent.retry_after_s(), 82_800);
    }
}
