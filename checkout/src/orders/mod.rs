//! Orders: the order's types, its row mapping and the [`Orders`] service (reading orders, every
//! move of one, the keys' stored answers, the ledger's reads). The order path runs in three
//! steps over it, each safe to die in:
//!
//! 1. **Reserve** (one transaction, [`crate::sale`]): claim the idempotency key, take the units
//!    with conditional UPDATEs (product stock, the pin's quantity cap, the buyer's per-pin
//!    limit), insert the order as `pending` with a reservation deadline. Nothing is read and then
//!    written.
//! 2. **Charge** ([`crate::payments`]): create the payment at the processor keyed by the order
//!    id, wait for its asynchronous confirmation up to the payment timeout, cancel it if it has
//!    not settled (or, for a payment confirmed later, let the order wait in `payment_pending`).
//! 3. **Settle** (one transaction, [`crate::payments`]): move the order out of `pending` with a
//!    conditional UPDATE ([`transition`]), give the units back if it did not sell, and store the
//!    result with the idempotency key.
//!
//! A process that dies between 1 and 3 leaves a `pending` order; the reaper settles it from the
//! processor's own record once its reservation window has passed. This module never talks to the
//! processor itself.

mod manage;
mod page;
mod sales;
mod service;
mod transition;
pub mod wire;

pub use page::{OrderOwner, OrderPage, OrderQuery};
pub use service::Orders;
pub(crate) use transition::{Change, Deferral, Moved, order_fact};
pub use wire::{NextAction, OrderBody, OrderMessage, StoredResult};

use crate::card::CardInput;
use crate::error::{CheckoutError, RejectKind, Rejection, corrupt};
use crate::order_state::OrderStatus;
pub use sales::StreamSale;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use vitrine_core::{
    BuyerId, Currency, Money, OrderId, OrderSummary, PinId, ProductId, SellerId, StreamId,
};

/// Most units in one order.
pub const MAX_ORDER_QUANTITY: u32 = 1000;
/// Most orders listed in one page.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentDetails {
    /// Sandbox: 4242424242424242 approves, 4000000000000002 declines, 4000000000000119 never
    /// settles, 4000000000003220 asks for 3-D Secure, 4000000000000077 is confirmed later.
    #[schema(value_type = String)]
    pub card_number: CardInput,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub product_id: ProductId,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
    /// Buy through this pin (its sale price and limits apply).
    #[serde(default)]
    pub pin_id: Option<PinId>,
    /// Buy through this stream's current pin.
    #[serde(default)]
    pub stream_id: Option<StreamId>,
    /// The buyer's currency: the order is priced and charged in it, at the rates in force, and
    /// keeps that quote; the seller is settled in the product's currency.
    #[serde(default)]
    pub currency: Option<Currency>,
    #[schema(inline)]
    pub payment: PaymentDetails,
    /// Where the buyer buys: `api` (the default) or `replay` (from the replay of `stream_id`,
    /// at `media_ms`; at the catalog price, a past sale's pin does not apply). `live` is the
    /// live room's own (a purchase in its chat).
    #[serde(default)]
    pub source: OrderSource,
    /// With `replay`: the moment of the replay the buyer was at, ms from its start.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub media_ms: Option<u64>,
}

/// Where an order was placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderSource {
    /// In the live room's chat.
    Live,
    /// From a stream's replay.
    Replay,
    /// Through the API (a shop's own page or app).
    #[default]
    Api,
}

impl OrderSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Replay => "replay",
            Self::Api => "api",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::Live, Self::Replay, Self::Api]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An order as checkout keeps it: its row. What each surface shows of it is a type of its own
/// ([`wire`]): the REST body, the webhook payload, the stored idempotent answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub status: OrderStatus,
    pub buyer_id: BuyerId,
    pub seller_id: SellerId,
    pub product_id: ProductId,
    pub pin_id: Option<PinId>,
    pub stream_id: Option<StreamId>,
    pub quantity: u32,
    pub unit_price: Money,
    pub total: Money,
    /// Why a cancelled order did not sell: `payment_declined`, `payment_timeout`,
    /// `reservation_expired` or `cancelled_by_seller`.
    pub failure: Option<String>,
    pub payment_id: Option<String>,
    pub card_last4: String,
    /// Unix milliseconds until which the stock stays reserved for a pending order.
    pub reserved_until: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// The price in the buyer's currency, as quoted when the order was placed.
    pub presentment: Option<Presentment>,
    /// Where it was placed (`api` for an order from before this was kept).
    pub source: OrderSource,
    /// For a `replay` order: the moment of the replay the buyer was at, ms from its start.
    pub media_ms: Option<u64>,
    /// How it was shipped, when the seller gave a carrier and tracking number.
    pub shipment: Option<Shipment>,
    /// Unix milliseconds when it was fulfilled (shipped).
    pub shipped_at: Option<i64>,
    /// Unix milliseconds when the seller marked it delivered.
    pub delivered_at: Option<i64>,
    /// Where the buyer completes a `payment_pending` order's payment (3-D Secure), while it
    /// waits for that.
    pub payment_action: Option<String>,
}

/// A shipment's carrier and tracking number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Shipment {
    /// 1 to 64 characters.
    pub carrier: String,
    /// 1 to 64 of letters, digits, space, `-`, `_`, `.` and `/`.
    pub tracking_number: String,
}

