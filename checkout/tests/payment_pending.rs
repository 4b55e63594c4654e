//! Payments confirmed after the order request (3-D Secure, bank debits) against real
//! databases: the order waits in `payment_pending` with its units held, and is settled once
//! (by the processor's notification, the reaper's poll, or the hold running out), on SQLite
//! and on PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use vitrine_checkout::db::{Backend, connect, migrate};
use vitrine_checkout::payment::{
    ChargeRequest, Payment, PaymentError, PaymentProvider, PaymentStatus,
};
use vitrine_checkout::testing::{TestDatabase, one_unit_of};
use vitrine_checkout::{
    Checkout, CheckoutConfig, NewOrder, NewProduct, Order, OrderResult, OrderStatus, RejectKind,
    SandboxProvider,
};
use vitrine_core::time::{Clock, ManualClock};
use vitrine_core::{BuyerId, Currency, Money, ProductId, SellerId};

/// Asks for 3-D Secure.
const CHECKED: &str = "4000000000003220";
/// A debit, confirmed later.
const DEBIT: &str = "4000000000000077";

struct Harness {
    checkout: Checkout,
    sandbox: Arc<SandboxProvider>,
    /// The hand on the processor (see [`Held`]).
    held: Arc<Held>,
    clock: Arc<ManualClock>,
    seller: SellerId,
    product: ProductId,
    _db: TestDatabase,
}

/// The sandbox with a hand on it: the next `create` or `retrieve` can be held until the test
/// lets it go (so the test moves the order meanwhile), and cancelling a debit can be refused,
/// as by a processor that cannot cancel a debit already under way.
struct Held {
    hold_create: AtomicBool,
    hold_retrieve: AtomicBool,
    refuse_cancel: AtomicBool,
    /// A held call has arrived.
    arrived: Notify,
    /// Lets a held call go on.
    release: Semaphore,
}

