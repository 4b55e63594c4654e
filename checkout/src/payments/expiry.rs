//! Settles `pending` orders whose reservation window has passed (their request died, or the
//! processor never answered) and `payment_pending` ones whose hold has ended, from the
//! processor's own record (cancelling a payment still unanswered first), so that no charge is
//! lost and no reserved unit stays taken.

use super::Payments;
use crate::db::sql;
use crate::error::{CheckoutError, RejectKind, Rejection};
use crate::order_state::{OrderEvent, OrderStatus};
use crate::orders::{ORDER_COLUMNS, order_from_row};
use sqlx::Row;
use sqlx::any::AnyRow;

/// How long an order whose payment the processor could not cancel waits before the reaper asks
/// again.
const CANCEL_RETRY_MS: i64 = 60_000;

/// Orders settled per pass; the next pass takes the rest.
const BATCH: i64 = 100;

impl Payments {
    /// Settles every expired reservation (up to a batch); returns how many were settled.
    pub async fn release_expired(&self) -> Result<usize, CheckoutError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE status IN ('pending', 'payment_pending') AND reserved_until < $1 \
             ORDER BY reserved_until LIMIT $2"
        )))
        .bind(self.orders.now())
        .bind(BATCH)
        .fetch_all(&self.orders.pool)
        .await?;
        let mut settled = 0;
        for row in rows {
            let id: String = row.try_get(0).unwrap_or_default();
            match self.release_one(&row).await {
                Ok(done) => settled += usize::from(done),
                Err(e) => self.orders.jobs.row_failed("reaper", &id, &e),
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
        match self.provider.retrieve(order.id.as_str()).await? {
            None => {
                let rejection = Rejection::new(
                    RejectKind::PaymentTimeout,
                    "the reservation expired before a payment was made",
                );
                Ok(self
                    .orders
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
                    payment = self.provider.cancel(order.id.as_str()).await?;
                }
                if order.status == OrderStatus::PaymentPending && !payment.status.is_final() {
                    // The processor could not cancel it (a debit already under way): the order
                    // waits for its answer, and the reaper asks again later, behind the others.
                    let later = self.orders.now().saturating_add(CANCEL_RETRY_MS);
                    self.orders.hold_until(&order, later).await?;
                    return Ok(false);
                }
                self.settle(order, &payment).await?;
                Ok(true)
            }
        }
    }
}
