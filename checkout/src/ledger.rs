//! The double-entry ledger of sellers' money. Every movement is an *entry* whose *postings*
//! sum to zero in its currency (debits positive, credits negative), written in the same
//! transaction as the change that caused it: a sale when an order is paid, a refund when it is
//! refunded, a payout and its completion or failure. Accounts:
//!
//! | account | meaning |
//! |---|---|
//! | `processor:clearing` | money held at the card processor (an asset) |
//! | `platform:fees` | the platform's fee income |
//! | `seller:{id}:available` | what the platform owes the seller, payable now |
//! | `seller:{id}:in_transit` | payouts on their way to the seller's bank |
//!
//! `seller_balances` is a projection of the two seller accounts, kept in the same transactions,
//! so that a payout can claim its amount with one conditional UPDATE (never more than the
//! available balance, however many payouts race), and reads are one row.

use crate::error::{CheckoutError, corrupt};
use serde::Serialize;
use sqlx::Row;
use vitrine_core::ids::random_id;
use vitrine_core::{Currency, SellerId, Timestamp};

pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// What caused an entry; with the reference, it is recorded at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Sale,
    Refund,
    Payout,
    PayoutPaid,
    PayoutFailed,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Sale => "sale",
            EntryKind::Refund => "refund",
            EntryKind::Payout => "payout",
            EntryKind::PayoutPaid => "payout_paid",
            EntryKind::PayoutFailed => "payout_failed",
        }
    }
}

/// An account of the chart above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    ProcessorClearing,
    PlatformFees,
    SellerAvailable(SellerId),
    SellerInTransit(SellerId),
}

impl Account {
    pub fn name(&self) -> String {
        match self {
            Account::ProcessorClearing => "processor:clearing".into(),
            Account::PlatformFees => "platform:fees".into(),
            Account::SellerAvailable(s) => format!("seller:{s}:available"),
            Account::SellerInTransit(s) => format!("seller:{s}:in_transit"),
        }
    }
}

/// One entry about to be written.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: EntryKind,
    pub reference: String,
    pub seller: SellerId,
    pub currency: Currency,
    pub postings: Vec<(Account, i64)>,
}

impl Entry {
    /// Checks the double-entry rule: postings sum to zero and none is zero.
    pub fn check(&self) -> Result<(), CheckoutError> {
        let sum: i128 = self.postings.iter().map(|(_, a)| i128::from(*a)).sum();
        if sum != 0 || self.postings.iter().any(|(_, a)| *a == 0) || self.postings.len() < 2 {
            return Err(CheckoutError::Corrupt(format!(
                "unbalanced ledger entry {} {}: {:?}",
                self.kind.as_str(),
                self.reference,
                self.postings
            )));
        }
        Ok(())
    }

    /// How the entry moves the seller's two balances (credit-normal: a credit raises them).
    fn seller_deltas(&self) -> (i64, i64) {
        let mut available = 0;
        let mut in_transit = 0;
        for (account, amount) in &self.postings {
            match account {
                Account::SellerAvailable(s) if *s == self.seller => available -= amount,
                Account::SellerInTransit(s) if *s == self.seller => in_transit -= amount,
                _ => {}
            }
        }
        (available, in_transit)
    }
}

/// The entry an order's move to `next` makes, if any: a sale when paid (the processor holds the
/// total; the seller is owed it less the fee), a refund when refunded (the seller gives the
/// total back; the platform keeps its fee, as card processors keep theirs).
pub(crate) fn for_order(
    order: &crate::Order,
    next: crate::OrderStatus,
    fees: &crate::fees::FeePolicy,
) -> Option<Entry> {
    let total = order.total.amount;
    let seller = order.seller_id.clone();
    let (kind, postings) = match next {
        crate::OrderStatus::Paid => {
            let fee = fees.sale_fee(total);
            (
                EntryKind::Sale,
                vec![
                    (Account::ProcessorClearing, total),
                    (Account::SellerAvailable(seller.clone()), -(total - fee)),
                    (Account::PlatformFees, -fee),
                ],
            )
        }
        crate::OrderStatus::Refunded => (
            EntryKind::Refund,
            vec![
                (Account::SellerAvailable(seller.clone()), total),
                (Account::ProcessorClearing, -total),
            ],
        ),
        _ => return None,
    };
    let postings: Vec<_> = postings.into_iter().filter(|(_, a)| *a != 0).collect();
    (postings.len() >= 2).then(|| Entry {
        kind,
        reference: order.id.to_string(),
        seller,
        currency: order.total.currency,
        postings,
    })
}

