//! Checkout as the chat role reaches it: the [`Purchases`] trait of the shared crate.

use super::Sale;
use crate::error::CheckoutError;
use crate::orders::{NewOrder, OrderResult, PaymentDetails};
use vitrine_core::{
    AuctionView, BidFailure, BidOutcome, BidRequest, BuyFailure, BuyOutcome, BuyRequest,
    CommerceError, PinnedProduct, Purchases, StreamId,
};

#[async_trait::async_trait]
impl Purchases for Sale {
    async fn buy(&self, request: BuyRequest) -> BuyOutcome {
        self.buy_noting_replays(request).await.0
    }

    async fn pinned(&self, stream: &StreamId) -> Result<Option<PinnedProduct>, CommerceError> {
        self.catalog
            .active_pin(stream)
            .await
            .map(|found| found.map(|(pin, product)| pin.card(&product)))
            .map_err(|e| CommerceError::Unavailable(e.to_string()))
    }

    async fn bid(&self, request: BidRequest) -> BidOutcome {
        self.place_bid(&request).await.unwrap_or_else(bid_failed)
    }

    async fn auction(&self, stream: &StreamId) -> Result<Option<AuctionView>, CommerceError> {
        self.open_auction(stream)
            .await
            .map_err(|e| CommerceError::Unavailable(e.to_string()))
    }
}

/// A bid that could not be written, as the bidder is told.
pub fn bid_failed(e: CheckoutError) -> BidOutcome {
    match e {
        CheckoutError::Invalid(detail) => BidOutcome::Refused {
            reason: BidFailure::Invalid,
            detail,
        },
        e => {
            tracing::warn!(error = %e, "bid failed");
            BidOutcome::Refused {
                reason: BidFailure::Unavailable,
                detail: "checkout is unavailable; retry with the same request_id".into(),
            }
        }
    }
}

impl Sale {
    /// A purchase from the chat, and whether its answer is the replay of an earlier one with
    /// the same request id (which changed nothing), for limits kept outside checkout.
    pub async fn buy_noting_replays(&self, request: BuyRequest) -> (BuyOutcome, bool) {
        let order = NewOrder {
            product_id: request.product,
            quantity: request.quantity,
            pin_id: None,
            stream_id: Some(request.stream),
            currency: request.currency,
            payment: PaymentDetails {
                card_number: request.card_number.into(),
            },
            source: crate::orders::OrderSource::Live,
            media_ms: None,
        };
        let placed = self
            .place_order(&request.buyer, &request.request_id, order)
            .await;
        let replayed = matches!(&placed, Ok(p) if p.replayed);
        let outcome = match placed {
            Ok(placed) => match placed.result {
                OrderResult::Created(order) => BuyOutcome::Confirmed(order.summary()),
                OrderResult::Rejected(r) => BuyOutcome::Failed {
                    reason: r.buy_failure(),
                    detail: r.detail,
                },
            },
            Err(CheckoutError::Invalid(detail)) => BuyOutcome::Failed {
                reason: BuyFailure::Invalid,
                detail,
            },
            Err(e) => {
                tracing::warn!(error = %e, "purchase failed");
                BuyOutcome::Failed {
                    reason: BuyFailure::Unavailable,
                    detail: "checkout is unavailable; retry with the same request_id".into(),
                }
            }
        };
        (outcome, replayed)
    }
}
