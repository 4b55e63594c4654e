//! Checkout: the catalog, guest buyers, pins and flash sales, inventory reservations, idempotent
//! orders and payments. Everything is SQL through one sqlx Any pool, so the same code runs on
//! SQLite and PostgreSQL; stock only ever moves through conditional UPDATEs, never
//! read-then-write.
//!
//! Services, layered one way: [`catalog::Catalog`] (products, guest buyers, pins),
//! [`webhooks::Webhooks`] (endpoints, the expansion of the fact stream's messages, the
//! dispatcher) and [`payouts::Payouts`] (requests, the scheduled run, reconciliation) know
//! nothing of [`Checkout`], which is the order path (reserve, charge, settle, manage, refunds,
//! auctions, the reaper) and holds the others (`catalog()`, `webhooks()`, `payouts()`).

pub mod auctions;
pub mod buyers;
pub mod card;
pub mod catalog;
pub mod confirmations;
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
pub mod payouts;
pub mod pins;
pub mod purchases;
pub mod rates;
pub mod reaper;
pub mod refunds;
pub mod sandbox;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use auctions::NewAuction;
pub use buyers::Buyer;
pub use catalog::{NewProduct, Product, ProductPatch};
pub use db::{Backend, DbError};
pub use error::{CheckoutError, RejectKind, Rejection};
pub use order_state::OrderStatus;
pub use orders::{
    NewOrder, NextAction, Order, OrderBody, OrderMessage, OrderOwner, OrderPage, OrderQuery,
    OrderResult, OrderSource, Placed, Presentment, Shipment, StreamSale,
};
pub use payment::{PaymentProvider, PaymentStatus};
pub use pins::{NewPin, Pin};
pub use sandbox::SandboxProvider;

use fees::FeePolicy;
use payouts::PayoutProvider;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use vitrine_core::CommerceEvents;
use webhooks::TargetPolicy;
use webhooks::sealing::SecretBox;

/// Tunables of the order path.
#[derive(Debug, Clone)]
pub struct CheckoutConfig {
    /// How long a reservation waits for its payment before the reaper releases it.
    pub reservation_window: Duration,
    /// How long an order waits for the processor's confirmation before cancelling the payment.
    pub payment_timeout: Duration,
    /// How long the units stay reserved for a payment the processor confirms later (the
    /// buyer's 3-D Secure step, a bank debit): the order waits in `payment_pending` meanwhile,
    /// and its payment is cancelled when this has passed.
    pub payment_pending_window: Duration,
    /// How long idempotency keys are kept.
    pub idempotency_ttl: Duration,
    /// How long delivered webhook messages (and their attempt logs) are kept before pruning.
    pub webhook_retention: Duration,
    /// Oldest exchange-rate table used: past this age since it was loaded (its source stopped
    /// answering), conversions are refused rather than made at rates nobody checked.
    pub rates_max_age: Duration,
    /// The platform's fees on sales and instant payouts.
    pub fees: FeePolicy,
    /// The key file of card fingerprints (see [`card::CardKey`]); the binary's default is
    /// `<data dir>/card-fingerprint.key`. Every node of a deployment needs the same file.
    pub card_key_file: Option<std::path::PathBuf>,
    /// This node's region in a deployment of several: buyers, products and orders made here
    /// carry it in their ids (and buyers' tokens), so other regions route their requests here.
    pub home: Option<vitrine_core::Region>,
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self {
            reservation_window: Duration::from_secs(15 * 60),
            payment_timeout: Duration::from_secs(10),
            payment_pending_window: Duration::from_secs(30 * 60),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            webhook_retention: Duration::from_secs(30 * 86_400),
            rates_max_age: Duration::from_secs(24 * 3600),
            fees: FeePolicy::default(),
            card_key_file: None,
            home: None,
        }
    }
}

