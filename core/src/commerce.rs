//! The contract between the chat and checkout roles, which never import each other: chat asks
//! checkout to buy through [`Purchases`] and to identify members through [`Identities`];
//! checkout's stream of commerce facts tells the rooms what changed through [`CommerceEvents`]. The
//! binary wires both ends.

use crate::{AuctionId, BuyerId, Money, OrderId, PinId, ProductId, SellerId, StreamId};
use serde::{Deserialize, Serialize};

/// The product a stream has pinned, as every member of the room sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PinnedProduct {
    pub pin_id: PinId,
    pub product_id: ProductId,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The catalog price.
    pub price: Money,
    /// The flash-sale price, when the pin is a sale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_price: Option<Money>,
    /// Units a buyer can still get through this pin: the product's stock, capped by what is left
    /// of the pin's quantity cap.
    #[schema(minimum = 0)]
    pub available: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_buyer_limit: Option<u32>,
    /// Unix milliseconds when the sale ends (the countdown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<i64>,
    /// The same instant as `ends_at`, in RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at_iso: Option<crate::Timestamp>,
}

/// An order as its buyer and seller see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub id: OrderId,
    pub status: String,
    pub product_id: ProductId,
    pub quantity: u32,
    pub total: Money,
    /// What the buyer's card was charged, when the order was priced in the buyer's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<StreamId>,
    pub created_at: i64,
}

/// A purchase asked for in a chat room. `Debug` masks the card number to its last four digits.
#[derive(Clone)]
pub struct BuyRequest {
    pub buyer: BuyerId,
    pub stream: StreamId,
    pub product: ProductId,
    pub quantity: u32,
    /// The client's request id: the idempotency key of the order.
    pub request_id: String,
    pub card_number: String,
    /// The buyer's currency, when it is not the product's.
    pub currency: Option<crate::Currency>,
    /// The buyer's connection's address as the server resolved it (behind a trusted proxy, the
    /// one it forwarded), for the limits that hold per address; `None` where there is none.
    pub client: Option<crate::ClientIp>,
}

impl std::fmt::Debug for BuyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuyRequest")
            .field("buyer", &self.buyer)
            .field("stream", &self.stream)
            .field("product", &self.product)
            .field("quantity", &self.quantity)
            .field("request_id", &self.request_id)
            .field("card_number", &masked_card(&self.card_number))
            .field("currency", &self.currency)
            .field("client", &self.client)
            .finish()
    }
}

/// A card number as `****1234` (its last four digits), or `****` when it has too few digits
/// to be a card: what logs and `Debug` show of one, never more.
pub fn masked_card(raw: &str) -> String {
    let digits: Vec<char> = raw.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        n if n >= 8 => format!("****{}", digits[n - 4..].iter().collect::<String>()),
        _ => "****".to_owned(),
    }
}

/// A card number as a buyer typed it, on the wire (the chat's buy frame): the same JSON string,
/// but its `Debug` is [`masked_card`], so a frame that reaches a log carries no card number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TypedCard(pub String);

impl std::fmt::Debug for TypedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&masked_card(&self.0))
    }
}

/// Why a purchase did not go through; the wire names are the chat protocol's `reason`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuyFailure {
    SoldOut,
    PaymentDeclined,
    LimitExceeded,
    SaleEnded,
    /// The card processor did not answer in time; nothing was charged.
    PaymentTimeout,
    /// The product is not the one pinned to this stream.
    NotPinned,
    /// The request was malformed (quantity, card number, reused request id with another body).
    Invalid,
    /// Checkout could not be reached; the buyer may retry with the same request id.
    Unavailable,
}

