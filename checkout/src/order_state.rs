//! The order state machine, without I/O: which transitions exist and which of them give stock
//! back. The SQL layer applies a transition with a conditional UPDATE on the expected state, so
//! two actors (a payment answer and the reservation reaper) can never both win.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Stock is reserved; payment is under way.
    Pending,
    /// Stock stays reserved while the processor confirms later: the buyer has a step to take
    /// (3-D Secure, see the order's `next_action`) or the method confirms asynchronously (a bank
    /// debit). Its answer arrives through the processor's notification or the reaper's poll.
    #[serde(rename = "payment_pending")]
    PaymentPending,
    Paid,
    /// Shipped by the seller (with a carrier and tracking number when given).
    Fulfilled,
    /// The seller says the buyer has it.
    Delivered,
    Cancelled,
    Refunded,
}

/// What happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    PaymentSucceeded,
    /// The processor will confirm later (the buyer's action, an asynchronous method).
    PaymentDeferred,
    /// Declined, timed out, expired reservation, or cancelled by buyer or seller before payment.
    Cancel,
    Fulfil,
    Deliver,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from:?} cannot take {event:?}")]
pub struct InvalidTransition {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::PaymentPending => "payment_pending",
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "payment_pending" => Self::PaymentPending,
            "paid" => Self::Paid,
            "fulfilled" => Self::Fulfilled,
            "delivered" => Self::Delivered,
            "cancelled" => Self::Cancelled,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }

    /// The state after `event`, or why it cannot happen.
    pub fn apply(self, event: OrderEvent) -> Result<Self, InvalidTransition> {
        use OrderEvent::*;
        use OrderStatus::*;
        match (self, event) {
            (Pending | PaymentPending, PaymentSucceeded) => Ok(Paid),
            (Pending, PaymentDeferred) => Ok(PaymentPending),
            (Pending | PaymentPending, Cancel) => Ok(Cancelled),
            (Paid, Fulfil) => Ok(Fulfilled),
            (Fulfilled, Deliver) => Ok(Delivered),
            (Paid | Fulfilled | Delivered, Refund) => Ok(Refunded),
            (from, event) => Err(InvalidTransition { from, event }),
        }
    }

    /// Whether entering this state from a reserving state gives the units back to stock.
    pub fn restocks(self) -> bool {
        matches!(self, Self::Cancelled | Self::Refunded)
    }

    /// Whether the placement has its final answer (the order left the payment's states).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::PaymentPending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderEvent::*;
    use OrderStatus::*;

    #[test]
    fn the_happy_path_and_its_exits() {
        assert_eq!(Pending.apply(PaymentSucceeded), Ok(Paid));
        assert_eq!(Paid.apply(Fulfil), Ok(Fulfilled));
        assert_eq!(Fulfilled.apply(Deliver), Ok(Delivered));
        assert_eq!(Delivered.apply(Refund), Ok(Refunded));
        assert_eq!(Fulfilled.apply(Refund), Ok(Refunded));
        assert_eq!(Paid.apply(Refund), Ok(Refunded));
        assert_eq!(Pending.apply(Cancel), Ok(Cancelled));
    }

    #[test]
    fn a_payment_confirmed_later_waits_in_payment_pending() {
        assert_eq!(Pending.apply(PaymentDeferred), Ok(PaymentPending));
        assert_eq!(PaymentPending.apply(PaymentSucceeded), Ok(Paid));
        assert_eq!(PaymentPending.apply(Cancel), Ok(Cancelled));
        assert!(
            PaymentPending.apply(PaymentDeferred).is_err(),
            "deferred once"
        );
        assert!(
            PaymentPending.apply(Fulfil).is_err(),
            "not shipped before it is paid"
        );
        assert!(
            PaymentPending.apply(Refund).is_err(),
            "nothing was charged to refund"
        );
        assert!(Paid.apply(PaymentDeferred).is_err());
        assert!(!PaymentPending.is_final() && !PaymentPending.restocks());
        assert_eq!(OrderStatus::parse("payment_pending"), Some(PaymentPending));
        assert_eq!(
            serde_json::to_string(&PaymentPending).unwrap(),
            "\"payment_pending\""
        );
    }

    #[test]
    fn terminal_states_stay_terminal() {
        for from in [Cancelled, Refunded] {
            for event in [
                PaymentSucceeded,
                PaymentDeferred,
                Cancel,
                Fulfil,
                Deliver,
                Refund,
            ] {
                assert!(from.apply(event).is_err(), "{from:?} {event:?}");
            }
        }
        assert!(Paid.apply(PaymentSucceeded).is_err());
        assert!(
            Paid.apply(Cancel).is_err(),
            "a paid order is refunded, not cancelled"
        );
        assert!(Pending.apply(Refund).is_err());
        assert!(Paid.apply(Deliver).is_err(), "shipped before delivered");
        assert!(Delivered.apply(Deliver).is_err() && Delivered.apply(Fulfil).is_err());
        assert!(Cancelled.restocks() && Refunded.restocks() && !Paid.restocks());
    }

    #[test]
    fn names_round_trip() {
        for s in [Pending, Paid, Fulfilled, Delivered, Cancelled, Refunded] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }
}
