//! Idempotency keys with Stripe's semantics: a key is scoped to its buyer; the first request with
//! a key claims it (in the same transaction that reserves stock, so a crash cannot leave a key
//! without its order); a repeat with the same body gets the stored result; a repeat with another
//! body is refused; keys are kept for a configurable time (24 h by default).

use crate::Checkout;
use crate::card::CardNumber;
use crate::error::{CheckoutError, corrupt};
use crate::orders::{NewOrder, OrderResult};
use sha2::{Digest, Sha256};
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

/// A fingerprint of what the request asks for; the card enters only as its own hash.
pub fn request_hash(order: &NewOrder, card: &CardNumber) -> String {
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}",
        order.product_id,
        order.quantity,
        order.pin_id.as_ref().map_or("", |p| p.as_str()),
        order.stream_id.as_ref().map_or("", |s| s.as_str()),
        card.fingerprint()
    );
    // Only when given, so that keys stored before orders took a currency still match.
    let canonical = match order.currency {
        Some(c) => format!("{canonical}\n{}", c.as_str()),
        None => canonical,
    };
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// A stored key.
pub(crate) struct KeyRecord {
    pub request_hash: String,
    pub response: Option<OrderResult>,
}

impl Checkout {
    pub(crate) async fn load_key(
        &self,
        buyer: &BuyerId,
        key: &str,
    ) -> Result<Option<KeyRecord>, CheckoutError> {
        let row = sqlx::query(
            "SELECT request_hash, response FROM idempotency_keys WHERE buyer_id = $1 AND idem_key = $2",
        )
        .bind(buyer.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let response: Option<String> = r.try_get(1)?;
            Ok(KeyRecord {
                request_hash: r.try_get(0)?,
                response: response
                    .map(|json| serde_json::from_str(&json).map_err(corrupt))
                    .transpose()?
                    .map(|stored| match stored {
                        OrderResult::Created(o) => OrderResult::Created(o.with_iso_times()),
                        rejected => rejected,
                    }),
            })
        })
        .transpose()
    }

    /// Claims a key with a final result in one statement (a request refused before it reserved
    /// anything). False when the key was already taken.
    pub(crate) async fn claim_key_with(
        &self,
        buyer: &BuyerId,
        key: &str,
        hash: &str,
        result: &OrderResult,
    ) -> Result<bool, CheckoutError> {
        let json = serde_json::to_string(result).map_err(corrupt)?;
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (buyer_id, idem_key, request_hash, response, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (buyer_id, idem_key) DO NOTHING",
        )
        .bind(buyer.as_str())
        .bind(key)
        .bind(hash)
        .bind(json)
        .bind(crate::db::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes finished keys older than the configured time to live.
    pub async fn expire_keys(&self) -> Result<u64, CheckoutError> {
        let cutoff = crate::db::now_ms() - self.config.idempotency_ttl.as_millis() as i64;
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < $1 AND response IS NOT NULL",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
