//! Step 1 of the order path: claim the idempotency key and take the units in one transaction,
//! or store why not. Only conditional UPDATEs move stock; nothing here reads and then writes
//! (a product read as sold out is refused before the transaction, which stock that only goes
//! down between restocks allows). The contended rows are written last, just before the commit.

use super::{NewOrder, ORDER_COLUMNS, Order, OrderResult, OrderSource, Presentment, reject};
use crate::Checkout;
use crate::card::CardNumber;
use crate::catalog::Product;
use crate::db::{now_ms, sql};
use crate::error::{CheckoutError, RejectKind, Rejection, corrupt};
use crate::ledger::Tx;
use crate::order_state::OrderStatus;
use crate::pins::{PIN_COLUMNS, Pin, pin_from_row};
use crate::rates::RatesUnavailable;
use crate::webhooks::EventType;
use crate::webhooks::outbox;
use sqlx::Row;
use vitrine_core::{BuyerId, Currency, Money, OrderId, Timestamp};

/// Outcome of the reserve step.
#[allow(clippy::large_enum_variant)]
pub(super) enum Reserved {
    Order(Order),
    Rejected(Rejection),
    /// The key was claimed by an earlier request.
    KeyTaken,
}

impl Checkout {
    /// Loads a pin by id, or the stream's active pin when it is for `product`.
    async fn pin_for(
        &self,
        new: &NewOrder,
        product: &Product,
    ) -> Result<Result<Option<Pin>, Rejection>, CheckoutError> {
        if new.source == OrderSource::Replay {
            // A replay sells at the catalog price: its show's pins are over.
            return Ok(Ok(None));
        }
        let row = if let Some(pin_id) = &new.pin_id {
            sqlx::query(sql(format!(
                "SELECT {PIN_COLUMNS} FROM pins WHERE pins.id = $1"
            )))
            .bind(pin_id.as_str())
            .fetch_optional(&self.pool)
            .await?
        } else if let Some(stream) = &new.stream_id {
            sqlx::query(sql(format!(
                "SELECT {PIN_COLUMNS} FROM pins WHERE pins.stream_id = $1 AND pins.active = 1"
            )))
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await?
        } else {
            return Ok(Ok(None));
        };
        let pin = row.as_ref().map(|r| pin_from_row(r, product)).transpose()?;
        match pin {
            Some(pin)
                if pin.product_id == product.id
                    && new.stream_id.as_ref().is_none_or(|s| *s == pin.stream_id) =>
            {
                Ok(Ok(Some(pin)))
            }
            Some(pin) if new.pin_id.is_some() && pin.product_id == product.id => Ok(Err(reject(
                RejectKind::NotPinned,
                "that pin belongs to another stream",
            ))),
            _ => Ok(Err(reject(
                RejectKind::NotPinned,
                "the product is not pinned there",
            ))),
        }
    }

    /// Step 1: claim the key and take the units, or store why not.
    pub(super) async fn reserve(
        &self,
        buyer: &BuyerId,
        key: &str,
        hash: &str,
        new: &NewOrder,
        card: &CardNumber,
    ) -> Result<Reserved, CheckoutError> {
        let now = now_ms();
        let claim = Claim { buyer, key, hash };
        let priced = match self.price(new, now).await? {
            Ok(priced) => priced,
            Err(rejection) => return self.refuse(&claim, rejection).await,
        };
        // Stock only goes down between restocks: a product seen sold out is refused without a
        // transaction, which is what most requests are once a flash sale is over.
        if priced.product.stock < i64::from(new.quantity) {
            return self
                .refuse(&claim, reject(RejectKind::SoldOut, "sold out"))
                .await;
        }
        let order = self.new_order(buyer, &priced, new, card, now);
        let mut tx = self.pool.begin().await?;
        // Everything that is this buyer's alone first; the rows every buyer of the sale
        // contends for (the product's stock, the pin's quantity) last, so their locks are held
        // from their UPDATE to the commit and no longer.
        let (left, mut outboxed) =
            match take_rows(&mut tx, &claim, &priced, &order, new.quantity, now).await? {
                Ok(taken) => taken,
                Err(Stop::Refused(rejection)) => {
                    tx.rollback().await?;
                    return self.refuse(&claim, rejection).await;
                }
                Err(Stop::KeyHeld) => {
                    tx.rollback().await?;
                    return Ok(Reserved::KeyTaken);
                }
            };
        if left == 0 {
            let p = &priced.product;
            let sold_out = serde_json::json!({
                "product_id": p.id, "sku": p.sku, "title": p.title,
            });
            outboxed |= outbox::record(
                &mut tx,
                &order.seller_id,
                EventType::ProductSoldOut,
                &sold_out,
            )
            .await?
            .is_some();
        }
        tx.commit().await?;
        // The dispatcher is woken only when there is something for it: most orders have none.
        if outboxed {
            self.wake_webhooks();
        }
        tracing::debug!(order = %order.id, "stock reserved");
        Ok(Reserved::Order(order))
    }

