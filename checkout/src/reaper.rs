//! The reservation reaper: settles `pending` orders whose reservation window has passed (their
//! request died, or the processor never answered) from the processor's own record, so that no
//! charge is lost and no reserved unit stays taken; and drops idempotency keys past their time.

use crate::Checkout;
use crate::db::now_ms;
use crate::db::sql;
use crate::error::{CheckoutError, RejectKind, Rejection};
use crate::order_state::{OrderEvent, OrderStatus};
use crate::orders::{ORDER_COLUMNS, order_from_row};
use crate::payment::PaymentStatus;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Orders settled per pass; the next pass takes the rest.
const BATCH: i64 = 100;

impl Checkout {
    /// Settles every expired reservation (up to a batch); returns how many were settled.
    pub async fn release_expired(&self) -> Result<usize, CheckoutError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'pending' AND reserved_until < $1 \
             ORDER BY reserved_until LIMIT $2"
        )))
        .bind(now_ms())
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut settled = 0;
        for row in rows {
            let order = order_from_row(&row)?;
            debug_assert_eq!(order.status, OrderStatus::Pending);
            let payment = self.payments.retrieve(order.id.as_str()).await?;
            let done = match payment {
                None => {
                    let rejection = Rejection::new(
                        RejectKind::PaymentTimeout,
                        "the reservation expired before a payment was made",
                    );
                    self.transition(
                        &order,
                        OrderEvent::Cancel,
                        Some("reservation_expired"),
                        None,
                        Some(&rejection),
                    )
                    .await?
                    .is_some()
                }
                Some(mut payment) => {
                    if payment.status == PaymentStatus::Processing {
                        payment = self.payments.cancel(order.id.as_str()).await?;
                    }
                    self.settle(order, &payment).await?;
                    true
                }
            };
            settled += usize::from(done);
        }
        Ok(settled)
    }
}

/// Runs the reaper every `every` until `shutdown`.
pub fn spawn_reaper(
    checkout: Checkout,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match checkout.release_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(orders = n, "expired reservations settled"),
                Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
            }
            if let Err(e) = checkout.expire_keys().await {
                tracing::warn!(error = %e, "idempotency key expiry failed");
            }
        }
    })
}
