//! Two dispatchers over one database race for the same outbox: every message reaches the
//! receiver exactly once, with one attempt each in the log, on SQLite and PostgreSQL.

use axum::http::HeaderMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vitrine_checkout::db::Backend;
use vitrine_checkout::orders::PaymentDetails;
use vitrine_checkout::testing::fresh_checkout;
use vitrine_checkout::webhooks::dispatcher::{DispatchConfig, DispatchMetrics};
use vitrine_checkout::webhooks::sealing::SecretBox;
use vitrine_checkout::webhooks::{NewEndpoint, TargetPolicy};
use vitrine_checkout::{NewOrder, NewProduct, OrderResult};
use vitrine_core::{Currency, Money, SellerId};

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

vitrine_checkout::on_both_backends!(two_dispatchers_send_each_message_once);

async fn two_dispatchers_send_each_message_once(backend: Backend) {
    let (checkout, _db) = fresh_checkout(backend, Duration::from_millis(5))
        .await
        .unwrap();
    let checkout = checkout.with_webhooks(
        SecretBox::ephemeral(),
        TargetPolicy {
            allow_private: true,
        },
    );
    let seller = SellerId::generate();
    let (url, seen) = receiver().await;
    let (endpoint, _) = checkout
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
    for n in 0..20 {
        let (buyer, _) = checkout.create_buyer(&format!("B{n}")).await.unwrap();
        let new = NewOrder {
            product_id: product.id.clone(),
            quantity: 1,
            pin_id: None,
            stream_id: None,
            currency: None,
            payment: PaymentDetails {
                card_number: "4242424242424242".into(),
            },
            source: Default::default(),
            media_ms: None,
        };
        let placed = checkout.place_order(&buyer.id, &format!("k{n}"), new).await;
        assert!(matches!(placed.unwrap().result, OrderResult::Created(_)));
    }

    // Small batches, so the two take turns over many rounds and collide on the same rows.
    let config = DispatchConfig {
        concurrency: 2,
        ..DispatchConfig::default()
    };
    let one = checkout
        .webhook_dispatcher(config.clone(), DispatchMetrics::default())
        .unwrap();
    let two = checkout
        .webhook_dispatcher(config, DispatchMetrics::default())
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
        .deliveries(&seller, &endpoint.id, 100)
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
