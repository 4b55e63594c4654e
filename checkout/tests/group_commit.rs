//! The order path's group commit on SQLite and PostgreSQL: a burst of buyers of one flash sale,
//! some paying with declined cards, some buying two, some tapping twice with one key, some
//! through a sale that caps the units, is written in batches (several buyers to a
//! transaction) and still sells exactly what there is, gives the declined units back, answers
//! both taps alike and leaves the ledger balanced.

use futures::future::join_all;
use std::collections::HashMap;
use std::time::Duration;
use vitrine_checkout::db::Backend;
use vitrine_checkout::orders::PaymentDetails;
use vitrine_checkout::testing::fresh_checkout;
use vitrine_checkout::{
    Checkout, NewOrder, NewPin, NewProduct, OrderResult, OrderStatus, Product, RejectKind,
};
use vitrine_core::{BuyerId, Currency, Money, SellerId, StreamId};

const APPROVE: &str = "4242424242424242";
const DECLINE: &str = "4000000000000002";

/// A seller's product of `stock` units at 15.00 EUR, pinned on a new stream as a sale at
/// `sale_price` (if any) with the given per-buyer limit and cap.
async fn flash_sale(
    checkout: &Checkout,
    stock: i64,
    sale_price: Option<Money>,
    per_buyer_limit: Option<u32>,
    quantity_cap: Option<u32>,
) -> (SellerId, Product, StreamId) {
    let seller = SellerId::generate();
    let new = NewProduct {
        sku: "MUG".into(),
        title: "Mug".into(),
        description: String::new(),
        image_url: None,
        price: eur(1500),
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
        sale_price,
        per_buyer_limit,
        quantity_cap,
        ends_at: None,
        ends_at_iso: None,
    };
    checkout.catalog().pin(&seller, &stream, pin).await.unwrap();
    (seller, product, stream)
}

/// `quantity` units through the stream's sale, paid with `card`.
fn through(stream: &StreamId, product: &Product, quantity: u32, card: &str) -> NewOrder {
    NewOrder {
        product_id: product.id.clone(),
        quantity,
        pin_id: None,
        stream_id: Some(stream.clone()),
        currency: None,
        payment: PaymentDetails {
            card_number: card.into(),
        },
        source: Default::default(),
        media_ms: None,
    }
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
}

vitrine_checkout::on_both_backends!(
    a_burst_is_written_in_batches_and_sells_exactly_the_stock,
    one_buyers_requests_in_one_batch_are_held_to_the_per_buyer_limit,
);

async fn one_buyers_requests_in_one_batch_are_held_to_the_per_buyer_limit(backend: Backend) {
    let (checkout, _db) = fresh_checkout(backend, Duration::from_millis(5))
        .await
        .unwrap();
    let (seller, product, stream) = flash_sale(&checkout, 50, None, Some(2), None).await;
    // Two buyers, each sending eight requests of one unit with eight keys at once: whatever
    // batches they fall into, each gets exactly two.
    let buyers = [BuyerId::generate(), BuyerId::generate()];
    let answers = join_all((0..16).map(|n| {
        let checkout = &checkout;
        let buyer = &buyers[n % 2];
        let new = through(&stream, &product, 1, APPROVE);
        async move {
            let placed = checkout
                .sale()
                .place_order(buyer, &format!("cap-{n}"), new)
                .await
                .unwrap();
            (n % 2, placed.result)
        }
    }))
    .await;
    for who in 0..2 {
        let mine: Vec<_> = answers.iter().filter(|(b, _)| *b == who).collect();
        let bought = mine
            .iter()
            .filter(|(_, r)| matches!(r, OrderResult::Created(_)))
            .count();
        assert_eq!(bought, 2, "buyer {who}");
        for (_, r) in &mine {
            if let OrderResult::Rejected(r) = r {
                assert_eq!(r.kind, RejectKind::LimitExceeded);
            }
        }
    }
    let left = checkout
        .catalog()
        .product(&seller, &product.id)
        .await
        .unwrap()
        .stock;
    assert_eq!(left, 46);
}

