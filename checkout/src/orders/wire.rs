//! What each surface shows of an [`Order`]: the REST body ([`OrderBody`], `Order` in the
//! OpenAPI document), the webhook payload ([`OrderMessage`]) and the answer stored with an
//! idempotency key ([`StoredResult`]). The order itself is the row; these are made from it, and
//! each can change its shape without the others.

use super::{Order, OrderResult, OrderSource, Presentment, Shipment};
use crate::error::Rejection;
use crate::order_state::OrderStatus;
use serde::{Deserialize, Serialize};
use vitrine_core::{BuyerId, Money, OrderId, PinId, ProductId, SellerId, StreamId, Timestamp};

/// An order as the REST API shows it (`Order` in the OpenAPI document), and as a stored
/// idempotent answer replays it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = Order)]
pub struct OrderBody {
    pub id: OrderId,
    pub status: OrderStatus,
    pub buyer_id: BuyerId,
    pub seller_id: SellerId,
    pub product_id: ProductId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pin_id: Option<PinId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stream_id: Option<StreamId>,
    pub quantity: u32,
    pub unit_price: Money,
    pub total: Money,
    /// Why a cancelled order did not sell: `payment_declined`, `payment_timeout`,
    /// `reservation_expired` or `cancelled_by_seller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub payment_id: Option<String>,
    pub card_last4: String,
    /// Unix milliseconds until which the stock stays reserved for a pending order.
    pub reserved_until: i64,
    /// Unix milliseconds (kept for existing clients; `created_at_iso` is the same instant).
    pub created_at: i64,
    /// Unix milliseconds (kept for existing clients; `updated_at_iso` is the same instant).
    pub updated_at: i64,
    // Filled from the millisecond fields when a response stored before they existed is read
    // back (an idempotent replay): see [`StoredResult`].
    #[serde(default = "unset_time")]
    pub reserved_until_iso: Timestamp,
    #[serde(default = "unset_time")]
    pub created_at_iso: Timestamp,
    #[serde(default = "unset_time")]
    pub updated_at_iso: Timestamp,
    /// The price in the buyer's currency, as quoted when the order was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub presentment: Option<Presentment>,
    /// Where it was placed (`api` for an order from before this was kept).
    #[serde(default)]
    pub source: OrderSource,
    /// For a `replay` order: the moment of the replay the buyer was at, ms from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0)]
    pub media_ms: Option<u64>,
    /// How it was shipped, when the seller gave a carrier and tracking number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub shipment: Option<Shipment>,
    /// Unix milliseconds when it was fulfilled (shipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub shipped_at: Option<i64>,
    /// Unix milliseconds when the seller marked it delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub delivered_at: Option<i64>,
    /// What the buyer does next for a `payment_pending` order's payment, while it waits for
    /// that (a 3-D Secure check at the card's bank).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_action: Option<NextAction>,
}

/// A step the buyer takes to complete a payment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct NextAction {
    /// `redirect_to_url`: open `url` (the bank's check) and come back.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

fn unset_time() -> Timestamp {
    Timestamp(0)
}

impl From<&Order> for OrderBody {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.clone(),
            status: o.status,
            buyer_id: o.buyer_id.clone(),
            seller_id: o.seller_id.clone(),
            product_id: o.product_id.clone(),
            pin_id: o.pin_id.clone(),
            stream_id: o.stream_id.clone(),
            quantity: o.quantity,
            unit_price: o.unit_price,
            total: o.total,
            failure: o.failure.clone(),
            // While the buyer's check is open its payment id opens it (the sandbox's check page
            // is keyed by it): only `next_action`, which only the buyer is shown, carries it.
            payment_id: o
                .payment_id
                .clone()
                .filter(|_| o.status != OrderStatus::PaymentPending),
            card_last4: o.card_last4.clone(),
            reserved_until: o.reserved_until,
            created_at: o.created_at,
            updated_at: o.updated_at,
            presentment: o.presentment.clone(),
            source: o.source,
            media_ms: o.media_ms,
            shipment: o.shipment.clone(),
            shipped_at: o.shipped_at,
            delivered_at: o.delivered_at,
            next_action: o.payment_action.as_ref().map(|url| NextAction {
                kind: "redirect_to_url".into(),
                url: url.clone(),
            }),
            reserved_until_iso: Timestamp(o.reserved_until),
            created_at_iso: Timestamp(o.created_at),
            updated_at_iso: Timestamp(o.updated_at),
        }
    }
}

impl OrderBody {
    /// The body as the order's seller sees it: without the buyer's next step (a payment check
    /// is the buyer's to answer, and its address would let anyone holding it answer).
    pub fn for_seller(mut self) -> Self {
        self.next_action = None;
        self
    }
}

