//! A bid: checked, then handed to its auction's batch writer ([`super::bid_batch`]); a retry with
//! the same key gets the answer the first one stored. [`check`] says whether a bid leads, and why not.

use super::AuctionRow;
use super::bid_batch::BidWriter;
use crate::error::CheckoutError;
use crate::idempotency::validate_key;
use crate::sale::Sale;
use sqlx::Row;
use vitrine_core::{BidFailure, BidOutcome, BidRequest};

/// Longest bidder name kept with a bid.
const MAX_BIDDER_NAME: usize = 64;

/// Why a bid cannot lead: its reason and what the bidder is told.
pub(crate) type Refusal = (BidFailure, String);

/// Answers a bid for an auction that does not exist (in the bid's room).
pub(crate) fn not_found() -> Refusal {
    (BidFailure::NotFound, "no such auction in this room".into())
}

/// Whether `request` leads `auction` as it stands at `now` (no IO); if not, why not.
pub(crate) fn check(auction: &AuctionRow, request: &BidRequest, now: i64) -> Result<(), Refusal> {
    let a = auction;
    if request.stream.as_ref().is_some_and(|s| *s != a.stream_id) {
        return Err(not_found());
    }
    if !a.open || a.ends_at <= now {
        return Err((
            BidFailure::AuctionEnded,
            "the auction has ended: the hammer has fallen".into(),
        ));
    }
    if request.amount.currency != a.currency {
        return Err((
            BidFailure::Invalid,
            format!("bids are in {}", a.currency.as_str()),
        ));
    }
    if a.bidder_id.as_ref() == Some(&request.buyer) {
        return Err((
            BidFailure::AlreadyHighest,
            "you already hold the highest bid".into(),
        ));
    }
    if request.amount.amount < a.next_min() {
        return Err((
            BidFailure::TooLow,
            format!(
                "the next bid must be at least {} {}",
                a.next_min(),
                a.currency.as_str()
            ),
        ));
    }
    Ok(())
}

/// Applies `request` to `auction` as it stands at `now` if the bid leads (no IO): the new
/// highest bid, its bidder, one more bid, and the clock put back to `extend` when the bid came
/// in its last `extend` (unless sudden death); otherwise why not.
pub(crate) fn take(
    auction: &mut AuctionRow,
    request: &BidRequest,
    now: i64,
) -> Result<(), Refusal> {
    check(auction, request, now)?;
    auction.current = Some(request.amount.amount);
    auction.bidder_id = Some(request.buyer.clone());
    auction.bidder_name = Some(request.bidder_name.clone());
    auction.bid_count += 1;
    if !auction.sudden_death && auction.ends_at - now < auction.extend_ms {
        auction.ends_at = now + auction.extend_ms;
    }
    Ok(())
}

impl Sale {
    /// Bids `request.amount` for `request.buyer`; idempotent on (buyer, request id). Bids for
    /// one auction are written together (see [`crate::group`]): the first alone, the ones that
    /// arrive meanwhile as the next batch, in one transaction.
    #[tracing::instrument(skip_all, fields(buyer = %request.buyer, auction = %request.auction))]
    pub async fn place_bid(&self, request: &BidRequest) -> Result<BidOutcome, CheckoutError> {
        validate_key(&request.request_id)?;
        request
            .amount
            .validated()
            .map_err(|e| CheckoutError::Invalid(format!("amount: {e}")))?;
        let mut job = request.clone();
        job.bidder_name = request.bidder_name.chars().take(MAX_BIDDER_NAME).collect();
        let answer = self
            .bids
            .submit(request.auction.clone(), job, BidWriter(self.clone()))
            .await
            .map_err(|_| CheckoutError::Unavailable("the bid was lost; retry".into()))??;
        match answer {
            Some(outcome) => Ok(outcome),
            // An earlier bid holds the key: answered from what it stored.
            None => self.replay_bid(request).await,
        }
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
        .fetch_optional(&self.orders().pool)
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
            // A key is claimed and answered in one transaction: never seen unanswered.
            None => Err(CheckoutError::Corrupt(
                "a bid's key without its answer".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_core::{AuctionId, BuyerId, Currency, Money, ProductId, SellerId, StreamId};

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
    fn bids_in_one_batch_lead_in_turn() {
        let now = 1_000_000;
        let mut a = auction(now);
        let (first, mut equal, mut again) = (bid(&a, 1600), bid(&a, 1600), bid(&a, 1800));
        assert_eq!(take(&mut a, &first, now), Ok(()));
        assert_eq!((a.current, a.bid_count), (Some(1600), 4));
        assert_eq!(a.ends_at, now + 10_000, "a late bid puts the clock back");
        equal.buyer = BuyerId::generate();
        assert_eq!(take(&mut a, &equal, now).unwrap_err().0, BidFailure::TooLow);
        again.buyer = first.buyer.clone();
        assert_eq!(
            take(&mut a, &again, now).unwrap_err().0,
            BidFailure::AlreadyHighest
        );
        a.sudden_death = true;
        let late = bid(&a, 1700);
        assert_eq!(take(&mut a, &late, now + 9_000), Ok(()));
        assert_eq!(a.ends_at, now + 10_000, "sudden death keeps the clock");
        let after = bid(&a, 9000);
        assert_eq!(
            take(&mut a, &after, now + 10_000).unwrap_err().0,
            BidFailure::AuctionEnded
        );
    }

    #[test]
    fn a_refused_bid_is_told_why() {
        let now = 1_000_000;
        let a = auction(now);
        let (reason, detail) = check(&a, &bid(&a, 1550), now).unwrap_err();
        assert_eq!(reason, BidFailure::TooLow);
        assert!(detail.contains("1600"), "{detail}");
        assert_eq!(check(&a, &bid(&a, 1600), now), Ok(()));
        let mut elsewhere = bid(&a, 9999);
        elsewhere.stream = Some(StreamId::generate());
        assert_eq!(
            check(&a, &elsewhere, now).unwrap_err().0,
            BidFailure::NotFound
        );
        // The clock, not the hammer's row, ends an auction.
        assert_eq!(
            check(&a, &bid(&a, 9999), a.ends_at).unwrap_err().0,
            BidFailure::AuctionEnded
        );
        let mut mine = bid(&a, 9999);
        mine.buyer = a.bidder_id.clone().unwrap();
        assert_eq!(
            check(&a, &mine, now).unwrap_err().0,
            BidFailure::AlreadyHighest
        );
        let mut euros = bid(&a, 9999);
        euros.amount.currency = Currency::parse("EUR").unwrap();
        assert_eq!(check(&a, &euros, now).unwrap_err().0, BidFailure::Invalid);
    }
}
