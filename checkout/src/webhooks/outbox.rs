//! The transactional outbox: an event is written in the same transaction as the change it
//! reports, together with one pending delivery per subscribed endpoint (and not at all when no
//! endpoint subscribes). If the transaction
//! rolls back there is no event; if it commits, the event survives any crash until delivered.

use super::events::EventType;
use serde::Serialize;
use serde_json::json;
use sqlx::Any;
use vitrine_core::ids::random_id;
use vitrine_core::{SellerId, Timestamp};

pub type Tx<'a> = sqlx::Transaction<'a, Any>;

/// Records `kind` for `seller` with `data` as the payload; returns the message id, or `None`
/// when no endpoint of the seller subscribes to it (then nothing is written: most sellers have
/// no webhooks, and the order path should not pay for them).
pub async fn record(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    kind: EventType,
    data: &impl Serialize,
) -> Result<Option<String>, sqlx::Error> {
    if !subscribed(tx, seller, kind).await? {
        return Ok(None);
    }
    insert(tx, seller, kind, data).await.map(Some)
}

/// Records one `kind` message per item of `data` (a batch of orders), asking once whether any
/// endpoint subscribes; true when the outbox got messages.
pub async fn record_all<T: Serialize>(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    kind: EventType,
    data: &[T],
) -> Result<bool, sqlx::Error> {
    if data.is_empty() || !subscribed(tx, seller, kind).await? {
        return Ok(false);
    }
    insert_all(tx, seller, kind, data).await
}

/// Writes one message per item; true (the outbox got messages).
async fn insert_all<M: Serialize>(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    kind: EventType,
    items: impl IntoIterator<Item = M>,
) -> Result<bool, sqlx::Error> {
    for item in items {
        insert(tx, seller, kind, &item).await?;
    }
    Ok(true)
}

/// Which events a seller's enabled endpoints subscribe to, read once for a transaction that
/// may write several kinds: a transaction of the order path reads it before it locks its hot
/// rows, so that its time under the lock is not spent asking.
pub struct Subscriptions(Vec<String>);

impl Subscriptions {
    pub async fn of(tx: &mut Tx<'_>, seller: &SellerId) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT event_types FROM webhook_endpoints \
             WHERE seller_id = $1 AND status = 'enabled' AND deleted_at IS NULL",
        )
        .bind(seller.as_str())
        .fetch_all(&mut **tx)
        .await?;
        Ok(Self(rows.into_iter().map(|(t,)| t).collect()))
    }

    /// Whether some endpoint takes `kind` (the rule the deliveries' INSERT applies: an empty
    /// list means every event).
    pub fn wants(&self, kind: EventType) -> bool {
        let quoted = format!("\"{}\"", kind.as_str());
        self.0.iter().any(|t| t == "[]" || t.contains(&quoted))
    }

    /// One `kind` message per item of `data`, its payload made by `message` (the webhook's own
    /// shape of it) only when some endpoint wants `kind`; true when the outbox got messages.
    pub async fn record_each<T, M: Serialize>(
        &self,
        tx: &mut Tx<'_>,
        seller: &SellerId,
        kind: EventType,
        data: &[T],
        message: impl Fn(&T) -> M,
    ) -> Result<bool, sqlx::Error> {
        if data.is_empty() || !self.wants(kind) {
            return Ok(false);
        }
        let messages: Vec<M> = data.iter().map(message).collect();
        insert_all(tx, seller, kind, messages).await
    }
}

/// Whether an enabled endpoint of `seller` subscribes to `kind`.
async fn subscribed(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    kind: EventType,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT 1 FROM webhook_endpoints WHERE seller_id = $1 AND status = 'enabled' \
         AND deleted_at IS NULL AND (event_types = '[]' OR event_types LIKE $2) LIMIT 1",
    )
    .bind(seller.as_str())
    .bind(format!("%\"{}\"%", kind.as_str()))
    .fetch_optional(&mut **tx)
    .await?
    .is_some())
}

/// Writes the message and one pending delivery per subscribed endpoint.
async fn insert(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    kind: EventType,
    data: &impl Serialize,
) -> Result<String, sqlx::Error> {
    // The Standard Webhooks message id (`msg_...`): receivers de-duplicate by it.
    let id = random_id("msg");
    let now = Timestamp::now();
    let body = json!({ "type": kind.as_str(), "timestamp": now, "data": data }).to_string();
    sqlx::query(
        "INSERT INTO webhook_events (id, seller_id, event_type, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(seller.as_str())
    .bind(kind.as_str())
    .bind(&body)
    .bind(now.millis())
    .execute(&mut **tx)
    .await?;
    // Endpoints subscribe to a JSON list of event names; an empty list means all.
    sqlx::query(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, \
         next_attempt_at, leased_until, updated_at) \
         SELECT $1, id, 'pending', 0, $2, 0, $2 FROM webhook_endpoints \
         WHERE seller_id = $3 AND status = 'enabled' AND deleted_at IS NULL \
         AND (event_types = '[]' OR event_types LIKE $4)",
    )
    .bind(&id)
    .bind(now.millis())
    .bind(seller.as_str())
    .bind(format!("%\"{}\"%", kind.as_str()))
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule read once is the deliveries' INSERT's: an empty list takes every event, a list
    /// takes the events it names, and no endpoint takes nothing.
    #[test]
    fn subscriptions_read_once_want_what_the_endpoints_name() {
        let none = Subscriptions(vec![]);
        assert!(!none.wants(EventType::OrderCreated));
        let all = Subscriptions(vec!["[]".into()]);
        assert!(all.wants(EventType::ProductSoldOut));
        let some = Subscriptions(vec![r#"["order.paid","product.sold_out"]"#.into()]);
        assert!(some.wants(EventType::OrderPaid));
        assert!(some.wants(EventType::ProductSoldOut));
        assert!(!some.wants(EventType::OrderCreated));
    }
}
