//! Pins: the product a stream shows to its room, optionally as a flash sale (sale price, quantity
//! cap, per-buyer limit, end time). At most one pin per stream is active (a unique partial index
//! enforces it); pinning another product ends the previous pin.

use crate::catalog::{Catalog, Product, product_at, product_columns_qualified};
use crate::db::sql;
use crate::error::{CheckoutError, corrupt};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use vitrine_core::{
    CommerceEvent, Money, PinId, PinnedProduct, ProductId, SellerId, StreamId, Timestamp,
};

/// Largest per-buyer limit or quantity cap.
pub const MAX_PIN_QUANTITY: u32 = 1_000_000;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPin {
    pub product_id: ProductId,
    #[serde(default)]
    pub sale_price: Option<Money>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub per_buyer_limit: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub quantity_cap: Option<u32>,
    /// Unix milliseconds when the sale ends.
    #[serde(default)]
    #[schema(maximum = 253_402_300_799_999_i64)]
    pub ends_at: Option<i64>,
    /// The same, in RFC 3339 (UTC); give either, or both naming the same instant.
    #[serde(default)]
    pub ends_at_iso: Option<Timestamp>,
}

impl NewPin {
    /// When the sale ends, from whichever form the request used.
    fn ends_at(&self) -> Result<Option<i64>, CheckoutError> {
        match (self.ends_at, self.ends_at_iso) {
            (Some(ms), Some(iso)) if ms != iso.millis() => Err(CheckoutError::Invalid(
                "ends_at and ends_at_iso name different instants".into(),
            )),
            (ms, iso) => Ok(ms.or(iso.map(Timestamp::millis))),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Pin {
    pub id: PinId,
    pub stream_id: StreamId,
    pub product_id: ProductId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_price: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_buyer_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity_cap: Option<u32>,
    /// What is left of the cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    /// Unix milliseconds when the sale ends (`ends_at_iso` is the same instant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<i64>,
    pub active: bool,
    /// Unix milliseconds (kept for existing clients; `created_at_iso` is the same instant).
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at_iso: Option<Timestamp>,
    pub created_at_iso: Timestamp,
}

/// How many columns [`PIN_COLUMNS`] names.
pub(crate) const PIN_COLUMN_COUNT: usize = 10;
pub(crate) const PIN_COLUMNS: &str = "pins.id, pins.stream_id, pins.product_id, pins.sale_amount, \
     pins.per_buyer_limit, pins.quantity_cap, pins.remaining, pins.ends_at, pins.active, \
     pins.created_at";

/// The RFC 3339 form of a sale's end; none for an end past the year 9999, which pins made
/// before that bound could carry and RFC 3339 cannot write.
fn iso_end(ends_at: Option<i64>) -> Option<Timestamp> {
    ends_at
        .filter(|t| *t <= Timestamp::MAX_MILLIS)
        .map(Timestamp)
}

/// Reads a pin from the first ten columns; the sale price takes the product's currency.
pub(crate) fn pin_from_row(r: &AnyRow, product: &Product) -> Result<Pin, CheckoutError> {
    let to_u32 = |v: Option<i64>| v.map(|x| u32::try_from(x).map_err(corrupt)).transpose();
    Ok(Pin {
        id: PinId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
        stream_id: StreamId::parse(&r.try_get::<String, _>(1)?).map_err(corrupt)?,
        product_id: ProductId::parse(&r.try_get::<String, _>(2)?).map_err(corrupt)?,
        sale_price: r.try_get::<Option<i64>, _>(3)?.map(|amount| Money {
            amount,
            currency: product.price.currency,
        }),
        per_buyer_limit: to_u32(r.try_get(4)?)?,
        quantity_cap: to_u32(r.try_get(5)?)?,
        remaining: r.try_get(6)?,
        ends_at: r.try_get(7)?,
        active: r.try_get::<i64, _>(8)? == 1,
        created_at: r.try_get(9)?,
        ends_at_iso: iso_end(r.try_get(7)?),
        created_at_iso: Timestamp(r.try_get(9)?),
    })
}

impl Pin {
    /// What the room sees.
    pub fn card(&self, product: &Product) -> PinnedProduct {
        PinnedProduct {
            pin_id: self.id.clone(),
            product_id: product.id.clone(),
            title: product.title.clone(),
            image_url: product.image_url.clone(),
            price: product.price,
            sale_price: self.sale_price,
            available: self.available(product),
            per_buyer_limit: self.per_buyer_limit,
            ends_at: self.ends_at,
            ends_at_iso: iso_end(self.ends_at),
        }
    }

    pub fn available(&self, product: &Product) -> i64 {
        self.remaining
            .map_or(product.stock, |r| r.min(product.stock))
            .max(0)
    }

    pub fn ended(&self, now: i64) -> bool {
        !self.active || self.ends_at.is_some_and(|t| t <= now)
    }
}

impl Catalog {
    /// Pins a product of `seller` to `stream` (whose ownership the caller has checked), ending
    /// the stream's previous pin.
    pub async fn pin(
        &self,
        seller: &SellerId,
        stream: &StreamId,
        new: NewPin,
    ) -> Result<Pin, CheckoutError> {
        let product = self.product(seller, &new.product_id).await?;
        if let Some(sale) = new.sale_price {
            sale.validated()
                .map_err(|e| CheckoutError::Invalid(e.to_string()))?;
            if sale.currency != product.price.currency {
                return Err(CheckoutError::Invalid(format!(
                    "sale_price must be in the product's currency, {}",
                    product.price.currency
                )));
            }
        }
        for (name, v) in [
            ("per_buyer_limit", new.per_buyer_limit),
            ("quantity_cap", new.quantity_cap),
        ] {
            if v.is_some_and(|v| v == 0 || v > MAX_PIN_QUANTITY) {
                return Err(CheckoutError::Invalid(format!(
                    "{name} must be 1 to {MAX_PIN_QUANTITY}"
                )));
            }
        }
        let now = self.now();
        let ends_at = new.ends_at()?;
        if ends_at.is_some_and(|t| t <= now) {
            return Err(CheckoutError::Invalid("ends_at is in the past".into()));
        }
        if ends_at.is_some_and(|t| t > Timestamp::MAX_MILLIS) {
            return Err(CheckoutError::Invalid(
                "ends_at must be before the year 10000".into(),
            ));
        }
        let pin = Pin {
            id: PinId::generate(),
            stream_id: stream.clone(),
            product_id: product.id.clone(),
            sale_price: new.sale_price,
            per_buyer_limit: new.per_buyer_limit,
            quantity_cap: new.quantity_cap,
            remaining: new.quantity_cap.map(i64::from),
            ends_at,
            active: true,
            created_at: now,
            ends_at_iso: ends_at.map(Timestamp),
            created_at_iso: Timestamp(now),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE pins SET active = 0, unpinned_at = $1 WHERE stream_id = $2 AND active = 1",
        )
        .bind(now)
        .bind(stream.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO pins (id, stream_id, seller_id, product_id, sale_amount, per_buyer_limit, \
             quantity_cap, remaining, ends_at, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)",
        )
        .bind(pin.id.as_str())
        .bind(stream.as_str())
        .bind(seller.as_str())
        .bind(product.id.as_str())
        .bind(pin.sale_price.map(|m| m.amount))
        .bind(pin.per_buyer_limit.map(i64::from))
        .bind(pin.quantity_cap.map(i64::from))
        .bind(pin.remaining)
        .bind(pin.ends_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let fact = CommerceEvent::Pin {
            stream: stream.clone(),
            pin: Some(pin.card(&product)),
        };
        self.facts.commit(tx, vec![fact], &[], now).await?;
        Ok(pin)
    }

    /// Ends the stream's active pin if it is `pin`.
    pub async fn unpin(&self, stream: &StreamId, pin: &PinId) -> Result<(), CheckoutError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE pins SET active = 0, unpinned_at = $1 \
             WHERE id = $2 AND stream_id = $3 AND active = 1",
        )
        .bind(now)
        .bind(pin.as_str())
        .bind(stream.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(CheckoutError::NotFound("no such active pin"));
        }
        let fact = CommerceEvent::Pin {
            stream: stream.clone(),
            pin: None,
        };
        self.facts.commit(tx, vec![fact], &[], now).await
    }

    /// Ends a deleted stream's sale: its active pin stops, so neither the stream nor the pin's
    /// id buys at the sale price any more. Called when the stream is deleted.
    pub async fn end_stream_sales(&self, stream: &StreamId) -> Result<(), CheckoutError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE pins SET active = 0, unpinned_at = $1 WHERE stream_id = $2 AND active = 1",
        )
        .bind(now)
        .bind(stream.as_str())
        .execute(&mut *tx)
        .await?;
        let mut facts = Vec::new();
        if done.rows_affected() > 0 {
            facts.push(CommerceEvent::Pin {
                stream: stream.clone(),
                pin: None,
            });
        }
        self.facts.commit(tx, facts, &[], now).await
    }

