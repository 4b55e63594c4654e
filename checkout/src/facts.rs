//! The stream of commerce facts: what a committed transaction changed that the rooms must hear
//! (a pin, what a pin has left, a batch's purchases, an order's new state, an auction's moment).
//!
//! A transaction of the order path collects its facts while it holds its rows' locks and writes
//! them, as one row of `commerce_facts`, in the same transaction as the change: if it rolls back
//! there is no fact, if it commits the fact is there with it. The row also carries the
//! transaction's webhook messages, which any node's dispatcher expands into deliveries (see
//! `crate::webhooks::outbox`). A pump reads the rows back after
//! their commit and hands every fact to the rooms, in commit order, so that what a room hears
//! is what the database holds: nothing is read again after the commit and nothing is announced
//! that did not commit.
//!
//! Order. Each node numbers the rows it writes (`origin`, a name drawn when the process starts,
//! and `seq`, counted from 1) at the moment the transaction has its rows locked, so two
//! transactions that touch the same product, pin or auction take their numbers in the order
//! they commit. Numbers of transactions still open are known in the process ([`Tickets`]): the
//! pump only reads up to the last number below which every transaction has finished (committed
//! or rolled back), so a row that commits late is never skipped. A node delivers its own rows
//! (the chat fans them out to every node); rows of a process that died are not announced after
//! it (the rooms' welcome reads the state from the database again).

use crate::error::CheckoutError;
use crate::webhooks::outbox::{self, Hook};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sqlx::{Any, AnyPool, Row};
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use vitrine_core::ids::random_id;
use vitrine_core::{CommerceEvent, CommerceEvents, ProductId, StreamId};

/// Most rows the pump reads at once.
const READ_LIMIT: i64 = 256;

/// Least time between two reads of the stream: under load one read takes what several
/// transactions committed meanwhile (the rooms hear it up to this much later; the database
/// answers far fewer reads).
const READ_PACE: std::time::Duration = std::time::Duration::from_millis(5);

/// How long facts are kept after they were written (the pruning job deletes older ones).
pub const FACT_RETENTION_MS: i64 = 3_600_000;

/// Numbers of the rows this process writes: which are taken, which transactions still hold
/// theirs. No IO.
#[derive(Debug)]
pub(crate) struct Tickets {
    next: i64,
    open: BTreeSet<i64>,
}

impl Default for Tickets {
    fn default() -> Self {
        Self {
            next: 1,
            open: BTreeSet::new(),
        }
    }
}

impl Tickets {
    /// The next number, open until [`Self::finish`].
    pub(crate) fn take(&mut self) -> i64 {
        let n = self.next;
        self.next += 1;
        self.open.insert(n);
        n
    }

    /// The transaction holding `n` committed or rolled back.
    pub(crate) fn finish(&mut self, n: i64) {
        self.open.remove(&n);
    }

    /// The highest number at or below which every transaction has finished.
    pub(crate) fn ready(&self) -> i64 {
        self.open.first().map_or(self.next - 1, |first| first - 1)
    }
}

/// Counters of the pump.
#[derive(Debug, Default, Clone)]
pub struct FactMetrics {
    /// Facts handed to the rooms.
    pub delivered: Counter,
    /// Reads of the stream that failed (retried).
    pub read_errors: Counter,
    /// Rows that could not be decoded (skipped; a bug or a newer writer).
    pub undecodable: Counter,
}

impl FactMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vitrine_commerce_facts_delivered",
            "Commerce facts (pins, stock, purchases, orders, auctions) handed to the rooms",
            self.delivered.clone(),
        );
        registry.register(
            "vitrine_commerce_facts_read_errors",
            "Reads of the commerce facts' stream that failed and were retried",
            self.read_errors.clone(),
        );
        registry.register(
            "vitrine_commerce_facts_undecodable",
            "Rows of the commerce facts' stream that could not be decoded and were skipped",
            self.undecodable.clone(),
        );
    }
}

/// This process's end of the stream: it numbers what the order path writes and wakes the
/// pump. Cheap to clone.
#[derive(Clone)]
pub struct Facts(Arc<Inner>);

struct Inner {
    origin: String,
    tickets: Mutex<Tickets>,
    /// What each room last heard a product has left, from the `stock` facts as they are
    /// numbered: a purchase announced later tells that figure (see [`Heard`]).
    heard: Heard,
    wake: Notify,
    /// Wakes the webhook dispatcher when a row with messages committed.
    hooks_wake: Arc<Notify>,
    /// The highest number the pump has delivered up to.
    delivered: watch::Sender<i64>,
    metrics: FactMetrics,
}

