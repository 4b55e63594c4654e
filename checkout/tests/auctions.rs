//! Live auctions on SQLite and PostgreSQL: bids must beat the last by the increment, late bids
//! move the clock (unless sudden death), two equal bids at the close make exactly one winner
//! (and bids arriving together are written together),
//! a bid after the clock ran out is refused, the hammer sells the auctioned unit once at the
//! hammer price, and an auction nobody bid on gives its unit back. Time is a manual clock.

use futures::future::join_all;
use std::sync::Arc;
use std::time::Duration;
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::fresh_checkout;
use vitrine_checkout::webhooks::sealing::SecretBox;
use vitrine_checkout::webhooks::{NewEndpoint, TargetPolicy};
use vitrine_checkout::{
    Checkout, CheckoutError, NewAuction, NewPin, NewProduct, OrderResult, OrderStatus, Product,
    RejectKind,
};
use vitrine_core::time::ManualClock;
use vitrine_core::{
    AuctionView, BidFailure, BidOutcome, BidRequest, BuyerId, Currency, Money, SellerId, StreamId,
};

const APPROVE: &str = "4242424242424242";

vitrine_checkout::on_both_backends!(
    the_highest_bid_wins_at_the_hammer_price_and_the_winner_pays,
    two_equal_bids_at_the_close_make_exactly_one_winner,
    late_bids_move_the_clock_unless_sudden_death,
    an_auction_nobody_bid_on_gives_its_unit_back,
    an_unpaid_winners_order_expires_and_restocks,
    an_auction_is_started_only_on_the_pinned_product_with_stock,
    two_nodes_bid_and_bring_the_hammer_down_once,
    racing_payments_of_a_won_order_charge_once,
);

struct Sale {
    checkout: Checkout,
    clock: Arc<ManualClock>,
    endpoint: String,
    seller: SellerId,
    product: Product,
    stream: StreamId,
    _db: vitrine_checkout::testing::TestDatabase,
}

/// A product of `stock` units at 20.00 EUR pinned on a new stream, on a checkout whose time
/// is a manual clock.
async fn sale(backend: Backend, stock: i64) -> Sale {
    let (checkout, db) = fresh_checkout(backend, Duration::ZERO).await.unwrap();
    let clock = Arc::new(ManualClock::now());
    let checkout = checkout.with_clock(clock.clone()).with_webhooks(
        SecretBox::ephemeral(),
        TargetPolicy {
            allow_private: true,
        },
    );
    let seller = SellerId::generate();
    // An endpoint for every event: what the auction writes to the outbox is listed for it.
    let (endpoint, _) = checkout
        .webhooks()
        .create_endpoint(
            &seller,
            NewEndpoint {
                url: "http://127.0.0.1:9/hooks".into(),
                description: String::new(),
                event_types: vec![],
            },
        )
        .await
        .unwrap();
    let new = NewProduct {
        sku: "WATCH".into(),
        title: "Vintage watch".into(),
        description: String::new(),
        image_url: None,
        price: eur(2000),
        stock,
    };
    let product = checkout
        .catalog()
        .create_product(&seller, new)
        .await
        .unwrap();
    let stream = StreamId::generate();
    let pin = NewPin {
        product_id: product.id.clone(),
        sale_price: None,
        per_buyer_limit: None,
        quantity_cap: None,
        ends_at: None,
        ends_at_iso: None,
    };
    checkout.catalog().pin(&seller, &stream, pin).await.unwrap();
    Sale {
        checkout,
        clock,
        endpoint: endpoint.id,
        seller,
        product,
        stream,
        _db: db,
    }
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
}

impl Sale {
    /// Starts an auction at 10.00 EUR, 1.00 increments.
    async fn start(&self, duration_secs: u32, extend_secs: u32, sudden_death: bool) -> AuctionView {
        self.checkout
            .sale()
            .start_auction(
                &self.seller,
                &self.stream,
                NewAuction {
                    product_id: self.product.id.clone(),
                    start_price: eur(1000),
                    min_increment: eur(100),
                    duration_secs,
                    extend_secs,
                    sudden_death,
                },
            )
            .await
            .unwrap()
    }

