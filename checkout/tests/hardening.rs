//! Security hardening of checkout, on SQLite and PostgreSQL: card data only in masked or keyed
//! form, refunds recorded before the processor is asked and finished exactly once, a refund
//! after a payout booked as explicit debt, a provider outage that does not hold an idempotency
//! key, background passes that survive one bad row, and pruning on an explicit clock.

use axum::http::HeaderMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vitrine_checkout::db::{Backend, connect, migrate};
use vitrine_checkout::orders::PaymentDetails;
use vitrine_checkout::payment::{ChargeRequest, Payment, PaymentError, PaymentProvider};
use vitrine_checkout::payouts::{NewPayout, PayoutMethod, PayoutStatus};
use vitrine_checkout::testing::TestDatabase;
use vitrine_checkout::webhooks::dispatcher::{DispatchConfig, DispatchMetrics, Dispatcher};
use vitrine_checkout::webhooks::sealing::SecretBox;
use vitrine_checkout::webhooks::{NewEndpoint, TargetPolicy};
use vitrine_checkout::{
    Checkout, CheckoutConfig, CheckoutError, NewOrder, NewProduct, OrderResult, OrderStatus,
    SandboxProvider,
};
use vitrine_core::{BuyerId, Currency, Money, OrderId, ProductId, SellerId};

const APPROVE: &str = "4242424242424242";

/// How a test's provider misbehaves.
#[derive(Default)]
struct Faults {
    /// The next `create` fails before reaching the processor.
    create_down_once: AtomicBool,
    /// The next `refund` is carried out, then its answer is lost.
    refund_lost_once: AtomicBool,
    /// Every refund idempotency key the processor was sent.
    refund_keys: Mutex<Vec<String>>,
}

struct Flaky(Arc<SandboxProvider>, Arc<Faults>);

#[async_trait::async_trait]
impl PaymentProvider for Flaky {
    async fn create(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        if self.1.create_down_once.swap(false, Ordering::SeqCst) {
            return Err(PaymentError::Unavailable("connection refused".into()));
        }
        self.0.create(request).await
    }
    async fn retrieve(&self, reference: &str) -> Result<Option<Payment>, PaymentError> {
        self.0.retrieve(reference).await
    }
    async fn wait(&self, reference: &str, timeout: Duration) -> Result<Payment, PaymentError> {
        self.0.wait(reference, timeout).await
    }
    async fn cancel(&self, reference: &str) -> Result<Payment, PaymentError> {
        self.0.cancel(reference).await
    }
    async fn refund(&self, reference: &str, key: &str) -> Result<Payment, PaymentError> {
        self.1.refund_keys.lock().unwrap().push(key.to_owned());
        let done = self.0.refund(reference, key).await?;
        if self.1.refund_lost_once.swap(false, Ordering::SeqCst) {
            return Err(PaymentError::Unavailable(
                "connection reset after refunding".into(),
            ));
        }
        Ok(done)
    }
}

struct Shop {
    checkout: Checkout,
    /// A second pool on the same database, for planting rows.
    pool: sqlx::AnyPool,
    faults: Arc<Faults>,
    seller: SellerId,
    _db: TestDatabase,
}

async fn shop_with(backend: Backend, config: CheckoutConfig) -> Shop {
    let db = TestDatabase::create(backend).await.unwrap();
    let (pool, backend) = connect(&db.url).await.unwrap();
    migrate(&pool, backend).await.unwrap();
    let sandbox = Arc::new(SandboxProvider::new(pool.clone(), Duration::from_millis(5)));
    let faults = Arc::new(Faults::default());
    let provider = Arc::new(Flaky(sandbox, Arc::clone(&faults)));
    let checkout = Checkout::new(pool.clone(), provider, config).with_webhooks(
        SecretBox::ephemeral(),
        TargetPolicy {
            allow_private: true,
        },
    );
    Shop {
        checkout,
        pool,
        faults,
        seller: SellerId::generate(),
        _db: db,
    }
}

async fn shop(backend: Backend) -> Shop {
    shop_with(backend, CheckoutConfig::default()).await
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
}

fn order(product: &ProductId) -> NewOrder {
    NewOrder {
        product_id: product.clone(),
        quantity: 1,
        pin_id: None,
        stream_id: None,
        currency: None,
        payment: PaymentDetails {
            card_number: APPROVE.into(),
        },
        source: Default::default(),
        media_ms: None,
    }
}

impl Shop {
    async fn product(&self, cents: i64) -> ProductId {
        let new = NewProduct {
            sku: "JKT".into(),
            title: "Jacket".into(),
            description: String::new(),
            image_url: None,
            price: eur(cents),
            stock: 100,
        };
        self.checkout
            .catalog()
            .create_product(&self.seller, new)
            .await
            .unwrap()
            .id
    }