#[cfg(test)]
impl Default for Facts {
    fn default() -> Self {
        Self::new(Arc::new(Notify::new()))
    }
}

impl Facts {
    /// A new end of the stream, waking `hooks_wake` (the webhook dispatcher) when a row with
    /// webhook messages commits.
    pub(crate) fn new(hooks_wake: Arc<Notify>) -> Self {
        Self(Arc::new(Inner {
            origin: random_id("fo"),
            tickets: Mutex::new(Tickets::default()),
            heard: Heard::default(),
            wake: Notify::new(),
            hooks_wake,
            delivered: watch::Sender::new(0),
            metrics: FactMetrics::default(),
        }))
    }
}

/// A number held by an open transaction; dropping it (after the commit, or with the rolled
/// back transaction) frees the pump to read up to it.
#[must_use = "hold it until the transaction has committed or rolled back"]
pub(crate) struct Ticket {
    facts: Facts,
    n: i64,
    /// The rooms whose figure its facts set, forgotten if it does not commit.
    heard: Vec<(StreamId, ProductId)>,
    /// Its row carries webhook messages (the dispatcher is woken when it commits).
    hooks: bool,
    committed: bool,
}

impl Ticket {
    /// Its transaction committed: its facts stand.
    fn committed(mut self) {
        self.committed = true;
        if self.hooks {
            self.facts.0.hooks_wake.notify_one();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut tickets = self.facts.tickets();
        if !self.committed {
            // A later purchase must not tell a figure that never was.
            self.heard
                .iter()
                .for_each(|key| self.facts.0.heard.forget(key));
        }
        tickets.finish(self.n);
        drop(tickets);
        self.facts.0.wake.notify_one();
    }
}

/// What each room last heard a product has left, per (stream, product). Bounded: a node that
/// has seen very many forgets them all and learns again from the next `stock` fact.
#[derive(Default)]
pub(crate) struct Heard(Mutex<HashMap<(StreamId, ProductId), i64>>);

/// Most rooms' figures remembered.
const MAX_HEARD: usize = 10_000;

impl Heard {
    fn set(&self, key: (StreamId, ProductId), available: i64) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_HEARD && !all.contains_key(&key) {
            all.clear();
        }
        all.insert(key, available);
    }

    pub(crate) fn get(&self, stream: &StreamId, product: &ProductId) -> Option<i64> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.get(&(stream.clone(), product.clone())).copied()
    }

    fn forget(&self, key: &(StreamId, ProductId)) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

