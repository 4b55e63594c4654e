//! Two dispatchers over one database race for the same outbox: every message reaches the
//! receiver exactly once, with one attempt each in the log, on SQLite and PostgreSQL. The
//! messages ride on the stream of commerce facts: those a node wrote before it died are
//! delivered by another node's dispatcher, in the order they were written.

use axum::http::{HeaderMap, StatusCode};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vitrine_checkout::db::{Backend, connect, migrate};
use vitrine_checkout::testing::TestDatabase;
use vitrine_checkout::webhooks::dispatcher::{DispatchConfig, DispatchMetrics};
use vitrine_checkout::webhooks::schedule::RetrySchedule;
use vitrine_checkout::webhooks::sealing::SecretBox;
use vitrine_checkout::webhooks::{EndpointStatus, NewEndpoint, TargetPolicy};
use vitrine_checkout::{Checkout, NewOrder, NewProduct, OrderResult, Product, SandboxProvider};
use vitrine_core::time::{Clock, ManualClock};
use vitrine_core::{Currency, Money, SellerId, Timestamp};

/// A receiver on loopback that answers 200 and keeps every `webhook-id` it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let log = Arc::clone(&log);
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                log.lock().unwrap().push(id);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

vitrine_checkout::on_both_backends!(
    two_dispatchers_send_each_message_once,
    a_dead_nodes_messages_go_out_through_another_node_stamped_when_written,
    an_undecodable_fact_row_is_counted_and_set_aside,
    retries_and_disabling_follow_the_checkouts_clock,
);

/// A receiver on loopback that answers 503 to everything; how many posts it got.
async fn failing_receiver() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            count.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::SERVICE_UNAVAILABLE }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

/// The retry schedule and the disabling of an endpoint that keeps failing run on the
/// checkout's clock, so they are tested by moving it: a failed message is not tried again
/// before its delay, is tried once the clock passes it, and the endpoint is disabled on the
/// first failure after it has failed for longer than allowed.
async fn retries_and_disabling_follow_the_checkouts_clock(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let clock = Arc::new(ManualClock::now());
    let checkout = node(&pool, &SecretBox::ephemeral()).with_clock(clock.clone());
    let (url, hits) = failing_receiver().await;
    let (seller, endpoint, product) = seller_on(&checkout, url).await;
    let (buyer, _) = checkout.catalog().create_buyer("B").await.unwrap();
    let order = checkout
        .sale()
        .place_order(&buyer.id, "k", buy(&product))
        .await;
    assert!(matches!(order.unwrap().result, OrderResult::Created(_)));
    let secs = Duration::from_secs;
    let dispatcher = checkout
        .webhooks()
        .dispatcher(
            DispatchConfig {
                schedule: RetrySchedule::new(vec![secs(10), secs(60), secs(600)]),
                disable_after: secs(120),
                ..DispatchConfig::default()
            },
            DispatchMetrics::default(),
        )
        .unwrap();
    let start = clock.now_ms();
    let due_at = |after: i64| {
        let checkout = checkout.clone();
        let (seller, endpoint) = (seller.clone(), endpoint.clone());
        async move {
            let log = checkout
                .webhooks()
                .deliveries(&seller, &endpoint, 10)
                .await
                .unwrap();
            assert_eq!(log.len(), 2);
            for d in &log {
                assert_eq!(d.status, "pending", "{d:?}");
                assert_eq!(d.next_attempt_at, Some(Timestamp(start + after)), "{d:?}");
            }
        }
    };
    assert_eq!(
        dispatcher.round().await.unwrap(),
        2,
        "created and paid, both fail"
    );
    due_at(10_000).await;
    assert_eq!(
        dispatcher.round().await.unwrap(),
        0,
        "not due before its delay"
    );
    clock.advance(secs(9));
    assert_eq!(dispatcher.round().await.unwrap(), 0);
    clock.advance(secs(1));
    assert_eq!(
        dispatcher.round().await.unwrap(),
        2,
        "due once the delay passed"
    );
    due_at(10_000 + 60_000).await;
    clock.advance(secs(60));
    assert_eq!(
        dispatcher.round().await.unwrap(),
        2,
        "failing for 70 s of 120"
    );
    due_at(70_000 + 600_000).await;
    clock.advance(secs(600));
    assert_eq!(dispatcher.round().await.unwrap(), 2);
    let now_disabled = checkout
        .webhooks()
        .endpoint(&seller, &endpoint)
        .await
        .unwrap();
    assert_eq!(now_disabled.status, EndpointStatus::Disabled);
    let log = checkout
        .webhooks()
        .deliveries(&seller, &endpoint, 10)
        .await
        .unwrap();
    assert!(log.iter().all(|d| d.status == "failed"), "{log:?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        8,
        "four attempts of each message"
    );
    clock.advance(secs(3600));
    assert_eq!(
        dispatcher.round().await.unwrap(),
        0,
        "nothing after the disabling"
    );
}

