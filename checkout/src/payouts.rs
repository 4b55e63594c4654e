//! Payouts: money leaving a seller's available balance for the seller's bank, through a
//! [`PayoutProvider`] (the payout rail; the built-in [`SandboxPayouts`] behaves like one).
//! A payout first claims its amount from the balance in one conditional UPDATE (so no race of
//! payouts can overdraw it) and posts the ledger entry in the same transaction; only then is
//! the provider asked, keyed by the payout id so a retry never pays twice. The outcome posts a
//! second entry: paid (the money left the processor's account) or failed (the balance, and any
//! instant fee, come back). Standard payouts are free and arrive later; instant ones arrive at
//! once for a fee. A scheduled run pays out each seller's whole available balance.

use crate::db::now_ms;
use crate::error::{CheckoutError, corrupt};
use crate::fees::FeePolicy;
use crate::jobs::JobMetrics;
use crate::ledger::{self, Account, Entry, EntryKind};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use std::sync::Arc;
use std::time::Duration;
use vitrine_core::ids::random_id;
use vitrine_core::time::Clock;
use vitrine_core::{Currency, Money, SellerId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutMethod {
    /// Free; arrives after the rail's settlement time.
    #[default]
    Standard,
    /// Arrives at once, for a fee.
    Instant,
}

impl PayoutMethod {
    fn as_str(self) -> &'static str {
        match self {
            PayoutMethod::Standard => "standard",
            PayoutMethod::Instant => "instant",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    InTransit,
    Paid,
    Failed,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayout {
    /// Taken from the available balance (an instant payout's fee comes out of it).
    pub amount: Money,
    /// `standard` when absent.
    #[serde(default)]
    pub method: PayoutMethod,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Payout {
    pub id: String,
    /// Taken from the balance.
    pub amount: Money,
    pub fee: Money,
    /// Sent to the bank: amount minus fee.
    pub net: Money,
    pub method: PayoutMethod,
    pub status: PayoutStatus,
    /// Why the rail refused a failed payout (e.g. `account_closed`); its amount goes back to
    /// the available balance.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub failure: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(skip)]
    pub seller: SellerId,
}

/// What the rail is asked to send.
#[derive(Debug, Clone)]
pub struct PayoutRequest {
    /// The payout id: the rail's idempotency key.
    pub reference: String,
    pub seller: SellerId,
    pub amount: Money,
    pub instant: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RailStatus {
    InTransit,
    Paid,
    Failed { code: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("payout rail unavailable: {0}")]
    Unavailable(String),
}

/// The payout rail (a bank transfer or card push service).
#[async_trait]
pub trait PayoutProvider: Send + Sync + 'static {
    /// Sends a payout, or for a known reference returns where it stands.
    async fn send(&self, request: &PayoutRequest) -> Result<RailStatus, PayoutError>;
    /// Where a payout stands; `None` if the rail never received it.
    async fn status(&self, reference: &str) -> Result<Option<RailStatus>, PayoutError>;
}

/// The built-in sandbox rail: instant payouts land at once, standard ones after a delay; an
/// amount whose last two minor-unit digits are 13 is refused by the "bank" (`account_closed`),
/// so that the failure path can be tried. Its records live in a table, as a real rail's live
/// elsewhere, so they survive a restart of the server.
pub struct SandboxPayouts {
    pool: AnyPool,
    standard_delay: Duration,
}

impl SandboxPayouts {
    pub fn new(pool: AnyPool, standard_delay: Duration) -> Self {
        Self {
            pool,
            standard_delay,
        }
    }

    fn outcome(amount: i64) -> Option<&'static str> {
        (amount % 100 == 13).then_some("account_closed")
    }
}

#[async_trait]
impl PayoutProvider for SandboxPayouts {
    async fn send(&self, r: &PayoutRequest) -> Result<RailStatus, PayoutError> {
        let now = now_ms();
        let arrives = if r.instant {
            now
        } else {
            now + self.standard_delay.as_millis() as i64
        };
        sqlx::query(
            "INSERT INTO sandbox_payouts (reference, amount, currency, arrives_at, failure) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (reference) DO NOTHING",
        )
        .bind(&r.reference)
        .bind(r.amount.amount)
        .bind(r.amount.currency.as_str())
        .bind(arrives)
        .bind(Self::outcome(r.amount.amount))
        .execute(&self.pool)
        .await
        .map_err(|e| PayoutError::Unavailable(e.to_string()))?;
        Ok(self
            .status(&r.reference)
            .await?
            .unwrap_or(RailStatus::InTransit))
    }

    async fn status(&self, reference: &str) -> Result<Option<RailStatus>, PayoutError> {
        let row =
            sqlx::query("SELECT arrives_at, failure FROM sandbox_payouts WHERE reference = $1")
                .bind(reference)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| PayoutError::Unavailable(e.to_string()))?;
        let unavailable = |e: sqlx::Error| PayoutError::Unavailable(e.to_string());
        Ok(match row {
            None => None,
            Some(r) => {
                let arrives: i64 = r.try_get(0).map_err(unavailable)?;
                let failure: Option<String> = r.try_get(1).map_err(unavailable)?;
                Some(match failure {
                    Some(code) => RailStatus::Failed { code },
                    None if arrives <= now_ms() => RailStatus::Paid,
                    None => RailStatus::InTransit,
                })
            }
        })
    }
}

const COLUMNS: &str =
    "id, seller_id, amount, fee, currency, method, status, failure, created_at, updated_at";

fn payout_from_row(r: &AnyRow) -> Result<Payout, CheckoutError> {
    let currency = Currency::parse(&r.try_get::<String, _>(4)?).map_err(corrupt)?;
    let money = |a: i64| Money {
        amount: a,
        currency,
    };
    let (amount, fee): (i64, i64) = (r.try_get(2)?, r.try_get(3)?);
    Ok(Payout {
        id: r.try_get(0)?,
        seller: SellerId::parse(&r.try_get::<String, _>(1)?).map_err(corrupt)?,
        amount: money(amount),
        fee: money(fee),
        net: money(amount - fee),
        method: match r.try_get::<String, _>(5)?.as_str() {
            "instant" => PayoutMethod::Instant,
            _ => PayoutMethod::Standard,
        },
        status: match r.try_get::<String, _>(6)?.as_str() {
            "in_transit" => PayoutStatus::InTransit,
            "paid" => PayoutStatus::Paid,
            "failed" => PayoutStatus::Failed,
            other => return Err(corrupt(format!("payout status {other}"))),
        },
        failure: r.try_get(7)?,
        created_at: Timestamp(r.try_get(8)?),
        updated_at: Timestamp(r.try_get(9)?),
    })
}

/// The payouts service: sellers' requests, the scheduled run and the reconciliation with the
/// rail. It claims from the ledger's balances and knows nothing of the order path. Cheap to
/// clone.
#[derive(Clone)]
pub struct Payouts {
    pool: AnyPool,
    /// The rail payouts are sent through.
    pub(crate) rail: Arc<dyn PayoutProvider>,
    fees: FeePolicy,
    /// Counts payouts a pass could not process.
    jobs: JobMetrics,
    /// Where the payouts' time comes from (tests move it).
    pub(crate) clock: Arc<dyn Clock>,
}

impl Payouts {
    /// Payouts through the built-in sandbox rail.
    pub(crate) fn new(
        pool: AnyPool,
        fees: FeePolicy,
        jobs: JobMetrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            rail: Arc::new(SandboxPayouts::new(pool.clone(), Duration::from_secs(2))),
            pool,
            fees,
            jobs,
            clock,
        }
    }

    /// Requests a payout. `key` makes a retried request return the first one's payout.
    pub async fn request_payout(
        &self,
        seller: &SellerId,
        key: Option<&str>,
        new: NewPayout,
    ) -> Result<Payout, CheckoutError> {
        let amount = new.amount.amount;
        if amount <= 0 {
            return Err(CheckoutError::Invalid("amount must be positive".into()));
        }
        if let Some(k) = key
            && let Some(existing) = self.payout_by_key(seller, k).await?
        {
            if existing.amount != new.amount || existing.method != new.method {
                return Err(CheckoutError::Conflict(
                    "this Idempotency-Key was used for another payout".into(),
                ));
            }
            return Ok(existing);
        }
        let fee = match new.method {
            PayoutMethod::Instant => self.fees.instant_payout_fee(amount),
            PayoutMethod::Standard => 0,
        };
        let net = amount - fee;
        if net <= 0 {
            return Err(CheckoutError::Invalid(
                "the amount does not cover the instant payout fee".into(),
            ));
        }
        let currency = new.amount.currency;
        let id = random_id("po");
        let now = self.clock.now_ms();
        let mut tx = self.pool.begin().await?;
        if !ledger::claim(&mut tx, seller, currency, amount, net).await? {
            tx.rollback().await?;
            return Err(CheckoutError::InsufficientBalance);
        }
        let inserted = sqlx::query(
            "INSERT INTO payouts (id, seller_id, amount, fee, currency, method, status, \
             idempotency_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'in_transit', $7, $8, $8) \
             ON CONFLICT (seller_id, idempotency_key) DO NOTHING",
        )
        .bind(&id)
        .bind(seller.as_str())
        .bind(amount)
        .bind(fee)
        .bind(currency.as_str())
        .bind(new.method.as_str())
        .bind(key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // A concurrent request with the same key won: answer with its payout.
            tx.rollback().await?;
            return self
                .payout_by_key(seller, key.unwrap_or_default())
                .await?
                .ok_or(CheckoutError::NotFound("no such payout"));
        }
        let mut postings = vec![
            (Account::SellerAvailable(seller.clone()), amount),
            (Account::SellerInTransit(seller.clone()), -net),
        ];
        if fee > 0 {
            postings.push((Account::PlatformFees, -fee));
        }
        let entry = Entry {
            kind: EntryKind::Payout,
            reference: id.clone(),
            seller: seller.clone(),
            currency,
            postings,
        };
        ledger::post_entry(&mut tx, &entry, now).await?;
        tx.commit().await?;
        tracing::info!(payout = %id, seller = %seller, amount, fee, "payout requested");
        let payout = self.payout(seller, &id).await?;
        self.send_payout(&payout).await?;
        self.payout(seller, &id).await
    }

    async fn send_payout(&self, p: &Payout) -> Result<(), CheckoutError> {
        let request = PayoutRequest {
            reference: p.id.clone(),
            seller: p.seller.clone(),
            amount: p.net,
            instant: p.method == PayoutMethod::Instant,
        };
        match self.rail.send(&request).await {
            Ok(status) => self.settle_payout(p, status).await,
            Err(e) => {
                // Left in transit; the reconciler asks the rail again.
                tracing::warn!(payout = %p.id, error = %e, "payout rail unavailable");
                Ok(())
            }
        }
    }

    /// Records the rail's answer: paid or failed end the payout with a ledger entry.
    async fn settle_payout(&self, p: &Payout, status: RailStatus) -> Result<(), CheckoutError> {
        let (state, failure, postings) = match &status {
            RailStatus::InTransit => return Ok(()),
            RailStatus::Paid => (
                "paid",
                None,
                vec![
                    (Account::SellerInTransit(p.seller.clone()), p.net.amount),
                    (Account::ProcessorClearing, -p.net.amount),
                ],
            ),
            RailStatus::Failed { code } => {
                let mut postings = vec![
                    (Account::SellerInTransit(p.seller.clone()), p.net.amount),
                    (Account::SellerAvailable(p.seller.clone()), -p.amount.amount),
                ];
                if p.fee.amount > 0 {
                    postings.push((Account::PlatformFees, p.fee.amount));
                }
                ("failed", Some(code.clone()), postings)
            }
        };
        let now = self.clock.now_ms();
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE payouts SET status = $1, failure = $2, updated_at = $3 \
             WHERE id = $4 AND status = 'in_transit'",
        )
        .bind(state)
        .bind(failure)
        .bind(now)
        .bind(&p.id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        let kind = if state == "paid" {
            EntryKind::PayoutPaid
        } else {
            EntryKind::PayoutFailed
        };
        let entry = Entry {
            kind,
            reference: p.id.clone(),
            seller: p.seller.clone(),
            currency: p.amount.currency,
            postings,
        };
        ledger::post(&mut tx, &entry, now).await?;
        tx.commit().await?;
        tracing::info!(payout = %p.id, status = state, "payout settled");
        Ok(())
    }

    pub async fn payout(&self, seller: &SellerId, id: &str) -> Result<Payout, CheckoutError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM payouts WHERE id = $1 AND seller_id = $2"
        )))
        .bind(id)
        .bind(seller.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(CheckoutError::NotFound("no such payout"))?;
        payout_from_row(&row)
    }

    async fn payout_by_key(
        &self,
        seller: &SellerId,
        key: &str,
    ) -> Result<Option<Payout>, CheckoutError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM payouts WHERE seller_id = $1 AND idempotency_key = $2"
        )))
        .bind(seller.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(payout_from_row).transpose()
    }

    /// The seller's payouts, newest first.
    pub async fn payouts_of(
        &self,
        seller: &SellerId,
        limit: i64,
    ) -> Result<Vec<Payout>, CheckoutError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM payouts WHERE seller_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        )))
        .bind(seller.as_str())
        .bind(limit.clamp(1, 200))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(payout_from_row).collect()
    }

    /// Asks the rail about every payout still in transit (and resends those it never got).
    pub async fn reconcile_payouts(&self) -> Result<usize, CheckoutError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM payouts WHERE status = 'in_transit' ORDER BY created_at LIMIT 500"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut settled = 0;
        for row in &rows {
            let id: String = row.try_get(0).unwrap_or_default();
            match self.reconcile_one(row).await {
                Ok(done) => settled += usize::from(done),
                Err(e) => self.jobs.row_failed("payouts", &id, &e),
            }
        }
        Ok(settled)
    }

    /// Asks the rail about one payout in transit; true when it settled.
    async fn reconcile_one(&self, row: &AnyRow) -> Result<bool, CheckoutError> {
        let p = payout_from_row(row)?;
        match self.rail.status(&p.id).await {
            Ok(Some(RailStatus::InTransit)) => Ok(false),
            Ok(Some(status)) => {
                self.settle_payout(&p, status).await?;
                Ok(true)
            }
            Ok(None) => {
                self.send_payout(&p).await?;
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(payout = %p.id, error = %e, "payout rail unavailable");
                Ok(false)
            }
        }
    }

    /// Today's scheduled payout of one balance row, if it is due and the balance still holds.
    async fn scheduled_payout(
        &self,
        r: &AnyRow,
        day: &str,
    ) -> Result<Option<Payout>, CheckoutError> {
        let seller = SellerId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
        let currency = Currency::parse(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
        let available: i64 = r.try_get(2)?;
        let key = format!("scheduled-{currency}-{day}", currency = currency.as_str());
        let new = NewPayout {
            amount: Money {
                amount: available,
                currency,
            },
            method: PayoutMethod::Standard,
        };
        match self.request_payout(&seller, Some(&key), new).await {
            Ok(p) => Ok(Some(p)),
            // The balance moved since it was read, or today's run already paid: next run.
            Err(CheckoutError::InsufficientBalance | CheckoutError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The scheduled run: each seller's whole available balance at least `minimum` (in minor
    /// units) goes out as a standard payout, once per UTC day and currency.
    pub async fn run_scheduled_payouts(&self, minimum: i64) -> Result<Vec<Payout>, CheckoutError> {
        let rows = sqlx::query(
            "SELECT seller_id, currency, available FROM seller_balances WHERE available >= $1",
        )
        .bind(minimum.max(1))
        .fetch_all(&self.pool)
        .await?;
        let day = Timestamp(self.clock.now_ms()).to_string()[..10].to_owned();
        let mut made = vec![];
        for r in &rows {
            let seller: String = r.try_get(0).unwrap_or_default();
            match self.scheduled_payout(r, &day).await {
                Ok(Some(p)) => made.push(p),
                Ok(None) => {}
                Err(e) => self.jobs.row_failed("payouts", &seller, &e),
            }
        }
        Ok(made)
    }
}
