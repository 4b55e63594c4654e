//! The commerce REST API end to end (real server, real database), on SQLite and PostgreSQL:
//! buyers, products, pins, orders with idempotency keys, and who may see what.

mod support;

use serde_json::{Value, json};
use support::TestServer;
use vitrine_checkout::db::Backend;

struct Shop {
    server: TestServer,
    seller: String,
}

impl Shop {
    async fn open(backend: Backend) -> Self {
        let server = TestServer::on(backend).await;
        let seller = server.seller("Ann's boutique").await;
        Self { server, seller }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.server.http.request(method, self.server.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
        };
        (status, body, headers)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let (s, b, _) = self
            .send(reqwest::Method::POST, path, token, Some(body), None)
            .await;
        (s, b)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let (s, b, _) = self
            .send(reqwest::Method::GET, path, token, None, None)
            .await;
        (s, b)
    }

    async fn buyer(&self, name: &str) -> String {
        let (s, b) = self
            .post("/api/v1/buyers", None, json!({ "display_name": name }))
            .await;
        assert_eq!(s, 201, "{b}");
        assert!(b["buyer_id"].as_str().unwrap().starts_with("by_"));
        b["token"].as_str().unwrap().to_owned()
    }

    async fn product(&self, sku: &str, stock: i64) -> String {
        let (s, b) = self
            .post(
                "/api/v1/products",
                Some(&self.seller),
                json!({ "sku": sku, "title": "Red jacket",
                        "price": { "amount": 4900, "currency": "USD" }, "stock": stock }),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }

    async fn order(&self, buyer: &str, key: &str, body: Value) -> (u16, Value, bool) {
        let (s, b, h) = self
            .send(
                reqwest::Method::POST,
                "/api/v1/orders",
                Some(buyer),
                Some(body),
                Some(key),
            )
            .await;
        (s, b, h.get("idempotent-replayed").is_some())
    }
}

fn buy(product: &str, quantity: u32, card: &str) -> Value {
    json!({ "product_id": product, "quantity": quantity, "payment": { "card_number": card } })
}

vitrine_checkout::on_both_backends!(
    orders_through_the_api,
    tenants_and_buyers_are_isolated,
    pins_show_on_the_public_stream,
    a_payment_confirmed_later_through_the_api
);

/// A card that asks for 3-D Secure: the order is accepted and waits in `payment_pending` with
/// the check's address; the buyer answers on the check page, and the order is paid at once.
async fn a_payment_confirmed_later_through_the_api(backend: Backend) {
    let shop = Shop::open(backend).await;
    let product = shop.product("LAMP-1", 3).await;
    let ann = shop.buyer("Ann").await;
    let (s, order, _) = shop
        .order(&ann, "k-3ds", buy(&product, 1, "4000000000003220"))
        .await;
    assert_eq!(s, 202, "accepted, not paid yet: {order}");
    assert_eq!(order["status"], "payment_pending");
    assert_eq!(order["next_action"]["type"], "redirect_to_url");
    let check = order["next_action"]["url"].as_str().unwrap().to_owned();
    assert!(check.starts_with("/sandbox/payments/py_"), "{check}");
    let (s, again, replayed) = shop
        .order(&ann, "k-3ds", buy(&product, 1, "4000000000003220"))
        .await;
    assert_eq!((s, replayed), (202, true));
    assert_eq!(again["id"], order["id"]);

    // The check page, and what it refuses.
    let page = shop
        .server
        .http
        .get(shop.server.url(&check))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("49.00 USD") && html.contains("approve"),
        "{html}"
    );
    let form = |path: &str, result: &str| {
        shop.server
            .http
            .post(shop.server.url(path))
            .form(&[("result", result.to_owned())])
            .send()
    };
    let bad = form(&check, "maybe").await.unwrap();
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().await.unwrap();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("invalid-request")
    );
    for unknown in [
        "/sandbox/payments/py_000000000000000000000000",
        "/sandbox/payments/not-a-payment",
    ] {
        let r = form(unknown, "approve").await.unwrap();
        assert_eq!(r.status(), 404, "{unknown}");
    }
    let id = order["id"].as_str().unwrap();
    let (_, still) = shop.get(&format!("/api/v1/orders/{id}"), Some(&ann)).await;
    assert_eq!(
        still["status"], "payment_pending",
        "the bad answers changed nothing"
    );
    // The check's address opens it: only its buyer is shown it, and no payment id spells it.
    assert!(still.get("payment_id").is_none(), "{still}");
    let secret = &check[check.rfind('/').unwrap() + 1..];
    for seen in [
        shop.get(&format!("/api/v1/orders/{id}"), Some(&shop.seller))
            .await
            .1,
        shop.get("/api/v1/orders", Some(&shop.seller)).await.1["orders"][0].clone(),
    ] {
        assert_eq!(seen["status"], "payment_pending", "{seen}");
        assert!(
            seen.get("next_action").is_none(),
            "the seller cannot answer it: {seen}"
        );
        assert!(!seen.to_string().contains(secret), "{seen}");
    }

    let approved = form(&check, "approve").await.unwrap();
    assert_eq!(approved.status(), 200);
    assert!(approved.text().await.unwrap().contains("was approved"));
    let (s, paid) = shop.get(&format!("/api/v1/orders/{id}"), Some(&ann)).await;
    assert_eq!(s, 200);
    assert_eq!(
        paid["status"], "paid",
        "settled by the check's notification: {paid}"
    );
    assert!(paid.get("next_action").is_none(), "{paid}");
    let (s, replay, replayed) = shop
        .order(&ann, "k-3ds", buy(&product, 1, "4000000000003220"))
        .await;
    assert_eq!((s, replayed), (201, true));
    assert_eq!(replay["status"], "paid");
}

