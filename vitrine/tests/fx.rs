//! Exchange rates for buyers: a table loaded from the operator's file, conversions with the
//! documented rounding (USD, JPY with no minor unit, KWD with three), and a table followed over
//! HTTP: refreshed when it changes, kept when the source fails. No outside call: the HTTP source
//! is a server of this test on loopback.

mod support;

use axum::routing::get;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ServerOptions, TestServer, WAIT};
use vitrine_checkout::rates::RatesSource;

fn table(as_of: &str, jpy: &str) -> String {
    json!({
        "base": "USD",
        "source": "Test central bank",
        "as_of": as_of,
        "rates": {
            "USD": "1", "EUR": "0.92", "GBP": "0.79", "JPY": jpy, "KWD": "0.3071", "CHF": "0.88",
            "CAD": "1.39", "AUD": "1.53", "CNY": "7.24", "INR": "84.3", "BRL": "5.81", "MXN": "20.4",
            "SEK": "10.9"
        }
    })
    .to_string()
}

/// Waits until the rates in force have `as_of`.
async fn until_as_of(server: &TestServer, as_of: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = server
            .http
            .get(server.url("/api/v1/public/fx/rates"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            if v["as_of"] == as_of {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "rates as of {as_of} never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn convert(server: &TestServer, query: &str) -> (u16, Value) {
    let r = server
        .http
        .get(server.url(&format!("/api/v1/public/fx/convert?{query}")))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

#[tokio::test]
async fn rates_from_a_file_convert_with_the_documented_rounding() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rates.json");
    std::fs::write(&file, table("2026-12-01T16:00:00Z", "150.5")).unwrap();
    let server = TestServer::start_with(ServerOptions {
        rates: Some((RatesSource::File(file), Duration::from_secs(3600))),
        ..Default::default()
    })
    .await;
    let rates = until_as_of(&server, "2026-12-01T16:00:00Z").await;
    assert_eq!(rates["base"], "USD");
    assert_eq!(rates["source"], "Test central bank");
    assert_eq!(rates["rates"].as_object().unwrap().len(), 13);
    assert_eq!(rates["rates"]["KWD"], "0.3071");
    // The currencies and their minor units, with or without rates.
    let known = server.get_json("/api/v1/public/currencies", None).await;
    let digits = |code: &str| {
        known["currencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"] == code)
            .map(|c| c["minor_units"].clone())
    };
    assert_eq!(
        (digits("JPY"), digits("USD"), digits("KWD"), digits("ZZZ")),
        (Some(json!(0)), Some(json!(2)), Some(json!(3)), None)
    );
    assert!(known["currencies"].as_array().unwrap().len() >= 12);

    for (query, amount, currency) in [
        // 49.00 USD at 150.5 = 7374.5 yen: half away from zero.
        ("amount=4900&from=USD&to=JPY", 7375, "JPY"),
        // 49.00 USD at 0.3071 = 15.0479 KWD = 15047.9 fils.
        ("amount=4900&from=USD&to=KWD", 15048, "KWD"),
        // 7375 yen back: 49.0033 USD.
        ("amount=7375&from=JPY&to=USD", 4900, "USD"),
        // EUR to KWD through the base: 10.00 EUR = 10 / 0.92 USD = 3.33804... KWD.
        ("amount=1000&from=EUR&to=KWD", 3338, "KWD"),
        ("amount=0&from=USD&to=JPY", 0, "JPY"),
    ] {
        let (s, v) = convert(&server, query).await;
        assert_eq!(s, 200, "{query}: {v}");
        assert_eq!(
            v["to"],
            json!({ "amount": amount, "currency": currency }),
            "{query}"
        );
        assert_eq!(v["as_of"], "2026-12-01T16:00:00Z");
        assert_eq!(
            v["rounding"],
            "half away from zero, at the target currency's minor unit"
        );
    }
    for bad in [
        "amount=100&from=USD&to=NOK",
        "amount=100&from=USD&to=XXX1",
        "amount=-1&from=USD&to=JPY",
        "amount=1.5&from=USD&to=JPY",
        "from=USD&to=JPY",
        "amount=1&from=USD&to=JPY&fee=1",
    ] {
        let (s, v) = convert(&server, bad).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["status"], 400);
    }
    server.stop().await;
}

#[tokio::test]
async fn without_rates_conversions_are_unavailable() {
    let server = TestServer::start().await;
    let (s, v) = convert(&server, "amount=100&from=USD&to=JPY").await;
    assert_eq!(s, 503);
    assert_eq!(v["type"], "/docs/problems/no-exchange-rates");
    server.stop().await;
}

#[tokio::test]
async fn rates_followed_over_http_refresh_and_survive_a_failing_source() {
    let body = Arc::new(Mutex::new(table("2026-12-01T16:00:00Z", "150.5")));
    let failing = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let app = {
        let (body, failing, hits) = (Arc::clone(&body), Arc::clone(&failing), Arc::clone(&hits));
        axum::Router::new().route(
            "/rates.json",
            get(move || {
                let (body, failing, hits) =
                    (Arc::clone(&body), Arc::clone(&failing), Arc::clone(&hits));
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if failing.load(Ordering::SeqCst) {
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new())
                    } else {
                        (axum::http::StatusCode::OK, body.lock().unwrap().clone())
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rates.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = TestServer::start_with(ServerOptions {
        rates: Some((RatesSource::Http(url), Duration::from_millis(200))),
        ..Default::default()
    })
    .await;
    until_as_of(&server, "2026-12-01T16:00:00Z").await;
    // A new table is picked up at the next refresh.
    *body.lock().unwrap() = table("2026-12-02T16:00:00Z", "151");
    until_as_of(&server, "2026-12-02T16:00:00Z").await;
    let (_, v) = convert(&server, "amount=100&from=USD&to=JPY").await;
    assert_eq!(v["to"]["amount"], 151);
    // The source fails for a few refreshes: the last good table stays in force.
    failing.store(true, Ordering::SeqCst);
    let seen = hits.load(Ordering::SeqCst);
    let deadline = Instant::now() + WAIT;
    while hits.load(Ordering::SeqCst) < seen + 3 {
        assert!(Instant::now() < deadline, "the source was not asked again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = convert(&server, "amount=100&from=USD&to=JPY").await;
    assert_eq!((s, &v["as_of"]), (200, &json!("2026-12-02T16:00:00Z")));
    server.stop().await;
}

#[tokio::test]
async fn an_order_priced_in_the_buyers_currency_keeps_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rates.json");
    std::fs::write(&file, table("2026-12-01T16:00:00Z", "150.5")).unwrap();
    let server = TestServer::start_with(ServerOptions {
        rates: Some((RatesSource::File(file.clone()), Duration::from_millis(200))),
        ..Default::default()
    })
    .await;
    until_as_of(&server, "2026-12-01T16:00:00Z").await;
    let seller = server.seller("Ann").await;
    let product = server
        .product(
            &seller,
            json!({ "sku": "J", "title": "Jacket", "price": { "amount": 4900, "currency": "USD" }, "stock": 10 }),
        )
        .await;
    let buyer = server.buyer("Yui").await;
    let order = |key: &'static str, currency: &'static str| {
        let (server, buyer, product) = (&server, buyer.clone(), product["id"].clone());
        async move {
            server
                .call(
                    reqwest::Method::POST,
                    "/api/v1/orders",
                    &buyer,
                    Some(key),
                    Some(
                        json!({ "product_id": product, "quantity": 2, "currency": currency,
                                 "payment": { "card_number": "4242424242424242" } }),
                    ),
                )
                .await
        }
    };
    let (s, first) = order("yen-1", "JPY").await;
    assert_eq!(s, 201, "{first}");
    // Priced and charged in yen for the buyer, settled in dollars: 98.00 USD at 150.5.
    assert_eq!(first["total"], json!({ "amount": 9800, "currency": "USD" }));
    let p = &first["presentment"];
    assert_eq!(p["total"], json!({ "amount": 14749, "currency": "JPY" }));
    assert_eq!(
        p["unit_price"],
        json!({ "amount": 7375, "currency": "JPY" })
    );
    assert_eq!(
        (&p["rate_base"], &p["rate_from"], &p["rate_to"]),
        (&json!("USD"), &json!("1"), &json!("150.5"))
    );
    assert_eq!(p["as_of"], "2026-12-01T16:00:00Z");

    // The rates move; the placed order keeps its quote, a new one gets the new rate.
    std::fs::write(&file, table("2026-12-02T16:00:00Z", "160")).unwrap();
    until_as_of(&server, "2026-12-02T16:00:00Z").await;
    let path = format!("/api/v1/orders/{}", first["id"].as_str().unwrap());
    let (_, again) = server
        .call(reqwest::Method::GET, &path, &seller, None, None)
        .await;
    assert_eq!(again["presentment"], first["presentment"]);
    let (_, second) = order("yen-2", "JPY").await;
    assert_eq!(
        second["presentment"]["total"],
        json!({ "amount": 15680, "currency": "JPY" })
    );

    // The product's own currency needs no quote; a currency without a rate is refused.
    let (s, same) = order("usd", "USD").await;
    assert_eq!(s, 201);
    assert!(same.get("presentment").is_none());
    let (s, p) = order("nok", "NOK").await;
    assert_eq!(s, 400, "{p}");

    // The seller's balance holds dollars only: three sales of 98.00 less 2.9 % + 0.30 each.
    let (_, balance) = server
        .call(reqwest::Method::GET, "/api/v1/balance", &seller, None, None)
        .await;
    let fee = (9800 * 29 + 500) / 1000 + 30;
    assert_eq!(
        balance["balances"],
        json!([{ "currency": "USD", "available": 3 * (9800 - fee), "in_transit": 0, "debt": 0 }])
    );
    server.stop().await;
}