    /// Stores a refusal as the key's final answer (unless an earlier request holds the key).
    async fn refuse(
        &self,
        claim: &Claim<'_>,
        rejection: Rejection,
    ) -> Result<Reserved, CheckoutError> {
        let result = OrderResult::Rejected(rejection.clone());
        Ok(
            if self
                .claim_key_with(claim.buyer, claim.key, claim.hash, &result)
                .await?
            {
                Reserved::Rejected(rejection)
            } else {
                Reserved::KeyTaken
            },
        )
    }

    /// What the request buys and at what price, or why it cannot be bought (read only).
    async fn price(
        &self,
        new: &NewOrder,
        now: i64,
    ) -> Result<Result<Priced, Rejection>, CheckoutError> {
        let Some(product) = self.any_product(&new.product_id).await? else {
            return Ok(Err(reject(RejectKind::ProductNotFound, "no such product")));
        };
        let pin = match self.pin_for(new, &product).await? {
            Ok(pin) => pin,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if let Some(pin) = &pin {
            if pin.ended(now) {
                return Ok(Err(reject(RejectKind::SaleEnded, "the sale has ended")));
            }
            if let Some(limit) = pin.per_buyer_limit.filter(|l| new.quantity > *l) {
                return Ok(Err(reject(
                    RejectKind::LimitExceeded,
                    format!("at most {limit} per buyer"),
                )));
            }
        }
        let unit = pin
            .as_ref()
            .and_then(|p| p.sale_price)
            .unwrap_or(product.price);
        let total = unit
            .times(new.quantity)
            .map_err(|e| CheckoutError::Invalid(e.to_string()))?;
        let presentment = match new.currency {
            Some(c) if c != total.currency => Some(self.present(unit, total, c)?),
            _ => None,
        };
        Ok(Ok(Priced {
            product,
            pin,
            unit,
            total,
            presentment,
        }))
    }

    /// The pending order a reservation makes.
    fn new_order(
        &self,
        buyer: &BuyerId,
        priced: &Priced,
        new: &NewOrder,
        card: &CardNumber,
        now: i64,
    ) -> Order {
        let reserved_until = now + self.config.reservation_window.as_millis() as i64;
        Order {
            id: OrderId::generate_in(self.config.home.as_ref()),
            status: OrderStatus::Pending,
            buyer_id: buyer.clone(),
            seller_id: priced.product.seller_id.clone(),
            product_id: priced.product.id.clone(),
            pin_id: priced.pin.as_ref().map(|p| p.id.clone()),
            stream_id: match new.source {
                OrderSource::Replay => new.stream_id.clone(),
                _ => priced.pin.as_ref().map(|p| p.stream_id.clone()),
            },
            quantity: new.quantity,
            unit_price: priced.unit,
            total: priced.total,
            failure: None,
            payment_id: None,
            card_last4: card.last4().to_owned(),
            reserved_until,
            created_at: now,
            updated_at: now,
            reserved_until_iso: Timestamp(reserved_until),
            created_at_iso: Timestamp(now),
            updated_at_iso: Timestamp(now),
            presentment: priced.presentment.clone(),
            source: new.source,
            media_ms: new.media_ms.filter(|_| new.source == OrderSource::Replay),
            shipment: None,
            shipped_at: None,
            delivered_at: None,
        }
    }

    /// Prices `unit` and `total` in the buyer's currency at the rates in force.
    fn present(
        &self,
        unit: Money,
        total: Money,
        to: Currency,
    ) -> Result<Presentment, CheckoutError> {
        let table = self.rates.fresh().map_err(|e| match e {
            RatesUnavailable::NotConfigured => CheckoutError::Invalid(format!(
                "no exchange rates are configured, so nothing can be priced in {}",
                to.as_str()
            )),
            unavailable => CheckoutError::Unavailable(unavailable.to_string()),
        })?;
        let fx = |e: crate::fx::FxError| CheckoutError::Invalid(e.to_string());
        let quote = table.quote(total.currency, to).map_err(fx)?;
        let converted = quote.convert(total.amount).map_err(fx)?;
        // A card cannot be charged nothing for something the seller is paid for.
        if converted.amount == 0 && total.amount > 0 {
            return Err(CheckoutError::Invalid(format!(
                "{} {} is less than the smallest amount of {}",
                total.amount,
                total.currency.as_str(),
                to.as_str()
            )));
        }
        Ok(Presentment {
            unit_price: quote.convert(unit.amount).map_err(fx)?,
            total: converted,
            rate_base: table.base(),
            rate_from: quote.from_rate.to_string(),
            rate_to: quote.to_rate.to_string(),
            source: table.source.clone(),
            as_of: table.as_of.clone(),
        })
    }
}

/// The idempotency key a reservation claims.
struct Claim<'a> {
    buyer: &'a BuyerId,
    key: &'a str,
    hash: &'a str,
}

