//! The dispatcher's counters for `/metrics`: delivery attempts by outcome. Counts only; never
//! decides anything.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Default, Clone)]
pub struct DispatchMetrics {
    /// Attempts by outcome: `delivered`, `failed`, `gone`.
    pub attempts: Family<OutcomeLabel, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

impl DispatchMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vitrine_webhook_attempts",
            "Webhook delivery attempts by outcome",
            self.attempts.clone(),
        );
    }

    pub(super) fn count(&self, outcome: &'static str) {
        self.attempts.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}
