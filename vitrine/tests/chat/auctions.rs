//! A live auction in the room, end to end: the seller starts it over the API, buyers bid in
//! the chat and through the API, every member sees each lead and the hammer, the winner pays
//! the order the hammer made, and what comes too late or too low is refused with a reason.

use super::show;
use crate::support::{ChatClient, TestServer};
use serde_json::json;

async fn post(
    server: &TestServer,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    server
        .call(reqwest::Method::POST, path, token, key, Some(body))
        .await
}

fn usd(amount: i64) -> serde_json::Value {
    json!({ "amount": amount, "currency": "USD" })
}

/// A product of the seller's at `price` USD minor units with `stock` units; its id.
async fn product(server: &TestServer, seller_t: &str, sku: &str, price: i64, stock: i64) -> String {
    let product = server
        .created(
            "/api/v1/products",
            seller_t,
            json!({ "sku": sku, "title": sku, "price": usd(price), "stock": stock }),
        )
        .await;
    product["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auction_runs_in_the_room_and_the_winner_pays_the_hammer_price() {
    let server = TestServer::start().await;
    let (seller_t, stream) = show(&server).await;
    let pid = product(&server, &seller_t, "WATCH", 20000, 1).await;
    let auctions = format!("/api/v1/streams/{stream}/auctions");
    let start = |body: serde_json::Value| post(&server, &auctions, &seller_t, None, body);
    let auction = json!({ "product_id": pid, "start_price": usd(1000),
        "min_increment": usd(100), "duration_secs": 5, "extend_secs": 1 });
    // Not pinned yet: refused with a reason.
    let (status, problem) = start(auction.clone()).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("pin"));
    server
        .created(
            &format!("/api/v1/streams/{stream}/pins"),
            &seller_t,
            json!({ "product_id": pid }),
        )
        .await;
    let (mut watcher, _) = ChatClient::join(&server.base, &stream, None, None).await;
    let ann_t = server.buyer("Ann").await;
    let (bob_t, bob_id) = server.buyer_with_id("Bob").await;
    let (mut ann, _) = ChatClient::join(&server.base, &stream, Some(&ann_t), None).await;
    let (status, started) = start(auction.clone()).await;
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(
        watcher.next_of("auction_started").await["auction"]["id"],
        id
    );
    let (status, second) = start(auction).await;
    assert_eq!(status, 409, "one open auction per stream: {second}");

    // Ann bids in the chat; the room sees her lead.
    ann.send(json!({ "type": "bid", "request_id": "a1", "auction_id": id, "amount": usd(1000) }))
        .await;
    let accepted = ann.next_of("bid.accepted").await;
    assert_eq!(accepted["request_id"], "a1");
    let lead = watcher.next_of("auction_bid").await["auction"].clone();
    assert_eq!(
        (
            lead["bidder"].as_str(),
            lead["current_bid"]["amount"].as_i64()
        ),
        (Some("Ann"), Some(1000))
    );
    // Bob bids through the API: too low, then enough.
    let bids = format!("/api/v1/auctions/{id}/bids");
    let bid = async |token: &str, key: &str, amount: i64| {
        post(
            &server,
            &bids,
            token,
            Some(key),
            json!({ "amount": usd(amount) }),
        )
        .await
    };
    let (status, low) = bid(&bob_t, "b1", 1050).await;
    assert_eq!(status, 409, "{low}");
    assert!(
        low["type"].as_str().unwrap().ends_with("bid-too-low"),
        "{low}"
    );
    assert!(low["detail"].as_str().unwrap().contains("1100"), "{low}");
    let (status, led) = bid(&bob_t, "b2", 1100).await;
    assert_eq!(status, 201, "{led}");
    let (status, reused) = bid(&bob_t, "b2", 1900).await;
    assert_eq!(status, 422, "a key is one bid: {reused}");
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/auctions/{id}/bids"),
            &bob_t,
            None,
            Some(json!({ "amount": usd(5000) })),
        )
        .await;
    assert_eq!(status, 400, "no Idempotency-Key");
    assert_eq!(
        watcher.next_of("auction_bid").await["auction"]["bidder"],
        "Bob"
    );
    // A member joining now sees the auction as it stands.
    let (_late, welcome) = ChatClient::join(&server.base, &stream, None, None).await;
    assert_eq!(welcome["auction"]["current_bid"]["amount"], 1100);

    // The hammer: Bob wins at 11.00 and is told his order.
    let ended = watcher.next_of("auction_ended").await["auction"].clone();
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["bidder"], "Bob");
    let order_id = ended["order_id"].as_str().unwrap().to_owned();
    let (status, late) = bid(&ann_t, "a2", 9000).await;
    assert_eq!(status, 409, "{late}");
    assert!(late["type"].as_str().unwrap().ends_with("auction-ended"));
    ann.send(json!({ "type": "bid", "request_id": "a3", "auction_id": id, "amount": usd(9000) }))
        .await;
    assert_eq!(ann.next_of("bid.refused").await["reason"], "auction_ended");
    let payment = format!("/api/v1/orders/{order_id}/pay");
    let pay = async |token: &str| {
        let card = json!({ "payment": { "card_number": "4242424242424242" } });
        post(&server, &payment, token, None, card).await
    };
    let (status, _) = pay(&ann_t).await;
    assert_eq!(status, 404, "only the winner pays");
    let (status, paid) = pay(&bob_t).await;
    assert_eq!(status, 201, "{paid}");
    assert_eq!(
        (
            paid["status"].as_str(),
            paid["total"]["amount"].as_i64(),
            paid["buyer_id"].as_str()
        ),
        (Some("paid"), Some(1100), Some(bob_id.as_str()))
    );
    let (status, again) = pay(&bob_t).await;
    assert_eq!((status, &again["id"]), (201, &paid["id"]), "paid once");
    let read = server
        .get_json(&format!("/api/v1/auctions/{id}"), None)
        .await;
    assert_eq!(read["order_id"], order_id.as_str());
    // Bad input is a problem, never a panic.
    let (status, _) = bid(&bob_t, "b9", -5).await;
    assert_eq!(status, 400);
    let missing = server
        .http
        .get(server.url("/api/v1/auctions/au_nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

/// A buyer's bids are counted together, from the chat and from the API: past the rate, the chat
/// answers `rate_limited` and the API 429 with `Retry-After`; another buyer is not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyers_bids_are_held_to_one_rate_in_the_chat_and_the_api() {
    let mut edge = vitrine::edge::EdgeConfig::default();
    edge.ip_limits = vitrine::edge::IpLimits::off();
    edge.ip_limits.bids = vitrine_platform::ratelimit::Limit::parse("1/min burst 3").unwrap();
    let server = TestServer::with_edge(edge).await;
    let (seller_t, stream) = show(&server).await;
    let pid = product(&server, &seller_t, "LAMP", 5000, 3).await;
    server
        .created(
            &format!("/api/v1/streams/{stream}/pins"),
            &seller_t,
            json!({ "product_id": pid }),
        )
        .await;
    let started = server
        .created(
            &format!("/api/v1/streams/{stream}/auctions"),
            &seller_t,
            json!({ "product_id": pid, "start_price": usd(100), "min_increment": usd(10),
                "duration_secs": 600 }),
        )
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    let ann_t = server.buyer("Ann").await;
    let bob_t = server.buyer("Bob").await;
    let (mut ann, _) = ChatClient::join(&server.base, &stream, Some(&ann_t), None).await;
    let bids = format!("/api/v1/auctions/{id}/bids");
    let chat_bid = |key: &str, amount: i64| json!({ "type": "bid", "request_id": key, "auction_id": id, "amount": usd(amount) });
    // Three bids pass the rate (the second is refused on its merits, and still counts).
    ann.send(chat_bid("a1", 100)).await;
    assert_eq!(ann.next_of("bid.accepted").await["request_id"], "a1");
    ann.send(chat_bid("a2", 200)).await;
    assert_eq!(
        ann.next_of("bid.refused").await["reason"],
        "already_highest"
    );
    let body = json!({ "amount": usd(300) });
    let (status, _) = post(&server, &bids, &ann_t, Some("a3"), body.clone()).await;
    assert_eq!(status, 409, "already the highest, counted");
    // The fourth, by either way, is held back before checkout sees it.
    ann.send(chat_bid("a4", 400)).await;
    assert_eq!(ann.next_of("bid.refused").await["reason"], "rate_limited");
    let limited = server
        .http
        .post(server.url(&bids))
        .bearer_auth(&ann_t)
        .header("Idempotency-Key", "a5")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let (status, led) = post(
        &server,
        &bids,
        &bob_t,
        Some("b1"),
        json!({ "amount": usd(110) }),
    )
    .await;
    assert_eq!(status, 201, "another buyer bids: {led}");
    server.stop().await;
}