async fn a_burst_is_written_in_batches_and_sells_exactly_the_stock(backend: Backend) {
    let (checkout, _db) = fresh_checkout(backend, Duration::from_millis(5))
        .await
        .unwrap();
    let (seller, product, stream) =
        flash_sale(&checkout, 100, Some(eur(1000)), Some(2), Some(60)).await;
    // 80 buyers want up to 108 units of a sale capped at 60: every third pays with a
    // declined card, every fourth buys two, every fifth taps twice.
    let requests: Vec<(usize, BuyerId, u32, &str)> = (0..80)
        .flat_map(|i| {
            let buyer = BuyerId::generate();
            let quantity = if i % 4 == 0 { 2 } else { 1 };
            let card = if i % 3 == 0 { DECLINE } else { APPROVE };
            let taps = if i % 5 == 0 { 2 } else { 1 };
            (0..taps).map(move |_| (i, buyer.clone(), quantity, card))
        })
        .collect();
    let answers = join_all(requests.iter().map(|(i, buyer, quantity, card)| {
        let checkout = &checkout;
        let new = through(&stream, &product, *quantity, card);
        async move {
            let placed = checkout
                .sale()
                .place_order(buyer, &format!("buy-{i}"), new)
                .await
                .unwrap();
            (*i, placed.result)
        }
    }))
    .await;

    let mut by_buyer: HashMap<usize, Vec<OrderResult>> = HashMap::new();
    for (i, result) in answers {
        by_buyer.entry(i).or_default().push(result);
    }
    let (mut units_paid, mut paid_total) = (0, 0);
    for (i, results) in &by_buyer {
        assert!(
            results.windows(2).all(|w| w[0] == w[1]),
            "buyer {i}: taps disagree"
        );
        match &results[0] {
            OrderResult::Created(order) => {
                assert_ne!(i % 3, 0, "buyer {i} paid with a declined card");
                assert_eq!(order.status, OrderStatus::Paid);
                units_paid += i64::from(order.quantity);
                paid_total += order.total.amount;
            }
            OrderResult::Rejected(r) if i % 3 == 0 => {
                assert!(
                    matches!(r.kind, RejectKind::PaymentDeclined | RejectKind::SoldOut),
                    "buyer {i}: {r:?}"
                );
            }
            OrderResult::Rejected(r) => assert_eq!(r.kind, RejectKind::SoldOut, "buyer {i}"),
        }
    }
    // Never more than the cap, and what was paid is what left the shelf; the declined units
    // came back: buyers after the burst get exactly the rest of the cap.
    assert!(units_paid <= 60, "{units_paid} units sold of a cap of 60");
    let product_now = checkout
        .catalog()
        .product(&seller, &product.id)
        .await
        .unwrap();
    assert_eq!(product_now.stock, 100 - units_paid);
    let mut late = 0;
    loop {
        let new = through(&stream, &product, 1, APPROVE);
        let placed = checkout
            .sale()
            .place_order(&BuyerId::generate(), "late", new)
            .await
            .unwrap();
        match placed.result {
            OrderResult::Created(o) => paid_total += o.total.amount,
            OrderResult::Rejected(r) => {
                assert_eq!(r.kind, RejectKind::SoldOut);
                break;
            }
        }
        late += 1;
        assert!(late <= 60, "the cap never ran out");
    }
    assert_eq!(units_paid + late, 60);
    let product_now = checkout
        .catalog()
        .product(&seller, &product.id)
        .await
        .unwrap();
    assert_eq!(product_now.stock, 40);
    let (pin, _) = checkout
        .catalog()
        .active_pin(&stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pin.remaining, Some(0));
    let orders = checkout.orders().orders_of_seller(&seller).await.unwrap();
    assert!(orders.iter().all(|o| o.status != OrderStatus::Pending));
    assert_eq!(
        orders
            .iter()
            .filter(|o| o.status == OrderStatus::Paid)
            .map(|o| i64::from(o.quantity))
            .sum::<i64>(),
        60
    );
    // The ledger: every sale posted once, balanced, the balance the sales less their fees.
    assert!(checkout.orders().ledger_check().await.unwrap().is_empty());
    let fees = vitrine_checkout::fees::FeePolicy::default();
    let net: i64 = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Paid)
        .map(|o| o.total.amount - fees.sale_fee(o.total.amount))
        .sum();
    assert_eq!(paid_total, 60 * 1000);
    let balance = checkout.orders().balances(&seller).await.unwrap();
    assert_eq!(balance[0].available, net);
    // And it was group commit: more requests than transactions at both steps.
    for step in ["reserve", "settle"] {
        let (batches, requests) = checkout.job_metrics().batches_of(step);
        assert!(
            requests > batches,
            "{step}: {requests} requests in {batches} batches"
        );
    }
}
