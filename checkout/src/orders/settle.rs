//! Step 3 of the order path and every later move of an order: apply a state change with a
//! conditional UPDATE, give units back, post the ledger, and write the facts and webhook
//! messages in the same transaction.

use super::{Order, OrderResult, reject};
use crate::Checkout;
use crate::error::{CheckoutError, RejectKind, Rejection};
use crate::ledger;
use crate::order_state::{OrderEvent, OrderStatus};
use crate::payment::{Payment, PaymentStatus};
use crate::webhooks::EventType;
use crate::webhooks::outbox::Hook;
use vitrine_core::CommerceEvent;

impl Checkout {
    /// Step 3: apply the processor's answer to a pending (or `payment_pending`) order, in a transaction of its own
    /// (the order path batches this, see `settle_batch`; this is its one-order form).
    pub(crate) async fn settle(
        &self,
        order: Order,
        payment: &Payment,
    ) -> Result<OrderResult, CheckoutError> {
        if order.status == OrderStatus::PaymentPending && !payment.status.is_final() {
            // Still waiting: nothing to settle yet.
            return Ok(OrderResult::Created(order));
        }
        let change = change_for(payment, self.payment_hold_from(self.now()));
        match self.apply_change(&order, &change.as_change()).await? {
            Some(settled) => Ok(match change.rejection {
                None => OrderResult::Created(settled),
                Some(rejection) => OrderResult::Rejected(rejection),
            }),
            None => self.settled_elsewhere(&order, payment).await,
        }
    }

    /// The answer for an order that someone else settled first (the reaper, after the
    /// reservation expired): a charge that went through after all is refunded.
    pub(crate) async fn settled_elsewhere(
        &self,
        order: &Order,
        payment: &Payment,
    ) -> Result<OrderResult, CheckoutError> {
        let current = self.order_by_id(&order.id).await?;
        if current.status != OrderStatus::Paid && payment.status == PaymentStatus::Succeeded {
            // Its own key: this is no seller's refund, and never one of the order's.
            let key = format!("{}-late-charge", payment.reference);
            self.payments.refund(&payment.reference, &key).await?;
        }
        Ok(if current.status == OrderStatus::Paid {
            OrderResult::Created(current)
        } else {
            OrderResult::Rejected(reject(
                RejectKind::PaymentTimeout,
                "the reservation expired before the payment was confirmed",
            ))
        })
    }

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
        self.facts
            .commit(
                tx,
                moved.facts.clone(),
                &moved.hooks,
                moved.order.updated_at,
            )
            .await?;
        self.after_transition(order, &moved);
        Ok(Some(moved.order))
    }

    /// [`Checkout::transition`] inside the caller's transaction; the caller commits with the
    /// move's facts, then calls [`Checkout::after_transition`].
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

/// What a payment's answer does to its pending order.
pub(crate) struct PaymentChange {
    event: OrderEvent,
    failure: Option<&'static str>,
    payment_id: String,
    /// The placement's refusal when the order did not sell.
    pub rejection: Option<Rejection>,
    /// Until when the units stay reserved, and where the buyer acts, when the processor
    /// confirms later.
    deferral: Option<(i64, Option<String>)>,
}

impl PaymentChange {
    pub(crate) fn as_change(&self) -> Change<'_> {
        Change {
            event: self.event,
            failure: self.failure,
            payment_id: Some(&self.payment_id),
            rejection: self.rejection.as_ref(),
            shipment: None,
            deferral: self.deferral.as_ref().map(|(hold_until, action)| Deferral {
                hold_until: *hold_until,
                action: action.as_deref(),
            }),
        }
    }
}

/// The change a payment's answer makes: paid, waiting for a later confirmation (the units held
/// until `hold_until`), or cancelled with why.
pub(crate) fn change_for(payment: &Payment, hold_until: i64) -> PaymentChange {
    let (event, rejection) = match &payment.status {
        PaymentStatus::Succeeded => (OrderEvent::PaymentSucceeded, None),
        PaymentStatus::RequiresAction { .. } | PaymentStatus::AwaitingConfirmation => {
            (OrderEvent::PaymentDeferred, None)
        }
        PaymentStatus::Declined { code } => (
            OrderEvent::Cancel,
            Some(reject(
                RejectKind::PaymentDeclined,
                format!("the card was declined ({code})"),
            )),
        ),
        PaymentStatus::Processing | PaymentStatus::Cancelled | PaymentStatus::Refunded => (
            OrderEvent::Cancel,
            Some(reject(
                RejectKind::PaymentTimeout,
                "the card processor did not confirm in time; nothing was charged",
            )),
        ),
    };
    let failure = rejection.as_ref().map(|r| match r.kind {
        RejectKind::PaymentDeclined => "payment_declined",
        _ => "payment_timeout",
    });
    let deferral = match &payment.status {
        PaymentStatus::RequiresAction { url } => Some((hold_until, Some(url.clone()))),
        PaymentStatus::AwaitingConfirmation => Some((hold_until, None)),
        _ => None,
    };
    PaymentChange {
        event,
        failure,
        payment_id: payment.id.clone(),
        rejection,
        deferral,
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
