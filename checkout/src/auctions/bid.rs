//! A bid: its key claimed and the auction's row moved by one conditional UPDATE, in one
//! transaction; a refused bid keeps why with its key, so a retry gets the same answer.

use super::{AUCTION_COLUMNS, AuctionRow, auction_from_row};
use crate::Checkout;
use crate::db::sql;
use crate::error::CheckoutError;
use crate::idempotency::validate_key;
use crate::webhooks::{EventType, outbox};
use sqlx::Row;
use vitrine_core::{AuctionMoment, BidFailure, BidOutcome, BidRequest, Money};

/// Longest bidder name kept with a bid.
const MAX_BIDDER_NAME: usize = 64;

/// Why `request` cannot lead `auction` as it stands at `now` (no IO): what a refused bid is told.
pub(crate) fn refusal(
    auction: Option<&AuctionRow>,
    request: &BidRequest,
    now: i64,
) -> (BidFailure, String) {
    let Some(a) = auction.filter(|a| request.stream.as_ref().is_none_or(|s| *s == a.stream_id))
    else {
        return (BidFailure::NotFound, "no such auction in this room".into());
    };
    if !a.open || a.ends_at <= now {
        return (
            BidFailure::AuctionEnded,
            "the auction has ended: the hammer has fallen".into(),
        );
    }
    if request.amount.currency != a.currency {
        return (
            BidFailure::Invalid,
            format!("bids are in {}", a.currency.as_str()),
        );
    }
    if a.bidder_id.as_ref() == Some(&request.buyer) {
        return (
            BidFailure::AlreadyHighest,
            "you already hold the highest bid".into(),
        );
    }
    (
        BidFailure::TooLow,
        format!(
            "the next bid must be at least {} {}",
            a.next_min(),
            a.currency.as_str()
        ),
    )
}

impl Checkout {
    /// Bids `request.amount` for `request.buyer`; idempotent on (buyer, request id).
    #[tracing::instrument(skip_all, fields(buyer = %request.buyer, auction = %request.auction))]
    pub async fn place_bid(&self, request: &BidRequest) -> Result<BidOutcome, CheckoutError> {
        validate_key(&request.request_id)?;
        let amount = Money::new(request.amount.amount, request.amount.currency)
            .map_err(|e| CheckoutError::Invalid(format!("amount: {e}")))?;
        let name: String = request.bidder_name.chars().take(MAX_BIDDER_NAME).collect();
        let now = self.now();
        let turn = self.write_gate.enter().await;
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO auction_bids (buyer_id, idem_key, auction_id, amount, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (buyer_id, idem_key) DO NOTHING \
             RETURNING buyer_id",
        )
        .bind(request.buyer.as_str())
        .bind(request.request_id.as_str())
        .bind(request.auction.as_str())
        .bind(amount.amount)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            tx.rollback().await?;
            drop(turn);
            return self.replay_bid(request).await;
        }
        let moved = sqlx::query(sql(format!(
            "UPDATE auctions SET current_amount = $1, bidder_id = $2, bidder_name = $3, \
             bid_count = bid_count + 1, \
             ends_at = CASE WHEN sudden_death = 0 AND ends_at - $4 < extend_ms \
                       THEN $4 + extend_ms ELSE ends_at END \
             WHERE id = $5 AND status = 'open' AND ends_at > $4 AND currency = $6 \
             AND (bidder_id IS NULL OR bidder_id <> $2) \
             AND $1 >= COALESCE(current_amount + increment_amount, start_amount) \
             AND ($7 IS NULL OR stream_id = $7) \
             RETURNING {AUCTION_COLUMNS}"
        )))
        .bind(amount.amount)
        .bind(request.buyer.as_str())
        .bind(name)
        .bind(now)
        .bind(request.auction.as_str())
        .bind(amount.currency.as_str())
        .bind(request.stream.as_ref().map(|s| s.as_str().to_owned()))
        .fetch_optional(&mut *tx)
        .await?;
        let (outcome, led) = match moved.as_ref().map(auction_from_row).transpose()? {
            Some(row) => {
                outbox::record(
                    &mut tx,
                    &row.seller_id,
                    EventType::AuctionBid,
                    &row.message(),
                )
                .await?;
                ("accepted".to_owned(), Some(row))
            }
            None => {
                let current = sqlx::query(sql(format!(
                    "SELECT {AUCTION_COLUMNS} FROM auctions WHERE id = $1"
                )))
                .bind(request.auction.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let current = current.as_ref().map(auction_from_row).transpose()?;
                let (reason, detail) = refusal(current.as_ref(), request, now);
                store_answer(&mut tx, request, reason.as_str(), Some(&detail)).await?;
                tx.commit().await?;
                return Ok(BidOutcome::Refused { reason, detail });
            }
        };
        store_answer(&mut tx, request, &outcome, None).await?;
        tx.commit().await?;
        drop(turn);
        let row = led.expect("an accepted bid moved its auction");
        self.wake_webhooks();
        self.announce_auction(&row, AuctionMoment::Bid);
        Ok(BidOutcome::Accepted(Box::new(row.view())))
    }