/// Writes an entry and its postings. Returns false (writing nothing) when an entry of this kind
/// and reference exists: each order is a sale once, each payout paid once.
pub(crate) async fn post_entry(
    tx: &mut Tx<'_>,
    entry: &Entry,
    now: i64,
) -> Result<bool, CheckoutError> {
    entry.check()?;
    let id = random_id("le");
    let inserted = sqlx::query(
        "INSERT INTO ledger_entries (id, kind, reference, seller_id, currency, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, reference) DO NOTHING",
    )
    .bind(&id)
    .bind(entry.kind.as_str())
    .bind(&entry.reference)
    .bind(entry.seller.as_str())
    .bind(entry.currency.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    // All postings in one statement: one round trip, whatever their number.
    let values: Vec<String> = (0..entry.postings.len())
        .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
        .collect();
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ledger_postings (entry_id, account, amount) VALUES {}",
        values.join(", ")
    )));
    for (account, amount) in &entry.postings {
        insert = insert.bind(id.clone()).bind(account.name()).bind(*amount);
    }
    insert.execute(&mut **tx).await?;
    Ok(true)
}

/// Writes an entry and moves the seller's balances by it.
pub(crate) async fn post(tx: &mut Tx<'_>, entry: &Entry, now: i64) -> Result<bool, CheckoutError> {
    if !post_entry(tx, entry, now).await? {
        return Ok(false);
    }
    let (available, in_transit) = entry.seller_deltas();
    sqlx::query(
        "INSERT INTO seller_balances (seller_id, currency, available, in_transit) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (seller_id, currency) DO UPDATE SET \
         available = seller_balances.available + excluded.available, \
         in_transit = seller_balances.in_transit + excluded.in_transit",
    )
    .bind(entry.seller.as_str())
    .bind(entry.currency.as_str())
    .bind(available)
    .bind(in_transit)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Claims `amount` of the seller's available balance for a payout, or returns false when the
/// balance is short. One conditional UPDATE: concurrent payouts serialise on the row and each
/// sees the balance the previous one left.
pub(crate) async fn claim(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    currency: Currency,
    amount: i64,
    to_transit: i64,
) -> Result<bool, CheckoutError> {
    let done = sqlx::query(
        "UPDATE seller_balances SET available = available - $1, in_transit = in_transit + $2 \
         WHERE seller_id = $3 AND currency = $4 AND available >= $1",
    )
    .bind(amount)
    .bind(to_transit)
    .bind(seller.as_str())
    .bind(currency.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A seller's balance in one currency.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Balance {
    pub currency: Currency,
    /// Minor units payable now (negative when refunds exceed sales: recovered from the next
    /// sales).
    pub available: i64,
    /// Minor units on their way to the seller's bank.
    pub in_transit: i64,
}

/// A ledger entry as the seller's statement shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = LedgerEntry)]
pub struct StatementLine {
    pub id: String,
    #[schema(value_type = EntryKind)]
    pub kind: String,
    /// The order or payout id.
    pub reference: String,
    pub currency: Currency,
    /// The change to the seller's available balance, in minor units.
    pub available_change: i64,
    pub created_at: Timestamp,
}

impl crate::Checkout {
    pub async fn balances(&self, seller: &SellerId) -> Result<Vec<Balance>, CheckoutError> {
        let rows = sqlx::query(
            "SELECT currency, available, in_transit FROM seller_balances WHERE seller_id = $1 \
             ORDER BY currency",
        )
        .bind(seller.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Balance {
                    currency: Currency::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
                    available: r.try_get(1)?,
                    in_transit: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// The seller's ledger entries, newest first.
    pub async fn statement(
        &self,
        seller: &SellerId,
        limit: i64,
    ) -> Result<Vec<StatementLine>, CheckoutError> {
        let rows = sqlx::query(
            "SELECT e.id, e.kind, e.reference, e.currency, e.created_at, \
             CAST(COALESCE(SUM(CASE WHEN p.account = $2 THEN -p.amount ELSE 0 END), 0) AS BIGINT) \
             FROM ledger_entries e JOIN ledger_postings p ON p.entry_id = e.id \
             WHERE e.seller_id = $1 GROUP BY e.id, e.kind, e.reference, e.currency, e.created_at \
             ORDER BY e.created_at DESC, e.id DESC LIMIT $3",
        )
        .bind(seller.as_str())
        .bind(Account::SellerAvailable(seller.clone()).name())
        .bind(limit.clamp(1, 200))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StatementLine {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    reference: r.try_get(2)?,
                    currency: Currency::parse(&r.try_get::<String, _>(3)?).map_err(corrupt)?,
                    created_at: Timestamp(r.try_get(4)?),
                    available_change: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The ledger's invariants, for tests and operators: every currency's postings sum to zero,
    /// and every seller balance equals its accounts' postings.
    pub async fn ledger_check(&self) -> Result<Vec<String>, CheckoutError> {
        let mut problems = vec![];
        let sums = sqlx::query(
            "SELECT e.currency, CAST(SUM(p.amount) AS BIGINT) FROM ledger_postings p \
             JOIN ledger_entries e ON e.id = p.entry_id GROUP BY e.currency",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &sums {
            let (currency, sum): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
            if sum != 0 {
                problems.push(format!("{currency} postings sum to {sum}"));
            }
        }
        let balances =
            sqlx::query("SELECT seller_id, currency, available, in_transit FROM seller_balances")
                .fetch_all(&self.pool)
                .await?;
        for r in &balances {
            let seller = SellerId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
            let currency: String = r.try_get(1)?;
            for (account, stored) in [
                (
                    Account::SellerAvailable(seller.clone()),
                    r.try_get::<i64, _>(2)?,
                ),
                (
                    Account::SellerInTransit(seller.clone()),
                    r.try_get::<i64, _>(3)?,
                ),
            ] {
                let sum: i64 = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM ledger_postings p \
                     JOIN ledger_entries e ON e.id = p.entry_id \
                     WHERE p.account = $1 AND e.currency = $2",
                )
                .bind(account.name())
                .bind(&currency)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
                if -sum != stored {
                    problems.push(format!(
                        "{} {currency}: balance {stored}, postings {}",
                        account.name(),
                        -sum
                    ));
                }
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seller() -> SellerId {
        SellerId::parse("sl_000000000000000000000001").unwrap()
    }

    #[test]
    fn entries_must_balance() {
        let s = seller();
        let ok = Entry {
            kind: EntryKind::Sale,
            reference: "or_1".into(),
            seller: s.clone(),
            currency: Currency::parse("EUR").unwrap(),
            postings: vec![
                (Account::ProcessorClearing, 1000),
                (Account::SellerAvailable(s.clone()), -941),
                (Account::PlatformFees, -59),
            ],
        };
        ok.check().unwrap();
        assert_eq!(ok.seller_deltas(), (941, 0));
        let mut bad = ok.clone();
        bad.postings[1].1 = -940;
        assert!(bad.check().is_err());
        let mut zero = ok;
        zero.postings = vec![(Account::ProcessorClearing, 0), (Account::PlatformFees, 0)];
        assert!(zero.check().is_err());
    }
}
