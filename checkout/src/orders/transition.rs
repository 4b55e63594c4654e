//! Every move of an order: apply a state change with a conditional UPDATE, give units back,
//! post the ledger, store the placement's answer with its key, and write the facts and webhook
//! messages in the same transaction.

use super::{Order, OrderResult, Orders};
use crate::error::{CheckoutError, Rejection};
use crate::ledger;
use crate::order_state::{OrderEvent, OrderStatus};
use crate::webhooks::EventType;
use crate::webhooks::outbox::Hook;
use vitrine_core::CommerceEvent;

impl Orders {
    /// Applies `event` to `order` if it is still in the state it was read in. Gives the units
    /// back when the new state restocks, and stores the placement result when the order leaves
    /// `pending`. `None` when another actor changed the order first.
    pub(crate) async fn transition(
        &self,
        order: &Order,
        event: OrderEvent,
        failure: Option<&str>,
        payment_id: Option<&str>,
        rejection: Option<&Rejection>,
    ) -> Result<Option<Order>, CheckoutError> {
        let change = Change {
            event,
            failure,
            payment_id,
            rejection,
            shipment: None,
            deferral: None,
        };
        self.apply_change(order, &change).await
    }

    /// Applies `change` to `order` in a transaction of its own; `None` when the order moved
    /// meanwhile.
    pub(crate) async fn apply_change(
        &self,
        order: &Order,
        change: &Change<'_>,
    ) -> Result<Option<Order>, CheckoutError> {
        let mut tx = self.pool.begin().await?;
        let Some(moved) = self.transition_in(&mut tx, order, change).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        self.commit_move(tx, order, &moved).await?;
        Ok(Some(moved.order))
    }

    /// [`Orders::transition`] inside the caller's transaction; the caller commits with the
    /// move's facts, then calls [`Orders::after_transition`].
    pub(crate) async fn transition_in(
        &self,
        tx: &mut ledger::Tx<'_>,
        order: &Order,
        change: &Change<'_>,
    ) -> Result<Option<Moved>, CheckoutError> {
        let next = order
            .status
            .apply(change.event)
            .map_err(|e| CheckoutError::Conflict(e.to_string()))?;
        let now = self.now();
        let shipped_at = (next == OrderStatus::Fulfilled).then_some(now);
        let hold_until = change.deferral.as_ref().map(|d| d.hold_until);
        let action = change.deferral.as_ref().and_then(|d| d.action);
        let delivered_at = (next == OrderStatus::Delivered).then_some(now);
        let moved = sqlx::query(
            "UPDATE orders SET status = $1, failure = COALESCE($2, failure), \
             payment_id = COALESCE($3, payment_id), updated_at = $4, \
             carrier = COALESCE($7, carrier), tracking_number = COALESCE($8, tracking_number), \
             shipped_at = COALESCE($9, shipped_at), delivered_at = COALESCE($10, delivered_at), \
             reserved_until = COALESCE($11, reserved_until), payment_action = $12 \
             WHERE id = $5 AND status = $6",
        )
        .bind(next.as_str())
        .bind(change.failure)
        .bind(change.payment_id)
        .bind(now)
        .bind(order.id.as_str())
        .bind(order.status.as_str())
        .bind(change.shipment.map(|s| s.carrier.as_str()))
        .bind(change.shipment.map(|s| s.tracking_number.as_str()))
        .bind(shipped_at)
        .bind(delivered_at)
        .bind(hold_until)
        .bind(action)
        .execute(&mut **tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(None);
        }
        if next.restocks() {
            restock(tx, order, now).await?;
        }
        let mut settled = order.clone();
        settled.status = next;
        settled.updated_at = now;
        if let Some(f) = change.failure {
            settled.failure = Some(f.to_owned());
        }
        if let Some(p) = change.payment_id {
            settled.payment_id = Some(p.to_owned());
        }
        if let Some(shipment) = change.shipment {
            settled.shipment = Some(shipment.clone());
        }
        settled.reserved_until = hold_until.unwrap_or(settled.reserved_until);
        settled.payment_action = action.map(str::to_owned);
        settled.shipped_at = shipped_at.or(settled.shipped_at);
        settled.delivered_at = delivered_at.or(settled.delivered_at);
        let hooks = webhook_for(&settled, change)?.into_iter().collect();
        ledger::post_for_order(tx, &settled, next, &self.config.fees, now).await?;
        if !order.status.is_final() {
            store_result(tx, &settled, change.rejection).await?;
        }
        let facts = order_facts(tx, &settled).await?;
        Ok(Some(Moved {
            order: settled,
            hooks,
            facts,
        }))
    }

    /// Commits the transaction holding `moved` (its facts and webhook messages written with it),
    /// then tells of the move.
    pub(crate) async fn commit_move(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
        before: &Order,
        moved: &Moved,
    ) -> Result<(), CheckoutError> {
        self.facts
            .commit(
                tx,
                moved.facts.clone(),
                &moved.hooks,
                moved.order.updated_at,
            )
            .await?;
        self.after_transition(before, moved);
        Ok(())
    }