    async fn bid(&self, a: &AuctionView, buyer: &BuyerId, key: &str, amount: i64) -> BidOutcome {
        let request = BidRequest {
            buyer: buyer.clone(),
            bidder_name: format!("buyer {}", &buyer.as_str()[3..8]),
            auction: a.id.clone(),
            stream: Some(self.stream.clone()),
            amount: eur(amount),
            request_id: key.into(),
        };
        self.checkout.sale().place_bid(&request).await.unwrap()
    }

    async fn stock(&self) -> i64 {
        self.checkout
            .catalog()
            .product(&self.seller, &self.product.id)
            .await
            .unwrap()
            .stock
    }

    /// Brings the hammer down on `a` (its clock has run out) and returns the winner's order.
    async fn hammer(&self, a: &AuctionView) -> vitrine_core::OrderId {
        assert_eq!(self.checkout.sale().close_due_auctions().await.unwrap(), 1);
        let closed = self.checkout.sale().auction(&a.id).await.unwrap();
        closed.order_id.expect("a winner's order")
    }

    fn advance_secs(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

fn refused(outcome: &BidOutcome) -> Option<BidFailure> {
    match outcome {
        BidOutcome::Accepted(_) => None,
        BidOutcome::Refused { reason, .. } => Some(*reason),
    }
}

async fn the_highest_bid_wins_at_the_hammer_price_and_the_winner_pays(backend: Backend) {
    let s = sale(backend, 3).await;
    let a = s.start(60, 10, false).await;
    assert_eq!(s.stock().await, 2, "the auctioned unit left stock");
    assert_eq!(a.next_min_bid, eur(1000));
    let (ada, bo, cy) = (
        BuyerId::generate(),
        BuyerId::generate(),
        BuyerId::generate(),
    );
    assert_eq!(
        refused(&s.bid(&a, &ada, "a1", 900).await),
        Some(BidFailure::TooLow)
    );
    let led = s.bid(&a, &ada, "a2", 1000).await;
    let BidOutcome::Accepted(view) = &led else {
        panic!("{led:?}")
    };
    assert_eq!(
        (view.current_bid, view.next_min_bid, view.bid_count),
        (Some(eur(1000)), eur(1100), 1)
    );
    assert_eq!(
        refused(&s.bid(&a, &ada, "a3", 1100).await),
        Some(BidFailure::AlreadyHighest)
    );
    assert_eq!(
        refused(&s.bid(&a, &bo, "b1", 1050).await),
        Some(BidFailure::TooLow),
        "less than the increment over the highest bid"
    );
    assert_eq!(refused(&s.bid(&a, &bo, "b2", 1100).await), None);
    // A retry with the same key is answered alike; the key with another amount is refused.
    assert_eq!(refused(&s.bid(&a, &bo, "b2", 1100).await), None);
    assert_eq!(
        refused(&s.bid(&a, &bo, "b2", 1500).await),
        Some(BidFailure::Invalid)
    );
    assert_eq!(
        refused(&s.bid(&a, &ada, "a1", 900).await),
        Some(BidFailure::TooLow),
        "a refused bid's retry gets the same refusal"
    );
    // The clock runs out: a bid is refused before the hammer is even written.
    s.advance_secs(60);
    assert_eq!(
        refused(&s.bid(&a, &cy, "c1", 5000).await),
        Some(BidFailure::AuctionEnded)
    );
    assert_eq!(s.checkout.sale().close_due_auctions().await.unwrap(), 1);
    assert_eq!(
        s.checkout.sale().close_due_auctions().await.unwrap(),
        0,
        "once"
    );
    let ended = s.checkout.sale().auction(&a.id).await.unwrap();
    assert_eq!(ended.status, "ended");
    assert_eq!(ended.current_bid, Some(eur(1100)));
    let order_id = ended.order_id.clone().expect("the winner's order");
    let order = s
        .checkout
        .orders()
        .order_for_buyer(&bo, &order_id)
        .await
        .unwrap();
    assert_eq!(
        (order.status, order.total, order.quantity),
        (OrderStatus::Pending, eur(1100), 1)
    );
    // Only the winner pays it, once.
    assert!(matches!(
        s.checkout.sale().pay_order(&ada, &order_id, APPROVE).await,
        Err(CheckoutError::NotFound(_))
    ));
    let paid = s
        .checkout
        .sale()
        .pay_order(&bo, &order_id, APPROVE)
        .await
        .unwrap();
    let OrderResult::Created(paid_order) = &paid.result else {
        panic!("{paid:?}")
    };
    assert_eq!(
        (paid_order.status, paid.replayed),
        (OrderStatus::Paid, false)
    );
    let again = s
        .checkout
        .sale()
        .pay_order(&bo, &order_id, APPROVE)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.result, paid.result);
    assert_eq!(s.stock().await, 2, "the unit sold once, nothing else moved");
    assert!(s.checkout.orders().ledger_check().await.unwrap().is_empty());
    // The seller's systems heard all of it, once each, in the outbox.
    assert_eq!(s.checkout.webhooks().expand_pending().await.unwrap(), 6);
    let mut kinds: Vec<String> = s
        .checkout
        .webhooks()
        .deliveries(&s.seller, &s.endpoint, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.event_type.to_string())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "auction.bid",
            "auction.bid",
            "auction.ended",
            "auction.started",
            "order.created",
            "order.paid"
        ]
    );
}

