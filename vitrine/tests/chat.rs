//! The chat over real websockets against the real server: history and resume, protocol errors
//! and their close codes, moderation, slow consumers, and the flash sale bought through the
//! chat on SQLite and PostgreSQL.

#[path = "chat/auctions.rs"]
mod auctions;
mod support;

use serde_json::json;
use std::collections::{HashMap, HashSet};
use support::{ChatClient, ServerOptions, TestServer};
use vitrine_chat::ChatConfig;
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::TestDatabase;

/// A seller with a stream; returns (seller token, stream id).
async fn show(server: &TestServer) -> (String, String) {
    let seller = server.seller("Ann's boutique").await;
    let stream = server.stream(&seller, "Friday drop").await;
    (seller, stream["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn members_share_history_in_order_and_resume_what_they_missed() {
    let server = TestServer::start().await;
    let (_, stream) = show(&server).await;
    let (ann_t, bob_t) = (server.buyer("Ann").await, server.buyer("Bob").await);
    let (mut ann, welcome) = ChatClient::join(&server.base, &stream, Some(&ann_t), None).await;
    assert_eq!(welcome["you"]["name"], "Ann");
    assert_eq!(welcome["you"]["role"], "buyer");
    assert_eq!(welcome["protocol"], 1);
    let (mut bob, _) = ChatClient::join(&server.base, &stream, Some(&bob_t), None).await;

    ann.send(json!({ "type": "chat", "text": "  hello   " }))
        .await;
    let at_ann = ann.next_of("chat").await;
    let at_bob = bob.next_of("chat").await;
    assert_eq!(at_ann, at_bob, "both see the same event, id included");
    assert_eq!(at_bob["text"], "hello");
    assert_eq!(at_bob["from"]["name"], "Ann");
    let seen = at_bob["id"].as_str().unwrap().to_owned();

    // A newcomer gets the line in its welcome history; a read-only viewer cannot chat.
    let (mut viewer, welcome) = ChatClient::join(&server.base, &stream, None, None).await;
    assert_eq!(welcome["history"][0]["text"], "hello");
    assert_eq!(welcome["you"]["role"], "viewer");
    viewer.send(json!({ "type": "chat", "text": "hi" })).await;
    assert_eq!(viewer.next_of("error").await["code"], "login_required");

    // Bob leaves, misses two lines, and resumes from the last id he saw.
    bob.leave().await;
    ann.send(json!({ "type": "chat", "text": "one" })).await;
    ann.send(json!({ "type": "chat", "text": "two" })).await;
    ann.next_of("chat").await;
    ann.next_of("chat").await;
    let (_, welcome) = ChatClient::join(&server.base, &stream, Some(&bob_t), Some(&seen)).await;
    assert_eq!(welcome["resumed"], true);
    let missed: Vec<&str> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "chat")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(missed, ["one", "two"]);
    server.stop().await;
}

#[tokio::test]
async fn protocol_errors_get_documented_answers_and_the_server_stays_up() {
    let server = TestServer::start().await;
    let (_, stream) = show(&server).await;
    let token = server.buyer("Eve").await;

    // No hello first.
    let mut c = ChatClient::connect(&server.base, &stream).await;
    c.send(json!({ "type": "chat", "text": "hi" })).await;
    assert_eq!(c.closed().await.0, 4001);
    // A token that is nobody's.
    let mut c = ChatClient::connect(&server.base, &stream).await;
    c.send(json!({ "type": "hello", "token": "bt_nobody" }))
        .await;
    assert_eq!(c.closed().await, (4003, "invalid token".into()));

    let (mut c, _) = ChatClient::join(&server.base, &stream, Some(&token), None).await;
    c.send_text("{not json".into()).await;
    assert_eq!(c.next_of("error").await["code"], "invalid_json");
    c.send(json!({ "type": "dance" })).await;
    assert_eq!(c.next_of("error").await["code"], "unknown_type");
    c.send(json!({ "type": "chat", "text": "x".repeat(501) }))
        .await;
    assert_eq!(c.next_of("error").await["code"], "too_long");
    c.send(json!({ "type": "chat", "text": "y".repeat(9000) }))
        .await;
    assert_eq!(c.closed().await.0, 1009);

    // Repeated garbage closes with 4400.
    let (mut c, _) = ChatClient::join(&server.base, &stream, Some(&token), None).await;
    for _ in 0..10 {
        c.send_text("]".into()).await;
    }
    assert_eq!(c.closed().await.0, 4400);

    // A flood closes with 4429; chat lines beyond the member's rate get rate_limited first.
    let (mut c, _) = ChatClient::join(&server.base, &stream, Some(&token), None).await;
    for i in 0..200 {
        c.send(json!({ "type": "chat", "text": format!("spam {i}") }))
            .await;
    }
    let mut codes = HashSet::new();
    let close = loop {
        match c.next_or_close().await {
            Ok(v) if v["type"] == "error" => {
                codes.insert(v["code"].as_str().unwrap().to_owned());
            }
            Ok(_) => {}
            Err(close) => break close,
        }
    };
    assert_eq!(close.0, 4429);
    assert!(codes.contains("rate_limited"), "{codes:?}");

    // An unknown stream is refused before the upgrade.
    let r = server
        .http
        .get(server.url("/ws/streams/st_nothing/chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Still serving.
    let (_, welcome) = ChatClient::join(&server.base, &stream, Some(&token), None).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(server.get_text("/healthz").await, "ok");
    server.stop().await;
}

#[tokio::test]
async fn the_seller_moderates_deletes_bans_and_slows_the_room() {
    let server = TestServer::start().await;
    let (seller_t, stream) = show(&server).await;
    let troll_t = server.buyer("Troll").await;
    let fan_t = server.buyer("Fan").await;
    let (mut seller, welcome) =
        ChatClient::join(&server.base, &stream, Some(&seller_t), None).await;
    assert_eq!(welcome["you"]["role"], "seller");
    let (mut troll, tw) = ChatClient::join(&server.base, &stream, Some(&troll_t), None).await;
    let (mut fan, _) = ChatClient::join(&server.base, &stream, Some(&fan_t), None).await;

    troll
        .send(json!({ "type": "chat", "text": "buy crypto" }))
        .await;
    let line = seller.next_of("chat").await;
    fan.send(json!({ "type": "moderate", "action": "delete", "message_id": line["id"] }))
        .await;
    assert_eq!(fan.next_of("error").await["code"], "forbidden");
    seller
        .send(json!({ "type": "moderate", "action": "delete", "message_id": line["id"] }))
        .await;
    let deleted = fan.next_of("moderation").await;
    assert_eq!(
        (deleted["action"].clone(), deleted["message_id"].clone()),
        (json!("delete"), line["id"].clone())
    );
    // A newcomer's history no longer shows the deleted line.
    let (_, w) = ChatClient::join(&server.base, &stream, None, None).await;
    assert!(
        w["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] != "chat")
    );

    seller
        .send(json!({ "type": "moderate", "action": "ban", "member_id": tw["you"]["member_id"] }))
        .await;
    assert_eq!(troll.closed().await, (4003, "banned from this room".into()));
    let mut again = ChatClient::connect(&server.base, &stream).await;
    again
        .send(json!({ "type": "hello", "token": troll_t }))
        .await;
    assert_eq!(again.closed().await.0, 4003);

    seller
        .send(json!({ "type": "moderate", "action": "slow_mode", "seconds": 30 }))
        .await;
    let ban = fan.next_of("moderation").await;
    assert_eq!(ban["action"], "ban");
    let slow = fan.next_of("moderation").await;
    assert_eq!(
        (slow["action"].as_str(), slow["seconds"].as_u64()),
        (Some("slow_mode"), Some(30))
    );
    fan.send(json!({ "type": "chat", "text": "first" })).await;
    fan.next_of("chat").await;
    fan.send(json!({ "type": "chat", "text": "second" })).await;
    let e = fan.next_of("error").await;
    assert_eq!(e["code"], "slow_mode");
    assert!(e["retry_after_ms"].as_u64().unwrap() > 20_000);
    // The seller is exempt.
    seller
        .send(json!({ "type": "chat", "text": "welcome all" }))
        .await;
    assert_eq!(fan.next_of("chat").await["from"]["role"], "seller");
    server.stop().await;
}

#[tokio::test]
async fn a_member_that_cannot_keep_up_is_disconnected_without_slowing_the_room() {
    let chat = ChatConfig {
        member_queue: 16,
        chat_burst: 100_000,
        chat_per_second: 100_000.0,
        frame_burst: 100_000,
        frame_per_second: 100_000.0,
        ..Default::default()
    };
    let server = TestServer::start_with(ServerOptions {
        chat: Some(chat),
        ..Default::default()
    })
    .await;
    let (_, stream) = show(&server).await;
    let talker_t = server.buyer("Talker").await;
    // The slow member joins and then reads nothing while the room talks; the talker reads
    // every line back as the room sends it.
    let mut slow = ChatClient::join_with_small_buffer(&server.base, &stream).await;
    let (mut talker, _) = ChatClient::join(&server.base, &stream, Some(&talker_t), None).await;
    let line = "z".repeat(480);
    let total = 20_000;
    for i in 0..total {
        talker
            .send(json!({ "type": "chat", "text": format!("{i} {line}") }))
            .await;
        let echo = talker.next_of("chat").await;
        assert!(echo["text"].as_str().unwrap().starts_with(&format!("{i} ")));
    }
    let close = slow.closed().await;
    assert_eq!(close.0, 4008, "{close:?}");
    server.stop().await;
}

/// Buyers on their own websockets race for a capped flash sale; some double-tap.
async fn flash_sale_through_the_chat(backend: Backend) {
    let server = TestServer::on(backend).await;
    let (seller_t, stream) = show(&server).await;
    let product = server
        .created(
            "/api/v1/products",
            &seller_t,
            json!({ "sku": "JKT", "title": "Red jacket",
                "price": { "amount": 4900, "currency": "USD" }, "stock": 500 }),
        )
        .await;
    let pid = product["id"].as_str().unwrap().to_owned();
    server
        .created(
            &format!("/api/v1/streams/{stream}/pins"),
            &seller_t,
            json!({ "product_id": pid, "quantity_cap": 50, "per_buyer_limit": 1,
                "sale_price": { "amount": 2900, "currency": "USD" } }),
        )
        .await;
    let (mut watcher, welcome) = ChatClient::join(&server.base, &stream, None, None).await;
    assert_eq!(welcome["pin"]["available"], 50);

    const BUYERS: usize = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..BUYERS {
        let token = server.buyer(&format!("Buyer {i}")).await;
        let (base, stream, pid) = (server.base.clone(), stream.clone(), pid.clone());
        tasks.spawn(async move {
            let (mut c, _) = ChatClient::join(&base, &stream, Some(&token), None).await;
            let buy = json!({ "type": "buy", "request_id": format!("r-{i}"), "product_id": pid,
                              "card_number": "4242 4242 4242 4242" });
            // Every third buyer taps twice with the same request id.
            let taps = if i % 3 == 0 { 2 } else { 1 };
            for _ in 0..taps {
                c.send(buy.clone()).await;
            }
            let mut answers = Vec::new();
            while answers.len() < taps {
                let v = c.next().await;
                if v["type"] == "order.confirmed" || v["type"] == "order.failed" {
                    answers.push(v);
                }
            }
            (i, answers)
        });
    }
    let mut paid_orders = HashSet::new();
    let mut answered = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (i, answers) = done.unwrap();
        for a in &answers {
            assert_eq!(a["request_id"], format!("r-{i}"));
        }
        if answers.len() == 2 {
            assert_eq!(
                answers[0], answers[1],
                "a double tap gets the original answer twice"
            );
        }
        match answers[0]["type"].as_str().unwrap() {
            "order.confirmed" => {
                assert_eq!(answers[0]["order"]["status"], "paid");
                assert_eq!(answers[0]["order"]["total"]["amount"], 2900);
                assert!(paid_orders.insert(answers[0]["order"]["id"].as_str().unwrap().to_owned()));
            }
            _ => assert_eq!(answers[0]["reason"], "sold_out", "{}", answers[0]),
        }
        answered.insert(i, answers.len());
    }
    assert_eq!(answered.len(), BUYERS, "every buyer got an answer");
    assert_eq!(paid_orders.len(), 50);
    // The room saw the stock run down to zero and nothing below it.
    let mut lowest = i64::MAX;
    while lowest > 0 {
        let v = watcher.next().await;
        if v["type"] == "stock" || v["type"] == "purchase" {
            let available = v["available"].as_i64().unwrap();
            assert!(available >= 0);
            lowest = lowest.min(available);
        }
    }
    let r = server.get_json("/api/v1/orders", Some(&seller_t)).await;
    let orders = r["orders"].as_array().unwrap();
    let paid: HashSet<String> = orders
        .iter()
        .filter(|o| o["status"] == "paid")
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        paid, paid_orders,
        "the database holds exactly the confirmed orders"
    );
    let r = server
        .get_json(&format!("/api/v1/products/{pid}"), Some(&seller_t))
        .await;
    assert_eq!(r["stock"], 450);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_sale_through_the_chat_on_sqlite() {
    flash_sale_through_the_chat(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_sale_through_the_chat_on_postgres() {
    flash_sale_through_the_chat(Backend::Postgres).await;
}

/// Two servers sharing PostgreSQL and Redis serve one room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_over_redis_share_one_ordered_room() {
    let db = std::sync::Arc::new(TestDatabase::create(Backend::Postgres).await.unwrap());
    let redis = vitrine_checkout::testing::redis_url();
    let options = ServerOptions {
        database: Some(db),
        redis_url: Some(redis),
        ..Default::default()
    };
    let a = TestServer::start_with(options.clone()).await;
    let b = TestServer::start_with(options).await;
    let (seller_t, stream) = show(&a).await;
    let ann_t = a.buyer("Ann").await;
    let bob_t = b.buyer("Bob").await;
    let (mut ann, _) = ChatClient::join(&a.base, &stream, Some(&ann_t), None).await;
    let (mut bob, _) = ChatClient::join(&b.base, &stream, Some(&bob_t), None).await;
    let (mut watch_a, _) = ChatClient::join(&a.base, &stream, None, None).await;
    let (mut watch_b, _) = ChatClient::join(&b.base, &stream, None, None).await;

    // Both talk at once, each on their own server.
    for i in 0..5 {
        ann.send(json!({ "type": "chat", "text": format!("ann {i}") }))
            .await;
        bob.send(json!({ "type": "chat", "text": format!("bob {i}") }))
            .await;
    }
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    while seen_a.len() < 10 {
        seen_a.push(watch_a.next_of("chat").await);
    }
    while seen_b.len() < 10 {
        seen_b.push(watch_b.next_of("chat").await);
    }
    assert_eq!(
        seen_a, seen_b,
        "same events, same ids, same order on both servers"
    );

    // A purchase on one server reaches the other's members.
    let product = a
        .created(
            "/api/v1/products",
            &seller_t,
            json!({ "sku": "MUG", "title": "Mug",
                "price": { "amount": 1500, "currency": "EUR" }, "stock": 5 }),
        )
        .await;
    let pid = product["id"].as_str().unwrap();
    a.created(
        &format!("/api/v1/streams/{stream}/pins"),
        &seller_t,
        json!({ "product_id": pid }),
    )
    .await;
    assert_eq!(watch_b.next_of("pin").await["pin"]["available"], 5);
    bob.send(
        json!({ "type": "buy", "request_id": "x1", "product_id": pid,
                     "card_number": "4242424242424242" }),
    )
    .await;
    assert_eq!(
        bob.next_of("order.confirmed").await["order"]["status"],
        "paid"
    );
    let purchase = watch_a.next_of("purchase").await;
    assert_eq!(purchase["available"], 4);
    // Newcomers on either server get the same history.
    let (_, wa) = ChatClient::join(&a.base, &stream, None, None).await;
    let (_, wb) = ChatClient::join(&b.base, &stream, None, None).await;
    assert_eq!(wa["history"], wb["history"]);
    a.stop().await;
    b.stop().await;
}

/// Deleting a stream removes its chat room's log from the shared bus (a deleted stream has no
/// replay whose chat could be wanted), instead of leaving it in Redis for ever.
#[tokio::test]
async fn a_deleted_streams_chat_room_is_pruned_from_the_bus() {
    use vitrine_core::Bus;
    let redis = vitrine_checkout::testing::redis_url();
    let server = TestServer::start_with(ServerOptions {
        redis_url: Some(redis.clone()),
        ..Default::default()
    })
    .await;
    let (seller, stream) = show(&server).await;
    let ann = server.buyer("Ann").await;
    let (mut c, _) = ChatClient::join(&server.base, &stream, Some(&ann), None).await;
    c.send(json!({ "type": "chat", "text": "is it waterproof?" }))
        .await;
    c.next_of("chat").await;
    let bus = vitrine_chat::redis_bus::RedisBus::connect(&redis)
        .await
        .unwrap();
    assert!(!bus.recent(&stream, 10).await.unwrap().is_empty());
    let r = server
        .http
        .delete(server.url(&format!("/api/v1/streams/{stream}")))
        .bearer_auth(&seller)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(
        bus.recent(&stream, 10).await.unwrap().is_empty(),
        "the deleted stream's room log is still on the bus"
    );
    server.stop().await;
}
