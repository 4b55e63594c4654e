//! Live auctions of a stream's pinned product. The seller starts one with a start price, a
//! minimum increment and a duration; buyers bid in the room's chat or through the API; a bid
//! that lands in the last `extend_secs` puts the clock back to `extend_secs` (unless the auction
//! is "sudden death"); at the hammer the highest bidder's order is created at the hammer price,
//! pending their payment, with the same reservation window as any order.
//!
//! - **Start** ([`Sale::start_auction`], one transaction): the product must be the stream's
//!   pinned one; one unit leaves stock for the auction (given back when nobody bids), so the
//!   hammer can always sell it; at most one open auction per stream (a unique index).
//! - **Bid** ([`bid`], [`bid_batch`]): an auction's bids are written in batches (group commit),
//!   one transaction each: the keys claimed, the auction's row locked and read once, each bid
//!   taken in arrival order only if the auction is open, its clock has not run out, the bid is
//!   at least the next minimum and the bidder is not already the highest, then the row written
//!   once. Of two equal bids, exactly one leads. A refused bid stores why with its key.
//! - **Hammer** ([`close`], one transaction per auction): the auction is closed with a
//!   conditional UPDATE once its clock has run out (whichever node gets there first), and the
//!   winner's order and its idempotency key are written with it. The winner pays with
//!   [`Sale::pay_order`]; an order left unpaid expires with its reservation (the reaper).
//!
//! What this module must never do: accept a bid after the clock ran out (the UPDATE compares
//! against the clock, not against whether the hammer has been written yet), let two bids lead
//! at the same amount, or sell the auctioned unit twice.

mod bid;
mod bid_batch;
mod close;

pub(crate) use bid_batch::BidAnswer;

pub use close::spawn_auction_closer;
pub(crate) use close::winner_key;

use crate::db::sql;
use crate::error::{CheckoutError, corrupt};
use crate::sale::Sale;
use crate::webhooks::EventType;
use crate::webhooks::outbox::{self, Hook};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use vitrine_core::{
    AuctionId, AuctionMoment, AuctionView, BuyerId, CommerceEvent, Currency, Money, OrderId,
    ProductId, SellerId, StreamId, Timestamp,
};

/// Shortest and longest auction.
pub const MIN_DURATION_SECS: u32 = 5;
pub const MAX_DURATION_SECS: u32 = 24 * 3600;
/// Most seconds a late bid puts back on the clock.
pub const MAX_EXTEND_SECS: u32 = 300;
/// How long an auction runs before its first bid extends it, by default.
const DEFAULT_EXTEND_SECS: u32 = 10;

fn default_extend() -> u32 {
    DEFAULT_EXTEND_SECS
}

/// What the seller asks for when starting an auction.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAuction {
    /// The stream's pinned product.
    pub product_id: ProductId,
    /// In the product's currency; the first bid must reach it.
    pub start_price: Money,
    /// What each bid must add to the highest one (at least 1 minor unit).
    pub min_increment: Money,
    #[schema(minimum = 5, maximum = 86400)]
    pub duration_secs: u32,
    /// A bid in the last `extend_secs` puts the clock back to `extend_secs` (default 10).
    #[serde(default = "default_extend")]
    #[schema(minimum = 0, maximum = 300)]
    pub extend_secs: u32,
    /// No extensions: the clock ends when it ends.
    #[serde(default)]
    pub sudden_death: bool,
}

impl NewAuction {
    /// Checks the request against the product's currency (no IO).
    fn check(&self, currency: Currency) -> Result<(), CheckoutError> {
        let invalid = |why: String| Err(CheckoutError::Invalid(why));
        if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&self.duration_secs) {
            return invalid(format!(
                "duration_secs must be {MIN_DURATION_SECS} to {MAX_DURATION_SECS}"
            ));
        }
        if self.extend_secs > MAX_EXTEND_SECS {
            return invalid(format!("extend_secs must be 0 to {MAX_EXTEND_SECS}"));
        }
        for (name, price) in [
            ("start_price", self.start_price),
            ("min_increment", self.min_increment),
        ] {
            if price.currency != currency {
                return invalid(format!(
                    "{name} must be in the product's currency, {}",
                    currency.as_str()
                ));
            }
            price
                .validated()
                .map_err(|e| CheckoutError::Invalid(format!("{name}: {e}")))?;
        }
        if self.min_increment.amount < 1 {
            return invalid("min_increment must be at least 1 minor unit".into());
        }
        Ok(())
    }
}

