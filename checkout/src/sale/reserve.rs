//! Step 1 of the order path: claim the idempotency key and take the units in one transaction,
//! or store why not. This module prices a request and hands it to the product's batch writer
//! ([`super::reserve_batch`]); only conditional UPDATEs move stock.

use super::Sale;
use super::reserve_batch::ReserveWriter;
use crate::catalog::Product;
use crate::db::sql;
use crate::error::{CheckoutError, RejectKind, Rejection};
use crate::orders::{NewOrder, Order, OrderSource, Presentment, reject};
use crate::pins::{PIN_COLUMNS, Pin, pin_from_row};
use crate::rates::RatesUnavailable;
use std::collections::HashMap;
use vitrine_core::{BuyerId, Currency, Money, PinId, StreamId};

/// One request to reserve: the key it claims and what it buys.
#[derive(Clone)]
pub(crate) struct ReserveJob {
    pub buyer: BuyerId,
    pub key: String,
    /// The request's fingerprint ([`crate::idempotency::request_hash`]).
    pub hash: String,
    pub new: NewOrder,
    pub card_last4: String,
}

/// Outcome of the reserve step.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Reserved {
    /// The pending order.
    Order(Order),
    Rejected(Rejection),
    /// The key was claimed by an earlier request.
    KeyTaken,
}

/// A batch's pins, looked up once per (pin, stream, from a replay).
pub(crate) type PinCache =
    HashMap<(Option<PinId>, Option<StreamId>, bool), Result<Option<Pin>, Rejection>>;

/// What a request buys, priced.
pub(crate) struct Priced {
    pub product: Product,
    pub pin: Option<Pin>,
    pub unit: Money,
    pub total: Money,
    pub presentment: Option<Presentment>,
}

impl Sale {
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
            .fetch_optional(&self.orders().pool)
            .await?
        } else if let Some(stream) = &new.stream_id {
            sqlx::query(sql(format!(
                "SELECT {PIN_COLUMNS} FROM pins WHERE pins.stream_id = $1 AND pins.active = 1"
            )))
            .bind(stream.as_str())
            .fetch_optional(&self.orders().pool)
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

    /// Step 1: claim the key and take the units, or store why not. Requests for one product
    /// are written together (see [`crate::group`]): the first alone, the ones that arrive
    /// meanwhile as the next batch, in one transaction.
    pub(super) async fn reserve(&self, job: ReserveJob) -> Result<Reserved, CheckoutError> {
        let key = job.new.product_id.clone();
        self.reservations
            .submit(key, job, ReserveWriter(self.clone()))
            .await
            .map_err(|_| CheckoutError::Unavailable("the reservation was lost; retry".into()))?
    }

    /// Prices one request of a batch whose product is `product` (`None`: no such product on
    /// sale), its pin looked up once per batch in `pins`.
    pub(super) async fn price_in_batch(
        &self,
        new: &NewOrder,
        product: Option<&Product>,
        pins: &mut PinCache,
        now: i64,
    ) -> Result<Result<Priced, Rejection>, CheckoutError> {
        let Some(product) = product else {
            return Ok(Err(reject(RejectKind::ProductNotFound, "no such product")));
        };
        let slot = (
            new.pin_id.clone(),
            new.stream_id.clone(),
            new.source == OrderSource::Replay,
        );
        let pin = match pins.get(&slot) {
            Some(found) => found.clone(),
            None => {
                let found = self.pin_for(new, product).await?;
                pins.insert(slot, found.clone());
                found
            }
        };
        let pin = match pin {
            Ok(pin) => pin,
            Err(rejection) => return Ok(Err(rejection)),
        };
        self.price(new, product, pin, now)
    }

    /// What the request buys and at what price, or why it cannot be bought (no IO).
    fn price(
        &self,
        new: &NewOrder,
        product: &Product,
        pin: Option<Pin>,
        now: i64,
    ) -> Result<Result<Priced, Rejection>, CheckoutError> {
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
        // Stock only goes down between restocks: a product seen sold out is refused before
        // its row is locked, which is what most requests are once a flash sale is over.
        if product.stock < i64::from(new.quantity) {
            return Ok(Err(reject(RejectKind::SoldOut, "sold out")));
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
            product: product.clone(),
            pin,
            unit,
            total,
            presentment,
        }))
    }

    /// The pending order a reservation makes.
    pub(super) fn new_order(&self, job: &ReserveJob, priced: &Priced, now: i64) -> Order {
        let new = &job.new;
        let product = &priced.product;
        Order {
            pin_id: priced.pin.as_ref().map(|p| p.id.clone()),
            stream_id: match new.source {
                OrderSource::Replay => new.stream_id.clone(),
                _ => priced.pin.as_ref().map(|p| p.stream_id.clone()),
            },
            quantity: new.quantity,
            total: priced.total,
            card_last4: job.card_last4.clone(),
            presentment: priced.presentment.clone(),
            source: new.source,
            media_ms: new.media_ms.filter(|_| new.source == OrderSource::Replay),
            ..self.orders().pending_order(
                &job.buyer,
                &product.seller_id,
                &product.id,
                priced.unit,
                now,
            )
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
