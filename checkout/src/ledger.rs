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
//! | `seller:{id}:debt` | what the seller owes the platform: refunds beyond the balance |
//!
//! A refund takes what it can from the available balance and posts the rest as debt, so the
//! available balance never goes below zero unrecorded (a refund after a payout would otherwise
//! leave a hole); the seller's next sales repay the debt before they add to the balance.
//!
//! `seller_balances` is a projection of the three seller accounts, kept in the same transactions,
//! so that a payout can claim its amount with one conditional UPDATE (never more than the
//! available balance, however many payouts race), and reads are one row.

use crate::error::{CheckoutError, corrupt};
use serde::Serialize;
use sqlx::Row;
use vitrine_core::ids::ordered_id;
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
    SellerDebt(SellerId),
}

impl Account {
    pub fn name(&self) -> String {
        match self {
            Account::ProcessorClearing => "processor:clearing".into(),
            Account::PlatformFees => "platform:fees".into(),
            Account::SellerAvailable(s) => format!("seller:{s}:available"),
            Account::SellerInTransit(s) => format!("seller:{s}:in_transit"),
            Account::SellerDebt(s) => format!("seller:{s}:debt"),
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

    /// How the entry moves the seller's balances: available and in transit are owed to the
    /// seller (a credit raises them), debt is owed by the seller (a debit raises it).
    fn seller_deltas(&self) -> (i64, i64, i64) {
        let (mut available, mut in_transit, mut debt) = (0, 0, 0);
        for (account, amount) in &self.postings {
            match account {
                Account::SellerAvailable(s) if *s == self.seller => available -= amount,
                Account::SellerInTransit(s) if *s == self.seller => in_transit -= amount,
                Account::SellerDebt(s) if *s == self.seller => debt += amount,
                _ => {}
            }
        }
        (available, in_transit, debt)
    }
}

/// A sale: the processor holds the total; the seller is owed it less the fee, of which what
/// the seller owes (`debt`) is repaid first.
fn sale_postings(seller: &SellerId, total: i64, fee: i64, debt: i64) -> Vec<(Account, i64)> {
    let net = total - fee;
    let repay = debt.clamp(0, net.max(0));
    vec![
        (Account::ProcessorClearing, total),
        (Account::SellerDebt(seller.clone()), -repay),
        (Account::SellerAvailable(seller.clone()), -(net - repay)),
        (Account::PlatformFees, -fee),
    ]
}

/// A refund: the seller gives the total back (the platform keeps its fee, as card processors
/// keep theirs), from the available balance as far as it goes, the rest as debt.
fn refund_postings(seller: &SellerId, total: i64, available: i64) -> Vec<(Account, i64)> {
    let covered = available.clamp(0, total);
    vec![
        (Account::SellerAvailable(seller.clone()), covered),
        (Account::SellerDebt(seller.clone()), total - covered),
        (Account::ProcessorClearing, -total),
    ]
}

/// The seller's available balance and debt, with the row locked until the transaction ends
/// (PostgreSQL; SQLite's writer already holds the database), so that concurrent sales and
/// refunds of one seller each see what the previous one left.
async fn locked_balance(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    currency: Currency,
) -> Result<(i64, i64), CheckoutError> {
    // Made if missing, so that a seller's first sale locks the row too: a concurrent refund
    // that would create it with a debt waits, and the sale sees that debt.
    let r = sqlx::query(
        "INSERT INTO seller_balances (seller_id, currency, available, in_transit, debt) \
         VALUES ($1, $2, 0, 0, 0) ON CONFLICT (seller_id, currency) \
         DO UPDATE SET debt = seller_balances.debt RETURNING available, debt",
    )
    .bind(seller.as_str())
    .bind(currency.as_str())
    .fetch_one(&mut **tx)
    .await?;
    Ok((r.try_get(0)?, r.try_get(1)?))
}

/// Posts the entry an order's move to `next` makes, if any: a sale when paid, a refund when
/// refunded.
pub(crate) async fn post_for_order(
    tx: &mut Tx<'_>,
    order: &crate::Order,
    next: crate::OrderStatus,
    fees: &crate::fees::FeePolicy,
    now: i64,
) -> Result<(), CheckoutError> {
    let total = order.total.amount;
    let seller = &order.seller_id;
    let (kind, postings) = match next {
        crate::OrderStatus::Paid => {
            let (_, debt) = locked_balance(tx, seller, order.total.currency).await?;
            let fee = fees.sale_fee(total);
            (EntryKind::Sale, sale_postings(seller, total, fee, debt))
        }
        crate::OrderStatus::Refunded => {
            let (available, _) = locked_balance(tx, seller, order.total.currency).await?;
            (EntryKind::Refund, refund_postings(seller, total, available))
        }
        _ => return Ok(()),
    };
    let postings: Vec<_> = postings.into_iter().filter(|(_, a)| *a != 0).collect();
    if postings.len() < 2 {
        return Ok(());
    }
    let entry = Entry {
        kind,
        reference: order.id.to_string(),
        seller: seller.clone(),
        currency: order.total.currency,
        postings,
    };
    post(tx, &entry, now).await?;
    Ok(())
}

/// Posts the sales of a batch of orders of one seller just paid (see [`post_for_order`]): the
/// balance row locked once per currency, the debt repaid in order, the entries in one INSERT,
/// their postings in another, the balance moved once. An order that already has its sale entry
/// makes the whole call fail (the caller writes the batch again one order at a time).
pub(crate) async fn post_sales(
    tx: &mut Tx<'_>,
    orders: &[&crate::Order],
    fees: &crate::fees::FeePolicy,
    now: i64,
) -> Result<(), CheckoutError> {
    let mut currencies: Vec<Currency> = orders.iter().map(|o| o.total.currency).collect();
    currencies.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    currencies.dedup();
    for currency in currencies {
        let of_currency: Vec<&&crate::Order> = orders
            .iter()
            .filter(|o| o.total.currency == currency)
            .collect();
        let seller = &of_currency[0].seller_id;
        let (_, mut debt) = locked_balance(tx, seller, currency).await?;
        let mut entries = Vec::with_capacity(of_currency.len());
        for order in of_currency {
            let total = order.total.amount;
            let postings = sale_postings(seller, total, fees.sale_fee(total), debt);
            let postings: Vec<_> = postings.into_iter().filter(|(_, a)| *a != 0).collect();
            if postings.len() < 2 {
                continue;
            }
            let entry = Entry {
                kind: EntryKind::Sale,
                reference: order.id.to_string(),
                seller: seller.clone(),
                currency,
                postings,
            };
            entry.check()?;
            debt += entry.seller_deltas().2;
            entries.push(entry);
        }
        post_many(tx, &entries, now).await?;
    }
    Ok(())
}

/// Writes entries of one seller and currency, their postings, and the balance's move by them.
async fn post_many(tx: &mut Tx<'_>, entries: &[Entry], now: i64) -> Result<(), CheckoutError> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let ids: Vec<String> = entries.iter().map(|_| ordered_id("le")).collect();
    let mut insert = sqlx::query(crate::db::sql(format!(
        "INSERT INTO ledger_entries (id, kind, reference, seller_id, currency, created_at) \
         VALUES {} ON CONFLICT (kind, reference) DO NOTHING",
        crate::db::value_rows(entries.len(), 6)
    )));
    for (id, entry) in ids.iter().zip(entries) {
        insert = insert
            .bind(id.clone())
            .bind(entry.kind.as_str())
            .bind(entry.reference.clone())
            .bind(entry.seller.to_string())
            .bind(entry.currency.as_str())
            .bind(now);
    }
    if insert.execute(&mut **tx).await?.rows_affected() != entries.len() as u64 {
        return Err(CheckoutError::Conflict(
            "an order of the batch already has its ledger entry".into(),
        ));
    }
    let count: usize = entries.iter().map(|e| e.postings.len()).sum();
    let mut postings = sqlx::query(crate::db::sql(format!(
        "INSERT INTO ledger_postings (entry_id, account, amount) VALUES {}",
        crate::db::value_rows(count, 3)
    )));
    let (mut available, mut in_transit, mut debt) = (0, 0, 0);
    for (id, entry) in ids.iter().zip(entries) {
        for (account, amount) in &entry.postings {
            postings = postings.bind(id.clone()).bind(account.name()).bind(*amount);
        }
        let (a, t, d) = entry.seller_deltas();
        (available, in_transit, debt) = (available + a, in_transit + t, debt + d);
    }
    postings.execute(&mut **tx).await?;
    move_balance(
        tx,
        &first.seller,
        first.currency,
        (available, in_transit, debt),
    )
    .await
}

/// Writes an entry and its postings. Returns false (writing nothing) when an entry of this kind
/// and reference exists: each order is a sale once, each payout paid once.
pub(crate) async fn post_entry(
    tx: &mut Tx<'_>,
    entry: &Entry,
    now: i64,
) -> Result<bool, CheckoutError> {
    entry.check()?;
    let id = ordered_id("le");
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
    let mut insert = sqlx::query(crate::db::sql(format!(
        "INSERT INTO ledger_postings (entry_id, account, amount) VALUES {}",
        crate::db::value_rows(entry.postings.len(), 3)
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
    move_balance(tx, &entry.seller, entry.currency, entry.seller_deltas()).await?;
    Ok(true)
}

/// Moves a seller's balances by (available, in transit, debt), creating the row on first use.
async fn move_balance(
    tx: &mut Tx<'_>,
    seller: &SellerId,
    currency: Currency,
    (available, in_transit, debt): (i64, i64, i64),
) -> Result<(), CheckoutError> {
    sqlx::query(
        "INSERT INTO seller_balances (seller_id, currency, available, in_transit, debt) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seller_id, currency) DO UPDATE SET \
         available = seller_balances.available + excluded.available, \
         in_transit = seller_balances.in_transit + excluded.in_transit, \
         debt = seller_balances.debt + excluded.debt",
    )
    .bind(seller.as_str())
    .bind(currency.as_str())
    .bind(available)
    .bind(in_transit)
    .bind(debt)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
    /// Minor units payable now.
    pub available: i64,
    /// Minor units on their way to the seller's bank.
    pub in_transit: i64,
    /// Minor units the seller owes: refunds beyond the available balance (after a payout, say),
    /// repaid from the next sales before they add to `available`.
    pub debt: i64,
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

impl crate::orders::Orders {
    pub async fn balances(&self, seller: &SellerId) -> Result<Vec<Balance>, CheckoutError> {
        let rows = sqlx::query(
            "SELECT currency, available, in_transit, debt FROM seller_balances \
             WHERE seller_id = $1 ORDER BY currency",
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
                    debt: r.try_get(3)?,
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
        let balances = sqlx::query(
            "SELECT seller_id, currency, available, in_transit, debt FROM seller_balances",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &balances {
            let seller = SellerId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
            let currency: String = r.try_get(1)?;
            // Owed to the seller: minus the postings; owed by the seller: the postings.
            for (account, sign, stored) in [
                (
                    Account::SellerAvailable(seller.clone()),
                    -1,
                    r.try_get::<i64, _>(2)?,
                ),
                (
                    Account::SellerInTransit(seller.clone()),
                    -1,
                    r.try_get::<i64, _>(3)?,
                ),
                (
                    Account::SellerDebt(seller.clone()),
                    1,
                    r.try_get::<i64, _>(4)?,
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
                if sign * sum != stored {
                    problems.push(format!(
                        "{} {currency}: balance {stored}, postings {}",
                        account.name(),
                        sign * sum
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
    fn a_refund_beyond_the_balance_is_debt_and_sales_repay_it() {
        let s = seller();
        let refund = refund_postings(&s, 1000, 300);
        assert_eq!(refund[0], (Account::SellerAvailable(s.clone()), 300));
        assert_eq!(refund[1], (Account::SellerDebt(s.clone()), 700));
        assert_eq!(refund.iter().map(|(_, a)| a).sum::<i64>(), 0);
        assert_eq!(
            refund_postings(&s, 1000, -50)[1].1,
            1000,
            "nothing to take from"
        );
        let sale = sale_postings(&s, 1000, 59, 700);
        assert_eq!(sale[1], (Account::SellerDebt(s.clone()), -700));
        assert_eq!(sale[2], (Account::SellerAvailable(s.clone()), -241));
        assert_eq!(sale.iter().map(|(_, a)| a).sum::<i64>(), 0);
        assert_eq!(
            sale_postings(&s, 1000, 59, 5000)[1].1,
            -941,
            "repays at most the net"
        );
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
        assert_eq!(ok.seller_deltas(), (941, 0, 0));
        let mut bad = ok.clone();
        bad.postings[1].1 = -940;
        assert!(bad.check().is_err());
        let mut zero = ok;
        zero.postings = vec![(Account::ProcessorClearing, 0), (Account::PlatformFees, 0)];
        assert!(zero.check().is_err());
    }
}
