//! The reaper: every pass settles what a dead request or an ended hold left behind (see
//! `payments::expiry`), asks the processor about payments confirmed later (see
//! [`crate::payments::confirmations`]), finishes refunds whose processor call did not complete,
//! and prunes what has served its purpose (see [`crate::jobs`]). A row that fails is logged and
//! counted, and the pass goes on: one bad row never stops the others.

use crate::Checkout;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs the reaper every `every` until `shutdown`.
pub fn spawn_reaper(
    checkout: Checkout,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::jobs::spawn_every(every, shutdown, move || {
        let checkout = checkout.clone();
        async move {
            match checkout.payments().release_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(orders = n, "expired reservations settled"),
                Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
            }
            match checkout.payments().poll_deferred_payments().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(orders = n, "payments confirmed later settled"),
                Err(e) => tracing::warn!(error = %e, "polling deferred payments failed"),
            }
            match checkout.payments().reconcile_refunds().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(refunds = n, "pending refunds finished"),
                Err(e) => tracing::warn!(error = %e, "refund reconciliation failed"),
            }
            if let Err(e) = checkout.orders().prune_at(checkout.orders().now()).await {
                tracing::warn!(error = %e, "pruning failed");
            }
        }
    })
}