/// An auction as stored: the one type its rows map to; [`AuctionView`] is what rooms and the
/// API show, [`AuctionMessage`] what webhooks carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuctionRow {
    pub id: AuctionId,
    pub seller_id: SellerId,
    pub stream_id: StreamId,
    pub product_id: ProductId,
    pub currency: Currency,
    pub start: i64,
    pub increment: i64,
    pub current: Option<i64>,
    pub bidder_id: Option<BuyerId>,
    pub bidder_name: Option<String>,
    pub bid_count: u32,
    pub ends_at: i64,
    pub extend_ms: i64,
    pub sudden_death: bool,
    pub open: bool,
    pub order_id: Option<OrderId>,
}

pub(crate) const AUCTION_COLUMNS: &str = "id, seller_id, stream_id, product_id, currency, \
     start_amount, increment_amount, current_amount, bidder_id, bidder_name, bid_count, ends_at, \
     extend_ms, sudden_death, status, order_id";

pub(crate) fn auction_from_row(r: &AnyRow) -> Result<AuctionRow, CheckoutError> {
    let text = |i: usize| -> Result<String, CheckoutError> { Ok(r.try_get::<String, _>(i)?) };
    let status = text(14)?;
    Ok(AuctionRow {
        id: AuctionId::parse(&text(0)?).map_err(corrupt)?,
        seller_id: SellerId::parse(&text(1)?).map_err(corrupt)?,
        stream_id: StreamId::parse(&text(2)?).map_err(corrupt)?,
        product_id: ProductId::parse(&text(3)?).map_err(corrupt)?,
        currency: Currency::parse(&text(4)?).map_err(corrupt)?,
        start: r.try_get(5)?,
        increment: r.try_get(6)?,
        current: r.try_get(7)?,
        bidder_id: r
            .try_get::<Option<String>, _>(8)?
            .map(|s| BuyerId::parse(&s).map_err(corrupt))
            .transpose()?,
        bidder_name: r.try_get(9)?,
        bid_count: u32::try_from(r.try_get::<i64, _>(10)?).map_err(corrupt)?,
        ends_at: r.try_get(11)?,
        extend_ms: r.try_get(12)?,
        sudden_death: r.try_get::<i64, _>(13)? == 1,
        open: match status.as_str() {
            "open" => true,
            "ended" => false,
            _ => return Err(corrupt(status)),
        },
        order_id: r
            .try_get::<Option<String>, _>(15)?
            .map(|s| OrderId::parse(&s).map_err(corrupt))
            .transpose()?,
    })
}

impl AuctionRow {
    /// The least the next bid may be.
    pub fn next_min(&self) -> i64 {
        self.current
            .map_or(self.start, |c| c.saturating_add(self.increment))
    }

    fn money(&self, amount: i64) -> Money {
        Money {
            amount,
            currency: self.currency,
        }
    }

    pub fn view(&self) -> AuctionView {
        AuctionView {
            id: self.id.clone(),
            stream_id: self.stream_id.clone(),
            product_id: self.product_id.clone(),
            status: if self.open { "open" } else { "ended" }.to_owned(),
            start_price: self.money(self.start),
            min_increment: self.money(self.increment),
            current_bid: self.current.map(|c| self.money(c)),
            next_min_bid: self.money(self.next_min()),
            bidder: self.bidder_name.clone(),
            bid_count: self.bid_count,
            ends_at: self.ends_at,
            ends_at_iso: Timestamp(self.ends_at.clamp(0, Timestamp::MAX_MILLIS)),
            extend_secs: u32::try_from(self.extend_ms / 1000).unwrap_or(u32::MAX),
            sudden_death: self.sudden_death,
            order_id: self.order_id.clone(),
        }
    }

    /// The room's news of this moment of the auction.
    pub(crate) fn fact(&self, moment: AuctionMoment) -> CommerceEvent {
        CommerceEvent::Auction {
            stream: self.stream_id.clone(),
            moment,
            auction: Box::new(self.view()),
        }
    }

    /// What a seller's webhook endpoint receives.
    fn message(&self) -> AuctionMessage {
        AuctionMessage {
            auction: self.view(),
            bidder_id: self.bidder_id.clone(),
        }
    }
}

/// The payload of the `auction.*` webhooks: the auction as the room sees it, and who holds the
/// highest bid (the winner, in `auction.ended`).
#[derive(Debug, Serialize)]
struct AuctionMessage {
    #[serde(flatten)]
    auction: AuctionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    bidder_id: Option<BuyerId>,
}

