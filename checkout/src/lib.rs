//! Checkout: the catalog, guest buyers, pins and flash sales, inventory reservations, idempotent
//! orders and payments. Everything is SQL through one sqlx Any pool, so the same code runs on
//! SQLite and PostgreSQL; stock only ever moves through conditional UPDATEs, never
//! read-then-write.
//!
//! Services, layered one way (each imports only what is below it):
//!
//! - [`catalog::Catalog`]: products, guest buyers, pins;
//! - [`orders::Orders`]: the order records and every move of one, the keys' stored answers,
//!   the ledger's reads, pruning;
//! - [`payments::Payments`] over `Orders`: charges, settlements, payments confirmed later,
//!   refunds and cancellations, expired reservations;
//! - [`sale::Sale`] over `Payments` and `Catalog`: reservations, placing and paying orders, the
//!   chat's purchases and bids, live auctions;
//! - [`webhooks::Webhooks`] and [`payouts::Payouts`] beside them.
//!
//! [`Checkout`] composes them and hands them out; it holds no state of its own.

pub mod buyers;
pub mod card;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod facts;
pub mod fees;
pub mod fx;
pub(crate) mod group;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
pub mod order_state;
pub mod orders;
pub mod payment;
pub mod payments;
pub mod payouts;
pub mod pins;
pub mod rates;
pub mod reaper;
pub mod sale;
pub mod sandbox;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use buyers::Buyer;
pub use catalog::{NewProduct, Product, ProductPatch};
pub use config::CheckoutConfig;
pub use db::{Backend, DbError};
pub use error::{CheckoutError, RejectKind, Rejection};
pub use order_state::OrderStatus;
pub use orders::{
    NewOrder, NextAction, Order, OrderBody, OrderMessage, OrderOwner, OrderPage, OrderQuery,
    OrderResult, OrderSource, Placed, Presentment, Shipment, StreamSale,
};
pub use payment::{PaymentProvider, PaymentStatus};
pub use pins::{NewPin, Pin};
pub use sale::auctions;
pub use sale::auctions::NewAuction;
pub use sandbox::SandboxProvider;

use payouts::PayoutProvider;
use sqlx::AnyPool;
use std::sync::Arc;
use vitrine_core::CommerceEvents;
use webhooks::TargetPolicy;
use webhooks::sealing::SecretBox;

/// The checkout: the composition of its services, cheap to clone. It holds no state of its own
/// and knows nothing the services do not: it builds them, configures them, and hands them out.
#[derive(Clone)]
pub struct Checkout {
    /// The order path (which holds the payments, the orders and the catalog it sells from).
    pub(crate) sale: sale::Sale,
    /// Sellers' webhook endpoints and the dispatcher (see [`webhooks::Webhooks`]).
    pub(crate) webhooks: webhooks::Webhooks,
    /// Sellers' payouts (see [`payouts::Payouts`]).
    pub(crate) payouts: payouts::Payouts,
}

/// Most requests written in one transaction of the order path.
pub const MAX_BATCH: usize = 64;

impl Checkout {
    pub fn new(pool: AnyPool, payments: Arc<dyn PaymentProvider>, config: CheckoutConfig) -> Self {
        let jobs = jobs::JobMetrics::default();
        let clock: Arc<dyn vitrine_core::time::Clock> = Arc::new(vitrine_core::time::SystemClock);
        let webhooks = webhooks::Webhooks::new(pool.clone(), jobs.clone(), Arc::clone(&clock));
        let payouts =
            payouts::Payouts::new(pool.clone(), config.fees, jobs.clone(), Arc::clone(&clock));
        let facts = facts::Facts::new(Arc::clone(&webhooks.wake));
        let catalog = catalog::Catalog::new(
            pool.clone(),
            facts.clone(),
            config.home.clone(),
            Arc::clone(&clock),
        );
        let rates = rates::Rates::new(config.rates_max_age);
        let orders = orders::Orders::new(pool, facts, config, jobs, clock);
        let payments = payments::Payments::new(orders, payments);
        Self {
            sale: sale::Sale::new(payments, catalog, rates),
            webhooks,
            payouts,
        }
    }

    /// Takes every service's time from `clock` (tests move one by hand).
    pub fn with_clock(mut self, clock: Arc<dyn vitrine_core::time::Clock>) -> Self {
        self.webhooks.clock = Arc::clone(&clock);
        self.sale.catalog.clock = Arc::clone(&clock);
        self.payouts.clock = Arc::clone(&clock);
        self.sale.payments.orders.clock = clock;
        self
    }

    /// Keys card fingerprints with the deployment's secret (every node needs the same one).
    pub fn with_card_key(mut self, key: card::CardKey) -> Self {
        self.sale.card_key = key;
        self
    }

    /// How orders are placed: reservations, the chat's purchases and bids, auctions.
    pub fn sale(&self) -> &sale::Sale {
        &self.sale
    }

    /// Charges, settlements, payments confirmed later, refunds and cancellations.
    pub fn payments(&self) -> &payments::Payments {
        &self.sale.payments
    }

    /// The order records: reading orders, the seller's moves, the ledger's reads.
    pub fn orders(&self) -> &orders::Orders {
        &self.sale.payments.orders
    }

    /// The background jobs' counters, for `/metrics`.
    pub fn job_metrics(&self) -> &jobs::JobMetrics {
        &self.orders().jobs
    }

    /// The stream of commerce facts (its pump's counters, and [`facts::Facts::flush`]).
    pub fn facts(&self) -> &facts::Facts {
        &self.orders().facts
    }

    /// Hands what this node's transactions commit to `rooms`, in commit order, until
    /// `shutdown` (see [`facts`]).
    pub fn spawn_fact_pump(
        &self,
        rooms: Arc<dyn CommerceEvents>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let orders = self.orders();
        orders
            .facts
            .spawn_pump(orders.pool.clone(), rooms, shutdown)
    }

    /// The exchange rates in force (empty until a source loads them).
    pub fn rates(&self) -> &rates::Rates {
        &self.sale.rates
    }

    /// Sends payouts through `rail` instead of the built-in sandbox.
    pub fn with_payouts(mut self, rail: Arc<dyn PayoutProvider>) -> Self {
        self.payouts.rail = rail;
        self
    }

    /// Sellers' payouts: requests, the scheduled run, the reconciliation with the rail.
    pub fn payouts(&self) -> &payouts::Payouts {
        &self.payouts
    }

    /// Webhook settings: the key that seals signing secrets (shared by every node of a
    /// deployment) and which endpoint URLs are allowed.
    pub fn with_webhooks(mut self, secrets: SecretBox, targets: TargetPolicy) -> Self {
        self.webhooks = self.webhooks.configured(secrets, targets);
        self
    }

    /// Products, guest buyers and pins.
    pub fn catalog(&self) -> &catalog::Catalog {
        &self.sale.catalog
    }

    /// Sellers' webhook endpoints, their delivery logs and the dispatcher.
    pub fn webhooks(&self) -> &webhooks::Webhooks {
        &self.webhooks
    }
}