/// A sale's seller with an endpoint on `url` taking every event, and a product on sale.
async fn seller_on(checkout: &Checkout, url: String) -> (SellerId, String, Product) {
    let seller = SellerId::generate();
    let (endpoint, _) = checkout
        .webhooks()
        .create_endpoint(
            &seller,
            NewEndpoint {
                url,
                description: String::new(),
                event_types: vec![],
            },
        )
        .await
        .unwrap();
    let product = checkout
        .catalog()
        .create_product(
            &seller,
            NewProduct {
                sku: "TEE".into(),
                title: "Tee".into(),
                description: String::new(),
                image_url: None,
                price: Money::new(1500, Currency::parse("EUR").unwrap()).unwrap(),
                stock: 1000,
            },
        )
        .await
        .unwrap();
    (seller, endpoint.id.to_string(), product)
}

fn buy(product: &Product) -> NewOrder {
    vitrine_checkout::testing::one_unit_of(&product.id)
}

/// A fresh, migrated database.
async fn database(backend: Backend) -> (sqlx::AnyPool, TestDatabase) {
    let db = TestDatabase::create(backend).await.unwrap();
    let (pool, backend) = connect(&db.url).await.unwrap();
    migrate(&pool, backend).await.unwrap();
    (pool, db)
}

/// A node on `pool`, sealing webhook secrets with the deployment's `key`.
fn node(pool: &sqlx::AnyPool, key: &SecretBox) -> Checkout {
    let payments = Arc::new(SandboxProvider::new(pool.clone(), Duration::ZERO));
    Checkout::new(pool.clone(), payments, Default::default()).with_webhooks(
        key.clone(),
        TargetPolicy {
            allow_private: true,
        },
    )
}

/// Node A sells and dies before any dispatcher ran: its messages are in its fact rows, and
/// node B's dispatcher sends each once, each stamped with the time its transaction wrote it
/// (what receivers order by), not the time it was sent. The endpoint's secret is sealed with
/// the deployment's key, which every node shares.
async fn a_dead_nodes_messages_go_out_through_another_node_stamped_when_written(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let key = SecretBox::ephemeral();
    let clock = Arc::new(ManualClock::now());
    let a = node(&pool, &key).with_clock(clock.clone());
    let (url, seen) = receiver().await;
    let (seller, endpoint, product) = seller_on(&a, url).await;
    let start = clock.now_ms();
    let mut placed = Vec::new();
    for n in 0..5 {
        clock.advance(Duration::from_secs(1));
        let (buyer, _) = a.catalog().create_buyer(&format!("B{n}")).await.unwrap();
        let order = a
            .sale()
            .place_order(&buyer.id, &format!("k{n}"), buy(&product))
            .await;
        let OrderResult::Created(order) = order.unwrap().result else {
            panic!("refused")
        };
        placed.push(order.id.to_string());
    }
    drop(a);
    let b = node(&pool, &key);
    assert_eq!(
        b.webhooks()
            .deliveries(&seller, &endpoint, 100)
            .await
            .unwrap()
            .len(),
        0
    );
    let dispatcher = b
        .webhooks()
        .dispatcher(DispatchConfig::default(), DispatchMetrics::default())
        .unwrap();
    assert_eq!(dispatcher.round().await.unwrap(), 10);
    assert_eq!(dispatcher.round().await.unwrap(), 0, "each message once");
    assert_eq!(seen.lock().unwrap().len(), 10);
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT event_type, payload FROM webhook_events")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut stamped = Vec::new();
    for (kind, payload) in &events {
        let body: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(body["type"], kind.as_str());
        let at = Timestamp::parse(body["timestamp"].as_str().unwrap()).unwrap();
        stamped.push((
            at.millis(),
            body["data"]["id"].as_str().unwrap().to_owned(),
            kind.clone(),
        ));
    }
    stamped.sort();
    let mut expected = Vec::new();
    for (n, id) in placed.iter().enumerate() {
        let at = start + 1000 * (n as i64 + 1);
        expected.push((at, id.clone(), "order.created".to_owned()));
        expected.push((at, id.clone(), "order.paid".to_owned()));
    }
    assert_eq!(stamped, expected);
}

