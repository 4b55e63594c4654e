//! Auction bids as the server takes them, from the room's chat and from the API alike: held to
//! a per-buyer rate (in the limiter's store, so it holds across nodes when Redis is configured)
//! before checkout writes them.
//!
//! What this module must never do: let a bid through when the limiter cannot be asked (a bid
//! is a write), or decide a bid (checkout does).

use prometheus_client::metrics::counter::Counter;
use vitrine_core::{BidFailure, BidOutcome, BuyerId};
use vitrine_platform::ratelimit::{Decision, Limit, RateLimiter};

/// A buyer's bids per second, across every connection and the API.
#[derive(Clone)]
pub struct BidLimit {
    limiter: RateLimiter,
    /// `None`: off.
    limit: Option<Limit>,
    /// The limiter's failures (`vitrine_api_limiter_errors`, with the API's own).
    errors: Counter,
}

/// Why a bid was held back before checkout saw it.
pub enum Held {
    /// Over the buyer's rate: retry after the decision's delay.
    Limited(Decision),
    /// The limiter's store could not be asked.
    Unavailable,
}

impl Held {
    /// The chat's answer to a held bid.
    pub fn outcome(&self) -> BidOutcome {
        match self {
            Self::Limited(d) => BidOutcome::Refused {
                reason: BidFailure::RateLimited,
                detail: format!(
                    "too many bids; retry in {} s with the same request_id",
                    d.retry_after_s()
                ),
            },
            Self::Unavailable => BidOutcome::Refused {
                reason: BidFailure::Unavailable,
                detail: "bids cannot be taken right now; retry with the same request_id".into(),
            },
        }
    }
}

impl BidLimit {
    pub fn new(limiter: RateLimiter, limit: Option<Limit>, errors: Counter) -> Self {
        Self {
            limiter,
            limit,
            errors,
        }
    }

    /// Counts one bid of `buyer`.
    pub async fn admit(&self, buyer: &BuyerId) -> Result<(), Held> {
        let Some(limit) = &self.limit else {
            return Ok(());
        };
        match self
            .limiter
            .check_limit(&format!("bids:{buyer}"), "bids", limit)
            .await
        {
            Ok(d) if d.allowed => Ok(()),
            Ok(d) => Err(Held::Limited(d)),
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; bid refused");
                self.errors.inc();
                Err(Held::Unavailable)
            }
        }
    }
}
