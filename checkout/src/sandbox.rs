//! The built-in sandbox card processor. It behaves like a real one in what checkout must cope
//! with: confirmation arrives asynchronously after a latency, some cards decline, one never
//! answers, and its ledger survives a crash of the caller (it lives in its own table, as a real
//! processor's lives in its own data centre). Test cards:
//!
//! | number | outcome |
//! |---|---|
//! | 4242 4242 4242 4242, 5555 5555 5555 4444 | approved |
//! | 4000 0000 0000 0002 | declined (`card_declined`) |
//! | 4000 0000 0000 9995 | declined (`insufficient_funds`) |
//! | 4000 0000 0000 0119 | never settles (the caller's timeout path) |
//! | 4000 0000 0000 3220 | asks for 3-D Secure: the buyer approves or fails it at `/sandbox/payments/{id}` |
//! | 4000 0000 0000 0077 | confirmed later, as a bank debit is (after the sandbox's debit latency) |
//! | any other valid number | declined (`test_mode_live_card`), as real sandboxes do |

use crate::db::{now_ms, sql};
use crate::group::{Batcher, Turn, Writer};
use crate::payment::{ChargeRequest, Payment, PaymentError, PaymentProvider, PaymentStatus};
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use vitrine_core::{Currency, Money};

/// What the sandbox will do with a card.
fn outcome_of(digits: &str) -> (&'static str, Option<&'static str>) {
    match digits {
        "4242424242424242" | "5555555555554444" => ("approve", None),
        "4000000000000002" => ("decline", Some("card_declined")),
        "4000000000009995" => ("decline", Some("insufficient_funds")),
        "4000000000000119" => ("timeout", None),
        "4000000000003220" => ("action", None),
        "4000000000000077" => ("async", None),
        _ => ("decline", Some("test_mode_live_card")),
    }
}

/// The columns a payment is read from.
const PAYMENT_COLUMNS: &str = "id, reference, amount, currency, status, decline_code, outcome";

/// Where the buyer answers a payment's 3-D Secure check (the binary serves it), followed by
/// the payment's id.
pub const ACTION_PATH: &str = "/sandbox/payments/";

/// How long a debit takes to be confirmed unless told otherwise.
const DEBIT_LATENCY: Duration = Duration::from_secs(30);

pub struct SandboxProvider {
    pool: AnyPool,
    latency: Duration,
    /// New charges, written in batches.
    creates: Batcher<(), ChargeRequest, Result<Payment, PaymentError>>,
    writer: Arc<CreateWriter>,
}

impl SandboxProvider {
    /// `latency`: how long after creation a payment settles.
    pub fn new(pool: AnyPool, latency: Duration) -> Self {
        let writer = Arc::new(CreateWriter {
            pool: pool.clone(),
            latency,
            debit_latency: DEBIT_LATENCY,
            // Its writes queue at its database's gate on SQLite (the order path's, when it
            // shares the order path's database).
            gate: crate::db::WriteGate::of(&pool),
        });
        Self {
            pool,
            latency,
            creates: Batcher::new(crate::MAX_BATCH),
            writer,
        }
    }

    /// Where the sandbox keeps its books beside the SQLite database at `url`:
    /// `<name>-sandbox-processor.db` in the database's folder, so that every node on that
    /// database shares them whatever its data dir. `None` for a database in memory.
    pub fn books_beside(url: &str) -> Option<std::path::PathBuf> {
        use std::str::FromStr;
        if url.contains(":memory:") || url.contains("mode=memory") {
            return None;
        }
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
        let file = options.get_filename();
        let name = file.file_stem()?.to_string_lossy();
        if name.is_empty() {
            return None;
        }
        Some(file.with_file_name(format!("{name}-sandbox-processor.db")))
    }

