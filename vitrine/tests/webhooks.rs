//! Signed webhooks end to end: a receiver written with the Standard Webhooks reference library
//! (Python `standardwebhooks`, in `webhook_receiver.py`) verifies every signature and drops
//! duplicates by `webhook-id`. Events of every kind are delivered; then the receiver goes down,
//! more events happen, the server restarts (the outbox is in the database), the receiver comes
//! back, and it has every event exactly once. Rotation, 410 Gone and replay at the end.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{ServerOptions, TestServer, WAIT};
use vitrine::config::WebhooksConfig;
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::TestDatabase;
use vitrine_core::{StreamId, StreamState};

fn python() -> PathBuf {
    std::env::var_os("VITRINE_TEST_PYTHON").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vitrine/pyenv/bin/python"),
        PathBuf::from,
    )
}

struct Receiver {
    child: Child,
}

impl Receiver {
    async fn start(port: u16, log: &Path, secret: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_receiver.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(log)
            .arg(secret)
            .stdout(Stdio::null())
            .spawn()
            .expect("the test Python environment (scripts/setup.sh makes it)");
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the receiver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn entries(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the receiver's log satisfies `done`.
async fn until(log: &Path, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = entries(log);
        if done(&e) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Verified, first-time deliveries by message id.
fn delivered(e: &[Value]) -> BTreeMap<String, String> {
    e.iter()
        .filter(|x| x["verified"] == true && x["duplicate"] == false)
        .map(|x| {
            (
                x["id"].as_str().unwrap().to_owned(),
                x["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Shop {
    server: TestServer,
    seller: String,
}

impl Shop {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .server
            .http
            .request(method, self.server.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        if path == "/api/v1/orders" {
            r = r.header("Idempotency-Key", format!("k-{}", rand::random::<u64>()));
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn buyer(&self) -> String {
        let r = self
            .server
            .http
            .post(self.server.url("/api/v1/buyers"))
            .json(&json!({ "display_name": "Ann" }))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn order(&self, buyer: &str, product: &str, card: &str) -> Value {
        let body =
            json!({ "product_id": product, "quantity": 1, "payment": { "card_number": card } });
        self.call(reqwest::Method::POST, "/api/v1/orders", buyer, Some(body))
            .await
            .1
    }
}

#[tokio::test]
async fn every_event_arrives_signed_and_exactly_once_across_an_outage_and_a_restart() {
    let db = Arc::new(TestDatabase::create(Backend::Sqlite).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        database: Some(Arc::clone(&db)),
        webhooks: Some(WebhooksConfig {
            allow_private_targets: true,
            // Fast retries, for long enough to outlast the outage below.
            retry_schedule: vec![Duration::from_millis(300); 200],
            timeout: Duration::from_secs(5),
            secrets_key_file: Some(dir.path().join("webhook-secrets.key")),
        }),
        ..Default::default()
    };
    let server = TestServer::start_with(options.clone()).await;
    let seller = server.seller("Ann's boutique").await;
    let shop = Shop { server, seller };
    let port = free_port();
    let log = dir.path().join("received.jsonl");

    // An endpoint for every event; its secret is shown once.
    let (s, endpoint) = shop
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks/endpoints",
            &shop.seller,
            Some(json!({ "url": format!("http://127.0.0.1:{port}/hooks"), "description": "ERP" })),
        )
        .await;
    assert_eq!(s, 201, "{endpoint}");
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    // Stored sealed: the secret is nowhere in the database in clear.
    let pool = shop
        .server
        .running
        .as_ref()
        .unwrap()
        .state
        .store
        .pool()
        .clone();
    let (stored,): (String,) = sqlx::query_as("SELECT secret FROM webhook_endpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!stored.contains(&secret[6..]));

    let receiver = Receiver::start(port, &log, &secret).await;

    // Every kind of event: a stream goes live and ends; orders are created, paid, refused and
    // refunded; the last unit sells out.
    let store = shop.server.running.as_ref().unwrap().state.store.clone();
    let (s, stream) = shop
        .call(
            reqwest::Method::POST,
            "/api/v1/streams",
            &shop.seller,
            Some(json!({ "title": "Drop" })),
        )
        .await;
    assert_eq!(s, 201);
    let stream_id = StreamId::parse(stream["id"].as_str().unwrap()).unwrap();
    store
        .set_stream_state(&stream_id, StreamState::Live)
        .await
        .unwrap();
    let (_, product) = shop
        .call(
            reqwest::Method::POST,
            "/api/v1/products",
            &shop.seller,
            Some(json!({ "sku": "HAT", "title": "Hat", "price": { "amount": 2500, "currency": "EUR" }, "stock": 2 })),
        )
        .await;
    let product = product["id"].as_str().unwrap().to_owned();
    let buyer = shop.buyer().await;
    let paid = shop.order(&buyer, &product, "4242424242424242").await;
    assert_eq!(paid["status"], "paid", "{paid}");
    let declined = shop.order(&buyer, &product, "4000000000000002").await;
    assert_eq!(
        declined["type"], "/docs/problems/payment-declined",
        "{declined}"
    );
    let last = shop.order(&buyer, &product, "4242424242424242").await;
    assert_eq!(last["status"], "paid");
    // The last one ships with tracking and is delivered.
    let last_id = last["id"].as_str().unwrap();
    for (verb, body, status) in [
        (
            "fulfil",
            json!({ "carrier": "DHL", "tracking_number": "JD0146" }),
            "fulfilled",
        ),
        ("deliver", json!({}), "delivered"),
    ] {
        let (s, moved) = shop
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/orders/{last_id}/{verb}"),
                &shop.seller,
                Some(body),
            )
            .await;
        assert_eq!(
            (s, moved["status"].as_str()),
            (200, Some(status)),
            "{moved}"
        );
    }
    store
        .set_stream_state(&stream_id, StreamState::Ended)
        .await
        .unwrap();

    let kinds = [
        "stream.started",
        "order.created",
        "order.paid",
        "payment.failed",
        "product.sold_out",
        "order.shipped",
        "order.delivered",
        "stream.ended",
    ];
    let first = until(&log, "the first events", |e| {
        let got: BTreeSet<_> = delivered(e).into_values().collect();
        kinds.iter().all(|k| got.contains(*k))
    })
    .await;
    assert!(first.iter().all(|e| e["verified"] == true), "{first:?}");
    let sold_out = first
        .iter()
        .find(|e| e["type"] == "product.sold_out")
        .unwrap();
    assert_eq!(sold_out["data"]["product_id"], product.as_str());
    let shipped = first.iter().find(|e| e["type"] == "order.shipped").unwrap();
    assert_eq!(shipped["data"]["shipment"]["tracking_number"], "JD0146");

    // The receiver goes down; meanwhile an order is refunded and another stream goes live.
    receiver.stop();
    let id = paid["id"].as_str().unwrap();
    let (s, _) = shop
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/orders/{id}/refund"),
            &shop.seller,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    store
        .set_stream_state(&stream_id, StreamState::Live)
        .await
        .unwrap();
    // Wait until the server has tried (and failed) to deliver them, then restart it.
    let failed_attempts = || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM webhook_attempts WHERE status_code IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        n
    };
    let deadline = Instant::now() + WAIT;
    while failed_attempts().await < 2 {
        assert!(
            Instant::now() < deadline,
            "no failed attempt while the receiver was down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Shop { server, seller } = shop;
    server.stop().await;
    let server = TestServer::start_with(options.clone()).await;
    let shop = Shop { server, seller };
    let _receiver = Receiver::start(port, &log, &secret).await;

    // Every event the server recorded for the seller arrives, each exactly once.
    let pool = shop
        .server
        .running
        .as_ref()
        .unwrap()
        .state
        .store
        .pool()
        .clone();
    // Whatever fact rows the first server had not expanded yet are expanded now, so that the
    // list below is every event.
    let state = &shop.server.running.as_ref().unwrap().state;
    state.checkout.webhooks().expand_pending().await.unwrap();
    let all: Vec<(String, String)> =
        sqlx::query_as("SELECT id, event_type FROM webhook_events ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(all.iter().any(|(_, t)| t == "order.refunded"));
    let expected: BTreeMap<String, String> = all.into_iter().collect();
    let after = until(&log, "every event after the restart", |e| {
        delivered(e).len() == expected.len()
    })
    .await;
    assert_eq!(delivered(&after), expected);
    assert!(after.iter().all(|e| e["verified"] == true));

    // The delivery log shows the retries. The receiver logs a message before it answers, and
    // the server records the answer after it, so the log is read until it has caught up.
    let deadline = Instant::now() + WAIT;
    let deliveries = loop {
        let (s, log_page) = shop
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/webhooks/endpoints/{endpoint_id}/deliveries"),
                &shop.seller,
                None,
            )
            .await;
        assert_eq!(s, 200);
        let deliveries = log_page["deliveries"].as_array().unwrap().clone();
        assert_eq!(deliveries.len(), expected.len());
        if deliveries.iter().all(|d| d["status"] == "succeeded") {
            break deliveries;
        }
        assert!(Instant::now() < deadline, "{deliveries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        deliveries
            .iter()
            .any(|d| d["attempts"].as_i64().unwrap() > 1)
    );

    // Replay: the same message again, which the receiver recognises by its id.
    let refunded = deliveries
        .iter()
        .find(|d| d["event_type"] == "order.refunded")
        .unwrap();
    let event = refunded["event_id"].as_str().unwrap();
    let (s, _) = shop
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/webhooks/endpoints/{endpoint_id}/deliveries/{event}/replay"),
            &shop.seller,
            None,
        )
        .await;
    assert_eq!(s, 202);
    until(&log, "the replay", |e| {
        e.iter().any(|x| x["id"] == event && x["duplicate"] == true)
    })
    .await;

    // Rotation: for a day, messages carry both signatures; the receiver still holds the old
    // secret and still verifies.
    let (s, rotated) = shop
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret"),
            &shop.seller,
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_ne!(rotated["secret"], secret.as_str());
    shop.server
        .running
        .as_ref()
        .unwrap()
        .state
        .store
        .set_stream_state(&stream_id, StreamState::Ended)
        .await
        .unwrap();
    let rotated_log = until(&log, "a message after the rotation", |e| {
        e.iter().filter(|x| x["type"] == "stream.ended").count() == 2
    })
    .await;
    let last = rotated_log
        .iter()
        .rev()
        .find(|x| x["type"] == "stream.ended")
        .unwrap();
    assert_eq!(last["verified"], true);
    assert_eq!(last["signatures"], 2);

    // 410 Gone disables an endpoint.
    let (_, gone) = shop
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks/endpoints",
            &shop.seller,
            Some(json!({ "url": format!("http://127.0.0.1:{port}/gone"), "event_types": ["stream.started"] })),
        )
        .await;
    let gone_id = gone["id"].as_str().unwrap();
    shop.server
        .running
        .as_ref()
        .unwrap()
        .state
        .store
        .set_stream_state(&stream_id, StreamState::Live)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, e) = shop
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/webhooks/endpoints/{gone_id}"),
                &shop.seller,
                None,
            )
            .await;
        if e["status"] == "disabled" {
            assert!(e["disabled_reason"].as_str().unwrap().contains("410"));
            break;
        }
        assert!(Instant::now() < deadline, "the 410 endpoint stayed enabled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shop.server.stop().await;
}

#[tokio::test]
async fn endpoints_are_validated_scoped_and_isolated() {
    let server = TestServer::start_with(ServerOptions {
        webhooks: Some(WebhooksConfig::default()),
        ..Default::default()
    })
    .await;
    let ann = server.seller("Ann").await;
    let bob = server.seller("Bob").await;
    let shop = Shop {
        server,
        seller: ann.clone(),
    };
    for (body, why) in [
        (json!({ "url": "http://erp.example.com/hooks" }), "https"),
        (json!({ "url": "https://127.0.0.1/hooks" }), "private"),
        (
            json!({ "url": "https://169.254.169.254/latest" }),
            "private",
        ),
        (
            json!({ "url": "https://erp.example.com/h", "event_types": ["order.lost"] }),
            "",
        ),
    ] {
        let (s, p) = shop
            .call(
                reqwest::Method::POST,
                "/api/v1/webhooks/endpoints",
                &ann,
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, 400, "{body}");
        assert!(
            p["detail"].as_str().unwrap_or_default().contains(why),
            "{p}"
        );
    }
    let (s, e) = shop
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks/endpoints",
            &ann,
            Some(json!({ "url": "https://erp.example.com/hooks", "event_types": ["order.paid"] })),
        )
        .await;
    assert_eq!(s, 201);
    let path = format!("/api/v1/webhooks/endpoints/{}", e["id"].as_str().unwrap());
    // Another seller sees nothing of it.
    assert_eq!(
        shop.call(reqwest::Method::GET, &path, &bob, None).await.0,
        404
    );
    assert_eq!(
        shop.call(reqwest::Method::DELETE, &path, &bob, None)
            .await
            .0,
        404
    );
    let (_, list) = shop
        .call(
            reqwest::Method::GET,
            "/api/v1/webhooks/endpoints",
            &bob,
            None,
        )
        .await;
    assert_eq!(list["endpoints"], json!([]));
    // The list never shows the secret.
    let (_, list) = shop
        .call(
            reqwest::Method::GET,
            "/api/v1/webhooks/endpoints",
            &ann,
            None,
        )
        .await;
    assert!(list["endpoints"][0].get("secret").is_none());
    assert_eq!(list["endpoints"][0]["event_types"], json!(["order.paid"]));
    let _ = shop.seller;
    shop.server.stop().await;
}
