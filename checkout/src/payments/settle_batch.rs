//! The settle step for a batch of one seller's orders (group commit, see [`crate::group`]): the
//! paid ones move in one conditional multi-row UPDATE, their sales are posted to the ledger
//! with the seller's balance row locked and moved once, their results stored with their keys
//! in one statement; an order that did not sell (declined, not confirmed in time) goes through
//! the one-order transition in the same transaction. One commit ends the batch. A batch that
//! fails as a whole is settled again one order at a time.

use super::Payments;
use crate::db::WriteGate;
use crate::db::{sql, value_rows};
use crate::error::{CheckoutError, Rejection};
use crate::facts::Heard;
use crate::group::{Turn, Writer};
use crate::ledger::{self, Tx};
use crate::order_state::OrderStatus;
use crate::orders::{Moved, Order, OrderResult};
use crate::payment::{Payment, PaymentStatus};
use crate::webhooks::EventType;
use crate::webhooks::outbox::Hook;
use sqlx::Row;
use std::collections::HashSet;
use vitrine_core::{CommerceEvent, PinId, ProductId, StreamId};

/// One order whose payment has its answer.
#[derive(Clone)]
pub(crate) struct SettleJob {
    /// The idempotency key that placed the order (its buyer's): the answer is stored with it.
    pub key: String,
    pub order: Order,
    pub payment: Payment,
}

/// Writes a seller's batches of settlements.
pub(crate) struct SettleWriter(pub Payments);

impl Writer<SettleJob, Result<OrderResult, CheckoutError>> for SettleWriter {
    async fn write(
        &self,
        jobs: Vec<SettleJob>,
        turn: Turn,
    ) -> Vec<Result<OrderResult, CheckoutError>> {
        let n = jobs.len();
        self.0.orders.jobs.note_batch("settle", n);
        match self.0.settle_batch(&jobs, turn).await {
            Ok(done) => return done,
            Err(e) if n == 1 => return vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, batch = n, "a batch of settlements failed; settling them one at a time");
            }
        }
        let mut out = Vec::with_capacity(n);
        for job in jobs {
            out.push(self.0.settle(job.order, &job.payment).await);
        }
        out
    }

    fn gate(&self) -> WriteGate {
        self.0.orders.write_gate.clone()
    }

    /// Every sale of a seller moves its balance row, which serialises the batches. On
    /// PostgreSQL two batches are written at once: one moves its orders, writes its facts and
    /// stores its answers while the other holds the balance row and commits. (SQLite has one
    /// writer: one batch at a time.)
    fn writers(&self) -> usize {
        if self.0.orders.write_gate.serialises() {
            1
        } else {
            2
        }
    }
}

/// A batch's order after its transaction: moved (with what it wrote), or moved by someone else.
enum Outcome {
    Paid(Order),
    /// Another move (a decline, a wait for a later confirmation): the order before it, the
    /// move, and the placement's refusal when it did not sell.
    Other(Order, Box<Moved>, Option<Rejection>),
    Raced,
}

