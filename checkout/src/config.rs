//! The order path's tunables (a leaf: every service reads them, none is imported here).

use crate::fees::FeePolicy;
use std::time::Duration;

/// Tunables of the order path.
#[derive(Debug, Clone)]
pub struct CheckoutConfig {
    /// How long a reservation waits for its payment before the reaper releases it.
    pub reservation_window: Duration,
    /// How long an order waits for the processor's confirmation before cancelling the payment.
    pub payment_timeout: Duration,
    /// How long the units stay reserved for a payment the processor confirms later (the
    /// buyer's 3-D Secure step, a bank debit): the order waits in `payment_pending` meanwhile,
    /// and its payment is cancelled when this has passed.
    pub payment_pending_window: Duration,
    /// How long idempotency keys are kept.
    pub idempotency_ttl: Duration,
    /// How long delivered webhook messages (and their attempt logs) are kept before pruning.
    pub webhook_retention: Duration,
    /// Oldest exchange-rate table used: past this age since it was loaded (its source stopped
    /// answering), conversions are refused rather than made at rates nobody checked.
    pub rates_max_age: Duration,
    /// The platform's fees on sales and instant payouts.
    pub fees: FeePolicy,
    /// The key file of card fingerprints (see [`crate::card::CardKey`]); the binary's default is
    /// `<data dir>/card-fingerprint.key`. Every node of a deployment needs the same file.
    pub card_key_file: Option<std::path::PathBuf>,
    /// This node's region in a deployment of several: buyers, products and orders made here
    /// carry it in their ids (and buyers' tokens), so other regions route their requests here.
    pub home: Option<vitrine_core::Region>,
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self {
            reservation_window: Duration::from_secs(15 * 60),
            payment_timeout: Duration::from_secs(10),
            payment_pending_window: Duration::from_secs(30 * 60),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            webhook_retention: Duration::from_secs(30 * 86_400),
            rates_max_age: Duration::from_secs(24 * 3600),
            fees: FeePolicy::default(),
            card_key_file: None,
            home: None,
        }
    }
}