/// A fact row whose messages do not decode (a bug, or a newer writer) is counted and set aside
/// (kept, not tried again); the rows after it still go out.
async fn an_undecodable_fact_row_is_counted_and_set_aside(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let checkout = node(&pool, &SecretBox::ephemeral());
    let (url, seen) = receiver().await;
    let (_seller, _endpoint, product) = seller_on(&checkout, url).await;
    sqlx::query(
        "INSERT INTO commerce_facts (origin, seq, events, created_at, hooks, hooks_pending) \
         VALUES ('broken', 1, '[]', 1, '{not json', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (buyer, _) = checkout.catalog().create_buyer("B").await.unwrap();
    let order = checkout
        .sale()
        .place_order(&buyer.id, "k", buy(&product))
        .await;
    assert!(matches!(order.unwrap().result, OrderResult::Created(_)));
    let dispatcher = checkout
        .webhooks()
        .dispatcher(DispatchConfig::default(), DispatchMetrics::default())
        .unwrap();
    assert_eq!(dispatcher.round().await.unwrap(), 2, "created and paid");
    assert_eq!(checkout.job_metrics().row_errors_of("webhooks"), 1);
    assert_eq!(dispatcher.round().await.unwrap(), 0);
    assert_eq!(
        checkout.job_metrics().row_errors_of("webhooks"),
        1,
        "not tried again"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    let kept: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM commerce_facts WHERE origin = 'broken' AND hooks_pending = 2",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, 1, "set aside, not dropped");
}

async fn two_dispatchers_send_each_message_once(backend: Backend) {
    let (pool, _db) = database(backend).await;
    let checkout = node(&pool, &SecretBox::ephemeral());
    let (url, seen) = receiver().await;
    let (seller, endpoint, product) = seller_on(&checkout, url).await;
    for n in 0..20 {
        let (buyer, _) = checkout
            .catalog()
            .create_buyer(&format!("B{n}"))
            .await
            .unwrap();
        let placed = checkout
            .sale()
            .place_order(&buyer.id, &format!("k{n}"), buy(&product))
            .await;
        assert!(matches!(placed.unwrap().result, OrderResult::Created(_)));
    }

    // Small batches, so the two take turns over many rounds and collide on the same rows.
    let config = DispatchConfig {
        concurrency: 2,
        ..DispatchConfig::default()
    };
    let one = checkout
        .webhooks()
        .dispatcher(config.clone(), DispatchMetrics::default())
        .unwrap();
    let two = checkout
        .webhooks()
        .dispatcher(config, DispatchMetrics::default())
        .unwrap();
    let mut rounds = 0;
    loop {
        let (a, b) = tokio::join!(one.round(), two.round());
        if a.unwrap() + b.unwrap() == 0 {
            break;
        }
        rounds += 1;
        assert!(rounds < 1000, "the outbox never drained");
    }

    let log = checkout
        .webhooks()
        .deliveries(&seller, &endpoint, 100)
        .await
        .unwrap();
    // Every order was created and paid: two messages each.
    assert_eq!(log.len(), 40);
    assert!(
        log.iter()
            .all(|d| d.status == "succeeded" && d.attempts == 1),
        "{log:?}"
    );
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), unique.len(), "a message was sent twice");
    let logged: HashSet<&String> = log.iter().map(|d| &d.event_id).collect();
    assert_eq!(unique, logged, "every logged message arrived");
}
