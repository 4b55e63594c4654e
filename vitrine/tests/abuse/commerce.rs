//! Attacks on the commerce surface: card data kept in a form that can be brute-forced, an
//! idempotency key held hostage by a provider outage, stock arithmetic that panics, product
//! images that point anywhere, exchange rates that are missing or stale, and a flash sale that
//! outlives its stream.

use crate::support::{ServerOptions, TestServer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use vitrine_checkout::CheckoutConfig;
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::TestDatabase;

const CARD: &str = "4242424242424242";

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn product(server: &TestServer, seller: &str, sku: &str, stock: i64) -> String {
    let p = server
        .product(
            seller,
            json!({ "sku": sku, "title": "Red jacket",
                    "price": { "amount": 4900, "currency": "USD" }, "stock": stock }),
        )
        .await;
    p["id"].as_str().unwrap().to_owned()
}

/// A flash sale on `stream`: a sneaker at 49 USD instead of 99, one per buyer, 50 in all;
/// returns the product's id.
pub(crate) async fn flash_sale(server: &TestServer, seller: &str, stream: &str) -> String {
    let product = server
        .product(
            seller,
            json!({ "sku": "SNK", "title": "Sneaker", "stock": 100,
                    "price": { "amount": 9900, "currency": "USD" } }),
        )
        .await;
    let pid = product["id"].as_str().unwrap().to_owned();
    let (status, pin) = server
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/streams/{stream}/pins"),
            seller,
            None,
            Some(
                json!({ "product_id": pid, "per_buyer_limit": 1, "quantity_cap": 50,
                         "sale_price": { "amount": 4900, "currency": "USD" } }),
            ),
        )
        .await;
    assert_eq!(status, 201, "{pin}");
    pid
}

fn buy(product: &str) -> Value {
    json!({ "product_id": product, "quantity": 1, "payment": { "card_number": CARD } })
}

/// POSTs an order as `buyer` under the idempotency key `key`: the status and the answer.
async fn place(server: &TestServer, buyer: &str, key: &str, order: Value) -> (u16, Value) {
    let path = "/api/v1/orders";
    server
        .call(reqwest::Method::POST, path, buyer, Some(key), Some(order))
        .await
}

/// POSTs a new product as `seller`: the status and the answer.
async fn create_product(server: &TestServer, seller: &str, new: Value) -> (u16, Value) {
    let path = "/api/v1/products";
    server
        .call(reqwest::Method::POST, path, seller, None, Some(new))
        .await
}

/// GETs the product `id` as its seller: the status and the answer.
async fn read_product(server: &TestServer, seller: &str, id: &str) -> (u16, Value) {
    let path = format!("/api/v1/products/{id}");
    server
        .call(reqwest::Method::GET, &path, seller, None, None)
        .await
}

async fn stored_request_hash(server: &TestServer, key: &str) -> String {
    let pool = server.running.as_ref().unwrap().state.store.pool().clone();
    sqlx::query_scalar::<_, String>("SELECT request_hash FROM idempotency_keys WHERE idem_key = $1")
        .bind(key)
        .fetch_one(&pool)
        .await
        .unwrap()
}

/// Item 6: the idempotency fingerprint of a card was an unsalted SHA-256 (the 16-digit space
/// of a BIN is searched in minutes). Two servers with different secrets, one database, the
/// same request: neither stored hash is the unkeyed one, and they differ.
#[tokio::test]
async fn card_fingerprints_are_keyed_with_a_server_secret() {
    let db = Arc::new(TestDatabase::create(Backend::Sqlite).await.unwrap());
    let options = ServerOptions {
        database: Some(Arc::clone(&db)),
        ..Default::default()
    };
    let a = TestServer::start_with(options.clone()).await;
    let b = TestServer::start_with(options).await;
    let seller = a.seller("Ann").await;
    let product = product(&a, &seller, "JKT", 10).await;
    let buyer = a.buyer("Bob").await;
    for (server, key) in [(&a, "on-a"), (&b, "on-b")] {
        let (status, order) = place(server, &buyer, key, buy(&product)).await;
        assert_eq!(status, 201, "{order}");
    }
    let unkeyed = sha256_hex(&format!("{product}\n1\n\n\n{}", sha256_hex(CARD)));
    let (on_a, on_b) = (
        stored_request_hash(&a, "on-a").await,
        stored_request_hash(&b, "on-b").await,
    );
    assert_ne!(
        on_a, unkeyed,
        "the stored fingerprint is the unkeyed SHA-256 of the card"
    );
    assert_ne!(
        on_a, on_b,
        "two servers with different secrets stored the same fingerprint"
    );
    a.stop().await;
    b.stop().await;
}