async fn two_equal_bids_at_the_close_make_exactly_one_winner(backend: Backend) {
    let s = sale(backend, 1).await;
    let a = s.start(30, 10, true).await;
    // The last second: twelve bidders bid the same amount at once.
    s.clock.advance(Duration::from_millis(29_999));
    let bidders: Vec<BuyerId> = (0..12).map(|_| BuyerId::generate()).collect();
    let outcomes = join_all(bidders.iter().map(|b| s.bid(&a, b, "last", 1500))).await;
    let winners: Vec<&BuyerId> = bidders
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| refused(o).is_none())
        .map(|(b, _)| b)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter_map(refused)
            .all(|r| r == BidFailure::TooLow)
    );
    // Written together: fewer transactions than bids.
    let (batches, requests) = s.checkout.job_metrics().batches_of("bid");
    assert!(
        requests == 12 && batches < requests,
        "{requests} bids in {batches} batches"
    );
    let view = s.checkout.sale().auction(&a.id).await.unwrap();
    assert_eq!(view.ends_at, a.ends_at, "sudden death: no extension");
    s.clock.advance(Duration::from_millis(1));
    assert_eq!(s.checkout.sale().close_due_auctions().await.unwrap(), 1);
    let ended = s.checkout.sale().auction(&a.id).await.unwrap();
    let order = s
        .checkout
        .orders()
        .order_for_buyer(winners[0], ended.order_id.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(order.total, eur(1500));
}

async fn late_bids_move_the_clock_unless_sudden_death(backend: Backend) {
    let s = sale(backend, 2).await;
    let a = s.start(30, 10, false).await;
    let (ada, bo) = (BuyerId::generate(), BuyerId::generate());
    // Early: the clock stays.
    s.advance_secs(5);
    let BidOutcome::Accepted(v) = s.bid(&a, &ada, "a1", 1000).await else {
        panic!()
    };
    assert_eq!(v.ends_at, a.ends_at);
    // In the last ten seconds: back to ten seconds from the bid.
    s.advance_secs(20);
    let BidOutcome::Accepted(v) = s.bid(&a, &bo, "b1", 1100).await else {
        panic!()
    };
    assert_eq!(v.ends_at, a.ends_at - 5_000 + 10_000);
    // The original end passes; the auction is still open, and closes at its new end.
    s.advance_secs(5);
    assert_eq!(s.checkout.sale().close_due_auctions().await.unwrap(), 0);
    assert_eq!(refused(&s.bid(&a, &ada, "a2", 1200).await), None);
    s.advance_secs(10);
    assert_eq!(s.checkout.sale().close_due_auctions().await.unwrap(), 1);
    // Once a sudden-death auction on the same stream runs, late bids do not move it.
    let b = s.start(30, 10, true).await;
    s.advance_secs(25);
    let BidOutcome::Accepted(v) = s.bid(&b, &bo, "b2", 1000).await else {
        panic!()
    };
    assert_eq!(v.ends_at, b.ends_at);
}

