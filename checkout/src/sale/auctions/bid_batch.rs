//! An auction's bids written together: one transaction per batch. Every key is claimed in one
//! INSERT, the auction's row is locked and read once, the bids are taken in arrival order in
//! memory ([`super::bid::take`], sans-IO), the row is written once with where the batch left
//! it, every answer is stored with its key in one UPDATE, and each leading bid is written to
//! the batch's fact row, for the room and the webhooks, in order. A bid after the clock ran out is
//! refused by the clock read under the lock, whether or not the hammer has been written.

use super::bid::{not_found, take};
use super::{AUCTION_COLUMNS, AuctionRow, auction_from_row};
use crate::db::WriteGate;
use crate::db::{sql, value_rows};
use crate::error::CheckoutError;
use crate::group::{Turn, Writer};
use crate::ledger::Tx;
use crate::sale::Sale;
use crate::webhooks::EventType;
use crate::webhooks::outbox::Hook;
use sqlx::Row;
use std::collections::HashSet;
use vitrine_core::{AuctionId, AuctionMoment, BidFailure, BidOutcome, BidRequest};

/// A bid's answer from its batch: `None` when an earlier request holds its key (the caller
/// answers it from what that one stored).
pub(crate) type BidAnswer = Result<Option<BidOutcome>, CheckoutError>;

/// Writes an auction's batches of bids.
pub(crate) struct BidWriter(pub Sale);

impl Writer<BidRequest, BidAnswer> for BidWriter {
    async fn write(&self, jobs: Vec<BidRequest>, turn: Turn) -> Vec<BidAnswer> {
        let n = jobs.len();
        self.0.orders().jobs.note_batch("bid", n);
        match self.0.bid_batch(&jobs, turn).await {
            Ok(done) => done.into_iter().map(Ok).collect(),
            Err(e) if n == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, batch = n, "a batch of bids failed; writing them one at a time");
                let mut out = Vec::with_capacity(n);
                for job in &jobs {
                    let alone = self.0.bid_batch(std::slice::from_ref(job), None).await;
                    out.push(alone.map(|mut done| done.swap_remove(0)));
                }
                out
            }
        }
    }

    fn gate(&self) -> WriteGate {
        self.0.orders().write_gate.clone()
    }
}

impl Sale {
    /// Writes one batch of bids for one auction, in `turn` at the write gate (or one taken
    /// here); one answer per bid, in order.
    async fn bid_batch(
        &self,
        jobs: &[BidRequest],
        turn: Turn,
    ) -> Result<Vec<Option<BidOutcome>>, CheckoutError> {
        let started = std::time::Instant::now();
        let turn = crate::group::turn_at(turn, &self.orders().write_gate).await;
        let mut tx = self.orders().pool.begin().await?;
        let claimed = claim_keys(&mut tx, jobs, self.orders().now()).await?;
        let mut auction = lock(&mut tx, &jobs[0].auction).await?;
        // The clock is read under the auction's lock: a batch that waited for the lock (or
        // SQLite's writer) takes no bid after the end.
        let now = self.orders().now();
        let mut answers: Vec<Option<BidOutcome>> = Vec::with_capacity(jobs.len());
        let mut led: Vec<AuctionRow> = Vec::new();
        for (job, claimed) in jobs.iter().zip(&claimed) {
            if !claimed {
                answers.push(None);
                continue;
            }
            let outcome = match auction.as_mut() {
                None => {
                    let (reason, detail) = not_found();
                    refused(reason, detail)
                }
                Some(row) => match take(row, job, now) {
                    Ok(()) => {
                        led.push(row.clone());
                        BidOutcome::Accepted(Box::new(row.view()))
                    }
                    Err((reason, detail)) => refused(reason, detail),
                },
            };
            answers.push(Some(outcome));
        }
        if let (Some(row), false) = (&auction, led.is_empty()) {
            write_row(&mut tx, row).await?;
        }
        store_answers(&mut tx, jobs, &answers).await?;
        let hooks = led
            .iter()
            .map(|row| Hook::new(&row.seller_id, EventType::AuctionBid, &row.message()))
            .collect::<Result<Vec<_>, _>>()?;
        let facts = led.iter().map(|row| row.fact(AuctionMoment::Bid)).collect();
        self.orders().facts.commit(tx, facts, &hooks, now).await?;
        drop(turn);
        self.orders().jobs.note_batch_time("bid", started.elapsed());
        Ok(answers)
    }
}

