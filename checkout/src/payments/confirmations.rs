//! Payments the processor confirms after the order request has ended: the buyer's 3-D Secure
//! step, a bank debit. The order waits for them in `payment_pending`, its units held until its
//! hold ends (`CheckoutConfig::payment_pending_window`). Their answer arrives two ways:
//!
//! - the processor's notification: [`Payments::payment_updated`] (the sandbox's check page
//!   calls it once the buyer has answered), which reads the processor's own record rather than
//!   trusting what the notification says;
//! - the reaper's poll ([`Payments::poll_deferred_payments`]), a page of waiting orders per pass,
//!   for a notification that never came.
//!
//! A hold that ends is the reaper's (`release_expired`): it cancels the payment at the
//! processor, then settles the order from the processor's answer, so a payment that went
//! through at the last moment is paid, not lost. Every move is the order path's conditional
//! transition: a notification, the poll and the reaper racing each other settle an order once.

use super::Payments;
use crate::db::sql;
use crate::error::CheckoutError;
use crate::order_state::OrderStatus;
use crate::orders::{ORDER_COLUMNS, Order, OrderResult, order_from_row};
use sqlx::Row;
use vitrine_core::OrderId;

/// Waiting orders asked about per reaper pass.
const POLL_PAGE: i64 = 100;

impl Payments {
    /// Until when a payment confirmed later holds its order's units, from `now`.
    pub(crate) fn payment_hold_from(&self, now: i64) -> i64 {
        now.saturating_add(self.orders.config.payment_pending_window.as_millis() as i64)
    }

    /// The processor says the payment of order `id` changed: settles the order from the
    /// processor's record when that has its answer. Answers the order as it is then (still
    /// `payment_pending` while the processor has no answer yet).
    #[tracing::instrument(skip_all, fields(order = %id))]
    pub async fn payment_updated(&self, id: &OrderId) -> Result<Order, CheckoutError> {
        let order = self.orders.order_by_id(id).await?;
        match self.confirm(order.clone()).await? {
            None => Ok(order),
            Some(OrderResult::Created(settled)) => Ok(settled),
            // Cancelled: the refusal says why; the order is read as it stands.
            Some(OrderResult::Rejected(_)) => self.orders.order_by_id(id).await,
        }
    }

    /// Settles a waiting order whose payment has its answer: what settling answered, or `None`
    /// when there was nothing to settle yet.
    async fn confirm(&self, order: Order) -> Result<Option<OrderResult>, CheckoutError> {
        if order.status != OrderStatus::PaymentPending {
            return Ok(None);
        }
        let Some(payment) = self.provider.retrieve(order.id.as_str()).await? else {
            return Ok(None);
        };
        if !payment.status.is_final() {
            return Ok(None);
        }
        Ok(Some(self.settle(order, &payment).await?))
    }

    /// Asks the processor about one page of waiting orders, going on from where the last call
    /// stopped (and round again after the last page); returns how many were settled. A row that
    /// fails is counted and the page goes on.
    pub async fn poll_deferred_payments(&self) -> Result<usize, CheckoutError> {
        let after = self
            .deferred_cursor
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let rows = sqlx::query(sql(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'payment_pending' AND id > $1 \
             ORDER BY id LIMIT $2"
        )))
        .bind(&after)
        .bind(POLL_PAGE)
        .fetch_all(&self.orders.pool)
        .await?;
        let next = if (rows.len() as i64) < POLL_PAGE {
            String::new()
        } else {
            rows.last()
                .and_then(|r| r.try_get::<String, _>(0).ok())
                .unwrap_or_default()
        };
        if let Ok(mut cursor) = self.deferred_cursor.lock() {
            *cursor = next;
        }
        let mut settled = 0;
        for row in rows {
            let id: String = row.try_get(0).unwrap_or_default();
            let confirmed = match order_from_row(&row) {
                Ok(order) => self.confirm(order).await,
                Err(e) => Err(e),
            };
            match confirmed {
                Ok(done) => settled += usize::from(done.is_some()),
                Err(e) => self.orders.jobs.row_failed("payments", &id, &e),
            }
        }
        Ok(settled)
    }
}
