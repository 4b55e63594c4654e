//! Vocabulary shared by every Vitrine role.
//!
//! **Contract:** this crate holds types and narrow traits only (plus the in-process bus). It
//! performs no network or disk I/O of its own and knows nothing about WebRTC, SQL or the chat
//! protocol, so every other crate may depend on it without dragging a role along.

pub mod bus;
pub mod client_ip;
pub mod commerce;
pub mod directory;
pub mod ids;
pub mod migrations;
pub mod money;
pub mod problem;
pub mod region;
pub mod schema;
pub mod secret;
pub mod time;
pub mod write_gate;

pub use bus::{Bus, BusError, EventId, LoggedEvent, MemoryBus};
pub use client_ip::{ClientIp, TrustedProxies, client_ip};
pub use commerce::{
    AuctionMoment, AuctionView, BidFailure, BidOutcome, BidRequest, BuyFailure, BuyOutcome,
    BuyRequest, CommerceError, CommerceEvent, CommerceEvents, Identities, Identity, OrderSummary,
    PinnedProduct, Purchases,
};
pub use directory::{DirectoryError, StreamDirectory, StreamRecord, StreamState};
pub use ids::{
    ApiKeyId, AppId, AuctionId, BuyerId, GrantId, IdError, OperatorId, OrderId, PinId, ProductId,
    SellerId, SessionId, StreamId,
};
pub use money::{Currency, Money, MoneyError};
pub use problem::Problem;
pub use region::{Region, RegionError};
pub use secret::{Secret, SecretHash, constant_time_eq};
pub use time::{Timestamp, TimestampError};
