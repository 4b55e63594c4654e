//! The hammer: auctions whose clock ran out are closed, each in one transaction with its
//! winner's order (pending their payment, at the hammer price, holding the unit the auction
//! took from stock) and the key the winner pays it with, or with the unit given back.

use super::{AUCTION_COLUMNS, AuctionRow, auction_from_row};
use crate::db::sql;
use crate::error::CheckoutError;
use crate::ledger::Tx;
use crate::orders::{Order, OrderSource};
use crate::sale::Sale;
use crate::sale::insert_orders;
use crate::webhooks::EventType;
use crate::webhooks::outbox::Hook;
use sqlx::Row;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vitrine_core::{AuctionId, AuctionMoment, Money, OrderId};

/// Auctions closed per pass; the next pass takes the rest.
const BATCH: i64 = 100;

/// The idempotency key an auction's winner pays its order with.
pub(crate) fn winner_key(order: &OrderId) -> String {
    format!("auction:{order}")
}

impl Sale {
    /// Closes every auction whose clock has run out (up to a batch); returns how many this call
    /// closed. Safe to run on every node at once: each auction closes once.
    pub async fn close_due_auctions(&self) -> Result<usize, CheckoutError> {
        let rows = sqlx::query(
            "SELECT id FROM auctions WHERE status = 'open' AND ends_at <= $1 \
             ORDER BY ends_at LIMIT $2",
        )
        .bind(self.orders().now())
        .bind(BATCH)
        .fetch_all(&self.orders().pool)
        .await?;
        let mut closed = 0;
        for row in rows {
            let id: String = row.try_get(0)?;
            match self.close_auction(&id).await {
                Ok(done) => closed += usize::from(done),
                Err(e) => self.orders().jobs.row_failed("auctions", &id, &e),
            }
        }
        Ok(closed)
    }

    /// Closes one auction if its clock has run out; true when this call closed it.
    async fn close_auction(&self, id: &str) -> Result<bool, CheckoutError> {
        let now = self.orders().now();
        let turn = self.orders().write_gate.enter().await;
        let mut tx = self.orders().pool.begin().await?;
        let closed = sqlx::query(sql(format!(
            "UPDATE auctions SET status = 'ended', ended_at = $1 \
             WHERE id = $2 AND status = 'open' AND ends_at <= $1 RETURNING {AUCTION_COLUMNS}"
        )))
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut row) = closed.as_ref().map(auction_from_row).transpose()? else {
            // Closed elsewhere, or a last bid moved the clock.
            return Ok(false);
        };
        let order = self.winner_order(&row, now);
        let mut hooks = Vec::with_capacity(2);
        match &order {
            Some(order) => {
                sell(&mut tx, &row.id, order, now).await?;
                row.order_id = Some(order.id.clone());
                let message = crate::orders::OrderMessage::from(order);
                hooks.push(Hook::new(
                    &order.seller_id,
                    EventType::OrderCreated,
                    &message,
                )?);
            }
            None => give_back(&mut tx, &row, now).await?,
        }
        hooks.push(Hook::new(
            &row.seller_id,
            EventType::AuctionEnded,
            &row.message(),
        )?);
        let mut facts = vec![row.fact(AuctionMoment::Ended)];
        match &order {
            Some(order) => facts.push(crate::orders::order_fact(order)),
            None => facts.extend(crate::pins::stock_facts(&mut tx, &row.product_id).await?),
        }
        self.orders().facts.commit(tx, facts, &hooks, now).await?;
        drop(turn);
        Ok(true)
    }

    /// The order the hammer makes for the highest bidder, if anyone bid (no IO).
    fn winner_order(&self, row: &AuctionRow, now: i64) -> Option<Order> {
        let (buyer, amount) = (row.bidder_id.as_ref()?, row.current?);
        let price = Money {
            amount,
            currency: row.currency,
        };
        Some(Order {
            stream_id: Some(row.stream_id.clone()),
            source: OrderSource::Live,
            ..self
                .orders()
                .pending_order(buyer, &row.seller_id, &row.product_id, price, now)
        })
    }
}

/// Writes the winner's order, the key they pay it with (born "failed": to be charged) and the
/// auction's link to it.
async fn sell(
    tx: &mut Tx<'_>,
    auction: &AuctionId,
    order: &Order,
    now: i64,
) -> Result<(), CheckoutError> {
    insert_orders(tx, &[order]).await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (buyer_id, idem_key, request_hash, order_id, created_at, \
         failed_at) VALUES ($1, $2, 'auction', $3, $4, $4)",
    )
    .bind(order.buyer_id.as_str())
    .bind(winner_key(&order.id))
    .bind(order.id.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE auctions SET order_id = $1 WHERE id = $2")
        .bind(order.id.as_str())
        .bind(auction.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Gives the auctioned unit back to stock: nobody bid.
async fn give_back(tx: &mut Tx<'_>, row: &AuctionRow, now: i64) -> Result<(), CheckoutError> {
    crate::catalog::put_back(tx, &row.product_id, 1, now).await
}

/// Closes due auctions every `every` until `shutdown`.
pub fn spawn_auction_closer(
    sale: Sale,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::jobs::spawn_every(every, shutdown, move || {
        let sale = sale.clone();
        async move {
            match sale.close_due_auctions().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(auctions = n, "auctions closed"),
                Err(e) => tracing::warn!(error = %e, "closing auctions failed"),
            }
        }
    })
}