    /// Ends every active pin of a product (it was archived).
    pub(crate) async fn unpin_product(&self, product: &ProductId) -> Result<(), CheckoutError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let streams = sqlx::query(
            "UPDATE pins SET active = 0, unpinned_at = $1 WHERE product_id = $2 AND active = 1 \
             RETURNING stream_id",
        )
        .bind(now)
        .bind(product.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut facts = Vec::with_capacity(streams.len());
        for r in streams {
            let stream = StreamId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
            facts.push(CommerceEvent::Pin { stream, pin: None });
        }
        self.facts.commit(tx, facts, &[], now).await
    }

    /// The stream's active pin and its product.
    pub async fn active_pin(
        &self,
        stream: &StreamId,
    ) -> Result<Option<(Pin, Product)>, CheckoutError> {
        active_pin_on(&self.pool, stream).await
    }

    /// The stream's pins, newest first (history of a show).
    pub async fn pins_of(&self, stream: &StreamId) -> Result<Vec<Pin>, CheckoutError> {
        let product_cols = product_columns_qualified();
        let rows = sqlx::query(sql(format!(
            "SELECT {PIN_COLUMNS}, {product_cols} FROM pins \
             JOIN products ON products.id = pins.product_id \
             WHERE pins.stream_id = $1 ORDER BY pins.created_at DESC LIMIT 200"
        )))
        .bind(stream.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| pin_from_row(r, &product_at(r, PIN_COLUMN_COUNT)?))
            .collect()
    }
}

