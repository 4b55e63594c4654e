//! The events a seller's systems can subscribe to. The wire names are public surface.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "order.refunded")]
    OrderRefunded,
    #[serde(rename = "order.shipped")]
    OrderShipped,
    #[serde(rename = "order.delivered")]
    OrderDelivered,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "stream.started")]
    StreamStarted,
    #[serde(rename = "stream.ended")]
    StreamEnded,
    #[serde(rename = "product.sold_out")]
    ProductSoldOut,
    #[serde(rename = "auction.started")]
    AuctionStarted,
    #[serde(rename = "auction.bid")]
    AuctionBid,
    #[serde(rename = "auction.ended")]
    AuctionEnded,
}

impl EventType {
    pub const ALL: [EventType; 12] = [
        EventType::OrderCreated,
        EventType::OrderPaid,
        EventType::OrderRefunded,
        EventType::OrderShipped,
        EventType::OrderDelivered,
        EventType::PaymentFailed,
        EventType::StreamStarted,
        EventType::StreamEnded,
        EventType::ProductSoldOut,
        EventType::AuctionStarted,
        EventType::AuctionBid,
        EventType::AuctionEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "order.created",
            EventType::OrderPaid => "order.paid",
            EventType::OrderRefunded => "order.refunded",
            EventType::OrderShipped => "order.shipped",
            EventType::OrderDelivered => "order.delivered",
            EventType::PaymentFailed => "payment.failed",
            EventType::StreamStarted => "stream.started",
            EventType::StreamEnded => "stream.ended",
            EventType::ProductSoldOut => "product.sold_out",
            EventType::AuctionStarted => "auction.started",
            EventType::AuctionBid => "auction.bid",
            EventType::AuctionEnded => "auction.ended",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == raw)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        assert_eq!(EventType::parse("order.lost"), None);
    }
}