/// Longest carrier name and tracking number.
const MAX_SHIPMENT_CHARS: usize = 64;

impl Shipment {
    /// A shipment with its fields trimmed and checked.
    pub fn new(carrier: &str, tracking_number: &str) -> Result<Self, CheckoutError> {
        let (carrier, tracking) = (carrier.trim(), tracking_number.trim());
        let carrier_ok = (1..=MAX_SHIPMENT_CHARS).contains(&carrier.chars().count())
            && !carrier.chars().any(char::is_control);
        let tracking_ok = (1..=MAX_SHIPMENT_CHARS).contains(&tracking.len())
            && tracking
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" -_./".contains(&b));
        if !carrier_ok || !tracking_ok {
            return Err(CheckoutError::Invalid(format!(
                "carrier: 1 to {MAX_SHIPMENT_CHARS} characters; tracking_number: 1 to \
                 {MAX_SHIPMENT_CHARS} of letters, digits, space, - _ . /"
            )));
        }
        Ok(Self {
            carrier: carrier.to_owned(),
            tracking_number: tracking.to_owned(),
        })
    }
}

/// The price in the buyer's currency, locked when the order was placed, and the quote it came
/// from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Presentment {
    pub unit_price: Money,
    pub total: Money,
    /// The base currency of the rates, and the two rates against it (exact decimals).
    pub rate_base: Currency,
    pub rate_from: String,
    pub rate_to: String,
    pub source: String,
    pub as_of: String,
}

impl Order {
    /// What the buyer's card is charged: the locked price in their currency, or the total.
    pub fn charge_amount(&self) -> Money {
        self.presentment.as_ref().map_or(self.total, |p| p.total)
    }

    pub fn summary(&self) -> OrderSummary {
        OrderSummary {
            id: self.id.clone(),
            status: self.status.as_str().to_owned(),
            product_id: self.product_id.clone(),
            quantity: self.quantity,
            total: self.total,
            charged: self.presentment.as_ref().map(|p| p.total),
            stream_id: self.stream_id.clone(),
            created_at: self.created_at,
        }
    }
}

/// The final answer to an order request (stored with its idempotency key as a
/// [`wire::StoredResult`]).
// One short-lived value per request: boxing the order would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderResult {
    Created(Order),
    Rejected(Rejection),
}

/// What [`crate::sale::Sale::place_order`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub result: OrderResult,
    /// True when this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
}

pub(crate) const ORDER_COLUMNS: &str = "id, status, buyer_id, seller_id, product_id, pin_id, stream_id, \
     quantity, unit_amount, total_amount, currency, failure, payment_id, card_last4, \
     reserved_until, created_at, updated_at, presentment, source, media_ms, carrier, \
     tracking_number, shipped_at, delivered_at, payment_action";

pub(crate) fn order_from_row(r: &AnyRow) -> Result<Order, CheckoutError> {
    let status: String = r.try_get(1)?;
    let currency = Currency::parse(&r.try_get::<String, _>(10)?).map_err(corrupt)?;
    let opt_id = |i: usize| -> Result<Option<String>, CheckoutError> { Ok(r.try_get(i)?) };
    Ok(Order {
        id: OrderId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
        status: OrderStatus::parse(&status).ok_or_else(|| corrupt(status))?,
        buyer_id: BuyerId::parse(&r.try_get::<String, _>(2)?).map_err(corrupt)?,
        seller_id: SellerId::parse(&r.try_get::<String, _>(3)?).map_err(corrupt)?,
        product_id: ProductId::parse(&r.try_get::<String, _>(4)?).map_err(corrupt)?,
        pin_id: opt_id(5)?
            .map(|s| PinId::parse(&s).map_err(corrupt))
            .transpose()?,
        stream_id: opt_id(6)?
            .map(|s| StreamId::parse(&s).map_err(corrupt))
            .transpose()?,
        quantity: u32::try_from(r.try_get::<i64, _>(7)?).map_err(corrupt)?,
        unit_price: Money {
            amount: r.try_get(8)?,
            currency,
        },
        total: Money {
            amount: r.try_get(9)?,
            currency,
        },
        failure: r.try_get(11)?,
        payment_id: r.try_get(12)?,
        card_last4: r.try_get(13)?,
        reserved_until: r.try_get(14)?,
        created_at: r.try_get(15)?,
        updated_at: r.try_get(16)?,
        presentment: r
            .try_get::<Option<String>, _>(17)?
            .map(|json| serde_json::from_str(&json).map_err(corrupt))
            .transpose()?,
        source: {
            let source: String = r.try_get(18)?;
            OrderSource::parse(&source).ok_or_else(|| corrupt(source))?
        },
        media_ms: r
            .try_get::<Option<i64>, _>(19)?
            .map(|ms| u64::try_from(ms).map_err(corrupt))
            .transpose()?,
        shipment: match (
            r.try_get::<Option<String>, _>(20)?,
            r.try_get::<Option<String>, _>(21)?,
        ) {
            (Some(carrier), Some(tracking_number)) => Some(Shipment {
                carrier,
                tracking_number,
            }),
            _ => None,
        },
        shipped_at: r.try_get(22)?,
        delivered_at: r.try_get(23)?,
        payment_action: r.try_get(24)?,
    })
}

pub(crate) fn reject(kind: RejectKind, detail: impl Into<String>) -> Rejection {
    Rejection::new(kind, detail)
}
