//! Attacks on the chat surface: one address or one crowd taking every websocket of a node or a
//! room, a member that stops reading and pins the server's buffers, frames far over the limit,
//! closes without a code, and moderators turning on the seller or on each other, with no trace
//! of who did what.

use crate::commerce::flash_sale;
use crate::support::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use vitrine_chat::ChatConfig;
use vitrine_checkout::db::Backend;

/// A seller with a stream; returns (seller token, stream id).
async fn show(server: &TestServer) -> (String, String) {
    let seller = server.seller("Ann's boutique").await;
    let stream = server.stream(&seller, "Friday drop").await;
    (seller, stream["id"].as_str().unwrap().to_owned())
}

/// A read-only member whose connection comes from `ip`.
async fn viewer_from(server: &TestServer, stream: &str, ip: [u8; 4]) -> ChatClient {
    let mut c = ChatClient::connect_from(&server.base, stream, ip)
        .await
        .unwrap_or_else(|refused| panic!("refused: {refused:?}"));
    c.send(json!({ "type": "hello" })).await;
    assert_eq!(c.next().await["type"], "welcome");
    c
}

/// Asserts that a websocket upgrade from `ip` is refused with `status`, a `Retry-After` and a
/// problem document of kind `slug`.
async fn assert_refused(server: &TestServer, stream: &str, ip: [u8; 4], status: u16, slug: &str) {
    let Err((got, retry, body)) = ChatClient::connect_from(&server.base, stream, ip).await else {
        panic!("a connection from {ip:?} was let in; expected {status} {slug}");
    };
    assert_eq!(got, status, "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!(retry >= 1);
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        problem["type"],
        format!("/docs/problems/{slug}"),
        "{problem}"
    );
    assert_eq!(problem["status"], status);
}