    /// The answer an earlier bid with the same key got: refused again with its reason, or
    /// accepted with the auction as it stands now.
    async fn replay_bid(&self, request: &BidRequest) -> Result<BidOutcome, CheckoutError> {
        let row = sqlx::query(
            "SELECT auction_id, amount, outcome, detail FROM auction_bids \
             WHERE buyer_id = $1 AND idem_key = $2",
        )
        .bind(request.buyer.as_str())
        .bind(request.request_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(CheckoutError::NotFound("the bid's key vanished"))?;
        let (auction, amount): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
        if auction != request.auction.as_str() || amount != request.amount.amount {
            return Ok(BidOutcome::Refused {
                reason: BidFailure::Invalid,
                detail: "this request id was used for another bid".into(),
            });
        }
        let outcome: Option<String> = row.try_get(2)?;
        match outcome.as_deref() {
            Some("accepted") => {
                let row = self
                    .auction_row(&request.auction)
                    .await?
                    .ok_or(CheckoutError::NotFound("no such auction"))?;
                Ok(BidOutcome::Accepted(Box::new(row.view())))
            }
            Some(reason) => Ok(BidOutcome::Refused {
                reason: BidFailure::parse(reason).unwrap_or(BidFailure::Invalid),
                detail: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
            }),
            None => Err(CheckoutError::Unavailable(
                "the first bid with this request id is still being written; retry".into(),
            )),
        }
    }
}

/// Keeps the answer with the bid's key.
async fn store_answer(
    tx: &mut outbox::Tx<'_>,
    request: &BidRequest,
    outcome: &str,
    detail: Option<&str>,
) -> Result<(), CheckoutError> {
    sqlx::query(
        "UPDATE auction_bids SET outcome = $1, detail = $2 WHERE buyer_id = $3 AND idem_key = $4",
    )
    .bind(outcome)
    .bind(detail)
    .bind(request.buyer.as_str())
    .bind(request.request_id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_core::{AuctionId, BuyerId, Currency, ProductId, SellerId, StreamId};

    fn auction(now: i64) -> AuctionRow {
        AuctionRow {
            id: AuctionId::generate(),
            seller_id: SellerId::generate(),
            stream_id: StreamId::generate(),
            product_id: ProductId::generate(),
            currency: Currency::parse("USD").unwrap(),
            start: 1000,
            increment: 100,
            current: Some(1500),
            bidder_id: Some(BuyerId::generate()),
            bidder_name: Some("ada".into()),
            bid_count: 3,
            ends_at: now + 5000,
            extend_ms: 10_000,
            sudden_death: false,
            open: true,
            order_id: None,
        }
    }

    fn bid(a: &AuctionRow, amount: i64) -> BidRequest {
        BidRequest {
            buyer: BuyerId::generate(),
            auction: a.id.clone(),
            stream: Some(a.stream_id.clone()),
            amount: Money {
                amount,
                currency: a.currency,
            },
            request_id: "r1".into(),
            bidder_name: "bo".into(),
        }
    }

    #[test]
    fn a_refused_bid_is_told_why() {
        let now = 1_000_000;
        let a = auction(now);
        let (reason, detail) = refusal(Some(&a), &bid(&a, 1550), now);
        assert_eq!(reason, BidFailure::TooLow);
        assert!(detail.contains("1600"), "{detail}");
        assert_eq!(refusal(None, &bid(&a, 9999), now).0, BidFailure::NotFound);
        let mut elsewhere = bid(&a, 9999);
        elsewhere.stream = Some(StreamId::generate());
        assert_eq!(refusal(Some(&a), &elsewhere, now).0, BidFailure::NotFound);
        // The clock, not the hammer's row, ends an auction.
        assert_eq!(
            refusal(Some(&a), &bid(&a, 9999), a.ends_at).0,
            BidFailure::AuctionEnded
        );
        let mut mine = bid(&a, 9999);
        mine.buyer = a.bidder_id.clone().unwrap();
        assert_eq!(refusal(Some(&a), &mine, now).0, BidFailure::AlreadyHighest);
        let mut euros = bid(&a, 9999);
        euros.amount.currency = Currency::parse("EUR").unwrap();
        assert_eq!(refusal(Some(&a), &euros, now).0, BidFailure::Invalid);
    }
}