async fn an_auction_nobody_bid_on_gives_its_unit_back(backend: Backend) {
    let s = sale(backend, 1).await;
    let a = s.start(10, 5, false).await;
    assert_eq!(s.stock().await, 0, "held by the auction");
    s.advance_secs(10);
    assert_eq!(s.checkout.sale().close_due_auctions().await.unwrap(), 1);
    let ended = s.checkout.sale().auction(&a.id).await.unwrap();
    assert_eq!((ended.status.as_str(), &ended.order_id), ("ended", &None));
    assert_eq!(s.stock().await, 1, "given back");
    assert!(
        s.checkout
            .sale()
            .open_auction(&s.stream)
            .await
            .unwrap()
            .is_none()
    );
}

async fn an_unpaid_winners_order_expires_and_restocks(backend: Backend) {
    let s = sale(backend, 1).await;
    let a = s.start(10, 5, false).await;
    let bo = BuyerId::generate();
    assert_eq!(refused(&s.bid(&a, &bo, "b1", 1000).await), None);
    s.advance_secs(10);
    let order_id = s.hammer(&a).await;
    assert_eq!(s.stock().await, 0);
    // Nobody pays within the reservation window (15 minutes by default).
    s.advance_secs(15 * 60 + 1);
    assert_eq!(s.checkout.payments().release_expired().await.unwrap(), 1);
    let order = s
        .checkout
        .orders()
        .order_for_buyer(&bo, &order_id)
        .await
        .unwrap();
    assert_eq!(
        (order.status, order.failure.as_deref()),
        (OrderStatus::Cancelled, Some("reservation_expired"))
    );
    assert_eq!(s.stock().await, 1, "the unit is for sale again");
    // Paying now is answered with why the order is gone, and charges nothing.
    let late = s
        .checkout
        .sale()
        .pay_order(&bo, &order_id, APPROVE)
        .await
        .unwrap();
    let OrderResult::Rejected(r) = late.result else {
        panic!("{late:?}")
    };
    assert_eq!(r.kind, RejectKind::PaymentTimeout);
}

async fn an_auction_is_started_only_on_the_pinned_product_with_stock(backend: Backend) {
    let s = sale(backend, 1).await;
    let other = s
        .checkout
        .catalog()
        .create_product(
            &s.seller,
            NewProduct {
                sku: "OTHER".into(),
                title: "Other".into(),
                description: String::new(),
                image_url: None,
                price: eur(500),
                stock: 5,
            },
        )
        .await
        .unwrap();
    let new = |product: &Product, currency: &str, duration_secs: u32| NewAuction {
        product_id: product.id.clone(),
        start_price: Money::new(1000, Currency::parse(currency).unwrap()).unwrap(),
        min_increment: Money::new(100, Currency::parse(currency).unwrap()).unwrap(),
        duration_secs,
        extend_secs: 10,
        sudden_death: false,
    };
    let start = |n: NewAuction| s.checkout.sale().start_auction(&s.seller, &s.stream, n);
    assert!(matches!(
        start(new(&other, "EUR", 30)).await,
        Err(CheckoutError::Conflict(_))
    ));
    assert!(matches!(
        start(new(&s.product, "USD", 30)).await,
        Err(CheckoutError::Invalid(_))
    ));
    assert!(matches!(
        start(new(&s.product, "EUR", 1)).await,
        Err(CheckoutError::Invalid(_))
    ));
    assert!(matches!(
        s.checkout
            .sale()
            .start_auction(&SellerId::generate(), &s.stream, new(&s.product, "EUR", 30))
            .await,
        Err(CheckoutError::NotFound(_))
    ));
    start(new(&s.product, "EUR", 30)).await.unwrap();
    assert!(matches!(
        start(new(&s.product, "EUR", 30)).await,
        Err(CheckoutError::Conflict(_))
    ));
    assert_eq!(s.stock().await, 0, "one unit taken, once");
    // Pinned on another stream too, with nothing left to auction.
    let elsewhere = StreamId::generate();
    let pin = NewPin {
        product_id: s.product.id.clone(),
        sale_price: None,
        per_buyer_limit: None,
        quantity_cap: None,
        ends_at: None,
        ends_at_iso: None,
    };
    s.checkout
        .catalog()
        .pin(&s.seller, &elsewhere, pin)
        .await
        .unwrap();
    let sold_out = s
        .checkout
        .sale()
        .start_auction(&s.seller, &elsewhere, new(&s.product, "EUR", 30))
        .await;
    assert!(
        matches!(&sold_out, Err(CheckoutError::Conflict(why)) if why.contains("sold out")),
        "{sold_out:?}"
    );
}

