//! Checkout against real databases: every test runs on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;
use vitrine_checkout::CheckoutConfig;
use vitrine_checkout::Shipment;
use vitrine_checkout::db::{Backend, connect, migrate};
use vitrine_checkout::orders::PaymentDetails;
use vitrine_checkout::payment::{
    ChargeRequest, Payment, PaymentError, PaymentProvider, PaymentStatus,
};
use vitrine_checkout::testing::{Heard, TestDatabase};
use vitrine_checkout::{
    Checkout, CheckoutError, NewOrder, NewPin, NewProduct, OrderResult, OrderStatus, ProductPatch,
    RejectKind, SandboxProvider,
};
use vitrine_core::time::ManualClock;
use vitrine_core::{BuyerId, CommerceEvent, Currency, Money, ProductId, SellerId, StreamId};

struct Harness {
    checkout: Checkout,
    /// What the rooms heard, from the commerce facts' pump.
    events: Arc<Heard>,
    _pump: tokio_util::sync::DropGuard,
    sandbox: Arc<SandboxProvider>,
    seller: SellerId,
    _db: TestDatabase,
}

async fn harness_with(
    backend: Backend,
    config: CheckoutConfig,
    wrap: impl FnOnce(Arc<SandboxProvider>) -> Arc<dyn PaymentProvider>,
) -> Harness {
    let db = TestDatabase::create(backend).await.unwrap();
    let (pool, backend) = connect(&db.url).await.unwrap();
    migrate(&pool, backend).await.unwrap();
    let sandbox = Arc::new(SandboxProvider::new(
        pool.clone(),
        Duration::from_millis(20),
    ));
    let events = Arc::new(Heard::default());
    let checkout = Checkout::new(pool, wrap(sandbox.clone()), config);
    // The harness's token stops the pump when the test ends.
    let pump = tokio_util::sync::CancellationToken::new();
    checkout.spawn_fact_pump(events.clone(), pump.clone());
    Harness {
        checkout,
        events,
        _pump: pump.drop_guard(),
        sandbox,
        seller: SellerId::generate(),
        _db: db,
    }
}

impl Harness {
    /// The stream's active pin (there must be one).
    async fn active_pin(&self, stream: &StreamId) -> vitrine_checkout::Pin {
        let (pin, _) = self
            .checkout
            .catalog()
            .active_pin(stream)
            .await
            .unwrap()
            .expect("an active pin");
        pin
    }

    async fn product(&self, new: NewProduct) -> vitrine_checkout::Product {
        self.checkout
            .catalog()
            .create_product(&self.seller, new)
            .await
            .unwrap()
    }

    /// Places an order and returns its result (the request itself must be well formed).
    async fn place(&self, buyer: &BuyerId, key: &str, new: NewOrder) -> OrderResult {
        self.checkout
            .sale()
            .place_order(buyer, key, new)
            .await
            .unwrap()
            .result
    }
}

async fn harness(backend: Backend) -> Harness {
    harness_with(backend, CheckoutConfig::default(), |s| s).await
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::parse("USD").unwrap()).unwrap()
}

fn jacket(stock: i64) -> NewProduct {
    NewProduct {
        sku: "JKT-RED-M".into(),
        title: "Red jacket".into(),
        description: String::new(),
        image_url: None,
        price: usd(4900),
        stock,
    }
}

fn order(product: &ProductId, quantity: u32, card: &str) -> NewOrder {
    NewOrder {
        product_id: product.clone(),
        quantity,
        pin_id: None,
        stream_id: None,
        currency: None,
        payment: PaymentDetails {
            card_number: card.into(),
        },
        source: Default::default(),
        media_ms: None,
    }
}

fn through(stream: &StreamId, product: &ProductId, card: &str) -> NewOrder {
    NewOrder {
        stream_id: Some(stream.clone()),
        ..order(product, 1, card)
    }
}

const APPROVE: &str = "4242424242424242";
const DECLINE: &str = "4000000000000002";
const NEVER: &str = "4000000000000119";

fn rejected(result: &OrderResult) -> RejectKind {
    match result {
        OrderResult::Rejected(r) => r.kind,
        OrderResult::Created(o) => panic!("expected a rejection, got order {o:?}"),
    }
}

