//! Step 3 of the order path: the processor's answer applied to its order, in a transaction of
//! its own (the order path batches this, see [`super::settle_batch`]; this is its one-order
//! form, which the notification, the reaper and a failed batch use).

use super::Payments;
use crate::error::{CheckoutError, RejectKind, Rejection};
use crate::order_state::{OrderEvent, OrderStatus};
use crate::orders::{Change, Deferral, Order, OrderResult, reject};
use crate::payment::{Payment, PaymentStatus};

/// Rounds a settlement goes again from the order's new state when another actor moved it
/// meanwhile (a payment confirmed later moves it from `pending` to `payment_pending`).
const SETTLE_ROUNDS: usize = 3;

impl Payments {
    /// Step 3: apply the processor's answer to a pending (or `payment_pending`) order, in a
    /// transaction of its own. Should another actor have moved the order meanwhile, it is settled
    /// again from where it is now; once another actor has settled it for good, see
    /// [`Payments::settled_elsewhere`].
    pub(crate) async fn settle(
        &self,
        order: Order,
        payment: &Payment,
    ) -> Result<OrderResult, CheckoutError> {
        let mut order = order;
        for _ in 0..SETTLE_ROUNDS {
            if order.status == OrderStatus::PaymentPending && !payment.status.is_final() {
                // Still waiting: nothing to settle yet.
                return Ok(OrderResult::Created(order));
            }
            let change = change_for(payment, self.payment_hold_from(self.orders.now()));
            if let Some(settled) = self
                .orders
                .apply_change(&order, &change.as_change())
                .await?
            {
                return Ok(match change.rejection {
                    None => OrderResult::Created(settled),
                    Some(rejection) => OrderResult::Rejected(rejection),
                });
            }
            let current = self.orders.order_by_id(&order.id).await?;
            if current.status.is_final() {
                return self.settled_elsewhere(current, payment).await;
            }
            order = current;
        }
        Err(CheckoutError::Unavailable(
            "the order kept changing while it was settled; retry".into(),
        ))
    }

    /// The answer for an order another actor settled for good first. One it cancelled (the
    /// reaper, its reservation or hold over; the seller) must not stay charged: a payment still
    /// unanswered is cancelled at the processor, and one that went through after all is
    /// refunded. One it sold stays sold.
    async fn settled_elsewhere(
        &self,
        current: Order,
        payment: &Payment,
    ) -> Result<OrderResult, CheckoutError> {
        if current.status != OrderStatus::Cancelled {
            return Ok(OrderResult::Created(current));
        }
        let mut payment = payment.clone();
        if !payment.status.is_final() {
            payment = self.provider.cancel(&payment.reference).await?;
        }
        if payment.status == PaymentStatus::Succeeded {
            // Its own key: this is no seller's refund, and never one of the order's.
            let key = format!("{}-late-charge", payment.reference);
            self.provider.refund(&payment.reference, &key).await?;
        }
        Ok(OrderResult::Rejected(reject(
            RejectKind::PaymentTimeout,
            "the reservation expired before the payment was confirmed",
        )))
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
        // A payment still processing is one the processor could not cancel: it may yet go
        // through, so the order waits for its answer rather than giving its units away.
        PaymentStatus::RequiresAction { .. }
        | PaymentStatus::AwaitingConfirmation
        | PaymentStatus::Processing => (OrderEvent::PaymentDeferred, None),
        PaymentStatus::Declined { code } => (
            OrderEvent::Cancel,
            Some(reject(
                RejectKind::PaymentDeclined,
                format!("the card was declined ({code})"),
            )),
        ),
        PaymentStatus::Cancelled | PaymentStatus::Refunded => (
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
        PaymentStatus::AwaitingConfirmation | PaymentStatus::Processing => Some((hold_until, None)),
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
