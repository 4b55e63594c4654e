//! Prometheus metrics of the translator: how many translations, how long they waited and
//! ran, how much of each prompt the prefix reuse saved, and refusals under load.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct TranslatorMetrics {
    pub translations: Counter,
    pub failures: Counter,
    /// Requests refused because the queue was full.
    pub refused: Counter,
    /// Seconds a translation waited for a worker.
    pub queue_wait: Histogram,
    /// Seconds a worker spent on one translation.
    pub translate_seconds: Histogram,
    /// Prompt tokens evaluated, and those taken from the context as they were.
    pub evaluated_tokens: Counter,
    pub reused_tokens: Counter,
    pub generated_tokens: Counter,
}

impl Default for TranslatorMetrics {
    fn default() -> Self {
        let seconds = || Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]);
        Self {
            translations: Counter::default(),
            failures: Counter::default(),
            refused: Counter::default(),
            queue_wait: seconds(),
            translate_seconds: seconds(),
            evaluated_tokens: Counter::default(),
            reused_tokens: Counter::default(),
            generated_tokens: Counter::default(),
        }
    }
}

impl TranslatorMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("vitrine_translator");
        r.register(
            "translations",
            "Texts translated",
            self.translations.clone(),
        );
        r.register(
            "failures",
            "Translations that failed",
            self.failures.clone(),
        );
        r.register(
            "refused",
            "Requests refused with a full queue",
            self.refused.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "Seconds a translation waited for a worker",
            self.queue_wait.clone(),
        );
        r.register(
            "translate_seconds",
            "Seconds a worker spent on one translation",
            self.translate_seconds.clone(),
        );
        r.register(
            "evaluated_tokens",
            "Prompt tokens evaluated",
            self.evaluated_tokens.clone(),
        );
        r.register(
            "reused_tokens",
            "Prompt tokens reused from the context",
            self.reused_tokens.clone(),
        );
        r.register(
            "generated_tokens",
            "Tokens generated",
            self.generated_tokens.clone(),
        );
    }
}