impl Payments {
    /// What became of each job, in the jobs' order: the paid ones were moved by `moved`; every
    /// other one takes its one-order transition (a decline gives its units back). Those run
    /// sorted by product and pin, so that two batches of one seller written at once (see
    /// [`SettleWriter::writers`]) lock products and pins in the same order and cannot deadlock.
    async fn outcomes(
        &self,
        tx: &mut Tx<'_>,
        jobs: &[SettleJob],
        moved: &HashSet<String>,
        now: i64,
    ) -> Result<Vec<Outcome>, CheckoutError> {
        let mut outcomes: Vec<Option<Outcome>> = jobs
            .iter()
            .map(|job| {
                (job.payment.status == PaymentStatus::Succeeded).then(|| {
                    if moved.contains(job.order.id.as_str()) {
                        Outcome::Paid(paid_order(&job.order, &job.payment, now))
                    } else {
                        Outcome::Raced
                    }
                })
            })
            .collect();
        let mut others: Vec<usize> = (0..jobs.len()).filter(|&i| outcomes[i].is_none()).collect();
        others.sort_by(|&a, &b| {
            let key = |i: usize| {
                let order = &jobs[i].order;
                (
                    order.product_id.as_str(),
                    order.pin_id.as_ref().map(|p| p.as_str()),
                    order.id.as_str(),
                )
            };
            key(a).cmp(&key(b))
        });
        for i in others {
            let job = &jobs[i];
            let change = super::settle::change_for(&job.payment, self.payment_hold_from(now));
            outcomes[i] = Some(
                match self
                    .orders
                    .transition_in(tx, &job.order, &change.as_change())
                    .await?
                {
                    Some(moved) => {
                        Outcome::Other(job.order.clone(), Box::new(moved), change.rejection)
                    }
                    None => Outcome::Raced,
                },
            );
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Raced))
            .collect())
    }

    /// Settles a batch of one seller's orders in one transaction, in `turn` at the write gate
    /// (or one taken here); one answer per order.
    async fn settle_batch(
        &self,
        jobs: &[SettleJob],
        turn: Turn,
    ) -> Result<Vec<Result<OrderResult, CheckoutError>>, CheckoutError> {
        let now = self.orders.now();
        let turn = crate::group::turn_at(turn, &self.orders.write_gate).await;
        let started = std::time::Instant::now();
        let mut tx = self.orders.pool.begin().await?;
        let paid: Vec<&SettleJob> = jobs
            .iter()
            .filter(|j| j.payment.status == PaymentStatus::Succeeded)
            .collect();
        let moved = mark_paid(&mut tx, &paid, now).await?;
        let outcomes = self.outcomes(&mut tx, jobs, &moved, now).await?;
        let sold: Vec<&Order> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Paid(order) => Some(order),
                _ => None,
            })
            .collect();
        let hooks = settled_hooks(&outcomes)?;
        // The facts and the keys' answers before the seller's balance row is locked: the
        // orders' rows, locked since they moved, order the facts; the balance row's lock is
        // then held for the ledger's statements and the commit only.
        let ticket = self
            .orders
            .facts
            .write_with(&mut tx, now, &hooks, |heard| {
                settled_facts(&outcomes, &sold, heard)
            })
            .await?;
        if !sold.is_empty() {
            store_results(&mut tx, jobs, &sold).await?;
            ledger::post_sales(&mut tx, &sold, &self.orders.config.fees, now).await?;
        }
        crate::facts::finish(tx, ticket).await?;
        drop(turn);
        self.orders
            .jobs
            .note_batch_time("settle", started.elapsed());
        let mut answers = Vec::with_capacity(jobs.len());
        for (job, outcome) in jobs.iter().zip(outcomes) {
            answers.push(self.after_settled(job, outcome).await);
        }
        Ok(answers)
    }

    /// Tells the rooms what a committed settlement changed and gives the request its answer.
    async fn after_settled(
        &self,
        job: &SettleJob,
        outcome: Outcome,
    ) -> Result<OrderResult, CheckoutError> {
        match outcome {
            Outcome::Paid(order) => {
                tracing::info!(order = %order.id, from = "pending", to = "paid", "order");
                Ok(OrderResult::Created(order))
            }
            Outcome::Other(before, moved, rejection) => {
                self.orders.after_transition(&before, &moved);
                Ok(match rejection {
                    Some(r) => OrderResult::Rejected(r),
                    None => OrderResult::Created(moved.order),
                })
            }
            Outcome::Raced => self.settle(job.order.clone(), &job.payment).await,
        }
    }
}

/// What the rooms hear of the batch, in its order: each paid order (its buyer and the seller
/// see it), each other move's facts, then each pin's sale once, with what the room last heard
/// is left (no read after the commit, nor under the balance row's lock): a room of thousands
/// hears of a busy sale's orders a batch at a time, not one frame per order.
fn settled_facts(outcomes: &[Outcome], sold: &[&Order], heard: &Heard) -> Vec<CommerceEvent> {
    let mut facts = Vec::with_capacity(outcomes.len() + 1);
    for outcome in outcomes {
        match outcome {
            Outcome::Paid(order) => facts.push(crate::orders::order_fact(order)),
            Outcome::Other(_, moved, _) => facts.extend(moved.facts.iter().cloned()),
            Outcome::Raced => {}
        }
    }
    for s in purchases(sold) {
        let Some(available) = heard.get(&s.stream, &s.product) else {
            continue;
        };
        facts.push(CommerceEvent::Purchase {
            stream: s.stream,
            product: s.product,
            quantity: s.quantity,
            orders: s.orders,
            available,
        });
    }
    facts
}

/// What one pin sold in a batch.
#[derive(Debug, PartialEq, Eq)]
struct Sold {
    stream: StreamId,
    pin: PinId,
    product: ProductId,
    quantity: u32,
    orders: u32,
}