/// The checkout service; cheap to clone.
#[derive(Clone)]
pub struct Checkout {
    pub(crate) pool: AnyPool,
    pub(crate) payments: Arc<dyn PaymentProvider>,
    /// What committed transactions tell the rooms (see [`facts`]).
    pub(crate) facts: facts::Facts,
    pub(crate) config: CheckoutConfig,
    /// Products, guest buyers and pins (see [`catalog::Catalog`]).
    pub(crate) catalog: catalog::Catalog,
    /// Sellers' webhook endpoints and the dispatcher (see [`webhooks::Webhooks`]).
    pub(crate) webhooks: webhooks::Webhooks,
    /// Sellers' payouts (see [`payouts::Payouts`]).
    pub(crate) payouts: payouts::Payouts,
    /// The exchange rates in force.
    pub(crate) rates: rates::Rates,
    /// Keys card fingerprints (idempotency request hashes).
    pub(crate) card_key: card::CardKey,
    /// Counters of the background jobs (rows that failed, rows pruned).
    pub(crate) jobs: jobs::JobMetrics,
    /// The reserve step's group commit, per product.
    pub(crate) reservations: group::Batcher<
        vitrine_core::ProductId,
        orders::ReserveJob,
        Result<orders::Reserved, CheckoutError>,
    >,
    /// The settle step's group commit, per seller (whose balance row every sale moves).
    pub(crate) settlements: group::Batcher<
        vitrine_core::SellerId,
        orders::SettleJob,
        Result<orders::OrderResult, CheckoutError>,
    >,
    /// Bids' group commit, per auction (whose row every bid moves).
    pub(crate) bids:
        group::Batcher<vitrine_core::AuctionId, vitrine_core::BidRequest, auctions::BidAnswer>,
    /// The order path's writers queue here on SQLite (see [`db::WriteGate`]).
    pub(crate) write_gate: db::WriteGate,
    /// Where the order path's time comes from (reservations, their expiry, keys' age, the
    /// webhooks' retry schedule).
    pub(crate) clock: Arc<dyn vitrine_core::time::Clock>,
    /// Where the reaper's poll of deferred payments goes on (see [`confirmations`]).
    pub(crate) deferred_cursor: Arc<std::sync::Mutex<String>>,
}

/// Most requests written in one transaction of the order path.
pub const MAX_BATCH: usize = 64;

impl Checkout {
    pub fn new(pool: AnyPool, payments: Arc<dyn PaymentProvider>, config: CheckoutConfig) -> Self {
        let write_gate = db::WriteGate::of(&pool);
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
        Self {
            pool,
            payments,
            facts,
            catalog,
            webhooks,
            payouts,
            rates: rates::Rates::new(config.rates_max_age),
            card_key: card::CardKey::ephemeral(),
            jobs,
            reservations: group::Batcher::new(MAX_BATCH),
            settlements: group::Batcher::new(MAX_BATCH),
            bids: group::Batcher::new(MAX_BATCH),
            write_gate,
            clock,
            deferred_cursor: Arc::default(),
            config,
        }
    }

    /// Takes every service's time from `clock` (tests move one by hand).
    pub fn with_clock(mut self, clock: Arc<dyn vitrine_core::time::Clock>) -> Self {
        self.webhooks.clock = Arc::clone(&clock);
        self.catalog.clock = Arc::clone(&clock);
        self.payouts.clock = Arc::clone(&clock);
        self.clock = clock;
        self
    }

    /// Unix milliseconds by the checkout's clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Keys card fingerprints with the deployment's secret (every node needs the same one).
    pub fn with_card_key(mut self, key: card::CardKey) -> Self {
        self.card_key = key;
        self
    }

    /// The background jobs' counters, for `/metrics`.
    pub fn job_metrics(&self) -> &jobs::JobMetrics {
        &self.jobs
    }

    /// The stream of commerce facts (its pump's counters, and [`facts::Facts::flush`]).
    pub fn facts(&self) -> &facts::Facts {
        &self.facts
    }

    /// Hands what this node's transactions commit to `rooms`, in commit order, until
    /// `shutdown` (see [`facts`]).
    pub fn spawn_fact_pump(
        &self,
        rooms: Arc<dyn CommerceEvents>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        self.facts.spawn_pump(self.pool.clone(), rooms, shutdown)
    }

    /// The exchange rates in force (empty until a source loads them).
    pub fn rates(&self) -> &rates::Rates {
        &self.rates
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
        &self.catalog
    }

    /// Sellers' webhook endpoints, their delivery logs and the dispatcher.
    pub fn webhooks(&self) -> &webhooks::Webhooks {
        &self.webhooks
    }
}
