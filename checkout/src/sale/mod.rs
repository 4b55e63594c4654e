//! The sale service: how orders are placed, over [`Payments`]. It reserves units in batches
//! per product ([`reserve_batch`], shared out by [`allocate`]), charges through the payments
//! service and answers the request ([`place`]), takes the chat's purchases and bids
//! ([`purchases`]) and runs live auctions ([`auctions`]). Nothing below it knows of it.

mod allocate;
pub mod auctions;
mod place;
pub mod purchases;
mod reserve;
mod reserve_batch;
mod reserve_news;

pub(crate) use reserve::{ReserveJob, Reserved};
pub(crate) use reserve_batch::insert_orders;

use crate::card::CardKey;
use crate::catalog::Catalog;
use crate::error::CheckoutError;
use crate::group::Batcher;
use crate::orders::Orders;
use crate::payments::Payments;
use crate::rates::Rates;
use vitrine_core::{AuctionId, BidRequest, ProductId};

/// Reservations, placements, the chat's purchases and auctions; cheap to clone.
#[derive(Clone)]
pub struct Sale {
    pub(crate) payments: Payments,
    /// Products and pins: what is sold, at what price, within which limits.
    pub(crate) catalog: Catalog,
    /// The exchange rates in force (a buyer's currency).
    pub(crate) rates: Rates,
    /// Keys card fingerprints (idempotency request hashes).
    pub(crate) card_key: CardKey,
    /// The reserve step's group commit, per product.
    pub(crate) reservations: Batcher<ProductId, ReserveJob, Result<Reserved, CheckoutError>>,
    /// Bids' group commit, per auction (whose row every bid moves).
    pub(crate) bids: Batcher<AuctionId, BidRequest, auctions::BidAnswer>,
}

impl Sale {
    pub(crate) fn new(payments: Payments, catalog: Catalog, rates: Rates) -> Self {
        Self {
            payments,
            catalog,
            rates,
            card_key: CardKey::ephemeral(),
            reservations: Batcher::new(crate::MAX_BATCH),
            bids: Batcher::new(crate::MAX_BATCH),
        }
    }

    /// The order records the sale writes through.
    pub(crate) fn orders(&self) -> &Orders {
        &self.payments.orders
    }
}