/// What every stream that pins `product` has left, read in the transaction that moved its stock
/// (after the move, with the rows still locked), as facts for the rooms.
pub(crate) async fn stock_facts(
    tx: &mut crate::ledger::Tx<'_>,
    product: &ProductId,
) -> Result<Vec<CommerceEvent>, CheckoutError> {
    let rows = sqlx::query(
        "SELECT pins.stream_id, products.stock, pins.remaining FROM pins \
         JOIN products ON products.id = pins.product_id \
         WHERE pins.product_id = $1 AND pins.active = 1",
    )
    .bind(product.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let mut facts = Vec::with_capacity(rows.len());
    for r in rows {
        let stream = StreamId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
        let stock: i64 = r.try_get(1)?;
        let remaining: Option<i64> = r.try_get(2)?;
        facts.push(CommerceEvent::Stock {
            stream,
            product: product.clone(),
            available: remaining.map_or(stock, |r| r.min(stock)).max(0),
        });
    }
    Ok(facts)
}

/// The stream's active pin and its product, read through `on` (the pool, or a transaction).
pub(crate) async fn active_pin_on<'e>(
    on: impl sqlx::Executor<'e, Database = sqlx::Any>,
    stream: &StreamId,
) -> Result<Option<(Pin, Product)>, CheckoutError> {
    let product_cols = product_columns_qualified();
    let row = sqlx::query(sql(format!(
        "SELECT {PIN_COLUMNS}, {product_cols} FROM pins \
         JOIN products ON products.id = pins.product_id \
         WHERE pins.stream_id = $1 AND pins.active = 1"
    )))
    .bind(stream.as_str())
    .fetch_optional(on)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let product = product_at(&row, PIN_COLUMN_COUNT)?;
    let pin = pin_from_row(&row, &product)?;
    Ok(Some((pin, product)))
}
