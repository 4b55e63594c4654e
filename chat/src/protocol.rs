//! The chat wire protocol, version 1 (docs/chat-protocol.md): JSON text frames with a `type`
//! field. Decoding is bounded and total: any input gives a message or a typed error, never a
//! panic.

use serde::{Deserialize, Serialize};
use vitrine_core::{
    AuctionId, AuctionView, EventId, Money, OrderSummary, PinnedProduct, ProductId,
};

pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame accepted; a larger one closes the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 8 * 1024;
/// Longest chat line, in characters.
pub const MAX_CHAT_CHARS: usize = 500;
/// Longest client request id.
pub const MAX_REQUEST_ID_CHARS: usize = 64;
/// Reactions a client may send.
pub const REACTIONS: &[&str] = &["❤️", "🔥", "👏", "😂", "😮", "🛍️"];

/// Close codes. Every close the server sends carries one of these and a reason: its own codes
/// are 4000-4999 (RFC 6455 §7.4.2), so that a client never confuses them with what a browser or
/// a proxy reports; the one exception is 1009, the standard answer to a frame too big.
pub mod close {
    /// A frame larger than [`super::MAX_FRAME_BYTES`] (or than the transport reads at all).
    pub const TOO_BIG: u16 = 1009;
    /// No `hello` first, or none within the hello timeout.
    pub const HELLO_REQUIRED: u16 = 4001;
    /// Invalid token, or banned from the room.
    pub const FORBIDDEN: u16 = 4003;
    /// The client did not read fast enough: it fell a member queue behind the room.
    pub const TOO_SLOW: u16 = 4008;
    /// The client stopped reading: a write to it stalled past the write timeout.
    pub const WRITE_TIMEOUT: u16 = 4009;
    /// The member's role in the room changed (made or no longer a moderator): join again.
    pub const ROLE_CHANGED: u16 = 4010;
    /// Too many protocol errors (malformed JSON, unknown types, invalid websocket frames).
    pub const PROTOCOL_ERRORS: u16 = 4400;
    /// The connection sent nothing, not even a pong, for the idle timeout.
    pub const IDLE: u16 = 4408;
    /// Far more frames than the rate limit allows.
    pub const FLOODING: u16 = 4429;
    /// The room or the identity service failed; reconnect with back-off.
    pub const UNAVAILABLE: u16 = 4500;
    /// The server is shutting down; reconnect (another server may answer) with `resume_from`.
    pub const SHUTTING_DOWN: u16 = 4503;

    /// Every code above, for the tests and the documentation.
    pub const ALL: &[u16] = &[
        TOO_BIG,
        HELLO_REQUIRED,
        FORBIDDEN,
        TOO_SLOW,
        WRITE_TIMEOUT,
        ROLE_CHANGED,
        PROTOCOL_ERRORS,
        IDLE,
        FLOODING,
        UNAVAILABLE,
        SHUTTING_DOWN,
    ];
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Hello {
        /// A buyer session token or the seller's API token; none to watch read-only.
        #[serde(default)]
        token: Option<String>,
        /// The last event id seen, to receive what was missed.
        #[serde(default)]
        resume_from: Option<String>,
        #[serde(default)]
        protocol: Option<u32>,
    },
    Chat {
        text: String,
    },
    Buy {
        request_id: String,
        product_id: ProductId,
        #[serde(default = "one")]
        quantity: u32,
        card_number: vitrine_core::commerce::TypedCard,
        /// The buyer's currency: the order is priced and charged in it, at the rate locked
        /// when it is placed. Absent: the product's own currency.
        #[serde(default)]
        currency: Option<vitrine_core::Currency>,
    },
    /// A bid in the room's live auction (buyers only).
    Bid {
        request_id: String,
        auction_id: AuctionId,
        /// In the auction's currency, minor units.
        amount: Money,
    },
    React {
        emoji: String,
    },
    /// Seller and moderators only.
    Moderate {
        action: ModerationAction,
        #[serde(default)]
        message_id: Option<String>,
        #[serde(default)]
        member_id: Option<String>,
        #[serde(default)]
        seconds: Option<u32>,
    },
    Ping,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    Delete,
    Ban,
    Unban,
    SlowMode,
    /// Seller only: makes a buyer a moderator.
    AddModerator,
    /// Seller only: a moderator is a buyer again.
    RemoveModerator,
}