    async fn sell(&self, product: &ProductId, key: &str) -> OrderId {
        let buyer = BuyerId::generate();
        match self
            .checkout
            .sale()
            .place_order(&buyer, key, order(product))
            .await
            .unwrap()
            .result
        {
            OrderResult::Created(o) => o.id,
            OrderResult::Rejected(r) => panic!("refused: {r:?}"),
        }
    }

    async fn status(&self, id: &OrderId) -> OrderStatus {
        self.checkout
            .orders()
            .order_for_seller(&self.seller, id)
            .await
            .unwrap()
            .status
    }

    /// (available, debt) in EUR.
    async fn balance(&self) -> (i64, i64) {
        let b = self.checkout.orders().balances(&self.seller).await.unwrap();
        let eur = b.iter().find(|b| b.currency.as_str() == "EUR").unwrap();
        (eur.available, eur.debt)
    }

    async fn balanced(&self) {
        let problems = self.checkout.orders().ledger_check().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// One sale (its webhooks queued) and a dispatcher to send them.
    async fn sale_to_dispatch(&self) -> Dispatcher {
        let product = self.product(1000).await;
        self.sell(&product, "k").await;
        self.checkout
            .webhooks()
            .dispatcher(DispatchConfig::default(), DispatchMetrics::default())
            .unwrap()
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

vitrine_checkout::on_both_backends!(
    card_numbers_are_masked_and_fingerprints_keyed,
    a_refund_whose_answer_was_lost_is_finished_once,
    a_refund_after_a_payout_is_booked_as_debt,
    a_provider_outage_frees_the_key_for_a_retry,
    one_bad_row_does_not_stop_the_reaper,
    one_bad_row_does_not_stop_the_payout_reconciler,
    one_bad_row_does_not_stop_the_webhook_dispatcher,
    pruning_keeps_what_is_young_or_undelivered,
);

/// Item 6: `Debug` of an order request shows only the last four digits, and the stored
/// request hash is neither the unkeyed hash nor the same under another server's key.
async fn card_numbers_are_masked_and_fingerprints_keyed(backend: Backend) {
    let s = shop(backend).await;
    let product = s.product(1000).await;
    let printed = format!("{:?}", order(&product));
    assert!(!printed.contains(APPROVE), "{printed}");
    assert!(printed.contains("****4242"), "{printed}");
    let other = s
        .checkout
        .clone()
        .with_card_key(vitrine_checkout::card::CardKey::ephemeral());
    s.sell(&product, "a").await;
    let buyer = BuyerId::generate();
    other
        .sale()
        .place_order(&buyer, "b", order(&product))
        .await
        .unwrap();
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT request_hash FROM idempotency_keys ORDER BY idem_key")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert_eq!(hashes.len(), 2);
    assert_ne!(hashes[0], hashes[1], "two keys, one fingerprint");
    let stored: i64 = s
        .count("SELECT COUNT(*) FROM sandbox_payments WHERE card_last4 = '4242'")
        .await;
    assert_eq!(stored, 2, "the processor's record keeps the last four only");
}

/// Item 7: the processor refunds but its answer is lost. Nothing is booked as refunded yet;
/// the reconciler's pass asks again under the same key, the processor refunds nothing more,
/// and the books settle once.
async fn a_refund_whose_answer_was_lost_is_finished_once(backend: Backend) {
    let s = shop(backend).await;
    let product = s.product(1000).await;
    let id = s.sell(&product, "k").await;
    s.faults.refund_lost_once.store(true, Ordering::SeqCst);
    let lost = s.checkout.payments().refund(&s.seller, &id).await;
    assert!(matches!(lost, Err(CheckoutError::Payment(_))), "{lost:?}");
    assert_eq!(
        s.count("SELECT COUNT(*) FROM refunds WHERE status = 'pending'")
            .await,
        1,
        "the refund was recorded before the processor was asked"
    );
    s.balanced().await;

    assert_eq!(s.checkout.payments().reconcile_refunds().await.unwrap(), 1);
    assert_eq!(s.status(&id).await, OrderStatus::Refunded);
    assert_eq!(
        s.checkout.payments().reconcile_refunds().await.unwrap(),
        0,
        "nothing left"
    );
    let keys = s.faults.refund_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2, "asked twice: {keys:?}");
    assert_eq!(keys[0], keys[1], "under one idempotency key");
    assert_eq!(
        s.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'refund'")
            .await,
        1
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM sandbox_payments WHERE status = 'refunded'")
            .await,
        1
    );
    s.balanced().await;
    // The seller's own retry now is refused: the order is refunded.
    assert!(matches!(
        s.checkout.payments().refund(&s.seller, &id).await,
        Err(CheckoutError::Conflict(_))
    ));
}

/// Item 7: the seller was paid out, then refunds: the balance does not go silently negative,
/// the shortfall is an explicit debt in a balanced ledger, and the next sale repays it.
async fn a_refund_after_a_payout_is_booked_as_debt(backend: Backend) {
    let s = shop(backend).await;
    let product = s.product(1000).await;
    let id = s.sell(&product, "k1").await;
    let (available, _) = s.balance().await;
    assert_eq!(available, 941, "1000 less the fee of 59");
    let payout = NewPayout {
        amount: eur(941),
        method: PayoutMethod::Standard,
    };
    s.checkout
        .payouts()
        .request_payout(&s.seller, None, payout)
        .await
        .unwrap();
    assert_eq!(s.balance().await, (0, 0));
    s.checkout.payments().refund(&s.seller, &id).await.unwrap();
    assert_eq!(
        s.balance().await,
        (0, 1000),
        "the refund is owed, not hidden"
    );
    s.balanced().await;
    let debt = s
        .count(
            "SELECT CAST(SUM(p.amount) AS BIGINT) FROM ledger_postings p \
             WHERE p.account LIKE 'seller:%:debt'",
        )
        .await;
    assert_eq!(debt, 1000, "the debt is a posting of its own");
    s.sell(&product, "k2").await;
    assert_eq!(
        s.balance().await,
        (0, 59),
        "the next sale repays the debt first"
    );
    s.balanced().await;
}

/// Item 10: the processor is down for the first attempt; a retry with the same key resumes
/// the same order (no 409 for the length of the reservation) and charges it once.
async fn a_provider_outage_frees_the_key_for_a_retry(backend: Backend) {
    let s = shop_with(
        backend,
        CheckoutConfig {
            payment_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let product = s.product(1000).await;
    let buyer = BuyerId::generate();
    s.faults.create_down_once.store(true, Ordering::SeqCst);
    let first = s
        .checkout
        .sale()
        .place_order(&buyer, "k", order(&product))
        .await;
    assert!(matches!(first, Err(CheckoutError::Payment(_))), "{first:?}");
    let retry = s
        .checkout
        .sale()
        .place_order(&buyer, "k", order(&product))
        .await
        .unwrap();
    let OrderResult::Created(paid) = retry.result else {
        panic!("the retry after the outage: {:?}", retry.result);
    };
    assert_eq!(paid.status, OrderStatus::Paid);
    let orders = s.checkout.orders().orders_of_buyer(&buyer).await.unwrap();
    assert_eq!(orders.len(), 1, "the retry resumed the first order");
    assert_eq!(s.count("SELECT COUNT(*) FROM sandbox_payments").await, 1);
    let again = s
        .checkout
        .sale()
        .place_order(&buyer, "k", order(&product))
        .await
        .unwrap();
    assert!(again.replayed, "a completed result is replayed");
    s.balanced().await;
}

/// Inserts an expired pending order; `currency` may be one no code knows.
async fn plant_pending(s: &Shop, id: &str, product: &ProductId, currency: &str, until: i64) {
    sqlx::query(
        "INSERT INTO orders (id, buyer_id, seller_id, product_id, quantity, unit_amount, \
         total_amount, currency, status, card_last4, reserved_until, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 1, 1000, 1000, $5, 'pending', '4242', $6, 0, 0)",
    )
    .bind(id)
    .bind(BuyerId::generate().as_str())
    .bind(s.seller.as_str())
    .bind(product.as_str())
    .bind(currency)
    .bind(until)
    .execute(&s.pool)
    .await
    .unwrap();
}

/// Low: one order row that cannot be read stopped every later expired reservation from being
/// released. It is counted and skipped.
async fn one_bad_row_does_not_stop_the_reaper(backend: Backend) {
    let s = shop(backend).await;
    let product = s.product(1000).await;
    let good = OrderId::generate();
    plant_pending(
        &s,
        OrderId::generate().as_str(),
        &product,
        "not-a-currency",
        1,
    )
    .await;
    plant_pending(&s, good.as_str(), &product, "EUR", 2).await;
    let settled = s.checkout.payments().release_expired().await;
    assert_eq!(settled.unwrap(), 1, "the good reservation was released");
    assert_eq!(s.status(&good).await, OrderStatus::Cancelled);
    assert_eq!(s.checkout.job_metrics().row_errors_of("reaper"), 1);
}

/// Low: likewise for payouts in transit.
async fn one_bad_row_does_not_stop_the_payout_reconciler(backend: Backend) {
    let s = shop(backend).await;
    let product = s.product(1000).await;
    s.sell(&product, "k").await;
    let payout = NewPayout {
        amount: eur(500),
        method: PayoutMethod::Standard,
    };
    let good = s
        .checkout
        .payouts()
        .request_payout(&s.seller, None, payout)
        .await
        .unwrap();
    assert_eq!(good.status, PayoutStatus::InTransit);
    sqlx::query(
        "INSERT INTO payouts (id, seller_id, amount, fee, currency, method, status, \
         created_at, updated_at) VALUES ('po_bad', $1, 1, 0, 'not-a-currency', 'standard', \
         'in_transit', 0, 0)",
    )
    .bind(s.seller.as_str())
    .execute(&s.pool)
    .await
    .unwrap();
    // The bank has the good one now.
    sqlx::query("UPDATE sandbox_payouts SET arrives_at = 0")
        .execute(&s.pool)
        .await
        .unwrap();
    assert_eq!(s.checkout.payouts().reconcile_payouts().await.unwrap(), 1);
    let after = s
        .checkout
        .payouts()
        .payout(&s.seller, &good.id)
        .await
        .unwrap();
    assert_eq!(after.status, PayoutStatus::Paid);
    assert_eq!(s.checkout.job_metrics().row_errors_of("payouts"), 1);
    s.balanced().await;
}

/// A receiver on loopback that answers 200 and counts what it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let log = Arc::clone(&log);
            async move {
                log.lock()
                    .unwrap()
                    .push(headers["webhook-id"].to_str().unwrap().to_owned());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn endpoint(s: &Shop, url: String) -> String {
    let new = NewEndpoint {
        url,
        description: String::new(),
        event_types: vec![],
    };
    s.checkout
        .webhooks()
        .create_endpoint(&s.seller, new)
        .await
        .unwrap()
        .0
        .id
}

/// Low: an endpoint whose sealed secret does not open failed the whole dispatcher round, so
/// no seller's webhook went out. Its deliveries fail alone.
async fn one_bad_row_does_not_stop_the_webhook_dispatcher(backend: Backend) {
    let s = shop(backend).await;
    let (url, seen) = receiver().await;
    let bad = endpoint(&s, url.clone()).await;
    endpoint(&s, url).await;
    sqlx::query("UPDATE webhook_endpoints SET secret = 'c1:AAAA' WHERE id = $1")
        .bind(&bad)
        .execute(&s.pool)
        .await
        .unwrap();
    let dispatcher = s.sale_to_dispatch().await;
    assert_eq!(
        dispatcher.round().await.unwrap(),
        4,
        "created and paid, to two endpoints"
    );
    assert_eq!(seen.lock().unwrap().len(), 2, "the good endpoint got both");
    assert_eq!(s.checkout.job_metrics().row_errors_of("webhooks"), 1);
    let failing = s
        .count(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending' \
             AND last_error IS NOT NULL",
        )
        .await;
    assert_eq!(failing, 2, "the bad endpoint's deliveries wait for a retry");
}

/// Low: delivered webhooks, old idempotency keys and old commerce facts are pruned after their
/// retention, as of an explicit clock; undelivered messages stay, and so does a fact row whose
/// messages no dispatcher has taken yet.
async fn pruning_keeps_what_is_young_or_undelivered(backend: Backend) {
    let day = 86_400_000;
    let s = shop_with(
        backend,
        CheckoutConfig {
            webhook_retention: Duration::from_secs(86_400),
            idempotency_ttl: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await;
    let (url, _) = receiver().await;
    endpoint(&s, url).await;
    // An endpoint nobody listens on: its deliveries stay pending.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    endpoint(&s, dead).await;
    let dispatcher = s.sale_to_dispatch().await;
    dispatcher.round().await.unwrap();
    let now = vitrine_checkout::db::now_ms();
    sqlx::query(
        "INSERT INTO commerce_facts (origin, seq, events, created_at, hooks, hooks_pending) \
         VALUES ('waiting', 1, '[]', $1, '[]', 1)",
    )
    .bind(now)
    .execute(&s.pool)
    .await
    .unwrap();
    let young = s.checkout.orders().prune_at(now).await.unwrap();
    assert_eq!(young, Default::default(), "nothing is old yet");
    let later = s.checkout.orders().prune_at(now + 2 * day).await.unwrap();
    assert_eq!(later.idempotency_keys, 1);
    assert_eq!(later.webhook_deliveries, 2, "the two delivered messages");
    assert_eq!(later.webhook_attempts, 2);
    assert_eq!(
        later.webhook_events, 0,
        "both events still have a pending delivery"
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
            .await,
        2
    );
    assert_eq!(s.count("SELECT COUNT(*) FROM idempotency_keys").await, 0);
    assert!(later.commerce_facts > 0, "the sale's facts were expanded");
    assert_eq!(
        s.count("SELECT COUNT(*) FROM commerce_facts").await,
        1,
        "only the row still waiting for a dispatcher"
    );
}