impl Sale {
    /// Starts an auction of `stream`'s pinned product (the caller checked the stream is the
    /// seller's).
    #[tracing::instrument(skip_all, fields(seller = %seller, stream = %stream))]
    pub async fn start_auction(
        &self,
        seller: &SellerId,
        stream: &StreamId,
        new: NewAuction,
    ) -> Result<AuctionView, CheckoutError> {
        let product = self.catalog.product(seller, &new.product_id).await?;
        new.check(product.price.currency)?;
        let now = self.orders().now();
        let row = AuctionRow {
            // Tagged with this region, as orders are: other regions send its bids here.
            id: AuctionId::generate_in(self.orders().config.home.as_ref()),
            seller_id: seller.clone(),
            stream_id: stream.clone(),
            product_id: product.id.clone(),
            currency: product.price.currency,
            start: new.start_price.amount,
            increment: new.min_increment.amount,
            current: None,
            bidder_id: None,
            bidder_name: None,
            bid_count: 0,
            ends_at: now + i64::from(new.duration_secs) * 1000,
            extend_ms: i64::from(new.extend_secs) * 1000,
            sudden_death: new.sudden_death,
            open: true,
            order_id: None,
        };
        let turn = self.orders().write_gate.enter().await;
        let mut tx = self.orders().pool.begin().await?;
        let pinned = sqlx::query(
            "SELECT 1 FROM pins WHERE stream_id = $1 AND product_id = $2 AND active = 1",
        )
        .bind(stream.as_str())
        .bind(product.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if pinned.is_none() {
            return Err(CheckoutError::Conflict(
                "the product is not pinned to this stream: pin it first".into(),
            ));
        }
        let open = sqlx::query("SELECT id FROM auctions WHERE stream_id = $1 AND status = 'open'")
            .bind(stream.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if open.is_some() {
            return Err(already_open());
        }
        let took = sqlx::query(
            "UPDATE products SET stock = stock - 1, updated_at = $1 \
             WHERE id = $2 AND stock >= 1 AND archived = 0",
        )
        .bind(now)
        .bind(product.id.as_str())
        .execute(&mut *tx)
        .await?;
        if took.rows_affected() == 0 {
            return Err(CheckoutError::Conflict(
                "sold out: no unit left to auction".into(),
            ));
        }
        insert(&mut tx, &row, now).await?;
        let hooks = [Hook::new(
            seller,
            EventType::AuctionStarted,
            &row.message(),
        )?];
        let mut facts = vec![row.fact(AuctionMoment::Started)];
        facts.extend(crate::pins::stock_facts(&mut tx, &row.product_id).await?);
        self.orders().facts.commit(tx, facts, &hooks, now).await?;
        drop(turn);
        Ok(row.view())
    }

    /// An auction by id, as anyone sees it.
    pub async fn auction(&self, id: &AuctionId) -> Result<AuctionView, CheckoutError> {
        self.auction_row(id)
            .await?
            .map(|row| row.view())
            .ok_or(CheckoutError::NotFound("no such auction"))
    }

    /// The stream's open auction, if any.
    pub async fn open_auction(
        &self,
        stream: &StreamId,
    ) -> Result<Option<AuctionView>, CheckoutError> {
        let row = sqlx::query(sql(format!(
            "SELECT {AUCTION_COLUMNS} FROM auctions WHERE stream_id = $1 AND status = 'open'"
        )))
        .bind(stream.as_str())
        .fetch_optional(&self.orders().pool)
        .await?;
        Ok(row
            .as_ref()
            .map(auction_from_row)
            .transpose()?
            .map(|a| a.view()))
    }

    pub(crate) async fn auction_row(
        &self,
        id: &AuctionId,
    ) -> Result<Option<AuctionRow>, CheckoutError> {
        let row = sqlx::query(sql(format!(
            "SELECT {AUCTION_COLUMNS} FROM auctions WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.orders().pool)
        .await?;
        row.as_ref().map(auction_from_row).transpose()
    }
}

fn already_open() -> CheckoutError {
    CheckoutError::Conflict("the stream already has an open auction".into())
}

/// Writes a new auction; a concurrent start on the same stream loses to the unique index.
async fn insert(tx: &mut outbox::Tx<'_>, row: &AuctionRow, now: i64) -> Result<(), CheckoutError> {
    let inserted = sqlx::query(
        "INSERT INTO auctions (id, seller_id, stream_id, product_id, currency, start_amount, \
         increment_amount, bid_count, ends_at, extend_ms, sudden_death, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, 'open', $11)",
    )
    .bind(row.id.as_str())
    .bind(row.seller_id.as_str())
    .bind(row.stream_id.as_str())
    .bind(row.product_id.as_str())
    .bind(row.currency.as_str())
    .bind(row.start)
    .bind(row.increment)
    .bind(row.ends_at)
    .bind(row.extend_ms)
    .bind(i64::from(row.sudden_death))
    .bind(now)
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(already_open()),
        Err(e) => Err(e.into()),
    }
}
