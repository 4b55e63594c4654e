//! Prometheus metrics of the seller API: requests refused by rate limits (by tier) and failures
//! of the limiter's store.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: String,
}

#[derive(Debug, Default)]
pub struct ApiMetrics {
    pub rate_limited: Family<TierLabel, Counter>,
    pub limiter_errors: Counter,
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vitrine_api_rate_limited",
            "Requests refused with 429, by rate-limit tier or per-address limit",
            self.rate_limited.clone(),
        );
        registry.register(
            "vitrine_api_limiter_errors",
            "Requests the rate limiter could not decide because its store failed (reads let through, writes refused)",
            self.limiter_errors.clone(),
        );
    }

    pub fn limited(&self, tier: &str) {
        self.rate_limited
            .get_or_create(&TierLabel {
                tier: tier.to_owned(),
            })
            .inc();
    }
}