/// Two checkouts on one database (two nodes): bids written by either node lead in turn, both
/// nodes' closers race for the hammer, and the auction closes once with one winner's order.
async fn two_nodes_bid_and_bring_the_hammer_down_once(backend: Backend) {
    let s = sale(backend, 1).await;
    let (pool, _) = vitrine_checkout::db::connect(&s._db.url).await.unwrap();
    let other = Checkout::new(
        pool.clone(),
        Arc::new(vitrine_checkout::SandboxProvider::new(pool, Duration::ZERO)),
        Default::default(),
    )
    .with_clock(s.clock.clone());
    let a = s.start(30, 10, false).await;
    // Bidders on both nodes at once, each over the last: the amounts lead in some order, and
    // the auction ends at the highest.
    let bidders: Vec<BuyerId> = (0..8).map(|_| BuyerId::generate()).collect();
    let bids = bidders.iter().enumerate().map(|(i, b)| {
        let node = if i % 2 == 0 { &s.checkout } else { &other };
        let request = BidRequest {
            buyer: b.clone(),
            bidder_name: format!("b{i}"),
            auction: a.id.clone(),
            stream: None,
            amount: eur(1000 + 100 * i as i64),
            request_id: "k".into(),
        };
        async move { node.sale().place_bid(&request).await.unwrap() }
    });
    let outcomes = join_all(bids).await;
    assert!(
        refused(&outcomes[7]).is_none(),
        "the highest bid always leads"
    );
    s.advance_secs(40);
    let (here, there) = tokio::join!(
        s.checkout.sale().close_due_auctions(),
        other.sale().close_due_auctions()
    );
    assert_eq!(here.unwrap() + there.unwrap(), 1, "the hammer falls once");
    let ended = s.checkout.sale().auction(&a.id).await.unwrap();
    assert_eq!(ended.current_bid, Some(eur(1700)));
    let order = s
        .checkout
        .orders()
        .order_for_buyer(&bidders[7], ended.order_id.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(order.total, eur(1700));
    assert_eq!(s.stock().await, 0, "one unit, sold once");
}

/// The winner taps "Pay" on two devices at once: one request charges, the other is told a
/// payment is under way (or gets the paid order once it is stored); the processor sees one
/// charge and the ledger one sale.
async fn racing_payments_of_a_won_order_charge_once(backend: Backend) {
    let s = sale(backend, 1).await;
    let a = s.start(10, 0, false).await;
    let bo = BuyerId::generate();
    assert_eq!(refused(&s.bid(&a, &bo, "b1", 1000).await), None);
    s.advance_secs(10);
    let order_id = s.hammer(&a).await;
    let (one, two) = tokio::join!(
        s.checkout.sale().pay_order(&bo, &order_id, APPROVE),
        s.checkout.sale().pay_order(&bo, &order_id, APPROVE)
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    let charged: Vec<_> = [&one, &two].into_iter().filter(|p| !p.replayed).collect();
    assert_eq!(charged.len(), 1, "{one:?} {two:?}");
    let other = if one.replayed { &two } else { &one };
    match &other.result {
        OrderResult::Rejected(r) => assert_eq!(r.kind, RejectKind::RequestInProgress),
        created => assert_eq!(created, &charged[0].result),
    }
    let order = s
        .checkout
        .orders()
        .order_for_buyer(&bo, &order_id)
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert!(s.checkout.orders().ledger_check().await.unwrap().is_empty());
    let balance = s.checkout.orders().balances(&s.seller).await.unwrap();
    let fees = vitrine_checkout::fees::FeePolicy::default();
    assert_eq!(
        balance[0].available,
        1000 - fees.sale_fee(1000),
        "one sale posted"
    );
}