/// What a request buys, priced.
struct Priced {
    product: Product,
    pin: Option<Pin>,
    unit: Money,
    total: Money,
    presentment: Option<Presentment>,
}

/// Why the reservation's transaction stops short (the caller rolls it back).
enum Stop {
    /// An earlier request holds the idempotency key.
    KeyHeld,
    Refused(Rejection),
}

/// The reservation's writes, in their order: this buyer's own rows first, the rows every buyer
/// of the sale contends for (the product's stock, the pin's quantity) last, so their locks last
/// from their UPDATE to the commit. The stock left and whether the outbox got a row.
async fn take_rows(
    tx: &mut Tx<'_>,
    claim: &Claim<'_>,
    priced: &Priced,
    order: &Order,
    quantity: u32,
    now: i64,
) -> Result<Result<(i64, bool), Stop>, CheckoutError> {
    if let Some(stop) = claim_and_check_limit(tx, claim, priced, quantity, now).await? {
        return Ok(Err(stop));
    }
    insert_order(tx, order, claim).await?;
    let created = outbox::record(tx, &order.seller_id, EventType::OrderCreated, order).await?;
    Ok(take_stock(tx, priced, quantity, now)
        .await?
        .map(|left| (left, created.is_some())))
}

/// Claims the key (the first write: on SQLite it takes the write lock before anything else),
/// then counts the units against the buyer's per-pin limit (a row of this buyer's only).
async fn claim_and_check_limit(
    tx: &mut Tx<'_>,
    claim: &Claim<'_>,
    priced: &Priced,
    quantity: u32,
    now: i64,
) -> Result<Option<Stop>, CheckoutError> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (buyer_id, idem_key, request_hash, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (buyer_id, idem_key) DO NOTHING",
    )
    .bind(claim.buyer.as_str())
    .bind(claim.key)
    .bind(claim.hash)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 0 {
        return Ok(Some(Stop::KeyHeld));
    }
    let Some((pin, limit)) = priced
        .pin
        .as_ref()
        .and_then(|p| p.per_buyer_limit.map(|l| (p, l)))
    else {
        return Ok(None);
    };
    let took = sqlx::query(
        "INSERT INTO pin_buyers (pin_id, buyer_id, quantity) VALUES ($1, $2, $3) \
         ON CONFLICT (pin_id, buyer_id) DO UPDATE \
         SET quantity = pin_buyers.quantity + excluded.quantity \
         WHERE pin_buyers.quantity + excluded.quantity <= $4",
    )
    .bind(pin.id.as_str())
    .bind(claim.buyer.as_str())
    .bind(i64::from(quantity))
    .bind(i64::from(limit))
    .execute(&mut **tx)
    .await?;
    Ok((took.rows_affected() == 0).then(|| {
        Stop::Refused(reject(
            RejectKind::LimitExceeded,
            format!("at most {limit} per buyer"),
        ))
    }))
}

