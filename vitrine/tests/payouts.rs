//! Balances, payouts and the ledger statement over the API: a sale shows up as its total less
//! the fee, a payout needs an Idempotency-Key and cannot exceed the balance, an instant payout
//! carries its fee, and an API key with `payouts:read` may look but not pay out.

mod support;

use serde_json::json;
use support::TestServer;

#[tokio::test]
async fn a_sale_a_payout_and_the_statement() {
    let server = TestServer::start().await;
    let seller = server.seller("Ann").await;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let product = server
        .product(
            &seller,
            json!({ "sku": "S", "title": "Scarf", "price": { "amount": 4900, "currency": "USD" }, "stock": 5 }),
        )
        .await;
    let buyer = server.buyer("Bo").await;
    let (s, _) = server.call(
        post.clone(),
        "/api/v1/orders",
        &buyer,
        Some("o1"),
        Some(json!({ "product_id": product["id"], "quantity": 1, "payment": { "card_number": "4242424242424242" } })),
    )
    .await;
    assert_eq!(s, 201);
    // 49.00 less 2.9 % (1.42) and 0.30.
    let (s, b) = server
        .call(get.clone(), "/api/v1/balance", &seller, None, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["balances"],
        json!([{ "currency": "USD", "available": 4728, "in_transit": 0, "debt": 0 }])
    );

    let payout = |key: Option<&'static str>, amount: i64, method: &'static str| {
        server.call(
            reqwest::Method::POST,
            "/api/v1/payouts",
            &seller,
            key,
            Some(json!({ "amount": { "amount": amount, "currency": "USD" }, "method": method })),
        )
    };
    assert_eq!(payout(None, 1000, "standard").await.0, 400);
    let (s, p) = payout(Some("p1"), 5000, "standard").await;
    assert_eq!(s, 409);
    assert_eq!(p["type"], "/docs/problems/insufficient-balance");
    let (s, p) = payout(Some("p2"), 2000, "instant").await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["fee"], json!({ "amount": 50, "currency": "USD" }));
    assert_eq!(p["net"], json!({ "amount": 1950, "currency": "USD" }));
    assert_eq!(p["status"], "paid");
    let (s, again) = payout(Some("p2"), 2000, "instant").await;
    assert_eq!((s, &again["id"]), (201, &p["id"]));

    let (_, b) = server
        .call(get.clone(), "/api/v1/balance", &seller, None, None)
        .await;
    assert_eq!(b["balances"][0]["available"], 2728);
    let (_, statement) = server
        .call(get.clone(), "/api/v1/ledger", &seller, None, None)
        .await;
    let mut kinds: Vec<_> = statement["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["available_change"].as_i64().unwrap(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("payout".to_owned(), -2000),
            ("payout_paid".to_owned(), 0),
            ("sale".to_owned(), 4728)
        ]
    );

    // A read-only key may look, not pay out.
    let (_, key) = server
        .call(
            post.clone(),
            "/api/v1/api-keys",
            &seller,
            None,
            Some(json!({ "name": "books", "mode": "live", "scopes": ["payouts:read"] })),
        )
        .await;
    let key = key["secret"].as_str().unwrap();
    assert_eq!(
        server
            .call(get.clone(), "/api/v1/payouts", key, None, None)
            .await
            .0,
        200
    );
    let (s, _) = server
        .call(
            post.clone(),
            "/api/v1/payouts",
            key,
            Some("p3"),
            Some(json!({ "amount": { "amount": 100, "currency": "USD" } })),
        )
        .await;
    assert_eq!(s, 403);
    server.stop().await;
}