impl BuyFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::PaymentDeclined => "payment_declined",
            Self::LimitExceeded => "limit_exceeded",
            Self::SaleEnded => "sale_ended",
            Self::PaymentTimeout => "payment_timeout",
            Self::NotPinned => "not_pinned",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The answer to one [`BuyRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyOutcome {
    Confirmed(OrderSummary),
    Failed { reason: BuyFailure, detail: String },
}

/// A live auction as every member of the room sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuctionView {
    pub id: AuctionId,
    pub stream_id: StreamId,
    pub product_id: ProductId,
    /// `open` until the hammer, then `ended`.
    pub status: String,
    pub start_price: Money,
    pub min_increment: Money,
    /// The highest bid so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_bid: Option<Money>,
    /// The least the next bid may be: the start price, then the highest bid plus the increment.
    pub next_min_bid: Money,
    /// The highest bidder's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bidder: Option<String>,
    pub bid_count: u32,
    /// Unix milliseconds when the auction closes (late bids move it, unless sudden death).
    pub ends_at: i64,
    pub ends_at_iso: crate::Timestamp,
    /// Seconds a bid in the last `extend_secs` adds back to the clock.
    pub extend_secs: u32,
    pub sudden_death: bool,
    /// Once ended: the winner's order, at the hammer price (none when nobody bid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
}

/// Which moment of an auction a room event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuctionMoment {
    Started,
    Bid,
    Ended,
}

/// A bid asked for in a chat room or through the API. Idempotent on (buyer, request id).
#[derive(Debug, Clone)]
pub struct BidRequest {
    pub buyer: BuyerId,
    /// How the room shows the bidder (their display name).
    pub bidder_name: String,
    pub auction: AuctionId,
    /// In the room's chat: the room's stream (a bid for another stream's auction is refused).
    pub stream: Option<StreamId>,
    pub amount: Money,
    pub request_id: String,
}

/// Why a bid was not taken; the wire names are the chat protocol's `reason`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BidFailure {
    /// Less than the start price, or than the highest bid plus the increment.
    TooLow,
    /// The hammer has fallen (or the clock ran out and it is falling).
    AuctionEnded,
    /// The bidder already holds the highest bid.
    AlreadyHighest,
    /// No such auction (in this room).
    NotFound,
    /// Malformed: currency other than the auction's, request id reused with another amount.
    Invalid,
    /// Too many bids from this buyer; slow down.
    RateLimited,
    /// Checkout could not be reached; retry with the same request id.
    Unavailable,
}

impl BidFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLow => "too_low",
            Self::AuctionEnded => "auction_ended",
            Self::AlreadyHighest => "already_highest",
            Self::NotFound => "not_found",
            Self::Invalid => "invalid",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::TooLow,
            Self::AuctionEnded,
            Self::AlreadyHighest,
            Self::NotFound,
            Self::Invalid,
            Self::RateLimited,
            Self::Unavailable,
        ]
        .into_iter()
        .find(|f| f.as_str() == raw)
    }
}

/// The answer to one [`BidRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BidOutcome {
    /// The bid leads; the auction as it stands after it.
    Accepted(Box<AuctionView>),
    Refused {
        reason: BidFailure,
        detail: String,
    },
}

/// Checkout as the chat sees it.
#[async_trait::async_trait]
pub trait Purchases: Send + Sync + 'static {
    /// Buys through the stream's current pin. Idempotent on (buyer, request id).
    async fn buy(&self, request: BuyRequest) -> BuyOutcome;
    /// The stream's current pin with live availability, if any.
    async fn pinned(&self, stream: &StreamId) -> Result<Option<PinnedProduct>, CommerceError>;
    /// Bids in a live auction. Idempotent on (buyer, request id).
    async fn bid(&self, request: BidRequest) -> BidOutcome;
    /// The stream's open auction, if any (what a member joining mid-auction sees).
    async fn auction(&self, stream: &StreamId) -> Result<Option<AuctionView>, CommerceError>;
}

/// Who presented a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Buyer { id: BuyerId, display_name: String },
    Seller { id: SellerId, name: String },
}

/// Token resolution for the chat (buyer session tokens and seller API tokens), on behalf of
/// the member connecting from `caller` (a token kept in another region is asked of its home,
/// which counts the question against the caller's address).
#[async_trait::async_trait]
pub trait Identities: Send + Sync + 'static {
    async fn identify(
        &self,
        token: &str,
        caller: crate::ClientIp,
    ) -> Result<Option<Identity>, CommerceError>;
}

/// What checkout announces to the rooms. Each is written with the transaction whose change it
/// reports (checkout's stream of commerce facts) and delivered after that transaction commits,
/// in commit order; delivery to the screens is best effort, the database is the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommerceEvent {
    /// The stream's pin changed (`None`: unpinned).
    Pin {
        stream: StreamId,
        pin: Option<PinnedProduct>,
    },
    /// Availability of a pinned product changed.
    Stock {
        stream: StreamId,
        product: ProductId,
        available: i64,
    },
    /// Someone bought through the stream: announced to the room without saying who. Orders
    /// paid together (one settlement batch) are announced once: `quantity` is their units,
    /// `orders` how many they are.
    Purchase {
        stream: StreamId,
        product: ProductId,
        quantity: u32,
        orders: u32,
        available: i64,
    },
    /// An order changed; shown to its buyer and to the seller.
    Order {
        stream: Option<StreamId>,
        seller: SellerId,
        buyer: BuyerId,
        order: OrderSummary,
    },
    /// A live auction started, took a bid or ended.
    Auction {
        stream: StreamId,
        moment: AuctionMoment,
        auction: Box<AuctionView>,
    },
}

/// Where checkout sends [`CommerceEvent`]s.
pub trait CommerceEvents: Send + Sync + 'static {
    fn emit(&self, event: CommerceEvent);
}

#[derive(Debug, thiserror::Error)]
pub enum CommerceError {
    #[error("checkout unavailable: {0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buy_request_prints_only_the_cards_last_four() {
        let request = BuyRequest {
            buyer: BuyerId::generate(),
            stream: StreamId::generate(),
            product: ProductId::generate(),
            quantity: 1,
            request_id: "r1".into(),
            card_number: "4242 4242 4242 4242".into(),
            currency: None,
            client: None,
        };
        let printed = format!("{request:?}");
        assert!(
            printed.contains("****4242") && !printed.contains("4242 4242"),
            "{printed}"
        );
    }
}