/// Item 10: a provider outage left the key claimed without a result, so every retry with the
/// same key answered 409 request-in-progress until the reservation expired. Only completed
/// results are replayed: the retry after the outage goes through, and charges once.
#[tokio::test]
async fn a_provider_outage_does_not_hold_the_idempotency_key() {
    let server = TestServer::with_checkout(CheckoutConfig {
        payment_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let seller = server.seller("Ann").await;
    let product = product(&server, &seller, "JKT", 5).await;
    let buyer = server.buyer("Bob").await;
    // The sandbox processor's books (a file of their own on SQLite).
    let pool = server
        .running
        .as_ref()
        .unwrap()
        .state
        .sandbox
        .pool()
        .clone();
    // The processor goes away: its records cannot be reached.
    sqlx::query("ALTER TABLE sandbox_payments RENAME TO sandbox_payments_away")
        .execute(&pool)
        .await
        .unwrap();
    let (status, problem) = place(&server, &buyer, "k1", buy(&product)).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(
        problem["type"],
        "/docs/problems/payment-provider-unavailable"
    );
    sqlx::query("ALTER TABLE sandbox_payments_away RENAME TO sandbox_payments")
        .execute(&pool)
        .await
        .unwrap();
    let (status, order) = place(&server, &buyer, "k1", buy(&product)).await;
    assert_eq!(status, 201, "the retry after the outage: {order}");
    assert_eq!(order["status"], "paid");
    let charges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sandbox_payments")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(charges, 1, "one charge for one order");
    let (_, list) = server
        .call(reqwest::Method::GET, "/api/v1/orders", &buyer, None, None)
        .await;
    assert_eq!(list["orders"].as_array().unwrap().len(), 1, "{list}");
    let (_, stock) = read_product(&server, &seller, &product).await;
    assert_eq!(stock["stock"], 4, "one unit sold, none left reserved");
    server.stop().await;
}

/// Low: `stock_delta` of i64::MIN made `abs()` overflow (a panic in debug builds).
#[tokio::test]
async fn a_stock_delta_that_overflows_is_a_400_problem() {
    let server = TestServer::start().await;
    let seller = server.seller("Ann").await;
    let product = product(&server, &seller, "JKT", 5).await;
    for delta in [i64::MIN, i64::MAX, -1_000_000_001] {
        let sent = server
            .http
            .patch(server.url(&format!("/api/v1/products/{product}")))
            .bearer_auth(&seller)
            .json(&json!({ "stock_delta": delta }))
            .send()
            .await;
        let r = sent.unwrap_or_else(|e| panic!("stock_delta {delta}: no answer ({e})"));
        assert_eq!(r.status(), 400, "stock_delta {delta}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["status"], 400, "{problem}");
    }
    let (_, p) = read_product(&server, &seller, &product).await;
    assert_eq!(p["stock"], 5);
    server.stop().await;
}

/// Low: a product image may be any URL; a watch page would then load `http://` (mixed
/// content, a tracking pixel) or a protocol-relative `//evil.example/` from the seller.
#[tokio::test]
async fn product_images_are_https_or_our_own_paths() {
    let server = TestServer::start().await;
    let seller = server.seller("Ann").await;
    let new = |sku: &str, url: &str| {
        json!({ "sku": sku, "title": "Jacket", "image_url": url,
                "price": { "amount": 100, "currency": "USD" }, "stock": 1 })
    };
    for (i, bad) in [
        "http://cdn.example/a.jpg",
        "//evil.example/a.jpg",
        "/\\evil.example/a.jpg",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "https://",
        "https://user:pw@cdn.example/a.jpg",
        "ftp://cdn.example/a.jpg",
    ]
    .iter()
    .enumerate()
    {
        let (status, problem) = create_product(&server, &seller, new(&format!("b{i}"), bad)).await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_eq!(problem["status"], 400);
    }
    for (i, good) in ["https://cdn.example/a.jpg", "/media/a.jpg"]
        .iter()
        .enumerate()
    {
        let (status, p) = create_product(&server, &seller, new(&format!("g{i}"), good)).await;
        assert_eq!(status, 201, "{good}: {p}");
    }
    let id = product(&server, &seller, "JKT", 1).await;
    let (status, _) = server
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/products/{id}"),
            &seller,
            None,
            Some(json!({ "image_url": "http://cdn.example/a.jpg" })),
        )
        .await;
    assert_eq!(status, 400);
    server.stop().await;
}

/// Low: a server configured without exchange rates answered the public table with 503, as if
/// it were down; it has no rates by choice, and says so with an empty table.
#[tokio::test]
async fn a_server_without_rates_answers_an_empty_table() {
    let server = TestServer::start().await;
    // `get_json` asserts the 200.
    let table = server.get_json("/api/v1/public/fx/rates", None).await;
    assert_eq!(table["rates"], json!({}), "{table}");
    server.stop().await;
}

/// Low: a rates table that stopped refreshing was used forever. Past its age limit it is
/// refused, on the public endpoints and when pricing an order, with 503.
#[tokio::test]
async fn stale_exchange_rates_are_refused() {
    let server = TestServer::with_checkout(CheckoutConfig {
        rates_max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let table = vitrine_checkout::fx::RateTable::from_json(
        r#"{"base": "USD", "source": "test", "as_of": "2026-12-01T16:00:00Z",
            "rates": {"EUR": "0.92"}}"#,
    )
    .unwrap();
    let rates = server
        .running
        .as_ref()
        .unwrap()
        .state
        .checkout
        .rates()
        .clone();
    let two_hours_ago = vitrine_checkout::db::now_ms() - 2 * 3600 * 1000;
    rates.set_at(table.clone(), two_hours_ago);
    let seller = server.seller("Ann").await;
    let product = product(&server, &seller, "JKT", 5).await;
    let buyer = server.buyer("Bob").await;
    for path in [
        "/api/v1/public/fx/rates",
        "/api/v1/public/fx/convert?amount=100&from=USD&to=EUR",
    ] {
        let r = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(
            problem["type"], "/docs/problems/stale-exchange-rates",
            "{problem}"
        );
    }
    let mut order = buy(&product);
    order["currency"] = json!("EUR");
    let (status, problem) = place(&server, &buyer, "eur", order.clone()).await;
    assert_eq!(status, 503, "{problem}");
    // Fresh rates price the same request again (a refused request stored no result).
    rates.set_at(table, vitrine_checkout::db::now_ms());
    let (status, placed) = place(&server, &buyer, "eur", order).await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["presentment"]["total"]["currency"], "EUR");
    server.stop().await;
}

/// Low: deleting a stream left its flash sale running: the pin's sale price could still be
/// bought by pin id after the show was gone.
#[tokio::test]
async fn a_deleted_streams_flash_sale_ends() {
    let server = TestServer::start().await;
    let seller = server.seller("Ann").await;
    let product = product(&server, &seller, "JKT", 10).await;
    let stream = server.stream(&seller, "Show").await;
    let sid = stream["id"].as_str().unwrap();
    let (status, pin) = server
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/streams/{sid}/pins"),
            &seller,
            None,
            Some(json!({ "product_id": product, "sale_price": { "amount": 900, "currency": "USD" } })),
        )
        .await;
    assert_eq!(status, 201, "{pin}");
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/streams/{sid}"),
            &seller,
            None,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let buyer = server.buyer("Bob").await;
    let order = json!({ "product_id": product, "quantity": 1, "pin_id": pin["id"],
                        "payment": { "card_number": CARD } });
    let (status, problem) = place(&server, &buyer, "k", order).await;
    assert_eq!(
        status, 409,
        "bought at the sale price of a deleted stream: {problem}"
    );
    assert_eq!(problem["type"], "/docs/problems/sale-ended");
    server.stop().await;
}