async fn orders_through_the_api(backend: Backend) {
    let shop = Shop::open(backend).await;
    let product = shop.product("JKT-RED-M", 2).await;
    let ann = shop.buyer("Ann").await;

    let (s, order, replayed) = shop
        .order(&ann, "k1", buy(&product, 1, "4242424242424242"))
        .await;
    assert_eq!(s, 201, "{order}");
    assert_eq!(order["status"], "paid");
    assert_eq!(order["total"], json!({ "amount": 4900, "currency": "USD" }));
    assert!(!replayed);
    let (s, again, replayed) = shop
        .order(&ann, "k1", buy(&product, 1, "4242424242424242"))
        .await;
    assert_eq!((s, replayed), (201, true));
    assert_eq!(again, order);
    let (s, p, replayed) = shop
        .order(&ann, "k1", buy(&product, 2, "4242424242424242"))
        .await;
    assert_eq!((s, replayed), (422, true), "{p}");
    assert!(
        p["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-key-reused")
    );

    let (s, p, _) = shop
        .order(&ann, "k2", buy(&product, 1, "4000000000000002"))
        .await;
    assert_eq!(s, 402, "{p}");
    assert!(p["type"].as_str().unwrap().ends_with("payment-declined"));
    let (s, p, _) = shop
        .order(&ann, "k3", buy(&product, 5, "4242424242424242"))
        .await;
    assert_eq!(s, 409, "{p}");
    assert!(p["type"].as_str().unwrap().ends_with("sold-out"));

    let (s, p) = shop
        .get(&format!("/api/v1/products/{product}"), Some(&shop.seller))
        .await;
    assert_eq!((s, p["stock"].as_i64()), (200, Some(1)));

    // Missing key, bad card, bad body, no token.
    let (s, p, _) = shop
        .send(
            reqwest::Method::POST,
            "/api/v1/orders",
            Some(&ann),
            Some(buy(&product, 1, "4242424242424242")),
            None,
        )
        .await;
    assert_eq!(s, 400, "{p}");
    let (s, _, _) = shop.order(&ann, "k4", buy(&product, 1, "1234")).await;
    assert_eq!(s, 400);
    let (s, p, _) = shop
        .order(&ann, "k5", json!({ "product_id": product }))
        .await;
    assert_eq!(s, 400, "{p}");
    assert_eq!(p["status"], 400);
    let (s, _) = shop
        .post("/api/v1/orders", None, buy(&product, 1, "4242424242424242"))
        .await;
    assert_eq!(s, 401);

    // Fulfil, refund, and the stock coming back.
    let id = order["id"].as_str().unwrap();
    let (s, f) = shop
        .post(
            &format!("/api/v1/orders/{id}/fulfil"),
            Some(&shop.seller),
            json!({}),
        )
        .await;
    assert_eq!((s, f["status"].as_str()), (200, Some("fulfilled")));
    let (s, r) = shop
        .post(
            &format!("/api/v1/orders/{id}/refund"),
            Some(&shop.seller),
            json!({}),
        )
        .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("refunded")));
    let (s, r) = shop
        .post(
            &format!("/api/v1/orders/{id}/refund"),
            Some(&shop.seller),
            json!({}),
        )
        .await;
    assert_eq!(s, 409, "{r}");
    let (_, p) = shop
        .get(&format!("/api/v1/products/{product}"), Some(&shop.seller))
        .await;
    assert_eq!(p["stock"], 2);
    shop.server.stop().await;
}

