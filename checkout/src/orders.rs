//! Orders: reserve stock, charge the card, settle. The order path in three steps, each safe to
//! die in:
//!
//! 1. **Reserve** (one transaction): claim the idempotency key, take the units with conditional
//!    UPDATEs (product stock, the pin's quantity cap, the buyer's per-pin limit), insert the
//!    order as `pending` with a reservation deadline. Nothing is read and then written.
//! 2. **Charge**: create the payment at the processor keyed by the order id, wait for its
//!    asynchronous confirmation up to the payment timeout, cancel it if it has not settled.
//! 3. **Settle** (one transaction): move the order out of `pending` with a conditional UPDATE,
//!    give the units back if it did not sell, and store the result with the idempotency key.
//!
//! A process that dies between 1 and 3 leaves a `pending` order; the reaper settles it from the
//! processor's own record once its reservation window has passed.

use crate::Checkout;
use crate::card::CardNumber;
use crate::catalog::Product;
use crate::db::now_ms;
use crate::db::sql;
use crate::error::{CheckoutError, RejectKind, Rejection, corrupt};
use crate::idempotency::{KeyRecord, request_hash, validate_key};
use crate::ledger;
use crate::order_state::{OrderEvent, OrderStatus};
use crate::payment::{ChargeRequest, Payment, PaymentStatus};
use crate::pins::{PIN_COLUMNS, Pin, pin_from_row};
use crate::webhooks::EventType;
use crate::webhooks::outbox;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::time::Duration;
use vitrine_core::{
    BuyerId, CommerceEvent, Currency, Money, OrderId, OrderSummary, PinId, ProductId, SellerId,
    StreamId, Timestamp,
};

/// Most units in one order.
pub const MAX_ORDER_QUANTITY: u32 = 1000;
/// Most orders listed in one page.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentDetails {
    /// Sandbox: 4242424242424242 approves, 4000000000000002 declines, 4000000000000119 never
    /// settles.
    pub card_number: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub product_id: ProductId,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
    /// Buy through this pin (its sale price and limits apply).
    #[serde(default)]
    pub pin_id: Option<PinId>,
    /// Buy through this stream's current pin.
    #[serde(default)]
    pub stream_id: Option<StreamId>,
    /// The buyer's currency: the order is priced and charged in it, at the rates in force, and
    /// keeps that quote; the seller is settled in the product's currency.
    #[serde(default)]
    pub currency: Option<Currency>,
    #[schema(inline)]
    pub payment: PaymentDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Order {
    pub id: OrderId,
    pub status: OrderStatus,
    pub buyer_id: BuyerId,
    pub seller_id: SellerId,
    pub product_id: ProductId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pin_id: Option<PinId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stream_id: Option<StreamId>,
    pub quantity: u32,
    pub unit_price: Money,
    pub total: Money,
    /// Why a cancelled order did not sell: `payment_declined`, `payment_timeout`,
    /// `reservation_expired` or `cancelled_by_seller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub payment_id: Option<String>,
    pub card_last4: String,
    /// Unix milliseconds until which the stock stays reserved for a pending order.
    pub reserved_until: i64,
    /// Unix milliseconds (kept for existing clients; `created_at_iso` is the same instant).
    pub created_at: i64,
    /// Unix milliseconds (kept for existing clients; `updated_at_iso` is the same instant).
    pub updated_at: i64,
    // Filled from the millisecond fields when a response stored before they existed is read
    // back (an idempotent replay): see `Order::with_iso_times`.
    #[serde(default = "unset_time")]
    pub reserved_until_iso: Timestamp,
    #[serde(default = "unset_time")]
    pub created_at_iso: Timestamp,
    #[serde(default = "unset_time")]
    pub updated_at_iso: Timestamp,
    /// The price in the buyer's currency, as quoted when the order was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub presentment: Option<Presentment>,
}

/// The price in the buyer's currency, locked when the order was placed, and the quote it came
/// from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Presentment {
    pub unit_price: Money,
    pub total: Money,
    /// The base currency of the rates, and the two rates against it (exact decimals).
    pub rate_base: Currency,
    pub rate_from: String,
    pub rate_to: String,
    pub source: String,
    pub as_of: String,
}

fn unset_time() -> Timestamp {
    Timestamp(0)
}

