//! Placing an order: the idempotency key's first request reserves and charges; a repeat is
//! answered from what the key stored. Never touches stock itself (see `reserve`).

use super::Sale;
use super::reserve::{ReserveJob, Reserved};
use crate::card::CardNumber;
use crate::error::{CheckoutError, RejectKind, corrupt};
use crate::idempotency::{KeyRecord, request_hash, validate_key};
use crate::order_state::OrderStatus;
use crate::orders::{MAX_ORDER_QUANTITY, NewOrder, Order, OrderResult, Placed, reject};

use std::time::Duration;
use vitrine_core::{BuyerId, OrderId};

impl Sale {
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
        let card = CardNumber::parse(new.payment.card_number.expose())
            .map_err(|e| CheckoutError::Invalid(e.to_string()))?;
        let hash = request_hash(&new, &card, &self.card_key);
        let job = ReserveJob {
            buyer: buyer.clone(),
            key: key.to_owned(),
            hash: hash.clone(),
            card_last4: card.last4().to_owned(),
            new,
        };
        // The key is claimed in the reservation's transaction; a repeat learns there that an
        // earlier request holds it and is answered from what that one stored.
        let order = match self.reserve(job).await? {
            Reserved::Order(order) => order,
            Reserved::Rejected(rejection) => {
                return Ok(Placed {
                    result: OrderResult::Rejected(rejection),
                    replayed: false,
                });
            }
            Reserved::KeyTaken => {
                let existing = self
                    .orders()
                    .load_key(buyer, key)
                    .await?
                    .ok_or(CheckoutError::NotFound("idempotency key vanished"))?;
                return self.replay(buyer, key, &hash, &card, existing).await;
            }
        };
        let result = self.charge_for_key(buyer, key, order, &card).await?;
        Ok(Placed {
            result,
            replayed: false,
        })
    }

    /// Pays an order made for `buyer` without a card (an auction's: the hammer created it),
    /// idempotent per order: the first request charges, a repeat is answered from what the
    /// order's key stored, one racing a charge under way is told to retry, and one that follows
    /// a failed attempt (the processor unreachable) charges again under the same reference.
    #[tracing::instrument(skip_all, fields(buyer = %buyer, order = %id))]
    pub async fn pay_order(
        &self,
        buyer: &BuyerId,
        id: &OrderId,
        card_number: &str,
    ) -> Result<Placed, CheckoutError> {
        let card =
            CardNumber::parse(card_number).map_err(|e| CheckoutError::Invalid(e.to_string()))?;
        let order = self.orders().order_by_id(id).await?;
        if order.buyer_id != *buyer {
            return Err(CheckoutError::NotFound("no such order"));
        }
        let key = crate::auctions::winner_key(id);
        let Some(record) = self.orders().load_key(buyer, &key).await? else {
            return Err(CheckoutError::Conflict(
                "this order was paid when it was placed".into(),
            ));
        };
        if let Some(result) = record.response {
            return Ok(Placed {
                result,
                replayed: true,
            });
        }
        if !self.orders().resume_failed(buyer, &key).await? {
            return Ok(Placed {
                result: OrderResult::Rejected(reject(
                    RejectKind::RequestInProgress,
                    "a payment of this order is under way; retry later",
                )),
                replayed: true,
            });
        }
        // This request holds the key now. The payment runs in a task of its own, so a client
        // that hangs up mid-payment does not leave the key held with no answer.
        let (this, buyer, card) = (self.clone(), buyer.clone(), card.clone());
        tokio::spawn(async move { this.pay_with_key(&buyer, &key, record, &card).await })
            .await
            .map_err(|_| CheckoutError::Unavailable("the payment was lost; retry".into()))?
    }

    /// The card a won order is paid with becomes the order's, then the order path's resume
    /// charges it (or answers what settled it meanwhile). Should the card's write fail, the
    /// key is freed again for a retry.
    async fn pay_with_key(
        &self,
        buyer: &BuyerId,
        key: &str,
        record: KeyRecord,
        card: &CardNumber,
    ) -> Result<Placed, CheckoutError> {
        let order = record
            .order_id
            .as_deref()
            .ok_or(CheckoutError::NotFound("idempotency key has no order"))?;
        let written =
            sqlx::query("UPDATE orders SET card_last4 = $1 WHERE id = $2 AND status = 'pending'")
                .bind(card.last4())
                .bind(order)
                .execute(&self.orders().pool)
                .await;
        if let Err(e) = written {
            if let Err(mark) = self.orders().mark_attempt_failed(buyer, key).await {
                tracing::warn!(error = %mark, "a failed attempt could not free its key");
            }
            return Err(e.into());
        }
        self.resume(buyer, key, &record, card).await
    }

    /// Charges the key's order; should that fail (the processor unreachable), marks the key so
    /// that the next request with it resumes this order instead of being told to wait. The
    /// order stays pending meanwhile, its charge keyed by the order id: resuming never charges
    /// twice, and the reaper still settles it should nobody retry.
    async fn charge_for_key(
        &self,
        buyer: &BuyerId,
        key: &str,
        order: Order,
        card: &CardNumber,
    ) -> Result<OrderResult, CheckoutError> {
        match self.payments.charge(key, order, card).await {
            Ok(result) => Ok(result),
            Err(e) => {
                if let Err(mark) = self.orders().mark_attempt_failed(buyer, key).await {
                    tracing::warn!(error = %mark, "a failed attempt could not free its key");
                }
                Err(e)
            }
        }
    }

    /// Resumes the order of a key whose last attempt failed (this request took it over).
    async fn resume(
        &self,
        buyer: &BuyerId,
        key: &str,
        record: &KeyRecord,
        card: &CardNumber,
    ) -> Result<Placed, CheckoutError> {
        let id = record
            .order_id
            .as_deref()
            .map(OrderId::parse)
            .transpose()
            .map_err(corrupt)?
            .ok_or(CheckoutError::NotFound("idempotency key has no order"))?;
        let order = self.orders().order_by_id(&id).await?;
        if order.status != OrderStatus::Pending {
            // Settled meanwhile (by the reaper): its result was stored with the key.
            let stored = self
                .orders()
                .load_key(buyer, key)
                .await?
                .and_then(|r| r.response);
            return stored
                .map(|result| Placed {
                    result,
                    replayed: true,
                })
                .ok_or(CheckoutError::NotFound("idempotency key has no result"));
        }
        tracing::info!(order = %order.id, "resuming an order whose last attempt failed");
        let result = self.charge_for_key(buyer, key, order, card).await?;
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
        card: &CardNumber,
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
        let deadline = tokio::time::Instant::now()
            + self.orders().config.payment_timeout
            + Duration::from_secs(2);
        loop {
            if let Some(result) = record.response {
                return Ok(Placed {
                    result,
                    replayed: true,
                });
            }
            // Only completed results are replayed: a failed attempt is resumed.
            if record.failed && self.orders().resume_failed(buyer, key).await? {
                return self.resume(buyer, key, &record, card).await;
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
                .orders()
                .load_key(buyer, key)
                .await?
                .ok_or(CheckoutError::NotFound("idempotency key vanished"))?;
        }
    }
}