async fn tenants_and_buyers_are_isolated(backend: Backend) {
    let shop = Shop::open(backend).await;
    let product = shop.product("MUG", 10).await;
    let rival = shop.server.seller("Rival").await;
    let (s, _) = shop
        .get(&format!("/api/v1/products/{product}"), Some(&rival))
        .await;
    assert_eq!(s, 404);
    let (s, _, _) = shop
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/products/{product}"),
            Some(&rival),
            Some(json!({ "stock": 0 })),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, list) = shop.get("/api/v1/products", Some(&rival)).await;
    assert_eq!((s, list["products"].as_array().unwrap().len()), (200, 0));

    let ann = shop.buyer("Ann").await;
    let bob = shop.buyer("Bob").await;
    let (_, order, _) = shop
        .order(&ann, "a", buy(&product, 1, "4242424242424242"))
        .await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        shop.get(&format!("/api/v1/orders/{id}"), Some(&ann))
            .await
            .0,
        200
    );
    assert_eq!(
        shop.get(&format!("/api/v1/orders/{id}"), Some(&bob))
            .await
            .0,
        404
    );
    assert_eq!(
        shop.get(&format!("/api/v1/orders/{id}"), Some(&shop.seller))
            .await
            .0,
        200
    );
    assert_eq!(
        shop.get(&format!("/api/v1/orders/{id}"), Some(&rival))
            .await
            .0,
        404
    );
    let (_, mine) = shop.get("/api/v1/orders", Some(&bob)).await;
    assert_eq!(mine["orders"].as_array().unwrap().len(), 0);
    let (_, sold) = shop.get("/api/v1/orders", Some(&shop.seller)).await;
    assert_eq!(sold["orders"].as_array().unwrap().len(), 1);
    let (_, theirs) = shop.get("/api/v1/orders", Some(&rival)).await;
    assert_eq!(theirs["orders"].as_array().unwrap().len(), 0);
    // A buyer token is not a seller token.
    assert_eq!(shop.get("/api/v1/products", Some(&ann)).await.0, 401);
    let (s, _) = shop
        .post(
            &format!("/api/v1/orders/{id}/refund"),
            Some(&rival),
            json!({}),
        )
        .await;
    assert_eq!(s, 404);
    shop.server.stop().await;
}

async fn pins_show_on_the_public_stream(backend: Backend) {
    let shop = Shop::open(backend).await;
    let product = shop.product("JKT", 10).await;
    let stream = shop.server.stream(&shop.seller, "Show").await;
    let sid = stream["id"].as_str().unwrap();
    let (s, pin) = shop
        .post(
            &format!("/api/v1/streams/{sid}/pins"),
            Some(&shop.seller),
            json!({ "product_id": product, "sale_price": { "amount": 2900, "currency": "USD" },
                    "quantity_cap": 3, "per_buyer_limit": 1 }),
        )
        .await;
    assert_eq!(s, 201, "{pin}");
    let (_, public) = shop
        .get(&format!("/api/v1/public/streams/{sid}"), None)
        .await;
    assert_eq!(public["pinned"]["available"], 3);
    assert_eq!(public["pinned"]["sale_price"]["amount"], 2900);
    assert!(public["chat_url"].as_str().unwrap().starts_with("ws://"));

    let ann = shop.buyer("Ann").await;
    let (s, order, _) = shop
        .order(
            &ann,
            "a",
            json!({ "product_id": product, "quantity": 1, "stream_id": sid,
                                  "payment": { "card_number": "4242424242424242" } }),
        )
        .await;
    assert_eq!(s, 201, "{order}");
    assert_eq!(order["unit_price"]["amount"], 2900);
    let (_, public) = shop
        .get(&format!("/api/v1/public/streams/{sid}"), None)
        .await;
    assert_eq!(public["pinned"]["available"], 2);

    // Another seller cannot pin to this stream or pin this product.
    let rival = shop.server.seller("Rival").await;
    let (s, _) = shop
        .post(
            &format!("/api/v1/streams/{sid}/pins"),
            Some(&rival),
            json!({ "product_id": product }),
        )
        .await;
    assert_eq!(s, 404);
    let pin_id = pin["id"].as_str().unwrap();
    let (s, _, _) = shop
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/streams/{sid}/pins/{pin_id}"),
            Some(&shop.seller),
            None,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (_, public) = shop
        .get(&format!("/api/v1/public/streams/{sid}"), None)
        .await;
    assert!(public.get("pinned").is_none());
    shop.server.stop().await;
}
