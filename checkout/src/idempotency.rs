//! Idempotency keys with Stripe's semantics: a key is scoped to its buyer; the first request with
//! a key claims it (in the same transaction that reserves stock, so a crash cannot leave a key
//! without its order); a repeat with the same body gets the stored result; a repeat with another
//! body is refused; keys are kept for a configurable time (24 h by default). Only completed
//! results are replayed: an attempt that failed (the processor unreachable) marks its key, and
//! the next request with the same key and body resumes the same order instead of waiting on it.

use crate::card::{CardKey, CardNumber};
use crate::error::CheckoutError;
use crate::orders::Orders;
use crate::orders::{NewOrder, OrderResult};
use sqlx::Row;
use vitrine_core::BuyerId;

pub const MAX_KEY_CHARS: usize = 255;

/// Checks a key: 1 to 255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), CheckoutError> {
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CheckoutError::Invalid(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters"
        )));
    }
    Ok(())
}

/// A fingerprint of what the request asks for, keyed with the server's card key: the card enters
/// only as its keyed fingerprint, and the result cannot be recomputed without the key.
pub fn request_hash(order: &NewOrder, card: &CardNumber, key: &CardKey) -> String {
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}",
        order.product_id,
        order.quantity,
        order.pin_id.as_ref().map_or("", |p| p.as_str()),
        order.stream_id.as_ref().map_or("", |s| s.as_str()),
        key.fingerprint(card)
    );
    // Only when given, so that keys stored before orders took a currency still match.
    let canonical = match order.currency {
        Some(c) => format!("{canonical}\n{}", c.as_str()),
        None => canonical,
    };
    key.mac(&canonical)
}

/// A stored key.
pub(crate) struct KeyRecord {
    pub request_hash: String,
    pub response: Option<OrderResult>,
    /// The order the key reserved, once it has one.
    pub order_id: Option<String>,
    /// The last attempt failed before the order had a result: the next request may resume it.
    pub failed: bool,
}

impl Orders {
    pub(crate) async fn load_key(
        &self,
        buyer: &BuyerId,
        key: &str,
    ) -> Result<Option<KeyRecord>, CheckoutError> {
        let row = sqlx::query(
            "SELECT request_hash, response, order_id, failed_at FROM idempotency_keys \
             WHERE buyer_id = $1 AND idem_key = $2",
        )
        .bind(buyer.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let response: Option<String> = r.try_get(1)?;
            Ok(KeyRecord {
                order_id: r.try_get(2)?,
                failed: r.try_get::<Option<i64>, _>(3)?.is_some(),
                request_hash: r.try_get(0)?,
                response: response
                    .map(|text| crate::orders::StoredResult::decode(&text))
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// Marks the key's attempt as failed, so that a retry resumes it rather than waiting.
    pub(crate) async fn mark_attempt_failed(
        &self,
        buyer: &BuyerId,
        key: &str,
    ) -> Result<(), CheckoutError> {
        sqlx::query(
            "UPDATE idempotency_keys SET failed_at = $1 \
             WHERE buyer_id = $2 AND idem_key = $3 AND response IS NULL",
        )
        .bind(self.now())
        .bind(buyer.as_str())
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes over a failed attempt: true for exactly one of several racing retries.
    pub(crate) async fn resume_failed(
        &self,
        buyer: &BuyerId,
        key: &str,
    ) -> Result<bool, CheckoutError> {
        let done = sqlx::query(
            "UPDATE idempotency_keys SET failed_at = NULL WHERE buyer_id = $1 AND idem_key = $2 \
             AND failed_at IS NOT NULL AND response IS NULL",
        )
        .bind(buyer.as_str())
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes finished keys older than the configured time to live.
    pub async fn expire_keys(&self) -> Result<u64, CheckoutError> {
        self.expire_keys_at(self.now()).await
    }

    /// [`crate::orders::Orders::expire_keys`] as of `now` (Unix milliseconds): the pruning job's clock.
    pub async fn expire_keys_at(&self, now: i64) -> Result<u64, CheckoutError> {
        let cutoff = now - self.config.idempotency_ttl.as_millis() as i64;
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < $1 AND response IS NOT NULL",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes answered bids' keys older than the idempotency keys' time to live, as of `now`.
    pub(crate) async fn expire_bid_keys_at(&self, now: i64) -> Result<u64, CheckoutError> {
        let cutoff = now - self.config.idempotency_ttl.as_millis() as i64;
        let done =
            sqlx::query("DELETE FROM auction_bids WHERE created_at < $1 AND outcome IS NOT NULL")
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}