/// The order a body shows (its RFC 3339 twins are dropped: the millisecond fields are the
/// record, and a body made again from the order recomputes them).
impl From<OrderBody> for Order {
    fn from(b: OrderBody) -> Self {
        Self {
            id: b.id,
            status: b.status,
            buyer_id: b.buyer_id,
            seller_id: b.seller_id,
            product_id: b.product_id,
            pin_id: b.pin_id,
            stream_id: b.stream_id,
            quantity: b.quantity,
            unit_price: b.unit_price,
            total: b.total,
            failure: b.failure,
            payment_id: b.payment_id,
            card_last4: b.card_last4,
            reserved_until: b.reserved_until,
            created_at: b.created_at,
            updated_at: b.updated_at,
            presentment: b.presentment,
            source: b.source,
            media_ms: b.media_ms,
            shipment: b.shipment,
            shipped_at: b.shipped_at,
            delivered_at: b.delivered_at,
            payment_action: b.next_action.map(|a| a.url),
        }
    }
}

/// The `data` of the `order.*` webhooks. Today the REST body's shape; a type of its own so that
/// the API's body can grow without changing what sellers' endpoints verify and parse.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct OrderMessage(OrderBody);

impl From<&Order> for OrderMessage {
    fn from(o: &Order) -> Self {
        Self(OrderBody::from(o))
    }
}

/// The final answer to an order request as stored with its idempotency key and replayed to a
/// retry: the body the first request got, or its refusal.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoredResult {
    Created(OrderBody),
    Rejected(Rejection),
}

impl From<&OrderResult> for StoredResult {
    fn from(r: &OrderResult) -> Self {
        match r {
            OrderResult::Created(o) => Self::Created(OrderBody::from(o)),
            OrderResult::Rejected(r) => Self::Rejected(r.clone()),
        }
    }
}

impl From<StoredResult> for OrderResult {
    fn from(r: StoredResult) -> Self {
        match r {
            StoredResult::Created(b) => Self::Created(Order::from(b)),
            StoredResult::Rejected(r) => Self::Rejected(r),
        }
    }
}

impl StoredResult {
    /// The stored text of `result`.
    pub(crate) fn encode(result: &OrderResult) -> Result<String, crate::error::CheckoutError> {
        serde_json::to_string(&Self::from(result)).map_err(crate::error::corrupt)
    }

    /// A stored text read back.
    pub(crate) fn decode(text: &str) -> Result<OrderResult, crate::error::CheckoutError> {
        serde_json::from_str::<Self>(text)
            .map(OrderResult::from)
            .map_err(crate::error::corrupt)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vitrine_core::Currency;

    /// A paid order created at `created_at` (Unix ms).
    pub(crate) fn paid_at(created_at: i64) -> Order {
        let usd = Money::new(4900, Currency::parse("USD").unwrap()).unwrap();
        Order {
            id: OrderId::generate(),
            status: OrderStatus::Paid,
            buyer_id: BuyerId::generate(),
            seller_id: SellerId::generate(),
            product_id: ProductId::generate(),
            pin_id: None,
            stream_id: None,
            quantity: 1,
            unit_price: usd,
            total: usd,
            failure: None,
            payment_id: Some("pay_1".into()),
            card_last4: "4242".into(),
            reserved_until: created_at + 10_000_000,
            created_at,
            updated_at: created_at + 5_000_000,
            presentment: None,
            source: OrderSource::Api,
            media_ms: None,
            shipment: None,
            shipped_at: None,
            delivered_at: None,
            payment_action: None,
        }
    }

    /// A response stored for an idempotent replay before the RFC 3339 twins existed still
    /// reads back as the same order, and its body comes out with them.
    #[test]
    fn a_stored_order_without_iso_times_replays_with_them() {
        let order = paid_at(1_764_640_000_000);
        let created = OrderResult::Created(order.clone());
        let mut stored = serde_json::to_value(StoredResult::from(&created)).unwrap();
        let fields = stored["created"].as_object_mut().unwrap();
        for old in ["reserved_until_iso", "created_at_iso", "updated_at_iso"] {
            assert!(fields.remove(old).is_some(), "{old}");
        }
        let read = StoredResult::decode(&stored.to_string()).unwrap();
        assert_eq!(read, created);
        let OrderResult::Created(read) = read else {
            panic!("an order")
        };
        let body = serde_json::to_value(OrderBody::from(&read)).unwrap();
        assert_eq!(body["created_at_iso"], "2025-12-02T01:46:40.000Z");
        assert_eq!(body["created_at"], 1_764_640_000_000_i64);
    }

    /// The webhook's payload is the body's shape, field for field.
    #[test]
    fn the_webhook_payload_has_the_bodys_fields() {
        let order = paid_at(1_764_640_000_000);
        assert_eq!(
            serde_json::to_value(OrderMessage::from(&order)).unwrap(),
            serde_json::to_value(OrderBody::from(&order)).unwrap()
        );
    }
}