/// The sum of a counter's samples whose labels contain `labels`, from `/metrics`.
async fn metric(server: &TestServer, name: &str, labels: &str) -> f64 {
    let text = server.get_text("/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Item 4: one address could open websockets without end (each a task, buffers, a broadcast
/// receiver), and one room could take every connection of a node. Both are capped, and the
/// refusal comes before the upgrade, as an HTTP problem with `Retry-After`.
#[tokio::test]
async fn chat_connections_are_capped_per_address_and_per_room() {
    let chat = ChatConfig {
        max_connections_per_ip: 3,
        max_members_per_room: 5,
        ..Default::default()
    };
    let server = TestServer::with_chat(chat).await;
    let (_, stream) = show(&server).await;
    let mut from_one = Vec::new();
    for _ in 0..3 {
        from_one.push(viewer_from(&server, &stream, [127, 0, 0, 1]).await);
    }
    assert_refused(
        &server,
        &stream,
        [127, 0, 0, 1],
        429,
        "too-many-connections",
    )
    .await;
    // Another address still gets in, until the room is full.
    let _b1 = viewer_from(&server, &stream, [127, 0, 0, 2]).await;
    let _b2 = viewer_from(&server, &stream, [127, 0, 0, 2]).await;
    assert_refused(&server, &stream, [127, 0, 0, 3], 503, "room-full").await;
    // Another room on the same node is not affected by this one being full.
    let (_, other) = show(&server).await;
    let _c = viewer_from(&server, &other, [127, 0, 0, 3]).await;

    // A member that leaves gives its seat back (to its address and to the room).
    from_one.pop().unwrap().leave().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut back = loop {
        match ChatClient::connect_from(&server.base, &stream, [127, 0, 0, 1]).await {
            Ok(c) => break c,
            Err(refused) => assert!(
                tokio::time::Instant::now() < deadline,
                "the seat was never given back: {refused:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    back.send(json!({ "type": "hello" })).await;
    assert_eq!(back.next().await["type"], "welcome");
    server.stop().await;
}

/// Item 4: a member that stops reading made the server's write wait for ever, pinning up to
/// 1 MiB of buffered frames plus the socket's buffers (and the member's task) until it read
/// again. A write that stalls past the write timeout now closes the member with 4009.
#[tokio::test]
async fn a_member_that_stops_reading_is_closed_after_the_write_timeout() {
    let chat = ChatConfig {
        // Far more than the test sends, so that falling behind the room (4008) cannot be what
        // closes the member: only the stalled write can.
        member_queue: 65536,
        write_timeout: Duration::from_secs(1),
        chat_burst: 100_000,
        chat_per_second: 100_000.0,
        frame_burst: 100_000,
        frame_per_second: 100_000.0,
        ..Default::default()
    };
    let server = TestServer::with_chat(chat).await;
    let (_, stream) = show(&server).await;
    let talker_t = server.buyer("Talker").await;
    let mut stuck = ChatClient::join_with_small_buffer(&server.base, &stream).await;
    let (mut talker, _) = ChatClient::join(&server.base, &stream, Some(&talker_t), None).await;
    let line = "z".repeat(480);
    let mut closed = false;
    for i in 0..40_000 {
        talker
            .send(json!({ "type": "chat", "text": format!("{i} {line}") }))
            .await;
        talker.next_of("chat").await;
        if i % 500 == 499 && metric(&server, "vitrine_chat_closes", "code=\"4009\"").await >= 1.0 {
            closed = true;
            break;
        }
    }
    assert!(closed, "a member that reads nothing was never closed");
    // Its connection is over: what it had not read, then the end (the close frame may be lost
    // behind the unread frames, so a bare end is fine too).
    let end = stuck.closed().await;
    assert!(matches!(end.0, 4009 | 1006), "{end:?}");
    // The room went on.
    talker
        .send(json!({ "type": "chat", "text": "still here" }))
        .await;
    assert_eq!(talker.next_of("chat").await["text"], "still here");
    server.stop().await;
}

/// Item 4: a frame far over the limit (beyond what the transport reads at all) dropped the
/// connection without a close frame; it now gets 1009 and a reason, before and after hello.
#[tokio::test]
async fn an_oversized_frame_is_closed_with_1009_and_a_reason() {
    let server = TestServer::start().await;
    let (_, stream) = show(&server).await;
    let huge = format!(r#"{{"type":"chat","text":"{}"}}"#, "a".repeat(1024 * 1024));
    for hello_first in [false, true] {
        let mut c = ChatClient::connect(&server.base, &stream).await;
        if hello_first {
            c.send(json!({ "type": "hello" })).await;
            assert_eq!(c.next().await["type"], "welcome");
        }
        // The server may stop reading before the whole frame is sent.
        let _ = c.try_send_text(huge.clone()).await;
        let (code, reason) = c.closed().await;
        assert_eq!(code, 1009, "hello first: {hello_first}: {reason}");
        assert!(!reason.is_empty(), "1009 without a reason");
    }
    // The server is fine.
    let (_, w) = ChatClient::join(&server.base, &stream, None, None).await;
    assert_eq!(w["type"], "welcome");
    server.stop().await;
}

/// Item 4: closes the server sends are its own codes (4000-4999) with a reason; a shutdown was
/// 1001, which a client could not tell from a browser's own "going away".
#[tokio::test]
async fn a_shutdown_closes_members_with_a_4xxx_code_and_a_reason() {
    let server = TestServer::start().await;
    let (_, stream) = show(&server).await;
    let (mut member, _) = ChatClient::join(&server.base, &stream, None, None).await;
    let stop = tokio::spawn(server.stop());
    let (code, reason) = member.closed().await;
    assert_eq!(code, 4503, "{reason}");
    assert!(reason.contains("resume_from"), "{reason}");
    stop.await.unwrap();
}

/// A buyer made a moderator of `stream` by its seller; returns (token, member id).
async fn moderator(
    server: &TestServer,
    seller: &str,
    stream: &str,
    name: &str,
) -> (String, String) {
    let (token, id) = server.buyer_with_id(name).await;
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/api/v1/streams/{stream}/moderators"),
            seller,
            None,
            Some(json!({ "buyer_id": id })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    (token, id)
}

/// The answer to a `moderate`: the `error` it got, or the `moderation` event it caused.
async fn outcome(c: &mut ChatClient) -> Value {
    loop {
        let v = c.next().await;
        if v["type"] == "error" || v["type"] == "moderation" {
            return v;
        }
    }
}

/// Item 5: a moderator could ban the seller (whose own connection was then closed as banned)
/// and the other moderators. Only the seller acts on moderators now.
#[tokio::test]
async fn moderators_cannot_ban_the_seller_or_other_moderators() {
    let server = TestServer::start().await;
    let (seller_t, stream) = show(&server).await;
    let (a_t, _) = moderator(&server, &seller_t, &stream, "Mod A").await;
    let (b_t, b_id) = moderator(&server, &seller_t, &stream, "Mod B").await;
    let (fan_t, fan_id) = server.buyer_with_id("Fan").await;
    let (mut seller, sw) = ChatClient::join(&server.base, &stream, Some(&seller_t), None).await;
    let (mut a, aw) = ChatClient::join(&server.base, &stream, Some(&a_t), None).await;
    let (mut b, bw) = ChatClient::join(&server.base, &stream, Some(&b_t), None).await;
    let (mut fan, _) = ChatClient::join(&server.base, &stream, Some(&fan_t), None).await;
    assert_eq!(
        (aw["you"]["role"].as_str(), bw["you"]["role"].as_str()),
        (Some("moderator"), Some("moderator"))
    );

    for target in [sw["you"]["member_id"].as_str().unwrap(), b_id.as_str()] {
        a.send(json!({ "type": "moderate", "action": "ban", "member_id": target }))
            .await;
        let got = outcome(&mut a).await;
        assert_eq!(
            (got["type"].as_str(), got["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "a moderator banned {target}: {got}"
        );
    }
    // Neither was banned: both still talk, and both can join again.
    seller
        .send(json!({ "type": "chat", "text": "still mine" }))
        .await;
    assert_eq!(fan.next_of("chat").await["text"], "still mine");
    b.send(json!({ "type": "chat", "text": "still here" }))
        .await;
    assert_eq!(fan.next_of("chat").await["text"], "still here");
    ChatClient::join(&server.base, &stream, Some(&b_t), None).await;

    // A moderator bans a buyer; the seller bans a moderator.
    a.send(json!({ "type": "moderate", "action": "ban", "member_id": fan_id }))
        .await;
    assert_eq!(outcome(&mut a).await["action"], "ban");
    assert_eq!(fan.closed().await.0, 4003);
    seller
        .send(json!({ "type": "moderate", "action": "ban", "member_id": bw["you"]["member_id"] }))
        .await;
    assert_eq!(b.closed().await, (4003, "banned from this room".into()));
    server.stop().await;
}

/// Item 5: a ban could be lifted over the chat, but a moderator could never be removed: a
/// moderator who turned on the room kept the role for good.
#[tokio::test]
async fn bans_are_lifted_and_moderators_removed() {
    let server = TestServer::start().await;
    let (seller_t, stream) = show(&server).await;
    let (mod_t, mod_id) = moderator(&server, &seller_t, &stream, "Mod").await;
    let (fan_t, fan_id) = server.buyer_with_id("Fan").await;
    let (mut seller, _) = ChatClient::join(&server.base, &stream, Some(&seller_t), None).await;

    seller
        .send(json!({ "type": "moderate", "action": "ban", "member_id": fan_id }))
        .await;
    assert_eq!(outcome(&mut seller).await["action"], "ban");
    let mut refused = ChatClient::connect(&server.base, &stream).await;
    refused
        .send(json!({ "type": "hello", "token": fan_t }))
        .await;
    assert_eq!(refused.closed().await.0, 4003);
    seller
        .send(json!({ "type": "moderate", "action": "unban", "member_id": fan_id }))
        .await;
    assert_eq!(outcome(&mut seller).await["action"], "unban");
    ChatClient::join(&server.base, &stream, Some(&fan_t), None).await;

    // Removing a moderator ends the role at once: its connection is closed to join again.
    let (mut m, mw) = ChatClient::join(&server.base, &stream, Some(&mod_t), None).await;
    assert_eq!(mw["you"]["role"], "moderator");
    let path = format!("/api/v1/streams/{stream}/moderators/{mod_id}");
    let other_seller = server.seller("Bob").await;
    let (status, _) = server
        .call(Method::DELETE, &path, &other_seller, None, None)
        .await;
    assert_eq!(status, 404, "another seller removed a moderator");
    let (status, body) = server
        .call(Method::DELETE, &path, &seller_t, None, None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (code, reason) = m.closed().await;
    assert_eq!(code, 4010, "{reason}");
    let (mut m, mw) = ChatClient::join(&server.base, &stream, Some(&mod_t), None).await;
    assert_eq!(mw["you"]["role"], "buyer");
    m.send(json!({ "type": "moderate", "action": "slow_mode", "seconds": 60 }))
        .await;
    assert_eq!(outcome(&mut m).await["code"], "forbidden");
    let (status, body) = server
        .call(Method::DELETE, &path, &seller_t, None, None)
        .await;
    assert_eq!(status, 404, "removed twice: {body}");
    server.stop().await;
}

/// Item 5: moderation left no record of who banned whom; every act is now logged, and the
/// seller reads the log with the `streams:read` scope.
#[tokio::test]
async fn every_moderation_act_is_logged_for_the_seller() {
    moderation_log_on(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_moderation_act_is_logged_for_the_seller_on_postgres() {
    moderation_log_on(Backend::Postgres).await;
}

async fn moderation_log_on(backend: Backend) {
    let server = TestServer::on(backend).await;
    let (seller_t, stream) = show(&server).await;
    let (mod_t, mod_id) = moderator(&server, &seller_t, &stream, "Mod").await;
    let (fan_t, fan_id) = server.buyer_with_id("Fan").await;
    let (mut seller, sw) = ChatClient::join(&server.base, &stream, Some(&seller_t), None).await;
    let seller_id = sw["you"]["member_id"].as_str().unwrap().to_owned();
    let (mut m, _) = ChatClient::join(&server.base, &stream, Some(&mod_t), None).await;
    let (mut fan, _) = ChatClient::join(&server.base, &stream, Some(&fan_t), None).await;
    fan.send(json!({ "type": "chat", "text": "spam" })).await;
    let line = m.next_of("chat").await;
    for act in [
        json!({ "action": "delete", "message_id": line["id"] }),
        json!({ "action": "ban", "member_id": fan_id }),
        json!({ "action": "unban", "member_id": fan_id }),
        json!({ "action": "slow_mode", "seconds": 10 }),
    ] {
        let mut command = act.clone();
        command["type"] = json!("moderate");
        m.send(command).await;
        let done = outcome(&mut seller).await;
        assert_eq!(done["action"], act["action"], "{done}");
    }
    let path = format!("/api/v1/streams/{stream}/moderators/{mod_id}");
    let (status, _) = server
        .call(Method::DELETE, &path, &seller_t, None, None)
        .await;
    assert_eq!(status, 204);

    let log_path = format!("/api/v1/streams/{stream}/moderation-log");
    let (status, log) = server
        .call(Method::GET, &log_path, &seller_t, None, None)
        .await;
    assert_eq!(status, 200, "{log}");
    let acts = log["actions"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = acts
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["actor"]["member_id"].as_str().unwrap(),
                a["actor"]["role"].as_str().unwrap(),
                a["member_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        seen,
        vec![
            (
                "remove_moderator",
                seller_id.as_str(),
                "seller",
                mod_id.as_str()
            ),
            ("slow_mode", mod_id.as_str(), "moderator", ""),
            ("unban", mod_id.as_str(), "moderator", fan_id.as_str()),
            ("ban", mod_id.as_str(), "moderator", fan_id.as_str()),
            ("delete", mod_id.as_str(), "moderator", ""),
            (
                "add_moderator",
                seller_id.as_str(),
                "seller",
                mod_id.as_str()
            ),
        ]
    );
    assert_eq!(acts[1]["seconds"], 10);
    assert_eq!(acts[4]["message_id"], line["id"]);
    assert!(
        acts.iter()
            .all(|a| a["at"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    let (status, page) = server
        .call(
            Method::GET,
            &format!("{log_path}?limit=2"),
            &seller_t,
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, page["actions"].as_array().map(Vec::len)),
        (200, Some(2))
    );

    // Nobody else reads it.
    let other = server.seller("Bob").await;
    let (status, _) = server
        .call(Method::GET, &log_path, &other, None, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call(Method::GET, &log_path, &fan_t, None, None)
        .await;
    assert_eq!(status, 401);
    server.stop().await;
}

/// Item 3 through the chat: buyers minted from one address cannot multiply a flash sale's
/// per-buyer limit by buying in the chat instead of over HTTP; another address still buys.
#[tokio::test]
async fn chat_buyers_from_one_address_share_the_flash_sale_limit() {
    let server = TestServer::with_edge(vitrine::edge::EdgeConfig {
        ip_limits: vitrine::edge::IpLimits {
            flash_sale_buyers_per_address: 2,
            ..vitrine::edge::IpLimits::off()
        },
        ..Default::default()
    })
    .await;
    let (seller, stream) = show(&server).await;
    let pid = flash_sale(&server, &seller, &stream).await;
    let buy = |ip: [u8; 4], token: String, request: &'static str| {
        let (base, stream, pid) = (server.base.clone(), stream.clone(), pid.clone());
        async move {
            let mut c = ChatClient::connect_from(&base, &stream, ip).await.unwrap();
            c.send(json!({ "type": "hello", "token": token })).await;
            assert_eq!(c.next().await["type"], "welcome");
            c.send(
                json!({ "type": "buy", "request_id": request, "product_id": pid,
                           "card_number": "4242 4242 4242 4242" }),
            )
            .await;
            loop {
                let v = c.next().await;
                if v["type"] == "order.confirmed" || v["type"] == "order.failed" {
                    return v;
                }
            }
        }
    };
    let mut answers = Vec::new();
    for i in 0..4 {
        let token = server.buyer(&format!("Sock puppet {i}")).await;
        answers.push(buy([127, 0, 0, 61], token, "r1").await);
    }
    let kinds: Vec<&str> = answers
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "order.confirmed",
            "order.confirmed",
            "order.failed",
            "order.failed"
        ],
        "two buyers' worth per address: {answers:?}"
    );
    assert_eq!(answers[2]["reason"], "limit_exceeded", "{}", answers[2]);
    // A double tap of a confirmed buy is its replay, and takes nothing more from the address.
    let first = server.buyer("First").await;
    let other = buy([127, 0, 0, 62], first.clone(), "r1").await;
    assert_eq!(other["type"], "order.confirmed", "{other}");
    let again = buy([127, 0, 0, 62], first, "r1").await;
    assert_eq!(again, other, "a replay answers the same");
    let last = server.buyer("Last").await;
    let last = buy([127, 0, 0, 62], last, "r1").await;
    assert_eq!(last["type"], "order.confirmed", "{last}");
    server.stop().await;
}