impl Order {
    /// The RFC 3339 twins recomputed from the millisecond fields, which are the record.
    pub(crate) fn with_iso_times(mut self) -> Self {
        self.reserved_until_iso = Timestamp(self.reserved_until);
        self.created_at_iso = Timestamp(self.created_at);
        self.updated_at_iso = Timestamp(self.updated_at);
        self
    }

    /// What the buyer's card is charged: the locked price in their currency, or the total.
    pub fn charge_amount(&self) -> Money {
        self.presentment.as_ref().map_or(self.total, |p| p.total)
    }

    pub fn summary(&self) -> OrderSummary {
        OrderSummary {
            id: self.id.clone(),
            status: self.status.as_str().to_owned(),
            product_id: self.product_id.clone(),
            quantity: self.quantity,
            total: self.total,
            charged: self.presentment.as_ref().map(|p| p.total),
            stream_id: self.stream_id.clone(),
            created_at: self.created_at,
        }
    }
}

/// The final answer to an order request, as stored with its idempotency key.
// One short-lived value per request: boxing the order would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OrderResult {
    Created(Order),
    Rejected(Rejection),
}

/// What [`Checkout::place_order`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub result: OrderResult,
    /// True when this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
}

pub(crate) const ORDER_COLUMNS: &str = "id, status, buyer_id, seller_id, product_id, pin_id, stream_id, \
     quantity, unit_amount, total_amount, currency, failure, payment_id, card_last4, \
     reserved_until, created_at, updated_at, presentment";

pub(crate) fn order_from_row(r: &AnyRow) -> Result<Order, CheckoutError> {
    let status: String = r.try_get(1)?;
    let currency = Currency::parse(&r.try_get::<String, _>(10)?).map_err(corrupt)?;
    let opt_id = |i: usize| -> Result<Option<String>, CheckoutError> { Ok(r.try_get(i)?) };
    Ok(Order {
        id: OrderId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
        status: OrderStatus::parse(&status).ok_or_else(|| corrupt(status))?,
        buyer_id: BuyerId::parse(&r.try_get::<String, _>(2)?).map_err(corrupt)?,
        seller_id: SellerId::parse(&r.try_get::<String, _>(3)?).map_err(corrupt)?,
        product_id: ProductId::parse(&r.try_get::<String, _>(4)?).map_err(corrupt)?,
        pin_id: opt_id(5)?
            .map(|s| PinId::parse(&s).map_err(corrupt))
            .transpose()?,
        stream_id: opt_id(6)?
            .map(|s| StreamId::parse(&s).map_err(corrupt))
            .transpose()?,
        quantity: u32::try_from(r.try_get::<i64, _>(7)?).map_err(corrupt)?,
        unit_price: Money {
            amount: r.try_get(8)?,
            currency,
        },
        total: Money {
            amount: r.try_get(9)?,
            currency,
        },
        failure: r.try_get(11)?,
        payment_id: r.try_get(12)?,
        card_last4: r.try_get(13)?,
        reserved_until: r.try_get(14)?,
        created_at: r.try_get(15)?,
        updated_at: r.try_get(16)?,
        reserved_until_iso: Timestamp(r.try_get(14)?),
        created_at_iso: Timestamp(r.try_get(15)?),
        updated_at_iso: Timestamp(r.try_get(16)?),
        presentment: r
            .try_get::<Option<String>, _>(17)?
            .map(|json| serde_json::from_str(&json).map_err(corrupt))
            .transpose()?,
    })
}

/// Outcome of the reserve step.
#[allow(clippy::large_enum_variant)]
enum Reserved {
    Order(Order),
    Rejected(Rejection),
    /// The key was claimed by an earlier request.
    KeyTaken,
}

fn reject(kind: RejectKind, detail: impl Into<String>) -> Rejection {
    Rejection::new(kind, detail)
}

