//! The reserve step's transaction, for a batch of requests for one product (group commit, see
//! [`crate::group`]): one multi-row INSERT claims every key, one inserts every order, the
//! product's row and each pin's are locked once, shared out in arrival order
//! ([`super::allocate`]) and moved by one conditional UPDATE each, and one commit ends it.
//! A batch that fails as a whole (a deadlock, a lost connection) is written again one request
//! at a time, so that one request's trouble is never its neighbours'.

use super::Sale;
use super::allocate::{PinLeft, Shares, Want, allocate};
use super::reserve::{PinCache, Priced, ReserveJob, Reserved};
use super::reserve_news::{Left, PinShown, left_after, pins_shown};
use crate::catalog::Product;
use crate::db::WriteGate;
use crate::db::{sql, value_rows};
use crate::error::{CheckoutError, RejectKind, Rejection, corrupt};
use crate::group::{Turn, Writer};
use crate::ledger::Tx;
use crate::orders::{ORDER_COLUMNS, Order, OrderMessage, OrderResult, StoredResult, reject};
use crate::webhooks::EventType;
use crate::webhooks::outbox::Hook;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use vitrine_core::{PinId, ProductId};

/// Writes a product's batches of reservations.
pub(crate) struct ReserveWriter(pub Sale);

impl Writer<ReserveJob, Result<Reserved, CheckoutError>> for ReserveWriter {
    async fn write(
        &self,
        jobs: Vec<ReserveJob>,
        turn: Turn,
    ) -> Vec<Result<Reserved, CheckoutError>> {
        let n = jobs.len();
        self.0.orders().jobs.note_batch("reserve", n);
        match self.0.reserve_batch(&jobs, turn).await {
            Ok(done) => done.into_iter().map(Ok).collect(),
            Err(e) if n == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, batch = n, "a batch of reservations failed; writing them one at a time");
                let mut out = Vec::with_capacity(n);
                for job in &jobs {
                    let alone = self.0.reserve_batch(std::slice::from_ref(job), None).await;
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

/// Where a request of the batch stands.
#[allow(clippy::large_enum_variant)]
enum Fate {
    /// Refused before anything was taken; the key's claim stores the refusal.
    Refused(Rejection),
    /// Its key was claimed with a pending order; units not taken yet.
    Pending(Priced, Order),
    /// Claimed, then refused: the key's row still names the order and needs the refusal.
    Late(Rejection, Option<Order>),
    Taken(Order, i64),
    KeyTaken,
}

impl Sale {
    /// Reserves a batch of requests for one product, in `turn` at the write gate (or one
    /// taken here); one answer per request, in order.
    pub(super) async fn reserve_batch(
        &self,
        jobs: &[ReserveJob],
        turn: Turn,
    ) -> Result<Vec<Reserved>, CheckoutError> {
        let now = self.orders().now();
        let (product, mut fates) = self.plan(jobs, now).await?;
        let turn = crate::group::turn_at(turn, &self.orders().write_gate).await;
        let started = std::time::Instant::now();
        let mut tx = self.orders().pool.begin().await?;
        // The keys first: the first write, which on SQLite takes the write lock up front.
        claim_keys(&mut tx, jobs, &mut fates, now).await?;
        check_limits(&mut tx, jobs, &mut fates).await?;
        let pending: Vec<&Order> = fates
            .iter()
            .filter_map(|f| match f {
                Fate::Pending(_, order) => Some(order),
                _ => None,
            })
            .collect();
        let mut took = None;
        if let (false, Some(product)) = (pending.is_empty(), &product) {
            insert_orders(&mut tx, &pending).await?;
            // The rows every buyer of the sale contends for, last: locked from here to the commit.
            took = Some(take_stock(&mut tx, &product.id, &mut fates, now).await?);
        }
        undo_late(&mut tx, jobs, &fates).await?;
        let (hooks, left) = match (&took, &product) {
            (Some(took), Some(product)) => (
                reserved_hooks(&fates, took, product)?,
                left_after(taken(&fates), took.left, &took.pins_shown),
            ),
            _ => (Vec::new(), Left::default()),
        };
        // What the rooms hear is left is noted as the facts are numbered (facts::Heard): a
        // settlement that announces a purchase afterwards is numbered after this stock.
        self.orders()
            .facts
            .commit(tx, left.facts, &hooks, now)
            .await?;
        drop(turn);
        self.orders()
            .jobs
            .note_batch_time("reserve", started.elapsed());
        Ok(fates.into_iter().map(Reserved::from).collect())
    }

    /// Prices every request (the product read once, each pin once); duplicates of a key
    /// already in the batch are the earlier one's.
    async fn plan(
        &self,
        jobs: &[ReserveJob],
        now: i64,
    ) -> Result<(Option<Product>, Vec<Fate>), CheckoutError> {
        let product = self.catalog.any_product(&jobs[0].new.product_id).await?;
        let mut pins = PinCache::new();
        let mut seen = HashSet::new();
        let mut fates = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !seen.insert((&job.buyer, &job.key)) {
                fates.push(Fate::KeyTaken);
                continue;
            }
            fates.push(
                match self
                    .price_in_batch(&job.new, product.as_ref(), &mut pins, now)
                    .await?
                {
                    Ok(priced) => {
                        let order = self.new_order(job, &priced, now);
                        Fate::Pending(priced, order)
                    }
                    Err(rejection) => Fate::Refused(rejection),
                },
            );
        }
        Ok((product, fates))
    }
}

/// The batch's webhook messages: `order.created` for each order that took its units, and
/// `product.sold_out` when the batch took the last unit.
fn reserved_hooks(
    fates: &[Fate],
    took: &Took,
    product: &Product,
) -> Result<Vec<Hook>, CheckoutError> {
    let seller = &product.seller_id;
    let mut hooks = taken(fates)
        .map(|(o, _)| Hook::new(seller, EventType::OrderCreated, &OrderMessage::from(o)))
        .collect::<Result<Vec<_>, _>>()?;
    if !hooks.is_empty() && took.left == Some(0) && took.from_stock > 0 {
        let sold_out = serde_json::json!({
            "product_id": product.id, "sku": product.sku, "title": product.title,
        });
        hooks.push(Hook::new(seller, EventType::ProductSoldOut, &sold_out)?);
    }
    Ok(hooks)
}

/// The batch's orders that took their units, each with what its pin (or the product) has left.
fn taken(fates: &[Fate]) -> impl DoubleEndedIterator<Item = (&Order, i64)> {
    fates.iter().filter_map(|f| match f {
        Fate::Taken(order, available) => Some((order, *available)),
        _ => None,
    })
}

impl From<Fate> for Reserved {
    fn from(fate: Fate) -> Self {
        match fate {
            Fate::Taken(order, _) => Reserved::Order(order),
            Fate::Refused(r) | Fate::Late(r, _) => Reserved::Rejected(r),
            Fate::KeyTaken => Reserved::KeyTaken,
            // Never left pending: `take_stock` settles every one.
            Fate::Pending(..) => Reserved::KeyTaken,
        }
    }
}

/// Claims every new key in one INSERT: a pending request's with its order id, a refused one's
/// with its final answer. Keys an earlier request holds become [`Fate::KeyTaken`].
async fn claim_keys(
    tx: &mut Tx<'_>,
    jobs: &[ReserveJob],
    fates: &mut [Fate],
    now: i64,
) -> Result<(), CheckoutError> {
    let rows: Vec<usize> = (0..jobs.len())
        .filter(|&i| !matches!(fates[i], Fate::KeyTaken))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let query = format!(
        "INSERT INTO idempotency_keys (buyer_id, idem_key, request_hash, order_id, response, \
         created_at) VALUES {} ON CONFLICT (buyer_id, idem_key) DO NOTHING \
         RETURNING buyer_id, idem_key",
        value_rows(rows.len(), 6)
    );
    let mut insert = sqlx::query(sql(query));
    for &i in &rows {
        let (order_id, response) = match &fates[i] {
            Fate::Pending(_, order) => (Some(order.id.to_string()), None),
            Fate::Refused(r) => (
                None,
                Some(StoredResult::encode(&OrderResult::Rejected(r.clone()))?),
            ),
            _ => (None, None),
        };
        let job = &jobs[i];
        insert = insert
            .bind(job.buyer.as_str().to_owned())
            .bind(job.key.clone())
            .bind(job.hash.clone())
            .bind(order_id)
            .bind(response)
            .bind(now);
    }
    let claimed: HashSet<(String, String)> = insert
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    for &i in &rows {
        let job = &jobs[i];
        if !claimed.contains(&(job.buyer.as_str().to_owned(), job.key.clone())) {
            fates[i] = Fate::KeyTaken;
        }
    }
    Ok(())
}

/// Counts each pending request's units against its buyer's per-pin limit (rows of that buyer
/// only); one over the limit is refused. One upsert per pin for the whole batch; a buyer with
/// several requests in the batch has them counted in turn, one statement each (a statement may
/// not move one row twice).
async fn check_limits(
    tx: &mut Tx<'_>,
    jobs: &[ReserveJob],
    fates: &mut [Fate],
) -> Result<(), CheckoutError> {
    // (turn, pin) -> the requests counted in that statement, with the pin's limit.
    let mut rounds: std::collections::BTreeMap<(usize, PinId), (u32, Vec<usize>)> =
        Default::default();
    let mut turns: HashMap<(&PinId, &vitrine_core::BuyerId), usize> = HashMap::new();
    for (i, fate) in fates.iter().enumerate() {
        let Fate::Pending(priced, _) = fate else {
            continue;
        };
        let Some((pin, limit)) = priced
            .pin
            .as_ref()
            .and_then(|p| p.per_buyer_limit.map(|l| (p, l)))
        else {
            continue;
        };
        let turn = turns.entry((&pin.id, &jobs[i].buyer)).or_insert(0);
        rounds
            .entry((*turn, pin.id.clone()))
            .or_insert_with(|| (limit, Vec::new()))
            .1
            .push(i);
        *turn += 1;
    }
    for ((_, pin), (limit, members)) in rounds {
        let counted = count_units(tx, &pin, limit, jobs, &members).await?;
        for i in members {
            if !counted.contains(jobs[i].buyer.as_str()) {
                let why = reject(
                    RejectKind::LimitExceeded,
                    format!("at most {limit} per buyer"),
                );
                fates[i] = Fate::Late(why, None);
            }
        }
    }
    Ok(())
}

/// Adds each member's units to its buyer's count for `pin` where that stays within `limit`;
/// the buyers whose count moved.
async fn count_units(
    tx: &mut Tx<'_>,
    pin: &PinId,
    limit: u32,
    jobs: &[ReserveJob],
    members: &[usize],
) -> Result<HashSet<String>, CheckoutError> {
    let query = format!(
        "INSERT INTO pin_buyers (pin_id, buyer_id, quantity) VALUES {} \
         ON CONFLICT (pin_id, buyer_id) DO UPDATE \
         SET quantity = pin_buyers.quantity + excluded.quantity \
         WHERE pin_buyers.quantity + excluded.quantity <= ${} RETURNING buyer_id",
        value_rows(members.len(), 3),
        3 * members.len() + 1
    );
    let mut upsert = sqlx::query(sql(query));
    for &i in members {
        upsert = upsert
            .bind(pin.as_str().to_owned())
            .bind(jobs[i].buyer.as_str().to_owned())
            .bind(i64::from(jobs[i].new.quantity));
    }
    let rows = upsert.bind(i64::from(limit)).fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(CheckoutError::from))
        .collect()
}

/// Inserts the pending orders in one statement.
pub(crate) async fn insert_orders(tx: &mut Tx<'_>, orders: &[&Order]) -> Result<(), CheckoutError> {
    // 19 values a row; created_at doubles as updated_at; shipping and payment-action columns start empty.
    let rows: Vec<String> = (0..orders.len())
        .map(|i| {
            let p = |k: usize| format!("${}", 19 * i + k);
            let first: Vec<String> = (1..=16).map(p).collect();
            format!(
                "({}, {}, {}, {}, {}, NULL, NULL, NULL, NULL, NULL)",
                first.join(", "),
                p(16),
                p(17),
                p(18),
                p(19)
            )
        })
        .collect();
    let query = format!(
        "INSERT INTO orders ({ORDER_COLUMNS}) VALUES {}",
        rows.join(", ")
    );
    let mut insert = sqlx::query(sql(query));
    for order in orders {
        let presentment = order
            .presentment
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        insert = insert
            .bind(order.id.to_string())
            .bind(order.status.as_str())
            .bind(order.buyer_id.to_string())
            .bind(order.seller_id.to_string())
            .bind(order.product_id.to_string())
            .bind(order.pin_id.as_ref().map(|p| p.to_string()))
            .bind(order.stream_id.as_ref().map(|s| s.to_string()))
            .bind(i64::from(order.quantity))
            .bind(order.unit_price.amount)
            .bind(order.total.amount)
            .bind(order.total.currency.as_str())
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(order.card_last4.clone())
            .bind(order.reserved_until)
            .bind(order.created_at)
            .bind(presentment)
            .bind(order.source.as_str())
            .bind(order.media_ms.map(|ms| ms as i64));
    }
    insert.execute(&mut **tx).await?;
    Ok(())
}

/// Locks the product's row and the batch's pins (in id order), shares them out among the
/// pending requests, and moves each by what the batch took with one conditional UPDATE.
async fn take_stock(
    tx: &mut Tx<'_>,
    product: &ProductId,
    fates: &mut [Fate],
    now: i64,
) -> Result<Took, CheckoutError> {
    let locked =
        sqlx::query("UPDATE products SET stock = stock WHERE id = $1 RETURNING stock, archived")
            .bind(product.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    let stock = match &locked {
        Some(r) if r.try_get::<i64, _>(1)? == 0 => Some(r.try_get::<i64, _>(0)?),
        _ => None,
    };
    let mut wants = Vec::new();
    let mut pin_ids: Vec<PinId> = Vec::new();
    for fate in fates.iter() {
        if let Fate::Pending(priced, order) = fate {
            let pin = priced.pin.as_ref().map(|p| p.id.clone());
            pin_ids.extend(pin.clone());
            wants.push(Want {
                pin,
                quantity: i64::from(order.quantity),
            });
        }
    }
    pin_ids.sort();
    pin_ids.dedup();
    let mut pins = HashMap::new();
    for id in pin_ids {
        if let Some(left) = lock_pin(tx, &id, now).await? {
            pins.insert(id, left);
        }
    }
    let shares = allocate(stock, &pins, &wants);
    let moved = apply_shares(tx, product, &pins, &shares, now).await?;
    let took = Took {
        from_stock: shares.from_stock,
        left: moved.as_ref().map(|m| m.0).or(stock),
        pins_shown: match moved {
            Some((_, shown)) => pins_shown(shown.as_deref())?,
            None => Vec::new(),
        },
    };
    let mut each = shares.each.into_iter();
    for fate in fates.iter_mut() {
        if matches!(fate, Fate::Pending(..)) {
            let Fate::Pending(_, order) = std::mem::replace(fate, Fate::KeyTaken) else {
                unreachable!()
            };
            *fate = match each.next() {
                Some(Ok(available)) => Fate::Taken(order, available),
                Some(Err(why)) => Fate::Late(why, Some(order)),
                None => Fate::Late(reject(RejectKind::SoldOut, "sold out"), Some(order)),
            };
        }
    }
    Ok(took)
}

/// What a batch took from the product's stock, and what it left.
struct Took {
    from_stock: i64,
    left: Option<i64>,
    /// The product's active pins, read under the product's lock before the batch moved its own
    /// (the others only move under that lock).
    pins_shown: Vec<PinShown>,
}

/// A pin's cap and whether it still sells, with its row locked; `None` when it is gone.
async fn lock_pin(tx: &mut Tx<'_>, id: &PinId, now: i64) -> Result<Option<PinLeft>, CheckoutError> {
    let row = sqlx::query(
        "UPDATE pins SET remaining = remaining WHERE id = $1 RETURNING remaining, active, ends_at",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let ends_at: Option<i64> = row.try_get(2)?;
    Ok(Some(PinLeft {
        remaining: row.try_get(0)?,
        open: row.try_get::<i64, _>(1)? == 1 && ends_at.is_none_or(|t| t > now),
    }))
}

/// Moves the product and the capped pins by what the batch took (conditional UPDATEs that hold
/// under the locks just taken; one that does not is an error and the batch rolls back). The
/// product's stock left, when the batch took any, and the product's active pins as they stood
/// before the batch moved its own (`id stream remaining`, comma-separated).
async fn apply_shares(
    tx: &mut Tx<'_>,
    product: &ProductId,
    pins: &HashMap<PinId, PinLeft>,
    shares: &Shares,
    now: i64,
) -> Result<Option<(i64, Option<String>)>, CheckoutError> {
    if shares.from_stock == 0 {
        return Ok(None);
    }
    // The streams that show the product come back with the move, for the rooms' news of an
    // order without a pin (no statement more under the lock). This statement starts after the
    // lock was taken: on PostgreSQL its snapshot holds every batch that moved a pin before
    // (the lock's own statement may have waited with an older one).
    let left = sqlx::query(
        "UPDATE products SET stock = stock - $1, updated_at = $2 \
         WHERE id = $3 AND archived = 0 AND stock >= $1 RETURNING stock, \
         (SELECT string_agg(pins.id || ' ' || pins.stream_id || ' ' || \
          COALESCE(CAST(pins.remaining AS TEXT), '-'), ',') \
          FROM pins WHERE pins.product_id = $3 AND pins.active = 1)",
    )
    .bind(shares.from_stock)
    .bind(now)
    .bind(product.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| CheckoutError::Conflict("the product's stock moved under its lock".into()))?;
    for (id, taken) in &shares.from_pins {
        if pins.get(id).is_none_or(|p| p.remaining.is_none()) {
            continue;
        }
        let done = sqlx::query(
            "UPDATE pins SET remaining = remaining - $1 WHERE id = $2 AND remaining >= $1",
        )
        .bind(*taken)
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(CheckoutError::Conflict(
                "a pin's quantity moved under its lock".into(),
            ));
        }
    }
    Ok(Some((left.try_get(0)?, left.try_get(1)?)))
}

/// Undoes what requests refused after their claim left: their orders, their units counted
/// against a per-buyer limit, and their keys get the refusal as final answer. Rare: only a
/// batch that meets the end of the stock or of the sale has any.
async fn undo_late(
    tx: &mut Tx<'_>,
    jobs: &[ReserveJob],
    fates: &[Fate],
) -> Result<(), CheckoutError> {
    for (job, fate) in jobs.iter().zip(fates) {
        let Fate::Late(why, order) = fate else {
            continue;
        };
        if let Some(order) = order {
            sqlx::query("DELETE FROM orders WHERE id = $1")
                .bind(order.id.as_str())
                .execute(&mut **tx)
                .await?;
            if let Some(pin) = &order.pin_id {
                sqlx::query(
                    "UPDATE pin_buyers SET quantity = quantity - $1 \
                     WHERE pin_id = $2 AND buyer_id = $3 AND quantity >= $1",
                )
                .bind(i64::from(order.quantity))
                .bind(pin.as_str())
                .bind(job.buyer.as_str())
                .execute(&mut **tx)
                .await?;
            }
        }
        let answer = StoredResult::encode(&OrderResult::Rejected(why.clone()))?;
        sqlx::query(
            "UPDATE idempotency_keys SET order_id = NULL, response = $1 \
             WHERE buyer_id = $2 AND idem_key = $3",
        )
        .bind(answer)
        .bind(job.buyer.as_str())
        .bind(job.key.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
