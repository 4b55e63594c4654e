//! The transactional outbox, on the stream of commerce facts. A transaction of the order path
//! writes its webhook messages ([`Hook`]) in its fact row (see `crate::facts`), numbered with
//! the facts the rooms hear: if it rolls back there is no message, if it commits the message
//! survives any crash. The dispatcher, on whichever node runs first, claims committed rows and
//! [`expand`]s each message into a `webhook_events` row and one pending delivery per endpoint
//! subscribed at that moment, in the order the rows were written, in one transaction that
//! also marks the rows done: a row is expanded exactly once, even with several dispatchers and
//! even when the node that wrote it died.
//!
//! Which endpoints subscribe is no longer asked inside the order path's transactions: a sale's
//! transaction writes its messages whatever the seller's endpoints, and the expansion drops
//! those nobody wants.

use super::events::EventType;
use crate::error::CheckoutError;
use crate::jobs::JobMetrics;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{Any, AnyPool, Row};
use std::collections::HashMap;
use vitrine_core::ids::random_id;
use vitrine_core::{SellerId, Timestamp};

pub type Tx<'a> = sqlx::Transaction<'a, Any>;

/// One webhook message of a transaction: for `seller`'s endpoints that take `kind`, with
/// `data` as the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    pub seller: SellerId,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub data: serde_json::Value,
}

impl Hook {
    pub fn new(
        seller: &SellerId,
        kind: EventType,
        data: &impl Serialize,
    ) -> Result<Self, CheckoutError> {
        let data = serde_json::to_value(data)
            .map_err(|e| CheckoutError::Corrupt(format!("encoding a webhook payload: {e}")))?;
        Ok(Self {
            seller: seller.clone(),
            kind,
            data,
        })
    }
}

/// Records `kind` for `seller` with `data` as the payload, for a writer outside the order path
/// (a stream going live or ending): a fact row of its own, with no room event and no place in
/// a node's numbering, expanded like the others.
pub async fn record(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    kind: EventType,
    data: &impl Serialize,
) -> Result<(), sqlx::Error> {
    let data = serde_json::to_value(data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let hook = Hook {
        seller: seller.clone(),
        kind,
        data,
    };
    let hooks = serde_json::to_string(&[hook]).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO commerce_facts (origin, seq, events, created_at, hooks, hooks_pending) \
         VALUES ($1, 0, '[]', $2, $3, 1)",
    )
    .bind(random_id("fw"))
    .bind(Timestamp::now().millis())
    .bind(hooks)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The JSON a fact row keeps its messages in.
pub(crate) fn encode(hooks: &[Hook]) -> Result<String, CheckoutError> {
    serde_json::to_string(hooks)
        .map_err(|e| CheckoutError::Corrupt(format!("encoding webhook messages: {e}")))
}

/// What one expansion did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expanded {
    /// Fact rows claimed (a full page may have more behind it).
    pub rows: usize,
    /// Messages some endpoint takes, written with their deliveries.
    pub messages: usize,
}

/// Claims up to `limit` committed fact rows with messages not yet expanded, oldest first, and
/// writes their messages and deliveries (due at `now`), in one transaction. A row whose
/// messages cannot be decoded (a bug, or a newer writer) is counted on `jobs` and skipped.
pub(crate) async fn expand(
    pool: &AnyPool,
    limit: i64,
    now: i64,
    jobs: &JobMetrics,
) -> Result<Expanded, CheckoutError> {
    let mut tx = pool.begin().await?;
    // Under concurrent dispatchers a row another one claimed first fails the re-checked
    // condition and is skipped; the claim commits with what it wrote.
    let rows = sqlx::query(
        "UPDATE commerce_facts SET hooks_pending = 0 \
         WHERE hooks_pending = 1 AND (origin, seq) IN (SELECT origin, seq FROM commerce_facts \
         WHERE hooks_pending = 1 ORDER BY created_at LIMIT $1) \
         RETURNING created_at, origin, seq, hooks",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut done = Expanded {
        rows: rows.len(),
        ..Expanded::default()
    };
    if rows.is_empty() {
        return Ok(done);
    }
    let mut claimed = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>(0)?,
                r.try_get::<String, _>(1)?,
                r.try_get::<i64, _>(2)?,
                r.try_get::<Option<String>, _>(3)?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // In the order they were written: by time, and by number within a node.
    claimed.sort();
    let mut subscriptions: HashMap<SellerId, Subscriptions> = HashMap::new();
    for (created_at, origin, seq, hooks) in claimed {
        let hooks = match serde_json::from_str::<Vec<Hook>>(hooks.as_deref().unwrap_or("[]")) {
            Ok(hooks) => hooks,
            Err(e) => {
                let error = CheckoutError::Corrupt(format!("webhook messages: {e}"));
                jobs.row_failed("webhooks", &format!("{origin}/{seq}"), &error);
                continue;
            }
        };
        for hook in hooks {
            if !subscriptions.contains_key(&hook.seller) {
                let read = Subscriptions::of(&mut tx, &hook.seller).await?;
                subscriptions.insert(hook.seller.clone(), read);
            }
            if subscriptions[&hook.seller].wants(hook.kind) {
                insert(&mut tx, &hook, Timestamp(created_at), now).await?;
                done.messages += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(done)
}

/// Which events a seller's enabled endpoints subscribe to, read once per expansion.
struct Subscriptions(Vec<String>);

impl Subscriptions {
    async fn of(tx: &mut Tx<'_>, seller: &SellerId) -> Result<Self, sqlx::Error> {
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
    fn wants(&self, kind: EventType) -> bool {
        let quoted = format!("\"{}\"", kind.as_str());
        self.0.iter().any(|t| t == "[]" || t.contains(&quoted))
    }
}

/// Writes the message, stamped with the time its transaction wrote it, and one delivery per
/// subscribed endpoint, due at `now`.
async fn insert(
    tx: &mut Tx<'_>,
    hook: &Hook,
    written: Timestamp,
    now: i64,
) -> Result<(), sqlx::Error> {
    // The Standard Webhooks message id (`msg_...`): receivers de-duplicate by it.
    let id = random_id("msg");
    let body =
        json!({ "type": hook.kind.as_str(), "timestamp": written, "data": hook.data }).to_string();
    sqlx::query(
        "INSERT INTO webhook_events (id, seller_id, event_type, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(hook.seller.as_str())
    .bind(hook.kind.as_str())
    .bind(&body)
    .bind(written.millis())
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
    .bind(now)
    .bind(hook.seller.as_str())
    .bind(format!("%\"{}\"%", hook.kind.as_str()))
    .execute(&mut **tx)
    .await?;
    Ok(())
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

    /// A row keeps its messages as the wire names them, and reads them back the same.
    #[test]
    fn messages_keep_their_wire_names() {
        let seller = SellerId::generate();
        let hook = Hook::new(&seller, EventType::AuctionBid, &json!({"amount": 500})).unwrap();
        let text = encode(std::slice::from_ref(&hook)).unwrap();
        assert!(text.contains(r#""type":"auction.bid""#), "{text}");
        let back: Vec<Hook> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, vec![hook]);
    }
}