impl Checkout {
    /// Places an order for `buyer`, idempotent on `key`.
    #[tracing::instrument(skip_all, fields(buyer = %buyer, product = %new.product_id))]
    pub async fn place_order(
        &self,
        buyer: &BuyerId,
        key: &str,
        new: NewOrder,
    ) -> Result<Placed, CheckoutError> {
        validate_key(key)?;
        if new.quantity == 0 || new.quantity > MAX_ORDER_QUANTITY {
            return Err(CheckoutError::Invalid(format!(
                "quantity must be 1 to {MAX_ORDER_QUANTITY}"
            )));
        }
        let card = CardNumber::parse(&new.payment.card_number)
            .map_err(|e| CheckoutError::Invalid(e.to_string()))?;
        let hash = request_hash(&new, &card);
        if let Some(existing) = self.load_key(buyer, key).await? {
            return self.replay(buyer, key, &hash, existing).await;
        }
        let order = match self.reserve(buyer, key, &hash, &new, &card).await? {
            Reserved::Order(order) => order,
            Reserved::Rejected(rejection) => {
                return Ok(Placed {
                    result: OrderResult::Rejected(rejection),
                    replayed: false,
                });
            }
            Reserved::KeyTaken => {
                let existing = self
                    .load_key(buyer, key)
                    .await?
                    .ok_or(CheckoutError::NotFound("idempotency key vanished"))?;
                return self.replay(buyer, key, &hash, existing).await;
            }
        };
        self.announce_stock(&order.product_id).await;
        let result = self.charge(order, &card).await?;
        Ok(Placed {
            result,
            replayed: false,
        })
    }