/// The batch's paid orders through pins, by pin, in the order each pin first sold (no IO).
fn purchases(sold: &[&Order]) -> Vec<Sold> {
    let mut out: Vec<Sold> = Vec::new();
    for order in sold {
        let (Some(stream), Some(pin)) = (&order.stream_id, &order.pin_id) else {
            continue;
        };
        match out.iter_mut().find(|s| s.pin == *pin) {
            Some(s) => {
                s.quantity = s.quantity.saturating_add(order.quantity);
                s.orders += 1;
            }
            None => out.push(Sold {
                stream: stream.clone(),
                pin: pin.clone(),
                product: order.product_id.clone(),
                quantity: order.quantity,
                orders: 1,
            }),
        }
    }
    out
}

/// The order as the paid transition leaves it.
fn paid_order(order: &Order, payment: &Payment, now: i64) -> Order {
    let mut paid = order.clone();
    paid.status = OrderStatus::Paid;
    paid.payment_id = Some(payment.id.clone());
    paid.updated_at = now;
    paid
}

/// The batch's webhook messages, in the order of its requests: `order.paid` for each sale,
/// and what each other move calls for.
fn settled_hooks(outcomes: &[Outcome]) -> Result<Vec<Hook>, CheckoutError> {
    let mut hooks = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Paid(order) => hooks.push(Hook::new(
                &order.seller_id,
                EventType::OrderPaid,
                &crate::orders::OrderMessage::from(order),
            )?),
            Outcome::Other(_, moved, _) => hooks.extend(moved.hooks.iter().cloned()),
            Outcome::Raced => {}
        }
    }
    Ok(hooks)
}

/// Moves the still-pending orders among `paid` to `paid` in one statement; the ids it moved.
async fn mark_paid(
    tx: &mut Tx<'_>,
    paid: &[&SettleJob],
    now: i64,
) -> Result<HashSet<String>, CheckoutError> {
    if paid.is_empty() {
        return Ok(HashSet::new());
    }
    // The time goes last, after the rows' placeholders.
    let query = format!(
        "UPDATE orders SET status = 'paid', payment_id = v.column2, updated_at = ${} \
         FROM (VALUES {}) AS v WHERE orders.id = v.column1 AND orders.status = 'pending' \
         RETURNING orders.id",
        2 * paid.len() + 1,
        value_rows(paid.len(), 2)
    );
    let mut update = sqlx::query(sql(query));
    for job in paid {
        update = update
            .bind(job.order.id.to_string())
            .bind(job.payment.id.clone());
    }
    let update = update.bind(now);
    update
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0).map_err(CheckoutError::from))
        .collect()
}

/// Stores each paid order as its key's final answer, in one statement (by the keys' primary
/// key: a buyer with very many keys, a load generator say, must not make it a scan).
async fn store_results(
    tx: &mut Tx<'_>,
    jobs: &[SettleJob],
    sold: &[&Order],
) -> Result<(), CheckoutError> {
    let key_of: std::collections::HashMap<&str, &str> = jobs
        .iter()
        .map(|j| (j.order.id.as_str(), j.key.as_str()))
        .collect();
    let query = format!(
        "UPDATE idempotency_keys SET response = v.column3 FROM (VALUES {}) AS v \
         WHERE idempotency_keys.buyer_id = v.column1 AND idempotency_keys.idem_key = v.column2 \
         AND idempotency_keys.order_id = v.column4",
        value_rows(sold.len(), 4)
    );
    let mut update = sqlx::query(sql(query));
    for order in sold {
        let key = key_of
            .get(order.id.as_str())
            .ok_or_else(|| CheckoutError::Corrupt("a settled order without its key".into()))?;
        let answer = crate::orders::StoredResult::encode(&OrderResult::Created((*order).clone()))?;
        update = update
            .bind(order.buyer_id.to_string())
            .bind((*key).to_owned())
            .bind(answer)
            .bind(order.id.to_string());
    }
    update.execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_announced_once_per_pin() {
        let (stream, pin, other) = (StreamId::generate(), PinId::generate(), PinId::generate());
        let through = |pin: Option<&PinId>, quantity: u32| {
            let mut o = crate::orders::wire::tests::paid_at(1_764_640_000_000);
            o.stream_id = Some(stream.clone());
            o.pin_id = pin.cloned();
            o.quantity = quantity;
            o
        };
        let orders = [
            through(Some(&pin), 2),
            through(Some(&other), 1),
            through(None, 5),
            through(Some(&pin), 1),
        ];
        let sold = purchases(&orders.iter().collect::<Vec<_>>());
        assert_eq!(sold.len(), 2, "an order without a pin is not a room's sale");
        assert_eq!(
            (&sold[0].pin, sold[0].quantity, sold[0].orders),
            (&pin, 3, 2)
        );
        assert_eq!(
            (&sold[1].pin, sold[1].quantity, sold[1].orders),
            (&other, 1, 1)
        );
    }
}