fn created(result: &OrderResult) -> &vitrine_checkout::Order {
    match result {
        OrderResult::Created(o) => o,
        OrderResult::Rejected(r) => panic!("expected an order, got {r:?}"),
    }
}

async fn stock(h: &Harness, product: &ProductId) -> i64 {
    h.checkout
        .catalog()
        .product(&h.seller, product)
        .await
        .unwrap()
        .stock
}

vitrine_checkout::on_both_backends!(
    catalog_is_scoped_to_its_seller,
    a_paid_order_takes_stock_and_replays_by_key,
    declines_and_timeouts_give_stock_back,
    sold_out_is_refused_without_going_negative,
    flash_sale_sells_exactly_its_cap_under_contention,
    per_buyer_limit_and_sale_end_are_enforced,
    refund_restocks_and_the_state_machine_holds,
    a_crash_mid_payment_is_settled_by_the_reaper,
    the_buyer_pays_in_their_currency_and_the_seller_is_settled_in_theirs,
);

async fn the_buyer_pays_in_their_currency_and_the_seller_is_settled_in_theirs(backend: Backend) {
    let h = harness(backend).await;
    let table = r#"{"base": "USD", "source": "Test bank", "as_of": "2026-12-01T16:00:00Z",
                    "rates": {"USD": "1", "JPY": "150.5", "KWD": "0.3071"}}"#;
    h.checkout
        .rates()
        .set(vitrine_checkout::fx::RateTable::from_json(table).unwrap());
    let p = h.product(jacket(10)).await;
    let buyer = BuyerId::generate();
    for (key, code, charged) in [("yen", "JPY", 7375), ("dinar", "KWD", 15048)] {
        let new = NewOrder {
            currency: Some(Currency::parse(code).unwrap()),
            ..order(&p.id, 1, APPROVE)
        };
        let placed = h.place(&buyer, key, new).await;
        let o = created(&placed);
        // 49.00 USD is 7,374.5 yen (rounded half away from zero) and 15.0479 dinars.
        let quoted = o.presentment.as_ref().expect("a quote").total;
        assert_eq!(quoted.amount, charged);
        assert_eq!(quoted.currency.as_str(), code);
        let payment = h.sandbox.retrieve(o.id.as_str()).await.unwrap().unwrap();
        assert_eq!(
            payment.amount, quoted,
            "the card is charged the quoted price"
        );
        assert_eq!(o.total, usd(4900), "the order's settlement total");
    }
    // One fil (0.001 KWD) is 0.49 yen: a card cannot be charged nothing, so it is refused.
    let fil = h
        .product(NewProduct {
            sku: "FIL".into(),
            price: Money::new(1, Currency::parse("KWD").unwrap()).unwrap(),
            ..jacket(1)
        })
        .await;
    let tiny = NewOrder {
        currency: Some(Currency::parse("JPY").unwrap()),
        ..order(&fil.id, 1, APPROVE)
    };
    let refused = h.checkout.sale().place_order(&buyer, "tiny", tiny).await;
    assert!(
        matches!(&refused, Err(CheckoutError::Invalid(why)) if why.contains("smallest amount")),
        "{refused:?}"
    );
    let balances = h.checkout.orders().balances(&h.seller).await.unwrap();
    assert_eq!(balances.len(), 1, "{balances:?}");
    assert_eq!(balances[0].currency.as_str(), "USD");
    assert_eq!(balances[0].available, 2 * (4900 - (142 + 30)));
}

