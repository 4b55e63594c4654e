//! The stream of commerce facts against real databases: the rooms hear what committed, in the
//! order it committed, once, from the node that wrote it; nothing that rolled back.

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vitrine_checkout::db::{Backend, connect, migrate};
use vitrine_checkout::testing::{Heard, TestDatabase};
use vitrine_checkout::{
    Checkout, CheckoutError, NewOrder, NewPin, NewProduct, OrderResult, SandboxProvider,
};
use vitrine_core::{BuyerId, CommerceEvent, Currency, Money, PinId, ProductId, SellerId, StreamId};

/// A node: a checkout on the shared database with its pump feeding `heard`.
struct Node {
    checkout: Checkout,
    heard: Arc<Heard>,
    pump: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Node {
    fn on(pool: sqlx::AnyPool) -> Self {
        let payments = Arc::new(SandboxProvider::new(pool.clone(), Duration::ZERO));
        let checkout = Checkout::new(pool, payments, Default::default());
        let heard = Arc::new(Heard::default());
        let pump = CancellationToken::new();
        let handle = checkout.spawn_fact_pump(heard.clone(), pump.clone());
        Self {
            checkout,
            heard,
            pump,
            handle,
        }
    }

    async fn heard(&self) -> Vec<CommerceEvent> {
        self.checkout.facts().flush().await;
        self.heard.all()
    }
}

async fn database(backend: Backend) -> (sqlx::AnyPool, TestDatabase) {
    let db = TestDatabase::create(backend).await.unwrap();
    let (pool, backend) = connect(&db.url).await.unwrap();
    migrate(&pool, backend).await.unwrap();
    (pool, db)
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::parse("USD").unwrap()).unwrap()
}

async fn product(checkout: &Checkout, seller: &SellerId, stock: i64) -> ProductId {
    let new = NewProduct {
        sku: "MUG-1".into(),
        title: "Mug".into(),
        description: String::new(),
        image_url: None,
        price: usd(1200),
        stock,
    };
    checkout
        .catalog()
        .create_product(seller, new)
        .await
        .unwrap()
        .id
}

fn pin_of(product: &ProductId, cap: Option<u32>) -> NewPin {
    NewPin {
        product_id: product.clone(),
        sale_price: None,
        per_buyer_limit: None,
        quantity_cap: cap,
        ends_at: None,
        ends_at_iso: None,
    }
}

fn buy(stream: &StreamId, product: &ProductId) -> NewOrder {
    NewOrder {
        stream_id: Some(stream.clone()),
        ..vitrine_checkout::testing::one_unit_of(product)
    }
}

/// What a room heard its pin has left, in the order heard.
fn availability(heard: &[CommerceEvent]) -> Vec<i64> {
    heard
        .iter()
        .filter_map(|e| match e {
            CommerceEvent::Stock { available, .. } | CommerceEvent::Purchase { available, .. } => {
                Some(*available)
            }
            _ => None,
        })
        .collect()
}

vitrine_checkout::on_both_backends!(
    a_sale_is_heard_in_commit_order_once,
    what_rolls_back_is_never_heard,
    an_order_without_a_pin_is_heard_by_every_room_of_the_product,
    each_node_announces_what_it_wrote,
    the_pump_holds_the_rooms_only_while_it_runs,
);

/// Sixty buyers race for a pin's forty units: the room hears what the pin has left only going
/// down (commit order, never an older count after a newer one), ending at zero, and each sale
/// once (forty paid orders, forty units in the purchases).
async fn a_sale_is_heard_in_commit_order_once(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let node = Node::on(pool);
    let seller = SellerId::generate();
    let stream = StreamId::generate();
    let p = product(&node.checkout, &seller, 500).await;
    node.checkout
        .catalog()
        .pin(&seller, &stream, pin_of(&p, Some(40)))
        .await
        .unwrap();
    let mut buyers = tokio::task::JoinSet::new();
    for i in 0..60 {
        let (c, stream, p) = (node.checkout.clone(), stream.clone(), p.clone());
        buyers.spawn(async move {
            c.sale()
                .place_order(&BuyerId::generate(), &format!("k{i}"), buy(&stream, &p))
                .await
                .unwrap()
                .result
        });
    }
    let mut paid = 0;
    while let Some(done) = buyers.join_next().await {
        paid += usize::from(matches!(done.unwrap(), OrderResult::Created(_)));
    }
    assert_eq!(paid, 40);
    let heard = node.heard().await;
    assert!(
        matches!(&heard[0], CommerceEvent::Pin { pin: Some(_), .. }),
        "the pin first: {:?}",
        heard[0]
    );
    let left = availability(&heard);
    assert!(
        left.windows(2).all(|w| w[0] >= w[1]),
        "what is left only goes down: {left:?}"
    );
    assert_eq!(left.last(), Some(&0));
    let mut orders = std::collections::HashSet::new();
    let mut units = 0;
    for e in &heard {
        match e {
            CommerceEvent::Order { order, .. } => {
                assert_eq!(order.status, "paid");
                assert!(orders.insert(order.id.clone()), "each order heard once");
            }
            CommerceEvent::Purchase { quantity, .. } => units += quantity,
            _ => {}
        }
    }
    assert_eq!((orders.len(), units), (40, 40));
}

