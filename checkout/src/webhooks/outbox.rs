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
use vitrine_core::write_gate::WriteGate;
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
    let encoded = Hook::new(seller, kind, data).and_then(|hook| encode(&[hook]));
    let hooks = encoded.map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // Stamped by the system's clock: the store that calls this has no other.
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

/// Most fact rows one expansion claims.
pub(crate) const EXPAND_PAGE: i64 = 256;

/// `hooks_pending` of a row whose messages could not be decoded: kept (pruning spares it) for
/// an operator or a newer node, never tried again by this one.
const QUARANTINED: i32 = 2;

/// A claimed fact row: when it was written, by which node and under which number, and its
/// messages as stored.
type Claimed = (i64, String, i64, Option<String>);

/// Claims up to `limit` committed fact rows with messages not yet expanded, oldest first, and
/// writes their messages and deliveries (due at `now`), in one transaction taken in `gate`'s
/// turn (SQLite's one writer). A row whose messages cannot be decoded (a bug, or a newer
/// writer) is counted on `jobs` and set aside.
pub(crate) async fn expand(
    pool: &AnyPool,
    gate: &WriteGate,
    limit: i64,
    now: i64,
    jobs: &JobMetrics,
) -> Result<Expanded, CheckoutError> {
    // Most rounds find nothing: asked first, without a write transaction or SQLite's turn.
    let pending = sqlx::query("SELECT 1 FROM commerce_facts WHERE hooks_pending = 1 LIMIT 1")
        .fetch_optional(pool)
        .await?;
    if pending.is_none() {
        return Ok(Expanded::default());
    }
    let _turn = gate.enter().await;
    let mut tx = pool.begin().await?;
    let claimed = claim(&mut tx, limit, !gate.serialises()).await?;
    let mut done = Expanded {
        rows: claimed.len(),
        ..Expanded::default()
    };
    if claimed.is_empty() {
        return Ok(done);
    }
    done.messages = write_messages(&mut tx, claimed, now, jobs).await?;
    tx.commit().await?;
    Ok(done)
}

/// Marks up to `limit` pending rows expanded and returns them in the order they were written
/// (by time, and by number within a node). Under concurrent dispatchers a row another one
/// claimed first fails the re-checked condition and is skipped; on PostgreSQL (`skip_locked`)
/// rows another claim holds are passed over at once, so several nodes work on different rows.
async fn claim(
    tx: &mut Tx<'_>,
    limit: i64,
    skip_locked: bool,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lock = if skip_locked {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE commerce_facts SET hooks_pending = 0 \
         WHERE hooks_pending = 1 AND (origin, seq) IN (SELECT origin, seq FROM commerce_facts \
         WHERE hooks_pending = 1 ORDER BY created_at LIMIT $1{lock}) \
         RETURNING created_at, origin, seq, hooks"
    )))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect::<Result<Vec<Claimed>, sqlx::Error>>()?;
    claimed.sort();
    Ok(claimed)
}

/// Writes the claimed rows' messages that some endpoint takes, with their deliveries; how many.
async fn write_messages(
    tx: &mut Tx<'_>,
    claimed: Vec<Claimed>,
    now: i64,
    jobs: &JobMetrics,
) -> Result<usize, CheckoutError> {
    let mut subscriptions: HashMap<SellerId, Subscriptions> = HashMap::new();
    let mut written = 0;
    for (created_at, origin, seq, hooks) in claimed {
        let hooks = match serde_json::from_str::<Vec<Hook>>(hooks.as_deref().unwrap_or("[]")) {
            Ok(hooks) => hooks,
            Err(e) => {
                let error = CheckoutError::Corrupt(format!("webhook messages: {e}"));
                jobs.row_failed("webhooks", &format!("{origin}/{seq}"), &error);
                sqlx::query(
                    "UPDATE commerce_facts SET hooks_pending = $1 WHERE origin = $2 AND seq = $3",
                )
                .bind(QUARANTINED)
                .bind(&origin)
                .bind(seq)
                .execute(&mut **tx)
                .await?;
                continue;
            }
        };
        for hook in hooks {
            if !subscriptions.contains_key(&hook.seller) {
                let read = Subscriptions::of(tx, &hook.seller).await?;
                subscriptions.insert(hook.seller.clone(), read);
            }
            if subscriptions[&hook.seller].wants(hook.kind) {
                insert(tx, &hook, Timestamp(created_at), now).await?;
                written += 1;
            }
        }
    }
    Ok(written)
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
