//! The order state machine, without I/O: which transitions exist and which of them give stock
//! back. The SQL layer applies a transition with a conditional UPDATE on the expected state, so
//! two actors (a payment answer and the reservation reaper) can never both win.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Stock is reserved; payment is under way.
    Pending,
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
            (Pending, PaymentSucceeded) => Ok(Paid),
            (Pending, Cancel) => Ok(Cancelled),
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

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending)
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
    fn terminal_states_stay_terminal() {
        for from in [Cancelled, Refunded] {
            for event in [PaymentSucceeded, Cancel, Fulfil, Deliver, Refund] {
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