/// A refused change writes nothing and the room hears nothing of it: unpinning a pin that is
/// not active, buying what is sold out. What commits is heard.
async fn what_rolls_back_is_never_heard(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let node = Node::on(pool);
    let seller = SellerId::generate();
    let stream = StreamId::generate();
    let p = product(&node.checkout, &seller, 0).await;
    let stale = node
        .checkout
        .catalog()
        .unpin(&stream, &PinId::generate())
        .await;
    assert!(
        matches!(stale, Err(CheckoutError::NotFound(_))),
        "{stale:?}"
    );
    let pin = node
        .checkout
        .catalog()
        .pin(&seller, &stream, pin_of(&p, None))
        .await
        .unwrap();
    let sold_out = node
        .checkout
        .sale()
        .place_order(&BuyerId::generate(), "k", buy(&stream, &p))
        .await
        .unwrap()
        .result;
    assert!(matches!(sold_out, OrderResult::Rejected(_)), "{sold_out:?}");
    node.checkout
        .catalog()
        .unpin(&stream, &pin.id)
        .await
        .unwrap();
    let heard = node.heard().await;
    assert!(
        matches!(
            heard.as_slice(),
            [
                CommerceEvent::Pin { pin: Some(_), .. },
                CommerceEvent::Pin { pin: None, .. }
            ]
        ),
        "{heard:?}"
    );
}

/// An order placed through the API, not through a stream, still moves what the rooms that
/// show the product have left: each hears it, capped by its own pin.
async fn an_order_without_a_pin_is_heard_by_every_room_of_the_product(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let node = Node::on(pool);
    let seller = SellerId::generate();
    let p = product(&node.checkout, &seller, 5).await;
    let (open, capped) = (StreamId::generate(), StreamId::generate());
    node.checkout
        .catalog()
        .pin(&seller, &open, pin_of(&p, None))
        .await
        .unwrap();
    node.checkout
        .catalog()
        .pin(&seller, &capped, pin_of(&p, Some(2)))
        .await
        .unwrap();
    let api = NewOrder {
        stream_id: None,
        ..buy(&open, &p)
    };
    let placed = node
        .checkout
        .sale()
        .place_order(&BuyerId::generate(), "k", api)
        .await
        .unwrap()
        .result;
    assert!(matches!(placed, OrderResult::Created(_)), "{placed:?}");
    let stock: Vec<(StreamId, i64)> = node
        .heard()
        .await
        .into_iter()
        .filter_map(|e| match e {
            CommerceEvent::Stock {
                stream, available, ..
            } => Some((stream, available)),
            _ => None,
        })
        .collect();
    assert_eq!(stock.len(), 2, "{stock:?}");
    assert!(stock.contains(&(open, 4)), "{stock:?}");
    assert!(stock.contains(&(capped, 2)), "{stock:?}");
}

/// Two nodes on one database: each room hears a change once, from the node that made it (the
/// chat spreads it to the other nodes' members).
async fn each_node_announces_what_it_wrote(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let (a, b) = (Node::on(pool.clone()), Node::on(pool));
    let seller = SellerId::generate();
    let p = product(&a.checkout, &seller, 5).await;
    let (one, two) = (StreamId::generate(), StreamId::generate());
    a.checkout
        .catalog()
        .pin(&seller, &one, pin_of(&p, None))
        .await
        .unwrap();
    b.checkout
        .catalog()
        .pin(&seller, &two, pin_of(&p, None))
        .await
        .unwrap();
    let streams = |heard: Vec<CommerceEvent>| -> Vec<StreamId> {
        heard
            .into_iter()
            .filter_map(|e| match e {
                CommerceEvent::Pin { stream, .. } => Some(stream),
                _ => None,
            })
            .collect()
    };
    assert_eq!(streams(a.heard().await), vec![one]);
    assert_eq!(streams(b.heard().await), vec![two]);
}

/// Checkout holds no reference to the rooms: once the pump stops, the rooms are held only by
/// whoever made them (no cycle rooms -> checkout -> rooms keeps either alive).
async fn the_pump_holds_the_rooms_only_while_it_runs(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let node = Node::on(pool);
    assert_eq!(Arc::strong_count(&node.heard), 2, "ours and the pump's");
    node.pump.cancel();
    node.handle.await.unwrap();
    assert_eq!(Arc::strong_count(&node.heard), 1);
    // Checkout still works, and writes its facts, with nobody listening.
    let seller = SellerId::generate();
    let p = product(&node.checkout, &seller, 1).await;
    node.checkout
        .catalog()
        .pin(&seller, &StreamId::generate(), pin_of(&p, None))
        .await
        .unwrap();
    assert!(node.heard.all().is_empty());
}