impl Default for Held {
    fn default() -> Self {
        Self {
            hold_create: AtomicBool::new(false),
            hold_retrieve: AtomicBool::new(false),
            refuse_cancel: AtomicBool::new(false),
            arrived: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

impl Held {
    /// Waits at the hand when `flag` was set (once).
    async fn maybe_hold(&self, flag: &AtomicBool) {
        if flag.swap(false, Ordering::SeqCst) {
            self.arrived.notify_one();
            self.release.acquire().await.unwrap().forget();
        }
    }
}

struct HeldSandbox(Arc<SandboxProvider>, Arc<Held>);

#[async_trait::async_trait]
impl PaymentProvider for HeldSandbox {
    async fn create(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        self.1.maybe_hold(&self.1.hold_create).await;
        self.0.create(request).await
    }
    async fn retrieve(&self, reference: &str) -> Result<Option<Payment>, PaymentError> {
        self.1.maybe_hold(&self.1.hold_retrieve).await;
        self.0.retrieve(reference).await
    }
    async fn wait(&self, reference: &str, timeout: Duration) -> Result<Payment, PaymentError> {
        self.0.wait(reference, timeout).await
    }
    async fn cancel(&self, reference: &str) -> Result<Payment, PaymentError> {
        let payment = self
            .0
            .retrieve(reference)
            .await?
            .ok_or(PaymentError::NotFound)?;
        if self.1.refuse_cancel.load(Ordering::SeqCst)
            && payment.status == PaymentStatus::AwaitingConfirmation
        {
            return Ok(payment);
        }
        self.0.cancel(reference).await
    }
    async fn refund(&self, reference: &str, key: &str) -> Result<Payment, PaymentError> {
        self.0.refund(reference, key).await
    }
}

async fn harness(backend: Backend) -> Harness {
    let db = TestDatabase::create(backend).await.unwrap();
    let (pool, backend) = connect(&db.url).await.unwrap();
    migrate(&pool, backend).await.unwrap();
    // Debits wait for the test's answer (`answer_debit`), not for the sandbox's latency.
    let sandbox = Arc::new(
        SandboxProvider::new(pool.clone(), Duration::from_millis(20))
            .with_debit_latency(Duration::from_secs(24 * 3600)),
    );
    let clock = Arc::new(ManualClock::now());
    let held = Arc::new(Held::default());
    let provider = Arc::new(HeldSandbox(sandbox.clone(), held.clone()));
    let checkout =
        Checkout::new(pool, provider, CheckoutConfig::default()).with_clock(clock.clone());
    let seller = SellerId::generate();
    let usd = Currency::parse("USD").unwrap();
    let product = checkout
        .catalog()
        .create_product(
            &seller,
            NewProduct {
                sku: "LAMP-1".into(),
                title: "Lamp".into(),
                description: String::new(),
                image_url: None,
                price: Money::new(2500, usd).unwrap(),
                stock: 5,
            },
        )
        .await
        .unwrap()
        .id;
    Harness {
        checkout,
        sandbox,
        held,
        clock,
        seller,
        product,
        _db: db,
    }
}

impl Harness {
    fn paying_with(&self, card: &str) -> NewOrder {
        let mut new = one_unit_of(&self.product);
        new.payment.card_number = card.into();
        new
    }

    /// Places an order and returns what the request answered (replayed or not).
    async fn place(&self, buyer: &BuyerId, key: &str, card: &str) -> (OrderResult, bool) {
        let placed = self
            .checkout
            .sale()
            .place_order(buyer, key, self.paying_with(card))
            .await
            .unwrap();
        (placed.result, placed.replayed)
    }

    /// Places an order that must be created (paid or waiting) and returns it.
    async fn new_order(&self, buyer: &BuyerId, key: &str, card: &str) -> Order {
        created(&self.place(buyer, key, card).await.0).clone()
    }

    /// One pass of the reaper's poll of waiting orders: how many it settled.
    async fn poll(&self) -> usize {
        self.checkout
            .payments()
            .poll_deferred_payments()
            .await
            .unwrap()
    }

    /// The bank's answer to the debit of order `reference`.
    async fn answer_debit(&self, reference: &str, paid: bool) {
        self.sandbox.answer_debit(reference, paid).await.unwrap();
    }

    async fn order(&self, buyer: &BuyerId, id: &vitrine_core::OrderId) -> Order {
        self.checkout
            .orders()
            .order_for_buyer(buyer, id)
            .await
            .unwrap()
    }

    async fn stock(&self) -> i64 {
        self.checkout
            .catalog()
            .product(&self.seller, &self.product)
            .await
            .unwrap()
            .stock
    }

    /// The seller's available balance in minor units.
    async fn available(&self) -> i64 {
        let balances = self.checkout.orders().balances(&self.seller).await.unwrap();
        balances.iter().map(|b| b.available).sum()
    }
}

fn created(result: &OrderResult) -> &Order {
    match result {
        OrderResult::Created(order) => order,
        OrderResult::Rejected(r) => panic!("refused: {r:?}"),
    }
}

/// The sandbox payment id in a 3-D Secure order's action URL.
fn payment_of(order: &Order) -> String {
    let url = order.payment_action.as_deref().expect("an action");
    let id = url
        .strip_prefix(vitrine_checkout::sandbox::ACTION_PATH)
        .expect("the sandbox's check page");
    assert_eq!(Some(id), order.payment_id.as_deref());
    id.to_owned()
}

vitrine_checkout::on_both_backends!(
    a_three_d_secure_payment_waits_for_the_buyer_then_pays_once,
    a_failed_check_cancels_and_gives_the_units_back,
    a_debit_is_confirmed_by_the_poll,
    a_hold_that_runs_out_cancels_the_payment_unless_it_went_through,
    a_late_answer_never_refunds_an_order_that_sold,
    a_payment_made_after_its_order_was_cancelled_does_not_stand,
    a_payment_the_processor_cannot_cancel_keeps_its_order_waiting,
);

/// The reaper's poll reads a waiting order, then the notification pays it and the seller ships
/// it before the poll's answer lands: the poll must leave the sale alone (no refund).
async fn a_late_answer_never_refunds_an_order_that_sold(backend: Backend) {
    let h = harness(backend).await;
    let buyer = BuyerId::generate();
    let waiting = h.new_order(&buyer, "late-poll", DEBIT).await;
    h.answer_debit(waiting.id.as_str(), true).await;
    h.held.hold_retrieve.store(true, Ordering::SeqCst);
    let poll = {
        let checkout = h.checkout.clone();
        tokio::spawn(async move { checkout.payments().poll_deferred_payments().await })
    };
    h.held.arrived.notified().await;
    let paid = h
        .checkout
        .payments()
        .payment_updated(&waiting.id)
        .await
        .unwrap();
    assert_eq!(paid.status, OrderStatus::Paid);
    let shipped = h
        .checkout
        .orders()
        .fulfil(&h.seller, &waiting.id, None)
        .await
        .unwrap();
    assert_eq!(shipped.status, OrderStatus::Fulfilled);
    h.held.release.add_permits(1);
    poll.await.unwrap().unwrap();
    let payment = h
        .sandbox
        .retrieve(waiting.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Succeeded, "never refunded");
    assert_eq!(
        h.order(&buyer, &waiting.id).await.status,
        OrderStatus::Fulfilled
    );
    let fee = CheckoutConfig::default().fees.sale_fee(2500);
    assert_eq!(h.available().await, 2500 - fee);
}

/// The reservation expires while the processor is still taking the charge (the reaper finds
/// no payment and cancels the order); the debit made afterwards must not stay live.
async fn a_payment_made_after_its_order_was_cancelled_does_not_stand(backend: Backend) {
    let h = harness(backend).await;
    let buyer = BuyerId::generate();
    h.held.hold_create.store(true, Ordering::SeqCst);
    let placing = {
        let (checkout, new) = (h.checkout.clone(), h.paying_with(DEBIT));
        let buyer = buyer.clone();
        tokio::spawn(async move { checkout.sale().place_order(&buyer, "slow", new).await })
    };
    h.held.arrived.notified().await;
    assert_eq!(h.stock().await, 4);
    h.clock
        .advance(CheckoutConfig::default().reservation_window + Duration::from_millis(1));
    assert_eq!(h.checkout.payments().release_expired().await.unwrap(), 1);
    assert_eq!(
        h.stock().await,
        5,
        "the expired reservation gave its unit back"
    );
    h.held.release.add_permits(1);
    let placed = placing.await.unwrap().unwrap();
    assert!(
        matches!(placed.result, OrderResult::Rejected(ref r) if r.kind == RejectKind::PaymentTimeout),
        "{:?}",
        placed.result
    );
    let order = &h.checkout.orders().orders_of_buyer(&buyer).await.unwrap()[0];
    assert_eq!(order.status, OrderStatus::Cancelled);
    let payment = h
        .sandbox
        .retrieve(order.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        payment.status,
        PaymentStatus::Cancelled,
        "the debit was cancelled"
    );
    assert_eq!(h.stock().await, 5);
}

/// A hold that ends while the processor cannot cancel the payment: the order keeps waiting for
/// the processor's answer (its hold moved on, so it does not block the reaper's page), and is
/// paid when the debit goes through.
async fn a_payment_the_processor_cannot_cancel_keeps_its_order_waiting(backend: Backend) {
    let h = harness(backend).await;
    let buyer = BuyerId::generate();
    let stuck = h.new_order(&buyer, "stuck", DEBIT).await;
    let gone = h.new_order(&buyer, "gone", CHECKED).await;
    h.held.refuse_cancel.store(true, Ordering::SeqCst);
    h.clock
        .advance(CheckoutConfig::default().payment_pending_window + Duration::from_millis(1));
    assert_eq!(
        h.checkout.payments().release_expired().await.unwrap(),
        1,
        "the other expired hold is not held up behind the one that cannot be cancelled"
    );
    assert_eq!(
        h.order(&buyer, &gone.id).await.status,
        OrderStatus::Cancelled
    );
    let waiting = h.order(&buyer, &stuck.id).await;
    assert_eq!(waiting.status, OrderStatus::PaymentPending);
    assert!(
        waiting.reserved_until > h.clock.now_ms(),
        "asked again later"
    );
    assert_eq!(h.checkout.payments().release_expired().await.unwrap(), 0);
    h.answer_debit(stuck.id.as_str(), true).await;
    assert_eq!(h.poll().await, 1);
    assert_eq!(h.order(&buyer, &stuck.id).await.status, OrderStatus::Paid);
    assert_eq!(h.stock().await, 4);
}

async fn a_three_d_secure_payment_waits_for_the_buyer_then_pays_once(backend: Backend) {
    let h = harness(backend).await;
    let buyer = BuyerId::generate();
    let (result, replayed) = h.place(&buyer, "k-3ds", CHECKED).await;
    let waiting = created(&result).clone();
    assert!(!replayed);
    assert_eq!(waiting.status, OrderStatus::PaymentPending);
    let window = CheckoutConfig::default().payment_pending_window;
    assert_eq!(
        waiting.reserved_until,
        h.clock.now_ms() + window.as_millis() as i64,
        "the units are held for the pending window from now"
    );
    assert_eq!(h.stock().await, 4, "its unit stays reserved");
    let payment = payment_of(&waiting);

    // A retry of the request answers the same waiting order; nothing is charged twice.
    let (again, replayed) = h.place(&buyer, "k-3ds", CHECKED).await;
    assert!(replayed);
    assert_eq!(created(&again).id, waiting.id);
    assert_eq!(created(&again).status, OrderStatus::PaymentPending);

    // Before the buyer answers, neither the notification nor the poll settles anything.
    let still = h
        .checkout
        .payments()
        .payment_updated(&waiting.id)
        .await
        .unwrap();
    assert_eq!(still.status, OrderStatus::PaymentPending);
    assert_eq!(h.poll().await, 0);

    let answered = h.sandbox.authenticate(&payment, true).await.unwrap();
    assert_eq!(answered.status, PaymentStatus::Succeeded);
    // The notification and the poll race: the order is paid once, and sold once.
    let (notified, polled) = tokio::join!(
        h.checkout.payments().payment_updated(&waiting.id),
        h.checkout.payments().poll_deferred_payments()
    );
    let paid = notified.unwrap();
    assert!(polled.unwrap() <= 1);
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(
        paid.payment_action, None,
        "nothing left for the buyer to do"
    );
    assert_eq!(h.order(&buyer, &waiting.id).await.status, OrderStatus::Paid);
    assert_eq!(h.stock().await, 4, "the held unit is sold, not taken again");
    let fee = CheckoutConfig::default().fees.sale_fee(2500);
    assert_eq!(h.available().await, 2500 - fee, "one sale in the ledger");
    assert!(h.checkout.orders().ledger_check().await.unwrap().is_empty());

    // The key now answers the paid order; a later notification changes nothing.
    let (replay, _) = h.place(&buyer, "k-3ds", CHECKED).await;
    assert_eq!(created(&replay).status, OrderStatus::Paid);
    assert_eq!(
        h.checkout
            .payments()
            .payment_updated(&waiting.id)
            .await
            .unwrap()
            .status,
        OrderStatus::Paid
    );
    assert_eq!(h.available().await, 2500 - fee);
}

async fn a_failed_check_cancels_and_gives_the_units_back(backend: Backend) {
    let h = harness(backend).await;
    let buyer = BuyerId::generate();
    let waiting = h.new_order(&buyer, "k-fail", CHECKED).await;
    assert_eq!(h.stock().await, 4);
    let answered = h
        .sandbox
        .authenticate(&payment_of(&waiting), false)
        .await
        .unwrap();
    assert!(matches!(answered.status, PaymentStatus::Declined { .. }));
    // No notification: the reaper's poll finds the answer.
    assert_eq!(h.poll().await, 1);
    let cancelled = h.order(&buyer, &waiting.id).await;
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.failure.as_deref(), Some("payment_declined"));
    assert_eq!(h.stock().await, 5, "the unit came back");
    assert_eq!(h.available().await, 0);
    // The key answers the refusal; answering the check again changes nothing.
    let (replay, replayed) = h.place(&buyer, "k-fail", CHECKED).await;
    assert!(replayed);
    assert!(matches!(
        replay,
        OrderResult::Rejected(ref r) if r.kind == RejectKind::PaymentDeclined
    ));
    let again = h
        .sandbox
        .authenticate(&payment_of(&waiting), true)
        .await
        .unwrap();
    assert!(matches!(again.status, PaymentStatus::Declined { .. }));
}

async fn a_debit_is_confirmed_by_the_poll(backend: Backend) {
    let h = harness(backend).await;
    let buyer = BuyerId::generate();
    let mut waiting = Vec::new();
    for key in ["d-1", "d-2", "d-3"] {
        let (result, _) = h.place(&buyer, key, DEBIT).await;
        let order = created(&result).clone();
        assert_eq!(order.status, OrderStatus::PaymentPending);
        assert_eq!(
            order.payment_action, None,
            "a debit asks nothing of the buyer"
        );
        waiting.push(order);
    }
    assert_eq!(h.stock().await, 2);
    h.answer_debit(waiting[0].id.as_str(), true).await;
    h.answer_debit(waiting[1].id.as_str(), false).await;
    assert_eq!(h.poll().await, 2);
    assert_eq!(h.poll().await, 0);
    let states: Vec<_> = {
        let mut out = Vec::new();
        for o in &waiting {
            out.push(h.order(&buyer, &o.id).await.status);
        }
        out
    };
    assert_eq!(
        states,
        [
            OrderStatus::Paid,
            OrderStatus::Cancelled,
            OrderStatus::PaymentPending
        ]
    );
    assert_eq!(h.stock().await, 3, "the returned debit's unit came back");
}

async fn a_hold_that_runs_out_cancels_the_payment_unless_it_went_through(backend: Backend) {
    let h = harness(backend).await;
    let buyer = BuyerId::generate();
    let unanswered = h.new_order(&buyer, "h-1", CHECKED).await;
    let late = h.new_order(&buyer, "h-2", DEBIT).await;
    // The bank collects the debit, but nobody tells checkout before the hold ends.
    h.answer_debit(late.id.as_str(), true).await;
    let window = CheckoutConfig::default().payment_pending_window;
    h.clock.advance(window - Duration::from_millis(1));
    assert_eq!(
        h.checkout.payments().release_expired().await.unwrap(),
        0,
        "not yet"
    );
    h.clock.advance(Duration::from_millis(2));
    assert_eq!(h.checkout.payments().release_expired().await.unwrap(), 2);
    let cancelled = h.order(&buyer, &unanswered.id).await;
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.failure.as_deref(), Some("payment_timeout"));
    let payment = h
        .sandbox
        .payment(&payment_of(&unanswered))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        payment.status,
        PaymentStatus::Cancelled,
        "cancelled at the processor"
    );
    // The buyer answering after the hold cannot charge a cancelled order.
    let after = h.sandbox.authenticate(&payment.id, true).await.unwrap();
    assert_eq!(after.status, PaymentStatus::Cancelled);
    assert_eq!(
        h.order(&buyer, &late.id).await.status,
        OrderStatus::Paid,
        "a payment that went through is never lost"
    );
    assert_eq!(h.stock().await, 4);
    assert!(h.checkout.orders().ledger_check().await.unwrap().is_empty());
}