impl Facts {
    fn tickets(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.0.tickets.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn metrics(&self) -> &FactMetrics {
        &self.0.metrics
    }

    /// Writes `events` and the webhook messages `hooks` with the transaction and commits it.
    /// Call it where the transaction would commit, with its rows still locked: that is what
    /// orders the facts.
    pub(crate) async fn commit(
        &self,
        mut tx: sqlx::Transaction<'static, Any>,
        events: Vec<CommerceEvent>,
        hooks: &[Hook],
        now: i64,
    ) -> Result<(), CheckoutError> {
        let ticket = self
            .write_with(&mut tx, now, hooks, move |_| events)
            .await?;
        finish(tx, ticket).await
    }

    /// Writes the facts `build` makes, and the webhook messages `hooks`, into the transaction,
    /// numbered now, and hands back the ticket to [`finish`] with the transaction. `build` runs
    /// under the lock that hands out the numbers, with what each room last heard ([`Heard`]):
    /// facts built from it are numbered in the order it changed. A settlement calls this before it locks the seller's balance row,
    /// so that the INSERT is not made under that row's lock.
    pub(crate) async fn write_with(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        now: i64,
        hooks: &[Hook],
        build: impl FnOnce(&Heard) -> Vec<CommerceEvent>,
    ) -> Result<Option<Ticket>, CheckoutError> {
        let (events, n, heard) = {
            let mut tickets = self.tickets();
            let mut events = build(&self.0.heard);
            let heard = self.note_heard(&mut events);
            let n = (!events.is_empty() || !hooks.is_empty()).then(|| tickets.take());
            (events, n, heard)
        };
        let Some(n) = n else {
            return Ok(None);
        };
        let ticket = Ticket {
            n,
            facts: self.clone(),
            heard,
            hooks: !hooks.is_empty(),
            committed: false,
        };
        let payload = serde_json::to_string(&events)
            .map_err(|e| CheckoutError::Corrupt(format!("encoding commerce facts: {e}")))?;
        let messages = (!hooks.is_empty())
            .then(|| outbox::encode(hooks))
            .transpose()?;
        sqlx::query(
            "INSERT INTO commerce_facts (origin, seq, events, created_at, hooks, hooks_pending) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&self.0.origin)
        .bind(ticket.n)
        .bind(&payload)
        .bind(now)
        .bind(messages)
        .bind(i32::from(ticket.hooks))
        .execute(&mut **tx)
        .await?;
        Ok(Some(ticket))
    }

    /// Notes what each `stock` fact tells its room is left, and has each purchase tell what its
    /// room last heard (a figure read without the product's lock could be older); the rooms
    /// whose figure was set.
    fn note_heard(&self, events: &mut [CommerceEvent]) -> Vec<(StreamId, ProductId)> {
        let mut set = Vec::new();
        for e in events {
            match e {
                CommerceEvent::Stock {
                    stream,
                    product,
                    available,
                } => {
                    let key = (stream.clone(), product.clone());
                    self.0.heard.set(key.clone(), *available);
                    set.push(key);
                }
                CommerceEvent::Purchase {
                    stream,
                    product,
                    available,
                    ..
                } => {
                    if let Some(heard) = self.0.heard.get(stream, product) {
                        *available = heard;
                    }
                }
                _ => {}
            }
        }
        set
    }

    /// Waits until every fact committed before this call has been handed to the rooms (for a
    /// test's assertions, and for a node that drains).
    pub async fn flush(&self) {
        // Every number taken so far: those still open finish (commit or roll back) first.
        let target = self.tickets().next - 1;
        let mut delivered = self.0.delivered.subscribe();
        let _ = delivered.wait_for(|d| *d >= target).await;
    }

    /// Hands every fact this process commits to `sink`, in commit order, until `shutdown`.
    pub fn spawn_pump(
        &self,
        pool: AnyPool,
        sink: Arc<dyn CommerceEvents>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let facts = self.clone();
        tokio::spawn(async move { facts.pump(pool, sink, shutdown).await })
    }

    async fn pump(self, pool: AnyPool, sink: Arc<dyn CommerceEvents>, shutdown: CancellationToken) {
        let mut low = 0;
        let mut last_read = tokio::time::Instant::now();
        loop {
            if self.tickets().ready() > low {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(last_read + READ_PACE) => {}
                }
                // What committed while the pace held is read with it.
                let ready = self.tickets().ready();
                last_read = tokio::time::Instant::now();
                match self.deliver(&pool, low, ready, sink.as_ref()).await {
                    Ok(upto) => {
                        low = upto;
                        self.0.delivered.send_replace(low);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the commerce facts failed; retrying");
                        self.0.metrics.read_errors.inc();
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.0.wake.notified() => {}
            }
        }
    }

    /// Reads the rows numbered above `low` up to `ready`, hands their facts over in order and
    /// says how far it got.
    async fn deliver(
        &self,
        pool: &AnyPool,
        low: i64,
        ready: i64,
        sink: &dyn CommerceEvents,
    ) -> Result<i64, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT seq, events FROM commerce_facts \
             WHERE origin = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
        )
        .bind(&self.0.origin)
        .bind(low)
        .bind(ready)
        .bind(READ_LIMIT)
        .fetch_all(pool)
        .await?;
        let mut last = low;
        for row in &rows {
            last = row.try_get::<i64, _>(0)?;
            let payload = row
                .try_get::<String, _>(1)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    serde_json::from_str::<Vec<CommerceEvent>>(&p).map_err(|e| e.to_string())
                });
            match payload {
                Ok(events) => {
                    self.0.metrics.delivered.inc_by(events.len() as u64);
                    events.into_iter().for_each(|e| sink.emit(e));
                }
                Err(e) => {
                    tracing::error!(seq = last, error = %e, "an undecodable commerce fact was skipped");
                    self.0.metrics.undecodable.inc();
                }
            }
        }
        // A full page may have more behind it; otherwise every number up to `ready` is done
        // (the missing ones rolled back or wrote nothing).
        Ok(if rows.len() as i64 == READ_LIMIT {
            last
        } else {
            ready
        })
    }
}