fn refused(reason: BidFailure, detail: String) -> BidOutcome {
    BidOutcome::Refused { reason, detail }
}

/// Claims every bid's key in one INSERT; whether each job holds its key (a duplicate within
/// the batch loses to the first).
async fn claim_keys(
    tx: &mut Tx<'_>,
    jobs: &[BidRequest],
    now: i64,
) -> Result<Vec<bool>, CheckoutError> {
    let query = format!(
        "INSERT INTO auction_bids (buyer_id, idem_key, auction_id, amount, created_at) \
         VALUES {} ON CONFLICT (buyer_id, idem_key) DO NOTHING RETURNING buyer_id, idem_key",
        value_rows(jobs.len(), 5)
    );
    let mut insert = sqlx::query(sql(query));
    for job in jobs {
        insert = insert
            .bind(job.buyer.as_str().to_owned())
            .bind(job.request_id.clone())
            .bind(job.auction.as_str().to_owned())
            .bind(job.amount.amount)
            .bind(now);
    }
    let rows = insert.fetch_all(&mut **tx).await?;
    let mut fresh: HashSet<(String, String)> = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(jobs
        .iter()
        .map(|j| fresh.remove(&(j.buyer.as_str().to_owned(), j.request_id.clone())))
        .collect())
}

/// Locks the auction's row (a no-op UPDATE, the same SQL on both engines) and reads it.
async fn lock(tx: &mut Tx<'_>, id: &AuctionId) -> Result<Option<AuctionRow>, CheckoutError> {
    let row = sqlx::query(sql(format!(
        "UPDATE auctions SET bid_count = bid_count WHERE id = $1 RETURNING {AUCTION_COLUMNS}"
    )))
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(auction_from_row).transpose()
}

/// Writes where the batch left the auction (under the lock taken by [`lock`]).
async fn write_row(tx: &mut Tx<'_>, row: &AuctionRow) -> Result<(), CheckoutError> {
    sqlx::query(
        "UPDATE auctions SET current_amount = $1, bidder_id = $2, bidder_name = $3, \
         bid_count = $4, ends_at = $5 WHERE id = $6 AND status = 'open'",
    )
    .bind(row.current)
    .bind(row.bidder_id.as_ref().map(|b| b.as_str().to_owned()))
    .bind(row.bidder_name.clone())
    .bind(i64::from(row.bid_count))
    .bind(row.ends_at)
    .bind(row.id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores every answer with its key, in one statement.
async fn store_answers(
    tx: &mut Tx<'_>,
    jobs: &[BidRequest],
    answers: &[Option<BidOutcome>],
) -> Result<(), CheckoutError> {
    let stored: Vec<(&BidRequest, &str, Option<&str>)> = jobs
        .iter()
        .zip(answers)
        .filter_map(|(job, answer)| match answer.as_ref()? {
            BidOutcome::Accepted(_) => Some((job, "accepted", None)),
            BidOutcome::Refused { reason, detail } => {
                Some((job, reason.as_str(), Some(detail.as_str())))
            }
        })
        .collect();
    if stored.is_empty() {
        return Ok(());
    }
    let query = format!(
        "UPDATE auction_bids SET outcome = v.column3, detail = v.column4 FROM (VALUES {}) AS v \
         WHERE auction_bids.buyer_id = v.column1 AND auction_bids.idem_key = v.column2",
        value_rows(stored.len(), 4)
    );
    let mut update = sqlx::query(sql(query));
    for (job, outcome, detail) in stored {
        update = update
            .bind(job.buyer.as_str().to_owned())
            .bind(job.request_id.clone())
            .bind(outcome.to_owned())
            .bind(detail.map(str::to_owned));
    }
    update.execute(&mut **tx).await?;
    Ok(())
}