/// Takes the units from the product's stock and the pin's quantity cap, each with a
/// conditional UPDATE: the two rows every buyer of a sale contends for, so the last writes
/// before the commit. The product's stock left, or the refusal when either is spent (or the
/// sale ended meanwhile).
async fn take_stock(
    tx: &mut Tx<'_>,
    priced: &Priced,
    quantity: u32,
    now: i64,
) -> Result<Result<i64, Stop>, CheckoutError> {
    let q = i64::from(quantity);
    let took = sqlx::query(
        "UPDATE products SET stock = stock - $1, updated_at = $2 \
         WHERE id = $3 AND archived = 0 AND stock >= $1 RETURNING stock",
    )
    .bind(q)
    .bind(now)
    .bind(priced.product.id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(took) = took else {
        return Ok(Err(Stop::Refused(reject(RejectKind::SoldOut, "sold out"))));
    };
    let left: i64 = took.try_get(0)?;
    let Some(pin) = &priced.pin else {
        return Ok(Ok(left));
    };
    let took = sqlx::query(
        "UPDATE pins SET remaining = remaining - $1 WHERE id = $2 AND active = 1 \
         AND (remaining IS NULL OR remaining >= $1) AND (ends_at IS NULL OR ends_at > $3)",
    )
    .bind(q)
    .bind(pin.id.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if took.rows_affected() > 0 {
        return Ok(Ok(left));
    }
    let still_on = sqlx::query(
        "SELECT 1 FROM pins WHERE id = $1 AND active = 1 AND (ends_at IS NULL OR ends_at > $2)",
    )
    .bind(pin.id.as_str())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?
    .is_some();
    Ok(Err(Stop::Refused(if still_on {
        reject(RejectKind::SoldOut, "the sale's quantity is sold out")
    } else {
        reject(RejectKind::SaleEnded, "the sale has ended")
    })))
}

/// Inserts the pending order and ties the key to it.
async fn insert_order(
    tx: &mut Tx<'_>,
    order: &Order,
    claim: &Claim<'_>,
) -> Result<(), CheckoutError> {
    sqlx::query(sql(format!(
        "INSERT INTO orders ({ORDER_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, $18, $19, \
         NULL, NULL, NULL, NULL)"
    )))
    .bind(order.id.as_str())
    .bind(order.status.as_str())
    .bind(order.buyer_id.as_str())
    .bind(order.seller_id.as_str())
    .bind(order.product_id.as_str())
    .bind(order.pin_id.as_ref().map(|p| p.as_str().to_owned()))
    .bind(order.stream_id.as_ref().map(|s| s.as_str().to_owned()))
    .bind(i64::from(order.quantity))
    .bind(order.unit_price.amount)
    .bind(order.total.amount)
    .bind(order.total.currency.as_str())
    .bind(None::<String>)
    .bind(None::<String>)
    .bind(&order.card_last4)
    .bind(order.reserved_until)
    .bind(order.created_at)
    .bind(
        order
            .presentment
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?,
    )
    .bind(order.source.as_str())
    .bind(order.media_ms.map(|ms| ms as i64))
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE idempotency_keys SET order_id = $1 WHERE buyer_id = $2 AND idem_key = $3")
        .bind(order.id.as_str())
        .bind(claim.buyer.as_str())
        .bind(claim.key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
