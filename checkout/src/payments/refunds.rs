//! Refunds, in three steps so that the books never disagree with the processor for good:
//!
//! 1. **Intent**: a `refunds` row (one per order, `pending`) is written before the processor is
//!    asked. Its id is the processor's idempotency key.
//! 2. **Provider**: the processor refunds, keyed by the refund id, so asking again after a lost
//!    answer (a timeout, a crash) never refunds twice.
//! 3. **Settle** (one transaction): the refund row becomes `succeeded`, the order `refunded`
//!    (its units back in stock), the ledger gets its refund entry (debt where the balance does
//!    not cover it) and the outbox its `order.refunded`.
//!
//! A refund stuck between 1 and 3 (the process died, the processor did not answer) stays
//! `pending`; the seller's retry or the reconciler's pass finishes it. This module never moves
//! money itself and never settles without the processor's word.

use super::Payments;
use crate::error::{CheckoutError, RejectKind, Rejection, corrupt};
use crate::order_state::{OrderEvent, OrderStatus};
use crate::orders::Order;
use crate::payment::{PaymentError, PaymentStatus};
use sqlx::Row;
use vitrine_core::ids::random_id;
use vitrine_core::{OrderId, SellerId};

/// Pending refunds taken per reconciler pass; the next pass takes the rest.
const BATCH: i64 = 100;

/// A refund as recorded.
#[derive(Debug, Clone)]
struct RefundRow {
    id: String,
    order_id: OrderId,
}

impl Payments {
    /// The seller cancels an order. A pending one (its payment not confirmed, now or later) has
    /// the payment cancelled at the processor and its units released; a paid one, not yet shipped, is
    /// refunded in full (and so ends `refunded`); a shipped one must be refunded explicitly.
    pub async fn cancel(&self, seller: &SellerId, id: &OrderId) -> Result<Order, CheckoutError> {
        let order = self.orders.order_for_seller(seller, id).await?;
        match order.status {
            OrderStatus::Paid => self.refund(seller, id).await,
            OrderStatus::Pending | OrderStatus::PaymentPending => {
                let payment = match self.provider.retrieve(order.id.as_str()).await? {
                    Some(p) if !p.status.is_final() => {
                        Some(self.provider.cancel(order.id.as_str()).await?)
                    }
                    other => other,
                };
                match payment {
                    Some(p) => {
                        self.settle(order, &p).await?;
                    }
                    None => {
                        let rejection = Rejection::new(
                            RejectKind::PaymentTimeout,
                            "the seller cancelled the order before it was paid",
                        );
                        self.orders
                            .transition(
                                &order,
                                OrderEvent::Cancel,
                                Some("cancelled_by_seller"),
                                None,
                                Some(&rejection),
                            )
                            .await?;
                    }
                }
                let after = self.orders.order_for_seller(seller, id).await?;
                if after.status == OrderStatus::Paid {
                    return Err(CheckoutError::Conflict(
                        "the payment went through first; refund the order instead".into(),
                    ));
                }
                Ok(after)
            }
            other => Err(CheckoutError::Conflict(format!(
                "a {} order cannot be cancelled",
                other.as_str()
            ))),
        }
    }

    /// The seller refunds a paid, fulfilled or delivered order in full; the units go back to stock. If the
    /// processor cannot be reached, the refund stays recorded and a retry (or the reconciler)
    /// finishes it with the same idempotency key.
    pub async fn refund(&self, seller: &SellerId, id: &OrderId) -> Result<Order, CheckoutError> {
        let order = self.orders.order_for_seller(seller, id).await?;
        order
            .status
            .apply(OrderEvent::Refund)
            .map_err(|e| CheckoutError::Conflict(e.to_string()))?;
        let refund = self.refund_intent(&order).await?;
        self.push_refund(&refund).await?;
        let after = self.orders.order_for_seller(seller, id).await?;
        if after.status != OrderStatus::Refunded {
            return Err(CheckoutError::Conflict(
                "the order changed meanwhile; retry".into(),
            ));
        }
        Ok(after)
    }