/// Commits `tx` and releases its ticket together, in a task of their own: a caller that stops
/// waiting (a client gone mid-request) cannot release the number while the commit is still on
/// its way, which would let the pump read past a row that becomes visible after.
pub(crate) async fn finish(
    tx: sqlx::Transaction<'static, Any>,
    ticket: Option<Ticket>,
) -> Result<(), CheckoutError> {
    let Some(ticket) = ticket else {
        tx.commit().await?;
        return Ok(());
    };
    tokio::spawn(async move {
        tx.commit().await?;
        ticket.committed();
        Ok(())
    })
    .await
    .map_err(|e| CheckoutError::Unavailable(format!("committing: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_that_does_not_commit_takes_back_the_figures_it_set() {
        let facts = Facts::default();
        let key = (StreamId::generate(), ProductId::generate());
        let ticket = |facts: &Facts, key: &(StreamId, ProductId)| Ticket {
            n: facts.tickets().take(),
            facts: facts.clone(),
            heard: vec![key.clone()],
            hooks: false,
            committed: false,
        };
        facts.0.heard.set(key.clone(), 3);
        drop(ticket(&facts, &key)); // rolled back
        assert_eq!(facts.0.heard.get(&key.0, &key.1), None);
        facts.0.heard.set(key.clone(), 2);
        ticket(&facts, &key).committed();
        assert_eq!(facts.0.heard.get(&key.0, &key.1), Some(2));
        assert_eq!(facts.tickets().ready(), 2, "both numbers are free");
    }

    /// A purchase tells what its room last heard is left, a stock fact before it in the same
    /// transaction included; a room never heard of keeps the purchase's own figure.
    #[test]
    fn a_purchase_tells_what_its_room_last_heard() {
        let facts = Facts::default();
        let (room, other, product) = (
            StreamId::generate(),
            StreamId::generate(),
            ProductId::generate(),
        );
        let purchase = |stream: &StreamId, available| CommerceEvent::Purchase {
            stream: stream.clone(),
            product: product.clone(),
            quantity: 1,
            orders: 1,
            available,
        };
        let mut events = vec![
            CommerceEvent::Stock {
                stream: room.clone(),
                product: product.clone(),
                available: 3,
            },
            purchase(&room, 9),
            purchase(&other, 9),
        ];
        let set = facts.note_heard(&mut events);
        assert_eq!(set, vec![(room.clone(), product.clone())]);
        assert_eq!(events[1], purchase(&room, 3));
        assert_eq!(events[2], purchase(&other, 9));
    }

    #[test]
    fn the_rooms_figures_are_bounded() {
        let heard = Heard::default();
        let product = ProductId::generate();
        let first = StreamId::generate();
        heard.set((first.clone(), product.clone()), 5);
        heard.set((first.clone(), product.clone()), 4);
        assert_eq!(heard.get(&first, &product), Some(4));
        for _ in 1..MAX_HEARD {
            heard.set((StreamId::generate(), product.clone()), 1);
        }
        assert_eq!(heard.get(&first, &product), Some(4));
        let last = StreamId::generate();
        heard.set((last.clone(), product.clone()), 7);
        assert_eq!(heard.get(&first, &product), None);
        assert_eq!(heard.get(&last, &product), Some(7));
    }

    #[test]
    fn the_pump_reads_no_further_than_the_oldest_open_transaction() {
        let mut t = Tickets::default();
        assert_eq!(t.ready(), 0);
        let a = t.take();
        let b = t.take();
        let c = t.take();
        assert_eq!(t.ready(), 0);
        // The later transactions finish first: the pump still waits for the first.
        t.finish(c);
        t.finish(b);
        assert_eq!(t.ready(), 0);
        t.finish(a);
        assert_eq!(t.ready(), 3);
        let d = t.take();
        assert_eq!(t.ready(), 3);
        t.finish(d);
        assert_eq!(t.ready(), 4);
    }

    #[test]
    fn a_rolled_back_number_does_not_hold_the_stream() {
        let mut t = Tickets::default();
        let a = t.take();
        let b = t.take();
        t.finish(a); // rolled back: its row never appears
        assert_eq!(t.ready(), 1);
        t.finish(b);
        assert_eq!(t.ready(), 2);
    }
}