impl ModerationAction {
    /// The wire name (`ban`, `slow_mode`, ...), which is also how the moderation log stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Ban => "ban",
            Self::Unban => "unban",
            Self::SlowMode => "slow_mode",
            Self::AddModerator => "add_moderator",
            Self::RemoveModerator => "remove_moderator",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Delete,
            Self::Ban,
            Self::Unban,
            Self::SlowMode,
            Self::AddModerator,
            Self::RemoveModerator,
        ]
        .into_iter()
        .find(|a| a.as_str() == raw)
    }

    /// Whether it acts on a member (and so needs `member_id`).
    pub fn targets_member(self) -> bool {
        matches!(
            self,
            Self::Ban | Self::Unban | Self::AddModerator | Self::RemoveModerator
        )
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is larger than {MAX_FRAME_BYTES} bytes")]
    TooBig,
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("invalid {0} message: {1}")]
    InvalidMessage(String, String),
}

impl DecodeError {
    /// The `code` of the `error` event that reports it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooBig => "too_big",
            Self::InvalidJson(_) => "invalid_json",
            Self::UnknownType(_) => "unknown_type",
            Self::InvalidMessage(..) => "invalid_message",
        }
    }
}

const CLIENT_TYPES: &[&str] = &["hello", "chat", "buy", "bid", "react", "moderate", "ping"];

/// Decodes one text frame.
pub fn decode(frame: &str) -> Result<ClientMessage, DecodeError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooBig);
    }
    let value: serde_json::Value =
        serde_json::from_str(frame).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    let kind = match value.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => return Err(DecodeError::UnknownType(String::new())),
    };
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        return Err(DecodeError::UnknownType(kind.chars().take(32).collect()));
    }
    serde_json::from_value(value).map_err(|e| DecodeError::InvalidMessage(kind, e.to_string()))
}

/// Who said or did something, as the room sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub member_id: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Seller,
    Moderator,
    Buyer,
    Viewer,
}

impl Role {
    /// The wire name, which is also how the moderation log stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seller => "seller",
            Self::Moderator => "moderator",
            Self::Buyer => "buyer",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Seller, Self::Moderator, Self::Buyer, Self::Viewer]
            .into_iter()
            .find(|r| r.as_str() == raw)
    }
}

/// Events kept in the room's log (every member sees the same ones, in the same order). The
/// wire form adds the log's `id` as the first field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEvent {
    Chat {
        from: Author,
        text: String,
        ts: i64,
    },
    Reaction {
        emoji: String,
    },
    Pin {
        pin: Option<PinnedProduct>,
    },
    Stock {
        product_id: ProductId,
        available: i64,
    },
    /// Someone bought through the stream (anonymised); orders paid together are one event,
    /// `quantity` their units and `orders` how many they are.
    Purchase {
        product_id: ProductId,
        quantity: u32,
        #[serde(default = "one")]
        orders: u32,
        available: i64,
    },
    Moderation {
        action: ModerationAction,
        #[serde(skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        member_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seconds: Option<u32>,
    },
    /// An order changed: seen by its buyer and by the seller.
    Order {
        order: OrderSummary,
    },
    /// The seller started an auction of the pinned product.
    AuctionStarted {
        auction: Box<AuctionView>,
    },
    /// A bid took the lead (the clock may have moved: `ends_at`).
    AuctionBid {
        auction: Box<AuctionView>,
    },
    /// The hammer fell: the winner and their order, or none.
    AuctionEnded {
        auction: Box<AuctionView>,
    },
    /// A live caption of what the seller says. `partial` ones are replaced by the next caption
    /// of the same `utterance`; a `final` one settles it. One per language (translations of a
    /// final come as finals in their language). Times are milliseconds since the stream's
    /// captions started. Live only: not in a welcome's history.
    Caption {
        utterance: u64,
        kind: CaptionKind,
        lang: String,
        start_ms: u64,
        end_ms: u64,
        text: String,
        /// When the captioning node received the first and the last word's audio (Unix time,
        /// milliseconds): what a node packaging the stream's HLS places the cue by.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wall_start_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wall_end_ms: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptionKind {
    Partial,
    Final,
}