    /// Step 1: the order's refund row, made now or found from an earlier try. A refund the
    /// processor refused before is tried again.
    async fn refund_intent(&self, order: &Order) -> Result<RefundRow, CheckoutError> {
        let now = self.orders.now();
        sqlx::query(
            "INSERT INTO refunds (id, order_id, seller_id, status, attempts, created_at, \
             updated_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4) \
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(random_id("rf"))
        .bind(order.id.as_str())
        .bind(order.seller_id.as_str())
        .bind(now)
        .execute(&self.orders.pool)
        .await?;
        sqlx::query(
            "UPDATE refunds SET status = 'pending', updated_at = $1 \
             WHERE order_id = $2 AND status = 'failed'",
        )
        .bind(now)
        .bind(order.id.as_str())
        .execute(&self.orders.pool)
        .await?;
        let id: String = sqlx::query_scalar("SELECT id FROM refunds WHERE order_id = $1")
            .bind(order.id.as_str())
            .fetch_one(&self.orders.pool)
            .await?;
        tracing::info!(order = %order.id, refund = %id, "refund recorded");
        Ok(RefundRow {
            id,
            order_id: order.id.clone(),
        })
    }

    /// Step 2 and 3: asks the processor (keyed by the refund id), then settles.
    async fn push_refund(&self, refund: &RefundRow) -> Result<(), CheckoutError> {
        sqlx::query("UPDATE refunds SET attempts = attempts + 1, updated_at = $1 WHERE id = $2")
            .bind(self.orders.now())
            .bind(&refund.id)
            .execute(&self.orders.pool)
            .await?;
        match self
            .provider
            .refund(refund.order_id.as_str(), &refund.id)
            .await
        {
            Ok(p) if p.status == PaymentStatus::Refunded => self.settle_refund(refund).await,
            Ok(p) => Err(corrupt(format!(
                "the processor answered a refund with {:?}",
                p.status
            ))),
            Err(e) => {
                let failed = matches!(e, PaymentError::NotRefundable);
                self.refund_error(refund, failed, &e.to_string()).await?;
                Err(e.into())
            }
        }
    }

    /// Writes down why a refund did not go through; `failed` ends it (the processor refused).
    async fn refund_error(
        &self,
        refund: &RefundRow,
        failed: bool,
        error: &str,
    ) -> Result<(), CheckoutError> {
        tracing::warn!(refund = %refund.id, error, failed, "refund not completed");
        sqlx::query(
            "UPDATE refunds SET last_error = $1, updated_at = $2, \
             status = CASE WHEN $3 = 1 THEN 'failed' ELSE status END \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(error)
        .bind(self.orders.now())
        .bind(i64::from(failed))
        .bind(&refund.id)
        .execute(&self.orders.pool)
        .await?;
        Ok(())
    }

    /// Step 3, once the processor refunded: one transaction for the refund row, the order, the
    /// ledger and the outbox. Settling twice is harmless: the second finds nothing pending.
    async fn settle_refund(&self, refund: &RefundRow) -> Result<(), CheckoutError> {
        let order = self.orders.order_by_id(&refund.order_id).await?;
        let mut tx = self.orders.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE refunds SET status = 'succeeded', last_error = NULL, updated_at = $1 \
             WHERE id = $2 AND status = 'pending'",
        )
        .bind(self.orders.now())
        .bind(&refund.id)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        let change = crate::orders::Change {
            event: OrderEvent::Refund,
            failure: None,
            payment_id: None,
            rejection: None,
            shipment: None,
            deferral: None,
        };
        let Some(moved) = self.orders.transition_in(&mut tx, &order, &change).await? else {
            // The order moved under us (fulfilled meanwhile): the next try reads it again.
            tx.rollback().await?;
            return Err(CheckoutError::Conflict(
                "the order changed meanwhile; retry".into(),
            ));
        };
        self.orders.commit_move(tx, &order, &moved).await?;
        tracing::info!(refund = %refund.id, order = %order.id, "refund settled");
        Ok(())
    }

    /// The reconciler's pass: finishes every pending refund (up to a batch) with the
    /// processor, under the same idempotency keys. Returns how many settled; a refund that
    /// fails is logged and counted, and the pass goes on.
    pub async fn reconcile_refunds(&self) -> Result<usize, CheckoutError> {
        let rows = sqlx::query(
            "SELECT id, order_id FROM refunds WHERE status = 'pending' \
             ORDER BY updated_at LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.orders.pool)
        .await?;
        let mut settled = 0;
        for r in &rows {
            let id: String = r.try_get(0).unwrap_or_default();
            let done = async {
                let order_id = OrderId::parse(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
                self.push_refund(&RefundRow {
                    id: id.clone(),
                    order_id,
                })
                .await
            };
            match done.await {
                Ok(()) => settled += 1,
                Err(e) => self.orders.jobs.row_failed("refunds", &id, &e),
            }
        }
        Ok(settled)
    }
}
