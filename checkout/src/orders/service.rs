//! The orders service: the order records and every move of one (a conditional transition with
//! its stock, ledger, facts and webhook messages in one transaction), the idempotency keys'
//! stored answers, the ledger's reads and the housekeeping of what has served its purpose. It
//! knows nothing of the card processor ([`crate::payments`]) nor of how orders are placed
//! ([`crate::sale`]): those are layered on top of it.

use super::{Order, OrderSource};
use crate::config::CheckoutConfig;
use crate::db::WriteGate;
use crate::facts::Facts;
use crate::jobs::JobMetrics;
use crate::order_state::OrderStatus;
use sqlx::AnyPool;
use std::sync::Arc;
use vitrine_core::time::Clock;
use vitrine_core::{BuyerId, Money, OrderId, ProductId, SellerId};

/// Order records and their moves; cheap to clone.
#[derive(Clone)]
pub struct Orders {
    pub(crate) pool: AnyPool,
    /// What committed transactions tell the rooms (see [`crate::facts`]).
    pub(crate) facts: Facts,
    pub(crate) config: CheckoutConfig,
    /// Counters of the background jobs (rows that failed, rows pruned).
    pub(crate) jobs: JobMetrics,
    /// The order path's writers queue here on SQLite (see [`WriteGate`]).
    pub(crate) write_gate: WriteGate,
    /// Where the order path's time comes from (reservations, their expiry, keys' age).
    pub(crate) clock: Arc<dyn Clock>,
}

impl Orders {
    pub(crate) fn new(
        pool: AnyPool,
        facts: Facts,
        config: CheckoutConfig,
        jobs: JobMetrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            write_gate: WriteGate::of(&pool),
            pool,
            facts,
            config,
            jobs,
            clock,
        }
    }

    /// Unix milliseconds by the order path's clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A pending order of one unit at `price`, placed through the API, reserved for the
    /// reservation window from `now`: what every new order starts from (reservations and an
    /// auction's hammer set what differs).
    pub(crate) fn pending_order(
        &self,
        buyer: &BuyerId,
        seller: &SellerId,
        product: &ProductId,
        price: Money,
        now: i64,
    ) -> Order {
        Order {
            id: OrderId::generate_ordered_in(self.config.home.as_ref()),
            status: OrderStatus::Pending,
            buyer_id: buyer.clone(),
            seller_id: seller.clone(),
            product_id: product.clone(),
            pin_id: None,
            stream_id: None,
            quantity: 1,
            unit_price: price,
            total: price,
            failure: None,
            payment_id: None,
            card_last4: String::new(),
            reserved_until: now + self.config.reservation_window.as_millis() as i64,
            created_at: now,
            updated_at: now,
            presentment: None,
            source: OrderSource::Api,
            media_ms: None,
            shipment: None,
            shipped_at: None,
            delivered_at: None,
            payment_action: None,
        }
    }
}