    /// A sandbox keeping its books in a SQLite file of its own at `path`, as a real processor
    /// keeps them in its own systems: its writes never queue behind the order path's on one
    /// database's write lock, nor theirs behind its. The payments of a sandbox that kept its
    /// books in `shared` before (an older version) are carried over the first time, so that
    /// their orders can still be settled and refunded.
    pub async fn on_own_file(
        path: &std::path::Path,
        shared: &AnyPool,
        latency: Duration,
    ) -> Result<Self, crate::DbError> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let (pool, _) = crate::db::connect(&url).await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        carry_over(shared, &pool).await?;
        Ok(Self::new(pool, latency))
    }

    /// Where the sandbox keeps its books (for tests that look at them, or take them away).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Debits are confirmed `latency` after they are made (a real bank takes days).
    pub fn with_debit_latency(mut self, latency: Duration) -> Self {
        // A builder's step, before any charge: the writer is made again with the latency.
        self.writer = Arc::new(CreateWriter {
            debit_latency: latency,
            pool: self.writer.pool.clone(),
            latency: self.writer.latency,
            gate: self.writer.gate.clone(),
        });
        self
    }

    /// The buyer's answer to payment `id`'s 3-D Secure check: approved, the payment succeeds;
    /// failed, it is declined (`authentication_failed`). A payment already answered is returned
    /// as it is.
    pub async fn authenticate(&self, id: &str, approve: bool) -> Result<Payment, PaymentError> {
        let (status, code) = if approve {
            ("succeeded", None)
        } else {
            ("declined", Some("authentication_failed"))
        };
        sqlx::query(
            "UPDATE sandbox_payments SET status = $1, decline_code = $2 \
             WHERE id = $3 AND status = 'requires_action'",
        )
        .bind(status)
        .bind(code)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(Self::unavailable)?;
        self.payment(id).await?.ok_or(PaymentError::NotFound)
    }

    /// Payment `id` (the processor's id, not the order's reference), if there is one.
    pub async fn payment(&self, id: &str) -> Result<Option<Payment>, PaymentError> {
        let row = sqlx::query(sql(format!(
            "SELECT {PAYMENT_COLUMNS} FROM sandbox_payments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(Self::unavailable)?;
        row.as_ref().map(payment_from_row).transpose()
    }

    /// The bank's answer to the debit of `reference`, before its latency has passed (tests,
    /// and a demo that does not wait): collected, or returned unpaid (`debit_returned`).
    pub async fn answer_debit(&self, reference: &str, paid: bool) -> Result<Payment, PaymentError> {
        let (status, code) = if paid {
            ("succeeded", None)
        } else {
            ("declined", Some("debit_returned"))
        };
        sqlx::query(
            "UPDATE sandbox_payments SET status = $1, decline_code = $2 \
             WHERE reference = $3 AND status = 'processing' AND outcome = 'async'",
        )
        .bind(status)
        .bind(code)
        .bind(reference)
        .execute(&self.pool)
        .await
        .map_err(Self::unavailable)?;
        self.load(reference).await?.ok_or(PaymentError::NotFound)
    }

    fn unavailable(e: impl std::fmt::Display) -> PaymentError {
        PaymentError::Unavailable(e.to_string())
    }

    /// Moves a payment whose latency has passed to its final state.
    async fn settle(&self, reference: &str) -> Result<(), PaymentError> {
        sqlx::query(
            "UPDATE sandbox_payments SET status = CASE outcome WHEN 'approve' THEN 'succeeded' \
             WHEN 'async' THEN 'succeeded' ELSE 'declined' END \
             WHERE reference = $1 AND status = 'processing' AND outcome <> 'timeout' \
             AND settles_at <= $2",
        )
        .bind(reference)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(Self::unavailable)?;
        Ok(())
    }

    async fn load(&self, reference: &str) -> Result<Option<Payment>, PaymentError> {
        load(&self.pool, reference).await
    }

    /// The payment of `reference` as it stands now: one still processing is moved to its final
    /// state first when its latency has passed (only those: no write for the others).
    async fn current(&self, reference: &str) -> Result<Option<Payment>, PaymentError> {
        let payment = self.load(reference).await?;
        let processing = matches!(
            payment.as_ref().map(|p| &p.status),
            Some(PaymentStatus::Processing | PaymentStatus::AwaitingConfirmation)
        );
        if !processing {
            return Ok(payment);
        }
        self.settle(reference).await?;
        self.load(reference).await
    }
}

/// The sandbox's books on a database of their own. (On a shared database the migrations made
/// the same table: `0100_commerce.sql` and `0140_hardening.sql`.)
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS sandbox_payments (id TEXT PRIMARY KEY, \
     reference TEXT NOT NULL UNIQUE, amount BIGINT NOT NULL, currency TEXT NOT NULL, \
     card_last4 TEXT NOT NULL, outcome TEXT NOT NULL, status TEXT NOT NULL, decline_code TEXT, \
     refunded_amount BIGINT NOT NULL DEFAULT 0, settles_at BIGINT NOT NULL, \
     created_at BIGINT NOT NULL, refund_key TEXT)";

/// Every column, in the order both tables have them.
const ALL_COLUMNS: &str = "id, reference, amount, currency, card_last4, outcome, status, \
     decline_code, refunded_amount, settles_at, created_at, refund_key";

/// Payments copied per statement when the books move.
const CARRY_PAGE: i64 = 500;

/// Copies the payments of `shared`'s books into `own`'s once (the first start on a file of its
/// own), paging by id; a copy cut short by a crash starts again at the next start (rows already
/// there are kept), and a mark in `own` says when it is done.
async fn carry_over(shared: &AnyPool, own: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS sandbox_carried_over (done BIGINT NOT NULL)")
        .execute(own)
        .await?;
    let done: Option<i64> = sqlx::query_scalar("SELECT done FROM sandbox_carried_over")
        .fetch_optional(own)
        .await?;
    if done.is_some() {
        return Ok(());
    }
    let mut after = String::new();
    loop {
        let rows = sqlx::query(sql(format!(
            "SELECT {ALL_COLUMNS} FROM sandbox_payments WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(&after)
        .bind(CARRY_PAGE)
        .fetch_all(shared)
        .await?;
        let Some(last) = rows.last() else {
            sqlx::query("INSERT INTO sandbox_carried_over (done) VALUES ($1)")
                .bind(now_ms())
                .execute(own)
                .await?;
            return Ok(());
        };
        after = last.try_get(0)?;
        let mut insert = sqlx::query(sql(format!(
            "INSERT INTO sandbox_payments ({ALL_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING",
            crate::db::value_rows(rows.len(), 12)
        )));
        for r in &rows {
            insert = insert
                .bind(r.try_get::<String, _>(0)?)
                .bind(r.try_get::<String, _>(1)?)
                .bind(r.try_get::<i64, _>(2)?)
                .bind(r.try_get::<String, _>(3)?)
                .bind(r.try_get::<String, _>(4)?)
                .bind(r.try_get::<String, _>(5)?)
                .bind(r.try_get::<String, _>(6)?)
                .bind(r.try_get::<Option<String>, _>(7)?)
                .bind(r.try_get::<i64, _>(8)?)
                .bind(r.try_get::<i64, _>(9)?)
                .bind(r.try_get::<i64, _>(10)?)
                .bind(r.try_get::<Option<String>, _>(11)?);
        }
        insert.execute(own).await?;
    }
}

/// The payment of `reference`, if one was created.
async fn load(pool: &AnyPool, reference: &str) -> Result<Option<Payment>, PaymentError> {
    let row = sqlx::query(sql(format!(
        "SELECT {PAYMENT_COLUMNS} FROM sandbox_payments WHERE reference = $1"
    )))
    .bind(reference)
    .fetch_optional(pool)
    .await
    .map_err(SandboxProvider::unavailable)?;
    row.as_ref().map(payment_from_row).transpose()
}

/// Reads a payment from `PAYMENT_COLUMNS`.
fn payment_from_row(r: &sqlx::any::AnyRow) -> Result<Payment, PaymentError> {
    {
        let get = |i: usize| {
            r.try_get::<String, _>(i)
                .map_err(SandboxProvider::unavailable)
        };
        let currency =
            Currency::parse(&get(3)?).map_err(|e| PaymentError::Unavailable(e.to_string()))?;
        let id = get(0)?;
        let status = match get(4)?.as_str() {
            "processing" if get(6)? == "async" => PaymentStatus::AwaitingConfirmation,
            "processing" => PaymentStatus::Processing,
            "requires_action" => PaymentStatus::RequiresAction {
                url: format!("{ACTION_PATH}{id}"),
            },
            "succeeded" => PaymentStatus::Succeeded,
            "declined" => PaymentStatus::Declined {
                code: r
                    .try_get::<Option<String>, _>(5)
                    .map_err(SandboxProvider::unavailable)?
                    .unwrap_or_default(),
            },
            "cancelled" => PaymentStatus::Cancelled,
            "refunded" => PaymentStatus::Refunded,
            other => return Err(PaymentError::Unavailable(format!("bad status {other}"))),
        };
        Ok(Payment {
            id,
            reference: get(1)?,
            amount: Money {
                amount: r.try_get(2).map_err(SandboxProvider::unavailable)?,
                currency,
            },
            status,
        })
    }
}

/// Writes batches of new charges for [`SandboxProvider::create`].
struct CreateWriter {
    pool: AnyPool,
    latency: Duration,
    /// How long a debit (an asynchronous method) takes to be confirmed.
    debit_latency: Duration,
    gate: crate::db::WriteGate,
}

impl Writer<ChargeRequest, Result<Payment, PaymentError>> for Arc<CreateWriter> {
    async fn write(
        &self,
        requests: Vec<ChargeRequest>,
        turn: Turn,
    ) -> Vec<Result<Payment, PaymentError>> {
        let created = match self.insert(&requests, turn).await {
            Ok(created) => created,
            Err(e) => {
                return requests
                    .iter()
                    .map(|_| Err(SandboxProvider::unavailable(&e)))
                    .collect();
            }
        };
        let mut out = Vec::with_capacity(requests.len());
        for request in &requests {
            // A known reference (a retry) is answered from what it holds.
            out.push(match created.get(&request.reference) {
                Some(payment) => Ok(payment.clone()),
                None => load(&self.pool, &request.reference)
                    .await
                    .and_then(|p| p.ok_or(PaymentError::NotFound)),
            });
        }
        out
    }

    fn gate(&self) -> crate::db::WriteGate {
        self.gate.clone()
    }
}

impl CreateWriter {
    /// Inserts the charges whose reference is new; the payments it created, by reference.
    async fn insert(
        &self,
        requests: &[ChargeRequest],
        turn: Turn,
    ) -> Result<HashMap<String, Payment>, sqlx::Error> {
        let now = now_ms();
        // With no latency the answer is final at once, as a processor that confirms
        // synchronously answers (an outcome that never settles stays processing).
        let mut insert = sqlx::query(sql(format!(
            "INSERT INTO sandbox_payments (id, reference, amount, currency, card_last4, outcome, \
             status, decline_code, settles_at, created_at) VALUES {} \
             ON CONFLICT (reference) DO NOTHING RETURNING {PAYMENT_COLUMNS}",
            crate::db::value_rows(requests.len(), 10)
        )));
        for request in requests {
            let (outcome, decline) = outcome_of(request.card.digits());
            let status = match outcome {
                "approve" if self.latency.is_zero() => "succeeded",
                "decline" if self.latency.is_zero() => "declined",
                "action" => "requires_action",
                _ => "processing",
            };
            let latency = if outcome == "async" {
                self.debit_latency
            } else {
                self.latency
            };
            insert = insert
                .bind(vitrine_core::ids::random_id("py"))
                .bind(request.reference.clone())
                .bind(request.amount.amount)
                .bind(request.amount.currency.as_str())
                .bind(request.card.last4().to_owned())
                .bind(outcome)
                .bind(status)
                .bind(decline)
                .bind(now + latency.as_millis() as i64)
                .bind(now);
        }
        let turn = crate::group::turn_at(turn, &self.gate).await;
        let rows = insert.fetch_all(&self.pool).await?;
        drop(turn);
        let mut created = HashMap::with_capacity(rows.len());
        for row in &rows {
            let payment =
                payment_from_row(row).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            created.insert(payment.reference.clone(), payment);
        }
        Ok(created)
    }
}

#[async_trait::async_trait]
impl PaymentProvider for SandboxProvider {
    async fn create(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        // Charges arriving together are written together (group commit, one INSERT).
        self.creates
            .submit((), request.clone(), Arc::clone(&self.writer))
            .await
            .map_err(|_| PaymentError::Unavailable("the charge was lost; retry".into()))?
    }

    async fn retrieve(&self, reference: &str) -> Result<Option<Payment>, PaymentError> {
        self.current(reference).await
    }

    async fn wait(&self, reference: &str, timeout: Duration) -> Result<Payment, PaymentError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let payment = self
                .current(reference)
                .await?
                .ok_or(PaymentError::NotFound)?;
            let now = tokio::time::Instant::now();
            if payment.status != PaymentStatus::Processing || now >= deadline {
                return Ok(payment);
            }
            // The processor's confirmation latency: the sandbox's stand-in for waiting on its
            // webhook. Checks again at most every 50 ms.
            let step = self
                .latency
                .clamp(Duration::from_millis(5), Duration::from_millis(50));
            tokio::time::sleep_until((now + step).min(deadline)).await;
        }
    }

    async fn cancel(&self, reference: &str) -> Result<Payment, PaymentError> {
        self.settle(reference).await?;
        // Only a payment that has not settled (and cannot settle any more by now) is cancelled:
        // one waiting for its 3-D Secure answer, or still processing.
        sqlx::query(
            "UPDATE sandbox_payments SET status = 'cancelled' WHERE reference = $1 \
             AND (status = 'requires_action' \
             OR (status = 'processing' AND (outcome = 'timeout' OR settles_at > $2)))",
        )
        .bind(reference)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(Self::unavailable)?;
        self.current(reference).await?.ok_or(PaymentError::NotFound)
    }

    async fn refund(&self, reference: &str, key: &str) -> Result<Payment, PaymentError> {
        self.settle(reference).await?;
        let done = sqlx::query(
            "UPDATE sandbox_payments SET status = 'refunded', refunded_amount = amount, \
             refund_key = $2 WHERE reference = $1 AND status = 'succeeded'",
        )
        .bind(reference)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(Self::unavailable)?;
        let payment = self.load(reference).await?.ok_or(PaymentError::NotFound)?;
        if done.rows_affected() == 0 {
            // Only the refund that happened may be asked about again.
            let same: Option<String> =
                sqlx::query_scalar("SELECT refund_key FROM sandbox_payments WHERE reference = $1")
                    .bind(reference)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(Self::unavailable)?;
            if payment.status != PaymentStatus::Refunded || same.as_deref() != Some(key) {
                return Err(PaymentError::NotRefundable);
            }
        }
        Ok(payment)
    }
}

#[cfg(test)]
mod tests {
    use super::SandboxProvider;
    use std::path::Path;

    #[test]
    fn the_books_lie_beside_the_database_every_node_opens() {
        let beside = |url: &str| SandboxProvider::books_beside(url);
        assert_eq!(
            beside("sqlite:///var/lib/vitrine/vitrine.db?mode=rwc").as_deref(),
            Some(Path::new("/var/lib/vitrine/vitrine-sandbox-processor.db"))
        );
        assert_eq!(
            beside("sqlite://shop.db").as_deref(),
            Some(Path::new("shop-sandbox-processor.db"))
        );
        for in_memory in ["sqlite::memory:", "sqlite://shared?mode=memory"] {
            assert_eq!(beside(in_memory), None, "{in_memory}");
        }
    }
}
