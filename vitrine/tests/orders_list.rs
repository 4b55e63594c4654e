//! Listing orders with filters and keyset pagination, and cancelling them, over the API on
//! SQLite and PostgreSQL.

mod support;

use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use support::{ServerOptions, TestServer};
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::TestDatabase;

async fn pages_filters_and_cancel(backend: Backend) {
    let db = Arc::new(TestDatabase::create(backend).await.unwrap());
    let server = TestServer::start_with(ServerOptions {
        database: Some(db),
        ..Default::default()
    })
    .await;
    let seller = server.seller("Ann").await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let product = server
        .product(
            &seller,
            json!({ "sku": "S", "title": "Sock", "price": { "amount": 500, "currency": "EUR" }, "stock": 100 }),
        )
        .await;
    let buyer = server.buyer("Bo").await;
    let mut ids = vec![];
    for (i, card) in ["4242424242424242"; 7]
        .iter()
        .chain(["4000000000000002"; 2].iter())
        .enumerate()
    {
        let (s, o) = server.call(
            post.clone(),
            "/api/v1/orders",
            &buyer,
            Some(&format!("k{i}")),
            Some(json!({ "product_id": product["id"], "quantity": 1, "payment": { "card_number": card } })),
        )
        .await;
        if s == 201 {
            ids.push(o["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 7);

    // Three pages of three: every order once, newest first, then no cursor.
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    for page in 0..3 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/orders?limit=3&cursor={c}"),
            None => "/api/v1/orders?limit=3".to_owned(),
        };
        let (s, body) = server.call(get.clone(), &path, &seller, None, None).await;
        assert_eq!(s, 200, "{body}");
        let orders = body["orders"].as_array().unwrap();
        assert_eq!(orders.len(), 3, "page {page}");
        seen.extend(orders.iter().map(|o| {
            (
                o["created_at"].as_i64().unwrap(),
                o["id"].as_str().unwrap().to_owned(),
            )
        }));
        cursor = body["next_cursor"].as_str().map(str::to_owned);
        assert_eq!(cursor.is_some(), page < 2, "page {page}");
    }
    let distinct: HashSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(distinct.len(), 9);
    assert!(
        seen.windows(2).all(|w| w[0].0 >= w[1].0),
        "newest first: {seen:?}"
    );

    // Filters.
    let count = |path: String| {
        let server = &server;
        let seller = seller.clone();
        async move {
            let (s, body) = server
                .call(reqwest::Method::GET, &path, &seller, None, None)
                .await;
            assert_eq!(s, 200, "{path}: {body}");
            body["orders"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("/api/v1/orders?status=paid".into()).await, 7);
    assert_eq!(count("/api/v1/orders?status=cancelled".into()).await, 2);
    assert_eq!(
        count(format!(
            "/api/v1/orders?product_id={}",
            product["id"].as_str().unwrap()
        ))
        .await,
        9
    );
    assert_eq!(
        count("/api/v1/orders?created_since=2100-01-01T00:00:00Z".into()).await,
        0
    );
    assert_eq!(
        count("/api/v1/orders?created_before=2100-01-01T00:00:00Z".into()).await,
        9
    );
    for bad in [
        "limit=0",
        "limit=201",
        "cursor=nope",
        "status=lost",
        "created_since=yesterday",
        "color=red",
    ] {
        let (s, body) = server
            .call(
                get.clone(),
                &format!("/api/v1/orders?{bad}"),
                &seller,
                None,
                None,
            )
            .await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert_eq!(body["status"], 400);
    }
    // The buyer pages through their own orders the same way.
    let (s, body) = server
        .call(get.clone(), "/api/v1/orders?limit=5", &buyer, None, None)
        .await;
    assert_eq!((s, body["orders"].as_array().unwrap().len()), (200, 5));
    assert!(body["next_cursor"].is_string());

    // Cancel: a paid order is refunded; a refunded or cancelled one cannot be cancelled again.
    let act = |verb: &'static str, id: &str| {
        let path = format!("/api/v1/orders/{id}/{verb}");
        let (server, seller) = (&server, &seller);
        async move {
            server
                .call(reqwest::Method::POST, &path, seller, None, None)
                .await
        }
    };
    let (s, cancelled) = act("cancel", &ids[0]).await;
    assert_eq!(s, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "refunded");
    let (s, p) = act("cancel", &ids[0]).await;
    assert_eq!(s, 409, "{p}");
    let (_, fulfilled) = act("fulfil", &ids[1]).await;
    assert_eq!(fulfilled["status"], "fulfilled");
    let (s, _) = act("cancel", &ids[1]).await;
    assert_eq!(s, 409);
    // Shipped, then delivered (once); a delivered order is not cancelled either.
    let (s, delivered) = act("deliver", &ids[1]).await;
    assert_eq!(
        (s, delivered["status"].clone()),
        (200, json!("delivered")),
        "{delivered}"
    );
    assert!(delivered["delivered_at"].as_i64() >= delivered["shipped_at"].as_i64());
    assert_eq!(act("deliver", &ids[1]).await.0, 409);
    assert_eq!(act("deliver", &ids[2]).await.0, 409, "not shipped yet");
    assert_eq!(act("cancel", &ids[1]).await.0, 409);
    // A tracked shipment; a half or malformed one is refused.
    let ship = |id: &str, body: serde_json::Value| {
        let path = format!("/api/v1/orders/{id}/fulfil");
        let (server, seller, post) = (&server, &seller, post.clone());
        async move { server.call(post, &path, seller, None, Some(body)).await }
    };
    let (s, tracked) = ship(
        &ids[2],
        json!({ "carrier": "DHL", "tracking_number": "JD0146 0000 6281" }),
    )
    .await;
    assert_eq!(s, 200, "{tracked}");
    assert_eq!(
        tracked["shipment"],
        json!({ "carrier": "DHL", "tracking_number": "JD0146 0000 6281" })
    );
    for bad in [
        json!({ "carrier": "DHL" }),
        json!({ "carrier": "DHL", "tracking_number": "<script>" }),
        json!({ "carrier": "", "tracking_number": "1Z" }),
        json!({ "carrier": "DHL", "tracking_number": "1Z", "colour": "red" }),
    ] {
        let (s, body) = ship(&ids[3], bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    let (s, still) = server
        .call(
            get.clone(),
            &format!("/api/v1/orders/{}", ids[3]),
            &seller,
            None,
            None,
        )
        .await;
    assert_eq!((s, still["status"].clone()), (200, json!("paid")));
    server.stop().await;
}

vitrine_checkout::on_both_backends!(pages_filters_and_cancel);