impl RoomEvent {
    /// Whether a welcome's history shows it (reactions and stock ticks are live only).
    pub fn in_history(payload: &str) -> bool {
        payload.starts_with(r#"{"type":"chat""#)
            || payload.starts_with(r#"{"type":"purchase""#)
            || payload.starts_with(r#"{"type":"moderation""#)
            || payload.starts_with(r#"{"type":"order""#)
            || payload.starts_with(r#"{"type":"auction_started""#)
            || payload.starts_with(r#"{"type":"auction_ended""#)
    }
}

/// The member as the server identified them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct You {
    pub member_id: String,
    pub name: String,
    pub role: Role,
}

/// Replies to one client, never logged.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply<'a> {
    Welcome {
        protocol: u32,
        you: &'a You,
        /// Log events, oldest first, already in wire form (copied, not re-encoded).
        history: Vec<Box<serde_json::value::RawValue>>,
        /// True when `resume_from` was older than the log: some events are gone for good.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        gap: bool,
        resumed: bool,
        pin: Option<PinnedProduct>,
        /// The room's open auction, as it stands.
        #[serde(skip_serializing_if = "Option::is_none")]
        auction: Option<AuctionView>,
        slow_mode_seconds: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_event_id: Option<EventId>,
    },
    #[serde(rename = "order.confirmed")]
    OrderConfirmed {
        request_id: &'a str,
        order: OrderSummary,
    },
    #[serde(rename = "order.failed")]
    OrderFailed {
        request_id: &'a str,
        reason: &'static str,
        detail: &'a str,
    },
    #[serde(rename = "bid.accepted")]
    BidAccepted {
        request_id: &'a str,
        auction: &'a AuctionView,
    },
    #[serde(rename = "bid.refused")]
    BidRefused {
        request_id: &'a str,
        reason: &'static str,
        detail: &'a str,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Pong,
}

impl Reply<'_> {
    pub fn to_text(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys, no foreign types.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal"}"#.into())
    }
}

/// The wire form of a logged event: `{"id":"…",` followed by the payload after its `{`.
pub fn with_id(id: EventId, payload: &str) -> String {
    let body = payload.strip_prefix('{').unwrap_or(payload);
    let mut out = String::with_capacity(payload.len() + 32);
    out.push_str("{\"id\":\"");
    out.push_str(&id.to_string());
    out.push_str("\",");
    out.push_str(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_client_message() {
        assert_eq!(
            decode(r#"{"type":"hello","token":"bt_x"}"#).unwrap(),
            ClientMessage::Hello {
                token: Some("bt_x".into()),
                resume_from: None,
                protocol: None
            }
        );
        assert!(matches!(
            decode(r#"{"type":"buy","request_id":"r1","product_id":"pr_1","card_number":"4242"}"#),
            Ok(ClientMessage::Buy { quantity: 1, .. })
        ));
        assert_eq!(decode(r#"{"type":"ping"}"#).unwrap(), ClientMessage::Ping);
    }

    /// A buy frame may reach a log through its `Debug` (a tracing field, a test failure): the
    /// card number shows only its last four digits.
    #[test]
    fn a_buy_frame_prints_only_the_cards_last_four() {
        let frame = decode(
            r#"{"type":"buy","request_id":"r1","product_id":"pr_1","card_number":"4242 4242 4242 4242"}"#,
        )
        .unwrap();
        let printed = format!("{frame:?}");
        assert!(!printed.contains("4242 4242"), "{printed}");
        assert!(printed.contains("****4242"), "{printed}");
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert_eq!(decode("{").unwrap_err().code(), "invalid_json");
        assert_eq!(
            decode(r#"{"type":"dance"}"#).unwrap_err().code(),
            "unknown_type"
        );
        assert_eq!(
            decode(r#"{"text":"hi"}"#).unwrap_err().code(),
            "unknown_type"
        );
        assert_eq!(
            decode(r#"{"type":"chat"}"#).unwrap_err().code(),
            "invalid_message"
        );
        assert_eq!(
            decode(r#"{"type":"chat","text":"x","admin":true}"#)
                .unwrap_err()
                .code(),
            "invalid_message"
        );
        let big = format!(
            r#"{{"type":"chat","text":"{}"}}"#,
            "a".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(decode(&big).unwrap_err(), DecodeError::TooBig);
    }

    #[test]
    fn every_close_code_is_ours_except_too_big() {
        for &code in close::ALL {
            assert!(
                (4000..=4999).contains(&code) || code == close::TOO_BIG,
                "close code {code} outside 4000-4999"
            );
        }
    }

    #[test]
    fn moderation_actions_have_one_name_on_the_wire_and_in_the_log() {
        for name in [
            "delete",
            "ban",
            "unban",
            "slow_mode",
            "add_moderator",
            "remove_moderator",
        ] {
            let action = ModerationAction::parse(name).unwrap();
            assert_eq!(action.as_str(), name);
            assert_eq!(serde_json::to_value(action).unwrap(), name);
        }
        assert_eq!(ModerationAction::parse("kick"), None);
    }

    #[test]
    fn logged_events_get_their_id_first() {
        let payload = serde_json::to_string(&RoomEvent::Reaction {
            emoji: "🔥".into()
        })
        .unwrap();
        assert!(RoomEvent::in_history(r#"{"type":"chat","x":1}"#));
        assert!(!RoomEvent::in_history(&payload));
        let wire = with_id(EventId { hi: 7, lo: 1 }, &payload);
        let v: serde_json::Value = serde_json::from_str(&wire).unwrap();
        assert_eq!(v["id"], "7-1");
        assert_eq!(v["type"], "reaction");
    }
}