    /// What follows a committed transition (the rooms and the webhooks hear of it from the
    /// fact row committed with it).
    pub(crate) fn after_transition(&self, before: &Order, moved: &Moved) {
        let to = moved.order.status.as_str();
        tracing::info!(order = %before.id, from = before.status.as_str(), to, "order");
    }
}

/// What the rooms hear of an order that moved, read in its transaction: the order itself (its
/// buyer and the seller see it), and what its product has left when the units came back, or a
/// purchase when it was paid through the stream's pin.
async fn order_facts(
    tx: &mut ledger::Tx<'_>,
    order: &Order,
) -> Result<Vec<CommerceEvent>, CheckoutError> {
    let mut facts = vec![order_fact(order)];
    if order.status.restocks() {
        facts.extend(crate::pins::stock_facts(tx, &order.product_id).await?);
    } else if order.status == OrderStatus::Paid
        && let Some(stream) = &order.stream_id
        && let Some((pin, product)) = crate::pins::active_pin_on(&mut **tx, stream).await?
        && pin.product_id == order.product_id
    {
        facts.push(CommerceEvent::Purchase {
            stream: stream.clone(),
            product: order.product_id.clone(),
            quantity: order.quantity,
            orders: 1,
            available: pin.available(&product),
        });
    }
    Ok(facts)
}

/// An order's new state, for its buyer and its seller.
pub(crate) fn order_fact(order: &Order) -> CommerceEvent {
    CommerceEvent::Order {
        stream: order.stream_id.clone(),
        seller: order.seller_id.clone(),
        buyer: order.buyer_id.clone(),
        order: order.summary(),
    }
}

/// A state change to apply to an order.
pub(crate) struct Change<'a> {
    pub event: OrderEvent,
    /// Why a cancelled order did not sell.
    pub failure: Option<&'a str>,
    pub payment_id: Option<&'a str>,
    /// The placement's answer, when the order leaves `pending` refused.
    pub rejection: Option<&'a Rejection>,
    /// The carrier and tracking number, when the seller ships with them.
    pub shipment: Option<&'a super::Shipment>,
    /// For a payment the processor confirms later: how long the units stay reserved.
    pub deferral: Option<Deferral<'a>>,
}

/// An order's wait for a payment confirmed later.
pub(crate) struct Deferral<'a> {
    /// Unix ms until which the units stay reserved; the reaper cancels the payment then.
    pub hold_until: i64,
    /// Where the buyer completes the payment, when that is theirs to do.
    pub action: Option<&'a str>,
}

/// An order after a transition, and what the rooms and the webhooks are to hear of it once it
/// commits (written with it by [`crate::facts::Facts::commit`]).
pub(crate) struct Moved {
    pub order: Order,
    pub hooks: Vec<Hook>,
    pub facts: Vec<CommerceEvent>,
}

/// Gives an order's units back to the product, its pin's quantity and the buyer's pin limit.
async fn restock(tx: &mut ledger::Tx<'_>, order: &Order, now: i64) -> Result<(), CheckoutError> {
    let q = i64::from(order.quantity);
    crate::catalog::put_back(tx, &order.product_id, q, now).await?;
    if let Some(pin) = &order.pin_id {
        sqlx::query(
            "UPDATE pins SET remaining = remaining + $1 WHERE id = $2 AND remaining IS NOT NULL",
        )
        .bind(q)
        .bind(pin.as_str())
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE pin_buyers SET quantity = quantity - $1 \
             WHERE pin_id = $2 AND buyer_id = $3 AND quantity >= $1",
        )
        .bind(q)
        .bind(pin.as_str())
        .bind(order.buyer_id.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The webhook message the new state calls for, if any.
fn webhook_for(settled: &Order, change: &Change<'_>) -> Result<Option<Hook>, CheckoutError> {
    let webhook = match (change.event, settled.status) {
        (_, OrderStatus::Paid) => Some(EventType::OrderPaid),
        (_, OrderStatus::Refunded) => Some(EventType::OrderRefunded),
        (_, OrderStatus::Fulfilled) => Some(EventType::OrderShipped),
        (_, OrderStatus::Delivered) => Some(EventType::OrderDelivered),
        (OrderEvent::Cancel, _) if change.failure.is_some_and(|f| f.starts_with("payment_")) => {
            Some(EventType::PaymentFailed)
        }
        _ => None,
    };
    webhook
        .map(|kind| {
            Hook::new(
                &settled.seller_id,
                kind,
                &super::OrderMessage::from(settled),
            )
        })
        .transpose()
}

/// Stores the placement's final answer with its idempotency key.
async fn store_result(
    tx: &mut ledger::Tx<'_>,
    settled: &Order,
    rejection: Option<&Rejection>,
) -> Result<(), CheckoutError> {
    let result = match rejection {
        Some(r) => OrderResult::Rejected(r.clone()),
        None => OrderResult::Created(settled.clone()),
    };
    sqlx::query("UPDATE idempotency_keys SET response = $1 WHERE buyer_id = $2 AND order_id = $3")
        .bind(super::StoredResult::encode(&result)?)
        .bind(settled.buyer_id.as_str())
        .bind(settled.id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
