//! The reservation reaper: settles `pending` orders whose reservation window has passed (their
//! request died, or the processor never answered) and `payment_pending` ones whose hold has
//! ended, from the processor's own record (cancelling a payment still unanswered first); asks
//! the processor about the other `payment_pending` ones (see [`crate::confirmations`]); so that no
//! charge is lost and no reserved unit stays taken; finishes refunds whose processor call did
//! not complete; and prunes what has served its purpose (see [`crate::jobs`]). A row that fails
//! is logged and counted, and the pass goes on: one bad row never stops the others.

use crate::Checkout;
use crate::db::sql;
use crate::error::{CheckoutError, RejectKind, Rejection};
use crate::order_state::OrderEvent;
use crate::orders::{ORDER_COLUMNS, order_from_row};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Orders settled per pass; the next pass takes the rest.
const BATCH: i64 = 100;

impl Checkout {
    /// Settles every expired reservation (up to a batch); returns how many were settled.
    pub async fn release_expired(&self) -> Result<usize, CheckoutError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE status IN ('pending', 'payment_pending') AND reserved_until < $1 \
             ORDER BY reserved_until LIMIT $2"
        )))
        .bind(self.now())
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut settled = 0;
        for row in rows {
            let id: String = row.try_get(0).unwrap_or_default();
            match self.release_one(&row).await {
                Ok(done) => settled += usize::from(done),
                Err(e) => self.jobs.row_failed("reaper", &id, &e),
            }
        }
        Ok(settled)
    }

    /// Settles one expired order from the processor's record; true when this call settled it.
    async fn release_one(&self, row: &AnyRow) -> Result<bool, CheckoutError> {
        let order = order_from_row(row)?;
        if order.status.is_final() {
            return Ok(false);
        }
        match self.payments.retrieve(order.id.as_str()).await? {
            None => {
                let rejection = Rejection::new(
                    RejectKind::PaymentTimeout,
                    "the reservation expired before a payment was made",
                );
                Ok(self
                    .transition(
                        &order,
                        OrderEvent::Cancel,
                        Some("reservation_expired"),
                        None,
                        Some(&rejection),
                    )
                    .await?
                    .is_some())
            }
            Some(mut payment) => {
                if !payment.status.is_final() {
                    payment = self.payments.cancel(order.id.as_str()).await?;
                }
                self.settle(order, &payment).await?;
                Ok(true)
            }
        }
    }
}

/// Runs the reaper every `every` until `shutdown`.
pub fn spawn_reaper(
    checkout: Checkout,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::jobs::spawn_every(every, shutdown, move || {
        let checkout = checkout.clone();
        async move {
            match checkout.release_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(orders = n, "expired reservations settled"),
                Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
            }
            match checkout.poll_deferred_payments().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(orders = n, "payments confirmed later settled"),
                Err(e) => tracing::warn!(error = %e, "polling deferred payments failed"),
            }
            match checkout.reconcile_refunds().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(refunds = n, "pending refunds finished"),
                Err(e) => tracing::warn!(error = %e, "refund reconciliation failed"),
            }
            if let Err(e) = checkout.prune_at(checkout.now()).await {
                tracing::warn!(error = %e, "pruning failed");
            }
        }
    })
}