    /// Answers a repeated key (`record`, as just read): the stored result, once the first
    /// request has one.
    async fn replay(
        &self,
        buyer: &BuyerId,
        key: &str,
        hash: &str,
        mut record: KeyRecord,
    ) -> Result<Placed, CheckoutError> {
        if record.request_hash != hash {
            return Ok(Placed {
                result: OrderResult::Rejected(reject(
                    RejectKind::IdempotencyKeyReused,
                    "this Idempotency-Key was used with a different request",
                )),
                replayed: true,
            });
        }
        // The first request may still be charging (a double tap arrives while it waits for the
        // processor): wait for its result, as long as a payment can take.
        let deadline =
            tokio::time::Instant::now() + self.config.payment_timeout + Duration::from_secs(2);
        loop {
            if let Some(result) = record.response {
                return Ok(Placed {
                    result,
                    replayed: true,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Placed {
                    result: OrderResult::Rejected(reject(
                        RejectKind::RequestInProgress,
                        "the first request with this key is still being processed; retry later",
                    )),
                    replayed: true,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            record = self
                .load_key(buyer, key)
                .await?
                .ok_or(CheckoutError::NotFound("idempotency key vanished"))?;
        }
    }

    /// Loads a pin by id, or the stream's active pin when it is for `product`.
    async fn pin_for(
        &self,
        new: &NewOrder,
        product: &Product,
    ) -> Result<Result<Option<Pin>, Rejection>, CheckoutError> {
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
    async fn reserve(
        &self,
        buyer: &BuyerId,
        key: &str,
        hash: &str,
        new: &NewOrder,
        card: &CardNumber,
    ) -> Result<Reserved, CheckoutError> {
        let now = now_ms();
        let refused = |rejection: Rejection| async move {
            let result = OrderResult::Rejected(rejection.clone());
            Ok(if self.claim_key_with(buyer, key, hash, &result).await? {
                Reserved::Rejected(rejection)
            } else {
                Reserved::KeyTaken
            })
        };
        let Some(product) = self.any_product(&new.product_id).await? else {
            return refused(reject(RejectKind::ProductNotFound, "no such product")).await;
        };
        let pin = match self.pin_for(new, &product).await? {
            Ok(pin) => pin,
            Err(rejection) => return refused(rejection).await,
        };
        if let Some(pin) = &pin {
            if pin.ended(now) {
                return refused(reject(RejectKind::SaleEnded, "the sale has ended")).await;
            }
            if pin.per_buyer_limit.is_some_and(|l| new.quantity > l) {
                return refused(reject(
                    RejectKind::LimitExceeded,
                    format!("at most {} per buyer", pin.per_buyer_limit.unwrap_or(0)),
                ))
                .await;
            }
        }
        let unit = pin
            .as_ref()
            .and_then(|p| p.sale_price)
            .unwrap_or(product.price);
        let total = unit
            .times(new.quantity)
            .map_err(|e| CheckoutError::Invalid(e.to_string()))?;
        let q = i64::from(new.quantity);
        let presentment = match new.currency {
            Some(c) if c != total.currency => Some(self.present(unit, total, c)?),
            _ => None,
        };

        let mut tx = self.pool.begin().await?;
        // The claim is the first write: on SQLite it takes the write lock before anything else.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (buyer_id, idem_key, request_hash, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (buyer_id, idem_key) DO NOTHING",
        )
        .bind(buyer.as_str())
        .bind(key)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Reserved::KeyTaken);
        }
        let took = sqlx::query(
            "UPDATE products SET stock = stock - $1, updated_at = $2 \
             WHERE id = $3 AND archived = 0 AND stock >= $1 RETURNING stock",
        )
        .bind(q)
        .bind(now)
        .bind(product.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(took) = took else {
            tx.rollback().await?;
            return refused(reject(RejectKind::SoldOut, "sold out")).await;
        };
        let left: i64 = took.try_get(0)?;
        if let Some(pin) = &pin {
            let took = sqlx::query(
                "UPDATE pins SET remaining = remaining - $1 WHERE id = $2 AND active = 1 \
                 AND (remaining IS NULL OR remaining >= $1) AND (ends_at IS NULL OR ends_at > $3)",
            )
            .bind(q)
            .bind(pin.id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if took.rows_affected() == 0 {
                let still_on = sqlx::query(
                    "SELECT 1 FROM pins WHERE id = $1 AND active = 1 \
                     AND (ends_at IS NULL OR ends_at > $2)",
                )
                .bind(pin.id.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                tx.rollback().await?;
                return refused(if still_on {
                    reject(RejectKind::SoldOut, "the sale's quantity is sold out")
                } else {
                    reject(RejectKind::SaleEnded, "the sale has ended")
                })
                .await;
            }
            if let Some(limit) = pin.per_buyer_limit {
                let took = sqlx::query(
                    "INSERT INTO pin_buyers (pin_id, buyer_id, quantity) VALUES ($1, $2, $3) \
                     ON CONFLICT (pin_id, buyer_id) DO UPDATE \
                     SET quantity = pin_buyers.quantity + excluded.quantity \
                     WHERE pin_buyers.quantity + excluded.quantity <= $4",
                )
                .bind(pin.id.as_str())
                .bind(buyer.as_str())
                .bind(q)
                .bind(i64::from(limit))
                .execute(&mut *tx)
                .await?;
                if took.rows_affected() == 0 {
                    tx.rollback().await?;
                    return refused(reject(
                        RejectKind::LimitExceeded,
                        format!("at most {limit} per buyer"),
                    ))
                    .await;
                }
            }
        }
        let order = Order {
            id: OrderId::generate(),
            status: OrderStatus::Pending,
            buyer_id: buyer.clone(),
            seller_id: product.seller_id.clone(),
            product_id: product.id.clone(),
            pin_id: pin.as_ref().map(|p| p.id.clone()),
            stream_id: pin.as_ref().map(|p| p.stream_id.clone()),
            quantity: new.quantity,
            unit_price: unit,
            total,
            failure: None,
            payment_id: None,
            card_last4: card.last4().to_owned(),
            reserved_until: now + self.config.reservation_window.as_millis() as i64,
            created_at: now,
            updated_at: now,
            reserved_until_iso: Timestamp(now + self.config.reservation_window.as_millis() as i64),
            created_at_iso: Timestamp(now),
            updated_at_iso: Timestamp(now),
            presentment,
        };
        sqlx::query(sql(format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17)"
        )))
        .bind(order.id.as_str())
        .bind(order.status.as_str())
        .bind(order.buyer_id.as_str())
        .bind(order.seller_id.as_str())
        .bind(order.product_id.as_str())
        .bind(order.pin_id.as_ref().map(|p| p.as_str().to_owned()))
        .bind(order.stream_id.as_ref().map(|s| s.as_str().to_owned()))
        .bind(q)
        .bind(unit.amount)
        .bind(total.amount)
        .bind(total.currency.as_str())
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(&order.card_last4)
        .bind(order.reserved_until)
        .bind(now)
        .bind(
            order
                .presentment
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(corrupt)?,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE idempotency_keys SET order_id = $1 WHERE buyer_id = $2 AND idem_key = $3",
        )
        .bind(order.id.as_str())
        .bind(buyer.as_str())
        .bind(key)
        .execute(&mut *tx)
        .await?;
        let mut outboxed =
            outbox::record(&mut tx, &order.seller_id, EventType::OrderCreated, &order)
                .await?
                .is_some();
        if left == 0 {
            let sold_out = serde_json::json!({
                "product_id": product.id, "sku": product.sku, "title": product.title,
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

    /// Step 2: charge the card and wait for the confirmation, then settle.
    async fn charge(&self, order: Order, card: &CardNumber) -> Result<OrderResult, CheckoutError> {
        // The buyer pays in their currency when the order was priced in it; the processor
        // settles the seller in the product's, at the rate locked on the order.
        let request = ChargeRequest {
            reference: order.id.to_string(),
            amount: order.charge_amount(),
            card: card.clone(),
        };
        // A processor that cannot be reached leaves the order pending: the reaper asks again
        // when the reservation expires, so a charge that did go through is never lost.
        self.payments.create(&request).await?;
        let mut payment = self
            .payments
            .wait(&request.reference, self.config.payment_timeout)
            .await?;
        if payment.status == PaymentStatus::Processing {
            payment = self.payments.cancel(&request.reference).await?;
        }
        self.settle(order, &payment).await
    }

    /// Step 3: apply the processor's answer to a pending order.
    pub(crate) async fn settle(
        &self,
        order: Order,
        payment: &Payment,
    ) -> Result<OrderResult, CheckoutError> {
        let (event, failure) = match &payment.status {
            PaymentStatus::Succeeded => (OrderEvent::PaymentSucceeded, None),
            PaymentStatus::Declined { code } => (
                OrderEvent::Cancel,
                Some(reject(
                    RejectKind::PaymentDeclined,
                    format!("the card was declined ({code})"),
                )),
            ),
            PaymentStatus::Processing | PaymentStatus::Cancelled | PaymentStatus::Refunded => (
                OrderEvent::Cancel,
                Some(reject(
                    RejectKind::PaymentTimeout,
                    "the card processor did not confirm in time; nothing was charged",
                )),
            ),
        };
        let reason = failure.as_ref().map(|r| match r.kind {
            RejectKind::PaymentDeclined => "payment_declined",
            _ => "payment_timeout",
        });
        match self
            .transition(&order, event, reason, Some(&payment.id), failure.as_ref())
            .await?
        {
            Some(settled) => Ok(match failure {
                None => OrderResult::Created(settled),
                Some(rejection) => OrderResult::Rejected(rejection),
            }),
            None => {
                // Someone else settled it first (the reaper, after the reservation expired).
                let current = self.order_by_id(&order.id).await?;
                if current.status != OrderStatus::Paid && payment.status == PaymentStatus::Succeeded
                {
                    self.payments.refund(&payment.reference).await?;
                }
                Ok(if current.status == OrderStatus::Paid {
                    OrderResult::Created(current)
                } else {
                    OrderResult::Rejected(reject(
                        RejectKind::PaymentTimeout,
                        "the reservation expired before the payment was confirmed",
                    ))
                })
            }
        }
    }

    /// Applies `event` to `order` if it is still in the state it was read in. Gives the units
    /// back when the new state restocks, and stores the placement result when the order leaves
    /// `pending`. `None` when another actor changed the order first.
    pub(crate) async fn transition(
        &self,
        order: &Order,
        event: OrderEvent,
        failure: Option<&str>,
        payment_id: Option<&str>,
        rejection: Option<&Rejection>,
    ) -> Result<Option<Order>, CheckoutError> {
        let next = order
            .status
            .apply(event)
            .map_err(|e| CheckoutError::Conflict(e.to_string()))?;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE orders SET status = $1, failure = COALESCE($2, failure), \
             payment_id = COALESCE($3, payment_id), updated_at = $4 \
             WHERE id = $5 AND status = $6",
        )
        .bind(next.as_str())
        .bind(failure)
        .bind(payment_id)
        .bind(now)
        .bind(order.id.as_str())
        .bind(order.status.as_str())
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let q = i64::from(order.quantity);
        if next.restocks() {
            sqlx::query("UPDATE products SET stock = stock + $1, updated_at = $2 WHERE id = $3")
                .bind(q)
                .bind(now)
                .bind(order.product_id.as_str())
                .execute(&mut *tx)
                .await?;
            if let Some(pin) = &order.pin_id {
                sqlx::query(
                    "UPDATE pins SET remaining = remaining + $1 WHERE id = $2 AND remaining IS NOT NULL",
                )
                .bind(q)
                .bind(pin.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE pin_buyers SET quantity = quantity - $1 \
                     WHERE pin_id = $2 AND buyer_id = $3 AND quantity >= $1",
                )
                .bind(q)
                .bind(pin.as_str())
                .bind(order.buyer_id.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        let mut settled = order.clone();
        settled.status = next;
        settled.updated_at = now;
        settled.updated_at_iso = Timestamp(now);
        if let Some(f) = failure {
            settled.failure = Some(f.to_owned());
        }
        if let Some(p) = payment_id {
            settled.payment_id = Some(p.to_owned());
        }
        let webhook = match (event, next) {
            (_, OrderStatus::Paid) => Some(EventType::OrderPaid),
            (_, OrderStatus::Refunded) => Some(EventType::OrderRefunded),
            (OrderEvent::Cancel, _) if failure.is_some_and(|f| f.starts_with("payment_")) => {
                Some(EventType::PaymentFailed)
            }
            _ => None,
        };
        let mut outboxed = false;
        if let Some(kind) = webhook {
            outboxed = outbox::record(&mut tx, &order.seller_id, kind, &settled)
                .await?
                .is_some();
        }
        if let Some(entry) = ledger::for_order(&settled, next, &self.config.fees) {
            ledger::post(&mut tx, &entry, now).await?;
        }
        if order.status == OrderStatus::Pending {
            let result = match rejection {
                Some(r) => OrderResult::Rejected(r.clone()),
                None => OrderResult::Created(settled.clone()),
            };
            sqlx::query(
                "UPDATE idempotency_keys SET response = $1 WHERE buyer_id = $2 AND order_id = $3",
            )
            .bind(serde_json::to_string(&result).map_err(corrupt)?)
            .bind(order.buyer_id.as_str())
            .bind(order.id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if outboxed {
            self.wake_webhooks();
        }
        tracing::info!(order = %order.id, from = order.status.as_str(), to = next.as_str(), "order");
        self.announce_order(&settled).await;
        Ok(Some(settled))
    }

    /// Tells the rooms about an order that changed.
    async fn announce_order(&self, order: &Order) {
        self.events.emit(CommerceEvent::Order {
            stream: order.stream_id.clone(),
            seller: order.seller_id.clone(),
            buyer: order.buyer_id.clone(),
            order: order.summary(),
        });
        if order.status.restocks() {
            self.announce_stock(&order.product_id).await;
        } else if order.status == OrderStatus::Paid
            && let Some(stream) = &order.stream_id
        {
            let available = match self.active_pin(stream).await {
                Ok(Some((pin, product))) if pin.product_id == order.product_id => {
                    pin.available(&product)
                }
                _ => return,
            };
            self.events.emit(CommerceEvent::Purchase {
                stream: stream.clone(),
                product: order.product_id.clone(),
                quantity: order.quantity,
                available,
            });
        }
    }

    pub(crate) async fn order_by_id(&self, id: &OrderId) -> Result<Order, CheckoutError> {
        let row = sqlx::query(sql(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(order_from_row)
            .transpose()?
            .ok_or(CheckoutError::NotFound("no such order"))
    }

    /// An order its buyer may see.
    pub async fn order_for_buyer(
        &self,
        buyer: &BuyerId,
        id: &OrderId,
    ) -> Result<Order, CheckoutError> {
        let order = self.order_by_id(id).await?;
        if order.buyer_id != *buyer {
            return Err(CheckoutError::NotFound("no such order"));
        }
        Ok(order)
    }

    /// An order its seller may see.
    pub async fn order_for_seller(
        &self,
        seller: &SellerId,
        id: &OrderId,
    ) -> Result<Order, CheckoutError> {
        let order = self.order_by_id(id).await?;
        if order.seller_id != *seller {
            return Err(CheckoutError::NotFound("no such order"));
        }
        Ok(order)
    }

    /// A buyer's newest orders (the first page of [`Checkout::orders_page`]).
    pub async fn orders_of_buyer(&self, buyer: &BuyerId) -> Result<Vec<Order>, CheckoutError> {
        let first = OrderQuery::default();
        Ok(self
            .orders_page(OrderOwner::Buyer(buyer), &first)
            .await?
            .orders)
    }

    /// A seller's newest orders (the first page of [`Checkout::orders_page`]).
    pub async fn orders_of_seller(&self, seller: &SellerId) -> Result<Vec<Order>, CheckoutError> {
        let first = OrderQuery::default();
        Ok(self
            .orders_page(OrderOwner::Seller(seller), &first)
            .await?
            .orders)
    }

    /// The seller ships a paid order.
    pub async fn fulfil(&self, seller: &SellerId, id: &OrderId) -> Result<Order, CheckoutError> {
        let order = self.order_for_seller(seller, id).await?;
        self.transition(&order, OrderEvent::Fulfil, None, None, None)
            .await?
            .ok_or_else(|| CheckoutError::Conflict("the order changed meanwhile; retry".into()))
    }

    /// The seller refunds a paid or fulfilled order in full; the units go back to stock.
    pub async fn refund(&self, seller: &SellerId, id: &OrderId) -> Result<Order, CheckoutError> {
        let order = self.order_for_seller(seller, id).await?;
        order
            .status
            .apply(OrderEvent::Refund)
            .map_err(|e| CheckoutError::Conflict(e.to_string()))?;
        // Refund at the processor first: an order marked refunded must have its money back.
        // A retry after a crash here is safe: refunding a refunded payment is a no-op.
        self.payments.refund(order.id.as_str()).await?;
        self.transition(&order, OrderEvent::Refund, None, None, None)
            .await?
            .ok_or_else(|| CheckoutError::Conflict("the order changed meanwhile; retry".into()))
    }

    /// The seller cancels an order. A pending one (its payment not confirmed) has the payment
    /// cancelled at the processor and its units released; a paid one, not yet shipped, is
    /// refunded in full (and so ends `refunded`); a shipped one must be refunded explicitly.
    pub async fn cancel(&self, seller: &SellerId, id: &OrderId) -> Result<Order, CheckoutError> {
        let order = self.order_for_seller(seller, id).await?;
        match order.status {
            OrderStatus::Paid => self.refund(seller, id).await,
            OrderStatus::Pending => {
                let payment = match self.payments.retrieve(order.id.as_str()).await? {
                    Some(p) if p.status == PaymentStatus::Processing => {
                        Some(self.payments.cancel(order.id.as_str()).await?)
                    }
                    other => other,
                };
                match payment {
                    Some(p) => {
                        self.settle(order, &p).await?;
                    }
                    None => {
                        let rejection = Rejection::new(
                            RejectKind::PaymentTimeout,
                            "the seller cancelled the order before it was paid",
                        );
                        self.transition(
                            &order,
                            OrderEvent::Cancel,
                            Some("cancelled_by_seller"),
                            None,
                            Some(&rejection),
                        )
                        .await?;
                    }
                }
                let after = self.order_for_seller(seller, id).await?;
                if after.status == OrderStatus::Paid {
                    return Err(CheckoutError::Conflict(
                        "the payment went through first; refund the order instead".into(),
                    ));
                }
                Ok(after)
            }
            other => Err(CheckoutError::Conflict(format!(
                "a {} order cannot be cancelled",
                other.as_str()
            ))),
        }
    }
}

/// Filters and a page of `GET /api/v1/orders`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders in this state
    #[param(inline)]
    pub status: Option<OrderStatus>,
    /// Only orders placed through this stream
    #[param(inline)]
    pub stream_id: Option<StreamId>,
    /// Only orders of this product
    #[param(inline)]
    pub product_id: Option<ProductId>,
    /// Created at or after (RFC 3339, UTC)
    #[param(inline)]
    pub created_since: Option<vitrine_core::Timestamp>,
    /// Created before (RFC 3339, UTC)
    #[param(inline)]
    pub created_before: Option<vitrine_core::Timestamp>,
    /// Orders per page
    #[param(minimum = 1, maximum = 200, default = 200)]
    pub limit: Option<i64>,
    /// The previous page's next_cursor
    pub cursor: Option<String>,
}

/// One page of orders, newest first; `next_cursor` is absent on the last page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Absent on the last page
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// The position after an order in newest-first order, opaque to clients.
fn cursor_of(order: &Order) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}.{}", order.created_at, order.id))
}

fn parse_cursor(raw: &str) -> Result<(i64, OrderId), CheckoutError> {
    use base64::Engine;
    let bad = || CheckoutError::Invalid("cursor: not one this API returned".into());
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        OrderId::parse(id).map_err(|_| bad())?,
    ))
}

/// A value bound to a query, in placeholder order.
enum Arg {
    Text(String),
    Number(i64),
}

impl Checkout {
    /// A page of the orders of a buyer or a seller, newest first, filtered. Keyset pagination:
    /// the cursor is the last order's (created_at, id), so pages stay stable while orders arrive.
    pub async fn orders_page(
        &self,
        owner: OrderOwner<'_>,
        q: &OrderQuery,
    ) -> Result<OrderPage, CheckoutError> {
        // 200 by default: the page size this list had before it took a limit.
        let limit = match q.limit {
            None => 200,
            Some(n @ 1..=200) => n,
            Some(_) => return Err(CheckoutError::Invalid("limit must be 1 to 200".into())),
        };
        let mut clauses = vec![];
        let mut args = vec![];
        let mut add = |sql: &str, values: Vec<Arg>| {
            let mut sql = sql.to_owned();
            for v in values {
                args.push(v);
                sql = sql.replacen('?', &format!("${}", args.len()), 1);
            }
            clauses.push(sql);
        };
        match owner {
            OrderOwner::Buyer(b) => add("buyer_id = ?", vec![Arg::Text(b.as_str().into())]),
            OrderOwner::Seller(s) => add("seller_id = ?", vec![Arg::Text(s.as_str().into())]),
        }
        if let Some(s) = q.status {
            add("status = ?", vec![Arg::Text(s.as_str().into())]);
        }
        if let Some(s) = &q.stream_id {
            add("stream_id = ?", vec![Arg::Text(s.as_str().into())]);
        }
        if let Some(p) = &q.product_id {
            add("product_id = ?", vec![Arg::Text(p.as_str().into())]);
        }
        if let Some(t) = q.created_since {
            add("created_at >= ?", vec![Arg::Number(t.millis())]);
        }
        if let Some(t) = q.created_before {
            add("created_at < ?", vec![Arg::Number(t.millis())]);
        }
        if let Some(c) = &q.cursor {
            let (at, id) = parse_cursor(c)?;
            add(
                "(created_at < ? OR (created_at = ? AND id < ?))",
                vec![
                    Arg::Number(at),
                    Arg::Number(at),
                    Arg::Text(id.as_str().into()),
                ],
            );
        }
        add("1 = 1 LIMIT ?", vec![Arg::Number(limit + 1)]);
        let (filters, tail) = clauses.split_at(clauses.len() - 1);
        let query = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE {} ORDER BY created_at DESC, id DESC {}",
            filters.join(" AND "),
            tail[0].trim_start_matches("1 = 1 ")
        );
        let mut sqlq = sqlx::query(sql(query));
        for a in args {
            sqlq = match a {
                Arg::Text(t) => sqlq.bind(t),
                Arg::Number(n) => sqlq.bind(n),
            };
        }
        let rows = sqlq.fetch_all(&self.pool).await?;
        let mut orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if orders.len() as i64 > limit {
            orders.pop();
            orders.last().map(cursor_of)
        } else {
            None
        };
        Ok(OrderPage {
            orders,
            next_cursor,
        })
    }
}

/// Whose orders a page lists.
#[derive(Debug, Clone, Copy)]
pub enum OrderOwner<'a> {
    Buyer(&'a BuyerId),
    Seller(&'a SellerId),
}

impl Checkout {
    /// Prices `unit` and `total` in the buyer's currency at the rates in force.
    fn present(
        &self,
        unit: Money,
        total: Money,
        to: Currency,
    ) -> Result<Presentment, CheckoutError> {
        let table = self.rates.current().ok_or_else(|| {
            CheckoutError::Invalid(format!(
                "no exchange rates are configured, so nothing can be priced in {}",
                to.as_str()
            ))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A response stored for an idempotent replay before the RFC 3339 twins existed still
    /// reads back, and comes out with them.
    #[test]
    fn a_stored_order_without_iso_times_replays_with_them() {
        let usd = Money::new(4900, Currency::parse("USD").unwrap()).unwrap();
        let order = Order {
            id: OrderId::generate(),
            status: OrderStatus::Paid,
            buyer_id: BuyerId::generate(),
            seller_id: SellerId::generate(),
            product_id: ProductId::generate(),
            pin_id: None,
            stream_id: None,
            quantity: 1,
            unit_price: usd,
            total: usd,
            failure: None,
            payment_id: Some("pay_1".into()),
            card_last4: "4242".into(),
            reserved_until: 1_764_650_000_000,
            created_at: 1_764_640_000_000,
            updated_at: 1_764_645_000_000,
            reserved_until_iso: Timestamp(1_764_650_000_000),
            created_at_iso: Timestamp(1_764_640_000_000),
            updated_at_iso: Timestamp(1_764_645_000_000),
            presentment: None,
        };
        let mut stored = serde_json::to_value(OrderResult::Created(order.clone())).unwrap();
        let fields = stored["created"].as_object_mut().unwrap();
        for old in ["reserved_until_iso", "created_at_iso", "updated_at_iso"] {
            assert!(fields.remove(old).is_some(), "{old}");
        }
        let read: OrderResult = serde_json::from_value(stored).unwrap();
        let OrderResult::Created(read) = read else {
            panic!("an order")
        };
        assert_ne!(read, order, "the twins are missing until filled");
        assert_eq!(read.with_iso_times(), order);
    }
}