async fn catalog_is_scoped_to_its_seller(backend: Backend) {
    let h = harness(backend).await;
    let p = h.product(jacket(50)).await;
    assert_eq!(p.stock, 50);
    assert!(matches!(
        h.checkout
            .catalog()
            .create_product(&h.seller, jacket(1))
            .await,
        Err(CheckoutError::Conflict(_))
    ));
    let other = SellerId::generate();
    assert!(matches!(
        h.checkout.catalog().product(&other, &p.id).await,
        Err(CheckoutError::NotFound(_))
    ));
    // Another seller may use the same SKU.
    h.checkout
        .catalog()
        .create_product(&other, jacket(1))
        .await
        .unwrap();
    assert_eq!(
        h.checkout
            .catalog()
            .products_of(&h.seller)
            .await
            .unwrap()
            .len(),
        1
    );
    let patched = h
        .checkout
        .catalog()
        .update_product(
            &h.seller,
            &p.id,
            ProductPatch {
                title: Some("Blue jacket".into()),
                stock_delta: Some(-60),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(patched, Err(CheckoutError::Conflict(_))),
        "stock can't go negative"
    );
    let patched = h
        .checkout
        .catalog()
        .update_product(
            &h.seller,
            &p.id,
            ProductPatch {
                title: Some("Blue jacket".into()),
                stock_delta: Some(-10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((patched.title.as_str(), patched.stock), ("Blue jacket", 40));
    let wrong_currency = ProductPatch {
        price: Some(Money::new(1, Currency::parse("EUR").unwrap()).unwrap()),
        ..Default::default()
    };
    assert!(matches!(
        h.checkout
            .catalog()
            .update_product(&h.seller, &p.id, wrong_currency)
            .await,
        Err(CheckoutError::Invalid(_))
    ));
    let mut bad = jacket(1);
    bad.sku = "has space".into();
    assert!(matches!(
        h.checkout.catalog().create_product(&h.seller, bad).await,
        Err(CheckoutError::Invalid(_))
    ));
    h.checkout
        .catalog()
        .archive_product(&h.seller, &p.id)
        .await
        .unwrap();
    assert!(
        h.checkout
            .catalog()
            .product(&h.seller, &p.id)
            .await
            .is_err()
    );
}

async fn a_paid_order_takes_stock_and_replays_by_key(backend: Backend) {
    let h = harness(backend).await;
    let p = h.product(jacket(5)).await;
    let buyer = BuyerId::generate();
    let placed = h
        .checkout
        .sale()
        .place_order(&buyer, "key-1", order(&p.id, 2, APPROVE))
        .await
        .unwrap();
    assert!(!placed.replayed);
    let o = created(&placed.result).clone();
    assert_eq!(o.status, OrderStatus::Paid);
    assert_eq!(o.total, usd(9800));
    assert_eq!(o.card_last4, "4242");
    assert_eq!(stock(&h, &p.id).await, 3);

    let again = h
        .checkout
        .sale()
        .place_order(&buyer, "key-1", order(&p.id, 2, APPROVE))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(created(&again.result), &o, "the stored response comes back");
    assert_eq!(stock(&h, &p.id).await, 3, "a replay takes nothing");

    let other_body = h.place(&buyer, "key-1", order(&p.id, 1, APPROVE)).await;
    assert_eq!(rejected(&other_body), RejectKind::IdempotencyKeyReused);

    // Keys are per buyer: another buyer's same key is a new order.
    let other = h
        .place(&BuyerId::generate(), "key-1", order(&p.id, 1, APPROVE))
        .await;
    assert_ne!(created(&other).id, o.id);
    assert_eq!(
        h.checkout.orders().orders_of_buyer(&buyer).await.unwrap(),
        vec![o.clone()]
    );
    assert_eq!(
        h.checkout
            .orders()
            .orders_of_seller(&h.seller)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        h.checkout
            .orders()
            .order_for_buyer(&BuyerId::generate(), &o.id)
            .await
            .is_err()
    );
    assert!(
        h.checkout
            .orders()
            .order_for_seller(&SellerId::generate(), &o.id)
            .await
            .is_err()
    );
    let charged = h.sandbox.retrieve(o.id.as_str()).await.unwrap().unwrap();
    assert_eq!(charged.amount, usd(9800));
    h.checkout.facts().flush().await;
    assert!(
        h.events
            .all()
            .iter()
            .any(|e| matches!(e, CommerceEvent::Order { order, .. } if order.id == o.id && order.status == "paid"))
    );
}

async fn declines_and_timeouts_give_stock_back(backend: Backend) {
    let config = CheckoutConfig {
        payment_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let h = harness_with(backend, config, |s| s).await;
    let p = h.product(jacket(1)).await;
    let buyer = BuyerId::generate();
    let declined = h.place(&buyer, "a", order(&p.id, 1, DECLINE)).await;
    assert_eq!(rejected(&declined), RejectKind::PaymentDeclined);
    assert_eq!(stock(&h, &p.id).await, 1);
    let timed_out = h.place(&buyer, "b", order(&p.id, 1, NEVER)).await;
    assert_eq!(rejected(&timed_out), RejectKind::PaymentTimeout);
    assert_eq!(stock(&h, &p.id).await, 1);
    let orders = h.checkout.orders().orders_of_buyer(&buyer).await.unwrap();
    assert_eq!(orders.len(), 2);
    assert!(orders.iter().all(|o| o.status == OrderStatus::Cancelled));
    // The replay of a decline is the same decline, not a new attempt.
    let replay = h
        .checkout
        .sale()
        .place_order(&buyer, "a", order(&p.id, 1, DECLINE))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.result, declined);
    assert!(matches!(
        h.checkout
            .sale()
            .place_order(&buyer, "c", order(&p.id, 1, "4242424242424241"))
            .await,
        Err(CheckoutError::Invalid(_))
    ));
}

async fn sold_out_is_refused_without_going_negative(backend: Backend) {
    let h = harness(backend).await;
    let p = h.product(jacket(1)).await;
    let buyer = BuyerId::generate();
    let too_many = h.place(&buyer, "a", order(&p.id, 2, APPROVE)).await;
    assert_eq!(rejected(&too_many), RejectKind::SoldOut);
    created(&h.place(&buyer, "b", order(&p.id, 1, APPROVE)).await);
    let late = h.place(&buyer, "c", order(&p.id, 1, APPROVE)).await;
    assert_eq!(rejected(&late), RejectKind::SoldOut);
    assert_eq!(stock(&h, &p.id).await, 0);
}

async fn flash_sale_sells_exactly_its_cap_under_contention(backend: Backend) {
    let h = harness(backend).await;
    let p = h.product(jacket(500)).await;
    let stream = StreamId::generate();
    let pin = h
        .checkout
        .catalog()
        .pin(
            &h.seller,
            &stream,
            NewPin {
                product_id: p.id.clone(),
                sale_price: Some(usd(2900)),
                per_buyer_limit: Some(1),
                quantity_cap: Some(50),
                ends_at: None,
                ends_at_iso: None,
            },
        )
        .await
        .unwrap();
    let buyers: Vec<BuyerId> = (0..120).map(|_| BuyerId::generate()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, buyer) in buyers.iter().enumerate() {
        // Every fifth buyer double-taps: two concurrent requests with one key.
        let taps = if i % 5 == 0 { 2 } else { 1 };
        for _ in 0..taps {
            let (c, buyer, stream, product) = (
                h.checkout.clone(),
                buyer.clone(),
                stream.clone(),
                p.id.clone(),
            );
            tasks.spawn(async move {
                let placed = c
                    .sale()
                    .place_order(
                        &buyer,
                        &format!("req-{i}"),
                        through(&stream, &product, APPROVE),
                    )
                    .await
                    .unwrap();
                (i, placed.result)
            });
        }
    }
    let mut by_buyer: std::collections::HashMap<usize, Vec<OrderResult>> = Default::default();
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.unwrap();
        by_buyer.entry(i).or_default().push(result);
    }
    assert_eq!(by_buyer.len(), buyers.len(), "every buyer got an answer");
    let mut paid = 0;
    for (i, results) in &by_buyer {
        assert!(
            results.windows(2).all(|w| w[0] == w[1]),
            "buyer {i}: taps disagree"
        );
        match &results[0] {
            OrderResult::Created(o) => {
                assert_eq!(o.unit_price, usd(2900));
                paid += 1;
            }
            OrderResult::Rejected(r) => assert_eq!(r.kind, RejectKind::SoldOut),
        }
    }
    assert_eq!(paid, 50);
    assert_eq!(stock(&h, &p.id).await, 450);
    let pin_now = h.active_pin(&stream).await;
    assert_eq!(pin_now.id, pin.id);
    assert_eq!(pin_now.remaining, Some(0));
    let sold = h
        .checkout
        .orders()
        .orders_of_seller(&h.seller)
        .await
        .unwrap();
    assert_eq!(
        sold.iter()
            .filter(|o| o.status == OrderStatus::Paid)
            .count(),
        50
    );
}

async fn per_buyer_limit_and_sale_end_are_enforced(backend: Backend) {
    let h = harness(backend).await;
    let p = h.product(jacket(10)).await;
    let stream = StreamId::generate();
    // The end given in RFC 3339 only; both forms come back, naming one instant.
    let ends = vitrine_core::Timestamp(vitrine_checkout::db::now_ms() + 60_000);
    let pin = NewPin {
        product_id: p.id.clone(),
        sale_price: None,
        per_buyer_limit: Some(2),
        quantity_cap: None,
        ends_at: None,
        ends_at_iso: Some(ends),
    };
    let disagreeing = NewPin {
        ends_at: Some(ends.millis() + 1),
        ..pin.clone()
    };
    assert!(matches!(
        h.checkout
            .catalog()
            .pin(&h.seller, &stream, disagreeing)
            .await,
        Err(CheckoutError::Invalid(_))
    ));
    let pinned = h
        .checkout
        .catalog()
        .pin(&h.seller, &stream, pin)
        .await
        .unwrap();
    assert_eq!(
        (pinned.ends_at, pinned.ends_at_iso),
        (Some(ends.millis()), Some(ends))
    );
    let buyer = BuyerId::generate();
    let mut two = through(&stream, &p.id, APPROVE);
    two.quantity = 2;
    created(&h.place(&buyer, "a", two).await);
    let third = h.place(&buyer, "b", through(&stream, &p.id, APPROVE)).await;
    assert_eq!(rejected(&third), RejectKind::LimitExceeded);
    // A declined attempt does not use up the limit of another buyer.
    let other = BuyerId::generate();
    let declined = h.place(&other, "a", through(&stream, &p.id, DECLINE)).await;
    assert_eq!(rejected(&declined), RejectKind::PaymentDeclined);
    let mut two = through(&stream, &p.id, APPROVE);
    two.quantity = 2;
    created(&h.place(&other, "b", two).await);
    // Buying something that is not pinned there is refused.
    let q = h
        .checkout
        .catalog()
        .create_product(
            &h.seller,
            NewProduct {
                sku: "OTHER".into(),
                ..jacket(5)
            },
        )
        .await
        .unwrap();
    let not_pinned = h.place(&other, "c", through(&stream, &q.id, APPROVE)).await;
    assert_eq!(rejected(&not_pinned), RejectKind::NotPinned);
    // An ended sale.
    let pin = h.active_pin(&stream).await;
    h.checkout.catalog().unpin(&stream, &pin.id).await.unwrap();
    let mut by_pin = order(&p.id, 1, APPROVE);
    by_pin.pin_id = Some(pin.id.clone());
    let ended = h.place(&BuyerId::generate(), "d", by_pin).await;
    assert_eq!(rejected(&ended), RejectKind::SaleEnded);
    assert_eq!(stock(&h, &p.id).await, 6);
}

async fn refund_restocks_and_the_state_machine_holds(backend: Backend) {
    let h = harness(backend).await;
    let p = h.product(jacket(3)).await;
    let buyer = BuyerId::generate();
    let a = created(&h.place(&buyer, "a", order(&p.id, 1, APPROVE)).await).clone();
    let b = created(&h.place(&buyer, "b", order(&p.id, 1, APPROVE)).await).clone();
    assert_eq!(stock(&h, &p.id).await, 1);
    assert!(
        matches!(
            h.checkout.orders().deliver(&h.seller, &a.id).await,
            Err(CheckoutError::Conflict(_))
        ),
        "shipped before delivered"
    );
    let shipment = Shipment::new(" DHL ", "JD014600006281230704").unwrap();
    let fulfilled = h
        .checkout
        .orders()
        .fulfil(&h.seller, &a.id, Some(&shipment))
        .await
        .unwrap();
    assert_eq!(fulfilled.status, OrderStatus::Fulfilled);
    assert_eq!(fulfilled.shipment.as_ref().unwrap().carrier, "DHL");
    assert!(fulfilled.shipped_at.is_some() && fulfilled.delivered_at.is_none());
    assert!(matches!(
        h.checkout.orders().fulfil(&h.seller, &a.id, None).await,
        Err(CheckoutError::Conflict(_))
    ));
    let delivered = h.checkout.orders().deliver(&h.seller, &a.id).await.unwrap();
    assert_eq!(delivered.status, OrderStatus::Delivered);
    assert!(delivered.delivered_at >= delivered.shipped_at);
    // Read back: the shipment and the times were stored.
    let stored = h
        .checkout
        .orders()
        .orders_of_seller(&h.seller)
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.id == a.id)
        .unwrap();
    assert_eq!(stored, delivered);
    assert!(matches!(
        h.checkout.orders().deliver(&h.seller, &a.id).await,
        Err(CheckoutError::Conflict(_))
    ));
    for (carrier, tracking) in [
        ("", "1Z999"),
        ("UPS", ""),
        ("UPS", "1Z 999\"'"),
        ("UPS", &"9".repeat(65)),
    ] {
        assert!(
            Shipment::new(carrier, tracking).is_err(),
            "{carrier:?} {tracking:?}"
        );
    }
    let refunded = h
        .checkout
        .payments()
        .refund(&h.seller, &b.id)
        .await
        .unwrap();
    assert_eq!(refunded.status, OrderStatus::Refunded);
    assert_eq!(stock(&h, &p.id).await, 2);
    assert!(matches!(
        h.checkout.payments().refund(&h.seller, &b.id).await,
        Err(CheckoutError::Conflict(_))
    ));
    assert!(
        h.checkout
            .payments()
            .refund(&SellerId::generate(), &a.id)
            .await
            .is_err()
    );
    // A delivered order can still be refunded (a return).
    let returned = h
        .checkout
        .payments()
        .refund(&h.seller, &a.id)
        .await
        .unwrap();
    assert_eq!(returned.status, OrderStatus::Refunded);
    assert_eq!(stock(&h, &p.id).await, 3);
    let payment = h.sandbox.retrieve(b.id.as_str()).await.unwrap().unwrap();
    assert_eq!(
        payment.status,
        vitrine_checkout::payment::PaymentStatus::Refunded
    );
}

/// A provider that charges through the sandbox and then "crashes": the caller never hears back.
struct DiesAfterCharge(Arc<SandboxProvider>);

#[async_trait::async_trait]
impl PaymentProvider for DiesAfterCharge {
    async fn create(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        self.0.create(request).await?;
        Err(PaymentError::Unavailable("connection reset".into()))
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
        self.0.refund(reference, key).await
    }
}

async fn a_crash_mid_payment_is_settled_by_the_reaper(backend: Backend) {
    let mut h = harness_with(backend, CheckoutConfig::default(), |s| {
        Arc::new(DiesAfterCharge(s))
    })
    .await;
    // The reservations expire when the test moves the clock, not when it has waited.
    let clock = Arc::new(ManualClock::now());
    h.checkout = h.checkout.clone().with_clock(clock.clone());
    let p = h.product(jacket(5)).await;
    let buyer = BuyerId::generate();
    for (key, card) in [("charged", APPROVE), ("declined", DECLINE), ("hung", NEVER)] {
        let err = h
            .checkout
            .sale()
            .place_order(&buyer, key, order(&p.id, 1, card))
            .await
            .unwrap_err();
        assert!(matches!(err, CheckoutError::Payment(_)));
    }
    assert_eq!(stock(&h, &p.id).await, 2, "three units reserved");
    assert_eq!(
        h.checkout.payments().release_expired().await.unwrap(),
        0,
        "not expired yet"
    );
    // The processor confirms the approved charge in its own time (the sandbox's latency): the
    // reaper must find it charged, so the test waits for the processor, not for the clock.
    let pending = h.checkout.orders().orders_of_buyer(&buyer).await.unwrap();
    let charged = pending.iter().find(|o| o.card_last4 == "4242").unwrap();
    let confirmed = h
        .sandbox
        .wait(charged.id.as_str(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(confirmed.status, PaymentStatus::Succeeded);
    // One moment short of the window nothing expires; past it, all three are settled at once.
    clock.advance(CheckoutConfig::default().reservation_window - Duration::from_millis(1));
    assert_eq!(h.checkout.payments().release_expired().await.unwrap(), 0);
    clock.advance(Duration::from_millis(2));
    assert_eq!(h.checkout.payments().release_expired().await.unwrap(), 3);
    let orders = h.checkout.orders().orders_of_buyer(&buyer).await.unwrap();
    let paid: Vec<_> = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Paid)
        .collect();
    assert_eq!(
        paid.len(),
        1,
        "the charge that went through became a paid order"
    );
    assert!(paid[0].payment_id.is_some());
    assert_eq!(
        stock(&h, &p.id).await,
        4,
        "the others gave their units back"
    );
    // The buyer retrying the charged request gets the paid order.
    let replay = h
        .checkout
        .sale()
        .place_order(&buyer, "charged", order(&p.id, 1, APPROVE))
        .await
        .unwrap();
    assert_eq!(created(&replay.result).id, paid[0].id);
}
