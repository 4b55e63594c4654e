//! A flash sale's per-buyer limit held per client address as well: guest buyers cost nothing to
//! mint, so without this one address could buy a sale's whole stock as many "buyers". Units are
//! taken for the address (IPv4, or the IPv6 /64) before checkout places the order, in one
//! bounded upsert, and given back when no order happened (refused, failed, or a replay of one
//! that already counted). Both ways of buying go through here: the HTTP order route and the
//! chat's `buy` frame ([`ChatPurchases`]).
//!
//! What this module must never do: decide an order (checkout does; this only refuses one the
//! address has no share left for), or keep units for an order that did not happen.

use crate::store::{Store, StoreError};
use vitrine_checkout::Checkout;
use vitrine_core::{
    AuctionView, BidOutcome, BidRequest, BuyFailure, BuyOutcome, BuyRequest, ClientIp,
    CommerceError, PinId, PinnedProduct, ProductId, Purchases, StreamId,
};

/// The per-address shares of flash sales: `factor` times a sale's per-buyer limit per address.
#[derive(Clone)]
pub struct SaleShares {
    store: Store,
    /// 0 turns the per-address limit off.
    factor: u32,
}

/// What taking a share answered.
pub enum Share {
    /// No per-address limit applies (no flash sale with a per-buyer limit, or the limit is off).
    Unlimited,
    /// Units taken: settle them once the order's fate is known.
    Taken(Taken),
    /// The address has had its share of the sale.
    Refused { cap: u64, per_buyer: u32 },
}

/// Units of a sale taken for one address, for one order.
#[must_use = "settle the units once the order's fate is known"]
pub struct Taken {
    pin: PinId,
    address: String,
    quantity: u32,
}

impl Share {
    pub fn refusal_detail(cap: u64, per_buyer: u32) -> String {
        format!("at most {cap} per address in this sale ({per_buyer} per buyer)")
    }
}

impl SaleShares {
    pub fn new(store: Store, factor: u32) -> Self {
        Self { store, factor }
    }

    /// Takes `quantity` units of the sale an order would buy through (the named pin, else the
    /// stream's active one) for the client's address.
    pub async fn take(
        &self,
        product: &ProductId,
        pin: Option<&PinId>,
        stream: Option<&StreamId>,
        client: &ClientIp,
        quantity: u32,
    ) -> Result<Share, StoreError> {
        if self.factor == 0 {
            return Ok(Share::Unlimited);
        }
        let Some((pin, per_buyer)) = self.store.sale_limit(product, pin, stream).await? else {
            return Ok(Share::Unlimited);
        };
        let cap = u64::from(per_buyer) * u64::from(self.factor);
        let address = client.limit_key();
        if !self
            .store
            .take_address_units(&pin, &address, quantity, cap)
            .await?
        {
            return Ok(Share::Refused { cap, per_buyer });
        }
        Ok(Share::Taken(Taken {
            pin,
            address,
            quantity,
        }))
    }

    /// Keeps the units if the order `happened` (a new order was created), else gives them back.
    pub async fn settle(&self, taken: Taken, happened: bool) -> Result<(), StoreError> {
        if happened {
            return Ok(());
        }
        self.store
            .give_back_address_units(&taken.pin, &taken.address, taken.quantity)
            .await
    }
}

/// Checkout as the chat reaches it, with the per-address share of flash sales and the
/// per-buyer rate of bids in front.
pub struct ChatPurchases {
    pub shares: SaleShares,
    pub bids: crate::bids::BidLimit,
    pub checkout: Checkout,
}

fn unavailable(e: StoreError) -> BuyOutcome {
    tracing::warn!(error = %e, "sale share lookup failed");
    BuyOutcome::Failed {
        reason: BuyFailure::Unavailable,
        detail: "checkout is unavailable; retry with the same request_id".into(),
    }
}

#[async_trait::async_trait]
impl Purchases for ChatPurchases {
    async fn buy(&self, request: BuyRequest) -> BuyOutcome {
        let Some(client) = request.client else {
            return self.checkout.sale().buy(request).await;
        };
        let share = self
            .shares
            .take(
                &request.product,
                None,
                Some(&request.stream),
                &client,
                request.quantity,
            )
            .await;
        let taken = match share {
            Ok(Share::Unlimited) => return self.checkout.sale().buy(request).await,
            Ok(Share::Refused { cap, per_buyer }) => {
                return BuyOutcome::Failed {
                    reason: BuyFailure::LimitExceeded,
                    detail: Share::refusal_detail(cap, per_buyer),
                };
            }
            Ok(Share::Taken(taken)) => taken,
            Err(e) => return unavailable(e),
        };
        // The chat runs each purchase in a task of its own, so this future is not dropped
        // halfway: the units are settled whatever the answer.
        let (outcome, replayed) = self.checkout.sale().buy_noting_replays(request).await;
        let happened = matches!(outcome, BuyOutcome::Confirmed(_)) && !replayed;
        if let Err(e) = self.shares.settle(taken, happened).await {
            tracing::warn!(error = %e, "sale share not given back");
        }
        outcome
    }

    async fn pinned(&self, stream: &StreamId) -> Result<Option<PinnedProduct>, CommerceError> {
        self.checkout.sale().pinned(stream).await
    }

    async fn bid(&self, request: BidRequest) -> BidOutcome {
        if let Err(held) = self.bids.admit(&request.buyer).await {
            return held.outcome();
        }
        Purchases::bid(self.checkout.sale(), request).await
    }

    async fn auction(&self, stream: &StreamId) -> Result<Option<AuctionView>, CommerceError> {
        Purchases::auction(self.checkout.sale(), stream).await
    }
}
